/* overflow.h -- events that found no room on their way to subscribers, kept as one pending gap
 * per channel until there is room to say so. Where delivery cannot keep up (a plane's mailbox
 * full, a plane's backlog past its bound) an event is not dropped silently: its channel's
 * pending gap grows to cover its seq, and the subscribers get {"type":"gap"} for the whole
 * stretch once there is room, before any later event of that channel. One thread per
 * overflow (the control plane keeps one per plane's mailbox; each plane keeps its own). */
#ifndef HERALD_OVERFLOW_H
#define HERALD_OVERFLOW_H

#include <stdbool.h>
#include <stddef.h>

struct message;
struct overflow;

struct overflow *overflow_new(void);
void overflow_free(struct overflow *o); /* NULL is a no-op */

/* msg (an event) found no room: its channel's pending gap grows to cover msg->seq. */
void overflow_add(struct overflow *o, const struct message *msg);
/* Channels with a pending gap. */
size_t overflow_count(const struct overflow *o);
/* Whether channel has a pending gap: its later events must wait behind it. */
bool overflow_holds(const struct overflow *o, const char *channel, size_t len);
/* Takes channel's pending gap out as a gap message (one reference for the caller), or NULL. */
struct message *overflow_take(struct overflow *o, const char *channel, size_t len);

/* Offers each pending gap to send, which returns 0 when it took the message (consuming the
 * reference) or -1 when there is still no room (the gap stays pending and flushing stops).
 * Returns the channels still pending. */
typedef int overflow_send_fn(struct message *gap, void *arg);
size_t overflow_flush(struct overflow *o, overflow_send_fn *send, void *arg);

#endif
