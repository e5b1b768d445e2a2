/*
 * test_server_tls.c - weft_server with TLS: certificate files or a context
 * of one's own; 200 silent clients while 50 normal ones are served
 * promptly (the handshake runs in each connection's coroutine) and the
 * silent ones dropped at the handshake timeout; clients that fail the
 * handshake never reach on_conn; a drain cancels handshakes; bad TLS
 * options; closing a TLS connection later; allocation failures in start.
 */
#include "tls_certs.h"

#include <criterion/criterion.h>
#include <stdlib.h>

TestSuite(server_tls, .init = tls_suite_setup, .fini = tls_suite_teardown);

typedef struct tst {
    weft_server *srv;
    weft_tls_ctx *cctx;
    int port;
    int exits, conns, echoed, ended;
    int cli_ok, cli_fail, cli_last;
    int silent_eof, silent_bad, silent_last;
    int64_t silent_min_ms, silent_max_ms;
    int64_t normal_max_ms;
    size_t peak;
    int drain_rc;
} tst;

static tst T;

static void on_exit_cb(void *arg)
{
    ((tst *)arg)->exits++;
}

static void echo_handler(weft_sock *c, void *arg)
{
    tst *t = arg;
    t->conns++;
    char buf[256];
    ssize_t n;
    while ((n = weft_recv(c, buf, sizeof buf, 10000)) > 0)
        if (weft_send(c, buf, (size_t)n, 10000) != n)
            break;
    if (n == 0)
        t->echoed++;
    t->ended++;
}

static int tls_echo_once(int port)
{
    weft_sock *s;
    char back[16];
    int rc = weft_tls_connect(&s, "localhost", port, T.cctx, 10000);
    if (rc < 0)
        return rc;
    ssize_t n = weft_send(s, "hello, tls", 10, 5000);
    if (n == 10)
        n = weft_recvn(s, back, 10, 5000);
    weft_close(s);
    return n == 10 && memcmp(back, "hello, tls", 10) == 0 ? 0 : n < 0 ? (int)n : -EPROTO;
}

static void tls_client(void *arg)
{
    (void)arg;
    int64_t t0 = mono_ms();
    int rc = tls_echo_once(T.port);
    int64_t ms = mono_ms() - t0;
    if (ms > T.normal_max_ms)
        T.normal_max_ms = ms;
    if (rc == 0)
        T.cli_ok++;
    else
        T.cli_fail++, T.cli_last = rc;
}

static int start(const weft_server_opts *o)
{
    int rc = weft_server_start(&T.srv, o);
    if (rc == 0)
        T.port = weft_server_port(T.srv);
    return rc;
}

#define WAIT_UNTIL(cond, ms)                                                                       \
    do {                                                                                           \
        for (int w_ = 0; !(cond) && w_ < (ms); w_ += 5)                                            \
            weft_sleep(5);                                                                         \
    } while (0)

/* ---- echo, with files and with a context ----------------------------------------------- */

static int echo_main(void *arg)
{
    weft_tls_ctx *own = arg;
    weft_server_opts o = {
        .host = "127.0.0.1", .on_conn = echo_handler, .arg = &T, .on_exit = on_exit_cb};
    if (own)
        o.tls = own;
    else
        o.cert_file = cert("srv.pem"), o.key_file = cert("srv.key");
    if (start(&o) < 0)
        return 1;
    for (int i = 0; i < 10; i++)
        weft_go(tls_client, NULL);
    WAIT_UNTIL(T.cli_ok + T.cli_fail == 10, 30000);
    weft_server_drain(T.srv, 5000);
    weft_server_free(T.srv);
    return 0;
}

Test(server_tls, echo_with_certificate_files_and_own_context, .timeout = 120)
{
    for (int own = 0; own < 2; own++) {
        memset(&T, 0, sizeof T);
        cr_assert_eq(ctx_client(&T.cctx, NULL), 0);
        weft_tls_ctx *sctx = NULL;
        if (own)
            cr_assert_eq(ctx_server(&sctx, "srv", NULL), 0);
        int fds = count_fds();
        cr_assert_eq(weft_main(echo_main, sctx, NULL), 0);
        cr_assert_eq(T.cli_ok, 10, "own %d: %d ok, last %s (%s)", own, T.cli_ok,
                     weft_err_name(T.cli_last), weft_tls_errmsg(NULL));
        cr_assert_eq(T.echoed, 10);
        cr_assert_eq(T.exits, 1);
        cr_assert_eq(count_fds(), fds);
        weft_tls_ctx_free(sctx);
        weft_tls_ctx_free(T.cctx);
    }
}

/* ---- silent clients (RELIABILITY #57) ------------------------------------------------------ */

#define SILENT 200
#define NORMAL 50
#define HANDSHAKE_MS 3000

static void silent_client(void *arg)
{
    (void)arg;
    weft_sock *s;
    int64_t t0 = mono_ms(); /* before: the server may accept before connect returns here */
    if (weft_tcp_connect(&s, "127.0.0.1", T.port, 5000) < 0) {
        T.silent_bad++;
        return;
    }
    char b[64];
    ssize_t n = weft_recv(s, b, sizeof b, HANDSHAKE_MS + 20000); /* says nothing, waits */
    int64_t ms = mono_ms() - t0;
    weft_close(s);
    if (n != 0) {
        T.silent_bad++, T.silent_last = (int)n;
        return;
    }
    T.silent_eof++;
    if (!T.silent_min_ms || ms < T.silent_min_ms)
        T.silent_min_ms = ms;
    if (ms > T.silent_max_ms)
        T.silent_max_ms = ms;
}

static int silent_main(void *arg)
{
    (void)arg;
    weft_server_opts o = {.host = "127.0.0.1",
                          .on_conn = echo_handler,
                          .arg = &T,
                          .on_exit = on_exit_cb,
                          .cert_file = cert("srv.pem"),
                          .key_file = cert("srv.key"),
                          .handshake_timeout_ms = HANDSHAKE_MS};
    if (start(&o) < 0)
        return 1;
    for (int i = 0; i < SILENT; i++)
        weft_go(silent_client, NULL);
    WAIT_UNTIL(weft_server_conn_count(T.srv) == SILENT, 10000);
    T.peak = weft_server_conn_count(T.srv);
    for (int i = 0; i < NORMAL; i++)
        weft_go(tls_client, NULL);
    WAIT_UNTIL(T.cli_ok + T.cli_fail == NORMAL, 30000);
    WAIT_UNTIL(T.silent_eof + T.silent_bad == SILENT, HANDSHAKE_MS + 30000);
    weft_server_drain(T.srv, 5000);
    weft_server_free(T.srv);
    return 0;
}

Test(server_tls, silent_clients_do_not_hold_up_others, .timeout = 180)
{
    long lim = raise_nofile();
    if (lim < 2 * (SILENT + NORMAL) + 100)
        cr_skip("RLIMIT_NOFILE is %ld", lim);
    memset(&T, 0, sizeof T);
    cr_assert_eq(ctx_client(&T.cctx, NULL), 0);
    int fds = count_fds();
    cr_assert_eq(weft_main(silent_main, NULL, NULL), 0);
    cr_log_info("normal clients: slowest %lld ms; silent ones dropped after %lld to %lld ms",
                (long long)T.normal_max_ms, (long long)T.silent_min_ms, (long long)T.silent_max_ms);
    cr_assert_eq(T.peak, SILENT, "every silent one was accepted: %zu", T.peak);
    cr_assert_eq(T.cli_ok, NORMAL, "%d normal clients served, last failure %s", T.cli_ok,
                 weft_err_name(T.cli_last));
    cr_assert_lt(T.normal_max_ms, HANDSHAKE_MS,
                 "a normal client waited %lld ms: held up by the silent ones",
                 (long long)T.normal_max_ms);
    cr_assert_eq(T.silent_eof, SILENT, "%d dropped with a close, %d otherwise (%s)", T.silent_eof,
                 T.silent_bad, weft_err_name(T.silent_last));
    cr_assert_geq(T.silent_min_ms, HANDSHAKE_MS - 1, "dropped early: %lld ms",
                  (long long)T.silent_min_ms);
    cr_assert_leq(T.silent_max_ms, HANDSHAKE_MS + LATE_MS, "dropped late: %lld ms",
                  (long long)T.silent_max_ms);
    cr_assert_eq(T.conns, NORMAL, "on_conn never saw a silent one");
    cr_assert_eq(T.exits, 1);
    cr_assert_eq(count_fds(), fds);
    weft_tls_ctx_free(T.cctx);
}

/* ---- failed handshakes, drain during handshakes, no limit ------------------------------------ */

static void garbage_client(void *arg)
{
    (void)arg;
    weft_sock *s;
    if (weft_tcp_connect(&s, "127.0.0.1", T.port, 5000) < 0)
        return;
    const char req[] = "GET / HTTP/1.0\r\n\r\n";
    weft_send(s, req, sizeof req - 1, 5000);
    char b[256];
    ssize_t n;
    while ((n = weft_recv(s, b, sizeof b, 5000)) > 0)
        ;
    if (n == 0 || n == -ECONNRESET)
        T.silent_eof++;
    weft_close(s);
}

static int garbage_main(void *arg)
{
    (void)arg;
    weft_server_opts o = {.host = "127.0.0.1",
                          .on_conn = echo_handler,
                          .arg = &T,
                          .on_exit = on_exit_cb,
                          .cert_file = cert("srv.pem"),
                          .key_file = cert("srv.key")};
    if (start(&o) < 0)
        return 1;
    for (int i = 0; i < 20; i++)
        weft_go(garbage_client, NULL);
    WAIT_UNTIL(T.silent_eof == 20, 20000);
    weft_go(tls_client, NULL);
    WAIT_UNTIL(T.cli_ok + T.cli_fail == 1, 20000);
    weft_server_stop(T.srv);
    WAIT_UNTIL(T.exits, 5000);
    weft_server_free(T.srv);
    return 0;
}

Test(server_tls, failed_handshakes_never_reach_on_conn, .timeout = 60)
{
    memset(&T, 0, sizeof T);
    cr_assert_eq(ctx_client(&T.cctx, NULL), 0);
    int fds = count_fds();
    cr_assert_eq(weft_main(garbage_main, NULL, NULL), 0);
    cr_assert_eq(T.silent_eof, 20, "each plaintext client was closed");
    cr_assert_eq(T.cli_ok, 1, "the server still serves: %s", weft_err_name(T.cli_last));
    cr_assert_eq(T.conns, 1);
    cr_assert_eq(T.exits, 1);
    cr_assert_eq(count_fds(), fds);
    weft_tls_ctx_free(T.cctx);
}

static int drain_hs_main(void *arg)
{
    int64_t hs = *(int64_t *)arg;
    weft_server_opts o = {.host = "127.0.0.1",
                          .on_conn = echo_handler,
                          .arg = &T,
                          .on_exit = on_exit_cb,
                          .cert_file = cert("srv.pem"),
                          .key_file = cert("srv.key"),
                          .handshake_timeout_ms = hs};
    if (start(&o) < 0)
        return 1;
    for (int i = 0; i < 5; i++)
        weft_go(silent_client, NULL);
    WAIT_UNTIL(weft_server_conn_count(T.srv) == 5, 10000);
    weft_sleep(500); /* with no limit, none is dropped meanwhile */
    T.peak = weft_server_conn_count(T.srv);
    T.drain_rc = weft_server_drain(T.srv, 100);
    WAIT_UNTIL(T.silent_eof + T.silent_bad == 5, 10000);
    weft_server_free(T.srv);
    return 0;
}

Test(server_tls, drain_cancels_handshakes, .timeout = 60)
{
    int64_t hs = -1; /* no limit of its own */
    memset(&T, 0, sizeof T);
    int fds = count_fds();
    cr_assert_eq(weft_main(drain_hs_main, &hs, NULL), 0);
    cr_assert_eq(T.peak, 5, "none dropped without a limit");
    cr_assert_eq(T.drain_rc, 5);
    cr_assert_eq(T.silent_eof, 5);
    cr_assert_eq(T.conns, 0);
    cr_assert_eq(T.exits, 1);
    cr_assert_eq(count_fds(), fds);
}

/* ---- options -----------------------------------------------------------------------------------
 */

static int opt_rc[8];

static void nop(weft_sock *c, void *arg)
{
    (void)c;
    (void)arg;
}

static int opts_main(void *arg)
{
    (void)arg;
    weft_tls_ctx *client, *server;
    if (ctx_client(&client, NULL) < 0 || ctx_server(&server, "srv", NULL) < 0)
        return 1;
    weft_server *s;
    weft_server_opts o = {.host = "127.0.0.1", .on_conn = nop};
    o.cert_file = "/nonexistent/cert.pem";
    opt_rc[0] = weft_server_start(&s, &o);
    o = (weft_server_opts){.host = "127.0.0.1", .on_conn = nop, .tls = client};
    opt_rc[1] = weft_server_start(&s, &o);
    o = (weft_server_opts){
        .host = "127.0.0.1", .on_conn = nop, .tls = server, .cert_file = cert("srv.pem")};
    opt_rc[2] = weft_server_start(&s, &o);
    o = (weft_server_opts){.host = "127.0.0.1",
                           .on_conn = nop,
                           .cert_file = cert("srv.pem"),
                           .key_file = cert("other.key")};
    opt_rc[3] = weft_server_start(&s, &o); /* key and certificate do not match */
    o = (weft_server_opts){.host = "127.0.0.1", .on_conn = nop, .cert_file = cert("both.pem")};
    opt_rc[4] = weft_server_start(&s, &o); /* the key in the certificate's file */
    if (opt_rc[4] == 0)
        weft_server_free(s);
    weft_tls_ctx_free(client);
    weft_tls_ctx_free(server);
    return 0;
}

Test(server_tls, bad_tls_options, .timeout = 30)
{
    int fds = count_fds();
    cr_assert_eq(weft_main(opts_main, NULL, NULL), 0);
    cr_assert_eq(opt_rc[0], WEFT_ETLS_CERT, "%s", weft_err_name(opt_rc[0]));
    cr_assert_eq(opt_rc[1], -EINVAL, "a client context");
    cr_assert_eq(opt_rc[2], -EINVAL, "both a context and files");
    cr_assert_eq(opt_rc[3], WEFT_ETLS_CERT, "%s", weft_err_name(opt_rc[3]));
    cr_assert_eq(opt_rc[4], 0, "%s", weft_err_name(opt_rc[4]));
    cr_assert_eq(count_fds(), fds);
}

/* ---- closing a TLS connection later -------------------------------------------------------------
 */

static int64_t later_seen_ms;
static ssize_t later_seen;
static int later_rc;

static void later_handler(weft_sock *c, void *arg)
{
    (void)arg;
    char b[4];
    if (weft_recvn(c, b, 4, 5000) == 4 && weft_send(c, b, 4, 5000) == 4)
        later_rc = weft_close_after(c, 300);
}

static int later_main(void *arg)
{
    (void)arg;
    weft_server_opts o = {.host = "127.0.0.1",
                          .on_conn = later_handler,
                          .arg = &T,
                          .on_exit = on_exit_cb,
                          .cert_file = cert("srv.pem"),
                          .key_file = cert("srv.key")};
    if (start(&o) < 0)
        return 1;
    weft_sock *s;
    char b[4];
    if (weft_tls_connect(&s, "localhost", T.port, T.cctx, 10000) < 0)
        return 2;
    weft_send(s, "ping", 4, 5000);
    int64_t t0 = mono_ms();
    if (weft_recvn(s, b, 4, 5000) != 4)
        return 3;
    /* The server, and the context it made, go before the close's time:
     * the pending close needs neither (ASan). */
    weft_server_free(T.srv);
    later_seen = weft_recv(s, b, sizeof b, 5000);
    later_seen_ms = mono_ms() - t0;
    weft_close(s);
    return 0;
}

Test(server_tls, close_after_sends_close_notify_at_the_time, .timeout = 60)
{
    memset(&T, 0, sizeof T);
    cr_assert_eq(ctx_client(&T.cctx, NULL), 0);
    int fds = count_fds();
    later_rc = -1;
    cr_assert_eq(weft_main(later_main, NULL, NULL), 0);
    cr_assert_eq(later_rc, 0);
    cr_assert_eq(later_seen, 0, "close_notify: %s", weft_err_name((int)later_seen));
    cr_assert_geq(later_seen_ms, 300 - 1, "%lld ms", (long long)later_seen_ms);
    cr_assert_leq(later_seen_ms, 300 + LATE_MS, "%lld ms", (long long)later_seen_ms);
    cr_assert_eq(T.exits, 1);
    cr_assert_eq(count_fds(), fds);
    weft_tls_ctx_free(T.cctx);
}

/* ---- allocation failures in start (the server's own context) ------------------------------------
 */

static int sweep_nth, sweep_rc, sweep_echo;
static unsigned long sweep_fired;

static void sweep_client(void *arg)
{
    sweep_echo = tls_echo_once((int)(intptr_t)arg);
}

static int sweep_main(void *arg)
{
    (void)arg;
    weft_server *s;
    weft_server_opts o = {.host = "127.0.0.1",
                          .on_conn = echo_handler,
                          .arg = &T,
                          .on_exit = on_exit_cb,
                          .cert_file = cert("srv.pem"),
                          .key_file = cert("srv.key")};
    weft_fault_clear();
    weft_fault_set(WEFT_FAULT_MALLOC, (unsigned)sweep_nth, ENOMEM);
    sweep_rc = weft_server_start(&s, &o);
    sweep_fired = weft_fault_fired();
    weft_fault_clear();
    if (sweep_rc < 0)
        return 0;
    weft_join(weft_go(sweep_client, (void *)(intptr_t)weft_server_port(s)), 20000);
    weft_server_drain(s, 2000);
    weft_server_free(s);
    return 0;
}

Test(server_tls, start_allocation_sweep, .timeout = 120)
{
    memset(&T, 0, sizeof T);
    cr_assert_eq(ctx_client(&T.cctx, NULL), 0);
    int fds = count_fds();
    int failures = 0;
    for (sweep_nth = 1; sweep_nth < 60; sweep_nth++) {
        T.exits = 0;
        sweep_echo = -1;
        cr_assert_eq(weft_main(sweep_main, NULL, NULL), 0);
        cr_assert_eq(count_fds(), fds, "nth %d", sweep_nth);
        if (sweep_rc < 0) {
            cr_assert_eq(sweep_rc, -ENOMEM, "nth %d: %s", sweep_nth, weft_err_name(sweep_rc));
            failures++;
            continue;
        }
        cr_assert_eq(sweep_echo, 0, "nth %d: %s", sweep_nth, weft_err_name(sweep_echo));
        cr_assert_eq(T.exits, 1);
        if (!sweep_fired)
            break;
    }
    cr_assert_lt(sweep_nth, 60);
    cr_assert_geq(failures, 4, "%d", failures);
    weft_tls_ctx_free(T.cctx);
}
