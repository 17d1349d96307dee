// fallback.test.mjs -- herald.js on server-sent events when a WebSocket cannot be opened.
//
// A real hub behind an HTTP proxy that refuses WebSocket upgrades with 403 and passes every
// other request through (harness.mjs NoUpgradeProxy, as corporate proxies do). herald.js
// ('auto') tries the WebSocket, falls back to the hub's /sse through EventSource, says so
// (`transport`, the 'open' state's info), receives events, changes channels (a new stream
// that resumes each channel from its place), resumes without loss after the proxy cuts
// the stream, and moves back to a WebSocket (a background try) once the proxy passes
// upgrades again. In Node the EventSource is Node's own (node --experimental-eventsource; the
// Node part is skipped where Node has none); in Chromium it is the browser's, with the
// browser's WebSocket meeting the proxy's refusal, both for herald.js alone and for the
// dashboard, which shows the transport.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';

import { Herald } from '../../clients/js/herald.js';
import { launchChromium } from './chromium.mjs';
import { Hub, NoUpgradeProxy, nextOf, sleep, uniqueChannel, waitFor } from './harness.mjs';

const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

const clients = new Set();
function client(url, options = {}) {
  const h = new Herald(url, {
    WebSocket, EventSource: globalThis.EventSource, backoff: { initialMs: 50, maxMs: 400 }, ...options,
  });
  clients.add(h);
  return h;
}
after(() => { for (const h of clients) h.close(); });

/** Subscribes h to ch; the events' data go into the returned array, resumes into notes. */
function collect(h, ch) {
  const datas = [];
  const notes = [];
  const u = h.subscribe(ch, (e) => datas.push(e.data));
  h.on('recovered', (r) => { if (r.channel === ch) notes.push(['recovered', r.recovered, r.reason]); });
  h.on('gap', (g) => { if (g.channel === ch) notes.push(['gap', g.from, g.to]); });
  return { datas, notes, u };
}

const noEventSource = typeof globalThis.EventSource !== 'function' &&
  'this Node has no EventSource (Node 20 needs --experimental-eventsource): the Chromium part covers it';

describe('herald.js in Node behind a proxy that refuses upgrades', { skip: noEventSource }, () => {
  let hub;
  let proxy;
  before(async () => {
    hub = await new Hub().start();
    proxy = await new NoUpgradeProxy(hub.port).start();
  });
  after(async () => {
    await proxy?.stop();
    assert.deepEqual(await hub.stop(), { code: 0, signal: null });
  });

  test('falls back to SSE, says so, and gets every event once through channel changes and a cut stream',
    { timeout: 30000 }, async () => {
      const a = uniqueChannel('fb-a');
      const b = uniqueChannel('fb-b');
      const h = client(proxy.wsUrl);
      const states = [];
      h.on('state', (state, info) => states.push([state, info.transport]));
      const ca = collect(h, a);
      h.connect();
      await waitFor(() => h.isActive(a), { what: `${a} over SSE` });
      assert.equal(h.transport, 'sse');
      assert.ok(proxy.upgradesRefused >= 1, 'a WebSocket was tried first');
      assert.deepEqual(states.at(-1), ['open', 'sse']);
      await assert.rejects(h.ping(), (e) => e.code === 'transport');

      for (const n of [1, 2, 3]) await hub.publish({ channel: a, data: n });
      await waitFor(() => ca.datas.length === 3, { what: 'three events over SSE' });

      // a second channel while a's events keep coming: a new stream, a resumes from its place
      const streamsBefore = proxy.paths.filter((p) => p.startsWith('/sse')).length;
      const pub = (async () => { for (const n of range(4, 23)) { await hub.publish({ channel: a, data: n }); await sleep(5); } })();
      const cb = collect(h, b);
      await pub;
      await waitFor(() => h.isActive(b) && h.isActive(a), { what: 'both channels on the new stream' });
      assert.ok(proxy.paths.filter((p) => p.startsWith('/sse')).length > streamsBefore, 'a new stream');
      await hub.publish({ channel: b, data: 'b1' });
      await waitFor(() => ca.datas.length === 23 && cb.datas.length === 1, { what: 'a 1..23 and b1' });
      assert.deepEqual(ca.datas, range(1, 23), 'each of a once, in order, across the new stream');
      assert.match(proxy.paths.filter((p) => p.startsWith('/sse')).at(-1), /since=[A-Za-z0-9]+%3A|since=[A-Za-z0-9]+:/);

      // the proxy cuts the stream; events meanwhile are not lost
      proxy.dropAll();
      for (const n of range(24, 30)) await hub.publish({ channel: a, data: n });
      await waitFor(() => ca.datas.length === 30, { timeoutMs: 10000, what: 'a 24..30 after the cut' });
      assert.deepEqual(ca.datas, range(1, 30));
      assert.ok(ca.notes.some(([kind, ok]) => kind === 'recovered' && ok === true), JSON.stringify(ca.notes));
      assert.ok(!ca.notes.some(([kind]) => kind === 'gap'));
      assert.equal(h.transport, 'sse');

      // dropping a channel: a new stream without it; the other goes on
      cb.u();
      await sleep(100);
      await waitFor(() => h.isActive(a), { what: `${a} after ${b} was dropped` });
      assert.doesNotMatch(proxy.paths.filter((p) => p.startsWith('/sse')).at(-1), new RegExp(b));
      await hub.publish({ channel: a, data: 31 });
      await hub.publish({ channel: b, data: 'b2' });
      await waitFor(() => ca.datas.length === 31, { what: 'a 31' });
      await sleep(200);
      assert.deepEqual(cb.datas, ['b1']);
      h.close();
    });

  test('maxRate on SSE: the paced channel gets the newest at 2/s and the last of the burst; the other all',
    { timeout: 20000 }, async () => {
      const slow = uniqueChannel('fb-slow');
      const fast = uniqueChannel('fb-fast');
      const h = client(proxy.wsUrl);
      const got = { [slow]: [], [fast]: [] };
      h.subscribe(slow, (e) => got[slow].push(e.data), { maxRate: 2 });
      h.subscribe(fast, (e) => got[fast].push(e.data));
      h.connect();
      await waitFor(() => h.isActive(slow) && h.isActive(fast), { what: 'both channels' });
      assert.equal(h.transport, 'sse');
      assert.match(proxy.paths.filter((p) => p.startsWith('/sse')).at(-1), /max_rate=2(%2C|,)(&|$)/);
      for (const n of range(1, 20)) {
        await hub.publish({ channel: slow, event: 'gauge', data: n });
        await hub.publish({ channel: fast, event: 'gauge', data: n });
      }
      await waitFor(() => got[fast].length === 20 && got[slow].at(-1) === 20, { what: 'the burst' });
      assert.deepEqual(got[fast], range(1, 20));
      assert.ok(got[slow].length <= 3, `paced: ${got[slow]}`);
      h.close();
    });

  test('a hub that drains: the stream says 1001 and herald.js is back at once', { timeout: 20000 }, async () => {
    const own = await new Hub({ 'drain-seconds': 2 }).start();
    const ownProxy = await new NoUpgradeProxy(own.port).start();
    try {
      const h = client(ownProxy.wsUrl);
      const closes = [];
      h.on('close', (c) => closes.push(c));
      const reconnecting = [];
      h.on('state', (state, info) => { if (state === 'reconnecting') reconnecting.push(info); });
      collect(h, uniqueChannel('fb-drain'));
      h.connect();
      await h.opened();
      assert.equal(h.transport, 'sse');
      reconnecting.length = 0; /* the first WebSocket's refusal was one */
      own.proc.kill('SIGTERM');
      await waitFor(() => closes.some((c) => c.code === 1001), { what: 'the close 1001 event' });
      assert.equal(reconnecting[0].code, 1001);
      assert.equal(reconnecting[0].delayMs, 0, 'a drain is retried at once');
      h.close();
    } finally {
      await ownProxy.stop();
      await own.stop();
    }
  });

  test('a bad token on SSE is refused (401), not retried', { timeout: 20000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'herald-fb-'));
    writeFileSync(join(dir, 'secret'), 's'.repeat(40));
    const own = await new Hub({ 'jwt-secret-file': join(dir, 'secret') }).start();
    const ownProxy = await new NoUpgradeProxy(own.port).start();
    try {
      const h = client(ownProxy.wsUrl, { token: 'not.a.token' });
      collect(h, uniqueChannel('fb-auth'));
      h.connect();
      const [, info] = await nextOf(h, 'state', { match: (s) => s === 'refused', timeoutMs: 10000 });
      assert.equal(info.code, 1008);
      assert.match(info.reason, /401/);
      const streams = ownProxy.paths.filter((p) => p.startsWith('/sse')).length;
      await sleep(500);
      assert.ok(ownProxy.paths.filter((p) => p.startsWith('/sse')).length <= streams + 0, 'no retry');
    } finally {
      await ownProxy.stop();
      await own.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('once upgrades pass again, a background WebSocket try moves the client back, losing nothing',
    { timeout: 30000 }, async () => {
      const own = await new Hub().start();
      const ownProxy = await new NoUpgradeProxy(own.port).start();
      try {
        const ch = uniqueChannel('fb-back');
        const h = client(ownProxy.wsUrl, { upgradeProbeMs: 300 });
        const opens = [];
        h.on('state', (state, info) => { if (state === 'open') opens.push(info.transport); });
        const c = collect(h, ch);
        h.connect();
        await waitFor(() => h.isActive(ch), { what: 'the SSE subscription' });
        assert.equal(h.transport, 'sse');
        await sleep(900); /* probes meanwhile meet the proxy's 403 */
        assert.equal(h.transport, 'sse');
        assert.ok(ownProxy.upgradesRefused >= 2, `refused ${ownProxy.upgradesRefused}`);
        ownProxy.isPassingUpgrades = true;
        const pub = (async () => { for (const n of range(1, 60)) { await own.publish({ channel: ch, data: n }); await sleep(20); } })();
        await waitFor(() => h.transport === 'websocket', { timeoutMs: 10000, what: 'the move to a WebSocket' });
        await pub;
        await waitFor(() => c.datas.length === 60, { what: 'events 1..60' });
        assert.deepEqual(c.datas, range(1, 60), 'each once, in order, across the move');
        assert.deepEqual(opens, ['sse', 'websocket']);
        assert.ok(!c.notes.some(([kind, ok]) => kind === 'gap' || ok === false), JSON.stringify(c.notes));
        h.close();
      } finally {
        await ownProxy.stop();
        await own.stop();
      }
    });

  test("transport: 'websocket' never falls back; straight to the hub 'auto' stays on WebSocket",
    { timeout: 20000 }, async () => {
      const ch = uniqueChannel('fb-ws');
      const h = client(proxy.wsUrl, { transport: 'websocket' });
      collect(h, ch);
      h.connect();
      await nextOf(h, 'state', { match: (s) => s === 'reconnecting', timeoutMs: 5000 });
      await sleep(300);
      assert.equal(h.state === 'open', false);
      h.close();
      const direct = client(hub.wsUrl);
      const c = collect(direct, ch);
      direct.connect();
      await waitFor(() => direct.isActive(ch), { what: 'the direct subscription' });
      assert.equal(direct.transport, 'websocket');
      await hub.publish({ channel: ch, data: 'x' });
      await waitFor(() => c.datas.length === 1, { what: 'the event' });
      direct.close();
    });
});

describe('herald.js in Chromium behind a proxy that refuses upgrades', () => {
  let hub;
  let proxy;
  let browser;
  let context;
  before(async () => {
    hub = await new Hub().start();
    proxy = await new NoUpgradeProxy(hub.port).start();
    browser = await launchChromium();
    context = browser.context;
  });
  after(async () => {
    await browser?.close();
    await proxy?.stop();
    if (hub) assert.deepEqual(await hub.stop(), { code: 0, signal: null });
  });

  test("the browser's WebSocket is refused: herald.js reads /sse with the browser's EventSource",
    { timeout: 30000 }, async () => {
      const ch = uniqueChannel('fb-chromium');
      const page = await context.newPage();
      await page.goto(`${proxy.origin}/`, { waitUntil: 'load', timeout: 10000 });
      await page.evaluate(async (ch) => {
        const { Herald } = await import('/herald.js');
        window.got = [];
        window.notes = [];
        const h = new Herald('/ws', { backoff: { initialMs: 50, maxMs: 400 } });
        h.subscribe(ch, (e) => window.got.push(e.data));
        h.on('recovered', (r) => window.notes.push(['recovered', r.recovered]));
        h.on('gap', (g) => window.notes.push(['gap', g.from, g.to]));
        h.connect();
        window.h = h;
      }, ch);
      await page.waitForFunction((ch) => window.h.isActive(ch), ch, { timeout: 10000 });
      assert.equal(await page.evaluate(() => window.h.transport), 'sse');
      assert.ok(proxy.upgradesRefused >= 1);
      for (const n of range(1, 5)) await hub.publish({ channel: ch, data: n });
      await page.waitForFunction(() => window.got.length === 5, null, { timeout: 5000 });
      proxy.dropAll();
      for (const n of range(6, 10)) await hub.publish({ channel: ch, data: n });
      await page.waitForFunction(() => window.got.length === 10, null, { timeout: 10000 });
      assert.deepEqual(await page.evaluate(() => window.got), range(1, 10));
      assert.deepEqual(await page.evaluate(() => window.notes), [['recovered', true]]);
      assert.equal(await page.evaluate(() => window.h.transport), 'sse');
      await page.close();
    });

  test('the dashboard through that proxy: connected, and it says SSE', { timeout: 30000 }, async () => {
    const page = await context.newPage();
    await page.goto(`${proxy.origin}/`, { waitUntil: 'load', timeout: 10000 });
    await page.waitForSelector('#conn-state[data-state="open"]', { timeout: 10000 });
    assert.equal(await page.getAttribute('#conn-state', 'data-transport'), 'sse');
    assert.match(await page.textContent('#conn-detail'), /SSE/);
    await page.close();
  });
});
