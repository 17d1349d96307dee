/* test_redis_wire.c -- hub/broker/redis_wire.c: what hubs write on the shared Redis channel
 * and how strictly they read it back. Heartbeats round-trip every 64-bit nonce; event records
 * that are not what a hub writes are dropped and counted, the others delivered as they are. */
#include "broker/redis_wire.h"
#include "common/message.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void heartbeat_round_trip(void **state)
{
    static const uint64_t nonces[] = {0, 1, 9999999999999999999u, UINT64_MAX};
    char buf[256];

    (void)state;
    for (size_t i = 0; i < sizeof(nonces) / sizeof(nonces[0]); i++) {
        struct redis_wire_heartbeat out = {.instance = "web-1",
                                           .instance_len = 5,
                                           .nonce = nonces[i],
                                           .started_ms = 1764150000000,
                                           .seq = 42,
                                           .sent_ms = 1764150001234},
                                    in;
        size_t len = redis_wire_heartbeat(buf, sizeof(buf), &out), bad = 0;

        assert_true(len > 0);
        assert_int_equal(redis_wire_decode(buf, len, 4096, NULL, NULL, &in, &bad),
                         REDIS_WIRE_HEARTBEAT);
        assert_int_equal(in.nonce, nonces[i]);
        assert_int_equal(in.seq, 42);
        assert_int_equal(in.started_ms, 1764150000000);
        assert_int_equal(in.sent_ms, 1764150001234);
        assert_int_equal(in.instance_len, 5);
        assert_memory_equal(in.instance, "web-1", 5);
        assert_true(in.has_nonce);
    }
}

static void heartbeat_malformed(void **state)
{
    static const char *const bad[] = {
        "H2B\nweb-1\t18446744073709551616\t1\t2\t3\n", /* 2^64 */
        "H2B\nweb-1\t1\t2\t3\n",                       /* a field short */
        "H2B\nweb-1\t1\t2\t3\t4\t5\n",                 /* a field more */
        "H2B\nweb\n-1\t1\t2\t3\t4\n",                  /* an instance across lines */
        "H2B\n\t1\t2\t3\t4\n",                         /* no instance */
        "H2B\nweb-1\t1\t2\t3\t4",                      /* no newline */
        "H2B\nweb-1\t1\tx\t3\t4\n",                    /* not a number */
    };
    struct redis_wire_heartbeat hb;
    size_t n = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(redis_wire_decode(bad[i], strlen(bad[i]), 4096, NULL, NULL, &hb, &n),
                         REDIS_WIRE_UNKNOWN);
    /* version 1: no nonce */
    assert_int_equal(redis_wire_decode("H1B\nold\t7\t9\n", 12, 4096, NULL, NULL, &hb, &n),
                     REDIS_WIRE_HEARTBEAT);
    assert_false(hb.has_nonce);
    assert_int_equal(hb.seq, 7);
}

/* Version 3 (a hub with Redis shards) carries which shard of how many, and the list's digest;
 * version 2 says nothing of shards. */
static void heartbeat_with_shards(void **state)
{
    struct redis_wire_heartbeat out = {.instance = "web-1",
                                       .instance_len = 5,
                                       .nonce = 7,
                                       .started_ms = 1,
                                       .seq = 2,
                                       .sent_ms = 3,
                                       .shard = 2,
                                       .shards = 3,
                                       .digest = UINT64_C(0x0123456789abcdef)},
                                in;
    static const char *const bad[] = {
        "H3B\nweb-1\t1\t2\t3\t4\t3\t3\t0123456789abcdef\n",    /* shard past shards */
        "H3B\nweb-1\t1\t2\t3\t4\t0\t0\t0123456789abcdef\n",    /* no shards */
        "H3B\nweb-1\t1\t2\t3\t4\t0\t2\t0123456789abcde\n",     /* a digit short */
        "H3B\nweb-1\t1\t2\t3\t4\t0\t2\t0123456789ABCDEF\n",    /* upper case */
        "H3B\nweb-1\t1\t2\t3\t4\t0\t2\t0123456789abcdef\tx\n", /* a field more */
        "H3B\nweb-1\t1\t2\t3\t4\t0\t2\n",                      /* no digest */
    };
    char buf[256];
    size_t len = redis_wire_heartbeat(buf, sizeof(buf), &out), n = 0;

    (void)state;
    assert_string_equal(buf, "H3B\nweb-1\t7\t1\t2\t3\t2\t3\t0123456789abcdef\n");
    assert_int_equal(redis_wire_decode(buf, len, 4096, NULL, NULL, &in, &n), REDIS_WIRE_HEARTBEAT);
    assert_int_equal(in.shard, 2);
    assert_int_equal(in.shards, 3);
    assert_true(in.digest == UINT64_C(0x0123456789abcdef));
    assert_int_equal(in.nonce, 7);
    assert_true(in.has_nonce);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(redis_wire_decode(bad[i], strlen(bad[i]), 4096, NULL, NULL, &in, &n),
                         REDIS_WIRE_UNKNOWN);
    /* one Redis: version 2, as before */
    out.shards = 0;
    len = redis_wire_heartbeat(buf, sizeof(buf), &out);
    assert_memory_equal(buf, "H2B\n", 4);
    assert_int_equal(redis_wire_decode(buf, len, 4096, NULL, NULL, &in, &n), REDIS_WIRE_HEARTBEAT);
    assert_int_equal(in.shards, 0);
}

struct seen {
    char channels[16][32];
    size_t n;
};

static void on_record(const struct redis_wire_record *rec, void *arg)
{
    struct seen *s = arg;

    assert_true(s->n < 16);
    memcpy(s->channels[s->n], rec->channel, rec->channel_len);
    s->channels[s->n++][rec->channel_len] = '\0';
}

/* A record of channel ch, epoch e0a1, seq 7, with the frame's members after channel. */
#define EV(ch, rest) ch "\te0a1\t7\t{\"type\":\"event\",\"channel\":\"" ch "\"," rest "}\n"

static void records_are_checked_like_a_publish(void **state)
{
    static const char payload[] = "H2E\n" EV("ok1", "\"id\":\"a\",\"seq\":7,\"ts\":1,\"data\":1")
        /* the hub's own channel */
        EV("$stats", "\"id\":\"b\",\"seq\":7,\"ts\":1,\"data\":{}")
        /* not an event frame */
        "ok2\te0a1\t7\t{\"type\":\"welcome\",\"connection\":\"c-1\"}\n"
        /* another channel in the frame than in the record */
        "ok3\te0a1\t7\t{\"type\":\"event\",\"channel\":\"ok4\",\"id\":\"c\",\"seq\":7,\"ts\":1,"
        "\"data\":1}\n"
        /* no data */
        EV("ok5", "\"id\":\"d\",\"seq\":7,\"ts\":1")
        /* broken JSON, and invalid UTF-8 */
        EV("ok6", "\"id\":\"e\",\"ts\":1,\"data\":[1,}")
            EV("ok7", "\"id\":\"\xff\xfe\",\"ts\":1,\"data\":1")
        /* an invalid channel name */
        EV("a b", "\"id\":\"f\",\"seq\":7,\"ts\":1,\"data\":1")
        /* a frame whose seq is not the record's; a record with no seq; a bad epoch */
        EV("ok9", "\"id\":\"h\",\"seq\":8,\"ts\":1,\"data\":1") "ok10\te0a1\t\t{\"type\":\"event\","
                                                                "\"channel\":\"ok10\",\"data\":1}\n"
                                                                "ok11\te-1\t7\t{\"type\":\"event\","
                                                                "\"channel\":\"ok11\",\"seq\":7,"
                                                                "\"data\":1}\n"
        /* good again */
        EV("ok8", "\"event\":\"made\",\"id\":\"g\",\"seq\":7,\"ts\":2,\"data\":{\"k\":[1,2]}");
    struct seen s = {0};
    struct redis_wire_heartbeat hb;
    size_t bad = 0;

    (void)state;
    assert_int_equal(
        redis_wire_decode(payload, sizeof(payload) - 1, 4096, on_record, &s, &hb, &bad),
        REDIS_WIRE_EVENTS);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.channels[0], "ok1");
    assert_string_equal(s.channels[1], "ok8");
    assert_int_equal(bad, 10);
    /* version 1 events carry no seq: not delivered */
    assert_int_equal(redis_wire_decode("H1E\nok\t{}\n", 10, 4096, on_record, &s, &hb, &bad),
                     REDIS_WIRE_UNKNOWN);
}

static void records_over_the_size_are_dropped(void **state)
{
    char payload[600], pad[400];
    struct seen s = {0};
    struct redis_wire_heartbeat hb;
    size_t bad = 0, len;

    (void)state;
    memset(pad, 'z', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    len = (size_t)snprintf(payload, sizeof(payload),
                           "H2E\nbig\te1\t3\t{\"type\":\"event\",\"channel\":\"big\",\"id\":\"a\","
                           "\"seq\":3,\"ts\":1,\"data\":\"%s\"}\n",
                           pad);
    assert_int_equal(redis_wire_decode(payload, len, 300, on_record, &s, &hb, &bad),
                     REDIS_WIRE_EVENTS);
    assert_int_equal(s.n, 0);
    assert_int_equal(bad, 1);
    assert_int_equal(redis_wire_decode(payload, len, 1000, on_record, &s, &hb, &bad),
                     REDIS_WIRE_EVENTS);
    assert_int_equal(s.n, 1);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(heartbeat_round_trip),
        cmocka_unit_test(heartbeat_malformed),
        cmocka_unit_test(heartbeat_with_shards),
        cmocka_unit_test(records_are_checked_like_a_publish),
        cmocka_unit_test(records_over_the_size_are_dropped),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
