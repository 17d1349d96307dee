/* bench_hist.c -- the log-linear histogram of bench_hist.h.
 * Bucket layout: [0, 256) one value each; then for every power of two 2^k (k = 8..39) 128
 * buckets of width 2^(k-7). The index is two shifts and an add, so recording costs a few
 * nanoseconds; memory is fixed at HIST_BUCKETS counters. */
#include "bench_hist.h"

#include <string.h>

unsigned hist_index(uint64_t v)
{
    unsigned k, shift;

    if (v < HIST_EXACT)
        return (unsigned)v;
    if (v >> HIST_MAX_BITS)
        return HIST_BUCKETS - 1;
    k = 63u - (unsigned)__builtin_clzll(v); /* 8..39 */
    shift = k - 7;
    return HIST_EXACT + (k - 8) * HIST_SUB + (unsigned)((v >> shift) - HIST_SUB);
}

uint64_t hist_bucket_top(unsigned idx)
{
    unsigned k, shift;
    uint64_t sub;

    if (idx < HIST_EXACT)
        return idx;
    if (idx >= HIST_BUCKETS)
        idx = HIST_BUCKETS - 1;
    k = (idx - HIST_EXACT) / HIST_SUB + 8;
    sub = (idx - HIST_EXACT) % HIST_SUB + HIST_SUB;
    shift = k - 7;
    return ((sub + 1) << shift) - 1;
}

void hist_reset(struct hist *h)
{
    memset(h, 0, sizeof(*h));
}

void hist_record(struct hist *h, uint64_t v)
{
    h->counts[hist_index(v)]++;
    h->total++;
    if (v > h->max)
        h->max = v;
}

void hist_add(struct hist *dst, const struct hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    if (src->max > dst->max)
        dst->max = src->max;
}

void hist_diff(struct hist *dst, const struct hist *now, const struct hist *before)
{
    dst->total = 0;
    dst->max = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        uint64_t a = now->counts[i], b = before->counts[i];

        dst->counts[i] = a > b ? a - b : 0;
        dst->total += dst->counts[i];
        if (dst->counts[i])
            dst->max = hist_bucket_top(i);
    }
    if (dst->max > now->max)
        dst->max = now->max;
}

uint64_t hist_percentile(const struct hist *h, double pct)
{
    uint64_t rank, seen = 0;

    if (h->total == 0)
        return 0;
    if (pct >= 100.0)
        return h->max;
    rank = (uint64_t)(pct / 100.0 * (double)h->total + 0.999999);
    if (rank < 1)
        rank = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t top = hist_bucket_top(i);

            return top < h->max ? top : h->max;
        }
    }
    return h->max;
}

void hist_live_record(struct hist_live *h, uint64_t v)
{
    _Atomic uint64_t *c = &h->counts[hist_index(v)];

    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (v > atomic_load_explicit(&h->max, memory_order_relaxed))
        atomic_store_explicit(&h->max, v, memory_order_relaxed);
}

void hist_live_add_to(const struct hist_live *h, struct hist *dst)
{
    uint64_t max = atomic_load_explicit(&h->max, memory_order_relaxed);

    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        uint64_t n = atomic_load_explicit(&h->counts[i], memory_order_relaxed);

        dst->counts[i] += n;
        dst->total += n;
    }
    if (max > dst->max)
        dst->max = max;
}
