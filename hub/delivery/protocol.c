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

/* channel may be NULL: a reply about no channel. */
static struct message *dump_for(json_t *obj, const char *channel)
{
    size_t len = json_dumpb(obj, NULL, 0, JSON_COMPACT);
    struct message *m = message_alloc(channel, channel ? strlen(channel) : 0, len);

    json_dumpb(obj, message_json(m), len, JSON_COMPACT);
    message_seal(m);
    json_decref(obj);
    return m;
}

static struct message *dump(json_t *obj)
{
    return dump_for(obj, NULL);
}

static void add_ref(json_t *obj, const char *ref)
{
    if (ref)
        json_object_set_new(obj, "ref", json_loads(ref, JSON_DECODE_ANY, NULL));
}

/* --- replies written as text ----------------------------------------------------------------
 * Their strings are made or checked by the hub (connection ids, --instance-id, channel names,
 * epochs: no quote, backslash or control character) and ref is the compact JSON jansson wrote
 * when the command was parsed, so each goes out as it is: the bytes jansson would write. A
 * string that would need escaping (none should) sends the reply through jansson instead. */

static bool is_plain(const char *s)
{
    for (; s && *s; s++)
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
            return false;
    return true;
}

/* A reply of at most bound bytes: written into buf (its size) or, when larger, a heap scratch;
 * text_end makes the message. */
struct text {
    char small[256];
    char *start;
};

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

static char *put_ref(char *p, const char *ref)
{
    if (ref) {
        p = fmt_str(p, ",\"ref\":");
        p = fmt_str(p, ref);
    }
    return p;
}

/* the literal text around the values, counted once for every reply: "{"type":"subscribed",
 * "channel":"","epoch":"","seq":,"recovered":false,"ref":}" and less */
#define TEXT_FIXED 96
#define TEXT_DIGITS 20

struct message *proto_welcome(const char *connection, const char *instance, unsigned heartbeat)
{
    struct text t;
    char *p;

    if (!is_plain(connection) || !is_plain(instance)) {
        json_t *obj = json_object();

        json_object_set_new(obj, "type", json_string("welcome"));
        json_object_set_new(obj, "connection", json_string(connection));
        json_object_set_new(obj, "instance", json_string(instance));
        json_object_set_new(obj, "heartbeat", json_integer(heartbeat));
        return dump(obj);
    }
    p = text_begin(&t, TEXT_FIXED + TEXT_DIGITS + strlen(connection) + strlen(instance));
    p = fmt_str(p, "{\"type\":\"welcome\",\"connection\":\"");
    p = fmt_str(p, connection);
    p = fmt_str(p, "\",\"instance\":\"");
    p = fmt_str(p, instance);
    p = fmt_str(p, "\",\"heartbeat\":");
    p = fmt_dec(p, heartbeat);
    *p++ = '}';
    return text_end(&t, p, NULL);
}

struct message *proto_reply(const char *type, const char *channel, const char *ref)
{
    struct text t;
    char *p;

    if (!is_plain(type) || !is_plain(channel)) {
        json_t *obj = json_object();

        json_object_set_new(obj, "type", json_string(type));
        if (channel)
            json_object_set_new(obj, "channel", json_string(channel));
        add_ref(obj, ref);
        return dump(obj);
    }
    p = text_begin(&t, TEXT_FIXED + strlen(type) + (channel ? strlen(channel) : 0) +
                           (ref ? strlen(ref) : 0));
    p = fmt_str(p, "{\"type\":\"");
    p = fmt_str(p, type);
    *p++ = '"';
    if (channel) {
        p = fmt_str(p, ",\"channel\":\"");
        p = fmt_str(p, channel);
        *p++ = '"';
    }
    p = put_ref(p, ref);
    *p++ = '}';
    return text_end(&t, p, NULL);
}

struct message *proto_subscribed(const char *channel, const char *epoch, uint64_t seq,
                                 int recovered, const char *ref)
{
    struct message *m;

    if (!is_plain(channel) || !is_plain(epoch)) {
        json_t *obj = json_object();

        json_object_set_new(obj, "type", json_string("subscribed"));
        json_object_set_new(obj, "channel", json_string(channel));
        json_object_set_new(obj, "epoch", json_string(epoch));
        json_object_set_new(obj, "seq", json_integer((json_int_t)seq));
        if (recovered >= 0)
            json_object_set_new(obj, "recovered", json_boolean(recovered));
        add_ref(obj, ref);
        m = dump_for(obj, channel);
    } else {
        struct text t;
        char *p = text_begin(&t, TEXT_FIXED + TEXT_DIGITS + strlen(channel) + strlen(epoch) +
                                     (ref ? strlen(ref) : 0));

        p = fmt_str(p, "{\"type\":\"subscribed\",\"channel\":\"");
        p = fmt_str(p, channel);
        p = fmt_str(p, "\",\"epoch\":\"");
        p = fmt_str(p, epoch);
        p = fmt_str(p, "\",\"seq\":");
        p = fmt_dec(p, seq);
        if (recovered >= 0)
            p = fmt_str(p, recovered ? ",\"recovered\":true" : ",\"recovered\":false");
        p = put_ref(p, ref);
        *p++ = '}';
        m = text_end(&t, p, channel);
    }
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
