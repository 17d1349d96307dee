// chaos.test.mjs -- issue 12's proof: nothing a publisher was told was taken (202) is lost,
// doubled or reordered for any client, through the faults a cluster meets, unless the client
// was told (a `gap`, or `recovered:false`) and an injected fault explains it.
//
// The cluster: three hubs on one redis-server (a free loopback port, no persistence) behind
// nginx from the shipped systemd/nginx-herald.conf (as rolling.test.mjs and
// tests/integration/test_load_balancer.py run it). 50 channels; about 200 events/s in all
// from three `herald-client/publisher` loads, each event with its own Idempotency-Key (kept
// on every retry), retried with backoff (and Retry-After when the hub gives one):
//   - lb-1 and lb-2 publish through nginx's API port, as backends behind the balancer do:
//     nginx passes a publish that meets a dead or refusing hub to the next one, which is
//     how publishing survives the hub that is killed (one API URL per publisher);
//   - direct publishes to one hub's own API port (herald-c, never killed): the hub's own
//     answers (503 while Redis is away) reach the publisher unmasked by nginx, which turns
//     three refusals into its own 503 and then 502 "no live upstreams" for fail_timeout.
// 24 herald.js clients (Node, `ws`) connect through nginx, each holding 6 of the channels
// (every channel has 2 or 3 holders on whatever hubs least_conn picked), and one more client
// is the slow consumer (below). Publishing starts once every client holds its channels, so
// every client must see every seq of its channels from 1.
//
// Faults, in turn, each waited out on a condition (clients back, hubs ready), with about
// 2 s of publishing (400 accepted events) between them:
//   1. kill -9 of herald-a: its clients reconnect through nginx to the others and resume
//      with `since`; herald-a is started again on the same ports;
//   2. CLIENT KILL TYPE pubsub: every hub's subscription dies at once; holes are read back
//      from history;
//   3. SIGSTOP of Redis for 2 s, then SIGCONT: under the hubs' 3 s heartbeat deadline, so
//      publishes wait and are answered 202 once Redis runs again (no 503 is promised);
//   4. SIGSTOP of Redis for 4 s: past the deadline, the hubs drop their links and answer 503
//      `unavailable` until Redis is back (nginx: 503, then 502 "no live upstreams" until its
//      fail_timeout ends); the publishers retry with the same key. The publishes that were
//      in flight when Redis stopped are answered 503 ("lost before it answered") and yet
//      Redis runs them when it wakes: their retries get duplicate:true, which the report
//      counts; without an Idempotency-Key they would be published twice;
//   5. a slow consumer: a herald.js client whose socket stops reading (through nginx) while
//      large events go to its own channel, on hubs with --send-queue-bytes 256 KiB; the hub
//      cuts it with 1013, its socket reads again, and it resumes with `since`.
// At the end, per client and channel, against GET /history (--history-size holds the whole
// run): every seq whose Idempotency-Key a publisher got a 202 for (first answer or
// duplicate) was delivered exactly once and in order, with the id the history has, unless
// it lies in a range the client was told about (gap, recovered:false) while a fault was
// going on; no event exists that no publisher got a 202 for; every key is one event, once.
// Below herald.js, each connection's raw frames are checked too (herald.js drops a repeated
// seq silently): per connection and channel, seqs strictly increase, and a resume replays
// nothing at or below the `since` it asked for.
//
// The second test: Redis restarted without persistence (its keys lost) while clients (on
// two hubs, directly) are subscribed and publishers publish: every client gets, for every
// channel, one reset (`subscribed` with a new epoch, seq 0, recovered:false) and then the new
// numbering from 1, each seq once with history's id, or declared; never a silent jump back or
// loss. Two todo subtests hold what the hub does not do yet (BUG_FALSE_GAP, BUG_CHECK_SKIPPED
// below): no gap at all, since history holds everything; and a channel that gets no event
// after the restart reset at every client too.
//
// Environment: see harness.mjs (HERALD_BIN, HERALD_NGINX_CONF, HERALD_NGINX,
// HERALD_REDIS_SERVER; HERALD_KEEP_LOGS keeps the hubs', nginx's and Redis's logs). Skipped
// without nginx or redis-server.

import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, test } from 'node:test';
import WebSocket from 'ws';

import { Herald } from '../../clients/js/herald.js';
import { Publisher } from '../../clients/js/publisher.js';
import { Hub, NGINX, Nginx, REDIS_SERVER, RedisServer, executable, sleep, uniqueChannel,
  waitFor } from './harness.mjs';

const N_CHANNELS = 50;
const N_CLIENTS = 24;
const CHANNELS_PER_CLIENT = 6;
const RATE = 200;                    /* events/s, all publishers together */
const SETTLE_EVENTS = 400;           /* accepted between faults: about 2 s */
const HISTORY_SIZE = 3000;           /* more than any channel gets: the whole run is kept */
const SEND_QUEUE_BYTES = 262144;
const BIG_EVENT_BYTES = 60000;       /* the slow consumer's channel */
const BIG_EVENTS_MAX = 800;          /* 48 MB: the pump's own bound */
const FAULT_GRACE_MS = 3000;         /* a declared range announced this long after a fault
                                        ended is still that fault's */
const CLIENT_BACKOFF = { initialMs: 250, maxMs: 2000 };
const PUBLISH_OPTIONS = {
  backoff: { initialMs: 100, maxMs: 1000 },
  maxAttempts: 100, deadlineMs: 30000, timeoutMs: 8000,
};

/* Hub bugs these tests meet: control/sequencer.c takes a history read that could not be made
 * or answered (the pub link not up yet, its scripts not loaded, the link lost) for "history no
 * longer holds them". The second test's todo subtests assert what should be; in the first
 * test such a gap is a declared range during a fault, printed with whether history holds it. */
const BUG_FALSE_GAP = 'hub bug: a hole found while the hub\'s Redis pub link is not up yet (its sub link ' +
  'came back first) is announced as a gap at once, though history holds the events ' +
  '(start_repair: read_channel() < 0 -> post_gap; repair_read on an error likewise)';
const BUG_CHECK_SKIPPED = 'hub bug: the position check after a resubscribe is skipped, and never retried, ' +
  'when the pub link is not up at that moment (start_check: read_channel() < 0), so a channel that ' +
  'gets no new event is not reset (nor are its missed events delivered) at that hub\'s clients';

const now = () => performance.now();
const skip = !executable(NGINX) ? `${NGINX} is absent (apt-get install nginx-light)` :
  !REDIS_SERVER ? 'redis-server is absent (apt-get install redis-server)' : false;

// --- what is started, stopped at the end whatever happened ----------------------------------

const started = { redis: [], hubs: [], nginx: [], clients: [], loads: [] };
after(async () => {
  for (const c of started.clients) c.h.close();
  for (const l of started.loads) await l.stop().catch(() => {});
  for (const n of started.nginx) await n.stop().catch(() => {});
  for (const h of started.hubs) await h.stop({ timeoutMs: 4000 }).catch(() => {});
  for (const r of started.redis) await r.stop().catch(() => {});
});

// --- publishing -------------------------------------------------------------------------------

/**
 * A publisher at `rate` events/s, each event one publish() on a random channel of `channels`
 * with data {k, n} and Idempotency-Key k, at most `maxInFlight` at once (past it, it waits:
 * a stalled hub slows the load down instead of piling requests up). Every item keeps what
 * became of it: id and duplicate (202), the retries (code, status, Retry-After, wait), or
 * the error it ended with.
 */
class Load {
  constructor(name, url, channels, rate, { maxInFlight = 32, data = null } = {}) {
    this.name = name;
    this.url = url;
    this.channels = channels;
    this.intervalMs = 1000 / rate;
    this.maxInFlight = maxInFlight;
    this.data = data;
    this.items = [];
    this.inFlight = new Set();
    this.isRunning = false;
    this.pub = new Publisher(url, PUBLISH_OPTIONS);
  }

  get accepted() { return this.items.filter((it) => it.id).length; }

  start() {
    this.isRunning = true;
    this.loop = (async () => {
      let t0 = now();
      for (let n = 0; this.isRunning; n++) {
        let due = t0 + n * this.intervalMs;
        if (now() - due > 1000) { t0 = now() - n * this.intervalMs; due = now(); } /* no burst after a stall */
        if (due > now()) await sleep(due - now());
        while (this.isRunning && this.inFlight.size >= this.maxInFlight) await Promise.race(this.inFlight);
        if (!this.isRunning) break;
        this.publishOne(n);
      }
    })();
    return this;
  }

  publishOne(n) {
    const channel = this.channels[Math.floor(Math.random() * this.channels.length)];
    const it = { key: `${this.name}-${n}`, channel, sentAt: now(), retries: [], id: null, duplicate: false,
      answeredAt: 0, error: null };
    this.items.push(it);
    const data = { k: it.key, n, ...(this.data || {}) };
    const p = this.pub.publish(channel, 'tick', data, {
      idempotencyKey: it.key,
      onRetry: ({ delayMs, error }) => it.retries.push({ at: now(), code: error.code, status: error.status,
        retryAfterMs: error.retryAfterMs, delayMs }),
    }).then((r) => {
      it.id = r.id;
      it.duplicate = r.duplicate;
      it.answeredAt = now();
    }, (err) => {
      it.error = err;
      it.answeredAt = now();
    }).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  async stop() {
    this.isRunning = false;
    await this.loop;
    await Promise.all([...this.inFlight]);
    this.pub.close();
  }

  summary() {
    const codes = {};
    for (const it of this.items) for (const r of it.retries) {
      const k = `${r.status || ''}${r.code}`;
      codes[k] = (codes[k] || 0) + 1;
    }
    const failed = this.items.filter((it) => it.error);
    const latencies = this.items.filter((it) => it.id).map((it) => it.answeredAt - it.sentAt);
    return `${this.name} (${this.url}): ${this.items.length} sent, ${this.accepted} answered 202 ` +
      `(${this.items.filter((it) => it.duplicate).length} of them duplicate:true), ` +
      `${this.items.filter((it) => it.retries.length).length} retried, retries by answer ${JSON.stringify(codes)}, ` +
      `${failed.length} given up${failed.length ? ` (${failed.slice(0, 3).map((it) => it.error.message)})` : ''}, ` +
      `slowest 202 after ${Math.round(Math.max(0, ...latencies))} ms`;
  }
}

const acceptedOf = (loads) => loads.reduce((n, l) => n + l.accepted, 0);

/** Waits until the loads got `n` more 202s (publishing goes on meanwhile). */
async function settle(loads, n, what) {
  const target = acceptedOf(loads) + n;
  await waitFor(() => acceptedOf(loads) >= target, { timeoutMs: 30000, every: 20,
    what: `${n} more publishes accepted (${what})` });
}

// --- clients ----------------------------------------------------------------------------------

/**
 * A herald.js client holding `channels`, with what it was told per channel: events (seq, id,
 * key), declared ranges (gap, recovered:false) and resumes, and below herald.js, the raw
 * frames of each of its sockets: anomalies are a seq that does not increase on a connection
 * and a replayed seq at or below the `since` the resume asked for.
 */
function chaosClient(url, index, channels) {
  const c = { index, channels, sockets: [], conns: [], states: [], closes: [], raw: [], per: new Map() };
  for (const ch of channels) c.per.set(ch, { events: [], declared: [], resumes: [], resets: [] });
  class TrackedWS extends WebSocket {
    constructor(...args) {
      super(...args);
      const conn = { last: new Map(), since: new Map(), frames: 0 };
      c.sockets.push(this);
      this.conn = conn;
      this.on('message', (d) => {
        conn.frames++;
        let m;
        try { m = JSON.parse(String(d)); } catch { return; }
        if (m.type === 'subscribed' && m.ref === undefined && conn.last.has(m.channel) && m.recovered === false) {
          conn.last.set(m.channel, m.seq); /* a reset: a new numbering */
          conn.since.delete(m.channel);
          return;
        }
        if (m.type !== 'event') return;
        const last = conn.last.get(m.channel);
        if (last !== undefined && m.seq <= last)
          c.raw.push(`socket ${c.sockets.length}: ${m.channel} seq ${m.seq} after ${last}`);
        const since = conn.since.get(m.channel);
        if (since !== undefined && m.seq <= since)
          c.raw.push(`socket ${c.sockets.length}: ${m.channel} seq ${m.seq} replayed, at or below since ${since}`);
        conn.last.set(m.channel, m.seq);
      });
    }

    send(data, ...rest) {
      try {
        const m = JSON.parse(String(data));
        if (m.type === 'subscribe' && m.since) this.conn.since.set(m.channel, m.since.seq);
      } catch { /* not ours */ }
      return super.send(data, ...rest);
    }
  }
  const h = new Herald(url, { WebSocket: TrackedWS, backoff: CLIENT_BACKOFF });
  c.h = h;
  h.on('state', (state, info) => {
    c.states.push({ state, at: now(), code: info.code });
    if (state === 'open') c.conns.push({ instance: info.welcome.instance, at: now() });
  });
  h.on('close', ({ code, reason }) => c.closes.push({ code, reason, at: now() }));
  h.on('gap', ({ channel, from, to }) => {
    c.per.get(channel)?.declared.push({ from, to, how: 'gap', at: now() });
  });
  h.on('recovered', (r) => {
    const p = c.per.get(r.channel);
    if (!p) return;
    if (r.reason === 'reset') p.resets.push({ ...r, at: now(), after: p.events.length });
    else p.resumes.push({ ...r, at: now() });
    if (!r.recovered && r.reason !== 'reset' && r.since && r.epoch === r.since.epoch && r.seq > r.since.seq)
      p.declared.push({ from: r.since.seq + 1, to: r.seq, how: `recovered:false (${r.reason})`, at: now() });
  });
  c.ready = Promise.all(channels.map((ch) => h.subscribe(ch, (e) => {
    c.per.get(ch).events.push({ seq: e.seq, id: e.id, key: e.data && e.data.k, at: now() });
  }).ready));
  h.connect();
  started.clients.push(c);
  return c;
}

const isHolding = (c) => c.h.state === 'open' && c.channels.every((ch) => c.h.isActive(ch));

// --- the cluster ------------------------------------------------------------------------------

async function hubsReady(hubs, what, timeoutMs = 20000) {
  await waitFor(async () => (await Promise.all(hubs.map((h) => h.isReady()))).every(Boolean),
    { timeoutMs, every: 50, what: `every hub /ready 200 (${what})` });
}

/** The subscribed Redis links of the hubs (CLIENT SETNAME herald-<instance>-sub). */
async function subLinks(redis) {
  const list = await redis.call('CLIENT', 'LIST');
  return list.split('\n').map((l) => /\bname=(herald-\S+-sub)\b/.exec(l)).filter(Boolean).map((m) => m[1]);
}

async function sumMetric(hubs, name) {
  let sum = 0;
  for (const h of hubs) {
    if (!h.proc) continue;
    const m = await h.metrics().catch(() => ({}));
    sum += m[name] || 0;
  }
  return sum;
}

/** GET /history of every channel: channel -> {epoch, seq, bySeq: seq -> {id, key}}. */
async function readHistory(hub, channels) {
  const out = new Map();
  for (const ch of channels) {
    const r = await fetch(`${hub.apiUrl}/history?channel=${encodeURIComponent(ch)}&limit=10000`,
      { signal: AbortSignal.timeout(10000) });
    assert.equal(r.status, 200, `GET /history ${ch}`);
    const body = await r.json();
    const bySeq = new Map();
    for (const e of body.events) bySeq.set(e.seq, { id: e.id, key: e.data && e.data.k });
    out.set(ch, { epoch: body.epoch, seq: body.seq, bySeq });
  }
  return out;
}

// --- the test ---------------------------------------------------------------------------------

test('chaos: kill -9, lost subscriptions, a hung Redis and a slow consumer lose and double nothing',
  { skip, timeout: 150000 }, async (t) => {
    const t0 = now();
    const log = (msg) => t.diagnostic(msg);
    const redis = await new RedisServer().start();
    started.redis.push(redis);
    const redisChannel = uniqueChannel('herald-chaos');
    const hubs = ['a', 'b', 'c'].map((x) => new Hub({
      'redis-url': redis.url, 'redis-channel': redisChannel, 'instance-id': `herald-${x}`,
      'history-size': HISTORY_SIZE, 'send-queue-bytes': SEND_QUEUE_BYTES, 'drain-seconds': 2,
    }));
    started.hubs.push(...hubs);
    for (const h of hubs) await h.start();
    await hubsReady(hubs, 'start');
    const [hubA, , hubC] = hubs;
    const nginx = await new Nginx(hubs).start();
    started.nginx.push(nginx);
    const dump = () => [...hubs.map((h) => `--- ${h.options['instance-id']} ---\n${h.log()}`),
      `--- nginx error.log ---\n${nginx.errorLog(20)}`].join('\n');

    const channels = Array.from({ length: N_CHANNELS }, () => uniqueChannel('chaos'));
    const slowChannel = uniqueChannel('chaos-slow');
    const faults = [];
    try {
      // --- clients, one at a time so that least_conn spreads them --------------------------
      const clients = [];
      for (let i = 0; i < N_CLIENTS; i++) {
        const mine = Array.from({ length: CHANNELS_PER_CLIENT }, (_, j) => channels[(i * CHANNELS_PER_CLIENT + j) % N_CHANNELS]);
        const c = chaosClient(nginx.wsUrl, i, mine);
        clients.push(c);
        await waitFor(() => isHolding(c), { timeoutMs: 10000, what: `client ${i} holding its channels` });
      }
      const slow = chaosClient(nginx.wsUrl, N_CLIENTS, [slowChannel, channels[0], channels[1]]);
      clients.push(slow);
      await waitFor(() => isHolding(slow), { timeoutMs: 10000, what: 'the slow client holding its channels' });
      const spread = {};
      for (const c of clients) spread[c.h.welcome.instance] = (spread[c.h.welcome.instance] || 0) + 1;
      log(`${clients.length} clients through nginx: ${JSON.stringify(spread)}; setup ${Math.round(now() - t0)} ms`);
      assert.ok(spread['herald-a'] >= 1, 'herald-a holds clients, so that killing it moves some');

      // --- publishing ----------------------------------------------------------------------
      const loads = [
        new Load('lb-1', nginx.apiUrl, channels, RATE / 3),
        new Load('lb-2', nginx.apiUrl, channels, RATE / 3),
        new Load('direct', hubC.apiUrl, channels, RATE / 3),
      ];
      started.loads.push(...loads);
      for (const l of loads) l.start();
      const pubStart = now();
      await settle(loads, SETTLE_EVENTS, 'before the faults');
      log(`publishing: ${acceptedOf(loads)} accepted in the first ${Math.round(now() - pubStart)} ms ` +
        `(${Math.round(acceptedOf(loads) / (now() - pubStart) * 1000)}/s without faults)`);

      const fault = async (name, fn) => {
        const f = { name, start: now(), end: 0, notes: [] };
        faults.push(f);
        await fn(f);
        f.end = now();
        log(`fault ${faults.length}: ${name}: ${f.notes.join('; ')} (${Math.round(f.end - f.start)} ms)`);
        await settle(loads, SETTLE_EVENTS, `after ${name}`);
      };

      // 1. kill -9 of one hub; it comes back later on the same ports
      await fault('kill -9 herald-a', async (f) => {
        const moving = clients.filter((c) => c.h.welcome && c.h.welcome.instance === 'herald-a');
        const connsBefore = new Map(moving.map((c) => [c, c.conns.length]));
        const killed = await hubA.kill('SIGKILL');
        assert.equal(killed.signal, 'SIGKILL');
        const at = now();
        await waitFor(() => moving.every((c) => c.conns.length > connsBefore.get(c) && isHolding(c)),
          { timeoutMs: 20000, every: 10, what: `the ${moving.length} clients of herald-a holding their channels elsewhere` });
        const resumed = moving.flatMap((c) => [...c.per.values()].flatMap((p) => p.resumes.filter((r) => r.at > at)));
        f.notes.push(`${moving.length} clients moved to ${[...new Set(moving.map((c) => c.h.welcome.instance))]} ` +
          `within ${Math.round(now() - at)} ms, ${resumed.length} channel resumes ` +
          `(${resumed.filter((r) => r.recovered).length} recovered:true)`);
        await settle(loads, SETTLE_EVENTS, 'while herald-a is down');
        const restartAt = now();
        await hubA.start();
        await hubsReady([hubA], 'herald-a restarted');
        f.notes.push(`herald-a restarted, /ready after ${Math.round(now() - restartAt)} ms`);
      });

      // 2. every hub's subscription killed by Redis
      await fault('CLIENT KILL TYPE pubsub', async (f) => {
        const before = await sumMetric(hubs, 'herald_sequence_repaired_total');
        const n = await redis.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
        assert.ok(n >= hubs.length, `CLIENT KILL TYPE pubsub killed ${n} links`);
        const at = now();
        await waitFor(async () => (await subLinks(redis)).length >= hubs.length,
          { timeoutMs: 15000, every: 20, what: 'every hub subscribed again' });
        await hubsReady(hubs, 'after CLIENT KILL');
        f.notes.push(`${n} subscriptions killed; every hub subscribed and ready again after ${Math.round(now() - at)} ms`);
        f.after = async () => `${await sumMetric(hubs, 'herald_sequence_repaired_total') - before} events repaired from history`;
      });

      // 3, 4. Redis hangs: 2 s (under the hubs' 3 s heartbeat deadline), then 4 s (past it)
      for (const ms of [2000, 4000]) {
        await fault(`SIGSTOP Redis for ${ms / 1000} s`, async (f) => {
          const at = now();
          redis.pause();
          await sleep(ms); /* the fault itself: Redis is hung this long */
          redis.resume();
          const contAt = now();
          await hubsReady(hubs, `after a ${ms} ms SIGSTOP`);
          const readyAt = now();
          const refused = loads.flatMap((l) => l.items.flatMap((it) => it.retries))
            .filter((r) => r.at >= at && r.at <= readyAt);
          const byCode = {};
          for (const r of refused) byCode[`${r.status || ''}${r.code}`] = (byCode[`${r.status || ''}${r.code}`] || 0) + 1;
          const answeredSince = (l) => l.items.some((it) => it.id && it.answeredAt > contAt);
          await waitFor(() => loads.every(answeredSince), { timeoutMs: 20000, every: 20,
            what: `a 202 for every publisher after the ${ms} ms SIGSTOP` });
          const firstAfter = loads.map((l) => {
            const t = Math.min(...l.items.filter((it) => it.id && it.answeredAt > contAt).map((it) => it.answeredAt));
            return `${l.name} ${Math.round(t - contAt)} ms`;
          });
          f.notes.push(`every hub ready ${Math.round(readyAt - contAt)} ms after SIGCONT; ` +
            `publish attempts refused meanwhile: ${refused.length} ${JSON.stringify(byCode)}; ` +
            `first 202 after SIGCONT: ${firstAfter.join(', ')}`);
        });
      }

      // 5. a slow consumer: its socket stops reading while large events go to its channel
      await fault('slow consumer', async (f) => {
        const baseline = await sumMetric(hubs, 'herald_events_dropped_total{reason="slow_consumer"}');
        const closesBefore = slow.closes.length;
        const connsBefore = slow.conns.length;
        const socket = slow.sockets.at(-1);
        const onHub = slow.h.welcome.instance;
        socket._socket.pause();
        const pump = new Load('slow', nginx.apiUrl, [slowChannel], 1000, { maxInFlight: 6,
          data: { pad: 'x'.repeat(BIG_EVENT_BYTES) } });
        started.loads.push(pump);
        loads.push(pump); /* its events are checked like the others */
        let cutAt = 0;
        const poll = setInterval(async () => {
          if (cutAt) return;
          const n = await sumMetric(hubs, 'herald_events_dropped_total{reason="slow_consumer"}');
          if (n > baseline && !cutAt) {
            cutAt = now();
            socket._socket.resume(); /* within the hub's 3 s for the close frame to leave */
          }
        }, 100);
        pump.start();
        try {
          await waitFor(() => cutAt || pump.items.length >= BIG_EVENTS_MAX, { timeoutMs: 30000, every: 20,
            what: 'the hub to cut the slow consumer' });
        } finally {
          await pump.stop();
          clearInterval(poll);
        }
        assert.ok(cutAt, `the slow consumer was not cut after ${pump.items.length} events of ${BIG_EVENT_BYTES} bytes`);
        await waitFor(() => slow.closes.length > closesBefore, { timeoutMs: 10000, what: 'the slow consumer\'s close' });
        const close = slow.closes[closesBefore];
        await waitFor(() => slow.conns.length > connsBefore && isHolding(slow), { timeoutMs: 15000,
          what: 'the slow consumer back, holding its channels' });
        const resume = slow.per.get(slowChannel).resumes.find((r) => r.at > cutAt);
        f.notes.push(`cut by ${onHub} after ${pump.accepted} events of ${BIG_EVENT_BYTES} bytes ` +
          `(${(pump.accepted * BIG_EVENT_BYTES / 1048576).toFixed(1)} MiB) in ${Math.round(cutAt - f.start)} ms, ` +
          `closed with ${close.code} ${JSON.stringify(close.reason)}; back on ${slow.h.welcome.instance}, ` +
          `its channel resumed recovered:${resume && resume.recovered} from seq ${resume && resume.since.seq} to ${resume && resume.seq}`);
        assert.equal(close.code, 1013, 'the slow consumer is closed with 1013');
        assert.ok(resume && resume.recovered, 'the slow consumer resumes with since, recovered');
      });

      // --- the end: stop publishing, let everything arrive ---------------------------------
      for (const l of loads) await l.stop();
      const pubMs = now() - pubStart;
      const allChannels = [...channels, slowChannel];
      const history = await readHistory(hubs[1], allChannels);
      const caughtUp = () => clients.every((c) => c.channels.every((ch) => {
        const p = c.h.position(ch);
        return p && p.seq >= history.get(ch).seq;
      }));
      await waitFor(caughtUp, { timeoutMs: 20000, every: 50, what: 'every client at the last seq of its channels' })
        .catch(() => {}); /* what is missing is reported below */

      // --- the checks ----------------------------------------------------------------------
      const failures = [];
      const fail = (msg) => failures.push(msg);
      const items = loads.flatMap((l) => l.items);
      const byKey = new Map(items.map((it) => [it.key, it]));
      const given = items.filter((it) => it.error);
      for (const it of given) fail(`publisher gave up on ${it.key}: ${it.error.message}`);
      const retries = items.flatMap((it) => it.retries);
      const toldToWait = retries.filter((r) => r.retryAfterMs !== null && r.retryAfterMs !== undefined);
      for (const r of toldToWait.filter((x) => x.delayMs < x.retryAfterMs))
        fail(`a retry after ${r.delayMs} ms where Retry-After said ${r.retryAfterMs} ms`);

      // history: one event per key, each a key a publisher got a 202 for, no hole
      const inHistory = new Map(); /* key -> [{channel, seq, id}] */
      for (const [ch, hist] of history) {
        if (hist.bySeq.size !== hist.seq || ![...hist.bySeq.keys()].every((s, i) => s === i + 1))
          fail(`history of ${ch} is not seq 1..${hist.seq} (${hist.bySeq.size} kept): raise HISTORY_SIZE`);
        for (const [seq, e] of hist.bySeq) {
          if (!inHistory.has(e.key)) inHistory.set(e.key, []);
          inHistory.get(e.key).push({ channel: ch, seq, id: e.id });
          const it = byKey.get(e.key);
          if (!it) fail(`${ch} seq ${seq}: an event no publisher sent (key ${e.key})`);
          else if (!it.id) fail(`${ch} seq ${seq}: published (key ${e.key}) but its publisher got no 202`);
        }
      }
      let acceptedN = 0;
      for (const it of items.filter((x) => x.id)) {
        acceptedN++;
        const copies = inHistory.get(it.key) || [];
        if (copies.length !== 1) fail(`key ${it.key} (202, id ${it.id}) is ${copies.length} events: ${JSON.stringify(copies)}`);
        else if (copies[0].id !== it.id || copies[0].channel !== it.channel)
          fail(`key ${it.key}: the 202 said id ${it.id} on ${it.channel}, history has ${JSON.stringify(copies[0])}`);
      }

      // clients: every required seq once, in order, with history's id; or inside a declared range
      let deliveries = 0;
      const declared = [];
      const raw = [];
      for (const c of clients) {
        raw.push(...c.raw.map((r) => `client ${c.index}: ${r}`));
        for (const ch of c.channels) {
          const p = c.per.get(ch);
          const hist = history.get(ch);
          const pos = c.h.position(ch);
          if (!pos || pos.epoch !== hist.epoch) fail(`client ${c.index} ${ch}: epoch ${pos && pos.epoch}, history ${hist.epoch}`);
          if (p.resets.length) fail(`client ${c.index} ${ch}: a reset ${JSON.stringify(p.resets)}`);
          for (const d of p.declared) declared.push({ client: c.index, channel: ch, ...d });
          const inRange = (s) => p.declared.some((d) => s >= d.from && s <= d.to);
          const seen = new Set();
          let prev = 0;
          for (const e of p.events) {
            if (e.seq <= prev) fail(`client ${c.index} ${ch}: seq ${e.seq} after ${prev}`);
            prev = Math.max(prev, e.seq);
            seen.add(e.seq);
            const h = hist.bySeq.get(e.seq);
            if (!h || h.id !== e.id) fail(`client ${c.index} ${ch} seq ${e.seq}: id ${e.id}, history ${h && h.id}`);
            if (inRange(e.seq)) fail(`client ${c.index} ${ch} seq ${e.seq}: delivered, and declared missed too`);
          }
          deliveries += p.events.length;
          const missing = [];
          for (let s = 1; s <= hist.seq; s++) {
            const key = hist.bySeq.get(s) && hist.bySeq.get(s).key;
            const it = byKey.get(key);
            if (!it || !it.id) continue; /* no 202: not required (and failed above) */
            if (!seen.has(s) && !inRange(s)) missing.push(s);
          }
          if (missing.length)
            fail(`client ${c.index} ${ch}: ${missing.length} accepted events neither delivered nor declared: seqs ` +
              `${missing.slice(0, 12).join(',')}${missing.length > 12 ? ',…' : ''} (of 1..${hist.seq}; got ${p.events.length})`);
        }
        const cut = c.closes.filter((x) => x.code === 1013);
        if (c !== slow && cut.length) fail(`client ${c.index} (reading as fast as the others) was cut with 1013`);
        if (c.h.state !== 'open') fail(`client ${c.index} ends ${c.h.state}`);
      }
      for (const r of raw.slice(0, 10)) fail(`raw frames: ${r}`);

      // declared ranges: each must fall in a fault
      const explained = (d) => faults.find((f) => d.at >= f.start && d.at <= f.end + FAULT_GRACE_MS);
      for (const d of declared) {
        const f = explained(d);
        const held = Array.from({ length: d.to - d.from + 1 }, (_, i) => d.from + i)
          .filter((s) => history.get(d.channel).bySeq.has(s)).length;
        log(`declared: client ${d.client} ${d.channel} seqs ${d.from}..${d.to} (${d.how}) at ` +
          `${Math.round(d.at - t0)} ms, ${f ? `during ${f.name}` : 'NOT during any fault'}; history holds ` +
          `${held} of them${held ? ` (${BUG_FALSE_GAP.slice(0, 60)}…)` : ''}`);
        if (!f) fail(`client ${d.client} ${d.channel}: ${d.how} ${d.from}..${d.to} outside every fault`);
      }

      // --- the report ----------------------------------------------------------------------
      for (const f of faults) if (f.after) f.notes.push(await f.after());
      for (const l of loads) log(l.summary());
      const dupCauses = {};
      for (const it of items.filter((x) => x.duplicate)) {
        const k = it.retries.length ? `${it.retries[0].status}${it.retries[0].code}` : 'not retried';
        dupCauses[k] = (dupCauses[k] || 0) + 1;
      }
      log(`duplicate:true answers, by the answer to their first attempt: ${JSON.stringify(dupCauses)} ` +
        `(an attempt refused, yet its event was taken: the retry got the first answer back, nothing doubled); ` +
        `retries told Retry-After: ${toldToWait.length} of ${retries.length}, every one waited at least that`);
      const m = {};
      for (const name of ['herald_sequence_holes_total', 'herald_sequence_repaired_total', 'herald_sequence_lost_total',
        'herald_sequence_resets_total', 'herald_publish_duplicates_total', 'herald_publish_errors_total',
        'herald_redis_reconnects_total', 'herald_disconnects_total{reason="slow_consumer"}',
        'herald_events_dropped_total{reason="overload"}', 'herald_send_queue_overruns_total'])
        m[name.replace('herald_', '')] = await sumMetric(hubs, name);
      log(`hubs (herald-a's since its restart): ${JSON.stringify(m)}`);
      const reconnects = clients.map((c) => c.conns.length - 1);
      const resumes = clients.flatMap((c) => [...c.per.values()].flatMap((p) => p.resumes));
      log(`${acceptedN} events accepted over ${(pubMs / 1000).toFixed(1)} s (${Math.round(acceptedN / pubMs * 1000)}/s) ` +
        `on ${allChannels.length} channels; ${deliveries} deliveries checked at ${clients.length} clients; ` +
        `reconnections per client [${reconnects}]; ${resumes.length} resumes, ` +
        `${resumes.filter((r) => r.recovered).length} recovered:true; declared ranges: ${declared.length} ` +
        `(${declared.reduce((n, d) => n + d.to - d.from + 1, 0)} seqs); raw-frame anomalies: ${raw.length}; ` +
        `whole test ${((now() - t0) / 1000).toFixed(1)} s`);
      for (const f of faults) log(`fault: ${f.name}: ${f.notes.join('; ')}`);
      assert.deepEqual(failures.slice(0, 40), [], `${failures.length} failures`);
    } catch (err) {
      console.error(dump());
      throw err;
    }
  });

test('Redis restarted without its keys: every client gets a reset, then the new numbering from 1',
  { skip, timeout: 90000 }, async (t) => {
    const t0 = now();
    const log = (msg) => t.diagnostic(msg);
    const redis = await new RedisServer().start();
    started.redis.push(redis);
    const redisChannel = uniqueChannel('herald-reset');
    const hubs = ['x', 'y'].map((x) => new Hub({ 'redis-url': redis.url, 'redis-channel': redisChannel,
      'instance-id': `herald-${x}`, 'history-size': HISTORY_SIZE, 'drain-seconds': 2 }));
    started.hubs.push(...hubs);
    for (const h of hubs) await h.start();
    await hubsReady(hubs, 'start');
    const channels = Array.from({ length: 8 }, () => uniqueChannel('reset'));
    const quiet = uniqueChannel('reset-quiet'); /* one event before the restart, none after */
    try {
      const clients = [];
      for (let i = 0; i < 6; i++) {
        const mine = Array.from({ length: 4 }, (_, j) => channels[(i * 3 + j) % 8]);
        clients.push(chaosClient(hubs[i % 2].wsUrl, i, [...mine, quiet]));
      }
      const busy = (c) => c.channels.filter((ch) => ch !== quiet);
      await waitFor(() => clients.every(isHolding), { timeoutMs: 10000, what: 'every client holding its channels' });
      const epochs = new Map([...channels, quiet].map((ch) => [ch,
        clients.find((c) => c.channels.includes(ch)).h.position(ch).epoch]));
      await hubs[0].publish({ channel: quiet, data: { k: 'quiet-1' } });
      await waitFor(() => clients.every((c) => c.per.get(quiet).events.length === 1), { what: 'the quiet channel\'s event' });
      const loads = hubs.map((h, i) => new Load(`r${i}`, h.apiUrl, channels, 40));
      started.loads.push(...loads);
      for (const l of loads) l.start();
      await settle(loads, 100, 'before the restart');

      const killAt = now();
      await redis.kill();
      await redis.start(); /* the same port, empty */
      const upAt = now();
      await hubsReady(hubs, 'Redis restarted');
      const readyAt = now();
      await waitFor(() => clients.every((c) => busy(c).every((ch) => c.per.get(ch).resets.length >= 1)),
        { timeoutMs: 15000, every: 20, what: 'a reset of every busy channel at every client' });
      const resetAt = now();
      await settle(loads, 100, 'after the restart');
      for (const l of loads) await l.stop();
      const history = await readHistory(hubs[0], channels);
      await waitFor(() => clients.every((c) => busy(c).every((ch) => {
        const p = c.h.position(ch);
        return p && p.seq >= history.get(ch).seq;
      })), { timeoutMs: 15000, what: 'every client at the last seq of its channels' }).catch(() => {});
      await waitFor(() => clients.every((c) => c.per.get(quiet).resets.length >= 1), { timeoutMs: 3000,
        what: 'the quiet channel reset at every client' }).catch(() => {}); /* judged below */

      const failures = [];    /* a silent loss, a jump back, a duplicate, a wrong reset */
      const falseGaps = [];   /* declared missing, though history holds them: BUG_FALSE_GAP */
      const fail = (msg) => failures.push(msg);
      const byKey = new Map(loads.flatMap((l) => l.items).map((it) => [it.key, it]));
      let before = 0;
      let afterN = 0;
      for (const c of clients) {
        for (const ch of busy(c)) {
          const p = c.per.get(ch);
          const hist = history.get(ch);
          if (p.resets.length !== 1) { fail(`client ${c.index} ${ch}: ${p.resets.length} resets`); continue; }
          const [r] = p.resets;
          if (r.recovered !== false || r.seq !== 0 || r.epoch === epochs.get(ch) || r.epoch !== hist.epoch ||
              !r.since || r.since.epoch !== epochs.get(ch))
            fail(`client ${c.index} ${ch}: the reset ${JSON.stringify(r)} (old epoch ${epochs.get(ch)}, history ${hist.epoch})`);
          const gapsOld = p.declared.filter((d) => d.at < r.at);
          const gapsNew = p.declared.filter((d) => d.at >= r.at);
          const inOld = (s) => gapsOld.some((d) => s >= d.from && s <= d.to);
          const inNew = (s) => gapsNew.some((d) => s >= d.from && s <= d.to);
          for (const d of p.declared)
            falseGaps.push(`client ${c.index} ${ch}: ${d.how} ${d.from}..${d.to} ${d.at < r.at ? 'before' : 'after'} the reset` +
              (d.at >= r.at ? `; history holds ${[...Array(d.to - d.from + 1)].map((_, i) => hist.bySeq.has(d.from + i) ? 'it' : 'NOT').join(',')}` : ''));
          const old = p.events.slice(0, r.after);
          const cur = p.events.slice(r.after);
          before += old.length;
          afterN += cur.length;
          // the old numbering: 1, 2, 3 ... (holes only where declared), and the reset's since its end
          let want = 1;
          for (const e of old) {
            while (inOld(want)) want++;
            if (e.seq !== want) { fail(`client ${c.index} ${ch}: old numbering ${old.map((x) => x.seq)}`); break; }
            want++;
          }
          while (inOld(want)) want++;
          if (r.since && r.since.seq !== want - 1) fail(`client ${c.index} ${ch}: the reset's since is ${r.since.seq}, the client had ${want - 1}`);
          // the new numbering: every seq of history, once, in order, with its id, or declared
          let prev = 0;
          const seen = new Set();
          for (const e of cur) {
            if (e.seq <= prev) fail(`client ${c.index} ${ch}: seq ${e.seq} after ${prev} (a jump back)`);
            prev = e.seq;
            seen.add(e.seq);
            const h = hist.bySeq.get(e.seq);
            if (!h || h.id !== e.id) fail(`client ${c.index} ${ch} seq ${e.seq}: id ${e.id}, history ${h && h.id}`);
            if (inNew(e.seq)) fail(`client ${c.index} ${ch} seq ${e.seq}: delivered, and declared missed too`);
          }
          const missing = [];
          for (let s = 1; s <= hist.seq; s++) if (!seen.has(s) && !inNew(s)) missing.push(s);
          if (missing.length) fail(`client ${c.index} ${ch}: new numbering: seqs ${missing.slice(0, 10)} neither delivered nor declared (of 1..${hist.seq})`);
          // keys: each once; every accepted one delivered, unless its seq was declared missed
          const keys = p.events.map((e) => e.key);
          if (new Set(keys).size !== keys.length) fail(`client ${c.index} ${ch}: a key delivered twice`);
          for (const e of p.events) if (!byKey.get(e.key)?.id) fail(`client ${c.index} ${ch}: ${e.key} delivered without a 202`);
          const got = new Set(keys);
          const newSeqOf = new Map([...hist.bySeq].map(([seq, h]) => [h.key, seq]));
          const lost = [...byKey.values()].filter((it) => it.id && it.channel === ch && !got.has(it.key) &&
            !(newSeqOf.has(it.key) ? inNew(newSeqOf.get(it.key)) : gapsOld.length));
          if (lost.length) fail(`client ${c.index} ${ch}: ${lost.length} accepted events never delivered: ${lost.slice(0, 5).map((it) => it.key)}`);
        }
        for (const r of c.raw) fail(`client ${c.index} raw frames: ${r}`);
        if (c.conns.length !== 1) fail(`client ${c.index} reconnected (${c.conns.length} connections)`);
      }
      const given = [...byKey.values()].filter((it) => it.error);
      for (const it of given) fail(`publisher gave up on ${it.key}: ${it.error.message}`);
      const quietNotReset = clients.filter((c) => c.per.get(quiet).resets.length !== 1)
        .map((c) => `client ${c.index} on ${c.h.welcome.instance}: ${c.per.get(quiet).resets.length} resets of the quiet channel`);
      for (const l of loads) log(l.summary());
      for (const g of falseGaps) log(`declared: ${g}`);
      for (const q of quietNotReset) log(`not told: ${q}`);
      log(`Redis SIGKILLed and started again empty: hubs ready ${Math.round(readyAt - upAt)} ms after it answered ` +
        `(${Math.round(upAt - killAt)} ms to restart), every client reset on every busy channel within ` +
        `${Math.round(resetAt - upAt)} ms of it; ${before} events of the old numbering and ${afterN} of the new ` +
        `delivered to ${clients.length} clients; declared ranges ${falseGaps.length}; clients not told of the ` +
        `quiet channel's reset ${quietNotReset.length} of ${clients.length}; whole test ${((now() - t0) / 1000).toFixed(1)} s`);
      assert.deepEqual(failures.slice(0, 40), [], `${failures.length} failures`);
      await t.test('no gap is declared: history holds every event of both numberings', { todo: BUG_FALSE_GAP },
        () => assert.deepEqual(falseGaps, []));
      await t.test('a channel without events after the restart is reset at every client too', { todo: BUG_CHECK_SKIPPED },
        () => assert.deepEqual(quietNotReset, []));
    } catch (err) {
      console.error(hubs.map((h) => `--- ${h.options['instance-id']} ---\n${h.log()}`).join('\n'));
      throw err;
    }
  });
