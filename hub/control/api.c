/* api.c -- POST /publish, /health, /ready, /stats and /metrics on --api-listen.
 * Control thread, on the API's own HTTP server (http.c). A request's head is judged before its
 * body is read: the route and method, draining, the API key, the broker's readiness, the
 * content type and the announced size; only a publish that passes those has its body read and
 * parsed, and is handed to the broker. The 202 leaves only from the broker's done callback, so
 * a 202 always means the broker took the event. A publish outlives its client: if the client
 * leaves first, its answer only frees the request. Every error answer is
 * {"error":code,"message":text} with SPEC.md's status. */
#include "api.h"

#include "broker/broker.h"
#include "broker/history.h"
#include "common/apikeys.h"
#include "common/channel_name.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/fmt.h"
#include "common/log.h"
#include "common/message.h"
#include "common/metrics.h"
#include "common/netaddr.h"
#include "common/shard.h"
#include "common/xalloc.h"
#include "event.h"
#include "http.h"
#include "pubrate.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define API_IDLE_MS 60000 /* an idle keep-alive connection */
#define IDEMPOTENCY_KEY_MAX 128
#define HISTORY_LIMIT_MAX 10000
#define API_MAX_HEAD 16384

struct api {
    struct api_host host;
    struct http_server *http;
    size_t pending;   /* publishes waiting for the limiter or the broker */
    bool is_detached; /* api_detach() ran: the broker and the limiter are gone */
};

struct publish_req {
    struct api *api;
    int64_t started_us; /* monotonic, for the publish latency histogram */
    struct http_request *rq;
    struct message **msgs;
    size_t n;
    int key; /* the API key's index, or -1 */
    bool is_batch;
    char *answer;                           /* the 202 body */
    char idem_key[IDEMPOTENCY_KEY_MAX + 1]; /* "" without Idempotency-Key */
    char idem_scope[24];
};

static void respond_json(struct http_request *rq, int status, const char *extra, const char *json)
{
    size_t n = strlen(json);
    char *body = xmalloc(n + 2);

    memcpy(body, json, n);
    body[n++] = '\n';
    http_respond(rq, status, extra, "application/json", body, n);
    free(body);
}

static void publish_refused(struct http_request *rq, int status, const char *code,
                            const char *message, const char *extra)
{
    metrics_add(&metrics.publish_errors, 1);
    http_respond_error(rq, status, code, message, extra);
}

static bool is_json_type(const char *ct)
{
    size_t n = strlen("application/json");

    if (!ct || strncasecmp(ct, "application/json", n) != 0)
        return false;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

static void publish_req_free(struct publish_req *pr)
{
    pr->api->pending--;
    free(pr->answer);
    for (size_t i = 0; i < pr->n; i++)
        message_unref(&pr->msgs[i]);
    free(pr->msgs);
    free(pr);
}

/* The 202 body: {"id":…} or {"ids":[…]}. Ids are hex digits and '-' (event.c): no escaping. */
static char *answer_of(const struct publish_req *pr)
{
    size_t cap = 16;
    char *s, *p;

    for (size_t i = 0; i < pr->n; i++)
        cap += strlen(pr->msgs[i]->id) + 3;
    s = p = xmalloc(cap);
    p = fmt_str(p, pr->is_batch ? "{\"ids\":[" : "{\"id\":");
    for (size_t i = 0; i < pr->n; i++) {
        if (i)
            *p++ = ',';
        *p++ = '"';
        p = fmt_str(p, pr->msgs[i]->id);
        *p++ = '"';
    }
    if (pr->is_batch)
        *p++ = ']';
    *p++ = '}';
    *p = '\0';
    return s;
}

static void on_published(const char *err, const char *duplicate, void *arg)
{
    struct publish_req *pr = arg;
    struct http_request *rq = pr->rq;

    if (!err && !duplicate)
        metrics_add(&metrics.events_published, pr->n);
    histogram_observe(&publish_latency, (uint64_t)(clock_mono_us() - pr->started_us));
    if (http_request_is_gone(rq))
        log_info("api", "publish finished (%s) after its client left", err ? err : "ok");
    if (err) {
        publish_refused(rq, 503, "unavailable", err, NULL);
    } else if (duplicate) { /* the first answer, marked: nothing was published again */
        size_t n = strlen(duplicate);
        char *body = xmalloc(n + 32);

        metrics_add(&metrics.publish_duplicates, 1);
        if (n >= 2 && duplicate[n - 1] == '}')
            snprintf(body, n + 32, "%.*s,\"duplicate\":true}", (int)(n - 1), duplicate);
        else
            snprintf(body, n + 32, "{\"duplicate\":true}");
        respond_json(rq, 202, NULL, body);
        free(body);
    } else {
        respond_json(rq, 202, NULL, pr->answer);
    }
    publish_req_free(pr);
}

/* Why the broker could not even try: with shards, the first channel of the publish whose shard
 * is down, and that shard (an operator reads which Redis to look at). */
static const char *unavailable_text(const struct broker *b, struct message *const *msgs, size_t n,
                                    char *buf, size_t cap)
{
    struct broker_shard sh[SHARD_MAX];
    size_t count = b->ops->shards ? b->ops->shards(b, sh, SHARD_MAX) : 0;

    for (size_t k = 0; k < n && count > 1; k++) {
        unsigned i = broker_shard_of(b, msgs[k]->channel, msgs[k]->channel_len);

        if (i < count && !sh[i].is_ready) {
            snprintf(buf, cap,
                     "the shard of channel %.*s (shard %u, %s) is not connected: publishes to "
                     "its channels wait for it, the other shards' go on",
                     (int)msgs[k]->channel_len, msgs[k]->channel, i, sh[i].name);
            return buf;
        }
    }
    return "the broker is not connected";
}

/* Hands a checked publish to the broker; the answer comes from on_published. */
static void forward(struct api *api, struct publish_req *pr)
{
    const struct broker_idempotency idem = {
        .key = pr->idem_key,
        .scope = pr->idem_scope,
        .answer = pr->answer,
    };

    if (broker_publish(api->host.broker, pr->msgs, pr->n, pr->idem_key[0] ? &idem : NULL,
                       on_published, pr) < 0) {
        char text[512];

        publish_refused(pr->rq, 503, "unavailable",
                        unavailable_text(api->host.broker, pr->msgs, pr->n, text, sizeof(text)),
                        NULL);
        publish_req_free(pr);
    }
}

static void refuse_rate(struct http_request *rq, long long retry_after_s)
{
    char extra[48];

    snprintf(extra, sizeof(extra), "Retry-After: %lld\r\n", retry_after_s < 1 ? 1 : retry_after_s);
    metrics_add(&metrics.publish_rate_limited, 1);
    publish_refused(rq, 429, "rate_limited", "over the publish rate: retry later", extra);
}

/* The limiter's verdict on pr: forward it, or answer it. */
static void on_rate_verdict(enum pubrate_verdict v, long long retry_after_s, void *arg)
{
    struct publish_req *pr = arg;

    if (http_request_is_gone(pr->rq)) { /* the client left while the count was pending */
        http_respond(pr->rq, 503, NULL, NULL, NULL, 0);
        publish_req_free(pr);
        return;
    }
    switch (v) {
    case PUBRATE_UNKNOWN:
        metrics_add(&metrics.publish_rate_fail_open, 1);
        log_warn("api", "publish rate unknown (Redis did not answer): letting it through");
        /* fallthrough */
    case PUBRATE_OK: forward(pr->api, pr); return;
    case PUBRATE_LIMITED: refuse_rate(pr->rq, retry_after_s); break;
    case PUBRATE_GONE:
    case PUBRATE_PENDING:
        publish_refused(pr->rq, 503, "unavailable", "the hub is shutting down", NULL);
        break;
    }
    publish_req_free(pr);
}

/* Who a publish counts against: its API key, or its client address without keys. Returns 0,
 * or -1 when a trusted proxy sent more X-Forwarded-For than the hub reads (answer 400). */
static int identity(struct api *api, struct http_request *rq, int key, char *out, size_t len)
{
    const struct config *cfg = api->host.cfg;
    char client[NETADDR_STRLEN], limit_key[NETADDR_KEYLEN], xff[4096];
    const char *peer = http_request_peer(rq), *all;
    bool too_long;

    if (key >= 0) {
        char id[17];

        apikeys_id(cfg->keys, key, id);
        snprintf(out, len, "key:%s", id);
        return 0;
    }
    /* every X-Forwarded-For line, as one list: a client's own line cannot hide the one its
     * proxy added after it */
    all = http_request_fields(rq, "X-Forwarded-For", xff, sizeof(xff), &too_long);
    if (too_long && netaddr_list_contains(cfg->trusted, peer))
        return -1;
    netaddr_client(cfg->trusted, peer, all, client);
    netaddr_limit_key(client, cfg->ipv6_prefix, limit_key);
    snprintf(out, len, "ip:%s", limit_key);
    return 0;
}

/* The API key of Authorization: Bearer KEY: its index, -1 when keys are off, -2 when refused. */
static int check_key(struct api *api, struct http_request *rq)
{
    size_t len;
    const char *auth = http_head_field(http_request_head(rq), "Authorization", &len);
    int key;

    if (!apikeys_count(api->host.cfg->keys))
        return -1;
    if (!auth || len < 7 || strncasecmp(auth, "Bearer ", 7) != 0)
        return -2;
    key = apikeys_find(api->host.cfg->keys, auth + 7, len - 7);
    return key >= 0 ? key : -2;
}

/* Idempotency-Key, when present, is 1 to 128 visible ASCII characters (SPEC.md). */
static bool idempotency_key_ok(struct http_request *rq)
{
    size_t len;
    const char *k = http_head_field(http_request_head(rq), "Idempotency-Key", &len);

    if (!k)
        return true;
    if (len < 1 || len > IDEMPOTENCY_KEY_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e)
            return false;
    return true;
}

/* POST /publish, its head: everything that can be judged without the body. */
static void publish_head(struct api *api, struct http_request *rq)
{
    const struct api_host *h = &api->host;
    int key;

    metrics_add(&metrics.publish_requests, 1);
    if (h->is_draining(h->arg)) {
        publish_refused(rq, 503, "unavailable", "the hub is shutting down", NULL);
        return;
    }
    key = check_key(api, rq);
    if (key == -2) {
        publish_refused(rq, 401, "unauthorized",
                        "a valid API key is required (Authorization: Bearer KEY)",
                        "WWW-Authenticate: Bearer realm=\"herald\"\r\n");
        return;
    }
    if (!broker_is_ready(h->broker)) {
        publish_refused(rq, 503, "unavailable", "the broker is not connected", NULL);
        return;
    }
    if (h->is_overloaded(h->arg)) {
        metrics_add(&metrics.publish_overloaded, 1);
        publish_refused(rq, 503, "overloaded",
                        "delivery is behind: retry after the time Retry-After gives",
                        "Retry-After: 1\r\n");
        return;
    }
    if (!is_json_type(http_request_field(rq, "Content-Type"))) {
        publish_refused(rq, 415, "unsupported_media_type", "Content-Type must be application/json",
                        NULL);
        return;
    }
    if (!idempotency_key_ok(rq)) {
        publish_refused(rq, 400, "bad_request",
                        "Idempotency-Key must be 1 to 128 visible ASCII characters", NULL);
        return;
    }
    http_request_set_user(rq, (void *)(intptr_t)(key + 2)); /* 0: not judged */
}

/* POST /publish, the whole request: parse, count against the rate, hand on. */
static void publish_body(struct api *api, struct http_request *rq)
{
    const struct api_host *h = &api->host;
    struct publish_req *pr;
    char err[256], who[NETADDR_KEYLEN + 8];
    size_t len;
    const char *text = http_request_body(rq, &len);
    long long retry_after = 0;

    pr = xcalloc(1, sizeof(*pr));
    pr->key = (int)(intptr_t)http_request_user(rq) - 2;
    if (event_parse_publish(text, len, clock_wall_ms(), h->ids, &pr->msgs, &pr->n, err,
                            sizeof(err)) < 0) {
        free(pr);
        publish_refused(rq, 400, "bad_request", err, NULL);
        return;
    }
    pr->is_batch = len > 0 && text[strspn(text, " \t\r\n")] == '[';
    pr->rq = rq;
    pr->api = api;
    pr->answer = answer_of(pr);
    {
        size_t klen;
        const char *k = http_head_field(http_request_head(rq), "Idempotency-Key", &klen);

        if (k) { /* checked at the head; scoped to the API key, so keys never meet */
            memcpy(pr->idem_key, k, klen);
            pr->idem_key[klen] = '\0';
            if (pr->key >= 0)
                apikeys_id(h->cfg->keys, pr->key, pr->idem_scope);
            else
                snprintf(pr->idem_scope, sizeof(pr->idem_scope), "open");
        }
    }
    pr->started_us = clock_mono_us();
    api->pending++;
    if (!h->pubrate) {
        forward(api, pr);
        return;
    }
    if (identity(api, rq, pr->key, who, sizeof(who)) < 0) {
        publish_refused(rq, 400, "bad_request", "X-Forwarded-For is too long", NULL);
        publish_req_free(pr);
        return;
    }
    switch (pubrate_take(h->pubrate, who, &retry_after, on_rate_verdict, pr)) {
    case PUBRATE_PENDING: return; /* on_rate_verdict goes on */
    case PUBRATE_OK: forward(api, pr); return;
    case PUBRATE_UNKNOWN: on_rate_verdict(PUBRATE_UNKNOWN, 0, pr); return;
    case PUBRATE_LIMITED: on_rate_verdict(PUBRATE_LIMITED, retry_after, pr); return;
    case PUBRATE_GONE: on_rate_verdict(PUBRATE_GONE, 0, pr); return;
    }
}

/* --- GET /history ------------------------------------------------------------------------- */

static int hex_digit(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Query argument name of rq, percent-decoded into out (cap bytes). Returns 1 found, 0 absent,
 * -1 malformed or too long. */
static int query_arg(const struct http_request *rq, const char *name, char *out, size_t cap)
{
    const struct http_span *q = &http_request_head(rq)->query;
    const char *p = q->p, *end = q->p + q->len;
    size_t nlen = strlen(name);

    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;

        if ((size_t)(e - p) > nlen && !memcmp(p, name, nlen) && p[nlen] == '=') {
            size_t n = 0;

            for (const char *v = p + nlen + 1; v < e; v++) {
                int c = (unsigned char)*v;

                if (c == '%') {
                    int hi = e - v >= 3 ? hex_digit(v[1]) : -1, lo = hi >= 0 ? hex_digit(v[2]) : -1;

                    if (lo < 0)
                        return -1;
                    c = hi << 4 | lo;
                    v += 2;
                } else if (c == '+') {
                    c = ' ';
                }
                if (n + 1 >= cap || c == 0)
                    return -1;
                out[n++] = (char)c;
            }
            out[n] = '\0';
            return 1;
        }
        p = amp ? amp + 1 : end;
    }
    return 0;
}

/* A whole number from query argument name: 1 found, 0 absent, -1 not a number or past max. */
static int query_number(const struct http_request *rq, const char *name, uint64_t max,
                        uint64_t *out)
{
    char v[32], *end;
    int rc = query_arg(rq, name, v, sizeof(v));

    if (rc <= 0)
        return rc;
    if (!v[0] || v[0] < '0' || v[0] > '9')
        return -1;
    *out = strtoull(v, &end, 10);
    return *end || *out > max ? -1 : 1;
}

struct history_req {
    struct http_request *rq;
    char channel[MESSAGE_CHANNEL_MAX + 1];
};

/* {"channel":C,"epoch":E,"seq":S,"events":[frame,…]}: the frames as clients receive them. */
static void on_history(const char *err, struct history_result *r, void *arg)
{
    struct history_req *hr = arg;
    size_t cap = 256, n;
    char *body;

    if (err) {
        http_respond_error(hr->rq, 503, "unavailable", err, NULL);
        free(hr);
        return;
    }
    for (size_t i = 0; i < r->n; i++)
        cap += r->msgs[i]->json_len + 1;
    body = xmalloc(cap);
    n = (size_t)snprintf(body, cap,
                         "{\"channel\":\"%s\",\"epoch\":\"%s\",\"seq\":%llu,\"events\":[",
                         hr->channel, r->epoch, (unsigned long long)r->seq);
    for (size_t i = 0; i < r->n; i++) {
        if (i)
            body[n++] = ',';
        memcpy(body + n, message_json(r->msgs[i]), r->msgs[i]->json_len);
        n += r->msgs[i]->json_len;
    }
    memcpy(body + n, "]}\n", 3);
    n += 3;
    http_respond(hr->rq, 200, NULL, "application/json", body, n);
    free(body);
    free(hr);
}

static void on_history_head(struct api *api, struct http_request *rq)
{
    char channel[MESSAGE_CHANNEL_MAX + 2];
    uint64_t since = 0, limit = 0;
    int rc = query_arg(rq, "channel", channel, sizeof(channel));
    struct history_req *hr;
    struct broker_read q = {.mode = BROKER_READ_SINCE};

    if (rc <= 0 || !channel_name_is_valid(channel, strlen(channel))) {
        http_respond_error(rq, 400, "bad_request",
                           "channel= must be 1 to 128 characters of A-Z a-z 0-9 _ - . :", NULL);
        return;
    }
    if (query_number(rq, "since", UINT64_MAX, &since) < 0 ||
        query_number(rq, "limit", HISTORY_LIMIT_MAX, &limit) < 0) {
        http_respond_error(rq, 400, "bad_request",
                           "since= and limit= must be whole numbers (limit at most 10000)", NULL);
        return;
    }
    hr = xcalloc(1, sizeof(*hr));
    hr->rq = rq;
    snprintf(hr->channel, sizeof(hr->channel), "%s", channel);
    q.channel = hr->channel;
    q.channel_len = strlen(hr->channel);
    q.since = since;
    q.count = (size_t)limit;
    if (hr->channel[0] == '$') { /* the hub's own channels are kept here */
        struct history_result r;

        history_read_since(api->host.local, q.channel, q.channel_len, since, q.count,
                           clock_wall_ms(), &r);
        on_history(NULL, &r, hr);
        history_result_clear(&r);
        return;
    }
    if (broker_read(api->host.broker, &q, on_history, hr) < 0) {
        http_respond_error(rq, 503, "unavailable", "the broker is not connected", NULL);
        free(hr);
    }
}

static void on_ready(struct api *api, struct http_request *rq)
{
    const struct api_host *h = &api->host;
    bool ready = h->is_ready(h->arg);
    char *body = h->ready_body ? h->ready_body(h->arg, ready) : NULL;

    if (body) { /* with Redis shards: each shard's state too */
        respond_json(rq, ready ? 200 : 503, NULL, body);
        free(body);
        return;
    }
    if (ready)
        respond_json(rq, 200, NULL, "{\"status\":\"ready\"}");
    else
        http_respond_error(rq, 503, "unavailable",
                           h->is_draining(h->arg) ? "the hub is shutting down"
                                                  : "the broker is not connected",
                           NULL);
}

static void on_stats(struct api *api, struct http_request *rq)
{
    struct metrics_context ctx;
    char *s;

    api->host.metrics_context(api->host.arg, &ctx);
    s = metrics_render_json(&ctx);
    respond_json(rq, 200, NULL, s);
    free(s);
}

static void on_metrics(struct api *api, struct http_request *rq)
{
    struct metrics_context ctx;
    char *s;

    api->host.metrics_context(api->host.arg, &ctx);
    s = metrics_render_prometheus(&ctx);
    http_respond(rq, 200, NULL, "text/plain; version=0.0.4; charset=utf-8", s, strlen(s));
    free(s);
}

static void on_health(struct api *api, struct http_request *rq)
{
    (void)api;
    respond_json(rq, 200, NULL, "{\"status\":\"ok\"}");
}

struct route {
    const char *path;
    enum http_method method; /* GET routes answer HEAD too */
    const char *allow;
    void (*head)(struct api *api, struct http_request *rq); /* judged at the head */
    void (*body)(struct api *api, struct http_request *rq); /* the whole request */
};

static const struct route routes[] = {
    {"/publish", HTTP_POST, "POST", publish_head, publish_body},
    {"/history", HTTP_GET, "GET, HEAD", on_history_head, NULL},
    {"/health", HTTP_GET, "GET, HEAD", on_health, NULL},
    {"/ready", HTTP_GET, "GET, HEAD", on_ready, NULL},
    {"/stats", HTTP_GET, "GET, HEAD", on_stats, NULL},
    {"/metrics", HTTP_GET, "GET, HEAD", on_metrics, NULL},
};

static const struct route *route_of(const struct http_request *rq)
{
    const struct http_span *path = &http_request_head(rq)->path;

    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (path->len == strlen(routes[i].path) && !memcmp(path->p, routes[i].path, path->len))
            return &routes[i];
    return NULL;
}

static void on_head(struct http_request *rq, void *arg)
{
    struct api *api = arg;
    const struct route *r = route_of(rq);
    enum http_method m = http_request_head(rq)->method;
    char allow[64];

    if (!r) {
        http_respond_error(rq, 404, "not_found", "no such endpoint", NULL);
        return;
    }
    if (api->is_detached && r->head != on_health) {
        http_respond_error(rq, 503, "unavailable", "the hub is shutting down", NULL);
        return;
    }
    if (m != r->method && !(r->method == HTTP_GET && m == HTTP_HEAD)) {
        snprintf(allow, sizeof(allow), "Allow: %s\r\n", r->allow);
        if (r->method == HTTP_POST)
            metrics_add(&metrics.publish_errors, 1);
        http_respond_error(rq, 405, "method_not_allowed", "method not allowed on this path", allow);
        return;
    }
    r->head(api, rq); /* answers, or leaves the request for its body */
}

static void on_request(struct http_request *rq, void *arg)
{
    struct api *api = arg;
    const struct route *r = route_of(rq);

    /* a route without a body step answers from its head step (perhaps later: /history
     * waits for Redis); its request's body, if any, is simply not used */
    if (r && r->body)
        r->body(api, rq);
}

struct api *api_new(const struct api_host *host, char *err, size_t errlen)
{
    struct api *api = xcalloc(1, sizeof(*api));
    const struct config *cfg = host->cfg;
    const struct http_limits lim = {
        .max_connections = cfg->api_max_connections,
        .max_head_bytes = API_MAX_HEAD,
        .max_body_bytes = cfg->max_message_bytes,
        .request_ms = cfg->api_request_seconds * 1000,
        .idle_ms = API_IDLE_MS,
    };

    api->host = *host;
    api->http = http_server_new(host->base, cfg->api_listen.host, cfg->api_listen.port, &lim,
                                on_head, on_request, api, err, errlen);
    if (!api->http) {
        free(api);
        return NULL;
    }
    return api;
}

size_t api_detach(struct api *api)
{
    if (!api)
        return 0;
    api->is_detached = true;
    return api->pending;
}

void api_free(struct api *api)
{
    if (!api)
        return;
    http_server_free(api->http);
    free(api);
}
