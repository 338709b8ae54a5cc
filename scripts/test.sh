#!/usr/bin/env bash
# Runs the whole test suite: unit tests beside the code, operator tests on
# the native harness, and end-to-end tests that drive the `weir` binary.
# Ends with one line totalling every test binary's results.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-test-systems.sh
bash scripts/build-guests.sh
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
# The Python and JavaScript SDKs' own unit tests (codecs, batch format,
# runtime on an in-memory host).
PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s guest-sdk/python/tests 2>&1 | tee -a "$log" || status=$?
node --test guest-sdk/js/test/ 2>&1 | tee -a "$log" || status=$?
# Everything must also build natively as a plain workspace (guest crates
# included), which `cargo test` alone does not check for cdylibs.
cargo build --release --workspace
cargo test --release --workspace --no-fail-fast "$@" 2>&1 | tee -a "$log" || status=$?
echo
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^Ran [0-9]+ tests? in/ { py += $2 }
     /^FAILED \(/ { n = split($0, parts, /[=,)]/); for (i = 2; i <= n; i += 2) if (parts[i-1] ~ /(failures|errors)$/) pyf += parts[i] }
     /^# pass [0-9]+$/ { p += $3 }
     /^# fail [0-9]+$/ { f += $3 }
     END { p += py - pyf; f += pyf; printf "weir: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
