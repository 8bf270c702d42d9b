"""Issue #5, queue types: x-queue-type classic / quorum / stream, type-specific
arguments, x-delivery-limit.  Recorded from RabbitMQ 3.10.8 (single node)."""

import time

import pika
import pika.compat
import pika.exceptions
import pytest

from conftest import get_all, sync, wait_until
from qf_helpers import (CCBB, INEQUIVALENT, INVALID_ARG, bodies, declare_error, get_one,
                        get_n, strip_time, wait_count)

INVALID_PROPERTY = "PRECONDITION_FAILED - invalid property '%s' for queue '%s' in vhost '/'"
WRONG_TYPE = ("PRECONDITION_FAILED - invalid arg '%s' for queue '%s' in vhost '/' "
              "of queue type %s")


@pytest.fixture
def quorum(channel, name, cleanup):
    """quorum(**args) -> name of a new quorum queue, deleted after the test."""
    def _make(**args):
        q = cleanup.queue(name("qq"))
        a = {"x-queue-type": "quorum"}
        a.update(args)
        ok = channel.queue_declare(q, durable=True, arguments=a).method
        assert (ok.queue, ok.message_count, ok.consumer_count) == (q, 0, 0)
        return q
    return _make


def with_dlq(channel, name):
    dlq = name("dlq")
    channel.queue_declare(dlq, exclusive=True)
    return dlq, {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}


def test_explicit_classic(channel, name):
    q = name("cq")
    ok = channel.queue_declare(q, exclusive=True, arguments={"x-queue-type": "classic"})
    assert ok.method.queue == q


def test_quorum_declare_publish_get(channel, quorum):
    q = quorum()
    # redeclare with the same arguments is fine
    assert channel.queue_declare(q, durable=True,
                                 arguments={"x-queue-type": "quorum"}).method.queue == q
    channel.basic_publish("", q, b"hello")
    sync(channel)
    # (quorum counts in declare-ok are eventually consistent on RabbitMQ)
    assert wait_count(channel.connection, q, 1) == 1
    m, p, b = get_one(channel, q)
    # basic.get adds x-delivery-count even on the first delivery (0)
    assert (b, m.redelivered, p.headers) == (b"hello", False, {"x-delivery-count": 0})


@pytest.mark.parametrize("kw,prop", [
    (dict(durable=False), "non-durable"),
    (dict(durable=True, exclusive=True), "exclusive-owner"),
    (dict(durable=True, auto_delete=True), "auto-delete"),
])
def test_quorum_must_be_durable_not_exclusive_not_auto_delete(connection, name, kw, prop):
    q = name("qq")
    assert declare_error(connection, q, {"x-queue-type": "quorum"}, **kw) == (
        406, INVALID_PROPERTY % (prop, q), 50, 10)


def test_stream_queue_type(connection, name, cleanup):
    # RabbitMQ 3.10 creates a durable stream queue (x-queue-type stream); its
    # declare-ok counts are 0 (test_streams.py covers streams in depth).
    q = cleanup.queue(name("stream"))
    ch = connection.channel()
    ok = ch.queue_declare(q, durable=True, arguments={"x-queue-type": "stream"})
    assert (ok.method.queue, ok.method.message_count, ok.method.consumer_count) == (q, 0, 0)


@pytest.mark.parametrize("value,reason", [
    ("bogus", "\"unsupported queue type 'bogus'\""),
    ("Classic", "\"unsupported queue type 'Classic'\""),
    ("", "\"unsupported queue type ''\""),
    (5, "{unacceptable_type,signedint}"),
])
def test_unknown_queue_type(connection, name, value, reason):
    q = name("q")
    assert declare_error(connection, q, {"x-queue-type": value}) == (
        406, INVALID_ARG % ("x-queue-type", q, reason), 50, 10)


@pytest.mark.parametrize("args", [
    {"x-queue-mode": "lazy"}, {"x-queue-mode": "default"},
    {"x-queue-master-locator": "min-masters"}, {"x-queue-master-locator": "client-local"},
    {"x-queue-master-locator": "random"},
])
def test_classic_only_args_accepted_on_classic(channel, name, args):
    q = name("q")
    assert channel.queue_declare(q, exclusive=True, arguments=args).method.queue == q


@pytest.mark.parametrize("value,reason", [
    ("bogus", "\"unsupported queue mode 'bogus'\""),
    (5, "{unacceptable_type,signedint}"),
])
def test_invalid_queue_mode(connection, name, value, reason):
    q = name("q")
    assert declare_error(connection, q, {"x-queue-mode": value}) == (
        406, INVALID_ARG % ("x-queue-mode", q, reason), 50, 10)


@pytest.mark.parametrize("arg,value", [
    ("x-delivery-limit", 5), ("x-delivery-limit", -1), ("x-delivery-limit", "1"),
    ("x-max-in-memory-length", 5), ("x-max-in-memory-bytes", 5),
    ("x-quorum-initial-group-size", 3), ("x-dead-letter-strategy", "at-most-once"),
    ("x-max-age", "1D"), ("x-stream-max-segment-size-bytes", 1000),
])
def test_other_types_args_refused_on_classic(connection, name, arg, value):
    q = name("q")
    assert declare_error(connection, q, {arg: value}) == (
        406, WRONG_TYPE % (arg, q, "rabbit_classic_queue"), 50, 10)


@pytest.mark.parametrize("arg,value", [
    ("x-max-priority", 5), ("x-queue-mode", "lazy"),
    ("x-queue-master-locator", "min-masters"),
])
def test_classic_only_args_refused_on_quorum(connection, name, arg, value):
    q = name("qq")
    assert declare_error(connection, q, {"x-queue-type": "quorum", arg: value},
                         durable=True) == (
        406, WRONG_TYPE % (arg, q, "rabbit_quorum_queue"), 50, 10)


@pytest.mark.parametrize("args", [
    {"x-delivery-limit": 2}, {"x-delivery-limit": 0}, {"x-max-length": 1},
    {"x-max-length-bytes": 1}, {"x-overflow": "reject-publish"},
    {"x-overflow": "reject-publish-dlx"}, {"x-message-ttl": 1000}, {"x-expires": 10000},
    {"x-single-active-consumer": True}, {"x-max-in-memory-length": 1},
    {"x-dead-letter-exchange": "x", "x-dead-letter-strategy": "at-most-once"},
    {"x-quorum-initial-group-size": 1},
])
def test_quorum_args_accepted(quorum, args):
    assert quorum(**args)


def test_quorum_delivery_limit_is_not_type_checked(quorum):
    # RabbitMQ 3.10 accepts a string (and negative values) here
    assert quorum(**{"x-delivery-limit": "1"})
    assert quorum(**{"x-delivery-limit": -1})


def test_quorum_invalid_dead_letter_strategy(connection, name):
    q = name("qq")
    assert declare_error(connection, q, {"x-queue-type": "quorum",
                                         "x-dead-letter-strategy": "bogus"},
                         durable=True) == (
        406, INVALID_ARG % ("x-dead-letter-strategy", q, "invalid_dlx_strategy"), 50, 10)


# ---------------------------------------------------------------------------
# quorum delivery
# ---------------------------------------------------------------------------

def test_delivery_limit_and_delivery_count_header(channel, name, quorum):
    dlq, dl = with_dlq(channel, name)
    q = quorum(**dict(dl, **{"x-delivery-limit": 2}))
    channel.basic_publish("", q, b"d", pika.BasicProperties(headers={"h": 1}))
    seen = []
    for _ in range(3):
        m, p, b = get_one(channel, q, auto_ack=False)
        seen.append((m.redelivered, p.headers))
        channel.basic_nack(m.delivery_tag, requeue=True)
    # x-delivery-count is a long-long ('l'), like x-death's count
    assert all(isinstance(h["x-delivery-count"], pika.compat.long) for (_r, h) in seen)
    assert seen == [(False, {"h": 1, "x-delivery-count": 0}),
                    (True, {"h": 1, "x-delivery-count": 1}),
                    (True, {"h": 1, "x-delivery-count": 2})]
    # the third return exceeds the limit of 2: dead-lettered, not redelivered
    m, p, b = get_one(channel, dlq)
    assert (b, m.exchange, m.routing_key, m.redelivered) == (b"d", "", dlq, False)
    assert strip_time(p.headers["x-death"]) == [{
        "count": 1, "reason": "delivery_limit", "queue": q, "exchange": "",
        "routing-keys": [q]}]
    # no x-delivery-count on the dead-lettered copy
    assert {k: v for k, v in p.headers.items() if k != "x-death"} == {
        "h": 1, "x-first-death-exchange": "", "x-first-death-queue": q,
        "x-first-death-reason": "delivery_limit"}
    assert channel.basic_get(q) == (None, None, None)


def test_delivery_limit_without_dlx_drops(channel, quorum):
    q = quorum(**{"x-delivery-limit": 1})
    channel.basic_publish("", q, b"d")
    for _ in range(2):
        m, _p, _b = get_one(channel, q, auto_ack=False)
        channel.basic_reject(m.delivery_tag, requeue=True)
    sync(channel)
    assert wait_count(channel.connection, q, 0) == 0
    assert channel.basic_get(q) == (None, None, None)


def test_consume_delivery_count_header(connection, channel, quorum):
    q = quorum()
    channel.basic_publish("", q, b"x")
    got = []
    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(q, lambda c, m, p, b: got.append((m, p)))
    assert wait_until(connection, lambda: got)
    # basic.deliver: no header on the first delivery (unlike basic.get)
    assert (got[0][0].redelivered, got[0][1].headers) == (False, None)
    channel.basic_nack(got[0][0].delivery_tag, requeue=True)
    assert wait_until(connection, lambda: len(got) > 1)
    assert (got[1][0].redelivered, got[1][1].headers) == (True, {"x-delivery-count": 1})


def test_quorum_reject_requeue_false_dead_letters(channel, name, quorum):
    dlq, dl = with_dlq(channel, name)
    q = quorum(**dl)
    channel.basic_publish("", q, b"r")
    m, _p, _b = get_one(channel, q, auto_ack=False)
    channel.basic_reject(m.delivery_tag, requeue=False)
    m, p, b = get_one(channel, dlq)
    assert b == b"r"
    assert strip_time(p.headers["x-death"]) == [{
        "count": 1, "reason": "rejected", "queue": q, "exchange": "", "routing-keys": [q]}]


def test_quorum_message_ttl_dead_letters_expired(channel, name, quorum):
    dlq, dl = with_dlq(channel, name)
    q = quorum(**dict(dl, **{"x-message-ttl": 100}))
    channel.basic_publish("", q, b"t")
    m, p, b = get_one(channel, dlq)
    assert b == b"t"
    assert strip_time(p.headers["x-death"]) == [{
        "count": 1, "reason": "expired", "queue": q, "exchange": "", "routing-keys": [q]}]


def test_quorum_requeue_goes_to_the_back(channel, quorum):
    q = quorum()
    for i in range(4):
        channel.basic_publish("", q, b"o%d" % i)
    sync(channel)
    ms = get_n(channel, q, 3, auto_ack=False)
    channel.basic_nack(ms[2][0].delivery_tag, requeue=True)
    channel.basic_nack(ms[0][0].delivery_tag, requeue=True)
    sync(channel)
    channel.basic_publish("", q, b"late")
    sync(channel)
    # returned messages are appended in return order, behind o3 (o1 unacked)
    msgs = get_all(channel, q, auto_ack=False)
    assert [(b, m.redelivered, p.headers) for (m, p, b) in msgs] == [
        (b"o3", False, {"x-delivery-count": 0}),
        (b"o2", True, {"x-delivery-count": 1}),
        (b"o0", True, {"x-delivery-count": 1}),
        (b"late", False, {"x-delivery-count": 0}),
    ]
    channel.basic_recover(requeue=True)
    msgs = get_all(channel, q)
    # recover returns every unacked message in delivery-tag order
    assert [(b, p.headers) for (m, p, b) in msgs] == [
        (b"o1", {"x-delivery-count": 1}), (b"o3", {"x-delivery-count": 1}),
        (b"o2", {"x-delivery-count": 2}), (b"o0", {"x-delivery-count": 2}),
        (b"late", {"x-delivery-count": 1})]


def test_classic_requeue_keeps_original_position(channel, name):
    q = name("cq")
    channel.queue_declare(q, exclusive=True)
    for i in range(4):
        channel.basic_publish("", q, b"o%d" % i)
    sync(channel)
    ms = get_n(channel, q, 3, auto_ack=False)
    channel.basic_nack(ms[2][0].delivery_tag, requeue=True)
    channel.basic_nack(ms[0][0].delivery_tag, requeue=True)
    channel.basic_publish("", q, b"late")
    sync(channel)
    msgs = get_all(channel, q, auto_ack=False)
    assert [(b, m.redelivered, p.headers) for (m, p, b) in msgs] == [
        (b"o0", True, None), (b"o2", True, None), (b"o3", False, None),
        (b"late", False, None)]


def test_quorum_ignores_priority(channel, quorum):
    q = quorum()
    for pr in (1, 9, 5):
        channel.basic_publish("", q, b"%d" % pr, pika.BasicProperties(priority=pr))
    sync(channel)
    assert bodies(get_all(channel, q)) == [b"1", b"9", b"5"]


def confirmed(ch, q, body):
    try:
        ch.basic_publish("", q, body)
        return "ack"
    except pika.exceptions.NackError:
        return "nack"


@pytest.mark.parametrize("overflow,acks,kept,dead", [
    ("drop-head", ["ack", "ack", "ack"], [b"p2"], [b"p0", b"p1"]),
    # the limit is checked before the enqueue: one message over it gets in
    ("reject-publish", ["ack", "ack", "nack"], [b"p0", b"p1"], []),
    # quorum queues in 3.10 do not implement reject-publish-dlx: drop-head
    ("reject-publish-dlx", ["ack", "ack", "ack"], [b"p2"], [b"p0", b"p1"]),
])
def test_quorum_overflow(connection, channel, name, quorum, overflow, acks, kept, dead):
    dlq, dl = with_dlq(channel, name)
    q = quorum(**dict(dl, **{"x-max-length": 1, "x-overflow": overflow}))
    ch = connection.channel()
    ch.confirm_delivery()
    assert [confirmed(ch, q, b"p%d" % i) for i in range(3)] == acks
    got = get_n(channel, dlq, len(dead))
    time.sleep(0.2)  # nothing more may arrive
    got += get_all(channel, dlq)
    assert bodies(got) == dead
    for _m, p, _b in got:
        assert p.headers["x-death"][0]["reason"] == "maxlen"
    assert bodies(get_all(channel, q)) == kept


# ---------------------------------------------------------------------------
# redeclare equivalence
# ---------------------------------------------------------------------------

def test_redeclare_quorum_as_classic(connection, quorum):
    q = quorum()
    assert declare_error(connection, q, {"x-queue-type": "classic"}, durable=True) == (
        406, INEQUIVALENT % ("x-queue-type", q, "'classic'", "'quorum'"), 50, 10)
    assert declare_error(connection, q, None, durable=True) == (
        406, INEQUIVALENT % ("x-queue-type", q, "none",
                             "the value 'quorum' of type 'longstr'"), 50, 10)
    assert declare_error(connection, q, {"x-queue-type": "quorum"}, durable=False) == (
        406, "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '%s' in vhost '/': "
        "received 'false' but current is 'true'" % q, 50, 10)


def test_redeclare_quorum_with_extra_arg(connection, quorum):
    q = quorum()
    assert declare_error(connection, q, {"x-queue-type": "quorum", "x-delivery-limit": 3},
                         durable=True) == (
        406, INEQUIVALENT % ("x-delivery-limit", q,
                             "the value '3' of type 'signedint'", "none"), 50, 10)


def test_classic_queue_type_is_the_default(channel, name, cleanup):
    # "classic" and no x-queue-type are equivalent in both directions
    q1, q2 = cleanup.queue(name("cq")), cleanup.queue(name("cq"))
    channel.queue_declare(q1, arguments={"x-queue-type": "classic"})
    assert channel.queue_declare(q1).method.queue == q1
    channel.queue_declare(q2)
    assert channel.queue_declare(q2, arguments={"x-queue-type": "classic"}).method.queue == q2


@pytest.mark.parametrize("durable", [False, True])
def test_redeclare_classic_as_quorum(connection, channel, name, cleanup, durable):
    # an existing queue is checked for equivalence (no quorum property check)
    q = cleanup.queue(name("cq"))
    channel.queue_declare(q, durable=durable)
    assert declare_error(connection, q, {"x-queue-type": "quorum"}, durable=durable) == (
        406, INEQUIVALENT % ("x-queue-type", q, "the value 'quorum' of type 'longstr'",
                             "none"), 50, 10)


def test_passive_declare_ignores_arguments(connection, quorum):
    q = quorum()
    ch = connection.channel()
    assert ch.queue_declare(q, passive=True,
                            arguments={"x-queue-type": "classic"}).method.queue == q
