/* bench_pub.h -- herald-bench's publisher: one thread POSTing events to the hub's /publish
 * over HTTP/1.1 keep-alive connections, one request in flight per connection. Each event is
 * {"channel":C,"data":{"t":SEND_US,"s":SEQ,"p":"xx…"}} padded to the configured size, "t"
 * the CLOCK_REALTIME microseconds when its request was built and "s" a per-channel sequence.
 * Either paced (--rate) or saturating (every connection always busy). */
#ifndef HERALD_BENCH_PUB_H
#define HERALD_BENCH_PUB_H

#include "bench_hist.h"
#include "bench_seqset.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PUB_STATUS_MAX 600 /* answers are counted by status below this; 0: no answer */
#define PUB_ERROR_LEN 256

struct pub_config {
    struct sockaddr_storage dst; /* the hub's --api-listen */
    socklen_t dst_len;
    const char *host;    /* Host header */
    const char *path;    /* "/publish" */
    const char *channel; /* the channel, or the prefix of NAME-0..NAME-(K-1) */
    unsigned channels;   /* K; requests go round the channels, a batch to one channel */
    unsigned size;       /* bytes of each event object, at least pub_min_size() */
    unsigned batch;      /* events per request; 1 sends an object, more an array */
    unsigned inflight;   /* connections, each with one request in flight */
    double rate;         /* events per second; 0: saturate */
    /* Closed loop, 0: off. The publisher holds its next request while more than this many
     * frames are due but not yet received: events sent x frames_per_event minus what
     * pub_set_delivered() last said. */
    uint64_t max_backlog_frames;
    double frames_per_event; /* subscribers per channel, on average */
    /* --peer nchan: POST path?id=CHANNEL with the event's "data" object alone as the body
     * (padded so that the event it stands for still has `size` bytes), batch 1 only; 200, 201
     * and 202 all mean accepted. */
    bool is_nchan;
    /* --verify: keep, per channel, the set of event sequences ("s") answered 202, for
     * pub_acked_sets() */
    bool is_verify;
};

struct pub_counters {
    uint64_t requests;        /* written */
    uint64_t requests_ok;     /* accepted: answered 202 (nchan: 200, 201 or 202) */
    uint64_t requests_failed; /* answered otherwise, or lost with their connection */
    uint64_t events_sent;
    uint64_t events_acked; /* in requests answered 202: the events the hub took */
    uint64_t events_failed;
    uint64_t events_skipped; /* --rate: left out of the schedule when over 100 ms behind */
    uint64_t unanswered;     /* requests still unanswered when the publisher gave up */
    uint64_t connects;       /* connections opened (inflight at first, more if the hub closed) */
    uint64_t held_us;        /* time spent holding for the backlog bound */
    uint64_t overloaded;     /* answered 503 with {"error":"overloaded"} (SPEC.md, Overload) */
    uint64_t retry_after;    /* refusals (not accepted) that carried a Retry-After header */
};

struct publisher;

/* The smallest event size for cfg (an empty "p" and a long "s"). */
size_t pub_min_size(const struct pub_config *cfg);

/* A publisher for cfg (copied; the strings must outlive it). NULL with err set. */
struct publisher *pub_new(const struct pub_config *cfg, char *err, size_t errlen);
void pub_free(struct publisher *p); /* joins first; NULL is a no-op */

/* Opens the inflight connections, waiting up to timeout_ms. Returns 0 when every one is up,
 * else -1 (err set). Call before pub_start() so that the schedule starts on open connections;
 * the thread reopens any connection that fails later. */
int pub_connect(struct publisher *p, int timeout_ms, char *err, size_t errlen);
/* Starts the thread: it publishes until end_us (CLOCK_REALTIME) or pub_stop(), then
 * waits up to 5 s for the answers still due and ends. Returns 0 or -1 (err set). */
int pub_start(struct publisher *p, int64_t end_us, char *err, size_t errlen);
void pub_stop(struct publisher *p); /* asks it to stop sending now; any thread */
/* Tells the publisher how many frames the subscribers received so far (for
 * max_backlog_frames). Any thread. */
void pub_set_delivered(struct publisher *p, uint64_t frames);
bool pub_is_done(struct publisher *p); /* the thread has ended: pub_join() will not block */
void pub_join(struct publisher *p);

/* Any thread, any time. */
void pub_snapshot(struct publisher *p, struct pub_counters *c);
uint64_t pub_acked_on(struct publisher *p, unsigned channel); /* events acked on channel k */
uint64_t pub_status_count(struct publisher *p, unsigned status);
bool pub_is_accepted(const struct publisher *p, unsigned status); /* the status means taken */
void pub_first_error(struct publisher *p, char *out, size_t len);
/* Adds the request round trips (microseconds) to out. After pub_join() only. */
void pub_round_trips(struct publisher *p, struct hist *out);
/* --verify: the sets of events answered 202, one per channel (cfg.channels of them), or NULL
 * without --verify. Owned by p. After pub_join() only. */
const struct seqset *pub_acked_sets(struct publisher *p);

#endif
