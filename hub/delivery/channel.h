/* channel.h -- the channel -> subscribers index of one delivery plane. */
#ifndef HERALD_CHANNEL_H
#define HERALD_CHANNEL_H

#include "common/channel_name.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct channel;
struct channel_index;

/* The subscriptions one member (a session) holds; owned by the member, kept by the index.
 * Zero-initialise it; release with channel_leave_all(). */
struct channel_set {
    struct channel_slot *v; /* {index}: written only by channel.c */
    uint32_t n, cap;
};

/* One subscriber as the index lists it. */
struct channel_member {
    void *member;
    struct channel_set *set;
    uint32_t set_slot; /* position of this channel in set->v */
};

/* The index of delivery plane `plane` (0..63): its channels set that plane's bit in the
 * registry (common/registry.h). max_channels caps the distinct channels of the whole
 * instance (0: no cap). Delivery thread only. */
struct channel_index *channel_index_new(unsigned plane, size_t max_channels);
void channel_index_free(struct channel_index *idx); /* NULL is a no-op; index must be empty */

enum channel_join_result {
    CHANNEL_JOINED,
    CHANNEL_ALREADY,
    CHANNEL_LIMIT, /* the set already holds `limit` channels */
    CHANNEL_FULL,  /* a new channel, and the instance holds --max-channels */
};
/* Adds member to channel name (validated by the caller) unless set already holds limit
 * channels or the instance is full. O(1) in the channel's member array; the member's own set
 * is scanned (it holds at most `limit`, --max-subscriptions). */
enum channel_join_result channel_join(struct channel_index *idx, struct channel_set *set,
                                      void *member, const char *name, size_t len, uint32_t limit);
/* Returns 0, or -1 when set does not hold name. */
int channel_leave(struct channel_index *idx, struct channel_set *set, const char *name, size_t len);
void channel_leave_all(struct channel_index *idx, struct channel_set *set);
/* True when set holds name. */
bool channel_set_has(struct channel_index *idx, const struct channel_set *set, const char *name,
                     size_t len);

/* The members of name, or NULL with *n = 0. The array stays valid until the next join or
 * leave on this index: fan-out must not join or leave while it walks it. */
const struct channel_member *channel_members(struct channel_index *idx, const char *name,
                                             size_t len, uint32_t *n);
/* Channels with at least one member in this index. */
size_t channel_index_count(const struct channel_index *idx);

#endif
