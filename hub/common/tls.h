/* tls.h -- the certificate and key that --listen serves over TLS (--tls-cert, --tls-key):
 * loaded and checked in one place, shared by reference, and what a delivery plane's OpenSSL
 * context does with them. No OpenSSL type crosses this header. */
#ifndef HERALD_TLS_H
#define HERALD_TLS_H

#include <stddef.h>
#include <stdint.h>

struct ssl_ctx_st; /* OpenSSL's SSL_CTX */
struct tls_pair;   /* a certificate (with its chain) and its private key: immutable */

/* Reads cert_path (PEM: the certificate, then any intermediates) and key_path (PEM, without a
 * passphrase) and checks them as a handshake would use them: the key is the certificate's,
 * and OpenSSL accepts both at its security level. Returns a pair holding one reference, or
 * NULL with err set to one line naming --tls-cert or --tls-key and the file. Any thread. */
struct tls_pair *tls_pair_load(const char *cert_path, const char *key_path, char *err,
                               size_t errlen);
/* Returns p, holding one more reference. Any thread. */
struct tls_pair *tls_pair_ref(struct tls_pair *p);
/* Drops the reference *pp holds (freeing the pair on the last one) and sets *pp to NULL.
 * NULL is a no-op. Any thread. */
void tls_pair_unref(struct tls_pair **pp);
/* "subject ..., issuer ..., valid until ..., sha256 AB:CD:..." for the log. */
const char *tls_pair_describe(const struct tls_pair *p);
/* The certificate's notAfter, in Unix seconds. */
int64_t tls_pair_not_after(const struct tls_pair *p);

/* Sets up a plane's server context, made by lws for the plane's vhost: TLS 1.2 at least, AEAD
 * ciphers with forward secrecy for 1.2, no renegotiation, session tickets that every plane of
 * the process accepts, *current as its certificate, and a certificate callback that gives every
 * new handshake the pair *current points to then. The plane swaps *current on its own thread
 * (a reload); connections already open keep what their handshake used. Returns 0, or -1 with
 * err set. The plane's thread, or the main thread before the plane's thread starts. */
int tls_ctx_serve(struct ssl_ctx_st *ctx, struct tls_pair *const *current, char *err,
                  size_t errlen);

/* An empty client SSL_CTX, to give lws as the client context of a plane's vhost: lws 4.1.6
 * otherwise makes one per vhost with the system's CA store loaded (0.7 MB), which the hub never
 * uses, and with several lws contexts in a process it never frees them (its SSL_CTX ex-data
 * index is per process, taken anew by each context). lws does not free one it was given:
 * tls_ctx_free() it after the lws context. Returns NULL when OpenSSL cannot make it. */
struct ssl_ctx_st *tls_client_ctx_new(void);
void tls_ctx_free(struct ssl_ctx_st *ctx); /* NULL is a no-op */

#endif
