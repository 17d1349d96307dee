/* log.c -- leveled, tagged log lines on stderr (journald reads them from there).
 * The level check happens in the macros, before any formatting. Each line leaves in one
 * write(), so lines from the two planes never interleave. JSON lines carry time, level,
 * subsystem and instance; the message is escaped here, so callers format plain text. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;
static enum log_format out_format = LOG_TEXT;
static char instance_id[128] = "herald";

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_setup(enum log_level level, enum log_format format, const char *instance)
{
    min_level = level;
    out_format = format;
    if (instance)
        snprintf(instance_id, sizeof(instance_id), "%s", instance);
}

int log_enabled(enum log_level level)
{
    return level >= min_level;
}

/* Appends s to buf[*n..cap) as JSON string content; truncates quietly. */
static void json_escape(char *buf, size_t cap, size_t *n, const char *s)
{
    for (; *s && *n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\') {
            buf[(*n)++] = '\\';
            buf[(*n)++] = (char)c;
        } else if (c < 0x20) {
            *n += (size_t)snprintf(buf + *n, cap - *n, "\\u%04x", c);
        } else {
            buf[(*n)++] = (char)c;
        }
    }
}

static void emit(enum log_level level, const char *tag, const char *msg)
{
    char line[2048];
    char stamp[40];
    struct timespec ts;
    struct tm tm;
    size_t n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ", ts.tv_nsec / 1000000);

    if (out_format == LOG_JSON) {
        n = (size_t)snprintf(line, sizeof(line),
                             "{\"time\":\"%s\",\"level\":\"%s\",\"subsystem\":\"%s\","
                             "\"instance\":\"",
                             stamp, level_names[level], tag);
        json_escape(line, sizeof(line), &n, instance_id);
        n += (size_t)snprintf(line + n, sizeof(line) - n, "\",\"msg\":\"");
        json_escape(line, sizeof(line), &n, msg);
        n += (size_t)snprintf(line + n, sizeof(line) - n, "\"}\n");
    } else {
        n = (size_t)snprintf(line, sizeof(line), "%s %-5s %-6s %s\n", stamp, level_names[level],
                             tag, msg);
    }
    if (n >= sizeof(line)) {
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    if (write(STDERR_FILENO, line, n) < 0) {
        /* nowhere left to report it */
    }
}

void log_write(enum log_level level, const char *tag, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;

    if (level < min_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    emit(level, tag, msg);
}

void log_write_errno(const char *tag, const char *fmt, ...)
{
    char msg[1536];
    int saved = errno;
    size_t n;
    va_list ap;

    va_start(ap, fmt);
    n = (size_t)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < sizeof(msg))
        snprintf(msg + n, sizeof(msg) - n, ": %s", strerror(saved));
    emit(LOG_ERROR, tag, msg);
}
