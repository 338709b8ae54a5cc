#!/usr/bin/env bash
# Runs the whole test suite: unit tests beside the code, operator tests on
# the native harness, and end-to-end tests that drive the `weir` binary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build-guests.sh
cargo test --release --workspace "$@"
