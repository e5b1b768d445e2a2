/*
 * test_tls_fail.c - handshakes with peers that misbehave: a silent server
 * and a silent client (handshake timeouts), half a ClientHello, plaintext
 * HTTP to a TLS server and from a "TLS" server, a server that resets or
 * closes mid-handshake, a socket closed or a coroutine cancelled during
 * its handshake, 200 clients aborting mid-handshake against one server
 * that stays up, and allocation failures.  Each gives its own code and
 * leaves no descriptor and nothing on OpenSSL's error queue.
 */
#include "tls_certs.h"

#include <criterion/criterion.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdlib.h>

TestSuite(tls_fail, .init = tls_suite_setup, .fini = tls_suite_teardown);

static void check_clean(int fds)
{
    cr_assert_eq(count_fds(), fds, "descriptors leaked");
    cr_assert_eq(ERR_peek_error(), 0ul, "OpenSSL's error queue was left full");
}

/* ---- a raw peer that plays the server -------------------------------------------------- */

enum { SRV_SILENT, SRV_HTTP, SRV_RESET, SRV_CLOSE };

typedef struct raw_srv {
    weft_sock *l;
    int mode;
    ssize_t hello; /* bytes of ClientHello read */
} raw_srv;

static void raw_server(void *arg)
{
    raw_srv *r = arg;
    weft_sock *c;
    if (weft_tcp_accept(r->l, &c, 3000) < 0)
        return;
    char buf[4096];
    if (r->mode != SRV_SILENT)
        r->hello = weft_recv(c, buf, sizeof buf, 3000);
    switch (r->mode) {
    case SRV_SILENT:
        weft_sleep(1500);
        weft_close(c);
        break;
    case SRV_HTTP:
        weft_send(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", 47, 1000);
        weft_sleep(500);
        weft_close(c);
        break;
    case SRV_RESET: weft_reset(c); break;
    default: weft_close(c); break;
    }
}

typedef struct cli_run {
    weft_tls_ctx *cctx;
    int mode;
    int rc;
    int64_t ms;
    ssize_t hello;
    char msg[160];
} cli_run;

static int cli_main(void *arg)
{
    cli_run *c = arg;
    raw_srv r = {.mode = c->mode};
    int port = listen_any(&r.l, "127.0.0.1");
    if (port < 0)
        return port;
    int64_t id = weft_go(raw_server, &r);
    weft_sock *s;
    int64_t t0 = weft_now();
    c->rc = weft_tls_connect(&s, "127.0.0.1", port, c->cctx, 300);
    c->ms = weft_now() - t0;
    const char *m = weft_tls_errmsg(NULL);
    snprintf(c->msg, sizeof c->msg, "%s", m ? m : "");
    if (c->rc == 0)
        weft_close(s);
    weft_join(id, -1);
    c->hello = r.hello;
    weft_close(r.l);
    return 0;
}

static void run_cli(cli_run *c)
{
    int fds = count_fds();
    cr_assert_eq(ctx_client(&c->cctx, NULL), 0);
    cr_assert_eq(weft_main(cli_main, c, NULL), 0);
    weft_tls_ctx_free(c->cctx);
    check_clean(fds);
}

Test(tls_fail, silent_server_times_out, .timeout = 60)
{
    cli_run c = {.mode = SRV_SILENT};
    run_cli(&c);
    cr_assert_eq(c.rc, -ETIMEDOUT, "%s", weft_err_name(c.rc));
    cr_assert_geq(c.ms, 300);
    cr_assert_lt(c.ms, 1000, "took %lld ms", (long long)c.ms);
}

Test(tls_fail, server_answers_plaintext, .timeout = 60)
{
    cli_run c = {.mode = SRV_HTTP};
    run_cli(&c);
    cr_assert_gt(c.hello, 0, "no ClientHello came");
    cr_assert_eq(c.rc, WEFT_ETLS_PROTOCOL, "%s (%s)", weft_err_name(c.rc), c.msg);
}

Test(tls_fail, server_resets_mid_handshake, .timeout = 60)
{
    cli_run c = {.mode = SRV_RESET};
    run_cli(&c);
    cr_assert_eq(c.rc, -ECONNRESET, "%s (%s)", weft_err_name(c.rc), c.msg);
}

Test(tls_fail, server_closes_mid_handshake, .timeout = 60)
{
    cli_run c = {.mode = SRV_CLOSE};
    run_cli(&c);
    cr_assert_eq(c.rc, WEFT_ETLS_TRUNCATED, "%s (%s)", weft_err_name(c.rc), c.msg);
}

/* ---- a raw peer that plays the client ---------------------------------------------------- */

enum { CLI_SILENT, CLI_HALF_HELLO, CLI_HTTP };

typedef struct srv_run {
    weft_tls_ctx *sctx;
    int mode;
    int rc;
    int64_t ms;
    ssize_t peer_end;
    int64_t peer_end_ms;
    char msg[160];
} srv_run;

typedef struct srv_ctx {
    srv_run *r;
    int port;
} srv_ctx;

static void raw_client_run(void *arg)
{
    srv_ctx *x = arg;
    srv_run *r = x->r;
    weft_sock *s;
    if (weft_tcp_connect(&s, "127.0.0.1", x->port, 1000) < 0)
        return;
    static const char half[] = "\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03\x11\x22";
    static const char http[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    if (r->mode == CLI_HALF_HELLO)
        weft_send(s, half, sizeof half - 1, 1000);
    else if (r->mode == CLI_HTTP)
        weft_send(s, http, sizeof http - 1, 1000);
    /* Whatever the server does, it ends the connection: read until then. */
    int64_t t0 = weft_now();
    char buf[512];
    ssize_t n;
    while ((n = weft_recv(s, buf, sizeof buf, 3000)) > 0)
        ;
    r->peer_end = n;
    r->peer_end_ms = weft_now() - t0;
    weft_close(s);
}

static int srv_main(void *arg)
{
    srv_run *r = arg;
    weft_sock *l, *s;
    srv_ctx x = {r, listen_any(&l, "127.0.0.1")};
    if (x.port < 0)
        return x.port;
    int64_t id = weft_go(raw_client_run, &x);
    int64_t t0 = weft_now();
    r->rc = weft_tls_accept(l, &s, r->sctx, 300);
    r->ms = weft_now() - t0;
    const char *m = weft_tls_errmsg(NULL);
    snprintf(r->msg, sizeof r->msg, "%s", m ? m : "");
    if (r->rc == 0)
        weft_close(s);
    weft_join(id, -1);
    weft_close(l);
    return 0;
}

static void run_srv(srv_run *r)
{
    int fds = count_fds();
    cr_assert_eq(ctx_server(&r->sctx, "srv", NULL), 0);
    cr_assert_eq(weft_main(srv_main, r, NULL), 0);
    weft_tls_ctx_free(r->sctx);
    check_clean(fds);
}

Test(tls_fail, silent_client_dropped_at_timeout, .timeout = 60)
{
    srv_run r = {.mode = CLI_SILENT, .peer_end = -999};
    run_srv(&r);
    cr_assert_eq(r.rc, -ETIMEDOUT, "%s", weft_err_name(r.rc));
    cr_assert_geq(r.ms, 300);
    cr_assert_lt(r.ms, 1000);
    /* The server closed it: the client sees the end at about that time. */
    cr_assert_eq(r.peer_end, 0, "%s", weft_err_name((int)r.peer_end));
    cr_assert_lt(r.peer_end_ms, 1500);
}

Test(tls_fail, half_client_hello_times_out, .timeout = 60)
{
    srv_run r = {.mode = CLI_HALF_HELLO, .peer_end = -999};
    run_srv(&r);
    cr_assert_eq(r.rc, -ETIMEDOUT, "%s", weft_err_name(r.rc));
    cr_assert_lt(r.ms, 1000);
    cr_assert_geq(r.peer_end, 0);
}

Test(tls_fail, plaintext_http_to_server, .timeout = 60)
{
    srv_run r = {.mode = CLI_HTTP, .peer_end = -999};
    run_srv(&r);
    cr_assert_eq(r.rc, WEFT_ETLS_PROTOCOL, "%s (%s)", weft_err_name(r.rc), r.msg);
    cr_assert(strstr(r.msg, "http request"), "reason: %s", r.msg);
    cr_assert_lt(r.ms, LATE_MS, "garbage is refused at once");
}

/* ---- closing or cancelling a handshake from outside ---------------------------------------- */

typedef struct abort_run {
    weft_tls_ctx *cctx;
    weft_sock *l, *s;
    int close_rc, close_again_rc, cancel_rc;
    ssize_t usable;
    int64_t me;
} abort_run;

static void closer(void *arg)
{
    abort_run *a = arg;
    weft_sleep(50);
    weft_close(a->s);
}

static void canceller(void *arg)
{
    abort_run *a = arg;
    weft_sleep(50);
    weft_cancel(a->me);
}

static void hold_peer(void *arg)
{
    abort_run *a = arg;
    weft_sock *c[2];
    for (int i = 0; i < 2; i++)
        if (weft_tcp_accept(a->l, &c[i], 2000) < 0)
            c[i] = NULL;
    weft_sleep(300);
    for (int i = 0; i < 2; i++)
        if (c[i])
            weft_close(c[i]);
}

static int abort_main(void *arg)
{
    abort_run *a = arg;
    int port = listen_any(&a->l, "127.0.0.1");
    int64_t peer = weft_go(hold_peer, a);
    weft_sock *t;
    /* Closed by another coroutine while it waits for the ServerHello:
     * the socket is gone and the call must not touch it again. */
    weft_tcp_connect(&a->s, "127.0.0.1", port, 1000);
    weft_go(closer, a);
    a->close_rc = weft_tls_wrap(&t, a->s, a->cctx, "localhost", 2000);
    a->close_again_rc = weft_close(a->s); /* "close on error": harmless */
    /* Cancelled: the socket is still the caller's, and a plain one. */
    weft_tcp_connect(&a->s, "127.0.0.1", port, 1000);
    a->me = weft_self();
    weft_go(canceller, a);
    a->cancel_rc = weft_tls_wrap(&t, a->s, a->cctx, "localhost", 2000);
    a->usable = weft_sock_poll(a->s, WEFT_POLL_OUT, 1000);
    weft_close(a->s);
    weft_join(peer, -1);
    weft_close(a->l);
    return 0;
}

Test(tls_fail, close_or_cancel_during_handshake, .timeout = 60)
{
    int fds = count_fds();
    abort_run a = {0};
    cr_assert_eq(ctx_client(&a.cctx, NULL), 0);
    cr_assert_eq(weft_main(abort_main, &a, NULL), 0);
    weft_tls_ctx_free(a.cctx);
    cr_assert_eq(a.close_rc, -EBADF, "closed: %s", weft_err_name(a.close_rc));
    cr_assert_eq(a.close_again_rc, -EBADF, "closed again: %s", weft_err_name(a.close_again_rc));
    cr_assert_eq(a.cancel_rc, -ECANCELED, "cancelled: %s", weft_err_name(a.cancel_rc));
    cr_assert_eq(a.usable, WEFT_POLL_OUT);
    check_clean(fds);
}

/* ---- 200 clients aborting mid-handshake ---------------------------------------------------------
 */

#define ABORTERS 200

typedef struct storm {
    weft_tls_ctx *sctx, *cctx;
    weft_sock *l;
    int port;
    unsigned char hello[2048];
    ssize_t hello_len;
    int srv_ok, srv_fail, srv_codes[8], srv_active;
    int cli_closed, cli_other;
    int done;
    int good_rc, srv_seen;
    ssize_t good_echo;
    bool stop;
} storm;

typedef struct storm_conn_arg {
    storm *st;
    weft_sock *c;
} storm_conn_arg;

static void storm_handler(void *arg)
{
    storm_conn_arg *a = arg;
    storm *st = a->st;
    weft_sock *c = a->c, *t;
    free(a);
    int rc = weft_tls_wrap(&t, c, st->sctx, NULL, 2000);
    st->srv_active--;
    if (rc < 0) {
        st->srv_fail++;
        int k = rc == -ECONNRESET           ? 0
                : rc == WEFT_ETLS_TRUNCATED ? 1
                : rc == WEFT_ETLS_PROTOCOL  ? 2
                : rc == -ETIMEDOUT          ? 3
                                            : 4;
        st->srv_codes[k]++;
        weft_close(c);
        return;
    }
    st->srv_ok++;
    char buf[64];
    ssize_t n;
    while ((n = weft_recv(t, buf, sizeof buf, 2000)) > 0)
        weft_send(t, buf, (size_t)n, 2000);
    weft_close(t);
}

static void storm_accept(void *arg)
{
    storm *st = arg;
    while (!st->stop) {
        weft_sock *c;
        if (weft_tcp_accept(st->l, &c, 100) < 0)
            continue;
        storm_conn_arg *a = malloc(sizeof *a);
        a->st = st;
        a->c = c;
        st->srv_active++;
        weft_go(storm_handler, a);
    }
}

typedef struct aborter {
    storm *st;
    int kind;
    weft_sock *s;
    int rc;
} aborter;

static void aborter_wrap(void *arg)
{
    aborter *a = arg;
    weft_sock *t;
    /* On success t is a->s itself, which aborter_run closes either way. */
    a->rc = weft_tls_wrap(&t, a->s, a->st->cctx, "localhost", 3000);
}

static void aborter_run(void *arg)
{
    aborter *a = arg;
    storm *st = a->st;
    if (weft_tcp_connect(&a->s, "127.0.0.1", st->port, 3000) < 0) {
        st->cli_other++;
        st->done++;
        return;
    }
    switch (a->kind) {
    case 0:   /* ClientHello out, then RST */
    case 1: { /* ClientHello out, then FIN */
        int64_t id = weft_go(aborter_wrap, a);
        /* One round: the handshake sends its ClientHello and parks for
         * the answer, which takes the server a few rounds more. */
        weft_yield();
        if (a->kind == 0)
            weft_reset(a->s);
        else
            weft_close(a->s);
        weft_join(id, -1);
        if (a->rc == -EBADF)
            st->cli_closed++;
        else
            st->cli_other++;
        break;
    }
    case 2: /* half a ClientHello, then FIN */
        weft_send(a->s, st->hello, (size_t)st->hello_len / 2, 1000);
        weft_close(a->s);
        break;
    default: /* garbage, then RST */
        weft_send(a->s, "\x16\x03\x01\xff\xff garbage", 14, 1000);
        weft_reset(a->s);
        break;
    }
    st->done++;
}

/* A real ClientHello, to cut in half: the client end of a socketpair. */
typedef struct hello_cap {
    storm *st;
    weft_sock *p[2];
} hello_cap;

static void hello_client(void *arg)
{
    hello_cap *h = arg;
    weft_sock *t;
    if (weft_tls_wrap(&t, h->p[0], h->st->cctx, "localhost", 500) == 0)
        weft_close(t);
    else
        weft_close(h->p[0]);
}

static int storm_main(void *arg)
{
    storm *st = arg;
    hello_cap h = {.st = st};
    if (weft_socketpair(h.p, SOCK_STREAM) < 0)
        return -1;
    int64_t hid = weft_go(hello_client, &h);
    st->hello_len = weft_recv(h.p[1], st->hello, sizeof st->hello, 1000);
    weft_close(h.p[1]);
    weft_join(hid, -1);

    st->port = listen_any(&st->l, "127.0.0.1");
    int64_t acc = weft_go(storm_accept, st);
    static aborter ab[ABORTERS];
    for (int i = 0; i < ABORTERS; i++) {
        ab[i] = (aborter){.st = st, .kind = i % 4};
        weft_go(aborter_run, &ab[i]);
    }
    for (int i = 0; i < 500 && st->done < ABORTERS; i++)
        weft_sleep(10);
    /* Wait for the server's handshakes to end (one accepts round more:
     * connections reset before accept are skipped by it). */
    weft_sleep(150);
    for (int i = 0; i < 500 && st->srv_active > 0; i++)
        weft_sleep(10);
    st->srv_seen = st->srv_fail + st->srv_ok;
    /* The server is still serving. */
    weft_sock *c;
    st->good_rc = weft_tls_connect(&c, "127.0.0.1", st->port, st->cctx, 3000);
    if (st->good_rc == 0) {
        char buf[8];
        weft_send(c, "alive", 5, 1000);
        st->good_echo = weft_recvn(c, buf, 5, 1000);
        weft_close(c);
    }
    st->stop = true;
    weft_join(acc, -1);
    weft_close(st->l);
    return 0;
}

Test(tls_fail, storm_of_aborted_handshakes, .timeout = 180)
{
    int fds = count_fds();
    storm *st = calloc(1, sizeof *st);
    cr_assert_eq(ctx_server(&st->sctx, "srv", NULL), 0);
    cr_assert_eq(ctx_client(&st->cctx, NULL), 0);
    cr_assert_eq(weft_main(storm_main, st, NULL), 0);
    weft_tls_ctx_free(st->sctx);
    weft_tls_ctx_free(st->cctx);
    cr_assert_gt(st->hello_len, 100, "no ClientHello captured");
    cr_assert_eq(st->done, ABORTERS);
    cr_assert_eq(st->cli_closed, ABORTERS / 2,
                 "clients whose socket was closed under their handshake: %d EBADF, %d other",
                 st->cli_closed, st->cli_other);
    /* Every handshake the server began failed: those it never saw were
     * reset before it accepted them. */
    cr_assert_eq(st->srv_seen, st->srv_fail,
                 "server: %d failed (reset %d, truncated %d, protocol %d, timeout %d, other %d), "
                 "%d succeeded",
                 st->srv_fail, st->srv_codes[0], st->srv_codes[1], st->srv_codes[2],
                 st->srv_codes[3], st->srv_codes[4], st->srv_ok);
    cr_assert_geq(st->srv_fail, ABORTERS / 2, "the server saw only %d", st->srv_fail);
    cr_assert_eq(st->srv_codes[3] + st->srv_codes[4], 0, "unexpected codes");
    cr_assert_eq(st->good_rc, 0, "the server after the storm: %s", weft_err_name(st->good_rc));
    cr_assert_eq(st->good_echo, 5);
    free(st);
    check_clean(fds);
}

/* ---- allocation failures --------------------------------------------------------------------- */

typedef struct oom_run {
    weft_tls_ctx *sctx, *cctx;
    weft_sock *l;
    int port;
    int accepted;
    int rc[32];
    int tries;
    ssize_t echo;
} oom_run;

static int oom_server(void *arg)
{
    oom_run *o = arg;
    for (;;) {
        weft_sock *c;
        int rc = weft_tls_accept(o->l, &c, o->sctx, 5000);
        if (rc == -ETIMEDOUT)
            return 0;
        if (rc < 0)
            continue;
        char buf[8];
        ssize_t n = weft_recv(c, buf, sizeof buf, 2000);
        if (n > 0)
            weft_send(c, buf, (size_t)n, 2000);
        weft_close(c);
        return 0;
    }
}

static void *oom_thread(void *arg)
{
    weft_main(oom_server, arg, NULL);
    return NULL;
}

static int oom_main(void *arg)
{
    oom_run *o = arg;
    /* Fail the 1st, 2nd, ... allocation of the client's handshake until
     * one gets through: each failure is -ENOMEM, and s stays usable. */
    for (o->tries = 0; o->tries < 32; o->tries++) {
        weft_sock *s, *t;
        if (weft_tcp_connect(&s, "127.0.0.1", o->port, 2000) < 0)
            return -1;
        weft_fault_set(WEFT_FAULT_MALLOC, (unsigned)o->tries + 1, ENOMEM);
        int rc = weft_tls_wrap(&t, s, o->cctx, "localhost", 2000);
        weft_fault_clear();
        o->rc[o->tries] = rc;
        if (rc == 0) {
            char buf[8];
            weft_send(t, "oom", 3, 1000);
            o->echo = weft_recvn(t, buf, 3, 1000);
            weft_close(t);
            break;
        }
        weft_close(s);
    }
    return 0;
}

Test(tls_fail, allocation_failures_in_handshake, .timeout = 90)
{
    int fds = count_fds();
    oom_run o = {0};
    cr_assert_eq(ctx_server(&o.sctx, "srv", NULL), 0);
    cr_assert_eq(ctx_client(&o.cctx, NULL), 0);
    o.port = listen_any(&o.l, "127.0.0.1");
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, oom_thread, &o), 0);
    cr_assert_eq(weft_main(oom_main, &o, NULL), 0);
    pthread_join(th, NULL);
    weft_close(o.l);
    weft_tls_ctx_free(o.sctx);
    weft_tls_ctx_free(o.cctx);
    cr_assert_lt(o.tries, 32, "never got through");
    cr_assert_gt(o.tries, 0, "no allocation was failed");
    for (int i = 0; i < o.tries; i++)
        cr_assert_eq(o.rc[i], -ENOMEM, "try %d: %s", i, weft_err_name(o.rc[i]));
    cr_assert_eq(o.echo, 3);
    check_clean(fds);
}
