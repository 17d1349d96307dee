/* apikeys.c -- API keys for POST /publish, compared in constant time.
 * Each key is kept only as its SHA-256 digest; a presented key is hashed once and compared
 * with every digest without stopping early, so neither which key matched nor how long the
 * keys are shows in the timing. */
#include "apikeys.h"

#include "common/xalloc.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_KEY_BYTES 16

struct apikeys {
    unsigned char (*digest)[SHA256_DIGEST_LENGTH];
    size_t n;
};

static int add(struct apikeys *k, const char *key, size_t len, const char *where, char *err,
               size_t errlen)
{
    if (len < MIN_KEY_BYTES) {
        snprintf(err, errlen, "%s: an API key must be at least %d bytes", where, MIN_KEY_BYTES);
        return -1;
    }
    k->digest = xrealloc(k->digest, (k->n + 1) * sizeof(*k->digest));
    SHA256((const unsigned char *)key, len, k->digest[k->n++]);
    return 0;
}

struct apikeys *apikeys_load(const char *key, const char *file, char *err, size_t errlen)
{
    struct apikeys *k = xcalloc(1, sizeof(*k));
    char line[1024];
    unsigned lineno = 0;
    FILE *f;

    if (key && add(k, key, strlen(key), "--api-key", err, errlen) < 0)
        goto fail;
    if (!file)
        return k;
    f = fopen(file, "r");
    if (!f) {
        snprintf(err, errlen, "--api-keys-file: %s: %s", file, strerror(errno));
        goto fail;
    }
    while (fgets(line, sizeof(line), f)) {
        size_t len = strcspn(line, "\r\n");

        char where[300];

        lineno++;
        if (len == sizeof(line) - 1) { /* the buffer is full: the line may go on */
            int c = fgetc(f);

            if (c == '\r')
                c = fgetc(f);
            if (c != EOF && c != '\n') {
                snprintf(err, errlen, "--api-keys-file: %s line %u is longer than %zu bytes", file,
                         lineno, sizeof(line) - 1);
                fclose(f);
                goto fail;
            }
        }
        line[len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        snprintf(where, sizeof(where), "--api-keys-file: %s line %u", file, lineno);
        if (add(k, line, len, where, err, errlen) < 0) {
            fclose(f);
            goto fail;
        }
    }
    fclose(f);
    if (k->n == 0) {
        snprintf(err, errlen, "--api-keys-file: %s holds no key", file);
        goto fail;
    }
    return k;
fail:
    apikeys_free(k);
    return NULL;
}

void apikeys_free(struct apikeys *k)
{
    if (!k)
        return;
    OPENSSL_cleanse(k->digest, k->n * sizeof(*k->digest));
    free(k->digest);
    free(k);
}

size_t apikeys_count(const struct apikeys *k)
{
    return k ? k->n : 0;
}

int apikeys_find(const struct apikeys *k, const char *presented, size_t len)
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    int found = -1;

    SHA256((const unsigned char *)presented, len, d);
    for (size_t i = 0; i < k->n; i++) {
        int eq = CRYPTO_memcmp(d, k->digest[i], sizeof(d)) == 0;

        found = eq ? (int)i : found; /* no early exit */
    }
    return found;
}

void apikeys_id(const struct apikeys *k, int idx, char out[17])
{
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", k->digest[idx][SHA256_DIGEST_LENGTH - 1 - i]);
}
