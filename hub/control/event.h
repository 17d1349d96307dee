/* event.h -- publish bodies in, event frames out: validated and serialized once per hub. */
#ifndef HERALD_EVENT_H
#define HERALD_EVENT_H

#include <stddef.h>
#include <stdint.h>

struct message;

#define EVENT_BATCH_MAX 1000
#define EVENT_NAME_MAX 128

/* Event ids: "<process prefix>-<sequence>", unique per hub process and so per channel.
 * Control thread only. */
struct event_ids {
    char prefix[20];
    uint64_t next;
};
void event_ids_init(struct event_ids *ids, uint64_t seed);

/* Parses a POST /publish body: one event object or a non-empty array of them (a batch).
 * All or nothing: on success *out holds n messages (the caller owns one reference to each
 * and frees the array with free()); on failure nothing is allocated and err holds the reason
 * (the answer is 400 bad_request). */
int event_parse_publish(const char *body, size_t len, int64_t now_ms, struct event_ids *ids,
                        struct message ***out, size_t *n, char *err, size_t errlen);

/* A hub-made event on a '$' channel (e.g. $stats): data_json is a serialized JSON value. */
struct message *event_build_raw(const char *channel, const char *event, const char *data_json,
                                int64_t now_ms, struct event_ids *ids);

#endif
