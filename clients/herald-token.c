/* herald-token -- mints an HS256 connection token for /ws from a secret file.
 *   herald-token --secret-file FILE [--sub NAME] [--ttl SECONDS] CHANNEL...
 * Prints the token and a newline. For operators and tests; the hub verifies with the same
 * code (hub/common/jwt.c, the herald_jwt library). */
#include "common/jwt.h"
#include "herald_version.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: herald-token --secret-file FILE [--sub NAME] [--ttl SECONDS] CHANNEL...\n"
                 "Prints an HS256 token granting CHANNEL... (a trailing * matches any suffix),\n"
                 "valid for --ttl seconds (default 3600; negative gives an expired token).\n");
}

int main(int argc, char **argv)
{
    const char *secret_file = NULL, *sub = NULL;
    long long ttl = 3600;
    const char **channels = calloc((size_t)argc, sizeof(char *));
    size_t n = 0;
    unsigned char *secret = NULL;
    size_t secret_len = 0;
    char err[300], *token;
    int i;

    if (!channels)
        return 1;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (!strcmp(a, "--help")) {
            usage(stdout);
            free(channels);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("herald-token " HERALD_VERSION "\n");
            free(channels);
            return 0;
        } else if (!strcmp(a, "--secret-file") && i + 1 < argc) {
            secret_file = argv[++i];
        } else if (!strcmp(a, "--sub") && i + 1 < argc) {
            sub = argv[++i];
        } else if (!strcmp(a, "--ttl") && i + 1 < argc) {
            char *end;

            errno = 0;
            ttl = strtoll(argv[++i], &end, 10);
            if (errno || *end || end == argv[i]) {
                fprintf(stderr, "herald-token: --ttl: '%s' is not a number\n", argv[i]);
                free(channels);
                return 2;
            }
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "herald-token: unknown option '%s'\n", a);
            usage(stderr);
            free(channels);
            return 2;
        } else {
            channels[n++] = a;
        }
    }
    if (!secret_file || n == 0) {
        usage(stderr);
        free(channels);
        return 2;
    }
    if (jwt_read_secret(secret_file, &secret, &secret_len, err, sizeof(err)) < 0) {
        fprintf(stderr, "herald-token: %s\n", err);
        free(channels);
        return 1;
    }
    token = jwt_sign(secret, secret_len, sub, (long long)time(NULL) + ttl, channels, n);
    free(secret);
    free(channels);
    if (!token) {
        fprintf(stderr, "herald-token: cannot sign\n");
        return 1;
    }
    printf("%s\n", token);
    free(token);
    return 0;
}
