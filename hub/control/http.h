/* http.h -- the API's HTTP/1.1 server on the control loop (libevent): keep-alive and
 * pipelining (answers leave in request order), Content-Length and chunked bodies,
 * Expect: 100-continue, a cap on connections, one deadline per request (not per byte), and a
 * look at each request's head before its body is read, so a refusal costs no body. Control
 * thread only. */
#ifndef HERALD_HTTP_H
#define HERALD_HTTP_H

#include "common/netaddr.h"
#include "http_parse.h"

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct http_request;
struct http_server;

struct http_limits {
    unsigned max_connections; /* past it a new connection gets 503 and is closed */
    size_t max_head_bytes;    /* request line and fields */
    size_t max_body_bytes;    /* past it: 413 (from Content-Length, before reading) */
    unsigned request_ms;      /* from a request's first byte to its last; then 408 */
    unsigned idle_ms;         /* a keep-alive connection with nothing to do is closed */
};

/* A request's head is complete (its body, if any, not read yet). Answer it now (a refusal: the
 * body is then skipped, or the connection closed) or leave it: on_request fires once the body
 * is in. Control thread. */
typedef void http_head_fn(struct http_request *rq, void *arg);
/* A whole request. Answer it now or later, exactly once. */
typedef void http_request_fn(struct http_request *rq, void *arg);

/* Listens on host:port. Returns NULL with err set. */
struct http_server *http_server_new(struct event_base *base, const char *host, unsigned port,
                                    const struct http_limits *lim, http_head_fn *on_head,
                                    http_request_fn *on_request, void *arg, char *err,
                                    size_t errlen);
/* Closes every connection; requests not answered yet are freed when they are answered. NULL
 * is a no-op. */
void http_server_free(struct http_server *s);
/* Connections open now. */
unsigned http_server_connections(const struct http_server *s);

/* --- a request (valid until it is answered) --- */
const struct http_head *http_request_head(const struct http_request *rq);
/* The first header field called name (case-insensitive), NUL-terminated, or NULL. */
const char *http_request_field(struct http_request *rq, const char *name);
/* Every field called name, joined with ',' into out (cap bytes). Returns out, or NULL when
 * there is none or they do not fit (*too_long set). */
const char *http_request_fields(struct http_request *rq, const char *name, char *out, size_t cap,
                                bool *too_long);
/* The body (NUL-terminated; chunked bodies decoded), and its length. */
const char *http_request_body(const struct http_request *rq, size_t *len);
/* The peer's address, normalised. */
const char *http_request_peer(const struct http_request *rq);
/* The client has gone: an answer now only frees the request. */
bool http_request_is_gone(const struct http_request *rq);
/* Room for the handler's own state (e.g. a pending publish). */
void http_request_set_user(struct http_request *rq, void *user);
void *http_request_user(const struct http_request *rq);

/* Answers rq with status, extra header lines (each "Name: value\r\n", or NULL), a content type
 * and a body (not sent for HEAD). Exactly once per request; frees rq (after it is written, or
 * at once if the client has gone). */
void http_respond(struct http_request *rq, int status, const char *extra_headers,
                  const char *content_type, const char *body, size_t len);
/* SPEC.md's error answer: {"error":code,"message":text} with a newline. */
void http_respond_error(struct http_request *rq, int status, const char *code, const char *text,
                        const char *extra_headers);

#endif
