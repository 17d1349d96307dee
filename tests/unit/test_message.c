/* test_message.c -- hub/common/message.c: WebSocket headers, wire bytes and reference counting. */
#include "common/message.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define SENTINEL 0xAA

/* Writes the header for len into a sentinel-filled buffer and checks it is exactly want,
 * ending at end, touching nothing before. */
static void check_header(uint64_t len, const unsigned char *want, size_t want_len)
{
    unsigned char buf[32];
    unsigned char *end = buf + 24;
    size_t h;

    memset(buf, SENTINEL, sizeof(buf));
    h = message_ws_header(end, len);
    assert_int_equal(h, want_len);
    assert_memory_equal(end - h, want, want_len);
    for (unsigned char *p = buf; p < end - h; p++)
        assert_int_equal(*p, SENTINEL);
    for (unsigned char *p = end; p < buf + sizeof(buf); p++)
        assert_int_equal(*p, SENTINEL);
}

static void ws_header_7bit(void **state)
{
    const unsigned char h0[] = {0x81, 0x00};
    const unsigned char h1[] = {0x81, 0x01};
    const unsigned char h125[] = {0x81, 125};

    (void)state;
    check_header(0, h0, sizeof(h0));
    check_header(1, h1, sizeof(h1));
    check_header(125, h125, sizeof(h125));
}

static void ws_header_16bit(void **state)
{
    const unsigned char h126[] = {0x81, 126, 0x00, 0x7e};
    const unsigned char h256[] = {0x81, 126, 0x01, 0x00};
    const unsigned char h65535[] = {0x81, 126, 0xff, 0xff};

    (void)state;
    check_header(126, h126, sizeof(h126));
    check_header(256, h256, sizeof(h256));
    check_header(65535, h65535, sizeof(h65535));
}

static void ws_header_64bit(void **state)
{
    const unsigned char h65536[] = {0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0};
    const unsigned char hbig[] = {0x81, 127, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
    const unsigned char h4g[] = {0x81, 127, 0, 0, 0, 0x01, 0, 0, 0, 0x05};

    (void)state;
    check_header(65536, h65536, sizeof(h65536));
    check_header(UINT64_C(0x0102030405060708), hbig, sizeof(hbig));
    check_header(UINT64_C(0x100000005), h4g, sizeof(h4g));
}

/* message_new's wire bytes are the header for json_len, then the JSON, NUL-terminated. */
static void check_wire(size_t json_len, size_t want_header)
{
    char *json = malloc(json_len + 1);
    unsigned char want[10];
    size_t h;
    struct message *m;

    assert_non_null(json);
    for (size_t i = 0; i < json_len; i++)
        json[i] = (char)('a' + i % 26);
    m = message_new("orders", 6, json, json_len);
    h = message_ws_header(want + sizeof(want), json_len);
    assert_int_equal(h, want_header);
    assert_int_equal(m->header_len, want_header);
    assert_int_equal(m->json_len, json_len);
    assert_int_equal(message_wire_len(m), want_header + json_len);
    assert_memory_equal(message_wire(m), want + sizeof(want) - h, h);
    assert_ptr_equal(message_wire(m) + h, (const unsigned char *)message_json(m));
    if (json_len)
        assert_memory_equal(message_wire(m) + h, json, json_len);
    assert_int_equal(message_json(m)[json_len], '\0');
    message_unref(&m);
    free(json);
}

static void new_gives_header_then_json(void **state)
{
    const char *json = "{\"a\":1}";
    const unsigned char want[] = {0x81, 7, '{', '"', 'a', '"', ':', '1', '}'};
    struct message *m;

    (void)state;
    m = message_new("orders", 6, json, strlen(json));
    assert_int_equal(atomic_load(&m->refs), 1);
    assert_int_equal(message_wire_len(m), sizeof(want));
    assert_memory_equal(message_wire(m), want, sizeof(want));
    assert_string_equal(message_json(m), json);
    assert_string_equal(m->channel, "orders");
    assert_int_equal(m->channel_len, 6);
    assert_int_equal(m->ts_ms, 0);
    assert_string_equal(m->id, "");
    message_unref(&m);

    check_wire(0, 2);
    check_wire(125, 2);
    check_wire(126, 4);
    check_wire(65535, 4);
    check_wire(65536, 10);
    check_wire(300000, 10);
}

static void new_channel(void **state)
{
    struct message *m;

    (void)state;
    /* no channel: a reply */
    m = message_new(NULL, 0, "{}", 2);
    assert_string_equal(m->channel, "");
    assert_int_equal(m->channel_len, 0);
    message_unref(&m);
    /* only channel_len bytes of the name are copied */
    m = message_new("ordersXYZ", 6, "{}", 2);
    assert_string_equal(m->channel, "orders");
    assert_int_equal(m->channel_len, 6);
    message_unref(&m);
    {
        char name[MESSAGE_CHANNEL_MAX + 1];

        memset(name, 'c', MESSAGE_CHANNEL_MAX);
        name[MESSAGE_CHANNEL_MAX] = '\0';
        m = message_new(name, MESSAGE_CHANNEL_MAX, "{}", 2);
        assert_string_equal(m->channel, name);
        assert_int_equal(m->channel_len, MESSAGE_CHANNEL_MAX);
        message_unref(&m);
    }
}

static void alloc_fill_seal_equals_new(void **state)
{
    const char *json = "{\"type\":\"pong\"}";
    size_t len = strlen(json);
    struct message *a = message_alloc("c", 1, len);
    struct message *b = message_new("c", 1, json, len);

    (void)state;
    memcpy(message_json(a), json, len);
    message_seal(a);
    assert_int_equal(message_wire_len(a), message_wire_len(b));
    assert_memory_equal(message_wire(a), message_wire(b), message_wire_len(b));
    assert_int_equal(message_json(a)[len], '\0');
    message_unref(&a);
    message_unref(&b);
}

static void refcounting(void **state)
{
    struct message *m = message_new("x", 1, "{}", 2);
    struct message *r, *none = NULL;

    (void)state;
    assert_int_equal(atomic_load(&m->refs), 1);
    r = message_ref(m);
    assert_ptr_equal(r, m);
    assert_int_equal(atomic_load(&m->refs), 2);
    message_unref(&r);
    assert_null(r);
    assert_int_equal(atomic_load(&m->refs), 1);
    assert_string_equal(message_json(m), "{}"); /* still alive */
    message_unref(&m);
    assert_null(m); /* freed: ASan would report any later use */
    message_unref(&none);
    assert_null(none);
}

struct ref_arg {
    struct message *m;
    int rounds;
};

static void *ref_thread(void *p)
{
    struct ref_arg *arg = p;

    for (int i = 0; i < arg->rounds; i++) {
        struct message *r = message_ref(arg->m);

        message_unref(&r);
    }
    return NULL;
}

static void refcounting_across_threads(void **state)
{
    struct message *m = message_new("x", 1, "{}", 2);
    struct ref_arg arg = {.m = m, .rounds = 100000};
    pthread_t th[4];

    (void)state;
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, ref_thread, &arg), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&m->refs), 1);
    message_unref(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ws_header_7bit),  cmocka_unit_test(ws_header_16bit),
        cmocka_unit_test(ws_header_64bit), cmocka_unit_test(new_gives_header_then_json),
        cmocka_unit_test(new_channel),     cmocka_unit_test(alloc_fill_seal_equals_new),
        cmocka_unit_test(refcounting),     cmocka_unit_test(refcounting_across_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
