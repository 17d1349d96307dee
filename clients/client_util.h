/* client_util.h -- what every C client (herald-pub, herald-sub, herald-bench) shares: clocks,
 * a sleep, a random sequence, number parsing, allocation that cannot fail, printing text a peer
 * sent, signals, and the messages for a command line refused. libc only. */
#ifndef HERALD_CLIENT_UTIL_H
#define HERALD_CLIENT_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* --- clocks (any thread; inline, for the bench's per-read latency) ------------------------ */

static inline int64_t client_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t client_mono_ms(void)
{
    return client_mono_ns() / 1000000;
}

/* Unix time in microseconds (CLOCK_REALTIME): the bench's send times and windows. */
static inline int64_t client_wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Sleeps us microseconds; nothing when us <= 0. A caught signal ends it early. */
void client_sleep_us(int64_t us);

/* xorshift64*: the next number of the sequence in *state (never 0). Fast and seedable, for
 * demo data, WebSocket keys and masks: never for secrets. */
uint64_t client_xorshift(uint64_t *state);

/* A decimal number from 0 to max, the whole of s (no sign, no space). Returns 0 with *out
 * set, or -1. */
int client_parse_ulong(const char *s, unsigned long max, unsigned long *out);

/* --- the program ---------------------------------------------------------------------------- */

/* The program's name ("herald-pub") in the messages below; set it first thing in main. */
void client_set_name(const char *name);

/* Allocation that cannot fail: out of memory prints "NAME: out of memory" and exits 1 (STYLE.md
 * section 4). The caller owns the result. */
void *client_xmalloc(size_t n);
void *client_xrealloc(void *p, size_t n);
char *client_xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* What the above do when an allocation fails, for memory another library could not get. */
void client_out_of_memory(void) __attribute__((noreturn));

/* Writes n bytes of text a peer sent to f, control characters as '?', so that it stays on
 * one line and cannot move the terminal. */
void client_put_clean(FILE *f, const char *s, size_t n);

/* SIGINT and SIGTERM call on_signal, without SA_RESTART: sleeps and polls wake up. */
void client_catch_signals(void (*on_signal)(int));

/* Bad usage: synopsis, then "Try 'NAME --help' for more.", on stderr. */
void client_usage_error(const char *synopsis);
/* For getopt_long() run with opterr = 0 and an optstring that starts with ':': reports the
 * option that c (':' for a missing value, '?' for an unknown option) refused, as
 * "NAME: ..." on stderr, then client_usage_error(synopsis). */
void client_bad_option(int c, char **argv, const char *synopsis);

#endif
