/* pubrate.c -- the in-process publish limiter: a token bucket per identity in a keyed uthash
 * table kept in least-recently-seen order (uthash keeps insertion order; an identity seen
 * again moves to the end). At max_identities the least recently seen identity is forgotten,
 * so a flood of new addresses costs one eviction each and never resets anyone else's bucket. */
#include "pubrate.h"

#include "common/clock.h"
#include "common/keyhash.h"
#include "common/netaddr.h"
#include "common/ratelimit.h"
#include "common/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <uthash.h>

struct rate_entry {
    char who[NETADDR_KEYLEN + 24];
    struct ratelimit bucket;
    UT_hash_handle hh;
};

struct pubrate_local {
    struct pubrate base;
    struct ratelimit_cfg cfg;
    unsigned max;
    struct rate_entry *table;
};

static enum pubrate_verdict local_take(struct pubrate *r, const char *who, long long *retry_after_s,
                                       pubrate_done_fn *done, void *arg)
{
    struct pubrate_local *l = (struct pubrate_local *)r;
    struct rate_entry *e;
    int64_t now = clock_mono_ms();

    (void)done;
    (void)arg;
    HASH_FIND_STR(l->table, who, e);
    if (e) {
        HASH_DEL(l->table, e); /* to the end: most recently seen */
    } else {
        if (HASH_COUNT(l->table) >= l->max) {
            struct rate_entry *oldest = l->table;

            HASH_DEL(l->table, oldest);
            free(oldest);
        }
        e = xcalloc(1, sizeof(*e));
        snprintf(e->who, sizeof(e->who), "%s", who);
        ratelimit_init(&e->bucket, &l->cfg, now);
    }
    HASH_ADD_STR(l->table, who, e);
    if (ratelimit_take(&e->bucket, &l->cfg, now, 1) == 0)
        return PUBRATE_OK;
    *retry_after_s = (ratelimit_wait_ms(&e->bucket, &l->cfg, now, 1) + 999) / 1000;
    return PUBRATE_LIMITED;
}

static void local_free(struct pubrate *r)
{
    struct pubrate_local *l = (struct pubrate_local *)r;
    struct rate_entry *e, *tmp;

    HASH_ITER(hh, l->table, e, tmp)
    {
        HASH_DEL(l->table, e);
        free(e);
    }
    free(l);
}

static const struct pubrate_ops local_ops = {.take = local_take, .free = local_free};

struct pubrate *pubrate_local_new(unsigned per_sec, unsigned max_identities)
{
    struct pubrate_local *l = xcalloc(1, sizeof(*l));

    l->base.ops = &local_ops;
    l->cfg = (struct ratelimit_cfg){.per_sec = per_sec, .burst = per_sec};
    l->max = max_identities ? max_identities : 1;
    return &l->base;
}
