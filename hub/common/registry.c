/* registry.c -- one keyed uthash table of channel names under a mutex: per name, how many
 * planes hold it and which (a bit each). Entries exist only while some plane holds the
 * channel, so the table is bounded by what subscribers hold and by --max-channels. */
#include "registry.h"

#include "channel_name.h"
#include "keyhash.h"
#include "xalloc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

struct registry_entry {
    char name[CHANNEL_NAME_MAX + 1];
    UT_hash_handle hh;
    unsigned planes;     /* planes holding the channel */
    uint64_t mask;       /* the same planes, a bit each */
    atomic_uint members; /* subscribers over every plane (the overload check weighs by it) */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct registry_entry *table; /* {lock} */
static size_t table_size;            /* {lock} */

struct registry_entry *registry_add(const char *name, size_t len, unsigned plane, size_t max)
{
    struct registry_entry *e;
    uint64_t bit = UINT64_C(1) << (plane % REGISTRY_MAX_PLANES);

    if (len > CHANNEL_NAME_MAX)
        return NULL;
    pthread_mutex_lock(&lock);
    HASH_FIND(hh, table, name, len, e);
    if (!e) {
        if (max && table_size >= max) {
            pthread_mutex_unlock(&lock);
            return NULL;
        }
        e = xcalloc(1, sizeof(*e));
        memcpy(e->name, name, len);
        HASH_ADD(hh, table, name[0], len, e);
        table_size++;
    }
    e->planes++;
    e->mask |= bit;
    pthread_mutex_unlock(&lock);
    return e;
}

void registry_members_add(struct registry_entry *e, int delta)
{
    atomic_fetch_add_explicit(&e->members, (unsigned)delta, memory_order_relaxed);
}

void registry_remove(const char *name, size_t len, unsigned plane)
{
    struct registry_entry *e;

    pthread_mutex_lock(&lock);
    HASH_FIND(hh, table, name, len, e);
    if (e)
        e->mask &= ~(UINT64_C(1) << (plane % REGISTRY_MAX_PLANES));
    if (e && --e->planes == 0) {
        HASH_DEL(table, e);
        free(e);
        table_size--;
    }
    pthread_mutex_unlock(&lock);
}

size_t registry_count(void)
{
    size_t n;

    pthread_mutex_lock(&lock);
    n = table_size;
    pthread_mutex_unlock(&lock);
    return n;
}

uint64_t registry_lookup(const char *name, size_t len, unsigned *members)
{
    struct registry_entry *e;
    uint64_t mask;

    pthread_mutex_lock(&lock);
    HASH_FIND(hh, table, name, len, e);
    mask = e ? e->mask : 0;
    *members = e ? atomic_load_explicit(&e->members, memory_order_relaxed) : 0;
    pthread_mutex_unlock(&lock);
    return mask;
}

uint64_t registry_planes(const char *name, size_t len)
{
    unsigned members;

    return registry_lookup(name, len, &members);
}
