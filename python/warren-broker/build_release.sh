#!/usr/bin/env bash
# The release wheel: maturin (pinned, in its own venv) compiles crates/warren with the
# release profile and packs the stripped executable with the pytest plugin (`bin`
# bindings, see pyproject.toml). `make wheel`; slow (a full release build), so not part of
# `make test`, which packs target/debug/warren with build_wheel.py instead.
# Prints the wheel's path, the only line on stdout (maturin and pip talk on stderr);
# wheels go to $WHEEL_DIR (default <cargo target dir>/wheels).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
out="${WHEEL_DIR:-$target/wheels}"
venv="$target/maturin-venv"
maturin_version=1.16.0
if ! "$venv/bin/maturin" --version 2>/dev/null | grep -qx "maturin $maturin_version"; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "maturin==$maturin_version" >&2
fi
rm -f "$out"/warren_broker-*.whl
# maturin finds pyproject.toml (and through it crates/warren) in the current directory.
(cd "$here" && "$venv/bin/maturin" build --release --out "$out" >&2)
ls "$out"/warren_broker-*.whl
