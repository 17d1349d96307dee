/* test_event.c -- hub/control/event.c: publish bodies in, event frames out. Frames are checked as
 * exact text (key order included) and parsed back with jansson. */
#include "common/message.h"
#include "control/event.h"

#include <inttypes.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define NOW INT64_C(1700000000123)

struct parsed {
    struct message **out;
    size_t n;
    int rc;
    char err[256];
};

static void parse_len(struct parsed *p, const char *body, size_t len, struct event_ids *ids)
{
    p->out = (struct message **)(uintptr_t)1; /* must be reset, whatever the outcome */
    p->n = 99;
    p->err[0] = '\0';
    p->rc = event_parse_publish(body, len, NOW, ids, &p->out, &p->n, p->err, sizeof(p->err));
    /* drafts: number each as a broker would (seq 7 for all), so the frame is whole */
    for (size_t i = 0; p->rc == 0 && i < p->n; i++)
        message_finish(p->out[i], "ep0ch", 7);
}

static void parse(struct parsed *p, const char *body, struct event_ids *ids)
{
    parse_len(p, body, strlen(body), ids);
}

static void parsed_free(struct parsed *p)
{
    for (size_t i = 0; i < p->n; i++)
        message_unref(&p->out[i]);
    free(p->out);
    p->out = NULL;
    p->n = 0;
}

/* The frame's JSON as jansson sees it; checks the wire header and length on the way. */
static json_t *frame_json(struct message *m)
{
    const unsigned char *w = message_wire(m);
    json_error_t jerr;
    json_t *root;

    assert_int_equal(w[0], 0x81);
    assert_int_equal(message_wire_len(m), m->header_len + m->json_len);
    assert_int_equal(strlen(message_json(m)), m->json_len);
    root = json_loadb(message_json(m), m->json_len, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(root);
    return root;
}

static void single_event_frame(void **state)
{
    const char *body = "{\"channel\":\"orders\",\"event\":\"created\","
                       "\"data\":{\"order\":42,\"items\":[\"a\",\"b\"],\"nested\":{\"x\":null},"
                       "\"s\":\"caf\\u00e9\"}}";
    struct event_ids ids;
    struct parsed p;
    struct message *m;
    char want[512], prefix[128];
    json_t *root, *data;

    (void)state;
    event_ids_init(&ids, 0x1234);
    parse(&p, body, &ids);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.n, 1);
    m = p.out[0];
    assert_string_equal(m->channel, "orders");
    assert_int_equal(m->channel_len, 6);
    assert_int_equal(m->ts_ms, NOW);
    assert_true(m->id[0] != '\0');
    assert_int_equal(atomic_load(&m->refs), 1);

    /* the exact frame: keys in order, compact, data as published (escapes kept) */
    snprintf(want, sizeof(want),
             "{\"type\":\"event\",\"channel\":\"orders\",\"event\":\"created\",\"id\":\"%s\","
             "\"seq\":7,\"ts\":%" PRId64 ",\"data\":{\"order\":42,\"items\":[\"a\",\"b\"],"
             "\"nested\":{\"x\":null},\"s\":\"caf\\u00e9\"}}",
             m->id, NOW);
    assert_string_equal(message_json(m), want);
    snprintf(prefix, sizeof(prefix),
             "{\"type\":\"event\",\"channel\":\"orders\",\"event\":\"created\",\"id\":\"");
    assert_int_equal(strncmp(message_json(m), prefix, strlen(prefix)), 0);

    root = frame_json(m);
    assert_int_equal(json_object_size(root), 7);
    assert_int_equal(json_integer_value(json_object_get(root, "seq")), 7);
    assert_string_equal(m->epoch, "ep0ch");
    assert_int_equal(m->seq, 7);
    /* the event name is where the frame says */
    assert_int_equal(m->name_len, 9);
    assert_memory_equal(message_json(m) + m->name_off, "\"created\"", 9);
    assert_string_equal(json_string_value(json_object_get(root, "type")), "event");
    assert_string_equal(json_string_value(json_object_get(root, "channel")), "orders");
    assert_string_equal(json_string_value(json_object_get(root, "event")), "created");
    assert_string_equal(json_string_value(json_object_get(root, "id")), m->id);
    assert_true(json_is_integer(json_object_get(root, "ts")));
    assert_int_equal(json_integer_value(json_object_get(root, "ts")), NOW);
    data = json_object_get(root, "data");
    assert_int_equal(json_integer_value(json_object_get(data, "order")), 42);
    assert_string_equal(json_string_value(json_array_get(json_object_get(data, "items"), 1)), "b");
    assert_true(json_is_null(json_object_get(json_object_get(data, "nested"), "x")));
    assert_string_equal(json_string_value(json_object_get(data, "s")), "caf\xc3\xa9");
    json_decref(root);
    parsed_free(&p);
}

/* Numbers and strings reach clients as the publisher wrote them (jansson would print 23.1 as
 * 23.100000000000001); only whitespace outside strings goes. */
static void data_keeps_the_publishers_text(void **state)
{
    const char *body =
        "[ {\"data\" : { \"x\" : 23.1 , \"big\": 1e5,\n \"s\": \"a b\\\" }\" ,"
        " \"n\":-0.0 } , \"channel\":\"a\"} ,\n {\"channel\":\"b\",\"d\\u0061ta\":[ 1 ,2 ]} ]";
    struct event_ids ids;
    struct parsed p;
    char want[256];

    (void)state;
    event_ids_init(&ids, 1);
    parse(&p, body, &ids);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.n, 2);
    snprintf(want, sizeof(want),
             "{\"type\":\"event\",\"channel\":\"a\",\"id\":\"%s\",\"seq\":7,\"ts\":%" PRId64
             ",\"data\":{\"x\":23.1,\"big\":1e5,\"s\":\"a b\\\" }\",\"n\":-0.0}}",
             p.out[0]->id, NOW);
    assert_string_equal(message_json(p.out[0]), want);
    snprintf(want, sizeof(want),
             "{\"type\":\"event\",\"channel\":\"b\",\"id\":\"%s\",\"seq\":7,\"ts\":%" PRId64
             ",\"data\":[1,2]}",
             p.out[1]->id, NOW);
    assert_string_equal(message_json(p.out[1]), want);
    parsed_free(&p);
}

/* Found by fuzz_publish: jansson accepted a body with a NUL byte after a literal, and the
 * frame scanner then never advanced. A NUL is never valid JSON: 400. */
static void nul_byte_is_refused(void **state)
{
    static const char body[] = "{\"channel\":\"a\",\"data\":[null\0,true]}";
    struct event_ids ids;
    struct parsed p;

    (void)state;
    event_ids_init(&ids, 1);
    parse_len(&p, body, sizeof(body) - 1, &ids);
    assert_int_equal(p.rc, -1);
    assert_null(p.out);
    assert_int_equal(p.n, 0);
    assert_non_null(strstr(p.err, "NUL"));
}

static void event_absent_when_not_given(void **state)
{
    struct event_ids ids;
    struct parsed p;
    char want[256];
    json_t *root;

    (void)state;
    event_ids_init(&ids, 7);
    parse(&p, "{\"data\":[1,2],\"channel\":\"a.b:c-d_e\"}", &ids);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.n, 1);
    snprintf(want, sizeof(want),
             "{\"type\":\"event\",\"channel\":\"a.b:c-d_e\",\"id\":\"%s\",\"seq\":7,\"ts\":%" PRId64
             ",\"data\":[1,2]}",
             p.out[0]->id, NOW);
    assert_string_equal(message_json(p.out[0]), want);
    root = frame_json(p.out[0]);
    assert_null(json_object_get(root, "event"));
    assert_int_equal(json_object_size(root), 6);
    json_decref(root);
    parsed_free(&p);
}

static void data_of_any_type(void **state)
{
    static const char *const datas[] = {"null", "0", "-1.5", "\"text\"", "true", "[]", "{}"};
    struct event_ids ids;
    struct parsed p;

    (void)state;
    event_ids_init(&ids, 1);
    for (size_t i = 0; i < sizeof(datas) / sizeof(datas[0]); i++) {
        char body[128], tail[64];
        const char *json;

        snprintf(body, sizeof(body), "{\"channel\":\"c\",\"data\":%s}", datas[i]);
        parse(&p, body, &ids);
        assert_int_equal(p.rc, 0);
        assert_int_equal(p.n, 1);
        json = message_json(p.out[0]);
        snprintf(tail, sizeof(tail), ",\"data\":%s}", datas[i]);
        assert_string_equal(json + strlen(json) - strlen(tail), tail);
        parsed_free(&p);
    }
}

static void batch_order_and_distinct_ids(void **state)
{
    const char *body = "[{\"channel\":\"a\",\"data\":1},"
                       "{\"channel\":\"b\",\"event\":\"e\",\"data\":2},"
                       "{\"channel\":\"a\",\"data\":3}]";
    const char *channels[] = {"a", "b", "a"};
    struct event_ids ids;
    struct parsed p;

    (void)state;
    event_ids_init(&ids, 0xabcdef);
    parse(&p, body, &ids);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.n, 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *root = frame_json(p.out[i]);

        assert_string_equal(p.out[i]->channel, channels[i]);
        assert_int_equal(p.out[i]->ts_ms, NOW);
        assert_int_equal(json_integer_value(json_object_get(root, "data")), (json_int_t)i + 1);
        assert_string_equal(json_string_value(json_object_get(root, "id")), p.out[i]->id);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(p.out[i]->id, p.out[j]->id);
        json_decref(root);
    }
    parsed_free(&p);
}

static void ids_unique_across_calls(void **state)
{
    struct event_ids ids, other;
    struct parsed p;
    char seen[200][32];

    (void)state;
    event_ids_init(&ids, 42);
    for (int i = 0; i < 200; i++) {
        parse(&p, "{\"channel\":\"c\",\"data\":null}", &ids);
        assert_int_equal(p.rc, 0);
        /* "<prefix>-<sequence>" */
        assert_int_equal(strncmp(p.out[0]->id, ids.prefix, strlen(ids.prefix)), 0);
        assert_int_equal(p.out[0]->id[strlen(ids.prefix)], '-');
        assert_true(p.out[0]->id[strlen(ids.prefix) + 1] != '\0');
        snprintf(seen[i], sizeof(seen[i]), "%s", p.out[0]->id);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(seen[i], seen[j]);
        parsed_free(&p);
    }
    /* another process (seed) has another prefix */
    event_ids_init(&other, 43);
    assert_string_not_equal(other.prefix, ids.prefix);
}

static void expect_bad(const char *body, size_t len, const char *want)
{
    struct event_ids ids;
    struct parsed p;

    event_ids_init(&ids, 1);
    parse_len(&p, body, len, &ids);
    if (p.rc != -1 || (want && !strstr(p.err, want)))
        print_error("body %.80s: rc %d, err '%s', wanted '%s'\n", body, p.rc, p.err,
                    want ? want : "");
    assert_int_equal(p.rc, -1);
    assert_null(p.out);
    assert_int_equal(p.n, 0);
    assert_true(p.err[0] != '\0');
    if (want)
        assert_non_null(strstr(p.err, want));
}

static void bad_bodies(void **state)
{
    static const struct {
        const char *body, *want;
    } cases[] = {
        {"", NULL},
        {"{", NULL},
        {"not json", NULL},
        {"{\"channel\":\"a\",\"data\":1,}", NULL},
        {"{\"channel\":\"a\",\"data\":1} x", NULL},
        {"{\"channel\":\"a\",\"data\":1}{}", NULL},
        {"{\"channel\":\"a\",\"channel\":\"b\",\"data\":1}", NULL},
        {"5", NULL},
        {"\"str\"", NULL},
        {"null", NULL},
        {"[]", NULL},
        {"[1]", NULL},
        {"[[{\"channel\":\"a\",\"data\":1}]]", NULL},
        {"{\"data\":1}", "channel"},
        {"{\"channel\":5,\"data\":1}", "channel"},
        {"{\"channel\":null,\"data\":1}", "channel"},
        {"{\"channel\":[\"a\"],\"data\":1}", "channel"},
        {"{\"channel\":\"\",\"data\":1}", "channel"},
        {"{\"channel\":\"a b\",\"data\":1}", "channel"},
        {"{\"channel\":\"a/b\",\"data\":1}", "channel"},
        {"{\"channel\":\"a*\",\"data\":1}", "channel"},
        {"{\"channel\":\"caf\\u00e9\",\"data\":1}", "channel"},
        {"{\"channel\":\"a\\u0000b\",\"data\":1}", NULL}, /* jansson refuses NUL */
        {"{\"channel\":\"$\",\"data\":1}", "channel"},
        {"{\"channel\":\"$stats\",\"data\":1}", "$"},
        {"{\"channel\":\"$x\",\"data\":1}", "$"},
        {"{\"channel\":\"a\"}", "data"},
        {"{\"channel\":\"a\",\"event\":\"e\"}", "data"},
        {"{\"channel\":\"a\",\"data\":1,\"extra\":2}", "extra"},
        {"{\"channel\":\"a\",\"data\":1,\"type\":\"event\"}", "type"},
        {"{\"channel\":\"a\",\"data\":1,\"Channel\":\"a\"}", "Channel"},
        {"{\"channel\":\"a\",\"event\":5,\"data\":1}", "event"},
        {"{\"channel\":\"a\",\"event\":null,\"data\":1}", "event"},
        {"{\"channel\":\"a\",\"event\":{},\"data\":1}", "event"},
        {"{\"channel\":\"a\",\"event\":\"\",\"data\":1}", "event"},
        {"{\"channel\":\"a\",\"event\":\"a\\u0000b\",\"data\":1}", NULL},
        /* invalid UTF-8 and lone surrogates, wherever they are */
        {"{\"channel\":\"a\",\"data\":\"\xff\"}", NULL},
        {"{\"channel\":\"a\",\"data\":\"\xc3\"}", NULL},
        {"{\"channel\":\"a\",\"data\":\"\xed\xa0\x80\"}", NULL},
        {"{\"channel\":\"a\",\"event\":\"\xc0\xaf\",\"data\":1}", NULL},
        {"{\"channel\":\"a\",\"data\":{\"\xfe\":1}}", NULL},
        {"{\"channel\":\"a\",\"data\":\"\\ud800\"}", NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_bad(cases[i].body, strlen(cases[i].body), cases[i].want);
    /* an embedded NUL byte in the body */
    expect_bad("{\"channel\":\"a\",\0\"data\":1}", 25, NULL);
}

static void name_lengths(void **state)
{
    char body[512], name[200];
    struct event_ids ids;
    struct parsed p;

    (void)state;
    event_ids_init(&ids, 1);
    /* channel: 128 characters pass, 129 do not */
    memset(name, 'c', 129);
    name[128] = '\0';
    snprintf(body, sizeof(body), "{\"channel\":\"%s\",\"data\":1}", name);
    parse(&p, body, &ids);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.out[0]->channel_len, 128);
    assert_string_equal(p.out[0]->channel, name);
    parsed_free(&p);
    name[128] = 'c';
    name[129] = '\0';
    snprintf(body, sizeof(body), "{\"channel\":\"%s\",\"data\":1}", name);
    expect_bad(body, strlen(body), "channel");

    /* event: 128 bytes pass (multi-byte characters count as bytes), 129 do not */
    memset(name, 'e', 128);
    name[128] = '\0';
    snprintf(body, sizeof(body), "{\"channel\":\"c\",\"event\":\"%s\",\"data\":1}", name);
    parse(&p, body, &ids);
    assert_int_equal(p.rc, 0);
    parsed_free(&p);
    name[128] = 'e';
    name[129] = '\0';
    snprintf(body, sizeof(body), "{\"channel\":\"c\",\"event\":\"%s\",\"data\":1}", name);
    expect_bad(body, strlen(body), "event");
    name[0] = '\0';
    for (int i = 0; i < 64; i++)
        strcat(name, "\xc3\xa9"); /* 64 x 2 bytes */
    snprintf(body, sizeof(body), "{\"channel\":\"c\",\"event\":\"%s\",\"data\":1}", name);
    parse(&p, body, &ids);
    assert_int_equal(p.rc, 0);
    parsed_free(&p);
    strcat(name, "e");
    snprintf(body, sizeof(body), "{\"channel\":\"c\",\"event\":\"%s\",\"data\":1}", name);
    expect_bad(body, strlen(body), "event");
}

static void batch_all_or_nothing(void **state)
{
    static const char *const bodies[] = {
        /* one literal in two pieces: NOLINTNEXTLINE(bugprone-suspicious-missing-comma) */
        "[{\"channel\":\"a\",\"data\":1},{\"channel\":\"b\",\"data\":2},{\"channel\":\"$c\","
        "\"data\":3}]",
        "[{\"channel\":\"a\",\"data\":1},{\"channel\":\"b\"}]",
        "[{\"channel\":\"a\",\"data\":1},5]",
        "[{\"channel\":\"a\",\"data\":1},{\"channel\":\"a\",\"data\":1,\"x\":0}]",
        "[{\"channel\":\"a\",\"data\":1},{\"channel\":\"a\",\"data\":\"\xff\"}]",
    };

    (void)state;
    /* ASan's leak check proves no message of the good items outlives the refusal */
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
        expect_bad(bodies[i], strlen(bodies[i]), NULL);
    /* the error names the item */
    expect_bad(bodies[0], strlen(bodies[0]), "item 2");
}

static void batch_size_bounds(void **state)
{
    const char *item = "{\"channel\":\"c\",\"data\":0},";
    size_t cap = (EVENT_BATCH_MAX + 1) * strlen(item) + 4;
    char *body = malloc(cap), *p;
    struct event_ids ids;
    struct parsed r;

    (void)state;
    assert_non_null(body);
    event_ids_init(&ids, 1);
    p = body;
    *p++ = '[';
    for (int i = 0; i < EVENT_BATCH_MAX; i++)
        p += sprintf(p, "%s", item);
    p[-1] = ']';
    *p = '\0';
    parse(&r, body, &ids);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.n, EVENT_BATCH_MAX);
    parsed_free(&r);
    p[-1] = ',';
    p += sprintf(p, "%s", item);
    p[-1] = ']';
    *p = '\0';
    expect_bad(body, strlen(body), NULL);
    free(body);
}

static void body_length_is_respected(void **state)
{
    const char *buf = "{\"channel\":\"c\",\"data\":1}GARBAGE";
    struct event_ids ids;
    struct parsed p;

    (void)state;
    event_ids_init(&ids, 1);
    parse_len(&p, buf, strlen(buf) - strlen("GARBAGE"), &ids);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.n, 1);
    parsed_free(&p);
    expect_bad(buf, strlen(buf) - strlen("GARBAGE") - 1, NULL);
}

static void build_raw(void **state)
{
    struct event_ids ids;
    struct message *m;
    char want[256];

    (void)state;
    event_ids_init(&ids, 9);
    m = event_build_raw("$stats", "stats", "{\"connections\":3}", NOW, &ids);
    assert_non_null(m);
    message_finish(m, "s1", 123456789);
    snprintf(want, sizeof(want),
             "{\"type\":\"event\",\"channel\":\"$stats\",\"event\":\"stats\",\"id\":\"%s\","
             "\"seq\":123456789,\"ts\":%" PRId64 ",\"data\":{\"connections\":3}}",
             m->id, NOW);
    assert_string_equal(message_json(m), want);
    assert_string_equal(m->channel, "$stats");
    assert_int_equal(m->ts_ms, NOW);
    assert_int_equal(message_wire(m)[0], 0x81);
    message_unref(&m);
    assert_null(event_build_raw("$stats", "stats", "{", NOW, &ids));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(single_event_frame),
        cmocka_unit_test(data_keeps_the_publishers_text),
        cmocka_unit_test(nul_byte_is_refused),
        cmocka_unit_test(event_absent_when_not_given),
        cmocka_unit_test(data_of_any_type),
        cmocka_unit_test(batch_order_and_distinct_ids),
        cmocka_unit_test(ids_unique_across_calls),
        cmocka_unit_test(bad_bodies),
        cmocka_unit_test(name_lengths),
        cmocka_unit_test(batch_all_or_nothing),
        cmocka_unit_test(batch_size_bounds),
        cmocka_unit_test(body_length_is_respected),
        cmocka_unit_test(build_raw),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
