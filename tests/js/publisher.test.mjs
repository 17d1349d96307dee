// publisher.test.mjs -- clients/js/publisher.js against a fake HTTP server made here (node:http
// on 127.0.0.1, a free port), which answers each request as the test says: retries with
// backoff and jitter on 503, 429, resets and timeouts, Retry-After, one Idempotency-Key per
// publish across its retries, the deadline, keep-alive. The waits between attempts run on a
// clock that records them and does not wait. Against a real hub: history.test.mjs.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, beforeEach, describe, test } from 'node:test';

import {
  PublishError, Publisher, createPublisher, isIdempotencyKey, parseRetryAfter, retryDelay,
} from '../../clients/js/publisher.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A server whose answers come from `script`: one function per request, in order (the last
 *  one repeats). A function gets the request record and returns {status, headers, body}, or
 *  'reset' (the connection is destroyed) or 'hang' (no answer). */
class FakeApi {
  requests = [];
  connections = 0;
  script = [];
  #server;
  #sockets = new Set();
  async start() {
    this.#server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c) => { body += c; });
      req.on('end', () => {
        const rec = { method: req.method, url: req.url, headers: req.headers, body, json: null };
        try { rec.json = JSON.parse(body); } catch { /* a test about bad bodies */ }
        this.requests.push(rec);
        const step = this.script[Math.min(this.requests.length - 1, this.script.length - 1)];
        const out = step ? step(rec) : accepted(rec);
        if (out === 'reset') { req.socket.destroy(); return; }
        if (out === 'hang') return;
        res.writeHead(out.status, { 'Content-Type': 'application/json', ...(out.headers || {}) });
        res.end(typeof out.body === 'string' ? out.body : JSON.stringify(out.body));
      });
    });
    this.#server.on('connection', (s) => {
      this.connections++;
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
    await new Promise((r) => this.#server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${this.#server.address().port}`;
    return this;
  }
  reset(script = []) {
    this.requests = [];
    this.connections = 0;
    this.script = script;
    for (const s of this.#sockets) s.destroy();
  }
  async stop() {
    for (const s of this.#sockets) s.destroy();
    await new Promise((r) => this.#server.close(r));
  }
}

let idCount = 0;
function accepted(rec) {
  if (Array.isArray(rec.json)) return { status: 202, body: { ids: rec.json.map(() => `id-${++idCount}`) } };
  return { status: 202, body: { id: `id-${++idCount}` } };
}
const refuse = (status, error, headers = {}) => () => ({ status, headers, body: { error, message: `${error} (test)` } });

/** A clock for the waits between attempts: records them, moves its time on, waits for nothing. */
function recordingClock() {
  let t = 1_000_000;
  const waits = [];
  return {
    waits,
    now: () => t,
    setTimeout: (fn, ms) => { waits.push(ms); t += ms; return setImmediate(fn); },
    clearTimeout: (id) => clearImmediate(id),
  };
}

let api;
before(async () => { api = await new FakeApi().start(); });
after(async () => { await api.stop(); });
beforeEach(() => api.reset());

function publisher(options = {}) {
  const clock = recordingClock();
  const pub = new Publisher(api.url, { clock, random: () => 0.5, ...options });
  return { pub, clock };
}

describe('one attempt', () => {
  test('publish: POST /publish with the event, a JSON body, the API key and an Idempotency-Key', async () => {
    const { pub } = publisher({ apiKey: 'k'.repeat(16) });
    assert.equal(pub.url, `${api.url}/publish`);
    const r = await pub.publish('orders', 'created', { order_id: 'ord_1', amount: 12.5 });
    assert.match(r.id, /^id-\d+$/);
    assert.equal(r.duplicate, false);
    assert.equal(r.attempts, 1);
    assert.match(r.idempotencyKey, UUID);
    const [req] = api.requests;
    assert.equal(req.method, 'POST');
    assert.equal(req.url, '/publish');
    assert.equal(req.headers['content-type'], 'application/json');
    assert.equal(req.headers.authorization, `Bearer ${'k'.repeat(16)}`);
    assert.equal(req.headers['idempotency-key'], r.idempotencyKey);
    assert.deepEqual(req.json, { channel: 'orders', event: 'created', data: { order_id: 'ord_1', amount: 12.5 } });
    pub.close();
  });

  test('an event without a name; null data; the key the caller gives', async () => {
    const { pub } = publisher();
    const r = await pub.publish('orders', null, null, { idempotencyKey: 'order-17:paid' });
    assert.equal(r.idempotencyKey, 'order-17:paid');
    assert.deepEqual(api.requests[0].json, { channel: 'orders', data: null });
    assert.equal(api.requests[0].headers['idempotency-key'], 'order-17:paid');
    assert.equal(api.requests[0].headers.authorization, undefined);
    pub.close();
  });

  test('publishBatch: one request, one key, the ids in order', async () => {
    const { pub } = publisher();
    const r = await pub.publishBatch([
      { channel: 'orders', event: 'created', data: { n: 1 } },
      { channel: 'signups', data: { n: 2 } },
    ]);
    assert.equal(r.ids.length, 2);
    assert.equal(api.requests.length, 1);
    assert.deepEqual(api.requests[0].json, [
      { channel: 'orders', event: 'created', data: { n: 1 } }, { channel: 'signups', data: { n: 2 } }]);
    assert.match(api.requests[0].headers['idempotency-key'], UUID);
    pub.close();
  });

  test('each publish has its own key', async () => {
    const { pub } = publisher();
    await pub.publish('a', 'e', 1);
    await pub.publish('a', 'e', 1);
    const keys = api.requests.map((r) => r.headers['idempotency-key']);
    assert.notEqual(keys[0], keys[1]);
    pub.close();
  });

  test('a duplicate answer (the hub had the key): duplicate true, the first answer\'s id', async () => {
    api.reset([() => ({ status: 202, body: { id: 'first', duplicate: true } })]);
    const { pub } = publisher();
    const r = await pub.publish('a', 'e', 1);
    assert.deepEqual([r.id, r.duplicate], ['first', true]);
    pub.close();
  });

  test('bad arguments are refused before any request', async () => {
    const { pub } = publisher();
    for (const [args, what] of [
      [['a b', 'e', 1], 'channel'], [['$stats', 'e', 1], '$ channel'], [['a', 'e', undefined], 'no data'],
      [['a', '', 1], 'empty event'], [['a', 7, 1], 'event not a string']]) {
      await assert.rejects(pub.publish(...args), TypeError, what);
    }
    for (const key of ['', 'x'.repeat(129), 'has space', 'é', 'tab\t']) {
      await assert.rejects(pub.publish('a', 'e', 1, { idempotencyKey: key }), TypeError, JSON.stringify(key));
    }
    await assert.rejects(pub.publishBatch([]), TypeError);
    await assert.rejects(pub.publishBatch([{ channel: 'ok', data: 1 }, { channel: 'ok' }]), /publishBatch\[1\]/);
    assert.equal(api.requests.length, 0);
    assert.throws(() => new Publisher('ws://h/'), TypeError);
    assert.throws(() => new Publisher(api.url, { maxAttempts: 0 }), RangeError);
    pub.close();
  });

  test('keep-alive: publishes share one connection', async () => {
    const { pub } = publisher();
    for (let i = 0; i < 10; i++) await pub.publish('a', 'e', i);
    assert.equal(api.connections, 1);
    pub.close();
  });
});

describe('retries', () => {
  test('503 overloaded with Retry-After: waits at least that long, then the same key again', async () => {
    api.reset([refuse(503, 'overloaded', { 'Retry-After': '2' }), accepted]);
    const { pub, clock } = publisher();
    const r = await pub.publish('orders', 'created', { n: 1 });
    assert.equal(r.attempts, 2);
    assert.equal(api.requests.length, 2);
    assert.equal(api.requests[0].headers['idempotency-key'], api.requests[1].headers['idempotency-key']);
    assert.equal(api.requests[1].body, api.requests[0].body);
    /* Retry-After 2 s, plus a jitter of up to the first backoff bound (200 ms): 0.5 x 200 */
    assert.deepEqual(clock.waits, [2100]);
    pub.close();
  });

  test('429 rate_limited with Retry-After: retried', async () => {
    api.reset([refuse(429, 'rate_limited', { 'Retry-After': '1' }), refuse(429, 'rate_limited', { 'Retry-After': '1' }), accepted]);
    const { pub, clock } = publisher();
    const r = await pub.publishBatch([{ channel: 'a', data: 1 }]);
    assert.equal(r.attempts, 3);
    assert.deepEqual(clock.waits, [1100, 1200]);
    assert.equal(new Set(api.requests.map((q) => q.headers['idempotency-key'])).size, 1);
    pub.close();
  });

  test('without Retry-After: full jitter, exponential, capped; then the last error', async () => {
    api.reset([refuse(503, 'unavailable')]);
    const draws = [0.5, 0.999, 0, 0.25, 0.75, 0.5];
    const { pub, clock } = publisher({ maxAttempts: 6, random: () => draws.shift(), backoff: { initialMs: 100, maxMs: 1000 } });
    const retries = [];
    await assert.rejects(pub.publish('a', 'e', 1, { onRetry: (i) => retries.push([i.attempt, i.delayMs, i.error.code]) }), (e) => {
      assert.ok(e instanceof PublishError);
      assert.equal(e.code, 'unavailable');
      assert.equal(e.status, 503);
      assert.equal(e.retryable, true);
      assert.equal(e.attempts, 6);
      assert.match(e.message, /503 unavailable/);
      return true;
    });
    /* bounds 100, 200, 400, 800, 1000 */
    assert.deepEqual(clock.waits, [50, 199, 0, 200, 750]);
    assert.deepEqual(retries.map((r) => r[0]), [1, 2, 3, 4, 5]);
    assert.ok(retries.every((r) => r[2] === 'unavailable'));
    assert.equal(api.requests.length, 6);
    pub.close();
  });

  test('4xx answers are not retried', async () => {
    for (const [status, code] of [[400, 'bad_request'], [401, 'unauthorized'], [413, 'too_large'], [415, 'unsupported_media_type']]) {
      api.reset([refuse(status, code)]);
      const { pub, clock } = publisher();
      await assert.rejects(pub.publish('a', 'e', 1), (e) => e.code === code && e.status === status && !e.retryable && e.attempts === 1);
      assert.equal(api.requests.length, 1);
      assert.deepEqual(clock.waits, []);
      pub.close();
    }
  });

  test('a connection reset before the answer: retried with the same key', async () => {
    api.reset(['reset', accepted].map((s) => (typeof s === 'string' ? () => s : s)));
    const { pub } = publisher();
    const r = await pub.publish('a', 'e', 1);
    assert.equal(r.attempts, 2);
    assert.equal(api.requests[0].headers['idempotency-key'], api.requests[1].headers['idempotency-key']);
    pub.close();
  });

  test('no answer within timeoutMs: retried with the same key', async () => {
    api.reset([() => 'hang', accepted]);
    const { pub } = publisher({ timeoutMs: 300 });
    const t0 = Date.now();
    const r = await pub.publish('a', 'e', 1);
    assert.equal(r.attempts, 2);
    assert.ok(Date.now() - t0 >= 290, 'the first attempt waited its timeout');
    assert.equal(api.requests[0].headers['idempotency-key'], api.requests[1].headers['idempotency-key']);
    pub.close();
  });

  test('nothing listening: network errors, retried, then thrown', async () => {
    const { pub, clock } = publisher({ maxAttempts: 3 });
    const dead = new Publisher('http://127.0.0.1:1', { clock, random: () => 0.5, maxAttempts: 3 });
    await assert.rejects(dead.publish('a', 'e', 1), (e) => e.code === 'network' && e.retryable && e.attempts === 3 && e.status === 0);
    assert.equal(clock.waits.length, 2);
    dead.close();
    pub.close();
  });

  test('a Retry-After past the deadline is not waited for', async () => {
    api.reset([refuse(503, 'overloaded', { 'Retry-After': '60' })]);
    const { pub, clock } = publisher({ deadlineMs: 30000 });
    await assert.rejects(pub.publish('a', 'e', 1), (e) => e.code === 'overloaded' && e.retryAfterMs === 60000 && e.attempts === 1);
    assert.deepEqual(clock.waits, []);
    pub.close();
  });

  test('the deadline bounds the retries', async () => {
    api.reset([refuse(503, 'overloaded', { 'Retry-After': '4' })]);
    const { pub, clock } = publisher({ deadlineMs: 10000, maxAttempts: 100, random: () => 0 });
    await assert.rejects(pub.publish('a', 'e', 1), (e) => e.code === 'overloaded' && e.attempts === 3);
    assert.deepEqual(clock.waits, [4000, 4000]);
    pub.close();
  });

  test('an abort during a wait ends the publish', async () => {
    api.reset([refuse(503, 'overloaded', { 'Retry-After': '5' })]);
    const pub = new Publisher(api.url);
    const ac = new AbortController();
    const p = pub.publish('a', 'e', 1, { signal: ac.signal });
    await new Promise((r) => setTimeout(r, 200));
    ac.abort();
    await assert.rejects(p, (e) => e.code === 'aborted');
    assert.equal(api.requests.length, 1);
    pub.close();
  });
});

describe('helpers', () => {
  test('parseRetryAfter: seconds or an HTTP date', () => {
    assert.equal(parseRetryAfter('3'), 3000);
    assert.equal(parseRetryAfter(' 0 '), 0);
    assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:10 GMT', Date.parse('Wed, 21 Oct 2015 07:28:00 GMT')), 10000);
    assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:10 GMT', Date.parse('Wed, 21 Oct 2015 08:00:00 GMT')), 0);
    for (const bad of [undefined, null, '', '-1', '1.5', 'soon']) assert.equal(parseRetryAfter(bad), null, String(bad));
  });

  test('retryDelay: full jitter under min(max, initial x 2^n); Retry-After plus at most itself', () => {
    const b = { initialMs: 200, maxMs: 5000 };
    for (let n = 0; n < 8; n++) {
      const bound = Math.min(5000, 200 * 2 ** n);
      assert.equal(retryDelay(n, b, null, () => 0), 0);
      assert.equal(retryDelay(n, b, null, () => 0.999999), bound - 1);
    }
    assert.equal(retryDelay(0, b, 1000, () => 0), 1000);
    assert.equal(retryDelay(0, b, 1000, () => 0.999999), 1199);
    assert.equal(retryDelay(6, b, 1000, () => 0.999999), 1999, 'the jitter never passes Retry-After itself');
  });

  test('isIdempotencyKey; createPublisher', () => {
    assert.ok(isIdempotencyKey('a') && isIdempotencyKey('~'.repeat(128)));
    assert.ok(!isIdempotencyKey('') && !isIdempotencyKey(' ') && !isIdempotencyKey('x'.repeat(129)) && !isIdempotencyKey(3));
    const p = createPublisher('http://hub.internal:8081');
    assert.equal(p.url, 'http://hub.internal:8081/publish');
    assert.equal(createPublisher('http://h:1/api/publish').url, 'http://h:1/api/publish');
    p.close();
  });
});
