// sse.test.mjs -- GET /sse read by Chromium's own EventSource, from a page the hub serves.
//
// Debian's /usr/bin/chromium through playwright-core, as in browser.test.mjs. The page is
// reached through a TCP relay (harness.mjs Relay) in front of the hub, so a test can cut the
// browser's connection without touching the hub: the browser then reconnects by itself,
// sending the last id it saw as Last-Event-ID, and the hub resumes every channel of the
// stream from there. No herald.js: this is the browser's EventSource against the hub alone.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launchChromium } from './chromium.mjs';
import { Hub, Relay, uniqueChannel, waitFor } from './harness.mjs';


let browser;
let context;

before(async () => {
  browser = await launchChromium();
  context = browser.context;
});

after(async () => {
  await browser?.close();
});

/** Opens the hub's page at origin and, in it, an EventSource on /sse?channels=...; every
 *  event it dispatches (any name) is kept in window.got as {type, id, data}. */
async function openStream(origin, channels, eventNames) {
  const page = await context.newPage();
  await page.goto(`${origin}/`, { waitUntil: 'load', timeout: 10000 });
  await page.evaluate(({ channels, eventNames }) => {
    window.got = [];
    window.opens = 0;
    window.errors = 0;
    const es = new EventSource(`/sse?channels=${channels.join(',')}`);
    const keep = (e) => window.got.push({ type: e.type, id: e.lastEventId, data: JSON.parse(e.data) });
    for (const name of ['message', 'welcome', 'subscribed', 'gap', ...eventNames])
      es.addEventListener(name, keep);
    es.onopen = () => { window.opens++; };
    es.onerror = () => { window.errors++; };
    window.es = es;
  }, { channels, eventNames });
  return page;
}

const got = (page) => page.evaluate(() => window.got);

async function waitGot(page, pred, what, timeoutMs = 10000) {
  return waitFor(async () => { const g = await got(page); return pred(g) ? g : null; },
    { timeoutMs, what });
}

const subscribedOf = (g) => g.filter((e) => e.type === 'subscribed');
const eventsOf = (g, ch) => g.filter((e) => e.data.type === 'event' && e.data.channel === ch);

test('EventSource reconnects by itself after its connection is cut and resumes both channels without loss', { timeout: 60000 }, async () => {
  const hub = await new Hub().start();
  const relay = await new Relay(hub.port).start();
  try {
    const a = uniqueChannel('sse-a');
    const b = uniqueChannel('sse-b');
    const page = await openStream(`http://127.0.0.1:${relay.port}`, [a, b], ['created']);
    await waitGot(page, (g) => subscribedOf(g).length === 2, 'subscribed to both channels');
    for (let i = 1; i <= 3; i++) await hub.publish({ channel: a, event: 'created', data: { i } });
    for (let i = 1; i <= 2; i++) await hub.publish({ channel: b, data: { i } });
    let g = await waitGot(page, (x) => eventsOf(x, a).length === 3 && eventsOf(x, b).length === 2,
      'the first five events');
    assert.deepEqual(eventsOf(g, a).map((e) => e.type), ['created', 'created', 'created']);
    assert.deepEqual(eventsOf(g, b).map((e) => e.type), ['message', 'message']);
    const last = g[g.length - 1].id;
    assert.match(last, /^[0-9a-f]{8}:\d+,[0-9a-f]{8}:\d+$/, 'the id is the stream cursor');

    // the browser's link goes; while it is away, both channels go on
    relay.isRefusing = true;
    relay.dropAll();
    await waitFor(() => page.evaluate(() => window.errors >= 1), { what: 'the browser to see the cut' });
    for (let i = 4; i <= 7; i++) await hub.publish({ channel: a, event: 'created', data: { i } });
    for (let i = 3; i <= 5; i++) await hub.publish({ channel: b, data: { i } });
    relay.isRefusing = false;

    // its own reconnect (Last-Event-ID) gets what it missed, then live events
    g = await waitGot(page, (x) => subscribedOf(x).length === 4, 'subscribed again after the reconnect', 20000);
    const again = subscribedOf(g).slice(2);
    assert.deepEqual(again.map((e) => e.data.recovered), [true, true], 'both channels recovered');
    await hub.publish({ channel: a, event: 'created', data: { i: 8 } });
    await hub.publish({ channel: b, data: { i: 6 } });
    g = await waitGot(page, (x) => eventsOf(x, a).length >= 8 && eventsOf(x, b).length >= 6,
      'every event of both channels');
    assert.deepEqual(eventsOf(g, a).map((e) => e.data.seq), [1, 2, 3, 4, 5, 6, 7, 8], 'a: each once, in order');
    assert.deepEqual(eventsOf(g, a).map((e) => e.data.data.i), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(eventsOf(g, b).map((e) => e.data.seq), [1, 2, 3, 4, 5, 6], 'b: each once, in order');
    assert.ok(await page.evaluate(() => window.opens) >= 2, 'the EventSource opened twice');
    assert.equal(relay.accepted >= 2, true);
    await page.evaluate(() => window.es.close());
    await page.close();
  } finally {
    await relay.stop();
    const r = await hub.stop();
    assert.deepEqual(r, { code: 0, signal: null });
  }
});

test('a drained hub ends the stream; the browser reconnects to the hub that comes back', { timeout: 60000 }, async () => {
  const hub = await new Hub().start();
  try {
    const ch = uniqueChannel('sse-drain');
    const page = await openStream(`http://127.0.0.1:${hub.port}`, [ch], []);
    await waitGot(page, (g) => subscribedOf(g).length === 1, 'subscribed');
    await hub.publish({ channel: ch, data: 'before' });
    await waitGot(page, (g) => eventsOf(g, ch).length === 1, 'the first event');
    assert.deepEqual(await hub.stop(), { code: 0, signal: null }, 'SIGTERM: the stream ends, the hub exits 0');
    await hub.start(); // same port: a new epoch (the in-process broker starts afresh)
    const g = await waitGot(page, (x) => subscribedOf(x).length === 2, 'subscribed on the new hub', 20000);
    const resumed = subscribedOf(g)[1].data;
    assert.equal(resumed.recovered, false, 'another epoch: not recovered, and the client knows it');
    assert.notEqual(resumed.epoch, subscribedOf(g)[0].data.epoch);
    await hub.publish({ channel: ch, data: 'after' });
    const last = await waitGot(page, (x) => eventsOf(x, ch).length === 2, 'the event on the new hub');
    assert.equal(eventsOf(last, ch)[1].data.data, 'after');
    await page.close();
  } finally {
    await hub.stop();
  }
});
