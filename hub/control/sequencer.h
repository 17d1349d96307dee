/* sequencer.h -- every event of a channel this hub holds reaches its planes once and in seq
 * order, and every new subscription learns where it starts. Between the broker and the
 * planes: it answers the planes' position requests (subscribe, since, last) from the broker's
 * numbering and history, tracks the last seq delivered of each channel the hub holds, notices
 * a channel whose numbering restarted (a new epoch: its subscribers get a reset), and mends a
 * hole in the numbers (events lost while a Redis link was down) from history before later
 * events go on; what history cannot give back becomes a gap for the subscribers. The hub's
 * own '$' channels are numbered and kept in this process (a local history). Control thread. */
#ifndef HERALD_SEQUENCER_H
#define HERALD_SEQUENCER_H

#include <stddef.h>
#include <stdint.h>

struct broker;
struct event_base;
struct history;
struct message;
struct position_answer;
struct position_request;
struct sequencer;

/* Hands msg (an event, a gap or a reset; borrowed) to the planes that hold its channel. */
typedef void sequencer_post_fn(struct message *msg, void *arg);
/* Hands an answer to plane `plane` (takes it). */
typedef void sequencer_answer_fn(unsigned plane, struct position_answer *a, void *arg);

/* broker numbers and keeps the published channels, local the hub's own '$' channels; both
 * outlive the sequencer. */
struct sequencer *sequencer_new(struct event_base *base, struct broker *broker,
                                struct history *local, sequencer_post_fn *post,
                                sequencer_answer_fn *answer, void *arg);
void sequencer_free(struct sequencer *s); /* NULL is a no-op */

/* An event from the broker (or numbered in the local history). Borrows msg. */
void sequencer_event(struct sequencer *s, struct message *msg);
/* A plane asks where a subscription starts. Takes q. */
void sequencer_request(struct sequencer *s, struct position_request *q);
/* The broker's subscription on shard `shard` was lost and is back: check every held channel of
 * that shard (broker_shard_of(); all of them without shards) for what was published meanwhile. */
void sequencer_resubscribed(struct sequencer *s, unsigned shard);

#endif
