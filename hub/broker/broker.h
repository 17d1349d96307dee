/* broker.h -- how published events reach every hub, numbered and kept: the interface the
 * in-process broker (memory.c) and the Redis broker (redis.c) implement. The broker gives each
 * event its seq in its channel (the same on every hub), keeps the newest events for resume and
 * last value, remembers idempotency keys, and hands every event back to deliver in one order.
 * Control thread only. */
#ifndef HERALD_BROKER_H
#define HERALD_BROKER_H

#include "history.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct event_base;
struct message;
struct pubrate;

/* An event came back from the broker for this hub's clients: numbered (epoch, seq) and
 * sealed. msg is borrowed: take a reference to keep it. Fires on the control thread, in the
 * broker's one order; within a channel, seq only grows (holes are the sequencer's to mend). */
typedef void broker_deliver_fn(struct message *msg, void *arg);

/* A publish finished. err is NULL when the broker took every event (answer 202), else a string
 * saying why not (answer 503), valid for the call. duplicate, when not NULL, is the answer
 * remembered for the publish's idempotency key: nothing was published this time (answer 202
 * with it) -- or, for a batch over Redis shards retried after a partial publish, the ids the
 * events went out with, the parts not taken before published now (broker/sharded.c). Fires
 * exactly once per accepted publish() call, on the control thread, never inside publish(). */
typedef void broker_done_fn(const char *err, const char *duplicate, void *arg);

/* A read: a channel's position (epoch, last seq) and some of its kept events. */
enum broker_read_mode {
    BROKER_READ_POSITION, /* no events */
    BROKER_READ_SINCE,    /* events with seq > since, oldest first, at most count (0: all) */
    BROKER_READ_LAST,     /* the newest count events, oldest first */
};
struct broker_read {
    enum broker_read_mode mode;
    const char *channel;
    size_t channel_len;
    uint64_t since;
    size_t count;
};
/* A read finished: err NULL and r filled (borrowed: take references to keep its messages), or
 * err saying why not. May fire inside read(). */
typedef void broker_read_fn(const char *err, struct history_result *r, void *arg);

/* An idempotent publish: the key (1..128 visible ASCII), who it belongs to (keys of different
 * API keys never meet), and the 202 body to remember for repeats. */
struct broker_idempotency {
    const char *key;
    const char *scope;
    const char *answer;
};

struct broker;

/* One Redis shard as /ready shows it. */
struct broker_shard {
    const char *name; /* redis://host:port/db, no credentials (common/shard.h) */
    bool is_ready;    /* takes publishes: links up, own heartbeat heard */
};

struct broker_ops {
    const char *name;
    /* Numbers msgs[0..n) (drafts: control/event.c) in order and hands them on, taking a
     * reference to each; with idem, only if its key is new within --idempotency-ttl. Returns 0
     * (done will fire), or -1 when it cannot even try (not connected): answer 503. */
    int (*publish)(struct broker *b, struct message *const *msgs, size_t n,
                   const struct broker_idempotency *idem, broker_done_fn *done, void *arg);
    /* Reads a channel's position and kept events. Returns 0 (cb fired or will fire), or -1
     * when it cannot (not connected). */
    int (*read)(struct broker *b, const struct broker_read *q, broker_read_fn *cb, void *arg);
    /* True while publishes can succeed and deliveries arrive (readiness). */
    bool (*is_ready)(const struct broker *b);
    /* Optional (NULL: the caller limits in-process): a publish limiter of per_sec requests per
     * identity shared by every hub on this broker (control/pubrate.h). It must be freed before
     * the broker. */
    struct pubrate *(*pubrate)(struct broker *b, unsigned per_sec);
    /* Drops pending work; done callbacks of pending publishes fire with an error first. */
    void (*free)(struct broker *b);
    /* Optional (NULL: one shard, 0): the shard a channel lives on (broker/sharded.c). */
    unsigned (*shard_of)(const struct broker *b, const char *channel, size_t len);
    /* Optional (NULL: no shards): fills out[0..cap) with each shard's state and returns how
     * many shards there are. */
    size_t (*shards)(const struct broker *b, struct broker_shard *out, size_t cap);
    /* Optional: why is_ready() is false, as a static string (NULL: no reason to give). */
    const char *(*not_ready_reason)(const struct broker *b);
};

struct broker {
    const struct broker_ops *ops;
    broker_deliver_fn *deliver;
    void *deliver_arg;
    /* Optional: called (with deliver_arg) after the broker lost its subscription on shard
     * `shard` (0 without shards) and has it again: events of that shard's channels may have been
     * missed in between, so the sequencer checks the ones it holds. */
    void (*resubscribed)(void *arg, unsigned shard);
};

static inline int broker_publish(struct broker *b, struct message *const *msgs, size_t n,
                                 const struct broker_idempotency *idem, broker_done_fn *done,
                                 void *arg)
{
    return b->ops->publish(b, msgs, n, idem, done, arg);
}
static inline int broker_read(struct broker *b, const struct broker_read *q, broker_read_fn *cb,
                              void *arg)
{
    return b->ops->read(b, q, cb, arg);
}
static inline bool broker_is_ready(const struct broker *b)
{
    return b->ops->is_ready(b);
}
static inline unsigned broker_shard_of(const struct broker *b, const char *channel, size_t len)
{
    return b->ops->shard_of ? b->ops->shard_of(b, channel, len) : 0;
}
static inline void broker_free(struct broker *b) /* NULL is a no-op */
{
    if (b)
        b->ops->free(b);
}

/* The in-process broker: one hub alone, numbering and keeping events in a history (cfg's
 * --history-* options) and idempotency keys for --idempotency-ttl. Deliveries happen on the
 * next loop turn, in publish order; a publish is done once its events are handed to deliver.
 * seed makes the epochs. */
struct broker *broker_memory_new(struct event_base *base, const struct config *cfg, uint64_t seed,
                                 broker_deliver_fn *deliver, void *arg);

/* The Redis broker (broker/redis.c) of --redis-url, on --redis-channel; --instance-id names
 * this hub's heartbeats. Returns NULL with err set when the URL is malformed or --resolv-conf
 * unreadable; an unreachable Redis is not an error (the broker retries; /ready says 503
 * meanwhile). cfg must outlive the broker. */
struct broker *broker_redis_new(struct event_base *base, const struct config *cfg,
                                broker_deliver_fn *deliver, void *arg, char *err, size_t errlen);

/* One Redis of several (--redis-url given more than once): which, and the list it belongs to. */
struct broker_redis_shard {
    const char *url;       /* its --redis-url entry */
    const char *name;      /* shard_name() of it, for logs and metrics */
    unsigned index, count; /* its place in the list (metrics.redis[index]); count 1: one Redis */
    uint64_t digest;       /* shard_list_digest() of the list: heartbeats carry it */
};
/* A Redis broker for one shard: as broker_redis_new, on shard->url, tagging its logs and
 * metrics with the shard, and with heartbeats (version 3, when count > 1) that let hubs given
 * different lists notice each other. Its resubscribed() gets shard->index. */
struct broker *broker_redis_new_shard(struct event_base *base, const struct config *cfg,
                                      const struct broker_redis_shard *shard,
                                      broker_deliver_fn *deliver, void *arg, char *err,
                                      size_t errlen);
/* What a Redis broker's readiness is made of: the sharded broker decides from every shard's. */
struct broker_redis_state {
    bool is_up;        /* both links up and our own heartbeat heard lately */
    bool has_twin;     /* an older hub with our --instance-id was heard lately */
    bool has_mismatch; /* a hub given another --redis-url list was heard lately */
};
void broker_redis_state(const struct broker *b, struct broker_redis_state *st);

/* The sharded broker (broker/sharded.c): one Redis broker per --redis-url entry (cfg has at
 * least two), each channel on the shard common/shard.h gives it. Same contract as above. */
struct broker *broker_sharded_new(struct event_base *base, const struct config *cfg,
                                  broker_deliver_fn *deliver, void *arg, char *err, size_t errlen);

#endif
