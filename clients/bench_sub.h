/* bench_sub.h -- herald-bench's subscribers: one process's share of the N WebSocket
 * connections, spread over threads that each own an epoll set. The group connects (paced),
 * handshakes, waits for each connection's "subscribed", then counts event frames and records
 * each one's latency. The caller (herald-bench.c) reads counters while it runs and, after
 * sub_group_stop(), the histogram of the measured window. */
#ifndef HERALD_BENCH_SUB_H
#define HERALD_BENCH_SUB_H

#include "bench_hist.h"
#include "bench_seqset.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* Close codes 1000..1015 have a slot each; then any other code; then a connection that ended
 * without a close frame (EOF or reset). */
#define SUB_CLOSE_CODES 16
#define SUB_CLOSE_OTHER SUB_CLOSE_CODES
#define SUB_CLOSE_NO_FRAME (SUB_CLOSE_CODES + 1)
#define SUB_CLOSE_SLOTS (SUB_CLOSE_CODES + 2)

#define SUB_ERROR_LEN 200

struct sub_config {
    struct sockaddr_storage dst; /* the hub's --listen */
    socklen_t dst_len;
    const char *host;              /* Host header: "127.0.0.1:8080" */
    const char *path;              /* "/ws" with any query the URL had */
    const char *channel;           /* the channel, or the prefix of NAME-0..NAME-(K-1) */
    unsigned channels;             /* K; 1: every subscriber takes `channel` itself */
    uint32_t first, stride;        /* this group holds subscribers first, first + stride, ... < n */
    uint32_t n;                    /* N, over every group */
    unsigned threads;              /* >= 1 */
    double connect_rate;           /* connections per second for this group; 0: as fast as it can */
    const struct sockaddr_in *src; /* --source-ips, indexed by subscriber % n_src; may be NULL */
    unsigned n_src;
    /* --peer nchan: GET path?id=CHANNEL (not channels=), the 101 counts as subscribed (nchan
     * sends no welcome or subscribed), and every text message is an event: the publisher's
     * body as it was, carrying "t" and "s". */
    bool is_nchan;
    /* --verify: each connection keeps the set of "s" it received (a bit per event), counts
     * duplicates as they come, and sub_group_verify() compares the sets with the publisher's. */
    bool is_verify;
};

/* Sums over the group; every count only grows except open_now. Plain data, so that a worker
 * process can send it through a pipe as it is. */
struct sub_counters {
    uint64_t started;         /* connect() issued */
    uint64_t opened;          /* handshake answered 101 with the right accept */
    uint64_t subscribed;      /* got its "subscribed" */
    uint64_t failed;          /* connect, handshake or subscribe failed */
    uint64_t open_now;        /* open WebSockets */
    uint64_t frames;          /* event frames, all */
    uint64_t frames_measured; /* event frames received inside the window */
    uint64_t bytes;           /* bytes read after the handshakes */
    uint64_t bad_events;      /* event frames without a readable "t" and "s" */
    uint64_t closes[SUB_CLOSE_SLOTS];
    /* --verify, after sub_group_verify(): */
    uint64_t duplicates;    /* events a connection received more than once (counted as they come) */
    uint64_t verified;      /* connections still open at the end, whose sets were compared */
    uint64_t missing;       /* over those: events answered 202 on their channel, never received */
    uint64_t incomplete;    /* those of them missing at least one */
    uint64_t unacked;       /* over every connection: events received but never answered 202 */
    uint64_t verify_failed; /* 1 when a set could not be kept (out of memory): no verdict */
};

struct sub_group;

/* A group for cfg (copied; the strings and src must outlive the group). NULL with err set. */
struct sub_group *sub_group_new(const struct sub_config *cfg, char *err, size_t errlen);
void sub_group_free(struct sub_group *g); /* stops it first; NULL is a no-op */

/* Starts the threads, which start connecting at once. Returns 0 or -1 (err set). */
int sub_group_start(struct sub_group *g, char *err, size_t errlen);
/* Sets the measured window, CLOCK_REALTIME microseconds [start, end): frames received inside
 * it count as frames_measured, and events sent inside it go into the measured histogram. */
void sub_group_set_window(struct sub_group *g, int64_t start_us, int64_t end_us);
/* Adds the group's counters to c and its all-time latency histogram to live (either may be
 * NULL). Any thread, any time. */
void sub_group_snapshot(struct sub_group *g, struct sub_counters *c, struct hist *live);
/* The first failure of a connection, "" when none. Any thread. */
void sub_group_first_error(struct sub_group *g, char *out, size_t len);
/* Stops the threads and closes every connection (a close frame 1000 first, where the socket
 * takes it). Idempotent. */
void sub_group_stop(struct sub_group *g);
/* Adds the measured-window histogram to out. After sub_group_stop() only. */
void sub_group_measured(struct sub_group *g, struct hist *out);
/* --verify, after sub_group_stop(): compares what each connection received with acked (the
 * events answered 202, one set per channel, cfg.channels of them) and adds the verdict to the
 * counters (verified, missing, incomplete, unacked). Frees the connections' sets. Once. */
void sub_group_verify(struct sub_group *g, const struct seqset *acked);

void sub_counters_add(struct sub_counters *dst, const struct sub_counters *src);
/* The connections that ended, every close slot summed. */
uint64_t sub_counters_closes(const struct sub_counters *c);

#endif
