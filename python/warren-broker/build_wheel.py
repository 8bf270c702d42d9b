#!/usr/bin/env python3
"""Packs an already built warren executable and the Python sources into a wheel.

The same wheel layout maturin's `bin` bindings produce (the executable under
`<name>.data/scripts/`, the package, `entry_points.txt` with the pytest plugin), without
compiling: the test suite reuses `target/debug/warren`. Releases use maturin (see
pyproject.toml).

    build_wheel.py --binary target/debug/warren --out dist/
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    tomllib = None

HERE = Path(__file__).resolve().parent


def project() -> dict:
    text = (HERE / "pyproject.toml").read_text()
    if tomllib is not None:
        return tomllib.loads(text)["project"]
    # Enough of TOML for this file's name/version/description lines.
    out = {}
    for line in text.splitlines():
        for key in ("name", "version", "description"):
            if line.startswith(f"{key} = "):
                out.setdefault(key, line.split("=", 1)[1].strip().strip('"'))
    return out


def platform_tag() -> str:
    machine = platform.machine().lower()
    system = platform.system().lower()
    return f"{system}_{machine}"


def record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True, help="the warren executable to pack")
    ap.add_argument("--out", default="dist", help="directory for the wheel")
    ap.add_argument("--no-strip", action="store_true", help="keep debug symbols")
    args = ap.parse_args()

    meta = project()
    name, version = meta["name"], meta["version"]
    dist = name.replace("-", "_")
    binary = Path(args.binary)
    if not binary.is_file():
        print(f"no executable at {binary}", file=sys.stderr)
        return 1
    exe = binary.read_bytes()
    if not args.no_strip and shutil.which("strip"):
        # A debug build carries hundreds of MiB of symbols no test needs.
        with tempfile.TemporaryDirectory() as tmp:
            stripped = Path(tmp) / "warren"
            shutil.copyfile(binary, stripped)
            if subprocess.run(["strip", str(stripped)]).returncode == 0:
                exe = stripped.read_bytes()

    tag = f"py3-none-{platform_tag()}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wheel_path = out / f"{dist}-{version}-{tag}.whl"
    info = f"{dist}-{version}.dist-info"
    files: list[tuple[str, bytes, int]] = []
    for src in sorted((HERE / "src" / "warren_broker").glob("*.py")):
        files.append((f"warren_broker/{src.name}", src.read_bytes(), 0o644))
    files.append((f"{dist}-{version}.data/scripts/warren", exe, 0o755))
    readme = (HERE / "README.md").read_text() if (HERE / "README.md").exists() else ""
    metadata = (
        "Metadata-Version: 2.1\n"
        f"Name: {name}\n"
        f"Version: {version}\n"
        f"Summary: {meta.get('description', '')}\n"
        "License: MIT OR Apache-2.0\n"
        "Classifier: Framework :: Pytest\n"
        "Requires-Python: >=3.8\n"
        "Description-Content-Type: text/markdown\n\n" + readme
    )
    files.append((f"{info}/METADATA", metadata.encode(), 0o644))
    wheel = (
        "Wheel-Version: 1.0\n"
        "Generator: warren build_wheel.py\n"
        "Root-Is-Purelib: false\n"
        f"Tag: {tag}\n"
    )
    files.append((f"{info}/WHEEL", wheel.encode(), 0o644))
    entry_points = "[pytest11]\nwarren = warren_broker.pytest_plugin\n"
    files.append((f"{info}/entry_points.txt", entry_points.encode(), 0o644))
    record = [record_line(a, d) for a, d, _ in files] + [f"{info}/RECORD,,"]
    files.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode(), 0o644))

    with zipfile.ZipFile(wheel_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for arcname, data, mode in files:
            zi = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = (0o100000 | mode) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    print(wheel_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
