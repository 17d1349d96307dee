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
#include "bench_opts.h"
#include "bench_proc.h"
#include "bench_pub.h"
#include "bench_sub.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client_util.h"
#include "herald_version.h"

#define PROBE_TIMEOUT_MS 3000
#define REPORT_EVERY_MS 100   /* a worker process reports this often */
#define STOP_TIMEOUT_MS 15000 /* how long workers get to stop and send their last report */

/* --- addresses ------------------------------------------------------------------------------ */

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

    proc_read(getpid(), false, &s);
    sum += s.cpu_s;
    for (unsigned i = 0; i < w->procs; i++) {
        proc_read(w->kids[i].pid, false, &s);
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
            proc_read(o->server_pid, false, &r->srv_win_start);
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
                proc_read(o->server_pid, false, &r->srv_win_start);
            r->bench_cpu_start = bench_cpu(&r->w);
            pub_snapshot(r->pub, &r->pub_at_start);
            r->has_window_start = true;
        }
        if (!r->has_window_end && (now >= r->win_end_us || r->is_interrupted)) {
            if (o->server_pid)
                proc_read(o->server_pid, true, &r->srv_win_end);
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
            o->peer != PEER_HERALD ? opts_peer_names[o->peer] : "");
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
            HERALD_VERSION, opts_peer_names[o->peer], o->subscribers, o->channels,
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

int main(int argc, char **argv)
{
    struct options o;
    static struct run r;
    struct sub_config sc;
    struct summary s;
    char err[512];
    int status = 1;

    client_set_name("herald-bench");
    opts_parse(argc, argv, &o);
    r.o = &o;
    client_catch_signals(on_sigint);
    signal(SIGPIPE, SIG_IGN);

    opts_check(&o, &r.ws, &r.api, &r.src, &r.n_src);
    if (o.server_pid) {
        proc_read(o.server_pid, true, &r.srv_before);
        if (!r.srv_before.is_ok)
            opts_die_usage("--server-pid: cannot read /proc/%d/stat", (int)o.server_pid);
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
        proc_read(o.server_pid, true, &r.srv_connected);
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
