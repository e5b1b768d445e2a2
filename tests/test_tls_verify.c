/*
 * test_tls_verify.c - what a handshake checks and agrees on, weft to weft:
 * an untrusted CA, a self-signed certificate, a wrong name (host name and
 * IP address), an expired certificate, each with its own code and reason
 * (and the alert the server sees); no_verify; IP addresses in SANs; SNI
 * choosing among certificates; ALPN; protocol versions; client
 * certificates; session resumption by host:port.
 */
#include "tls_certs.h"

#include <criterion/criterion.h>
#include <openssl/err.h>
#include <stdlib.h>

TestSuite(tls_verify, .init = tls_suite_setup, .fini = tls_suite_teardown);

/* One handshake between a server using certificate srv_cert and a client,
 * with what each side saw. */
typedef struct hs {
    const char *srv_cert;          /* file stem: "srv", "expired", ... */
    weft_tls_opts sopts, copts;    /* extra options */
    const char *host, *servername; /* as in tls_pair */
    int cli_rc, srv_rc;
    long verify;
    char cli_msg[160], srv_msg[160];
    char subject[160];
    char cli_alpn[32], srv_alpn[32];
    int resumed;
    ssize_t echo;
    ssize_t late; /* the client's first receive after the handshake */
} hs;

static void note_msg(char *dst, size_t n, const char *m)
{
    snprintf(dst, n, "%s", m ? m : "");
}

static int hs_main(void *arg)
{
    hs *h = arg;
    tls_pair p = {.host = h->host, .servername = h->servername, .timeout_ms = 3000};
    int rc = ctx_server(&p.sctx, h->srv_cert, &h->sopts);
    if (rc < 0)
        return rc;
    if ((rc = ctx_client(&p.cctx, &h->copts)) < 0) {
        weft_tls_ctx_free(p.sctx);
        return rc;
    }
    pair_open(&p);
    h->cli_rc = p.cli_rc;
    h->srv_rc = p.srv_rc;
    note_msg(h->cli_msg, sizeof h->cli_msg, p.cli_msg);
    if (p.cli) {
        h->verify = weft_tls_verify_result(p.cli);
        weft_tls_peer_subject(p.cli, h->subject, sizeof h->subject);
        note_msg(h->cli_alpn, sizeof h->cli_alpn, weft_tls_alpn(p.cli));
        h->resumed = weft_tls_resumed(p.cli);
    }
    if (p.srv) {
        note_msg(h->srv_alpn, sizeof h->srv_alpn, weft_tls_alpn(p.srv));
        char sub[160] = "";
        if (weft_tls_peer_subject(p.srv, sub, sizeof sub) > 0)
            snprintf(h->srv_msg, sizeof h->srv_msg, "peer %s", sub);
    } else if (h->srv_rc < 0) {
        note_msg(h->srv_msg, sizeof h->srv_msg, p.srv_msg);
    }
    if (p.cli && p.srv) {
        char buf[8];
        weft_send(p.srv, "ok", 2, 1000);
        h->echo = weft_recvn(p.cli, buf, 2, 1000);
    } else if (p.cli) {
        /* TLS 1.3: the server judges a client certificate after the
         * client's handshake is over; its alert comes with the next read. */
        char buf[8];
        h->late = weft_recv(p.cli, buf, sizeof buf, 2000);
        note_msg(h->cli_msg, sizeof h->cli_msg, weft_tls_errmsg(p.cli));
    }
    pair_close(&p);
    weft_tls_ctx_free(p.sctx);
    weft_tls_ctx_free(p.cctx);
    return 0;
}

static void run_hs(hs *h)
{
    int fds = count_fds();
    int rc = weft_main(hs_main, h, NULL);
    cr_assert_eq(rc, 0, "contexts: %s", weft_err_name(rc));
    cr_assert_eq(count_fds(), fds, "descriptors leaked");
    cr_assert_eq(ERR_peek_error(), 0ul, "OpenSSL's error queue was left full");
}

/* ---- failures, each with its code --------------------------------------------------------- */

Test(tls_verify, untrusted_ca, .timeout = 60)
{
    hs h = {.srv_cert = "rogue"};
    run_hs(&h);
    cr_assert_eq(h.cli_rc, WEFT_ETLS_UNTRUSTED, "client: %s", weft_err_name(h.cli_rc));
    cr_assert(strstr(h.cli_msg, "issuer"), "reason: %s", h.cli_msg);
    /* The client told the server why. */
    cr_assert_eq(h.srv_rc, WEFT_ETLS_ALERT, "server: %s", weft_err_name(h.srv_rc));
    cr_assert(strstr(h.srv_msg, "unknown ca"), "server's reason: %s", h.srv_msg);
}

Test(tls_verify, self_signed, .timeout = 60)
{
    hs h = {.srv_cert = "self"};
    run_hs(&h);
    cr_assert_eq(h.cli_rc, WEFT_ETLS_UNTRUSTED, "client: %s", weft_err_name(h.cli_rc));
    cr_assert(strstr(h.cli_msg, "self-signed") || strstr(h.cli_msg, "self signed"), "reason: %s",
              h.cli_msg);
    cr_assert_eq(h.srv_rc, WEFT_ETLS_ALERT, "server: %s", weft_err_name(h.srv_rc));
}

Test(tls_verify, wrong_ip_address, .timeout = 60)
{
    hs h = {.srv_cert = "other"}; /* connect to 127.0.0.1: not in its SANs */
    run_hs(&h);
    cr_assert_eq(h.cli_rc, WEFT_ETLS_NAME, "client: %s", weft_err_name(h.cli_rc));
    cr_assert(strstr(h.cli_msg, "IP address mismatch"), "reason: %s", h.cli_msg);
}

Test(tls_verify, wrong_host_name, .timeout = 60)
{
    hs h = {.srv_cert = "other", .servername = "localhost"};
    run_hs(&h);
    cr_assert_eq(h.cli_rc, WEFT_ETLS_NAME, "client: %s", weft_err_name(h.cli_rc));
    cr_assert(strstr(h.cli_msg, "hostname mismatch"), "reason: %s", h.cli_msg);
    cr_assert_eq(h.srv_rc, WEFT_ETLS_ALERT, "server: %s", weft_err_name(h.srv_rc));
}

Test(tls_verify, expired, .timeout = 60)
{
    hs h = {.srv_cert = "expired"};
    run_hs(&h);
    cr_assert_eq(h.cli_rc, WEFT_ETLS_EXPIRED, "client: %s", weft_err_name(h.cli_rc));
    cr_assert(strstr(h.cli_msg, "expired"), "reason: %s", h.cli_msg);
    cr_assert_eq(h.srv_rc, WEFT_ETLS_ALERT, "server: %s", weft_err_name(h.srv_rc));
    cr_assert(strstr(h.srv_msg, "expired"), "server's reason: %s", h.srv_msg);
}

Test(tls_verify, wrong_host_name_by_connect, .timeout = 60)
{
    /* weft_tls_connect to a name (from /etc/hosts): the name is what is
     * verified, not the address it resolved to. */
    hs h = {.srv_cert = "other", .host = "localhost"};
    run_hs(&h);
    cr_assert_eq(h.cli_rc, WEFT_ETLS_NAME, "client: %s", weft_err_name(h.cli_rc));
    cr_assert(strstr(h.cli_msg, "hostname mismatch"), "reason: %s", h.cli_msg);
}

/* ---- what verification accepts ----------------------------------------------------------- */

Test(tls_verify, host_name_by_connect, .timeout = 60)
{
    hs h = {.srv_cert = "srv", .host = "localhost"};
    run_hs(&h);
    cr_assert_eq(h.cli_rc, 0, "client: %s (%s)", weft_err_name(h.cli_rc), h.cli_msg);
    cr_assert_eq(h.verify, 0);
    cr_assert_eq(h.echo, 2);
}

Test(tls_verify, ip_address_in_san, .timeout = 60)
{
    hs h = {.srv_cert = "srv"}; /* weft_tls_connect to "127.0.0.1" */
    run_hs(&h);
    cr_assert_eq(h.cli_rc, 0, "client: %s (%s)", weft_err_name(h.cli_rc), h.cli_msg);
    cr_assert_eq(h.srv_rc, 0);
    cr_assert_eq(h.verify, 0);
    cr_assert_str_eq(h.subject, "CN=localhost");
    cr_assert_eq(h.echo, 2);
}

Test(tls_verify, host_name_by_wrap, .timeout = 60)
{
    hs h = {.srv_cert = "srv", .servername = "localhost"};
    run_hs(&h);
    cr_assert_eq(h.cli_rc, 0, "client: %s (%s)", weft_err_name(h.cli_rc), h.cli_msg);
    cr_assert_eq(h.verify, 0);
    cr_assert_eq(h.echo, 2);
}

Test(tls_verify, no_verify_accepts_self_signed, .timeout = 60)
{
    hs h = {.srv_cert = "self", .copts = {.no_verify = 1}};
    run_hs(&h);
    cr_assert_eq(h.cli_rc, 0, "client: %s (%s)", weft_err_name(h.cli_rc), h.cli_msg);
    cr_assert_eq(h.echo, 2);
    /* Not checked, but still told. */
    cr_assert_neq(h.verify, 0, "a self-signed certificate verified");
}

typedef struct nullname_run {
    weft_tls_ctx *cctx, *nctx;
    weft_sock *a, *b;
    int pair_rc, verified_rc, noverify_rc;
    ssize_t plain_after;
} nullname_run;

static int nullname_main(void *arg)
{
    nullname_run *n = arg;
    if ((n->pair_rc = make_pair(&n->a, &n->b)) < 0)
        return 0;
    weft_sock *t;
    /* No name to check against: refused at once, s still the caller's. */
    n->verified_rc = weft_tls_wrap(&t, n->a, n->cctx, NULL, 1000);
    n->plain_after = weft_send(n->a, "plain", 5, 1000);
    /* With no_verify there is nothing to check: the handshake starts (and
     * times out, as nobody answers). */
    n->noverify_rc = weft_tls_wrap(&t, n->a, n->nctx, NULL, 100);
    weft_close(n->a);
    weft_close(n->b);
    return 0;
}

Test(tls_verify, null_servername_needs_no_verify, .timeout = 60)
{
    int fds = count_fds();
    nullname_run n = {0};
    cr_assert_eq(ctx_client(&n.cctx, NULL), 0);
    weft_tls_opts o = {.no_verify = 1};
    cr_assert_eq(ctx_client(&n.nctx, &o), 0);
    cr_assert_eq(weft_main(nullname_main, &n, NULL), 0);
    weft_tls_ctx_free(n.cctx);
    weft_tls_ctx_free(n.nctx);
    cr_assert_eq(n.pair_rc, 0);
    cr_assert_eq(n.verified_rc, -EINVAL);
    cr_assert_eq(n.plain_after, 5, "the socket is still a plain one");
    cr_assert_eq(n.noverify_rc, -ETIMEDOUT, "%s", weft_err_name(n.noverify_rc));
    cr_assert_eq(count_fds(), fds);
}

/* ---- SNI ---------------------------------------------------------------------------------- */

typedef struct sni_run {
    weft_tls_ctx *sctx, *cctx;
    const char *names[4];
    int rc[4];
    char subject[4][128];
    int add_bad, add_client;
} sni_run;

static int sni_main(void *arg)
{
    sni_run *s = arg;
    for (int i = 0; i < 4; i++) {
        tls_pair p = {.sctx = s->sctx, .cctx = s->cctx, .servername = s->names[i]};
        s->rc[i] = pair_open(&p);
        if (p.cli)
            weft_tls_peer_subject(p.cli, s->subject[i], sizeof s->subject[i]);
        pair_close(&p);
    }
    return 0;
}

Test(tls_verify, sni_picks_certificate, .timeout = 60)
{
    int fds = count_fds();
    sni_run s = {.names = {"localhost", "alt.test", "www.alt.test", "127.0.0.1"}};
    cr_assert_eq(ctx_server(&s.sctx, "srv", NULL), 0);
    cr_assert_eq(weft_tls_ctx_add_cert(s.sctx, cert("alt.pem"), cert("alt.key")), 0);
    s.add_bad = weft_tls_ctx_add_cert(s.sctx, cert("nonexistent.pem"), cert("alt.key"));
    cr_assert_eq(ctx_client(&s.cctx, NULL), 0);
    s.add_client = weft_tls_ctx_add_cert(s.cctx, cert("alt.pem"), cert("alt.key"));
    cr_assert_eq(weft_main(sni_main, &s, NULL), 0);
    weft_tls_ctx_free(s.sctx);
    weft_tls_ctx_free(s.cctx);
    cr_assert_eq(s.add_bad, WEFT_ETLS_CERT);
    cr_assert_eq(s.add_client, -EINVAL);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(s.rc[i], 0, "%s: %s", s.names[i], weft_err_name(s.rc[i]));
    cr_assert_str_eq(s.subject[0], "CN=localhost");
    cr_assert_str_eq(s.subject[1], "CN=alt.test");
    cr_assert_str_eq(s.subject[2], "CN=alt.test", "wildcard *.alt.test");
    cr_assert_str_eq(s.subject[3], "CN=localhost", "no SNI for an address: the default");
    cr_assert_eq(count_fds(), fds);
}

/* ---- ALPN and versions ---------------------------------------------------------------------- */

Test(tls_verify, alpn_server_preference, .timeout = 60)
{
    hs h = {.srv_cert = "srv", .sopts = {.alpn = "h2,http/1.1"}, .copts = {.alpn = "http/1.1,h2"}};
    run_hs(&h);
    cr_assert_eq(h.cli_rc, 0, "%s", weft_err_name(h.cli_rc));
    cr_assert_str_eq(h.cli_alpn, "h2");
    cr_assert_str_eq(h.srv_alpn, "h2");
}

Test(tls_verify, alpn_nothing_in_common, .timeout = 60)
{
    hs h = {.srv_cert = "srv", .sopts = {.alpn = "h2"}, .copts = {.alpn = "imap"}};
    run_hs(&h);
    cr_assert_eq(h.cli_rc, 0, "%s", weft_err_name(h.cli_rc));
    cr_assert_str_eq(h.cli_alpn, "");
    cr_assert_str_eq(h.srv_alpn, "");
    cr_assert_eq(h.echo, 2);
}

Test(tls_verify, no_shared_version, .timeout = 60)
{
    hs h = {.srv_cert = "srv", .sopts = {.min_version = 0x0304}, .copts = {.max_version = 0x0303}};
    run_hs(&h);
    cr_assert_eq(h.srv_rc, WEFT_ETLS_HANDSHAKE, "server: %s (%s)", weft_err_name(h.srv_rc),
                 h.srv_msg);
    cr_assert_eq(h.cli_rc, WEFT_ETLS_ALERT, "client: %s (%s)", weft_err_name(h.cli_rc), h.cli_msg);
    cr_assert(strstr(h.cli_msg, "protocol version"), "%s", h.cli_msg);
}

Test(tls_verify, tls12_both_sides, .timeout = 60)
{
    hs h = {.srv_cert = "srv", .sopts = {.max_version = 0x0303}, .copts = {.alpn = "x"}};
    run_hs(&h);
    cr_assert_eq(h.cli_rc, 0, "%s (%s)", weft_err_name(h.cli_rc), h.cli_msg);
    cr_assert_eq(h.echo, 2);
}

/* ---- client certificates ----------------------------------------------------------------------
 */

Test(tls_verify, client_certificate, .timeout = 60)
{
    hs h = {.srv_cert = "srv",
            .sopts = {.verify_peer = 1, .ca_file = NULL},
            .copts = {.cert_file = NULL}};
    h.sopts.ca_file = cert("ca.pem");
    h.copts.cert_file = cert("client.pem");
    h.copts.key_file = cert("client.key");
    run_hs(&h);
    cr_assert_eq(h.cli_rc, 0, "client: %s (%s)", weft_err_name(h.cli_rc), h.cli_msg);
    cr_assert_eq(h.srv_rc, 0, "server: %s (%s)", weft_err_name(h.srv_rc), h.srv_msg);
    cr_assert_str_eq(h.srv_msg, "peer CN=weft client");
    cr_assert_eq(h.echo, 2);
}

Test(tls_verify, client_certificate_missing, .timeout = 60)
{
    hs h = {.srv_cert = "srv", .sopts = {.verify_peer = 1}};
    h.sopts.ca_file = cert("ca.pem");
    run_hs(&h);
    cr_assert_eq(h.srv_rc, WEFT_ETLS_HANDSHAKE, "server: %s (%s)", weft_err_name(h.srv_rc),
                 h.srv_msg);
    /* TLS 1.3: the client finished first, and hears of it on its next read. */
    cr_assert_eq(h.cli_rc, 0, "client: %s", weft_err_name(h.cli_rc));
    cr_assert_eq(h.late, WEFT_ETLS_ALERT, "client's read: %s (%s)", weft_err_name((int)h.late),
                 h.cli_msg);
}

Test(tls_verify, client_certificate_untrusted, .timeout = 60)
{
    hs h = {.srv_cert = "srv", .sopts = {.verify_peer = 1}};
    h.sopts.ca_file = cert("ca.pem");
    h.copts.cert_file = cert("rogue.pem");
    h.copts.key_file = cert("rogue.key");
    run_hs(&h);
    cr_assert_eq(h.srv_rc, WEFT_ETLS_UNTRUSTED, "server: %s (%s)", weft_err_name(h.srv_rc),
                 h.srv_msg);
}

/* ---- resumption
 * ---------------------------------------------------------------------------------- */

typedef struct res_run {
    weft_tls_ctx *sctx, *cctx;
    int rc[4];
    int resumed[4];
    int port_first;
} res_run;

typedef struct res_srv {
    weft_sock *l;
    weft_tls_ctx *ctx;
    int n;
} res_srv;

static void res_server(void *arg)
{
    res_srv *s = arg;
    for (int i = 0; i < s->n; i++) {
        weft_sock *c;
        if (weft_tls_accept(s->l, &c, s->ctx, 3000) < 0)
            continue;
        char buf[8];
        ssize_t n = weft_recv(c, buf, sizeof buf, 3000);
        if (n > 0)
            weft_send(c, buf, (size_t)n, 3000);
        weft_close(c);
    }
}

static int res_main(void *arg)
{
    res_run *r = arg;
    res_srv a = {.ctx = r->sctx, .n = 3}, b = {.ctx = r->sctx, .n = 1};
    int pa = listen_any(&a.l, "127.0.0.1"), pb = listen_any(&b.l, "127.0.0.1");
    int64_t ida = weft_go(res_server, &a), idb = weft_go(res_server, &b);
    /* Three to port a, then one to port b: a different key. */
    int ports[4] = {pa, pa, pa, pb};
    for (int i = 0; i < 4; i++) {
        weft_sock *c;
        r->rc[i] = weft_tls_connect(&c, "127.0.0.1", ports[i], r->cctx, 3000);
        if (r->rc[i] < 0)
            continue;
        char buf[8];
        /* The round trip also takes in TLS 1.3's session ticket. */
        weft_send(c, "hi", 2, 1000);
        weft_recvn(c, buf, 2, 1000);
        r->resumed[i] = weft_tls_resumed(c);
        weft_close(c);
    }
    weft_join(ida, -1);
    weft_join(idb, -1);
    weft_close(a.l);
    weft_close(b.l);
    return 0;
}

static void resumption(int max_version)
{
    int fds = count_fds();
    res_run r = {0};
    weft_tls_opts so = {.max_version = max_version};
    cr_assert_eq(ctx_server(&r.sctx, "srv", &so), 0);
    cr_assert_eq(ctx_client(&r.cctx, NULL), 0);
    cr_assert_eq(weft_main(res_main, &r, NULL), 0);
    weft_tls_ctx_free(r.sctx);
    weft_tls_ctx_free(r.cctx);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(r.rc[i], 0, "connect %d: %s", i, weft_err_name(r.rc[i]));
    cr_assert_eq(r.resumed[0], 0, "nothing to resume yet");
    cr_assert_eq(r.resumed[1], 1, "second connection not resumed");
    cr_assert_eq(r.resumed[2], 1, "third connection not resumed");
    cr_assert_eq(r.resumed[3], 0, "another port resumed a session it never had");
    cr_assert_eq(count_fds(), fds);
}

Test(tls_verify, resumption_tls13, .timeout = 60)
{
    resumption(0);
}

Test(tls_verify, resumption_tls12, .timeout = 60)
{
    resumption(0x0303);
}
