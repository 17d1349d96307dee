/* bench_hist.h -- herald-bench's log-linear latency histogram (HDR-style, fixed memory).
 * Values are unsigned integers (herald-bench records microseconds). 0..255 are exact; above,
 * each power of two is cut into 128 buckets, so a reported value is within 1/128 (0.8%) of
 * every value its bucket holds. Values from 2^40 on (12 days in microseconds) land in the last
 * bucket. No allocation, no clock, no I/O. */
#ifndef HERALD_BENCH_HIST_H
#define HERALD_BENCH_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define HIST_EXACT 256   /* values below this have a bucket each */
#define HIST_SUB 128     /* buckets per power of two above HIST_EXACT */
#define HIST_MAX_BITS 40 /* values are clamped below 2^HIST_MAX_BITS */
#define HIST_BUCKETS (HIST_EXACT + (HIST_MAX_BITS - 8) * HIST_SUB)

/* A histogram that one thread owns. */
struct hist {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total;
    uint64_t max; /* the largest value recorded, exactly */
};

/* A histogram written by one thread and read, while it runs, by another (the progress line):
 * the writer does relaxed load-and-store (no locked instruction), readers relaxed loads. */
struct hist_live {
    _Atomic uint64_t counts[HIST_BUCKETS];
    _Atomic uint64_t max;
};

unsigned hist_index(uint64_t v);
/* The largest value that lands in bucket idx (what a percentile reports). */
uint64_t hist_bucket_top(unsigned idx);

void hist_reset(struct hist *h);
void hist_record(struct hist *h, uint64_t v);
void hist_add(struct hist *dst, const struct hist *src);
/* dst = now - before, bucket by bucket (for the counts seen since before was taken); max stays
 * now's max. */
void hist_diff(struct hist *dst, const struct hist *now, const struct hist *before);
/* The value at percentile pct (0..100]: the top of the bucket holding that rank, never above
 * the exact max. 0 when h is empty. */
uint64_t hist_percentile(const struct hist *h, double pct);

/* Owner thread only. */
void hist_live_record(struct hist_live *h, uint64_t v);
/* Adds what h holds now into dst (any thread). */
void hist_live_add_to(const struct hist_live *h, struct hist *dst);

#endif
