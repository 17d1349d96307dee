// herald.js -- the Herald client for browsers and Node.js: one dependency-free ES module.
//
// One Herald object holds one WebSocket to a hub's /ws endpoint and the set of channels the
// application wants. It keeps that set across reconnections: each (re)connection names the
// channels in its URL (`?channels=a,b`, so the hub joins them before it reads any frame) and
// sends subscribe frames for whatever did not fit there. Per SPEC.md:
//
//   - close 1001 (the hub is shutting down or draining): one immediate retry, then backoff;
//   - close 1008 or 4000-4999 (policy: bad token, origin, rate limit): state `refused`, no retry
//     until the application calls connect() again;
//   - close() from the application (1000): state `closed`, no retry;
//   - anything else: exponential backoff with full jitter,
//     delay = random(0, min(maxMs, initialMs * 2^attempt)).
//
// Browsers cannot see WebSocket pings, so the client sends {"type":"ping"} every `heartbeat`
// seconds (the welcome says how many) and treats a link that carried no frame at all for
// 2 x heartbeat + heartbeatGraceMs as dead: it drops the socket and reconnects.
//
// Time and randomness come from options.clock and options.random so that tests drive them.
// Every client frame carries a `ref`; the hub answers each frame exactly once and in order
// (or with a ref-less `rate_limited` error), which is how acks find their request.

const DEFAULT_BACKOFF = Object.freeze({ initialMs: 500, maxMs: 10000, resetAfterMs: 5000 });
const DEFAULT_HEARTBEAT_GRACE_MS = 2000;
const DEFAULT_CONNECT_TIMEOUT_MS = 10000;
const DEFAULT_REQUEST_TIMEOUT_MS = 10000;
const RATE_LIMIT_RETRY_MS = 1000; /* a subscribe the hub dropped for the frame rate goes again */
const URL_CHANNELS_MAX_CHARS = 1500; /* the rest of the channel list goes as frames */
const CHANNEL_NAME_MAX = 128;
const CHANNEL_CHARS = /^\$?[A-Za-z0-9_.:-]+$/;

/** The connection states, in the order a connection usually meets them. */
export const STATES = Object.freeze(['connecting', 'open', 'reconnecting', 'closed', 'refused']);

/** An error frame from the hub, or a request that could not complete. */
export class HeraldError extends Error {
  constructor(code, message, details = {}) {
    super(message);
    this.name = 'HeraldError';
    this.code = code;
    Object.assign(this, details);
  }
}

/** True for a name the hub accepts: 1 to 128 of A-Z a-z 0-9 _ - . : ; `$` first for the
 *  hub's own channels (`$stats`). */
export function isValidChannel(name) {
  return typeof name === 'string' && name.length >= 1 && name.length <= CHANNEL_NAME_MAX &&
    name !== '$' && CHANNEL_CHARS.test(name);
}

/** The wait before reconnection attempt number `attempt` (0 first): full jitter,
 *  random(0, min(maxMs, initialMs * 2^attempt)), in whole milliseconds. */
export function backoffDelay(attempt, backoff = DEFAULT_BACKOFF, random = Math.random) {
  const cap = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * cap);
}

/** True when a close code means "do not retry blindly". */
export function isRefusal(code) {
  return code === 1008 || (code >= 4000 && code <= 4999);
}

const systemClock = Object.freeze({
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (id) => globalThis.clearTimeout(id),
});

const noop = () => {};

function report(err) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(err);
  else globalThis.setTimeout(() => { throw err; }, 0);
}

/* A promise whose rejection nobody has to handle: callers who await it still see it. */
function quietPromise(executor) {
  const p = new Promise(executor);
  p.catch(noop);
  return p;
}

export class Herald {
  #url;
  #opts;
  #backoff;
  #clock;
  #random;
  #WebSocket;
  #listeners = new Map(); /* type -> Set of functions */
  #channels = new Map();  /* name -> {handlers: Set, isActive, subRef, waiters: [] } */
  #state = 'closed';
  #ws = null;
  #gen = 0;               /* bumped for each socket; events of an older one are ignored */
  #wantOpen = false;
  #isWelcomed = false;
  #welcome = null;
  #attempt = 0;
  #isImmediateSpent = false;
  #openedAt = 0;
  #lastFrameAt = 0;
  #heartbeatMs = 0;
  #urlJoins = [];          /* channels named in this socket's URL, awaiting their reply */
  #pending = new Map();    /* ref -> request, in send order */
  #nextRef = 1;
  #timers = { retry: null, connect: null, ping: null, dead: null };
  #retryTimers = new Set(); /* subscribes waiting to be sent again after rate_limited */
  #openWaiters = [];

  /**
   * @param {string|URL} url  ws:// or wss:// URL of the hub's /ws (http(s) is turned into
   *   ws(s); a path alone is resolved against the page's location in a browser).
   * @param {object} [options] see herald.d.ts
   */
  constructor(url, options = {}) {
    this.#opts = { ...options };
    this.#url = Herald.#normalizeUrl(url);
    this.#backoff = { ...DEFAULT_BACKOFF, ...(options.backoff || {}) };
    if (!(this.#backoff.initialMs > 0) || !(this.#backoff.maxMs >= this.#backoff.initialMs))
      throw new RangeError('backoff: need 0 < initialMs <= maxMs');
    this.#clock = { ...systemClock, ...(options.clock || {}) };
    this.#random = options.random || Math.random;
    this.#WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this.#WebSocket !== 'function')
      throw new TypeError('no WebSocket: pass one in options.WebSocket (e.g. the ws package)');
    for (const ch of options.channels || []) this.#entry(ch);
  }

  static #normalizeUrl(url) {
    const base = globalThis.location && globalThis.location.href;
    const u = base ? new URL(String(url), base) : new URL(String(url));
    if (u.protocol === 'http:') u.protocol = 'ws:';
    else if (u.protocol === 'https:') u.protocol = 'wss:';
    if (u.protocol !== 'ws:' && u.protocol !== 'wss:')
      throw new TypeError(`not a WebSocket URL: ${url}`);
    return u;
  }

  /** The current state: connecting | open | reconnecting | closed | refused. */
  get state() { return this.#state; }

  /** The hub's welcome frame of the current connection, or null when not open. */
  get welcome() { return this.#isWelcomed ? this.#welcome : null; }

  /** The channels this client holds (or will hold once connected), in subscription order. */
  get channels() { return [...this.#channels.keys()]; }

  /** True when the hub has acknowledged `channel` on the current connection. */
  isActive(channel) {
    const e = this.#channels.get(channel);
    return !!(e && e.isActive);
  }

  /**
   * Listens to `type`: 'state' (state, info), 'open' (welcome), 'close' ({code, reason}),
   * 'event' (event), 'subscribed' (channel), 'unsubscribed' (channel), 'error' (HeraldError).
   * Returns a function that removes the listener.
   */
  on(type, fn) {
    if (typeof fn !== 'function') throw new TypeError('listener must be a function');
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    const rec = { fn };
    set.add(rec);
    return () => set.delete(rec);
  }

  #emit(type, ...args) {
    const set = this.#listeners.get(type);
    if (!set) return;
    for (const rec of [...set]) {
      try { rec.fn(...args); } catch (err) { report(err); }
    }
  }

  #setState(state, info = {}) {
    if (state === this.#state && state !== 'reconnecting') return;
    this.#state = state;
    this.#emit('state', state, info);
  }

  /** Opens the connection (again, after close() or a refusal). Does nothing while one is
   *  open or being made. Returns this. */
  connect() {
    if (this.#wantOpen) return this;
    this.#wantOpen = true;
    this.#attempt = 0;
    this.#isImmediateSpent = false;
    this.#setState('connecting');
    this.#open();
    return this;
  }

  /** Resolves with the welcome once the connection is open; rejects if it ends refused or
   *  closed first. */
  opened() {
    if (this.#state === 'open') return Promise.resolve(this.#welcome);
    return new Promise((resolve, reject) => this.#openWaiters.push({ resolve, reject }));
  }

  /** Closes with 1000 and stays closed until connect(). Subscriptions are kept. */
  close() {
    const wasActive = this.#wantOpen || this.#ws;
    this.#wantOpen = false;
    this.#dropSocket(1000, 'client closing');
    this.#clearTimer('retry');
    if (wasActive || this.#state !== 'closed') {
      this.#setState('closed', { code: 1000, reason: 'client closing' });
      this.#settleOpenWaiters(new HeraldError('closed', 'the client was closed'));
    }
  }

  /**
   * Adds handler for the events of `channel`. Several handlers may share a channel: the hub
   * sees one subscription. Returns a function that removes this handler (and unsubscribes
   * when it was the channel's last); its `ready` promise resolves when the hub acknowledges
   * the channel and rejects if the hub refuses it (an `error` frame: forbidden, bad_request).
   */
  subscribe(channel, handler) {
    if (!isValidChannel(channel))
      throw new TypeError(`invalid channel name: ${JSON.stringify(channel)}`);
    if (handler !== undefined && typeof handler !== 'function')
      throw new TypeError('handler must be a function');
    const isNew = !this.#channels.has(channel);
    const e = this.#entry(channel);
    const rec = { fn: handler || noop };
    e.handlers.add(rec);
    if (isNew && this.#isWelcomed) this.#sendSubscribe(channel, e);
    const ready = e.isActive ? Promise.resolve() :
      quietPromise((resolve, reject) => e.waiters.push({ resolve, reject }));
    let isDone = false;
    const unsubscribe = () => {
      if (isDone) return;
      isDone = true;
      e.handlers.delete(rec);
      if (e.handlers.size > 0 || this.#channels.get(channel) !== e) return;
      this.#channels.delete(channel);
      this.#settleWaiters(e, new HeraldError('unsubscribed', `unsubscribed from ${channel}`));
      if (this.#isWelcomed)
        this.#request({ type: 'unsubscribe', channel }).catch(noop);
    };
    unsubscribe.channel = channel;
    unsubscribe.ready = ready;
    return unsubscribe;
  }

  /** Sends a ping; resolves with the round trip in milliseconds. */
  ping() {
    const t0 = this.#clock.now();
    return this.#request({ type: 'ping' }).then(() => this.#clock.now() - t0);
  }

  // --- internals ------------------------------------------------------------------------

  #entry(channel) {
    if (!isValidChannel(channel))
      throw new TypeError(`invalid channel name: ${JSON.stringify(channel)}`);
    let e = this.#channels.get(channel);
    if (!e) {
      e = { handlers: new Set(), isActive: false, subRef: null, waiters: [] };
      this.#channels.set(channel, e);
    }
    return e;
  }

  #settleWaiters(e, err) {
    const waiters = e.waiters;
    e.waiters = [];
    for (const w of waiters) err ? w.reject(err) : w.resolve();
  }

  #settleOpenWaiters(err) {
    const waiters = this.#openWaiters;
    this.#openWaiters = [];
    for (const w of waiters) err ? w.reject(err) : w.resolve(this.#welcome);
  }

  #clearTimer(name) {
    if (this.#timers[name] !== null) {
      this.#clock.clearTimeout(this.#timers[name]);
      this.#timers[name] = null;
    }
  }

  #clearSocketTimers() {
    this.#clearTimer('connect');
    this.#clearTimer('ping');
    this.#clearTimer('dead');
    for (const t of this.#retryTimers) this.#clock.clearTimeout(t);
    this.#retryTimers.clear();
  }

  #buildUrl() {
    const u = new URL(this.#url.href);
    const params = u.search.slice(1).split('&')
      .filter((kv) => kv && !kv.startsWith('channels=') && !kv.startsWith('token='));
    this.#urlJoins = [];
    let len = 0;
    for (const name of this.#channels.keys()) {
      if (len + name.length + 1 > URL_CHANNELS_MAX_CHARS) break;
      this.#urlJoins.push(name);
      len += name.length + 1;
    }
    if (this.#urlJoins.length) params.push('channels=' + this.#urlJoins.join(','));
    return { u, params };
  }

  #open() {
    this.#clearTimer('retry');
    const { u, params } = this.#buildUrl();
    const token = this.#opts.token;
    if (typeof token === 'function') {
      const gen = ++this.#gen;
      Promise.resolve().then(token).then(
        (tok) => { if (gen === this.#gen && this.#wantOpen) this.#openSocket(u, params, tok); },
        (err) => {
          if (gen !== this.#gen || !this.#wantOpen) return;
          this.#emit('error', new HeraldError('token', `token provider failed: ${err}`));
          this.#onSocketGone(gen, 1006, 'token provider failed', false);
        });
    } else {
      this.#openSocket(u, params, token);
    }
  }

  #openSocket(u, params, token) {
    if (token) params.push('token=' + encodeURIComponent(token));
    u.search = params.length ? '?' + params.join('&') : '';
    const gen = ++this.#gen;
    this.#isWelcomed = false;
    this.#welcome = null;
    this.#openedAt = 0;
    this.#lastFrameAt = this.#clock.now();
    let ws;
    try {
      ws = new this.#WebSocket(u.href);
    } catch (err) {
      this.#emit('error', new HeraldError('connect', `cannot open ${u.origin}: ${err.message}`));
      this.#onSocketGone(gen, 1006, String(err.message || err), false);
      return;
    }
    this.#ws = ws;
    ws.onmessage = (ev) => { if (gen === this.#gen) this.#onFrame(ev.data); };
    ws.onclose = (ev) => {
      if (gen === this.#gen) this.#onSocketGone(gen, ev.code, ev.reason || '', true);
    };
    ws.onerror = noop; /* a close follows; `ws` needs a listener to not throw */
    const timeout = this.#opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.#timers.connect = this.#clock.setTimeout(() => {
      this.#timers.connect = null;
      if (gen !== this.#gen || this.#isWelcomed) return;
      this.#abandon(`no welcome within ${timeout} ms`);
    }, timeout);
  }

  /* Drops the current socket: no further events from it reach us. */
  #dropSocket(code, reason) {
    const ws = this.#ws;
    this.#ws = null;
    this.#gen++;
    this.#clearSocketTimers();
    this.#failPending(new HeraldError('disconnected', 'the connection closed'));
    this.#markInactive();
    if (!ws) return;
    ws.onmessage = ws.onclose = null;
    try { ws.close(code, reason); } catch { /* not open yet in some runtimes */ }
  }

  /* A link we gave up on (dead, or never welcomed): drop it and retry as after a loss. */
  #abandon(reason) {
    const wasOpen = this.#isWelcomed;
    this.#dropSocket(4000, reason);
    this.#emit('close', { code: 1006, reason });
    this.#retry(1006, reason, wasOpen);
  }

  #onSocketGone(gen, code, reason, fromSocket) {
    if (gen !== this.#gen) return;
    const wasOpen = this.#isWelcomed;
    if (fromSocket) {
      this.#ws = null;
      this.#gen++;
      this.#clearSocketTimers();
      this.#failPending(new HeraldError('disconnected', `the connection closed (${code})`));
      this.#markInactive();
    }
    this.#isWelcomed = false;
    this.#emit('close', { code, reason });
    if (!this.#wantOpen) return;
    if (isRefusal(code)) {
      this.#wantOpen = false;
      this.#setState('refused', { code, reason });
      this.#settleOpenWaiters(new HeraldError('refused', `refused by the hub: ${code} ${reason}`,
        { closeCode: code }));
      return;
    }
    this.#retry(code, reason, wasOpen);
  }

  #retry(code, reason, wasOpen) {
    const now = this.#clock.now();
    if (wasOpen && now - this.#openedAt >= this.#backoff.resetAfterMs) {
      this.#attempt = 0;
      this.#isImmediateSpent = false;
    }
    let delayMs;
    if (code === 1001 && wasOpen && !this.#isImmediateSpent) {
      this.#isImmediateSpent = true;
      delayMs = 0;
    } else {
      delayMs = backoffDelay(this.#attempt, this.#backoff, this.#random);
      this.#attempt++;
    }
    this.#setState('reconnecting', { code, reason, delayMs, attempt: this.#attempt });
    this.#clearTimer('retry');
    this.#timers.retry = this.#clock.setTimeout(() => {
      this.#timers.retry = null;
      if (this.#wantOpen) this.#open();
    }, delayMs);
  }

  #markInactive() {
    for (const e of this.#channels.values()) {
      e.isActive = false;
      e.subRef = null;
    }
    this.#urlJoins = [];
  }

  #failPending(err) {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const r of pending) {
      if (r.timer !== null) this.#clock.clearTimeout(r.timer);
      r.reject(err);
    }
  }

  #send(obj) {
    const ws = this.#ws;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(obj));
    return true;
  }

  /* Sends a frame with a fresh ref. Returns {ref, promise}: the promise resolves with the
   * hub's reply and rejects on an error frame, a lost connection or no reply within
   * requestTimeoutMs. ref is null when nothing could be sent. */
  #requestRef(frame) {
    let ref = null;
    const promise = new Promise((resolve, reject) => {
      if (!this.#send({ ...frame, ref: this.#nextRef })) {
        reject(new HeraldError('disconnected', 'not connected'));
        return;
      }
      ref = this.#nextRef++;
      const r = { ref, frame, resolve, reject, timer: null };
      const ms = this.#opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
      r.timer = this.#clock.setTimeout(() => {
        r.timer = null;
        if (this.#pending.delete(ref))
          reject(new HeraldError('timeout', `no reply to ${frame.type} within ${ms} ms`));
      }, ms);
      this.#pending.set(ref, r);
    });
    return { ref, promise };
  }

  #request(frame) {
    return this.#requestRef(frame).promise;
  }

  #sendSubscribe(channel, e) {
    const { ref, promise } = this.#requestRef({ type: 'subscribe', channel });
    e.subRef = ref;
    promise.catch((err) => {
      if (this.#channels.get(channel) !== e || e.subRef !== ref) return;
      e.subRef = null;
      if (err.code === 'rate_limited') {
        /* the hub dropped the frame for the frame rate: send it again a little later */
        const t = this.#clock.setTimeout(() => {
          this.#retryTimers.delete(t);
          if (this.#isWelcomed && this.#channels.get(channel) === e && !e.isActive &&
              e.subRef === null)
            this.#sendSubscribe(channel, e);
        }, RATE_LIMIT_RETRY_MS);
        this.#retryTimers.add(t);
      } else if (err.code === 'forbidden' || err.code === 'bad_request') {
        this.#refuseChannel(channel, e, err);
      }
    });
  }

  #refuseChannel(channel, e, err) {
    this.#channels.delete(channel);
    err.channel = channel;
    this.#settleWaiters(e, err);
  }

  #onFrame(data) {
    this.#lastFrameAt = this.#clock.now();
    let msg;
    try {
      msg = JSON.parse(typeof data === 'string' ? data : String(data));
    } catch {
      return; /* the hub sends JSON only */
    }
    if (!msg || typeof msg !== 'object') return;
    switch (msg.type) {
    case 'event': this.#onEvent(msg); break;
    case 'welcome': this.#onWelcome(msg); break;
    case 'subscribed': this.#onSubscribed(msg); break;
    case 'unsubscribed':
    case 'pong':
      this.#settle(msg.ref, msg, null);
      if (msg.type === 'unsubscribed') this.#emit('unsubscribed', msg.channel);
      break;
    case 'error': this.#onError(msg); break;
    default: break;
    }
  }

  #onEvent(msg) {
    this.#emit('event', msg);
    const e = this.#channels.get(msg.channel);
    if (!e) return;
    for (const rec of [...e.handlers]) {
      try { rec.fn(msg); } catch (err) { report(err); }
    }
  }

  #onWelcome(msg) {
    this.#clearTimer('connect');
    this.#isWelcomed = true;
    this.#welcome = msg;
    this.#openedAt = this.#clock.now();
    const hb = Number(msg.heartbeat);
    this.#heartbeatMs = hb > 0 ? hb * 1000 : 0;
    this.#setState('open', { welcome: msg });
    this.#emit('open', msg);
    this.#settleOpenWaiters(null);
    const inUrl = new Set(this.#urlJoins);
    for (const [channel, e] of this.#channels)
      if (!inUrl.has(channel)) this.#sendSubscribe(channel, e);
    for (const channel of inUrl) /* dropped by the application while we connected */
      if (!this.#channels.has(channel))
        this.#request({ type: 'unsubscribe', channel }).catch(noop);
    if (this.#heartbeatMs) {
      this.#schedulePing();
      this.#scheduleDeadCheck();
    }
  }

  #schedulePing() {
    this.#timers.ping = this.#clock.setTimeout(() => {
      this.#timers.ping = null;
      if (!this.#isWelcomed) return;
      this.ping().catch(noop);
      this.#schedulePing();
    }, this.#heartbeatMs);
  }

  #deadAfterMs() {
    return 2 * this.#heartbeatMs + (this.#opts.heartbeatGraceMs ?? DEFAULT_HEARTBEAT_GRACE_MS);
  }

  /* One timer for the whole link: when it fires early (frames came meanwhile) it is set
   * again for the remainder, so a busy link costs no timer work per frame. */
  #scheduleDeadCheck() {
    const wait = Math.max(0, this.#lastFrameAt + this.#deadAfterMs() - this.#clock.now());
    const gen = this.#gen;
    this.#timers.dead = this.#clock.setTimeout(() => {
      this.#timers.dead = null;
      if (gen !== this.#gen || !this.#isWelcomed) return;
      if (this.#clock.now() - this.#lastFrameAt >= this.#deadAfterMs())
        this.#abandon(`no frame for ${this.#deadAfterMs()} ms`);
      else
        this.#scheduleDeadCheck();
    }, wait);
  }

  #onSubscribed(msg) {
    const channel = msg.channel;
    const hasRef = msg.ref !== undefined && msg.ref !== null;
    if (hasRef) {
      this.#settle(msg.ref, msg, null);
    } else {
      const i = this.#urlJoins.indexOf(channel);
      if (i >= 0) this.#urlJoins.splice(i, 1);
    }
    const e = this.#channels.get(channel);
    if (!e) return;
    if (hasRef && e.subRef !== null && msg.ref !== e.subRef) return; /* an older request's */
    e.isActive = true;
    e.subRef = null;
    this.#settleWaiters(e, null);
    this.#emit('subscribed', channel);
  }

  #onError(msg) {
    const err = new HeraldError(msg.code || 'error', msg.message || 'error', { ref: msg.ref });
    const hasRef = msg.ref !== undefined && msg.ref !== null;
    if (hasRef) {
      const r = this.#pending.get(msg.ref);
      if (r && r.frame.channel) err.channel = r.frame.channel;
      this.#settle(msg.ref, null, err);
    } else if (this.#urlJoins.length) {
      /* a channel of the URL the hub would not join: replies come in the URL's order */
      const channel = this.#urlJoins.shift();
      const e = this.#channels.get(channel);
      err.channel = channel;
      if (e) this.#refuseChannel(channel, e, err);
    } else if (msg.code === 'rate_limited' && this.#pending.size) {
      /* the hub dropped our oldest unanswered frame without reading its ref */
      const r = this.#pending.values().next().value;
      if (r.frame.channel) err.channel = r.frame.channel;
      this.#settle(r.ref, null, err);
    }
    this.#emit('error', err);
  }

  #settle(ref, value, err) {
    if (ref === undefined || ref === null) return;
    const r = this.#pending.get(ref);
    if (!r) return;
    this.#pending.delete(ref);
    if (r.timer !== null) this.#clock.clearTimeout(r.timer);
    err ? r.reject(err) : r.resolve(value);
  }
}

export default Herald;
