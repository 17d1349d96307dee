// harness.mjs -- shared helpers for the JavaScript tests: a real `herald` on free loopback
// ports, publishing through its HTTP API, and bounded waits.
//
// Environment (CTest sets them; the defaults suit a build in <repo>/build):
//   HERALD_BIN          the hub binary
//   HERALD_PUB_BIN      the herald-pub binary
//   HERALD_WEB_ROOT     the dashboard directory
//   HERALD_ARTIFACT_DIR where screenshots go (default: a temporary directory)
//   HERALD_KEEP_LOGS    when set, the hubs' logs are kept and their paths printed
//
// Every wait has a deadline and fails with a message that says what it waited for.

import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const HERALD_BIN = process.env.HERALD_BIN || join(REPO, 'build', 'hub', 'herald');
export const HERALD_PUB_BIN = process.env.HERALD_PUB_BIN || join(REPO, 'build', 'clients', 'herald-pub');
export const HERALD_WEB_ROOT = process.env.HERALD_WEB_ROOT || join(REPO, 'build', 'web');

const logDir = mkdtempSync(join(tmpdir(), 'herald-js-'));
const children = new Set();
process.on('exit', () => {
  for (const c of children) try { c.kill('SIGKILL'); } catch { /* gone */ }
  if (process.env.HERALD_KEEP_LOGS) console.error(`[harness] hub logs in ${logDir}`);
  else rmSync(logDir, { recursive: true, force: true });
});

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls fn (sync or async) every `every` ms until it returns a truthy value, which it
 *  returns; throws after timeoutMs with `what` in the message. */
export async function waitFor(fn, { timeoutMs = 5000, every = 25, what = 'a condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` +
        (last instanceof Error ? ` (last error: ${last.message})` : ''));
    await sleep(every);
  }
}

/** Resolves with the first value of emitter-like `on(type, fn)` that matches, or rejects
 *  after timeoutMs. */
export function nextOf(client, type, { match = () => true, timeoutMs = 5000 } = {}) {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for '${type}'`));
    }, timeoutMs);
    const off = client.on(type, (...args) => {
      if (!match(...args)) return;
      clearTimeout(timer);
      off();
      resolvePromise(args);
    });
  });
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolvePort(port));
    });
  });
}

function canConnect(port) {
  return new Promise((res) => {
    const s = tcpConnect({ port, host: '127.0.0.1' });
    s.once('connect', () => { s.destroy(); res(true); });
    s.once('error', () => res(false));
  });
}

let hubCount = 0;

/**
 * A herald process. start() waits until /health answers and /ws accepts connections;
 * stop() sends SIGTERM and waits for the exit (status 0 expected); start() again reuses the
 * same ports.
 */
export class Hub {
  constructor(options = {}) {
    this.options = { heartbeat: 25, 'drain-seconds': 2, ...options };
    this.port = 0;
    this.apiPort = 0;
    this.proc = null;
    this.exit = null;
    this.logPath = '';
  }

  /* with --tls-cert, --listen speaks TLS: wss:// and https:// */
  get #s() { return this.options['tls-cert'] ? 's' : ''; }
  get wsUrl() { return `ws${this.#s}://127.0.0.1:${this.port}/ws`; }
  get pageUrl() { return `http${this.#s}://127.0.0.1:${this.port}/`; }
  get apiUrl() { return `http://127.0.0.1:${this.apiPort}`; }

  async start() {
    if (!this.port) this.port = await freePort();
    if (!this.apiPort) this.apiPort = await freePort();
    const args = ['--listen', `127.0.0.1:${this.port}`, '--api-listen', `127.0.0.1:${this.apiPort}`,
                  '--web-root', HERALD_WEB_ROOT, '--log-level', 'info'];
    for (const [k, v] of Object.entries(this.options)) args.push(`--${k}`, String(v));
    this.logPath = join(logDir, `hub-${++hubCount}.log`);
    const fd = openSync(this.logPath, 'a');
    const proc = spawn(HERALD_BIN, args, { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    children.add(proc);
    this.proc = proc;
    this.exit = new Promise((res) => proc.once('exit', (code, signal) => {
      children.delete(proc);
      res({ code, signal });
    }));
    await waitFor(async () => {
      if (proc.exitCode !== null) throw new Error(`herald exited with ${proc.exitCode}: ${this.log()}`);
      const r = await fetch(`${this.apiUrl}/health`).catch(() => null);
      return r && r.ok && await canConnect(this.port);
    }, { timeoutMs: 10000, what: `herald to listen on ${this.port}/${this.apiPort}` });
    return this;
  }

  /** SIGTERM, then the exit; returns {code, signal}. SIGKILL after timeoutMs. */
  async stop({ timeoutMs = 8000 } = {}) {
    const proc = this.proc;
    if (!proc) return null;
    this.proc = null;
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    let timer;
    const killed = new Promise((res) => {
      timer = setTimeout(() => { proc.kill('SIGKILL'); res(null); }, timeoutMs);
    });
    const result = await Promise.race([this.exit, killed]);
    clearTimeout(timer);
    if (!result) {
      await this.exit;
      throw new Error(`herald did not stop within ${timeoutMs} ms of SIGTERM: ${this.log()}`);
    }
    return result;
  }

  log() {
    try {
      return readFileSync(this.logPath, 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** POST /publish; resolves with the parsed 202 body, rejects on another status. */
  async publish(body) {
    const r = await fetch(`${this.apiUrl}/publish`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
    });
    const text = await r.text();
    if (r.status !== 202) throw new Error(`publish: ${r.status} ${text}`);
    return JSON.parse(text);
  }

  async stats() {
    const r = await fetch(`${this.apiUrl}/stats`, { signal: AbortSignal.timeout(5000) });
    return r.json();
  }
}

/**
 * A TCP relay in front of a port, for cutting links without touching the hub: dropAll()
 * destroys every link (the client sees the connection lost); while `isRefusing`, new
 * connections are closed at once.
 */
export class Relay {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.isRefusing = false;
    this.links = new Set();
    this.accepted = 0;
    this.server = createServer((down) => {
      if (this.isRefusing) { down.destroy(); return; }
      this.accepted++;
      const up = tcpConnect({ port: this.targetPort, host: '127.0.0.1' });
      const link = { down, up };
      this.links.add(link);
      down.pipe(up).pipe(down);
      const end = () => { up.destroy(); down.destroy(); this.links.delete(link); };
      down.on('error', end); up.on('error', end); down.on('close', end); up.on('close', end);
    });
  }

  async start() {
    await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = this.server.address().port;
    return this;
  }

  dropAll() {
    for (const { down, up } of this.links) { down.destroy(); up.destroy(); }
    this.links.clear();
  }

  async stop() {
    this.dropAll();
    await new Promise((r) => this.server.close(r));
  }
}

let channelCount = 0;
/** A channel name no other test uses. */
export function uniqueChannel(prefix = 'ch') {
  return `${prefix}-${process.pid}-${++channelCount}`;
}
