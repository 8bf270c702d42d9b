"""The same 50 tests on pytest-rabbitmq's fixtures (rabbitmq-server started once per
session; its `rabbitmq` fixture connects and clears queues and exchanges after each
test)."""

import pytest


@pytest.mark.parametrize("n", range(50))
def test_queue_round_trip(rabbitmq, n):
    ch = rabbitmq.channel()
    ch.confirm_delivery()
    ch.queue_declare(f"q{n}")
    ch.basic_publish("", f"q{n}", b"m")
    method, _, body = ch.basic_get(f"q{n}", auto_ack=True)
    assert body == b"m"
