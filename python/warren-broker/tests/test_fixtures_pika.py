"""The plugin's fixtures through pika: isolation, the clock, the conveniences."""

import time

import pika
import pytest

from warren_broker import WarrenBroker


def connect(url: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(url))


def test_the_session_broker_is_ours_and_has_the_test_clock(warren_broker: WarrenBroker):
    assert warren_broker.port > 0 and warren_broker.http_port > 0
    assert warren_broker.amqp_url == f"amqp://guest:guest@127.0.0.1:{warren_broker.port}/%2F"
    assert warren_broker.http_url == f"http://127.0.0.1:{warren_broker.http_port}"
    overview = warren_broker.api("GET", "/api/overview")
    assert overview["product_name"] == "warren"
    assert overview["warren_test_clock"] is True
    assert warren_broker.clock()["enabled"] is True


def test_each_test_gets_its_own_empty_vhost(amqp_url: str, amqp_vhost: str, warren_broker):
    assert amqp_url.endswith("/" + amqp_vhost)
    vhost = warren_broker.api("GET", "/api/vhosts/" + amqp_vhost)
    assert vhost["name"] == amqp_vhost
    assert warren_broker.api("GET", "/api/queues/" + amqp_vhost) == []
    conn = connect(amqp_url)
    ch = conn.channel()
    ch.queue_declare("mine")
    ch.basic_publish("", "mine", b"hello")
    conn.close()
    warren_broker.wait_for_messages("mine", 1, vhost=amqp_vhost)


def test_the_vhost_of_the_previous_test_is_gone(warren_broker):
    names = [v["name"] for v in warren_broker.api("GET", "/api/vhosts")]
    assert [n for n in names if n.startswith("test-")] == []


def test_a_30_second_ttl_dead_letters_in_milliseconds(amqp_url, amqp_vhost, warren_broker):
    conn = connect(amqp_url)
    ch = conn.channel()
    ch.queue_declare("dead")
    ch.queue_declare(
        "work",
        arguments={
            "x-message-ttl": 30_000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "dead",
        },
    )
    ch.confirm_delivery()
    began = time.monotonic()
    warren_broker.freeze()
    try:
        ch.basic_publish("", "work", b"late")
        warren_broker.advance(seconds=29.9)
        assert ch.queue_declare("work", passive=True).method.message_count == 1
        warren_broker.advance(seconds=0.1)
        # Already moved when advance returned: no wait, no poll.
        assert ch.queue_declare("work", passive=True).method.message_count == 0
        [dead] = warren_broker.peek("dead", vhost=amqp_vhost)
        assert dead["payload"] == "late"
        assert dead["properties"]["headers"]["x-death"][0]["reason"] == "expired"
    finally:
        warren_broker.unfreeze()
    assert time.monotonic() - began < 2.0
    conn.close()


def test_x_expires_on_an_advance(amqp_url, warren_broker):
    conn = connect(amqp_url)
    ch = conn.channel()
    warren_broker.freeze()
    try:
        ch.queue_declare("temp", arguments={"x-expires": 60_000})
        warren_broker.advance(seconds=60)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            ch.queue_declare("temp", passive=True)
        assert e.value.reply_code == 404
    finally:
        warren_broker.unfreeze()
    conn.close()


def test_peek_leaves_messages_as_they_were(amqp_url, amqp_vhost, warren_broker):
    conn = connect(amqp_url)
    ch = conn.channel()
    ch.queue_declare("q")
    ch.confirm_delivery()
    for body in (b"a", b"b"):
        ch.basic_publish("", "q", body)
    seen = warren_broker.peek("q", count=10, vhost=amqp_vhost)
    assert [m["payload"] for m in seen] == ["a", "b"]
    assert warren_broker.peek("q", count=10, vhost=amqp_vhost) == seen
    method, _, body = ch.basic_get("q", auto_ack=True)
    assert body == b"a" and method.redelivered is False
    conn.close()


def test_wait_for_messages_times_out(amqp_url, amqp_vhost, warren_broker):
    conn = connect(amqp_url)
    conn.channel().queue_declare("empty")
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        warren_broker.wait_for_messages("empty", 1, timeout=0.05, vhost=amqp_vhost)
    assert time.monotonic() - began < 1.0
    conn.close()


def test_reset_vhost_empties_it(amqp_url, amqp_vhost, warren_broker):
    conn = connect(amqp_url)
    ch = conn.channel()
    ch.exchange_declare("x", "topic")
    ch.queue_declare("q")
    ch.queue_bind("q", "x", "k")
    conn.close()
    removed = warren_broker.reset_vhost(amqp_vhost)
    assert removed == {"queues": 1, "exchanges": 1, "bindings": 0, "policies": 0}
    assert warren_broker.api("GET", "/api/queues/" + amqp_vhost) == []


def test_vhost_create_and_delete_is_fast(warren_broker):
    """The amqp_vhost fixture's cost: goal under 5 ms for create + delete."""
    rounds = 50
    began = time.perf_counter()
    for i in range(rounds):
        warren_broker.create_vhost(f"speed-{i}")
        warren_broker.delete_vhost(f"speed-{i}")
    per = (time.perf_counter() - began) / rounds * 1000
    print(f"vhost create+delete: {per:.2f} ms")
    # Generous bound for a loaded machine; docs/testing.md has the measured figure.
    assert per < 50


def test_an_external_broker_is_used_as_given(warren_broker):
    other = WarrenBroker.external(port=warren_broker.port, http_port=warren_broker.http_port)
    assert other.amqp_url == warren_broker.amqp_url
    assert other.api("GET", "/api/whoami")["name"] == "guest"
    other.stop()  # does nothing to a broker it did not start
    assert warren_broker.api("GET", "/api/whoami")["name"] == "guest"
