"""pytest fixtures for a throwaway warren broker (registered through ``pytest11``).

- ``warren_broker`` (session): a :class:`~warren_broker.WarrenBroker` started on free
  ports with a temporary data directory and the test clock, stopped after the session.
- ``amqp_vhost`` (function): the name of a fresh vhost with full permissions, deleted
  after the test, so tests do not see each other's queues.
- ``amqp_url``: the AMQP URL of that vhost, for pika, aio-pika, kombu, FastStream...

Options: ``--warren-bin PATH`` (or ``WARREN_BIN``) picks the executable;
``--warren-port PORT`` (or ``WARREN_BROKER_PORT``) uses a broker already running on
127.0.0.1 (``--warren-host``/``WARREN_BROKER_HOST``) instead of starting one, with its
management API on ``--warren-http-port`` (``WARREN_BROKER_HTTP_PORT``, default 15672).
"""

from __future__ import annotations

import itertools
import os
import uuid

import pytest

from . import WarrenBroker

_counter = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("warren", "warren broker fixtures")
    group.addoption("--warren-bin", default=None, help="warren executable to start")
    group.addoption(
        "--warren-port", type=int, default=None,
        help="AMQP port of a running broker to use instead of starting warren",
    )
    group.addoption("--warren-host", default=None, help="host of that broker (127.0.0.1)")
    group.addoption(
        "--warren-http-port", type=int, default=None,
        help="management API port of that broker (15672)",
    )


def _setting(config: pytest.Config, option: str, env: str):
    value = config.getoption(option)
    if value is None:
        value = os.environ.get(env) or None
    return value


@pytest.fixture(scope="session")
def warren_broker(pytestconfig: pytest.Config):
    """The session's broker (see :class:`warren_broker.WarrenBroker`)."""
    port = _setting(pytestconfig, "warren_port", "WARREN_BROKER_PORT")
    if port is not None:
        broker = WarrenBroker.external(
            host=_setting(pytestconfig, "warren_host", "WARREN_BROKER_HOST") or "127.0.0.1",
            port=int(port),
            http_port=int(_setting(pytestconfig, "warren_http_port", "WARREN_BROKER_HTTP_PORT") or 15672),
        )
        yield broker
        broker.stop()
        return
    broker = WarrenBroker.start(warren_bin=_setting(pytestconfig, "warren_bin", "WARREN_BIN"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def amqp_vhost(warren_broker: WarrenBroker):
    """A fresh vhost (its name) with full permissions, deleted after the test."""
    name = f"test-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:8]}"
    warren_broker.create_vhost(name)
    try:
        yield name
    finally:
        warren_broker.delete_vhost(name)


@pytest.fixture
def amqp_url(warren_broker: WarrenBroker, amqp_vhost: str) -> str:
    """``amqp://guest:guest@127.0.0.1:PORT/VHOST`` for this test's own vhost."""
    return warren_broker.url_for(amqp_vhost)
