/* session.h -- one client connection's state, free of lws: its send queue with a byte budget
 * and the signal that the queue turned non-empty, its close state, its subscriptions, its
 * heartbeat and token-expiry times, its frame rate bucket and its partial incoming frame.
 * Delivery thread only: a session lives and dies on the plane that accepted it. */
#ifndef HERALD_SESSION_H
#define HERALD_SESSION_H

#include "channel.h"
#include "common/ratelimit.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct message;
struct session;

/* What every session of one plane has queued, together, and how fast their sockets take it
 * (delivery thread). The pace is measured in windows of SESSION_PACE_WINDOW_MS, rolled by the
 * plane (session_stats_roll): the bytes its sockets took and how many sockets took any. */
struct session_stats {
    size_t queued_bytes;
    uint64_t window_bytes;   /* taken by the sockets this window */
    uint32_t window_takers;  /* sockets that took any this window */
    uint32_t window;         /* the window's number */
    int64_t window_start_ms; /* monotonic; 0: no window yet */
    double pace;             /* bytes per ms one socket took in the last window; 0: none took any */
    int64_t pace_since_ms;   /* when that window began */
};

#define SESSION_PACE_WINDOW_MS 1000
/* A reader past its budget is behind the others when, over at least one window, its socket took
 * less than a SESSION_LAG_FACTOR-th of what one socket took on average; whatever the others do,
 * it is behind once it holds SESSION_LAG_CAP times its budget. */
#define SESSION_LAG_FACTOR 4
#define SESSION_LAG_CAP 4

struct session_limits {
    size_t send_queue_bytes;     /* queued bytes past which a reader behind the others is cut */
    struct session_stats *stats; /* the plane's sum, kept by every session (NULL: none) */
    size_t max_message_bytes;    /* largest client message, fragments included */
    uint32_t max_subscriptions;
    struct ratelimit_cfg rate; /* client frames */
    int64_t rate_grace_ms;     /* over the rate this long without pause: close 1008 */
};

/* The queue turned non-empty (or a ping is due): the connection should ask its transport for
 * a writeable callback. Fires on the delivery thread, from inside the call that queued. */
typedef void session_wake_fn(void *arg);

/* lim must outlive the session. */
struct session *session_new(const struct session_limits *lim, uint64_t id, int64_t now_ms,
                            session_wake_fn *wake, void *wake_arg);
/* Drops the queue. The caller must have left every channel (session_leave_all). NULL: no-op. */
void session_free(struct session *s);
uint64_t session_id(const struct session *s);

/* --- the send queue --- */

/* Queues msg. Takes a reference; never blocks. Returns 0; 1 when the session is closing
 * (nothing taken); -1 when the queue would pass its byte budget (nothing taken): the caller
 * then closes with 1013 (slow consumer). */
int session_send(struct session *s, struct message *msg);
/* Like session_send, but consumes a reference the caller already holds, and only when it
 * returns 0. Fan-out takes all its references in one atomic add (message_ref_n) and pushes. */
int session_push(struct session *s, struct message *msg);
/* Like session_push, whatever the byte budget: the caller found the connection's socket taking
 * all it is given (the hub, not the reader, is behind). Returns 0, or 1 when closing. */
int session_push_over(struct session *s, struct message *msg);
/* Queues msg whatever the byte budget (a replay, bounded by the channel's history). Takes a
 * reference unless the session is closing. */
void session_send_over(struct session *s, struct message *msg);
/* The oldest queued message (borrowed), or NULL. */
struct message *session_front(const struct session *s);
/* Releases the oldest queued message: its socket took it (the pace counts it). */
void session_pop(struct session *s);
size_t session_queue_len(const struct session *s);
size_t session_queue_bytes(const struct session *s);

/* Whether the session, with extra bytes more to hold, is a slow consumer at now_ms
 * (monotonic): past its budget, and either past SESSION_LAG_CAP times it or, since it went
 * past it (the first time this is asked), its socket took less than a SESSION_LAG_FACTOR-th of
 * what one socket took at the plane's pace, measured in a window that began after it went past
 * (so that the others' pace and its own are of the same time). A reader that keeps pace with the
 * others is not behind however long its queue: when every socket stalls together (a hub writing
 * faster than the network, a client machine descheduled), the backlog bound slows the publishers
 * instead. The caller also checks that the socket is choked. */
bool session_is_behind(struct session *s, size_t extra, int64_t now_ms);
/* Closes the pace window once it is SESSION_PACE_WINDOW_MS old (the plane's sweep calls it). */
void session_stats_roll(struct session_stats *st, int64_t now_ms);

/* A jam: slow readers holding the backlog bound between them, the hub refusing every publish
 * (503 overloaded) and taking none, so that the others have nothing to take and the pace the
 * slow ones are compared with is their own. The plane's sweep feeds the instance's counters;
 * it is a jam once none was taken and some were refused for SESSION_JAM_MS, the last refusal
 * within SESSION_JAM_RECENT_MS (a publisher waiting out Retry-After: 1 still counts). */
struct session_jam {
    uint64_t published, refused; /* the counters as last seen */
    int64_t since_ms;            /* since when none was taken and some refused; 0: not */
    int64_t refused_ms;          /* when a refusal was last seen */
};
#define SESSION_JAM_MS 1000
#define SESSION_JAM_RECENT_MS 2500
/* Feeds the counters of events taken from publishers and of publishes refused as overloaded;
 * returns whether the hub is jammed at now_ms (monotonic). */
bool session_jam_update(struct session_jam *j, uint64_t published, uint64_t refused,
                        int64_t now_ms);

/* --- closing --- */

/* Marks the session closing with code and reason (the first call wins) and drops its queue;
 * returns how many queued messages were dropped. Later sends take nothing. */
size_t session_close(struct session *s, uint16_t code, const char *reason);
/* Marks the session closing (the first call wins) but keeps what is queued, to be written
 * before the close frame (a drain). */
void session_close_after_flush(struct session *s, uint16_t code, const char *reason);
bool session_is_closing(const struct session *s);
uint16_t session_close_code(const struct session *s);
const char *session_close_reason(const struct session *s);

/* --- subscriptions --- */

/* Joins name (validated by the caller) in idx, within --max-subscriptions; the index lists
 * member (the connection that owns the session) as the subscriber. */
enum channel_join_result session_join(struct session *s, struct channel_index *idx, void *member,
                                      const char *name, size_t len);
/* Returns 0, or -1 when the session does not hold name. */
int session_leave(struct session *s, struct channel_index *idx, const char *name, size_t len);
/* Leaves every channel; returns how many it held. */
uint32_t session_leave_all(struct session *s, struct channel_index *idx);
uint32_t session_subscriptions(const struct session *s);
/* The channels the session holds, as the plane's index knows them. */
const struct channel_set *session_channels(const struct session *s);

/* --- liveness and expiry --- */

/* The peer sent a frame or a pong at now_ms (monotonic). */
void session_heard(struct session *s, int64_t now_ms);
/* The token's expiry, Unix seconds (0: none). */
void session_set_expiry(struct session *s, int64_t exp_s);
/* The peer never sends (an SSE stream): it is never found silent (its transport must notice a
 * dead peer: the hub's heartbeats go unacknowledged), and a ping is due every heartbeat. */
void session_set_listen_only(struct session *s);

enum session_health {
    SESSION_OK,
    SESSION_PING,    /* silent for a heartbeat: a ping is due (the session woke its writer) */
    SESSION_SILENT,  /* silent for two heartbeats: drop it */
    SESSION_EXPIRED, /* its token expired: close 1008 */
};
/* The sweep's verdict at now_ms (monotonic) and now_s (Unix seconds), heartbeat hb_ms. A
 * closing session is always OK (it is on its way out); a listen-only one is never SILENT. */
enum session_health session_check(struct session *s, int64_t now_ms, int64_t now_s, int64_t hb_ms);
/* True once per due ping: the writer puts a ping ahead of the queue. */
bool session_take_ping(struct session *s);

/* --- incoming frames --- */

/* Appends a fragment of an incoming message. Returns 0, or -1 when the message would pass
 * max_message_bytes (close 1009). */
int session_rx_append(struct session *s, const void *data, size_t len);
/* The message reassembled so far (borrowed until the next append or reset). */
const char *session_rx(const struct session *s, size_t *len);
void session_rx_reset(struct session *s);

enum session_rate { SESSION_RATE_OK, SESSION_RATE_LIMITED, SESSION_RATE_CLOSE };
/* Accounts n client frames (or joins) at now_ms: OK, LIMITED (answer rate_limited), or CLOSE
 * (over the limit for rate_grace_ms without a pause: close 1008). */
enum session_rate session_rate_check(struct session *s, int64_t now_ms, uint32_t n);

#endif
