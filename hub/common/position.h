/* position.h -- a subscription's position, asked by a delivery plane and answered by the
 * control plane (control/sequencer.c): where in its channel's numbering a new subscription
 * starts, and which kept events it replays first (since, last). Both cross the thread line
 * in a mailbox (common/mailbox.h); whoever holds one frees it. */
#ifndef HERALD_POSITION_H
#define HERALD_POSITION_H

#include "message.h"

#include <stddef.h>
#include <stdint.h>

struct position_request {
    unsigned plane; /* the asking plane */
    uint64_t conn;  /* its connection (session id) */
    char channel[MESSAGE_CHANNEL_MAX + 1];
    size_t channel_len;
    int has_since; /* resume after since_epoch:since_seq */
    char since_epoch[MESSAGE_EPOCH_MAX + 1];
    uint64_t since_seq;
    uint32_t last; /* the newest `last` kept events (when since is absent or cannot be kept) */
    char *ref;     /* the subscribe frame's "ref" as JSON, or NULL (owned) */
};

struct position_answer {
    uint64_t conn;
    char channel[MESSAGE_CHANNEL_MAX + 1];
    size_t channel_len;
    char epoch[MESSAGE_EPOCH_MAX + 1];
    uint64_t seq;            /* the position: events after seq follow the replay live */
    int recovered;           /* -1: since was not asked; else 0 or 1 */
    struct message **replay; /* owned references, oldest first, each seq <= seq */
    size_t n;
    char *ref;         /* moved from the request */
    const char *error; /* static: no position could be had (an error frame answers) */
};

void position_request_free(struct position_request *q); /* NULL is a no-op */
void position_answer_free(struct position_answer *a);   /* NULL is a no-op */

#endif
