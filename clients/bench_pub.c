/* bench_pub.c -- the publisher thread of herald-bench.
 * One thread, `inflight` keep-alive connections, no pipelining: a connection carries one
 * request at a time and the hub (evhttp) answers each with a Content-Length body. The thread
 * sleeps in ppoll() with a nanosecond timeout, so --rate paces to the microsecond: request k
 * is due at start + k * batch / rate; when the schedule is more than 100 ms behind (the hub
 * answers slowly, every connection is busy), the missed requests are skipped and counted,
 * never sent as a burst. --saturate writes a new request as soon as a connection is free.
 * An answer other than 202 (nchan: 200-202) is an error: counted by status (a 503 whose body
 * says "overloaded", and a refusal with Retry-After, counted apart as well), the first one
 * kept for the report; the publisher never waits for a Retry-After (an open-loop burst is what
 * it measures). With --verify it keeps the "s" of every event answered 202. The HTTP pieces
 * (connecting, the POST head, writing, parsing the answer's head) are http_client.c's; the
 * connections, their buffers and the schedule are here. Counters are single-writer atomics (this
 * thread writes, the progress line reads). */
#include "bench_pub.h"

#include "bench_util.h"
#include "client_util.h"
#include "http_client.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_BEHIND_NS 100000000LL   /* --rate: catch up on at most 100 ms of schedule */
#define ANSWER_WAIT_NS 5000000000LL /* after the end, how long answers are awaited */
#define RECONNECT_NS 100000000LL    /* a connection that failed is retried after this */
#define IN_BYTES 16384              /* an answer's head must fit */
#define MAX_INFLIGHT 1024
#define HOLD_POLL_NS 1000000 /* holding for the backlog bound: look again this often */

_Static_assert(sizeof(struct pub_counters) % sizeof(uint64_t) == 0, "counters are all uint64_t");
#define N_CTR (sizeof(struct pub_counters) / sizeof(uint64_t))
#define CTR(field) (offsetof(struct pub_counters, field) / sizeof(uint64_t))

enum pconn_state { PC_DOWN, PC_CONNECTING, PC_IDLE, PC_BUSY };

struct pconn {
    int fd;
    enum pconn_state state;
    int64_t retry_ns; /* PC_DOWN: reconnect from this time on */
    char *out;        /* the request being written */
    size_t out_len, out_off, out_cap;
    char in[IN_BYTES]; /* the answer's head */
    size_t in_len;
    bool is_head_done;
    bool is_close; /* the answer said Connection: close */
    int status;
    long retry_after; /* the answer's Retry-After, -1: none */
    size_t body_left;
    char body[160]; /* the start of a non-202 body, for the report */
    size_t body_len;
    uint32_t events; /* in the request in flight */
    uint32_t chan;
    uint64_t first_seq; /* "s" of the request's first event */
    int64_t sent_ns;
};

struct publisher {
    struct pub_config cfg;
    pthread_t tid;
    bool is_started;
    atomic_bool stop;
    atomic_bool is_done;        /* the thread has ended */
    _Atomic uint64_t delivered; /* {pub_set_delivered}: frames received, for the backlog bound */
    int64_t end_us;
    struct pconn *pc;
    uint64_t *seq;      /* per channel; thread only */
    unsigned next_chan; /* thread only */
    char *body;         /* scratch for one body */
    size_t body_cap;
    char *pad;                               /* cfg.size bytes of 'x' */
    _Atomic uint64_t ctr[N_CTR];             /* {thread writes}: struct pub_counters */
    _Atomic uint64_t status[PUB_STATUS_MAX]; /* {thread writes} */
    _Atomic uint64_t *acked;                 /* {thread writes}: per channel */
    struct seqset *acked_set;                /* --verify, per channel; thread only until join */
    struct hist rtt;                         /* thread only; read after join */
    struct first_error err;
};

/* Bytes an event spends outside its "data": {"channel":"NAME","data":...} */
static size_t wrapper_size(size_t name_len)
{
    return strlen("{\"channel\":\"\",\"data\":}") + name_len;
}

size_t pub_min_size(const struct pub_config *cfg)
{
    char name[160];

    /* {"channel":"NAME","data":{"t":<16 digits>,"s":<up to 20>,"p":""}} */
    return strlen("{\"channel\":\"\",\"data\":{\"t\":,\"s\":,\"p\":\"\"}}") +
           channel_name(cfg->channel, cfg->channels, cfg->channels ? cfg->channels - 1 : 0, name,
                        sizeof(name)) +
           16 + 12;
}

/* --- requests ------------------------------------------------------------------------------- */

/* Writes one event of cfg.size bytes (more only if the fields alone are longer) at out. For
 * nchan, only its "data" object, as long as it would be inside that event. */
static size_t write_event(struct publisher *p, char *out, const char *chan, int64_t t, uint64_t seq)
{
    int n;
    size_t used, pad;

    if (p->cfg.is_nchan) {
        size_t size = p->cfg.size - wrapper_size(strlen(chan)); /* >= pub_min_size */

        n = sprintf(out, "{\"t\":%lld,\"s\":%llu,\"p\":\"", (long long)t, (unsigned long long)seq);
        used = (size_t)n + 2; /* and "} */
        pad = size > used ? size - used : 0;
        memcpy(out + n, p->pad, pad);
        memcpy(out + n + pad, "\"}", 2);
        return used + pad;
    }
    n = sprintf(out, "{\"channel\":\"%s\",\"data\":{\"t\":%lld,\"s\":%llu,\"p\":\"", chan,
                (long long)t, (unsigned long long)seq);
    used = (size_t)n + 3; /* and "}} */
    pad = p->cfg.size > used ? p->cfg.size - used : 0;
    memcpy(out + n, p->pad, pad);
    memcpy(out + n + pad, "\"}}", 3);
    return used + pad;
}

/* Builds the next request into pc->out. Returns 0 or -1 (out of memory; a head too long
 * cannot happen with the URL lengths herald-bench.c allows). */
static int build_request(struct publisher *p, struct pconn *pc)
{
    const struct pub_config *cfg = &p->cfg;
    unsigned k = p->next_chan;
    /* the target: path (1023) + "?id=" + channel (159); the head: target + host (299) + 90 */
    char chan[160], target[1200], head[2048];
    const char *path = cfg->path;
    size_t len = 0, need;
    int64_t t = client_wall_us();
    int hl;

    p->next_chan = cfg->channels > 1 ? (k + 1) % cfg->channels : 0;
    channel_name(cfg->channel, cfg->channels, k, chan, sizeof(chan));
    pc->first_seq = p->seq[k];
    if (cfg->batch > 1)
        p->body[len++] = '[';
    for (unsigned i = 0; i < cfg->batch; i++) {
        if (i)
            p->body[len++] = ',';
        len += write_event(p, p->body + len, chan, t, p->seq[k]++);
    }
    if (cfg->batch > 1)
        p->body[len++] = ']';
    if (cfg->is_nchan) {
        snprintf(target, sizeof(target), "%s%cid=%s", cfg->path, strchr(cfg->path, '?') ? '&' : '?',
                 chan);
        path = target;
    }
    hl = http_format_post(head, sizeof(head), path, cfg->host, NULL, NULL, NULL, len);
    if (hl < 0)
        return -1;
    need = (size_t)hl + len;
    if (need > pc->out_cap) {
        free(pc->out);
        pc->out = malloc(need);
        pc->out_cap = pc->out ? need : 0;
        if (!pc->out)
            return -1;
    }
    memcpy(pc->out, head, (size_t)hl);
    memcpy(pc->out + hl, p->body, len);
    pc->out_len = need;
    pc->out_off = 0;
    pc->events = cfg->batch;
    pc->chan = k;
    return 0;
}

/* --- connections ---------------------------------------------------------------------------- */

static void pc_down(struct pconn *pc, int64_t retry_ns)
{
    if (pc->fd >= 0)
        close(pc->fd);
    pc->fd = -1;
    pc->state = PC_DOWN;
    pc->retry_ns = retry_ns;
}

/* The request in flight on pc failed without an answer. */
static void request_lost(struct publisher *p, struct pconn *pc, const char *why)
{
    counter_add(&p->ctr[CTR(requests_failed)], 1);
    counter_add(&p->ctr[CTR(events_failed)], pc->events);
    counter_add(&p->status[0], 1);
    first_error_set(&p->err, "POST %s: %s", p->cfg.path, why);
    pc_down(pc, client_mono_ns() + RECONNECT_NS);
}

static void pc_connect(struct publisher *p, struct pconn *pc)
{
    const char *step;

    pc->fd = http_connect_start((const struct sockaddr *)&p->cfg.dst, p->cfg.dst_len, NULL, &step);
    if (pc->fd < 0) {
        first_error_set(&p->err, "%s: %s", strcmp(step, "socket") ? "connect to the API" : "socket",
                        strerror(errno));
        pc_down(pc, client_mono_ns() + RECONNECT_NS);
        return;
    }
    pc->state = PC_CONNECTING;
}

static void on_connected(struct publisher *p, struct pconn *pc)
{
    int err = http_connect_result(pc->fd);

    if (err) {
        first_error_set(&p->err, "connect to the API: %s", strerror(err));
        pc_down(pc, client_mono_ns() + RECONNECT_NS);
        return;
    }
    counter_add(&p->ctr[CTR(connects)], 1);
    pc->state = PC_IDLE;
}

static void flush(struct publisher *p, struct pconn *pc)
{
    if (http_write_some(pc->fd, pc->out, pc->out_len, &pc->out_off) < 0)
        request_lost(p, pc, strerror(errno));
}

static void send_request(struct publisher *p, struct pconn *pc)
{
    if (build_request(p, pc) < 0) {
        first_error_set(&p->err, "out of memory");
        return;
    }
    pc->state = PC_BUSY;
    pc->in_len = 0;
    pc->is_head_done = false;
    pc->is_close = false;
    pc->body_len = 0;
    pc->sent_ns = client_mono_ns();
    counter_add(&p->ctr[CTR(requests)], 1);
    counter_add(&p->ctr[CTR(events_sent)], pc->events);
    flush(p, pc);
}

bool pub_is_accepted(const struct publisher *p, unsigned status)
{
    return status == 202 || (p->cfg.is_nchan && (status == 200 || status == 201));
}

static void on_answer(struct publisher *p, struct pconn *pc)
{
    int64_t rtt = (client_mono_ns() - pc->sent_ns) / 1000;

    hist_record(&p->rtt, rtt > 0 ? (uint64_t)rtt : 0);
    counter_add(&p->status[pc->status > 0 && pc->status < PUB_STATUS_MAX ? pc->status : 0], 1);
    if (pc->status > 0 && pub_is_accepted(p, (unsigned)pc->status)) {
        counter_add(&p->ctr[CTR(requests_ok)], 1);
        counter_add(&p->ctr[CTR(events_acked)], pc->events);
        counter_add(&p->acked[pc->chan], pc->events);
        if (p->acked_set &&
            seqset_add_range(&p->acked_set[pc->chan], pc->first_seq, pc->events) < 0)
            first_error_set(&p->err, "--verify: out of memory");
    } else {
        counter_add(&p->ctr[CTR(requests_failed)], 1);
        counter_add(&p->ctr[CTR(events_failed)], pc->events);
        if (pc->retry_after >= 0)
            counter_add(&p->ctr[CTR(retry_after)], 1);
        if (pc->status == 503 && memmem(pc->body, pc->body_len, "\"overloaded\"", 12))
            counter_add(&p->ctr[CTR(overloaded)], 1);
        first_error_set(&p->err, "POST %s answered %d: %.*s", p->cfg.path, pc->status,
                        (int)pc->body_len, pc->body);
    }
    if (pc->is_close)
        pc_down(pc, 0);
    else
        pc->state = PC_IDLE;
}

/* Reads what the socket has for pc: the answer to its request, or (idle) a close. */
static void on_readable(struct publisher *p, struct pconn *pc)
{
    char drain[16384];
    char *buf = pc->is_head_done ? drain : pc->in + pc->in_len;
    size_t room = pc->is_head_done ? sizeof(drain) : sizeof(pc->in) - 1 - pc->in_len;
    ssize_t n = recv(pc->fd, buf, room, 0);

    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (pc->state != PC_BUSY) { /* the hub closed an idle keep-alive connection */
        pc_down(pc, 0);
        return;
    }
    if (n <= 0) {
        request_lost(p, pc,
                     n == 0 ? "the hub closed the connection before answering" : strerror(errno));
        return;
    }
    if (!pc->is_head_done) {
        struct http_head h;
        int rc;

        pc->in_len += (size_t)n;
        rc = http_parse_head(pc->in, pc->in_len, &h);
        if (rc == 0) {
            if (pc->in_len >= sizeof(pc->in) - 1)
                request_lost(p, pc, "answer head too long");
            return;
        }
        if (rc < 0) {
            request_lost(p, pc, "not an HTTP answer");
            return;
        }
        if (h.is_chunked) {
            request_lost(p, pc, "chunked answers are not supported");
            return;
        }
        pc->status = h.status;
        pc->body_left = h.content_length > 0 ? (size_t)h.content_length : 0;
        pc->is_close = h.is_close;
        pc->retry_after = h.retry_after;
        pc->is_head_done = true;
        buf = pc->in + h.len;
        n = (ssize_t)(pc->in_len - h.len);
    }
    if ((pc->status <= 0 || !pub_is_accepted(p, (unsigned)pc->status)) &&
        pc->body_len < sizeof(pc->body)) {
        size_t k = sizeof(pc->body) - pc->body_len;

        k = (size_t)n < k ? (size_t)n : k;
        memcpy(pc->body + pc->body_len, buf, k);
        pc->body_len += k;
        while (pc->body_len && (pc->body[pc->body_len - 1] == '\n'))
            pc->body_len--;
    }
    pc->body_left -= (size_t)n < pc->body_left ? (size_t)n : pc->body_left;
    if (pc->body_left == 0)
        on_answer(p, pc);
}

/* --- the thread ----------------------------------------------------------------------------- */

/* Whether the backlog bound lets another request go now. */
static bool may_send(struct publisher *p)
{
    double due;

    if (!p->cfg.max_backlog_frames)
        return true;
    due = (double)atomic_load_explicit(&p->ctr[CTR(events_sent)], memory_order_relaxed) *
          p->cfg.frames_per_event;
    return due - (double)atomic_load(&p->delivered) <= (double)p->cfg.max_backlog_frames;
}

static struct pconn *idle_conn(struct publisher *p)
{
    if (!may_send(p))
        return NULL;
    for (unsigned i = 0; i < p->cfg.inflight; i++)
        if (p->pc[i].state == PC_IDLE)
            return &p->pc[i];
    return NULL;
}

static void *thread_main(void *arg)
{
    struct publisher *p = arg;
    const unsigned m = p->cfg.inflight;
    struct pollfd *fds = calloc(m, sizeof(*fds));
    double interval = p->cfg.rate > 0 ? 1e9 * p->cfg.batch / p->cfg.rate : 0;
    double due = (double)client_mono_ns(); /* --rate: when the next request is due */
    int64_t give_up = 0;    /* once sending is over: when answers stop being awaited */
    int64_t hold_since = 0; /* holding for the backlog bound since (0: not holding) */

    if (!fds) {
        first_error_set(&p->err, "out of memory");
        atomic_store(&p->is_done, true);
        return NULL;
    }
    for (;;) {
        int64_t now = client_mono_ns(), wait_ns = 100000000;
        bool is_sending = !atomic_load(&p->stop) && client_wall_us() < p->end_us;
        unsigned busy = 0;
        struct pconn *pc;
        struct timespec ts;

        for (unsigned i = 0; i < m; i++)
            busy += p->pc[i].state == PC_BUSY;
        if (is_sending && !may_send(p)) {
            int64_t t = client_mono_ns();

            if (hold_since)
                counter_add(&p->ctr[CTR(held_us)], (uint64_t)(t - hold_since) / 1000);
            hold_since = t;
        } else {
            hold_since = 0;
        }
        if (!is_sending) {
            if (!give_up)
                give_up = now + ANSWER_WAIT_NS;
            if (busy == 0 || now >= give_up) {
                counter_add(&p->ctr[CTR(unanswered)], busy);
                break;
            }
        } else {
            for (unsigned i = 0; i < m; i++)
                if (p->pc[i].state == PC_DOWN && now >= p->pc[i].retry_ns)
                    pc_connect(p, &p->pc[i]);
            if (interval == 0) {
                while ((pc = idle_conn(p)))
                    send_request(p, pc);
            } else {
                if ((double)now - due > MAX_BEHIND_NS) {
                    double skip = ((double)now - MAX_BEHIND_NS - due) / interval;
                    uint64_t k = (uint64_t)skip + 1;

                    counter_add(&p->ctr[CTR(events_skipped)], k * p->cfg.batch);
                    due += (double)k * interval;
                }
                while (due <= (double)now && (pc = idle_conn(p))) {
                    send_request(p, pc);
                    due += interval;
                }
                if (idle_conn(p))
                    wait_ns = (int64_t)(due - (double)now);
            }
            int64_t to_end = (p->end_us - client_wall_us()) * 1000;

            if (hold_since && wait_ns > HOLD_POLL_NS)
                wait_ns = HOLD_POLL_NS;

            if (to_end < wait_ns)
                wait_ns = to_end;
            for (unsigned i = 0; i < m; i++)
                if (p->pc[i].state == PC_DOWN && p->pc[i].retry_ns - now < wait_ns)
                    wait_ns = p->pc[i].retry_ns - now;
        }
        for (unsigned i = 0; i < m; i++) {
            pc = &p->pc[i];
            fds[i].fd = pc->fd;
            fds[i].revents = 0;
            switch (pc->state) {
            case PC_CONNECTING: fds[i].events = POLLOUT; break;
            case PC_BUSY:
                fds[i].events = (short)(POLLIN | (pc->out_off < pc->out_len ? POLLOUT : 0));
                break;
            case PC_IDLE: fds[i].events = POLLIN; break;
            case PC_DOWN: fds[i].fd = -1; break;
            }
        }
        if (wait_ns < 0)
            wait_ns = 0;
        ts.tv_sec = wait_ns / 1000000000;
        ts.tv_nsec = wait_ns % 1000000000;
        if (ppoll(fds, m, &ts, NULL) < 0 && errno != EINTR) {
            first_error_set(&p->err, "ppoll: %s", strerror(errno));
            break;
        }
        for (unsigned i = 0; i < m; i++) {
            pc = &p->pc[i];
            if (!fds[i].revents || pc->fd != fds[i].fd)
                continue;
            if (pc->state == PC_CONNECTING) {
                on_connected(p, pc);
                continue;
            }
            if (pc->state == PC_BUSY && (fds[i].revents & POLLOUT))
                flush(p, pc);
            if (pc->state != PC_DOWN && (fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                on_readable(p, pc);
        }
    }
    for (unsigned i = 0; i < m; i++)
        pc_down(&p->pc[i], 0);
    free(fds);
    atomic_store(&p->is_done, true);
    return NULL;
}

/* --- the publisher -------------------------------------------------------------------------- */

struct publisher *pub_new(const struct pub_config *cfg, char *err, size_t errlen)
{
    struct publisher *p = calloc(1, sizeof(*p));
    size_t min;

    if (!p)
        goto oom;
    p->cfg = *cfg;
    if (p->cfg.channels < 1)
        p->cfg.channels = 1;
    if (p->cfg.batch < 1)
        p->cfg.batch = 1;
    if (p->cfg.inflight < 1)
        p->cfg.inflight = 1;
    if (p->cfg.inflight > MAX_INFLIGHT) {
        snprintf(err, errlen, "--inflight: at most %d", MAX_INFLIGHT);
        free(p);
        return NULL;
    }
    min = pub_min_size(&p->cfg);
    atomic_init(&p->stop, false);
    atomic_init(&p->is_done, false);
    atomic_init(&p->delivered, 0);
    first_error_init(&p->err);
    p->pc = calloc(p->cfg.inflight, sizeof(*p->pc));
    p->seq = calloc(p->cfg.channels, sizeof(*p->seq));
    p->acked = calloc(p->cfg.channels, sizeof(*p->acked));
    if (p->cfg.is_verify && !(p->acked_set = calloc(p->cfg.channels, sizeof(*p->acked_set))))
        goto oom;
    p->pad = malloc(p->cfg.size + 1);
    p->body_cap = (size_t)p->cfg.batch * ((p->cfg.size > min ? p->cfg.size : min) + 1) + 2;
    p->body = malloc(p->body_cap);
    if (!p->pc || !p->seq || !p->acked || !p->pad || !p->body)
        goto oom;
    memset(p->pad, 'x', p->cfg.size);
    for (unsigned i = 0; i < p->cfg.inflight; i++) {
        p->pc[i].fd = -1;
        p->pc[i].state = PC_DOWN;
    }
    return p;
oom:
    snprintf(err, errlen, "out of memory");
    pub_free(p);
    return NULL;
}

int pub_connect(struct publisher *p, int timeout_ms, char *err, size_t errlen)
{
    const unsigned m = p->cfg.inflight;
    struct pollfd *fds = calloc(m, sizeof(*fds));
    int64_t deadline = client_mono_ns() + (int64_t)timeout_ms * 1000000;

    if (!fds) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (unsigned i = 0; i < m; i++)
        pc_connect(p, &p->pc[i]);
    for (;;) {
        unsigned waiting = 0;
        int64_t left = deadline - client_mono_ns();

        for (unsigned i = 0; i < m; i++) {
            fds[i].fd = p->pc[i].state == PC_CONNECTING ? p->pc[i].fd : -1;
            fds[i].events = POLLOUT;
            fds[i].revents = 0;
            waiting += p->pc[i].state == PC_CONNECTING;
        }
        if (!waiting || left <= 0)
            break;
        if (poll(fds, m, (int)(left / 1000000) + 1) < 0 && errno != EINTR)
            break;
        for (unsigned i = 0; i < m; i++)
            if (fds[i].revents)
                on_connected(p, &p->pc[i]);
    }
    free(fds);
    for (unsigned i = 0; i < m; i++) {
        if (p->pc[i].state != PC_IDLE) {
            first_error_copy(&p->err, err, errlen);
            if (!err[0])
                snprintf(err, errlen, "connect to the API: timed out");
            return -1;
        }
    }
    return 0;
}

int pub_start(struct publisher *p, int64_t end_us, char *err, size_t errlen)
{
    int rc;

    p->end_us = end_us;
    rc = pthread_create(&p->tid, NULL, thread_main, p);
    if (rc != 0) {
        snprintf(err, errlen, "pthread_create: %s", strerror(rc));
        return -1;
    }
    p->is_started = true;
    return 0;
}

void pub_stop(struct publisher *p)
{
    atomic_store(&p->stop, true);
}

bool pub_is_done(struct publisher *p)
{
    return !p->is_started || atomic_load(&p->is_done);
}

void pub_set_delivered(struct publisher *p, uint64_t frames)
{
    atomic_store(&p->delivered, frames);
}

void pub_join(struct publisher *p)
{
    if (!p->is_started)
        return;
    pthread_join(p->tid, NULL);
    p->is_started = false;
}

void pub_free(struct publisher *p)
{
    if (!p)
        return;
    pub_stop(p);
    pub_join(p);
    if (p->pc) {
        for (unsigned i = 0; i < p->cfg.inflight; i++) {
            pc_down(&p->pc[i], 0);
            free(p->pc[i].out);
        }
    }
    free(p->pc);
    free(p->seq);
    free(p->acked);
    if (p->acked_set) {
        for (unsigned k = 0; k < p->cfg.channels; k++)
            seqset_clear(&p->acked_set[k]);
        free(p->acked_set);
    }
    free(p->pad);
    free(p->body);
    first_error_destroy(&p->err);
    free(p);
}

void pub_snapshot(struct publisher *p, struct pub_counters *c)
{
    uint64_t *dst = (uint64_t *)c;

    for (size_t i = 0; i < N_CTR; i++)
        dst[i] = atomic_load_explicit(&p->ctr[i], memory_order_relaxed);
}

uint64_t pub_acked_on(struct publisher *p, unsigned channel)
{
    return channel < p->cfg.channels ? atomic_load(&p->acked[channel]) : 0;
}

uint64_t pub_status_count(struct publisher *p, unsigned status)
{
    return status < PUB_STATUS_MAX ? atomic_load(&p->status[status]) : 0;
}

void pub_first_error(struct publisher *p, char *out, size_t len)
{
    first_error_copy(&p->err, out, len);
}

void pub_round_trips(struct publisher *p, struct hist *out)
{
    hist_add(out, &p->rtt);
}

const struct seqset *pub_acked_sets(struct publisher *p)
{
    return p->acked_set;
}
