#!/usr/bin/env python3
"""Durability benchmarks, warren against RabbitMQ on this machine (run by `make bench-durability`):

* backlog: N persistent 1 KiB messages published with confirms into a durable queue with
  no consumer (warren with a 64 MiB memory budget, so the backlog is mostly on disk), then
  drained by one consumer with manual acks; publish and drain rates;
* recovery: the broker is stopped with the backlog in place and started again; time until
  it accepts AMQP connections and reports the whole backlog in queue.declare-ok, and its
  resident memory then.

With BENCH_BIG=N (e.g. 10000000) warren alone also runs the same steps with N messages
and its peak resident memory (VmHWM) is reported: the "queue larger than memory" check.
RabbitMQ is left out of that run (at ~18k msg/s it would take most of an hour).

Results go to the hand-kept part of docs/benchmarks.md (replacing the sections of the
same names). Every broker process is started here and stopped by its PID.
"""
import os
import re
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (shared broker classes and helpers)

N = int(os.environ.get("BENCH_BACKLOG", "1000000"))
SIZE = 1024
ROOT = bench.ROOT
SECTION = "## Durability: backlog and recovery"
BIG = int(os.environ.get("BENCH_BIG", "0"))
BIG_SECTION = "## Durability: a queue far larger than memory"


def peak_rss_mib(b):
    """Peak resident memory of the broker's processes so far (VmHWM), MiB."""
    total = 0
    for p in b.pids():
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def dir_mib(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total / 2**20


def frame(ch, payload):
    return struct.pack(">BHI", 1, ch, len(payload)) + payload + b"\xce"


def read_method(sock):
    buf = b""
    while True:
        while len(buf) < 7:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        kind, _, size = struct.unpack(">BHI", buf[:7])
        while len(buf) < 8 + size:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        payload, buf = buf[7:7 + size], buf[8 + size:]
        if kind == 1:
            return payload


def queue_count(port, queue):
    """Passive queue.declare over a raw connection: the message count, or None."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        return None
    try:
        s.sendall(b"AMQP\x00\x00\x09\x01")
        read_method(s)
        s.sendall(frame(0, struct.pack(">HH", 10, 11) + struct.pack(">I", 0) + b"\x05PLAIN"
                        + struct.pack(">I", 12) + b"\x00guest\x00guest" + b"\x05en_US"))
        read_method(s)
        s.sendall(frame(0, struct.pack(">HHHIH", 10, 31, 2047, 131072, 0))
                  + frame(0, struct.pack(">HH", 10, 40) + b"\x01/\x00\x00"))
        read_method(s)
        s.sendall(frame(1, struct.pack(">HH", 20, 10) + b"\x00"))
        read_method(s)
        q = queue.encode()
        s.sendall(frame(1, struct.pack(">HHH", 50, 10, 0) + bytes([len(q)]) + q + b"\x01"
                        + struct.pack(">I", 0)))
        p = read_method(s)
        cls, meth = struct.unpack(">HH", p[:4])
        if (cls, meth) != (50, 11):
            return None
        n = p[4]
        return struct.unpack(">I", p[5 + n:9 + n])[0]
    except (OSError, ConnectionError):
        return None
    finally:
        s.close()


def perf(port, args, timeout):
    cmd = [bench.WARREN, "perf", "--uri", "127.0.0.1:%d" % port, "--json", "--quiet", "--keep"] + args
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    import json
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "{}"
    return json.loads(line) if line.startswith("{") else {"error": out.stderr[-300:]}


class WarrenD(bench.Warren):
    """warren with a fixed data directory across restarts and a 64 MiB memory budget."""

    def start(self):
        if not self.tmp:
            import tempfile
            self.tmp = tempfile.mkdtemp(prefix="bench-warren-d-")
            with open(os.path.join(self.tmp, "warren.toml"), "w") as f:
                f.write("memory_budget_mb = 64\n")
        t0 = time.monotonic()
        self.proc = subprocess.Popen([bench.WARREN, "--listen", "127.0.0.1:%d" % self.port, "--data-dir",
                                      os.path.join(self.tmp, "data"), "--config",
                                      os.path.join(self.tmp, "warren.toml"), "--log", "warn",
                                      "--http-listen", "off", "--prometheus-listen", "off"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=dict(os.environ, WARREN_RABBITMQ_ETC="off"))
        self.pid = self.proc.pid
        ok = bench.wait_for_start(self.port, time.monotonic() + 600)
        self.boot_s = time.monotonic() - t0 if ok else None
        return ok


class RabbitD(bench.RabbitMQ):
    def start(self):
        if self.tmp:
            # Restart on the same node directory.
            env = dict(os.environ,
                       RABBITMQ_NODE_PORT=str(self.port), RABBITMQ_DIST_PORT=str(self.port + 20000),
                       RABBITMQ_NODENAME="rabbit_bench_%d@localhost" % self.port,
                       RABBITMQ_MNESIA_BASE=os.path.join(self.tmp, "mnesia"),
                       RABBITMQ_LOG_BASE=os.path.join(self.tmp, "log"),
                       RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(self.tmp, "enabled_plugins"))
            t0 = time.monotonic()
            self.proc = subprocess.Popen(bench.rabbitmq_command(), env=env, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True)
            self.pid = self.proc.pid
            ok = bench.wait_for_start(self.port, time.monotonic() + 600)
            self.boot_s = time.monotonic() - t0 if ok else None
            return ok
        return super().start()


def stop_keep(b):
    """Stops the broker but keeps its data directory."""
    tmp, b.tmp = b.tmp, None
    b.stop()
    b.tmp = tmp


def run(b, n=N):
    r = {}
    if not b.start():
        return {"error": "did not start"}
    try:
        p = perf(b.port, ["-y", "0", "-C", str(n), "-s", str(SIZE), "--persistent", "--confirm", "1000",
                          "--duration", "3600"], timeout=3600)
        r["publish_rate"] = p.get("sent_rate")
        r["rss_full_mib"] = b.rss() / 2**20
        r["peak_publish_mib"] = peak_rss_mib(b)
        r["disk_mib"] = dir_mib(b.tmp) if b.tmp else None
        stop_keep(b)
        t0 = time.monotonic()
        if not b.start():
            return {"error": "did not restart"}
        while queue_count(b.port, "perf-q-0") != n and time.monotonic() - t0 < 900:
            time.sleep(0.05)
        r["recovery_s"] = time.monotonic() - t0
        r["rss_recovered_mib"] = b.rss() / 2**20
        t0 = time.monotonic()
        d = perf(b.port, ["-x", "0", "-y", "1", "-s", str(SIZE), "--persistent",
                          "--multi-ack", "100", "--prefetch", "1000", "--duration", "1800"], timeout=3600)
        # The consumer stops after two quiet seconds: not part of the drain.
        r["drain_s"] = time.monotonic() - t0 - 2.0
        r["drain_rate"] = n / r["drain_s"]
        r["drain_received"] = d.get("received")
        r["peak_after_restart_mib"] = peak_rss_mib(b)
    finally:
        b.stop()
    return r


def main():
    if not os.path.exists(bench.WARREN):
        sys.exit("build warren first: cargo build --release -p warren")
    results = {}
    for port in (5811, 5812, 5813):
        bench.ensure_free(port)
    for b in [WarrenD("warren", 5811), RabbitD("RabbitMQ", 5812)]:
        results[b.name] = run(b)
        print(b.name, results[b.name], flush=True)
    w, q = results["warren"], results["RabbitMQ"]
    f = lambda v, d=0: "n/a" if v is None else ("{:,.%df}" % d).format(v)
    rat = lambda a, b, inv=False: "n/a" if not a or not b else "%.2fx" % ((b / a) if inv else (a / b))
    lines = [SECTION, "",
             "`make bench-durability` (scripts/bench_durability.py), %s, on %s. %s persistent 1 KiB"
             " messages published with confirms (1000 outstanding) into one durable queue with no"
             " consumer; the broker is stopped and started again; then one consumer (prefetch 1000,"
             " ack every 100) drains the queue. warren runs with `memory_budget_mb = 64`, so most of"
             " the backlog lives only on disk." % (time.strftime("%Y-%m-%d"), bench.machine(), f(N)),
             "",
             "| | warren | RabbitMQ | warren / RabbitMQ |", "|---|---|---|---|",
             "| publish (msg/s, confirmed, fsync) | %s | %s | %s |" % (f(w.get("publish_rate")), f(q.get("publish_rate")), rat(w.get("publish_rate"), q.get("publish_rate"))),
             "| RSS with the backlog (MiB) | %s | %s | %s |" % (f(w.get("rss_full_mib")), f(q.get("rss_full_mib")), rat(w.get("rss_full_mib"), q.get("rss_full_mib"), True)),
             "| peak RSS while publishing (MiB) | %s | %s | %s |" % (f(w.get("peak_publish_mib")), f(q.get("peak_publish_mib")), rat(w.get("peak_publish_mib"), q.get("peak_publish_mib"), True)),
             "| restart until the backlog is back (s) | %s | %s | %s |" % (f(w.get("recovery_s"), 2), f(q.get("recovery_s"), 2), rat(w.get("recovery_s"), q.get("recovery_s"), True)),
             "| RSS after the restart (MiB) | %s | %s | %s |" % (f(w.get("rss_recovered_mib")), f(q.get("rss_recovered_mib")), rat(w.get("rss_recovered_mib"), q.get("rss_recovered_mib"), True)),
             "| drain after the restart (msg/s) | %s | %s | %s |" % (f(w.get("drain_rate")), f(q.get("drain_rate")), rat(w.get("drain_rate"), q.get("drain_rate"))),
             "", "Ratios: for rates warren / RabbitMQ, for time and memory RabbitMQ / warren (above 1: warren better).", ""]
    write_section(SECTION, lines)
    if BIG:
        big = run(WarrenD("warren", 5813), BIG)
        print("warren big", big, flush=True)
        write_section(BIG_SECTION, [
            BIG_SECTION, "",
            "`BENCH_BIG=%d make bench-durability`, %s, on %s: the same steps with %s persistent"
            " 1 KiB messages (%s of bodies) and warren alone, `memory_budget_mb = 64`. Peak"
            " resident memory is the kernel's high-water mark (VmHWM) of the broker process."
            % (BIG, time.strftime("%Y-%m-%d"), bench.machine(), f(BIG), "%.1f GiB" % (BIG * SIZE / 2**30)),
            "",
            "| | warren |", "|---|---|",
            "| publish (msg/s, confirmed, fsync) | %s |" % f(big.get("publish_rate")),
            "| peak RSS while publishing (MiB) | %s |" % f(big.get("peak_publish_mib")),
            "| data directory with the backlog (MiB) | %s |" % f(big.get("disk_mib")),
            "| restart until the backlog is back (s) | %s |" % f(big.get("recovery_s"), 2),
            "| RSS after the restart (MiB) | %s |" % f(big.get("rss_recovered_mib")),
            "| drain after the restart (msg/s) | %s |" % f(big.get("drain_rate")),
            "| messages received by the drain | %s |" % f(big.get("drain_received")),
            "| peak RSS over restart and drain (MiB) | %s |" % f(big.get("peak_after_restart_mib")),
            "",
            "Between publishing and draining, memory stays at the budget plus a window of"
            " entries per queue (the rest of the queue is in its tail file under `spill/`)."
            " The restart peak is the message store's recovery index, every surviving"
            " message's place on disk gathered before the queues are rebuilt (about 45 bytes"
            " a message), freed once they are.",
            ""])


def write_section(section, lines):
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    with open(path) as fh:
        text = fh.read()
    if bench.KEEP_MARKER not in text:
        text += "\n" + bench.KEEP_MARKER + "\n"
    pattern = re.compile(re.escape(section) + r".*?(?=\n## |\Z)", re.S)
    new = "\n".join(lines)
    text = pattern.sub(new, text) if section in text else text.rstrip("\n") + "\n\n" + new
    with open(path, "w") as fh:
        fh.write(text)
    print("wrote", path, section)


if __name__ == "__main__":
    main()
