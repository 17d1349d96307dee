/* redis_wire.h -- what one hub puts on the shared Redis channel for the others. Pure.
 *
 * One PUBLISH per publish request (a batch stays one atomic PUBLISH):
 *   events:     "H1E\n" then, per event, "<channel>\t<event frame JSON>\n"
 *   heartbeat:  "H2B\n<instance id>\t<nonce>\t<started unix ms>\t<sequence>\t<sent unix ms>\n"
 * The frame JSON is exactly what clients receive. A payload whose first line is not a kind
 * this hub knows (a newer version) is counted and skipped, never half-read: during a rolling
 * upgrade a newer hub keeps sending the old version until every hub reads the next one.
 * (Version 1 heartbeats, "H1B", carried no nonce; they are read as another hub's.)
 *
 * Anything that can PUBLISH on the channel can put bytes here, so a receiving hub checks each
 * record as strictly as the API checks a publish: the channel is a valid name and not one of
 * the hub's own ('$'), the frame is at most max_frame bytes, holds no NUL, is one valid UTF-8
 * JSON object, and starts as the hub writes an event frame ({"type":"event","channel":"<the
 * record's channel>",). A record that fails is counted and dropped; the others of the same
 * payload are delivered. */
#ifndef HERALD_REDIS_WIRE_H
#define HERALD_REDIS_WIRE_H

#include <stddef.h>
#include <stdint.h>

struct message;

/* Encodes msgs into a malloc'd payload; *len receives its length. */
char *redis_wire_events(struct message *const *msgs, size_t n, size_t *len);
struct redis_wire_heartbeat {
    const char *instance;
    size_t instance_len;
    uint64_t nonce;     /* per process: tells two hubs with one instance id apart */
    int64_t started_ms; /* the sender's start: the younger of two duplicates yields */
    uint64_t seq;
    int64_t sent_ms;
    int has_nonce; /* 0 for a version 1 heartbeat */
};

/* Encodes hb into buf (cap bytes); returns its length, or 0 if it does not fit. */
size_t redis_wire_heartbeat(char *buf, size_t cap, const struct redis_wire_heartbeat *hb);

enum redis_wire_kind { REDIS_WIRE_EVENTS, REDIS_WIRE_HEARTBEAT, REDIS_WIRE_UNKNOWN };

/* Called per event record: channel and frame JSON point into the payload (not terminated). */
typedef void redis_wire_event_fn(const char *channel, size_t channel_len, const char *json,
                                 size_t json_len, void *arg);

/* Decodes a payload. For events, calls fn per record that passes the checks above (frames of
 * at most max_frame bytes) and returns the number of records dropped in *bad. For a
 * heartbeat, fills *hb. */
enum redis_wire_kind redis_wire_decode(const char *p, size_t len, size_t max_frame,
                                       redis_wire_event_fn *fn, void *arg,
                                       struct redis_wire_heartbeat *hb, size_t *bad);
/* The record checks alone: 1 when channel and frame pass them, else 0. */
int redis_wire_record_ok(const char *channel, size_t channel_len, const char *frame, size_t len,
                         size_t max_frame);

#endif
