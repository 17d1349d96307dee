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
 * over a pipe every 100 ms and once more when told to stop. The measured window is fixed
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
#include "bench_workers.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "client_util.h"
#include "herald_version.h"

#define PROBE_TIMEOUT_MS 3000

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

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* --- the run -------------------------------------------------------------------------------- */

struct run {
    const struct options *o;
    struct target ws, api;
    struct sockaddr_in *src;
    unsigned n_src;
    struct workers *w;
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

        workers_pump(r->w, 20000);
        workers_totals(r->w, &c, NULL);
        now = client_wall_us();
        if (c.subscribed >= o->subscribers)
            break;
        if (c.failed || workers_lost_one(r->w)) {
            workers_first_error(r->w, err, sizeof(err));
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
    workers_set_window(r->w, r->win_start_us, r->win_end_us);
    client_sleep_us(r->pub_start_us - client_wall_us());
    if (o->warmup == 0) {
        /* the window starts with the publisher: sample before it moves */
        if (o->server_pid)
            proc_read(o->server_pid, false, &r->srv_win_start);
        r->bench_cpu_start = workers_cpu(r->w);
        r->has_window_start = true;
    }
    if (pub_start(r->pub, r->win_end_us, err, sizeof(err)) < 0) {
        fprintf(stderr, "herald-bench: %s\n", err);
        return -1;
    }
    workers_totals(r->w, &c_prev, &live_prev);
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
        workers_pump(r->w, until - now > slice ? slice : until - now);
        if (o->max_backlog) {
            workers_totals(r->w, &c, NULL);
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
            r->bench_cpu_start = workers_cpu(r->w);
            pub_snapshot(r->pub, &r->pub_at_start);
            r->has_window_start = true;
        }
        if (!r->has_window_end && (now >= r->win_end_us || r->is_interrupted)) {
            if (o->server_pid)
                proc_read(o->server_pid, true, &r->srv_win_end);
            r->bench_cpu_end = workers_cpu(r->w);
            pub_snapshot(r->pub, &r->pub_at_end);
            r->has_window_end = true;
            if (r->is_interrupted)
                r->win_end_us = now; /* rates over what was measured */
        }
        if (now >= next_tick) {
            double dt = (now - last_tick) / 1e6;

            workers_totals(r->w, &c, &live);
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
            workers_totals(r->w, &c, NULL);
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
    workers_first_error(r->w, s->sub_error, sizeof(s->sub_error));
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
            workers_procs(r->w) ? workers_procs(r->w) : 1, workers_procs(r->w) > 1 ? "es" : "",
            o->threads, o->threads > 1 ? "s" : "", o->peer != PEER_HERALD ? ", --peer " : "",
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
            workers_procs(r->w) ? workers_procs(r->w) : 1, o->threads,
            o->rate > 0 ? "rate" : "saturate", o->rate, o->inflight, o->batch, o->size, o->warmup,
            s->window_s, r->is_interrupted ? "true" : "false");
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
    r.w = workers_new(&sc, o.procs, &interrupted, err, sizeof(err));
    if (!r.w) {
        fprintf(stderr, "herald-bench: %s\n", err);
        goto out;
    }
    if (connect_phase(&r) < 0)
        goto out;
    if (o.server_pid)
        proc_read(o.server_pid, true, &r.srv_connected);
    if (publish_phase(&r) < 0)
        goto out;
    workers_stop(r.w, &r.latency);
    workers_totals(r.w, &r.final, NULL);
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
    workers_free(r.w);
    pub_free(r.pub);
    free(r.src);
    return status;
}
