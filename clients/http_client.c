/* http_client.c -- the HTTP/1.1 client of http_client.h.
 *
 * The pieces that never block hold no state: the bench's publisher (bench_pub.c) keeps its
 * many connections, their buffers and its schedule itself, and calls http_parse_head() on
 * every answer, so the parser reads the head once, in place, without allocating. The
 * subscribers (bench_sub.c) start their connections here too, from their --source-ips, and
 * read their upgrade answer with http_find_header().
 *
 * The blocking connection (herald-pub) reads into a growing buffer that it parses and
 * consumes in place, waits in poll() at most HTTP_IO_TIMEOUT_MS each time (a signal does not
 * cut a wait short), and ends the program on out of memory (client_util.c). */
#include "http_client.h"

#include "client_util.h"
#include "url.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* --- connecting and writing ----------------------------------------------------------------- */

int http_connect_start(const struct sockaddr *dst, socklen_t dst_len, const struct sockaddr_in *src,
                       const char **step)
{
    int one = 1, fd, e;

    fd = socket(dst->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *step = "socket";
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (src) {
        /* the port is picked at connect(), per destination */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (const struct sockaddr *)src, sizeof(*src)) < 0) {
            *step = "bind";
            goto fail;
        }
    }
    if (connect(fd, dst, dst_len) < 0 && errno != EINPROGRESS) {
        *step = "connect";
        goto fail;
    }
    return fd;
fail:
    e = errno;
    close(fd);
    errno = e;
    return -1;
}

int http_connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    return err;
}

int http_format_post(char *out, size_t cap, const char *target, const char *host,
                     const char *user_agent, const char *bearer, const char *idempotency_key,
                     size_t content_length)
{
    int n = snprintf(out, cap,
                     "POST %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "%s%s%s"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %zu\r\n"
                     "%s%s%s"
                     "%s%s%s"
                     "\r\n",
                     target, host, user_agent ? "User-Agent: " : "", user_agent ? user_agent : "",
                     user_agent ? "\r\n" : "", content_length,
                     bearer ? "Authorization: Bearer " : "", bearer ? bearer : "",
                     bearer ? "\r\n" : "", idempotency_key ? "Idempotency-Key: " : "",
                     idempotency_key ? idempotency_key : "", idempotency_key ? "\r\n" : "");

    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int http_write_some(int fd, const char *buf, size_t len, size_t *off)
{
    while (*off < len) {
        ssize_t n = send(fd, buf + *off, len - *off, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        *off += (size_t)n;
    }
    return 0;
}

/* --- reading a head ------------------------------------------------------------------------- */

struct header {
    const char *name; /* NULL: the line has no colon */
    size_t name_len;
    const char *val; /* without the white space around it */
    size_t val_len;
};

/* Reads the line at p (which ends at CRLF or at end) into *hd. Returns where the next line
 * starts: past end after the last one. */
static const char *header_line(const char *p, const char *end, struct header *hd)
{
    const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2), *colon, *v;

    if (!eol)
        eol = end;
    colon = memchr(p, ':', (size_t)(eol - p));
    hd->name = NULL;
    if (colon) {
        hd->name = p;
        hd->name_len = (size_t)(colon - p);
        for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
            ;
        hd->val = v;
        hd->val_len = (size_t)(eol - v);
        while (hd->val_len && (v[hd->val_len - 1] == ' ' || v[hd->val_len - 1] == '\t'))
            hd->val_len--;
    }
    return eol + 2;
}

static bool is_name(const struct header *hd, const char *name)
{
    return hd->name && hd->name_len == strlen(name) && !strncasecmp(hd->name, name, hd->name_len);
}

/* Whether word (lower case) is in v[0..n), in any case. */
static bool has_word(const char *v, size_t n, const char *word)
{
    size_t wl = strlen(word);

    for (size_t i = 0; i + wl <= n; i++)
        if (!strncasecmp(v + i, word, wl))
            return true;
    return false;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A decimal with an optional sign, as strtoll() reads it: 0 without digits, clamped. */
static long long read_ll(const char *v, size_t n)
{
    size_t i = 0;
    bool is_neg = false;
    long long x = 0;

    if (i < n && (v[i] == '-' || v[i] == '+'))
        is_neg = v[i++] == '-';
    for (; i < n && is_digit(v[i]); i++)
        x = x > (LLONG_MAX - 9) / 10 ? LLONG_MAX : x * 10 + (v[i] - '0');
    return is_neg ? -x : x;
}

int http_parse_head(const char *buf, size_t len, struct http_head *h)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4), *eol, *p, *sp;
    int digits = 0;

    if (!end)
        return 0;
    memset(h, 0, sizeof(*h));
    h->len = (size_t)(end - buf) + 4;
    h->content_length = -1;
    h->retry_after = -1;

    /* the status line: HTTP/1.MINOR SP STATUS[ SP REASON] */
    eol = memmem(buf, h->len, "\r\n", 2);
    if (eol - buf < 7 || memcmp(buf, "HTTP/1.", 7) != 0 || !is_digit(buf[7]))
        return -1;
    for (p = buf + 7; p < eol && is_digit(*p); p++)
        h->minor = h->minor < 1000 ? h->minor * 10 + (*p - '0') : h->minor;
    if (p == eol || *p != ' ')
        return -1;
    while (p < eol && *p == ' ')
        p++;
    for (; p < eol && is_digit(*p) && digits < 3; p++, digits++)
        h->status = h->status * 10 + (*p - '0');
    if (h->status < 100)
        return -1;
    sp = (const char *)memchr(buf, ' ', (size_t)(eol - buf)) + 1; /* the reason: after "NNN " */
    if (eol - sp > 4) {
        size_t n = (size_t)(eol - sp - 4);

        n = n < sizeof(h->reason) - 1 ? n : sizeof(h->reason) - 1;
        memcpy(h->reason, sp + 4, n);
        h->reason[n] = '\0';
    }
    h->is_close = h->minor == 0;

    for (p = eol + 2; p < end;) {
        struct header hd;

        p = header_line(p, end, &hd);
        if (is_name(&hd, "Content-Length")) {
            h->content_length = read_ll(hd.val, hd.val_len);
        } else if (is_name(&hd, "Transfer-Encoding")) {
            h->is_chunked |= has_word(hd.val, hd.val_len, "chunked");
        } else if (is_name(&hd, "Connection")) {
            if (has_word(hd.val, hd.val_len, "close"))
                h->is_close = true;
            else if (has_word(hd.val, hd.val_len, "keep-alive") && h->minor == 0)
                h->is_close = false;
        } else if (is_name(&hd, "Retry-After")) {
            size_t i = 0;

            while (i < hd.val_len && is_digit(hd.val[i]))
                i++;
            h->retry_after = i && i == hd.val_len && i < 10 ? (long)read_ll(hd.val, i) : -1;
        }
    }
    return 1;
}

bool http_find_header(const char *h, size_t len, const char *name, char *val, size_t vlen)
{
    const char *end = h + len;

    while (h < end) {
        struct header hd;

        h = header_line(h, end, &hd);
        if (is_name(&hd, name)) {
            size_t n = hd.val_len < vlen - 1 ? hd.val_len : vlen - 1;

            memcpy(val, hd.val, n);
            val[n] = '\0';
            return true;
        }
    }
    return false;
}

/* --- a blocking keep-alive connection ------------------------------------------------------- */

/* buf holds bytes read but not yet parsed, NUL-terminated. */
struct http_conn {
    const struct client_url *url;
    const char *user_agent;
    int fd; /* -1 when closed */
    bool is_reused;
    char *buf;
    size_t len, cap;
};

struct http_conn *http_conn_new(const struct client_url *url, const char *user_agent)
{
    struct http_conn *c = client_xmalloc(sizeof(*c));

    *c = (struct http_conn){.url = url, .user_agent = user_agent, .fd = -1};
    return c;
}

static void conn_close(struct http_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->len = 0;
    c->is_reused = false;
}

void http_conn_free(struct http_conn *c)
{
    if (!c)
        return;
    conn_close(c);
    free(c->buf);
    free(c);
}

void http_reply_clear(struct http_reply *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* Waits until fd is ready for events, at most HTTP_IO_TIMEOUT_MS. Returns 0, or -1 with errno
 * (ETIMEDOUT on the deadline). A signal does not cut the wait short. */
static int wait_fd(int fd, short events)
{
    int64_t deadline = client_mono_ms() + HTTP_IO_TIMEOUT_MS;
    struct pollfd p = {.fd = fd, .events = events};

    for (;;) {
        int64_t left = deadline - client_mono_ms();
        int n;

        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        n = poll(&p, 1, (int)left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

/* Connects c to its URL's host, trying each address in turn. Returns 0, or -1 with a message
 * in err. */
static int conn_open(struct http_conn *c, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL, *ai;
    char port[8];
    int rc, saved = 0;

    conn_close(c);
    snprintf(port, sizeof(port), "%d", c->url->port);
    rc = getaddrinfo(c->url->host, port, &hints, &res);
    if (rc) {
        snprintf(err, errlen, "cannot resolve %s: %s", c->url->host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        const char *step;
        int fd = http_connect_start(ai->ai_addr, ai->ai_addrlen, NULL, &step), e;

        if (fd < 0) {
            saved = errno;
            continue;
        }
        e = wait_fd(fd, POLLOUT) < 0 ? errno : http_connect_result(fd);
        if (e) {
            saved = e;
            close(fd);
            continue;
        }
        c->fd = fd;
        break;
    }
    freeaddrinfo(res);
    if (c->fd < 0) {
        snprintf(err, errlen, "cannot connect to %s: %s", c->url->authority, strerror(saved));
        return -1;
    }
    return 0;
}

static int send_all(int fd, const char *p, size_t n)
{
    size_t off = 0;

    while (http_write_some(fd, p, n, &off) == 0) {
        if (off == n)
            return 0;
        if (wait_fd(fd, POLLOUT) < 0)
            return -1;
    }
    return -1;
}

/* Reads more bytes into c->buf. Returns the count, 0 at end of stream, -1 on error. */
static ssize_t fill(struct http_conn *c)
{
    for (;;) {
        ssize_t r;

        if (c->cap - c->len < 4096) {
            c->cap = c->cap ? c->cap * 2 : 8192;
            c->buf = client_xrealloc(c->buf, c->cap);
        }
        r = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
        if (r >= 0) {
            c->len += (size_t)r;
            c->buf[c->len] = '\0';
            return r;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (wait_fd(c->fd, POLLIN) < 0)
            return -1;
    }
}

/* Drops the first n buffered bytes. */
static void consume(struct http_conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    if (c->buf)
        c->buf[c->len] = '\0';
}

static void body_append(struct http_reply *r, const char *p, size_t n)
{
    r->body = client_xrealloc(r->body, r->body_len + n + 1);
    memcpy(r->body + r->body_len, p, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
}

/* Reads a chunked body into r. Returns 0, or -1 with a message. */
static int read_chunked(struct http_conn *c, struct http_reply *r, char *err, size_t errlen)
{
    for (;;) {
        char *eol, *end;
        unsigned long size;

        while (!(eol = strstr(c->buf ? c->buf : "", "\r\n"))) {
            if (c->len > HTTP_MAX_HEAD || fill(c) <= 0)
                goto bad;
        }
        errno = 0;
        size = strtoul(c->buf, &end, 16);
        if (errno || end == c->buf || r->body_len + size > HTTP_MAX_BODY)
            goto bad;
        consume(c, (size_t)(eol + 2 - c->buf));
        if (size == 0) { /* trailers, then an empty line */
            for (;;) {
                while (!(eol = strstr(c->buf ? c->buf : "", "\r\n"))) {
                    if (c->len > HTTP_MAX_HEAD || fill(c) <= 0)
                        goto bad;
                }
                if (eol == c->buf) {
                    consume(c, 2);
                    return 0;
                }
                consume(c, (size_t)(eol + 2 - c->buf));
            }
        }
        while (c->len < size + 2) {
            if (fill(c) <= 0)
                goto bad;
        }
        body_append(r, c->buf, size);
        consume(c, size + 2);
    }
bad:
    snprintf(err, errlen, "bad chunked reply from %s", c->url->authority);
    return -1;
}

/* Reads one response into r. Returns 0; -1 with a message; -2 when the connection ended
 * before any byte of a response (the caller may send the request again on a new connection).
 * r->head.is_close says the server closes the connection after this response. */
static int read_reply(struct http_conn *c, struct http_reply *r, char *err, size_t errlen)
{
    int rc;

    while ((rc = http_parse_head(c->buf ? c->buf : "", c->len, &r->head)) == 0) {
        ssize_t n;

        if (c->len > HTTP_MAX_HEAD) {
            snprintf(err, errlen, "reply headers from %s too large", c->url->authority);
            return -1;
        }
        n = fill(c);
        if (n <= 0) {
            if (c->len == 0 && (n == 0 || errno == ECONNRESET))
                return -2;
            snprintf(err, errlen, "no reply from %s: %s", c->url->authority,
                     n == 0 ? "connection closed" : strerror(errno));
            return -1;
        }
    }
    if (rc < 0) {
        snprintf(err, errlen, "not an HTTP reply from %s", c->url->authority);
        return -1;
    }
    consume(c, r->head.len);

    if (r->head.is_chunked)
        return read_chunked(c, r, err, errlen);
    if (r->head.content_length >= 0) {
        size_t n = (size_t)r->head.content_length;

        if (n > HTTP_MAX_BODY) {
            snprintf(err, errlen, "reply body from %s too large", c->url->authority);
            return -1;
        }
        while (c->len < n) {
            if (fill(c) <= 0) {
                snprintf(err, errlen, "reply from %s cut short", c->url->authority);
                return -1;
            }
        }
        body_append(r, c->buf ? c->buf : "", n);
        consume(c, n);
        return 0;
    }
    /* neither: the body runs to the end of the stream */
    r->head.is_close = true;
    for (;;) {
        ssize_t n = fill(c);

        if (n < 0 || c->len > HTTP_MAX_BODY) {
            snprintf(err, errlen, "reply from %s cut short", c->url->authority);
            return -1;
        }
        if (n == 0)
            break;
    }
    body_append(r, c->buf ? c->buf : "", c->len);
    consume(c, c->len);
    return 0;
}

int http_post(struct http_conn *c, const char *bearer, const char *idempotency_key,
              const char *body, size_t len, struct http_reply *r, char *err, size_t errlen)
{
    char head[1024 + 512];
    int n = http_format_post(head, sizeof(head), c->url->path, c->url->authority, c->user_agent,
                             bearer, idempotency_key, len);

    if (n < 0) {
        snprintf(err, errlen, "URL, API key or idempotency key too long");
        return -1;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        bool was_reused;
        int rc;

        if (c->fd < 0 && conn_open(c, err, errlen) < 0)
            return -1;
        was_reused = c->is_reused;
        http_reply_clear(r);
        if (send_all(c->fd, head, (size_t)n) < 0 || send_all(c->fd, body, len) < 0) {
            int e = errno;

            conn_close(c);
            if (was_reused && (e == EPIPE || e == ECONNRESET))
                continue; /* the server closed the idle connection: once more, on a new one */
            snprintf(err, errlen, "cannot send to %s: %s", c->url->authority, strerror(e));
            return -1;
        }
        rc = read_reply(c, r, err, errlen);
        if (rc == -2) {
            conn_close(c);
            if (was_reused)
                continue;
            snprintf(err, errlen, "no reply from %s: connection closed", c->url->authority);
            return -1;
        }
        if (rc < 0) {
            conn_close(c);
            return -1;
        }
        if (r->head.is_close)
            conn_close(c);
        else
            c->is_reused = true;
        return 0;
    }
    snprintf(err, errlen, "no reply from %s: connection closed", c->url->authority);
    return -1;
}
