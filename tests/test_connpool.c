/*
 * test_connpool.c - weft_connpool: an idle connection the server closed
 * (FIN, RST) or wrote to is never handed out, at the get or by the watch
 * before it (golang/go#22158); max_per_host with waiters served first come
 * first served, timeouts, cancels and deadlines leaving no slot behind;
 * idle expiry; max_idle_per_host; what put keeps and what it closes; the
 * pool freed with connections out and gets waiting; the loop freed first;
 * other threads; outside a coroutine; bad arguments; allocation and recv
 * failures.  TLS: sessions resumed, server names in the key, stale TLS
 * connections, session tickets that arrive after a put, a cancel kept.
 *
 * Client and server run as coroutines of one loop unless a test says
 * otherwise; checks inside coroutines are recorded and asserted on the
 * main stack (verify).
 */
#include "tls_certs.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int fails;
static char first_fail[512];

static void note_fail(int line, const char *cond, const char *fmt, ...)
{
    if (fails++)
        return;
    char why[256] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(first_fail, sizeof first_fail, "line %d: %s %s", line, cond, why);
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            note_fail(__LINE__, #cond, "" __VA_ARGS__);                                            \
    } while (0)

/* got == want, with both shown (and error names) when not. */
#define CHECK_EQ(got, want)                                                                        \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        if (g_ != w_)                                                                              \
            note_fail(__LINE__, #got " == " #want, "got %lld (%s), want %lld (%s)", g_,            \
                      weft_err_name((int)g_), w_, weft_err_name((int)w_));                         \
    } while (0)

static void verify(void)
{
    int n = fails;
    fails = 0;
    cr_assert_eq(n, 0, "%d checks failed; the first: %s", n, first_fail);
}

static void setup(void)
{
    fails = 0;
    weft_fault_clear();
}

static void teardown(void)
{
    weft_fault_clear();
    kids_reap();
}

TestSuite(connpool, .init = setup, .fini = teardown);

/* ---- a ping-pong server: "ping" in, "pong" out, on every connection ---------------- */

#define CONNS_MAX 64

typedef struct srv {
    weft_sock *l;
    int port;
    weft_tls_ctx *tls;  /* TLS server context, or NULL */
    weft_sock *handoff; /* the socket a new connection's coroutine takes */
    weft_sock *conns[CONNS_MAX];
    int64_t acceptor;
    int accepted, live, max_live, eofs;
    int extra;            /* bytes sent after each pong, unasked */
    bool shut_after_pong; /* half-close after the pong */
    int freeze_ms;        /* TLS: the loop's thread sleeps this long once the
                           * handshake waits for the client's Finished */
} srv;

static srv S;

/* Blocks the whole loop: what the server would send next waits. */
static void freezer(void *arg)
{
    struct timespec nap = {0, (long)(intptr_t)arg * 1000000};
    nanosleep(&nap, NULL);
}

static void srv_conn(void *arg)
{
    srv *sv = arg;
    weft_sock *c = sv->handoff;
    sv->handoff = NULL;
    if (sv->freeze_ms)
        weft_go(freezer, (void *)(intptr_t)sv->freeze_ms); /* runs once the handshake waits */
    if (sv->tls) {
        weft_sock *t;
        if (weft_tls_wrap(&t, c, sv->tls, NULL, 5000) < 0) {
            weft_close(c);
            return;
        }
        c = t;
    }
    int slot = 0;
    while (slot < CONNS_MAX && sv->conns[slot])
        slot++;
    if (slot < CONNS_MAX)
        sv->conns[slot] = c;
    if (++sv->live > sv->max_live)
        sv->max_live = sv->live;
    char buf[4];
    for (;;) {
        ssize_t n = weft_recvn(c, buf, 4, 30000);
        if (n == 0)
            sv->eofs++;
        if (n != 4 || memcmp(buf, "ping", 4) != 0)
            break;
        size_t len = 4 + (size_t)sv->extra;
        if (weft_send(c, "pongXXXXXXXX", len, 5000) != (ssize_t)len)
            break;
        if (sv->shut_after_pong)
            weft_shutdown(c, WEFT_SHUT_WR);
    }
    if (slot < CONNS_MAX && sv->conns[slot] == c)
        sv->conns[slot] = NULL;
    sv->live--;
    weft_close(c); /* -EBADF if the test closed it under us */
}

static void srv_acceptor(void *arg)
{
    srv *sv = arg;
    weft_sock *c;
    while (weft_tcp_accept(sv->l, &c, -1) == 0) {
        sv->accepted++;
        sv->handoff = c;
        weft_co_opts o = {.eager = 1};
        if (weft_go_opts(srv_conn, sv, &o) < 0)
            weft_close(c);
    }
}

static int srv_start(srv *sv, weft_tls_ctx *tls)
{
    memset(sv, 0, sizeof *sv);
    sv->tls = tls;
    sv->port = listen_any(&sv->l, "127.0.0.1");
    if (sv->port < 0)
        return sv->port;
    sv->acceptor = weft_go(srv_acceptor, sv);
    return sv->acceptor < 0 ? (int)sv->acceptor : 0;
}

/* The server closes (FIN; TLS: close_notify first) or resets every
 * connection it holds. */
static void srv_drop_all(srv *sv, bool reset)
{
    for (int i = 0; i < CONNS_MAX; i++) {
        weft_sock *c = sv->conns[i];
        if (!c)
            continue;
        sv->conns[i] = NULL;
        if (reset)
            weft_reset(c);
        else
            weft_close(c);
    }
}

/* The server sends bytes nobody asked for on every connection. */
static void srv_poke_all(srv *sv)
{
    for (int i = 0; i < CONNS_MAX; i++)
        if (sv->conns[i])
            weft_send(sv->conns[i], "junk", 4, 1000);
}

/* Sleeps in steps until cond holds or ms pass; true if it held. */
#define SETTLE(cond, ms)                                                                           \
    ({                                                                                             \
        int64_t until_ = weft_now() + (ms);                                                        \
        while (!(cond) && weft_now() < until_)                                                     \
            weft_sleep(5);                                                                         \
        (bool)(cond);                                                                              \
    })

static void srv_stop(srv *sv)
{
    weft_close(sv->l);
    srv_drop_all(sv, false);
    weft_join(sv->acceptor, 5000);
    SETTLE(sv->live == 0, 5000);
}

/* The same server on a thread and loop of its own (T): faults armed on
 * this thread never reach it, and it runs while this loop does not. */
static srv T;
static pthread_t t_thread;
static int t_ready;

static int t_freeze_ms;

static int t_main(void *arg)
{
    int rc = srv_start(&T, arg);
    T.freeze_ms = t_freeze_ms;
    __atomic_store_n(&t_ready, rc == 0 ? 1 : -1, __ATOMIC_RELEASE);
    return rc;
}

static void *t_run(void *arg)
{
    return (void *)(intptr_t)weft_main(t_main, arg, NULL);
}

static int thread_srv_start(weft_tls_ctx *tls)
{
    t_ready = 0;
    if (pthread_create(&t_thread, NULL, t_run, tls) != 0)
        return -1;
    for (int i = 0; i < 1000 && !__atomic_load_n(&t_ready, __ATOMIC_ACQUIRE); i++)
        usleep(5000);
    return __atomic_load_n(&t_ready, __ATOMIC_ACQUIRE) == 1 ? 0 : -1;
}

/* Its loop ends once the listener is closed (handed over to it) and our
 * connections are gone. */
static void thread_srv_stop(void)
{
    weft_close(T.l);
    pthread_join(t_thread, NULL);
}

/* One exchange.  exact: weft_recvn of the 4 bytes (a receive that does not
 * come up short leaves the socket marked ready); else weft_recv into a
 * larger buffer (short: marked drained). */
static int ping_on(weft_sock *s, bool exact)
{
    if (weft_send(s, "ping", 4, 5000) != 4)
        return -EPIPE;
    char b[64];
    size_t got = 0;
    while (got < 4) {
        ssize_t n = exact ? weft_recvn(s, b, 4, 5000) : weft_recv(s, b + got, sizeof b - got, 5000);
        if (n <= 0)
            return n < 0 ? (int)n : -ECONNRESET;
        got += (size_t)n;
    }
    return memcmp(b, "pong", 4) == 0 ? 0 : -EPROTO;
}

static int ping(weft_sock *s)
{
    return ping_on(s, false);
}

static weft_connpool *P;

static weft_connpool_stats stats(void)
{
    weft_connpool_stats st;
    memset(&st, 0xff, sizeof st);
    CHECK_EQ(weft_connpool_stat(P, &st), 0);
    return st;
}

static int get(weft_sock **s, int64_t timeout_ms)
{
    return weft_connpool_get(P, s, "127.0.0.1", S.port, timeout_ms);
}

/* ---- stale connections: #59 -------------------------------------------------------- */

typedef enum { BY_FIN, BY_RST, BY_DATA } how_gone;

static how_gone gone_how;

/* The server drops the idle connection; the very next get, with no loop
 * step in between, must not hand it out. */
static int stale_at_get_main(void *arg)
{
    (void)arg;
    CHECK_EQ(srv_start(&S, NULL), 0);
    CHECK_EQ(weft_connpool_new(&P, NULL), 0);
    weft_sock *a, *b;
    CHECK_EQ(get(&a, 5000), 0);
    CHECK_EQ(ping(a), 0);
    CHECK_EQ(weft_connpool_put(P, a, 1), 0);
    CHECK_EQ(stats().idle, 1);
    if (gone_how == BY_DATA)
        srv_poke_all(&S);
    else
        srv_drop_all(&S, gone_how == BY_RST);
    CHECK_EQ(get(&b, 5000), 0);
    CHECK_EQ(ping(b), 0); /* the first request on it succeeds */
    weft_connpool_stats st = stats();
    CHECK_EQ(st.stale, 1);
    CHECK_EQ(st.connects, 2);
    CHECK_EQ(st.reuses, 0);
    CHECK_EQ(weft_connpool_put(P, b, 1), 0);
    weft_connpool_free(P);
    srv_stop(&S);
    return 0;
}

Test(connpool, stale_fin_not_handed_out, .timeout = 60)
{
    gone_how = BY_FIN;
    cr_assert_eq(weft_main(stale_at_get_main, NULL, NULL), 0);
    verify();
}

Test(connpool, stale_rst_not_handed_out, .timeout = 60)
{
    gone_how = BY_RST;
    cr_assert_eq(weft_main(stale_at_get_main, NULL, NULL), 0);
    verify();
}

Test(connpool, written_to_while_idle_not_handed_out, .timeout = 60)
{
    gone_how = BY_DATA;
    cr_assert_eq(weft_main(stale_at_get_main, NULL, NULL), 0);
    verify();
}

/* The same drop while the loop runs: the watch closes the idle connection
 * without any get, and its descriptor comes back. */
static int stale_watched_main(void *arg)
{
    (void)arg;
    CHECK_EQ(srv_start(&S, NULL), 0);
    CHECK_EQ(weft_connpool_new(&P, NULL), 0);
    weft_sock *a[3];
    for (int i = 0; i < 3; i++)
        CHECK_EQ(get(&a[i], 5000), 0);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(ping(a[i]), 0);
        CHECK_EQ(weft_connpool_put(P, a[i], 1), 0);
    }
    CHECK_EQ(stats().idle, 3);
    int fds = count_fds();
    if (gone_how == BY_DATA)
        srv_poke_all(&S);
    else
        srv_drop_all(&S, gone_how == BY_RST);
    CHECK(SETTLE(stats().idle == 0, 2000), "idle %zu", stats().idle);
    weft_connpool_stats st = stats();
    CHECK_EQ(st.stale, 3);
    CHECK_EQ(st.reuses, 0);
    /* Our three closed by the watch, and the server's with them (it closed
     * them itself, or saw ours go). */
    CHECK(SETTLE(count_fds() == fds - 6, 2000), "fds %d, want %d", count_fds(), fds - 6);
    weft_sock *b;
    CHECK_EQ(get(&b, 5000), 0);
    CHECK_EQ(ping(b), 0);
    CHECK_EQ(weft_connpool_put(P, b, 1), 0);
    weft_connpool_free(P);
    srv_stop(&S);
    return 0;
}

Test(connpool, closed_while_idle_noticed_fin, .timeout = 60)
{
    gone_how = BY_FIN;
    cr_assert_eq(weft_main(stale_watched_main, NULL, NULL), 0);
    verify();
}

Test(connpool, closed_while_idle_noticed_rst, .timeout = 60)
{
    gone_how = BY_RST;
    cr_assert_eq(weft_main(stale_watched_main, NULL, NULL), 0);
    verify();
}

Test(connpool, written_to_while_idle_noticed, .timeout = 60)
{
    gone_how = BY_DATA;
    cr_assert_eq(weft_main(stale_watched_main, NULL, NULL), 0);
    verify();
}

/* A recv failing at the check counts as a connection gone. */
static int recv_fault_main(void *arg)
{
    (void)arg;
    CHECK_EQ(srv_start(&S, NULL), 0);
    CHECK_EQ(weft_connpool_new(&P, NULL), 0);
    weft_sock *a, *b;
    CHECK_EQ(get(&a, 5000), 0);
    CHECK_EQ(ping(a), 0);
    CHECK_EQ(weft_connpool_put(P, a, 1), 0);
    weft_fault_set(WEFT_FAULT_RECV, 1, ECONNRESET);
    CHECK_EQ(get(&b, 5000), 0);
    CHECK_EQ(weft_fault_fired(), 1);
    weft_fault_clear();
    CHECK(a != b);
    CHECK_EQ(ping(b), 0);
    CHECK_EQ(stats().stale, 1);
    CHECK_EQ(weft_connpool_put(P, b, 1), 0);
    weft_connpool_free(P);
    srv_stop(&S);
    return 0;
}

Test(connpool, recv_failing_at_the_check, .timeout = 60)
{
    cr_assert_eq(weft_main(recv_fault_main, NULL, NULL), 0);
    verify();
}

/* ---- reuse ------------------------------------------------------------------------- */

static int reuse_main(void *arg)
{
    (void)arg;
    CHECK_EQ(srv_start(&S, NULL), 0);
    CHECK_EQ(weft_connpool_new(&P, NULL), 0);
    weft_sock *a, *b, *c;
    CHECK_EQ(get(&a, 5000), 0);
    CHECK_EQ(ping_on(a, true), 0); /* exact: put asks the kernel */
    CHECK_EQ(weft_connpool_put(P, a, 1), 0);
    CHECK_EQ(get(&b, 5000), 0);
    CHECK(a == b, "the idle connection again");
    CHECK_EQ(ping(b), 0); /* short: put trusts the drained mark */
    CHECK_EQ(weft_connpool_put(P, b, 1), 0);
    /* Another port is another host; timeout 0 with one idle does not wait. */
    weft_sock *l2, *x;
    int port2 = listen_any(&l2, "127.0.0.1");
    CHECK_EQ(weft_connpool_get(P, &x, "127.0.0.1", port2, 5000), 0);
    CHECK(x != a);
    CHECK_EQ(get(&c, 0), 0);
    CHECK(c == a);
    weft_connpool_stats st = stats();
    CHECK_EQ(st.connects, 2);
    CHECK_EQ(st.reuses, 2);
    CHECK_EQ(st.busy, 2);
    CHECK_EQ(st.idle, 0);
    CHECK_EQ(weft_connpool_put(P, x, 1), 0);
    CHECK_EQ(weft_connpool_put(P, c, 1), 0);
    CHECK_EQ(stats().idle, 2);
    weft_close(l2);
    CHECK_EQ(S.accepted, 1);
    weft_connpool_free(P);
    srv_stop(&S);
    return 0;
}

Test(connpool, reuse_by_host_and_port, .timeout = 60)
{
    cr_assert_eq(weft_main(reuse_main, NULL, NULL), 0);
    verify();
}

/* A get that finds an idle connection does not wait, so it leaves a
 * pending cancel for the caller's next call. */
static int cancel_kept_main(void *arg)
{
    (void)arg;
    CHECK_EQ(srv_start(&S, NULL), 0);
    CHECK_EQ(weft_connpool_new(&P, NULL), 0);
    weft_sock *a, *b;
    CHECK_EQ(get(&a, 5000), 0);
    CHECK_EQ(weft_connpool_put(P, a, 1), 0);
    weft_cancel(weft_self());
    CHECK_EQ(get(&b, 5000), 0);
    CHECK_EQ(weft_sleep(1000), -ECANCELED);
    CHECK_EQ(weft_connpool_put(P, b, 1), 0);
    /* A get that must wait takes it. */
    weft_connpool_free(P);
    weft_connpool_opts o = {.max_per_host = 1};
    CHECK_EQ(weft_connpool_new(&P, &o), 0);
    CHECK_EQ(get(&a, 5000), 0);
    weft_cancel(weft_self());
    CHECK_EQ(get(&b, 5000), -ECANCELED);
    CHECK_EQ(weft_sleep(1), 0);
    CHECK_EQ(stats().waiting, 0);
    CHECK_EQ(weft_connpool_put(P, a, 1), 0);
    weft_connpool_free(P);
    srv_stop(&S);
    return 0;
}

Test(connpool, cancel_taken_only_by_a_wait, .timeout = 60)
{
    cr_assert_eq(weft_main(cancel_kept_main, NULL, NULL), 0);
    verify();
}

/* ---- max_per_host: #60 ------------------------------------------------------------- */

#define NCLIENTS 10

static int order[NCLIENTS], norder, client_rc[NCLIENTS];

static void limit_client(void *arg)
{
    int i = (int)(intptr_t)arg;
    weft_sock *s;
    int rc = get(&s, 20000);
    client_rc[i] = rc;
    if (rc < 0)
        return;
    order[norder++] = i;
    client_rc[i] = ping(s);
    weft_sleep(10);
    weft_connpool_stats st = stats();
    CHECK(st.busy + st.connecting + st.idle <= 2, "%zu open", st.busy + st.connecting + st.idle);
    weft_connpool_put(P, s, 1);
}

static int limit_fifo_main(void *arg)
{
    (void)arg;
    CHECK_EQ(srv_start(&S, NULL), 0);
    weft_connpool_opts o = {.max_per_host = 2};
    CHECK_EQ(weft_connpool_new(&P, &o), 0);
    int64_t ids[NCLIENTS];
    norder = 0;
    for (int i = 0; i < NCLIENTS; i++)
        ids[i] = weft_go(limit_client, (void *)(intptr_t)i);
    weft_sleep(5);
    CHECK_EQ(stats().waiting, NCLIENTS - 2);
    for (int i = 0; i < NCLIENTS; i++)
        CHECK_EQ(weft_join(ids[i], 30000), 0);
    for (int i = 0; i < NCLIENTS; i++)
        CHECK_EQ(client_rc[i], 0);
    CHECK_EQ(norder, NCLIENTS);
    /* The first two connected (in either order); the rest came in the
     * order they asked. */
    for (int k = 2; k < norder; k++)
        CHECK_EQ(order[k], k);
    weft_connpool_stats st = stats();
    CHECK_EQ(st.connects, 2);
    CHECK_EQ(st.reuses, NCLIENTS - 2);
    CHECK_EQ(st.idle, 2);
    CHECK_EQ(st.waiting, 0);
    CHECK_EQ(S.max_live, 2);
    weft_connpool_free(P);
    srv_stop(&S);
    return 0;
}

Test(connpool, limit_waiters_first_come_first_served, .timeout = 60)
{
    cr_assert_eq(weft_main(limit_fifo_main, NULL, NULL), 0);
    verify();
}

typedef struct waiter {
    int64_t timeout_ms, deadline_ms; /* deadline_ms: weft_deadline_set, relative */
    int rc;
    int64_t took_ms;
    int64_t id;
} waiter;

static void hold(void *arg)
{
    weft_sock *s;
    int rc = get(&s, 5000);
    CHECK_EQ(rc, 0);
    if (rc < 0)
        return;
    weft_sleep((int64_t)(intptr_t)arg);
    CHECK_EQ(ping(s), 0);
    weft_connpool_put(P, s, 1);
}

static void wait_one(void *arg)
{
    waiter *w = arg;
    weft_sock *s;
    int64_t t0 = weft_now();
    if (w->deadline_ms)
        weft_deadline_set(t0 + w->deadline_ms);
    w->rc = get(&s, w->timeout_ms);
    w->took_ms = weft_now() - t0;
    weft_deadline_clear();
    if (w->rc == 0) {
        CHECK_EQ(ping(s), 0);
        weft_connpool_put(P, s, 1);
    }
}

static int limit_leaks_main(void *arg)
{
    (void)arg;
    CHECK_EQ(srv_start(&S, NULL), 0);
    weft_connpool_opts o = {.max_per_host = 2};
    CHECK_EQ(weft_connpool_new(&P, &o), 0);
    int64_t h1 = weft_go(hold, (void *)(intptr_t)400), h2 = weft_go(hold, (void *)(intptr_t)400);
    CHECK(SETTLE(stats().busy == 2, 2000));
    /* Two time out, two are cancelled, one ends at the coroutine's
     * deadline, two are served. */
    waiter w[7] = {
        {.timeout_ms = 50},    {.timeout_ms = 50}, {.timeout_ms = -1},
        {.timeout_ms = -1},    {.timeout_ms = -1}, {.timeout_ms = -1, .deadline_ms = 80},
        {.timeout_ms = 20000},
    };
    for (int i = 0; i < 7; i++)
        w[i].id = weft_go(wait_one, &w[i]);
    weft_sleep(100);
    weft_cancel(w[2].id);
    weft_cancel(w[3].id);
    for (int i = 0; i < 7; i++)
        CHECK_EQ(weft_join(w[i].id, 20000), 0);
    weft_join(h1, 5000);
    weft_join(h2, 5000);
    int want[7] = {-ETIMEDOUT, -ETIMEDOUT, -ECANCELED, -ECANCELED, 0, -ETIMEDOUT, 0};
    for (int i = 0; i < 7; i++)
        CHECK_EQ(w[i].rc, want[i]);
    for (int i = 0; i < 2; i++)
        CHECK(w[i].took_ms >= 50 && w[i].took_ms < 50 + LATE_MS, "took %lld ms",
              (long long)w[i].took_ms);
    CHECK(w[5].took_ms >= 80 && w[5].took_ms < 80 + LATE_MS, "took %lld ms",
          (long long)w[5].took_ms);
    weft_connpool_stats st = stats();
    CHECK_EQ(st.waiting, 0);
    CHECK_EQ(st.busy, 0);
    CHECK_EQ(st.connecting, 0);
    CHECK_EQ(st.idle, 2);
    CHECK_EQ(st.connects, 2);
    /* Exactly two slots, neither leaked nor lost: two gets at once, a
     * third times out. */
    weft_sock *a, *b, *c;
    CHECK_EQ(get(&a, 0), 0);
    CHECK_EQ(get(&b, 0), 0);
    CHECK_EQ(get(&c, 100), -ETIMEDOUT);
    CHECK_EQ(weft_connpool_put(P, a, 0), 1);
    CHECK(SETTLE(S.live == 1, 2000));
    CHECK_EQ(get(&c, 5000), 0); /* the closed one's slot */
    CHECK_EQ(stats().connects, 3);
    CHECK_EQ(weft_connpool_put(P, b, 1), 0);
    CHECK_EQ(weft_connpool_put(P, c, 1), 0);
    CHECK_EQ(S.max_live, 2);
    weft_connpool_free(P);
    srv_stop(&S);
    return 0;
}

Test(connpool, limit_timeouts_and_cancels_leave_no_slot, .timeout = 60)
{
    cr_assert_eq(weft_main(limit_leaks_main, NULL, NULL), 0);
    verify();
}

/* A waiter cancelled (or timed out) but not yet run is leaving: a put in
 * the same step passes it by for the next one. */
static int cancel_then_put_main(void *arg)
{
    (void)arg;
    CHECK_EQ(srv_start(&S, NULL), 0);
    weft_connpool_opts o = {.max_per_host = 1};
    CHECK_EQ(weft_connpool_new(&P, &o), 0);
    weft_sock *a;
    CHECK_EQ(get(&a, 5000), 0);
    waiter w[2] = {{.timeout_ms = 5000}, {.timeout_ms = 5000}};
    for (int i = 0; i < 2; i++)
        w[i].id = weft_go(wait_one, &w[i]);
    weft_sleep(10);
    CHECK_EQ(stats().waiting, 2);
    weft_cancel(w[0].id);
    CHECK_EQ(weft_connpool_put(P, a, 1), 0);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(weft_join(w[i].id, 10000), 0);
    CHECK_EQ(w[0].rc, -ECANCELED);
    CHECK_EQ(w[1].rc, 0);
    CHECK(w[1].took_ms < LATE_MS, "served at the put, not at its timeout");
    weft_connpool_free(P);
    srv_stop(&S);
    return 0;
}

Test(connpool, waiter_leaving_is_passed_by, .timeout = 60)
{
    cr_assert_eq(weft_main(cancel_then_put_main, NULL, NULL), 0);
    verify();
}

/* A get that fails to connect hands its slot to the next waiter. */
static int connect_fails_main(void *arg)
{
    (void)arg;
    weft_sock *l;
    int port = listen_any(&l, "127.0.0.1");
    weft_close(l); /* nobody listens there now */
    weft_connpool_opts o = {.max_per_host = 1};
    CHECK_EQ(weft_connpool_new(&P, &o), 0);
    weft_sock *s;
    CHECK_EQ(weft_connpool_get(P, &s, "127.0.0.1", port, 5000), -ECONNREFUSED);
    weft_connpool_stats st = stats();
    CHECK_EQ(st.busy + st.connecting + st.idle + st.waiting, 0);
    CHECK_EQ(weft_connpool_get(P, &s, "127.0.0.1", port, 5000), -ECONNREFUSED);
    weft_connpool_free(P);
    return 0;
}

Test(connpool, connect_failure_releases_the_slot, .timeout = 60)
{
    cr_assert_eq(weft_main(connect_fails_main, NULL, NULL), 0);
    verify();
}

/* ---- idle expiry: #61 -------------------------------------------------------------- */

static int fds_base;

static int expiry_main(void *arg)
{
    (void)arg;
    CHECK_EQ(srv_start(&S, NULL), 0);
    fds_base = count_fds();
    weft_connpool_opts o = {.idle_timeout_ms = 200};
    CHECK_EQ(weft_connpool_new(&P, &o), 0);
    weft_sock *a[3];
    for (int i = 0; i < 3; i++)
        CHECK_EQ(get(&a[i], 5000), 0);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(ping(a[i]), 0);
        CHECK_EQ(weft_connpool_put(P, a[i], 1), 0);
    }
    int64_t t0 = weft_now();
    CHECK_EQ(count_fds(), fds_base + 6);
    weft_sleep(100);
    if (weft_now() - t0 < 200)
        CHECK_EQ(stats().idle, 3); /* never early */
    CHECK(SETTLE(stats().expired == 3, 200 + 2 * LATE_MS), "expired %llu",
          (unsigned long long)stats().expired);
    CHECK(weft_now() - t0 >= 200);
    CHECK_EQ(stats().idle, 0);
    /* The server saw each close and closed its side. */
    CHECK(SETTLE(count_fds() == fds_base, 2000), "fds %d, want %d", count_fds(), fds_base);
    CHECK_EQ(S.eofs, 3);
    /* One used again in time is not expired with the others. */
    weft_sock *b, *c;
    CHECK_EQ(get(&b, 5000), 0);
    CHECK_EQ(get(&c, 5000), 0);
    CHECK_EQ(weft_connpool_put(P, b, 1), 0);
    weft_sleep(120);
    CHECK_EQ(weft_connpool_put(P, c, 1), 0);
    CHECK_EQ(get(&c, 5000), 0); /* c, the newest: b alone is left to expire */
    CHECK(SETTLE(stats().expired == 4, 200 + 2 * LATE_MS));
    CHECK_EQ(stats().idle, 0);
    CHECK_EQ(ping(c), 0);
    CHECK_EQ(weft_connpool_put(P, c, 1), 0);
    weft_connpool_free(P);
    srv_stop(&S);
    return 0;
}

Test(connpool, idle_expiry, .timeout = 60)
{
    cr_assert_eq(weft_main(expiry_main, NULL, NULL), 0);
    verify();
}

/* ---- what put keeps ---------------------------------------------------------------- */

static int max_idle_main(void *arg)
{
    (void)arg;
    CHECK_EQ(srv_start(&S, NULL), 0);
    weft_connpool_opts o = {.max_idle_per_host = 2};
    CHECK_EQ(weft_connpool_new(&P, &o), 0);
    weft_sock *a[4];
    for (int i = 0; i < 4; i++)
        CHECK_EQ(get(&a[i], 5000), 0);
    int want[4] = {0, 0, 1, 1};
    for (int i = 0; i < 4; i++)
        CHECK_EQ(weft_connpool_put(P, a[i], 1), want[i]);
    CHECK_EQ(stats().idle, 2);
    CHECK(SETTLE(S.live == 2, 2000), "the server still has %d", S.live);
    weft_connpool_free(P);
    CHECK(SETTLE(S.live == 0, 2000), "free closes the idle ones: %d", S.live);
    srv_stop(&S);
    return 0;
}

Test(connpool, max_idle_per_host, .timeout = 60)
{
    cr_assert_eq(weft_main(max_idle_main, NULL, NULL), 0);
    verify();
}

typedef enum { NOT_REUSABLE, UNREAD, SHUT_OURS, SHUT_THEIRS, STILL_READING } put_case;

static put_case put_how;
static int put_rc;

static void reader(void *arg)
{
    char b[8];
    weft_recv(arg, b, sizeof b, 5000); /* -EBADF once put closes it */
}

static int put_case_main(void *arg)
{
    (void)arg;
    CHECK_EQ(srv_start(&S, NULL), 0);
    CHECK_EQ(weft_connpool_new(&P, NULL), 0);
    weft_sock *a;
    CHECK_EQ(get(&a, 5000), 0);
    int reusable = 1;
    switch (put_how) {
    case NOT_REUSABLE:
        CHECK_EQ(ping(a), 0);
        reusable = 0;
        break;
    case UNREAD:
        S.extra = 1; /* "pongX": the X stays unread */
        CHECK_EQ(ping_on(a, true), 0);
        break;
    case SHUT_OURS:
        CHECK_EQ(ping(a), 0);
        CHECK_EQ(weft_shutdown(a, WEFT_SHUT_WR), 0);
        break;
    case SHUT_THEIRS:
        S.shut_after_pong = true;
        CHECK_EQ(ping(a), 0);
        break;
    case STILL_READING:
        CHECK_EQ(ping(a), 0);
        weft_go(reader, a);
        weft_yield(); /* the reader holds the receive side */
        break;
    }
    put_rc = weft_connpool_put(P, a, reusable);
    weft_connpool_stats st = stats();
    CHECK_EQ(st.idle, 0);
    CHECK_EQ(st.busy, 0);
    CHECK(SETTLE(S.live == 0, 2000), "the server's side is closed too: %d", S.live);
    weft_connpool_free(P);
    srv_stop(&S);
    return 0;
}

static void run_put_case(put_case how)
{
    put_how = how;
    put_rc = -999;
    cr_assert_eq(weft_main(put_case_main, NULL, NULL), 0);
    verify();
    cr_assert_eq(put_rc, 1, "put returned %d", put_rc);
}

Test(connpool, put_not_reusable_closes, .timeout = 60)
{
    run_put_case(NOT_REUSABLE);
}

Test(connpool, put_with_unread_data_closes, .timeout = 60)
{
    run_put_case(UNREAD);
}

Test(connpool, put_half_closed_by_us_closes, .timeout = 60)
{
    run_put_case(SHUT_OURS);
}

Test(connpool, put_half_closed_by_peer_closes, .timeout = 60)
{
    run_put_case(SHUT_THEIRS);
}

Test(connpool, put_while_another_call_uses_it_closes, .timeout = 60)
{
    run_put_case(STILL_READING);
}

/* ---- freeing ----------------------------------------------------------------------- */

static waiter fw[3];

static int free_busy_main(void *arg)
{
    (void)arg;
    CHECK_EQ(srv_start(&S, NULL), 0);
    int fds = count_fds();
    weft_connpool_opts o = {.max_per_host = 1};
    CHECK_EQ(weft_connpool_new(&P, &o), 0);
    weft_sock *a;
    CHECK_EQ(get(&a, 5000), 0);
    for (int i = 0; i < 3; i++) {
        fw[i] = (waiter){.timeout_ms = 10000};
        fw[i].id = weft_go(wait_one, &fw[i]);
    }
    weft_sleep(10);
    CHECK_EQ(stats().waiting, 3);
    int64_t t0 = weft_now();
    weft_connpool_free(P);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(weft_join(fw[i].id, 5000), 0);
        CHECK_EQ(fw[i].rc, -EBADF);
    }
    CHECK(weft_now() - t0 < LATE_MS, "waiters sent away at once");
    /* The connection out is still the caller's, and works. */
    CHECK_EQ(ping(a), 0);
    CHECK_EQ(weft_connpool_put(P, a, 1), 1); /* closed: the pool is gone with it */
    CHECK(SETTLE(count_fds() == fds, 2000), "fds %d, want %d", count_fds(), fds);
    srv_stop(&S);
    return 0;
}

Test(connpool, free_with_connections_out_and_waiters, .timeout = 60)
{
    cr_assert_eq(weft_main(free_busy_main, NULL, NULL), 0);
    verify();
}

static weft_sock *out_sock, *backlog_only;
static weft_connpool_stats after;

static int keep_some_main(void *arg)
{
    (void)arg;
    /* Connections wait in the listener's backlog: nobody accepts, so no
     * coroutine outlives this one and the peers stay open. */
    int port = listen_any(&backlog_only, "127.0.0.1");
    weft_sock *a;
    CHECK_EQ(weft_connpool_get(P, &a, "127.0.0.1", port, 5000), 0);
    CHECK_EQ(weft_connpool_get(P, &out_sock, "127.0.0.1", port, 5000), 0);
    CHECK_EQ(weft_connpool_put(P, a, 1), 0);
    CHECK_EQ(stats().idle, 1);
    return 0; /* one idle, one out: the loop is freed now */
}

static int reuse_after_main(void *arg)
{
    (void)arg;
    after = stats(); /* a new loop: nothing of the old one's */
    CHECK_EQ(srv_start(&S, NULL), 0);
    weft_sock *a;
    CHECK_EQ(get(&a, 5000), 0);
    CHECK_EQ(ping(a), 0);
    CHECK_EQ(weft_connpool_put(P, a, 1), 0);
    CHECK_EQ(stats().idle, 1);
    srv_stop(&S);
    return 0;
}

Test(connpool, loop_freed_before_the_pool, .timeout = 60)
{
    int fds = count_fds();
    cr_assert_eq(weft_connpool_new(&P, NULL), 0);
    cr_assert_eq(weft_main(keep_some_main, NULL, NULL), 0);
    verify();
    /* The idle one was closed with the loop; the one out is still open. */
    cr_assert_eq(count_fds(), fds + 2, "the listener and the one out");
    cr_assert_eq(weft_connpool_put(P, out_sock, 1), -EINVAL);
    cr_assert_eq(weft_send(out_sock, "ping", 4, 1000), 4);
    cr_assert_eq(weft_close(out_sock), 0);
    cr_assert_eq(weft_close(backlog_only), 0);
    cr_assert_eq(weft_main(reuse_after_main, NULL, NULL), 0);
    verify();
    cr_assert_eq(after.idle + after.busy, 0);
    cr_assert_eq(after.connects, 2);
    weft_connpool_free(P); /* no loop keeps anything: freed here */
    cr_assert_eq(count_fds(), fds);
}

/* ---- arguments, threads, outside a coroutine --------------------------------------- */

static int bad_args_main(void *arg)
{
    (void)arg;
    weft_connpool *p;
    weft_connpool_opts bad[] = {
        {.max_idle_per_host = -1},
        {.max_per_host = -1},
        {.idle_timeout_ms = -2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ(weft_connpool_new(&p, &bad[i]), -EINVAL);
    CHECK_EQ(weft_connpool_new(NULL, NULL), -EINVAL);
    weft_connpool_opts never = {.idle_timeout_ms = -1};
    CHECK_EQ(weft_connpool_new(&P, &never), 0);
    CHECK_EQ(srv_start(&S, NULL), 0);
    weft_sock *s, *mine[2];
    CHECK_EQ(weft_connpool_get(NULL, &s, "127.0.0.1", S.port, 0), -EINVAL);
    CHECK_EQ(weft_connpool_get(P, NULL, "127.0.0.1", S.port, 0), -EINVAL);
    CHECK_EQ(weft_connpool_get(P, &s, NULL, S.port, 0), -EINVAL);
    CHECK_EQ(weft_connpool_get(P, &s, "127.0.0.1", 0, 0), -EINVAL);
    CHECK_EQ(weft_connpool_get(P, &s, "127.0.0.1", 65536, 0), -EINVAL);
    CHECK_EQ(weft_connpool_get_sni(P, &s, "127.0.0.1", S.port, "localhost", 0), -EINVAL);
    CHECK_EQ(weft_connpool_get(P, &s, "", S.port, 1000), WEFT_EAI_BADNAME);
    /* A server name equal to the host is no server name. */
    CHECK_EQ(weft_connpool_get_sni(P, &s, "127.0.0.1", S.port, "127.0.0.1", 5000), 0);
    CHECK_EQ(weft_connpool_put(NULL, s, 1), -EINVAL);
    CHECK_EQ(weft_connpool_put(P, NULL, 1), -EINVAL);
    /* A socket the pool did not give is left alone. */
    CHECK_EQ(make_pair(&mine[0], &mine[1]), 0);
    CHECK_EQ(weft_connpool_put(P, mine[0], 1), -EINVAL);
    CHECK_EQ(weft_send(mine[0], "x", 1, 1000), 1);
    weft_close(mine[0]);
    weft_close(mine[1]);
    CHECK_EQ(weft_connpool_put(P, s, 1), 0);
    CHECK_EQ(weft_connpool_put(P, s, 1), -EINVAL); /* twice */
    /* One closed behind the pool's back is forgotten. */
    CHECK_EQ(get(&s, 5000), 0);
    weft_close(s);
    CHECK_EQ(weft_connpool_put(P, s, 1), -EBADF);
    weft_connpool_stats st = stats();
    CHECK_EQ(st.idle + st.busy, 0);
    CHECK_EQ(weft_connpool_stat(NULL, &st), -EINVAL);
    CHECK_EQ(weft_connpool_stat(P, NULL), -EINVAL);
    weft_connpool_free(P);
    weft_connpool_free(NULL);
    srv_stop(&S);
    return 0;
}

Test(connpool, bad_arguments, .timeout = 60)
{
    cr_assert_eq(weft_main(bad_args_main, NULL, NULL), 0);
    verify();
    /* No loop on this thread. */
    weft_connpool *p;
    weft_sock *s;
    cr_assert_eq(weft_connpool_new(&p, NULL), 0);
    cr_assert_eq(weft_connpool_get(p, &s, "127.0.0.1", 80, 0), -EPERM);
    weft_connpool_free(p);
}

typedef struct from_other {
    int get_rc, put_rc, stat_rc;
    size_t idle_seen;
} from_other;

static int other_loop_main(void *arg)
{
    from_other *o = arg;
    weft_sock *s;
    weft_connpool_stats st;
    o->get_rc = get(&s, 1000);
    o->put_rc = weft_connpool_put(P, (weft_sock *)0x100000001, 1);
    o->stat_rc = weft_connpool_stat(P, &st); /* the pool's, from anywhere */
    o->idle_seen = st.idle;
    weft_connpool_free(P); /* not this thread's: no-op */
    return 0;
}

static void *other_thread(void *arg)
{
    return (void *)(intptr_t)weft_main(other_loop_main, arg, NULL);
}

static int owner_main(void *arg)
{
    CHECK_EQ(srv_start(&S, NULL), 0);
    CHECK_EQ(weft_connpool_new(&P, NULL), 0);
    weft_sock *a;
    CHECK_EQ(get(&a, 5000), 0);
    CHECK_EQ(weft_connpool_put(P, a, 1), 0);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, other_thread, arg), 0);
    void *rc;
    pthread_join(t, &rc);
    CHECK_EQ((intptr_t)rc, 0);
    CHECK_EQ(get(&a, 5000), 0); /* still this loop's */
    CHECK_EQ(ping(a), 0);
    CHECK_EQ(weft_connpool_put(P, a, 1), 0);
    weft_connpool_free(P);
    srv_stop(&S);
    return 0;
}

Test(connpool, another_threads_loop, .timeout = 60)
{
    from_other o = {0};
    cr_assert_eq(weft_main(owner_main, &o, NULL), 0);
    verify();
    cr_assert_eq(o.get_rc, -EXDEV);
    cr_assert_eq(o.put_rc, -EXDEV);
    cr_assert_eq(o.stat_rc, 0);
    cr_assert_eq(o.idle_seen, 1, "the owner's idle connection");
}

Test(connpool, outside_a_coroutine, .timeout = 60)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    cr_assert_eq(srv_start(&S, NULL), 0);
    weft_connpool_opts o = {.max_per_host = 1};
    cr_assert_eq(weft_connpool_new(&P, &o), 0);
    int64_t h = weft_go(hold, (void *)(intptr_t)100);
    for (int i = 0; i < 100 && stats().busy == 0; i++)
        weft_loop_poll(l, 10);
    cr_assert_eq(stats().busy, 1);
    /* Waits by running the loop until the holder puts it back. */
    weft_sock *s, *t;
    int64_t t0 = weft_now();
    cr_assert_eq(get(&s, 5000), 0);
    cr_assert_geq(weft_now() - t0, 50);
    cr_assert_eq(weft_join(h, 5000), 0);
    cr_assert_eq(get(&t, 0), -ETIMEDOUT);
    /* Nobody left who could put one back. */
    srv_drop_all(&S, false);
    weft_close(S.l);
    cr_assert_eq(weft_loop_run(l, 5000), 0);
    cr_assert_eq(get(&t, 5000), -EDEADLK);
    cr_assert_eq(weft_connpool_put(P, s, 1), 1); /* the server closed it */
    weft_connpool_free(P);
    weft_loop_free(l);
    verify();
}

/* ---- allocation failures ----------------------------------------------------------- */

static int sweep_nth, sweep_fired, sweep_rc;

static int get_sweep_main(void *arg)
{
    (void)arg;
    weft_sock *s = NULL;
    weft_fault_clear();
    weft_fault_set(WEFT_FAULT_MALLOC, (unsigned)sweep_nth, ENOMEM);
    sweep_rc = weft_connpool_new(&P, NULL);
    /* The loop's state, the part, its hosts' buckets, the host, the
     * record, the table, then the socket's own. */
    if (sweep_rc == 0)
        sweep_rc = weft_connpool_get(P, &s, "127.0.0.1", T.port, 5000);
    if (sweep_rc == 0)
        CHECK_EQ(weft_connpool_put(P, s, 1), 0);
    sweep_fired = (int)weft_fault_fired();
    weft_fault_clear();
    if (sweep_rc < 0)
        CHECK_EQ(sweep_rc, -ENOMEM);
    if (P) {
        weft_connpool_stats st = stats();
        CHECK_EQ(st.busy + st.connecting + st.waiting, 0);
        /* Works once memory is back. */
        CHECK_EQ(weft_connpool_get(P, &s, "127.0.0.1", T.port, 5000), 0);
        CHECK_EQ(ping(s), 0);
        CHECK_EQ(weft_connpool_put(P, s, 1), 0);
        weft_connpool_free(P);
        P = NULL;
    }
    return 0;
}

/* Descriptors settle as the server's loop sees our closes. */
static bool fds_settle(int want)
{
    for (int i = 0; i < 400 && count_fds() != want; i++)
        usleep(5000);
    return count_fds() == want;
}

Test(connpool, allocation_sweep, .timeout = 120)
{
    cr_assert_eq(thread_srv_start(NULL), 0);
    int fds = count_fds(), fired = 0;
    for (sweep_nth = 1; sweep_nth < 60; sweep_nth++) {
        P = NULL;
        cr_assert_eq(weft_main(get_sweep_main, NULL, NULL), 0);
        verify();
        cr_assert(fds_settle(fds), "nth %d: %d descriptors, want %d", sweep_nth, count_fds(), fds);
        if (!sweep_fired)
            break;
        fired++;
    }
    thread_srv_stop();
    cr_assert_lt(sweep_nth, 60, "the sweep never got past the allocations");
    cr_assert_geq(fired, 6, "%d allocations failed in turn", fired);
}

/* ---- TLS --------------------------------------------------------------------------- */

TestSuite(connpool_tls, .init = tls_suite_setup, .fini = tls_suite_teardown);

static weft_tls_ctx *sctx, *cctx;

static int tls_ctxs(void)
{
    int rc = ctx_server(&sctx, "srv", NULL);
    return rc < 0 ? rc : ctx_client(&cctx, NULL);
}

static void tls_ctxs_free(void)
{
    weft_tls_ctx_free(sctx);
    weft_tls_ctx_free(cctx);
    sctx = cctx = NULL;
}

static int tls_get(weft_sock **s, int64_t timeout_ms)
{
    return weft_connpool_get(P, s, "localhost", S.port, timeout_ms);
}

static int tls_resume_main(void *arg)
{
    (void)arg;
    CHECK_EQ(srv_start(&S, sctx), 0);
    weft_connpool_opts o = {.tls = cctx};
    CHECK_EQ(weft_connpool_new(&P, &o), 0);
    weft_sock *a, *b, *c;
    CHECK_EQ(tls_get(&a, 5000), 0);
    CHECK_EQ(weft_tls_resumed(a), 0);
    CHECK_EQ(ping(a), 0);           /* takes in the session tickets */
    CHECK_EQ(tls_get(&b, 5000), 0); /* a is out: a new one, resumed */
    CHECK_EQ(weft_tls_resumed(b), 1);
    CHECK_EQ(ping(b), 0);
    CHECK_EQ(weft_connpool_put(P, a, 1), 0);
    CHECK_EQ(weft_connpool_put(P, b, 1), 0);
    CHECK_EQ(tls_get(&c, 5000), 0);
    CHECK(c == b, "the newest idle one");
    CHECK_EQ(ping(c), 0);
    CHECK_EQ(weft_connpool_put(P, c, 1), 0);
    /* Another server name for the same address is another key. */
    weft_sock *d, *e;
    CHECK_EQ(weft_connpool_get_sni(P, &d, "127.0.0.1", S.port, "localhost", 5000), 0);
    CHECK_EQ(ping(d), 0);
    CHECK_EQ(weft_connpool_get_sni(P, &e, "127.0.0.1", S.port, "localhost", 5000), 0);
    CHECK_EQ(weft_tls_resumed(e), 1);
    CHECK_EQ(weft_connpool_put(P, d, 1), 0);
    CHECK_EQ(weft_connpool_put(P, e, 1), 0);
    /* A server name the certificate does not have fails, and keeps nothing. */
    CHECK_EQ(weft_connpool_get_sni(P, &d, "127.0.0.1", S.port, "other.test", 5000), WEFT_ETLS_NAME);
    weft_connpool_stats st = stats();
    CHECK_EQ(st.connects, 4);
    CHECK_EQ(st.reuses, 1);
    CHECK_EQ(st.idle, 4);
    CHECK_EQ(st.busy, 0);
    weft_connpool_free(P);
    srv_stop(&S);
    return 0;
}

Test(connpool_tls, sessions_resumed_and_server_names, .timeout = 60)
{
    cr_assert_eq(tls_ctxs(), 0);
    cr_assert_eq(weft_main(tls_resume_main, NULL, NULL), 0);
    tls_ctxs_free();
    verify();
}

static int tls_stale_main(void *arg)
{
    (void)arg;
    CHECK_EQ(srv_start(&S, sctx), 0);
    weft_connpool_opts o = {.tls = cctx};
    CHECK_EQ(weft_connpool_new(&P, &o), 0);
    weft_sock *a, *b;
    CHECK_EQ(tls_get(&a, 5000), 0);
    CHECK_EQ(ping(a), 0);
    CHECK_EQ(weft_connpool_put(P, a, 1), 0);
    srv_drop_all(&S, gone_how == BY_RST); /* close_notify and FIN, or RST */
    CHECK_EQ(tls_get(&b, 5000), 0);
    CHECK_EQ(ping(b), 0);
    CHECK_EQ(stats().stale, 1);
    CHECK_EQ(weft_connpool_put(P, b, 1), 0);
    /* And while the loop runs: the watch. */
    srv_drop_all(&S, gone_how == BY_RST);
    CHECK(SETTLE(stats().idle == 0, 2000));
    CHECK_EQ(stats().stale, 2);
    weft_connpool_free(P);
    srv_stop(&S);
    return 0;
}

Test(connpool_tls, stale_tls_connection_fin, .timeout = 60)
{
    gone_how = BY_FIN;
    cr_assert_eq(tls_ctxs(), 0);
    cr_assert_eq(weft_main(tls_stale_main, NULL, NULL), 0);
    tls_ctxs_free();
    verify();
}

Test(connpool_tls, stale_tls_connection_rst, .timeout = 60)
{
    gone_how = BY_RST;
    cr_assert_eq(tls_ctxs(), 0);
    cr_assert_eq(weft_main(tls_stale_main, NULL, NULL), 0);
    tls_ctxs_free();
    verify();
}

/* TLS 1.3 session tickets arrive after the handshake: a connection put
 * back at once gets them while idle, and is not stale for that. */
static int tickets_main(void *arg)
{
    (void)arg;
    CHECK_EQ(srv_start(&S, sctx), 0);
    weft_connpool_opts o = {.tls = cctx};
    CHECK_EQ(weft_connpool_new(&P, &o), 0);
    weft_sock *a, *b;
    CHECK_EQ(tls_get(&a, 5000), 0);
    CHECK_EQ(weft_connpool_put(P, a, 1), 0);
    weft_sleep(100); /* the server sends its tickets; the watch takes them in */
    weft_connpool_stats st = stats();
    CHECK_EQ(st.idle, 1);
    CHECK_EQ(st.stale, 0);
    CHECK_EQ(tls_get(&b, 5000), 0);
    CHECK(a == b);
    CHECK_EQ(ping(b), 0);
    CHECK_EQ(weft_connpool_put(P, b, 1), 0);
    weft_connpool_free(P);
    srv_stop(&S);
    return 0;
}

Test(connpool_tls, session_tickets_while_idle, .timeout = 60)
{
    cr_assert_eq(tls_ctxs(), 0);
    cr_assert_eq(weft_main(tickets_main, NULL, NULL), 0);
    tls_ctxs_free();
    verify();
}

/* The server on a thread of its own, so its tickets reach an idle
 * connection while this loop does not poll: the get meets them, takes
 * them in, hands the connection out, and keeps a pending cancel.  The
 * server's loop freezes for 150 ms once it waits for our Finished, so the
 * tickets come after the put; this thread sleeps through their arrival. */

static int tickets_at_get_main(void *arg)
{
    (void)arg;
    weft_connpool_opts o = {.tls = cctx};
    CHECK_EQ(weft_connpool_new(&P, &o), 0);
    weft_sock *a, *b;
    CHECK_EQ(weft_connpool_get(P, &a, "localhost", T.port, 5000), 0);
    CHECK_EQ(weft_connpool_put(P, a, 1), 0);
    struct timespec nap = {0, 400 * 1000000}; /* the thread, not the coroutine: no poll */
    nanosleep(&nap, NULL);
    weft_cancel(weft_self());
    CHECK_EQ(weft_connpool_get(P, &b, "localhost", T.port, 5000), 0);
    CHECK(a == b);
    CHECK_EQ(weft_sleep(1000), -ECANCELED);
    CHECK_EQ(stats().stale, 0);
    CHECK_EQ(ping(b), 0);
    CHECK_EQ(weft_connpool_put(P, b, 0), 1);
    weft_connpool_free(P);
    return 0;
}

Test(connpool_tls, tickets_met_by_the_get_keep_the_cancel, .timeout = 60)
{
    cr_assert_eq(tls_ctxs(), 0);
    t_freeze_ms = 150;
    cr_assert_eq(thread_srv_start(sctx), 0);
    cr_assert_eq(weft_main(tickets_at_get_main, NULL, NULL), 0);
    thread_srv_stop();
    t_freeze_ms = 0;
    tls_ctxs_free();
    verify();
}

static int tls_misc_main(void *arg)
{
    (void)arg;
    weft_connpool *p;
    weft_connpool_opts srv_role = {.tls = sctx};
    CHECK_EQ(weft_connpool_new(&p, &srv_role), -EINVAL);
    /* TLS asked of a plain server: the handshake fails, the slot comes back. */
    CHECK_EQ(srv_start(&S, NULL), 0);
    weft_connpool_opts o = {.tls = cctx, .max_per_host = 1};
    CHECK_EQ(weft_connpool_new(&P, &o), 0);
    weft_sock *s;
    int rc = weft_connpool_get(P, &s, "localhost", S.port, 2000);
    CHECK(rc < 0, "%s", weft_err_name(rc));
    weft_connpool_stats st = stats();
    CHECK_EQ(st.busy + st.connecting + st.idle, 0);
    weft_connpool_free(P);
    srv_stop(&S);
    /* A get still connecting when the pool is freed: it fails, nothing is
     * left behind. */
    weft_sock *silent;
    int port = listen_any(&silent, "127.0.0.1");
    waiter w = {.timeout_ms = 300};
    CHECK_EQ(weft_connpool_new(&P, &o), 0);
    S.port = port; /* nobody accepts: the handshake waits (wait_one gets from S.port) */
    w.id = weft_go(wait_one, &w);
    weft_sleep(50);
    CHECK_EQ(stats().connecting, 1);
    weft_connpool_free(P);
    CHECK_EQ(weft_join(w.id, 5000), 0);
    CHECK(w.rc < 0, "%s", weft_err_name(w.rc));
    weft_close(silent);
    return 0;
}

Test(connpool_tls, handshake_failures_and_contexts, .timeout = 60)
{
    int fds = count_fds();
    cr_assert_eq(tls_ctxs(), 0);
    cr_assert_eq(weft_main(tls_misc_main, NULL, NULL), 0);
    tls_ctxs_free();
    verify();
    cr_assert_eq(count_fds(), fds);
}
