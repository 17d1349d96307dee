/* config.h -- the hub's options: one table serves flags, HERALD_* variables, the JSON config
 * file, defaults, bounds and --help. Read-only once the planes start. */
#ifndef HERALD_CONFIG_H
#define HERALD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct apikeys;
struct netaddr_list;
struct tls_pair;

#define CONFIG_HOST_MAX 256

struct config_addr {
    char host[CONFIG_HOST_MAX];
    unsigned port;
};

struct config {
    struct config_addr listen;     /* --listen */
    char *tls_cert;                /* --tls-cert; NULL: --listen is plain HTTP */
    char *tls_key;                 /* --tls-key */
    struct config_addr api_listen; /* --api-listen */
    unsigned api_max_connections;  /* HTTP API connections at once */
    unsigned api_request_seconds;  /* a request's first byte to its last */
    char *web_root;                /* --web-root; NULL: the installed or source web/ */
    char *redis_url; /* NULL: the in-process broker; several URLs (comma list): shards */
    char *redis_channel;
    char *resolv_conf; /* name servers for the Redis host name */
    unsigned max_message_bytes;
    unsigned client_rate;
    unsigned client_burst;
    unsigned send_queue_bytes;
    unsigned max_subscriptions;
    unsigned heartbeat;        /* seconds */
    unsigned delivery_threads; /* 0: one per core */
    unsigned drain_seconds;
    char *instance_id; /* NULL: hostname-pid */
    char *api_key;
    char *api_keys_file;
    char *jwt_secret_file;
    char *allowed_origins;            /* comma list; NULL: any */
    char *trusted_proxies;            /* comma list of addresses and CIDR blocks */
    unsigned max_connections;         /* 0: no limit */
    unsigned max_connections_per_ip;  /* 0: no limit */
    unsigned ipv6_prefix;             /* per-address limits count an IPv6 client by this prefix */
    unsigned max_channels;            /* distinct channels one instance holds; 0: no limit */
    unsigned publish_rate;            /* per second per key (or IP); 0: no limit */
    unsigned publish_rate_identities; /* identities the in-process limiter remembers */
    unsigned history_size;            /* events kept per channel */
    unsigned history_ttl;             /* seconds an event is kept */
    unsigned history_memory;          /* bytes: the in-process broker's bound on kept events */
    unsigned idempotency_ttl;         /* seconds an Idempotency-Key is remembered */
    unsigned max_backlog_bytes;       /* delivery backlog past which publishes answer 503 */
    /* resolved by config_resolve() from the above */
    struct apikeys *keys;      /* NULL: POST /publish is open */
    unsigned char *jwt_secret; /* NULL: /ws is open */
    size_t jwt_secret_len;
    struct netaddr_list *trusted; /* never NULL after config_resolve */
    struct tls_pair *tls;         /* --tls-cert and --tls-key as loaded at start-up; NULL: plain.
                                   * SIGHUP's pairs go to the planes, never here. */
    char **redis_urls;            /* each --redis-url entry, NULL-terminated; NULL: none */
    char **redis_shard_names;     /* each as shard_name() writes it: no credentials */
    unsigned redis_shards;        /* entries: 0 (in-process), 1 (one Redis), more (shards) */
    uint64_t redis_shard_digest;  /* shard_list_digest() of the names, in order */
    char **origins;               /* NULL: any origin; else NULL-terminated */
    int log_level;                /* enum log_level */
    int log_format;               /* enum log_format */
    int io_uring;                 /* 0 off, 1 on */
};

enum config_result {
    CONFIG_OK,    /* run the hub */
    CONFIG_EXIT,  /* --help or --version was printed: exit 0 */
    CONFIG_ERROR, /* err holds one line naming the option: exit 2 */
};

/* Fills cfg from defaults, then the JSON file of --config (or HERALD_CONFIG), then the
 * HERALD_* entries of envp, then argv: a later source overrides an earlier one. Every value
 * is checked against its bounds. out receives --help and --version. cfg must be released
 * with config_free(), whatever the result. */
enum config_result config_load(struct config *cfg, int argc, char *const argv[], char *const envp[],
                               FILE *out, char *err, size_t errlen);
/* Resolves the defaults that depend on the machine: instance id, delivery threads, web
 * root. Returns 0, or -1 with err set. */
int config_resolve(struct config *cfg, char *err, size_t errlen);
void config_free(struct config *cfg);
void config_usage(FILE *out);
/* The manual page, in roff, from the same option table. */
void config_man(FILE *out);

#endif
