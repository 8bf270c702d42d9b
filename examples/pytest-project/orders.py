"""The code under test: a tiny order service publishing to RabbitMQ."""

import json

import pika

ORDERS = "orders"
EXPIRED = "orders.expired"


def declare(channel) -> None:
    """Orders not picked up within 30 s move to orders.expired."""
    channel.queue_declare(EXPIRED, durable=True)
    channel.queue_declare(
        ORDERS,
        durable=True,
        arguments={
            "x-message-ttl": 30_000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": EXPIRED,
        },
    )


def place_order(channel, order_id: int, item: str) -> None:
    channel.basic_publish(
        "",
        ORDERS,
        json.dumps({"id": order_id, "item": item}).encode(),
        pika.BasicProperties(content_type="application/json", delivery_mode=2),
    )
