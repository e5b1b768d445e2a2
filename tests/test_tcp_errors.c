/*
 * test_tcp_errors.c - how connect, accept and listen fail: refused and
 * timed-out connects (SYNs dropped by a full accept queue), zero, negative
 * and huge timeouts, cancelling a connect, address in use, closing a
 * listener under a blocked accept, running out of descriptors while
 * accepting (in a child process with a low RLIMIT_NOFILE), connections
 * reset before accept, accept/recv timeouts and invalid addresses.
 */
#include "helpers.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

/* A pointer no weft call may store: "*out is untouched" on failure. */
#define UNTOUCHED ((weft_sock *)(uintptr_t)0x5eed)

static double cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static int raw_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -errno;
    return ntohs(a.sin_port);
}

/* A TCP socket bound to 127.0.0.1 on a free port, not listening. */
static int raw_bound(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* A port that drops SYNs: a listener with backlog 0 whose accept queue is
 * full of connections nobody accepts.  Later SYNs get no answer, so
 * connects to it can only time out or be cancelled. */
typedef struct blackhole {
    int lfd;
    int fill[3];
    int port;
} blackhole;

static void blackhole_open(blackhole *b)
{
    b->lfd = raw_bound();
    cr_assert_eq(listen(b->lfd, 0), 0);
    b->port = raw_port(b->lfd);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)b->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < 3; i++) {
        b->fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        cr_assert_geq(b->fill[i], 0);
        connect(b->fill[i], (struct sockaddr *)&a, sizeof a);
        struct pollfd p = {.fd = b->fill[i], .events = POLLOUT};
        poll(&p, 1, 100);
    }
}

static void blackhole_close(blackhole *b)
{
    for (int i = 0; i < 3; i++)
        close(b->fill[i]);
    close(b->lfd);
}

/* ---- connect refused ---------------------------------------------------------- */

typedef struct refused_run {
    int port;
    int refused, other, untouched;
    int64_t max_ms;
} refused_run;

static int refused_main(void *arg)
{
    refused_run *r = arg;
    for (int i = 0; i < 50; i++) {
        weft_sock *s = UNTOUCHED;
        int64_t t0 = weft_now();
        int rc = weft_tcp_connect(&s, "127.0.0.1", r->port, 2000);
        int64_t ms = weft_now() - t0;
        if (ms > r->max_ms)
            r->max_ms = ms;
        if (rc == -ECONNREFUSED)
            r->refused++;
        else if (rc == 0)
            weft_close(s), r->other++;
        else
            r->other++;
        r->untouched += s == UNTOUCHED;
    }
    return 0;
}

Test(tcp_errors, connect_refused, .timeout = 30)
{
    /* Bound but not listening: the port answers SYNs with RST and nobody
     * else can start listening on it meanwhile. */
    int fd = raw_bound();
    refused_run r = {.port = raw_port(fd)};
    int fds = count_fds();
    cr_assert_eq(weft_main(refused_main, &r, NULL), 0);
    cr_assert_eq(r.refused, 50, "%d refused, %d otherwise", r.refused, r.other);
    cr_assert_eq(r.untouched, 50, "*out written on failure");
    cr_assert_lt(r.max_ms, LATE_MS, "refusal took %lld ms", (long long)r.max_ms);

    /* The same outside any coroutine, where the thread waits in poll(). */
    weft_sock *s = UNTOUCHED;
    int64_t t0 = weft_now();
    cr_assert_eq(weft_tcp_connect(&s, "127.0.0.1", r.port, 2000), -ECONNREFUSED);
    cr_assert_lt(weft_now() - t0, LATE_MS);
    cr_assert_eq(s, UNTOUCHED);
    cr_assert_eq(count_fds(), fds);
    close(fd);
}

/* ---- connect timeout, zero/negative/huge timeouts, cancel --------------------- */

typedef struct to_run {
    int port;
    int64_t timeout;
    int rc;
    int64_t ms;
    weft_sock *s;
} to_run;

static int connect_timed(void *arg)
{
    to_run *r = arg;
    r->s = UNTOUCHED;
    int64_t t0 = weft_now();
    r->rc = weft_tcp_connect(&r->s, "127.0.0.1", r->port, r->timeout);
    r->ms = weft_now() - t0;
    if (r->rc == 0)
        weft_close(r->s);
    return 0;
}

Test(tcp_errors, connect_timeout_500ms, .timeout = 45)
{
    int fds = count_fds();
    blackhole b;
    blackhole_open(&b);
    to_run r = {.port = b.port, .timeout = 500};
    cr_assert_eq(weft_main(connect_timed, &r, NULL), 0);
    cr_assert_eq(r.rc, -ETIMEDOUT, "got %s", weft_err_name(r.rc));
    cr_assert_eq(r.s, UNTOUCHED);
    cr_assert(r.ms >= 500 && r.ms < 500 + LATE_MS, "timed out after %lld ms", (long long)r.ms);

    /* Outside a coroutine. */
    r = (to_run){.port = b.port, .timeout = 300};
    connect_timed(&r);
    cr_assert_eq(r.rc, -ETIMEDOUT, "got %s", weft_err_name(r.rc));
    cr_assert(r.ms >= 300 && r.ms < 300 + LATE_MS, "timed out after %lld ms", (long long)r.ms);
    blackhole_close(&b);
    cr_assert_eq(count_fds(), fds);
}

/* Timeouts 0 and negative (other than -1) only try: against a live
 * listener the connect may complete or not in that one try, but it must
 * not wait; against a port that never answers it must time out at once. */
Test(tcp_errors, connect_zero_and_negative_timeout, .timeout = 45)
{
    int fds = count_fds();
    weft_sock *l;
    int live = listen_any(&l, "127.0.0.1");
    cr_assert_gt(live, 0);
    blackhole b;
    blackhole_open(&b);
    const int64_t tos[] = {0, -2, -1000, INT64_MIN};
    for (size_t i = 0; i < sizeof tos / sizeof tos[0]; i++) {
        for (int in_co = 0; in_co < 2; in_co++) {
            to_run r = {.port = live, .timeout = tos[i]};
            if (in_co)
                cr_assert_eq(weft_main(connect_timed, &r, NULL), 0);
            else
                connect_timed(&r);
            cr_assert(r.rc == 0 || r.rc == -ETIMEDOUT, "timeout %lld: %s", (long long)tos[i],
                      weft_err_name(r.rc));
            cr_assert_lt(r.ms, LATE_MS, "timeout %lld waited %lld ms", (long long)tos[i],
                         (long long)r.ms);

            r = (to_run){.port = b.port, .timeout = tos[i]};
            if (in_co)
                cr_assert_eq(weft_main(connect_timed, &r, NULL), 0);
            else
                connect_timed(&r);
            cr_assert_eq(r.rc, -ETIMEDOUT, "timeout %lld: %s", (long long)tos[i],
                         weft_err_name(r.rc));
            cr_assert_eq(r.s, UNTOUCHED);
            cr_assert_lt(r.ms, LATE_MS, "timeout %lld waited %lld ms", (long long)tos[i],
                         (long long)r.ms);
        }
    }
    /* Drain what the live listener queued, then nothing may be left. */
    weft_sock *c;
    while (weft_tcp_accept(l, &c, 0) == 0)
        weft_close(c);
    weft_close(l);
    blackhole_close(&b);
    cr_assert_eq(count_fds(), fds);
}

/* A coroutine that connects to port and is cancelled (cancel_ms > 0)
 * after cancel_ms; then, with the cancel spent, connects to again_port. */
typedef struct cancel_run {
    int port, again_port;
    int64_t timeout, cancel_ms;
    int rc, again_rc, cancel_rc;
    int64_t ms;
    weft_sock *s;
} cancel_run;

static void cancel_connector(void *arg)
{
    cancel_run *r = arg;
    r->s = UNTOUCHED;
    int64_t t0 = weft_now();
    r->rc = weft_tcp_connect(&r->s, "127.0.0.1", r->port, r->timeout);
    r->ms = weft_now() - t0;
    if (r->rc == 0)
        weft_close(r->s);
    if (r->again_port) {
        weft_sock *s;
        r->again_rc = weft_tcp_connect(&s, "127.0.0.1", r->again_port, 2000);
        if (r->again_rc == 0)
            weft_close(s);
    }
}

static int cancel_main(void *arg)
{
    cancel_run *r = arg;
    int64_t id = weft_go(cancel_connector, r);
    weft_sleep(r->cancel_ms);
    r->cancel_rc = weft_cancel(id);
    return weft_join(id, 5000);
}

Test(tcp_errors, connect_huge_timeout, .timeout = 45)
{
    int fds = count_fds();
    weft_sock *l;
    int live = listen_any(&l, "127.0.0.1");
    cr_assert_gt(live, 0);
    /* Against a live port it just connects... */
    to_run r = {.port = live, .timeout = INT64_MAX};
    cr_assert_eq(weft_main(connect_timed, &r, NULL), 0);
    cr_assert_eq(r.rc, 0, "got %s", weft_err_name(r.rc));
    r = (to_run){.port = live, .timeout = INT64_MAX - 1};
    connect_timed(&r);
    cr_assert_eq(r.rc, 0, "got %s", weft_err_name(r.rc));

    /* ...and against one that never answers it is still waiting when it is
     * cancelled: an overflowed deadline would have ended it at once. */
    blackhole b;
    blackhole_open(&b);
    cancel_run c = {.port = b.port, .timeout = INT64_MAX, .cancel_ms = 300};
    cr_assert_eq(weft_main(cancel_main, &c, NULL), 0);
    cr_assert_eq(c.rc, -ECANCELED, "got %s after %lld ms", weft_err_name(c.rc), (long long)c.ms);
    cr_assert_geq(c.ms, 300);

    weft_sock *a;
    while (weft_tcp_accept(l, &a, 0) == 0)
        weft_close(a);
    weft_close(l);
    blackhole_close(&b);
    cr_assert_eq(count_fds(), fds);
}

Test(tcp_errors, cancel_blocked_connect, .timeout = 45)
{
    int fds = count_fds();
    weft_sock *l;
    int live = listen_any(&l, "127.0.0.1");
    cr_assert_gt(live, 0);
    blackhole b;
    blackhole_open(&b);
    cancel_run c = {.port = b.port, .again_port = live, .timeout = -1, .cancel_ms = 100};
    cr_assert_eq(weft_main(cancel_main, &c, NULL), 0);
    cr_assert_eq(c.cancel_rc, 0);
    cr_assert_eq(c.rc, -ECANCELED, "got %s", weft_err_name(c.rc));
    cr_assert_eq(c.s, UNTOUCHED);
    cr_assert(c.ms >= 100 && c.ms < 100 + LATE_MS, "cancel took effect after %lld ms",
              (long long)c.ms);
    /* The cancel is spent: the next call works normally. */
    cr_assert_eq(c.again_rc, 0, "connect after cancel: %s", weft_err_name(c.again_rc));
    weft_sock *a;
    while (weft_tcp_accept(l, &a, 0) == 0)
        weft_close(a);
    weft_close(l);
    blackhole_close(&b);
    cr_assert_eq(count_fds(), fds);
}

/* ---- address in use ------------------------------------------------------------ */

typedef struct inuse_run {
    weft_sock *l1;
    int port, connect_rc, accept_rc;
    ssize_t sent, got;
    char buf[8];
} inuse_run;

static void inuse_server(void *arg)
{
    inuse_run *r = arg;
    weft_sock *c;
    r->accept_rc = weft_tcp_accept(r->l1, &c, 2000);
    if (r->accept_rc < 0)
        return;
    r->got = weft_recvn(c, r->buf, 4, 2000);
    weft_close(c);
}

static int inuse_main(void *arg)
{
    inuse_run *r = arg;
    int64_t srv = weft_go(inuse_server, r);
    weft_sock *s;
    r->connect_rc = weft_tcp_connect(&s, "127.0.0.1", r->port, 2000);
    if (r->connect_rc == 0) {
        r->sent = weft_send(s, "ping", 4, 2000);
        weft_close(s);
    }
    return weft_join(srv, 5000);
}

Test(tcp_errors, bind_addr_in_use, .timeout = 30)
{
    int fds = count_fds();
    inuse_run r = {0};
    r.port = listen_any(&r.l1, "127.0.0.1");
    cr_assert_gt(r.port, 0);

    weft_sock *l2 = UNTOUCHED;
    cr_assert_eq(weft_tcp_listen(&l2, "127.0.0.1", r.port, 16, 0), -EADDRINUSE);
    cr_assert_eq(l2, UNTOUCHED);
    /* All interfaces includes 127.0.0.1, so it clashes too. */
    cr_assert_eq(weft_tcp_listen(&l2, NULL, r.port, 16, 0), -EADDRINUSE);
    cr_assert_eq(weft_tcp_listen(&l2, "0.0.0.0", r.port, 16, 0), -EADDRINUSE);
    cr_assert_eq(l2, UNTOUCHED);

    /* A port held by a plain bound socket. */
    int fd = raw_bound();
    cr_assert_eq(weft_tcp_listen(&l2, "127.0.0.1", raw_port(fd), 16, 0), -EADDRINUSE);
    cr_assert_eq(l2, UNTOUCHED);
    close(fd);

    /* The first listener did not notice. */
    cr_assert_eq(weft_main(inuse_main, &r, NULL), 0);
    cr_assert_eq(r.connect_rc, 0);
    cr_assert_eq(r.accept_rc, 0);
    cr_assert_eq(r.sent, 4);
    cr_assert_eq(r.got, 4);
    cr_assert_str_eq(r.buf, "ping");
    weft_close(r.l1);
    cr_assert_eq(count_fds(), fds);
}

/* ---- closing a listener under a blocked accept ------------------------------- */

typedef struct lclose_run {
    weft_sock *l;
    int port, accept_rc, close_rc, refused_rc;
    int64_t ms;
    weft_sock *out;
} lclose_run;

static void lclose_acceptor(void *arg)
{
    lclose_run *r = arg;
    r->out = UNTOUCHED;
    int64_t t0 = weft_now();
    r->accept_rc = weft_tcp_accept(r->l, &r->out, -1);
    r->ms = weft_now() - t0;
}

static int lclose_main(void *arg)
{
    lclose_run *r = arg;
    r->port = listen_any(&r->l, "127.0.0.1");
    if (r->port < 0)
        return r->port;
    int64_t id = weft_go(lclose_acceptor, r);
    weft_sleep(50);
    r->close_rc = weft_close(r->l);
    int rc = weft_join(id, 2000);
    weft_sock *s;
    r->refused_rc = weft_tcp_connect(&s, "127.0.0.1", r->port, 1000);
    if (r->refused_rc == 0)
        weft_close(s);
    return rc;
}

Test(tcp_errors, listener_close_unblocks_accept, .timeout = 30)
{
    int fds = count_fds();
    lclose_run r = {0};
    cr_assert_eq(weft_main(lclose_main, &r, NULL), 0);
    cr_assert_eq(r.close_rc, 0);
    cr_assert_eq(r.accept_rc, -EBADF, "got %s", weft_err_name(r.accept_rc));
    cr_assert_eq(r.out, UNTOUCHED);
    cr_assert(r.ms >= 50 && r.ms < 50 + LATE_MS, "accept returned after %lld ms", (long long)r.ms);
    cr_assert_eq(r.refused_rc, -ECONNREFUSED, "got %s", weft_err_name(r.refused_rc));
    cr_assert_eq(count_fds(), fds);
}

/* ---- out of descriptors while accepting --------------------------------------- */

#define EMFILE_CLIENTS 100
#define EMFILE_LIMIT 32
#define EMFILE_FREED 10

typedef struct emfile_report {
    int base_fds;
    int held1, held2;  /* connections accepted in phase 1 and in phase 2 */
    int emfile, other; /* accept results in phase 1 */
    int other_err;
    double cpu_ms, wall_ms;
    unsigned long accept_calls;
} emfile_report;

static weft_sock *emfile_held[EMFILE_CLIENTS];
static int emfile_nheld;

/* Accepts into emfile_held until want connections are held or until. */
static int emfile_accept_until(weft_sock *l, emfile_report *rep, int64_t until, int want)
{
    int got = 0;
    while (emfile_nheld < want && weft_now() < until) {
        int64_t left = until - weft_now();
        weft_sock *c;
        int rc = weft_tcp_accept(l, &c, left < 200 ? left : 200);
        if (rc == 0) {
            emfile_held[emfile_nheld++] = c;
            got++;
        } else if (rc == -EMFILE) {
            rep->emfile++;
        } else if (rc != -ETIMEDOUT) {
            rep->other++;
            rep->other_err = rc;
        }
    }
    return got;
}

static int emfile_server(void *arg)
{
    int wfd = (int)(intptr_t)arg;
    emfile_report rep = {0};
    weft_sock *l;
    int port = listen_any(&l, "127.0.0.1");
    if (write(wfd, &port, sizeof port) != sizeof port || port < 0)
        return 1;
    rep.base_fds = count_fds();

    /* Phase 1: the clients arrive; the table fills up and accept must back
     * off instead of spinning on EMFILE. */
    weft_fault_clear();
    double c0 = cpu_ms();
    int64_t t0 = weft_now();
    rep.held1 = emfile_accept_until(l, &rep, t0 + 3000, EMFILE_CLIENTS);
    rep.wall_ms = (double)(weft_now() - t0);
    rep.cpu_ms = cpu_ms() - c0;
    rep.accept_calls = weft_fault_calls(WEFT_FAULT_ACCEPT);

    /* Phase 2: free some descriptors; queued clients get in again. */
    int freed = emfile_nheld < EMFILE_FREED ? emfile_nheld : EMFILE_FREED;
    for (int i = 0; i < freed; i++)
        weft_close(emfile_held[--emfile_nheld]);
    rep.held2 = emfile_accept_until(l, &rep, weft_now() + 3000, emfile_nheld + freed);

    while (emfile_nheld > 0)
        weft_close(emfile_held[--emfile_nheld]);
    weft_close(l);
    return write(wfd, &rep, sizeof rep) == sizeof rep ? 0 : 1;
}

Test(tcp_errors, emfile_accept_backs_off, .timeout = 90)
{
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(pfd[0]);
        struct rlimit rl;
        getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = EMFILE_LIMIT;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            _exit(2);
        _exit(weft_main(emfile_server, (void *)(intptr_t)pfd[1], NULL) == 0 ? 0 : 3);
    }
    close(pfd[1]);
    int port = -1;
    cr_assert_eq(read(pfd[0], &port, sizeof port), (ssize_t)sizeof port);
    cr_assert_gt(port, 0);

    int cl[EMFILE_CLIENTS];
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int connected = 0;
    for (int i = 0; i < EMFILE_CLIENTS; i++) {
        cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        connected += cl[i] >= 0 && connect(cl[i], (struct sockaddr *)&a, sizeof a) == 0;
    }

    emfile_report rep = {.held1 = -1};
    struct pollfd p = {.fd = pfd[0], .events = POLLIN};
    int ready = poll(&p, 1, 20000);
    ssize_t n = ready == 1 ? read(pfd[0], &rep, sizeof rep) : -1;
    if (ready != 1)
        kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    for (int i = 0; i < EMFILE_CLIENTS; i++)
        close(cl[i]);
    close(pfd[0]);

    cr_assert_eq(connected, EMFILE_CLIENTS);
    cr_assert_eq(n, (ssize_t)sizeof rep, "no report from the server child");
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    cr_log_info("emfile: base %d fds, held %d, then %d more; %d EMFILE; %lu accept calls; "
                "%.1f ms CPU over %.0f ms",
                rep.base_fds, rep.held1, rep.held2, rep.emfile, rep.accept_calls, rep.cpu_ms,
                rep.wall_ms);
    cr_assert_lt(rep.base_fds, EMFILE_LIMIT - EMFILE_FREED, "no room to test with");
    cr_assert_eq(rep.other, 0, "accept failed with %s", weft_err_name(rep.other_err));
    cr_assert_gt(rep.held1, 0);
    cr_assert_lt(rep.held1, EMFILE_CLIENTS, "the limit never bit");
    cr_assert_gt(rep.emfile, 0, "EMFILE never surfaced");
    cr_assert_geq(rep.wall_ms, 3000.0);
    cr_assert_lt(rep.cpu_ms, 0.2 * rep.wall_ms, "accept spun: %.0f ms CPU over %.0f ms", rep.cpu_ms,
                 rep.wall_ms);
    cr_assert_lt(rep.accept_calls, 1000, "%lu accept calls in 3 s", rep.accept_calls);
    cr_assert_eq(rep.held2, EMFILE_FREED, "after freeing %d fds, %d accepted", EMFILE_FREED,
                 rep.held2);
}

/* ---- connection reset before accept ------------------------------------------- */

typedef struct aborted_run {
    int port;
    weft_sock *l;
    int accept_rc;
    int peer_port, good_port;
    ssize_t got;
    char buf[8];
} aborted_run;

static int aborted_main(void *arg)
{
    aborted_run *r = arg;
    weft_sleep(50); /* the RST has been processed */
    weft_sock *c;
    r->accept_rc = weft_tcp_accept(r->l, &c, 1000);
    if (r->accept_rc < 0)
        return 0;
    weft_addr pa;
    if (weft_sock_peer(c, &pa) == 0)
        r->peer_port = weft_addr_port(&pa);
    r->got = weft_recv(c, r->buf, sizeof r->buf - 1, 1000);
    weft_close(c);
    return 0;
}

Test(tcp_errors, accept_skips_aborted, .timeout = 30)
{
    int fds = count_fds();
    aborted_run r = {0};
    r.port = listen_any(&r.l, "127.0.0.1");
    cr_assert_gt(r.port, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)r.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* Connects (the handshake completes in the backlog), then aborts. */
    int bad = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(bad, (struct sockaddr *)&a, sizeof a), 0);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    cr_assert_eq(setsockopt(bad, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(bad);
    int good = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(good, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(write(good, "ok", 2), 2);
    r.good_port = raw_port(good);

    int rc = weft_main(aborted_main, &r, NULL);
    close(good);
    weft_close(r.l);
    cr_assert_eq(rc, 0);
    cr_assert_eq(r.accept_rc, 0, "accept: %s", weft_err_name(r.accept_rc));
    cr_assert_eq(r.peer_port, r.good_port,
                 "accept returned the aborted connection (peer port %d, good one is %d; "
                 "its recv gave %zd %s)",
                 r.peer_port, r.good_port, r.got, r.got < 0 ? weft_err_name((int)r.got) : "");
    cr_assert_eq(r.got, 2);
    cr_assert_str_eq(r.buf, "ok");
    cr_assert_eq(count_fds(), fds);
}

/* ---- accept and recv timeouts --------------------------------------------------- */

typedef struct tmo_run {
    int accept_rc, recv_rc, recvn_rc, after_rc;
    int64_t accept_ms, recv_ms, recvn_ms;
    char buf[8];
} tmo_run;

static int tmo_main(void *arg)
{
    tmo_run *r = arg;
    weft_sock *l, *a, *b;
    int port = listen_any(&l, "127.0.0.1");
    if (port < 0)
        return port;
    int64_t t0 = weft_now();
    r->accept_rc = weft_tcp_accept(l, &b, 100);
    r->accept_ms = weft_now() - t0;
    if (weft_tcp_connect(&a, "127.0.0.1", port, 1000) < 0 || weft_tcp_accept(l, &b, 1000) < 0)
        return -1;
    weft_close(l);

    t0 = weft_now();
    r->recv_rc = (int)weft_recv(b, r->buf, sizeof r->buf, 100);
    r->recv_ms = weft_now() - t0;
    /* recvn: a partial record, then silence. */
    weft_send(a, "ab", 2, 1000);
    t0 = weft_now();
    r->recvn_rc = (int)weft_recvn(b, r->buf, 4, 100);
    r->recvn_ms = weft_now() - t0;
    /* The connection is still usable after the timeouts. */
    weft_send(a, "xyz", 3, 1000);
    r->after_rc = (int)weft_recvn(b, r->buf, 3, 1000);
    weft_close(a);
    weft_close(b);
    return 0;
}

Test(tcp_errors, accept_and_recv_timeouts, .timeout = 30)
{
    int fds = count_fds();
    tmo_run r = {0};
    cr_assert_eq(weft_main(tmo_main, &r, NULL), 0);
    cr_assert_eq(r.accept_rc, -ETIMEDOUT, "accept: %s", weft_err_name(r.accept_rc));
    cr_assert(r.accept_ms >= 100 && r.accept_ms < 100 + LATE_MS, "accept: %lld ms",
              (long long)r.accept_ms);
    cr_assert_eq(r.recv_rc, -ETIMEDOUT, "recv: %s", weft_err_name(r.recv_rc));
    cr_assert(r.recv_ms >= 100 && r.recv_ms < 100 + LATE_MS, "recv: %lld ms", (long long)r.recv_ms);
    cr_assert_eq(r.recvn_rc, -ETIMEDOUT, "recvn: %s", weft_err_name(r.recvn_rc));
    cr_assert(r.recvn_ms >= 100 && r.recvn_ms < 100 + LATE_MS, "recvn: %lld ms",
              (long long)r.recvn_ms);
    cr_assert_eq(r.after_rc, 3);
    cr_assert(memcmp(r.buf, "xyz", 3) == 0);

    /* Outside a coroutine the thread waits in poll() for the same time. */
    weft_sock *l, *c = UNTOUCHED;
    cr_assert_gt(listen_any(&l, "127.0.0.1"), 0);
    int64_t t0 = weft_now();
    cr_assert_eq(weft_tcp_accept(l, &c, 100), -ETIMEDOUT);
    int64_t ms = weft_now() - t0;
    cr_assert(ms >= 100 && ms < 100 + LATE_MS, "accept outside a coroutine: %lld ms",
              (long long)ms);
    cr_assert_eq(c, UNTOUCHED);
    weft_close(l);
    cr_assert_eq(count_fds(), fds);
}

/* ---- invalid arguments ------------------------------------------------------------ */

Test(tcp_errors, connect_invalid_host_or_port, .timeout = 30)
{
    int fds = count_fds();
    /* Neither addresses nor host names: refused before any lookup.  Names
     * are test_resolve's business (against a local DNS server). */
    static const char *const hosts[] = {"::1::2", "127.0.0.1:80", "[::1", "", "a b", "x..y"};
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        weft_sock *s = UNTOUCHED;
        int64_t t0 = weft_now();
        int rc = weft_tcp_connect(&s, hosts[i], 80, 1000);
        cr_assert_eq(rc, WEFT_EAI_BADNAME, "\"%s\": %s", hosts[i], weft_err_name(rc));
        cr_assert_eq(s, UNTOUCHED);
        cr_assert_lt(weft_now() - t0, LATE_MS);
    }
    weft_sock *s = UNTOUCHED;
    cr_assert_eq(weft_tcp_connect(&s, NULL, 80, 1000), -EINVAL);
    cr_assert_eq(weft_tcp_connect(&s, "127.0.0.1", 0, 1000), -EINVAL);
    cr_assert_eq(weft_tcp_connect(&s, "127.0.0.1", -1, 1000), -EINVAL);
    cr_assert_eq(weft_tcp_connect(&s, "127.0.0.1", 65536, 1000), -EINVAL);
    cr_assert_eq(s, UNTOUCHED);
    cr_assert_eq(weft_tcp_listen(&s, "not an ip", 0, 0, 0), WEFT_EAI_BADNAME);
    cr_assert_eq(weft_tcp_listen(&s, "127.0.0.1", 65536, 0, 0), -EINVAL);
    cr_assert_eq(weft_tcp_listen(&s, "127.0.0.1", 0, 0, 0x100), -EINVAL);
    cr_assert_eq(s, UNTOUCHED);
    cr_assert_eq(count_fds(), fds);
}

/* accept on a connected (not listening) socket is -EINVAL. */
static int notlistener_main(void *arg)
{
    int *rc = arg;
    weft_sock *l, *a, *b, *c = UNTOUCHED;
    int port = listen_any(&l, "127.0.0.1");
    if (port < 0 || weft_tcp_connect(&a, "127.0.0.1", port, 1000) < 0 ||
        weft_tcp_accept(l, &b, 1000) < 0)
        return -1;
    *rc = weft_tcp_accept(a, &c, 100);
    if (c != UNTOUCHED)
        *rc = -1000;
    weft_close(a);
    weft_close(b);
    weft_close(l);
    return 0;
}

Test(tcp_errors, accept_on_non_listener, .timeout = 30)
{
    int fds = count_fds();
    int rc = 0;
    cr_assert_eq(weft_main(notlistener_main, &rc, NULL), 0);
    cr_assert_eq(rc, -EINVAL, "got %s", weft_err_name(rc));
    cr_assert_eq(count_fds(), fds);
}
