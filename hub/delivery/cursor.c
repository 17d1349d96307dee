/* cursor.c -- an SSE stream's position in each of its channels, written and read (cursor.h).
 * The entries follow the query's channel order, not the names: the names are in the URL the
 * client reconnects with (an EventSource reconnects to the same URL), so writing them again
 * in every id would only make each event longer. A reconnect with another channel list of
 * the same length resumes the wrong channels only in name: an epoch is drawn per channel, so
 * such a resume is answered recovered:false, never with another channel's events. */
#include "cursor.h"

#include "common/errbuf.h"

#include <string.h>

static bool is_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* One entry, s[0..len): empty, or EPOCH:SEQ. */
static int parse_entry(const char *s, size_t len, struct cursor_pos *out)
{
    const char *colon = memchr(s, ':', len);
    size_t elen, slen;
    uint64_t seq = 0;

    memset(out, 0, sizeof(*out));
    if (!len)
        return 0;
    if (!colon)
        return -1;
    elen = (size_t)(colon - s);
    slen = len - elen - 1;
    if (elen < 1 || elen > MESSAGE_EPOCH_MAX || slen < 1 || slen > 19 ||
        (slen > 1 && colon[1] == '0'))
        return -1;
    for (size_t i = 0; i < elen; i++)
        if (!is_alnum(s[i]))
            return -1;
    for (size_t i = 0; i < slen; i++) {
        char c = colon[1 + i];

        if (c < '0' || c > '9')
            return -1;
        seq = seq * 10 + (uint64_t)(c - '0'); /* 19 digits cannot wrap a uint64_t */
    }
    if (seq > INT64_MAX)
        return -1;
    memcpy(out->epoch, s, elen);
    out->epoch[elen] = '\0';
    out->epoch_len = (uint8_t)elen;
    out->seq = seq;
    return 0;
}

int cursor_parse(const char *what, const char *text, size_t len, struct cursor_pos *out, size_t n,
                 char *err, size_t errlen)
{
    size_t i = 0, at = 0;

    for (;;) {
        const char *comma = memchr(text + at, ',', len - at);
        size_t elen = comma ? (size_t)(comma - (text + at)) : len - at;

        if (i == n) {
            errbuf_set(err, errlen, "%s has more entries than channels= has channels", what);
            return -1;
        }
        if (parse_entry(text + at, elen, &out[i]) < 0) {
            errbuf_set(err, errlen,
                       "%s entry %zu is not EPOCH:SEQ as an id: of this stream gave it", what,
                       i + 1);
            return -1;
        }
        i++;
        if (!comma)
            break;
        at += elen + 1;
    }
    if (i != n) {
        errbuf_set(err, errlen, "%s has %zu entries for %zu channels", what, i, n);
        return -1;
    }
    return 0;
}

size_t cursor_digits(uint64_t seq)
{
    size_t d = 1;

    while (seq >= 10) {
        seq /= 10;
        d++;
    }
    return d;
}

size_t cursor_entry_len(const struct cursor_pos *pos)
{
    return pos->epoch_len ? pos->epoch_len + 1u + cursor_digits(pos->seq) : 0;
}

size_t cursor_write(const struct cursor_pos *v, size_t n, char *out)
{
    char *p = out;

    for (size_t i = 0; i < n; i++) {
        if (i)
            *p++ = ',';
        if (v[i].epoch_len) {
            size_t d = cursor_digits(v[i].seq);
            uint64_t seq = v[i].seq;

            memcpy(p, v[i].epoch, v[i].epoch_len);
            p += v[i].epoch_len;
            *p++ = ':';
            for (size_t k = d; k-- > 0; seq /= 10)
                p[k] = (char)('0' + seq % 10);
            p += d;
        }
    }
    return (size_t)(p - out);
}
