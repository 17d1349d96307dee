/* apikeys.h -- the API keys that may POST /publish (--api-key, --api-keys-file). */
#ifndef HERALD_APIKEYS_H
#define HERALD_APIKEYS_H

#include <stddef.h>

struct apikeys;

/* Loads key (may be NULL) and the keys of file (may be NULL; one key a line, blank lines and
 * lines starting with '#' skipped). Returns NULL with err set on an unreadable file or a key
 * shorter than 16 bytes; an empty set when both are NULL. */
struct apikeys *apikeys_load(const char *key, const char *file, char *err, size_t errlen);
void apikeys_free(struct apikeys *k);
size_t apikeys_count(const struct apikeys *k);
/* The index of the key equal to presented, or -1. Takes the same time whichever key matches
 * and whatever the lengths (keys are compared as SHA-256 digests with CRYPTO_memcmp). */
int apikeys_find(const struct apikeys *k, const char *presented, size_t len);

/* A stable name for key idx that does not reveal it (16 hex digits of its digest), the same on
 * every hub that has the key: the publish limiter's identity. out holds 17 bytes. */
void apikeys_id(const struct apikeys *k, int idx, char out[17]);

#endif
