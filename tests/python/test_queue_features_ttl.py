"""Issue #5, TTL: x-message-ttl, the expiration property, x-expires.

Recorded from RabbitMQ 3.10.8."""

import time

import pika
import pytest

from conftest import get_all, sync, wait_until
from qf_helpers import (CCBB, INVALID_ARG, Collector, api_queue_exists, bodies, declare_error,
                        message_count, wait_count)

NOT_FOUND = "NOT_FOUND - no queue '%s' in vhost '/'"


def exp(ms):
    return pika.BasicProperties(expiration=str(ms))


def queue(ch, name, **args):
    q = name("ttl")
    ch.queue_declare(q, exclusive=True, arguments=args or None)
    return q


def test_queue_ttl_expires_without_consumer(connection, channel, name):
    q = queue(channel, name, **{"x-message-ttl": 400})
    channel.basic_publish("", q, b"a")
    sync(channel)
    assert message_count(connection, q) == 1
    # leaves the queue by itself: no consumer, no basic.get needed
    assert wait_count(connection, q, 0) == 0
    assert channel.basic_get(q) == (None, None, None)


def test_per_message_expiration(connection, channel, name):
    q = queue(channel, name)
    channel.basic_publish("", q, b"short", exp(400))
    channel.basic_publish("", q, b"keep", exp(60000))
    sync(channel)
    assert message_count(connection, q) == 2
    assert wait_count(connection, q, 1) == 1
    m, p, b = channel.basic_get(q)
    # the expiration property is delivered as published
    assert (b, p.expiration) == (b"keep", "60000")


def test_expired_message_behind_head_is_never_delivered(connection, channel, name):
    q = queue(channel, name)
    channel.basic_publish("", q, b"long", exp(60000))
    channel.basic_publish("", q, b"short", exp(100))
    sync(channel)
    time.sleep(0.3)
    # (RabbitMQ still counts "short" in message_count here -- it only drops
    # expired messages at the head -- so the count is deliberately not checked)
    assert bodies(get_all(channel, q)) == [b"long"]


@pytest.mark.parametrize("queue_ttl,msg_ttl", [(150, 60000), (60000, 150)])
def test_lower_of_queue_and_message_ttl_wins(connection, channel, name, queue_ttl, msg_ttl):
    q = queue(channel, name, **{"x-message-ttl": queue_ttl})
    channel.basic_publish("", q, b"m", exp(msg_ttl))
    sync(channel)
    t0 = time.monotonic()
    assert wait_count(connection, q, 0) == 0
    assert time.monotonic() - t0 < 3


def test_message_ttl_not_expired_yet_is_delivered(channel, name):
    q = queue(channel, name, **{"x-message-ttl": 60000})
    channel.basic_publish("", q, b"m", exp(30000))
    sync(channel)
    m, p, b = channel.basic_get(q)
    assert (b, p.expiration) == (b"m", "30000")


@pytest.mark.parametrize("args,props", [({"x-message-ttl": 0}, None), ({}, exp(0))])
def test_ttl_zero_without_consumer_is_dropped(connection, channel, name, args, props):
    q = queue(channel, name, **args)
    channel.basic_publish("", q, b"z", props)
    sync(channel)
    assert message_count(connection, q) == 0
    assert channel.basic_get(q) == (None, None, None)


@pytest.mark.parametrize("args,props,expiration", [
    ({"x-message-ttl": 0}, None, None), ({}, exp(0), "0")])
def test_ttl_zero_with_consumer_is_delivered(connection, channel, name, args, props,
                                              expiration):
    q = queue(channel, name, **args)
    got = Collector()
    channel.basic_consume(q, got, auto_ack=True)
    sync(channel)
    channel.basic_publish("", q, b"z", props)
    assert wait_until(connection, lambda: got.msgs)
    assert [(p.expiration, b) for (_m, p, b) in got.msgs] == [(expiration, b"z")]


def test_ttl_zero_consumer_without_credit_drops(connection, channel, name):
    q = queue(channel, name, **{"x-message-ttl": 0})
    channel.basic_qos(prefetch_count=1)
    got = Collector()
    channel.basic_consume(q, got)
    sync(channel)
    channel.basic_publish("", q, b"a")
    channel.basic_publish("", q, b"b")
    sync(channel)
    wait_until(connection, lambda: len(got.msgs) >= 2, timeout=0.5)
    assert got.bodies == [b"a"]
    assert message_count(connection, q) == 0


@pytest.mark.parametrize("args,props", [({"x-message-ttl": 400}, None), ({}, exp(400))])
def test_requeued_after_ttl_passed_is_expired(connection, channel, name, args, props):
    q = queue(channel, name, **args)
    channel.basic_publish("", q, b"r", props)
    sync(channel)
    m, _p, _b = channel.basic_get(q, auto_ack=False)
    time.sleep(0.8)
    channel.basic_nack(m.delivery_tag, requeue=True)
    sync(channel)
    assert wait_count(connection, q, 0) == 0
    assert channel.basic_get(q) == (None, None, None)


def test_unacked_message_is_not_expired_while_unacked(connection, channel, name):
    q = queue(channel, name, **{"x-message-ttl": 400})
    channel.basic_publish("", q, b"r")
    sync(channel)
    m, _p, _b = channel.basic_get(q, auto_ack=False)
    time.sleep(0.8)
    # still held by us: the ack is valid (an unknown tag would close the
    # channel with 406) and nothing was dead-lettered or dropped meanwhile
    channel.basic_ack(m.delivery_tag)
    sync(channel)
    assert channel.is_open
    assert message_count(connection, q) == 0


# ---------------------------------------------------------------------------
# expiration property validation: channel error on basic.publish (60, 40)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("value,reason", [
    ("abc", "no_integer"),
    ("", "no_integer"),
    (" 10", "no_integer"),
    ("-1", "{value_negative,-1}"),
    ("1.5", '{leftover_string,".5"}'),
    ("10 ", '{leftover_string," "}'),
    ("0x10", '{leftover_string,"x10"}'),
    ("1e3", '{leftover_string,"e3"}'),
    ("315360000001", "{value_too_large,315360000001}"),
])
def test_invalid_expiration_closes_channel(connection, name, value, reason):
    ch = connection.channel()
    q = queue(ch, name)
    ch.basic_publish("", q, b"x", exp(value))
    with pytest.raises(CCBB) as ei:
        sync(ch)
    e = ei.value
    assert (e.reply_code, e.reply_text, e.class_id, e.method_id) == (
        406, "PRECONDITION_FAILED - invalid expiration '%s': %s" % (value, reason), 60, 40)
    assert connection.is_open
    assert message_count(connection, q) == 0


def test_expiration_with_plus_sign_is_accepted(connection, channel, name):
    q = queue(channel, name)
    channel.basic_publish("", q, b"x", exp("+60000"))
    sync(channel)
    m, p, b = channel.basic_get(q)
    assert (b, p.expiration) == (b"x", "+60000")


def test_max_expiration_accepted(channel, name):
    q = queue(channel, name)
    channel.basic_publish("", q, b"x", exp(315360000000))
    sync(channel)
    assert channel.basic_get(q)[2] == b"x"


# ---------------------------------------------------------------------------
# x-expires
# ---------------------------------------------------------------------------

def exists(connection, q):
    ch = connection.channel()
    try:
        ch.queue_declare(q, passive=True)
    except CCBB as e:
        assert (e.reply_code, e.reply_text) == (404, NOT_FOUND % q)
        return False
    ch.close()
    return True


def wait_gone(connection, q, expires_ms, timeout=3.0):
    """Poll for deletion.  A passive declare counts as use and renews the
    lease (recorded), so poll at intervals longer than x-expires."""
    deadline = time.monotonic() + timeout
    while True:
        time.sleep(expires_ms / 1000.0 * 2.5)
        if not exists(connection, q):
            return True
        if time.monotonic() > deadline:
            return False


def test_unused_queue_is_deleted(connection, channel, name, cleanup):
    q = cleanup.queue(name("exp"))
    channel.queue_declare(q, arguments={"x-expires": 150})
    # publishing does not count as use
    channel.basic_publish("", q, b"a")
    sync(channel)
    assert wait_gone(connection, q, 150)
    ch = connection.channel()
    with pytest.raises(CCBB) as ei:
        ch.queue_declare(q, passive=True)
    e = ei.value
    assert (e.reply_code, e.reply_text, e.class_id, e.method_id) == (404, NOT_FOUND % q, 50, 10)


def test_consumer_keeps_queue_alive_then_cancel_starts_timer(connection, channel, name,
                                                            cleanup):
    q = cleanup.queue(name("exp"))
    channel.queue_declare(q, arguments={"x-expires": 150})
    tag = channel.basic_consume(q, lambda *a: None)
    time.sleep(0.5)
    assert exists(connection, q)
    channel.basic_cancel(tag)
    assert wait_gone(connection, q, 150)


@pytest.mark.parametrize("use", ["get", "redeclare", "passive"])
def test_use_renews_lease(connection, channel, name, cleanup, use):
    q = cleanup.queue(name("exp"))
    channel.queue_declare(q, arguments={"x-expires": 800})
    for _ in range(10):  # 1.5 s in all, almost twice the lease
        time.sleep(0.15)
        if use == "get":
            channel.basic_get(q)
        elif use == "redeclare":
            channel.queue_declare(q, arguments={"x-expires": 800})
        else:
            channel.queue_declare(q, passive=True)
    assert exists(connection, q)


def test_publishing_does_not_renew_lease(connection, channel, name, cleanup):
    q = cleanup.queue(name("exp"))
    channel.queue_declare(q, arguments={"x-expires": 400})
    # Publish every 0.1 s (4 times per lease) until the queue is gone, watching through
    # the management API (a passive declare would renew the lease): had publishing
    # renewed it, the queue would outlive the 10 s of publishing.
    deadline = time.monotonic() + 10.0
    while api_queue_exists(q):
        assert time.monotonic() < deadline, "publishing kept the queue alive"
        channel.basic_publish("", q, b"x")
        sync(channel)
        time.sleep(0.1)
    assert not exists(connection, q)


@pytest.mark.parametrize("value,reason", [
    (0, "{value_zero,0}"),
    (-1, "{value_negative,-1}"),
    ("1", '"expected integer, got longstr"'),
    (315360000001, "{value_too_large,315360000001}"),
])
def test_invalid_x_expires(connection, name, value, reason):
    q = name("exp")
    assert declare_error(connection, q, {"x-expires": value}) == (
        406, INVALID_ARG % ("x-expires", q, reason), 50, 10)
