/* mailbox.h -- the one crossing from the control plane to a delivery plane. */
#ifndef HERALD_MAILBOX_H
#define HERALD_MAILBOX_H

#include <stddef.h>

struct message;

enum mail_kind {
    MAIL_EVENT, /* deliver msg to the plane's subscribers of msg->channel */
    MAIL_DRAIN, /* shutting down: close every client with 1001 */
};

struct mail {
    enum mail_kind kind;
    struct message *msg; /* MAIL_EVENT: one reference, owned by the mail */
};

/* Called by mailbox_post() when the queue turns non-empty, on the posting thread: it must be
 * safe from any thread (delivery/plane.c passes lws_cancel_service). */
typedef void mailbox_wake_fn(void *arg);
/* Called by mailbox_drain() for each mail, in posting order, on the draining thread. The
 * handler owns mail->msg (it must drop the reference). */
typedef void mailbox_handle_fn(struct mail *mail, void *arg);

struct mailbox *mailbox_new(size_t max_mails, mailbox_wake_fn *wake, void *wake_arg);
/* Drops whatever is still queued. NULL is a no-op. */
void mailbox_free(struct mailbox *mb);

/* Queues a mail; takes a reference to msg (if any) only on success. Never blocks beyond the
 * lock. Returns 0, or -1 when max_mails are already waiting (the plane is not keeping up).
 * Any thread. */
int mailbox_post(struct mailbox *mb, enum mail_kind kind, struct message *msg);
/* Like mailbox_post, but never wakes the consumer: the poster calls mailbox_flush() once
 * after a batch of posts. Any thread. */
int mailbox_post_quiet(struct mailbox *mb, enum mail_kind kind, struct message *msg);
/* Wakes the consumer if mails are waiting. Any thread. */
void mailbox_flush(struct mailbox *mb);
/* Hands every queued mail to fn; returns how many. The consumer's thread only. */
size_t mailbox_drain(struct mailbox *mb, mailbox_handle_fn *fn, void *arg);
/* Mails waiting now (a gauge for metrics). Any thread. */
size_t mailbox_depth(const struct mailbox *mb);

#endif
