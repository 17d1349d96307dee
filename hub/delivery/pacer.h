/* pacer.h -- a plane's timer entries for paced subscriptions (max_rate): a binary min-heap of
 * (due time, connection id, channel). An entry names its subscription by id and name, not by
 * pointer: the member entry moves when others leave, and the connection may be gone by the
 * time the entry is due. No lws; delivery thread only. */
#ifndef HERALD_PACER_H
#define HERALD_PACER_H

#include "common/channel_name.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pace_entry {
    int64_t due_us; /* monotonic */
    uint64_t conn;
    uint8_t channel_len;
    char channel[CHANNEL_NAME_MAX + 1];
};

struct pacer {
    struct pace_entry *v;
    size_t n, cap;
};

void pacer_add(struct pacer *pc, int64_t due_us, uint64_t conn, const char *channel, size_t len);
/* The earliest due time, or 0 when empty. */
int64_t pacer_next(const struct pacer *pc);
/* Takes the earliest entry into *out when it is due by now_us. */
bool pacer_pop(struct pacer *pc, int64_t now_us, struct pace_entry *out);
void pacer_clear(struct pacer *pc);

#endif
