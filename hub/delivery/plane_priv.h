/* plane_priv.h -- what the files of one delivery plane share, and nothing outside delivery/
 * includes: the plane (plane.c), its listen socket (listen.c), its connections and the lws
 * callback (conn.c), SSE streams (sse.c), and the writing of frames (writer.c). Delivery thread
 * only, except the fields marked otherwise. */
#ifndef HERALD_PLANE_PRIV_H
#define HERALD_PLANE_PRIV_H

#include "admission.h"
#include "common/keyhash.h"
#include "common/metrics.h"
#include "pacer.h"
#include "plane.h"
#include "session.h"

#include <ev.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uthash.h>

struct conn;
struct cursor_pos;
struct overflow;
struct sse_stream;
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */
struct tls_pair;
struct uring;

struct plane {
    const struct config *cfg;
    unsigned index;
    struct plane_host host;
    struct admission_gate *gate; /* shared by every plane */
    struct lws_context *ctx;
    struct ev_loop *loop; /* libev, epoll: the plane's thread runs it */
    void *foreign_loops[1];
    struct lws_vhost *vh;
    struct tls_pair *tls; /* the pair new TLS handshakes get (swapped on SIGHUP); NULL: plain */
    char tls_err[256];    /* why the TLS context could not be set up */
    struct ssl_ctx_st *client_ctx; /* the vhost's unused client context (common/tls.h) */
    /* listen.c */
    int listen_fd;
    int spare_fd; /* kept free for accept-and-close when out of descriptors */
    ev_io accept_watcher;
    /* plane.c */
    struct mailbox *mb;
    struct channel_index *idx;
    struct session_limits lim;
    struct conn *conns; /* every open connection, for the sweep and the drain */
    size_t n_conns;
    pthread_t thread;
    bool is_started;
    atomic_bool stop; /* any thread: set by plane_stop() */
    bool is_draining;
    bool is_done; /* done has fired */
    int64_t drain_deadline_ms;
    lws_sorted_usec_list_t sul_drain;
    lws_sorted_usec_list_t sul_alive;
    lws_sorted_usec_list_t sul_sweep;
    struct histogram delivery_latency; /* written by this plane only */
    atomic_llong alive_ms;             /* any thread reads: the watchdog; written every ALIVE_US */
    struct conn *by_id; /* every open connection, by session id (answers find theirs) */
    /* writer.c */
    unsigned char *scratch; /* LWS_PRE + PLANE_SCRATCH_BYTES */
    struct conn **dirty;    /* connections whose queue turned non-empty this loop turn */
    size_t n_dirty, cap_dirty;
    struct session_stats stats; /* what this plane's sessions have queued */
    struct session_jam jam;     /* the sweep's watch for a jam (writer_break_jam) */
    size_t overflow_bytes;      /* queued past this, events become pending gaps */
    struct overflow *overflow;  /* those gaps */
    ev_prepare prepare;         /* once per loop turn: writer_flush_dirty and the gauges */
    struct uring *uring;        /* NULL: sends go through lws_write one by one */
    struct pacer pacer;         /* paced subscriptions' timer entries (max_rate) */
    ev_timer pace_timer;
    int64_t pace_armed_us;      /* when pace_timer is set to fire; 0: not set */
    atomic_size_t queued_bytes; /* any thread reads: stats.queued_bytes as of the last turn */
    /* conn.c */
    struct lws_protocols protocols[2];
    struct lws_http_mount mount;     /* "/": the dashboard's files */
    struct lws_http_mount sse_mount; /* "/sse": the "herald" protocol's LWS_CALLBACK_HTTP */
    lws_retry_bo_t retry;
};

#define PLANE_SCRATCH_BYTES (64 * 1024) /* one coalesced write */
#define PLANE_CUT_GRACE_SECS 3 /* a cut client's socket gets this long to take its close frame */

/* One client connection: the link between a wsi and its session (lws keeps this as the
 * wsi's per-session data, zeroed when the connection is made). */
struct conn {
    struct session *s; /* NULL until ESTABLISHED, and again after CLOSED */
    uint64_t id;       /* the session's, key of the plane's by_id table */
    UT_hash_handle hh;
    struct lws *wsi;
    struct conn *prev, *next; /* the plane's list */
    enum close_reason why;    /* what ended it, for metrics */
    struct admission adm;     /* what the handshake decided and holds */
    bool is_dropped;          /* silent too long: being killed */
    size_t dirty_slot;        /* 1 + its index in the plane's dirty list; 0: not in it */
    struct sse_stream *sse;   /* an SSE stream's own state (sse_stream.c); NULL: a WebSocket */
};

/* conn.c */
const struct lws_protocols *conn_protocol(struct plane *p); /* the "herald" protocol */
/* Reads the request's headers and decides its admission on path want into c->adm (which
 * admission_release() must give back). */
void conn_admit(struct plane *p, struct conn *c, struct lws *wsi, const char *want);
/* Query argument name= ("channels="), decoded; never cut short (too long is HDR_TOO_LONG). */
struct hdr conn_query_arg(struct lws *wsi, const char *name, char *buf, size_t cap);
/* Answers an HTTP request with status and {"error":code,"message":text} (plain texts: no
 * quote or backslash), with Retry-After. Returns 0, or -1 when it could not be written. */
int conn_http_error(struct lws *wsi, unsigned status, const char *code, const char *text);
/* An admitted connection begins: its session, the plane's lists, the counts, its token's
 * expiry. */
void conn_open(struct plane *p, struct conn *c, struct lws *wsi);
/* Queues the welcome frame. */
void conn_welcome(struct plane *p, struct conn *c);
/* Joins one valid channel named at connect (channels=), for a frame token as a subscribe
 * frame: with last, since when not NULL (an SSE stream's Last-Event-ID) and max_rate (0:
 * not paced; an SSE stream's max_rate=). */
void conn_join_listed(struct plane *p, struct conn *c, const char *name, size_t len, uint32_t last,
                      const struct cursor_pos *since, uint32_t max_rate);
/* The answer to one of the plane's position requests (takes a). */
void conn_position(struct plane *p, struct position_answer *a);
/* Ends c from outside its own callback (or inside it): marks it closing with code, drops its
 * queue (unless keep_queue: a drain lets it flush) and asks for WRITEABLE, where the close
 * frame leaves. A socket that cannot take even that is killed after grace_secs. */
void conn_cut(struct conn *c, uint16_t code, const char *reason, enum close_reason why,
              bool keep_queue, int grace_secs);
/* The sweep's work on one connection: pings, silence, token expiry. */
void conn_sweep(struct plane *p, struct conn *c, int64_t now_ms, int64_t now_s);

/* writer.c */
/* Hands msg to every subscriber of its channel on this plane. Borrows msg. */
void writer_fanout(struct plane *p, struct message *msg);
/* Queues a reply made for c alone; consumes msg. A full queue cuts c (1013). */
void writer_reply(struct conn *c, struct message *msg);
/* Queues an event for c outside fan-out (a replay, a held event): within a replay's bound,
 * not the queue budget, since a replay is at most the channel's history. Borrows msg. */
void writer_replay(struct conn *c, struct message *msg);
/* LWS_CALLBACK_SERVER_WRITEABLE: writes what c has queued. Returns the callback's answer. */
int writer_on_writeable(struct plane *p, struct conn *c);
/* Once per loop turn: writes the queue of every connection marked dirty, straight. */
void writer_flush_dirty(struct plane *p);
/* The i-th connection of the dirty list, unmarked, when it may be written straight; NULL when
 * it closed since it was marked, or is closing or lws holds bytes of its own (then its
 * writeable callback sends). */
struct conn *writer_dirty_take(struct plane *p, size_t i);
/* Copies a due ping and the queued frames that fit in cap bytes into out, popping them and
 * counting the events; returns the bytes. A first frame larger than cap stays queued. */
size_t writer_take(struct plane *p, struct conn *c, unsigned char *out, size_t cap);
/* Once per loop turn: sends the pending gaps once the plane's backlog is below its bound. */
void writer_flush_overflow(struct plane *p);
/* The pacer's due entries: paced events whose slot has come. */
void writer_pace(struct plane *p);
/* In a jam (session_jam_update): when a reader of this plane is caught up, cuts the reader
 * with the longest queue past its budget whose socket is choked (1013). The sweep calls it. */
void writer_break_jam(struct plane *p);

/* sse.c */
/* LWS_CALLBACK_HTTP on /sse: admission, the query and Last-Event-ID, then the response's
 * head, and c becomes an open stream (or the request is refused with a JSON error). Returns
 * the callback's answer. */
int sse_on_request(struct plane *p, struct conn *c, struct lws *wsi);
#define SSE_PING ": hb\n" /* a heartbeat: a comment line */
/* on an unnamed stream (names=0) an event, which an EventSource reports (comments it does
 * not): herald.js tells a quiet stream from a dead one by it */
#define SSE_PING_EVENT "data: {\"type\":\"heartbeat\"}\n\n"
/* The stream of c (closing, its queue written) ends with a comment saying why. Returns -1,
 * the callback's answer that closes the connection. */
int sse_end(struct conn *c);

/* listen.c */
/* Opens the plane's SO_REUSEPORT listen socket on --listen. Returns 0, or -1 with err set. */
int listen_open(struct plane *p, char *err, size_t errlen);
/* Starts accepting on the plane's loop (its thread, before ev_run). */
void listen_start(struct plane *p);
/* Stops accepting and closes the socket. */
void listen_close(struct plane *p);

/* plane.c */
/* LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS: sets up the vhost's SSL_CTX for the
 * plane's pair (common/tls.c). Returns 0, or -1 (the callback's answer: lws then fails the
 * context) with p->tls_err set. */
int plane_tls_ctx(struct plane *p, struct ssl_ctx_st *ctx);
/* LWS_CALLBACK_EVENT_WAIT_CANCELLED: the mailbox was posted to, or the plane is stopping. */
void plane_on_wake(struct plane *p);
/* A connection was established or closed: the plane's list and the drain. */
void plane_add_conn(struct plane *p, struct conn *c);
void plane_remove_conn(struct plane *p, struct conn *c);
/* c's queue turned non-empty: it is written at the end of this loop turn. */
void plane_mark_dirty(struct plane *p, struct conn *c);

#endif
