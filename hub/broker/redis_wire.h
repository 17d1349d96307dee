/* redis_wire.h -- what hubs put on the shared Redis channel for each other. Pure.
 *
 * Version 2. One PUBLISH per publish request (a batch stays one atomic PUBLISH), written by
 * the publish script in Redis itself (redis.c), where each event gets its seq:
 *   events:     "H2E\n" then, per event, "<channel>\t<epoch>\t<seq>\t<event frame JSON>\n"
 *   heartbeat:  "H2B\n<instance id>\t<nonce>\t<started unix ms>\t<sequence>\t<sent unix ms>\n"
 * and, from a hub given several Redis shards (several --redis-url), heartbeat version 3:
 *   "H3B\n<the five fields of H2B>\t<shard>\t<shards>\t<list digest, 16 hex digits>\n"
 * saying which shard (0-based) of how many the sender takes this Redis for, and the digest of
 * its whole list (common/shard.h), so that hubs given different lists notice. A hub with one
 * Redis keeps writing H2B; hubs before version 3 skip (and count) H3B.
 * The frame JSON is exactly what clients receive, its "seq" equal to the record's. A payload
 * whose first line is not a kind this hub reads is counted and skipped, never half-read.
 * Version 1 events ("H1E", from hubs before sequence numbers) carry no seq: they are skipped
 * and counted too, so a cluster moves to version 2 all at once (hub/DESIGN.md). Version 1
 * heartbeats ("H1B") carried no nonce; they are read as another hub's.
 *
 * Anything that can PUBLISH on the channel can put bytes here, so a receiving hub checks each
 * record as strictly as the API checks a publish: the channel is a valid name and not one of
 * the hub's own ('$'), the epoch is 1 to 24 letters and digits, the seq a number from 1, the
 * frame at most max_frame bytes, holds no NUL, is one valid UTF-8 JSON object with data and
 * that seq, and starts as hubs write an event frame ({"type":"event","channel":"<the
 * record's channel>",). A record that fails is counted and dropped; the others of the same
 * payload are delivered. */
#ifndef HERALD_REDIS_WIRE_H
#define HERALD_REDIS_WIRE_H

#include <stddef.h>
#include <stdint.h>

struct message;

struct redis_wire_record {
    const char *channel, *epoch, *frame; /* into the payload, not NUL-terminated */
    size_t channel_len, epoch_len, frame_len;
    uint64_t seq;
};

/* Encodes numbered messages (epoch and seq set) as one events payload, as the publish script
 * writes it; malloc'd, *len receives its length. */
char *redis_wire_events(struct message *const *msgs, size_t n, size_t *len);

struct redis_wire_heartbeat {
    const char *instance;
    size_t instance_len;
    uint64_t nonce;     /* per process: tells two hubs with one instance id apart */
    int64_t started_ms; /* the sender's start: the younger of two duplicates yields */
    uint64_t seq;
    int64_t sent_ms;
    int has_nonce; /* 0 for a version 1 heartbeat */
    /* version 3: the sender's Redis shards. shards 0: not said (H2B, H1B: one Redis, or a hub
     * from before shards); encoding writes H3B when shards > 0. */
    unsigned shard, shards;
    uint64_t digest;
};

/* Encodes hb into buf (cap bytes), as H3B when hb->shards > 0, else H2B; returns its length,
 * or 0 if it does not fit. */
size_t redis_wire_heartbeat(char *buf, size_t cap, const struct redis_wire_heartbeat *hb);

enum redis_wire_kind { REDIS_WIRE_EVENTS, REDIS_WIRE_HEARTBEAT, REDIS_WIRE_UNKNOWN };

/* Called per event record that passed the checks. */
typedef void redis_wire_event_fn(const struct redis_wire_record *rec, void *arg);

/* Decodes a payload. For events, calls fn per record that passes the checks above (frames of
 * at most max_frame bytes) and returns the number of records dropped in *bad. For a
 * heartbeat, fills *hb. */
enum redis_wire_kind redis_wire_decode(const char *p, size_t len, size_t max_frame,
                                       redis_wire_event_fn *fn, void *arg,
                                       struct redis_wire_heartbeat *hb, size_t *bad);
/* The frame checks alone (a frame of channel with that seq): 1 when it passes, else 0. */
int redis_wire_frame_ok(const char *channel, size_t channel_len, uint64_t seq, const char *frame,
                        size_t len, size_t max_frame);
/* An epoch as hubs make them: 1 to 24 of A-Z a-z 0-9. */
int redis_wire_epoch_ok(const char *epoch, size_t len);

#endif
