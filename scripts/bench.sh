#!/usr/bin/env bash
# Benchmarks warren against RabbitMQ and garagemq (both from Debian) on this machine and
# writes docs/benchmarks.md. Installs the reference brokers when missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
missing=()
command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
command -v garagemq >/dev/null 2>&1 || missing+=(garagemq)
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
fi
cargo build --release -p warren
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec python3 scripts/bench.py "$@"
