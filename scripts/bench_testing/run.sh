#!/usr/bin/env bash
# The figures of docs/testing.md ("Measured"): warren's fixture vs pytest-rabbitmq (PyPI,
# with Debian's rabbitmq-server), a 50-test suite on each, and a 30 s TTL test with the
# test clock vs real time. Needs target/debug/warren (or WARREN_WHEEL_BINARY) and
# rabbitmq-server installed; takes a few minutes (RabbitMQ's side and the 30 s test).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
binary="${WARREN_WHEEL_BINARY:-${CARGO_TARGET_DIR:-$root/target}/debug/warren}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" -r "$root/python/warren-broker/requirements-test.txt" pytest-rabbitmq==5.0.0
"${pip[@]}" "$(python3 "$root/python/warren-broker/build_wheel.py" --binary "$binary" --out "$work/dist")"
py="$work/venv/bin/python"
cd "$here"
echo "== warren: start -> open connection, amqp_vhost cost"
"$py" startup.py 10
echo "== 50 tests declaring their own queues: warren fixtures"
time "$py" -m pytest -q -p no:cacheprovider -p no:rabbitmq --durations=2 test_suite_warren.py
echo "== 30 s TTL dead-letter test: test clock vs real time"
WARREN_BENCH_REAL_TTL=1 "$py" -m pytest -q -p no:cacheprovider -p no:rabbitmq --durations=3 test_ttl_warren.py
echo "== 50 tests declaring their own queues: pytest-rabbitmq"
time "$py" -m pytest -q -p no:cacheprovider -p no:warren --durations=3 \
    --rabbitmq-port "${RMQ_PORT:-27401}" --rabbitmq-distribution-port "${RMQ_DIST_PORT:-27402}" \
    test_suite_rabbitmq.py
