"""kombu (py-amqp transport), as kombu applications and Celery's internals use it."""
import socket
import time
import uuid

from kombu import Connection, Consumer, Exchange, Producer, Queue

from common import HOST, PORT, check_x_death, eq, expect, finish, name, run_check

C = "kombu"
URL = f"amqp://guest:guest@{HOST}:{PORT}//"
conn = Connection(URL, transport_options={"confirm_publish": True})
state = {}


def drain(until, timeout=5):
    deadline = time.time() + timeout
    while not until() and time.time() < deadline:
        try:
            conn.drain_events(timeout=0.1)
        except socket.timeout:
            pass


def connect():
    conn.ensure_connection(max_retries=3)
    state["ch"] = conn.channel()
    expect(conn.connected, "not connected")


def declare():
    ch = state["ch"]
    x = Exchange(name(C, "topic"), "topic", auto_delete=True, durable=False,
                 arguments={"alternate-exchange": name(C, "ae")})
    ae = Exchange(name(C, "ae"), "fanout", auto_delete=True, durable=False)
    q = Queue(name(C, "q"), x, routing_key="a.*", auto_delete=True, durable=False,
              queue_arguments={"x-message-ttl": 60000, "x-max-length": 100},
              binding_arguments={"x-note": "b"})
    qa = Queue(name(C, "qa"), ae, auto_delete=True, durable=False)
    ae(ch).declare()
    q(ch).declare()
    qa(ch).declare()
    p = Producer(ch, exchange=x)
    p.publish({"k": "routed"}, routing_key="a.b", serializer="json")
    p.publish("to-ae", routing_key="zzz")
    time.sleep(0.1)
    m = q(ch).get(no_ack=True)
    eq("routed", {"k": "routed"}, m.decode())
    eq("alternate", "to-ae", qa(ch).get(no_ack=True).decode())
    _, count, _ = q(ch).queue_declare(passive=True)
    eq("passive message count", 0, count)


def confirms_mandatory():
    ch = conn.channel()
    q = Queue(name(C, "conf"), exclusive=True, durable=False)
    q(ch).declare()
    returned = []
    p = Producer(ch, on_return=lambda exc, exchange, routing_key, message: returned.append(exc))
    p.publish("ok", routing_key=q.name, mandatory=True)  # confirm_publish: waits for the ack
    p.publish("lost", routing_key=name(C, "nowhere"), mandatory=True)
    conn.drain_events(timeout=0.5) if not returned else None
    eq("returns", 1, len(returned))
    eq("return code", 312, returned[0].reply_code)
    eq("return text", "NO_ROUTE", returned[0].reply_text)
    ch.close()


def prefetch_ack():
    ch = conn.channel()
    q = Queue(name(C, "prefetch"), exclusive=True, durable=False)
    got = []
    consumer = Consumer(ch, [q], callbacks=[lambda body, m: got.append(m)], accept=["json"])
    consumer.qos(prefetch_count=2)
    consumer.consume()
    p = Producer(ch)
    for i in range(5):
        p.publish({"i": i}, routing_key=q.name, serializer="json")
    drain(lambda: False, 0.5)
    eq("unacked deliveries with prefetch 2", 2, len(got))
    acked = [0]

    def ack_all():
        while acked[0] < len(got):
            got[acked[0]].ack()
            acked[0] += 1
        return acked[0] == 5

    drain(ack_all)
    eq("bodies", [{"i": i} for i in range(5)], [m.decode() for m in got])
    consumer.cancel()
    ch.close()


def nack_requeue():
    ch = state["ch"]
    q = Queue(name(C, "nack"), exclusive=True, durable=False)(ch)
    q.declare()
    Producer(ch).publish("again", routing_key=q.name)
    time.sleep(0.1)
    m = q.get()
    expect(not m.delivery_info["redelivered"], "first delivery flagged redelivered")
    m.requeue()  # basic_reject(requeue=True)
    m2 = q.get()
    expect(m2 is not None and m2.delivery_info["redelivered"], "redelivered flag not set")
    m2.ack()


def dead_letter():
    ch = state["ch"]
    dlx = Exchange(name(C, "dlx"), "direct", auto_delete=True, durable=False)
    dlq = Queue(name(C, "dlq"), dlx, routing_key="dead", exclusive=True, durable=False)(ch)
    dlq.declare()
    src = Queue(name(C, "dl-src"), exclusive=True, durable=False, queue_arguments={
        "x-dead-letter-exchange": dlx.name, "x-dead-letter-routing-key": "dead"})(ch)
    src.declare()
    Producer(ch).publish("doomed", routing_key=src.name, headers={"app": "x"})
    time.sleep(0.1)
    src.get().reject()  # requeue=False
    got = None
    deadline = time.time() + 5
    while got is None and time.time() < deadline:
        got = dlq.get(no_ack=True)
        time.sleep(0.05)
    expect(got is not None, "nothing dead-lettered")
    check_x_death(got.headers, src.name)


def rpc():
    # The server side has its own connection, and replies from its main loop rather than
    # from inside the consumer callback: with confirm_publish py-amqp waits for each ack,
    # and a publish from a callback that runs inside another wait nests the two waits,
    # after which py-amqp can lose the outer reply and hang, whatever the broker.
    ch = state["ch"]
    srv = Connection(URL, transport_options={"confirm_publish": True})
    sch = srv.channel()
    rq = Queue(name(C, "rpc"), auto_delete=True, durable=False)

    pending = []
    server = Consumer(sch, [rq], callbacks=[lambda body, m: pending.append((body, m))], accept=["json"])
    server.consume()
    reply = Queue(name(C, "reply"), exclusive=True, durable=False)
    replies = {}
    client = Consumer(ch, [reply], no_ack=True, accept=["json"],
                      callbacks=[lambda body, m: replies.__setitem__(m.properties["correlation_id"], body)])
    client.consume()
    ids = {str(uuid.uuid4()): n for n in range(3)}
    for cid, n in ids.items():
        Producer(ch).publish({"n": n}, routing_key=rq.name, reply_to=reply.name,
                             correlation_id=cid, serializer="json")
    deadline = time.time() + 5
    while len(replies) < 3 and time.time() < deadline:
        for c in (srv, conn):
            try:
                c.drain_events(timeout=0.05)
            except socket.timeout:
                pass
        while pending:
            body, m = pending.pop(0)
            Producer(sch).publish({"r": body["n"] * 2}, routing_key=m.properties["reply_to"],
                                  correlation_id=m.properties["correlation_id"], serializer="json")
            m.ack()
    eq("replies", {cid: {"r": n * 2} for cid, n in ids.items()}, replies)
    client.cancel()
    srv.release()


run_check("connect", connect)
if "ch" in state:
    for n, f in [("declare", declare), ("confirm-mandatory", confirms_mandatory),
                 ("prefetch-ack", prefetch_ack), ("nack-requeue", nack_requeue),
                 ("dead-letter", dead_letter), ("rpc", rpc)]:
        run_check(n, f)
    conn.release()
finish()
