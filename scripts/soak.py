#!/usr/bin/env python3
"""Soak test (make soak; not part of make test): mixed load on one warren for a long time,
with a SIGKILL and restart every few minutes, then an audit.

Load: a publisher with confirms (persistent messages, numbered, to a durable queue), a
publisher without confirms (transient), a consumer with manual acks and prefetch on the
durable queue, an auto-ack consumer on the transient one, connection and channel churn,
and queue declare/delete churn. Every SOAK_KILL_EVERY seconds the broker is SIGKILLed
and restarted on the same data directory; the clients reconnect.

Checks at the end: every confirmed persistent message was delivered to the consumer or
is still in the queue (duplicates after a kill are allowed, loss is not); the broker's
RSS and open file descriptors after warm-up do not grow from one restart to the next.
Prints a summary (and `--json` writes it) for docs/benchmarks.md.

  SOAK_SECONDS=3600 SOAK_KILL_EVERY=600 make soak
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pika

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("WARREN_BIN", os.path.join(ROOT, "target", "release", "warren"))
DURATION = int(os.environ.get("SOAK_SECONDS", "3600"))
KILL_EVERY = int(os.environ.get("SOAK_KILL_EVERY", "600"))
BODY = b"x" * int(os.environ.get("SOAK_BODY", "1024"))

stop = threading.Event()
lock = threading.Lock()
confirmed = set()        # ids of persistent messages the broker confirmed
received = set()         # ids the acking consumer got
stats = {"published_transient": 0, "consumed_transient": 0, "churn_connections": 0,
         "churn_queues": 0, "reconnects": 0}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self):
        self.data = tempfile.mkdtemp(prefix="warren-soak-")
        self.port, self.http = free_port(), free_port()
        self.proc = None
        self.samples = []    # (segment, seconds into it, rss KiB, fds)

    def start(self):
        log = open(os.path.join(self.data, "warren.log"), "ab")
        env = dict(os.environ, WARREN_RABBITMQ_ETC="off", NO_COLOR="1")
        self.proc = subprocess.Popen(
            [BIN, "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data + "/d",
             "--http-listen", f"127.0.0.1:{self.http}", "--prometheus-listen", "off"],
            stdout=log, stderr=log, env=env)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("warren did not start")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def sample(self, segment, t):
        pid = self.proc.pid
        try:
            with open(f"/proc/{pid}/status") as f:
                rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, StopIteration):
            return
        self.samples.append((segment, t, rss, fds))


def params(broker):
    return pika.ConnectionParameters("127.0.0.1", broker.port, heartbeat=30,
                                     blocked_connection_timeout=30, socket_timeout=10)


def resilient(fn):
    """Runs fn(broker) again after any connection error until the soak stops."""
    def loop(broker):
        while not stop.is_set():
            try:
                fn(broker)
            except Exception:  # the broker was killed: reconnect
                with lock:
                    stats["reconnects"] += 1
                time.sleep(0.5)
    return loop


state = {"next_id": 0}


@resilient
def confirm_publisher(broker):
    conn = pika.BlockingConnection(params(broker))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("soak-durable", durable=True)
    while not stop.is_set():
        n = state["next_id"]
        ch.basic_publish("", "soak-durable", str(n).encode() + b":" + BODY,
                         pika.BasicProperties(delivery_mode=2))
        # basic_publish returned: confirmed (pika raises on nack or a closed connection)
        with lock:
            confirmed.add(n)
        state["next_id"] = n + 1
    conn.close()


@resilient
def transient_publisher(broker):
    conn = pika.BlockingConnection(params(broker))
    ch = conn.channel()
    ch.queue_declare("soak-transient")
    while not stop.is_set():
        for _ in range(100):
            ch.basic_publish("", "soak-transient", BODY)
        with lock:
            stats["published_transient"] += 100
        conn.process_data_events(0.01)
    conn.close()


@resilient
def acking_consumer(broker):
    conn = pika.BlockingConnection(params(broker))
    ch = conn.channel()
    ch.queue_declare("soak-durable", durable=True)
    ch.basic_qos(prefetch_count=50)

    def on(ch_, method, _props, body):
        with lock:
            received.add(int(body.split(b":", 1)[0]))
        ch_.basic_ack(method.delivery_tag)

    ch.basic_consume("soak-durable", on)
    while not stop.is_set():
        conn.process_data_events(0.2)
    conn.close()


@resilient
def transient_consumer(broker):
    conn = pika.BlockingConnection(params(broker))
    ch = conn.channel()
    ch.queue_declare("soak-transient")

    def on(_ch, _m, _p, _b):
        with lock:
            stats["consumed_transient"] += 1

    ch.basic_consume("soak-transient", on, auto_ack=True)
    while not stop.is_set():
        conn.process_data_events(0.2)
    conn.close()


@resilient
def churn(broker):
    i = 0
    while not stop.is_set():
        conn = pika.BlockingConnection(params(broker))
        for _ in range(5):
            ch = conn.channel()
            q = f"soak-churn-{i}"
            ch.queue_declare(q, durable=(i % 2 == 0))
            ch.basic_publish("", q, BODY)
            ch.queue_delete(q)
            ch.close()
            i += 1
        conn.close()
        with lock:
            stats["churn_connections"] += 1
            stats["churn_queues"] += 5
        time.sleep(0.05)


def drain(broker):
    """Everything left in the durable queue, acked."""
    left = set()
    conn = pika.BlockingConnection(params(broker))
    ch = conn.channel()
    while True:
        method, _p, body = ch.basic_get("soak-durable", auto_ack=True)
        if method is None:
            break
        left.add(int(body.split(b":", 1)[0]))
    conn.close()
    return left


def main():
    broker = Broker()
    broker.start()
    workers = [threading.Thread(target=w, args=(broker,), daemon=True)
               for w in (confirm_publisher, transient_publisher, acking_consumer,
                         transient_consumer, churn)]
    for w in workers:
        w.start()
    start = time.time()
    segment, seg_start, kills = 0, start, 0
    while time.time() - start < DURATION:
        time.sleep(5)
        broker.sample(segment, time.time() - seg_start)
        if time.time() - seg_start >= KILL_EVERY and time.time() - start < DURATION - 30:
            broker.kill()
            kills += 1
            broker.start()
            segment, seg_start = segment + 1, time.time()
    stop.set()
    for w in workers:
        w.join(15)
    left = drain(broker)
    with lock:
        missing = sorted(confirmed - received - left)
    # Per segment, after a warm-up of a fifth of it: the highest RSS and fd count.
    per_segment = {}
    for seg, t, rss, fds in broker.samples:
        if t < KILL_EVERY / 5:
            continue
        mx = per_segment.setdefault(seg, [0, 0])
        mx[0], mx[1] = max(mx[0], rss), max(mx[1], fds)
    summary = {
        "seconds": DURATION, "kills": kills, "confirmed_persistent": len(confirmed),
        "delivered": len(received), "left_in_queue": len(left), "missing": len(missing),
        "first_missing": missing[:10], **stats,
        "rss_kib_max_per_segment": [v[0] for _, v in sorted(per_segment.items())],
        "fds_max_per_segment": [v[1] for _, v in sorted(per_segment.items())],
    }
    broker.proc.terminate()
    broker.proc.wait(30)
    print(json.dumps(summary, indent=1))
    if "--json" in sys.argv:
        with open(sys.argv[sys.argv.index("--json") + 1], "w") as f:
            json.dump(summary, f, indent=1)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
