/* fuzz_redis_wire.c -- libFuzzer target: a payload from the shared Redis channel, as anything
 * that can PUBLISH there could write it. Decoding must never crash, and every record it hands
 * on must pass the strict record checks (a valid channel that is not the hub's own, a frame
 * within max_frame bytes that is one JSON object starting as hubs write event frames). */
#include "broker/redis_wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FRAME 4096

static void on_record(const struct redis_wire_record *rec, void *arg)
{
    size_t *n = arg;

    if (!redis_wire_frame_ok(rec->channel, rec->channel_len, rec->seq, rec->frame, rec->frame_len,
                             MAX_FRAME) ||
        !redis_wire_epoch_ok(rec->epoch, rec->epoch_len) || rec->frame_len > MAX_FRAME ||
        rec->channel[0] == '$' || rec->frame[0] != '{' || rec->seq == 0)
        abort();
    (*n)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct redis_wire_heartbeat hb;
    size_t n = 0, bad = 0;

    switch (redis_wire_decode((const char *)data, size, MAX_FRAME, on_record, &n, &hb, &bad)) {
    case REDIS_WIRE_HEARTBEAT:
        if (!hb.instance || hb.instance_len == 0 || hb.instance_len > size)
            abort();
        if (memchr(hb.instance, '\t', hb.instance_len) ||
            memchr(hb.instance, '\n', hb.instance_len))
            abort();
        break;
    case REDIS_WIRE_EVENTS:
    case REDIS_WIRE_UNKNOWN: break;
    }
    return 0;
}
