"""Shared fixtures for the warren Python integration suite.

The suite talks to an already running AMQP 0-9-1 broker (warren, or RabbitMQ
for reference) at WARREN_AMQP_HOST:WARREN_AMQP_PORT (default 127.0.0.1:5672),
as guest/guest on vhost "/".  Every test uses unique (uuid based) names so
tests are independent of each other and of whatever else lives on the broker.
"""

import os
import socket
import uuid

import pika
import pika.channel
import pika.connection
import pytest

import amqp_raw

AMQP_HOST = os.environ.get("WARREN_AMQP_HOST", "127.0.0.1")
AMQP_PORT = int(os.environ.get("WARREN_AMQP_PORT", "5672"))

# Seconds any single blocking wait may take before a test fails instead of
# hanging (a broker under development may simply not answer).
WAIT = 5.0


# ---------------------------------------------------------------------------
# pika instrumentation: remember class_id/method_id of broker-sent closes.
#
# pika's ChannelClosedByBroker / ConnectionClosedByBroker only carry
# (reply_code, reply_text).  RabbitMQ also reports the class and method of the
# offending command; we patch pika so the exception objects carry them too as
# `.class_id` / `.method_id`, which lets tests assert the full close frame.
# ---------------------------------------------------------------------------

_orig_channel_close_from_broker = pika.channel.Channel._on_close_from_broker


def _channel_close_from_broker(self, method_frame):
    _orig_channel_close_from_broker(self, method_frame)
    m = method_frame.method
    reason = getattr(self, "_closing_reason", None)
    if isinstance(reason, pika.exceptions.ChannelClosedByBroker):
        reason.class_id = m.class_id
        reason.method_id = m.method_id
    self._warren_close = (m.reply_code, m.reply_text, m.class_id, m.method_id)


pika.channel.Channel._on_close_from_broker = _channel_close_from_broker


def _connection_close_from_broker(self, method_frame):
    m = method_frame.method
    exc = pika.exceptions.ConnectionClosedByBroker(m.reply_code, m.reply_text)
    exc.class_id = m.class_id
    exc.method_id = m.method_id
    self._warren_close = (m.reply_code, m.reply_text, m.class_id, m.method_id)
    self._terminate_stream(exc)


pika.connection.Connection._on_connection_close_from_broker = _connection_close_from_broker


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def params(**kw):
    """pika.ConnectionParameters for the broker under test."""
    base = dict(
        host=AMQP_HOST,
        port=AMQP_PORT,
        virtual_host="/",
        credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1,
        socket_timeout=WAIT,
        stack_timeout=WAIT * 2,
        blocked_connection_timeout=WAIT * 4,
    )
    base.update(kw)
    return pika.ConnectionParameters(**base)


def connect(**kw):
    return pika.BlockingConnection(params(**kw))


def unique(prefix="t"):
    return "warren-test-%s-%s" % (prefix, uuid.uuid4().hex[:12])


def close_info(exc):
    """(reply_code, reply_text, class_id, method_id) of a *ClosedByBroker."""
    return (exc.reply_code, exc.reply_text,
            getattr(exc, "class_id", None), getattr(exc, "method_id", None))


def wait_until(conn, predicate, timeout=WAIT):
    """Pump pika's I/O loop until predicate() is true or timeout expires.

    Returns the final predicate value (so callers can assert on it)."""
    import time
    deadline = time.monotonic() + timeout
    while not predicate():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        conn.process_data_events(time_limit=min(0.05, remaining))
    return predicate()


def drain(conn, duration=0.2):
    """Let pika process events for a short, bounded time (used only to give
    the broker a chance to send something that must NOT arrive)."""
    conn.process_data_events(time_limit=duration)


def safe_close(conn):
    try:
        if conn.is_open:
            conn.close()
    except Exception:
        pass


def sync(ch):
    """Round trip on a channel so that every previously sent asynchronous
    command (publish, ack, ...) has been processed by the broker."""
    # basic.qos is a cheap synchronous no-op when re-sent with defaults, but
    # changing qos would alter behaviour; a passive declare of amq.direct is
    # harmless and synchronous.
    ch.exchange_declare("amq.direct", passive=True)


def get_all(ch, queue, auto_ack=True, limit=1000):
    """basic.get until get-empty; returns list of (method, props, body)."""
    out = []
    for _ in range(limit):
        m, p, b = ch.basic_get(queue, auto_ack=auto_ack)
        if m is None:
            break
        out.append((m, p, b))
    return out


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------

@pytest.fixture
def amqp_addr():
    return AMQP_HOST, AMQP_PORT


@pytest.fixture
def connection():
    conn = connect()
    yield conn
    safe_close(conn)


@pytest.fixture
def channel(connection):
    return connection.channel()


@pytest.fixture
def make_connection():
    """Factory for extra connections, all closed at teardown."""
    conns = []

    def _make(**kw):
        c = connect(**kw)
        conns.append(c)
        return c

    yield _make
    for c in conns:
        safe_close(c)


@pytest.fixture
def name():
    """A unique name factory: name('q') -> 'warren-test-q-<uuid>'."""
    return unique


@pytest.fixture
def cleanup(connection):
    """Register durable / shared objects for deletion after the test.

    cleanup.queue(name) / cleanup.exchange(name)"""
    queues, exchanges = [], []

    class _C:
        @staticmethod
        def queue(n):
            queues.append(n)
            return n

        @staticmethod
        def exchange(n):
            exchanges.append(n)
            return n

    yield _C
    if not (queues or exchanges):
        return
    try:
        conn = connect()
    except Exception:
        return
    try:
        for n in queues:
            ch = conn.channel()
            try:
                ch.queue_delete(n)
                ch.close()
            except Exception:
                pass
        for n in exchanges:
            ch = conn.channel()
            try:
                ch.exchange_delete(n)
                ch.close()
            except Exception:
                pass
    finally:
        safe_close(conn)


@pytest.fixture
def raw(amqp_addr):
    """Factory for raw (non-pika) AMQP socket connections.

    raw() -> RawConnection that has only TCP-connected;
    raw(open=True, **tune) -> RawConnection after the full handshake."""
    conns = []

    def _make(open=False, timeout=WAIT, **kw):
        c = amqp_raw.RawConnection(amqp_addr[0], amqp_addr[1], timeout=timeout)
        conns.append(c)
        if open:
            c.handshake(**kw)
        return c

    yield _make
    for c in conns:
        c.close()


@pytest.fixture
def tcp(amqp_addr):
    """Factory for plain TCP sockets to the broker."""
    socks = []

    def _make(timeout=WAIT):
        s = socket.create_connection(amqp_addr, timeout=timeout)
        socks.append(s)
        return s

    yield _make
    for s in socks:
        try:
            s.close()
        except OSError:
            pass
