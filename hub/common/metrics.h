/* metrics.h -- the hub's counters and gauges (C11 atomics, any thread), rendered as
 * Prometheus text for /metrics and as the JSON snapshot of /stats and $stats. */
#ifndef HERALD_METRICS_H
#define HERALD_METRICS_H

#include "shard.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum drop_reason {
    DROP_SLOW_CONSUMER, /* queued for a connection cut as a slow consumer */
    DROP_OVERLOAD, /* delivery was behind (a mailbox or a plane past its bound): told as a gap */
    DROP_CLOSING,  /* arrived for a connection already closing */
    DROP_REASONS
};

enum close_reason {
    CLOSE_NORMAL,        /* the client closed or went away */
    CLOSE_SLOW_CONSUMER, /* 1013 */
    CLOSE_RATE_LIMIT,    /* 1008 */
    CLOSE_BAD_FRAME,     /* 1003, 1007, 1009 */
    CLOSE_DRAIN,         /* 1001 */
    CLOSE_TIMEOUT,       /* heartbeat or a stuck socket */
    CLOSE_AUTH,          /* 1008: no or bad token, token expired */
    CLOSE_ORIGIN,        /* 1008: Origin not allowed */
    CLOSE_REASONS
};

enum refuse_reason {
    REFUSE_CAPACITY,    /* --max-connections: HTTP 503 */
    REFUSE_PER_IP,      /* --max-connections-per-ip: HTTP 429 */
    REFUSE_DRAINING,    /* shutting down */
    REFUSE_PATH,        /* an upgrade on another path than /ws (a request under /sse but /sse) */
    REFUSE_BAD_REQUEST, /* a header too long to judge; a bad SSE query or Last-Event-ID */
    REFUSE_AUTH,        /* SSE: no or bad token (HTTP 401; /ws closes 1008 instead) */
    REFUSE_ORIGIN,      /* SSE: Origin not allowed (HTTP 403; /ws closes 1008 instead) */
    REFUSE_REASONS
};

enum api_refuse_reason {
    API_REFUSE_CAPACITY,    /* more API connections than --api-max-connections */
    API_REFUSE_TIMEOUT,     /* a request not whole, or an answer not taken, in time */
    API_REFUSE_BAD_REQUEST, /* a malformed head or chunked body */
    API_REFUSE_REASONS
};

/* One Redis's state and counters (broker/redis.c): one per --redis-url, the first alone when
 * there is one Redis. */
struct metrics_redis {
    atomic_int connected; /* both links up */
    atomic_int ready;     /* connected and our own heartbeat heard: it takes publishes */
    atomic_int mismatch;  /* a hub given another --redis-url list was heard on it lately */
    atomic_ullong reconnects;
    atomic_ullong publish_errors;
    atomic_ullong unknown_payloads;
    atomic_llong heartbeat_lag_ms; /* publish to receipt of our own last heartbeat */
};

struct metrics {
    atomic_llong connections;     /* gauge: WebSocket and SSE */
    atomic_llong sse_connections; /* gauge: of which SSE */
    atomic_llong subscriptions;   /* gauge */
    atomic_ullong connections_accepted;
    atomic_ullong events_published; /* taken by the broker from the API */
    atomic_ullong events_received;  /* handed to the delivery planes */
    atomic_ullong events_delivered; /* event frames written to clients */
    atomic_ullong frames_received;  /* client frames */
    atomic_ullong publish_requests;
    atomic_ullong publish_errors;         /* answered 4xx/5xx */
    atomic_ullong publish_rate_limited;   /* answered 429 */
    atomic_ullong publish_rate_fail_open; /* let through: the cluster count was unknown */
    atomic_ullong publish_duplicates;     /* a repeated Idempotency-Key: answered, not published */
    atomic_ullong publish_overloaded; /* answered 503 overloaded: the backlog was past its bound */
    atomic_ullong queue_overruns; /* frames queued past a connection's budget: its socket kept up */
    /* in-process history (broker/history.c): every store of this process */
    atomic_llong history_events; /* gauge */
    atomic_llong history_bytes;  /* gauge: charged to --history-memory */
    /* the sequencer */
    atomic_ullong seq_holes;    /* holes found in a channel's numbers */
    atomic_ullong seq_repaired; /* events fetched back from history into a hole */
    atomic_ullong seq_lost;     /* events announced as a gap (history no longer had them) */
    atomic_ullong seq_resets;   /* channels whose numbering restarted under their subscribers */
    atomic_ullong dropped[DROP_REASONS];
    atomic_ullong closed[CLOSE_REASONS];
    atomic_ullong refused[REFUSE_REASONS];
    atomic_llong api_connections; /* gauge */
    atomic_ullong api_refused[API_REFUSE_REASONS];
    /* Redis broker: one entry per shard */
    struct metrics_redis redis[SHARD_MAX];
    /* TLS on --listen */
    atomic_llong tls_not_after;        /* the served certificate's notAfter, Unix seconds */
    atomic_ullong tls_reloads;         /* SIGHUPs that gave the planes a new pair */
    atomic_ullong tls_reload_failures; /* SIGHUPs whose pair failed its checks (kept the old) */
};

extern struct metrics metrics;

/* A latency histogram with one writer (a plane, or the control thread): the writer updates
 * with relaxed load + store, readers sum with relaxed loads. Upper bounds in microseconds. */
#define HISTOGRAM_BUCKETS 15
extern const uint64_t histogram_bounds_us[HISTOGRAM_BUCKETS - 1]; /* the last is +Inf */
struct histogram {
    atomic_ullong bucket[HISTOGRAM_BUCKETS];
    atomic_ullong count;
    atomic_ullong sum_us;
};
void histogram_observe(struct histogram *h, uint64_t us);
/* POST /publish received to the broker's answer (control thread). */
extern struct histogram publish_latency;

static inline void metrics_add(atomic_ullong *c, unsigned long long n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}
static inline void metrics_gauge_add(atomic_llong *g, long long n)
{
    atomic_fetch_add_explicit(g, n, memory_order_relaxed);
}

/* What the renderers need beyond the counters. */
struct metrics_context {
    const char *instance;
    const char *broker; /* "memory" or "redis" */
    int64_t started_ms; /* process start, Unix ms */
    int64_t now_ms;
    size_t mailbox_depth; /* summed over the planes */
    size_t backlog_bytes; /* summed over the planes: taken for delivery, not yet written */
    size_t max_backlog_bytes;
    unsigned io_uring_planes; /* planes sending through io_uring */
    unsigned planes;
    int is_ready;
    int is_draining;
    unsigned redis_shards;                /* --redis-url entries: 0 without Redis */
    char *const *shard_names;             /* their names (shard_name()), redis_shards of them */
    int is_tls;                           /* --listen serves TLS: its metrics are shown */
    const struct histogram *delivery[64]; /* one per plane */
};

/* Prometheus text format; returns a malloc'd string. */
char *metrics_render_prometheus(const struct metrics_context *ctx);
/* The /stats and $stats snapshot as compact JSON; returns a malloc'd string. */
char *metrics_render_json(const struct metrics_context *ctx);

#endif
