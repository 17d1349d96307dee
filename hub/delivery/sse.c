/* sse.c -- GET /sse: server-sent events for clients without WebSocket (SPEC.md "Server-sent
 * events"), the lws side. An SSE stream is a connection like a WebSocket one: a struct conn
 * with a session (session.c), joined to its channels in the plane's channel index, fanned out
 * to, written, swept, drained and cut by the same code (writer.c, conn.c, plane.c). What
 * differs: the request reaches the "herald" protocol as LWS_CALLBACK_HTTP through a callback
 * mount on /sse (before the "/" file mount), is admitted as /ws is (admission.c, but a token
 * or Origin refusal is an HTTP status: an HTTP client can read one), and is answered with an
 * HTTP response that does not end; its queued messages leave as SSE events
 * (sse_stream.c) through lws_write(LWS_WRITE_HTTP), and its end is the response's end.
 *
 * The client cannot send: its subscriptions are the query's, each join charged a frame token
 * as channels= on /ws is, and a malformed query or Last-Event-ID is refused (400) rather than
 * answered with error events, since the client could not act on them. A reconnect with
 * Last-Event-ID subscribes each channel with since = its entry (an empty entry: a plain
 * subscribe), and last= applies where since cannot be kept, as on /ws. Its liveness is the
 * transport's: the session pings (": hb" comments) every heartbeat whatever the peer sends,
 * and the socket's TCP_USER_TIMEOUT (twice the heartbeat) ends a stream whose bytes go
 * unacknowledged. lws would parse bytes the client sends after its request as a pipelined
 * request; a client that does that is served as lws serves it, and its stream ends (the
 * protocol is unbound: conn.c closes the stream at LWS_CALLBACK_HTTP_DROP_PROTOCOL). */
#include "plane_priv.h"

#include "common/config.h"
#include "common/log.h"
#include "common/message.h"
#include "common/metrics.h"
#include "common/xalloc.h"
#include "cursor.h"
#include "protocol.h"
#include "sse_stream.h"

#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define LIST_MAX 2048                  /* channels= longer than this is refused, as on /ws */
#define LAST_EVENT_ID "last-event-id:" /* lws keeps unknown header names lower-cased */

/* --- the request ---------------------------------------------------------------------------- */

/* Refuses the request with status and a JSON error, counted under why; the connection stays
 * for another request (keep-alive) when lws can keep it. Releases the admission first: c is
 * freed by lws once the transaction completes. */
static int refuse(struct conn *c, struct lws *wsi, unsigned status, const char *code,
                  const char *text, enum refuse_reason why)
{
    metrics_add(&metrics.refused[why], 1);
    log_debug("sse", "%s: refused %u: %s", c->adm.ip[0] ? c->adm.ip : "?", status, text);
    admission_release(&c->adm);
    if (conn_http_error(wsi, status, code, text) < 0)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* channels= into a new stream, last= and names=. Returns NULL with err set. */
static struct sse_stream *parse_query(struct plane *p, struct lws *wsi, uint32_t *last, char *err,
                                      size_t errlen)
{
    char list[LIST_MAX], num[16], names[4];
    struct hdr arg = conn_query_arg(wsi, "channels=", list, sizeof(list));
    struct hdr last_arg = conn_query_arg(wsi, "last=", num, sizeof(num));
    struct hdr names_arg;
    struct sse_stream *x;

    *last = 0;
    if (last_arg.state != HDR_ABSENT) {
        char *end;
        unsigned long v = last_arg.state == HDR_PRESENT ? strtoul(num, &end, 10) : 0;

        if (last_arg.state != HDR_PRESENT || !num[0] || *end || num[0] == '-' ||
            v > PROTO_LAST_MAX) {
            snprintf(err, errlen, "last= must be a whole number from 0 to %d", PROTO_LAST_MAX);
            return NULL;
        }
        *last = (uint32_t)v;
    }
    if (arg.state == HDR_TOO_LONG) {
        snprintf(err, errlen, "channels= is too long");
        return NULL;
    }
    names_arg = conn_query_arg(wsi, "names=", names, sizeof(names));
    if (names_arg.state != HDR_ABSENT &&
        (names_arg.state != HDR_PRESENT || (strcmp(names, "0") && strcmp(names, "1")))) {
        snprintf(err, errlen, "names= must be 0 (every event a \"message\") or 1");
        return NULL;
    }
    x = sse_stream_new(arg.state == HDR_PRESENT ? list : "", p->lim.max_subscriptions, err, errlen);
    if (x)
        sse_stream_set_unnamed(x, names_arg.state == HDR_PRESENT && !strcmp(names, "0"));
    return x;
}

/* since=, the same cursor as Last-Event-ID for a client that opens a new stream (a new set of
 * channels) and cannot set headers (EventSource): herald.js. Returns 0, or -1 with err set. */
static int parse_since_arg(struct sse_stream *x, struct lws *wsi, char *err, size_t errlen)
{
    size_t cap = sse_stream_channels(x) * (CURSOR_ENTRY_MAX + 1) + 1;
    char *text = xmalloc(cap);
    struct hdr arg = conn_query_arg(wsi, "since=", text, cap);
    int rc = 0;

    if (arg.state == HDR_TOO_LONG) {
        snprintf(err, errlen, "since= is longer than any id: of this stream");
        rc = -1;
    } else if (arg.state == HDR_PRESENT && text[0]) {
        rc = cursor_parse("since=", text, strlen(text), sse_stream_positions(x),
                          sse_stream_channels(x), err, errlen);
    }
    free(text);
    return rc;
}

/* max_rate= into rates[0..n): one whole number from 1 to PROTO_RATE_MAX for every channel, or
 * one entry per channel of channels= (empty: not paced), as since= has. herald.js keeps a
 * maxRate per channel and writes the list. Returns 0, or -1 with err set. */
static int parse_rates(struct lws *wsi, uint32_t *rates, uint32_t n, char *err, size_t errlen)
{
    size_t cap = (size_t)n * 5 + 1;
    char *text = xmalloc(cap);
    struct hdr arg = conn_query_arg(wsi, "max_rate=", text, cap);
    uint32_t count = 1;
    int rc = arg.state == HDR_ABSENT ? 0 : -1;

    memset(rates, 0, n * sizeof(*rates));
    if (arg.state == HDR_PRESENT) {
        for (const char *q = text; *q; q++)
            count += *q == ',';
        rc = count == 1 || count == n ? 0 : -1;
        for (uint32_t i = 0, at = 0; rc == 0 && i < count; i++) {
            size_t len = strcspn(text + at, ",");
            char *stop;
            unsigned long v;

            if (len == 0) { /* an empty entry: that channel is not paced */
                rc = count == 1 ? -1 : 0;
            } else if (text[at] < '1' || text[at] > '9' ||
                       (v = strtoul(text + at, &stop, 10)) > PROTO_RATE_MAX ||
                       stop != text + at + len) {
                rc = -1;
            } else {
                rates[i] = (uint32_t)v;
            }
            at += (uint32_t)len + 1;
        }
        for (uint32_t k = 1; rc == 0 && count == 1 && k < n; k++)
            rates[k] = rates[0];
    }
    if (rc < 0)
        snprintf(err, errlen,
                 "max_rate= is one whole number from 1 to %d, or one such entry (or none) per "
                 "channel of channels=",
                 PROTO_RATE_MAX);
    free(text);
    return rc;
}

/* Last-Event-ID, when sent and not empty, into x's positions; else since= (an EventSource's
 * own reconnect sends the URL it first opened and the newer Last-Event-ID: that one wins).
 * Returns 0, or -1 with err set. */
static int parse_last_event_id(struct sse_stream *x, struct lws *wsi, char *err, size_t errlen)
{
    int len = lws_hdr_custom_length(wsi, LAST_EVENT_ID, (int)strlen(LAST_EVENT_ID));
    char *text;
    int rc;

    if (len <= 0)
        return parse_since_arg(x, wsi, err, errlen);
    if ((size_t)len > sse_stream_channels(x) * (CURSOR_ENTRY_MAX + 1)) {
        snprintf(err, errlen, "Last-Event-ID is longer than any id: of this stream");
        return -1;
    }
    text = xmalloc((size_t)len + 1);
    if (lws_hdr_custom_copy(wsi, text, len + 1, LAST_EVENT_ID, (int)strlen(LAST_EVENT_ID)) != len) {
        snprintf(err, errlen, "Last-Event-ID could not be read");
        free(text);
        return -1;
    }
    rc = cursor_parse("Last-Event-ID", text, (size_t)len, sse_stream_positions(x),
                      sse_stream_channels(x), err, errlen);
    free(text);
    return rc;
}

/* The 200 and its headers: the stream has begun. Returns 0 or -1 (the socket failed). */
static int send_head(struct lws *wsi)
{
    unsigned char buf[LWS_PRE + 1024];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;
    char origin[256];
    int olen = lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN);

    /* no length: an h1 response that ends when the connection does ("connection: close") */
    if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, "text/event-stream",
                                    LWS_ILLEGAL_HTTP_CONTENT_LEN, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-cache", 8, &p, end) ||
        /* nginx and its kind would otherwise hold the stream in their buffers */
        lws_add_http_header_by_name(wsi, (const unsigned char *)"x-accel-buffering:",
                                    (const unsigned char *)"no", 2, &p, end))
        return -1;
    /* a page of another origin may read the stream when admission let its Origin in (any,
     * without --allowed-origins, as /ws): the token is in the URL, never a cookie */
    if (olen > 0 &&
        (lws_add_http_header_by_name(wsi, (const unsigned char *)"access-control-allow-origin:",
                                     (const unsigned char *)origin, olen, &p, end) ||
         lws_add_http_header_by_name(
             wsi, (const unsigned char *)"vary:", (const unsigned char *)"Origin", 6, &p, end)))
        return -1;
    return lws_finalize_write_http_header(wsi, start, &p, end) ? -1 : 0;
}

/* The response never ends on its own: no lws timeout may cut it, and it needs no header
 * table (one per connection while held). On h2 the stream is marked immortal instead. */
static void make_long_lived(struct plane *p, struct lws *wsi)
{
    unsigned timeout_ms = 2 * p->cfg->heartbeat * 1000;
    int fd = lws_get_socket_fd(wsi);

    if (lws_get_network_wsi(wsi) != wsi) {
        lws_http_mark_sse(wsi);
        return;
    }
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    lws_http_headers_detach(wsi);
    /* a peer that stops acknowledging the heartbeats is cut by the kernel, which lws sees as
     * a socket error: the SSE side of "silent for twice the heartbeat" */
    if (fd >= 0 &&
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout_ms, sizeof(timeout_ms)) < 0)
        log_warn("sse", "TCP_USER_TIMEOUT: %s", strerror(errno));
}

int sse_on_request(struct plane *p, struct conn *c, struct lws *wsi)
{
    char err[160];
    struct sse_stream *x;
    struct cursor_pos *since;
    uint32_t last, *rates;

    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
        return refuse(c, wsi, 405, "method_not_allowed", "GET /sse only", REFUSE_BAD_REQUEST);
    conn_admit(p, c, wsi, "/sse");
    switch (c->adm.verdict) {
    case ADMIT: break;
    case REFUSE_HTTP:
        return refuse(c, wsi, c->adm.status, c->adm.code, c->adm.text, c->adm.refuse_why);
    case ADMIT_THEN_CLOSE: /* an HTTP client reads a status: no need to admit then close */
        log_info("sse", "%s: %s: refused", c->adm.ip, c->adm.why);
        if (c->adm.close_why == CLOSE_ORIGIN)
            return refuse(c, wsi, 403, "forbidden", "origin not allowed", REFUSE_ORIGIN);
        return refuse(c, wsi, 401, "unauthorized", "a valid token is needed", REFUSE_AUTH);
    }
    x = parse_query(p, wsi, &last, err, sizeof(err));
    if (!x)
        return refuse(c, wsi, 400, "bad_request", err, REFUSE_BAD_REQUEST);
    rates = xmalloc(sse_stream_channels(x) * sizeof(*rates));
    if (parse_last_event_id(x, wsi, err, sizeof(err)) < 0 ||
        parse_rates(wsi, rates, sse_stream_channels(x), err, sizeof(err)) < 0) {
        free(rates);
        sse_stream_free(x);
        return refuse(c, wsi, 400, "bad_request", err, REFUSE_BAD_REQUEST);
    }
    if (send_head(wsi) < 0) {
        free(rates);
        sse_stream_free(x);
        admission_release(&c->adm);
        return -1;
    }
    make_long_lived(p, wsi);

    c->sse = x;
    conn_open(p, c, wsi);
    session_set_listen_only(c->s);
    conn_welcome(p, c);
    metrics_gauge_add(&metrics.sse_connections, 1);
    log_debug("sse", "conn %llu: stream of %u channels on plane %u from %s",
              (unsigned long long)c->id, sse_stream_channels(x), p->index, c->adm.ip);
    since = sse_stream_positions(x);
    for (uint32_t i = 0; i < sse_stream_channels(x); i++) {
        size_t len;
        const char *name = sse_stream_channel(x, i, &len);

        conn_join_listed(p, c, name, len, last, since[i].epoch[0] ? &since[i] : NULL, rates[i]);
    }
    free(rates);
    return 0;
}

/* The last words of a stream: a comment, or on an unnamed stream (which an EventSource reads
 * through: it hides comments) an event {"type":"close","code":N,"reason":"..."}, which
 * herald.js takes as a WebSocket's close code (1001: reconnect at once). */
static int last_words(struct conn *c, char *out, size_t cap)
{
    unsigned code = session_close_code(c->s);
    const char *reason = session_close_reason(c->s);
    json_t *o;
    size_t n;

    if (!sse_stream_is_unnamed(c->sse))
        return snprintf(out, cap, ": close %u %s\n\n", code, reason);
    o = json_pack("{s:s, s:I, s:s}", "type", "close", "code", (json_int_t)code, "reason",
                  reason ? reason : "");
    n = o ? json_dumpb(o, out + 6, cap - 8, JSON_COMPACT) : 0;
    json_decref(o);
    if (!n || n > cap - 8)
        return -1;
    memcpy(out, "data: ", 6);
    memcpy(out + 6 + n, "\n\n", 2);
    return (int)(n + 8);
}

int sse_end(struct conn *c)
{
    unsigned char buf[LWS_PRE + 256];
    char *line = (char *)buf + LWS_PRE;
    int n = last_words(c, line, 256);

    if (n > 0 && n < 256) /* LWS_WRITE_HTTP_FINAL: on h2 it ends the stream */
        lws_write(c->wsi, (unsigned char *)line, (size_t)n, LWS_WRITE_HTTP_FINAL);
    return -1;
}
