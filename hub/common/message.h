/* message.h -- one WebSocket text frame, built once, shared by reference.
 * A message holds the frame's JSON text with the WebSocket header written in front of it, so
 * every connection on every delivery plane sends the same bytes. The thread that builds a
 * message may still set its fields (the Redis broker sets ts_ms after message_new()) until it
 * hands the message on; from then on nobody writes into it but the reference count. */
#ifndef HERALD_MESSAGE_H
#define HERALD_MESSAGE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Headroom in front of the JSON: room for the longest WebSocket header (10 bytes) and at
 * least LWS_PRE (delivery/writer.c checks this at compile time). */
#define MESSAGE_PRE 16
#define MESSAGE_CHANNEL_MAX 128
/* The most an event's frame (header included) is longer than the publish body it came from:
 * the frame copies channel, event and data from the body, compacted, and adds its type, id,
 * seq and ts (control/event.c). So the largest frame is --max-message-bytes plus this. */
#define MESSAGE_EVENT_OVERHEAD 256

struct message {
    atomic_uint refs;
    uint16_t channel_len;
    uint8_t header_len;                    /* bytes of WebSocket header in front of the JSON */
    char channel[MESSAGE_CHANNEL_MAX + 1]; /* NUL-terminated; "" for a reply to one client */
    int64_t ts_ms;                         /* publish time; 0 for replies */
    char id[32];                           /* event id; "" for replies */
    size_t json_len;
    unsigned char buf[]; /* MESSAGE_PRE + json_len + 1 (NUL) */
};

/* A message of json_len bytes, one reference held by the caller, for the caller to fill at
 * message_json() before calling message_seal(). channel may be NULL (a reply). */
struct message *message_alloc(const char *channel, size_t channel_len, size_t json_len);
/* Writes the WebSocket header (FIN, text) in front of the JSON. Call once, before sharing. */
void message_seal(struct message *m);
/* message_alloc + copy + seal. */
struct message *message_new(const char *channel, size_t channel_len, const void *json,
                            size_t json_len);

static inline char *message_json(struct message *m)
{
    return (char *)m->buf + MESSAGE_PRE;
}
/* The bytes to put on the wire: header then JSON. */
static inline const unsigned char *message_wire(const struct message *m)
{
    return m->buf + MESSAGE_PRE - m->header_len;
}
static inline size_t message_wire_len(const struct message *m)
{
    return m->header_len + m->json_len;
}

/* A private copy of m (one reference held by the caller): each delivery plane gets its own,
 * so the per-subscriber reference counting never bounces a cache line between cores. */
struct message *message_clone(const struct message *m);
struct message *message_ref(struct message *m); /* returns m, holding one more reference */
void message_unref(struct message **pm);        /* frees on the last one; sets *pm to NULL */
/* n more references in one atomic add; and giving back n that were not used, which must not
 * be the last ones (the caller still holds one). */
static inline void message_ref_n(struct message *m, unsigned n)
{
    atomic_fetch_add_explicit(&m->refs, n, memory_order_relaxed);
}
static inline void message_release_n(struct message *m, unsigned n)
{
    atomic_fetch_sub_explicit(&m->refs, n, memory_order_release);
}

/* Writes the header of an unmasked server text frame of len bytes ending at end (the header
 * occupies end - return .. end). Returns the header length (2, 4 or 10). */
size_t message_ws_header(unsigned char *end, uint64_t len);

#endif
