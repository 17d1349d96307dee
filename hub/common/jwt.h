/* jwt.h -- HS256 JSON Web Tokens: verify (the hub) and sign (herald-token). Pure apart from
 * allocation; HMAC-SHA256 from OpenSSL. */
#ifndef HERALD_JWT_H
#define HERALD_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JWT_MAX_BYTES 8192
#define JWT_MAX_CHANNELS 256

struct jwt_claims {
    char sub[129];
    int64_t exp;     /* Unix seconds */
    char **channels; /* grants; a trailing '*' matches any suffix */
    size_t n_channels;
};

/* Verifies token (header.payload.signature) against secret at now_s: alg must be HS256 (a
 * "none" or any other alg is refused), the signature must match (constant-time), exp must be
 * present and in the future, sub a string, channels a list of strings. Returns 0 and fills
 * *out (release with jwt_claims_free), or -1 with err saying why (for logs, not clients). */
int jwt_verify(const char *token, size_t len, const void *secret, size_t secret_len, int64_t now_s,
               struct jwt_claims *out, char *err, size_t errlen);
void jwt_claims_free(struct jwt_claims *c);
/* True when a grant covers channel. */
bool jwt_grants(const struct jwt_claims *c, const char *channel, size_t len);

/* Signs {"sub":sub,"exp":exp,"channels":[…]} with secret. Returns a malloc'd token. */
char *jwt_sign(const void *secret, size_t secret_len, const char *sub, int64_t exp,
               const char *const *channels, size_t n_channels);

/* Reads a secret file: its bytes, without one trailing newline. Returns 0 or -1 with err. A
 * secret shorter than 32 bytes is refused. *out is malloc'd. */
int jwt_read_secret(const char *path, unsigned char **out, size_t *len, char *err, size_t errlen);

#endif
