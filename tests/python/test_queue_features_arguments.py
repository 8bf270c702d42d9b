"""Issue #5, x- argument validation on queue.declare and redeclare
equivalence.  Every code and text recorded from RabbitMQ 3.10.8.

(x-max-priority: test_queue_features_priorities.py; x-max-length*,
x-overflow: test_queue_features_limits.py; type-specific arguments:
test_queue_features_queue_types.py; consume arguments:
test_queue_features_consumers.py.)"""

import pika.compat
import pytest

from qf_helpers import (INEQUIVALENT, INVALID_ARG, Typed, declare_error, raw_queue_declare)

EXPECTED_INT = '"expected integer, got %s"'


@pytest.mark.parametrize("arg,value,reason", [
    ("x-message-ttl", -1, "{value_negative,-1}"),
    ("x-message-ttl", "100", EXPECTED_INT % "longstr"),
    ("x-message-ttl", True, EXPECTED_INT % "bool"),
    ("x-message-ttl", 315360000001, "{value_too_large,315360000001}"),
    ("x-message-ttl", 2 ** 40, "{value_too_large,1099511627776}"),
    ("x-expires", 0, "{value_zero,0}"),
    ("x-expires", -1, "{value_negative,-1}"),
    ("x-expires", "1", EXPECTED_INT % "longstr"),
    ("x-expires", 315360000001, "{value_too_large,315360000001}"),
    ("x-max-length", -1, "{value_negative,-1}"),
    ("x-max-length-bytes", -1, "{value_negative,-1}"),
    ("x-max-priority", 256, "{max_value_exceeded,256}"),
    ("x-dead-letter-routing-key", "rk", "routing_key_but_no_dlx_defined"),
    ("x-overflow", "bogus", "invalid_overflow"),
    ("x-queue-type", "bogus", "\"unsupported queue type 'bogus'\""),
    ("x-single-active-consumer", "yes", "{unacceptable_type,longstr}"),
    ("x-single-active-consumer", 1, "{unacceptable_type,signedint}"),
    ("x-queue-mode", "bogus", "\"unsupported queue mode 'bogus'\""),
])
def test_invalid_arg(connection, name, arg, value, reason):
    q = name("arg")
    assert declare_error(connection, q, {arg: value}) == (
        406, INVALID_ARG % (arg, q, reason), 50, 10)


@pytest.mark.parametrize("value,type_name", [(5, "signedint"), (True, "bool")])
def test_dead_letter_exchange_must_be_a_string(connection, name, value, type_name):
    # a different text layout from the other arguments
    q = name("arg")
    assert declare_error(connection, q, {"x-dead-letter-exchange": value}) == (
        406, "PRECONDITION_FAILED - invalid type '%s' for arg 'x-dead-letter-exchange' "
        "in queue '%s' in vhost '/'" % (type_name, q), 50, 10)


def test_dead_letter_routing_key_must_be_a_string(connection, name):
    q = name("arg")
    assert declare_error(connection, q, {"x-dead-letter-exchange": "x",
                                         "x-dead-letter-routing-key": 5}) == (
        406, INVALID_ARG % ("x-dead-letter-routing-key", q,
                            "{unacceptable_type,signedint}"), 50, 10)


def test_delivery_limit_refused_on_classic(connection, name):
    q = name("arg")
    assert declare_error(connection, q, {"x-delivery-limit": 5}) == (
        406, "PRECONDITION_FAILED - invalid arg 'x-delivery-limit' for queue '%s' in "
        "vhost '/' of queue type rabbit_classic_queue" % q, 50, 10)


@pytest.mark.parametrize("args", [
    {"x-message-ttl": 0}, {"x-message-ttl": 315360000000}, {"x-message-ttl": 2 ** 32},
    {"x-expires": 1}, {"x-expires": 315360000000},
    {"x-dead-letter-exchange": ""}, {"x-dead-letter-exchange": "no-such-exchange"},
    {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": ""},
    {"x-single-active-consumer": False}, {"x-single-active-consumer": True},
    {"x-queue-type": "classic"}, {"x-unknown-argument": 5}, {"not-x-prefixed": "a"},
])
def test_valid_args(channel, name, args):
    q = name("arg")
    assert channel.queue_declare(q, exclusive=True, arguments=args).method.queue == q


INT_ARGS = ["x-message-ttl", "x-expires", "x-max-length", "x-max-length-bytes"]


@pytest.mark.parametrize("arg", INT_ARGS)
@pytest.mark.parametrize("tag", ["b", "B", "s", "u", "I", "i", "l"])
def test_every_integer_width_accepted(raw, name, arg, tag):
    assert raw_queue_declare(raw, name("arg"), {arg: Typed(tag, 5)}) == ("ok", 0, 0)


@pytest.mark.parametrize("arg", INT_ARGS)
@pytest.mark.parametrize("tag,value,reason", [
    ("b", -1, "{value_negative,-1}"),
    ("s", -1, "{value_negative,-1}"),
    ("f", 5.0, EXPECTED_INT % "float"),
    ("d", 5.0, EXPECTED_INT % "double"),
    ("D", (0, 5), EXPECTED_INT % "decimal"),
    ("T", 5, EXPECTED_INT % "timestamp"),
])
def test_non_integer_types_refused(raw, name, arg, tag, value, reason):
    q = name("arg")
    assert raw_queue_declare(raw, q, {arg: Typed(tag, value)}) == (
        406, INVALID_ARG % (arg, q, reason), 50, 10)


# ---------------------------------------------------------------------------
# redeclare equivalence
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("arg,first,second,received,current", [
    ("x-message-ttl", 100, 200, "'200'", "'100'"),
    ("x-expires", 100000, 200000, "'200000'", "'100000'"),
    ("x-max-length", 1, 2, "'2'", "'1'"),
    ("x-max-length-bytes", 1, 2, "'2'", "'1'"),
    ("x-overflow", "drop-head", "reject-publish", "'reject-publish'", "'drop-head'"),
    ("x-dead-letter-exchange", "a", "b", "'b'", "'a'"),
    ("x-max-priority", 5, 6, "'6'", "'5'"),
    # the equivalence check comes first: no {max_value_exceeded,...} here
    ("x-max-priority", 5, 2 ** 40, "'1099511627776'", "'5'"),
    ("x-single-active-consumer", True, False, "'false'", "'true'"),
    ("x-queue-mode", "lazy", "default", "'default'", "'lazy'"),
    ("x-queue-master-locator", "min-masters", "client-local", "'client-local'",
     "'min-masters'"),
])
def test_inequivalent_value(connection, channel, name, arg, first, second, received,
                            current):
    q = name("eq")
    channel.queue_declare(q, exclusive=True, arguments={arg: first})
    assert declare_error(connection, q, {arg: second}, exclusive=True) == (
        406, INEQUIVALENT % (arg, q, received, current), 50, 10)


def test_inequivalent_dead_letter_routing_key(connection, channel, name):
    q = name("eq")
    channel.queue_declare(q, exclusive=True, arguments={
        "x-dead-letter-exchange": "a", "x-dead-letter-routing-key": "k"})
    assert declare_error(connection, q, {"x-dead-letter-exchange": "a",
                                         "x-dead-letter-routing-key": "j"},
                         exclusive=True) == (
        406, INEQUIVALENT % ("x-dead-letter-routing-key", q, "'j'", "'k'"), 50, 10)
    assert declare_error(connection, q, {"x-dead-letter-exchange": "a"}, exclusive=True) == (
        406, INEQUIVALENT % ("x-dead-letter-routing-key", q, "none",
                             "the value 'k' of type 'longstr'"), 50, 10)


@pytest.mark.parametrize("arg,value,shown", [
    ("x-message-ttl", 100, "the value '100' of type 'signedint'"),
    ("x-max-priority", 5, "the value '5' of type 'signedint'"),
    ("x-message-ttl", pika.compat.long(5), "the value '5' of type 'long'"),
    ("x-overflow", "drop-head", "the value 'drop-head' of type 'longstr'"),
    ("x-dead-letter-exchange", "a", "the value 'a' of type 'longstr'"),
    ("x-single-active-consumer", False, "the value 'false' of type 'bool'"),
    ("x-queue-mode", "lazy", "the value 'lazy' of type 'longstr'"),
])
def test_inequivalent_added_or_removed(connection, channel, name, arg, value, shown):
    added = name("eq")
    channel.queue_declare(added, exclusive=True)
    assert declare_error(connection, added, {arg: value}, exclusive=True) == (
        406, INEQUIVALENT % (arg, added, shown, "none"), 50, 10)
    removed = name("eq")
    channel.queue_declare(removed, exclusive=True, arguments={arg: value})
    assert declare_error(connection, removed, None, exclusive=True) == (
        406, INEQUIVALENT % (arg, removed, "none", shown), 50, 10)


def test_equivalent_redeclares(channel, name):
    q = name("eq")
    channel.queue_declare(q, exclusive=True, arguments={"x-message-ttl": 5, "x-foo": 1})
    # same value in another integer width; unknown arguments are not compared
    assert channel.queue_declare(q, exclusive=True, arguments={
        "x-message-ttl": pika.compat.long(5), "x-foo": 2}).method.queue == q


@pytest.mark.parametrize("t1,t2", [("b", "I"), ("u", "i"), ("B", "l")])
def test_integer_widths_are_equivalent(raw, name, t1, t2):
    import amqp_raw
    from amqp_raw import bits, short, shortstr
    from qf_helpers import typed_table
    q = name("eq")
    c = raw(open=True)
    c.open_channel(1)
    for tag in (t1, t2):
        c.send_method(1, amqp_raw.QUEUE_DECLARE,
                      short(0) + shortstr(q) + bits(False, False, True, False, False)
                      + typed_table({"x-message-ttl": Typed(tag, 5)}))
        c.expect(amqp_raw.QUEUE_DECLARE_OK)
