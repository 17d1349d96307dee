/* http_parse.h -- HTTP/1.1 requests as bytes: the head (request line and header fields) and
 * chunked bodies. Pure and strict (RFC 9112): no allocation, nothing read past what is given,
 * every length bounded; what it cannot read exactly is an error, never a guess. The API's
 * server (http.c) feeds it; tests and a fuzzer feed it directly. */
#ifndef HERALD_HTTP_PARSE_H
#define HERALD_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS 64

enum http_method {
    HTTP_GET,
    HTTP_HEAD,
    HTTP_POST,
    HTTP_PUT,
    HTTP_DELETE,
    HTTP_OPTIONS,
    HTTP_PATCH,
    HTTP_OTHER, /* any other token: the routes answer 405 */
};

struct http_span {
    const char *p; /* into the parsed bytes */
    size_t len;
};

struct http_field {
    struct http_span name, value; /* value without surrounding spaces */
};

struct http_head {
    enum http_method method;
    struct http_span target; /* as sent: path and query */
    struct http_span path;   /* target up to '?' */
    struct http_span query;  /* after '?', or empty */
    int minor;               /* HTTP/1.minor: 0 or 1 */
    struct http_field fields[HTTP_MAX_HEADERS];
    size_t n_fields;
    size_t head_len; /* bytes of the head, final CRLF included */
    /* what the framing fields said */
    bool is_chunked; /* Transfer-Encoding: chunked */
    bool has_length; /* Content-Length present */
    uint64_t content_length;
    bool wants_close;      /* Connection: close, or HTTP/1.0 without keep-alive */
    bool expects_continue; /* Expect: 100-continue */
};

enum http_parse_result {
    HTTP_PARSE_OK,          /* a complete head */
    HTTP_PARSE_MORE,        /* not complete yet: read more and call again */
    HTTP_PARSE_BAD,         /* malformed: answer 400 and close */
    HTTP_PARSE_TOO_LONG,    /* the head passes max_head bytes: answer 431 and close */
    HTTP_PARSE_VERSION,     /* not HTTP/1.x: answer 505 and close */
    HTTP_PARSE_UNSUPPORTED, /* a transfer coding other than chunked alone: 501 and close */
};

/* Parses the head at buf[0..len). Leading empty lines are skipped (RFC 9112 2.2). On OK, *h
 * points into buf. */
enum http_parse_result http_parse_head(const char *buf, size_t len, size_t max_head,
                                       struct http_head *h);

/* The value of the first field called name (case-insensitive), or NULL with *len 0. */
const char *http_head_field(const struct http_head *h, const char *name, size_t *len);

/* A chunked body, decoded in place as it arrives: feed each new stretch of bytes; the decoded
 * data is written to the front of the caller's body buffer. */
struct http_chunked {
    int state;
    uint64_t remaining; /* of the current chunk */
    size_t size_digits;
};
void http_chunked_init(struct http_chunked *c);
/* Decodes in[0..len) (which may overlap out only if out <= in), appending data to out (at
 * *out_len, never past out_cap). *consumed receives how many input bytes were used. Returns
 * HTTP_PARSE_OK at the end of the body (trailers skipped), MORE when it needs more input,
 * BAD on a malformed chunk, TOO_LONG when the data would pass out_cap. */
enum http_parse_result http_chunked_feed(struct http_chunked *c, const char *in, size_t len,
                                         size_t *consumed, char *out, size_t *out_len,
                                         size_t out_cap);

#endif
