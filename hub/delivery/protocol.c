/* protocol.c -- client frames in, reply frames out, per SPEC.md's WebSocket protocol.
 * Client frames are small and rare next to events (the token bucket sees to that), so this
 * parses them with jansson. Each reply is its own small message, queued behind whatever events
 * the connection already has so ordering holds. The welcome, subscribed and plain replies are
 * written without jansson (every connection gets them, a connect storm two each); errors, whose
 * text may quote what a client sent, go through it. Pure apart from allocation. */
#include "protocol.h"

#include "channel.h"
#include "common/errbuf.h"
#include "common/fmt.h"
#include "common/message.h"
#include "common/xalloc.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A whole number in min..max, or -1 (not one). */
static long long whole(json_t *v, long long min, long long max)
{
    long long n;

    if (!json_is_integer(v))
        return -1;
    n = json_integer_value(v);
    return n < min || n > max ? -1 : n;
}

/* since, last and max_rate of a subscribe. */
static int parse_subscribe(json_t *root, struct proto_cmd *cmd, char *err, size_t errlen)
{
    json_t *since = json_object_get(root, "since"), *v;
    long long n;

    if (since) {
        json_t *epoch = json_object_get(since, "epoch"), *seq = json_object_get(since, "seq");
        const char *e = json_string_value(epoch);
        size_t elen = json_string_length(epoch);

        if (!json_is_object(since) || !json_is_string(epoch) || elen > PROTO_EPOCH_MAX ||
            strspn(e, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != elen ||
            (n = whole(seq, 0, INT64_MAX)) < 0) {
            errbuf_set(
                err, errlen,
                "\"since\" must be {\"epoch\":\"…\",\"seq\":N} as a subscribed frame gave them");
            return -1;
        }
        cmd->has_since = 1;
        memcpy(cmd->since_epoch, e, elen + 1);
        cmd->since_seq = (uint64_t)n;
    }
    if ((v = json_object_get(root, "last"))) {
        if ((n = whole(v, 0, PROTO_LAST_MAX)) < 0) {
            errbuf_set(err, errlen, "\"last\" must be a whole number from 0 to %d", PROTO_LAST_MAX);
            return -1;
        }
        cmd->last = (uint32_t)n;
    }
    if ((v = json_object_get(root, "max_rate"))) {
        if ((n = whole(v, 1, PROTO_RATE_MAX)) < 0) {
            errbuf_set(err, errlen, "\"max_rate\" must be a whole number from 1 to %d",
                       PROTO_RATE_MAX);
            return -1;
        }
        cmd->max_rate = (uint32_t)n;
    }
    return 0;
}

int proto_parse(const char *frame, size_t len, struct proto_cmd *cmd, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(frame, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *type, *ch, *ref;
    const char *t;
    int rc = -1;

    memset(cmd, 0, sizeof(*cmd));
    if (!root) {
        errbuf_set(err, errlen, "invalid JSON: %s", jerr.text);
        return -1;
    }
    if (!json_is_object(root)) {
        errbuf_set(err, errlen, "a frame must be a JSON object");
        goto out;
    }
    ref = json_object_get(root, "ref");
    if (ref)
        cmd->ref = json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY);
    type = json_object_get(root, "type");
    if (!json_is_string(type)) {
        errbuf_set(err, errlen, "\"type\" must be a string");
        goto out;
    }
    t = json_string_value(type);
    if (!strcmp(t, "ping")) {
        cmd->type = PROTO_PING;
        rc = 0;
        goto out;
    }
    if (!strcmp(t, "subscribe"))
        cmd->type = PROTO_SUBSCRIBE;
    else if (!strcmp(t, "unsubscribe"))
        cmd->type = PROTO_UNSUBSCRIBE;
    else {
        errbuf_set(err, errlen, "unknown \"type\": expected subscribe, unsubscribe or ping");
        goto out;
    }
    ch = json_object_get(root, "channel");
    if (!json_is_string(ch) ||
        !channel_name_is_valid(json_string_value(ch), json_string_length(ch))) {
        errbuf_set(err, errlen, "\"channel\" must be 1 to 128 characters of A-Z a-z 0-9 _ - . :");
        goto out;
    }
    cmd->channel_len = json_string_length(ch);
    memcpy(cmd->channel, json_string_value(ch), cmd->channel_len);
    cmd->channel[cmd->channel_len] = '\0';
    if (cmd->type == PROTO_SUBSCRIBE && parse_subscribe(root, cmd, err, errlen) < 0)
        goto out;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

void proto_cmd_clear(struct proto_cmd *cmd)
{
    free(cmd->ref);
    cmd->ref = NULL;
}

/* A reply jansson writes (an error, whose text may quote what a client sent). */
static struct message *dump(json_t *obj)
{
    size_t len = json_dumpb(obj, NULL, 0, JSON_COMPACT);
    struct message *m = message_alloc(NULL, 0, len);

    json_dumpb(obj, message_json(m), len, JSON_COMPACT);
    message_seal(m);
    json_decref(obj);
    return m;
}

static void add_ref(json_t *obj, const char *ref)
{
    if (ref)
        json_object_set_new(obj, "ref", json_loads(ref, JSON_DECODE_ANY, NULL));
}

/* --- replies written as text ----------------------------------------------------------------
 * Their strings are made or checked by the hub (connection ids, --instance-id, channel names,
 * epochs) and need no escaping, so each is copied between quotes: the bytes jansson would
 * write. One that does need it (none should) is escaped by jansson (put_string). ref is the
 * compact JSON jansson wrote when the command was parsed, copied as it is. */

/* A reply of at most bound bytes: written into small or, when larger, a heap scratch;
 * text_end makes the message. */
struct text {
    char small[256];
    char *start;
};

/* the literal text around the values, counted once for every reply: "{"type":,"channel":,
 * "epoch":,"seq":,"recovered":false,"ref":}" and less */
#define TEXT_FIXED 96
#define TEXT_DIGITS 20
/* room for a string of n bytes as JSON: \u00XX is the longest escape */
#define TEXT_STRING(n) (6 * (n) + 2)

static char *text_begin(struct text *t, size_t bound)
{
    t->start = bound > sizeof(t->small) ? xmalloc(bound) : t->small;
    return t->start;
}

static struct message *text_end(struct text *t, const char *end, const char *channel)
{
    struct message *m =
        message_new(channel, channel ? strlen(channel) : 0, t->start, (size_t)(end - t->start));

    if (t->start != t->small)
        free(t->start);
    return m;
}

static bool is_plain(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '"' || s[i] == '\\' || (unsigned char)s[i] < 0x20)
            return false;
    return true;
}

/* s as a JSON string, with room for TEXT_STRING(strlen(s)) bytes at p. */
static char *put_string(char *p, const char *s)
{
    size_t n = strlen(s), w;
    json_t *v;

    if (is_plain(s, n)) {
        *p++ = '"';
        p = fmt_mem(p, s, n);
        *p++ = '"';
        return p;
    }
    v = json_stringn_nocheck(s, n);
    w = json_dumpb(v, p, TEXT_STRING(n), JSON_ENCODE_ANY);
    json_decref(v);
    return w ? p + w : fmt_str(p, "\"\""); /* not UTF-8: jansson writes nothing */
}

static char *put_ref(char *p, const char *ref)
{
    if (ref) {
        p = fmt_str(p, ",\"ref\":");
        p = fmt_str(p, ref);
    }
    return p;
}

struct message *proto_welcome(const char *connection, const char *instance, unsigned heartbeat)
{
    struct text t;
    char *p = text_begin(&t, TEXT_FIXED + TEXT_DIGITS + TEXT_STRING(strlen(connection)) +
                                 TEXT_STRING(strlen(instance)));

    p = fmt_str(p, "{\"type\":\"welcome\",\"connection\":");
    p = put_string(p, connection);
    p = fmt_str(p, ",\"instance\":");
    p = put_string(p, instance);
    p = fmt_str(p, ",\"heartbeat\":");
    p = fmt_dec(p, heartbeat);
    *p++ = '}';
    return text_end(&t, p, NULL);
}

struct message *proto_reply(const char *type, const char *channel, const char *ref)
{
    struct text t;
    char *p =
        text_begin(&t, TEXT_FIXED + TEXT_STRING(strlen(type)) +
                           (channel ? TEXT_STRING(strlen(channel)) : 0) + (ref ? strlen(ref) : 0));

    p = fmt_str(p, "{\"type\":");
    p = put_string(p, type);
    if (channel) {
        p = fmt_str(p, ",\"channel\":");
        p = put_string(p, channel);
    }
    p = put_ref(p, ref);
    *p++ = '}';
    return text_end(&t, p, NULL);
}

struct message *proto_subscribed(const char *channel, const char *epoch, uint64_t seq,
                                 int recovered, const char *ref)
{
    struct text t;
    struct message *m;
    char *p = text_begin(&t, TEXT_FIXED + TEXT_DIGITS + TEXT_STRING(strlen(channel)) +
                                 TEXT_STRING(strlen(epoch)) + (ref ? strlen(ref) : 0));

    p = fmt_str(p, "{\"type\":\"subscribed\",\"channel\":");
    p = put_string(p, channel);
    p = fmt_str(p, ",\"epoch\":");
    p = put_string(p, epoch);
    p = fmt_str(p, ",\"seq\":");
    p = fmt_dec(p, seq);
    if (recovered >= 0)
        p = fmt_str(p, recovered ? ",\"recovered\":true" : ",\"recovered\":false");
    p = put_ref(p, ref);
    *p++ = '}';
    m = text_end(&t, p, channel);
    snprintf(m->epoch, sizeof(m->epoch), "%s", epoch); /* the position it gives (SSE's id:) */
    m->seq = seq;
    return m;
}

struct message *proto_error(const char *code, const char *text, const char *ref)
{
    json_t *obj = json_object();

    json_object_set_new(obj, "type", json_string("error"));
    json_object_set_new(obj, "code", json_string(code));
    json_object_set_new(obj, "message", json_string(text));
    add_ref(obj, ref);
    return dump(obj);
}
