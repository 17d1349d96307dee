/* fuzz_config.c -- libFuzzer target: the option parsers. The input is split at NUL bytes into
 * an argv and an environment (after a lone "--" entry); "--config" entries are skipped so the
 * fuzzer never makes the parser open files. The address, Redis URL and CIDR list parsers get
 * the raw bytes too. */
#include "common/config.h"
#include "common/netaddr.h"
#include "common/redis_url.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ARGS 24

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    char *argv[MAX_ARGS + 2], *envp[MAX_ARGS + 1];
    int argc = 1, envc = 0, in_env = 0;
    struct config cfg;
    char err[512];
    struct redis_url url;
    struct netaddr_list *list;
    FILE *out = fopen("/dev/null", "w");

    memcpy(copy, data, size);
    copy[size] = '\0';
    argv[0] = "herald";
    for (char *p = copy; p < copy + size && argc < MAX_ARGS && envc < MAX_ARGS;
         p += strlen(p) + 1) {
        if (strstr(p, "config"))
            continue;
        if (!strcmp(p, "--") && !in_env) {
            in_env = 1;
            continue;
        }
        if (in_env)
            envp[envc++] = p;
        else
            argv[argc++] = p;
    }
    argv[argc] = NULL;
    envp[envc] = NULL;
    config_load(&cfg, argc, argv, envp, out, err, sizeof(err));
    config_free(&cfg);

    redis_url_parse(copy, &url, err, sizeof(err));
    list = netaddr_list_parse(copy, err, sizeof(err));
    if (list) {
        char norm[NETADDR_STRLEN], client[NETADDR_STRLEN];

        if (netaddr_normalize(copy, strlen(copy), norm) == 0)
            netaddr_client(list, norm, copy, client);
        netaddr_list_free(list);
    }
    fclose(out);
    free(copy);
    return 0;
}
