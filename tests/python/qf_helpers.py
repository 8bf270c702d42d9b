"""Helpers shared by the test_queue_features_*.py files (issue #5).

Everything here was written against RabbitMQ 3.10.8; see
QUEUE_FEATURES_NOTES.md for the recorded behaviour these helpers assert.
"""

import base64
import datetime
import json
import os
import struct
import time
import urllib.error
import urllib.parse
import urllib.request

import pika
import pika.exceptions
import pytest

import amqp_raw
from amqp_raw import shortstr, short, bits, long_
from conftest import WAIT, close_info, sync

CCBB = pika.exceptions.ChannelClosedByBroker

INVALID_ARG = "PRECONDITION_FAILED - invalid arg '%s' for queue '%s' in vhost '/': %s"
INEQUIVALENT = ("PRECONDITION_FAILED - inequivalent arg '%s' for queue '%s' in vhost '/': "
                "received %s but current is %s")


# ---------------------------------------------------------------------------
# typed field values (pika always encodes a Python int as 'I' or 'l')
# ---------------------------------------------------------------------------

class Typed:
    """A field-table value with an explicit AMQP type tag, for raw frames."""

    _FMT = {b"b": ">b", b"B": ">B", b"s": ">h", b"u": ">H", b"I": ">i",
            b"i": ">I", b"l": ">q", b"f": ">f", b"d": ">d", b"T": ">Q"}

    def __init__(self, tag, value):
        self.tag = tag if isinstance(tag, bytes) else tag.encode()
        self.value = value

    def encode(self):
        if self.tag in self._FMT:
            return self.tag + struct.pack(self._FMT[self.tag], self.value)
        if self.tag == b"D":  # (scale, unscaled value)
            scale, raw = self.value
            return b"D" + struct.pack(">Bi", scale, raw)
        raise ValueError(self.tag)

    def __repr__(self):
        return "Typed(%r, %r)" % (self.tag, self.value)


def _value(v):
    if isinstance(v, Typed):
        return v.encode()
    return amqp_raw._field_value(v)


def typed_table(d):
    body = b"".join(shortstr(k) + _value(v) for k, v in (d or {}).items())
    return long_(len(body)) + body


def raw_queue_declare(raw, qname, arguments, durable=False, exclusive=False,
                      auto_delete=False):
    """queue.declare with a typed argument table on a fresh raw connection.

    Returns ("ok", message_count, consumer_count) or the close tuple
    (code, text, class_id, method_id) of the channel.close that came back."""
    c = raw(open=True)
    c.open_channel(1)
    c.send_method(1, amqp_raw.QUEUE_DECLARE,
                  short(0) + shortstr(qname)
                  + bits(False, durable, exclusive, auto_delete, False)
                  + typed_table(arguments))
    fr = c.read_method()
    if fr.class_method == amqp_raw.QUEUE_DECLARE_OK:
        d = fr.args()
        d.shortstr()
        result = ("ok", d.long(), d.long())
        # delete it again: queue.delete (50, 40), if-unused/if-empty unset
        c.send_method(1, (50, 40), short(0) + shortstr(qname) + bits(False, False, False))
        c.expect((50, 41))
        return result
    assert fr.class_method == amqp_raw.CHANNEL_CLOSE, fr
    return amqp_raw.decode_close(fr).as_tuple()


# ---------------------------------------------------------------------------
# pika helpers
# ---------------------------------------------------------------------------

def declare_error(conn, qname, arguments=None, **kw):
    """Declare on a fresh channel of conn, expecting a channel error.

    Returns (code, text, class_id, method_id)."""
    ch = conn.channel()
    with pytest.raises(CCBB) as ei:
        ch.queue_declare(qname, arguments=arguments, **kw)
    return close_info(ei.value)


def consume_error(conn, qname, **kw):
    ch = conn.channel()
    with pytest.raises(CCBB) as ei:
        ch.basic_consume(qname, lambda *a: None, **kw)
    return close_info(ei.value)


def message_count(conn, qname):
    """Ready message count through a passive declare on a throwaway channel."""
    ch = conn.channel()
    n = ch.queue_declare(qname, passive=True).method.message_count
    ch.close()
    return n


def poll(conn, predicate, timeout=WAIT, step=0.02):
    """Call predicate() (which may do synchronous AMQP calls) until true."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v or time.monotonic() >= deadline:
            return v
        conn.process_data_events(time_limit=step)


def wait_count(conn, qname, n, timeout=WAIT):
    """Poll a passive declare until the ready count equals n; returns it."""
    last = []

    def check():
        last[:] = [message_count(conn, qname)]
        return last[0] == n

    poll(conn, check, timeout)
    return last[0]


def counts_stay(conn, qnames, n, duration, step=0.01):
    """Samples the ready counts of `qnames` every `step` seconds for `duration` and
    returns the first sample that differs from n (None when all equalled n). Used
    after a message is expected to be gone for good: a message cycling through
    dead-lettering sits in a queue for its TTL every round and shows in the samples."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        for q in qnames:
            c = message_count(conn, q)
            if c != n:
                return (q, c)
        conn.process_data_events(time_limit=step)
    return None


def api_queue_exists(qname, vhost="/"):
    """Whether the management API lists the queue. Unlike a passive declare, this
    does not count as use of the queue (x-expires is not renewed)."""
    host = os.environ.get("WARREN_AMQP_HOST", "127.0.0.1")
    port = os.environ.get("WARREN_HTTP_PORT", "15672")
    path = f"/api/queues/{urllib.parse.quote(vhost, safe='')}/{urllib.parse.quote(qname, safe='')}"
    req = urllib.request.Request(f"http://{host}:{port}{path}")
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            json.load(r)
            return True
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return False
        raise


def get_one(ch, qname, timeout=WAIT, auto_ack=True):
    """basic.get until a message arrives (dead-lettering is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        m, p, b = ch.basic_get(qname, auto_ack=auto_ack)
        if m is not None or time.monotonic() >= deadline:
            return m, p, b
        ch.connection.process_data_events(time_limit=0.02)


def get_n(ch, qname, n, timeout=WAIT, auto_ack=True):
    """basic.get until n messages arrived or one overall deadline passed."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        m, p, b = ch.basic_get(qname, auto_ack=auto_ack)
        if m is not None:
            out.append((m, p, b))
        elif time.monotonic() >= deadline:
            break
        else:
            ch.connection.process_data_events(time_limit=0.02)
    return out


def bodies(msgs):
    return [b for (_m, _p, b) in msgs]


class Collector:
    """basic.consume callback that records (method, properties, body)."""

    def __init__(self, ch=None, ack=False):
        self.ch = ch
        self.ack = ack
        self.msgs = []

    def __call__(self, ch, method, props, body):
        self.msgs.append((method, props, body))
        if self.ack:
            ch.basic_ack(method.delivery_tag)

    @property
    def bodies(self):
        return [b for (_m, _p, b) in self.msgs]


def publish(ch, exchange, rk, body, **props):
    ch.basic_publish(exchange, rk, body, pika.BasicProperties(**props))


def assert_recent(ts, slack=60):
    """x-death 'time' is an AMQP timestamp (pika: datetime), in seconds."""
    assert isinstance(ts, datetime.datetime), ts
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    got = ts.replace(tzinfo=None) if ts.tzinfo is None else \
        ts.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    assert abs((now - got).total_seconds()) <= slack, (ts, now)


def strip_time(x_death):
    """x-death entries without 'time' (checked separately by assert_recent)."""
    out = []
    for e in x_death:
        assert_recent(e["time"])
        out.append({k: v for k, v in e.items() if k != "time"})
    return out


__all__ = ["CCBB", "INVALID_ARG", "INEQUIVALENT", "Typed", "typed_table", "raw_queue_declare",
           "declare_error", "consume_error", "message_count", "poll", "wait_count",
           "get_one", "get_n", "bodies", "Collector", "publish", "assert_recent", "strip_time", "sync"]
