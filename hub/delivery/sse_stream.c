/* sse_stream.c -- an SSE stream's channels, its cursor, and one message as an SSE event
 * (sse_stream.h). An event is produced at write time from the shared message, never written
 * into it: the bytes a /ws client gets are the data: line, the cursor the id: line.
 *
 * The cursor an event carries is the stream's position after it: for each channel, the last
 * event, gap or reset written, or the position a `subscribed` gave (conn.c sets a subscribed
 * reply's seq to where its replay starts, so a stream cut inside a replay resumes from where
 * it was cut). Before a channel is positioned on this stream, its entry is what Last-Event-ID
 * said (what the client has), so a stream cut early loses nothing either. Events of one
 * channel are written in seq order (the subscription sees to it), so the cursor only moves
 * forward within an epoch. */
#include "sse_stream.h"

#include "common/channel_name.h"
#include "common/errbuf.h"
#include "common/message.h"
#include "common/xalloc.h"
#include "cursor.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_DECODED 512

struct sse_name {
    uint16_t off; /* in names */
    uint8_t len;
};

struct sse_stream {
    uint32_t n;              /* channels of the query, in order */
    char *names;             /* the channels= list */
    struct sse_name *name;   /* [n] */
    bool is_unnamed;         /* names=0: no event: line, every event is a "message" */
    struct cursor_pos pos[]; /* [n]: each channel's position */
};

struct sse_stream *sse_stream_new(const char *list, uint32_t max, char *err, size_t errlen)
{
    struct sse_stream *x;
    uint32_t n = 0;

    for (const char *s = list; *s;) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);

        if (len && (len > CHANNEL_NAME_MAX || !channel_name_is_valid(s, len))) {
            errbuf_set(err, errlen,
                       "invalid channel name in channels= (1 to 128 of A-Z a-z 0-9 _ - . :)");
            return NULL;
        }
        n += len != 0;
        if (!end)
            break;
        s = end + 1;
    }
    if (!n) {
        errbuf_set(err, errlen, "channels= names the channels of the stream: at least one");
        return NULL;
    }
    if (n > max) {
        errbuf_set(err, errlen, "at most %u channels per stream", max);
        return NULL;
    }
    x = xcalloc(1, sizeof(*x) + n * sizeof(x->pos[0]));
    x->names = xstrdup(list);
    x->name = xcalloc(n, sizeof(*x->name));
    for (char *s = x->names; *s && x->n < n;) {
        char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);

        if (len) {
            x->name[x->n].off = (uint16_t)(s - x->names);
            x->name[x->n].len = (uint8_t)len;
            x->n++;
        }
        if (!end)
            break;
        s = end + 1;
    }
    return x;
}

void sse_stream_free(struct sse_stream *x)
{
    if (!x)
        return;
    free(x->names);
    free(x->name);
    free(x);
}

uint32_t sse_stream_channels(const struct sse_stream *x)
{
    return x->n;
}

const char *sse_stream_channel(const struct sse_stream *x, uint32_t i, size_t *len)
{
    *len = x->name[i].len;
    return x->names + x->name[i].off;
}

struct cursor_pos *sse_stream_positions(struct sse_stream *x)
{
    return x->pos;
}

void sse_stream_set_unnamed(struct sse_stream *x, bool is_unnamed)
{
    x->is_unnamed = is_unnamed;
}

bool sse_stream_is_unnamed(const struct sse_stream *x)
{
    return x->is_unnamed;
}

/* What the event: line says of a message. */
struct name {
    const char *s;
    size_t len;
    char buf[NAME_MAX_DECODED];
};

static void set_name(struct name *nm, const char *s)
{
    nm->s = s;
    nm->len = strlen(s);
}

/* An event's name, decoded from its JSON string; "message" when it has none, or one an SSE
 * field cannot carry (a line break or NUL in it: the data still holds it). */
static void event_name(const struct message *m, struct name *nm)
{
    const char *q = (const char *)m->buf + m->json_off + m->name_off + 1;
    size_t qlen = m->name_len >= 2 ? m->name_len - 2u : 0;

    set_name(nm, "message");
    if (!m->name_len || !qlen)
        return;
    if (!memchr(q, '\\', qlen)) { /* as written: a JSON string holds no raw control byte */
        nm->s = q;
        nm->len = qlen;
        return;
    }
    if (qlen < sizeof(nm->buf)) {
        json_t *v = json_loadb(q - 1, qlen + 2, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        const char *d = json_string_value(v);
        size_t dlen = json_string_length(v);

        if (d && dlen && dlen < sizeof(nm->buf) && !memchr(d, '\n', dlen) &&
            !memchr(d, '\r', dlen) && !memchr(d, '\0', dlen)) {
            memcpy(nm->buf, d, dlen);
            nm->s = nm->buf;
            nm->len = dlen;
        }
        json_decref(v);
    }
}

/* A hub-made frame's type ({"type":"welcome",... as protocol.c writes them). */
static void reply_name(const struct message *m, struct name *nm)
{
    static const char head[] = "{\"type\":\"";
    const char *json = (const char *)m->buf + m->json_off, *end;
    size_t h = sizeof(head) - 1;

    set_name(nm, "message");
    if (m->json_len > h && !memcmp(json, head, h) &&
        (end = memchr(json + h, '"', m->json_len - h))) {
        nm->s = json + h;
        nm->len = (size_t)(end - (json + h));
    }
}

/* Where m puts its channel: true with *pos set when m positions it (an event, gap, reset or
 * subscribed reply). */
static bool position_of(const struct message *m, struct cursor_pos *pos)
{
    size_t elen;

    if (!m->channel_len || !m->epoch[0])
        return false;
    elen = strnlen(m->epoch, sizeof(pos->epoch) - 1);
    memcpy(pos->epoch, m->epoch, elen);
    pos->epoch[elen] = '\0';
    pos->epoch_len = (uint8_t)elen;
    pos->seq = m->seq;
    return true;
}

static bool names_channel(const struct sse_stream *x, uint32_t i, const struct message *m)
{
    return x->name[i].len == m->channel_len &&
           !memcmp(x->names + x->name[i].off, m->channel, m->channel_len);
}

/* Line breaks in the JSON (CR LF, CR or LF), each to become "\ndata: ". Frames the hub
 * builds have none; one from another hub through Redis may. */
static size_t count_breaks(const char *s, size_t len, size_t *break_bytes)
{
    size_t n = 0;

    *break_bytes = 0;
    if (!memchr(s, '\n', len) && !memchr(s, '\r', len))
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n') {
            n++;
            *break_bytes += 2;
            i++;
        } else if (s[i] == '\r' || s[i] == '\n') {
            n++;
            (*break_bytes)++;
        }
    }
    return n;
}

static unsigned char *put(unsigned char *o, const void *s, size_t len)
{
    memcpy(o, s, len);
    return o + len;
}

size_t sse_stream_frame(struct sse_stream *x, const struct message *m, unsigned char *out,
                        size_t room)
{
    const char *json = (const char *)m->buf + m->json_off;
    struct name nm;
    struct cursor_pos pos;
    bool has_id = false;
    size_t id_len = 0, breaks, break_bytes, len;
    unsigned char *o = out;

    switch (m->kind) {
    case MESSAGE_EVENT: event_name(m, &nm); break;
    case MESSAGE_GAP: set_name(&nm, "gap"); break;
    case MESSAGE_RESET: set_name(&nm, "subscribed"); break; /* a reset is a subscribed frame */
    default: reply_name(m, &nm); break;
    }
    if (position_of(m, &pos)) {
        for (uint32_t i = 0; i < x->n; i++) {
            bool hit = names_channel(x, i, m);

            has_id |= hit;
            id_len += (i ? 1 : 0) + cursor_entry_len(hit ? &pos : &x->pos[i]);
        }
    }
    breaks = count_breaks(json, m->json_len, &break_bytes);
    len = (has_id ? 4 + id_len + 1 : 0) + (x->is_unnamed ? 0 : 7 + nm.len + 1) + 6 + m->json_len -
          break_bytes + 7 * breaks + 2;
    if (len > room)
        return len;

    if (has_id) {
        for (uint32_t i = 0; i < x->n; i++)
            if (names_channel(x, i, m))
                x->pos[i] = pos;
        o = put(o, "id: ", 4);
        o += cursor_write(x->pos, x->n, (char *)o);
        *o++ = '\n';
    }
    if (!x->is_unnamed) {
        o = put(o, "event: ", 7);
        o = put(o, nm.s, nm.len);
        *o++ = '\n';
    }
    o = put(o, "data: ", 6);
    if (!breaks) {
        o = put(o, json, m->json_len);
    } else {
        for (size_t i = 0; i < m->json_len; i++) {
            if (json[i] == '\r' || json[i] == '\n') {
                if (json[i] == '\r' && i + 1 < m->json_len && json[i + 1] == '\n')
                    i++;
                o = put(o, "\ndata: ", 7);
            } else {
                *o++ = (unsigned char)json[i];
            }
        }
    }
    o = put(o, "\n\n", 2);
    return (size_t)(o - out);
}
