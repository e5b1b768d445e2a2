/*
 * test_server_close_later.c - weft_close_after and weft_reset_after (co's
 * Connection::close(ms) and reset(ms)): the call returns at once and kills
 * the handle; the peer sees FIN or RST at the time, never early; waiters
 * leave at once; a loop freed before the time closes the socket then; a
 * handler that closes later is not closed early by the server; failures
 * leave the socket open and usable.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>

static void setup(void)
{
    weft_fault_clear();
}

TestSuite(close_later, .init = setup);

typedef struct cl {
    weft_sock *a, *b; /* a: closed later; b: the peer that watches */
    int rc, rc2, rc3, rc4;
    int64_t call_ms; /* how long the call took */
    int64_t seen_ms; /* when b saw the end, from the call */
    ssize_t seen;    /* what b's receive returned */
    char got[8];
    ssize_t got_n;
    ssize_t waiter_rc;
    int64_t waiter_ms;
} cl;

static cl C;

/* b reads until the end: data first, then what ends it. */
static void watch_end(int64_t t0)
{
    ssize_t n;
    char buf[16];
    while ((n = weft_recv(C.b, buf, sizeof buf, 10000)) > 0) {
        memcpy(C.got, buf, (size_t)n < sizeof C.got ? (size_t)n : sizeof C.got);
        C.got_n = n;
    }
    C.seen = n;
    C.seen_ms = mono_ms() - t0;
}

static int after_main(void *arg)
{
    bool reset = *(bool *)arg;
    if ((C.rc = make_pair(&C.a, &C.b)) < 0)
        return 0;
    weft_send(C.a, "data", 4, 1000); /* sent before: still goes out */
    int64_t t0 = mono_ms();
    C.rc = reset ? weft_reset_after(C.a, 300) : weft_close_after(C.a, 300);
    C.call_ms = mono_ms() - t0;
    /* The handle is dead at once. */
    C.rc2 = (int)weft_send(C.a, "x", 1, 0);
    C.rc3 = weft_close(C.a);
    C.rc4 = weft_close_after(C.a, 10);
    watch_end(t0);
    weft_close(C.b);
    return 0;
}

Test(close_later, close_after_sends_fin_at_the_time, .timeout = 30)
{
    memset(&C, 0, sizeof C);
    int fds = count_fds();
    bool reset = false;
    cr_assert_eq(weft_main(after_main, &reset, NULL), 0);
    cr_assert_eq(C.rc, 0, "%s", weft_err_name(C.rc));
    cr_assert_lt(C.call_ms, LATE_MS, "returns at once: %lld ms", (long long)C.call_ms);
    cr_assert_eq(C.rc2, -EBADF);
    cr_assert_eq(C.rc3, -EBADF, "a second close before the time is -EBADF");
    cr_assert_eq(C.rc4, -EBADF);
    cr_assert_eq(C.got_n, 4, "what was sent before still arrives");
    cr_assert_eq(memcmp(C.got, "data", 4), 0);
    cr_assert_eq(C.seen, 0, "FIN: %s", weft_err_name((int)C.seen));
    cr_assert_geq(C.seen_ms, 300 - 1, "never early: %lld ms", (long long)C.seen_ms);
    cr_assert_leq(C.seen_ms, 300 + LATE_MS, "%lld ms", (long long)C.seen_ms);
    cr_assert_eq(count_fds(), fds);
}

Test(close_later, reset_after_sends_rst_at_the_time, .timeout = 30)
{
    memset(&C, 0, sizeof C);
    int fds = count_fds();
    bool reset = true;
    cr_assert_eq(weft_main(after_main, &reset, NULL), 0);
    cr_assert_eq(C.rc, 0, "%s", weft_err_name(C.rc));
    cr_assert_lt(C.call_ms, LATE_MS);
    cr_assert_eq(C.rc3, -EBADF);
    cr_assert_eq(C.seen, -ECONNRESET, "RST: %s", weft_err_name((int)C.seen));
    cr_assert_geq(C.seen_ms, 300 - 1, "never early: %lld ms", (long long)C.seen_ms);
    cr_assert_leq(C.seen_ms, 300 + LATE_MS, "%lld ms", (long long)C.seen_ms);
    cr_assert_eq(count_fds(), fds);
}

/* A coroutine waiting on the socket leaves at once with -EBADF; the peer
 * still sees nothing until the time. */
static void waiter(void *arg)
{
    int64_t t0 = *(int64_t *)arg;
    char b;
    C.waiter_rc = weft_recv(C.a, &b, 1, 10000);
    C.waiter_ms = mono_ms() - t0;
}

static int waiter_main(void *arg)
{
    (void)arg;
    if ((C.rc = make_pair(&C.a, &C.b)) < 0)
        return 0;
    int64_t t0 = mono_ms();
    int64_t id = weft_go(waiter, &t0);
    weft_sleep(20);
    t0 = mono_ms();
    C.rc = weft_close_after(C.a, 600);
    weft_join(id, 5000);
    watch_end(t0);
    weft_close(C.b);
    return 0;
}

Test(close_later, waiters_leave_at_once, .timeout = 30)
{
    memset(&C, 0, sizeof C);
    cr_assert_eq(weft_main(waiter_main, NULL, NULL), 0);
    cr_assert_eq(C.rc, 0);
    cr_assert_eq(C.waiter_rc, -EBADF, "%s", weft_err_name((int)C.waiter_rc));
    cr_assert_lt(C.waiter_ms, LATE_MS, "%lld ms", (long long)C.waiter_ms);
    cr_assert_eq(C.seen, 0);
    cr_assert_geq(C.seen_ms, 600 - 1, "%lld ms", (long long)C.seen_ms);
}

/* ms <= 0: at once, as weft_close / weft_reset. */
static int now_main(void *arg)
{
    int64_t ms = *(int64_t *)arg;
    if ((C.rc = make_pair(&C.a, &C.b)) < 0)
        return 0;
    int64_t t0 = mono_ms();
    C.rc = ms == 0 ? weft_close_after(C.a, 0) : weft_reset_after(C.a, ms);
    watch_end(t0);
    weft_close(C.b);
    return 0;
}

Test(close_later, zero_or_negative_closes_at_once, .timeout = 30)
{
    int64_t ms = 0;
    memset(&C, 0, sizeof C);
    cr_assert_eq(weft_main(now_main, &ms, NULL), 0);
    cr_assert_eq(C.rc, 0);
    cr_assert_eq(C.seen, 0);
    cr_assert_lt(C.seen_ms, LATE_MS);
    ms = -5;
    memset(&C, 0, sizeof C);
    cr_assert_eq(weft_main(now_main, &ms, NULL), 0);
    cr_assert_eq(C.rc, 0);
    cr_assert_eq(C.seen, -ECONNRESET);
    cr_assert_lt(C.seen_ms, LATE_MS);
}

/* ---- the loop freed before the time ------------------------------------------------ */

Test(close_later, loop_freed_before_the_time, .timeout = 30)
{
    memset(&C, 0, sizeof C);
    int fds = count_fds();
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    int loop_fds = count_fds() - fds;
    cr_assert_eq(make_pair(&C.a, &C.b), 0);
    cr_assert_eq(weft_close_after(C.a, 60000), 0);
    cr_assert_eq(weft_reset_after(C.b, INT64_MAX), 0, "a time past any clock");
    cr_assert_eq(count_fds(), fds + loop_fds + 2, "both still open");
    weft_loop_free(l);
    cr_assert_eq(count_fds(), fds, "closed as the loop was freed, not leaked");
}

/* weft_main returns: pending closes do not keep the loop alive, and the
 * loop's end closes them. */
static int main_ends(void *arg)
{
    (void)arg;
    weft_sock *a, *b;
    if (make_pair(&a, &b) < 0)
        return 1;
    C.rc = weft_close_after(a, 100000);
    C.b = b; /* stays open past the loop */
    return 0;
}

Test(close_later, loop_end_closes_what_is_pending, .timeout = 30)
{
    memset(&C, 0, sizeof C);
    int fds = count_fds();
    int64_t t0 = mono_ms();
    cr_assert_eq(weft_main(main_ends, NULL, NULL), 0);
    cr_assert_lt(mono_ms() - t0, 5000, "a pending close kept the loop alive");
    cr_assert_eq(C.rc, 0);
    cr_assert_eq(count_fds(), fds + 1, "only the peer is left");
    char buf[4];
    cr_assert_eq(weft_recv(C.b, buf, sizeof buf, 5000), 0, "the peer saw the close");
    weft_close(C.b);
    cr_assert_eq(count_fds(), fds);
}

/* ---- many, in order ------------------------------------------------------------------ */

#define MANY 500

static int64_t many_seen[MANY], many_due[MANY];
static int many_bad;

typedef struct many_arg {
    weft_sock *b;
    int i;
    int64_t t0;
} many_arg;

static many_arg many_args[MANY];

static void many_peer(void *arg)
{
    many_arg *m = arg;
    char b;
    ssize_t n = weft_recv(m->b, &b, 1, 20000);
    many_seen[m->i] = mono_ms() - m->t0;
    if (n != (m->i % 2 ? -ECONNRESET : 0))
        many_bad++;
    weft_close(m->b);
}

static int many_main(void *arg)
{
    (void)arg;
    weft_sock *l;
    int port = listen_any(&l, "127.0.0.1");
    if (port <= 0)
        return 1;
    for (int i = 0; i < MANY; i++) {
        weft_sock *a, *b;
        if (weft_tcp_connect(&b, "127.0.0.1", port, 5000) < 0 || weft_tcp_accept(l, &a, 5000) < 0)
            return 2;
        many_due[i] = 50 + (i * 7919) % 700;
        many_args[i] = (many_arg){b, i, mono_ms()};
        if ((i % 2 ? weft_reset_after(a, many_due[i]) : weft_close_after(a, many_due[i])) < 0)
            return 3;
        weft_go(many_peer, &many_args[i]);
    }
    weft_close(l);
    return 0;
}

Test(close_later, many_pending_each_at_its_time, .timeout = 60)
{
    long lim = raise_nofile();
    if (lim < 2 * MANY + 100)
        cr_skip("RLIMIT_NOFILE %ld", lim);
    int fds = count_fds();
    many_bad = 0;
    cr_assert_eq(weft_main(many_main, NULL, NULL), 0);
    cr_assert_eq(many_bad, 0, "FIN for the closes, RST for the resets");
    for (int i = 0; i < MANY; i++) {
        cr_assert_geq(many_seen[i], many_due[i] - 1, "%d: %lld ms, due %lld", i,
                      (long long)many_seen[i], (long long)many_due[i]);
        cr_assert_leq(many_seen[i], many_due[i] + LATE_MS, "%d: %lld ms, due %lld", i,
                      (long long)many_seen[i], (long long)many_due[i]);
    }
    cr_assert_eq(count_fds(), fds);
}

/* ---- bad input, other threads, no loop --------------------------------------------------- */

static void *from_other_thread(void *arg)
{
    return (void *)(intptr_t)weft_close_after(arg, 100);
}

static int xdev_main(void *arg)
{
    (void)arg;
    if (make_pair(&C.a, &C.b) < 0)
        return 1;
    pthread_t th;
    void *rc;
    pthread_create(&th, NULL, from_other_thread, C.a);
    pthread_join(th, &rc);
    C.rc = (int)(intptr_t)rc;
    C.rc2 = (int)weft_send(C.a, "ok", 2, 1000); /* untouched */
    weft_close(C.a);
    weft_close(C.b);
    return 0;
}

Test(close_later, bad_handles_threads_and_no_loop, .timeout = 30)
{
    cr_assert_eq(weft_close_after(NULL, 10), -EBADF);
    cr_assert_eq(weft_reset_after((weft_sock *)(uintptr_t)0x12345, 10), -EBADF);
    /* No loop on this thread: nothing would keep the time. */
    weft_sock *a, *b;
    cr_assert_eq(make_pair(&a, &b), 0);
    cr_assert_eq(weft_close_after(a, 100), -EPERM);
    cr_assert_eq(weft_send(a, "ok", 2, 1000), 2, "still open and usable");
    cr_assert_eq(weft_close_after(a, 0), 0, "ms 0 works anywhere");
    cr_assert_eq(weft_close(a), -EBADF);
    weft_close(b);
    /* Another loop's socket. */
    memset(&C, 0, sizeof C);
    cr_assert_eq(weft_main(xdev_main, NULL, NULL), 0);
    cr_assert_eq(C.rc, -EXDEV);
    cr_assert_eq(C.rc2, 2);
}

/* ---- allocation failures leave the socket as it was ----------------------------------------- */

static int fault_nth, fault_enomem, fault_ok;

static int fault_main(void *arg)
{
    (void)arg;
    if (make_pair(&C.a, &C.b) < 0)
        return 1;
    int64_t t0 = mono_ms();
    weft_fault_set(WEFT_FAULT_MALLOC, (unsigned)fault_nth, ENOMEM);
    C.rc = weft_close_after(C.a, 100);
    weft_fault_clear();
    if (C.rc == -ENOMEM) {
        fault_enomem++;
        char b[2];
        /* Still open, still usable, still ours to close. */
        if (weft_send(C.a, "ok", 2, 1000) == 2 && weft_recvn(C.b, b, 2, 1000) == 2 &&
            weft_close(C.a) == 0)
            fault_ok++;
        weft_close(C.b);
        return 0;
    }
    watch_end(t0);
    weft_close(C.b);
    return 0;
}

Test(close_later, allocation_failures_leave_the_socket_open, .timeout = 60)
{
    int fds = count_fds();
    fault_enomem = fault_ok = 0;
    for (fault_nth = 1; fault_nth < 20; fault_nth++) {
        memset(&C, 0, sizeof C);
        cr_assert_eq(weft_main(fault_main, NULL, NULL), 0);
        if (C.rc == 0) {
            cr_assert_eq(C.seen, 0);
            cr_assert_geq(C.seen_ms, 100 - 1);
            break;
        }
        cr_assert_eq(C.rc, -ENOMEM, "nth %d: %s", fault_nth, weft_err_name(C.rc));
    }
    cr_assert_lt(fault_nth, 20, "close_after never succeeded");
    cr_assert_geq(fault_enomem, 2, "the state and the record each failed once: %d", fault_enomem);
    cr_assert_eq(fault_ok, fault_enomem);
    cr_assert_eq(count_fds(), fds);
}

/* The timer heap cannot grow: -ENOMEM too, the socket untouched.  The
 * heap grows when it is full: with n sleepers parked, for some n the
 * close's timer is the one that needs it. */
static void sleeper(void *arg)
{
    (void)arg;
    weft_sleep(10000);
}

static int heap_main(void *arg)
{
    (void)arg;
    weft_sock *x, *y;
    if (make_pair(&x, &y) < 0 || weft_close_after(x, 1) < 0) /* the state exists */
        return 1;
    weft_close(y);
    static int64_t ids[300];
    for (int n = 1; n < 300 && C.rc != -ENOMEM; n++) {
        if (make_pair(&C.a, &C.b) < 0)
            return 2;
        weft_sleep(5); /* every earlier close has fired */
        for (int i = 0; i < n; i++)
            ids[i] = weft_go(sleeper, NULL);
        weft_yield(); /* they park: n timers */
        /* The record first, then the heap. */
        weft_fault_set(WEFT_FAULT_MALLOC, 2, ENOMEM);
        C.rc = weft_close_after(C.a, 1);
        weft_fault_clear();
        if (C.rc == -ENOMEM) {
            C.rc2 = (int)weft_send(C.a, "ok", 2, 0);
            C.rc3 = weft_close(C.a);
        } else if (C.rc < 0) {
            return 3;
        }
        weft_close(C.b);
        for (int i = 0; i < n; i++)
            weft_cancel(ids[i]);
        for (int i = 0; i < n; i++)
            weft_join(ids[i], 1000);
    }
    return 0;
}

Test(close_later, timer_heap_full, .timeout = 60)
{
    memset(&C, 0, sizeof C);
    int fds = count_fds();
    cr_assert_eq(weft_main(heap_main, NULL, NULL), 0);
    cr_assert_eq(C.rc, -ENOMEM, "%s", weft_err_name(C.rc));
    cr_assert_eq(C.rc2, 2, "the socket is still usable");
    cr_assert_eq(C.rc3, 0, "and still ours to close");
    cr_assert_eq(count_fds(), fds);
}

/* ---- in a server: co's conn.close(ms) then return ------------------------------------------ */

static weft_server *srv;
static int srv_port, handler_rc;
static int64_t srv_seen_ms;
static ssize_t srv_seen;

static void later_handler(weft_sock *c, void *arg)
{
    bool reset = *(bool *)arg;
    char b[4];
    if (weft_recvn(c, b, 4, 5000) == 4 && weft_send(c, b, 4, 5000) == 4)
        handler_rc = reset ? weft_reset_after(c, 300) : weft_close_after(c, 300);
    /* returns: the server must not close it before the time */
}

static int srv_main(void *arg)
{
    weft_server_opts o = {.host = "127.0.0.1", .on_conn = later_handler, .arg = arg};
    if (weft_server_start(&srv, &o) < 0)
        return 1;
    srv_port = weft_server_port(srv);
    weft_sock *s;
    char b[4];
    if (weft_tcp_connect(&s, "127.0.0.1", srv_port, 5000) < 0)
        return 2;
    weft_send(s, "ping", 4, 5000);
    int64_t t0 = mono_ms();
    if (weft_recvn(s, b, 4, 5000) != 4)
        return 3;
    srv_seen = weft_recv(s, b, sizeof b, 5000);
    srv_seen_ms = mono_ms() - t0;
    weft_close(s);
    weft_server_free(srv);
    return 0;
}

Test(close_later, handler_closes_later_then_returns, .timeout = 30)
{
    for (int r = 0; r < 2; r++) {
        bool reset = r;
        int fds = count_fds();
        handler_rc = -1;
        cr_assert_eq(weft_main(srv_main, &reset, NULL), 0);
        cr_assert_eq(handler_rc, 0);
        cr_assert_eq(srv_seen, reset ? -ECONNRESET : 0, "%s", weft_err_name((int)srv_seen));
        cr_assert_geq(srv_seen_ms, 300 - 1, "the server closed it early: %lld ms",
                      (long long)srv_seen_ms);
        cr_assert_leq(srv_seen_ms, 300 + LATE_MS);
        cr_assert_eq(count_fds(), fds);
    }
}
