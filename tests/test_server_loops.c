/*
 * test_server_loops.c - weft_server on a group of loops (weft_config.threads):
 * one listener per loop with SO_REUSEPORT and both loops accepting, the
 * connection count summed over the loops while 1,000 are open and 0 after
 * (RELIABILITY #70), port 0, stop and drain from any loop (handlers that
 * never end cancelled on every loop, drain's count their total, on_exit
 * once), max_conns over all loops, a start that fails on one loop undoing
 * the others, and a unix server listening once.
 *
 * The clients are a plain thread with blocking POSIX sockets: on none of
 * the server's loops.
 */
#include "helpers.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define LOOPS_MAX 4

typedef struct st {
    weft_server *srv;
    int port;
    int loops;
    int accepted[LOOPS_MAX]; /* on_conn per loop (atomic) */
    int on_loop_of_exit;     /* weft_loop_index() in on_exit */
    int exits;               /* atomic */
    int cancelled;           /* handlers whose wait returned -ECANCELED (atomic) */
    int active, active_max;  /* handlers running at once (atomic) */
    size_t count_open;       /* conn_count seen by the client with all open */
    size_t count_end;        /* conn_count after on_exit */
    int cli_ok, cli_fail;
    int refused;             /* connects refused after the stop */
    int start_rc;
    int drain_rc;
    int fds_before, fds_after;
    weft_event *go;          /* the client thread tells the loops to go on */
    weft_event *exited;      /* on_exit ran */
} st;

static st S;

static void setup(void)
{
    weft_fault_clear();
    memset(&S, 0, sizeof S);
    S.on_loop_of_exit = -2;
    raise_nofile();
}

static void teardown(void)
{
    memset(&S, 0, sizeof S);
}

TestSuite(server_loops, .init = setup, .fini = teardown);

static void on_exit_cb(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&S.exits, 1, __ATOMIC_SEQ_CST);
    S.on_loop_of_exit = weft_loop_index();
    if (S.exited)
        weft_event_set(S.exited);
}

static void count_loop(void)
{
    int i = weft_loop_index();
    if (i >= 0 && i < LOOPS_MAX)
        __atomic_add_fetch(&S.accepted[i], 1, __ATOMIC_SEQ_CST);
}

/* Echoes until the peer closes. */
static void on_echo(weft_sock *c, void *arg)
{
    (void)arg;
    count_loop();
    char buf[256];
    ssize_t n;
    while ((n = weft_recv(c, buf, sizeof buf, 30000)) > 0)
        if (weft_send(c, buf, (size_t)n, 5000) < 0)
            break;
}

/* Never ends on its own: sleeps until cancelled. */
static void on_stuck(weft_sock *c, void *arg)
{
    (void)c;
    (void)arg;
    count_loop();
    if (weft_sleep(120000) == -ECANCELED)
        __atomic_add_fetch(&S.cancelled, 1, __ATOMIC_SEQ_CST);
}

/* ---- blocking clients on a plain thread ------------------------------------------- */

static int cli_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* One byte there and back: the server's handler is running. */
static int cli_ping(int fd)
{
    char c = 'x';
    if (send(fd, &c, 1, MSG_NOSIGNAL) != 1)
        return -1;
    return recv(fd, &c, 1, 0) == 1 && c == 'x' ? 0 : -1;
}

/* Waits (a bounded while) until conn_count is n; returns what it saw last. */
static size_t wait_count(size_t n, int64_t ms)
{
    int64_t end = mono_ms() + ms;
    size_t c;
    while ((c = weft_server_conn_count(S.srv)) != n && mono_ms() < end)
        usleep(2000);
    return c;
}

typedef struct many_arg {
    int n;
    bool ping; /* an echo round trip on each */
} many_arg;

/* Opens n connections, checks the count with all of them open, closes
 * them, then lets the loops go on. */
static void *cli_many(void *arg)
{
    many_arg *m = arg;
    int *fds = calloc((size_t)m->n, sizeof *fds);
    for (int i = 0; i < m->n; i++) {
        fds[i] = cli_connect(S.port);
        if (fds[i] < 0 || (m->ping && cli_ping(fds[i]) < 0))
            S.cli_fail++;
        else
            S.cli_ok++;
    }
    S.count_open = wait_count((size_t)S.cli_ok, 30000);
    for (int i = 0; i < m->n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    weft_event_set(S.go);
    return NULL;
}

/* ---- 1,000 connections on two loops (RELIABILITY #70) ----------------------------- */

static int spread_main(void *arg)
{
    many_arg *m = arg;
    S.loops = weft_loop_count();
    weft_server_opts o = {.host = "127.0.0.1", .port = 0, .on_conn = on_echo,
                          .on_exit = on_exit_cb, .stack_size = 32 * 1024};
    if ((S.start_rc = weft_server_start(&S.srv, &o)) < 0)
        return 0;
    S.port = weft_server_port(S.srv);
    pthread_t t;
    pthread_create(&t, NULL, cli_many, m);
    weft_event_wait(S.go, 120000);
    /* Every client has closed: the handlers end, the count falls to 0. */
    S.drain_rc = weft_server_drain(S.srv, 30000);
    S.count_end = weft_server_conn_count(S.srv);
    weft_server_free(S.srv);
    pthread_join(t, NULL);
    return 0;
}

Test(server_loops, thousand_connections_on_two_loops, .timeout = 300)
{
    weft_event_new(&S.go, 0);
    many_arg m = {1000, true};
    weft_config cfg = {.threads = 2};
    cr_assert_eq(weft_main(spread_main, &m, &cfg), 0);
    weft_event_free(S.go);
    cr_assert_eq(S.start_rc, 0, "start: %s", weft_strerror(S.start_rc));
    cr_assert_eq(S.loops, 2);
    cr_assert_eq(S.cli_fail, 0);
    cr_assert_eq(S.cli_ok, 1000);
    cr_assert_eq(S.count_open, 1000, "conn_count with all open: %zu", S.count_open);
    cr_assert_gt(S.accepted[0], 0, "loop 0 accepted none");
    cr_assert_gt(S.accepted[1], 0, "loop 1 accepted none");
    cr_assert_eq(S.accepted[0] + S.accepted[1], 1000);
    cr_assert_eq(S.drain_rc, 0);
    cr_assert_eq(S.count_end, 0);
    cr_assert_eq(S.exits, 1);
}

/* ---- drain from loop 2 of 4: handlers that never end, on every loop --------------- */

static void *cli_open(void *arg)
{
    many_arg *m = arg;
    int *fds = calloc((size_t)m->n, sizeof *fds);
    for (int i = 0; i < m->n; i++) {
        fds[i] = cli_connect(S.port);
        if (fds[i] < 0)
            S.cli_fail++;
        else
            S.cli_ok++;
    }
    S.count_open = wait_count((size_t)S.cli_ok, 30000);
    weft_event_set(S.go);
    /* Kept open until the server has exited: the handlers never see EOF. */
    weft_event_wait(S.exited, 60000);
    for (int i = 0; i < m->n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    return NULL;
}

static void drain_here(void *arg)
{
    int64_t *ms = arg;
    S.drain_rc = weft_server_drain(S.srv, *ms);
}

static int drain_main(void *arg)
{
    many_arg *m = arg;
    S.loops = weft_loop_count();
    weft_server_opts o = {.host = "127.0.0.1", .on_conn = on_stuck, .on_exit = on_exit_cb,
                          .stack_size = 32 * 1024};
    if ((S.start_rc = weft_server_start(&S.srv, &o)) < 0)
        return 0;
    S.port = weft_server_port(S.srv);
    pthread_t t;
    pthread_create(&t, NULL, cli_open, m);
    weft_event_wait(S.go, 120000);
    int64_t ms = 300;
    int64_t id = weft_go_on(2 % S.loops, drain_here, &ms);
    weft_join(id, -1);
    weft_event_wait(S.exited, 30000);
    /* Connecting now is refused: no loop listens. */
    int fd = cli_connect(S.port);
    if (fd == -ECONNREFUSED)
        S.refused = 1;
    if (fd >= 0)
        close(fd);
    S.count_end = weft_server_conn_count(S.srv);
    weft_server_free(S.srv);
    pthread_join(t, NULL);
    return 0;
}

static void drain_on(int loops)
{
    weft_event_new(&S.go, 0);
    weft_event_new(&S.exited, 1);
    many_arg m = {40, false};
    weft_config cfg = {.threads = loops};
    cr_assert_eq(weft_main(drain_main, &m, &cfg), 0);
    weft_event_free(S.go);
    weft_event_free(S.exited);
    cr_assert_eq(S.start_rc, 0, "start: %s", weft_strerror(S.start_rc));
    cr_assert_eq(S.cli_ok, 40);
    cr_assert_eq(S.count_open, 40);
    int sum = 0, busy = 0;
    for (int i = 0; i < loops; i++) {
        sum += S.accepted[i];
        busy += S.accepted[i] > 0;
    }
    cr_assert_eq(sum, 40);
    /* 40 connections hashed over the loops: all of them accept some (the
     * chance that one gets none is about loops * (1 - 1/loops)^40). */
    cr_assert_eq(busy, loops, "only %d of %d loops accepted", busy, loops);
    cr_assert_eq(S.drain_rc, 40, "drain cancelled %d", S.drain_rc);
    cr_assert_eq(S.cancelled, 40);
    cr_assert_eq(S.exits, 1);
    cr_assert(S.on_loop_of_exit >= 0 && S.on_loop_of_exit < loops);
    cr_assert_eq(S.count_end, 0);
    cr_assert_eq(S.refused, 1);
}

Test(server_loops, drain_on_two_loops_cancels_on_both, .timeout = 120)
{
    drain_on(2);
}

Test(server_loops, drain_from_loop_two_of_four, .timeout = 120)
{
    drain_on(4);
}

/* ---- stop from another loop: connections go on ------------------------------------ */

static void *cli_stop(void *arg)
{
    (void)arg;
    int fds[10];
    for (int i = 0; i < 10; i++) {
        fds[i] = cli_connect(S.port);
        if (fds[i] < 0 || cli_ping(fds[i]) < 0)
            S.cli_fail++;
    }
    weft_event_set(S.go); /* the loops stop the server now */
    weft_event_wait(S.go, 60000); /* ... and say so */
    /* Stopped: new connects are refused, the 10 still echo. */
    int fd = cli_connect(S.port);
    if (fd == -ECONNREFUSED)
        S.refused = 1;
    if (fd >= 0)
        close(fd);
    for (int i = 0; i < 10; i++) {
        if (fds[i] >= 0 && cli_ping(fds[i]) == 0)
            S.cli_ok++;
        if (fds[i] >= 0)
            close(fds[i]);
    }
    return NULL;
}

static void stop_here(void *arg)
{
    (void)arg;
    weft_server_stop(S.srv);
}

static void free_here(void *arg)
{
    (void)arg;
    weft_server_free(S.srv);
}

static int stop_main(void *arg)
{
    (void)arg;
    weft_server_opts o = {.host = "127.0.0.1", .on_conn = on_echo, .on_exit = on_exit_cb,
                          .stack_size = 32 * 1024};
    if ((S.start_rc = weft_server_start(&S.srv, &o)) < 0)
        return 0;
    S.port = weft_server_port(S.srv);
    pthread_t t;
    pthread_create(&t, NULL, cli_stop, NULL);
    weft_event_wait(S.go, 60000);
    weft_join(weft_go_on(1, stop_here, NULL), -1);
    /* Every listener is closed once each loop has had a step: a round
     * trip through each of them. */
    for (int i = 0; i < weft_loop_count(); i++)
        weft_join(weft_go_on(i, stop_here, NULL), -1);
    weft_event_set(S.go);
    weft_event_wait(S.exited, 60000);
    S.count_end = weft_server_conn_count(S.srv);
    /* Freed from another loop than the one that started it. */
    weft_join(weft_go_on(1, free_here, NULL), -1);
    pthread_join(t, NULL);
    return 0;
}

Test(server_loops, stop_from_another_loop_keeps_connections, .timeout = 120)
{
    weft_event_new(&S.go, 0);
    weft_event_new(&S.exited, 1);
    weft_config cfg = {.threads = 2};
    cr_assert_eq(weft_main(stop_main, NULL, &cfg), 0);
    weft_event_free(S.go);
    weft_event_free(S.exited);
    cr_assert_eq(S.start_rc, 0);
    cr_assert_eq(S.cli_fail, 0);
    cr_assert_eq(S.refused, 1);
    cr_assert_eq(S.cli_ok, 10);
    cr_assert_eq(S.exits, 1);
    cr_assert_eq(S.count_end, 0);
}

/* ---- max_conns counts every loop's connections ------------------------------------ */

static void on_hold(weft_sock *c, void *arg)
{
    (void)arg;
    count_loop();
    int a = __atomic_add_fetch(&S.active, 1, __ATOMIC_SEQ_CST);
    int m = __atomic_load_n(&S.active_max, __ATOMIC_SEQ_CST);
    while (a > m && !__atomic_compare_exchange_n(&S.active_max, &m, a, false, __ATOMIC_SEQ_CST,
                                                 __ATOMIC_SEQ_CST))
        ;
    char b;
    if (weft_recv(c, &b, 1, 10000) == 1) {
        weft_sleep(30);
        weft_send(c, &b, 1, 5000);
    }
    __atomic_sub_fetch(&S.active, 1, __ATOMIC_SEQ_CST);
}

static void *cli_limit(void *arg)
{
    (void)arg;
    int fds[40];
    char c = 'x';
    /* Connected and sent at once: those over the limit wait in the
     * backlogs with their byte, and each is answered as a slot frees. */
    for (int i = 0; i < 40; i++) {
        fds[i] = cli_connect(S.port);
        if (fds[i] >= 0 && send(fds[i], &c, 1, MSG_NOSIGNAL) != 1) {
            close(fds[i]);
            fds[i] = -1;
        }
    }
    for (int i = 0; i < 40; i++) {
        if (fds[i] >= 0 && recv(fds[i], &c, 1, 0) == 1)
            S.cli_ok++;
        else
            S.cli_fail++;
    }
    for (int i = 0; i < 40; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    weft_event_set(S.go);
    return NULL;
}

static int limit_main(void *arg)
{
    (void)arg;
    weft_server_opts o = {.host = "127.0.0.1", .on_conn = on_hold, .on_exit = on_exit_cb,
                          .max_conns = 5, .stack_size = 32 * 1024};
    if ((S.start_rc = weft_server_start(&S.srv, &o)) < 0)
        return 0;
    S.port = weft_server_port(S.srv);
    pthread_t t;
    pthread_create(&t, NULL, cli_limit, NULL);
    weft_event_wait(S.go, 100000);
    S.drain_rc = weft_server_drain(S.srv, 30000);
    weft_server_free(S.srv);
    pthread_join(t, NULL);
    return 0;
}

Test(server_loops, max_conns_is_for_all_loops, .timeout = 200)
{
    weft_event_new(&S.go, 0);
    weft_config cfg = {.threads = 2};
    cr_assert_eq(weft_main(limit_main, NULL, &cfg), 0);
    weft_event_free(S.go);
    cr_assert_eq(S.start_rc, 0);
    cr_assert_eq(S.cli_ok, 40, "served %d, failed %d", S.cli_ok, S.cli_fail);
    cr_assert_leq(S.active_max, 5, "%d handlers at once", S.active_max);
    cr_assert_gt(S.accepted[0], 0);
    cr_assert_gt(S.accepted[1], 0);
    cr_assert_eq(S.exits, 1);
}

/* ---- a start that fails on one loop undoes the others ----------------------------- */

typedef struct fault_arg {
    weft_fault_kind kind;
    unsigned nth;
    int err;
} fault_arg;

/* Arms the fault on loop 1's thread, and stays until the start is over,
 * so that its stack is not the one the next coroutine there takes. */
static void arm_fault(void *arg)
{
    fault_arg *f = arg;
    weft_fault_clear();
    weft_fault_set(f->kind, f->nth, f->err);
    weft_event_set(S.go);
    weft_event_wait(S.exited, 30000);
    weft_fault_clear();
}

static int fail_main(void *arg)
{
    fault_arg *f = arg;
    S.fds_before = count_fds();
    int64_t armer = weft_go_on(1, arm_fault, f);
    weft_event_wait(S.go, 30000);
    weft_server_opts o = {.host = "127.0.0.1", .on_conn = on_echo, .on_exit = on_exit_cb};
    S.start_rc = weft_server_start(&S.srv, &o);
    S.fds_after = count_fds();
    weft_event_set(S.exited);
    weft_join(armer, -1);
    if (S.start_rc == 0) {
        weft_server_drain(S.srv, 1000);
        weft_server_free(S.srv);
    }
    return 0;
}

static void fail_on_loop_one(weft_fault_kind kind, int err, int want)
{
    fault_arg f = {kind, 1, err};
    weft_config cfg = {.threads = 2};
    weft_event_new(&S.go, 0);
    weft_event_new(&S.exited, 1);
    cr_assert_eq(weft_main(fail_main, &f, &cfg), 0);
    weft_event_free(S.go);
    weft_event_free(S.exited);
    S.exited = NULL;
    cr_assert_eq(S.start_rc, want, "start: %s", weft_strerror(S.start_rc));
    cr_assert_eq(S.fds_after, S.fds_before, "fds %d -> %d", S.fds_before, S.fds_after);
    cr_assert_eq(S.exits, 0, "on_exit ran for a server that never was");
    cr_assert_eq(S.accepted[0] + S.accepted[1], 0);
}

Test(server_loops, listen_failing_on_loop_one_undoes_loop_zero, .timeout = 60)
{
    fail_on_loop_one(WEFT_FAULT_LISTEN, EADDRINUSE, -EADDRINUSE);
}

Test(server_loops, socket_failing_on_loop_one, .timeout = 60)
{
    fail_on_loop_one(WEFT_FAULT_SOCKET, EMFILE, -EMFILE);
}

Test(server_loops, acceptor_without_a_stack_on_loop_one, .timeout = 60)
{
    fail_on_loop_one(WEFT_FAULT_MMAP, ENOMEM, -ENOMEM);
}

/* Every allocation of the start on the starting loop fails in turn: each
 * failure is clean, and the start succeeds once past them all. */
static int sweep_main(void *arg)
{
    int *ok_at = arg;
    weft_server_opts o = {.host = "127.0.0.1", .on_conn = on_echo};
    for (unsigned nth = 1; nth < 200; nth++) {
        int before = count_fds();
        weft_fault_set(WEFT_FAULT_MALLOC, nth, ENOMEM);
        weft_server *s = NULL;
        int rc = weft_server_start(&s, &o);
        weft_fault_clear();
        if (rc == 0) {
            *ok_at = (int)nth;
            weft_server_drain(s, 1000);
            weft_server_free(s);
            return 0;
        }
        if (rc != -ENOMEM || count_fds() != before) {
            *ok_at = -(int)nth;
            return 0;
        }
    }
    return 0;
}

Test(server_loops, allocation_failures_at_start, .timeout = 120)
{
    int ok_at = 0;
    weft_config cfg = {.threads = 2};
    cr_assert_eq(weft_main(sweep_main, &ok_at, &cfg), 0);
    cr_assert_gt(ok_at, 1, "failed badly at %d", -ok_at);
}

/* A start cancelled while it waits for the other loops: nothing is left. */
static void start_and_record(void *arg)
{
    (void)arg;
    weft_server_opts o = {.host = "127.0.0.1", .on_conn = on_echo, .on_exit = on_exit_cb};
    S.start_rc = weft_server_start(&S.srv, &o);
    if (S.start_rc == 0) {
        weft_server_drain(S.srv, 1000);
        weft_server_free(S.srv);
    }
}

static void busy_loop(void *arg)
{
    (void)arg;
    int64_t end = weft_now() + 200; /* loop 1 answers late */
    while (weft_now() < end)
        ;
}

static int cancel_main(void *arg)
{
    (void)arg;
    S.fds_before = count_fds();
    weft_go_on(1, busy_loop, NULL);
    int64_t id = weft_go(start_and_record, NULL);
    weft_sleep(20);
    weft_cancel(id);
    weft_join(id, -1);
    /* Loop 1's part, made after the start gave up, closes at its step. */
    for (int i = 0; i < 50 && count_fds() != S.fds_before; i++)
        weft_sleep(20);
    S.fds_after = count_fds();
    return 0;
}

Test(server_loops, start_cancelled_while_waiting, .timeout = 60)
{
    weft_config cfg = {.threads = 2};
    cr_assert_eq(weft_main(cancel_main, NULL, &cfg), 0);
    cr_assert_eq(S.start_rc, -ECANCELED, "start: %s", weft_strerror(S.start_rc));
    cr_assert_eq(S.fds_after, S.fds_before);
    cr_assert_eq(S.exits, 0);
}

/* ---- a unix server on a group listens on its own loop only ------------------------ */

static void *cli_unix(void *arg)
{
    const char *name = arg;
    for (int i = 0; i < 20; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        size_t n = strlen(name);
        memcpy(a.sun_path + 1, name, n); /* abstract */
        struct timeval tv = {10, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)) == 0 &&
            cli_ping(fd) == 0)
            S.cli_ok++;
        else
            S.cli_fail++;
        close(fd);
    }
    weft_event_set(S.go);
    return NULL;
}

static char unix_name[64];

static void unix_on_loop_one(void *arg)
{
    (void)arg;
    char host[80];
    snprintf(host, sizeof host, "unix:@%s", unix_name);
    weft_server_opts o = {.host = host, .on_conn = on_echo, .on_exit = on_exit_cb};
    if ((S.start_rc = weft_server_start(&S.srv, &o)) < 0)
        return;
    pthread_t t;
    pthread_create(&t, NULL, cli_unix, unix_name);
    weft_event_wait(S.go, 60000);
    S.drain_rc = weft_server_drain(S.srv, 10000);
    weft_server_free(S.srv);
    pthread_join(t, NULL);
}

static int unix_main(void *arg)
{
    (void)arg;
    snprintf(unix_name, sizeof unix_name, "weft-srv-loops-%d", (int)getpid());
    weft_join(weft_go_on(1, unix_on_loop_one, NULL), -1);
    return 0;
}

Test(server_loops, unix_server_listens_on_its_own_loop, .timeout = 60)
{
    weft_event_new(&S.go, 0);
    weft_config cfg = {.threads = 2};
    cr_assert_eq(weft_main(unix_main, NULL, &cfg), 0);
    weft_event_free(S.go);
    cr_assert_eq(S.start_rc, 0, "start: %s", weft_strerror(S.start_rc));
    cr_assert_eq(S.cli_ok, 20);
    cr_assert_eq(S.accepted[1], 20);
    cr_assert_eq(S.accepted[0], 0);
    cr_assert_eq(S.drain_rc, 0);
    cr_assert_eq(S.exits, 1);
    cr_assert_eq(S.on_loop_of_exit, 1);
}
