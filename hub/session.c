/* session.c -- the state of one connection, free of lws so it can be tested alone.
 * The send queue is a ring of message references, grown by doubling, bounded in bytes by
 * the session's limits: a reader that falls behind is cut (1013) instead of growing the
 * hub's memory. Incoming fragments are reassembled into one buffer, bounded by
 * max_message_bytes. */
#include "session.h"

#include "message.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct session *session_new(const struct session_limits *lim, uint64_t id, int64_t now_ms)
{
    struct session *s = xcalloc(1, sizeof(*s));

    s->id = id;
    s->lim = lim;
    ratelimit_init(&s->bucket, &lim->rate, now_ms);
    return s;
}

void session_free(struct session *s)
{
    if (!s)
        return;
    session_drop_queue(s);
    free(s->q);
    free(s->rx);
    free(s->subs.v);
    free(s);
}

int session_push(struct session *s, struct message *msg)
{
    size_t len = message_wire_len(msg);

    if (session_is_closing(s))
        return 1;
    if (s->q_bytes + len > s->lim->send_queue_bytes)
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
    return 0;
}

int session_enqueue(struct session *s, struct message *msg)
{
    int rc = session_push(s, message_ref(msg));

    if (rc != 0)
        message_unref(&msg);
    return rc < 0 ? -1 : 0;
}

struct message *session_front(const struct session *s)
{
    return s->q_len ? s->q[s->q_head] : NULL;
}

void session_pop(struct session *s)
{
    struct message *m;

    if (!s->q_len)
        return;
    m = s->q[s->q_head];
    s->q_bytes -= message_wire_len(m);
    s->q_head = (s->q_head + 1) & (s->q_cap - 1);
    s->q_len--;
    message_unref(&m);
}

size_t session_drop_queue(struct session *s)
{
    size_t n = s->q_len;

    while (s->q_len)
        session_pop(s);
    return n;
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

void session_rx_reset(struct session *s)
{
    s->rx_len = 0;
    if (s->rx_cap > 4096) { /* keep small buffers, give big ones back */
        free(s->rx);
        s->rx = NULL;
        s->rx_cap = 0;
    }
}

enum session_rate session_rate_check(struct session *s, int64_t now_ms)
{
    /* A run of refusals ends after a second with none; frames the refill lets through
     * inside a run do not end it, so a steady flood past the rate is still a flood. */
    if (s->is_limited && now_ms - s->last_refused_ms > 1000)
        s->is_limited = false;
    if (ratelimit_take(&s->bucket, &s->lim->rate, now_ms, 1) == 0)
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

size_t session_close(struct session *s, uint16_t code, const char *reason)
{
    if (!session_is_closing(s)) {
        s->close_code = code;
        snprintf(s->close_reason, sizeof(s->close_reason), "%s", reason ? reason : "");
    }
    return session_drop_queue(s);
}
