/* redis_url.h -- parsing redis://[[user]:password@]host[:port][/db]. Pure. */
#ifndef HERALD_REDIS_URL_H
#define HERALD_REDIS_URL_H

#include <stddef.h>

struct redis_url {
    char host[256];
    int port;           /* 6379 when absent */
    char user[128];     /* "" when absent */
    char password[256]; /* "" when absent; has_password tells an empty one apart */
    int has_password;
    int db; /* 0 when absent */
};

/* Returns 0, or -1 with err naming what is wrong. Percent-escapes in user and password are
 * decoded. */
int redis_url_parse(const char *url, struct redis_url *out, char *err, size_t errlen);

#endif
