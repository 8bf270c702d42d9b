#!/usr/bin/env bash
# The figures of docs/testing.md ("Measured"): warren's fixture vs pytest-rabbitmq (PyPI,
# with Debian's rabbitmq-server) vs Testcontainers (PyPI, with a RabbitMQ image built from
# Debian's rabbitmq-server, and warren's own image), a 50-test suite on each, and a 30 s
# TTL test with the test clock vs real time. `make bench-testing`; not part of `make test`.
# Needs target/debug/warren (or WARREN_WHEEL_BINARY) and rabbitmq-server installed; the
# Testcontainers part needs root the first time (docker.io, dockerd, debootstrap: see
# scripts/docker_engine.sh). Takes many minutes (RabbitMQ's side and the 30 s test).
# PARTS="warren rabbitmq testcontainers" (the default) picks the parts to run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
binary="${WARREN_WHEEL_BINARY:-${CARGO_TARGET_DIR:-$root/target}/debug/warren}"
parts=" ${PARTS:-warren rabbitmq testcontainers} "
work="$(mktemp -d)"
pidfile="$work/dockerd.pid"
cleanup() {
    # Stop the Docker engine only if this run started it.
    if [ -s "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
python3 -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" -r "$root/python/warren-broker/requirements-test.txt" pytest-rabbitmq==5.0.0 \
    'testcontainers[rabbitmq]==4.15.0'
py="$work/venv/bin/python"

if [[ $parts == *" warren "* ]]; then
    "${pip[@]}" "$(python3 "$root/python/warren-broker/build_wheel.py" --binary "$binary" --out "$work/dist")"
    cd "$here"
    echo "== warren: start -> open connection, amqp_vhost cost"
    "$py" startup.py 10
    echo "== 50 tests declaring their own queues: warren fixtures"
    time "$py" -m pytest -q -p no:cacheprovider -p no:rabbitmq --durations=2 test_suite_warren.py
    echo "== 30 s TTL dead-letter test: test clock vs real time"
    WARREN_BENCH_REAL_TTL=1 "$py" -m pytest -q -p no:cacheprovider -p no:rabbitmq --durations=3 test_ttl_warren.py
fi

if [[ $parts == *" rabbitmq "* ]]; then
    cd "$here"
    echo "== 50 tests declaring their own queues: pytest-rabbitmq"
    time "$py" -m pytest -q -p no:cacheprovider -p no:warren --durations=3 \
        --rabbitmq-port "${RMQ_PORT:-27401}" --rabbitmq-distribution-port "${RMQ_DIST_PORT:-27402}" \
        test_suite_rabbitmq.py
fi

if [[ $parts == *" testcontainers "* ]]; then
    cd "$root"
    WARREN_DOCKERD_PIDFILE="$pidfile" scripts/docker_engine.sh
    # RabbitMQ 3.10.8 from Debian's package (no registry serves rabbitmq:3-management here),
    # and warren:dev from the release binary.
    docker image inspect warren-compare-rabbitmq:3.10 >/dev/null 2>&1 ||
        docker build -q -t warren-compare-rabbitmq:3.10 -f docker/compare/rabbitmq.Dockerfile docker/compare >/dev/null
    [ "${WARREN_BENCH_REUSE_IMAGE:-0}" = 1 ] && docker image inspect warren:dev >/dev/null 2>&1 ||
        scripts/docker_image.sh
    # Ryuk (Testcontainers' reaper) is an image from Docker Hub: not reachable here.
    export TESTCONTAINERS_RYUK_DISABLED=true
    cd "$here"
    for image in warren-compare-rabbitmq:3.10 warren:dev; do
        echo "== Testcontainers ($image): start -> open connection, vhost per test"
        WARREN_BENCH_TC_IMAGE="$image" "$py" startup_testcontainers.py "${TC_RUNS:-5}"
        echo "== 50 tests declaring their own queues: Testcontainers ($image)"
        time WARREN_BENCH_TC_IMAGE="$image" "$py" -m pytest -q -p no:cacheprovider -p no:warren \
            -p no:rabbitmq --durations=3 test_suite_testcontainers.py
    done
fi
