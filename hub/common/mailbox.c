/* mailbox.c -- a mutex-guarded queue of mails from the control plane to one delivery plane.
 * Two arrays swap roles: posters append to `in` under the lock; the drainer swaps `in` with
 * its empty `out` under the lock and walks `out` without it, so the lock is held for an
 * append or a pointer swap, never for delivery, and steady state allocates nothing. Only the
 * post that finds the queue empty wakes the consumer: wakes coalesce, and one drain takes
 * everything. */
#include "mailbox.h"

#include "message.h"
#include "position.h"
#include "tls.h"
#include "xalloc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

struct mail_array {
    struct mail *v;
    size_t n, cap;
};

struct mailbox {
    pthread_mutex_t lock;
    struct mail_array in;  /* {lock}: appended by posters, swapped out by the drainer */
    struct mail_array out; /* drainer only */
    size_t max_bytes;      /* events' wire bytes waiting, past which an event is refused */
    size_t bytes;          /* {lock} */
    atomic_size_t depth;   /* mails waiting, for metrics */
    atomic_size_t abytes;  /* bytes, for any thread */
    size_t weight;         /* {lock} */
    atomic_size_t aweight;
    mailbox_wake_fn *wake;
    void *wake_arg;
};

struct mailbox *mailbox_new(size_t max_bytes, mailbox_wake_fn *wake, void *wake_arg)
{
    struct mailbox *mb = xcalloc(1, sizeof(*mb));

    pthread_mutex_init(&mb->lock, NULL);
    mb->max_bytes = max_bytes;
    mb->wake = wake;
    mb->wake_arg = wake_arg;
    atomic_init(&mb->depth, 0);
    atomic_init(&mb->abytes, 0);
    atomic_init(&mb->aweight, 0);
    return mb;
}

static void drop_all(struct mail_array *a)
{
    for (size_t i = 0; i < a->n; i++) {
        message_unref(&a->v[i].msg);
        if (a->v[i].kind == MAIL_POSITION)
            position_answer_free(a->v[i].data);
        else if (a->v[i].kind == MAIL_SUBSCRIBE)
            position_request_free(a->v[i].data);
        else if (a->v[i].kind == MAIL_TLS)
            tls_pair_unref((struct tls_pair **)&a->v[i].data);
    }
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

void mailbox_free(struct mailbox *mb)
{
    if (!mb)
        return;
    drop_all(&mb->in);
    drop_all(&mb->out);
    pthread_mutex_destroy(&mb->lock);
    free(mb);
}

static int post(struct mailbox *mb, enum mail_kind kind, struct message *msg, void *data,
                size_t weight, bool may_wake)
{
    bool was_empty;
    size_t len = msg ? message_wire_len(msg) : 0;

    pthread_mutex_lock(&mb->lock);
    /* only events wait for room: gaps and resets are small and must not be lost, and one
     * event always fits an empty mailbox */
    if (msg && msg->kind == MESSAGE_EVENT && mb->bytes && mb->bytes + len > mb->max_bytes) {
        pthread_mutex_unlock(&mb->lock);
        return -1;
    }
    if (mb->in.n == mb->in.cap) {
        mb->in.cap = mb->in.cap ? mb->in.cap * 2 : 64;
        mb->in.v = xrealloc(mb->in.v, mb->in.cap * sizeof(*mb->in.v));
    }
    mb->in.v[mb->in.n++] = (struct mail){
        .kind = kind, .weight = weight, .msg = msg ? message_ref(msg) : NULL, .data = data};
    was_empty = mb->in.n == 1;
    mb->bytes += len;
    mb->weight += weight;
    atomic_store_explicit(&mb->depth, mb->in.n, memory_order_relaxed);
    atomic_store_explicit(&mb->abytes, mb->bytes, memory_order_relaxed);
    atomic_store_explicit(&mb->aweight, mb->weight, memory_order_relaxed);
    pthread_mutex_unlock(&mb->lock);
    if (was_empty && may_wake)
        mb->wake(mb->wake_arg);
    return 0;
}

int mailbox_post(struct mailbox *mb, enum mail_kind kind, struct message *msg, void *data)
{
    return post(mb, kind, msg, data, 0, true);
}

int mailbox_post_quiet(struct mailbox *mb, enum mail_kind kind, struct message *msg, void *data)
{
    return post(mb, kind, msg, data, 0, false);
}

int mailbox_post_event(struct mailbox *mb, struct message *msg, size_t weight)
{
    return post(mb, MAIL_EVENT, msg, NULL, weight, false);
}

void mailbox_flush(struct mailbox *mb)
{
    bool waiting;

    pthread_mutex_lock(&mb->lock);
    waiting = mb->in.n > 0;
    pthread_mutex_unlock(&mb->lock);
    if (waiting)
        mb->wake(mb->wake_arg);
}

size_t mailbox_drain(struct mailbox *mb, mailbox_handle_fn *fn, void *arg)
{
    struct mail_array tmp;
    size_t n;

    pthread_mutex_lock(&mb->lock);
    tmp = mb->in;
    mb->in = mb->out;
    mb->out = tmp;
    mb->bytes = mb->weight = 0;
    atomic_store_explicit(&mb->depth, 0, memory_order_relaxed);
    atomic_store_explicit(&mb->abytes, 0, memory_order_relaxed);
    atomic_store_explicit(&mb->aweight, 0, memory_order_relaxed);
    pthread_mutex_unlock(&mb->lock);

    n = mb->out.n;
    for (size_t i = 0; i < n; i++) {
        fn(&mb->out.v[i], arg);
        mb->out.v[i].msg = NULL;
        mb->out.v[i].data = NULL;
    }
    mb->out.n = 0;
    return n;
}

size_t mailbox_depth(const struct mailbox *mb)
{
    return atomic_load_explicit(&mb->depth, memory_order_relaxed);
}

size_t mailbox_bytes(const struct mailbox *mb)
{
    return atomic_load_explicit(&mb->abytes, memory_order_relaxed);
}

size_t mailbox_weight(const struct mailbox *mb)
{
    return atomic_load_explicit(&mb->aweight, memory_order_relaxed);
}
