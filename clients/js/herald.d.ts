// herald.d.ts -- types of herald.js, the Herald client for browsers and Node.js.

/** Where the connection is. */
export type HeraldState = 'connecting' | 'open' | 'reconnecting' | 'closed' | 'refused';

export declare const STATES: readonly HeraldState[];

/** The first frame of every connection. */
export interface HeraldWelcome {
  type: 'welcome';
  /** the connection's id on the hub, e.g. "c-12" */
  connection: string;
  /** the hub instance that holds the connection */
  instance: string;
  /** the hub's ping interval in seconds; the client pings at this interval too */
  heartbeat: number;
}

/** One event as the hub delivers it. */
export interface HeraldEvent<T = unknown> {
  type: 'event';
  channel: string;
  /** absent when the publisher gave none */
  event?: string;
  /** unique per channel */
  id: string;
  /** the event's place in its channel: 1, 2, 3, ... with no holes within one epoch (a
   *  subscription with maxRate skips some: the seq shows how many) */
  seq: number;
  /** the hub's publish time, Unix milliseconds */
  ts: number;
  data: T;
}

/** A place in a channel's numbering: every event up to `seq` of `epoch` was seen. */
export interface HeraldPosition {
  /** names one run of the channel's numbering (1 to 24 letters and digits); a new one when the
   *  numbering restarts */
  epoch: string;
  seq: number;
}

/** What the hub said when it acknowledged a channel. */
export interface HeraldSubscribedInfo {
  /** null from a hub without sequence numbers */
  epoch: string | null;
  /** the channel's position: the next live event is seq + 1. With `last`, events with
   *  seq <= this one that follow at once are from history. */
  seq: number | null;
  /** present when the subscribe resumed (carried `since`) */
  recovered?: boolean;
}

/** Why a resume did or did not recover:
 *  - 'resumed': every missed event follows, in order, before live ones;
 *  - 'epoch': the channel's numbering restarted (a hub restart, Redis lost its keys);
 *  - 'expired': the hub's history no longer holds the missed events;
 *  - 'reset': while subscribed, the hub restarted the channel's numbering. */
export type HeraldRecoveryReason = 'resumed' | 'epoch' | 'expired' | 'reset';

/** A 'recovered' listener's argument: after a reconnection (or a subscribe with `since`, or a
 *  reset), whether the events missed meanwhile were recovered. When `recovered` is false, some
 *  events were missed: refetch the channel's state (GET /history, or your own API). */
export interface HeraldRecovery {
  channel: string;
  recovered: boolean;
  /** the channel's epoch and position now */
  epoch: string;
  seq: number;
  /** where the client was before ('reset' from a client without a position: null) */
  since: HeraldPosition | null;
  reason: HeraldRecoveryReason;
}

/** A 'gap' listener's argument: events from..to (inclusive) of the channel will never come. */
export interface HeraldGap {
  channel: string;
  from: number;
  to: number;
}

/** subscribe()'s options; they apply when the call creates the channel's subscription (later
 *  handlers of the same channel share it as it is). */
export interface HeraldSubscribeOptions {
  /** the hub sends the N newest events it keeps (0 to 1000; fewer when it keeps fewer) right after
   *  `subscribed`, so the current state shows at once; also sent with each resume, for the
   *  hub to use when it cannot resume */
  last?: number;
  /** at most this many events a second per event name, 1 to 1000: when more come, the hub
   *  skips the older unsent one (the newest wins; the last of a burst always arrives) */
  maxRate?: number;
  /** resume from a stored position (see Herald.position()) instead of starting live */
  since?: HeraldPosition | null;
}

/** The snapshot carried by the `$stats` channel once a second (and GET /stats). */
export interface HeraldStats {
  instance: string;
  broker?: string;
  ts?: number;
  uptime_s: number;
  ready?: boolean;
  draining?: boolean;
  connections: number;
  subscriptions: number;
  channels: number;
  events_published: number;
  events_received: number;
  events_delivered: number;
  events_dropped: number;
  dropped: Record<string, number>;
  mailbox_depth?: number;
  memory_bytes: number;
  /** with several Redis shards (--redis-url given more than once): each one's state */
  shards?: HeraldShardStats[];
}

/** One Redis shard in HeraldStats. */
export interface HeraldShardStats {
  shard: number;
  /** redis://host:port/db, without credentials */
  url: string;
  /** takes publishes: both links up, the hub's own heartbeat heard */
  ready: boolean;
  connected: boolean;
  /** a hub given another --redis-url list was heard on it lately */
  list_mismatch: boolean;
  reconnects: number;
  publish_errors: number;
  skipped_payloads: number;
  heartbeat_lag_ms: number;
}

export type HeraldErrorCode =
  | 'bad_request' | 'forbidden' | 'rate_limited' | 'too_large' | 'not_found'
  /** raised by the client itself: */
  | 'disconnected' | 'timeout' | 'closed' | 'refused' | 'unsubscribed' | 'connect' | 'token'
  | 'transport'
  | (string & {});

/** An error frame from the hub (code as in SPEC.md), or a request the client gave up on. */
export declare class HeraldError extends Error {
  readonly name: 'HeraldError';
  readonly code: HeraldErrorCode;
  /** the channel the failed request was about, when there was one */
  channel?: string;
  /** the ref of the failed request, when the hub echoed one */
  ref?: number;
  /** for code 'refused': the hub's close code */
  closeCode?: number;
  constructor(code: HeraldErrorCode, message: string, details?: object);
}

/** What a 'state' listener gets besides the state. */
export interface HeraldStateInfo {
  /** the close code that caused the change (1006 when the link died or never opened) */
  code?: number;
  reason?: string;
  /** 'reconnecting': how long until the next attempt */
  delayMs?: number;
  /** 'reconnecting': how many backoff delays have been drawn since the link was last stable */
  attempt?: number;
  /** 'open': the hub's welcome */
  welcome?: HeraldWelcome;
  /** 'open': the link's transport ('sse' when a WebSocket could not be opened) */
  transport?: HeraldTransport;
}

export type HeraldTransport = 'websocket' | 'sse';

/** The EventSource API the client needs: the browser's, or Node's. */
export interface EventSourceLike {
  readonly readyState: number;
  onmessage: ((ev: { data: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  close(): void;
}

export interface HeraldBackoff {
  /** the first delay's upper bound; default 500 */
  initialMs?: number;
  /** the cap of every delay's upper bound; default 10000 */
  maxMs?: number;
  /** a connection open this long resets the backoff; default 5000 */
  resetAfterMs?: number;
}

/** The timer functions the client uses; tests pass fakes. */
export interface HeraldClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

/** The WebSocket API the client needs: the browser's, or the `ws` package's. */
export interface WebSocketLike {
  readonly readyState: number;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface HeraldOptions {
  /** an HS256 connection token (sent as ?token=), or a function that returns one for each
   *  connection attempt (so a refreshed token is used after a reconnect) */
  token?: string | (() => string | Promise<string>);
  /** channels to hold from the first connection on (without handlers: see on('event')) */
  channels?: string[];
  /** the WebSocket constructor; default globalThis.WebSocket (browsers, Node 22+) */
  WebSocket?: WebSocketConstructor | (new (url: string) => unknown);
  /** the EventSource constructor for the SSE fallback; default globalThis.EventSource */
  EventSource?: (new (url: string) => EventSourceLike) | (new (url: string) => unknown);
  /** 'auto' (default): WebSocket, and SSE when a WebSocket fails before the hub's welcome;
   *  'websocket': never SSE; 'sse': never a WebSocket */
  transport?: 'auto' | HeraldTransport;
  /** the hub's /sse; default: the WebSocket URL with its final /ws made /sse */
  sseUrl?: string | URL;
  /** on an SSE link 'auto' fell back to: a WebSocket is tried in the background after this
   *  long, then twice as long each time (at most 5 min), and the client moves to it once one
   *  reaches the hub's welcome; default 30000, 0: never */
  upgradeProbeMs?: number;
  backoff?: HeraldBackoff;
  /** the hub's frame rate limit (--client-rate, --client-burst), which the client keeps to
   *  when it sends many subscribes at once; default {perSec: 10, burst: 20}. Halved each time
   *  the hub answers rate_limited anyway. */
  frameRate?: { perSec?: number; burst?: number };
  /** slack over 2 x heartbeat before a silent link counts as dead; default 2000 */
  heartbeatGraceMs?: number;
  /** how long a connection attempt may take to reach the welcome; default 10000 */
  connectTimeoutMs?: number;
  /** how long a subscribe, unsubscribe or ping waits for its reply; default 10000 */
  requestTimeoutMs?: number;
  /** default: Date.now and the global timers */
  clock?: Partial<HeraldClock>;
  /** a number in [0, 1); default Math.random */
  random?: () => number;
}

export interface HeraldEventMap {
  state: [state: HeraldState, info: HeraldStateInfo];
  open: [welcome: HeraldWelcome];
  close: [info: { code: number; reason: string }];
  event: [event: HeraldEvent];
  subscribed: [channel: string, info: HeraldSubscribedInfo];
  unsubscribed: [channel: string];
  /** a resume (or reset) ended: recovered or not */
  recovered: [recovery: HeraldRecovery];
  /** events the hub could not get back */
  gap: [gap: HeraldGap];
  error: [error: HeraldError];
}

/** What subscribe() returns: call it to remove the handler. */
export interface Unsubscribe {
  (): void;
  readonly channel: string;
  /** resolves when the hub acknowledges the channel; rejects with a HeraldError when it
   *  refuses it (forbidden, bad_request) or the handler is removed first */
  readonly ready: Promise<void>;
}

export declare class Herald {
  /** url: ws:// or wss:// (http(s) is turned into ws(s); a path is resolved against the
   *  page in a browser). Nothing happens until connect(). */
  constructor(url: string | URL, options?: HeraldOptions);
  readonly state: HeraldState;
  /** the open link's transport, or null when not open */
  readonly transport: HeraldTransport | null;
  /** the current connection's welcome, or null when not open */
  readonly welcome: HeraldWelcome | null;
  /** the channels held (or to be held once connected) */
  readonly channels: string[];
  /** true when the hub has acknowledged the channel on the current connection */
  isActive(channel: string): boolean;
  /** where the client is in the channel's numbering (what a reconnection resumes from), or
   *  null before the hub's first answer; store it to resume after a reload (options.since) */
  position(channel: string): HeraldPosition | null;
  /** opens the connection; again after close() or a refusal. Returns this. */
  connect(): this;
  /** resolves with the welcome once open; rejects when refused or closed first */
  opened(): Promise<HeraldWelcome>;
  /** closes with 1000; no retry until connect(). Subscriptions are kept. */
  close(): void;
  subscribe<T = unknown>(channel: string, handler?: ((event: HeraldEvent<T>) => void) | null,
                         options?: HeraldSubscribeOptions): Unsubscribe;
  /** round trip of a ping frame, in milliseconds */
  ping(): Promise<number>;
  on<K extends keyof HeraldEventMap>(type: K, listener: (...args: HeraldEventMap[K]) => void):
    () => void;
}

/** true for a channel name the hub accepts */
export declare function isValidChannel(name: string): boolean;
/** random(0, min(maxMs, initialMs * 2^attempt)), whole milliseconds */
export declare function backoffDelay(attempt: number, backoff?: HeraldBackoff,
                                     random?: () => number): number;
/** true for close codes that mean "do not retry blindly": 1008 and 4000-4999 */
export declare function isRefusal(code: number): boolean;
/** true for a position subscribe() may resume from */
export declare function isPosition(p: unknown): p is HeraldPosition;

export default Herald;
