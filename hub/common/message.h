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

/* The longest `,"seq":N` a frame can hold (N up to 2^64 - 1). */
#define MESSAGE_SEQ_ROOM 28
/* An epoch names one run of a channel's numbering: up to this many characters of A-Z a-z 0-9. */
#define MESSAGE_EPOCH_MAX 24

enum message_kind {
    MESSAGE_REPLY, /* made for one client: welcome, subscribed, error, pong, ... */
    MESSAGE_EVENT, /* a published event: channel, epoch, seq */
    MESSAGE_GAP,   /* events seq_from..seq of channel will not come (the frame says so) */
    MESSAGE_RESET, /* channel's numbering restarted in epoch (the frame is a subscribed) */
};

struct message {
    atomic_uint refs;
    uint8_t kind;       /* enum message_kind */
    uint8_t header_len; /* bytes of WebSocket header in front of the JSON */
    uint16_t channel_len;
    uint32_t json_off;                     /* where the JSON starts in buf */
    char channel[MESSAGE_CHANNEL_MAX + 1]; /* NUL-terminated; "" for most replies */
    char epoch[MESSAGE_EPOCH_MAX + 1];     /* events, gaps, resets, subscribed replies */
    uint64_t seq;                          /* event's; gap's last; 0: reset; subscribed's */
    uint64_t seq_from;                     /* a gap's first */
    int64_t ts_ms;                         /* publish time; 0 for replies */
    char id[32];                           /* event id; "" for replies */
    uint16_t name_off, name_len;           /* the event name's JSON string in the JSON (0: none) */
    size_t json_len;
    /* a draft (control/event.c): head_len bytes of JSON before the seq, then the seq room, then
     * the rest; message_finish() puts the seq in and closes the room */
    uint32_t draft_head;
    unsigned char buf[];
};

/* A reply of json_len bytes, one reference held by the caller, for the caller to fill at
 * message_json() before calling message_seal(). channel may be NULL. */
struct message *message_alloc(const char *channel, size_t channel_len, size_t json_len);
/* Writes the WebSocket header (FIN, text) in front of the JSON. Call once, before sharing. */
void message_seal(struct message *m);
/* message_alloc + copy + seal. */
struct message *message_new(const char *channel, size_t channel_len, const void *json,
                            size_t json_len);

/* An event frame without its seq: head_len bytes of JSON (written at message_draft_head()),
 * room for `,"seq":N`, then tail_len bytes (at message_draft_tail()). One reference held by
 * the caller. */
struct message *message_draft(const char *channel, size_t channel_len, size_t head_len,
                              size_t tail_len);
static inline char *message_draft_head(struct message *m)
{
    return (char *)m->buf + MESSAGE_PRE;
}
static inline char *message_draft_tail(struct message *m)
{
    return (char *)m->buf + MESSAGE_PRE + m->draft_head + MESSAGE_SEQ_ROOM;
}
/* The draft's JSON before and after the seq (what the Redis script joins around it). */
static inline size_t message_draft_tail_len(const struct message *m)
{
    return m->json_len - m->draft_head;
}
/* Numbers a draft: writes `,"seq":seq` between its head and tail, sets epoch and seq, and
 * seals it. Call once, before sharing. */
void message_finish(struct message *m, const char *epoch, uint64_t seq);

static inline char *message_json(struct message *m)
{
    return (char *)m->buf + m->json_off;
}
/* The bytes to put on the wire: header then JSON. */
static inline const unsigned char *message_wire(const struct message *m)
{
    return m->buf + m->json_off - m->header_len;
}
static inline size_t message_wire_len(const struct message *m)
{
    return m->header_len + m->json_len;
}

/* A gap: events from..to of channel (in epoch) will not come. One reference held by the
 * caller. channel_len is at most MESSAGE_CHANNEL_MAX. */
struct message *message_gap(const char *channel, size_t channel_len, const char *epoch,
                            uint64_t from, uint64_t to);

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

/* Finds the event name in an event frame's JSON (the "event" member hubs write right after
 * "channel") and records it in name_off/name_len. For frames that came from elsewhere. */
void message_find_name(struct message *m);
/* The allocation behind m, for memory accounting. */
size_t message_size(const struct message *m);

#endif
