"""Connection level behaviour through pika.BlockingConnection."""

import pika
import pika.exceptions
import pytest

from conftest import close_info, connect, drain, params, safe_close

ACCESS_REFUSED_TEXT = ("ACCESS_REFUSED - Login was refused using authentication mechanism "
                       "PLAIN. For details see the broker logfile.")


def test_handshake_with_defaults(connection):
    assert connection.is_open
    ch = connection.channel()
    assert ch.is_open
    assert ch.channel_number == 1
    impl = connection._impl
    # what RabbitMQ proposes (pika's defaults accept the server's values)
    assert impl.params.channel_max == 2047
    assert impl.params.frame_max == 131072
    assert impl.params.heartbeat == 60


def test_server_properties(connection):
    props = connection._impl.server_properties
    assert isinstance(props["product"], (str, bytes)) and props["product"]
    assert isinstance(props["version"], (str, bytes)) and props["version"]
    caps = props["capabilities"]
    for cap in ("publisher_confirms", "exchange_exchange_bindings", "basic.nack",
                "consumer_cancel_notify", "connection.blocked", "authentication_failure_close",
                "per_consumer_qos", "direct_reply_to"):
        assert caps.get(cap) is True, cap
    assert connection._impl.publisher_confirms is True
    assert connection._impl.basic_nack is True
    assert connection._impl.consumer_cancel_notify is True
    assert connection._impl.exchange_exchange_bindings is True


@pytest.mark.parametrize("user,password", [("guest", "wrong"), ("nobody", "secret")])
def test_bad_credentials(user, password):
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as ei:
        connect(credentials=pika.PlainCredentials(user, password))
    # pika wraps the broker's connection.close (403) in a string argument
    assert ei.value.args == (
        "ConnectionClosedByBroker: (403) '%s'" % ACCESS_REFUSED_TEXT,)


def test_unknown_vhost():
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as ei:
        connect(virtual_host="nosuchvhost")
    assert ei.value.args == (
        "ConnectionClosedByBroker: (530) 'NOT_ALLOWED - vhost nosuchvhost not found'",)


@pytest.mark.parametrize("heartbeat", [0, 5])
def test_tune_negotiation(heartbeat):
    conn = connect(frame_max=8192, channel_max=10, heartbeat=heartbeat)
    try:
        impl = conn._impl
        assert impl.params.frame_max == 8192
        assert impl.params.channel_max == 10
        assert impl.params.heartbeat == heartbeat
        ch = conn.channel()
        q = ch.queue_declare("", exclusive=True).method.queue
        body = bytes(range(256)) * 100  # 25600 bytes: several 8 KiB body frames
        ch.basic_publish("", q, body)
        m, _, got = ch.basic_get(q, auto_ack=True)
        assert got == body
        assert m.message_count == 0
    finally:
        conn.close()


def test_channel_max_client_side_limit():
    conn = connect(channel_max=10)
    try:
        chans = [conn.channel() for _ in range(10)]
        assert sorted(c.channel_number for c in chans) == list(range(1, 11))
        with pytest.raises(pika.exceptions.NoFreeChannels):
            conn.channel()
        assert conn.is_open
    finally:
        conn.close()


def test_more_channels_than_channel_max_is_connection_error():
    conn = connect(channel_max=10)
    for _ in range(10):
        conn.channel()
    # bypass pika's own allocation limit by naming the channel number
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as ei:
        conn.channel(channel_number=11)
    assert close_info(ei.value) == (
        530,
        "NOT_ALLOWED - number of channels opened (10) has reached the negotiated channel_max (10)",
        0, 0)
    assert conn.is_closed


def test_channel_open_close_reopen_same_id(connection):
    ch = connection.channel(channel_number=7)
    assert ch.channel_number == 7
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.close()
    assert ch.is_closed
    ch2 = connection.channel(channel_number=7)
    assert ch2.channel_number == 7
    # exclusive queue survives channel close (it belongs to the connection)
    assert ch2.queue_declare(q, passive=True).method.queue == q


def test_many_channels(connection):
    chans = [connection.channel() for _ in range(200)]
    assert len({c.channel_number for c in chans}) == 200
    q = chans[0].queue_declare("", exclusive=True).method.queue
    for i, c in enumerate(chans):
        c.basic_publish("", q, str(i).encode())
    # per-channel ordering; all 200 arrive
    got = []
    for _ in range(200):
        m, _, b = chans[-1].basic_get(q, auto_ack=True)
        assert m is not None
        got.append(int(b))
    assert sorted(got) == list(range(200))
    for c in chans[::2]:
        c.close()
    assert all(c.is_open for c in chans[1::2])
    assert connection.channel().is_open


def test_channel_error_leaves_connection_usable(connection):
    ch = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        ch.queue_declare("warren-test-definitely-missing", passive=True)
    assert ch.is_closed
    assert connection.is_open
    ch2 = connection.channel()
    assert ch2.queue_declare("", exclusive=True).method.queue.startswith("amq.gen-")


def test_connection_close_from_client():
    conn = connect()
    ch = conn.channel()
    ch.queue_declare("", exclusive=True)
    conn.close()
    assert conn.is_closed
    assert ch.is_closed
    with pytest.raises(pika.exceptions.ConnectionWrongStateError):
        conn.channel()


def test_connection_close_drops_exclusive_queue(connection, make_connection, name):
    q = name("excl")
    other = make_connection()
    other.channel().queue_declare(q, exclusive=True)
    other.close()
    ch = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as ei:
        ch.queue_declare(q, passive=True)
    assert close_info(ei.value) == (404, "NOT_FOUND - no queue '%s' in vhost '/'" % q, 50, 10)


def test_heartbeat_connection_survives_idle_period():
    """With heartbeat=1 pika answers the broker's heartbeats; the connection
    must survive well beyond three heartbeat intervals of application idle."""
    conn = connect(heartbeat=1)
    try:
        conn.process_data_events(time_limit=3.5)
        assert conn.is_open
        assert conn.channel().is_open
    finally:
        conn.close()


def test_connection_params_url_form():
    """URLParameters (used by seed scripts) work the same way."""
    p = params()
    conn = pika.BlockingConnection(
        pika.URLParameters("amqp://guest:guest@%s:%d/%%2F" % (p.host, p.port)))
    try:
        assert conn.channel().is_open
    finally:
        conn.close()


def test_publisher_not_blocked_without_alarm(name):
    """pika announces the connection.blocked capability; with no resource alarm in
    effect (the shared broker runs with the default limits) publishing never brings
    connection.blocked. The blocked path needs a broker with an alarm in effect, which
    this suite cannot cause on the shared broker: tests/tests/alarm.rs covers it."""
    conn = connect()
    events = []
    conn.add_on_connection_blocked_callback(lambda _c, frame: events.append(frame))
    conn.add_on_connection_unblocked_callback(lambda _c, frame: events.append(frame))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        q = name("blocked")
        ch.queue_declare(q, exclusive=True)
        for i in range(20):
            ch.basic_publish("", q, b"m%d" % i)
        drain(conn, 0.3)
        assert events == []
        assert ch.queue_declare(q, passive=True).method.message_count == 20
    finally:
        safe_close(conn)
