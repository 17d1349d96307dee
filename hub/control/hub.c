/* hub.c -- start and stop order, the crossings between the control plane and the delivery
 * planes, and the control plane's own timers.
 * Start: broker, sequencer, delivery planes (each binds --listen), API, then the planes'
 * threads. Events the broker hands back go through the sequencer (control/sequencer.c) to the
 * mailboxes of the planes that hold their channel; the $stats snapshot is numbered in the
 * hub's local history once a second and goes the same way (it is this instance's own, so it
 * never crosses the broker). A plane's subscribe asks the sequencer for its position through
 * the hub's inbox (a mailbox the other way, woken with event_active); the answer goes back
 * through that plane's mailbox. Drain: /ready and publishes turn 503, every plane closes its
 * clients with 1001, and the loop exits when all planes report done or --drain-seconds (plus
 * a second) passes. Stop: planes joined, then the sequencer, the broker, the API, and the rest
 * freed in reverse order. */
#include "hub.h"

#include "api.h"
#include "broker/broker.h"
#include "broker/history.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/mailbox.h"
#include "common/message.h"
#include "common/metrics.h"
#include "common/overflow.h"
#include "common/position.h"
#include "common/registry.h"
#include "common/shard.h"
#include "common/tls.h"
#include "common/xalloc.h"
#include "delivery/admission.h"
#include "delivery/plane.h"
#include "herald_version.h"
#include "notify.h"
#include "pubrate.h"
#include "sequencer.h"

#include <event2/event.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static bool hub_is_ready(const struct hub *h)
{
    return !h->is_draining && h->broker && broker_is_ready(h->broker);
}

static void hub_metrics_context(const struct hub *h, struct metrics_context *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->instance = h->cfg->instance_id;
    ctx->broker = h->broker ? h->broker->ops->name : "none";
    ctx->started_ms = h->started_ms;
    ctx->now_ms = clock_wall_ms();
    ctx->planes = h->n_planes;
    for (unsigned i = 0; i < h->n_planes; i++) {
        ctx->mailbox_depth += plane_mailbox_depth(h->planes[i]);
        ctx->backlog_bytes += plane_backlog_bytes(h->planes[i]);
        ctx->io_uring_planes += plane_uses_io_uring(h->planes[i]);
        ctx->delivery[i] = plane_delivery_latency(h->planes[i]);
    }
    ctx->max_backlog_bytes = h->cfg->max_backlog_bytes;
    ctx->is_ready = hub_is_ready(h);
    ctx->is_draining = h->is_draining;
    ctx->is_tls = h->cfg->tls != NULL;
    ctx->redis_shards = h->cfg->redis_shards;
    ctx->shard_names = h->cfg->redis_shard_names;
}

/* Overload: bytes taken for delivery and not yet written, over every plane, past
 * --max-backlog-bytes. */
static bool hub_is_overloaded(const struct hub *h)
{
    size_t backlog = 0;

    for (unsigned i = 0; i < h->n_planes; i++)
        backlog += plane_backlog_bytes(h->planes[i]);
    return backlog > h->cfg->max_backlog_bytes;
}

/* overflow_send_fn: consumes gap when it returns 0 (a gap always fits a mailbox). */
static int post_gap(struct message *gap, void *arg)
{
    struct plane *p = arg;

    if (plane_post_quiet(p, gap, 0) < 0)
        return -1;
    message_unref(&gap);
    return 0;
}

/* Posts msg to plane i, or, when its mailbox is full, adds it to the plane's pending gaps (and
 * so every later event of its channel until the gap is posted). Gaps and resets always fit;
 * one of a channel with a pending gap sends that gap first. */
static void post_to(struct hub *h, unsigned i, struct message *msg, size_t weight)
{
    struct overflow *o = h->overflow[i];

    if (overflow_count(o)) {
        if (msg->kind == MESSAGE_EVENT && overflow_holds(o, msg->channel, msg->channel_len)) {
            overflow_add(o, msg);
            return;
        }
        if (msg->kind != MESSAGE_EVENT) {
            struct message *gap = overflow_take(o, msg->channel, msg->channel_len);

            if (gap && post_gap(gap, h->planes[i]) < 0)
                message_unref(&gap);
        }
    }
    if (plane_post_quiet(h->planes[i], msg, weight) < 0) {
        overflow_add(o, msg);
        if (!evtimer_pending(h->ev_overflow, NULL)) {
            struct timeval tv = {.tv_usec = 50000};

            evtimer_add(h->ev_overflow, &tv);
        }
    }
}

/* Every 50 ms while a mailbox refused events: their gaps go once it has room again. */
static void on_overflow_tick(evutil_socket_t fd, short what, void *arg)
{
    struct hub *h = arg;
    struct timeval tv = {.tv_usec = 50000};
    size_t left = 0;

    (void)fd;
    (void)what;
    for (unsigned i = 0; i < h->n_planes; i++) {
        if (!overflow_count(h->overflow[i]))
            continue;
        if (plane_backlog_bytes(h->planes[i]) < h->cfg->max_backlog_bytes / 2)
            left += overflow_flush(h->overflow[i], post_gap, h->planes[i]);
        else
            left += overflow_count(h->overflow[i]);
        h->dirty |= UINT64_C(1) << (i % 64);
    }
    if (h->dirty && !h->wake_pending) {
        h->wake_pending = true;
        event_active(h->ev_wake, 0, 0);
    }
    if (left)
        evtimer_add(h->ev_overflow, &tv);
}

/* Hands one event to the planes that have its channel (a copy each beyond the first, see
 * message_clone), without waking them: on_wake wakes each once after the current loop turn,
 * so a batch, or every event read from Redis in one read, costs one wake per plane. */
static void post_all(struct hub *h, struct message *msg)
{
    unsigned members;
    uint64_t mask = registry_lookup(msg->channel, msg->channel_len, &members);
    /* what it will weigh in each plane's queues: its subscribers spread evenly over the planes
     * that hold the channel, as the kernel spreads connections over their listen sockets */
    int holders = __builtin_popcountll(mask);
    size_t weight = holders ? message_wire_len(msg) * ((members + holders - 1) / holders) : 0;
    bool shared = false;

    metrics_add(&metrics.events_received, 1);
    for (unsigned i = 0; i < h->n_planes && mask; i++) {
        struct message *copy;

        if (!(mask & (UINT64_C(1) << (i % 64))))
            continue;
        copy = shared ? message_clone(msg) : message_ref(msg);
        shared = true;
        post_to(h, i, copy, weight);
        message_unref(&copy);
        h->dirty |= UINT64_C(1) << (i % 64);
    }
    if (h->dirty && !h->wake_pending) {
        h->wake_pending = true;
        event_active(h->ev_wake, 0, 0);
    }
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct hub *h = arg;
    uint64_t dirty = h->dirty;

    (void)fd;
    (void)what;
    h->dirty = 0;
    h->wake_pending = false;
    for (unsigned i = 0; i < h->n_planes; i++)
        if (dirty & (UINT64_C(1) << (i % 64)))
            plane_flush(h->planes[i]);
}

static void on_broker_deliver(struct message *msg, void *arg)
{
    struct hub *h = arg;

    sequencer_event(h->seq, msg);
}

static void on_sequenced(struct message *msg, void *arg)
{
    post_all(arg, msg);
}

static void on_resubscribed(void *arg, unsigned shard)
{
    struct hub *h = arg;

    sequencer_resubscribed(h->seq, shard);
}

/* The sequencer's answer to a plane's subscribe. */
static void on_answer(unsigned plane, struct position_answer *a, void *arg)
{
    struct hub *h = arg;

    if (plane >= h->n_planes) {
        position_answer_free(a);
        return;
    }
    plane_post_position(h->planes[plane], a);
}

/* Planes' threads: a subscribe asks its position. */
static void on_request(struct position_request *q, void *arg)
{
    struct hub *h = arg;

    mailbox_post(h->inbox, MAIL_SUBSCRIBE, NULL, q);
}

static void wake_inbox(void *arg)
{
    struct hub *h = arg;

    event_active(h->ev_inbox, 0, 0);
}

static void on_mail(struct mail *mail, void *arg)
{
    struct hub *h = arg;

    if (mail->kind == MAIL_SUBSCRIBE)
        sequencer_request(h->seq, mail->data);
    else
        position_request_free(mail->data);
    message_unref(&mail->msg);
}

static void on_inbox(evutil_socket_t fd, short what, void *arg)
{
    struct hub *h = arg;

    (void)fd;
    (void)what;
    mailbox_drain(h->inbox, on_mail, h);
}

static void on_stats_tick(evutil_socket_t fd, short what, void *arg)
{
    struct hub *h = arg;
    struct metrics_context ctx;
    struct message *msg;
    char *json;

    (void)fd;
    (void)what;
    hub_metrics_context(h, &ctx);
    json = metrics_render_json(&ctx);
    msg = event_build_raw("$stats", "stats", json, ctx.now_ms, &h->ids);
    free(json);
    if (msg) {
        history_append(h->local, msg, ctx.now_ms);
        sequencer_event(h->seq, msg);
        message_unref(&msg);
    }
}

/* Planes' threads: a drain finished. */
static void on_plane_done(struct plane *p, void *arg)
{
    struct hub *h = arg;

    (void)p;
    atomic_fetch_add(&h->planes_done, 1);
    event_active(h->ev_plane_done, 0, 0);
}

static void on_plane_done_main(evutil_socket_t fd, short what, void *arg)
{
    struct hub *h = arg;

    (void)fd;
    (void)what;
    /* activations from two planes may merge into one call: count with the atomic */
    if (atomic_load(&h->planes_done) >= h->n_planes) {
        log_info("hub", "drain complete");
        event_base_loopbreak(h->base);
    }
}

static void on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct hub *h = arg;

    (void)fd;
    (void)what;
    log_warn("hub", "drain time is over: closing what is left");
    event_base_loopbreak(h->base);
}

/* Every 250 ms: READY=1 once (both planes running, broker connected), STATUS= when readiness
 * changes, and WATCHDOG=1 only while the control loop (this timer) and every delivery loop
 * (its alive stamp) are turning. */
static void on_systemd_tick(evutil_socket_t fd, short what, void *arg)
{
    struct hub *h = arg;
    bool ready = hub_is_ready(h);

    (void)fd;
    (void)what;
    if (ready != h->was_ready && !h->is_draining) {
        char status[160];

        snprintf(status, sizeof(status), "%s; %s broker %s", ready ? "ready" : "not ready",
                 h->broker->ops->name, ready ? "connected" : "not connected");
        if (ready && !h->sent_ready)
            notify_ready(status);
        else
            notify_status(status);
        h->sent_ready |= ready;
        h->was_ready = ready;
    }
    if (h->watchdog_usec) {
        int64_t now = clock_mono_ms(), limit = (int64_t)(h->watchdog_usec / 2000);

        for (unsigned i = 0; i < h->n_planes; i++) {
            if (now - plane_alive_ms(h->planes[i]) > limit) {
                log_error("hub", "delivery plane %u has not turned for %lld ms: no watchdog ping",
                          i, (long long)(now - plane_alive_ms(h->planes[i])));
                return;
            }
        }
        notify_watchdog();
    }
}

static bool api_is_draining(void *arg)
{
    return ((struct hub *)arg)->is_draining;
}

static bool api_is_overloaded(void *arg)
{
    return hub_is_overloaded(arg);
}

static bool api_is_ready(void *arg)
{
    return hub_is_ready(arg);
}

static void api_metrics_context(void *arg, struct metrics_context *ctx)
{
    hub_metrics_context(arg, ctx);
}

/* /ready's body with Redis shards: the hub's word and each shard's (hub/DESIGN.md, "Redis
 * shards": ready while one shard is up and every hub was given the same list). */
static char *api_ready_body(void *arg, bool is_ready)
{
    struct hub *h = arg;
    struct broker_shard shards[SHARD_MAX];
    size_t n = h->broker && h->broker->ops->shards
                   ? h->broker->ops->shards(h->broker, shards, SHARD_MAX)
                   : 0;
    const char *why = NULL;
    json_t *list, *o;
    bool all = true;
    char *s;

    if (!n)
        return NULL;
    list = json_array();
    for (size_t i = 0; i < n && i < SHARD_MAX; i++) {
        json_array_append_new(
            list, json_pack("{s:s,s:b}", "url", shards[i].name, "ready", shards[i].is_ready));
        all &= shards[i].is_ready;
    }
    if (is_ready) {
        o = json_pack("{s:s,s:o}", "status", all ? "ready" : "degraded", "shards", list);
    } else {
        if (h->is_draining)
            why = "the hub is shutting down";
        else if (h->broker->ops->not_ready_reason)
            why = h->broker->ops->not_ready_reason(h->broker);
        o = json_pack("{s:s,s:s,s:o}", "error", "unavailable", "message",
                      why ? why : "the broker is not connected", "shards", list);
    }
    s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        xalloc_fail(0);
    return s;
}

void hub_drain(struct hub *h)
{
    struct timeval tv = {.tv_sec = (time_t)h->cfg->drain_seconds + 1};

    if (h->is_draining)
        return;
    h->is_draining = true;
    notify_stopping("draining: closing clients with 1001");
    log_info("hub", "draining: /ready is 503, closing %u planes' clients with 1001 within %u s",
             h->n_planes, h->cfg->drain_seconds);
    for (unsigned i = 0; i < h->n_planes; i++)
        plane_drain(h->planes[i]);
    evtimer_add(h->ev_drain_deadline, &tv);
}

void hub_reload(struct hub *h)
{
    const struct config *cfg = h->cfg;
    struct tls_pair *pair;
    char err[512];

    if (!cfg->tls) {
        log_info("hub", "SIGHUP: nothing to reload (no --tls-cert)");
        return;
    }
    pair = tls_pair_load(cfg->tls_cert, cfg->tls_key, err, sizeof(err));
    if (!pair) {
        metrics_add(&metrics.tls_reload_failures, 1);
        log_error("tls", "SIGHUP: %s: still serving the certificate loaded before", err);
        return;
    }
    for (unsigned i = 0; i < h->n_planes; i++)
        plane_post_tls(h->planes[i], pair);
    metrics_add(&metrics.tls_reloads, 1);
    atomic_store_explicit(&metrics.tls_not_after, tls_pair_not_after(pair), memory_order_relaxed);
    log_info("tls", "SIGHUP: new handshakes get %s", tls_pair_describe(pair));
    if (tls_pair_not_after(pair) * 1000 < clock_wall_ms())
        log_warn("tls", "the certificate in %s has expired", cfg->tls_cert);
    tls_pair_unref(&pair);
}

/* The broker (Redis or in-process), the hub's local history and the sequencer. */
static int start_broker(struct hub *h, uint64_t seed, char *err, size_t errlen)
{
    const struct config *cfg = h->cfg;
    const struct history_limits local = {
        .size = cfg->history_size,
        .ttl_ms = (int64_t)cfg->history_ttl * 1000,
        .memory = 4u << 20, /* the hub's own $ channels: small */
    };

    if (cfg->redis_shards > 1) {
        h->broker = broker_sharded_new(h->base, cfg, on_broker_deliver, h, err, errlen);
        if (!h->broker)
            return -1;
    } else if (cfg->redis_url) {
        h->broker = broker_redis_new(h->base, cfg, on_broker_deliver, h, err, errlen);
        if (!h->broker)
            return -1;
    } else {
        h->broker = broker_memory_new(h->base, cfg, seed, on_broker_deliver, h);
    }
    h->broker->resubscribed = on_resubscribed;
    h->local = history_new(&local, seed ^ UINT64_C(0x5851f42d4c957f2d));
    h->seq = sequencer_new(h->base, h->broker, h->local, on_sequenced, on_answer, h);
    if (cfg->publish_rate)
        h->pubrate = h->broker->ops->pubrate
                         ? h->broker->ops->pubrate(h->broker, cfg->publish_rate)
                         : pubrate_local_new(cfg->publish_rate, cfg->publish_rate_identities);
    return 0;
}

static int start_planes(struct hub *h, char *err, size_t errlen)
{
    const struct config *cfg = h->cfg;

    h->inbox = mailbox_new(SIZE_MAX, wake_inbox, h);
    h->ev_inbox = event_new(h->base, -1, 0, on_inbox, h);
    h->gate = admission_gate_new();
    h->planes = xcalloc(cfg->delivery_threads, sizeof(*h->planes));
    h->overflow = xcalloc(cfg->delivery_threads, sizeof(*h->overflow));
    for (unsigned i = 0; i < cfg->delivery_threads; i++)
        h->overflow[i] = overflow_new();
    for (unsigned i = 0; i < cfg->delivery_threads; i++) {
        const struct plane_host host = {
            .gate = h->gate,
            .done = on_plane_done,
            .request = on_request,
            .arg = h,
        };

        h->planes[i] = plane_new(cfg, i, &host, err, errlen);
        if (!h->planes[i])
            return -1;
        h->n_planes++;
    }
    return 0;
}

static int start_api(struct hub *h, char *err, size_t errlen)
{
    const struct api_host host = {
        .cfg = h->cfg,
        .base = h->base,
        .broker = h->broker,
        .pubrate = h->pubrate,
        .seq = h->seq,
        .local = h->local,
        .ids = &h->ids,
        .is_draining = api_is_draining,
        .is_ready = api_is_ready,
        .is_overloaded = api_is_overloaded,
        .metrics_context = api_metrics_context,
        .ready_body = api_ready_body,
        .arg = h,
    };

    h->api = api_new(&host, err, errlen);
    return h->api ? 0 : -1;
}

int hub_start(struct hub *h, const struct config *cfg, struct event_base *base, char *err,
              size_t errlen)
{
    struct timeval second = {.tv_sec = 1}, quarter = {.tv_usec = 250000};
    uint64_t seed = 0;

    memset(h, 0, sizeof(*h));
    h->cfg = cfg;
    h->base = base;
    h->started_ms = clock_wall_ms();
    if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
        seed = (uint64_t)h->started_ms ^ (uint64_t)getpid();
    event_ids_init(&h->ids, seed);
    h->ev_plane_done = event_new(base, -1, 0, on_plane_done_main, h);
    h->ev_wake = event_new(base, -1, 0, on_wake, h);
    h->ev_overflow = evtimer_new(base, on_overflow_tick, h);
    h->ev_drain_deadline = evtimer_new(base, on_drain_deadline, h);
    h->ev_stats = event_new(base, -1, EV_PERSIST, on_stats_tick, h);
    h->ev_systemd = event_new(base, -1, EV_PERSIST, on_systemd_tick, h);
    h->watchdog_usec = notify_watchdog_usec();

    if (start_broker(h, seed, err, errlen) < 0 || start_planes(h, err, errlen) < 0 ||
        start_api(h, err, errlen) < 0)
        goto fail;
    for (unsigned i = 0; i < h->n_planes; i++) {
        if (plane_start(h->planes[i]) < 0) {
            snprintf(err, errlen, "cannot start delivery thread %u", i);
            goto fail;
        }
    }
    event_add(h->ev_stats, &second);
    event_add(h->ev_systemd, &quarter);
    on_systemd_tick(-1, 0, h); /* the in-process broker is ready at once */
    log_info("hub",
             "herald " HERALD_VERSION ": /ws, /sse and the dashboard on %s:%u%s (%u delivery "
             "threads, %s), API on %s:%u (plain HTTP), %s broker",
             cfg->listen.host, cfg->listen.port, cfg->tls ? " over TLS" : "", h->n_planes,
             cfg->tls                                           ? "sending through OpenSSL"
             : h->n_planes && plane_uses_io_uring(h->planes[0]) ? "sending through io_uring"
                                                                : "sending with send()",
             cfg->api_listen.host, cfg->api_listen.port, h->broker->ops->name);
    if (cfg->tls) {
        atomic_store_explicit(&metrics.tls_not_after, tls_pair_not_after(cfg->tls),
                              memory_order_relaxed);
        log_info("tls", "serving %s", tls_pair_describe(cfg->tls));
        if (tls_pair_not_after(cfg->tls) * 1000 < clock_wall_ms())
            log_warn("tls", "the certificate in %s has expired", cfg->tls_cert);
    }
    return 0;
fail:
    hub_stop(h);
    return -1;
}

static void free_event(struct event **ev)
{
    if (*ev)
        event_free(*ev);
    *ev = NULL;
}

void hub_stop(struct hub *h)
{
    struct timeval flush = {.tv_usec = 200000};
    struct broker *broker;
    size_t answered;

    for (unsigned i = 0; i < h->n_planes; i++)
        plane_stop(h->planes[i]);
    for (unsigned i = 0; i < h->n_planes; i++)
        plane_free(h->planes[i]);
    free(h->planes);
    h->planes = NULL;
    for (unsigned i = 0; h->overflow && i < h->cfg->delivery_threads; i++)
        overflow_free(h->overflow[i]);
    free(h->overflow);
    h->overflow = NULL;
    h->n_planes = 0;
    free_event(&h->ev_stats);
    free_event(&h->ev_systemd);
    free_event(&h->ev_plane_done);
    free_event(&h->ev_wake);
    free_event(&h->ev_overflow);
    free_event(&h->ev_drain_deadline);
    free_event(&h->ev_inbox);
    mailbox_free(h->inbox);
    h->inbox = NULL;
    /* Pending rate counts and publishes are answered 503 now; the loop then runs a moment
     * more so those answers leave before the API's connections are closed. */
    answered = api_detach(h->api);
    sequencer_free(h->seq);
    h->seq = NULL;
    pubrate_free(h->pubrate);
    h->pubrate = NULL;
    broker = h->broker;
    h->broker = NULL;
    broker_free(broker); /* may turn the loop once (redis.c) */
    history_free(h->local);
    h->local = NULL;
    if (answered && h->base) {
        event_base_loopexit(h->base, &flush);
        event_base_dispatch(h->base);
    }
    api_free(h->api);
    h->api = NULL;
    admission_gate_free(h->gate);
    h->gate = NULL;
}
