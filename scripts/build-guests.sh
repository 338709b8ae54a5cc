#!/usr/bin/env bash
# Builds every Rust operator in the repository as a wasm32-wasip2 component
# into target/wasm/wasm32-wasip2/release/, where the example job files and
# the tests look for them. A separate target directory keeps these builds
# from waiting on the host's cargo lock (tests call this while cargo runs).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --target wasm32-wasip2 --target-dir target/wasm \
    -p tokenizer -p window-count -p fraud-detector -p map-op -p count-op -p typed-map -p hostile -p wrong-world \
    -p window-collect
# The "upgraded" operator for the savepoint tests: same crate, new behaviour.
cargo build --release --target wasm32-wasip2 --target-dir target/wasm-v2 -p window-collect --features v2
