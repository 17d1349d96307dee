// publisher.d.ts -- types of publisher.js, publishing to Herald from Node.js backends.

/// <reference types="node" />
import type { Agent } from 'node:http';

/**
 * What a publisher may send: channel name -> event name -> the type of its data. For example
 *
 *   interface Events {
 *     orders: { created: Order; paid: { order_id: string; amount: number } };
 *     signups: { created: Signup };
 *   }
 *   const pub = new Publisher<Events>('http://hub.internal:8081', { apiKey });
 *   await pub.publish('orders', 'paid', { order_id: 'ord_1', amount: 12.5 });
 *
 * Without one, any channel, any event name and any data are accepted.
 */
export type PublisherSchema = Record<string, Record<string, unknown>>;

/** What a schema must look like (interfaces welcome): each channel maps event names to types. */
export type SchemaShape<M> = { [C in keyof M]: object };

/** One event of a batch, typed by the schema. */
export type PublishItem<M extends SchemaShape<M> = PublisherSchema> = {
  [C in keyof M & string]: {
    [E in keyof M[C] & string]: {
      channel: C;
      /** the event's name; absent or null for none */
      event?: E | null;
      data: M[C][E];
    };
  }[keyof M[C] & string];
}[keyof M & string];

export interface PublishBackoff {
  /** the first wait's upper bound; default 200 */
  initialMs?: number;
  /** the cap of every wait's upper bound; default 5000 */
  maxMs?: number;
}

/** Timers for the waits between attempts and the deadline; tests pass fakes. */
export interface PublisherClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

export interface RetryInfo {
  /** the attempt that failed, 1 first */
  attempt: number;
  /** how long until the next one */
  delayMs: number;
  error: PublishError;
}

/** Per call; each overrides the publisher's option of the same name. */
export interface PublishOptions {
  /** 1 to 128 visible ASCII characters, the same on every retry; default a random UUID.
   *  Give your own (an order id and a step, say) to make a retry of your own safe too: the
   *  hub remembers a key for its --idempotency-ttl (300 s by default). */
  idempotencyKey?: string;
  /** cancels the publish (the request in flight, or the wait before the next one) */
  signal?: AbortSignal;
  /** how long one attempt may wait for its answer; default 10000 */
  timeoutMs?: number;
  /** requests at most, the first included; default 5 */
  maxAttempts?: number;
  /** the whole publish, retries and waits included; default 30000 */
  deadlineMs?: number;
  /** called before each wait for a retry (for your logs) */
  onRetry?: (info: RetryInfo) => void;
}

export interface PublisherOptions extends Omit<PublishOptions, 'idempotencyKey' | 'signal'> {
  /** sent as Authorization: Bearer KEY (the hub's --api-key) */
  apiKey?: string;
  backoff?: PublishBackoff;
  /** your own agent; default one of ours with keepAlive and maxSockets */
  agent?: Agent;
  /** connections our own agent keeps at most; default 16 */
  maxSockets?: number;
  userAgent?: string;
  clock?: Partial<PublisherClock>;
  /** a number in [0, 1); default Math.random */
  random?: () => number;
}

interface Published {
  /** true when the hub had taken this key already: the first answer's ids, not delivered again */
  duplicate: boolean;
  /** how many requests it took */
  attempts: number;
  /** the key the requests carried */
  idempotencyKey: string;
}

export interface PublishResult extends Published {
  /** the event's id, as subscribers see it */
  id: string;
}

export interface PublishBatchResult extends Published {
  /** the events' ids, in order */
  ids: string[];
}

export type PublishErrorCode =
  | 'bad_request' | 'unauthorized' | 'too_large' | 'unsupported_media_type' | 'not_found'
  | 'method_not_allowed' | 'rate_limited' | 'overloaded' | 'unavailable'
  /** raised by the publisher itself: */
  | 'timeout' | 'network' | 'bad_answer' | 'aborted'
  | (string & {});

/** A publish that did not succeed (after its retries, when it was worth retrying). */
export declare class PublishError extends Error {
  readonly name: 'PublishError';
  readonly code: PublishErrorCode;
  /** the HTTP status; 0 when there was no answer */
  readonly status: number;
  /** whether another attempt might have succeeded (it ran out of attempts or time) */
  readonly retryable: boolean;
  /** requests made */
  readonly attempts: number;
  /** the answer's Retry-After, in milliseconds, or null */
  readonly retryAfterMs: number | null;
  /** the answer's JSON, when it had one */
  readonly body?: unknown;
  readonly idempotencyKey?: string;
  constructor(code: PublishErrorCode, message: string, details?: object);
}

export declare class Publisher<M extends SchemaShape<M> = PublisherSchema> {
  /** url: the hub's API, http(s)://HOST:PORT (default http://127.0.0.1:8081); /publish is
   *  added when it has no path */
  constructor(url?: string | URL, options?: PublisherOptions);
  /** the endpoint requests go to */
  readonly url: string;
  /** one event; event null for one without a name */
  publish<C extends keyof M & string, E extends keyof M[C] & string>(
    channel: C, event: E | null, data: M[C][E], options?: PublishOptions): Promise<PublishResult>;
  /** several events in one request, taken or refused whole */
  publishBatch(events: readonly PublishItem<M>[], options?: PublishOptions):
    Promise<PublishBatchResult>;
  /** closes the idle keep-alive connections of the publisher's own agent */
  close(): void;
}

export declare function createPublisher<M extends SchemaShape<M> = PublisherSchema>(
  url?: string | URL, options?: PublisherOptions): Publisher<M>;

/** true for 1 to 128 visible ASCII characters */
export declare function isIdempotencyKey(key: unknown): key is string;
/** Retry-After (seconds or an HTTP date) in milliseconds from now, or null */
export declare function parseRetryAfter(value: string | undefined | null, now?: number): number | null;
/** the wait before retry `retry` (0 first): full jitter, or at least retryAfterMs */
export declare function retryDelay(retry: number, backoff?: PublishBackoff,
                                   retryAfterMs?: number | null, random?: () => number): number;

export default Publisher;
