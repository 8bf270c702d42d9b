#!/usr/bin/env bash
# Client-compatibility suite: real AMQP client libraries, pinned, against warren.
#
#   tests/clients/run.sh [CLIENT...]        # all clients when none is named
#
# Clients: pika aio-pika kombu java amqplib amqp091-go lapin amqprs bunny php-amqplib amqp-tools
#
# For each client it installs the toolchain and library (idempotent, pinned, from
# PyPI / npm / crates.io / Debian apt), starts one warren on a free port with its own
# data dir (target/debug/warren, or $WARREN_BIN), runs the client's check program (one
# "PASS name" / "FAIL name: why" line per check, non-zero exit on any failure), and for
# libraries with automatic connection recovery runs the program in recovery mode,
# restarts warren under it on the same port and data dir, and checks that the client
# reconnects, redeclares its topology and goes on. For java and amqplib it also makes a
# test CA and certificates with openssl and gives that warren an AMQPS listener, for the
# clients' TLS checks (TlsTest.java, node/tls.js).
#
# To run against a broker you started yourself (e.g. RabbitMQ as the reference), set
# WARREN_AMQP_PORT (and WARREN_AMQP_HOST); recovery tests then need
# WARREN_RESTART_CMD, a command that restarts that broker (e.g. rabbitmqctl stop_app &&
# rabbitmqctl start_app), and for the TLS checks WARREN_AMQPS_PORT and WARREN_TLS_DIR
# (the files make_pki writes, the broker configured with them). A client whose
# toolchain cannot be installed fails the run.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
ALL_CLIENTS=(pika aio-pika kombu java amqplib amqp091-go lapin amqprs bunny php-amqplib amqp-tools)
# Libraries that have automatic connection recovery (and so get the restart test).
RECOVERY_CLIENTS=" aio-pika kombu java amqplib lapin bunny "

log() { printf '\n==> %s\n' "$*"; }
die() { echo "tests/clients/run.sh: $*" >&2; exit 2; }

apt_updated=0
apt_install() { # packages...: installs the missing ones
    local missing=()
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || { echo "need root to apt-get install ${missing[*]}" >&2; return 1; }
    export DEBIAN_FRONTEND=noninteractive
    if [ "$apt_updated" = 0 ]; then apt-get update -qq >&2 || return 1; apt_updated=1; fi
    echo "apt-get install ${missing[*]}" >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# ---------------------------------------------------------------- installs

py_venv="$here/python/.venv"
install_python() {
    command -v python3 >/dev/null || apt_install python3 python3-venv || return 1
    if [ ! -x "$py_venv/bin/python" ]; then
        # Debian's python3 needs python3-venv for this
        python3 -m venv "$py_venv" || { apt_install python3-venv && python3 -m venv --clear "$py_venv"; } || return 1
    fi
    if ! cmp -s "$here/python/requirements.txt" "$py_venv/.requirements.installed"; then
        "$py_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            -r "$here/python/requirements.txt" || return 1
        cp "$here/python/requirements.txt" "$py_venv/.requirements.installed"
    fi
}
install_pika() { install_python; }
install_aio-pika() { install_python; }
install_kombu() { install_python; }
install_java() {
    command -v javac >/dev/null || apt_install default-jdk-headless || return 1
    apt_install librabbitmq-client-java libslf4j-java
}
install_amqplib() {
    command -v node >/dev/null || apt_install nodejs || return 1
    command -v npm >/dev/null || apt_install npm || return 1
    local d="$here/node"
    if ! cmp -s "$d/package-lock.json" "$d/node_modules/.installed-lock" 2>/dev/null; then
        (cd "$d" && npm ci --no-audit --no-fund --loglevel=error) || return 1
        cp "$d/package-lock.json" "$d/node_modules/.installed-lock"
    fi
}
install_amqp091-go() { apt_install golang-go golang-github-rabbitmq-amqp091-go-dev; }
install_rust() {
    command -v cargo >/dev/null || { echo "cargo not found" >&2; return 1; }
    (cd "$here/rust" && cargo build --quiet --locked --release --target-dir "$here/rust/target") || return 1
}
install_lapin() { install_rust; }
install_amqprs() { install_rust; }
install_bunny() { apt_install ruby ruby-bunny; }
install_php-amqplib() { apt_install php-cli php-amqplib; }
install_amqp-tools() { apt_install amqp-tools; }

# ---------------------------------------------------------------- programs
# run_X: the feature checks. recover_X: the program in recovery mode (prints READY once
# its topology and consumer are set up, then waits for the restart and checks).
# Every program runs under a time limit, so a client that hangs fails instead.
T=(timeout -k 5 180)
TR=(timeout -k 5 100) # recovery mode: about 60 s waiting for the restart, 30 s to recover

run_pika() {
    local rc=0
    "${T[@]}" "$py_venv/bin/python" "$here/python/pika_blocking.py" || rc=1
    "${T[@]}" "$py_venv/bin/python" "$here/python/pika_asyncio.py" || rc=1
    return "$rc"
}
run_aio-pika() { "${T[@]}" "$py_venv/bin/python" "$here/python/aio_pika_client.py"; }
recover_aio-pika() { "${TR[@]}" "$py_venv/bin/python" "$here/python/aio_pika_client.py" recovery; }
run_kombu() {
    local rc=0
    "${T[@]}" "$py_venv/bin/python" "$here/python/kombu_client.py" || rc=1
    (cd "$here/python" && "${T[@]}" "$py_venv/bin/python" celery_client.py) || rc=1
    return "$rc"
}
recover_kombu() { (cd "$here/python" && "${TR[@]}" "$py_venv/bin/python" celery_client.py recovery); }
java_cp() {
    local cp=/usr/share/java/amqp-client.jar:/usr/share/java/slf4j-api.jar
    [ -f /usr/share/java/slf4j-nop.jar ] && cp="$cp:/usr/share/java/slf4j-nop.jar"
    echo "$cp"
}
java_build() {
    local b="$here/java/build"
    mkdir -p "$b"
    local t
    for t in ClientTest TlsTest; do
        if [ ! -f "$b/$t.class" ] || [ "$here/java/$t.java" -nt "$b/$t.class" ]; then
            javac -nowarn -encoding UTF-8 -cp "$(java_cp)" -d "$b" "$here/java/$t.java" || return 1
        fi
    done
}
run_java() {
    # The Spring-AMQP-style program (tests/java) covers the template/container/admin
    # patterns; ClientTest adds dead-lettering and automatic recovery.
    local rc=0
    "${T[@]}" "$root/tests/java/run.sh" || rc=1
    { java_build && timeout -k 5 90 java -cp "$here/java/build:$(java_cp)" ClientTest; } || rc=1
    run_tls java_tls || rc=1
    return "$rc"
}
java_tls() { java_build && timeout -k 5 90 java -cp "$here/java/build:$(java_cp)" TlsTest; }
recover_java() { java_build && "${TR[@]}" java -cp "$here/java/build:$(java_cp)" ClientTest recovery; }
run_amqplib() {
    local rc=0
    "${T[@]}" node "$here/node/promise_api.js" || rc=1
    "${T[@]}" node "$here/node/callback_api.js" || rc=1
    run_tls "${T[@]}" node "$here/node/tls.js" || rc=1
    return "$rc"
}
recover_amqplib() { "${TR[@]}" node "$here/node/promise_api.js" recovery; }
run_amqp091-go() {
    (cd "$here/go" && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= "${T[@]}" go run client.go)
}
run_lapin() { "${T[@]}" "$here/rust/target/release/lapin-client"; }
recover_lapin() { "${TR[@]}" "$here/rust/target/release/lapin-client" recovery; }
run_amqprs() { "${T[@]}" "$here/rust/target/release/amqprs-client"; }
run_bunny() { "${T[@]}" ruby "$here/ruby/bunny_client.rb"; }
recover_bunny() { "${TR[@]}" ruby "$here/ruby/bunny_client.rb" recovery; }
run_php-amqplib() { "${T[@]}" php "$here/php/client.php"; }
run_amqp-tools() { "${T[@]}" bash "$here/amqp-tools/client.sh"; }

# The TLS programs run against our own warren (AMQPS beside plaintext, see make_pki), or
# against an external broker when WARREN_AMQPS_PORT and WARREN_TLS_DIR name its TLS port
# and the files it was configured with; otherwise they are skipped, and say so.
run_tls() { # command...
    if [ -n "${WARREN_AMQPS_PORT:-}" ] && [ -n "${WARREN_TLS_DIR:-}" ]; then
        "$@"
        return
    fi
    if [ "${tls_broken:-0}" = 1 ]; then
        echo "FAIL tls: no test certificates (openssl failed)"
        return 1
    fi
    echo "SKIP tls: the external broker has no WARREN_AMQPS_PORT / WARREN_TLS_DIR"
}

# ---------------------------------------------------------------- brokers

external=0
[ -n "${WARREN_AMQP_PORT:-}" ] && external=1
host="${WARREN_AMQP_HOST:-127.0.0.1}"
broker_pid=""
broker_dir=""
broker_port=""

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The TLS test set-up (openssl from Debian): a CA, the server's certificate (localhost,
# 127.0.0.1), a client certificate, and a second CA with a "stranger" client certificate
# of its own; PKCS#12 copies of the client keys for Java (password changeit).
make_pki() { # dir
    command -v openssl >/dev/null || apt_install openssl || return 1
    (
        set -e
        cd "$1"
        ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
        for ca in ca other-ca; do
            openssl req -x509 "${ec[@]}" -days 2 -subj "/CN=warren clients test $ca" \
                -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
                -keyout "$ca.key" -out "$ca.pem" 2>/dev/null
        done
        issue() { # name CN CA extensions
            openssl req "${ec[@]}" -subj "/CN=$2/O=Warren Test" -keyout "$1.key" -out "$1.csr" 2>/dev/null
            printf '%s\n' "$4" >"$1.ext"
            openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 2 \
                -extfile "$1.ext" -out "$1.pem" 2>/dev/null
        }
        issue server localhost ca "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
        issue client client ca "extendedKeyUsage=clientAuth"
        issue stranger stranger other-ca "extendedKeyUsage=clientAuth"
        for c in client stranger; do
            openssl pkcs12 -export -in "$c.pem" -inkey "$c.key" -passout pass:changeit -out "$c.p12"
        done
    )
}

start_warren() { # uses broker_dir, broker_port (and tls_port with tls_dir: AMQPS beside)
    local tls=()
    if [ -n "${tls_dir:-}" ]; then
        tls=(--listen-tls "127.0.0.1:$tls_port" --tls-cert "$tls_dir/server.pem" --tls-key "$tls_dir/server.key"
            --tls-ca "$tls_dir/ca.pem" --tls-verify verify_peer)
    fi
    # The delayed-message exchange's plugin on, for the Java client's check of it.
    NO_COLOR=1 WARREN_RABBITMQ_ETC=off RABBITMQ_ENABLED_PLUGINS=rabbitmq_management,rabbitmq_delayed_message_exchange \
        "$warren_bin" --listen "127.0.0.1:$broker_port" --data-dir "$broker_dir/data" \
        --http-listen off --prometheus-listen off "${tls[@]}" >>"$broker_dir/warren.log" 2>&1 &
    broker_pid=$!
    local i
    for i in $(seq 1 100); do
        [ "$(grep -c "Server startup complete" "$broker_dir/warren.log" 2>/dev/null)" -ge "$1" ] && return 0
        kill -0 "$broker_pid" 2>/dev/null || break
        sleep 0.1
    done
    tail -20 "$broker_dir/warren.log" >&2
    echo "warren did not start on port $broker_port" >&2
    return 1
}
stop_warren() {
    [ -n "$broker_pid" ] || return 0
    kill "$broker_pid" 2>/dev/null
    wait "$broker_pid" 2>/dev/null
    broker_pid=""
}
starts=0
broker_up() {
    if [ "$external" = 1 ]; then
        export WARREN_AMQP_HOST="$host" WARREN_AMQP_PORT
        return 0
    fi
    broker_dir="$(mktemp -d)"
    broker_port="$(free_port)"
    tls_port="$(free_port)"
    starts=1
    start_warren 1 || return 1
    export WARREN_AMQP_HOST=127.0.0.1 WARREN_AMQP_PORT="$broker_port"
    [ -n "${tls_dir:-}" ] && export WARREN_AMQPS_PORT="$tls_port" WARREN_TLS_DIR="$tls_dir"
    return 0
}
broker_restart() {
    if [ "$external" = 1 ]; then
        [ -n "${WARREN_RESTART_CMD:-}" ] || { echo "no WARREN_RESTART_CMD for the external broker" >&2; return 1; }
        bash -c "$WARREN_RESTART_CMD" >&2
        return
    fi
    stop_warren
    sleep 1 # long enough for clients to see refused connections and retry
    starts=$((starts + 1))
    start_warren "$starts"
}
broker_down() {
    [ "$external" = 1 ] && return 0
    stop_warren
    [ -n "$broker_dir" ] && rm -rf "$broker_dir"
    broker_dir=""
}
trap 'broker_down; [ -n "${rec_pid:-}" ] && stop_rec; [ -n "${broker_dir_tmp:-}" ] && rm -rf "$broker_dir_tmp"' EXIT

stop_rec() { # the recovery-mode client and what it started (each also ends by itself, TR)
    pkill -TERM -P "$rec_pid" 2>/dev/null
    kill "$rec_pid" 2>/dev/null
    wait "$rec_pid" 2>/dev/null
    rec_pid=""
}
recovery_test() { # client
    local out="$broker_dir_tmp/recovery.out"
    : >"$out"
    "recover_$1" >"$out" 2>&1 &
    rec_pid=$!
    local i ready=0
    for i in $(seq 1 600); do
        grep -q '^READY' "$out" && { ready=1; break; }
        kill -0 "$rec_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ "$ready" = 0 ]; then
        cat "$out"
        echo "FAIL recovery: client never became ready"
        stop_rec
        return 1
    fi
    echo "  (restarting the broker under the running client)"
    if ! broker_restart; then
        stop_rec
        cat "$out"; echo "FAIL recovery: broker restart failed"; return 1
    fi
    echo "RESTARTED" >"$broker_dir_tmp/restarted"
    local rc
    wait "$rec_pid"; rc=$? # bounded by TR in recover_X
    rec_pid=""
    cat "$out"
    return "$rc"
}

# ---------------------------------------------------------------- main

clients=("$@")
[ "${#clients[@]}" -eq 0 ] && clients=("${ALL_CLIENTS[@]}")
for c in "${clients[@]}"; do
    case " ${ALL_CLIENTS[*]} " in *" $c "*) ;; *) die "unknown client '$c' (known: ${ALL_CLIENTS[*]})" ;; esac
done

warren_bin="${WARREN_BIN:-$root/target/debug/warren}"
if [ "$external" = 0 ] && [ ! -x "$warren_bin" ]; then
    (cd "$root" && cargo build --quiet -p warren) || die "cargo build -p warren failed"
fi

passed=()
failed=()
t_all=$(date +%s)
broker_dir_tmp="$(mktemp -d)"
export WARREN_CLIENTS_RESTARTED_FILE="$broker_dir_tmp/restarted"
tls_dir=""
if [ "$external" = 0 ] && [[ " ${clients[*]} " == *" java "* || " ${clients[*]} " == *" amqplib "* ]]; then
    tls_dir="$broker_dir_tmp/tls"
    mkdir -p "$tls_dir"
    make_pki "$tls_dir" || { tls_broken=1; tls_dir=""; }
fi
for c in "${clients[@]}"; do
    log "client $c"
    t0=$(date +%s)
    if ! "install_$c"; then
        echo "FAIL install: toolchain or library for $c could not be installed"
        failed+=("$c (install)")
        continue
    fi
    t1=$(date +%s)
    echo "  (install/build: $((t1 - t0)) s)"
    if ! broker_up; then
        failed+=("$c (broker start)")
        broker_down
        continue
    fi
    if "run_$c"; then passed+=("$c"); else failed+=("$c"); fi
    if [[ "$RECOVERY_CLIENTS" == *" $c "* ]]; then
        rm -f "$broker_dir_tmp/restarted"
        log "client $c: connection recovery"
        if recovery_test "$c"; then passed+=("$c recovery"); else failed+=("$c recovery"); fi
    fi
    if [ "$external" = 0 ] && ! kill -0 "$broker_pid" 2>/dev/null; then
        echo "warren died under $c; its log:" >&2
        tail -30 "$broker_dir/warren.log" >&2
        failed+=("$c (warren died)")
    fi
    broker_down
    echo "  ($c: $(($(date +%s) - t0)) s)"
done
rm -rf "$broker_dir_tmp"

log "client summary ($(($(date +%s) - t_all)) s)"
for s in "${passed[@]+"${passed[@]}"}"; do echo "  ok    $s"; done
for s in "${failed[@]+"${failed[@]}"}"; do echo "  FAIL  $s"; done
echo "clients: ${#passed[@]} ok, ${#failed[@]} failed"
[ "${#failed[@]}" -eq 0 ]
