"""Issue #5, length limits: x-max-length, x-max-length-bytes, x-overflow.

Recorded from RabbitMQ 3.10.8 (classic queues; quorum queues are in
test_queue_features_queue_types.py)."""

import time

import pika
import pika.exceptions
import pytest

from conftest import get_all, sync
from qf_helpers import INVALID_ARG, bodies, declare_error, get_n, message_count, strip_time


def limited(ch, name, dead_letter=True, **args):
    """Exclusive queue with the given x- args; dead-letters into q + '-dl'."""
    q = name("lim")
    a = dict(args)
    if dead_letter:
        ch.queue_declare(q + "-dl", exclusive=True)
        a.update({"x-dead-letter-exchange": "", "x-dead-letter-routing-key": q + "-dl"})
    ch.queue_declare(q, exclusive=True, arguments=a)
    return q


def publish_confirmed(ch, q, body):
    """'ack' or 'nack' for one publish on a channel in confirm mode."""
    try:
        ch.basic_publish("", q, body)
        return "ack"
    except pika.exceptions.NackError:
        return "nack"


def dl_bodies(ch, q, n):
    """Wait for n dead-lettered messages (asynchronous) and return them."""
    out = get_n(ch, q + "-dl", n)
    time.sleep(0.2 if n == 0 else 0.05)  # nothing more may arrive
    return out + get_all(ch, q + "-dl")


@pytest.mark.parametrize("explicit", [False, True])
def test_drop_head_is_default(channel, name, explicit):
    args = {"x-max-length": 2}
    if explicit:
        args["x-overflow"] = "drop-head"
    q = limited(channel, name, **args)
    for i in range(5):
        channel.basic_publish("", q, b"m%d" % i)
    sync(channel)
    msgs = dl_bodies(channel, q, 3)
    assert bodies(msgs) == [b"m0", b"m1", b"m2"]
    for _m, p, _b in msgs:
        assert strip_time(p.headers["x-death"]) == [{
            "count": 1, "reason": "maxlen", "queue": q, "exchange": "", "routing-keys": [q]}]
        assert p.headers["x-first-death-reason"] == "maxlen"
    assert bodies(get_all(channel, q)) == [b"m3", b"m4"]


def test_drop_head_without_dlx_drops(connection, channel, name):
    q = limited(channel, name, dead_letter=False, **{"x-max-length": 1})
    for i in range(3):
        channel.basic_publish("", q, b"m%d" % i)
    sync(channel)
    assert message_count(connection, q) == 1
    assert bodies(get_all(channel, q)) == [b"m2"]


def test_max_length_zero(channel, name):
    q = limited(channel, name, **{"x-max-length": 0})
    channel.basic_publish("", q, b"z")
    sync(channel)
    assert bodies(dl_bodies(channel, q, 1)) == [b"z"]
    assert get_all(channel, q) == []


def test_max_length_bytes_counts_body_bytes_only(channel, name):
    q = limited(channel, name, **{"x-max-length-bytes": 10})
    big = pika.BasicProperties(headers={"big": "x" * 100})  # headers do not count
    for b in (b"aaaa", b"bbbb", b"cc"):
        channel.basic_publish("", q, b, big)
    sync(channel)
    assert bodies(get_all(channel, q, auto_ack=False)) == [b"aaaa", b"bbbb", b"cc"]
    channel.basic_recover(requeue=True)
    channel.basic_publish("", q, b"dddd", big)     # 14 > 10: drop the head
    sync(channel)
    assert bodies(dl_bodies(channel, q, 1)) == [b"aaaa"]
    assert bodies(get_all(channel, q, auto_ack=False)) == [b"bbbb", b"cc", b"dddd"]
    channel.basic_recover(requeue=True)
    channel.basic_publish("", q, b"e" * 11, big)   # larger than the limit alone
    sync(channel)
    msgs = dl_bodies(channel, q, 4)
    assert bodies(msgs) == [b"bbbb", b"cc", b"dddd", b"e" * 11]
    assert msgs[-1][1].headers["x-death"][0]["reason"] == "maxlen"
    assert get_all(channel, q) == []


def test_both_limits_apply(channel, name):
    q = limited(channel, name, **{"x-max-length": 3, "x-max-length-bytes": 4})
    for b in (b"a", b"b", b"c", b"dd", b"e"):
        channel.basic_publish("", q, b)
    sync(channel)
    assert bodies(dl_bodies(channel, q, 2)) == [b"a", b"b"]
    assert bodies(get_all(channel, q)) == [b"c", b"dd", b"e"]


def test_unacked_messages_do_not_count(connection, channel, name):
    q = limited(channel, name, **{"x-max-length": 2})
    channel.basic_publish("", q, b"u0")
    channel.basic_publish("", q, b"u1")
    sync(channel)
    m0, _p, _b = channel.basic_get(q, auto_ack=False)
    m1, _p, _b = channel.basic_get(q, auto_ack=False)
    for i in (2, 3, 4):
        channel.basic_publish("", q, b"u%d" % i)
    sync(channel)
    # two unacked + three published: only the ready messages count
    assert bodies(dl_bodies(channel, q, 1)) == [b"u2"]
    assert message_count(connection, q) == 2
    # requeueing them goes over the limit: the head (now the requeued
    # messages) is dropped and dead-lettered
    channel.basic_nack(m1.delivery_tag, multiple=True, requeue=True)
    sync(channel)
    assert bodies(dl_bodies(channel, q, 2)) == [b"u0", b"u1"]
    assert bodies(get_all(channel, q)) == [b"u3", b"u4"]


@pytest.mark.parametrize("overflow,dead_letters", [
    ("reject-publish", False), ("reject-publish-dlx", True)])
def test_reject_publish_without_confirms_drops_new(channel, name, overflow, dead_letters):
    q = limited(channel, name, **{"x-max-length": 1, "x-overflow": overflow})
    for i in range(3):
        channel.basic_publish("", q, b"p%d" % i)
    sync(channel)
    assert channel.is_open
    # reject-publish-dlx dead-letters the refused message (classic queue, 3.10)
    expected = [b"p1", b"p2"] if dead_letters else []
    assert bodies(dl_bodies(channel, q, len(expected))) == expected
    assert bodies(get_all(channel, q)) == [b"p0"]


@pytest.mark.parametrize("overflow,dead_letters", [
    ("reject-publish", False), ("reject-publish-dlx", True)])
def test_reject_publish_with_confirms_nacks(connection, channel, name, overflow, dead_letters):
    q = limited(channel, name, **{"x-max-length": 1, "x-overflow": overflow})
    ch = connection.channel()
    ch.confirm_delivery()
    assert [publish_confirmed(ch, q, b"c%d" % i) for i in range(3)] == ["ack", "nack", "nack"]
    msgs = dl_bodies(channel, q, 2 if dead_letters else 0)
    if dead_letters:
        assert bodies(msgs) == [b"c1", b"c2"]
        for _m, p, _b in msgs:
            assert strip_time(p.headers["x-death"]) == [{
                "count": 1, "reason": "maxlen", "queue": q, "exchange": "", "routing-keys": [q]}]
            assert {k: v for k, v in p.headers.items() if k != "x-death"} == {
                "x-first-death-exchange": "", "x-first-death-queue": q,
                "x-first-death-reason": "maxlen"}
    else:
        assert msgs == []
    assert bodies(get_all(channel, q)) == [b"c0"]


@pytest.mark.parametrize("overflow", ["reject-publish", "reject-publish-dlx"])
def test_reject_publish_nacks_even_if_another_queue_took_it(connection, channel, name,
                                                           overflow):
    q = limited(channel, name, **{"x-max-length": 1, "x-overflow": overflow})
    other = name("other")
    channel.queue_declare(other, exclusive=True)
    fx = name("fx")
    channel.exchange_declare(fx, "fanout", auto_delete=True)
    channel.queue_bind(q, fx)
    channel.queue_bind(other, fx)
    ch = connection.channel()
    ch.confirm_delivery()
    ch.basic_publish(fx, "", b"first")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish(fx, "", b"second")
    assert bodies(get_all(channel, other)) == [b"first", b"second"]
    assert bodies(get_all(channel, q)) == [b"first"]


def test_reject_publish_mandatory_gets_nack(connection, channel, name):
    q = limited(channel, name, **{"x-max-length": 1, "x-overflow": "reject-publish"})
    ch = connection.channel()
    ch.confirm_delivery()
    ch.basic_publish("", q, b"f0", mandatory=True)
    with pytest.raises(pika.exceptions.NackError) as ei:
        ch.basic_publish("", q, b"f1", mandatory=True)
    # routed to a queue, so no basic.return came with the nack
    assert ei.value.messages == []


@pytest.mark.parametrize("overflow", ["reject-publish", "reject-publish-dlx"])
def test_reject_publish_ignores_unacked(connection, channel, name, overflow):
    q = limited(channel, name, **{"x-max-length": 1, "x-overflow": overflow})
    ch = connection.channel()
    ch.confirm_delivery()
    assert publish_confirmed(ch, q, b"g0") == "ack"
    m, _p, _b = channel.basic_get(q, auto_ack=False)
    assert publish_confirmed(ch, q, b"g1") == "ack"
    assert publish_confirmed(ch, q, b"g2") == "nack"
    channel.basic_ack(m.delivery_tag)
    assert bodies(get_all(channel, q)) == [b"g1"]


def test_reject_publish_accepts_again_after_consuming(connection, channel, name):
    q = limited(channel, name, **{"x-max-length": 1, "x-overflow": "reject-publish"})
    ch = connection.channel()
    ch.confirm_delivery()
    assert [publish_confirmed(ch, q, b"a"), publish_confirmed(ch, q, b"b")] == ["ack", "nack"]
    assert bodies(get_all(channel, q)) == [b"a"]
    assert publish_confirmed(ch, q, b"c") == "ack"
    assert bodies(get_all(channel, q)) == [b"c"]


# ---------------------------------------------------------------------------
# argument validation
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("arg,value,reason", [
    ("x-max-length", -1, "{value_negative,-1}"),
    ("x-max-length", "1", '"expected integer, got longstr"'),
    ("x-max-length", True, '"expected integer, got bool"'),
    ("x-max-length-bytes", -1, "{value_negative,-1}"),
    ("x-max-length-bytes", "1", '"expected integer, got longstr"'),
    ("x-overflow", "bogus", "invalid_overflow"),
    ("x-overflow", "Drop-Head", "invalid_overflow"),
    ("x-overflow", 5, "{unacceptable_type,signedint}"),
    ("x-overflow", True, "{unacceptable_type,bool}"),
])
def test_invalid_limit_args(connection, name, arg, value, reason):
    q = name("lim")
    assert declare_error(connection, q, {arg: value}) == (
        406, INVALID_ARG % (arg, q, reason), 50, 10)


@pytest.mark.parametrize("args", [
    {"x-max-length": 0}, {"x-max-length": 2 ** 40}, {"x-max-length-bytes": 0},
    {"x-max-length-bytes": 2 ** 40}, {"x-overflow": "drop-head"},
    {"x-overflow": "reject-publish"}, {"x-overflow": "reject-publish-dlx"},
])
def test_valid_limit_args(channel, name, args):
    q = name("lim")
    assert channel.queue_declare(q, exclusive=True, arguments=args).method.queue == q
