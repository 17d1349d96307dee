/* bench_ws.c -- RFC 6455 client framing, the handshake's key and accept values, and the fast
 * scan of an event message for herald-bench. SHA-1 is here because the handshake needs it
 * and herald-bench links nothing but libc: it is the textbook FIPS 180-1 algorithm, used only
 * for Sec-WebSocket-Accept, never for security. */
#include "bench_ws.h"

#include <string.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* --- SHA-1 ------------------------------------------------------------------------------- */

struct sha1 {
    uint32_t h[5];
    uint64_t bytes;
    uint8_t block[64];
    size_t used;
};

static uint32_t rol(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(struct sha1 *c, const uint8_t *b)
{
    uint32_t w[80], a, bb, cc, d, e;

    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 |
               (uint32_t)b[4 * i + 2] << 8 | b[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = c->h[0];
    bb = c->h[1];
    cc = c->h[2];
    d = c->h[3];
    e = c->h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k, t;

        if (i < 20) {
            f = (bb & cc) | (~bb & d);
            k = 0x5a827999;
        } else if (i < 40) {
            f = bb ^ cc ^ d;
            k = 0x6ed9eba1;
        } else if (i < 60) {
            f = (bb & cc) | (bb & d) | (cc & d);
            k = 0x8f1bbcdc;
        } else {
            f = bb ^ cc ^ d;
            k = 0xca62c1d6;
        }
        t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = cc;
        cc = rol(bb, 30);
        bb = a;
        a = t;
    }
    c->h[0] += a;
    c->h[1] += bb;
    c->h[2] += cc;
    c->h[3] += d;
    c->h[4] += e;
}

static void sha1_init(struct sha1 *c)
{
    static const uint32_t h0[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};

    memcpy(c->h, h0, sizeof(h0));
    c->bytes = 0;
    c->used = 0;
}

static void sha1_update(struct sha1 *c, const void *data, size_t len)
{
    const uint8_t *p = data;

    c->bytes += len;
    while (len) {
        size_t n = 64 - c->used < len ? 64 - c->used : len;

        memcpy(c->block + c->used, p, n);
        c->used += n;
        p += n;
        len -= n;
        if (c->used == 64) {
            sha1_block(c, c->block);
            c->used = 0;
        }
    }
}

static void sha1_final(struct sha1 *c, uint8_t out[20])
{
    uint64_t bits = c->bytes * 8;
    uint8_t pad = 0x80, zero = 0, len[8];

    sha1_update(c, &pad, 1);
    while (c->used != 56)
        sha1_update(c, &zero, 1);
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha1_update(c, len, 8);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->h[i];
    }
}

/* --- base64 ------------------------------------------------------------------------------ */

/* Writes the base64 of in[0..len) and a NUL to out (4 * ceil(len / 3) + 1 bytes). */
static void base64(const uint8_t *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i;

    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

        *out++ = tab[v >> 18];
        *out++ = tab[(v >> 12) & 63];
        *out++ = tab[(v >> 6) & 63];
        *out++ = tab[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);

        *out++ = tab[v >> 18];
        *out++ = tab[(v >> 12) & 63];
        *out++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        *out++ = '=';
    }
    *out = '\0';
}

void ws_make_key(char out[WS_KEY_LEN + 1], const uint8_t random16[16])
{
    base64(random16, 16, out);
}

void ws_accept_for(const char *key, char out[WS_ACCEPT_LEN + 1])
{
    struct sha1 c;
    uint8_t digest[20];

    sha1_init(&c);
    sha1_update(&c, key, strlen(key));
    sha1_update(&c, WS_GUID, strlen(WS_GUID));
    sha1_final(&c, digest);
    base64(digest, sizeof(digest), out);
}

/* --- frames ------------------------------------------------------------------------------ */

int ws_parse_header(const uint8_t *p, size_t len, struct ws_frame *f)
{
    size_t need = 2;
    uint64_t n;

    if (len < 2)
        return 0;
    if (p[0] & 0x70) /* RSV1-3: no extension was negotiated */
        return -1;
    f->is_fin = (p[0] & 0x80) != 0;
    f->opcode = p[0] & 0x0f;
    f->is_masked = (p[1] & 0x80) != 0;
    n = p[1] & 0x7f;
    if (n == 126)
        need += 2;
    else if (n == 127)
        need += 8;
    if (f->is_masked)
        need += 4;
    if (len < need)
        return 0;
    if (n == 126) {
        n = (uint64_t)p[2] << 8 | p[3];
    } else if (n == 127) {
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | p[2 + i];
        if (n >> 63)
            return -1;
    }
    if ((f->opcode & 0x8) && (n > 125 || !f->is_fin))
        return -1;
    f->payload_len = n;
    if (f->is_masked)
        memcpy(f->mask, p + need - 4, 4);
    return (int)need;
}

void ws_unmask(uint8_t *p, size_t len, const uint8_t mask[4], size_t offset)
{
    for (size_t i = 0; i < len; i++)
        p[i] ^= mask[(i + offset) & 3];
}

size_t ws_build_frame(uint8_t *out, enum ws_opcode opcode, const void *payload, size_t len,
                      uint32_t mask)
{
    size_t h = 0;
    uint8_t m[4] = {(uint8_t)(mask >> 24), (uint8_t)(mask >> 16), (uint8_t)(mask >> 8),
                    (uint8_t)mask};

    out[h++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        out[h++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    } else {
        out[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            out[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(out + h, m, 4);
    h += 4;
    if (len)
        memcpy(out + h, payload, len);
    ws_unmask(out + h, len, m, 0);
    return h + len;
}

/* --- messages ---------------------------------------------------------------------------- */

static bool has_prefix(const char *p, size_t len, const char *word)
{
    size_t n = strlen(word);

    return len >= n && memcmp(p, word, n) == 0;
}

enum ws_msg ws_msg_type(const char *p, size_t len)
{
    static const char key[] = "\"type\":\"";
    const char *t;
    size_t rest;

    /* the hub writes "type" first; look a little further in case it ever does not */
    if (has_prefix(p, len, "{\"type\":\"")) {
        t = p + 9;
    } else {
        t = memmem(p, len < 256 ? len : 256, key, sizeof(key) - 1);
        if (!t)
            return WS_MSG_OTHER;
        t += sizeof(key) - 1;
    }
    rest = len - (size_t)(t - p);
    if (has_prefix(t, rest, "event\""))
        return WS_MSG_EVENT;
    if (has_prefix(t, rest, "subscribed\""))
        return WS_MSG_SUBSCRIBED;
    if (has_prefix(t, rest, "welcome\""))
        return WS_MSG_WELCOME;
    if (has_prefix(t, rest, "error\""))
        return WS_MSG_ERROR;
    return WS_MSG_OTHER;
}

/* Reads an unsigned decimal at p (up to end); returns the byte after it, or NULL. */
static const char *read_u64(const char *p, const char *end, uint64_t *out)
{
    uint64_t v = 0;
    const char *start = p;

    while (p < end && *p >= '0' && *p <= '9' && p - start < 19)
        v = v * 10 + (uint64_t)(*p++ - '0');
    if (p == start)
        return NULL;
    *out = v;
    return p;
}

int ws_scan_event(const char *p, size_t len, int64_t *t, uint64_t *s)
{
    const char *end = p + len, *q;
    uint64_t v;

    q = memmem(p, len, "\"t\":", 4);
    if (!q)
        return -1;
    q = read_u64(q + 4, end, &v);
    if (!q)
        return -1;
    *t = (int64_t)v;
    q = memmem(q, (size_t)(end - q), "\"s\":", 4);
    if (!q)
        return -1;
    q = read_u64(q + 4, end, s);
    return q ? 0 : -1;
}
