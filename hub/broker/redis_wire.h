/* redis_wire.h -- what one hub puts on the shared Redis channel for the others. Pure.
 *
 * Version 1, one PUBLISH per publish request (a batch stays one atomic PUBLISH):
 *   events:     "H1E\n" then, per event, "<channel>\t<event frame JSON>\n"
 *   heartbeat:  "H1B\n<instance id>\t<sequence>\t<sent unix ms>\n"
 * The frame JSON is exactly what clients receive, so a receiving hub finds the channel and
 * copies the bytes: no JSON parsing or serialization per event. Channel names hold no tab or
 * newline and compact JSON holds no raw newline. A payload whose first line is not a kind
 * this hub knows (a newer version) is counted and skipped, never half-read: during a rolling
 * upgrade a newer hub keeps sending version 1 until every hub reads its next version. */
#ifndef HERALD_REDIS_WIRE_H
#define HERALD_REDIS_WIRE_H

#include <stddef.h>
#include <stdint.h>

struct message;

/* Encodes msgs into a malloc'd payload; *len receives its length. */
char *redis_wire_events(struct message *const *msgs, size_t n, size_t *len);
/* Encodes a heartbeat into buf (cap bytes); returns its length, or 0 if it does not fit. */
size_t redis_wire_heartbeat(char *buf, size_t cap, const char *instance, uint64_t seq,
                            int64_t sent_ms);

enum redis_wire_kind { REDIS_WIRE_EVENTS, REDIS_WIRE_HEARTBEAT, REDIS_WIRE_UNKNOWN };

/* Called per event record: channel and frame JSON point into the payload (not terminated). */
typedef void redis_wire_event_fn(const char *channel, size_t channel_len, const char *json,
                                 size_t json_len, void *arg);

struct redis_wire_heartbeat {
    const char *instance;
    size_t instance_len;
    uint64_t seq;
    int64_t sent_ms;
};

/* Decodes a payload. For events, calls fn per well-formed record and returns the number of
 * malformed records skipped in *bad. For a heartbeat, fills *hb. */
enum redis_wire_kind redis_wire_decode(const char *p, size_t len, redis_wire_event_fn *fn,
                                       void *arg, struct redis_wire_heartbeat *hb, size_t *bad);

#endif
