/* http_client.h -- the HTTP/1.1 client of herald-pub and herald-bench: the small part of
 * HTTP/1.1 the hub speaks, over plain TCP. Two layers on the same pieces:
 *
 *   - pieces that never block, for the bench's own event loops: start a TCP connection (from a
 *     chosen source address), format a POST head, write what a socket takes, parse a response
 *     head, find one header;
 *   - a blocking keep-alive connection (herald-pub): one request at a time, every wait bounded
 *     by HTTP_IO_TIMEOUT_MS, Content-Length, chunked or close-delimited bodies.
 *
 * libc only. TLS is left to a proxy in front of the hub. */
#ifndef HERALD_HTTP_CLIENT_H
#define HERALD_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct client_url;  /* url.h */
struct sockaddr_in; /* netinet/in.h */

#define HTTP_IO_TIMEOUT_MS 10000                /* blocking layer: connect, each write, each read */
#define HTTP_MAX_HEAD 16384                     /* blocking layer: a response's head */
#define HTTP_MAX_BODY ((size_t)4 * 1024 * 1024) /* blocking layer: a response's body */

/* --- pieces that never block ---------------------------------------------------------------- */

/* Starts a TCP connection to dst: a non-blocking, close-on-exec socket with TCP_NODELAY, bound
 * first to src's address when src is not NULL, with the port left for connect() to pick (so
 * that each source address has the whole ephemeral port range to each destination). Returns
 * the descriptor, connected or connecting (wait for POLLOUT, then http_connect_result()), or
 * -1 with errno set and *step naming the call that failed: "socket", "bind" or "connect". */
int http_connect_start(const struct sockaddr *dst, socklen_t dst_len, const struct sockaddr_in *src,
                       const char **step);
/* Once fd, started by http_connect_start(), is writeable: 0 when it is connected, else the
 * errno value of the failure. */
int http_connect_result(int fd);

/* Writes the head of a POST with a JSON body of content_length bytes to out (cap bytes): the
 * request line for target (path and query), then Host, User-Agent (when user_agent is not
 * NULL), Content-Type, Content-Length, Authorization: Bearer (when bearer is not NULL),
 * Idempotency-Key (when idempotency_key is not NULL) and the blank line. Returns its length,
 * or -1 when it does not fit. */
int http_format_post(char *out, size_t cap, const char *target, const char *host,
                     const char *user_agent, const char *bearer, const char *idempotency_key,
                     size_t content_length);

/* Writes buf[*off..len) to the non-blocking fd, moving *off on. Returns 0 when all of it is
 * written or the socket takes no more (*off < len: wait for POLLOUT), -1 with errno set when
 * the connection failed. */
int http_write_some(int fd, const char *buf, size_t len, size_t *off);

/* What a response head says. */
struct http_head {
    size_t len;               /* bytes of the head, the blank line included */
    int minor;                /* HTTP/1.minor */
    int status;               /* 100 to 999 */
    char reason[64];          /* the reason phrase, cut to fit; "" when there is none */
    long long content_length; /* -1: no Content-Length */
    long retry_after;         /* Retry-After in seconds; -1: none, or not a number */
    bool is_chunked;          /* Transfer-Encoding names chunked */
    bool is_close;            /* the server closes after this response: Connection: close, or
                               * HTTP/1.0 without Connection: keep-alive */
};

/* Parses the response head at the start of buf[0..len). Returns 1 with *h filled, 0 when the
 * blank line that ends it has not come yet, -1 when it is not an HTTP/1.x response. Pure: the
 * bench calls it on every answer. */
int http_parse_head(const char *buf, size_t len, struct http_head *h);

/* Finds header name (any case) in the CRLF-separated lines h[0..len) of a response head and
 * copies its value, trimmed and cut to vlen - 1 bytes, to val. Returns whether it is there. */
bool http_find_header(const char *h, size_t len, const char *name, char *val, size_t vlen);

/* --- a blocking keep-alive connection ------------------------------------------------------- */

struct http_conn;

/* A connection to url's host and port, opened by the first request. url must outlive it.
 * user_agent goes in every request's User-Agent header. */
struct http_conn *http_conn_new(const struct client_url *url, const char *user_agent);
void http_conn_free(struct http_conn *c); /* closes the connection; NULL is a no-op */

/* A response; its body is NUL-terminated and owned by it. */
struct http_reply {
    struct http_head head;
    char *body;
    size_t body_len;
};

void http_reply_clear(struct http_reply *r); /* frees the body and zeroes r */

/* POSTs the JSON body[0..len) to the URL's path, with Authorization: Bearer bearer when bearer
 * is not NULL and Idempotency-Key: idempotency_key when that is not NULL (one line; the hub
 * takes 1 to 128 visible ASCII characters). Returns 0 with the response in r (cleared first;
 * whatever its status), or -1 with a one-line message in err when no response could be had.
 * A connection the server closed while it was idle is opened again once, and the request sent
 * again, when no byte of a response had come back (the usual keep-alive race). */
int http_post(struct http_conn *c, const char *bearer, const char *idempotency_key,
              const char *body, size_t len, struct http_reply *r, char *err, size_t errlen);

#endif
