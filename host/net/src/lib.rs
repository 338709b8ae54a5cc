//! weir-net: the QUIC transport between weir nodes (placeholder, being built).
