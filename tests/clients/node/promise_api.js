// amqplib's promise API, as Node services use it.
// `node promise_api.js recovery`: the opt-in automatic recovery (setup re-run on every
// reconnect), checked across a broker restart.
'use strict';
const amqp = require('amqplib');
const { URL, name, sleep, expect, eq, check, checkXDeath, waitRestarted, finish } = require('./common');

const C = 'amqplib-promise';
let conn;
let ch;

async function waitFor(pred, ms = 5000) {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end) await sleep(20);
}

async function connect() {
  conn = await amqp.connect(URL);
  ch = await conn.createChannel();
  expect(conn.connection.serverProperties.product, 'no server product');
}

async function declare() {
  const ae = name(C, 'ae');
  const x = name(C, 'topic');
  await ch.assertExchange(ae, 'fanout', { autoDelete: true, durable: false });
  await ch.assertExchange(x, 'topic', { autoDelete: true, durable: false, alternateExchange: ae });
  const q = (await ch.assertQueue(name(C, 'q'), { autoDelete: true, durable: false, messageTtl: 60000, maxLength: 100 })).queue;
  await ch.bindQueue(q, x, 'a.*');
  const qa = (await ch.assertQueue('', { exclusive: true })).queue;
  expect(qa.startsWith('amq.gen-'), `server-named queue ${qa}`);
  await ch.bindQueue(qa, ae, '');
  const hx = name(C, 'headers');
  await ch.assertExchange(hx, 'headers', { autoDelete: true, durable: false });
  const qh = (await ch.assertQueue('', { exclusive: true })).queue;
  await ch.bindQueue(qh, hx, '', { 'x-match': 'any', a: 1, b: 2 });
  ch.publish(x, 'a.b', Buffer.from('routed'));
  ch.publish(x, 'zz', Buffer.from('to-ae'));
  ch.publish(hx, '', Buffer.from('h'), { headers: { b: 2 } });
  await sleep(100);
  eq('routed', 'routed', (await ch.get(q, { noAck: true })).content.toString());
  eq('alternate', 'to-ae', (await ch.get(qa, { noAck: true })).content.toString());
  eq('headers any', 'h', (await ch.get(qh, { noAck: true })).content.toString());
  eq('passive count', 0, (await ch.checkQueue(q)).messageCount);
}

async function confirmsMandatory() {
  const cc = await conn.createConfirmChannel();
  const q = (await cc.assertQueue('', { exclusive: true })).queue;
  const returned = [];
  cc.on('return', (m) => returned.push(m.fields));
  await new Promise((res, rej) => cc.publish('', q, Buffer.from('ok'), { mandatory: true }, (e) => (e ? rej(e) : res())));
  cc.publish('', name(C, 'nowhere'), Buffer.from('lost'), { mandatory: true });
  await cc.waitForConfirms();
  eq('returns', [[312, 'NO_ROUTE']], returned.map((f) => [f.replyCode, f.replyText]));
  await cc.close();
}

async function prefetchAck() {
  const c2 = await conn.createChannel();
  await c2.prefetch(2);
  const q = (await c2.assertQueue('', { exclusive: true })).queue;
  const got = [];
  await c2.consume(q, (m) => got.push(m), { noAck: false });
  for (let i = 0; i < 5; i++) c2.sendToQueue(q, Buffer.from(String(i)));
  await sleep(500);
  eq('unacked deliveries with prefetch 2', 2, got.length);
  let acked = 0;
  const end = Date.now() + 5000;
  while (acked < 5 && Date.now() < end) {
    while (acked < got.length) c2.ack(got[acked++]);
    await sleep(20);
  }
  eq('bodies', ['0', '1', '2', '3', '4'], got.map((m) => m.content.toString()));
  await c2.close();
}

async function nackRequeue() {
  const q = (await ch.assertQueue('', { exclusive: true })).queue;
  ch.sendToQueue(q, Buffer.from('again'));
  await sleep(100);
  const m = await ch.get(q);
  expect(m && !m.fields.redelivered, 'first get');
  ch.nack(m, false, true);
  const m2 = await ch.get(q);
  expect(m2 && m2.fields.redelivered, 'redelivered flag not set after nack requeue');
  ch.ack(m2);
}

async function deadLetter() {
  const dlx = name(C, 'dlx');
  const src = name(C, 'dl-src');
  await ch.assertExchange(dlx, 'direct', { autoDelete: true, durable: false });
  const dlq = (await ch.assertQueue('', { exclusive: true })).queue;
  await ch.bindQueue(dlq, dlx, 'dead');
  await ch.assertQueue(src, { exclusive: true, deadLetterExchange: dlx, deadLetterRoutingKey: 'dead' });
  ch.sendToQueue(src, Buffer.from('doomed'));
  await sleep(100);
  const m = await ch.get(src);
  expect(m, 'message not in source queue');
  ch.reject(m, false);
  let got = false;
  const end = Date.now() + 5000;
  while (!got && Date.now() < end) {
    got = await ch.get(dlq, { noAck: true });
    if (!got) await sleep(50);
  }
  expect(got, 'nothing dead-lettered');
  checkXDeath(got.properties.headers, src);
}

async function rpc() {
  const sch = await conn.createChannel();
  const rq = (await sch.assertQueue(name(C, 'rpc'), { autoDelete: true, durable: false })).queue;
  await sch.consume(rq, (m) => {
    sch.sendToQueue(m.properties.replyTo, Buffer.from(m.content.toString().toUpperCase()), { correlationId: m.properties.correlationId });
    sch.ack(m);
  });
  // Direct reply-to, as most Node RPC helpers do it.
  const replies = {};
  await ch.consume('amq.rabbitmq.reply-to', (m) => { replies[m.properties.correlationId] = m.content.toString(); }, { noAck: true });
  for (let i = 0; i < 3; i++) ch.sendToQueue(rq, Buffer.from(`req${i}`), { replyTo: 'amq.rabbitmq.reply-to', correlationId: `c${i}` });
  await waitFor(() => Object.keys(replies).length === 3);
  eq('replies', { c0: 'REQ0', c1: 'REQ1', c2: 'REQ2' }, replies);
  await sch.close();
}

async function recovery() {
  const x = name(C, 'rec-x');
  const q = name(C, 'rec-q');
  const got = [];
  let setups = 0;
  let rch = null;
  const rconn = await amqp.connect(URL, {
    recovery: {
      initialDelay: 200,
      maxDelay: 1000,
      async setup(model) {
        setups++;
        rch = await model.createChannel();
        await rch.assertExchange(x, 'direct', { durable: false });
        await rch.assertQueue(q, { durable: false });
        await rch.bindQueue(q, x, 'k');
        await rch.consume(q, (m) => {
          if (m === null) { console.error('  # consumer cancelled by the broker'); return; }
          got.push(m.content.toString());
          rch.ack(m);
        });
      },
    },
  });
  rch.publish(x, 'k', Buffer.from('before'));
  await waitFor(() => got.length === 1);
  eq('before restart', ['before'], got);
  console.log('READY');
  expect(await waitRestarted(), 'no restart');
  const end = Date.now() + 30000;
  while (got.length < 2 && Date.now() < end) {
    try {
      rch.publish(x, 'k', Buffer.from('after'));
    } catch (e) {
      console.error(`  # not yet: ${e.message}`);
    }
    await waitFor(() => got.length >= 2, 1000);
  }
  eq('message through redeclared topology after restart', 'after', got[1]);
  expect(setups >= 2, `setup ran ${setups} times`);
  await rch.deleteQueue(q);
  await rch.deleteExchange(x);
  await rconn.close();
}

(async () => {
  if (process.argv[2] === 'recovery') {
    await check('recovery', recovery);
    return finish();
  }
  await check('connect', connect);
  if (ch) {
    await check('declare', declare);
    await check('confirm-mandatory', confirmsMandatory);
    await check('prefetch-ack', prefetchAck);
    await check('nack-requeue', nackRequeue);
    await check('dead-letter', deadLetter);
    await check('rpc', rpc);
    await conn.close();
  }
  finish();
})();
