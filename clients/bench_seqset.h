/* bench_seqset.h -- a growable set of herald-bench sequence numbers ("s", counted from 0 on each
 * channel), one bit each: what a subscriber received, what the publisher saw answered 202. For
 * --verify, which asks, after a run, whether every event the hub accepted reached every
 * subscriber still connected. A set costs one bit per number up to the largest it holds. Pure:
 * no I/O, no clock; allocation failure is reported, never fatal. One thread per set. */
#ifndef HERALD_BENCH_SEQSET_H
#define HERALD_BENCH_SEQSET_H

#include <stddef.h>
#include <stdint.h>

struct seqset {
    uint64_t *words; /* bit s % 64 of words[s / 64]; owned */
    size_t n_words;
};

#define SEQSET_INIT                                                                                \
    {                                                                                              \
        NULL, 0                                                                                    \
    }

/* Adds s. Returns 1 when s is new, 0 when it was there already, -1 out of memory. */
int seqset_add(struct seqset *set, uint64_t s);
/* Adds first, first + 1, ... first + n - 1. Returns 0 or -1 (out of memory). */
int seqset_add_range(struct seqset *set, uint64_t first, uint64_t n);
/* Numbers in a that b lacks. */
uint64_t seqset_count_missing(const struct seqset *a, const struct seqset *b);
uint64_t seqset_count(const struct seqset *set);
void seqset_clear(struct seqset *set); /* frees the words; the set is empty and usable */

/* Packing n sets into one array of uint64_t (to hand them to another process): per set, its
 * word count, then its words. seqset_packed_words() is the length seqset_pack() writes. */
size_t seqset_packed_words(const struct seqset *sets, unsigned n);
void seqset_pack(const struct seqset *sets, unsigned n, uint64_t *out);
/* Reads n sets (each cleared first, then given words of its own) from in[0..len). Returns 0,
 * or -1 when in is too short or memory ran out (the sets read so far are kept). */
int seqset_unpack(const uint64_t *in, size_t len, struct seqset *sets, unsigned n);

#endif
