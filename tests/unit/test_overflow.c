/* test_overflow.c -- hub/common/overflow.c: events that found no room become one pending gap
 * per channel, covering their seqs, given out (taken or flushed) as gap frames. */
#include "common/keyhash.h"
#include "common/message.h"
#include "common/overflow.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static struct message *event(const char *channel, uint64_t seq)
{
    struct message *m = message_new(channel, strlen(channel), "{}", 2);

    m->kind = MESSAGE_EVENT;
    m->seq = seq;
    snprintf(m->epoch, sizeof(m->epoch), "E1");
    return m;
}

static void add(struct overflow *o, const char *channel, uint64_t seq)
{
    struct message *m = event(channel, seq);

    overflow_add(o, m);
    message_unref(&m);
}

static void one_gap_per_channel_covering_its_seqs(void **state)
{
    struct overflow *o = overflow_new();
    struct message *gap;

    (void)state;
    assert_int_equal(overflow_count(o), 0);
    assert_false(overflow_holds(o, "a", 1));
    add(o, "a", 5);
    add(o, "a", 6);
    add(o, "b", 9);
    add(o, "a", 8);
    assert_int_equal(overflow_count(o), 2);
    assert_true(overflow_holds(o, "a", 1));
    assert_false(overflow_holds(o, "c", 1));
    gap = overflow_take(o, "a", 1);
    assert_non_null(gap);
    assert_int_equal(gap->kind, MESSAGE_GAP);
    assert_int_equal(gap->seq_from, 5);
    assert_int_equal(gap->seq, 8);
    assert_string_equal(gap->epoch, "E1");
    assert_non_null(strstr((const char *)message_wire(gap),
                           "{\"type\":\"gap\",\"channel\":\"a\",\"from\":5,\"to\":8}"));
    message_unref(&gap);
    assert_null(overflow_take(o, "a", 1));
    assert_int_equal(overflow_count(o), 1);
    overflow_free(o);
}

struct sink {
    int taken, room;
    uint64_t from[8], to[8];
};

static int send_gap(struct message *gap, void *arg)
{
    struct sink *s = arg;

    if (s->room-- <= 0)
        return -1;
    s->from[s->taken] = gap->seq_from;
    s->to[s->taken++] = gap->seq;
    message_unref(&gap);
    return 0;
}

static void flush_stops_when_there_is_no_room(void **state)
{
    struct overflow *o = overflow_new();
    struct sink s = {.room = 2};

    (void)state;
    add(o, "a", 1);
    add(o, "b", 2);
    add(o, "c", 3);
    assert_int_equal(overflow_flush(o, send_gap, &s), 1);
    assert_int_equal(s.taken, 2);
    s.room = 5;
    assert_int_equal(overflow_flush(o, send_gap, &s), 0);
    assert_int_equal(s.taken, 3);
    assert_int_equal(overflow_count(o), 0);
    overflow_free(o);
    overflow_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_gap_per_channel_covering_its_seqs),
        cmocka_unit_test(flush_stops_when_there_is_no_room),
    };

    keyhash_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
