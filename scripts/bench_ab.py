#!/usr/bin/env python3
"""Before/after benchmark of two warren builds on this machine: the throughput scenarios of
bench.py against each binary in turn (alternating every repetition, one broker running at a
time, `sync` before each run), with the same load generator (`warren perf` of this tree's
release build). Prints a markdown table of medians and the after/before ratio.

    scripts/bench_ab.py BEFORE_BIN AFTER_BIN      (make bench-ab BEFORE=<rev> builds both)

BENCH_REPS, BENCH_DURATION and BENCH_SCENARIOS tune it as for bench.py.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (shares the scenarios, the perf runner and the broker wrapper)

THROUGHPUT = [s for s in bench.SCENARIOS if s[2] in ("received", "fanout") and s[0] != "large"]
LATENCY = [s for s in bench.SCENARIOS if s[2] == "p99"]
METRICS = ("received_rate", "cpu_us_per_msg")


class Build(bench.Warren):
    """A warren broker started from a given binary."""

    def __init__(self, name, port, binary):
        super().__init__(name, port)
        self.binary = binary

    def start(self):
        self.tmp = tempfile.mkdtemp(prefix="bench-ab-")
        self.proc = subprocess.Popen(
            [self.binary, "--listen", "127.0.0.1:%d" % self.port, "--data-dir",
             os.path.join(self.tmp, "data"), "--log", "warn",
             "--http-listen", "off", "--prometheus-listen", "off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=dict(os.environ, WARREN_RABBITMQ_ETC="off"))
        self.pid = self.proc.pid
        return bench.wait_for_start(self.port, time.monotonic() + 30)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    builds = [Build("before", 5811, sys.argv[1]), Build("after", 5812, sys.argv[2])]
    scenarios = [s for s in THROUGHPUT + LATENCY if not bench.ONLY or s[0] in bench.ONLY]
    results = {(b.name, s[0]): [] for b in builds for s in scenarios}
    for rep in range(bench.REPS):
        for b in builds:
            if not b.start():
                sys.exit("%s did not start" % b.binary)
            try:
                for name, args, _, _ in scenarios:
                    os.sync()
                    r = bench.perf(b, args, bench.LONGER.get(name, bench.DURATION))
                    if "error" in r:
                        print("%s %s: %s" % (b.name, name, r["error"]), file=sys.stderr)
                        continue
                    results[(b.name, name)].append(r)
                    print("rep %d %-7s %-20s %12.0f msg/s %6.2f us/msg" % (
                        rep + 1, b.name, name, r["received_rate"], r["cpu_us_per_msg"]),
                        file=sys.stderr)
            finally:
                b.stop()
    print("| scenario | before msg/s | after msg/s | after/before | before CPU us/msg | after CPU us/msg |")
    print("|---|---|---|---|---|---|")
    for name, _, metric, desc in scenarios:
        before, after = results[("before", name)], results[("after", name)]
        if metric == "p99" and before and after:
            pb = statistics.median(r["latency_us_p99"] for r in before)
            pa = statistics.median(r["latency_us_p99"] for r in after)
            print("| %s (%s): p99 latency us | %.0f | %.0f | %.3f (lower is better) | | |" % (
                name, desc, pb, pa, pa / pb))
            continue
        if not before or not after:
            print("| %s | failed | failed | n/a | | |" % name)
            continue
        mb, ma = ({k: statistics.median(r[k] for r in runs) for k in METRICS}
                  for runs in (before, after))
        print("| %s (%s) | %.0f | %.0f | %.3f | %.2f | %.2f |" % (
            name, desc, mb["received_rate"], ma["received_rate"],
            ma["received_rate"] / mb["received_rate"], mb["cpu_us_per_msg"], ma["cpu_us_per_msg"]))


if __name__ == "__main__":
    main()
