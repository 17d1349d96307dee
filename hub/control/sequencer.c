/* sequencer.c -- order and completeness per channel, between the broker and the planes.
 * A channel gets a state here when a plane first asks about it (a subscribe), and loses it
 * once no plane holds it. A state is
 *   - initialising: a position read is out; events wait in its buffer;
 *   - ready: events go on in seq order (a duplicate is dropped; a new epoch first sends the
 *     planes a reset; a jump in the numbers starts a repair);
 *   - reading: a repair (or, after a resubscribe, a check) is out; events wait in its buffer.
 * A repair reads the missing numbers from the channel's history and hands them on in order,
 * each stretch history no longer holds as one gap, then the buffer. The buffer is bounded:
 * past it events are dropped here, and the next one delivered shows the jump, which starts
 * another repair (the events are still in history). With the in-process broker reads answer
 * at once and numbers never jump; the same code runs, doing nothing extra. */
#include "sequencer.h"

#include "broker/broker.h"
#include "broker/history.h"
#include "common/clock.h"
#include "common/keyhash.h"
#include "common/log.h"
#include "common/message.h"
#include "common/metrics.h"
#include "common/position.h"
#include "common/registry.h"
#include "common/xalloc.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#define BUFFER_MAX 65536  /* events held per channel while a read is out */
#define SWEEP_MS 1000     /* forget the states of channels no plane holds */
#define WAIT_RETRY_MS 500 /* retry a read the broker could not take */
#define WAIT_MAX_MS 10000 /* then answer the request with an error */

struct chan {
    char name[MESSAGE_CHANNEL_MAX + 1];
    size_t len;
    UT_hash_handle hh;
    char epoch[MESSAGE_EPOCH_MAX + 1];
    uint64_t last; /* the last seq handed on in order */
    bool is_ready;
    bool is_reading;      /* a position read, repair or check is out */
    bool wants_check;     /* a resubscribe came while reading: check when the read is done */
    struct message **buf; /* waiting while reading, in arrival order */
    size_t nbuf, capbuf;
    struct position_request **waiting; /* requests that came before the first position */
    size_t nwaiting;
    int64_t waiting_since_ms;
    struct sequencer *s;
};

struct sequencer {
    struct event_base *base;
    struct broker *broker;
    struct history *local;
    sequencer_post_fn *post;
    sequencer_answer_fn *answer;
    void *arg;
    struct chan *chans;
    struct event *ev_sweep;
    struct read_ctx *reads; /* in flight: freed with the sequencer (the broker goes after) */
};

/* One read in flight: for a channel (by name, since the state may be gone by the answer). */
enum read_kind { READ_INIT, READ_REPAIR, READ_CHECK, READ_REQUEST, READ_REQUEST_LAST };
struct read_ctx {
    struct read_ctx *prev, *next; /* the sequencer's reads in flight */
    struct sequencer *s;
    enum read_kind kind;
    char channel[MESSAGE_CHANNEL_MAX + 1];
    size_t len;
    uint64_t from, to;            /* READ_REPAIR: the missing seqs */
    struct position_request *req; /* READ_REQUEST*: the request being answered */
};

static void process(struct chan *c, struct message *msg, bool at_front);
static void drain(struct chan *c);
static void dispatch(struct sequencer *s, struct chan *c, struct position_request *q);

static struct chan *find(struct sequencer *s, const char *name, size_t len)
{
    struct chan *c;

    HASH_FIND(hh, s->chans, name, len, c);
    return c;
}

static void chan_free(struct sequencer *s, struct chan *c)
{
    HASH_DEL(s->chans, c);
    for (size_t i = 0; i < c->nbuf; i++)
        message_unref(&c->buf[i]);
    free(c->buf);
    for (size_t i = 0; i < c->nwaiting; i++)
        position_request_free(c->waiting[i]);
    free(c->waiting);
    free(c);
}

/* --- frames the sequencer makes ------------------------------------------------------------ */

static struct message *frame(struct chan *c, enum message_kind kind, const char *json,
                             uint64_t from, uint64_t to)
{
    struct message *m = message_new(c->name, c->len, json, strlen(json));

    m->kind = (uint8_t)kind;
    m->seq_from = from;
    m->seq = to;
    snprintf(m->epoch, sizeof(m->epoch), "%s", c->epoch);
    return m;
}

/* Events from..to will not come: the planes tell their subscribers. */
static void post_gap(struct chan *c, uint64_t from, uint64_t to)
{
    struct message *m = message_gap(c->name, c->len, c->epoch, from, to);

    c->s->post(m, c->s->arg);
    message_unref(&m);
    metrics_add(&metrics.seq_lost, to - from + 1);
    log_warn("seq", "%s: events %" PRIu64 "..%" PRIu64 " are not in history any more: gap", c->name,
             from, to);
}

/* The numbering restarted in epoch: subscribers start over from seq 0. */
static void post_reset(struct chan *c, const char *epoch)
{
    char json[256];
    struct message *m;

    snprintf(c->epoch, sizeof(c->epoch), "%s", epoch);
    c->last = 0;
    snprintf(json, sizeof(json),
             "{\"type\":\"subscribed\",\"channel\":\"%s\",\"epoch\":\"%s\",\"seq\":0,"
             "\"recovered\":false}",
             c->name, c->epoch);
    m = frame(c, MESSAGE_RESET, json, 0, 0);
    c->s->post(m, c->s->arg);
    message_unref(&m);
    metrics_add(&metrics.seq_resets, 1);
    log_warn("seq", "%s: its numbering restarted in epoch %s: subscribers are told", c->name,
             c->epoch);
}

/* --- reads ---------------------------------------------------------------------------------- */

static void on_read(const char *err, struct history_result *r, void *arg);

/* Reads through the broker, or the local history for the hub's own channels. Returns 0 (the
 * answer fires, maybe already), or -1 (nothing will). */
static int read_channel(struct sequencer *s, struct read_ctx *ctx, enum broker_read_mode mode,
                        uint64_t since, size_t count)
{
    const struct broker_read q = {
        .mode = mode,
        .channel = ctx->channel,
        .channel_len = ctx->len,
        .since = since,
        .count = count,
    };

    if (ctx->channel[0] == '$') {
        struct history_result r;
        int64_t now = clock_wall_ms();

        if (mode == BROKER_READ_SINCE)
            history_read_since(s->local, ctx->channel, ctx->len, since, count, now, &r);
        else
            history_read_last(s->local, ctx->channel, ctx->len,
                              mode == BROKER_READ_LAST ? count : 0, now, &r);
        on_read(NULL, &r, ctx);
        history_result_clear(&r);
        return 0;
    }
    return broker_read(s->broker, &q, on_read, ctx);
}

static struct read_ctx *ctx_new(struct sequencer *s, enum read_kind kind, const char *channel,
                                size_t len)
{
    struct read_ctx *ctx = xcalloc(1, sizeof(*ctx));

    ctx->next = s->reads;
    if (s->reads)
        s->reads->prev = ctx;
    s->reads = ctx;
    ctx->s = s;
    ctx->kind = kind;
    memcpy(ctx->channel, channel, len);
    ctx->len = len;
    return ctx;
}

static void ctx_free(struct read_ctx *ctx)
{
    struct sequencer *s = ctx->s;

    if (ctx->prev)
        ctx->prev->next = ctx->next;
    else
        s->reads = ctx->next;
    if (ctx->next)
        ctx->next->prev = ctx->prev;
    free(ctx);
}

/* --- answering planes ------------------------------------------------------------------------ */

static struct position_answer *answer_new(const struct position_request *q)
{
    struct position_answer *a = xcalloc(1, sizeof(*a));

    a->conn = q->conn;
    memcpy(a->channel, q->channel, q->channel_len);
    a->channel_len = q->channel_len;
    a->recovered = q->has_since ? 0 : -1;
    return a;
}

static void send_answer(struct sequencer *s, struct position_request *q, struct position_answer *a)
{
    a->ref = q->ref;
    q->ref = NULL;
    s->answer(q->plane, a, s->arg);
    position_request_free(q);
}

static void answer_error(struct sequencer *s, struct position_request *q, const char *why)
{
    struct position_answer *a = answer_new(q);

    a->error = why;
    send_answer(s, q, a);
}

/* Takes references to r's events with seq > after into a. */
static void take_replay(struct position_answer *a, const struct history_result *r, uint64_t after)
{
    if (!r->n)
        return;
    a->replay = xmalloc(r->n * sizeof(*a->replay));
    for (size_t i = 0; i < r->n; i++)
        if (r->msgs[i]->seq > after)
            a->replay[a->n++] = message_ref(r->msgs[i]);
}

/* Does r hold every event after since, up to its position, with no hole? */
static bool holds_all_after(const struct history_result *r, uint64_t since)
{
    uint64_t want = since + 1;

    if (since >= r->seq)
        return true;
    for (size_t i = 0; i < r->n; i++) {
        if (r->msgs[i]->seq != want)
            return false;
        want++;
    }
    return want == r->seq + 1;
}

/* A request's read came back. */
static void request_read(struct sequencer *s, struct read_ctx *ctx, const char *err,
                         struct history_result *r)
{
    struct position_request *q = ctx->req;
    struct position_answer *a;

    if (err) {
        answer_error(s, q, "unavailable");
        return;
    }
    if (ctx->kind == READ_REQUEST && q->has_since) {
        bool same = q->since_seq == 0 || !strcmp(q->since_epoch, r->epoch);

        if (same && holds_all_after(r, q->since_seq)) {
            a = answer_new(q);
            snprintf(a->epoch, sizeof(a->epoch), "%s", r->epoch);
            a->seq = r->seq;
            a->recovered = 1;
            take_replay(a, r, q->since_seq);
            send_answer(s, q, a);
            return;
        }
        if (q->last) { /* not recoverable: the newest `last` instead */
            struct read_ctx *again = ctx_new(s, READ_REQUEST_LAST, q->channel, q->channel_len);

            again->req = q;
            if (read_channel(s, again, BROKER_READ_LAST, 0, q->last) < 0) {
                ctx_free(again);
                answer_error(s, q, "unavailable");
            }
            return;
        }
    }
    a = answer_new(q);
    snprintf(a->epoch, sizeof(a->epoch), "%s", r->epoch);
    a->seq = r->seq;
    if (q->has_since)
        a->recovered = 0;
    if (ctx->kind == READ_REQUEST_LAST || (!q->has_since && q->last))
        take_replay(a, r, 0);
    send_answer(s, q, a);
}

/* Sends q on its way: at once from the state when it asks for no history, else by a read. */
static void dispatch(struct sequencer *s, struct chan *c, struct position_request *q)
{
    struct read_ctx *ctx;

    if (!q->has_since && !q->last) {
        struct position_answer *a = answer_new(q);

        snprintf(a->epoch, sizeof(a->epoch), "%s", c->epoch);
        a->seq = c->last;
        send_answer(s, q, a);
        return;
    }
    ctx = ctx_new(s, READ_REQUEST, q->channel, q->channel_len);
    ctx->req = q;
    if (read_channel(s, ctx, q->has_since ? BROKER_READ_SINCE : BROKER_READ_LAST,
                     q->has_since ? q->since_seq : 0, q->has_since ? 0 : q->last) < 0) {
        ctx_free(ctx);
        answer_error(s, q, "unavailable");
    }
}

/* --- the state's own reads: the first position, repairs, checks ------------------------------ */

static void start_init(struct chan *c)
{
    struct read_ctx *ctx = ctx_new(c->s, READ_INIT, c->name, c->len);

    c->is_reading = true;
    if (read_channel(c->s, ctx, BROKER_READ_POSITION, 0, 0) < 0) {
        ctx_free(ctx);
        c->is_reading = false; /* the sweep retries while requests wait */
    }
}

/* Reads the missing from..to of c back from history. */
static void start_repair(struct chan *c, uint64_t from, uint64_t to)
{
    struct read_ctx *ctx = ctx_new(c->s, READ_REPAIR, c->name, c->len);

    metrics_add(&metrics.seq_holes, 1);
    log_info("seq", "%s: events %" PRIu64 "..%" PRIu64 " missed: reading them from history",
             c->name, from, to);
    ctx->from = from;
    ctx->to = to;
    c->is_reading = true;
    if (read_channel(c->s, ctx, BROKER_READ_SINCE, from - 1, (size_t)(to - from + 1)) < 0) {
        ctx_free(ctx);
        c->is_reading = false;
        post_gap(c, from, to);
        c->last = to;
    }
}

static void start_check(struct chan *c)
{
    struct read_ctx *ctx = ctx_new(c->s, READ_CHECK, c->name, c->len);

    c->wants_check = false;
    c->is_reading = true;
    if (read_channel(c->s, ctx, BROKER_READ_POSITION, 0, 0) < 0) {
        ctx_free(ctx);
        c->is_reading = false;
        c->wants_check = true; /* the broker cannot read now: the sweep tries again */
    }
}

static void init_read(struct chan *c, const char *err, struct history_result *r)
{
    struct sequencer *s = c->s;
    struct position_request **waiting = c->waiting;
    size_t n = c->nwaiting;

    c->is_reading = false;
    if (err) {
        for (size_t i = 0; i < n; i++)
            answer_error(s, waiting[i], "unavailable");
        free(waiting);
        c->waiting = NULL;
        c->nwaiting = 0;
        return;
    }
    snprintf(c->epoch, sizeof(c->epoch), "%s", r->epoch);
    c->last = r->seq;
    c->is_ready = true;
    c->waiting = NULL;
    c->nwaiting = 0;
    for (size_t i = 0; i < n; i++)
        dispatch(s, c, waiting[i]);
    free(waiting);
}

static void repair_read(struct chan *c, struct read_ctx *ctx, const char *err,
                        struct history_result *r)
{
    uint64_t want = ctx->from;

    c->is_reading = false;
    if (!err && !strcmp(r->epoch, c->epoch)) {
        for (size_t i = 0; i < r->n; i++) {
            struct message *m = r->msgs[i];

            if (m->seq < want || m->seq > ctx->to)
                continue;
            if (m->seq > want)
                post_gap(c, want, m->seq - 1);
            c->s->post(m, c->s->arg);
            metrics_add(&metrics.seq_repaired, 1);
            want = m->seq + 1;
        }
    }
    if (want <= ctx->to)
        post_gap(c, want, ctx->to);
    c->last = ctx->to;
}

static void check_read(struct chan *c, const char *err, struct history_result *r)
{
    c->is_reading = false;
    if (err)
        return;
    if (r->epoch[0] && !c->epoch[0]) {
        snprintf(c->epoch, sizeof(c->epoch), "%s", r->epoch);
    } else if (r->epoch[0] && strcmp(r->epoch, c->epoch) != 0) {
        post_reset(c, r->epoch);
        if (r->seq)
            start_repair(c, 1, r->seq);
    } else if (r->seq > c->last) {
        start_repair(c, c->last + 1, r->seq);
    }
}

static void on_read(const char *err, struct history_result *r, void *arg)
{
    struct read_ctx *ctx = arg;
    struct sequencer *s = ctx->s;
    struct chan *c;

    if (ctx->kind == READ_REQUEST || ctx->kind == READ_REQUEST_LAST) {
        request_read(s, ctx, err, r);
        ctx_free(ctx);
        return;
    }
    c = find(s, ctx->channel, ctx->len);
    if (c) {
        switch (ctx->kind) {
        case READ_INIT: init_read(c, err, r); break;
        case READ_REPAIR: repair_read(c, ctx, err, r); break;
        case READ_CHECK: check_read(c, err, r); break;
        default: break;
        }
        if (!c->is_reading && c->wants_check && c->is_ready)
            start_check(c);
        drain(c);
    }
    ctx_free(ctx);
}

/* --- events ------------------------------------------------------------------------------- */

static void buffer(struct chan *c, struct message *msg, bool at_front)
{
    if (c->nbuf == BUFFER_MAX) { /* dropped: the next delivered shows the jump, and repairs */
        if (!at_front)
            return;
        message_unref(&c->buf[--c->nbuf]);
    }
    if (c->nbuf == c->capbuf) {
        c->capbuf = c->capbuf ? c->capbuf * 2 : 16;
        c->buf = xrealloc(c->buf, c->capbuf * sizeof(*c->buf));
    }
    if (at_front) {
        memmove(c->buf + 1, c->buf, c->nbuf * sizeof(*c->buf));
        c->buf[0] = message_ref(msg);
    } else {
        c->buf[c->nbuf] = message_ref(msg);
    }
    c->nbuf++;
}

/* Hands on what waited, in order, until a new read stops it. */
static void drain(struct chan *c)
{
    while (!c->is_reading && c->is_ready && c->nbuf) {
        struct message *m = c->buf[0];

        memmove(c->buf, c->buf + 1, --c->nbuf * sizeof(*c->buf));
        process(c, m, true);
        message_unref(&m);
    }
}

static void process(struct chan *c, struct message *msg, bool at_front)
{
    if (!c->is_ready || c->is_reading) {
        buffer(c, msg, at_front);
        return;
    }
    if (strcmp(msg->epoch, c->epoch) != 0) {
        if (c->epoch[0])
            post_reset(c, msg->epoch);
        else /* the channel had no numbering yet: this is its first */
            snprintf(c->epoch, sizeof(c->epoch), "%s", msg->epoch);
    }
    if (msg->seq <= c->last)
        return; /* already handed on (a repair read it back first) */
    if (msg->seq > c->last + 1) {
        buffer(c, msg, true);
        start_repair(c, c->last + 1, msg->seq - 1);
        if (!c->is_reading) /* the repair gave up at once (a gap): go on */
            drain(c);
        return;
    }
    c->last = msg->seq;
    c->s->post(msg, c->s->arg);
}

void sequencer_event(struct sequencer *s, struct message *msg)
{
    struct chan *c = find(s, msg->channel, msg->channel_len);

    if (!c) { /* no plane asked yet: a plane that just joined buffers what it gets */
        s->post(msg, s->arg);
        return;
    }
    process(c, msg, false);
}

void sequencer_request(struct sequencer *s, struct position_request *q)
{
    struct chan *c = find(s, q->channel, q->channel_len);

    if (!c) {
        c = xcalloc(1, sizeof(*c));
        memcpy(c->name, q->channel, q->channel_len);
        c->len = q->channel_len;
        c->s = s;
        HASH_ADD(hh, s->chans, name[0], c->len, c);
    }
    if (c->is_ready) {
        dispatch(s, c, q);
        return;
    }
    c->waiting = xrealloc(c->waiting, (c->nwaiting + 1) * sizeof(*c->waiting));
    c->waiting[c->nwaiting++] = q;
    if (c->nwaiting == 1)
        c->waiting_since_ms = clock_mono_ms();
    if (!c->is_reading)
        start_init(c);
}

void sequencer_resubscribed(struct sequencer *s, unsigned shard)
{
    struct chan *c, *tmp;

    HASH_ITER(hh, s->chans, c, tmp)
    {
        if (!c->is_ready || c->name[0] == '$' ||
            broker_shard_of(s->broker, c->name, c->len) != shard)
            continue;
        if (c->is_reading)
            c->wants_check = true;
        else
            start_check(c);
    }
}

/* Forgets the states of channels no plane holds, and retries (or gives up on) first
 * positions the broker could not read. */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct sequencer *s = arg;
    struct chan *c, *tmp;
    int64_t now = clock_mono_ms();

    (void)fd;
    (void)what;
    HASH_ITER(hh, s->chans, c, tmp)
    {
        if (!c->is_reading && !c->nwaiting && !registry_planes(c->name, c->len)) {
            chan_free(s, c);
            continue;
        }
        if (c->wants_check && c->is_ready && !c->is_reading)
            start_check(c);
        if (c->nwaiting && !c->is_reading) {
            if (now - c->waiting_since_ms >= WAIT_MAX_MS) {
                for (size_t i = 0; i < c->nwaiting; i++)
                    answer_error(s, c->waiting[i], "unavailable");
                c->nwaiting = 0;
            } else if (now - c->waiting_since_ms >= WAIT_RETRY_MS) {
                start_init(c);
            }
        }
    }
}

struct sequencer *sequencer_new(struct event_base *base, struct broker *broker,
                                struct history *local, sequencer_post_fn *post,
                                sequencer_answer_fn *answer, void *arg)
{
    struct sequencer *s = xcalloc(1, sizeof(*s));
    struct timeval every = {.tv_sec = SWEEP_MS / 1000, .tv_usec = (SWEEP_MS % 1000) * 1000};

    s->base = base;
    s->broker = broker;
    s->local = local;
    s->post = post;
    s->answer = answer;
    s->arg = arg;
    s->ev_sweep = event_new(base, -1, EV_PERSIST, on_sweep, s);
    event_add(s->ev_sweep, &every);
    return s;
}

void sequencer_free(struct sequencer *s)
{
    struct chan *c, *tmp;

    if (!s)
        return;
    while (s->reads) { /* their answers will not come (the broker is freed next) */
        position_request_free(s->reads->req);
        ctx_free(s->reads);
    }
    event_free(s->ev_sweep);
    HASH_ITER(hh, s->chans, c, tmp)
    chan_free(s, c);
    free(s);
}
