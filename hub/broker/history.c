/* history.c -- channels' numbering and kept events in this process.
 * A keyed uthash table of channel states (epoch, last seq, kept events oldest first). Every
 * kept event is also on one list of all kept events in the order they were kept, which is the
 * order of their publish times: the TTL expires from its front, and when the bytes kept pass
 * --history-memory the front goes first too, whichever channel it belongs to. A channel state
 * that keeps no event sits on an idle list, least recently active first; idle states are
 * forgotten after STATE_IDLE_MS (unless the hub's planes hold the channel), or first when
 * memory is short. A forgotten channel starts a new epoch at its next event, so a client that
 * resumes across it is told recovered:false, never given a wrong seq. */
#include "history.h"

#include "common/keyhash.h"
#include "common/metrics.h"
#include "common/xalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#define STATE_IDLE_MS (3600 * 1000) /* a channel state that keeps nothing is kept this long */

struct chan;

struct entry {
    struct message *msg;
    struct chan *ch;
    struct entry *prev, *next;   /* every kept event, oldest first */
    struct entry *cprev, *cnext; /* this channel's, oldest first */
    size_t bytes;                /* charged to --history-memory */
};

struct chan {
    char name[MESSAGE_CHANNEL_MAX + 1];
    UT_hash_handle hh;
    char epoch[MESSAGE_EPOCH_MAX + 1];
    uint64_t seq;
    struct entry *first, *last;
    size_t n;
    int64_t active_ms;          /* the last event numbered */
    struct chan *iprev, *inext; /* the idle list, while n == 0 */
    bool is_idle;
};

struct history {
    struct history_limits lim;
    uint64_t rng;
    struct chan *chans;
    size_t n_chans, n_events, bytes;
    struct entry *head, *tail;
    struct chan *idle_head, *idle_tail;
};

struct history *history_new(const struct history_limits *lim, uint64_t seed)
{
    struct history *h = xcalloc(1, sizeof(*h));

    h->lim = *lim;
    h->rng = seed ? seed : UINT64_C(0x9e3779b97f4a7c15);
    return h;
}

static void idle_add(struct history *h, struct chan *c)
{
    if (c->is_idle)
        return;
    c->is_idle = true;
    c->inext = NULL;
    c->iprev = h->idle_tail;
    if (h->idle_tail)
        h->idle_tail->inext = c;
    else
        h->idle_head = c;
    h->idle_tail = c;
}

static void idle_remove(struct history *h, struct chan *c)
{
    if (!c->is_idle)
        return;
    c->is_idle = false;
    if (c->iprev)
        c->iprev->inext = c->inext;
    else
        h->idle_head = c->inext;
    if (c->inext)
        c->inext->iprev = c->iprev;
    else
        h->idle_tail = c->iprev;
    c->iprev = c->inext = NULL;
}

static void entry_remove(struct history *h, struct entry *e)
{
    struct chan *c = e->ch;

    if (e->prev)
        e->prev->next = e->next;
    else
        h->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        h->tail = e->prev;
    if (e->cprev)
        e->cprev->cnext = e->cnext;
    else
        c->first = e->cnext;
    if (e->cnext)
        e->cnext->cprev = e->cprev;
    else
        c->last = e->cprev;
    c->n--;
    h->n_events--;
    h->bytes -= e->bytes;
    metrics_gauge_add(&metrics.history_events, -1);
    metrics_gauge_add(&metrics.history_bytes, -(long long)e->bytes);
    message_unref(&e->msg);
    free(e);
    if (!c->n)
        idle_add(h, c);
}

static void chan_forget(struct history *h, struct chan *c)
{
    while (c->first)
        entry_remove(h, c->first);
    idle_remove(h, c);
    HASH_DEL(h->chans, c);
    h->n_chans--;
    h->bytes -= sizeof(*c);
    metrics_gauge_add(&metrics.history_bytes, -(long long)sizeof(*c));
    free(c);
}

void history_free(struct history *h)
{
    struct chan *c, *tmp;

    if (!h)
        return;
    HASH_ITER(hh, h->chans, c, tmp)
    chan_forget(h, c);
    free(h);
}

static uint64_t next_random(struct history *h)
{
    h->rng ^= h->rng << 13;
    h->rng ^= h->rng >> 7;
    h->rng ^= h->rng << 17;
    return h->rng;
}

static struct chan *chan_get(struct history *h, const char *name, size_t len, bool create)
{
    struct chan *c;

    HASH_FIND(hh, h->chans, name, len, c);
    if (c || !create)
        return c;
    c = xcalloc(1, sizeof(*c));
    memcpy(c->name, name, len);
    c->active_ms = 0; /* idle from the start: forgotten first if it never numbers anything */
    snprintf(c->epoch, sizeof(c->epoch), "%08" PRIx64, next_random(h) & 0xffffffffu);
    HASH_ADD(hh, h->chans, name[0], len, c);
    h->n_chans++;
    h->bytes += sizeof(*c);
    metrics_gauge_add(&metrics.history_bytes, (long long)sizeof(*c));
    idle_add(h, c);
    return c;
}

/* Drops expired events, then the oldest ones (and then idle states) while over the bound. */
static void enforce(struct history *h, int64_t now_ms)
{
    while (h->head && now_ms - h->head->msg->ts_ms > h->lim.ttl_ms)
        entry_remove(h, h->head);
    while (h->bytes > h->lim.memory && h->head)
        entry_remove(h, h->head);
    while (h->bytes > h->lim.memory && h->idle_head && h->idle_head->active_ms < now_ms)
        chan_forget(h, h->idle_head);
}

void history_append(struct history *h, struct message *msg, int64_t now_ms)
{
    struct chan *c = chan_get(h, msg->channel, msg->channel_len, true);
    struct entry *e;

    message_finish(msg, c->epoch, ++c->seq);
    c->active_ms = now_ms;
    if (c->is_idle) { /* to the idle list's end: the most recently active */
        idle_remove(h, c);
        idle_add(h, c);
    }
    if (h->lim.size) {
        e = xcalloc(1, sizeof(*e));
        e->msg = message_ref(msg);
        e->ch = c;
        e->bytes = sizeof(*e) + message_size(msg);
        e->prev = h->tail;
        if (h->tail)
            h->tail->next = e;
        else
            h->head = e;
        h->tail = e;
        e->cprev = c->last;
        if (c->last)
            c->last->cnext = e;
        else
            c->first = e;
        c->last = e;
        c->n++;
        h->n_events++;
        h->bytes += e->bytes;
        metrics_gauge_add(&metrics.history_events, 1);
        metrics_gauge_add(&metrics.history_bytes, (long long)e->bytes);
        idle_remove(h, c);
        if (c->n > h->lim.size)
            entry_remove(h, c->first);
    }
    enforce(h, now_ms);
}

void history_result_clear(struct history_result *r)
{
    for (size_t i = 0; i < r->n; i++)
        message_unref(&r->msgs[i]);
    free(r->msgs);
    r->msgs = NULL;
    r->n = 0;
}

static const struct entry *first_alive(const struct history *h, const struct chan *c,
                                       int64_t now_ms)
{
    const struct entry *e = c->first;

    while (e && now_ms - e->msg->ts_ms > h->lim.ttl_ms)
        e = e->cnext;
    return e;
}

static void position(struct history *h, const struct chan *c, int64_t now_ms,
                     struct history_result *out)
{
    const struct entry *e = c ? first_alive(h, c, now_ms) : NULL;

    memset(out, 0, sizeof(*out));
    if (!c)
        return;
    memcpy(out->epoch, c->epoch, sizeof(out->epoch));
    out->seq = c->seq;
    out->first = e ? e->msg->seq : 0;
}

void history_read_since(struct history *h, const char *channel, size_t len, uint64_t since,
                        size_t limit, int64_t now_ms, struct history_result *out)
{
    struct chan *c = chan_get(h, channel, len, true);
    const struct entry *e;
    size_t n = 0;

    position(h, c, now_ms, out);
    if (!c)
        return;
    for (e = first_alive(h, c, now_ms); e; e = e->cnext)
        if (e->msg->seq > since && (!limit || n < limit))
            n++;
    if (!n)
        return;
    out->msgs = xmalloc(n * sizeof(*out->msgs));
    for (e = first_alive(h, c, now_ms); e && out->n < n; e = e->cnext)
        if (e->msg->seq > since)
            out->msgs[out->n++] = message_ref(e->msg);
}

void history_read_last(struct history *h, const char *channel, size_t len, size_t n, int64_t now_ms,
                       struct history_result *out)
{
    struct chan *c = chan_get(h, channel, len, true);
    const struct entry *start, *e;
    size_t have = 0;

    position(h, c, now_ms, out);
    if (!c || !n)
        return;
    start = first_alive(h, c, now_ms);
    for (e = c->last; e && have < n; e = e->cprev) {
        if (now_ms - e->msg->ts_ms > h->lim.ttl_ms)
            break;
        have++;
        start = e;
    }
    if (!have)
        return;
    out->msgs = xmalloc(have * sizeof(*out->msgs));
    for (e = start; e && out->n < have; e = e->cnext)
        out->msgs[out->n++] = message_ref(e->msg);
}

void history_sweep(struct history *h, int64_t now_ms, history_keep_fn *keep, void *arg)
{
    struct chan *c, *next;

    enforce(h, now_ms);
    for (c = h->idle_head; c && now_ms - c->active_ms > STATE_IDLE_MS; c = next) {
        next = c->inext;
        if (!keep || !keep(c->name, strlen(c->name), arg)) {
            chan_forget(h, c);
        } else { /* held: look again in STATE_IDLE_MS */
            c->active_ms = now_ms;
            idle_remove(h, c);
            idle_add(h, c);
        }
    }
}

size_t history_events(const struct history *h)
{
    return h->n_events;
}

size_t history_channels(const struct history *h)
{
    return h->n_chans;
}

size_t history_bytes(const struct history *h)
{
    return h->bytes;
}
