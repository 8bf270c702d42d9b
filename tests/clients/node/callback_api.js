// amqplib's callback API. Each library call takes a node-style callback; `p()` only
// turns that callback into a promise so the checks read top to bottom.
'use strict';
const amqp = require('amqplib/callback_api');
const { URL, name, sleep, expect, eq, check, checkXDeath, finish } = require('./common');

const C = 'amqplib-callback';
const p = (fn) => new Promise((res, rej) => fn((err, v) => (err ? rej(err) : res(v))));
let conn;
let ch;

async function waitFor(pred, ms = 5000) {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end) await sleep(20);
}

async function connect() {
  conn = await p((cb) => amqp.connect(URL, cb));
  ch = await p((cb) => conn.createChannel(cb));
}

async function declare() {
  const x = name(C, 'direct');
  await p((cb) => ch.assertExchange(x, 'direct', { autoDelete: true, durable: false, arguments: { 'x-note': 'kept' } }, cb));
  const q = (await p((cb) => ch.assertQueue(name(C, 'q'), { autoDelete: true, durable: false, arguments: { 'x-max-length': 10 } }, cb))).queue;
  await p((cb) => ch.bindQueue(q, x, 'k', { 'x-note': 'b' }, cb));
  ch.publish(x, 'k', Buffer.from('routed'));
  await sleep(100);
  const m = await p((cb) => ch.get(q, { noAck: true }, cb));
  eq('routed', 'routed', m && m.content.toString());
}

async function confirmsMandatory() {
  const cc = await p((cb) => conn.createConfirmChannel(cb));
  const q = (await p((cb) => cc.assertQueue('', { exclusive: true }, cb))).queue;
  const returned = [];
  cc.on('return', (m) => returned.push([m.fields.replyCode, m.fields.replyText]));
  await p((cb) => cc.publish('', q, Buffer.from('ok'), { mandatory: true }, cb));
  await p((cb) => cc.publish('', name(C, 'nowhere'), Buffer.from('lost'), { mandatory: true }, cb));
  eq('returns', [[312, 'NO_ROUTE']], returned);
  await p((cb) => cc.close(cb));
}

async function prefetchAck() {
  const c2 = await p((cb) => conn.createChannel(cb));
  await p((cb) => c2.prefetch(2, false, cb));
  const q = (await p((cb) => c2.assertQueue('', { exclusive: true }, cb))).queue;
  const got = [];
  await p((cb) => c2.consume(q, (m) => got.push(m), { noAck: false }, cb));
  for (let i = 0; i < 5; i++) c2.sendToQueue(q, Buffer.from(String(i)));
  await sleep(500);
  eq('unacked deliveries with prefetch 2', 2, got.length);
  c2.ack(got[1], true); // multiple: acks both
  await waitFor(() => got.length === 4);
  eq('after a multiple ack', 4, got.length);
  c2.ackAll();
  await waitFor(() => got.length === 5);
  c2.ack(got[4]);
  eq('bodies', ['0', '1', '2', '3', '4'], got.map((m) => m.content.toString()));
  await p((cb) => c2.close(cb));
}

async function nackRequeue() {
  const q = (await p((cb) => ch.assertQueue('', { exclusive: true }, cb))).queue;
  ch.sendToQueue(q, Buffer.from('again'));
  await sleep(100);
  const m = await p((cb) => ch.get(q, {}, cb));
  ch.nack(m, false, true);
  const m2 = await p((cb) => ch.get(q, {}, cb));
  expect(m2 && m2.fields.redelivered, 'redelivered flag not set after nack requeue');
  ch.ack(m2);
}

async function deadLetter() {
  const dlx = name(C, 'dlx');
  const src = name(C, 'dl-src');
  await p((cb) => ch.assertExchange(dlx, 'fanout', { autoDelete: true, durable: false }, cb));
  const dlq = (await p((cb) => ch.assertQueue('', { exclusive: true }, cb))).queue;
  await p((cb) => ch.bindQueue(dlq, dlx, '', {}, cb));
  await p((cb) => ch.assertQueue(src, { exclusive: true, deadLetterExchange: dlx }, cb));
  ch.sendToQueue(src, Buffer.from('doomed'));
  await sleep(100);
  const m = await p((cb) => ch.get(src, {}, cb));
  expect(m, 'message not in source queue');
  ch.reject(m, false);
  let got = false;
  const end = Date.now() + 5000;
  while (!got && Date.now() < end) {
    got = await p((cb) => ch.get(dlq, { noAck: true }, cb));
    if (!got) await sleep(50);
  }
  expect(got, 'nothing dead-lettered');
  eq('routing key kept', src, got.fields.routingKey);
  checkXDeath(got.properties.headers, src);
}

async function rpc() {
  const sch = await p((cb) => conn.createChannel(cb));
  const rq = (await p((cb) => sch.assertQueue(name(C, 'rpc'), { autoDelete: true, durable: false }, cb))).queue;
  await p((cb) => sch.consume(rq, (m) => {
    sch.sendToQueue(m.properties.replyTo, Buffer.from(`${m.content}!`), { correlationId: m.properties.correlationId });
    sch.ack(m);
  }, {}, cb));
  const reply = (await p((cb) => ch.assertQueue('', { exclusive: true }, cb))).queue;
  const replies = {};
  await p((cb) => ch.consume(reply, (m) => { replies[m.properties.correlationId] = m.content.toString(); }, { noAck: true }, cb));
  ch.sendToQueue(rq, Buffer.from('ping'), { replyTo: reply, correlationId: 'id-1' });
  await waitFor(() => replies['id-1']);
  eq('replies', { 'id-1': 'ping!' }, replies);
}

(async () => {
  await check('connect', connect);
  if (ch) {
    await check('declare', declare);
    await check('confirm-mandatory', confirmsMandatory);
    await check('prefetch-ack', prefetchAck);
    await check('nack-requeue', nackRequeue);
    await check('dead-letter', deadLetter);
    await check('rpc', rpc);
    await p((cb) => conn.close(cb));
  }
  finish();
})();
