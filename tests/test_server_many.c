/*
 * test_server_many.c - 10,000 concurrent connections through weft_server.
 * A forked child runs the server (on_conn echoes); this process runs
 * 10,000 client coroutines that each connect, make one round trip and
 * keep the connection open until all of them have, then close.  The
 * server must see 10,000 connections at once (conn_count), every one end
 * cleanly, and on_exit once after its drain.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#define CONNS 10000
#define MSG 16
#define NOFILE_NEEDED (CONNS + 100)

/* ---- the server, in the child ----------------------------------------------------- */

typedef struct srv_report {
    int started, ok, failed, last_err, exits, drain_rc;
    size_t peak, after;
} srv_report;

static srv_report srv;

static void on_exit_cb(void *arg)
{
    (void)arg;
    srv.exits++;
}

static void echo(weft_sock *c, void *arg)
{
    (void)arg;
    char buf[64];
    size_t total = 0;
    int err = 0;
    srv.started++;
    for (;;) {
        ssize_t n = weft_recv(c, buf, sizeof buf, 60000);
        if (n == 0)
            break;
        if (n < 0 || (n = weft_send(c, buf, (size_t)n, 10000)) < 0) {
            err = (int)n;
            break;
        }
        total += (size_t)n;
    }
    if (!err && total == MSG) {
        srv.ok++;
    } else {
        srv.failed++;
        srv.last_err = err;
    }
    /* No close: the server's. */
}

static int srv_main(void *arg)
{
    int wfd = (int)(intptr_t)arg;
    weft_server *s;
    /* Backlog SOMAXCONN: the clients arrive all at once.  Small stacks:
     * only touched pages cost, but address space is not unlimited. */
    weft_server_opts o = {
        .host = "127.0.0.1", .on_conn = echo, .on_exit = on_exit_cb, .stack_size = 64 * 1024};
    int rc = weft_server_start(&s, &o);
    int port = rc < 0 ? rc : weft_server_port(s);
    if (write(wfd, &port, sizeof port) != sizeof port || port <= 0)
        return 1;
    for (int i = 0; i < 6000 && srv.ok + srv.failed < CONNS; i++) {
        size_t n = weft_server_conn_count(s);
        if (n > srv.peak)
            srv.peak = n;
        weft_sleep(10);
    }
    srv.drain_rc = weft_server_drain(s, 5000);
    srv.after = weft_server_conn_count(s);
    weft_server_free(s);
    if (write(wfd, &srv, sizeof srv) != sizeof srv)
        return 1;
    return srv.ok == CONNS ? 0 : 1;
}

/* ---- the clients, here ---------------------------------------------------------------- */

typedef struct cli_state {
    int port;
    int connected, round_trips, failed, last_err, closed;
    int64_t all_at;
} cli_state;

static cli_state cli;

static void client(void *arg)
{
    int idx = (int)(intptr_t)arg;
    char out[MSG + 1], in[MSG];
    snprintf(out, sizeof out, "client %08d.", idx);
    weft_sock *s;
    int rc = weft_tcp_connect(&s, "127.0.0.1", cli.port, 30000);
    if (rc < 0) {
        cli.failed++;
        cli.last_err = rc;
        return;
    }
    cli.connected++;
    ssize_t n = weft_send(s, out, MSG, 30000);
    if (n == MSG)
        n = weft_recvn(s, in, MSG, 30000);
    if (n != MSG || memcmp(in, out, MSG) != 0) {
        cli.failed++;
        cli.last_err = n < 0 ? (int)n : -EPROTO;
        weft_close(s);
        return;
    }
    cli.round_trips++;
    /* Hold on until every client has made its round trip (or failed). */
    while (cli.round_trips + cli.failed < CONNS)
        weft_sleep(20);
    if (cli.round_trips == CONNS && !cli.all_at)
        cli.all_at = weft_now();
    weft_sleep(300); /* all open at once for a while: the server counts them */
    weft_close(s);
    cli.closed++;
}

static int cli_main(void *arg)
{
    (void)arg;
    weft_co_opts o = {.stack_size = 32 * 1024};
    for (int i = 0; i < CONNS; i++) {
        if (weft_go_opts(client, (void *)(intptr_t)i, &o) < 0) {
            cli.failed++;
            cli.last_err = -ENOMEM;
        }
    }
    return 0;
}

Test(server_many, ten_thousand_connections, .timeout = 360)
{
    long lim = raise_nofile();
    if (lim < NOFILE_NEEDED)
        cr_skip("RLIMIT_NOFILE is %ld, %d needed", lim, NOFILE_NEEDED);
    int fds = count_fds();
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(pfd[0]);
        if (raise_nofile() < NOFILE_NEEDED)
            _exit(2);
        _exit(weft_main(srv_main, (void *)(intptr_t)pfd[1], NULL) == 0 ? 0 : 3);
    }
    close(pfd[1]);
    int port = -1;
    struct pollfd p = {.fd = pfd[0], .events = POLLIN};
    if (poll(&p, 1, 10000) == 1)
        cr_assert_eq(read(pfd[0], &port, sizeof port), (ssize_t)sizeof port);
    if (port <= 0)
        kill(pid, SIGKILL);
    cr_assert_gt(port, 0, "the server did not start: %d", port);

    cli.port = port;
    int64_t t0 = weft_now();
    int rc = weft_main(cli_main, NULL, NULL);
    int64_t ms = weft_now() - t0;

    srv_report rep = {-1, -1, -1, 0, -1, -1, 0, 0};
    ssize_t n = -1;
    if (poll(&p, 1, 60000) == 1)
        n = read(pfd[0], &rep, sizeof rep);
    else
        kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    close(pfd[0]);

    cr_log_info("%d connections: all round trips after %lld ms, done after %lld ms", CONNS,
                (long long)(cli.all_at ? cli.all_at - t0 : -1), (long long)ms);
    cr_assert_eq(rc, 0);
    cr_assert_eq(cli.failed, 0, "%d clients failed, last with %s", cli.failed,
                 weft_err_name(cli.last_err));
    cr_assert_eq(cli.round_trips, CONNS);
    cr_assert_eq(cli.closed, CONNS);
    cr_assert_eq(n, (ssize_t)sizeof rep, "no report from the server");
    cr_assert_eq(rep.started, CONNS, "server ran %d handlers", rep.started);
    cr_assert_eq(rep.ok, CONNS, "server: %d ok, %d failed, last %s", rep.ok, rep.failed,
                 weft_err_name(rep.last_err));
    cr_assert_eq(rep.peak, CONNS, "conn_count peaked at %zu", rep.peak);
    cr_assert_eq(rep.drain_rc, 0, "nothing left to cancel");
    cr_assert_eq(rep.after, 0);
    cr_assert_eq(rep.exits, 1);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "server exit status %#x", status);
    cr_assert_eq(count_fds(), fds);
}
