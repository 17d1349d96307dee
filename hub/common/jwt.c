/* jwt.c -- HS256 tokens for /ws (SPEC.md, Auth).
 * Only HS256 is accepted: the header's alg is checked before anything else, so "none" and
 * algorithm-confusion tokens never reach a signature check. The signature is compared with
 * CRYPTO_memcmp. Claims are read with jansson after the signature holds. Shared by the hub
 * and clients/herald-token through the herald_jwt library. */
#include "jwt.h"

#include "errbuf.h"
#include "xalloc.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes unpadded base64url; returns the length or -1. out holds at least len*3/4+1. */
static long b64url_decode(const char *in, size_t len, unsigned char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    long n = 0;

    if (len % 4 == 1)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_val((unsigned char)in[i]);

        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits && (acc & ((1u << bits) - 1))) /* non-canonical trailing bits */
        return -1;
    return n;
}

static char *b64url_encode(const unsigned char *in, size_t len)
{
    char *out = xmalloc(len * 4 / 3 + 4);
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;

    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[n++] = b64url[(acc >> bits) & 63];
        }
    }
    if (bits)
        out[n++] = b64url[(acc << (6 - bits)) & 63];
    out[n] = '\0';
    return out;
}

/* Decodes one segment into a jansson object. */
static json_t *segment_json(const char *s, size_t len)
{
    unsigned char *buf = xmalloc(len * 3 / 4 + 2);
    long n;
    json_t *j = NULL;

    n = b64url_decode(s, len, buf);
    if (n > 0)
        j = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    free(buf);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

int jwt_verify(const char *token, size_t len, const void *secret, size_t secret_len, int64_t now_s,
               struct jwt_claims *out, char *err, size_t errlen)
{
    const char *dot1, *dot2, *end = token + len;
    json_t *header = NULL, *claims = NULL, *v;
    unsigned char mac[EVP_MAX_MD_SIZE], sig[64];
    unsigned int mac_len = 0;
    long sig_len;
    size_t i;

    memset(out, 0, sizeof(*out));
    if (len == 0 || len > JWT_MAX_BYTES) {
        errbuf_set(err, errlen, "token absent or too long");
        return -1;
    }
    dot1 = memchr(token, '.', len);
    dot2 = dot1 ? memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1))) {
        errbuf_set(err, errlen, "not three segments");
        return -1;
    }
    header = segment_json(token, (size_t)(dot1 - token));
    v = header ? json_object_get(header, "alg") : NULL;
    if (!json_is_string(v) || strcmp(json_string_value(v), "HS256") != 0) {
        errbuf_set(err, errlen, "alg is not HS256");
        goto fail;
    }
    if ((size_t)(end - dot2 - 1) > 86) { /* 32 bytes of base64url is 43 characters */
        errbuf_set(err, errlen, "bad signature");
        goto fail;
    }
    sig_len = b64url_decode(dot2 + 1, (size_t)(end - dot2 - 1), sig);
    if (!HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)token,
              (size_t)(dot2 - token), mac, &mac_len) ||
        sig_len != (long)mac_len || CRYPTO_memcmp(sig, mac, mac_len) != 0) {
        errbuf_set(err, errlen, "bad signature");
        goto fail;
    }
    claims = segment_json(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (!claims) {
        errbuf_set(err, errlen, "claims are not a JSON object");
        goto fail;
    }
    v = json_object_get(claims, "exp");
    if (!json_is_integer(v)) {
        errbuf_set(err, errlen, "exp missing");
        goto fail;
    }
    out->exp = json_integer_value(v);
    if (out->exp <= now_s) {
        errbuf_set(err, errlen, "expired");
        goto fail;
    }
    v = json_object_get(claims, "sub");
    if (v && (!json_is_string(v) || json_string_length(v) >= sizeof(out->sub))) {
        errbuf_set(err, errlen, "sub is not a short string");
        goto fail;
    }
    if (v)
        memcpy(out->sub, json_string_value(v), json_string_length(v) + 1);
    v = json_object_get(claims, "channels");
    if (!json_is_array(v) || json_array_size(v) > JWT_MAX_CHANNELS) {
        errbuf_set(err, errlen, "channels is not a list");
        goto fail;
    }
    out->channels = xcalloc(json_array_size(v) + 1, sizeof(char *));
    for (i = 0; i < json_array_size(v); i++) {
        json_t *c = json_array_get(v, i);

        if (!json_is_string(c) || json_string_length(c) > 129) {
            errbuf_set(err, errlen, "channels holds a non-string");
            goto fail;
        }
        out->channels[i] = xstrdup(json_string_value(c));
        out->n_channels++;
    }
    json_decref(header);
    json_decref(claims);
    return 0;
fail:
    json_decref(header);
    json_decref(claims);
    jwt_claims_free(out);
    return -1;
}

void jwt_claims_free(struct jwt_claims *c)
{
    for (size_t i = 0; i < c->n_channels; i++)
        free(c->channels[i]);
    free(c->channels);
    c->channels = NULL;
    c->n_channels = 0;
}

bool jwt_grants(const struct jwt_claims *c, const char *channel, size_t len)
{
    for (size_t i = 0; i < c->n_channels; i++) {
        const char *g = c->channels[i];
        size_t glen = strlen(g);

        if (glen && g[glen - 1] == '*') {
            if (len >= glen - 1 && !memcmp(channel, g, glen - 1))
                return true;
        } else if (glen == len && !memcmp(channel, g, len)) {
            return true;
        }
    }
    return false;
}

char *jwt_sign(const void *secret, size_t secret_len, const char *sub, int64_t exp,
               const char *const *channels, size_t n_channels)
{
    json_t *claims = json_object(), *list = json_array();
    char *header = NULL, *payload = NULL, *claims_s, *signing = NULL, *sig = NULL, *token = NULL;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    static const char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    size_t n;

    if (sub)
        json_object_set_new(claims, "sub", json_string(sub));
    json_object_set_new(claims, "exp", json_integer(exp));
    for (size_t i = 0; i < n_channels; i++)
        json_array_append_new(list, json_string(channels[i]));
    json_object_set_new(claims, "channels", list);
    claims_s = json_dumps(claims, JSON_COMPACT);
    json_decref(claims);
    if (!claims_s)
        return NULL;
    header = b64url_encode((const unsigned char *)hdr, sizeof(hdr) - 1);
    payload = b64url_encode((const unsigned char *)claims_s, strlen(claims_s));
    free(claims_s);
    if (!header || !payload)
        goto out;
    n = strlen(header) + strlen(payload) + 2;
    signing = xmalloc(n);
    snprintf(signing, n, "%s.%s", header, payload);
    if (!HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)signing,
              strlen(signing), mac, &mac_len))
        goto out;
    sig = b64url_encode(mac, mac_len);
    if (!sig)
        goto out;
    n = strlen(signing) + strlen(sig) + 2;
    token = xmalloc(n);
    snprintf(token, n, "%s.%s", signing, sig);
out:
    free(header);
    free(payload);
    free(signing);
    free(sig);
    return token;
}

int jwt_read_secret(const char *path, unsigned char **out, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    unsigned char buf[4096];
    size_t n;

    *out = NULL;
    *len = 0;
    if (!f) {
        errbuf_set(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    if (n == sizeof(buf)) {
        errbuf_set(err, errlen, "%s: longer than 4095 bytes", path);
        return -1;
    }
    if (n && buf[n - 1] == '\n')
        n--;
    if (n && buf[n - 1] == '\r')
        n--;
    if (n < 32) {
        errbuf_set(err, errlen, "%s: the secret must be at least 32 bytes", path);
        return -1;
    }
    *out = xmalloc(n);
    memcpy(*out, buf, n);
    *len = n;
    return 0;
}
