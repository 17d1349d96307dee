/* bench_opts.h -- herald-bench's command line: the options, their defaults and --help, and
 * what they become once checked (the hub's addresses, the source addresses). Bad usage ends
 * the program with status 2 and one line on stderr; nothing here runs the benchmark. */
#ifndef HERALD_BENCH_OPTS_H
#define HERALD_BENCH_OPTS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>

enum peer { PEER_HERALD, PEER_NCHAN, PEER_NODE };

extern const char *const opts_peer_names[]; /* by enum peer: "herald", "nchan", "node" */

/* The options as given (strings point into argv), --saturate as rate 0. */
struct options {
    const char *ws, *api;
    enum peer peer;
    unsigned subscribers;
    const char *channel;
    unsigned channels;
    double rate;
    bool is_saturate;
    unsigned inflight, batch, size;
    unsigned max_backlog;
    double duration, warmup, drain;
    double connect_rate, connect_timeout;
    unsigned threads, procs;
    const char *source_ips;
    pid_t server_pid;
    bool is_json, is_quiet;
    bool is_verify; /* --verify */
};

/* A hub endpoint (--ws, --api), resolved. */
struct target {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char host[300]; /* the Host header: host[:port] as written */
    char path[1024];
    char shown[320]; /* numeric address:port, for messages */
};

/* Fills o from argv. --help and --version print and exit 0; bad usage exits 2. */
void opts_parse(int argc, char **argv, struct options *o);

/* Resolves --ws into ws and --api into api, reads --source-ips into *src (n_src addresses,
 * the caller frees *src; NULL and 0 without the option), raises RLIMIT_NOFILE to its hard
 * limit and checks that the descriptors and the ephemeral ports suffice, and that --size
 * holds an event. Exits 2 on the first that fails; warns when requests will pass the hub's
 * default --max-message-bytes. */
void opts_check(const struct options *o, struct target *ws, struct target *api,
                struct sockaddr_in **src, unsigned *n_src);

/* Bad usage: "herald-bench: MESSAGE (see --help)" on stderr, exit 2. */
void opts_die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
