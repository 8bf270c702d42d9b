"""warren's image as a drop-in for rabbitmq:3-management: a compose stack written for the
official image, with only the image changed, must work as it does there.

Run by tests/docker/run.sh (from `make test`), which makes sure an engine runs, builds the
base image when no registry can provide it, builds warren:dev from the host-built binary
and the app image. Figures (start until healthy, stop time) are printed with -s."""

import time

import pika
import pytest

from conftest import IMAGE, docker, host_port, inspect, run, wait_healthy

pytestmark = pytest.mark.timeout(600)


def amqp(port, user="guest", password="guest", vhost="/"):
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", port, vhost, pika.PlainCredentials(user, password),
        connection_attempts=30, retry_delay=0.5, socket_timeout=5))


def test_image_is_small_and_runs_as_rabbitmq():
    size = int(docker("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip())
    print(f"\nimage size: {size / 1e6:.1f} MB")
    assert size < 30_000_000, size
    cfg = docker("image", "inspect", "--format", "{{json .Config}}", IMAGE).stdout
    for port in ("5671/tcp", "5672/tcp", "15671/tcp", "15672/tcp", "15692/tcp"):
        assert port in cfg, cfg
    assert '"User":"rabbitmq"' in cfg, cfg
    assert '"/var/lib/rabbitmq":{}' in cfg, cfg


def test_compose_stack_env_credentials_healthcheck_app_and_tools(compose):
    c = compose("compose.yaml")
    t0 = time.monotonic()
    c("up", "-d", timeout=300)
    broker = c.container("rabbitmq")
    healthy = wait_healthy(broker)
    print(f"\nstart until healthy: {time.monotonic() - t0:.2f} s (health polled every 1 s)")
    # The app started after the healthcheck passed and reached the broker by name.
    app = c("ps", "-q", "-a", "app").stdout.strip()
    assert docker("wait", app, timeout=120).stdout.strip() == "0", docker("logs", app).stdout
    logs = docker("logs", app).stdout
    assert "RESULT got from the app container" in logs, logs
    # rabbitmqctl inside the container, as `docker exec` scripts call it.
    out = docker("exec", broker, "rabbitmqctl", "list_queues", "-q", "name", "messages").stdout
    assert "compose-app\t1" in out.splitlines(), out
    users = docker("exec", broker, "rabbitmqctl", "list_users").stdout
    assert "app\t[administrator]" in users, users
    assert "guest" not in users, users
    # The env user works from the host through the published port; guest does not exist.
    port = host_port(broker, 5672)
    amqp(port, "app", "app-secret").close()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", port, credentials=pika.PlainCredentials("guest", "guest")))
    assert healthy >= 0


def test_data_survives_recreation_with_another_hostname(compose):
    c = compose("compose.yaml")
    c("up", "-d", "rabbitmq", timeout=300)
    broker = c.container("rabbitmq")
    wait_healthy(broker)
    conn = amqp(host_port(broker, 5672), "app", "app-secret")
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("kept-q", durable=True)
    ch.basic_publish("", "kept-q", b"survives", pika.BasicProperties(delivery_mode=2))
    conn.close()
    # Containers removed, the named volume kept; the new one has another hostname.
    c("rm", "-s", "-f", "rabbitmq")
    c("up", "-d", "rabbitmq", env={"BROKER_HOSTNAME": "rabbit-two"}, timeout=300)
    broker2 = c.container("rabbitmq")
    assert broker2 != broker
    assert inspect(broker2, "{{.Config.Hostname}}") == "rabbit-two"
    wait_healthy(broker2)
    conn = amqp(host_port(broker2, 5672), "app", "app-secret")
    method, _props, body = conn.channel().basic_get("kept-q", auto_ack=True)
    assert body == b"survives"
    conn.close()


def test_guest_from_the_host_with_no_settings_and_graceful_stop(container):
    cid = container("-p", "127.0.0.1::5672", "-p", "127.0.0.1::15672", IMAGE)
    conn = amqp(host_port(cid, 5672))
    ch = conn.channel()
    ch.queue_declare("hello")
    ch.basic_publish("", "hello", b"hi")
    assert ch.basic_get("hello", auto_ack=True)[2] == b"hi"
    conn.close()
    t0 = time.monotonic()
    docker("stop", "-t", "30", cid, timeout=60)
    took = time.monotonic() - t0
    print(f"\ndocker stop: {took:.2f} s")
    assert inspect(cid, "{{.State.ExitCode}}") == "0"
    assert took < 10, took
    logs = docker("logs", cid).stdout + docker("logs", cid).stderr
    assert "Server startup complete" in logs, logs


def test_rabbitmq_conf_and_definitions_mounts(compose):
    c = compose("compose.conf.yaml")
    c("up", "-d", timeout=300)
    broker = c.container("rabbitmq")
    wait_healthy(broker)
    conn = amqp(host_port(broker, 5672), "ops", "ops-secret", vhost="orders")
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("orders", "order.created", b"o-1", mandatory=True)
    assert ch.basic_get("orders.created", auto_ack=True)[2] == b"o-1"
    conn.close()
    out = docker("exec", broker, "rabbitmqctl", "list_exchanges", "-p", "orders", "-q",
                 "name", "type").stdout
    assert "orders\ttopic" in out.splitlines(), out


def test_deprecated_variable_is_refused_as_by_the_official_image():
    res = docker("run", "--rm", "-e", "RABBITMQ_VM_MEMORY_HIGH_WATERMARK=0.5", IMAGE,
                 check=False, timeout=60)
    assert res.returncode != 0
    assert "RABBITMQ_VM_MEMORY_HIGH_WATERMARK" in res.stdout + res.stderr


def test_testcontainers_rabbitmq_module():
    from testcontainers.community.rabbitmq import RabbitMqContainer
    with RabbitMqContainer(image=IMAGE) as rabbit:
        conn = pika.BlockingConnection(rabbit.get_connection_params())
        ch = conn.channel()
        ch.queue_declare("tc")
        ch.basic_publish("", "tc", b"from testcontainers")
        assert ch.basic_get("tc", auto_ack=True)[2] == b"from testcontainers"
        conn.close()


def test_testcontainers_node_module():
    """@testcontainers/rabbitmq (Node) with image warren:dev: it waits for the log line
    "Server startup complete", then amqplib publishes and gets (tests/docker/node/tc.js)."""
    res = run("node", "node/tc.js", timeout=180, env={"WARREN_IMAGE": IMAGE})
    assert "RESULT ok" in res.stdout, res.stdout + res.stderr
