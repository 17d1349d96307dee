/* test_shard.c -- hub/common/shard.c: the stable hash that places channels on Redis shards.
 * Every hub of a cluster, of every version, must place a channel on the same shard, so the
 * values below are pinned: if one of these tests fails, channels would move between shards in
 * a running cluster. tests/integration/test_redis_shards.py and tests/bench/cluster compute the
 * same placement in Python. */
#include "common/redis_url.h"
#include "common/shard.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The published FNV-1a 64 test vectors. */
static void hash_is_fnv1a_64(void **state)
{
    (void)state;
    assert_true(shard_hash("", 0) == UINT64_C(0xcbf29ce484222325));
    assert_true(shard_hash("a", 1) == UINT64_C(0xaf63dc4c8601ec8c));
    assert_true(shard_hash("foobar", 6) == UINT64_C(0x85944171f73967e8));
}

static void channels_are_pinned_to_shards(void **state)
{
    static const struct {
        const char *name;
        unsigned of2, of3, of7;
    } pinned[] = {
        {"orders", 0, 0, 6}, {"metrics", 0, 0, 6},
        {"demo", 1, 2, 2},   {"team.alpha:prices", 1, 1, 3},
        {"a", 1, 2, 2},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(pinned) / sizeof(pinned[0]); i++) {
        size_t len = strlen(pinned[i].name);

        assert_int_equal(shard_of(pinned[i].name, len, 2), pinned[i].of2);
        assert_int_equal(shard_of(pinned[i].name, len, 3), pinned[i].of3);
        assert_int_equal(shard_of(pinned[i].name, len, 7), pinned[i].of7);
        assert_int_equal(shard_of(pinned[i].name, len, 1), 0);
        assert_int_equal(shard_of(pinned[i].name, len, 0), 0);
    }
}

/* Channel names that differ in one character spread over the shards about evenly. */
static void names_spread_evenly(void **state)
{
    unsigned count[3] = {0};
    char name[32];

    (void)state;
    for (int i = 0; i < 3000; i++) {
        int len = snprintf(name, sizeof(name), "user-%d", i);

        count[shard_of(name, (size_t)len, 3)]++;
    }
    for (int k = 0; k < 3; k++) {
        assert_true(count[k] > 900);
        assert_true(count[k] < 1100);
    }
}

/* Jump consistent hashing: a shard appended to the list takes about 1/(n+1) of the channels,
 * and every other channel stays where it was. */
static void an_appended_shard_moves_few(void **state)
{
    char name[32];

    (void)state;
    for (unsigned n = 1; n < 8; n++) {
        unsigned moved = 0;

        for (int i = 0; i < 4000; i++) {
            int len = snprintf(name, sizeof(name), "chan-%d", i);
            unsigned before = shard_of(name, (size_t)len, n),
                     after = shard_of(name, (size_t)len, n + 1);

            if (after != before) {
                assert_int_equal(after, n); /* only ever to the new shard */
                moved++;
            }
        }
        assert_true(moved > 4000 / (n + 1) * 8 / 10);
        assert_true(moved < 4000 / (n + 1) * 12 / 10);
    }
}

static void names_leave_out_credentials(void **state)
{
    struct redis_url u;
    char err[128], name[SHARD_NAME_MAX];

    (void)state;
    assert_int_equal(
        redis_url_parse("redis://alice:s3cret@Redis-A.example:6380/2", &u, err, sizeof(err)), 0);
    shard_name(&u, name);
    assert_string_equal(name, "redis://redis-a.example:6380/2");
    assert_null(strstr(name, "s3cret"));
    assert_int_equal(redis_url_parse("redis://:pw@[::1]", &u, err, sizeof(err)), 0);
    shard_name(&u, name);
    assert_string_equal(name, "redis://[::1]:6379/0");
    assert_int_equal(redis_url_parse("redis://127.0.0.1", &u, err, sizeof(err)), 0);
    shard_name(&u, name);
    assert_string_equal(name, "redis://127.0.0.1:6379/0");
}

/* The digest tells lists apart by content and by order. */
static void digest_sees_order(void **state)
{
    char *ab[] = {"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6380/0"};
    char *ba[] = {"redis://127.0.0.1:6380/0", "redis://127.0.0.1:6379/0"};

    (void)state;
    assert_true(shard_list_digest(ab, 2) == UINT64_C(0x5532cfac01f3cb45));
    assert_true(shard_list_digest(ab, 2) != shard_list_digest(ba, 2));
    assert_true(shard_list_digest(ab, 1) != shard_list_digest(ab, 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hash_is_fnv1a_64),
        cmocka_unit_test(channels_are_pinned_to_shards),
        cmocka_unit_test(names_spread_evenly),
        cmocka_unit_test(an_appended_shard_moves_few),
        cmocka_unit_test(names_leave_out_credentials),
        cmocka_unit_test(digest_sees_order),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
