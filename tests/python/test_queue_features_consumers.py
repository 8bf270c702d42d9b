"""Issue #5, consumers: x-priority, x-single-active-consumer, exclusive
consumers.  Recorded from RabbitMQ 3.10.8."""

import time

import pytest

from conftest import close_info, sync, wait_until
from qf_helpers import CCBB, Collector, INVALID_ARG, consume_error, message_count, poll


def consumer_count(ch, q, expected):
    """Poll declare-ok's consumer_count (eventually consistent for quorum)."""
    last = []

    def check():
        last[:] = [ch.queue_declare(q, passive=True).method.consumer_count]
        return last[0] == expected

    poll(ch.connection, check)
    return last[0]

IN_EXCLUSIVE_USE = "ACCESS_REFUSED - queue '%s' in vhost '/' in exclusive use"


def classic(ch, name, **args):
    q = name("cq")
    ch.queue_declare(q, exclusive=True, arguments=args or None)
    return q


def publish_n(ch, q, prefix, n):
    for i in range(n):
        ch.basic_publish("", q, b"%s%d" % (prefix, i))
    sync(ch)


# ---------------------------------------------------------------------------
# consumer priorities
# ---------------------------------------------------------------------------

def test_higher_priority_first_while_it_has_credit(connection, channel, name):
    q = classic(channel, name)
    got, chans = {}, {}
    for n, prio in (("lo", 1), ("hi", 10), ("mid", 5)):
        ch = connection.channel()
        ch.basic_qos(prefetch_count=2)
        got[n] = Collector()
        ch.basic_consume(q, got[n], arguments={"x-priority": prio})
        chans[n] = ch
    publish_n(channel, q, b"m", 7)
    assert wait_until(connection, lambda: sum(len(c.msgs) for c in got.values()) == 6)
    assert {n: c.bodies for n, c in got.items()} == {
        "hi": [b"m0", b"m1"], "mid": [b"m2", b"m3"], "lo": [b"m4", b"m5"]}
    # credit back on the highest: the next message goes there
    chans["hi"].basic_ack(got["hi"].msgs[0][0].delivery_tag)
    assert wait_until(connection, lambda: len(got["hi"].msgs) == 3)
    assert got["hi"].bodies[2] == b"m6"
    assert (len(got["mid"].msgs), len(got["lo"].msgs)) == (2, 2)


def test_without_prefetch_highest_takes_everything(connection, channel, name):
    q = classic(channel, name)
    lo, hi = Collector(), Collector()
    connection.channel().basic_consume(q, lo, auto_ack=True, arguments={"x-priority": -1})
    # default priority is 0, which beats -1
    connection.channel().basic_consume(q, hi, auto_ack=True)
    publish_n(channel, q, b"m", 5)
    assert wait_until(connection, lambda: len(hi.msgs) == 5)
    connection.process_data_events(time_limit=0.1)
    assert (hi.bodies, lo.bodies) == ([b"m0", b"m1", b"m2", b"m3", b"m4"], [])


def test_equal_priority_round_robin(connection, channel, name):
    q = classic(channel, name)
    a, b = Collector(), Collector()
    connection.channel().basic_consume(q, a, auto_ack=True, arguments={"x-priority": 3})
    connection.channel().basic_consume(q, b, auto_ack=True, arguments={"x-priority": 3})
    publish_n(channel, q, b"m", 4)
    assert wait_until(connection, lambda: len(a.msgs) + len(b.msgs) == 4)
    assert (a.bodies, b.bodies) == ([b"m0", b"m2"], [b"m1", b"m3"])


@pytest.mark.parametrize("value", [-5, 0, 2 ** 31, 2 ** 40])
def test_x_priority_any_integer_accepted(channel, name, value):
    q = classic(channel, name)
    tag = channel.basic_consume(q, lambda *a: None, arguments={"x-priority": value})
    channel.basic_cancel(tag)


@pytest.mark.parametrize("args,reason", [
    ({"x-priority": "5"}, ("x-priority", '"expected integer, got longstr"')),
    ({"x-priority": True}, ("x-priority", '"expected integer, got bool"')),
    ({"x-cancel-on-ha-failover": 1},
     ("x-cancel-on-ha-failover", "{unacceptable_type,signedint}")),
])
def test_invalid_consume_args(connection, channel, name, args, reason):
    q = classic(channel, name)
    assert consume_error(connection, q, arguments=args) == (
        406, INVALID_ARG % (reason[0], q, reason[1]), 60, 20)


def test_unknown_consume_arg_ignored(channel, name):
    q = classic(channel, name)
    channel.basic_cancel(channel.basic_consume(q, lambda *a: None, arguments={"x-foo": 1}))


# ---------------------------------------------------------------------------
# single active consumer
# ---------------------------------------------------------------------------

@pytest.fixture(params=["classic", "quorum"])
def sac_queue(request, channel, name, cleanup):
    q = cleanup.queue(name("sac"))
    args = {"x-single-active-consumer": True}
    if request.param == "quorum":
        args["x-queue-type"] = "quorum"
    channel.queue_declare(q, durable=True, arguments=args)
    return request.param, q


def test_single_active_consumer_takeover(channel, make_connection, sac_queue):
    qtype, q = sac_queue
    got, conns, tags = {}, {}, {}
    for n in "ABC":
        conn = make_connection()
        ch = conn.channel()
        got[n] = Collector()
        # a second/third consume on a SAC queue succeeds but gets nothing
        tags[n] = ch.basic_consume(q, got[n], auto_ack=True)
        conns[n] = (conn, ch)

    def pump(total):
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for conn, _ch in conns.values():
                if conn.is_open:
                    conn.process_data_events(time_limit=0.01)
            if sum(len(c.msgs) for c in got.values()) >= total:
                break
        for conn, _ch in conns.values():
            if conn.is_open:
                conn.process_data_events(time_limit=0.1)
        return {n: c.bodies for n, c in got.items()}

    # classic queues count every registered consumer, quorum only the active one
    expected = 3 if qtype == "classic" else 1
    assert consumer_count(channel, q, expected) == expected

    publish_n(channel, q, b"a", 3)
    assert pump(3) == {"A": [b"a0", b"a1", b"a2"], "B": [], "C": []}
    conns["A"][1].basic_cancel(tags["A"])       # next in registration order
    publish_n(channel, q, b"b", 3)
    assert pump(6) == {"A": [b"a0", b"a1", b"a2"], "B": [b"b0", b"b1", b"b2"], "C": []}
    conns["B"][0].close()                         # connection close also hands over
    publish_n(channel, q, b"c", 2)
    assert pump(8) == {"A": [b"a0", b"a1", b"a2"], "B": [b"b0", b"b1", b"b2"],
                       "C": [b"c0", b"c1"]}


def test_single_active_consumer_unacked_go_to_next(connection, channel, name):
    q = classic(channel, name, **{"x-single-active-consumer": True})
    publish_n(channel, q, b"m", 4)
    a_ch = connection.channel()
    a_ch.basic_qos(prefetch_count=2)
    a = Collector()
    a_ch.basic_consume(q, a)
    b = Collector()
    connection.channel().basic_consume(q, b, auto_ack=True)
    assert wait_until(connection, lambda: len(a.msgs) == 2)
    connection.process_data_events(time_limit=0.2)
    assert (a.bodies, b.msgs) == ([b"m0", b"m1"], [])
    assert message_count(connection, q) == 2
    a_ch.close()
    assert wait_until(connection, lambda: len(b.msgs) == 4)
    assert [(m.redelivered, body) for (m, _p, body) in b.msgs] == [
        (True, b"m0"), (True, b"m1"), (False, b"m2"), (False, b"m3")]


def test_exclusive_consume_on_classic_sac_queue_with_consumer(connection, channel, name):
    q = classic(channel, name, **{"x-single-active-consumer": True})
    channel.basic_consume(q, lambda *a: None)
    assert consume_error(connection, q, exclusive=True) == (
        403, IN_EXCLUSIVE_USE % q, 60, 20)


# ---------------------------------------------------------------------------
# exclusive consumers
# ---------------------------------------------------------------------------

def test_consume_on_queue_with_exclusive_consumer(connection, channel, name):
    q = classic(channel, name)
    channel.basic_consume(q, lambda *a: None, exclusive=True)
    assert consume_error(connection, q) == (403, IN_EXCLUSIVE_USE % q, 60, 20)
    assert consume_error(connection, q, exclusive=True) == (403, IN_EXCLUSIVE_USE % q, 60, 20)
    assert connection.is_open


def test_exclusive_consume_on_queue_with_consumer(connection, channel, name):
    q = classic(channel, name)
    channel.basic_consume(q, lambda *a: None)
    assert consume_error(connection, q, exclusive=True) == (403, IN_EXCLUSIVE_USE % q, 60, 20)
    # after the other consumer is gone it works
    channel.close()
    ch = connection.channel()
    ch.basic_consume(q, lambda *a: None, exclusive=True)


def test_exclusive_consumer_gets_messages_and_cancel_frees_queue(connection, channel, name):
    q = classic(channel, name)
    got = Collector()
    tag = channel.basic_consume(q, got, auto_ack=True, exclusive=True)
    publish_n(channel, q, b"x", 2)
    assert wait_until(connection, lambda: len(got.msgs) == 2)
    channel.basic_cancel(tag)
    ch = connection.channel()
    ch.basic_cancel(ch.basic_consume(q, lambda *a: None))


def test_quorum_does_not_enforce_exclusive_consume(connection, channel, name, cleanup):
    # RabbitMQ 3.10 quorum queues accept an exclusive consume next to other
    # consumers, and other consumers next to an exclusive one
    q = cleanup.queue(name("qq"))
    channel.queue_declare(q, durable=True, arguments={"x-queue-type": "quorum"})
    connection.channel().basic_consume(q, lambda *a: None)
    connection.channel().basic_consume(q, lambda *a: None, exclusive=True)
    connection.channel().basic_consume(q, lambda *a: None)
    assert consumer_count(channel, q, 3) == 3


def test_channel_error_leaves_connection_usable(connection, channel, name):
    q = classic(channel, name)
    channel.basic_consume(q, lambda *a: None, exclusive=True)
    ch = connection.channel()
    with pytest.raises(CCBB) as ei:
        ch.basic_consume(q, lambda *a: None)
    assert close_info(ei.value)[0] == 403
    assert channel.is_open and connection.is_open
