/* ratelimit.h -- token buckets: pure arithmetic, time passed in. */
#ifndef HERALD_RATELIMIT_H
#define HERALD_RATELIMIT_H

#include <stdint.h>

struct ratelimit_cfg {
    uint32_t per_sec; /* refill rate, tokens per second (>= 1) */
    uint32_t burst;   /* bucket size (>= 1) */
};

struct ratelimit {
    uint64_t milli_tokens; /* tokens x 1000, so slow rates refill smoothly */
    int64_t last_ms;
};

/* A full bucket at now_ms. */
void ratelimit_init(struct ratelimit *b, const struct ratelimit_cfg *cfg, int64_t now_ms);
/* Takes n tokens at now_ms: 0, or -1 (nothing taken) when fewer than n are there. */
int ratelimit_take(struct ratelimit *b, const struct ratelimit_cfg *cfg, int64_t now_ms,
                   uint32_t n);
/* Milliseconds until n tokens will be there (0 if they are now). */
int64_t ratelimit_wait_ms(const struct ratelimit *b, const struct ratelimit_cfg *cfg,
                          int64_t now_ms, uint32_t n);

#endif
