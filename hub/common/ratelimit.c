/* ratelimit.c -- token buckets: client frames (delivery/session.c) and the in-process publish
 * limiter (control/pubrate.c).
 * Pure arithmetic: no clock, no I/O, no allocation. Callers pass now_ms, so the loop reads
 * the clock once per turn and tests drive time themselves. A clock that steps back refills
 * nothing. */
#include "ratelimit.h"

static uint64_t capacity(const struct ratelimit_cfg *cfg)
{
    return (uint64_t)cfg->burst * 1000;
}

static void refill(struct ratelimit *b, const struct ratelimit_cfg *cfg, int64_t now_ms)
{
    if (now_ms > b->last_ms) {
        uint64_t add = (uint64_t)(now_ms - b->last_ms) * cfg->per_sec;

        b->milli_tokens =
            add >= capacity(cfg) - b->milli_tokens ? capacity(cfg) : b->milli_tokens + add;
        b->last_ms = now_ms;
    }
}

void ratelimit_init(struct ratelimit *b, const struct ratelimit_cfg *cfg, int64_t now_ms)
{
    b->milli_tokens = capacity(cfg);
    b->last_ms = now_ms;
}

int ratelimit_take(struct ratelimit *b, const struct ratelimit_cfg *cfg, int64_t now_ms, uint32_t n)
{
    uint64_t need = (uint64_t)n * 1000;

    refill(b, cfg, now_ms);
    if (b->milli_tokens < need)
        return -1;
    b->milli_tokens -= need;
    return 0;
}

int64_t ratelimit_wait_ms(const struct ratelimit *b, const struct ratelimit_cfg *cfg,
                          int64_t now_ms, uint32_t n)
{
    struct ratelimit copy = *b;
    uint64_t need = (uint64_t)n * 1000;

    int64_t behind = now_ms < b->last_ms ? b->last_ms - now_ms : 0; /* clock stepped back */

    refill(&copy, cfg, now_ms);
    if (copy.milli_tokens >= need)
        return 0;
    return behind + (int64_t)((need - copy.milli_tokens + cfg->per_sec - 1) / cfg->per_sec);
}
