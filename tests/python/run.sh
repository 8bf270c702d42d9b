#!/usr/bin/env bash
# Run the Python AMQP integration suite.
#
# Does NOT start a broker: start warren (or RabbitMQ) yourself and point the
# suite at it with WARREN_AMQP_HOST / WARREN_AMQP_PORT (defaults 127.0.0.1:5672).
# Extra arguments are passed to pytest, e.g.:
#   WARREN_AMQP_PORT=5699 tests/python/run.sh -q -k exchanges
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
PYTHON="${PYTHON:-python3}"

# (Re)install when the venv is missing or requirements.txt changed since.
STAMP="$VENV/.requirements.installed"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
if ! cmp -s "$HERE/requirements.txt" "$STAMP"; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
    cp "$HERE/requirements.txt" "$STAMP"
fi

# Run the whole suite unless the caller named test files/dirs (or node ids)
# themselves, e.g. run.sh tests/python/test_basic.py::test_get -q
have_path=0
for arg in "$@"; do
    case "$arg" in
        -*) ;;
        *) if [ -e "${arg%%::*}" ]; then have_path=1; fi ;;
    esac
done
if [ "$have_path" = 1 ]; then
    exec "$VENV/bin/python" -m pytest -c "$HERE/pytest.ini" --rootdir "$HERE" "$@"
else
    exec "$VENV/bin/python" -m pytest -c "$HERE/pytest.ini" --rootdir "$HERE" "$HERE" "$@"
fi
