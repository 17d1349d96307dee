/* fuzz_admission.c -- libFuzzer target: the header strings admission judges (hub/delivery/
 * admission.c) under a config with every check on: trusted proxies, allowed origins, a JWT
 * secret, both connection caps. The input is split at NUL bytes into the path, the peer, the
 * Origin, X-Forwarded-For, Authorization and ?token=; a field that starts with 0x01 is sent as
 * too long, a missing one as absent. Every verdict must be one of the three, a refusal must
 * carry its status, and releasing must give back every slot. */
#include "common/config.h"
#include "common/keyhash.h"
#include "common/netaddr.h"
#include "delivery/admission.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct config cfg;
static struct admission_gate *gate;

static void setup(void)
{
    static char secret_path[] = "/tmp/herald-fuzz-secret-XXXXXX";
    char *argv[] = {"herald",
                    "--web-root",
                    "/",
                    "--trusted-proxies",
                    "127.0.0.1,10.0.0.0/8,::1",
                    "--allowed-origins",
                    "https://app.example.com,http://localhost:8080",
                    "--jwt-secret-file",
                    secret_path,
                    "--max-connections",
                    "3",
                    "--max-connections-per-ip",
                    "2",
                    NULL};
    char *envp[] = {NULL};
    char err[256];
    int fd = mkstemp(secret_path);

    if (fd < 0 || write(fd, "0123456789abcdef0123456789abcdef", 32) != 32)
        abort();
    close(fd);
    keyhash_init();
    if (config_load(&cfg, 13, argv, envp, stdout, err, sizeof(err)) != CONFIG_OK ||
        config_resolve(&cfg, err, sizeof(err)) < 0)
        abort();
    unlink(secret_path);
    gate = admission_gate_new();
}

static struct hdr field(char **p, char *end)
{
    struct hdr h = {HDR_ABSENT, NULL};

    if (*p >= end)
        return h;
    if (**p == 1) {
        h.state = HDR_TOO_LONG;
    } else {
        h.state = HDR_PRESENT;
        h.value = *p;
    }
    *p += strlen(*p) + 1;
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1), *p, *end;
    char peer[NETADDR_STRLEN] = "192.0.2.1";
    struct admission_request rq = {0};
    struct admission a;
    struct hdr peer_field;

    if (!gate)
        setup();
    memcpy(copy, data, size);
    copy[size] = '\0';
    p = copy;
    end = copy + size;
    rq.path = field(&p, end);
    peer_field = field(&p, end);
    if (peer_field.state == HDR_PRESENT &&
        netaddr_normalize(peer_field.value, strlen(peer_field.value), peer) < 0)
        snprintf(peer, sizeof(peer), "%.45s", peer_field.value);
    rq.peer = peer;
    rq.origin = field(&p, end);
    rq.forwarded_for = field(&p, end);
    rq.authorization = field(&p, end);
    rq.query_token = field(&p, end);
    rq.now_s = 1800000000;
    admission_decide(&cfg, gate, "/ws", &rq, &a);
    switch (a.verdict) {
    case ADMIT: break;
    case ADMIT_THEN_CLOSE:
        if (a.close_code != 1008 || !a.close_reason || a.claims)
            abort();
        break;
    case REFUSE_HTTP:
        if (a.status < 400 || a.status > 599 || !a.code || !a.text)
            abort();
        break;
    default: abort();
    }
    if (strlen(a.ip) >= NETADDR_STRLEN || strlen(a.ip_key) >= NETADDR_KEYLEN)
        abort();
    admission_release(&a);
    if (admission_gate_count(gate) != 0 || admission_gate_count_of(gate, a.ip_key) != 0)
        abort();
    free(copy);
    return 0;
}
