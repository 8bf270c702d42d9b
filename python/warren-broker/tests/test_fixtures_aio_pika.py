"""The fixtures from asyncio code: aio-pika under pytest-asyncio."""

import aio_pika
import pytest


@pytest.mark.asyncio
async def test_aio_pika_round_trip(amqp_url):
    conn = await aio_pika.connect_robust(amqp_url)
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue("aio", auto_delete=False)
        await ch.default_exchange.publish(aio_pika.Message(b"hi"), routing_key="aio")
        msg = await q.get(timeout=5)
        async with msg.process():
            assert msg.body == b"hi"


@pytest.mark.asyncio
async def test_aio_pika_with_the_clock(amqp_url, amqp_vhost, warren_broker):
    conn = await aio_pika.connect(amqp_url)
    async with conn:
        ch = await conn.channel()
        dead = await ch.declare_queue("dead")
        await ch.declare_queue(
            "work",
            arguments={"x-message-ttl": 30_000, "x-dead-letter-exchange": "",
                       "x-dead-letter-routing-key": "dead"},
        )
        warren_broker.freeze()
        try:
            await ch.default_exchange.publish(aio_pika.Message(b"x"), routing_key="work")
            warren_broker.wait_for_messages("work", 1, vhost=amqp_vhost)
            warren_broker.advance(seconds=30)
            msg = await dead.get(timeout=5)
            await msg.ack()
            assert msg.headers["x-death"][0]["reason"] == "expired"
        finally:
            warren_broker.unfreeze()
