// resume.test.mjs -- clients/js/herald.js: sequence numbers, resume, `last`, gaps, resets,
// maxRate and the frame bucket, on a fake WebSocket and a fake clock (fakes.mjs). The hub's
// side is played by the test, to the wire protocol of SPEC.md ("Sequence, history and resume").
// The same behaviour against a real hub: history.test.mjs.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { HeraldError, isPosition } from '../../clients/js/herald.js';
import { FakeWS, fakeClient, flush } from './fakes.mjs';

const ev = (channel, seq, data = seq) =>
  ({ type: 'event', channel, id: `${channel}-${seq}`, seq, ts: 1000 + seq, data });

/** The subscribe frames ws carried, by channel (the last one of each). */
function subscribes(ws) {
  const by = new Map();
  for (const f of ws.sent) if (f.type === 'subscribe') by.set(f.channel, f);
  return by;
}

/** Answers the subscribe of channel sent on ws, with epoch and seq (and more). */
function ack(ws, channel, fields) {
  const f = subscribes(ws).get(channel);
  assert.ok(f, `a subscribe for ${channel} was sent`);
  ws.recv({ type: 'subscribed', channel, ...fields, ref: f.ref });
}

/** A client subscribed to `channel` (through the URL) at epoch E1, seq 10; its events go in
 *  `got`, its recovered and gap events in `notes`. */
function subscribedClient(channel = 'orders', options = {}, subOptions = undefined) {
  const c = fakeClient(options);
  const got = [];
  const notes = [];
  c.h.on('recovered', (r) => notes.push(['recovered', r]));
  c.h.on('gap', (g) => notes.push(['gap', g]));
  const u = c.h.subscribe(channel, (e) => got.push(e.seq), subOptions);
  c.h.connect();
  const ws = FakeWS.last;
  ws.accept();
  ws.recv({ type: 'subscribed', channel, epoch: 'E1', seq: 10 });
  return { ...c, ws, got, notes, u };
}

/** Drops the link with code and lets the client come back; returns the new socket, welcomed. */
function reconnect(c, code = 1006, reason = '') {
  c.ws.drop(code, reason);
  const s = c.states.at(-1);
  assert.equal(s.s, 'reconnecting');
  c.clock.advance(s.delayMs);
  const ws = FakeWS.last;
  assert.notEqual(ws, c.ws, 'a new socket');
  ws.accept();
  c.ws = ws;
  return ws;
}

describe('positions', () => {
  test('the epoch and seq come from subscribed, then from each event', () => {
    const c = subscribedClient();
    const infos = [];
    c.h.on('subscribed', (ch, info) => infos.push([ch, info]));
    assert.deepEqual(c.h.position('orders'), { epoch: 'E1', seq: 10 });
    assert.equal(c.h.position('nope'), null);
    c.ws.recv(ev('orders', 11));
    c.ws.recv(ev('orders', 12));
    assert.deepEqual(c.h.position('orders'), { epoch: 'E1', seq: 12 });
    assert.deepEqual(c.got, [11, 12]);
    c.h.subscribe('b', () => {});
    ack(c.ws, 'b', { epoch: 'E9', seq: 0 });
    assert.deepEqual(infos, [['b', { epoch: 'E9', seq: 0 }]]);
    assert.deepEqual(c.notes, [], 'a first subscribe is no resume');
    c.h.close();
  });

  test('a seq delivered already is dropped, before every listener', () => {
    const c = subscribedClient();
    const all = [];
    c.h.on('event', (e) => all.push(e.seq));
    for (const seq of [11, 12, 12, 11, 13, 10, 14]) c.ws.recv(ev('orders', seq));
    assert.deepEqual(c.got, [11, 12, 13, 14]);
    assert.deepEqual(all, [11, 12, 13, 14]);
    c.h.close();
  });

  test('a hub without sequence numbers: events pass as they come, nothing to resume', () => {
    const { h, clock, states } = fakeClient();
    const got = [];
    h.subscribe('old', (e) => got.push(e.data));
    h.connect();
    FakeWS.last.accept();
    FakeWS.last.recv({ type: 'subscribed', channel: 'old' });
    FakeWS.last.recv({ type: 'event', channel: 'old', id: '1', ts: 1, data: 'a' });
    FakeWS.last.recv({ type: 'event', channel: 'old', id: '1', ts: 1, data: 'a' });
    assert.deepEqual(got, ['a', 'a']);
    assert.equal(h.position('old'), null);
    FakeWS.last.drop(1006);
    clock.advance(states.at(-1).delayMs);
    assert.match(FakeWS.last.url, /\?channels=old$/, 'joined by the URL again, without since');
    h.close();
  });

  test('isPosition', () => {
    assert.ok(isPosition({ epoch: 'a1', seq: 0 }) && isPosition({ epoch: 'x', seq: 17 }));
    for (const bad of [null, {}, { epoch: '', seq: 1 }, { epoch: 'a', seq: -1 }, { epoch: 'a', seq: 1.5 },
      { epoch: 'a-b', seq: 1 }, { epoch: 'x'.repeat(25), seq: 1 },
      { epoch: 3, seq: 1 }, { epoch: 'a' }, 'a:1'])
      assert.ok(!isPosition(bad), JSON.stringify(bad));
  });
});

describe('resume after a reconnect', () => {
  for (const [code, why] of [[1006, 'a dropped link'], [1001, 'a drain'], [1013, 'a slow-consumer close']]) {
    test(`after ${why} (${code}): since the last seq, the missed events once, then live`, () => {
      const c = subscribedClient();
      c.h.subscribe('fresh', () => {}); /* never acknowledged: no position */
      c.ws.recv(ev('orders', 11));
      c.ws.recv(ev('orders', 12));
      const ws = reconnect(c, code, 'bye');
      assert.match(ws.url, /\?channels=fresh$/, 'only the channel without a position is in the URL');
      assert.deepEqual(ws.sent.map((f) => f.type), ['subscribe']);
      assert.deepEqual(ws.sent[0], { type: 'subscribe', channel: 'orders', since: { epoch: 'E1', seq: 12 }, ref: ws.sent[0].ref });
      ack(ws, 'orders', { epoch: 'E1', seq: 15, recovered: true });
      assert.deepEqual(c.notes, [['recovered', {
        channel: 'orders', recovered: true, epoch: 'E1', seq: 15, since: { epoch: 'E1', seq: 12 }, reason: 'resumed' }]]);
      for (const seq of [12, 13, 14, 15, 14, 16]) ws.recv(ev('orders', seq));
      assert.deepEqual(c.got, [11, 12, 13, 14, 15, 16]);
      assert.ok(c.h.isActive('orders'));
      c.h.close();
    });
  }

  test('recovered:false (history expired): the position jumps to the hub\'s, live events follow', () => {
    const c = subscribedClient();
    c.ws.recv(ev('orders', 11));
    const ws = reconnect(c);
    ack(ws, 'orders', { epoch: 'E1', seq: 400, recovered: false });
    assert.deepEqual(c.notes, [['recovered', {
      channel: 'orders', recovered: false, epoch: 'E1', seq: 400, since: { epoch: 'E1', seq: 11 }, reason: 'expired' }]]);
    assert.deepEqual(c.h.position('orders'), { epoch: 'E1', seq: 400 });
    ws.recv(ev('orders', 399)); /* not expected after recovered:false: dropped */
    ws.recv(ev('orders', 401));
    assert.deepEqual(c.got, [11, 401]);
    c.h.close();
  });

  test('a new epoch (the hub restarted): reason epoch, and seq 1 of it is new', () => {
    const c = subscribedClient();
    c.ws.recv(ev('orders', 11));
    const ws = reconnect(c, 1001);
    ack(ws, 'orders', { epoch: 'E2', seq: 0, recovered: false });
    assert.equal(c.notes[0][1].reason, 'epoch');
    assert.deepEqual(c.notes[0][1].since, { epoch: 'E1', seq: 11 });
    ws.recv(ev('orders', 1));
    ws.recv(ev('orders', 2));
    assert.deepEqual(c.got, [11, 1, 2]);
    assert.deepEqual(c.h.position('orders'), { epoch: 'E2', seq: 2 });
    /* a recovered:true for another epoch than asked is no recovery */
    const ws2 = reconnect(c);
    ack(ws2, 'orders', { epoch: 'E3', seq: 5, recovered: true });
    assert.deepEqual([c.notes[1][1].recovered, c.notes[1][1].reason], [false, 'epoch']);
    c.h.close();
  });

  test('with last: sent with the resume; when it cannot resume, the newest kept events come, minus those seen', () => {
    const c = subscribedClient('orders', {}, { last: 5 });
    assert.match(FakeWS.all[0].url, /\?channels=orders&last=5$/);
    c.ws.recv(ev('orders', 11));
    const ws = reconnect(c);
    assert.deepEqual(subscribes(ws).get('orders').since, { epoch: 'E1', seq: 11 });
    assert.equal(subscribes(ws).get('orders').last, 5);
    ack(ws, 'orders', { epoch: 'E1', seq: 14, recovered: false });
    for (const seq of [10, 11, 12, 13, 14, 15]) ws.recv(ev('orders', seq)); /* last 5, then live */
    assert.deepEqual(c.got, [11, 12, 13, 14, 15]);
    /* in a new epoch all of them are new */
    const ws2 = reconnect(c);
    ack(ws2, 'orders', { epoch: 'E2', seq: 3, recovered: false });
    for (const seq of [1, 2, 3, 4]) ws2.recv(ev('orders', seq));
    assert.deepEqual(c.got, [11, 12, 13, 14, 15, 1, 2, 3, 4]);
    c.h.close();
  });

  test('close() then connect() resumes too; unsubscribing forgets the position', () => {
    const c = subscribedClient();
    c.ws.recv(ev('orders', 11));
    c.h.close();
    c.h.connect();
    let ws = FakeWS.last;
    ws.accept();
    assert.deepEqual(subscribes(ws).get('orders').since, { epoch: 'E1', seq: 11 });
    ack(ws, 'orders', { epoch: 'E1', seq: 11, recovered: true });
    c.u();
    assert.equal(c.h.position('orders'), null);
    c.h.subscribe('orders', () => {});
    const again = ws.sent.filter((f) => f.type === 'subscribe').at(-1);
    assert.equal(again.since, undefined, 'a new subscription starts live');
    c.h.close();
  });

  test('options.since resumes from a stored position on the first connection', () => {
    const { h } = fakeClient();
    const notes = [];
    h.on('recovered', (r) => notes.push(r));
    const got = [];
    h.subscribe('orders', (e) => got.push(e.seq), { since: { epoch: 'E1', seq: 40 } });
    assert.deepEqual(h.position('orders'), { epoch: 'E1', seq: 40 });
    h.connect();
    const ws = FakeWS.last;
    assert.doesNotMatch(ws.url, /channels=/);
    ws.accept();
    assert.deepEqual(subscribes(ws).get('orders').since, { epoch: 'E1', seq: 40 });
    ack(ws, 'orders', { epoch: 'E1', seq: 42, recovered: true });
    ws.recv(ev('orders', 41));
    ws.recv(ev('orders', 42));
    assert.deepEqual(got, [41, 42]);
    assert.equal(notes[0].reason, 'resumed');
    h.close();
  });

  test('a disconnection in the middle of a replay resumes from the last event delivered', () => {
    const c = subscribedClient();
    let ws = reconnect(c);
    ack(ws, 'orders', { epoch: 'E1', seq: 20, recovered: true });
    for (const seq of [11, 12, 13]) ws.recv(ev('orders', seq));
    ws = reconnect(c);
    assert.deepEqual(subscribes(ws).get('orders').since, { epoch: 'E1', seq: 13 });
    c.h.close();
  });
});

describe('last, gaps and resets', () => {
  test('last: N on a subscribe frame; the kept events (seq <= S) are delivered, the position is S', () => {
    const { h, clock, states } = fakeClient();
    h.connect();
    let ws = FakeWS.last;
    ws.accept();
    const got = [];
    h.subscribe('orders', (e) => got.push(e.seq), { last: 3 });
    assert.equal(subscribes(ws).get('orders').last, 3);
    ack(ws, 'orders', { epoch: 'E1', seq: 30 });
    assert.deepEqual(h.position('orders'), { epoch: 'E1', seq: 30 });
    ws.recv(ev('orders', 28));
    /* dropped mid-replay: the resume starts at 30, the history asked for is not owed */
    ws.drop(1006);
    clock.advance(states.at(-1).delayMs);
    ws = FakeWS.last;
    ws.accept();
    assert.deepEqual(subscribes(ws).get('orders').since, { epoch: 'E1', seq: 30 });
    assert.deepEqual(got, [28]);
    h.close();
  });

  test('the URL carries the channels with the last most of them want; the others go as frames', () => {
    const { h } = fakeClient();
    h.subscribe('c', null);
    h.subscribe('a', null, { last: 20 });
    h.subscribe('b', null, { last: 20 });
    h.subscribe('d', null, { maxRate: 5 });
    h.connect();
    const ws = FakeWS.last;
    assert.match(ws.url, /\?channels=a,b&last=20$/);
    ws.accept();
    assert.deepEqual(ws.sent.map((f) => [f.channel, f.last, f.max_rate]), [['c', undefined, undefined], ['d', undefined, 5]]);
    h.close();
  });

  test('a gap: reported, and a resume does not ask for those events again', () => {
    const c = subscribedClient();
    c.ws.recv(ev('orders', 11));
    c.ws.recv({ type: 'gap', channel: 'orders', from: 12, to: 17 });
    assert.deepEqual(c.notes, [['gap', { channel: 'orders', from: 12, to: 17 }]]);
    assert.deepEqual(c.h.position('orders'), { epoch: 'E1', seq: 17 });
    c.ws.recv(ev('orders', 18));
    assert.deepEqual(c.got, [11, 18]);
    c.ws.recv({ type: 'gap', channel: 'nobody', from: 1, to: 2 });
    c.ws.recv({ type: 'gap', channel: 'orders', from: 'x', to: 2 });
    assert.equal(c.notes.length, 1, 'gaps of unknown channels or with bad numbers are ignored');
    const ws = reconnect(c);
    assert.deepEqual(subscribes(ws).get('orders').since, { epoch: 'E1', seq: 18 });
    c.h.close();
  });

  test('a ref-less subscribed while subscribed: the numbering restarted, reported as not recovered', () => {
    const c = subscribedClient();
    c.ws.recv(ev('orders', 11));
    c.ws.recv({ type: 'subscribed', channel: 'orders', epoch: 'E2', seq: 0, recovered: false });
    assert.deepEqual(c.notes, [['recovered', {
      channel: 'orders', recovered: false, epoch: 'E2', seq: 0, since: { epoch: 'E1', seq: 11 }, reason: 'reset' }]]);
    c.ws.recv(ev('orders', 1));
    c.ws.recv(ev('orders', 2));
    assert.deepEqual(c.got, [11, 1, 2]);
    assert.deepEqual(c.h.position('orders'), { epoch: 'E2', seq: 2 });
    assert.ok(c.h.isActive('orders'));
    c.h.close();
  });
});

describe('subscribe options', () => {
  test('maxRate goes as max_rate; bad options throw', () => {
    const { h } = fakeClient();
    h.connect();
    const ws = FakeWS.last;
    ws.accept();
    h.subscribe('ticks', () => {}, { maxRate: 4 });
    assert.deepEqual(ws.sent[0], { type: 'subscribe', channel: 'ticks', max_rate: 4, ref: ws.sent[0].ref });
    for (const bad of [{ maxRate: 0 }, { maxRate: 1001 }, { maxRate: 2.5 }, { maxRate: '5' }, { last: -1 }, { last: 1.5 }, { last: 1001 }])
      assert.throws(() => h.subscribe('x', () => {}, bad), RangeError, JSON.stringify(bad));
    assert.throws(() => h.subscribe('x', () => {}, { since: { epoch: 'E' } }), TypeError);
    assert.throws(() => h.subscribe('x', () => {}, 5), TypeError);
    assert.deepEqual(h.channels, ['ticks'], 'nothing held after a bad call');
    h.close();
  });

  test('the options of the call that creates the subscription apply; later handlers share it', async () => {
    const { h } = fakeClient();
    h.connect();
    const ws = FakeWS.last;
    ws.accept();
    const a = [];
    const b = [];
    const ua = h.subscribe('ticks', (e) => a.push(e.seq), { maxRate: 2 });
    const ub = h.subscribe('ticks', (e) => b.push(e.seq), { maxRate: 50, last: 10 });
    assert.equal(ws.sent.length, 1);
    ack(ws, 'ticks', { epoch: 'E', seq: 7 });
    await ua.ready;
    await ub.ready;
    ws.recv(ev('ticks', 9)); /* conflated: 8 skipped, no gap for it */
    assert.deepEqual([a, b], [[9], [9]]);
    h.close();
  });
});

describe('the frame bucket', () => {
  test('a reconnect with many positions sends a burst, then keeps to the rate', () => {
    const { h, clock, states } = fakeClient({ frameRate: { perSec: 10, burst: 20 } });
    const names = Array.from({ length: 50 }, (_, i) => `ch${i}`);
    for (const n of names) h.subscribe(n, () => {});
    h.connect();
    let ws = FakeWS.last;
    ws.accept();
    for (const n of names) ws.recv({ type: 'subscribed', channel: n, epoch: 'E', seq: 1 });
    ws.drop(1006);
    clock.advance(states.at(-1).delayMs);
    ws = FakeWS.last;
    ws.accept();
    assert.equal(ws.sent.length, 20, 'the burst');
    clock.advance(99);
    assert.equal(ws.sent.length, 20);
    clock.advance(1);
    assert.equal(ws.sent.length, 21, 'then one every 100 ms');
    clock.advance(1000);
    assert.equal(ws.sent.length, 31);
    clock.advance(2000);
    assert.equal(ws.sent.length, 50);
    assert.ok(ws.sent.every((f) => f.since && f.since.seq === 1));
    h.close();
  });

  test('rate_limited anyway: a pause over the hub\'s second of grace, then half the rate', async () => {
    const { h, clock } = fakeClient({ frameRate: { perSec: 10, burst: 20 } });
    h.connect();
    const ws = FakeWS.last;
    ws.accept();
    const errors = [];
    h.on('error', (e) => errors.push(e.code));
    for (let i = 0; i < 30; i++) h.subscribe(`ch${i}`, () => {});
    assert.equal(ws.sent.length, 20);
    /* the hub took 5 and refused 15, each refusal echoing its ref */
    for (const f of ws.sent.slice(0, 5)) ws.recv({ type: 'subscribed', channel: f.channel, epoch: 'E', seq: 0, ref: f.ref });
    for (const f of ws.sent.slice(5)) ws.recv({ type: 'error', code: 'rate_limited', message: 'slow down', ref: f.ref });
    await flush();
    assert.equal(errors.length, 15);
    clock.advance(1499);
    assert.equal(ws.sent.length, 20, 'silence while the hub forgives');
    clock.advance(1);
    /* the bucket is now 5 a second, burst 10, refilled from empty during the pause: 7.5 */
    assert.equal(ws.sent.length, 27, 'then what half the rate allows');
    const resent = new Set(ws.sent.slice(20).map((f) => f.channel));
    clock.advance(100);
    assert.equal(ws.sent.length, 28, 'and 5 a second');
    clock.advance(199);
    assert.equal(ws.sent.length, 28);
    clock.advance(1);
    assert.equal(ws.sent.length, 29);
    clock.advance(3000);
    const all = new Set(ws.sent.map((f) => f.channel));
    assert.equal(all.size, 30, 'every channel asked for');
    assert.ok([...resent].every((ch) => !h.isActive(ch)));
    h.close();
  });

  test('a queued subscribe fails like a sent one when the link drops', async () => {
    const { h } = fakeClient({ frameRate: { perSec: 1, burst: 1 } });
    h.connect();
    const ws = FakeWS.last;
    ws.accept();
    h.subscribe('a', () => {});
    h.subscribe('b', () => {});
    assert.equal(ws.sent.length, 1);
    const ping = h.ping();
    ws.drop(1006);
    await assert.rejects(ping, (e) => e instanceof HeraldError && e.code === 'disconnected');
    h.close();
  });

  test('a reply timeout counts from the moment the frame leaves', async () => {
    const { h, clock } = fakeClient({ frameRate: { perSec: 1, burst: 1 }, requestTimeoutMs: 1500 });
    h.connect();
    const ws = FakeWS.last;
    ws.accept();
    const p1 = h.ping();
    const p2 = h.ping();
    let p2Err = null;
    p2.catch((e) => { p2Err = e; });
    clock.advance(1000); /* p2 leaves now */
    assert.equal(ws.sent.length, 2);
    ws.recv({ type: 'pong', ref: ws.sent[0].ref });
    await p1;
    clock.advance(1400);
    await flush();
    assert.equal(p2Err, null, 'still within 1500 ms of being sent');
    clock.advance(100);
    await flush();
    assert.equal(p2Err?.code, 'timeout');
    h.close();
  });
});
