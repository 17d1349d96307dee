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
 * 130 interrupted (after printing what was measured).
 *
 * This file is the order of the phases. The jobs are in modules of their own: bench_opts.c
 * (the command line and its checks), bench_run.c (the phases), bench_workers.c (the
 * subscribers here or in worker processes), bench_sub.c and bench_pub.c (the WebSocket
 * subscribers and the HTTP publisher), bench_proc.c (sampling /proc), bench_report.c (the
 * summary, text or JSON), and under them bench_hist.c, bench_ws.c, bench_util.c and the
 * herald_clients library. */

#include "bench_opts.h"
#include "bench_proc.h"
#include "bench_report.h"
#include "bench_run.h"

#include <signal.h>
#include <stdio.h>

#include "client_util.h"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

int main(int argc, char **argv)
{
    static struct run r; /* its histograms are too large for the stack */
    struct options o;
    struct summary s;
    char err[512];
    int status = 1;

    client_set_name("herald-bench");
    opts_parse(argc, argv, &o);
    r.o = &o;
    r.interrupted = &interrupted;
    client_catch_signals(on_sigint);
    signal(SIGPIPE, SIG_IGN);

    opts_check(&o, &r.ws, &r.api, &r.src, &r.n_src);
    if (o.server_pid) {
        proc_read(o.server_pid, true, &r.srv_before);
        if (!r.srv_before.is_ok)
            opts_die_usage("--server-pid: cannot read /proc/%d/stat", (int)o.server_pid);
    }
    if (run_probe(&r.ws, "--ws", err, sizeof(err)) < 0 ||
        run_probe(&r.api, "--api", err, sizeof(err)) < 0) {
        fprintf(stderr, "herald-bench: %s\n", err);
        goto out;
    }
    if (run_connect(&r) < 0)
        goto out;
    if (o.server_pid)
        proc_read(o.server_pid, true, &r.srv_connected);
    if (run_publish(&r) < 0)
        goto out;
    run_finish(&r);

    report_summarize(&r, &s);
    if (o.is_json) {
        report_json(stdout, &r, &s);
        if (!o.is_quiet)
            report_text(stderr, &r, &s);
    } else {
        report_text(stdout, &r, &s);
    }
    fflush(stdout);
    status = r.is_interrupted ? 130 : 0;
    if (!r.is_interrupted && (run_probe(&r.ws, "--ws", err, sizeof(err)) < 0 ||
                              run_probe(&r.api, "--api", err, sizeof(err)) < 0)) {
        fprintf(stderr, "herald-bench: after the run, %s\n", err);
        status = 1;
    }
out:
    run_free(&r);
    return status;
}
