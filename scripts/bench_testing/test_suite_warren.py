"""50 tests that each declare their own queue, publish and get one message: warren's
fixtures (a fresh vhost per test from the session broker)."""

import pika
import pytest


@pytest.mark.parametrize("n", range(50))
def test_queue_round_trip(amqp_url, n):
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(f"q{n}")
    ch.basic_publish("", f"q{n}", b"m")
    method, _, body = ch.basic_get(f"q{n}", auto_ack=True)
    assert body == b"m"
    conn.close()
