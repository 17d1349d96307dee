// client.test.mjs -- clients/js/herald.js: unit tests on a fake WebSocket and a fake clock
// (backoff, refusals, heartbeat, acks), then against real herald processes through the `ws`
// package (events, resubscription after a hub restart, no retry storm on 1008, a dead link).

import assert from 'node:assert/strict';
import { createServer, connect as tcpConnect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';

import { Herald, HeraldError, backoffDelay, isRefusal, isValidChannel } from '../../clients/js/herald.js';
import { FakeWS, fakeClient, flush } from './fakes.mjs';
import { Hub, nextOf, sleep, uniqueChannel, waitFor } from './harness.mjs';

// --- units ---------------------------------------------------------------------------------

describe('backoff', () => {
  test('full jitter within random(0, min(max, initial * 2^attempt))', () => {
    const b = { initialMs: 500, maxMs: 10000 };
    const bounds = [500, 1000, 2000, 4000, 8000, 10000, 10000, 10000];
    bounds.forEach((bound, attempt) => {
      assert.equal(backoffDelay(attempt, b, () => 0), 0);
      assert.equal(backoffDelay(attempt, b, () => 0.5), bound / 2);
      assert.equal(backoffDelay(attempt, b, () => 0.999999), bound - 1);
    });
    assert.equal(backoffDelay(1000, b, () => 0.999999), 9999, 'a huge attempt stays capped');
  });

  test('the reconnect delays a client draws grow with jitter, within bounds', () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 48271) % 2147483647) / 2147483647);
    const { h, clock, states } = fakeClient({ random: rand, backoff: { initialMs: 100, maxMs: 3200 } });
    h.connect();
    for (let i = 0; i < 9; i++) {
      FakeWS.last.drop(1006);
      const s = states.at(-1);
      assert.equal(s.s, 'reconnecting');
      const bound = Math.min(3200, 100 * 2 ** i);
      assert.ok(s.delayMs >= 0 && s.delayMs < bound, `attempt ${i}: ${s.delayMs} in [0, ${bound})`);
      const before = FakeWS.all.length;
      if (s.delayMs > 0) {
        clock.advance(s.delayMs - 1);
        assert.equal(FakeWS.all.length, before, 'no attempt before the delay');
      }
      clock.advance(1);
      assert.equal(FakeWS.all.length, before + 1, 'one attempt once the delay is over');
    }
    const delays = states.filter((s) => s.s === 'reconnecting').map((s) => s.delayMs);
    assert.ok(new Set(delays).size > 5, `jittered: ${delays}`);
    assert.ok(delays.slice(5).reduce((a, b) => a + b) > delays.slice(0, 4).reduce((a, b) => a + b),
      `later delays are longer on the whole: ${delays}`);
    h.close();
  });

  test('a connection that stayed open resets the backoff', () => {
    const { h, clock, states } = fakeClient({ random: () => 0.999 });
    h.connect();
    for (let i = 0; i < 4; i++) {
      FakeWS.last.drop(1006);
      clock.advance(states.at(-1).delayMs);
    }
    assert.ok(states.at(-1).delayMs > 3000);
    FakeWS.last.accept();
    clock.advance(6000);
    FakeWS.last.drop(1006);
    assert.ok(states.at(-1).delayMs < 500, `reset: ${states.at(-1).delayMs}`);
    h.close();
  });
});

describe('close codes', () => {
  test('1001 from an open connection: one immediate retry, then backoff', () => {
    const { h, clock, states } = fakeClient();
    h.connect();
    FakeWS.last.accept();
    clock.advance(6000);
    FakeWS.last.drop(1001, 'going away');
    assert.deepEqual(states.at(-1), { s: 'reconnecting', code: 1001, reason: 'going away', delayMs: 0, attempt: 0 });
    clock.advance(0);
    assert.equal(FakeWS.all.length, 2, 'retried at once');
    FakeWS.last.drop(1006);
    assert.equal(states.at(-1).delayMs, 250, 'then backoff: 0.5 * 500');
    h.close();
  });

  for (const code of [1008, 4001, 4999]) {
    test(`${code}: refused, and no retry until connect()`, () => {
      const { h, clock, states } = fakeClient();
      h.connect();
      FakeWS.last.accept();
      FakeWS.last.drop(code, 'unauthorized');
      assert.equal(h.state, 'refused');
      assert.deepEqual(states.at(-1), { s: 'refused', code, reason: 'unauthorized' });
      clock.advance(10 * 60 * 1000);
      assert.equal(FakeWS.all.length, 1, 'no new attempt');
      assert.equal(clock.pending, 0, 'no timer left');
      h.connect();
      assert.equal(FakeWS.all.length, 2, 'connect() tries again');
      assert.equal(h.state, 'connecting');
      h.close();
    });
  }

  test('1008 before the welcome (a refused token) is refused too', async () => {
    const { h } = fakeClient({ token: 'bad.token' });
    const opened = h.opened();
    h.connect();
    assert.match(FakeWS.last.url, /[?&]token=bad\.token/);
    FakeWS.last.drop(1008, 'unauthorized');
    await assert.rejects(opened, (e) => e instanceof HeraldError && e.code === 'refused' && e.closeCode === 1008);
  });

  test('close(): 1000, state closed, no retry, timers gone', () => {
    const { h, clock, states } = fakeClient();
    h.connect();
    const ws = FakeWS.last;
    ws.accept();
    h.close();
    assert.deepEqual(ws.closedWith, { code: 1000, reason: 'client closing' });
    assert.equal(states.at(-1).s, 'closed');
    clock.advance(600000);
    assert.equal(FakeWS.all.length, 1);
    assert.equal(clock.pending, 0);
  });

  test('isRefusal', () => {
    assert.ok(isRefusal(1008) && isRefusal(4000) && isRefusal(4999));
    assert.ok(!isRefusal(1000) && !isRefusal(1001) && !isRefusal(1006) && !isRefusal(1013) && !isRefusal(5000));
  });
});

describe('subscriptions', () => {
  test('channel names', () => {
    for (const ok of ['a', 'orders', '$stats', 'a.b:c-d_e', 'x'.repeat(128)]) assert.ok(isValidChannel(ok), ok);
    for (const bad of ['', '$', 'a b', 'é', 'x'.repeat(129), 'a,b', 'a/b', null, 3]) assert.ok(!isValidChannel(bad), String(bad));
    const { h } = fakeClient();
    assert.throws(() => h.subscribe('a b', () => {}), TypeError);
  });

  test('channels go in the URL of every connection, also after a reconnect', () => {
    const { h, clock, states } = fakeClient({ channels: ['a'] });
    h.subscribe('b', () => {});
    h.connect();
    assert.match(FakeWS.last.url, /^ws:\/\/hub\.test\/ws\?channels=a,b$/);
    FakeWS.last.accept();
    h.subscribe('c', () => {});
    assert.deepEqual(FakeWS.last.sent.map((f) => [f.type, f.channel]), [['subscribe', 'c']]);
    FakeWS.last.drop(1006);
    clock.advance(states.at(-1).delayMs);
    assert.match(FakeWS.last.url, /\?channels=a,b,c$/);
    FakeWS.last.accept();
    assert.deepEqual(FakeWS.last.sent, [], 'no frames needed: the URL did it');
    h.close();
  });

  test('several handlers share one wire subscription', async () => {
    const { h } = fakeClient();
    h.connect();
    const ws = FakeWS.last;
    ws.accept();
    const got = [];
    const u1 = h.subscribe('orders', (e) => got.push(['h1', e.data]));
    const u2 = h.subscribe('orders', (e) => got.push(['h2', e.data]));
    assert.equal(ws.sent.filter((f) => f.type === 'subscribe').length, 1);
    const ref = ws.sent[0].ref;
    ws.recv({ type: 'subscribed', channel: 'orders', ref });
    await u1.ready;
    await u2.ready;
    assert.ok(h.isActive('orders'));
    ws.recv({ type: 'event', channel: 'orders', id: '1', ts: 1, data: 1 });
    u1();
    assert.equal(ws.sent.filter((f) => f.type === 'unsubscribe').length, 0, 'h2 still listens');
    ws.recv({ type: 'event', channel: 'orders', id: '2', ts: 2, data: 2 });
    u2();
    assert.deepEqual(ws.sent.at(-1), { type: 'unsubscribe', channel: 'orders', ref: ref + 1 });
    ws.recv({ type: 'event', channel: 'orders', id: '3', ts: 3, data: 3 });
    assert.deepEqual(got, [['h1', 1], ['h2', 1], ['h2', 2]]);
    assert.deepEqual(h.channels, []);
    h.close();
  });

  test('an error frame echoing the ref rejects ready, and the channel is dropped', async () => {
    const { h } = fakeClient();
    const errors = [];
    h.on('error', (e) => errors.push(e));
    h.connect();
    const ws = FakeWS.last;
    ws.accept();
    const u = h.subscribe('secret', () => {});
    ws.recv({ type: 'error', code: 'forbidden', message: 'not in your token', ref: ws.sent[0].ref });
    await assert.rejects(u.ready, (e) => e.code === 'forbidden' && e.channel === 'secret');
    assert.deepEqual(h.channels, []);
    assert.equal(errors.length, 1);
    h.close();
  });

  test('a URL channel the hub refuses (ref-less error after the welcome) is dropped', async () => {
    const { h } = fakeClient({ channels: ['ok', 'nope'] });
    const u = h.subscribe('nope', () => {});
    h.connect();
    const ws = FakeWS.last;
    ws.accept();
    ws.recv({ type: 'subscribed', channel: 'ok' });
    ws.recv({ type: 'error', code: 'forbidden', message: 'no' });
    await assert.rejects(u.ready, (e) => e.code === 'forbidden' && e.channel === 'nope');
    assert.deepEqual(h.channels, ['ok']);
    assert.ok(h.isActive('ok'));
    h.close();
  });

  test('a subscribe dropped for the frame rate (ref-less rate_limited) is sent again', async () => {
    const { h, clock } = fakeClient();
    h.connect();
    const ws = FakeWS.last;
    ws.accept();
    const u = h.subscribe('busy', () => {});
    ws.recv({ type: 'error', code: 'rate_limited', message: 'too many frames: slow down' });
    await flush();
    assert.equal(ws.sent.length, 1);
    /* the hub forgives after a second without a refused frame: the client waits 1.5 s */
    clock.advance(1499);
    assert.equal(ws.sent.length, 1);
    clock.advance(1);
    assert.deepEqual(ws.sent.map((f) => f.type), ['subscribe', 'subscribe']);
    ws.recv({ type: 'subscribed', channel: 'busy', ref: ws.sent[1].ref });
    await u.ready;
    h.close();
  });

  test('a handler that throws does not stop the others', () => {
    const { h } = fakeClient();
    const reported = [];
    const saved = globalThis.reportError;
    globalThis.reportError = (e) => reported.push(e);
    try {
      h.connect();
      FakeWS.last.accept();
      let got = 0;
      h.subscribe('x', () => { throw new Error('boom'); });
      h.subscribe('x', () => got++);
      FakeWS.last.recv({ type: 'event', channel: 'x', id: '1', ts: 1, data: null });
      assert.equal(got, 1);
      assert.equal(reported[0].message, 'boom');
    } finally {
      globalThis.reportError = saved;
      h.close();
    }
  });
});

describe('heartbeat', () => {
  test('pings every heartbeat; a link silent for 2 x heartbeat + grace is dropped and retried', () => {
    const { h, clock, states } = fakeClient({ heartbeatGraceMs: 1000 });
    h.connect();
    const ws = FakeWS.last;
    ws.accept({ heartbeat: 10 });
    clock.advance(10000);
    assert.deepEqual(ws.sent.map((f) => f.type), ['ping']);
    ws.recv({ type: 'pong', ref: ws.sent[0].ref });
    clock.advance(10000);
    assert.deepEqual(ws.sent.map((f) => f.type), ['ping', 'ping']);
    /* no frame since t=10 s: dead at 10 + 21 = 31 s */
    clock.advance(10999);
    assert.equal(h.state, 'open');
    clock.advance(1);
    assert.equal(h.state, 'reconnecting');
    assert.equal(ws.closedWith.code, 4000);
    assert.equal(states.at(-1).code, 1006);
    clock.advance(states.at(-1).delayMs);
    assert.equal(FakeWS.all.length, 2, 'a new connection');
    h.close();
  });

  test('any frame keeps the link alive', () => {
    const { h, clock } = fakeClient({ heartbeatGraceMs: 0 });
    h.connect();
    const ws = FakeWS.last;
    ws.accept({ heartbeat: 1 });
    for (let i = 0; i < 50; i++) {
      clock.advance(1500);
      ws.recv({ type: 'event', channel: 'x', id: String(i), ts: i, data: i });
    }
    assert.equal(h.state, 'open');
    assert.equal(FakeWS.all.length, 1);
    h.close();
  });

  test('no welcome within connectTimeoutMs: the attempt is abandoned', () => {
    const { h, clock } = fakeClient({ connectTimeoutMs: 3000 });
    h.connect();
    clock.advance(3000);
    assert.equal(h.state, 'reconnecting');
    assert.equal(FakeWS.all[0].closedWith.code, 4000);
    h.close();
  });
});

// --- against a real hub --------------------------------------------------------------------

function realClient(hub, options = {}) {
  return new Herald(hub.wsUrl, { WebSocket, backoff: { initialMs: 100, maxMs: 1000 }, ...options });
}

describe('with a real hub', () => {
  let hub;
  before(async () => { hub = await new Hub().start(); });
  after(async () => {
    const r = await hub.stop();
    assert.deepEqual(r, { code: 0, signal: null }, 'the hub exits 0 on SIGTERM');
  });

  test('receives the events of its channels, in order, and only those', async () => {
    const a = uniqueChannel('a');
    const b = uniqueChannel('b');
    const h = realClient(hub, { channels: [a] });
    const gotA = [];
    const gotB = [];
    const all = [];
    h.on('event', (e) => all.push(e.channel));
    h.subscribe(a, (e) => gotA.push(e));
    const ub = h.subscribe(b, (e) => gotB.push(e));
    h.connect();
    const [welcome] = await nextOf(h, 'open');
    assert.equal(welcome.type, 'welcome');
    assert.match(welcome.connection, /^c-/);
    await ub.ready;
    await waitFor(() => h.isActive(a), { what: `${a} acknowledged` });
    for (let i = 0; i < 5; i++) await hub.publish({ channel: a, event: 'created', data: { i } });
    await hub.publish({ channel: b, data: 'b1' });
    await hub.publish({ channel: uniqueChannel('other'), data: 'nobody' });
    await waitFor(() => gotA.length === 5 && gotB.length === 1, { what: 'the events' });
    assert.deepEqual(gotA.map((e) => e.data.i), [0, 1, 2, 3, 4]);
    assert.equal(gotA[0].event, 'created');
    assert.equal(typeof gotA[0].ts, 'number');
    assert.equal(gotB[0].data, 'b1');
    assert.equal(gotB[0].event, undefined);
    ub();
    await nextOf(h, 'unsubscribed');
    await hub.publish({ channel: b, data: 'b2' });
    await hub.publish({ channel: a, data: 'a-last' });
    await waitFor(() => gotA.length === 6, { what: 'a-last' });
    assert.equal(gotB.length, 1, 'nothing after unsubscribing');
    assert.ok(!all.includes('$stats'));
    assert.ok((await h.ping()) >= 0);
    h.close();
    assert.equal(h.state, 'closed');
  });

  test('$stats carries a snapshot once a second', async () => {
    const h = realClient(hub);
    const snaps = [];
    h.subscribe('$stats', (e) => snaps.push(e.data));
    h.connect();
    await waitFor(() => snaps.length >= 2, { timeoutMs: 4000, what: 'two $stats snapshots' });
    for (const k of ['instance', 'connections', 'subscriptions', 'channels', 'events_published',
      'events_received', 'events_delivered', 'events_dropped', 'dropped', 'memory_bytes', 'uptime_s'])
      assert.ok(k in snaps[0], `${k} in $stats`);
    assert.ok(snaps[1].connections >= 1);
    h.close();
  });

  test('a subscription the hub refuses rejects ready with the hub\'s error', async () => {
    const small = await new Hub({ 'max-subscriptions': 1 }).start();
    const h = realClient(small);
    try {
      h.connect();
      await h.opened();
      await h.subscribe('one', () => {}).ready;
      const two = h.subscribe('two', () => {});
      await assert.rejects(two.ready, (e) => e.code === 'forbidden' && e.channel === 'two');
      assert.deepEqual(h.channels, ['one']);
    } finally {
      h.close();
      await small.stop();
    }
  });
});

test('resubscribes after the hub restarts on the same ports', async () => {
  const hub = await new Hub().start();
  const ch = uniqueChannel('restart');
  const h = realClient(hub);
  const got = [];
  const states = [];
  h.on('state', (s, info) => states.push([s, info.code]));
  h.subscribe(ch, (e) => got.push(e.data));
  h.connect();
  await waitFor(() => h.isActive(ch), { what: 'the first subscription' });
  await hub.publish({ channel: ch, data: 'before' });
  await waitFor(() => got.length === 1, { what: 'the event before the restart' });

  const stopped = await hub.stop();
  assert.deepEqual(stopped, { code: 0, signal: null });
  await waitFor(() => states.some(([s, code]) => s === 'reconnecting' && code === 1001),
    { what: 'reconnecting after 1001' });
  await hub.start();
  await waitFor(() => h.state === 'open' && h.isActive(ch), { timeoutMs: 5000, what: 'the resubscription' });
  await hub.publish({ channel: ch, data: 'after' });
  await waitFor(() => got.length === 2, { what: 'the event after the restart' });
  assert.deepEqual(got, ['before', 'after']);
  h.close();
  await hub.stop();
});

test('no retry storm after 1008 (rate limit exceeded): exactly one connection', async () => {
  const hub = await new Hub({ 'client-rate': 1, 'client-burst': 1 }).start();
  let attempts = 0;
  const sockets = [];
  class CountingWS extends WebSocket {
    constructor(...args) { super(...args); attempts++; sockets.push(this); }
  }
  const h = realClient(hub, { WebSocket: CountingWS });
  const closes = [];
  h.on('close', (c) => closes.push(c));
  h.connect();
  await h.opened();
  const t0 = Date.now();
  /* herald.js keeps to the frame rate itself: flood the hub behind its back */
  while (h.state === 'open' && Date.now() - t0 < 8000) {
    if (sockets[0].readyState === WebSocket.OPEN) sockets[0].send('{"type":"ping"}');
    await sleep(50);
  }
  assert.equal(h.state, 'refused');
  assert.deepEqual(closes, [{ code: 1008, reason: 'rate limit exceeded' }]);
  const refusedAt = Date.now();
  await sleep(3000);
  assert.equal(attempts, 1, `connection attempts in ${Date.now() - t0} ms`);
  assert.equal(h.state, 'refused');
  assert.ok(refusedAt - t0 >= 2500, `closed after ${refusedAt - t0} ms over the rate (grace is 3 s)`);
  h.close();
  await hub.stop();
});

test('a dead link (no frame at all) is detected and replaced', async () => {
  /* a TCP relay in front of the hub that can go silent without closing anything */
  const hub = await new Hub({ heartbeat: 1 }).start();
  const relays = [];
  let isFrozen = false;
  const relay = createServer((down) => {
    const up = tcpConnect({ port: hub.port, host: '127.0.0.1' });
    const link = { down, up, frozen: isFrozen };
    relays.push(link);
    down.on('data', (d) => { if (!link.frozen) up.write(d); });
    up.on('data', (d) => { if (!link.frozen) down.write(d); });
    /* a frozen link hides even the hub's own hang-up (it gives up on silent peers too) */
    const end = () => { up.destroy(); if (!link.frozen) down.destroy(); };
    down.on('error', end); up.on('error', end); down.on('close', end); up.on('close', end);
  });
  await new Promise((r) => relay.listen(0, '127.0.0.1', r));
  const url = `ws://127.0.0.1:${relay.address().port}/ws`;
  const ch = uniqueChannel('dead');
  const h = new Herald(url, { WebSocket, heartbeatGraceMs: 500, backoff: { initialMs: 50, maxMs: 200 } });
  const got = [];
  const states = [];
  h.on('state', (s, info) => states.push([s, info.code, info.reason]));
  h.subscribe(ch, (e) => got.push(e.data));
  h.connect();
  await waitFor(() => h.isActive(ch), { what: 'subscribed through the relay' });
  const t0 = Date.now();
  relays[0].frozen = true; /* silence, both ways: no FIN, no RST */
  await waitFor(() => states.some(([s]) => s === 'reconnecting'), { timeoutMs: 6000, what: 'the dead link noticed' });
  const took = Date.now() - t0;
  assert.ok(took >= 1500 && took < 4500, `noticed after ${took} ms (2 x 1 s + 0.5 s, checked lazily)`);
  assert.match(states.find(([s]) => s === 'reconnecting')[2], /no frame for 2500 ms/);
  await waitFor(() => h.state === 'open' && h.isActive(ch), { what: 'the new link' });
  await hub.publish({ channel: ch, data: 'on the new link' });
  await waitFor(() => got.length === 1, { what: 'an event on the new link' });
  h.close();
  for (const l of relays) { l.down.destroy(); l.up.destroy(); }
  relay.close();
  await hub.stop();
});
