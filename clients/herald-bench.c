/* herald-bench.c -- load generator for a Herald hub: N WebSocket subscribers, one publisher,
 * delivered rate, loss and latency percentiles, with a progress line each second.
 *
 * Phases, each with a deadline:
 *   1. check  the options, the descriptor and port budget, and that both hub ports answer TCP
 *   2. connect  N subscribers (bench_sub.c), paced by --connect-rate, until every one got its
 *               "subscribed" (--connect-timeout); any failure ends the run with status 1
 *   3. publish  warmup, then the measured window of --duration seconds (bench_pub.c); events
 *               carry their send time, so every subscriber measures each event's latency
 *   4. drain    up to --drain seconds, until every expected frame arrived
 *   5. report   a summary on stdout (text, or one JSON object with --json)
 * Expected frames = sum over channels of (events the hub accepted with 202 on the channel) x
 * (subscribers of the channel); loss = expected - received, and a subscriber the hub closed
 * (1013, slow consumer) shows up there and under closes. Loss is reported, never an error.
 *
 * Subscribers run in this process (threads) or, with --procs P, in P forked workers, each
 * with its own threads and descriptor budget; a worker reports its counters and histograms
 * over a pipe every 50 ms and once more when told to stop. The measured window is fixed
 * before publishing starts and handed to every worker: frames received inside it make the
 * delivered rate, events sent inside it make the latency percentiles, so nothing depends on
 * when a report arrives. Publishing, receiving and the hub share this machine's CPUs: the
 * summary shows the bench's own CPU next to the hub's so that a saturated bench is visible.
 *
 * --peer nchan points the same run at nginx + nchan (tests/bench/compare): subscribers on
 * PATH?id=CHANNEL count as subscribed at the 101 and take every text message as an event, the
 * publisher POSTs the event's data object alone to PATH?id=CHANNEL and takes 200-202. --peer
 * node is Herald's own protocol (tests/bench/peers/node speaks it); herald is the default.
 * --subscribers 0 measures publishing alone.
 *
 * Exit status: 0 the run completed (with or without loss), 1 the hub was unreachable (before,
 * or after the run: the summary is printed first) or the connect phase failed, 2 bad usage,
 * 130 interrupted (after printing what was measured). */

#include "bench_hist.h"
#include "bench_pub.h"
#include "bench_sub.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client_util.h"
#include "herald_version.h"
#include "url.h"

#define DEFAULT_WS "ws://127.0.0.1:8080/ws"
#define DEFAULT_API "http://127.0.0.1:8081/publish"
#define FD_RESERVE 64    /* descriptors a process needs besides its subscribers */
#define PORT_RESERVE 256 /* ephemeral ports left for everything else */
#define PROBE_TIMEOUT_MS 3000
#define REPORT_EVERY_MS 100   /* a worker process reports this often */
#define STOP_TIMEOUT_MS 15000 /* how long workers get to stop and send their last report */
#define HUB_DEFAULT_MAX_BYTES 65536

/* --- options -------------------------------------------------------------------------------- */

enum peer { PEER_HERALD, PEER_NCHAN, PEER_NODE };

static const char *const peer_names[] = {"herald", "nchan", "node"};

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
};

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: herald-bench [OPTIONS]\n"
        "\n"
        "Load generator for a Herald hub: N WebSocket subscribers, one HTTP publisher, delivered\n"
        "rate, loss and latency percentiles. A progress line each second on stderr, a summary\n"
        "on stdout.\n"
        "\n"
        "Target:\n"
        "  --ws URL              WebSocket endpoint [%s]\n"
        "  --api URL             publish endpoint [%s]\n"
        "  --peer KIND           herald, node (a server speaking Herald's protocol: the same)\n"
        "                        or nchan: subscribers on --ws?id=CHANNEL, subscribed at the\n"
        "                        101, every text message an event; the publisher POSTs the\n"
        "                        data object alone to --api?id=CHANNEL (batch 1), 200-202 OK\n"
        "                        [herald]\n"
        "Subscribers:\n"
        "  --subscribers N       WebSocket connections; 0: publish only [100]\n"
        "  --channel NAME        channel [bench]\n"
        "  --channels K          spread subscribers over K channels NAME-0..NAME-(K-1) [1: NAME]\n"
        "  --threads T           receiver threads per process, each with its own epoll\n"
        "                        [half the cores, at least 1]\n"
        "  --procs P             fork P worker processes that hold the subscribers between them\n"
        "                        (past the descriptor limit of one process) [1: this process]\n"
        "  --source-ips LIST     comma list of local IPv4 addresses (127.0.0.2,...) to spread\n"
        "                        connections over, past the ephemeral port range of one address\n"
        "  --connect-rate R      connections started per second [0: as fast as the hub accepts]\n"
        "  --connect-timeout S   the connect phase fails after S seconds [60]\n"
        "Publisher:\n"
        "  --rate R              events per second, paced; at most 100 ms of catch-up [1000]\n"
        "  --saturate            instead of --rate: keep --inflight requests in flight always\n"
        "  --inflight M          HTTP keep-alive connections, one request in flight each [4]\n"
        "  --batch B             events per request (a JSON array when B > 1, at most 1000) [1]\n"
        "  --size BYTES          bytes of each published event object [100]\n"
        "  --max-backlog E       closed loop: hold publishing while subscribers are on average\n"
        "                        more than E events behind (finds the rate the hub sustains;\n"
        "                        without it --saturate outruns fan-out and the hub closes\n"
        "                        subscribers with 1013) [0: off]\n"
        "Timing:\n"
        "  --warmup S            seconds of publishing before the measured window [0]\n"
        "  --duration S          seconds of the measured window [10]\n"
        "  --drain S             at the end, wait up to S seconds for frames still due [2]\n"
        "Report:\n"
        "  --server-pid PID      the hub's pid: its CPU time over the window (CPU us per\n"
        "                        delivered frame) and RSS/PSS before, connected and after\n"
        "  --json                print the summary as one JSON object on stdout\n"
        "  --quiet               no progress lines\n"
        "  --help, --version\n"
        "\n"
        "Loss = (events the hub accepted on a channel x its subscribers) - frames received,\n"
        "after the drain; subscribers the hub closed (1013: slow consumer) count as loss and\n"
        "under closes. Exit status: 0 done (loss included), 1 hub unreachable (at the start,\n"
        "or at the end: the summary is printed first) or the connect phase failed, 2 bad\n"
        "usage, 130 interrupted.\n",
        DEFAULT_WS, DEFAULT_API);
}

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die_usage(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "herald-bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see --help)\n");
    exit(2);
}

static double parse_num(const char *name, const char *s, double min, double max)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < min || v > max)
        die_usage("--%s: '%s' is not a number from %g to %g", name, s, min, max);
    return v;
}

static unsigned parse_uint(const char *name, const char *s, unsigned min, unsigned max)
{
    double v = parse_num(name, s, min, max);

    if (v != floor(v))
        die_usage("--%s: '%s' is not a whole number", name, s);
    return (unsigned)v;
}

static void parse_options(int argc, char **argv, struct options *o)
{
    enum {
        O_WS = 256,
        O_API,
        O_PEER,
        O_SUBS,
        O_CHANNEL,
        O_CHANNELS,
        O_RATE,
        O_SATURATE,
        O_INFLIGHT,
        O_BATCH,
        O_SIZE,
        O_MAX_BACKLOG,
        O_DURATION,
        O_WARMUP,
        O_DRAIN,
        O_CONNECT_RATE,
        O_CONNECT_TIMEOUT,
        O_THREADS,
        O_PROCS,
        O_SOURCE_IPS,
        O_SERVER_PID,
        O_JSON,
        O_QUIET,
        O_HELP,
        O_VERSION,
    };
    static const struct option longopts[] = {
        {"ws", required_argument, NULL, O_WS},
        {"api", required_argument, NULL, O_API},
        {"peer", required_argument, NULL, O_PEER},
        {"subscribers", required_argument, NULL, O_SUBS},
        {"channel", required_argument, NULL, O_CHANNEL},
        {"channels", required_argument, NULL, O_CHANNELS},
        {"rate", required_argument, NULL, O_RATE},
        {"saturate", no_argument, NULL, O_SATURATE},
        {"inflight", required_argument, NULL, O_INFLIGHT},
        {"batch", required_argument, NULL, O_BATCH},
        {"size", required_argument, NULL, O_SIZE},
        {"max-backlog", required_argument, NULL, O_MAX_BACKLOG},
        {"duration", required_argument, NULL, O_DURATION},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"drain", required_argument, NULL, O_DRAIN},
        {"connect-rate", required_argument, NULL, O_CONNECT_RATE},
        {"connect-timeout", required_argument, NULL, O_CONNECT_TIMEOUT},
        {"threads", required_argument, NULL, O_THREADS},
        {"procs", required_argument, NULL, O_PROCS},
        {"source-ips", required_argument, NULL, O_SOURCE_IPS},
        {"server-pid", required_argument, NULL, O_SERVER_PID},
        {"json", no_argument, NULL, O_JSON},
        {"quiet", no_argument, NULL, O_QUIET},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    bool has_rate = false;
    int c;

    *o = (struct options){
        .ws = DEFAULT_WS,
        .api = DEFAULT_API,
        .subscribers = 100,
        .channel = "bench",
        .channels = 1,
        .rate = 1000,
        .inflight = 4,
        .batch = 1,
        .size = 100,
        .duration = 10,
        .warmup = 0,
        .drain = 2,
        .connect_timeout = 60,
        .threads = cores > 1 ? (unsigned)(cores / 2) : 1,
        .procs = 1,
    };
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case O_WS: o->ws = optarg; break;
        case O_API: o->api = optarg; break;
        case O_PEER:
            if (strcmp(optarg, "herald") == 0)
                o->peer = PEER_HERALD;
            else if (strcmp(optarg, "nchan") == 0)
                o->peer = PEER_NCHAN;
            else if (strcmp(optarg, "node") == 0)
                o->peer = PEER_NODE;
            else
                die_usage("--peer: '%s' is not herald, nchan or node", optarg);
            break;
        case O_SUBS: o->subscribers = parse_uint("subscribers", optarg, 0, 10000000); break;
        case O_CHANNEL: o->channel = optarg; break;
        case O_CHANNELS: o->channels = parse_uint("channels", optarg, 1, 1000000); break;
        case O_RATE:
            o->rate = parse_num("rate", optarg, 0.001, 1e9);
            has_rate = true;
            break;
        case O_SATURATE: o->is_saturate = true; break;
        case O_INFLIGHT: o->inflight = parse_uint("inflight", optarg, 1, 1024); break;
        case O_BATCH: o->batch = parse_uint("batch", optarg, 1, 1000); break;
        case O_SIZE: o->size = parse_uint("size", optarg, 1, 16 << 20); break;
        case O_MAX_BACKLOG: o->max_backlog = parse_uint("max-backlog", optarg, 0, 100000000); break;
        case O_DURATION: o->duration = parse_num("duration", optarg, 0.1, 86400); break;
        case O_WARMUP: o->warmup = parse_num("warmup", optarg, 0, 86400); break;
        case O_DRAIN: o->drain = parse_num("drain", optarg, 0, 600); break;
        case O_CONNECT_RATE: o->connect_rate = parse_num("connect-rate", optarg, 0, 1e7); break;
        case O_CONNECT_TIMEOUT:
            o->connect_timeout = parse_num("connect-timeout", optarg, 0.1, 86400);
            break;
        case O_THREADS: o->threads = parse_uint("threads", optarg, 1, 1024); break;
        case O_PROCS: o->procs = parse_uint("procs", optarg, 1, 1024); break;
        case O_SOURCE_IPS: o->source_ips = optarg; break;
        case O_SERVER_PID:
            o->server_pid = (pid_t)parse_uint("server-pid", optarg, 1, 1u << 30);
            break;
        case O_JSON: o->is_json = true; break;
        case O_QUIET: o->is_quiet = true; break;
        case O_HELP: usage(stdout); exit(0);
        case O_VERSION: printf("herald-bench %s\n", HERALD_VERSION); exit(0);
        default:
            if (optopt)
                die_usage("option '%s' needs a value or is unknown", argv[optind - 1]);
            die_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        die_usage("unexpected argument '%s'", argv[optind]);
    if (o->is_saturate && has_rate)
        die_usage("--rate and --saturate exclude each other");
    if (o->is_saturate)
        o->rate = 0;
    if (!*o->channel || strlen(o->channel) > 120 ||
        strspn(o->channel, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:") !=
            strlen(o->channel))
        die_usage("--channel: 1 to 120 characters of A-Z a-z 0-9 _ - . :");
    if (o->peer == PEER_NCHAN && o->batch > 1)
        die_usage("--batch: nchan takes one message per request");
    if (o->procs > o->subscribers)
        o->procs = o->subscribers > 0 ? o->subscribers : 1;
}

/* --- addresses ------------------------------------------------------------------------------ */

struct target {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char host[300]; /* the Host header: host[:port] as written */
    char path[1024];
    char shown[320]; /* numeric address:port, for messages */
};

/* Reads scheme://host[:port][/path] (clients/url.c) into t, resolving host. Returns 0 or -1
 * (err set). */
static int parse_url(const char *url, const char *scheme, const char *opt, struct target *t,
                     char *err, size_t errlen)
{
    const char *const schemes[] = {scheme, NULL};
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    struct client_url u;
    char port[16], num[INET6_ADDRSTRLEN];
    const char *why;
    int rc;

    if (client_url_parse(url, schemes, &u, &why) < 0) {
        snprintf(err, errlen, "%s: '%s': %s (%s://HOST[:PORT][/PATH]; TLS is not supported)", opt,
                 url, why, scheme);
        client_url_free(&u);
        return -1;
    }
    snprintf(t->host, sizeof(t->host), "%s", u.authority);
    snprintf(t->path, sizeof(t->path), "%s", u.path);
    snprintf(port, sizeof(port), "%d", u.port);
    rc = getaddrinfo(u.host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot resolve '%s': %s", opt, u.host, gai_strerror(rc));
        client_url_free(&u);
        return -1;
    }
    client_url_free(&u);
    memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
    t->addr_len = res->ai_addrlen;
    getnameinfo(res->ai_addr, res->ai_addrlen, num, sizeof(num), NULL, 0, NI_NUMERICHOST);
    snprintf(t->shown, sizeof(t->shown), res->ai_family == AF_INET6 ? "[%s]:%s" : "%s:%s", num,
             port);
    freeaddrinfo(res);
    return 0;
}

/* Connects to t within PROBE_TIMEOUT_MS and closes. Returns 0 or -1 (err set). */
static int probe(const struct target *t, const char *what, char *err, size_t errlen)
{
    int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int e = 0, rc;
    socklen_t elen = sizeof(e);

    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (const struct sockaddr *)&t->addr, t->addr_len) < 0) {
        if (errno != EINPROGRESS) {
            e = errno;
        } else {
            do
                rc = poll(&pfd, 1, PROBE_TIMEOUT_MS);
            while (rc < 0 && errno == EINTR);
            if (rc == 0)
                e = ETIMEDOUT;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0)
                e = errno;
        }
    }
    close(fd);
    if (e) {
        snprintf(err, errlen, "the hub is unreachable: %s at %s: %s", what, t->shown, strerror(e));
        return -1;
    }
    return 0;
}

static int parse_source_ips(const char *list, struct sockaddr_in **out, unsigned *n, char *err,
                            size_t errlen)
{
    char *copy = strdup(list), *save = NULL, *tok;
    unsigned cap = 8;

    *n = 0;
    *out = calloc(cap, sizeof(**out));
    if (!copy || !*out) {
        snprintf(err, errlen, "out of memory");
        free(copy);
        return -1;
    }
    for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        struct sockaddr_in sin = {.sin_family = AF_INET};

        if (inet_pton(AF_INET, tok, &sin.sin_addr) != 1) {
            snprintf(err, errlen, "--source-ips: '%s' is not an IPv4 address", tok);
            free(copy);
            return -1;
        }
        if (*n == cap) {
            struct sockaddr_in *bigger = realloc(*out, 2 * cap * sizeof(**out));

            if (!bigger) {
                snprintf(err, errlen, "out of memory");
                free(copy);
                return -1;
            }
            *out = bigger;
            cap *= 2;
        }
        (*out)[(*n)++] = sin;
    }
    free(copy);
    if (*n == 0) {
        snprintf(err, errlen, "--source-ips: no address given");
        return -1;
    }
    return 0;
}

/* --- clocks and /proc ----------------------------------------------------------------------- */

struct proc_sample {
    bool is_ok;
    double cpu_s; /* utime + stime, every thread */
    bool has_mem;
    long rss_kb, pss_kb;
};

/* Reads pid's CPU time from /proc/PID/stat and, with mem, Rss and Pss from smaps_rollup. */
static void sample_proc(pid_t pid, bool mem, struct proc_sample *s)
{
    char path[64], buf[4096];
    FILE *f;
    size_t n;
    const char *p;
    unsigned long long ut, st;

    memset(s, 0, sizeof(*s));
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
     * stime */
    if (!p ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return;
    s->is_ok = true;
    s->cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    if (!mem)
        return;
    snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(buf, sizeof(buf), f)) {
        long v;

        if (sscanf(buf, "Rss: %ld kB", &v) == 1) {
            s->rss_kb = v;
            s->has_mem = true;
        } else if (sscanf(buf, "Pss: %ld kB", &v) == 1) {
            s->pss_kb = v;
        }
    }
    fclose(f);
}

/* --- workers: the subscribers, here or in forked processes ----------------------------------- */

enum { MSG_SNAP = 1, MSG_FINAL = 2 };
enum { CMD_WINDOW = 1, CMD_STOP = 2 };

struct cmd {
    uint32_t type;
    uint32_t pad;
    int64_t a, b;
};

struct msg_head {
    uint32_t type;
    uint32_t len;
};

/* A report: this header, then n_live then n_meas (index, count) pairs. */
struct msg_snap {
    struct sub_counters c;
    char first_error[SUB_ERROR_LEN];
    uint64_t live_max, meas_max;
    uint32_t n_live, n_meas;
};

struct hist_pair {
    uint64_t idx, count;
};

struct child {
    pid_t pid;
    int rd; /* its reports */
    int wr; /* our commands */
    bool is_final, is_gone;
    struct sub_counters c;
    char first_error[SUB_ERROR_LEN];
    struct hist live, meas;
};

struct workers {
    unsigned procs; /* 0: the group is in this process */
    struct sub_group *local;
    struct child *kids;
};

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static int write_full(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len) {
        ssize_t n = write(fd, p, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int read_full(int fd, void *buf, size_t len)
{
    char *p = buf;

    while (len) {
        ssize_t n = read(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static size_t hist_pack(const struct hist *h, struct hist_pair *out)
{
    size_t n = 0;

    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        if (h->counts[i])
            out[n++] = (struct hist_pair){i, h->counts[i]};
    return n;
}

static void hist_unpack(struct hist *h, const struct hist_pair *in, size_t n, uint64_t max)
{
    hist_reset(h);
    for (size_t i = 0; i < n; i++) {
        if (in[i].idx >= HIST_BUCKETS)
            continue;
        h->counts[in[i].idx] = in[i].count;
        h->total += in[i].count;
    }
    h->max = max;
}

/* A worker process: runs its group, reports, obeys commands; never returns. */
static void child_main(const struct sub_config *cfg, int rd, int wr)
{
    static struct hist live, meas;
    static struct hist_pair pairs[2 * HIST_BUCKETS];
    struct msg_snap snap;
    char err[256];
    struct sub_group *g;
    bool is_stopping = false;
    int status = 0;

    signal(SIGINT, SIG_IGN); /* the parent decides when to stop */
    g = sub_group_new(cfg, err, sizeof(err));
    if (!g || sub_group_start(g, err, sizeof(err)) < 0) {
        fprintf(stderr, "herald-bench: worker: %s\n", err);
        _exit(1);
    }
    for (;;) {
        struct pollfd pfd = {.fd = rd, .events = POLLIN};
        struct msg_head head;
        size_t n_live, n_meas = 0;

        if (!is_stopping && poll(&pfd, 1, REPORT_EVERY_MS) > 0) {
            struct cmd cmd;

            if (read_full(rd, &cmd, sizeof(cmd)) < 0 || cmd.type == CMD_STOP)
                is_stopping = true;
            else if (cmd.type == CMD_WINDOW)
                sub_group_set_window(g, cmd.a, cmd.b);
        }
        if (is_stopping)
            sub_group_stop(g);
        memset(&snap, 0, sizeof(snap));
        hist_reset(&live);
        sub_group_snapshot(g, &snap.c, &live);
        sub_group_first_error(g, snap.first_error, sizeof(snap.first_error));
        n_live = hist_pack(&live, pairs);
        if (is_stopping) {
            hist_reset(&meas);
            sub_group_measured(g, &meas);
            n_meas = hist_pack(&meas, pairs + n_live);
            snap.meas_max = meas.max;
        }
        snap.live_max = live.max;
        snap.n_live = (uint32_t)n_live;
        snap.n_meas = (uint32_t)n_meas;
        head.type = is_stopping ? MSG_FINAL : MSG_SNAP;
        head.len = (uint32_t)(sizeof(snap) + (n_live + n_meas) * sizeof(pairs[0]));
        if (write_full(wr, &head, sizeof(head)) < 0 || write_full(wr, &snap, sizeof(snap)) < 0 ||
            write_full(wr, pairs, (n_live + n_meas) * sizeof(pairs[0])) < 0) {
            status = 1; /* the parent is gone */
            break;
        }
        if (is_stopping)
            break;
    }
    sub_group_free(g);
    _exit(status);
}

/* Reads one report of k. Returns 0, or -1 when k is gone. */
static int child_read(struct child *k)
{
    static struct hist_pair pairs[2 * HIST_BUCKETS];
    struct msg_head head;
    struct msg_snap snap;
    size_t n;

    if (read_full(k->rd, &head, sizeof(head)) < 0 || head.len < sizeof(snap) ||
        head.len > sizeof(snap) + sizeof(pairs) || read_full(k->rd, &snap, sizeof(snap)) < 0)
        goto gone;
    n = (head.len - sizeof(snap)) / sizeof(pairs[0]);
    if (n != (size_t)snap.n_live + snap.n_meas || read_full(k->rd, pairs, n * sizeof(pairs[0])) < 0)
        goto gone;
    k->c = snap.c;
    memcpy(k->first_error, snap.first_error, sizeof(k->first_error));
    k->first_error[sizeof(k->first_error) - 1] = '\0';
    hist_unpack(&k->live, pairs, snap.n_live, snap.live_max);
    if (head.type == MSG_FINAL) {
        hist_unpack(&k->meas, pairs + snap.n_live, snap.n_meas, snap.meas_max);
        k->is_final = true;
    }
    return 0;
gone:
    k->is_gone = true;
    close(k->rd);
    k->rd = -1;
    return -1;
}

static int workers_start(struct workers *w, const struct sub_config *cfg, unsigned procs, char *err,
                         size_t errlen)
{
    memset(w, 0, sizeof(*w));
    if (procs <= 1) {
        w->local = sub_group_new(cfg, err, errlen);
        return w->local ? sub_group_start(w->local, err, errlen) : -1;
    }
    w->kids = calloc(procs, sizeof(*w->kids));
    if (!w->kids) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    fflush(NULL);
    for (unsigned i = 0; i < procs; i++) {
        struct child *k = &w->kids[i];
        int up[2], down[2];
        struct sub_config c = *cfg;

        k->rd = k->wr = -1;
        if (pipe2(up, O_CLOEXEC) < 0 || pipe2(down, O_CLOEXEC) < 0) {
            snprintf(err, errlen, "pipe: %s", strerror(errno));
            return -1;
        }
        c.first = (uint32_t)i;
        c.stride = procs;
        k->pid = fork();
        if (k->pid < 0) {
            snprintf(err, errlen, "fork: %s", strerror(errno));
            return -1;
        }
        if (k->pid == 0) {
            /* the other workers' pipes stay open here; harmless, they close at _exit */
            close(up[0]);
            close(down[1]);
            child_main(&c, down[0], up[1]);
        }
        close(up[1]);
        close(down[0]);
        k->rd = up[0];
        k->wr = down[1];
        w->procs++;
    }
    return 0;
}

/* Takes the workers' reports for up to wait_us (in this process: just waits). */
static void workers_pump(struct workers *w, int64_t wait_us)
{
    struct pollfd pfd[1024];
    int64_t end = client_wall_us() + wait_us;

    if (!w->procs) {
        client_sleep_us(wait_us);
        return;
    }
    for (;;) {
        int64_t left = end - client_wall_us();
        unsigned n = 0;
        int rc;

        for (unsigned i = 0; i < w->procs; i++) {
            pfd[i].fd = w->kids[i].rd;
            pfd[i].events = POLLIN;
            pfd[i].revents = 0;
            n += w->kids[i].rd >= 0;
        }
        if (n == 0) {
            client_sleep_us(left);
            return;
        }
        rc = poll(pfd, w->procs, left > 0 ? (int)((left + 999) / 1000) : 0);
        if (rc < 0 && errno != EINTR)
            return;
        for (unsigned i = 0; rc > 0 && i < w->procs; i++)
            if (pfd[i].revents)
                child_read(&w->kids[i]);
        if (left <= 0 || interrupted)
            return;
    }
}

static void workers_totals(struct workers *w, struct sub_counters *c, struct hist *live)
{
    memset(c, 0, sizeof(*c));
    if (live)
        hist_reset(live);
    if (!w->procs) {
        if (w->local)
            sub_group_snapshot(w->local, c, live);
        return;
    }
    for (unsigned i = 0; i < w->procs; i++) {
        sub_counters_add(c, &w->kids[i].c);
        if (live)
            hist_add(live, &w->kids[i].live);
    }
}

static void workers_first_error(struct workers *w, char *out, size_t len)
{
    out[0] = '\0';
    if (!w->procs) {
        if (w->local)
            sub_group_first_error(w->local, out, len);
        return;
    }
    for (unsigned i = 0; i < w->procs && !out[0]; i++)
        snprintf(out, len, "%s", w->kids[i].first_error);
    for (unsigned i = 0; i < w->procs && !out[0]; i++)
        if (w->kids[i].is_gone && !w->kids[i].is_final)
            snprintf(out, len, "worker process %d ended early", (int)w->kids[i].pid);
}

static bool workers_lost_one(struct workers *w)
{
    for (unsigned i = 0; i < w->procs; i++)
        if (w->kids[i].is_gone && !w->kids[i].is_final)
            return true;
    return false;
}

static void workers_command(struct workers *w, uint32_t type, int64_t a, int64_t b)
{
    struct cmd cmd = {.type = type, .a = a, .b = b};

    for (unsigned i = 0; i < w->procs; i++)
        if (w->kids[i].wr >= 0 && write_full(w->kids[i].wr, &cmd, sizeof(cmd)) < 0) {
            close(w->kids[i].wr);
            w->kids[i].wr = -1;
        }
}

static void workers_set_window(struct workers *w, int64_t start_us, int64_t end_us)
{
    if (w->local)
        sub_group_set_window(w->local, start_us, end_us);
    workers_command(w, CMD_WINDOW, start_us, end_us);
}

/* Stops every subscriber; adds the measured histogram to meas (may be NULL) and leaves the
 * final counters for workers_totals(). Reaps the worker processes. */
static void workers_stop(struct workers *w, struct hist *meas)
{
    int64_t deadline = client_wall_us() + (int64_t)STOP_TIMEOUT_MS * 1000;

    if (w->local) {
        sub_group_stop(w->local);
        if (meas)
            sub_group_measured(w->local, meas);
        return;
    }
    workers_command(w, CMD_STOP, 0, 0);
    for (;;) {
        bool is_waiting = false;

        for (unsigned i = 0; i < w->procs; i++)
            is_waiting |= !w->kids[i].is_final && !w->kids[i].is_gone;
        if (!is_waiting || client_wall_us() >= deadline)
            break;
        workers_pump(w, 50000);
    }
    for (unsigned i = 0; i < w->procs; i++) {
        struct child *k = &w->kids[i];

        if (meas && k->is_final)
            hist_add(meas, &k->meas);
        if (!k->is_final && !k->is_gone)
            kill(k->pid, SIGKILL); /* ours, and past its deadline */
    }
}

static void workers_free(struct workers *w)
{
    if (w->local) {
        sub_group_free(w->local);
        w->local = NULL;
    }
    for (unsigned i = 0; i < w->procs; i++) {
        struct child *k = &w->kids[i];

        if (k->wr >= 0)
            close(k->wr); /* a worker that still runs sees EOF and stops */
        if (k->rd >= 0)
            close(k->rd);
        k->wr = k->rd = -1;
        if (k->pid > 0)
            waitpid(k->pid, NULL, 0);
    }
    free(w->kids);
    w->kids = NULL;
    w->procs = 0;
}

/* CPU seconds of this process and its workers. */
static double bench_cpu(struct workers *w)
{
    struct proc_sample s;
    double sum = 0;

    sample_proc(getpid(), false, &s);
    sum += s.cpu_s;
    for (unsigned i = 0; i < w->procs; i++) {
        sample_proc(w->kids[i].pid, false, &s);
        sum += s.cpu_s;
    }
    return sum;
}

/* --- the run -------------------------------------------------------------------------------- */

struct run {
    const struct options *o;
    struct target ws, api;
    struct sockaddr_in *src;
    unsigned n_src;
    struct workers w;
    struct publisher *pub;

    double connect_s;
    int64_t pub_start_us, win_start_us, win_end_us, pub_end_us;
    struct pub_counters pub_at_start, pub_at_end, pub_final;
    struct proc_sample srv_before, srv_connected, srv_win_start, srv_win_end;
    double bench_cpu_start, bench_cpu_end;
    bool has_window_start, has_window_end;

    struct sub_counters final;
    struct hist latency; /* events sent inside the window */
    struct hist rtt;
    uint64_t expected;
    double drain_s;
    bool is_interrupted;
};

/* Subscribers of channel k, for subscriber i on channel i % K. */
static uint64_t subs_on(const struct options *o, unsigned k)
{
    return o->subscribers / o->channels + (k < o->subscribers % o->channels);
}

static uint64_t expected_frames(struct run *r)
{
    uint64_t sum = 0;

    for (unsigned k = 0; k < r->o->channels; k++)
        sum += pub_acked_on(r->pub, k) * subs_on(r->o, k);
    return sum;
}

static uint64_t closes_total(const struct sub_counters *c)
{
    uint64_t n = 0;

    for (unsigned i = 0; i < SUB_CLOSE_SLOTS; i++)
        n += c->closes[i];
    return n;
}

static void progress(struct run *r, const char *phase, double elapsed, const struct sub_counters *c,
                     const struct sub_counters *prev, const struct hist *delta,
                     const struct pub_counters *pc, const struct pub_counters *pprev, double dt)
{
    if (r->o->is_quiet)
        return;
    fprintf(stderr,
            "[%6.1fs %-7s] sent %9.0f/s  delivered %10.0f/s  p50 %7.2f ms  p99 %7.2f ms  "
            "open %" PRIu64 "  closes %" PRIu64 "\n",
            elapsed, phase, (double)(pc->events_sent - pprev->events_sent) / dt,
            (double)(c->frames - prev->frames) / dt, hist_percentile(delta, 50) / 1000.0,
            hist_percentile(delta, 99) / 1000.0, c->open_now, closes_total(c));
}

static int connect_phase(struct run *r)
{
    const struct options *o = r->o;
    int64_t t0 = client_wall_us(), deadline = t0 + (int64_t)(o->connect_timeout * 1e6);
    int64_t next_print = t0 + 1000000;
    struct sub_counters c;
    char err[SUB_ERROR_LEN];

    for (;;) {
        int64_t now;

        workers_pump(&r->w, 20000);
        workers_totals(&r->w, &c, NULL);
        now = client_wall_us();
        if (c.subscribed >= o->subscribers)
            break;
        if (c.failed || workers_lost_one(&r->w)) {
            workers_first_error(&r->w, err, sizeof(err));
            fprintf(stderr,
                    "herald-bench: connect phase failed: %" PRIu64 " of %u subscribers failed; "
                    "first: %s\n",
                    c.failed, o->subscribers, err[0] ? err : "(no reason recorded)");
            return -1;
        }
        if (now >= deadline || interrupted) {
            fprintf(stderr,
                    "herald-bench: connect phase failed: %s after %.1f s with %" PRIu64
                    " of %u subscribed (%" PRIu64 " open, %" PRIu64 " started)\n",
                    interrupted ? "interrupted" : "--connect-timeout", (now - t0) / 1e6,
                    c.subscribed, o->subscribers, c.opened, c.started);
            return -1;
        }
        if (now >= next_print) {
            if (!o->is_quiet)
                fprintf(stderr,
                        "[%6.1fs connect] started %" PRIu64 "  open %" PRIu64
                        "  subscribed %" PRIu64 " of %u  (%.0f/s)\n",
                        (now - t0) / 1e6, c.started, c.opened, c.subscribed, o->subscribers,
                        c.subscribed / ((now - t0) / 1e6));
            next_print += 1000000;
        }
    }
    r->connect_s = (client_wall_us() - t0) / 1e6;
    if (!o->is_quiet)
        fprintf(stderr, "[connect] %u subscribed in %.2f s (%.0f connections/s)\n", o->subscribers,
                r->connect_s, o->subscribers / r->connect_s);
    return 0;
}

/* Publishing through the window; progress each second; samples at the window's edges. */
static int publish_phase(struct run *r)
{
    const struct options *o = r->o;
    struct pub_config pc = {
        .dst = r->api.addr,
        .dst_len = r->api.addr_len,
        .host = r->api.host,
        .path = r->api.path,
        .channel = o->channel,
        .channels = o->channels,
        .size = o->size,
        .batch = o->batch,
        .inflight = o->inflight,
        .rate = o->rate,
        .max_backlog_frames = (uint64_t)o->max_backlog * o->subscribers,
        .frames_per_event = (double)o->subscribers / o->channels,
        .is_nchan = o->peer == PEER_NCHAN,
    };
    static struct hist live, live_prev, delta;
    struct sub_counters c, c_prev;
    struct pub_counters p, p_prev;
    char err[256];
    int64_t next_tick, last_tick;
    bool is_draining = false;
    int64_t drain_end = 0;
    int64_t slice = o->max_backlog ? 2000 : 20000; /* us between looks at the workers */

    r->pub = pub_new(&pc, err, sizeof(err));
    if (!r->pub) {
        fprintf(stderr, "herald-bench: %s\n", err);
        return -1;
    }
    if (pub_connect(r->pub, PROBE_TIMEOUT_MS, err, sizeof(err)) < 0) {
        fprintf(stderr, "herald-bench: the hub is unreachable: %s\n", err);
        return -1;
    }
    r->pub_start_us = client_wall_us() + 20000; /* room for the window to reach every worker */
    r->win_start_us = r->pub_start_us + (int64_t)(o->warmup * 1e6);
    r->win_end_us = r->win_start_us + (int64_t)(o->duration * 1e6);
    workers_set_window(&r->w, r->win_start_us, r->win_end_us);
    client_sleep_us(r->pub_start_us - client_wall_us());
    if (o->warmup == 0) {
        /* the window starts with the publisher: sample before it moves */
        if (o->server_pid)
            sample_proc(o->server_pid, false, &r->srv_win_start);
        r->bench_cpu_start = bench_cpu(&r->w);
        r->has_window_start = true;
    }
    if (pub_start(r->pub, r->win_end_us, err, sizeof(err)) < 0) {
        fprintf(stderr, "herald-bench: %s\n", err);
        return -1;
    }
    workers_totals(&r->w, &c_prev, &live_prev);
    memset(&p_prev, 0, sizeof(p_prev));
    last_tick = r->pub_start_us;
    next_tick = last_tick + 1000000;
    for (;;) {
        int64_t now = client_wall_us(), until = next_tick;

        if (!r->has_window_start && r->win_start_us < until)
            until = r->win_start_us;
        if (!r->has_window_end && r->win_end_us < until)
            until = r->win_end_us;
        if (is_draining && drain_end < until)
            until = drain_end;
        workers_pump(&r->w, until - now > slice ? slice : until - now);
        if (o->max_backlog) {
            workers_totals(&r->w, &c, NULL);
            pub_set_delivered(r->pub, c.frames);
        }
        now = client_wall_us();
        if (interrupted && !r->is_interrupted) {
            r->is_interrupted = true;
            pub_stop(r->pub);
            if (!o->is_quiet)
                fprintf(stderr, "herald-bench: interrupted: stopping\n");
        }
        if (!r->has_window_start && now >= r->win_start_us) {
            if (o->server_pid)
                sample_proc(o->server_pid, false, &r->srv_win_start);
            r->bench_cpu_start = bench_cpu(&r->w);
            pub_snapshot(r->pub, &r->pub_at_start);
            r->has_window_start = true;
        }
        if (!r->has_window_end && (now >= r->win_end_us || r->is_interrupted)) {
            if (o->server_pid)
                sample_proc(o->server_pid, true, &r->srv_win_end);
            r->bench_cpu_end = bench_cpu(&r->w);
            pub_snapshot(r->pub, &r->pub_at_end);
            r->has_window_end = true;
            if (r->is_interrupted)
                r->win_end_us = now; /* rates over what was measured */
        }
        if (now >= next_tick) {
            double dt = (now - last_tick) / 1e6;

            workers_totals(&r->w, &c, &live);
            pub_snapshot(r->pub, &p);
            hist_diff(&delta, &live, &live_prev);
            /* named after the second it covers, [last_tick, now) */
            progress(r,
                     is_draining                   ? "drain"
                     : last_tick < r->win_start_us ? "warmup"
                     : last_tick < r->win_end_us   ? "measure"
                                                   : "answers",
                     (now - r->pub_start_us) / 1e6, &c, &c_prev, &delta, &p, &p_prev, dt);
            c_prev = c;
            p_prev = p;
            live_prev = live;
            last_tick = now;
            next_tick += 1000000;
        }
        /* the publisher ends by itself after the window, once its answers are in (or 5 s) */
        if (r->has_window_end && !is_draining && pub_is_done(r->pub)) {
            pub_join(r->pub);
            pub_snapshot(r->pub, &r->pub_final);
            r->expected = expected_frames(r);
            is_draining = true;
            drain_end = client_wall_us() + (int64_t)(o->drain * 1e6);
        }
        if (is_draining) {
            workers_totals(&r->w, &c, NULL);
            if (c.frames >= r->expected || now >= drain_end || interrupted) {
                r->drain_s = (now - (drain_end - (int64_t)(o->drain * 1e6))) / 1e6;
                if (r->drain_s < 0)
                    r->drain_s = 0;
                break;
            }
        }
    }
    return 0;
}

/* --- the report ----------------------------------------------------------------------------- */

static const char *close_name(unsigned slot)
{
    switch (slot) {
    case 0: return "normal";
    case 1: return "going away";
    case 3: return "binary refused";
    case 8: return "policy";
    case 9: return "too large";
    case 11: return "internal error";
    case 13: return "slow consumer";
    case SUB_CLOSE_OTHER: return "other code";
    case SUB_CLOSE_NO_FRAME: return "no close frame";
    default: return "";
    }
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

struct summary {
    double window_s;
    double delivered_per_s;
    double published_per_s;
    int64_t lost;
    double loss_pct;
    double srv_cpu_s, srv_cores, srv_us_per_frame;
    double bench_cores;
    bool has_server;
    char sub_error[SUB_ERROR_LEN];
    char pub_error[PUB_ERROR_LEN];
};

static void summarize(struct run *r, struct summary *s)
{
    memset(s, 0, sizeof(*s));
    s->window_s = (r->win_end_us - r->win_start_us) / 1e6;
    if (s->window_s <= 0)
        s->window_s = 1e-6;
    s->delivered_per_s = r->final.frames_measured / s->window_s;
    s->published_per_s =
        (double)(r->pub_at_end.events_acked - r->pub_at_start.events_acked) / s->window_s;
    s->lost = (int64_t)r->expected - (int64_t)r->final.frames;
    s->loss_pct = r->expected ? 100.0 * (double)s->lost / (double)r->expected : 0;
    s->bench_cores = (r->bench_cpu_end - r->bench_cpu_start) / s->window_s;
    s->has_server = r->srv_win_start.is_ok && r->srv_win_end.is_ok;
    if (s->has_server) {
        s->srv_cpu_s = r->srv_win_end.cpu_s - r->srv_win_start.cpu_s;
        s->srv_cores = s->srv_cpu_s / s->window_s;
        s->srv_us_per_frame =
            r->final.frames_measured ? s->srv_cpu_s * 1e6 / (double)r->final.frames_measured : 0;
    }
    workers_first_error(&r->w, s->sub_error, sizeof(s->sub_error));
    pub_first_error(r->pub, s->pub_error, sizeof(s->pub_error));
}

static void mem_line(FILE *f, const char *what, const struct proc_sample *a,
                     const struct proc_sample *b, const struct proc_sample *c, bool pss)
{
    const struct proc_sample *v[3] = {a, b, c};

    fprintf(f, "%s", what);
    for (int i = 0; i < 3; i++) {
        if (v[i]->has_mem)
            fprintf(f, "%s%.1f", i ? " -> " : "", (pss ? v[i]->pss_kb : v[i]->rss_kb) / 1024.0);
        else
            fprintf(f, "%s?", i ? " -> " : "");
    }
    fprintf(f, " MiB (before -> connected -> end of window)\n");
}

static void report_text(FILE *f, struct run *r, const struct summary *s)
{
    const struct options *o = r->o;
    const struct pub_counters *p = &r->pub_final;
    const struct sub_counters *c = &r->final;
    uint64_t closes = closes_total(c);

    fprintf(f, "herald-bench %s: %u subscribers on %u channel%s (%u process%s x %u thread%s)%s%s\n",
            HERALD_VERSION, o->subscribers, o->channels, o->channels > 1 ? "s" : "",
            r->w.procs ? r->w.procs : 1, r->w.procs > 1 ? "es" : "", o->threads,
            o->threads > 1 ? "s" : "", o->peer != PEER_HERALD ? ", --peer " : "",
            o->peer != PEER_HERALD ? peer_names[o->peer] : "");
    if (o->rate > 0)
        fprintf(f, "  load       --rate %g events/s", o->rate);
    else
        fprintf(f, "  load       --saturate");
    fprintf(f, ", inflight %u, batch %u, %u-byte events; %.1f s warmup, %.1f s measured%s\n",
            o->inflight, o->batch, o->size, o->warmup, s->window_s,
            r->is_interrupted ? " (interrupted)" : "");
    fprintf(f, "  connect    %u subscribed in %.2f s: %.0f connections/s\n", o->subscribers,
            r->connect_s, o->subscribers / r->connect_s);
    fprintf(f,
            "  published  %.0f events/s accepted in the window; %" PRIu64 " events in %" PRIu64
            " requests, %" PRIu64 " %s, %" PRIu64 " failed",
            s->published_per_s, p->events_sent, p->requests, p->requests_ok,
            o->peer == PEER_NCHAN ? "accepted (200-202)" : "answered 202", p->requests_failed);
    if (p->events_skipped)
        fprintf(f, ", %" PRIu64 " events skipped (publisher behind schedule)", p->events_skipped);
    if (p->unanswered)
        fprintf(f, ", %" PRIu64 " unanswered", p->unanswered);
    if (o->max_backlog)
        fprintf(f, "; held %.2f s by --max-backlog %u", p->held_us / 1e6, o->max_backlog);
    fprintf(f, "\n");
    if (p->requests_failed) {
        fprintf(f, "  errors     by status:");
        for (unsigned st = 0; st < PUB_STATUS_MAX; st++) {
            uint64_t n = pub_is_accepted(r->pub, st) ? 0 : pub_status_count(r->pub, st);

            if (n)
                fprintf(f, " %s%u: %" PRIu64, st ? "" : "no answer/", st, n);
        }
        fprintf(f, "; first: %s\n", s->pub_error);
    }
    fprintf(f, "  requests   round trip p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
            hist_percentile(&r->rtt, 50) / 1000.0, hist_percentile(&r->rtt, 99) / 1000.0,
            r->rtt.max / 1000.0);
    fprintf(f,
            "  delivered  %.0f frames/s in the window (%" PRIu64 " frames; %" PRIu64 " in all)\n",
            s->delivered_per_s, c->frames_measured, c->frames);
    fprintf(f,
            "  loss       %" PRId64 " of %" PRIu64 " expected frames (%.4f%%) after %.2f s of "
            "drain\n",
            s->lost, r->expected, s->loss_pct, r->drain_s);
    fprintf(f,
            "  latency    p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms (%" PRIu64
            " frames of events sent in the window)\n",
            hist_percentile(&r->latency, 50) / 1000.0, hist_percentile(&r->latency, 90) / 1000.0,
            hist_percentile(&r->latency, 99) / 1000.0, hist_percentile(&r->latency, 99.9) / 1000.0,
            r->latency.max / 1000.0, r->latency.total);
    fprintf(f, "  closes     ");
    if (!closes)
        fprintf(f, "none");
    for (unsigned i = 0; i < SUB_CLOSE_SLOTS; i++) {
        if (!c->closes[i])
            continue;
        if (i < SUB_CLOSE_CODES)
            fprintf(f, "%u %s: %" PRIu64 "  ", 1000 + i, close_name(i), c->closes[i]);
        else
            fprintf(f, "%s: %" PRIu64 "  ", close_name(i), c->closes[i]);
    }
    fprintf(f, "\n");
    if (c->bad_events)
        fprintf(f, "  warning    %" PRIu64 " event frames had no readable \"t\"/\"s\"\n",
                c->bad_events);
    if (s->has_server) {
        fprintf(f,
                "  server     pid %d: %.2f CPU s in the window (%.2f cores), %.3f CPU us per "
                "delivered frame\n",
                (int)o->server_pid, s->srv_cpu_s, s->srv_cores, s->srv_us_per_frame);
        mem_line(f, "  server     RSS ", &r->srv_before, &r->srv_connected, &r->srv_win_end, false);
        mem_line(f, "  server     PSS ", &r->srv_before, &r->srv_connected, &r->srv_win_end, true);
    }
    fprintf(f, "  bench      %.2f cores in the window (this machine has %ld)\n", s->bench_cores,
            sysconf(_SC_NPROCESSORS_ONLN));
}

static void json_mem(FILE *f, const char *key, const struct proc_sample *m)
{
    if (m->has_mem)
        fprintf(f, ",\"rss_kb_%s\":%ld,\"pss_kb_%s\":%ld", key, m->rss_kb, key, m->pss_kb);
}

static void report_json(FILE *f, struct run *r, const struct summary *s)
{
    const struct options *o = r->o;
    const struct pub_counters *p = &r->pub_final;
    const struct sub_counters *c = &r->final;
    bool first = true;

    fprintf(f,
            "{\"version\":\"%s\",\"peer\":\"%s\",\"subscribers\":%u,\"channels\":%u,\"procs\":%u,"
            "\"threads\":%u,\"mode\":\"%s\",\"rate\":%g,\"inflight\":%u,\"batch\":%u,"
            "\"size\":%u,\"warmup_s\":%g,\"window_s\":%.3f,\"interrupted\":%s",
            HERALD_VERSION, peer_names[o->peer], o->subscribers, o->channels,
            r->w.procs ? r->w.procs : 1, o->threads, o->rate > 0 ? "rate" : "saturate", o->rate,
            o->inflight, o->batch, o->size, o->warmup, s->window_s,
            r->is_interrupted ? "true" : "false");
    fprintf(f, ",\"connect\":{\"seconds\":%.3f,\"per_sec\":%.1f}", r->connect_s,
            o->subscribers / r->connect_s);
    fprintf(f,
            ",\"published\":{\"events_per_sec\":%.1f,\"events_sent\":%" PRIu64
            ",\"events_acked\":%" PRIu64 ",\"events_failed\":%" PRIu64
            ",\"events_skipped\":%" PRIu64 ",\"requests\":%" PRIu64 ",\"requests_ok\":%" PRIu64
            ",\"requests_failed\":%" PRIu64 ",\"unanswered\":%" PRIu64
            ",\"max_backlog\":%u,\"held_s\":%.3f,\"status\":{",
            s->published_per_s, p->events_sent, p->events_acked, p->events_failed,
            p->events_skipped, p->requests, p->requests_ok, p->requests_failed, p->unanswered,
            o->max_backlog, p->held_us / 1e6);
    for (unsigned st = 0; st < PUB_STATUS_MAX; st++) {
        uint64_t n = pub_status_count(r->pub, st);

        if (n) {
            fprintf(f, "%s\"%u\":%" PRIu64, first ? "" : ",", st, n);
            first = false;
        }
    }
    fprintf(f, "},\"round_trip_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f},\"first_error\":",
            hist_percentile(&r->rtt, 50) / 1000.0, hist_percentile(&r->rtt, 99) / 1000.0,
            r->rtt.max / 1000.0);
    json_string(f, s->pub_error);
    fprintf(f,
            "},\"delivered\":{\"frames_per_sec\":%.1f,\"frames_in_window\":%" PRIu64
            ",\"frames\":%" PRIu64 ",\"expected\":%" PRIu64 ",\"lost\":%" PRId64
            ",\"loss_pct\":%.6f,\"drain_s\":%.3f,\"bad_events\":%" PRIu64 "}",
            s->delivered_per_s, c->frames_measured, c->frames, r->expected, s->lost, s->loss_pct,
            r->drain_s, c->bad_events);
    fprintf(f,
            ",\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p99_9\":%.3f,\"max\":%.3f,"
            "\"samples\":%" PRIu64 "}",
            hist_percentile(&r->latency, 50) / 1000.0, hist_percentile(&r->latency, 90) / 1000.0,
            hist_percentile(&r->latency, 99) / 1000.0, hist_percentile(&r->latency, 99.9) / 1000.0,
            r->latency.max / 1000.0, r->latency.total);
    fprintf(f, ",\"closes\":{");
    first = true;
    for (unsigned i = 0; i < SUB_CLOSE_SLOTS; i++) {
        if (!c->closes[i])
            continue;
        if (i < SUB_CLOSE_CODES)
            fprintf(f, "%s\"%u\":%" PRIu64, first ? "" : ",", 1000 + i, c->closes[i]);
        else
            fprintf(f, "%s\"%s\":%" PRIu64, first ? "" : ",",
                    i == SUB_CLOSE_OTHER ? "other" : "no_frame", c->closes[i]);
        first = false;
    }
    fprintf(f, "}");
    if (s->has_server) {
        fprintf(f,
                ",\"server\":{\"pid\":%d,\"cpu_s\":%.3f,\"cpu_cores\":%.3f,"
                "\"cpu_us_per_frame\":%.4f",
                (int)o->server_pid, s->srv_cpu_s, s->srv_cores, s->srv_us_per_frame);
        json_mem(f, "before", &r->srv_before);
        json_mem(f, "connected", &r->srv_connected);
        json_mem(f, "after", &r->srv_win_end);
        fprintf(f, "}");
    }
    fprintf(f, ",\"bench_cpu_cores\":%.3f}\n", s->bench_cores);
}

/* --- main ----------------------------------------------------------------------------------- */

static void raise_nofile(rlim_t *limit)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        *limit = 1024;
        return;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    *limit = rl.rlim_cur;
}

static unsigned ephemeral_ports(void)
{
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    unsigned lo = 32768, hi = 60999;

    if (f) {
        if (fscanf(f, "%u %u", &lo, &hi) != 2 || hi < lo) {
            lo = 32768;
            hi = 60999;
        }
        fclose(f);
    }
    return hi - lo + 1;
}

static void check_budget(const struct options *o, unsigned n_src)
{
    rlim_t nofile;
    uint64_t per_proc = (o->subscribers + o->procs - 1) / o->procs;
    uint64_t ports = ephemeral_ports();

    raise_nofile(&nofile);
    if (per_proc + FD_RESERVE > nofile)
        die_usage("%u subscribers in %u process%s need about %" PRIu64
                  " descriptors each; RLIMIT_NOFILE is %llu: use --procs %" PRIu64 " or more",
                  o->subscribers, o->procs, o->procs > 1 ? "es" : "", per_proc + FD_RESERVE,
                  (unsigned long long)nofile,
                  (o->subscribers + (uint64_t)nofile - FD_RESERVE - 1) /
                      ((uint64_t)nofile - FD_RESERVE));
    if (n_src == 0 && o->subscribers + PORT_RESERVE > ports)
        die_usage("%u connections to one address pass the %" PRIu64
                  " ephemeral ports of one source address: use --source-ips "
                  "127.0.0.1,127.0.0.2,... (%" PRIu64 " or more)",
                  o->subscribers, ports, (o->subscribers + PORT_RESERVE + ports - 1) / ports);
    if (n_src && o->subscribers + PORT_RESERVE > (uint64_t)n_src * ports)
        die_usage("%u connections need %" PRIu64 " or more --source-ips (%" PRIu64 " ports each)",
                  o->subscribers, (o->subscribers + PORT_RESERVE + ports - 1) / ports, ports);
}

int main(int argc, char **argv)
{
    struct options o;
    static struct run r;
    struct sub_config sc;
    struct pub_config pc;
    struct summary s;
    char err[512];
    int status = 1;

    client_set_name("herald-bench");
    parse_options(argc, argv, &o);
    r.o = &o;
    client_catch_signals(on_sigint);
    signal(SIGPIPE, SIG_IGN);

    if (parse_url(o.ws, "ws", "--ws", &r.ws, err, sizeof(err)) < 0 ||
        parse_url(o.api, "http", "--api", &r.api, err, sizeof(err)) < 0)
        die_usage("%s", err);
    if (o.source_ips) {
        if (parse_source_ips(o.source_ips, &r.src, &r.n_src, err, sizeof(err)) < 0)
            die_usage("%s", err);
        if (r.ws.addr.ss_family != AF_INET)
            die_usage("--source-ips: the --ws address must be IPv4");
    }
    check_budget(&o, r.n_src);
    pc = (struct pub_config){.channel = o.channel, .channels = o.channels};
    if (o.size < pub_min_size(&pc))
        die_usage("--size: events on these channel names take at least %zu bytes",
                  pub_min_size(&pc));
    if ((uint64_t)o.batch * (o.size + 1) + 1 > HUB_DEFAULT_MAX_BYTES)
        fprintf(stderr,
                "herald-bench: warning: requests of %u x %u bytes pass the hub's default "
                "--max-message-bytes (%d): expect 413 unless it was raised\n",
                o.batch, o.size, HUB_DEFAULT_MAX_BYTES);
    if (o.server_pid) {
        sample_proc(o.server_pid, true, &r.srv_before);
        if (!r.srv_before.is_ok)
            die_usage("--server-pid: cannot read /proc/%d/stat", (int)o.server_pid);
    }
    if (probe(&r.ws, "--ws", err, sizeof(err)) < 0 ||
        probe(&r.api, "--api", err, sizeof(err)) < 0) {
        fprintf(stderr, "herald-bench: %s\n", err);
        free(r.src);
        return 1;
    }

    sc = (struct sub_config){
        .dst = r.ws.addr,
        .dst_len = r.ws.addr_len,
        .host = r.ws.host,
        .path = r.ws.path,
        .channel = o.channel,
        .channels = o.channels,
        .first = 0,
        .stride = 1,
        .n = o.subscribers,
        .threads = o.threads,
        .connect_rate = o.connect_rate / o.procs,
        .src = r.src,
        .n_src = r.n_src,
        .is_nchan = o.peer == PEER_NCHAN,
    };
    if (workers_start(&r.w, &sc, o.procs, err, sizeof(err)) < 0) {
        fprintf(stderr, "herald-bench: %s\n", err);
        goto out;
    }
    if (connect_phase(&r) < 0)
        goto out;
    if (o.server_pid)
        sample_proc(o.server_pid, true, &r.srv_connected);
    if (publish_phase(&r) < 0)
        goto out;
    workers_stop(&r.w, &r.latency);
    workers_totals(&r.w, &r.final, NULL);
    pub_round_trips(r.pub, &r.rtt);
    summarize(&r, &s);
    if (o.is_json) {
        report_json(stdout, &r, &s);
        if (!o.is_quiet)
            report_text(stderr, &r, &s);
    } else {
        report_text(stdout, &r, &s);
    }
    fflush(stdout);
    status = r.is_interrupted ? 130 : 0;
    if (!r.is_interrupted && (probe(&r.ws, "--ws", err, sizeof(err)) < 0 ||
                              probe(&r.api, "--api", err, sizeof(err)) < 0)) {
        fprintf(stderr, "herald-bench: after the run, %s\n", err);
        status = 1;
    }
out:
    workers_stop(&r.w, NULL);
    workers_free(&r.w);
    pub_free(r.pub);
    free(r.src);
    return status;
}
