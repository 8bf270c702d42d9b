"""Wire-level behaviour, using raw TCP sockets (no pika).

Every expectation here was recorded from RabbitMQ 3.10.8.  Notes on what
RabbitMQ does after it sends connection.close:

* for most errors it waits for connection.close-ok and closes the socket as
  soon as it arrives (or after 30 s without it);
* for "fatal" frame errors (bad frame-end octet, frame larger than frame_max)
  it ignores everything that follows and closes the socket ~3 s after sending
  connection.close, whether or not close-ok was sent;
* for an unknown class/method id RabbitMQ sends nothing at all: the socket is
  simply closed immediately.
"""

import socket
import struct
import time

import pytest

from amqp_raw import (
    BASIC_CONSUME, BASIC_PUBLISH, BASIC_QOS, CHANNEL_CLOSE, CHANNEL_CLOSE_OK,
    CHANNEL_FLOW, CHANNEL_OPEN, EXCHANGE_DECLARE, QUEUE_DECLARE_OK, CHANNEL_OPEN_OK, CONNECTION_CLOSE, CONNECTION_CLOSE_OK,
    CONNECTION_OPEN, CONNECTION_START, FRAME_HEARTBEAT, FRAME_METHOD,
    PROTOCOL_HEADER, QUEUE_DECLARE, Closed, bits, body_frame,
    content_header_frame, decode_close, frame, heartbeat_frame, long_,
    method_frame, method_payload, short, shortstr, table,
)

# Generous bound for "the server closes the socket" after close/close-ok.
CLOSE_WINDOW = 6.0


def expect_connection_close(conn, code, text, class_id, method_id):
    """Read until connection.close; assert its fields; send close-ok and
    assert the socket is then closed by the server."""
    info = conn.wait_for_close()
    assert info is not None, "server closed the socket without connection.close"
    assert info.kind == "connection"
    assert info.channel == 0
    assert info.as_tuple() == (code, text, class_id, method_id)
    conn.send_close_ok()
    conn.read_all_until_eof(timeout=CLOSE_WINDOW)
    return info


def queue_declare_args(name, passive=False, durable=False, exclusive=False,
                       auto_delete=False):
    return (short(0) + shortstr(name)
            + bits(passive, durable, exclusive, auto_delete, False) + table({}))


def publish_args(exchange, routing_key, mandatory=False, immediate=False):
    return short(0) + shortstr(exchange) + shortstr(routing_key) + bits(mandatory, immediate)


# ---------------------------------------------------------------------------
# protocol header
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("header", [
    b"AMQP\x00\x00\x09\x00",          # 0-9 (not 0-9-1)
    b"AMQP\x01\x01\x00\x0a",          # 0-10
    b"AMQP\x00\x00\x08\x00",          # odd 0-8 style
    b"AMQP\x00\x00\x09\x02",          # 0-9-2
    b"amqp\x00\x00\x09\x01",          # lower case
    b"HTTP/1.1 200 OK\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
])
def test_bad_protocol_header_gets_supported_header_and_close(tcp, header):
    s = tcp()
    s.sendall(header)
    received = b""
    while True:
        try:
            chunk = s.recv(4096)
        except ConnectionResetError:  # unread input => RST after the reply
            break
        if not chunk:
            break
        received += chunk
    assert received == b"AMQP\x00\x00\x09\x01"


def test_good_header_receives_connection_start(tcp):
    s = tcp()
    s.sendall(PROTOCOL_HEADER)
    head = b""
    while len(head) < 7:
        chunk = s.recv(7 - len(head))
        assert chunk, "connection closed before connection.start"
        head += chunk
    ftype, channel, size = struct.unpack(">BHI", head)
    assert (ftype, channel) == (1, 0)
    payload = b""
    while len(payload) < size + 1:
        chunk = s.recv(size + 1 - len(payload))
        assert chunk
        payload += chunk
    assert payload[-1:] == b"\xce"
    class_id, method_id, major, minor = struct.unpack(">HHBB", payload[:6])
    assert (class_id, method_id, major, minor) == (10, 10, 0, 9)


def test_connection_start_fields(raw):
    c = raw()
    c.send_protocol_header()
    start = c.read_start()
    assert start["channel"] == 0
    assert (start["version_major"], start["version_minor"]) == (0, 9)
    assert b"PLAIN" in start["mechanisms"].split(b" ")
    assert b"en_US" in start["locales"].split(b" ")
    props = start["server_properties"]
    assert isinstance(props["product"], bytes) and props["product"]
    assert isinstance(props["version"], bytes) and props["version"]
    caps = props["capabilities"]
    for cap in ("publisher_confirms", "exchange_exchange_bindings", "basic.nack",
                "consumer_cancel_notify", "connection.blocked", "authentication_failure_close",
                "per_consumer_qos", "direct_reply_to"):
        assert caps.get(cap) is True, cap


def test_connection_tune_defaults(raw):
    c = raw()
    c.send_protocol_header()
    c.read_start()
    c.send_start_ok()
    tune = c.read_tune()
    # RabbitMQ 3.10 defaults
    assert tune == {"channel_max": 2047, "frame_max": 131072, "heartbeat": 60}


def test_full_handshake_and_client_close(raw):
    c = raw(open=True)
    c.open_channel(1)
    c.send_connection_close(200, "bye")
    fr = c.expect(CONNECTION_CLOSE_OK)
    assert fr.channel == 0
    assert fr.payload == method_payload(CONNECTION_CLOSE_OK)


def test_bad_password_raw_close_frame(raw):
    c = raw()
    c.send_protocol_header()
    c.read_start()
    # client advertises authentication_failure_close => explicit close frame
    c.send_start_ok("guest", "not-the-password")
    expect_connection_close(
        c, 403,
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
        "For details see the broker logfile.", 0, 0)


def test_unknown_vhost_raw_close_frame(raw):
    c = raw()
    c.send_protocol_header()
    c.read_start()
    c.send_start_ok()
    c.read_tune()
    c.send_tune_ok()
    c.send_open("nosuchvhost")
    expect_connection_close(c, 530, "NOT_ALLOWED - vhost nosuchvhost not found", 10, 40)


def test_open_before_start_ok_closes_socket_without_frame(raw):
    c = raw()
    c.send_protocol_header()
    c.read_start()
    c.send_method(0, CONNECTION_OPEN, shortstr("/") + shortstr("") + bits(False))
    # RabbitMQ closes silently (after a ~3 s anti-DoS delay)
    assert c.read_all_until_eof(timeout=CLOSE_WINDOW) == b""


# ---------------------------------------------------------------------------
# frame level errors
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("ftype", [9, 0x41])
def test_unknown_frame_type(raw, ftype):
    c = raw(open=True)
    c.send(frame(ftype, 0, b"abc"))
    expect_connection_close(
        c, 501, 'FRAME_ERROR - type %d, all octets = <<"abc">>: unknown_frame' % ftype, 0, 0)


def test_heartbeat_frame_with_payload_is_frame_error(raw):
    c = raw(open=True)
    c.send(frame(FRAME_HEARTBEAT, 0, b"xx"))
    expect_connection_close(
        c, 501, 'FRAME_ERROR - type 8, all octets = <<"xx">>: unknown_frame', 0, 0)


def test_heartbeat_frame_on_nonzero_channel(raw):
    c = raw(open=True)
    c.send(frame(FRAME_HEARTBEAT, 1, b""))
    expect_connection_close(c, 505, "UNEXPECTED_FRAME - type 8, all octets = <<>>", 0, 0)


def test_bad_frame_end_octet(raw):
    c = raw(open=True)
    c.send(frame(FRAME_METHOD, 1, method_payload(CHANNEL_OPEN, shortstr("")), end=b"\x00"))
    # payload of channel.open = 0,20,0,10,0 ; the server reports the payload
    expect_connection_close(
        c, 501,
        "FRAME_ERROR - type 1, all octets = <<0,20,0,10,0>>: {invalid_frame_end_marker,0}",
        0, 0)


def test_method_frame_payload_too_short(raw):
    c = raw(open=True)
    c.send(frame(FRAME_METHOD, 1, b"\x00"))
    expect_connection_close(c, 501, "FRAME_ERROR - type 1, all octets = <<0>>: unknown_frame", 0, 0)


def test_truncated_method_arguments(raw):
    c = raw(open=True)
    c.open_channel(1)
    c.send_method(1, QUEUE_DECLARE, short(0))
    expect_connection_close(c, 501, "FRAME_ERROR - cannot decode <<0,0>>", 50, 10)


def test_method_arguments_with_trailing_garbage(raw):
    c = raw(open=True)
    c.send_method(1, CHANNEL_OPEN, shortstr("") + b"garbage")
    expect_connection_close(
        c, 501, "FRAME_ERROR - cannot decode <<0,103,97,114,98,97,103,101>>", 20, 10)


def test_frame_larger_than_frame_max(raw):
    c = raw(open=True, frame_max=4096)
    c.open_channel(1)
    c.send(method_frame(1, BASIC_PUBLISH, publish_args("", "nowhere"))
           + content_header_frame(1, 5000) + frame(3, 1, b"x" * 5000))
    expect_connection_close(
        c, 501, "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,5000,4088}", 0, 0)


def test_frame_payload_limit_is_frame_max_minus_8_plus_fudge(raw):
    """RabbitMQ accepts frame payloads up to frame_max bytes (it allows an
    8 byte 'fudge' over frame_max - 8) and rejects frame_max + 1, reporting the
    limit as frame_max - 8."""
    c = raw(open=True, frame_max=4096)
    c.open_channel(1)
    c.queue_declare(1, "", exclusive=True)
    # a payload of exactly frame_max bytes is tolerated
    c.send(method_frame(1, BASIC_PUBLISH, publish_args("", "nowhere"))
           + content_header_frame(1, 4096) + frame(3, 1, b"x" * 4096))
    c.open_channel(2)  # round trip: connection still fine
    c.send(method_frame(1, BASIC_PUBLISH, publish_args("", "nowhere"))
           + content_header_frame(1, 4097) + frame(3, 1, b"x" * 4097))
    expect_connection_close(
        c, 501, "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,4097,4088}", 0, 0)


# ---------------------------------------------------------------------------
# channel-state errors
# ---------------------------------------------------------------------------

def test_method_on_never_opened_channel(raw):
    c = raw(open=True)
    c.send_method(5, QUEUE_DECLARE, queue_declare_args("x"))
    expect_connection_close(c, 504, "CHANNEL_ERROR - expected 'channel.open'", 50, 10)


def test_channel_close_on_never_opened_channel(raw):
    c = raw(open=True)
    c.send_method(5, CHANNEL_CLOSE, short(200) + shortstr("x") + short(0) + short(0))
    expect_connection_close(c, 504, "CHANNEL_ERROR - expected 'channel.open'", 20, 40)


def test_publish_on_never_opened_channel(raw):
    """The content is assembled first, so the error only comes once the whole
    publish (method + header + body) has arrived."""
    c = raw(open=True)
    c.send(method_frame(5, BASIC_PUBLISH, publish_args("", "x"))
           + content_header_frame(5, 3) + body_frame(5, b"abc"))
    expect_connection_close(c, 504, "CHANNEL_ERROR - expected 'channel.open'", 60, 40)


def test_second_channel_open(raw):
    c = raw(open=True)
    c.open_channel(1)
    c.send_method(1, CHANNEL_OPEN, shortstr(""))
    expect_connection_close(c, 504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10)


def test_channel_method_on_channel_zero(raw):
    c = raw(open=True)
    c.send_method(0, BASIC_QOS, long_(0) + short(1) + bits(False))
    expect_connection_close(
        c, 504, "CHANNEL_ERROR - unexpected method in connection state running", 60, 10)


def test_channel_open_on_channel_zero(raw):
    c = raw(open=True)
    c.send_method(0, CHANNEL_OPEN, shortstr(""))
    expect_connection_close(
        c, 504, "CHANNEL_ERROR - unexpected method in connection state running", 20, 10)


def test_second_connection_open(raw):
    c = raw(open=True)
    c.send_method(0, CONNECTION_OPEN, shortstr("/") + shortstr("") + bits(False))
    expect_connection_close(
        c, 504, "CHANNEL_ERROR - unexpected method in connection state running", 10, 40)


def test_unsolicited_channel_close_ok(raw):
    c = raw(open=True)
    c.open_channel(1)
    c.send_method(1, CHANNEL_CLOSE_OK)
    expect_connection_close(c, 503, "COMMAND_INVALID - unimplemented method", 20, 41)


def test_content_header_without_publish(raw):
    c = raw(open=True)
    c.open_channel(1)
    c.send(content_header_frame(1, 5))
    expect_connection_close(
        c, 505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead", 0, 0)


def test_body_without_publish(raw):
    c = raw(open=True)
    c.open_channel(1)
    c.send(body_frame(1, b"hello"))
    expect_connection_close(
        c, 505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead", 0, 0)


def test_content_header_on_channel_zero(raw):
    c = raw(open=True)
    c.send(content_header_frame(0, 5))
    expect_connection_close(
        c, 505,
        "UNEXPECTED_FRAME - type 2, all octets = <<0,60,0,0,0,0,0,0,0,0,0,5,0,0>>", 0, 0)


def test_body_on_channel_zero(raw):
    c = raw(open=True)
    c.send(body_frame(0, b"abc"))
    expect_connection_close(c, 505, 'UNEXPECTED_FRAME - type 3, all octets = <<"abc">>', 0, 0)


def test_method_instead_of_content_header(raw):
    c = raw(open=True)
    c.open_channel(1)
    c.send(method_frame(1, BASIC_PUBLISH, publish_args("", "x"))
           + method_frame(1, QUEUE_DECLARE, queue_declare_args("x")))
    expect_connection_close(
        c, 505,
        "UNEXPECTED_FRAME - expected content header for class 60, "
        "got non content header frame instead", 60, 40)


def test_content_header_with_wrong_class(raw):
    c = raw(open=True)
    c.open_channel(1)
    c.send(method_frame(1, BASIC_PUBLISH, publish_args("", "x"))
           + content_header_frame(1, 5, class_id=50))
    expect_connection_close(
        c, 505,
        "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead",
        60, 40)


@pytest.mark.parametrize("class_method", [(99, 1), (60, 99), (10, 99)])
def test_unknown_class_or_method_closes_socket_silently(raw, class_method):
    """RabbitMQ 3.10 crashes the connection's reader on an unknown
    class/method id: no connection.close is sent, the socket just closes."""
    c = raw(open=True)
    c.open_channel(1)
    ch = 0 if class_method[0] == 10 else 1
    c.send_method(ch, class_method)
    assert c.read_all_until_eof(timeout=CLOSE_WINDOW) == b""


def test_methods_after_channel_close_are_ignored(raw):
    """After the client sent channel.close, further methods on that channel
    (before close-ok) are discarded; the connection stays usable."""
    c = raw(open=True)
    c.open_channel(1)
    c.send(method_frame(1, CHANNEL_CLOSE, short(200) + shortstr("") + short(0) + short(0))
           + method_frame(1, QUEUE_DECLARE, queue_declare_args("x", passive=True)))
    fr = c.expect(CHANNEL_CLOSE_OK)
    assert fr.channel == 1
    # the passive declare of a missing queue was dropped: no error follows
    c.open_channel(1)
    c.queue_declare(1, "", exclusive=True)


def test_channel_error_then_reopen_same_channel_raw(raw):
    c = raw(open=True)
    c.open_channel(3)
    c.send_method(3, QUEUE_DECLARE, queue_declare_args("warren-no-such-queue-raw", passive=True))
    info = c.wait_for_close()
    assert info.kind == "channel" and info.channel == 3
    assert info.as_tuple() == (
        404, "NOT_FOUND - no queue 'warren-no-such-queue-raw' in vhost '/'", 50, 10)
    c.send_method(3, CHANNEL_CLOSE_OK)
    c.open_channel(3)
    fr = c.queue_declare(3, "", exclusive=True)
    assert fr.args().shortstr().startswith("amq.gen-")


def test_connection_close_on_nonzero_channel(raw):
    c = raw(open=True)
    c.open_channel(1)
    c.send_method(1, CONNECTION_CLOSE, short(200) + shortstr("x") + short(0) + short(0))
    expect_connection_close(c, 503, "COMMAND_INVALID - unimplemented method", 10, 50)


def test_channel_flow_active_true(raw):
    c = raw(open=True)
    c.open_channel(1)
    c.send_method(1, CHANNEL_FLOW, bits(True))
    fr = c.expect((20, 21))
    assert fr.args().octet() == 1


def test_channel_flow_active_false_not_implemented(raw):
    c = raw(open=True)
    c.open_channel(1)
    c.send_method(1, CHANNEL_FLOW, bits(False))
    expect_connection_close(c, 540, "NOT_IMPLEMENTED - active=false", 20, 20)


def test_nowait_declares_send_no_reply(raw):
    qname = "warren-test-nowait-%d" % int(time.monotonic() * 1e6)
    xname = qname + "-x"
    c = raw(open=True)
    c.open_channel(1)
    # exchange.declare(auto_delete, nowait) and queue.declare(exclusive, nowait)
    c.send_method(1, EXCHANGE_DECLARE, short(0) + shortstr(xname) + shortstr("fanout")
                  + bits(False, False, True, False, True) + table({}))
    c.send_method(1, QUEUE_DECLARE, short(0) + shortstr(qname)
                  + bits(False, False, True, False, True) + table({}))
    # the next synchronous reply is for this passive declare: nothing in between
    c.send_method(1, QUEUE_DECLARE, queue_declare_args(qname, passive=True))
    fr = c.read_method()
    assert fr.class_method == QUEUE_DECLARE_OK
    d = fr.args()
    assert (d.shortstr(), d.long(), d.long()) == (qname, 0, 0)
    # a nowait declare that fails still closes the channel
    c.send_method(1, EXCHANGE_DECLARE, short(0) + shortstr(xname) + shortstr("direct")
                  + bits(False, False, True, False, True) + table({}))
    info = c.wait_for_close()
    assert info.kind == "channel"
    assert info.as_tuple() == (
        406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '%s' in vhost '/': "
        "received 'direct' but current is 'fanout'" % xname, 40, 10)
    c.send_method(1, CHANNEL_CLOSE_OK)
    c.open_channel(1)
    c.send_method(1, (40, 20), short(0) + shortstr(xname) + bits(False, False))
    c.expect((40, 21))


# ---------------------------------------------------------------------------
# channel_max enforcement
# ---------------------------------------------------------------------------

def test_channel_max_counts_open_channels_not_numbers(raw):
    """channel_max limits the number of simultaneously open channels;
    RabbitMQ 3.10 does not reject a channel *number* above channel_max."""
    c = raw(open=True, channel_max=10)
    assert c.open_channel(11).channel == 11
    assert c.open_channel(65535).channel == 65535


def test_more_channels_than_channel_max(raw):
    c = raw(open=True, channel_max=10)
    for i in range(1, 11):
        c.open_channel(i)
    c.send_method(11, CHANNEL_OPEN, shortstr(""))
    expect_connection_close(
        c, 530,
        "NOT_ALLOWED - number of channels opened (10) has reached the negotiated channel_max (10)",
        0, 0)


def test_invalid_tune_ok_closes_socket(raw):
    """Out-of-range tune-ok values: RabbitMQ closes the socket without a
    connection.close frame (after a ~3 s anti-DoS delay).  All cases run
    concurrently to keep the suite fast."""
    cases = {
        "channel_max=0": dict(channel_max=0),        # 0 = no limit, above 2047
        "channel_max=3000": dict(channel_max=3000),  # above the server's 2047
        "frame_max=4095": dict(frame_max=4095),      # below the 4096 minimum
        "frame_max=0": dict(frame_max=0),            # 0 = no limit
        "frame_max=200000": dict(frame_max=200000),  # above the server's 131072
    }
    conns = {}
    for label, tune in cases.items():
        c = raw()
        c.send_protocol_header()
        c.read_start()
        c.send_start_ok()
        c.read_tune()
        values = dict(channel_max=2047, frame_max=131072, heartbeat=0)
        values.update(tune)
        c.send_tune_ok(**values)
        c.send_open("/")
        conns[label] = c
    result = {label: c.read_all_until_eof(timeout=CLOSE_WINDOW) for label, c in conns.items()}
    assert result == {label: b"" for label in cases}


def test_large_heartbeat_in_tune_ok_is_accepted(raw):
    c = raw(open=True, heartbeat=1000)
    assert c.open_channel(1).channel == 1


# ---------------------------------------------------------------------------
# server-assigned names over the wire
# ---------------------------------------------------------------------------

def test_server_generated_consumer_tag(raw):
    c = raw(open=True)
    c.open_channel(1)
    qname = c.queue_declare(1, "", exclusive=True).args().shortstr()
    c.send_method(1, BASIC_CONSUME,
                  short(0) + shortstr(qname) + shortstr("") + bits(False, False, False, False)
                  + table({}))
    tag = c.expect((60, 21)).args().shortstr()
    assert tag.startswith("amq.ctag-")
    assert len(tag) == len("amq.ctag-") + 22


def test_duplicate_consumer_tag_is_connection_error(raw):
    """pika refuses duplicate tags client side, so this is checked raw."""
    c = raw(open=True)
    c.open_channel(1)
    qname = c.queue_declare(1, "", exclusive=True).args().shortstr()
    args = (short(0) + shortstr(qname) + shortstr("tag1") + bits(False, False, False, False)
            + table({}))
    c.send_method(1, BASIC_CONSUME, args)
    assert c.expect((60, 21)).args().shortstr() == "tag1"
    c.send_method(1, BASIC_CONSUME, args)
    expect_connection_close(c, 530, "NOT_ALLOWED - attempt to reuse consumer tag 'tag1'", 60, 20)


# ---------------------------------------------------------------------------
# heartbeats
# ---------------------------------------------------------------------------

def test_server_sends_heartbeats_and_drops_silent_client(raw):
    c = raw(open=True, heartbeat=1, timeout=10)
    t0 = time.monotonic()
    heartbeats = []
    with pytest.raises(Closed):
        while True:
            fr = c.read_frame(timeout=10)
            assert fr.type == FRAME_HEARTBEAT, fr  # nothing but heartbeats
            assert (fr.channel, fr.payload) == (0, b"")
            heartbeats.append(time.monotonic() - t0)
    elapsed = time.monotonic() - t0
    # RabbitMQ: heartbeats every interval/2 (0.5 s); the silent client is
    # dropped after ~3 s (no connection.close is sent).
    assert len(heartbeats) >= 2
    assert heartbeats[0] < 1.5
    assert 1.5 <= elapsed <= 6.0, elapsed


def test_client_heartbeats_keep_connection_alive(raw):
    c = raw(open=True, heartbeat=1)
    deadline = time.monotonic() + 4.0
    received = 0
    while time.monotonic() < deadline:
        try:
            fr = c.read_frame(timeout=0.3)
            assert fr.type == FRAME_HEARTBEAT
            received += 1
        except socket.timeout:
            pass
        c.send(heartbeat_frame())
    assert received >= 2
    # still alive after more than 3 heartbeat intervals
    assert c.open_channel(1).channel == 1


def test_heartbeat_zero_means_no_heartbeats(raw):
    c = raw(open=True, heartbeat=0)
    with pytest.raises(socket.timeout):
        c.read_frame(timeout=1.5)
    assert c.open_channel(1).channel == 1


# ---------------------------------------------------------------------------
# AMQPLAIN (pika and the Java client use PLAIN, so it is checked raw)
# ---------------------------------------------------------------------------

def _amqplain_start_ok(c, user, password):
    from amqp_raw import CONNECTION_START_OK, longstr
    # AMQPLAIN's response is a field table without its length prefix.
    response = table({"LOGIN": user, "PASSWORD": password})[4:]
    props = {"capabilities": {"authentication_failure_close": True}}
    c.send_method(0, CONNECTION_START_OK,
                  table(props) + shortstr("AMQPLAIN") + longstr(response) + shortstr("en_US"))


def test_amqplain_login(raw):
    from amqp_raw import CONNECTION_OPEN_OK
    c = raw()
    c.send_protocol_header()
    start = c.read_start()
    assert b"AMQPLAIN" in start["mechanisms"].split(b" ")
    _amqplain_start_ok(c, "guest", "guest")
    assert c.read_tune()["channel_max"] == 2047
    c.send_tune_ok()
    c.send_open("/")
    c.expect(CONNECTION_OPEN_OK)
    assert c.open_channel(1).channel == 1


def test_amqplain_bad_password(raw):
    c = raw()
    c.send_protocol_header()
    c.read_start()
    _amqplain_start_ok(c, "guest", "wrong")
    expect_connection_close(
        c, 403,
        "ACCESS_REFUSED - Login was refused using authentication mechanism AMQPLAIN. "
        "For details see the broker logfile.", 0, 0)
