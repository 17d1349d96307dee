/* herald-pub.c -- publish events to a Herald hub through its HTTP API.
 *
 * The command-line publisher: it POSTs {"channel":…,"event":…,"data":…} to the hub's
 * /publish and prints the id of each event the hub accepted (202), one per line, flushed per
 * line. With JSON on the command line it sends one event; without, it reads one JSON value per
 * stdin line and sends each as the data of one event, over one keep-alive connection. With
 * --demo it sends a lifelike mix of events (orders created, paid and shipped; sign-ups;
 * cpu, memory and latency metrics) to the channels orders, signups and metrics at --rate events
 * per second until SIGINT or SIGTERM, printing "CHANNEL EVENT ID" per event.
 *
 * HTTP is http_client.c's blocking connection: one request at a time on a persistent
 * connection; a Content-Length, chunked or close-delimited reply. A connection the server
 * closed while idle is reopened once, and the request sent again, only when no byte of a reply
 * had come back (the usual keep-alive race). Every wait on the network is bounded by
 * HTTP_IO_TIMEOUT_MS. Plain http:// only: put TLS in a proxy in front.
 *
 * Data values are parsed with jansson before they are sent, so a bad line is reported with its
 * line number instead of as the hub's 400. The exit status:
 *
 *   0  every event was accepted (or --demo ended by SIGINT/SIGTERM)
 *   1  the hub answered other than 202 (its status and error JSON go to stderr), the hub could
 *      not be reached, or a stdin line is not JSON
 *   2  bad usage
 *
 * Idempotency: --idempotency-key K sends "Idempotency-Key: K" (stdin: K-LINE for each line,
 * LINE its number), so that sending the same thing again within the hub's --idempotency-ttl
 * delivers nothing twice: the hub answers with the first answer's ids and "duplicate":true.
 * --retry sends a request again, with the same key, after no answer (a connection refused or
 * reset, a timeout) or a 408, 429, 502, 503 or 504: it waits as Retry-After says (plus a little
 * jitter), else with exponential backoff and full jitter, at most PUB_RETRY_ATTEMPTS requests
 * within PUB_RETRY_DEADLINE_MS. Without --idempotency-key, --retry makes up a random key for
 * each event (each stdin line), since a request with no answer may have been taken: a retry
 * must never deliver an event twice.
 *
 * In --demo, an unreachable hub or a 429 or 503 answer is reported and the demo goes on after
 * the answer's Retry-After (a second without one): a hub restart does not end it. */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "client_util.h"
#include "herald_version.h"
#include "http_client.h"
#include "url.h"

#define PUB_DEFAULT_URL "http://127.0.0.1:8081/publish"
#define PUB_DEMO_RATE_DEFAULT 5UL
#define PUB_DEMO_RATE_MAX 100000UL
#define PUB_BATCH_MAX 1000          /* the hub's largest batch */
#define PUB_DEMO_RETRY_MS 1000      /* --demo: the wait after a failure without Retry-After */
#define PUB_DEMO_RETRY_MAX_MS 30000 /* --demo: the longest Retry-After it waits */
#define PUB_RETRY_ATTEMPTS 6        /* --retry: requests per event, the first included */
#define PUB_RETRY_INITIAL_MS 250    /* --retry: the first backoff bound */
#define PUB_RETRY_MAX_MS 8000       /* --retry: the cap of every backoff bound */
#define PUB_RETRY_DEADLINE_MS 60000 /* --retry: no wait that would end later than this */
#define PUB_KEY_MAX 128             /* the hub's longest Idempotency-Key */
#define PUB_KEY_LINES_MAX 100       /* --idempotency-key with stdin: room for "-LINE" */

enum pub_exit {
    PUB_EXIT_OK = 0,
    PUB_EXIT_FAIL = 1,
    PUB_EXIT_USAGE = 2,
};

struct pub_opts {
    const char *url;
    const char *api_key; /* NULL: no Authorization header */
    const char *event;   /* NULL: events without a name */
    const char *channel;
    const char *json;            /* NULL: read stdin */
    const char *idempotency_key; /* NULL: none given */
    int is_demo;
    int is_retry;
    unsigned long rate;
};

/* How a publish ended. */
struct pub_answer {
    int status;       /* the HTTP status; 0 when no answer came */
    long retry_after; /* its Retry-After in seconds; -1 when none */
};

static volatile sig_atomic_t got_signal; /* --demo: SIGINT or SIGTERM seen */
static uint64_t rng;                     /* jitter; seeded in main */

static void on_signal(int sig)
{
    (void)sig;
    got_signal = 1;
}

/* --- the URL ------------------------------------------------------------------------------ */

/* Parse http://HOST[:PORT][/PATH] (clients/url.c). Returns 0, or -1 with a static message. */
static int url_parse(const char *url, struct client_url *u, const char **err)
{
    static const char *const schemes[] = {"http", NULL};

    if (!strncmp(url, "https://", 8)) {
        memset(u, 0, sizeof(*u));
        *err = "https is not supported: publish over http on a trusted network, or through a "
               "proxy";
        return -1;
    }
    if (client_url_parse(url, schemes, u, err) < 0) {
        if (!strcmp(*err, "unsupported scheme"))
            *err = "must start with http://";
        else if (!strcmp(*err, "user information is not supported"))
            *err = "user information is not supported (use --api-key)";
        return -1;
    }
    return 0;
}

/* --- publishing ----------------------------------------------------------------------------- */

/* Prints the ids of an accepted publish, each on its own line after prefix[i] (may be NULL).
 * *is_duplicate tells whether the hub had the request's Idempotency-Key already. Returns the
 * number printed. */
static size_t print_ids(const struct http_reply *r, char *const *prefix, size_t n,
                        bool *is_duplicate)
{
    json_t *o = json_loadb(r->body, r->body_len, 0, NULL);
    json_t *id = json_object_get(o, "id"), *ids = json_object_get(o, "ids");
    size_t printed = 0;

    *is_duplicate = json_is_true(json_object_get(o, "duplicate"));

    if (json_is_string(id)) {
        if (prefix && n)
            fputs(prefix[0], stdout);
        puts(json_string_value(id));
        printed = 1;
    } else if (json_is_array(ids)) {
        size_t i;
        json_t *v;

        json_array_foreach(ids, i, v)
        {
            if (!json_is_string(v))
                continue;
            if (prefix && i < n)
                fputs(prefix[i], stdout);
            puts(json_string_value(v));
            printed++;
        }
    }
    fflush(stdout);
    json_decref(o);
    return printed;
}

/* "herald-pub: STATUS REASON: BODY" on stderr, without the newline. */
static void put_status(const struct http_reply *r)
{
    size_t n = r->body_len;

    while (n && (r->body[n - 1] == '\n' || r->body[n - 1] == '\r'))
        n--;
    fprintf(stderr, "herald-pub: %d%s%s: ", r->head.status, r->head.reason[0] ? " " : "",
            r->head.reason);
    client_put_clean(stderr, r->body, n);
}

/* A seed for client_xorshift(): the clock and the pid (jitter and demo data, not secrets). */
static uint64_t seed(void)
{
    struct timespec ts;
    uint64_t x;

    clock_gettime(CLOCK_REALTIME, &ts);
    x = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40);
    return x ? x : 0x9e3779b97f4a7c15ULL;
}

/* Whether another request may succeed where this one did not (status 0: no answer). */
static bool is_retryable(int status)
{
    return status == 0 || status == 408 || status == 429 || status == 502 || status == 503 ||
           status == 504;
}

/* The wait before retry number retry (0 first), in milliseconds: with retry_after (seconds,
 * -1 none) that long plus a jitter of at most the backoff bound and of Retry-After itself;
 * else full jitter, random(0, min(PUB_RETRY_MAX_MS, PUB_RETRY_INITIAL_MS * 2^retry)). */
static int64_t retry_wait(unsigned retry, long retry_after)
{
    int64_t cap = PUB_RETRY_INITIAL_MS << (retry < 10 ? retry : 10);
    double r = (double)(client_xorshift(&rng) >> 11) / 9007199254740992.0;

    if (cap > PUB_RETRY_MAX_MS)
        cap = PUB_RETRY_MAX_MS;
    if (retry_after < 0)
        return (int64_t)(r * (double)cap);
    if (cap > (int64_t)retry_after * 1000)
        cap = (int64_t)retry_after * 1000;
    return (int64_t)retry_after * 1000 + (int64_t)(r * (double)cap);
}

/* Fills key (PUB_KEY_MAX + 1 bytes) with a random UUID (version 4) from getrandom(), or from
 * the clock and the pid when the kernel has none to give. */
static void random_key(char *key)
{
    unsigned char b[16];

    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        uint64_t x = client_xorshift(&rng), y = client_xorshift(&rng);

        memcpy(b, &x, 8);
        memcpy(b + 8, &y, 8);
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(key, PUB_KEY_MAX + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

/* Builds one event object; takes the reference to data. */
static json_t *event_new(const char *channel, const char *event, json_t *data)
{
    json_t *o = json_object();

    json_object_set_new(o, "channel", json_string(channel));
    if (event)
        json_object_set_new(o, "event", json_string(event));
    json_object_set_new(o, "data", data);
    return o;
}

/* Sends body (one event or a batch) with Idempotency-Key key (NULL: none), again with the
 * same key while --retry allows. Returns 0 when accepted (ids printed), 1 on another status
 * (reported), -1 when the hub could not be reached (reported). *a says how the last request
 * ended. */
static int publish(struct http_conn *c, const struct pub_opts *o, json_t *body, const char *key,
                   char *const *prefix, size_t n, struct pub_answer *a)
{
    char err[256];
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    struct http_reply r = {0};
    int64_t deadline = client_mono_ms() + PUB_RETRY_DEADLINE_MS;
    int rc;

    if (!text)
        client_out_of_memory();
    for (unsigned attempt = 1;; attempt++) {
        bool has_reply =
            http_post(c, o->api_key, key, text, strlen(text), &r, err, sizeof(err)) == 0;
        int64_t wait_ms = 0;

        a->status = has_reply ? r.head.status : 0;
        a->retry_after = has_reply ? r.head.retry_after : -1;
        if (a->status == 202) {
            bool is_duplicate;

            print_ids(&r, prefix, n, &is_duplicate);
            if (is_duplicate)
                fprintf(stderr,
                        "herald-pub: the hub had Idempotency-Key %s already: not delivered "
                        "again\n",
                        key ? key : "(none)");
            rc = 0;
            break;
        }
        if (o->is_retry && is_retryable(a->status) && attempt < PUB_RETRY_ATTEMPTS)
            wait_ms = retry_wait(attempt - 1, a->retry_after);
        if (!o->is_retry || !is_retryable(a->status) || attempt >= PUB_RETRY_ATTEMPTS ||
            client_mono_ms() + wait_ms > deadline) {
            if (has_reply) {
                put_status(&r);
                fputc('\n', stderr);
            } else {
                fprintf(stderr, "herald-pub: %s\n", err);
            }
            rc = has_reply ? 1 : -1;
            break;
        }
        if (has_reply)
            put_status(&r);
        else
            fprintf(stderr, "herald-pub: %s", err);
        fprintf(stderr, "; retry %u of %d in %.1f s\n", attempt, PUB_RETRY_ATTEMPTS - 1,
                (double)wait_ms / 1000.0);
        client_sleep_us(wait_ms * 1000);
    }
    http_reply_clear(&r);
    free(text);
    return rc;
}

/* The key for one event: o->idempotency_key, with "-LINE" for a stdin line (lineno > 0); a
 * random one with --retry; else none (NULL). buf holds PUB_KEY_MAX + 1 bytes. */
static const char *event_key(const struct pub_opts *o, unsigned long lineno, char *buf)
{
    if (o->idempotency_key && !lineno)
        return o->idempotency_key;
    if (o->idempotency_key) {
        snprintf(buf, PUB_KEY_MAX + 1, "%s-%lu", o->idempotency_key, lineno);
        return buf;
    }
    if (!o->is_retry)
        return NULL;
    random_key(buf);
    return buf;
}

/* One event from a JSON text. Returns the exit status. */
static int publish_one(struct http_conn *c, const struct pub_opts *o)
{
    json_error_t jerr;
    json_t *data = json_loads(o->json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    json_t *body;
    char key[PUB_KEY_MAX + 1];
    struct pub_answer a;
    int rc;

    if (!data) {
        fprintf(stderr, "herald-pub: JSON: %s (column %d)\n", jerr.text, jerr.column);
        return PUB_EXIT_USAGE;
    }
    body = event_new(o->channel, o->event, data);
    rc = publish(c, o, body, event_key(o, 0, key), NULL, 0, &a);
    json_decref(body);
    return rc == 0 ? PUB_EXIT_OK : PUB_EXIT_FAIL;
}

/* One event per stdin line; blank lines are skipped. Stops at the first failure. */
static int publish_lines(struct http_conn *c, const struct pub_opts *o)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned long lineno = 0;
    int exit_status = PUB_EXIT_OK;

    while ((len = getline(&line, &cap, stdin)) >= 0) {
        json_error_t jerr;
        json_t *data, *body;
        char key[PUB_KEY_MAX + 1];
        struct pub_answer a;

        lineno++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (strspn(line, " \t") == (size_t)len)
            continue;
        data = json_loadb(line, (size_t)len, JSON_DECODE_ANY, &jerr);
        if (!data) {
            fprintf(stderr, "herald-pub: stdin line %lu: invalid JSON: %s (column %d)\n", lineno,
                    jerr.text, jerr.column);
            exit_status = PUB_EXIT_FAIL;
            break;
        }
        body = event_new(o->channel, o->event, data);
        if (publish(c, o, body, event_key(o, lineno, key), NULL, 0, &a) != 0) {
            fprintf(stderr, "herald-pub: stopped at stdin line %lu\n", lineno);
            exit_status = PUB_EXIT_FAIL;
            json_decref(body);
            break;
        }
        json_decref(body);
    }
    if (ferror(stdin)) {
        fprintf(stderr, "herald-pub: reading stdin: %s\n", strerror(errno));
        exit_status = PUB_EXIT_FAIL;
    }
    free(line);
    return exit_status;
}

/* --- --demo: lifelike events ---------------------------------------------------------------- */

#define DEMO_ORDERS 64 /* orders remembered between created, paid and shipped */
#define DEMO_HOSTS 3

enum order_stage { ORDER_NONE, ORDER_CREATED, ORDER_PAID };

struct demo_order {
    unsigned id;
    enum order_stage stage;
    double amount;
    char customer[48];
};

struct demo_host {
    double cpu, mem, latency;
};

struct demo {
    uint64_t rng;
    unsigned next_order, next_user;
    struct demo_order orders[DEMO_ORDERS];
    struct demo_host hosts[DEMO_HOSTS];
};

static const char *const first_names[] = {
    "Ada",       "Grace", "Alan",  "Linus", "Margaret", "Dennis", "Barbara",  "Ken",   "Frances",
    "Edsger",    "Radia", "Tim",   "Hedy",  "Donald",   "Sophie", "Yukihiro", "Anita", "Guido",
    "Katherine", "John",  "Amara", "Mateo", "Priya",    "Lena",   "Omar",     "Chen",  "Ines"};
static const char *const last_names[] = {
    "Lovelace", "Hopper",    "Turing",   "Torvalds",   "Hamilton",    "Ritchie", "Liskov",
    "Thompson", "Allen",     "Dijkstra", "Perlman",    "Berners-Lee", "Lamarr",  "Knuth",
    "Wilson",   "Matsumoto", "Borg",     "van Rossum", "Johnson",     "Backus",  "Okafor",
    "García",   "Sharma",    "Schmidt",  "Haddad",     "Wei",         "Moreau"};
static const char *const plans[] = {"free", "free", "free", "pro", "pro", "team", "enterprise"};
static const char *const countries[] = {"FR", "DE", "US", "GB", "JP", "BR", "IN", "NG", "ES", "CA"};
static const char *const sources[] = {"search", "direct", "referral", "newsletter", "social"};
static const char *const methods[] = {"card", "card", "card", "paypal", "sepa", "apple_pay"};
static const char *const carriers[] = {"DHL", "UPS", "La Poste", "FedEx", "DPD"};
static const char *const products[] = {"keyboard", "monitor", "headset", "dock",
                                       "mouse",    "webcam",  "cable",   "laptop stand"};
static const char *const routes[] = {"/api/orders", "/api/cart", "/api/search", "/api/login",
                                     "/checkout"};

#define N_OF(arr) (sizeof(arr) / sizeof((arr)[0]))
#define PICK(d, arr) ((arr)[rnd_below((d), N_OF(arr))])

static double rnd_unit(struct demo *d) /* [0, 1) */
{
    return (double)(client_xorshift(&d->rng) >> 11) / 9007199254740992.0;
}

static size_t rnd_below(struct demo *d, size_t n)
{
    return (size_t)(rnd_unit(d) * (double)n);
}

static double clamp(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static double cents(double v)
{
    return round(v * 100.0) / 100.0;
}

static void demo_init(struct demo *d)
{
    memset(d, 0, sizeof(*d));
    d->rng = seed();
    d->next_order = 10000 + (unsigned)rnd_below(d, 80000);
    d->next_user = 1000 + (unsigned)rnd_below(d, 8000);
    for (int i = 0; i < DEMO_HOSTS; i++) {
        d->hosts[i].cpu = 20 + rnd_unit(d) * 30;
        d->hosts[i].mem = 40 + rnd_unit(d) * 20;
        d->hosts[i].latency = 12 + rnd_unit(d) * 10;
    }
}

static void full_name(struct demo *d, char *out, size_t len)
{
    snprintf(out, len, "%s %s", PICK(d, first_names), PICK(d, last_names));
}

/* An order in stage, or NULL: scans from a random slot, so old and new orders both move on. */
static struct demo_order *find_order(struct demo *d, enum order_stage stage)
{
    size_t start = rnd_below(d, DEMO_ORDERS);

    for (size_t i = 0; i < DEMO_ORDERS; i++) {
        struct demo_order *o = &d->orders[(start + i) % DEMO_ORDERS];

        if (o->stage == stage)
            return o;
    }
    return NULL;
}

/* Orders go created -> paid -> shipped: about 45% of order events create one, the rest move
 * a remembered one on. */
static json_t *demo_order(struct demo *d, const char **event)
{
    double r = rnd_unit(d);
    struct demo_order *o = NULL;
    char id[24];

    if (r >= 0.45 && r < 0.8)
        o = find_order(d, ORDER_CREATED);
    if (o) {
        o->stage = ORDER_PAID;
        *event = "paid";
        snprintf(id, sizeof(id), "ord_%u", o->id);
        return json_pack("{s:s, s:f, s:s, s:s}", "order_id", id, "amount", o->amount, "currency",
                         "EUR", "method", PICK(d, methods));
    }
    if (r >= 0.8)
        o = find_order(d, ORDER_PAID);
    if (o) {
        char tracking[24];

        o->stage = ORDER_NONE;
        *event = "shipped";
        snprintf(id, sizeof(id), "ord_%u", o->id);
        snprintf(tracking, sizeof(tracking), "TRK%010llu",
                 (unsigned long long)(client_xorshift(&d->rng) % 10000000000ULL));
        return json_pack("{s:s, s:s, s:s, s:s, s:i}", "order_id", id, "customer", o->customer,
                         "carrier", PICK(d, carriers), "tracking", tracking, "eta_days",
                         (int)(1 + rnd_below(d, 5)));
    }
    o = find_order(d, ORDER_NONE);
    if (!o) /* every slot busy: forget one */
        o = &d->orders[rnd_below(d, DEMO_ORDERS)];
    o->id = d->next_order++;
    o->stage = ORDER_CREATED;
    full_name(d, o->customer, sizeof(o->customer));
    {
        int items = 1 + (int)rnd_below(d, 3);
        size_t first = rnd_below(d, N_OF(products));
        json_t *lines = json_array();

        o->amount = 0;
        for (int i = 0; i < items; i++) {
            int qty = 1 + (int)(rnd_unit(d) < 0.2);
            double price = cents(9.9 + rnd_unit(d) * rnd_unit(d) * 400);

            o->amount += price * qty;
            json_array_append_new(lines, json_pack("{s:s, s:i, s:f}", "product",
                                                   products[(first + (size_t)i) % N_OF(products)],
                                                   "qty", qty, "price", price));
        }
        o->amount = cents(o->amount);
        *event = "created";
        snprintf(id, sizeof(id), "ord_%u", o->id);
        return json_pack("{s:s, s:s, s:o, s:f, s:s}", "order_id", id, "customer", o->customer,
                         "items", lines, "amount", o->amount, "currency", "EUR");
    }
}

static json_t *demo_signup(struct demo *d, const char **event)
{
    char name[48], email[96], user[24];
    const char *first = PICK(d, first_names), *last = PICK(d, last_names);
    size_t n;

    snprintf(name, sizeof(name), "%s %s", first, last);
    n = (size_t)snprintf(email, sizeof(email), "%s.%s@example.com", first, last);
    for (size_t i = 0; i < n && i < sizeof(email); i++) {
        unsigned char ch = (unsigned char)email[i];

        if (ch >= 'A' && ch <= 'Z')
            email[i] = (char)(ch + ('a' - 'A'));
        else if (ch == ' ')
            email[i] = '-';
    }
    snprintf(user, sizeof(user), "u_%u", d->next_user++);
    *event = "created";
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "user_id", user, "name", name, "email",
                     email, "plan", PICK(d, plans), "country", PICK(d, countries), "source",
                     PICK(d, sources));
}

static json_t *demo_metric(struct demo *d, const char **event)
{
    size_t i = rnd_below(d, DEMO_HOSTS);
    struct demo_host *h = &d->hosts[i];
    char host[16];
    double r = rnd_unit(d);

    snprintf(host, sizeof(host), "web-%zu", i + 1);
    if (r < 0.4) {
        h->cpu = clamp(h->cpu + (rnd_unit(d) - 0.5) * 12 + (rnd_unit(d) < 0.03 ? 35 : 0), 2, 99);
        *event = "cpu";
        return json_pack("{s:s, s:f, s:i}", "host", host, "percent", round(h->cpu * 10) / 10,
                         "cores", 8);
    }
    if (r < 0.7) {
        h->mem = clamp(h->mem + (rnd_unit(d) - 0.48) * 3, 20, 97);
        *event = "mem";
        return json_pack("{s:s, s:i, s:i, s:f}", "host", host, "used_mb", (int)(h->mem * 163.84),
                         "total_mb", 16384, "percent", round(h->mem * 10) / 10);
    }
    h->latency = clamp(h->latency * (0.85 + rnd_unit(d) * 0.3), 3, 400);
    if (rnd_unit(d) < 0.1)
        h->latency = clamp(h->latency * 0.6 + 12, 3, 400); /* back towards normal */
    *event = "latency";
    return json_pack("{s:s, s:s, s:f, s:f, s:i}", "host", host, "route", PICK(d, routes), "p50_ms",
                     round(h->latency * 10) / 10, "p99_ms",
                     round(h->latency * (3 + rnd_unit(d) * 3) * 10) / 10, "rps",
                     (int)(80 + rnd_below(d, 400)));
}

/* One event of the mix: half metrics, a third orders, the rest sign-ups. Takes nothing; the
 * caller owns the result. *label gets "channel event" for the printed line. */
static json_t *demo_event(struct demo *d, char *label, size_t len)
{
    double r = rnd_unit(d);
    const char *channel, *event = NULL;
    json_t *data;

    if (r < 0.5) {
        channel = "metrics";
        data = demo_metric(d, &event);
    } else if (r < 0.85) {
        channel = "orders";
        data = demo_order(d, &event);
    } else {
        channel = "signups";
        data = demo_signup(d, &event);
    }
    snprintf(label, len, "%s %s ", channel, event);
    return event_new(channel, event, data);
}

/* Sends the mix at o->rate events per second until SIGINT or SIGTERM. Events that fall due
 * together (high rates, or after a stall) leave as one batch; a stall of over a second is not
 * made up for. */
static int run_demo(struct http_conn *c, const struct client_url *url, const struct pub_opts *o)
{
    struct demo d;
    int64_t start = client_mono_ms();
    unsigned long long sent = 0, total = 0;
    char labels[PUB_BATCH_MAX][40];
    char *prefix[PUB_BATCH_MAX];

    client_catch_signals(on_signal);
    demo_init(&d);
    for (int i = 0; i < PUB_BATCH_MAX; i++)
        prefix[i] = labels[i];
    fprintf(stderr,
            "herald-pub: demo: %lu events/s to orders, signups and metrics on %s%s; "
            "Ctrl-C stops\n",
            o->rate, url->authority, url->path);

    while (!got_signal) {
        int64_t now = client_mono_ms();
        unsigned long long due = (unsigned long long)(now - start) * o->rate / 1000;
        size_t n;
        json_t *body;
        struct pub_answer a;
        int rc;

        if (due > sent + o->rate) { /* more than a second behind: start the schedule again */
            start = now;
            sent = 0;
            due = 0;
        }
        if (due <= sent) {
            int64_t next = start + (int64_t)((sent + 1) * 1000 / o->rate);

            client_sleep_us((next > now ? next - now : 1) * 1000); /* a signal ends it early */
            continue;
        }
        n = (size_t)(due - sent);
        if (n > PUB_BATCH_MAX)
            n = PUB_BATCH_MAX;
        if (n == 1) {
            body = demo_event(&d, labels[0], sizeof(labels[0]));
        } else {
            body = json_array();
            for (size_t i = 0; i < n; i++)
                json_array_append_new(body, demo_event(&d, labels[i], sizeof(labels[i])));
        }
        rc = publish(c, o, body, NULL, prefix, n, &a);
        json_decref(body);
        sent += n;
        if (rc == 0) {
            total += n;
        } else if (rc < 0 || a.status == 429 || a.status == 503) {
            /* the hub is restarting or busy: keep going, when it says (a signal cuts it short) */
            int64_t ms = a.retry_after >= 0 ? (int64_t)a.retry_after * 1000 : PUB_DEMO_RETRY_MS;

            client_sleep_us((ms < PUB_DEMO_RETRY_MAX_MS ? ms : PUB_DEMO_RETRY_MAX_MS) * 1000);
        } else {
            return PUB_EXIT_FAIL;
        }
    }
    fprintf(stderr, "herald-pub: demo: %llu events accepted\n", total);
    return PUB_EXIT_OK;
}

/* --- the command line ------------------------------------------------------------------------ */

#define PUB_SYNOPSIS                                                                               \
    "usage: herald-pub [--url http://HOST:PORT/publish] [--api-key KEY] [--event NAME]\n"          \
    "                  [--idempotency-key K] [--retry] CHANNEL [JSON]\n"                           \
    "       herald-pub [--url URL] [--api-key KEY] --demo [--rate N]\n"

static void print_help(void)
{
    fputs(PUB_SYNOPSIS
          "\n"
          "Publish events to a Herald hub. With JSON, one event whose data is JSON; without,\n"
          "one event per stdin line (each line one JSON value), over one connection.\n"
          "Prints the id of each accepted event on stdout.\n"
          "\n"
          "  --url URL       the hub's publish endpoint (default " PUB_DEFAULT_URL ")\n"
          "  --api-key KEY   send Authorization: Bearer KEY\n"
          "  --event NAME    the events' name (e.g. created)\n"
          "  --idempotency-key K\n"
          "                  send Idempotency-Key: K (1 to 128 visible ASCII characters); with\n"
          "                  stdin, line N goes with K-N (K at most 100 characters). The hub\n"
          "                  delivers a key only once within its --idempotency-ttl (300 s):\n"
          "                  running the same input again with the same K sends nothing twice\n"
          "  --retry         after no answer, or a 408, 429, 502, 503 or 504, send the same\n"
          "                  request again: after its Retry-After, else after a jittered\n"
          "                  exponential backoff (0.25 s doubling to 8 s); at most 6 requests\n"
          "                  per event within 60 s. Without --idempotency-key each event (each\n"
          "                  stdin line) gets a random key, so a retry never delivers it twice\n"
          "  --demo          send a lifelike mix to orders, signups and metrics until Ctrl-C,\n"
          "                  printing 'CHANNEL EVENT ID' per event; after a 429 or 503 it waits\n"
          "                  as Retry-After says (1 s without one), then goes on\n"
          "  --rate N        --demo: events per second (default 5)\n"
          "  --help, --version\n"
          "\n"
          "An event the hub had already (the same key) prints its first id, and a note on stderr.\n"
          "exit: 0 all accepted; 1 the hub refused an event (status and its error on stderr),\n"
          "could not be reached, or a stdin line is not JSON; 2 usage.\n",
          stdout);
}

static int is_one_line(const char *s)
{
    return *s && !strpbrk(s, "\r\n");
}

/* 1 to max visible ASCII characters (what the hub takes as an Idempotency-Key). */
static int is_key(const char *s, size_t max)
{
    size_t n = strlen(s);

    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return 0;
    return 1;
}

/* Fills o from argv. Returns -1 to exit with *status (help, version, bad usage), else 0. */
static int parse_args(int argc, char **argv, struct pub_opts *o, int *status)
{
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},   {"api-key", required_argument, NULL, 'k'},
        {"event", required_argument, NULL, 'e'}, {"demo", no_argument, NULL, 'd'},
        {"rate", required_argument, NULL, 'r'},  {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},     {"idempotency-key", required_argument, NULL, 'i'},
        {"retry", no_argument, NULL, 'R'},       {NULL, 0, NULL, 0},
    };
    int c, has_rate = 0;

    memset(o, 0, sizeof(*o));
    o->url = PUB_DEFAULT_URL;
    o->rate = PUB_DEMO_RATE_DEFAULT;
    *status = PUB_EXIT_USAGE;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'u': o->url = optarg; break;
        case 'k':
            if (!is_one_line(optarg) || strlen(optarg) > 512) {
                fputs("herald-pub: --api-key: empty, too long or not one line\n", stderr);
                return -1;
            }
            o->api_key = optarg;
            break;
        case 'e':
            if (!is_one_line(optarg)) {
                fputs("herald-pub: --event: empty or not one line\n", stderr);
                return -1;
            }
            o->event = optarg;
            break;
        case 'd': o->is_demo = 1; break;
        case 'i':
            if (!is_key(optarg, PUB_KEY_MAX)) {
                fprintf(stderr,
                        "herald-pub: --idempotency-key: need 1 to %d visible ASCII characters\n",
                        PUB_KEY_MAX);
                return -1;
            }
            o->idempotency_key = optarg;
            break;
        case 'R': o->is_retry = 1; break;
        case 'r':
            if (client_parse_ulong(optarg, PUB_DEMO_RATE_MAX, &o->rate) < 0 || o->rate == 0) {
                fprintf(stderr, "herald-pub: --rate: '%s' is not a number from 1 to %lu\n", optarg,
                        PUB_DEMO_RATE_MAX);
                return -1;
            }
            has_rate = 1;
            break;
        case 'h':
            print_help();
            *status = PUB_EXIT_OK;
            return -1;
        case 'V':
            printf("herald-pub %s\n", HERALD_VERSION);
            *status = PUB_EXIT_OK;
            return -1;
        default: client_bad_option(c, argv, PUB_SYNOPSIS); return -1;
        }
    }
    if (o->is_demo) {
        if (optind != argc || o->event || o->idempotency_key || o->is_retry) {
            fputs("herald-pub: --demo takes no CHANNEL, JSON, --event, --idempotency-key or "
                  "--retry\n",
                  stderr);
            client_usage_error(PUB_SYNOPSIS);
            return -1;
        }
        return 0;
    }
    if (has_rate) {
        fputs("herald-pub: --rate goes with --demo\n", stderr);
        client_usage_error(PUB_SYNOPSIS);
        return -1;
    }
    if (optind == argc || argc - optind > 2) {
        fputs(optind == argc ? "herald-pub: no CHANNEL given\n"
                             : "herald-pub: too many arguments\n",
              stderr);
        client_usage_error(PUB_SYNOPSIS);
        return -1;
    }
    o->channel = argv[optind];
    o->json = optind + 1 < argc ? argv[optind + 1] : NULL;
    if (!o->json && o->idempotency_key && strlen(o->idempotency_key) > PUB_KEY_LINES_MAX) {
        fprintf(stderr,
                "herald-pub: --idempotency-key: at most %d characters with stdin lines (each "
                "line adds -LINE)\n",
                PUB_KEY_LINES_MAX);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct pub_opts opts;
    struct client_url url;
    struct http_conn *conn = NULL;
    const char *err = NULL;
    int status;

    client_set_name("herald-pub");
    memset(&url, 0, sizeof(url));
    if (parse_args(argc, argv, &opts, &status) < 0)
        goto done;
    if (url_parse(opts.url, &url, &err) < 0) {
        fprintf(stderr, "herald-pub: --url: %s\n", err);
        status = PUB_EXIT_USAGE;
        goto done;
    }
    conn = http_conn_new(&url, "herald-pub/" HERALD_VERSION);
    signal(SIGPIPE, SIG_IGN);
    rng = seed();
    if (opts.is_demo)
        status = run_demo(conn, &url, &opts);
    else if (opts.json)
        status = publish_one(conn, &opts);
    else
        status = publish_lines(conn, &opts);
done:
    http_conn_free(conn);
    client_url_free(&url);
    return status;
}
