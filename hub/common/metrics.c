/* metrics.c -- one set of atomic counters for the whole process, written by every thread with
 * relaxed atomics (they are statistics, not synchronisation) and read by the control plane.
 * One table below lists every metric: its Prometheus name, type and help, its key in the
 * /stats and $stats JSON, and where its value is. Both renderers walk that table, so /metrics
 * and /stats cannot disagree on what a value is. */
#include "metrics.h"

#include "registry.h"
#include "xalloc.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
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

static const char *const drop_names[DROP_REASONS] = {"slow_consumer", "overload", "closing"};
static const char *const close_names[CLOSE_REASONS] = {
    "normal", "slow_consumer", "rate_limit", "bad_frame", "drain", "timeout", "auth", "origin"};
static const char *const api_refuse_names[API_REFUSE_REASONS] = {"capacity", "timeout",
                                                                 "bad_request"};
static const char *const refuse_names[REFUSE_REASONS] = {
    "capacity", "per_ip", "draining", "path", "bad_request", "auth", "origin"};

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
        b->p = xrealloc(b->p, b->cap);
    }
    b->n += (size_t)len;
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

/* Resident set size in bytes, from /proc/self/statm; 0 if unknown. */
static double rss_bytes(const struct metrics_context *ctx)
{
    unsigned long long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    (void)ctx;
    if (!f)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

static double dropped_total(const struct metrics_context *ctx)
{
    unsigned long long n = 0;

    (void)ctx;
    for (int i = 0; i < DROP_REASONS; i++)
        n += LOAD(metrics.dropped[i]);
    return (double)n;
}

static double ready(const struct metrics_context *ctx)
{
    return ctx->is_ready;
}
static double draining(const struct metrics_context *ctx)
{
    return ctx->is_draining;
}
static double channels(const struct metrics_context *ctx)
{
    (void)ctx;
    return (double)registry_count();
}
static double mailbox_depth(const struct metrics_context *ctx)
{
    return (double)ctx->mailbox_depth;
}

static double backlog_bytes(const struct metrics_context *ctx)
{
    return (double)ctx->backlog_bytes;
}

static double io_uring_planes(const struct metrics_context *ctx)
{
    return (double)ctx->io_uring_planes;
}

static double max_backlog_bytes(const struct metrics_context *ctx)
{
    return (double)ctx->max_backlog_bytes;
}
static double planes(const struct metrics_context *ctx)
{
    return ctx->planes;
}
static double uptime(const struct metrics_context *ctx)
{
    return (double)(ctx->now_ms - ctx->started_ms) / 1000.0;
}
static double now_ms(const struct metrics_context *ctx)
{
    return (double)ctx->now_ms;
}
enum metric_type { COUNTER, GAUGE, HISTOGRAM };
/* A value each Redis shard has (struct metrics_redis): rendered unlabelled with one Redis, with
 * a shard="i" label per shard with several. */
enum redis_field {
    R_NONE,
    R_CONNECTED,
    R_READY,
    R_MISMATCH,
    R_RECONNECTS,
    R_PUBLISH_ERRORS,
    R_SKIPPED,
    R_HEARTBEAT_LAG,
    R_INFO, /* herald_redis_shard_info{shard,url} 1 */
};
enum json_form { JSON_NONE, JSON_INT, JSON_BOOL };

struct metric {
    const char *name; /* Prometheus name; NULL: only in the JSON */
    enum metric_type type;
    const char *help;
    const char *json; /* key in /stats and $stats; NULL: only in /metrics */
    enum json_form form;
    enum redis_field redis; /* R_NONE: not a Redis value */
    bool is_sharded;        /* only with several Redis shards */
    bool is_tls;            /* only with --tls-cert */
    /* where the value is: exactly one of these */
    atomic_ullong *counter;
    atomic_llong *gauge;
    atomic_ullong *by_reason; /* one counter per label value */
    const char *const *reasons;
    size_t n_reasons;
    double (*computed)(const struct metrics_context *ctx);
    int decimals; /* of a computed value in /metrics */
};

#define REASONS(arr, names)                                                                        \
    .by_reason = (arr), .reasons = (names), .n_reasons = sizeof(names) / sizeof((names)[0])

static const struct metric table[] = {
    {.name = "herald_ready",
     .type = GAUGE,
     .help = "1 when the hub accepts clients and its broker is up.",
     .json = "ready",
     .form = JSON_BOOL,
     .computed = ready},
    {.name = "herald_draining",
     .type = GAUGE,
     .help = "1 while shutting down.",
     .json = "draining",
     .form = JSON_BOOL,
     .computed = draining},
    {.name = "herald_connections",
     .type = GAUGE,
     .help = "Client connections open now (WebSocket and SSE).",
     .json = "connections",
     .form = JSON_INT,
     .gauge = &metrics.connections},
    {.name = "herald_sse_connections",
     .type = GAUGE,
     .help = "SSE streams (GET /sse) open now, also counted in herald_connections.",
     .json = "sse_connections",
     .form = JSON_INT,
     .gauge = &metrics.sse_connections},
    {.name = "herald_connections_accepted_total",
     .type = COUNTER,
     .help = "Client connections accepted (WebSocket and SSE).",
     .counter = &metrics.connections_accepted},
    {.name = "herald_connections_refused_total",
     .type = COUNTER,
     .help = "Upgrades and SSE requests refused before a session, by reason.",
     REASONS(metrics.refused, refuse_names)},
    {.name = "herald_disconnects_total",
     .type = COUNTER,
     .help = "Connections ended, by reason.",
     REASONS(metrics.closed, close_names)},
    {.name = "herald_subscriptions",
     .type = GAUGE,
     .help = "Channel subscriptions held now.",
     .json = "subscriptions",
     .form = JSON_INT,
     .gauge = &metrics.subscriptions},
    {.name = "herald_channels",
     .type = GAUGE,
     .help = "Distinct channels with a subscriber now.",
     .json = "channels",
     .form = JSON_INT,
     .computed = channels},
    {.name = "herald_api_connections",
     .type = GAUGE,
     .help = "HTTP API connections open now.",
     .gauge = &metrics.api_connections},
    {.name = "herald_api_refused_total",
     .type = COUNTER,
     .help = "API connections or requests the server itself refused, by reason.",
     REASONS(metrics.api_refused, api_refuse_names)},
    {.name = "herald_publish_requests_total",
     .type = COUNTER,
     .help = "POST /publish requests.",
     .counter = &metrics.publish_requests},
    {.name = "herald_publish_errors_total",
     .type = COUNTER,
     .help = "POST /publish requests refused.",
     .counter = &metrics.publish_errors},
    {.name = "herald_publish_rate_limited_total",
     .type = COUNTER,
     .help = "Publishes refused with 429.",
     .counter = &metrics.publish_rate_limited},
    {.name = "herald_publish_rate_fail_open_total",
     .type = COUNTER,
     .help = "Publishes let through because the cluster-wide count could not be read.",
     .counter = &metrics.publish_rate_fail_open},
    {.name = "herald_publish_duplicates_total",
     .type = COUNTER,
     .help = "Publishes with an Idempotency-Key already seen: answered, not published again.",
     .counter = &metrics.publish_duplicates},
    {.name = "herald_publish_overloaded_total",
     .type = COUNTER,
     .help = "Publishes refused with 503 overloaded: delivery was behind past --max-backlog-bytes.",
     .json = "publish_overloaded",
     .form = JSON_INT,
     .counter = &metrics.publish_overloaded},
    {.name = "herald_history_events",
     .type = GAUGE,
     .help = "Events kept in this process for resume and last value (the in-process broker's, "
             "and the hub's own $ channels).",
     .json = "history_events",
     .form = JSON_INT,
     .gauge = &metrics.history_events},
    {.name = "herald_history_bytes",
     .type = GAUGE,
     .help = "Bytes those events and their channels' states take (bounded by --history-memory).",
     .json = "history_bytes",
     .form = JSON_INT,
     .gauge = &metrics.history_bytes},
    {.name = "herald_sequence_holes_total",
     .type = COUNTER,
     .help = "Holes found in a held channel's numbers (events lost on the way from Redis).",
     .counter = &metrics.seq_holes},
    {.name = "herald_sequence_repaired_total",
     .type = COUNTER,
     .help = "Events read back from history into such holes.",
     .counter = &metrics.seq_repaired},
    {.name = "herald_sequence_lost_total",
     .type = COUNTER,
     .help = "Events announced to subscribers as a gap: history no longer had them.",
     .counter = &metrics.seq_lost},
    {.name = "herald_sequence_resets_total",
     .type = COUNTER,
     .help = "Channels whose numbering restarted (a new epoch) under their subscribers.",
     .counter = &metrics.seq_resets},
    {.name = "herald_events_published_total",
     .type = COUNTER,
     .help = "Events the broker took from this hub's API.",
     .json = "events_published",
     .form = JSON_INT,
     .counter = &metrics.events_published},
    {.name = "herald_events_received_total",
     .type = COUNTER,
     .help = "Events handed to the delivery planes.",
     .json = "events_received",
     .form = JSON_INT,
     .counter = &metrics.events_received},
    {.name = "herald_events_delivered_total",
     .type = COUNTER,
     .help = "Event frames written to clients.",
     .json = "events_delivered",
     .form = JSON_INT,
     .counter = &metrics.events_delivered},
    {.type = COUNTER, .json = "events_dropped", .form = JSON_INT, .computed = dropped_total},
    {.name = "herald_events_dropped_total",
     .type = COUNTER,
     .help = "Event frames not delivered, by reason.",
     .json = "dropped",
     .form = JSON_INT,
     REASONS(metrics.dropped, drop_names)},
    {.name = "herald_client_frames_total",
     .type = COUNTER,
     .help = "Frames received from clients.",
     .counter = &metrics.frames_received},
    {.name = "herald_mailbox_depth",
     .type = GAUGE,
     .help = "Mails waiting for the delivery planes.",
     .json = "mailbox_depth",
     .form = JSON_INT,
     .computed = mailbox_depth},
    {.name = "herald_backlog_bytes",
     .type = GAUGE,
     .help = "Bytes taken for delivery and not yet written (mailboxes and connections' queues).",
     .json = "backlog_bytes",
     .form = JSON_INT,
     .computed = backlog_bytes},
    {.name = "herald_max_backlog_bytes",
     .type = GAUGE,
     .help = "--max-backlog-bytes: past it publishes answer 503 overloaded.",
     .computed = max_backlog_bytes},
    {.name = "herald_send_queue_overruns_total",
     .type = COUNTER,
     .help = "Frames queued past a connection's --send-queue-bytes because its socket kept up "
             "(the hub was behind, not the reader).",
     .counter = &metrics.queue_overruns},
    {.name = "herald_delivery_io_uring_planes",
     .type = GAUGE,
     .help = "Delivery planes sending through io_uring (--io-uring; the others write with send()).",
     .json = "io_uring_planes",
     .form = JSON_INT,
     .computed = io_uring_planes},
    {.name = "herald_delivery_planes",
     .type = GAUGE,
     .help = "Delivery threads.",
     .computed = planes},
    {.name = "herald_redis_connected",
     .type = GAUGE,
     .help = "1 when both Redis links are up.",
     .redis = R_CONNECTED},
    {.name = "herald_redis_reconnects_total",
     .type = COUNTER,
     .help = "Attempts to reconnect a Redis link.",
     .redis = R_RECONNECTS},
    {.name = "herald_redis_publish_errors_total",
     .type = COUNTER,
     .help = "PUBLISHes that failed.",
     .redis = R_PUBLISH_ERRORS},
    {.name = "herald_redis_skipped_payloads_total",
     .type = COUNTER,
     .help = "Payloads or records not understood.",
     .redis = R_SKIPPED},
    {.name = "herald_redis_heartbeat_lag_seconds",
     .type = GAUGE,
     .help = "Publish to receipt of our last heartbeat.",
     .redis = R_HEARTBEAT_LAG,
     .decimals = 3},
    {.name = "herald_tls_certificate_expiry_timestamp_seconds",
     .type = GAUGE,
     .help = "notAfter of the certificate new TLS handshakes get, in Unix seconds.",
     .is_tls = true,
     .gauge = &metrics.tls_not_after},
    {.name = "herald_tls_reloads_total",
     .type = COUNTER,
     .help = "SIGHUPs that gave new TLS handshakes a newly read certificate and key.",
     .is_tls = true,
     .counter = &metrics.tls_reloads},
    {.name = "herald_tls_reload_failures_total",
     .type = COUNTER,
     .help = "SIGHUPs whose certificate or key failed its checks (the one before is kept).",
     .is_tls = true,
     .counter = &metrics.tls_reload_failures},
    {.name = "herald_redis_shard_info",
     .type = GAUGE,
     .help = "Each Redis shard, by its place in --redis-url and its address.",
     .redis = R_INFO,
     .is_sharded = true},
    {.name = "herald_redis_shard_ready",
     .type = GAUGE,
     .help = "1 when the shard takes publishes: links up, own heartbeat heard.",
     .redis = R_READY,
     .is_sharded = true},
    {.name = "herald_redis_shard_list_mismatch",
     .type = GAUGE,
     .help = "1 when a hub given another --redis-url list was heard on the shard lately.",
     .redis = R_MISMATCH,
     .is_sharded = true},
    {.name = "herald_process_resident_memory_bytes",
     .type = GAUGE,
     .help = "Resident set size.",
     .json = "memory_bytes",
     .form = JSON_INT,
     .computed = rss_bytes},
    {.name = "herald_uptime_seconds",
     .type = GAUGE,
     .help = "Seconds since start.",
     .json = "uptime_s",
     .form = JSON_INT,
     .computed = uptime,
     .decimals = 3},
    {.type = GAUGE, .json = "ts", .form = JSON_INT, .computed = now_ms},
    {.name = "herald_publish_latency_seconds",
     .type = HISTOGRAM,
     .help = "POST /publish received to the broker's answer (202 or 503)."},
    {.name = "herald_delivery_latency_seconds",
     .type = HISTOGRAM,
     .help = "An event's publish time (ts) to the write() that carried it to a client."},
};

static double redis_value(const struct metric *m, unsigned shard)
{
    const struct metrics_redis *r = &metrics.redis[shard];

    switch (m->redis) {
    case R_CONNECTED: return LOAD(r->connected);
    case R_READY: return LOAD(r->ready);
    case R_MISMATCH: return LOAD(r->mismatch);
    case R_RECONNECTS: return (double)LOAD(r->reconnects);
    case R_PUBLISH_ERRORS: return (double)LOAD(r->publish_errors);
    case R_SKIPPED: return (double)LOAD(r->unknown_payloads);
    case R_HEARTBEAT_LAG: return (double)LOAD(r->heartbeat_lag_ms) / 1000.0;
    case R_INFO: return 1;
    case R_NONE: break;
    }
    return 0;
}

/* A label value: quotes, backslashes and newlines escaped. */
static void put_label(struct buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            put(b, "\\%c", *s);
        else if (*s == '\n')
            put(b, "\\n");
        else
            put(b, "%c", *s);
    }
}

/* A Redis value: unlabelled with one Redis (as before shards), one line per shard else. */
static void put_redis(struct buf *b, const struct metric *m, const struct metrics_context *ctx)
{
    if (ctx->redis_shards == 1) {
        put(b, "%s %.*f\n", m->name, m->decimals, redis_value(m, 0));
        return;
    }
    for (unsigned i = 0; i < ctx->redis_shards && i < SHARD_MAX; i++) {
        put(b, "%s{shard=\"%u\"", m->name, i);
        if (m->redis == R_INFO) {
            put(b, ",url=\"");
            put_label(b, ctx->shard_names[i]);
            put(b, "\"");
        }
        put(b, "} %.*f\n", m->decimals, redis_value(m, i));
    }
}

/* The value of a scalar metric (not by_reason, not a histogram). */
static double value_of(const struct metric *m, const struct metrics_context *ctx)
{
    if (m->counter)
        return (double)LOAD(*m->counter);
    if (m->gauge)
        return (double)LOAD(*m->gauge);
    return m->computed(ctx);
}

/* Sums n one-writer histograms into one Prometheus histogram (cumulative buckets). */
static void put_histogram(struct buf *b, const char *name, const struct histogram *const *parts,
                          size_t n)
{
    unsigned long long cum = 0, count = 0, sum = 0;

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

static bool is_shown(const struct metric *m, const struct metrics_context *ctx)
{
    if (m->is_tls && !ctx->is_tls)
        return false;
    if (m->redis == R_NONE)
        return true;
    return m->is_sharded ? ctx->redis_shards > 1 : ctx->redis_shards > 0;
}

char *metrics_render_prometheus(const struct metrics_context *ctx)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    const struct histogram *publish_parts[1] = {&publish_latency};
    struct buf b = {xmalloc(4096), 0, 4096};

    b.p[0] = '\0';
    put(&b,
        "# HELP herald_info The hub's build and instance.\n# TYPE herald_info gauge\n"
        "herald_info{instance=\"%s\",broker=\"%s\"} 1\n",
        ctx->instance, ctx->broker);
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        const struct metric *m = &table[i];

        if (!m->name || !is_shown(m, ctx))
            continue;
        put(&b, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, type_names[m->type]);
        if (m->type == HISTOGRAM) {
            if (!strcmp(m->name, "herald_publish_latency_seconds"))
                put_histogram(&b, m->name, publish_parts, 1);
            else
                put_histogram(&b, m->name, ctx->delivery, ctx->planes);
        } else if (m->redis != R_NONE) {
            put_redis(&b, m, ctx);
        } else if (m->by_reason) {
            for (size_t k = 0; k < m->n_reasons; k++)
                put(&b, "%s{reason=\"%s\"} %llu\n", m->name, m->reasons[k], LOAD(m->by_reason[k]));
        } else {
            put(&b, "%s %.*f\n", m->name, m->decimals, value_of(m, ctx));
        }
    }
    return b.p;
}

/* Each shard's state for /stats and $stats. */
static json_t *shards_json(const struct metrics_context *ctx)
{
    json_t *a = json_array();

    for (unsigned i = 0; i < ctx->redis_shards && i < SHARD_MAX; i++) {
        const struct metrics_redis *r = &metrics.redis[i];

        json_array_append_new(
            a, json_pack("{s:I,s:s,s:b,s:b,s:b,s:I,s:I,s:I,s:I}", "shard", (json_int_t)i, "url",
                         ctx->shard_names[i], "ready", LOAD(r->ready), "connected",
                         LOAD(r->connected), "list_mismatch", LOAD(r->mismatch), "reconnects",
                         (json_int_t)LOAD(r->reconnects), "publish_errors",
                         (json_int_t)LOAD(r->publish_errors), "skipped_payloads",
                         (json_int_t)LOAD(r->unknown_payloads), "heartbeat_lag_ms",
                         (json_int_t)LOAD(r->heartbeat_lag_ms)));
    }
    return a;
}

char *metrics_render_json(const struct metrics_context *ctx)
{
    json_t *o = json_object();
    char *s;

    json_object_set_new(o, "instance", json_string(ctx->instance));
    json_object_set_new(o, "broker", json_string(ctx->broker));
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        const struct metric *m = &table[i];
        json_t *v;

        if (!m->json || !is_shown(m, ctx) || m->redis != R_NONE)
            continue;
        if (m->by_reason) {
            v = json_object();
            for (size_t k = 0; k < m->n_reasons; k++)
                json_object_set_new(v, m->reasons[k],
                                    json_integer((json_int_t)LOAD(m->by_reason[k])));
        } else if (m->form == JSON_BOOL) {
            v = json_boolean(value_of(m, ctx) != 0);
        } else {
            v = json_integer((json_int_t)value_of(m, ctx));
        }
        json_object_set_new(o, m->json, v);
    }
    if (ctx->redis_shards > 1)
        json_object_set_new(o, "shards", shards_json(ctx));
    s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        xalloc_fail(0);
    return s;
}
