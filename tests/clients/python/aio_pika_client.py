"""aio-pika (robust connection and channel), as asyncio applications use it.

`aio_pika_client.py recovery`: set up topology and a consumer on a robust connection,
print READY, and after the broker restart check that it reconnected, redeclared the
(transient) exchange, queue and binding, and consumes again.
"""
import asyncio
import sys
import uuid

import aio_pika
from aio_pika import DeliveryMode, ExchangeType, Message
from aio_pika.exceptions import DeliveryError

from common import (HOST, PORT, check_x_death, eq, expect, finish, name, report,
                    run_check_async, wait_restarted)

C = "aio-pika"
URL = f"amqp://guest:guest@{HOST}:{PORT}/"
state = {}


async def connect():
    state["conn"] = await aio_pika.connect_robust(URL)
    state["ch"] = await state["conn"].channel()


async def declare():
    ch = state["ch"]
    ae = await ch.declare_exchange(name(C, "ae"), ExchangeType.FANOUT, auto_delete=True)
    x = await ch.declare_exchange(name(C, "topic"), ExchangeType.TOPIC, auto_delete=True,
                                  arguments={"alternate-exchange": ae.name})
    q = await ch.declare_queue(name(C, "q"), auto_delete=True,
                               arguments={"x-message-ttl": 60000, "x-max-length": 100})
    await q.bind(x, "a.#")
    qa = await ch.declare_queue(exclusive=True)
    await qa.bind(ae)
    await x.publish(Message(b"routed"), "a.b.c")
    await x.publish(Message(b"to-ae"), "b")
    await asyncio.sleep(0.1)
    m = await q.get(no_ack=True)
    eq("routed", b"routed", m.body)
    m = await qa.get(no_ack=True)
    eq("alternate", b"to-ae", m.body)
    again = await ch.declare_queue(q.name, passive=True)
    eq("passive message count", 0, again.declaration_result.message_count)


async def confirms_mandatory():
    ch = await state["conn"].channel(publisher_confirms=True, on_return_raises=True)
    q = await ch.declare_queue(exclusive=True)
    res = await ch.default_exchange.publish(Message(b"ok"), q.name, mandatory=True)
    eq("confirm", "Basic.Ack", res.name)
    try:
        await ch.default_exchange.publish(Message(b"lost"), name(C, "nowhere"), mandatory=True)
        raise AssertionError("unroutable mandatory publish did not raise")
    except DeliveryError as e:
        eq("return reply code", 312, e.frame.reply_code)
        eq("return reply text", "NO_ROUTE", e.frame.reply_text)
    await ch.close()


async def prefetch_ack():
    ch = await state["conn"].channel()
    await ch.set_qos(prefetch_count=2)
    q = await ch.declare_queue(exclusive=True)
    got = []
    await q.consume(lambda m: got.append(m))
    for i in range(5):
        await ch.default_exchange.publish(Message(str(i).encode()), q.name)
    await asyncio.sleep(0.5)
    eq("unacked deliveries with prefetch 2", 2, len(got))
    acked = 0
    for _ in range(100):
        while acked < len(got):
            await got[acked].ack()
            acked += 1
        if acked == 5:
            break
        await asyncio.sleep(0.05)
    eq("bodies", [b"0", b"1", b"2", b"3", b"4"], [m.body for m in got])
    await ch.close()


async def nack_requeue():
    ch = state["ch"]
    q = await ch.declare_queue(exclusive=True)
    await ch.default_exchange.publish(Message(b"again"), q.name)
    await asyncio.sleep(0.1)
    m = await q.get()
    expect(not m.redelivered, "first delivery flagged redelivered")
    await m.nack(requeue=True)
    m2 = await q.get()
    expect(m2.redelivered, "redelivered flag not set after nack requeue=true")
    await m2.ack()


async def dead_letter():
    ch = state["ch"]
    dlx = await ch.declare_exchange(name(C, "dlx"), ExchangeType.DIRECT, auto_delete=True)
    dlq = await ch.declare_queue(exclusive=True)
    await dlq.bind(dlx, "dead")
    src = await ch.declare_queue(name(C, "dl-src"), exclusive=True, arguments={
        "x-dead-letter-exchange": dlx.name, "x-dead-letter-routing-key": "dead"})
    await ch.default_exchange.publish(Message(b"doomed", headers={"app": "x"}), src.name)
    await asyncio.sleep(0.1)
    m = await src.get()
    await m.reject(requeue=False)
    got = None
    for _ in range(50):
        got = await dlq.get(no_ack=True, fail=False)
        if got:
            break
        await asyncio.sleep(0.05)
    expect(got is not None, "nothing dead-lettered")
    eq("body", b"doomed", got.body)
    check_x_death(got.headers, src.name)


async def rpc():
    ch = state["ch"]
    sch = await state["conn"].channel()
    rq = await sch.declare_queue(name(C, "rpc"), auto_delete=True)

    async def serve(m):
        async with m.process():
            await sch.default_exchange.publish(
                Message(m.body.upper(), correlation_id=m.correlation_id), m.reply_to)

    await rq.consume(serve)
    reply = await ch.declare_queue(exclusive=True)
    futures = {}

    async def on_reply(m):
        futures.pop(m.correlation_id).set_result(m.body)

    await reply.consume(on_reply, no_ack=True)
    for i in range(3):
        cid = str(uuid.uuid4())
        futures[cid] = f = asyncio.get_running_loop().create_future()
        await ch.default_exchange.publish(
            Message(f"req{i}".encode(), reply_to=reply.name, correlation_id=cid), rq.name)
        eq("reply", f"REQ{i}".encode(), await asyncio.wait_for(f, 5))


async def recovery():
    conn = await aio_pika.connect_robust(URL, reconnect_interval=0.5)
    reconnects = []
    conn.reconnect_callbacks.add(lambda *a: reconnects.append(1))
    ch = await conn.channel(publisher_confirms=True)
    x = await ch.declare_exchange(name(C, "rec-x"), ExchangeType.DIRECT, durable=False)
    q = await ch.declare_queue(name(C, "rec-q"), durable=False, auto_delete=False)
    await q.bind(x, "k")
    got = asyncio.Queue()

    async def on_msg(m):
        async with m.process():
            await got.put(m.body)

    await q.consume(on_msg)
    await x.publish(Message(b"before"), "k")
    eq("before restart", b"before", await asyncio.wait_for(got.get(), 5))
    print("READY", flush=True)
    expect(await asyncio.get_running_loop().run_in_executor(None, wait_restarted), "no restart")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    body = None
    while loop.time() < deadline and body is None:
        try:
            await asyncio.wait_for(x.publish(Message(b"after", delivery_mode=DeliveryMode.PERSISTENT), "k"), 2)
            body = await asyncio.wait_for(got.get(), 2)
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            print(f"  # not yet: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            await asyncio.sleep(0.5)
    eq("message through redeclared topology after restart", b"after", body)
    expect(reconnects, "reconnect callback never ran")
    await q.delete(if_unused=False, if_empty=False)
    await x.delete()
    await conn.close()


async def main():
    if sys.argv[1:] == ["recovery"]:
        await run_check_async("recovery", recovery)
        return
    await run_check_async("connect", connect)
    if "ch" not in state:
        return
    for n, f in [("declare", declare), ("confirm-mandatory", confirms_mandatory),
                 ("prefetch-ack", prefetch_ack), ("nack-requeue", nack_requeue),
                 ("dead-letter", dead_letter), ("rpc", rpc)]:
        await run_check_async(n, f)
    await state["conn"].close()


asyncio.run(main())
finish()
