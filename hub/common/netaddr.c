/* netaddr.c -- addresses as the admission checks see them.
 * Everything is compared in canonical text form (inet_pton then inet_ntop, IPv4-mapped IPv6
 * folded to IPv4), so "::ffff:10.0.0.1" from lws and "10.0.0.1" in a config file agree.
 * Trusted proxies are exact addresses or CIDR blocks. */
#include "netaddr.h"

#include "fmt.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cidr {
    int family;
    unsigned char addr[16];
    unsigned bits;
};

struct netaddr_list {
    struct cidr *v;
    size_t n;
};

/* An IPv6 address in addr: IPv4-mapped (::ffff:a.b.c.d) is folded to IPv4 in place. Returns
 * the family it is then. */
static int fold_mapped(unsigned char addr[16])
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (memcmp(addr, mapped, 12))
        return AF_INET6;
    memmove(addr, addr + 12, 4);
    memset(addr + 4, 0, 12);
    return AF_INET;
}

/* Parses text into family + 16 bytes, IPv4-mapped folded to IPv4. */
static int parse(const char *s, size_t len, int *family, unsigned char addr[16])
{
    char buf[NETADDR_STRLEN + 2];

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, buf, addr) == 1) {
        *family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, addr) == 1) {
        *family = fold_mapped(addr);
        return 0;
    }
    return -1;
}

/* The text of family + addr. IPv4 is written here (glibc's inet_ntop formats it with sprintf,
 * twice per connection on the accept path), in inet_ntop's form. */
static int format(int family, const unsigned char addr[16], char out[NETADDR_STRLEN])
{
    char *p = out;

    if (family != AF_INET)
        return inet_ntop(family, addr, out, NETADDR_STRLEN) ? 0 : -1;
    for (int i = 0; i < 4; i++) {
        if (i)
            *p++ = '.';
        p = fmt_dec(p, addr[i]);
    }
    *p = '\0';
    return 0;
}

int netaddr_from_sockaddr(const struct sockaddr *sa, char out[NETADDR_STRLEN])
{
    unsigned char addr[16] = {0};

    if (sa->sa_family == AF_INET) {
        memcpy(addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return format(AF_INET, addr, out);
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(addr, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return format(fold_mapped(addr), addr, out);
    }
    return -1;
}

int netaddr_normalize(const char *s, size_t len, char out[NETADDR_STRLEN])
{
    int family;
    unsigned char addr[16];

    while (len && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (parse(s, len, &family, addr) < 0)
        return -1;
    return format(family, addr, out);
}

struct netaddr_list *netaddr_list_parse(const char *list, char *err, size_t errlen)
{
    struct netaddr_list *l = xcalloc(1, sizeof(*l));
    const char *p = list;

    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *slash = memchr(p, '/', len);
        struct cidr c;
        unsigned long bits;

        if (len) {
            if (parse(p, slash ? (size_t)(slash - p) : len, &c.family, c.addr) < 0)
                goto bad;
            bits = c.family == AF_INET ? 32 : 128;
            if (slash) {
                char *e;

                bits = strtoul(slash + 1, &e, 10);
                if (e != p + len || slash + 1 == e || bits > (c.family == AF_INET ? 32u : 128u))
                    goto bad;
            }
            c.bits = (unsigned)bits;
            l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
            l->v[l->n++] = c;
        }
        p = end ? end + 1 : NULL;
        continue;
    bad:
        snprintf(err, errlen, "'%.*s' is not an address or CIDR block", (int)len, p);
        netaddr_list_free(l);
        return NULL;
    }
    return l;
}

void netaddr_list_free(struct netaddr_list *l)
{
    if (!l)
        return;
    free(l->v);
    free(l);
}

static bool cidr_match(const struct cidr *c, int family, const unsigned char *addr)
{
    unsigned full = c->bits / 8, rest = c->bits % 8;

    if (c->family != family || memcmp(c->addr, addr, full) != 0)
        return false;
    if (rest) {
        unsigned char mask = (unsigned char)(0xff << (8 - rest));

        return (c->addr[full] & mask) == (addr[full] & mask);
    }
    return true;
}

bool netaddr_list_contains(const struct netaddr_list *l, const char *addr)
{
    int family;
    unsigned char a[16];

    if (!l || parse(addr, strlen(addr), &family, a) < 0)
        return false;
    for (size_t i = 0; i < l->n; i++)
        if (cidr_match(&l->v[i], family, a))
            return true;
    return false;
}

int netaddr_client(const struct netaddr_list *trusted, const char *peer, const char *xff,
                   char out[NETADDR_STRLEN])
{
    const char *end;

    snprintf(out, NETADDR_STRLEN, "%s", peer);
    if (!xff || !netaddr_list_contains(trusted, peer))
        return 0;
    end = xff + strlen(xff);
    while (end > xff) {
        const char *start = end;
        char cand[NETADDR_STRLEN];

        while (start > xff && start[-1] != ',')
            start--;
        if (netaddr_normalize(start, (size_t)(end - start), cand) < 0)
            return -1; /* garbage from behind the proxy: keep the peer */
        snprintf(out, NETADDR_STRLEN, "%s", cand);
        if (!netaddr_list_contains(trusted, cand))
            return 0;
        end = start > xff ? start - 1 : start;
    }
    return 0;
}

int netaddr_limit_key(const char *addr, unsigned v6_prefix, char out[NETADDR_KEYLEN])
{
    int family;
    unsigned char a[16];
    char text[NETADDR_STRLEN];

    snprintf(out, NETADDR_KEYLEN, "%s", addr);
    if (parse(addr, strlen(addr), &family, a) < 0)
        return -1;
    if (family == AF_INET || v6_prefix >= 128)
        return 0;
    if (v6_prefix < 1)
        v6_prefix = 1;
    for (unsigned bit = v6_prefix; bit < 128; bit++)
        a[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
    if (!inet_ntop(AF_INET6, a, text, sizeof(text)))
        return -1;
    snprintf(out, NETADDR_KEYLEN, "%s/%u", text, v6_prefix);
    return 0;
}
