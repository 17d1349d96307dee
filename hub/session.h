/* session.h -- one WebSocket connection's state, without any lws type: its send queue with
 * a byte budget, its frame rate bucket, its partial incoming frame and its subscriptions.
 * Delivery thread only: a session lives and dies on the plane that accepted it. */
#ifndef HERALD_SESSION_H
#define HERALD_SESSION_H

#include "channel.h"
#include "ratelimit.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct message;

struct session_limits {
    size_t send_queue_bytes;  /* queued bytes past which the connection is a slow consumer */
    size_t max_message_bytes; /* largest client message, fragments included */
    uint32_t max_subscriptions;
    struct ratelimit_cfg rate; /* client frames */
    int64_t rate_grace_ms;     /* over the rate this long without pause: close 1008 */
};

struct session {
    uint64_t id;
    const struct session_limits *lim;
    struct channel_set subs;
    /* send queue: a ring of message references */
    struct message **q;
    uint32_t q_head, q_len, q_cap; /* q_cap a power of two */
    size_t q_bytes;                /* wire bytes queued */
    /* incoming message being reassembled from fragments */
    char *rx;
    size_t rx_len, rx_cap;
    /* frame rate */
    struct ratelimit bucket;
    bool is_limited;          /* inside a run of refusals */
    int64_t limited_since_ms; /* first refusal of the run */
    int64_t last_refused_ms;
    /* closing: set once, by session_close() */
    uint16_t close_code;
    char close_reason[64];
};

struct session *session_new(const struct session_limits *lim, uint64_t id, int64_t now_ms);
/* Drops the queue. The caller must have left every channel (channel_leave_all). NULL: no-op. */
void session_free(struct session *s);

/* Queues msg. Takes a reference; never blocks. Returns 0, or -1 when the queue would pass its
 * byte budget (nothing taken): the caller then closes with 1013 (slow consumer). A closing
 * session takes nothing and returns 0. */
int session_enqueue(struct session *s, struct message *msg);
/* Like session_enqueue, but consumes a reference the caller already holds, and only when it
 * returns 0 (queued); 1: closing, -1: over the budget (the caller keeps its reference). Fan-out
 * takes all its references in one atomic add (message_ref_n) and pushes them. */
int session_push(struct session *s, struct message *msg);
/* The oldest queued message (borrowed), or NULL. */
struct message *session_front(const struct session *s);
/* Releases the oldest queued message. */
void session_pop(struct session *s);
/* Releases every queued message; returns how many there were. */
size_t session_drop_queue(struct session *s);

/* Appends a fragment of an incoming message. Returns 0, or -1 when the message would pass
 * max_message_bytes (close 1009). */
int session_rx_append(struct session *s, const void *data, size_t len);
void session_rx_reset(struct session *s);

enum session_rate { SESSION_RATE_OK, SESSION_RATE_LIMITED, SESSION_RATE_CLOSE };
/* Accounts one client frame at now_ms: OK, LIMITED (answer rate_limited), or CLOSE (over the
 * limit for rate_grace_ms without a pause: close 1008). */
enum session_rate session_rate_check(struct session *s, int64_t now_ms);

/* Marks the session closing with code and reason (the first call wins) and drops its queue;
 * returns how many queued messages were dropped. */
size_t session_close(struct session *s, uint16_t code, const char *reason);
static inline bool session_is_closing(const struct session *s)
{
    return s->close_code != 0;
}

#endif
