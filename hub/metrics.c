/* metrics.c -- one set of atomic counters for the whole process, written by both planes
 * with relaxed atomics (they are statistics, not synchronisation) and read by the control
 * plane to render /metrics, /stats and the $stats events. */
#include "metrics.h"

#include "channel.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct metrics metrics;
struct histogram publish_latency;

const uint64_t histogram_bounds_us[HISTOGRAM_BUCKETS - 1] = {
    250,   500,    1000,   2000,   5000,    10000,   25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000};

void histogram_observe(struct histogram *h, uint64_t us)
{
    size_t i = 0;

    while (i < HISTOGRAM_BUCKETS - 1 && us > histogram_bounds_us[i])
        i++;
#define BUMP(x, n)                                                                                 \
    atomic_store_explicit(&(x), atomic_load_explicit(&(x), memory_order_relaxed) + (n),            \
                          memory_order_relaxed)
    BUMP(h->bucket[i], 1);
    BUMP(h->count, 1);
    BUMP(h->sum_us, us);
#undef BUMP
}

static const char *const drop_names[DROP_REASONS] = {"slow_consumer", "mailbox_full", "closing"};
static const char *const close_names[CLOSE_REASONS] = {
    "normal", "slow_consumer", "rate_limit", "bad_frame", "drain", "timeout", "auth", "origin"};
static const char *const refuse_names[REFUSE_REASONS] = {"capacity", "per_ip", "draining", "path"};

struct buf {
    char *p;
    size_t n, cap;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int len;

    for (;;) {
        va_start(ap, fmt);
        len = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (len >= 0 && (size_t)len < b->cap - b->n)
            break;
        b->cap = b->cap * 2 + (size_t)len + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    b->n += (size_t)len;
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static unsigned long long dropped_total(void)
{
    unsigned long long n = 0;

    for (int i = 0; i < DROP_REASONS; i++)
        n += LOAD(metrics.dropped[i]);
    return n;
}

/* Resident set size in bytes, from /proc/self/statm; 0 if unknown. */
static unsigned long long rss_bytes(void)
{
    unsigned long long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (!f)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * (unsigned long long)sysconf(_SC_PAGESIZE);
}

/* Sums n one-writer histograms into one Prometheus histogram (cumulative buckets). */
static void put_histogram(struct buf *b, const char *name, const char *help,
                          const struct histogram *const *parts, size_t n)
{
    unsigned long long cum = 0, count = 0, sum = 0;

    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (size_t i = 0; i < HISTOGRAM_BUCKETS; i++) {
        for (size_t k = 0; k < n; k++)
            cum += LOAD(parts[k]->bucket[i]);
        if (i < HISTOGRAM_BUCKETS - 1)
            put(b, "%s_bucket{le=\"%g\"} %llu\n", name, (double)histogram_bounds_us[i] / 1e6, cum);
        else
            put(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, cum);
    }
    for (size_t k = 0; k < n; k++) {
        count += LOAD(parts[k]->count);
        sum += LOAD(parts[k]->sum_us);
    }
    put(b, "%s_sum %.6f\n%s_count %llu\n", name, (double)sum / 1e6, name, count);
}

char *metrics_render_prometheus(const struct metrics_context *ctx)
{
    const struct histogram *publish_parts[1] = {&publish_latency};
    struct buf b = {malloc(4096), 0, 4096};

    if (!b.p)
        abort();
    b.p[0] = '\0';
    put(&b,
        "# HELP herald_info The hub's build and instance.\n# TYPE herald_info gauge\n"
        "herald_info{instance=\"%s\",broker=\"%s\"} 1\n",
        ctx->instance, ctx->broker);
    put(&b,
        "# HELP herald_ready 1 when the hub accepts clients and its broker is up.\n"
        "# TYPE herald_ready gauge\nherald_ready %d\n",
        ctx->is_ready);
    put(&b,
        "# HELP herald_draining 1 while shutting down.\n# TYPE herald_draining gauge\n"
        "herald_draining %d\n",
        ctx->is_draining);
    put(&b,
        "# HELP herald_connections WebSocket connections open now.\n"
        "# TYPE herald_connections gauge\nherald_connections %lld\n",
        LOAD(metrics.connections));
    put(&b,
        "# HELP herald_connections_accepted_total WebSocket connections accepted.\n"
        "# TYPE herald_connections_accepted_total counter\n"
        "herald_connections_accepted_total %llu\n",
        LOAD(metrics.connections_accepted));
    put(&b,
        "# HELP herald_connections_refused_total Upgrades refused before a session, by reason.\n"
        "# TYPE herald_connections_refused_total counter\n");
    for (int i = 0; i < REFUSE_REASONS; i++)
        put(&b, "herald_connections_refused_total{reason=\"%s\"} %llu\n", refuse_names[i],
            LOAD(metrics.refused[i]));
    put(&b, "# HELP herald_disconnects_total Connections ended, by reason.\n"
            "# TYPE herald_disconnects_total counter\n");
    for (int i = 0; i < CLOSE_REASONS; i++)
        put(&b, "herald_disconnects_total{reason=\"%s\"} %llu\n", close_names[i],
            LOAD(metrics.closed[i]));
    put(&b,
        "# HELP herald_subscriptions Channel subscriptions held now.\n"
        "# TYPE herald_subscriptions gauge\nherald_subscriptions %lld\n",
        LOAD(metrics.subscriptions));
    put(&b,
        "# HELP herald_channels Distinct channels with a subscriber now.\n"
        "# TYPE herald_channels gauge\nherald_channels %zu\n",
        channel_registry_count());
    put(&b,
        "# HELP herald_publish_requests_total POST /publish requests.\n"
        "# TYPE herald_publish_requests_total counter\nherald_publish_requests_total %llu\n",
        LOAD(metrics.publish_requests));
    put(&b,
        "# HELP herald_publish_errors_total POST /publish requests refused.\n"
        "# TYPE herald_publish_errors_total counter\nherald_publish_errors_total %llu\n",
        LOAD(metrics.publish_errors));
    put(&b,
        "# HELP herald_publish_rate_limited_total Publishes refused with 429.\n"
        "# TYPE herald_publish_rate_limited_total counter\n"
        "herald_publish_rate_limited_total %llu\n",
        LOAD(metrics.publish_rate_limited));
    put(&b,
        "# HELP herald_publish_rate_fail_open_total Publishes let through because the "
        "cluster-wide count could not be read.\n"
        "# TYPE herald_publish_rate_fail_open_total counter\n"
        "herald_publish_rate_fail_open_total %llu\n",
        LOAD(metrics.publish_rate_fail_open));
    put(&b,
        "# HELP herald_events_published_total Events the broker took from this hub's API.\n"
        "# TYPE herald_events_published_total counter\n"
        "herald_events_published_total %llu\n",
        LOAD(metrics.events_published));
    put(&b,
        "# HELP herald_events_received_total Events handed to the delivery planes.\n"
        "# TYPE herald_events_received_total counter\nherald_events_received_total %llu\n",
        LOAD(metrics.events_received));
    put(&b,
        "# HELP herald_events_delivered_total Event frames written to clients.\n"
        "# TYPE herald_events_delivered_total counter\n"
        "herald_events_delivered_total %llu\n",
        LOAD(metrics.events_delivered));
    put(&b, "# HELP herald_events_dropped_total Event frames not delivered, by reason.\n"
            "# TYPE herald_events_dropped_total counter\n");
    for (int i = 0; i < DROP_REASONS; i++)
        put(&b, "herald_events_dropped_total{reason=\"%s\"} %llu\n", drop_names[i],
            LOAD(metrics.dropped[i]));
    put(&b,
        "# HELP herald_client_frames_total Frames received from clients.\n"
        "# TYPE herald_client_frames_total counter\nherald_client_frames_total %llu\n",
        LOAD(metrics.frames_received));
    put(&b,
        "# HELP herald_mailbox_depth Mails waiting for the delivery planes.\n"
        "# TYPE herald_mailbox_depth gauge\nherald_mailbox_depth %zu\n",
        ctx->mailbox_depth);
    put(&b,
        "# HELP herald_delivery_planes Delivery threads.\n"
        "# TYPE herald_delivery_planes gauge\nherald_delivery_planes %u\n",
        ctx->planes);
    if (!strcmp(ctx->broker, "redis")) {
        put(&b,
            "# HELP herald_redis_connected 1 when both Redis links are up.\n"
            "# TYPE herald_redis_connected gauge\nherald_redis_connected %d\n",
            atomic_load_explicit(&metrics.redis_connected, memory_order_relaxed));
        put(&b,
            "# HELP herald_redis_reconnects_total Attempts to reconnect a Redis link.\n"
            "# TYPE herald_redis_reconnects_total counter\nherald_redis_reconnects_total %llu\n",
            LOAD(metrics.redis_reconnects));
        put(&b,
            "# HELP herald_redis_publish_errors_total PUBLISHes that failed.\n"
            "# TYPE herald_redis_publish_errors_total counter\n"
            "herald_redis_publish_errors_total %llu\n",
            LOAD(metrics.redis_publish_errors));
        put(&b,
            "# HELP herald_redis_skipped_payloads_total Payloads or records not understood.\n"
            "# TYPE herald_redis_skipped_payloads_total counter\n"
            "herald_redis_skipped_payloads_total %llu\n",
            LOAD(metrics.redis_unknown_payloads));
        put(&b,
            "# HELP herald_redis_heartbeat_lag_seconds Publish to receipt of our last heartbeat.\n"
            "# TYPE herald_redis_heartbeat_lag_seconds gauge\n"
            "herald_redis_heartbeat_lag_seconds %.3f\n",
            (double)LOAD(metrics.redis_heartbeat_lag_ms) / 1000.0);
    }
    put(&b,
        "# HELP herald_process_resident_memory_bytes Resident set size.\n"
        "# TYPE herald_process_resident_memory_bytes gauge\n"
        "herald_process_resident_memory_bytes %llu\n",
        rss_bytes());
    put(&b,
        "# HELP herald_uptime_seconds Seconds since start.\n"
        "# TYPE herald_uptime_seconds gauge\nherald_uptime_seconds %.3f\n",
        (double)(ctx->now_ms - ctx->started_ms) / 1000.0);
    put_histogram(&b, "herald_publish_latency_seconds",
                  "POST /publish received to the broker's answer (202 or 503).", publish_parts, 1);
    put_histogram(&b, "herald_delivery_latency_seconds",
                  "An event's publish time (ts) to the write() that carried it to a client.",
                  ctx->delivery, ctx->planes);
    return b.p;
}

char *metrics_render_json(const struct metrics_context *ctx)
{
    json_t *o = json_object();
    json_t *drops = json_object();
    char *s;

    for (int i = 0; i < DROP_REASONS; i++)
        json_object_set_new(drops, drop_names[i],
                            json_integer((json_int_t)LOAD(metrics.dropped[i])));
    json_object_set_new(o, "instance", json_string(ctx->instance));
    json_object_set_new(o, "broker", json_string(ctx->broker));
    json_object_set_new(o, "ts", json_integer(ctx->now_ms));
    json_object_set_new(o, "uptime_s", json_integer((ctx->now_ms - ctx->started_ms) / 1000));
    json_object_set_new(o, "ready", json_boolean(ctx->is_ready));
    json_object_set_new(o, "draining", json_boolean(ctx->is_draining));
    json_object_set_new(o, "connections", json_integer(LOAD(metrics.connections)));
    json_object_set_new(o, "subscriptions", json_integer(LOAD(metrics.subscriptions)));
    json_object_set_new(o, "channels", json_integer((json_int_t)channel_registry_count()));
    json_object_set_new(o, "events_published",
                        json_integer((json_int_t)LOAD(metrics.events_published)));
    json_object_set_new(o, "events_received",
                        json_integer((json_int_t)LOAD(metrics.events_received)));
    json_object_set_new(o, "events_delivered",
                        json_integer((json_int_t)LOAD(metrics.events_delivered)));
    json_object_set_new(o, "events_dropped", json_integer((json_int_t)dropped_total()));
    json_object_set_new(o, "dropped", drops);
    json_object_set_new(o, "mailbox_depth", json_integer((json_int_t)ctx->mailbox_depth));
    json_object_set_new(o, "memory_bytes", json_integer((json_int_t)rss_bytes()));
    s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        abort();
    return s;
}
