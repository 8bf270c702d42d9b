#!/usr/bin/env python3
"""Records real client traffic into the fuzz seed corpora (crates/warren-fuzz/corpus).

Starts a warren binary on free ports with a recording TCP proxy in front of its AMQP
and HTTP listeners, runs pika scenarios (one connection each) and a few management API
requests through it, and writes what the clients sent:

  corpus/connection/<scenario>   a whole client->server AMQP session
  corpus/frame/<scenario>        the same stream (the frame target splits it)
  corpus/method/<n>              each distinct method / content-header payload
  corpus/field_table/<n>         field tables (client properties, arguments, headers)
  corpus/http/<name>             HTTP requests as sent
  corpus/definitions/<name>      definitions documents from tests/fixtures

Usage: python3 capture.py path/to/warren   (needs pika 1.3.2: see docs/fuzzing.md)
"""
import base64, hashlib, json, os, socket, subprocess, sys, tempfile, threading, time
import urllib.request, urllib.error

import pika
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "corpus")
REPO = os.path.join(HERE, "..", "..", "..")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Recorder:
    """TCP proxy: every accepted connection's client->server bytes, in order."""

    def __init__(self, target_port):
        self.target = target_port
        self.sessions = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            client, _ = self.sock.accept()
            upstream = socket.create_connection(("127.0.0.1", self.target))
            record = bytearray()
            self.sessions.append(record)
            threading.Thread(target=pump, args=(client, upstream, record), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client, None), daemon=True).start()

    def take(self):
        time.sleep(0.3)
        out, self.sessions = [bytes(s) for s in self.sessions], []
        return out


def pump(src, dst, record):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if record is not None:
                record.extend(data)
            dst.sendall(data)
    except OSError:
        pass
    for s in (dst,):
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def params(port, user="guest", password="guest", **kw):
    return pika.ConnectionParameters(
        "127.0.0.1", port, credentials=pika.PlainCredentials(user, password), **kw
    )


def basic(port):
    c = pika.BlockingConnection(params(port))
    ch = c.channel()
    ch.queue_declare("tasks")
    ch.basic_publish("", "tasks", b"Hello")
    ch.basic_qos(prefetch_count=10)
    got = []

    def cb(ch_, m, p, body):
        got.append(body)
        ch_.basic_ack(m.delivery_tag)
        ch_.stop_consuming()

    ch.basic_consume("tasks", cb)
    ch.start_consuming()
    ch.queue_delete("tasks")
    c.close()


def properties(port):
    c = pika.BlockingConnection(params(port))
    ch = c.channel()
    ch.exchange_declare("hdrs", "headers", durable=False, auto_delete=True)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "hdrs", arguments={"x-match": "any", "kind": "a", "n": 1})
    props = pika.BasicProperties(
        content_type="application/json", content_encoding="utf-8",
        headers={"kind": "a", "nested": {"list": [1, "two", True, None], "f": Decimal("1.5")},
                 "CC": ["k1"], "when": 12},
        delivery_mode=2, priority=3, correlation_id="c-1", reply_to="replies",
        expiration="60000", message_id="m-1", timestamp=1700000000, type="t",
        user_id="guest", app_id="capture", cluster_id="x",
    )
    ch.basic_publish("hdrs", "", b'{"a": 1}', props)
    ch.basic_publish("hdrs", "", b"x" * 5000, pika.BasicProperties(headers={"kind": "a"}))
    m, p, body = ch.basic_get(q)
    if m:
        ch.basic_reject(m.delivery_tag, requeue=True)
    m, p, body = ch.basic_get(q)
    if m:
        ch.basic_nack(m.delivery_tag, requeue=False)
    ch.queue_unbind(q, "hdrs", arguments={"x-match": "any", "kind": "a", "n": 1})
    c.close()


def confirms_tx(port):
    c = pika.BlockingConnection(params(port))
    ch = c.channel()
    ch.confirm_delivery()
    ch.queue_declare("cq", durable=True, arguments={
        "x-max-length": 10, "x-message-ttl": 60000, "x-dead-letter-exchange": "dlx",
        "x-dead-letter-routing-key": "dead", "x-max-priority": 5, "x-overflow": "reject-publish",
        "x-queue-mode": "lazy"})
    ch.basic_publish("", "cq", b"persistent", pika.BasicProperties(delivery_mode=2), mandatory=True)
    try:
        ch.basic_publish("", "nowhere", b"unroutable", mandatory=True)
    except pika.exceptions.UnroutableError:
        pass
    ch2 = c.channel()
    ch2.tx_select()
    ch2.basic_publish("", "cq", b"in tx")
    ch2.tx_commit()
    ch2.basic_publish("", "cq", b"rolled back")
    ch2.tx_rollback()
    ch2.queue_purge("cq")
    ch2.close()
    ch.queue_delete("cq")
    c.close()


def topology(port):
    c = pika.BlockingConnection(params(port))
    ch = c.channel()
    ch.exchange_declare("t.topic", "topic", durable=True)
    ch.exchange_declare("t.fan", "fanout", arguments={"alternate-exchange": "amq.fanout"})
    ch.exchange_bind("t.fan", "t.topic", routing_key="a.*.#")
    ch.queue_declare("tq", arguments={"x-queue-type": "classic", "x-expires": 600000})
    ch.queue_bind("tq", "t.topic", routing_key="a.#")
    ch.basic_publish("t.topic", "a.b.c", b"routed")
    tag = ch.basic_consume("tq", lambda *a: None, auto_ack=True, exclusive=True,
                           arguments={"x-priority": 2})
    ch.basic_cancel(tag)
    ch.exchange_unbind("t.fan", "t.topic", routing_key="a.*.#")
    ch.queue_unbind("tq", "t.topic", routing_key="a.#")
    ch.exchange_delete("t.fan")
    ch.exchange_delete("t.topic", if_unused=True)
    ch.queue_delete("tq", if_unused=False, if_empty=False)
    ch.basic_recover(requeue=True)
    c.close()


def errors(port):
    c = pika.BlockingConnection(params(port))
    ch = c.channel()
    try:
        ch.queue_declare("no-such-queue", passive=True)  # 404 closes the channel
    except pika.exceptions.ChannelClosedByBroker:
        pass
    ch = c.channel()
    try:
        ch.exchange_declare("amq.custom", "direct")  # 403 access refused
    except pika.exceptions.ChannelClosedByBroker:
        pass
    c.close()
    try:
        pika.BlockingConnection(params(port, password="wrong"))
    except pika.exceptions.AMQPError:
        pass
    try:
        pika.BlockingConnection(params(port, virtual_host="nope"))
    except pika.exceptions.AMQPError:
        pass


def heartbeat(port):
    c = pika.BlockingConnection(params(port, heartbeat=1, frame_max=4096, channel_max=3))
    ch = c.channel()
    ch.queue_declare("hb", auto_delete=True)
    ch.basic_publish("", "hb", b"y" * 10000)  # split into several body frames
    c.sleep(1.5)
    c.close()


SCENARIOS = [basic, properties, confirms_tx, topology, errors, heartbeat]

AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()
HTTP = [
    ("overview", "GET", "/api/overview", None),
    ("whoami", "GET", "/api/whoami", None),
    ("put_vhost", "PUT", "/api/vhosts/v1", {}),
    ("put_queue", "PUT", "/api/queues/%2F/hq", {"durable": True, "arguments": {"x-max-length": 5}}),
    ("put_exchange", "PUT", "/api/exchanges/%2F/hx", {"type": "topic", "durable": False}),
    ("bind", "POST", "/api/bindings/%2F/e/hx/q/hq", {"routing_key": "a.#", "arguments": {}}),
    ("publish", "POST", "/api/exchanges/%2F/hx/publish",
     {"properties": {"delivery_mode": 2, "headers": {"h": 1}}, "routing_key": "a.b",
      "payload": "hello", "payload_encoding": "string"}),
    ("get", "POST", "/api/queues/%2F/hq/get",
     {"count": 2, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 50000}),
    ("queues_paged", "GET", "/api/queues?page=1&page_size=100&name=h&use_regex=false&sort=name", None),
    ("put_user", "PUT", "/api/users/app", {"password": "secret", "tags": "management"}),
    ("put_permission", "PUT", "/api/permissions/v1/app", {"configure": ".*", "write": ".*", "read": "^amq\\."}),
    ("put_policy", "PUT", "/api/policies/%2F/ttl",
     {"pattern": "^h", "definition": {"message-ttl": 1000}, "priority": 1, "apply-to": "queues"}),
    ("definitions_get", "GET", "/api/definitions", None),
    ("definitions_post", "POST", "/api/definitions",
     {"queues": [{"name": "dq", "vhost": "/", "durable": True, "auto_delete": False, "arguments": {}}]}),
    ("delete_queue", "DELETE", "/api/queues/%2F/hq?if-unused=true", None),
    ("health", "GET", "/api/health/checks/alarms", None),
    ("aliveness", "GET", "/api/aliveness-test/%2F", None),
    ("connections", "GET", "/api/connections?columns=name,user", None),
]


def http_requests(port):
    for name, method, path, body in HTTP:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
        req.add_header("Authorization", AUTH)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            urllib.request.urlopen(req, timeout=5).read()
        except urllib.error.HTTPError:
            pass
        yield name
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/queues")
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:wrong").decode())
    try:
        urllib.request.urlopen(req, timeout=5).read()
    except urllib.error.HTTPError:
        pass
    yield "bad_password"


def frames(stream):
    """Method and content-header payloads of a client stream."""
    pos = 8 if stream.startswith(b"AMQP") else 0
    while pos + 7 <= len(stream):
        ftype = stream[pos]
        size = int.from_bytes(stream[pos + 3:pos + 7], "big")
        payload = stream[pos + 7:pos + 7 + size]
        if ftype in (1, 2):
            yield payload
        pos += 8 + size


def tables(payload):
    """Field tables in a payload: connection.start-ok's client properties, plus any
    table-looking block after the first few fields (good enough for seeds)."""
    out = []
    if payload[:4] == b"\x00\x0a\x00\x0b":
        n = int.from_bytes(payload[4:8], "big")
        out.append(payload[8:8 + n])
    return out


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pika_tables():
    from pika.data import encode_table
    samples = [
        {"x-match": "all", "kind": "a", "n": 1},
        {"x-death": [{"count": 1, "reason": "expired", "queue": "q", "time": 1700000000,
                      "exchange": "", "routing-keys": ["q"]}],
         "x-first-death-reason": "expired"},
        {"x-max-length": 10, "x-message-ttl": 60000, "x-dead-letter-exchange": "dlx",
         "x-max-priority": 5, "x-overflow": "reject-publish"},
        {"nested": {"list": [1, "two", True, None, Decimal("2.5")], "big": 2 ** 40, "neg": -3}},
        {"LOGIN": "guest", "PASSWORD": "guest"},
    ]
    for i, t in enumerate(samples):
        pieces = []
        encode_table(pieces, t)
        yield f"pika-{i}", b"".join(pieces)[4:]


def main():
    warren = sys.argv[1]
    amqp, http = free_port(), free_port()
    data = tempfile.mkdtemp(prefix="warren-capture-")
    proc = subprocess.Popen([warren, "--listen", f"127.0.0.1:{amqp}",
                             "--http-listen", f"127.0.0.1:{http}",
                             "--prometheus-listen", "off", "--data-dir", data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        rec = Recorder(amqp)
        methods = {}
        for scenario in SCENARIOS:
            try:
                scenario(rec.port)
            except Exception as e:  # the traffic up to the failure is still a seed
                print(f"{scenario.__name__}: {e!r}", file=sys.stderr)
            for i, stream in enumerate(rec.take()):
                name = f"{scenario.__name__}-{i}"
                write("connection", name, stream)
                write("frame", name, stream)
                for payload in frames(stream):
                    methods.setdefault(hashlib.sha1(payload).hexdigest()[:12], payload)
                    for t in tables(payload):
                        write("field_table", f"client-properties-{hashlib.sha1(t).hexdigest()[:8]}", t)
        for h, payload in methods.items():
            if len(payload) <= 1024:
                write("method", h, payload)
        for name, t in pika_tables():
            write("field_table", name, t)
        hrec = Recorder(http)
        for name in http_requests(hrec.port):
            for stream in hrec.take():
                write("http", name, stream)
    finally:
        proc.terminate()
        proc.wait()
    fixtures = os.path.join(REPO, "tests", "fixtures", "management")
    for name in ("definitions.json", "definitions_vhost.json", "boot_definitions.json"):
        with open(os.path.join(fixtures, name)) as f:
            doc = json.load(f)
        doc = doc.get("body", doc.get("definitions", doc))
        write("definitions", name, json.dumps(doc, indent=1).encode())


if __name__ == "__main__":
    main()
