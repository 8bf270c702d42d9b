import pika
import pytest

try:  # Celery's own fixtures, when Celery is installed.
    import celery  # noqa: F401

    pytest_plugins = ("celery.contrib.pytest",)
except ImportError:
    pass


@pytest.fixture
def channel(amqp_url):
    """A pika channel on this test's own vhost."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    yield ch
    conn.close()


@pytest.fixture(scope="session")
def celery_config(warren_broker):
    # Celery's fixtures are session-scoped, so they use the default vhost of the
    # session broker rather than a per-test one.
    return {"broker_url": warren_broker.amqp_url, "result_backend": "rpc://"}
