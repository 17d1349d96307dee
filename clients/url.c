/* url.c -- SCHEME://HOST[:PORT][/PATH][?QUERY] for herald-sub, herald-pub and herald-bench.
 * No user information (tokens and keys have their own options), IPv6 literals in brackets,
 * ports 1 to 65535, the fragment never sent. Pure apart from allocation. */
#include "url.h"

#include "client_util.h"

#include <stdlib.h>
#include <string.h>

void client_url_free(struct client_url *u)
{
    free(u->scheme);
    free(u->host);
    free(u->authority);
    free(u->path);
    free(u->display);
    memset(u, 0, sizeof(*u));
}

int client_url_parse(const char *url, const char *const *schemes, struct client_url *u,
                     const char **err)
{
    const char *rest = NULL, *auth_end, *host, *host_end, *port_s = NULL, *q;
    size_t scheme_len = 0;

    memset(u, 0, sizeof(*u));
    for (size_t i = 0; schemes[i]; i++) {
        size_t n = strlen(schemes[i]);

        if (!strncmp(url, schemes[i], n) && !strncmp(url + n, "://", 3)) {
            scheme_len = n;
            rest = url + n + 3;
            break;
        }
    }
    if (!rest) {
        *err = "unsupported scheme";
        return -1;
    }
    u->scheme = client_xprintf("%.*s", (int)scheme_len, url);
    u->is_tls = !strcmp(u->scheme, "https") || !strcmp(u->scheme, "wss");
    u->port = u->is_tls ? 443 : 80;
    auth_end = rest + strcspn(rest, "/?#");
    if (memchr(rest, '@', (size_t)(auth_end - rest))) {
        *err = "user information is not supported";
        return -1;
    }
    if (*rest == '[') { /* [IPv6]:port */
        host = rest + 1;
        host_end = memchr(host, ']', (size_t)(auth_end - host));
        if (!host_end) {
            *err = "unterminated [ in host";
            return -1;
        }
        if (host_end + 1 < auth_end) {
            if (host_end[1] != ':') {
                *err = "junk after ]";
                return -1;
            }
            port_s = host_end + 2;
        }
    } else {
        host = rest;
        host_end = memchr(rest, ':', (size_t)(auth_end - rest));
        if (host_end)
            port_s = host_end + 1;
        else
            host_end = auth_end;
    }
    if (host_end == host) {
        *err = "no host";
        return -1;
    }
    if (port_s) {
        long port = 0;

        if (port_s == auth_end) {
            *err = "empty port";
            return -1;
        }
        for (const char *p = port_s; p < auth_end; p++) {
            if (*p < '0' || *p > '9' || (port = port * 10 + (*p - '0')) > 65535) {
                *err = "bad port";
                return -1;
            }
        }
        if (port == 0) {
            *err = "bad port";
            return -1;
        }
        u->port = (int)port;
    }
    u->host = client_xprintf("%.*s", (int)(host_end - host), host);
    u->authority = client_xprintf("%.*s", (int)(auth_end - rest), rest);
    q = auth_end + strcspn(auth_end, "#"); /* a fragment is never sent */
    if (*auth_end == '/')
        u->path = client_xprintf("%.*s", (int)(q - auth_end), auth_end);
    else /* "scheme://host?x" or "scheme://host": the path is "/" */
        u->path = client_xprintf("/%.*s", (int)(q - auth_end), auth_end);
    if (strpbrk(u->path, " \r\n") || strpbrk(u->authority, " \r\n")) {
        *err = "spaces or line breaks in the URL";
        return -1;
    }
    u->display =
        client_xprintf("%s://%s%.*s", u->scheme, u->authority, (int)strcspn(u->path, "?"), u->path);
    return 0;
}
