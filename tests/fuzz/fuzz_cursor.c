/* fuzz_cursor.c -- libFuzzer target: an SSE Last-Event-ID (delivery/cursor.c) from arbitrary
 * bytes. The first byte picks how many channels the stream has (1 to 8); the rest is the
 * header's value. Whatever the parser takes must be what the writer writes back, byte for
 * byte (the form is strict: one way to write each position). */
#include "delivery/cursor.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cursor_pos pos[8];
    char err[160], out[8 * (CURSOR_ENTRY_MAX + 1)];
    size_t n, len;

    if (size < 1)
        return 0;
    n = 1 + data[0] % 8;
    if (cursor_parse("Last-Event-ID", (const char *)data + 1, size - 1, pos, n, err, sizeof(err)) <
        0)
        return 0;
    len = cursor_write(pos, n, out);
    if (len != size - 1 || memcmp(out, data + 1, len) != 0)
        abort();
    for (size_t i = 0; i < n; i++)
        if (pos[i].epoch_len != strlen(pos[i].epoch) || pos[i].seq > INT64_MAX)
            abort();
    return 0;
}
