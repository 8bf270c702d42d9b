#!/usr/bin/env python3
"""Side-by-side benchmarks: warren against RabbitMQ (Debian's rabbitmq-server) and garagemq
(Debian's garagemq), on this machine, in one run, alternating the brokers for every
repetition. Writes docs/benchmarks.md. Run through `make bench` (scripts/bench.sh), which
installs the reference brokers and builds warren in release mode first.

Load comes from `warren perf` (a generic AMQP 0-9-1 client, the same for every broker).
Every broker process is started by this script and stopped by its PID.
"""
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARREN = os.path.join(ROOT, "target", "release", "warren")
REPS = int(os.environ.get("BENCH_REPS", "3"))
DURATION = float(os.environ.get("BENCH_DURATION", "8"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "10000"))
ONLY = [s for s in os.environ.get("BENCH_SCENARIOS", "").split(",") if s]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# name -> (perf arguments, metric, description)
SCENARIOS = [
    ("transient", ["--auto-ack", "-s", "16"], "received", "1 producer, 1 consumer, 16 B, auto-ack"),
    ("ack", ["-s", "16", "--multi-ack", "100", "--prefetch", "1000"], "received",
     "16 B, manual ack multiple every 100, prefetch 1000"),
    ("confirm-persistent", ["-s", "1024", "--persistent", "--confirm", "1000", "--multi-ack", "100"],
     "received", "1 KiB, durable queue, persistent, 1000 outstanding confirms, manual ack"),
    ("fanout-10", ["--exchange-type", "fanout", "-q", "10", "-y", "10", "--auto-ack", "-s", "16"],
     "fanout", "fanout to 10 queues, one consumer each (publishes/s delivered to all 10)"),
    ("many-queues", ["-x", "10", "-y", "10", "-q", "10", "--auto-ack", "-s", "16"], "received",
     "10 producers, 10 consumers, 10 queues"),
    ("topic", ["--exchange-type", "topic", "--topic-bindings", "1000", "-q", "10", "-x", "10", "-y", "10",
               "--auto-ack", "-s", "16"], "received", "routing through 10,000 topic bindings"),
    ("latency", ["--rate", "1000", "--auto-ack", "-s", "16"], "p99", "fixed 1,000 msg/s, p99 latency (us)"),
    ("large", ["-s", "1048576", "--auto-ack", "--rate", "400"], "received",
     "1 MiB bodies (publishing capped at 400/s)"),
]

# The sizes table: uncapped, auto-ack, one producer and one consumer, for each body size;
# msg/s and MB/s of bodies for each broker, its peak RSS during the run, and the floor
# (`warren perf --relay-floor`: the same byte stream copied through a bare TCP relay).
SIZES = [int(x) for x in os.environ.get("BENCH_SIZES", "16,1024,4096,65536,1048576").split(",") if x]
# Extra `warren perf` arguments for every run (e.g. `--copy-bodies` to reproduce figures
# measured before the load generator sent large bodies without copying them).
PERF_EXTRA = os.environ.get("BENCH_PERF_ARGS", "").split()

# Scenarios that run longer than BENCH_DURATION: a p99 from 8,000 samples rests on its 80
# slowest messages and moves by tens of microseconds from run to run; 20 s gives 200.
LONGER = {"latency": float(os.environ.get("BENCH_LATENCY_DURATION", "20"))}


def cpu_seconds(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except OSError:
        return 0.0


def rss_bytes(pid):
    try:
        with open("/proc/%d/statm" % pid) as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return 0


def process_tree_pids(pid):
    """The broker and its children (RabbitMQ's beam runs under a shell wrapper)."""
    pids = [pid]
    try:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
        for child in out.split():
            pids.extend(process_tree_pids(int(child)))
    except OSError:
        pass
    return pids


def ensure_free(port):
    """Exits if something listens on `port`: a broker left over there would be measured
    instead of the one started here (and look like it booted in no time)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return
    sys.exit("port %d is already in use: stop what listens there first" % port)


def wait_for_start(port, deadline):
    """Seconds until a connection gets connection.start, or None."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"AMQP\x00\x00\x09\x01")
                s.settimeout(2)
                data = s.recv(7)
                if len(data) >= 1 and data[0] == 1:
                    return True
        except OSError:
            pass
        time.sleep(0.002)
    return False


class Broker:
    def __init__(self, name, port):
        self.name, self.port, self.proc, self.pid, self.tmp = name, port, None, None, None
        self.boot_s = None

    def pids(self):
        return process_tree_pids(self.pid) if self.pid else []

    def cpu(self):
        return sum(cpu_seconds(p) for p in self.pids())

    def rss(self):
        return sum(rss_bytes(p) for p in self.pids())

    def signal_all(self, sig):
        for p in self.pids():
            try:
                os.kill(p, sig)
            except OSError:
                pass

    def pause(self):
        """Freezes the broker (SIGSTOP) while another one is measured: an idle broker still
        wakes the CPUs (Erlang's and Go's schedulers do, many times a second), which on a
        2-core machine shows up in the other broker's latency tail."""
        self.signal_all(signal.SIGSTOP)

    def resume(self):
        self.signal_all(signal.SIGCONT)

    def stop(self):
        if self.pid:
            self.resume()  # a stopped process would not act on SIGTERM
            for p in reversed(self.pids()):
                try:
                    os.kill(p, signal.SIGTERM)
                except OSError:
                    pass
            if self.proc:
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


class Warren(Broker):
    def start(self):
        self.tmp = tempfile.mkdtemp(prefix="bench-warren-")
        t0 = time.monotonic()
        self.proc = subprocess.Popen([WARREN, "--listen", "127.0.0.1:%d" % self.port, "--data-dir",
                                      os.path.join(self.tmp, "data"), "--log", "warn",
                                      # RabbitMQ here runs without its management plugin
                                      "--http-listen", "off", "--prometheus-listen", "off"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=dict(os.environ, WARREN_RABBITMQ_ETC="off"))
        self.pid = self.proc.pid
        ok = wait_for_start(self.port, time.monotonic() + 30)
        self.boot_s = time.monotonic() - t0 if ok else None
        return ok


def rabbitmq_command():
    """Starts RabbitMQ as Debian's wrapper does (su to the rabbitmq user), but with the open
    files limit raised to the hard limit first: su resets the soft limit to 1024, which
    makes RabbitMQ allow only ~830 sockets (production setups raise it, as RabbitMQ's docs
    ask), and the connections scenario would measure that limit instead of memory."""
    if os.getuid() != 0 or not os.path.exists("/usr/lib/rabbitmq/bin/rabbitmq-server"):
        return ["rabbitmq-server"]
    return ["su", "rabbitmq", "-s", "/bin/sh", "-c",
            "cd /var/lib/rabbitmq && ulimit -n $(ulimit -Hn) && exec /usr/lib/rabbitmq/bin/rabbitmq-server"]


class RabbitMQ(Broker):
    def start(self):
        self.tmp = tempfile.mkdtemp(prefix="bench-rmq-")
        for d in ("mnesia", "log"):
            os.makedirs(os.path.join(self.tmp, d))
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", self.tmp], check=False)
        env = dict(os.environ,
                   RABBITMQ_NODE_PORT=str(self.port), RABBITMQ_DIST_PORT=str(self.port + 20000),
                   RABBITMQ_NODENAME="rabbit_bench_%d@localhost" % self.port,
                   RABBITMQ_MNESIA_BASE=os.path.join(self.tmp, "mnesia"),
                   RABBITMQ_LOG_BASE=os.path.join(self.tmp, "log"),
                   RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(self.tmp, "enabled_plugins"))
        t0 = time.monotonic()
        self.proc = subprocess.Popen(rabbitmq_command(), env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.proc.pid
        ok = wait_for_start(self.port, time.monotonic() + 120)
        self.boot_s = time.monotonic() - t0 if ok else None
        return ok


class GarageMQ(Broker):
    def start(self):
        self.tmp = tempfile.mkdtemp(prefix="bench-garage-")
        cfg = os.path.join(self.tmp, "config.yaml")
        with open(cfg, "w") as f:
            f.write("""proto: amqp-rabbit
users:
  - username: guest
    password: 084e0343a0486ff05530df6c705c8bb4
tcp:
  ip: 127.0.0.1
  port: %d
  nodelay: true
  readBufSize: 196608
  writeBufSize: 196608
admin:
  ip: 127.0.0.1
  port: %d
queue:
  shardSize: 8192
  maxMessagesInRam: 131072
db:
  defaultPath: %s
  engine: badger
vhost:
  defaultPath: /
security:
  passwordCheck: md5
connection:
  channelsMax: 4096
  frameMaxSize: 131072
""" % (self.port, self.port + 10000, os.path.join(self.tmp, "db")))
        t0 = time.monotonic()
        self.proc = subprocess.Popen(["garagemq", "--config", cfg, "--log-level", "error"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.proc.pid
        ok = wait_for_start(self.port, time.monotonic() + 30)
        self.boot_s = time.monotonic() - t0 if ok else None
        return ok


class PeakRss:
    """Samples a broker's resident memory (its whole process tree) every 100 ms."""

    def __init__(self, broker):
        import threading
        self.broker, self.peak, self.stop = broker, 0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.broker.rss())
            self.stop.wait(0.1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def perf(broker, args, duration=DURATION):
    cmd = [WARREN, "perf", "--uri", "127.0.0.1:%d" % broker.port, "--json", "--duration", str(duration)] + args + PERF_EXTRA
    cpu0 = broker.cpu()
    try:
        with PeakRss(broker) as peak:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 90)
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    cpu1 = broker.cpu()
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    if out.returncode != 0 or not line.startswith("{"):
        return {"error": (out.stderr or out.stdout).strip()[-300:]}
    r = json.loads(line)
    r["cpu_us_per_msg"] = (cpu1 - cpu0) * 1e6 / max(r["received"], 1)
    r["peak_rss_mib"] = peak.peak / 2**20
    return r


def relay_floor(size, duration=DURATION):
    out = subprocess.run([WARREN, "perf", "--relay-floor", "--json", "-s", str(size),
                          "--duration", str(duration)], capture_output=True, text=True,
                         timeout=duration + 60)
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    return json.loads(line) if line.startswith("{") else {"error": out.stderr.strip()[-200:]}


async def open_connections(port, n, concurrency=200):
    """Opens n AMQP connections (full handshake) and keeps them; returns the writers."""
    def frame(ch, payload):
        return struct.pack(">BHI", 1, ch, len(payload)) + payload + b"\xce"

    start_ok = frame(0, struct.pack(">HH", 10, 11) + struct.pack(">I", 0) + b"\x05PLAIN"
                     + struct.pack(">I", 12) + b"\x00guest\x00guest" + b"\x05en_US")
    tune_ok = frame(0, struct.pack(">HHHIH", 10, 31, 2047, 131072, 0))
    open_ = frame(0, struct.pack(">HH", 10, 40) + b"\x01/" + b"\x00" + b"\x00")
    sem = asyncio.Semaphore(concurrency)
    conns = []

    async def read_method(reader):
        while True:
            head = await reader.readexactly(7)
            kind, _, size = struct.unpack(">BHI", head)
            payload = await reader.readexactly(size + 1)
            if kind == 1:
                return struct.unpack(">HH", payload[:4])

    async def one():
        async with sem:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"AMQP\x00\x00\x09\x01")
            await read_method(reader)  # start
            writer.write(start_ok)
            await read_method(reader)  # tune
            writer.write(tune_ok + open_)
            assert await read_method(reader) == (10, 41)
            conns.append((reader, writer))

    await asyncio.gather(*(one() for _ in range(n)))
    return conns


def connections_scenario(broker):
    base = broker.rss()
    t0 = time.monotonic()
    loop = asyncio.new_event_loop()
    try:
        # A broker that stops completing handshakes must not hang the whole run.
        conns = loop.run_until_complete(asyncio.wait_for(open_connections(broker.port, CONNECTIONS), 180))
        elapsed = time.monotonic() - t0
        time.sleep(2)
        per_conn = (broker.rss() - base) / CONNECTIONS
        for _, w in conns:
            w.close()
        loop.run_until_complete(asyncio.sleep(0.5))
    finally:
        loop.close()
    return {"open_s": elapsed, "kib_per_conn": per_conn / 1024}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    if v is None:
        return "n/a"
    if digits == 0:
        return "{:,.0f}".format(v)
    return "{:,.{}f}".format(v, digits)


def ratio(a, b, lower_is_better=False):
    if a is None or b is None or a == 0 or b == 0:
        return "n/a"
    return "{:.2f}x".format(b / a if lower_is_better else a / b)


def main():
    if not os.path.exists(WARREN):
        sys.exit("build warren first: cargo build --release -p warren")
    brokers = [Warren("warren", 5801), RabbitMQ("RabbitMQ", 5802)]
    if shutil.which("garagemq"):
        brokers.append(GarageMQ("garagemq", 5803))
    for b in brokers:
        ensure_free(b.port)
    results = {b.name: {} for b in brokers}
    boot = {}
    idle = {}
    try:
        # boot: warren is started (and stopped) several times; the others once.
        boots = []
        for _ in range(5):
            w = Warren("warren", 5801)
            if w.start():
                boots.append(w.boot_s)
            w.stop()
        for b in brokers:
            if not b.start():
                sys.exit("%s did not start" % b.name)
            print("%s up in %.3f s" % (b.name, b.boot_s), flush=True)
            boot[b.name] = median(boots) if b.name == "warren" else b.boot_s
        time.sleep(3)
        for b in brokers:
            idle[b.name] = b.rss() / 2**20
        for name, args, metric, _ in SCENARIOS:
            if ONLY and name not in ONLY:
                continue
            for rep in range(REPS):
                for b in brokers:
                    for other in brokers:
                        if other is not b:
                            other.pause()
                    b.resume()
                    # Write back what the previous broker left dirty (RabbitMQ's and
                    # garagemq's stores) now, not during this broker's run.
                    os.sync()
                    time.sleep(0.2)
                    r = perf(b, args, LONGER.get(name, DURATION))
                    results[b.name].setdefault(name, []).append(r)
                    print("%-20s %-9s rep %d: %s" % (name, b.name, rep + 1,
                          r.get("error") or "recv %.0f/s p99 %s us lost %s dup %s cpu %.2f us/msg" % (
                              r["received_rate"], r["latency_us_p99"], r["lost"], r["duplicated"],
                              r["cpu_us_per_msg"])), flush=True)
        if not ONLY or "sizes" in ONLY:
            for size in SIZES:
                for rep in range(REPS):
                    for b in brokers:
                        for other in brokers:
                            if other is not b:
                                other.pause()
                        b.resume()
                        os.sync()
                        time.sleep(0.2)
                        r = perf(b, ["-s", str(size), "--auto-ack"])
                        results[b.name].setdefault("size-%d" % size, []).append(r)
                        print("size %-8d %-9s rep %d: %s" % (size, b.name, rep + 1,
                              r.get("error") or "recv %.0f/s p50 %s us peak RSS %.0f MiB" % (
                                  r["received_rate"], r["latency_us_p50"], r["peak_rss_mib"])), flush=True)
                    for other in brokers:
                        other.pause()
                    r = relay_floor(size)
                    results.setdefault("floor", {}).setdefault(size, []).append(r)
                    print("size %-8d floor     rep %d: %s" % (size, rep + 1, r.get("error") or
                          "%.0f msg/s %.1f MB/s" % (r["received_rate"], r["body_mb_per_s"])), flush=True)
        for b in brokers:
            b.resume()
        if not ONLY or "connections" in ONLY:
            for b in brokers:
                # A fresh process: memory freed by earlier scenarios would hide the cost.
                b.stop()
                if not b.start():
                    sys.exit("%s did not restart" % b.name)
                time.sleep(3)
                try:
                    results[b.name]["connections"] = [connections_scenario(b)]
                except Exception as e:  # a broker that cannot hold them is reported, not fatal
                    results[b.name]["connections"] = [{"error": str(e)[:200]}]
                print("connections %-9s %s" % (b.name, results[b.name]["connections"][0]), flush=True)
    finally:
        for b in brokers:
            b.stop()
    write_report(brokers, results, boot, idle)


def machine():
    cores = os.cpu_count()
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 2**20
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%d cores (%s), %.0f GiB memory, %s" % (cores, model, mem, os.uname().release)


KEEP_MARKER = "<!-- sections below are not written by make bench -->"


def sizes_report(names, results):
    """The sizes table: one row per body size, brokers side by side, and the relay floor."""
    if "floor" not in results:
        return []
    others = [n for n in names if n != "warren"]
    lines = ["## sizes", "",
             "1 producer, 1 consumer, auto-ack, uncapped, for each body size. `warren perf -s SIZE --auto-ack`."
             " MB/s counts body bytes. Peak RSS: the broker's largest resident set sampled every 100 ms during the run."
             " Floor: the same byte stream copied through a bare TCP relay (`warren perf --relay-floor -s SIZE`),"
             " which no broker can beat on this machine.", ""]
    header = "| body | " + " | ".join("%s msg/s | %s MB/s | %s peak RSS MiB" % (n, n, n) for n in names)
    header += " | " + " | ".join("warren / %s" % o for o in others) + " | floor MB/s | warren % of floor |"
    lines += [header, "|" + "---|" * (1 + 3 * len(names) + len(others) + 2)]
    for size in SIZES:
        key = "size-%d" % size
        row, med = ["%s" % (size if size < 1024 else ("%d KiB" % (size // 1024) if size < 2**20 else "%d MiB" % (size // 2**20)))], {}
        for n in names:
            runs = [r for r in results[n].get(key, []) if "error" not in r]
            if not runs:
                row += ["error", "", ""]
                continue
            rate = median([r["received_rate"] for r in runs])
            med[n] = rate
            row += [fmt(rate), fmt(rate * size / 1e6, 1), fmt(max(r["peak_rss_mib"] for r in runs), 0)]
        for o in others:
            row.append(ratio(med["warren"], med[o]) if "warren" in med and o in med else "n/a")
        floors = [r for r in results["floor"].get(size, []) if "error" not in r]
        floor = median([r["body_mb_per_s"] for r in floors]) if floors else None
        row.append(fmt(floor, 1) if floor else "n/a")
        row.append("%.0f%%" % (100 * med["warren"] * size / 1e6 / floor) if floor and "warren" in med else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return lines


def write_report(brokers, results, boot, idle):
    names = [b.name for b in brokers]
    others = [n for n in names if n != "warren"]
    lines = ["# Benchmarks", "",
             "Generated by `make bench` (scripts/bench.py) on %s." % time.strftime("%Y-%m-%d"),
             "", "Machine: %s. Load generator (`warren perf`) on the same machine." % machine(),
             "Each scenario ran %d times per broker for %.0f s (latency: %.0f s), alternating brokers;"
             " the tables show medians. While one broker is measured the others are frozen"
             " (SIGSTOP), so their idle wake-ups do not land in its figures." % (REPS, DURATION, LONGER["latency"]),
             "Ratios are warren / other (for latency and CPU: other / warren, so above 1 means warren is better).",
             "", "Reproduce: `make bench` (`BENCH_REPS`, `BENCH_DURATION`, `BENCH_LATENCY_DURATION`, `BENCH_SCENARIOS` (e.g. `ack,sizes`), `BENCH_SIZES` (e.g. `65536,1048576`), `BENCH_PERF_ARGS`, `BENCH_CONNECTIONS` tune it; `BENCH_REPORT` writes elsewhere).",
             ""]
    for name, args, metric, desc in SCENARIOS:
        if not all(name in results[n] for n in names):
            continue
        lines += ["## %s" % name, "", "%s. `warren perf %s`" % (desc, " ".join(args)), ""]
        header = "| broker | msg/s received | publishes/s | p50 us | p99 us | broker CPU us/msg | lost | dup |"
        lines += [header, "|---|---|---|---|---|---|---|---|"]
        med = {}
        for n in names:
            runs = [r for r in results[n][name] if "error" not in r]
            if not runs:
                lines.append("| %s | error: %s |  |  |  |  |  |  |" % (n, results[n][name][0].get("error", "")[:80]))
                continue
            m = {k: median([r[k] for r in runs]) for k in
                 ("received_rate", "sent_rate", "latency_us_p50", "latency_us_p99", "cpu_us_per_msg")}
            m["lost"] = sum(r["lost"] for r in runs)
            m["dup"] = sum(r["duplicated"] for r in runs)
            med[n] = m
            lines.append("| %s | %s | %s | %s | %s | %s | %d | %d |" % (
                n, fmt(m["received_rate"]), fmt(m["sent_rate"]), fmt(m["latency_us_p50"]),
                fmt(m["latency_us_p99"]), fmt(m["cpu_us_per_msg"], 2), m["lost"], m["dup"]))
        for o in others:
            if "warren" in med and o in med:
                if metric == "p99":
                    r = ratio(med["warren"]["latency_us_p99"], med[o]["latency_us_p99"], lower_is_better=True)
                    lines.append("\np99 latency, %s / warren: **%s**" % (o, r))
                else:
                    r = ratio(med["warren"]["received_rate"], med[o]["received_rate"])
                    c = ratio(med["warren"]["cpu_us_per_msg"], med[o]["cpu_us_per_msg"], lower_is_better=True)
                    lines.append("\nthroughput warren / %s: **%s**; CPU per message %s / warren: %s" % (o, r, o, c))
        if name == "confirm-persistent":
            lines.append("\nwarren writes each message to disk and syncs it (fdatasync, group commit) before confirming it, as RabbitMQ does.")
        if name == "fanout-10":
            lines.append("\n(msg/s received counts deliveries to all 10 queues; publishes/s delivered = that / 10.)")
        lines.append("")
    lines += sizes_report(names, results)
    lines += ["## boot and idle memory", "", "| broker | start until connection.start (s) | idle RSS (MiB) |", "|---|---|---|"]
    for n in names:
        lines.append("| %s | %s | %s |" % (n, fmt(boot.get(n), 3), fmt(idle.get(n), 1)))
    lines.append("")
    if all("connections" in results[n] for n in names):
        lines += ["## connections", "", "%d idle AMQP connections, opened 200 at a time." % CONNECTIONS, "",
                  "| broker | time to open all (s) | RSS per connection (KiB) |", "|---|---|---|"]
        for n in names:
            r = results[n]["connections"][0]
            if "error" in r:
                lines.append("| %s | error: %s | |" % (n, r["error"][:80]))
            else:
                lines.append("| %s | %s | %s |" % (n, fmt(r["open_s"], 2), fmt(r["kib_per_conn"], 1)))
        lines.append("")
    # BENCH_REPORT writes elsewhere (a partial run, BENCH_SCENARIOS, would otherwise
    # replace the full tables).
    path = os.environ.get("BENCH_REPORT") or os.path.join(ROOT, "docs", "benchmarks.md")
    # Sections measured by other commands (store and recovery benchmarks) start at this
    # marker and are carried over unchanged.
    kept = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
        at = old.find(KEEP_MARKER)
        if at >= 0:
            kept = "\n" + old[at:]
    with open(path, "w") as f:
        f.write("\n".join(lines) + kept)
    print("wrote %s" % path)


if __name__ == "__main__":
    main()
