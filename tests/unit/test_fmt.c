/* test_fmt.c -- hub/common/fmt.h: decimal and hexadecimal digits at their edges, and strings,
 * written without a NUL. */
#include "common/fmt.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

/* What fmt wrote at buf up to end, as a string; the byte after it must be untouched. */
static const char *written(char *buf, char *end)
{
    assert_int_equal(*end, '#');
    *end = '\0';
    return buf;
}

/* fmt writes each of cases as snprintf's "%ll<conv>" does. */
static void check_numbers(char *(*fmt)(char *, uint64_t), char conv, const uint64_t *cases,
                          size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char buf[32], want[32];

        memset(buf, '#', sizeof(buf));
        snprintf(want, sizeof(want), conv == 'x' ? "%llx" : "%llu", (unsigned long long)cases[i]);
        assert_string_equal(written(buf, fmt(buf, cases[i])), want);
    }
}

static void decimal(void **state)
{
    static const uint64_t cases[] = {0, 1, 9, 10, 99, 100, 4294967295u, 1700000000000u, UINT64_MAX};

    (void)state;
    check_numbers(fmt_dec, 'u', cases, sizeof(cases) / sizeof(cases[0]));
}

static void hexadecimal(void **state)
{
    static const uint64_t cases[] = {0, 1, 15, 16, 255, 0xabcdef, 0x8000000000000000u, UINT64_MAX};

    (void)state;
    check_numbers(fmt_hex, 'x', cases, sizeof(cases) / sizeof(cases[0]));
}

static void strings(void **state)
{
    char buf[32];
    char *p;

    (void)state;
    memset(buf, '#', sizeof(buf));
    p = fmt_str(buf, "Content-Length: ");
    p = fmt_dec(p, 42);
    p = fmt_mem(p, "\r\nxyz", 2);
    p = fmt_str(p, "");
    assert_string_equal(written(buf, p), "Content-Length: 42\r\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decimal),
        cmocka_unit_test(hexadecimal),
        cmocka_unit_test(strings),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
