/* test_channel.c -- hub/delivery/channel.c with hub/common/channel_name.c and
 * hub/common/registry.c: channel names, the per-plane index and the registry. The registry is
 * process-wide, so every test here leaves its indexes empty and compares registry_count() with
 * what it was when the test began. */
#include "common/keyhash.h"
#include "common/registry.h"
#include "delivery/channel.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static bool valid(const char *s)
{
    return channel_name_is_valid(s, strlen(s));
}

static void name_lengths(void **state)
{
    char name[CHANNEL_NAME_MAX + 2];

    (void)state;
    assert_false(channel_name_is_valid("", 0));
    assert_false(channel_name_is_valid("abc", 0)); /* the length decides, not the NUL */
    assert_true(valid("a"));
    memset(name, 'a', sizeof(name));
    assert_true(channel_name_is_valid(name, CHANNEL_NAME_MAX));
    assert_false(channel_name_is_valid(name, CHANNEL_NAME_MAX + 1));
    name[0] = '$';
    assert_true(channel_name_is_valid(name, CHANNEL_NAME_MAX)); /* '$' counts in the 128 */
    assert_false(channel_name_is_valid(name, CHANNEL_NAME_MAX + 1));
    assert_true(channel_name_is_valid("abc!", 3));
    assert_false(channel_name_is_valid("abc!", 4));
}

static void name_characters(void **state)
{
    static const char *const ok[] = {
        "_",   "-",      ".",  ":",  "a_b",  "a-b", "a.b",
        "a:b", "Z",      "0",  "9",  "az09", "AZ",  "orders.eu-west:v1_x",
        "...", "$stats", "$a", "$_", "$-.:", "$0",
    };
    static const char *const bad[] = {
        "a b", " ",   "a/b",  "/",    "caf\xc3\xa9", "\xff", "a*",  "*",   "$",
        "a$",  "$$",  "$a$",  "a\tb", "a\nb",        "#",    "@",   "+",   ",",
        "a;",  "a\"", "a\\b", "[a]",  "a?",          "~",    "a%b", "a=b", "\x7f",
    };
    unsigned char c;
    char one[2] = {0};

    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (!valid(ok[i]))
            print_error("'%s' should be valid\n", ok[i]);
        assert_true(valid(ok[i]));
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (valid(bad[i]))
            print_error("'%s' should be invalid\n", bad[i]);
        assert_false(valid(bad[i]));
    }
    assert_false(channel_name_is_valid("a\0b", 3));
    /* exactly 26 + 26 + 10 + 4 single characters are names */
    {
        int n = 0;

        for (c = 1; c != 0; c++) {
            one[0] = (char)c;
            n += channel_name_is_valid(one, 1);
        }
        assert_int_equal(n, 66);
    }
}

static void reserved_names(void **state)
{
    (void)state;
    assert_true(valid("$stats"));
    assert_true(channel_name_is_reserved("$stats", 6));
    assert_false(channel_name_is_reserved("stats", 5));
    assert_false(channel_name_is_reserved("a$", 2));
    assert_false(channel_name_is_reserved("", 0));
}

static int m1, m2, m3; /* members: only their addresses matter */

static void join_already_limit(void **state)
{
    struct channel_index *idx = channel_index_new(0, 0, NULL);
    struct channel_set a = {0}, b = {0};
    size_t base = registry_count();
    uint32_t n = 99;

    (void)state;
    assert_int_equal(channel_index_count(idx), 0);
    assert_int_equal(channel_join(idx, &a, &m1, "x", 1, 2), CHANNEL_JOINED);
    assert_int_equal(channel_join(idx, &a, &m1, "x", 1, 2), CHANNEL_ALREADY);
    assert_int_equal(a.n, 1);
    assert_int_equal(channel_join(idx, &a, &m1, "y", 1, 2), CHANNEL_JOINED);
    assert_int_equal(channel_join(idx, &a, &m1, "z", 1, 2), CHANNEL_LIMIT);
    /* at the limit, a channel already held is still ALREADY */
    assert_int_equal(channel_join(idx, &a, &m1, "y", 1, 2), CHANNEL_ALREADY);
    assert_int_equal(a.n, 2);
    /* a refused join creates nothing */
    assert_int_equal(channel_index_count(idx), 2);
    assert_null(channel_members(idx, "z", 1, &n));
    assert_int_equal(n, 0);
    assert_int_equal(registry_count(), base + 2);
    /* the limit is per set: b may join z */
    assert_int_equal(channel_join(idx, &b, &m2, "z", 1, 1), CHANNEL_JOINED);
    assert_int_equal(channel_join(idx, &b, &m2, "x", 1, 1), CHANNEL_LIMIT);
    assert_int_equal(channel_join(idx, &b, &m2, "x", 1, 0), CHANNEL_LIMIT);
    /* leaving frees a place */
    assert_int_equal(channel_leave(idx, &a, "x", 1), 0);
    assert_int_equal(channel_join(idx, &a, &m1, "z", 1, 2), CHANNEL_JOINED);
    assert_int_equal(channel_index_count(idx), 2); /* y, z: x emptied */
    channel_leave_all(idx, &a);
    channel_leave_all(idx, &b);
    assert_int_equal(channel_index_count(idx), 0);
    assert_int_equal(registry_count(), base);
    channel_index_free(idx);
    channel_index_free(NULL);
}

static void members_listing(void **state)
{
    struct channel_index *idx = channel_index_new(0, 0, NULL);
    struct channel_set a = {0}, b = {0}, c = {0};
    const struct channel_member *mem;
    uint32_t n = 99;
    bool seen[3] = {false, false, false};

    (void)state;
    assert_null(channel_members(idx, "orders", 6, &n));
    assert_int_equal(n, 0);
    assert_int_equal(channel_join(idx, &a, &m1, "orders", 6, 10), CHANNEL_JOINED);
    assert_int_equal(channel_join(idx, &b, &m2, "orders", 6, 10), CHANNEL_JOINED);
    assert_int_equal(channel_join(idx, &c, &m3, "other", 5, 10), CHANNEL_JOINED);
    assert_int_equal(channel_join(idx, &c, &m3, "orders", 6, 10), CHANNEL_JOINED);
    mem = channel_members(idx, "orders", 6, &n);
    assert_non_null(mem);
    assert_int_equal(n, 3);
    for (uint32_t i = 0; i < n; i++) {
        int k = mem[i].member == &m1 ? 0 : mem[i].member == &m2 ? 1 : mem[i].member == &m3 ? 2 : -1;

        assert_true(k >= 0);
        assert_false(seen[k]);
        seen[k] = true;
        assert_ptr_equal(mem[i].set, k == 0 ? &a : k == 1 ? &b : &c);
        assert_true(mem[i].set_slot < mem[i].set->n);
    }
    /* c holds other then orders: two distinct slots */
    mem = channel_members(idx, "other", 5, &n);
    assert_int_equal(n, 1);
    assert_ptr_equal(mem[0].member, &m3);
    /* names are compared over their length, not up to a NUL */
    assert_int_equal(channel_join(idx, &a, &m1, "ordersXYZ", 6, 10), CHANNEL_ALREADY);
    assert_null(channel_members(idx, "order", 5, &n));
    assert_int_equal(n, 0);
    assert_null(channel_members(idx, "ordersX", 7, &n));
    assert_int_equal(channel_join(idx, &a, &m1, "abcdef", 3, 10), CHANNEL_JOINED);
    mem = channel_members(idx, "abc", 3, &n);
    assert_int_equal(n, 1);
    assert_ptr_equal(mem[0].member, &m1);
    assert_int_equal(channel_leave(idx, &a, "abcXYZ", 3), 0);
    assert_int_equal(channel_index_count(idx), 2);

    channel_leave_all(idx, &a);
    channel_leave_all(idx, &b);
    channel_leave_all(idx, &c);
    channel_index_free(idx);
}

static void leave_of_a_non_member(void **state)
{
    struct channel_index *idx = channel_index_new(0, 0, NULL);
    struct channel_set a = {0}, b = {0};
    uint32_t n;

    (void)state;
    assert_int_equal(channel_leave(idx, &a, "x", 1), -1); /* no such channel */
    assert_int_equal(channel_join(idx, &a, &m1, "x", 1, 10), CHANNEL_JOINED);
    assert_int_equal(channel_leave(idx, &b, "x", 1), -1); /* channel without b */
    assert_int_equal(channel_leave(idx, &a, "y", 1), -1);
    channel_members(idx, "x", 1, &n);
    assert_int_equal(n, 1);
    assert_int_equal(a.n, 1);
    assert_int_equal(b.n, 0);
    assert_int_equal(channel_leave(idx, &a, "x", 1), 0);
    assert_int_equal(channel_leave(idx, &a, "x", 1), -1); /* twice */
    assert_int_equal(channel_index_count(idx), 0);
    channel_leave_all(idx, &a);
    channel_leave_all(idx, &b);
    channel_index_free(idx);
}

static void channel_freed_when_empty(void **state)
{
    struct channel_index *idx = channel_index_new(0, 0, NULL);
    struct channel_set a = {0}, b = {0};
    size_t base = registry_count();
    uint32_t n = 99;

    (void)state;
    channel_join(idx, &a, &m1, "x", 1, 10);
    channel_join(idx, &b, &m2, "x", 1, 10);
    assert_int_equal(channel_index_count(idx), 1);
    assert_int_equal(registry_count(), base + 1);
    assert_int_equal(channel_leave(idx, &a, "x", 1), 0);
    assert_int_equal(channel_index_count(idx), 1);
    assert_int_equal(channel_leave(idx, &b, "x", 1), 0);
    assert_int_equal(channel_index_count(idx), 0);
    assert_int_equal(registry_count(), base);
    assert_null(channel_members(idx, "x", 1, &n));
    assert_int_equal(n, 0);
    /* and can be made again */
    assert_int_equal(channel_join(idx, &b, &m2, "x", 1, 10), CHANNEL_JOINED);
    channel_members(idx, "x", 1, &n);
    assert_int_equal(n, 1);
    channel_leave_all(idx, &a);
    channel_leave_all(idx, &b);
    assert_int_equal(registry_count(), base);
    channel_index_free(idx);
}

static void leave_all(void **state)
{
    struct channel_index *idx = channel_index_new(0, 0, NULL);
    struct channel_set a = {0}, b = {0};
    size_t base = registry_count();
    const char *names[] = {"c0", "c1", "c2", "c3", "c4", "c5"};
    const struct channel_member *mem;
    uint32_t n;

    (void)state;
    channel_leave_all(idx, &a); /* an empty set: nothing to do */
    assert_int_equal(a.n, 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(channel_join(idx, &a, &m1, names[i], 2, 10), CHANNEL_JOINED);
    for (int i = 0; i < 6; i += 2)
        assert_int_equal(channel_join(idx, &b, &m2, names[i], 2, 10), CHANNEL_JOINED);
    assert_int_equal(channel_index_count(idx), 6);
    channel_leave_all(idx, &a);
    assert_int_equal(a.n, 0);
    assert_null(a.v);
    assert_int_equal(a.cap, 0);
    /* the channels b shares survive, with b alone in them */
    assert_int_equal(channel_index_count(idx), 3);
    assert_int_equal(registry_count(), base + 3);
    for (int i = 0; i < 6; i++) {
        mem = channel_members(idx, names[i], 2, &n);
        assert_int_equal(n, i % 2 == 0 ? 1 : 0);
        if (n) {
            assert_ptr_equal(mem[0].member, &m2);
            assert_ptr_equal(mem[0].set, &b);
        }
    }
    /* b's set is still right: each leave finds its channel */
    assert_int_equal(channel_leave(idx, &b, "c2", 2), 0);
    assert_int_equal(channel_leave(idx, &b, "c1", 2), -1);
    /* a set is reusable after leave_all */
    assert_int_equal(channel_join(idx, &a, &m1, "c1", 2, 10), CHANNEL_JOINED);
    channel_leave_all(idx, &a);
    channel_leave_all(idx, &b);
    assert_int_equal(channel_index_count(idx), 0);
    assert_int_equal(registry_count(), base);
    channel_index_free(idx);
}

/* --- the swap-remove stress: a model of who is where, checked after every change --- */

#define N_MEMBERS 50
#define N_CHANNELS 5

struct model {
    struct channel_index *idx;
    struct channel_set sets[N_MEMBERS];
    int tags[N_MEMBERS]; /* the member pointers: &tags[i] */
    bool in[N_MEMBERS][N_CHANNELS];
    char names[N_CHANNELS][16];
    uint64_t rng;
};

static uint32_t next_rand(struct model *m)
{
    /* xorshift64*: reproducible */
    m->rng ^= m->rng >> 12;
    m->rng ^= m->rng << 25;
    m->rng ^= m->rng >> 27;
    return (uint32_t)((m->rng * UINT64_C(2685821657736338717)) >> 32);
}

static void check_model(struct model *m)
{
    size_t nonempty = 0;
    uint32_t held[N_MEMBERS] = {0};

    for (int c = 0; c < N_CHANNELS; c++) {
        uint32_t n, want = 0;
        const struct channel_member *mem =
            channel_members(m->idx, m->names[c], strlen(m->names[c]), &n);
        bool seen[N_MEMBERS] = {false};

        for (int i = 0; i < N_MEMBERS; i++)
            want += m->in[i][c];
        assert_int_equal(n, want);
        if (!n) {
            assert_null(mem);
            continue;
        }
        nonempty++;
        for (uint32_t k = 0; k < n; k++) {
            int i = (int)((int *)mem[k].member - m->tags);

            assert_true(i >= 0 && i < N_MEMBERS);
            assert_true(m->in[i][c]);
            assert_false(seen[i]);
            seen[i] = true;
            assert_ptr_equal(mem[k].set, &m->sets[i]);
            assert_true(mem[k].set_slot < m->sets[i].n);
        }
    }
    assert_int_equal(channel_index_count(m->idx), nonempty);
    /* each member's slots are distinct and cover its set */
    for (int i = 0; i < N_MEMBERS; i++) {
        uint32_t want = 0, mask = 0;

        for (int c = 0; c < N_CHANNELS; c++) {
            uint32_t n;
            const struct channel_member *mem =
                channel_members(m->idx, m->names[c], strlen(m->names[c]), &n);

            want += m->in[i][c];
            for (uint32_t k = 0; k < n; k++) {
                if (mem[k].member == &m->tags[i]) {
                    assert_true(mem[k].set_slot < 32);
                    assert_false(mask & (1u << mem[k].set_slot));
                    mask |= 1u << mem[k].set_slot;
                    held[i]++;
                }
            }
        }
        assert_int_equal(m->sets[i].n, want);
        assert_int_equal(held[i], want);
        assert_int_equal(mask, want ? (1u << want) - 1 : 0);
    }
}

static void model_join(struct model *m, int i, int c)
{
    enum channel_join_result r = channel_join(m->idx, &m->sets[i], &m->tags[i], m->names[c],
                                              strlen(m->names[c]), N_CHANNELS);

    assert_int_equal(r, m->in[i][c] ? CHANNEL_ALREADY : CHANNEL_JOINED);
    m->in[i][c] = true;
}

static void model_leave(struct model *m, int i, int c)
{
    int r = channel_leave(m->idx, &m->sets[i], m->names[c], strlen(m->names[c]));

    assert_int_equal(r, m->in[i][c] ? 0 : -1);
    m->in[i][c] = false;
}

static void swap_remove_in_any_order(void **state)
{
    struct model *m = calloc(1, sizeof(*m));
    size_t base = registry_count();
    int pairs[N_MEMBERS * N_CHANNELS][2], npairs = 0;

    (void)state;
    assert_non_null(m);
    m->idx = channel_index_new(0, 0, NULL);
    m->rng = UINT64_C(0x9e3779b97f4a7c15);
    for (int c = 0; c < N_CHANNELS; c++)
        snprintf(m->names[c], sizeof(m->names[c]), "chan-%d", c);

    /* everyone joins every channel, in a shuffled order of (member, channel) pairs */
    for (int i = 0; i < N_MEMBERS; i++)
        for (int c = 0; c < N_CHANNELS; c++) {
            pairs[npairs][0] = i;
            pairs[npairs][1] = c;
            npairs++;
        }
    for (int k = npairs - 1; k > 0; k--) {
        int j = (int)(next_rand(m) % (uint32_t)(k + 1)), t0 = pairs[k][0], t1 = pairs[k][1];

        pairs[k][0] = pairs[j][0];
        pairs[k][1] = pairs[j][1];
        pairs[j][0] = t0;
        pairs[j][1] = t1;
    }
    for (int k = 0; k < npairs; k++)
        model_join(m, pairs[k][0], pairs[k][1]);
    check_model(m);
    assert_int_equal(registry_count(), base + N_CHANNELS);

    /* half of the pairs leave, in the shuffled order: first, middle and last slots alike */
    for (int k = 0; k < npairs / 2; k++) {
        model_leave(m, pairs[k][0], pairs[k][1]);
        if (k % 10 == 0)
            check_model(m);
    }
    check_model(m);

    /* then random joins and leaves, checked after each */
    for (int k = 0; k < 3000; k++) {
        int i = (int)(next_rand(m) % N_MEMBERS), c = (int)(next_rand(m) % N_CHANNELS);

        if (next_rand(m) % 2)
            model_join(m, i, c);
        else
            model_leave(m, i, c);
        check_model(m);
    }

    /* a channel emptied member by member, last joined first and first joined first */
    for (int i = 0; i < N_MEMBERS; i++)
        if (!m->in[i][0])
            model_join(m, i, 0);
    for (int i = N_MEMBERS - 1; i >= 0; i -= 2)
        model_leave(m, i, 0);
    check_model(m);
    for (int i = 0; i < N_MEMBERS; i++)
        if (m->in[i][0])
            model_leave(m, i, 0);
    check_model(m);

    /* leave_all for half the members, then for the rest */
    for (int i = 0; i < N_MEMBERS; i += 2) {
        channel_leave_all(m->idx, &m->sets[i]);
        memset(m->in[i], 0, sizeof(m->in[i]));
        check_model(m);
    }
    for (int i = 1; i < N_MEMBERS; i += 2) {
        channel_leave_all(m->idx, &m->sets[i]);
        memset(m->in[i], 0, sizeof(m->in[i]));
    }
    check_model(m);
    assert_int_equal(channel_index_count(m->idx), 0);
    assert_int_equal(registry_count(), base);
    channel_index_free(m->idx);
    free(m);
}

static void registry_counts_distinct_names(void **state)
{
    struct channel_index *i1 = channel_index_new(0, 0, NULL), *i2 = channel_index_new(0, 0, NULL);
    struct channel_set a = {0}, b = {0}, c = {0};
    size_t base = registry_count();

    (void)state;
    channel_join(i1, &a, &m1, "shared", 6, 10);
    assert_int_equal(registry_count(), base + 1);
    channel_join(i2, &b, &m2, "shared", 6, 10);
    assert_int_equal(registry_count(), base + 1);
    channel_join(i2, &b, &m2, "only2", 5, 10);
    assert_int_equal(registry_count(), base + 2);
    channel_join(i1, &c, &m3, "shared", 6, 10); /* a second member, same plane */
    assert_int_equal(registry_count(), base + 2);
    assert_int_equal(channel_index_count(i1), 1);
    assert_int_equal(channel_index_count(i2), 2);

    channel_leave(i1, &a, "shared", 6);
    channel_leave(i1, &c, "shared", 6);
    /* i2 still holds shared */
    assert_int_equal(channel_index_count(i1), 0);
    assert_int_equal(registry_count(), base + 2);
    channel_leave(i2, &b, "only2", 5);
    assert_int_equal(registry_count(), base + 1);
    channel_join(i1, &a, &m1, "shared", 6, 10);
    channel_leave_all(i2, &b);
    assert_int_equal(registry_count(), base + 1);
    channel_leave_all(i1, &a);
    assert_int_equal(registry_count(), base);

    channel_leave_all(i1, &c);
    channel_index_free(i1);
    channel_index_free(i2);
}

/* Two planes on two threads join and leave the same names: the registry must end balanced. */
struct plane_arg {
    int tag;
    int rounds;
};

static void *plane_thread(void *p)
{
    struct plane_arg *arg = p;
    struct channel_index *idx = channel_index_new(0, 0, NULL);
    struct channel_set set = {0};
    char name[16];

    for (int r = 0; r < arg->rounds; r++) {
        snprintf(name, sizeof(name), "t%d", r % 7);
        channel_join(idx, &set, &arg->tag, name, strlen(name), 100);
        if (r % 3 == 2)
            channel_leave_all(idx, &set);
    }
    channel_leave_all(idx, &set);
    channel_index_free(idx);
    return NULL;
}

static void registry_is_thread_safe(void **state)
{
    struct plane_arg args[4];
    pthread_t th[4];
    size_t base = registry_count();

    (void)state;
    for (int i = 0; i < 4; i++) {
        args[i] = (struct plane_arg){.tag = i, .rounds = 20000};
        assert_int_equal(pthread_create(&th[i], NULL, plane_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(registry_count(), base);
}

/* The control plane posts an event only to the planes whose bit is set. */
static void registry_masks_name_the_planes(void **state)
{
    struct channel_index *a = channel_index_new(0, 0, NULL), *b = channel_index_new(3, 0, NULL);
    struct channel_set sa = {0}, sb = {0};
    int ma, mb;

    (void)state;
    assert_int_equal(registry_planes("mask-x", 6), 0);
    channel_join(a, &sa, &ma, "mask-x", 6, 10);
    assert_int_equal(registry_planes("mask-x", 6), 1);
    channel_join(b, &sb, &mb, "mask-x", 6, 10);
    assert_int_equal(registry_planes("mask-x", 6), 1 | 8);
    channel_leave(a, &sa, "mask-x", 6);
    assert_int_equal(registry_planes("mask-x", 6), 8);
    channel_leave_all(b, &sb);
    assert_int_equal(registry_planes("mask-x", 6), 0);
    channel_leave_all(a, &sa);
    channel_index_free(a);
    channel_index_free(b);
}

/* --max-channels: a new name past the cap is refused and changes nothing; names already held
 * can still be joined by anyone, and leaving one frees a place. */
static void max_channels_caps_distinct_names(void **state)
{
    size_t base = registry_count();
    struct channel_index *idx = channel_index_new(0, base + 2, NULL);
    struct channel_index *other = channel_index_new(1, base + 2, NULL);
    struct channel_set a = {0}, b = {0};
    uint32_t n;

    (void)state;
    assert_int_equal(channel_join(idx, &a, &m1, "cap-1", 5, 10), CHANNEL_JOINED);
    assert_int_equal(channel_join(idx, &a, &m1, "cap-2", 5, 10), CHANNEL_JOINED);
    assert_int_equal(channel_join(idx, &a, &m1, "cap-3", 5, 10), CHANNEL_FULL);
    assert_int_equal(channel_join(other, &b, &m2, "cap-3", 5, 10), CHANNEL_FULL);
    assert_null(channel_members(idx, "cap-3", 5, &n));
    assert_int_equal(registry_count(), base + 2);
    assert_int_equal(registry_planes("cap-3", 5), 0);
    /* a held name on another plane is not new to the instance */
    assert_int_equal(channel_join(other, &b, &m2, "cap-1", 5, 10), CHANNEL_JOINED);
    assert_int_equal(registry_planes("cap-1", 5), 1 | 2);
    assert_int_equal(channel_leave(idx, &a, "cap-2", 5), 0);
    assert_int_equal(channel_join(other, &b, &m2, "cap-3", 5, 10), CHANNEL_JOINED);
    channel_leave_all(idx, &a);
    channel_leave_all(other, &b);
    assert_int_equal(registry_count(), base);
    channel_index_free(idx);
    channel_index_free(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(name_lengths),
        cmocka_unit_test(name_characters),
        cmocka_unit_test(reserved_names),
        cmocka_unit_test(join_already_limit),
        cmocka_unit_test(members_listing),
        cmocka_unit_test(leave_of_a_non_member),
        cmocka_unit_test(channel_freed_when_empty),
        cmocka_unit_test(leave_all),
        cmocka_unit_test(swap_remove_in_any_order),
        cmocka_unit_test(registry_counts_distinct_names),
        cmocka_unit_test(registry_masks_name_the_planes),
        cmocka_unit_test(registry_is_thread_safe),
        cmocka_unit_test(max_channels_caps_distinct_names),
    };

    assert_int_equal(keyhash_init(), 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
