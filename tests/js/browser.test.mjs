// browser.test.mjs -- the dashboard (web/) in headless Chromium against a real hub.
//
// Debian's /usr/bin/chromium driven by playwright-core (never a downloaded browser), with a
// fresh profile per run. The page is served by the hub itself, under lws's CSP (no inline
// script or style). Screenshots of the page under load (desktop and phone sizes) are written
// to HERALD_ARTIFACT_DIR (CTest: the build's tests/js directory).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { launchChromium } from './chromium.mjs';
import { HERALD_PUB_BIN, Hub, sleep, uniqueChannel, waitFor } from './harness.mjs';

const ARTIFACTS = process.env.HERALD_ARTIFACT_DIR || mkdtempSync(join(tmpdir(), 'herald-shots-'));
/* what Chromium logs, as an error, when a WebSocket cannot connect: expected while the hub is down */
const WS_DOWN = /WebSocket connection to .* failed/;
/* herald.js follows a WebSocket that failed with an SSE stream (a proxy may refuse upgrades):
 * while the hub is down that fails too, and Chromium logs both */
const SSE_DOWN = /^(request failed: \S+\/sse\?\S+ net::ERR_CONNECTION_REFUSED|console error: Failed to load resource: net::ERR_CONNECTION_REFUSED)$/;

let hub;
let browser;
let context;

before(async () => {
  hub = await new Hub().start();
  browser = await launchChromium({ viewport: { width: 1280, height: 860 } });
  context = browser.context;
});

after(async () => {
  await browser?.close();
  const r = await hub?.stop();
  if (r) assert.deepEqual(r, { code: 0, signal: null }, 'the hub exits 0 on SIGTERM');
});

/** A new page that records console errors, page errors and failed requests. */
async function openPage(path = '/', { viewport } = {}) {
  const page = await context.newPage();
  if (viewport) await page.setViewportSize(viewport);
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
  const response = await page.goto(hub.pageUrl.replace(/\/$/, '') + path, { waitUntil: 'load', timeout: 10000 });
  return { page, problems, response };
}

const connState = (page) => page.getAttribute('#conn-state', 'data-state');

async function waitState(page, state, timeoutMs = 5000) {
  await page.waitForSelector(`#conn-state[data-state="${state}"]`, { timeout: timeoutMs });
}

/** The numbers the stats panel shows, as text. */
const statsText = (page) => page.$$eval('#stats dd, #stats small', (els) => els.map((e) => e.textContent).join(' | '));

test('the page loads under the CSP with no console errors', { timeout: 30000 }, async () => {
  const { page, problems, response } = await openPage('/');
  assert.equal(response.status(), 200);
  const csp = response.headers()['content-security-policy'] || '';
  assert.match(csp, /script-src 'self'/, 'served with a CSP that forbids inline script');
  assert.match(csp, /style-src 'self'/);
  await waitState(page, 'open');
  assert.equal(await page.textContent('#conn-label'), 'connected');
  await page.waitForFunction(() => /^\d+$/.test(document.getElementById('stat-connections').textContent),
    null, { timeout: 4000 });
  await sleep(1200);
  assert.deepEqual(problems, []);
  await page.close();
});

test('subscribe in the page, publish through the API: the event is in the feed within a second', { timeout: 30000 }, async () => {
  const { page, problems } = await openPage('/');
  await waitState(page, 'open');
  const ch = uniqueChannel('ui');
  await page.fill('#channel-input', ch);
  await page.click('#sub-button');
  await page.waitForSelector(`.chip[data-channel="${ch}"]:not(.pending)`, { timeout: 3000 });
  assert.match(page.url(), new RegExp(`\\?channels=${ch}$`), 'the address holds the channel (bookmarkable)');

  const marker = `m-${Date.now()}`;
  const t0 = Date.now();
  await hub.publish({ channel: ch, event: 'created', data: { marker, amount: 12.5 } });
  const row = await page.waitForSelector(`#feed li.ev:has-text("${marker}")`, { timeout: 1000 });
  const took = Date.now() - t0;
  assert.ok(took < 1000, `shown after ${took} ms`);
  assert.match(await row.textContent(), new RegExp(`${ch}.*created`));

  /* click: the event's JSON, pretty-printed */
  await row.click();
  const json = await page.textContent('#inspector-json');
  assert.deepEqual(JSON.parse(json).data, { marker, amount: 12.5 });
  assert.match(json, /\n {2}"channel": /, 'indented');

  /* the filter keeps one channel; pause holds the feed */
  const other = uniqueChannel('ui2');
  await page.fill('#channel-input', other);
  await page.press('#channel-input', 'Enter');
  await page.waitForSelector(`.chip[data-channel="${other}"]:not(.pending)`, { timeout: 3000 });
  await page.selectOption('#filter', other);
  await hub.publish({ channel: other, data: 'other-1' });
  await page.waitForSelector('#feed li.ev:has-text("other-1")', { timeout: 2000 });
  assert.equal(await page.$$eval('#feed li.ev', (els) => els.length), 1, 'only the filtered channel');
  await page.click('#pause');
  await hub.publish({ channel: other, data: 'other-2' });
  await page.waitForSelector('#pause:has-text("1 new")', { timeout: 2000 });
  assert.equal(await page.$$eval('#feed li.ev', (els) => els.length), 1, 'paused');
  await page.click('#pause');
  await page.waitForSelector('#feed li.ev:has-text("other-2")', { timeout: 2000 });
  await page.selectOption('#filter', '');
  assert.equal(await page.$$eval('#feed li.ev', (els) => els.length), 3);

  /* × unsubscribes: the chip goes, the address follows, no more events */
  await page.click(`.chip[data-channel="${ch}"] .chip-x`);
  await page.waitForSelector(`.chip[data-channel="${ch}"]`, { state: 'detached', timeout: 2000 });
  assert.match(page.url(), new RegExp(`\\?channels=${other}$`));
  await hub.publish({ channel: ch, data: 'after-unsubscribe' });
  await hub.publish({ channel: other, data: 'other-3' });
  await page.waitForSelector('#feed li.ev:has-text("other-3")', { timeout: 2000 });
  assert.equal(await page.$$eval('#feed li.ev:has-text("after-unsubscribe")', (els) => els.length), 0);
  assert.deepEqual(problems, []);
  await page.close();
});

test('?channels= subscribes at load; the chart and the stats move', { timeout: 30000 }, async () => {
  const a = uniqueChannel('chart-a');
  const b = uniqueChannel('chart-b');
  const { page, problems } = await openPage(`/?channels=${a},${b}`);
  await page.waitForSelector(`.chip[data-channel="${a}"]:not(.pending)`, { timeout: 4000 });
  await page.waitForSelector(`.chip[data-channel="${b}"]:not(.pending)`, { timeout: 4000 });
  await page.waitForFunction(() => /^\d+$/.test(document.getElementById('stat-connections').textContent),
    null, { timeout: 4000 });
  const chart0 = await page.$eval('#chart', (c) => c.toDataURL());
  const stats0 = await statsText(page);
  for (let i = 0; i < 10; i++) {
    await hub.publish([{ channel: a, event: 'tick', data: { i } }, { channel: a, data: { i } }, { channel: b, data: { i } }]);
    await sleep(100);
  }
  await page.waitForFunction(() => Number(document.getElementById('chart').dataset.max) > 0, null, { timeout: 3000 });
  const chart1 = await page.$eval('#chart', (c) => c.toDataURL());
  assert.notEqual(chart1, chart0, 'the chart was redrawn with the events');
  /* the lines rise at the right (now), and nowhere near the left (5 minutes ago) */
  const colouredAbove0 = (from, to) => page.$eval('#chart', (c, [f, t]) => {
    const [l, top, w, h] = c.dataset.plot.split(',').map(Number);
    const k = c.width / c.clientWidth;
    const x0 = Math.round((l + w * f) * k);
    const copy = document.createElement('canvas'); /* read a copy: no readback on the live one */
    copy.width = c.width;
    copy.height = c.height;
    const cc = copy.getContext('2d', { willReadFrequently: true });
    cc.drawImage(c, 0, 0);
    const img = cc.getImageData(x0, Math.round(top * k),
      Math.max(1, Math.round(w * (t - f) * k)), Math.round((h - 4) * k));
    let n = 0;
    for (let i = 0; i < img.data.length; i += 4) {
      const [r, g, b] = img.data.slice(i, i + 3);
      if (Math.max(r, g, b) - Math.min(r, g, b) > 80) n++;
    }
    return n;
  }, [from, to]);
  assert.ok(await colouredAbove0(0.97, 1) > 0, 'the newest seconds show the events');
  assert.equal(await colouredAbove0(0, 0.9), 0, 'nothing drawn above zero in the older minutes');
  await waitFor(async () => (await statsText(page)) !== stats0, { timeoutMs: 3000, what: 'the stats to change' });
  await page.waitForFunction(() => document.querySelector('#stat-out-total').textContent !== '\u00a0', null, { timeout: 3000 });
  /* the legend is redrawn with the chart, once a second */
  await waitFor(async () => {
    const legend = await page.textContent('#legend');
    return new RegExp(`${a}.*20 total`).test(legend) && new RegExp(`${b}.*10 total`).test(legend);
  }, { timeoutMs: 2500, what: 'the legend to count 20 and 10 events' });
  assert.deepEqual(problems, []);
  await page.close();
});

test('under load: 200 events/s from herald-pub --demo; screenshots', { timeout: 60000 }, async () => {
  const { page, problems } = await openPage('/?channels=orders,signups,metrics');
  await waitState(page, 'open');
  await page.waitForSelector('.chip[data-channel="metrics"]:not(.pending)', { timeout: 3000 });
  const demo = spawn(HERALD_PUB_BIN, ['--url', `${hub.apiUrl}/publish`, '--demo', '--rate', '200'],
                     { stdio: ['ignore', 'ignore', 'pipe'] });
  let demoErr = '';
  demo.stderr.on('data', (d) => { demoErr += d; });
  const demoExit = new Promise((r) => demo.once('exit', (code, signal) => r({ code, signal })));
  try {
    await sleep(4000);
    const t0 = Date.now();
    await page.evaluate(() => 1);
    const lag = Date.now() - t0;
    assert.ok(lag < 500, `the page answers within ${lag} ms under load`);
    const rows = await page.$$eval('#feed li.ev', (els) => els.length);
    assert.equal(rows, 500, 'the feed holds its cap');
    const inRate = parseFloat(await page.textContent('#stat-in'));
    assert.ok(inRate > 100, `the stats show ~200 events/s in: ${inRate}`);
    /* open one event in the inspector, without scrolling the page away from the top */
    await page.$eval('#feed li.ev:nth-child(4)', (li) => li.click());
    await sleep(300);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png') });

    const phone = await openPage('/?channels=orders,signups,metrics', { viewport: { width: 390, height: 844 } });
    await waitState(phone.page, 'open');
    await sleep(2500);
    await phone.page.screenshot({ path: join(ARTIFACTS, 'dashboard-phone.png') });
    const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no sideways scrolling on a phone (${overflow}px too wide)`);
    assert.deepEqual(phone.problems, []);
    await phone.page.close();
  } finally {
    demo.kill('SIGINT');
  }
  const exit = await Promise.race([demoExit, sleep(5000).then(() => null)]);
  assert.deepEqual(exit, { code: 0, signal: null }, `herald-pub --demo ends cleanly on SIGINT: ${demoErr}`);
  assert.match(demoErr, /demo: \d+ events accepted/);
  assert.deepEqual(problems, []);
  console.log(`screenshots: ${join(ARTIFACTS, 'dashboard.png')} ${join(ARTIFACTS, 'dashboard-phone.png')}`);
  await page.close();
});

test('a hub restart shows the disconnected state, then the new events', { timeout: 40000 }, async () => {
  const ch = uniqueChannel('restart');
  const { page, problems } = await openPage(`/?channels=${ch}`);
  await page.waitForSelector(`.chip[data-channel="${ch}"]:not(.pending)`, { timeout: 4000 });
  await hub.publish({ channel: ch, data: 'before-restart' });
  await page.waitForSelector('#feed li.ev:has-text("before-restart")', { timeout: 2000 });

  const stopped = await hub.stop();
  assert.deepEqual(stopped, { code: 0, signal: null });
  await waitState(page, 'reconnecting', 3000);
  assert.equal(await page.textContent('#conn-label'), 'reconnecting');
  await page.waitForSelector(`.chip[data-channel="${ch}"].pending`, { timeout: 1000 });
  await page.waitForSelector('#stats.stale', { timeout: 5000 });
  await sleep(1500); /* a few failed attempts while it is down */
  assert.equal(await connState(page), 'reconnecting');

  await hub.start();
  /* backoff: at most 500, 1000, 2000, 4000 ms between attempts by now */
  await waitState(page, 'open', 12000);
  await page.waitForSelector(`.chip[data-channel="${ch}"]:not(.pending)`, { timeout: 3000 });
  await hub.publish({ channel: ch, data: 'after-restart' });
  await page.waitForSelector('#feed li.ev:has-text("after-restart")', { timeout: 2000 });
  await page.waitForSelector('#stats:not(.stale)', { timeout: 3000 });
  assert.deepEqual(problems.filter((p) => !WS_DOWN.test(p) && !SSE_DOWN.test(p)), [],
    'no console errors besides the failed WebSocket and SSE connections while the hub was down');
  await page.close();
});
