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

# Toolchains for Python and JavaScript operators, pinned, installed inside
# the repository (.toolchains/ and guest-sdk/js/node_modules, both ignored).
COMPONENTIZE_PY_VERSION=0.25.1
py_venv=.toolchains/python
cd "$(dirname "$0")/.."
if ! "$py_venv/bin/componentize-py" --version 2>/dev/null | grep -qx "componentize-py $COMPONENTIZE_PY_VERSION"; then
    command -v python3 >/dev/null || {
        echo "==> installing python3"
        sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3 python3-venv
    }
    echo "==> installing componentize-py $COMPONENTIZE_PY_VERSION into $py_venv"
    rm -rf "$py_venv"
    if ! python3 -m venv "$py_venv" 2>/dev/null; then
        sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv
        rm -rf "$py_venv"
        python3 -m venv "$py_venv"
    fi
    "$py_venv/bin/pip" install -q --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "==> installing nodejs and npm"
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm
fi
cjs=guest-sdk/js/node_modules/@bytecodealliance/componentize-js/package.json
want=$(node -p 'require("./guest-sdk/js/package-lock.json").packages["node_modules/@bytecodealliance/componentize-js"].version')
if [ ! -f "$cjs" ] || [ "$(node -p "require('./$cjs').version")" != "$want" ]; then
    echo "==> installing @bytecodealliance/componentize-js $want into guest-sdk/js/node_modules"
    # The versions pinned in package-lock.json. Not `npm ci`: it refuses this
    # lock file because npm leaves other platforms' optional binaries out of it.
    (cd guest-sdk/js && npm install --no-save --no-audit --no-fund --loglevel=error)
fi
