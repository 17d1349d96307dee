/* subscription.c -- send, skip, hold or pace, per subscription (subscription.h).
 * Within one channel, a plane receives events in seq order (the sequencer sees to it), with a
 * gap standing for events that will not come and a reset where the numbering restarts; so
 * last_seq alone tells a duplicate (a replayed event the live stream brings again) from a new
 * event.
 *
 * Pacing (max_rate R): each event name has a slot; an event whose name's slot is free is sent
 * at once and takes the slot for 1/R s; one that comes while the slot is taken waits as the
 * name's latest, replacing (and so skipping) an older one that waited. When the slot frees,
 * the latest goes: the last event of a burst always arrives, at most 1/R s after it came.
 * Waiting events leave in seq order (a client drops a seq below one it has seen): one whose
 * slot is free but that came after another name's waiting event waits behind it, which is
 * never longer than that one's slot, at most 1/R s.
 * Its seq moves last_seq when it is offered, not when it is sent, so a skipped event is not
 * sent later by a replay either; the seq of what is sent shows what was skipped. A gap or a
 * reset is never paced: what waits goes first, so the subscriber still sees seq order. */
#include "subscription.h"

#include "common/message.h"
#include "common/xalloc.h"

#include <stdlib.h>
#include <string.h>

#define SUB_PENDING 1u

struct held {
    struct message **v;
    size_t n, cap, bytes;
};

/* One event name's slot. */
struct pace_slot {
    char name[48];   /* the name's JSON string (quotes included), cut at 47 bytes: "" for none */
    int64_t next_us; /* the slot is taken until then */
    struct message *waiting; /* the latest event that came while it was taken */
};

struct extra {
    struct held held;    /* while pending */
    int64_t interval_us; /* 1/R s; 0: not paced */
    struct pace_slot *slots;
    uint32_t n_slots;
    int64_t queued_us; /* the due time of this subscription's entry in the plane's pacer */
};

static struct extra *extra_of(struct channel_member *m)
{
    if (!m->extra)
        m->extra = xcalloc(1, sizeof(struct extra));
    return m->extra;
}

void subscription_begin(struct channel_member *m)
{
    m->flags |= SUB_PENDING;
    m->last_seq = 0;
}

bool subscription_is_pending(const struct channel_member *m)
{
    return m->flags & SUB_PENDING;
}

void subscription_set_rate(struct channel_member *m, uint32_t per_sec)
{
    struct extra *x;

    if (!per_sec && !m->extra)
        return;
    x = extra_of(m);
    x->interval_us = per_sec ? 1000000 / per_sec : 0;
}

static enum sub_verdict offer_live(struct channel_member *m, const struct message *msg)
{
    switch (msg->kind) {
    case MESSAGE_RESET: m->last_seq = 0; return SUB_SEND;
    case MESSAGE_EVENT:
    case MESSAGE_GAP:
        if (msg->seq <= m->last_seq)
            return SUB_SKIP;
        m->last_seq = msg->seq;
        return SUB_SEND;
    default: return SUB_SEND;
    }
}

/* The slot of msg's event name: found, made, or (all SUB_PACE_NAMES taken by names with
 * something waiting or a slot still running) the shared last one. */
static struct pace_slot *slot_of(struct extra *x, const struct message *msg, int64_t now_us)
{
    char name[sizeof(x->slots[0].name)] = "";
    size_t len = msg->name_len < sizeof(name) - 1 ? msg->name_len : sizeof(name) - 1;
    uint32_t free_at = UINT32_MAX;

    if (msg->name_len)
        memcpy(name, msg->buf + msg->json_off + msg->name_off, len);
    name[len] = '\0';
    for (uint32_t i = 0; i < x->n_slots; i++) {
        if (!strcmp(x->slots[i].name, name))
            return &x->slots[i];
        if (free_at == UINT32_MAX && !x->slots[i].waiting && x->slots[i].next_us <= now_us)
            free_at = i; /* idle: may be given to another name */
    }
    if (free_at == UINT32_MAX) {
        if (x->n_slots == SUB_PACE_NAMES)
            return &x->slots[SUB_PACE_NAMES - 1];
        if (!x->slots)
            x->slots = xcalloc(SUB_PACE_NAMES, sizeof(*x->slots));
        free_at = x->n_slots++;
    }
    memcpy(x->slots[free_at].name, name, len + 1);
    x->slots[free_at].next_us = 0;
    return &x->slots[free_at];
}

/* The waiting event with the lowest seq: paced events leave in seq order, so it heads the
 * line, and an event whose own slot is free still waits behind it. */
static struct pace_slot *head_of_line(struct extra *x)
{
    struct pace_slot *head = NULL;

    for (uint32_t i = 0; i < x->n_slots; i++)
        if (x->slots[i].waiting && (!head || x->slots[i].waiting->seq < head->waiting->seq))
            head = &x->slots[i];
    return head;
}

/* Sends every waiting event in seq order (a gap or reset must come after them). */
static void send_waiting(struct extra *x, subscription_send_fn *send, void *arg)
{
    struct pace_slot *head;

    while ((head = head_of_line(x))) {
        send(head->waiting, arg);
        message_unref(&head->waiting);
    }
}

static enum sub_verdict offer_paced(struct channel_member *m, struct extra *x, struct message *msg,
                                    int64_t now_us, subscription_send_fn *send, void *arg,
                                    int64_t *due_us)
{
    struct pace_slot *s, *head;
    enum sub_verdict v;
    int64_t due;

    if (msg->kind != MESSAGE_EVENT) {
        send_waiting(x, send, arg);
        return offer_live(m, msg);
    }
    if ((v = offer_live(m, msg)) != SUB_SEND)
        return v;
    s = slot_of(x, msg, now_us);
    head = head_of_line(x);
    if (!head && s->next_us <= now_us) {
        s->next_us = now_us + x->interval_us;
        return SUB_SEND;
    }
    if (s->waiting)
        message_unref(&s->waiting); /* skipped: the newer one wins */
    s->waiting = message_ref(msg);
    due = head_of_line(x)->next_us; /* the line moves when its head's slot comes */
    if (!x->queued_us || due < x->queued_us)
        *due_us = x->queued_us = due; /* the caller queues a (new, earlier) entry */
    return SUB_PACE;
}

enum sub_verdict subscription_offer(struct channel_member *m, struct message *msg, int64_t now_us,
                                    subscription_send_fn *send, void *arg, int64_t *due_us)
{
    struct extra *x = m->extra;
    struct held *h;

    if (!(m->flags & SUB_PENDING)) {
        if (x && (x->interval_us || x->n_slots))
            return offer_paced(m, x, msg, now_us, send, arg, due_us);
        return offer_live(m, msg);
    }
    h = &extra_of(m)->held;
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 8;
        h->v = xrealloc(h->v, h->cap * sizeof(*h->v));
    }
    h->v[h->n++] = message_ref(msg);
    h->bytes += message_wire_len(msg);
    return SUB_HOLD;
}

size_t subscription_held_bytes(const struct channel_member *m)
{
    const struct extra *x = m->extra;

    return x && (m->flags & SUB_PENDING) ? x->held.bytes : 0;
}

static void held_clear(struct held *h)
{
    for (size_t i = 0; i < h->n; i++)
        message_unref(&h->v[i]);
    free(h->v);
    memset(h, 0, sizeof(*h));
}

void subscription_start(struct channel_member *m, uint64_t seq, subscription_send_fn *send,
                        void *arg)
{
    struct extra *x = m->extra;

    m->flags &= ~SUB_PENDING;
    m->last_seq = seq;
    if (!x)
        return;
    /* what came while the position was asked is a catch-up, like a replay: not paced */
    for (size_t i = 0; i < x->held.n; i++)
        if (offer_live(m, x->held.v[i]) == SUB_SEND)
            send(x->held.v[i], arg);
    held_clear(&x->held);
}

int64_t subscription_due(struct channel_member *m, int64_t entry_us, int64_t now_us,
                         subscription_send_fn *send, void *arg)
{
    struct extra *x = m->extra;
    int64_t next = 0;

    if (!x || x->queued_us != entry_us)
        return 0; /* a stale entry: an earlier one was queued since, or the slot is gone */
    for (;;) {    /* in seq order, while the head of the line is due */
        struct pace_slot *head = head_of_line(x);

        if (!head)
            break;
        if (head->next_us > now_us) {
            next = head->next_us;
            break;
        }
        send(head->waiting, arg);
        message_unref(&head->waiting);
        head->next_us = now_us + x->interval_us;
    }
    x->queued_us = next;
    return next;
}

void subscription_free_extra(void *extra)
{
    struct extra *x = extra;

    if (!x)
        return;
    held_clear(&x->held);
    for (uint32_t i = 0; i < x->n_slots; i++)
        message_unref(&x->slots[i].waiting);
    free(x->slots);
    free(x);
}
