/* config.c -- the option table and the four sources that fill struct config.
 * One table row per option gives its name (flag --name, variable HERALD_NAME, config file
 * key "name"), its type, its field, its default and bounds, and its --help line. Sources
 * apply in order default < file < environment < flag, each value parsed and checked by the
 * same code, so an error names the option and where the bad value came from. Start-up
 * only: nothing here is thread-safe, and nothing needs to be. */
#include "config.h"

#include "apikeys.h"
#include "errbuf.h"
#include "herald_version.h"
#include "jwt.h"
#include "log.h"
#include "message.h"
#include "netaddr.h"
#include "redis_url.h"
#include "shard.h"
#include "tls.h"
#include "xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* OPT_LIST: a string holding a comma list; given several times on the command line (or as a
 * JSON array in the file), the entries join. */
enum opt_type { OPT_ADDR, OPT_UINT, OPT_STRING, OPT_ENUM, OPT_LIST };

struct option_spec {
    const char *name;
    enum opt_type type;
    size_t offset;
    const char *def; /* NULL: unset */
    unsigned long min, max;
    const char *const *choices; /* OPT_ENUM: index stored as int */
    const char *help;
};

static const char *const level_choices[] = {"debug", "info", "warn", "error", NULL};
static const char *const format_choices[] = {"text", "json", NULL};
static const char *const onoff_choices[] = {"off", "on", NULL};

#define F(field) offsetof(struct config, field)
static const struct option_spec options[] = {
    {"listen", OPT_ADDR, F(listen), "0.0.0.0:8080", 0, 0, NULL,
     "HOST:PORT of the WebSocket endpoint /ws, server-sent events /sse and the dashboard"},
    {"tls-cert", OPT_STRING, F(tls_cert), NULL, 0, 0, NULL,
     "PEM certificate and its intermediates: --listen speaks TLS (https, wss); needs "
     "--tls-key; both re-read on SIGHUP"},
    {"tls-key", OPT_STRING, F(tls_key), NULL, 0, 0, NULL,
     "PEM private key of --tls-cert (no passphrase)"},
    {"api-listen", OPT_ADDR, F(api_listen), "127.0.0.1:8081", 0, 0, NULL,
     "HOST:PORT of the HTTP API (publish, health, ready, stats, metrics)"},
    {"api-max-connections", OPT_UINT, F(api_max_connections), "1024", 1, 1000000, NULL,
     "HTTP API connections at once; past it a new one gets 503 and is closed"},
    {"api-request-seconds", OPT_UINT, F(api_request_seconds), "10", 1, 3600, NULL,
     "an API request must arrive whole within this (else 408); an answer be taken as fast"},
    {"redis-url", OPT_LIST, F(redis_url), NULL, 0, 0, NULL,
     "redis://[[user]:password@]host[:port][/db]: share events with other hubs (default: alone); "
     "several (repeated, or a comma list): Redis shards, each channel on one, every hub given the "
     "same list in the same order"},
    {"redis-channel", OPT_STRING, F(redis_channel), "herald:events", 0, 0, NULL,
     "the Redis pub/sub channel the hubs share"},
    {"resolv-conf", OPT_STRING, F(resolv_conf), "/etc/resolv.conf", 0, 0, NULL,
     "resolv.conf-style file naming the DNS servers that resolve the --redis-url host"},
    {"web-root", OPT_STRING, F(web_root), NULL, 0, 0, NULL,
     "directory of the dashboard files (default: the installed page, or the build tree's)"},
    {"max-message-bytes", OPT_UINT, F(max_message_bytes), "65536", 64, 16u << 20, NULL,
     "largest event (publish body) or client frame, in bytes"},
    {"client-rate", OPT_UINT, F(client_rate), "10", 1, 100000, NULL,
     "frames per second each connection may send (token bucket rate)"},
    {"client-burst", OPT_UINT, F(client_burst), "20", 1, 100000, NULL,
     "frames a connection may send at once (token bucket size)"},
    {"send-queue-bytes", OPT_UINT, F(send_queue_bytes), "1048576", 1024, 1u << 30, NULL,
     "bytes queued for one connection past which, reading more slowly than the others, it is "
     "closed as a slow consumer (1013); past 4 times this in any case"},
    {"max-subscriptions", OPT_UINT, F(max_subscriptions), "100", 1, 100000, NULL,
     "channels one connection may hold"},
    {"heartbeat", OPT_UINT, F(heartbeat), "25", 1, 3600, NULL,
     "seconds between pings; a peer silent for twice that is dropped"},
    {"delivery-threads", OPT_UINT, F(delivery_threads), "0", 0, 64, NULL,
     "delivery planes sharing --listen (0: one per core)"},
    {"drain-seconds", OPT_UINT, F(drain_seconds), "10", 0, 3600, NULL,
     "how long a shutdown may take to close its clients"},
    {"instance-id", OPT_STRING, F(instance_id), NULL, 0, 0, NULL,
     "name shown in logs, metrics and welcome (default: hostname-pid)"},
    {"api-key", OPT_STRING, F(api_key), NULL, 0, 0, NULL,
     "a key POST /publish must present as Authorization: Bearer KEY"},
    {"api-keys-file", OPT_STRING, F(api_keys_file), NULL, 0, 0, NULL,
     "file of such keys, one a line"},
    {"jwt-secret-file", OPT_STRING, F(jwt_secret_file), NULL, 0, 0, NULL,
     "HS256 secret (32+ bytes): /ws then needs a token granting its channels"},
    {"allowed-origins", OPT_STRING, F(allowed_origins), NULL, 0, 0, NULL,
     "comma list of Origins accepted on /ws (default: any)"},
    {"max-connections", OPT_UINT, F(max_connections), "0", 0, 100000000, NULL,
     "WebSocket connections per instance; over it the handshake gets 503 (0: no limit)"},
    {"max-connections-per-ip", OPT_UINT, F(max_connections_per_ip), "0", 0, 100000000, NULL,
     "WebSocket connections per client address per instance (0: no limit)"},
    {"ipv6-prefix", OPT_UINT, F(ipv6_prefix), "64", 32, 128, NULL,
     "per-address limits count an IPv6 client by this many leading bits (one host holds a /64)"},
    {"max-channels", OPT_UINT, F(max_channels), "100000", 0, 100000000, NULL,
     "distinct channels this instance holds; a subscribe past it is refused (0: no limit)"},
    {"trusted-proxies", OPT_STRING, F(trusted_proxies), NULL, 0, 0, NULL,
     "addresses or CIDR blocks whose X-Forwarded-For is believed"},
    {"publish-rate", OPT_UINT, F(publish_rate), "0", 0, 10000000, NULL,
     "publishes per second per API key (or per IP without keys), cluster-wide with Redis"},
    {"publish-rate-identities", OPT_UINT, F(publish_rate_identities), "65536", 1, 10000000, NULL,
     "publishers (keys or addresses) the in-process --publish-rate remembers; past it the least "
     "recently seen is forgotten"},
    {"history-size", OPT_UINT, F(history_size), "100", 0, 100000, NULL,
     "events kept per channel for resume and last value (0: none kept; seq is still given)"},
    {"history-ttl", OPT_UINT, F(history_ttl), "300", 1, 30 * 86400, NULL,
     "seconds a kept event stays"},
    {"history-memory", OPT_UINT, F(history_memory), "67108864", 4096, 4294967295u, NULL,
     "in-process broker: bytes all kept events may take; past it the oldest go first"},
    {"idempotency-ttl", OPT_UINT, F(idempotency_ttl), "300", 1, 86400, NULL,
     "seconds an Idempotency-Key is remembered: a repeat within it is not published again"},
    {"max-backlog-bytes", OPT_UINT, F(max_backlog_bytes), "67108864", 65536, 4294967295u, NULL,
     "bytes taken for delivery and not yet written, instance-wide (every plane's mailbox and "
     "connections' queues, each frame counted once per connection), past which POST /publish "
     "answers 503 overloaded with Retry-After"},
    {"io-uring", OPT_ENUM, F(io_uring), "on", 0, 0, onoff_choices,
     "on: each delivery plane sends a loop turn's frames through io_uring, thousands per system "
     "call (plain writes where the kernel or a seccomp filter refuses it, and with --tls-cert); "
     "off: plain writes"},
    {"log-level", OPT_ENUM, F(log_level), "info", 0, 0, level_choices,
     "debug, info, warn or error"},
    {"log-format", OPT_ENUM, F(log_format), "text", 0, 0, format_choices, "text or json"},
};
#undef F

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

static const struct option_spec *find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strlen(options[i].name) == len && !memcmp(options[i].name, name, len))
            return &options[i];
    return NULL;
}

static int parse_uint(const char *s, unsigned long *out)
{
    char *end;

    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    *out = strtoul(s, &end, 10);
    if (errno || *end)
        return -1;
    return 0;
}

/* "HOST:PORT" or "[V6]:PORT". Returns 0 or -1. */
static int parse_addr(const char *s, struct config_addr *a)
{
    const char *colon;
    size_t hlen;
    unsigned long port;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        if (!close || close[1] != ':')
            return -1;
        hlen = (size_t)(close - s - 1);
        s++;
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= sizeof(a->host))
        return -1;
    if (parse_uint(colon + 1, &port) < 0 || port < 1 || port > 65535)
        return -1;
    memcpy(a->host, s, hlen);
    a->host[hlen] = '\0';
    a->port = (unsigned)port;
    return 0;
}

/* Parses value into its field. source names where it came from, for the error line. */
static int apply(struct config *cfg, const struct option_spec *o, const char *value,
                 const char *source, char *err, size_t errlen)
{
    char *field = (char *)cfg + o->offset;
    unsigned long n;

    switch (o->type) {
    case OPT_ADDR:
        if (parse_addr(value, (struct config_addr *)(void *)field) < 0) {
            errbuf_set(err, errlen, "--%s: '%s' is not HOST:PORT (from %s)", o->name, value,
                       source);
            return -1;
        }
        return 0;
    case OPT_UINT:
        if (parse_uint(value, &n) < 0) {
            errbuf_set(err, errlen, "--%s: '%s' is not a whole number (from %s)", o->name, value,
                       source);
            return -1;
        }
        if (n < o->min || n > o->max) {
            errbuf_set(err, errlen, "--%s: %lu is out of range %lu..%lu (from %s)", o->name, n,
                       o->min, o->max, source);
            return -1;
        }
        *(unsigned *)(void *)field = (unsigned)n;
        return 0;
    case OPT_STRING:
    case OPT_LIST: {
        char **p = (char **)(void *)field;

        if (!value[0]) {
            errbuf_set(err, errlen, "--%s: must not be empty (from %s)", o->name, source);
            return -1;
        }
        free(*p);
        *p = xstrdup(value);
        return 0;
    }
    case OPT_ENUM:
        for (int i = 0; o->choices[i]; i++) {
            if (!strcmp(o->choices[i], value)) {
                *(int *)(void *)field = i;
                return 0;
            }
        }
        errbuf_set(err, errlen, "--%s: '%s' is not one of the accepted values (from %s)", o->name,
                   value, source);
        return -1;
    }
    return -1;
}

static void env_name(const struct option_spec *o, char *buf, size_t len)
{
    size_t i = (size_t)snprintf(buf, len, "HERALD_");

    for (const char *p = o->name; *p && i + 1 < len; p++)
        buf[i++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    buf[i] = '\0';
}

static const char *env_get(char *const envp[], const char *name)
{
    size_t len = strlen(name);

    for (size_t i = 0; envp && envp[i]; i++)
        if (!strncmp(envp[i], name, len) && envp[i][len] == '=')
            return envp[i] + len + 1;
    return NULL;
}

/* A JSON array of strings for an OPT_LIST: its entries joined with commas. */
static int apply_array(struct config *cfg, const struct option_spec *o, json_t *arr,
                       const char *source, char *err, size_t errlen)
{
    size_t i, len = 1;
    json_t *v;
    char *joined;
    int rc;

    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v)) {
            errbuf_set(err, errlen, "--%s: every entry of the array in %s must be a string",
                       o->name, source);
            return -1;
        }
        len += json_string_length(v) + 1;
    }
    joined = xcalloc(1, len);
    json_array_foreach(arr, i, v)
    {
        if (i)
            strcat(joined, ",");
        strcat(joined, json_string_value(v));
    }
    rc = apply(cfg, o, joined, source, err, errlen);
    free(joined);
    return rc;
}

static int load_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    const char *key;
    json_t *val;
    char source[300];
    int rc = -1;

    if (!root) {
        errbuf_set(err, errlen, "--config: %s: %s (line %d)", path, jerr.text, jerr.line);
        return -1;
    }
    if (!json_is_object(root)) {
        errbuf_set(err, errlen, "--config: %s: the file must hold one JSON object", path);
        goto out;
    }
    snprintf(source, sizeof(source), "config file %s", path);
    json_object_foreach(root, key, val)
    {
        const struct option_spec *o = find_option(key, strlen(key));
        char num[32];
        const char *s;

        if (!o) {
            errbuf_set(err, errlen, "--config: %s: unknown option \"%s\"", path, key);
            goto out;
        }
        if (json_is_array(val) && o->type == OPT_LIST) {
            if (apply_array(cfg, o, val, source, err, errlen) < 0)
                goto out;
            continue;
        }
        if (json_is_string(val)) {
            s = json_string_value(val);
        } else if (json_is_integer(val) && o->type == OPT_UINT) {
            snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(val));
            s = num;
        } else {
            errbuf_set(err, errlen, "--%s: the value in %s must be a %s", o->name, path,
                       o->type == OPT_UINT   ? "whole number"
                       : o->type == OPT_LIST ? "string or an array of strings"
                                             : "string");
            goto out;
        }
        if (apply(cfg, o, s, source, err, errlen) < 0)
            goto out;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

void config_usage(FILE *out)
{
    fprintf(out, "usage: herald [OPTION VALUE]...\n\n"
                 "Herald " HERALD_VERSION " -- a WebSocket notification hub.\n"
                 "Each option is also read from HERALD_<NAME> and from the JSON object of\n"
                 "--config FILE; a flag wins over the environment, which wins over the file.\n\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option_spec *o = &options[i];
        char envbuf[64];

        env_name(o, envbuf, sizeof(envbuf));
        fprintf(out, "  --%-20s %s\n  %-22s [%s%s%s]\n", o->name, o->help, "", envbuf,
                o->def ? ", default " : "", o->def ? o->def : "");
    }
    fprintf(out, "  --%-20s %s\n", "config FILE", "JSON file of options (also HERALD_CONFIG)");
    fprintf(out, "  --%-20s %s\n", "help", "print this and exit");
    fprintf(out, "  --%-20s %s\n", "version", "print the version and exit");
    fprintf(out, "  --%-20s %s\n", "man", "print the manual page (roff) and exit");
}

/* Escapes text for roff: backslashes and leading dots/quotes. */
static void roff_text(FILE *out, const char *s)
{
    if (*s == '.' || *s == '\'')
        fputs("\\&", out);
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\e", out);
        else if (*s == '-')
            fputs("\\-", out);
        else
            fputc(*s, out);
    }
}

void config_man(FILE *out)
{
    fprintf(out, ".TH HERALD 1 \"\" \"herald " HERALD_VERSION "\" \"User Commands\"\n"
                 ".SH NAME\nherald \\- real\\-time notification hub (WebSocket fan\\-out of "
                 "published JSON events)\n"
                 ".SH SYNOPSIS\n.B herald\n[\\fIOPTION VALUE\\fR]...\n"
                 ".SH DESCRIPTION\n"
                 "Backends POST JSON events to the HTTP API on \\fB\\-\\-api\\-listen\\fR; every "
                 "WebSocket client subscribed to the event's channel on \\fB\\-\\-listen\\fR (path "
                 "\\fI/ws\\fR) receives it. Alone, a hub uses its in\\-process broker; with "
                 "\\fB\\-\\-redis\\-url\\fR, hubs share events through one Redis pub/sub channel "
                 "and can run behind a load balancer. Given several \\fB\\-\\-redis\\-url\\fR "
                 "(the same list, in the same order, on every hub), the Redis instances are "
                 "shards: each channel lives on one of them.\n"
                 ".PP\nEach option is also read from the environment variable "
                 "\\fBHERALD_\\fINAME\\fR (upper case, dashes as underscores) and from the "
                 "JSON object of \\fB\\-\\-config\\fR \\fIFILE\\fR (or \\fBHERALD_CONFIG\\fR). "
                 "A flag wins over the environment, which wins over the file. A bad value "
                 "stops start\\-up with one line naming the option, and exit status 2.\n"
                 ".SH OPTIONS\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option_spec *o = &options[i];
        char envbuf[64];

        env_name(o, envbuf, sizeof(envbuf));
        fputs(".TP\n.BR \"\\-\\-", out);
        roff_text(out, o->name);
        fputs("\" \" \\fIVALUE\\fR\"\n", out);
        roff_text(out, o->help);
        fprintf(out, ". Environment: \\fB");
        roff_text(out, envbuf);
        fputs("\\fR", out);
        if (o->def) {
            fputs("; default: ", out);
            roff_text(out, o->def);
        }
        fputs(".\n", out);
    }
    fputs(".TP\n.BR \\-\\-config \" \\fIFILE\\fR\"\nA JSON object of the options above.\n"
          ".TP\n.B \\-\\-help\nPrint the options and exit.\n"
          ".TP\n.B \\-\\-version\nPrint the version and exit.\n"
          ".TP\n.B \\-\\-man\nPrint this manual page (roff) and exit.\n"
          ".SH SIGNALS\n"
          "SIGTERM or SIGINT drains: \\fI/ready\\fR answers 503, publishes answer 503, every "
          "client is closed with 1001 within \\fB\\-\\-drain\\-seconds\\fR, and the hub "
          "exits 0.\n"
          ".PP\nSIGHUP re-reads \\fB\\-\\-tls\\-cert\\fR and \\fB\\-\\-tls\\-key\\fR: "
          "new TLS handshakes get the new pair, open connections stay. A pair that fails its "
          "checks is logged and the current one kept; the hub never exits on SIGHUP.\n"
          ".SH EXIT STATUS\n0 after a drain; 1 when start\\-up fails (a port in use); 2 for a "
          "bad option.\n"
          ".SH HTTP API\n"
          "\\fBPOST /publish\\fR (202 once the broker took the event), \\fBGET /health\\fR, "
          "\\fBGET /ready\\fR (503 while draining or while Redis is down; with shards, while "
          "none is up or hubs were given different lists, each shard's state in the body), "
          "\\fBGET /stats\\fR, \\fBGET /metrics\\fR (Prometheus).\n"
          ".SH FILES\n/etc/herald/herald.json, /etc/herald/\\fIINSTANCE\\fR.json and .env "
          "(systemd units herald.service and herald@.service).\n"
          ".SH SEE ALSO\n\\fBherald\\-sub\\fR(1), \\fBherald\\-token\\fR(1), "
          "\\fBsystemd.exec\\fR(5)\n",
          out);
}

enum config_result config_load(struct config *cfg, int argc, char *const argv[], char *const envp[],
                               FILE *out, char *err, size_t errlen)
{
    const char *config_file = env_get(envp, "HERALD_CONFIG");
    char source[80];
    bool list_flag_seen[N_OPTIONS] = {false};

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].def && apply(cfg, &options[i], options[i].def, "default", err, errlen))
            return CONFIG_ERROR;

    /* First pass over argv: --help, --version, --config and the shape of every flag. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq;
        size_t len;

        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            config_usage(out);
            return CONFIG_EXIT;
        }
        if (!strcmp(a, "--man")) {
            config_man(out);
            return CONFIG_EXIT;
        }
        if (!strcmp(a, "--version")) {
            fprintf(out, "herald " HERALD_VERSION "\n");
            return CONFIG_EXIT;
        }
        if (strncmp(a, "--", 2) != 0) {
            errbuf_set(err, errlen, "unexpected argument '%s' (see --help)", a);
            return CONFIG_ERROR;
        }
        eq = strchr(a + 2, '=');
        len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (!(len == 6 && !memcmp(a + 2, "config", 6)) && !find_option(a + 2, len)) {
            errbuf_set(err, errlen, "unknown option '%.*s' (see --help)", (int)len + 2, a);
            return CONFIG_ERROR;
        }
        if (!eq && i + 1 >= argc) {
            errbuf_set(err, errlen, "%s needs a value", a);
            return CONFIG_ERROR;
        }
        if (len == 6 && !memcmp(a + 2, "config", 6))
            config_file = eq ? eq + 1 : argv[i + 1];
        if (!eq)
            i++;
    }

    if (config_file && load_file(cfg, config_file, err, errlen) < 0)
        return CONFIG_ERROR;

    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *v;

        env_name(&options[i], source, sizeof(source));
        v = env_get(envp, source);
        if (v && apply(cfg, &options[i], v, source, err, errlen) < 0)
            return CONFIG_ERROR;
    }

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i] + 2;
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const char *v = eq ? eq + 1 : argv[i + 1];
        const struct option_spec *o = find_option(a, len);
        char *joined = NULL;
        int rc;

        if (!eq)
            i++;
        if (!o)
            continue; /* --config, already read */
        snprintf(source, sizeof(source), "the command line");
        if (o->type == OPT_LIST && list_flag_seen[o - options] && v[0]) {
            const char *had = *(char **)(void *)((char *)cfg + o->offset);

            joined = xmalloc(strlen(had) + strlen(v) + 2);
            sprintf(joined, "%s,%s", had, v); /* a repeated list flag adds to the list */
            v = joined;
        }
        list_flag_seen[o - options] = true;
        rc = apply(cfg, o, v, source, err, errlen);
        free(joined);
        if (rc < 0)
            return CONFIG_ERROR;
    }
    return CONFIG_OK;
}

/* --allowed-origins: "scheme://host[:port]" entries, compared exactly (case-insensitively). */
static int parse_origins(struct config *cfg, char *err, size_t errlen)
{
    size_t n = 1;
    const char *p = cfg->allowed_origins;

    for (const char *q = p; *q; q++)
        n += *q == ',';
    cfg->origins = xcalloc(n + 1, sizeof(char *));
    n = 0;
    while (*p) {
        size_t len = strcspn(p, ",");

        while (len && p[len - 1] == ' ')
            len--;
        if (len) {
            char *o = xstrndup(p, len);

            cfg->origins[n++] = o;
            if ((strncmp(o, "http://", 7) && strncmp(o, "https://", 8)) || o[len - 1] == '/') {
                errbuf_set(err, errlen,
                           "--allowed-origins: '%s' is not scheme://host[:port] (no path)", o);
                return -1;
            }
        }
        p += strcspn(p, ",");
        while (*p == ',' || *p == ' ')
            p++;
    }
    return 0;
}

/* Where the --redis-url entry that starts at p ends: at a comma followed (after spaces) by
 * redis://, so that a password may hold a comma, or at the end. */
static const char *entry_end(const char *p)
{
    for (; *p; p++) {
        const char *q = p + 1;

        if (*p != ',')
            continue;
        while (*q == ' ')
            q++;
        if (!strncmp(q, "redis://", 8))
            return p;
    }
    return p;
}

/* --redis-url: one URL, or several separated by commas (shards). Each entry must parse; no two
 * may name the same Redis and database (shard_name(), so credentials and spelling of the
 * port do not tell two apart); the names and their digest are kept. */
static int resolve_redis_urls(struct config *cfg, char *err, size_t errlen)
{
    const char *p = cfg->redis_url;
    unsigned n = 0;

    cfg->redis_urls = xcalloc(SHARD_MAX + 1, sizeof(char *));
    cfg->redis_shard_names = xcalloc(SHARD_MAX + 1, sizeof(char *));
    while (*p) {
        const char *end;
        size_t len;
        struct redis_url u;
        char why[160], name[SHARD_NAME_MAX];

        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        end = entry_end(p);
        len = (size_t)(end - p);
        while (len && (p[len - 1] == ' ' || p[len - 1] == ','))
            len--;
        if (n == SHARD_MAX) {
            errbuf_set(err, errlen, "--redis-url: more than %d entries", SHARD_MAX);
            return -1;
        }
        cfg->redis_urls[n] = xstrndup(p, len);
        if (redis_url_parse(cfg->redis_urls[n], &u, why, sizeof(why)) < 0) {
            if (*end || n) /* never the URL itself: it may hold a password */
                errbuf_set(err, errlen, "--redis-url: entry %u: %s", n + 1, why);
            else
                errbuf_set(err, errlen, "--redis-url: %s", why);
            return -1;
        }
        shard_name(&u, name);
        for (unsigned i = 0; i < n; i++) {
            if (!strcmp(cfg->redis_shard_names[i], name)) {
                errbuf_set(err, errlen,
                           "--redis-url: entries %u and %u are both %s: each shard must be "
                           "another Redis or database",
                           i + 1, n + 1, name);
                return -1;
            }
        }
        cfg->redis_shard_names[n++] = xstrdup(name);
        p = end;
    }
    if (!n) {
        errbuf_set(err, errlen, "--redis-url: no URL given");
        return -1;
    }
    cfg->redis_shards = n;
    cfg->redis_shard_digest = shard_list_digest(cfg->redis_shard_names, n);
    return 0;
}

static bool is_dir(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int config_resolve(struct config *cfg, char *err, size_t errlen)
{
    if (!cfg->instance_id) {
        char host[HOST_NAME_MAX + 1] = "herald";
        char buf[HOST_NAME_MAX + 32];

        gethostname(host, sizeof(host));
        host[sizeof(host) - 1] = '\0';
        snprintf(buf, sizeof(buf), "%s-%ld", host, (long)getpid());
        cfg->instance_id = xstrdup(buf);
    }
    if (strlen(cfg->instance_id) > 100) {
        errbuf_set(err, errlen, "--instance-id: longer than 100 characters");
        return -1;
    }
    for (const char *p = cfg->instance_id; *p; p++) {
        if ((unsigned char)*p < 0x21 || *p == '"' || *p == '\\' || (unsigned char)*p > 0x7e) {
            errbuf_set(err, errlen, "--instance-id: only printable ASCII without quotes or spaces");
            return -1;
        }
    }
    if (cfg->delivery_threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);

        cfg->delivery_threads = n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
    }
    if (!cfg->web_root) {
        const char *dir =
            is_dir(HERALD_WEB_INSTALL_DIR) ? HERALD_WEB_INSTALL_DIR : HERALD_WEB_BUILD_DIR;
        cfg->web_root = xstrdup(dir);
    }
    if (!is_dir(cfg->web_root)) {
        errbuf_set(err, errlen, "--web-root: '%s' is not a directory", cfg->web_root);
        return -1;
    }
    if (cfg->redis_url && resolve_redis_urls(cfg, err, errlen) < 0)
        return -1;
    if ((unsigned long)cfg->send_queue_bytes <
        (unsigned long)cfg->max_message_bytes + MESSAGE_EVENT_OVERHEAD) {
        errbuf_set(err, errlen,
                   "--send-queue-bytes: %u is smaller than the largest event frame (%u, from "
                   "--max-message-bytes %u): one such event would cut every subscriber of its "
                   "channel",
                   cfg->send_queue_bytes, cfg->max_message_bytes + MESSAGE_EVENT_OVERHEAD,
                   cfg->max_message_bytes);
        return -1;
    }
    if (strlen(cfg->redis_channel) > 256) {
        errbuf_set(err, errlen, "--redis-channel: longer than 256 characters");
        return -1;
    }
    if (cfg->api_key || cfg->api_keys_file) {
        cfg->keys = apikeys_load(cfg->api_key, cfg->api_keys_file, err, errlen);
        if (!cfg->keys)
            return -1;
    }
    if (cfg->jwt_secret_file) {
        char why[300];

        if (jwt_read_secret(cfg->jwt_secret_file, &cfg->jwt_secret, &cfg->jwt_secret_len, why,
                            sizeof(why)) < 0) {
            errbuf_set(err, errlen, "--jwt-secret-file: %s", why);
            return -1;
        }
    }
    {
        char why[200];

        cfg->trusted = netaddr_list_parse(cfg->trusted_proxies, why, sizeof(why));
        if (!cfg->trusted) {
            errbuf_set(err, errlen, "--trusted-proxies: %s", why);
            return -1;
        }
    }
    if (cfg->allowed_origins && parse_origins(cfg, err, errlen) < 0)
        return -1;
    if (!cfg->tls_cert != !cfg->tls_key) {
        errbuf_set(err, errlen, "%s: needed with %s (give both, or neither)",
                   cfg->tls_cert ? "--tls-key" : "--tls-cert",
                   cfg->tls_cert ? "--tls-cert" : "--tls-key");
        return -1;
    }
    if (cfg->tls_cert && !(cfg->tls = tls_pair_load(cfg->tls_cert, cfg->tls_key, err, errlen)))
        return -1;
    return 0;
}

void config_free(struct config *cfg)
{
    for (unsigned i = 0; cfg->redis_urls && cfg->redis_urls[i]; i++)
        free(cfg->redis_urls[i]);
    for (unsigned i = 0; cfg->redis_shard_names && cfg->redis_shard_names[i]; i++)
        free(cfg->redis_shard_names[i]);
    free(cfg->redis_urls);
    free(cfg->redis_shard_names);
    cfg->redis_urls = cfg->redis_shard_names = NULL;
    cfg->redis_shards = 0;
    free(cfg->redis_url);
    free(cfg->redis_channel);
    free(cfg->resolv_conf);
    cfg->resolv_conf = NULL;
    cfg->redis_url = cfg->redis_channel = NULL;
    free(cfg->web_root);
    free(cfg->instance_id);
    free(cfg->api_key);
    free(cfg->api_keys_file);
    free(cfg->jwt_secret_file);
    free(cfg->tls_cert);
    free(cfg->tls_key);
    cfg->tls_cert = cfg->tls_key = NULL;
    tls_pair_unref(&cfg->tls);
    free(cfg->allowed_origins);
    free(cfg->trusted_proxies);
    apikeys_free(cfg->keys);
    if (cfg->jwt_secret)
        OPENSSL_cleanse(cfg->jwt_secret, cfg->jwt_secret_len);
    free(cfg->jwt_secret);
    netaddr_list_free(cfg->trusted);
    for (size_t i = 0; cfg->origins && cfg->origins[i]; i++)
        free(cfg->origins[i]);
    free(cfg->origins);
    cfg->api_key = cfg->api_keys_file = cfg->jwt_secret_file = NULL;
    cfg->allowed_origins = cfg->trusted_proxies = NULL;
    cfg->keys = NULL;
    cfg->jwt_secret = NULL;
    cfg->trusted = NULL;
    cfg->origins = NULL;
    cfg->web_root = NULL;
    cfg->instance_id = NULL;
}
