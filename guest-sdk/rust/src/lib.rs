//! weir-guest
