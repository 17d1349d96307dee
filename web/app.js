// app.js -- the Herald dashboard: connection state, channels, a live feed, events per second
// per channel, and the instance's $stats.
//
// Everything arrives through herald.js (the same client applications use), over one
// WebSocket to this page's own hub. No framework, no build step: DOM calls and one <canvas>.
// The page is served under a CSP without inline script or style, so elements are built with
// DOM calls (never innerHTML with data) and colours are set through CSS custom properties.
//
// Bursts: events are buffered and the feed is updated once per animation frame, keeping at
// most FEED_MAX rows; the chart is redrawn once a second from per-second counters.
//
// History: each channel is subscribed with `last` (FEED_LAST), so a fresh page shows the
// channel's newest events at once; herald.js resumes each channel after a reconnection. Events
// that come from history (seq up to the position the hub gave in `subscribed`) are placed in
// the feed by their time and drawn muted; the chart counts only live events, and those a
// resume replayed (at their own second), never `last`'s sample of the past. The feed marks
// where a channel resumed, could not, or lost events (a gap). The page never asks for
// max_rate: the chart counts every event of its channels.

import { Herald, isValidChannel } from './herald.js';

const FEED_MAX = 500;         /* rows kept in the feed, and events kept for re-filtering */
const FEED_LAST = 20;         /* events of its history each channel shows at once */
const WINDOW_S = 300;         /* the chart's span: 5 minutes of one-second buckets */
const STATS_STALE_MS = 3500;  /* $stats is sent once a second: older than this is stale */
const PREVIEW_CHARS = 160;
const PALETTE = ['#2f7ed8', '#e4572e', '#17a673', '#9b59b6', '#f0a202', '#00a6a6', '#d6336c',
                 '#6b8e23', '#8d6e63', '#5c6bc0'];

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

// --- formatting ------------------------------------------------------------------------------

const pad = (n, w = 2) => String(n).padStart(w, '0');

function clockTime(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function count(n) {
  if (n < 1e4) return String(Math.round(n));
  if (n < 1e6) return (n / 1e3).toFixed(n < 1e5 ? 1 : 0) + 'k';
  if (n < 1e9) return (n / 1e6).toFixed(n < 1e7 ? 2 : 1) + 'M';
  return (n / 1e9).toFixed(2) + 'G';
}

function rate(n) {
  if (n < 10) return n.toFixed(1);
  return count(n);
}

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(n < 10 && i ? 1 : 0)} ${units[i]}`;
}

function duration(s) {
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/* Pretty JSON as DOM: keys, strings, numbers and literals in their own spans. */
function jsonNodes(value) {
  const text = JSON.stringify(value, null, 2);
  const frag = document.createDocumentFragment();
  const token = /("(?:\\u[0-9a-fA-F]{4}|\\[^u]|[^\\"])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let last = 0;
  for (let m; (m = token.exec(text));) {
    if (m.index > last) frag.append(text.slice(last, m.index));
    const kind = m[1] ? (m[2] ? 'k' : 's') : m[3] ? 'l' : 'n';
    frag.append(el('span', `j-${kind}`, m[1] || m[0]));
    if (m[2]) frag.append(m[2]);
    last = token.lastIndex;
  }
  frag.append(text.slice(last));
  return frag;
}

// --- colours: one per channel, the same in chips, legend, feed and chart ---------------------

const colours = new Map();
function colourOf(channel) {
  let c = colours.get(channel);
  if (!c) {
    c = PALETTE[colours.size % PALETTE.length];
    colours.set(channel, c);
  }
  return c;
}

// --- the connection --------------------------------------------------------------------------

/* ?token=JWT in the page's address is handed on, for a hub started with --jwt-secret-file */
const pageToken = new URLSearchParams(location.search).get('token') || undefined;
const client = new Herald(new URL('ws', location.href), { token: pageToken });
const connPill = $('conn-state');
const connLabel = $('conn-label');
const connDetail = $('conn-detail');
const reconnectBtn = $('reconnect');
let retryAt = 0;
let retryTimer = null;

const STATE_LABELS = {
  connecting: 'connecting', open: 'connected', reconnecting: 'reconnecting',
  closed: 'disconnected', refused: 'refused',
};

function showRetry() {
  const left = retryAt - Date.now();
  if (client.state !== 'reconnecting') return;
  if (left > 0) {
    connDetail.textContent = `${connDetail.dataset.why} · retry in ${(left / 1000).toFixed(1)} s`;
  } else {
    connDetail.textContent = `${connDetail.dataset.why} · connecting…`;
    clearInterval(retryTimer);
    retryTimer = null;
  }
}

client.on('state', (state, info) => {
  connPill.dataset.state = state;
  connLabel.textContent = STATE_LABELS[state] || state;
  reconnectBtn.hidden = !(state === 'closed' || state === 'refused');
  clearInterval(retryTimer);
  retryTimer = null;
  document.body.classList.toggle('offline', state !== 'open');
  connPill.dataset.transport = state === 'open' ? info.transport : '';
  if (state === 'open') {
    /* SSE: a WebSocket could not be opened (a proxy that refuses upgrades) */
    connDetail.textContent = `${info.welcome.instance} · ${info.welcome.connection}` +
      (info.transport === 'sse' ? ' · SSE' : '');
  } else if (state === 'reconnecting') {
    const why = info.code === 1001 ? 'hub restarting' :
      info.code === 1013 ? 'too slow (1013)' : `link lost (${info.code})`;
    connDetail.dataset.why = why;
    retryAt = Date.now() + info.delayMs;
    showRetry();
    retryTimer = setInterval(showRetry, 100);
  } else if (state === 'refused') {
    connDetail.textContent = `${info.code} ${info.reason || ''}`.trim();
  } else {
    connDetail.textContent = '';
  }
  if (state !== 'open') {
    for (const chip of chips.values()) chip.li.classList.add('pending');
    statsGrid.classList.add('stale'); /* the numbers are from before the link went */
  }
});

/* channel -> {upTo, isCounted}: events with seq <= upTo come from history; isCounted when
 * they are a resume's replay (missed while away), which the chart counts at their time */
const replays = new Map();

client.on('subscribed', (channel, info) => {
  const chip = chips.get(channel);
  if (chip) chip.li.classList.remove('pending');
  if (info && Number.isInteger(info.seq))
    replays.set(channel, { upTo: info.seq, isCounted: info.recovered === true });
});

client.on('recovered', (r) => {
  replays.set(r.channel, { upTo: r.seq, isCounted: r.recovered });
  if (!chips.has(r.channel)) return;
  let text;
  if (r.recovered) {
    const n = r.seq - r.since.seq;
    text = n ? `resumed: ${count(n)} missed event${n === 1 ? '' : 's'} replayed` : 'resumed: nothing missed';
  } else if (r.reason === 'epoch') {
    text = 'could not resume: the hub restarted the channel\'s numbering, events may be missing';
  } else if (r.reason === 'reset') {
    text = 'the hub restarted the channel\'s numbering: events may be missing';
  } else {
    const from = (r.since ? r.since.seq : 0) + 1;
    text = `could not resume: events ${from}–${r.seq} are no longer in the hub's history`;
  }
  addMark(r.recovered ? 'ok' : 'warn', r.channel, text, { type: 'recovered', ...r });
});

client.on('gap', (g) => {
  if (!chips.has(g.channel)) return;
  const n = g.to - g.from + 1;
  addMark('warn', g.channel, `gap: event${n === 1 ? ` ${g.from}` : `s ${g.from}–${g.to}`} lost`, { type: 'gap', ...g });
});

client.on('error', (err) => {
  if (err.code === 'rate_limited') showSubError('The hub is rate-limiting this page: slow down.');
});

reconnectBtn.addEventListener('click', () => client.connect());

/* the connection panel: where, which connection, heartbeat, round trip, reconnections */
const RTT_EVERY_MS = 5000;
let reconnects = 0;
let hasOpened = false;
let rttTimer = null;
$('info-endpoint').textContent = new URL('ws', location.href).href.replace(/^http/, 'ws');

async function measureRtt() {
  try {
    const ms = await client.ping();
    $('info-rtt').textContent = `${ms} ms`;
  } catch {
    /* not connected: the state says so */
  }
}

client.on('open', (welcome) => {
  if (hasOpened) $('info-reconnects').textContent = String(++reconnects);
  hasOpened = true;
  $('info-connection').textContent = `${welcome.connection} on ${welcome.instance}`;
  $('info-heartbeat').textContent = welcome.heartbeat ? `${welcome.heartbeat} s` : 'off';
  clearInterval(rttTimer);
  measureRtt();
  rttTimer = setInterval(measureRtt, RTT_EVERY_MS);
});

client.on('close', () => {
  clearInterval(rttTimer);
  rttTimer = null;
  $('info-rtt').textContent = '–';
});

// --- channels: the form, the chips, the page URL ---------------------------------------------

const chips = new Map(); /* channel -> {li, unsubscribe} */
const chipList = $('chips');
const subError = $('sub-error');
const filterSelect = $('filter');

function showSubError(text) {
  subError.textContent = text;
  subError.hidden = !text;
}

function syncUrl() {
  const params = location.search.slice(1).split('&').filter((kv) => kv && !kv.startsWith('channels='));
  if (chips.size) params.push('channels=' + [...chips.keys()].join(','));
  const search = params.length ? '?' + params.join('&') : '';
  if (search !== location.search) history.replaceState(null, '', location.pathname + search + location.hash);
}

function syncFilterOptions() {
  const current = filterSelect.value;
  filterSelect.replaceChildren(new Option('all channels', ''));
  for (const name of chips.keys()) filterSelect.append(new Option(name, name));
  filterSelect.value = chips.has(current) ? current : '';
  if (filterSelect.value !== current) setFilter(filterSelect.value);
}

function syncChannelsUi() {
  $('chips-empty').hidden = chips.size > 0;
  chipList.hidden = chips.size === 0;
  syncFilterOptions();
  syncUrl();
  drawChart();
}

function addChannel(name) {
  if (chips.has(name)) return;
  const unsubscribe = client.subscribe(name, onEvent, { last: FEED_LAST });
  const li = el('li', 'chip pending');
  li.dataset.channel = name;
  li.style.setProperty('--c', colourOf(name));
  const remove = el('button', 'chip-x', '×');
  remove.type = 'button';
  remove.title = `Unsubscribe from ${name}`;
  remove.setAttribute('aria-label', `Unsubscribe from ${name}`);
  remove.addEventListener('click', () => removeChannel(name));
  li.append(el('span', 'swatch'), el('span', 'chip-name', name), remove);
  chipList.append(li);
  chips.set(name, { li, unsubscribe });
  if (client.isActive(name)) li.classList.remove('pending');
  unsubscribe.ready.then(() => li.classList.remove('pending'), (err) => {
    if (err.code === 'forbidden' || err.code === 'bad_request') {
      showSubError(`${name}: ${err.message}`);
      dropChip(name);
    }
  });
  chart.add(name);
  syncChannelsUi();
}

function dropChip(name) {
  const chip = chips.get(name);
  if (!chip) return;
  chips.delete(name);
  replays.delete(name);
  chip.li.remove();
  chart.remove(name);
  syncChannelsUi();
}

function removeChannel(name) {
  const chip = chips.get(name);
  if (!chip) return;
  chip.unsubscribe();
  dropChip(name);
}

$('sub-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('channel-input');
  const names = input.value.split(/[\s,]+/).filter(Boolean);
  const bad = names.filter((n) => !isValidChannel(n));
  if (bad.length) {
    showSubError(`"${bad[0]}" is not a channel name: use 1 to 128 of A-Z a-z 0-9 _ - . :`);
    return;
  }
  showSubError('');
  for (const n of names) addChannel(n);
  input.value = '';
  input.focus();
});

// --- the feed -------------------------------------------------------------------------------

const feedList = $('feed');
const feedCount = $('feed-count');
const pauseBtn = $('pause');
const recent = [];          /* the newest FEED_MAX items (events and marks), oldest first,
                               whatever the filter */
let toRender = [];          /* items waiting for the next frame */
let isRenderQueued = false;
let isFullRenderDue = false; /* an item went into `recent` out of order: redraw it all */
let isPaused = false;
let newWhilePaused = 0;
let filter = '';
const rowEvent = new WeakMap();
const pastEvents = new WeakSet(); /* events that came from the hub's history */
const marks = new WeakMap();      /* a mark -> {kind, text} */
let selectedRow = null;

function queueRender() {
  if (!isRenderQueued) {
    isRenderQueued = true;
    requestAnimationFrame(renderQueued);
  }
}

/* Keeps recent within FEED_MAX, dropping the oldest. */
function trimRecent() {
  if (recent.length > FEED_MAX) recent.splice(0, recent.length - FEED_MAX);
}

function onEvent(ev) {
  const replay = replays.get(ev.channel);
  if (replay && Number.isInteger(ev.seq) && ev.seq <= replay.upTo) {
    onPastEvent(ev, replay.isCounted);
    return;
  }
  chart.count(ev.channel);
  recent.push(ev);
  trimRecent();
  if (isPaused) {
    newWhilePaused++;
    pauseBtn.textContent = `Resume (${count(newWhilePaused)} new)`;
    return;
  }
  if (filter && ev.channel !== filter) return;
  toRender.push(ev);
  if (toRender.length > FEED_MAX) toRender.splice(0, toRender.length - FEED_MAX);
  queueRender();
}

/* An event from history: in the feed at its time, muted; in the chart only when a resume
 * replayed it (at its own second: it happened while the page was away). */
function onPastEvent(ev, isCounted) {
  pastEvents.add(ev);
  if (isCounted) chart.countAt(ev.channel, ev.ts);
  let i = recent.length;
  while (i > 0 && recent[i - 1].ts > ev.ts) i--;
  recent.splice(i, 0, ev);
  trimRecent();
  if (isPaused) return;
  isFullRenderDue = true;
  queueRender();
}

/* A line in the feed about a channel rather than an event: a resume, a failed one, a gap. */
function addMark(kind, channel, text, detail) {
  const item = { ...detail, channel, ts: Date.now() };
  marks.set(item, { kind, text });
  recent.push(item);
  trimRecent();
  if (isPaused || (filter && channel !== filter)) return;
  toRender.push(item);
  queueRender();
}

function row(ev) {
  const mark = marks.get(ev);
  const li = el('li', mark ? `ev mark mark-${mark.kind}` : pastEvents.has(ev) ? 'ev past' : 'ev');
  li.tabIndex = 0;
  li.style.setProperty('--c', colourOf(ev.channel));
  const time = el('time', 'ev-time', clockTime(ev.ts));
  time.dateTime = new Date(ev.ts).toISOString();
  if (mark) {
    li.append(time, el('span', 'ev-ch', ev.channel), el('span', 'mark-text', mark.text));
    li.dataset.mark = ev.type;
  } else {
    let preview = JSON.stringify(ev.data);
    if (preview === undefined) preview = '';
    if (preview.length > PREVIEW_CHARS) preview = preview.slice(0, PREVIEW_CHARS) + '…';
    li.append(time, el('span', 'ev-ch', ev.channel), el('span', 'ev-name', ev.event ?? ''),
              el('code', 'ev-data', preview));
    if (pastEvents.has(ev)) li.title = `from the hub's history (seq ${ev.seq})`;
  }
  rowEvent.set(li, ev);
  return li;
}

function renderQueued() {
  isRenderQueued = false;
  if (isFullRenderDue) {
    isFullRenderDue = false;
    renderAll();
    return;
  }
  const batch = toRender;
  toRender = [];
  if (!batch.length) return;
  const frag = document.createDocumentFragment();
  for (let i = batch.length - 1; i >= 0; i--) frag.append(row(batch[i]));
  feedList.prepend(frag);
  while (feedList.childElementCount > FEED_MAX) feedList.lastElementChild.remove();
  feedChanged();
}

function renderAll() {
  toRender = [];
  const frag = document.createDocumentFragment();
  for (let i = recent.length - 1; i >= 0 && frag.childNodes.length < FEED_MAX; i--)
    if (!filter || recent[i].channel === filter) frag.append(row(recent[i]));
  feedList.replaceChildren(frag);
  selectedRow = null;
  feedChanged();
}

function feedChanged() {
  $('feed-empty').hidden = feedList.childElementCount > 0;
  feedCount.textContent = `${feedList.childElementCount} shown`;
}

function setFilter(value) {
  filter = value;
  renderAll();
}

filterSelect.addEventListener('change', () => setFilter(filterSelect.value));

pauseBtn.addEventListener('click', () => {
  isPaused = !isPaused;
  pauseBtn.setAttribute('aria-pressed', String(isPaused));
  pauseBtn.classList.toggle('active', isPaused);
  document.querySelector('.feed').classList.toggle('paused', isPaused);
  if (isPaused) {
    newWhilePaused = 0;
    pauseBtn.textContent = 'Resume';
  } else {
    pauseBtn.textContent = 'Pause';
    renderAll();
  }
});

$('clear').addEventListener('click', () => {
  recent.length = 0;
  newWhilePaused = 0;
  if (isPaused) pauseBtn.textContent = 'Resume';
  renderAll();
});

// --- the inspector ---------------------------------------------------------------------------

const inspector = $('inspector');

function inspect(li) {
  const ev = rowEvent.get(li);
  if (!ev) return;
  if (selectedRow) selectedRow.classList.remove('selected');
  selectedRow = li;
  li.classList.add('selected');
  $('inspector-meta').textContent = `${ev.channel} · ${clockTime(ev.ts)}`;
  $('inspector-json').replaceChildren(jsonNodes(ev));
  inspector.classList.add('open');
  document.body.classList.add('inspecting');
}

feedList.addEventListener('click', (e) => {
  const li = e.target.closest('li.ev');
  if (li) inspect(li);
});
feedList.addEventListener('keydown', (e) => {
  if (e.key !== 'Enter' && e.key !== ' ') return;
  const li = e.target.closest('li.ev');
  if (li) { e.preventDefault(); inspect(li); }
});
$('inspector-close').addEventListener('click', () => {
  inspector.classList.remove('open');
  document.body.classList.remove('inspecting');
  if (selectedRow) selectedRow.classList.remove('selected');
  selectedRow = null;
  $('inspector-meta').textContent = '';
  $('inspector-json').textContent = 'Click an event in the feed to see its JSON here.';
});
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && inspector.classList.contains('open')) $('inspector-close').click();
});

// --- the chart: events per second per channel, drawn on a canvas ----------------------------

const chart = (() => {
  const canvas = $('chart');
  const box = $('chart-box');
  const legend = $('legend');
  const ctx = canvas.getContext('2d');
  /* one bucket per second: the WINDOW_S complete seconds drawn, and the one being counted */
  const RING = WINDOW_S + 1;
  const slot = (sec) => ((sec % RING) + RING) % RING;
  const series = new Map(); /* channel -> {counts: Uint32Array(RING), total, legend elements} */
  let head = Math.floor(Date.now() / 1000); /* the second the newest bucket counts */

  function advance(sec) {
    if (sec <= head) return;
    const steps = Math.min(sec - head, RING);
    for (const s of series.values())
      for (let k = 1; k <= steps; k++) s.counts[slot(head + k)] = 0;
    head = sec;
  }

  function niceStep(max, ticks) {
    const raw = max / ticks;
    const mag = 10 ** Math.floor(Math.log10(raw));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
    return 10 * mag;
  }

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function draw() {
    advance(Math.floor(Date.now() / 1000));
    const dpr = window.devicePixelRatio || 1;
    const w = box.clientWidth;
    const h = box.clientHeight;
    if (!w || !h) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);

    /* the last WINDOW_S complete seconds: head - WINDOW_S .. head - 1 */
    let max = 0;
    for (const s of series.values())
      for (let i = 1; i <= WINDOW_S; i++) max = Math.max(max, s.counts[slot(head - i)]);
    const ticks = h < 160 ? 3 : 4;
    const step = niceStep(Math.max(max, 4), ticks);
    const top = step * Math.ceil(Math.max(max, 4) / step);

    ctx.font = `11px ${css('--mono') || 'monospace'}`;
    const labelW = Math.max(ctx.measureText(count(top)).width, ctx.measureText('0').width) + 8;
    const pad = { l: labelW, r: 8, t: 8, b: 20 };
    const pw = w - pad.l - pad.r;
    const ph = h - pad.t - pad.b;
    const x = (i) => pad.l + (pw * i) / (WINDOW_S - 1); /* i: 0 oldest .. WINDOW_S-1 newest */
    const y = (v) => pad.t + ph - (ph * v) / top;

    ctx.lineWidth = 1;
    ctx.strokeStyle = css('--grid');
    ctx.fillStyle = css('--muted');
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'right';
    for (let v = 0; v <= top + step / 2; v += step) {
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.l, yy);
      ctx.lineTo(w - pad.r, yy);
      ctx.stroke();
      ctx.fillText(count(v), pad.l - 6, yy);
    }
    ctx.textBaseline = 'alphabetic';
    const minuteEvery = pw < 260 ? 2 : 1;
    for (let m = 0; m <= 5; m += 1) {
      const xx = Math.round(x(WINDOW_S - 1 - m * 60)) + 0.5;
      if (m % minuteEvery === 0) {
        ctx.textAlign = m === 0 ? 'right' : m === 5 ? 'left' : 'center';
        ctx.fillText(m === 0 ? 'now' : `-${m}m`, xx, h - 5);
      }
      if (m > 0 && m < 5) {
        ctx.beginPath();
        ctx.moveTo(xx, pad.t);
        ctx.lineTo(xx, pad.t + ph);
        ctx.stroke();
      }
    }

    ctx.lineJoin = 'round';
    ctx.lineWidth = 1.6;
    for (const [name, s] of series) {
      const colour = colourOf(name);
      ctx.beginPath();
      for (let i = 0; i < WINDOW_S; i++) {
        const v = s.counts[slot(head - WINDOW_S + i)];
        if (i === 0) ctx.moveTo(x(i), y(v));
        else ctx.lineTo(x(i), y(v));
      }
      ctx.strokeStyle = colour;
      ctx.stroke();
      ctx.lineTo(x(WINDOW_S - 1), y(0));
      ctx.lineTo(x(0), y(0));
      ctx.closePath();
      ctx.globalAlpha = 0.08;
      ctx.fillStyle = colour;
      ctx.fill();
      ctx.globalAlpha = 1;
      const last = s.counts[slot(head - 1)];
      s.legendRate.textContent = `${count(last)}/s`;
      s.legendTotal.textContent = `${count(s.total)} total`;
    }
    if (!series.size) {
      ctx.textAlign = 'center';
      ctx.fillStyle = css('--muted');
      ctx.fillText('subscribe to a channel to chart it', pad.l + pw / 2, pad.t + ph / 2);
    }
    canvas.dataset.max = String(max); /* for tests and the curious */
    canvas.dataset.plot = [pad.l, pad.t, pw, ph].map(Math.round).join(',');
  }

  function add(name) {
    if (series.has(name)) return;
    const li = el('li', 'legend-item');
    li.style.setProperty('--c', colourOf(name));
    const legendRate = el('span', 'legend-rate', '0/s');
    const legendTotal = el('span', 'legend-total', '');
    li.append(el('span', 'swatch'), el('span', 'legend-name', name), legendRate, legendTotal);
    legend.append(li);
    series.set(name, { counts: new Uint32Array(RING), total: 0, li, legendRate, legendTotal });
  }

  function remove(name) {
    const s = series.get(name);
    if (!s) return;
    s.li.remove();
    series.delete(name);
  }

  function countEvent(name) {
    const s = series.get(name);
    if (!s) return;
    advance(Math.floor(Date.now() / 1000));
    s.counts[slot(head)]++;
    s.total++;
  }

  /* An event that happened at ms (the hub's clock), counted in its own second when that is
   * still in the window (and not ahead of ours). */
  function countEventAt(name, ms) {
    const s = series.get(name);
    if (!s) return;
    advance(Math.floor(Date.now() / 1000));
    const sec = Math.min(Math.floor(ms / 1000), head);
    s.total++;
    if (sec > head - RING) s.counts[slot(sec)]++;
  }

  new ResizeObserver(() => draw()).observe(box);
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => draw());
  return { draw, add, remove, count: countEvent, countAt: countEventAt };
})();

function drawChart() { chart.draw(); }

/* redraw at each second boundary, so the newest complete second shows at once */
function tick() {
  chart.draw();
  checkStale();
  setTimeout(tick, 1000 - (Date.now() % 1000) + 5);
}

// --- $stats -----------------------------------------------------------------------------------

let prevStats = null;
let statsAt = 0;
const statsGrid = $('stats');

function onStats(ev) {
  const s = ev.data;
  if (!s || typeof s !== 'object') return;
  statsAt = Date.now();
  statsGrid.classList.remove('stale');
  let inRate = null;
  let outRate = null;
  let dropRate = null;
  if (prevStats && prevStats.instance === s.instance && s.ts > prevStats.ts) {
    const dt = (s.ts - prevStats.ts) / 1000;
    inRate = Math.max(0, s.events_received - prevStats.events_received) / dt;
    outRate = Math.max(0, s.events_delivered - prevStats.events_delivered) / dt;
    dropRate = Math.max(0, s.events_dropped - prevStats.events_dropped) / dt;
  }
  prevStats = s;
  const shards = Array.isArray(s.shards) &&
    `${s.shards.filter((x) => x.ready).length}/${s.shards.length} shards up`;
  $('stat-instance').textContent = [s.instance, s.broker && `${s.broker} broker`, shards,
    s.draining && 'draining'].filter(Boolean).join(' · ');
  $('stat-connections').textContent = count(s.connections);
  $('stat-subscriptions').textContent = `${count(s.subscriptions)} subscriptions`;
  $('stat-channels').textContent = count(s.channels);
  $('stat-in').textContent = inRate === null ? '–' : `${rate(inRate)}/s`;
  $('stat-in-total').textContent = `${count(s.events_received)} received · ${count(s.events_published)} published`;
  $('stat-out').textContent = outRate === null ? '–' : `${rate(outRate)}/s`;
  $('stat-out-total').textContent = `${count(s.events_delivered)} delivered`;
  $('stat-dropped').textContent = count(s.events_dropped);
  const reasons = Object.entries(s.dropped || {}).filter(([, n]) => n > 0)
    .map(([why, n]) => `${why.replace(/_/g, ' ')} ${count(n)}`);
  $('stat-dropped-detail').textContent = reasons.length ? reasons.join(' · ') :
    dropRate ? `${rate(dropRate)}/s` : 'none';
  $('stat-dropped').closest('.stat').classList.toggle('warn', s.events_dropped > 0);
  $('stat-memory').textContent = bytes(s.memory_bytes);
  $('stat-uptime').textContent = `up ${duration(s.uptime_s)}`;
}

function checkStale() {
  if (statsAt && Date.now() - statsAt > STATS_STALE_MS) statsGrid.classList.add('stale');
}

// --- start ------------------------------------------------------------------------------------

client.subscribe('$stats', onStats).ready.catch((err) => {
  if (err.code === 'forbidden' || err.code === 'bad_request')
    $('stat-instance').textContent = `no $stats: ${err.message}`;
});
const fromUrl = new URLSearchParams(location.search).get('channels');
if (fromUrl) {
  const names = fromUrl.split(',').map((n) => n.trim()).filter(Boolean);
  const bad = names.filter((n) => !isValidChannel(n));
  if (bad.length) showSubError(`Ignored from the address: ${bad.join(', ')} (not channel names)`);
  for (const n of names) if (isValidChannel(n)) addChannel(n);
}
syncChannelsUi();
client.connect();
tick();
