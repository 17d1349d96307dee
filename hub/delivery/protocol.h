/* protocol.h -- the client side of /ws: parsing client frames, building replies. */
#ifndef HERALD_PROTOCOL_H
#define HERALD_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

struct message;

enum proto_type { PROTO_SUBSCRIBE, PROTO_UNSUBSCRIBE, PROTO_PING };

#define PROTO_EPOCH_MAX 24
#define PROTO_LAST_MAX 1000
#define PROTO_RATE_MAX 1000

struct proto_cmd {
    enum proto_type type;
    char channel[129]; /* subscribe, unsubscribe: a valid name */
    size_t channel_len;
    char *ref; /* the frame's "ref" serialized as JSON, or NULL; owned */
    /* subscribe */
    int has_since; /* "since":{"epoch":E,"seq":S} */
    char since_epoch[PROTO_EPOCH_MAX + 1];
    uint64_t since_seq;
    uint32_t last;     /* "last":N, 0..PROTO_LAST_MAX (0: none) */
    uint32_t max_rate; /* "max_rate":R, 1..PROTO_RATE_MAX (0: none) */
};

/* Parses one client text frame. Returns 0, or -1 with err set (an error frame with code
 * bad_request answers it); cmd->ref is set whenever the frame was an object with a "ref",
 * so the error can echo it. Release with proto_cmd_clear() in both cases. */
int proto_parse(const char *frame, size_t len, struct proto_cmd *cmd, char *err, size_t errlen);
void proto_cmd_clear(struct proto_cmd *cmd);

/* Replies, each a new message with one reference. ref may be NULL. */
struct message *proto_welcome(const char *connection, const char *instance, unsigned heartbeat);
/* {"type":type[,"channel":channel][,"ref":ref]}; channel may be NULL */
struct message *proto_reply(const char *type, const char *channel, const char *ref);
/* {"type":"subscribed","channel":…,"epoch":…,"seq":…[,"recovered":…][,"ref":…]}; recovered
 * -1 leaves it out. The message's channel, epoch and seq hold the position it gives (it is
 * still a MESSAGE_REPLY: made for one client). */
struct message *proto_subscribed(const char *channel, const char *epoch, uint64_t seq,
                                 int recovered, const char *ref);
struct message *proto_error(const char *code, const char *text, const char *ref);

#endif
