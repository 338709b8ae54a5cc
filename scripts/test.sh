#!/usr/bin/env bash
# Runs the whole test suite: unit tests beside the code, operator tests on
# the native harness, and end-to-end tests that drive the `weir` binary.
# Ends with one line totalling every test binary's results.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build-guests.sh
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# Everything must also build natively as a plain workspace (guest crates
# included), which `cargo test` alone does not check for cdylibs.
cargo build --release --workspace
status=0
cargo test --release --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
echo
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "weir: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
