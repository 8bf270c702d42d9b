import aio_pika
import pytest


@pytest.mark.asyncio
async def test_publish_and_consume(amqp_url):
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("greetings")
        await channel.default_exchange.publish(
            aio_pika.Message(b"hello"), routing_key="greetings"
        )
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    assert message.body == b"hello"
                break
