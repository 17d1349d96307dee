/* test_session.c -- hub/delivery/session.c: the send queue and its byte budget, who is behind
 * the others (the pace), the wake
 * signal, fragment reassembly, the frame rate with its grace period, liveness and expiry, and
 * closing. */
#include "common/message.h"
#include "delivery/session.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define T0 INT64_C(1700000000000)

static size_t rx_len(const struct session *s)
{
    size_t n;

    session_rx(s, &n);
    return n;
}

static const char *rx_of(const struct session *s)
{
    size_t n;

    return session_rx(s, &n);
}

/* Pops every queued message; returns how many there were. */
static size_t drop_all(struct session *s)
{
    size_t n = 0;

    while (session_front(s)) {
        session_pop(s);
        n++;
    }
    return n;
}

static struct session_limits limits(size_t queue_bytes)
{
    return (struct session_limits){
        .send_queue_bytes = queue_bytes,
        .max_message_bytes = 100,
        .max_subscriptions = 10,
        .rate = {.per_sec = 10, .burst = 20},
        .rate_grace_ms = 5000,
    };
}

static unsigned refs(struct message *m)
{
    return atomic_load(&m->refs);
}

/* A message whose JSON is json_len bytes: wire length json_len + 2 below 126. */
static struct message *msg_of(size_t json_len)
{
    char buf[70000];

    assert_true(json_len < sizeof(buf));
    memset(buf, 'x', json_len);
    return message_new(NULL, 0, buf, json_len);
}

static void enqueue_up_to_budget(void **state)
{
    struct session_limits lim = limits(30);
    struct session *s = session_new(&lim, 7, T0, NULL, NULL);
    struct message *m = msg_of(8); /* 10 wire bytes */

    (void)state;
    assert_int_equal(session_id(s), 7);
    assert_int_equal(message_wire_len(m), 10);
    assert_null(session_front(s));
    assert_int_equal(session_send(s, m), 0);
    assert_int_equal(session_send(s, m), 0);
    /* the budget equal to the queued bytes is still within it */
    assert_int_equal(session_send(s, m), 0);
    assert_int_equal(session_queue_bytes(s), 30);
    assert_int_equal(refs(m), 4);
    /* one byte over: refused, nothing taken */
    assert_int_equal(session_send(s, m), -1);
    assert_int_equal(refs(m), 4);
    assert_int_equal(session_queue_len(s), 3);
    assert_int_equal(session_queue_bytes(s), 30);
    /* a pop makes room again */
    session_pop(s);
    assert_int_equal(session_queue_bytes(s), 20);
    assert_int_equal(refs(m), 3);
    assert_int_equal(session_send(s, m), 0);
    assert_int_equal(session_send(s, m), -1);
    session_free(s);
    assert_int_equal(refs(m), 1); /* session_free released the queue */
    message_unref(&m);
}

static void enqueue_exact_boundary_with_mixed_sizes(void **state)
{
    struct message *a = msg_of(125);   /* 127 */
    struct message *b = msg_of(126);   /* 130 */
    struct message *c = msg_of(65536); /* 65546 */
    size_t total = message_wire_len(a) + message_wire_len(b) + message_wire_len(c);
    struct session_limits lim = limits(total);
    struct session *s = session_new(&lim, 1, T0, NULL, NULL);
    struct message *one = msg_of(0); /* 2 */

    (void)state;
    assert_int_equal(total, 127 + 130 + 65546);
    assert_int_equal(session_send(s, c), 0);
    assert_int_equal(session_send(s, b), 0);
    assert_int_equal(session_queue_bytes(s), 65546 + 130);
    assert_int_equal(session_send(s, a), 0);
    assert_int_equal(session_queue_bytes(s), total);
    assert_int_equal(session_send(s, one), -1);
    session_pop(s);
    assert_int_equal(session_queue_bytes(s), 127 + 130);
    assert_ptr_equal(session_front(s), b);
    session_pop(s);
    session_pop(s);
    assert_int_equal(session_queue_bytes(s), 0);
    assert_null(session_front(s));
    session_pop(s); /* empty: nothing */
    assert_int_equal(session_queue_bytes(s), 0);
    assert_int_equal(session_queue_len(s), 0);
    session_free(s);
    message_unref(&a);
    message_unref(&b);
    message_unref(&c);
    message_unref(&one);
}

static void message_larger_than_budget(void **state)
{
    struct session_limits lim = limits(1024);
    struct session *s = session_new(&lim, 1, T0, NULL, NULL);
    struct message *big = msg_of(1023); /* 1027 wire bytes */

    (void)state;
    assert_int_equal(session_send(s, big), -1);
    assert_int_equal(refs(big), 1);
    assert_int_equal(session_queue_len(s), 0);
    assert_int_equal(session_queue_bytes(s), 0);
    session_free(s);
    message_unref(&big);
}

static void fifo_across_ring_growth(void **state)
{
    struct session_limits lim = limits(1u << 30);
    struct session *s = session_new(&lim, 1, T0, NULL, NULL);
    struct message *msgs[120];
    size_t bytes = 0;
    int next_out = 0, next_in = 0;

    (void)state;
    for (int i = 0; i < 120; i++) {
        char json[32];
        int n = snprintf(json, sizeof(json), "{\"i\":%d}", i);

        msgs[i] = message_new(NULL, 0, json, (size_t)n);
    }
    /* wrap the ring before it first grows: head moves to the middle */
    for (; next_in < 6; next_in++) {
        assert_int_equal(session_send(s, msgs[next_in]), 0);
        bytes += message_wire_len(msgs[next_in]);
    }
    for (; next_out < 4; next_out++) {
        assert_ptr_equal(session_front(s), msgs[next_out]);
        session_pop(s);
        bytes -= message_wire_len(msgs[next_out]);
    }
    /* fill past the first capacity while wrapped, then on to 100 queued */
    for (; next_in < 104; next_in++) {
        assert_int_equal(session_send(s, msgs[next_in]), 0);
        bytes += message_wire_len(msgs[next_in]);
        assert_int_equal(session_queue_bytes(s), bytes);
        assert_ptr_equal(session_front(s), msgs[next_out]);
    }
    assert_int_equal(session_queue_len(s), 100);
    /* drain half, add the rest, drain everything: strict FIFO */
    for (; next_out < 54; next_out++) {
        assert_ptr_equal(session_front(s), msgs[next_out]);
        session_pop(s);
        bytes -= message_wire_len(msgs[next_out]);
        assert_int_equal(session_queue_bytes(s), bytes);
    }
    for (; next_in < 120; next_in++)
        assert_int_equal(session_send(s, msgs[next_in]), 0);
    for (; next_out < 120; next_out++) {
        struct message *f = session_front(s);

        assert_ptr_equal(f, msgs[next_out]);
        assert_int_equal(refs(f), 2);
        session_pop(s);
        assert_int_equal(refs(msgs[next_out]), 1);
    }
    assert_null(session_front(s));
    assert_int_equal(session_queue_len(s), 0);
    assert_int_equal(session_queue_bytes(s), 0);
    session_free(s);
    for (int i = 0; i < 120; i++)
        message_unref(&msgs[i]);
}

static void drop_queue(void **state)
{
    struct session_limits lim = limits(1u << 20);
    struct session *s = session_new(&lim, 1, T0, NULL, NULL);
    struct message *m = msg_of(10);

    (void)state;
    assert_int_equal(drop_all(s), 0);
    for (int i = 0; i < 37; i++)
        assert_int_equal(session_send(s, m), 0);
    assert_int_equal(refs(m), 38);
    assert_int_equal(drop_all(s), 37);
    assert_int_equal(refs(m), 1);
    assert_int_equal(session_queue_len(s), 0);
    assert_int_equal(session_queue_bytes(s), 0);
    assert_null(session_front(s));
    assert_int_equal(drop_all(s), 0);
    /* still usable */
    assert_int_equal(session_send(s, m), 0);
    assert_ptr_equal(session_front(s), m);
    session_free(s);
    assert_int_equal(refs(m), 1);
    message_unref(&m);
    session_free(NULL);
}

static void closing_session_takes_nothing(void **state)
{
    struct session_limits lim = limits(1u << 20);
    struct session *s = session_new(&lim, 1, T0, NULL, NULL);
    struct message *m = msg_of(10);
    char longer[200];

    (void)state;
    assert_false(session_is_closing(s));
    session_send(s, m);
    session_send(s, m);
    assert_int_equal(session_close(s, 1013, "slow consumer"), 2);
    assert_true(session_is_closing(s));
    assert_int_equal(session_close_code(s), 1013);
    assert_string_equal(session_close_reason(s), "slow consumer");
    assert_int_equal(refs(m), 1);
    /* 1: closing, and nothing is kept */
    assert_int_equal(session_send(s, m), 1);
    assert_int_equal(refs(m), 1);
    assert_int_equal(session_queue_len(s), 0);
    assert_int_equal(session_queue_bytes(s), 0);
    assert_null(session_front(s));
    /* the first close wins */
    assert_int_equal(session_close(s, 1008, "other"), 0);
    assert_int_equal(session_close_code(s), 1013);
    assert_string_equal(session_close_reason(s), "slow consumer");
    session_free(s);

    /* a long reason is cut to fit, a NULL one is empty */
    s = session_new(&lim, 2, T0, NULL, NULL);
    memset(longer, 'r', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    session_close(s, 1001, longer);
    assert_int_equal(strlen(session_close_reason(s)), 63);
    session_free(s);
    s = session_new(&lim, 3, T0, NULL, NULL);
    session_close(s, 1000, NULL);
    assert_string_equal(session_close_reason(s), "");
    assert_true(session_is_closing(s));
    session_free(s);
    message_unref(&m);
}

static void rx_append_limit(void **state)
{
    struct session_limits lim = limits(1024); /* max_message_bytes 100 */
    struct session *s = session_new(&lim, 1, T0, NULL, NULL);
    char data[200], want[200];

    (void)state;
    for (int i = 0; i < 200; i++)
        data[i] = (char)('A' + i % 26);
    /* exactly the limit in one piece */
    assert_int_equal(session_rx_append(s, data, 100), 0);
    assert_int_equal(rx_len(s), 100);
    assert_memory_equal(rx_of(s), data, 100);
    assert_int_equal(session_rx_append(s, data, 0), 0);
    assert_int_equal(session_rx_append(s, data, 1), -1);
    assert_int_equal(rx_len(s), 100);
    assert_memory_equal(rx_of(s), data, 100);
    session_rx_reset(s);
    assert_int_equal(rx_len(s), 0);
    /* one over in one piece */
    assert_int_equal(session_rx_append(s, data, 101), -1);
    assert_int_equal(rx_len(s), 0);
    /* the limit over several fragments */
    assert_int_equal(session_rx_append(s, data, 40), 0);
    assert_int_equal(session_rx_append(s, data + 40, 40), 0);
    assert_int_equal(session_rx_append(s, data + 80, 19), 0);
    assert_int_equal(session_rx_append(s, data + 99, 2), -1); /* would be 101 */
    assert_int_equal(rx_len(s), 99);
    assert_int_equal(session_rx_append(s, data + 99, 1), 0);
    assert_int_equal(rx_len(s), 100);
    assert_memory_equal(rx_of(s), data, 100);
    assert_int_equal(session_rx_append(s, data, 1), -1);
    session_rx_reset(s);
    /* after a reset the whole budget is back */
    memcpy(want, data + 50, 100);
    assert_int_equal(session_rx_append(s, data + 50, 60), 0);
    assert_int_equal(session_rx_append(s, data + 110, 40), 0);
    assert_memory_equal(rx_of(s), want, 100);
    session_free(s);
}

static void rx_append_grows_and_keeps_bytes(void **state)
{
    struct session_limits lim = limits(1024);
    struct session *s;
    char *data = malloc(70000);

    (void)state;
    assert_non_null(data);
    lim.max_message_bytes = 65536;
    s = session_new(&lim, 1, T0, NULL, NULL);
    for (int i = 0; i < 70000; i++)
        data[i] = (char)(i * 7 + i / 251);
    /* fragments of uneven sizes across many buffer growths */
    for (size_t off = 0, step = 1; off < 65536; step = step * 3 % 1000 + 1) {
        size_t n = off + step > 65536 ? 65536 - off : step;

        assert_int_equal(session_rx_append(s, data + off, n), 0);
        off += n;
        assert_int_equal(rx_len(s), off);
    }
    assert_memory_equal(rx_of(s), data, 65536);
    assert_int_equal(session_rx_append(s, data, 1), -1);
    /* a big buffer reset, then reused */
    session_rx_reset(s);
    assert_int_equal(rx_len(s), 0);
    assert_int_equal(session_rx_append(s, data + 5, 300), 0);
    assert_memory_equal(rx_of(s), data + 5, 300);
    session_free(s);
    free(data);
}

/* Sends a frame every step ms from *t until the session says CLOSE or until stop (exclusive);
 * reports the first refusal and the OK frames seen after it. */
struct flood {
    int64_t first_limited; /* -1: none */
    int64_t close_at;      /* -1: none */
    int64_t last_refused;
    int ok_after_limited;
    int ok;
};

static void flood(struct session *s, int64_t *t, int64_t stop, int64_t step, struct flood *f)
{
    for (; *t < stop; *t += step) {
        enum session_rate r = session_rate_check(s, *t, 1);

        if (r == SESSION_RATE_OK) {
            f->ok++;
            if (f->first_limited >= 0)
                f->ok_after_limited++;
            continue;
        }
        if (f->first_limited < 0)
            f->first_limited = *t;
        f->last_refused = *t;
        if (r == SESSION_RATE_CLOSE) {
            f->close_at = *t;
            return;
        }
        assert_int_equal(r, SESSION_RATE_LIMITED);
    }
}

static void rate_at_the_limit_is_fine(void **state)
{
    struct session_limits lim = limits(1024);
    struct session *s = session_new(&lim, 1, T0, NULL, NULL);
    struct flood f = {.first_limited = -1, .close_at = -1};
    int64_t t = T0;

    (void)state;
    /* ten a second for a minute, after the burst at start */
    for (int i = 0; i < 20; i++)
        assert_int_equal(session_rate_check(s, T0, 1), SESSION_RATE_OK);
    assert_int_equal(session_rate_check(s, T0, 1), SESSION_RATE_LIMITED);
    t = T0 + 100;
    flood(s, &t, T0 + 60000, 100, &f);
    assert_int_equal(f.first_limited, -1);
    assert_int_equal(f.ok, 599);
    session_free(s);
}

static void steady_flood_closes_after_grace(void **state)
{
    struct session_limits lim = limits(1024); /* 10/s, burst 20, grace 5000 ms */
    struct session *s = session_new(&lim, 1, T0, NULL, NULL);
    struct flood f = {.first_limited = -1, .close_at = -1};
    int64_t t = T0;

    (void)state;
    /* 100 frames a second: the refill lets one in every 100 ms, and the run goes on */
    flood(s, &t, T0 + 60000, 10, &f);
    /* 20 + 2.2 tokens are there at 220 ms: the 23rd frame is the first refused */
    assert_int_equal(f.first_limited, T0 + 220);
    assert_true(f.close_at >= f.first_limited + lim.rate_grace_ms);
    assert_true(f.close_at < f.first_limited + lim.rate_grace_ms + 100);
    assert_in_range(f.ok_after_limited, 45, 55);
    session_free(s);
}

static void pause_over_a_second_resets_the_run(void **state)
{
    struct session_limits lim = limits(1024);
    struct session *s = session_new(&lim, 1, T0, NULL, NULL);
    struct flood f = {.first_limited = -1, .close_at = -1};
    struct flood g = {.first_limited = -1, .close_at = -1};
    int64_t t = T0;

    (void)state;
    flood(s, &t, T0 + 3000, 10, &f);
    assert_int_equal(f.close_at, -1);
    assert_true(f.first_limited > 0);
    /* silence for 1.5 s, then the flood again: a new run with a whole grace period */
    t = f.last_refused + 1500;
    flood(s, &t, T0 + 60000, 10, &g);
    assert_true(g.first_limited > f.last_refused + 1500);
    assert_true(g.close_at >= g.first_limited + lim.rate_grace_ms);
    assert_true(g.close_at < g.first_limited + lim.rate_grace_ms + 100);
    assert_true(g.close_at > f.first_limited + lim.rate_grace_ms + 1000);
    session_free(s);
}

static void pause_under_a_second_keeps_the_run(void **state)
{
    struct session_limits lim = limits(1024);
    struct session *s = session_new(&lim, 1, T0, NULL, NULL);
    struct flood f = {.first_limited = -1, .close_at = -1};
    struct flood g = {.first_limited = -1, .close_at = -1};
    int64_t t = T0;

    (void)state;
    flood(s, &t, T0 + 3000, 10, &f);
    assert_int_equal(f.close_at, -1);
    /* 500 ms of silence: the refill lets 5 frames in, then the same run goes on */
    t = f.last_refused + 500;
    flood(s, &t, T0 + 60000, 10, &g);
    assert_true(g.close_at >= f.first_limited + lim.rate_grace_ms);
    assert_true(g.close_at < f.first_limited + lim.rate_grace_ms + 100);
    session_free(s);
}

/* Every session of a plane adds to one sum: the plane's backlog. A push past the budget is
 * refused unless pushed over it (the writer's call when the socket keeps up). */
static void plane_sum_and_pushing_over_the_budget(void **state)
{
    struct session_stats stats = {0};
    struct session_limits lim = limits(30);
    struct session *a, *b;
    struct message *m = msg_of(10); /* 12 bytes on the wire */

    (void)state;
    lim.stats = &stats;
    a = session_new(&lim, 1, T0, NULL, NULL);
    b = session_new(&lim, 2, T0, NULL, NULL);
    assert_int_equal(session_send(a, m), 0);
    assert_int_equal(session_send(a, m), 0);
    assert_int_equal(session_send(b, m), 0);
    assert_int_equal(stats.queued_bytes, 36);
    assert_int_equal(session_send(a, m), -1); /* 36 > 30 */
    assert_int_equal(session_push_over(a, message_ref(m)), 0);
    assert_int_equal(session_queue_bytes(a), 36);
    assert_int_equal(stats.queued_bytes, 48);
    session_pop(a);
    assert_int_equal(stats.queued_bytes, 36);
    assert_int_equal(session_close(a, 1013, "slow consumer"), 2);
    assert_int_equal(stats.queued_bytes, 12);
    assert_int_equal(session_push_over(a, m), 1); /* closing: nothing taken */
    session_free(b);
    assert_int_equal(stats.queued_bytes, 0);
    session_free(a);
    assert_int_equal(refs(m), 1);
    message_unref(&m);
}

/* Queues count copies of m on s past any budget. */
static void push_n(struct session *s, struct message *m, int count)
{
    for (int i = 0; i < count; i++)
        assert_int_equal(session_push_over(s, message_ref(m)), 0);
}

/* Pops count messages of s (its socket took them). */
static void pop_n(struct session *s, int count)
{
    for (int i = 0; i < count; i++)
        session_pop(s);
}

static void reader_far_below_the_pace_is_behind(void **state)
{
    struct session_stats stats = {0};
    struct session_limits lim = limits(120); /* ten 12-byte frames */
    struct session *fast, *slow, *half;
    struct message *m = msg_of(10);

    (void)state;
    lim.stats = &stats;
    fast = session_new(&lim, 1, T0, NULL, NULL);
    slow = session_new(&lim, 2, T0, NULL, NULL);
    half = session_new(&lim, 3, T0, NULL, NULL);
    session_stats_roll(&stats, T0);
    /* a window: every reader is given 20 frames; fast takes them all, half takes 5 (it then
     * holds 15, past its budget of 10), slow takes none */
    push_n(fast, m, 20);
    push_n(half, m, 20);
    push_n(slow, m, 20);
    pop_n(fast, 20);
    pop_n(half, 5);
    assert_false(session_is_behind(slow, 0, T0)); /* past its budget from now on */
    assert_false(session_is_behind(half, 0, T0));
    assert_false(session_is_behind(slow, 0, T0 + 999)); /* no pace yet */
    session_stats_roll(&stats, T0 + 999);               /* too early: the window stays open */
    session_stats_roll(&stats, T0 + 1000);
    /* (20 + 5) frames of 12 bytes by 2 sockets in 1000 ms */
    assert_true(stats.pace > 0.149 && stats.pace < 0.151);
    /* a window past its budget, nothing taken: behind */
    assert_true(session_is_behind(slow, 0, T0 + 1000));
    /* half took 12 bytes since it went past: under a quarter of 0.15 x 1000 */
    session_pop(half);
    assert_true(session_is_behind(half, 0, T0 + 1000));
    /* 48 bytes: over a quarter */
    pop_n(half, 3);
    assert_int_equal(session_queue_bytes(half), 132);
    assert_false(session_is_behind(half, 0, T0 + 1000));
    /* back under its budget, slow goes past again at T0 + 5000: the pace of a window that began
     * before that does not count */
    pop_n(slow, 11);
    assert_int_equal(session_queue_bytes(slow), 108);
    assert_false(session_is_behind(slow, 24, T0 + 5000));
    session_stats_roll(&stats, T0 + 5500);
    assert_true(stats.pace > 0);
    assert_false(session_is_behind(slow, 24, T0 + 6000));
    /* a window all after it: fast takes 20 frames, slow none */
    push_n(fast, m, 20);
    pop_n(fast, 20);
    session_stats_roll(&stats, T0 + 6500);
    assert_true(session_is_behind(slow, 24, T0 + 6500));
    session_free(fast);
    session_free(slow);
    session_free(half);
    message_unref(&m);
}

static void readers_behind_together_are_cut_only_at_the_cap(void **state)
{
    struct session_stats stats = {0};
    struct session_limits lim = limits(120);
    struct session *r[3];
    struct message *m = msg_of(10);
    int64_t t = T0;

    (void)state;
    lim.stats = &stats;
    for (int i = 0; i < 3; i++)
        r[i] = session_new(&lim, (uint64_t)i + 1, T0, NULL, NULL);
    session_stats_roll(&stats, t);
    /* every window each is given 12 frames and takes 8: all fall behind at the same pace */
    for (int w = 0; w < 9; w++) {
        for (int i = 0; i < 3; i++) {
            push_n(r[i], m, 12);
            pop_n(r[i], 8);
            assert_false(session_is_behind(r[i], 0, t));
        }
        t += 1000;
        session_stats_roll(&stats, t);
    }
    /* then all stop reading together for windows: the pace is 0, no one is behind the others */
    for (int w = 0; w < 3; w++) {
        for (int i = 0; i < 3; i++)
            assert_false(session_is_behind(r[i], 12, t));
        t += 1000;
        session_stats_roll(&stats, t);
    }
    assert_true(stats.pace == 0);
    /* 9 x 4 frames behind (432 bytes); the cap is 4 x 120 */
    assert_int_equal(session_queue_bytes(r[0]), 432);
    assert_false(session_is_behind(r[0], 48, t));
    assert_true(session_is_behind(r[0], 49, t));
    /* a dropped queue is not taken: it adds nothing to the pace */
    assert_int_equal(session_close(r[1], 1013, "slow consumer"), 36);
    assert_int_equal(stats.window_bytes, 0);
    for (int i = 0; i < 3; i++)
        session_free(r[i]);
    message_unref(&m);
}

static void count_wake(void *arg)
{
    (*(int *)arg)++;
}

static void silent_peer_is_pinged_then_dropped(void **state)
{
    struct session_limits lim = limits(1000);
    int wakes = 0;
    struct session *s = session_new(&lim, 1, T0, count_wake, &wakes);
    int64_t hb = 1000;

    (void)state;
    assert_int_equal(session_check(s, T0 + 999, 0, hb), SESSION_OK);
    assert_int_equal(session_check(s, T0 + 1000, 0, hb), SESSION_PING);
    assert_int_equal(wakes, 1); /* an idle queue: the writer is woken for the ping */
    assert_true(session_take_ping(s));
    assert_false(session_take_ping(s));
    assert_int_equal(session_check(s, T0 + 1500, 0, hb), SESSION_OK); /* pinged a moment ago */
    session_heard(s, T0 + 1600);                                      /* the pong */
    assert_int_equal(session_check(s, T0 + 3599, 0, hb), SESSION_PING);
    assert_int_equal(session_check(s, T0 + 3600, 0, hb), SESSION_SILENT);
    session_free(s);
}

/* An SSE stream: the peer never sends, so silence says nothing; a ping every heartbeat. */
static void listen_only_is_pinged_every_heartbeat_and_never_silent(void **state)
{
    struct session_limits lim = limits(1000);
    int wakes = 0;
    struct session *s = session_new(&lim, 1, T0, count_wake, &wakes);
    int64_t hb = 1000;

    (void)state;
    session_set_listen_only(s);
    session_set_expiry(s, 50);
    assert_int_equal(session_check(s, T0 + 999, 10, hb), SESSION_OK);
    for (int i = 1; i <= 10; i++) {
        assert_int_equal(session_check(s, T0 + i * hb, 10, hb), SESSION_PING);
        assert_true(session_take_ping(s));
        assert_int_equal(session_check(s, T0 + i * hb + hb / 2, 10, hb), SESSION_OK);
    }
    assert_int_equal(wakes, 10);
    assert_int_equal(session_check(s, T0 + 60 * hb, 50, hb), SESSION_EXPIRED); /* still */
    session_free(s);
}

/* A jam is a second of refusals with nothing taken, while refusals still come. */
static void jam_is_refusals_with_nothing_taken(void **state)
{
    struct session_jam j = {0};
    int64_t t = 10000;

    (void)state;
    assert_false(session_jam_update(&j, 5, 0, t));         /* publishes taken */
    assert_false(session_jam_update(&j, 5, 3, t + 250));   /* refusals begin */
    assert_false(session_jam_update(&j, 5, 9, t + 1000));  /* 750 ms of them */
    assert_true(session_jam_update(&j, 5, 20, t + 1250));  /* a second: a jam */
    assert_true(session_jam_update(&j, 5, 20, t + 2500));  /* a publisher waiting Retry-After */
    assert_false(session_jam_update(&j, 6, 21, t + 2750)); /* one taken: over */
    assert_false(session_jam_update(&j, 6, 30, t + 3000));
    assert_true(session_jam_update(&j, 6, 40, t + 4000));
    assert_false(session_jam_update(&j, 6, 40, t + 6750)); /* no refusal for 2.75 s: over */
    assert_false(session_jam_update(&j, 6, 40, t + 9000)); /* an idle hub is not jammed */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(enqueue_up_to_budget),
        cmocka_unit_test(enqueue_exact_boundary_with_mixed_sizes),
        cmocka_unit_test(message_larger_than_budget),
        cmocka_unit_test(fifo_across_ring_growth),
        cmocka_unit_test(drop_queue),
        cmocka_unit_test(closing_session_takes_nothing),
        cmocka_unit_test(rx_append_limit),
        cmocka_unit_test(rx_append_grows_and_keeps_bytes),
        cmocka_unit_test(rate_at_the_limit_is_fine),
        cmocka_unit_test(steady_flood_closes_after_grace),
        cmocka_unit_test(pause_over_a_second_resets_the_run),
        cmocka_unit_test(pause_under_a_second_keeps_the_run),
        cmocka_unit_test(plane_sum_and_pushing_over_the_budget),
        cmocka_unit_test(reader_far_below_the_pace_is_behind),
        cmocka_unit_test(readers_behind_together_are_cut_only_at_the_cap),
        cmocka_unit_test(jam_is_refusals_with_nothing_taken),
        cmocka_unit_test(silent_peer_is_pinged_then_dropped),
        cmocka_unit_test(listen_only_is_pinged_every_heartbeat_and_never_silent),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
