// tests/bench/peers/node/server.mjs -- the Node.js peer of tests/bench/compare: a notification
// hub written the way people usually write one with `ws` and `ioredis`, speaking as much of
// Herald's protocol (../../../../shared/SPEC.md) as herald-bench uses, so the bench runs
// against it unchanged (herald-bench --peer node is Herald's mode).
//
//   node server.mjs --listen HOST:PORT --api-listen HOST:PORT [--redis-url redis://HOST:PORT]
//                   [--redis-channel NAME] [--send-queue-bytes N]
//
// WebSocket on --listen, path /ws: {"type":"welcome",...} first, ?channels=a,b subscribes at
// connect with one {"type":"subscribed"} each; client frames subscribe, unsubscribe and ping
// (with "ref" echoed). HTTP on --api-listen: POST /publish with one event object or an array
// of them, 202 {"id"} or {"ids"}; GET /health. Each event is JSON-serialized once into its
// frame and that string is sent to every subscriber of its channel. Without --redis-url the
// publish delivers in-process; with it, every event is PUBLISHed to one Redis channel (the 202
// once Redis answered) and delivered to this process's subscribers only when it comes back
// from the subscription, as Herald does. A subscriber with more than --send-queue-bytes
// buffered is closed with 1013, like Herald's slow consumers. No auth, no rate limits, no
// heartbeat: the bench needs none of them, and their absence only flatters this peer.
import http from 'node:http';
import process from 'node:process';
import Redis from 'ioredis';
import { WebSocketServer } from 'ws';

const CHANNEL_RE = /^[A-Za-z0-9_\-.:$]{1,128}$/;
const MAX_BODY = 1 << 20;

function parseArgs(argv) {
  const o = {
    listen: '127.0.0.1:8080',
    apiListen: '127.0.0.1:8081',
    redisUrl: '',
    redisChannel: 'herald:events',
    sendQueueBytes: 1 << 20,
  };
  for (let i = 0; i < argv.length; i += 2) {
    const v = argv[i + 1];
    if (v === undefined) usage(`${argv[i]} needs a value`);
    switch (argv[i]) {
      case '--listen': o.listen = v; break;
      case '--api-listen': o.apiListen = v; break;
      case '--redis-url': o.redisUrl = v; break;
      case '--redis-channel': o.redisChannel = v; break;
      case '--send-queue-bytes': o.sendQueueBytes = Number(v); break;
      default: usage(`unknown option ${argv[i]}`);
    }
  }
  return o;
}

function usage(why) {
  process.stderr.write(`server.mjs: ${why}\n`);
  process.exit(2);
}

function hostPort(s) {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
}

const opt = parseArgs(process.argv.slice(2));
const instance = `node-${process.pid}`;
const channels = new Map(); // channel name -> Set of sockets
let nextConn = 0;
let nextId = 0;

// --- delivery --------------------------------------------------------------------------------

function deliver(ev) {
  const subs = channels.get(ev.channel);
  if (!subs) return;
  const frame = JSON.stringify(
    ev.event === undefined
      ? { type: 'event', channel: ev.channel, id: ev.id, ts: ev.ts, data: ev.data }
      : { type: 'event', channel: ev.channel, event: ev.event, id: ev.id, ts: ev.ts, data: ev.data },
  );
  for (const ws of subs) {
    if (ws.bufferedAmount > opt.sendQueueBytes) {
      dropAll(ws);
      ws.close(1013, 'slow consumer');
      continue;
    }
    ws.send(frame);
  }
}

function subscribe(ws, name) {
  let subs = channels.get(name);
  if (!subs) channels.set(name, (subs = new Set()));
  subs.add(ws);
  ws.subs.add(name);
}

function unsubscribe(ws, name) {
  const subs = channels.get(name);
  if (subs) {
    subs.delete(ws);
    if (subs.size === 0) channels.delete(name);
  }
  ws.subs.delete(name);
}

function dropAll(ws) {
  for (const name of [...ws.subs]) unsubscribe(ws, name);
}

// --- WebSocket ----------------------------------------------------------------------------------

function reply(ws, obj, ref) {
  if (ref !== undefined) obj.ref = ref;
  ws.send(JSON.stringify(obj));
}

function onClientFrame(ws, raw, isBinary) {
  if (isBinary) {
    ws.close(1003, 'binary frames are not accepted');
    return;
  }
  let msg;
  try {
    msg = JSON.parse(raw.toString());
  } catch {
    reply(ws, { type: 'error', code: 'bad_request', message: 'not JSON' });
    return;
  }
  const ref = msg && msg.ref;
  switch (msg && msg.type) {
    case 'ping':
      reply(ws, { type: 'pong' }, ref);
      return;
    case 'subscribe':
    case 'unsubscribe':
      if (typeof msg.channel !== 'string' || !CHANNEL_RE.test(msg.channel)) {
        reply(ws, { type: 'error', code: 'bad_request', message: 'bad channel' }, ref);
        return;
      }
      if (msg.type === 'subscribe') subscribe(ws, msg.channel);
      else unsubscribe(ws, msg.channel);
      reply(ws, { type: `${msg.type}d`, channel: msg.channel }, ref);
      return;
    default:
      reply(ws, { type: 'error', code: 'bad_request', message: 'unknown type' }, ref);
  }
}

const wsAddr = hostPort(opt.listen);
const wsHttp = http.createServer((req, res) => {
  res.writeHead(404, { 'Content-Type': 'text/plain' });
  res.end('not found\n');
});
const wss = new WebSocketServer({
  server: wsHttp,
  path: '/ws',
  perMessageDeflate: false,
  clientTracking: false,
  maxPayload: 65536,
});

wss.on('connection', (ws, req) => {
  const wanted = new URL(req.url, 'http://x').searchParams.get('channels');
  ws.subs = new Set();
  ws.on('message', (raw, isBinary) => onClientFrame(ws, raw, isBinary));
  ws.on('close', () => dropAll(ws));
  ws.on('error', () => dropAll(ws));
  reply(ws, { type: 'welcome', connection: `c-${++nextConn}`, instance, heartbeat: 25 });
  for (const name of wanted ? wanted.split(',') : []) {
    if (!CHANNEL_RE.test(name)) {
      reply(ws, { type: 'error', code: 'bad_request', message: `bad channel ${name}` });
      continue;
    }
    subscribe(ws, name);
    reply(ws, { type: 'subscribed', channel: name });
  }
});

// --- the broker: in-process, or Redis pub/sub ------------------------------------------------------

let publishEvents; // (events) => Promise: resolves once the broker took them
if (opt.redisUrl) {
  const pub = new Redis(opt.redisUrl, { lazyConnect: false });
  const sub = new Redis(opt.redisUrl, { lazyConnect: false });
  await sub.subscribe(opt.redisChannel);
  sub.on('message', (_channel, message) => deliver(JSON.parse(message)));
  publishEvents = (events) => {
    if (events.length === 1) return pub.publish(opt.redisChannel, JSON.stringify(events[0]));
    const p = pub.pipeline();
    for (const ev of events) p.publish(opt.redisChannel, JSON.stringify(ev));
    return p.exec().then((results) => {
      for (const [err] of results) if (err) throw err;
    });
  };
} else {
  publishEvents = (events) => {
    for (const ev of events) deliver(ev);
    return Promise.resolve();
  };
}

// --- HTTP API ----------------------------------------------------------------------------------------

function answer(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

function fail(res, status, code, message) {
  answer(res, status, { error: code, message });
}

function toEvent(x, ts) {
  if (!x || typeof x !== 'object' || Array.isArray(x)) return null;
  if (typeof x.channel !== 'string' || !CHANNEL_RE.test(x.channel) || x.channel[0] === '$')
    return null;
  if (!('data' in x)) return null;
  if (x.event !== undefined && typeof x.event !== 'string') return null;
  const ev = { channel: x.channel, id: `${instance}-${++nextId}`, ts, data: x.data };
  if (x.event !== undefined) ev.event = x.event;
  return ev;
}

function onPublish(req, res) {
  if (!(req.headers['content-type'] || '').startsWith('application/json')) {
    fail(res, 415, 'unsupported_media_type', 'Content-Type must be application/json');
    req.resume();
    return;
  }
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size <= MAX_BODY) chunks.push(c);
  });
  req.on('end', () => {
    if (size > MAX_BODY) return fail(res, 413, 'too_large', 'body too large');
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString());
    } catch {
      return fail(res, 400, 'bad_request', 'not JSON');
    }
    const isBatch = Array.isArray(body);
    const list = isBatch ? body : [body];
    if (list.length === 0 || list.length > 1000)
      return fail(res, 400, 'bad_request', 'a batch holds 1 to 1000 events');
    const ts = Date.now();
    const events = [];
    for (const x of list) {
      const ev = toEvent(x, ts);
      if (!ev) return fail(res, 400, 'bad_request', 'an event needs a channel and data');
      events.push(ev);
    }
    publishEvents(events).then(
      () => answer(res, 202, isBatch ? { ids: events.map((e) => e.id) } : { id: events[0].id }),
      (err) => fail(res, 503, 'unavailable', String(err && err.message)),
    );
  });
}

const apiAddr = hostPort(opt.apiListen);
const api = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (path === '/publish' && req.method === 'POST') return onPublish(req, res);
  if ((path === '/health' || path === '/ready') && req.method === 'GET')
    return answer(res, 200, { status: 'ok' });
  req.resume();
  fail(res, 404, 'not_found', 'no such path');
});
api.keepAliveTimeout = 300000;
api.headersTimeout = 301000;

wsHttp.listen({ host: wsAddr.host, port: wsAddr.port, backlog: 4096 });
api.listen({ host: apiAddr.host, port: apiAddr.port, backlog: 4096 });
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
