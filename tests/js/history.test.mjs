// history.test.mjs -- sequence numbers, history, resume and idempotent publishing end to end,
// against real herald processes (HERALD_BIN): herald.js resuming after a dropped link, a
// slow-consumer close and a hub restart; `last`; maxRate; the Node.js publisher (Idempotency-Key,
// 429 and Retry-After, refusals, a hub that comes back); herald-pub --idempotency-key; the
// dashboard loading with `last` and marking resumes.
//
// These need the hub side of issue 12 (seq, epoch, since, last, max_rate, Idempotency-Key):
// against a hub without it they fail. The client logic alone is tested on fakes in
// resume.test.mjs, publisher.test.mjs and pub.test.mjs.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';

import { Herald } from '../../clients/js/herald.js';
import { PublishError, Publisher } from '../../clients/js/publisher.js';
import { CHROMIUM, launchChromium } from './chromium.mjs';
import { HERALD_PUB_BIN, Hub, Relay, nextOf, sleep, uniqueChannel, waitFor } from './harness.mjs';


const clients = new Set();
function client(url, options = {}) {
  const h = new Herald(url, { WebSocket, backoff: { initialMs: 50, maxMs: 400 }, ...options });
  clients.add(h);
  return h;
}
/* a failed test leaves its clients open: close them, or their timers keep the process alive */
after(() => { for (const h of clients) h.close(); });

/** Subscribes h to ch; the events' seqs and data go into the returned arrays. */
function collect(h, ch, options) {
  const seqs = [];
  const datas = [];
  const notes = [];
  const u = h.subscribe(ch, (e) => { seqs.push(e.seq); datas.push(e.data); }, options);
  h.on('recovered', (r) => { if (r.channel === ch) notes.push(['recovered', r]); });
  h.on('gap', (g) => { if (g.channel === ch) notes.push(['gap', g]); });
  return { seqs, datas, notes, u };
}

const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

describe('herald.js resumes against a real hub', () => {
  let hub;
  before(async () => { hub = await new Hub().start(); });
  after(async () => { assert.deepEqual(await hub.stop(), { code: 0, signal: null }); });

  test('events carry seq 1, 2, 3 ...; subscribed gives the epoch and the position', async () => {
    const ch = uniqueChannel('seq');
    const h = client(hub.wsUrl);
    const c = collect(h, ch);
    h.connect();
    const [, info] = await nextOf(h, 'subscribed', { match: (name) => name === ch });
    assert.equal(typeof info.epoch, 'string');
    assert.equal(info.seq, 0);
    for (let i = 1; i <= 5; i++) await hub.publish({ channel: ch, data: i });
    await waitFor(() => c.seqs.length === 5, { what: 'five events' });
    assert.deepEqual(c.seqs, [1, 2, 3, 4, 5]);
    assert.deepEqual(h.position(ch), { epoch: info.epoch, seq: 5 });
    h.close();
  });

  test('a dropped link: the events published meanwhile come once, in order, then live ones', async () => {
    const relay = await new Relay(hub.port).start();
    const ch = uniqueChannel('drop');
    const h = client(`ws://127.0.0.1:${relay.port}/ws`);
    const c = collect(h, ch);
    h.connect();
    await c.u.ready;
    for (let i = 1; i <= 3; i++) await hub.publish({ channel: ch, data: i });
    await waitFor(() => c.seqs.length === 3, { what: 'the first events' });
    const epoch = h.position(ch).epoch;

    relay.isRefusing = true;
    relay.dropAll();
    await waitFor(() => h.state === 'reconnecting', { what: 'the link lost' });
    for (let i = 4; i <= 10; i++) await hub.publish({ channel: ch, data: i });
    relay.isRefusing = false;

    await waitFor(() => c.notes.length === 1, { timeoutMs: 5000, what: 'the resume' });
    assert.deepEqual(c.notes[0], ['recovered', {
      channel: ch, recovered: true, epoch, seq: 10, since: { epoch, seq: 3 }, reason: 'resumed' }]);
    await hub.publish({ channel: ch, data: 11 });
    await waitFor(() => c.seqs.length === 11, { what: 'every event' });
    assert.deepEqual(c.seqs, range(1, 11));
    assert.deepEqual(c.datas, range(1, 11));
    h.close();
    await relay.stop();
  });

  test('a hub restart (a new epoch): recovered false, reason epoch; live events after', async () => {
    const own = await new Hub().start();
    const ch = uniqueChannel('restart');
    const h = client(own.wsUrl);
    const c = collect(h, ch);
    h.connect();
    await c.u.ready;
    await own.publish({ channel: ch, data: 'before' });
    await waitFor(() => c.seqs.length === 1, { what: 'the event before' });
    const before1 = h.position(ch);
    assert.deepEqual(await own.stop(), { code: 0, signal: null });
    await own.start();
    await waitFor(() => c.notes.length === 1, { timeoutMs: 8000, what: 'the resume attempt' });
    const [, r] = c.notes[0];
    assert.equal(r.recovered, false);
    assert.equal(r.reason, 'epoch');
    assert.deepEqual(r.since, before1);
    assert.notEqual(r.epoch, before1.epoch);
    await own.publish({ channel: ch, data: 'after' });
    await waitFor(() => c.seqs.length === 2, { what: 'the event after' });
    assert.deepEqual(c.datas, ['before', 'after']);
    assert.equal(c.seqs[1], 1, 'seq 1 of the new epoch is delivered, not taken for a duplicate');
    h.close();
    await own.stop();
  });

  test('a slow consumer closed with 1013 comes back with since and misses nothing', { timeout: 60000 }, async () => {
    const own = await new Hub({ 'max-message-bytes': 20000, 'send-queue-bytes': 65536, 'history-size': 1000 }).start();
    const sockets = [];
    class KeptWS extends WebSocket {
      constructor(...args) { super(...args); sockets.push(this); }
    }
    const ch = uniqueChannel('slow');
    const h = client(own.wsUrl, { WebSocket: KeptWS });
    const closes = [];
    h.on('close', (cl) => closes.push(cl.code));
    const c = collect(h, ch);
    h.connect();
    await c.u.ready;
    sockets[0]._socket.pause(); /* stop reading: the hub's queue for us grows */
    const pad = 'x'.repeat(16000);
    let n = 0;
    while (n < 900) {
      await own.publish({ channel: ch, data: { n: ++n, pad } });
      if (n % 20) continue;
      const m = await own.stats();
      if (m.dropped && Object.entries(m.dropped).some(([k, v]) => /slow/.test(k) && v > 0)) break;
    }
    sockets[0]._socket.resume();
    await waitFor(() => closes.includes(1013), { timeoutMs: 10000, what: 'the slow-consumer close (1013)' });
    await waitFor(() => c.seqs.length === n, { timeoutMs: 20000, what: `all ${n} events` });
    assert.deepEqual(c.seqs, range(1, n));
    assert.ok(c.notes.some(([k, r]) => k === 'recovered' && r.recovered), JSON.stringify(c.notes.map((x) => x[1])));
    h.close();
    await own.stop();
  });

  test('last: N: the newest kept events first, then live; the subscribed position', async () => {
    const ch = uniqueChannel('last');
    for (let i = 1; i <= 8; i++) await hub.publish({ channel: ch, event: 'tick', data: i });
    const h = client(hub.wsUrl);
    const c = collect(h, ch, { last: 3 });
    const infos = [];
    h.on('subscribed', (name, info) => { if (name === ch) infos.push(info); });
    h.connect();
    await waitFor(() => c.seqs.length === 3, { what: 'the three newest' });
    assert.deepEqual(c.seqs, [6, 7, 8]);
    assert.equal(infos[0].seq, 8);
    await hub.publish({ channel: ch, event: 'tick', data: 9 });
    await waitFor(() => c.seqs.length === 4, { what: 'a live one' });
    assert.deepEqual(c.datas, [6, 7, 8, 9]);
    h.close();
  });

  test('maxRate: a burst is thinned, the newest wins, and the last of it arrives', async () => {
    const ch = uniqueChannel('rate');
    const h = client(hub.wsUrl);
    const c = collect(h, ch, { maxRate: 2 });
    h.connect();
    await c.u.ready;
    const t0 = Date.now();
    await hub.publish(Array.from({ length: 50 }, (_, i) => ({ channel: ch, event: 'price', data: i + 1 })));
    await waitFor(() => c.datas.at(-1) === 50, { timeoutMs: 3000, what: 'the last of the burst' });
    assert.ok(Date.now() - t0 < 2000, 'within 1/R s of the burst, give or take');
    assert.ok(c.seqs.length <= 4, `thinned to ${c.seqs.length} events: ${c.seqs}`);
    assert.deepEqual([...c.seqs].sort((a, b) => a - b), c.seqs, 'in order');
    assert.deepEqual(c.notes, [], 'skips are no gap');
    h.close();
  });
});

describe('the publisher against a real hub', () => {
  let hub;
  before(async () => { hub = await new Hub({ 'api-key': 'k'.repeat(24) }).start(); });
  after(async () => { assert.deepEqual(await hub.stop(), { code: 0, signal: null }); });

  async function listen(ch) {
    const h = client(hub.wsUrl);
    const got = [];
    h.subscribe(ch, (e) => got.push(e));
    h.connect();
    await waitFor(() => h.isActive(ch), { what: 'the subscription' });
    return { h, got };
  }

  test('publish and publishBatch: the ids are the events\'', async () => {
    const ch = uniqueChannel('pub');
    const { h, got } = await listen(ch);
    const pub = new Publisher(hub.apiUrl, { apiKey: 'k'.repeat(24) });
    const one = await pub.publish(ch, 'created', { n: 1 });
    const many = await pub.publishBatch([{ channel: ch, data: { n: 2 } }, { channel: ch, event: 'e', data: { n: 3 } }]);
    await waitFor(() => got.length === 3, { what: 'three events' });
    assert.deepEqual(got.map((e) => e.id), [one.id, ...many.ids]);
    assert.deepEqual(got.map((e) => e.data.n), [1, 2, 3]);
    assert.equal(got[0].event, 'created');
    pub.close();
    h.close();
  });

  test('the same Idempotency-Key twice: one delivery, and the first answer again', async () => {
    const ch = uniqueChannel('idem');
    const { h, got } = await listen(ch);
    const pub = new Publisher(hub.apiUrl, { apiKey: 'k'.repeat(24) });
    const key = `order-${Date.now()}:paid`;
    const a = await pub.publish(ch, 'paid', { n: 1 }, { idempotencyKey: key });
    const b = await pub.publish(ch, 'paid', { n: 1 }, { idempotencyKey: key });
    assert.equal(a.duplicate, false);
    assert.deepEqual([b.id, b.duplicate], [a.id, true]);
    const batch = await pub.publishBatch([{ channel: ch, data: 2 }, { channel: ch, data: 3 }], { idempotencyKey: `${key}-b` });
    const again = await pub.publishBatch([{ channel: ch, data: 2 }, { channel: ch, data: 3 }], { idempotencyKey: `${key}-b` });
    assert.deepEqual(again.ids, batch.ids);
    assert.equal(again.duplicate, true);
    await pub.publish(ch, null, 'marker');
    await waitFor(() => got.some((e) => e.data === 'marker'), { what: 'the marker' });
    assert.deepEqual(got.map((e) => e.data), [{ n: 1 }, 2, 3, 'marker']);
    pub.close();
    h.close();
  });

  test('a wrong API key is refused at once (401), not retried', async () => {
    const pub = new Publisher(hub.apiUrl, { apiKey: 'w'.repeat(24) });
    await assert.rejects(pub.publish('x', 'e', 1), (e) => e instanceof PublishError && e.code === 'unauthorized' &&
      e.status === 401 && e.attempts === 1);
    pub.close();
  });

  test('429 with Retry-After (--publish-rate): retried until taken, each event once', { timeout: 30000 }, async () => {
    const limited = await new Hub({ 'publish-rate': 1 }).start();
    const ch = uniqueChannel('rl');
    const h = client(limited.wsUrl);
    const got = [];
    h.subscribe(ch, (e) => got.push(e.data));
    h.connect();
    await waitFor(() => h.isActive(ch), { what: 'the subscription' });
    const retries = [];
    const pub = new Publisher(limited.apiUrl, { onRetry: (i) => retries.push(i) });
    const t0 = Date.now();
    const results = await Promise.all([1, 2, 3].map((n) => pub.publish(ch, 'e', n)));
    assert.ok(results.some((r) => r.attempts > 1), 'some were refused first');
    assert.ok(retries.every((r) => r.error.code === 'rate_limited' && r.error.retryAfterMs >= 1000 && r.delayMs >= r.error.retryAfterMs),
      JSON.stringify(retries.map((r) => [r.error.code, r.error.retryAfterMs, r.delayMs])));
    assert.ok(Date.now() - t0 >= 1000, 'Retry-After was waited for');
    await waitFor(() => got.length === 3, { what: 'three events' });
    assert.deepEqual([...got].sort(), [1, 2, 3]);
    pub.close();
    h.close();
    await limited.stop();
  });

  test('503 overloaded (a reader behind): the publisher waits as Retry-After says, then gets through', { timeout: 60000 }, async () => {
    const own = await new Hub({ 'max-backlog-bytes': 65536, 'send-queue-bytes': 8 << 20 }).start();
    const sockets = [];
    class KeptWS extends WebSocket {
      constructor(...args) { super(...args); sockets.push(this); }
    }
    const ch = uniqueChannel('backlog');
    const h = client(own.wsUrl, { WebSocket: KeptWS });
    const got = [], notes = [];
    h.subscribe(ch, (e) => got.push(e.data.n));
    for (const kind of ['gap', 'recovered', 'state']) h.on(kind, (x) => notes.push([kind, x]));
    h.connect();
    await waitFor(() => h.isActive(ch), { what: 'the subscription' });
    sockets[0]._socket.pause(); /* the reader falls behind */
    const retries = [];
    const pub = new Publisher(own.apiUrl, {
      deadlineMs: 30000, maxAttempts: 30,
      onRetry: (i) => {
        retries.push(i);
        if (i.error.code === 'overloaded') sockets[0]._socket.resume(); /* and catches up */
      },
    });
    const pad = 'x'.repeat(20000);
    let n = 0;
    while (!retries.length && n < 2000) await pub.publish(ch, 'big', { n: ++n, pad });
    assert.ok(retries.length, `refused as overloaded within ${n} events`);
    const r = retries[0];
    assert.equal(r.error.code, 'overloaded');
    assert.equal(r.error.status, 503);
    assert.equal(r.error.retryAfterMs, 1000);
    assert.ok(r.delayMs >= 1000, `waited ${r.delayMs} ms`);
    try {
      await waitFor(() => got.length === n, { timeoutMs: 25000, what: `all ${n} events` });
    } catch (err) {
      const m = await own.metrics();
      const pick = Object.fromEntries(Object.entries(m).filter(([k]) =>
        /dropped|disconnects_total\{reason="slow|sequence_lost|backlog_bytes|overloaded|queue_overruns/.test(k)));
      const missing = range(1, n).filter((i) => !got.includes(i));
      throw new Error(`${err.message}: got ${got.length}, missing ${missing.slice(0, 20)}; ` +
        `hub ${JSON.stringify(pick)}; herald.js notes ${JSON.stringify(notes)}\n${own.log().slice(-3000)}`);
    }
    assert.deepEqual(got, range(1, n), 'each once, in order: the retry was not delivered twice');
    pub.close();
    h.close();
    await own.stop();
  });

  test('a hub that is down, then up: network errors retried within the deadline', { timeout: 30000 }, async () => {
    const later = new Hub();
    await later.start();
    await later.stop();
    const pub = new Publisher(later.apiUrl, { backoff: { initialMs: 100, maxMs: 500 }, maxAttempts: 50, deadlineMs: 15000 });
    const p = pub.publish(uniqueChannel('later'), 'e', 1);
    await sleep(500);
    await later.start();
    const r = await p;
    assert.ok(r.attempts > 1);
    pub.close();
    await later.stop();
  });
});

describe('herald-pub --idempotency-key against a real hub', () => {
  test('the same input twice with the same key: delivered once', async () => {
    const hub = await new Hub().start();
    const ch = uniqueChannel('cli-idem');
    const h = client(hub.wsUrl);
    const got = [];
    h.subscribe(ch, (e) => got.push(e.data));
    h.connect();
    await waitFor(() => h.isActive(ch), { what: 'the subscription' });
    const run = () => new Promise((resolve) => {
      const p = spawn(HERALD_PUB_BIN, ['--url', `${hub.apiUrl}/publish`, '--idempotency-key', `run-${process.pid}`, ch]);
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => { out += d; });
      p.stderr.on('data', (d) => { err += d; });
      p.on('exit', (code) => resolve({ code, out, err }));
      p.stdin.end('1\n2\n3\n');
    });
    const first = await run();
    const second = await run();
    assert.equal(first.code, 0, first.err);
    assert.equal(second.code, 0, second.err);
    assert.equal(second.out, first.out, 'the same ids');
    assert.equal(second.err.split('\n').filter((l) => /not delivered again/.test(l)).length, 3);
    await hub.publish({ channel: ch, data: 'end' });
    await waitFor(() => got.at(-1) === 'end', { what: 'the end marker' });
    assert.deepEqual(got, [1, 2, 3, 'end']);
    h.close();
    await hub.stop();
  });
});

describe('the dashboard with history', { skip: !existsSync(CHROMIUM) && `${CHROMIUM} is missing` }, () => {
  let hub;
  let relay;
  let browser;
  let context;
  before(async () => {
    hub = await new Hub().start();
    relay = await new Relay(hub.port).start();
    browser = await launchChromium({ viewport: { width: 1280, height: 860 } });
    context = browser.context;
  });
  after(async () => {
    await browser?.close();
    await relay?.stop();
    await hub?.stop();
  });

  test('a fresh page shows each channel\'s last events at once; the chart counts only live ones', { timeout: 30000 }, async () => {
    const ch = uniqueChannel('dash-last');
    for (let i = 1; i <= 25; i++) await hub.publish({ channel: ch, event: 'tick', data: { i } });
    const page = await context.newPage();
    await page.goto(`${hub.pageUrl}?channels=${ch}`);
    await page.waitForFunction((n) => document.querySelectorAll('#feed li.ev.past').length === n, 20, { timeout: 5000 });
    const first = await page.textContent('#feed li.ev.past');
    assert.match(first, /"i":25/, 'the newest on top');
    assert.match(await page.textContent('#feed li.ev.past:last-child'), /"i":6/);
    await hub.publish({ channel: ch, event: 'tick', data: { i: 26 } });
    await page.waitForSelector('#feed li.ev:not(.past):has-text("\\"i\\":26")', { timeout: 2000 });
    await page.waitForFunction(() => /1 total/.test(document.getElementById('legend').textContent), null, { timeout: 2500 });
    await page.close();
  });

  test('a dropped link: the missed events and a "resumed" mark; a hub restart: a warning', { timeout: 40000 }, async () => {
    const ch = uniqueChannel('dash-resume');
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${relay.port}/?channels=${ch}`);
    await page.waitForSelector(`.chip[data-channel="${ch}"]:not(.pending)`, { timeout: 5000 });
    await hub.publish({ channel: ch, data: 'one' });
    await page.waitForSelector('#feed li.ev:has-text("one")', { timeout: 2000 });
    relay.isRefusing = true;
    relay.dropAll();
    await page.waitForSelector('#conn-state[data-state="reconnecting"]', { timeout: 3000 });
    await hub.publish({ channel: ch, data: 'two' });
    await hub.publish({ channel: ch, data: 'three' });
    relay.isRefusing = false;
    const mark = await page.waitForSelector('#feed li.mark-ok', { timeout: 8000 });
    assert.match(await mark.textContent(), /resumed: 2 missed events replayed/);
    await page.waitForSelector('#feed li.ev:has-text("three")', { timeout: 2000 });

    /* the in-process hub restarts: its numbering starts again */
    await hub.stop();
    await hub.start();
    const warn = await page.waitForSelector('#feed li.mark-warn', { timeout: 12000 });
    assert.match(await warn.textContent(), /could not resume: the hub restarted the channel's numbering/);
    await page.close();
  });
});
