/* bench_report.h -- herald-bench's summary of a run: the figures derived from what
 * bench_run.c measured, printed as text or as one JSON object (--json). */
#ifndef HERALD_BENCH_REPORT_H
#define HERALD_BENCH_REPORT_H

#include "bench_pub.h"
#include "bench_sub.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct run; /* bench_run.h */

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

/* Derives s from a finished run (after run_finish()). */
void report_summarize(const struct run *r, struct summary *s);
/* The summary as text lines, or as one JSON object on one line. */
void report_text(FILE *f, const struct run *r, const struct summary *s);
void report_json(FILE *f, const struct run *r, const struct summary *s);

#endif
