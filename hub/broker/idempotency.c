/* idempotency.c -- a keyed uthash table of idempotency keys, each on one list in the order it
 * was remembered. Every key lives --idempotency-ttl, so that order is also the order they
 * expire in: expiry and the bytes bound both drop from the list's front. */
#include "idempotency.h"

#include "common/keyhash.h"
#include "common/xalloc.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

struct idem_entry {
    UT_hash_handle hh;
    struct idem_entry *next; /* remembered after this one */
    int64_t at_ms;
    size_t bytes;
    char *answer;
    size_t id_len;
    char id[]; /* scope, NUL, key */
};

struct idempotency {
    int64_t ttl_ms;
    size_t max_bytes, bytes, count;
    struct idem_entry *table;
    struct idem_entry *head, *tail;
};

struct idempotency *idempotency_new(int64_t ttl_ms, size_t max_bytes)
{
    struct idempotency *t = xcalloc(1, sizeof(*t));

    t->ttl_ms = ttl_ms;
    t->max_bytes = max_bytes;
    return t;
}

static void drop_head(struct idempotency *t)
{
    struct idem_entry *e = t->head;

    t->head = e->next;
    if (!t->head)
        t->tail = NULL;
    HASH_DEL(t->table, e);
    t->bytes -= e->bytes;
    t->count--;
    free(e->answer);
    free(e);
}

static void expire(struct idempotency *t, int64_t now_ms)
{
    while (t->head && (now_ms - t->head->at_ms >= t->ttl_ms || t->bytes > t->max_bytes))
        drop_head(t);
}

void idempotency_free(struct idempotency *t)
{
    if (!t)
        return;
    while (t->head)
        drop_head(t);
    free(t);
}

static size_t make_id(char *buf, size_t cap, const char *scope, const char *key)
{
    size_t s = strlen(scope), k = strlen(key);

    if (s + 1 + k > cap)
        return 0;
    memcpy(buf, scope, s);
    buf[s] = '\0';
    memcpy(buf + s + 1, key, k);
    return s + 1 + k;
}

const char *idempotency_find(struct idempotency *t, const char *scope, const char *key,
                             int64_t now_ms)
{
    char id[512];
    size_t n = make_id(id, sizeof(id), scope, key);
    struct idem_entry *e;

    expire(t, now_ms);
    if (!n)
        return NULL;
    HASH_FIND(hh, t->table, id, n, e);
    return e ? e->answer : NULL;
}

void idempotency_put(struct idempotency *t, const char *scope, const char *key, const char *answer,
                     int64_t now_ms)
{
    char id[512];
    size_t n = make_id(id, sizeof(id), scope, key);
    struct idem_entry *e;

    if (!n || idempotency_find(t, scope, key, now_ms))
        return;
    e = xcalloc(1, sizeof(*e) + n);
    memcpy(e->id, id, n);
    e->id_len = n;
    e->answer = xstrdup(answer);
    e->at_ms = now_ms;
    e->bytes = sizeof(*e) + n + strlen(answer) + 1;
    HASH_ADD(hh, t->table, id[0], n, e);
    if (t->tail)
        t->tail->next = e;
    else
        t->head = e;
    t->tail = e;
    t->bytes += e->bytes;
    t->count++;
    expire(t, now_ms);
}

size_t idempotency_count(const struct idempotency *t)
{
    return t->count;
}
