/*
 * test_server_fault.c - weft_server under failures: every allocation of
 * weft_server_start failing in turn (nothing left behind, then a server
 * that works); the acceptor's stack not mappable, in a coroutine and
 * outside; and accepting while accept4, memory or stacks fail, or the
 * process is out of descriptors: the server stays alive, does not spin,
 * and serves afterwards.  Clients run on another thread or process, so the
 * faults (armed per thread) hit only the server.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static void setup(void)
{
    weft_fault_clear();
}

static void teardown(void)
{
    weft_fault_clear();
}

TestSuite(server_fault, .init = setup, .fini = teardown);

static int exits, served;

static void on_exit_cb(void *arg)
{
    (void)arg;
    exits++;
}

static void echo_handler(weft_sock *c, void *arg)
{
    (void)arg;
    char buf[64];
    ssize_t n;
    while ((n = weft_recv(c, buf, sizeof buf, 5000)) > 0)
        if (weft_send(c, buf, (size_t)n, 5000) != n)
            break;
    if (n == 0)
        served++;
}

/* One echo round trip on a new connection (any thread, blocking). */
static int echo_once(int port, int64_t timeout_ms)
{
    weft_sock *s;
    char back[5];
    int rc = weft_tcp_connect(&s, "127.0.0.1", port, timeout_ms);
    if (rc < 0)
        return rc;
    ssize_t n = weft_send(s, "hello", 5, timeout_ms);
    if (n == 5)
        n = weft_recvn(s, back, 5, timeout_ms);
    weft_close(s);
    return n == 5 && memcmp(back, "hello", 5) == 0 ? 0 : n < 0 ? (int)n : -EPROTO;
}

/* ---- weft_server_start: each allocation failing in turn ---------------------------------- */

static int sweep_nth, sweep_rc, sweep_echo, sweep_fired;
static weft_fault_kind sweep_kind;

static void echo_client(void *arg)
{
    int port = (int)(intptr_t)arg;
    sweep_echo = echo_once(port, 5000);
}

static int start_sweep_main(void *arg)
{
    (void)arg;
    weft_server *s;
    weft_server_opts o = {.host = "127.0.0.1", .on_conn = echo_handler, .on_exit = on_exit_cb};
    weft_fault_clear();
    weft_fault_set(sweep_kind, (unsigned)sweep_nth, ENOMEM);
    sweep_rc = weft_server_start(&s, &o);
    sweep_fired = (int)weft_fault_fired();
    weft_fault_clear();
    if (sweep_rc < 0)
        return 0;
    int64_t id = weft_go(echo_client, (void *)(intptr_t)weft_server_port(s));
    weft_join(id, 10000);
    weft_server_drain(s, 1000);
    weft_server_free(s);
    return 0;
}

static void sweep_start(weft_fault_kind kind, int expect_min_failures)
{
    int fds = count_fds();
    int failures = 0;
    sweep_kind = kind;
    for (sweep_nth = 1; sweep_nth < 50; sweep_nth++) {
        exits = 0;
        sweep_echo = -1;
        cr_assert_eq(weft_main(start_sweep_main, NULL, NULL), 0);
        cr_assert_eq(count_fds(), fds, "nth %d: a descriptor left behind", sweep_nth);
        if (sweep_rc < 0) {
            cr_assert_eq(sweep_rc, -ENOMEM, "nth %d: %s", sweep_nth, weft_err_name(sweep_rc));
            cr_assert_eq(exits, 0, "a server that never started has no on_exit");
            failures++;
            continue;
        }
        cr_assert_eq(sweep_echo, 0, "nth %d: %s", sweep_nth, weft_err_name(sweep_echo));
        cr_assert_eq(exits, 1);
        if (!sweep_fired)
            break; /* past the last allocation */
    }
    cr_assert_lt(sweep_nth, 50, "the sweep never got past the allocations");
    cr_assert_geq(failures, expect_min_failures, "%d failures", failures);
}

Test(server_fault, start_allocation_sweep, .timeout = 120)
{
    /* The server, its loop state, the acceptor's record (and its id table),
     * the socket's record and handle slot. */
    sweep_start(WEFT_FAULT_MALLOC, 3);
}

Test(server_fault, start_acceptor_stack_unmappable, .timeout = 60)
{
    /* The acceptor runs eagerly: a stack that cannot be mapped shows as
     * -ENOMEM from start, and nothing listens. */
    sweep_start(WEFT_FAULT_MMAP, 1);
}

/* Outside any coroutine the acceptor is queued: its stack fails later.
 * stop (or the loop's end) notices, on_exit runs once, nothing leaks. */
Test(server_fault, queued_acceptor_without_stack, .timeout = 60)
{
    for (int mode = 0; mode < 2; mode++) {
        int fds = count_fds();
        exits = 0;
        weft_loop *l;
        cr_assert_eq(weft_loop_new(&l, NULL), 0);
        weft_server *s;
        weft_server_opts o = {.host = "127.0.0.1", .on_conn = echo_handler, .on_exit = on_exit_cb};
        weft_fault_set(WEFT_FAULT_MMAP, 1, ENOMEM);
        cr_assert_eq(weft_server_start(&s, &o), 0);
        weft_loop_poll(l, 0); /* the acceptor's turn: no stack */
        cr_assert_eq(weft_fault_fired(), 1);
        weft_fault_clear();
        cr_assert_eq(exits, 0);
        if (mode == 0) {
            weft_server_stop(s);
            cr_assert_eq(exits, 1, "stop found the acceptor gone");
            weft_server_free(s);
            weft_loop_free(l);
        } else {
            weft_loop_free(l);
            cr_assert_eq(exits, 1, "the loop's end found the acceptor gone");
            weft_server_free(s);
        }
        cr_assert_eq(count_fds(), fds, "mode %d", mode);
    }
}

/* ---- accepting under faults -------------------------------------------------------------------
 */

typedef struct remote {
    int port;
    int ok, attempts, done;
    int64_t first_ms; /* until the first attempt's result */
    int first_rc;
} remote;

/* Another thread: one client that tries until served (10 s), then a
 * second one that must be served at its first attempt. */
static void *remote_clients(void *arg)
{
    remote *r = arg;
    int64_t t0 = mono_ms(), until = t0 + 10000;
    int rc;
    do {
        r->attempts++;
        rc = echo_once(r->port, 5000);
        if (r->attempts == 1) {
            r->first_rc = rc;
            r->first_ms = mono_ms() - t0;
        }
    } while (rc != 0 && mono_ms() < until);
    if (rc == 0 && echo_once(r->port, 5000) == 0)
        r->ok = 1;
    __atomic_store_n(&r->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static weft_fault_kind acc_kind;
static int acc_err, acc_nth;
static remote acc_r;
static unsigned long acc_fired;
static int64_t acc_wall_ms;

static int64_t cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

static int accept_fault_main(void *arg)
{
    (void)arg;
    weft_server *s;
    weft_server_opts o = {.host = "127.0.0.1", .on_conn = echo_handler, .on_exit = on_exit_cb};
    if (weft_server_start(&s, &o) < 0)
        return 1;
    memset(&acc_r, 0, sizeof acc_r);
    acc_r.port = weft_server_port(s);
    weft_fault_clear();
    weft_fault_set(acc_kind, (unsigned)acc_nth, acc_err);
    int64_t t0 = weft_now();
    pthread_t th;
    pthread_create(&th, NULL, remote_clients, &acc_r);
    /* Keep the loop running while the other thread works. */
    while (!__atomic_load_n(&acc_r.done, __ATOMIC_SEQ_CST))
        weft_sleep(10);
    pthread_join(th, NULL);
    acc_wall_ms = weft_now() - t0;
    acc_fired = weft_fault_fired();
    weft_fault_clear();
    weft_server_drain(s, 2000);
    weft_server_free(s);
    return 0;
}

static void accept_under(weft_fault_kind kind, int nth, int err)
{
    acc_kind = kind;
    acc_nth = nth;
    acc_err = err;
    exits = 0;
    int fds = count_fds();
    cr_assert_eq(weft_main(accept_fault_main, NULL, NULL), 0);
    cr_assert_eq(acc_r.ok, 1, "kind %d nth %d err %s: not served after %d attempts (first: %s)",
                 kind, nth, weft_err_name(-err), acc_r.attempts, weft_err_name(acc_r.first_rc));
    cr_assert_eq(exits, 1);
    cr_assert_eq(count_fds(), fds);
}

Test(server_fault, accept4_fails, .timeout = 120)
{
    int errs[] = {EMFILE, ENFILE, ENOMEM, ENOBUFS, ECONNABORTED, EPROTO};
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        accept_under(WEFT_FAULT_ACCEPT, 1, errs[i]);
        cr_assert_eq(acc_fired, 1, "%s did not fire", weft_err_name(-errs[i]));
        if (errs[i] == ECONNABORTED || errs[i] == EPROTO)
            continue; /* that connection is skipped: the client tries again */
        /* Backed off and retried: the first client is served, a little late. */
        cr_assert_eq(acc_r.first_rc, 0, "%s: %s", weft_err_name(-errs[i]),
                     weft_err_name(acc_r.first_rc));
    }
}

Test(server_fault, accepting_with_no_memory, .timeout = 300)
{
    /* Every allocation of accepting and serving one connection, in turn:
     * the socket's record, the connection's coroutine record, its id
     * table, its timers.  A failure in the handler's own calls may end
     * that connection; the server goes on. */
    int fired_any = 0;
    for (int nth = 1; nth <= 12; nth++) {
        accept_under(WEFT_FAULT_MALLOC, nth, ENOMEM);
        fired_any += acc_fired > 0;
        cr_assert_lt(acc_wall_ms, 12000);
    }
    cr_assert_gt(fired_any, 0, "no allocation failed at all");
}

Test(server_fault, connection_stack_unmappable, .timeout = 60)
{
    /* The connection's coroutine has no stack: the acceptor keeps the
     * socket, pauses, and tries again; the client is served. */
    accept_under(WEFT_FAULT_MMAP, 1, ENOMEM);
    cr_assert_eq(acc_fired, 1);
    cr_assert_eq(acc_r.first_rc, 0, "%s", weft_err_name(acc_r.first_rc));
}

/* ---- really out of descriptors --------------------------------------------------------------- */

#define EMFILE_CLIENTS 12

static int emfile_port, emfile_served;
static int64_t emfile_cpu, emfile_wall;

static void hold_handler(weft_sock *c, void *arg)
{
    (void)arg;
    char b[8];
    /* Holds the descriptor a while, so that the others must wait. */
    weft_sleep(100);
    ssize_t n = weft_recv(c, b, sizeof b, 10000);
    if (n > 0 && weft_send(c, b, (size_t)n, 5000) == n)
        emfile_served++;
}

static int emfile_main(void *arg)
{
    int wfd = (int)(intptr_t)arg;
    weft_server *s;
    weft_server_opts o = {.host = "127.0.0.1", .on_conn = hold_handler, .on_exit = on_exit_cb};
    if (weft_server_start(&s, &o) < 0)
        return 1;
    emfile_port = weft_server_port(s);
    if (write(wfd, &emfile_port, sizeof emfile_port) != sizeof emfile_port)
        return 2;
    /* Room for 3 connections at a time. */
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    struct rlimit low = {(rlim_t)count_fds() + 3, r.rlim_max};
    setrlimit(RLIMIT_NOFILE, &low);
    int64_t c0 = cpu_ms(), t0 = weft_now();
    while (emfile_served < EMFILE_CLIENTS && weft_now() - t0 < 20000)
        weft_sleep(20);
    emfile_wall = weft_now() - t0;
    emfile_cpu = cpu_ms() - c0;
    setrlimit(RLIMIT_NOFILE, &r);
    weft_server_drain(s, 2000);
    weft_server_free(s);
    return 0;
}

Test(server_fault, out_of_descriptors, .timeout = 120)
{
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* The clients: connect all at once, then each waits for its echo. */
        close(pfd[1]);
        int port = 0;
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        if (poll(&p, 1, 10000) != 1 || read(pfd[0], &port, sizeof port) != sizeof port)
            _exit(2);
        weft_sock *s[EMFILE_CLIENTS];
        for (int i = 0; i < EMFILE_CLIENTS; i++)
            if (weft_tcp_connect(&s[i], "127.0.0.1", port, 5000) < 0 ||
                weft_send(s[i], "hi", 2, 5000) != 2)
                _exit(3);
        int ok = 0;
        for (int i = 0; i < EMFILE_CLIENTS; i++) {
            char b[2];
            ok += weft_recvn(s[i], b, 2, 20000) == 2;
            weft_close(s[i]);
        }
        _exit(ok == EMFILE_CLIENTS ? 0 : 4);
    }
    close(pfd[0]);
    exits = 0;
    emfile_served = 0;
    cr_assert_eq(weft_main(emfile_main, (void *)(intptr_t)pfd[1], NULL), 0);
    close(pfd[1]);
    int st = 0;
    for (int i = 0; i < 200 && waitpid(pid, &st, WNOHANG) == 0; i++)
        usleep(50000);
    if (waitpid(pid, &st, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    cr_assert_eq(emfile_served, EMFILE_CLIENTS, "served %d", emfile_served);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "clients: status %d", st);
    cr_assert_eq(exits, 1);
    /* Backing off, not spinning, while out of descriptors. */
    cr_assert_lt(emfile_cpu, emfile_wall / 2 + 50, "%lld ms CPU in %lld ms", (long long)emfile_cpu,
                 (long long)emfile_wall);
}
