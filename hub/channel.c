/* channel.c -- channel names and the channel -> subscribers index.
 * Each delivery plane owns one index: a uthash table of channels, each holding a dense array
 * of its members, so a publish walks exactly that channel's subscribers. A member's
 * channel_set records where it sits in each channel's array and each array entry records
 * where the channel sits in the set, so join and leave are O(1) (swap with the last).
 * Channels with no member are freed. The registry counts distinct channel names over all
 * planes under a mutex; it changes only when a plane creates or frees a channel, never per
 * event. */
#include "channel.h"

#include "xalloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

struct channel {
    char name[CHANNEL_NAME_MAX + 1];
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
    unsigned plane; /* bit of this index in the registry's plane masks */
};

struct registry_entry {
    char name[CHANNEL_NAME_MAX + 1];
    UT_hash_handle hh;
    unsigned planes;
    uint64_t mask; /* planes (indexes) holding the channel, by channel_index_new_plane's n */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct registry_entry *registry; /* {registry_lock} */
static size_t registry_size;            /* {registry_lock} */

static inline bool name_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.' || c == ':';
}

bool channel_name_is_valid(const char *name, size_t len)
{
    size_t i = 0;

    if (len < 1 || len > CHANNEL_NAME_MAX)
        return false;
    if (name[0] == '$') {
        if (len == 1)
            return false;
        i = 1;
    }
    for (; i < len; i++)
        if (!name_char_ok((unsigned char)name[i]))
            return false;
    return true;
}

bool channel_name_is_reserved(const char *name, size_t len)
{
    return len > 0 && name[0] == '$';
}

static void registry_add(const char *name, size_t len, unsigned plane)
{
    struct registry_entry *e;

    pthread_mutex_lock(&registry_lock);
    HASH_FIND(hh, registry, name, len, e);
    if (!e) {
        e = xcalloc(1, sizeof(*e));
        memcpy(e->name, name, len);
        HASH_ADD(hh, registry, name[0], len, e);
        registry_size++;
    }
    e->planes++;
    e->mask |= UINT64_C(1) << (plane % 64);
    pthread_mutex_unlock(&registry_lock);
}

static void registry_remove(const char *name, size_t len, unsigned plane)
{
    struct registry_entry *e;

    pthread_mutex_lock(&registry_lock);
    HASH_FIND(hh, registry, name, len, e);
    if (e)
        e->mask &= ~(UINT64_C(1) << (plane % 64));
    if (e && --e->planes == 0) {
        HASH_DEL(registry, e);
        free(e);
        registry_size--;
    }
    pthread_mutex_unlock(&registry_lock);
}

size_t channel_registry_count(void)
{
    size_t n;

    pthread_mutex_lock(&registry_lock);
    n = registry_size;
    pthread_mutex_unlock(&registry_lock);
    return n;
}

struct channel_index *channel_index_new(void)
{
    return channel_index_new_plane(0);
}

struct channel_index *channel_index_new_plane(unsigned plane)
{
    struct channel_index *idx = xcalloc(1, sizeof(*idx));

    idx->plane = plane;
    return idx;
}

uint64_t channel_registry_planes(const char *name, size_t len)
{
    struct registry_entry *e;
    uint64_t mask;

    pthread_mutex_lock(&registry_lock);
    HASH_FIND(hh, registry, name, len, e);
    mask = e ? e->mask : 0;
    pthread_mutex_unlock(&registry_lock);
    return mask;
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
        ch = xcalloc(1, sizeof(*ch));
        memcpy(ch->name, name, len);
        HASH_ADD(hh, idx->table, name[0], len, ch);
        idx->count++;
        registry_add(name, len, idx->plane);
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

const struct channel_member *channel_members(struct channel_index *idx, const char *name,
                                             size_t len, uint32_t *n)
{
    struct channel *ch = find(idx, name, len);

    *n = ch ? ch->n : 0;
    return ch ? ch->m : NULL;
}

size_t channel_index_count(const struct channel_index *idx)
{
    return idx->count;
}
