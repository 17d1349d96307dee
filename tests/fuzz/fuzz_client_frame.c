/* fuzz_client_frame.c -- libFuzzer target: one client frame through what the hub does with
 * it: reassembly in the session (in random fragments), parsing, subscribe/unsubscribe on a
 * channel index, and the reply frames. */
#include "common/message.h"
#include "delivery/channel.h"
#include "delivery/protocol.h"
#include "delivery/session.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct session_limits lim = {
        .send_queue_bytes = 1 << 16,
        .max_message_bytes = 4096,
        .max_subscriptions = 4,
        .rate = {.per_sec = 1000, .burst = 1000},
        .rate_grace_ms = 3000,
    };
    struct channel_index *idx = channel_index_new(0, 0, NULL);
    struct session *s = session_new(&lim, 1, 0, NULL, NULL);
    size_t off = 0, step = size ? (data[0] % 7) + 1 : 1;

    while (off < size) { /* fragments of 1..7 bytes */
        size_t n = size - off < step ? size - off : step;

        if (session_rx_append(s, data + off, n) < 0)
            break;
        off += n;
    }
    if (off == size) {
        struct proto_cmd cmd;
        char err[160];
        struct message *reply = NULL;

        size_t len;
        const char *frame = session_rx(s, &len);

        if (proto_parse(frame, len, &cmd, err, sizeof(err)) < 0) {
            reply = proto_error("bad_request", err, cmd.ref);
        } else if (cmd.type == PROTO_SUBSCRIBE) {
            session_join(s, idx, s, cmd.channel, cmd.channel_len);
            reply = proto_reply("subscribed", cmd.channel, cmd.ref);
        } else if (cmd.type == PROTO_UNSUBSCRIBE) {
            session_leave(s, idx, cmd.channel, cmd.channel_len);
            reply = proto_reply("unsubscribed", cmd.channel, cmd.ref);
        } else {
            reply = proto_reply("pong", NULL, cmd.ref);
        }
        if (reply && session_send(s, reply) == 0)
            session_pop(s);
        message_unref(&reply);
        proto_cmd_clear(&cmd);
    }
    session_leave_all(s, idx);
    session_free(s);
    channel_index_free(idx);
    return 0;
}
