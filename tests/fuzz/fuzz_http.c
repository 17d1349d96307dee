/* fuzz_http.c -- libFuzzer target: request bytes as any client on --api-listen could send them
 * (hub/control/http_parse.c). The head parser must never read outside the input and every span
 * it returns must lie inside it; a chunked body fed in pieces of any size decodes to the same
 * bytes as fed whole. */
#include "control/http_parse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(struct http_span sp, const char *buf, size_t len)
{
    if (sp.len && (sp.p < buf || sp.p + sp.len > buf + len) && !(sp.len == 1 && sp.p[0] == '/'))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct http_head h;
    enum http_parse_result r = http_parse_head(buf, size, 4096, &h);

    if (r == HTTP_PARSE_OK) {
        if (h.head_len > size)
            abort();
        inside(h.target, buf, size);
        inside(h.path, buf, size);
        inside(h.query, buf, size);
        for (size_t i = 0; i < h.n_fields; i++) {
            inside(h.fields[i].name, buf, size);
            inside(h.fields[i].value, buf, size);
        }
        if (h.is_chunked && h.has_length)
            abort();
    }
    {
        /* the bytes as a chunked body: whole, then one byte at a time */
        struct http_chunked a, b;
        char *whole = malloc(size + 1), *bytewise = malloc(size + 1);
        size_t wl = 0, bl = 0, used = 0, off = 0;
        enum http_parse_result ra, rb = HTTP_PARSE_MORE;

        http_chunked_init(&a);
        http_chunked_init(&b);
        ra = http_chunked_feed(&a, buf, size, &used, whole, &wl, size);
        while (off < size && rb == HTTP_PARSE_MORE) {
            size_t u = 0;

            rb = http_chunked_feed(&b, buf + off, 1, &u, bytewise, &bl, size);
            off += u;
        }
        if (ra != rb || wl != bl || memcmp(whole, bytewise, wl) != 0 || wl > size)
            abort();
        free(whole);
        free(bytewise);
    }
    return 0;
}
