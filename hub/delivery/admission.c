/* admission.c -- the checks every client connection passes, in order: the path, draining, the
 * client's address (the peer, or what trusted proxies say), the instance's connection cap
 * (HTTP 503), the per-address cap (HTTP 429), then Origin and token. Refusals a client should
 * back off from get an HTTP status; a refused Origin or token completes the handshake and is
 * closed with 1008 before any welcome, because a browser can read a close code but not the
 * status of a refused handshake. A header too long for the transport's buffer is refused, not
 * taken for absent: an Origin cut short must never pass --allowed-origins. */
#include "admission.h"

#include "common/config.h"
#include "common/jwt.h"
#include "common/keyhash.h"
#include "common/xalloc.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uthash.h>

struct count_entry {
    char key[NETADDR_KEYLEN];
    unsigned n;
    UT_hash_handle hh;
};

struct admission_gate {
    atomic_long admitted;       /* slots of --max-connections held */
    pthread_mutex_t lock;       /* guards counts */
    struct count_entry *counts; /* {lock}: per-address slots; entries exist while n > 0 */
};

struct admission_gate *admission_gate_new(void)
{
    struct admission_gate *g = xcalloc(1, sizeof(*g));

    atomic_init(&g->admitted, 0);
    pthread_mutex_init(&g->lock, NULL);
    return g;
}

void admission_gate_free(struct admission_gate *g)
{
    struct count_entry *e, *tmp;

    if (!g)
        return;
    HASH_ITER(hh, g->counts, e, tmp)
    {
        HASH_DEL(g->counts, e);
        free(e);
    }
    pthread_mutex_destroy(&g->lock);
    free(g);
}

long admission_gate_count(const struct admission_gate *g)
{
    return atomic_load((atomic_long *)&g->admitted);
}

/* Adds delta to key's count; returns the count before. */
static unsigned count_add(struct admission_gate *g, const char *key, int delta)
{
    struct count_entry *e;
    unsigned before;

    pthread_mutex_lock(&g->lock);
    HASH_FIND_STR(g->counts, key, e);
    if (!e && delta > 0) {
        e = xcalloc(1, sizeof(*e));
        snprintf(e->key, sizeof(e->key), "%s", key);
        HASH_ADD_STR(g->counts, key, e);
    }
    before = e ? e->n : 0;
    if (e) {
        e->n = delta < 0 && (unsigned)-delta > e->n ? 0 : (unsigned)((int)e->n + delta);
        if (e->n == 0) {
            HASH_DEL(g->counts, e);
            free(e);
        }
    }
    pthread_mutex_unlock(&g->lock);
    return before;
}

unsigned admission_gate_count_of(struct admission_gate *g, const char *key)
{
    struct count_entry *e;
    unsigned n;

    pthread_mutex_lock(&g->lock);
    HASH_FIND_STR(g->counts, key, e);
    n = e ? e->n : 0;
    pthread_mutex_unlock(&g->lock);
    return n;
}

static void refuse_http(struct admission *a, unsigned status, const char *code, const char *text,
                        enum refuse_reason why)
{
    a->verdict = REFUSE_HTTP;
    a->status = status;
    a->code = code;
    a->text = text;
    a->refuse_why = why;
}

static void refuse_close(struct admission *a, const char *reason, enum close_reason why)
{
    a->verdict = ADMIT_THEN_CLOSE;
    a->close_code = 1008;
    a->close_reason = reason;
    a->close_why = why;
}

static bool origin_ok(const struct config *cfg, const struct hdr *origin, struct admission *a)
{
    if (!cfg->origins)
        return true;
    switch (origin->state) {
    case HDR_ABSENT: return true; /* not a browser: Origin protects browsers from other sites */
    case HDR_TOO_LONG: snprintf(a->why, sizeof(a->why), "Origin too long"); return false;
    case HDR_PRESENT: break;
    }
    for (size_t i = 0; cfg->origins[i]; i++)
        if (!strcasecmp(cfg->origins[i], origin->value))
            return true;
    snprintf(a->why, sizeof(a->why), "Origin %.100s not allowed", origin->value);
    return false;
}

/* The token from ?token= or Authorization: Bearer, verified into a->claims. */
static bool token_ok(const struct config *cfg, const struct admission_request *rq,
                     struct admission *a)
{
    const char *tok = NULL;
    char err[128];

    if (rq->query_token.state == HDR_TOO_LONG) {
        snprintf(a->why, sizeof(a->why), "token in the query too long");
        return false;
    }
    if (rq->query_token.state == HDR_PRESENT) {
        tok = rq->query_token.value;
    } else if (rq->authorization.state == HDR_TOO_LONG) {
        snprintf(a->why, sizeof(a->why), "Authorization too long");
        return false;
    } else if (rq->authorization.state == HDR_PRESENT &&
               !strncasecmp(rq->authorization.value, "Bearer ", 7)) {
        tok = rq->authorization.value + 7;
    }
    if (!tok) {
        snprintf(a->why, sizeof(a->why), "no token");
        return false;
    }
    a->claims = xcalloc(1, sizeof(*a->claims));
    if (jwt_verify(tok, strlen(tok), cfg->jwt_secret, cfg->jwt_secret_len, rq->now_s, a->claims,
                   err, sizeof(err)) < 0) {
        free(a->claims);
        a->claims = NULL;
        snprintf(a->why, sizeof(a->why), "token refused (%s)", err);
        return false;
    }
    return true;
}

void admission_decide(const struct config *cfg, struct admission_gate *gate, const char *want,
                      const struct admission_request *rq, struct admission *a)
{
    memset(a, 0, sizeof(*a));
    a->gate = gate;
    a->verdict = ADMIT;
    snprintf(a->ip, sizeof(a->ip), "%s", rq->peer);
    snprintf(a->ip_key, sizeof(a->ip_key), "%s", rq->peer);

    if (rq->path.state != HDR_PRESENT || strcmp(rq->path.value, want) != 0) {
        snprintf(a->why, sizeof(a->why), "a request on another path than %s", want);
        refuse_http(a, 404, "not_found",
                    strcmp(want, "/sse") ? "WebSockets are served on /ws"
                                         : "server-sent events are served on /sse",
                    REFUSE_PATH);
        return;
    }
    if (rq->is_draining) {
        refuse_http(a, 503, "unavailable", "the hub is shutting down", REFUSE_DRAINING);
        return;
    }
    if (rq->forwarded_for.state == HDR_TOO_LONG && netaddr_list_contains(cfg->trusted, rq->peer)) {
        snprintf(a->why, sizeof(a->why), "X-Forwarded-For too long");
        refuse_http(a, 400, "bad_request", "X-Forwarded-For is too long", REFUSE_BAD_REQUEST);
        return;
    }
    if (rq->forwarded_for.state == HDR_PRESENT)
        netaddr_client(cfg->trusted, rq->peer, rq->forwarded_for.value, a->ip);
    netaddr_limit_key(a->ip, cfg->ipv6_prefix, a->ip_key);

    a->holds_slot = true;
    if (atomic_fetch_add(&gate->admitted, 1) >= (long)cfg->max_connections &&
        cfg->max_connections) {
        refuse_http(a, 503, "unavailable", "the hub is at its connection limit", REFUSE_CAPACITY);
        return;
    }
    a->holds_ip_slot = true;
    if (count_add(gate, a->ip_key, 1) >= cfg->max_connections_per_ip &&
        cfg->max_connections_per_ip) {
        refuse_http(a, 429, "rate_limited", "too many connections from this address",
                    REFUSE_PER_IP);
        return;
    }
    if (!origin_ok(cfg, &rq->origin, a))
        refuse_close(a, "origin not allowed", CLOSE_ORIGIN);
    else if (cfg->jwt_secret && !token_ok(cfg, rq, a))
        refuse_close(a, "unauthorized", CLOSE_AUTH);
}

void admission_release(struct admission *a)
{
    if (a->claims) {
        jwt_claims_free(a->claims);
        free(a->claims);
        a->claims = NULL;
    }
    if (a->holds_ip_slot) {
        count_add(a->gate, a->ip_key, -1);
        a->holds_ip_slot = false;
    }
    if (a->holds_slot) {
        atomic_fetch_sub(&a->gate->admitted, 1);
        a->holds_slot = false;
    }
}
