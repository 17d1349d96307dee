/* message.c -- immutable, refcounted WebSocket frames.
 * Built on whichever thread made the event (the control plane for published events, a
 * delivery plane for replies), read by any number of delivery planes, freed by whoever drops
 * the last reference. The frame header is written once, here, so lws only ever sends these
 * bytes as they are: nothing writes into a shared message. */
#include "message.h"

#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

struct message *message_alloc(const char *channel, size_t channel_len, size_t json_len)
{
    struct message *m = xmalloc(sizeof(*m) + MESSAGE_PRE + json_len + 1);

    atomic_init(&m->refs, 1);
    if (channel_len > MESSAGE_CHANNEL_MAX)
        channel_len = MESSAGE_CHANNEL_MAX;
    if (channel)
        memcpy(m->channel, channel, channel_len);
    else
        channel_len = 0;
    m->channel[channel_len] = '\0';
    m->channel_len = (uint16_t)channel_len;
    m->header_len = 0;
    m->ts_ms = 0;
    m->id[0] = '\0';
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
    m->header_len = (uint8_t)message_ws_header(m->buf + MESSAGE_PRE, m->json_len);
}

struct message *message_new(const char *channel, size_t channel_len, const void *json,
                            size_t json_len)
{
    struct message *m = message_alloc(channel, channel_len, json_len);

    memcpy(message_json(m), json, json_len);
    message_seal(m);
    return m;
}

struct message *message_clone(const struct message *m)
{
    size_t size = sizeof(*m) + MESSAGE_PRE + m->json_len + 1;
    struct message *c = xmalloc(size);

    memcpy(c, m, size);
    atomic_init(&c->refs, 1);
    return c;
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
