/* cursor.h -- where an SSE stream stands in each of its channels, as one string: the `id:` of
 * the events it sends, which a client sends back as Last-Event-ID to resume. A comma list
 * with one entry per channel of the query's channels= list, in that order; an entry is
 * EPOCH:SEQ (the channel's epoch and the last seq the stream sent of it) or empty (no
 * position yet: the stream had not been told where the channel stood). "k3J9a0b1:17,,Ab2:0".
 * Pure: no lws, no allocation. Any thread. */
#ifndef HERALD_CURSOR_H
#define HERALD_CURSOR_H

#include "common/message.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest entry: an epoch, ':', a seq of up to 19 digits (at most INT64_MAX). */
#define CURSOR_ENTRY_MAX (MESSAGE_EPOCH_MAX + 1 + 19)

/* One channel's position; epoch_len 0 (epoch "") is no position. */
struct cursor_pos {
    char epoch[MESSAGE_EPOCH_MAX + 1]; /* NUL-terminated */
    uint8_t epoch_len;                 /* strlen(epoch), kept: written once per event */
    uint64_t seq;
};

/* Reads text (len bytes, not NUL-terminated) as exactly n entries into out[0..n). Strict:
 * the number of entries, epochs of 1 to MESSAGE_EPOCH_MAX letters and digits, seqs in
 * decimal without sign or leading zero up to INT64_MAX. Returns 0, or -1 with err set (out
 * is then undefined); what names the text in err ("Last-Event-ID", "since="). */
int cursor_parse(const char *what, const char *text, size_t len, struct cursor_pos *out, size_t n,
                 char *err, size_t errlen);

/* Length of one entry as cursor_write() writes it (0 for no position). */
size_t cursor_entry_len(const struct cursor_pos *pos);

/* Writes the n entries of v, comma-separated, at out, which holds at least their length
 * (the sum of cursor_entry_len plus n - 1). Returns the bytes written; no NUL. */
size_t cursor_write(const struct cursor_pos *v, size_t n, char *out);

/* Digits of seq in decimal. */
size_t cursor_digits(uint64_t seq);

#endif
