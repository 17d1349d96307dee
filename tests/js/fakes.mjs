// fakes.mjs -- a fake clock and a fake WebSocket for herald.js's unit tests: time moves only
// when a test advances it, and the test plays the hub's side of each socket.

import { Herald } from '../../clients/js/herald.js';

/** Timers that run only when the test advances time. */
export class FakeClock {
  t = 1_000_000;
  #timers = new Map();
  #next = 1;
  now = () => this.t;
  setTimeout = (fn, ms) => {
    const id = this.#next++;
    this.#timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  };
  clearTimeout = (id) => { this.#timers.delete(id); };
  get pending() { return this.#timers.size; }
  /** Moves time forward by ms, running each timer that falls due, in order. */
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let best = null;
      for (const [id, tm] of this.#timers)
        if (tm.at <= end && (!best || tm.at < best[1].at)) best = [id, tm];
      if (!best) break;
      this.#timers.delete(best[0]);
      this.t = Math.max(this.t, best[1].at);
      best[1].fn();
    }
    this.t = end;
  }
}

/** A WebSocket whose "server side" the test plays. */
export class FakeWS {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    FakeWS.all.push(this);
  }
  send(text) { this.sent.push(JSON.parse(text)); }
  close(code, reason) { this.readyState = 3; this.closedWith = { code, reason }; }
  // server side
  accept(welcome = {}) {
    this.readyState = 1;
    this.recv({ type: 'welcome', connection: `c-${FakeWS.all.length}`, instance: 'fake', heartbeat: 25, ...welcome });
  }
  recv(obj) { this.onmessage?.({ data: JSON.stringify(obj) }); }
  drop(code = 1006, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  static get last() { return FakeWS.all[FakeWS.all.length - 1]; }
  static reset() { FakeWS.all = []; }
}

export function fakeClient(options = {}) {
  FakeWS.reset();
  const clock = new FakeClock();
  const states = [];
  const h = new Herald('ws://hub.test/ws', { WebSocket: FakeWS, clock, random: () => 0.5, ...options });
  h.on('state', (s, info) => states.push({ s, ...info }));
  return { h, clock, states };
}

export const flush = () => new Promise((r) => setImmediate(r));
