/* api.h -- the HTTP API of SPEC.md on --api-listen (its own HTTP/1.1 server, http.c, on
 * the control loop). The API
 * sees the rest of the hub only through struct api_host: no call goes back into hub.c. */
#ifndef HERALD_API_H
#define HERALD_API_H

#include <stdbool.h>
#include <stddef.h>

struct api;
struct broker;
struct config;
struct history;
struct sequencer;
struct event_base;
struct event_ids;
struct metrics_context;
struct pubrate;

/* What the API needs from the hub. Every pointer outlives the API. */
struct api_host {
    const struct config *cfg;
    struct event_base *base;
    struct broker *broker;
    struct pubrate *pubrate; /* NULL: no --publish-rate */
    struct sequencer *seq;   /* (not used by the API yet) */
    struct history *local;   /* the hub's own '$' channels, for GET /history */
    struct event_ids *ids;   /* event ids for published events */
    /* the hub's state, asked per request */
    bool (*is_draining)(void *arg);
    bool (*is_ready)(void *arg);
    bool (*is_overloaded)(void *arg); /* delivery is behind past --max-backlog-bytes */
    void (*metrics_context)(void *arg, struct metrics_context *ctx);
    /* Optional: /ready's JSON body given the hub's readiness (malloc'd), or NULL for the
     * plain one (the body with Redis shards: hub.c). */
    char *(*ready_body)(void *arg, bool is_ready);
    void *arg;
};

/* Binds --api-listen. Copies host. Returns NULL with err set. */
struct api *api_new(const struct api_host *host, char *err, size_t errlen);
void api_free(struct api *api); /* NULL is a no-op */
/* The broker and the limiter are about to be freed: from now on every request but /health is
 * answered 503 without touching them. Returns the publishes still waiting for them (their
 * 503s are sent when those are freed). */
size_t api_detach(struct api *api);

#endif
