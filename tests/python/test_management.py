"""Management HTTP API, Prometheus endpoint and AMQP permissions, checked against the
answers RabbitMQ 3.10.8 gave for the same state (tests/fixtures/management, recorded with
record.py and record_permissions.py there).

JSON shapes are compared by key sets and JSON types, never by volatile values (rates,
ports, timestamps). Keys RabbitMQ derives from its Erlang VM (garbage collection,
reductions, ...) or that warren does not track are listed in ERLANG_ONLY with the reason.

Runs against a broker at WARREN_AMQP_HOST/PORT with its management API on
WARREN_HTTP_PORT (default 15672) and metrics on WARREN_METRICS_PORT (default 15692). The
same file passes against RabbitMQ 3.10 (its management/prometheus plugin ports, with
WARREN_REFERENCE=rabbitmq, which only drops the checks of warren's own error wording).
"""

import base64
import json
import os
import pathlib
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pika
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import AMQP_HOST, AMQP_PORT, params

HTTP_PORT = int(os.environ.get("WARREN_HTTP_PORT", "15672"))
METRICS_PORT = int(os.environ.get("WARREN_METRICS_PORT", "15692"))
BASE = f"http://{AMQP_HOST}:{HTTP_PORT}"
ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "management"

# Keys of RabbitMQ's answers that warren leaves out, and why.
ERLANG_ONLY = {
    # Erlang process internals.
    "garbage_collection", "reductions", "reductions_details", "backing_queue_status",
    "erlang_version", "erlang_full_version", "pending_raft_commands",
    # Not tracked by warren (yet): consumer utilisation, idle timestamps, unacked byte
    # sizes, channel modes.
    "consumer_capacity", "consumer_utilisation", "idle_since", "message_bytes",
    "message_bytes_unacknowledged", "acks_uncommitted", "transactional",
    "global_prefetch_count", "messages_uncommitted", "messages_unconfirmed",
    "release_series_support_status",
    # Listener socket options and cowboy settings.
    "cowboy_opts", "protocol",
    # message_stats keys of disk I/O (warren has no disk store yet).
    "disk_reads", "disk_reads_details", "disk_writes", "disk_writes_details",
}
# Maps whose keys are data, not schema.
VALUE_MAPS = {"arguments", "client_properties", "definition", "effective_policy_definition",
              "cluster_state", "capabilities", "socket_opts", "limits"}


def fixture(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def api(method, path, body=None, user="guest", password="guest", headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req.add_header("Authorization", "Basic " + token)
    if data is not None:
        req.add_header("content-type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read().decode()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        try:
            return e.code, json.loads(text) if text else None
        except ValueError:
            return e.code, text


def q(s):
    return urllib.parse.quote(s, safe="")


REFERENCE = os.environ.get("WARREN_REFERENCE", "") == "rabbitmq"


def queue_info(name, until=lambda info: True, timeout=8.0):
    """GET a queue, waiting for RabbitMQ's stats (emitted every 5 s) to satisfy `until`;
    warren's are live, so there this returns at once."""
    deadline = time.time() + timeout
    while True:
        status, info = api("GET", f"/api/queues/%2F/{q(name)}")
        ok = status == 200 and "messages" in info and until(info)
        if ok or time.time() >= deadline:
            return info
        time.sleep(0.25)


def jtype(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if v is None:
        return "null"
    return type(v).__name__


def assert_shape(expected, actual, path="$", ignore=()):
    """Every key of RabbitMQ's answer (minus ERLANG_ONLY and `ignore`) is in warren's with the
    same type."""
    if expected is None or actual is None:
        return  # null stands for "nothing yet" on either side
    if isinstance(expected, dict) and path.rsplit(".", 1)[-1] in VALUE_MAPS:
        assert isinstance(actual, (dict, list)), f"{path}: {actual!r}"
        return
    assert jtype(expected) == jtype(actual) or (expected == [] and isinstance(actual, dict)) or (
        isinstance(expected, dict) and actual == []
    ), f"{path}: RabbitMQ has {jtype(expected)} {expected!r}, warren {jtype(actual)} {actual!r}"
    if isinstance(expected, dict) and isinstance(actual, dict):
        skip = ERLANG_ONLY | set(ignore)
        missing = sorted(k for k in expected if k not in actual and k not in skip)
        assert not missing, f"{path}: keys missing in warren's answer: {missing}"
        for k, v in expected.items():
            if k in actual and k not in skip:
                assert_shape(v, actual[k], f"{path}.{k}")
    elif isinstance(expected, list) and expected and actual:
        assert_shape(expected[0], actual[0], f"{path}[0]", ignore)


@pytest.fixture(scope="module")
def state():
    """The recorder's state under unique names: an exchange bound to a queue (and to a
    fanout exchange), 5 messages, one consumer with prefetch 1 holding one unacked."""
    tag = uuid.uuid4().hex[:8]
    names = {"x": f"x.direct-{tag}", "fan": f"x.fan-{tag}", "q": f"q1-{tag}"}
    assert api("PUT", f"/api/exchanges/%2F/{names['x']}", {"type": "direct", "durable": True})[0] == 201
    assert api("PUT", f"/api/queues/%2F/{names['q']}",
               {"durable": True, "arguments": {"x-max-length": 100}})[0] == 201
    assert api("POST", f"/api/bindings/%2F/e/{names['x']}/q/{names['q']}",
               {"routing_key": "k1", "arguments": {}})[0] == 201
    assert api("PUT", f"/api/exchanges/%2F/{names['fan']}", {"type": "fanout", "durable": False})[0] == 201
    assert api("POST", f"/api/bindings/%2F/e/{names['x']}/e/{names['fan']}", {"routing_key": "k2"})[0] == 201
    conn = pika.BlockingConnection(params(client_properties={"connection_name": "recorder"}))
    ch = conn.channel()
    for i in range(5):
        ch.basic_publish(names["x"], "k1", f"m{i}".encode())
    ch.basic_qos(prefetch_count=1)
    ch.basic_consume(names["q"], lambda c, m, p, b: None, consumer_tag="ctag-1")
    conn.process_data_events(time_limit=1)
    # RabbitMQ emits stats every 5 s; warren's are live, but wait the same for both.
    deadline = time.time() + 8
    while time.time() < deadline:
        _, body = api("GET", f"/api/queues/%2F/{names['q']}")
        if body.get("message_stats", {}).get("publish") == 5 and body.get("consumers") == 1:
            break
        conn.process_data_events(time_limit=0.5)
    names["conn"] = conn
    yield names
    try:
        conn.close()
    except Exception:
        pass
    api("DELETE", f"/api/queues/%2F/{names['q']}")
    api("DELETE", f"/api/exchanges/%2F/{names['fan']}")
    api("DELETE", f"/api/exchanges/%2F/{names['x']}")


def find(items, **kv):
    for it in items:
        if all(it.get(k) == v for k, v in kv.items()):
            return it
    raise AssertionError(f"no item with {kv} in {[i.get('name') for i in items]}")


# ---- shapes of GET answers ----------------------------------------------------------

def test_overview_whoami_vhosts_shapes(state):
    status, body = api("GET", "/api/overview")
    assert status == 200
    assert_shape(fixture("overview")["body"], body)
    assert body["object_totals"]["queues"] >= 1
    assert body["queue_totals"]["messages"] >= 5
    assert api("GET", "/api/whoami")[1] == fixture("whoami")["body"]
    status, vhosts = api("GET", "/api/vhosts")
    assert_shape(fixture("vhosts")["body"][0], find(vhosts, name="/"))
    assert_shape(fixture("vhost")["body"], api("GET", "/api/vhosts/%2F")[1])


def test_nodes_shape(state):
    status, nodes = api("GET", "/api/nodes")
    assert status == 200 and len(nodes) == 1
    expected = fixture("nodes")["body"][0]
    for key in ["name", "type", "running", "uptime", "mem_used", "mem_alarm", "disk_free_alarm",
                "fd_used", "fd_total", "sockets_used", "processors", "exchange_types",
                "auth_mechanisms", "partitions", "os_pid", "rates_mode", "contexts",
                "connection_created", "channel_created", "queue_declared", "net_ticktime"]:
        assert key in nodes[0], key
        assert jtype(nodes[0][key]) == jtype(expected[key]), key
    assert nodes[0]["running"] is True


def test_queue_shapes_and_counts(state):
    status, body = api("GET", f"/api/queues/%2F/{state['q']}")
    assert status == 200
    assert_shape(fixture("queue")["body"], body)
    assert body["messages"] == 5
    assert body["messages_ready"] == 4
    assert body["messages_unacknowledged"] == 1
    assert body["consumers"] == 1
    assert body["message_stats"]["publish"] == 5
    assert body["message_stats"]["deliver_get"] == 1
    assert body["arguments"] == {"x-max-length": 100}
    details = body["consumer_details"][0]
    assert details["consumer_tag"] == "ctag-1" and details["prefetch_count"] == 1
    for path, recorded in [("/api/queues", "queues"), ("/api/queues/%2F", "queues_vhost")]:
        deadline = time.time() + 8  # RabbitMQ's listings may lag its per-queue answer
        while True:
            item = find(api("GET", path)[1], name=state["q"])
            if "messages" in item or time.time() > deadline:
                break
            time.sleep(0.5)
        assert_shape(fixture(recorded)["body"][0], item)


def test_exchange_and_binding_shapes(state):
    deadline = time.time() + 8
    while True:  # RabbitMQ's exchange stats arrive with its 5 s emission
        _, x = api("GET", f"/api/exchanges/%2F/{state['x']}")
        if "message_stats" in x or time.time() > deadline:
            break
        time.sleep(0.5)
    assert_shape(fixture("exchange")["body"], x)
    assert x["type"] == "direct" and x["durable"] is True
    assert x["message_stats"]["publish_in"] == 5 and x["message_stats"]["publish_out"] == 5
    _, xs = api("GET", "/api/exchanges/%2F")
    assert_shape(fixture("exchanges_vhost")["body"][0], find(xs, name=""))
    assert {"", "amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"} <= {e["name"] for e in xs}
    _, src = api("GET", f"/api/exchanges/%2F/{state['x']}/bindings/source")
    assert_shape(fixture("exchange_bindings_source")["body"][0], src[0])
    assert sorted((b["destination"], b["routing_key"]) for b in src) == sorted(
        [(state["q"], "k1"), (state["fan"], "k2")])
    _, dst = api("GET", f"/api/exchanges/%2F/{state['fan']}/bindings/destination")
    assert [(b["source"], b["destination_type"]) for b in dst] == [(state["x"], "exchange")]
    _, qb = api("GET", f"/api/queues/%2F/{state['q']}/bindings")
    # The default exchange's implicit binding comes first, as in RabbitMQ.
    assert [(b["source"], b["routing_key"]) for b in qb] == [("", state["q"]), (state["x"], "k1")]
    assert_shape(fixture("queue_bindings")["body"][0], qb[0])
    _, eq = api("GET", f"/api/bindings/%2F/e/{state['x']}/q/{state['q']}")
    assert eq[0]["properties_key"] == fixture("bindings_e_q")["body"][0]["properties_key"] == "k1"
    _, all_b = api("GET", "/api/bindings/%2F")
    assert_shape(fixture("bindings_vhost")["body"][0], all_b[0])


def test_connection_channel_consumer_shapes(state):
    _, conns = api("GET", "/api/connections")
    mine = find(conns, user_provided_name="recorder")
    assert_shape(fixture("connections")["body"][0], mine)
    assert mine["client_properties"]["product"] == "Pika Python Client Library"
    assert mine["recv_oct"] > 0 and mine["send_oct"] > 0 and mine["recv_cnt"] > 0
    status, one = api("GET", "/api/connections/" + q(mine["name"]))
    assert status == 200
    assert_shape(fixture("connection")["body"], one)
    _, chans = api("GET", "/api/channels")
    ch = find(chans, name=mine["name"] + " (1)")
    assert_shape(fixture("channels")["body"][0], ch)
    assert ch["confirm"] is False and ch["transactional"] is False
    assert ch["message_stats"]["publish"] == 5
    assert ch["consumer_count"] == 1 and ch["messages_unacknowledged"] == 1
    _, in_vhost = api("GET", "/api/vhosts/%2F/connections")
    assert mine["name"] in {c["name"] for c in in_vhost}
    _, in_vhost = api("GET", "/api/vhosts/%2F/channels")
    assert ch["name"] in {c["name"] for c in in_vhost}
    _, of_conn = api("GET", "/api/connections/" + q(mine["name"]) + "/channels")
    assert [c["name"] for c in of_conn] == [ch["name"]]
    _, cons = api("GET", "/api/consumers")
    c = find(cons, consumer_tag="ctag-1")
    assert_shape(fixture("consumers")["body"][0], c)
    assert c["queue"] == {"name": state["q"], "vhost": "/"}


def test_users_permissions_shapes():
    _, users = api("GET", "/api/users")
    assert_shape(fixture("users")["body"][0], find(users, name="guest"))
    _, perms = api("GET", "/api/permissions")
    assert_shape(fixture("permissions")["body"][0], find(perms, user="guest"))
    assert api("GET", "/api/permissions/%2F/guest")[1] == {
        "user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}


def test_health_checks(state):
    assert api("GET", "/api/healthchecks/node") == (200, fixture("healthchecks_node")["body"])
    assert api("GET", "/api/health/checks/alarms") == (200, fixture("health_alarms")["body"])
    assert api("GET", f"/api/health/checks/port-listener/{AMQP_PORT}") == (
        200, {"status": "ok", "port": AMQP_PORT})
    status, body = api("GET", "/api/health/checks/port-listener/1")
    expected = fixture("health_port_listener_bad")
    assert status == expected["status"] == 503
    assert_shape(expected["body"], body)
    assert body["status"] == "failed" and body["reason"] == "No active listener"
    assert AMQP_PORT in body["ports"]
    assert api("GET", "/api/aliveness-test/%2F") == (200, fixture("aliveness")["body"])
    more = json.loads((FIXTURES / "health_more.json").read_text())
    for path, recorded in more.items():
        status, body = api("GET", path)
        if path == "/api/cluster-name":
            assert status == 200 and set(body) == {"name"}
        elif path.endswith("/bogus"):
            assert status == recorded["status"] == 503
            assert_shape(recorded["body"], body)
            assert {k: body[k] for k in ["status", "reason", "missing"]} == {
                k: recorded["body"][k] for k in ["status", "reason", "missing"]}
            assert "amqp" in body["protocols"] and "http" in body["protocols"]
        else:
            assert (status, body) == (recorded["status"], recorded["body"]), path


# ---- errors and tags ----------------------------------------------------------------

@pytest.fixture(scope="module")
def tagged_users():
    for u, tags in [("mgmt", "management"), ("mon", "monitoring"), ("pol", "policymaker"), ("plain", "")]:
        assert api("PUT", f"/api/users/{u}", {"password": u + "pw", "tags": tags})[0] in (201, 204)
        api("PUT", f"/api/permissions/%2F/{u}", {"configure": ".*", "write": ".*", "read": ".*"})
    yield


def expect(name, got):
    f = fixture(name)
    assert got == (f["status"], f["body"]), f"{name}: RabbitMQ {f['status']} {f['body']}, warren {got}"


def test_error_bodies_match_rabbitmq(tagged_users):
    expect("err_no_queue", api("GET", "/api/queues/%2F/nope-" + uuid.uuid4().hex))
    expect("err_no_vhost", api("GET", "/api/queues/nope-" + uuid.uuid4().hex))
    expect("err_bad_password", api("GET", "/api/overview", password="wrong"))
    expect("err_no_user", api("GET", "/api/overview", user="nobody", password="x"))
    expect("err_plain_user", api("GET", "/api/overview", user="plain", password="plainpw"))
    expect("mgmt_users", api("GET", "/api/users", user="mgmt", password="mgmtpw"))
    expect("mon_users", api("GET", "/api/users", user="mon", password="monpw"))
    expect("mgmt_put_vhost", api("PUT", "/api/vhosts/mgmtvh", user="mgmt", password="mgmtpw"))
    expect("delete_vhost_missing", api("DELETE", "/api/vhosts/nope-" + uuid.uuid4().hex))
    expect("put_exchange_bad_type", api("PUT", "/api/exchanges/%2F/xbad", {"type": "nope"}))
    assert api("GET", "/api/overview", user="mgmt", password="mgmtpw")[0] == 200
    assert api("GET", "/api/connections", user="mon", password="monpw")[0] == 200


def test_tags_allow_queue_and_policy_writes(tagged_users):
    name = "monq-" + uuid.uuid4().hex[:8]
    assert api("PUT", f"/api/queues/%2F/{name}", {"durable": False}, user="mon", password="monpw")[0] == 201
    assert api("DELETE", f"/api/queues/%2F/{name}")[0] == 204
    pol = "p-" + uuid.uuid4().hex[:8]
    body = {"pattern": "^nothing-matches-this", "definition": {"max-length": 10}, "apply-to": "queues"}
    assert api("PUT", f"/api/policies/%2F/{pol}", body, user="pol", password="polpw")[0] == 201
    status, got = api("GET", f"/api/policies/%2F/{pol}")
    assert status == 200
    expected = dict(fixture("policy")["body"], name=pol, pattern="^nothing-matches-this")
    assert got == expected
    assert api("PUT", f"/api/policies/%2F/{pol}", body, user="mgmt", password="mgmtpw")[0] == 401
    assert api("DELETE", f"/api/policies/%2F/{pol}")[0] == 204


def test_queue_put_get_purge_delete_publish():
    name = "q2-" + uuid.uuid4().hex[:8]
    assert api("PUT", f"/api/queues/%2F/{name}", {"durable": False, "auto_delete": False})[0] == 201
    assert api("PUT", f"/api/queues/%2F/{name}", {"durable": False, "auto_delete": False})[0] == 204
    status, body = api("PUT", f"/api/queues/%2F/{name}", {"durable": True})
    rabbit = fixture("err_put_queue_inequivalent")["body"]
    assert (status, body) == (400, {"error": rabbit["error"], "reason": rabbit["reason"].replace(
        "'q1'", f"'{name}'").replace("received 'false' but current is 'true'",
                                     "received 'true' but current is 'false'")})
    msg = {"properties": {}, "routing_key": name, "payload": "hello", "payload_encoding": "string"}
    expect("publish", api("POST", "/api/exchanges/%2F/amq.default/publish", msg))
    expect("publish_unrouted", api("POST", "/api/exchanges/%2F/amq.default/publish",
                                   dict(msg, routing_key="none-" + uuid.uuid4().hex)))
    status, got = api("POST", f"/api/queues/%2F/{name}/get",
                      {"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"})
    expected = fixture("queue_get")["body"]
    expected[0]["routing_key"] = name
    assert (status, got) == (200, expected)
    # ack_requeue_true put it back, now redelivered.
    _, again = api("POST", f"/api/queues/%2F/{name}/get",
                   {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"})
    assert again[0]["redelivered"] is True
    api("POST", "/api/exchanges/%2F/amq.default/publish", msg)
    expect("queue_purge", api("DELETE", f"/api/queues/%2F/{name}/contents"))
    assert queue_info(name, lambda i: i["messages"] == 0)["messages"] == 0
    expect("delete_queue", api("DELETE", f"/api/queues/%2F/{name}"))
    expect("delete_queue_missing", api("DELETE", f"/api/queues/%2F/{name}"))


def test_vhost_user_permission_lifecycle():
    vh = "vh-" + uuid.uuid4().hex[:8]
    user = "u-" + uuid.uuid4().hex[:8]
    assert api("PUT", f"/api/vhosts/{vh}")[0] == 201
    assert api("PUT", f"/api/vhosts/{vh}")[0] == 204
    assert api("PUT", f"/api/users/{user}", {"password": "secret", "tags": "management"})[0] == 201
    _, u = api("GET", f"/api/users/{user}")
    assert u["tags"] == ["management"] and u["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    # The hash is RabbitMQ's: base64(4-byte salt + sha256(salt + password)).
    import hashlib
    raw = base64.b64decode(u["password_hash"])
    assert hashlib.sha256(raw[:4] + b"secret").digest() == raw[4:]
    assert api("PUT", f"/api/permissions/{vh}/{user}", {"configure": "", "write": ".*", "read": ".*"})[0] == 201
    conn = pika.BlockingConnection(params(virtual_host=vh, credentials=pika.PlainCredentials(user, "secret")))
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("anything")
    assert e.value.reply_code == 403
    assert e.value.reply_text == (
        f"ACCESS_REFUSED - access to queue 'anything' in vhost '{vh}' refused for user '{user}'")
    conn.close()
    assert api("DELETE", f"/api/permissions/{vh}/{user}")[0] == 204
    assert api("DELETE", f"/api/users/{user}")[0] == 204
    assert api("DELETE", f"/api/vhosts/{vh}")[0] == 204
    assert api("GET", f"/api/vhosts/{vh}")[0] == 404


def test_close_connection_with_reason():
    conn = pika.BlockingConnection(params(client_properties={"connection_name": "to-close"}))
    conn.channel()
    deadline = time.time() + 10
    target = None
    while target is None and time.time() < deadline:
        _, conns = api("GET", "/api/connections")
        target = next((c for c in conns if c.get("user_provided_name") == "to-close"), None)
        if target is None:
            conn.process_data_events(time_limit=0.5)
    assert target is not None
    expect("close_connection", api("DELETE", "/api/connections/" + q(target["name"])))
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        conn.process_data_events(time_limit=3)
        conn.channel()
    recorded = (FIXTURES / "close_connection_amqp.txt").read_text().strip()
    assert f"({e.value.reply_code}) '{e.value.reply_text}'" in recorded


# ---- the seed documents' queue monitor ------------------------------------------------

def test_seed_queue_monitor_reads_counts_and_rates():
    """QueueMonitoring.check_queue_health from seed 002 reads these fields while a
    producer and a consumer are busy."""
    name = "monitored-" + uuid.uuid4().hex[:8]
    conn = pika.BlockingConnection(params())
    ch = conn.channel()
    ch.queue_declare(name)
    ch.basic_consume(name, lambda c, m, p, b: None, auto_ack=True)
    metrics = None
    deadline = time.time() + 15  # RabbitMQ's stats arrive every 5 s
    while time.time() < deadline:
        for _ in range(20):
            ch.basic_publish("", name, b"x")
        conn.process_data_events(time_limit=0.5)
        info = queue_info(name, timeout=0)
        if "messages" not in info or "consumers" not in info:
            continue
        metrics = {
            "message_count": info["messages"],
            "consumer_count": info["consumers"],
            "publish_rate": info.get("message_stats", {}).get("publish_details", {}).get("rate", 0),
            "consume_rate": info.get("message_stats", {}).get("deliver_get_details", {}).get("rate", 0),
        }
        # (RabbitMQ's consumer count and rates come from different stats emitters.)
        if metrics["publish_rate"] > 0 and metrics["consume_rate"] > 0 and metrics["consumer_count"] == 1:
            break
    assert metrics is not None
    assert metrics["consumer_count"] == 1
    assert isinstance(metrics["message_count"], int) and metrics["message_count"] >= 0
    assert metrics["publish_rate"] > 0
    assert metrics["consume_rate"] > 0
    conn.close()
    api("DELETE", f"/api/queues/%2F/{name}")


def test_queue_depth_rates():
    """messages_ready_details.rate follows the queue depth (up while it fills)."""
    name = "depth-" + uuid.uuid4().hex[:8]
    conn = pika.BlockingConnection(params())
    ch = conn.channel()
    ch.queue_declare(name)
    info = {}
    deadline = time.time() + 15
    while time.time() < deadline:
        for _ in range(10):
            ch.basic_publish("", name, b"x")
        conn.process_data_events(time_limit=0.5)
        info = queue_info(name, timeout=0)
        if info.get("messages_ready_details", {}).get("rate", 0) > 0:
            break
    assert info["messages_ready_details"]["rate"] > 0
    assert info["messages_details"]["rate"] > 0
    conn.close()
    api("DELETE", f"/api/queues/%2F/{name}")


# ---- Prometheus -----------------------------------------------------------------------

def scrape(path):
    with urllib.request.urlopen(f"http://{AMQP_HOST}:{METRICS_PORT}{path}", timeout=10) as r:
        assert r.status == 200
        return {f.name: f for f in text_string_to_metric_families(r.read().decode())}


def test_prometheus_metrics_parse_with_rabbitmq_names(state):
    families = scrape("/metrics")
    recorded = {f.name for f in text_string_to_metric_families(
        (FIXTURES / "prometheus_metrics.txt").read_text())}
    for name in ["rabbitmq_queue_messages_ready", "rabbitmq_queue_messages_unacked",
                 "rabbitmq_queue_messages", "rabbitmq_queue_consumers", "rabbitmq_connections",
                 "rabbitmq_channels", "rabbitmq_consumers", "rabbitmq_queues",
                 "rabbitmq_global_messages_received", "rabbitmq_global_messages_routed",
                 "rabbitmq_global_messages_delivered", "rabbitmq_global_messages_acknowledged",
                 "rabbitmq_connections_opened", "rabbitmq_queues_declared",
                 "rabbitmq_process_resident_memory_bytes", "rabbitmq_identity_info"]:
        assert name in recorded, f"{name} is not a RabbitMQ metric"
        assert name in families, f"{name} missing from warren's /metrics"
        assert families[name].type == [f for f in text_string_to_metric_families(
            (FIXTURES / "prometheus_metrics.txt").read_text()) if f.name == name][0].type, name
    ready = families["rabbitmq_queue_messages_ready"].samples[0].value
    assert ready >= 4
    assert families["rabbitmq_connections"].samples[0].value >= 1
    assert families["rabbitmq_global_messages_received"].samples[0].value >= 5


def test_prometheus_per_object_and_detailed(state):
    families = scrape("/metrics/per-object")
    samples = {s.labels.get("queue"): s.value for s in families["rabbitmq_queue_messages_ready"].samples}
    assert samples[state["q"]] == 4
    detailed = scrape("/metrics/detailed?vhost=%2F&family=queue_coarse_metrics")
    rows = {s.labels["queue"]: s.value for s in detailed["rabbitmq_detailed_queue_messages_ready"].samples}
    assert rows[state["q"]] == 4


# ---- AMQP permissions, every operation class -------------------------------------------

PERM_NAMES_Q = ["cq", "wq", "rq", "other"]
PERM_NAMES_X = ["cx", "wx", "rx", "otherx"]


@pytest.fixture(scope="module")
def limited():
    api("PUT", "/api/users/limited", {"password": "limitedpw", "tags": ""})
    api("PUT", "/api/permissions/%2F/limited", {"configure": "^c", "write": "^w", "read": "^r"})
    api("PUT", "/api/users/limited2", {"password": "limited2pw", "tags": ""})
    api("PUT", "/api/permissions/%2F/limited2", {"configure": "^c", "write": "^w", "read": "^c"})
    for n in PERM_NAMES_Q:
        api("PUT", f"/api/queues/%2F/{n}", {"durable": False})
    for n in PERM_NAMES_X:
        api("PUT", f"/api/exchanges/%2F/{n}", {"type": "direct"})
    yield
    for n in PERM_NAMES_Q + ["cnew", "cqa", "cqb", "cqc"]:
        api("DELETE", f"/api/queues/%2F/{n}")
    for n in PERM_NAMES_X + ["cxa", "cxb", "cxc"]:
        api("DELETE", f"/api/exchanges/%2F/{n}")
    api("DELETE", "/api/users/limited")
    api("DELETE", "/api/users/limited2")


OPERATIONS = {
    "queue.declare other": lambda ch: ch.queue_declare("other"),
    "queue.declare c-new": lambda ch: ch.queue_declare("cnew", auto_delete=True),
    "queue.declare passive other": lambda ch: ch.queue_declare("other", passive=True),
    "queue.declare server-named": lambda ch: ch.queue_declare(""),
    "exchange.declare other": lambda ch: ch.exchange_declare("otherx2"),
    "exchange.declare passive otherx": lambda ch: ch.exchange_declare("otherx", passive=True),
    "exchange.delete otherx": lambda ch: ch.exchange_delete("otherx"),
    "queue.delete other": lambda ch: ch.queue_delete("other"),
    "queue.purge other": lambda ch: ch.queue_purge("other"),
    "queue.purge rq": lambda ch: ch.queue_purge("rq"),
    "queue.bind other<-rx": lambda ch: ch.queue_bind("other", "rx", "k"),
    "queue.bind wq<-otherx": lambda ch: ch.queue_bind("wq", "otherx", "k"),
    "queue.bind wq<-rx": lambda ch: ch.queue_bind("wq", "rx", "k"),
    "queue.unbind other<-rx": lambda ch: ch.queue_unbind("other", "rx", "k"),
    "queue.unbind wq<-otherx": lambda ch: ch.queue_unbind("wq", "otherx", "k"),
    "exchange.bind wx<-otherx": lambda ch: ch.exchange_bind("wx", "otherx", "k"),
    "exchange.bind otherx<-rx": lambda ch: ch.exchange_bind("otherx", "rx", "k"),
    "exchange.unbind otherx<-rx": lambda ch: ch.exchange_unbind("otherx", "rx", "k"),
    "basic.publish otherx": lambda ch: ch.basic_publish("otherx", "k", b"x"),
    "basic.publish default": lambda ch: ch.basic_publish("", "other", b"x"),
    "basic.publish wx": lambda ch: ch.basic_publish("wx", "k", b"x"),
    "basic.consume other": lambda ch: ch.basic_consume("other", lambda *a: None),
    "basic.consume rq": lambda ch: ch.basic_consume("rq", lambda *a: None),
    "basic.get other": lambda ch: ch.basic_get("other"),
    "basic.get rq": lambda ch: ch.basic_get("rq"),
    # Alternate / dead-letter exchanges on creation: read on the new object, write on theirs.
    "exchange.declare cxa ae=wx (limited)":
        lambda ch: ch.exchange_declare("cxa", arguments={"alternate-exchange": "wx"}),
    "exchange.declare cxb ae=otherx":
        lambda ch: ch.exchange_declare("cxb", arguments={"alternate-exchange": "otherx"}),
    "exchange.declare cxc ae=wx":
        lambda ch: ch.exchange_declare("cxc", arguments={"alternate-exchange": "wx"}),
    "queue.declare cqa dlx=wx (limited)":
        lambda ch: ch.queue_declare("cqa", arguments={"x-dead-letter-exchange": "wx"}),
    "queue.declare cqb dlx=otherx":
        lambda ch: ch.queue_declare("cqb", arguments={"x-dead-letter-exchange": "otherx"}),
    "queue.declare cqc dlx=wx":
        lambda ch: ch.queue_declare("cqc", arguments={"x-dead-letter-exchange": "wx"}),
}
# Operations recorded as "limited2" (configure ^c, write ^w, read ^c); the rest as "limited".
AS_LIMITED2 = {"exchange.declare cxb ae=otherx", "exchange.declare cxc ae=wx",
               "queue.declare cqb dlx=otherx", "queue.declare cqc dlx=wx"}


@pytest.mark.parametrize("op", sorted(OPERATIONS))
def test_permission_enforced_like_rabbitmq(limited, op):
    recorded = json.loads((FIXTURES / "amqp_permissions.json").read_text())[op]
    who = ("limited2", "limited2pw") if op in AS_LIMITED2 else ("limited", "limitedpw")
    conn = pika.BlockingConnection(params(credentials=pika.PlainCredentials(*who)))
    ch = conn.channel()
    try:
        OPERATIONS[op](ch)
        conn.process_data_events(time_limit=0.3)
        ch.queue_declare("rq", passive=True)  # a round trip to see a late channel.close
        got = {"ok": True}
    except pika.exceptions.ChannelClosedByBroker as e:
        got = {"code": e.reply_code, "text": e.reply_text}
    except pika.exceptions.ChannelWrongStateError:
        e = ch._closing_reason
        got = {"code": e.reply_code, "text": e.reply_text}
    try:
        conn.close()
    except Exception:
        pass
    if op == "queue.declare server-named":
        assert got["code"] == 403
        before, after = re.split(r"amq\.gen-[A-Za-z0-9_-]{22}", recorded["text"])
        pattern = re.escape(before) + "amq\\.gen-[A-Za-z0-9_-]{22}" + re.escape(after)
        assert re.fullmatch(pattern, got["text"]), got
    else:
        assert got == recorded


def test_vhost_without_permission_is_refused(limited):
    api("PUT", "/api/users/novh", {"password": "novhpw", "tags": ""})
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as e:
        pika.BlockingConnection(params(credentials=pika.PlainCredentials("novh", "novhpw")))
    recorded = json.loads((FIXTURES / "amqp_permissions.json").read_text())["connection.open no permissions"]
    # RabbitMQ answered connection.open with 530 NOT_ALLOWED naming vhost and user.
    for text in [recorded["error"], repr(e.value)]:
        assert "(530)" in text and "NOT_ALLOWED - access to vhost" in text and "novh" in text, text
    api("DELETE", "/api/users/novh")


@pytest.fixture()
def mlimited():
    api("PUT", "/api/users/mlimited", {"password": "p", "tags": "management"})
    api("PUT", "/api/permissions/%2F/mlimited", {"configure": "^c", "write": "^w", "read": "^r"})
    api("PUT", "/api/queues/%2F/other2", {"durable": False})
    yield
    api("DELETE", "/api/queues/%2F/other2")
    api("DELETE", "/api/users/mlimited")


def test_api_operations_checked_against_permissions(mlimited):
    more = json.loads((FIXTURES / "more.json").read_text())
    name = "other-" + uuid.uuid4().hex[:8]

    def as_limited(method, path, body=None):
        return list(api(method, path, body, user="mlimited", password="p"))

    assert as_limited("PUT", f"/api/queues/%2F/{name}", {"durable": False}) == more["api put queue refused"]
    assert as_limited("DELETE", f"/api/queues/%2F/{name}") == more["api delete queue refused"]  # 404 first
    assert as_limited("POST", "/api/queues/%2F/other2/get",
                      {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}) == more["api get refused"]
    assert as_limited("POST", "/api/exchanges/%2F/amq.default/publish",
                      {"properties": {}, "routing_key": "x", "payload": "x",
                       "payload_encoding": "string"}) == more["api publish refused"]
    assert as_limited("DELETE", "/api/queues/%2F/other2/contents") == more["api purge refused"]
    vh = "novhperm-" + uuid.uuid4().hex[:8]
    api("PUT", f"/api/vhosts/{vh}")
    assert as_limited("PUT", f"/api/queues/{vh}/q", {}) == more["api queue in vhost without permission"]
    assert as_limited("GET", f"/api/queues/{vh}") == more["api list queues in vhost without permission"]
    api("DELETE", f"/api/vhosts/{vh}")


@pytest.mark.parametrize("what", ["user", "vhost"])
def test_deleting_user_or_vhost_closes_its_connections(what):
    more = json.loads((FIXTURES / "more.json").read_text())
    recorded = more[f"delete {what} with open connection"]
    tag = uuid.uuid4().hex[:8]
    vh, user = f"tmpvh-{tag}", f"tmpuser-{tag}"
    api("PUT", f"/api/vhosts/{vh}")
    api("PUT", f"/api/users/{user}", {"password": "p", "tags": ""})
    api("PUT", f"/api/permissions/{vh}/{user}", {"configure": ".*", "write": ".*", "read": ".*"})
    conn = pika.BlockingConnection(params(virtual_host=vh, credentials=pika.PlainCredentials(user, "p")))
    conn.channel()
    api("DELETE", f"/api/users/{user}" if what == "user" else f"/api/vhosts/{vh}")
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        for _ in range(30):
            conn.process_data_events(time_limit=0.1)
    assert e.value.reply_code == recorded["code"] == 320
    expected = recorded["text"].replace("tmpuser", user).replace("tmpvh", vh)
    if REFERENCE and what == "vhost":
        # RabbitMQ races its vhost supervisor here: "is deleted" (recorded) or "is down".
        assert e.value.reply_text in (expected, expected.replace("is deleted", "is down"))
    else:
        assert e.value.reply_text == expected
    api("DELETE", f"/api/users/{user}")
    api("DELETE", f"/api/vhosts/{vh}")


def test_pagination_sorting_and_filters_like_rabbitmq():
    more = json.loads((FIXTURES / "more.json").read_text())
    names = ["pg-a1", "pg-a2", "pg-a3", "pg-b1"]
    for n in names:
        api("PUT", f"/api/queues/%2F/{n}", {"durable": False})
    try:
        for key, path in [
            ("paged", "/api/queues/%2F?page=1&page_size=2&name=pg-a&use_regex=false"
                      "&sort=name&sort_reverse=true&columns=name"),
            ("paged regex", "/api/queues/%2F?page=2&page_size=2&name=%5Epg-&use_regex=true"
                            "&sort=name&columns=name"),
        ]:
            status, body = api("GET", path)
            rstatus, rbody = more[key]
            assert status == rstatus
            assert body["total_count"] >= body["filtered_count"]
            body.pop("total_count")
            rbody = dict(rbody)
            rbody.pop("total_count")
            assert body == rbody, key
        for key, path in [("paged bad page", "/api/queues?page=0"),
                          ("paged bad size", "/api/queues?page=1&page_size=600"),
                          ("paged out of range", "/api/queues/%2F?page=9&page_size=2&name=pg-")]:
            assert list(api("GET", path)) == more[key], key
    finally:
        for n in names:
            api("DELETE", f"/api/queues/%2F/{n}")


# ---- definitions -----------------------------------------------------------------------

def test_import_rabbitmq_310_definitions():
    """The file RabbitMQ 3.10 exported (fixture definitions.json) imports unchanged: its
    users log in with their original passwords (password hashes are compatible)."""
    doc = fixture("definitions")["body"]
    assert api("POST", "/api/definitions", doc)[0] in (200, 201, 204)
    # Hash compatibility: "mon" was created on RabbitMQ with password "monpw".
    conn = pika.BlockingConnection(params(credentials=pika.PlainCredentials("mon", "monpw")))
    conn.close()
    _, exported = api("GET", "/api/definitions")
    assert {"x.direct", "x.fan"} <= {x["name"] for x in exported["exchanges"] if x["vhost"] == "/"}
    q1 = find(exported["queues"], name="q1", vhost="/")
    assert q1["arguments"] == {"x-max-length": 100} and q1["durable"] is True
    assert {(b["source"], b["destination"], b["routing_key"]) for b in doc["bindings"]} <= {
        (b["source"], b["destination"], b["routing_key"]) for b in exported["bindings"]}
    assert "dev" in {v["name"] for v in exported["vhosts"]}
    assert_shape(doc["users"][0], exported["users"][0])
    assert_shape(doc["permissions"][0], exported["permissions"][0])
    for key in ["users", "vhosts", "permissions", "policies", "queues", "exchanges", "bindings",
                "rabbit_version", "rabbitmq_version", "parameters", "global_parameters",
                "topic_permissions", "product_name", "product_version"]:
        assert key in exported, key
    _, per_vhost = api("GET", "/api/definitions/%2F")
    assert set(fixture("definitions_vhost")["body"]) <= set(per_vhost)
    for q_ in ["q1", "aliveness-test"]:
        api("DELETE", f"/api/queues/%2F/{q_}")
    for x in ["x.fan", "x.direct"]:
        api("DELETE", f"/api/exchanges/%2F/{x}")


def test_bad_definitions_refused_whole_with_entry_named():
    vh = "never-" + uuid.uuid4().hex[:8]
    doc = {"vhosts": [{"name": vh}],
           "queues": [{"name": "q", "vhost": vh, "durable": True, "auto_delete": False, "arguments": {}}],
           "exchanges": [{"name": "bad-x", "vhost": vh, "type": "nope", "durable": True,
                          "auto_delete": False, "internal": False, "arguments": {}}]}
    status, body = api("POST", "/api/definitions", doc)
    assert status == 400
    if REFERENCE:
        return  # RabbitMQ's reason is an Erlang term that names neither entry nor section
    assert body["reason"] == (
        f"exchanges[0] (exchange 'bad-x' in vhost '{vh}'): unknown exchange type 'nope'")
    assert api("GET", f"/api/vhosts/{vh}")[0] == 404, "nothing of the bad file was applied"


# ---- policies applied -------------------------------------------------------------------

def test_alternate_exchange_policy_routes_unroutable(state):
    tag = uuid.uuid4().hex[:8]
    x, ae, q_ = f"pol-x-{tag}", f"pol-ae-{tag}", f"pol-q-{tag}"
    assert api("PUT", f"/api/exchanges/%2F/{x}", {"type": "direct", "durable": False})[0] == 201
    assert api("PUT", f"/api/exchanges/%2F/{ae}", {"type": "fanout", "durable": False})[0] == 201
    assert api("PUT", f"/api/queues/%2F/{q_}", {"durable": False})[0] == 201
    assert api("POST", f"/api/bindings/%2F/e/{ae}/q/{q_}", {"routing_key": ""})[0] == 201
    body = {"pattern": f"^{x}$", "definition": {"alternate-exchange": ae}, "apply-to": "exchanges"}
    assert api("PUT", f"/api/policies/%2F/ae-{tag}", body)[0] == 201
    _, xinfo = api("GET", f"/api/exchanges/%2F/{x}")
    assert xinfo.get("policy") == f"ae-{tag}"
    msg = {"properties": {}, "routing_key": "unbound", "payload": "p", "payload_encoding": "string"}
    assert api("POST", f"/api/exchanges/%2F/{x}/publish", msg)[1] == {"routed": True}
    assert queue_info(q_, lambda i: i["messages"] == 1)["messages"] == 1
    assert api("DELETE", f"/api/policies/%2F/ae-{tag}")[0] == 204
    for path in [f"/api/queues/%2F/{q_}", f"/api/exchanges/%2F/{x}", f"/api/exchanges/%2F/{ae}"]:
        api("DELETE", path)


def test_policy_validation_like_rabbitmq():
    cases = json.loads((FIXTURES / "policy_validation.json").read_text())
    name = "vt-" + uuid.uuid4().hex[:8]
    for case in cases:
        api("DELETE", f"/api/policies/%2F/{name}")
        got = api("PUT", f"/api/policies/%2F/{name}", case["request"])
        assert got == (case["status"], case["body"]), case["request"]
    api("DELETE", f"/api/policies/%2F/{name}")


def test_queue_policy_is_reported_as_effective():
    tag = uuid.uuid4().hex[:8]
    name = f"polq-{tag}"
    body = {"pattern": f"^polq-{tag}$", "definition": {"max-length": 7}, "apply-to": "queues", "priority": 3}
    assert api("PUT", f"/api/policies/%2F/len-{tag}", body)[0] == 201
    assert api("PUT", f"/api/queues/%2F/{name}", {"durable": False})[0] == 201
    deadline = time.time() + 6
    info = {}
    while time.time() < deadline:
        _, info = api("GET", f"/api/queues/%2F/{name}")
        if info.get("policy"):
            break
        time.sleep(0.5)
    assert info["policy"] == f"len-{tag}"
    assert info["effective_policy_definition"] == {"max-length": 7}
    api("DELETE", f"/api/queues/%2F/{name}")
    api("DELETE", f"/api/policies/%2F/len-{tag}")


# ---- warren ctl -------------------------------------------------------------------------

def warren_bin():
    return os.environ.get("WARREN_BIN", str(ROOT / "target" / "debug" / "warren"))


def ctl(*args):
    """Runs `warren ctl` (it speaks the management API, so it also drives RabbitMQ)."""
    out = subprocess.run([warren_bin(), "ctl", "--host", f"{AMQP_HOST}:{HTTP_PORT}", *args],
                         capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout, out.stderr


def test_ctl_lists_and_manages():
    tag = uuid.uuid4().hex[:8]
    name = f"ctlq-{tag}"
    conn = pika.BlockingConnection(params())
    ch = conn.channel()
    ch.queue_declare(name)
    ch.basic_publish("", name, b"1")
    ch.basic_publish("", name, b"2")
    conn.close()
    queue_info(name, lambda i: i["messages"] == 2)
    rc, out, err = ctl("--format", "json", "list_queues", "name", "messages")
    assert rc == 0, err
    rows = json.loads(out)
    assert {"name": name, "messages": 2} in rows
    rc, out, _ = ctl("-q", "list_queues", "name", "messages")
    assert rc == 0 and f"{name}\t2" in out.splitlines()
    assert out.splitlines()[0] == "name\tmessages"
    assert ctl("purge_queue", name)[0] == 0
    queue_info(name, lambda i: i["messages"] == 0)
    rc, out, _ = ctl("--format", "json", "list_queues", "name", "messages")
    assert {"name": name, "messages": 0} in json.loads(out)
    assert ctl("delete_queue", name)[0] == 0
    user, vh = f"ctlu-{tag}", f"ctlvh-{tag}"
    assert ctl("add_vhost", vh)[0] == 0
    assert ctl("add_user", user, "pw")[0] == 0
    assert ctl("add_user", user, "pw")[0] != 0  # already exists
    assert ctl("-p", vh, "set_permissions", user, ".*", ".*", ".*")[0] == 0
    pika.BlockingConnection(params(virtual_host=vh, credentials=pika.PlainCredentials(user, "pw"))).close()
    rc, out, _ = ctl("--format", "json", "-p", vh, "list_permissions")
    # The vhost's creator (guest) got full permissions there, as in RabbitMQ.
    assert sorted(json.loads(out), key=lambda p: p["user"]) == sorted([
        {"user": user, "configure": ".*", "write": ".*", "read": ".*"},
        {"user": "guest", "configure": ".*", "write": ".*", "read": ".*"}], key=lambda p: p["user"])
    assert ctl("delete_user", user)[0] == 0
    assert ctl("delete_vhost", vh)[0] == 0
    conn = pika.BlockingConnection(params())
    conn.channel()
    rc, out, _ = ctl("--format", "json", "list_channels", "name", "user")
    assert rc == 0 and any(r["user"] == "guest" for r in json.loads(out))
    rc, out, _ = ctl("--format", "json", "list_connections", "user", "vhost")
    assert {"user": "guest", "vhost": "/"} in json.loads(out)
    conn.close()
    rc, out, _ = ctl("--format", "json", "status")
    assert rc == 0 and "object_totals" in json.loads(out)
    assert ctl("await_startup", "--timeout", "5")[0] == 0


def test_ctl_definitions_round_trip(tmp_path):
    path = tmp_path / "defs.json"
    rc, _, err = ctl("export_definitions", str(path))
    assert rc == 0, err
    doc = json.loads(path.read_text())
    assert "queues" in doc and "users" in doc
    rc, _, err = ctl("import_definitions", str(path))
    assert rc == 0, err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"exchanges": [{"name": "x", "vhost": "/", "type": "nope"}]}))
    rc, _, err = ctl("import_definitions", str(bad))
    assert rc != 0
    if not REFERENCE:
        assert "unknown exchange type 'nope'" in err


# ---- RabbitMQ's own rabbitmqadmin against the API ----------------------------------------

TOOLS = pathlib.Path(__file__).resolve().parent / ".tools"


def rabbitmqadmin_path():
    """RabbitMQ's rabbitmqadmin: $RABBITMQADMIN, on PATH, or extracted from Debian's
    rabbitmq-server package (downloaded with apt-get, not installed)."""
    plugin_copy = "usr/lib/rabbitmq/lib/*/plugins/rabbitmq_management-*/priv/www/cli/rabbitmqadmin"
    extracted = next(TOOLS.glob(plugin_copy), None) if TOOLS.exists() else None
    for candidate in [os.environ.get("RABBITMQADMIN"), shutil.which("rabbitmqadmin"), extracted]:
        if candidate and os.path.exists(candidate):
            return str(candidate)
    TOOLS.mkdir(exist_ok=True)
    download = ["apt-get", "download", "rabbitmq-server"]
    if subprocess.run(download, cwd=TOOLS, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        subprocess.run(download, cwd=TOOLS, check=True, capture_output=True)
    deb = next(TOOLS.glob("rabbitmq-server_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(TOOLS)], check=True)
    # /usr/bin/rabbitmqadmin in the package is a link to the management plugin's copy.
    return str(next(TOOLS.glob(plugin_copy)))


def admin(*args):
    cmd = ["python3", rabbitmqadmin_path(), "-H", AMQP_HOST, "-P", str(HTTP_PORT),
           "-u", "guest", "-p", "guest", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout


def test_rabbitmqadmin_works_unchanged(tmp_path):
    tag = uuid.uuid4().hex[:8]
    q_, x = f"adm-q-{tag}", f"adm-x-{tag}"
    assert "queue declared" in admin("declare", "queue", f"name={q_}", "durable=false")
    assert "exchange declared" in admin("declare", "exchange", f"name={x}", "type=topic")
    assert "binding declared" in admin("declare", "binding", f"source={x}", f"destination={q_}",
                                       "routing_key=a.#")
    assert "Message published" in admin("publish", f"exchange={x}", "routing_key=a.b", "payload=hello")
    queue_info(q_, lambda i: i["messages"] == 1)
    rows = json.loads(admin("-f", "raw_json", "list", "queues", "name", "messages"))
    assert {"name": q_, "messages": 1} in rows
    got = json.loads(admin("-f", "raw_json", "get", f"queue={q_}", "ackmode=ack_requeue_false"))
    assert got[0]["payload"] == "hello" and got[0]["routing_key"] == "a.b"
    bindings = json.loads(admin("-f", "raw_json", "list", "bindings", "source", "destination", "routing_key"))
    assert {"source": x, "destination": q_, "routing_key": "a.#"} in bindings
    overview = json.loads(admin("-f", "raw_json", "show", "overview"))
    assert "rabbitmq_version" in overview[0]
    assert json.loads(admin("-f", "raw_json", "list", "nodes", "name", "type"))[0]["type"] == "disc"
    defs = tmp_path / "defs.json"
    admin("export", str(defs))
    assert q_ in {q["name"] for q in json.loads(defs.read_text())["queues"]}
    admin("import", str(defs))
    assert "queue deleted" in admin("delete", "queue", f"name={q_}")
    assert "exchange deleted" in admin("delete", "exchange", f"name={x}")


def test_queue_policies_apply_limits_ttl_and_dead_lettering(state):
    """max-length, message-ttl and dead-letter-exchange from a policy act on an existing
    queue and on new ones; removing the policy lifts them (RabbitMQ 3.10 behaviour)."""
    tag = uuid.uuid4().hex[:8]
    q1, q2, dlq = f"polq-a-{tag}", f"polq-b-{tag}", f"polq-dead-{tag}"
    conn = pika.BlockingConnection(params())
    ch = conn.channel()
    try:
        ch.queue_declare(q1)
        ch.queue_declare(dlq)
        body = {"pattern": f"^polq-[ab]-{tag}$", "apply-to": "queues",
                "definition": {"max-length": 2, "dead-letter-exchange": "",
                               "dead-letter-routing-key": dlq}}
        assert api("PUT", f"/api/policies/%2F/lim-{tag}", body)[0] == 201
        ch.queue_declare(q2)
        for q_ in (q1, q2):
            for i in range(5):
                ch.basic_publish("", q_, str(i).encode())
        for q_ in (q1, q2):
            assert queue_info(q_, lambda i: i["messages"] == 2)["messages"] == 2
            got = [ch.basic_get(q_, auto_ack=True)[2] for _ in range(2)]
            assert got == [b"3", b"4"]
        # The six dropped heads were dead-lettered with reason maxlen.
        info = queue_info(dlq, lambda i: i["messages"] == 6)
        assert info["messages"] == 6
        _m, props, _b = ch.basic_get(dlq, auto_ack=True)
        assert props.headers["x-death"][0]["reason"] == "maxlen"
        assert api("DELETE", f"/api/policies/%2F/lim-{tag}")[0] == 204
        for i in range(4):
            ch.basic_publish("", q1, str(i).encode())
        assert queue_info(q1, lambda i: i["messages"] == 4)["messages"] == 4
    finally:
        for q_ in (q1, q2, dlq):
            ch.queue_delete(q_)
        conn.close()
