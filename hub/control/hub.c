/* hub.c -- start and stop order, and the control plane's own timers.
 * Start: broker, delivery planes (each binds --listen), API, then the planes' threads.
 * Events the broker hands back are posted to every plane's mailbox; the $stats snapshot is
 * posted the same way once a second (it is this instance's own, so it never crosses the
 * broker). Drain: /ready and publishes turn 503, every plane closes its clients with 1001,
 * and the loop exits when all planes report done or --drain-seconds (plus a second) passes.
 * Stop: planes joined, then broker, API, and the rest freed in reverse order. */
#include "hub.h"

#include "api.h"
#include "broker/broker.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/message.h"
#include "common/metrics.h"
#include "common/registry.h"
#include "common/xalloc.h"
#include "delivery/admission.h"
#include "delivery/plane.h"
#include "herald_version.h"
#include "notify.h"
#include "pubrate.h"

#include <event2/event.h>
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
        ctx->delivery[i] = plane_delivery_latency(h->planes[i]);
    }
    ctx->is_ready = hub_is_ready(h);
    ctx->is_draining = h->is_draining;
}

/* Hands one event to the planes that have its channel (a copy each beyond the first, see
 * message_clone), without waking them: on_wake wakes each once after the current loop turn,
 * so a batch, or every event read from Redis in one read, costs one wake per plane. */
static void post_all(struct hub *h, struct message *msg)
{
    uint64_t mask = registry_planes(msg->channel, msg->channel_len);
    bool shared = false;

    metrics_add(&metrics.events_received, 1);
    for (unsigned i = 0; i < h->n_planes && mask; i++) {
        struct message *copy;
        int rc;

        if (!(mask & (UINT64_C(1) << (i % 64))))
            continue;
        copy = shared ? message_clone(msg) : message_ref(msg);
        shared = true;
        rc = plane_post_quiet(h->planes[i], copy);
        message_unref(&copy);
        if (rc < 0) {
            metrics_add(&metrics.dropped[DROP_MAILBOX_FULL], 1);
            log_warn("hub", "plane %u is not keeping up: event %s dropped for its clients", i,
                     msg->id);
        }
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
    post_all(arg, msg);
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
        post_all(h, msg);
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

static bool api_is_ready(void *arg)
{
    return hub_is_ready(arg);
}

static void api_metrics_context(void *arg, struct metrics_context *ctx)
{
    hub_metrics_context(arg, ctx);
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

int hub_start(struct hub *h, const struct config *cfg, struct event_base *base, char *err,
              size_t errlen)
{
    struct timeval second = {.tv_sec = 1};
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
    h->ev_drain_deadline = evtimer_new(base, on_drain_deadline, h);
    h->ev_stats = event_new(base, -1, EV_PERSIST, on_stats_tick, h);
    h->ev_systemd = event_new(base, -1, EV_PERSIST, on_systemd_tick, h);
    h->watchdog_usec = notify_watchdog_usec();

    if (cfg->redis_url) {
        h->broker = broker_redis_new(base, cfg, on_broker_deliver, h, err, errlen);
        if (!h->broker)
            goto fail;
    } else {
        h->broker = broker_memory_new(base, on_broker_deliver, h);
    }

    if (cfg->publish_rate)
        h->pubrate = h->broker->ops->pubrate
                         ? h->broker->ops->pubrate(h->broker, cfg->publish_rate)
                         : pubrate_local_new(cfg->publish_rate, cfg->publish_rate_identities);
    h->gate = admission_gate_new();
    h->planes = xcalloc(cfg->delivery_threads, sizeof(*h->planes));
    for (unsigned i = 0; i < cfg->delivery_threads; i++) {
        h->planes[i] = plane_new(cfg, i, h->gate, on_plane_done, h, err, errlen);
        if (!h->planes[i])
            goto fail;
        h->n_planes++;
    }
    {
        const struct api_host host = {
            .cfg = cfg,
            .base = base,
            .broker = h->broker,
            .pubrate = h->pubrate,
            .ids = &h->ids,
            .is_draining = api_is_draining,
            .is_ready = api_is_ready,
            .metrics_context = api_metrics_context,
            .arg = h,
        };

        h->api = api_new(&host, err, errlen);
    }
    if (!h->api)
        goto fail;
    for (unsigned i = 0; i < h->n_planes; i++) {
        if (plane_start(h->planes[i]) < 0) {
            snprintf(err, errlen, "cannot start delivery thread %u", i);
            goto fail;
        }
    }
    event_add(h->ev_stats, &second);
    {
        struct timeval quarter = {.tv_usec = 250000};

        event_add(h->ev_systemd, &quarter);
        on_systemd_tick(-1, 0, h); /* the in-process broker is ready at once */
    }
    log_info("hub",
             "herald " HERALD_VERSION ": /ws and the dashboard on %s:%u (%u delivery "
             "threads), API on %s:%u, %s broker",
             cfg->listen.host, cfg->listen.port, h->n_planes, cfg->api_listen.host,
             cfg->api_listen.port, h->broker->ops->name);
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
    size_t answered;

    for (unsigned i = 0; i < h->n_planes; i++)
        plane_stop(h->planes[i]);
    for (unsigned i = 0; i < h->n_planes; i++)
        plane_free(h->planes[i]);
    free(h->planes);
    h->planes = NULL;
    h->n_planes = 0;
    free_event(&h->ev_stats);
    free_event(&h->ev_systemd);
    free_event(&h->ev_plane_done);
    free_event(&h->ev_wake);
    free_event(&h->ev_drain_deadline);
    /* Pending rate counts and publishes are answered 503 now; the loop then runs a moment
     * more so those answers leave before the API's connections are closed. */
    answered = api_pending(h->api);
    pubrate_free(h->pubrate);
    h->pubrate = NULL;
    broker_free(h->broker);
    h->broker = NULL;
    if (answered && h->base) {
        event_base_loopexit(h->base, &flush);
        event_base_dispatch(h->base);
    }
    api_free(h->api);
    h->api = NULL;
    admission_gate_free(h->gate);
    h->gate = NULL;
}
