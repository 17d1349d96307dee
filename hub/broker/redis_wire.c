/* redis_wire.c -- encoding and decoding of the Redis payloads described in redis_wire.h.
 * Pure: memchr-based scanning, no JSON library, no allocation when decoding. */
#include "redis_wire.h"

#include "common/channel_name.h"
#include "common/message.h"
#include "common/xalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVENTS_MAGIC "H1E\n"
#define HEARTBEAT_MAGIC "H1B\n"
#define MAGIC_LEN 4

char *redis_wire_events(struct message *const *msgs, size_t n, size_t *len)
{
    size_t total = MAGIC_LEN;
    char *buf, *p;

    for (size_t i = 0; i < n; i++)
        total += msgs[i]->channel_len + 1 + msgs[i]->json_len + 1;
    buf = xmalloc(total);
    memcpy(buf, EVENTS_MAGIC, MAGIC_LEN);
    p = buf + MAGIC_LEN;
    for (size_t i = 0; i < n; i++) {
        memcpy(p, msgs[i]->channel, msgs[i]->channel_len);
        p += msgs[i]->channel_len;
        *p++ = '\t';
        memcpy(p, message_json(msgs[i]), msgs[i]->json_len);
        p += msgs[i]->json_len;
        *p++ = '\n';
    }
    *len = total;
    return buf;
}

size_t redis_wire_heartbeat(char *buf, size_t cap, const char *instance, uint64_t seq,
                            int64_t sent_ms)
{
    int n = snprintf(buf, cap, HEARTBEAT_MAGIC "%s\t%" PRIu64 "\t%" PRId64 "\n", instance, seq,
                     sent_ms);

    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static int parse_u64(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 19)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return 0;
}

static enum redis_wire_kind decode_heartbeat(const char *p, size_t len,
                                             struct redis_wire_heartbeat *hb)
{
    const char *end = p + len;
    const char *t1 = memchr(p, '\t', len);
    const char *t2 = t1 ? memchr(t1 + 1, '\t', (size_t)(end - t1 - 1)) : NULL;
    const char *nl = t2 ? memchr(t2 + 1, '\n', (size_t)(end - t2 - 1)) : NULL;
    uint64_t sent;

    if (!nl || t1 == p)
        return REDIS_WIRE_UNKNOWN;
    if (parse_u64(t1 + 1, (size_t)(t2 - t1 - 1), &hb->seq) < 0 ||
        parse_u64(t2 + 1, (size_t)(nl - t2 - 1), &sent) < 0)
        return REDIS_WIRE_UNKNOWN;
    hb->instance = p;
    hb->instance_len = (size_t)(t1 - p);
    hb->sent_ms = (int64_t)sent;
    return REDIS_WIRE_HEARTBEAT;
}

enum redis_wire_kind redis_wire_decode(const char *p, size_t len, redis_wire_event_fn *fn,
                                       void *arg, struct redis_wire_heartbeat *hb, size_t *bad)
{
    const char *end = p + len;

    *bad = 0;
    if (len >= MAGIC_LEN && !memcmp(p, HEARTBEAT_MAGIC, MAGIC_LEN))
        return decode_heartbeat(p + MAGIC_LEN, len - MAGIC_LEN, hb);
    if (len < MAGIC_LEN || memcmp(p, EVENTS_MAGIC, MAGIC_LEN) != 0)
        return REDIS_WIRE_UNKNOWN;
    p += MAGIC_LEN;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *tab;

        if (!nl) { /* a record must end with a newline */
            (*bad)++;
            break;
        }
        tab = memchr(p, '\t', (size_t)(nl - p));
        if (!tab || !channel_name_is_valid(p, (size_t)(tab - p)) || nl - tab - 1 < 2)
            (*bad)++;
        else
            fn(p, (size_t)(tab - p), tab + 1, (size_t)(nl - tab - 1), arg);
        p = nl + 1;
    }
    return REDIS_WIRE_EVENTS;
}
