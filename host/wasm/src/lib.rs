//! weir-wasm
