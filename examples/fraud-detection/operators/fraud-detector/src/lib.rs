//! fraud-detector
