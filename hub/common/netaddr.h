/* netaddr.h -- client addresses: normalising, trusted proxies, X-Forwarded-For, and the key
 * that per-address limits count under (an IPv6 client counts by its /64). Pure; any thread. */
#ifndef HERALD_NETADDR_H
#define HERALD_NETADDR_H

#include <stdbool.h>
#include <stddef.h>

#define NETADDR_STRLEN 46 /* INET6_ADDRSTRLEN */

/* Writes the canonical text of address s into out: IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes
 * a.b.c.d, IPv6 is compressed. Returns 0, or -1 when s is not an address. */
int netaddr_normalize(const char *s, size_t len, char out[NETADDR_STRLEN]);

struct sockaddr;
/* The canonical text of a socket's address (AF_INET or AF_INET6), as netaddr_normalize writes
 * it, without a round trip through text. Returns 0, or -1 for another family. */
int netaddr_from_sockaddr(const struct sockaddr *sa, char out[NETADDR_STRLEN]);

struct netaddr_list;
/* Parses a comma list of addresses and CIDR blocks ("10.0.0.0/8,::1"). NULL with err set on a
 * bad entry. An empty or NULL list gives an empty list. */
struct netaddr_list *netaddr_list_parse(const char *list, char *err, size_t errlen);
void netaddr_list_free(struct netaddr_list *l);
bool netaddr_list_contains(const struct netaddr_list *l, const char *addr);

/* The client of a request that came from peer (normalised) with X-Forwarded-For xff (may be
 * NULL): when peer is trusted, the right-most address of xff that is not a trusted proxy;
 * otherwise peer. Writes out; returns 0, or -1 when a trusted peer sent an unusable header
 * (out is then peer). */
int netaddr_client(const struct netaddr_list *trusted, const char *peer, const char *xff,
                   char out[NETADDR_STRLEN]);

/* The name per-address limits count addr under: an IPv4 address as it is; an IPv6 address
 * by its first v6_prefix bits (1..128), as "2001:db8:1:2::/64", since one host commonly holds
 * a whole /64. addr must be normalised. Returns 0, or -1 when addr is not an address (out is
 * then addr). */
#define NETADDR_KEYLEN (NETADDR_STRLEN + 5)
int netaddr_limit_key(const char *addr, unsigned v6_prefix, char out[NETADDR_KEYLEN]);

#endif
