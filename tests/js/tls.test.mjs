// tls.test.mjs -- a hub with --tls-cert and --tls-key (a self-signed certificate the openssl
// program makes here): herald.js in Node.js over wss:// through the `ws` package with `ca` set
// to that certificate, and the dashboard in Debian's headless Chromium over https://, trusting
// exactly that certificate by its public key (--ignore-certificate-errors-spki-list), its
// herald.js connecting over wss:// (the page builds its URL from location).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate, createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';

import { Herald } from '../../clients/js/herald.js';
import { launchChromium } from './chromium.mjs';
import { Hub, nextOf, uniqueChannel, waitFor } from './harness.mjs';

const dir = mkdtempSync(join(tmpdir(), 'herald-tls-'));
const certPath = join(dir, 'hub.crt');
const keyPath = join(dir, 'hub.key');

let hub;
let cert;

before(async () => {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
    '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=herald-js-test',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  cert = readFileSync(certPath);
  hub = await new Hub({ 'tls-cert': certPath, 'tls-key': keyPath }).start();
});

after(async () => {
  const r = await hub?.stop();
  rmSync(dir, { recursive: true, force: true });
  if (r) assert.deepEqual(r, { code: 0, signal: null }, 'the hub exits 0 on SIGTERM');
});

describe('Node.js over wss', () => {
  test('the hub URLs are wss:// and https://', () => {
    assert.match(hub.wsUrl, /^wss:\/\/127\.0\.0\.1:\d+\/ws$/);
    assert.match(hub.pageUrl, /^https:\/\/127\.0\.0\.1:\d+\/$/);
  });

  test('ws with ca: subscribe, publish, receive', async () => {
    const ch = uniqueChannel('wss');
    const ws = new WebSocket(`${hub.wsUrl}?channels=${ch}`, { ca: cert });
    const frames = [];
    ws.on('message', (d) => frames.push(JSON.parse(d)));
    await new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); });
    await waitFor(() => frames.some((f) => f.type === 'subscribed'), { what: 'subscribed' });
    assert.equal(frames[0].type, 'welcome');
    assert.match(ws._socket.getProtocol(), /^TLSv1\.[23]$/);
    await hub.publish({ channel: ch, event: 'created', data: { n: 1 } });
    const ev = await waitFor(() => frames.find((f) => f.type === 'event'), { what: 'the event' });
    assert.deepEqual([ev.channel, ev.event, ev.data], [ch, 'created', { n: 1 }]);
    ws.close(1000);
    await new Promise((res) => ws.once('close', res));
  });

  test('ws without ca refuses the self-signed certificate', async () => {
    const ws = new WebSocket(hub.wsUrl);
    const err = await new Promise((res) => { ws.once('error', res); ws.once('open', () => res(null)); });
    assert.ok(err, 'connected to a certificate nothing vouches for');
    assert.match(err.code || err.message, /SELF_SIGNED|self.signed/i);
  });

  test('herald.js over wss: events, and its ping', async () => {
    /* herald.js constructs `new WebSocket(url)`: a subclass adds the trust */
    class TrustingWebSocket extends WebSocket {
      constructor(url, protocols) { super(url, protocols, { ca: cert }); }
    }
    const ch = uniqueChannel('herald-wss');
    const h = new Herald(hub.wsUrl, { WebSocket: TrustingWebSocket, backoff: { initialMs: 100, maxMs: 1000 } });
    const got = [];
    h.subscribe(ch, (e) => got.push(e.data));
    h.connect();
    await nextOf(h, 'open');
    await waitFor(() => h.isActive(ch), { what: `${ch} acknowledged` });
    for (let i = 0; i < 20; i++) await hub.publish({ channel: ch, data: i });
    await waitFor(() => got.length === 20, { what: '20 events' });
    assert.deepEqual(got, [...Array(20).keys()]);
    assert.ok((await h.ping()) >= 0);
    h.close();
  });
});

describe('the dashboard in Chromium over https', () => {
  let browser;
  let context;

  before(async () => {
    /* trust this certificate only: the SHA-256 of its SubjectPublicKeyInfo */
    const spki = new X509Certificate(cert).publicKey.export({ type: 'spki', format: 'der' });
    const pin = createHash('sha256').update(spki).digest('base64');
    browser = await launchChromium({ args: [`--ignore-certificate-errors-spki-list=${pin}`] });
    context = browser.context;
  });

  after(async () => {
    await browser?.close();
  });

  test('the page over https, its herald.js over wss, an event in the feed', { timeout: 30000 }, async () => {
    const page = await context.newPage();
    const problems = [];
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    const ch = uniqueChannel('page-tls');
    const response = await page.goto(`${hub.pageUrl}?channels=${ch}`, { waitUntil: 'load', timeout: 10000 });
    assert.equal(response.status(), 200);
    const security = await response.securityDetails();
    assert.match(security?.protocol ?? '', /^TLS 1\.[23]$/);
    assert.equal(security.subjectName, 'herald-js-test');
    await page.waitForSelector('#conn-state[data-state="open"]', { timeout: 5000 });
    assert.match(await page.textContent('#info-endpoint'), /^wss:\/\/127\.0\.0\.1:\d+\/ws$/);
    await page.waitForSelector(`.chip[data-channel="${ch}"]:not(.pending)`, { timeout: 4000 });
    const marker = `tls-${Date.now()}`;
    await hub.publish({ channel: ch, event: 'created', data: { marker } });
    await page.waitForSelector(`#feed li.ev:has-text("${marker}")`, { timeout: 2000 });
    /* the stats panel fills from $stats, over the same wss connection */
    await page.waitForFunction(() => /^\d+$/.test(document.getElementById('stat-connections').textContent),
      null, { timeout: 4000 });
    assert.deepEqual(problems, []);
    await page.close();
  });

  test('a certificate Chromium was not told to trust is refused', { timeout: 30000 }, async () => {
    const other = await launchChromium();
    try {
      const page = await other.context.newPage();
      await assert.rejects(page.goto(hub.pageUrl, { timeout: 10000 }), /ERR_CERT_AUTHORITY_INVALID/);
    } finally {
      await other.close();
    }
  });
});
