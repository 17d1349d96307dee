/* hub.h -- the running hub as the control plane sees it: config, broker, delivery planes,
 * API, drain state. Control thread only, unless a field says otherwise. */
#ifndef HERALD_HUB_H
#define HERALD_HUB_H

#include "event.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct admission_gate;
struct api;
struct broker;
struct config;
struct event;
struct event_base;
struct plane;
struct history;
struct mailbox;
struct overflow;
struct pubrate;
struct sequencer;

struct hub {
    const struct config *cfg;
    struct event_base *base;
    struct broker *broker;
    struct history *local;   /* numbering and history of the hub's own '$' channels */
    struct sequencer *seq;   /* between the broker and the planes */
    struct mailbox *inbox;   /* the planes' position requests */
    struct event *ev_inbox;  /* activated from the planes' threads */
    struct pubrate *pubrate; /* NULL: no --publish-rate */
    struct admission_gate *gate;
    struct api *api;
    struct plane **planes;
    struct overflow **overflow; /* per plane: events its full mailbox refused, as pending gaps */
    unsigned n_planes;
    atomic_uint planes_done; /* drains finished: counted by the planes' threads */
    struct event_ids ids;
    bool is_draining;
    int64_t started_ms;
    struct event *ev_stats;      /* $stats, once a second */
    struct event *ev_plane_done; /* activated from the planes' threads */
    struct event *ev_wake;       /* wakes the planes posted to during this loop turn */
    struct event *ev_overflow;   /* retries the pending gaps of full mailboxes */
    uint64_t dirty;              /* planes posted to and not yet woken */
    bool wake_pending;
    struct event *ev_drain_deadline;
    struct event *ev_systemd; /* READY=1, STATUS=, WATCHDOG=1 */
    uint64_t watchdog_usec;
    bool sent_ready, was_ready;
};

/* Builds every part in start order (broker, planes, API) and starts the planes. Returns 0,
 * or -1 with err set (the caller exits 1) after freeing what it built. */
int hub_start(struct hub *h, const struct config *cfg, struct event_base *base, char *err,
              size_t errlen);
/* Begins the drain (SIGTERM/SIGINT): /ready 503, publishes 503, clients closed with 1001;
 * the event loop exits when every plane is done or the drain time has passed. */
void hub_drain(struct hub *h);
/* SIGHUP: re-reads --tls-cert and --tls-key; a pair that passes its checks goes to every plane
 * for its new handshakes (open connections stay), one that does not is logged and the current
 * one kept. Never stops the hub. Without TLS, only logs. */
void hub_reload(struct hub *h);
/* Stops the planes and frees every part, in reverse order. */
void hub_stop(struct hub *h);

#endif
