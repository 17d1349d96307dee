/* test_mailbox.c -- hub/common/mailbox.c: order, wakes, the bound in bytes, the gauges, references,
 * and one producer thread against one draining thread. */
#include "common/mailbox.h"
#include "common/message.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

static void count_wake(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

/* What a drain handed over, in order. */
struct seen {
    struct message *msgs[64];
    enum mail_kind kinds[64];
    size_t n;
};

static void record(struct mail *mail, void *arg)
{
    struct seen *s = arg;

    assert_true(s->n < 64);
    s->kinds[s->n] = mail->kind;
    s->msgs[s->n++] = mail->msg;
    message_unref(&mail->msg); /* the handler owns the mail's reference */
}

static struct message *numbered(int i)
{
    char json[32];
    int n = snprintf(json, sizeof(json), "{\"n\":%d}", i);

    struct message *m = message_new("c", 1, json, (size_t)n);

    m->kind = MESSAGE_EVENT;
    return m;
}

static unsigned refs(struct message *m)
{
    return atomic_load(&m->refs);
}

static void drained_in_order(void **state)
{
    atomic_int wakes = 0;
    struct mailbox *mb = mailbox_new(SIZE_MAX, count_wake, &wakes);
    struct message *m[5];
    struct seen seen = {0};

    (void)state;
    for (int i = 0; i < 5; i++) {
        m[i] = numbered(i);
        assert_int_equal(mailbox_post(mb, MAIL_EVENT, m[i], NULL), 0);
        assert_int_equal(refs(m[i]), 2); /* the mail holds one */
    }
    assert_int_equal(mailbox_drain(mb, record, &seen), 5);
    assert_int_equal(seen.n, 5);
    for (int i = 0; i < 5; i++) {
        assert_ptr_equal(seen.msgs[i], m[i]);
        assert_int_equal(seen.kinds[i], MAIL_EVENT);
        assert_int_equal(refs(m[i]), 1);
    }
    /* an empty drain calls nothing */
    assert_int_equal(mailbox_drain(mb, record, &seen), 0);
    assert_int_equal(seen.n, 5);
    /* a second round keeps its own order */
    assert_int_equal(mailbox_post(mb, MAIL_EVENT, m[3], NULL), 0);
    assert_int_equal(mailbox_post(mb, MAIL_DRAIN, NULL, NULL), 0);
    assert_int_equal(mailbox_post(mb, MAIL_EVENT, m[1], NULL), 0);
    assert_int_equal(mailbox_drain(mb, record, &seen), 3);
    assert_ptr_equal(seen.msgs[5], m[3]);
    assert_int_equal(seen.kinds[6], MAIL_DRAIN);
    assert_null(seen.msgs[6]);
    assert_ptr_equal(seen.msgs[7], m[1]);
    mailbox_free(mb);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(refs(m[i]), 1);
        message_unref(&m[i]);
    }
}

static void wake_only_when_turning_non_empty(void **state)
{
    atomic_int wakes = 0;
    struct mailbox *mb = mailbox_new(SIZE_MAX, count_wake, &wakes);
    struct message *m = numbered(0);
    struct seen seen = {0};

    (void)state;
    assert_int_equal(atomic_load(&wakes), 0);
    assert_int_equal(mailbox_post(mb, MAIL_EVENT, m, NULL), 0);
    assert_int_equal(atomic_load(&wakes), 1);
    for (int i = 0; i < 9; i++)
        assert_int_equal(mailbox_post(mb, MAIL_EVENT, m, NULL), 0);
    assert_int_equal(atomic_load(&wakes), 1);
    assert_int_equal(mailbox_drain(mb, record, &seen), 10);
    assert_int_equal(atomic_load(&wakes), 1);
    mailbox_drain(mb, record, &seen); /* empty: no wake either */
    assert_int_equal(atomic_load(&wakes), 1);
    assert_int_equal(mailbox_post(mb, MAIL_DRAIN, NULL, NULL), 0);
    assert_int_equal(atomic_load(&wakes), 2);
    assert_int_equal(mailbox_post(mb, MAIL_EVENT, m, NULL), 0);
    assert_int_equal(atomic_load(&wakes), 2);
    /* a refused post does not wake; one event always fits an empty mailbox */
    mailbox_free(mb);
    mb = mailbox_new(1, count_wake, &wakes);
    assert_int_equal(mailbox_post(mb, MAIL_EVENT, m, NULL), 0);
    assert_int_equal(atomic_load(&wakes), 3);
    assert_int_equal(mailbox_post(mb, MAIL_EVENT, m, NULL), -1);
    assert_int_equal(atomic_load(&wakes), 3);
    mailbox_free(mb);
    assert_int_equal(refs(m), 1);
    message_unref(&m);
}

static void max_bytes_refuses_events_only(void **state)
{
    atomic_int wakes = 0;
    struct message *m = numbered(0), *extra = numbered(1);
    size_t w = message_wire_len(m);
    struct mailbox *mb = mailbox_new(3 * w, count_wake, &wakes);
    struct message *gap = message_gap("c", 1, "E", 4, 9);
    struct seen seen = {0};

    (void)state;
    assert_int_equal(message_wire_len(extra), w);
    for (int i = 0; i < 3; i++)
        assert_int_equal(mailbox_post(mb, MAIL_EVENT, m, NULL), 0);
    assert_int_equal(mailbox_bytes(mb), 3 * w);
    assert_int_equal(mailbox_post(mb, MAIL_EVENT, extra, NULL), -1);
    assert_int_equal(refs(extra), 1); /* refused: no reference taken */
    assert_int_equal(mailbox_depth(mb), 3);
    /* a drain order and a gap are never refused */
    assert_int_equal(mailbox_post(mb, MAIL_DRAIN, NULL, NULL), 0);
    assert_int_equal(mailbox_post(mb, MAIL_EVENT, gap, NULL), 0);
    assert_int_equal(mailbox_depth(mb), 5);
    assert_int_equal(mailbox_post(mb, MAIL_EVENT, extra, NULL), -1);
    assert_int_equal(mailbox_drain(mb, record, &seen), 5);
    assert_int_equal(seen.kinds[3], MAIL_DRAIN);
    assert_ptr_equal(seen.msgs[4], gap);
    assert_int_equal(mailbox_bytes(mb), 0);
    /* room again after the drain */
    for (int i = 0; i < 3; i++)
        assert_int_equal(mailbox_post(mb, MAIL_EVENT, extra, NULL), 0);
    assert_int_equal(mailbox_post(mb, MAIL_EVENT, extra, NULL), -1);
    assert_int_equal(refs(extra), 4);
    mailbox_free(mb);
    assert_int_equal(refs(m), 1);
    assert_int_equal(refs(extra), 1);
    message_unref(&m);
    message_unref(&extra);
    message_unref(&gap);
}

static void depth_gauge(void **state)
{
    atomic_int wakes = 0;
    struct mailbox *mb = mailbox_new(SIZE_MAX, count_wake, &wakes);
    struct message *m = numbered(0);
    struct seen seen = {0};

    (void)state;
    assert_int_equal(mailbox_depth(mb), 0);
    for (int i = 1; i <= 40; i++) {
        assert_int_equal(mailbox_post(mb, MAIL_EVENT, m, NULL), 0);
        assert_int_equal(mailbox_depth(mb), i);
        assert_int_equal(mailbox_bytes(mb), i * message_wire_len(m));
    }
    assert_int_equal(mailbox_drain(mb, record, &seen), 40);
    assert_int_equal(mailbox_depth(mb), 0);
    assert_int_equal(mailbox_bytes(mb), 0);
    assert_int_equal(mailbox_post(mb, MAIL_EVENT, m, NULL), 0);
    assert_int_equal(mailbox_depth(mb), 1);
    mailbox_free(mb);
    message_unref(&m);
}

/* A handler that posts: what it posts waits for the next drain. */
struct repost {
    struct mailbox *mb;
    struct message *m;
    int handled;
};

static void repost_once(struct mail *mail, void *arg)
{
    struct repost *r = arg;

    r->handled++;
    if (mail->kind == MAIL_DRAIN)
        assert_int_equal(mailbox_post(r->mb, MAIL_EVENT, r->m, NULL), 0);
    message_unref(&mail->msg);
}

static void post_from_inside_a_drain(void **state)
{
    atomic_int wakes = 0;
    struct repost r = {.m = numbered(0)};

    (void)state;
    r.mb = mailbox_new(SIZE_MAX, count_wake, &wakes);
    assert_int_equal(mailbox_post(r.mb, MAIL_DRAIN, NULL, NULL), 0);
    assert_int_equal(mailbox_post(r.mb, MAIL_EVENT, r.m, NULL), 0);
    assert_int_equal(mailbox_drain(r.mb, repost_once, &r), 2);
    assert_int_equal(r.handled, 2);
    assert_int_equal(atomic_load(&wakes), 2); /* the inner post found the queue empty */
    assert_int_equal(mailbox_depth(r.mb), 1);
    assert_int_equal(mailbox_drain(r.mb, repost_once, &r), 1);
    assert_int_equal(r.handled, 3);
    assert_int_equal(refs(r.m), 1);
    mailbox_free(r.mb);
    message_unref(&r.m);
}

static void free_drops_queued_mails(void **state)
{
    atomic_int wakes = 0;
    struct mailbox *mb = mailbox_new(SIZE_MAX, count_wake, &wakes);
    struct message *m = numbered(0);
    struct seen seen = {0};

    (void)state;
    /* mails in both arrays: some drained (so the arrays swapped), some waiting */
    for (int i = 0; i < 3; i++)
        mailbox_post(mb, MAIL_EVENT, m, NULL);
    mailbox_drain(mb, record, &seen);
    for (int i = 0; i < 5; i++)
        mailbox_post(mb, MAIL_EVENT, m, NULL);
    mailbox_post(mb, MAIL_DRAIN, NULL, NULL);
    assert_int_equal(refs(m), 6);
    mailbox_free(mb);
    assert_int_equal(refs(m), 1);
    message_unref(&m);
    mailbox_free(NULL);
}

/* --- one producer thread, one consumer (this thread) --- */

#define N_POSTS 100000
#define MAILBOX_BYTES 65536

struct pipe {
    struct mailbox *mb;
    struct message **msgs;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int is_woken;        /* {lock} */
    atomic_int wakes;    /* how many times wake ran */
    atomic_int refusals; /* posts refused for a full mailbox */
    size_t next;         /* consumer: index of the next expected message */
    size_t out_of_order;
};

static void pipe_wake(void *arg)
{
    struct pipe *p = arg;

    atomic_fetch_add(&p->wakes, 1);
    pthread_mutex_lock(&p->lock);
    p->is_woken = 1;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static void *producer(void *arg)
{
    struct pipe *p = arg;

    for (size_t i = 0; i < N_POSTS; i++) {
        while (mailbox_post(p->mb, MAIL_EVENT, p->msgs[i], NULL) < 0) {
            atomic_fetch_add(&p->refusals, 1);
            sched_yield();
        }
    }
    return NULL;
}

static void consume(struct mail *mail, void *arg)
{
    struct pipe *p = arg;

    if (p->next >= N_POSTS || mail->msg != p->msgs[p->next])
        p->out_of_order++;
    p->next++;
    message_unref(&mail->msg);
}

static void two_threads(void **state)
{
    struct pipe *p = calloc(1, sizeof(*p));
    pthread_t th;

    (void)state;
    assert_non_null(p);
    p->msgs = malloc(N_POSTS * sizeof(*p->msgs));
    assert_non_null(p->msgs);
    for (size_t i = 0; i < N_POSTS; i++)
        p->msgs[i] = numbered((int)i);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->mb = mailbox_new(MAILBOX_BYTES, pipe_wake, p);
    assert_int_equal(pthread_create(&th, NULL, producer, p), 0);

    while (p->next < N_POSTS) {
        struct timespec until;
        int rc = 0;

        /* sleep until woken; a lost wake would time out here */
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10;
        pthread_mutex_lock(&p->lock);
        while (!p->is_woken && rc == 0)
            rc = pthread_cond_timedwait(&p->cond, &p->lock, &until);
        p->is_woken = 0;
        pthread_mutex_unlock(&p->lock);
        if (rc == ETIMEDOUT)
            print_error("no wake with %zu of %d messages seen\n", p->next, N_POSTS);
        assert_int_equal(rc, 0);
        mailbox_drain(p->mb, consume, p);
        assert_true(mailbox_bytes(p->mb) <= MAILBOX_BYTES);
    }
    pthread_join(th, NULL);
    assert_int_equal(mailbox_drain(p->mb, consume, p), 0);
    assert_int_equal(p->next, N_POSTS);
    assert_int_equal(p->out_of_order, 0);
    assert_in_range(atomic_load(&p->wakes), 1, N_POSTS);
    for (size_t i = 0; i < N_POSTS; i++) {
        assert_int_equal(refs(p->msgs[i]), 1); /* every mail's reference was released */
        message_unref(&p->msgs[i]);
    }
    mailbox_free(p->mb);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p->msgs);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(drained_in_order),
        cmocka_unit_test(wake_only_when_turning_non_empty),
        cmocka_unit_test(max_bytes_refuses_events_only),
        cmocka_unit_test(depth_gauge),
        cmocka_unit_test(post_from_inside_a_drain),
        cmocka_unit_test(free_drops_queued_mails),
        cmocka_unit_test(two_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
