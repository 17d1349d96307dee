/* conn.c -- client connections as lws sees them: the "herald" protocol's callback and its
 * handlers. The callback only dispatches. The upgrade request's headers are read here and
 * handed to admission.c as strings; an admitted connection gets a session (session.c) that
 * holds its queue, subscriptions and liveness; client frames are parsed by protocol.c; frames
 * leave through writer.c. A connection is {wsi, session} plus what the handshake decided
 * (struct conn, lws's per-session data). An SSE stream (GET /sse, an HTTP request that lws
 * hands this protocol through a callback mount) is a connection too, with the parts that
 * differ in sse.c: it is opened, joined, swept, drained and closed here like a WebSocket. */
#include "plane_priv.h"

#include "common/clock.h"
#include "common/config.h"
#include "common/jwt.h"
#include "common/log.h"
#include "common/message.h"
#include "common/metrics.h"
#include "common/position.h"
#include "common/xalloc.h"
#include "cursor.h"
#include "protocol.h"
#include "sse_stream.h"
#include "subscription.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define RATE_GRACE_MS 3000 /* over the frame rate this long: close 1008 */

static atomic_ullong next_conn_id = 1;

static struct plane *plane_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

void conn_cut(struct conn *c, uint16_t code, const char *reason, enum close_reason why,
              bool keep_queue, int grace_secs)
{
    size_t dropped = 0;

    if (session_is_closing(c->s))
        return;
    c->why = why;
    if (keep_queue)
        session_close_after_flush(c->s, code, reason);
    else
        dropped = session_close(c->s, code, reason);
    if (why == CLOSE_SLOW_CONSUMER)
        metrics_add(&metrics.dropped[DROP_SLOW_CONSUMER], dropped);
    lws_callback_on_writable(c->wsi);
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, grace_secs);
}

/* Closes c from inside its own callback: the caller returns -1. */
static int close_now(struct conn *c, enum lws_close_status code, const char *reason,
                     enum close_reason why)
{
    c->why = why;
    session_close(c->s, (uint16_t)code, reason);
    lws_close_reason(c->wsi, code, (unsigned char *)reason, strlen(reason));
    return -1;
}

/* --- the upgrade ------------------------------------------------------------------------- */

/* Reads header h into buf: absent, present (NUL-terminated, possibly ""), or too long for
 * buf. Several lines of one header arrive joined with ','. */
static struct hdr read_header(struct lws *wsi, enum lws_token_indexes h, char *buf, size_t cap)
{
    struct hdr out = {HDR_ABSENT, NULL};
    int total = lws_hdr_total_length(wsi, h);

    buf[0] = '\0';
    if (lws_hdr_copy_fragment(wsi, buf, (int)cap, h, 0) < 0 && total == 0)
        return out; /* no fragment at all (an empty one copies as 0) */
    if (total >= (int)cap) {
        out.state = HDR_TOO_LONG;
        return out;
    }
    if (lws_hdr_copy(wsi, buf, (int)cap, h) < 0) {
        out.state = HDR_TOO_LONG;
        return out;
    }
    out.state = HDR_PRESENT;
    out.value = buf;
    return out;
}

/* The value of query argument `name=` (lws splits the query at '&' and decodes it). A buffer
 * the size of the whole query holds any one argument, so an argument is never cut short:
 * longer than cap is reported as too long. */
struct hdr conn_query_arg(struct lws *wsi, const char *name, char *buf, size_t cap)
{
    struct hdr out = {HDR_ABSENT, NULL};
    int total = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
    size_t nlen = strlen(name);
    char *all;

    if (total <= 0)
        return out;
    all = xmalloc((size_t)total + 1);
    for (int i = 0; lws_hdr_copy_fragment(wsi, all, total + 1, WSI_TOKEN_HTTP_URI_ARGS, i) >= 0;
         i++) {
        size_t len = strlen(all);

        if (len < nlen || memcmp(all, name, nlen) != 0)
            continue;
        if (len - nlen >= cap) {
            out.state = HDR_TOO_LONG;
        } else {
            memcpy(buf, all + nlen, len - nlen + 1);
            out.state = HDR_PRESENT;
            out.value = buf;
        }
        break;
    }
    free(all);
    return out;
}

static void peer_address(struct lws *wsi, char out[NETADDR_STRLEN])
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = lws_get_socket_fd(wsi);

    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0 ||
        netaddr_from_sockaddr((struct sockaddr *)&ss, out) < 0)
        memcpy(out, "unknown", sizeof("unknown"));
}

int conn_http_error(struct lws *wsi, unsigned status, const char *code, const char *text)
{
    unsigned char buf[LWS_PRE + 512], body[LWS_PRE + 512];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;
    json_t *err = json_pack("{s:s, s:s}", "error", code, "message", text);
    size_t n = err ? json_dumpb(err, (char *)body + LWS_PRE, sizeof(body) - LWS_PRE,
                                JSON_COMPACT | JSON_PRESERVE_ORDER)
                   : 0;

    json_decref(err); /* the text may hold quotes (a name from the query): jansson escapes */
    if (!n || n > sizeof(body) - LWS_PRE)
        return -1;
    if (lws_add_http_header_status(wsi, status, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"content-type:",
                                    (const unsigned char *)"application/json", 16, &p, end) ||
        lws_add_http_header_by_name(
            wsi, (const unsigned char *)"retry-after:", (const unsigned char *)"5", 1, &p, end) ||
        lws_add_http_header_content_length(wsi, (lws_filepos_t)n, &p, end) ||
        lws_finalize_http_header(wsi, &p, end))
        return -1;
    if (lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_HEADERS) < 0)
        return -1;
    return lws_write(wsi, body + LWS_PRE, n, LWS_WRITE_HTTP_FINAL) < 0 ? -1 : 0;
}

void conn_admit(struct plane *p, struct conn *c, struct lws *wsi, const char *want)
{
    char path[256], origin[256], xff[1024], auth[JWT_MAX_BYTES + 16], token[JWT_MAX_BYTES + 1];
    char peer[NETADDR_STRLEN];
    struct admission_request rq = {0};

    peer_address(wsi, peer);
    rq.path = read_header(wsi, WSI_TOKEN_GET_URI, path, sizeof(path));
    rq.peer = peer;
    rq.origin = read_header(wsi, WSI_TOKEN_ORIGIN, origin, sizeof(origin));
    rq.forwarded_for = read_header(wsi, WSI_TOKEN_X_FORWARDED_FOR, xff, sizeof(xff));
    rq.authorization = read_header(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, auth, sizeof(auth));
    rq.query_token = conn_query_arg(wsi, "token=", token, sizeof(token));
    rq.is_draining = p->is_draining;
    rq.now_s = clock_wall_ms() / 1000;
    admission_decide(p->cfg, p->gate, want, &rq, &c->adm);
}

/* The upgrade request, before the 101 (LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION). */
static int on_filter(struct plane *p, struct conn *c, struct lws *wsi)
{
    conn_admit(p, c, wsi, "/ws");
    switch (c->adm.verdict) {
    case ADMIT: return 0;
    case ADMIT_THEN_CLOSE:
        log_info("ws", "%s: %s: closing %u", c->adm.ip, c->adm.why, c->adm.close_code);
        return 0;
    case REFUSE_HTTP:
        if (c->adm.why[0])
            log_debug("ws", "%s: refused: %s", c->adm.ip, c->adm.why);
        metrics_add(&metrics.refused[c->adm.refuse_why], 1);
        conn_http_error(wsi, c->adm.status, c->adm.code, c->adm.text);
        return 1;
    }
    return 1;
}

/* --- an open connection ------------------------------------------------------------------- */

static void wake(void *arg)
{
    struct conn *c = arg;

    plane_mark_dirty(plane_of(c->wsi), c); /* written at the end of this loop turn */
}

/* Joins cmd's channel and asks the control plane where the subscription starts; the answer
 * (conn_position) sends "subscribed", the replay, and what came meanwhile. */
static void join(struct plane *p, struct conn *c, const struct proto_cmd *cmd)
{
    char text[96];
    const char *name = cmd->channel, *ref = cmd->ref;
    size_t len = cmd->channel_len;
    struct channel_member *m;
    struct position_request *q;

    if (c->adm.claims && !jwt_grants(c->adm.claims, name, len)) {
        writer_reply(c, proto_error("forbidden", "the token does not grant this channel", ref));
        return;
    }
    switch (session_join(c->s, p->idx, c, name, len)) {
    case CHANNEL_JOINED: break;
    case CHANNEL_ALREADY:
        /* held already: its place now (a pending one answers when its position comes) */
        m = channel_set_find(p->idx, session_channels(c->s), name, len);
        if (m)
            subscription_set_rate(m, cmd->max_rate);
        if (m && !subscription_is_pending(m))
            writer_reply(c, proto_subscribed(cmd->channel, channel_epoch(p->idx, name, len),
                                             m->last_seq, -1, ref));
        return;
    case CHANNEL_LIMIT:
        snprintf(text, sizeof(text), "at most %u subscriptions per connection",
                 p->lim.max_subscriptions);
        writer_reply(c, proto_error("forbidden", text, ref));
        return;
    case CHANNEL_FULL:
        snprintf(text, sizeof(text), "the hub holds its maximum of %u channels",
                 p->cfg->max_channels);
        writer_reply(c, proto_error("forbidden", text, ref));
        return;
    }
    metrics_gauge_add(&metrics.subscriptions, 1);
    m = channel_set_find(p->idx, session_channels(c->s), name, len);
    subscription_begin(m);
    subscription_set_rate(m, cmd->max_rate);
    q = xcalloc(1, sizeof(*q));
    q->plane = p->index;
    q->conn = c->id;
    memcpy(q->channel, name, len);
    q->channel_len = len;
    q->has_since = cmd->has_since;
    memcpy(q->since_epoch, cmd->since_epoch, sizeof(q->since_epoch));
    q->since_seq = cmd->since_seq;
    q->last = cmd->last;
    q->ref = ref ? xstrdup(ref) : NULL;
    p->host.request(q, p->host.arg);
}

static void send_held(struct message *msg, void *arg)
{
    writer_replay(arg, msg);
}

/* The control plane's answer to a subscribe: "subscribed" (or an error), the replay, then
 * what arrived for the channel while the position was asked. */
void conn_position(struct plane *p, struct position_answer *a)
{
    struct conn *c;
    struct channel_member *m;
    struct message *sub;

    HASH_FIND(hh, p->by_id, &a->conn, sizeof(a->conn), c);
    m = c && c->s && !session_is_closing(c->s)
            ? channel_set_find(p->idx, session_channels(c->s), a->channel, a->channel_len)
            : NULL;
    if (!m || !subscription_is_pending(m)) { /* gone, or unsubscribed meanwhile */
        position_answer_free(a);
        return;
    }
    if (a->error) {
        writer_reply(c, proto_error("unavailable",
                                    "the channel's position cannot be read now: subscribe again",
                                    a->ref));
        session_leave(c->s, p->idx, a->channel, a->channel_len);
        metrics_gauge_add(&metrics.subscriptions, -1);
        position_answer_free(a);
        return;
    }
    snprintf(channel_epoch(p->idx, a->channel, a->channel_len), 32, "%s", a->epoch);
    sub = proto_subscribed(a->channel, a->epoch, a->seq, a->recovered, a->ref);
    if (a->n) /* the position it gives an SSE stream's cursor: the replay moves it on */
        sub->seq = a->replay[0]->seq - 1;
    writer_reply(c, sub);
    for (size_t i = 0; i < a->n; i++)
        writer_replay(c, a->replay[i]);
    subscription_start(m, a->seq, send_held, c);
    position_answer_free(a);
}

void conn_join_listed(struct plane *p, struct conn *c, const char *name, size_t len, uint32_t last,
                      const struct cursor_pos *since, uint32_t max_rate)
{
    struct proto_cmd cmd = {.type = PROTO_SUBSCRIBE, .last = last, .max_rate = max_rate};
    char text[200];

    if (session_rate_check(c->s, clock_mono_ms(), 1) != SESSION_RATE_OK) {
        snprintf(text, sizeof(text), "too many channels at once: %.*s not joined", (int)len, name);
        writer_reply(c, proto_error("rate_limited", text, NULL));
        return;
    }
    memcpy(cmd.channel, name, len);
    cmd.channel[len] = '\0';
    cmd.channel_len = len;
    if (since) {
        cmd.has_since = 1;
        snprintf(cmd.since_epoch, sizeof(cmd.since_epoch), "%s", since->epoch);
        cmd.since_seq = since->seq;
    }
    join(p, c, &cmd);
}

/* ?channels=a,b at connect: each join costs a frame token, as a subscribe frame would. */
static void join_query(struct plane *p, struct conn *c, struct lws *wsi)
{
    char arg[2048], num[16];
    struct hdr list = conn_query_arg(wsi, "channels=", arg, sizeof(arg));
    struct hdr last_arg = conn_query_arg(wsi, "last=", num, sizeof(num));
    const char *s = arg;
    uint32_t last = 0;

    if (last_arg.state != HDR_ABSENT) {
        char *end;
        unsigned long n = last_arg.state == HDR_PRESENT ? strtoul(num, &end, 10) : 0;

        if (last_arg.state != HDR_PRESENT || !num[0] || *end || n > PROTO_LAST_MAX) {
            writer_reply(c, proto_error("bad_request",
                                        "last= must be a whole number from 0 to "
                                        "1000",
                                        NULL));
            return;
        }
        last = (uint32_t)n;
    }

    if (list.state == HDR_TOO_LONG) {
        writer_reply(c, proto_error("bad_request", "channels= is too long", NULL));
        return;
    }
    if (list.state != HDR_PRESENT)
        return;
    while (*s) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);

        if (len) {
            if (len > CHANNEL_NAME_MAX || !channel_name_is_valid(s, len))
                writer_reply(
                    c, proto_error("bad_request",
                                   "invalid channel name (1 to 128 of A-Z a-z 0-9 _ - . :)", NULL));
            else
                conn_join_listed(p, c, s, len, last, NULL, 0);
        }
        if (!end)
            break;
        s = end + 1;
    }
}

void conn_open(struct plane *p, struct conn *c, struct lws *wsi)
{
    c->wsi = wsi;
    c->id = atomic_fetch_add(&next_conn_id, 1);
    c->s = session_new(&p->lim, c->id, clock_mono_ms(), wake, c);
    plane_add_conn(p, c);
    metrics_gauge_add(&metrics.connections, 1);
    metrics_add(&metrics.connections_accepted, 1);
    if (c->adm.claims)
        session_set_expiry(c->s, c->adm.claims->exp);
}

void conn_welcome(struct plane *p, struct conn *c)
{
    char conn_id[32];

    snprintf(conn_id, sizeof(conn_id), "c-%llu", (unsigned long long)session_id(c->s));
    writer_reply(c, proto_welcome(conn_id, p->cfg->instance_id, p->cfg->heartbeat));
}

static int on_established(struct plane *p, struct conn *c, struct lws *wsi)
{
    /* c was zeroed by lws and filled by on_filter */
    conn_open(p, c, wsi);
    if (c->adm.verdict == ADMIT_THEN_CLOSE) {
        conn_cut(c, c->adm.close_code, c->adm.close_reason, c->adm.close_why, false,
                 PLANE_CUT_GRACE_SECS);
        return 0;
    }
    conn_welcome(p, c);
    log_debug("ws", "conn %llu: open on plane %u from %s", (unsigned long long)session_id(c->s),
              p->index, c->adm.ip);
    join_query(p, c, wsi);
    return 0;
}

static void on_command(struct plane *p, struct conn *c)
{
    struct proto_cmd cmd;
    char err[160];
    size_t len;
    const char *frame = session_rx(c->s, &len);

    if (proto_parse(frame, len, &cmd, err, sizeof(err)) < 0) {
        writer_reply(c, proto_error("bad_request", err, cmd.ref));
        proto_cmd_clear(&cmd);
        return;
    }
    switch (cmd.type) {
    case PROTO_PING: writer_reply(c, proto_reply("pong", NULL, cmd.ref)); break;
    case PROTO_SUBSCRIBE: join(p, c, &cmd); break;
    case PROTO_UNSUBSCRIBE:
        if (session_leave(c->s, p->idx, cmd.channel, cmd.channel_len) < 0) {
            writer_reply(c, proto_error("not_found", "not subscribed to that channel", cmd.ref));
        } else {
            metrics_gauge_add(&metrics.subscriptions, -1);
            writer_reply(c, proto_reply("unsubscribed", cmd.channel, cmd.ref));
        }
        break;
    }
    proto_cmd_clear(&cmd);
}

static int on_receive(struct plane *p, struct conn *c, const void *in, size_t len)
{
    int64_t now = clock_mono_ms();

    session_heard(c->s, now);
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
    switch (session_rate_check(c->s, now, 1)) {
    case SESSION_RATE_OK: on_command(p, c); break;
    case SESSION_RATE_LIMITED: {
        struct proto_cmd cmd;
        char err[160];
        size_t flen;
        const char *frame = session_rx(c->s, &flen);

        proto_parse(frame, flen, &cmd, err, sizeof(err)); /* only for its ref */
        writer_reply(c, proto_error("rate_limited", "too many frames: slow down", cmd.ref));
        proto_cmd_clear(&cmd);
        break;
    }
    case SESSION_RATE_CLOSE:
        session_rx_reset(c->s);
        log_info("ws", "conn %llu: over the frame rate for %d ms, closing 1008",
                 (unsigned long long)session_id(c->s), RATE_GRACE_MS);
        return close_now(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "rate limit exceeded",
                         CLOSE_RATE_LIMIT);
    }
    session_rx_reset(c->s);
    return 0;
}

/* The connection ended (CLOSED; for an SSE stream the first of DROP_PROTOCOL, CLOSED_HTTP
 * and WSI_DESTROY): nothing of the plane's may point at c afterwards, lws frees it. */
static void on_closed(struct plane *p, struct conn *c)
{
    if (c->s) {
        metrics_gauge_add(&metrics.subscriptions, -(long long)session_leave_all(c->s, p->idx));
        plane_remove_conn(p, c);
        metrics_gauge_add(&metrics.connections, -1);
        if (c->sse)
            metrics_gauge_add(&metrics.sse_connections, -1);
        metrics_add(&metrics.closed[c->why], 1);
        log_debug(c->sse ? "sse" : "ws", "conn %llu: closed", (unsigned long long)session_id(c->s));
        session_free(c->s);
        c->s = NULL;
    }
    sse_stream_free(c->sse);
    c->sse = NULL;
    admission_release(&c->adm);
}

/* LWS_CALLBACK_HTTP: the /sse mount's requests are SSE streams (sse.c); anything else goes
 * to lws's default handling (a file the "/" mount did not find). The path is read from the
 * request: lws hands a GET the whole path but other methods only what follows the mount. */
static int on_http(struct plane *p, struct conn *c, struct lws *wsi, void *in, size_t len)
{
    char *uri = NULL;
    int n = 0;

    if (c && lws_http_get_uri_and_method(wsi, &uri, &n) >= 0 && uri && n >= 4 &&
        !strncmp(uri, "/sse", 4) && (n == 4 || uri[4] == '/'))
        return sse_on_request(p, c, wsi);
    return lws_callback_http_dummy(wsi, LWS_CALLBACK_HTTP, c, in, len);
}

void conn_sweep(struct plane *p, struct conn *c, int64_t now_ms, int64_t now_s)
{
    if (c->is_dropped)
        return;
    switch (session_check(c->s, now_ms, now_s, (int64_t)p->cfg->heartbeat * 1000)) {
    case SESSION_OK:
    case SESSION_PING: break;
    case SESSION_EXPIRED:
        log_info("ws", "conn %llu: token expired, closing 1008",
                 (unsigned long long)session_id(c->s));
        conn_cut(c, 1008, "token expired", CLOSE_AUTH, false, PLANE_CUT_GRACE_SECS);
        break;
    case SESSION_SILENT:
        log_info("ws", "conn %llu: silent for two heartbeats, dropping",
                 (unsigned long long)session_id(c->s));
        c->is_dropped = true;
        c->why = CLOSE_TIMEOUT;
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        break;
    }
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct plane *p = plane_of(wsi);
    struct conn *c = user;

    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION: return p->is_draining ? 1 : 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: return on_filter(p, c, wsi);
    case LWS_CALLBACK_ESTABLISHED: return on_established(p, c, wsi);
    case LWS_CALLBACK_RECEIVE: return c->s ? on_receive(p, c, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE: return c->s ? writer_on_writeable(p, c) : -1;
    case LWS_CALLBACK_RECEIVE_PONG:
        if (c->s)
            session_heard(c->s, clock_mono_ms());
        return 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (c->s) /* lws answers the close frame: nothing of ours may follow it */
            session_close(c->s, 1000, "peer closed");
        return 0;
    case LWS_CALLBACK_CLOSED: on_closed(p, c); return 0;
    case LWS_CALLBACK_HTTP: return on_http(p, c, wsi, in, len);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (c && c->sse)
            return c->s ? writer_on_writeable(p, c) : -1;
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (c && c->sse) /* lws frees c after either: the stream ends at the first */
            on_closed(p, c);
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    case LWS_CALLBACK_WSI_DESTROY:
        if (c) /* a connection that never reached CLOSED still holds its admission */
            on_closed(p, c);
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED: plane_on_wake(p); return 0;
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS: /* user: the vhost's SSL_CTX */
        return plane_tls_ctx(p, user) < 0 ? 1 : 0;
    default: return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

const struct lws_protocols *conn_protocol(struct plane *p)
{
    p->protocols[0] = (struct lws_protocols){
        .name = "herald",
        .callback = callback,
        .per_session_data_size = sizeof(struct conn),
        .rx_buffer_size = 256, /* allocated per connection: client frames are small */
        .tx_packet_size = p->cfg->max_message_bytes + 1024,
    };
    p->protocols[1] = (struct lws_protocols){0}; /* terminator */
    return p->protocols;
}
