/* log.h -- leveled, tagged log lines on stderr, as text or one JSON object a line. */
#ifndef HERALD_LOG_H
#define HERALD_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_TEXT, LOG_JSON };

/* Set once at start-up, before any thread starts. instance is copied. */
void log_setup(enum log_level level, enum log_format format, const char *instance);
int log_enabled(enum log_level level);
/* One line; thread-safe (one write() per line). Never pass payloads or tokens. */
void log_write(enum log_level level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like log_write at LOG_ERROR, appending ": strerror(errno)". */
void log_write_errno(const char *tag, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(tag, ...)                                                                        \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_write(LOG_DEBUG, tag, __VA_ARGS__);                                                \
    } while (0)
#define log_info(tag, ...)                                                                         \
    do {                                                                                           \
        if (log_enabled(LOG_INFO))                                                                 \
            log_write(LOG_INFO, tag, __VA_ARGS__);                                                 \
    } while (0)
#define log_warn(tag, ...) log_write(LOG_WARN, tag, __VA_ARGS__)
#define log_error(tag, ...) log_write(LOG_ERROR, tag, __VA_ARGS__)
#define log_error_errno(tag, ...) log_write_errno(tag, __VA_ARGS__)

#endif
