/* bench_sub.c -- the subscriber threads of herald-bench.
 * Each thread owns a slice of the group's connections and one level-triggered epoll set; no
 * connection is ever touched by two threads, so nothing here takes a lock on the hot path.
 * A connection goes IDLE -> CONNECTING -> HANDSHAKE -> OPEN -> DONE; it is "pending" from its
 * connect() until its "subscribed" (or its failure), and a thread keeps at most MAX_PENDING
 * pending so that a connect burst cannot overflow the hub's listen backlog.
 *
 * Reads go into the thread's buffer, which is parsed in place; the tail of an unfinished
 * frame is kept on the connection (usually a few hundred bytes) and put back in front of the
 * next read. Event frames are not parsed as JSON: ws_scan_event() pulls "t" and "s", and the
 * latency (receive time minus "t", both CLOCK_REALTIME microseconds, one clock read per read)
 * goes into the thread's histograms. Counters are single-writer atomics, so the progress line
 * can read them while the threads run. With --verify each connection also keeps a bitmap of the
 * "s" it received (bench_seqset.c), which outlives the connection until sub_group_verify(). What
 * the group leaves to others: the publisher, the expected counts and loss (herald-bench.c knows
 * what was published). */
#include "bench_sub.h"

#include "bench_util.h"
#include "bench_ws.h"
#include "client_util.h"
#include "http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <unistd.h>

#define MAX_PENDING 256         /* per thread: connect() issued, "subscribed" not yet seen */
#define RBUF_BYTES (256 * 1024) /* one read; grows for a larger frame */
#define MAX_FRAME (64u << 20)   /* a frame larger than this ends the connection */
#define HANDSHAKE_MAX 8192      /* the hub's 101 answer must fit */
#define EPOLL_BATCH 512
#define IDLE_WAIT_MS 50 /* how often an idle thread looks at the stop flag */

_Static_assert(sizeof(struct sub_counters) % sizeof(uint64_t) == 0, "counters are all uint64_t");
#define N_CTR (sizeof(struct sub_counters) / sizeof(uint64_t))
#define CTR(field) (offsetof(struct sub_counters, field) / sizeof(uint64_t))

enum conn_state { CONN_IDLE, CONN_CONNECTING, CONN_HANDSHAKE, CONN_OPEN, CONN_DONE };

struct conn {
    int fd;
    uint8_t state; /* enum conn_state */
    bool is_subscribed;
    bool is_pending;      /* counted in its thread's pending */
    bool is_want_out;     /* EPOLLOUT is in the epoll mask */
    bool is_open_at_stop; /* --verify: still open when the group stopped */
    uint8_t frag_op;      /* opcode of the fragmented message being gathered; 0 when none */
    uint32_t gidx;        /* global subscriber index: picks the channel and the source address */
    uint8_t *in;          /* the handshake answer, then the tail of an unfinished frame */
    uint32_t in_len, in_cap;
    uint8_t *out; /* bytes the socket has not taken yet: handshake, pong, close */
    uint32_t out_len, out_off, out_cap;
    uint8_t *frag; /* a fragmented message, gathered */
    uint32_t frag_len, frag_cap;
    char key[WS_KEY_LEN + 1];
    struct seqset seen; /* --verify: the "s" received; kept after the connection ends */
};

struct sub_thread {
    struct sub_group *g;
    unsigned index;
    pthread_t tid;
    bool is_started;
    int ep;
    struct conn *conns; /* [0, n); [0, next) started */
    uint32_t n, next;
    uint32_t pending;
    int64_t t0_ns; /* CLOCK_MONOTONIC, when connecting began */
    uint8_t *rbuf;
    size_t rcap;
    uint64_t rng;
    _Alignas(64) _Atomic uint64_t ctr[N_CTR]; /* {owner thread writes}: struct sub_counters */
    struct hist_live live;                    /* {owner thread writes} */
    struct hist meas;                         /* owner thread only; read after it ends */
};

struct sub_group {
    struct sub_config cfg;
    struct sub_thread **th;
    unsigned n_threads;
    atomic_bool stop;
    bool is_stopped;
    _Atomic int64_t win_start, win_end; /* CLOCK_REALTIME us; start INT64_MAX until set */
    struct first_error err;
};

/* --- small helpers ------------------------------------------------------------------------- */

static void ctr_add(struct sub_thread *th, size_t i, uint64_t n)
{
    counter_add(&th->ctr[i], n);
}

static void ctr_sub(struct sub_thread *th, size_t i, uint64_t n)
{
    counter_sub(&th->ctr[i], n);
}

/* Makes room for need bytes in *buf (capacity *cap). Returns 0 or -1 (out of memory). */
static int reserve(uint8_t **buf, uint32_t *cap, size_t need)
{
    size_t n = *cap ? *cap : 256;
    uint8_t *p;

    if (need <= *cap)
        return 0;
    while (n < need)
        n *= 2;
    if (n > UINT32_MAX)
        return -1;
    p = realloc(*buf, n);
    if (!p)
        return -1;
    *buf = p;
    *cap = (uint32_t)n;
    return 0;
}

static void set_events(struct sub_thread *th, struct conn *c, bool want_out)
{
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};

    if (c->is_want_out == want_out)
        return;
    c->is_want_out = want_out;
    epoll_ctl(th->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* --- ending a connection -------------------------------------------------------------------- */

static void conn_release(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->in);
    free(c->out);
    free(c->frag);
    c->in = c->out = c->frag = NULL;
    c->in_len = c->in_cap = c->out_len = c->out_off = c->out_cap = 0;
    c->frag_len = c->frag_cap = 0;
    c->state = CONN_DONE;
}

/* Ends c; slot is the close slot when it was open (SUB_CLOSE_SLOTS: none, it never opened).
 * A connection that ends before its "subscribed" is a failure of the connect phase, with why
 * as its reason. */
static void conn_end(struct sub_thread *th, struct conn *c, unsigned slot, const char *why)
{
    if (c->state == CONN_DONE)
        return;
    if (c->state == CONN_OPEN) {
        ctr_sub(th, CTR(open_now), 1);
        if (slot < SUB_CLOSE_SLOTS)
            ctr_add(th, CTR(closes) + slot, 1);
    }
    if (!c->is_subscribed) {
        ctr_add(th, CTR(failed), 1);
        first_error_set(&th->g->err, "subscriber %u: %s", (unsigned)c->gidx, why);
    }
    if (c->is_pending) {
        c->is_pending = false;
        th->pending--;
    }
    conn_release(c);
}

static unsigned close_slot(unsigned code)
{
    return code >= 1000 && code < 1000 + SUB_CLOSE_CODES ? code - 1000 : SUB_CLOSE_OTHER;
}

/* --- writing -------------------------------------------------------------------------------- */

/* Sends what c->out holds. Returns 0 (all sent, or the rest waits for EPOLLOUT) or -1 (the
 * connection failed: the caller ends it). */
static int flush_out(struct sub_thread *th, struct conn *c)
{
    size_t off = c->out_off;
    int rc = http_write_some(c->fd, (const char *)c->out, c->out_len, &off);

    c->out_off = (uint32_t)off;
    if (rc < 0)
        return -1;
    if (off < c->out_len) {
        set_events(th, c, true);
        return 0;
    }
    c->out_off = c->out_len = 0;
    set_events(th, c, false);
    return 0;
}

/* Queues a masked control frame and tries to send it. Returns as flush_out. */
static int send_control(struct sub_thread *th, struct conn *c, enum ws_opcode op,
                        const void *payload, size_t len)
{
    if (reserve(&c->out, &c->out_cap, c->out_len + len + WS_MAX_HEADER) < 0)
        return -1;
    c->out_len += (uint32_t)ws_build_frame(c->out + c->out_len, op, payload, len,
                                           (uint32_t)client_xorshift(&th->rng));
    return flush_out(th, c);
}

/* --- connecting ----------------------------------------------------------------------------- */

static void start_one(struct sub_thread *th)
{
    const struct sub_config *cfg = &th->g->cfg;
    struct conn *c = &th->conns[th->next++];
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    uint64_t r[2] = {client_xorshift(&th->rng), client_xorshift(&th->rng)};
    const struct sockaddr_in *src = cfg->n_src ? &cfg->src[c->gidx % cfg->n_src] : NULL;
    const char *step;
    char chan[160], req[1024], why[128];
    int len;

    ctr_add(th, CTR(started), 1);
    c->is_pending = true;
    th->pending++;
    /* from src, every source address gets the whole ephemeral port range */
    c->fd = http_connect_start((const struct sockaddr *)&cfg->dst, cfg->dst_len, src, &step);
    if (c->fd < 0) {
        int e = errno;

        if (!strcmp(step, "socket")) {
            snprintf(why, sizeof(why), "%s",
                     e == EMFILE || e == ENFILE
                         ? "socket: out of file descriptors (RLIMIT_NOFILE): use --procs"
                         : strerror(e));
        } else if (!strcmp(step, "bind")) {
            char ip[INET_ADDRSTRLEN];

            inet_ntop(AF_INET, &src->sin_addr, ip, sizeof(ip));
            snprintf(why, sizeof(why), "bind to %s: %s", ip, strerror(e));
        } else {
            snprintf(why, sizeof(why), "connect: %s%s", strerror(e),
                     e == EADDRNOTAVAIL ? " (no local port left: use --source-ips)" : "");
        }
        conn_end(th, c, SUB_CLOSE_SLOTS, why);
        return;
    }
    c->state = CONN_CONNECTING;
    ws_make_key(c->key, (const uint8_t *)r);
    channel_name(cfg->channel, cfg->channels,
                 cfg->channels > 1 ? (unsigned)(c->gidx % cfg->channels) : 0, chan, sizeof(chan));
    len = snprintf(req, sizeof(req),
                   "GET %s%c%s=%s HTTP/1.1\r\n"
                   "Host: %s\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                   "\r\n",
                   cfg->path, strchr(cfg->path, '?') ? '&' : '?', cfg->is_nchan ? "id" : "channels",
                   chan, cfg->host, c->key);
    if (len < 0 || (size_t)len >= sizeof(req) || reserve(&c->out, &c->out_cap, (size_t)len) < 0) {
        conn_end(th, c, SUB_CLOSE_SLOTS, "handshake request too long");
        return;
    }
    memcpy(c->out, req, (size_t)len);
    c->out_len = (uint32_t)len;
    c->out_off = 0;
    c->is_want_out = true;
    if (epoll_ctl(th->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        conn_end(th, c, SUB_CLOSE_SLOTS, strerror(errno));
}

/* Starts what the pace and the pending cap allow. Returns the epoll timeout to use (ms). */
static int start_some(struct sub_thread *th)
{
    double rate = th->g->cfg.connect_rate / th->g->n_threads;
    uint64_t allowed = UINT64_MAX;

    if (th->next >= th->n)
        return IDLE_WAIT_MS;
    if (rate > 0)
        allowed = (uint64_t)(rate * (double)(client_mono_ns() - th->t0_ns) / 1e9) + 1;
    while (th->next < th->n && th->pending < MAX_PENDING && th->next < allowed)
        start_one(th);
    return th->next < th->n ? 1 : IDLE_WAIT_MS;
}

static void consume(struct sub_thread *th, struct conn *c, size_t len, int64_t now);
static void on_subscribed(struct sub_thread *th, struct conn *c);

static void on_connected(struct sub_thread *th, struct conn *c)
{
    int err = http_connect_result(c->fd);
    char why[160];

    if (err) {
        snprintf(why, sizeof(why), "connect: %s%s", strerror(err),
                 err == ECONNREFUSED ? " (is the hub listening on --ws?)" : "");
        conn_end(th, c, SUB_CLOSE_SLOTS, why);
        return;
    }
    c->state = CONN_HANDSHAKE;
    if (flush_out(th, c) < 0)
        conn_end(th, c, SUB_CLOSE_SLOTS, "handshake: send failed");
}

static void read_handshake(struct sub_thread *th, struct conn *c)
{
    char accept[WS_ACCEPT_LEN + 1], got[128], why[SUB_ERROR_LEN];
    const char *h, *end;
    size_t hlen, rest;
    ssize_t n;

    if (reserve(&c->in, &c->in_cap, HANDSHAKE_MAX) < 0) {
        conn_end(th, c, SUB_CLOSE_SLOTS, "out of memory");
        return;
    }
    n = recv(c->fd, c->in + c->in_len, HANDSHAKE_MAX - 1 - c->in_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        snprintf(why, sizeof(why), "handshake: %s",
                 n == 0 ? "the hub closed the connection" : strerror(errno));
        conn_end(th, c, SUB_CLOSE_SLOTS, why);
        return;
    }
    c->in_len += (uint32_t)n;
    c->in[c->in_len] = '\0';
    h = (const char *)c->in;
    end = memmem(h, c->in_len, "\r\n\r\n", 4);
    if (!end) {
        if (c->in_len >= HANDSHAKE_MAX - 1)
            conn_end(th, c, SUB_CLOSE_SLOTS, "handshake: answer too long");
        return;
    }
    hlen = (size_t)(end - h) + 4;
    if (strncmp(h, "HTTP/1.1 101", 12) != 0) {
        const char *eol = memmem(h, hlen, "\r\n", 2);

        snprintf(why, sizeof(why), "handshake refused: %.*s", (int)(eol - h), h);
        conn_end(th, c, SUB_CLOSE_SLOTS, why);
        return;
    }
    ws_accept_for(c->key, accept);
    if (!http_find_header(h, hlen, "Sec-WebSocket-Accept", got, sizeof(got)) ||
        strcmp(got, accept)) {
        conn_end(th, c, SUB_CLOSE_SLOTS, "handshake: wrong or missing Sec-WebSocket-Accept");
        return;
    }
    c->state = CONN_OPEN;
    ctr_add(th, CTR(opened), 1);
    ctr_add(th, CTR(open_now), 1);
    if (th->g->cfg.is_nchan)
        on_subscribed(th, c); /* nchan subscribes before it answers 101, and says no more */
    rest = c->in_len - hlen;
    if (rest) {
        /* frames that came with the answer (the welcome, often) */
        memcpy(th->rbuf, c->in + hlen, rest);
        ctr_add(th, CTR(bytes), rest);
    }
    c->in_len = 0;
    free(c->in); /* a tail buffer, if one is ever needed, starts small */
    c->in = NULL;
    c->in_cap = 0;
    if (rest)
        consume(th, c, rest, client_wall_us());
}

/* --- receiving ------------------------------------------------------------------------------ */

static void on_subscribed(struct sub_thread *th, struct conn *c)
{
    if (c->is_subscribed)
        return;
    c->is_subscribed = true;
    ctr_add(th, CTR(subscribed), 1);
    if (c->is_pending) {
        c->is_pending = false;
        th->pending--;
    }
}

static void on_message(struct sub_thread *th, struct conn *c, const uint8_t *p, size_t len,
                       int64_t now)
{
    const char *s = (const char *)p;
    struct sub_group *g = th->g;
    char why[SUB_ERROR_LEN];

    switch (g->cfg.is_nchan ? WS_MSG_EVENT : ws_msg_type(s, len)) {
    case WS_MSG_EVENT: {
        int64_t t, lat;
        uint64_t seq;

        ctr_add(th, CTR(frames), 1);
        if (now >= atomic_load_explicit(&g->win_start, memory_order_relaxed) &&
            now < atomic_load_explicit(&g->win_end, memory_order_relaxed))
            ctr_add(th, CTR(frames_measured), 1);
        if (ws_scan_event(s, len, &t, &seq) < 0) {
            ctr_add(th, CTR(bad_events), 1);
            break;
        }
        if (g->cfg.is_verify) {
            int rc = seqset_add(&c->seen, seq);

            if (rc == 0)
                ctr_add(th, CTR(duplicates), 1);
            else if (rc < 0 &&
                     !atomic_load_explicit(&th->ctr[CTR(verify_failed)], memory_order_relaxed))
                ctr_add(th, CTR(verify_failed), 1);
        }
        lat = now - t;
        if (lat < 0)
            lat = 0;
        hist_live_record(&th->live, (uint64_t)lat);
        if (t >= atomic_load_explicit(&g->win_start, memory_order_relaxed) &&
            t < atomic_load_explicit(&g->win_end, memory_order_relaxed))
            hist_record(&th->meas, (uint64_t)lat);
        break;
    }
    case WS_MSG_SUBSCRIBED: on_subscribed(th, c); break;
    case WS_MSG_ERROR:
        if (!c->is_subscribed) {
            snprintf(why, sizeof(why), "the hub answered %.*s", (int)(len < 150 ? len : 150), s);
            conn_end(th, c, SUB_CLOSE_SLOTS, why);
        }
        break;
    case WS_MSG_WELCOME:
    case WS_MSG_OTHER: break;
    }
}

static void on_close_frame(struct sub_thread *th, struct conn *c, const uint8_t *p, size_t len)
{
    unsigned code = len >= 2 ? (unsigned)p[0] << 8 | p[1] : 1005;
    uint8_t echo[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    char why[SUB_ERROR_LEN];

    /* answer the close (best effort: the socket is closed right after) */
    send_control(th, c, WS_OP_CLOSE, echo, len >= 2 ? 2 : 0);
    snprintf(why, sizeof(why), "closed by the hub with %u %.*s", code,
             (int)(len > 2 ? (len - 2 < 120 ? len - 2 : 120) : 0), (const char *)p + 2);
    conn_end(th, c, close_slot(code), why);
}

static void on_frame(struct sub_thread *th, struct conn *c, const struct ws_frame *f, uint8_t *p,
                     size_t len, int64_t now)
{
    switch (f->opcode) {
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        if (c->frag_op) {
            conn_end(th, c, SUB_CLOSE_NO_FRAME, "protocol error: a new message inside another");
            return;
        }
        if (f->is_fin) {
            if (f->opcode == WS_OP_TEXT)
                on_message(th, c, p, len, now);
            return;
        }
        /* the first fragment: gathered like the continuations */
        c->frag_op = f->opcode;
        c->frag_len = 0;
        /* fallthrough */
    case WS_OP_CONT:
        if (!c->frag_op) {
            conn_end(th, c, SUB_CLOSE_NO_FRAME, "protocol error: a continuation out of place");
            return;
        }
        if (c->frag_len + len > MAX_FRAME ||
            reserve(&c->frag, &c->frag_cap, c->frag_len + len) < 0) {
            conn_end(th, c, SUB_CLOSE_NO_FRAME, "fragmented message too large");
            return;
        }
        memcpy(c->frag + c->frag_len, p, len);
        c->frag_len += (uint32_t)len;
        if (f->is_fin) {
            if (c->frag_op == WS_OP_TEXT)
                on_message(th, c, c->frag, c->frag_len, now);
            c->frag_op = 0;
            c->frag_len = 0;
        }
        return;
    case WS_OP_PING:
        if (send_control(th, c, WS_OP_PONG, p, len) < 0)
            conn_end(th, c, SUB_CLOSE_NO_FRAME, "send failed");
        return;
    case WS_OP_PONG: return;
    case WS_OP_CLOSE: on_close_frame(th, c, p, len); return;
    default: conn_end(th, c, SUB_CLOSE_NO_FRAME, "protocol error: unknown opcode"); return;
    }
}

/* Parses the frames in th->rbuf[0..len) for c; keeps an unfinished tail on c. */
static void consume(struct sub_thread *th, struct conn *c, size_t len, int64_t now)
{
    uint8_t *p = th->rbuf;
    size_t off = 0;

    while (c->state == CONN_OPEN && off < len) {
        struct ws_frame f;
        int hl = ws_parse_header(p + off, len - off, &f);

        if (hl < 0) {
            conn_end(th, c, SUB_CLOSE_NO_FRAME, "protocol error: bad frame header");
            return;
        }
        if (hl == 0 || len - off - (size_t)hl < f.payload_len)
            break;
        if (f.is_masked)
            ws_unmask(p + off + hl, f.payload_len, f.mask, 0);
        on_frame(th, c, &f, p + off + hl, f.payload_len, now);
        off += (size_t)hl + f.payload_len;
    }
    if (c->state != CONN_OPEN || off == len)
        return;
    if (reserve(&c->in, &c->in_cap, len - off) < 0) {
        conn_end(th, c, SUB_CLOSE_NO_FRAME, "out of memory");
        return;
    }
    memcpy(c->in, p + off, len - off);
    c->in_len = (uint32_t)(len - off);
}

static void read_frames(struct sub_thread *th, struct conn *c)
{
    size_t have = c->in_len;
    struct ws_frame f;
    ssize_t n;
    int hl;

    /* the unfinished frame, whole, must fit in the buffer after the tail */
    hl = have ? ws_parse_header(c->in, have, &f) : 0;
    if (hl > 0) {
        uint64_t total = (uint64_t)hl + f.payload_len;

        if (total > MAX_FRAME) {
            conn_end(th, c, SUB_CLOSE_NO_FRAME, "frame too large");
            return;
        }
        if (total + 65536 > th->rcap) {
            uint8_t *b = realloc(th->rbuf, total + 65536);

            if (!b) {
                conn_end(th, c, SUB_CLOSE_NO_FRAME, "out of memory");
                return;
            }
            th->rbuf = b;
            th->rcap = total + 65536;
        }
    }
    n = recv(c->fd, th->rbuf + have, th->rcap - have, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        conn_end(th, c, SUB_CLOSE_NO_FRAME,
                 n == 0 ? "the hub closed the connection without a close frame" : strerror(errno));
        return;
    }
    if (have)
        memcpy(th->rbuf, c->in, have);
    c->in_len = 0;
    if (c->in_cap > 65536) { /* a large frame passed: give its room back */
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    ctr_add(th, CTR(bytes), (uint64_t)n);
    consume(th, c, have + (size_t)n, client_wall_us());
}

static void on_event(struct sub_thread *th, struct conn *c, uint32_t events)
{
    switch (c->state) {
    case CONN_CONNECTING:
        on_connected(th, c);
        if (c->state == CONN_HANDSHAKE && (events & EPOLLIN))
            read_handshake(th, c);
        return;
    case CONN_HANDSHAKE:
        if ((events & EPOLLOUT) && c->out_len && flush_out(th, c) < 0) {
            conn_end(th, c, SUB_CLOSE_SLOTS, "handshake: send failed");
            return;
        }
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
            read_handshake(th, c);
        return;
    case CONN_OPEN:
        if ((events & EPOLLOUT) && c->out_len && flush_out(th, c) < 0) {
            conn_end(th, c, SUB_CLOSE_NO_FRAME, "send failed");
            return;
        }
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
            read_frames(th, c);
        return;
    default: return;
    }
}

static void *thread_main(void *arg)
{
    struct sub_thread *th = arg;
    struct epoll_event ev[EPOLL_BATCH];

    th->t0_ns = client_mono_ns();
    while (!atomic_load_explicit(&th->g->stop, memory_order_relaxed)) {
        int timeout = start_some(th);
        int k = epoll_wait(th->ep, ev, EPOLL_BATCH, timeout);

        if (k < 0) {
            if (errno == EINTR)
                continue;
            first_error_set(&th->g->err, "epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < k; i++)
            on_event(th, ev[i].data.ptr, ev[i].events);
    }
    return NULL;
}

/* --- the group ------------------------------------------------------------------------------ */

struct sub_group *sub_group_new(const struct sub_config *cfg, char *err, size_t errlen)
{
    struct sub_group *g = calloc(1, sizeof(*g));
    uint32_t count = 0;

    if (!g)
        goto oom;
    g->cfg = *cfg;
    if (g->cfg.threads < 1)
        g->cfg.threads = 1;
    if (g->cfg.stride < 1)
        g->cfg.stride = 1;
    if (cfg->first < cfg->n)
        count = (cfg->n - cfg->first + g->cfg.stride - 1) / g->cfg.stride;
    g->n_threads = g->cfg.threads;
    if (g->n_threads > count && count > 0)
        g->n_threads = count;
    atomic_init(&g->stop, false);
    atomic_init(&g->win_start, INT64_MAX);
    atomic_init(&g->win_end, INT64_MAX);
    first_error_init(&g->err);
    g->th = calloc(g->n_threads, sizeof(*g->th));
    if (!g->th)
        goto oom;
    for (unsigned t = 0; t < g->n_threads; t++) {
        struct sub_thread *th = calloc(1, sizeof(*th));
        uint64_t seed = 0;

        if (!th)
            goto oom;
        g->th[t] = th;
        th->g = g;
        th->index = t;
        th->ep = -1;
        th->n = count / g->n_threads + (t < count % g->n_threads);
        th->conns = calloc(th->n ? th->n : 1, sizeof(*th->conns));
        th->rcap = RBUF_BYTES;
        th->rbuf = malloc(th->rcap);
        if (!th->conns || !th->rbuf)
            goto oom;
        for (uint32_t i = 0; i < th->n; i++) {
            th->conns[i].fd = -1;
            th->conns[i].gidx = cfg->first + (i * g->n_threads + t) * g->cfg.stride;
        }
        if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
            seed = (uint64_t)client_mono_ns();
        th->rng = seed | 1;
        th->ep = epoll_create1(EPOLL_CLOEXEC);
        if (th->ep < 0) {
            snprintf(err, errlen, "epoll_create1: %s", strerror(errno));
            goto fail;
        }
    }
    return g;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    sub_group_free(g);
    return NULL;
}

int sub_group_start(struct sub_group *g, char *err, size_t errlen)
{
    for (unsigned t = 0; t < g->n_threads; t++) {
        int rc = pthread_create(&g->th[t]->tid, NULL, thread_main, g->th[t]);

        if (rc != 0) {
            snprintf(err, errlen, "pthread_create: %s", strerror(rc));
            sub_group_stop(g);
            return -1;
        }
        g->th[t]->is_started = true;
    }
    return 0;
}

void sub_group_set_window(struct sub_group *g, int64_t start_us, int64_t end_us)
{
    atomic_store(&g->win_end, end_us);
    atomic_store(&g->win_start, start_us);
}

void sub_group_snapshot(struct sub_group *g, struct sub_counters *c, struct hist *live)
{
    for (unsigned t = 0; t < g->n_threads; t++) {
        struct sub_thread *th = g->th[t];

        if (c) {
            uint64_t *dst = (uint64_t *)c;

            for (size_t i = 0; i < N_CTR; i++)
                dst[i] += atomic_load_explicit(&th->ctr[i], memory_order_relaxed);
        }
        if (live)
            hist_live_add_to(&th->live, live);
    }
}

void sub_group_first_error(struct sub_group *g, char *out, size_t len)
{
    first_error_copy(&g->err, out, len);
}

void sub_group_stop(struct sub_group *g)
{
    static const uint8_t normal[2] = {1000 >> 8, 1000 & 0xff};

    if (g->is_stopped)
        return;
    g->is_stopped = true;
    atomic_store(&g->stop, true);
    for (unsigned t = 0; t < g->n_threads; t++) {
        struct sub_thread *th = g->th[t];

        if (!th)
            continue;
        if (th->is_started)
            pthread_join(th->tid, NULL);
        th->is_started = false;
        for (uint32_t i = 0; i < th->n; i++) {
            struct conn *c = &th->conns[i];

            if (c->state == CONN_OPEN) {
                uint8_t frame[2 + WS_MAX_HEADER];
                size_t n = ws_build_frame(frame, WS_OP_CLOSE, normal, 2,
                                          (uint32_t)client_xorshift(&th->rng));

                /* best effort: a socket that cannot take 8 bytes is closed anyway */
                if (send(c->fd, frame, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
                    (void)0;
                ctr_sub(th, CTR(open_now), 1);
                c->is_open_at_stop = true;
            }
            conn_release(c);
        }
    }
}

void sub_group_measured(struct sub_group *g, struct hist *out)
{
    for (unsigned t = 0; t < g->n_threads; t++)
        hist_add(out, &g->th[t]->meas);
}

void sub_group_verify(struct sub_group *g, const struct seqset *acked)
{
    const struct sub_config *cfg = &g->cfg;

    for (unsigned t = 0; t < g->n_threads; t++) {
        struct sub_thread *th = g->th[t];

        for (uint32_t i = 0; i < th->n; i++) {
            struct conn *c = &th->conns[i];
            const struct seqset *a =
                &acked[cfg->channels > 1 ? (unsigned)(c->gidx % cfg->channels) : 0];

            ctr_add(th, CTR(unacked), seqset_count_missing(&c->seen, a));
            if (c->is_open_at_stop) {
                uint64_t missing = seqset_count_missing(a, &c->seen);

                ctr_add(th, CTR(verified), 1);
                ctr_add(th, CTR(missing), missing);
                ctr_add(th, CTR(incomplete), missing > 0);
            }
            seqset_clear(&c->seen);
        }
    }
}

void sub_group_free(struct sub_group *g)
{
    if (!g)
        return;
    if (g->th) {
        sub_group_stop(g);
        for (unsigned t = 0; t < g->n_threads; t++) {
            struct sub_thread *th = g->th[t];

            if (!th)
                continue;
            if (th->ep >= 0)
                close(th->ep);
            for (uint32_t i = 0; th->conns && i < th->n; i++)
                seqset_clear(&th->conns[i].seen);
            free(th->conns);
            free(th->rbuf);
            free(th);
        }
        free(g->th);
    }
    first_error_destroy(&g->err);
    free(g);
}

void sub_counters_add(struct sub_counters *dst, const struct sub_counters *src)
{
    uint64_t *d = (uint64_t *)dst;
    const uint64_t *s = (const uint64_t *)src;

    for (size_t i = 0; i < N_CTR; i++)
        d[i] += s[i];
}

uint64_t sub_counters_closes(const struct sub_counters *c)
{
    uint64_t n = 0;

    for (unsigned i = 0; i < SUB_CLOSE_SLOTS; i++)
        n += c->closes[i];
    return n;
}
