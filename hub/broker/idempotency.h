/* idempotency.h -- the idempotency keys this process remembers (the in-process broker; with
 * Redis the keys live in Redis): per scope and key, the 202 answer of the first publish, for
 * --idempotency-ttl, within a bound on the bytes kept (the oldest are forgotten first).
 * Control thread only. */
#ifndef HERALD_IDEMPOTENCY_H
#define HERALD_IDEMPOTENCY_H

#include <stddef.h>
#include <stdint.h>

struct idempotency;

struct idempotency *idempotency_new(int64_t ttl_ms, size_t max_bytes);
void idempotency_free(struct idempotency *t); /* NULL is a no-op */
/* The answer remembered for key in scope, or NULL (borrowed until the next call). */
const char *idempotency_find(struct idempotency *t, const char *scope, const char *key,
                             int64_t now_ms);
/* Remembers answer for key in scope from now_ms (copied). */
void idempotency_put(struct idempotency *t, const char *scope, const char *key, const char *answer,
                     int64_t now_ms);
size_t idempotency_count(const struct idempotency *t);

#endif
