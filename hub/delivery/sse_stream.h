/* sse_stream.h -- one SSE stream's own state and wire format, free of lws: the channels its
 * query named, in order; where the stream stands in each (cursor.h); and a queued message
 * written as one SSE event. delivery/sse.c is the lws side. Delivery thread only. */
#ifndef HERALD_SSE_STREAM_H
#define HERALD_SSE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cursor_pos;
struct message;
struct sse_stream;

/* A stream of the channels in list (a channels= value: names separated by commas, empty
 * items skipped), at most max of them. Returns NULL with err set when a name is not a valid
 * channel name, or there is none, or more than max. */
struct sse_stream *sse_stream_new(const char *list, uint32_t max, char *err, size_t errlen);
void sse_stream_free(struct sse_stream *x); /* NULL is a no-op */

uint32_t sse_stream_channels(const struct sse_stream *x);
/* Channel i's name (not NUL-terminated), its length in *len. */
const char *sse_stream_channel(const struct sse_stream *x, uint32_t i, size_t *len);
/* Where the stream stands in each channel ([channels]; epoch "" for no position yet): what a
 * Last-Event-ID gave, before anything is written; then what the stream wrote. */
struct cursor_pos *sse_stream_positions(struct sse_stream *x);

/* names=0 in the query: no event: line, so that every event reaches an EventSource's
 * onmessage (a client that cannot know the event names in advance: herald.js). */
void sse_stream_set_unnamed(struct sse_stream *x, bool is_unnamed);
bool sse_stream_is_unnamed(const struct sse_stream *x);

/* msg as an event of stream x:
 *   id: <cursor>            (when msg positions one of its channels: an event, gap, reset
 *                            or subscribed reply with a position)
 *   event: <name>           (an event's name, "message" without one; else the frame's type;
 *                            no such line on an unnamed stream)
 *   data: <msg's JSON>      (a line break in the JSON starts another data: line)
 *   <blank line>
 * Returns its length; writes it at out and moves the stream's cursor only when it fits in
 * room. msg is only read. */
size_t sse_stream_frame(struct sse_stream *x, const struct message *msg, unsigned char *out,
                        size_t room);

#endif
