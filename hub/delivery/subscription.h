/* subscription.h -- one subscription's place in its channel's numbering, kept in its member
 * entry of the plane's channel index (channel.h): the last seq its subscriber was handed, and,
 * while it waits for its position (subscribe, since, last), the events that arrive meanwhile.
 * Fan-out asks it, per event, whether to send, skip (seen already) or hold. No lws; delivery
 * thread only. */
#ifndef HERALD_SUBSCRIPTION_H
#define HERALD_SUBSCRIPTION_H

#include "channel.h"

#include <stddef.h>
#include <stdint.h>

struct message;

enum sub_verdict {
    SUB_SEND, /* hand it on (last_seq moved) */
    SUB_SKIP, /* at or before last_seq: this subscriber has it */
    SUB_HOLD, /* the position is not known yet: held (a reference taken) */
};

/* A new subscription: it holds what comes until subscription_start(). */
void subscription_begin(struct channel_member *m);
bool subscription_is_pending(const struct channel_member *m);
/* Fan-out's question for one event, gap or reset. */
enum sub_verdict subscription_offer(struct channel_member *m, struct message *msg);
/* Bytes held while pending (they count against the connection's queue budget). */
size_t subscription_held_bytes(const struct channel_member *m);

/* The position is known: the subscription is live from seq. Calls send for each held message
 * the subscriber must still get, in order (offering each as fan-out would), then drops the
 * rest. send borrows the message. */
typedef void subscription_send_fn(struct message *msg, void *arg);
void subscription_start(struct channel_member *m, uint64_t seq, subscription_send_fn *send,
                        void *arg);

/* Frees a member's extra state (the index calls it when the member leaves). */
void subscription_free_extra(void *extra);

#endif
