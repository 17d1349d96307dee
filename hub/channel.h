/* channel.h -- channel names, and the channel -> subscribers index of one delivery plane. */
#ifndef HERALD_CHANNEL_H
#define HERALD_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHANNEL_NAME_MAX 128

/* 1..128 characters of A-Z a-z 0-9 _ - . : with an optional leading '$' (the hub's own
 * channels). */
bool channel_name_is_valid(const char *name, size_t len);
/* Names that start with '$' belong to the hub: subscribable, never publishable. */
bool channel_name_is_reserved(const char *name, size_t len);

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

/* A per-plane index; every index also feeds the instance-wide registry of distinct names.
 * Delivery thread only. */
struct channel_index *channel_index_new(void); /* plane 0 */
/* The index of delivery plane `plane` (0..63): its channels set that bit in the registry. */
struct channel_index *channel_index_new_plane(unsigned plane);
void channel_index_free(struct channel_index *idx); /* NULL is a no-op; index must be empty */

enum channel_join_result { CHANNEL_JOINED, CHANNEL_ALREADY, CHANNEL_LIMIT };
/* Adds member to channel name (validated by the caller) unless set already holds limit
 * channels. */
enum channel_join_result channel_join(struct channel_index *idx, struct channel_set *set,
                                      void *member, const char *name, size_t len, uint32_t limit);
/* Returns 0, or -1 when set does not hold name. */
int channel_leave(struct channel_index *idx, struct channel_set *set, const char *name, size_t len);
void channel_leave_all(struct channel_index *idx, struct channel_set *set);

/* The members of name, or NULL with *n = 0. The array stays valid until the next join or
 * leave on this index: fan-out must not join or leave while it walks it. */
const struct channel_member *channel_members(struct channel_index *idx, const char *name,
                                             size_t len, uint32_t *n);
/* Channels with at least one member in this index. */
size_t channel_index_count(const struct channel_index *idx);

/* Instance-wide count of distinct channels over all planes (thread-safe). */
size_t channel_registry_count(void);
/* The planes that hold name now, as a bit mask (thread-safe): the control plane posts an
 * event only to those. A plane that joins a channel sets its bit before it answers
 * "subscribed", so every event published after that answer reaches the new subscriber. */
uint64_t channel_registry_planes(const char *name, size_t len);

#endif
