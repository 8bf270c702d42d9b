"""Stream queues (x-queue-type stream) through pika, as RabbitMQ 3.10.8 answers
(tests/fixtures/streams/rabbitmq_3.10.8.json has the recorded texts)."""

import datetime
import json
import os

import pika
import pika.exceptions
import pytest

from conftest import close_info, connect, safe_close, wait_until

FIXTURE = json.load(open(os.path.join(os.path.dirname(__file__), "..", "fixtures", "streams",
                                      "rabbitmq_3.10.8.json")))


def recorded(section, case, queue):
    v = FIXTURE[section][case]
    code = v.get("code", v.get("connection_code"))
    return code, v["text"].replace("'s-plain'", "'%s'" % queue)


@pytest.fixture
def stream(channel, name, cleanup):
    """A stream with ten confirmed messages m0..m9 (each its own chunk)."""
    q = cleanup.queue(name("stream"))
    channel.queue_declare(q, durable=True, arguments={"x-queue-type": "stream"})
    channel.confirm_delivery()
    for i in range(10):
        channel.basic_publish("", q, b"m%d" % i, pika.BasicProperties(headers={"i": i}))
    return q


def read(conn, queue, offset=None, prefetch=10, want=100, wait=1.0):
    """(offset header, body) of what a consumer from `offset` gets, acking each."""
    ch = conn.channel()
    ch.basic_qos(prefetch_count=prefetch)
    got = []

    def on_message(c, m, p, b):
        got.append((p.headers["x-stream-offset"], b.decode()))
        c.basic_ack(m.delivery_tag)

    args = None if offset is None else {"x-stream-offset": offset}
    ch.basic_consume(queue, on_message, arguments=args)
    wait_until(conn, lambda: len(got) >= want, timeout=wait)
    ch.close()
    return got


def every(start, end):
    return [(i, "m%d" % i) for i in range(start, end)]


def test_offsets(connection, stream):
    assert read(connection, stream, "first", want=10) == every(0, 10)
    assert read(connection, stream, "last", want=1, wait=0.3) == every(9, 10)
    assert read(connection, stream, "next", wait=0.3) == []
    assert read(connection, stream, None, wait=0.3) == []
    assert read(connection, stream, 5, want=5) == every(5, 10)
    assert read(connection, stream, "1h", want=10) == every(0, 10)
    past = datetime.datetime.now() - datetime.timedelta(seconds=60)
    assert read(connection, stream, past, want=10) == every(0, 10)
    future = datetime.datetime.now() + datetime.timedelta(seconds=3600)
    assert read(connection, stream, future, wait=0.3) == []


def test_headers_sorted_and_offset_is_a_long(connection, stream):
    ch = connection.channel()
    ch.basic_qos(prefetch_count=1)
    got = []
    ch.basic_consume(stream, lambda c, m, p, b: got.append(p.headers),
                     arguments={"x-stream-offset": 3})
    wait_until(connection, lambda: got)
    assert list(got[0].items()) == [("i", 3), ("x-stream-offset", 3)]


@pytest.mark.parametrize("case,kw", [
    ("no_qos", dict(qos=None)),
    ("qos_0", dict(qos=0)),
    ("no_ack", dict(qos=10, auto_ack=True)),
])
def test_consume_refusals(name, stream, case, kw):
    conn = connect()
    try:
        ch = conn.channel()
        if kw["qos"] is not None:
            ch.basic_qos(prefetch_count=kw["qos"])
        with pytest.raises((pika.exceptions.ChannelClosedByBroker,
                            pika.exceptions.ConnectionClosedByBroker)) as e:
            ch.basic_consume(stream, lambda *a: None, auto_ack=kw.get("auto_ack", False))
            conn.process_data_events(time_limit=0.5)
        assert close_info(e.value)[:2] == recorded("consume", case, stream)
    finally:
        safe_close(conn)


@pytest.mark.parametrize("case", ["get", "purge"])
def test_get_and_purge_close_the_connection(stream, case):
    conn = connect()
    try:
        ch = conn.channel()
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
            if case == "get":
                ch.basic_get(stream)
            else:
                ch.queue_purge(stream)
        assert close_info(e.value)[:2] == recorded("consume", case, stream)
    finally:
        safe_close(conn)


def test_nack_closes_the_connection(stream):
    conn = connect()
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=2)
        tags = []
        ch.basic_consume(stream, lambda c, m, p, b: tags.append(m.delivery_tag),
                         arguments={"x-stream-offset": "first"})
        wait_until(conn, lambda: tags)
        ch.basic_nack(tags[0], requeue=True)
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
            conn.process_data_events(time_limit=1)
            ch.basic_qos(prefetch_count=2)
        assert close_info(e.value)[:2] == recorded("consume", "nack_reject_requeue", stream)
    finally:
        safe_close(conn)


def test_independent_consumers_and_acks_keep_messages(connection, make_connection, stream):
    other = make_connection()
    assert read(connection, stream, "first", want=10) == every(0, 10)
    assert read(other, stream, "first", want=10) == every(0, 10)
    assert read(connection, stream, 0, prefetch=1, want=10) == every(0, 10)
