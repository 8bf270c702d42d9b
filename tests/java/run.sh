#!/usr/bin/env bash
# Compile and run the Spring-AMQP-style compatibility test against a running broker.
#
#   WARREN_AMQP_PORT=5672 [WARREN_AMQP_HOST=127.0.0.1] tests/java/run.sh
#
# Does not start a broker.  Needs javac/java (JDK 11+) and the Debian package
# librabbitmq-client-java (installed with apt-get if missing and we are root).
# Exit code is the test program's: 0 only if every check passed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="$here/build"

die() {
    echo "run.sh: $*" >&2
    exit 2
}

command -v javac >/dev/null 2>&1 || die "javac not found; install a JDK (e.g. apt-get install openjdk-17-jdk-headless)"
command -v java >/dev/null 2>&1 || die "java not found; install a JDK (e.g. apt-get install openjdk-17-jdk-headless)"

find_client_jar() {
    local j
    for j in /usr/share/java/amqp-client.jar /usr/share/java/amqp-client-*.jar; do
        if [[ -f "$j" ]]; then
            echo "$j"
            return 0
        fi
    done
    if command -v dpkg >/dev/null 2>&1; then
        j="$(dpkg -L librabbitmq-client-java 2>/dev/null | grep -E '/amqp-client[^/]*\.jar$' | head -n1 || true)"
        if [[ -n "$j" && -f "$j" ]]; then
            echo "$j"
            return 0
        fi
    fi
    return 1
}

client_jar="$(find_client_jar || true)"
if [[ -z "$client_jar" ]]; then
    command -v apt-get >/dev/null 2>&1 || die "RabbitMQ Java client jar not found and apt-get unavailable"
    if [[ "$(id -u)" -ne 0 ]]; then
        die "RabbitMQ Java client jar not found; run: sudo apt-get install librabbitmq-client-java"
    fi
    echo "run.sh: installing librabbitmq-client-java" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends librabbitmq-client-java >&2 \
        || die "apt-get install librabbitmq-client-java failed"
    client_jar="$(find_client_jar || true)"
    [[ -n "$client_jar" ]] || die "librabbitmq-client-java installed but amqp-client jar not found"
fi

# slf4j (dependency of the client, Debian package libslf4j-java).  slf4j-nop keeps
# the client quiet; without a binding slf4j prints a one-time warning only.
slf4j_api=""
for j in /usr/share/java/slf4j-api.jar /usr/share/java/slf4j-api-*.jar; do
    [[ -f "$j" ]] && { slf4j_api="$j"; break; }
done
[[ -n "$slf4j_api" ]] || die "slf4j-api.jar not found under /usr/share/java (install libslf4j-java)"
slf4j_binding=""
for j in /usr/share/java/slf4j-nop.jar /usr/share/java/slf4j-nop-*.jar; do
    [[ -f "$j" ]] && { slf4j_binding="$j"; break; }
done

cp="$client_jar:$slf4j_api"
[[ -n "$slf4j_binding" ]] && cp="$cp:$slf4j_binding"

rm -rf "$build"
mkdir -p "$build"
javac -nowarn -encoding UTF-8 -cp "$cp" -d "$build" "$here/SpringStyleTest.java" \
    || die "compilation failed"

set +e
# Hard outer bound in case the JVM itself wedges (the program bounds its own waits).
if command -v timeout >/dev/null 2>&1; then
    timeout -k 5 90 java -cp "$build:$cp" SpringStyleTest
else
    java -cp "$build:$cp" SpringStyleTest
fi
rc=$?
set -e
exit "$rc"
