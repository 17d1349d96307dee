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

/* One subscriber as the index lists it, with its subscription's state (kept here, next to
 * the member, so fan-out reads it in the same pass over the channel's array). */
struct channel_member {
    void *member;
    struct channel_set *set;
    uint32_t set_slot; /* position of this channel in set->v */
    uint32_t flags;    /* the subscription's (delivery/subscription.h) */
    uint64_t last_seq; /* the last seq this subscriber was handed */
    void *extra;       /* the subscription's other state, or NULL (freed by the index's
                        * free_extra when the member leaves) */
};

/* Frees a member's extra state when it leaves. */
typedef void channel_free_extra_fn(void *extra);

/* The index of delivery plane `plane` (0..63): its channels set that plane's bit in the
 * registry (common/registry.h). max_channels caps the distinct channels of the whole
 * instance (0: no cap). free_extra may be NULL. Delivery thread only. */
struct channel_index *channel_index_new(unsigned plane, size_t max_channels,
                                        channel_free_extra_fn *free_extra);
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
/* set's member entry for name, or NULL when set does not hold it. Valid until the next join or
 * leave on this index. */
struct channel_member *channel_set_find(struct channel_index *idx, const struct channel_set *set,
                                        const char *name, size_t len);

/* The members of name, or NULL with *n = 0. The array stays valid until the next join or
 * leave on this index: fan-out must not join or leave while it walks it. */
struct channel_member *channel_members(struct channel_index *idx, const char *name, size_t len,
                                       uint32_t *n);
/* The channel's epoch as this plane last saw it ("" before any), writable: fan-out and
 * positions keep it. NULL when the index has no such channel. */
char *channel_epoch(struct channel_index *idx, const char *name, size_t len);
/* Channels with at least one member in this index. */
size_t channel_index_count(const struct channel_index *idx);

#endif
