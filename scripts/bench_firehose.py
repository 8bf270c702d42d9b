#!/usr/bin/env python3
"""Firehose A/B: transient scenario (1 producer, 1 consumer, 16 B, auto-ack) against
before/after binaries, alternating, one broker at a time. Modes: before (main),
after-off (this branch, tracing off), after-on (tracing on, nothing bound to the trace
exchange), after-on-bound (tracing on, a queue with x-max-length 1000 bound with '#').
usage: scripts/bench_firehose.py BEFORE AFTER PERF REPS DURATION"""
import json, os, subprocess, sys, tempfile, time, statistics, urllib.request, base64, shutil
before, after, perf, reps, dur = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
AMQP = int(os.environ.get("BENCH_AMQP_PORT", "27310"))
HTTP = int(os.environ.get("BENCH_HTTP_PORT", "27311"))
AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()
def http(method, path, body=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (HTTP, path), method=method,
        data=None if body is None else json.dumps(body).encode(), headers={"Authorization": AUTH, "Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=10).status
def cpu(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def run(binary, mode):
    tmp = tempfile.mkdtemp(prefix="trace-bench-")
    p = subprocess.Popen([binary, "--listen", "127.0.0.1:%d" % AMQP, "--data-dir", tmp + "/data", "--log", "warn",
        "--http-listen", "127.0.0.1:%d" % HTTP, "--prometheus-listen", "off"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, WARREN_RABBITMQ_ETC="off"))
    try:
        for _ in range(100):
            try: http("GET", "/api/overview"); break
            except Exception: time.sleep(0.1)
        if mode.startswith("after-on"):
            http("PUT", "/api/vhosts/%2F", {"tracing": True})
        if mode == "after-on-bound":
            http("PUT", "/api/queues/%2F/tq", {"arguments": {"x-max-length": 1000}})
            http("POST", "/api/bindings/%2F/e/amq.rabbitmq.trace/q/tq", {"routing_key": "#"})
        subprocess.run(["sync"])
        c0 = cpu(p.pid)
        out = subprocess.run([perf, "perf", "--uri", "127.0.0.1:%d" % AMQP, "--json", "--quiet", "-z", str(dur),
            "-x", "1", "-y", "1", "-s", "16", "--auto-ack"], capture_output=True, text=True, timeout=dur + 60)
        c1 = cpu(p.pid)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        return r["received_rate"], (c1 - c0) * 1e6 / max(r["received"], 1)
    finally:
        p.kill(); p.wait(); shutil.rmtree(tmp, ignore_errors=True)
modes = [("before", before), ("after-off", after), ("after-on", after), ("after-on-bound", after)]
res = {m: [] for m, _ in modes}
for i in range(reps):
    for m, b in modes:
        rate, c = run(b, m)
        res[m].append((rate, c))
        print("rep %d %-15s %9.0f msg/s %.2f us/msg" % (i, m, rate, c), flush=True)
print("| mode | median msg/s | runs msg/s | median CPU us/msg |\n|---|---|---|---|")
for m, _ in modes:
    rates = [r for r, _ in res[m]]; cs = [c for _, c in res[m]]
    print("| %s | %.0f | %s | %.2f |" % (m, statistics.median(rates), ", ".join("%.0f" % r for r in rates), statistics.median(cs)))
