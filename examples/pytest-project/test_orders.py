import json

import orders


def test_an_order_is_queued(channel, warren_broker, amqp_vhost):
    orders.declare(channel)
    orders.place_order(channel, 1, "book")
    [message] = warren_broker.peek(orders.ORDERS, vhost=amqp_vhost)
    assert json.loads(message["payload"]) == {"id": 1, "item": "book"}


def test_queues_start_empty_in_every_test(channel):
    orders.declare(channel)
    assert channel.queue_declare(orders.ORDERS, passive=True).method.message_count == 0


def test_unclaimed_orders_expire_after_30_seconds(channel, warren_broker, amqp_vhost):
    orders.declare(channel)
    warren_broker.freeze()
    try:
        orders.place_order(channel, 2, "lamp")
        warren_broker.advance(seconds=29)
        assert channel.queue_declare(orders.EXPIRED, passive=True).method.message_count == 0
        warren_broker.advance(seconds=1)  # returns once the order has been dead-lettered
        [expired] = warren_broker.peek(orders.EXPIRED, vhost=amqp_vhost)
    finally:
        warren_broker.unfreeze()
    assert json.loads(expired["payload"])["id"] == 2
    assert expired["properties"]["headers"]["x-death"][0]["reason"] == "expired"
