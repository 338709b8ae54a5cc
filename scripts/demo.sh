#!/usr/bin/env bash
# One command from a fresh clone to a running job: installs prerequisites,
# builds the host and the example operators, and runs the word-count demo
# on the embedded runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "==> building example operators (wasm32-wasip2)"
bash scripts/build-guests.sh
echo "==> building weir (release; the first build takes several minutes)"
cargo build --release --bin weir
echo "==> weir run examples/wordcount/job.toml"
cargo run --quiet --release --bin weir -- run examples/wordcount/job.toml
echo
echo "==> word counts per 10-second window (examples/wordcount/output/counts.jsonl):"
cat examples/wordcount/output/counts.jsonl
echo
echo "==> words that arrived too late for their window (examples/wordcount/output/late.txt):"
cat examples/wordcount/output/late.txt
