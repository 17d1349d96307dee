/* redis_url.c -- redis://[[user]:password@]host[:port][/db], the form of --redis-url.
 * Pure: no I/O, no allocation. IPv6 hosts go in brackets. */
#include "redis_url.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Copies s[0..n) percent-decoded into out (cap bytes). Returns 0 or -1. */
static int decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t j = 0;

    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (c == '%') {
            int hi, lo;

            if (i + 2 >= n)
                return -1;
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (j + 1 >= cap)
            return -1;
        out[j++] = c;
    }
    out[j] = '\0';
    return 0;
}

static int parse_int(const char *s, size_t n, long min, long max, int *out)
{
    char buf[16];
    char *end;
    long v;

    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)buf[i]))
            return -1;
    v = strtol(buf, &end, 10);
    if (v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

int redis_url_parse(const char *url, struct redis_url *out, char *err, size_t errlen)
{
    const char *p, *at, *hostend, *slash;
    size_t n;

    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "must start with redis://");
        return -1;
    }
    p = url + 8;
    slash = strchr(p, '/');
    at = memchr(p, '@', slash ? (size_t)(slash - p) : strlen(p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));

        if (!colon) {
            snprintf(err, errlen, "credentials must be [user]:password@");
            return -1;
        }
        if (decode(p, (size_t)(colon - p), out->user, sizeof(out->user)) < 0 ||
            decode(colon + 1, (size_t)(at - colon - 1), out->password, sizeof(out->password)) < 0) {
            snprintf(err, errlen, "bad user or password (too long, or a bad %% escape)");
            return -1;
        }
        out->has_password = 1;
        p = at + 1;
    }
    if (*p == '[') {
        hostend = strchr(p, ']');
        if (!hostend) {
            snprintf(err, errlen, "unclosed [ in the host");
            return -1;
        }
        n = (size_t)(hostend - p - 1);
        if (n == 0 || n >= sizeof(out->host))
            goto bad_host;
        memcpy(out->host, p + 1, n);
        p = hostend + 1;
    } else {
        n = strcspn(p, ":/");
        if (n == 0 || n >= sizeof(out->host))
            goto bad_host;
        memcpy(out->host, p, n);
        p += n;
    }
    out->host[n] = '\0';
    if (*p == ':') {
        n = strcspn(p + 1, "/");
        if (parse_int(p + 1, n, 1, 65535, &out->port) < 0) {
            snprintf(err, errlen, "the port must be 1 to 65535");
            return -1;
        }
        p += 1 + n;
    }
    if (*p == '/') {
        p++;
        if (*p && parse_int(p, strlen(p), 0, 100000, &out->db) < 0) {
            snprintf(err, errlen, "the database must be a number");
            return -1;
        }
    } else if (*p) {
        snprintf(err, errlen, "unexpected text after the host");
        return -1;
    }
    return 0;
bad_host:
    snprintf(err, errlen, "the host is missing or too long");
    return -1;
}
