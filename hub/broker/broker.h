/* broker.h -- how published events reach every hub: the interface the in-process broker
 * implements now and the Redis broker implements for a cluster. Control thread only. */
#ifndef HERALD_BROKER_H
#define HERALD_BROKER_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct event_base;
struct message;
struct pubrate;

/* An event came back from the broker for this hub's clients. msg is borrowed: take a
 * reference to keep it. Fires on the control thread, in the broker's one order. */
typedef void broker_deliver_fn(struct message *msg, void *arg);
/* A publish finished: err is NULL when the broker took every event (answer 202), else a
 * static string saying why not (answer 503). Fires exactly once per accepted publish() call,
 * on the control thread, never from inside publish() itself. */
typedef void broker_done_fn(const char *err, void *arg);

struct broker;

struct broker_ops {
    const char *name;
    /* Hands msgs[0..n) on, in order. Takes a reference to each. Returns 0 (done will fire),
     * or -1 when it cannot even try (not connected): done will not fire; answer 503. */
    int (*publish)(struct broker *b, struct message *const *msgs, size_t n, broker_done_fn *done,
                   void *arg);
    /* True while publishes can succeed and deliveries arrive (readiness). */
    bool (*is_ready)(const struct broker *b);
    /* Optional (NULL: the caller limits in-process): a publish limiter of per_sec requests per
     * identity shared by every hub on this broker (control/pubrate.h). It must be freed before
     * the broker. */
    struct pubrate *(*pubrate)(struct broker *b, unsigned per_sec);
    /* Drops pending work; done callbacks of pending publishes fire with an error first. */
    void (*free)(struct broker *b);
};

struct broker {
    const struct broker_ops *ops;
    broker_deliver_fn *deliver;
    void *deliver_arg;
};

static inline int broker_publish(struct broker *b, struct message *const *msgs, size_t n,
                                 broker_done_fn *done, void *arg)
{
    return b->ops->publish(b, msgs, n, done, arg);
}
static inline bool broker_is_ready(const struct broker *b)
{
    return b->ops->is_ready(b);
}
static inline void broker_free(struct broker *b) /* NULL is a no-op */
{
    if (b)
        b->ops->free(b);
}

/* The in-process broker: one hub alone. Deliveries happen on the next loop turn, in publish
 * order; a publish is done once its events are handed to deliver. */
struct broker *broker_memory_new(struct event_base *base, broker_deliver_fn *deliver, void *arg);

/* The Redis broker (broker/redis.c) of --redis-url, on --redis-channel; --instance-id names
 * this hub's heartbeats. Returns NULL with err set when the URL is malformed or --resolv-conf
 * unreadable; an unreachable Redis is not an error (the broker retries; /ready says 503
 * meanwhile). cfg must outlive the broker. */
struct broker *broker_redis_new(struct event_base *base, const struct config *cfg,
                                broker_deliver_fn *deliver, void *arg, char *err, size_t errlen);

#endif
