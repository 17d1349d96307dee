/* plane.c -- a delivery plane's life: its lws context over its own libev loop, its thread,
 * its mailbox, its timers (the heartbeat sweep, the watchdog's alive stamp) and its drain.
 * Events arrive through the mailbox (common/mailbox.c), woken by lws_cancel_service() and
 * drained in LWS_CALLBACK_EVENT_WAIT_CANCELLED; each goes to writer_fanout(). Once per loop
 * turn (an ev_prepare watcher) the connections whose queues turned non-empty are written
 * (writer.c) and the plane's backlog is published for the control plane. Connections come
 * from listen.c and live in conn.c. With --tls-cert the vhost speaks TLS on every socket
 * listen.c adopts, with the plane's current certificate pair (common/tls.c), which MAIL_TLS
 * replaces on SIGHUP for the handshakes that follow. */
#include "plane_priv.h"

#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/mailbox.h"
#include "common/message.h"
#include "common/overflow.h"
#include "common/position.h"
#include "common/tls.h"
#include "common/xalloc.h"
#include "subscription.h"
#include "uring.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define RATE_GRACE_MS 3000 /* over the frame rate this long: close 1008 */
#define TICK_US (100 * LWS_US_PER_MS)
#define ALIVE_US (500 * LWS_US_PER_MS)
#define SWEEP_US (250 * LWS_US_PER_MS)

void plane_add_conn(struct plane *p, struct conn *c)
{
    HASH_ADD(hh, p->by_id, id, sizeof(c->id), c);
    c->prev = NULL;
    c->next = p->conns;
    if (p->conns)
        p->conns->prev = c;
    p->conns = c;
    p->n_conns++;
}

static void finish_drain(struct plane *p)
{
    if (p->is_done)
        return;
    p->is_done = true;
    lws_sul_cancel(&p->sul_drain);
    log_info("ws", "plane %u: drained, %zu clients left", p->index, p->n_conns);
    p->host.done(p, p->host.arg);
}

void plane_mark_dirty(struct plane *p, struct conn *c)
{
    if (c->dirty_slot)
        return;
    if (p->n_dirty == p->cap_dirty) {
        p->cap_dirty = p->cap_dirty ? p->cap_dirty * 2 : 256;
        p->dirty = xrealloc(p->dirty, p->cap_dirty * sizeof(*p->dirty));
    }
    p->dirty[p->n_dirty++] = c;
    c->dirty_slot = p->n_dirty;
}

void plane_remove_conn(struct plane *p, struct conn *c)
{
    if (c->dirty_slot) /* lws frees c after this: the dirty list must not point at it */
        p->dirty[c->dirty_slot - 1] = NULL;
    c->dirty_slot = 0;
    HASH_DEL(p->by_id, c);
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    p->n_conns--;
    if (p->is_draining && p->n_conns == 0)
        finish_drain(p);
}

static void on_drain_tick(lws_sorted_usec_list_t *sul)
{
    struct plane *p = lws_container_of(sul, struct plane, sul_drain);

    if (p->n_conns == 0 || clock_mono_ms() >= p->drain_deadline_ms)
        finish_drain(p);
    else
        lws_sul_schedule(p->ctx, 0, &p->sul_drain, on_drain_tick, TICK_US);
}

static void start_drain(struct plane *p)
{
    if (p->is_draining)
        return;
    p->is_draining = true;
    p->drain_deadline_ms = clock_mono_ms() + (int64_t)p->cfg->drain_seconds * 1000;
    log_info("ws", "plane %u: draining %zu clients", p->index, p->n_conns);
    for (struct conn *c = p->conns; c; c = c->next)
        conn_cut(c, 1001, "going away", CLOSE_DRAIN, true,
                 p->cfg->drain_seconds ? (int)p->cfg->drain_seconds : 1);
    on_drain_tick(&p->sul_drain);
}

/* SIGHUP's pair (takes a reference): the certificate callback (common/tls.c) hands it to every
 * handshake from now on; open connections keep theirs. */
static void swap_tls(struct plane *p, struct tls_pair *pair)
{
    if (!p->tls) { /* a plain plane: nothing to serve it with */
        tls_pair_unref(&pair);
        return;
    }
    tls_pair_unref(&p->tls);
    p->tls = pair;
    log_debug("ws", "plane %u: new handshakes get %s", p->index, tls_pair_describe(pair));
}

int plane_tls_ctx(struct plane *p, struct ssl_ctx_st *ctx)
{
    if (!p->tls)
        return 0;
    return tls_ctx_serve(ctx, &p->tls, p->tls_err, sizeof(p->tls_err)) < 0 ? -1 : 0;
}

static void on_mail(struct mail *mail, void *arg)
{
    struct plane *p = arg;

    switch (mail->kind) {
    case MAIL_EVENT:
        writer_fanout(p, mail->msg);
        message_unref(&mail->msg);
        break;
    case MAIL_DRAIN: start_drain(p); break;
    case MAIL_POSITION: conn_position(p, mail->data); break;
    case MAIL_TLS: swap_tls(p, mail->data); break;
    case MAIL_SUBSCRIBE: position_request_free(mail->data); break; /* not a plane's mail */
    }
}

void plane_on_wake(struct plane *p)
{
    if (mailbox_drain(p->mb, on_mail, p)) /* what the mailbox weighed is queued now */
        atomic_store_explicit(&p->queued_bytes, p->stats.queued_bytes, memory_order_relaxed);
    if (atomic_load(&p->stop))
        ev_break(p->loop, EVBREAK_ALL);
}

/* Every 250 ms, over the plane's connections: heartbeats and token expiry; and the pace window
 * (session_stats_roll). lws can keep a
 * validity timer per connection (retry_and_idle_policy), but in 4.1.6 each one is a sorted
 * insert into a list of every connection's timer, O(n) each time a peer proves alive: at
 * 10,000 connections that was a quarter of the plane's CPU. One sweep is O(n) per 250 ms. */
static void on_sweep(lws_sorted_usec_list_t *sul)
{
    struct plane *p = lws_container_of(sul, struct plane, sul_sweep);
    int64_t now = clock_mono_ms(), now_s = clock_wall_ms() / 1000;

    for (struct conn *c = p->conns; c; c = c->next)
        conn_sweep(p, c, now, now_s);
    session_stats_roll(&p->stats, now);
    if (session_jam_update(
            &p->jam, atomic_load_explicit(&metrics.events_published, memory_order_relaxed),
            atomic_load_explicit(&metrics.publish_overloaded, memory_order_relaxed), now))
        writer_break_jam(p);
    lws_sul_schedule(p->ctx, 0, &p->sul_sweep, on_sweep, SWEEP_US);
}

/* Once per loop turn, before the loop waits: the dirty connections' queues are written
 * (writer.c), pending gaps go out when there is room, and the backlog gauge is published for
 * the control plane's publish check. */
static void on_pace(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct plane *p = lws_container_of(w, struct plane, pace_timer);

    (void)loop;
    (void)revents;
    p->pace_armed_us = 0;
    writer_pace(p); /* on_prepare sets the timer for what is left */
}

/* The pacer's timer (a libev timer: libev counts it when it decides how long to wait) follows
 * its earliest entry. */
static void arm_pacer(struct plane *p)
{
    int64_t next = pacer_next(&p->pacer), now;

    if (!next || (p->pace_armed_us && p->pace_armed_us <= next))
        return;
    now = clock_mono_us();
    p->pace_armed_us = next;
    ev_timer_stop(p->loop, &p->pace_timer);
    ev_timer_set(&p->pace_timer, next > now ? (double)(next - now) / 1e6 : 0., 0.);
    ev_timer_start(p->loop, &p->pace_timer);
}

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct plane *p = lws_container_of(w, struct plane, prepare);

    (void)loop;
    (void)revents;
    arm_pacer(p);
    if (p->n_dirty)
        writer_flush_dirty(p);
    writer_flush_overflow(p);
    atomic_store_explicit(&p->queued_bytes, p->stats.queued_bytes, memory_order_relaxed);
}

static void on_alive_tick(lws_sorted_usec_list_t *sul)
{
    struct plane *p = lws_container_of(sul, struct plane, sul_alive);

    atomic_store_explicit(&p->alive_ms, clock_mono_ms(), memory_order_relaxed);
    lws_sul_schedule(p->ctx, 0, &p->sul_alive, on_alive_tick, ALIVE_US);
}

/* --- the page: no file whose real path is outside --web-root --------------------------------
 * lws's file server follows symbolic links wherever they point. Every plane's context opens
 * files through its platform fops; the hub puts its own open in front (lws_get_fops() hands
 * out the context's table for exactly this): it resolves the path and opens the resolved one
 * only when it lies inside the web root. One web root for the process, so these are set once,
 * before any plane thread runs. */
static char web_root_real[PATH_MAX];
static lws_fop_fd_t (*platform_open)(const struct lws_plat_file_ops *fops, const char *filename,
                                     const char *vpath, lws_fop_flags_t *flags);

static lws_fop_fd_t open_inside_root(const struct lws_plat_file_ops *fops, const char *filename,
                                     const char *vpath, lws_fop_flags_t *flags)
{
    char real[PATH_MAX];
    size_t n = strlen(web_root_real);

    if (!realpath(filename, real) || strncmp(real, web_root_real, n) != 0 ||
        (real[n] != '/' && real[n] != '\0')) {
        log_debug("ws", "not serving %s: its real path is outside --web-root", filename);
        errno = ENOENT;
        return NULL;
    }
    return platform_open(fops, real, vpath, flags);
}

static int guard_web_root(struct lws_context *ctx, const char *web_root, char *err, size_t errlen)
{
    struct lws_plat_file_ops *fops = lws_get_fops(ctx);

    if (!realpath(web_root, web_root_real)) {
        snprintf(err, errlen, "--web-root: %s: %s", web_root, strerror(errno));
        return -1;
    }
    if (fops->LWS_FOP_OPEN != open_inside_root) {
        platform_open = fops->LWS_FOP_OPEN;
        fops->LWS_FOP_OPEN = open_inside_root;
    }
    return 0;
}

static void wake(void *arg)
{
    struct plane *p = arg;

    lws_cancel_service(p->ctx);
}

static void lws_log(int level, const char *line)
{
    size_t n = strlen(line);

    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    log_write(level == LLL_ERR    ? LOG_ERROR
              : level == LLL_WARN ? LOG_WARN
                                  : LOG_DEBUG,
              "lws", "%.*s", (int)n, line);
}

/* The plane's own state before any loop exists: limits, channel index, mailbox, mounts. */
static void plane_init(struct plane *p, const struct config *cfg, unsigned index,
                       const struct plane_host *host)
{
    static const uint32_t retry_table[] = {1000};

    p->cfg = cfg;
    p->index = index;
    p->host = *host;
    p->gate = host->gate;
    atomic_init(&p->stop, false);
    atomic_init(&p->alive_ms, clock_mono_ms());
    atomic_init(&p->queued_bytes, 0);
    p->lim = (struct session_limits){
        .send_queue_bytes = cfg->send_queue_bytes,
        .stats = &p->stats,
        .max_message_bytes = cfg->max_message_bytes,
        .max_subscriptions = cfg->max_subscriptions,
        .rate = {.per_sec = cfg->client_rate, .burst = cfg->client_burst},
        .rate_grace_ms = RATE_GRACE_MS,
    };
    p->listen_fd = p->spare_fd = -1;
    p->idx = channel_index_new(index, cfg->max_channels, subscription_free_extra);
    /* The mailbox bound is above what admission lets in: a publish is taken while the backlog
     * is at most --max-backlog-bytes, and one publish (a batch of up to EVENT_BATCH_MAX events
     * whose body is at most --max-message-bytes) adds at most 8 times its body in wire bytes.
     * Bounding the mailbox at the admission limit itself turned a batch taken on an idle hub
     * into a gap. The second --max-backlog-bytes is room for events from other hubs, which
     * admission does not see. */
    p->mb = mailbox_new(2 * (size_t)cfg->max_backlog_bytes + 8 * (size_t)cfg->max_message_bytes,
                        wake, p);
    p->overflow = overflow_new();
    p->overflow_bytes = 2 * (size_t)cfg->max_backlog_bytes;
    p->scratch = xmalloc(LWS_PRE + PLANE_SCRATCH_BYTES);
    p->sse_mount = (struct lws_http_mount){
        .mountpoint = "/sse",
        .mountpoint_len = 4,
        .origin = "herald", /* LWSMPRO_CALLBACK: the protocol that answers (sse.c) */
        .origin_protocol = LWSMPRO_CALLBACK,
    };
    p->mount = (struct lws_http_mount){
        .mount_next = &p->sse_mount,
        .mountpoint = "/",
        .mountpoint_len = 1,
        .origin = cfg->web_root,
        .def = "index.html",
        .origin_protocol = LWSMPRO_FILE,
    };
    /* no lws validity timers (zero hangup): the plane's sweep does heartbeats, see on_sweep */
    p->retry = (lws_retry_bo_t){
        .retry_ms_table = retry_table,
        .retry_ms_table_count = 1,
    };
}

/* What lws_create_context() gets: our protocol and mounts, no listener, p's libev loop, and
 * TLS when configured. */
static void context_info(struct plane *p, struct lws_context_creation_info *info)
{
    memset(info, 0, sizeof(*info));
    info->port = CONTEXT_PORT_NO_LISTEN_SERVER; /* we listen ourselves: see listen.c */
    info->protocols = conn_protocol(p);
    info->mounts = &p->mount;
    info->vhost_name = "herald";
    info->user = p;
    info->retry_and_idle_policy = &p->retry;
    p->foreign_loops[0] = p->loop;
    info->foreign_loops = p->foreign_loops;
    info->options = LWS_SERVER_OPTION_LIBEV | LWS_SERVER_OPTION_VALIDATE_UTF8 |
                    LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE;
    info->count_threads = 1;
    /* also bounds a TLS handshake (PENDING_TIMEOUT_SSL_ACCEPT), then the HTTP request */
    info->timeout_secs = 10;
    if (p->cfg->tls) {
        /* TLS on the vhost although it listens nowhere (CONTEXT_PORT_NO_LISTEN_SERVER still
         * gets an SSL_CTX in lws 4.1.6): lws makes the SSL_CTX and, in
         * LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS, conn.c hands it to
         * plane_tls_ctx(), which gives it the pair; lws_adopt_socket_vhost() (listen.c) then
         * starts each adopted socket with a TLS handshake. ALPN offers http/1.1 only: Debian's
         * lws has HTTP/2, and the writer's frames (writer.c) are WebSocket bytes for a socket
         * of their own, not an HTTP/2 stream. */
        p->tls = tls_pair_ref(p->cfg->tls);
        p->client_ctx = tls_client_ctx_new();
        info->provided_client_ssl_ctx = p->client_ctx; /* see tls_client_ctx_new() */
        info->options |=
            LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_CREATE_VHOST_SSL_CTX;
        info->alpn = "http/1.1";
    }
}

/* io_uring sends a connection's bytes to its socket itself: under TLS those bytes must go
 * through OpenSSL (lws_write), so TLS keeps the planes on the lws_write path. */
static void start_uring(struct plane *p)
{
    char why[128];

    if (!p->cfg->io_uring)
        return;
    if (p->cfg->tls) {
        if (p->index == 0)
            log_info("ws", "--io-uring is off with --tls-cert: OpenSSL writes to the sockets");
        return;
    }
    p->uring = uring_new(why, sizeof(why));
    if (!p->uring && p->index == 0)
        log_warn("ws", "%s: delivery planes write with plain send() calls", why);
}

struct plane *plane_new(const struct config *cfg, unsigned index, const struct plane_host *host,
                        char *err, size_t errlen)
{
    struct plane *p = xcalloc(1, sizeof(*p));
    struct lws_context_creation_info info;

    plane_init(p, cfg, index, host);
    lws_set_log_level(log_enabled(LOG_DEBUG) ? LLL_ERR | LLL_WARN : LLL_ERR, lws_log);
    /* lws's own loop polls every descriptor with poll() each turn; on libev (Debian's evlib
     * plugin) it waits with epoll. The loop is ours ("foreign"), so lws installs no signal
     * watcher of its own and the plane decides when it stops. */
    p->loop = ev_loop_new(EVBACKEND_EPOLL);
    if (!p->loop) {
        snprintf(err, errlen, "cannot create the event loop of delivery plane %u", index);
        goto fail;
    }
    context_info(p, &info);
    p->ctx = lws_create_context(&info);
    if (!p->ctx) {
        if (p->tls_err[0])
            snprintf(err, errlen, "%s", p->tls_err);
        else
            snprintf(err, errlen, "cannot create the lws context of delivery plane %u", index);
        goto fail;
    }
    p->vh = lws_get_vhost_by_name(p->ctx, "herald");
    if (guard_web_root(p->ctx, cfg->web_root, err, errlen) < 0)
        goto fail;
    if (listen_open(p, err, errlen) < 0)
        goto fail;
    start_uring(p);
    return p;
fail:
    plane_free(p);
    return NULL;
}

static void *plane_main(void *arg)
{
    struct plane *p = arg;

    listen_start(p);
    ev_prepare_init(&p->prepare, on_prepare);
    ev_prepare_start(p->loop, &p->prepare);
    ev_timer_init(&p->pace_timer, on_pace, 0., 0.);
    on_alive_tick(&p->sul_alive);
    lws_sul_schedule(p->ctx, 0, &p->sul_sweep, on_sweep, SWEEP_US);
    while (!atomic_load(&p->stop))
        ev_run(p->loop, 0);
    ev_prepare_stop(p->loop, &p->prepare);
    ev_timer_stop(p->loop, &p->pace_timer);
    return NULL;
}

int plane_start(struct plane *p)
{
    if (pthread_create(&p->thread, NULL, plane_main, p) != 0)
        return -1;
    p->is_started = true;
    return 0;
}

int plane_post_quiet(struct plane *p, struct message *msg, size_t weight)
{
    return mailbox_post_event(p->mb, msg, weight);
}

void plane_flush(struct plane *p)
{
    mailbox_flush(p->mb);
}

void plane_post_position(struct plane *p, struct position_answer *a)
{
    mailbox_post(p->mb, MAIL_POSITION, NULL, a);
}

void plane_post_tls(struct plane *p, struct tls_pair *pair)
{
    mailbox_post(p->mb, MAIL_TLS, NULL, tls_pair_ref(pair));
}

void plane_drain(struct plane *p)
{
    mailbox_post(p->mb, MAIL_DRAIN, NULL, NULL);
}

void plane_stop(struct plane *p)
{
    if (!p->is_started)
        return;
    atomic_store(&p->stop, true);
    lws_cancel_service(p->ctx);
    pthread_join(p->thread, NULL);
    p->is_started = false;
}

void plane_free(struct plane *p)
{
    if (!p)
        return;
    listen_close(p);
    if (p->ctx)
        lws_context_destroy(p->ctx);
    if (p->loop)
        ev_loop_destroy(p->loop);
    tls_pair_unref(&p->tls); /* after the context: its certificate callback reads it */
    tls_ctx_free(p->client_ctx);
    channel_index_free(p->idx);
    mailbox_free(p->mb);
    overflow_free(p->overflow);
    pacer_clear(&p->pacer);
    uring_free(p->uring);
    free(p->dirty);
    free(p->scratch);
    free(p);
}

int64_t plane_alive_ms(const struct plane *p)
{
    return atomic_load_explicit(&p->alive_ms, memory_order_relaxed);
}

const struct histogram *plane_delivery_latency(const struct plane *p)
{
    return &p->delivery_latency;
}

size_t plane_mailbox_depth(const struct plane *p)
{
    return mailbox_depth(p->mb);
}

size_t plane_backlog_bytes(const struct plane *p)
{
    return mailbox_weight(p->mb) + atomic_load_explicit(&p->queued_bytes, memory_order_relaxed);
}

bool plane_uses_io_uring(const struct plane *p)
{
    return uring_is_usable(p->uring);
}
