/* pacer.c -- a binary min-heap on due time (pacer.h). */
#include "pacer.h"

#include "common/xalloc.h"

#include <stdlib.h>
#include <string.h>

static void swap(struct pace_entry *a, struct pace_entry *b)
{
    struct pace_entry t = *a;

    *a = *b;
    *b = t;
}

void pacer_add(struct pacer *pc, int64_t due_us, uint64_t conn, const char *channel, size_t len)
{
    size_t i;

    if (pc->n == pc->cap) {
        pc->cap = pc->cap ? pc->cap * 2 : 64;
        pc->v = xrealloc(pc->v, pc->cap * sizeof(*pc->v));
    }
    i = pc->n++;
    pc->v[i].due_us = due_us;
    pc->v[i].conn = conn;
    pc->v[i].channel_len = (uint8_t)len;
    memcpy(pc->v[i].channel, channel, len);
    pc->v[i].channel[len] = '\0';
    while (i && pc->v[(i - 1) / 2].due_us > pc->v[i].due_us) {
        swap(&pc->v[(i - 1) / 2], &pc->v[i]);
        i = (i - 1) / 2;
    }
}

int64_t pacer_next(const struct pacer *pc)
{
    return pc->n ? pc->v[0].due_us : 0;
}

bool pacer_pop(struct pacer *pc, int64_t now_us, struct pace_entry *out)
{
    size_t i = 0;

    if (!pc->n || pc->v[0].due_us > now_us)
        return false;
    *out = pc->v[0];
    pc->v[0] = pc->v[--pc->n];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, min = i;

        if (l < pc->n && pc->v[l].due_us < pc->v[min].due_us)
            min = l;
        if (r < pc->n && pc->v[r].due_us < pc->v[min].due_us)
            min = r;
        if (min == i)
            return true;
        swap(&pc->v[i], &pc->v[min]);
        i = min;
    }
}

void pacer_clear(struct pacer *pc)
{
    free(pc->v);
    memset(pc, 0, sizeof(*pc));
}
