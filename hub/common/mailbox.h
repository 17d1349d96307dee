/* mailbox.h -- the one crossing from the control plane to a delivery plane. */
#ifndef HERALD_MAILBOX_H
#define HERALD_MAILBOX_H

#include <stddef.h>

struct message;

enum mail_kind {
    MAIL_EVENT,     /* to a plane: deliver msg (an event, gap or reset) to msg->channel's
                     * subscribers */
    MAIL_DRAIN,     /* to a plane: shutting down, close every client with 1001 */
    MAIL_POSITION,  /* to a plane: data is a struct position_answer */
    MAIL_SUBSCRIBE, /* to the control plane: data is a struct position_request */
    MAIL_TLS,       /* to a plane: data is a struct tls_pair (one reference) for new handshakes */
};

struct mail {
    enum mail_kind kind;
    size_t weight;       /* MAIL_EVENT: the bytes it becomes in its subscribers' queues */
    struct message *msg; /* MAIL_EVENT: one reference, owned by the mail */
    void *data;          /* MAIL_POSITION, MAIL_SUBSCRIBE, MAIL_TLS: owned by the mail */
};

/* Called by mailbox_post() when the queue turns non-empty, on the posting thread: it must be
 * safe from any thread (delivery/plane.c passes lws_cancel_service). */
typedef void mailbox_wake_fn(void *arg);
/* Called by mailbox_drain() for each mail, in posting order, on the draining thread. The
 * handler owns mail->msg (it must drop the reference) and mail->data. */
typedef void mailbox_handle_fn(struct mail *mail, void *arg);

/* max_bytes bounds the wire bytes of the events waiting (SIZE_MAX: no bound). */
struct mailbox *mailbox_new(size_t max_bytes, mailbox_wake_fn *wake, void *wake_arg);
/* Drops whatever is still queued (data freed as its kind says). NULL is a no-op. */
void mailbox_free(struct mailbox *mb);

/* Queues a mail; takes a reference to msg (if any) and ownership of data (if any) only on
 * success. Never blocks beyond the lock. Returns 0, or -1 when msg is an event that would take
 * the events waiting past max_bytes (the plane is not keeping up; gaps, resets and the other
 * kinds always fit, and so does one event in an empty mailbox). Any thread. */
int mailbox_post(struct mailbox *mb, enum mail_kind kind, struct message *msg, void *data);
/* Like mailbox_post, but never wakes the consumer: the poster calls mailbox_flush() once
 * after a batch of posts. Any thread. */
int mailbox_post_quiet(struct mailbox *mb, enum mail_kind kind, struct message *msg, void *data);
/* mailbox_post_quiet of an event that will take weight bytes in its subscribers' queues (its
 * wire length times its subscribers), summed in mailbox_weight(). Any thread. */
int mailbox_post_event(struct mailbox *mb, struct message *msg, size_t weight);
/* Wakes the consumer if mails are waiting. Any thread. */
void mailbox_flush(struct mailbox *mb);
/* Hands every queued mail to fn; returns how many. The consumer's thread only. */
size_t mailbox_drain(struct mailbox *mb, mailbox_handle_fn *fn, void *arg);
/* Mails waiting now (a gauge for metrics). Any thread. */
size_t mailbox_depth(const struct mailbox *mb);
/* Wire bytes of the events waiting now. Any thread. */
size_t mailbox_bytes(const struct mailbox *mb);
/* The weight of the events waiting now: the bytes they will take once fanned out. */
size_t mailbox_weight(const struct mailbox *mb);

#endif
