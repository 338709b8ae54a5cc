//! weir-cluster: coordinator and worker (placeholder, being built).
