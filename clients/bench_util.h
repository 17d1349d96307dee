/* bench_util.h -- what herald-bench's publisher (bench_pub.c) and subscribers (bench_sub.c)
 * share: counters one thread writes while others read them, the first error of many threads,
 * and the names of the channels they load. */
#ifndef HERALD_BENCH_UTIL_H
#define HERALD_BENCH_UTIL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Adds n to (or takes it from) a counter that only the calling thread writes: a relaxed load
 * and store, no locked instruction, on the hot path. Readers use relaxed loads. */
static inline void counter_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void counter_sub(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - n,
                          memory_order_relaxed);
}

#define FIRST_ERROR_LEN 256

/* The first of the errors that any number of threads report: the one that explains a run. */
struct first_error {
    pthread_mutex_t lock;
    char text[FIRST_ERROR_LEN]; /* {lock}; "" until the first */
};

void first_error_init(struct first_error *e);
void first_error_destroy(struct first_error *e);
/* Keeps the message unless one came before. Any thread. */
void first_error_set(struct first_error *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Copies the message, "" when there is none, to out (len bytes, cut to fit). Any thread. */
void first_error_copy(struct first_error *e, char *out, size_t len);

/* Writes the name of channel k of a load on channels channels to out: name itself when
 * channels <= 1, else "name-k". Returns its length (what snprintf() returns). */
size_t channel_name(const char *name, unsigned channels, unsigned k, char *out, size_t len);

#endif
