/*
 * test_tcp_close.c - ending connections: half-close with shutdown, EOF
 * that arrives together with the last data, weft_close waking blocked
 * readers, senders and pollers with -EBADF, peer resets seen by recv
 * and by a reader and writer together, writing to a closed peer without
 * SIGPIPE, a descriptor number reused while a coroutine still waits on the
 * old socket, weft_sock_poll's readiness rules and recvn's end cases.
 */
#include "helpers.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#define KiB 1024u
#define MiB (1024u * 1024u)

/* A connected loopback pair: *a connected, *b accepted.  The handshake
 * completes in the backlog, so this needs no second coroutine. */
/* ---- half-close ------------------------------------------------------------------ */

#define HC_LEN (256 * KiB)

typedef struct hc_run {
    weft_sock *cli, *srv;
    int pair_rc;
    ssize_t sent, after_shut, srv_answer;
    int shut_rc;
    size_t srv_got;
    ssize_t srv_end;
    bool srv_ok;
    char answer[32];
    ssize_t answer_len, cli_end;
} hc_run;

static void hc_server(void *arg)
{
    hc_run *r = arg;
    static unsigned char in[HC_LEN + 1], exp[HC_LEN];
    fill_pattern(exp, HC_LEN, 15);
    for (;;) {
        ssize_t n = weft_recv(r->srv, in + r->srv_got, sizeof in - r->srv_got, 3000);
        if (n <= 0) {
            r->srv_end = n;
            break;
        }
        r->srv_got += (size_t)n;
    }
    r->srv_ok = r->srv_got == HC_LEN && memcmp(in, exp, HC_LEN) == 0;
    /* Our direction is still open after the peer's half-close. */
    r->srv_answer = weft_send(r->srv, "done", 4, 2000);
    weft_close(r->srv);
}

static int hc_main(void *arg)
{
    hc_run *r = arg;
    r->pair_rc = make_pair(&r->cli, &r->srv);
    if (r->pair_rc < 0)
        return r->pair_rc;
    int64_t srv = weft_go(hc_server, r);
    static unsigned char out[HC_LEN];
    fill_pattern(out, HC_LEN, 15);
    r->sent = weft_send(r->cli, out, HC_LEN, 3000);
    r->shut_rc = weft_shutdown(r->cli, WEFT_SHUT_WR);
    r->after_shut = weft_send(r->cli, "x", 1, 1000);
    r->answer_len = weft_recvn(r->cli, r->answer, 4, 3000);
    r->cli_end = weft_recv(r->cli, r->answer + 4, sizeof r->answer - 5, 3000);
    weft_join(srv, 5000);
    weft_close(r->cli);
    return 0;
}

Test(tcp_close, half_close, .timeout = 60)
{
    int fds = count_fds();
    hc_run r = {.srv_end = -999, .cli_end = -999};
    cr_assert_eq(weft_main(hc_main, &r, NULL), 0, "pair: %s", weft_err_name(r.pair_rc));
    cr_assert_eq(r.sent, (ssize_t)HC_LEN);
    cr_assert_eq(r.shut_rc, 0);
    cr_assert_eq(r.after_shut, -EPIPE, "send after SHUT_WR: %s", weft_err_name((int)r.after_shut));
    cr_assert_eq(r.srv_got, HC_LEN, "server got %zu of %u", r.srv_got, HC_LEN);
    cr_assert_eq(r.srv_end, 0, "server: %s instead of EOF", weft_err_name((int)r.srv_end));
    cr_assert(r.srv_ok, "server: data differs");
    cr_assert_eq(r.srv_answer, 4);
    cr_assert_eq(r.answer_len, 4);
    cr_assert(memcmp(r.answer, "done", 4) == 0);
    cr_assert_eq(r.cli_end, 0, "client: %s instead of EOF", weft_err_name((int)r.cli_end));
    cr_assert_eq(count_fds(), fds);
}

/* ---- EOF queued behind the last data ------------------------------------------- */

/* The peer's last bytes and its FIN arrive while the reader is busy
 * elsewhere (its socket already in the poller, so the loop takes the one
 * readiness edge for both).  The read that drains the data is short; the
 * next one must still see EOF at once, not wait for an edge that has
 * already come and gone. */
typedef struct qeof_run {
    weft_sock *a, *b;
    int pair_rc;
    ssize_t arm, first, second;
    int64_t second_ms;
} qeof_run;

static void qeof_peer(void *arg)
{
    qeof_run *r = arg;
    weft_send(r->a, "hello", 5, 1000);
    weft_shutdown(r->a, WEFT_SHUT_WR);
}

static int qeof_main(void *arg)
{
    qeof_run *r = arg;
    r->pair_rc = make_pair(&r->a, &r->b);
    if (r->pair_rc < 0)
        return r->pair_rc;
    char buf[64];
    r->arm = weft_recv(r->b, buf, sizeof buf, 10); /* waits once: b is in the poller */
    weft_go(qeof_peer, r);
    weft_sleep(100);
    r->first = weft_recv(r->b, buf, sizeof buf, 1000);
    int64_t t0 = weft_now();
    r->second = weft_recv(r->b, buf, sizeof buf, 1000);
    r->second_ms = weft_now() - t0;
    weft_close(r->a);
    weft_close(r->b);
    return 0;
}

Test(tcp_close, eof_queued_behind_data, .timeout = 30)
{
    qeof_run r = {0};
    cr_assert_eq(weft_main(qeof_main, &r, NULL), 0, "pair: %s", weft_err_name(r.pair_rc));
    cr_assert_eq(r.arm, -ETIMEDOUT);
    cr_assert_eq(r.first, 5);
    cr_assert_eq(r.second, 0, "after the data: %s after %lld ms, not EOF",
                 weft_err_name((int)r.second), (long long)r.second_ms);
    cr_assert_lt(r.second_ms, LATE_MS);
}

/* ---- close wakes blocked readers, pollers and senders ----------------------------- */

typedef struct cw_waiter {
    weft_sock *s;
    int kind; /* 0 recv, 1 recv queued behind another, 2 poll, 3 send, 4 queued send */
    ssize_t rc;
    int64_t end_at;
    size_t len;
    const void *data;
} cw_waiter;

static void cw_wait(void *arg)
{
    cw_waiter *w = arg;
    char buf[64];
    switch (w->kind) {
    case 0:
    case 1: w->rc = weft_recv(w->s, buf, sizeof buf, -1); break;
    case 2: w->rc = weft_sock_poll(w->s, WEFT_POLL_IN, -1); break;
    default: w->rc = weft_send(w->s, w->data, w->len, -1); break;
    }
    w->end_at = weft_now();
}

typedef struct cw_run {
    int pair_rc, close_rc;
    cw_waiter w[5];
    int nw;
    size_t peer_got;
    ssize_t peer_end;
    int64_t close_at;
} cw_run;

static int cw_main(void *arg)
{
    cw_run *r = arg;
    weft_sock *a, *b;
    r->pair_rc = make_pair(&a, &b);
    if (r->pair_rc < 0)
        return r->pair_rc;
    int64_t ids[5];
    for (int i = 0; i < r->nw; i++) {
        r->w[i].s = a;
        ids[i] = weft_go(cw_wait, &r->w[i]);
    }
    weft_sleep(100); /* every waiter is parked by now */
    r->close_at = weft_now();
    r->close_rc = weft_close(a);
    for (int i = 0; i < r->nw; i++)
        weft_join(ids[i], 2000);
    /* The peer sees an orderly end after whatever got out. */
    static char buf[64 * KiB];
    for (;;) {
        ssize_t n = weft_recv(b, buf, sizeof buf, 2000);
        if (n <= 0) {
            r->peer_end = n;
            break;
        }
        r->peer_got += (size_t)n;
    }
    weft_close(b);
    return 0;
}

Test(tcp_close, close_unblocks_readers_and_pollers, .timeout = 30)
{
    int fds = count_fds();
    cw_run r = {.nw = 3, .w = {{.kind = 0}, {.kind = 1}, {.kind = 2}}};
    cr_assert_eq(weft_main(cw_main, &r, NULL), 0, "pair: %s", weft_err_name(r.pair_rc));
    cr_assert_eq(r.close_rc, 0);
    const char *what[] = {"recv", "queued recv", "poll"};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(r.w[i].rc, -EBADF, "%s: %s", what[i], weft_err_name((int)r.w[i].rc));
        int64_t ms = r.w[i].end_at - r.close_at;
        cr_assert(ms >= 0 && ms < LATE_MS, "%s woke %lld ms after the close", what[i],
                  (long long)ms);
    }
    cr_assert_eq(r.peer_got, 0);
    cr_assert_eq(r.peer_end, 0);
    cr_assert_eq(count_fds(), fds);
}

Test(tcp_close, close_with_blocked_senders, .timeout = 30)
{
    int fds = count_fds();
    size_t big = 32 * MiB;
    unsigned char *data = malloc(big);
    cr_assert_not_null(data);
    fill_pattern(data, big, 3);
    /* The peer never reads: the first sender stalls, the second waits for
     * its turn behind it.  Both must fail, neither silently dropped. */
    cw_run r = {
        .nw = 2,
        .w = {{.kind = 3, .data = data, .len = big}, {.kind = 4, .data = data, .len = 1000}}};
    int rc = weft_main(cw_main, &r, NULL);
    free(data);
    cr_assert_eq(rc, 0, "pair: %s", weft_err_name(r.pair_rc));
    cr_assert_eq(r.close_rc, 0);
    cr_assert_eq(r.w[0].rc, -EBADF, "stalled send: %s", weft_err_name((int)r.w[0].rc));
    cr_assert_eq(r.w[1].rc, -EBADF, "queued send: %s", weft_err_name((int)r.w[1].rc));
    for (int i = 0; i < 2; i++) {
        int64_t ms = r.w[i].end_at - r.close_at;
        cr_assert(ms >= 0 && ms < LATE_MS, "sender %d woke %lld ms after the close", i,
                  (long long)ms);
    }
    cr_assert_gt(r.peer_got, 0);
    cr_assert_lt(r.peer_got, big);
    cr_assert_eq(r.peer_end, 0);
    cr_assert_eq(count_fds(), fds);
}

/* ---- peer reset ------------------------------------------------------------------------ */

typedef struct rst_run {
    weft_sock *s;
    int pair_rc, reset_rc;
    ssize_t blocked_rc, later_rc, send_rc;
    int64_t blocked_ms;
} rst_run;

static void rst_reader(void *arg)
{
    rst_run *r = arg;
    char buf[16];
    int64_t t0 = weft_now();
    r->blocked_rc = weft_recv(r->s, buf, sizeof buf, 2000);
    r->blocked_ms = weft_now() - t0;
}

static int rst_main(void *arg)
{
    rst_run *r = arg;
    weft_sock *a, *b;
    /* A reader already blocked when the RST comes. */
    r->pair_rc = make_pair(&a, &b);
    if (r->pair_rc < 0)
        return r->pair_rc;
    r->s = a;
    int64_t id = weft_go(rst_reader, r);
    weft_sleep(50);
    r->reset_rc = weft_reset(b);
    weft_join(id, 3000);
    weft_close(a);

    /* A recv made after the RST has arrived. */
    if ((r->pair_rc = make_pair(&a, &b)) < 0)
        return r->pair_rc;
    weft_reset(b);
    weft_sleep(50);
    char buf[16];
    r->later_rc = weft_recv(a, buf, sizeof buf, 1000);
    r->send_rc = weft_send(a, "x", 1, 1000);
    weft_close(a);
    return 0;
}

Test(tcp_close, peer_reset_on_recv, .timeout = 30)
{
    int fds = count_fds();
    rst_run r = {0};
    cr_assert_eq(weft_main(rst_main, &r, NULL), 0, "pair: %s", weft_err_name(r.pair_rc));
    cr_assert_eq(r.reset_rc, 0);
    cr_assert_eq(r.blocked_rc, -ECONNRESET, "blocked recv: %s", weft_err_name((int)r.blocked_rc));
    cr_assert_lt(r.blocked_ms, 50 + LATE_MS);
    cr_assert_eq(r.later_rc, -ECONNRESET, "later recv: %s", weft_err_name((int)r.later_rc));
    /* The error was reported; sending afterwards still fails. */
    cr_assert(r.send_rc == -EPIPE || r.send_rc == -ECONNRESET, "send after reset: %s",
              weft_err_name((int)r.send_rc));
    cr_assert_eq(count_fds(), fds);
}

/* ---- writing to a closed peer ---------------------------------------------------------- */

typedef struct wcp_run {
    int pair_rc;
    ssize_t first, second;
    size_t first_sent;
} wcp_run;

static int wcp_main(void *arg)
{
    wcp_run *r = arg;
    weft_sock *a, *b;
    r->pair_rc = make_pair(&a, &b);
    if (r->pair_rc < 0)
        return r->pair_rc;
    weft_close(b);
    weft_sleep(20);
    size_t len = 16 * MiB;
    unsigned char *data = malloc(len);
    if (!data)
        return -ENOMEM;
    fill_pattern(data, len, 4);
    /* The first bytes are accepted, the peer answers them with RST, and the
     * rest must fail without a signal. */
    r->first = weft_send(a, data, len, 5000);
    r->first_sent = weft_sock_sent(a);
    r->second = weft_send(a, data, len, 5000);
    free(data);
    weft_close(a);
    return 0;
}

static bool sigpipe_pending(void)
{
    sigset_t set;
    sigpending(&set);
    return sigismember(&set, SIGPIPE);
}

Test(tcp_close, write_to_closed_peer_no_sigpipe, .timeout = 45)
{
    /* Default disposition: a SIGPIPE raised anywhere would kill this test. */
    struct sigaction dfl = {.sa_handler = SIG_DFL}, now;
    sigemptyset(&dfl.sa_mask);
    cr_assert_eq(sigaction(SIGPIPE, &dfl, NULL), 0);
    int fds = count_fds();

    wcp_run r = {0};
    cr_assert_eq(weft_main(wcp_main, &r, NULL), 0, "pair: %s", weft_err_name(r.pair_rc));
    cr_assert(r.first == -EPIPE || r.first == -ECONNRESET, "first send: %s",
              weft_err_name((int)r.first));
    cr_assert_lt(r.first_sent, 16 * MiB);
    cr_assert(r.second == -EPIPE || r.second == -ECONNRESET, "second send: %s",
              weft_err_name((int)r.second));

    /* The same from the main stack, outside any coroutine. */
    r = (wcp_run){0};
    cr_assert_eq(wcp_main(&r), 0);
    cr_assert(r.first == -EPIPE || r.first == -ECONNRESET, "outside: %s",
              weft_err_name((int)r.first));

    cr_assert_eq(sigaction(SIGPIPE, NULL, &now), 0);
    cr_assert(now.sa_handler == SIG_DFL, "SIGPIPE disposition changed");
    cr_assert_not(sigpipe_pending());
    cr_assert_eq(count_fds(), fds);
}

/* ---- reset in the middle of a stream, reader and writer both active ------------------ */

typedef struct mid_run {
    weft_sock *us, *peer;
    int pair_rc;
    ssize_t rd_rc, wr_rc;
    size_t written, peer_read;
    int64_t rd_ms, wr_ms, reset_at;
} mid_run;

static void mid_reader(void *arg)
{
    mid_run *r = arg;
    char buf[16 * KiB];
    ssize_t n;
    while ((n = weft_recv(r->us, buf, sizeof buf, 5000)) > 0)
        ;
    r->rd_rc = n;
    r->rd_ms = weft_now();
}

static void mid_writer(void *arg)
{
    mid_run *r = arg;
    static unsigned char chunk[64 * KiB];
    ssize_t n;
    while ((n = weft_send(r->us, chunk, sizeof chunk, 5000)) > 0)
        r->written += (size_t)n;
    r->wr_rc = n;
    r->wr_ms = weft_now();
}

static int mid_main(void *arg)
{
    mid_run *r = arg;
    r->pair_rc = make_pair(&r->us, &r->peer);
    if (r->pair_rc < 0)
        return r->pair_rc;
    int64_t rd = weft_go(mid_reader, r), wr = weft_go(mid_writer, r);
    /* The peer takes a while from the stream, sends a little, then aborts. */
    static char buf[64 * KiB];
    while (r->peer_read < 4 * MiB) {
        ssize_t n = weft_recv(r->peer, buf, sizeof buf, 2000);
        if (n <= 0)
            break;
        r->peer_read += (size_t)n;
    }
    weft_send(r->peer, buf, 1000, 1000);
    weft_sleep(50);
    r->reset_at = weft_now();
    weft_reset(r->peer);
    weft_join(rd, 10000);
    weft_join(wr, 10000);
    weft_close(r->us);
    return 0;
}

Test(tcp_close, midstream_reset_reader_and_writer, .timeout = 60)
{
    int fds = count_fds();
    mid_run r = {.rd_rc = -999, .wr_rc = -999};
    cr_assert_eq(weft_main(mid_main, &r, NULL), 0, "pair: %s", weft_err_name(r.pair_rc));
    cr_assert_geq(r.peer_read, 4 * MiB);
    /* Both were parked when the RST came, and both learn of it: the first to
     * look gets ECONNRESET, the writer then EPIPE at the latest.  On epoll
     * the reader looks first; in io_uring the kernel's own order decides,
     * and a reader coming second sees the end of the stream. */
    if (strcmp(weft_backend(), "io_uring") == 0 && r.rd_rc == 0) {
        cr_assert_eq(r.wr_rc, -ECONNRESET, "writer: %s", weft_err_name((int)r.wr_rc));
    } else {
        cr_assert_eq(r.rd_rc, -ECONNRESET, "reader: %s", weft_err_name((int)r.rd_rc));
        cr_assert(r.wr_rc == -EPIPE || r.wr_rc == -ECONNRESET, "writer: %s",
                  weft_err_name((int)r.wr_rc));
    }
    cr_assert_lt(r.rd_ms - r.reset_at, LATE_MS);
    cr_assert_lt(r.wr_ms - r.reset_at, LATE_MS);
    cr_assert_eq(count_fds(), fds);
}

/* ---- descriptor number reused while a coroutine waits on the old socket ------------ */

typedef struct reuse_run {
    int pair_rc;
    int old_fd, new_fd, accept_rc, wrap_rc;
    ssize_t a_rc, c_rc, peer_send;
    char a_buf[8], c_buf[8];
    int64_t a_ms;
} reuse_run;

typedef struct reuse_waiter {
    weft_sock *s;
    ssize_t *rc;
    char *buf;
    int64_t *ms;
} reuse_waiter;

static void reuse_wait(void *arg)
{
    reuse_waiter *w = arg;
    int64_t t0 = weft_now();
    *w->rc = weft_recv(w->s, w->buf, 8, 2000);
    if (w->ms)
        *w->ms = weft_now() - t0;
}

static int reuse_main(void *arg)
{
    reuse_run *r = arg;
    weft_sock *l, *x, *xp, *y = NULL, *yp = NULL;
    int port = listen_any(&l, "127.0.0.1");
    if (port < 0)
        return port;
    if ((r->pair_rc = weft_tcp_connect(&x, "127.0.0.1", port, 1000)) < 0 ||
        (r->pair_rc = weft_tcp_accept(l, &xp, 1000)) < 0)
        return r->pair_rc;
    reuse_waiter wa = {x, &r->a_rc, r->a_buf, &r->a_ms};
    int64_t a = weft_go(reuse_wait, &wa);
    weft_sleep(50); /* A is parked on x, which is in the poller */

    /* Without yielding: close x, make a socket that takes the same number,
     * connect it and have data arrive on it before A runs again. */
    r->old_fd = weft_sock_fd(x);
    weft_close(x);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    r->new_fd = fd;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        return -1;
    r->accept_rc = weft_tcp_accept(l, &yp, 0);
    if (r->accept_rc == 0)
        r->peer_send = weft_send(yp, "new", 3, 0);
    r->wrap_rc = weft_sock_wrap(&y, fd);
    if (r->wrap_rc < 0)
        close(fd);

    int64_t c = -1;
    reuse_waiter wc = {y, &r->c_rc, r->c_buf, NULL};
    if (y)
        c = weft_go(reuse_wait, &wc);
    weft_join(a, 3000);
    if (c > 0)
        weft_join(c, 3000);
    if (y)
        weft_close(y);
    if (yp)
        weft_close(yp);
    weft_close(xp);
    weft_close(l);
    return 0;
}

Test(tcp_close, fd_reuse_while_waiting, .timeout = 30)
{
    int fds = count_fds();
    reuse_run r = {.a_rc = -999, .c_rc = -999};
    cr_assert_eq(weft_main(reuse_main, &r, NULL), 0, "setup: %s", weft_err_name(r.pair_rc));
    cr_assert_eq(r.new_fd, r.old_fd, "the new socket got fd %d, not %d: nothing tested", r.new_fd,
                 r.old_fd);
    cr_assert_eq(r.accept_rc, 0);
    cr_assert_eq(r.peer_send, 3);
    cr_assert_eq(r.wrap_rc, 0);
    cr_assert_eq(r.a_rc, -EBADF, "old waiter: %zd (%s)", r.a_rc, weft_err_name((int)r.a_rc));
    cr_assert_lt(r.a_ms, 50 + LATE_MS);
    cr_assert_eq(r.a_buf[0], 0, "old waiter saw the new socket's data");
    cr_assert_eq(r.c_rc, 3, "new socket's reader: %s", weft_err_name((int)r.c_rc));
    cr_assert(memcmp(r.c_buf, "new", 3) == 0);
    cr_assert_eq(count_fds(), fds);
}

/* ---- weft_sock_poll ---------------------------------------------------------------------- */

typedef struct poll_run {
    int pair_rc;
    int none, idle_in, out, inout, in_data, in_after_close, both_after_fin, in_after_fin,
        both_after_rst;
    int64_t idle_ms, data_ms;
} poll_run;

static void poll_sender(void *arg)
{
    weft_sleep(50);
    weft_send(arg, "x", 1, 1000);
}

static int poll_main(void *arg)
{
    poll_run *r = arg;
    weft_sock *a, *b;
    if ((r->pair_rc = make_pair(&a, &b)) < 0)
        return r->pair_rc;
    r->none = weft_sock_poll(b, 0, 100);
    int64_t t0 = weft_now();
    r->idle_in = weft_sock_poll(b, WEFT_POLL_IN, 100);
    r->idle_ms = weft_now() - t0;
    r->out = weft_sock_poll(b, WEFT_POLL_OUT, 100);
    r->inout = weft_sock_poll(b, WEFT_POLL_IN | WEFT_POLL_OUT, 100);
    weft_go(poll_sender, a);
    t0 = weft_now();
    r->in_data = weft_sock_poll(b, WEFT_POLL_IN, 2000);
    r->data_ms = weft_now() - t0;
    char c;
    weft_recv(b, &c, 1, 100);
    /* The peer's orderly close makes both directions ready. */
    weft_close(a);
    r->in_after_fin = weft_sock_poll(b, WEFT_POLL_IN, 1000);
    r->both_after_fin = weft_sock_poll(b, WEFT_POLL_IN | WEFT_POLL_OUT, 1000);
    weft_close(b);

    /* And a reset too. */
    if ((r->pair_rc = make_pair(&a, &b)) < 0)
        return r->pair_rc;
    weft_reset(a);
    r->both_after_rst = weft_sock_poll(b, WEFT_POLL_IN | WEFT_POLL_OUT, 1000);
    weft_close(b);
    return 0;
}

Test(tcp_close, sock_poll_semantics, .timeout = 30)
{
    int fds = count_fds();
    poll_run r = {0};
    cr_assert_eq(weft_main(poll_main, &r, NULL), 0, "pair: %s", weft_err_name(r.pair_rc));
    cr_assert_eq(r.none, -EINVAL);
    cr_assert_eq(r.idle_in, -ETIMEDOUT);
    cr_assert(r.idle_ms >= 100 && r.idle_ms < 100 + LATE_MS, "idle poll: %lld ms",
              (long long)r.idle_ms);
    cr_assert_eq(r.out, WEFT_POLL_OUT);
    cr_assert_eq(r.inout, WEFT_POLL_OUT, "nothing to read yet: %d", r.inout);
    cr_assert_eq(r.in_data, WEFT_POLL_IN);
    cr_assert(r.data_ms >= 40 && r.data_ms < 50 + LATE_MS, "data poll: %lld ms",
              (long long)r.data_ms);
    cr_assert_eq(r.in_after_fin, WEFT_POLL_IN);
    cr_assert_eq(r.both_after_fin, WEFT_POLL_IN | WEFT_POLL_OUT);
    cr_assert_eq(r.both_after_rst, WEFT_POLL_IN | WEFT_POLL_OUT);

    /* Outside a coroutine the thread waits in poll(). */
    weft_sock *l, *a, *b;
    int port = listen_any(&l, "127.0.0.1");
    cr_assert_gt(port, 0);
    cr_assert_eq(weft_tcp_connect(&a, "127.0.0.1", port, 1000), 0);
    cr_assert_eq(weft_tcp_accept(l, &b, 1000), 0);
    int64_t t0 = weft_now();
    cr_assert_eq(weft_sock_poll(b, WEFT_POLL_IN, 100), -ETIMEDOUT);
    int64_t ms = weft_now() - t0;
    cr_assert(ms >= 100 && ms < 100 + LATE_MS, "poll outside a coroutine: %lld ms", (long long)ms);
    cr_assert_eq(weft_sock_poll(b, WEFT_POLL_OUT, 100), WEFT_POLL_OUT);
    cr_assert_eq(weft_send(a, "y", 1, 100), 1);
    cr_assert_eq(weft_sock_poll(b, WEFT_POLL_IN | WEFT_POLL_OUT, 1000),
                 WEFT_POLL_IN | WEFT_POLL_OUT);
    weft_close(a);
    weft_close(b);
    weft_close(l);
    cr_assert_eq(count_fds(), fds);
}

/* ---- recvn at the end of the stream ------------------------------------------------------ */

typedef struct rn_run {
    int pair_rc;
    ssize_t before_first, part_way, pieces;
    char buf[16];
} rn_run;

typedef struct rn_peer {
    weft_sock *s;
    const char *data;
    size_t len;
    int pieces;
} rn_peer;

static void rn_peer_fn(void *arg)
{
    rn_peer *p = arg;
    weft_sleep(30);
    size_t step = p->pieces > 1 ? p->len / (size_t)p->pieces : p->len;
    for (size_t off = 0; off < p->len; off += step) {
        size_t k = p->len - off < step ? p->len - off : step;
        weft_send(p->s, p->data + off, k, 1000);
        weft_sleep(p->pieces > 1 ? 20 : 0);
    }
    weft_close(p->s);
}

static ssize_t rn_case(rn_run *r, const char *data, size_t len, int pieces, size_t want)
{
    weft_sock *a, *b;
    if ((r->pair_rc = make_pair(&a, &b)) < 0)
        return -1000;
    rn_peer p = {b, data, len, pieces};
    int64_t id = weft_go(rn_peer_fn, &p);
    memset(r->buf, 0, sizeof r->buf);
    ssize_t n = weft_recvn(a, r->buf, want, 2000);
    weft_join(id, 2000);
    weft_close(a);
    return n;
}

static int rn_main(void *arg)
{
    rn_run *r = arg;
    r->before_first = rn_case(r, "", 0, 1, 8);
    r->part_way = rn_case(r, "abc", 3, 1, 8);
    r->pieces = rn_case(r, "abcdefgh", 8, 4, 8);
    return 0;
}

Test(tcp_close, recvn_end_cases, .timeout = 45)
{
    int fds = count_fds();
    rn_run r = {0};
    cr_assert_eq(weft_main(rn_main, &r, NULL), 0);
    cr_assert_eq(r.pair_rc, 0);
    cr_assert_eq(r.before_first, 0, "closed before the first byte: %s",
                 weft_err_name((int)r.before_first));
    cr_assert_eq(r.part_way, -ECONNRESET, "closed part-way: %s", weft_err_name((int)r.part_way));
    cr_assert_eq(r.pieces, 8, "in pieces: %s", weft_err_name((int)r.pieces));
    cr_assert(memcmp(r.buf, "abcdefgh", 8) == 0);
    cr_assert_eq(count_fds(), fds);
}
