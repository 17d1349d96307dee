/* keyhash.c -- SipHash-2-4 (libsodium's crypto_shorthash) under one random key per process.
 * uthash's default hash (Jenkins) is unkeyed: names chosen to collide put every entry of a
 * table in one bucket and make each lookup a walk of the table. A keyed hash leaves an
 * attacker nothing to choose: the key never leaves the process. */
#include "keyhash.h"

#include <sodium.h>
#include <string.h>

static unsigned char process_key[crypto_shorthash_KEYBYTES];
static int is_keyed;

int keyhash_init(void)
{
    if (is_keyed)
        return 0;
    if (sodium_init() < 0)
        return -1;
    randombytes_buf(process_key, sizeof(process_key));
    is_keyed = 1;
    return 0;
}

uint32_t keyhash(const void *key, size_t len)
{
    unsigned char out[crypto_shorthash_BYTES];
    uint32_t h;

    crypto_shorthash(out, key, len, process_key);
    memcpy(&h, out, sizeof(h));
    return h;
}
