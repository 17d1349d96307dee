/* indie.c -- an independent load client for Herald's benchmarks (tests/bench/indie/run and
 * tests/bench/soak). It shares no code with herald-bench (clients/bench_*.c): the point is a
 * second opinion from a load generator that was not tuned together with the hub. Everything
 * is in this one file and links nothing but libc: plain epoll, the RFC 6455 client handshake
 * (its SHA-1 and base64 included) and frame parser, an HTTP/1.1 publisher, a latency
 * histogram, and JSON written and scanned by hand.
 *
 *   indie sub   hold --conns WebSockets on one channel, count and time every event
 *   indie pub   POST events at a paced --rate for --warmup + --duration seconds
 *   indie soak  hold --conns WebSockets over --channels channels with churn: every second
 *               --churn percent of them close and come back, resuming with "since"; check that
 *               each connection sees every seq of its channel exactly once over its lifetime
 *   indie selftest  check SHA-1 and the handshake's accept value against known answers
 *
 * Clock: every timestamp is CLOCK_REALTIME in microseconds, read by the publisher just before
 * it writes a request (into the event's data, "indie_t") and by a subscriber just after the
 * read that brought the frame; both run on this machine, so latency = receive - "indie_t" is
 * end to end: the publisher's write, the hub's HTTP server, broker and fan-out, the kernel,
 * and this reader's scheduling.
 *
 * The event data a publisher sends (Herald: as "data" of {"channel":C,"data":…}; nchan: the
 * body itself, POSTed to PATH?id=C): {"indie_t":T,"indie_n":N,"indie_w":W,"pad":"xx…"}
 * padded to --size bytes of the whole event, N counting events per channel from 1 and W 1 for
 * the events of the measured window (0 for the warmup). Subscribers time only W=1 events.
 *
 * Signals: a sub takes SIGUSR1 and SIGUSR2 as the window's start and end (for its own CPU and
 * the frames received in the window; the pub sends them to the --notify pids at its window's
 * edges); a soak takes SIGUSR1 as "stop churning" (every connection comes back and stays);
 * SIGTERM or SIGINT makes sub and soak write their result (--out, one JSON object) and exit.
 * --ready FILE gets "ok N SECONDS" once every connection is subscribed (soak: FILE.settled
 * once more after SIGUSR1, when every connection is back), or "fail: WHY" when the connect
 * phase fails. A soak, at SIGTERM, reads FILE.finals ("K SEQ" lines: each channel's last seq,
 * which the run script reads from GET /history) and counts how far each connection still open
 * is behind its channel's last seq. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_SRC 64
#define MAX_NOTIFY 64
#define MAX_PUB_CONNS 64
#define MAX_PENDING 200      /* connections between connect() and "subscribed", per process */
#define MAX_FRAME (1u << 24) /* a larger frame from the hub ends the connection */
#define CLOSE_WAIT_US 5000000
#define ANSWER_WAIT_US 5000000 /* pub: how long answers are awaited after the last request */
#define EPOCH_MAX 64

/* --- small things ----------------------------------------------------------------------------- */

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double cpu_self_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* utime + stime of pid from /proc, seconds; -1 when it cannot be read */
static double cpu_of_pid(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut, st;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the command may hold spaces and parentheses */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "indie: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64*: masks, keys and churn choices, nothing that needs to be unpredictable */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static void write_file(const char *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void write_file(const char *path, const char *fmt, ...)
{
    char tmp[4096];
    va_list ap;
    FILE *f;

    if (!path)
        return;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f)
        return;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    if (fclose(f) == 0)
        rename(tmp, path); /* the reader sees all of it or nothing */
}

/* --- SHA-1 (FIPS 180-4) and base64: only for Sec-WebSocket-Accept ------------------------------
 */

static uint32_t rol32(uint32_t x, int n)
{
    return x << n | x >> (32 - n);
}

static void sha1(const uint8_t *msg, size_t len, uint8_t out[20])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t blocks = (len + 8) / 64 + 1;
    uint64_t bits = (uint64_t)len * 8;

    for (size_t b = 0; b < blocks; b++) {
        uint8_t blk[64];
        uint32_t w[80], a, bb, c, d, e;

        for (size_t i = 0; i < 64; i++) {
            size_t pos = b * 64 + i;

            if (pos < len)
                blk[i] = msg[pos];
            else if (pos == len)
                blk[i] = 0x80;
            else if (pos >= blocks * 64 - 8)
                blk[i] = (uint8_t)(bits >> (8 * (blocks * 64 - 1 - pos)));
            else
                blk[i] = 0;
        }
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)blk[4 * i] << 24 | (uint32_t)blk[4 * i + 1] << 16 |
                   (uint32_t)blk[4 * i + 2] << 8 | blk[4 * i + 3];
        for (int i = 16; i < 80; i++)
            w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k, t;

            if (i < 20)
                f = (bb & c) | (~bb & d), k = 0x5A827999;
            else if (i < 40)
                f = bb ^ c ^ d, k = 0x6ED9EBA1;
            else if (i < 60)
                f = (bb & c) | (bb & d) | (c & d), k = 0x8F1BBCDC;
            else
                f = bb ^ c ^ d, k = 0xCA62C1D6;
            t = rol32(a, 5) + f + e + k + w[i];
            e = d, d = c, c = rol32(bb, 30), bb = a, a = t;
        }
        h[0] += a, h[1] += bb, h[2] += c, h[3] += d, h[4] += e;
    }
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (uint8_t)(h[i] >> (24 - 8 * j));
}

static void base64(const uint8_t *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i;

    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

        *out++ = tab[v >> 18];
        *out++ = tab[(v >> 12) & 63];
        *out++ = tab[(v >> 6) & 63];
        *out++ = tab[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);

        *out++ = tab[v >> 18];
        *out++ = tab[(v >> 12) & 63];
        *out++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        *out++ = '=';
    }
    *out = '\0';
}

/* the Sec-WebSocket-Accept a server must answer to key (RFC 6455, 4.2.2) */
static void ws_accept(const char *key, char out[29])
{
    char buf[128];
    uint8_t dig[20];
    int n = snprintf(buf, sizeof(buf), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);

    sha1((const uint8_t *)buf, (size_t)n, dig);
    base64(dig, 20, out);
}

/* --- latency histogram: 64 buckets per power of two (1.6% wide), exact below 64 us --------------
 */

#define LAT_SUB_BITS 6
#define LAT_SUB (1u << LAT_SUB_BITS)
#define LAT_BUCKETS (LAT_SUB + 34 * LAT_SUB) /* up to 2^40 us */

struct lat {
    uint64_t counts[LAT_BUCKETS];
    uint64_t n, max;
};

static unsigned lat_index(uint64_t v)
{
    unsigned e;

    if (v < LAT_SUB)
        return (unsigned)v;
    e = 63 - (unsigned)__builtin_clzll(v); /* >= LAT_SUB_BITS */
    if (e >= 40)
        return LAT_BUCKETS - 1;
    return LAT_SUB + (e - LAT_SUB_BITS) * LAT_SUB + (unsigned)((v >> (e - LAT_SUB_BITS)) - LAT_SUB);
}

/* the largest value bucket i holds */
static uint64_t lat_top(unsigned i)
{
    unsigned e, m;

    if (i < LAT_SUB)
        return i;
    e = (i - LAT_SUB) / LAT_SUB + LAT_SUB_BITS;
    m = (i - LAT_SUB) % LAT_SUB + LAT_SUB;
    return ((uint64_t)(m + 1) << (e - LAT_SUB_BITS)) - 1;
}

static void lat_add(struct lat *h, int64_t v)
{
    uint64_t u = v > 0 ? (uint64_t)v : 0;

    h->counts[lat_index(u)]++;
    h->n++;
    if (u > h->max)
        h->max = u;
}

static uint64_t lat_pct(const struct lat *h, double pct)
{
    uint64_t rank, seen = 0;

    if (!h->n)
        return 0;
    rank = (uint64_t)(pct / 100.0 * (double)h->n + 0.999999);
    if (rank < 1)
        rank = 1;
    for (unsigned i = 0; i < LAT_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank)
            return lat_top(i) < h->max ? lat_top(i) : h->max;
    }
    return h->max;
}

/* "hist":[[top_us,count],...] -- the run script merges the processes' histograms */
static void lat_json(FILE *f, const char *name, const struct lat *h)
{
    bool first = true;

    fprintf(f,
            "\"%s\":{\"n\":%" PRIu64 ",\"max_us\":%" PRIu64 ",\"p50_us\":%" PRIu64
            ",\"p99_us\":%" PRIu64 ",\"hist\":[",
            name, h->n, h->max, lat_pct(h, 50), lat_pct(h, 99));
    for (unsigned i = 0; i < LAT_BUCKETS; i++) {
        if (!h->counts[i])
            continue;
        fprintf(f, "%s[%" PRIu64 ",%" PRIu64 "]", first ? "" : ",", lat_top(i), h->counts[i]);
        first = false;
    }
    fprintf(f, "]}");
}

/* --- scanning the hub's JSON without a parser: keys are unique in the frames read here -------- */

/* the number after "key": in p[0..len); returns 0 or -1 */
static int scan_u64(const char *p, size_t len, const char *key, uint64_t *out)
{
    char pat[48];
    int n = snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *q = memmem(p, len, pat, (size_t)n), *end = p + len;
    uint64_t v = 0;

    if (!q)
        return -1;
    q += n;
    while (q < end && *q == ' ')
        q++;
    if (q >= end || !isdigit((unsigned char)*q))
        return -1;
    while (q < end && isdigit((unsigned char)*q))
        v = v * 10 + (uint64_t)(*q++ - '0');
    *out = v;
    return 0;
}

/* the string after "key":" (no escapes expected: epochs are alphanumeric) */
static int scan_str(const char *p, size_t len, const char *key, char *out, size_t cap)
{
    char pat[48];
    int n = snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    const char *q = memmem(p, len, pat, (size_t)n), *end = p + len, *s;

    if (!q)
        return -1;
    s = q + n;
    for (q = s; q < end && *q != '"'; q++)
        ;
    if (q >= end || (size_t)(q - s) >= cap)
        return -1;
    memcpy(out, s, (size_t)(q - s));
    out[q - s] = '\0';
    return 0;
}

static bool has(const char *p, size_t len, const char *needle)
{
    return memmem(p, len, needle, strlen(needle)) != NULL;
}

/* --- options ------------------------------------------------------------------------------------
 */

enum mode { M_SUB, M_PUB, M_SOAK };
enum proto { P_HERALD, P_NCHAN };

struct opts {
    enum mode mode;
    enum proto proto;
    char host[64];
    int port;
    const char *path;
    const char *channel;
    unsigned channels;
    unsigned conns;
    unsigned first; /* soak: global index of this process's first connection */
    struct sockaddr_in src[MAX_SRC];
    unsigned n_src;
    double rate, warmup, duration;
    unsigned size;
    unsigned pub_conns;
    pid_t server_pid;
    pid_t notify[MAX_NOTIFY];
    unsigned n_notify;
    const char *out, *ready;
    double churn_pct;
    double connect_timeout;
    struct sockaddr_in dst;
};

static void usage(void)
{
    fputs("usage: indie sub|pub|soak|selftest --connect HOST:PORT --path PATH [OPTIONS]\n"
          "  --proto herald|nchan   [herald]\n"
          "  --channel NAME         channel, or the prefix of NAME-0..NAME-(K-1) [indie]\n"
          "  --channels K           pub, soak: channels [1]\n"
          "  --conns N              sub, soak: WebSockets; pub: HTTP connections [1000; pub 4]\n"
          "  --first I              soak: global index of the first connection (channel = I %% K)\n"
          "  --src IP,IP            local addresses to connect from, round robin\n"
          "  --rate R               pub: events per second over all channels [100]\n"
          "  --warmup S, --duration S   pub: seconds before and of the measured window [1, 5]\n"
          "  --size BYTES           pub: bytes of each event as published [100]\n"
          "  --server-pid PID       pub: the hub's CPU over the window\n"
          "  --notify PID,PID       pub: SIGUSR1 / SIGUSR2 at the window's start / end\n"
          "  --churn PCT            soak: percent of connections that leave and come back each "
          "second [2]\n"
          "  --connect-timeout S    sub, soak: the connect phase fails after S seconds [60]\n"
          "  --out FILE, --ready FILE\n",
          stderr);
    exit(2);
}

static void parse_hostport(const char *s, struct opts *o)
{
    const char *colon = strrchr(s, ':');

    if (!colon || (size_t)(colon - s) >= sizeof(o->host))
        die("--connect: HOST:PORT, got '%s'", s);
    memcpy(o->host, s, (size_t)(colon - s));
    o->host[colon - s] = '\0';
    o->port = atoi(colon + 1);
    o->dst.sin_family = AF_INET;
    o->dst.sin_port = htons((uint16_t)o->port);
    if (o->port <= 0 || o->port > 65535 || inet_pton(AF_INET, o->host, &o->dst.sin_addr) != 1)
        die("--connect: an IPv4 address and a port, got '%s'", s);
}

static void parse_opts(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.proto = P_HERALD,
                       .path = NULL,
                       .channel = "indie",
                       .channels = 1,
                       .conns = 0,
                       .rate = 100,
                       .warmup = 1,
                       .duration = 5,
                       .size = 100,
                       .churn_pct = 2,
                       .connect_timeout = 60};
    if (argc < 2)
        usage();
    if (!strcmp(argv[1], "sub"))
        o->mode = M_SUB;
    else if (!strcmp(argv[1], "pub"))
        o->mode = M_PUB;
    else if (!strcmp(argv[1], "soak"))
        o->mode = M_SOAK;
    else
        usage();
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (!v)
            die("%s needs a value", k);
        i++;
        if (!strcmp(k, "--connect")) {
            parse_hostport(v, o);
        } else if (!strcmp(k, "--path")) {
            o->path = v;
        } else if (!strcmp(k, "--proto")) {
            if (!strcmp(v, "herald"))
                o->proto = P_HERALD;
            else if (!strcmp(v, "nchan"))
                o->proto = P_NCHAN;
            else
                die("--proto: herald or nchan");
        } else if (!strcmp(k, "--channel")) {
            o->channel = v;
        } else if (!strcmp(k, "--channels")) {
            o->channels = (unsigned)atoi(v);
        } else if (!strcmp(k, "--conns")) {
            o->conns = (unsigned)atoi(v);
        } else if (!strcmp(k, "--first")) {
            o->first = (unsigned)atoi(v);
        } else if (!strcmp(k, "--src")) {
            char buf[2048], *save = NULL;

            snprintf(buf, sizeof(buf), "%s", v);
            for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (o->n_src == MAX_SRC)
                    die("--src: at most %d addresses", MAX_SRC);
                o->src[o->n_src].sin_family = AF_INET;
                if (inet_pton(AF_INET, t, &o->src[o->n_src].sin_addr) != 1)
                    die("--src: '%s' is not an IPv4 address", t);
                o->n_src++;
            }
        } else if (!strcmp(k, "--rate")) {
            o->rate = atof(v);
        } else if (!strcmp(k, "--warmup")) {
            o->warmup = atof(v);
        } else if (!strcmp(k, "--duration")) {
            o->duration = atof(v);
        } else if (!strcmp(k, "--size")) {
            o->size = (unsigned)atoi(v);
        } else if (!strcmp(k, "--server-pid")) {
            o->server_pid = (pid_t)atoi(v);
        } else if (!strcmp(k, "--notify")) {
            char buf[2048], *save = NULL;

            snprintf(buf, sizeof(buf), "%s", v);
            for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (o->n_notify == MAX_NOTIFY)
                    die("--notify: at most %d pids", MAX_NOTIFY);
                o->notify[o->n_notify++] = (pid_t)atoi(t);
            }
        } else if (!strcmp(k, "--churn")) {
            o->churn_pct = atof(v);
        } else if (!strcmp(k, "--connect-timeout")) {
            o->connect_timeout = atof(v);
        } else if (!strcmp(k, "--out")) {
            o->out = v;
        } else if (!strcmp(k, "--ready")) {
            o->ready = v;
        } else {
            die("unknown option '%s'", k);
        }
    }
    if (!o->port || !o->path)
        die("--connect and --path are required");
    if (o->channels < 1 || o->rate <= 0 || o->duration <= 0 || o->warmup < 0)
        die("--channels, --rate, --duration or --warmup out of range");
    if (o->mode == M_PUB && o->conns == 0)
        o->conns = 4;
    if (o->conns == 0)
        o->conns = 1000;
    if (o->mode == M_PUB && o->conns > MAX_PUB_CONNS)
        die("--conns: a publisher holds at most %d connections", MAX_PUB_CONNS);
    if (o->mode == M_PUB && o->proto == P_NCHAN && o->channels != 1)
        die("--channels: nchan runs use one channel");
}

static void channel_name(const struct opts *o, unsigned k, char *out, size_t cap)
{
    if (o->channels <= 1)
        snprintf(out, cap, "%s", o->channel);
    else
        snprintf(out, cap, "%s-%u", o->channel, k);
}

static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* A non-blocking TCP connection to dst from src (port picked at connect, so that each source
 * address has the whole ephemeral range for each destination); -1 with errno set. */
static int tcp_connect(const struct sockaddr_in *dst, const struct sockaddr_in *src)
{
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (src) {
        struct sockaddr_in a = *src;

        a.sin_port = 0;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (const struct sockaddr *)&a, sizeof(a)) < 0)
            goto fail;
    }
    if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) < 0 && errno != EINPROGRESS)
        goto fail;
    return fd;
fail : {
    int e = errno;

    close(fd);
    errno = e;
    return -1;
}
}

/* --- signals ------------------------------------------------------------------------------------
 */

static volatile sig_atomic_t sig_term, sig_usr1, sig_usr2;

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        sig_usr1 = 1;
    else if (sig == SIGUSR2)
        sig_usr2 = 1;
    else
        sig_term = 1;
}

static void catch_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal};

    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* --- WebSocket connections (sub and soak) --------------------------------------------------------
 */

enum wstate { W_IDLE, W_CONNECTING, W_HANDSHAKE, W_OPEN, W_CLOSING, W_WAIT };

struct wconn {
    int fd;
    uint8_t state; /* enum wstate; W_WAIT: closed, to reconnect at retry_at (soak) */
    bool is_subscribed;
    bool is_counted_pending;
    bool is_want_out;
    bool has_base;  /* soak: a first "subscribed" set last */
    uint8_t msg_op; /* opcode of a fragmented message being gathered */
    unsigned chan;  /* channel index */
    uint32_t gid;   /* global index */
    uint8_t *in;    /* the handshake answer so far, then an unfinished frame (usually none) */
    size_t in_len, in_cap;
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    uint8_t *msg;
    size_t msg_len, msg_cap;
    char key[32];
    /* soak: the channel's numbering as this connection's lifetime saw it */
    char epoch[EPOCH_MAX];
    uint64_t last;      /* the last seq received (or declared) */
    uint64_t live_from; /* seq of this session's "subscribed": later ones are live */
    int64_t retry_at, closing_since;
};

struct wstats {
    uint64_t started, opened, subscribed_now, failed, connect_errors;
    uint64_t frames, frames_window, events_window, bad, errors_frames, gaps_frames;
    uint64_t closes[1 + 16]; /* [0]: without a close frame; [1 + k]: 1000 + k; other: [16] */
    uint64_t closes_other;
    /* soak */
    uint64_t churned, reconnects, resumes, recovered, not_recovered, epoch_changes;
    uint64_t events, duplicates, lost, declared, tail_short, open_at_end;
};

struct wgroup {
    const struct opts *o;
    int ep;
    uint8_t *rbuf; /* one read at a time: a connection's unfinished frame, then what recv brought */
    size_t rcap;
    struct wconn *c;
    unsigned n, next; /* [0, next) started once */
    unsigned pending;
    struct wstats st;
    struct lat lat;
    char first_error[256];
    bool is_in_window, is_churning;
    double cpu_w0, cpu_w1;
    uint64_t frames_w0, frames_w1;
    int64_t t_w0, t_w1;
};

static void set_error(struct wgroup *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct wgroup *g, const char *fmt, ...)
{
    va_list ap;

    if (g->first_error[0])
        return;
    va_start(ap, fmt);
    vsnprintf(g->first_error, sizeof(g->first_error), fmt, ap);
    va_end(ap);
}

static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
    size_t n = *cap ? *cap : 512;
    uint8_t *p;

    if (need <= *cap)
        return 0;
    while (n < need)
        n *= 2;
    p = realloc(*buf, n);
    if (!p)
        return -1;
    *buf = p;
    *cap = n;
    return 0;
}

static void want_out(struct wgroup *g, struct wconn *c, bool on)
{
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};

    if (c->is_want_out == on)
        return;
    c->is_want_out = on;
    epoll_ctl(g->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void unpend(struct wgroup *g, struct wconn *c)
{
    if (c->is_counted_pending) {
        c->is_counted_pending = false;
        g->pending--;
    }
}

/* Ends c's socket. code: the close code seen (0: none). In soak mode, the connection comes back
 * after a short pause; in sub mode it stays down. */
static void wc_drop(struct wgroup *g, struct wconn *c, unsigned code, bool is_churn)
{
    bool was_open = c->state == W_OPEN || c->state == W_CLOSING;

    if (c->fd >= 0)
        close(c->fd); /* leaves the epoll set with it */
    c->fd = -1;
    unpend(g, c);
    if (was_open && !is_churn) {
        if (code == 0)
            g->st.closes[0]++;
        else if (code >= 1000 && code < 1015)
            g->st.closes[1 + code - 1000]++;
        else
            g->st.closes_other++;
    }
    if (c->is_subscribed)
        g->st.subscribed_now--;
    c->is_subscribed = false;
    c->in_len = c->out_len = c->out_off = c->msg_len = 0;
    c->msg_op = 0;
    c->is_want_out = false;
    if (g->o->mode == M_SOAK) {
        c->state = W_WAIT;
        /* back within a second: long enough to miss a few events, which resume must return */
        c->retry_at = now_us() + (is_churn ? (int64_t)(rnd() % 1000000) : 1000000);
    } else {
        c->state = W_IDLE;
    }
}

/* c failed: before it was open, a failure of the connect phase (sub) or of a reconnect
 * (soak); once open, a protocol error, counted as a close without a close frame. */
static void wc_fail(struct wgroup *g, struct wconn *c, const char *why)
{
    if (c->state != W_OPEN && c->state != W_CLOSING)
        g->st.failed++;
    set_error(g, "connection %u: %s", c->gid, why);
    wc_drop(g, c, 0, false);
}

static int flush(struct wgroup *g, struct wconn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            want_out(g, c, true);
            return 0;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    want_out(g, c, false);
    return 0;
}

/* Queues a masked client frame (RFC 6455 5.3: a client masks every frame) and sends it. */
static int send_frame(struct wgroup *g, struct wconn *c, uint8_t op, const void *data, size_t len)
{
    uint8_t *p;
    uint32_t m = (uint32_t)rnd();
    size_t hl = len < 126 ? 6 : 8;

    if (len > 65535 || reserve(&c->out, &c->out_cap, c->out_len + hl + len) < 0)
        return -1;
    p = c->out + c->out_len;
    p[0] = (uint8_t)(0x80 | op);
    if (len < 126) {
        p[1] = (uint8_t)(0x80 | len);
    } else {
        p[1] = 0x80 | 126;
        p[2] = (uint8_t)(len >> 8);
        p[3] = (uint8_t)len;
    }
    memcpy(p + hl - 4, &m, 4);
    for (size_t i = 0; i < len; i++)
        p[hl + i] = ((const uint8_t *)data)[i] ^ p[hl - 4 + i % 4];
    c->out_len += hl + len;
    return flush(g, c);
}

static void wc_start(struct wgroup *g, struct wconn *c)
{
    const struct opts *o = g->o;
    const struct sockaddr_in *src = o->n_src ? &o->src[c->gid % o->n_src] : NULL;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    uint8_t raw[16];
    char chan[160], req[1024];
    int len;

    g->st.started++;
    c->fd = tcp_connect(&o->dst, src);
    if (c->fd < 0) {
        char why[160];

        snprintf(why, sizeof(why), "connect: %s", strerror(errno));
        g->st.connect_errors++;
        if (o->mode == M_SOAK && c->has_base) { /* a reconnect: try again later */
            set_error(g, "reconnect of %u: %s", c->gid, why);
            c->state = W_WAIT;
            c->retry_at = now_us() + 1000000;
            return;
        }
        c->state = W_IDLE;
        g->st.failed++;
        set_error(g, "connection %u: %s", c->gid, why);
        return;
    }
    c->state = W_CONNECTING;
    c->is_counted_pending = true;
    g->pending++;
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = rnd();

        memcpy(raw + i, &r, 8);
    }
    base64(raw, 16, c->key);
    channel_name(o, c->chan, chan, sizeof(chan));
    if (o->proto == P_NCHAN)
        len = snprintf(req, sizeof(req), "GET %s?id=%s HTTP/1.1\r\n", o->path, chan);
    else if (o->mode == M_SOAK) /* subscribes with a frame, after the welcome */
        len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\n", o->path);
    else
        len = snprintf(req, sizeof(req), "GET %s?channels=%s HTTP/1.1\r\n", o->path, chan);
    len += snprintf(req + len, sizeof(req) - (size_t)len,
                    "Host: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                    o->host, o->port, c->key);
    if (reserve(&c->out, &c->out_cap, (size_t)len) < 0) {
        wc_fail(g, c, "out of memory");
        return;
    }
    memcpy(c->out, req, (size_t)len);
    c->out_len = (size_t)len;
    c->out_off = 0;
    c->is_want_out = true;
    if (epoll_ctl(g->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        wc_fail(g, c, strerror(errno));
}

static void on_subscribed_soak(struct wgroup *g, struct wconn *c, const char *s, size_t len)
{
    char epoch[EPOCH_MAX] = "";
    uint64_t seq = 0;
    bool is_recovered = has(s, len, "\"recovered\":true");

    if (scan_str(s, len, "epoch", epoch, sizeof(epoch)) < 0 || scan_u64(s, len, "seq", &seq) < 0) {
        g->st.bad++;
        set_error(g, "connection %u: a subscribed frame without epoch or seq", c->gid);
        return;
    }
    c->live_from = seq;
    if (!c->has_base) { /* the first: every seq after this one must come */
        c->has_base = true;
        snprintf(c->epoch, sizeof(c->epoch), "%s", epoch);
        c->last = seq;
        return;
    }
    g->st.resumes++;
    if (strcmp(epoch, c->epoch) != 0) { /* a new numbering: what the old one had left is gone */
        g->st.epoch_changes++;
        snprintf(c->epoch, sizeof(c->epoch), "%s", epoch);
        c->last = seq;
        return;
    }
    if (is_recovered) {
        g->st.recovered++;
        return; /* the hub sends every seq after last, then live ones */
    }
    g->st.not_recovered++; /* declared: the hub says it cannot give back last+1..seq */
    if (seq > c->last) {
        g->st.declared += seq - c->last;
        c->last = seq;
    }
}

static void on_event(struct wgroup *g, struct wconn *c, const char *s, size_t len, int64_t now)
{
    uint64_t t, w = 0, seq;

    g->st.frames++;
    if (g->is_in_window)
        g->st.frames_window++;
    if (scan_u64(s, len, "indie_t", &t) < 0) {
        g->st.bad++;
        return;
    }
    scan_u64(s, len, "indie_w", &w);
    if (g->o->mode != M_SOAK) {
        if (w == 1) {
            lat_add(&g->lat, now - (int64_t)t);
            g->st.events_window++;
        }
        return;
    }
    if (scan_u64(s, len, "seq", &seq) < 0) {
        g->st.bad++;
        return;
    }
    g->st.events++;
    if (seq > c->live_from)
        lat_add(&g->lat, now - (int64_t)t); /* live events only: a replay is old on purpose */
    if (seq <= c->last) {
        g->st.duplicates++;
    } else {
        if (seq > c->last + 1)
            g->st.lost += seq - c->last - 1; /* a hole nobody declared */
        c->last = seq;
    }
}

static void on_text(struct wgroup *g, struct wconn *c, const char *s, size_t len, int64_t now)
{
    const struct opts *o = g->o;

    if (o->proto == P_NCHAN) {
        on_event(g, c, s, len, now);
        return;
    }
    if (has(s, len, "\"type\":\"event\"")) {
        on_event(g, c, s, len, now);
    } else if (has(s, len, "\"type\":\"subscribed\"")) {
        if (o->mode == M_SOAK)
            on_subscribed_soak(g, c, s, len);
        if (!c->is_subscribed) {
            c->is_subscribed = true;
            g->st.subscribed_now++;
        }
        unpend(g, c);
    } else if (has(s, len, "\"type\":\"welcome\"")) {
        if (o->mode == M_SOAK) {
            char chan[160], f[400];
            int n;

            channel_name(o, c->chan, chan, sizeof(chan));
            if (c->has_base)
                n = snprintf(f, sizeof(f),
                             "{\"type\":\"subscribe\",\"channel\":\"%s\",\"since\":{\"epoch\":"
                             "\"%s\",\"seq\":%" PRIu64 "}}",
                             chan, c->epoch, c->last);
            else
                n = snprintf(f, sizeof(f), "{\"type\":\"subscribe\",\"channel\":\"%s\"}", chan);
            if (send_frame(g, c, 0x1, f, (size_t)n) < 0)
                wc_fail(g, c, "send failed");
        }
    } else if (has(s, len, "\"type\":\"gap\"")) {
        uint64_t from = 0, to = 0;

        g->st.gaps_frames++;
        if (scan_u64(s, len, "from", &from) == 0 && scan_u64(s, len, "to", &to) == 0 &&
            to >= from) {
            g->st.declared += to - from + 1;
            if (to > c->last)
                c->last = to;
        }
    } else if (has(s, len, "\"type\":\"error\"")) {
        g->st.errors_frames++;
        set_error(g, "connection %u: the hub said %.*s", c->gid, (int)(len < 160 ? len : 160), s);
    }
}

/* Handles one whole frame; returns -1 when c was dropped. */
static int on_frame(struct wgroup *g, struct wconn *c, uint8_t op, bool fin, uint8_t *p, size_t len,
                    int64_t now)
{
    switch (op) {
    case 0x0: /* continuation */
    case 0x1:
    case 0x2:
        if (op != 0 && c->msg_op) {
            wc_fail(g, c, "a new message inside a fragmented one");
            return -1;
        }
        if (op == 0 && !c->msg_op) {
            wc_fail(g, c, "a continuation without a message");
            return -1;
        }
        if (op != 0 && fin) {
            if (op == 0x1)
                on_text(g, c, (const char *)p, len, now);
            return c->fd < 0 ? -1 : 0;
        }
        if (op != 0) {
            c->msg_op = op;
            c->msg_len = 0;
        }
        if (reserve(&c->msg, &c->msg_cap, c->msg_len + len) < 0) {
            wc_fail(g, c, "out of memory");
            return -1;
        }
        memcpy(c->msg + c->msg_len, p, len);
        c->msg_len += len;
        if (fin) {
            if (c->msg_op == 0x1)
                on_text(g, c, (const char *)c->msg, c->msg_len, now);
            c->msg_op = 0;
            c->msg_len = 0;
        }
        return c->fd < 0 ? -1 : 0;
    case 0x8: { /* close: answer with the same code, then end */
        unsigned code = len >= 2 ? (unsigned)p[0] << 8 | p[1] : 1005;
        bool is_churn = c->state == W_CLOSING;

        if (c->state == W_OPEN)
            send_frame(g, c, 0x8, p, len >= 2 ? 2 : 0);
        wc_drop(g, c, code, is_churn);
        return -1;
    }
    case 0x9: /* ping */
        if (send_frame(g, c, 0xA, p, len) < 0) {
            wc_fail(g, c, "send failed");
            return -1;
        }
        return 0;
    case 0xA: return 0;
    default: wc_fail(g, c, "unknown opcode"); return -1;
    }
}

/* Parses the frames in buf[0..len); returns the bytes used (an unfinished frame is left), or
 * -1 when c was dropped. */
static long parse_frames(struct wgroup *g, struct wconn *c, uint8_t *buf, size_t len, int64_t now)
{
    size_t off = 0;

    while (len - off >= 2) {
        uint8_t *p = buf + off, op = p[0] & 0x0F;
        bool fin = p[0] & 0x80, masked = p[1] & 0x80;
        uint64_t plen = p[1] & 0x7F;
        size_t hl = 2, avail = len - off;

        if (p[0] & 0x70) {
            wc_fail(g, c, "reserved bits set");
            return -1;
        }
        if (plen == 126) {
            if (avail < 4)
                break;
            plen = (uint64_t)p[2] << 8 | p[3];
            hl = 4;
        } else if (plen == 127) {
            if (avail < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | p[2 + i];
            hl = 10;
        }
        if (masked)
            hl += 4;
        if (plen > MAX_FRAME) {
            wc_fail(g, c, "frame too large");
            return -1;
        }
        if (avail < hl + plen)
            break;
        if (masked)
            for (uint64_t i = 0; i < plen; i++)
                p[hl + i] ^= p[hl - 4 + i % 4];
        if (on_frame(g, c, op, fin, p + hl, (size_t)plen, now) < 0)
            return -1;
        off += hl + (size_t)plen;
    }
    return (long)off;
}

/* Keeps buf[used..len) on c for the next read. */
static void keep_rest(struct wgroup *g, struct wconn *c, const uint8_t *buf, size_t used,
                      size_t len)
{
    c->in_len = 0;
    if (used == len)
        return;
    if (reserve(&c->in, &c->in_cap, len - used) < 0) {
        wc_fail(g, c, "out of memory");
        return;
    }
    memcpy(c->in, buf + used, len - used);
    c->in_len = len - used;
}

/* The handshake answer in c->in; on a 101, the frames that came with it are parsed. */
static void on_handshake(struct wgroup *g, struct wconn *c, int64_t now)
{
    char accept[29], *h = (char *)c->in, *end, *v = NULL;
    size_t hlen, rest;
    long used;

    end = memmem(h, c->in_len, "\r\n\r\n", 4);
    if (!end) {
        if (c->in_len > 16384)
            wc_fail(g, c, "handshake answer too long");
        return;
    }
    hlen = (size_t)(end - h) + 4;
    if (c->in_len < 12 || memcmp(h, "HTTP/1.1 101", 12) != 0) {
        char why[160], *eol = memchr(h, '\r', hlen);

        snprintf(why, sizeof(why), "handshake refused: %.*s", (int)(eol ? eol - h : 40), h);
        wc_fail(g, c, why);
        return;
    }
    ws_accept(c->key, accept);
    for (char *line = memchr(h, '\n', hlen); line && line < end;
         line = memchr(line + 1, '\n', (size_t)(end - line))) {
        if (!strncasecmp(line + 1, "Sec-WebSocket-Accept:", 21)) { /* any case (RFC 7230) */
            v = line + 22;
            break;
        }
    }
    while (v && *v == ' ')
        v++;
    if (!v || strncmp(v, accept, 28) != 0) {
        wc_fail(g, c, "wrong or missing Sec-WebSocket-Accept");
        return;
    }
    c->state = W_OPEN;
    g->st.opened++;
    if (g->o->mode == M_SOAK && c->has_base)
        g->st.reconnects++;
    if (g->o->proto == P_NCHAN) { /* subscribed by the 101 itself */
        c->is_subscribed = true;
        g->st.subscribed_now++;
        unpend(g, c);
    }
    rest = c->in_len - hlen;
    memcpy(g->rbuf, c->in + hlen, rest); /* rest < 16 KiB < rcap */
    c->in_len = 0;
    free(c->in); /* an unfinished frame, if one ever needs keeping, starts small */
    c->in = NULL;
    c->in_cap = 0;
    if (rest && (used = parse_frames(g, c, g->rbuf, rest, now)) >= 0)
        keep_rest(g, c, g->rbuf, (size_t)used, rest);
}

static void on_readable(struct wgroup *g, struct wconn *c)
{
    for (int rounds = 0; rounds < 4 && c->fd >= 0; rounds++) {
        size_t have = 0;
        ssize_t n;
        int64_t now;
        long used;

        if (c->state == W_HANDSHAKE) {
            if (reserve(&c->in, &c->in_cap, c->in_len + 4096) < 0) {
                wc_fail(g, c, "out of memory");
                return;
            }
            n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        } else {
            have = c->in_len;
            if (have + 65536 > g->rcap) { /* an unfinished frame larger than the buffer */
                uint8_t *b = realloc(g->rbuf, have + 65536);

                if (!b) {
                    wc_fail(g, c, "out of memory");
                    return;
                }
                g->rbuf = b;
                g->rcap = have + 65536;
            }
            n = recv(c->fd, g->rbuf + have, g->rcap - have, 0);
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (c->state == W_HANDSHAKE || c->state == W_CONNECTING)
                wc_fail(g, c, n == 0 ? "closed during the handshake" : strerror(errno));
            else
                wc_drop(g, c, 0, c->state == W_CLOSING);
            return;
        }
        now = now_us();
        if (c->state == W_HANDSHAKE) {
            c->in_len += (size_t)n;
            on_handshake(g, c, now);
            return;
        }
        if (have)
            memcpy(g->rbuf, c->in, have);
        used = parse_frames(g, c, g->rbuf, have + (size_t)n, now);
        if (used < 0)
            return;
        keep_rest(g, c, g->rbuf, (size_t)used, have + (size_t)n);
        if ((size_t)n < g->rcap - have)
            return; /* the socket had no more */
    }
}

static void on_wevent(struct wgroup *g, struct wconn *c, uint32_t ev)
{
    if (c->state == W_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);

        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            char why[128];

            snprintf(why, sizeof(why), "connect: %s", strerror(err));
            g->st.connect_errors++;
            wc_fail(g, c, why);
            return;
        }
        c->state = W_HANDSHAKE;
    }
    if ((ev & EPOLLOUT) && c->out_len && flush(g, c) < 0) {
        wc_fail(g, c, "send failed");
        return;
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
        on_readable(g, c);
}

/* soak: picks churn_pct % of the subscribed connections and closes them (a close frame 1000;
 * the hub's answer ends them, and they come back with "since" within a second) */
static void churn(struct wgroup *g)
{
    uint64_t want = (uint64_t)((double)g->n * g->o->churn_pct / 100.0 + 0.5);

    for (uint64_t k = 0, tries = 0; k < want && tries < 4 * (uint64_t)g->n; tries++) {
        struct wconn *c = &g->c[rnd() % g->n];
        static const uint8_t normal[2] = {0x03, 0xE8};

        if (c->state != W_OPEN || !c->is_subscribed)
            continue;
        g->st.churned++;
        k++;
        if (send_frame(g, c, 0x8, normal, 2) < 0) {
            wc_drop(g, c, 0, true);
            continue;
        }
        c->state = W_CLOSING;
        c->closing_since = now_us();
    }
}

static void write_sub_result(struct wgroup *g)
{
    const struct opts *o = g->o;
    FILE *f = o->out ? fopen(o->out, "w") : stdout;
    double cpu_end = cpu_self_s();

    if (!f)
        return;
    if (g->t_w0 && !g->t_w1) { /* the window never closed: up to now */
        g->cpu_w1 = cpu_end;
        g->frames_w1 = g->st.frames;
        g->t_w1 = now_us();
    }
    fprintf(f,
            "{\"mode\":\"%s\",\"conns\":%u,\"started\":%" PRIu64 ",\"opened\":%" PRIu64
            ",\"subscribed_now\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"connect_errors\":%" PRIu64
            ",\"frames\":%" PRIu64 ",\"frames_window\":%" PRIu64 ",\"events_window\":%" PRIu64
            ",\"bad\":%" PRIu64 ",\"error_frames\":%" PRIu64 ",\"gap_frames\":%" PRIu64
            ",\"cpu_s\":%.3f,\"cpu_window_s\":%.3f,\"window_s\":%.3f,\"closes\":{",
            o->mode == M_SOAK ? "soak" : "sub", g->n, g->st.started, g->st.opened,
            g->st.subscribed_now, g->st.failed, g->st.connect_errors, g->st.frames,
            g->frames_w1 - g->frames_w0, g->st.events_window, g->st.bad, g->st.errors_frames,
            g->st.gaps_frames, cpu_end, g->cpu_w1 - g->cpu_w0, (g->t_w1 - g->t_w0) / 1e6);
    {
        bool first = true;

        for (int i = 0; i < 17; i++) {
            if (!g->st.closes[i])
                continue;
            if (i == 0)
                fprintf(f, "%s\"no_frame\":%" PRIu64, first ? "" : ",", g->st.closes[i]);
            else
                fprintf(f, "%s\"%d\":%" PRIu64, first ? "" : ",", 999 + i, g->st.closes[i]);
            first = false;
        }
        if (g->st.closes_other)
            fprintf(f, "%s\"other\":%" PRIu64, first ? "" : ",", g->st.closes_other);
    }
    fprintf(f, "},");
    if (o->mode == M_SOAK)
        fprintf(f,
                "\"churned\":%" PRIu64 ",\"reconnects\":%" PRIu64 ",\"resumes\":%" PRIu64
                ",\"recovered\":%" PRIu64 ",\"not_recovered\":%" PRIu64
                ",\"epoch_changes\":%" PRIu64 ",\"events\":%" PRIu64 ",\"duplicates\":%" PRIu64
                ",\"lost\":%" PRIu64 ",\"declared\":%" PRIu64 ",\"tail_short\":%" PRIu64
                ",\"tail_checked\":%" PRIu64 ",",
                g->st.churned, g->st.reconnects, g->st.resumes, g->st.recovered,
                g->st.not_recovered, g->st.epoch_changes, g->st.events, g->st.duplicates,
                g->st.lost, g->st.declared, g->st.tail_short, g->st.open_at_end);
    lat_json(f, "latency", &g->lat);
    fprintf(f, ",\"first_error\":\"");
    for (const char *p = g->first_error; *p; p++)
        fputc(*p == '"' || *p == '\\' ? '\'' : *p < 0x20 ? ' ' : *p, f);
    fprintf(f, "\"}\n");
    if (f != stdout)
        fclose(f);
}

/* soak, at the end: each channel's last seq from FILE.finals ("K SEQ" lines, written by the run
 * script from GET /history), compared with what each connection reached */
static void check_tails(struct wgroup *g)
{
    char path[4096], line[128];
    uint64_t *finals;
    FILE *f;

    if (!g->o->ready)
        return;
    snprintf(path, sizeof(path), "%s.finals", g->o->ready);
    f = fopen(path, "r");
    if (!f)
        return;
    finals = calloc(g->o->channels, sizeof(*finals));
    while (finals && fgets(line, sizeof(line), f)) {
        unsigned k;
        uint64_t s;

        if (sscanf(line, "%u %" SCNu64, &k, &s) == 2 && k < g->o->channels)
            finals[k] = s;
    }
    fclose(f);
    for (unsigned i = 0; finals && i < g->n; i++) {
        struct wconn *c = &g->c[i];

        if (c->state != W_OPEN || !c->is_subscribed)
            continue;
        g->st.open_at_end++;
        if (finals[c->chan] > c->last)
            g->st.tail_short += finals[c->chan] - c->last;
    }
    free(finals);
}

static int run_ws(const struct opts *o)
{
    struct wgroup *g = calloc(1, sizeof(*g));
    struct epoll_event evs[512];
    int64_t t0 = now_us(), next_churn = 0, next_scan = 0;
    bool is_ready = false, is_settled = false, is_failed = false;

    if (!g)
        die("out of memory");
    g->o = o;
    g->n = o->conns;
    g->c = calloc(g->n, sizeof(*g->c));
    g->ep = epoll_create1(EPOLL_CLOEXEC);
    g->rcap = 256 * 1024;
    g->rbuf = malloc(g->rcap);
    if (!g->c || g->ep < 0 || !g->rbuf)
        die("out of memory or epoll_create1 failed");
    for (unsigned i = 0; i < g->n; i++) {
        g->c[i].fd = -1;
        g->c[i].gid = o->first + i;
        g->c[i].chan = (o->first + i) % o->channels;
    }
    g->is_churning = o->mode == M_SOAK && o->churn_pct > 0;
    while (!sig_term) {
        int64_t now = now_us();
        int k, timeout = 100;

        /* connect what the pending cap allows; in soak, reconnect what is due */
        while (g->next < g->n && g->pending < MAX_PENDING)
            wc_start(g, &g->c[g->next++]);
        if (o->mode == M_SOAK && now >= next_scan) {
            next_scan = now + 10000; /* a look every 10 ms is enough for sub-second pauses */
            for (unsigned i = 0; i < g->n && g->pending < MAX_PENDING; i++) {
                struct wconn *c = &g->c[i];

                if (c->state == W_WAIT && now >= c->retry_at)
                    wc_start(g, c);
                else if (c->state == W_CLOSING && now - c->closing_since > CLOSE_WAIT_US)
                    wc_drop(g, c, 0, true); /* the hub never answered our close */
            }
            if (is_ready && g->is_churning && now >= next_churn) {
                churn(g);
                next_churn = now + 1000000;
            }
        }
        if (g->next < g->n || g->pending)
            timeout = 5;
        if (o->mode == M_SOAK)
            timeout = timeout > 20 ? 20 : timeout;
        k = epoll_wait(g->ep, evs, 512, timeout);
        for (int i = 0; i < k; i++)
            on_wevent(g, evs[i].data.ptr, evs[i].events);
        if (sig_usr1) {
            sig_usr1 = 0;
            if (o->mode == M_SOAK) {
                g->is_churning = false;
            } else {
                g->is_in_window = true;
                g->cpu_w0 = cpu_self_s();
                g->frames_w0 = g->st.frames;
                g->t_w0 = now_us();
            }
        }
        if (sig_usr2) {
            sig_usr2 = 0;
            if (g->t_w0) {
                g->is_in_window = false;
                g->cpu_w1 = cpu_self_s();
                g->frames_w1 = g->st.frames;
                g->t_w1 = now_us();
            }
        }
        if (!is_ready && !is_failed) {
            if (g->st.failed) {
                write_file(o->ready, "fail: %s\n", g->first_error);
                is_failed = true;
            } else if (g->st.subscribed_now == g->n) {
                write_file(o->ready, "ok %u %.3f\n", g->n, (now_us() - t0) / 1e6);
                is_ready = true;
                next_churn = now_us() + 1000000;
            } else if (now_us() - t0 > (int64_t)(o->connect_timeout * 1e6)) {
                write_file(o->ready, "fail: --connect-timeout: %" PRIu64 " of %u subscribed\n",
                           g->st.subscribed_now, g->n);
                is_failed = true;
            }
        }
        if (is_ready && o->mode == M_SOAK && !g->is_churning && !is_settled &&
            g->st.subscribed_now == g->n && o->ready) {
            char path[4096];

            snprintf(path, sizeof(path), "%s.settled", o->ready);
            write_file(path, "ok %u\n", g->n);
            is_settled = true;
        }
    }
    if (o->mode == M_SOAK)
        check_tails(g);
    write_sub_result(g);
    for (unsigned i = 0; i < g->n; i++) { /* a close frame where the socket takes it */
        struct wconn *c = &g->c[i];
        static const uint8_t normal[2] = {0x03, 0xE8};

        if (c->fd >= 0 && c->state == W_OPEN) {
            c->out_len = c->out_off = 0;
            send_frame(g, c, 0x8, normal, 2);
        }
        if (c->fd >= 0)
            close(c->fd);
        free(c->in);
        free(c->out);
        free(c->msg);
    }
    free(g->c);
    free(g->rbuf);
    close(g->ep);
    free(g);
    return 0;
}

/* --- the publisher -------------------------------------------------------------------------------
 */

struct pconn {
    int fd;
    bool is_busy, is_connecting;
    char out[4096];
    size_t out_len, out_off;
    char in[8192];
    size_t in_len;
    int64_t sent_at;
    bool is_window;
    int64_t retry_at;
};

struct pub {
    const struct opts *o;
    struct pconn pc[MAX_PUB_CONNS];
    uint64_t status[600];
    uint64_t requests, accepted, accepted_window, refused, lost_conn, late, skipped;
    uint64_t *n_on; /* per channel: the next indie_n */
    unsigned next_chan;
    int64_t max_late_us;
    struct lat rtt;
    char first_error[256];
};

static void pc_open(struct pub *p, struct pconn *c)
{
    c->fd = tcp_connect(&p->o->dst, NULL);
    c->is_busy = false;
    c->in_len = 0;
    if (c->fd < 0) {
        snprintf(p->first_error, sizeof(p->first_error), "connect to the API: %s", strerror(errno));
        c->retry_at = now_us() + 100000;
        return;
    }
    c->is_connecting = true;
}

static void pc_lost(struct pub *p, struct pconn *c, const char *why)
{
    if (c->is_busy) {
        p->lost_conn++;
        p->status[0]++;
        if (!p->first_error[0])
            snprintf(p->first_error, sizeof(p->first_error), "request lost: %s", why);
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->is_busy = c->is_connecting = false;
    c->retry_at = now_us() + 100000;
}

/* Builds and writes one event: returns 0, or -1 when the connection failed. */
static int pc_send(struct pub *p, struct pconn *c, bool is_window)
{
    const struct opts *o = p->o;
    unsigned k = p->next_chan;
    char chan[160], body[2048], pad[2048];
    int64_t t = now_us();
    int bl, hl;
    size_t fixed, want = o->size;

    p->next_chan = (k + 1) % o->channels;
    channel_name(o, k, chan, sizeof(chan));
    /* the event without padding, to size the pad */
    if (o->proto == P_NCHAN)
        fixed = (size_t)snprintf(body, sizeof(body),
                                 "{\"indie_t\":%" PRId64 ",\"indie_n\":%" PRIu64
                                 ",\"indie_w\":%d,\"pad\":\"\"}",
                                 t, p->n_on[k] + 1, is_window);
    else
        fixed = (size_t)snprintf(body, sizeof(body),
                                 "{\"channel\":\"%s\",\"data\":{\"indie_t\":%" PRId64
                                 ",\"indie_n\":%" PRIu64 ",\"indie_w\":%d,\"pad\":\"\"}}",
                                 chan, t, p->n_on[k] + 1, is_window);
    if (want > 1500)
        want = 1500;
    memset(pad, 'x', want > fixed ? want - fixed : 0);
    pad[want > fixed ? want - fixed : 0] = '\0';
    p->n_on[k]++;
    if (o->proto == P_NCHAN)
        bl = snprintf(body, sizeof(body),
                      "{\"indie_t\":%" PRId64 ",\"indie_n\":%" PRIu64
                      ",\"indie_w\":%d,\"pad\":\"%s\"}",
                      t, p->n_on[k], is_window, pad);
    else
        bl = snprintf(body, sizeof(body),
                      "{\"channel\":\"%s\",\"data\":{\"indie_t\":%" PRId64 ",\"indie_n\":%" PRIu64
                      ",\"indie_w\":%d,\"pad\":\"%s\"}}",
                      chan, t, p->n_on[k], is_window, pad);
    if (o->proto == P_NCHAN)
        hl = snprintf(c->out, sizeof(c->out), "POST %s?id=%s HTTP/1.1\r\n", o->path, chan);
    else
        hl = snprintf(c->out, sizeof(c->out), "POST %s HTTP/1.1\r\n", o->path);
    hl += snprintf(c->out + hl, sizeof(c->out) - (size_t)hl,
                   "Host: %s:%d\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
                   o->host, o->port, bl);
    if ((size_t)hl + (size_t)bl >= sizeof(c->out))
        die("a request does not fit: lower --size");
    memcpy(c->out + hl, body, (size_t)bl);
    c->out_len = (size_t)hl + (size_t)bl;
    c->out_off = 0;
    c->is_busy = true;
    c->in_len = 0;
    c->sent_at = t;
    c->is_window = is_window;
    p->requests++;
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0; /* the rest goes on POLLOUT */
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            pc_lost(p, c, strerror(errno));
            return -1;
        }
        c->out_off += (size_t)n;
    }
    return 0;
}

/* Reads the answer; when it is whole, counts it. Content-Length or chunked bodies. */
static void pc_read(struct pub *p, struct pconn *c)
{
    ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len, 0);
    char *end, *cl;
    size_t hlen, body;
    int status;

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        pc_lost(p, c, n == 0 ? "the server closed the connection" : strerror(errno));
        return;
    }
    if (!c->is_busy) { /* bytes on an idle connection: not ours; drop it */
        pc_lost(p, c, "unexpected bytes");
        return;
    }
    c->in_len += (size_t)n;
    c->in[c->in_len] = '\0';
    end = strstr(c->in, "\r\n\r\n");
    if (!end) {
        if (c->in_len >= sizeof(c->in) - 1)
            pc_lost(p, c, "answer head too long");
        return;
    }
    hlen = (size_t)(end - c->in) + 4;
    if (sscanf(c->in, "HTTP/1.%*d %d", &status) != 1) {
        pc_lost(p, c, "not an HTTP answer");
        return;
    }
    cl = strcasestr(c->in, "\r\ncontent-length:");
    if (cl && cl < end) {
        body = (size_t)strtoul(cl + 17, NULL, 10);
        if (c->in_len < hlen + body)
            return;
    } else if (strcasestr(c->in, "\r\ntransfer-encoding: chunked") &&
               strcasestr(c->in, "\r\ntransfer-encoding: chunked") < end) {
        if (c->in_len < 5 || memcmp(c->in + c->in_len - 5, "0\r\n\r\n", 5) != 0)
            return;
    }
    /* whole */
    p->status[status > 0 && status < 600 ? status : 0]++;
    lat_add(&p->rtt, now_us() - c->sent_at);
    if (status >= 200 && status <= 202 && (status == 202 || p->o->proto == P_NCHAN)) {
        p->accepted++;
        if (c->is_window)
            p->accepted_window++;
    } else {
        p->refused++;
        if (!p->first_error[0])
            snprintf(p->first_error, sizeof(p->first_error), "answered %d", status);
    }
    cl = strcasestr(c->in, "\r\nconnection: close");
    c->is_busy = false;
    c->in_len = 0;
    if (cl && cl < end)
        pc_lost(p, c, "closed after answering");
}

static void notify(const struct opts *o, int sig)
{
    for (unsigned i = 0; i < o->n_notify; i++)
        kill(o->notify[i], sig);
}

static int run_pub(const struct opts *o)
{
    struct pub *p = calloc(1, sizeof(*p));
    struct pollfd fds[MAX_PUB_CONNS];
    int64_t t0, w0, w1, give_up = 0;
    double interval_us = 1e6 / o->rate, due;
    double srv0 = -1, srv1 = -1, cpu0 = 0, cpu1 = 0;
    bool is_in_window = false, is_done_sending = false, is_blocked = false;
    FILE *f;

    if (!p)
        die("out of memory");
    p->o = o;
    p->n_on = calloc(o->channels, sizeof(*p->n_on));
    if (!p->n_on)
        die("out of memory");
    for (unsigned i = 0; i < o->conns; i++) {
        p->pc[i].fd = -1;
        pc_open(p, &p->pc[i]);
    }
    t0 = now_us() + 50000;
    w0 = t0 + (int64_t)(o->warmup * 1e6);
    w1 = w0 + (int64_t)(o->duration * 1e6);
    due = (double)t0;
    while (!sig_term) {
        int64_t now = now_us(), wait;
        unsigned busy = 0;

        if (!is_in_window && !is_done_sending && now >= w0) {
            is_in_window = true;
            if (o->server_pid)
                srv0 = cpu_of_pid(o->server_pid);
            cpu0 = cpu_self_s();
            notify(o, SIGUSR1);
        }
        if (!is_done_sending && now >= w1) {
            is_done_sending = true;
            is_in_window = false;
            if (o->server_pid)
                srv1 = cpu_of_pid(o->server_pid);
            cpu1 = cpu_self_s();
            notify(o, SIGUSR2);
            give_up = now + ANSWER_WAIT_US;
        }
        for (unsigned i = 0; i < o->conns; i++) {
            struct pconn *c = &p->pc[i];

            if (c->fd < 0 && !is_done_sending && now >= c->retry_at)
                pc_open(p, c);
            busy += c->is_busy;
        }
        if (is_done_sending && (busy == 0 || now >= give_up))
            break;
        /* send what is due on idle connections */
        is_blocked = false;
        while (!is_done_sending && now >= t0 && due <= (double)now) {
            struct pconn *c = NULL;

            for (unsigned i = 0; i < o->conns && !c; i++)
                if (p->pc[i].fd >= 0 && !p->pc[i].is_connecting && !p->pc[i].is_busy)
                    c = &p->pc[i];
            if (!c) {
                is_blocked = true; /* every connection busy: the event waits for an answer */
                break;
            }
            if ((double)now - due > 10000)
                p->late++;
            if ((int64_t)((double)now - due) > p->max_late_us)
                p->max_late_us = (int64_t)((double)now - due);
            pc_send(p, c, is_in_window);
            due += interval_us;
        }
        wait = is_done_sending || is_blocked ? 10000 : (int64_t)(due - (double)now_us());
        if (wait < 0)
            wait = 0;
        if (wait > 10000)
            wait = 10000;
        for (unsigned i = 0; i < o->conns; i++) {
            struct pconn *c = &p->pc[i];

            fds[i].fd = c->fd;
            fds[i].revents = 0;
            fds[i].events =
                c->is_connecting || (c->is_busy && c->out_off < c->out_len) ? POLLOUT : POLLIN;
            if (c->is_busy)
                fds[i].events |= POLLIN;
        }
        {
            struct timespec ts = {.tv_sec = wait / 1000000, .tv_nsec = (wait % 1000000) * 1000};

            if (ppoll(fds, o->conns, &ts, NULL) < 0 && errno != EINTR)
                break;
        }
        for (unsigned i = 0; i < o->conns; i++) {
            struct pconn *c = &p->pc[i];

            if (!fds[i].revents || c->fd != fds[i].fd || c->fd < 0)
                continue;
            if (c->is_connecting) {
                int err = 0;
                socklen_t el = sizeof(err);

                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err) {
                    pc_lost(p, c, strerror(err));
                    continue;
                }
                c->is_connecting = false;
                continue;
            }
            if ((fds[i].revents & POLLOUT) && c->is_busy && c->out_off < c->out_len) {
                ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

                if (n > 0)
                    c->out_off += (size_t)n;
                else if (n < 0 && errno != EAGAIN && errno != EINTR)
                    pc_lost(p, c, strerror(errno));
            }
            if (c->fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                pc_read(p, c);
        }
    }
    if (!is_done_sending) { /* interrupted */
        if (o->server_pid)
            srv1 = cpu_of_pid(o->server_pid);
        cpu1 = cpu_self_s();
        notify(o, SIGUSR2);
    }
    f = o->out ? fopen(o->out, "w") : stdout;
    if (f) {
        bool first = true;
        unsigned busy = 0;

        for (unsigned i = 0; i < o->conns; i++)
            busy += p->pc[i].is_busy;
        fprintf(f,
                "{\"mode\":\"pub\",\"rate\":%g,\"warmup_s\":%g,\"window_s\":%g,\"channels\":%u,"
                "\"requests\":%" PRIu64 ",\"accepted\":%" PRIu64 ",\"accepted_window\":%" PRIu64
                ",\"refused\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"unanswered\":%u,\"late\":%" PRIu64
                ",\"max_late_ms\":%.3f,\"cpu_window_s\":%.3f,\"server_cpu_window_s\":%.3f,"
                "\"status\":{",
                o->rate, o->warmup, o->duration, o->channels, p->requests, p->accepted,
                p->accepted_window, p->refused, p->lost_conn, busy, p->late,
                p->max_late_us / 1000.0, cpu1 - cpu0, srv0 >= 0 && srv1 >= 0 ? srv1 - srv0 : -1.0);
        for (unsigned s = 0; s < 600; s++) {
            if (!p->status[s])
                continue;
            fprintf(f, "%s\"%u\":%" PRIu64, first ? "" : ",", s, p->status[s]);
            first = false;
        }
        fprintf(f, "},");
        lat_json(f, "round_trip", &p->rtt);
        fprintf(f, ",\"first_error\":\"");
        for (const char *s = p->first_error; *s; s++)
            fputc(*s == '"' || *s == '\\' || *s < 0x20 ? ' ' : *s, f);
        fprintf(f, "\"}\n");
        if (f != stdout)
            fclose(f);
    }
    for (unsigned i = 0; i < o->conns; i++)
        if (p->pc[i].fd >= 0)
            close(p->pc[i].fd);
    free(p->n_on);
    free(p);
    return 0;
}

/* --- selftest ------------------------------------------------------------------------------------
 */

static int selftest(void)
{
    static const char *const want_abc = "a9993e364706816aba3e25717850c26c9cd0d89d";
    uint8_t d[20];
    char hex[41], acc[29];
    struct lat h = {0};
    int bad = 0;

    sha1((const uint8_t *)"abc", 3, d);
    for (int i = 0; i < 20; i++)
        sprintf(hex + 2 * i, "%02x", d[i]);
    bad |= strcmp(hex, want_abc) != 0;
    /* 56 bytes: the padding spills into a second block */
    sha1((const uint8_t *)"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, d);
    for (int i = 0; i < 20; i++)
        sprintf(hex + 2 * i, "%02x", d[i]);
    bad |= strcmp(hex, "84983e441c3bd26ebaae4aa1f95129e5e54670f1") != 0;
    ws_accept("dGhlIHNhbXBsZSBub25jZQ==", acc); /* RFC 6455, 1.3 */
    bad |= strcmp(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != 0;
    for (uint64_t v = 0; v < 5000000; v = v * 3 / 2 + 1) {
        unsigned i = lat_index(v);

        bad |= lat_top(i) < v || (i > 0 && lat_top(i - 1) >= v);
    }
    lat_add(&h, 1000);
    lat_add(&h, 2000);
    bad |= lat_pct(&h, 50) < 1000 || lat_pct(&h, 50) > 1016 || lat_pct(&h, 100) != 2000;
    printf("indie selftest: %s\n", bad ? "FAILED" : "ok");
    return bad;
}

int main(int argc, char **argv)
{
    struct opts o;

    if (argc == 2 && !strcmp(argv[1], "selftest"))
        return selftest();
    parse_opts(argc, argv, &o);
    if (getrandom(&rng_state, sizeof(rng_state), 0) != sizeof(rng_state))
        rng_state = (uint64_t)now_us();
    rng_state |= 1;
    raise_nofile();
    catch_signals();
    return o.mode == M_PUB ? run_pub(&o) : run_ws(&o);
}
