#!/usr/bin/env bash
# Builds the image (default tag warren:dev, or $WARREN_IMAGE) from the release binary built
# here, with docker/Dockerfile.prebuilt: a build context of the binary and docker/ only.
# (docker/Dockerfile builds the same image from source, for users with a registry.)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
image="${WARREN_IMAGE:-warren:dev}"

scripts/docker_engine.sh
cargo build --release -p warren
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
# The release profile keeps line tables for profiling; the image does not need them.
strip -o "$ctx/warren" "${CARGO_TARGET_DIR:-target}/release/warren"
mkdir "$ctx/docker"
cp -r docker/etc docker/rootfs.sh "$ctx/docker/"
docker build -q -f docker/Dockerfile.prebuilt -t "$image" "$ctx" >/dev/null
size=$(docker image inspect --format '{{.Size}}' "$image")
echo "built $image ($((size / 1000000)) MB)"
