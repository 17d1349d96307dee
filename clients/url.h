/* url.h -- the URLs the client programs take (--url, --ws, --api): one parser for all. */
#ifndef HERALD_CLIENT_URL_H
#define HERALD_CLIENT_URL_H

struct client_url {
    char *scheme;    /* as matched: "http", "ws", "wss", ... */
    char *host;      /* to connect to; an IPv6 literal without its brackets */
    char *authority; /* the Host header: host[:port] as written */
    char *path;      /* request target: path and query, never a fragment; at least "/" */
    char *display;   /* the URL without its query (which may hold a token), for messages */
    int port;        /* given, or the scheme's default (80, or 443 for https and wss) */
    int is_tls;      /* https or wss */
};

/* Parses SCHEME://HOST[:PORT][/PATH][?QUERY][#FRAGMENT] for one of schemes (a NULL-terminated
 * list such as {"ws", "wss", NULL}). Returns 0, or -1 with a static message in *err. u owns
 * its strings afterwards; client_url_free() releases them, also after a failure. */
int client_url_parse(const char *url, const char *const *schemes, struct client_url *u,
                     const char **err);
void client_url_free(struct client_url *u);

#endif
