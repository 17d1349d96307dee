/* registry.h -- the channels this instance holds: every delivery plane's channel index adds
 * and removes its channels here, and the control plane asks which planes hold a channel
 * before it posts an event (a plane that holds none gets nothing). It also caps the distinct
 * channels one instance holds (--max-channels). Thread-safe: a mutex, taken when a plane
 * creates or frees a channel and once per event on the control plane, never per delivery. */
#ifndef HERALD_REGISTRY_H
#define HERALD_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#define REGISTRY_MAX_PLANES 64

struct registry_entry;

/* Plane `plane` (0..63) now holds name. Returns the channel's entry (valid while the plane
 * holds the channel), or NULL when name is new to the instance and it already holds max
 * distinct channels (0: no cap); nothing changes then. A plane adds its bit before it answers
 * "subscribed", so every event posted after that answer reaches it. */
struct registry_entry *registry_add(const char *name, size_t len, unsigned plane, size_t max);
/* The channel's subscribers over every plane go up or down by delta (lock-free). */
void registry_members_add(struct registry_entry *e, int delta);
/* Plane `plane` no longer holds name. */
void registry_remove(const char *name, size_t len, unsigned plane);
/* Distinct channels held over all planes. */
size_t registry_count(void);
/* The planes that hold name now, as a bit mask. */
uint64_t registry_planes(const char *name, size_t len);
/* The same, and how many subscribers the channel has over every plane. */
uint64_t registry_lookup(const char *name, size_t len, unsigned *members);

#endif
