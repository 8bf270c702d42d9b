#!/usr/bin/env bash
# Debian's amqp-tools (librabbitmq's amqp-declare-queue, amqp-publish, amqp-get,
# amqp-consume, amqp-delete-queue), used the way shell scripts and cron jobs use them.
# They have no confirms, mandatory flag, nack or automatic recovery; see docs/compatibility.md.
set -uo pipefail

url="amqp://guest:guest@${WARREN_AMQP_HOST:-127.0.0.1}:${WARREN_AMQP_PORT:-5672}"
run="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
q="clients.amqp-tools.$run.q"
passed=0
failed=0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# amqp-consume pipes each message body to this command's standard input
printf '#!/bin/sh\ncat\necho\n' >"$tmp/each"
chmod +x "$tmp/each"

check() { # label command...
    local label="$1"; shift
    local out
    if out="$("$@" 2>&1)"; then
        passed=$((passed + 1)); echo "PASS $label"
    else
        failed=$((failed + 1)); echo "FAIL $label: $out"
    fi
}
eq() { [ "$2" = "$3" ] || { echo "$1: expected '$2', got '$3'"; return 1; }; }

declare_queue() {
    eq "declared name" "$q" "$(amqp-declare-queue -u "$url" -q "$q" -d)" || return 1
    local anon
    anon="$(amqp-declare-queue -u "$url" -q "")" || return 1
    [[ "$anon" == amq.gen-* ]] || { echo "server-named queue: $anon"; return 1; }
}

publish_get() {
    amqp-publish -u "$url" -r "$q" -p -C text/plain -H "app: tools" -t "$q.reply" -b "hello" || return 1
    eq "amqp-get body" "hello" "$(amqp-get -u "$url" -q "$q")" || return 1
    # empty queue: amqp-get exits non-zero and prints nothing
    if amqp-get -u "$url" -q "$q" >/dev/null 2>&1; then echo "amqp-get on an empty queue succeeded"; return 1; fi
}

line_buffered_consume() {
    printf 'one\ntwo\nthree\n' | amqp-publish -u "$url" -r "$q" -l || return 1
    # -c 3: stop after three, -p 1: prefetch one; each message is piped to the command
    timeout 10 amqp-consume -u "$url" -q "$q" -c 3 -p 1 "$tmp/each" >"$tmp/out" || return 1
    eq "consumed" "one two three" "$(tr -s '\n' ' ' <"$tmp/out" | sed 's/ *$//')"
}

consume_bound() {
    # amqp-consume -e/-r declares an exclusive server-named queue and binds it
    timeout 10 amqp-consume -u "$url" -e amq.topic -r "clients.$run.#" -c 2 "$tmp/each" >"$tmp/bound" &
    local pid=$!
    local i
    for i in $(seq 1 50); do
        sleep 0.1
        amqp-publish -u "$url" -e amq.topic -r "clients.$run.a.b" -b "m$i" || return 1
        [ "$(wc -l <"$tmp/bound")" -ge 2 ] && break
    done
    wait "$pid" || { echo "amqp-consume exited non-zero"; return 1; }
    [ "$(wc -l <"$tmp/bound")" -eq 2 ] || { echo "got: $(cat "$tmp/bound")"; return 1; }
}

delete_queue() {
    amqp-publish -u "$url" -r "$q" -b "left" || return 1
    amqp-delete-queue -u "$url" -q "$q" >"$tmp/del" 2>&1 || { cat "$tmp/del"; return 1; }
    if amqp-get -u "$url" -q "$q" >"$tmp/gone" 2>&1; then echo "queue still there"; return 1; fi
    grep -q "NOT_FOUND - no queue '$q' in vhost '/'" "$tmp/gone" || { echo "amqp-get on a deleted queue: $(cat "$tmp/gone")"; return 1; }
}

check connect-declare declare_queue
check publish-get publish_get
check prefetch-consume line_buffered_consume
check consume-bound consume_bound
check delete-queue delete_queue
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
