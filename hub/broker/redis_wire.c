/* redis_wire.c -- encoding and decoding of the Redis payloads described in redis_wire.h.
 * Pure: memchr-based scanning; jansson checks each frame that comes from Redis once per hub
 * (it validates, nothing is re-serialized). */
#include "redis_wire.h"

#include "common/channel_name.h"
#include "common/message.h"
#include "common/xalloc.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVENTS_MAGIC "H2E\n"
#define EVENTS_V1_MAGIC "H1E\n"
#define HEARTBEAT_MAGIC "H2B\n"
#define HEARTBEAT_V3_MAGIC "H3B\n"
#define HEARTBEAT_V1_MAGIC "H1B\n"
#define MAGIC_LEN 4

char *redis_wire_events(struct message *const *msgs, size_t n, size_t *len)
{
    size_t total = MAGIC_LEN;
    char *buf, *p;

    for (size_t i = 0; i < n; i++)
        total +=
            msgs[i]->channel_len + 1 + strlen(msgs[i]->epoch) + 1 + 20 + 1 + msgs[i]->json_len + 1;
    buf = xmalloc(total);
    memcpy(buf, EVENTS_MAGIC, MAGIC_LEN);
    p = buf + MAGIC_LEN;
    for (size_t i = 0; i < n; i++) {
        p += sprintf(p, "%s\t%s\t%" PRIu64 "\t", msgs[i]->channel, msgs[i]->epoch, msgs[i]->seq);
        memcpy(p, message_json(msgs[i]), msgs[i]->json_len);
        p += msgs[i]->json_len;
        *p++ = '\n';
    }
    *len = (size_t)(p - buf);
    return buf;
}

size_t redis_wire_heartbeat(char *buf, size_t cap, const struct redis_wire_heartbeat *hb)
{
    int n;

    if (hb->shards)
        n = snprintf(buf, cap,
                     HEARTBEAT_V3_MAGIC "%.*s\t%" PRIu64 "\t%" PRId64 "\t%" PRIu64 "\t%" PRId64
                                        "\t%u\t%u\t%016" PRIx64 "\n",
                     (int)hb->instance_len, hb->instance, hb->nonce, hb->started_ms, hb->seq,
                     hb->sent_ms, hb->shard, hb->shards, hb->digest);
    else
        n = snprintf(
            buf, cap, HEARTBEAT_MAGIC "%.*s\t%" PRIu64 "\t%" PRId64 "\t%" PRIu64 "\t%" PRId64 "\n",
            (int)hb->instance_len, hb->instance, hb->nonce, hb->started_ms, hb->seq, hb->sent_ms);

    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static int parse_u64(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 20)
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint64_t d = (uint64_t)(p[i] - '0');

        if (p[i] < '0' || p[i] > '9' || v > (UINT64_MAX - d) / 10)
            return -1; /* not a digit, or past 2^64 - 1 */
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Splits the first line of p[0..len) at tabs into exactly n fields. Returns 0 or -1. */
static int fields(const char *p, size_t len, const char **f, size_t *flen, size_t n)
{
    const char *end = memchr(p, '\n', len);

    if (!end)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char *stop = i + 1 < n ? memchr(p, '\t', (size_t)(end - p)) : end;

        if (!stop)
            return -1;
        f[i] = p;
        flen[i] = (size_t)(stop - p);
        p = stop + 1;
    }
    return p == end + 1 ? 0 : -1; /* no tab left over */
}

/* Exactly 16 hex digits. Returns 0 or -1. */
static int parse_hex64(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (n != 16)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;

        if (d < 0)
            return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

/* Version 3: version 2's fields, shard, shards, digest; version 2: instance, nonce, started,
 * seq, sent; version 1: instance, seq, sent. */
static enum redis_wire_kind decode_heartbeat(const char *p, size_t len, int version,
                                             struct redis_wire_heartbeat *hb)
{
    const char *f[8];
    size_t n[8], k = version == 3 ? 8 : version == 2 ? 5 : 3;
    uint64_t v[8] = {0};

    memset(hb, 0, sizeof(*hb));
    if (fields(p, len, f, n, k) < 0 || n[0] == 0)
        return REDIS_WIRE_UNKNOWN;
    for (size_t i = 1; i < k; i++)
        if (i == 7 ? parse_hex64(f[i], n[i], &v[i]) < 0 : parse_u64(f[i], n[i], &v[i]) < 0)
            return REDIS_WIRE_UNKNOWN;
    if (version == 3 && (v[6] == 0 || v[6] > 65536 || v[5] >= v[6]))
        return REDIS_WIRE_UNKNOWN; /* shard must be within shards */
    hb->instance = f[0];
    hb->instance_len = n[0];
    if (version == 3) {
        hb->shard = (unsigned)v[5];
        hb->shards = (unsigned)v[6];
        hb->digest = v[7];
    }
    if (version >= 2) {
        hb->nonce = v[1];
        hb->started_ms = (int64_t)v[2];
        hb->seq = v[3];
        hb->sent_ms = (int64_t)v[4];
        hb->has_nonce = 1;
    } else {
        hb->seq = v[1];
        hb->sent_ms = (int64_t)v[2];
    }
    return REDIS_WIRE_HEARTBEAT;
}

int redis_wire_epoch_ok(const char *epoch, size_t len)
{
    if (len < 1 || len > MESSAGE_EPOCH_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = epoch[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            return 0;
    }
    return 1;
}

int redis_wire_frame_ok(const char *channel, size_t channel_len, uint64_t seq, const char *frame,
                        size_t len, size_t max_frame)
{
    static const char head[] = "{\"type\":\"event\",\"channel\":\"";
    size_t hl = sizeof(head) - 1;
    json_t *root, *sv;
    int ok;

    if (!channel_name_is_valid(channel, channel_len) ||
        channel_name_is_reserved(channel, channel_len))
        return 0;
    if (len > max_frame || len < hl + channel_len + 2 || memchr(frame, '\0', len))
        return 0;
    if (memcmp(frame, head, hl) != 0 || memcmp(frame + hl, channel, channel_len) != 0 ||
        frame[hl + channel_len] != '"' || frame[hl + channel_len + 1] != ',')
        return 0;
    /* jansson checks the syntax and the UTF-8 of every string */
    root = json_loadb(frame, len, JSON_REJECT_DUPLICATES, NULL);
    sv = json_object_get(root, "seq");
    ok = json_is_object(root) && json_object_get(root, "data") != NULL && json_is_integer(sv) &&
         (uint64_t)json_integer_value(sv) == seq;
    json_decref(root);
    return ok;
}

enum redis_wire_kind redis_wire_decode(const char *p, size_t len, size_t max_frame,
                                       redis_wire_event_fn *fn, void *arg,
                                       struct redis_wire_heartbeat *hb, size_t *bad)
{
    const char *end = p + len;

    *bad = 0;
    if (len >= MAGIC_LEN && !memcmp(p, HEARTBEAT_V3_MAGIC, MAGIC_LEN))
        return decode_heartbeat(p + MAGIC_LEN, len - MAGIC_LEN, 3, hb);
    if (len >= MAGIC_LEN && !memcmp(p, HEARTBEAT_MAGIC, MAGIC_LEN))
        return decode_heartbeat(p + MAGIC_LEN, len - MAGIC_LEN, 2, hb);
    if (len >= MAGIC_LEN && !memcmp(p, HEARTBEAT_V1_MAGIC, MAGIC_LEN))
        return decode_heartbeat(p + MAGIC_LEN, len - MAGIC_LEN, 1, hb);
    if (len >= MAGIC_LEN && !memcmp(p, EVENTS_V1_MAGIC, MAGIC_LEN))
        return REDIS_WIRE_UNKNOWN; /* version 1: no seq to deliver it by */
    if (len < MAGIC_LEN || memcmp(p, EVENTS_MAGIC, MAGIC_LEN) != 0)
        return REDIS_WIRE_UNKNOWN;
    p += MAGIC_LEN;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *t1, *t2, *t3;
        struct redis_wire_record rec;

        if (!nl) { /* a record must end with a newline */
            (*bad)++;
            break;
        }
        t1 = memchr(p, '\t', (size_t)(nl - p));
        t2 = t1 ? memchr(t1 + 1, '\t', (size_t)(nl - t1 - 1)) : NULL;
        t3 = t2 ? memchr(t2 + 1, '\t', (size_t)(nl - t2 - 1)) : NULL;
        if (!t3 || parse_u64(t2 + 1, (size_t)(t3 - t2 - 1), &rec.seq) < 0 || rec.seq == 0) {
            (*bad)++;
            p = nl + 1;
            continue;
        }
        rec.channel = p;
        rec.channel_len = (size_t)(t1 - p);
        rec.epoch = t1 + 1;
        rec.epoch_len = (size_t)(t2 - t1 - 1);
        rec.frame = t3 + 1;
        rec.frame_len = (size_t)(nl - t3 - 1);
        if (redis_wire_epoch_ok(rec.epoch, rec.epoch_len) &&
            redis_wire_frame_ok(rec.channel, rec.channel_len, rec.seq, rec.frame, rec.frame_len,
                                max_frame))
            fn(&rec, arg);
        else
            (*bad)++;
        p = nl + 1;
    }
    return REDIS_WIRE_EVENTS;
}
