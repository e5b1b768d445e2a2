/*
 * test_tls_ctx.c - TLS contexts: bad arguments, files that are missing or
 * do not match, certificates, keys and CAs from memory, a hashed CA
 * directory, the system store (which does not know our CA), one PEM file
 * holding certificate and key, a server context whose first certificate
 * comes from weft_tls_ctx_add_cert, and allocation failures.
 */
#include "tls_certs.h"

#include <criterion/criterion.h>
#include <openssl/err.h>
#include <stdlib.h>

TestSuite(tls_ctx, .init = tls_suite_setup, .fini = tls_suite_teardown);

Test(tls_ctx, bad_arguments, .timeout = 30)
{
    weft_tls_ctx *c = (weft_tls_ctx *)&c;
    weft_tls_opts o = {0};
    cr_assert_eq(weft_tls_ctx_new(NULL, WEFT_TLS_CLIENT, NULL), -EINVAL);
    cr_assert_eq(weft_tls_ctx_new(&c, 7, NULL), -EINVAL);
    o.min_version = 0x0301; /* TLS 1.0: below the floor */
    cr_assert_eq(weft_tls_ctx_new(&c, WEFT_TLS_CLIENT, &o), -EINVAL);
    o = (weft_tls_opts){.min_version = 0x0304, .max_version = 0x0303};
    cr_assert_eq(weft_tls_ctx_new(&c, WEFT_TLS_CLIENT, &o), -EINVAL);
    o = (weft_tls_opts){.alpn = "h2,,http/1.1", .no_verify = 1};
    cr_assert_eq(weft_tls_ctx_new(&c, WEFT_TLS_CLIENT, &o), -EINVAL);
    o = (weft_tls_opts){.alpn = "", .no_verify = 1};
    cr_assert_eq(weft_tls_ctx_new(&c, WEFT_TLS_CLIENT, &o), -EINVAL);
    o = (weft_tls_opts){.key_file = cert("srv.key")}; /* a key and no certificate */
    cr_assert_eq(weft_tls_ctx_new(&c, WEFT_TLS_SERVER, &o), -EINVAL);
    o = (weft_tls_opts){.cert_file = cert("srv.pem"), .cert_pem = "x"};
    cr_assert_eq(weft_tls_ctx_new(&c, WEFT_TLS_SERVER, &o), -EINVAL);
    cr_assert_eq(c, (weft_tls_ctx *)&c, "*out changed on failure");
    cr_assert_eq(weft_tls_ctx_add_cert(NULL, cert("srv.pem"), cert("srv.key")), -EINVAL);
    weft_tls_ctx_free(NULL);
    cr_assert_eq(ERR_peek_error(), 0ul);
}

Test(tls_ctx, unloadable_files, .timeout = 30)
{
    weft_tls_ctx *c = NULL;
    weft_tls_opts o = {.cert_file = cert("missing.pem"), .key_file = cert("srv.key")};
    cr_assert_eq(weft_tls_ctx_new(&c, WEFT_TLS_SERVER, &o), WEFT_ETLS_CERT);
    o = (weft_tls_opts){.cert_file = cert("srv.pem"), .key_file = cert("missing.key")};
    cr_assert_eq(weft_tls_ctx_new(&c, WEFT_TLS_SERVER, &o), WEFT_ETLS_CERT);
    o = (weft_tls_opts){.cert_file = cert("srv.pem"), .key_file = cert("alt.key")};
    cr_assert_eq(weft_tls_ctx_new(&c, WEFT_TLS_SERVER, &o), WEFT_ETLS_CERT, "key of another cert");
    o = (weft_tls_opts){.cert_file = cert("srv.key"), .key_file = cert("srv.key")};
    cr_assert_eq(weft_tls_ctx_new(&c, WEFT_TLS_SERVER, &o), WEFT_ETLS_CERT, "a key as cert");
    o = (weft_tls_opts){.cert_pem = "-----BEGIN CERTIFICATE-----\ngarbage\n", .key_pem = "x"};
    cr_assert_eq(weft_tls_ctx_new(&c, WEFT_TLS_SERVER, &o), WEFT_ETLS_CERT);
    o = (weft_tls_opts){.ca_file = cert("missing.pem")};
    cr_assert_eq(weft_tls_ctx_new(&c, WEFT_TLS_CLIENT, &o), WEFT_ETLS_CERT);
    o = (weft_tls_opts){.ca_pem = "no certificates here"};
    cr_assert_eq(weft_tls_ctx_new(&c, WEFT_TLS_CLIENT, &o), WEFT_ETLS_CERT);
    cr_assert_null(c);
    cr_assert_eq(ERR_peek_error(), 0ul, "OpenSSL's error queue was left full");
}

/* A handshake between the two contexts, with the server's certificate
 * subject as the client saw it. */
typedef struct hs_run {
    weft_tls_ctx *sctx, *cctx;
    const char *servername;
    int rc;
    char subject[128];
} hs_run;

static int hs_main(void *arg)
{
    hs_run *h = arg;
    tls_pair p = {.sctx = h->sctx, .cctx = h->cctx, .servername = h->servername};
    h->rc = pair_open(&p);
    if (p.cli)
        weft_tls_peer_subject(p.cli, h->subject, sizeof h->subject);
    pair_close(&p);
    return 0;
}

static void handshake(hs_run *h)
{
    int fds = count_fds();
    cr_assert_eq(weft_main(hs_main, h, NULL), 0);
    cr_assert_eq(count_fds(), fds);
    weft_tls_ctx_free(h->sctx);
    weft_tls_ctx_free(h->cctx);
}

Test(tls_ctx, everything_from_memory, .timeout = 30)
{
    char *crt = slurp(cert("srv.pem")), *key = slurp(cert("srv.key")), *ca = slurp(cert("ca.pem"));
    cr_assert(crt && key && ca);
    /* The CA bundle holds an unrelated CA too: all of them are loaded. */
    char *bundle = slurp(cert("rogueca.pem"));
    cr_assert_not_null(bundle);
    bundle = realloc(bundle, strlen(bundle) + strlen(ca) + 1);
    strcat(bundle, ca);
    hs_run h = {0};
    weft_tls_opts so = {.cert_pem = crt, .key_pem = key};
    weft_tls_opts co = {.ca_pem = bundle};
    cr_assert_eq(weft_tls_ctx_new(&h.sctx, WEFT_TLS_SERVER, &so), 0);
    cr_assert_eq(weft_tls_ctx_new(&h.cctx, WEFT_TLS_CLIENT, &co), 0);
    free(crt);
    free(key);
    free(ca);
    free(bundle);
    handshake(&h);
    cr_assert_eq(h.rc, 0, "%s", weft_err_name(h.rc));
    cr_assert_str_eq(h.subject, "CN=localhost");
}

Test(tls_ctx, hashed_ca_directory, .timeout = 30)
{
    hs_run h = {0};
    weft_tls_opts co = {.ca_dir = cert("cadir")};
    cr_assert_eq(ctx_server(&h.sctx, "srv", NULL), 0);
    cr_assert_eq(weft_tls_ctx_new(&h.cctx, WEFT_TLS_CLIENT, &co), 0);
    handshake(&h);
    cr_assert_eq(h.rc, 0, "%s", weft_err_name(h.rc));
}

Test(tls_ctx, system_store_does_not_know_our_ca, .timeout = 30)
{
    hs_run h = {0};
    cr_assert_eq(ctx_server(&h.sctx, "srv", NULL), 0);
    cr_assert_eq(weft_tls_ctx_new(&h.cctx, WEFT_TLS_CLIENT, NULL), 0, "the system store");
    handshake(&h);
    cr_assert_eq(h.rc, WEFT_ETLS_UNTRUSTED, "%s", weft_err_name(h.rc));
}

Test(tls_ctx, one_pem_with_cert_and_key, .timeout = 30)
{
    hs_run h = {0};
    weft_tls_opts so = {.cert_file = cert("both.pem")};
    cr_assert_eq(weft_tls_ctx_new(&h.sctx, WEFT_TLS_SERVER, &so), 0);
    cr_assert_eq(ctx_client(&h.cctx, NULL), 0);
    handshake(&h);
    cr_assert_eq(h.rc, 0, "%s", weft_err_name(h.rc));
}

Test(tls_ctx, first_added_cert_is_the_default, .timeout = 30)
{
    hs_run h = {.servername = "unknown.test"};
    weft_tls_opts co = {.no_verify = 1};
    cr_assert_eq(weft_tls_ctx_new(&h.sctx, WEFT_TLS_SERVER, NULL), 0);
    cr_assert_eq(weft_tls_ctx_add_cert(h.sctx, cert("alt.pem"), cert("alt.key")), 0);
    cr_assert_eq(weft_tls_ctx_add_cert(h.sctx, cert("srv.pem"), cert("srv.key")), 0);
    cr_assert_eq(weft_tls_ctx_new(&h.cctx, WEFT_TLS_CLIENT, &co), 0);
    handshake(&h);
    cr_assert_eq(h.rc, 0, "%s", weft_err_name(h.rc));
    cr_assert_str_eq(h.subject, "CN=alt.test");
}

Test(tls_ctx, allocation_failures, .timeout = 30)
{
    /* Fail weft's 1st, 2nd, ... allocation until ctx_new gets through. */
    int n;
    for (n = 1; n < 16; n++) {
        weft_tls_ctx *c = NULL;
        weft_tls_opts o = {.alpn = "h2,http/1.1", .ca_file = cert("ca.pem")};
        weft_fault_set(WEFT_FAULT_MALLOC, (unsigned)n, ENOMEM);
        int rc = weft_tls_ctx_new(&c, WEFT_TLS_CLIENT, &o);
        weft_fault_clear();
        if (rc == 0) {
            weft_tls_ctx_free(c);
            break;
        }
        cr_assert_eq(rc, -ENOMEM, "allocation %d: %s", n, weft_err_name(rc));
        cr_assert_null(c);
    }
    cr_assert_gt(n, 1, "no allocation failed");
    cr_assert_lt(n, 16);
    /* And in add_cert. */
    weft_tls_ctx *s;
    cr_assert_eq(ctx_server(&s, "srv", NULL), 0);
    weft_fault_set(WEFT_FAULT_MALLOC, 1, ENOMEM);
    int rc = weft_tls_ctx_add_cert(s, cert("alt.pem"), cert("alt.key"));
    weft_fault_clear();
    cr_assert_eq(rc, -ENOMEM);
    cr_assert_eq(weft_tls_ctx_add_cert(s, cert("alt.pem"), cert("alt.key")), 0);
    weft_tls_ctx_free(s);
}
