// Shared bits of the amqplib programs: settings, check reporting, x-death check.
'use strict';
const fs = require('node:fs');
const crypto = require('node:crypto');

const HOST = process.env.WARREN_AMQP_HOST || '127.0.0.1';
const PORT = process.env.WARREN_AMQP_PORT || '5672';
const URL = `amqp://guest:guest@${HOST}:${PORT}`;
const RUN = crypto.randomBytes(4).toString('hex');
const results = { passed: 0, failed: 0 };

const name = (client, what) => `clients.${client}.${RUN}.${what}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function expect(cond, why) {
  if (!cond) throw new Error(why);
}
function eq(what, want, got) {
  const w = JSON.stringify(want);
  const g = JSON.stringify(got);
  if (w !== g) throw new Error(`${what}: expected ${w}, got ${g}`);
}

async function check(label, fn) {
  try {
    await fn();
    results.passed++;
    console.log(`PASS ${label}`);
  } catch (e) {
    results.failed++;
    console.log(`FAIL ${label}: ${e && e.message}`);
    console.error(e && e.stack);
  }
}

function checkXDeath(headers, queue) {
  expect(headers, 'dead-lettered message has no headers');
  const d = headers['x-death'];
  expect(Array.isArray(d) && d.length === 1, `x-death: ${JSON.stringify(d)}`);
  eq('x-death count', 1, Number(d[0].count));
  eq('x-death reason', 'rejected', d[0].reason);
  eq('x-death queue', queue, d[0].queue);
  eq('x-death exchange', '', d[0].exchange);
  eq('x-death routing-keys', [queue], d[0]['routing-keys']);
  expect(d[0].time !== undefined, 'x-death has no time');
  eq('x-first-death-queue', queue, headers['x-first-death-queue']);
}

async function waitRestarted(ms = 60000) {
  const f = process.env.WARREN_CLIENTS_RESTARTED_FILE;
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (f && fs.existsSync(f)) return true;
    await sleep(100);
  }
  return false;
}

function finish() {
  console.log(`${results.passed} passed, ${results.failed} failed`);
  process.exit(results.failed === 0 ? 0 : 1);
}

module.exports = { HOST, PORT, URL, RUN, name, sleep, expect, eq, check, checkXDeath, waitRestarted, finish };
