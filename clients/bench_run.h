/* bench_run.h -- herald-bench's run, phase by phase: probing the hub, connecting the
 * subscribers, publishing through the warmup, the measured window and the drain, then
 * collecting what the report needs. struct run holds all of it, so that bench_report.c reads
 * one record. One thread: the program's main. */
#ifndef HERALD_BENCH_RUN_H
#define HERALD_BENCH_RUN_H

#include "bench_hist.h"
#include "bench_opts.h"
#include "bench_proc.h"
#include "bench_pub.h"
#include "bench_sub.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

struct workers; /* bench_workers.h */

struct run {
    const struct options *o;
    const volatile sig_atomic_t *interrupted; /* SIGINT or SIGTERM seen (herald-bench.c) */
    struct target ws, api;
    struct sockaddr_in *src; /* --source-ips, n_src of them; owned */
    unsigned n_src;
    struct workers *w;     /* owned; NULL until run_connect() */
    struct publisher *pub; /* owned; NULL until run_publish() */

    double connect_s;
    int64_t pub_start_us, win_start_us, win_end_us; /* CLOCK_REALTIME */
    struct pub_counters pub_at_start, pub_at_end, pub_final;
    struct proc_sample srv_before, srv_connected, srv_win_start, srv_win_end; /* --server-pid */
    double bench_cpu_start, bench_cpu_end;
    bool has_window_start, has_window_end;

    struct sub_counters final;
    struct hist latency; /* events sent inside the window */
    struct hist rtt;
    uint64_t expected;
    double drain_s;
    bool is_interrupted;
};

/* Connects to t within 3 s and closes: is the hub there? Returns 0, or -1 with err set
 * ("the hub is unreachable: WHAT at ADDRESS: REASON"). */
int run_probe(const struct target *t, const char *what, char *err, size_t errlen);
/* Starts the subscribers and waits until each one is subscribed. Returns 0, or -1 after
 * saying on stderr why the connect phase failed (a subscriber failed, a worker died,
 * --connect-timeout, an interruption). */
int run_connect(struct run *r);
/* Publishes through the warmup and the measured window, printing a progress line a second,
 * sampling the hub and the bench at the window's edges, then drains. Returns 0, or -1 after
 * saying on stderr why the publisher could not start. */
int run_publish(struct run *r);
/* After run_publish(): stops the subscribers and collects the final counters, the latency of
 * the window and the request round trips. */
void run_finish(struct run *r);
/* Releases what the run holds (stopping the subscribers and the publisher first). */
void run_free(struct run *r);

#endif
