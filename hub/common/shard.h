/* shard.h -- which Redis of several (--redis-url given more than once) a channel lives on,
 * and the digest of the list that hubs compare in their heartbeats. Pure: no I/O, no state.
 *
 * The hash is FNV-1a 64 of the channel name's bytes, placed on one of n shards by jump
 * consistent hashing (Lamping and Veach, 2014): a shard appended to the list takes about
 * 1/(n+1) of the channels and the others stay where they were (mod n would move most of them).
 * It is NOT keyhash() (common/keyhash.h): that one is keyed per process, and a channel must land
 * on the same shard in every hub, every process and every version. Changing shard_hash() or
 * shard_of() moves channels between shards in a running cluster: never do it. The same
 * function places --publish-rate's count of an identity. */
#ifndef HERALD_SHARD_H
#define HERALD_SHARD_H

#include <stddef.h>
#include <stdint.h>

struct redis_url;

#define SHARD_MAX 64       /* --redis-url entries at most */
#define SHARD_NAME_MAX 300 /* "redis://" host ":" port "/" db, NUL included */

/* FNV-1a 64 of p[0..len). */
uint64_t shard_hash(const void *p, size_t len);
/* The shard (0..n-1) of a channel, or of any other name (a publish identity): jump consistent
 * hashing of shard_hash(); 0 when n <= 1. */
unsigned shard_of(const char *name, size_t len, unsigned n);
/* A shard's name as hubs compare and show it: redis://host:port/db, the host in lower case (an
 * IPv6 address in brackets), the port and database always written, no user or password. */
void shard_name(const struct redis_url *u, char out[SHARD_NAME_MAX]);
/* The digest of a list of n shard names, in order (FNV-1a 64 of each name and a newline). */
uint64_t shard_list_digest(char *const *names, unsigned n);

#endif
