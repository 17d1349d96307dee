/* event.c -- validation of publish bodies and the one serialization of each event.
 * An event becomes {"type":"event","channel":…,"event":…,"id":…,"ts":…,"data":…} written by
 * jansson straight into a message buffer (after the WebSocket header room), once per hub:
 * every subscriber on every plane then shares that buffer. jansson rejects invalid UTF-8 and
 * bad JSON here, so no client ever sees either. Pure apart from allocation. */
#include "event.h"

#include "channel.h"
#include "message.h"

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

static void next_id(struct event_ids *ids, char *out, size_t len)
{
    snprintf(out, len, "%s-%llx", ids->prefix, (unsigned long long)ids->next++);
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Serializes obj into a new sealed message for channel. */
static struct message *serialize(json_t *obj, const char *channel, size_t channel_len)
{
    size_t len = json_dumpb(obj, NULL, 0, JSON_COMPACT);
    struct message *m = message_alloc(channel, channel_len, len);

    json_dumpb(obj, message_json(m), len, JSON_COMPACT);
    message_seal(m);
    return m;
}

static struct message *build(const char *channel, size_t channel_len, const char *event,
                             json_t *data, int64_t now_ms, struct event_ids *ids)
{
    char id[32];
    json_t *obj = json_object();
    struct message *m;

    next_id(ids, id, sizeof(id));
    json_object_set_new(obj, "type", json_string("event"));
    json_object_set_new(obj, "channel", json_stringn(channel, channel_len));
    if (event)
        json_object_set_new(obj, "event", json_string(event));
    json_object_set_new(obj, "id", json_string(id));
    json_object_set_new(obj, "ts", json_integer(now_ms));
    json_object_set(obj, "data", data);
    m = serialize(obj, channel, channel_len);
    json_decref(obj);
    m->ts_ms = now_ms;
    memcpy(m->id, id, strlen(id) + 1);
    return m;
}

/* Checks one event object; where = "" or " (item 3)" for the error text. */
static int check_item(json_t *item, const char *where, char *err, size_t errlen)
{
    const char *key;
    json_t *val, *ch, *ev;

    if (!json_is_object(item)) {
        set_err(err, errlen, "an event must be a JSON object%s", where);
        return -1;
    }
    json_object_foreach(item, key, val)
    {
        if (strcmp(key, "channel") && strcmp(key, "event") && strcmp(key, "data")) {
            set_err(err, errlen, "unknown field \"%.64s\"%s", key, where);
            return -1;
        }
    }
    ch = json_object_get(item, "channel");
    if (!ch) {
        set_err(err, errlen, "\"channel\" is missing%s", where);
        return -1;
    }
    if (!json_is_string(ch) ||
        !channel_name_is_valid(json_string_value(ch), json_string_length(ch))) {
        set_err(err, errlen, "\"channel\" must be 1 to 128 characters of A-Z a-z 0-9 _ - . :%s",
                where);
        return -1;
    }
    if (channel_name_is_reserved(json_string_value(ch), json_string_length(ch))) {
        set_err(err, errlen, "channels starting with '$' belong to the hub%s", where);
        return -1;
    }
    ev = json_object_get(item, "event");
    if (ev && (!json_is_string(ev) || json_string_length(ev) < 1 ||
               json_string_length(ev) > EVENT_NAME_MAX ||
               strlen(json_string_value(ev)) != json_string_length(ev))) {
        set_err(err, errlen, "\"event\" must be a string of 1 to %d bytes%s", EVENT_NAME_MAX,
                where);
        return -1;
    }
    if (!json_object_get(item, "data")) {
        set_err(err, errlen, "\"data\" is missing%s", where);
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
    char where[32] = "";

    *out = NULL;
    *n = 0;
    if (!root) {
        set_err(err, errlen, "invalid JSON: %s (at byte %d)", jerr.text, jerr.position);
        return -1;
    }
    if (json_is_array(root)) {
        count = json_array_size(root);
        if (count == 0 || count > EVENT_BATCH_MAX) {
            set_err(err, errlen, "a batch holds 1 to %d events", EVENT_BATCH_MAX);
            goto fail;
        }
        for (size_t i = 0; i < count; i++) {
            snprintf(where, sizeof(where), " (item %zu)", i);
            if (check_item(json_array_get(root, i), where, err, errlen) < 0)
                goto fail;
        }
    } else {
        count = 1;
        if (check_item(root, "", err, errlen) < 0)
            goto fail;
    }

    *out = malloc(count * sizeof(**out));
    if (!*out) {
        set_err(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < count; i++) {
        json_t *item = json_is_array(root) ? json_array_get(root, i) : root;
        json_t *ch = json_object_get(item, "channel");
        json_t *ev = json_object_get(item, "event");

        (*out)[i] =
            build(json_string_value(ch), json_string_length(ch), ev ? json_string_value(ev) : NULL,
                  json_object_get(item, "data"), now_ms, ids);
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
    json_t *data = json_loads(data_json, JSON_DECODE_ANY, NULL);
    struct message *m;

    if (!data)
        return NULL;
    m = build(channel, strlen(channel), event, data, now_ms, ids);
    json_decref(data);
    return m;
}
