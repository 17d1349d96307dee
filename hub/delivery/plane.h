/* plane.h -- a delivery plane: one thread running one lws context on --listen (/ws and the
 * dashboard files) over its own libev loop, with its connections, its channel index and its
 * mailbox. The control plane sees only this interface; no lws type crosses it. */
#ifndef HERALD_PLANE_H
#define HERALD_PLANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct admission_gate;
struct config;
struct histogram;
struct message;
struct plane;
struct position_answer;
struct position_request;
struct tls_pair;

/* A drain finished on plane (every client closed, or the drain time ran out). Fires once,
 * on the plane's own thread: it must be thread-safe (hub.c uses event_active). */
typedef void plane_done_fn(struct plane *p, void *arg);
/* A subscribe asks where it starts (takes q). Fires on the plane's thread: thread-safe. */
typedef void plane_request_fn(struct position_request *q, void *arg);

/* What a plane needs from the hub. */
struct plane_host {
    struct admission_gate *gate; /* the connection counts all planes share */
    plane_done_fn *done;
    plane_request_fn *request;
    void *arg;
};

/* Creates the plane's lws context and binds --listen (every plane shares the port). Does not
 * start the thread. Returns NULL with err set when the context or the socket cannot be made.
 * Main thread. */
struct plane *plane_new(const struct config *cfg, unsigned index, const struct plane_host *host,
                        char *err, size_t errlen);
/* Starts the plane's thread. Returns 0 or -1. */
int plane_start(struct plane *p);
/* Hands an event to the plane without waking it; plane_flush() wakes it once after a batch.
 * weight: the bytes it will take in this plane's queues (its wire length times the
 * subscribers it will reach), counted in plane_backlog_bytes() until the plane takes it.
 * Takes a reference on success. Returns 0, or -1 when the plane's mailbox is full (the caller
 * tells this plane's subscribers of a gap instead). Any thread. */
int plane_post_quiet(struct plane *p, struct message *msg, size_t weight);
void plane_flush(struct plane *p);
/* Hands the plane the answer to one of its position requests (takes a), and wakes it. Any
 * thread. */
void plane_post_position(struct plane *p, struct position_answer *a);
/* Hands the plane a new certificate pair for its new TLS handshakes (takes a reference of its
 * own; open connections keep theirs). Any thread. */
void plane_post_tls(struct plane *p, struct tls_pair *pair);
/* Asks the plane to close its clients with 1001 within --drain-seconds and refuse new ones;
 * done fires when it has. Any thread. */
void plane_drain(struct plane *p);
/* Stops the thread and joins it. Main thread. */
void plane_stop(struct plane *p);
/* Destroys the context (closing what is left) and frees. Main thread, after plane_stop.
 * NULL is a no-op. */
void plane_free(struct plane *p);
size_t plane_mailbox_depth(const struct plane *p);
/* Bytes taken for delivery on this plane and not yet written: events in its mailbox and what
 * its connections have queued (as of its last loop turn). Any thread. */
size_t plane_backlog_bytes(const struct plane *p);
/* Whether the plane sends through io_uring (--io-uring, and the kernel allowed it). */
bool plane_uses_io_uring(const struct plane *p);
/* The plane's delivery latency histogram (written by its thread only). */
const struct histogram *plane_delivery_latency(const struct plane *p);
/* When the plane's loop last turned (clock_mono_ms()), for the watchdog. Any thread. */
int64_t plane_alive_ms(const struct plane *p);

#endif
