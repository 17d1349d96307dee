/* sharded.c -- several Redis, one broker: the hub and the sequencer see one struct broker.
 * Control thread. With several --redis-url entries, each is a Redis broker of its own
 * (redis.c: its two links, backoff, heartbeat, metrics.redis[i]) and each channel lives on the
 * one common/shard.h gives it: its publishes, numbering, history, idempotency keys and reads go
 * there only. Every hub subscribes on every shard, so an event comes back from its channel's
 * shard only; one that comes from another (written by a hub given another list, or by something
 * that is not a hub) is dropped and counted, since its numbering is not the channel's.
 *
 * Readiness: the hub is ready while at least one shard is up and no shard heard a twin or a hub
 * given another --redis-url list (those make every answer suspect). A shard that is down makes
 * the publishes of its channels answer 503 and nothing else (hub/DESIGN.md, "Redis shards").
 *
 * A batch whose events live on several shards is split: each shard takes its part in one
 * script (atomic there), and the batch is taken (202) only when every part was. It is refused
 * whole (503, nothing published) when one of its shards is down when it comes; a shard lost
 * while its part is out makes a partial publish, answered 503 and said so: a retry with the
 * same Idempotency-Key publishes only the parts that were not taken, since each shard remembers
 * the key for its own part, and its answer gives each event the id it went out with.
 *
 * --publish-rate counts an identity on the shard its name hashes to, so every hub counts it in
 * the same place. */
#include "broker.h"

#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/message.h"
#include "common/metrics.h"
#include "common/shard.h"
#include "common/xalloc.h"
#include "control/pubrate.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct broker_sharded;

struct shard {
    struct broker_sharded *s;
    unsigned index;
    struct broker *b;            /* a Redis broker (redis.c) */
    int64_t misplaced_logged_ms; /* monotonic */
    size_t misplaced_since_log;
};

struct broker_sharded {
    struct broker base;
    const struct config *cfg;
    unsigned n;
    struct shard shards[SHARD_MAX];
};

static unsigned channel_shard(const struct broker_sharded *s, const struct message *m)
{
    return shard_of(m->channel, m->channel_len, s->n);
}

/* --- what comes back --------------------------------------------------------------------- */

static void on_deliver(struct message *msg, void *arg)
{
    struct shard *sh = arg;
    struct broker_sharded *s = sh->s;
    unsigned home = channel_shard(s, msg);

    if (home != sh->index) {
        int64_t now = clock_mono_ms();

        metrics_add(&metrics.redis[sh->index].unknown_payloads, 1);
        sh->misplaced_since_log++;
        if (!sh->misplaced_logged_ms || now - sh->misplaced_logged_ms >= 10000) {
            log_warn("redis/shards",
                     "dropped %zu events from shard %u whose channels live on another shard "
                     "(%s lives on shard %u): a hub given another --redis-url list, or a "
                     "publisher that is not a hub, wrote them",
                     sh->misplaced_since_log, sh->index, msg->channel, home);
            sh->misplaced_logged_ms = now;
            sh->misplaced_since_log = 0;
        }
        return;
    }
    s->base.deliver(msg, s->base.deliver_arg);
}

static void on_resubscribed(void *arg, unsigned index)
{
    struct shard *sh = arg;
    struct broker_sharded *s = sh->s;

    (void)index;
    if (s->base.resubscribed)
        s->base.resubscribed(s->base.deliver_arg, sh->index);
}

/* --- readiness ------------------------------------------------------------------------------ */

static bool sharded_is_ready(const struct broker *b)
{
    const struct broker_sharded *s = (const struct broker_sharded *)b;
    bool any = false;

    for (unsigned i = 0; i < s->n; i++) {
        struct broker_redis_state st;

        broker_redis_state(s->shards[i].b, &st);
        if (st.has_twin || st.has_mismatch)
            return false;
        any |= st.is_up;
    }
    return any;
}

static const char *sharded_not_ready_reason(const struct broker *b)
{
    const struct broker_sharded *s = (const struct broker_sharded *)b;
    bool any = false;

    for (unsigned i = 0; i < s->n; i++) {
        struct broker_redis_state st;

        broker_redis_state(s->shards[i].b, &st);
        if (st.has_twin)
            return "another hub runs with this --instance-id";
        if (st.has_mismatch)
            return "another hub was given a different --redis-url list";
        any |= st.is_up;
    }
    return any ? NULL : "no Redis shard is connected";
}

static size_t sharded_shards(const struct broker *b, struct broker_shard *out, size_t cap)
{
    const struct broker_sharded *s = (const struct broker_sharded *)b;

    for (unsigned i = 0; i < s->n && i < cap; i++) {
        struct broker_redis_state st;

        broker_redis_state(s->shards[i].b, &st);
        out[i].name = s->cfg->redis_shard_names[i];
        out[i].is_ready = st.is_up;
    }
    return s->n;
}

static unsigned sharded_shard_of(const struct broker *b, const char *channel, size_t len)
{
    return shard_of(channel, len, ((const struct broker_sharded *)b)->n);
}

/* --- publishing ----------------------------------------------------------------------------
 * A batch over several shards: one part per shard, in the order of each shard's first event;
 * the request answers when the last part has. */

struct split_req;

struct part {
    struct split_req *q;
    unsigned shard;
    bool is_done;
    const char *err; /* static, from the shard's broker; NULL: taken */
    char *duplicate; /* the shard's remembered answer for the key, when it had one */
};

struct split_req {
    struct broker_sharded *s;
    broker_done_fn *done;
    void *arg;
    bool has_key;
    size_t n;       /* events */
    unsigned *home; /* each event's shard */
    char **ids;     /* each event's id in this request */
    unsigned n_parts, pending;
    struct part parts[SHARD_MAX];
};

static void split_free(struct split_req *q)
{
    for (unsigned i = 0; i < q->n_parts; i++)
        free(q->parts[i].duplicate);
    for (size_t i = 0; i < q->n; i++)
        free(q->ids[i]);
    free(q->ids);
    free(q->home);
    free(q);
}

/* Every part was taken and some shards had seen the key: the ids the events went out with, each
 * from the answer its shard remembered or, for a part published now, this request's. Returns a
 * malloc'd {"ids":[…]}, or NULL when a remembered answer is not a batch's of this size (the key
 * was used for another request): the first remembered answer stands then. */
static char *merged_answer(const struct split_req *q)
{
    json_t *ids = json_array(), *o;
    char *out = NULL;
    json_t *remembered[SHARD_MAX] = {NULL};
    bool ok = true;

    for (unsigned i = 0; i < q->n_parts && ok; i++) {
        json_t *a;

        if (!q->parts[i].duplicate)
            continue;
        remembered[i] = json_loads(q->parts[i].duplicate, 0, NULL);
        a = json_object_get(remembered[i], "ids");
        ok = json_is_array(a) && json_array_size(a) == q->n;
    }
    for (size_t k = 0; k < q->n && ok; k++) {
        unsigned p = 0;
        json_t *id;

        while (q->parts[p].shard != q->home[k])
            p++;
        id = remembered[p] ? json_array_get(json_object_get(remembered[p], "ids"), k) : NULL;
        if (remembered[p] && !json_is_string(id))
            ok = false;
        else
            json_array_append_new(ids, id ? json_copy(id) : json_string(q->ids[k]));
    }
    if (ok) {
        o = json_pack("{s:o}", "ids", ids);
        out = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (!out)
            xalloc_fail(0);
    } else {
        json_decref(ids);
    }
    for (unsigned i = 0; i < q->n_parts; i++)
        json_decref(remembered[i]);
    return out;
}

static void split_finish(struct split_req *q)
{
    const struct part *failed = NULL, *dup = NULL;
    char why[400];

    for (unsigned i = 0; i < q->n_parts; i++) {
        if (q->parts[i].err && !failed)
            failed = &q->parts[i];
        if (q->parts[i].duplicate && !dup)
            dup = &q->parts[i];
    }
    if (failed) {
        snprintf(why, sizeof(why),
                 "shard %u (%s) did not take its part of the batch (%s); the parts on the other "
                 "shards were published: %s",
                 failed->shard, q->s->cfg->redis_shard_names[failed->shard], failed->err,
                 q->has_key ? "a retry with the same Idempotency-Key publishes only the rest"
                            : "a retry publishes them again (send an Idempotency-Key)");
        log_warn("redis/shards", "a batch over %u shards was taken in part: %s", q->n_parts, why);
        q->done(why, NULL, q->arg);
    } else if (dup) {
        char *merged = merged_answer(q);

        q->done(NULL, merged ? merged : dup->duplicate, q->arg);
        free(merged);
    } else {
        q->done(NULL, NULL, q->arg);
    }
    split_free(q);
}

static void on_part_done(const char *err, const char *duplicate, void *arg)
{
    struct part *p = arg;
    struct split_req *q = p->q;

    p->is_done = true;
    p->err = err;
    if (duplicate)
        p->duplicate = xstrdup(duplicate);
    if (--q->pending == 0)
        split_finish(q);
}

static int split_publish(struct broker_sharded *s, struct message *const *msgs, size_t n,
                         const struct broker_idempotency *idem, broker_done_fn *done, void *arg)
{
    struct split_req *q = xcalloc(1, sizeof(*q));
    struct message **part_msgs = xmalloc(n * sizeof(*part_msgs));
    unsigned submitted = 0;

    *q = (struct split_req){.s = s, .done = done, .arg = arg, .has_key = idem != NULL, .n = n};
    q->home = xmalloc(n * sizeof(*q->home));
    q->ids = xmalloc(n * sizeof(*q->ids));
    for (size_t k = 0; k < n; k++) {
        unsigned p;

        q->home[k] = channel_shard(s, msgs[k]);
        q->ids[k] = xstrdup(msgs[k]->id);
        for (p = 0; p < q->n_parts && q->parts[p].shard != q->home[k]; p++)
            ;
        if (p == q->n_parts)
            q->parts[q->n_parts++] = (struct part){.q = q, .shard = q->home[k]};
    }
    /* every part is counted pending before the first goes out: none answers inside publish(),
     * but the count must not reach 0 while parts are still being handed out */
    q->pending = q->n_parts;
    for (unsigned p = 0; p < q->n_parts; p++) {
        struct part *part = &q->parts[p];
        size_t m = 0;

        for (size_t k = 0; k < n; k++)
            if (q->home[k] == part->shard)
                part_msgs[m++] = msgs[k];
        if (broker_publish(s->shards[part->shard].b, part_msgs, m, idem, on_part_done, part) < 0) {
            part->is_done = true;
            part->err = "its Redis is not connected";
            q->pending--;
        } else {
            submitted++;
        }
    }
    free(part_msgs);
    if (!submitted) {
        split_free(q);
        return -1;
    }
    return 0;
}

static int sharded_publish(struct broker *b, struct message *const *msgs, size_t n,
                           const struct broker_idempotency *idem, broker_done_fn *done, void *arg)
{
    struct broker_sharded *s = (struct broker_sharded *)b;
    unsigned first;
    bool is_split = false;

    if (n == 0 || !sharded_is_ready(b))
        return -1;
    first = channel_shard(s, msgs[0]);
    for (size_t k = 1; k < n; k++)
        is_split |= channel_shard(s, msgs[k]) != first;
    if (!is_split)
        return broker_publish(s->shards[first].b, msgs, n, idem, done, arg);
    /* all or nothing while no shard dies in between: every shard of the batch must be up now */
    for (size_t k = 0; k < n; k++)
        if (!broker_is_ready(s->shards[channel_shard(s, msgs[k])].b))
            return -1;
    return split_publish(s, msgs, n, idem, done, arg);
}

static int sharded_read(struct broker *b, const struct broker_read *q, broker_read_fn *cb,
                        void *arg)
{
    struct broker_sharded *s = (struct broker_sharded *)b;

    return broker_read(s->shards[shard_of(q->channel, q->channel_len, s->n)].b, q, cb, arg);
}

/* --- --publish-rate: each identity counted on its own shard ------------------------------ */

struct sharded_pubrate {
    struct pubrate base;
    unsigned n;
    struct pubrate *inner[SHARD_MAX];
};

static enum pubrate_verdict sharded_rate_take(struct pubrate *base, const char *who,
                                              long long *retry_after_s, pubrate_done_fn *done,
                                              void *arg)
{
    struct sharded_pubrate *sp = (struct sharded_pubrate *)base;

    return pubrate_take(sp->inner[shard_of(who, strlen(who), sp->n)], who, retry_after_s, done,
                        arg);
}

static void sharded_rate_free(struct pubrate *base)
{
    struct sharded_pubrate *sp = (struct sharded_pubrate *)base;

    for (unsigned i = 0; i < sp->n; i++)
        pubrate_free(sp->inner[i]);
    free(sp);
}

static const struct pubrate_ops sharded_rate_ops = {.take = sharded_rate_take,
                                                    .free = sharded_rate_free};

static struct pubrate *sharded_pubrate(struct broker *b, unsigned per_sec)
{
    struct broker_sharded *s = (struct broker_sharded *)b;
    struct sharded_pubrate *sp = xcalloc(1, sizeof(*sp));

    sp->base.ops = &sharded_rate_ops;
    sp->n = s->n;
    for (unsigned i = 0; i < s->n; i++)
        sp->inner[i] = s->shards[i].b->ops->pubrate(s->shards[i].b, per_sec);
    return &sp->base;
}

static void sharded_free(struct broker *b)
{
    struct broker_sharded *s = (struct broker_sharded *)b;

    for (unsigned i = 0; i < s->n; i++)
        broker_free(s->shards[i].b); /* pending publishes answer 503, parts included */
    free(s);
}

static const struct broker_ops sharded_ops = {
    .name = "redis",
    .publish = sharded_publish,
    .read = sharded_read,
    .is_ready = sharded_is_ready,
    .pubrate = sharded_pubrate,
    .free = sharded_free,
    .shard_of = sharded_shard_of,
    .shards = sharded_shards,
    .not_ready_reason = sharded_not_ready_reason,
};

struct broker *broker_sharded_new(struct event_base *base, const struct config *cfg,
                                  broker_deliver_fn *deliver, void *arg, char *err, size_t errlen)
{
    struct broker_sharded *s = xcalloc(1, sizeof(*s));

    s->base.ops = &sharded_ops;
    s->base.deliver = deliver;
    s->base.deliver_arg = arg;
    s->cfg = cfg;
    for (unsigned i = 0; i < cfg->redis_shards && i < SHARD_MAX; i++) {
        const struct broker_redis_shard spec = {
            .url = cfg->redis_urls[i],
            .name = cfg->redis_shard_names[i],
            .index = i,
            .count = cfg->redis_shards,
            .digest = cfg->redis_shard_digest,
        };
        struct shard *sh = &s->shards[i];

        sh->s = s;
        sh->index = i;
        sh->b = broker_redis_new_shard(base, cfg, &spec, on_deliver, sh, err, errlen);
        if (!sh->b) {
            sharded_free(&s->base);
            return NULL;
        }
        sh->b->resubscribed = on_resubscribed;
        s->n++;
    }
    log_info("redis/shards", "%u Redis shards (list digest %016llx), each channel on one", s->n,
             (unsigned long long)cfg->redis_shard_digest);
    return &s->base;
}
