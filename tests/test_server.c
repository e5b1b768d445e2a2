/*
 * test_server.c - weft_server: listening (port 0, names, IPv6, unix paths
 * and names), bad options, stop and drain with connections alive, the
 * connection limit, the close after on_conn, and every order of the
 * lifetime events: free while connections are alive, stop and drain twice,
 * drain from inside a handler, a handler that closes its socket, the loop
 * freed with connections alive, on_exit exactly once.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* Process CPU time in ms (user + system). */
static int64_t cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

/* ---- shared state and handlers --------------------------------------------------- */

typedef struct st {
    weft_server *srv;
    int port;
    int exits;            /* on_exit runs */
    size_t count_at_exit; /* conn_count when on_exit ran */
    int ended_at_exit;    /* handlers that had ended when on_exit ran */
    int started, ended;   /* handlers */
    int active, active_max;
    int echoed;    /* server side: connections that echoed to the end */
    int cancelled; /* handlers whose call returned -ECANCELED */
    int other_err, last_err;
    int cli_ok, cli_fail, cli_last;
    int refused;      /* connects refused after a stop */
    int free_in_exit; /* on_exit frees the server */
    int64_t hold_ms;  /* handlers sleep this long before echoing */
    int drain_rc;
    int64_t drain_ms;
} st;

static st S;

static void setup(void)
{
    weft_fault_clear();
}

/* No pointer to a server stays reachable after a test, so LeakSanitizer
 * sees one that was never freed. */
static void teardown(void)
{
    memset(&S, 0, sizeof S);
}

TestSuite(server, .init = setup, .fini = teardown);

static void on_exit_cb(void *arg)
{
    st *t = arg;
    t->exits++;
    t->count_at_exit = weft_server_conn_count(t->srv);
    t->ended_at_exit = t->ended;
    if (t->free_in_exit)
        weft_server_free(t->srv);
}

/* Echoes until the peer closes (or an error), then returns; closes. */
static void echo_handler(weft_sock *c, void *arg)
{
    st *t = arg;
    t->started++;
    if (++t->active > t->active_max)
        t->active_max = t->active;
    if (t->hold_ms)
        weft_sleep(t->hold_ms);
    char buf[256];
    ssize_t n;
    while ((n = weft_recv(c, buf, sizeof buf, 10000)) > 0)
        if (weft_send(c, buf, (size_t)n, 10000) != n)
            break;
    if (n == 0)
        t->echoed++;
    else if (n == -ECANCELED)
        t->cancelled++;
    else
        t->other_err++, t->last_err = (int)n;
    t->active--;
    t->ended++;
    weft_close(c);
}

static int start_on(st *t, const char *host, void (*h)(weft_sock *, void *), int max_conns)
{
    weft_server_opts o = {
        .host = host, .on_conn = h, .arg = t, .on_exit = on_exit_cb, .max_conns = max_conns};
    int rc = weft_server_start(&t->srv, &o);
    if (rc == 0)
        t->port = weft_server_port(t->srv);
    return rc;
}

/* One round trip of msg on a new connection, then close. */
static int echo_once(int port, const char *msg)
{
    weft_sock *s;
    char back[64];
    size_t n = strlen(msg);
    int rc = weft_tcp_connect(&s, "127.0.0.1", port, 5000);
    if (rc < 0)
        return rc;
    ssize_t r = weft_send(s, msg, n, 5000);
    if (r == (ssize_t)n)
        r = weft_recvn(s, back, n, 10000);
    weft_close(s);
    if (r != (ssize_t)n)
        return r < 0 ? (int)r : -EPROTO;
    return memcmp(back, msg, n) == 0 ? 0 : -EPROTO;
}

static void client_once(void *arg)
{
    st *t = arg;
    int rc = echo_once(t->port, "hello, server");
    if (rc == 0)
        t->cli_ok++;
    else
        t->cli_fail++, t->cli_last = rc;
}

/* Waits (in a coroutine) until cond holds or ms pass. */
#define WAIT_UNTIL(cond, ms)                                                                       \
    do {                                                                                           \
        for (int w_ = 0; !(cond) && w_ < (ms); w_ += 5)                                            \
            weft_sleep(5);                                                                         \
    } while (0)

/* ---- listening ------------------------------------------------------------------------ */

static int basic_main(void *arg)
{
    (void)arg;
    int rc = start_on(&S, "127.0.0.1", echo_handler, 0);
    if (rc < 0)
        return rc;
    for (int i = 0; i < 20; i++)
        weft_go(client_once, &S);
    WAIT_UNTIL(S.cli_ok + S.cli_fail == 20, 20000);
    WAIT_UNTIL(weft_server_conn_count(S.srv) == 0, 5000);
    weft_server_stop(S.srv);
    WAIT_UNTIL(S.exits, 5000);
    return 0;
}

Test(server, echo_on_port_0, .timeout = 60)
{
    memset(&S, 0, sizeof S);
    int fds = count_fds();
    cr_assert_eq(weft_main(basic_main, NULL, NULL), 0);
    cr_assert_gt(S.port, 0);
    cr_assert_eq(S.cli_ok, 20, "clients: %d ok, %d failed (%s)", S.cli_ok, S.cli_fail,
                 weft_err_name(S.cli_last));
    cr_assert_eq(S.echoed, 20);
    cr_assert_eq(S.exits, 1);
    cr_assert_eq(S.count_at_exit, 0);
    cr_assert_eq(weft_server_port(S.srv), S.port, "the port is kept after the stop");
    cr_assert_eq(weft_server_conn_count(S.srv), 0);
    weft_server_free(S.srv);
    cr_assert_eq(count_fds(), fds);
}

typedef struct name_case {
    const char *host;
    const char *connect_to[2];
} name_case;

static name_case NC;
static int name_rc, name_ok[2];

static int name_main(void *arg)
{
    (void)arg;
    name_rc = start_on(&S, NC.host, echo_handler, 0);
    if (name_rc < 0)
        return 0;
    for (int i = 0; i < 2 && NC.connect_to[i]; i++) {
        weft_sock *s;
        char back[4];
        if (weft_tcp_connect(&s, NC.connect_to[i], S.port, 5000) == 0) {
            if (weft_send(s, "abc", 3, 5000) == 3 && weft_recvn(s, back, 3, 5000) == 3)
                name_ok[i] = memcmp(back, "abc", 3) == 0;
            weft_close(s);
        }
    }
    weft_server_free(S.srv);
    return 0;
}

static void run_name_case(const char *host, const char *a, const char *b)
{
    memset(&S, 0, sizeof S);
    NC = (name_case){host, {a, b}};
    name_ok[0] = name_ok[1] = 0;
    cr_assert_eq(weft_main(name_main, NULL, NULL), 0);
    cr_assert_eq(name_rc, 0, "%s: %s", host ? host : "NULL", weft_err_name(name_rc));
    cr_assert_gt(S.port, 0);
    cr_assert(name_ok[0], "%s: no echo through %s", host ? host : "NULL", a);
    if (b)
        cr_assert(name_ok[1], "%s: no echo through %s", host ? host : "NULL", b);
}

static bool have_ipv6(void)
{
    weft_sock *l;
    if (weft_tcp_listen(&l, "::1", 0, 1, 0) < 0)
        return false;
    weft_close(l);
    return true;
}

Test(server, listens_on_a_name, .timeout = 60)
{
    run_name_case("localhost", "127.0.0.1", NULL);
}

Test(server, listens_on_every_interface_dual_stack, .timeout = 60)
{
    if (!have_ipv6())
        cr_skip("no IPv6 here");
    run_name_case(NULL, "127.0.0.1", "::1");
    run_name_case("*", "127.0.0.1", "::1");
    run_name_case("::1", "::1", NULL);
}

static char unix_path[108];
static int unix_rc, unix_echo, unix_port;
static bool unix_file_after_start, unix_file_after_stop;

static int unix_main(void *arg)
{
    const char *host = arg;
    unix_rc = start_on(&S, host, echo_handler, 0);
    if (unix_rc < 0)
        return 0;
    unix_port = weft_server_port(S.srv);
    struct stat sb;
    unix_file_after_start = stat(unix_path, &sb) == 0;
    weft_sock *s;
    char back[3];
    if (weft_unix_connect(&s, host + strlen("unix:"), 5000) == 0) {
        if (weft_send(s, "xyz", 3, 5000) == 3 && weft_recvn(s, back, 3, 5000) == 3)
            unix_echo = memcmp(back, "xyz", 3) == 0;
        weft_close(s);
    }
    weft_server_stop(S.srv);
    unix_file_after_stop = stat(unix_path, &sb) == 0;
    WAIT_UNTIL(S.exits, 5000);
    weft_server_free(S.srv);
    return 0;
}

Test(server, listens_on_a_unix_path, .timeout = 60)
{
    memset(&S, 0, sizeof S);
    snprintf(unix_path, sizeof unix_path, "/tmp/weft-srv-%d.sock", (int)getpid());
    unlink(unix_path);
    char host[128];
    snprintf(host, sizeof host, "unix:%s", unix_path);
    int fds = count_fds();
    cr_assert_eq(weft_main(unix_main, host, NULL), 0);
    cr_assert_eq(unix_rc, 0, "%s", weft_err_name(unix_rc));
    cr_assert_eq(unix_port, 0, "a unix server has no port");
    cr_assert(unix_file_after_start);
    cr_assert(unix_echo);
    cr_assert_not(unix_file_after_stop, "stop removes the socket file it made");
    cr_assert_eq(S.exits, 1);
    cr_assert_eq(count_fds(), fds);
}

Test(server, listens_on_an_abstract_unix_name, .timeout = 60)
{
    memset(&S, 0, sizeof S);
    unix_path[0] = '\0';
    char host[128];
    snprintf(host, sizeof host, "unix:@weft-srv-%d", (int)getpid());
    cr_assert_eq(weft_main(unix_main, host, NULL), 0);
    cr_assert_eq(unix_rc, 0, "%s", weft_err_name(unix_rc));
    cr_assert(unix_echo);
    cr_assert_eq(S.exits, 1);
}

/* A file at the path that is not the server's own is left alone. */
static int unix_replaced_main(void *arg)
{
    const char *host = arg;
    if ((unix_rc = start_on(&S, host, echo_handler, 0)) < 0)
        return 0;
    unlink(unix_path);
    FILE *f = fopen(unix_path, "w"); /* someone else's file now */
    if (f)
        fclose(f);
    weft_server_stop(S.srv);
    struct stat sb;
    unix_file_after_stop = stat(unix_path, &sb) == 0;
    weft_server_free(S.srv);
    return 0;
}

Test(server, stop_leaves_a_file_it_did_not_make, .timeout = 60)
{
    memset(&S, 0, sizeof S);
    snprintf(unix_path, sizeof unix_path, "/tmp/weft-srv2-%d.sock", (int)getpid());
    unlink(unix_path);
    char host[128];
    snprintf(host, sizeof host, "unix:%s", unix_path);
    cr_assert_eq(weft_main(unix_replaced_main, host, NULL), 0);
    cr_assert_eq(unix_rc, 0);
    cr_assert(unix_file_after_stop);
    unlink(unix_path);
}

/* ---- bad input ------------------------------------------------------------------------ */

static void nop_handler(weft_sock *c, void *arg)
{
    (void)c;
    (void)arg;
}

static int bad_rc[32];
static int bad_n;

static int try_opts(weft_server_opts o)
{
    weft_server *s = NULL;
    int rc = weft_server_start(&s, &o);
    if (rc == 0)
        weft_server_free(s);
    return rc;
}

static int bad_main(void *arg)
{
    (void)arg;
    weft_server_opts ok = {.host = "127.0.0.1", .on_conn = nop_handler};
    weft_server *s = NULL;
    int i = 0;
    bad_rc[i++] = weft_server_start(NULL, &ok);
    bad_rc[i++] = weft_server_start(&s, NULL);
    weft_server_opts o = ok;
    o.on_conn = NULL;
    bad_rc[i++] = try_opts(o);
    o = ok, o.max_conns = -1;
    bad_rc[i++] = try_opts(o);
    o = ok, o.stack_size = ((size_t)1 << 30) + 1;
    bad_rc[i++] = try_opts(o);
    o = ok, o.handshake_timeout_ms = -2;
    bad_rc[i++] = try_opts(o);
    o = ok, o.key_file = "/nonexistent.key";
    bad_rc[i++] = try_opts(o);
    o = ok, o.port = 65536;
    bad_rc[i++] = try_opts(o);
    o = ok, o.port = -1;
    bad_rc[i++] = try_opts(o);
    o = ok, o.host = "";
    bad_rc[i++] = try_opts(o);
    o = ok, o.flags = 64;
    bad_rc[i++] = try_opts(o);
    o = ok, o.host = "unix:/tmp/weft-never.sock", o.flags = WEFT_REUSEPORT;
    bad_rc[i++] = try_opts(o);
    o = ok, o.host = "unix:";
    bad_rc[i++] = try_opts(o); /* 12: weft_unix_listen's -EINVAL */
    o = ok, o.host = "unix:/nonexistent-dir/x.sock";
    bad_rc[i++] = try_opts(o); /* 13: -ENOENT */
    char longp[200];
    memset(longp, 'a', sizeof longp);
    memcpy(longp, "unix:/tmp/", 10);
    longp[sizeof longp - 1] = '\0';
    o = ok, o.host = longp;
    bad_rc[i++] = try_opts(o); /* 14: -ENAMETOOLONG */
    /* The port is taken. */
    weft_server *first;
    weft_server_opts fo = {.host = "127.0.0.1", .on_conn = echo_handler, .arg = &S};
    int rc = weft_server_start(&first, &fo);
    if (rc == 0) {
        o = ok, o.port = weft_server_port(first);
        bad_rc[i++] = try_opts(o);                             /* 15 */
        bad_rc[i++] = echo_once(weft_server_port(first), "x"); /* 16: the first still serves */
        weft_server_free(first);
    } else {
        bad_rc[i++] = rc;
        bad_rc[i++] = rc;
    }
    bad_n = i;
    return 0;
}

Test(server, bad_options, .timeout = 60)
{
    int fds = count_fds();
    weft_server *s = (weft_server *)0x1;
    weft_server_opts ok = {.host = "127.0.0.1", .on_conn = nop_handler};
    cr_assert_eq(weft_server_start(&s, &ok), -EPERM, "no loop on this thread");
    cr_assert_eq(s, (weft_server *)0x1, "*out untouched");
    cr_assert_eq(weft_main(bad_main, NULL, NULL), 0);
    for (int i = 0; i <= 11; i++)
        cr_assert_eq(bad_rc[i], -EINVAL, "case %d: %s", i, weft_err_name(bad_rc[i]));
    cr_assert_eq(bad_rc[12], -EINVAL, "%s", weft_err_name(bad_rc[12]));
    cr_assert_eq(bad_rc[13], -ENOENT, "%s", weft_err_name(bad_rc[13]));
    cr_assert_eq(bad_rc[14], -ENAMETOOLONG, "%s", weft_err_name(bad_rc[14]));
    cr_assert_eq(bad_rc[15], -EADDRINUSE, "%s", weft_err_name(bad_rc[15]));
    cr_assert_eq(bad_rc[16], 0, "the first server still serves: %s", weft_err_name(bad_rc[16]));
    cr_assert_eq(count_fds(), fds);
    /* NULL servers. */
    cr_assert_eq(weft_server_port(NULL), -EINVAL);
    cr_assert_eq(weft_server_conn_count(NULL), 0);
    cr_assert_eq(weft_server_drain(NULL, 0), -EINVAL);
    weft_server_stop(NULL);
    weft_server_free(NULL);
}

/* ---- stop with connections alive (RELIABILITY #55) -------------------------------------- */

#define STOP_CONNS 10
#define STOP_ROUNDS 50

static int stop_rounds_done[STOP_CONNS];
static int64_t stop_at;

static void stop_client(void *arg)
{
    int idx = (int)(intptr_t)arg;
    weft_sock *s;
    if (weft_tcp_connect(&s, "127.0.0.1", S.port, 5000) < 0) {
        S.cli_fail++;
        return;
    }
    char msg[16], back[16];
    snprintf(msg, sizeof msg, "c%02d-%04d", idx, 0);
    for (int r = 0; r < STOP_ROUNDS; r++) {
        snprintf(msg, sizeof msg, "c%02d-%04d", idx, r);
        size_t n = strlen(msg);
        if (weft_send(s, msg, n, 5000) != (ssize_t)n ||
            weft_recvn(s, back, n, 5000) != (ssize_t)n || memcmp(msg, back, n) != 0)
            break;
        stop_rounds_done[idx]++;
        weft_sleep(10); /* keeps them echoing past the stop */
    }
    weft_close(s);
    if (stop_rounds_done[idx] == STOP_ROUNDS)
        S.cli_ok++;
    else
        S.cli_fail++;
}

static int stop_main(void *arg)
{
    (void)arg;
    if (start_on(&S, "127.0.0.1", echo_handler, 0) < 0)
        return 1;
    for (int i = 0; i < STOP_CONNS; i++)
        weft_go(stop_client, (void *)(intptr_t)i);
    WAIT_UNTIL(weft_server_conn_count(S.srv) == STOP_CONNS, 10000);
    weft_sleep(50);
    weft_server_stop(S.srv);
    stop_at = weft_now();
    weft_server_stop(S.srv); /* twice: nothing more */
    weft_sock *s;
    if (weft_tcp_connect(&s, "127.0.0.1", S.port, 2000) == -ECONNREFUSED)
        S.refused++;
    else
        weft_close(s);
    WAIT_UNTIL(S.cli_ok + S.cli_fail == STOP_CONNS, 30000);
    WAIT_UNTIL(S.exits, 5000);
    return 0;
}

Test(server, stop_keeps_connections, .timeout = 120)
{
    memset(&S, 0, sizeof S);
    memset(stop_rounds_done, 0, sizeof stop_rounds_done);
    int fds = count_fds();
    cr_assert_eq(weft_main(stop_main, NULL, NULL), 0);
    cr_assert_eq(S.refused, 1, "a connect after the stop is refused");
    cr_assert_eq(S.cli_ok, STOP_CONNS, "%d clients echoed to the end", S.cli_ok);
    cr_assert_eq(S.echoed, STOP_CONNS);
    cr_assert_eq(S.exits, 1);
    cr_assert_eq(S.count_at_exit, 0);
    cr_assert_eq(S.ended_at_exit, STOP_CONNS, "on_exit after the last connection");
    cr_assert_eq(weft_server_conn_count(S.srv), 0);
    weft_server_free(S.srv);
    cr_assert_eq(count_fds(), fds);
}

/* ---- drain with handlers that never end (RELIABILITY #54) -------------------------------- */

#define DRAIN_CONNS 100
#define DRAIN_HANG 20
#define DRAIN_MS 1000

/* The client's first byte says which: 'n' echoes until EOF, 'h' waits forever. */
static void kind_handler(weft_sock *c, void *arg)
{
    st *t = arg;
    t->started++;
    t->active++;
    char k;
    ssize_t n = weft_recv(c, &k, 1, 10000);
    if (n == 1 && k == 'h') {
        char b;
        n = weft_recv(c, &b, 1, -1);
    } else if (n == 1) {
        char buf[64];
        while ((n = weft_recv(c, buf, sizeof buf, 10000)) > 0)
            if (weft_send(c, buf, (size_t)n, 10000) != n)
                break;
        if (n == 0)
            t->echoed++;
    }
    if (n == -ECANCELED)
        t->cancelled++;
    else if (n < 0)
        t->other_err++, t->last_err = (int)n;
    t->active--;
    t->ended++;
    /* No close: the server does it. */
}

static int drain_go; /* the normal clients start their last exchange */

static void drain_client(void *arg)
{
    int idx = (int)(intptr_t)arg;
    bool hang = idx < DRAIN_HANG;
    weft_sock *s;
    if (weft_tcp_connect(&s, "127.0.0.1", S.port, 5000) < 0) {
        S.cli_fail++;
        return;
    }
    char k = hang ? 'h' : 'n';
    if (weft_send(s, &k, 1, 5000) != 1) {
        S.cli_fail++;
        weft_close(s);
        return;
    }
    char b[8];
    if (hang) {
        /* The server closes it once the handler is cancelled. */
        ssize_t n = weft_recv(s, b, sizeof b, 20000);
        if (n == 0)
            S.cli_ok++;
        else
            S.cli_fail++, S.cli_last = (int)n;
        weft_close(s);
        return;
    }
    while (!drain_go)
        weft_sleep(5);
    weft_sleep(100 + idx); /* during the drain, well before its end */
    bool ok = weft_send(s, "abcd", 4, 5000) == 4 && weft_recvn(s, b, 4, 5000) == 4;
    weft_close(s);
    if (ok)
        S.cli_ok++;
    else
        S.cli_fail++;
}

static void late_connect(void *arg)
{
    (void)arg;
    weft_sock *s;
    int rc = weft_tcp_connect(&s, "127.0.0.1", S.port, 2000);
    if (rc == -ECONNREFUSED)
        S.refused++;
    else if (rc == 0)
        weft_close(s);
}

static int drain_main(void *arg)
{
    (void)arg;
    if (start_on(&S, "127.0.0.1", kind_handler, 0) < 0)
        return 1;
    for (int i = 0; i < DRAIN_CONNS; i++)
        weft_go(drain_client, (void *)(intptr_t)i);
    WAIT_UNTIL(weft_server_conn_count(S.srv) == DRAIN_CONNS && S.started == DRAIN_CONNS, 20000);
    weft_sleep(50); /* every first byte is in */
    drain_go = 1;
    weft_go(late_connect, NULL); /* runs once the drain waits: the listener is gone */
    int64_t t0 = weft_now();
    S.drain_rc = weft_server_drain(S.srv, DRAIN_MS);
    S.drain_ms = weft_now() - t0;
    /* The cancelled returned on their error: gone by now. */
    S.count_at_exit = S.exits ? S.count_at_exit : 999;
    WAIT_UNTIL(S.cli_ok + S.cli_fail == DRAIN_CONNS, 20000);
    return 0;
}

Test(server, drain_cancels_handlers_that_never_end, .timeout = 120)
{
    memset(&S, 0, sizeof S);
    drain_go = 0;
    int fds = count_fds();
    cr_assert_eq(weft_main(drain_main, NULL, NULL), 0);
    cr_assert_eq(S.refused, 1, "a connect during the drain is refused");
    cr_assert_eq(S.drain_rc, DRAIN_HANG, "drain cancelled %d", S.drain_rc);
    cr_assert_geq(S.drain_ms, DRAIN_MS - 1, "never early: %lld ms", (long long)S.drain_ms);
    cr_assert_leq(S.drain_ms, DRAIN_MS + LATE_MS, "%lld ms", (long long)S.drain_ms);
    cr_assert_eq(S.echoed, DRAIN_CONNS - DRAIN_HANG, "the others finish normally: %d", S.echoed);
    cr_assert_eq(S.cancelled, DRAIN_HANG, "their calls return -ECANCELED: %d", S.cancelled);
    cr_assert_eq(S.other_err, 0, "%s", weft_err_name(S.last_err));
    cr_assert_eq(S.cli_ok, DRAIN_CONNS, "%d clients ok, %d failed", S.cli_ok, S.cli_fail);
    cr_assert_eq(S.exits, 1);
    cr_assert_eq(S.count_at_exit, 0, "on_exit ran before drain returned, with none left");
    cr_assert_eq(S.ended_at_exit, DRAIN_CONNS, "on_exit after the last");
    weft_server_free(S.srv);
    cr_assert_eq(count_fds(), fds);
}

/* Every connection ends in time: drain returns 0 as soon as the last has. */
static int drain_quick_main(void *arg)
{
    (void)arg;
    S.hold_ms = 100;
    if (start_on(&S, "127.0.0.1", echo_handler, 0) < 0)
        return 1;
    for (int i = 0; i < 10; i++)
        weft_go(client_once, &S);
    WAIT_UNTIL(S.started == 10, 10000);
    int64_t t0 = weft_now();
    S.drain_rc = weft_server_drain(S.srv, 10000);
    S.drain_ms = weft_now() - t0;
    S.count_at_exit = S.exits ? S.count_at_exit : 999;
    /* A second drain, and a stop after it: nothing more. */
    int again = weft_server_drain(S.srv, 1000);
    weft_server_stop(S.srv);
    return again == 0 ? 0 : 1;
}

Test(server, drain_returns_when_all_have_ended, .timeout = 60)
{
    memset(&S, 0, sizeof S);
    cr_assert_eq(weft_main(drain_quick_main, NULL, NULL), 0);
    cr_assert_eq(S.drain_rc, 0);
    cr_assert_lt(S.drain_ms, 5000, "%lld ms", (long long)S.drain_ms);
    cr_assert_eq(S.cli_ok, 10);
    cr_assert_eq(S.exits, 1);
    cr_assert_eq(S.count_at_exit, 0);
    weft_server_free(S.srv);
}

/* Timeout 0 cancels at once; the caller's own deadline counts as the timeout. */
static void hang_handler(weft_sock *c, void *arg)
{
    st *t = arg;
    char b;
    t->started++;
    ssize_t n = weft_recv(c, &b, 1, -1);
    if (n == -ECANCELED)
        t->cancelled++;
    t->ended++;
    (void)c;
}

static void hang_client(void *arg)
{
    (void)arg;
    weft_sock *s;
    char b;
    if (weft_tcp_connect(&s, "127.0.0.1", S.port, 5000) < 0)
        return;
    S.cli_last = (int)weft_recv(s, &b, 1, 20000); /* 0 once the server closes */
    if (S.cli_last == 0)
        S.cli_ok++;
    weft_close(s);
}

static int drain_zero_main(void *arg)
{
    int mode = *(int *)arg;
    if (start_on(&S, "127.0.0.1", hang_handler, 0) < 0)
        return 1;
    for (int i = 0; i < 3; i++)
        weft_go(hang_client, NULL);
    WAIT_UNTIL(S.started == 3, 10000);
    int64_t t0 = weft_now();
    if (mode == 0) {
        S.drain_rc = weft_server_drain(S.srv, 0);
    } else {
        weft_deadline_set(weft_now() + 300);
        S.drain_rc = weft_server_drain(S.srv, 60000);
        weft_deadline_clear();
    }
    S.drain_ms = weft_now() - t0;
    WAIT_UNTIL(S.cli_ok == 3, 10000);
    weft_server_free(S.srv);
    return 0;
}

Test(server, drain_timeout_zero_and_deadline, .timeout = 60)
{
    for (int mode = 0; mode < 2; mode++) {
        memset(&S, 0, sizeof S);
        cr_assert_eq(weft_main(drain_zero_main, &mode, NULL), 0);
        cr_assert_eq(S.drain_rc, 3, "mode %d: %d", mode, S.drain_rc);
        cr_assert_eq(S.cancelled, 3);
        cr_assert_eq(S.cli_ok, 3);
        cr_assert_eq(S.exits, 1);
        if (mode == 0)
            cr_assert_lt(S.drain_ms, LATE_MS);
        else
            cr_assert(S.drain_ms >= 299 && S.drain_ms <= 300 + LATE_MS, "%lld ms",
                      (long long)S.drain_ms);
    }
}

/* A drain that is itself cancelled returns -ECANCELED, cancels nobody. */
static int64_t drainer_id;
static void drainer(void *arg)
{
    (void)arg;
    S.drain_rc = weft_server_drain(S.srv, 60000);
}

static int drain_cancel_main(void *arg)
{
    (void)arg;
    if (start_on(&S, "127.0.0.1", hang_handler, 0) < 0)
        return 1;
    weft_go(hang_client, NULL);
    WAIT_UNTIL(S.started == 1, 10000);
    drainer_id = weft_go(drainer, NULL);
    weft_sleep(100);
    weft_cancel(drainer_id);
    weft_join(drainer_id, 5000);
    S.other_err = S.cancelled; /* none yet */
    S.drain_ms = weft_server_drain(S.srv, 0);
    WAIT_UNTIL(S.cli_ok == 1, 10000);
    weft_server_free(S.srv);
    return 0;
}

Test(server, cancelled_drain, .timeout = 60)
{
    memset(&S, 0, sizeof S);
    cr_assert_eq(weft_main(drain_cancel_main, NULL, NULL), 0);
    cr_assert_eq(S.drain_rc, -ECANCELED);
    cr_assert_eq(S.other_err, 0, "the cancelled drain cancelled a handler");
    cr_assert_eq(S.drain_ms, 1, "the second drain cancelled it");
    cr_assert_eq(S.exits, 1);
}

/* ---- max_conns (RELIABILITY #56) ---------------------------------------------------------- */

#define MAX_CONNS 10
#define MAX_CLIENTS 50

static int64_t max_cpu_ms, max_wall_ms;

static int max_main(void *arg)
{
    (void)arg;
    S.hold_ms = 100;
    if (start_on(&S, "127.0.0.1", echo_handler, MAX_CONNS) < 0)
        return 1;
    int64_t c0 = cpu_ms(), t0 = weft_now();
    for (int i = 0; i < MAX_CLIENTS; i++)
        weft_go(client_once, &S);
    WAIT_UNTIL(S.cli_ok + S.cli_fail == MAX_CLIENTS, 60000);
    max_wall_ms = weft_now() - t0;
    max_cpu_ms = cpu_ms() - c0;
    weft_server_free(S.srv);
    return 0;
}

Test(server, max_conns_waits_in_the_backlog, .timeout = 120)
{
    memset(&S, 0, sizeof S);
    int fds = count_fds();
    cr_assert_eq(weft_main(max_main, NULL, NULL), 0);
    cr_assert_eq(S.cli_ok, MAX_CLIENTS, "%d ok, %d failed (%s): none is accepted and closed",
                 S.cli_ok, S.cli_fail, weft_err_name(S.cli_last));
    cr_assert_eq(S.started, MAX_CLIENTS);
    cr_assert_leq(S.active_max, MAX_CONNS, "%d handlers at once", S.active_max);
    cr_assert_eq(S.active_max, MAX_CONNS, "the limit is used");
    /* Five waves of 100 ms: served as slots free, not all at once. */
    cr_assert_geq(max_wall_ms, 5 * 100 - 1, "%lld ms", (long long)max_wall_ms);
    /* No spin while at the limit: mostly asleep. */
    cr_assert_lt(max_cpu_ms, max_wall_ms / 2, "%lld ms of CPU in %lld ms", (long long)max_cpu_ms,
                 (long long)max_wall_ms);
    cr_assert_eq(S.exits, 1);
    cr_assert_eq(count_fds(), fds);
}

/* ---- the server closes what the handler leaves (RELIABILITY #58) -------------------------- */

/* mode: 0 forgets to close, 1 closes then returns, 2 resets then returns. */
static int close_mode;

static void once_handler(weft_sock *c, void *arg)
{
    st *t = arg;
    char buf[32];
    t->started++;
    ssize_t n = weft_recv(c, buf, sizeof buf, 5000);
    if (n > 0 && weft_send(c, buf, (size_t)n, 5000) == n)
        t->echoed++;
    if (close_mode == 1)
        t->last_err = weft_close(c);
    else if (close_mode == 2)
        t->last_err = weft_reset(c);
    t->ended++;
}

static void eof_client(void *arg)
{
    (void)arg;
    weft_sock *s;
    char b[8];
    if (weft_tcp_connect(&s, "127.0.0.1", S.port, 5000) < 0) {
        S.cli_fail++;
        return;
    }
    ssize_t n = weft_send(s, "ping", 4, 5000);
    if (n == 4)
        n = weft_recvn(s, b, 4, 5000);
    if (n == 4)
        n = weft_recv(s, b, sizeof b, 5000); /* then the server's close */
    weft_close(s);
    if (n == 0 || (close_mode == 2 && n == -ECONNRESET))
        S.cli_ok++;
    else
        S.cli_fail++, S.cli_last = (int)n;
}

static int forget_main(void *arg)
{
    (void)arg;
    if (start_on(&S, "127.0.0.1", once_handler, 0) < 0)
        return 1;
    for (int i = 0; i < 100; i++)
        weft_go(eof_client, NULL);
    WAIT_UNTIL(S.cli_ok + S.cli_fail == 100, 30000);
    WAIT_UNTIL(weft_server_conn_count(S.srv) == 0, 5000);
    weft_server_free(S.srv);
    return 0;
}

Test(server, handler_that_forgets_to_close, .timeout = 60)
{
    for (close_mode = 0; close_mode < 3; close_mode++) {
        memset(&S, 0, sizeof S);
        int fds = count_fds();
        cr_assert_eq(weft_main(forget_main, NULL, NULL), 0);
        cr_assert_eq(S.cli_ok, 100, "mode %d: %d clients saw the close, last %s", close_mode,
                     S.cli_ok, weft_err_name(S.cli_last));
        cr_assert_eq(S.echoed, 100);
        cr_assert_eq(S.last_err, 0, "the handler's own close worked");
        cr_assert_eq(S.exits, 1);
        cr_assert_eq(count_fds(), fds, "mode %d: no descriptor left", close_mode);
    }
}

/* ---- lifetimes ------------------------------------------------------------------------------ */

/* Freed while connections are alive: they go on, on_exit still runs once,
 * and the memory goes after it (ASan). */
static int free_alive_main(void *arg)
{
    (void)arg;
    S.hold_ms = 300;
    if (start_on(&S, "127.0.0.1", echo_handler, 0) < 0)
        return 1;
    for (int i = 0; i < 5; i++)
        weft_go(client_once, &S);
    WAIT_UNTIL(S.started == 5, 10000);
    weft_server_free(S.srv);
    weft_server_free(S.srv); /* a second free while they are alive: nothing */
    weft_sock *s;
    if (weft_tcp_connect(&s, "127.0.0.1", S.port, 2000) == -ECONNREFUSED)
        S.refused++;
    else
        weft_close(s);
    WAIT_UNTIL(S.cli_ok + S.cli_fail == 5, 10000);
    WAIT_UNTIL(S.exits, 5000);
    return 0;
}

Test(server, free_with_connections_alive, .timeout = 60)
{
    memset(&S, 0, sizeof S);
    int fds = count_fds();
    cr_assert_eq(weft_main(free_alive_main, NULL, NULL), 0);
    cr_assert_eq(S.refused, 1);
    cr_assert_eq(S.cli_ok, 5);
    cr_assert_eq(S.exits, 1);
    cr_assert_eq(S.ended_at_exit, 5);
    cr_assert_eq(count_fds(), fds);
}

/* on_exit frees the server; a handler frees it and goes on. */
static void freeing_handler(weft_sock *c, void *arg)
{
    st *t = arg;
    weft_server_free(t->srv);
    echo_handler(c, arg);
}

static int free_in_main(void *arg)
{
    int mode = *(int *)arg;
    S.free_in_exit = mode == 0;
    if (start_on(&S, "127.0.0.1", mode == 0 ? echo_handler : freeing_handler, 0) < 0)
        return 1;
    int n = mode == 0 ? 2 : 1; /* mode 1: the first handler stops the server */
    for (int i = 0; i < n; i++)
        weft_go(client_once, &S);
    WAIT_UNTIL(S.cli_ok + S.cli_fail == n, 10000);
    if (mode == 0)
        weft_server_stop(S.srv);
    WAIT_UNTIL(S.exits, 5000);
    return 0;
}

Test(server, free_from_on_exit_and_from_a_handler, .timeout = 60)
{
    for (int mode = 0; mode < 2; mode++) {
        memset(&S, 0, sizeof S);
        cr_assert_eq(weft_main(free_in_main, &mode, NULL), 0);
        cr_assert_eq(S.cli_ok, mode == 0 ? 2 : 1, "mode %d: %d", mode, S.cli_ok);
        cr_assert_eq(S.exits, 1, "mode %d", mode);
    }
}

/* A handler drains the server it runs in: it waits for the others, not
 * for itself, and is not cancelled. */
static int64_t inner_ms;
static int inner_after; /* the drainer's own receive after the drain */

static void draining_handler(weft_sock *c, void *arg)
{
    st *t = arg;
    char b[8];
    t->started++;
    ssize_t n = weft_recv(c, b, 1, 5000);
    if (n == 1 && b[0] == 'd') {
        WAIT_UNTIL(t->started == 3, 5000);
        int64_t t0 = weft_now();
        t->drain_rc = weft_server_drain(t->srv, 300);
        inner_ms = weft_now() - t0;
        /* Still usable: not cancelled. */
        inner_after = weft_send(c, "ok", 2, 5000) == 2 && weft_recv(c, b, 1, 5000) == 0;
    } else if (n == 1) {
        n = weft_recv(c, b, 1, -1);
        if (n == -ECANCELED)
            t->cancelled++;
    }
    t->ended++;
}

static void drain_kind_client(void *arg)
{
    char k = (char)(intptr_t)arg;
    weft_sock *s;
    char b[4];
    if (weft_tcp_connect(&s, "127.0.0.1", S.port, 5000) < 0)
        return;
    weft_send(s, &k, 1, 5000);
    if (k == 'd') {
        if (weft_recvn(s, b, 2, 10000) == 2)
            S.cli_ok++;
        weft_shutdown(s, WEFT_SHUT_WR);
    }
    weft_recv(s, b, sizeof b, 10000); /* the server's close */
    weft_close(s);
}

static int inner_main(void *arg)
{
    (void)arg;
    if (start_on(&S, "127.0.0.1", draining_handler, 0) < 0)
        return 1;
    weft_go(drain_kind_client, (void *)(intptr_t)'h');
    weft_go(drain_kind_client, (void *)(intptr_t)'h');
    weft_sleep(50);
    weft_go(drain_kind_client, (void *)(intptr_t)'d');
    WAIT_UNTIL(S.exits, 10000);
    weft_server_free(S.srv);
    return 0;
}

Test(server, drain_from_inside_a_handler, .timeout = 60)
{
    memset(&S, 0, sizeof S);
    cr_assert_eq(weft_main(inner_main, NULL, NULL), 0);
    cr_assert_eq(S.drain_rc, 2, "the two others cancelled: %d", S.drain_rc);
    cr_assert_eq(S.cancelled, 2);
    cr_assert_geq(inner_ms, 299);
    cr_assert(inner_after, "the draining handler was not cancelled");
    cr_assert_eq(S.cli_ok, 1);
    cr_assert_eq(S.exits, 1);
    cr_assert_eq(S.ended_at_exit, 3, "on_exit after the drainer itself ended");
}

/* Stop with no connection at all: on_exit at the next step, once. */
static int stop_idle_main(void *arg)
{
    (void)arg;
    if (start_on(&S, "127.0.0.1", echo_handler, 0) < 0)
        return 1;
    weft_server_stop(S.srv);
    S.cli_last = S.exits; /* not inside stop */
    weft_yield();
    weft_yield();
    weft_server_stop(S.srv);
    weft_server_drain(S.srv, 100);
    weft_server_free(S.srv);
    return 0;
}

Test(server, stop_with_no_connections, .timeout = 30)
{
    memset(&S, 0, sizeof S);
    cr_assert_eq(weft_main(stop_idle_main, NULL, NULL), 0);
    cr_assert_eq(S.cli_last, 0, "on_exit ran inside stop");
    cr_assert_eq(S.exits, 1);
}

/* ---- the server's loop freed with connections alive -------------------------------------------
 */

typedef struct thr_cli {
    int port, n;
    int connected, eof;
} thr_cli;

/* A plain thread (no loop): blocking clients that connect, send a byte,
 * and wait for the server's close. */
static void *thread_clients(void *arg)
{
    thr_cli *t = arg;
    weft_sock *s[16];
    for (int i = 0; i < t->n; i++) {
        if (weft_tcp_connect(&s[i], "127.0.0.1", t->port, 5000) < 0) {
            s[i] = NULL;
            continue;
        }
        __atomic_add_fetch(&t->connected, 1, __ATOMIC_SEQ_CST);
        weft_send(s[i], "h", 1, 5000);
    }
    for (int i = 0; i < t->n; i++) {
        char b;
        if (s[i] && weft_recv(s[i], &b, 1, 20000) == 0)
            __atomic_add_fetch(&t->eof, 1, __ATOMIC_SEQ_CST);
        weft_close(s[i]);
    }
    return NULL;
}

Test(server, loop_freed_with_connections_alive, .timeout = 60)
{
    for (int freed_first = 0; freed_first < 2; freed_first++) {
        memset(&S, 0, sizeof S);
        int fds = count_fds();
        weft_loop *l;
        cr_assert_eq(weft_loop_new(&l, NULL), 0);
        /* Outside any coroutine: the acceptor is queued. */
        cr_assert_eq(start_on(&S, "127.0.0.1", kind_handler, 0), 0);
        thr_cli tc = {.port = S.port, .n = 3};
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, thread_clients, &tc), 0);
        for (int i = 0; i < 2000 && weft_server_conn_count(S.srv) < 3; i++)
            weft_loop_poll(l, 10);
        cr_assert_eq(weft_server_conn_count(S.srv), 3);
        for (int i = 0; i < 10; i++)
            weft_loop_poll(l, 5); /* they read their first byte */
        if (freed_first)
            weft_server_free(S.srv);
        weft_loop_free(l);
        cr_assert_eq(S.cancelled, 3, "their calls returned -ECANCELED");
        cr_assert_eq(S.exits, 1, "on_exit once, as the loop was freed");
        if (!freed_first) {
            cr_assert_eq(weft_server_conn_count(S.srv), 0);
            weft_server_stop(S.srv); /* nothing: its loop is gone */
            cr_assert_eq(weft_server_drain(S.srv, 100), 0);
            weft_server_free(S.srv);
        }
        pthread_join(th, NULL);
        cr_assert_eq(tc.eof, 3, "the clients saw the close");
        cr_assert_eq(count_fds(), fds);
    }
}

/* ---- outside any coroutine: an embedding program -------------------------------------------- */

static void *drain_other_thread(void *arg)
{
    return (void *)(intptr_t)weft_server_drain(arg, 0);
}

Test(server, embedded_drain_outside_coroutines, .timeout = 60)
{
    memset(&S, 0, sizeof S);
    int fds = count_fds();
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    cr_assert_eq(start_on(&S, "127.0.0.1", hang_handler, 0), 0);
    for (int i = 0; i < 4; i++)
        weft_go(hang_client, NULL);
    for (int i = 0; i < 2000 && S.started < 4; i++)
        weft_loop_poll(l, 10);
    cr_assert_eq(S.started, 4);
    /* Another thread: -EXDEV, nothing touched. */
    pthread_t th;
    void *other;
    cr_assert_eq(pthread_create(&th, NULL, drain_other_thread, S.srv), 0);
    pthread_join(th, &other);
    cr_assert_eq((int)(intptr_t)other, -EXDEV);
    cr_assert_eq(weft_server_conn_count(S.srv), 4);
    int64_t t0 = weft_now();
    int rc = weft_server_drain(S.srv, 200); /* runs the loop's steps itself */
    int64_t ms = weft_now() - t0;
    cr_assert_eq(rc, 4, "%d", rc);
    cr_assert_geq(ms, 199);
    cr_assert_eq(S.cancelled, 4);
    cr_assert_eq(weft_server_conn_count(S.srv), 0);
    cr_assert_eq(weft_loop_run(l, 10000), 0);
    cr_assert_eq(S.cli_ok, 4);
    cr_assert_eq(S.exits, 1);
    weft_server_free(S.srv);
    weft_loop_free(l);
    cr_assert_eq(count_fds(), fds);
}
