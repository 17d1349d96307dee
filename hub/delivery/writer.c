/* writer.c -- frames onto sockets: the fan-out of one event to a plane's subscribers, the
 * replies to one client, and the writing of a connection's queue.
 * Frames leave as prebuilt bytes (common/message.c writes the WebSocket header once per
 * event): lws_write(..., LWS_WRITE_HTTP) on a ws connection sends them as they are, so a
 * shared message is never written to. Several queued frames leave in one write through the
 * plane's scratch buffer; a frame larger than it goes out alone, straight from the message.
 * An SSE stream's queue holds the same messages; each is written as an SSE event (sse_stream.c)
 * into the scratch buffer as it is taken from the queue.
 *
 * Writing straight: a connection whose queue turns non-empty is marked dirty (plane.c), and
 * once per loop turn, after the turn's events are queued, writer_flush_dirty() writes each
 * dirty connection's queue with one write, without the round trip through lws's writeable
 * callback (arm POLLOUT, wait, write, disarm: three system calls where one does). lws's view
 * of the socket stays true: lws_write() is the only way bytes leave, a connection lws holds
 * unsent bytes for (lws_partial_buffered) or that is closing goes the callback's way, and
 * whatever the socket does not take lws keeps and flushes itself before the next writeable
 * callback. lws's own frames (pongs, the close frame) are whole frames of its own, written
 * between ours, never inside one.
 *
 * Overload: a push past a connection's budget cuts it (1013) only when the reader is behind the
 * others (session_is_behind: over a second its socket took a quarter of what one socket took on
 * average, or it holds four times its budget) and its socket is choked; else the hub is behind,
 * or every reader is, and the push goes over the budget. The plane's whole backlog is bounded
 * instead: past 2 x --max-backlog-bytes queued on this plane an event becomes part of its
 * channel's pending gap (common/overflow.c), sent when the backlog is below the bound again;
 * publishes on this hub are refused (503 overloaded) long before that, so this is what events
 * from other hubs meet when they publish more than this one can deliver. */
#include "plane_priv.h"

#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/message.h"
#include "common/metrics.h"
#include "common/overflow.h"
#include "common/xalloc.h"
#include "pacer.h"
#include "sse_stream.h"
#include "subscription.h"
#include "uring.h"

#include <linux/sockios.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

_Static_assert(LWS_PRE <= MESSAGE_PRE, "message headroom must cover LWS_PRE");

/* The reader is behind when the socket does not take what it is given: lws holds unsent bytes
 * for it, or the kernel's send buffer is full (a poll; only asked past the budget). */
static bool is_choked(struct conn *c)
{
    return lws_partial_buffered(c->wsi) || lws_send_pipe_choked(c->wsi);
}

/* c, with extra bytes more to hold, is a slow consumer: behind the others, and its socket does not
 * take what it is given. */
static bool is_behind(struct conn *c, size_t extra)
{
    return session_is_behind(c->s, extra, clock_mono_ms()) && is_choked(c);
}

static void slow_consumer(struct conn *c)
{
    log_warn("ws", "conn %llu: slow consumer, %zu bytes queued, closing 1013",
             (unsigned long long)session_id(c->s), session_queue_bytes(c->s));
    conn_cut(c, 1013, "slow consumer", CLOSE_SLOW_CONSUMER, false, PLANE_CUT_GRACE_SECS);
}

/* --- a jam --------------------------------------------------------------------------------
 * Slow readers can hold the backlog bound between them before any passes SESSION_LAG_CAP times
 * its budget; the hub then refuses every publish, the others have nothing to take, and the
 * pace the slow ones are compared with is their own (tests/bench/jam froze publishing for 7 to
 * 12 s). Throughput cannot tell who is behind then; what is still unread can. A reader is
 * caught up when nothing is queued for it and its socket holds less than a quarter of a budget
 * unsent (SIOCOUTQ: autotuned kernel buffers differ by megabytes, so the queue alone would
 * mislead). In a jam, if one reader of the plane is caught up, the reader with the longest
 * queue past its budget whose socket is choked is behind it by any measure, and is cut, one a
 * sweep, until publishes are taken again. Readers that stall together have no caught-up
 * reader among them, and keep their connections. */
#define JAM_PROBES 64 /* readers with empty queues asked, at most, a sweep */

static bool is_caught_up(struct conn *c, size_t budget)
{
    int unsent = 0;
    int fd;

    if (session_queue_bytes(c->s) || is_choked(c))
        return false;
    fd = lws_get_socket_fd(c->wsi);
    return fd >= 0 && ioctl(fd, SIOCOUTQ, &unsent) == 0 && unsent >= 0 &&
           (size_t)unsent <= budget / 4;
}

void writer_break_jam(struct plane *p)
{
    size_t budget = p->cfg->send_queue_bytes;
    struct conn *worst = NULL;
    bool caught_up = false;
    unsigned probes = 0;

    for (struct conn *c = p->conns; c; c = c->next) {
        size_t queued;

        if (!c->s || !c->wsi || session_is_closing(c->s) || !session_channels(c->s)->n)
            continue;
        queued = session_queue_bytes(c->s);
        if (queued > budget) {
            if (!worst || queued > session_queue_bytes(worst->s))
                worst = c;
        } else if (!queued && !caught_up && probes < JAM_PROBES) {
            probes++;
            caught_up = is_caught_up(c, budget);
        }
    }
    if (!worst || !caught_up || !is_choked(worst))
        return;
    log_warn("ws",
             "plane %u: the hub refuses every publish and others are caught up: cutting "
             "the reader furthest behind",
             p->index);
    slow_consumer(worst);
}

/* msg did not fit c's budget: cut a reader behind the others, else queue it over the budget.
 * Consumes the reference the caller holds for c when it returns 0. */
static int over_budget(struct conn *c, struct message *msg)
{
    if (is_behind(c, message_wire_len(msg))) {
        metrics_add(&metrics.dropped[DROP_SLOW_CONSUMER], 1);
        slow_consumer(c);
        return -1;
    }
    metrics_add(&metrics.queue_overruns, 1);
    return session_push_over(c->s, msg);
}

/* A message for one subscriber outside the fan-out's shared references (a paced event, a
 * replayed one): within the connection's budget as a reply is. Borrows msg. */
static void send_one(struct message *msg, void *arg)
{
    writer_reply(arg, message_ref(msg));
}

/* One event, gap or reset to every subscriber of its channel on this plane. One atomic add
 * for all the queue references, one more to give back the ones not used. Each subscription
 * says whether to send (in order, once), skip (it has the event), hold (its position is
 * still being asked) or pace (max_rate: it waits for its name's slot, see subscription.c). */
static void fanout(struct plane *p, struct message *msg, struct channel_member *m, uint32_t n)
{
    uint32_t unused = 0;
    int rc = 0;
    int64_t now_us = clock_mono_us();

    message_ref_n(msg, n);
    for (uint32_t i = 0; i < n; i++) {
        struct conn *c = m[i].member;
        int64_t due_us = 0;

        switch (subscription_offer(&m[i], msg, now_us, send_one, c, &due_us)) {
        case SUB_SEND: rc = session_push(c->s, msg); break;
        case SUB_SKIP: unused++; continue;
        case SUB_PACE: /* the slot took a reference of its own */
            unused++;
            if (due_us)
                pacer_add(&p->pacer, due_us, c->id, msg->channel, msg->channel_len);
            continue;
        case SUB_HOLD: /* the hold took a reference of its own */
            unused++;
            if (is_behind(c, subscription_held_bytes(&m[i]))) {
                metrics_add(&metrics.dropped[DROP_SLOW_CONSUMER], 1);
                slow_consumer(c);
            }
            continue;
        }
        if (rc < 0)
            rc = over_budget(c, msg);
        if (rc == 0)
            continue;
        unused++;
        if (rc > 0)
            metrics_add(&metrics.dropped[DROP_CLOSING], 1);
    }
    if (unused)
        message_release_n(msg, unused);
}

void writer_fanout(struct plane *p, struct message *msg)
{
    uint32_t n;
    struct channel_member *m = channel_members(p->idx, msg->channel, msg->channel_len, &n);
    char *epoch;

    if (!n)
        return;
    if (msg->kind == MESSAGE_EVENT &&
        (p->stats.queued_bytes > p->overflow_bytes ||
         overflow_holds(p->overflow, msg->channel, msg->channel_len))) {
        overflow_add(p->overflow, msg); /* behind: its subscribers will be told of a gap */
        return;
    }
    if (msg->kind != MESSAGE_EVENT) { /* a gap or reset goes after what is pending */
        struct message *gap = overflow_take(p->overflow, msg->channel, msg->channel_len);

        if (gap) {
            fanout(p, gap, m, n);
            message_unref(&gap);
        }
    }
    epoch = channel_epoch(p->idx, msg->channel, msg->channel_len);
    if (msg->epoch[0] && strcmp(epoch, msg->epoch) != 0)
        snprintf(epoch, 32, "%s", msg->epoch);
    fanout(p, msg, m, n);
}

static int send_pending_gap(struct message *gap, void *arg)
{
    struct plane *p = arg;
    uint32_t n;
    struct channel_member *m = channel_members(p->idx, gap->channel, gap->channel_len, &n);

    if (n)
        fanout(p, gap, m, n);
    message_unref(&gap);
    return 0;
}

void writer_flush_overflow(struct plane *p)
{
    if (overflow_count(p->overflow) && p->stats.queued_bytes < p->overflow_bytes / 2)
        overflow_flush(p->overflow, send_pending_gap, p);
}

void writer_pace(struct plane *p)
{
    struct pace_entry e;
    int64_t now_us = clock_mono_us();

    while (pacer_pop(&p->pacer, now_us, &e)) {
        struct conn *c;
        struct channel_member *m;
        int64_t next;

        HASH_FIND(hh, p->by_id, &e.conn, sizeof(e.conn), c);
        if (!c || !c->s || session_is_closing(c->s))
            continue;
        m = channel_set_find(p->idx, session_channels(c->s), e.channel, e.channel_len);
        if (m && (next = subscription_due(m, e.due_us, now_us, send_one, c)))
            pacer_add(&p->pacer, next, e.conn, e.channel, e.channel_len);
    }
}

void writer_reply(struct conn *c, struct message *msg)
{
    int rc = session_push(c->s, msg);

    if (rc < 0)
        rc = over_budget(c, msg);
    if (rc != 0)
        message_unref(&msg);
}

void writer_replay(struct conn *c, struct message *msg)
{
    session_send_over(c->s, msg);
}

/* Counts an event frame handed to the socket, and its latency since publish. */
static inline void observe(struct plane *p, const struct message *m, int64_t wall_ms,
                           unsigned long long *events)
{
    if (m->kind == MESSAGE_REPLY)
        return; /* not an event */
    (*events)++;
    if (m->ts_ms)
        histogram_observe(&p->delivery_latency,
                          wall_ms > m->ts_ms ? (uint64_t)(wall_ms - m->ts_ms) * 1000 : 0);
}

/* Puts m's bytes for c's transport at out when they fit in room (an SSE stream's cursor then
 * moves); returns their length either way. */
static size_t frame_of(struct conn *c, struct message *m, unsigned char *out, size_t room)
{
    size_t len;

    if (c->sse)
        return sse_stream_frame(c->sse, m, out, room);
    len = message_wire_len(m);
    if (len <= room)
        memcpy(out, message_wire(m), len);
    return len;
}

/* A frame larger than the scratch goes alone: a WebSocket frame straight from its message, an
 * SSE event from a buffer of its own (lws copies what the socket does not take). Returns 0, or
 * -1 when the socket failed. */
static int write_alone(struct conn *c, struct message *m, size_t len)
{
    unsigned char *buf;
    int n;

    if (!c->sse)
        return lws_write(c->wsi, (unsigned char *)message_wire(m), len, LWS_WRITE_HTTP) < (int)len
                   ? -1
                   : 0;
    buf = xmalloc(LWS_PRE + len);
    sse_stream_frame(c->sse, m, buf + LWS_PRE, len);
    n = lws_write(c->wsi, buf + LWS_PRE, len, LWS_WRITE_HTTP);
    free(buf);
    return n < (int)len ? -1 : 0;
}

size_t writer_take(struct plane *p, struct conn *c, unsigned char *out, size_t cap)
{
    struct session *s = c->s;
    size_t used = 0;
    unsigned long long events = 0;
    struct message *m;
    int64_t wall = clock_wall_ms();

    if (session_take_ping(s)) {
        /* a ping ahead of the queue; on a WebSocket with a payload, because lws 4.1.6 does
         * not report an empty pong to the protocol (ops-ws.c: "PONG && !len goto
         * already_done"); on an SSE stream a comment line (an event on an unnamed one) */
        const char *ping = !c->sse                         ? "\x89\x02hb"
                           : sse_stream_is_unnamed(c->sse) ? SSE_PING_EVENT
                                                           : SSE_PING;

        used = strlen(ping);
        memcpy(out, ping, used);
    }
    while ((m = session_front(s))) {
        size_t len = frame_of(c, m, out + used, cap - used);

        if (len > cap - used)
            break; /* the next write's (or, when it is first, write_queue's alone) */
        used += len;
        observe(p, m, wall, &events);
        session_pop(s);
    }
    if (events)
        metrics_add(&metrics.events_delivered, events);
    return used;
}

/* Writes a due ping and as much of c's queue as one write takes. Returns 0, or -1 when the
 * socket failed. */
static int write_queue(struct plane *p, struct conn *c)
{
    unsigned char *out = p->scratch + LWS_PRE;
    size_t used = writer_take(p, c, out, PLANE_SCRATCH_BYTES), len;
    struct message *m = session_front(c->s);
    unsigned long long events = 0;

    if (used)
        return lws_write(c->wsi, out, used, LWS_WRITE_HTTP) < (int)used ? -1 : 0;
    if (!m)
        return 0;
    len = c->sse ? sse_stream_frame(c->sse, m, NULL, 0) : message_wire_len(m);
    if (len <= PLANE_SCRATCH_BYTES)
        return 0;
    if (write_alone(c, m, len) < 0) /* larger than the scratch: alone */
        return -1;
    observe(p, m, clock_wall_ms(), &events);
    metrics_add(&metrics.events_delivered, events);
    session_pop(c->s);
    return 0;
}

int writer_on_writeable(struct plane *p, struct conn *c)
{
    struct session *s = c->s;

    if (write_queue(p, c) < 0)
        return -1;
    if (session_front(s)) {
        lws_callback_on_writable(c->wsi);
        return 0;
    }
    if (session_is_closing(s)) {
        const char *reason = session_close_reason(s);

        if (c->sse)
            return sse_end(c); /* the response ends: the client reconnects */

        lws_close_reason(c->wsi, (enum lws_close_status)session_close_code(s),
                         (unsigned char *)reason, strlen(reason));
        return -1;
    }
    return 0;
}

struct conn *writer_dirty_take(struct plane *p, size_t i)
{
    struct conn *c = p->dirty[i];

    if (!c)
        return NULL; /* closed since it was marked */
    c->dirty_slot = 0;
    if (session_is_closing(c->s) || lws_partial_buffered(c->wsi)) {
        lws_callback_on_writable(c->wsi); /* the close frame, or after lws's own bytes */
        return NULL;
    }
    return c;
}

void writer_flush_dirty(struct plane *p)
{
    if (uring_is_usable(p->uring)) {
        uring_flush_dirty(p, p->uring);
        return;
    }
    for (size_t i = 0; i < p->n_dirty; i++) {
        struct conn *c = writer_dirty_take(p, i);

        if (!c)
            continue;
        if (write_queue(p, c) < 0) {
            /* the socket failed: lws notices it too; the queue goes now */
            session_close(c->s, 1011, "write failed");
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
            continue;
        }
        if (session_front(c->s) && !lws_partial_buffered(c->wsi))
            lws_callback_on_writable(c->wsi); /* more than one write takes */
    }
    p->n_dirty = 0;
}
