/* session.c -- the state of one connection, free of lws so it can be tested alone.
 * The send queue is a ring of message references, grown by doubling, with a byte budget: a
 * push past it is refused, and the writer decides (a reader behind the others, session_is_behind,
 * whose socket is choked is cut with 1013; any other's push goes over: the hub is behind, or
 * every reader is, and the backlog bound slows the publishers). What each socket takes is
 * counted into its plane's pace, the mean rate of one socket, window by window.
 * Every session adds what it queues to its plane's sum (session_stats), the plane's backlog. When
 * the ring turns non-empty the session calls its wake function once; the transport then writes
 * until the ring is empty again, so there is always exactly one writeable request outstanding for a
 * non-empty queue. Incoming fragments are reassembled into one buffer, bounded by
 * max_message_bytes. The close state is written only by session_close() and
 * session_close_after_flush(), first call wins. */
#include "session.h"

#include "common/message.h"
#include "common/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct session {
    uint64_t id;
    const struct session_limits *lim;
    session_wake_fn *wake;
    void *wake_arg;
    struct channel_set subs;
    /* send queue: a ring of message references */
    struct message **q;
    uint32_t q_head, q_len, q_cap; /* q_cap a power of two */
    size_t q_bytes;                /* wire bytes queued */
    /* pace (session_is_behind) */
    uint64_t taken_bytes;  /* everything its socket took */
    uint32_t taken_window; /* 1 + the last stats window it took bytes in */
    bool is_over;          /* past its budget since over_since_ms */
    int64_t over_since_ms;
    uint64_t taken_at_over; /* taken_bytes then */
    /* incoming message being reassembled from fragments */
    char *rx;
    size_t rx_len, rx_cap;
    /* frame rate */
    struct ratelimit bucket;
    bool is_limited;          /* inside a run of refusals */
    int64_t limited_since_ms; /* first refusal of the run */
    int64_t last_refused_ms;
    /* liveness */
    int64_t last_rx_ms;   /* monotonic: the last frame or pong from the peer */
    int64_t last_ping_ms; /* monotonic: our last ping */
    int64_t expires_s;    /* Unix seconds; 0: never */
    bool needs_ping;
    bool is_listen_only; /* the peer never sends: silence is no sign */
    /* closing */
    uint16_t close_code; /* 0 while open */
    char close_reason[64];
};

struct session *session_new(const struct session_limits *lim, uint64_t id, int64_t now_ms,
                            session_wake_fn *wake, void *wake_arg)
{
    struct session *s = xcalloc(1, sizeof(*s));

    s->id = id;
    s->lim = lim;
    s->wake = wake;
    s->wake_arg = wake_arg;
    s->last_rx_ms = s->last_ping_ms = now_ms;
    ratelimit_init(&s->bucket, &lim->rate, now_ms);
    return s;
}

static void pop(struct session *s, bool taken);

static size_t drop_queue(struct session *s)
{
    size_t n = s->q_len;

    while (s->q_len)
        pop(s, false);
    return n;
}

void session_free(struct session *s)
{
    if (!s)
        return;
    drop_queue(s);
    free(s->q);
    free(s->rx);
    free(s->subs.v);
    free(s);
}

uint64_t session_id(const struct session *s)
{
    return s->id;
}

static int push(struct session *s, struct message *msg, bool over_budget)
{
    size_t len = message_wire_len(msg);

    if (session_is_closing(s))
        return 1;
    if (!over_budget && s->q_bytes + len > s->lim->send_queue_bytes)
        return -1;
    if (s->q_len == s->q_cap) {
        uint32_t cap = s->q_cap ? s->q_cap * 2 : 8;
        struct message **q = xmalloc(cap * sizeof(*q));

        for (uint32_t i = 0; i < s->q_len; i++)
            q[i] = s->q[(s->q_head + i) & (s->q_cap - 1)];
        free(s->q);
        s->q = q;
        s->q_head = 0;
        s->q_cap = cap;
    }
    s->q[(s->q_head + s->q_len) & (s->q_cap - 1)] = msg;
    s->q_len++;
    s->q_bytes += len;
    if (s->lim->stats)
        s->lim->stats->queued_bytes += len;
    if (s->q_len == 1 && !s->needs_ping && s->wake)
        s->wake(s->wake_arg); /* with a ping due, the writer was woken already */
    return 0;
}

int session_push(struct session *s, struct message *msg)
{
    return push(s, msg, false);
}

int session_push_over(struct session *s, struct message *msg)
{
    return push(s, msg, true);
}

void session_send_over(struct session *s, struct message *msg)
{
    if (push(s, message_ref(msg), true) != 0)
        message_unref(&msg);
}

int session_send(struct session *s, struct message *msg)
{
    int rc = session_push(s, message_ref(msg));

    if (rc != 0)
        message_unref(&msg);
    return rc;
}

struct message *session_front(const struct session *s)
{
    return s->q_len ? s->q[s->q_head] : NULL;
}

/* Releases the oldest queued message; taken: its socket took it (the pace counts it), else it
 * is dropped. */
static void pop(struct session *s, bool taken)
{
    struct session_stats *st = s->lim->stats;
    struct message *m = s->q[s->q_head];
    size_t len = message_wire_len(m);

    s->q_bytes -= len;
    if (s->q_bytes <= s->lim->send_queue_bytes)
        s->is_over = false;
    if (st)
        st->queued_bytes -= len;
    if (taken) {
        s->taken_bytes += len;
        if (st) {
            st->window_bytes += len;
            if (s->taken_window != st->window + 1) {
                s->taken_window = st->window + 1;
                st->window_takers++;
            }
        }
    }
    s->q_head = (s->q_head + 1) & (s->q_cap - 1);
    s->q_len--;
    message_unref(&m);
}

void session_pop(struct session *s)
{
    if (s->q_len)
        pop(s, true);
}

size_t session_queue_len(const struct session *s)
{
    return s->q_len;
}

size_t session_queue_bytes(const struct session *s)
{
    return s->q_bytes;
}

bool session_is_behind(struct session *s, size_t extra, int64_t now_ms)
{
    size_t budget = s->lim->send_queue_bytes, queued = s->q_bytes + extra;
    const struct session_stats *st = s->lim->stats;
    int64_t over_ms;

    if (queued <= budget)
        return false;
    if (queued > SESSION_LAG_CAP * budget)
        return true;
    if (!s->is_over) { /* it went past its budget now: its pace is measured from here */
        s->is_over = true;
        s->over_since_ms = now_ms;
        s->taken_at_over = s->taken_bytes;
        return false;
    }
    over_ms = now_ms - s->over_since_ms;
    if (!st || st->pace <= 0 || st->pace_since_ms < s->over_since_ms)
        return false;
    return (double)(s->taken_bytes - s->taken_at_over) * SESSION_LAG_FACTOR <
           st->pace * (double)over_ms;
}

void session_stats_roll(struct session_stats *st, int64_t now_ms)
{
    int64_t len = now_ms - st->window_start_ms;

    if (st->window_start_ms && len < SESSION_PACE_WINDOW_MS)
        return;
    st->pace = st->window_start_ms && st->window_takers
                   ? (double)st->window_bytes / st->window_takers / (double)len
                   : 0;
    st->pace_since_ms = st->window_start_ms;
    st->window_bytes = 0;
    st->window_takers = 0;
    st->window++;
    st->window_start_ms = now_ms;
}

bool session_jam_update(struct session_jam *j, uint64_t published, uint64_t refused, int64_t now_ms)
{
    if (published != j->published) {
        j->since_ms = 0;
    } else if (refused != j->refused) {
        j->refused_ms = now_ms;
        if (!j->since_ms)
            j->since_ms = now_ms;
    }
    j->published = published;
    j->refused = refused;
    return j->since_ms && now_ms - j->since_ms >= SESSION_JAM_MS &&
           now_ms - j->refused_ms <= SESSION_JAM_RECENT_MS;
}

static void set_closing(struct session *s, uint16_t code, const char *reason)
{
    if (session_is_closing(s))
        return;
    s->close_code = code ? code : 1000;
    snprintf(s->close_reason, sizeof(s->close_reason), "%s", reason ? reason : "");
}

size_t session_close(struct session *s, uint16_t code, const char *reason)
{
    set_closing(s, code, reason);
    return drop_queue(s);
}

void session_close_after_flush(struct session *s, uint16_t code, const char *reason)
{
    set_closing(s, code, reason);
}

bool session_is_closing(const struct session *s)
{
    return s->close_code != 0;
}

uint16_t session_close_code(const struct session *s)
{
    return s->close_code;
}

const char *session_close_reason(const struct session *s)
{
    return s->close_reason;
}

enum channel_join_result session_join(struct session *s, struct channel_index *idx, void *member,
                                      const char *name, size_t len)
{
    return channel_join(idx, &s->subs, member, name, len, s->lim->max_subscriptions);
}

int session_leave(struct session *s, struct channel_index *idx, const char *name, size_t len)
{
    return channel_leave(idx, &s->subs, name, len);
}

uint32_t session_leave_all(struct session *s, struct channel_index *idx)
{
    uint32_t n = s->subs.n;

    channel_leave_all(idx, &s->subs);
    return n;
}

const struct channel_set *session_channels(const struct session *s)
{
    return &s->subs;
}

uint32_t session_subscriptions(const struct session *s)
{
    return s->subs.n;
}

void session_heard(struct session *s, int64_t now_ms)
{
    s->last_rx_ms = now_ms;
}

void session_set_expiry(struct session *s, int64_t exp_s)
{
    s->expires_s = exp_s;
}

void session_set_listen_only(struct session *s)
{
    s->is_listen_only = true;
}

enum session_health session_check(struct session *s, int64_t now_ms, int64_t now_s, int64_t hb_ms)
{
    int64_t silent = s->is_listen_only ? now_ms - s->last_ping_ms : now_ms - s->last_rx_ms;

    if (session_is_closing(s))
        return SESSION_OK;
    if (s->expires_s && now_s >= s->expires_s)
        return SESSION_EXPIRED;
    if (silent >= 2 * hb_ms && !s->is_listen_only)
        return SESSION_SILENT;
    if (silent >= hb_ms && now_ms - s->last_ping_ms >= hb_ms) {
        bool was_idle = s->q_len == 0 && !s->needs_ping;

        s->needs_ping = true;
        s->last_ping_ms = now_ms;
        if (was_idle && s->wake)
            s->wake(s->wake_arg);
        return SESSION_PING;
    }
    return SESSION_OK;
}

bool session_take_ping(struct session *s)
{
    bool due = s->needs_ping;

    s->needs_ping = false;
    return due;
}

int session_rx_append(struct session *s, const void *data, size_t len)
{
    if (s->rx_len + len > s->lim->max_message_bytes)
        return -1;
    if (s->rx_len + len > s->rx_cap) {
        size_t cap = s->rx_cap ? s->rx_cap : 256;

        while (cap < s->rx_len + len)
            cap *= 2;
        s->rx = xrealloc(s->rx, cap);
        s->rx_cap = cap;
    }
    memcpy(s->rx + s->rx_len, data, len);
    s->rx_len += len;
    return 0;
}

const char *session_rx(const struct session *s, size_t *len)
{
    *len = s->rx_len;
    return s->rx ? s->rx : "";
}

void session_rx_reset(struct session *s)
{
    s->rx_len = 0;
    if (s->rx_cap > 4096) { /* keep small buffers, give big ones back */
        free(s->rx);
        s->rx = NULL;
        s->rx_cap = 0;
    }
}

enum session_rate session_rate_check(struct session *s, int64_t now_ms, uint32_t n)
{
    /* A run of refusals ends after a second with none; frames the refill lets through
     * inside a run do not end it, so a steady flood past the rate is still a flood. */
    if (s->is_limited && now_ms - s->last_refused_ms > 1000)
        s->is_limited = false;
    if (ratelimit_take(&s->bucket, &s->lim->rate, now_ms, n) == 0)
        return SESSION_RATE_OK;
    if (!s->is_limited) {
        s->is_limited = true;
        s->limited_since_ms = now_ms;
    }
    s->last_refused_ms = now_ms;
    if (now_ms - s->limited_since_ms >= s->lim->rate_grace_ms)
        return SESSION_RATE_CLOSE;
    return SESSION_RATE_LIMITED;
}
