/*
 * test_tcp_many.c - 10,000 concurrent connections.  A forked child runs the
 * server (one coroutine per connection, echo); this process runs 10,000
 * client coroutines that each connect, make one round trip and keep the
 * connection open until all of them have, then close.  Every round trip
 * must succeed, the server must see every connection end cleanly, and the
 * child must exit 0.
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
    int accepted, ok, failed, last_err;
} srv_report;

static srv_report srv;
static weft_sock *srv_listener;

static void srv_conn(void *arg)
{
    weft_sock *c = arg;
    char buf[64];
    size_t total = 0;
    int err = 0;
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
    weft_close(c);
    if (!err && total == MSG) {
        srv.ok++;
    } else {
        srv.failed++;
        srv.last_err = err;
    }
}

static void srv_acceptor(void *arg)
{
    (void)arg;
    while (srv.accepted < CONNS) {
        weft_sock *c;
        int rc = weft_tcp_accept(srv_listener, &c, 30000);
        if (rc < 0) {
            srv.last_err = rc;
            return;
        }
        srv.accepted++;
        if (weft_go(srv_conn, c) < 0) {
            weft_close(c);
            srv.failed++;
        }
    }
}

static int srv_main(void *arg)
{
    int wfd = (int)(intptr_t)arg;
    /* Backlog SOMAXCONN: the clients arrive all at once. */
    int rc = weft_tcp_listen(&srv_listener, "127.0.0.1", 0, 0, 0);
    int port = rc;
    weft_addr a;
    if (rc == 0 && (rc = weft_sock_local(srv_listener, &a)) == 0)
        port = weft_addr_port(&a);
    if (write(wfd, &port, sizeof port) != sizeof port || port <= 0)
        return 1;
    int64_t acc = weft_go(srv_acceptor, NULL);
    weft_join(acc, 60000);
    for (int i = 0; i < 6000 && srv.ok + srv.failed < srv.accepted; i++)
        weft_sleep(10);
    weft_close(srv_listener);
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

Test(tcp_many, ten_thousand_connections, .timeout = 360)
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

    srv_report rep = {-1, -1, -1, 0};
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
    cr_assert_eq(cli.connected, CONNS);
    cr_assert_eq(cli.round_trips, CONNS);
    cr_assert_eq(cli.closed, CONNS);
    cr_assert_eq(n, (ssize_t)sizeof rep, "no report from the server");
    cr_assert_eq(rep.accepted, CONNS, "server accepted %d (%s)", rep.accepted,
                 weft_err_name(rep.last_err));
    cr_assert_eq(rep.ok, CONNS, "server: %d ok, %d failed, last %s", rep.ok, rep.failed,
                 weft_err_name(rep.last_err));
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "server exit status %#x", status);
    cr_assert_eq(count_fds(), fds);
}
