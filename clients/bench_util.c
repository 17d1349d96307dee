/* bench_util.c -- the first-error slot and the channel names of bench_util.h (the counters are
 * inline there). */
#include "bench_util.h"

#include <stdarg.h>
#include <stdio.h>

void first_error_init(struct first_error *e)
{
    pthread_mutex_init(&e->lock, NULL);
    e->text[0] = '\0';
}

void first_error_destroy(struct first_error *e)
{
    pthread_mutex_destroy(&e->lock);
}

void first_error_set(struct first_error *e, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&e->lock);
    if (!e->text[0]) {
        va_start(ap, fmt);
        vsnprintf(e->text, sizeof(e->text), fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&e->lock);
}

void first_error_copy(struct first_error *e, char *out, size_t len)
{
    pthread_mutex_lock(&e->lock);
    snprintf(out, len, "%s", e->text);
    pthread_mutex_unlock(&e->lock);
}

size_t channel_name(const char *name, unsigned channels, unsigned k, char *out, size_t len)
{
    int n = channels <= 1 ? snprintf(out, len, "%s", name) : snprintf(out, len, "%s-%u", name, k);

    return n < 0 ? 0 : (size_t)n;
}
