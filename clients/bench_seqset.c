/* bench_seqset.c -- the bitmap sets of bench_seqset.h. Growth doubles the words (so a set that
 * fills in order reallocates log2 times), and new words are zeroed. */
#include "bench_seqset.h"

#include <stdlib.h>
#include <string.h>

/* Makes room for bit s. Returns 0 or -1 (out of memory, or s past what a size_t can count). */
static int grow(struct seqset *set, uint64_t s)
{
    size_t need = (size_t)(s / 64) + 1, n = set->n_words ? set->n_words : 16;
    uint64_t *w;

    if (s / 64 >= SIZE_MAX / sizeof(uint64_t) / 2)
        return -1;
    if (need <= set->n_words)
        return 0;
    while (n < need)
        n *= 2;
    w = realloc(set->words, n * sizeof(*w));
    if (!w)
        return -1;
    memset(w + set->n_words, 0, (n - set->n_words) * sizeof(*w));
    set->words = w;
    set->n_words = n;
    return 0;
}

int seqset_add(struct seqset *set, uint64_t s)
{
    uint64_t bit = UINT64_C(1) << (s % 64);

    if (grow(set, s) < 0)
        return -1;
    if (set->words[s / 64] & bit)
        return 0;
    set->words[s / 64] |= bit;
    return 1;
}

int seqset_add_range(struct seqset *set, uint64_t first, uint64_t n)
{
    if (n == 0)
        return 0;
    if (grow(set, first + n - 1) < 0)
        return -1;
    for (uint64_t s = first; s < first + n; s++)
        set->words[s / 64] |= UINT64_C(1) << (s % 64);
    return 0;
}

uint64_t seqset_count_missing(const struct seqset *a, const struct seqset *b)
{
    uint64_t n = 0;

    for (size_t i = 0; i < a->n_words; i++)
        n += (uint64_t)__builtin_popcountll(a->words[i] & ~(i < b->n_words ? b->words[i] : 0));
    return n;
}

uint64_t seqset_count(const struct seqset *set)
{
    uint64_t n = 0;

    for (size_t i = 0; i < set->n_words; i++)
        n += (uint64_t)__builtin_popcountll(set->words[i]);
    return n;
}

void seqset_clear(struct seqset *set)
{
    free(set->words);
    set->words = NULL;
    set->n_words = 0;
}

size_t seqset_packed_words(const struct seqset *sets, unsigned n)
{
    size_t len = 0;

    for (unsigned i = 0; i < n; i++)
        len += 1 + sets[i].n_words;
    return len;
}

void seqset_pack(const struct seqset *sets, unsigned n, uint64_t *out)
{
    for (unsigned i = 0; i < n; i++) {
        *out++ = sets[i].n_words;
        if (sets[i].n_words)
            memcpy(out, sets[i].words, sets[i].n_words * sizeof(*out));
        out += sets[i].n_words;
    }
}

int seqset_unpack(const uint64_t *in, size_t len, struct seqset *sets, unsigned n)
{
    size_t off = 0;

    for (unsigned i = 0; i < n; i++) {
        uint64_t words;

        seqset_clear(&sets[i]);
        if (off >= len)
            return -1;
        words = in[off++];
        if (words > len - off)
            return -1;
        if (words) {
            sets[i].words = malloc((size_t)words * sizeof(uint64_t));
            if (!sets[i].words)
                return -1;
            memcpy(sets[i].words, in + off, (size_t)words * sizeof(uint64_t));
            sets[i].n_words = (size_t)words;
        }
        off += (size_t)words;
    }
    return 0;
}
