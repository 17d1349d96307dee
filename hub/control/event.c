/* event.c -- validation of publish bodies and the one serialization of each event.
 * jansson parses and checks the body (it rejects invalid UTF-8 and bad JSON, so no client ever
 * sees either); the frame {"type":"event","channel":…,"event":…,"id":…,"ts":…,"data":…} is
 * then written here, once per hub, straight into a message buffer after the WebSocket header
 * room, with "event" and "data" copied from the publisher's own text (see below). Every
 * subscriber on every plane then shares that buffer. Pure apart from allocation. */
#include "event.h"

#include "common/channel_name.h"
#include "common/errbuf.h"
#include "common/fmt.h"
#include "common/message.h"
#include "common/xalloc.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void event_ids_init(struct event_ids *ids, uint64_t seed)
{
    snprintf(ids->prefix, sizeof(ids->prefix), "%010llx",
             (unsigned long long)(seed & 0xffffffffffULL));
    ids->next = 1;
}

/* Writes the next id at out (room for 10 + 1 + 16 + 1); returns its length. */
static size_t next_id(struct event_ids *ids, char *out)
{
    char *p = fmt_str(out, ids->prefix);

    *p++ = '-';
    p = fmt_hex(p, ids->next++);
    *p = '\0';
    return (size_t)(p - out);
}

/* --- the frame, from the publisher's own text ---------------------------------------------
 * jansson validates the body, but the frame is written from the body's text: "data" (and
 * "event") are copied as the publisher wrote them, minus insignificant whitespace. Parsing
 * and re-printing would change what a client sees (jansson prints 23.1 as
 * 23.100000000000001) and cost a serialization per event. The scanner below only walks text
 * that jansson has already accepted. */

/* Index of the first byte past the JSON value that starts at s[i]. */
static size_t value_end(const char *s, size_t len, size_t i)
{
    int depth = 0;

    do {
        char c = s[i];

        if (c == '"') {
            for (i++; i < len && s[i] != '"'; i++)
                if (s[i] == '\\')
                    i++;
            i++;
        } else if (c == '{' || c == '[') {
            depth++;
            i++;
        } else if (c == '}' || c == ']') {
            depth--;
            i++;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',' || c == ':') {
            i++;
        } else { /* a number, true, false or null: at least one byte */
            do
                i++;
            while (i < len && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' &&
                   s[i] != '\t' && s[i] != '\r' && s[i] != '\n');
        }
    } while (depth > 0 && i < len);
    return i;
}

static size_t skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    return i;
}

struct span {
    size_t start, end;
};

/* The text of the k-th member's value of the object at s[i] (jansson keeps members in the
 * order of the text, so k comes from iterating the parsed object: escaped keys need no
 * decoding here). */
static struct span member_value(const char *s, size_t len, size_t i, size_t k)
{
    i = skip_ws(s, len, i) + 1; /* past '{' */
    for (size_t m = 0;; m++) {
        size_t v;

        i = skip_ws(s, len, i);
        i = value_end(s, len, i);   /* the key */
        i = skip_ws(s, len, i) + 1; /* past ':' */
        v = skip_ws(s, len, i);
        i = value_end(s, len, v);
        if (m == k)
            return (struct span){v, i};
        i = skip_ws(s, len, i) + 1; /* past ',' */
    }
}

/* Copies s[sp) without whitespace outside strings; returns the length. dst NULL: count. */
static size_t compact(char *dst, const char *s, struct span sp)
{
    size_t n = 0;

    for (size_t i = sp.start; i < sp.end; i++) {
        char c = s[i];

        if (c == '"') {
            size_t j = i + 1;

            while (s[j] != '"')
                j += s[j] == '\\' ? 2 : 1;
            if (dst)
                memcpy(dst + n, s + i, j + 1 - i);
            n += j + 1 - i;
            i = j;
        } else if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            if (dst)
                dst[n] = c;
            n++;
        }
    }
    return n;
}

static size_t member_index(json_t *obj, const char *key)
{
    size_t k = 0;

    for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it), k++)
        if (!strcmp(json_object_iter_key(it), key))
            return k;
    return (size_t)-1;
}

/* The draft of {"type":"event","channel":C[,"event":E],"id":I,"seq":S,"ts":T,"data":D} with E
 * and D copied (compacted) from text; the seq is the broker's to give (message_finish). */
static struct message *build(const char *channel, size_t channel_len, const char *text,
                             const struct span *event, struct span data, int64_t now_ms,
                             struct event_ids *ids)
{
    static const char head[] = "{\"type\":\"event\",\"channel\":\"";
    static const char name[] = ",\"event\":";
    char id[32], tail[64];
    size_t idn = next_id(ids, id), hn = sizeof(head) - 1 + channel_len + 1, tn,
           en = event ? compact(NULL, text, *event) : 0, dn = compact(NULL, text, data);
    struct message *m;
    char *p;

    if (event)
        hn += sizeof(name) - 1;
    p = fmt_str(tail, ",\"ts\":");
    p = fmt_dec(p, now_ms > 0 ? (uint64_t)now_ms : 0);
    p = fmt_str(p, ",\"data\":");
    tn = (size_t)(p - tail);
    m = message_draft(channel, channel_len, hn + en + 7 + idn + 1, tn + dn + 1);
    p = message_draft_head(m);
    p = fmt_mem(p, head, sizeof(head) - 1);
    p = fmt_mem(p, channel, channel_len);
    *p++ = '"';
    if (event) {
        p = fmt_mem(p, name, sizeof(name) - 1);
        m->name_off = (uint16_t)hn;
        m->name_len = (uint16_t)en;
        p += compact(p, text, *event);
    }
    p = fmt_str(p, ",\"id\":\"");
    p = fmt_mem(p, id, idn);
    *p = '"';
    p = message_draft_tail(m);
    p = fmt_mem(p, tail, tn);
    p += compact(p, text, data);
    *p = '}';
    m->ts_ms = now_ms;
    memcpy(m->id, id, idn + 1);
    return m;
}

/* Checks one event object (a batch's caller adds " (item N)" to the error text). */
static int check_item(json_t *item, char *err, size_t errlen)
{
    const char *key;
    json_t *val, *ch, *ev;

    if (!json_is_object(item)) {
        errbuf_set(err, errlen, "an event must be a JSON object");
        return -1;
    }
    json_object_foreach(item, key, val)
    {
        if (strcmp(key, "channel") && strcmp(key, "event") && strcmp(key, "data")) {
            errbuf_set(err, errlen, "unknown field \"%.64s\"", key);
            return -1;
        }
    }
    ch = json_object_get(item, "channel");
    if (!ch) {
        errbuf_set(err, errlen, "\"channel\" is missing");
        return -1;
    }
    if (!json_is_string(ch) ||
        !channel_name_is_valid(json_string_value(ch), json_string_length(ch))) {
        errbuf_set(err, errlen, "\"channel\" must be 1 to 128 characters of A-Z a-z 0-9 _ - . :");
        return -1;
    }
    if (channel_name_is_reserved(json_string_value(ch), json_string_length(ch))) {
        errbuf_set(err, errlen, "channels starting with '$' belong to the hub");
        return -1;
    }
    ev = json_object_get(item, "event");
    if (ev && (!json_is_string(ev) || json_string_length(ev) < 1 ||
               json_string_length(ev) > EVENT_NAME_MAX)) {
        errbuf_set(err, errlen, "\"event\" must be a string of 1 to %d bytes", EVENT_NAME_MAX);
        return -1;
    }
    if (!json_object_get(item, "data")) {
        errbuf_set(err, errlen, "\"data\" is missing");
        return -1;
    }
    return 0;
}

int event_parse_publish(const char *body, size_t len, int64_t now_ms, struct event_ids *ids,
                        struct message ***out, size_t *n, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    size_t count;

    *out = NULL;
    *n = 0;
    if (root && memchr(body, '\0', len)) { /* jansson stops at a NUL; JSON has none */
        json_decref(root);
        errbuf_set(err, errlen, "invalid JSON: a NUL byte");
        return -1;
    }
    if (!root) {
        errbuf_set(err, errlen, "invalid JSON: %s (at byte %d)", jerr.text, jerr.position);
        return -1;
    }
    if (json_is_array(root)) {
        count = json_array_size(root);
        if (count == 0 || count > EVENT_BATCH_MAX) {
            errbuf_set(err, errlen, "a batch holds 1 to %d events", EVENT_BATCH_MAX);
            goto fail;
        }
        for (size_t i = 0; i < count; i++) {
            if (check_item(json_array_get(root, i), err, errlen) < 0) {
                size_t used = errlen ? strnlen(err, errlen) : 0;

                if (used + 1 < errlen)
                    snprintf(err + used, errlen - used, " (item %zu)", i);
                goto fail;
            }
        }
    } else {
        count = 1;
        if (check_item(root, err, errlen) < 0)
            goto fail;
    }

    *out = xmalloc(count * sizeof(**out));
    {
        size_t pos = skip_ws(body, len, 0);
        size_t item_start = json_is_array(root) ? skip_ws(body, len, pos + 1) : pos;

        for (size_t i = 0; i < count; i++) {
            json_t *item = json_is_array(root) ? json_array_get(root, i) : root;
            json_t *ch = json_object_get(item, "channel");
            size_t ek = json_object_get(item, "event") ? member_index(item, "event") : (size_t)-1;
            struct span event = {0, 0}, data;

            if (ek != (size_t)-1)
                event = member_value(body, len, item_start, ek);
            data = member_value(body, len, item_start, member_index(item, "data"));
            (*out)[i] = build(json_string_value(ch), json_string_length(ch), body,
                              ek != (size_t)-1 ? &event : NULL, data, now_ms, ids);
            /* next item: past this object and the comma */
            item_start = skip_ws(body, len, value_end(body, len, item_start));
            item_start = skip_ws(body, len, item_start + 1);
        }
    }
    *n = count;
    json_decref(root);
    return 0;
fail:
    json_decref(root);
    return -1;
}

struct message *event_build_raw(const char *channel, const char *event, const char *data_json,
                                int64_t now_ms, struct event_ids *ids)
{
    size_t dlen = strlen(data_json);
    char ev[EVENT_NAME_MAX + 3];
    struct span es, ds = {0, dlen};
    json_t *check = json_loads(data_json, JSON_DECODE_ANY, NULL);

    if (!check) /* hub-made data: valid by construction; never trust it blindly */
        return NULL;
    json_decref(check);
    snprintf(ev, sizeof(ev), "\"%s\"", event); /* hub-made event names need no escaping */
    es = (struct span){0, strlen(ev)};
    {
        /* the event literal and the data live in two buffers: join them for build() */
        char *text = xmalloc(es.end + dlen + 1);
        struct message *m;

        memcpy(text, ev, es.end);
        memcpy(text + es.end, data_json, dlen + 1);
        ds = (struct span){es.end, es.end + dlen};
        m = build(channel, strlen(channel), text, &es, ds, now_ms, ids);
        free(text);
        return m;
    }
}
