"""What the Testcontainers measurements share: a container from $WARREN_BENCH_TC_IMAGE
(the RabbitMQ image built from Debian's rabbitmq-server, or warren:dev) through
testcontainers' RabbitMqContainer, and a vhost per test through the management API (the
same isolation as warren's amqp_vhost fixture)."""

import base64
import json
import os
import urllib.parse
import urllib.request

from testcontainers.community.rabbitmq import RabbitMqContainer

IMAGE = os.environ.get("WARREN_BENCH_TC_IMAGE", "warren-compare-rabbitmq:3.10")


def container():
    """Not started yet; the management port is exposed too, for the per-test vhosts."""
    return RabbitMqContainer(image=IMAGE).with_exposed_ports(15672)


def _http(c, method, path, body=None):
    url = f"http://{c.get_container_host_ip()}:{c.get_exposed_port(15672)}{path}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as res:
        res.read()


def create_vhost(c, name):
    v = urllib.parse.quote(name, safe="")
    _http(c, "PUT", f"/api/vhosts/{v}", {})
    _http(c, "PUT", f"/api/permissions/{v}/guest",
          {"configure": ".*", "write": ".*", "read": ".*"})


def delete_vhost(c, name):
    _http(c, "DELETE", f"/api/vhosts/{urllib.parse.quote(name, safe='')}")


def amqp_url(c, vhost):
    host, port = c.get_container_host_ip(), c.get_exposed_port(c.port)
    return f"amqp://guest:guest@{host}:{port}/{urllib.parse.quote(vhost, safe='')}"
