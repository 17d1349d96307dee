/* tls.c -- the certificate and key --listen serves, and the server side of each delivery
 * plane's OpenSSL context.
 * A pair is read once (PEM: the certificate, then its chain; a key without a passphrase),
 * checked as the handshake will use it (the key is the certificate's, and a scratch SSL_CTX
 * accepts both at OpenSSL's security level), and kept as parsed, immutable OpenSSL objects
 * behind a reference count. Start-up loads the first pair (config.c: a bad one is exit 2);
 * SIGHUP loads another on the control thread (control/hub.c), and only a pair that passed the
 * checks reaches the planes, a reference each through their mailboxes. Nothing re-reads the
 * files after the checks, so every plane serves exactly the bytes that were checked.
 *
 * Each plane's SSL_CTX is made by lws for the plane's vhost; tls_ctx_serve() sets its policy
 * and a certificate callback that hands every new handshake the plane's current pair. Why a
 * callback rather than lws_tls_cert_updated() (which reloads the SSL_CTX's own certificate
 * from the files): that re-reads the files on each plane after they were checked, reports no
 * failure (it returns 0 whatever happened), and an SSL_CTX keeps one certificate per key type,
 * so a renewal from RSA to ECDSA would leave the old RSA one being offered, and a key that
 * fails to load after its certificate did leaves the certificate without a key (OpenSSL drops
 * a key that no longer matches). The callback clears whatever the connection inherited from
 * the SSL_CTX and sets the pair, so a handshake always gets exactly one pair, the current
 * one. Connections already open keep what their handshake used. */
#include "tls.h"

#include "errbuf.h"
#include "xalloc.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* TLS 1.2: forward secrecy and AEAD only (TLS 1.3's suites are all of that already). */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define PEM_FILE_MAX (1 << 20) /* a certificate chain or key file larger than this is refused */

struct tls_pair {
    atomic_uint refs;
    X509 *cert;
    STACK_OF(X509) * chain; /* the intermediates after it in the file; NULL: none */
    EVP_PKEY *key;
    int64_t not_after;
    char desc[800];
};

/* The newest OpenSSL error as text ("" when there is none); clears the queue. */
static const char *ssl_error(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();

    buf[0] = '\0';
    if (e)
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

/* Opens path for reading as a BIO, refusing what is not a regular file of a sane size.
 * Returns NULL with err set. */
static BIO *open_pem(const char *opt, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    BIO *bio;

    if (!f) {
        errbuf_set(err, errlen, "%s %s: %s", opt, path, strerror(errno));
        return NULL;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        errbuf_set(err, errlen, "%s %s: not a regular file", opt, path);
        fclose(f);
        return NULL;
    }
    if (st.st_size > PEM_FILE_MAX) {
        errbuf_set(err, errlen, "%s %s: larger than %d bytes", opt, path, PEM_FILE_MAX);
        fclose(f);
        return NULL;
    }
    bio = BIO_new_fp(f, BIO_CLOSE);
    if (!bio)
        xalloc_fail(sizeof(BIO *)); /* OpenSSL ran out of memory */
    return bio;
}

/* A key with a passphrase is refused: never ask the terminal for one. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* The certificate, then every further certificate of the file as its chain (what
 * SSL_CTX_use_certificate_chain_file reads). */
static int read_chain(struct tls_pair *p, const char *path, char *err, size_t errlen)
{
    BIO *bio = open_pem("--tls-cert", path, err, errlen);
    X509 *x;
    char why[256];
    int rc = -1;

    if (!bio)
        return -1;
    ERR_clear_error();
    p->cert = PEM_read_bio_X509_AUX(bio, NULL, no_passphrase, NULL);
    if (!p->cert) {
        errbuf_set(err, errlen, "--tls-cert %s: no PEM certificate in it (%s)", path,
                   ssl_error(why, sizeof(why)));
        goto out;
    }
    while ((x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL))) {
        if (!p->chain)
            p->chain = sk_X509_new_null();
        if (!p->chain || !sk_X509_push(p->chain, x))
            xalloc_fail(sizeof(void *));
    }
    /* the end of the file reads as "no start line"; anything else is a broken certificate */
    if (ERR_GET_LIB(ERR_peek_last_error()) == ERR_LIB_PEM &&
        ERR_GET_REASON(ERR_peek_last_error()) == PEM_R_NO_START_LINE) {
        ERR_clear_error();
        rc = 0;
    } else {
        errbuf_set(err, errlen, "--tls-cert %s: a certificate after the first cannot be read (%s)",
                   path, ssl_error(why, sizeof(why)));
    }
out:
    BIO_free(bio);
    return rc;
}

static int read_key(struct tls_pair *p, const char *path, char *err, size_t errlen)
{
    BIO *bio = open_pem("--tls-key", path, err, errlen);
    char why[256];

    if (!bio)
        return -1;
    ERR_clear_error();
    p->key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    if (!p->key) {
        errbuf_set(err, errlen,
                   "--tls-key %s: no PEM private key in it, or one with a passphrase (%s)", path,
                   ssl_error(why, sizeof(why)));
        return -1;
    }
    return 0;
}

/* As a handshake will use them: the key is the certificate's, and OpenSSL takes both (its
 * security level refuses, for example, RSA keys under 2048 bits). */
static int check_pair(struct tls_pair *p, const char *cert_path, const char *key_path, char *err,
                      size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char why[256];
    int rc = -1;

    if (!ctx) {
        errbuf_set(err, errlen, "--tls-cert: cannot make an OpenSSL context (%s)",
                   ssl_error(why, sizeof(why)));
        return -1;
    }
    ERR_clear_error();
    if (!X509_check_private_key(p->cert, p->key)) {
        ERR_clear_error();
        errbuf_set(err, errlen, "--tls-key %s: not the private key of the certificate in %s",
                   key_path, cert_path);
    } else if (SSL_CTX_use_cert_and_key(ctx, p->cert, p->key, p->chain, 1) != 1 ||
               SSL_CTX_check_private_key(ctx) != 1) {
        errbuf_set(err, errlen, "--tls-cert %s: OpenSSL refuses it with the key in %s (%s)",
                   cert_path, key_path, ssl_error(why, sizeof(why)));
    } else {
        rc = 0;
    }
    SSL_CTX_free(ctx);
    return rc;
}

static void describe(struct tls_pair *p)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char subject[200] = "?", issuer[200] = "?", fp[EVP_MAX_MD_SIZE * 3 + 1] = "";
    const ASN1_TIME *na = X509_get0_notAfter(p->cert);
    struct tm tm;
    char until[40] = "?";

    X509_NAME_oneline(X509_get_subject_name(p->cert), subject, sizeof(subject));
    X509_NAME_oneline(X509_get_issuer_name(p->cert), issuer, sizeof(issuer));
    if (X509_digest(p->cert, EVP_sha256(), md, &mdlen))
        for (unsigned i = 0; i < mdlen; i++)
            snprintf(fp + 3 * i, sizeof(fp) - 3 * i, "%02X%s", md[i], i + 1 < mdlen ? ":" : "");
    if (na && ASN1_TIME_to_tm(na, &tm) == 1) {
        p->not_after = (int64_t)timegm(&tm);
        strftime(until, sizeof(until), "%Y-%m-%d %H:%M:%S UTC", &tm);
    }
    snprintf(p->desc, sizeof(p->desc), "subject %s, issuer %s, valid until %s, sha256 %s", subject,
             issuer, until, fp);
}

struct tls_pair *tls_pair_load(const char *cert_path, const char *key_path, char *err,
                               size_t errlen)
{
    struct tls_pair *p = xcalloc(1, sizeof(*p));

    atomic_init(&p->refs, 1);
    if (read_chain(p, cert_path, err, errlen) < 0 || read_key(p, key_path, err, errlen) < 0 ||
        check_pair(p, cert_path, key_path, err, errlen) < 0) {
        tls_pair_unref(&p);
        return NULL;
    }
    describe(p);
    return p;
}

struct tls_pair *tls_pair_ref(struct tls_pair *p)
{
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void tls_pair_unref(struct tls_pair **pp)
{
    struct tls_pair *p = *pp;

    if (!p)
        return;
    *pp = NULL;
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    X509_free(p->cert);
    sk_X509_pop_free(p->chain, X509_free);
    EVP_PKEY_free(p->key);
    free(p);
}

const char *tls_pair_describe(const struct tls_pair *p)
{
    return p->desc;
}

int64_t tls_pair_not_after(const struct tls_pair *p)
{
    return p->not_after;
}

struct ssl_ctx_st *tls_client_ctx_new(void)
{
    return SSL_CTX_new(TLS_client_method());
}

void tls_ctx_free(struct ssl_ctx_st *ctx)
{
    SSL_CTX_free(ctx);
}

/* --- a plane's SSL_CTX ------------------------------------------------------------------- */

/* Every plane's context encrypts its session tickets with the same keys, so a client that
 * resumes lands on any plane (the kernel spreads connections over them). */
static unsigned char ticket_keys[80]; /* name 16, HMAC 32, AES 32: OpenSSL's layout */
static bool have_ticket_keys;
static pthread_once_t ticket_once = PTHREAD_ONCE_INIT;

static void make_ticket_keys(void)
{
    have_ticket_keys = RAND_bytes(ticket_keys, sizeof(ticket_keys)) == 1;
}

/* Before OpenSSL picks the certificate of a new (not resumed) handshake: the plane's current
 * pair, and nothing else the connection inherited from the SSL_CTX. The plane's thread. */
static int on_cert(SSL *ssl, void *arg)
{
    struct tls_pair *const *current = arg;
    const struct tls_pair *p = *current;

    if (!p)
        return 0;
    SSL_certs_clear(ssl);
    return SSL_use_cert_and_key(ssl, p->cert, p->key, p->chain, 1) == 1;
}

int tls_ctx_serve(struct ssl_ctx_st *ctx, struct tls_pair *const *current, char *err, size_t errlen)
{
    const struct tls_pair *p = *current;
    char why[256];

    ERR_clear_error();
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
        SSL_CTX_use_cert_and_key(ctx, p->cert, p->key, p->chain, 1) != 1) {
        errbuf_set(err, errlen, "--tls-cert: cannot set up the TLS context (%s)",
                   ssl_error(why, sizeof(why)));
        return -1;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    /* resumption by ticket only: no per-context cache to fill (tickets work on every plane) */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    pthread_once(&ticket_once, make_ticket_keys);
    if (have_ticket_keys)
        SSL_CTX_set_tlsext_ticket_keys(ctx, ticket_keys, sizeof(ticket_keys));
    SSL_CTX_set_cert_cb(ctx, on_cert, (void *)current);
    return 0;
}
