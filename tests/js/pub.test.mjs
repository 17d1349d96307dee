// pub.test.mjs -- clients/herald-pub against a real hub: one event, stdin lines over one
// keep-alive connection, the hub's errors, usage, --demo, and valgrind where it applies.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
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
    ['--url', 'ftp://h/', 'x', '1'], ['x', '{bad'], ['--rate', '5', 'x'], ['--demo', 'x'], ['--demo', '--rate', '0']]) {
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
