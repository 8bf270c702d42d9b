"""Issue #5, dead-lettering: x-dead-letter-exchange / x-dead-letter-routing-key.

Every header structure below was recorded from RabbitMQ 3.10.8 with pika
1.3.2.  x-death 'count' is an AMQP long-long (pika decodes it as
pika.compat.long), 'time' an AMQP timestamp (pika: naive UTC datetime, second
resolution); RabbitMQ 3.10 sets x-first-death-* but no x-last-death-*."""

import time

import pika
import pika.compat
import pytest

from conftest import get_all, sync
from qf_helpers import (assert_recent, bodies, counts_stay, get_n, get_one, message_count,
                        strip_time, wait_count)

# Key order of an x-death entry created for a message that had no x-death yet.
XDEATH_KEYS = ["count", "reason", "queue", "time", "exchange", "routing-keys"]
# Entries written (created or incremented) when x-death already existed are
# sorted by key; entries not touched keep their order.
XDEATH_KEYS_SORTED = ["count", "exchange", "queue", "reason", "routing-keys", "time"]


def dl_pair(ch, name, dlx_type="fanout", bind_key="", **args):
    """A source queue dead-lettering into `dlx` (declared here), bound to `dlq`."""
    dlx = name("dlx")
    ch.exchange_declare(dlx, dlx_type, auto_delete=True)
    dlq = name("dlq")
    ch.queue_declare(dlq, exclusive=True)
    ch.queue_bind(dlq, dlx, bind_key)
    src = name("src")
    a = {"x-dead-letter-exchange": dlx}
    a.update(args)
    ch.queue_declare(src, exclusive=True, arguments=a)
    return src, dlx, dlq


def to_default(ch, name, **args):
    """A source queue dead-lettering through the default exchange into dlq."""
    dlq = name("dlq")
    ch.queue_declare(dlq, exclusive=True)
    src = name("src")
    a = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
    a.update(args)
    ch.queue_declare(src, exclusive=True, arguments=a)
    return src, dlq


def reject_one(ch, q, requeue=False):
    m, p, b = get_one(ch, q, auto_ack=False)
    assert m is not None
    ch.basic_reject(m.delivery_tag, requeue=requeue)
    return m, p, b


def death(count, reason, queue, exchange, rks, **extra):
    d = {"count": count, "reason": reason, "queue": queue, "exchange": exchange,
         "routing-keys": rks}
    d.update(extra)
    return d


def first(reason, queue, exchange):
    return {"x-first-death-exchange": exchange, "x-first-death-queue": queue,
            "x-first-death-reason": reason}


def test_rejected_exact_headers_and_preserved_properties(channel, name):
    src, dlx, dlq = dl_pair(channel, name)
    props = pika.BasicProperties(
        content_type="text/plain", content_encoding="enc", headers={"zzz": 1, "aaa": "x"},
        delivery_mode=2, priority=3, correlation_id="cid", reply_to="rt", message_id="mid",
        timestamp=1234, type="ty", user_id="guest", app_id="app")
    channel.basic_publish("", src, b"body", props)
    reject_one(channel, src)
    m, p, b = get_one(channel, dlq)
    assert b == b"body"
    # delivered from the DLX, original routing key, not redelivered
    assert (m.exchange, m.routing_key, m.redelivered) == (dlx, src, False)
    h = p.headers
    # the table comes back sorted by key; x-death entries in this key order
    assert list(h) == ["aaa", "x-death", "x-first-death-exchange", "x-first-death-queue",
                       "x-first-death-reason", "zzz"]
    assert [list(e) for e in h["x-death"]] == [XDEATH_KEYS]
    assert isinstance(h["x-death"][0]["count"], pika.compat.long)  # 'l', not 'I'
    assert_recent(h["x-death"][0]["time"])
    assert strip_time(h["x-death"]) == [death(1, "rejected", src, "", [src])]
    assert {k: v for k, v in h.items() if k != "x-death"} == dict(
        first("rejected", src, ""), aaa="x", zzz=1)
    for attr in ("content_type", "content_encoding", "delivery_mode", "priority",
                 "correlation_id", "reply_to", "message_id", "timestamp", "type", "user_id",
                 "app_id", "expiration", "cluster_id"):
        assert getattr(p, attr) == getattr(props, attr), attr


def test_nack_requeue_false_multiple(channel, name):
    src, dlq = to_default(channel, name)
    for i in range(3):
        channel.basic_publish("", src, b"n%d" % i)
    sync(channel)
    tags = [channel.basic_get(src, auto_ack=False)[0].delivery_tag for _ in range(3)]
    channel.basic_nack(tags[-1], multiple=True, requeue=False)
    msgs = get_n(channel, dlq, 3)
    assert bodies(msgs) == [b"n0", b"n1", b"n2"]
    for m, p, _b in msgs:
        # dead-lettered through "" with x-dead-letter-routing-key
        assert (m.exchange, m.routing_key, m.redelivered) == ("", dlq, False)
        assert strip_time(p.headers["x-death"]) == [death(1, "rejected", src, "", [src])]


def test_redelivered_message_dead_lettered_is_not_redelivered(channel, name):
    src, dlq = to_default(channel, name)
    channel.basic_publish("", src, b"r")
    reject_one(channel, src, requeue=True)
    m, _p, _b = reject_one(channel, src)
    assert m.redelivered
    m, p, b = get_one(channel, dlq)
    assert (b, m.redelivered) == (b"r", False)
    assert strip_time(p.headers["x-death"]) == [death(1, "rejected", src, "", [src])]


def test_routing_key_override_and_original_exchange(channel, name):
    src, dlx, dlq = dl_pair(channel, name, "topic", "#",
                            **{"x-dead-letter-routing-key": "newkey"})
    srckey = name("srckey")  # amq.direct is shared: keys must be unique
    channel.queue_bind(src, "amq.direct", srckey)
    channel.basic_publish("amq.direct", srckey, b"n",
                          pika.BasicProperties(expiration="60000"))
    m, p, b = get_one(channel, src, auto_ack=False)
    channel.basic_nack(m.delivery_tag, requeue=False)
    m, p, b = get_one(channel, dlq)
    assert (m.exchange, m.routing_key, m.redelivered) == (dlx, "newkey", False)
    # a rejected message with a per-message TTL also gets original-expiration,
    # and the expiration property is removed
    assert p.expiration is None
    assert [list(e) for e in p.headers["x-death"]] == [XDEATH_KEYS + ["original-expiration"]]
    assert strip_time(p.headers["x-death"]) == [
        death(1, "rejected", src, "amq.direct", [srckey], **{"original-expiration": "60000"})]
    assert {k: v for k, v in p.headers.items() if k != "x-death"} == first(
        "rejected", src, "amq.direct")


def test_expired_by_queue_ttl(channel, name):
    src, dlx, dlq = dl_pair(channel, name, **{"x-message-ttl": 50})
    channel.basic_publish("", src, b"e", pika.BasicProperties(headers={"h": 1}))
    m, p, b = get_one(channel, dlq)
    assert (b, m.exchange, m.routing_key) == (b"e", dlx, src)
    assert p.expiration is None
    assert strip_time(p.headers["x-death"]) == [death(1, "expired", src, "", [src])]
    assert {k: v for k, v in p.headers.items() if k != "x-death"} == dict(
        first("expired", src, ""), h=1)


def test_expired_by_message_expiration(channel, name):
    src, dlx, dlq = dl_pair(channel, name)
    channel.basic_publish("", src, b"e", pika.BasicProperties(expiration="50", priority=2))
    m, p, b = get_one(channel, dlq)
    assert (b, m.exchange, m.routing_key) == (b"e", dlx, src)
    assert (p.expiration, p.priority) == (None, 2)
    assert [list(e) for e in p.headers["x-death"]] == [XDEATH_KEYS + ["original-expiration"]]
    assert strip_time(p.headers["x-death"]) == [
        death(1, "expired", src, "", [src], **{"original-expiration": "50"})]
    assert {k: v for k, v in p.headers.items() if k != "x-death"} == first("expired", src, "")


def test_dropped_by_max_length(channel, name):
    src, dlx, dlq = dl_pair(channel, name, **{"x-max-length": 1})
    channel.basic_publish("", src, b"old")
    channel.basic_publish("", src, b"new")
    m, p, b = get_one(channel, dlq)
    assert (b, m.exchange, m.routing_key) == (b"old", dlx, src)
    assert strip_time(p.headers["x-death"]) == [death(1, "maxlen", src, "", [src])]
    assert {k: v for k, v in p.headers.items() if k != "x-death"} == first("maxlen", src, "")
    assert bodies(get_all(channel, src)) == [b"new"]


def test_multiple_hops(channel, name):
    # q1 --rejected--> x1 -> q2 --expired--> x2 -> q3
    x1, x2 = name("x1"), name("x2")
    channel.exchange_declare(x1, "fanout", auto_delete=True)
    channel.exchange_declare(x2, "fanout", auto_delete=True)
    q1, q2, q3 = name("q1"), name("q2"), name("q3")
    channel.queue_declare(q1, exclusive=True, arguments={"x-dead-letter-exchange": x1})
    channel.queue_declare(q2, exclusive=True,
                          arguments={"x-dead-letter-exchange": x2, "x-message-ttl": 50})
    channel.queue_bind(q2, x1)
    channel.queue_declare(q3, exclusive=True)
    channel.queue_bind(q3, x2)
    channel.basic_publish("", q1, b"hop", pika.BasicProperties(expiration="60000"))
    reject_one(channel, q1)
    m, p, b = get_one(channel, q3)
    assert (b, m.exchange, m.routing_key) == (b"hop", x2, q1)
    assert p.expiration is None
    # most recent first; each entry records the exchange and routing keys the
    # message had when it entered that queue
    assert strip_time(p.headers["x-death"]) == [
        death(1, "expired", q2, x1, [q1]),
        death(1, "rejected", q1, "", [q1], **{"original-expiration": "60000"}),
    ]
    assert {k: v for k, v in p.headers.items() if k != "x-death"} == first("rejected", q1, "")


def test_repeated_dead_lettering_increments_and_moves_entry_to_front(channel, name):
    qa, qb = name("qa"), name("qb")
    channel.queue_declare(qa, exclusive=True, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": qb})
    channel.queue_declare(qb, exclusive=True, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": qa})
    k1 = name("k1")  # amq.direct is shared: keys must be unique
    channel.queue_bind(qa, "amq.direct", k1)
    channel.basic_publish("amq.direct", k1, b"pp")

    m, p, _b = reject_one(channel, qa)
    assert (m.exchange, m.routing_key, p.headers) == ("amq.direct", k1, None)

    m, p, _b = get_one(channel, qb, auto_ack=False)
    assert (m.exchange, m.routing_key) == ("", qb)
    qa_time = p.headers["x-death"][0]["time"]
    assert strip_time(p.headers["x-death"]) == [death(1, "rejected", qa, "amq.direct", [k1])]
    time.sleep(1.1)  # so that a refreshed 'time' (second resolution) would show
    channel.basic_reject(m.delivery_tag, requeue=False)

    m, p, _b = reject_one(channel, qa)
    assert (m.exchange, m.routing_key) == ("", qa)
    assert strip_time(p.headers["x-death"]) == [
        death(1, "rejected", qb, "", [qb]),
        death(1, "rejected", qa, "amq.direct", [k1]),
    ]
    assert [list(e) for e in p.headers["x-death"]] == [XDEATH_KEYS_SORTED, XDEATH_KEYS]

    m, p, _b = get_one(channel, qb)
    # qa's entry: count 2, moved to the front, but exchange, routing-keys and
    # time are those of the first death in qa (not updated)
    assert strip_time(p.headers["x-death"]) == [
        death(2, "rejected", qa, "amq.direct", [k1]),
        death(1, "rejected", qb, "", [qb]),
    ]
    assert p.headers["x-death"][0]["time"] == qa_time
    assert [list(e) for e in p.headers["x-death"]] == [XDEATH_KEYS_SORTED, XDEATH_KEYS_SORTED]
    assert {k: v for k, v in p.headers.items() if k != "x-death"} == first(
        "rejected", qa, "amq.direct")


def test_separate_entries_per_reason_in_same_queue(channel, name):
    # q (ttl 500) rejects/expires into q2, q2 rejects back into q
    q, q2 = name("q"), name("q2")
    channel.queue_declare(q, exclusive=True, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": q2,
        "x-message-ttl": 500})
    channel.queue_declare(q2, exclusive=True, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": q})
    channel.basic_publish("", q, b"one")
    reject_one(channel, q)     # q/rejected (taken well before the 500 ms TTL)
    reject_one(channel, q2)    # q2/rejected, back to q where it now expires
    m, p, b = get_one(channel, q2)
    assert (b, m.routing_key) == (b"one", q2)
    # entries are per (queue, reason); for the order see test_x_death_order
    assert strip_time(p.headers["x-death"]) == [
        death(1, "expired", q, "", [q]),
        death(1, "rejected", q, "", [q]),
        death(1, "rejected", q2, "", [q2]),
    ]
    assert {k: v for k, v in p.headers.items() if k != "x-death"} == first("rejected", q, "")


def test_original_expiration_key_order_when_incremented(channel, name):
    qa, qb = name("qa"), name("qb")
    channel.queue_declare(qa, exclusive=True, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": qb})
    channel.queue_declare(qb, exclusive=True, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": qa})
    channel.basic_publish("", qa, b"x", pika.BasicProperties(expiration="60000"))
    for q in (qa, qb, qa):
        reject_one(channel, q)
    _m, p, _b = get_one(channel, qb)
    assert p.expiration is None
    assert [list(e) for e in p.headers["x-death"]] == [
        ["count", "exchange", "original-expiration", "queue", "reason", "routing-keys", "time"],
        XDEATH_KEYS_SORTED]
    assert strip_time(p.headers["x-death"]) == [
        death(2, "rejected", qa, "", [qa], **{"original-expiration": "60000"}),
        death(1, "rejected", qb, "", [qb]),
    ]


def test_x_death_order(channel, name):
    """RabbitMQ 3.10 puts the new (or incremented) entry first and the other
    entries after it in REVERSED order of the previous header (a side effect
    of its group_by_queue_and_reason fold), so only the first entry is
    reliably the most recent one.  Ring r0 -> r1 -> r2 -> r0 ... by rejection."""
    r = [name("r%d" % i) for i in range(3)]
    for i, q in enumerate(r):
        channel.queue_declare(q, exclusive=True, arguments={
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": r[(i + 1) % 3]})
    channel.basic_publish("", r[0], b"x")
    seen = []
    for i in range(7):
        _m, p, _b = reject_one(channel, r[i % 3])
        seen.append(p.headers and [(r.index(e["queue"]), e["count"])
                                   for e in p.headers["x-death"]])
    assert seen == [
        None,
        [(0, 1)],
        [(1, 1), (0, 1)],
        [(2, 1), (0, 1), (1, 1)],
        [(0, 2), (1, 1), (2, 1)],
        [(1, 2), (2, 1), (0, 2)],
        [(2, 2), (0, 2), (1, 2)],
    ]


def test_reject_cycle_through_same_queue_keeps_going(channel, name):
    q = name("q")
    # no x-dead-letter-routing-key: the original routing key (q) is used
    channel.queue_declare(q, exclusive=True, arguments={"x-dead-letter-exchange": ""})
    channel.basic_publish("", q, b"r")
    for i in range(3):
        _m, p, _b = reject_one(channel, q)
        if i:
            assert strip_time(p.headers["x-death"]) == [death(i, "rejected", q, "", [q])]
    m, p, b = get_one(channel, q)
    assert (b, m.exchange, m.routing_key) == (b"r", "", q)
    assert strip_time(p.headers["x-death"]) == [death(3, "rejected", q, "", [q])]
    assert {k: v for k, v in p.headers.items() if k != "x-death"} == first("rejected", q, "")


@pytest.mark.parametrize("with_rk", [False, True])
def test_expiry_cycle_to_itself_is_dropped(connection, channel, name, with_rk):
    q = name("cyc")
    args = {"x-dead-letter-exchange": "", "x-message-ttl": 50}
    if with_rk:
        args["x-dead-letter-routing-key"] = q
    channel.queue_declare(q, exclusive=True, arguments=args)
    channel.basic_publish("", q, b"c")
    sync(channel)
    assert wait_count(connection, q, 0) == 0
    # dropped for good, not cycling: 0.4 s is 8 rounds of its 50 ms TTL
    assert counts_stay(connection, [q], 0, 0.4) is None
    assert channel.basic_get(q) == (None, None, None)


def test_expiry_cycle_over_two_queues_is_dropped(connection, channel, name):
    q1, q2, spy = name("c1"), name("c2"), name("spy")
    channel.queue_declare(q1, exclusive=True, arguments={
        "x-dead-letter-exchange": "amq.direct", "x-dead-letter-routing-key": q2,
        "x-message-ttl": 50})
    channel.queue_declare(q2, exclusive=True, arguments={
        "x-dead-letter-exchange": "amq.direct", "x-dead-letter-routing-key": q1,
        "x-message-ttl": 50})
    channel.queue_declare(spy, exclusive=True)
    for q in (q1, q2):
        channel.queue_bind(q, "amq.direct", q)
        channel.queue_bind(spy, "amq.direct", q)
    channel.basic_publish("", q1, b"c")
    sync(channel)
    assert wait_count(connection, q1, 0) == 0
    assert wait_count(connection, q2, 0) == 0
    # dropped for good, not cycling: 0.4 s is 8 rounds of its 50 ms TTL
    assert counts_stay(connection, [q1, q2], 0, 0.4) is None
    # q1 -> q2 once; dead-lettering q2 -> q1 would close an expiry-only cycle,
    # so q1 is left out of the destinations, while other queues the DLX routes
    # to (spy) still get the message.  Had q1 received it again it would have
    # expired again and reached spy a third time.
    msgs = get_all(channel, spy)
    assert [(m.routing_key, b) for (m, _p, b) in msgs] == [(q2, b"c"), (q1, b"c")]
    assert strip_time(msgs[0][1].headers["x-death"]) == [death(1, "expired", q1, "", [q1])]
    assert strip_time(msgs[1][1].headers["x-death"]) == [
        death(1, "expired", q2, "amq.direct", [q2]),
        death(1, "expired", q1, "", [q1]),
    ]


def test_cc_and_bcc_without_dead_letter_routing_key(channel, name):
    src, dlx, _ = dl_pair(channel, name, "direct", "unused")
    main, cc1, bcc1 = name("main"), name("cc1"), name("bcc1")  # unique keys
    channel.queue_bind(src, "amq.direct", main)
    sinks = {}
    for k in (main, cc1, bcc1):
        s = name("sink")
        channel.queue_declare(s, exclusive=True)
        channel.queue_bind(s, dlx, k)
        sinks[k] = s
    channel.basic_publish("amq.direct", main, b"ccb",
                          pika.BasicProperties(headers={"CC": [cc1], "BCC": [bcc1]}))
    m, p, _b = reject_one(channel, src)
    assert (m.routing_key, p.headers) == (main, {"CC": [cc1]})
    # re-routed with all original keys, BCC included; the CC header stays and
    # x-death's routing-keys lists routing key + CC but not BCC
    for k, s in sinks.items():
        m, p, b = get_one(channel, s)
        assert (b, m.exchange, m.routing_key) == (b"ccb", dlx, main), k
        assert strip_time(p.headers["x-death"]) == [
            death(1, "rejected", src, "amq.direct", [main, cc1])], k
        assert {k2: v for k2, v in p.headers.items() if k2 != "x-death"} == dict(
            first("rejected", src, "amq.direct"), CC=[cc1]), k
        assert get_all(channel, s) == [], k


def test_cc_and_bcc_with_dead_letter_routing_key(channel, name):
    src, dlx, dk_sink = dl_pair(channel, name, "direct", "dk",
                                **{"x-dead-letter-routing-key": "dk"})
    main, cc1, bcc1 = name("main"), name("cc1"), name("bcc1")  # unique keys
    channel.queue_bind(src, "amq.direct", main)
    sinks = []
    for k in (main, cc1, bcc1):
        s = name("sink")
        channel.queue_declare(s, exclusive=True)
        channel.queue_bind(s, dlx, k)
        sinks.append(s)
    channel.basic_publish("amq.direct", main, b"ccb",
                          pika.BasicProperties(headers={"CC": [cc1], "BCC": [bcc1]}))
    reject_one(channel, src)
    m, p, b = get_one(channel, dk_sink)
    assert (b, m.exchange, m.routing_key) == (b"ccb", dlx, "dk")
    # the CC header is removed and only the dead-letter routing key is used
    assert strip_time(p.headers["x-death"]) == [
        death(1, "rejected", src, "amq.direct", [main, cc1])]
    assert {k: v for k, v in p.headers.items() if k != "x-death"} == first(
        "rejected", src, "amq.direct")
    sync(channel)
    time.sleep(0.1)
    for s in sinks:
        assert get_all(channel, s) == []


def test_missing_dead_letter_exchange_drops_silently(connection, channel, name):
    q = name("q")
    channel.queue_declare(q, exclusive=True, arguments={"x-dead-letter-exchange": name("nox")})
    channel.basic_publish("", q, b"m")
    reject_one(channel, q)
    sync(channel)
    assert channel.is_open
    assert message_count(connection, q) == 0


def test_no_dead_letter_exchange_drops(connection, channel, name):
    q = name("q")
    channel.queue_declare(q, exclusive=True)
    channel.basic_publish("", q, b"m")
    reject_one(channel, q)
    sync(channel)
    assert message_count(connection, q) == 0


def test_requeue_and_channel_close_do_not_dead_letter(connection, name):
    ch = connection.channel()
    src, dlq = to_default(ch, name)
    ch.basic_publish("", src, b"a")
    ch.basic_publish("", src, b"b")
    reject_one(ch, src, requeue=True)
    get_one(ch, src, auto_ack=False)
    get_one(ch, src, auto_ack=False)
    ch.close()
    ch = connection.channel()
    msgs = get_all(ch, src)
    assert [(m.redelivered, b) for (m, _p, b) in msgs] == [(True, b"a"), (True, b"b")]
    assert all(p.headers is None for (_m, p, _b) in msgs)
    assert get_all(ch, dlq) == []


@pytest.mark.parametrize("per_message", [False, True])
def test_requeued_after_ttl_passed_is_dead_lettered_as_expired(channel, name, per_message):
    if per_message:
        src, dlq = to_default(channel, name)
        props = pika.BasicProperties(expiration="400")
    else:
        src, dlq = to_default(channel, name, **{"x-message-ttl": 400})
        props = None
    channel.basic_publish("", src, b"r", props)
    sync(channel)
    m, _p, _b = get_one(channel, src, auto_ack=False)
    time.sleep(0.8)   # TTL passes while the message is unacked
    channel.basic_nack(m.delivery_tag, requeue=True)
    m, p, b = get_one(channel, dlq)
    assert (b, m.redelivered, p.expiration) == (b"r", False, None)
    extra = {"original-expiration": "400"} if per_message else {}
    assert strip_time(p.headers["x-death"]) == [death(1, "expired", src, "", [src], **extra)]
    assert channel.basic_get(src) == (None, None, None)
