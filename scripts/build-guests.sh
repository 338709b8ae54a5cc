#!/usr/bin/env bash
# Builds every operator in the repository (Rust, Python, JavaScript) as a component
# into target/wasm/wasm32-wasip2/release/, where the example job files and
# the tests look for them. A separate target directory keeps these builds
# from waiting on the host's cargo lock (tests call this while cargo runs).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --target wasm32-wasip2 --target-dir target/wasm \
    -p tokenizer -p window-count -p fraud-detector -p map-op -p count-op -p typed-map -p hostile -p wrong-world \
    -p window-collect
# The window library's end-to-end test operator (tests/windows.rs).
cargo build --release --target wasm32-wasip2 --target-dir target/wasm -p window-agg
# The "upgraded" operator for the savepoint tests: same crate, new behaviour.
cargo build --release --target wasm32-wasip2 --target-dir target/wasm-v2 -p window-collect --features v2
# The live-upgrade operator (tests/guests/versioned): v1, then one build per
# variant feature, copied beside the others. The variants share one target
# dir: cargo keeps each feature set's build (only `versioned` differs, its
# dependencies compile once) and copies the one just asked for into place.
cargo build --release --target wasm32-wasip2 --target-dir target/wasm -p versioned
while read -r feature name; do
    cargo build --release --target wasm32-wasip2 --target-dir target/wasm-versioned \
        -p versioned --features "$feature"
    cp target/wasm-versioned/wasm32-wasip2/release/versioned.wasm \
        "target/wasm/wasm32-wasip2/release/$name.wasm"
done <<'VARIANTS'
v2 versioned_v2
fail-open versioned_fail_open
map-state versioned_map
no-state versioned_stateless
VARIANTS

# Python and JavaScript operators (componentize-py, componentize-js); each
# is skipped when its sources, the SDK and the toolchain are unchanged.
out=target/wasm/wasm32-wasip2/release
while read -r src name; do
    bash scripts/build-operator.sh "$src" -o "$out/$name.wasm"
done <<'GUESTS'
examples/fraud-detection/operators/fraud-detector-py/fraud_detector.py fraud_detector_py
examples/polyglot/operators/window-count-py/window_count.py window_count_py
tests/guests/hostile-py/hostile.py hostile_py
benches/guests/map-op-py/map_op.py map_op_py
tests/guests/versioned-py/versioned.py versioned_py
examples/wordcount/operators/tokenizer-js/tokenizer.js tokenizer_js
examples/polyglot/operators/running-total-js/running_total.js running_total_js
tests/guests/hostile-js/hostile.js hostile_js
benches/guests/map-op-js/map_op.js map_op_js
tests/guests/windows-py/window_sum.py window_sum_py
tests/guests/windows-js/window_sum.js window_sum_js
GUESTS

# The Nexmark queries (examples/nexmark): nexmark_q0.wasm ... nexmark_q11.wasm.
cargo build --release --target wasm32-wasip2 --target-dir target/wasm \
    -p nexmark-q0 -p nexmark-q1 -p nexmark-q2 -p nexmark-q3 -p nexmark-q4 \
    -p nexmark-q5 -p nexmark-q7 -p nexmark-q8 -p nexmark-q11
