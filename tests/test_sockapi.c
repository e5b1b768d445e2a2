/*
 * test_sockapi.c - the small socket surface around the data path: options
 * (nodelay, keepalive, buffer sizes, blocking mode) read back with
 * getsockopt; weft_sock_wrap; local and peer addresses; weft_tcp_listen's
 * flags (REUSEPORT, V6ONLY, dual-stack "*"); shutdown; weft_sock_poll;
 * argument checks of close, recv/send and the scatter/gather calls.
 * Most calls are made both from a coroutine and from a plain thread with no
 * loop, where they must block the thread in poll() and still honour their
 * timeouts; one test runs a whole exchange that way with a pthread peer.
 */
#include "helpers.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000LL

/* Asserts that a call measured from t0 took [lo, hi) milliseconds. */
#define assert_took(ns, lo, hi)                                                                    \
    cr_assert((ns) >= (lo)*MS && (ns) < (hi)*MS, "took %.1f ms, wanted [%d, %d)",                  \
              (double)(ns) / MS, (lo), (hi))

static int get_int(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    if (getsockopt(fd, level, name, &v, &len) != 0)
        return -errno;
    return v;
}

static bool fd_nonblocking(int fd)
{
    return (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
}

static bool fd_cloexec(int fd)
{
    return (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
}

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

/* A listener with one accepted connection: c is the client end, s the
 * server end.  Works on a plain thread and inside a coroutine. */
typedef struct pair {
    weft_sock *l, *c, *s;
    int port;
} pair;

static int pair_open(pair *p, const char *host)
{
    memset(p, 0, sizeof *p);
    int port = listen_any(&p->l, host);
    if (port <= 0)
        return port < 0 ? port : -EINVAL;
    p->port = port;
    int rc = weft_tcp_connect(&p->c, host, port, 2000);
    if (rc == 0)
        rc = weft_tcp_accept(p->l, &p->s, 2000);
    if (rc < 0) {
        if (p->c)
            weft_close(p->c);
        weft_close(p->l);
        memset(p, 0, sizeof *p);
    }
    return rc;
}

static void pair_close(pair *p)
{
    if (p->c)
        weft_close(p->c);
    if (p->s)
        weft_close(p->s);
    if (p->l)
        weft_close(p->l);
    memset(p, 0, sizeof *p);
}

static bool have_ipv6(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* ---- options ---------------------------------------------------------------- */

Test(sockopt, nodelay_reads_back, .timeout = 30)
{
    pair p;
    cr_assert_eq(pair_open(&p, "127.0.0.1"), 0);
    int fd = weft_sock_fd(p.c);
    cr_assert_geq(fd, 0);
    cr_assert_eq(weft_sock_set_nodelay(p.c, 1), 0);
    cr_assert_neq(get_int(fd, IPPROTO_TCP, TCP_NODELAY), 0);
    cr_assert_eq(weft_sock_set_nodelay(p.c, 0), 0);
    cr_assert_eq(get_int(fd, IPPROTO_TCP, TCP_NODELAY), 0);
    cr_assert_eq(weft_sock_set_nodelay(p.c, 7), 0); /* any non-zero means on */
    cr_assert_neq(get_int(fd, IPPROTO_TCP, TCP_NODELAY), 0);
    pair_close(&p);
}

Test(sockopt, keepalive_reads_back, .timeout = 30)
{
    pair p;
    cr_assert_eq(pair_open(&p, "127.0.0.1"), 0);
    int fd = weft_sock_fd(p.s);
    cr_assert_eq(weft_sock_set_keepalive(p.s, 1, 30, 5, 4), 0);
    cr_assert_neq(get_int(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
    cr_assert_eq(get_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 30);
    cr_assert_eq(get_int(fd, IPPROTO_TCP, TCP_KEEPINTVL), 5);
    cr_assert_eq(get_int(fd, IPPROTO_TCP, TCP_KEEPCNT), 4);

    /* <= 0 leaves each one as it is. */
    cr_assert_eq(weft_sock_set_keepalive(p.s, 1, 0, -1, 0), 0);
    cr_assert_eq(get_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 30);
    cr_assert_eq(get_int(fd, IPPROTO_TCP, TCP_KEEPINTVL), 5);
    cr_assert_eq(get_int(fd, IPPROTO_TCP, TCP_KEEPCNT), 4);
    cr_assert_eq(weft_sock_set_keepalive(p.s, 1, 60, 0, 9), 0);
    cr_assert_eq(get_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 60);
    cr_assert_eq(get_int(fd, IPPROTO_TCP, TCP_KEEPINTVL), 5);
    cr_assert_eq(get_int(fd, IPPROTO_TCP, TCP_KEEPCNT), 9);

    cr_assert_eq(weft_sock_set_keepalive(p.s, 0, 10, 10, 10), 0);
    cr_assert_eq(get_int(fd, SOL_SOCKET, SO_KEEPALIVE), 0);

    /* Linux caps TCP_KEEPIDLE at 32767 s: the setsockopt error comes back. */
    cr_assert_eq(weft_sock_set_keepalive(p.s, 1, 40000, 0, 0), -EINVAL);
    pair_close(&p);
}

Test(sockopt, bufsize_reads_back_doubled, .timeout = 30)
{
    pair p;
    cr_assert_eq(pair_open(&p, "127.0.0.1"), 0);
    int fd = weft_sock_fd(p.c);
    cr_assert_eq(weft_sock_set_bufsize(p.c, 32768, 49152), 0);
    cr_assert_eq(get_int(fd, SOL_SOCKET, SO_RCVBUF), 65536);
    cr_assert_eq(get_int(fd, SOL_SOCKET, SO_SNDBUF), 98304);
    cr_assert_eq(weft_sock_set_bufsize(p.c, 0, 40960), 0);
    cr_assert_eq(get_int(fd, SOL_SOCKET, SO_RCVBUF), 65536);
    cr_assert_eq(get_int(fd, SOL_SOCKET, SO_SNDBUF), 81920);
    cr_assert_eq(weft_sock_set_bufsize(p.c, 36864, 0), 0);
    cr_assert_eq(get_int(fd, SOL_SOCKET, SO_RCVBUF), 73728);
    cr_assert_eq(get_int(fd, SOL_SOCKET, SO_SNDBUF), 81920);
    cr_assert_eq(weft_sock_set_bufsize(p.c, -1, 0), -EINVAL);
    cr_assert_eq(weft_sock_set_bufsize(p.c, 0, -1), -EINVAL);
    cr_assert_eq(get_int(fd, SOL_SOCKET, SO_RCVBUF), 73728);
    pair_close(&p);
}

Test(sockopt, blocking_toggles_o_nonblock, .timeout = 30)
{
    pair p;
    cr_assert_eq(pair_open(&p, "127.0.0.1"), 0);
    weft_sock *all[] = {p.l, p.c, p.s};
    for (int i = 0; i < 3; i++) {
        int fd = weft_sock_fd(all[i]);
        cr_assert(fd_nonblocking(fd), "weft sockets start non-blocking");
        cr_assert(fd_cloexec(fd), "weft sockets are close-on-exec");
        cr_assert_eq(weft_sock_set_blocking(all[i], 1), 0);
        cr_assert_not(fd_nonblocking(fd));
        cr_assert_eq(weft_sock_set_blocking(all[i], 0), 0);
        cr_assert(fd_nonblocking(fd));
    }
    pair_close(&p);
}

/* ---- weft calls on a descriptor in blocking mode ------------------------------ */

typedef struct blk_result {
    int pair_rc;
    ssize_t idle_rc;
    int64_t idle_ns;
    int ticks_during_idle; /* other coroutines ran meanwhile (loop mode) */
    ssize_t small_send, small_recv, back_recv;
    char back[8];
    ssize_t big_rc;
    int64_t big_ns;
    size_t big_sent;
    int acc_idle_rc;
    int64_t acc_idle_ns;
    int acc_rc, conn_rc;
    ssize_t after_recv;
    bool still_blocking;
} blk_result;

static blk_result blk;
static volatile bool ticker_stop;
static int ticks;

static void ticker(void *arg)
{
    (void)arg;
    while (!ticker_stop && weft_sleep(5) == 0)
        ticks++;
}

static void blocking_scenario(blk_result *r)
{
    pair p;
    memset(r, 0, sizeof *r);
    if ((r->pair_rc = pair_open(&p, "127.0.0.1")) < 0)
        return;
    weft_sock_set_blocking(p.s, 1);
    weft_sock_set_blocking(p.l, 1);

    bool in_loop = weft_self() != 0;
    ticker_stop = false;
    ticks = 0;
    int64_t tk = in_loop ? weft_go(ticker, NULL) : 0;
    char buf[64];
    int64_t t0 = mono_ns();
    r->idle_rc = weft_recv(p.s, buf, sizeof buf, 100);
    r->idle_ns = mono_ns() - t0;
    r->ticks_during_idle = ticks;
    ticker_stop = true;
    if (tk > 0)
        weft_join(tk, 1000);

    r->small_send = weft_send(p.s, "hello", 5, 1000);
    r->small_recv = weft_recvn(p.c, buf, 5, 1000);
    weft_send(p.c, "back", 4, 1000);
    r->back_recv = weft_recvn(p.s, r->back, 4, 1000);

    /* The peer never reads: small buffers make the send run out of room. */
    weft_sock_set_bufsize(p.c, 16384, 0);
    weft_sock_set_bufsize(p.s, 0, 16384);
    size_t big = 8 << 20;
    char *data = calloc(1, big);
    t0 = mono_ns();
    r->big_rc = data ? weft_send(p.s, data, big, 200) : -ENOMEM;
    r->big_ns = mono_ns() - t0;
    r->big_sent = weft_sock_sent(p.s);
    free(data);

    t0 = mono_ns();
    weft_sock *extra = NULL, *cl = NULL;
    r->acc_idle_rc = weft_tcp_accept(p.l, &extra, 100);
    r->acc_idle_ns = mono_ns() - t0;
    if (extra)
        weft_close(extra);
    extra = NULL;
    r->conn_rc = weft_tcp_connect(&cl, "127.0.0.1", p.port, 1000);
    r->acc_rc = weft_tcp_accept(p.l, &extra, 1000);
    if (r->conn_rc == 0 && r->acc_rc == 0) {
        weft_send(cl, "z", 1, 1000);
        r->after_recv = weft_recv(extra, buf, sizeof buf, 1000);
    }
    if (cl)
        weft_close(cl);
    if (extra)
        weft_close(extra);
    r->still_blocking = !fd_nonblocking(weft_sock_fd(p.s)) && !fd_nonblocking(weft_sock_fd(p.l));
    pair_close(&p);
}

static int blocking_main(void *arg)
{
    (void)arg;
    blocking_scenario(&blk);
    return 0;
}

static void check_blocking(const blk_result *r, bool in_loop)
{
    cr_assert_eq(r->pair_rc, 0);
    cr_assert_eq(r->idle_rc, -ETIMEDOUT, "recv on an idle blocking fd: %zd", r->idle_rc);
    assert_took(r->idle_ns, 100, 100 + LATE_MS);
    if (in_loop)
        cr_assert_geq(r->ticks_during_idle, 3, "the loop stalled: %d ticks in 100 ms",
                      r->ticks_during_idle);
    cr_assert_eq(r->small_send, 5);
    cr_assert_eq(r->small_recv, 5);
    cr_assert_eq(r->back_recv, 4);
    cr_assert_eq(memcmp(r->back, "back", 4), 0);
    cr_assert_eq(r->big_rc, -ETIMEDOUT, "send to a reader that never reads: %zd", r->big_rc);
    assert_took(r->big_ns, 200, 200 + LATE_MS);
    cr_assert(r->big_sent > 0 && r->big_sent < (8u << 20), "sent %zu", r->big_sent);
    cr_assert_eq(r->acc_idle_rc, -ETIMEDOUT);
    assert_took(r->acc_idle_ns, 100, 100 + LATE_MS);
    cr_assert_eq(r->conn_rc, 0);
    cr_assert_eq(r->acc_rc, 0);
    cr_assert_eq(r->after_recv, 1);
    cr_assert(r->still_blocking, "weft changed the descriptor's mode behind the caller");
}

Test(blocking_fd, plain_thread_calls_honour_timeouts, .timeout = 60)
{
    int fds = count_fds();
    blocking_scenario(&blk);
    check_blocking(&blk, false);
    cr_assert_eq(count_fds(), fds);
}

Test(blocking_fd, coroutine_calls_honour_timeouts, .timeout = 60)
{
    int fds = count_fds();
    cr_assert_eq(weft_main(blocking_main, NULL, NULL), 0);
    check_blocking(&blk, true);
    cr_assert_eq(count_fds(), fds);
}

/* ---- wrap ------------------------------------------------------------------------ */

Test(wrap, socketpair_end, .timeout = 30)
{
    int fds = count_fds();
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cr_assert_not(fd_nonblocking(sv[0]));
    weft_sock *w = NULL;
    cr_assert_eq(weft_sock_wrap(&w, sv[0]), 0);
    cr_assert_not_null(w);
    cr_assert_eq(weft_sock_fd(w), sv[0]);
    cr_assert(fd_nonblocking(sv[0]), "wrap must make the fd non-blocking");
    cr_assert(fd_cloexec(sv[0]), "wrap must make the fd close-on-exec");

    char buf[16] = {0};
    cr_assert_eq(weft_send(w, "abc", 3, 1000), 3);
    cr_assert_eq(read(sv[1], buf, sizeof buf), 3);
    cr_assert_eq(memcmp(buf, "abc", 3), 0);
    cr_assert_eq(write(sv[1], "xyz", 3), 3);
    cr_assert_eq(weft_recv(w, buf, sizeof buf, 1000), 3);
    cr_assert_eq(memcmp(buf, "xyz", 3), 0);
    int64_t t0 = mono_ns();
    cr_assert_eq(weft_recv(w, buf, sizeof buf, 50), -ETIMEDOUT);
    assert_took(mono_ns() - t0, 50, 50 + LATE_MS);

    weft_addr a;
    cr_assert_eq(weft_sock_local(w, &a), 0);
    cr_assert_eq(a.u.sa.sa_family, AF_UNIX);

    cr_assert_eq(weft_close(w), 0);
    struct pollfd pf = {.fd = sv[1], .events = POLLIN};
    cr_assert_eq(poll(&pf, 1, 1000), 1, "the peer never saw the close");
    cr_assert_eq(read(sv[1], buf, sizeof buf), 0, "weft_close did not close the fd");
    close(sv[1]);
    cr_assert_eq(count_fds(), fds);
}

/* A listening socket made without weft, on 127.0.0.1; returns its port. */
static int raw_listener(int *out)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *out = fd;
    return ntohs(a.sin_port);
}

Test(wrap, plain_accepted_fd, .timeout = 30)
{
    int fds = count_fds();
    int lfd, port = raw_listener(&lfd);
    cr_assert_gt(port, 0);
    weft_sock *c;
    cr_assert_eq(weft_tcp_connect(&c, "127.0.0.1", port, 2000), 0);
    int fd = accept(lfd, NULL, NULL); /* blocking: the connection is queued */
    cr_assert_geq(fd, 0);
    cr_assert_not(fd_nonblocking(fd));
    cr_assert_not(fd_cloexec(fd));

    weft_sock *w;
    cr_assert_eq(weft_sock_wrap(&w, fd), 0);
    cr_assert(fd_nonblocking(fd));
    cr_assert(fd_cloexec(fd));
    cr_assert_eq(peer_port(w), local_port(c));
    cr_assert_eq(local_port(w), port);

    char buf[16];
    cr_assert_eq(weft_send(c, "ping", 4, 1000), 4);
    cr_assert_eq(weft_recvn(w, buf, 4, 1000), 4);
    cr_assert_eq(memcmp(buf, "ping", 4), 0);
    cr_assert_eq(weft_send(w, "pong", 4, 1000), 4);
    cr_assert_eq(weft_recvn(c, buf, 4, 1000), 4);
    cr_assert_eq(memcmp(buf, "pong", 4), 0);

    cr_assert_eq(weft_close(w), 0);
    cr_assert_eq(weft_recv(c, buf, sizeof buf, 1000), 0, "peer must see EOF after weft_close");
    weft_close(c);
    close(lfd);
    cr_assert_eq(count_fds(), fds);
}

Test(wrap, listening_fd_accepts, .timeout = 30)
{
    int fds = count_fds();
    int lfd, port = raw_listener(&lfd);
    cr_assert_gt(port, 0);
    weft_sock *l, *c, *s;
    cr_assert_eq(weft_sock_wrap(&l, lfd), 0);
    cr_assert_eq(weft_tcp_connect(&c, "127.0.0.1", port, 2000), 0);
    cr_assert_eq(weft_tcp_accept(l, &s, 2000), 0);
    cr_assert_eq(peer_port(s), local_port(c));
    /* A connected socket is not a listener. */
    weft_sock *x = (weft_sock *)&fds;
    cr_assert_eq(weft_tcp_accept(s, &x, 100), -EINVAL);
    cr_assert_eq(x, (weft_sock *)&fds);
    weft_close(s);
    weft_close(c);
    weft_close(l);
    cr_assert_eq(count_fds(), fds);
}

Test(wrap, errors_leave_fd_with_caller, .timeout = 30)
{
    int fds = count_fds();
    weft_sock *sentinel = (weft_sock *)&fds, *w = sentinel;
    int pp[2];
    cr_assert_eq(pipe(pp), 0);
    cr_assert_eq(weft_sock_wrap(&w, pp[0]), -ENOTSOCK);
    cr_assert_eq(w, sentinel);
    cr_assert(fd_open(pp[0]), "a failed wrap must not close the caller's fd");
    cr_assert_not(fd_nonblocking(pp[0]), "a failed wrap must not change the fd");
    cr_assert_eq(write(pp[1], "k", 1), 1);
    char ch;
    cr_assert_eq(read(pp[0], &ch, 1), 1);
    close(pp[0]);
    close(pp[1]);

    cr_assert_eq(weft_sock_wrap(&w, -1), -EBADF);
    cr_assert_eq(weft_sock_wrap(&w, INT_MAX), -EBADF);
    cr_assert_eq(w, sentinel);
    cr_assert_eq(count_fds(), fds);
}

/* ---- addresses and descriptors ---------------------------------------------------- */

Test(sockaddr, local_and_peer, .timeout = 30)
{
    pair p;
    cr_assert_eq(pair_open(&p, "127.0.0.1"), 0);
    weft_addr a;
    char buf[64], want[64];

    cr_assert_eq(weft_sock_local(p.l, &a), 0);
    cr_assert_eq(a.u.sa.sa_family, AF_INET);
    cr_assert_eq(a.u.in.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    cr_assert_eq(weft_addr_port(&a), p.port);
    cr_assert_gt(weft_addr_format(&a, buf, sizeof buf), 0);
    snprintf(want, sizeof want, "127.0.0.1:%d", p.port);
    cr_assert_str_eq(buf, want);

    cr_assert_eq(weft_sock_peer(p.l, &a), -ENOTCONN);

    cr_assert_eq(peer_port(p.c), p.port);
    cr_assert_eq(local_port(p.s), p.port);
    cr_assert_eq(peer_port(p.s), local_port(p.c));
    cr_assert_neq(local_port(p.c), p.port);
    cr_assert_eq(weft_sock_peer(p.s, &a), 0);
    cr_assert_eq(a.u.in.sin_addr.s_addr, htonl(INADDR_LOOPBACK));

    /* Three distinct live descriptors, each the socket it should be. */
    int fl = weft_sock_fd(p.l), fc = weft_sock_fd(p.c), fs = weft_sock_fd(p.s);
    cr_assert(fl >= 0 && fc >= 0 && fs >= 0);
    cr_assert(fl != fc && fc != fs && fl != fs);
    cr_assert_eq(get_int(fl, SOL_SOCKET, SO_ACCEPTCONN), 1);
    cr_assert_eq(get_int(fc, SOL_SOCKET, SO_ACCEPTCONN), 0);
    cr_assert_eq(get_int(fs, SOL_SOCKET, SO_TYPE), SOCK_STREAM);
    pair_close(&p);
}

Test(sockaddr, ipv6_local_and_peer, .timeout = 30)
{
    if (!have_ipv6())
        cr_skip_test("no IPv6 loopback");
    pair p;
    cr_assert_eq(pair_open(&p, "::1"), 0);
    weft_addr a;
    char buf[64], want[64];
    cr_assert_eq(weft_sock_peer(p.c, &a), 0);
    cr_assert_eq(a.u.sa.sa_family, AF_INET6);
    cr_assert(IN6_IS_ADDR_LOOPBACK(&a.u.in6.sin6_addr));
    cr_assert_gt(weft_addr_format(&a, buf, sizeof buf), 0);
    snprintf(want, sizeof want, "[::1]:%d", p.port);
    cr_assert_str_eq(buf, want);
    cr_assert_eq(peer_port(p.s), local_port(p.c));
    pair_close(&p);
}

/* ---- listen flags -------------------------------------------------------------------- */

Test(listen_flags, without_reuseport_second_is_eaddrinuse, .timeout = 30)
{
    int fds = count_fds();
    weft_sock *l1, *sentinel = (weft_sock *)&fds, *l2 = sentinel;
    int port = listen_any(&l1, "127.0.0.1");
    cr_assert_gt(port, 0);
    int mid = count_fds();
    cr_assert_eq(weft_tcp_listen(&l2, "127.0.0.1", port, 0, 0), -EADDRINUSE);
    cr_assert_eq(l2, sentinel);
    cr_assert_eq(count_fds(), mid, "the failed listen leaked its socket");
    /* The first listener is untouched. */
    weft_sock *c, *s;
    cr_assert_eq(weft_tcp_connect(&c, "127.0.0.1", port, 2000), 0);
    cr_assert_eq(weft_tcp_accept(l1, &s, 2000), 0);
    weft_close(s);
    weft_close(c);
    weft_close(l1);
    cr_assert_eq(count_fds(), fds);
}

Test(listen_flags, reuseport_shares_a_port, .timeout = 30)
{
    int fds = count_fds();
    weft_sock *l1, *l2, *l3 = NULL;
    cr_assert_eq(weft_tcp_listen(&l1, "127.0.0.1", 0, 16, WEFT_REUSEPORT), 0);
    int port = local_port(l1);
    cr_assert_gt(port, 0);
    cr_assert_eq(weft_tcp_listen(&l2, "127.0.0.1", port, 16, WEFT_REUSEPORT), 0);
    cr_assert_eq(local_port(l2), port);
    cr_assert_eq(get_int(weft_sock_fd(l2), SOL_SOCKET, SO_REUSEPORT), 1);
    /* A third that does not ask to share may not join. */
    cr_assert_eq(weft_tcp_listen(&l3, "127.0.0.1", port, 16, 0), -EADDRINUSE);
    cr_assert_null(l3);

    /* A connection lands on exactly one of the two. */
    weft_sock *c, *s = NULL;
    cr_assert_eq(weft_tcp_connect(&c, "127.0.0.1", port, 2000), 0);
    int r1 = -ETIMEDOUT, r2 = -ETIMEDOUT;
    int64_t until = mono_ns() + 2000 * MS;
    while (r1 < 0 && r2 < 0 && mono_ns() < until) {
        r1 = weft_sock_poll(l1, WEFT_POLL_IN, 0);
        r2 = weft_sock_poll(l2, WEFT_POLL_IN, 0);
        if (r1 < 0 && r2 < 0)
            usleep(1000);
    }
    cr_assert((r1 > 0) != (r2 > 0), "l1 %d, l2 %d", r1, r2);
    cr_assert_eq(weft_tcp_accept(r1 > 0 ? l1 : l2, &s, 0), 0);
    cr_assert_eq(peer_port(s), local_port(c));
    weft_close(s);
    weft_close(c);
    weft_close(l1);
    weft_close(l2);
    cr_assert_eq(count_fds(), fds);
}

/* Binds a plain IPv4 socket to 127.0.0.1:port; returns the fd or -errno. */
static int bind_v4(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

Test(listen_flags, v6only_leaves_ipv4_alone, .timeout = 30)
{
    if (!have_ipv6())
        cr_skip_test("no IPv6 loopback");
    int fds = count_fds();
    /* The port must be free for IPv4 too, or the check below would talk to
     * someone else's listener: hold 127.0.0.1:port ourselves (bound, not
     * listening), which only works if the v6-only listener left it free. */
    weft_sock *l = NULL;
    int v4 = -1, port = 0;
    for (int tries = 0; tries < 20 && v4 < 0; tries++) {
        cr_assert_eq(weft_tcp_listen(&l, "::", 0, 16, WEFT_V6ONLY), 0);
        port = local_port(l);
        cr_assert_eq(get_int(weft_sock_fd(l), IPPROTO_IPV6, IPV6_V6ONLY), 1);
        v4 = bind_v4(port);
        if (v4 < 0) {
            cr_assert_eq(v4, -EADDRINUSE);
            weft_close(l);
        }
    }
    cr_assert_geq(v4, 0, "127.0.0.1:port was never free next to a v6-only listener");

    weft_sock *c = NULL, *s;
    cr_assert_eq(weft_tcp_connect(&c, "127.0.0.1", port, 1000), -ECONNREFUSED);
    cr_assert_null(c);
    cr_assert_eq(weft_tcp_connect(&c, "::1", port, 1000), 0);
    cr_assert_eq(weft_tcp_accept(l, &s, 1000), 0);
    weft_close(s);
    weft_close(c);
    weft_close(l);
    close(v4);
    cr_assert_eq(count_fds(), fds);
}

Test(listen_flags, dual_stack_star_takes_ipv4, .timeout = 30)
{
    if (!have_ipv6())
        cr_skip_test("no IPv6 loopback");
    int fds = count_fds();
    const char *hosts[] = {"*", NULL};
    for (int i = 0; i < 2; i++) {
        weft_sock *l, *c, *s;
        cr_assert_eq(weft_tcp_listen(&l, hosts[i], 0, 16, 0), 0);
        weft_addr a;
        cr_assert_eq(weft_sock_local(l, &a), 0);
        cr_assert_eq(a.u.sa.sa_family, AF_INET6);
        cr_assert(IN6_IS_ADDR_UNSPECIFIED(&a.u.in6.sin6_addr));
        cr_assert_eq(get_int(weft_sock_fd(l), IPPROTO_IPV6, IPV6_V6ONLY), 0);
        int port = weft_addr_port(&a);
        /* Dual-stack: nobody else can hold the IPv4 side of the port. */
        cr_assert_eq(bind_v4(port), -EADDRINUSE);

        cr_assert_eq(weft_tcp_connect(&c, "127.0.0.1", port, 2000), 0);
        cr_assert_eq(weft_tcp_accept(l, &s, 2000), 0);
        cr_assert_eq(weft_sock_peer(s, &a), 0);
        cr_assert_eq(a.u.sa.sa_family, AF_INET6);
        cr_assert(IN6_IS_ADDR_V4MAPPED(&a.u.in6.sin6_addr));
        cr_assert_eq(weft_addr_port(&a), local_port(c));
        char buf[8];
        cr_assert_eq(weft_send(c, "v4", 2, 1000), 2);
        cr_assert_eq(weft_recvn(s, buf, 2, 1000), 2);
        cr_assert_eq(memcmp(buf, "v4", 2), 0);
        weft_close(s);
        weft_close(c);
        weft_close(l);
    }
    cr_assert_eq(count_fds(), fds);
}

/* WEFT_DEFER_ACCEPT: a connection that has sent nothing is not handed
 * over; once its first byte comes, it is, with the byte. */
Test(listen_flags, defer_accept_waits_for_data, .timeout = 30)
{
    int fds = count_fds();
    weft_sock *l, *c, *s = NULL;
    cr_assert_eq(weft_tcp_listen(&l, "127.0.0.1", 0, 16, WEFT_DEFER_ACCEPT), 0);
    cr_assert_gt(get_int(weft_sock_fd(l), IPPROTO_TCP, TCP_DEFER_ACCEPT), 0);
    int port = local_port(l);
    cr_assert_eq(weft_tcp_connect(&c, "127.0.0.1", port, 2000), 0);
    /* Connected for the client; not yet for the listener (a SYN-ACK is
     * resent after a second, so 300 ms is well inside the deferral). */
    cr_assert_eq(weft_sock_poll(l, WEFT_POLL_IN, 300), -ETIMEDOUT);
    cr_assert_eq(weft_send(c, "x", 1, 2000), 1);
    cr_assert_eq(weft_tcp_accept(l, &s, 2000), 0);
    char b;
    cr_assert_eq(weft_recv(s, &b, 1, 0), 1, "the byte came with the connection");
    cr_assert_eq(b, 'x');
    weft_close(s);
    weft_close(c);
    weft_close(l);
    cr_assert_eq(count_fds(), fds);
}

Test(listen_flags, bad_arguments_are_einval, .timeout = 30)
{
    int fds = count_fds();
    weft_sock *sentinel = (weft_sock *)&fds, *l = sentinel;
    const int flags[] = {8, 16, -1, WEFT_REUSEPORT | 32, INT_MIN};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        cr_assert_eq(weft_tcp_listen(&l, "127.0.0.1", 0, 0, flags[i]), -EINVAL, "flags %#x",
                     flags[i]);
    cr_assert_eq(weft_tcp_listen(&l, "127.0.0.1", -1, 0, 0), -EINVAL);
    cr_assert_eq(weft_tcp_listen(&l, "127.0.0.1", 65536, 0, 0), -EINVAL);
    cr_assert_eq(weft_tcp_listen(&l, "", 0, 0, 0), -EINVAL);
    cr_assert_eq(weft_tcp_listen(&l, "bad name!", 0, 0, 0), WEFT_EAI_BADNAME);
    cr_assert_eq(weft_tcp_listen(NULL, "127.0.0.1", 0, 0, 0), -EINVAL);
    cr_assert_eq(l, sentinel);
    cr_assert_eq(count_fds(), fds);
}

/* ---- shutdown ---------------------------------------------------------------------- */

Test(shutdown, bad_how_and_half_close, .timeout = 30)
{
    pair p;
    cr_assert_eq(pair_open(&p, "127.0.0.1"), 0);
    const int bad[] = {0, 4, -1, 7, INT_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(weft_shutdown(p.c, bad[i]), -EINVAL, "how %d", bad[i]);

    /* The bad calls changed nothing: data still flows both ways. */
    char buf[8];
    cr_assert_eq(weft_send(p.c, "a", 1, 1000), 1);
    cr_assert_eq(weft_recvn(p.s, buf, 1, 1000), 1);

    cr_assert_eq(weft_shutdown(p.c, WEFT_SHUT_WR), 0);
    cr_assert_eq(weft_recv(p.s, buf, sizeof buf, 1000), 0);
    cr_assert_eq(weft_send(p.c, "b", 1, 1000), -EPIPE);
    cr_assert_eq(weft_send(p.s, "hi", 2, 1000), 2);
    cr_assert_eq(weft_recvn(p.c, buf, 2, 1000), 2);
    cr_assert_eq(memcmp(buf, "hi", 2), 0);
    pair_close(&p);
}

/* ---- weft_sock_poll -------------------------------------------------------------------- */

Test(sock_poll, plain_thread, .timeout = 30)
{
    pair p;
    cr_assert_eq(pair_open(&p, "127.0.0.1"), 0);
    int64_t t0 = mono_ns();
    cr_assert_eq(weft_sock_poll(p.s, WEFT_POLL_IN, 100), -ETIMEDOUT);
    assert_took(mono_ns() - t0, 100, 100 + LATE_MS);

    cr_assert_eq(weft_sock_poll(p.c, WEFT_POLL_OUT, 0), WEFT_POLL_OUT);
    t0 = mono_ns();
    cr_assert_eq(weft_sock_poll(p.c, WEFT_POLL_IN | WEFT_POLL_OUT, 1000), WEFT_POLL_OUT);
    assert_took(mono_ns() - t0, 0, LATE_MS);

    cr_assert_eq(weft_send(p.c, "x", 1, 1000), 1);
    cr_assert_eq(weft_sock_poll(p.s, WEFT_POLL_IN, 1000), WEFT_POLL_IN);
    cr_assert_eq(weft_sock_poll(p.s, WEFT_POLL_IN | WEFT_POLL_OUT, 1000),
                 WEFT_POLL_IN | WEFT_POLL_OUT);
    cr_assert_eq(weft_sock_poll(p.s, 0, 100), -EINVAL);

    /* Polling consumed nothing. */
    char ch;
    cr_assert_eq(weft_recv(p.s, &ch, 1, 0), 1);
    cr_assert_eq(ch, 'x');

    /* A peer's close counts as readable. */
    weft_close(p.c);
    p.c = NULL;
    cr_assert_neq(weft_sock_poll(p.s, WEFT_POLL_IN, 1000) & WEFT_POLL_IN, 0);
    pair_close(&p);
}

static struct {
    int pair_rc;
    int idle, out, fresh_both, in, both, einval, parked2;
    int64_t idle_ns, in_ns, parked2_ns;
} sp;

typedef struct delayed {
    weft_sock *s;
    int64_t ms;
} delayed;

static void send_later(void *arg)
{
    delayed *d = arg;
    weft_sleep(d->ms);
    weft_send(d->s, "y", 1, 1000);
}

static int sock_poll_main(void *arg)
{
    (void)arg;
    pair p;
    if ((sp.pair_rc = pair_open(&p, "127.0.0.1")) < 0)
        return 0;
    int64_t t0 = mono_ns();
    sp.idle = weft_sock_poll(p.s, WEFT_POLL_IN, 100);
    sp.idle_ns = mono_ns() - t0;
    sp.out = weft_sock_poll(p.c, WEFT_POLL_OUT, 0);
    sp.fresh_both = weft_sock_poll(p.c, WEFT_POLL_IN | WEFT_POLL_OUT, 100);

    /* Parked in poll until another coroutine writes. */
    delayed d = {p.c, 50};
    weft_go(send_later, &d);
    t0 = mono_ns();
    sp.in = weft_sock_poll(p.s, WEFT_POLL_IN, 2000);
    sp.in_ns = mono_ns() - t0;
    sp.both = weft_sock_poll(p.s, WEFT_POLL_IN | WEFT_POLL_OUT, 1000);
    sp.einval = weft_sock_poll(p.s, 0, 100);
    char ch;
    weft_recv(p.s, &ch, 1, 0);

    /* Neither readable nor writable (send buffer full) until the peer
     * writes: the IN|OUT wait must wake on the read side alone. */
    weft_sock_set_bufsize(p.c, 0, 8192);
    weft_sock_set_bufsize(p.s, 8192, 0);
    static char junk[1 << 20];
    weft_send(p.c, junk, sizeof junk, 0);
    d.s = p.s;
    weft_go(send_later, &d);
    t0 = mono_ns();
    sp.parked2 = weft_sock_poll(p.c, WEFT_POLL_IN | WEFT_POLL_OUT, 2000);
    sp.parked2_ns = mono_ns() - t0;
    weft_sleep(10);
    pair_close(&p);
    return 0;
}

Test(sock_poll, coroutine, .timeout = 30)
{
    int fds = count_fds();
    cr_assert_eq(weft_main(sock_poll_main, NULL, NULL), 0);
    cr_assert_eq(sp.pair_rc, 0);
    cr_assert_eq(sp.idle, -ETIMEDOUT);
    assert_took(sp.idle_ns, 100, 100 + LATE_MS);
    cr_assert_eq(sp.out, WEFT_POLL_OUT);
    cr_assert_eq(sp.fresh_both, WEFT_POLL_OUT);
    cr_assert_eq(sp.in, WEFT_POLL_IN);
    assert_took(sp.in_ns, 45, 1000);
    cr_assert_eq(sp.both, WEFT_POLL_IN | WEFT_POLL_OUT);
    cr_assert_eq(sp.einval, -EINVAL);
    cr_assert_eq(sp.parked2, WEFT_POLL_IN, "IN|OUT with a full send buffer: %d", sp.parked2);
    assert_took(sp.parked2_ns, 45, 1000);
    cr_assert_eq(count_fds(), fds);
}

/* ---- a whole exchange with no loop anywhere ------------------------------------------- */

#define BIG (4u << 20)

typedef struct peer_result {
    int port;
    int conn_rc;
    ssize_t ping_rc, pong_rc, big_out, big_in, close_rc;
    char pong[4];
    bool big_ok;
} peer_result;

static void *plain_peer(void *arg)
{
    peer_result *r = arg;
    weft_sock *c;
    r->conn_rc = weft_tcp_connect(&c, "127.0.0.1", r->port, 2000);
    if (r->conn_rc < 0)
        return NULL;
    r->ping_rc = weft_send(c, "ping", 4, 2000);
    r->pong_rc = weft_recvn(c, r->pong, 4, 2000);
    unsigned char *buf = malloc(BIG), *want = malloc(BIG);
    if (buf && want) {
        fill_pattern(buf, BIG, 1);
        r->big_out = weft_send(c, buf, BIG, 5000); /* needs the main thread reading */
        fill_pattern(want, BIG, 2);
        r->big_in = weft_recvn(c, buf, BIG, 5000);
        r->big_ok = memcmp(buf, want, BIG) == 0;
    }
    free(buf);
    free(want);
    weft_shutdown(c, WEFT_SHUT_WR);
    r->close_rc = weft_close(c);
    return NULL;
}

Test(plain_thread, whole_exchange_without_a_loop, .timeout = 90)
{
    int fds = count_fds();
    cr_assert_eq(weft_self(), 0);
    weft_sock *l, *s, *x = NULL;
    peer_result pr = {0};
    pr.port = listen_any(&l, "127.0.0.1");
    cr_assert_gt(pr.port, 0);

    int64_t t0 = mono_ns();
    cr_assert_eq(weft_tcp_accept(l, &x, 100), -ETIMEDOUT);
    assert_took(mono_ns() - t0, 100, 100 + LATE_MS);
    cr_assert_null(x);

    /* A port that is bound but not listening refuses at once. */
    int held = bind_v4(0);
    cr_assert_geq(held, 0);
    struct sockaddr_in ha;
    socklen_t hl = sizeof ha;
    getsockname(held, (struct sockaddr *)&ha, &hl);
    t0 = mono_ns();
    cr_assert_eq(weft_tcp_connect(&x, "127.0.0.1", ntohs(ha.sin_port), 2000), -ECONNREFUSED);
    assert_took(mono_ns() - t0, 0, LATE_MS);
    close(held);

    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, plain_peer, &pr), 0);
    cr_assert_eq(weft_tcp_accept(l, &s, 2000), 0);
    cr_assert_eq(weft_sock_poll(s, WEFT_POLL_IN, 2000), WEFT_POLL_IN);
    char buf[64];
    ssize_t n = weft_recvn(s, buf, 4, 2000);
    cr_assert_eq(n, 4);
    cr_assert_eq(memcmp(buf, "ping", 4), 0);

    /* The peer now waits for "pong": nothing more to read. */
    t0 = mono_ns();
    cr_assert_eq(weft_recv(s, buf, sizeof buf, 100), -ETIMEDOUT);
    assert_took(mono_ns() - t0, 100, 100 + LATE_MS);
    cr_assert_eq(weft_sock_poll(s, WEFT_POLL_OUT, 0), WEFT_POLL_OUT);
    cr_assert_eq(weft_send(s, "pong", 4, 1000), 4);

    unsigned char *big = malloc(BIG), *want = malloc(BIG);
    cr_assert(big && want);
    cr_assert_eq(weft_recvn(s, big, BIG, 5000), (ssize_t)BIG);
    fill_pattern(want, BIG, 1);
    cr_assert_eq(memcmp(big, want, BIG), 0);
    fill_pattern(big, BIG, 2);
    cr_assert_eq(weft_send(s, big, BIG, 5000), (ssize_t)BIG);
    cr_assert_eq(weft_recv(s, buf, sizeof buf, 2000), 0, "EOF after the peer's shutdown");
    free(big);
    free(want);

    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_eq(pr.conn_rc, 0);
    cr_assert_eq(pr.ping_rc, 4);
    cr_assert_eq(pr.pong_rc, 4);
    cr_assert_eq(memcmp(pr.pong, "pong", 4), 0);
    cr_assert_eq(pr.big_out, (ssize_t)BIG);
    cr_assert_eq(pr.big_in, (ssize_t)BIG);
    cr_assert(pr.big_ok, "the peer got corrupted data");
    cr_assert_eq(pr.close_rc, 0);
    weft_close(s);
    weft_close(l);
    cr_assert_eq(count_fds(), fds);
}

/* ---- argument checks and scatter/gather --------------------------------------------------- */

Test(sockapi, close_null_is_ebadf, .timeout = 15)
{
    cr_assert_eq(weft_close(NULL), -EBADF);
    cr_assert_eq(weft_reset(NULL), -EBADF);
}

Test(sockapi, zero_length_io_returns_at_once, .timeout = 30)
{
    pair p;
    cr_assert_eq(pair_open(&p, "127.0.0.1"), 0);
    char buf[4];
    struct iovec none[2] = {{buf, 0}, {NULL, 0}};
    int64_t t0 = mono_ns();
    /* No timeout at all: any wait here would hang the test. */
    cr_assert_eq(weft_recv(p.s, buf, 0, -1), 0);
    cr_assert_eq(weft_recv(p.s, NULL, 0, -1), 0);
    cr_assert_eq(weft_recvn(p.s, buf, 0, -1), 0);
    cr_assert_eq(weft_recvv(p.s, none, 0, -1), 0);
    cr_assert_eq(weft_recvv(p.s, none, 2, -1), 0);
    cr_assert_eq(weft_send(p.c, buf, 0, -1), 0);
    cr_assert_eq(weft_sock_sent(p.c), 0);
    cr_assert_eq(weft_sendv(p.c, none, 0, -1), 0);
    cr_assert_eq(weft_sendv(p.c, none, 2, -1), 0);
    assert_took(mono_ns() - t0, 0, LATE_MS);
    /* Nothing was sent: the receiver is still idle. */
    cr_assert_eq(weft_recv(p.s, buf, sizeof buf, 20), -ETIMEDOUT);
    pair_close(&p);
}

Test(sockapi, iovcnt_out_of_range_is_einval, .timeout = 30)
{
    pair p;
    cr_assert_eq(pair_open(&p, "127.0.0.1"), 0);
    static struct iovec iov[IOV_MAX + 1];
    static char bytes[IOV_MAX + 1];
    for (int i = 0; i <= IOV_MAX; i++) {
        bytes[i] = (char)('a' + i % 26);
        iov[i].iov_base = &bytes[i];
        iov[i].iov_len = 1;
    }
    cr_assert_eq(weft_sendv(p.c, iov, -1, 100), -EINVAL);
    cr_assert_eq(weft_sendv(p.c, iov, IOV_MAX + 1, 100), -EINVAL);
    cr_assert_eq(weft_sendv(p.c, iov, INT_MIN, 100), -EINVAL);
    cr_assert_eq(weft_recvv(p.s, iov, -1, 100), -EINVAL);
    cr_assert_eq(weft_recvv(p.s, iov, IOV_MAX + 1, 100), -EINVAL);

    /* IOV_MAX itself is allowed, and every byte arrives in order. */
    cr_assert_eq(weft_sendv(p.c, iov, IOV_MAX, 1000), IOV_MAX);
    cr_assert_eq(weft_sock_sent(p.c), (size_t)IOV_MAX);
    static char got[IOV_MAX];
    cr_assert_eq(weft_recvn(p.s, got, IOV_MAX, 1000), IOV_MAX);
    cr_assert_eq(memcmp(got, bytes, IOV_MAX), 0);
    pair_close(&p);
}

#define NIOV 200

/* 200 iovecs of 1..13 bytes over one pattern buffer; returns the total. */
static size_t make_iovs(struct iovec *iov, unsigned char *base)
{
    size_t off = 0;
    for (int i = 0; i < NIOV; i++) {
        iov[i].iov_base = base + off;
        iov[i].iov_len = 1 + (size_t)(i * 7) % 13;
        off += iov[i].iov_len;
    }
    return off;
}

Test(sockapi, sendv_200_small_iovecs_intact, .timeout = 30)
{
    pair p;
    cr_assert_eq(pair_open(&p, "127.0.0.1"), 0);
    static unsigned char src[NIOV * 13], dst[NIOV * 13];
    struct iovec iov[NIOV];
    size_t total = make_iovs(iov, src);
    fill_pattern(src, total, 3);
    cr_assert_eq(weft_sendv(p.c, iov, NIOV, 1000), (ssize_t)total);
    cr_assert_eq(weft_sock_sent(p.c), total);
    cr_assert_eq(weft_recvn(p.s, dst, total, 1000), (ssize_t)total);
    cr_assert_eq(memcmp(src, dst, total), 0);

    /* And scattered on receipt into 200 iovecs. */
    memset(dst, 0, sizeof dst);
    struct iovec rio[NIOV];
    make_iovs(rio, dst);
    cr_assert_eq(weft_send(p.s, src, total, 1000), (ssize_t)total);
    size_t got = 0;
    while (got < total) {
        /* Skip the iovecs already filled; trim the one filled part-way. */
        struct iovec cur[NIOV];
        size_t skip = got;
        int first = 0, k = 0;
        while (skip >= rio[first].iov_len)
            skip -= rio[first++].iov_len;
        for (int i = first; i < NIOV; i++, k++) {
            size_t off = i == first ? skip : 0;
            cur[k].iov_base = (char *)rio[i].iov_base + off;
            cur[k].iov_len = rio[i].iov_len - off;
        }
        ssize_t n = weft_recvv(p.c, cur, k, 1000);
        cr_assert_gt(n, 0, "recvv returned %zd with %zu of %zu", n, got, total);
        got += (size_t)n;
    }
    cr_assert_eq(got, total);
    cr_assert_eq(memcmp(src, dst, total), 0);
    pair_close(&p);
}

/* Many large iovecs between two coroutines: partial writes cut iovecs in
 * the middle and the library's window has to slide over all 200. */
#define LIOV 200
#define LLEN (32u << 10)

static struct {
    int pair_rc;
    ssize_t sent, got;
    size_t sock_sent;
    bool same;
} lv;
static unsigned char *lv_src, *lv_dst;

static void lv_sender(void *arg)
{
    weft_sock *c = arg;
    struct iovec iov[LIOV];
    for (int i = 0; i < LIOV; i++) {
        iov[i].iov_base = lv_src + (size_t)i * LLEN;
        iov[i].iov_len = LLEN;
    }
    lv.sent = weft_sendv(c, iov, LIOV, 10000);
    lv.sock_sent = weft_sock_sent(c);
}

static int large_sendv_main(void *arg)
{
    (void)arg;
    pair p;
    if ((lv.pair_rc = pair_open(&p, "127.0.0.1")) < 0)
        return 0;
    weft_sock_set_bufsize(p.c, 0, 65536); /* many partial writes */
    int64_t id = weft_go(lv_sender, p.c);
    lv.got = weft_recvn(p.s, lv_dst, (size_t)LIOV * LLEN, 10000);
    weft_join(id, 10000);
    lv.same = memcmp(lv_src, lv_dst, (size_t)LIOV * LLEN) == 0;
    pair_close(&p);
    return 0;
}

Test(sockapi, sendv_large_iovecs_between_coroutines, .timeout = 90)
{
    size_t total = (size_t)LIOV * LLEN;
    lv_src = malloc(total);
    lv_dst = malloc(total);
    cr_assert(lv_src && lv_dst);
    fill_pattern(lv_src, total, 4);
    int fds = count_fds();
    cr_assert_eq(weft_main(large_sendv_main, NULL, NULL), 0);
    cr_assert_eq(lv.pair_rc, 0);
    cr_assert_eq(lv.sent, (ssize_t)total);
    cr_assert_eq(lv.sock_sent, total);
    cr_assert_eq(lv.got, (ssize_t)total);
    cr_assert(lv.same, "data corrupted across the iovec window");
    cr_assert_eq(count_fds(), fds);
    free(lv_src);
    free(lv_dst);
}
