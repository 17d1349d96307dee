/* channel_name.h -- what a channel name may be (SPEC.md): 1 to 128 characters of
 * A-Z a-z 0-9 _ - . : and, for the hub's own channels, a leading '$'. Pure; any thread. */
#ifndef HERALD_CHANNEL_NAME_H
#define HERALD_CHANNEL_NAME_H

#include <stdbool.h>
#include <stddef.h>

#define CHANNEL_NAME_MAX 128

/* 1..128 characters of A-Z a-z 0-9 _ - . : with an optional leading '$' (the hub's own
 * channels). The length decides, not a NUL. */
bool channel_name_is_valid(const char *name, size_t len);
/* Names that start with '$' belong to the hub: subscribable, never publishable. */
bool channel_name_is_reserved(const char *name, size_t len);

#endif
