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
#include "common/apikeys.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/message.h"
#include "common/metrics.h"
#include "common/netaddr.h"
#include "common/xalloc.h"
#include "event.h"
#include "http.h"
#include "pubrate.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define API_IDLE_MS 60000 /* an idle keep-alive connection */
#define API_MAX_HEAD 16384

struct api {
    struct api_host host;
    struct http_server *http;
    size_t pending; /* publishes waiting for the limiter or the broker */
};

struct publish_req {
    struct api *api;
    int64_t started_us; /* monotonic, for the publish latency histogram */
    struct http_request *rq;
    struct message **msgs;
    size_t n;
    int key; /* the API key's index, or -1 */
    bool is_batch;
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
    for (size_t i = 0; i < pr->n; i++)
        message_unref(&pr->msgs[i]);
    free(pr->msgs);
    free(pr);
}

static void on_published(const char *err, void *arg)
{
    struct publish_req *pr = arg;
    struct http_request *rq = pr->rq;

    if (!err)
        metrics_add(&metrics.events_published, pr->n);
    histogram_observe(&publish_latency, (uint64_t)(clock_mono_us() - pr->started_us));
    if (http_request_is_gone(rq))
        log_info("api", "publish finished (%s) after its client left", err ? err : "ok");
    if (err) {
        publish_refused(rq, 503, "unavailable", err, NULL);
    } else {
        json_t *o;
        char *s;

        if (pr->is_batch) {
            json_t *ids = json_array();

            for (size_t i = 0; i < pr->n; i++)
                json_array_append_new(ids, json_string(pr->msgs[i]->id));
            o = json_pack("{s:o}", "ids", ids);
        } else {
            o = json_pack("{s:s}", "id", pr->msgs[0]->id);
        }
        s = json_dumps(o, JSON_COMPACT);
        if (!s)
            xalloc_fail(0);
        respond_json(rq, 202, NULL, s);
        free(s);
        json_decref(o);
    }
    publish_req_free(pr);
}

/* Hands a checked publish to the broker; the answer comes from on_published. */
static void forward(struct api *api, struct publish_req *pr)
{
    if (broker_publish(api->host.broker, pr->msgs, pr->n, on_published, pr) < 0) {
        publish_refused(pr->rq, 503, "unavailable", "the broker is not connected", NULL);
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
    if (!is_json_type(http_request_field(rq, "Content-Type"))) {
        publish_refused(rq, 415, "unsupported_media_type", "Content-Type must be application/json",
                        NULL);
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

static void on_ready(struct api *api, struct http_request *rq)
{
    const struct api_host *h = &api->host;

    if (h->is_ready(h->arg))
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

    if (r && r->body)
        r->body(api, rq);
    else /* answered at the head: not reached; a route without a body step answers there */
        http_respond_error(rq, 500, "internal", "no handler", NULL);
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

size_t api_pending(const struct api *api)
{
    return api ? api->pending : 0;
}

void api_free(struct api *api)
{
    if (!api)
        return;
    http_server_free(api->http);
    free(api);
}
