/*
 * test_misuse.c - calls made wrong, and corners where a call's result did
 * not match its contract: NULL where a pointer is due, a loop freed from
 * the wrong place, a stop outside a run, a datagram sent or received
 * through many iovecs, weft_sock_sent after a send that never got its
 * turn, descriptors asked of a TCP socket, a server list c-ares refuses.
 * Each ends in a documented code or defined behaviour, never a crash.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- the loop ------------------------------------------------------------------ */

Test(misuse, loop_calls_with_null, .timeout = 30)
{
    cr_assert_eq(weft_loop_new(NULL, NULL), -EINVAL);
    cr_assert_eq(weft_loop_fd(NULL), -EINVAL);
    cr_assert_eq(weft_loop_poll(NULL, 0), -EINVAL);
    cr_assert_eq(weft_loop_run(NULL, 0), -EINVAL);
    cr_assert_eq(weft_loop_post(NULL, NULL, NULL), -EINVAL);
    weft_loop_wake(NULL);
    weft_loop_stop(NULL);
    weft_loop_free(NULL);
}

static void *fd_from_other_thread(void *arg)
{
    return (void *)(intptr_t)weft_loop_fd(arg);
}

static void *free_from_other_thread(void *arg)
{
    weft_loop_free(arg); /* must do nothing */
    return NULL;
}

static void frees_own_loop(void *arg)
{
    weft_loop_free(arg); /* must do nothing */
    weft_sleep(10);      /* and the loop goes on */
}

Test(misuse, loop_fd_and_free_from_the_wrong_place, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    pthread_t t;
    void *rc;
    cr_assert_eq(pthread_create(&t, NULL, fd_from_other_thread, l), 0);
    pthread_join(t, &rc);
    cr_assert_eq((intptr_t)rc, -EINVAL, "weft_loop_fd from another thread");
    cr_assert_eq(pthread_create(&t, NULL, free_from_other_thread, l), 0);
    pthread_join(t, NULL);
    int64_t id = weft_go(frees_own_loop, l);
    cr_assert_gt(id, 0);
    cr_assert_eq(weft_loop_run(l, 5000), 0, "the loop still runs its coroutines");
    weft_loop_free(l);
}

static void sleeper(void *arg)
{
    (void)arg;
    weft_sleep(300);
}

/* A stop outside weft_loop_run is nothing to stop: the polls after it
 * still wait. */
Test(misuse, stop_outside_a_run_does_not_make_polls_spin, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    cr_assert_gt(weft_go(sleeper, NULL), 0);
    weft_loop_poll(l, 0); /* the sleeper parks */
    weft_loop_stop(l);
    int64_t t0 = mono_ms();
    cr_assert_eq(weft_loop_poll(l, 100), 1);
    cr_assert_geq(mono_ms() - t0, 90, "the poll did not wait");
    weft_loop_free(l);
}

static int never_runs(void *arg)
{
    (void)arg;
    return 0;
}

/* weft_main's first coroutine whose stack cannot be mapped never ran: its
 * result is not a made-up 0. */
Test(misuse, weft_main_without_a_stack_for_fn, .timeout = 30)
{
    weft_fault_clear();
    weft_fault_set(WEFT_FAULT_MMAP, 1, ENOMEM);
    int rc = weft_main(never_runs, NULL, NULL);
    weft_fault_clear();
    cr_assert_eq(rc, -ENOMEM, "%s", weft_err_name(rc));
}

Test(misuse, dns_servers_that_c_ares_refuses_fail_the_loop, .timeout = 30)
{
    const char *bad[] = {"", "x", "host.example:53", "127.0.0.1:", "[::1]x", "*"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        weft_loop *l;
        weft_config c = {.dns_servers = bad[i]};
        cr_assert_eq(weft_loop_new(&l, &c), -EINVAL, "\"%s\"", bad[i]);
        cr_assert_eq(weft_main(never_runs, NULL, &c), -EINVAL, "\"%s\"", bad[i]);
    }
    weft_loop *l;
    weft_config c = {.dns_servers = "127.0.0.1:5353,[::1]:53"};
    cr_assert_eq(weft_loop_new(&l, &c), 0);
    weft_loop_free(l);
}

/* ---- sockets ----------------------------------------------------------------------- */

static int null_buffers_main(void *arg)
{
    int *bad = arg;
    weft_sock *a, *b;
    if (make_pair(&a, &b) < 0)
        return -1;
    *bad += weft_recv(a, NULL, 5, 0) != -EINVAL;
    *bad += weft_recvn(a, NULL, 5, 0) != -EINVAL;
    *bad += weft_send(a, NULL, 5, 0) != -EINVAL;
    *bad += weft_sock_local(a, NULL) != -EINVAL;
    *bad += weft_sock_peer(a, NULL) != -EINVAL;
    *bad += weft_sock_wrap(NULL, weft_sock_fd(a)) != -EINVAL;
    *bad += weft_recv(a, NULL, 0, 0) != 0; /* nothing asked, nothing read */
    weft_close(a);
    weft_close(b);
    return 0;
}

Test(misuse, null_buffers_are_einval, .timeout = 30)
{
    int fds = count_fds();
    int bad = 0;
    cr_assert_eq(weft_main(null_buffers_main, &bad, NULL), 0);
    cr_assert_eq(bad, 0, "%d calls with NULL did not return -EINVAL", bad);
    cr_assert_eq(count_fds(), fds);
}

/* A datagram's iovecs make one datagram however many they are, and a
 * receive through iovecs reports a truncated datagram's whole length. */
Test(misuse, datagram_through_many_iovecs, .timeout = 30)
{
    int fds = count_fds();
    weft_sock *p[2];
    cr_assert_eq(weft_socketpair(p, SOCK_DGRAM), 0);
    char bytes[100];
    struct iovec v[100];
    for (int i = 0; i < 100; i++) {
        bytes[i] = (char)('a' + i % 26);
        v[i] = (struct iovec){&bytes[i], 1};
    }
    cr_assert_eq(weft_sendv(p[0], v, 100, 1000), 100);
    char got[200];
    cr_assert_eq(weft_recv(p[1], got, sizeof got, 1000), 100, "one datagram of 100 bytes");
    cr_assert_eq(memcmp(got, bytes, 100), 0);
    cr_assert_eq(weft_recv(p[1], got, sizeof got, 50), -ETIMEDOUT, "and nothing more");
    /* 11 bytes into 4: the datagram's length, as weft_recv reports it. */
    cr_assert_eq(weft_send(p[0], "hello world", 11, 1000), 11);
    char small[4];
    struct iovec r = {small, sizeof small};
    cr_assert_eq(weft_recvv(p[1], &r, 1, 1000), 11);
    cr_assert_eq(memcmp(small, "hell", 4), 0);
    weft_close(p[0]);
    weft_close(p[1]);
    cr_assert_eq(count_fds(), fds);
}

/* weft_sock_sent tells what the last send got out: the send that gave up
 * waiting for its turn got out nothing, whatever the holder did. */
typedef struct turn_run {
    weft_sock *a, *b;
    ssize_t second_rc;
    size_t second_sent;
} turn_run;

static unsigned char big[8 << 20];

static void holder(void *arg)
{
    turn_run *r = arg;
    weft_send(r->a, big, sizeof big, 1000); /* fills the socket, then waits */
}

static int turn_main(void *arg)
{
    turn_run *r = arg;
    if (make_pair(&r->a, &r->b) < 0)
        return -1;
    weft_sock_set_bufsize(r->a, 0, 32 * 1024);
    int64_t id = weft_go(holder, r);
    weft_sleep(50); /* the holder has sent some and waits for room */
    r->second_rc = weft_send(r->a, "late", 4, 100);
    r->second_sent = weft_sock_sent(r->a);
    weft_join(id, -1);
    weft_close(r->a);
    weft_close(r->b);
    return 0;
}

Test(misuse, sock_sent_is_the_last_send_s_own, .timeout = 30)
{
    turn_run r = {0};
    cr_assert_eq(weft_main(turn_main, &r, NULL), 0);
    cr_assert_eq(r.second_rc, -ETIMEDOUT);
    cr_assert_eq(r.second_sent, 0, "the late send reports %zu bytes of the holder's",
                 r.second_sent);
}

/* Descriptors pass over unix sockets only: on TCP weft_recv_fd is
 * -EINVAL and leaves the stream's bytes alone. */
static int recv_fd_tcp_main(void *arg)
{
    int *out = arg;
    weft_sock *a, *b;
    if (make_pair(&a, &b) < 0)
        return -1;
    weft_send(a, "xy", 2, 1000);
    weft_sleep(20);
    int fd;
    out[0] = weft_recv_fd(b, &fd, 100);
    out[1] = weft_send_fd(b, 0, 100);
    char buf[4];
    out[2] = (int)weft_recv(b, buf, sizeof buf, 1000);
    weft_close(a);
    weft_close(b);
    return 0;
}

Test(misuse, descriptors_are_not_passed_over_tcp, .timeout = 30)
{
    int out[3] = {0};
    cr_assert_eq(weft_main(recv_fd_tcp_main, out, NULL), 0);
    cr_assert_eq(out[0], -EINVAL, "recv_fd on TCP: %s", weft_err_name(out[0]));
    cr_assert_eq(out[1], -EINVAL, "send_fd on TCP: %s", weft_err_name(out[1]));
    cr_assert_eq(out[2], 2, "the stream's bytes are still there");
}

/* Another loop's socket is -EXDEV even when memory runs out: nothing is
 * made to say so. */
static weft_sock *foreign;

static int exdev_oom_main(void *arg)
{
    int *rc = arg;
    char c;
    weft_fault_clear();
    weft_fault_set(WEFT_FAULT_MALLOC, 1, ENOMEM);
    *rc = (int)weft_recv(foreign, &c, 1, 0);
    weft_fault_clear();
    return 0;
}

static void *exdev_oom_thread(void *arg)
{
    weft_main(exdev_oom_main, arg, NULL);
    return NULL;
}

static int owner_main(void *arg)
{
    int *rc = arg;
    if (weft_udp_open(&foreign, AF_INET) < 0)
        return -1;
    pthread_t t;
    pthread_create(&t, NULL, exdev_oom_thread, rc);
    pthread_join(t, NULL);
    weft_close(foreign);
    return 0;
}

Test(misuse, exdev_needs_no_memory, .timeout = 30)
{
    int rc = 0;
    cr_assert_eq(weft_main(owner_main, &rc, NULL), 0);
    cr_assert_eq(rc, -EXDEV, "%s", weft_err_name(rc));
}
