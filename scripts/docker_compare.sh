#!/usr/bin/env bash
# warren:dev next to a RabbitMQ image built from Debian's rabbitmq-server (3.10.8): image
# size, time from `docker run` until `rabbitmq-diagnostics -q ping` succeeds (polled every
# 0.1 s), and `docker stop` time. Prints a markdown table for docs/benchmarks.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
runs="${RUNS:-3}"
scripts/docker_image.sh >/dev/null
docker image inspect warren-compare-rabbitmq:3.10 >/dev/null 2>&1 ||
    docker build -q -t warren-compare-rabbitmq:3.10 -f docker/compare/rabbitmq.Dockerfile docker/compare >/dev/null

measure() { # image [docker run options] -> "start_s stop_s"
    local cid t0 t1 t2 image="$1"
    shift
    t0=$(date +%s.%N)
    cid=$(docker run -d "$@" "$image")
    until docker exec "$cid" rabbitmq-diagnostics -q ping >/dev/null 2>&1; do
        sleep 0.1
        if [ "$(docker inspect --format '{{.State.Running}}' "$cid")" != true ]; then
            docker logs "$cid" >&2; exit 1
        fi
    done
    t1=$(date +%s.%N)
    docker stop -t 60 "$cid" >/dev/null
    t2=$(date +%s.%N)
    docker rm -v "$cid" >/dev/null
    echo "$(echo "$t1 - $t0" | bc) $(echo "$t2 - $t1" | bc)"
}

echo "| image | size | start until ping succeeds (median of $runs) | docker stop (median) |"
echo "|---|---|---|---|"
# Debian's rabbitmq-server script does not pass SIGTERM on as PID 1 (the official image's
# entrypoint execs the VM so that it does): --init gives it the same chance.
for image in warren:dev warren-compare-rabbitmq:3.10; do
    opts=()
    [ "$image" = warren:dev ] || opts=(--init)
    size=$(docker image inspect --format '{{.Size}}' "$image")
    starts=(); stops=()
    for _ in $(seq 1 "$runs"); do
        read -r s t < <(measure "$image" "${opts[@]+"${opts[@]}"}")
        starts+=("$s"); stops+=("$t")
    done
    med() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
    printf '| %s | %.1f MB | %.2f s | %.2f s |\n' "$image" "$(echo "$size / 1000000" | bc -l)" \
        "$(med "${starts[@]}")" "$(med "${stops[@]}")"
done
