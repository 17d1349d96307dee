/* errbuf.h -- writing a one-line error into a caller's buffer (the err, errlen pair that
 * parsers and constructors take). Header-only, so the herald_jwt library shares it too. */
#ifndef HERALD_ERRBUF_H
#define HERALD_ERRBUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

static inline void errbuf_set(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline void errbuf_set(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

#endif
