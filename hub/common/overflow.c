/* overflow.c -- pending gaps, one per channel (overflow.h). A keyed uthash table: channel
 * names come from clients (common/keyhash.h). Its size is bounded by the channels that had an
 * event while delivery was behind. */
#include "overflow.h"

#include "keyhash.h"
#include "log.h"
#include "message.h"
#include "metrics.h"
#include "xalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

struct pending {
    char channel[MESSAGE_CHANNEL_MAX + 1];
    char epoch[MESSAGE_EPOCH_MAX + 1];
    uint64_t from, to;
    UT_hash_handle hh;
};

struct overflow {
    struct pending *table;
};

struct overflow *overflow_new(void)
{
    return xcalloc(1, sizeof(struct overflow));
}

void overflow_free(struct overflow *o)
{
    struct pending *p, *tmp;

    if (!o)
        return;
    HASH_ITER(hh, o->table, p, tmp)
    {
        HASH_DEL(o->table, p);
        free(p);
    }
    free(o);
}

static struct pending *find(const struct overflow *o, const char *channel, size_t len)
{
    struct pending *p;

    HASH_FIND(hh, o->table, channel, len, p);
    return p;
}

void overflow_add(struct overflow *o, const struct message *msg)
{
    struct pending *p = find(o, msg->channel, msg->channel_len);

    metrics_add(&metrics.dropped[DROP_OVERLOAD], 1);
    if (!p) {
        p = xcalloc(1, sizeof(*p));
        memcpy(p->channel, msg->channel, msg->channel_len);
        snprintf(p->epoch, sizeof(p->epoch), "%s", msg->epoch);
        p->from = p->to = msg->seq;
        HASH_ADD(hh, o->table, channel, msg->channel_len, p);
        log_warn("hub", "%s: delivery is behind: event %" PRIu64 " and what follows become a gap",
                 p->channel, msg->seq);
        return;
    }
    if (msg->seq < p->from)
        p->from = msg->seq;
    if (msg->seq > p->to)
        p->to = msg->seq;
}

size_t overflow_count(const struct overflow *o)
{
    return HASH_COUNT(o->table);
}

bool overflow_holds(const struct overflow *o, const char *channel, size_t len)
{
    return o->table && find(o, channel, len);
}

static struct message *take(struct overflow *o, struct pending *p)
{
    struct message *m = message_gap(p->channel, strlen(p->channel), p->epoch, p->from, p->to);

    metrics_add(&metrics.seq_lost, p->to - p->from + 1);
    HASH_DEL(o->table, p);
    free(p);
    return m;
}

struct message *overflow_take(struct overflow *o, const char *channel, size_t len)
{
    struct pending *p = o->table ? find(o, channel, len) : NULL;

    return p ? take(o, p) : NULL;
}

size_t overflow_flush(struct overflow *o, overflow_send_fn *send, void *arg)
{
    struct pending *p, *tmp;

    HASH_ITER(hh, o->table, p, tmp)
    {
        struct message *m = message_gap(p->channel, strlen(p->channel), p->epoch, p->from, p->to);

        if (send(m, arg) < 0) {
            message_unref(&m);
            break;
        }
        metrics_add(&metrics.seq_lost, p->to - p->from + 1);
        HASH_DEL(o->table, p);
        free(p);
    }
    return HASH_COUNT(o->table);
}
