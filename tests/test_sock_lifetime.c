/*
 * test_sock_lifetime.c - what a socket handle means once its socket is
 * closed, and who may use it (RELIABILITY #16, #21, #22): a second close,
 * any call after a close, a waiter whose socket another coroutine closed
 * and that then closes it too (the README's "close on error"), a handle
 * whose slot now names a newer socket, handles that were never sockets;
 * and calls from threads that do not own the socket: another loop's
 * coroutine (-EXDEV), a plain thread (-EXDEV), and weft_close from either,
 * which the owning loop carries out.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- closed handles ---------------------------------------------------------- */

static int after_close_main(void *arg)
{
    int *failures = arg;
    weft_sock *a, *b;
    if (make_pair(&a, &b) < 0)
        return -1;
    char buf[8];
    weft_addr addr;
    struct iovec v = {buf, sizeof buf};
#define EXPECT(call, want)                                                                          \
    do {                                                                                           \
        long long got_ = (long long)(call);                                                        \
        if (got_ != (long long)(want)) {                                                           \
            fprintf(stderr, "%s: got %lld, want %lld\n", #call, got_, (long long)(want));          \
            (*failures)++;                                                                         \
        }                                                                                          \
    } while (0)
    EXPECT(weft_close(a), 0);
    EXPECT(weft_close(a), -EBADF);
    EXPECT(weft_reset(a), -EBADF);
    EXPECT(weft_recv(a, buf, sizeof buf, 0), -EBADF);
    EXPECT(weft_recvn(a, buf, sizeof buf, 0), -EBADF);
    EXPECT(weft_recvv(a, &v, 1, 0), -EBADF);
    EXPECT(weft_send(a, "x", 1, 0), -EBADF);
    EXPECT(weft_sendv(a, &v, 1, 0), -EBADF);
    EXPECT(weft_sock_poll(a, WEFT_POLL_IN, 0), -EBADF);
    EXPECT(weft_shutdown(a, WEFT_SHUT_WR), -EBADF);
    EXPECT(weft_sock_fd(a), -EBADF);
    EXPECT(weft_sock_local(a, &addr), -EBADF);
    EXPECT(weft_sock_peer(a, &addr), -EBADF);
    EXPECT(weft_sock_set_nodelay(a, 1), -EBADF);
    EXPECT(weft_sock_set_blocking(a, 1), -EBADF);
    EXPECT(weft_sock_sent(a), 0);
    EXPECT(weft_sendto(a, "x", 1, NULL, 0), -EBADF);
    EXPECT(weft_recvfrom(a, buf, sizeof buf, NULL, 0), -EBADF);
    EXPECT(weft_udp_set_ttl(a, 1), -EBADF);
    EXPECT(weft_send_fd(a, 0, 0), -EBADF);
    EXPECT(weft_tls_verify_result(a), -EBADF);
    EXPECT(weft_tls_alpn(a) == NULL, 1);
    /* The peer is untouched by all that. */
    EXPECT(weft_recv(b, buf, sizeof buf, 2000), 0);
    EXPECT(weft_close(b), 0);
    return 0;
}

Test(sock_lifetime, every_call_after_close_is_ebadf, .timeout = 30)
{
    int fds = count_fds();
    int failures = 0;
    cr_assert_eq(weft_main(after_close_main, &failures, NULL), 0);
    cr_assert_eq(failures, 0, "%d calls on a closed handle did not return -EBADF", failures);
    cr_assert_eq(count_fds(), fds);
    /* Outside any loop too. */
    weft_sock *s;
    cr_assert_eq(weft_udp_open(&s, AF_INET), 0);
    cr_assert_eq(weft_close(s), 0);
    cr_assert_eq(weft_close(s), -EBADF);
    cr_assert_eq(weft_sock_fd(s), -EBADF);
    cr_assert_eq(count_fds(), fds);
}

/* "Close on error", the README's own pattern, for a reader whose socket
 * another coroutine closed: the reader's close must be harmless. */
typedef struct under {
    weft_sock *s;
    ssize_t rc;
    int close_rc;
} under;

static void reader_closes_on_error(void *arg)
{
    under *u = arg;
    char buf[64];
    u->rc = weft_recv(u->s, buf, sizeof buf, 5000);
    if (u->rc <= 0)
        u->close_rc = weft_close(u->s);
}

static int under_main(void *arg)
{
    under *u = arg;
    weft_sock *b;
    if (make_pair(&u[0].s, &b) < 0)
        return -1;
    u[1].s = u[0].s; /* a second reader, queued behind the first */
    int64_t r0 = weft_go(reader_closes_on_error, &u[0]);
    int64_t r1 = weft_go(reader_closes_on_error, &u[1]);
    weft_sleep(50);
    int rc = weft_close(u[0].s);
    weft_join(r0, -1);
    weft_join(r1, -1);
    weft_close(b);
    return rc;
}

Test(sock_lifetime, waiter_closed_under_gets_ebadf_and_may_close_again, .timeout = 30)
{
    int fds = count_fds();
    under u[2] = {{0}};
    cr_assert_eq(weft_main(under_main, u, NULL), 0);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(u[i].rc, -EBADF, "reader %d: %s", i, weft_err_name((int)u[i].rc));
        cr_assert_eq(u[i].close_rc, -EBADF, "reader %d's own close", i);
    }
    cr_assert_eq(count_fds(), fds);
}

/* Cancelled is not closed: the socket is still the caller's and works. */
static int cancel_main(void *arg)
{
    under *u = arg;
    weft_sock *b;
    if (make_pair(&u->s, &b) < 0)
        return -1;
    char buf[8];
    weft_cancel(weft_self());
    u->rc = weft_recv(u->s, buf, sizeof buf, 5000);
    weft_send(b, "hi", 2, 1000);
    ssize_t n = weft_recv(u->s, buf, sizeof buf, 2000);
    u->close_rc = weft_close(u->s);
    weft_close(b);
    return (int)n;
}

Test(sock_lifetime, cancelled_keeps_the_socket, .timeout = 30)
{
    int fds = count_fds();
    under u = {0};
    cr_assert_eq(weft_main(cancel_main, &u, NULL), 2);
    cr_assert_eq(u.rc, -ECANCELED);
    cr_assert_eq(u.close_rc, 0);
    cr_assert_eq(count_fds(), fds);
}

/* A closed handle's slot goes to a newer socket in time: the old handle
 * must not reach it. */
Test(sock_lifetime, stale_handle_never_names_a_newer_socket, .timeout = 60)
{
    int fds = count_fds();
    weft_sock *old;
    cr_assert_eq(weft_udp_open(&old, AF_INET), 0);
    cr_assert_eq(weft_close(old), 0);
    /* Slots come back oldest first: cycle through more than a table
     * chunk's worth so that old's slot is handed out again. */
    enum { N = 20000 };
    weft_sock **v = calloc(N, sizeof *v);
    cr_assert_not_null(v);
    int open = 0;
    for (int i = 0; i < N; i++) {
        weft_sock *s;
        cr_assert_eq(weft_udp_open(&s, AF_INET), 0);
        v[open++] = s;
        if (open == 64) { /* keep few descriptors open at once */
            for (int k = 0; k < 63; k++)
                cr_assert_eq(weft_close(v[k]), 0);
            v[0] = v[63];
            open = 1;
        }
    }
    for (int i = 0; i < open; i++) {
        cr_assert_eq(weft_close(old), -EBADF, "the old handle closed a newer socket");
        cr_assert_eq(weft_sock_fd(old), -EBADF);
        cr_assert_geq(weft_sock_fd(v[i]), 0, "a live socket was closed through an old handle");
        cr_assert_eq(weft_close(v[i]), 0);
    }
    free(v);
    cr_assert_eq(count_fds(), fds);
}

Test(sock_lifetime, handles_that_never_were_sockets_are_ebadf, .timeout = 30)
{
    int local = 0;
    char buf[4];
    weft_sock *bogus[] = {NULL, (weft_sock *)&local, (weft_sock *)(uintptr_t)1,
                          (weft_sock *)(uintptr_t)0xffffffffffffffffull,
                          (weft_sock *)(uintptr_t)0x0000000500000001ull};
    for (size_t i = 0; i < sizeof bogus / sizeof bogus[0]; i++) {
        cr_assert_eq(weft_close(bogus[i]), -EBADF, "handle %zu", i);
        cr_assert_eq(weft_recv(bogus[i], buf, sizeof buf, 0), -EBADF, "handle %zu", i);
        cr_assert_eq(weft_sock_fd(bogus[i]), -EBADF, "handle %zu", i);
    }
}

/* ---- other threads ------------------------------------------------------------ */

typedef struct xloop {
    weft_sock *a, *b;          /* a pair owned by loop A */
    atomic_int a_parked;       /* A's reader is waiting */
    atomic_int b_done;         /* loop B has tried everything */
    ssize_t a_rc;              /* A's reader */
    char a_buf[8];
    long long b_rc[8];         /* loop B's calls on A's socket */
    int foreign_close_rc;
} xloop;

static void a_reader(void *arg)
{
    xloop *x = arg;
    atomic_store(&x->a_parked, 1);
    x->a_rc = weft_recv(x->a, x->a_buf, sizeof x->a_buf, 10000);
}

static int a_main(void *arg)
{
    xloop *x = arg;
    if (make_pair(&x->a, &x->b) < 0)
        return -1;
    int64_t id = weft_go(a_reader, x);
    /* Wait (in the loop) for B to have tried its calls, then feed the
     * reader, which must not have noticed anything. */
    while (!atomic_load(&x->b_done))
        weft_sleep(5);
    weft_send(x->b, "ok", 2, 1000);
    weft_join(id, -1);
    weft_close(x->a);
    weft_close(x->b);
    return 0;
}

static int b_main(void *arg)
{
    xloop *x = arg;
    while (!atomic_load(&x->a_parked))
        weft_sleep(1);
    weft_sleep(20); /* A's reader is parked inside its recv now */
    char buf[8];
    struct iovec v = {buf, sizeof buf};
    x->b_rc[0] = weft_recv(x->a, buf, sizeof buf, 100);
    x->b_rc[1] = weft_send(x->a, "no", 2, 100);
    x->b_rc[2] = weft_sock_poll(x->a, WEFT_POLL_IN, 100);
    x->b_rc[3] = weft_recvv(x->a, &v, 1, 100);
    x->b_rc[4] = weft_shutdown(x->a, WEFT_SHUT_RDWR);
    x->b_rc[5] = weft_sock_fd(x->a);
    x->b_rc[6] = weft_sock_set_nodelay(x->a, 1);
    x->b_rc[7] = weft_recvn(x->a, buf, sizeof buf, 100);
    atomic_store(&x->b_done, 1);
    return 0;
}

static void *b_thread(void *arg)
{
    return (void *)(intptr_t)weft_main(b_main, arg, NULL);
}

static int a_main_thread(void *arg)
{
    return a_main(arg);
}

Test(sock_lifetime, another_loop_gets_exdev_while_the_owner_waits, .timeout = 60)
{
    int fds = count_fds();
    xloop *x = calloc(1, sizeof *x);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, b_thread, x), 0);
    cr_assert_eq(weft_main(a_main_thread, x, NULL), 0);
    void *ret;
    pthread_join(t, &ret);
    cr_assert_eq((intptr_t)ret, 0);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(x->b_rc[i], -EXDEV, "call %d from the other loop: %lld", i, x->b_rc[i]);
    cr_assert_eq(x->a_rc, 2, "the owner's reader: %s", weft_err_name((int)x->a_rc));
    cr_assert_eq(memcmp(x->a_buf, "ok", 2), 0);
    free(x);
    cr_assert_eq(count_fds(), fds);
}

/* weft_close from a plain thread (or another loop) while the owner's
 * coroutine waits on the socket: handed to the owner, the waiter wakes
 * with -EBADF, the descriptor is closed there. */
typedef struct handoff {
    weft_sock *a, *b;
    atomic_int parked;
    int use_loop; /* close from another loop's coroutine instead */
    int close_rc, second_rc, call_rc;
    ssize_t rc;
    int64_t woke_ms, closed_ms;
    int fd;
} handoff;

static void h_reader(void *arg)
{
    handoff *h = arg;
    char buf[8];
    atomic_store(&h->parked, 1);
    h->rc = weft_recv(h->a, buf, sizeof buf, 10000);
    h->woke_ms = mono_ms();
}

static int h_owner(void *arg)
{
    handoff *h = arg;
    if (make_pair(&h->a, &h->b) < 0)
        return -1;
    h->fd = weft_sock_fd(h->a);
    weft_join(weft_go(h_reader, h), -1);
    weft_close(h->b);
    return 0;
}

static void closer(handoff *h)
{
    while (!atomic_load(&h->parked))
        usleep(1000);
    usleep(20000);
    char buf[4];
    h->call_rc = (int)weft_recv(h->a, buf, sizeof buf, 0);
    h->closed_ms = mono_ms();
    h->close_rc = weft_close(h->a);
}

static int closer_main(void *arg)
{
    closer(arg);
    return 0;
}

static void *closer_thread(void *arg)
{
    handoff *h = arg;
    if (h->use_loop)
        weft_main(closer_main, h, NULL);
    else
        closer(h);
    return NULL;
}

static void run_handoff(int use_loop)
{
    int fds = count_fds();
    handoff *h = calloc(1, sizeof *h);
    h->use_loop = use_loop;
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, closer_thread, h), 0);
    cr_assert_eq(weft_main(h_owner, h, NULL), 0);
    pthread_join(t, NULL);
    cr_assert_eq(h->call_rc, -EXDEV, "a receive from the other thread");
    cr_assert_eq(h->close_rc, 0, "close from the other thread: %s", weft_err_name(h->close_rc));
    cr_assert_eq(h->rc, -EBADF, "the owner's waiter: %s", weft_err_name((int)h->rc));
    cr_assert(h->woke_ms - h->closed_ms < LATE_MS, "the waiter woke %lld ms after the close",
              (long long)(h->woke_ms - h->closed_ms));
    cr_assert_eq(weft_close(h->a), -EBADF, "the handle is dead everywhere");
    free(h);
    cr_assert_eq(count_fds(), fds);
}

Test(sock_lifetime, close_from_a_plain_thread_is_done_by_the_owner, .timeout = 60)
{
    run_handoff(0);
}

Test(sock_lifetime, close_from_another_loop_is_done_by_the_owner, .timeout = 60)
{
    run_handoff(1);
}

/* A close handed over just before the owning loop ends still happens. */
typedef struct late {
    weft_sock *s;
    atomic_int ready, asked;
} late;

static int late_owner(void *arg)
{
    late *l = arg;
    if (weft_udp_open(&l->s, AF_INET) < 0)
        return -1;
    weft_sock_poll(l->s, WEFT_POLL_OUT, 0); /* make it the loop's for sure */
    atomic_store(&l->ready, 1);
    while (!atomic_load(&l->asked))
        usleep(1000); /* blocks the loop: the request stays queued */
    return 0;
}

static void *late_closer(void *arg)
{
    late *l = arg;
    while (!atomic_load(&l->ready))
        usleep(1000);
    int rc = weft_close(l->s);
    atomic_store(&l->asked, 1);
    return (void *)(intptr_t)rc;
}

Test(sock_lifetime, close_asked_as_the_owner_ends_still_happens, .timeout = 30)
{
    int fds = count_fds();
    late l = {0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, late_closer, &l), 0);
    cr_assert_eq(weft_main(late_owner, &l, NULL), 0);
    void *rc;
    pthread_join(t, &rc);
    cr_assert_eq((intptr_t)rc, 0);
    cr_assert_eq(weft_sock_fd(l.s), -EBADF);
    cr_assert_eq(count_fds(), fds);
}

/* A socket made outside any loop belongs to the first loop that uses it;
 * once that loop is gone it belongs to none again. */
static int adopt_main(void *arg)
{
    weft_sock *s = arg;
    return weft_sock_poll(s, WEFT_POLL_OUT, 1000);
}

static void *other_loop_tries(void *arg)
{
    return (void *)(intptr_t)weft_main(adopt_main, arg, NULL);
}

static int adopt_and_hold(void *arg)
{
    void **v = arg;
    weft_sock *s = v[0];
    int rc = weft_sock_poll(s, WEFT_POLL_OUT, 1000);
    pthread_t t;
    pthread_create(&t, NULL, other_loop_tries, s);
    void *other;
    pthread_join(t, &other);
    v[1] = other;
    return rc;
}

Test(sock_lifetime, first_loop_to_use_a_socket_owns_it_until_it_ends, .timeout = 30)
{
    int fds = count_fds();
    weft_sock *s;
    cr_assert_eq(weft_udp_open(&s, AF_INET), 0); /* no loop yet */
    void *v[2] = {s, NULL};
    cr_assert_eq(weft_main(adopt_and_hold, v, NULL), WEFT_POLL_OUT);
    cr_assert_eq((intptr_t)v[1], -EXDEV, "another loop used the owner's socket");
    /* The owner is gone: the socket is a plain thread's again, and
     * another loop may take it. */
    cr_assert_eq(weft_sock_poll(s, WEFT_POLL_OUT, 0), WEFT_POLL_OUT);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, other_loop_tries, s), 0);
    void *rc;
    pthread_join(t, &rc);
    cr_assert_eq((intptr_t)rc, WEFT_POLL_OUT);
    cr_assert_eq(weft_close(s), 0);
    cr_assert_eq(count_fds(), fds);
}

/* Out of memory while handing a close over: -ENOMEM, the socket stays open
 * and the owner's, and the close can be asked again. */
typedef struct oom_close {
    weft_sock *s;
    atomic_int ready, done;
    int rc[3]; /* the first allocation failing, the second, then none */
} oom_close;

static void *oom_closer(void *arg)
{
    oom_close *o = arg;
    while (!atomic_load(&o->ready))
        usleep(1000);
    for (unsigned nth = 1; nth <= 2; nth++) {
        weft_fault_clear();
        weft_fault_set(WEFT_FAULT_MALLOC, nth, ENOMEM);
        o->rc[nth - 1] = weft_close(o->s);
        weft_fault_clear();
        char c;
        if (weft_recv(o->s, &c, 1, 0) != -EXDEV) /* still open, still the owner's */
            o->rc[nth - 1] = -9999;
    }
    o->rc[2] = weft_close(o->s);
    atomic_store(&o->done, 1);
    return NULL;
}

static int oom_owner(void *arg)
{
    oom_close *o = arg;
    if (weft_udp_open(&o->s, AF_INET) < 0)
        return -1;
    atomic_store(&o->ready, 1);
    char c;
    /* Parked until the handed-over close wakes it. */
    int rc = (int)weft_recv(o->s, &c, 1, 20000);
    return rc;
}

Test(sock_lifetime, out_of_memory_handing_a_close_over, .timeout = 60)
{
    int fds = count_fds();
    oom_close o = {0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, oom_closer, &o), 0);
    int rc = weft_main(oom_owner, &o, NULL);
    pthread_join(t, NULL);
    cr_assert_eq(o.rc[0], -ENOMEM, "the request's queue could not grow: %d", o.rc[0]);
    cr_assert_eq(o.rc[1], -ENOMEM, "the post could not be made: %d", o.rc[1]);
    cr_assert_eq(o.rc[2], 0);
    cr_assert_eq(rc, -EBADF, "the owner's receive: %s", weft_err_name(rc));
    cr_assert_eq(count_fds(), fds);
}
