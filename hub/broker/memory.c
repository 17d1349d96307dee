/* memory.c -- the in-process broker: a hub working alone.
 * publish() checks the idempotency key (a repeat is answered with the first answer and
 * publishes nothing), remembers it, appends the events to a pending list and arms a one-shot
 * event; on the next loop turn every pending event is numbered and kept by the history
 * (history.c) and handed to deliver, in order, and then each publish's done fires. That keeps
 * the contract the Redis broker has (done never fires inside publish, delivery comes back
 * through the broker's one path) at the cost of one loop turn. A second timer expires kept
 * events and forgets idle channel states that no plane holds. */
#include "broker.h"

#include "common/clock.h"
#include "common/config.h"
#include "common/message.h"
#include "common/registry.h"
#include "common/xalloc.h"
#include "history.h"
#include "idempotency.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#define SWEEP_MS 1000
#define IDEMPOTENCY_MAX_BYTES (64u << 20)

struct pending {
    struct message **msgs;
    size_t n;
    broker_done_fn *done;
    void *arg;
    char *duplicate; /* the remembered answer: nothing to publish */
    struct pending *next;
};

struct broker_memory {
    struct broker base;
    struct event *flush;
    struct event *sweep;
    struct pending *head, **tail;
    struct history *history;
    struct idempotency *idem;
};

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct broker_memory *m = arg;
    struct pending *p = m->head;
    int64_t now = clock_wall_ms();

    (void)fd;
    (void)what;
    m->head = NULL;
    m->tail = &m->head;
    while (p) {
        struct pending *next = p->next;

        for (size_t i = 0; i < p->n; i++) {
            history_append(m->history, p->msgs[i], now);
            m->base.deliver(p->msgs[i], m->base.deliver_arg);
            message_unref(&p->msgs[i]);
        }
        p->done(NULL, p->duplicate, p->arg);
        free(p->duplicate);
        free(p->msgs);
        free(p);
        p = next;
    }
}

static bool is_held(const char *channel, size_t len, void *arg)
{
    (void)arg;
    return registry_planes(channel, len) != 0;
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct broker_memory *m = arg;

    (void)fd;
    (void)what;
    history_sweep(m->history, clock_wall_ms(), is_held, NULL);
}

static int memory_publish(struct broker *b, struct message *const *msgs, size_t n,
                          const struct broker_idempotency *idem, broker_done_fn *done, void *arg)
{
    struct broker_memory *m = (struct broker_memory *)b;
    struct pending *p = xcalloc(1, sizeof(*p));

    if (idem) {
        int64_t now = clock_wall_ms();
        const char *seen = idempotency_find(m->idem, idem->scope, idem->key, now);

        if (seen)
            p->duplicate = xstrdup(seen);
        else
            idempotency_put(m->idem, idem->scope, idem->key, idem->answer, now);
    }
    if (!p->duplicate) {
        p->msgs = xmalloc(n * sizeof(*p->msgs));
        for (size_t i = 0; i < n; i++)
            p->msgs[i] = message_ref(msgs[i]);
        p->n = n;
    }
    p->done = done;
    p->arg = arg;
    *m->tail = p;
    m->tail = &p->next;
    event_active(m->flush, 0, 0);
    return 0;
}

static int memory_read(struct broker *b, const struct broker_read *q, broker_read_fn *cb, void *arg)
{
    struct broker_memory *m = (struct broker_memory *)b;
    struct history_result r;
    int64_t now = clock_wall_ms();

    switch (q->mode) {
    case BROKER_READ_POSITION:
        history_read_last(m->history, q->channel, q->channel_len, 0, now, &r);
        break;
    case BROKER_READ_SINCE:
        history_read_since(m->history, q->channel, q->channel_len, q->since, q->count, now, &r);
        break;
    case BROKER_READ_LAST:
        history_read_last(m->history, q->channel, q->channel_len, q->count, now, &r);
        break;
    }
    cb(NULL, &r, arg);
    history_result_clear(&r);
    return 0;
}

static bool memory_is_ready(const struct broker *b)
{
    (void)b;
    return true;
}

static void memory_free(struct broker *b)
{
    struct broker_memory *m = (struct broker_memory *)b;
    struct pending *p = m->head;

    while (p) {
        struct pending *next = p->next;

        for (size_t i = 0; i < p->n; i++)
            message_unref(&p->msgs[i]);
        p->done("shutting down", NULL, p->arg);
        free(p->duplicate);
        free(p->msgs);
        free(p);
        p = next;
    }
    event_free(m->flush);
    event_free(m->sweep);
    history_free(m->history);
    idempotency_free(m->idem);
    free(m);
}

static const struct broker_ops memory_ops = {
    .name = "memory",
    .publish = memory_publish,
    .read = memory_read,
    .is_ready = memory_is_ready,
    .free = memory_free,
};

struct broker *broker_memory_new(struct event_base *base, const struct config *cfg, uint64_t seed,
                                 broker_deliver_fn *deliver, void *arg)
{
    struct broker_memory *m = xcalloc(1, sizeof(*m));
    const struct history_limits lim = {
        .size = cfg->history_size,
        .ttl_ms = (int64_t)cfg->history_ttl * 1000,
        .memory = cfg->history_memory,
    };
    struct timeval every = {.tv_sec = SWEEP_MS / 1000};

    m->base.ops = &memory_ops;
    m->base.deliver = deliver;
    m->base.deliver_arg = arg;
    m->flush = event_new(base, -1, 0, on_flush, m);
    m->sweep = event_new(base, -1, EV_PERSIST, on_sweep, m);
    event_add(m->sweep, &every);
    m->tail = &m->head;
    m->history = history_new(&lim, seed);
    m->idem = idempotency_new((int64_t)cfg->idempotency_ttl * 1000, IDEMPOTENCY_MAX_BYTES);
    return &m->base;
}
