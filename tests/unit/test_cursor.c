/* test_cursor.c -- hub/delivery/cursor.c: an SSE stream's id (EPOCH:SEQ per channel, in the
 * query's order) written and read back strictly. */
#include "delivery/cursor.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static int parse(const char *text, struct cursor_pos *out, size_t n)
{
    char err[160] = "";
    int rc = cursor_parse("Last-Event-ID", text, strlen(text), out, n, err, sizeof(err));

    if (rc < 0)
        assert_true(err[0] != '\0'); /* a refusal says why */
    return rc;
}

static void writes_and_reads_back(void **state)
{
    struct cursor_pos v[3] = {{"k3J9a0b1", 8, 17}, {"", 0, 0}, {"Ab2", 3, 0}}, back[3];
    char out[3 * (CURSOR_ENTRY_MAX + 1)];
    size_t len = cursor_write(v, 3, out);

    (void)state;
    out[len] = '\0';
    assert_string_equal(out, "k3J9a0b1:17,,Ab2:0");
    assert_int_equal(len, cursor_entry_len(&v[0]) + cursor_entry_len(&v[1]) +
                              cursor_entry_len(&v[2]) + 2);
    assert_int_equal(parse(out, back, 3), 0);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(back[i].epoch, v[i].epoch);
        assert_int_equal(back[i].epoch_len, v[i].epoch_len);
        assert_true(back[i].seq == v[i].seq);
    }
}

static void the_longest_entry_fits(void **state)
{
    struct cursor_pos v = {"abcdefghijklmnopqrstuvwx", 24, INT64_MAX}, back;
    char out[CURSOR_ENTRY_MAX + 1];
    size_t len = cursor_write(&v, 1, out);

    (void)state;
    assert_int_equal(len, CURSOR_ENTRY_MAX);
    out[len] = '\0';
    assert_string_equal(out, "abcdefghijklmnopqrstuvwx:9223372036854775807");
    assert_int_equal(parse(out, &back, 1), 0);
    assert_true(back.seq == INT64_MAX);
}

static void empty_entries_are_no_position(void **state)
{
    struct cursor_pos v[2];

    (void)state;
    assert_int_equal(parse("", v, 1), 0);
    assert_string_equal(v[0].epoch, "");
    assert_int_equal(parse(",", v, 2), 0);
    assert_int_equal(parse("a:0,", v, 2), 0);
    assert_string_equal(v[0].epoch, "a");
    assert_string_equal(v[1].epoch, "");
}

static void refuses_what_no_stream_wrote(void **state)
{
    static const char *const bad[] = {
        "zz",   /* no seq */
        ":5",   /* no epoch */
        "a:",   /* no seq */
        "a:01", /* a leading zero */
        "a:-1",
        "a:+1",
        "a: 1",
        "a:1 ", /* a sign, a space */
        "a-b:1",
        "a\xc3\xa9:1", /* an epoch of letters and digits only */
        "a:1:2",
        "a:1x",
        "abcdefghijklmnopqrstuvwxy:1", /* a 25-character epoch */
        "a:9223372036854775808",       /* past INT64_MAX */
        "a:99999999999999999999",      /* 20 digits */
    };
    struct cursor_pos v[2];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (parse(bad[i], v, 1) == 0)
            fail_msg("\"%s\" was taken", bad[i]);
    /* one entry per channel, no more, no fewer */
    assert_int_equal(parse("a:1", v, 2), -1);
    assert_int_equal(parse("a:1,b:2,c:3", v, 2), -1);
    assert_int_equal(parse("a:1,,", v, 2), -1);
    assert_int_equal(parse("a:1,b:2", v, 2), 0);
}

static void a_nul_inside_is_refused(void **state)
{
    struct cursor_pos v;
    char err[160];

    (void)state;
    assert_int_equal(cursor_parse("Last-Event-ID", "a:1\0", 4, &v, 1, err, sizeof(err)), -1);
    assert_int_equal(cursor_parse("Last-Event-ID", "a\0:1", 4, &v, 1, err, sizeof(err)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(writes_and_reads_back),
        cmocka_unit_test(the_longest_entry_fits),
        cmocka_unit_test(empty_entries_are_no_position),
        cmocka_unit_test(refuses_what_no_stream_wrote),
        cmocka_unit_test(a_nul_inside_is_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
