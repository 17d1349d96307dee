/* shard.c -- the stable placement behind sharding (shard.h): FNV-1a 64 and jump consistent
 * hashing, chosen for being fixed, well known and tiny, not for resisting chosen names (a publisher
 * who picks names that all land on one shard only loads that shard, as it could by publishing to
 * one channel). */
#include "shard.h"

#include "redis_url.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define FNV_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME UINT64_C(0x100000001b3)

static uint64_t fnv1a(uint64_t h, const void *p, size_t len)
{
    const unsigned char *s = p;

    for (size_t i = 0; i < len; i++) {
        h ^= s[i];
        h *= FNV_PRIME;
    }
    return h;
}

uint64_t shard_hash(const void *p, size_t len)
{
    return fnv1a(FNV_OFFSET, p, len);
}

/* Jump consistent hash, as published (its arithmetic, doubles included, is part of the
 * placement: IEEE 754 division and multiplication round the same everywhere). */
unsigned shard_of(const char *name, size_t len, unsigned n)
{
    uint64_t key = shard_hash(name, len);
    int64_t b = -1, j = 0;

    while (j < (int64_t)n) {
        b = j;
        key = key * UINT64_C(2862933555777941757) + 1;
        j = (int64_t)((double)(b + 1) * ((double)(INT64_C(1) << 31) / (double)((key >> 33) + 1)));
    }
    return b < 0 ? 0 : (unsigned)b;
}

void shard_name(const struct redis_url *u, char out[SHARD_NAME_MAX])
{
    char host[sizeof(u->host)];
    size_t i;

    for (i = 0; u->host[i] && i + 1 < sizeof(host); i++)
        host[i] = (char)tolower((unsigned char)u->host[i]);
    host[i] = '\0';
    snprintf(out, SHARD_NAME_MAX, strchr(host, ':') ? "redis://[%s]:%d/%d" : "redis://%s:%d/%d",
             host, u->port, u->db);
}

uint64_t shard_list_digest(char *const *names, unsigned n)
{
    uint64_t h = FNV_OFFSET;

    for (unsigned i = 0; i < n; i++) {
        h = fnv1a(h, names[i], strlen(names[i]));
        h = fnv1a(h, "\n", 1);
    }
    return h;
}
