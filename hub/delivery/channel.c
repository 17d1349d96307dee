/* channel.c -- the channel -> subscribers index of one delivery plane.
 * A keyed uthash table of channels (common/keyhash.h: names chosen by clients cannot be made
 * to collide), each holding a dense array of its members, so a publish walks exactly that
 * channel's subscribers. A member's channel_set records where it sits in each channel's array
 * and each array entry records where the channel sits in the set, so removing a member from a
 * channel is O(1) (swap with the last); finding a channel in a member's set is a scan of that
 * set, which --max-subscriptions bounds. Channels with no member are freed. Each channel the
 * index creates or frees is added to or removed from the instance-wide registry. */
#include "channel.h"

#include "common/keyhash.h"
#include "common/registry.h"
#include "common/xalloc.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

struct channel {
    char name[CHANNEL_NAME_MAX + 1];
    char epoch[32];
    UT_hash_handle hh;
    struct channel_member *m;
    uint32_t n, cap;
};

struct channel_slot {
    struct channel *ch;
    uint32_t member_slot; /* position of the member in ch->m */
};

struct channel_index {
    struct channel *table;
    size_t count;
    unsigned plane;      /* bit of this index in the registry's plane masks */
    size_t max_channels; /* instance-wide cap on distinct channels (0: none) */
    channel_free_extra_fn *free_extra;
};

struct channel_index *channel_index_new(unsigned plane, size_t max_channels,
                                        channel_free_extra_fn *free_extra)
{
    struct channel_index *idx = xcalloc(1, sizeof(*idx));

    idx->plane = plane;
    idx->max_channels = max_channels;
    idx->free_extra = free_extra;
    return idx;
}

void channel_index_free(struct channel_index *idx)
{
    struct channel *ch, *tmp;

    if (!idx)
        return;
    HASH_ITER(hh, idx->table, ch, tmp)
    {
        HASH_DEL(idx->table, ch);
        registry_remove(ch->name, strlen(ch->name), idx->plane);
        free(ch->m);
        free(ch);
    }
    free(idx);
}

static struct channel *find(struct channel_index *idx, const char *name, size_t len)
{
    struct channel *ch;

    HASH_FIND(hh, idx->table, name, len, ch);
    return ch;
}

static int set_find(const struct channel_set *set, const struct channel *ch)
{
    for (uint32_t i = 0; i < set->n; i++)
        if (set->v[i].ch == ch)
            return (int)i;
    return -1;
}

enum channel_join_result channel_join(struct channel_index *idx, struct channel_set *set,
                                      void *member, const char *name, size_t len, uint32_t limit)
{
    struct channel *ch = find(idx, name, len);

    if (ch && set_find(set, ch) >= 0)
        return CHANNEL_ALREADY;
    if (set->n >= limit)
        return CHANNEL_LIMIT;
    if (!ch) {
        if (registry_add(name, len, idx->plane, idx->max_channels) < 0)
            return CHANNEL_FULL;
        ch = xcalloc(1, sizeof(*ch));
        memcpy(ch->name, name, len);
        HASH_ADD(hh, idx->table, name[0], len, ch);
        idx->count++;
    }
    if (ch->n == ch->cap) {
        ch->cap = ch->cap ? ch->cap * 2 : 4;
        ch->m = xrealloc(ch->m, ch->cap * sizeof(*ch->m));
    }
    if (set->n == set->cap) {
        set->cap = set->cap ? set->cap * 2 : 4;
        set->v = xrealloc(set->v, set->cap * sizeof(*set->v));
    }
    ch->m[ch->n] = (struct channel_member){.member = member, .set = set, .set_slot = set->n};
    set->v[set->n] = (struct channel_slot){.ch = ch, .member_slot = ch->n};
    ch->n++;
    set->n++;
    return CHANNEL_JOINED;
}

/* Removes set->v[i] and its entry in the channel; frees the channel when it empties. */
static void leave_slot(struct channel_index *idx, struct channel_set *set, uint32_t i)
{
    struct channel *ch = set->v[i].ch;
    uint32_t ms = set->v[i].member_slot;

    if (ch->m[ms].extra && idx->free_extra)
        idx->free_extra(ch->m[ms].extra);
    /* swap the channel's last member into ms */
    ch->n--;
    if (ms != ch->n) {
        ch->m[ms] = ch->m[ch->n];
        ch->m[ms].set->v[ch->m[ms].set_slot].member_slot = ms;
    }
    /* swap the set's last slot into i */
    set->n--;
    if (i != set->n) {
        set->v[i] = set->v[set->n];
        set->v[i].ch->m[set->v[i].member_slot].set_slot = i;
    }
    if (ch->n == 0) {
        HASH_DEL(idx->table, ch);
        idx->count--;
        registry_remove(ch->name, strlen(ch->name), idx->plane);
        free(ch->m);
        free(ch);
    }
}

int channel_leave(struct channel_index *idx, struct channel_set *set, const char *name, size_t len)
{
    struct channel *ch = find(idx, name, len);
    int i = ch ? set_find(set, ch) : -1;

    if (i < 0)
        return -1;
    leave_slot(idx, set, (uint32_t)i);
    return 0;
}

void channel_leave_all(struct channel_index *idx, struct channel_set *set)
{
    while (set->n)
        leave_slot(idx, set, set->n - 1);
    free(set->v);
    set->v = NULL;
    set->cap = 0;
}

struct channel_member *channel_set_find(struct channel_index *idx, const struct channel_set *set,
                                        const char *name, size_t len)
{
    struct channel *ch = find(idx, name, len);
    int i = ch ? set_find(set, ch) : -1;

    return i < 0 ? NULL : &ch->m[set->v[i].member_slot];
}

char *channel_epoch(struct channel_index *idx, const char *name, size_t len)
{
    struct channel *ch = find(idx, name, len);

    return ch ? ch->epoch : NULL;
}

struct channel_member *channel_members(struct channel_index *idx, const char *name, size_t len,
                                       uint32_t *n)
{
    struct channel *ch = find(idx, name, len);

    *n = ch ? ch->n : 0;
    return ch ? ch->m : NULL;
}

size_t channel_index_count(const struct channel_index *idx)
{
    return idx->count;
}
