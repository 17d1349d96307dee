/* test_subscription.c -- hub/delivery/subscription.c (send, skip, hold and pace) and
 * hub/delivery/pacer.c (the plane's timer entries), on one member entry built by hand, with
 * the clock given as numbers. */
#include "common/message.h"
#include "delivery/pacer.h"
#include "delivery/subscription.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define SEC 1000000 /* us */

/* An event frame of channel "c" with event name `name` (NULL: none) and seq. */
static struct message *event(const char *name, uint64_t seq)
{
    char json[128];
    int n =
        name ? snprintf(json, sizeof(json),
                        "{\"type\":\"event\",\"channel\":\"c\",\"event\":\"%s\",\"seq\":%llu}",
                        name, (unsigned long long)seq)
             : snprintf(json, sizeof(json), "{\"type\":\"event\",\"channel\":\"c\",\"seq\":%llu}",
                        (unsigned long long)seq);
    struct message *m = message_new("c", 1, json, (size_t)n);

    m->kind = MESSAGE_EVENT;
    m->seq = seq;
    message_find_name(m);
    return m;
}

struct sent {
    uint64_t seq[128];
    int n;
};

static void record(struct message *msg, void *arg)
{
    struct sent *s = arg;

    assert_true(s->n < 128);
    s->seq[s->n++] = msg->seq;
}

/* A live member paced at per_sec. */
static struct channel_member live(uint32_t per_sec)
{
    struct channel_member m = {0};

    subscription_begin(&m);
    subscription_start(&m, 0, record, NULL);
    subscription_set_rate(&m, per_sec);
    return m;
}

/* Offers msg at now and drops the caller's reference. */
static enum sub_verdict offer(struct channel_member *m, struct message *msg, int64_t now,
                              struct sent *s, int64_t *due)
{
    enum sub_verdict v;

    *due = 0;
    v = subscription_offer(m, msg, now, record, s, due);
    message_unref(&msg);
    return v;
}

static void unpaced_sends_everything_once(void **state)
{
    struct channel_member m = live(0);
    struct sent s = {0};
    int64_t due;

    (void)state;
    assert_null(m.extra); /* no state without a rate */
    for (uint64_t i = 1; i <= 5; i++)
        assert_int_equal(offer(&m, event("g", i), 0, &s, &due), SUB_SEND);
    assert_int_equal(offer(&m, event("g", 3), 0, &s, &due), SUB_SKIP); /* seen */
    subscription_free_extra(m.extra);
}

static void latest_wins_and_the_last_arrives(void **state)
{
    struct channel_member m = live(2); /* 0.5 s slots */
    struct sent s = {0};
    int64_t due, next;

    (void)state;
    assert_int_equal(offer(&m, event("g", 1), 0, &s, &due), SUB_SEND);
    assert_int_equal(offer(&m, event("g", 2), SEC / 10, &s, &due), SUB_PACE);
    assert_int_equal(due, SEC / 2); /* a timer entry for the slot */
    assert_int_equal(offer(&m, event("g", 3), SEC / 5, &s, &due), SUB_PACE);
    assert_int_equal(due, 0); /* the entry is queued already */
    /* too early: a stale or early entry sends nothing */
    assert_int_equal(subscription_due(&m, SEC / 4, SEC / 4, record, &s), 0);
    assert_int_equal(s.n, 0);
    /* the slot comes: the newest (3) goes, 2 was skipped */
    next = subscription_due(&m, SEC / 2, SEC / 2, record, &s);
    assert_int_equal(next, 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.seq[0], 3);
    /* the slot is taken again until 1 s */
    assert_int_equal(offer(&m, event("g", 4), SEC * 9 / 10, &s, &due), SUB_PACE);
    assert_int_equal(due, SEC);
    assert_int_equal(subscription_due(&m, SEC, SEC, record, &s), 0);
    assert_int_equal(s.seq[1], 4);
    /* a quiet slot: the next one goes at once */
    assert_int_equal(offer(&m, event("g", 5), 3 * SEC, &s, &due), SUB_SEND);
    subscription_free_extra(m.extra);
}

static void names_are_paced_apart_in_seq_order(void **state)
{
    struct channel_member m = live(4); /* 0.25 s slots */
    struct sent s = {0};
    int64_t due;

    (void)state;
    assert_int_equal(offer(&m, event("cpu", 1), 0, &s, &due), SUB_SEND);
    assert_int_equal(offer(&m, event("mem", 2), 0, &s, &due), SUB_SEND); /* its own slot */
    assert_int_equal(offer(&m, event("cpu", 3), SEC / 10, &s, &due), SUB_PACE);
    assert_int_equal(due, SEC / 4);
    /* mem's slot is taken too: it waits, behind cpu's 3 */
    assert_int_equal(offer(&m, event("mem", 4), SEC / 10, &s, &due), SUB_PACE);
    /* an unnamed event has a slot of its own, free, but it waits behind 3 and 4 */
    assert_int_equal(offer(&m, event(NULL, 5), SEC / 10, &s, &due), SUB_PACE);
    assert_int_equal(subscription_due(&m, SEC / 4, SEC / 4, record, &s), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.seq[0], 3);
    assert_int_equal(s.seq[1], 4);
    assert_int_equal(s.seq[2], 5);
    subscription_free_extra(m.extra);
}

static void a_gap_sends_what_waits_first(void **state)
{
    struct channel_member m = live(1);
    struct sent s = {0};
    struct message *gap = message_gap("c", 1, "E", 3, 7);
    int64_t due;

    (void)state;
    assert_int_equal(offer(&m, event("g", 1), 0, &s, &due), SUB_SEND);
    assert_int_equal(offer(&m, event("g", 2), 10, &s, &due), SUB_PACE);
    assert_int_equal(subscription_offer(&m, gap, 20, record, &s, &due), SUB_SEND);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.seq[0], 2); /* before the gap */
    assert_int_equal(m.last_seq, 7);
    /* nothing is left for the timer entry */
    assert_int_equal(subscription_due(&m, SEC, SEC, record, &s), 0);
    assert_int_equal(s.n, 1);
    message_unref(&gap);
    subscription_free_extra(m.extra);
}

static void many_names_share_the_last_slot(void **state)
{
    struct channel_member m = live(1);
    struct sent s = {0};
    char name[16];
    int64_t due;
    int now = 0;

    (void)state;
    for (int i = 0; i < SUB_PACE_NAMES + 10; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        now += offer(&m, event(name, (uint64_t)i + 1), 0, &s, &due) == SUB_SEND;
    }
    /* SUB_PACE_NAMES names had slots of their own and went at once; the rest share the last
     * slot, whose latest goes when it frees */
    assert_int_equal(now, SUB_PACE_NAMES);
    assert_int_equal(subscription_due(&m, SEC, SEC, record, &s), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.seq[0], SUB_PACE_NAMES + 10);
    subscription_free_extra(m.extra);
}

static void held_events_are_not_paced(void **state)
{
    struct channel_member m = {0};
    struct sent s = {0};
    int64_t due;

    (void)state;
    subscription_begin(&m);
    subscription_set_rate(&m, 1);
    for (uint64_t i = 1; i <= 4; i++)
        assert_int_equal(offer(&m, event("g", i), 0, &s, &due), SUB_HOLD);
    assert_int_equal(subscription_held_bytes(&m) > 0, 1);
    subscription_start(&m, 2, record, &s); /* the position: 2; 3 and 4 are due */
    assert_int_equal(s.n, 2);
    assert_int_equal(s.seq[0], 3);
    assert_int_equal(s.seq[1], 4);
    subscription_free_extra(m.extra);
}

static void pacer_pops_in_due_order(void **state)
{
    struct pacer pc = {0};
    struct pace_entry e;
    static const int64_t dues[] = {50, 10, 40, 30, 20, 60, 10};

    (void)state;
    assert_int_equal(pacer_next(&pc), 0);
    for (size_t i = 0; i < sizeof(dues) / sizeof(dues[0]); i++)
        pacer_add(&pc, dues[i], i, "chan", 4);
    assert_int_equal(pacer_next(&pc), 10);
    assert_false(pacer_pop(&pc, 5, &e));
    assert_true(pacer_pop(&pc, 35, &e));
    assert_int_equal(e.due_us, 10);
    assert_string_equal(e.channel, "chan");
    assert_true(pacer_pop(&pc, 35, &e));
    assert_int_equal(e.due_us, 10);
    assert_true(pacer_pop(&pc, 35, &e));
    assert_int_equal(e.due_us, 20);
    assert_true(pacer_pop(&pc, 35, &e));
    assert_int_equal(e.due_us, 30);
    assert_false(pacer_pop(&pc, 35, &e));
    assert_int_equal(pacer_next(&pc), 40);
    pacer_clear(&pc);
    assert_int_equal(pacer_next(&pc), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unpaced_sends_everything_once),
        cmocka_unit_test(latest_wins_and_the_last_arrives),
        cmocka_unit_test(names_are_paced_apart_in_seq_order),
        cmocka_unit_test(a_gap_sends_what_waits_first),
        cmocka_unit_test(many_names_share_the_last_slot),
        cmocka_unit_test(held_events_are_not_paced),
        cmocka_unit_test(pacer_pops_in_due_order),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
