/* keyhash.h -- the keyed hash behind every table that clients can fill (channels, client
 * addresses, publish identities): SipHash-2-4 from libsodium, keyed once per process from the
 * kernel's random source, so nobody outside the process can choose names that collide.
 * Any thread, once keyhash_init() has run. */
#ifndef HERALD_KEYHASH_H
#define HERALD_KEYHASH_H

#include <stddef.h>
#include <stdint.h>

/* Draws the process key. Call once at start-up, before any thread or table exists; later
 * calls do nothing. Returns 0, or -1 when libsodium cannot start (the caller exits). */
int keyhash_init(void);
/* 32 bits of SipHash-2-4 of key[0..len) under the process key (uthash wants 32 bits). */
uint32_t keyhash(const void *key, size_t len);

#ifdef UTHASH_H
#error "include common/keyhash.h before uthash.h"
#endif

/* Makes the uthash tables of the file that includes this header (before uthash.h) hash with
 * keyhash() instead of uthash's unkeyed default. */
#define HASH_FUNCTION(keyptr, keylen, hashv) ((hashv) = keyhash((keyptr), (size_t)(keylen)))

#endif
