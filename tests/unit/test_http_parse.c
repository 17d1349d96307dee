/* test_http_parse.c -- hub/control/http_parse.c: request heads and chunked bodies, strictly:
 * framing that could smuggle a request is refused, everything else is read exactly. */
#include "control/http_parse.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static enum http_parse_result parse(const char *s, struct http_head *h)
{
    return http_parse_head(s, strlen(s), 16384, h);
}

static bool span_eq(struct http_span sp, const char *want)
{
    return sp.len == strlen(want) && !memcmp(sp.p, want, sp.len);
}

static void a_whole_head(void **state)
{
    static const char req[] = "\r\nPOST /publish?x=1&y HTTP/1.1\r\nHost: hub\r\n"
                              "Content-Type:  application/json \r\nContent-Length: 12\r\n"
                              "X-Forwarded-For: 1.2.3.4\r\nx-forwarded-for: 5.6.7.8\r\n\r\n"
                              "{\"a\":\"body\"}";
    struct http_head h;
    size_t len;
    const char *v;

    (void)state;
    assert_int_equal(parse(req, &h), HTTP_PARSE_OK);
    assert_int_equal(h.method, HTTP_POST);
    assert_true(span_eq(h.path, "/publish"));
    assert_true(span_eq(h.query, "x=1&y"));
    assert_int_equal(h.minor, 1);
    assert_true(h.has_length);
    assert_int_equal(h.content_length, 12);
    assert_false(h.is_chunked);
    assert_false(h.wants_close);
    assert_string_equal(req + h.head_len, "{\"a\":\"body\"}");
    v = http_head_field(&h, "content-type", &len);
    assert_int_equal(len, 16); /* spaces around the value are not part of it */
    assert_memory_equal(v, "application/json", 16);
    v = http_head_field(&h, "X-FORWARDED-FOR", &len);
    assert_memory_equal(v, "1.2.3.4", len); /* the first of two */
    assert_int_equal(h.n_fields, 5);
}

static void incomplete_heads_want_more(void **state)
{
    static const char req[] = "GET /health HTTP/1.1\r\nHost: hub\r\n\r\n";
    struct http_head h;

    (void)state;
    for (size_t n = 0; n < sizeof(req) - 1; n++)
        assert_int_equal(http_parse_head(req, n, 16384, &h), HTTP_PARSE_MORE);
    assert_int_equal(http_parse_head(req, sizeof(req) - 1, 16384, &h), HTTP_PARSE_OK);
    /* bare LFs end lines too */
    assert_int_equal(parse("GET / HTTP/1.1\nHost: a\n\n", &h), HTTP_PARSE_OK);
    assert_true(span_eq(h.path, "/"));
}

static void framing_that_could_smuggle_is_refused(void **state)
{
    static const struct {
        const char *req;
        enum http_parse_result want;
    } cases[] = {
        {"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", HTTP_PARSE_BAD},
        {"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", HTTP_PARSE_OK},
        {"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
         HTTP_PARSE_BAD},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", HTTP_PARSE_UNSUPPORTED},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
         HTTP_PARSE_UNSUPPORTED},
        {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", HTTP_PARSE_BAD},
        {"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", HTTP_PARSE_BAD},
        {"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", HTTP_PARSE_BAD},
        {"POST / HTTP/1.1\r\nContent-Length: 9999999999999999\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1\r\nName : v\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/1.1\r\n: v\r\n\r\n", HTTP_PARSE_BAD},
        {"GET /a b HTTP/1.1\r\n\r\n", HTTP_PARSE_BAD},
        {"GET relative HTTP/1.1\r\n\r\n", HTTP_PARSE_BAD},
        {"GET / HTTP/2.0\r\n\r\n", HTTP_PARSE_VERSION},
        {"GET / HTTPS/1.1\r\n\r\n", HTTP_PARSE_BAD},
        {"G(T / HTTP/1.1\r\n\r\n", HTTP_PARSE_BAD},
        {"BREW / HTTP/1.1\r\n\r\n", HTTP_PARSE_OK},
        {"GET http://hub:8081/health?x HTTP/1.1\r\n\r\n", HTTP_PARSE_OK},
    };
    struct http_head h;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum http_parse_result got = parse(cases[i].req, &h);

        if (got != cases[i].want)
            fail_msg("case %zu: %d, want %d: %s", i, got, cases[i].want, cases[i].req);
    }
    assert_int_equal(parse("BREW / HTTP/1.1\r\n\r\n", &h), HTTP_PARSE_OK);
    assert_int_equal(h.method, HTTP_OTHER);
    assert_int_equal(parse("GET http://hub:8081/health?x HTTP/1.1\r\n\r\n", &h), HTTP_PARSE_OK);
    assert_true(span_eq(h.path, "/health"));
    assert_true(span_eq(h.query, "x"));
}

static void connection_and_expect(void **state)
{
    struct http_head h;

    (void)state;
    assert_int_equal(parse("GET / HTTP/1.0\r\n\r\n", &h), HTTP_PARSE_OK);
    assert_true(h.wants_close);
    assert_int_equal(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &h), HTTP_PARSE_OK);
    assert_false(h.wants_close);
    assert_int_equal(parse("GET / HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n", &h),
                     HTTP_PARSE_OK);
    assert_true(h.wants_close);
    assert_int_equal(parse("POST / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n", &h), HTTP_PARSE_OK);
    assert_true(h.expects_continue);
}

static void limits(void **state)
{
    char big[20000];
    struct http_head h;
    int n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX: ");

    (void)state;
    memset(big + n, 'y', sizeof(big) - (size_t)n - 1);
    big[sizeof(big) - 1] = '\0';
    /* no end of head within max_head: too long, not "more" */
    assert_int_equal(http_parse_head(big, strlen(big), 16384, &h), HTTP_PARSE_TOO_LONG);
    assert_int_equal(http_parse_head(big, 1000, 16384, &h), HTTP_PARSE_MORE);
    {
        char many[8192];
        size_t len = (size_t)snprintf(many, sizeof(many), "GET / HTTP/1.1\r\n");

        for (int i = 0; i < HTTP_MAX_HEADERS + 1; i++)
            len += (size_t)snprintf(many + len, sizeof(many) - len, "H%d: v\r\n", i);
        len += (size_t)snprintf(many + len, sizeof(many) - len, "\r\n");
        assert_int_equal(http_parse_head(many, len, 16384, &h), HTTP_PARSE_TOO_LONG);
    }
}

static enum http_parse_result dechunk(const char *in, size_t step, char *out, size_t *out_len,
                                      size_t cap)
{
    struct http_chunked c;
    size_t len = strlen(in), off = 0;
    enum http_parse_result r = HTTP_PARSE_MORE;

    http_chunked_init(&c);
    *out_len = 0;
    while (off < len && r == HTTP_PARSE_MORE) {
        size_t n = len - off < step ? len - off : step, used = 0;

        r = http_chunked_feed(&c, in + off, n, &used, out, out_len, cap);
        off += used;
    }
    return r;
}

static void chunked_bodies(void **state)
{
    static const char body[] = "5\r\nhello\r\n7;ext=\"a\"\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
    char out[64];
    size_t len;

    (void)state;
    for (size_t step = 1; step <= sizeof(body); step++) { /* split anywhere */
        assert_int_equal(dechunk(body, step, out, &len, sizeof(out)), HTTP_PARSE_OK);
        assert_int_equal(len, 12);
        assert_memory_equal(out, "hello, world", 12);
    }
    assert_int_equal(dechunk("5\r\nhello\r\n0\r\n\r\n", 100, out, &len, 4), HTTP_PARSE_TOO_LONG);
    assert_int_equal(dechunk("z\r\n", 100, out, &len, 64), HTTP_PARSE_BAD);
    assert_int_equal(dechunk("5\r\nhelloX\r\n", 100, out, &len, 64), HTTP_PARSE_BAD);
    assert_int_equal(dechunk("1000000000000000\r\n", 100, out, &len, 64), HTTP_PARSE_BAD);
    assert_int_equal(dechunk("5\r\nhel", 100, out, &len, 64), HTTP_PARSE_MORE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_whole_head),
        cmocka_unit_test(incomplete_heads_want_more),
        cmocka_unit_test(framing_that_could_smuggle_is_refused),
        cmocka_unit_test(connection_and_expect),
        cmocka_unit_test(limits),
        cmocka_unit_test(chunked_bodies),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
