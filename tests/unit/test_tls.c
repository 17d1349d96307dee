/* test_tls.c -- hub/common/tls.c: loading and checking a certificate pair (chains, mismatched,
 * missing, encrypted and weak keys), and a server SSL_CTX set up by tls_ctx_serve() doing real
 * handshakes in memory (a BIO pair): each new handshake gets the pair *current points to then,
 * across a change of key type, with TLS 1.2 as the floor. Keys and certificates are made here
 * with OpenSSL, into a mkdtemp directory. */
#include "common/tls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define ERRLEN 512

static char dir[] = "/tmp/herald-test-tls.XXXXXX";

static const char *path(const char *name)
{
    static char buf[4][256];
    static int i;

    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
    return buf[i];
}

static EVP_PKEY *new_key(const char *kind)
{
    EVP_PKEY *k = !strcmp(kind, "ec")        ? EVP_EC_gen("P-256")
                  : !strcmp(kind, "rsa1024") ? EVP_RSA_gen(1024)
                                             : EVP_RSA_gen(2048);

    assert_non_null(k);
    return k;
}

/* A certificate for cn with key's public half, signed by issuer (NULL: self-signed). */
static X509 *new_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, long days)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    static long serial = 1;

    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), days * 86400);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509_set_pubkey(x, key);
    assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    X509_NAME_free(name);
    return x;
}

static void write_certs(const char *name, X509 *a, X509 *b)
{
    FILE *f = fopen(path(name), "w");

    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, a), 1);
    if (b)
        assert_int_equal(PEM_write_X509(f, b), 1);
    fclose(f);
}

static void write_key(const char *name, EVP_PKEY *k, const char *passphrase)
{
    FILE *f = fopen(path(name), "w");

    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, passphrase ? EVP_aes_256_cbc() : NULL,
                                          (unsigned char *)passphrase,
                                          passphrase ? (int)strlen(passphrase) : 0, NULL, NULL),
                     1);
    fclose(f);
}

static void write_text(const char *name, const char *text)
{
    FILE *f = fopen(path(name), "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The fixtures: an ECDSA CA, an ECDSA leaf it signed (leaf.crt holds the leaf then the CA), an
 * RSA self-signed pair, a weak RSA pair, an encrypted key, broken files. */
static X509 *ca_cert, *leaf_cert, *rsa_cert;

static int setup(void **state)
{
    EVP_PKEY *ca_key = new_key("ec"), *leaf_key = new_key("ec"), *rsa_key = new_key("rsa");
    EVP_PKEY *weak_key = new_key("rsa1024");
    X509 *weak_cert;

    (void)state;
    assert_non_null(mkdtemp(dir));
    ca_cert = new_cert(ca_key, "herald test CA", NULL, NULL, 30);
    leaf_cert = new_cert(leaf_key, "leaf.example", ca_cert, ca_key, 2);
    rsa_cert = new_cert(rsa_key, "rsa.example", NULL, NULL, 2);
    weak_cert = new_cert(weak_key, "weak.example", NULL, NULL, 2);
    write_certs("leaf.crt", leaf_cert, ca_cert);
    write_certs("leaf-alone.crt", leaf_cert, NULL);
    write_key("leaf.key", leaf_key, NULL);
    write_key("leaf-enc.key", leaf_key, "secret");
    write_certs("rsa.crt", rsa_cert, NULL);
    write_key("rsa.key", rsa_key, NULL);
    write_certs("weak.crt", weak_cert, NULL);
    write_key("weak.key", weak_key, NULL);
    write_text("garbage.pem", "not a PEM file\n");
    write_text("empty.pem", "");
    {
        FILE *f = fopen(path("broken-chain.crt"), "w");

        PEM_write_X509(f, leaf_cert);
        fputs("-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n", f);
        fclose(f);
    }
    X509_free(weak_cert);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(leaf_key);
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(weak_key);
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];

    (void)state;
    X509_free(ca_cert);
    X509_free(leaf_cert);
    X509_free(rsa_cert);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void fingerprint_of(X509 *x, char *out, size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    assert_true(X509_digest(x, EVP_sha256(), md, &n));
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 3 * i, len - 3 * i, "%02X%s", md[i], i + 1 < n ? ":" : "");
}

static void good_pair_loads_and_describes_itself(void **state)
{
    char err[ERRLEN] = "", fp[EVP_MAX_MD_SIZE * 3 + 1];
    struct tls_pair *p = tls_pair_load(path("leaf.crt"), path("leaf.key"), err, sizeof(err));
    struct tls_pair *q;
    int64_t now = (int64_t)time(NULL);

    (void)state;
    assert_non_null(p);
    assert_string_equal(err, "");
    fingerprint_of(leaf_cert, fp, sizeof(fp));
    assert_non_null(strstr(tls_pair_describe(p), "CN=leaf.example"));
    assert_non_null(strstr(tls_pair_describe(p), "CN=herald test CA"));
    assert_non_null(strstr(tls_pair_describe(p), fp));
    assert_true(tls_pair_not_after(p) > now + 86400 && tls_pair_not_after(p) <= now + 2 * 86400);
    q = tls_pair_ref(p);
    assert_ptr_equal(q, p);
    tls_pair_unref(&q);
    assert_null(q);
    tls_pair_unref(&p);
    assert_null(p);
    tls_pair_unref(&p); /* NULL: a no-op */
}

static void expect_refused(const char *cert, const char *key, const char *opt, const char *want)
{
    char err[ERRLEN] = "";
    struct tls_pair *p = tls_pair_load(cert, key, err, sizeof(err));

    if (p)
        fail_msg("%s + %s loaded", cert, key);
    if (strncmp(err, opt, strlen(opt)) != 0 || !strstr(err, want))
        fail_msg("%s + %s: \"%s\" does not start with %s and name \"%s\"", cert, key, err, opt,
                 want);
    assert_null(strchr(err, '\n'));
}

static void bad_pairs_are_refused_naming_the_option(void **state)
{
    (void)state;
    expect_refused(path("leaf.crt"), path("rsa.key"), "--tls-key", "not the private key");
    expect_refused(path("rsa.crt"), path("leaf.key"), "--tls-key", "not the private key");
    expect_refused(path("nope.crt"), path("leaf.key"), "--tls-cert", "No such file");
    expect_refused(path("leaf.crt"), path("nope.key"), "--tls-key", "No such file");
    expect_refused(dir, path("leaf.key"), "--tls-cert", "not a regular file");
    expect_refused(path("garbage.pem"), path("leaf.key"), "--tls-cert", "no PEM certificate");
    expect_refused(path("empty.pem"), path("leaf.key"), "--tls-cert", "no PEM certificate");
    expect_refused(path("leaf.key"), path("leaf.key"), "--tls-cert", "no PEM certificate");
    expect_refused(path("broken-chain.crt"), path("leaf.key"), "--tls-cert",
                   "a certificate after the first");
    expect_refused(path("leaf.crt"), path("garbage.pem"), "--tls-key", "no PEM private key");
    expect_refused(path("leaf.crt"), path("leaf.crt"), "--tls-key", "no PEM private key");
    /* never asks a terminal for the passphrase */
    expect_refused(path("leaf.crt"), path("leaf-enc.key"), "--tls-key", "passphrase");
    /* OpenSSL's security level: RSA under 2048 bits */
    expect_refused(path("weak.crt"), path("weak.key"), "--tls-cert", "too small");
}

/* --- handshakes in memory ------------------------------------------------------------------ */

static int last_chain_len; /* certificates the server sent in the last handshake() */

/* A TLS handshake between client and a new SSL of server over a BIO pair. Returns the
 * certificate the client got (a reference), or NULL when the handshake failed. */
static X509 *handshake(SSL_CTX *server, SSL_CTX *client)
{
    SSL *s = SSL_new(server), *c = SSL_new(client);
    BIO *sb, *cb;
    X509 *got = NULL;
    int sdone = 0, cdone = 0;

    assert_true(BIO_new_bio_pair(&sb, 0, &cb, 0) == 1);
    SSL_set_bio(s, sb, sb);
    SSL_set_bio(c, cb, cb);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    for (int i = 0; i < 100 && !(sdone && cdone); i++) {
        int rc, e;

        if (!cdone) {
            rc = SSL_do_handshake(c);
            e = SSL_get_error(c, rc);
            if (rc == 1)
                cdone = 1;
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                break;
        }
        if (!sdone) {
            rc = SSL_do_handshake(s);
            e = SSL_get_error(s, rc);
            if (rc == 1)
                sdone = 1;
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                break;
        }
    }
    last_chain_len = -1;
    if (sdone && cdone) {
        got = SSL_get1_peer_certificate(c);
        last_chain_len = sk_X509_num(SSL_get_peer_cert_chain(c));
    }
    SSL_free(s);
    SSL_free(c);
    ERR_clear_error();
    return got;
}

static SSL_CTX *client_ctx(int max_version, const char *ciphers)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());

    assert_non_null(c);
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
    if (max_version)
        SSL_CTX_set_max_proto_version(c, max_version);
    if (ciphers)
        assert_int_equal(SSL_CTX_set_cipher_list(c, ciphers), 1);
    return c;
}

static void each_handshake_gets_the_current_pair(void **state)
{
    char err[ERRLEN] = "";
    struct tls_pair *ec = tls_pair_load(path("leaf.crt"), path("leaf.key"), err, sizeof(err));
    struct tls_pair *rsa = tls_pair_load(path("rsa.crt"), path("rsa.key"), err, sizeof(err));
    struct tls_pair *current = ec;
    SSL_CTX *server = SSL_CTX_new(TLS_server_method());
    SSL_CTX *any = client_ctx(0, NULL);
    SSL_CTX *ecdsa12 = client_ctx(TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256");
    SSL_CTX *rsa12 = client_ctx(TLS1_2_VERSION, "ECDHE-RSA-AES128-GCM-SHA256");
    STACK_OF(X509) *chain = NULL;
    X509 *got;

    (void)state;
    assert_non_null(ec);
    assert_non_null(rsa);
    assert_int_equal(tls_ctx_serve(server, &current, err, sizeof(err)), 0);
    assert_int_equal(SSL_CTX_get_min_proto_version(server), TLS1_2_VERSION);
    assert_true(SSL_CTX_get_options(server) & SSL_OP_NO_RENEGOTIATION);
    /* the SSL_CTX holds the pair too, with the intermediate as its chain */
    assert_int_equal(X509_cmp(SSL_CTX_get0_certificate(server), leaf_cert), 0);
    assert_int_equal(SSL_CTX_get0_chain_certs(server, &chain), 1);
    assert_int_equal(sk_X509_num(chain), 1);
    assert_int_equal(X509_cmp(sk_X509_value(chain, 0), ca_cert), 0);

    got = handshake(server, any);
    assert_non_null(got);
    assert_int_equal(X509_cmp(got, leaf_cert), 0);
    assert_int_equal(last_chain_len, 2); /* the leaf and its intermediate */
    X509_free(got);

    /* a reload: the plane points current at the RSA pair */
    current = rsa;
    for (int i = 0; i < 3; i++) {
        got = handshake(server, any);
        assert_non_null(got);
        assert_int_equal(X509_cmp(got, rsa_cert), 0);
        assert_int_equal(last_chain_len, 1); /* no intermediate left over from the EC pair */
        X509_free(got);
    }
    /* the ECDSA certificate is gone, not kept beside the new one */
    assert_null(handshake(server, ecdsa12));
    got = handshake(server, rsa12);
    assert_non_null(got);
    X509_free(got);

    /* and back */
    current = ec;
    got = handshake(server, ecdsa12);
    assert_non_null(got);
    assert_int_equal(X509_cmp(got, leaf_cert), 0);
    assert_int_equal(last_chain_len, 2);
    X509_free(got);
    assert_null(handshake(server, rsa12));

    SSL_CTX_free(server);
    SSL_CTX_free(any);
    SSL_CTX_free(ecdsa12);
    SSL_CTX_free(rsa12);
    tls_pair_unref(&ec);
    tls_pair_unref(&rsa);
}

static void tls_1_1_and_cbc_are_refused(void **state)
{
    char err[ERRLEN] = "";
    struct tls_pair *ec = tls_pair_load(path("leaf.crt"), path("leaf.key"), err, sizeof(err));
    SSL_CTX *server = SSL_CTX_new(TLS_server_method());
    SSL_CTX *old = client_ctx(TLS1_1_VERSION, "DEFAULT:@SECLEVEL=0");
    SSL_CTX *cbc = client_ctx(TLS1_2_VERSION, "ECDHE-ECDSA-AES128-SHA");
    SSL_CTX *gcm =
        client_ctx(TLS1_2_VERSION, "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES128-GCM-SHA256");
    X509 *got;

    (void)state;
    assert_int_equal(tls_ctx_serve(server, &ec, err, sizeof(err)), 0);
    SSL_CTX_set_min_proto_version(old, TLS1_VERSION);
    SSL_CTX_set_security_level(old, 0);
    assert_null(handshake(server, old));
    /* the control: that client does speak TLS 1.1 to a server that takes it */
    {
        SSL_CTX *lax = SSL_CTX_new(TLS_server_method());

        SSL_CTX_set_min_proto_version(lax, TLS1_VERSION);
        SSL_CTX_set_security_level(lax, 0);
        assert_int_equal(SSL_CTX_set_cipher_list(lax, "DEFAULT:@SECLEVEL=0"), 1);
        assert_int_equal(
            SSL_CTX_use_certificate_file(lax, path("leaf-alone.crt"), SSL_FILETYPE_PEM), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(lax, path("leaf.key"), SSL_FILETYPE_PEM), 1);
        got = handshake(lax, old);
        assert_non_null(got);
        X509_free(got);
        SSL_CTX_free(lax);
    }
    assert_null(handshake(server, cbc));
    got = handshake(server, gcm); /* the same client with an AEAD cipher to offer */
    assert_non_null(got);
    X509_free(got);
    SSL_CTX_free(server);
    SSL_CTX_free(old);
    SSL_CTX_free(cbc);
    SSL_CTX_free(gcm);
    tls_pair_unref(&ec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_pair_loads_and_describes_itself),
        cmocka_unit_test(bad_pairs_are_refused_naming_the_option),
        cmocka_unit_test(each_handshake_gets_the_current_pair),
        cmocka_unit_test(tls_1_1_and_cbc_are_refused),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
