/* http_parse.c -- the request head and chunked bodies (http_parse.h).
 * Lines end in CRLF or a bare LF (RFC 9112 2.2 allows a recipient to take LF alone). Framing
 * is where request smuggling hides, so it is strict: Content-Length must be digits, and
 * several must agree; Transfer-Encoding may only be "chunked", and never with a
 * Content-Length; a field name followed by space, an obsolete line fold, or a control byte in
 * a field is a bad request. */
#include "http_parse.h"

#include <string.h>
#include <strings.h>

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool span_is(struct http_span s, const char *word)
{
    size_t n = strlen(word);

    return s.len == n && !strncasecmp(s.p, word, n);
}

/* The line starting at p (before end): its length without the terminator, and *next. */
static const char *line_end(const char *p, const char *end, const char **next)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));

    if (!nl)
        return NULL;
    *next = nl + 1;
    return nl > p && nl[-1] == '\r' ? nl - 1 : nl;
}

static enum http_method method_of(struct http_span m)
{
    static const struct {
        const char *name;
        enum http_method method;
    } known[] = {{"GET", HTTP_GET},    {"HEAD", HTTP_HEAD},     {"POST", HTTP_POST},
                 {"PUT", HTTP_PUT},    {"DELETE", HTTP_DELETE}, {"OPTIONS", HTTP_OPTIONS},
                 {"PATCH", HTTP_PATCH}};

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (m.len == strlen(known[i].name) && !memcmp(m.p, known[i].name, m.len))
            return known[i].method;
    return HTTP_OTHER;
}

static enum http_parse_result request_line(const char *p, const char *eol, struct http_head *h)
{
    const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    const char *t, *q;

    if (!sp1 || !sp2 || sp1 == p || sp2 == sp1 + 1)
        return HTTP_PARSE_BAD;
    for (const char *c = p; c < sp1; c++)
        if (!is_tchar((unsigned char)*c))
            return HTTP_PARSE_BAD;
    h->method = method_of((struct http_span){p, (size_t)(sp1 - p)});
    for (t = sp1 + 1; t < sp2; t++)
        if ((unsigned char)*t <= 0x20 || *t == 0x7f)
            return HTTP_PARSE_BAD;
    if (eol - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/", 5) != 0)
        return HTTP_PARSE_BAD;
    if (sp2[6] != '1' || sp2[7] != '.' || (sp2[8] != '0' && sp2[8] != '1'))
        return sp2[6] >= '0' && sp2[6] <= '9' ? HTTP_PARSE_VERSION : HTTP_PARSE_BAD;
    h->minor = sp2[8] - '0';
    h->target = (struct http_span){sp1 + 1, (size_t)(sp2 - sp1 - 1)};
    t = h->target.p;
    if (h->target.len > 7 && (!strncasecmp(t, "http://", 7) || !strncasecmp(t, "https://", 8))) {
        /* absolute-form: the path starts after the authority */
        const char *auth = memchr(t, ':', h->target.len) + 3;
        const char *slash = memchr(auth, '/', (size_t)(sp2 - auth));

        t = slash ? slash : sp2;
    } else if (*t != '/' && !(h->target.len == 1 && *t == '*')) {
        return HTTP_PARSE_BAD;
    }
    q = memchr(t, '?', (size_t)(sp2 - t));
    h->path = (struct http_span){t, (size_t)((q ? q : sp2) - t)};
    h->query = q ? (struct http_span){q + 1, (size_t)(sp2 - q - 1)} : (struct http_span){sp2, 0};
    if (h->path.len == 0)
        h->path = (struct http_span){"/", 1};
    return HTTP_PARSE_OK;
}

static enum http_parse_result field(const char *p, const char *eol, struct http_head *h)
{
    const char *colon = memchr(p, ':', (size_t)(eol - p));
    const char *v, *ve;
    struct http_field *f;

    if (*p == ' ' || *p == '\t') /* an obsolete line fold */
        return HTTP_PARSE_BAD;
    if (!colon || colon == p)
        return HTTP_PARSE_BAD;
    for (const char *c = p; c < colon; c++)
        if (!is_tchar((unsigned char)*c)) /* a space before the colon included */
            return HTTP_PARSE_BAD;
    for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
        ;
    for (ve = eol; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
        ;
    for (const char *c = v; c < ve; c++)
        if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f)
            return HTTP_PARSE_BAD;
    if (h->n_fields == HTTP_MAX_HEADERS)
        return HTTP_PARSE_TOO_LONG;
    f = &h->fields[h->n_fields++];
    f->name = (struct http_span){p, (size_t)(colon - p)};
    f->value = (struct http_span){v, (size_t)(ve - v)};
    return HTTP_PARSE_OK;
}

/* Does the comma list s hold token (case-insensitive)? */
static bool list_has(struct http_span s, const char *token)
{
    const char *p = s.p, *end = s.p + s.len;

    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        struct http_span item;

        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        item = (struct http_span){p, (size_t)(e - p)};
        while (item.len && (item.p[item.len - 1] == ' ' || item.p[item.len - 1] == '\t'))
            item.len--;
        if (span_is(item, token))
            return true;
        p = comma ? comma + 1 : end;
    }
    return false;
}

static enum http_parse_result framing(struct http_head *h)
{
    bool keep_alive = false;
    int te = 0;

    for (size_t i = 0; i < h->n_fields; i++) {
        const struct http_field *f = &h->fields[i];

        if (span_is(f->name, "Content-Length")) {
            uint64_t n = 0;

            if (f->value.len == 0 || f->value.len > 15)
                return HTTP_PARSE_BAD;
            for (size_t k = 0; k < f->value.len; k++) {
                if (f->value.p[k] < '0' || f->value.p[k] > '9')
                    return HTTP_PARSE_BAD;
                n = n * 10 + (uint64_t)(f->value.p[k] - '0');
            }
            if (h->has_length && n != h->content_length)
                return HTTP_PARSE_BAD;
            h->has_length = true;
            h->content_length = n;
        } else if (span_is(f->name, "Transfer-Encoding")) {
            if (++te > 1 || !span_is(f->value, "chunked"))
                return HTTP_PARSE_UNSUPPORTED;
            h->is_chunked = true;
        } else if (span_is(f->name, "Connection")) {
            h->wants_close |= list_has(f->value, "close");
            keep_alive |= list_has(f->value, "keep-alive");
        } else if (span_is(f->name, "Expect")) {
            h->expects_continue = span_is(f->value, "100-continue");
        }
    }
    if (h->is_chunked && h->has_length)
        return HTTP_PARSE_BAD;
    if (h->minor == 0 && !keep_alive)
        h->wants_close = true;
    return HTTP_PARSE_OK;
}

enum http_parse_result http_parse_head(const char *buf, size_t len, size_t max_head,
                                       struct http_head *h)
{
    const char *p = buf, *end = buf + len, *next, *eol;
    enum http_parse_result rc;

    memset(h, 0, sizeof(*h));
    while (p < end && (*p == '\r' || *p == '\n')) /* empty lines before a request */
        p++;
    if ((size_t)(p - buf) > max_head)
        return HTTP_PARSE_TOO_LONG;
    eol = line_end(p, end, &next);
    if (!eol)
        return len > max_head ? HTTP_PARSE_TOO_LONG : HTTP_PARSE_MORE;
    if ((rc = request_line(p, eol, h)) != HTTP_PARSE_OK)
        return rc;
    for (p = next;; p = next) {
        eol = line_end(p, end, &next);
        if (!eol)
            return len > max_head ? HTTP_PARSE_TOO_LONG : HTTP_PARSE_MORE;
        if ((size_t)(next - buf) > max_head)
            return HTTP_PARSE_TOO_LONG;
        if (eol == p)
            break; /* the empty line: the head is complete */
        if ((rc = field(p, eol, h)) != HTTP_PARSE_OK)
            return rc;
    }
    h->head_len = (size_t)(next - buf);
    return framing(h);
}

const char *http_head_field(const struct http_head *h, const char *name, size_t *len)
{
    for (size_t i = 0; i < h->n_fields; i++) {
        if (span_is(h->fields[i].name, name)) {
            *len = h->fields[i].value.len;
            return h->fields[i].value.p;
        }
    }
    *len = 0;
    return NULL;
}

enum chunk_state {
    CHUNK_SIZE,
    CHUNK_EXT,
    CHUNK_SIZE_LF,
    CHUNK_DATA,
    CHUNK_DATA_CR,
    CHUNK_DATA_LF,
    CHUNK_TRAILER_START,
    CHUNK_TRAILER,
    CHUNK_END_LF,
    CHUNK_DONE,
};

void http_chunked_init(struct http_chunked *c)
{
    memset(c, 0, sizeof(*c));
    c->state = CHUNK_SIZE;
}

static int hex(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

enum http_parse_result http_chunked_feed(struct http_chunked *c, const char *in, size_t len,
                                         size_t *consumed, char *out, size_t *out_len,
                                         size_t out_cap)
{
    size_t i = 0;

    while (i < len) {
        char ch = in[i];

        switch (c->state) {
        case CHUNK_SIZE:
            if (hex(ch) >= 0) {
                if (++c->size_digits > 15)
                    return HTTP_PARSE_BAD;
                c->remaining = c->remaining * 16 + (uint64_t)hex(ch);
            } else if (c->size_digits && (ch == ';' || ch == ' ' || ch == '\t')) {
                c->state = CHUNK_EXT;
            } else if (c->size_digits && ch == '\r') {
                c->state = CHUNK_SIZE_LF;
            } else if (c->size_digits && ch == '\n') {
                c->state = c->remaining ? CHUNK_DATA : CHUNK_TRAILER_START;
            } else {
                return HTTP_PARSE_BAD;
            }
            i++;
            break;
        case CHUNK_EXT: /* chunk extensions are ignored, up to the line's end */
            if (ch == '\n')
                c->state = c->remaining ? CHUNK_DATA : CHUNK_TRAILER_START;
            else if ((unsigned char)ch < 0x20 && ch != '\t' && ch != '\r')
                return HTTP_PARSE_BAD;
            i++;
            break;
        case CHUNK_SIZE_LF:
            if (ch != '\n')
                return HTTP_PARSE_BAD;
            c->state = c->remaining ? CHUNK_DATA : CHUNK_TRAILER_START;
            i++;
            break;
        case CHUNK_DATA: {
            size_t n = len - i < c->remaining ? len - i : (size_t)c->remaining;

            if (*out_len + n > out_cap)
                return HTTP_PARSE_TOO_LONG;
            memmove(out + *out_len, in + i, n);
            *out_len += n;
            c->remaining -= n;
            i += n;
            if (!c->remaining)
                c->state = CHUNK_DATA_CR;
            break;
        }
        case CHUNK_DATA_CR:
            if (ch == '\r') {
                c->state = CHUNK_DATA_LF;
            } else if (ch == '\n') {
                c->state = CHUNK_SIZE;
                c->size_digits = 0;
            } else {
                return HTTP_PARSE_BAD;
            }
            i++;
            break;
        case CHUNK_DATA_LF:
            if (ch != '\n')
                return HTTP_PARSE_BAD;
            c->state = CHUNK_SIZE;
            c->size_digits = 0;
            i++;
            break;
        case CHUNK_TRAILER_START: /* an empty line ends the body; else a trailer field */
            if (ch == '\r')
                c->state = CHUNK_END_LF;
            else if (ch == '\n')
                c->state = CHUNK_DONE;
            else
                c->state = CHUNK_TRAILER;
            i++;
            break;
        case CHUNK_TRAILER:
            if (ch == '\n')
                c->state = CHUNK_TRAILER_START;
            i++;
            break;
        case CHUNK_END_LF:
            if (ch != '\n')
                return HTTP_PARSE_BAD;
            c->state = CHUNK_DONE;
            i++;
            break;
        case CHUNK_DONE: break;
        }
        if (c->state == CHUNK_DONE)
            break;
    }
    *consumed = i;
    return c->state == CHUNK_DONE ? HTTP_PARSE_OK : HTTP_PARSE_MORE;
}
