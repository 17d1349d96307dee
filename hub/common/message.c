/* message.c -- immutable, refcounted WebSocket frames.
 * Built on whichever thread made the event (the control plane for published events, a
 * delivery plane for replies), read by any number of delivery planes, freed by whoever drops
 * the last reference. The frame header is written once, here, so lws only ever sends these
 * bytes as they are: nothing writes into a shared message.
 *
 * An event is first a draft: its JSON with a hole for `,"seq":N`, because its number is only
 * known when the broker takes it (in this process, or in Redis). message_finish() writes the
 * number at the end of the hole and moves the short head (type, channel, event, id) up to it,
 * so the long tail (ts and data) never moves; the JSON then starts a little after
 * MESSAGE_PRE, with room for the WebSocket header still in front. */
#include "message.h"

#include "xalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct message *alloc(const char *channel, size_t channel_len, size_t room)
{
    struct message *m = xmalloc(sizeof(*m) + room);

    atomic_init(&m->refs, 1);
    if (channel_len > MESSAGE_CHANNEL_MAX)
        channel_len = MESSAGE_CHANNEL_MAX;
    if (channel)
        memcpy(m->channel, channel, channel_len);
    else
        channel_len = 0;
    m->channel[channel_len] = '\0';
    m->channel_len = (uint16_t)channel_len;
    m->kind = MESSAGE_REPLY;
    m->header_len = 0;
    m->json_off = MESSAGE_PRE;
    m->epoch[0] = '\0';
    m->seq = m->seq_from = 0;
    m->ts_ms = 0;
    m->id[0] = '\0';
    m->name_off = m->name_len = 0;
    m->draft_head = 0;
    return m;
}

struct message *message_alloc(const char *channel, size_t channel_len, size_t json_len)
{
    struct message *m = alloc(channel, channel_len, MESSAGE_PRE + json_len + 1);

    m->json_len = json_len;
    m->buf[MESSAGE_PRE + json_len] = '\0';
    return m;
}

size_t message_ws_header(unsigned char *end, uint64_t len)
{
    if (len < 126) {
        end[-2] = 0x81;
        end[-1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xffff) {
        end[-4] = 0x81;
        end[-3] = 126;
        end[-2] = (unsigned char)(len >> 8);
        end[-1] = (unsigned char)len;
        return 4;
    }
    end[-10] = 0x81;
    end[-9] = 127;
    for (int i = 0; i < 8; i++)
        end[-8 + i] = (unsigned char)(len >> (56 - 8 * i));
    return 10;
}

void message_seal(struct message *m)
{
    m->header_len = (uint8_t)message_ws_header(m->buf + m->json_off, m->json_len);
}

struct message *message_new(const char *channel, size_t channel_len, const void *json,
                            size_t json_len)
{
    struct message *m = message_alloc(channel, channel_len, json_len);

    memcpy(message_json(m), json, json_len);
    message_seal(m);
    return m;
}

struct message *message_draft(const char *channel, size_t channel_len, size_t head_len,
                              size_t tail_len)
{
    size_t room = MESSAGE_PRE + head_len + MESSAGE_SEQ_ROOM + tail_len + 1;
    struct message *m = alloc(channel, channel_len, room);

    m->kind = MESSAGE_EVENT;
    m->draft_head = (uint32_t)head_len;
    m->json_len = head_len + tail_len; /* without the seq, until message_finish() */
    m->buf[room - 1] = '\0';
    return m;
}

void message_finish(struct message *m, const char *epoch, uint64_t seq)
{
    char num[MESSAGE_SEQ_ROOM + 1];
    int n = snprintf(num, sizeof(num), ",\"seq\":%" PRIu64, seq);
    size_t head = m->draft_head, shift = MESSAGE_SEQ_ROOM - (size_t)n;
    char *start = (char *)m->buf + MESSAGE_PRE;

    memcpy(start + head + shift, num, (size_t)n);
    memmove(start + shift, start, head);
    m->json_off = (uint32_t)(MESSAGE_PRE + shift);
    m->json_len += (size_t)n; /* name_off counts from the JSON's start: the move keeps it */
    m->draft_head = 0;
    m->seq = seq;
    snprintf(m->epoch, sizeof(m->epoch), "%s", epoch);
    message_seal(m);
}

struct message *message_clone(const struct message *m)
{
    size_t size = message_size(m);
    struct message *c = xmalloc(size);

    memcpy(c, m, size);
    atomic_init(&c->refs, 1);
    return c;
}

size_t message_size(const struct message *m)
{
    if (m->draft_head)
        return sizeof(*m) + MESSAGE_PRE + m->draft_head + MESSAGE_SEQ_ROOM +
               (m->json_len - m->draft_head) + 1;
    return sizeof(*m) + m->json_off + m->json_len + 1;
}

void message_find_name(struct message *m)
{
    static const char head[] = "{\"type\":\"event\",\"channel\":\"";
    const char *json = message_json(m);
    size_t at = sizeof(head) - 1 + m->channel_len + 1; /* past the channel's closing quote */

    m->name_off = m->name_len = 0;
    if (m->json_len < at + 10 || memcmp(json + at, ",\"event\":\"", 10) != 0)
        return;
    at += 9; /* the opening quote of the name */
    for (size_t i = at + 1; i < m->json_len; i++) {
        if (json[i] == '\\') {
            i++;
        } else if (json[i] == '"') {
            m->name_off = (uint16_t)at;
            m->name_len = (uint16_t)(i + 1 - at);
            return;
        }
    }
}

struct message *message_ref(struct message *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

void message_unref(struct message **pm)
{
    struct message *m = *pm;

    if (!m)
        return;
    *pm = NULL;
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
        free(m);
}

struct message *message_gap(const char *channel, size_t channel_len, const char *epoch,
                            uint64_t from, uint64_t to)
{
    char json[MESSAGE_CHANNEL_MAX + 96];
    int n = snprintf(json, sizeof(json),
                     "{\"type\":\"gap\",\"channel\":\"%.*s\",\"from\":%" PRIu64 ",\"to\":%" PRIu64
                     "}",
                     (int)channel_len, channel, from, to);
    struct message *m = message_new(channel, channel_len, json, (size_t)n);

    m->kind = MESSAGE_GAP;
    m->seq_from = from;
    m->seq = to;
    snprintf(m->epoch, sizeof(m->epoch), "%s", epoch);
    return m;
}
