"""Direct reply-to (amq.rabbitmq.reply-to)."""

import pika
import pika.exceptions
import pytest

from conftest import close_info, drain, sync, wait_until

CCBB = pika.exceptions.ChannelClosedByBroker
REPLY_TO = "amq.rabbitmq.reply-to"


def excl_queue(ch):
    return ch.queue_declare("", exclusive=True).method.queue


def assert_close(ei, code, text, class_id, method_id):
    assert close_info(ei.value) == (code, text, class_id, method_id)


def test_direct_reply_to_round_trip(connection, make_connection):
    server_conn = make_connection()
    server = server_conn.channel()
    rpc_q = excl_queue(server)

    client = connection.channel()
    replies = []
    tag = client.basic_consume(REPLY_TO, lambda ch, m, p, b: replies.append((m, p, b)),
                               auto_ack=True)
    client.basic_publish("", rpc_q, b"request",
                         pika.BasicProperties(reply_to=REPLY_TO, correlation_id="c-1"))
    sync(client)

    m, p, body = server.basic_get(rpc_q, auto_ack=True)
    assert body == b"request"
    assert p.correlation_id == "c-1"
    # the broker rewrites reply_to to a routable pseudo-queue name
    assert p.reply_to.startswith(REPLY_TO + ".")
    assert len(p.reply_to) > len(REPLY_TO) + 1

    server.basic_publish("", p.reply_to, b"response",
                         pika.BasicProperties(correlation_id=p.correlation_id))
    assert wait_until(connection, lambda: replies)
    rm, rp, rbody = replies[0]
    assert rbody == b"response"
    assert rp.correlation_id == "c-1"
    assert (rm.consumer_tag, rm.exchange, rm.routing_key, rm.redelivered) == \
        (tag, "", p.reply_to, False)


def test_multiple_requests_same_reply_address(connection):
    ch = connection.channel()
    rpc_q = excl_queue(ch)
    replies = []
    ch.basic_consume(REPLY_TO, lambda c, m, p, b: replies.append(b), auto_ack=True)
    for i in range(3):
        ch.basic_publish("", rpc_q, b"req%d" % i, pika.BasicProperties(reply_to=REPLY_TO))
    sync(ch)
    addrs = set()
    responder = connection.channel()
    for i in range(3):
        _, p, b = responder.basic_get(rpc_q, auto_ack=True)
        addrs.add(p.reply_to)
        responder.basic_publish("", p.reply_to, b"resp-" + b)
    assert len(addrs) == 1  # one address per consuming channel
    assert wait_until(connection, lambda: len(replies) == 3)
    assert replies == [b"resp-req0", b"resp-req1", b"resp-req2"]


def test_consume_reply_to_without_no_ack(connection):
    ch = connection.channel()
    with pytest.raises(CCBB) as ei:
        ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=False)
    assert_close(ei, 406, "PRECONDITION_FAILED - reply consumer cannot acknowledge", 60, 20)
    assert connection.is_open


def test_consume_reply_to_twice(connection):
    ch = connection.channel()
    ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    with pytest.raises(CCBB) as ei:
        ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    assert_close(ei, 406, "PRECONDITION_FAILED - reply consumer already set", 60, 20)


def test_publish_with_reply_to_without_consumer(connection):
    ch = connection.channel()
    q = excl_queue(ch)
    ch.basic_publish("", q, b"x", pika.BasicProperties(reply_to=REPLY_TO))
    with pytest.raises(CCBB) as ei:
        sync(ch)
    assert_close(ei, 406, "PRECONDITION_FAILED - fast reply consumer does not exist", 60, 40)
    assert connection.is_open


def test_publish_with_reply_to_after_cancel(connection):
    ch = connection.channel()
    q = excl_queue(ch)
    tag = ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    ch.basic_cancel(tag)
    ch.basic_publish("", q, b"x", pika.BasicProperties(reply_to=REPLY_TO))
    with pytest.raises(CCBB) as ei:
        sync(ch)
    assert_close(ei, 406, "PRECONDITION_FAILED - fast reply consumer does not exist", 60, 40)


def test_reply_to_consumer_is_per_channel(connection):
    ch1, ch2 = connection.channel(), connection.channel()
    q = excl_queue(ch1)
    ch1.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    ch2.basic_publish("", q, b"x", pika.BasicProperties(reply_to=REPLY_TO))
    with pytest.raises(CCBB) as ei:
        sync(ch2)
    assert_close(ei, 406, "PRECONDITION_FAILED - fast reply consumer does not exist", 60, 40)
    assert ch1.is_open


def test_declare_reply_to_pseudo_queue(channel):
    ok = channel.queue_declare(REPLY_TO, passive=True).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (REPLY_TO, 0, 1)


def test_basic_get_on_reply_to(channel):
    with pytest.raises(CCBB) as ei:
        channel.basic_get(REPLY_TO)
    assert_close(ei, 404, "NOT_FOUND - no queue 'amq.rabbitmq.reply-to' in vhost '/'", 60, 70)


@pytest.mark.parametrize("suffix", ["", ".garbage"])
def test_reply_to_unknown_address_is_unroutable(channel, suffix):
    returned = []
    channel.add_on_return_callback(lambda ch, m, p, b: returned.append(
        (m.reply_code, m.reply_text, m.exchange, m.routing_key, b)))
    channel.basic_publish("", REPLY_TO + suffix, b"stale", mandatory=True)
    assert wait_until(channel.connection, lambda: returned)
    assert returned == [(312, "NO_ROUTE", "", REPLY_TO + suffix, b"stale")]
    assert channel.is_open


def test_reply_after_requester_went_away_is_unroutable(connection, make_connection):
    requester_conn = make_connection()
    requester = requester_conn.channel()
    rpc_q = excl_queue(connection.channel())
    requester.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    requester.basic_publish("", rpc_q, b"req", pika.BasicProperties(reply_to=REPLY_TO))
    sync(requester)
    requester_conn.close()

    responder = connection.channel()
    _, p, _ = responder.basic_get(rpc_q, auto_ack=True)
    returned = []
    responder.add_on_return_callback(lambda ch, m, pp, b: returned.append((m.reply_code, b)))
    responder.basic_publish("", p.reply_to, b"late", mandatory=True)
    assert wait_until(connection, lambda: returned)
    assert returned == [(312, b"late")]
    # non-mandatory: silently dropped, channel fine
    responder.basic_publish("", p.reply_to, b"late2")
    sync(responder)
    drain(connection, 0.1)
    assert responder.is_open
