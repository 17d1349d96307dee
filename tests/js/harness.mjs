// harness.mjs -- shared helpers for the JavaScript tests: a real `herald` on free loopback
// ports, publishing through its HTTP API, a redis-server, nginx from the shipped config, and
// bounded waits.
//
// Environment (CTest sets them; the defaults suit a build in <repo>/build):
//   HERALD_BIN          the hub binary
//   HERALD_PUB_BIN      the herald-pub binary
//   HERALD_WEB_ROOT     the dashboard directory
//   HERALD_ARTIFACT_DIR where screenshots go (default: a temporary directory)
//   HERALD_KEEP_LOGS    when set, the hubs' (and redis-server's, nginx's) logs are kept and
//                       their directory printed
//   HERALD_REDIS_SERVER redis-server (default: on PATH)
//   HERALD_NGINX        nginx (default /usr/sbin/nginx)
//   HERALD_NGINX_CONF   the shipped site config (default systemd/nginx-herald.conf)
//
// Every wait has a deadline and fails with a message that says what it waited for.

import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, openSync, closeSync, readFileSync, rmSync,
  writeFileSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The first `name` on PATH that is executable, or null. */
export function which(name) {
  for (const dir of (process.env.PATH || '').split(delimiter)) {
    const p = join(dir, name);
    try { accessSync(p, constants.X_OK); return p; } catch { /* next */ }
  }
  return null;
}

/** True when path is an executable file. */
export function executable(path) {
  try { accessSync(path, constants.X_OK); return true; } catch { return false; }
}

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const HERALD_BIN = process.env.HERALD_BIN || join(REPO, 'build', 'hub', 'herald');
export const HERALD_PUB_BIN = process.env.HERALD_PUB_BIN || join(REPO, 'build', 'clients', 'herald-pub');
export const HERALD_WEB_ROOT = process.env.HERALD_WEB_ROOT || join(REPO, 'build', 'web');
export const REDIS_SERVER = process.env.HERALD_REDIS_SERVER || which('redis-server');
export const NGINX = process.env.HERALD_NGINX || '/usr/sbin/nginx';
export const NGINX_CONF = process.env.HERALD_NGINX_CONF || join(REPO, 'systemd', 'nginx-herald.conf');

const logDir = mkdtempSync(join(tmpdir(), 'herald-js-'));
const children = new Set(); /* every process started here: killed at exit if still running */
process.on('exit', () => {
  for (const c of children) {
    /* nginx's workers outlive a killed master: they go first, while /proc still lists them */
    if (c.killChildren) for (const pid of childPids(c.pid)) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    try { c.kill('SIGKILL'); } catch { /* gone */ }
  }
  if (process.env.HERALD_KEEP_LOGS) console.error(`[harness] logs in ${logDir}`);
  else rmSync(logDir, { recursive: true, force: true });
});

/** Starts a child process that is killed when this process exits (with its own children
 *  when killChildren); proc.exited resolves with {code, signal}. */
function spawnTracked(cmd, args, options, { killChildren = false } = {}) {
  const proc = spawn(cmd, args, options);
  proc.killChildren = killChildren;
  children.add(proc);
  proc.exited = new Promise((res) => proc.once('exit', (code, signal) => {
    children.delete(proc);
    res({ code, signal });
  }));
  return proc;
}

/** The last n lines of a file, or '(none)'. */
export function tail(path, n = 20) {
  try { return readFileSync(path, 'utf8').split('\n').slice(-n).join('\n'); } catch { return '(none)'; }
}

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

  /** Sends signal (SIGKILL: a crash) and waits for the exit; returns {code, signal}.
   *  start() afterwards starts it again on the same ports. */
  async kill(signal = 'SIGKILL') {
    const proc = this.proc;
    if (!proc) return null;
    this.proc = null;
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    return this.exit;
  }

  /** True when GET /ready answers 200. */
  async isReady() {
    const r = await fetch(`${this.apiUrl}/ready`, { signal: AbortSignal.timeout(2000) }).catch(() => null);
    if (r) await r.arrayBuffer().catch(() => null);
    return !!r && r.status === 200;
  }

  /** GET /metrics as {'name' or 'name{labels}': number}. */
  async metrics() {
    const r = await fetch(`${this.apiUrl}/metrics`, { signal: AbortSignal.timeout(5000) });
    const out = {};
    for (const line of (await r.text()).split('\n')) {
      const m = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?)\s+(\S+)$/.exec(line);
      if (m) out[m[1]] = Number(m[2]);
    }
    return out;
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

/** An HTTP proxy in front of a hub that refuses WebSocket upgrades (403), as some corporate
 *  proxies do, and passes every other request through, streaming (an SSE response is never
 *  held); with isPassingUpgrades set it passes upgrades too. dropAll() cuts every connection
 *  through it (the hub sees its streams end). */
export class NoUpgradeProxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.upgradesRefused = 0;
    this.upgradesPassed = 0;
    this.isPassingUpgrades = false; /* set: upgrades go through to the hub (the proxy is fixed) */
    this.paths = [];
    this.sockets = new Set();
    this.server = createHttpServer((req, res) => {
      this.paths.push(req.url);
      const up = httpRequest({
        host: '127.0.0.1', port: this.targetPort, method: req.method, path: req.url,
        headers: req.headers, agent: false,
      }, (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.destroy());
      res.on('close', () => up.destroy());
      req.pipe(up);
    });
    this.server.on('upgrade', (req, socket, head) => {
      if (!this.isPassingUpgrades) {
        this.upgradesRefused++;
        socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
        return;
      }
      this.upgradesPassed++;
      const up = tcpConnect({ port: this.targetPort, host: '127.0.0.1' }, () => {
        const lines = [`${req.method} ${req.url} HTTP/1.1`];
        for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
        up.write(lines.join('\r\n') + '\r\n\r\n');
        if (head && head.length) up.write(head);
        socket.pipe(up).pipe(socket);
      });
      const end = () => { up.destroy(); socket.destroy(); };
      up.on('error', end); socket.on('error', end); up.on('close', end); socket.on('close', end);
    });
    this.server.on('connection', (sock) => {
      this.sockets.add(sock);
      sock.on('close', () => this.sockets.delete(sock));
    });
  }

  get origin() { return `http://127.0.0.1:${this.port}`; }
  get wsUrl() { return `ws://127.0.0.1:${this.port}/ws`; }

  async start() {
    await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = this.server.address().port;
    return this;
  }

  dropAll() {
    for (const sock of this.sockets) sock.destroy();
    this.sockets.clear();
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

// --- redis-server ---------------------------------------------------------------------------

/* One RESP reply from buf at offset i: [value, next offset], or null when incomplete. An
 * error reply is an Error value. */
function respParse(buf, i = 0) {
  const eol = buf.indexOf('\r\n', i);
  if (eol < 0) return null;
  const kind = String.fromCharCode(buf[i]);
  const line = buf.toString('utf8', i + 1, eol);
  const next = eol + 2;
  switch (kind) {
  case '+': return [line, next];
  case '-': return [new Error(line), next];
  case ':': return [Number(line), next];
  case '$': {
    const n = Number(line);
    if (n < 0) return [null, next];
    if (buf.length < next + n + 2) return null;
    return [buf.toString('utf8', next, next + n), next + n + 2];
  }
  case '*': {
    const n = Number(line);
    if (n < 0) return [null, next];
    const out = [];
    let at = next;
    for (let k = 0; k < n; k++) {
      const r = respParse(buf, at);
      if (!r) return null;
      out.push(r[0]);
      at = r[1];
    }
    return [out, at];
  }
  default: throw new Error(`not RESP: ${JSON.stringify(buf.toString('utf8', i, Math.min(buf.length, i + 40)))}`);
  }
}

/** One Redis command on a fresh connection to 127.0.0.1:port; resolves with the reply,
 *  rejects on an error reply, a refused connection or no answer within timeoutMs. */
export function redisCall(port, args, { timeoutMs = 2000 } = {}) {
  return new Promise((res, reject) => {
    const s = tcpConnect({ port, host: '127.0.0.1' });
    let buf = Buffer.alloc(0);
    const done = (err, v) => { clearTimeout(timer); s.destroy(); err ? reject(err) : res(v); };
    const timer = setTimeout(() => done(new Error(`redis ${args[0]}: no answer within ${timeoutMs} ms`)),
      timeoutMs);
    s.once('connect', () => {
      s.write(`*${args.length}\r\n` + args.map((a) => {
        const b = String(a);
        return `$${Buffer.byteLength(b)}\r\n${b}\r\n`;
      }).join(''));
    });
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      let r;
      try { r = respParse(buf); } catch (err) { done(err); return; }
      if (!r) return;
      if (r[0] instanceof Error) done(new Error(`redis ${args[0]}: ${r[0].message}`));
      else done(null, r[0]);
    });
    s.once('error', (err) => done(err));
  });
}

let redisCount = 0;

/**
 * A redis-server on 127.0.0.1 without persistence (--save '' --appendonly no): a restart
 * starts empty. start() picks a free port the first time and reuses it after a stop() or
 * kill(); each waits until PING answers (or the exit).
 */
export class RedisServer {
  constructor({ args = [] } = {}) {
    this.args = args;
    this.port = 0;
    this.proc = null;
    this.dir = '';
  }

  get url() { return `redis://127.0.0.1:${this.port}`; }
  get pid() { return this.proc ? this.proc.pid : 0; }
  get logPath() { return join(this.dir, 'redis.log'); }

  async start() {
    if (!REDIS_SERVER) throw new Error('redis-server is absent (apt-get install redis-server)');
    if (!this.port) this.port = await freePort();
    if (!this.dir) this.dir = mkdtempSync(join(logDir, `redis-${++redisCount}-`));
    const proc = spawnTracked(REDIS_SERVER, ['--port', String(this.port), '--bind', '127.0.0.1',
      '--save', '', '--appendonly', 'no', '--dir', this.dir, '--logfile', this.logPath, ...this.args],
    { stdio: 'ignore' });
    this.proc = proc;
    await waitFor(async () => {
      if (proc.exitCode !== null) throw new Error(`redis-server exited with ${proc.exitCode}: ${tail(this.logPath)}`);
      return (await this.call('PING', { timeoutMs: 500 }).catch(() => null)) === 'PONG';
    }, { timeoutMs: 5000, what: `redis-server on ${this.port}` });
    return this;
  }

  /** One command: redis.call('CLIENT', 'KILL', 'TYPE', 'pubsub'); a last argument
   *  {timeoutMs} bounds the wait. */
  call(...args) {
    const opts = typeof args.at(-1) === 'object' ? args.pop() : {};
    return redisCall(this.port, args, opts);
  }

  /** SIGSTOP: Redis hangs (its sockets stay open, nothing answers). */
  pause() { this.proc.kill('SIGSTOP'); }

  /** SIGCONT after pause(). */
  resume() { this.proc.kill('SIGCONT'); }

  /** SIGKILL (a crash); resolves with the exit. */
  async kill() {
    const proc = this.proc;
    if (!proc) return null;
    this.proc = null;
    proc.kill('SIGCONT');
    proc.kill('SIGKILL');
    return proc.exited;
  }

  /** SIGTERM (SIGCONT first, in case it is paused), SIGKILL after timeoutMs. */
  async stop({ timeoutMs = 5000 } = {}) {
    const proc = this.proc;
    if (!proc) return null;
    this.proc = null;
    return stopProc(proc, timeoutMs);
  }
}

/** SIGCONT and SIGTERM to proc, then SIGKILL (to it and to the pids extraPids() gave before)
 *  when it has not exited within ms; resolves with {code, signal}. */
async function stopProc(proc, ms, extraPids = () => []) {
  if (proc.exitCode !== null || proc.signalCode !== null) return proc.exited;
  const extra = extraPids();
  try { proc.kill('SIGCONT'); proc.kill('SIGTERM'); } catch { /* gone */ }
  let timer;
  const late = new Promise((res) => { timer = setTimeout(() => res('late'), ms); });
  const first = await Promise.race([proc.exited, late]);
  clearTimeout(timer);
  if (first !== 'late') return first;
  for (const pid of [proc.pid, ...extra]) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  return proc.exited;
}

function childPids(pid) {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

// --- nginx from the shipped config (as tests/integration/test_load_balancer.py does) --------

function subOnce(text, re, repl, what) {
  if (!re.test(text)) throw new Error(`the shipped nginx config changed shape: no ${what} to replace`);
  return text.replace(re, repl);
}

/** In `upstream NAME { ... }`, one server line per address, with the first line's parameters. */
function replaceServers(text, upstream, addrs) {
  const m = new RegExp(`(upstream\\s+${upstream}\\s*\\{)([\\s\\S]*?)(\\n\\})`).exec(text);
  if (!m) throw new Error(`the shipped nginx config has no upstream ${upstream}`);
  const lineRe = /^([ \t]*)server\s+\S+([^;\n]*);[ \t]*\n?/gm;
  const servers = [...m[2].matchAll(lineRe)];
  if (!servers.length) throw new Error(`upstream ${upstream} has no server lines`);
  const [, indent, params] = servers[0];
  const lines = addrs.map((a) => `${indent}server ${a}${params};\n`).join('');
  let first = true;
  const body = m[2].replace(lineRe, () => (first ? ((first = false), lines) : ''));
  const start = m.index + m[1].length;
  return text.slice(0, start) + body + text.slice(start + m[2].length);
}

/**
 * Debian's nginx as a non-daemon from a generated main config in a temporary directory that
 * includes the shipped site config (NGINX_CONF) with the hubs' ports in its two upstreams
 * and its listens moved to free loopback ports: `wsUrl` is the balancer's /ws, `apiUrl` its
 * publishers' port. hubs: objects with `port` and `apiPort` (Hub), started or not.
 */
export class Nginx {
  constructor(hubs) {
    this.hubs = hubs;
    this.port = 0;
    this.apiPort = 0;
    this.proc = null;
    this.dir = '';
  }

  get wsUrl() { return `ws://127.0.0.1:${this.port}/ws`; }
  get apiUrl() { return `http://127.0.0.1:${this.apiPort}`; }
  get publishUrl() { return `${this.apiUrl}/publish`; }
  get errorLogPath() { return join(this.dir, 'error.log'); }

  site() {
    let text = readFileSync(NGINX_CONF, 'utf8');
    text = replaceServers(text, 'herald_ws', this.hubs.map((h) => `127.0.0.1:${h.port}`));
    text = replaceServers(text, 'herald_api', this.hubs.map((h) => `127.0.0.1:${h.apiPort}`));
    text = subOnce(text, /^\s*listen\s+\[::\]:80;\n/m, '', 'IPv6 listen');
    text = subOnce(text, /listen\s+80;/, `listen 127.0.0.1:${this.port};`, 'public listen');
    text = subOnce(text, /listen\s+127\.0\.0\.1:8001;/, `listen 127.0.0.1:${this.apiPort};`, 'API listen');
    return text;
  }

  async start() {
    if (!executable(NGINX)) throw new Error(`${NGINX} is absent (apt-get install nginx-light)`);
    if (!this.port) this.port = await freePort();
    if (!this.apiPort) this.apiPort = await freePort();
    const d = this.dir = mkdtempSync(join(logDir, 'nginx-'));
    writeFileSync(join(d, 'herald.conf'), this.site());
    /* run as root, nginx's workers would be `nobody`, who cannot write request bodies of
     * over 16 KiB to client_body_temp_path in this test's private directory (a 500) */
    const user = process.getuid && process.getuid() === 0 ? 'user root;\n' : '';
    writeFileSync(join(d, 'nginx.conf'), `daemon off;
${user}worker_processes 1;
pid ${d}/nginx.pid;
error_log ${d}/error.log info;
events { worker_connections 1024; }
http {
    access_log ${d}/access.log;
    client_body_temp_path ${d}/body;
    proxy_temp_path ${d}/proxy;
    fastcgi_temp_path ${d}/fastcgi;
    uwsgi_temp_path ${d}/uwsgi;
    scgi_temp_path ${d}/scgi;
    include ${d}/herald.conf;
}
`);
    const proc = this.proc = spawnTracked(NGINX, ['-p', `${d}/`, '-c', join(d, 'nginx.conf'), '-e', this.errorLogPath],
      { stdio: 'ignore' }, { killChildren: true });
    await waitFor(async () => {
      if (proc.exitCode !== null) throw new Error(`nginx exited with ${proc.exitCode}: ${tail(this.errorLogPath)}`);
      return (await canConnect(this.port)) && canConnect(this.apiPort);
    }, { timeoutMs: 5000, what: `nginx on ${this.port}/${this.apiPort}` });
    return this;
  }

  /** SIGTERM (a fast shutdown), SIGKILL to the master and its workers after timeoutMs. */
  async stop({ timeoutMs = 5000 } = {}) {
    const proc = this.proc;
    if (!proc) return null;
    this.proc = null;
    return stopProc(proc, timeoutMs, () => childPids(proc.pid));
  }

  errorLog(n = 30) { return tail(this.errorLogPath, n); }
}
