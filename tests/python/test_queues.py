"""Queues: declare/bind/purge/delete semantics, exclusivity, auto-delete."""

import re

import pika
import pika.exceptions
import pytest

from conftest import close_info, get_all, sync, wait_until

CCBB = pika.exceptions.ChannelClosedByBroker

LOCKED = ("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '%s' in vhost '/'. "
          "It could be originally declared on another connection or the exclusive property "
          "value does not match that of the original declaration.")


def excl_queue(ch):
    return ch.queue_declare("", exclusive=True).method.queue


def assert_channel_error(ei, code, text, class_id, method_id):
    assert close_info(ei.value) == (code, text, class_id, method_id)


def test_server_named_queue(channel):
    ok = channel.queue_declare("", exclusive=True).method
    assert re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}", ok.queue), ok.queue
    assert (ok.message_count, ok.consumer_count) == (0, 0)
    other = channel.queue_declare("", exclusive=True).method.queue
    assert other != ok.queue


def test_named_queue_declare_ok(channel, name):
    q = name("q")
    ok = channel.queue_declare(q, exclusive=True).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (q, 0, 0)


@pytest.mark.parametrize("qname", ["amq.gen-foo", "amq.warren"])
def test_reserved_prefix(channel, qname):
    with pytest.raises(CCBB) as ei:
        channel.queue_declare(qname)
    assert_channel_error(
        ei, 403, "ACCESS_REFUSED - queue name '%s' contains reserved prefix 'amq.*'" % qname,
        50, 10)


def test_passive_declare_missing(connection, channel):
    with pytest.raises(CCBB) as ei:
        channel.queue_declare("warren-no-such-queue", passive=True)
    assert_channel_error(ei, 404, "NOT_FOUND - no queue 'warren-no-such-queue' in vhost '/'",
                         50, 10)
    assert connection.is_open
    assert connection.channel().is_open


def test_declare_ok_counts(connection, channel, name):
    q = name("q")
    channel.queue_declare(q, exclusive=True)
    for i in range(3):
        channel.basic_publish("", q, b"m%d" % i)
    sync(channel)
    ok = channel.queue_declare(q, passive=True).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (q, 3, 0)
    c2 = connection.channel()
    c2.basic_qos(prefetch_count=1)
    c2.basic_consume(q, lambda *a: None)
    c2.basic_consume(q, lambda *a: None)
    sync(c2)
    # 2 consumers with prefetch 1 each: 2 messages in flight, 1 ready
    ok = channel.queue_declare(q, exclusive=True).method
    assert (ok.message_count, ok.consumer_count) == (1, 2)


def test_durable_declare_and_redeclare(channel, name, cleanup):
    q = cleanup.queue(name("durable"))
    ok = channel.queue_declare(q, durable=True).method
    assert ok.queue == q
    assert channel.queue_declare(q, durable=True).method.queue == q
    assert channel.queue_declare(q, passive=True).method.queue == q


@pytest.mark.parametrize("first,second,arg,received,current", [
    (dict(), dict(durable=True), "durable", "true", "false"),
    (dict(durable=True), dict(), "durable", "false", "true"),
    (dict(), dict(auto_delete=True), "auto_delete", "true", "false"),
    (dict(arguments={"x-max-length": 10}), dict(arguments={"x-max-length": 20}),
     "x-max-length", "20", "10"),
])
def test_inequivalent_redeclare(connection, name, cleanup, first, second, arg, received, current):
    q = cleanup.queue(name("q"))
    ch = connection.channel()
    ch.queue_declare(q, **first)
    with pytest.raises(CCBB) as ei:
        ch.queue_declare(q, **second)
    assert_channel_error(
        ei, 406,
        "PRECONDITION_FAILED - inequivalent arg '%s' for queue '%s' in vhost '/': "
        "received '%s' but current is '%s'" % (arg, q, received, current),
        50, 10)
    assert connection.channel().queue_declare(q, **first).method.queue == q


def test_inequivalent_missing_argument(channel, name):
    q = name("q")
    channel.queue_declare(q, exclusive=True, arguments={"x-message-ttl": 10000})
    with pytest.raises(CCBB) as ei:
        channel.queue_declare(q, exclusive=True)
    assert_channel_error(
        ei, 406,
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '%s' in vhost '/': "
        "received none but current is the value '10000' of type 'signedint'" % q,
        50, 10)


def test_passive_declare_ignores_flags(channel, name):
    q = name("q")
    channel.queue_declare(q, exclusive=True)
    ok = channel.queue_declare(q, passive=True, durable=True, auto_delete=True).method
    assert ok.queue == q


# ---------------------------------------------------------------------------
# exclusive queues
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("op,cm", [
    ("declare", (50, 10)),
    ("declare_passive", (50, 10)),
    ("delete", (50, 40)),
    ("purge", (50, 30)),
    ("bind", (50, 20)),
    ("consume", (60, 20)),
    ("get", (60, 70)),
])
def test_exclusive_queue_locked_for_other_connections(channel, make_connection, name, op, cm):
    q = name("excl")
    channel.queue_declare(q, exclusive=True)
    other = make_connection()
    ch2 = other.channel()
    with pytest.raises(CCBB) as ei:
        if op == "declare":
            ch2.queue_declare(q)
        elif op == "declare_passive":
            ch2.queue_declare(q, passive=True)
        elif op == "delete":
            ch2.queue_delete(q)
        elif op == "purge":
            ch2.queue_purge(q)
        elif op == "bind":
            ch2.queue_bind(q, "amq.fanout")
        elif op == "consume":
            ch2.basic_consume(q, lambda *a: None)
        elif op == "get":
            ch2.basic_get(q)
    assert_channel_error(ei, 405, LOCKED % q, *cm)
    assert other.is_open
    # the owner is unaffected
    assert channel.queue_declare(q, passive=True).method.queue == q


def test_exclusive_queue_accepts_publishes_from_other_connections(channel, make_connection):
    q = excl_queue(channel)
    other = make_connection().channel()
    other.basic_publish("", q, b"from-elsewhere")
    sync(other)
    assert channel.basic_get(q, auto_ack=True)[2] == b"from-elsewhere"


def test_redeclare_exclusive_queue_as_non_exclusive_same_connection(channel, name):
    q = name("excl")
    channel.queue_declare(q, exclusive=True)
    with pytest.raises(CCBB) as ei:
        channel.queue_declare(q)
    assert_channel_error(ei, 405, LOCKED % q, 50, 10)


def test_exclusive_queue_usable_from_other_channel_same_connection(connection):
    ch1, ch2 = connection.channel(), connection.channel()
    q = excl_queue(ch1)
    ch2.basic_publish("", q, b"x")
    assert ch2.basic_get(q, auto_ack=True)[2] == b"x"
    ch1.close()
    assert ch2.queue_declare(q, passive=True).method.queue == q


def test_exclusive_queue_deleted_when_connection_closes(channel, make_connection, name):
    q = name("excl")
    owner = make_connection()
    owner.channel().queue_declare(q, exclusive=True)
    owner.close()
    with pytest.raises(CCBB) as ei:
        channel.queue_declare(q, passive=True)
    assert_channel_error(ei, 404, "NOT_FOUND - no queue '%s' in vhost '/'" % q, 50, 10)


def test_exclusive_durable_queue_deleted_when_connection_closes(channel, make_connection, name):
    q = name("excl-durable")
    owner = make_connection()
    owner.channel().queue_declare(q, exclusive=True, durable=True)
    owner.close()
    with pytest.raises(CCBB):
        channel.queue_declare(q, passive=True)


# ---------------------------------------------------------------------------
# auto-delete
# ---------------------------------------------------------------------------

def test_auto_delete_queue_deleted_after_last_consumer_cancels(connection, name):
    q = name("ad")
    ch = connection.channel()
    ch.queue_declare(q, auto_delete=True)
    t1 = ch.basic_consume(q, lambda *a: None)
    t2 = ch.basic_consume(q, lambda *a: None)
    ch.basic_cancel(t1)
    assert ch.queue_declare(q, passive=True).method.consumer_count == 1
    ch.basic_cancel(t2)
    with pytest.raises(CCBB) as ei:
        ch.queue_declare(q, passive=True)
    assert_channel_error(ei, 404, "NOT_FOUND - no queue '%s' in vhost '/'" % q, 50, 10)


def test_auto_delete_queue_without_consumers_stays(channel, name, cleanup):
    q = cleanup.queue(name("ad"))
    channel.queue_declare(q, auto_delete=True)
    channel.basic_publish("", q, b"x")
    m, _, _ = channel.basic_get(q, auto_ack=True)  # basic.get is not a consumer
    assert m is not None
    assert channel.queue_declare(q, passive=True).method.queue == q


def test_auto_delete_queue_deleted_when_consumer_channel_closes(connection, channel, name):
    q = name("ad")
    channel.queue_declare(q, auto_delete=True)
    cons = connection.channel()
    cons.basic_consume(q, lambda *a: None)
    cons.close()
    with pytest.raises(CCBB):
        channel.queue_declare(q, passive=True)


# ---------------------------------------------------------------------------
# bind / purge / delete
# ---------------------------------------------------------------------------

def test_bind_missing_queue(channel):
    with pytest.raises(CCBB) as ei:
        channel.queue_bind("warren-no-such-queue", "amq.direct", "k")
    assert_channel_error(ei, 404, "NOT_FOUND - no queue 'warren-no-such-queue' in vhost '/'",
                         50, 20)


def test_bind_missing_exchange(channel):
    q = excl_queue(channel)
    with pytest.raises(CCBB) as ei:
        channel.queue_bind(q, "warren-no-such-exchange", "k")
    assert_channel_error(ei, 404, "NOT_FOUND - no exchange 'warren-no-such-exchange' in vhost '/'",
                         50, 20)


def test_bind_both_missing_reports_exchange(channel):
    with pytest.raises(CCBB) as ei:
        channel.queue_bind("warren-no-such-queue", "warren-no-such-exchange")
    assert_channel_error(ei, 404, "NOT_FOUND - no exchange 'warren-no-such-exchange' in vhost '/'",
                         50, 20)


def test_unbind_missing_queue_is_ok(channel):
    ok = channel.queue_unbind("warren-no-such-queue", "amq.direct", "k")
    assert isinstance(ok.method, pika.spec.Queue.UnbindOk)


def test_purge(channel):
    q = excl_queue(channel)
    for i in range(5):
        channel.basic_publish("", q, b"m")
    sync(channel)
    m, _, _ = channel.basic_get(q)  # one unacked: not purged
    ok = channel.queue_purge(q).method
    assert ok.message_count == 4
    assert channel.queue_purge(q).method.message_count == 0
    channel.basic_reject(m.delivery_tag, requeue=True)
    sync(channel)
    assert channel.queue_declare(q, passive=True).method.message_count == 1


def test_purge_missing_queue(channel):
    with pytest.raises(CCBB) as ei:
        channel.queue_purge("warren-no-such-queue")
    assert_channel_error(ei, 404, "NOT_FOUND - no queue 'warren-no-such-queue' in vhost '/'",
                         50, 30)


def test_delete_returns_message_count(channel, name):
    q = name("q")
    channel.queue_declare(q)
    for _ in range(3):
        channel.basic_publish("", q, b"m")
    sync(channel)
    assert channel.queue_delete(q).method.message_count == 3
    with pytest.raises(CCBB):
        channel.queue_declare(q, passive=True)


def test_delete_missing_queue_is_ok(channel):
    ok = channel.queue_delete("warren-never-declared-queue")
    assert ok.method.message_count == 0


def test_delete_if_unused(connection, channel):
    q = excl_queue(channel)
    tag = channel.basic_consume(q, lambda *a: None)
    with pytest.raises(CCBB) as ei:
        channel.queue_delete(q, if_unused=True)
    assert_channel_error(ei, 406, "PRECONDITION_FAILED - queue '%s' in vhost '/' in use" % q,
                         50, 40)
    ch = connection.channel()
    # the consumer went away with its channel
    assert ch.queue_delete(q, if_unused=True).method.message_count == 0
    assert tag


def test_delete_if_empty(connection, channel):
    q = excl_queue(channel)
    channel.basic_publish("", q, b"x")
    sync(channel)
    with pytest.raises(CCBB) as ei:
        channel.queue_delete(q, if_empty=True)
    assert_channel_error(ei, 406, "PRECONDITION_FAILED - queue '%s' in vhost '/' not empty" % q,
                         50, 40)
    ch = connection.channel()
    ch.queue_purge(q)
    assert ch.queue_delete(q, if_empty=True).method.message_count == 0


def test_delete_queue_removes_bindings(channel, name):
    x = name("x")
    channel.exchange_declare(x, "fanout", auto_delete=True)
    q1, q2 = excl_queue(channel), excl_queue(channel)
    channel.queue_bind(q1, x)
    channel.queue_bind(q2, x)
    channel.queue_delete(q1)
    channel.basic_publish(x, "", b"x")
    sync(channel)
    assert [b for _, _, b in get_all(channel, q2)] == [b"x"]


# ---------------------------------------------------------------------------
# "" means the channel's last declared queue
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("op,cm", [("bind", (50, 20)), ("purge", (50, 30)), ("delete", (50, 40))])
def test_empty_queue_name_without_previous_declare(channel, op, cm):
    with pytest.raises(CCBB) as ei:
        if op == "bind":
            channel.queue_bind("", "amq.direct")
        elif op == "purge":
            channel.queue_purge("")
        else:
            channel.queue_delete("")
    assert_channel_error(ei, 404, "NOT_FOUND - no previously declared queue", *cm)


def test_empty_queue_name_means_last_declared(channel, name):
    x = name("x")
    channel.exchange_declare(x, "direct", auto_delete=True)
    q = excl_queue(channel)
    channel.queue_bind("", x, "k")
    channel.basic_publish(x, "k", b"via-last-declared")
    sync(channel)
    assert channel.queue_purge("").method.message_count == 1
    channel.queue_delete("")
    with pytest.raises(CCBB):
        channel.queue_declare(q, passive=True)


def test_wait_until_helper_sanity(connection):
    # keeps the helper honest: a predicate that is already true returns at once
    assert wait_until(connection, lambda: True, timeout=0.01)
