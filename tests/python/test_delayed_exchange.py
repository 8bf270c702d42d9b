"""The x-delayed-message exchange through pika (needs the broker to run with
rabbitmq_delayed_message_exchange enabled, as scripts/test.sh starts it; skipped
otherwise). Semantics: docs/compatibility.md, "The delayed-message exchange"."""

import time

import pika
import pika.exceptions
import pytest

from conftest import connect, get_all, safe_close, wait_until


@pytest.fixture
def delayed(channel, name):
    """Declares a delayed direct exchange; skips when the type is unknown."""
    x = name("dx")
    conn = connect()
    try:
        conn.channel().exchange_declare(
            x, "x-delayed-message", arguments={"x-delayed-type": "direct"})
    except pika.exceptions.ConnectionClosedByBroker as e:
        if e.reply_code == 503:
            pytest.skip("rabbitmq_delayed_message_exchange is not enabled")
        raise
    finally:
        safe_close(conn)
    yield x
    channel.exchange_delete(x)


def test_delayed_messages_arrive_in_due_order_with_the_negated_delay(
        connection, channel, delayed):
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q, delayed, routing_key="k")
    channel.confirm_delivery()
    start = time.monotonic()
    for body, delay in [("c", 600), ("a", 200), ("b", 400)]:
        channel.basic_publish(delayed, "k", body.encode(),
                              pika.BasicProperties(headers={"x-delay": delay}))
    channel.basic_publish(delayed, "k", b"now")
    got = []

    def collect():
        got.extend(get_all(channel, q))
        return len(got) == 4

    assert wait_until(connection, collect, timeout=5.0), got
    assert time.monotonic() - start >= 0.6
    assert [b.decode() for _, _, b in got] == ["now", "a", "b", "c"]
    assert got[0][1].headers is None
    assert [p.headers["x-delay"] for _, p, _ in got[1:]] == [-200, -400, -600]
