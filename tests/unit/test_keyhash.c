/* test_keyhash.c -- hub/common/keyhash.c: the keyed hash of every table clients fill. Names
 * chosen to collide under uthash's unkeyed default (Jenkins) all land in one bucket of a table
 * that hashes with it, whatever its size; under the keyed hash the same names spread out. */
#include "common/keyhash.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include <cmocka.h>

#define N_NAMES 64
#define COLLIDE_BITS 12 /* equal low bits: one bucket in tables of up to 4,096 buckets */

struct entry {
    char name[32];
    UT_hash_handle hh;
};

static unsigned jenkins(const char *s, size_t len)
{
    unsigned hashv;

    HASH_JEN(s, len, hashv);
    return hashv;
}

/* N_NAMES names whose Jenkins hashes agree in their low COLLIDE_BITS bits, as an attacker
 * would pick them (about one random name in 4,096 qualifies). */
static void colliding_names(char names[N_NAMES][32])
{
    unsigned want = 0, mask = (1u << COLLIDE_BITS) - 1;
    int found = 0;

    for (unsigned long i = 0; found < N_NAMES; i++) {
        char s[32];
        int len = snprintf(s, sizeof(s), "orders.%lu", i);
        unsigned h = jenkins(s, (size_t)len) & mask;

        if (found == 0)
            want = h;
        if (h == want)
            memcpy(names[found++], s, (size_t)len + 1);
    }
}

static unsigned longest_chain(const struct entry *table)
{
    unsigned longest = 0;

    for (unsigned i = 0; i < table->hh.tbl->num_buckets; i++)
        if (table->hh.tbl->buckets[i].count > longest)
            longest = table->hh.tbl->buckets[i].count;
    return longest;
}

static void free_table(struct entry **table)
{
    struct entry *e, *tmp;

    HASH_ITER(hh, *table, e, tmp)
    {
        HASH_DEL(*table, e);
        free(e);
    }
}

static void chosen_names_do_not_collide(void **state)
{
    static char names[N_NAMES][32];
    struct entry *unkeyed = NULL, *keyed = NULL;

    (void)state;
    colliding_names(names);
    for (int i = 0; i < N_NAMES; i++) {
        struct entry *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
        size_t len = strlen(names[i]);

        memcpy(a->name, names[i], len + 1);
        memcpy(b->name, names[i], len + 1);
        /* the control: uthash's own hash, as the hub's tables once used */
        HASH_ADD_KEYPTR_BYHASHVALUE(hh, unkeyed, a->name, len, jenkins(a->name, len), a);
        /* the hub's: keyhash() through HASH_FUNCTION */
        HASH_ADD_KEYPTR(hh, keyed, b->name, len, b);
    }
    /* the names really are adversarial: one chain holds them all */
    assert_int_equal(longest_chain(unkeyed), N_NAMES);
    /* keyed, they spread like random names: 64 entries over at least 32 buckets */
    assert_true(longest_chain(keyed) <= 10);
    assert_int_equal(HASH_COUNT(keyed), N_NAMES);
    free_table(&unkeyed);
    free_table(&keyed);
}

static void the_key_is_drawn_once(void **state)
{
    uint32_t a, b;

    (void)state;
    a = keyhash("orders", 6);
    assert_int_equal(keyhash_init(), 0); /* again: no new key */
    b = keyhash("orders", 6);
    assert_int_equal(a, b);
    assert_int_not_equal(keyhash("orders", 6), keyhash("orderz", 6));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(chosen_names_do_not_collide),
        cmocka_unit_test(the_key_is_drawn_once),
    };

    assert_int_equal(keyhash_init(), 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
