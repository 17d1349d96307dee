/* client_util.c -- the helpers of client_util.h. The one piece of state is the program's name,
 * written once by main before anything else runs and read by the messages. Out of memory ends
 * the program with status 1, which every client documents as its local-failure status. */
#include "client_util.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char *program = "herald-client";

void client_sleep_us(int64_t us)
{
    struct timespec ts;

    if (us <= 0)
        return;
    ts.tv_sec = us / 1000000;
    ts.tv_nsec = (us % 1000000) * 1000;
    nanosleep(&ts, NULL);
}

uint64_t client_xorshift(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545f4914f6cdd1dULL;
}

int client_parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

void client_set_name(const char *name)
{
    program = name;
}

void client_out_of_memory(void)
{
    fprintf(stderr, "%s: out of memory\n", program);
    exit(1);
}

void *client_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (!p)
        client_out_of_memory();
    return p;
}

void *client_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        client_out_of_memory();
    return p;
}

char *client_xprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        client_out_of_memory();
    return s;
}

void client_put_clean(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fputc((unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i], f);
}

void client_catch_signals(void (*on_signal)(int))
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

void client_usage_error(const char *synopsis)
{
    fprintf(stderr, "%sTry '%s --help' for more.\n", synopsis, program);
}

void client_bad_option(int c, char **argv, const char *synopsis)
{
    if (c == ':')
        fprintf(stderr, "%s: %s needs a value\n", program, argv[optind - 1]);
    else if (!strncmp(argv[optind - 1], "--", 2))
        fprintf(stderr, "%s: bad option %s\n", program, argv[optind - 1]);
    else
        fprintf(stderr, "%s: bad option -%c\n", program, optopt);
    client_usage_error(synopsis);
}
