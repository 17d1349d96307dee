/* pubrate.h -- --publish-rate: how many publish requests one identity (an API key, or the
 * client's address without keys) may make per second. Two implementations behind one small
 * interface: a token bucket per identity in this process (pubrate_local_new), and a count per
 * one-second window in Redis that every hub shares (broker/redis.c). Control thread only. */
#ifndef HERALD_PUBRATE_H
#define HERALD_PUBRATE_H

enum pubrate_verdict {
    PUBRATE_OK,      /* within the rate */
    PUBRATE_LIMITED, /* over it: answer 429 with Retry-After */
    PUBRATE_UNKNOWN, /* the count could not be read: let it through, and count that */
    PUBRATE_GONE,    /* the limiter is shutting down: answer 503 */
    PUBRATE_PENDING, /* take() only: the answer comes through done */
};

/* The answer to a take() that returned PUBRATE_PENDING: fires exactly once, on the control
 * thread, never inside take(); retry_after_s is set for PUBRATE_LIMITED. */
typedef void pubrate_done_fn(enum pubrate_verdict v, long long retry_after_s, void *arg);

struct pubrate;
struct pubrate_ops {
    /* Counts one request of who. Returns OK, LIMITED (with *retry_after_s) or UNKNOWN at once,
     * or PENDING when done will answer. */
    enum pubrate_verdict (*take)(struct pubrate *r, const char *who, long long *retry_after_s,
                                 pubrate_done_fn *done, void *arg);
    /* Pending answers fire with PUBRATE_GONE first. */
    void (*free)(struct pubrate *r);
};
struct pubrate {
    const struct pubrate_ops *ops;
};

static inline enum pubrate_verdict pubrate_take(struct pubrate *r, const char *who,
                                                long long *retry_after_s, pubrate_done_fn *done,
                                                void *arg)
{
    return r->ops->take(r, who, retry_after_s, done, arg);
}
static inline void pubrate_free(struct pubrate *r) /* NULL is a no-op */
{
    if (r)
        r->ops->free(r);
}

/* per_sec publishes per second per identity, with a burst of one second's worth, remembered
 * for at most max_identities identities (the least recently seen go first). */
struct pubrate *pubrate_local_new(unsigned per_sec, unsigned max_identities);

#endif
