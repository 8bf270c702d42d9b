"""Run the unchanged pika scripts from shared/seed-clients/ against the broker.

The scripts hard-code localhost:5672 (guest/guest, vhost "/"), so these tests
only run when WARREN_SEED_CLIENTS=1 is set by a runner that owns port 5672.
Expected results are those recorded from RabbitMQ 3.10 in
shared/seed-clients/README.md.

Optional overrides (used only to verify the expectations against a broker on
another port with patched copies of the scripts; never needed for warren):
  WARREN_SEED_DIR   directory holding the scripts
  WARREN_SEED_PORT  port used by the test's own setup/cleanup connection
"""

import base64
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import pika
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def _seed_dir():
    env = os.environ.get("WARREN_SEED_DIR")
    if env:
        return env
    candidates = [
        os.path.join(HERE, "..", "..", "..", "shared", "seed-clients"),  # <repo>/../shared
        os.path.join(HERE, "..", "..", "shared", "seed-clients"),        # <repo>/shared
    ]
    for c in candidates:
        if os.path.isdir(c):
            return os.path.abspath(c)
    return os.path.abspath(candidates[0])


SEED_DIR = _seed_dir()
SEED_HOST = "localhost"
SEED_PORT = int(os.environ.get("WARREN_SEED_PORT", "5672"))
HTTP_PORT = int(os.environ.get("WARREN_HTTP_PORT", "15672"))

pytestmark = [
    pytest.mark.skipif(os.environ.get("WARREN_SEED_CLIENTS") != "1",
                       reason="seed clients hard-code localhost:5672; set WARREN_SEED_CLIENTS=1 "
                              "when the broker under test listens there"),
]


def test_seed_scripts_are_present():
    # Asked to run the seed clients but cannot find them: fail loudly, never skip.
    assert os.path.isdir(SEED_DIR), "seed client scripts not found at %s" % SEED_DIR


def script(name):
    return os.path.join(SEED_DIR, name)


def child_env():
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"        # the scripts print, then block forever
    env["PYTHONIOENCODING"] = "utf-8"    # they print emoji
    return env


def admin():
    return pika.BlockingConnection(pika.ConnectionParameters(
        SEED_HOST, SEED_PORT, socket_timeout=5, stack_timeout=10, connection_attempts=1))


def admin_do(fn):
    conn = admin()
    try:
        fn(conn.channel())
    finally:
        if conn.is_open:
            conn.close()


def queue_totals(queue):
    """(messages, messages_unacknowledged) of a queue in vhost '/', from the management API."""
    req = urllib.request.Request(f"http://{SEED_HOST}:{HTTP_PORT}/api/queues/%2F/{queue}")
    token = base64.b64encode(b"guest:guest").decode()
    req.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(req, timeout=5) as r:
        info = json.load(r)
    return info.get("messages"), info.get("messages_unacknowledged")


def wait_until_settled(queue, timeout):
    """Waits until the broker holds no message of `queue`, ready or unacknowledged: the
    consumer's ack has been processed. Returns the last totals seen."""
    deadline = time.monotonic() + timeout
    totals = queue_totals(queue)
    while totals != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
        totals = queue_totals(queue)
    return totals


class Blocking:
    """Run a script that never exits: collect stdout until `wanted` lines are
    seen (or a timeout), then kill it."""

    def __init__(self, path):
        self.proc = subprocess.Popen([sys.executable, path], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=child_env(), cwd=SEED_DIR)
        self.lines = []
        self.err = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        self._te = threading.Thread(target=self._read_err, daemon=True)
        self._te.start()

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))

    def _read_err(self):
        for raw in self.proc.stderr:
            self.err.append(raw.decode("utf-8", "replace"))

    def wait_for(self, wanted, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(w in self.lines for w in wanted):
                return True
            if self.proc.poll() is not None:
                self._t.join(1)
                return all(w in self.lines for w in wanted)
            time.sleep(0.05)
        return False

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        self._t.join(2)
        self._te.join(2)


def test_seed000_tasks():
    def prepare(ch):
        ch.queue_declare("tasks")
        ch.queue_purge("tasks")
    admin_do(prepare)
    p = Blocking(script("seed000_tasks.py"))
    try:
        ok = p.wait_for(["Received b'Hello'"], timeout=15)
        assert ok, (p.lines, "".join(p.err))
        assert p.proc.poll() is None, "seed000 should block in start_consuming"
        assert p.lines == ["Received b'Hello'"]
        # The script prints before it acks: the broker must then see the ack.
        assert wait_until_settled("tasks", timeout=20) == (0, 0)
    finally:
        p.kill()


def test_seed003_producer_then_consumer():
    def prepare(ch):
        ch.queue_declare("email_task_queue", durable=True)
        ch.queue_purge("email_task_queue")
    admin_do(prepare)
    res = subprocess.run([sys.executable, script("seed003_producer.py")], capture_output=True,
                         env=child_env(), cwd=SEED_DIR, timeout=30)
    out = res.stdout.decode("utf-8", "replace").splitlines()
    assert res.returncode == 0, res.stderr.decode("utf-8", "replace")
    assert out == ["DB Saved: 1", " [x] Sent Email Task"]

    p = Blocking(script("seed003_consumer.py"))
    try:
        ok = p.wait_for([" [>] Received task for: user@example.com", " [v] Email Sent"],
                        timeout=20)
        assert ok, (p.lines, "".join(p.err))
        assert p.proc.poll() is None, "seed003 consumer should keep consuming"
        assert p.lines == [" [*] Waiting for messages. To exit press CTRL+C",
                           " [>] Received task for: user@example.com",
                           " [v] Email Sent"]
        # The script prints "Email Sent" before it calls basic_ack: kill it only once the
        # broker has seen the ack (nothing ready, nothing unacknowledged), or the kill can
        # win and the message is (correctly) requeued.
        assert wait_until_settled("email_task_queue", timeout=20) == (0, 0)
    finally:
        p.kill()
    # the ack survives the consumer's death: nothing comes back to the queue
    def check(ch):
        assert ch.queue_declare("email_task_queue", durable=True).method.message_count == 0
    admin_do(check)


def test_seed002_event_bus_on_fresh_broker():
    def fresh(ch):
        ch.exchange_delete("events")
    admin_do(fresh)
    try:
        res = subprocess.run([sys.executable, script("seed002_event_bus.py")],
                             capture_output=True, env=child_env(), cwd=SEED_DIR, timeout=30)
        err = res.stderr.decode("utf-8", "replace")
        out = res.stdout.decode("utf-8", "replace").splitlines()
        assert res.returncode == 1
        assert len(out) == 2 and out[1].endswith(" Connected to RabbitMQ"), out
        assert err.startswith("Traceback (most recent call last):"), err
        assert err.rstrip().splitlines()[-1] == (
            "pika.exceptions.ChannelClosedByBroker: "
            "(404, \"NOT_FOUND - no exchange 'events' in vhost '/'\")"), err
    finally:
        admin_do(lambda ch: ch.queue_delete("recommendation_service_queue"))
