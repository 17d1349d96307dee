/* ws.c -- a delivery plane: the lws side of the hub.
 * Each plane is one thread servicing one lws context bound to --listen (planes share the
 * port through SO_REUSEPORT, so the kernel spreads connections over them). The lws callback
 * only dispatches: sessions (session.c) hold each connection's state, the channel index
 * (channel.c) finds subscribers, protocol.c reads client frames. Events arrive through the
 * plane's mailbox, drained in LWS_CALLBACK_EVENT_WAIT_CANCELLED after lws_cancel_service().
 *
 * Frames leave as prebuilt bytes (message.c writes the WebSocket header once per event):
 * lws_write(..., LWS_WRITE_HTTP) on a ws connection sends them as they are, so a shared
 * message is never written to. Several queued frames leave in one write through the
 * plane's scratch buffer; a frame larger than it goes out alone, straight from the message.
 * Only this file includes libwebsockets. */
#include "ws.h"

#include "channel.h"
#include "clock.h"
#include "config.h"
#include "jwt.h"
#include "log.h"
#include "mailbox.h"
#include "message.h"
#include "metrics.h"
#include "netaddr.h"
#include "protocol.h"
#include "session.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <libwebsockets.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

_Static_assert(LWS_PRE <= MESSAGE_PRE, "message headroom must cover LWS_PRE");

#define SCRATCH_BYTES (64 * 1024) /* one coalesced write */
#define MAILBOX_MAX_MAILS 65536   /* events waiting for one plane before it drops */
#define CUT_GRACE_SECS 3          /* a cut client's socket gets this long to take its close */
#define RATE_GRACE_MS 3000        /* over the frame rate this long: close 1008 */
#define TICK_US (100 * LWS_US_PER_MS)
#define ALIVE_US (500 * LWS_US_PER_MS)
#define SWEEP_US (250 * LWS_US_PER_MS)
#define ACCEPT_BATCH 64 /* connections taken per wake of the listen socket */
#define LISTEN_BACKLOG 4096

struct ws_conn;

struct plane {
    const struct config *cfg;
    unsigned index;
    struct lws_context *ctx;
    struct ev_loop *loop; /* libev, epoll: the plane's thread runs it */
    void *foreign_loops[1];
    struct lws_vhost *vh;
    int listen_fd; /* owned by lws once adopted */
    int spare_fd;  /* kept free for accept-and-close when out of descriptors */
    struct mailbox *mb;
    struct channel_index *idx; /* delivery thread */
    struct session_limits lim;
    struct ws_conn *conns; /* delivery thread: every open session, for the drain */
    size_t n_conns;
    pthread_t thread;
    bool is_started;
    atomic_bool stop;
    bool is_draining; /* delivery thread */
    bool is_done;     /* delivery thread: done has fired */
    int64_t drain_deadline_ms;
    lws_sorted_usec_list_t sul_drain;
    lws_sorted_usec_list_t sul_alive;
    lws_sorted_usec_list_t sul_sweep;
    struct histogram delivery_latency; /* written by this plane only */
    atomic_llong alive_ms; /* written by the plane's thread every ALIVE_US: the watchdog reads it */
    plane_done_fn *done;
    void *done_arg;
    unsigned char *scratch; /* LWS_PRE + SCRATCH_BYTES */
    struct lws_protocols protocols[3];
    struct lws_http_mount mount;
    lws_retry_bo_t retry;
};

/* lws per-session data: the link between a wsi and its session. */
struct ws_conn {
    struct session *s;
    struct lws *wsi;
    struct ws_conn *prev, *next;
    enum close_reason why;   /* what ended it, for metrics */
    char ip[NETADDR_STRLEN]; /* the client, through trusted proxies */
    bool is_ip_counted;      /* holds a slot of --max-connections-per-ip */
    bool is_admitted;        /* holds a slot of --max-connections */
    uint16_t refuse_code;    /* set at the handshake: close with it before any welcome */
    const char *refuse_reason;
    enum close_reason refuse_why;
    struct jwt_claims *claims; /* with --jwt-secret-file: the token's grants */
    int64_t last_rx_ms;        /* monotonic: the last frame (or pong) from the peer */
    int64_t last_ping_ms;      /* monotonic: our last ping */
    bool needs_ping;           /* a ping leaves with the next write */
    bool is_dropped;           /* silent too long: being killed */
};

static atomic_ullong next_conn_id = 1;
static atomic_long admitted; /* upgrades past the filter and not yet released, all planes */

static struct plane *plane_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

/* Queues a reply (or event) for c and asks for WRITEABLE when the queue was empty: a non-empty
 * queue always has a WRITEABLE pending. Takes nothing: msg keeps the caller's reference. */
static int send_msg(struct ws_conn *c, struct message *msg)
{
    int was_empty = session_front(c->s) == NULL;

    if (session_enqueue(c->s, msg) < 0)
        return -1;
    if (was_empty)
        lws_callback_on_writable(c->wsi);
    return 0;
}

/* Sends a reply made for c alone; consumes msg. */
static void reply(struct plane *p, struct ws_conn *c, struct message *msg);

/* Ends c from outside its own callback (or inside it): marks it closing with code, drops its
 * queue (unless keep_queue: a drain lets it flush), and asks for WRITEABLE, where the close
 * frame leaves. A socket that cannot take even that is killed after grace_secs. */
static void cut(struct ws_conn *c, uint16_t code, const char *reason, enum close_reason why,
                bool keep_queue, int grace_secs)
{
    size_t dropped;

    if (session_is_closing(c->s))
        return;
    c->why = why;
    if (keep_queue) {
        c->s->close_code = code;
        snprintf(c->s->close_reason, sizeof(c->s->close_reason), "%s", reason);
        dropped = 0;
    } else {
        dropped = session_close(c->s, code, reason);
    }
    if (why == CLOSE_SLOW_CONSUMER)
        metrics_add(&metrics.dropped[DROP_SLOW_CONSUMER], dropped);
    lws_callback_on_writable(c->wsi);
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, grace_secs);
}

static void reply(struct plane *p, struct ws_conn *c, struct message *msg)
{
    (void)p;
    if (!session_is_closing(c->s) && send_msg(c, msg) < 0) {
        log_warn("ws", "conn %llu: slow consumer, %zu bytes queued, closing 1013",
                 (unsigned long long)c->s->id, c->s->q_bytes);
        cut(c, 1013, "slow consumer", CLOSE_SLOW_CONSUMER, false, CUT_GRACE_SECS);
    }
    message_unref(&msg);
}

/* Fan-out of one event to this plane's subscribers of its channel: one atomic add for all
 * the queue references, one more to give back the ones not used. */
static void deliver(struct plane *p, struct message *msg)
{
    uint32_t n, unused = 0;
    const struct channel_member *m = channel_members(p->idx, msg->channel, msg->channel_len, &n);

    if (!n)
        return;
    message_ref_n(msg, n);
    for (uint32_t i = 0; i < n; i++) {
        struct ws_conn *c = m[i].member;
        int was_empty = c->s->q_len == 0;
        int rc = session_push(c->s, msg);

        if (rc == 0) {
            if (was_empty)
                lws_callback_on_writable(c->wsi);
            continue;
        }
        unused++;
        if (rc > 0) {
            metrics_add(&metrics.dropped[DROP_CLOSING], 1);
            continue;
        }
        metrics_add(&metrics.dropped[DROP_SLOW_CONSUMER], 1);
        log_warn("ws", "conn %llu: slow consumer, %zu bytes queued, closing 1013",
                 (unsigned long long)c->s->id, c->s->q_bytes);
        cut(c, 1013, "slow consumer", CLOSE_SLOW_CONSUMER, false, CUT_GRACE_SECS);
    }
    if (unused)
        message_release_n(msg, unused);
}

static void finish_drain(struct plane *p)
{
    if (p->is_done)
        return;
    p->is_done = true;
    lws_sul_cancel(&p->sul_drain);
    log_info("ws", "plane %u: drained, %zu clients left", p->index, p->n_conns);
    p->done(p, p->done_arg);
}

static void on_drain_tick(lws_sorted_usec_list_t *sul)
{
    struct plane *p = lws_container_of(sul, struct plane, sul_drain);

    if (p->n_conns == 0 || clock_mono_ms() >= p->drain_deadline_ms)
        finish_drain(p);
    else
        lws_sul_schedule(p->ctx, 0, &p->sul_drain, on_drain_tick, TICK_US);
}

static void start_drain(struct plane *p)
{
    if (p->is_draining)
        return;
    p->is_draining = true;
    p->drain_deadline_ms = clock_mono_ms() + (int64_t)p->cfg->drain_seconds * 1000;
    log_info("ws", "plane %u: draining %zu clients", p->index, p->n_conns);
    for (struct ws_conn *c = p->conns; c; c = c->next)
        cut(c, 1001, "going away", CLOSE_DRAIN, true,
            p->cfg->drain_seconds ? (int)p->cfg->drain_seconds : 1);
    on_drain_tick(&p->sul_drain);
}

static void on_mail(struct mail *mail, void *arg)
{
    struct plane *p = arg;

    switch (mail->kind) {
    case MAIL_EVENT:
        deliver(p, mail->msg);
        message_unref(&mail->msg);
        break;
    case MAIL_DRAIN: start_drain(p); break;
    }
}

/* --- one connection ------------------------------------------------------------------------ */

/* Answers the upgrade request with an HTTP error and refuses it (the caller returns 1). */
static int refuse_http(struct lws *wsi, unsigned status, const char *code, const char *text,
                       enum refuse_reason why)
{
    unsigned char buf[LWS_PRE + 512];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;
    char body[200];
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"message\":\"%s\"}", code, text);

    metrics_add(&metrics.refused[why], 1);
    if (lws_add_http_header_status(wsi, status, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"content-type:",
                                    (const unsigned char *)"application/json", 16, &p, end) ||
        lws_add_http_header_by_name(
            wsi, (const unsigned char *)"retry-after:", (const unsigned char *)"5", 1, &p, end) ||
        lws_add_http_header_content_length(wsi, (lws_filepos_t)n, &p, end) ||
        lws_finalize_http_header(wsi, &p, end))
        return 1;
    if (lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_HEADERS) < 0)
        return 1;
    lws_write(wsi, (unsigned char *)body, (size_t)n, LWS_WRITE_HTTP_FINAL);
    return 1;
}

/* The client's address: the peer, or what trusted proxies say it is. */
static void client_ip(struct plane *p, struct lws *wsi, char out[NETADDR_STRLEN])
{
    char peer[NETADDR_STRLEN] = "unknown";
    char xff[512];
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = lws_get_socket_fd(wsi);

    if (fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        char raw[NETADDR_STRLEN] = "";

        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, raw, sizeof(raw));
        else if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, raw, sizeof(raw));
        if (netaddr_normalize(raw, strlen(raw), peer) < 0)
            snprintf(peer, sizeof(peer), "%s", raw);
    }
    if (lws_hdr_copy(wsi, xff, sizeof(xff), WSI_TOKEN_X_FORWARDED_FOR) > 0)
        netaddr_client(p->cfg->trusted, peer, xff, out);
    else
        snprintf(out, NETADDR_STRLEN, "%s", peer);
}

static bool origin_allowed(const struct plane *p, struct lws *wsi)
{
    char origin[256];

    if (!p->cfg->origins)
        return true;
    if (lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) <= 0)
        return true; /* not a browser: Origin protects browsers from other sites' pages */
    for (size_t i = 0; p->cfg->origins[i]; i++)
        if (!strcasecmp(p->cfg->origins[i], origin))
            return true;
    return false;
}

/* The token from ?token= or Authorization: Bearer, verified into c->claims. */
static bool authenticate(struct plane *p, struct ws_conn *c, struct lws *wsi)
{
    char buf[JWT_MAX_BYTES + 16];
    const char *tok = lws_get_urlarg_by_name(wsi, "token=", buf, (int)sizeof(buf));
    char err[128];
    struct timespec ts;

    if (!tok && lws_hdr_copy(wsi, buf, sizeof(buf), WSI_TOKEN_HTTP_AUTHORIZATION) > 0 &&
        !strncasecmp(buf, "Bearer ", 7))
        tok = buf + 7;
    if (!tok) {
        log_info("ws", "%s: no token: closing 1008", c->ip);
        return false;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    c->claims = xcalloc(1, sizeof(*c->claims));
    if (jwt_verify(tok, strlen(tok), p->cfg->jwt_secret, p->cfg->jwt_secret_len, ts.tv_sec,
                   c->claims, err, sizeof(err)) < 0) {
        free(c->claims);
        c->claims = NULL;
        log_info("ws", "%s: token refused (%s): closing 1008", c->ip, err);
        return false;
    }
    return true;
}

/* The upgrade request, before the 101: refusals that a client should back off from get an
 * HTTP status; auth and origin refusals complete the handshake and close with 1008, which a
 * browser can read (it cannot read a refused handshake's status). */
static int on_filter(struct plane *p, struct ws_conn *c, struct lws *wsi)
{
    char uri[256];
    int n = lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);
    const struct config *cfg = p->cfg;

    if (n <= 0 || strcmp(uri, "/ws") != 0) {
        log_debug("ws", "refused a WebSocket upgrade on %s", n > 0 ? uri : "(no uri)");
        return refuse_http(wsi, 404, "not_found", "WebSockets are served on /ws", REFUSE_PATH);
    }
    if (p->is_draining)
        return refuse_http(wsi, 503, "unavailable", "the hub is shutting down", REFUSE_DRAINING);
    client_ip(p, wsi, c->ip);
    /* Take the slots here, atomically, so upgrades racing on two planes cannot both pass
     * the last one; release_conn() gives them back however the connection ends. */
    c->is_admitted = true;
    if (atomic_fetch_add(&admitted, 1) >= (long)cfg->max_connections && cfg->max_connections)
        return refuse_http(wsi, 503, "unavailable", "the hub is at its connection limit",
                           REFUSE_CAPACITY);
    c->is_ip_counted = true;
    if (netaddr_count_add(c->ip, 1) >= cfg->max_connections_per_ip && cfg->max_connections_per_ip)
        return refuse_http(wsi, 429, "rate_limited", "too many connections from this address",
                           REFUSE_PER_IP);
    if (!origin_allowed(p, wsi)) {
        c->refuse_code = 1008;
        c->refuse_reason = "origin not allowed";
        c->refuse_why = CLOSE_ORIGIN;
    } else if (cfg->jwt_secret && !authenticate(p, c, wsi)) {
        c->refuse_code = 1008;
        c->refuse_reason = "unauthorized";
        c->refuse_why = CLOSE_AUTH;
    }
    return 0;
}

static void join(struct plane *p, struct ws_conn *c, const char *name, size_t len, const char *ref)
{
    char text[96];

    if (!channel_name_is_valid(name, len)) {
        snprintf(text, sizeof(text), "invalid channel name (1 to 128 of A-Z a-z 0-9 _ - . :)");
        reply(p, c, proto_error("bad_request", text, ref));
        return;
    }
    if (c->claims && !jwt_grants(c->claims, name, len)) {
        reply(p, c, proto_error("forbidden", "the token does not grant this channel", ref));
        return;
    }
    switch (channel_join(p->idx, &c->s->subs, c, name, len, p->lim.max_subscriptions)) {
    case CHANNEL_JOINED: metrics_gauge_add(&metrics.subscriptions, 1); /* fallthrough */
    case CHANNEL_ALREADY: {
        char chan[CHANNEL_NAME_MAX + 1];

        memcpy(chan, name, len);
        chan[len] = '\0';
        reply(p, c, proto_reply("subscribed", chan, ref));
        break;
    }
    case CHANNEL_LIMIT:
        snprintf(text, sizeof(text), "at most %u subscriptions per connection",
                 p->lim.max_subscriptions);
        reply(p, c, proto_error("forbidden", text, ref));
        break;
    }
}

static int on_established(struct plane *p, struct ws_conn *c, struct lws *wsi)
{
    char conn_id[32];
    char arg[2048];

    /* c was zeroed by lws and filled by on_filter */
    c->wsi = wsi;
    c->s = session_new(&p->lim, atomic_fetch_add(&next_conn_id, 1), clock_mono_ms());
    c->next = p->conns;
    if (p->conns)
        p->conns->prev = c;
    p->conns = c;
    p->n_conns++;
    metrics_gauge_add(&metrics.connections, 1);
    metrics_add(&metrics.connections_accepted, 1);

    if (c->refuse_code) {
        cut(c, c->refuse_code, c->refuse_reason, c->refuse_why, false, CUT_GRACE_SECS);
        return 0;
    }
    c->last_rx_ms = c->last_ping_ms = clock_mono_ms();
    snprintf(conn_id, sizeof(conn_id), "c-%llu", (unsigned long long)c->s->id);
    reply(p, c, proto_welcome(conn_id, p->cfg->instance_id, p->cfg->heartbeat));
    log_debug("ws", "conn %llu: open on plane %u", (unsigned long long)c->s->id, p->index);

    const char *list = lws_get_urlarg_by_name(wsi, "channels=", arg, (int)sizeof(arg));

    if (list) {
        while (*list) {
            const char *end = strchr(list, ',');
            size_t len = end ? (size_t)(end - list) : strlen(list);

            if (len)
                join(p, c, list, len, NULL);
            if (!end)
                break;
            list = end + 1;
        }
    }
    return 0;
}

static void on_command(struct plane *p, struct ws_conn *c)
{
    struct proto_cmd cmd;
    char err[160];

    if (proto_parse(c->s->rx, c->s->rx_len, &cmd, err, sizeof(err)) < 0) {
        reply(p, c, proto_error("bad_request", err, cmd.ref));
        proto_cmd_clear(&cmd);
        return;
    }
    switch (cmd.type) {
    case PROTO_PING: reply(p, c, proto_reply("pong", NULL, cmd.ref)); break;
    case PROTO_SUBSCRIBE: join(p, c, cmd.channel, cmd.channel_len, cmd.ref); break;
    case PROTO_UNSUBSCRIBE:
        if (channel_leave(p->idx, &c->s->subs, cmd.channel, cmd.channel_len) < 0) {
            reply(p, c, proto_error("not_found", "not subscribed to that channel", cmd.ref));
        } else {
            metrics_gauge_add(&metrics.subscriptions, -1);
            reply(p, c, proto_reply("unsubscribed", cmd.channel, cmd.ref));
        }
        break;
    }
    proto_cmd_clear(&cmd);
}

/* Closes c from inside its own callback: the caller returns -1. */
static int close_now(struct ws_conn *c, enum lws_close_status code, const char *reason,
                     enum close_reason why)
{
    c->why = why;
    session_close(c->s, (uint16_t)code, reason);
    lws_close_reason(c->wsi, code, (unsigned char *)reason, strlen(reason));
    return -1;
}

static int on_receive(struct plane *p, struct ws_conn *c, const void *in, size_t len)
{
    c->last_rx_ms = clock_mono_ms();
    if (session_is_closing(c->s))
        return 0;
    if (lws_frame_is_binary(c->wsi))
        return close_now(c, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE, "binary frames are not accepted",
                         CLOSE_BAD_FRAME);
    if (session_rx_append(c->s, in, len) < 0)
        return close_now(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too large",
                         CLOSE_BAD_FRAME);
    if (!lws_is_final_fragment(c->wsi) || lws_remaining_packet_payload(c->wsi))
        return 0;

    metrics_add(&metrics.frames_received, 1);
    switch (session_rate_check(c->s, clock_mono_ms())) {
    case SESSION_RATE_OK: on_command(p, c); break;
    case SESSION_RATE_LIMITED: {
        struct proto_cmd cmd;
        char err[160];

        proto_parse(c->s->rx, c->s->rx_len, &cmd, err, sizeof(err)); /* only for its ref */
        reply(p, c, proto_error("rate_limited", "too many frames: slow down", cmd.ref));
        proto_cmd_clear(&cmd);
        break;
    }
    case SESSION_RATE_CLOSE:
        session_rx_reset(c->s);
        log_info("ws", "conn %llu: over the frame rate for %d ms, closing 1008",
                 (unsigned long long)c->s->id, RATE_GRACE_MS);
        return close_now(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "rate limit exceeded",
                         CLOSE_RATE_LIMIT);
    }
    session_rx_reset(c->s);
    return 0;
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

static int on_writeable(struct plane *p, struct ws_conn *c)
{
    struct session *s = c->s;
    unsigned char *out = p->scratch + LWS_PRE;
    size_t used = 0;
    unsigned long long events = 0;
    struct message *m;
    int64_t wall = clock_wall_ms();

    if (c->needs_ping) {
        /* a ping ahead of the queue; with a payload, because lws 4.1.6 does not report an
         * empty pong to the protocol (ops-ws.c: "PONG && !len goto already_done") */
        memcpy(out, "\x89\x02hb", 4);
        used = 4;
        c->needs_ping = false;
    }
    while ((m = session_front(s))) {
        size_t len = message_wire_len(m);

        if (used + len > SCRATCH_BYTES) {
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
        lws_close_reason(c->wsi, (enum lws_close_status)s->close_code,
                         (unsigned char *)s->close_reason, strlen(s->close_reason));
        return -1;
    }
    return 0;
}

/* What the handshake attached to c: from CLOSED, or from WSI_DESTROY for a connection that
 * never got that far. */
static void release_conn(struct ws_conn *c)
{
    if (c->claims) {
        jwt_claims_free(c->claims);
        free(c->claims);
        c->claims = NULL;
    }
    if (c->is_ip_counted) {
        netaddr_count_add(c->ip, -1);
        c->is_ip_counted = false;
    }
    if (c->is_admitted) {
        atomic_fetch_sub(&admitted, 1);
        c->is_admitted = false;
    }
}

static void on_closed(struct plane *p, struct ws_conn *c)
{
    release_conn(c);
    if (!c->s)
        return;
    metrics_gauge_add(&metrics.subscriptions, -(long long)c->s->subs.n);
    channel_leave_all(p->idx, &c->s->subs);
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    p->n_conns--;
    metrics_gauge_add(&metrics.connections, -1);
    metrics_add(&metrics.closed[c->why], 1);
    log_debug("ws", "conn %llu: closed", (unsigned long long)c->s->id);
    session_free(c->s);
    c->s = NULL;
    if (p->is_draining && p->n_conns == 0)
        finish_drain(p);
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    struct plane *p = plane_of(wsi);
    struct ws_conn *c = user;

    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION: return p->is_draining ? 1 : 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: return on_filter(p, c, wsi);
    case LWS_CALLBACK_ESTABLISHED: return on_established(p, c, wsi);
    case LWS_CALLBACK_RECEIVE: return c->s ? on_receive(p, c, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE: return c->s ? on_writeable(p, c) : -1;
    case LWS_CALLBACK_RECEIVE_PONG:
        if (c->s)
            c->last_rx_ms = clock_mono_ms();
        return 0;
    case LWS_CALLBACK_CLOSED: on_closed(p, c); return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        if (c)
            release_conn(c);
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        mailbox_drain(p->mb, on_mail, p);
        if (atomic_load(&p->stop))
            ev_break(p->loop, EVBREAK_ALL);
        return 0;
    default: return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* --- accepting --------------------------------------------------------------------------------
 * Debian's lws 4.1.6 has LWS_MAX_SMP 1, so it never sets SO_REUSEPORT on its own listen socket
 * (server.c sets it only for count_threads > 1). Each plane therefore opens its own listen
 * socket with SO_REUSEPORT, hands it to lws as a raw file descriptor, and adopts each
 * accepted connection into its vhost, where lws serves HTTP and the upgrade as usual. */

/* Out of descriptors: accept with the spare one and close at once, so the backlog does not
 * keep the listen socket readable forever (a busy loop). */
static void shed_one(struct plane *p)
{
    int fd;

    if (p->spare_fd < 0)
        return;
    close(p->spare_fd);
    fd = accept(p->listen_fd, NULL, NULL);
    if (fd >= 0)
        close(fd);
    p->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static int accept_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len)
{
    struct plane *p = plane_of(wsi);
    int one = 1;

    (void)user;
    (void)in;
    (void)len;
    if (reason != LWS_CALLBACK_RAW_RX_FILE)
        return 0;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(p->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                log_warn("ws", "plane %u: out of file descriptors: refusing a connection",
                         p->index);
                shed_one(p);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                       errno != ECONNABORTED) {
                log_error_errno("ws", "plane %u: accept", p->index);
            }
            break;
        }
        if (p->is_draining) {
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (!lws_adopt_socket_vhost(p->vh, fd)) /* lws closed fd */
            log_warn("ws", "plane %u: could not adopt a connection", p->index);
    }
    return 0;
}

/* A non-blocking listen socket on addr with SO_REUSEPORT, or -1 with err set. */
static int listen_socket(const struct config_addr *addr, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICHOST};
    struct addrinfo *res = NULL;
    char port[8];
    int fd = -1, one = 1, rc;

    snprintf(port, sizeof(port), "%u", addr->port);
    rc = getaddrinfo(addr->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "--listen: '%s' is not a numeric address: %s", addr->host,
                 gai_strerror(rc));
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        snprintf(err, errlen, "--listen: cannot listen on %s:%u: %s", addr->host, addr->port,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* --- the plane ----------------------------------------------------------------------------- */

static void wake(void *arg)
{
    struct plane *p = arg;

    lws_cancel_service(p->ctx);
}

static void lws_log(int level, const char *line)
{
    size_t n = strlen(line);

    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    log_write(level == LLL_ERR    ? LOG_ERROR
              : level == LLL_WARN ? LOG_WARN
                                  : LOG_DEBUG,
              "lws", "%.*s", (int)n, line);
}

struct plane *plane_new(const struct config *cfg, unsigned index, plane_done_fn *done,
                        void *done_arg, char *err, size_t errlen)
{
    struct plane *p = xcalloc(1, sizeof(*p));
    struct lws_context_creation_info info;
    static const uint32_t retry_table[] = {1000};

    p->cfg = cfg;
    p->index = index;
    p->done = done;
    p->done_arg = done_arg;
    atomic_init(&p->stop, false);
    atomic_init(&p->alive_ms, clock_mono_ms());
    p->lim = (struct session_limits){
        .send_queue_bytes = cfg->send_queue_bytes,
        .max_message_bytes = cfg->max_message_bytes,
        .max_subscriptions = cfg->max_subscriptions,
        .rate = {.per_sec = cfg->client_rate, .burst = cfg->client_burst},
        .rate_grace_ms = RATE_GRACE_MS,
    };
    p->listen_fd = -1;
    p->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    p->idx = channel_index_new_plane(index);
    p->mb = mailbox_new(MAILBOX_MAX_MAILS, wake, p);
    p->scratch = xmalloc(LWS_PRE + SCRATCH_BYTES);

    p->protocols[0] = (struct lws_protocols){
        .name = "herald",
        .callback = ws_callback,
        .per_session_data_size = sizeof(struct ws_conn),
        .rx_buffer_size = 256, /* allocated per connection: client frames are small */
        .tx_packet_size = cfg->max_message_bytes + 1024,
    };
    p->protocols[1] = (struct lws_protocols){.name = "herald-accept", .callback = accept_callback};
    p->mount = (struct lws_http_mount){
        .mountpoint = "/",
        .mountpoint_len = 1,
        .origin = cfg->web_root,
        .def = "index.html",
        .origin_protocol = LWSMPRO_FILE,
    };
    /* no lws validity timers (zero hangup): the plane's sweep does heartbeats, see on_sweep */
    p->retry = (lws_retry_bo_t){
        .retry_ms_table = retry_table,
        .retry_ms_table_count = 1,
    };

    lws_set_log_level(log_enabled(LOG_DEBUG) ? LLL_ERR | LLL_WARN : LLL_ERR, lws_log);
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* we listen ourselves: see accept_callback */
    info.protocols = p->protocols;
    info.mounts = &p->mount;
    info.vhost_name = "herald";
    info.user = p;
    info.retry_and_idle_policy = &p->retry;
    /* lws's own loop polls every descriptor with poll() each turn; on libev (Debian's evlib
     * plugin) it waits with epoll. The loop is ours ("foreign"), so lws installs no signal
     * watcher of its own and the plane decides when it stops. */
    p->loop = ev_loop_new(EVBACKEND_EPOLL);
    if (!p->loop) {
        snprintf(err, errlen, "cannot create the event loop of delivery plane %u", index);
        goto fail;
    }
    p->foreign_loops[0] = p->loop;
    info.foreign_loops = p->foreign_loops;
    info.options = LWS_SERVER_OPTION_LIBEV | LWS_SERVER_OPTION_VALIDATE_UTF8 |
                   LWS_SERVER_OPTION_ALLOW_LISTEN_SHARE |
                   LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE;
    info.count_threads = 1;
    info.timeout_secs = 10;

    p->ctx = lws_create_context(&info);
    if (!p->ctx) {
        snprintf(err, errlen, "cannot create the lws context of delivery plane %u", index);
        goto fail;
    }
    p->vh = lws_get_vhost_by_name(p->ctx, "herald");
    p->listen_fd = listen_socket(&cfg->listen, err, errlen);
    if (p->listen_fd < 0)
        goto fail;
    if (!lws_adopt_descriptor_vhost(p->vh, LWS_ADOPT_RAW_FILE_DESC,
                                    (lws_sock_file_fd_type){.filefd = p->listen_fd},
                                    "herald-accept", NULL)) {
        p->listen_fd = -1; /* lws closed it */
        snprintf(err, errlen, "--listen: lws would not take the listen socket");
        goto fail;
    }
    return p;
fail:
    plane_free(p);
    return NULL;
}

/* Every 250 ms, over the plane's connections: heartbeats and token expiry. lws can keep a
 * validity timer per connection (retry_and_idle_policy), but in 4.1.6 each one is a sorted
 * insert into a list of every connection's timer, O(n) each time a peer proves alive: at
 * 10,000 connections that was a quarter of the plane's CPU. One sweep is O(n) per 250 ms. */
static void on_sweep(lws_sorted_usec_list_t *sul)
{
    struct plane *p = lws_container_of(sul, struct plane, sul_sweep);
    int64_t now = clock_mono_ms(), wall_s = clock_wall_ms() / 1000;
    int64_t hb = (int64_t)p->cfg->heartbeat * 1000;

    for (struct ws_conn *c = p->conns; c; c = c->next) {
        int64_t silent = now - c->last_rx_ms;

        if (!c->s || session_is_closing(c->s) || c->is_dropped)
            continue;
        if (c->claims && wall_s >= c->claims->exp) {
            log_info("ws", "conn %llu: token expired, closing 1008", (unsigned long long)c->s->id);
            cut(c, 1008, "token expired", CLOSE_AUTH, false, CUT_GRACE_SECS);
        } else if (silent >= 2 * hb) {
            log_info("ws", "conn %llu: silent for %lld ms, dropping", (unsigned long long)c->s->id,
                     (long long)silent);
            c->is_dropped = true;
            c->why = CLOSE_TIMEOUT;
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        } else if (silent >= hb && now - c->last_ping_ms >= hb) {
            c->needs_ping = true;
            c->last_ping_ms = now;
            lws_callback_on_writable(c->wsi);
        }
    }
    lws_sul_schedule(p->ctx, 0, &p->sul_sweep, on_sweep, SWEEP_US);
}

static void on_alive_tick(lws_sorted_usec_list_t *sul)
{
    struct plane *p = lws_container_of(sul, struct plane, sul_alive);

    atomic_store_explicit(&p->alive_ms, clock_mono_ms(), memory_order_relaxed);
    lws_sul_schedule(p->ctx, 0, &p->sul_alive, on_alive_tick, ALIVE_US);
}

static void *plane_main(void *arg)
{
    struct plane *p = arg;

    on_alive_tick(&p->sul_alive);
    lws_sul_schedule(p->ctx, 0, &p->sul_sweep, on_sweep, SWEEP_US);
    while (!atomic_load(&p->stop))
        ev_run(p->loop, 0);
    return NULL;
}

int plane_start(struct plane *p)
{
    if (pthread_create(&p->thread, NULL, plane_main, p) != 0)
        return -1;
    p->is_started = true;
    return 0;
}

int plane_post_quiet(struct plane *p, struct message *msg)
{
    return mailbox_post_quiet(p->mb, MAIL_EVENT, msg);
}

void plane_flush(struct plane *p)
{
    mailbox_flush(p->mb);
}

void plane_drain(struct plane *p)
{
    mailbox_post(p->mb, MAIL_DRAIN, NULL);
}

void plane_stop(struct plane *p)
{
    if (!p->is_started)
        return;
    atomic_store(&p->stop, true);
    lws_cancel_service(p->ctx);
    pthread_join(p->thread, NULL);
    p->is_started = false;
}

void plane_free(struct plane *p)
{
    if (!p)
        return;
    if (p->ctx)
        lws_context_destroy(p->ctx); /* closes the adopted listen socket too */
    if (p->loop)
        ev_loop_destroy(p->loop);
    if (p->spare_fd >= 0)
        close(p->spare_fd);
    channel_index_free(p->idx);
    mailbox_free(p->mb);
    free(p->scratch);
    free(p);
}

int64_t plane_alive_ms(const struct plane *p)
{
    return atomic_load_explicit(&p->alive_ms, memory_order_relaxed);
}

const struct histogram *plane_delivery_latency(const struct plane *p)
{
    return &p->delivery_latency;
}

size_t plane_mailbox_depth(const struct plane *p)
{
    return mailbox_depth(p->mb);
}
