/* fuzz_publish.c -- libFuzzer target: a POST /publish body through validation and
 * serialization (a draft, numbered as a broker would: message_finish), then the Redis wire
 * format round trip of what it produced: every event must come back with its channel, epoch,
 * seq and exact frame, and pass the strict checks a receiving hub makes. */
#include "broker/redis_wire.h"
#include "common/message.h"
#include "control/event.h"

#include <jansson.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct check {
    struct message **msgs;
    size_t n, seen;
};

static void on_record(const struct redis_wire_record *rec, void *arg)
{
    struct check *c = arg;
    struct message *m = c->msgs[c->seen++];

    if (rec->channel_len != m->channel_len || memcmp(rec->channel, m->channel, m->channel_len) ||
        rec->frame_len != m->json_len || memcmp(rec->frame, message_json(m), m->json_len) ||
        rec->seq != m->seq || rec->epoch_len != strlen(m->epoch) ||
        memcmp(rec->epoch, m->epoch, rec->epoch_len))
        abort();
}

static void count_record(const struct redis_wire_record *rec, void *arg)
{
    if (!rec->channel_len || rec->frame_len < 2 || !rec->seq) /* well-formed records only */
        abort();
    ++*(size_t *)arg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct event_ids ids;
    struct message **msgs = NULL;
    size_t n = 0, len, bad;
    char err[256];
    struct redis_wire_heartbeat hb;

    event_ids_init(&ids, 42);
    if (event_parse_publish((const char *)data, size, 1764150000123, &ids, &msgs, &n, err,
                            sizeof(err)) == 0) {
        for (size_t i = 0; i < n; i++)
            message_finish(msgs[i], "f00d", (uint64_t)i + 1 + (size % 1000) * 1000000);
        /* every frame is valid JSON whose data and event equal the published ones: the
         * frame is written from the body's text, so check it against jansson's reading */
        json_t *root = json_loadb((const char *)data, size, 0, NULL);

        for (size_t i = 0; i < n; i++) {
            json_t *item = json_is_array(root) ? json_array_get(root, i) : root;
            json_t *frame = json_loadb(message_json(msgs[i]), msgs[i]->json_len, 0, NULL);

            if (!frame ||
                !json_equal(json_object_get(frame, "data"), json_object_get(item, "data")))
                abort();
            if (json_object_get(item, "event") &&
                !json_equal(json_object_get(frame, "event"), json_object_get(item, "event")))
                abort();
            if (memchr(message_json(msgs[i]), '\n', msgs[i]->json_len)) /* the wire needs that */
                abort();
            json_decref(frame);
        }
        json_decref(root);
        struct check c = {.msgs = msgs, .n = n};
        char *payload = redis_wire_events(msgs, n, &len);

        /* what one hub writes, every other reads whole: the strict record checks pass */
        if (redis_wire_decode(payload, len, (size_t)size + MESSAGE_EVENT_OVERHEAD, on_record, &c,
                              &hb, &bad) != REDIS_WIRE_EVENTS ||
            bad || c.seen != n)
            abort();
        free(payload);
        for (size_t i = 0; i < n; i++)
            message_unref(&msgs[i]);
        free(msgs);
    }
    /* and the same bytes as a payload from another hub */
    redis_wire_decode((const char *)data, size, 65536, count_record, &n, &hb, &bad);
    return 0;
}
