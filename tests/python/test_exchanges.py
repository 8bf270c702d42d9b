"""Exchanges: declare/delete semantics, bindings and routing (all types)."""

import pika
import pika.exceptions
import pytest

from conftest import close_info, get_all, sync, wait_until

CCBB = pika.exceptions.ChannelClosedByBroker
CONNCBB = pika.exceptions.ConnectionClosedByBroker


def excl_queue(ch):
    return ch.queue_declare("", exclusive=True).method.queue


def bodies(ch, q):
    return [b.decode() for _, _, b in get_all(ch, q)]


def assert_channel_error(ei, code, text, class_id, method_id):
    assert close_info(ei.value) == (code, text, class_id, method_id)


# ---------------------------------------------------------------------------
# declare
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("xtype", ["direct", "fanout", "topic", "headers"])
def test_declare_each_type_and_redeclare(channel, name, xtype):
    x = name("x-" + xtype)
    ok = channel.exchange_declare(x, xtype, auto_delete=False)
    assert isinstance(ok.method, pika.spec.Exchange.DeclareOk)
    # identical redeclare is fine, passive too (type is ignored when passive)
    channel.exchange_declare(x, xtype)
    channel.exchange_declare(x, passive=True)
    channel.exchange_declare(x, "fanout" if xtype != "fanout" else "direct", passive=True)
    channel.exchange_delete(x)
    with pytest.raises(CCBB):
        channel.exchange_declare(x, passive=True)


def test_declare_unknown_type_is_connection_error(connection, name):
    ch = connection.channel()
    with pytest.raises(CONNCBB) as ei:
        ch.exchange_declare(name("x"), "foo")
    assert close_info(ei.value) == (503, "COMMAND_INVALID - invalid exchange type 'foo'", 40, 10)
    assert connection.is_closed


def test_passive_declare_missing(connection, channel):
    with pytest.raises(CCBB) as ei:
        channel.exchange_declare("x-missing-warren", passive=True)
    assert_channel_error(ei, 404, "NOT_FOUND - no exchange 'x-missing-warren' in vhost '/'", 40, 10)
    assert channel.is_closed
    assert connection.is_open
    assert connection.channel().exchange_declare("amq.topic", passive=True)


@pytest.mark.parametrize("first,second,arg,received,current", [
    (dict(exchange_type="direct"), dict(exchange_type="fanout"), "type", "fanout", "direct"),
    (dict(exchange_type="direct"), dict(exchange_type="direct", durable=True),
     "durable", "true", "false"),
    (dict(exchange_type="direct", durable=True), dict(exchange_type="direct"),
     "durable", "false", "true"),
    (dict(exchange_type="direct"), dict(exchange_type="direct", auto_delete=True),
     "auto_delete", "true", "false"),
    (dict(exchange_type="direct"), dict(exchange_type="direct", internal=True),
     "internal", "true", "false"),
    (dict(exchange_type="direct", arguments={"alternate-exchange": "ae1"}),
     dict(exchange_type="direct", arguments={"alternate-exchange": "ae2"}),
     "alternate-exchange", "ae2", "ae1"),
])
def test_inequivalent_redeclare(connection, name, cleanup, first, second, arg, received, current):
    x = cleanup.exchange(name("x"))
    ch = connection.channel()
    ch.exchange_declare(x, **first)
    with pytest.raises(CCBB) as ei:
        ch.exchange_declare(x, **second)
    assert_channel_error(
        ei, 406,
        "PRECONDITION_FAILED - inequivalent arg '%s' for exchange '%s' in vhost '/': "
        "received '%s' but current is '%s'" % (arg, x, received, current),
        40, 10)
    # the original exchange is untouched
    connection.channel().exchange_declare(x, **first)


def test_redeclare_with_different_custom_argument_is_allowed(channel, name):
    x = name("x")
    channel.exchange_declare(x, "direct", auto_delete=True, arguments={"foo": "bar"})
    ok = channel.exchange_declare(x, "direct", auto_delete=True, arguments={"foo": "baz"})
    assert isinstance(ok.method, pika.spec.Exchange.DeclareOk)
    channel.exchange_delete(x)


def test_reserved_amq_prefix(channel):
    with pytest.raises(CCBB) as ei:
        channel.exchange_declare("amq.warren-test", "direct")
    assert_channel_error(
        ei, 403, "ACCESS_REFUSED - exchange name 'amq.warren-test' contains reserved prefix 'amq.*'",
        40, 10)


@pytest.mark.parametrize("x,xtype", [
    ("amq.direct", "direct"), ("amq.fanout", "fanout"), ("amq.topic", "topic"),
    ("amq.headers", "headers"), ("amq.match", "headers"),
])
def test_predeclared_exchanges_exist(channel, x, xtype):
    channel.exchange_declare(x, passive=True)
    # an equivalent active redeclare (durable) is allowed
    channel.exchange_declare(x, xtype, durable=True)


def test_redeclare_amq_direct_non_durable(channel):
    with pytest.raises(CCBB) as ei:
        channel.exchange_declare("amq.direct", "direct")
    assert_channel_error(
        ei, 406,
        "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'amq.direct' in vhost '/': "
        "received 'false' but current is 'true'", 40, 10)


def test_amq_default_is_not_an_exchange_name(connection):
    ch = connection.channel()
    with pytest.raises(CCBB) as ei:
        ch.exchange_declare("amq.default", passive=True)
    assert_channel_error(ei, 404, "NOT_FOUND - no exchange 'amq.default' in vhost '/'", 40, 10)
    ch = connection.channel()
    with pytest.raises(CCBB) as ei:
        ch.exchange_declare("amq.default", "direct", durable=True)
    assert_channel_error(
        ei, 403, "ACCESS_REFUSED - exchange name 'amq.default' contains reserved prefix 'amq.*'",
        40, 10)
    ch = connection.channel()
    ch.basic_publish("amq.default", "x", b"x")
    with pytest.raises(CCBB) as ei:
        sync(ch)
    assert_channel_error(ei, 404, "NOT_FOUND - no exchange 'amq.default' in vhost '/'", 60, 40)


DEFAULT_EX = "ACCESS_REFUSED - operation not permitted on the default exchange"


@pytest.mark.parametrize("op,cm", [
    ("declare", (40, 10)),
    ("declare_passive", (40, 10)),
    ("delete", (40, 20)),
    ("queue_bind", (50, 20)),
    ("queue_unbind", (50, 50)),
    ("exchange_bind_source", (40, 30)),
    ("exchange_bind_destination", (40, 30)),
])
def test_default_exchange_operations_refused(connection, name, op, cm):
    setup = connection.channel()
    q = excl_queue(setup)
    x = name("x")
    setup.exchange_declare(x, "fanout", auto_delete=True)
    ch = connection.channel()
    with pytest.raises(CCBB) as ei:
        if op == "declare":
            ch.exchange_declare("", "direct", durable=True)
        elif op == "declare_passive":
            ch.exchange_declare("", passive=True)
        elif op == "delete":
            ch.exchange_delete("")
        elif op == "queue_bind":
            ch.queue_bind(q, "", "foo")
        elif op == "queue_unbind":
            ch.queue_unbind(q, "", q)
        elif op == "exchange_bind_source":
            ch.exchange_bind(x, "", "rk")
        elif op == "exchange_bind_destination":
            ch.exchange_bind("", x, "rk")
    assert_channel_error(ei, 403, DEFAULT_EX, *cm)
    # default exchange still routes by queue name
    setup.basic_publish("", q, b"still-works")
    assert setup.basic_get(q, auto_ack=True)[2] == b"still-works"
    setup.exchange_delete(x)


def test_delete_system_exchange_refused(channel):
    with pytest.raises(CCBB) as ei:
        channel.exchange_delete("amq.direct")
    assert_channel_error(
        ei, 403, "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed",
        40, 20)


def test_delete_missing_exchange_is_ok(channel, name):
    ok = channel.exchange_delete(name("never-declared"))
    assert isinstance(ok.method, pika.spec.Exchange.DeleteOk)


def test_delete_if_unused(connection, channel, name):
    x = name("x")
    channel.exchange_declare(x, "fanout")
    q = excl_queue(channel)
    channel.queue_bind(q, x)
    with pytest.raises(CCBB) as ei:
        channel.exchange_delete(x, if_unused=True)
    assert_channel_error(ei, 406, "PRECONDITION_FAILED - exchange '%s' in vhost '/' in use" % x,
                         40, 20)
    ch = connection.channel()
    ch.queue_unbind(q, x)
    assert isinstance(ch.exchange_delete(x, if_unused=True).method, pika.spec.Exchange.DeleteOk)
    with pytest.raises(CCBB):
        ch.exchange_declare(x, passive=True)


def test_delete_if_unused_only_counts_source_bindings(channel, name):
    src, dst = name("src"), name("dst")
    channel.exchange_declare(src, "fanout")
    channel.exchange_declare(dst, "fanout")
    channel.exchange_bind(dst, src)
    # dst is only a destination: not "in use"
    channel.exchange_delete(dst, if_unused=True)
    channel.exchange_delete(src)


def test_delete_exchange_removes_its_bindings(channel, name):
    x = name("x")
    channel.exchange_declare(x, "fanout")
    q = excl_queue(channel)
    channel.queue_bind(q, x)
    channel.exchange_delete(x)
    channel.exchange_declare(x, "fanout")
    channel.basic_publish(x, "", b"after-redeclare")
    sync(channel)
    assert bodies(channel, q) == []
    channel.exchange_delete(x)


# ---------------------------------------------------------------------------
# bindings
# ---------------------------------------------------------------------------

def test_bind_to_missing_exchange(channel):
    q = excl_queue(channel)
    with pytest.raises(CCBB) as ei:
        channel.queue_bind(q, "warren-no-such-ex")
    assert_channel_error(ei, 404, "NOT_FOUND - no exchange 'warren-no-such-ex' in vhost '/'",
                         50, 20)


def test_exchange_bind_missing_source_and_destination(connection):
    ch = connection.channel()
    with pytest.raises(CCBB) as ei:
        ch.exchange_bind("amq.fanout", "warren-no-src")
    assert_channel_error(ei, 404, "NOT_FOUND - no exchange 'warren-no-src' in vhost '/'", 40, 30)
    ch = connection.channel()
    with pytest.raises(CCBB) as ei:
        ch.exchange_bind("warren-no-dst", "amq.fanout")
    assert_channel_error(ei, 404, "NOT_FOUND - no exchange 'warren-no-dst' in vhost '/'", 40, 30)


def test_unbind_nonexistent_is_ok(channel):
    q = excl_queue(channel)
    assert isinstance(channel.queue_unbind(q, "amq.direct", "never-bound").method,
                      pika.spec.Queue.UnbindOk)
    assert isinstance(channel.exchange_unbind("warren-no-dst", "amq.fanout").method,
                      pika.spec.Exchange.UnbindOk)


def test_duplicate_binding_delivers_once(channel, name):
    x = name("x")
    channel.exchange_declare(x, "direct", auto_delete=True)
    q = excl_queue(channel)
    channel.queue_bind(q, x, "k")
    channel.queue_bind(q, x, "k")
    channel.basic_publish(x, "k", b"once")
    sync(channel)
    assert bodies(channel, q) == ["once"]


def test_multiple_matching_bindings_deliver_once(channel, name):
    x = name("x")
    channel.exchange_declare(x, "topic", auto_delete=True)
    q = excl_queue(channel)
    channel.queue_bind(q, x, "a.*")
    channel.queue_bind(q, x, "#")
    channel.queue_bind(q, x, "a.b")
    channel.basic_publish(x, "a.b", b"m")
    sync(channel)
    assert bodies(channel, q) == ["m"]


# ---------------------------------------------------------------------------
# routing
# ---------------------------------------------------------------------------

def test_direct_routing(channel, name):
    x = name("x")
    channel.exchange_declare(x, "direct", auto_delete=True)
    q1, q2, q3 = excl_queue(channel), excl_queue(channel), excl_queue(channel)
    channel.queue_bind(q1, x, "red")
    channel.queue_bind(q2, x, "red")
    channel.queue_bind(q2, x, "green")
    channel.queue_bind(q3, x, "")
    for rk in ["red", "green", "blue", "", "Red"]:
        channel.basic_publish(x, rk, rk.encode() or b"<empty>")
    sync(channel)
    assert bodies(channel, q1) == ["red"]
    assert bodies(channel, q2) == ["red", "green"]
    assert bodies(channel, q3) == ["<empty>"]


def test_fanout_ignores_routing_key(channel, name):
    x = name("x")
    channel.exchange_declare(x, "fanout", auto_delete=True)
    q1, q2 = excl_queue(channel), excl_queue(channel)
    channel.queue_bind(q1, x, "whatever")
    channel.queue_bind(q2, x)
    channel.basic_publish(x, "k1", b"1")
    channel.basic_publish(x, "", b"2")
    sync(channel)
    assert bodies(channel, q1) == ["1", "2"]
    assert bodies(channel, q2) == ["1", "2"]


def test_default_exchange_routes_by_queue_name(channel):
    q = excl_queue(channel)
    channel.basic_publish("", q, b"direct-to-queue")
    channel.basic_publish("", q + "-nope", b"lost")
    sync(channel)
    assert bodies(channel, q) == ["direct-to-queue"]


TOPIC_KEYS = ["", "a", "b", "a.b", "a.b.c", "a..b", "a.x.b", "a.x.y.b", ".", "a.", ".a",
              "x.a.y", "ab", "a.bb", "a#", "a.b*", "b.a.b", "a.b.b"]

# pattern -> routing keys it matches, recorded from RabbitMQ 3.10
TOPIC_EXPECTED = {
    "*": ["a", "b", "ab", "a#"],
    "#": TOPIC_KEYS,
    "": [""],
    "a": ["a"],
    "a.*": ["a.b", "a.", "a.bb", "a.b*"],
    "a.#": ["a", "a.b", "a.b.c", "a..b", "a.x.b", "a.x.y.b", "a.", "a.bb", "a.b*", "a.b.b"],
    "*.b": ["a.b"],
    "#.b": ["b", "a.b", "a..b", "a.x.b", "a.x.y.b", "b.a.b", "a.b.b"],
    "a.*.b": ["a..b", "a.x.b", "a.b.b"],
    "a.#.b": ["a.b", "a..b", "a.x.b", "a.x.y.b", "a.b.b"],
    "a.#.#.b": ["a.b", "a..b", "a.x.b", "a.x.y.b", "a.b.b"],
    "#.#": TOPIC_KEYS,
    "*.*": ["a.b", ".", "a.", ".a", "a.bb", "a.b*"],
    "a.*.#": ["a.b", "a.b.c", "a..b", "a.x.b", "a.x.y.b", "a.", "a.bb", "a.b*", "a.b.b"],
    "*.#": [k for k in TOPIC_KEYS if k != ""],
    "a..b": ["a..b"],
    "a.*.*": ["a.b.c", "a..b", "a.x.b", "a.b.b"],
    "#.a.#": ["a", "a.b", "a.b.c", "a..b", "a.x.b", "a.x.y.b", "a.", ".a", "x.a.y", "a.bb",
              "a.b*", "b.a.b", "a.b.b"],
    "a.b.c": ["a.b.c"],
    "*.b.*": ["a.b.c", "a.b.b"],
    "a#": ["a#"],
    "a.b*": ["a.b*"],
    "##": [],
    "a.#.*": ["a.b", "a.b.c", "a..b", "a.x.b", "a.x.y.b", "a.", "a.bb", "a.b*", "a.b.b"],
}


def test_topic_routing_matrix(channel, name):
    x = name("topic")
    channel.exchange_declare(x, "topic", auto_delete=True)
    queues = {}
    for pattern in TOPIC_EXPECTED:
        q = excl_queue(channel)
        channel.queue_bind(q, x, pattern)
        queues[pattern] = q
    for key in TOPIC_KEYS:
        channel.basic_publish(x, key, key.encode())
    sync(channel)
    got = {pattern: bodies(channel, q) for pattern, q in queues.items()}
    assert got == TOPIC_EXPECTED


HEADER_BINDINGS = {
    "all_ab": {"x-match": "all", "a": "1", "b": "2"},
    "any_ab": {"x-match": "any", "a": "1", "b": "2"},
    "default_ab": {"a": "1", "b": "2"},
    "empty": {},
    "all_empty": {"x-match": "all"},
    "any_empty": {"x-match": "any"},
    "int_a": {"x-match": "all", "a": 1},
    "xkey_ignored": {"x-match": "all", "x-foo": "bar"},
    "any_with_x": {"x-match": "any-with-x", "x-foo": "bar"},
    "all_with_x": {"x-match": "all-with-x", "x-foo": "bar", "a": "1"},
    "void_a": {"x-match": "all", "a": None},
    "bool_a": {"x-match": "all", "a": True},
}
HEADER_MESSAGES = {
    "m_a1": {"a": "1"},
    "m_a1b2": {"a": "1", "b": "2"},
    "m_a1b3": {"a": "1", "b": "3"},
    "m_a1b2c3": {"a": "1", "b": "2", "c": "3"},
    "m_none": None,
    "m_empty": {},
    "m_aint1": {"a": 1},
    "m_xfoo": {"x-foo": "bar"},
    "m_xfoo_a1": {"x-foo": "bar", "a": "1"},
    "m_abool": {"a": True},
    "m_avoid": {"a": None},
    "m_a2": {"a": "2"},
}
ALL_MSGS = list(HEADER_MESSAGES)
HEADER_EXPECTED = {
    "all_ab": ["m_a1b2", "m_a1b2c3"],
    "any_ab": ["m_a1", "m_a1b2", "m_a1b3", "m_a1b2c3", "m_xfoo_a1"],
    "default_ab": ["m_a1b2", "m_a1b2c3"],
    "empty": ALL_MSGS,
    "all_empty": ALL_MSGS,
    "any_empty": [],
    "int_a": ["m_aint1"],
    "xkey_ignored": ALL_MSGS,              # x-* binding keys are ignored by all/any
    "any_with_x": ["m_xfoo", "m_xfoo_a1"],
    "all_with_x": ["m_xfoo_a1"],
    # a void binding value matches the mere presence of the header
    "void_a": ["m_a1", "m_a1b2", "m_a1b3", "m_a1b2c3", "m_aint1", "m_xfoo_a1", "m_abool",
               "m_avoid", "m_a2"],
    "bool_a": ["m_abool"],
}


def test_headers_routing_matrix(channel, name):
    x = name("headers")
    channel.exchange_declare(x, "headers", auto_delete=True)
    queues = {}
    for label, args in HEADER_BINDINGS.items():
        q = excl_queue(channel)
        channel.queue_bind(q, x, "routing-key-is-ignored", arguments=args)
        queues[label] = q
    for label, headers in HEADER_MESSAGES.items():
        channel.basic_publish(x, "rk", label.encode(), pika.BasicProperties(headers=headers))
    sync(channel)
    got = {label: bodies(channel, q) for label, q in queues.items()}
    assert got == HEADER_EXPECTED


def test_headers_invalid_x_match(connection, name):
    x = name("headers")
    ch = connection.channel()
    ch.exchange_declare(x, "headers", auto_delete=True)
    q = excl_queue(ch)
    with pytest.raises(CCBB) as ei:
        ch.queue_bind(q, x, "", arguments={"x-match": "foo"})
    assert_channel_error(
        ei, 406,
        'PRECONDITION_FAILED - Invalid x-match field value <<"foo">>; '
        "expected all, any, all-with-x, or any-with-x", 50, 20)
    ch = connection.channel()
    with pytest.raises(CCBB) as ei:
        ch.queue_bind(q, x, "", arguments={"x-match": 1})
    assert_channel_error(
        ei, 406,
        "PRECONDITION_FAILED - Invalid x-match field type signedint (value 1); expected longstr",
        50, 20)
    connection.channel().exchange_delete(x)


def test_exchange_to_exchange_routing(channel, name, cleanup):
    src, mid = cleanup.exchange(name("src")), name("mid")
    channel.exchange_declare(src, "topic")
    channel.exchange_declare(mid, "direct", auto_delete=True)
    channel.exchange_bind(mid, src, "a.*")
    qa, qb = excl_queue(channel), excl_queue(channel)
    channel.queue_bind(qa, mid, "a.x")
    channel.queue_bind(qb, mid, "a.y")
    for rk in ["a.x", "a.y", "a.z", "b.x"]:
        channel.basic_publish(src, rk, rk.encode())
    sync(channel)
    assert bodies(channel, qa) == ["a.x"]
    assert bodies(channel, qb) == ["a.y"]
    channel.exchange_unbind(mid, src, "a.*")
    channel.basic_publish(src, "a.x", b"after-unbind")
    sync(channel)
    assert bodies(channel, qa) == []


def test_exchange_to_exchange_cycle_delivers_once(channel, name):
    a, b = name("a"), name("b")
    channel.exchange_declare(a, "fanout", auto_delete=True)
    channel.exchange_declare(b, "fanout", auto_delete=True)
    channel.exchange_bind(b, a)
    channel.exchange_bind(a, b)
    q = excl_queue(channel)
    channel.queue_bind(q, b)
    channel.basic_publish(a, "", b"loop")
    sync(channel)
    assert bodies(channel, q) == ["loop"]
    channel.exchange_delete(a)
    channel.exchange_delete(b)


def test_auto_delete_exchange_removed_after_last_queue_binding(connection, channel, name):
    x = name("ad")
    channel.exchange_declare(x, "direct", auto_delete=True)
    # never bound: still there
    channel.exchange_declare(x, passive=True)
    q1, q2 = excl_queue(channel), excl_queue(channel)
    channel.queue_bind(q1, x, "k1")
    channel.queue_bind(q2, x, "k2")
    channel.queue_unbind(q1, x, "k1")
    channel.exchange_declare(x, passive=True)  # one binding left
    channel.queue_unbind(q2, x, "k2")
    with pytest.raises(CCBB) as ei:
        channel.exchange_declare(x, passive=True)
    assert_channel_error(ei, 404, "NOT_FOUND - no exchange '%s' in vhost '/'" % x, 40, 10)


def test_auto_delete_exchange_removed_when_bound_queue_deleted(channel, name):
    x = name("ad")
    channel.exchange_declare(x, "fanout", auto_delete=True)
    q = excl_queue(channel)
    channel.queue_bind(q, x)
    channel.queue_delete(q)
    with pytest.raises(CCBB):
        channel.exchange_declare(x, passive=True)


def test_auto_delete_exchange_removed_after_last_exchange_binding(channel, name, cleanup):
    src, dst = name("src"), cleanup.exchange(name("dst"))
    channel.exchange_declare(src, "fanout", auto_delete=True)
    channel.exchange_declare(dst, "fanout")
    channel.exchange_bind(dst, src)
    channel.exchange_unbind(dst, src)
    with pytest.raises(CCBB):
        channel.exchange_declare(src, passive=True)


def test_alternate_exchange(channel, name):
    ae, x = name("ae"), name("x")
    channel.exchange_declare(ae, "fanout", auto_delete=True)
    channel.exchange_declare(x, "direct", auto_delete=True,
                             arguments={"alternate-exchange": ae})
    q_main, q_alt = excl_queue(channel), excl_queue(channel)
    channel.queue_bind(q_main, x, "known")
    channel.queue_bind(q_alt, ae)
    returned = []
    channel.add_on_return_callback(lambda *a: returned.append(a))
    channel.confirm_delivery()
    channel.basic_publish(x, "known", b"routed", mandatory=True)
    # unroutable in x: goes to the AE, so a mandatory publish is NOT returned
    channel.basic_publish(x, "unknown", b"alternate", mandatory=True)
    sync(channel)
    assert bodies(channel, q_main) == ["routed"]
    assert bodies(channel, q_alt) == ["alternate"]
    assert returned == []


def test_alternate_exchange_missing_drops_message(channel, name):
    x = name("x")
    channel.exchange_declare(x, "direct", auto_delete=True,
                             arguments={"alternate-exchange": name("missing-ae")})
    q = excl_queue(channel)
    channel.queue_bind(q, x, "k")
    channel.basic_publish(x, "other", b"dropped")
    channel.basic_publish(x, "k", b"kept")
    sync(channel)
    assert bodies(channel, q) == ["kept"]


def test_internal_exchange(connection, name):
    ch = connection.channel()
    internal, front = name("internal"), name("front")
    ch.exchange_declare(internal, "fanout", internal=True, auto_delete=True)
    ch.exchange_declare(front, "fanout", auto_delete=True)
    ch.exchange_bind(internal, front)
    q = excl_queue(ch)
    ch.queue_bind(q, internal)
    # routing through an internal exchange via e2e binding works
    ch.basic_publish(front, "", b"via-front")
    sync(ch)
    assert bodies(ch, q) == ["via-front"]
    # publishing to it directly is refused
    ch.basic_publish(internal, "", b"direct")
    with pytest.raises(CCBB) as ei:
        sync(ch)
    assert_channel_error(
        ei, 403, "ACCESS_REFUSED - cannot publish to internal exchange '%s' in vhost '/'" % internal,
        60, 40)
    assert connection.is_open
    ch2 = connection.channel()
    sync(ch2)
    assert bodies(ch2, q) == []


def test_durable_exchange_declare(channel, name, cleanup):
    x = cleanup.exchange(name("durable"))
    channel.exchange_declare(x, "topic", durable=True)
    channel.exchange_declare(x, "topic", durable=True)
    channel.exchange_declare(x, passive=True)


def test_publish_to_missing_exchange_closes_channel(connection):
    ch = connection.channel()
    ch.basic_publish("warren-no-such-exchange", "rk", b"x")
    with pytest.raises(CCBB) as ei:
        sync(ch)
    assert_channel_error(ei, 404, "NOT_FOUND - no exchange 'warren-no-such-exchange' in vhost '/'",
                         60, 40)
    assert connection.is_open
    assert wait_until(connection, lambda: ch.is_closed)
