/* http.c -- the API's HTTP/1.1 server: sockets, buffers, the order of answers, deadlines.
 * Parsing is http_parse.c's. Each connection reads into one buffer and walks it: a complete
 * head becomes a request (owning a copy of its head and its body, since an answer may come
 * later than the buffer lives: a publish waits for the broker); the handler sees the head
 * before any body byte is read, and may refuse it then. Requests queue on their connection
 * and their answers leave in that order, several per write() when they are ready together.
 * At most PIPELINE_MAX requests wait per connection; past that the connection is not read.
 * One timer per connection holds its one deadline: a request being received must be whole
 * within request_ms, output must make progress within request_ms, and an idle keep-alive
 * connection is closed after idle_ms. A connection that goes away while its requests wait
 * for answers leaves them orphaned: answering an orphan only frees it. */
#include "http.h"

#include "common/clock.h"
#include "common/fmt.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PIPELINE_MAX 64      /* requests waiting for answers on one connection */
#define OUT_MAX (4u << 20)   /* answers not yet taken by a client: stop reading */
#define READ_CHUNK 16384     /* bytes asked of read() at a time */
#define SKIP_MAX (64u << 10) /* a refused body up to this is read and dropped */
#define LISTEN_BACKLOG 1024

enum conn_state {
    READ_HEAD,    /* waiting for (the rest of) a head */
    READ_BODY,    /* a Content-Length body for `reading` */
    READ_CHUNKED, /* a chunked body for `reading` */
    SKIP_BODY,    /* dropping the body of a request answered at its head */
    READ_NONE,    /* no more requests on this connection */
};

struct http_conn;

struct http_request {
    struct http_server *srv;
    struct http_conn *conn; /* NULL once the connection is gone (an orphan) */
    struct http_request *next;
    struct http_head head; /* points into raw */
    char *raw;             /* the head, copied */
    char *body;            /* NUL-terminated */
    size_t body_len, body_cap;
    char peer[NETADDR_STRLEN];
    bool is_answered;
    bool close_after;       /* the connection ends with this answer */
    bool is_costly_to_skip; /* answered before its body is read, the connection must end */
    char *answer;
    size_t answer_len;
    char fields_buf[256]; /* http_request_field's copy */
    void *user;
};

struct http_conn {
    struct http_server *srv;
    struct http_conn *prev, *next; /* the server's list */
    int fd;
    struct event *ev_read, *ev_write, *ev_timer;
    bool is_reading, is_writing;
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_off, out_len, out_cap;
    struct http_request *first, *last; /* waiting for or holding their answers, in order */
    size_t queued;
    struct http_request *reading; /* whose body is being read */
    enum conn_state state;
    uint64_t body_left;
    struct http_chunked chunked;
    int64_t started_ms; /* monotonic: a request's first byte (0: none in progress) */
    int64_t active_ms;  /* monotonic: the last read or write progress */
    bool is_walking;    /* inside walk(): answers wait for one flush at its end */
    bool is_closing;    /* close once the output is written */
    char peer[NETADDR_STRLEN];
};

struct http_server {
    struct event_base *base;
    struct http_conn *dead; /* closed, freed at the next callback from the loop */
    struct evconnlistener *listener;
    struct http_limits lim;
    http_head_fn *on_head;
    http_request_fn *on_request;
    void *arg;
    struct http_conn *conns;
    unsigned n_conns;
    time_t date_s; /* the second date_hdr was written for */
    char date_hdr[64];
};

static void conn_close(struct http_conn *c);
static void flush(struct http_conn *c);
static void walk(struct http_conn *c);
static void arm_timer(struct http_conn *c);
static void reap(struct http_server *s);

/* --- answers --------------------------------------------------------------------------- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static const char *date_header(struct http_server *s)
{
    time_t now = time(NULL);
    struct tm tm;

    if (now != s->date_s) {
        s->date_s = now;
        gmtime_r(&now, &tm);
        strftime(s->date_hdr, sizeof(s->date_hdr), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    }
    return s->date_hdr;
}

static void out_append(struct http_conn *c, const char *p, size_t n)
{
    if (c->out_off && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + n > c->out_cap) {
        if (c->out_off) { /* slide what is left to the front first */
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_len + n > c->out_cap) {
            c->out_cap = (c->out_len + n) * 2;
            c->out = xrealloc(c->out, c->out_cap);
        }
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

static void request_free(struct http_request *rq)
{
    free(rq->raw);
    free(rq->body);
    free(rq->answer);
    free(rq);
}

/* Moves the answers at the front of the queue to the output, in order. */
static void release_answers(struct http_conn *c)
{
    while (c->first && c->first->is_answered) {
        struct http_request *rq = c->first;

        c->first = rq->next;
        if (!c->first)
            c->last = NULL;
        c->queued--;
        out_append(c, rq->answer, rq->answer_len);
        if (rq->close_after) {
            c->is_closing = true;
            c->state = READ_NONE;
        }
        if (c->reading == rq) /* answered at its head while its body is skipped */
            c->reading = NULL;
        request_free(rq);
        if (c->is_closing) { /* nothing after a closing answer is sent */
            while (c->first) {
                struct http_request *rest = c->first;

                c->first = rest->next;
                rest->conn = NULL; /* an orphan: its answer frees it */
                if (rest->is_answered)
                    request_free(rest);
            }
            c->last = NULL;
            c->queued = 0;
        }
    }
}

void http_respond(struct http_request *rq, int status, const char *extra_headers,
                  const char *content_type, const char *body, size_t len)
{
    struct http_conn *c = rq->conn;
    const char *date, *connection;
    char *p;
    size_t cap;
    bool head_only = rq->head.method == HTTP_HEAD;

    if (rq->is_answered)
        return;
    rq->is_answered = true;
    if (!c) { /* the client has gone */
        request_free(rq);
        return;
    }
    if (rq->head.wants_close || (c->reading == rq && rq->is_costly_to_skip))
        rq->close_after = true;
    if (!content_type)
        content_type = "text/plain";
    date = date_header(rq->srv);
    connection = rq->close_after                  ? "Connection: close\r\n"
                 : rq->head.minor == 0 && rq->raw ? "Connection: keep-alive\r\n"
                                                  : "";
    cap = 160 + strlen(date) + strlen(content_type) + (extra_headers ? strlen(extra_headers) : 0) +
          (head_only ? 0 : len);
    p = rq->answer = xmalloc(cap);
    p = fmt_str(p, "HTTP/1.1 ");
    p = fmt_dec(p, (uint64_t)status);
    *p++ = ' ';
    p = fmt_str(p, reason_phrase(status)); /* at most 31 bytes */
    p = fmt_str(p, "\r\n");
    p = fmt_str(p, date);
    p = fmt_str(p, "Content-Type: ");
    p = fmt_str(p, content_type);
    p = fmt_str(p, "\r\nContent-Length: ");
    p = fmt_dec(p, len);
    p = fmt_str(p, "\r\n");
    p = fmt_str(p, connection); /* at most 24 bytes */
    if (extra_headers)
        p = fmt_str(p, extra_headers);
    p = fmt_str(p, "\r\n");
    if (!head_only && len)
        p = fmt_mem(p, body, len);
    rq->answer_len = (size_t)(p - rq->answer);
    release_answers(c);
    if (!c->is_walking)
        flush(c);
}

void http_respond_error(struct http_request *rq, int status, const char *code, const char *text,
                        const char *extra_headers)
{
    json_t *o = json_pack("{s:s,s:s}", "error", code, "message", text);
    char *s = json_dumps(o, JSON_COMPACT);
    size_t n;

    if (!s)
        xalloc_fail(0);
    n = strlen(s);
    s = xrealloc(s, n + 2);
    s[n++] = '\n';
    s[n] = '\0';
    http_respond(rq, status, extra_headers, "application/json", s, n);
    free(s);
    json_decref(o);
}

/* --- requests ------------------------------------------------------------------------------ */

const struct http_head *http_request_head(const struct http_request *rq)
{
    return &rq->head;
}

const char *http_request_field(struct http_request *rq, const char *name)
{
    size_t len;
    const char *v = http_head_field(&rq->head, name, &len);

    if (!v)
        return NULL;
    if (len >= sizeof(rq->fields_buf))
        len = sizeof(rq->fields_buf) - 1;
    memcpy(rq->fields_buf, v, len);
    rq->fields_buf[len] = '\0';
    return rq->fields_buf;
}

const char *http_request_fields(struct http_request *rq, const char *name, char *out, size_t cap,
                                bool *too_long)
{
    size_t n = 0, nlen = strlen(name);

    *too_long = false;
    for (size_t i = 0; i < rq->head.n_fields; i++) {
        const struct http_field *f = &rq->head.fields[i];

        if (f->name.len != nlen || strncasecmp(f->name.p, name, nlen) != 0)
            continue;
        if (n + f->value.len + 2 > cap) {
            *too_long = true;
            return NULL;
        }
        if (n)
            out[n++] = ',';
        memcpy(out + n, f->value.p, f->value.len);
        n += f->value.len;
    }
    if (cap)
        out[n] = '\0';
    return n ? out : NULL;
}

const char *http_request_body(const struct http_request *rq, size_t *len)
{
    *len = rq->body_len;
    return rq->body ? rq->body : "";
}

const char *http_request_peer(const struct http_request *rq)
{
    return rq->peer;
}

bool http_request_is_gone(const struct http_request *rq)
{
    return rq->conn == NULL;
}

void http_request_set_user(struct http_request *rq, void *user)
{
    rq->user = user;
}

void *http_request_user(const struct http_request *rq)
{
    return rq->user;
}

/* A request the server answers itself (a malformed head, a timeout): it ends the connection. */
static void refuse(struct http_conn *c, int status, const char *code, const char *text,
                   enum api_refuse_reason why)
{
    struct http_request *rq = xcalloc(1, sizeof(*rq));

    metrics_add(&metrics.api_refused[why], 1);
    rq->srv = c->srv;
    rq->conn = c;
    rq->close_after = true;
    snprintf(rq->peer, sizeof(rq->peer), "%s", c->peer);
    if (c->last)
        c->last->next = rq;
    else
        c->first = rq;
    c->last = rq;
    c->queued++;
    c->state = READ_NONE;
    c->started_ms = 0;
    http_respond_error(rq, status, code, text, NULL);
}

static void move_span(struct http_span *sp, const char *from, size_t len, const char *to)
{
    if (sp->p && sp->p >= from && sp->p <= from + len)
        sp->p = to + (sp->p - from);
}

/* Takes the parsed head (h, head_len bytes at the front of the input) as a new request. */
static struct http_request *take_head(struct http_conn *c, const struct http_head *h)
{
    struct http_request *rq = xcalloc(1, sizeof(*rq));

    rq->srv = c->srv;
    rq->conn = c;
    rq->raw = xmalloc(h->head_len);
    memcpy(rq->raw, c->in, h->head_len);
    rq->head = *h;
    /* the head's spans point into the input buffer: move them to the copy (the literal "/"
     * of an empty path points nowhere near it and stays) */
    move_span(&rq->head.target, c->in, h->head_len, rq->raw);
    move_span(&rq->head.path, c->in, h->head_len, rq->raw);
    move_span(&rq->head.query, c->in, h->head_len, rq->raw);
    for (size_t i = 0; i < rq->head.n_fields; i++) {
        move_span(&rq->head.fields[i].name, c->in, h->head_len, rq->raw);
        move_span(&rq->head.fields[i].value, c->in, h->head_len, rq->raw);
    }
    snprintf(rq->peer, sizeof(rq->peer), "%s", c->peer);
    if (c->last)
        c->last->next = rq;
    else
        c->first = rq;
    c->last = rq;
    c->queued++;
    return rq;
}

static void consume(struct http_conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* The whole request is in: hand it to the handler. */
static void complete(struct http_conn *c, struct http_request *rq)
{
    c->reading = NULL;
    c->state = rq->head.wants_close ? READ_NONE : READ_HEAD;
    c->started_ms = c->in_len ? clock_mono_ms() : 0; /* the next request began already */
    rq->body = rq->body ? rq->body : xcalloc(1, 1);
    rq->body[rq->body_len] = '\0';
    c->srv->on_request(rq, c->srv->arg);
}

/* One head from the input, if complete. Returns false when more input is needed or the
 * connection takes no more requests. */
static bool walk_head(struct http_conn *c)
{
    struct http_server *s = c->srv;
    struct http_head h;
    struct http_request *rq;

    if (!c->in_len)
        return false;
    if (!c->started_ms)
        c->started_ms = clock_mono_ms();
    switch (http_parse_head(c->in, c->in_len, s->lim.max_head_bytes, &h)) {
    case HTTP_PARSE_MORE: return false;
    case HTTP_PARSE_OK: break;
    case HTTP_PARSE_TOO_LONG:
        refuse(c, 431, "bad_request", "the request head is too long", API_REFUSE_BAD_REQUEST);
        return false;
    case HTTP_PARSE_VERSION:
        refuse(c, 505, "bad_request", "only HTTP/1.0 and HTTP/1.1", API_REFUSE_BAD_REQUEST);
        return false;
    case HTTP_PARSE_UNSUPPORTED:
        refuse(c, 501, "bad_request", "only the chunked transfer coding", API_REFUSE_BAD_REQUEST);
        return false;
    case HTTP_PARSE_BAD:
        refuse(c, 400, "bad_request", "malformed HTTP request", API_REFUSE_BAD_REQUEST);
        return false;
    }
    rq = take_head(c, &h);
    consume(c, h.head_len);
    c->reading = rq;
    /* a body not worth reading just to drop it: a refusal now ends the connection */
    rq->is_costly_to_skip =
        h.is_chunked || h.expects_continue || (h.has_length && h.content_length > SKIP_MAX);
    s->on_head(rq, s->arg);
    if (c->reading == rq && !rq->is_answered && h.has_length &&
        h.content_length > s->lim.max_body_bytes) {
        char text[96];

        snprintf(text, sizeof(text), "the body is %llu bytes; the limit is %zu",
                 (unsigned long long)h.content_length, s->lim.max_body_bytes);
        metrics_add(&metrics.publish_errors, h.method == HTTP_POST);
        http_respond_error(rq, 413, "too_large", text, NULL);
    }
    if (c->reading != rq || rq->is_answered) { /* refused at its head (rq may be gone) */
        if (c->state == READ_NONE)             /* the answer ended the connection */
            return false;
        c->reading = NULL;
        c->body_left = h.has_length ? h.content_length : 0;
        c->state = c->body_left ? SKIP_BODY : READ_HEAD;
        if (!c->body_left)
            c->started_ms = 0;
        return true;
    }
    if (h.is_chunked) {
        http_chunked_init(&c->chunked);
        c->state = READ_CHUNKED;
    } else if (h.has_length && h.content_length) {
        rq->body_cap = (size_t)h.content_length + 1;
        rq->body = xmalloc(rq->body_cap);
        c->body_left = h.content_length;
        c->state = READ_BODY;
    } else {
        complete(c, rq);
        return true;
    }
    if (h.expects_continue && c->first == rq) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

        out_append(c, cont, sizeof(cont) - 1);
    }
    return true;
}

/* Works through the input: heads, bodies, bodies to skip. */
static void walk(struct http_conn *c)
{
    struct http_server *s = c->srv;

    c->is_walking = true;
    while (c->fd >= 0 && c->queued < PIPELINE_MAX) {
        if (c->state == READ_HEAD) {
            if (!walk_head(c))
                break;
        } else if (c->state == READ_BODY || c->state == SKIP_BODY) {
            size_t n = c->in_len < c->body_left ? c->in_len : (size_t)c->body_left;

            if (!n)
                break;
            if (c->state == READ_BODY) {
                memcpy(c->reading->body + c->reading->body_len, c->in, n);
                c->reading->body_len += n;
            }
            consume(c, n);
            c->body_left -= n;
            if (c->body_left)
                break;
            if (c->state == READ_BODY) {
                complete(c, c->reading);
            } else {
                c->state = READ_HEAD;
                c->started_ms = c->in_len ? clock_mono_ms() : 0;
            }
        } else if (c->state == READ_CHUNKED) {
            struct http_request *rq = c->reading;
            size_t used = 0;
            enum http_parse_result r;

            if (!c->in_len)
                break;
            if (!rq->body) {
                rq->body_cap = s->lim.max_body_bytes + 1;
                rq->body = xmalloc(rq->body_cap);
            }
            r = http_chunked_feed(&c->chunked, c->in, c->in_len, &used, rq->body, &rq->body_len,
                                  s->lim.max_body_bytes);
            consume(c, used);
            if (r == HTTP_PARSE_MORE)
                break;
            if (r == HTTP_PARSE_OK) {
                complete(c, rq);
                continue;
            }
            c->reading = NULL;
            rq->close_after = true;
            c->state = READ_NONE;
            if (r == HTTP_PARSE_TOO_LONG) {
                char text[96];

                snprintf(text, sizeof(text), "the body passes the limit of %zu bytes",
                         s->lim.max_body_bytes);
                metrics_add(&metrics.publish_errors, rq->head.method == HTTP_POST);
                http_respond_error(rq, 413, "too_large", text, NULL);
            } else {
                metrics_add(&metrics.api_refused[API_REFUSE_BAD_REQUEST], 1);
                http_respond_error(rq, 400, "bad_request", "malformed chunked body", NULL);
            }
            break;
        } else {
            break;
        }
    }
    c->is_walking = false;
    if (c->fd >= 0)
        flush(c);
}

/* --- sockets ------------------------------------------------------------------------------- */

static void set_reading(struct http_conn *c, bool on)
{
    if (on == c->is_reading)
        return;
    c->is_reading = on;
    if (on)
        event_add(c->ev_read, NULL);
    else
        event_del(c->ev_read);
}

static void set_writing(struct http_conn *c, bool on)
{
    if (on == c->is_writing)
        return;
    c->is_writing = on;
    if (on)
        event_add(c->ev_write, NULL);
    else
        event_del(c->ev_write);
}

/* Writes what is pending; then decides whether to read on, and the deadline. */
static void flush(struct http_conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            conn_close(c);
            return;
        }
        c->out_off += (size_t)n;
        c->active_ms = clock_mono_ms();
    }
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    set_writing(c, c->out_len > 0);
    if (c->is_closing && !c->out_len && !c->first) {
        conn_close(c);
        return;
    }
    set_reading(c, c->state != READ_NONE && c->queued < PIPELINE_MAX && c->out_len < OUT_MAX);
    arm_timer(c);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    ssize_t n;

    (void)what;
    reap(c->srv);
    if (c->in_cap - c->in_len < READ_CHUNK) {
        size_t limit = c->srv->lim.max_head_bytes + READ_CHUNK * 2;

        if (c->in_len >= limit) { /* a head that will not end: http_parse_head says so */
            walk(c);
            return;
        }
        c->in_cap = c->in_len + READ_CHUNK;
        c->in = xrealloc(c->in, c->in_cap);
    }
    n = read(fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) { /* the client closed (or reset): its waiting requests become orphans */
        conn_close(c);
        return;
    }
    c->in_len += (size_t)n;
    c->active_ms = clock_mono_ms();
    walk(c);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;

    (void)fd;
    (void)what;
    reap(c->srv);
    flush(c);
}

/* The one deadline of a connection: a request coming in, output going out, or idleness. */
static void arm_timer(struct http_conn *c)
{
    const struct http_limits *lim = &c->srv->lim;
    int64_t now = clock_mono_ms(), due;
    struct timeval tv;

    if (c->out_len)
        due = c->active_ms + lim->request_ms;
    else if (c->started_ms)
        due = c->started_ms + lim->request_ms;
    else if (!c->first)
        due = c->active_ms + lim->idle_ms;
    else
        due = 0; /* waiting for our own answers: they will come */
    if (!due) {
        event_del(c->ev_timer);
        return;
    }
    due = due > now ? due - now : 0;
    tv.tv_sec = due / 1000;
    tv.tv_usec = (due % 1000) * 1000;
    event_add(c->ev_timer, &tv);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    int64_t now = clock_mono_ms();
    const struct http_limits *lim = &c->srv->lim;

    (void)fd;
    (void)what;
    reap(c->srv);
    if (c->out_len) {
        if (now - c->active_ms >= lim->request_ms) {
            metrics_add(&metrics.api_refused[API_REFUSE_TIMEOUT], 1);
            conn_close(c); /* a client that does not take its answers */
            return;
        }
    } else if (c->started_ms && c->state != READ_NONE) {
        if (now - c->started_ms >= lim->request_ms) {
            if (c->reading) { /* answer the request whose body is late */
                struct http_request *rq = c->reading;

                c->reading = NULL;
                c->state = READ_NONE;
                rq->close_after = true;
                metrics_add(&metrics.api_refused[API_REFUSE_TIMEOUT], 1);
                http_respond_error(rq, 408, "timeout", "the request was not sent in time", NULL);
            } else {
                refuse(c, 408, "timeout", "the request was not sent in time", API_REFUSE_TIMEOUT);
                flush(c);
            }
            return;
        }
    } else if (!c->first && now - c->active_ms >= lim->idle_ms) {
        conn_close(c);
        return;
    }
    arm_timer(c);
}

static void conn_close(struct http_conn *c)
{
    struct http_server *s = c->srv;

    if (c->fd < 0)
        return;
    while (c->first) { /* waiting requests become orphans; answered ones go */
        struct http_request *rq = c->first;

        c->first = rq->next;
        rq->conn = NULL;
        if (rq->is_answered)
            request_free(rq);
    }
    c->last = NULL;
    event_free(c->ev_read);
    event_free(c->ev_write);
    event_free(c->ev_timer);
    close(c->fd);
    c->fd = -1;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
    metrics_gauge_add(&metrics.api_connections, -1);
    free(c->in);
    free(c->out);
    c->in = c->out = NULL;
    /* walk() or flush() may still be on the stack: the struct goes at the next callback */
    c->next = s->dead;
    s->dead = c;
}

/* Frees closed connections. Only from the loop's own callbacks, where none is on the stack. */
static void reap(struct http_server *s)
{
    while (s->dead) {
        struct http_conn *c = s->dead;

        s->dead = c->next;
        free(c);
    }
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct http_server *s = arg;
    struct http_conn *c;
    char raw[NETADDR_STRLEN] = "";
    int one = 1;

    (void)l;
    (void)salen;
    reap(s);
    if (s->n_conns >= s->lim.max_connections) {
        static const char body[] =
            "{\"error\":\"unavailable\",\"message\":\"too many connections to the API\"}\n";
        char full[256];
        int n = snprintf(full, sizeof(full),
                         "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s",
                         sizeof(body) - 1, body);

        metrics_add(&metrics.api_refused[API_REFUSE_CAPACITY], 1);
        if (write(fd, full, (size_t)n) < 0) {
            /* nothing more to do: it is closed either way */
        }
        close(fd);
        return;
    }
    c = xcalloc(1, sizeof(*c));
    c->srv = s;
    c->fd = fd;
    c->state = READ_HEAD;
    c->active_ms = clock_mono_ms();
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, raw, sizeof(raw));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, raw, sizeof(raw));
    if (netaddr_normalize(raw, strlen(raw), c->peer) < 0)
        snprintf(c->peer, sizeof(c->peer), "%s", raw[0] ? raw : "unknown");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->ev_read = event_new(s->base, fd, EV_READ | EV_PERSIST, on_readable, c);
    c->ev_write = event_new(s->base, fd, EV_WRITE | EV_PERSIST, on_writable, c);
    c->ev_timer = evtimer_new(s->base, on_timer, c);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    metrics_gauge_add(&metrics.api_connections, 1);
    set_reading(c, true);
    arm_timer(c);
}

struct http_server *http_server_new(struct event_base *base, const char *host, unsigned port,
                                    const struct http_limits *lim, http_head_fn *on_head,
                                    http_request_fn *on_request, void *arg, char *err,
                                    size_t errlen)
{
    struct http_server *s = xcalloc(1, sizeof(*s));
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    char addr[300];

    s->base = base;
    s->lim = *lim;
    s->on_head = on_head;
    s->on_request = on_request;
    s->arg = arg;
    snprintf(addr, sizeof(addr), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
    if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sslen) < 0) {
        snprintf(err, errlen, "--api-listen: '%s' is not a numeric address", host);
        free(s);
        return NULL;
    }
    s->listener = evconnlistener_new_bind(
        base, on_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        LISTEN_BACKLOG, (struct sockaddr *)&ss, sslen);
    if (!s->listener) {
        snprintf(err, errlen, "--api-listen: cannot listen on %s:%u (%s)", host, port,
                 strerror(errno));
        free(s);
        return NULL;
    }
    return s;
}

void http_server_free(struct http_server *s)
{
    if (!s)
        return;
    if (s->listener)
        evconnlistener_free(s->listener);
    while (s->conns)
        conn_close(s->conns); /* unlinks it */
    reap(s);
    free(s);
}

unsigned http_server_connections(const struct http_server *s)
{
    return s->n_conns;
}
