/* uring.c -- a plane's straight writes through io_uring (uring.h).
 * Once per loop turn writer_flush_dirty() hands the dirty connections here. Each idle one's
 * due bytes (a ping, then the queued frames, up to the scratch size) are copied into the
 * turn's arena and become one IORING_OP_SEND with MSG_DONTWAIT, so the kernel never parks a
 * send: every one completes, fully, partly or with EAGAIN, by the time io_uring_enter returns
 * to io_uring_submit_and_wait(). The arena holds the bytes until then; the frames are popped
 * from the queues as they are copied. lws's view of each socket stays true exactly as on the
 * lws_write path (writer.c): a connection with bytes lws keeps, or closing, is not sent to
 * here; and whatever a send did not take goes through lws_write() at once, which either sends
 * it (room came back) or keeps it in its partial-write buffer and arms POLLOUT, so lws flushes
 * it before any further writeable callback. Nothing else writes to the socket meanwhile: the
 * whole batch is sent and settled inside this one call on the plane's thread. */
#include "uring.h"

#include "common/log.h"
#include "common/xalloc.h"
#include "plane_priv.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define URING_ENTRIES 4096
#define ARENA_CHUNK (1u << 20)

struct pending_send {
    struct conn *c;
    const unsigned char *data;
    size_t len;
};

struct arena_chunk {
    unsigned char *buf;
    size_t used, cap;
};

struct uring {
    struct io_uring ring;
    struct pending_send *sends; /* one per SQE of the batch in flight */
    size_t n_sends, cap_sends;
    struct arena_chunk *chunks;
    size_t n_chunks, cur;
    bool is_broken; /* a send did not complete: the plane writes with lws_write */
};

struct uring *uring_new(char *why, size_t whylen)
{
    struct uring *u = xcalloc(1, sizeof(*u));
    int rc = io_uring_queue_init(URING_ENTRIES, &u->ring, 0);

    if (rc < 0) {
        snprintf(why, whylen, "io_uring refused: %s", strerror(-rc));
        free(u);
        return NULL;
    }
    u->cap_sends = URING_ENTRIES;
    u->sends = xmalloc(u->cap_sends * sizeof(*u->sends));
    return u;
}

bool uring_is_usable(const struct uring *u)
{
    return u && !u->is_broken;
}

void uring_free(struct uring *u)
{
    if (!u)
        return;
    if (u->is_broken)
        return; /* late sends may still read the arena: keep it */
    io_uring_queue_exit(&u->ring);
    for (size_t i = 0; i < u->n_chunks; i++)
        free(u->chunks[i].buf);
    free(u->chunks);
    free(u->sends);
    free(u);
}

/* Room for len bytes in the turn's arena (kept until the batch is settled). */
static unsigned char *arena_room(struct uring *u, size_t len)
{
    struct arena_chunk *ch;

    while (u->cur < u->n_chunks && u->chunks[u->cur].cap - u->chunks[u->cur].used < len)
        u->cur++;
    if (u->cur == u->n_chunks) {
        u->chunks = xrealloc(u->chunks, (u->n_chunks + 1) * sizeof(*u->chunks));
        ch = &u->chunks[u->n_chunks++];
        ch->cap = len > ARENA_CHUNK ? len : ARENA_CHUNK;
        ch->buf = xmalloc(ch->cap);
        ch->used = 0;
    }
    ch = &u->chunks[u->cur];
    return ch->buf + ch->used;
}

static void arena_take(struct uring *u, size_t len)
{
    u->chunks[u->cur].used += len;
}

static void arena_reset(struct uring *u)
{
    for (size_t i = 0; i < u->n_chunks; i++)
        u->chunks[i].used = 0;
    u->cur = 0;
}

static void kill_conn(struct conn *c)
{
    session_close(c->s, 1011, "write failed");
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* Submits what is queued and settles every send of the batch. */
static void settle(struct uring *u)
{
    struct io_uring_cqe *cqe;
    unsigned head;
    size_t seen = 0;
    int rc;

    if (!u->n_sends)
        return;
    rc = io_uring_submit(&u->ring);
    if (rc < 0)
        log_warn("ws", "io_uring_submit: %s", strerror(-rc));
    /* every send completes inside the submit (MSG_DONTWAIT: no send waits for room); the
     * wait is only a guard */
    while (io_uring_cq_ready(&u->ring) < u->n_sends) {
        struct __kernel_timespec ts = {.tv_sec = 1};
        struct io_uring_cqe *first;

        rc = io_uring_wait_cqes(&u->ring, &first, (unsigned)u->n_sends, &ts, NULL);
        if (rc < 0 && rc != -EINTR)
            break;
    }
    io_uring_for_each_cqe(&u->ring, head, cqe)
    {
        struct pending_send *ps = &u->sends[cqe->user_data];
        size_t sent = cqe->res > 0 ? (size_t)cqe->res : 0;

        seen++;
        if (cqe->res < 0 && cqe->res != -EAGAIN) {
            kill_conn(ps->c);
            continue;
        }
        /* the rest to lws: sent now, or kept by lws and flushed when the socket has room */
        if (sent < ps->len && lws_write(ps->c->wsi, (unsigned char *)ps->data + sent,
                                        ps->len - sent, LWS_WRITE_HTTP) < (int)(ps->len - sent)) {
            kill_conn(ps->c);
            continue;
        }
        if (session_front(ps->c->s) && !lws_partial_buffered(ps->c->wsi))
            lws_callback_on_writable(ps->c->wsi); /* more than one send takes */
    }
    io_uring_cq_advance(&u->ring, seen);
    if (seen < u->n_sends) {
        /* cannot happen with MSG_DONTWAIT; if it ever does, this plane stops using the ring
         * and keeps its arena (a late send still reads it) */
        log_error("ws", "io_uring: %zu sends did not complete: back to plain writes",
                  u->n_sends - seen);
        u->is_broken = true;
        u->n_sends = 0;
        return;
    }
    u->n_sends = 0;
    arena_reset(u);
}

void uring_flush_dirty(struct plane *p, struct uring *u)
{
    for (size_t i = 0; i < p->n_dirty; i++) {
        struct conn *c = writer_dirty_take(p, i);
        struct io_uring_sqe *sqe;
        unsigned char *out;
        size_t len;

        if (!c)
            continue;
        if (u->n_sends == URING_ENTRIES)
            settle(u);
        out = arena_room(u, PLANE_SCRATCH_BYTES);
        len = writer_take(p, c, out, PLANE_SCRATCH_BYTES);
        if (!len) { /* a frame larger than the scratch: the writeable callback sends it */
            lws_callback_on_writable(c->wsi);
            continue;
        }
        arena_take(u, len);
        sqe = io_uring_get_sqe(&u->ring);
        if (!sqe) {
            settle(u);
            sqe = io_uring_get_sqe(&u->ring);
        }
        io_uring_prep_send(sqe, lws_get_socket_fd(c->wsi), out, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, u->n_sends);
        u->sends[u->n_sends++] = (struct pending_send){.c = c, .data = out, .len = len};
    }
    settle(u);
    p->n_dirty = 0;
}
