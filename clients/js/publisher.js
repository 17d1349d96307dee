// publisher.js -- publishing to Herald from Node.js backends: POST /publish, retried without
// ever delivering an event twice. No dependency besides Node's own modules (Node 20+).
//
// Each publish() or publishBatch() is one request with one Idempotency-Key (a random UUID
// unless the caller gives one), and the key stays the same on every retry: the hub answers a
// repeat within its --idempotency-ttl with the first answer and "duplicate":true, and does
// not deliver it again. That is what makes it safe to retry a request whose answer was lost
// (a timeout, a reset connection): the hub may have taken it.
//
// Retried: 503 (overloaded: fan-out is behind; unavailable: Redis is down), 429
// (rate_limited), 408, 502 and 504 (a proxy in front), network errors and timeouts. Not
// retried: the other answers (400, 401, 413, 415, ...), which would only come again. The wait
// before retry n (0 first) is full jitter, random(0, min(maxMs, initialMs * 2^n)); when the
// answer carries Retry-After, at least that, plus a jitter of up to the same bound (never more
// than Retry-After itself), so that publishers told the same Retry-After do not come back
// together. At most maxAttempts requests, all within deadlineMs of the call: a wait that would
// pass the deadline is not started, and the last error is thrown.
//
// Requests go over keep-alive connections (an http.Agent of our own, or the caller's).
// The waits between attempts and the deadline read options.clock, so tests drive them.

import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';

import { isValidChannel } from './herald.js';

const DEFAULTS = Object.freeze({
  timeoutMs: 10000,
  maxAttempts: 5,
  deadlineMs: 30000,
  backoff: Object.freeze({ initialMs: 200, maxMs: 5000 }),
  maxSockets: 16,
});
const RETRY_STATUSES = new Set([408, 429, 502, 503, 504]);
const MAX_ANSWER_BYTES = 1 << 20;
const KEY_CHARS = /^[\x21-\x7e]{1,128}$/;

const systemClock = Object.freeze({
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (id) => globalThis.clearTimeout(id),
});

/** A publish that did not succeed. code: the hub's error code ('bad_request', 'unauthorized',
 *  'too_large', 'rate_limited', 'overloaded', 'unavailable', ...), or 'timeout', 'network',
 *  'bad_answer', 'aborted'. */
export class PublishError extends Error {
  constructor(code, message, details = {}) {
    super(message);
    this.name = 'PublishError';
    this.code = code;
    this.status = 0;
    this.retryable = false;
    this.attempts = 0;
    this.retryAfterMs = null;
    Object.assign(this, details);
  }
}

/** True for a key the hub takes: 1 to 128 visible ASCII characters. */
export function isIdempotencyKey(key) {
  return typeof key === 'string' && KEY_CHARS.test(key);
}

/** Retry-After (seconds, or an HTTP date) in milliseconds from now, or null. */
export function parseRetryAfter(value, now = Date.now()) {
  if (typeof value !== 'string' || !value.trim()) return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Math.min(Number(v), 86400) * 1000;
  if (!/^[A-Za-z]{3}/.test(v)) return null; /* an HTTP date starts with the day's name */
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

/** The wait before retry number `retry` (0 first), in whole milliseconds: full jitter, or at
 *  least retryAfterMs when the hub gave one. */
export function retryDelay(retry, backoff = DEFAULTS.backoff, retryAfterMs = null,
                           random = Math.random) {
  const cap = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(retry, 30));
  if (retryAfterMs === null || retryAfterMs === undefined) return Math.floor(random() * cap);
  return retryAfterMs + Math.floor(random() * Math.min(cap, retryAfterMs));
}

function checkEvent(ev, where) {
  if (!ev || typeof ev !== 'object') throw new TypeError(`${where}: not an event object`);
  const { channel, event, data } = ev;
  if (!isValidChannel(channel) || channel.startsWith('$'))
    throw new TypeError(`${where}: invalid channel name: ${JSON.stringify(channel)}`);
  if (event !== undefined && event !== null && (typeof event !== 'string' || !event))
    throw new TypeError(`${where}: event must be a non-empty string, null or absent`);
  if (data === undefined) throw new TypeError(`${where}: data is required (null is a value)`);
  const out = { channel };
  if (event) out.event = event;
  out.data = data;
  return out;
}

function abortError(signal) {
  const err = new PublishError('aborted', 'the publish was aborted');
  err.cause = signal.reason;
  return err;
}

export class Publisher {
  #url;
  #apiKey;
  #opts;
  #backoff;
  #clock;
  #random;
  #agent;
  #isOwnAgent;
  #transport;

  /**
   * @param {string|URL} url  the hub's API: http(s)://HOST:PORT (the path /publish is added
   *   when the URL has none) or the full URL of its publish endpoint
   * @param {object} [options] see publisher.d.ts
   */
  constructor(url = 'http://127.0.0.1:8081', options = {}) {
    const u = new URL(String(url));
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      throw new TypeError(`not an http(s) URL: ${url}`);
    if (u.pathname === '/' || u.pathname === '') u.pathname = '/publish';
    this.#url = u;
    this.#transport = u.protocol === 'https:' ? https : http;
    this.#apiKey = options.apiKey || null;
    if (this.#apiKey !== null && (typeof this.#apiKey !== 'string' || /[\r\n]/.test(this.#apiKey)))
      throw new TypeError('apiKey must be a one-line string');
    this.#opts = { ...DEFAULTS, ...options };
    this.#backoff = { ...DEFAULTS.backoff, ...(options.backoff || {}) };
    if (!(this.#backoff.initialMs > 0) || !(this.#backoff.maxMs >= this.#backoff.initialMs))
      throw new RangeError('backoff: need 0 < initialMs <= maxMs');
    for (const k of ['timeoutMs', 'deadlineMs'])
      if (!(this.#opts[k] > 0)) throw new RangeError(`${k}: need a number > 0`);
    if (!(Number.isSafeInteger(this.#opts.maxAttempts) && this.#opts.maxAttempts >= 1))
      throw new RangeError('maxAttempts: need a whole number >= 1');
    this.#clock = { ...systemClock, ...(options.clock || {}) };
    this.#random = options.random || Math.random;
    this.#isOwnAgent = !options.agent;
    this.#agent = options.agent ||
      new this.#transport.Agent({ keepAlive: true, maxSockets: this.#opts.maxSockets });
  }

  /** The endpoint requests go to. */
  get url() { return this.#url.href; }

  /**
   * Publishes one event (event: its name, or null for none). Resolves with {id, duplicate,
   * attempts, idempotencyKey} once the hub took it (202); rejects with a PublishError.
   * options: idempotencyKey, signal (an AbortSignal), timeoutMs, maxAttempts, deadlineMs.
   */
  publish(channel, event, data, options = {}) {
    let body;
    try {
      body = checkEvent({ channel, event, data }, 'publish');
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#send(body, options).then(({ answer, ...rest }) => {
      if (typeof answer.id !== 'string')
        throw new PublishError('bad_answer', 'the hub\'s answer has no id', { attempts: rest.attempts });
      return { id: answer.id, duplicate: answer.duplicate === true, ...rest };
    });
  }

  /**
   * Publishes events [{channel, event?, data}, ...] in one request, which the hub takes or
   * refuses whole. Resolves with {ids, duplicate, attempts, idempotencyKey}.
   */
  publishBatch(events, options = {}) {
    let body;
    try {
      if (!Array.isArray(events) || events.length === 0)
        throw new TypeError('publishBatch: need a non-empty array of events');
      body = events.map((ev, i) => checkEvent(ev, `publishBatch[${i}]`));
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#send(body, options).then(({ answer, ...rest }) => {
      if (!Array.isArray(answer.ids))
        throw new PublishError('bad_answer', 'the hub\'s answer has no ids', { attempts: rest.attempts });
      return { ids: answer.ids, duplicate: answer.duplicate === true, ...rest };
    });
  }

  /** Closes the idle keep-alive connections (of the publisher's own agent). */
  close() {
    if (this.#isOwnAgent) this.#agent.destroy();
  }

  async #send(body, options) {
    const key = options.idempotencyKey ?? randomUUID();
    if (!isIdempotencyKey(key))
      throw new TypeError('idempotencyKey: need 1 to 128 visible ASCII characters');
    const text = JSON.stringify(body);
    const maxAttempts = options.maxAttempts ?? this.#opts.maxAttempts;
    const timeoutMs = options.timeoutMs ?? this.#opts.timeoutMs;
    const deadline = this.#clock.now() + (options.deadlineMs ?? this.#opts.deadlineMs);
    const signal = options.signal;
    const onRetry = options.onRetry ?? this.#opts.onRetry;
    for (let attempt = 1; ; attempt++) {
      if (signal?.aborted) throw abortError(signal);
      const left = deadline - this.#clock.now();
      let err;
      try {
        const answer = await this.#post(text, key, Math.max(1, Math.min(timeoutMs, left)), signal);
        return { answer, attempts: attempt, idempotencyKey: key };
      } catch (e) {
        err = e;
      }
      err.attempts = attempt;
      err.idempotencyKey = key;
      if (!err.retryable || attempt >= maxAttempts) throw err;
      const delayMs = retryDelay(attempt - 1, this.#backoff, err.retryAfterMs, this.#random);
      if (this.#clock.now() + delayMs >= deadline) throw err;
      if (typeof onRetry === 'function') {
        try { onRetry({ attempt, delayMs, error: err }); } catch { /* a logger's problem */ }
      }
      await this.#sleep(delayMs, signal);
    }
  }

  #sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortError(signal));
        return;
      }
      const onAbort = () => {
        this.#clock.clearTimeout(timer);
        reject(abortError(signal));
      };
      const timer = this.#clock.setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /* One request. Resolves with the parsed 2xx answer; rejects with a PublishError whose
   * `retryable` says whether another attempt may succeed. */
  #post(text, key, timeoutMs, signal) {
    return new Promise((resolve, reject) => {
      const headers = {
        'Content-Type': 'application/json',
        'Content-Length': Buffer.byteLength(text),
        'Idempotency-Key': key,
        'User-Agent': this.#opts.userAgent || 'herald-client-publisher',
      };
      if (this.#apiKey) headers.Authorization = `Bearer ${this.#apiKey}`;
      let isDone = false;
      const finish = (err, value) => {
        if (isDone) return;
        isDone = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        err ? reject(err) : resolve(value);
      };
      const req = this.#transport.request(this.#url, { method: 'POST', agent: this.#agent, headers });
      const timer = setTimeout(() => {
        finish(new PublishError('timeout', `no answer from ${this.#url.host} within ${timeoutMs} ms`,
          { retryable: true }));
        req.destroy();
      }, timeoutMs);
      const onAbort = () => {
        finish(abortError(signal));
        req.destroy();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', (e) => {
        finish(new PublishError('network', `${this.#url.host}: ${e.code || e.message}`,
          { retryable: true, cause: e }));
      });
      req.on('response', (res) => {
        const chunks = [];
        let size = 0;
        res.on('data', (c) => {
          size += c.length;
          if (size <= MAX_ANSWER_BYTES) chunks.push(c);
        });
        res.on('error', (e) => {
          finish(new PublishError('network', `${this.#url.host}: ${e.code || e.message}`,
            { retryable: true, cause: e }));
        });
        res.on('end', () => finish(...this.#judge(res, Buffer.concat(chunks).toString('utf8'))));
      });
      req.end(text);
    });
  }

  /* [err, value] for an answer. */
  #judge(res, text) {
    const status = res.statusCode;
    let body = null;
    try { body = JSON.parse(text); } catch { /* not JSON: a proxy's page */ }
    if (status >= 200 && status < 300) {
      if (!body || typeof body !== 'object')
        return [new PublishError('bad_answer', `${status} without a JSON object`, { status })];
      return [null, body];
    }
    const code = body && typeof body.error === 'string' ? body.error : `http_${status}`;
    const message = body && typeof body.message === 'string' ? body.message :
      `${status} ${res.statusMessage || ''}`.trim();
    return [new PublishError(code, `${status} ${code}: ${message}`, {
      status,
      retryable: RETRY_STATUSES.has(status),
      retryAfterMs: parseRetryAfter(res.headers['retry-after'], this.#clock.now()),
      body,
    })];
  }
}

/** new Publisher(url, options) */
export function createPublisher(url, options) {
  return new Publisher(url, options);
}

export default Publisher;
