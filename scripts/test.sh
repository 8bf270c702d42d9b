#!/usr/bin/env bash
# Runs every test of warren: unit tests, lapin integration tests, the pika suite, the
# web UI suite (tests/ui, headless Chromium), the warren-broker wheel with its pytest
# plugin (python/warren-broker), the seed client scripts and the
# client-library compatibility suite (tests/clients: pika, aio-pika, kombu/Celery, the
# Java client incl. the Spring-AMQP-style check, amqplib, amqp091-go, lapin, amqprs,
# Bunny, php-amqplib, amqp-tools), and the Docker image tests (tests/docker).
#
# Installs what it needs itself: the Python venv with pinned pika (tests/python/run.sh),
# Debian's chromium and chromium-driver and a venv with pinned Selenium
# (tests/ui/run.sh), and every client library and toolchain of tests/clients
# (tests/clients/run.sh). The seed scripts hard-code localhost:5672, so the broker for
# the pika suite runs on 127.0.0.1:5672 and the run fails loudly if that port is taken.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

log() { printf '\n==> %s\n' "$*"; }

suites_failed=()
suites_skipped=()
suites_passed=()
record() { # name status
    if [ "$2" -eq 0 ]; then suites_passed+=("$1"); else suites_failed+=("$1"); fi
}

log "cargo build (workspace)"
cargo build --workspace --all-targets

log "cargo test (unit tests and lapin integration tests)"
# The integration harness uses this binary (built above) instead of building its own,
# which `-p warren` alone would redo with other feature unification.
export WARREN_BIN="$root/target/debug/warren"
set +e
cargo test --workspace --no-fail-fast
record "cargo test" $?
set -e

port="${WARREN_TEST_PORT:-5672}"
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is already in use; the client suites need it (the seed scripts hard-code localhost:5672). Stop whatever listens there." >&2
    exit 1
fi
# Management API and Prometheus ports, for tests/python/test_management.py.
http_port="${WARREN_TEST_HTTP_PORT:-15672}"
metrics_port="${WARREN_TEST_METRICS_PORT:-15692}"
for p in "$http_port" "$metrics_port"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "port $p on 127.0.0.1 is already in use (management API / metrics for the client suites)." >&2
        exit 1
    fi
done

data_dir="$(mktemp -d)"
broker_log="$data_dir/warren.log"
log "starting warren on 127.0.0.1:$port (log: $broker_log)"
# The delayed-message exchange's plugin on, for tests/python/test_delayed_exchange.py.
NO_COLOR=1 WARREN_RABBITMQ_ETC=off RABBITMQ_ENABLED_PLUGINS=rabbitmq_management,rabbitmq_delayed_message_exchange target/debug/warren --listen "127.0.0.1:$port" --data-dir "$data_dir/data" \
    --http-listen "127.0.0.1:$http_port" --prometheus-listen "127.0.0.1:$metrics_port" >"$broker_log" 2>&1 &
broker_pid=$!
cleanup() {
    kill "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    grep -q "Server startup complete" "$broker_log" 2>/dev/null && break
    kill -0 "$broker_pid" 2>/dev/null || { cat "$broker_log"; echo "warren exited early" >&2; exit 1; }
    sleep 0.1
done
grep -q "Server startup complete" "$broker_log" || { cat "$broker_log"; echo "warren did not start" >&2; exit 1; }

export WARREN_AMQP_HOST=127.0.0.1 WARREN_AMQP_PORT="$port" WARREN_SEED_CLIENTS=1
export WARREN_HTTP_PORT="$http_port" WARREN_METRICS_PORT="$metrics_port"

log "pika suite (tests/python, management API and TLS tests included)"
# test_tls.py makes its certificates with the openssl CLI (Debian's openssl package).
if ! command -v openssl >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq openssl >/dev/null || true
fi
set +e
tests/python/run.sh -q
record "pika suite" $?
set -e

if ! kill -0 "$broker_pid" 2>/dev/null; then
    echo "warren died during the client suites; its log:" >&2
    tail -50 "$broker_log" >&2
    record "broker alive" 1
fi

# The management web UI in headless Chromium (tests/ui: Selenium, Debian's chromium and
# chromium-driver, installed by the script when missing); it starts its own warren
# ($WARREN_BIN) on ephemeral ports.
log "web UI (tests/ui, headless Chromium)"
set +e
tests/ui/run.sh -q
record "web UI" $?
set -e

# The pip-installable package: wheel built around target/debug/warren, installed into a
# fresh venv, the pytest plugin's tests and examples/pytest-project run with it (each
# session starts its own warren on free ports).
log "warren-broker wheel and pytest plugin (python/warren-broker)"
set +e
WARREN_WHEEL_BINARY="$root/target/debug/warren" python/warren-broker/run_tests.sh
record "warren-broker wheel" $?
set -e

# Each client gets its own warren on a free port (restarted under it for the recovery
# tests), so this does not use the broker on $port. The Java Spring-AMQP-style check
# (tests/java) runs in here, as part of the java client.
log "client libraries (tests/clients)"
set +e
env -u WARREN_AMQP_PORT -u WARREN_AMQP_HOST tests/clients/run.sh
record "client libraries" $?
set -e

# The image as a drop-in for rabbitmq:3-management (docker engine, base image and images
# are made by the script itself when missing; WARREN_SKIP_DOCKER=1 skips it on machines
# that cannot run an engine, and says so in the summary).
if [ "${WARREN_SKIP_DOCKER:-0}" = 1 ]; then
    log "docker tests skipped (WARREN_SKIP_DOCKER=1)"
    suites_skipped+=("docker drop-in (WARREN_SKIP_DOCKER=1)")
else
    log "docker drop-in (tests/docker)"
    set +e
    tests/docker/run.sh -q
    record "docker drop-in" $?
    set -e
fi

log "summary"
for s in "${suites_passed[@]}"; do echo "  ok    $s"; done
for s in "${suites_failed[@]+"${suites_failed[@]}"}"; do echo "  FAIL  $s"; done
for s in "${suites_skipped[@]+"${suites_skipped[@]}"}"; do echo "  SKIP  $s"; done
echo "${#suites_passed[@]} passed, ${#suites_failed[@]} failed"
[ "${#suites_failed[@]}" -eq 0 ]
