#!/usr/bin/env bash
# Runs the web UI suite (tests/ui): pytest + Selenium driving Debian's headless Chromium
# against a warren it starts itself (ephemeral ports, temporary data directory).
#
# Installs what it needs: the apt packages chromium and chromium-driver when missing
# (as root, or through sudo), and a venv with the pinned requirements.txt.
# The broker binary is WARREN_BIN, else $CARGO_TARGET_DIR/debug/warren, else
# target/debug/warren. Extra arguments go to pytest, e.g.
#   tests/ui/run.sh -q --screenshots      # also refresh docs/ui/*.png
#   tests/ui/run.sh -k queue
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
PYTHON="${PYTHON:-python3}"

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

STAMP="$VENV/.requirements.installed"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
if ! cmp -s "$HERE/requirements.txt" "$STAMP"; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
    cp "$HERE/requirements.txt" "$STAMP"
fi

# Selenium Manager must never try to fetch a driver: the path is given in conftest.py.
export SE_OFFLINE=true
exec "$VENV/bin/python" -m pytest -c "$HERE/pytest.ini" --rootdir "$HERE" "$HERE" "$@"
