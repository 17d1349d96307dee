/* subscription.h -- one subscription's state, kept in its member entry of the plane's channel
 * index (channel.h): the last seq its subscriber was handed; while it waits for its position
 * (subscribe, since, last), the events that arrive meanwhile; and with max_rate, the latest
 * unsent event of each event name. Fan-out asks it, per event, whether to send, skip (seen
 * already), hold (position not known yet) or pace (max_rate: wait for the name's next slot).
 * No lws; delivery thread only. */
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
    SUB_PACE, /* max_rate: kept as its name's latest (a reference taken), sent at *due_us */
};

/* Names one paced subscription tells apart; past it, further names share one slot. */
#define SUB_PACE_NAMES 64

/* A new subscription: it holds what comes until subscription_start(). */
void subscription_begin(struct channel_member *m);
bool subscription_is_pending(const struct channel_member *m);
/* max_rate R (1..1000 events a second per event name; 0: every event). */
void subscription_set_rate(struct channel_member *m, uint32_t per_sec);

/* Called for each message a subscription must send before the one being offered (a paced
 * event ahead of a gap or reset), and by subscription_start() and subscription_due(); send
 * borrows the message. */
typedef void subscription_send_fn(struct message *msg, void *arg);

/* Fan-out's question for one event, gap or reset at now_us (monotonic). A gap or reset first
 * sends, through send, the paced events still waiting. SUB_PACE sets *due_us (else left alone)
 * when the caller must queue a timer entry for this subscription: subscription_due(m, *due_us,
 * ...) is then due at *due_us. */
enum sub_verdict subscription_offer(struct channel_member *m, struct message *msg, int64_t now_us,
                                    subscription_send_fn *send, void *arg, int64_t *due_us);
/* Bytes held while pending (they count against the connection's queue budget). */
size_t subscription_held_bytes(const struct channel_member *m);

/* The position is known: the subscription is live from seq. Calls send for each held message
 * the subscriber must still get, in order, then drops the rest. */
void subscription_start(struct channel_member *m, uint64_t seq, subscription_send_fn *send,
                        void *arg);

/* The timer entry queued for entry_us fired at now_us: the paced events whose slot has come
 * go through send. Returns when the next entry is due (the caller queues it), or 0 when
 * nothing waits or the entry was stale. */
int64_t subscription_due(struct channel_member *m, int64_t entry_us, int64_t now_us,
                         subscription_send_fn *send, void *arg);

/* Frees a member's extra state (the index calls it when the member leaves). */
void subscription_free_extra(void *extra);

#endif
