/* bench_run.c -- herald-bench's phases (bench_run.h), in the order herald-bench.c calls them.
 *
 * The connect phase ends when every subscriber is subscribed, at the first failure, or at
 * --connect-timeout. The publish phase fixes the measured window before the publisher starts
 * and hands it to every subscriber: frames received inside it make the delivered rate, events
 * sent inside it the latency percentiles, so nothing depends on when a worker's report comes.
 * It samples the hub (/proc of --server-pid) and the bench's own CPU at the window's edges,
 * prints a progress line a second (each named after the second it covers), feeds the
 * --max-backlog bound with the frames received so far, and after the window waits for the
 * publisher's last answers, then up to --drain seconds for the frames still due. Expected
 * frames = sum over channels of (events the hub accepted on the channel) x (subscribers of the
 * channel). An interruption (SIGINT, SIGTERM) stops the publisher and ends the window there,
 * so that the rates cover what was measured. With --verify, the stop compares every
 * subscriber's received events with the publisher's accepted ones (bench_workers.h). */
#include "bench_run.h"

#include "bench_workers.h"
#include "client_util.h"
#include "http_client.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROBE_TIMEOUT_MS 3000

int run_probe(const struct target *t, const char *what, char *err, size_t errlen)
{
    struct pollfd pfd = {.events = POLLOUT};
    const char *step;
    int e = 0, rc;

    pfd.fd = http_connect_start((const struct sockaddr *)&t->addr, t->addr_len, NULL, &step);
    if (pfd.fd < 0) {
        if (!strcmp(step, "socket")) {
            snprintf(err, errlen, "socket: %s", strerror(errno));
            return -1;
        }
        e = errno;
    } else {
        do
            rc = poll(&pfd, 1, PROBE_TIMEOUT_MS);
        while (rc < 0 && errno == EINTR);
        e = rc == 0 ? ETIMEDOUT : http_connect_result(pfd.fd);
        close(pfd.fd);
    }
    if (e) {
        snprintf(err, errlen, "the hub is unreachable: %s at %s: %s", what, t->shown, strerror(e));
        return -1;
    }
    return 0;
}

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
            hist_percentile(delta, 99) / 1000.0, c->open_now, sub_counters_closes(c));
}

int run_connect(struct run *r)
{
    const struct options *o = r->o;
    struct sub_config sc = {
        .dst = r->ws.addr,
        .dst_len = r->ws.addr_len,
        .host = r->ws.host,
        .path = r->ws.path,
        .channel = o->channel,
        .channels = o->channels,
        .first = 0,
        .stride = 1,
        .n = o->subscribers,
        .threads = o->threads,
        .connect_rate = o->connect_rate / o->procs,
        .src = r->src,
        .n_src = r->n_src,
        .is_nchan = o->peer == PEER_NCHAN,
        .is_verify = o->is_verify,
    };
    int64_t t0, deadline, next_print;
    struct sub_counters c;
    char why[512], err[SUB_ERROR_LEN];

    r->w = workers_new(&sc, o->procs, r->interrupted, why, sizeof(why));
    if (!r->w) {
        fprintf(stderr, "herald-bench: %s\n", why);
        return -1;
    }
    t0 = client_wall_us();
    deadline = t0 + (int64_t)(o->connect_timeout * 1e6);
    next_print = t0 + 1000000;
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
        if (now >= deadline || *r->interrupted) {
            fprintf(stderr,
                    "herald-bench: connect phase failed: %s after %.1f s with %" PRIu64
                    " of %u subscribed (%" PRIu64 " open, %" PRIu64 " started)\n",
                    *r->interrupted ? "interrupted" : "--connect-timeout", (now - t0) / 1e6,
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

int run_publish(struct run *r)
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
        .is_verify = o->is_verify,
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
        if (*r->interrupted && !r->is_interrupted) {
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
            if (c.frames >= r->expected || now >= drain_end || *r->interrupted) {
                r->drain_s = (now - (drain_end - (int64_t)(o->drain * 1e6))) / 1e6;
                if (r->drain_s < 0)
                    r->drain_s = 0;
                break;
            }
        }
    }
    return 0;
}

/* --verify: the publisher's sets of accepted events, for the subscribers to compare with. */
static const struct seqset *o_verify_sets(struct run *r)
{
    return r->o->is_verify ? pub_acked_sets(r->pub) : NULL;
}

void run_finish(struct run *r)
{
    workers_stop(r->w, &r->latency, o_verify_sets(r));
    workers_totals(r->w, &r->final, NULL);
    pub_round_trips(r->pub, &r->rtt);
}

void run_free(struct run *r)
{
    workers_free(r->w);
    r->w = NULL;
    pub_free(r->pub);
    r->pub = NULL;
    free(r->src);
    r->src = NULL;
}
