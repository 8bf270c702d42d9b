"""Expired messages are dead-lettered after a 30 s TTL: with warren's clock, and (when
WARREN_BENCH_REAL_TTL=1) the same test waiting in real time."""

import os
import time

import pika
import pytest


def declare(ch):
    ch.queue_declare("dead")
    ch.queue_declare("work", arguments={"x-message-ttl": 30_000, "x-dead-letter-exchange": "",
                                        "x-dead-letter-routing-key": "dead"})
    ch.confirm_delivery()
    ch.basic_publish("", "work", b"m")


def test_ttl_with_the_test_clock(amqp_url, amqp_vhost, warren_broker):
    ch = pika.BlockingConnection(pika.URLParameters(amqp_url)).channel()
    warren_broker.freeze()
    try:
        declare(ch)
        warren_broker.advance(seconds=30)
        assert ch.queue_declare("dead", passive=True).method.message_count == 1
    finally:
        warren_broker.unfreeze()


@pytest.mark.skipif(os.environ.get("WARREN_BENCH_REAL_TTL") != "1", reason="30 s of real time")
def test_ttl_in_real_time(amqp_url):
    ch = pika.BlockingConnection(pika.URLParameters(amqp_url)).channel()
    declare(ch)
    time.sleep(30)
    deadline = time.monotonic() + 5
    while ch.queue_declare("dead", passive=True).method.message_count != 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
