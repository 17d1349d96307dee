/* redis.c -- the Redis broker: many hubs, one shared pub/sub channel.
 * Control thread. Two links, because a subscribed connection cannot PUBLISH: `sub` holds the
 * SUBSCRIBE and hands every event that comes back to deliver; `pub` pipelines PUBLISHes, and
 * a publish is done (202) only when Redis answered its PUBLISH. A batch is one PUBLISH, so it
 * is taken or refused whole. Every hub delivers only what comes back from the subscription:
 * one path and one order on every instance.
 *
 * hiredis 0.14.1 has no reconnect and no timeouts, so this file keeps them: a link that drops,
 * fails to connect, or does not finish AUTH/SELECT/SUBSCRIBE within a deadline is freed and
 * retried on a capped, jittered exponential backoff (first retry within 100 ms). A dead
 * subscription on a live socket is caught by a heartbeat: each hub publishes one a second and
 * expects to hear its own back; three seconds of silence resets both links. Each link's state
 * changes only in link_set_state(), which logs the transitions (not every retry). Only this
 * file includes hiredis.
 *
 * With several --redis-url entries this broker is one shard of broker/sharded.c: it tags its
 * logs ("redis/<shard>") and metrics (metrics.redis[shard]) and writes heartbeats of version 3,
 * which name the shard and the digest of the whole list; a heartbeat from a hub whose list
 * differs (or that has one Redis where this hub has shards, or the other way round) makes this
 * hub unready until it has not been heard for HEARTBEAT_LOST_MS. */
#include "broker.h"

#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/message.h"
#include "common/metrics.h"
#include "common/redis_url.h"
#include "common/shard.h"
#include "common/xalloc.h"
#include "control/pubrate.h"
#include "redis_wire.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_FIRST_MS 100
#define BACKOFF_CAP_MS 1500    /* so a link is back within 2 s of Redis */
#define SETUP_DEADLINE_MS 2000 /* connect + AUTH + SELECT + SUBSCRIBE */
#define HEARTBEAT_MS 1000      /* published every second, checked every 250 ms */
#define HEARTBEAT_CHECK_MS 250
#define HEARTBEAT_LOST_MS 3000

enum link_state { LINK_DOWN, LINK_CONNECTING, LINK_UP };
static const char *const state_names[] = {"down", "connecting", "up"};

struct broker_redis;

struct link {
    const char *name; /* "sub" or "pub" */
    struct broker_redis *r;
    redisAsyncContext *ac; /* NULL when down; ac->data points back here while it is ours */
    enum link_state state; /* written only by link_set_state() */
    unsigned attempt;      /* failed attempts since the link was last up */
    unsigned setup_pending;
    bool was_ever_up;
    struct event *ev_retry;
    struct event *ev_deadline;
    struct evdns_getaddrinfo_request *resolving; /* the host name's lookup, while pending */
};

struct broker_redis {
    struct broker base;
    const struct config *cfg;
    struct event_base *evb;
    char publish_sha[41], read_sha[41];
    bool scripts_loaded; /* on the current pub link */
    struct redis_url url;
    struct evdns_base *dns; /* resolves url.host off the loop (hiredis would block) */
    char *channel;
    char *instance;
    size_t max_frame; /* largest event frame accepted from the channel */
    struct link sub, pub;
    struct event *ev_heartbeat;
    uint64_t hb_seq;
    uint64_t nonce;        /* this process's: a heartbeat with our id and another nonce is a twin */
    int64_t started_ms;    /* wall clock at start: the younger of two twins yields */
    int64_t hb_sent_ms;    /* monotonic: when the last heartbeat was published */
    uint64_t rng;          /* xorshift64 state for the backoff jitter, seeded per process */
    int64_t hb_heard_ms;   /* monotonic: when our own heartbeat last came back */
    int64_t twin_heard_ms; /* monotonic: when an older hub with our --instance-id was last heard */
    int64_t twin_logged_ms; /* monotonic: when a younger one was last logged */
    bool is_closing;        /* redis_free() runs: callbacks only clean up */
    int64_t bad_logged_ms;  /* monotonic: when dropped records were last logged */
    size_t bad_since_log;
    bool is_ready;              /* last readiness logged */
    unsigned index, count;      /* this Redis's place among the shards; count 1: one Redis */
    uint64_t digest;            /* of the --redis-url list, in heartbeats when count > 1 */
    char name[SHARD_NAME_MAX];  /* redis://host:port/db */
    char tag[16];               /* of its log lines: "redis", or "redis/<index>" with shards */
    struct metrics_redis *m;    /* metrics.redis[index] */
    int64_t mismatch_heard_ms;  /* monotonic: a hub with another --redis-url list was heard */
    int64_t mismatch_logged_ms; /* monotonic: when that was last logged */
    char mismatch_peer[128];    /* and of which hub */
    bool resubscribe_pending;   /* the subscription is back: tell once the pub link can read */
};

struct pub_req {
    struct broker_redis *r;
    broker_done_fn *done;
    void *arg;
    size_t n;
};

#define SEQUENCE_TTL_MS (30LL * 24 * 3600 * 1000)

static const char publish_script[] =
    "local n = tonumber(ARGV[2])\n"
    "local size = tonumber(ARGV[3])\n"
    "if ARGV[7] ~= '' then\n"
    "  local seen = redis.call('GET', KEYS[2*n+1])\n"
    "  if seen then return {1, seen} end\n"
    "end\n"
    "local parts = {'H2E\\n'}\n"
    "for i = 1, n do\n"
    "  local hk, sk, a = KEYS[2*i-1], KEYS[2*i], 8 + 3*(i-1)\n"
    "  local epoch = redis.call('HGET', hk, 'e')\n"
    "  if not epoch then\n"
    "    epoch = ARGV[6]\n"
    "    redis.call('HSET', hk, 'e', epoch)\n"
    "    redis.call('DEL', sk)\n"
    "  end\n"
    "  local seq = redis.call('HINCRBY', hk, 's', 1)\n"
    "  redis.call('PEXPIRE', hk, ARGV[5])\n"
    "  local frame = ARGV[a+2] .. ',\"seq\":' .. seq .. ARGV[a+3]\n"
    "  if size > 0 then\n"
    "    redis.call('XADD', sk, 'MAXLEN', size, seq .. '-0', 'f', frame)\n"
    "    redis.call('PEXPIRE', sk, ARGV[4])\n"
    "  end\n"
    "  parts[#parts+1] = ARGV[a+1] .. '\\t' .. epoch .. '\\t' .. seq .. '\\t' .. frame .. '\\n'\n"
    "end\n"
    "redis.call('PUBLISH', ARGV[1], table.concat(parts))\n"
    "if ARGV[7] ~= '' then redis.call('SET', KEYS[2*n+1], ARGV[8], 'PX', ARGV[7]) end\n"
    "return {0}\n";

static const char read_script[] =
    "local e = redis.call('HGET', KEYS[1], 'e')\n"
    "if not e then\n"
    "  e = ARGV[4]\n"
    "  redis.call('HSET', KEYS[1], 'e', e)\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[5])\n"
    "  redis.call('DEL', KEYS[2])\n"
    "end\n"
    "local out = {e, redis.call('HGET', KEYS[1], 's') or '0'}\n"
    "local entries = {}\n"
    "if ARGV[1] == 's' then\n"
    "  if tonumber(ARGV[3]) > 0 then\n"
    "    entries = redis.call('XRANGE', KEYS[2], '(' .. ARGV[2] .. '-0', '+', 'COUNT', ARGV[3])\n"
    "  else\n"
    "    entries = redis.call('XRANGE', KEYS[2], '(' .. ARGV[2] .. '-0', '+')\n"
    "  end\n"
    "elseif ARGV[1] == 'l' and tonumber(ARGV[2]) > 0 then\n"
    "  local rev = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[2])\n"
    "  for i = #rev, 1, -1 do entries[#entries+1] = rev[i] end\n"
    "end\n"
    "for i = 1, #entries do\n"
    "  out[#out+1] = entries[i][1]\n"
    "  out[#out+1] = entries[i][2][2]\n"
    "end\n"
    "return out\n";

static void link_open(struct link *l);

/* An older hub with our --instance-id was heard lately: its heartbeats would pass for ours,
 * so this one cannot tell a dead subscription, and stays unready. */
static bool has_twin(const struct broker_redis *r)
{
    return r->twin_heard_ms && clock_mono_ms() - r->twin_heard_ms <= HEARTBEAT_LOST_MS;
}

/* A hub given another --redis-url list was heard lately. */
static bool has_mismatch(const struct broker_redis *r)
{
    return r->mismatch_heard_ms && clock_mono_ms() - r->mismatch_heard_ms <= HEARTBEAT_LOST_MS;
}

/* Both links up and our own heartbeat heard: publishes and deliveries go through. */
static bool is_up(const struct broker_redis *r)
{
    return r->sub.state == LINK_UP && r->pub.state == LINK_UP &&
           clock_mono_ms() - r->hb_heard_ms <= HEARTBEAT_LOST_MS;
}

static bool compute_ready(const struct broker_redis *r)
{
    return is_up(r) && !has_twin(r) && !has_mismatch(r);
}

/* Logs readiness changes once and keeps the gauges. */
static void update_ready(struct broker_redis *r)
{
    bool ready = compute_ready(r);

    atomic_store_explicit(&r->m->connected, r->sub.state == LINK_UP && r->pub.state == LINK_UP,
                          memory_order_relaxed);
    atomic_store_explicit(&r->m->ready, is_up(r), memory_order_relaxed);
    atomic_store_explicit(&r->m->mismatch, has_mismatch(r), memory_order_relaxed);
    if (ready == r->is_ready)
        return;
    r->is_ready = ready;
    if (ready && r->count > 1)
        log_info(r->tag, "shard %u ready: subscribed to %s on %s:%d", r->index, r->channel,
                 r->url.host, r->url.port);
    else if (ready)
        log_info(r->tag, "broker ready: subscribed to %s on %s:%d", r->channel, r->url.host,
                 r->url.port);
    else if (has_twin(r))
        log_error(r->tag,
                  "broker not ready: another hub runs with --instance-id %s; /ready and "
                  "publishes answer 503 until it is gone or this one is renamed",
                  r->instance);
    else if (has_mismatch(r))
        log_error(r->tag,
                  "broker not ready: hubs on %s were given different --redis-url lists; "
                  "/ready and publishes answer 503 until they agree",
                  r->name);
    else if (r->count > 1)
        log_warn(r->tag,
                 "shard %u (%s) not ready: publishes to its channels answer 503 until it is back",
                 r->index, r->name);
    else
        log_warn(r->tag, "broker not ready: /ready and publishes answer 503 until Redis is back");
}

static void link_set_state(struct link *l, enum link_state state, const char *why)
{
    enum link_state old = l->state;

    if (state == old)
        return;
    l->state = state;
    if (state == LINK_UP) {
        if (l->was_ever_up)
            log_info(l->r->tag, "%s link up again after %u failed attempts", l->name, l->attempt);
        else
            log_info(l->r->tag, "%s link up", l->name);
        l->was_ever_up = true;
        l->attempt = 0;
        event_del(l->ev_deadline);
    } else if (state == LINK_DOWN && old == LINK_UP) {
        log_warn(l->r->tag, "%s link lost: %s; reconnecting", l->name, why ? why : "unknown");
    } else if (state == LINK_DOWN && l->attempt == 0 && !l->was_ever_up) {
        log_warn(l->r->tag, "%s link cannot connect to %s:%d: %s; retrying", l->name,
                 l->r->url.host, l->r->url.port, why ? why : "unknown");
    } else {
        log_debug(l->r->tag, "%s link %s -> %s%s%s", l->name, state_names[old], state_names[state],
                  why ? ": " : "", why ? why : "");
    }
    if (state == LINK_UP && l->r->resubscribe_pending && l->r->sub.state == LINK_UP &&
        l->r->pub.state == LINK_UP) {
        /* after the pub link too, so that the sequencer's reads of what was missed can go */
        l->r->resubscribe_pending = false;
        if (l->r->base.resubscribed)
            l->r->base.resubscribed(l->r->base.deliver_arg, l->r->index);
    }
    update_ready(l->r);
}

/* xorshift64: each hub draws its own jitter (seeded from getrandom), so hubs that lost the
 * same Redis do not all reconnect at the same instant. */
static uint64_t next_random(struct broker_redis *r)
{
    r->rng ^= r->rng << 13;
    r->rng ^= r->rng >> 7;
    r->rng ^= r->rng << 17;
    return r->rng;
}

/* Down: schedule the next attempt with full jitter over [d/2, d], d doubling from 100 ms. */
static void link_down(struct link *l, const char *why)
{
    unsigned shift = l->attempt < 10 ? l->attempt : 10;
    long d = BACKOFF_FIRST_MS << shift;
    struct timeval tv;

    if (d > BACKOFF_CAP_MS)
        d = BACKOFF_CAP_MS;
    d = d / 2 + (long)(next_random(l->r) % (uint64_t)(d / 2 + 1));
    link_set_state(l, LINK_DOWN, why);
    l->attempt++;
    event_del(l->ev_deadline);
    tv.tv_sec = d / 1000;
    tv.tv_usec = (d % 1000) * 1000;
    evtimer_add(l->ev_retry, &tv);
}

/* Frees the link's context from outside any hiredis callback: pending replies fire with NULL
 * (so pending publishes answer 503), then the link retries. */
static void link_reset(struct link *l, const char *why)
{
    redisAsyncContext *ac = l->ac;

    if (ac) {
        l->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    link_down(l, why);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct link *l = arg;

    (void)fd;
    (void)what;
    metrics_add(&l->r->m->reconnects, 1);
    link_open(l);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct link *l = arg;

    (void)fd;
    (void)what;
    if (l->resolving) { /* on_resolved takes the link down */
        evdns_getaddrinfo_cancel(l->resolving);
        return;
    }
    if (l->state != LINK_UP)
        link_reset(l, "no answer from Redis within the connect deadline");
}

/* --- the subscription ---------------------------------------------------------------------- */

static struct message *message_of_frame(const char *channel, size_t channel_len, const char *epoch,
                                        uint64_t seq, const char *frame, size_t len);

static void deliver_record(const struct redis_wire_record *rec, void *arg)
{
    struct broker_redis *r = arg;
    char epoch[MESSAGE_EPOCH_MAX + 1];
    struct message *msg;

    snprintf(epoch, sizeof(epoch), "%.*s", (int)rec->epoch_len, rec->epoch);
    msg = message_of_frame(rec->channel, rec->channel_len, epoch, rec->seq, rec->frame,
                           rec->frame_len);
    r->base.deliver(msg, r->base.deliver_arg);
    message_unref(&msg);
}

/* Another hub's heartbeat: was it given the same --redis-url list? (What this hub would write:
 * nothing about shards with one Redis, else this Redis's place and the list's digest.) */
static void check_list(struct broker_redis *r, const struct redis_wire_heartbeat *hb)
{
    unsigned shards = r->count > 1 ? r->count : 0;
    int64_t now = clock_mono_ms();
    int len = (int)hb->instance_len;

    if (hb->shards == shards && (!shards || (hb->shard == r->index && hb->digest == r->digest)))
        return;
    r->mismatch_heard_ms = now;
    if (r->mismatch_logged_ms && now - r->mismatch_logged_ms < 10000 &&
        (int)strlen(r->mismatch_peer) == len &&
        !memcmp(r->mismatch_peer, hb->instance, hb->instance_len)) {
        update_ready(r); /* each hub once per 10 s */
        return;
    }
    r->mismatch_logged_ms = now;
    snprintf(r->mismatch_peer, sizeof(r->mismatch_peer), "%.*s", len, hb->instance);
    if (hb->shards && shards)
        log_error(r->tag,
                  "shard list mismatch: hub %.*s was given another --redis-url list: it takes "
                  "%s for shard %u of %u (list digest %016llx), this hub for shard %u of %u "
                  "(digest %016llx); every hub must be given the same URLs in the same order; "
                  "/ready and publishes answer 503 until they agree",
                  len, hb->instance, r->name, hb->shard, hb->shards, (unsigned long long)hb->digest,
                  r->index, r->count, (unsigned long long)r->digest);
    else if (shards)
        log_error(r->tag,
                  "shard list mismatch: hub %.*s takes %s for its only Redis (one --redis-url, "
                  "or a version without shards), this hub for shard %u of %u; every hub must be "
                  "given the same URLs in the same order; /ready and publishes answer 503 until "
                  "they agree",
                  len, hb->instance, r->name, r->index, r->count);
    else
        log_error(r->tag,
                  "shard list mismatch: hub %.*s takes %s for shard %u of %u, this hub for its "
                  "only Redis (one --redis-url); every hub must be given the same URLs in the "
                  "same order; /ready and publishes answer 503 until they agree",
                  len, hb->instance, r->name, hb->shard, hb->shards);
    update_ready(r);
}

/* A heartbeat with our --instance-id: ours (our nonce, a sequence we sent lately), or a twin's;
 * another hub's is checked for its shard list. */
static void on_heartbeat(struct broker_redis *r, const struct redis_wire_heartbeat *hb)
{
    int64_t now = clock_mono_ms();

    if (hb->instance_len != strlen(r->instance) ||
        memcmp(hb->instance, r->instance, hb->instance_len) != 0) {
        check_list(r, hb);
        return;
    }
    if (hb->has_nonce && hb->nonce == r->nonce) {
        if (hb->seq > r->hb_seq || hb->seq + 5 < r->hb_seq)
            return; /* not one we sent lately: a replay */
        r->hb_heard_ms = now;
        atomic_store_explicit(&r->m->heartbeat_lag_ms, clock_wall_ms() - hb->sent_ms,
                              memory_order_relaxed);
        update_ready(r);
        return;
    }
    /* A twin. Each logs it; only the younger (later start; equal starts: the larger nonce)
     * stays unready, so one of two twins keeps serving. */
    if ((!r->twin_heard_ms || now - r->twin_heard_ms > 10000) &&
        (!r->twin_logged_ms || now - r->twin_logged_ms > 10000))
        log_error(r->tag,
                  "another hub publishes heartbeats as --instance-id %s (started %lld, this one "
                  "%lld): instance ids must be unique, or a dead subscription goes unnoticed",
                  r->instance, (long long)hb->started_ms, (long long)r->started_ms);
    if (!hb->has_nonce || hb->started_ms < r->started_ms ||
        (hb->started_ms == r->started_ms && hb->nonce < r->nonce))
        r->twin_heard_ms = now; /* the twin is older: this one yields */
    else if (!r->twin_logged_ms || now - r->twin_logged_ms > 10000)
        r->twin_logged_ms = now; /* this one is older: it keeps serving */
    update_ready(r);
}

static void on_payload(struct broker_redis *r, const char *p, size_t len)
{
    struct redis_wire_heartbeat hb;
    size_t bad = 0;

    switch (redis_wire_decode(p, len, r->max_frame, deliver_record, r, &hb, &bad)) {
    case REDIS_WIRE_EVENTS: break;
    case REDIS_WIRE_HEARTBEAT: on_heartbeat(r, &hb); break;
    case REDIS_WIRE_UNKNOWN: bad = 1; break;
    }
    if (bad) {
        int64_t now = clock_mono_ms();

        metrics_add(&r->m->unknown_payloads, bad);
        r->bad_since_log += bad;
        if (now - r->bad_logged_ms >= 10000) { /* at most one line per 10 s */
            log_warn(r->tag,
                     "dropped %zu records from %s that are not events this hub writes (an "
                     "unknown version, or a publisher that is not a hub)",
                     r->bad_since_log, r->channel);
            r->bad_logged_ms = now;
            r->bad_since_log = 0;
        }
    }
}

static void on_sub_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    redisReply *reply = reply_;
    struct broker_redis *r = privdata;
    struct link *l = ac->data;

    if (!reply || !l)
        return; /* the context is being freed */
    if (reply->type == REDIS_REPLY_ERROR) {
        if (l->attempt == 0) /* once per outage, not per retry */
            log_error(r->tag, "SUBSCRIBE refused: %s", reply->str);
        redisAsyncDisconnect(ac);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (!strcmp(reply->element[0]->str, "message") &&
        reply->element[2]->type == REDIS_REPLY_STRING) {
        on_payload(r, reply->element[2]->str, reply->element[2]->len);
    } else if (!strcmp(reply->element[0]->str, "subscribe")) {
        r->resubscribe_pending |= l->was_ever_up; /* what was published meanwhile never came */
        r->hb_heard_ms = clock_mono_ms(); /* a fresh subscription gets a full heartbeat window */
        link_set_state(l, LINK_UP, NULL);
    }
}

/* --- connecting ---------------------------------------------------------------------------- */

/* The pub link's setup ends with loading the two scripts; the link is up after the second. */
static void on_script_loaded(redisAsyncContext *ac, void *reply_, void *privdata)
{
    redisReply *reply = reply_;
    struct link *l = ac->data;
    const char *want = privdata;

    if (!reply || !l)
        return;
    if (reply->type != REDIS_REPLY_STRING || strcmp(reply->str, want) != 0) {
        if (l->attempt == 0)
            log_error(l->r->tag, "pub link: SCRIPT LOAD refused: %s",
                      reply->type == REDIS_REPLY_ERROR ? reply->str : "an unexpected answer");
        redisAsyncDisconnect(ac);
        return;
    }
    if (want == l->r->read_sha) {
        l->r->scripts_loaded = true;
        link_set_state(l, LINK_UP, NULL);
    }
}

static void on_pub_pong(redisAsyncContext *ac, void *reply_, void *privdata)
{
    redisReply *reply = reply_;
    struct link *l = ac->data;

    (void)privdata;
    if (!reply || !l)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        if (l->attempt == 0)
            log_error(l->r->tag, "pub link: PING refused: %s", reply->str);
        redisAsyncDisconnect(ac);
        return;
    }
    l->r->scripts_loaded = false;
    redisAsyncCommand(ac, on_script_loaded, l->r->publish_sha, "SCRIPT LOAD %s", publish_script);
    redisAsyncCommand(ac, on_script_loaded, l->r->read_sha, "SCRIPT LOAD %s", read_script);
}

/* After AUTH and SELECT: the sub link subscribes, the pub link proves Redis answers. Each is
 * up only when Redis has replied, not when TCP connected (a stopped Redis still accepts). */
static void link_ready_step(struct link *l)
{
    struct broker_redis *r = l->r;

    if (l == &r->sub)
        redisAsyncCommand(l->ac, on_sub_reply, r, "SUBSCRIBE %s", r->channel);
    else
        redisAsyncCommand(l->ac, on_pub_pong, NULL, "PING");
}

static void on_setup_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    redisReply *reply = reply_;
    struct link *l = ac->data;

    (void)privdata;
    if (!reply || !l)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        if (l->attempt == 0)
            log_error(l->r->tag, "%s link: Redis refused the login or database: %s", l->name,
                      reply->str);
        redisAsyncDisconnect(ac); /* on_disconnect retries with backoff */
        return;
    }
    if (--l->setup_pending == 0)
        link_ready_step(l);
}

static void on_name_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    (void)ac;
    (void)reply_;
    (void)privdata;
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct link *l = ac->data;
    struct broker_redis *r;

    if (!l)
        return;
    r = l->r;
    if (status != REDIS_OK) {
        l->ac = NULL; /* hiredis frees it after we return */
        link_down(l, ac->errstr);
        return;
    }
    redisEnableKeepAlive(&ac->c);
    l->setup_pending = 0;
    if (r->url.has_password) {
        if (r->url.user[0])
            redisAsyncCommand(ac, on_setup_reply, NULL, "AUTH %s %s", r->url.user, r->url.password);
        else
            redisAsyncCommand(ac, on_setup_reply, NULL, "AUTH %s", r->url.password);
        l->setup_pending++;
    }
    if (r->url.db) {
        redisAsyncCommand(ac, on_setup_reply, NULL, "SELECT %d", r->url.db);
        l->setup_pending++;
    }
    /* a name an operator can find in CLIENT LIST (refused by an ACL: no matter) */
    redisAsyncCommand(ac, on_name_reply, NULL, "CLIENT SETNAME herald-%s-%s", r->instance, l->name);
    if (l->setup_pending == 0)
        link_ready_step(l);
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    struct link *l = cac->data;

    if (!l)
        return;   /* we freed it */
    l->ac = NULL; /* hiredis frees it after we return */
    link_down(l, status == REDIS_OK ? "disconnected" : cac->errstr);
}

/* Connects to ip, a numeric address (hiredis resolves names with a blocking getaddrinfo). */
static void link_connect(struct link *l, const char *ip)
{
    struct broker_redis *r = l->r;
    redisAsyncContext *ac = redisAsyncConnect(ip, r->url.port);

    if (!ac || ac->err) {
        char why[160];

        snprintf(why, sizeof(why), "%s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        link_down(l, why);
        return;
    }
    ac->data = l;
    l->ac = ac;
    redisLibeventAttach(ac, r->evb);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

/* The host name's lookup finished (possibly inside evdns_getaddrinfo, or when the connect
 * deadline cancelled it). */
static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    struct link *l = arg;
    char ip[INET6_ADDRSTRLEN] = "";
    char why[400];

    l->resolving = NULL;
    if (l->r->is_closing) {
        if (res)
            evutil_freeaddrinfo(res);
        return;
    }
    if (result == 0 && res) {
        const void *a = res->ai_family == AF_INET6
                            ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                            : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;

        evutil_inet_ntop(res->ai_family, a, ip, sizeof(ip));
    }
    if (res)
        evutil_freeaddrinfo(res);
    if (!ip[0]) {
        snprintf(why, sizeof(why), "cannot resolve %s: %s", l->r->url.host,
                 result == EVUTIL_EAI_CANCEL ? "no answer within the connect deadline"
                                             : evutil_gai_strerror(result));
        link_down(l, why);
        return;
    }
    link_connect(l, ip);
}

/* A new attempt: resolve the host off the loop (evdns), then connect; the whole setup, the
 * lookup included, must finish within SETUP_DEADLINE_MS. */
static void link_open(struct link *l)
{
    struct broker_redis *r = l->r;
    struct timeval deadline = {.tv_sec = SETUP_DEADLINE_MS / 1000,
                               .tv_usec = (SETUP_DEADLINE_MS % 1000) * 1000};
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    unsigned char probe[sizeof(struct in6_addr)];

    link_set_state(l, LINK_CONNECTING, NULL);
    evtimer_add(l->ev_deadline, &deadline);
    if (inet_pton(AF_INET, r->url.host, probe) == 1 ||
        inet_pton(AF_INET6, r->url.host, probe) == 1) {
        link_connect(l, r->url.host);
        return;
    }
    l->resolving = evdns_getaddrinfo(r->dns, r->url.host, NULL, &hints, on_resolved, l);
}

/* --- publishing and reading: two scripts ----------------------------------------------------
 * A publish is one EVALSHA of publish_script: for each event it takes the channel's epoch (a
 * channel without one gets the hub's candidate, and loses any stream left of an earlier
 * epoch), increments its seq, writes the frame with that seq into the channel's stream
 * (trimmed to --history-size, expiring after --history-ttl of silence), and last PUBLISHes
 * every record in one payload: number, history entry and delivery in one atomic step, so the
 * stream's order, the seq order and the delivery order are the same for every hub. With an
 * idempotency key the script first looks the key up (a repeat returns the remembered answer
 * and does nothing else) and remembers it after. The channel's hash {e, s} lives
 * SEQUENCE_TTL_MS after its last event, so a quiet channel keeps its numbering.
 * A read is one EVALSHA of read_script: the position {epoch, seq} and, in the same instant,
 * the stream entries asked for; a channel without numbering gets its epoch there, so a
 * subscriber learns the epoch before the first event. Both scripts are loaded when the pub
 * link comes up. */

/* Lua's SHA1 of a script, as EVALSHA wants it. */
static void script_sha(const char *script, char out[41])
{
    unsigned char d[SHA_DIGEST_LENGTH];

    SHA1((const unsigned char *)script, strlen(script), d);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void key_of(const struct broker_redis *r, char *out, size_t cap, const char *kind,
                   const char *channel, size_t len)
{
    snprintf(out, cap, "%s:%s:%.*s", r->channel, kind, (int)len, channel);
}

static void on_publish_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    redisReply *reply = reply_;
    struct pub_req *req = privdata;
    const char *err = NULL, *duplicate = NULL;

    (void)ac;
    if (!reply) {
        err = "the Redis connection was lost before it answered";
    } else if (reply->type == REDIS_REPLY_ERROR) {
        err = "Redis refused the publish";
        log_warn(req->r->tag, "the publish script failed: %s", reply->str);
        if (!strncmp(reply->str, "NOSCRIPT", 8) && req->r->pub.ac) /* flushed: reload */
            redisAsyncDisconnect(req->r->pub.ac);
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
               reply->element[1]->type == REDIS_REPLY_STRING) {
        duplicate = reply->element[1]->str;
    }
    if (err)
        metrics_add(&req->r->m->publish_errors, 1);
    req->done(err, duplicate, req->arg);
    free(req);
}

static int redis_publish(struct broker *b, struct message *const *msgs, size_t n,
                         const struct broker_idempotency *idem, broker_done_fn *done, void *arg)
{
    struct broker_redis *r = (struct broker_redis *)b;
    const struct config *cfg = r->cfg;
    size_t argc = 3 + 2 * n + (idem ? 1 : 0) + 8 + 3 * n, k = 0;
    const char **argv = xmalloc(argc * sizeof(*argv));
    size_t *argvlen = xmalloc(argc * sizeof(*argvlen));
    char **keys = xmalloc((2 * n + 1) * sizeof(*keys));
    char nums[6][32], idem_key[512], idem_ttl[32];
    struct pub_req *req;
    int rc;

    if (!compute_ready(r) || !r->scripts_loaded) {
        free(argv);
        free(argvlen);
        free(keys);
        return -1;
    }
#define ARG(p, l) (argv[k] = (p), argvlen[k] = (l), k++)
#define ARGS(p) ARG(p, strlen(p))
    ARGS("EVALSHA");
    ARGS(r->publish_sha);
    snprintf(nums[0], sizeof(nums[0]), "%zu", 2 * n + (idem ? 1 : 0));
    ARGS(nums[0]);
    for (size_t i = 0; i < n; i++) {
        keys[2 * i] = xmalloc(512);
        keys[2 * i + 1] = xmalloc(512);
        key_of(r, keys[2 * i], 512, "ch", msgs[i]->channel, msgs[i]->channel_len);
        key_of(r, keys[2 * i + 1], 512, "h", msgs[i]->channel, msgs[i]->channel_len);
        ARGS(keys[2 * i]);
        ARGS(keys[2 * i + 1]);
    }
    if (idem) {
        snprintf(idem_key, sizeof(idem_key), "%s:idem:%s:%s", r->channel, idem->scope, idem->key);
        ARGS(idem_key);
    }
    ARGS(r->channel);
    snprintf(nums[1], sizeof(nums[1]), "%zu", n);
    ARGS(nums[1]);
    snprintf(nums[2], sizeof(nums[2]), "%u", cfg->history_size);
    ARGS(nums[2]);
    snprintf(nums[3], sizeof(nums[3]), "%lld", (long long)cfg->history_ttl * 1000);
    ARGS(nums[3]);
    snprintf(nums[4], sizeof(nums[4]), "%lld", SEQUENCE_TTL_MS);
    ARGS(nums[4]);
    snprintf(nums[5], sizeof(nums[5]), "%08llx",
             (unsigned long long)(next_random(r) & 0xffffffffu));
    ARGS(nums[5]);
    if (idem) {
        snprintf(idem_ttl, sizeof(idem_ttl), "%lld", (long long)cfg->idempotency_ttl * 1000);
        ARGS(idem_ttl);
        ARGS(idem->answer);
    } else {
        ARGS("");
        ARGS("");
    }
    for (size_t i = 0; i < n; i++) {
        ARG(msgs[i]->channel, msgs[i]->channel_len);
        ARG(message_draft_head(msgs[i]), msgs[i]->draft_head);
        ARG(message_draft_tail(msgs[i]), message_draft_tail_len(msgs[i]));
    }
#undef ARG
#undef ARGS
    req = xcalloc(1, sizeof(*req));
    *req = (struct pub_req){.r = r, .done = done, .arg = arg, .n = n};
    rc = redisAsyncCommandArgv(r->pub.ac, on_publish_reply, req, (int)k, argv, argvlen);
    for (size_t i = 0; i < 2 * n; i++)
        free(keys[i]);
    free(keys);
    free(argv);
    free(argvlen);
    if (rc != REDIS_OK) {
        free(req);
        metrics_add(&r->m->publish_errors, 1);
        return -1;
    }
    return 0;
}

struct read_req {
    struct broker_redis *r;
    broker_read_fn *cb;
    void *arg;
    char channel[MESSAGE_CHANNEL_MAX + 1];
    size_t channel_len;
};

/* A frame read back from a stream, as a numbered message. */
static struct message *message_of_frame(const char *channel, size_t channel_len, const char *epoch,
                                        uint64_t seq, const char *frame, size_t len)
{
    struct message *m = message_new(channel, channel_len, frame, len);
    const char *ts = memmem(frame, len, ",\"ts\":", 6);

    /* the publish time: the first ,"ts": is the event's own (a quote inside a JSON string is
     * escaped, and "data" comes after "ts") */
    if (ts)
        m->ts_ms = strtoll(ts + 6, NULL, 10);
    m->kind = MESSAGE_EVENT;
    m->seq = seq;
    snprintf(m->epoch, sizeof(m->epoch), "%s", epoch);
    message_find_name(m);
    return m;
}

static void on_read_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    redisReply *reply = reply_;
    struct read_req *q = privdata;
    struct broker_redis *r = q->r;
    struct history_result res;
    int64_t now = clock_wall_ms(), ttl_ms = (int64_t)r->cfg->history_ttl * 1000;
    bool shaped;

    (void)ac;
    memset(&res, 0, sizeof(res));
    shaped = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
             reply->element[0]->type == REDIS_REPLY_STRING &&
             reply->element[1]->type == REDIS_REPLY_STRING;
    if (!shaped || !redis_wire_epoch_ok(reply->element[0]->str, reply->element[0]->len)) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_warn(r->tag, "the read script failed: %s", reply->str);
        else if (shaped) /* it reaches replies and SSE ids: checked as the wire's epochs are */
            log_warn(r->tag,
                     "the read script answered an epoch no hub writes (1 to %d letters and "
                     "digits): the channel's hash was written by something else",
                     MESSAGE_EPOCH_MAX);
        if (!r->is_closing)
            q->cb("Redis did not answer the read", NULL, q->arg);
        free(q);
        return;
    }
    snprintf(res.epoch, sizeof(res.epoch), "%.*s", (int)reply->element[0]->len,
             reply->element[0]->str);
    res.seq = strtoull(reply->element[1]->str, NULL, 10);
    if (reply->elements > 2)
        res.msgs = xmalloc((reply->elements - 2) / 2 * sizeof(*res.msgs));
    for (size_t i = 2; i + 1 < reply->elements; i += 2) {
        redisReply *id = reply->element[i], *frame = reply->element[i + 1];
        uint64_t seq;
        struct message *m;

        if (id->type != REDIS_REPLY_STRING || frame->type != REDIS_REPLY_STRING)
            continue;
        seq = strtoull(id->str, NULL, 10);
        if (!redis_wire_frame_ok(q->channel, q->channel_len, seq, frame->str, frame->len,
                                 r->max_frame))
            continue; /* not what a hub wrote: skip it (a hole the caller will see) */
        m = message_of_frame(q->channel, q->channel_len, res.epoch, seq, frame->str, frame->len);
        if (now - m->ts_ms > ttl_ms) { /* kept past --history-ttl: expired */
            message_unref(&m);
            continue;
        }
        if (!res.first)
            res.first = seq;
        res.msgs[res.n++] = m;
    }
    if (!r->is_closing)
        q->cb(NULL, &res, q->arg);
    history_result_clear(&res);
    free(q);
}

static int redis_read(struct broker *b, const struct broker_read *q, broker_read_fn *cb, void *arg)
{
    struct broker_redis *r = (struct broker_redis *)b;
    char hk[512], sk[512], a2[32], a3[32], epoch[16], seqttl[32];
    const char *mode = q->mode == BROKER_READ_SINCE ? "s" : q->mode == BROKER_READ_LAST ? "l" : "p";
    struct read_req *req;

    if (r->pub.state != LINK_UP || !r->scripts_loaded)
        return -1;
    key_of(r, hk, sizeof(hk), "ch", q->channel, q->channel_len);
    key_of(r, sk, sizeof(sk), "h", q->channel, q->channel_len);
    snprintf(a2, sizeof(a2), "%llu",
             (unsigned long long)(q->mode == BROKER_READ_SINCE ? q->since : q->count));
    snprintf(a3, sizeof(a3), "%zu", q->mode == BROKER_READ_SINCE ? q->count : 0);
    req = xcalloc(1, sizeof(*req));
    req->r = r;
    req->cb = cb;
    req->arg = arg;
    memcpy(req->channel, q->channel, q->channel_len);
    req->channel_len = q->channel_len;
    snprintf(epoch, sizeof(epoch), "%08llx", (unsigned long long)(next_random(r) & 0xffffffffu));
    snprintf(seqttl, sizeof(seqttl), "%lld", SEQUENCE_TTL_MS);
    if (redisAsyncCommand(r->pub.ac, on_read_reply, req, "EVALSHA %s 2 %s %s %s %s %s %s %s",
                          r->read_sha, hk, sk, mode, a2, a3, epoch, seqttl) != REDIS_OK) {
        free(req);
        return -1;
    }
    return 0;
}

static void on_heartbeat_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    redisReply *reply = reply_;
    struct broker_redis *r = privdata;

    (void)ac;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_debug(r->tag, "heartbeat refused: %s", reply->str);
}

static void on_heartbeat_tick(evutil_socket_t fd, short what, void *arg)
{
    struct broker_redis *r = arg;
    char buf[256];
    size_t len;

    (void)fd;
    (void)what;
    if (r->pub.state == LINK_UP && clock_mono_ms() - r->hb_sent_ms >= HEARTBEAT_MS) {
        struct redis_wire_heartbeat hb = {.instance = r->instance,
                                          .instance_len = strlen(r->instance),
                                          .nonce = r->nonce,
                                          .started_ms = r->started_ms,
                                          .seq = ++r->hb_seq,
                                          .sent_ms = clock_wall_ms(),
                                          .shard = r->index,
                                          .shards = r->count > 1 ? r->count : 0,
                                          .digest = r->digest};

        r->hb_sent_ms = clock_mono_ms();
        len = redis_wire_heartbeat(buf, sizeof(buf), &hb);
        redisAsyncCommand(r->pub.ac, on_heartbeat_reply, r, "PUBLISH %s %b", r->channel, buf, len);
    }
    if (r->sub.state == LINK_UP && r->pub.state == LINK_UP &&
        clock_mono_ms() - r->hb_heard_ms > HEARTBEAT_LOST_MS) {
        log_warn(r->tag, "own heartbeat not heard for %lld ms: the link is dead; reconnecting",
                 (long long)(clock_mono_ms() - r->hb_heard_ms));
        link_reset(&r->sub, "heartbeat lost");
        link_reset(&r->pub, "heartbeat lost");
    }
    update_ready(r);
}

/* --- the cluster-wide publish limiter (control/pubrate.h) ---------------------------------
 * One EVAL per publish request on the pub link: INCR and PEXPIRE of a per-second key in one
 * script, so a key never outlives its window even if a hub dies between the two. Requests
 * are listed so that freeing the limiter answers every pending one (PUBRATE_GONE) at once:
 * a request whose reply arrives later (or never, when the link is freed) only frees itself. */

struct count_req {
    pubrate_done_fn *done; /* NULL once answered */
    void *arg;
    unsigned per_sec;
    struct count_req *prev, *next; /* the limiter's pending list, while done is set */
    struct redis_pubrate *owner;
};

struct redis_pubrate {
    struct pubrate base;
    struct broker_redis *r;
    unsigned per_sec;
    struct count_req *pending;
};

static void count_unlink(struct count_req *req)
{
    struct redis_pubrate *rp = req->owner;

    if (req->prev)
        req->prev->next = req->next;
    else if (rp)
        rp->pending = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
    req->owner = NULL;
}

static void on_count_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    redisReply *reply = reply_;
    struct count_req *req = privdata;
    pubrate_done_fn *done = req->done;

    (void)ac;
    if (done) {
        count_unlink(req);
        req->done = NULL;
        if (!reply || reply->type != REDIS_REPLY_INTEGER)
            done(PUBRATE_UNKNOWN, 0, req->arg);
        else if (reply->integer > (long long)req->per_sec)
            done(PUBRATE_LIMITED, 1, req->arg);
        else
            done(PUBRATE_OK, 0, req->arg);
    }
    free(req);
}

static const char count_script[] = "local n = redis.call('INCR', KEYS[1]) "
                                   "if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end "
                                   "return n";

static enum pubrate_verdict redis_rate_take(struct pubrate *base, const char *who,
                                            long long *retry_after_s, pubrate_done_fn *done,
                                            void *arg)
{
    struct redis_pubrate *rp = (struct redis_pubrate *)base;
    struct broker_redis *r = rp->r;
    struct count_req *req;
    char key[512];

    (void)retry_after_s;
    if (r->pub.state != LINK_UP)
        return PUBRATE_UNKNOWN;
    snprintf(key, sizeof(key), "%s:rate:%s:%lld", r->channel, who,
             (long long)(clock_wall_ms() / 1000));
    req = xcalloc(1, sizeof(*req));
    *req = (struct count_req){.done = done, .arg = arg, .per_sec = rp->per_sec, .owner = rp};
    if (redisAsyncCommand(r->pub.ac, on_count_reply, req, "EVAL %s 1 %s 2000", count_script, key) !=
        REDIS_OK) {
        free(req);
        return PUBRATE_UNKNOWN;
    }
    req->next = rp->pending;
    if (rp->pending)
        rp->pending->prev = req;
    rp->pending = req;
    return PUBRATE_PENDING;
}

static void redis_rate_free(struct pubrate *base)
{
    struct redis_pubrate *rp = (struct redis_pubrate *)base;

    while (rp->pending) {
        struct count_req *req = rp->pending;
        pubrate_done_fn *done = req->done;

        count_unlink(req);
        req->done = NULL; /* hiredis still holds it: on_count_reply frees it */
        done(PUBRATE_GONE, 0, req->arg);
    }
    free(rp);
}

static const struct pubrate_ops redis_rate_ops = {.take = redis_rate_take, .free = redis_rate_free};

static struct pubrate *redis_pubrate(struct broker *b, unsigned per_sec)
{
    struct redis_pubrate *rp = xcalloc(1, sizeof(*rp));

    rp->base.ops = &redis_rate_ops;
    rp->r = (struct broker_redis *)b;
    rp->per_sec = per_sec;
    return &rp->base;
}

static bool redis_is_ready(const struct broker *b)
{
    return compute_ready((const struct broker_redis *)b);
}

static const char *redis_not_ready_reason(const struct broker *b)
{
    const struct broker_redis *r = (const struct broker_redis *)b;

    if (has_twin(r))
        return "another hub runs with this --instance-id";
    if (has_mismatch(r))
        return "another hub was given a different --redis-url list";
    return is_up(r) ? NULL : "the broker is not connected";
}

void broker_redis_state(const struct broker *b, struct broker_redis_state *st)
{
    const struct broker_redis *r = (const struct broker_redis *)b;

    st->is_up = is_up(r);
    st->has_twin = has_twin(r);
    st->has_mismatch = has_mismatch(r);
}

static void link_free(struct link *l)
{
    redisAsyncContext *ac = l->ac;

    if (l->resolving)
        evdns_getaddrinfo_cancel(l->resolving); /* on_resolved sees is_closing */
    if (l->ev_retry)
        event_free(l->ev_retry);
    if (l->ev_deadline)
        event_free(l->ev_deadline);
    l->ev_retry = l->ev_deadline = NULL;
    if (ac) {
        l->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac); /* pending publishes answer 503 */
    }
}

static void redis_free(struct broker *b)
{
    struct broker_redis *r = (struct broker_redis *)b;

    bool was_resolving = r->sub.resolving || r->pub.resolving;

    r->is_closing = true;
    if (r->ev_heartbeat)
        event_free(r->ev_heartbeat);
    link_free(&r->sub);
    link_free(&r->pub);
    /* A cancelled lookup finishes in a deferred callback of the loop, which has stopped: one
     * more turn lets it run (on_resolved only cleans up) and free what evdns holds for it. */
    if (was_resolving)
        event_base_loop(r->evb, EVLOOP_NONBLOCK);
    if (r->dns)
        evdns_base_free(r->dns, 0);
    free(r->channel);
    free(r->instance);
    free(r);
}

static const struct broker_ops redis_ops = {
    .name = "redis",
    .publish = redis_publish,
    .read = redis_read,
    .is_ready = redis_is_ready,
    .pubrate = redis_pubrate,
    .free = redis_free,
    .not_ready_reason = redis_not_ready_reason,
};

static void link_init(struct link *l, const char *name, struct broker_redis *r)
{
    l->name = name;
    l->r = r;
    l->ev_retry = evtimer_new(r->evb, on_retry, l);
    l->ev_deadline = evtimer_new(r->evb, on_deadline, l);
}

struct broker *broker_redis_new(struct event_base *base, const struct config *cfg,
                                broker_deliver_fn *deliver, void *arg, char *err, size_t errlen)
{
    const struct broker_redis_shard one = {
        .url = cfg->redis_urls ? cfg->redis_urls[0] : cfg->redis_url,
        .name = cfg->redis_shard_names ? cfg->redis_shard_names[0] : NULL,
        .index = 0,
        .count = 1,
    };

    return broker_redis_new_shard(base, cfg, &one, deliver, arg, err, errlen);
}

struct broker *broker_redis_new_shard(struct event_base *base, const struct config *cfg,
                                      const struct broker_redis_shard *shard,
                                      broker_deliver_fn *deliver, void *arg, char *err,
                                      size_t errlen)
{
    struct broker_redis *r = xcalloc(1, sizeof(*r));
    struct timeval hb = {.tv_sec = HEARTBEAT_CHECK_MS / 1000,
                         .tv_usec = (HEARTBEAT_CHECK_MS % 1000) * 1000};
    int rc;

    if (shard->index >= SHARD_MAX) {
        snprintf(err, errlen, "--redis-url: more than %d entries", SHARD_MAX);
        free(r);
        return NULL;
    }
    if (redis_url_parse(shard->url, &r->url, err, errlen) < 0) {
        free(r);
        return NULL;
    }
    r->index = shard->index;
    r->count = shard->count;
    r->digest = shard->digest;
    r->m = &metrics.redis[shard->index];
    if (shard->name)
        snprintf(r->name, sizeof(r->name), "%s", shard->name);
    else
        shard_name(&r->url, r->name);
    if (r->count > 1)
        snprintf(r->tag, sizeof(r->tag), "redis/%u", r->index);
    else
        snprintf(r->tag, sizeof(r->tag), "redis");
    r->dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    rc = r->dns ? evdns_base_resolv_conf_parse(r->dns, DNS_OPTIONS_ALL, cfg->resolv_conf) : -1;
    if (rc != 0 && rc != 6) { /* 6: no nameserver listed: the hosts file still answers */
        snprintf(err, errlen, "--resolv-conf: cannot read %s (evdns error %d)", cfg->resolv_conf,
                 rc);
        if (r->dns)
            evdns_base_free(r->dns, 0);
        free(r);
        return NULL;
    }
    r->base.ops = &redis_ops;
    r->base.deliver = deliver;
    r->base.deliver_arg = arg;
    r->evb = base;
    if (getrandom(&r->rng, sizeof(r->rng), 0) != sizeof(r->rng) || !r->rng)
        r->rng = (uint64_t)clock_wall_ms() * 2654435761u ^ (uint64_t)getpid();
    if (getrandom(&r->nonce, sizeof(r->nonce), 0) != sizeof(r->nonce))
        r->nonce = r->rng ^ (uint64_t)clock_mono_us();
    r->started_ms = clock_wall_ms();
    r->cfg = cfg;
    script_sha(publish_script, r->publish_sha);
    script_sha(read_script, r->read_sha);
    r->channel = xstrdup(cfg->redis_channel);
    r->instance = xstrdup(cfg->instance_id);
    r->max_frame = (size_t)cfg->max_message_bytes + MESSAGE_EVENT_OVERHEAD;
    r->hb_heard_ms = clock_mono_ms() - HEARTBEAT_LOST_MS - 1;
    link_init(&r->sub, "sub", r);
    link_init(&r->pub, "pub", r);
    r->ev_heartbeat = event_new(base, -1, EV_PERSIST, on_heartbeat_tick, r);
    event_add(r->ev_heartbeat, &hb);
    link_open(&r->sub);
    link_open(&r->pub);
    return &r->base;
}
