#!/usr/bin/env bash
# Runs the whole suite (scripts/test.sh, what `make test` runs) N times in a row and stops
# at the first red run: the check that the suite does not flake. With BESIDE="command"
# that command runs in the background for the whole time (for example a `cargo build`
# of another checkout in a loop), so the suite is tried on a loaded machine.
#   scripts/test_repeat.sh 5
#   BESIDE='while :; do cargo build -q --release --manifest-path ../other/Cargo.toml; cargo clean -q --manifest-path ../other/Cargo.toml; done' scripts/test_repeat.sh 5
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
runs="${1:-5}"
logdir="${TEST_REPEAT_LOGS:-$root/target/test-repeat}"
mkdir -p "$logdir"

beside_pid=""
if [ -n "${BESIDE:-}" ]; then
    setsid bash -c "$BESIDE" >"$logdir/beside.log" 2>&1 &
    beside_pid=$!
    echo "running beside the suite (pid $beside_pid): $BESIDE"
fi
stop_beside() {
    if [ -n "$beside_pid" ]; then
        kill -- "-$beside_pid" 2>/dev/null || true
        wait "$beside_pid" 2>/dev/null || true
    fi
}
trap stop_beside EXIT

passed=0
for i in $(seq 1 "$runs"); do
    start=$(date +%s)
    if scripts/test.sh >"$logdir/run-$i.log" 2>&1; then
        passed=$((passed + 1))
        echo "run $i/$runs: passed in $(( $(date +%s) - start )) s"
    else
        echo "run $i/$runs: FAILED after $(( $(date +%s) - start )) s; log: $logdir/run-$i.log"
        grep -E "FAILED|failed|panicked" "$logdir/run-$i.log" | head -20
        echo "$passed of $runs runs passed before the failure"
        exit 1
    fi
done
echo "all $runs runs passed"
