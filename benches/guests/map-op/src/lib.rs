//! map-op
