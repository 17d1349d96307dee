/* bench_ws.h -- the WebSocket client wire format, as much as herald-bench needs (RFC 6455).
 * Pure: no I/O, no allocation, no clock. The caller supplies randomness (keys, masks). */
#ifndef HERALD_BENCH_WS_H
#define HERALD_BENCH_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_KEY_LEN 24    /* base64 of 16 bytes */
#define WS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */
#define WS_MAX_HEADER 14 /* the longest client frame header: 2 + 8 + 4 (mask) */

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xa,
};

struct ws_frame {
    uint8_t opcode;
    bool is_fin;
    bool is_masked; /* a server must not mask; the parser accepts it and reports it */
    uint8_t mask[4];
    uint64_t payload_len;
};

/* What a text message from the hub is, read from its "type" (SPEC.md, hub to client). */
enum ws_msg {
    WS_MSG_OTHER,
    WS_MSG_EVENT,
    WS_MSG_WELCOME,
    WS_MSG_SUBSCRIBED,
    WS_MSG_ERROR,
};

/* out receives WS_KEY_LEN characters and a NUL: the Sec-WebSocket-Key for 16 random bytes. */
void ws_make_key(char out[WS_KEY_LEN + 1], const uint8_t random16[16]);
/* out receives WS_ACCEPT_LEN characters and a NUL: the Sec-WebSocket-Accept a server must
 * answer to key. */
void ws_accept_for(const char *key, char out[WS_ACCEPT_LEN + 1]);

/* Reads a frame header from p[0..len). Returns its length (2 to 14) with *f filled, 0 when
 * more bytes are needed, -1 when the header is invalid (reserved bits, a control frame over
 * 125 bytes or fragmented, a length with its top bit set). */
int ws_parse_header(const uint8_t *p, size_t len, struct ws_frame *f);
/* Writes a masked client frame (FIN set) of opcode with len bytes of payload to out, which
 * holds at least len + WS_MAX_HEADER bytes. Returns the frame's length. */
size_t ws_build_frame(uint8_t *out, enum ws_opcode opcode, const void *payload, size_t len,
                      uint32_t mask);
/* XORs p[0..len) with mask, the mask cycle starting at offset. */
void ws_unmask(uint8_t *p, size_t len, const uint8_t mask[4], size_t offset);

/* Classifies one text message by its "type". */
enum ws_msg ws_msg_type(const char *p, size_t len);
/* Pulls herald-bench's send time "t" (microseconds) and sequence "s" out of an event message:
 * the first "t": and the "s": after it (the hub's own keys are "type" and "ts", which never
 * match). Returns 0, or -1 when either is missing or not a number. */
int ws_scan_event(const char *p, size_t len, int64_t *t, uint64_t *s);

#endif
