"""Issue #5, priorities: x-max-priority queues (recorded from RabbitMQ 3.10.8)."""

import pika
import pytest

from conftest import get_all, sync, wait_until
from qf_helpers import INVALID_ARG, Collector, Typed, bodies, declare_error, raw_queue_declare


def publish_prios(ch, q, prios):
    """Publish one message per priority; body 'index:priority'."""
    for i, p in enumerate(prios):
        ch.basic_publish("", q, ("%d:%s" % (i, p)).encode(), pika.BasicProperties(priority=p))
    sync(ch)


def declare(ch, name, max_priority):
    q = name("prio")
    args = None if max_priority is None else {"x-max-priority": max_priority}
    ch.queue_declare(q, exclusive=True, arguments=args)
    return q


def test_highest_first_fifo_within_priority_above_max_is_max_none_is_zero(channel, name):
    q = declare(channel, name, 5)
    publish_prios(channel, q, [1, 3, None, 5, 3, 9, 0, 255, 1])
    msgs = get_all(channel, q)
    # 9 and 255 count as 5 and keep FIFO order among the 5s; no priority == 0
    assert bodies(msgs) == [b"3:5", b"5:9", b"7:255", b"1:3", b"4:3", b"0:1", b"8:1",
                            b"2:None", b"6:0"]
    # the property itself is delivered unchanged
    assert [p.priority for (_m, p, _b) in msgs] == [5, 9, 255, 3, 3, 1, 1, None, 0]


def test_max_priority_one(channel, name):
    q = declare(channel, name, 1)
    publish_prios(channel, q, [0, 1, 2, None, 1, 0])
    assert bodies(get_all(channel, q)) == [b"1:1", b"2:2", b"4:1", b"0:0", b"3:None", b"5:0"]


def test_max_priority_255(channel, name):
    q = declare(channel, name, 255)
    publish_prios(channel, q, [0, 255, 128, 254, 128])
    assert bodies(get_all(channel, q)) == [b"1:255", b"3:254", b"2:128", b"4:128", b"0:0"]


@pytest.mark.parametrize("max_priority", [None, 0])
def test_queue_without_priorities_is_fifo(channel, name, max_priority):
    # x-max-priority 0 is accepted by RabbitMQ and behaves like a plain queue
    q = declare(channel, name, max_priority)
    publish_prios(channel, q, [1, 3, None, 5, 0])
    assert bodies(get_all(channel, q)) == [b"0:1", b"1:3", b"2:None", b"3:5", b"4:0"]


def test_consumer_gets_priority_order(connection, channel, name):
    q = declare(channel, name, 10)
    publish_prios(channel, q, [1, 5, None, 9])
    got = Collector()
    channel.basic_consume(q, got, auto_ack=True)
    assert wait_until(connection, lambda: len(got.msgs) == 4)
    assert got.bodies == [b"3:9", b"1:5", b"0:1", b"2:None"]


def test_nack_and_reject_requeue_keep_priority_order(channel, name):
    q = declare(channel, name, 10)
    publish_prios(channel, q, [1, 5, 5, 2, 10, 1])
    got = [channel.basic_get(q, auto_ack=False) for _ in range(3)]
    assert bodies(got) == [b"4:10", b"1:5", b"2:5"]
    channel.basic_nack(got[1][0].delivery_tag, requeue=True)
    channel.basic_reject(got[0][0].delivery_tag, requeue=True)
    channel.basic_publish("", q, b"late5", pika.BasicProperties(priority=5))
    sync(channel)
    # requeued messages go back to their place: ahead of later publishes of
    # the same priority; "2:5" is still unacked
    msgs = get_all(channel, q, auto_ack=False)
    assert [(m.redelivered, b) for (m, _p, b) in msgs] == [
        (True, b"4:10"), (True, b"1:5"), (False, b"late5"), (False, b"3:2"),
        (False, b"0:1"), (False, b"5:1")]
    channel.basic_recover(requeue=True)
    msgs = get_all(channel, q, auto_ack=False)
    assert [(m.redelivered, b) for (m, _p, b) in msgs] == [
        (True, b"4:10"), (True, b"1:5"), (True, b"2:5"), (True, b"late5"), (True, b"3:2"),
        (True, b"0:1"), (True, b"5:1")]


def test_channel_close_requeues_in_priority_order(connection, name):
    ch = connection.channel()
    q = declare(ch, name, 10)
    publish_prios(ch, q, [1, 5, 2, 10, 5])
    taken = [ch.basic_get(q, auto_ack=False) for _ in range(3)]
    assert bodies(taken) == [b"3:10", b"1:5", b"4:5"]
    ch.basic_publish("", q, b"late10", pika.BasicProperties(priority=10))
    sync(ch)
    ch.close()
    ch2 = connection.channel()
    msgs = get_all(ch2, q)
    assert [(m.redelivered, b) for (m, _p, b) in msgs] == [
        (True, b"3:10"), (False, b"late10"), (True, b"1:5"), (True, b"4:5"), (False, b"2:2"),
        (False, b"0:1")]


# ---------------------------------------------------------------------------
# argument validation
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", [1, 10, 255])
def test_valid_max_priority(channel, name, value):
    q = name("prio")
    assert channel.queue_declare(q, exclusive=True,
                                 arguments={"x-max-priority": value}).method.queue == q


@pytest.mark.parametrize("value,reason", [
    (256, "{max_value_exceeded,256}"),
    (1000, "{max_value_exceeded,1000}"),
    (2 ** 40, "{max_value_exceeded,1099511627776}"),
    (-1, "{value_negative,-1}"),
    ("5", '"expected integer, got longstr"'),
    (True, '"expected integer, got bool"'),
])
def test_invalid_max_priority(connection, name, value, reason):
    q = name("prio")
    assert declare_error(connection, q, {"x-max-priority": value}) == (
        406, INVALID_ARG % ("x-max-priority", q, reason), 50, 10)


@pytest.mark.parametrize("tag", ["b", "B", "s", "u", "I", "i", "l"])
def test_every_integer_width_accepted(raw, name, tag):
    assert raw_queue_declare(raw, name("prio"), {"x-max-priority": Typed(tag, 5)}) == ("ok", 0, 0)


@pytest.mark.parametrize("tag,value,reason", [
    ("b", -1, "{value_negative,-1}"),
    ("s", -1, "{value_negative,-1}"),
    ("u", 256, "{max_value_exceeded,256}"),
    ("f", 5.0, '"expected integer, got float"'),
    ("d", 5.0, '"expected integer, got double"'),
    ("D", (0, 5), '"expected integer, got decimal"'),
    ("T", 5, '"expected integer, got timestamp"'),
])
def test_invalid_width_or_type(raw, name, tag, value, reason):
    q = name("prio")
    assert raw_queue_declare(raw, q, {"x-max-priority": Typed(tag, value)}) == (
        406, INVALID_ARG % ("x-max-priority", q, reason), 50, 10)
