/* bench_workers.c -- the subscribers of bench_workers.h, here or in forked workers.
 *
 * A worker process runs its own sub_group (its own threads and descriptor budget) and, every
 * REPORT_EVERY_MS and once more when told to stop, writes a report up its pipe: its counters,
 * its first error and its histograms as (bucket, count) pairs, only the buckets that hold
 * something. Commands go down the other pipe: the measured window, and stop. The parent reads
 * the reports while it waits (workers_pump()), so the totals are at most one report old; the
 * final ones, after workers_stop(), are exact. A worker whose pipe closes before its final
 * report is gone: the connect phase counts that as a failure. A worker ignores SIGINT (the
 * parent decides when to stop); one that outlives STOP_TIMEOUT_MS after stop is killed.
 *
 * --verify hands each worker the publisher's sets of accepted events at the stop, which may be
 * megabytes: not through the command pipe (a parent writing it while the worker writes a
 * report would deadlock on two full pipes) but through a memfd that every worker inherited at
 * its fork. The parent writes the packed sets there, then sends the stop with their length. */
#include "bench_workers.h"

#include "bench_hist.h"
#include "bench_proc.h"
#include "bench_seqset.h"
#include "bench_sub.h"
#include "client_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define REPORT_EVERY_MS 100   /* a worker process reports this often */
#define STOP_TIMEOUT_MS 15000 /* how long workers get to stop and send their last report */

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
    unsigned channels;
    int verify_fd; /* --verify with worker processes: the memfd of the accepted sets; else -1 */
    bool is_stopped;
    struct sub_group *local;
    struct child *kids;
    const volatile sig_atomic_t *interrupted;
};

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

/* --- a worker process ------------------------------------------------------------------------- */

/* --verify in a worker: reads the packed sets (words of them) from the memfd and compares. */
static void child_verify(struct sub_group *g, const struct sub_config *cfg, int fd, size_t words)
{
    unsigned n = cfg->channels > 1 ? cfg->channels : 1;
    uint64_t *buf = malloc(words * sizeof(uint64_t));
    struct seqset *sets = calloc(n, sizeof(*sets));
    size_t got = 0;

    while (buf && got < words * sizeof(uint64_t)) {
        ssize_t k = pread(fd, (char *)buf + got, words * sizeof(uint64_t) - got, (off_t)got);

        if (k <= 0)
            break;
        got += (size_t)k;
    }
    if (buf && sets && got == words * sizeof(uint64_t) && seqset_unpack(buf, words, sets, n) == 0)
        sub_group_verify(g, sets);
    else
        fprintf(stderr, "herald-bench: worker: --verify: cannot read the accepted events\n");
    for (unsigned i = 0; sets && i < n; i++)
        seqset_clear(&sets[i]);
    free(sets);
    free(buf);
}

/* A worker process: runs its group, reports, obeys commands; never returns. */
static void child_main(const struct sub_config *cfg, int rd, int wr, int verify_fd)
{
    static struct hist live, meas;
    static struct hist_pair pairs[2 * HIST_BUCKETS];
    struct msg_snap snap;
    char err[256];
    struct sub_group *g;
    bool is_stopping = false;
    size_t verify_words = 0;
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

            if (read_full(rd, &cmd, sizeof(cmd)) < 0) {
                is_stopping = true;
            } else if (cmd.type == CMD_STOP) {
                is_stopping = true;
                verify_words = cmd.a > 0 ? (size_t)cmd.a : 0;
            } else if (cmd.type == CMD_WINDOW) {
                sub_group_set_window(g, cmd.a, cmd.b);
            }
        }
        if (is_stopping) {
            sub_group_stop(g);
            if (verify_words && verify_fd >= 0)
                child_verify(g, cfg, verify_fd, verify_words);
            verify_words = 0;
        }
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

/* --- the parent ------------------------------------------------------------------------------- */

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

static int start(struct workers *w, const struct sub_config *cfg, unsigned procs, char *err,
                 size_t errlen)
{
    if (procs <= 1) {
        w->local = sub_group_new(cfg, err, errlen);
        return w->local ? sub_group_start(w->local, err, errlen) : -1;
    }
    w->kids = calloc(procs, sizeof(*w->kids));
    if (!w->kids) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (cfg->is_verify && (w->verify_fd = memfd_create("herald-bench-verify", MFD_CLOEXEC)) < 0) {
        snprintf(err, errlen, "memfd_create: %s", strerror(errno));
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
            child_main(&c, down[0], up[1], w->verify_fd);
        }
        close(up[1]);
        close(down[0]);
        k->rd = up[0];
        k->wr = down[1];
        w->procs++;
    }
    return 0;
}

struct workers *workers_new(const struct sub_config *cfg, unsigned procs,
                            const volatile sig_atomic_t *interrupted, char *err, size_t errlen)
{
    struct workers *w = calloc(1, sizeof(*w));

    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->interrupted = interrupted;
    w->verify_fd = -1;
    w->channels = cfg->channels > 1 ? cfg->channels : 1;
    if (start(w, cfg, procs, err, errlen) < 0) {
        workers_free(w);
        return NULL;
    }
    return w;
}

unsigned workers_procs(const struct workers *w)
{
    return w->procs;
}

void workers_pump(struct workers *w, int64_t wait_us)
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
        if (left <= 0 || *w->interrupted)
            return;
    }
}

void workers_totals(struct workers *w, struct sub_counters *c, struct hist *live)
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

void workers_first_error(struct workers *w, char *out, size_t len)
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

bool workers_lost_one(struct workers *w)
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

void workers_set_window(struct workers *w, int64_t start_us, int64_t end_us)
{
    if (w->local)
        sub_group_set_window(w->local, start_us, end_us);
    workers_command(w, CMD_WINDOW, start_us, end_us);
}

/* Writes the packed sets to the memfd. Returns their length in words, 0 when they could not be
 * written (the workers then give no verdict: verified stays 0). */
static size_t share_acked(struct workers *w, const struct seqset *acked)
{
    size_t words = seqset_packed_words(acked, w->channels), bytes = words * sizeof(uint64_t);
    uint64_t *buf = malloc(bytes ? bytes : 1);
    size_t off = 0;

    if (!buf || ftruncate(w->verify_fd, (off_t)bytes) < 0) {
        free(buf);
        return 0;
    }
    seqset_pack(acked, w->channels, buf);
    while (off < bytes) {
        ssize_t k = pwrite(w->verify_fd, (char *)buf + off, bytes - off, (off_t)off);

        if (k <= 0)
            break;
        off += (size_t)k;
    }
    free(buf);
    return off == bytes ? words : 0;
}

void workers_stop(struct workers *w, struct hist *meas, const struct seqset *acked)
{
    int64_t deadline = client_wall_us() + (int64_t)STOP_TIMEOUT_MS * 1000;
    size_t words = 0;

    if (w->is_stopped)
        return;
    w->is_stopped = true;
    if (w->local) {
        sub_group_stop(w->local);
        if (meas)
            sub_group_measured(w->local, meas);
        if (acked)
            sub_group_verify(w->local, acked);
        return;
    }
    if (acked && w->verify_fd >= 0)
        words = share_acked(w, acked);
    workers_command(w, CMD_STOP, (int64_t)words, 0);
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

void workers_free(struct workers *w)
{
    if (!w)
        return;
    workers_stop(w, NULL, NULL);
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
    if (w->verify_fd >= 0)
        close(w->verify_fd);
    free(w->kids);
    free(w);
}

double workers_cpu(struct workers *w)
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
