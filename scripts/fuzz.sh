#!/usr/bin/env bash
# Runs every property-based fuzz target of tests/fuzz.rs with many cases
# (default 100,000 each; FUZZ_CASES overrides) and prints cases and seconds
# per target. Each target runs under a time bound (FUZZ_SECONDS_MAX, default
# 1200 s); a crash prints proptest's minimal failing input and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir-ci/target}"
cases="${FUZZ_CASES:-100000}"
seconds_max="${FUZZ_SECONDS_MAX:-1200}"

# Build once; the test binary is then run per target.
binary=$(cargo test --release --test fuzz --no-run --message-format=json 2>/dev/null |
    grep '"name":"fuzz"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$binary" ] || { echo "fuzz: cannot build tests/fuzz.rs" >&2; exit 1; }

targets=$("$binary" --list 2>/dev/null | sed -n 's/: test$//p' | grep -v -e "^deeply_" -e "^the_" -e "^timer_files_")
failed=0
printf '%-36s %10s %9s\n' target cases seconds
for target in $targets; do
    started=$(date +%s.%N)
    if PROPTEST_CASES="$cases" timeout "$seconds_max" "$binary" --exact "$target" --test-threads 1 >"/tmp/fuzz-$target.log" 2>&1; then
        status=ok
    else
        status="FAILED (see /tmp/fuzz-$target.log)"
        failed=1
    fi
    elapsed=$(echo "$(date +%s.%N) - $started" | bc)
    printf '%-36s %10s %9.1f %s\n' "$target" "$cases" "$elapsed" "$status"
done
exit "$failed"
