// amqplib over TLS (amqps://): the server verified against the test CA (TLS 1.3 and
// 1.2), a client certificate on a verify_peer listener, and the refusals: a client
// trusting another CA, and a client certificate from a CA the broker does not trust.
// Needs WARREN_AMQPS_PORT and WARREN_TLS_DIR (ca.pem, client.pem/.key, other-ca.pem,
// stranger.pem/.key), which tests/clients/run.sh sets up.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const amqp = require('amqplib');
const { HOST, name, expect, eq, check, finish } = require('./common');

const C = 'amqplib-tls';
const PORT = process.env.WARREN_AMQPS_PORT;
const DIR = process.env.WARREN_TLS_DIR;
const URL = `amqps://guest:guest@${HOST}:${PORT}`;
const file = (f) => fs.readFileSync(path.join(DIR, f));

// A publish and a get over the connection: the TLS stream carries AMQP both ways.
async function roundTrip(conn, what) {
  const ch = await conn.createChannel();
  const q = (await ch.assertQueue(name(C, what), { exclusive: true })).queue;
  const body = `over tls: ${what}`;
  ch.sendToQueue(q, Buffer.from(body));
  let m = false;
  for (let i = 0; i < 100 && !m; i++) {
    m = await ch.get(q, { noAck: true });
    if (!m) await new Promise((r) => setTimeout(r, 20));
  }
  expect(m, 'no message came back');
  eq('body', body, m.content.toString());
  await ch.close();
}

// The connection must fail (handshake refused, or closed before connection.start).
async function refused(opts, what) {
  let conn;
  try {
    conn = await amqp.connect(URL, { ...opts, timeout: 10000 });
  } catch (e) {
    return e;
  }
  await conn.close().catch(() => {});
  throw new Error(`${what}: the connection was accepted`);
}

async function main() {
  expect(PORT && DIR, 'WARREN_AMQPS_PORT and WARREN_TLS_DIR must be set');
  for (const [label, v] of [['TLS 1.3', 'TLSv1.3'], ['TLS 1.2', 'TLSv1.2']]) {
    await check(`amqps, server verified by the CA (${label})`, async () => {
      const conn = await amqp.connect(URL, { ca: [file('ca.pem')], minVersion: v, maxVersion: v });
      eq('protocol', v, conn.connection.stream.getProtocol());
      expect(conn.connection.stream.authorized, 'server certificate not authorized');
      await roundTrip(conn, `server-${v}`);
      await conn.close();
    });
  }
  await check('amqps, client certificate on a verify_peer listener', async () => {
    const conn = await amqp.connect(URL, { ca: [file('ca.pem')], cert: file('client.pem'), key: file('client.key') });
    await roundTrip(conn, 'client-cert');
    await conn.close();
  });
  await check('amqps, a server certificate from another CA is refused', async () => {
    const e = await refused({ ca: [file('other-ca.pem')] }, 'other CA');
    expect(/cert/i.test(`${e && e.code} ${e && e.message}`), `unexpected error: ${e && e.code} ${e && e.message}`);
  });
  await check('amqps, a client certificate from an untrusted CA is refused', async () => {
    await refused({ ca: [file('ca.pem')], cert: file('stranger.pem'), key: file('stranger.key') }, 'stranger');
  });
  finish();
}

main().catch((e) => {
  console.log(`FAIL amqplib tls: ${e && e.message}`);
  process.exit(1);
});
