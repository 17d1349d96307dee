/* bench_workers.h -- herald-bench's subscribers wherever they run: one sub_group in this
 * process, or (--procs P) P forked worker processes that each hold a share of them, past the
 * descriptor limit of one process, and report over pipes. The caller sees one set of counters,
 * histograms and first error either way. Parent process, one thread. */
#ifndef HERALD_BENCH_WORKERS_H
#define HERALD_BENCH_WORKERS_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hist;         /* bench_hist.h */
struct seqset;       /* bench_seqset.h */
struct sub_config;   /* bench_sub.h */
struct sub_counters; /* bench_sub.h */
struct workers;

/* Starts the subscribers of cfg (copied) in this process when procs <= 1, else in procs
 * worker processes, subscriber i in worker i % procs; they start connecting at once. Waits in
 * workers_pump() end early once *interrupted is set (it must outlive the workers). Returns
 * NULL with err set when a group, a pipe or a fork fails, after stopping what had started. */
struct workers *workers_new(const struct sub_config *cfg, unsigned procs,
                            const volatile sig_atomic_t *interrupted, char *err, size_t errlen);
/* Stops the subscribers (as workers_stop() does) and reaps the worker processes. NULL is a
 * no-op. */
void workers_free(struct workers *w);

/* The number of worker processes; 0 when the subscribers run in this process. */
unsigned workers_procs(const struct workers *w);

/* Takes the workers' reports for up to wait_us (in this process: just waits). */
void workers_pump(struct workers *w, int64_t wait_us);
/* The counters and (live may be NULL) the all-time latency histogram, summed, as of the last
 * reports. */
void workers_totals(struct workers *w, struct sub_counters *c, struct hist *live);
/* The first failure of a subscriber, or of a worker process that ended early; "" when none. */
void workers_first_error(struct workers *w, char *out, size_t len);
/* Whether a worker process ended before its final report. */
bool workers_lost_one(struct workers *w);
/* Hands the measured window (CLOCK_REALTIME microseconds) to every subscriber. */
void workers_set_window(struct workers *w, int64_t start_us, int64_t end_us);
/* Stops every subscriber, waiting up to 15 s for the workers' final reports (a worker past
 * that is killed); adds the measured histogram to meas (may be NULL) and leaves the final
 * counters for workers_totals(). With acked (--verify: the events answered 202, one set per
 * channel of cfg), every subscriber's received events are compared with them first
 * (sub_group_verify()), and the verdict is in the final counters. Idempotent. */
void workers_stop(struct workers *w, struct hist *meas, const struct seqset *acked);
/* CPU seconds of this process and its worker processes so far. */
double workers_cpu(struct workers *w);

#endif
