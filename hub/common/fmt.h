/* fmt.h -- text without printf where it is written per request or per event (the publish
 * path): each function writes at p, without a NUL, and returns the end. Header-only. */
#ifndef HERALD_FMT_H
#define HERALD_FMT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline char *fmt_mem(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static inline char *fmt_str(char *p, const char *s)
{
    return fmt_mem(p, s, strlen(s));
}

/* v in decimal: at most 20 characters. */
static inline char *fmt_dec(char *p, uint64_t v)
{
    char t[20];
    size_t n = 0;

    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = t[--n];
    return p;
}

/* v in lower-case hexadecimal, no leading zeros: at most 16 characters. */
static inline char *fmt_hex(char *p, uint64_t v)
{
    char t[16];
    size_t n = 0;

    do {
        t[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    while (n)
        *p++ = t[--n];
    return p;
}

#endif
