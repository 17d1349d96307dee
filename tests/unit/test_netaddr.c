/* test_netaddr.c -- hub/common/netaddr.c: canonical text from text and from a socket's
 * address (the accept path's), both as inet_ntop writes it. */
#include "common/netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>

static void normalize(void **state)
{
    static const struct {
        const char *in, *out; /* out NULL: not an address */
    } cases[] = {
        {"10.0.0.1", "10.0.0.1"},
        {"0.0.0.0", "0.0.0.0"},
        {"255.255.255.255", "255.255.255.255"},
        {" 192.168.100.9\t", "192.168.100.9"},
        {"::ffff:10.0.0.1", "10.0.0.1"},
        {"::FFFF:127.0.0.10", "127.0.0.10"},
        {"2001:DB8:0:0:0:0:0:1", "2001:db8::1"},
        {"::1", "::1"},
        {"::", "::"},
        {"010.0.0.1", NULL},
        {"256.0.0.1", NULL},
        {"1.2.3", NULL},
        {"example.org", NULL},
        {"", NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[NETADDR_STRLEN];
        int rc = netaddr_normalize(cases[i].in, strlen(cases[i].in), out);

        if (!cases[i].out) {
            assert_int_equal(rc, -1);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_string_equal(out, cases[i].out);
    }
}

/* Every IPv4 address shape the formatter meets: one to three digits in each place. */
static void ipv4_as_inet_ntop_writes_it(void **state)
{
    static const uint8_t parts[] = {0, 1, 9, 10, 99, 100, 199, 200, 255};

    (void)state;
    for (size_t a = 0; a < sizeof(parts); a++) {
        for (size_t b = 0; b < sizeof(parts); b++) {
            struct sockaddr_in sin = {.sin_family = AF_INET};
            uint8_t bytes[4] = {parts[a], parts[b], parts[(a + b) % sizeof(parts)], parts[b]};
            char want[NETADDR_STRLEN], got[NETADDR_STRLEN];

            memcpy(&sin.sin_addr, bytes, 4);
            assert_non_null(inet_ntop(AF_INET, bytes, want, sizeof(want)));
            assert_int_equal(netaddr_from_sockaddr((struct sockaddr *)&sin, got), 0);
            assert_string_equal(got, want);
            assert_int_equal(netaddr_normalize(want, strlen(want), got), 0);
            assert_string_equal(got, want);
        }
    }
}

static void from_sockaddr(void **state)
{
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    char out[NETADDR_STRLEN];

    (void)state;
    assert_int_equal(inet_pton(AF_INET6, "::ffff:127.0.0.3", &sin6.sin6_addr), 1);
    assert_int_equal(netaddr_from_sockaddr((struct sockaddr *)&sin6, out), 0);
    assert_string_equal(out, "127.0.0.3");
    assert_int_equal(inet_pton(AF_INET6, "2001:db8:0::0:7", &sin6.sin6_addr), 1);
    assert_int_equal(netaddr_from_sockaddr((struct sockaddr *)&sin6, out), 0);
    assert_string_equal(out, "2001:db8::7");
    assert_int_equal(netaddr_from_sockaddr((struct sockaddr *)&sun, out), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(normalize),
        cmocka_unit_test(ipv4_as_inet_ntop_writes_it),
        cmocka_unit_test(from_sockaddr),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
