"""pika's BlockingConnection, used the way typical pika applications use it."""
import threading
import time
import uuid

import pika
from pika.exceptions import UnroutableError

from common import HOST, PORT, check_x_death, eq, expect, finish, name, run_check

C = "pika-blocking"
params = pika.ConnectionParameters(host=HOST, port=PORT)  # defaults: guest/guest, vhost /
conn = None
ch = None


def connect():
    global conn, ch
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    props = conn._impl.server_properties  # what pika logs at connect
    expect(b"capabilities" in props or "capabilities" in props, f"server properties: {props}")


def declare():
    x = name(C, "topic")
    ae = name(C, "ae")
    ch.exchange_declare(ae, "fanout", auto_delete=True)
    ch.exchange_declare(x, "topic", auto_delete=True, arguments={"alternate-exchange": ae})
    q = ch.queue_declare(name(C, "q"), auto_delete=True,
                         arguments={"x-message-ttl": 60000, "x-max-length": 100}).method.queue
    ch.queue_bind(q, x, "a.*")
    qa = ch.queue_declare("", exclusive=True).method.queue
    expect(qa.startswith("amq.gen-"), f"server-named queue: {qa}")
    ch.queue_bind(qa, ae)
    hx = name(C, "headers")
    ch.exchange_declare(hx, "headers", auto_delete=True)
    qh = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(qh, hx, arguments={"x-match": "all", "kind": "order"})
    # same arguments again: ok; passive: ok
    ch.queue_declare(q, auto_delete=True, arguments={"x-message-ttl": 60000, "x-max-length": 100})
    ok = ch.queue_declare(q, passive=True)
    eq("message count", 0, ok.method.message_count)
    ch.basic_publish(x, "a.b", b"routed")
    ch.basic_publish(x, "nope", b"to-ae")
    ch.basic_publish(hx, "", b"h", pika.BasicProperties(headers={"kind": "order"}))
    ch.basic_publish(hx, "", b"not-h", pika.BasicProperties(headers={"kind": "other"}))
    time.sleep(0.2)
    eq("routed", b"routed", ch.basic_get(q, auto_ack=True)[2])
    eq("alternate exchange", b"to-ae", ch.basic_get(qa, auto_ack=True)[2])
    eq("headers match", b"h", ch.basic_get(qh, auto_ack=True)[2])
    eq("headers non-match", None, ch.basic_get(qh, auto_ack=True)[0])


def confirms_mandatory():
    c2 = conn.channel()
    c2.confirm_delivery()
    q = c2.queue_declare("", exclusive=True).method.queue
    c2.basic_publish("", q, b"confirmed", mandatory=True)  # raises on nack/return
    try:
        c2.basic_publish("", name(C, "nowhere"), b"lost", mandatory=True)
        raise AssertionError("unroutable mandatory publish did not raise UnroutableError")
    except UnroutableError as e:
        eq("returned messages", 1, len(e.messages))
        ret = e.messages[0].method
        eq("reply code", 312, ret.reply_code)
        eq("reply text", "NO_ROUTE", ret.reply_text)
    c2.close()


def prefetch_ack():
    c2 = conn.channel()
    c2.basic_qos(prefetch_count=2)
    q = c2.queue_declare("", exclusive=True).method.queue
    for i in range(5):
        c2.basic_publish("", q, str(i).encode())
    got = []
    c2.basic_consume(q, lambda c, m, p, b: got.append((m, b)))
    conn.process_data_events(time_limit=0.5)
    eq("unacked deliveries with prefetch 2", 2, len(got))
    deadline = time.time() + 5
    acked = 0
    while acked < 5 and time.time() < deadline:
        while acked < len(got):
            c2.basic_ack(got[acked][0].delivery_tag)
            acked += 1
        conn.process_data_events(time_limit=0.1)
    eq("bodies", [b"0", b"1", b"2", b"3", b"4"], [b for _, b in got])
    c2.close()


def nack_requeue():
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"again")
    time.sleep(0.1)
    m, _, b = ch.basic_get(q)
    expect(m is not None and not m.redelivered, f"first get: {m}")
    ch.basic_nack(m.delivery_tag, requeue=True)
    m2, _, b2 = ch.basic_get(q)
    expect(m2 is not None, "requeued message missing")
    expect(m2.redelivered, "redelivered flag not set after nack requeue=true")
    eq("body", b"again", b2)
    ch.basic_ack(m2.delivery_tag)


def dead_letter():
    dlx = name(C, "dlx")
    src = name(C, "dl-src")
    ch.exchange_declare(dlx, "direct", auto_delete=True)
    dlq = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(dlq, dlx, "dead")
    ch.queue_declare(src, exclusive=True, arguments={"x-dead-letter-exchange": dlx,
                                                      "x-dead-letter-routing-key": "dead"})
    ch.basic_publish("", src, b"doomed", pika.BasicProperties(headers={"app": "x"}))
    time.sleep(0.1)
    m, _, _ = ch.basic_get(src)
    expect(m is not None, "message not in source queue")
    ch.basic_reject(m.delivery_tag, requeue=False)
    deadline = time.time() + 5
    got = (None, None, None)
    while got[0] is None and time.time() < deadline:
        got = ch.basic_get(dlq, auto_ack=True)
        time.sleep(0.05)
    expect(got[0] is not None, "nothing dead-lettered")
    eq("body", b"doomed", got[2])
    eq("routing key", "dead", got[0].routing_key)
    check_x_death(got[1].headers, src)
    eq("original header kept", "x", got[1].headers.get("app"))


def rpc():
    rq = ch.queue_declare(name(C, "rpc"), auto_delete=True).method.queue
    srv = pika.BlockingConnection(params)
    sch = srv.channel()

    def serve(c, m, p, body):
        c.basic_publish("", p.reply_to, body.upper(),
                        pika.BasicProperties(correlation_id=p.correlation_id))
        c.basic_ack(m.delivery_tag)

    sch.basic_consume(rq, serve)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            srv.process_data_events(time_limit=0.05)

    t = threading.Thread(target=loop)
    t.start()
    try:
        reply_q = ch.queue_declare("", exclusive=True).method.queue
        replies = {}
        ch.basic_consume(reply_q, lambda c, m, p, b: replies.__setitem__(p.correlation_id, b),
                         auto_ack=True)
        ids = [str(uuid.uuid4()) for _ in range(3)]
        for i, cid in enumerate(ids):
            ch.basic_publish("", rq, f"req{i}".encode(),
                             pika.BasicProperties(reply_to=reply_q, correlation_id=cid))
        deadline = time.time() + 5
        while len(replies) < 3 and time.time() < deadline:
            conn.process_data_events(time_limit=0.1)
        eq("replies by correlation id", {cid: f"REQ{i}".encode() for i, cid in enumerate(ids)}, replies)
    finally:
        stop.set()
        t.join()
        srv.close()


run_check("connect", connect)
if conn is not None:
    run_check("declare", declare)
    run_check("confirm-mandatory", confirms_mandatory)
    run_check("prefetch-ack", prefetch_ack)
    run_check("nack-requeue", nack_requeue)
    run_check("dead-letter", dead_letter)
    run_check("rpc", rpc)
    conn.close()
finish()
