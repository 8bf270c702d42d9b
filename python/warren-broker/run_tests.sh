#!/usr/bin/env bash
# Builds the warren-broker wheel around an already built warren (target/debug/warren by
# default, or $WARREN_WHEEL_BINARY), or takes a built one ($WARREN_WHEEL, e.g. the release
# wheel of build_release.sh: `make test-wheel`), installs it into a fresh venv with the pinned test
# requirements, and runs the plugin's own tests and examples/pytest-project against it.
# Celery (pinned as in tests/clients) is installed for the example's celery_config test;
# WARREN_EXAMPLE_CELERY=0 leaves it out (the test is then skipped).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
binary="${WARREN_WHEEL_BINARY:-${CARGO_TARGET_DIR:-$root/target}/debug/warren}"
python="${PYTHON:-python3}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [ -n "${WARREN_WHEEL:-}" ]; then
    wheel="$WARREN_WHEEL"
else
    if [ ! -x "$binary" ]; then
        echo "no warren executable at $binary (cargo build -p warren first)" >&2
        exit 1
    fi
    wheel="$("$python" "$here/build_wheel.py" --binary "$binary" --out "$work/dist")"
fi
echo "built $(basename "$wheel") ($(du -h "$wheel" | cut -f1))"

# Fresh venv every run: the point is that the wheel installs and works on its own.
"$python" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" -r "$here/requirements-test.txt"
if [ "${WARREN_EXAMPLE_CELERY:-1}" = 1 ]; then
    "${pip[@]}" celery==5.7.0 kombu==5.7.0 amqp==5.4.2
fi
"${pip[@]}" "$wheel"
# The executable came with the wheel; nothing else on PATH is used.
test -x "$work/venv/bin/warren"
"$work/venv/bin/warren" --help >/dev/null

# Out of the source tree, so the installed package (not src/) is what gets imported.
cd "$work"
unset WARREN_BIN WARREN_BROKER_PORT
"$work/venv/bin/python" -m pytest -p no:cacheprovider -q "$here/tests" "$@"
cp -r "$root/examples/pytest-project" "$work/example"
cd "$work/example"
"$work/venv/bin/python" -m pytest -p no:cacheprovider -q "$@"
