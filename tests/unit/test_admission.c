/* test_admission.c -- hub/delivery/admission.c: the checks a client connection passes, as
 * plain policy over header strings, with no lws: the path, draining, the connection caps and
 * their slots, the client's address through trusted proxies, IPv6 counted by its /64, Origin,
 * the token, and headers too long to judge (refused, never taken for absent). */
#include "common/config.h"
#include "common/jwt.h"
#include "common/keyhash.h"
#include "delivery/admission.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define NOW_S INT64_C(1800000000)
#define SECRET "0123456789abcdef0123456789abcdef"

static char secret_path[64];

/* A resolved config from flags (argv without the program name, NULL-terminated). */
static void load(struct config *cfg, const char *const *args)
{
    char *argv[32], err[256];
    int argc = 0;
    static const char *const envp[] = {NULL};

    argv[argc++] = (char *)"herald";
    argv[argc++] = (char *)"--web-root";
    argv[argc++] = (char *)"/";
    for (size_t i = 0; args[i]; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    assert_int_equal(config_load(cfg, argc, argv, (char *const *)envp, stdout, err, sizeof(err)),
                     CONFIG_OK);
    if (config_resolve(cfg, err, sizeof(err)) < 0)
        fail_msg("config_resolve: %s", err);
}

static struct hdr present(const char *v)
{
    return (struct hdr){HDR_PRESENT, v};
}

static const struct hdr absent = {HDR_ABSENT, NULL};
static const struct hdr too_long = {HDR_TOO_LONG, NULL};

static struct admission_request request(const char *peer)
{
    return (struct admission_request){
        .path = present("/ws"),
        .peer = peer,
        .origin = absent,
        .forwarded_for = absent,
        .authorization = absent,
        .query_token = absent,
        .now_s = NOW_S,
    };
}

static void open_hub_admits_and_releases(void **state)
{
    static const char *const args[] = {NULL};
    struct config cfg;
    struct admission_gate *g = admission_gate_new();
    struct admission_request rq = request("10.0.0.1");
    struct admission a;

    (void)state;
    load(&cfg, args);
    admission_decide(&cfg, g, "/ws", &rq, &a);
    assert_int_equal(a.verdict, ADMIT);
    assert_string_equal(a.ip, "10.0.0.1");
    assert_int_equal(admission_gate_count(g), 1);
    assert_int_equal(admission_gate_count_of(g, "10.0.0.1"), 1);
    admission_release(&a);
    admission_release(&a); /* twice is harmless */
    assert_int_equal(admission_gate_count(g), 0);
    assert_int_equal(admission_gate_count_of(g, "10.0.0.1"), 0);
    admission_gate_free(g);
    config_free(&cfg);
}

static void wrong_path_and_draining_are_refused(void **state)
{
    static const char *const args[] = {NULL};
    struct config cfg;
    struct admission_gate *g = admission_gate_new();
    struct admission_request rq = request("10.0.0.1");
    struct admission a;

    (void)state;
    load(&cfg, args);
    rq.path = present("/wss");
    admission_decide(&cfg, g, "/ws", &rq, &a);
    assert_int_equal(a.verdict, REFUSE_HTTP);
    assert_int_equal(a.status, 404);
    assert_int_equal(a.refuse_why, REFUSE_PATH);
    admission_release(&a);
    rq.path = too_long;
    admission_decide(&cfg, g, "/ws", &rq, &a);
    assert_int_equal(a.status, 404);
    admission_release(&a);
    rq.path = present("/ws");
    rq.is_draining = true;
    admission_decide(&cfg, g, "/ws", &rq, &a);
    assert_int_equal(a.verdict, REFUSE_HTTP);
    assert_int_equal(a.status, 503);
    assert_int_equal(a.refuse_why, REFUSE_DRAINING);
    admission_release(&a);
    assert_int_equal(admission_gate_count(g), 0);
    admission_gate_free(g);
    config_free(&cfg);
}

static void caps_hold_and_free_their_slots(void **state)
{
    static const char *const args[] = {"--max-connections", "3", "--max-connections-per-ip", "2",
                                       NULL};
    struct config cfg;
    struct admission_gate *g = admission_gate_new();
    struct admission_request one = request("10.0.0.1"), two = request("10.0.0.2");
    struct admission a[5];

    (void)state;
    load(&cfg, args);
    admission_decide(&cfg, g, "/ws", &one, &a[0]);
    admission_decide(&cfg, g, "/ws", &one, &a[1]);
    admission_decide(&cfg, g, "/ws", &one, &a[2]); /* a third from 10.0.0.1 */
    assert_int_equal(a[0].verdict, ADMIT);
    assert_int_equal(a[1].verdict, ADMIT);
    assert_int_equal(a[2].verdict, REFUSE_HTTP);
    assert_int_equal(a[2].status, 429);
    assert_int_equal(a[2].refuse_why, REFUSE_PER_IP);
    admission_release(&a[2]);
    admission_decide(&cfg, g, "/ws", &two, &a[3]);
    assert_int_equal(a[3].verdict, ADMIT);
    admission_decide(&cfg, g, "/ws", &two, &a[4]); /* a fourth connection in all */
    assert_int_equal(a[4].verdict, REFUSE_HTTP);
    assert_int_equal(a[4].status, 503);
    assert_int_equal(a[4].refuse_why, REFUSE_CAPACITY);
    admission_release(&a[4]);
    assert_int_equal(admission_gate_count(g), 3);
    admission_release(&a[0]);
    admission_decide(&cfg, g, "/ws", &one, &a[0]); /* a freed slot is there again */
    assert_int_equal(a[0].verdict, ADMIT);
    for (int i = 0; i < 4; i++)
        admission_release(&a[i]);
    assert_int_equal(admission_gate_count(g), 0);
    admission_gate_free(g);
    config_free(&cfg);
}

/* One IPv6 host holds a whole /64: its addresses share one count. */
static void ipv6_counts_by_its_64(void **state)
{
    static const char *const args[] = {"--max-connections-per-ip", "2", NULL};
    static const char *const args128[] = {"--max-connections-per-ip", "2", "--ipv6-prefix", "128",
                                          NULL};
    struct config cfg;
    struct admission_gate *g = admission_gate_new();
    struct admission_request r1 = request("2001:db8:1:2::1"), r2 = request("2001:db8:1:2:ffff::9"),
                             r3 = request("2001:db8:1:2:abcd::7"),
                             other = request("2001:db8:1:3::1");
    struct admission a[4];

    (void)state;
    load(&cfg, args);
    admission_decide(&cfg, g, "/ws", &r1, &a[0]);
    admission_decide(&cfg, g, "/ws", &r2, &a[1]);
    admission_decide(&cfg, g, "/ws", &r3, &a[2]);
    assert_string_equal(a[0].ip_key, "2001:db8:1:2::/64");
    assert_string_equal(a[0].ip, "2001:db8:1:2::1");
    assert_int_equal(a[1].verdict, ADMIT);
    assert_int_equal(a[2].verdict, REFUSE_HTTP);
    assert_int_equal(a[2].status, 429);
    admission_decide(&cfg, g, "/ws", &other, &a[3]); /* the next /64 is another host */
    assert_int_equal(a[3].verdict, ADMIT);
    for (int i = 0; i < 4; i++)
        admission_release(&a[i]);
    config_free(&cfg);

    load(&cfg, args128);
    admission_decide(&cfg, g, "/ws", &r1, &a[0]);
    admission_decide(&cfg, g, "/ws", &r2, &a[1]);
    admission_decide(&cfg, g, "/ws", &r3, &a[2]);
    assert_int_equal(a[2].verdict, ADMIT); /* /128: each address alone */
    for (int i = 0; i < 3; i++)
        admission_release(&a[i]);
    assert_int_equal(admission_gate_count(g), 0);
    admission_gate_free(g);
    config_free(&cfg);
}

static void forwarded_for_through_trusted_proxies(void **state)
{
    static const char *const args[] = {"--trusted-proxies", "127.0.0.1,10.9.0.0/16", NULL};
    struct config cfg;
    struct admission_gate *g = admission_gate_new();
    struct admission_request rq = request("127.0.0.1");
    struct admission a;

    (void)state;
    load(&cfg, args);
    /* the rightmost address that is not a trusted proxy, whatever the client wrote before */
    rq.forwarded_for = present("1.1.1.1, 203.0.113.7,10.9.3.4");
    admission_decide(&cfg, g, "/ws", &rq, &a);
    assert_string_equal(a.ip, "203.0.113.7");
    admission_release(&a);
    /* an untrusted peer's header is ignored */
    rq = request("192.0.2.1");
    rq.forwarded_for = present("203.0.113.7");
    admission_decide(&cfg, g, "/ws", &rq, &a);
    assert_string_equal(a.ip, "192.0.2.1");
    admission_release(&a);
    /* too long to judge, from a trusted proxy: refused, not taken for the proxy itself */
    rq = request("127.0.0.1");
    rq.forwarded_for = too_long;
    admission_decide(&cfg, g, "/ws", &rq, &a);
    assert_int_equal(a.verdict, REFUSE_HTTP);
    assert_int_equal(a.status, 400);
    assert_int_equal(a.refuse_why, REFUSE_BAD_REQUEST);
    admission_release(&a);
    assert_int_equal(admission_gate_count(g), 0);
    admission_gate_free(g);
    config_free(&cfg);
}

static void origin_checks(void **state)
{
    static const char *const args[] = {"--allowed-origins", "https://app.example.com", NULL};
    struct config cfg;
    struct admission_gate *g = admission_gate_new();
    struct admission_request rq = request("10.0.0.1");
    struct admission a;

    (void)state;
    load(&cfg, args);
    rq.origin = present("https://APP.example.com");
    admission_decide(&cfg, g, "/ws", &rq, &a);
    assert_int_equal(a.verdict, ADMIT);
    admission_release(&a);
    rq.origin = present("https://evil.example.com");
    admission_decide(&cfg, g, "/ws", &rq, &a);
    assert_int_equal(a.verdict, ADMIT_THEN_CLOSE);
    assert_int_equal(a.close_code, 1008);
    assert_string_equal(a.close_reason, "origin not allowed");
    assert_int_equal(a.close_why, CLOSE_ORIGIN);
    admission_release(&a);
    rq.origin = present(""); /* present but empty is not an allowed origin */
    admission_decide(&cfg, g, "/ws", &rq, &a);
    assert_int_equal(a.verdict, ADMIT_THEN_CLOSE);
    admission_release(&a);
    rq.origin = too_long; /* cut short, it would have been absent: refused */
    admission_decide(&cfg, g, "/ws", &rq, &a);
    assert_int_equal(a.verdict, ADMIT_THEN_CLOSE);
    assert_string_equal(a.close_reason, "origin not allowed");
    admission_release(&a);
    rq.origin = absent; /* not a browser */
    admission_decide(&cfg, g, "/ws", &rq, &a);
    assert_int_equal(a.verdict, ADMIT);
    admission_release(&a);
    admission_gate_free(g);
    config_free(&cfg);
}

static void token_checks(void **state)
{
    static const char *channels[] = {"orders"};
    const char *args[] = {"--jwt-secret-file", secret_path, NULL};
    struct config cfg;
    struct admission_gate *g = admission_gate_new();
    struct admission_request rq = request("10.0.0.1");
    struct admission a;
    char *good = jwt_sign(SECRET, 32, "alice", NOW_S + 60, channels, 1);
    char *expired = jwt_sign(SECRET, 32, "alice", NOW_S - 1, channels, 1);
    char bearer[2048];

    (void)state;
    load(&cfg, args);
    admission_decide(&cfg, g, "/ws", &rq, &a); /* none */
    assert_int_equal(a.verdict, ADMIT_THEN_CLOSE);
    assert_string_equal(a.close_reason, "unauthorized");
    assert_int_equal(a.close_why, CLOSE_AUTH);
    assert_null(a.claims);
    admission_release(&a);

    rq.query_token = present(good);
    admission_decide(&cfg, g, "/ws", &rq, &a);
    assert_int_equal(a.verdict, ADMIT);
    assert_non_null(a.claims);
    assert_string_equal(a.claims->sub, "alice");
    admission_release(&a);
    assert_null(a.claims);

    rq.query_token = present(expired);
    admission_decide(&cfg, g, "/ws", &rq, &a);
    assert_int_equal(a.verdict, ADMIT_THEN_CLOSE);
    admission_release(&a);

    /* the header when the query has none; too long in either place is a refusal */
    snprintf(bearer, sizeof(bearer), "Bearer %s", good);
    rq.query_token = absent;
    rq.authorization = present(bearer);
    admission_decide(&cfg, g, "/ws", &rq, &a);
    assert_int_equal(a.verdict, ADMIT);
    admission_release(&a);
    rq.authorization = too_long;
    admission_decide(&cfg, g, "/ws", &rq, &a);
    assert_int_equal(a.verdict, ADMIT_THEN_CLOSE);
    admission_release(&a);
    rq.authorization = present(bearer);
    rq.query_token = too_long; /* never falls back to the header */
    admission_decide(&cfg, g, "/ws", &rq, &a);
    assert_int_equal(a.verdict, ADMIT_THEN_CLOSE);
    admission_release(&a);

    assert_int_equal(admission_gate_count(g), 0);
    free(good);
    free(expired);
    admission_gate_free(g);
    config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(open_hub_admits_and_releases),
        cmocka_unit_test(wrong_path_and_draining_are_refused),
        cmocka_unit_test(caps_hold_and_free_their_slots),
        cmocka_unit_test(ipv6_counts_by_its_64),
        cmocka_unit_test(forwarded_for_through_trusted_proxies),
        cmocka_unit_test(origin_checks),
        cmocka_unit_test(token_checks),
    };
    FILE *f;
    int fd, rc;

    assert_int_equal(keyhash_init(), 0);
    snprintf(secret_path, sizeof(secret_path), "/tmp/herald-test-secret-XXXXXX");
    fd = mkstemp(secret_path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fputs(SECRET, f);
    fclose(f);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(secret_path);
    return rc;
}
