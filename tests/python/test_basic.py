"""basic.*: publish, consume, get, ack/nack/reject, qos, recover, properties,
large bodies, CC/BCC."""

import datetime
import decimal
import struct

import pika
import pika.exceptions
import pytest

import amqp_raw as R
from conftest import close_info, drain, get_all, sync, wait_until

CCBB = pika.exceptions.ChannelClosedByBroker
CONNCBB = pika.exceptions.ConnectionClosedByBroker


def excl_queue(ch):
    return ch.queue_declare("", exclusive=True).method.queue


def assert_close(ei, code, text, class_id, method_id):
    assert close_info(ei.value) == (code, text, class_id, method_id)


def fill(ch, q, n, prefix="m"):
    for i in range(n):
        ch.basic_publish("", q, ("%s%d" % (prefix, i)).encode())
    sync(ch)


class Collector:
    """on_message_callback that records (method, properties, body)."""

    def __init__(self):
        self.items = []

    def __call__(self, ch, method, props, body):
        self.items.append((method, props, body))

    @property
    def bodies(self):
        return [b.decode() for _, _, b in self.items]

    def __len__(self):
        return len(self.items)


# ---------------------------------------------------------------------------
# publish
# ---------------------------------------------------------------------------

def test_publish_and_get_fields(channel):
    q = excl_queue(channel)
    channel.basic_publish("", q, b"hello")
    m, props, body = channel.basic_get(q)
    assert body == b"hello"
    assert isinstance(m, pika.spec.Basic.GetOk)
    assert (m.delivery_tag, m.redelivered, m.exchange, m.routing_key, m.message_count) == \
        (1, False, "", q, 0)
    channel.basic_ack(m.delivery_tag)


def test_publish_to_missing_exchange(connection):
    ch = connection.channel()
    ch.basic_publish("warren-no-such-exchange", "rk", b"x")
    with pytest.raises(CCBB) as ei:
        sync(ch)
    assert_close(ei, 404, "NOT_FOUND - no exchange 'warren-no-such-exchange' in vhost '/'", 60, 40)
    assert connection.is_open
    ch2 = connection.channel()
    q = excl_queue(ch2)
    ch2.basic_publish("", q, b"ok")
    assert ch2.basic_get(q, auto_ack=True)[2] == b"ok"


def test_unroutable_non_mandatory_is_dropped_silently(channel):
    returned = []
    channel.add_on_return_callback(lambda *a: returned.append(a))
    channel.basic_publish("amq.direct", "warren-nobody-bound-here", b"x")
    sync(channel)
    drain(channel.connection, 0.2)
    assert returned == []
    assert channel.is_open


def test_mandatory_unroutable_is_returned(channel):
    returned = []
    channel.add_on_return_callback(lambda ch, m, p, b: returned.append((m, p, b)))
    channel.basic_publish("amq.direct", "warren-nobody-bound-here", b"bounce", mandatory=True,
                          properties=pika.BasicProperties(message_id="r1",
                                                          headers={"h": "v"}))
    assert wait_until(channel.connection, lambda: returned)
    m, p, b = returned[0]
    assert isinstance(m, pika.spec.Basic.Return)
    assert (m.reply_code, m.reply_text, m.exchange, m.routing_key) == \
        (312, "NO_ROUTE", "amq.direct", "warren-nobody-bound-here")
    assert b == b"bounce"
    assert p.message_id == "r1" and p.headers == {"h": "v"}
    assert channel.is_open


def test_mandatory_routable_is_not_returned(channel):
    q = excl_queue(channel)
    returned = []
    channel.add_on_return_callback(lambda *a: returned.append(a))
    channel.basic_publish("", q, b"x", mandatory=True)
    sync(channel)
    drain(channel.connection, 0.2)
    assert returned == []
    assert channel.basic_get(q, auto_ack=True)[2] == b"x"


def test_mandatory_return_precedes_confirm_ack_raw(raw):
    """Wire order with confirms: basic.return (+ content) then basic.ack."""
    c = raw(open=True)
    c.open_channel(1)
    c.send_method(1, R.CONFIRM_SELECT, R.bits(False))
    c.expect((85, 11))
    c.send(c.publish_frames(1, "", "warren-no-such-queue-raw", b"bounce", mandatory=True))
    fr = c.read_method()
    assert fr.class_method == (60, 50)
    d = fr.args()
    assert (d.short(), d.shortstr(), d.shortstr(), d.shortstr()) == \
        (312, "NO_ROUTE", "", "warren-no-such-queue-raw")
    hdr = c.read_method()
    assert hdr.type == R.FRAME_HEADER
    assert struct.unpack(">HHQ", hdr.payload[:12]) == (60, 0, 6)
    body = c.read_method()
    assert (body.type, body.payload) == (R.FRAME_BODY, b"bounce")
    ack = c.read_method()
    assert ack.class_method == R.BASIC_ACK
    d = ack.args()
    assert (d.longlong(), d.octet()) == (1, 0)


def test_immediate_flag_not_implemented(raw):
    c = raw(open=True)
    c.open_channel(1)
    c.send(c.publish_frames(1, "", "anything", b"x", immediate=True))
    info = c.wait_for_close()
    assert info.kind == "connection"
    assert info.as_tuple() == (540, "NOT_IMPLEMENTED - immediate=true", 60, 40)


def test_user_id_must_match_authenticated_user(connection):
    ch = connection.channel()
    q = excl_queue(ch)
    ch.basic_publish("", q, b"x", pika.BasicProperties(user_id="bob"))
    with pytest.raises(CCBB) as ei:
        sync(ch)
    assert_close(ei, 406,
                 "PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was "
                 "'guest'", 60, 40)
    ch2 = connection.channel()
    ch2.basic_publish("", q, b"y", pika.BasicProperties(user_id="guest"))
    m, p, b = ch2.basic_get(q, auto_ack=True)
    assert (b, p.user_id) == (b"y", "guest")


@pytest.mark.parametrize("expiration,text", [
    ("abc", "PRECONDITION_FAILED - invalid expiration 'abc': no_integer"),
    ("-1", "PRECONDITION_FAILED - invalid expiration '-1': {value_negative,-1}"),
])
def test_invalid_expiration(connection, expiration, text):
    ch = connection.channel()
    q = excl_queue(ch)
    ch.basic_publish("", q, b"x", pika.BasicProperties(expiration=expiration))
    with pytest.raises(CCBB) as ei:
        sync(ch)
    assert_close(ei, 406, text, 60, 40)


def test_message_order_preserved(channel):
    q = excl_queue(channel)
    fill(channel, q, 50)
    assert [b.decode() for _, _, b in get_all(channel, q)] == ["m%d" % i for i in range(50)]


def test_empty_body(channel):
    q = excl_queue(channel)
    channel.basic_publish("", q, b"")
    m, p, b = channel.basic_get(q, auto_ack=True)
    assert m is not None and b == b""


# ---------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------

ALL_HEADERS = {
    "str": "hello",
    "bytes": b"\x00\xffbin",
    "int": 42,
    "neg": -7,
    "big": 2 ** 40,
    "bool_t": True,
    "bool_f": False,
    "dec": decimal.Decimal("3.14"),
    "ts": datetime.datetime(2024, 1, 2, 3, 4, 5),
    "table": {"a": 1, "b": "x", "n": {"deep": True}},
    "list": [1, "two", None, {"k": "v"}, [1, 2]],
    "none": None,
    "unicode": "h\u00e9llo \u2713",
    "empty": "",
    "emptylist": [],
    "emptytable": {},
}


def test_all_basic_properties_round_trip(channel):
    q = excl_queue(channel)
    props = pika.BasicProperties(
        content_type="application/json", content_encoding="gzip", headers=ALL_HEADERS,
        delivery_mode=2, priority=5, correlation_id="corr-1", reply_to="reply-q",
        expiration="60000", message_id="msg-1", timestamp=1700000000, type="my.type",
        user_id="guest", app_id="my-app", cluster_id="cluster-x")
    channel.basic_publish("", q, b"body", props)
    m, p, b = channel.basic_get(q, auto_ack=True)
    assert b == b"body"
    for attr in ("content_type", "content_encoding", "delivery_mode", "priority",
                 "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
                 "user_id", "app_id", "cluster_id"):
        assert getattr(p, attr) == getattr(props, attr), attr
    assert p.headers == ALL_HEADERS


def test_no_properties_round_trip(channel):
    q = excl_queue(channel)
    channel.basic_publish("", q, b"bare")
    _, p, _ = channel.basic_get(q, auto_ack=True)
    for attr in ("content_type", "content_encoding", "headers", "delivery_mode", "priority",
                 "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
                 "user_id", "app_id", "cluster_id"):
        assert getattr(p, attr) is None, attr


def test_priority_above_9_passes_through(channel):
    q = excl_queue(channel)
    channel.basic_publish("", q, b"x", pika.BasicProperties(priority=200))
    assert channel.basic_get(q, auto_ack=True)[1].priority == 200


def test_content_header_bytes_pass_through_unchanged(raw):
    """The content header (including field types pika cannot produce: b B s u
    i f d x) is delivered byte-for-byte as published."""
    c = raw(open=True)
    c.open_channel(1)
    q = c.queue_declare(1, "", exclusive=True).args().shortstr()
    arr = b"I" + struct.pack(">i", 1) + b"S" + R.longstr(b"a")
    fields = [
        (b"t", b"\x01"), (b"b", struct.pack(">b", -5)), (b"B", b"\xfa"),
        (b"s", struct.pack(">h", -300)), (b"u", struct.pack(">H", 60000)),
        (b"I", struct.pack(">i", -70000)), (b"i", struct.pack(">I", 4000000000)),
        (b"l", struct.pack(">q", -2 ** 40)), (b"f", struct.pack(">f", 1.5)),
        (b"d", struct.pack(">d", 2.25)), (b"D", b"\x02" + struct.pack(">i", 314)),
        (b"S", R.longstr(b"str")), (b"x", R.longstr(b"\x00\x01")),
        (b"T", struct.pack(">Q", 1700000000)), (b"V", b""),
        (b"A", R.long_(len(arr)) + arr), (b"F", R.table({"k": "v"})),
    ]
    tbl = b"".join(R.shortstr("k%02d" % i) + t + d for i, (t, d) in enumerate(fields))
    flags = (1 << 15) | (1 << 13) | (1 << 12)  # content-type, headers, delivery-mode
    props = R.shortstr("text/plain") + R.long_(len(tbl)) + tbl + R.octet(2)
    c.send(R.method_frame(1, R.BASIC_PUBLISH, R.short(0) + R.shortstr("") + R.shortstr(q)
                          + R.bits(False, False))
           + R.content_header_frame(1, 5, flags=flags, props=props)
           + R.body_frame(1, b"hello"))
    c.send_method(1, R.BASIC_GET, R.short(0) + R.shortstr(q) + R.bits(True))
    get_ok = c.expect(R.BASIC_GET_OK)
    d = get_ok.args()
    assert (d.longlong(), d.octet(), d.shortstr(), d.shortstr(), d.long()) == (1, 0, "", q, 0)
    hdr = c.read_method()
    assert hdr.type == R.FRAME_HEADER and hdr.channel == 1
    assert hdr.payload == struct.pack(">HHQH", 60, 0, 5, flags) + props
    body = c.read_method()
    assert (body.type, body.payload) == (R.FRAME_BODY, b"hello")


# ---------------------------------------------------------------------------
# large bodies
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("size", [131072 - 8, 131072 - 7, 131072, 1024 * 1024, 10 * 1024 * 1024])
def test_large_bodies_round_trip(channel, size):
    q = excl_queue(channel)
    body = (bytes(range(251)) * (size // 251 + 1))[:size]
    channel.basic_publish("", q, body)
    m, _, got = channel.basic_get(q, auto_ack=True)
    assert len(got) == size
    assert got == body


@pytest.mark.parametrize("extra", [-1, 0, 1])
def test_body_frame_split_at_frame_max_raw(raw, extra):
    """With frame_max 4096 a body of 4088 (+/-1) bytes is delivered in body
    frames of at most frame_max - 8 bytes."""
    c = raw(open=True, frame_max=4096)
    c.open_channel(1)
    q = c.queue_declare(1, "", exclusive=True).args().shortstr()
    body = bytes(range(256)) * 16
    body = (body * 2)[:4088 + extra]
    c.send(c.publish_frames(1, "", q, body, frame_max=4096))
    c.send_method(1, R.BASIC_GET, R.short(0) + R.shortstr(q) + R.bits(True))
    c.expect(R.BASIC_GET_OK)
    hdr = c.read_method()
    assert struct.unpack(">HHQ", hdr.payload[:12]) == (60, 0, len(body))
    chunks = []
    while sum(map(len, chunks)) < len(body):
        fr = c.read_method()
        assert fr.type == R.FRAME_BODY
        assert len(fr.payload) <= 4088
        chunks.append(fr.payload)
    assert b"".join(chunks) == body
    assert [len(x) for x in chunks] == ([4088, 1] if extra == 1 else [len(body)])


# ---------------------------------------------------------------------------
# consume / cancel
# ---------------------------------------------------------------------------

def test_consume_with_client_tag(channel):
    q = excl_queue(channel)
    got = Collector()
    tag = channel.basic_consume(q, got, auto_ack=True, consumer_tag="my-tag")
    assert tag == "my-tag"
    fill(channel, q, 3)
    assert wait_until(channel.connection, lambda: len(got) == 3)
    assert got.bodies == ["m0", "m1", "m2"]
    for i, (m, _, _) in enumerate(got.items):
        assert isinstance(m, pika.spec.Basic.Deliver)
        assert (m.consumer_tag, m.delivery_tag, m.redelivered, m.exchange, m.routing_key) == \
            ("my-tag", i + 1, False, "", q)


def test_consume_missing_queue(channel):
    with pytest.raises(CCBB) as ei:
        channel.basic_consume("warren-no-such-queue", lambda *a: None)
    assert_close(ei, 404, "NOT_FOUND - no queue 'warren-no-such-queue' in vhost '/'", 60, 20)


def test_exclusive_consumer_blocks_others(connection, name):
    q = name("q")
    ch = connection.channel()
    ch.queue_declare(q, exclusive=True)
    ch.basic_consume(q, lambda *a: None, exclusive=True)
    ch2 = connection.channel()
    with pytest.raises(CCBB) as ei:
        ch2.basic_consume(q, lambda *a: None)
    assert_close(ei, 403, "ACCESS_REFUSED - queue '%s' in vhost '/' in exclusive use" % q, 60, 20)
    assert ch.is_open


def test_exclusive_consume_refused_when_queue_has_consumers(connection):
    ch = connection.channel()
    q = excl_queue(ch)
    ch.basic_consume(q, lambda *a: None)
    with pytest.raises(CCBB) as ei:
        ch.basic_consume(q, lambda *a: None, exclusive=True)
    assert_close(ei, 403, "ACCESS_REFUSED - queue '%s' in vhost '/' in exclusive use" % q, 60, 20)


def test_exclusive_consumer_from_other_connection(channel, make_connection, name, cleanup):
    q = cleanup.queue(name("q"))
    channel.queue_declare(q, auto_delete=False)
    channel.basic_consume(q, lambda *a: None, exclusive=True)
    ch2 = make_connection().channel()
    with pytest.raises(CCBB) as ei:
        ch2.basic_consume(q, lambda *a: None)
    assert_close(ei, 403, "ACCESS_REFUSED - queue '%s' in vhost '/' in exclusive use" % q, 60, 20)


def test_basic_cancel_stops_deliveries(channel):
    q = excl_queue(channel)
    got = Collector()
    tag = channel.basic_consume(q, got, auto_ack=True)
    fill(channel, q, 1)
    assert wait_until(channel.connection, lambda: len(got) == 1)
    channel.basic_cancel(tag)
    fill(channel, q, 2, prefix="after")
    drain(channel.connection, 0.2)
    assert got.bodies == ["m0"]
    assert channel.queue_declare(q, passive=True).method.message_count == 2
    assert channel.queue_declare(q, passive=True).method.consumer_count == 0


def test_cancel_unknown_tag_is_ok_raw(raw):
    c = raw(open=True)
    c.open_channel(1)
    c.send_method(1, (60, 30), R.shortstr("no-such-tag") + R.bits(False))
    fr = c.expect((60, 31))
    assert fr.args().shortstr() == "no-such-tag"


def test_server_cancel_when_queue_deleted(connection):
    ch = connection.channel()
    q = excl_queue(ch)
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame))
    tag = ch.basic_consume(q, lambda *a: None, consumer_tag="doomed")
    other = connection.channel()
    other.queue_delete(q)
    assert wait_until(connection, lambda: cancelled)
    m = cancelled[0].method
    assert isinstance(m, pika.spec.Basic.Cancel)
    assert m.consumer_tag == tag == "doomed"
    assert ch.is_open
    assert ch.consumer_tags == []


def test_server_cancel_frame_raw(raw):
    """consumer_cancel_notify: basic.cancel(tag, nowait=1) from the server."""
    c = raw(open=True)
    c.open_channel(1)
    q = c.queue_declare(1, "", exclusive=True).args().shortstr()
    c.send_method(1, R.BASIC_CONSUME, R.short(0) + R.shortstr(q) + R.shortstr("t1")
                  + R.bits(False, True, False, False) + R.table({}))
    c.expect((60, 21))
    c.open_channel(2)
    c.send_method(2, (50, 40), R.short(0) + R.shortstr(q) + R.bits(False, False, False))
    frames = [c.read_method(), c.read_method()]
    by_channel = {fr.channel: fr for fr in frames}
    cancel = by_channel[1]
    assert cancel.class_method == (60, 30)
    d = cancel.args()
    assert (d.shortstr(), d.octet()) == ("t1", 1)
    assert by_channel[2].class_method == (50, 41)


# ---------------------------------------------------------------------------
# basic.get
# ---------------------------------------------------------------------------

def test_get_and_get_empty(channel):
    q = excl_queue(channel)
    m, p, b = channel.basic_get(q)
    assert (m, p, b) == (None, None, None)
    fill(channel, q, 3)
    counts = []
    for _ in range(3):
        m, _, _ = channel.basic_get(q, auto_ack=True)
        counts.append(m.message_count)
    assert counts == [2, 1, 0]
    assert channel.basic_get(q)[0] is None


def test_get_empty_raw(raw):
    c = raw(open=True)
    c.open_channel(1)
    q = c.queue_declare(1, "", exclusive=True).args().shortstr()
    c.send_method(1, R.BASIC_GET, R.short(0) + R.shortstr(q) + R.bits(False))
    fr = c.expect(R.BASIC_GET_EMPTY)
    assert fr.args().shortstr() == ""  # reserved cluster-id


def test_get_missing_queue(channel):
    with pytest.raises(CCBB) as ei:
        channel.basic_get("warren-no-such-queue")
    assert_close(ei, 404, "NOT_FOUND - no queue 'warren-no-such-queue' in vhost '/'", 60, 70)


# ---------------------------------------------------------------------------
# ack / nack / reject
# ---------------------------------------------------------------------------

def test_reject_requeue_returns_to_original_position(channel):
    q = excl_queue(channel)
    fill(channel, q, 3)
    a = channel.basic_get(q)[0]
    b = channel.basic_get(q)[0]
    channel.basic_reject(b.delivery_tag, requeue=True)
    m1, _, b1 = channel.basic_get(q)
    assert (b1, m1.redelivered) == (b"m1", True)
    m2, _, b2 = channel.basic_get(q)
    assert (b2, m2.redelivered) == (b"m2", False)
    channel.basic_nack(a.delivery_tag, requeue=True, multiple=False)
    m0, _, b0 = channel.basic_get(q)
    assert (b0, m0.redelivered) == (b"m0", True)
    # delivery tags keep increasing on the channel
    assert [a.delivery_tag, b.delivery_tag, m1.delivery_tag, m2.delivery_tag, m0.delivery_tag] == \
        [1, 2, 3, 4, 5]


def test_nack_multiple_requeue_keeps_order(channel):
    q = excl_queue(channel)
    fill(channel, q, 5)
    tags = [channel.basic_get(q)[0].delivery_tag for _ in range(5)]
    channel.basic_nack(tags[2], multiple=True, requeue=True)  # m0..m2 back
    got = get_all(channel, q, auto_ack=False)
    assert [(b.decode(), m.redelivered) for m, _, b in got] == \
        [("m0", True), ("m1", True), ("m2", True)]
    channel.basic_ack(0, multiple=True)  # ack everything outstanding
    sync(channel)
    channel.basic_recover(requeue=True)
    assert channel.basic_get(q)[0] is None


def test_reject_and_nack_without_requeue_drop(channel):
    q = excl_queue(channel)
    fill(channel, q, 4)
    tags = [channel.basic_get(q)[0].delivery_tag for _ in range(4)]
    channel.basic_reject(tags[0], requeue=False)
    channel.basic_nack(tags[2], multiple=True, requeue=False)  # tags 2,3
    channel.basic_nack(tags[3], multiple=False, requeue=False)
    sync(channel)
    channel.basic_recover(requeue=True)
    assert channel.basic_get(q)[0] is None
    assert channel.queue_declare(q, passive=True).method.message_count == 0


def test_ack_multiple(channel, connection):
    q = excl_queue(channel)
    fill(channel, q, 4)
    tags = [channel.basic_get(q)[0].delivery_tag for _ in range(4)]
    channel.basic_ack(tags[2], multiple=True)
    sync(channel)
    channel.close()  # only m3 was unacked: it is requeued
    ch = connection.channel()
    got = get_all(ch, q)
    assert [(b, m.redelivered) for m, _, b in got] == [(b"m3", True)]


@pytest.mark.parametrize("op,multiple,method_id", [
    ("ack", False, 80), ("ack", True, 80), ("nack", False, 120), ("reject", False, 90),
])
def test_unknown_delivery_tag(connection, op, multiple, method_id):
    ch = connection.channel()
    if op == "ack":
        ch.basic_ack(42, multiple=multiple)
    elif op == "nack":
        ch.basic_nack(42, multiple=multiple)
    else:
        ch.basic_reject(42)
    with pytest.raises(CCBB) as ei:
        sync(ch)
    assert_close(ei, 406, "PRECONDITION_FAILED - unknown delivery tag 42", 60, method_id)
    assert connection.is_open


def test_double_ack(connection):
    ch = connection.channel()
    q = excl_queue(ch)
    fill(ch, q, 1)
    m = ch.basic_get(q)[0]
    ch.basic_ack(m.delivery_tag)
    ch.basic_ack(m.delivery_tag)
    with pytest.raises(CCBB) as ei:
        sync(ch)
    assert_close(ei, 406, "PRECONDITION_FAILED - unknown delivery tag 1", 60, 80)


def test_ack_of_auto_acked_delivery(connection):
    ch = connection.channel()
    q = excl_queue(ch)
    fill(ch, q, 1)
    m = ch.basic_get(q, auto_ack=True)[0]
    ch.basic_ack(m.delivery_tag)
    with pytest.raises(CCBB) as ei:
        sync(ch)
    assert_close(ei, 406, "PRECONDITION_FAILED - unknown delivery tag 1", 60, 80)


def test_ack_zero(connection):
    ch = connection.channel()
    ch.basic_ack(0, multiple=True)  # nothing outstanding: fine
    sync(ch)
    ch.basic_ack(0)  # not multiple: tag 0 is unknown
    with pytest.raises(CCBB) as ei:
        sync(ch)
    assert_close(ei, 406, "PRECONDITION_FAILED - unknown delivery tag 0", 60, 80)


def test_ack_on_other_channel_is_unknown(connection):
    ch1, ch2 = connection.channel(), connection.channel()
    q = excl_queue(ch1)
    fill(ch1, q, 1)
    m = ch1.basic_get(q)[0]
    ch2.basic_ack(m.delivery_tag)
    with pytest.raises(CCBB) as ei:
        sync(ch2)
    assert_close(ei, 406, "PRECONDITION_FAILED - unknown delivery tag 1", 60, 80)
    ch1.basic_ack(m.delivery_tag)
    sync(ch1)


def test_unacked_requeued_when_channel_closes(connection):
    ch = connection.channel()
    q = excl_queue(ch)
    fill(ch, q, 3)
    for _ in range(3):
        ch.basic_get(q)
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    ch.close()
    ch2 = connection.channel()
    got = get_all(ch2, q)
    assert [(b, m.redelivered) for m, _, b in got] == \
        [(b"m0", True), (b"m1", True), (b"m2", True)]


def test_unacked_requeued_when_connection_closes(channel, make_connection, name, cleanup):
    q = cleanup.queue(name("q"))
    channel.queue_declare(q)
    fill(channel, q, 2)
    other = make_connection()
    och = other.channel()
    got = Collector()
    och.basic_consume(q, got)
    assert wait_until(other, lambda: len(got) == 2)
    other.close()
    msgs = get_all(channel, q)
    assert [(b, m.redelivered) for m, _, b in msgs] == [(b"m0", True), (b"m1", True)]


def test_recover_requeue(channel):
    q = excl_queue(channel)
    fill(channel, q, 2)
    channel.basic_get(q)
    channel.basic_get(q)
    channel.basic_recover(requeue=True)
    got = get_all(channel, q)
    assert [(b, m.redelivered) for m, _, b in got] == [(b"m0", True), (b"m1", True)]


def test_recover_redelivers_to_consumer(channel):
    q = excl_queue(channel)
    got = Collector()
    channel.basic_consume(q, got)
    fill(channel, q, 2)
    assert wait_until(channel.connection, lambda: len(got) == 2)
    channel.basic_recover(requeue=True)
    assert wait_until(channel.connection, lambda: len(got) == 4)
    assert [(b.decode(), m.redelivered) for m, _, b in got.items] == \
        [("m0", False), ("m1", False), ("m0", True), ("m1", True)]
    assert [m.delivery_tag for m, _, _ in got.items] == [1, 2, 3, 4]


def test_recover_without_requeue_not_implemented(connection):
    ch = connection.channel()
    ch._impl.basic_recover(requeue=False)  # async in pika; reply is a close
    with pytest.raises(CONNCBB) as ei:
        sync(ch)
    assert_close(ei, 540, "NOT_IMPLEMENTED - requeue=false", 60, 110)


# ---------------------------------------------------------------------------
# qos / distribution
# ---------------------------------------------------------------------------

def test_prefetch_count_limits_unacked_deliveries(channel):
    q = excl_queue(channel)
    channel.basic_qos(prefetch_count=2)
    got = Collector()
    channel.basic_consume(q, got)
    fill(channel, q, 5)
    assert wait_until(channel.connection, lambda: len(got) == 2)
    drain(channel.connection, 0.3)
    assert got.bodies == ["m0", "m1"]
    channel.basic_ack(got.items[0][0].delivery_tag)
    assert wait_until(channel.connection, lambda: len(got) == 3)
    drain(channel.connection, 0.2)
    assert got.bodies == ["m0", "m1", "m2"]
    channel.basic_ack(got.items[2][0].delivery_tag, multiple=True)
    assert wait_until(channel.connection, lambda: len(got) == 5)


def test_prefetch_is_per_consumer(channel):
    q = excl_queue(channel)
    channel.basic_qos(prefetch_count=2)  # global=False: per consumer
    a, b = Collector(), Collector()
    channel.basic_consume(q, a)
    channel.basic_consume(q, b)
    fill(channel, q, 10)
    assert wait_until(channel.connection, lambda: len(a) + len(b) == 4)
    drain(channel.connection, 0.3)
    assert (len(a), len(b)) == (2, 2)


def test_prefetch_global_is_per_channel(channel):
    q = excl_queue(channel)
    channel.basic_qos(prefetch_count=3, global_qos=True)
    a, b = Collector(), Collector()
    channel.basic_consume(q, a)
    channel.basic_consume(q, b)
    fill(channel, q, 10)
    assert wait_until(channel.connection, lambda: len(a) + len(b) == 3)
    drain(channel.connection, 0.3)
    assert len(a) + len(b) == 3


def test_prefetch_does_not_limit_basic_get(channel):
    q = excl_queue(channel)
    channel.basic_qos(prefetch_count=1)
    fill(channel, q, 3)
    got = [channel.basic_get(q)[2] for _ in range(3)]
    assert got == [b"m0", b"m1", b"m2"]


def test_prefetch_size_not_implemented(connection):
    ch = connection.channel()
    with pytest.raises(CONNCBB) as ei:
        ch.basic_qos(prefetch_size=10)
    assert_close(ei, 540, "NOT_IMPLEMENTED - prefetch_size!=0 (10)", 60, 10)


def test_round_robin_between_consumers(connection):
    ch1, ch2 = connection.channel(), connection.channel()
    q = excl_queue(ch1)
    a, b = Collector(), Collector()
    ch1.basic_consume(q, a, auto_ack=True)
    ch2.basic_consume(q, b, auto_ack=True)
    fill(ch1, q, 10)
    assert wait_until(connection, lambda: len(a) + len(b) == 10)
    assert sorted([a.bodies, b.bodies]) == sorted([
        ["m0", "m2", "m4", "m6", "m8"], ["m1", "m3", "m5", "m7", "m9"]])


def test_deliveries_with_no_ack_are_removed(channel):
    q = excl_queue(channel)
    got = Collector()
    channel.basic_consume(q, got, auto_ack=True)
    fill(channel, q, 3)
    assert wait_until(channel.connection, lambda: len(got) == 3)
    channel.close()
    ch = channel.connection.channel()
    assert ch.queue_declare(q, passive=True).method.message_count == 0


# ---------------------------------------------------------------------------
# CC / BCC (sender-selected distribution)
# ---------------------------------------------------------------------------

def test_cc_and_bcc(channel, name):
    x = name("x")
    channel.exchange_declare(x, "direct", auto_delete=True)
    qa, qb, qc, qd = (excl_queue(channel) for _ in range(4))
    channel.queue_bind(qa, x, "a")
    channel.queue_bind(qb, x, "b")
    channel.queue_bind(qc, x, "c")
    channel.queue_bind(qd, x, "d")
    headers = {"CC": ["b"], "BCC": ["c"], "other": "kept"}
    channel.basic_publish(x, "a", b"ccbcc", pika.BasicProperties(headers=headers))
    sync(channel)
    for q in (qa, qb, qc):
        m, p, b = channel.basic_get(q, auto_ack=True)
        assert b == b"ccbcc"
        assert m.routing_key == "a"  # original routing key is reported
        assert p.headers == {"CC": ["b"], "other": "kept"}
    assert channel.basic_get(qd)[0] is None


def test_cc_on_default_exchange(channel):
    q1, q2 = excl_queue(channel), excl_queue(channel)
    channel.basic_publish("", q1, b"x", pika.BasicProperties(headers={"CC": [q2]}))
    sync(channel)
    assert channel.basic_get(q1, auto_ack=True)[2] == b"x"
    assert channel.basic_get(q2, auto_ack=True)[2] == b"x"


def test_cc_duplicate_target_delivered_once(channel, name):
    x = name("x")
    channel.exchange_declare(x, "direct", auto_delete=True)
    q = excl_queue(channel)
    channel.queue_bind(q, x, "a")
    channel.queue_bind(q, x, "b")
    channel.basic_publish(x, "a", b"once", pika.BasicProperties(headers={"CC": ["b"],
                                                                        "BCC": ["a"]}))
    sync(channel)
    assert [b for _, _, b in get_all(channel, q)] == [b"once"]
