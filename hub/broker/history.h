/* history.h -- the in-process numbering and history of channels: each channel's epoch and last
 * seq, and its newest events (--history-size per channel, --history-ttl), with one bound on
 * all of it (--history-memory) past which the oldest events go first. The in-process broker
 * keeps every channel here; with Redis, the hub keeps only its own '$' channels here. Control
 * thread only. */
#ifndef HERALD_HISTORY_H
#define HERALD_HISTORY_H

#include "common/message.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct history;

struct history_limits {
    size_t size;    /* events kept per channel (0: none; seq is still given) */
    int64_t ttl_ms; /* how long an event is kept */
    size_t memory;  /* bytes of kept events and channel states, all channels */
};

/* seed makes the epochs of this process (a new one for each channel state it creates). */
struct history *history_new(const struct history_limits *lim, uint64_t seed);
void history_free(struct history *h); /* NULL is a no-op */

/* Numbers draft msg in its channel (a channel without state gets one, in a new epoch),
 * finishes it (message_finish) and keeps a reference to it. */
void history_append(struct history *h, struct message *msg, int64_t now_ms);

/* What a read found. msgs holds references the reader releases with history_result_clear. */
struct history_result {
    char epoch[MESSAGE_EPOCH_MAX + 1]; /* "" when the channel has no state */
    uint64_t seq;                      /* the channel's last seq (0: none yet) */
    uint64_t first;                    /* the oldest seq kept and not expired (0: none) */
    struct message **msgs;
    size_t n;
};
void history_result_clear(struct history_result *r);

/* The channel's position (a channel without state gets one, in a new epoch, so that its
 * subscribers know the epoch before any event), and its kept events with seq > since, oldest
 * first, at most limit (0: no limit). */
void history_read_since(struct history *h, const char *channel, size_t len, uint64_t since,
                        size_t limit, int64_t now_ms, struct history_result *out);
/* The channel's position (made if need be, as above), and its newest n kept events, oldest
 * first. */
void history_read_last(struct history *h, const char *channel, size_t len, size_t n, int64_t now_ms,
                       struct history_result *out);

/* Expires events older than the TTL and forgets channel states that have kept nothing for a
 * while and that keep_fn does not want (it is asked with the channel's name: the hub keeps
 * the states of channels its planes hold, so their numbering never restarts under them). */
typedef bool history_keep_fn(const char *channel, size_t len, void *arg);
void history_sweep(struct history *h, int64_t now_ms, history_keep_fn *keep, void *arg);

/* What is kept now: events, channel states, and the bytes charged to --history-memory. */
size_t history_events(const struct history *h);
size_t history_channels(const struct history *h);
size_t history_bytes(const struct history *h);

#endif
