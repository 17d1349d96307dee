/* test_sse_stream.c -- hub/delivery/sse_stream.c: the channels of an SSE stream's query, its
 * cursor, and messages written as SSE events (id, event, data), byte for byte. */
#include "common/message.h"
#include "delivery/cursor.h"
#include "delivery/protocol.h"
#include "delivery/sse_stream.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* An event frame of channel ch, as hubs write them ("event" right after "channel"). name is
 * the event member's JSON text (NULL: none). */
static struct message *event(const char *ch, const char *name, const char *epoch, uint64_t seq)
{
    char json[512];
    int n = snprintf(json, sizeof(json),
                     "{\"type\":\"event\",\"channel\":\"%s\"%s%s,\"id\":\"x\",\"seq\":%llu,"
                     "\"data\":1}",
                     ch, name ? ",\"event\":" : "", name ? name : "", (unsigned long long)seq);
    struct message *m = message_new(ch, strlen(ch), json, (size_t)n);

    m->kind = MESSAGE_EVENT;
    m->seq = seq;
    snprintf(m->epoch, sizeof(m->epoch), "%s", epoch);
    message_find_name(m);
    return m;
}

/* msg as an event of x, NUL-terminated (the frame's length must be what it said). */
static char *frame(struct sse_stream *x, const struct message *m)
{
    size_t len = sse_stream_frame(x, m, NULL, 0);
    char *out = malloc(len + 1);

    assert_int_equal(sse_stream_frame(x, m, (unsigned char *)out, len), len);
    out[len] = '\0';
    return out;
}

static void assert_frame(struct sse_stream *x, struct message *m, const char *want)
{
    char *got = frame(x, m);

    assert_string_equal(got, want);
    free(got);
    message_unref(&m);
}

static struct sse_stream *stream(const char *list)
{
    char err[160];
    struct sse_stream *x = sse_stream_new(list, 100, err, sizeof(err));

    if (!x)
        fail_msg("%s: %s", list, err);
    return x;
}

static void the_query_names_the_channels_in_order(void **state)
{
    char err[160];
    size_t len;
    struct sse_stream *x = stream("b,,a,b");

    (void)state;
    assert_int_equal(sse_stream_channels(x), 3); /* empty items skipped, repeats kept */
    assert_memory_equal(sse_stream_channel(x, 0, &len), "b", 1);
    assert_memory_equal(sse_stream_channel(x, 1, &len), "a", 1);
    assert_memory_equal(sse_stream_channel(x, 2, &len), "b", 1);
    sse_stream_free(x);
    assert_null(sse_stream_new("", 100, err, sizeof(err)));
    assert_null(sse_stream_new(",,", 100, err, sizeof(err)));
    assert_null(sse_stream_new("a,b c", 100, err, sizeof(err)));
    assert_null(sse_stream_new("a,b,c", 2, err, sizeof(err)));
    x = sse_stream_new("a,b", 2, err, sizeof(err));
    assert_non_null(x);
    sse_stream_free(x);
    sse_stream_free(NULL);
}

static void events_carry_the_cursor_of_every_channel(void **state)
{
    struct sse_stream *x = stream("a,b");

    (void)state;
    assert_frame(x, event("a", "\"created\"", "E1", 5),
                 "id: E1:5,\nevent: created\n"
                 "data: {\"type\":\"event\",\"channel\":\"a\",\"event\":\"created\",\"id\":\"x\","
                 "\"seq\":5,\"data\":1}\n\n");
    assert_frame(
        x, event("b", NULL, "F2", 9),
        "id: E1:5,F2:9\nevent: message\n"
        "data: {\"type\":\"event\",\"channel\":\"b\",\"id\":\"x\",\"seq\":9,\"data\":1}\n\n");
    assert_frame(x, message_gap("a", 1, "E1", 6, 8),
                 "id: E1:8,F2:9\nevent: gap\n"
                 "data: {\"type\":\"gap\",\"channel\":\"a\",\"from\":6,\"to\":8}\n\n");
    sse_stream_free(x);
}

static void a_resumed_stream_starts_from_last_event_id(void **state)
{
    struct sse_stream *x = stream("a,b");
    char err[160];

    (void)state;
    assert_int_equal(
        cursor_parse("Last-Event-ID", "E1:4,F2:7", 9, sse_stream_positions(x), 2, err, sizeof(err)),
        0);
    /* b's subscribed, before a's: a's entry stays what the client had */
    assert_frame(x, proto_subscribed("b", "F2", 7, 1, NULL),
                 "id: E1:4,F2:7\nevent: subscribed\ndata: {\"type\":\"subscribed\",\"channel\":"
                 "\"b\",\"epoch\":\"F2\",\"seq\":7,\"recovered\":true}\n\n");
    sse_stream_free(x);
}

static void replies_are_named_by_type_and_move_nothing(void **state)
{
    struct sse_stream *x = stream("a");

    (void)state;
    assert_frame(x, proto_welcome("c-1", "hub", 25),
                 "event: welcome\ndata: {\"type\":\"welcome\",\"connection\":\"c-1\","
                 "\"instance\":\"hub\",\"heartbeat\":25}\n\n");
    assert_frame(x, proto_error("forbidden", "no", NULL),
                 "event: error\ndata: {\"type\":\"error\",\"code\":\"forbidden\","
                 "\"message\":\"no\"}\n\n");
    assert_string_equal(sse_stream_positions(x)[0].epoch, "");
    sse_stream_free(x);
}

static void a_reset_is_a_subscribed_event(void **state)
{
    static const char json[] = "{\"type\":\"subscribed\",\"channel\":\"a\",\"epoch\":\"N3\","
                               "\"seq\":0,\"recovered\":false}";
    struct sse_stream *x = stream("a,a");
    struct message *m = message_new("a", 1, json, sizeof(json) - 1);

    (void)state;
    m->kind = MESSAGE_RESET;
    snprintf(m->epoch, sizeof(m->epoch), "N3");
    /* a channel named twice: both entries move together */
    assert_frame(x, m,
                 "id: N3:0,N3:0\nevent: subscribed\ndata: {\"type\":\"subscribed\","
                 "\"channel\":\"a\",\"epoch\":\"N3\",\"seq\":0,\"recovered\":false}\n\n");
    sse_stream_free(x);
}

static void event_names_are_decoded_or_message(void **state)
{
    struct sse_stream *x = stream("a");
    char *got;
    struct message *m;

    (void)state;
    m = event("a", "\"\\u00e9t\\u00e9 \\\"q\\\"\"", "E", 1);
    got = frame(x, m);
    assert_non_null(strstr(got, "\nevent: \xc3\xa9t\xc3\xa9 \"q\"\n"));
    free(got);
    message_unref(&m);
    /* a line break cannot be in an SSE field: "message", the data still has the name */
    m = event("a", "\"two\\nlines\"", "E", 2);
    got = frame(x, m);
    assert_non_null(strstr(got, "\nevent: message\n"));
    assert_non_null(strstr(got, "\"event\":\"two\\nlines\""));
    free(got);
    message_unref(&m);
    m = event("a", "\"nul\\u0000\"", "E", 3);
    got = frame(x, m);
    assert_non_null(strstr(got, "\nevent: message\n"));
    free(got);
    message_unref(&m);
    sse_stream_free(x);
}

static void line_breaks_in_the_json_start_data_lines(void **state)
{
    static const char json[] =
        "{\"type\":\"event\",\r\n\"channel\":\"a\",\r\"seq\":1,\n\"data\":1}";
    struct sse_stream *x = stream("a");
    struct message *m = message_new("a", 1, json, sizeof(json) - 1);

    (void)state;
    m->kind = MESSAGE_EVENT;
    m->seq = 1;
    snprintf(m->epoch, sizeof(m->epoch), "E");
    assert_frame(x, m,
                 "id: E:1\nevent: message\ndata: {\"type\":\"event\",\ndata: \"channel\":\"a\","
                 "\ndata: \"seq\":1,\ndata: \"data\":1}\n\n");
    sse_stream_free(x);
}

static void an_unnamed_stream_has_no_event_lines(void **state)
{
    struct sse_stream *x = stream("a");

    (void)state;
    sse_stream_set_unnamed(x, true);
    assert_frame(x, event("a", "\"created\"", "E", 4),
                 "id: E:4\ndata: {\"type\":\"event\",\"channel\":\"a\",\"event\":\"created\","
                 "\"id\":\"x\",\"seq\":4,\"data\":1}\n\n");
    sse_stream_free(x);
}

static void nothing_moves_when_it_does_not_fit(void **state)
{
    struct sse_stream *x = stream("a");
    struct message *m = event("a", NULL, "E", 3);
    unsigned char small[16];
    size_t len = sse_stream_frame(x, m, small, sizeof(small));

    (void)state;
    assert_true(len > sizeof(small));
    assert_string_equal(sse_stream_positions(x)[0].epoch, ""); /* not written: not moved */
    message_unref(&m);
    sse_stream_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_query_names_the_channels_in_order),
        cmocka_unit_test(events_carry_the_cursor_of_every_channel),
        cmocka_unit_test(a_resumed_stream_starts_from_last_event_id),
        cmocka_unit_test(replies_are_named_by_type_and_move_nothing),
        cmocka_unit_test(a_reset_is_a_subscribed_event),
        cmocka_unit_test(event_names_are_decoded_or_message),
        cmocka_unit_test(line_breaks_in_the_json_start_data_lines),
        cmocka_unit_test(an_unnamed_stream_has_no_event_lines),
        cmocka_unit_test(nothing_moves_when_it_does_not_fit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
