/* test_ratelimit.c -- hub/common/ratelimit.c: token buckets driven by a clock the test holds. */
#include "common/ratelimit.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* A realistic wall clock (2023, in ms): the arithmetic must not care where time starts. */
#define T0 INT64_C(1700000000000)

/* Takes everything there is at now_ms, one token at a time; returns how many were taken. */
static unsigned drain(struct ratelimit *b, const struct ratelimit_cfg *cfg, int64_t now_ms)
{
    unsigned n = 0;

    while (ratelimit_take(b, cfg, now_ms, 1) == 0)
        n++;
    return n;
}

static void full_bucket_at_start(void **state)
{
    struct ratelimit_cfg cfg = {.per_sec = 1, .burst = 5};
    struct ratelimit b;

    (void)state;
    ratelimit_init(&b, &cfg, T0);
    assert_int_equal(ratelimit_wait_ms(&b, &cfg, T0, 5), 0);
    /* more than the burst is never there, even at start */
    assert_int_equal(ratelimit_take(&b, &cfg, T0, 6), -1);
    assert_int_equal(drain(&b, &cfg, T0), 5);

    ratelimit_init(&b, &cfg, T0);
    assert_int_equal(ratelimit_take(&b, &cfg, T0, 5), 0);
    assert_int_equal(ratelimit_take(&b, &cfg, T0, 1), -1);
}

static void refill_stops_at_burst(void **state)
{
    struct ratelimit_cfg cfg = {.per_sec = 10, .burst = 20};
    struct ratelimit b;

    (void)state;
    ratelimit_init(&b, &cfg, 0);
    /* a minute later the bucket holds the burst (20), not 600 tokens */
    assert_int_equal(ratelimit_take(&b, &cfg, 60000, 21), -1);
    assert_int_equal(ratelimit_take(&b, &cfg, 60000, 20), 0);
}

static void refill_stops_at_burst_after_emptying(void **state)
{
    struct ratelimit_cfg cfg = {.per_sec = 100000, .burst = 3};
    struct ratelimit b;

    (void)state;
    ratelimit_init(&b, &cfg, T0);
    assert_int_equal(drain(&b, &cfg, T0), 3);
    /* a day at 100000/s would be 8.64e9 tokens: still 3 */
    assert_int_equal(drain(&b, &cfg, T0 + 86400000), 3);
}

static void refill_by_elapsed_time(void **state)
{
    struct ratelimit_cfg cfg = {.per_sec = 10, .burst = 20};
    struct ratelimit b;

    (void)state;
    ratelimit_init(&b, &cfg, T0);
    assert_int_equal(drain(&b, &cfg, T0), 20);
    /* 100 ms at 10/s: one token */
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 100, 2), -1);
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 100, 1), 0);
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 100, 1), -1);
    /* 900 ms more: nine */
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 1000, 10), -1);
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 1000, 9), 0);
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 1000, 1), -1);
    /* 1.5 s more: fifteen */
    assert_int_equal(drain(&b, &cfg, T0 + 2500), 15);
}

static void fractional_refill_at_slow_rate(void **state)
{
    struct ratelimit_cfg cfg = {.per_sec = 1, .burst = 1};
    struct ratelimit b;

    (void)state;
    ratelimit_init(&b, &cfg, T0);
    assert_int_equal(ratelimit_take(&b, &cfg, T0, 1), 0);
    /* 500 ms at 1/s is half a token: nothing to take */
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 500, 1), -1);
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 999, 1), -1);
    /* the halves seen by the refused calls are kept: at 1000 ms there is one */
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 1000, 1), 0);
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 1000, 1), -1);
}

static void fractional_refill_accumulates_in_small_steps(void **state)
{
    struct ratelimit_cfg cfg = {.per_sec = 3, .burst = 2};
    struct ratelimit b;
    int64_t t = T0;

    (void)state;
    ratelimit_init(&b, &cfg, t);
    assert_int_equal(drain(&b, &cfg, t), 2);
    /* 333 ms at 3/s is 0.999 token, even when seen 1 ms at a time */
    for (int i = 0; i < 333; i++)
        assert_int_equal(ratelimit_take(&b, &cfg, ++t, 1), -1);
    assert_int_equal(ratelimit_take(&b, &cfg, ++t, 1), 0); /* 334 ms: 1.002 */
    assert_int_equal(ratelimit_take(&b, &cfg, t, 1), -1);
}

static void clock_stepping_back_refills_nothing(void **state)
{
    struct ratelimit_cfg cfg = {.per_sec = 1, .burst = 10};
    struct ratelimit b;

    (void)state;
    ratelimit_init(&b, &cfg, T0 + 10000);
    assert_int_equal(drain(&b, &cfg, T0 + 10000), 10);
    /* the clock steps 5 s back: nothing, and the bucket does not count from the past */
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 5000, 1), -1);
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 10000, 1), -1);
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 10999, 1), -1);
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 11000, 1), 0);
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 11000, 1), -1);
}

static void clock_stepping_back_before_init(void **state)
{
    struct ratelimit_cfg cfg = {.per_sec = 10, .burst = 4};
    struct ratelimit b;

    (void)state;
    ratelimit_init(&b, &cfg, 0);
    assert_int_equal(drain(&b, &cfg, 0), 4);
    assert_int_equal(ratelimit_take(&b, &cfg, -1000000, 1), -1);
    assert_int_equal(ratelimit_take(&b, &cfg, 99, 1), -1);
    assert_int_equal(ratelimit_take(&b, &cfg, 100, 1), 0);
}

static void take_n_tokens(void **state)
{
    struct ratelimit_cfg cfg = {.per_sec = 10, .burst = 10};
    struct ratelimit b;

    (void)state;
    ratelimit_init(&b, &cfg, T0);
    assert_int_equal(ratelimit_take(&b, &cfg, T0, 0), 0);
    assert_int_equal(ratelimit_take(&b, &cfg, T0, 3), 0);
    /* a refusal takes nothing: 7 are left, not 7 - 8 */
    assert_int_equal(ratelimit_take(&b, &cfg, T0, 8), -1);
    assert_int_equal(ratelimit_take(&b, &cfg, T0, 7), 0);
    assert_int_equal(ratelimit_take(&b, &cfg, T0, 1), -1);
    assert_int_equal(ratelimit_take(&b, &cfg, T0, 0), 0);
    /* 500 ms: 5 */
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 500, 6), -1);
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 500, 5), 0);
    /* more than the burst never fits */
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 3600000, 11), -1);
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 3600000, 10), 0);
}

static void wait_ms_until_tokens(void **state)
{
    struct ratelimit_cfg cfg = {.per_sec = 10, .burst = 20};
    struct ratelimit b;

    (void)state;
    ratelimit_init(&b, &cfg, T0);
    assert_int_equal(ratelimit_wait_ms(&b, &cfg, T0, 1), 0);
    assert_int_equal(ratelimit_wait_ms(&b, &cfg, T0, 20), 0);
    assert_int_equal(ratelimit_take(&b, &cfg, T0, 15), 0);
    assert_int_equal(ratelimit_wait_ms(&b, &cfg, T0, 5), 0);
    assert_int_equal(ratelimit_wait_ms(&b, &cfg, T0, 6), 100);
    assert_int_equal(ratelimit_take(&b, &cfg, T0, 5), 0);
    assert_int_equal(ratelimit_wait_ms(&b, &cfg, T0, 1), 100);
    assert_int_equal(ratelimit_wait_ms(&b, &cfg, T0, 5), 500);
    assert_int_equal(ratelimit_wait_ms(&b, &cfg, T0 + 50, 1), 50);
    assert_int_equal(ratelimit_wait_ms(&b, &cfg, T0 + 100, 1), 0);
    /* wait_ms only looks: the bucket is still empty at T0 */
    assert_int_equal(ratelimit_take(&b, &cfg, T0, 1), -1);
    /* and waiting what it said is enough, a millisecond less is not */
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 499, 5), -1);
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + 500, 5), 0);
}

static void wait_ms_rounds_up(void **state)
{
    struct ratelimit_cfg cfg = {.per_sec = 3, .burst = 1};
    struct ratelimit b;
    int64_t w;

    (void)state;
    ratelimit_init(&b, &cfg, T0);
    assert_int_equal(ratelimit_take(&b, &cfg, T0, 1), 0);
    /* 1000/3 ms is 333.3: the answer must be 334, as 333 ms are not enough */
    w = ratelimit_wait_ms(&b, &cfg, T0, 1);
    assert_int_equal(w, 334);
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + w - 1, 1), -1);
    assert_int_equal(ratelimit_take(&b, &cfg, T0 + w, 1), 0);
}

static void wait_ms_after_clock_step_back(void **state)
{
    struct ratelimit_cfg cfg = {.per_sec = 1, .burst = 10};
    struct ratelimit b;
    int64_t now = T0 + 5000, w;

    (void)state;
    ratelimit_init(&b, &cfg, T0 + 10000);
    assert_int_equal(drain(&b, &cfg, T0 + 10000), 10);
    /* The clock stepped 5 s back. The next token comes 1 s after the last refill (T0 + 11000),
     * so a take after the promised wait must succeed, and one a millisecond sooner fail. */
    w = ratelimit_wait_ms(&b, &cfg, now, 1);
    assert_int_equal(ratelimit_take(&b, &cfg, now + w - 1, 1), -1);
    assert_int_equal(ratelimit_take(&b, &cfg, now + w, 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(full_bucket_at_start),
        cmocka_unit_test(refill_stops_at_burst),
        cmocka_unit_test(refill_stops_at_burst_after_emptying),
        cmocka_unit_test(refill_by_elapsed_time),
        cmocka_unit_test(fractional_refill_at_slow_rate),
        cmocka_unit_test(fractional_refill_accumulates_in_small_steps),
        cmocka_unit_test(clock_stepping_back_refills_nothing),
        cmocka_unit_test(clock_stepping_back_before_init),
        cmocka_unit_test(take_n_tokens),
        cmocka_unit_test(wait_ms_until_tokens),
        cmocka_unit_test(wait_ms_rounds_up),
        cmocka_unit_test(wait_ms_after_clock_step_back),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
