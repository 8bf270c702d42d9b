"""The same 50 tests on Testcontainers: one container per session (RabbitMqContainer
with $WARREN_BENCH_TC_IMAGE), a fresh vhost per test through the management API, as
warren's amqp_vhost fixture gives."""

import pika
import pytest

from tc_common import amqp_url as url_of, container, create_vhost, delete_vhost


@pytest.fixture(scope="session")
def broker():
    with container() as c:
        yield c


@pytest.fixture
def amqp_url(broker, request):
    vhost = f"t-{request.node.name}"
    create_vhost(broker, vhost)
    yield url_of(broker, vhost)
    delete_vhost(broker, vhost)


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
