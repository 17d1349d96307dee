// pub.test.mjs -- clients/herald-pub against a real hub: one event, stdin lines over one
// keep-alive connection, the hub's errors, usage, --demo, and valgrind where it applies; and
// against a fake HTTP server made here: --retry (Retry-After, backoff, one Idempotency-Key per
// event across its retries), --idempotency-key, --demo's waits after 429 and 503.
// --idempotency-key against a real hub (the hub's duplicate answer): history.test.mjs.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, connect as tcpConnect } from 'node:net';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';

import { Herald } from '../../clients/js/herald.js';
import { HERALD_PUB_BIN, Hub, sleep, uniqueChannel, waitFor } from './harness.mjs';

let hub;
before(async () => { hub = await new Hub().start(); });
after(async () => {
  const r = await hub.stop();
  assert.deepEqual(r, { code: 0, signal: null });
});

/** Runs herald-pub to completion (at most timeoutMs); resolves {code, stdout, stderr}. */
function pub(args, { input = null, timeoutMs = 10000, wrapper = [] } = {}) {
  return new Promise((resolve, reject) => {
    const argv = [...wrapper, HERALD_PUB_BIN, ...args];
    const p = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`herald-pub ${args.join(' ')}: no exit within ${timeoutMs} ms`)); }, timeoutMs);
    p.once('exit', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
    p.stdin.on('error', () => {});
    if (input !== null) p.stdin.end(input);
    else p.stdin.end();
  });
}

const url = () => ['--url', `${hub.apiUrl}/publish`];

async function listener(channels) {
  const got = [];
  const h = new Herald(hub.wsUrl, { WebSocket, channels });
  h.on('event', (e) => got.push(e));
  h.connect();
  await waitFor(() => channels.every((c) => h.isActive(c)), { what: 'the subscriptions' });
  return { h, got };
}

test('one event from the command line: its id on stdout, the event delivered', async () => {
  const ch = uniqueChannel('pub');
  const { h, got } = await listener([ch]);
  const r = await pub([...url(), '--event', 'created', ch, '{"id":42,"name":"Ada"}']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  const id = r.stdout.trim();
  assert.match(id, /^\S+$/);
  await waitFor(() => got.length === 1, { what: 'the event' });
  assert.deepEqual({ ...got[0], ts: 0 }, { type: 'event', channel: ch, event: 'created', id, seq: 1, ts: 0, data: { id: 42, name: 'Ada' } });
  h.close();
});

test('stdin: one event per line, blank lines skipped, one keep-alive connection', async () => {
  /* a TCP relay counts the connections herald-pub makes */
  let connections = 0;
  const relay = createServer((down) => {
    connections++;
    const up = tcpConnect({ port: hub.apiPort, host: '127.0.0.1' });
    down.pipe(up).pipe(down);
    down.on('error', () => up.destroy());
    up.on('error', () => down.destroy());
  });
  await new Promise((r) => relay.listen(0, '127.0.0.1', r));
  const ch = uniqueChannel('lines');
  const { h, got } = await listener([ch]);
  const lines = [];
  for (let i = 0; i < 50; i++) lines.push(JSON.stringify({ i }), i % 10 === 0 ? '' : null);
  const r = await pub(['--url', `http://127.0.0.1:${relay.address().port}/publish`, ch],
                      { input: lines.filter((l) => l !== null).join('\n') + '\n"last"\n' });
  assert.equal(r.code, 0, r.stderr);
  const ids = r.stdout.trim().split('\n');
  assert.equal(ids.length, 51);
  assert.equal(new Set(ids).size, 51, 'distinct ids');
  assert.equal(connections, 1, 'one connection for every line');
  await waitFor(() => got.length === 51, { what: '51 events' });
  assert.deepEqual(got.slice(0, 50).map((e) => e.data.i), [...Array(50).keys()]);
  assert.equal(got[50].data, 'last');
  assert.deepEqual(got.map((e) => e.id), ids);
  h.close();
  relay.close();
});

test('a refused publish: exit 1, the status and the hub\'s error JSON on stderr', async () => {
  const r = await pub([...url(), '$stats', '1']);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^herald-pub: 400 Bad Request: \{"error":"bad_request","message":"[^"]+"\}\n$/);

  const r2 = await pub(['--url', `${hub.apiUrl}/nope`, 'x', '1']);
  assert.equal(r2.code, 1);
  assert.match(r2.stderr, /404 .*"error":"not_found"/);
});

test('stdin stops at the first bad line, which it names', async () => {
  const ch = uniqueChannel('bad');
  const r = await pub([...url(), ch], { input: '1\n2\n{oops\n4\n' });
  assert.equal(r.code, 1);
  assert.equal(r.stdout.trim().split('\n').length, 2);
  assert.match(r.stderr, /stdin line 3: invalid JSON/);
});

test('an unreachable hub: exit 1 with a message', async () => {
  const r = await pub(['--url', 'http://127.0.0.1:1/publish', 'x', '1']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot connect to 127\.0\.0\.1:1: Connection refused/);
});

test('usage errors: exit 2', async () => {
  for (const args of [[], ['--bogus', 'x'], ['a', 'b', 'c'], ['--url', 'https://h/publish', 'x', '1'],
    ['--url', 'ftp://h/', 'x', '1'], ['x', '{bad'], ['--rate', '5', 'x'], ['--demo', 'x'], ['--demo', '--rate', '0'],
    ['--idempotency-key', '', 'x', '1'], ['--idempotency-key', 'a b', 'x', '1'], ['--idempotency-key', 'k'.repeat(129), 'x', '1'],
    ['--idempotency-key', 'k'.repeat(101), 'x'], ['--demo', '--retry'], ['--demo', '--idempotency-key', 'k']]) {
    const r = await pub(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^herald-pub: /, args.join(' '));
  }
  const help = await pub(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--demo/);
  assert.match((await pub(['--version'])).stdout, /^herald-pub \d+\.\d+\.\d+\n$/);
});

test('--demo: orders, signups and metrics at the rate asked, until SIGINT', async () => {
  const { h, got } = await listener(['orders', 'signups', 'metrics']);
  const p = spawn(HERALD_PUB_BIN, [...url(), '--demo', '--rate', '40'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d) => { stdout += d; });
  p.stderr.on('data', (d) => { stderr += d; });
  const exit = new Promise((r) => p.once('exit', (code, signal) => r({ code, signal })));
  await sleep(2500);
  p.kill('SIGINT');
  const r = await Promise.race([exit, sleep(5000).then(() => 'no exit')]);
  assert.deepEqual(r, { code: 0, signal: null }, stderr);
  const lines = stdout.trim().split('\n');
  assert.ok(lines.length >= 80 && lines.length <= 110, `${lines.length} events in 2.5 s at 40/s`);
  for (const l of lines) assert.match(l, /^(orders (created|paid|shipped)|signups created|metrics (cpu|mem|latency)) \S+$/, l);
  assert.match(stderr, new RegExp(`demo: ${lines.length} events accepted`));
  await waitFor(() => got.length === lines.length, { what: 'every demo event delivered' });
  const by = (c, ev) => got.filter((e) => e.channel === c && (!ev || e.event === ev));
  assert.ok(by('metrics').length && by('orders').length && by('signups').length, 'all three channels');
  const order = by('orders', 'created')[0].data;
  assert.match(order.order_id, /^ord_\d+$/);
  assert.ok(order.amount > 0 && Array.isArray(order.items) && order.customer.includes(' '));
  const signup = by('signups')[0].data;
  assert.ok(['free', 'pro', 'team', 'enterprise'].includes(signup.plan));
  assert.match(signup.email, /^[a-z.-]+@example\.com$/);
  h.close();
});

// --- against a fake API: --retry, --idempotency-key, --demo after 429/503 ------------------

/** An HTTP server that records each request and answers as `answer(request, index)` says:
 *  {status, headers, body}, or 'reset' to drop the connection. */
async function fakeApi(answer) {
  const requests = [];
  let ids = 0;
  const srv = createHttpServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const rec = { at: Date.now(), key: req.headers['idempotency-key'], body: JSON.parse(body) };
      requests.push(rec);
      const a = answer(rec, requests.length - 1) || { status: 202, body: { id: `id-${++ids}` } };
      if (a === 'reset') { req.socket.destroy(); return; }
      res.writeHead(a.status, { 'Content-Type': 'application/json', ...(a.headers || {}) });
      res.end(JSON.stringify(a.body));
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { requests, url: `http://127.0.0.1:${srv.address().port}/publish`, close: () => srv.close() };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('--retry: 503 with Retry-After, then a reset, then 202: the same generated key each time', async () => {
  const api = await fakeApi((rec, i) => [
    { status: 503, headers: { 'Retry-After': '1' }, body: { error: 'overloaded', message: 'fan-out is behind' } },
    'reset',
  ][i]);
  const r = await pub(['--url', api.url, '--retry', '--event', 'e', 'orders', '{"n":1}']);
  api.close();
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'id-1\n');
  assert.equal(api.requests.length, 3);
  const keys = api.requests.map((q) => q.key);
  assert.match(keys[0], UUID);
  assert.deepEqual(new Set(keys).size, 1, `one key across the retries: ${keys}`);
  const waited = api.requests[1].at - api.requests[0].at;
  assert.ok(waited >= 1000 && waited < 2500, `Retry-After 1 honoured: ${waited} ms`);
  /* the reset came on a kept-alive connection before any byte of an answer: http_client.c
   * sends such a request again by itself, on a new connection (with its key) */
  assert.match(r.stderr, /^herald-pub: 503 Service Unavailable: \{"error":"overloaded",[^\n]*; retry 1 of 5 in 1\.\d s\n$/);
});

test('--retry: a connection reset before any answer is retried, with the same key', async () => {
  const api = await fakeApi((rec, i) => (i === 0 ? 'reset' : null));
  const r = await pub(['--url', api.url, '--retry', 'orders', '2']);
  api.close();
  assert.equal(r.code, 0, r.stderr);
  assert.equal(api.requests.length, 2);
  assert.equal(api.requests[0].key, api.requests[1].key);
  assert.match(r.stderr, /^herald-pub: no reply from 127\.0\.0\.1:\d+: connection closed; retry 1 of 5 in [\d.]+ s\n$/);
});

test('--retry with stdin: a key per line, kept across that line\'s retries; 429 retried', async () => {
  const api = await fakeApi((rec, i) => (i === 1 ? { status: 429, headers: { 'Retry-After': '1' }, body: { error: 'rate_limited', message: 'slow down' } } : null));
  const r = await pub(['--url', api.url, '--retry', 'ch'], { input: '1\n2\n3\n' });
  api.close();
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(api.requests.map((q) => q.body.data), [1, 2, 2, 3]);
  const keys = api.requests.map((q) => q.key);
  assert.ok(keys.every((k) => UUID.test(k)), keys.join(' '));
  assert.equal(keys[1], keys[2], 'line 2 keeps its key');
  assert.equal(new Set(keys).size, 3, 'lines have their own keys');
});

test('--retry gives up after 6 requests; 4xx is never retried; without --retry nothing is', async () => {
  let api = await fakeApi(() => ({ status: 503, body: { error: 'unavailable', message: 'redis is down' } }));
  let r = await pub(['--url', api.url, '--retry', 'ch', '1'], { timeoutMs: 30000 });
  assert.equal(r.code, 1);
  assert.equal(api.requests.length, 6);
  assert.match(r.stderr, /retry 5 of 5 in [\d.]+ s\nherald-pub: 503 Service Unavailable: \{"error":"unavailable"[^\n]*\}\n$/);
  api.close();

  api = await fakeApi(() => ({ status: 400, body: { error: 'bad_request', message: 'no' } }));
  r = await pub(['--url', api.url, '--retry', 'ch', '1']);
  assert.equal(r.code, 1);
  assert.equal(api.requests.length, 1);
  api.close();

  api = await fakeApi(() => ({ status: 503, headers: { 'Retry-After': '1' }, body: { error: 'overloaded', message: 'x' } }));
  r = await pub(['--url', api.url, 'ch', '1']);
  assert.equal(r.code, 1);
  assert.equal(api.requests.length, 1);
  assert.equal(api.requests[0].key, undefined, 'no key without --retry or --idempotency-key');
  api.close();
});

test('--idempotency-key: K for one event, K-LINE for stdin lines; a duplicate answer is noted', async () => {
  const api = await fakeApi((rec) => (rec.key === 'batch7-2' ? { status: 202, body: { id: 'first-id', duplicate: true } } : null));
  let r = await pub(['--url', api.url, '--idempotency-key', 'order-17:paid', 'ch', '1']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(api.requests[0].key, 'order-17:paid');
  r = await pub(['--url', api.url, '--idempotency-key', 'batch7', 'ch'], { input: '1\n\n2\n' });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(api.requests.slice(1).map((q) => q.key), ['batch7-1', 'batch7-3'], 'blank lines count');
  r = await pub(['--url', api.url, '--idempotency-key', 'batch7', 'ch'], { input: '1\n2\n' });
  assert.equal(r.stdout.split('\n')[1], 'first-id');
  assert.match(r.stderr, /^herald-pub: the hub had Idempotency-Key batch7-2 already: not delivered again\n$/);
  api.close();
});

test('--demo: after a 429 or 503 it waits as Retry-After says, then goes on', async () => {
  const api = await fakeApi((rec, i) => (i === 0 ? { status: 429, headers: { 'Retry-After': '2' }, body: { error: 'rate_limited', message: 'x' } } : null));
  const p = spawn(HERALD_PUB_BIN, ['--url', api.url, '--demo', '--rate', '20'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  p.stderr.on('data', (d) => { stderr += d; });
  const exit = new Promise((r) => p.once('exit', (code, signal) => r({ code, signal })));
  await waitFor(() => api.requests.length >= 3, { timeoutMs: 6000, what: 'the demo to go on' });
  p.kill('SIGINT');
  assert.deepEqual(await exit, { code: 0, signal: null }, stderr);
  api.close();
  const waited = api.requests[1].at - api.requests[0].at;
  assert.ok(waited >= 1900 && waited < 3000, `Retry-After 2 honoured: ${waited} ms`);
  assert.ok(api.requests.every((q) => q.key === undefined));
});

/* valgrind cannot run a binary built with AddressSanitizer (the HERALD_SANITIZE build) */
const hasValgrind = spawnSync('valgrind', ['--version']).status === 0;
const isAsan = (() => {
  try { return readFileSync(HERALD_PUB_BIN).includes('__asan_init'); } catch { return false; }
})();

test('valgrind: no leak or error in one event, stdin lines, a refusal and --demo', {
  skip: !hasValgrind ? 'valgrind is not installed' : isAsan ? 'an AddressSanitizer build' : false,
  timeout: 60000,
}, async () => {
  const vg = ['valgrind', '-q', '--error-exitcode=99', '--leak-check=full', '--show-leak-kinds=all',
              '--errors-for-leak-kinds=all'];
  const ch = uniqueChannel('vg');
  let r = await pub([...url(), '--event', 'e', ch, '{"a":[1,2,{"b":null}]}'], { wrapper: vg, timeoutMs: 30000 });
  assert.equal(r.code, 0, r.stderr);
  r = await pub([...url(), ch], { input: '1\n\n"two"\n{"three":3}\n', wrapper: vg, timeoutMs: 30000 });
  assert.equal(r.code, 0, r.stderr);
  r = await pub([...url(), '$nope', '1'], { wrapper: vg, timeoutMs: 30000 });
  assert.equal(r.code, 1, r.stderr);
  r = await pub([...url(), ch], { input: '1\nbad\n', wrapper: vg, timeoutMs: 30000 });
  assert.equal(r.code, 1, r.stderr);
  const api = await fakeApi((rec, i) => (i === 1 ? { status: 503, headers: { 'Retry-After': '0' }, body: { error: 'overloaded', message: 'x' } } : null));
  r = await pub(['--url', api.url, '--retry', ch], { input: '1\n2\n', wrapper: vg, timeoutMs: 30000 });
  assert.equal(r.code, 0, r.stderr);
  r = await pub(['--url', api.url, '--idempotency-key', 'k', ch, '3'], { wrapper: vg, timeoutMs: 30000 });
  api.close();
  assert.equal(r.code, 0, r.stderr);
  const p = spawn(vg[0], [...vg.slice(1), HERALD_PUB_BIN, ...url(), '--demo', '--rate', '300'],
                  { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  p.stderr.on('data', (d) => { stderr += d; });
  const exit = new Promise((res) => p.once('exit', (code, signal) => res({ code, signal })));
  await waitFor(() => /Ctrl-C stops/.test(stderr), { timeoutMs: 15000, what: 'the demo to start' });
  await sleep(1500);
  p.kill('SIGINT');
  const e = await Promise.race([exit, sleep(15000).then(() => 'no exit')]);
  assert.deepEqual(e, { code: 0, signal: null }, stderr);
  assert.doesNotMatch(stderr, /==\d+==/, 'valgrind reported nothing');
});
