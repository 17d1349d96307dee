/* api.c -- POST /publish, /health, /ready, /stats and /metrics on --api-listen.
 * Control thread. A publish is checked (route, method, draining, content type, size, JSON)
 * and handed to the broker; the 202 leaves only from the broker's done callback, so a 202
 * always means the broker took the event. The pending publish outlives both sides: if the
 * HTTP client leaves first, evhttp's close callback marks it gone and done only frees it.
 * Every error answer is {"error":code,"message":text} with SPEC.md's status. */
#include "api.h"

#include "apikeys.h"
#include "broker.h"
#include "clock.h"
#include "config.h"
#include "event.h"
#include "hub.h"
#include "log.h"
#include "message.h"
#include "metrics.h"
#include "netaddr.h"
#include "ratelimit.h"
#include "xalloc.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uthash.h>

#define RATE_TABLE_MAX 65536 /* identities tracked by the in-process publish limiter */

struct rate_entry {
    char who[NETADDR_STRLEN + 8];
    struct ratelimit bucket;
    UT_hash_handle hh;
};

struct api {
    struct hub *hub;
    struct evhttp *http;
    struct rate_entry *rates; /* --publish-rate without Redis */
};

struct publish_req {
    struct api *api;
    int64_t started_us;         /* monotonic, for the publish latency histogram */
    struct evhttp_request *req; /* NULL once the client is gone */
    struct message **msgs;
    size_t n;
    bool is_batch;
};

/* Drops identities whose bucket is full again (idle a second or more); if none is, all. */
static void sweep_rates(struct api *api, int64_t now, const struct ratelimit_cfg *cfg)
{
    struct rate_entry *e, *tmp;
    size_t before = HASH_COUNT(api->rates);

    HASH_ITER(hh, api->rates, e, tmp)
    {
        if (ratelimit_wait_ms(&e->bucket, cfg, now, cfg->burst) == 0) {
            HASH_DEL(api->rates, e);
            free(e);
        }
    }
    if (HASH_COUNT(api->rates) == before) {
        HASH_ITER(hh, api->rates, e, tmp)
        {
            HASH_DEL(api->rates, e);
            free(e);
        }
    }
}

/* libevent 2.1 knows no phrase for 429 ("Client Error"): name every status we send. */
static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 503: return "Service Unavailable";
    default: return NULL;
    }
}

static void send_json(struct evhttp_request *req, int status, const char *body)
{
    struct evbuffer *out = evbuffer_new();

    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evbuffer_add(out, body, strlen(body));
    evbuffer_add(out, "\n", 1);
    evhttp_send_reply(req, status, reason_phrase(status), out);
    evbuffer_free(out);
}

static void send_error(struct evhttp_request *req, int status, const char *code,
                       const char *message)
{
    json_t *o = json_pack("{s:s,s:s}", "error", code, "message", message);
    char *s = json_dumps(o, JSON_COMPACT);

    send_json(req, status, s ? s : "{\"error\":\"internal\"}");
    free(s);
    json_decref(o);
}

static void publish_refused(struct evhttp_request *req, int status, const char *code,
                            const char *message)
{
    metrics_add(&metrics.publish_errors, 1);
    send_error(req, status, code, message);
}

static bool is_json_type(const char *ct)
{
    size_t n = strlen("application/json");

    if (!ct || strncasecmp(ct, "application/json", n) != 0)
        return false;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

static void on_client_gone(struct evhttp_connection *evcon, void *arg)
{
    struct publish_req *pr = arg;

    (void)evcon;
    pr->req = NULL;
}

static void publish_req_free(struct publish_req *pr)
{
    for (size_t i = 0; i < pr->n; i++)
        message_unref(&pr->msgs[i]);
    free(pr->msgs);
    free(pr);
}

static void on_published(const char *err, void *arg)
{
    struct publish_req *pr = arg;
    struct evhttp_request *req = pr->req;

    if (!err)
        metrics_add(&metrics.events_published, pr->n);
    histogram_observe(&publish_latency, (uint64_t)(clock_mono_us() - pr->started_us));
    if (req) {
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
        if (err) {
            publish_refused(req, 503, "unavailable", err);
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
            send_json(req, 202, s);
            free(s);
            json_decref(o);
        }
    } else {
        log_info("api", "publish finished (%s) after its client left", err ? err : "ok");
    }
    publish_req_free(pr);
}

/* Hands a checked publish to the broker; the answer comes from on_published. */
static void forward(struct api *api, struct publish_req *pr)
{
    struct evhttp_request *req = pr->req;

    if (broker_publish(api->hub->broker, pr->msgs, pr->n, on_published, pr) < 0) {
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
        publish_req_free(pr);
        publish_refused(req, 503, "unavailable", "the broker is not connected");
    }
}

static void refuse_rate(struct evhttp_request *req, long long retry_after_s)
{
    char v[24];

    snprintf(v, sizeof(v), "%lld", retry_after_s < 1 ? 1 : retry_after_s);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", v);
    metrics_add(&metrics.publish_rate_limited, 1);
    publish_refused(req, 429, "rate_limited", "over the publish rate: retry later");
}

/* Cluster-wide count for this second came back from the broker. */
static void on_counted(long long count, void *arg)
{
    struct publish_req *pr = arg;
    struct api *api = pr->api;

    if (!pr->req) {
        publish_req_free(pr);
        return;
    }
    if (count < 0) {
        metrics_add(&metrics.publish_rate_fail_open, 1);
        log_warn("api", "publish rate unknown (Redis did not answer): letting it through");
    } else if (count > (long long)api->hub->cfg->publish_rate) {
        evhttp_connection_set_closecb(evhttp_request_get_connection(pr->req), NULL, NULL);
        refuse_rate(pr->req, 1);
        publish_req_free(pr);
        return;
    }
    forward(api, pr);
}

/* --publish-rate in this process: a token bucket per identity (rate per second, burst of one
 * second's worth). Returns 0, or the seconds to wait. */
static long long local_rate(struct api *api, const char *who)
{
    struct rate_entry *e;
    const struct ratelimit_cfg cfg = {.per_sec = api->hub->cfg->publish_rate,
                                      .burst = api->hub->cfg->publish_rate};
    int64_t now = clock_mono_ms();

    HASH_FIND_STR(api->rates, who, e);
    if (!e) {
        if (HASH_COUNT(api->rates) >= RATE_TABLE_MAX)
            sweep_rates(api, now, &cfg);
        e = xcalloc(1, sizeof(*e));
        snprintf(e->who, sizeof(e->who), "%s", who);
        ratelimit_init(&e->bucket, &cfg, now);
        HASH_ADD_STR(api->rates, who, e);
    }
    if (ratelimit_take(&e->bucket, &cfg, now, 1) == 0)
        return 0;
    return (ratelimit_wait_ms(&e->bucket, &cfg, now, 1) + 999) / 1000;
}

/* Who a publish counts against: its API key, or its client address without keys. */
static void identity(struct api *api, struct evhttp_request *req, int key, char *out, size_t len)
{
    char *peer = NULL;
    ev_uint16_t port = 0;
    char norm[NETADDR_STRLEN], client[NETADDR_STRLEN];
    const char *xff = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Forwarded-For");

    if (key >= 0) {
        char id[17];

        apikeys_id(api->hub->cfg->keys, key, id);
        snprintf(out, len, "key:%s", id);
        return;
    }
    evhttp_connection_get_peer(evhttp_request_get_connection(req), &peer, &port);
    if (!peer || netaddr_normalize(peer, strlen(peer), norm) < 0)
        snprintf(norm, sizeof(norm), "%s", peer ? peer : "unknown");
    netaddr_client(api->hub->cfg->trusted, norm, xff, client);
    snprintf(out, len, "ip:%s", client);
}

/* The API key of Authorization: Bearer KEY: its index, -1 when keys are off, -2 when refused. */
static int check_key(struct api *api, struct evhttp_request *req)
{
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    int key;

    if (!apikeys_count(api->hub->cfg->keys))
        return -1;
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return -2;
    key = apikeys_find(api->hub->cfg->keys, auth + 7, strlen(auth + 7));
    return key >= 0 ? key : -2;
}

static void on_publish(struct api *api, struct evhttp_request *req)
{
    struct hub *h = api->hub;
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(body);
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    struct publish_req *pr;
    char err[256], who[NETADDR_STRLEN + 8];
    const char *text;
    int key;

    metrics_add(&metrics.publish_requests, 1);
    if (h->is_draining) {
        publish_refused(req, 503, "unavailable", "the hub is shutting down");
        return;
    }
    key = check_key(api, req);
    if (key == -2) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          "Bearer realm=\"herald\"");
        publish_refused(req, 401, "unauthorized",
                        "a valid API key is required (Authorization: Bearer KEY)");
        return;
    }
    if (!broker_is_ready(h->broker)) {
        publish_refused(req, 503, "unavailable", "the broker is not connected");
        return;
    }
    if (!is_json_type(ct)) {
        publish_refused(req, 415, "unsupported_media_type",
                        "Content-Type must be application/json");
        return;
    }
    if (len > h->cfg->max_message_bytes) {
        snprintf(err, sizeof(err), "the body is %zu bytes; the limit is %u", len,
                 h->cfg->max_message_bytes);
        publish_refused(req, 413, "too_large", err);
        return;
    }
    text = (const char *)evbuffer_pullup(body, -1);
    pr = xcalloc(1, sizeof(*pr));
    if (event_parse_publish(text ? text : "", len, clock_wall_ms(), &h->ids, &pr->msgs, &pr->n, err,
                            sizeof(err)) < 0) {
        free(pr);
        publish_refused(req, 400, "bad_request", err);
        return;
    }
    pr->is_batch = len > 0 && text[strspn(text, " \t\r\n")] == '[';
    pr->req = req;
    pr->api = api;
    pr->started_us = clock_mono_us();
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_client_gone, pr);
    if (h->cfg->publish_rate) {
        long long wait;

        identity(api, req, key, who, sizeof(who));
        if (h->broker->ops->count) {
            if (h->broker->ops->count(h->broker, who, on_counted, pr) == 0)
                return; /* on_counted goes on */
            metrics_add(&metrics.publish_rate_fail_open, 1);
        } else if ((wait = local_rate(api, who)) > 0) {
            evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
            publish_req_free(pr);
            refuse_rate(req, wait);
            return;
        }
    }
    forward(api, pr);
}

static void on_ready(struct api *api, struct evhttp_request *req)
{
    struct hub *h = api->hub;

    if (hub_is_ready(h))
        send_json(req, 200, "{\"status\":\"ready\"}");
    else
        send_error(req, 503, "unavailable",
                   h->is_draining ? "the hub is shutting down" : "the broker is not connected");
}

static void on_stats(struct api *api, struct evhttp_request *req)
{
    struct metrics_context ctx;
    char *s;

    hub_metrics_context(api->hub, &ctx);
    s = metrics_render_json(&ctx);
    send_json(req, 200, s);
    free(s);
}

static void on_metrics(struct api *api, struct evhttp_request *req)
{
    struct metrics_context ctx;
    struct evbuffer *out = evbuffer_new();
    char *s;

    hub_metrics_context(api->hub, &ctx);
    s = metrics_render_prometheus(&ctx);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evbuffer_add(out, s, strlen(s));
    evhttp_send_reply(req, 200, NULL, out);
    evbuffer_free(out);
    free(s);
}

static void on_health(struct api *api, struct evhttp_request *req)
{
    (void)api;
    send_json(req, 200, "{\"status\":\"ok\"}");
}

struct route {
    const char *path;
    enum evhttp_cmd_type method; /* GET routes answer HEAD too */
    const char *allow;
    void (*fn)(struct api *api, struct evhttp_request *req);
};

static const struct route routes[] = {
    {"/publish", EVHTTP_REQ_POST, "POST", on_publish},
    {"/health", EVHTTP_REQ_GET, "GET, HEAD", on_health},
    {"/ready", EVHTTP_REQ_GET, "GET, HEAD", on_ready},
    {"/stats", EVHTTP_REQ_GET, "GET, HEAD", on_stats},
    {"/metrics", EVHTTP_REQ_GET, "GET, HEAD", on_metrics},
};

static void on_request(struct evhttp_request *req, void *arg)
{
    struct api *api = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type method = evhttp_request_get_command(req);

    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct route *r = &routes[i];

        if (!path || strcmp(path, r->path) != 0)
            continue;
        if (method == r->method || (r->method == EVHTTP_REQ_GET && method == EVHTTP_REQ_HEAD)) {
            r->fn(api, req);
        } else {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", r->allow);
            if (r->method == EVHTTP_REQ_POST)
                metrics_add(&metrics.publish_errors, 1);
            send_error(req, 405, "method_not_allowed", "method not allowed on this path");
        }
        return;
    }
    send_error(req, 404, "not_found", "no such endpoint");
}

struct api *api_new(struct hub *hub, char *err, size_t errlen)
{
    struct api *api = xcalloc(1, sizeof(*api));
    const struct config *cfg = hub->cfg;
    size_t body_cap = (size_t)cfg->max_message_bytes * 4;

    api->hub = hub;
    api->http = evhttp_new(hub->base);
    if (!api->http)
        goto fail;
    /* Bodies up to 4x the limit are read and refused with a JSON 413; past that evhttp
     * refuses on the Content-Length alone, without reading the body. */
    evhttp_set_max_body_size(api->http, (ev_ssize_t)(body_cap < 1048576 ? 1048576 : body_cap));
    evhttp_set_max_headers_size(api->http, 16384);
    evhttp_set_timeout(api->http, 30);
    evhttp_set_allowed_methods(api->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                              EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_default_content_type(api->http, "application/json");
    evhttp_set_gencb(api->http, on_request, api);
    if (!evhttp_bind_socket_with_handle(api->http, cfg->api_listen.host,
                                        (ev_uint16_t)cfg->api_listen.port)) {
        snprintf(err, errlen,
                 "--api-listen: cannot listen on %s:%u (in use, or not an address here)",
                 cfg->api_listen.host, cfg->api_listen.port);
        goto fail;
    }
    return api;
fail:
    api_free(api);
    return NULL;
}

void api_free(struct api *api)
{
    struct rate_entry *e, *tmp;

    if (!api)
        return;
    HASH_ITER(hh, api->rates, e, tmp)
    {
        HASH_DEL(api->rates, e);
        free(e);
    }
    if (api->http)
        evhttp_free(api->http);
    free(api);
}
