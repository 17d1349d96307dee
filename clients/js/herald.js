// herald.js -- the Herald client for browsers and Node.js: one dependency-free ES module.
//
// One Herald object holds one WebSocket to a hub's /ws endpoint and the set of channels the
// application wants. It keeps that set across reconnections, and each channel's place in the
// hub's numbering, so that a reconnection loses nothing. Per SPEC.md:
//
//   - close 1001 (the hub is shutting down or draining): one immediate retry, then backoff;
//   - close 1008 or 4000-4999 (policy: bad token, origin, rate limit): state `refused`, no retry
//     until the application calls connect() again;
//   - close() from the application (1000): state `closed`, no retry;
//   - anything else (1013 slow consumer, a lost or dead link): exponential backoff with full
//     jitter, delay = random(0, min(maxMs, initialMs * 2^attempt)).
//
// Sequence and resume: every event carries `seq`, its place in its channel (1, 2, 3, ... in one
// `epoch`). Per channel the client keeps the epoch (from `subscribed`) and the highest seq it
// has delivered or that the hub said will not come (`gap`). A channel with such a position is
// subscribed again, on every new connection, with `since`: the hub replays what was missed
// (`recovered:true`) or says it cannot (`recovered:false`: the application should refetch).
// Channels without a position yet go in the connection's URL (`?channels=a,b[&last=N]`), so the
// hub joins them before it reads any frame. An event whose seq was already delivered on this
// subscription is dropped: each seq reaches the handlers once.
//
// Frames to the hub go through a token bucket shaped like the hub's own (--client-rate,
// --client-burst): resubscribing a hundred channels after a reconnect must not look like a
// flood, which the hub closes with 1008. A `rate_limited` answer pauses sending long enough
// for the hub to forgive (over a second) and halves the bucket.
//
// Browsers cannot see WebSocket pings, so the client sends {"type":"ping"} every `heartbeat`
// seconds (the welcome says how many) and treats a link that carried no frame at all for
// 2 x heartbeat + heartbeatGraceMs as dead: it drops the socket and reconnects.
//
// Transport: where a WebSocket cannot be opened (a proxy that refuses upgrades), the client
// falls back to server-sent events (the hub's /sse, read with EventSource) and says so
// (`transport`, and the 'open' state's info). A stream's channels are fixed by its URL, so a
// change of channels opens a new stream, each channel's place carried in the URL (`since=`):
// nothing is lost across it. options.transport: 'auto' (default: WebSocket, SSE when a
// WebSocket attempt fails before the hub's welcome; the next reconnection tries WebSocket
// first again; while on SSE a WebSocket is tried in the background, upgradeProbeMs and then
// doubling, and the client moves to it once it gets a welcome), 'websocket' or 'sse'. On SSE:
// no ping(), each channel's maxRate in the URL (max_rate=), and at most frameRate.burst
// channels (each join costs a frame token, and a stream cannot send the rest later); the
// hub's heartbeat comes as an event.
//
// Time and randomness come from options.clock and options.random so that tests drive them.
// Every client frame carries a `ref`; the hub answers each frame exactly once and in order
// (or with a ref-less `rate_limited` error), which is how acks find their request.

const DEFAULT_BACKOFF = Object.freeze({ initialMs: 500, maxMs: 10000, resetAfterMs: 5000 });
const DEFAULT_FRAME_RATE = Object.freeze({ perSec: 10, burst: 20 }); /* the hub's defaults */
const DEFAULT_HEARTBEAT_GRACE_MS = 2000;
const DEFAULT_CONNECT_TIMEOUT_MS = 10000;
const DEFAULT_REQUEST_TIMEOUT_MS = 10000;
/* After a rate_limited answer nothing is sent for this long: the hub ends a run of refusals
 * after a second without one, and closes with 1008 a run that lasts 3 s. */
const RATE_LIMIT_PAUSE_MS = 1500;
const URL_CHANNELS_MAX_CHARS = 1500; /* the rest of the channel list goes as frames */
const CHANNEL_NAME_MAX = 128;
const CHANNEL_CHARS = /^\$?[A-Za-z0-9_.:-]+$/;
const MAX_RATE_MAX = 1000;
const LAST_MAX = 1000;
const EPOCH_CHARS = /^[A-Za-z0-9]{1,24}$/; /* what the hub gives, and takes back */
const TRANSPORTS = Object.freeze(['auto', 'websocket', 'sse']);
const DEFAULT_UPGRADE_PROBE_MS = 30000; /* on SSE (auto): the first background WebSocket try */
const UPGRADE_PROBE_MAX_MS = 300000;
/* An SSE stream that failed before its welcome is asked again with fetch() for its status:
 * EventSource hides it, and these mean that retrying cannot help (bad token, Origin, query). */
const SSE_REFUSALS = Object.freeze({ 400: 'bad request', 401: 'unauthorized', 403: 'forbidden' });

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

/** True for a position a subscribe may resume from: {epoch, seq} as the hub gives them
 *  (an epoch of 1 to 24 letters and digits, a whole seq >= 0). */
export function isPosition(p) {
  return !!p && typeof p === 'object' && typeof p.epoch === 'string' && EPOCH_CHARS.test(p.epoch) &&
    Number.isSafeInteger(p.seq) && p.seq >= 0;
}

/* Checks subscribe()'s options; returns the ones the channel keeps. */
function subscribeOptions(options) {
  if (options === undefined || options === null) return { last: 0, maxRate: 0, since: null };
  if (typeof options !== 'object') throw new TypeError('subscribe options must be an object');
  const { last, maxRate, since } = options;
  if (last !== undefined && !(Number.isSafeInteger(last) && last >= 0 && last <= LAST_MAX))
    throw new RangeError(`last: need a whole number from 0 to ${LAST_MAX}, got ${last}`);
  if (maxRate !== undefined &&
      !(Number.isSafeInteger(maxRate) && maxRate >= 1 && maxRate <= MAX_RATE_MAX))
    throw new RangeError(`maxRate: need a whole number from 1 to ${MAX_RATE_MAX}, got ${maxRate}`);
  if (since !== undefined && since !== null && !isPosition(since))
    throw new TypeError('since: need {epoch, seq} as the hub gave them (see position())');
  return {
    last: last || 0,
    maxRate: maxRate || 0,
    since: since ? { epoch: since.epoch, seq: since.seq } : null,
  };
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
  #EventSource;
  #transportOpt;           /* 'auto' | 'websocket' | 'sse' */
  #sseUrl = null;          /* the hub's /sse, as http(s) */
  #linkKind = null;        /* the current link's transport: 'websocket' | 'sse' */
  #isWsFailing = false;    /* auto: a WebSocket failed before its welcome; SSE goes next */
  #isSseWaiting = false;   /* an SSE link waits for a channel (a stream needs one) */
  #isReopenQueued = false; /* the stream's channels changed: a new one after this turn */
  #closeInfo = null;       /* an SSE stream's last words: {code, reason} */
  #listeners = new Map(); /* type -> Set of functions */
  #channels = new Map();  /* name -> channel entry: see #entry() */
  #state = 'closed';
  #link = null;           /* the WebSocket or EventSource of the current link */
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
  #urlLast = 0;            /* the URL's last=N */
  #pending = new Map();    /* ref -> request sent, in send order */
  #outbox = [];            /* requests waiting for a token of the frame bucket */
  #frameRate;              /* {perSec, burst}: halved on each run of rate_limited answers */
  #tokens = 0;
  #tokensAt = 0;
  #pausedUntil = 0;        /* after a rate_limited answer, nothing is sent before this */
  #nextRef = 1;
  #timers = { retry: null, connect: null, ping: null, dead: null, pump: null, probe: null };
  #probe = null;           /* on SSE (auto): a WebSocket tried in the background */
  #probeAttempt = 0;
  #openTransport = null;   /* the transport the last 'open' state said */
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
    this.#frameRate = { ...DEFAULT_FRAME_RATE, ...(options.frameRate || {}) };
    if (!(this.#frameRate.perSec > 0) || !(this.#frameRate.burst >= 1))
      throw new RangeError('frameRate: need perSec > 0 and burst >= 1');
    this.#clock = { ...systemClock, ...(options.clock || {}) };
    this.#random = options.random || Math.random;
    this.#transportOpt = options.transport || 'auto';
    if (!TRANSPORTS.includes(this.#transportOpt))
      throw new RangeError(`transport: one of ${TRANSPORTS.join(', ')}`);
    this.#WebSocket = options.WebSocket || globalThis.WebSocket;
    this.#EventSource = options.EventSource || globalThis.EventSource;
    if (typeof this.#WebSocket !== 'function') this.#WebSocket = null;
    if (typeof this.#EventSource !== 'function') this.#EventSource = null;
    this.#sseUrl = options.sseUrl ? Herald.#normalizeHttpUrl(options.sseUrl) : Herald.#sseOf(this.#url);
    if (!this.#WebSocket && (this.#transportOpt === 'websocket' || !this.#EventSource || !this.#sseUrl))
      throw new TypeError('no WebSocket: pass one in options.WebSocket (e.g. the ws package)');
    if (this.#transportOpt === 'sse' && (!this.#EventSource || !this.#sseUrl))
      throw new TypeError(!this.#EventSource ? 'no EventSource: pass one in options.EventSource'
        : 'no SSE URL: the WebSocket URL does not end in /ws; pass options.sseUrl');
    for (const ch of options.channels || []) this.#entry(ch);
  }

  static #normalizeHttpUrl(url) {
    const base = globalThis.location && globalThis.location.href;
    const u = base ? new URL(String(url), base) : new URL(String(url));
    if (u.protocol === 'ws:') u.protocol = 'http:';
    else if (u.protocol === 'wss:') u.protocol = 'https:';
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      throw new TypeError(`not an HTTP URL: ${url}`);
    return u;
  }

  /* The hub's /sse beside its /ws (.../ws -> .../sse), or null for another path. */
  static #sseOf(wsUrl) {
    if (!/\/ws$/.test(wsUrl.pathname)) return null;
    const u = new URL(wsUrl.href);
    u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
    u.pathname = u.pathname.replace(/\/ws$/, '/sse');
    return u;
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

  /** The transport of the open connection: 'websocket' or 'sse' (null when not open). */
  get transport() { return this.#isWelcomed ? this.#linkKind : null; }

  /** The hub's welcome frame of the current connection, or null when not open. */
  get welcome() { return this.#isWelcomed ? this.#welcome : null; }

  /** The channels this client holds (or will hold once connected), in subscription order. */
  get channels() { return [...this.#channels.keys()]; }

  /** True when the hub has acknowledged `channel` on the current connection. */
  isActive(channel) {
    const e = this.#channels.get(channel);
    return !!(e && e.isActive);
  }

  /** Where `channel` is in the hub's numbering: {epoch, seq}, seq being the highest seq
   *  delivered to the handlers (or reported as a gap), or null before the hub's first
   *  `subscribed`. Store it to resume after a page reload: subscribe(channel, fn, {since}). */
  position(channel) {
    const e = this.#channels.get(channel);
    return e && e.epoch !== null ? { epoch: e.epoch, seq: e.seq } : null;
  }

  /**
   * Listens to `type`: 'state' (state, info), 'open' (welcome), 'close' ({code, reason}),
   * 'event' (event), 'subscribed' (channel, {epoch, seq, recovered}), 'unsubscribed' (channel),
   * 'recovered' ({channel, recovered, epoch, seq, since, reason}), 'gap' ({channel, from, to}),
   * 'error' (HeraldError). Returns a function that removes the listener.
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
    const wasActive = this.#wantOpen || this.#link;
    this.#wantOpen = false;
    this.#isSseWaiting = false;
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
   *
   * options (they apply when this call creates the channel's subscription; later handlers of
   * the channel share it as it is):
   *   last: N     the N newest events the hub keeps come first (the current state at once);
   *               also sent with every resume, for the hub to use when it cannot resume
   *   maxRate: R  at most R events a second per event name (1 to 1000): the hub conflates,
   *               the newest wins, the seq shows what was skipped
   *   since: {epoch, seq}  resume from a stored position (see position())
   */
  subscribe(channel, handler, options) {
    if (!isValidChannel(channel))
      throw new TypeError(`invalid channel name: ${JSON.stringify(channel)}`);
    if (handler !== undefined && handler !== null && typeof handler !== 'function')
      throw new TypeError('handler must be a function');
    const opts = subscribeOptions(options);
    const isNew = !this.#channels.has(channel);
    const e = this.#entry(channel);
    if (isNew) {
      e.last = opts.last;
      e.maxRate = opts.maxRate;
      if (opts.since) {
        e.epoch = opts.since.epoch;
        e.seq = e.floor = opts.since.seq;
      }
    }
    const rec = { fn: handler || noop };
    e.handlers.add(rec);
    if (isNew) this.#onChannelAdded(channel, e);
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
      if (!this.#isWelcomed) return;
      if (this.#linkKind === 'sse') this.#queueReopen();
      else this.#sendUnsubscribe(channel);
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

  /* A channel's entry. Its position (epoch, seq) outlives connections; floor is per
   * subscription: an event with seq <= floor was delivered already (or is older than what
   * the subscription asked for) and is dropped. */
  #entry(channel) {
    if (!isValidChannel(channel))
      throw new TypeError(`invalid channel name: ${JSON.stringify(channel)}`);
    let e = this.#channels.get(channel);
    if (!e) {
      e = {
        handlers: new Set(),
        isActive: false,
        subRef: null,      /* the ref of the subscribe in flight */
        asked: null,       /* the since that subscribe carried */
        waiters: [],
        epoch: null,       /* null: no position yet */
        seq: 0,            /* the position: every event up to it was delivered or reported */
        floor: 0,
        last: 0,
        maxRate: 0,
      };
      this.#channels.set(channel, e);
    }
    return e;
  }

  /* A channel the application added: a subscribe frame on a WebSocket, a new stream on SSE
   * (or the first one, when an SSE link waited for a channel). */
  #onChannelAdded(channel, e) {
    if (this.#isSseWaiting && this.#wantOpen) {
      this.#isSseWaiting = false;
      this.#open();
      return;
    }
    if (!this.#isWelcomed) return;
    if (this.#linkKind === 'sse') this.#queueReopen();
    else this.#sendSubscribe(channel, e);
  }

  /* An SSE stream's channels are its URL's: after this turn's changes, a new stream takes
   * over, each channel resuming from its place (since=). A stream needs a channel: with none
   * left the old one stays (its events are dropped here). */
  #queueReopen() {
    if (this.#isReopenQueued) return;
    this.#isReopenQueued = true;
    Promise.resolve().then(() => {
      this.#isReopenQueued = false;
      if (!this.#isWelcomed || this.#linkKind !== 'sse' || !this.#wantOpen || !this.#channels.size)
        return;
      this.#dropSocket(1000, 'channels changed');
      this.#open();
    });
  }

  /* auto: WebSocket first; SSE after a WebSocket failed before its welcome. */
  #pickTransport() {
    if (this.#transportOpt !== 'auto') return this.#transportOpt;
    if (!this.#WebSocket) return 'sse';
    if (!this.#EventSource || !this.#sseUrl) return 'websocket';
    return this.#isWsFailing ? 'sse' : 'websocket';
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
    this.#clearTimer('pump');
    this.#clearTimer('probe');
    this.#endProbe();
  }

  #endProbe() {
    const ws = this.#probe;
    this.#probe = null;
    if (!ws) return;
    ws.onmessage = ws.onclose = null;
    try { ws.close(1000, 'probe'); } catch { /* not open yet in some runtimes */ }
  }

  /* On an SSE link that auto chose (a WebSocket had failed), a WebSocket is tried again in
   * the background, after upgradeProbeMs and then twice as long each time (at most 5 min):
   * the failure may have been the hub's restart, not a proxy. When one reaches the hub's
   * welcome, the client moves to a WebSocket, each channel resuming from its place. */
  #scheduleProbe() {
    const base = this.#opts.upgradeProbeMs ?? DEFAULT_UPGRADE_PROBE_MS;
    if (!(base > 0) || this.#transportOpt !== 'auto' || !this.#WebSocket) return;
    const wait = Math.min(UPGRADE_PROBE_MAX_MS, base * 2 ** this.#probeAttempt);
    const gen = this.#gen;
    this.#timers.probe = this.#clock.setTimeout(() => {
      this.#timers.probe = null;
      if (gen !== this.#gen || !this.#isWelcomed || this.#linkKind !== 'sse') return;
      const token = this.#opts.token;
      Promise.resolve().then(typeof token === 'function' ? token : () => token).then(
        (tok) => { if (gen === this.#gen) this.#runProbe(gen, tok); },
        () => { if (gen === this.#gen) this.#probeFailed(); });
    }, wait * (0.75 + this.#random() / 2));
  }

  #runProbe(gen, token) {
    const u = new URL(this.#url.href);
    if (token) u.search = (u.search ? u.search + '&' : '?') + 'token=' + encodeURIComponent(token);
    let ws;
    try {
      ws = new this.#WebSocket(u.href);
    } catch {
      this.#probeFailed();
      return;
    }
    this.#probe = ws;
    ws.onerror = noop;
    ws.onclose = () => { if (this.#probe === ws) { this.#probe = null; this.#probeFailed(); } };
    ws.onmessage = (ev) => {
      let msg = null;
      try { msg = JSON.parse(typeof ev.data === 'string' ? ev.data : String(ev.data)); } catch { /* not JSON */ }
      if (!msg || msg.type !== 'welcome' || this.#probe !== ws) return;
      this.#endProbe();
      if (gen !== this.#gen || this.#linkKind !== 'sse' || !this.#wantOpen) return;
      this.#probeAttempt = 0;
      this.#isWsFailing = false; /* the next link is a WebSocket */
      this.#dropSocket(1000, 'moving to a WebSocket');
      this.#open();
    };
  }

  #probeFailed() {
    this.#probeAttempt++;
    if (this.#isWelcomed && this.#linkKind === 'sse') this.#scheduleProbe();
  }

  /* The URL carries the channels that need no frame: no position to resume from, no
   * max_rate, and the same `last` (the URL has one for all: the one most of them want).
   * The others go as frames. */
  #buildUrl() {
    const u = new URL(this.#url.href);
    const params = u.search.slice(1).split('&')
      .filter((kv) => kv && !kv.startsWith('channels=') && !kv.startsWith('token=') &&
        !kv.startsWith('last='));
    const byLast = new Map();
    for (const e of this.#channels.values())
      if (e.epoch === null && !e.maxRate) byLast.set(e.last, (byLast.get(e.last) || 0) + 1);
    let best = 0;
    for (const [last, n] of byLast) if (n > (byLast.get(best) || 0)) best = last;
    this.#urlJoins = [];
    this.#urlLast = best;
    let len = 0;
    for (const [name, e] of this.#channels) {
      if (e.epoch !== null || e.maxRate || e.last !== best) continue;
      if (len + name.length + 1 > URL_CHANNELS_MAX_CHARS) break;
      this.#urlJoins.push(name);
      len += name.length + 1;
    }
    if (this.#urlJoins.length) {
      params.push('channels=' + this.#urlJoins.join(','));
      if (this.#urlLast) params.push('last=' + this.#urlLast);
    }
    return { u, params };
  }

  /* The URL of an SSE stream: every channel (up to frameRate.burst, each join costing the
   * hub a frame token), each one's place (since=, empty without one) and maxRate (max_rate=,
   * likewise), the largest `last` (each channel drops what it did not ask for), and names=0:
   * every frame an unnamed event, so that onmessage gets them all, and heartbeats as events. */
  #buildStreamUrl() {
    const u = new URL(this.#sseUrl.href);
    const params = u.search.slice(1).split('&')
      .filter((kv) => kv && !/^(channels|token|last|since|names)=/.test(kv));
    const names = [], since = [], rates = [];
    const max = Math.max(1, Math.floor(this.#frameRate.burst));
    let last = 0, len = 0;
    for (const [name, e] of this.#channels) {
      const at = e.epoch !== null ? `${e.epoch}:${e.seq}` : '';
      if (names.length >= max || len + name.length + at.length + 2 > URL_CHANNELS_MAX_CHARS) break;
      names.push(name);
      since.push(at);
      rates.push(e.maxRate ? String(e.maxRate) : '');
      e.asked = e.epoch !== null ? { epoch: e.epoch, seq: e.seq } : null;
      if (e.last > last) last = e.last;
      len += name.length + at.length + 2;
    }
    this.#urlJoins = names.slice();
    this.#urlLast = last;
    params.push('channels=' + names.join(','));
    if (since.some((x) => x)) params.push('since=' + since.join(','));
    if (last) params.push('last=' + last);
    if (rates.some((x) => x)) params.push('max_rate=' + rates.join(','));
    params.push('names=0');
    return { u, params };
  }

  #open() {
    this.#clearTimer('retry');
    const kind = this.#pickTransport();
    if (kind === 'sse' && !this.#channels.size) {
      this.#isSseWaiting = true; /* subscribe() opens it */
      return;
    }
    this.#isSseWaiting = false;
    const { u, params } = kind === 'sse' ? this.#buildStreamUrl() : this.#buildUrl();
    const go = (tok) => this.#openLink(kind, u, params, tok);
    const token = this.#opts.token;
    if (typeof token === 'function') {
      const gen = ++this.#gen;
      Promise.resolve().then(token).then(
        (tok) => { if (gen === this.#gen && this.#wantOpen) go(tok); },
        (err) => {
          if (gen !== this.#gen || !this.#wantOpen) return;
          this.#emit('error', new HeraldError('token', `token provider failed: ${err}`));
          this.#onSocketGone(gen, 1006, 'token provider failed', false);
        });
    } else {
      go(token);
    }
  }

  /* A new link of `kind` ('websocket' or 'sse') to u; the hub's welcome must come within
   * connectTimeoutMs. */
  #openLink(kind, u, params, token) {
    if (token) params.push('token=' + encodeURIComponent(token));
    u.search = params.length ? '?' + params.join('&') : '';
    const gen = ++this.#gen;
    this.#isWelcomed = false;
    this.#welcome = null;
    this.#openedAt = 0;
    this.#closeInfo = null;
    this.#lastFrameAt = this.#clock.now();
    this.#linkKind = kind;
    let link;
    try {
      link = kind === 'sse' ? new this.#EventSource(u.href) : new this.#WebSocket(u.href);
    } catch (err) {
      this.#emit('error', new HeraldError('connect', `cannot open ${u.origin}: ${err.message}`));
      this.#onSocketGone(gen, 1006, String(err.message || err), false);
      return;
    }
    this.#link = link;
    link.onmessage = (ev) => { if (gen === this.#gen) this.#onFrame(ev.data); };
    if (kind === 'sse') {
      link.onerror = () => { if (gen === this.#gen) this.#onStreamError(gen, link, u.href); };
    } else {
      link.onclose = (ev) => {
        if (gen === this.#gen) this.#onSocketGone(gen, ev.code, ev.reason || '', true);
      };
      link.onerror = noop; /* a close follows; `ws` needs a listener to not throw */
    }
    const timeout = this.#opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.#timers.connect = this.#clock.setTimeout(() => {
      this.#timers.connect = null;
      if (gen !== this.#gen || this.#isWelcomed) return;
      this.#abandon(`no welcome within ${timeout} ms`);
    }, timeout);
  }

  /* An SSE stream failed or ended. An EventSource would reconnect by itself, to the URL it
   * first opened: herald.js does it instead, with each channel's place in the new URL. */
  #onStreamError(gen, es, href) {
    es.onmessage = es.onerror = null;
    es.close();
    const last = this.#closeInfo;
    if (last) {
      this.#onSocketGone(gen, last.code, last.reason, true);
    } else if (this.#isWelcomed) {
      this.#onSocketGone(gen, 1006, 'the stream ended', true);
    } else {
      Herald.#probeStatus(href).then((status) => {
        if (gen !== this.#gen) return;
        const why = SSE_REFUSALS[status];
        this.#onSocketGone(gen, why ? 1008 : 1006,
          status ? `HTTP ${status}${why ? ' ' + why : ''}` : 'the stream failed', true);
      });
    }
  }

  /* The status an SSE request gets (0 when it cannot be read: no fetch, a network error, a
   * cross-origin refusal without CORS headers). A 200 stream is not read. */
  static async #probeStatus(href) {
    if (typeof fetch !== 'function') return 0;
    const ac = typeof AbortController === 'function' ? new AbortController() : null;
    try {
      const r = await fetch(href, { headers: { accept: 'text/event-stream' }, cache: 'no-store',
        signal: ac ? ac.signal : undefined });
      if (ac) ac.abort();
      return r.status;
    } catch {
      return 0;
    }
  }

  /* Drops the current socket: no further events from it reach us. */
  #dropSocket(code, reason) {
    const ws = this.#link;
    this.#link = null;
    this.#gen++;
    this.#clearSocketTimers();
    this.#failPending(new HeraldError('disconnected', 'the connection closed'));
    this.#markInactive();
    if (!ws) return;
    ws.onmessage = ws.onclose = null;
    if (this.#linkKind === 'sse') ws.onerror = null; /* `ws` needs its no-op listener */
    try { ws.close(code, reason); } catch { /* not open yet in some runtimes */ }
  }

  /* A link we gave up on (dead, or never welcomed): drop it and retry as after a loss. */
  #abandon(reason) {
    const wasOpen = this.#isWelcomed;
    this.#dropSocket(4000, reason);
    this.#emit('close', { code: 1006, reason });
    this.#retry(1006, reason, wasOpen, this.#fallBack(wasOpen));
  }

  #onSocketGone(gen, code, reason, fromSocket) {
    if (gen !== this.#gen) return;
    const wasOpen = this.#isWelcomed;
    if (fromSocket) {
      this.#link = null;
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
    this.#retry(code, reason, wasOpen, this.#fallBack(wasOpen));
  }

  /* auto, after a link ended: a WebSocket that never reached its welcome is followed by SSE
   * at once (true); after an SSE link the next attempt tries WebSocket again. */
  #fallBack(wasOpen) {
    if (this.#transportOpt !== 'auto' || !this.#WebSocket || !this.#EventSource || !this.#sseUrl)
      return false;
    if (this.#linkKind === 'sse') {
      this.#isWsFailing = false;
      return false;
    }
    if (wasOpen || this.#isWsFailing) return false;
    this.#isWsFailing = true;
    return true;
  }

  #retry(code, reason, wasOpen, isImmediate = false) {
    const now = this.#clock.now();
    if (wasOpen && now - this.#openedAt >= this.#backoff.resetAfterMs) {
      this.#attempt = 0;
      this.#isImmediateSpent = false;
    }
    let delayMs;
    if (isImmediate) {
      delayMs = 0;
    } else if (code === 1001 && wasOpen && !this.#isImmediateSpent) {
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
      e.asked = null;
    }
    this.#urlJoins = [];
  }

  #failPending(err) {
    const pending = [...this.#pending.values(), ...this.#outbox];
    this.#pending.clear();
    this.#outbox = [];
    for (const r of pending) {
      if (r.timer !== null) this.#clock.clearTimeout(r.timer);
      r.reject(err);
    }
  }

  #send(obj) {
    const ws = this.#link;
    if (!ws || ws.readyState !== 1 || this.#linkKind !== 'websocket') return false;
    ws.send(JSON.stringify(obj));
    return true;
  }

  /* Queues a frame with a fresh ref. Returns {ref, promise}: the promise resolves with the
   * hub's reply and rejects on an error frame, a lost connection or no reply within
   * requestTimeoutMs of being sent. ref is null when nothing could be queued. */
  #requestRef(frame) {
    let ref = null;
    const promise = new Promise((resolve, reject) => {
      const ws = this.#link;
      if (!ws || ws.readyState !== 1) {
        reject(new HeraldError('disconnected', 'not connected'));
        return;
      }
      if (this.#linkKind !== 'websocket') {
        reject(new HeraldError('transport', `${frame.type} needs a WebSocket: this link is SSE`));
        return;
      }
      ref = this.#nextRef++;
      this.#outbox.push({ ref, frame, resolve, reject, timer: null });
    });
    if (ref !== null) this.#pump();
    return { ref, promise };
  }

  #request(frame) {
    return this.#requestRef(frame).promise;
  }

  /* Sends what the frame bucket allows from the outbox, and comes back for the rest. */
  #pump() {
    this.#clearTimer('pump');
    const now = this.#clock.now();
    const rate = this.#frameRate;
    this.#tokens = Math.min(rate.burst, this.#tokens + (now - this.#tokensAt) * rate.perSec / 1000);
    this.#tokensAt = now;
    while (this.#outbox.length && now >= this.#pausedUntil && this.#tokens >= 1) {
      const r = this.#outbox.shift();
      this.#tokens -= 1;
      this.#transmit(r);
    }
    if (!this.#outbox.length) return;
    const wait = Math.max(this.#pausedUntil - now,
      Math.ceil((1 - this.#tokens) * 1000 / rate.perSec), 1);
    this.#timers.pump = this.#clock.setTimeout(() => {
      this.#timers.pump = null;
      this.#pump();
    }, wait);
  }

  #transmit(r) {
    if (!this.#send({ ...r.frame, ref: r.ref })) {
      r.reject(new HeraldError('disconnected', 'not connected'));
      return;
    }
    const ms = this.#opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    r.timer = this.#clock.setTimeout(() => {
      r.timer = null;
      if (this.#pending.delete(r.ref))
        r.reject(new HeraldError('timeout', `no reply to ${r.frame.type} within ${ms} ms`));
    }, ms);
    this.#pending.set(r.ref, r);
  }

  /* The hub refused a frame for the frame rate: send nothing until it has forgiven us, then
   * at half the rate (once per run of refusals). */
  #throttle() {
    const now = this.#clock.now();
    if (now >= this.#pausedUntil) {
      this.#frameRate = {
        perSec: Math.max(1, this.#frameRate.perSec / 2),
        burst: Math.max(1, Math.floor(this.#frameRate.burst / 2)),
      };
    }
    this.#pausedUntil = now + RATE_LIMIT_PAUSE_MS;
    this.#tokens = 0;
    this.#tokensAt = now;
    if (this.#outbox.length) this.#pump();
  }

  #sendSubscribe(channel, e) {
    const frame = { type: 'subscribe', channel };
    const since = e.epoch !== null ? { epoch: e.epoch, seq: e.seq } : null;
    if (since) frame.since = since;
    if (e.last) frame.last = e.last;
    if (e.maxRate) frame.max_rate = e.maxRate;
    const { ref, promise } = this.#requestRef(frame);
    e.subRef = ref;
    e.asked = since;
    promise.catch((err) => {
      if (this.#channels.get(channel) !== e || e.subRef !== ref) return;
      e.subRef = null;
      if (err.code === 'rate_limited') {
        /* the hub dropped the frame for the frame rate: the outbox waits, then it goes again */
        if (this.#isWelcomed && !e.isActive) this.#sendSubscribe(channel, e);
      } else if (err.code === 'forbidden' || err.code === 'bad_request') {
        this.#refuseChannel(channel, e, err);
      }
    });
  }

  #sendUnsubscribe(channel) {
    this.#request({ type: 'unsubscribe', channel }).catch((err) => {
      if (err.code === 'rate_limited' && this.#isWelcomed && !this.#channels.has(channel))
        this.#sendUnsubscribe(channel);
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
    case 'gap': this.#onGap(msg); break;
    case 'unsubscribed':
    case 'pong':
      this.#settle(msg.ref, msg, null);
      if (msg.type === 'unsubscribed') this.#emit('unsubscribed', msg.channel);
      break;
    case 'error': this.#onError(msg); break;
    case 'close': /* an SSE stream's last words: why it ends, as a close code */
      this.#closeInfo = { code: Number.isInteger(msg.code) ? msg.code : 1006, reason: String(msg.reason || '') };
      break;
    default: break; /* 'heartbeat' (SSE): a frame, which is all the dead-link check needs */
    }
  }

  #onEvent(msg) {
    const e = this.#channels.get(msg.channel);
    if (!e && this.#linkKind === 'sse') return; /* dropped from the stream's next URL */
    if (e && e.epoch !== null && Number.isSafeInteger(msg.seq)) {
      if (msg.seq <= e.floor) return; /* delivered already on this subscription */
      e.floor = msg.seq;
      if (msg.seq > e.seq) e.seq = msg.seq;
    }
    this.#emit('event', msg);
    if (!e) return;
    for (const rec of [...e.handlers]) {
      try { rec.fn(msg); } catch (err) { report(err); }
    }
  }

  /* Events from..to will never come: the position moves past them, so that a resume does
   * not ask for them again. */
  #onGap(msg) {
    const e = this.#channels.get(msg.channel);
    const from = Number(msg.from);
    const to = Number(msg.to);
    if (!e || !Number.isSafeInteger(from) || !Number.isSafeInteger(to) || to < from) return;
    if (e.epoch !== null) {
      if (to > e.seq) e.seq = to;
      if (to > e.floor) e.floor = to;
    }
    this.#emit('gap', { channel: msg.channel, from, to });
  }

  #onWelcome(msg) {
    this.#clearTimer('connect');
    this.#isWelcomed = true;
    this.#welcome = msg;
    this.#openedAt = this.#clock.now();
    this.#tokens = this.#frameRate.burst; /* a new connection starts with a full bucket */
    this.#tokensAt = this.#openedAt;
    this.#pausedUntil = 0;
    const hb = Number(msg.heartbeat);
    this.#heartbeatMs = hb > 0 ? hb * 1000 : 0;
    /* a move between transports is said as 'open' again, with the new transport */
    if (this.#state === 'open' && this.#openTransport !== this.#linkKind)
      this.#emit('state', 'open', { welcome: msg, transport: this.#linkKind });
    else
      this.#setState('open', { welcome: msg, transport: this.#linkKind });
    this.#openTransport = this.#linkKind;
    this.#emit('open', msg);
    this.#settleOpenWaiters(null);
    const inUrl = new Set(this.#urlJoins);
    if (this.#linkKind === 'sse') {
      const left = [...this.#channels.keys()].filter((ch) => !inUrl.has(ch));
      if (left.length)
        this.#emit('error', new HeraldError('transport', `an SSE stream holds ${inUrl.size} ` +
          `channels: ${left.join(', ')} wait for a WebSocket`));
      if ([...inUrl].some((ch) => !this.#channels.has(ch))) this.#queueReopen();
    } else {
      for (const [channel, e] of this.#channels)
        if (!inUrl.has(channel)) this.#sendSubscribe(channel, e);
      for (const channel of inUrl) /* dropped by the application while we connected */
        if (!this.#channels.has(channel)) this.#sendUnsubscribe(channel);
    }
    if (this.#linkKind === 'sse' && this.#isWsFailing) this.#scheduleProbe();
    if (this.#heartbeatMs) {
      if (this.#linkKind === 'websocket') this.#schedulePing(); /* SSE: the hub beats */
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

  /* The hub's answer to a subscribe (ours, or a channel of the URL), or, ref-less for a
   * channel it holds already, news that the channel's numbering restarted. */
  #onSubscribed(msg) {
    const channel = msg.channel;
    const hasRef = msg.ref !== undefined && msg.ref !== null;
    let isUrlJoin = false;
    if (hasRef) {
      this.#settle(msg.ref, msg, null);
    } else {
      const i = this.#urlJoins.indexOf(channel);
      if (i >= 0) {
        this.#urlJoins.splice(i, 1);
        isUrlJoin = true;
      }
    }
    const e = this.#channels.get(channel);
    if (!e) return;
    if (hasRef && e.subRef !== null && msg.ref !== e.subRef) return; /* an older request's */
    const epoch = typeof msg.epoch === 'string' && msg.epoch ? msg.epoch : null;
    const seq = Number.isSafeInteger(msg.seq) && msg.seq >= 0 ? msg.seq : null;
    if (!hasRef && !isUrlJoin && e.isActive) {
      if (epoch !== null && seq !== null) this.#onReset(channel, e, epoch, seq);
      return;
    }
    const asked = hasRef || isUrlJoin ? e.asked : null; /* a stream's URL carries since= */
    const last = isUrlJoin ? this.#urlLast : e.last;    /* what the hub was asked for */
    const want = e.last;                                /* what this channel wants */
    let recovery = null;
    if (epoch === null || seq === null) {
      e.epoch = null; /* a hub without sequence numbers: nothing to resume from */
    } else if (asked) {
      const isRecovered = msg.recovered === true && asked.epoch === epoch;
      if (isRecovered) {
        e.seq = e.floor = asked.seq; /* the missed events follow, then live ones */
      } else {
        /* only live events follow, and with `last` the newest kept ones first: of those,
         * the ones this client has had (same epoch, seq <= asked.seq) are dropped */
        e.floor = last ? Math.max(asked.epoch === epoch ? asked.seq : 0, seq - want) : seq;
        e.seq = seq;
      }
      e.epoch = epoch;
      recovery = {
        channel, recovered: isRecovered, epoch, seq, since: asked,
        reason: isRecovered ? 'resumed' : asked.epoch !== epoch ? 'epoch' : 'expired',
      };
    } else {
      e.epoch = epoch;
      e.seq = seq;
      /* with `last`, the newest kept events (seq <= S) follow; a stream's URL has the largest
       * `last` of its channels: a channel keeps only the newest it asked for */
      e.floor = last ? Math.max(0, seq - want) : seq;
    }
    e.isActive = true;
    e.subRef = null;
    e.asked = null;
    this.#settleWaiters(e, null);
    const info = { epoch, seq };
    if (asked) info.recovered = recovery ? recovery.recovered : false;
    this.#emit('subscribed', channel, info);
    if (recovery) this.#emit('recovered', recovery);
  }

  /* The channel's numbering restarted (the hub lost its history): what follows starts a new
   * epoch. Reported as a resume that failed. */
  #onReset(channel, e, epoch, seq) {
    const since = e.epoch !== null ? { epoch: e.epoch, seq: e.seq } : null;
    e.epoch = epoch;
    e.seq = e.floor = seq;
    this.#emit('recovered', { channel, recovered: false, epoch, seq, since, reason: 'reset' });
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
    if (msg.code === 'rate_limited') this.#throttle();
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
