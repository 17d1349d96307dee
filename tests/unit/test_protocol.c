/* test_protocol.c -- hub/delivery/protocol.c: client frames in, replies out, "ref" echoed as sent.
 */
#include "common/message.h"
#include "delivery/protocol.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static int parse(const char *frame, struct proto_cmd *cmd, char *err, size_t errlen)
{
    err[0] = '\0';
    return proto_parse(frame, strlen(frame), cmd, err, errlen);
}

/* A reply is a sealed text frame of its JSON; returns that JSON (borrowed). */
static const char *reply_json(struct message *m)
{
    assert_non_null(m);
    assert_int_equal(message_wire(m)[0], 0x81);
    assert_int_equal(message_wire_len(m), m->header_len + m->json_len);
    assert_int_equal(strlen(message_json(m)), m->json_len);
    assert_string_equal(m->channel, "");
    assert_string_equal(m->id, "");
    return message_json(m);
}

static void parse_commands(void **state)
{
    struct proto_cmd cmd;
    char err[256];

    (void)state;
    assert_int_equal(
        parse("{\"type\":\"subscribe\",\"channel\":\"orders\"}", &cmd, err, sizeof(err)), 0);
    assert_int_equal(cmd.type, PROTO_SUBSCRIBE);
    assert_string_equal(cmd.channel, "orders");
    assert_int_equal(cmd.channel_len, 6);
    assert_null(cmd.ref);
    proto_cmd_clear(&cmd);

    assert_int_equal(
        parse("{\"channel\":\"a.b:c\",\"type\":\"unsubscribe\"}", &cmd, err, sizeof(err)), 0);
    assert_int_equal(cmd.type, PROTO_UNSUBSCRIBE);
    assert_string_equal(cmd.channel, "a.b:c");
    assert_int_equal(cmd.channel_len, 5);
    proto_cmd_clear(&cmd);

    assert_int_equal(parse("{\"type\":\"ping\"}", &cmd, err, sizeof(err)), 0);
    assert_int_equal(cmd.type, PROTO_PING);
    assert_null(cmd.ref);
    proto_cmd_clear(&cmd);
    proto_cmd_clear(&cmd); /* twice is harmless */

    /* the hub's own channels may be subscribed to */
    assert_int_equal(
        parse("{\"type\":\"subscribe\",\"channel\":\"$stats\"}", &cmd, err, sizeof(err)), 0);
    assert_string_equal(cmd.channel, "$stats");
    proto_cmd_clear(&cmd);
}

static void parse_longest_channel(void **state)
{
    char frame[256], name[130];
    struct proto_cmd cmd;
    char err[256];

    (void)state;
    memset(name, 'n', 128);
    name[128] = '\0';
    snprintf(frame, sizeof(frame), "{\"type\":\"subscribe\",\"channel\":\"%s\"}", name);
    assert_int_equal(parse(frame, &cmd, err, sizeof(err)), 0);
    assert_int_equal(cmd.channel_len, 128);
    assert_string_equal(cmd.channel, name);
    proto_cmd_clear(&cmd);

    name[128] = 'n';
    name[129] = '\0';
    snprintf(frame, sizeof(frame), "{\"type\":\"subscribe\",\"channel\":\"%s\",\"ref\":1}", name);
    assert_int_equal(parse(frame, &cmd, err, sizeof(err)), -1);
    assert_string_equal(cmd.ref, "1");
    proto_cmd_clear(&cmd);
}

static void frame_length_is_respected(void **state)
{
    const char *buf = "{\"type\":\"ping\"}{\"x\"";
    struct proto_cmd cmd;
    char err[256];

    (void)state;
    assert_int_equal(proto_parse(buf, 15, &cmd, err, sizeof(err)), 0);
    assert_int_equal(cmd.type, PROTO_PING);
    proto_cmd_clear(&cmd);
    assert_int_equal(proto_parse(buf, strlen(buf), &cmd, err, sizeof(err)), -1);
    proto_cmd_clear(&cmd);
}

/* The ref is captured as JSON and comes back, value for value, in replies and errors. */
static void ref_echo(void **state)
{
    static const struct {
        const char *ref;  /* as sent */
        const char *echo; /* as it must appear */
    } cases[] = {
        {"\"abc\"", "\"abc\""},
        {"42", "42"},
        {"-7", "-7"},
        {"{\"a\":[1,2],\"b\":{\"c\":null}}", "{\"a\":[1,2],\"b\":{\"c\":null}}"},
        {"[true,false]", "[true,false]"},
        {"\"caf\\u00e9 \\\"q\\\" \\\\\"", "\"caf\xc3\xa9 \\\"q\\\" \\\\\""},
        {"null", "null"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char frame[256], want[512], err[256];
        struct proto_cmd cmd;
        struct message *m;

        snprintf(frame, sizeof(frame), "{\"type\":\"subscribe\",\"channel\":\"c\",\"ref\":%s}",
                 cases[i].ref);
        assert_int_equal(parse(frame, &cmd, err, sizeof(err)), 0);
        assert_non_null(cmd.ref);
        assert_string_equal(cmd.ref, cases[i].echo);

        m = proto_reply("subscribed", cmd.channel, cmd.ref);
        snprintf(want, sizeof(want), "{\"type\":\"subscribed\",\"channel\":\"c\",\"ref\":%s}",
                 cases[i].echo);
        assert_string_equal(reply_json(m), want);
        message_unref(&m);

        m = proto_reply("pong", NULL, cmd.ref);
        snprintf(want, sizeof(want), "{\"type\":\"pong\",\"ref\":%s}", cases[i].echo);
        assert_string_equal(reply_json(m), want);
        message_unref(&m);

        m = proto_error("rate_limited", "slow down", cmd.ref);
        snprintf(want, sizeof(want),
                 "{\"type\":\"error\",\"code\":\"rate_limited\",\"message\":\"slow down\","
                 "\"ref\":%s}",
                 cases[i].echo);
        assert_string_equal(reply_json(m), want);
        message_unref(&m);
        proto_cmd_clear(&cmd);
        assert_null(cmd.ref);
    }
}

static void replies_without_ref(void **state)
{
    struct message *m;

    (void)state;
    m = proto_reply("pong", NULL, NULL);
    assert_string_equal(reply_json(m), "{\"type\":\"pong\"}");
    message_unref(&m);
    m = proto_reply("unsubscribed", "orders", NULL);
    assert_string_equal(reply_json(m), "{\"type\":\"unsubscribed\",\"channel\":\"orders\"}");
    message_unref(&m);
    m = proto_error("bad_request", "\"type\" must be a string", NULL);
    assert_string_equal(reply_json(m), "{\"type\":\"error\",\"code\":\"bad_request\","
                                       "\"message\":\"\\\"type\\\" must be a string\"}");
    message_unref(&m);
}

static void bad_frames(void **state)
{
    static const struct {
        const char *frame;
        const char *ref; /* the ref that must still be captured, or NULL */
    } cases[] = {
        {"", NULL},
        {"{", NULL},
        {"not json", NULL},
        {"{\"type\":\"ping\"} x", NULL},
        {"[]", NULL},
        {"[{\"type\":\"ping\",\"ref\":1}]", NULL},
        {"\"ping\"", NULL},
        {"5", NULL},
        {"{\"type\":\"ping\",\"type\":\"ping\"}", NULL},
        {"{}", NULL},
        {"{\"ref\":\"r1\"}", "\"r1\""},
        {"{\"type\":5,\"ref\":2}", "2"},
        {"{\"type\":null,\"ref\":3}", "3"},
        {"{\"type\":\"publish\",\"channel\":\"c\",\"ref\":{\"k\":4}}", "{\"k\":4}"},
        {"{\"type\":\"PING\"}", NULL},
        {"{\"type\":\"\"}", NULL},
        {"{\"type\":\"subscribe\",\"ref\":5}", "5"},
        {"{\"type\":\"subscribe\",\"channel\":5,\"ref\":[6]}", "[6]"},
        {"{\"type\":\"subscribe\",\"channel\":\"\",\"ref\":7}", "7"},
        {"{\"type\":\"subscribe\",\"channel\":\"a b\",\"ref\":8}", "8"},
        {"{\"type\":\"subscribe\",\"channel\":\"$\",\"ref\":9}", "9"},
        {"{\"type\":\"subscribe\",\"channel\":\"a$\"}", NULL},
        {"{\"type\":\"subscribe\",\"channel\":\"a\\u0000b\",\"ref\":10}", NULL}, /* not JSON */
        {"{\"type\":\"unsubscribe\",\"channel\":\"*\",\"ref\":\"u\"}", "\"u\""},
        {"{\"type\":\"unsubscribe\",\"ref\":11}", "11"},
        {"{\"type\":\"subscribe\",\"channel\":\"\xff\"}", NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct proto_cmd cmd;
        char err[256];
        int rc = parse(cases[i].frame, &cmd, err, sizeof(err));

        if (rc != -1 || !cases[i].ref != !cmd.ref)
            print_error("frame %s: rc %d, ref %s\n", cases[i].frame, rc,
                        cmd.ref ? cmd.ref : "NULL");
        assert_int_equal(rc, -1);
        assert_true(err[0] != '\0');
        if (cases[i].ref) {
            assert_non_null(cmd.ref);
            assert_string_equal(cmd.ref, cases[i].ref);
        } else {
            assert_null(cmd.ref);
        }
        proto_cmd_clear(&cmd);
    }
}

static void welcome(void **state)
{
    struct message *m = proto_welcome("c-17", "hub-a", 25);
    json_error_t jerr;
    json_t *root;

    (void)state;
    assert_string_equal(reply_json(m), "{\"type\":\"welcome\",\"connection\":\"c-17\","
                                       "\"instance\":\"hub-a\",\"heartbeat\":25}");
    root = json_loads(message_json(m), JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(root);
    assert_int_equal(json_object_size(root), 4);
    assert_string_equal(json_string_value(json_object_get(root, "type")), "welcome");
    assert_string_equal(json_string_value(json_object_get(root, "connection")), "c-17");
    assert_string_equal(json_string_value(json_object_get(root, "instance")), "hub-a");
    assert_true(json_is_integer(json_object_get(root, "heartbeat")));
    assert_int_equal(json_integer_value(json_object_get(root, "heartbeat")), 25);
    json_decref(root);
    assert_int_equal(atomic_load(&m->refs), 1);
    message_unref(&m);
}

/* The reply holds what was asked, and is the bytes jansson writes for it: parsed and written
 * back compact (jansson keeps the order of the keys), it comes out the same. */
static void assert_subscribed(const char *text, const char *channel, const char *epoch,
                              uint64_t seq, int recovered, const char *ref)
{
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    json_t *want_ref = ref ? json_loads(ref, JSON_DECODE_ANY, NULL) : NULL;
    char *again;

    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "type")), "subscribed");
    assert_string_equal(json_string_value(json_object_get(root, "channel")), channel);
    assert_string_equal(json_string_value(json_object_get(root, "epoch")), epoch);
    assert_true((uint64_t)json_integer_value(json_object_get(root, "seq")) == seq);
    if (recovered < 0)
        assert_null(json_object_get(root, "recovered"));
    else
        assert_true(json_object_get(root, "recovered") == json_boolean(recovered));
    assert_true(ref ? json_equal(json_object_get(root, "ref"), want_ref)
                    : !json_object_get(root, "ref"));
    again = json_dumps(root, JSON_COMPACT);
    assert_string_equal(text, again);
    free(again);
    json_decref(want_ref);
    json_decref(root);
}

static void subscribed_as_jansson_writes_it(void **state)
{
    char long_channel[129], long_ref[600];
    static const char *const refs[] = {NULL, "7", "\"r\"", "{\"a\":[1,2]}"};

    (void)state;
    memset(long_channel, 'c', 128);
    long_channel[128] = '\0';
    /* a ref past the reply's stack scratch */
    memset(long_ref, 'x', sizeof(long_ref));
    long_ref[0] = '"';
    long_ref[sizeof(long_ref) - 2] = '"';
    long_ref[sizeof(long_ref) - 1] = '\0';
    for (int recovered = -1; recovered <= 1; recovered++) {
        for (size_t i = 0; i < sizeof(refs) / sizeof(refs[0]) + 1; i++) {
            const char *ref = i < sizeof(refs) / sizeof(refs[0]) ? refs[i] : long_ref;
            struct message *m =
                proto_subscribed(long_channel, "Fz9", UINT64_C(18446744073709), recovered, ref);

            assert_int_equal(message_wire(m)[0], 0x81);
            assert_int_equal(strlen(message_json(m)), m->json_len);
            assert_subscribed(message_json(m), long_channel, "Fz9", UINT64_C(18446744073709),
                              recovered, ref);
            assert_string_equal(m->channel, long_channel);
            assert_string_equal(m->epoch, "Fz9");
            assert_true(m->seq == UINT64_C(18446744073709));
            message_unref(&m);
        }
    }
}

/* A string that would need escaping (no caller passes one) still makes valid JSON. */
static void strings_that_need_escaping(void **state)
{
    struct message *m = proto_welcome("c-1", "odd\"name\\", 5);
    json_t *root = json_loads(message_json(m), 0, NULL);

    (void)state;
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "instance")), "odd\"name\\");
    json_decref(root);
    message_unref(&m);
    m = proto_reply("unsubscribed", "a\nb", "1");
    root = json_loads(message_json(m), 0, NULL);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "channel")), "a\nb");
    assert_int_equal(json_integer_value(json_object_get(root, "ref")), 1);
    json_decref(root);
    message_unref(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_commands),
        cmocka_unit_test(parse_longest_channel),
        cmocka_unit_test(frame_length_is_respected),
        cmocka_unit_test(ref_echo),
        cmocka_unit_test(replies_without_ref),
        cmocka_unit_test(bad_frames),
        cmocka_unit_test(welcome),
        cmocka_unit_test(subscribed_as_jansson_writes_it),
        cmocka_unit_test(strings_that_need_escaping),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
