#!/usr/bin/env bash
# Makes sure a Docker engine answers and the base image exists, on a machine with no image
# registry: installs Debian's docker.io, docker-compose and debootstrap when missing,
# starts dockerd in the background when no engine answers (its PID goes to
# $WARREN_DOCKERD_PIDFILE so the caller can stop what it started), and makes
# debian:bookworm-slim with debootstrap when the engine does not have it.
set -euo pipefail

need=()
command -v docker >/dev/null || need+=(docker.io)
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    log="${TMPDIR:-/tmp}/warren-dockerd.log"
    echo "starting dockerd (log: $log)"
    dockerd >"$log" 2>&1 &
    echo $! >"${WARREN_DOCKERD_PIDFILE:-/dev/null}"
    for _ in $(seq 1 120); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { tail -20 "$log"; echo "dockerd did not start" >&2; exit 1; }
fi

if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
    dir="$(mktemp -d)"
    echo "making debian:bookworm-slim with debootstrap in $dir"
    debootstrap --variant=minbase bookworm "$dir" http://deb.debian.org/debian >/dev/null
    tar -C "$dir" -c . | docker import - debian:bookworm-slim >/dev/null
    rm -rf "$dir"
fi
