"""pika's AsyncioConnection adapter (callback style, on an asyncio loop)."""
import asyncio
import uuid

import pika
from pika.adapters.asyncio_connection import AsyncioConnection

from common import HOST, PORT, check_x_death, eq, expect, finish, name, run_check_async

C = "pika-asyncio"
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
conn = None
ch = None


def cb_future():
    """A future and a callback that resolves it with the callback's last argument."""
    fut = loop.create_future()

    def cb(*args):
        if not fut.done():
            fut.set_result(args[-1] if args else None)

    return fut, cb


async def wait(fut, t=5):
    return await asyncio.wait_for(fut, t)


async def open_channel(c):
    fut, cb = cb_future()
    c.channel(on_open_callback=cb)
    return await wait(fut)


async def declare_q(c, q="", **kw):
    fut, cb = cb_future()
    c.queue_declare(q, callback=cb, **kw)
    return (await wait(fut)).method.queue


async def get(c, q, auto_ack=False):
    fut = loop.create_future()

    def on_get(chan, m, p, b):
        fut.set_result((m, p, b))

    def on_empty(frame):
        if not fut.done():
            fut.set_result((None, None, None))

    c.add_callback(on_empty, [pika.spec.Basic.GetEmpty], one_shot=True)
    c.basic_get(q, on_get, auto_ack=auto_ack)
    return await wait(fut)


async def connect():
    global conn, ch
    fut = loop.create_future()
    conn = AsyncioConnection(
        pika.ConnectionParameters(host=HOST, port=PORT),
        on_open_callback=lambda c: fut.set_result(c),
        on_open_error_callback=lambda c, e: fut.set_exception(Exception(str(e))),
        custom_ioloop=loop)
    await wait(fut)
    ch = await open_channel(conn)


async def declare():
    x = name(C, "direct")
    fut, cb = cb_future()
    ch.exchange_declare(x, "direct", auto_delete=True, arguments={"x-note": "kept"}, callback=cb)
    await wait(fut)
    q = await declare_q(ch, name(C, "q"), auto_delete=True, arguments={"x-max-length": 10})
    fut, cb = cb_future()
    ch.queue_bind(q, x, "k", callback=cb)
    await wait(fut)
    ch.basic_publish(x, "k", b"routed")
    await asyncio.sleep(0.1)
    eq("routed", b"routed", (await get(ch, q, True))[2])


async def confirms_mandatory():
    c2 = await open_channel(conn)
    acks, returns = [], []
    fut, cb = cb_future()
    c2.confirm_delivery(lambda f: acks.append(f.method), callback=cb)
    await wait(fut)
    c2.add_on_return_callback(lambda c, m, p, b: returns.append(m))
    q = await declare_q(c2, exclusive=True)
    c2.basic_publish("", q, b"ok", mandatory=True)
    c2.basic_publish("", name(C, "nowhere"), b"lost", mandatory=True)
    for _ in range(50):
        if acks and acks[-1].delivery_tag >= 2:
            break
        await asyncio.sleep(0.05)
    # an ack may cover several tags (multiple=true); RabbitMQ happens to send one each
    expect(all(a.NAME == "Basic.Ack" for a in acks), f"confirms: {acks}")
    confirmed = set()
    for a in acks:
        confirmed |= set(range(1, a.delivery_tag + 1)) if a.multiple else {a.delivery_tag}
    eq("confirmed tags", {1, 2}, confirmed)
    eq("returns", [(312, "NO_ROUTE")], [(r.reply_code, r.reply_text) for r in returns])


async def prefetch_ack():
    c2 = await open_channel(conn)
    fut, cb = cb_future()
    c2.basic_qos(prefetch_count=2, callback=cb)
    await wait(fut)
    q = await declare_q(c2, exclusive=True)
    got = []
    c2.basic_consume(q, lambda c, m, p, b: got.append((m, b)))
    for i in range(5):
        c2.basic_publish("", q, str(i).encode())
    await asyncio.sleep(0.5)
    eq("unacked deliveries with prefetch 2", 2, len(got))
    acked = 0
    for _ in range(100):
        while acked < len(got):
            c2.basic_ack(got[acked][0].delivery_tag)
            acked += 1
        if acked == 5:
            break
        await asyncio.sleep(0.05)
    eq("bodies", [b"0", b"1", b"2", b"3", b"4"], [b for _, b in got])


async def nack_requeue():
    q = await declare_q(ch, exclusive=True)
    ch.basic_publish("", q, b"again")
    await asyncio.sleep(0.1)
    m, _, _ = await get(ch, q)
    ch.basic_nack(m.delivery_tag, requeue=True)
    m2, _, b2 = await get(ch, q)
    expect(m2 is not None and m2.redelivered, f"redelivery: {m2}")
    ch.basic_ack(m2.delivery_tag)


async def dead_letter():
    dlx = name(C, "dlx")
    src = name(C, "dl-src")
    fut, cb = cb_future()
    ch.exchange_declare(dlx, "fanout", auto_delete=True, callback=cb)
    await wait(fut)
    dlq = await declare_q(ch, exclusive=True)
    fut, cb = cb_future()
    ch.queue_bind(dlq, dlx, callback=cb)
    await wait(fut)
    await declare_q(ch, src, exclusive=True, arguments={"x-dead-letter-exchange": dlx})
    ch.basic_publish("", src, b"doomed")
    await asyncio.sleep(0.1)
    m, _, _ = await get(ch, src)
    expect(m is not None, "message not in source queue")
    ch.basic_reject(m.delivery_tag, requeue=False)
    got = (None, None, None)
    for _ in range(50):
        got = await get(ch, dlq, True)
        if got[0] is not None:
            break
        await asyncio.sleep(0.05)
    expect(got[0] is not None, "nothing dead-lettered")
    eq("routing key kept", src, got[0].routing_key)
    check_x_death(got[1].headers, src)


async def rpc():
    rq = await declare_q(ch, name(C, "rpc"), auto_delete=True)
    sch = await open_channel(conn)

    def serve(c, m, p, body):
        c.basic_publish("", p.reply_to, body[::-1], pika.BasicProperties(correlation_id=p.correlation_id))
        c.basic_ack(m.delivery_tag)

    sch.basic_consume(rq, serve)
    reply = await declare_q(ch, exclusive=True)
    fut = loop.create_future()
    ch.basic_consume(reply, lambda c, m, p, b: fut.set_result((p.correlation_id, b)), auto_ack=True)
    cid = str(uuid.uuid4())
    ch.basic_publish("", rq, b"abc", pika.BasicProperties(reply_to=reply, correlation_id=cid))
    eq("reply", (cid, b"cba"), await wait(fut))


async def main():
    await run_check_async("connect", connect)
    if ch is None:
        return
    for n, f in [("declare", declare), ("confirm-mandatory", confirms_mandatory),
                 ("prefetch-ack", prefetch_ack), ("nack-requeue", nack_requeue),
                 ("dead-letter", dead_letter), ("rpc", rpc)]:
        await run_check_async(n, f)
    conn.close()
    await asyncio.sleep(0.1)


loop.run_until_complete(main())
finish()
