/* memory.c -- the in-process broker: a hub working alone.
 * publish() appends the events to a pending list and arms a one-shot event; on the next
 * loop turn every pending event is handed to deliver, in order, and then each publish's done
 * fires. That keeps the broker contract the Redis broker has (done never fires inside
 * publish, delivery comes back through the broker's one path) at the cost of one loop turn. */
#include "broker.h"

#include "common/message.h"
#include "common/xalloc.h"

#include <event2/event.h>
#include <stdlib.h>

struct pending {
    struct message **msgs;
    size_t n;
    broker_done_fn *done;
    void *arg;
    struct pending *next;
};

struct broker_memory {
    struct broker base;
    struct event *flush;
    struct pending *head, **tail;
};

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct broker_memory *m = arg;
    struct pending *p = m->head;

    (void)fd;
    (void)what;
    m->head = NULL;
    m->tail = &m->head;
    while (p) {
        struct pending *next = p->next;

        for (size_t i = 0; i < p->n; i++) {
            m->base.deliver(p->msgs[i], m->base.deliver_arg);
            message_unref(&p->msgs[i]);
        }
        p->done(NULL, p->arg);
        free(p->msgs);
        free(p);
        p = next;
    }
}

static int memory_publish(struct broker *b, struct message *const *msgs, size_t n,
                          broker_done_fn *done, void *arg)
{
    struct broker_memory *m = (struct broker_memory *)b;
    struct pending *p = xcalloc(1, sizeof(*p));

    p->msgs = xmalloc(n * sizeof(*p->msgs));
    for (size_t i = 0; i < n; i++)
        p->msgs[i] = message_ref(msgs[i]);
    p->n = n;
    p->done = done;
    p->arg = arg;
    *m->tail = p;
    m->tail = &p->next;
    event_active(m->flush, 0, 0);
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
        p->done("shutting down", p->arg);
        free(p->msgs);
        free(p);
        p = next;
    }
    event_free(m->flush);
    free(m);
}

static const struct broker_ops memory_ops = {
    .name = "memory",
    .publish = memory_publish,
    .is_ready = memory_is_ready,
    .free = memory_free,
};

struct broker *broker_memory_new(struct event_base *base, broker_deliver_fn *deliver, void *arg)
{
    struct broker_memory *m = xcalloc(1, sizeof(*m));

    m->base.ops = &memory_ops;
    m->base.deliver = deliver;
    m->base.deliver_arg = arg;
    m->flush = event_new(base, -1, 0, on_flush, m);
    m->tail = &m->head;
    return &m->base;
}
