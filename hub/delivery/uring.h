/* uring.h -- a plane's sends through io_uring: the queues of every connection marked dirty in
 * one loop turn leave as one IORING_OP_SEND each, thousands per io_uring_enter, instead of
 * one send() system call each. Delivery thread only. */
#ifndef HERALD_URING_H
#define HERALD_URING_H

#include <stdbool.h>
#include <stddef.h>

struct plane;
struct uring;

/* The plane's ring, or NULL when the kernel (or a seccomp filter) refuses io_uring: the plane
 * then writes with lws_write. why gets the reason. */
struct uring *uring_new(char *why, size_t whylen);
void uring_free(struct uring *u); /* NULL is a no-op */
/* False once a send did not complete within its batch (never seen): plain writes from then. */
bool uring_is_usable(const struct uring *u);

/* writer_flush_dirty's work through the ring: see uring.c. */
void uring_flush_dirty(struct plane *p, struct uring *u);

#endif
