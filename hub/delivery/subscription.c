/* subscription.c -- send, skip or hold, per subscription (subscription.h).
 * Within one channel, a plane receives events in seq order (the sequencer sees to it), with a
 * gap standing for events that will not come and a reset where the numbering restarts; so
 * last_seq alone tells a duplicate (a replayed event the live stream brings again) from a new
 * event. */
#include "subscription.h"

#include "common/message.h"
#include "common/xalloc.h"

#include <stdlib.h>
#include <string.h>

#define SUB_PENDING 1u

struct held {
    struct message **v;
    size_t n, cap, bytes;
};

void subscription_begin(struct channel_member *m)
{
    m->flags |= SUB_PENDING;
    m->last_seq = 0;
}

bool subscription_is_pending(const struct channel_member *m)
{
    return m->flags & SUB_PENDING;
}

static enum sub_verdict offer_live(struct channel_member *m, const struct message *msg)
{
    switch (msg->kind) {
    case MESSAGE_RESET: m->last_seq = 0; return SUB_SEND;
    case MESSAGE_EVENT:
    case MESSAGE_GAP:
        if (msg->seq <= m->last_seq)
            return SUB_SKIP;
        m->last_seq = msg->seq;
        return SUB_SEND;
    default: return SUB_SEND;
    }
}

enum sub_verdict subscription_offer(struct channel_member *m, struct message *msg)
{
    struct held *h;

    if (!(m->flags & SUB_PENDING))
        return offer_live(m, msg);
    h = m->extra;
    if (!h)
        h = m->extra = xcalloc(1, sizeof(*h));
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 8;
        h->v = xrealloc(h->v, h->cap * sizeof(*h->v));
    }
    h->v[h->n++] = message_ref(msg);
    h->bytes += message_wire_len(msg);
    return SUB_HOLD;
}

size_t subscription_held_bytes(const struct channel_member *m)
{
    const struct held *h = m->extra;

    return h && (m->flags & SUB_PENDING) ? h->bytes : 0;
}

void subscription_start(struct channel_member *m, uint64_t seq, subscription_send_fn *send,
                        void *arg)
{
    struct held *h = m->extra;

    m->flags &= ~SUB_PENDING;
    m->last_seq = seq;
    m->extra = NULL;
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++) {
        if (offer_live(m, h->v[i]) == SUB_SEND)
            send(h->v[i], arg);
        message_unref(&h->v[i]);
    }
    free(h->v);
    free(h);
}

void subscription_free_extra(void *extra)
{
    struct held *h = extra;

    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++)
        message_unref(&h->v[i]);
    free(h->v);
    free(h);
}
