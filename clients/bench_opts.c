/* bench_opts.c -- herald-bench's command line (bench_opts.h): getopt_long over a table of
 * long options, each value checked as it is read (a number and its range), then the checks
 * that take more than one option or look at the machine: the hub's addresses (resolved once,
 * here), --source-ips, the descriptor and ephemeral-port budget of N subscribers in P
 * processes, and the smallest event --size allows. Every refusal is one line and status 2. */
#include "bench_opts.h"

#include "bench_pub.h"
#include "url.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "herald_version.h"

#define DEFAULT_WS "ws://127.0.0.1:8080/ws"
#define DEFAULT_API "http://127.0.0.1:8081/publish"
#define FD_RESERVE 64    /* descriptors a process needs besides its subscribers */
#define PORT_RESERVE 256 /* ephemeral ports left for everything else */
#define HUB_DEFAULT_MAX_BYTES 65536

const char *const opts_peer_names[] = {"herald", "nchan", "node"};

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
        "                        more than E events behind (finds the rate the hub sustains)\n"
        "                        [0: off: open loop, --saturate outruns fan-out; refusals are\n"
        "                        counted by status, 503 \"overloaded\" and Retry-After apart,\n"
        "                        and no Retry-After is waited for]\n"
        "Timing:\n"
        "  --warmup S            seconds of publishing before the measured window [0]\n"
        "  --duration S          seconds of the measured window [10]\n"
        "  --drain S             at the end, wait up to S seconds for frames still due [2]\n"
        "Check:\n"
        "  --verify              every subscriber records which events it received (a bit per\n"
        "                        event): after the drain, count the events answered 202 that a\n"
        "                        subscriber still connected never got (missing), those received\n"
        "                        twice (duplicates) and those received though never answered 202\n"
        "                        (unacked: a refused publish delivered anyway, or one whose "
        "answer\n"
        "                        never came)\n"
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

void opts_die_usage(const char *fmt, ...)
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
        opts_die_usage("--%s: '%s' is not a number from %g to %g", name, s, min, max);
    return v;
}

static unsigned parse_uint(const char *name, const char *s, unsigned min, unsigned max)
{
    double v = parse_num(name, s, min, max);

    if (v != floor(v))
        opts_die_usage("--%s: '%s' is not a whole number", name, s);
    return (unsigned)v;
}

void opts_parse(int argc, char **argv, struct options *o)
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
        O_VERIFY,
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
        {"verify", no_argument, NULL, O_VERIFY},
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
                opts_die_usage("--peer: '%s' is not herald, nchan or node", optarg);
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
        case O_VERIFY: o->is_verify = true; break;
        case O_HELP: usage(stdout); exit(0);
        case O_VERSION: printf("herald-bench %s\n", HERALD_VERSION); exit(0);
        default:
            if (optopt)
                opts_die_usage("option '%s' needs a value or is unknown", argv[optind - 1]);
            opts_die_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        opts_die_usage("unexpected argument '%s'", argv[optind]);
    if (o->is_saturate && has_rate)
        opts_die_usage("--rate and --saturate exclude each other");
    if (o->is_saturate)
        o->rate = 0;
    if (!*o->channel || strlen(o->channel) > 120 ||
        strspn(o->channel, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:") !=
            strlen(o->channel))
        opts_die_usage("--channel: 1 to 120 characters of A-Z a-z 0-9 _ - . :");
    if (o->peer == PEER_NCHAN && o->batch > 1)
        opts_die_usage("--batch: nchan takes one message per request");
    if (o->procs > o->subscribers)
        o->procs = o->subscribers > 0 ? o->subscribers : 1;
}

/* --- what the options become ------------------------------------------------------------------ */

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
        opts_die_usage("%u subscribers in %u process%s need about %" PRIu64
                       " descriptors each; RLIMIT_NOFILE is %llu: use --procs %" PRIu64 " or more",
                       o->subscribers, o->procs, o->procs > 1 ? "es" : "", per_proc + FD_RESERVE,
                       (unsigned long long)nofile,
                       (o->subscribers + (uint64_t)nofile - FD_RESERVE - 1) /
                           ((uint64_t)nofile - FD_RESERVE));
    if (n_src == 0 && o->subscribers + PORT_RESERVE > ports)
        opts_die_usage("%u connections to one address pass the %" PRIu64
                       " ephemeral ports of one source address: use --source-ips "
                       "127.0.0.1,127.0.0.2,... (%" PRIu64 " or more)",
                       o->subscribers, ports, (o->subscribers + PORT_RESERVE + ports - 1) / ports);
    if (n_src && o->subscribers + PORT_RESERVE > (uint64_t)n_src * ports)
        opts_die_usage("%u connections need %" PRIu64 " or more --source-ips (%" PRIu64
                       " ports each)",
                       o->subscribers, (o->subscribers + PORT_RESERVE + ports - 1) / ports, ports);
}

void opts_check(const struct options *o, struct target *ws, struct target *api,
                struct sockaddr_in **src, unsigned *n_src)
{
    struct pub_config pc = {.channel = o->channel, .channels = o->channels};
    char err[512];

    if (parse_url(o->ws, "ws", "--ws", ws, err, sizeof(err)) < 0 ||
        parse_url(o->api, "http", "--api", api, err, sizeof(err)) < 0)
        opts_die_usage("%s", err);
    *src = NULL;
    *n_src = 0;
    if (o->source_ips) {
        if (parse_source_ips(o->source_ips, src, n_src, err, sizeof(err)) < 0)
            opts_die_usage("%s", err);
        if (ws->addr.ss_family != AF_INET)
            opts_die_usage("--source-ips: the --ws address must be IPv4");
    }
    check_budget(o, *n_src);
    if (o->size < pub_min_size(&pc))
        opts_die_usage("--size: events on these channel names take at least %zu bytes",
                       pub_min_size(&pc));
    if ((uint64_t)o->batch * (o->size + 1) + 1 > HUB_DEFAULT_MAX_BYTES)
        fprintf(stderr,
                "herald-bench: warning: requests of %u x %u bytes pass the hub's default "
                "--max-message-bytes (%d): expect 413 unless it was raised\n",
                o->batch, o->size, HUB_DEFAULT_MAX_BYTES);
}
