/* writer.c -- frames onto sockets: the fan-out of one event to a plane's subscribers, the
 * replies to one client, and the WRITEABLE callback that writes a connection's queue.
 * Frames leave as prebuilt bytes (common/message.c writes the WebSocket header once per
 * event): lws_write(..., LWS_WRITE_HTTP) on a ws connection sends them as they are, so a
 * shared message is never written to. Several queued frames leave in one write through the
 * plane's scratch buffer; a frame larger than it goes out alone, straight from the message.
 * lws keeps whatever the socket did not take and holds back WRITEABLE until it is flushed. */
#include "plane_priv.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/message.h"
#include "common/metrics.h"
#include "subscription.h"

#include <stdio.h>
#include <string.h>

_Static_assert(LWS_PRE <= MESSAGE_PRE, "message headroom must cover LWS_PRE");

static void slow_consumer(struct conn *c)
{
    log_warn("ws", "conn %llu: slow consumer, %zu bytes queued, closing 1013",
             (unsigned long long)session_id(c->s), session_queue_bytes(c->s));
    conn_cut(c, 1013, "slow consumer", CLOSE_SLOW_CONSUMER, false, PLANE_CUT_GRACE_SECS);
}

/* One atomic add for all the queue references, one more to give back the ones not used. Each
 * subscription says whether to send (in order, once), skip (it has the event) or hold (its
 * position is still being asked). */
void writer_fanout(struct plane *p, struct message *msg)
{
    uint32_t n, unused = 0;
    struct channel_member *m = channel_members(p->idx, msg->channel, msg->channel_len, &n);
    char *epoch;
    int rc = 0;

    if (!n)
        return;
    epoch = channel_epoch(p->idx, msg->channel, msg->channel_len);
    if (msg->epoch[0] && strcmp(epoch, msg->epoch) != 0)
        snprintf(epoch, 32, "%s", msg->epoch);
    message_ref_n(msg, n);
    for (uint32_t i = 0; i < n; i++) {
        struct conn *c = m[i].member;

        switch (subscription_offer(&m[i], msg)) {
        case SUB_SEND: rc = session_push(c->s, msg); break;
        case SUB_SKIP: unused++; continue;
        case SUB_HOLD: /* the hold took a reference of its own */
            unused++;
            if (session_queue_bytes(c->s) + subscription_held_bytes(&m[i]) >
                p->lim.send_queue_bytes) {
                metrics_add(&metrics.dropped[DROP_SLOW_CONSUMER], 1);
                slow_consumer(c);
            }
            continue;
        }
        if (rc == 0)
            continue;
        unused++;
        if (rc > 0) {
            metrics_add(&metrics.dropped[DROP_CLOSING], 1);
            continue;
        }
        metrics_add(&metrics.dropped[DROP_SLOW_CONSUMER], 1);
        slow_consumer(c);
    }
    if (unused)
        message_release_n(msg, unused);
}

void writer_reply(struct conn *c, struct message *msg)
{
    if (session_send(c->s, msg) < 0)
        slow_consumer(c);
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
    if (!m->channel_len)
        return; /* a reply, not an event */
    (*events)++;
    if (m->ts_ms)
        histogram_observe(&p->delivery_latency,
                          wall_ms > m->ts_ms ? (uint64_t)(wall_ms - m->ts_ms) * 1000 : 0);
}

int writer_on_writeable(struct plane *p, struct conn *c)
{
    struct session *s = c->s;
    unsigned char *out = p->scratch + LWS_PRE;
    size_t used = 0;
    unsigned long long events = 0;
    struct message *m;
    int64_t wall = clock_wall_ms();

    if (session_take_ping(s)) {
        /* a ping ahead of the queue; with a payload, because lws 4.1.6 does not report an
         * empty pong to the protocol (ops-ws.c: "PONG && !len goto already_done") */
        memcpy(out, "\x89\x02hb", 4);
        used = 4;
    }
    while ((m = session_front(s))) {
        size_t len = message_wire_len(m);

        if (used + len > PLANE_SCRATCH_BYTES) {
            if (used)
                break;
            /* larger than the scratch: alone, straight from the message (lws copies what
             * the socket does not take) */
            if (lws_write(c->wsi, (unsigned char *)message_wire(m), len, LWS_WRITE_HTTP) < (int)len)
                return -1;
            observe(p, m, wall, &events);
            session_pop(s);
            goto sent;
        }
        memcpy(out + used, message_wire(m), len);
        used += len;
        observe(p, m, wall, &events);
        session_pop(s);
    }
    if (used && lws_write(c->wsi, out, used, LWS_WRITE_HTTP) < (int)used)
        return -1;
sent:
    if (events)
        metrics_add(&metrics.events_delivered, events);
    if (session_front(s)) {
        lws_callback_on_writable(c->wsi);
        return 0;
    }
    if (session_is_closing(s)) {
        const char *reason = session_close_reason(s);

        lws_close_reason(c->wsi, (enum lws_close_status)session_close_code(s),
                         (unsigned char *)reason, strlen(reason));
        return -1;
    }
    return 0;
}
