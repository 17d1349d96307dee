/* api.c -- POST /publish, /health, /ready, /stats and /metrics on --api-listen.
 * Control thread. A publish is checked (route, method, draining, content type, size, JSON)
 * and handed to the broker; the 202 leaves only from the broker's done callback, so a 202
 * always means the broker took the event. The pending publish outlives both sides: if the
 * HTTP client leaves first, evhttp's close callback marks it gone and done only frees it.
 * Every error answer is {"error":code,"message":text} with SPEC.md's status. */
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
#include "pubrate.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>

struct api {
    struct api_host host;
    struct evhttp *http;
    size_t pending; /* publishes waiting for the limiter or the broker */
};

struct publish_req {
    struct api *api;
    int64_t started_us;         /* monotonic, for the publish latency histogram */
    struct evhttp_request *req; /* NULL once the client is gone */
    struct message **msgs;
    size_t n;
    bool is_batch;
};

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
    pr->api->pending--;
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

    if (broker_publish(api->host.broker, pr->msgs, pr->n, on_published, pr) < 0) {
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

/* The limiter's verdict on pr: forward it, or answer it. */
static void on_rate_verdict(enum pubrate_verdict v, long long retry_after_s, void *arg)
{
    struct publish_req *pr = arg;
    struct evhttp_request *req = pr->req;

    if (!req) { /* the client left while the count was pending */
        publish_req_free(pr);
        return;
    }
    switch (v) {
    case PUBRATE_UNKNOWN:
        metrics_add(&metrics.publish_rate_fail_open, 1);
        log_warn("api", "publish rate unknown (Redis did not answer): letting it through");
        /* fallthrough */
    case PUBRATE_OK: forward(pr->api, pr); return;
    case PUBRATE_LIMITED:
    case PUBRATE_GONE:
    case PUBRATE_PENDING: break;
    }
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
    publish_req_free(pr);
    if (v == PUBRATE_LIMITED)
        refuse_rate(req, retry_after_s);
    else
        publish_refused(req, 503, "unavailable", "the hub is shutting down");
}

/* Every X-Forwarded-For line of req, joined with ',' into out (as lws joins them for /ws), so
 * a client's own line cannot hide the line its proxy added after it. Returns out, or NULL
 * when there is none. */
static const char *forwarded_for(struct evhttp_request *req, char *out, size_t cap)
{
    struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
    struct evkeyval *h;
    size_t n = 0;

    out[0] = '\0';
    TAILQ_FOREACH(h, headers, next)
    {
        size_t len;

        if (strcasecmp(h->key, "X-Forwarded-For") != 0)
            continue;
        len = strlen(h->value);
        if (n + len + 2 > cap)
            return NULL; /* too long to judge: the peer itself is the client */
        if (n)
            out[n++] = ',';
        memcpy(out + n, h->value, len + 1);
        n += len;
    }
    return n ? out : NULL;
}

/* Who a publish counts against: its API key, or its client address without keys. */
static void identity(struct api *api, struct evhttp_request *req, int key, char *out, size_t len)
{
    const struct config *cfg = api->host.cfg;
    char *peer = NULL;
    ev_uint16_t port = 0;
    char norm[NETADDR_STRLEN], client[NETADDR_STRLEN], limit_key[NETADDR_KEYLEN], xff[4096];

    if (key >= 0) {
        char id[17];

        apikeys_id(cfg->keys, key, id);
        snprintf(out, len, "key:%s", id);
        return;
    }
    evhttp_connection_get_peer(evhttp_request_get_connection(req), &peer, &port);
    if (!peer || netaddr_normalize(peer, strlen(peer), norm) < 0)
        snprintf(norm, sizeof(norm), "%s", peer ? peer : "unknown");
    netaddr_client(cfg->trusted, norm, forwarded_for(req, xff, sizeof(xff)), client);
    netaddr_limit_key(client, cfg->ipv6_prefix, limit_key);
    snprintf(out, len, "ip:%s", limit_key);
}

/* The API key of Authorization: Bearer KEY: its index, -1 when keys are off, -2 when refused. */
static int check_key(struct api *api, struct evhttp_request *req)
{
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    int key;

    if (!apikeys_count(api->host.cfg->keys))
        return -1;
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return -2;
    key = apikeys_find(api->host.cfg->keys, auth + 7, strlen(auth + 7));
    return key >= 0 ? key : -2;
}

static void on_publish(struct api *api, struct evhttp_request *req)
{
    const struct api_host *h = &api->host;
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(body);
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    struct publish_req *pr;
    char err[256], who[NETADDR_KEYLEN + 8];
    const char *text;
    long long retry_after = 0;
    int key;

    metrics_add(&metrics.publish_requests, 1);
    if (h->is_draining(h->arg)) {
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
    if (event_parse_publish(text ? text : "", len, clock_wall_ms(), h->ids, &pr->msgs, &pr->n, err,
                            sizeof(err)) < 0) {
        free(pr);
        publish_refused(req, 400, "bad_request", err);
        return;
    }
    pr->is_batch = len > 0 && text[strspn(text, " \t\r\n")] == '[';
    pr->req = req;
    pr->api = api;
    api->pending++;
    pr->started_us = clock_mono_us();
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_client_gone, pr);
    if (!h->pubrate) {
        forward(api, pr);
        return;
    }
    identity(api, req, key, who, sizeof(who));
    switch (pubrate_take(h->pubrate, who, &retry_after, on_rate_verdict, pr)) {
    case PUBRATE_PENDING: return; /* on_rate_verdict goes on */
    case PUBRATE_OK: forward(api, pr); return;
    case PUBRATE_UNKNOWN: on_rate_verdict(PUBRATE_UNKNOWN, 0, pr); return;
    case PUBRATE_LIMITED: on_rate_verdict(PUBRATE_LIMITED, retry_after, pr); return;
    case PUBRATE_GONE: on_rate_verdict(PUBRATE_GONE, 0, pr); return;
    }
}

static void on_ready(struct api *api, struct evhttp_request *req)
{
    const struct api_host *h = &api->host;

    if (h->is_ready(h->arg))
        send_json(req, 200, "{\"status\":\"ready\"}");
    else
        send_error(req, 503, "unavailable",
                   h->is_draining(h->arg) ? "the hub is shutting down"
                                          : "the broker is not connected");
}

static void on_stats(struct api *api, struct evhttp_request *req)
{
    struct metrics_context ctx;
    char *s;

    api->host.metrics_context(api->host.arg, &ctx);
    s = metrics_render_json(&ctx);
    send_json(req, 200, s);
    free(s);
}

static void on_metrics(struct api *api, struct evhttp_request *req)
{
    struct metrics_context ctx;
    struct evbuffer *out = evbuffer_new();
    char *s;

    api->host.metrics_context(api->host.arg, &ctx);
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

struct api *api_new(const struct api_host *host, char *err, size_t errlen)
{
    struct api *api = xcalloc(1, sizeof(*api));
    const struct config *cfg = host->cfg;
    size_t body_cap = (size_t)cfg->max_message_bytes * 4;

    api->host = *host;
    api->http = evhttp_new(host->base);
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

size_t api_pending(const struct api *api)
{
    return api ? api->pending : 0;
}

void api_free(struct api *api)
{
    if (!api)
        return;
    if (api->http)
        evhttp_free(api->http);
    free(api);
}
