#!/usr/bin/env bash
# The Docker drop-in tests (tests/docker/test_docker.py): a compose stack written for
# rabbitmq:3-management with only the image changed, the rabbitmq tools through
# `docker exec`, persistence across container re-creation, rabbitmq.conf and definitions
# mounts, graceful stop, and the Python Testcontainers RabbitMQ module.
# Needs root for apt-get and dockerd when they are missing; builds what it needs itself.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

pidfile="$(mktemp)"
export WARREN_DOCKERD_PIDFILE="$pidfile"
stop_engine() {
    # Stop the engine only if this run started it.
    if [ -s "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}
trap stop_engine EXIT

scripts/docker_image.sh
docker build -q -t warren-test-app:dev "$here/app" >/dev/null

venv="$here/.venv"
stamp="$venv/.requirements.installed"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! cmp -s "$here/requirements.txt" "$stamp"; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$stamp"
fi
# The Node Testcontainers RabbitMQ module (tests/docker/node), installed from its lock file.
node_dir="$here/node"
if [ ! -d "$node_dir/node_modules" ] || ! cmp -s "$node_dir/package-lock.json" "$node_dir/node_modules/.package-lock.json.installed"; then
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$node_dir/package-lock.json" "$node_dir/node_modules/.package-lock.json.installed"
fi
export TESTCONTAINERS_RYUK_DISABLED=true
cd "$here"
"$venv/bin/python" -m pytest -p no:cacheprovider -s "$@" test_docker.py
