//! window-count
