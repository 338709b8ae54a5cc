#!/usr/bin/env bash
# Installs what building weir needs and a fresh machine may lack:
# clang + libclang (the rocksdb crate builds RocksDB with them) and the
# wasm32-wasip2 Rust target (operators are built for it). Idempotent.
set -euo pipefail

missing=()
for pkg in clang libclang-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "==> installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "==> adding the wasm32-wasip2 Rust target"
    rustup target add wasm32-wasip2
fi
