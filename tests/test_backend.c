/*
 * test_backend.c - choosing a backend, and what only a completion backend
 * (io_uring) can get wrong: a buffer written after its call returned, a
 * close under operations in the ring, more completions in one step than
 * the completion queue holds, a kernel that refuses io_uring.
 * RELIABILITY.md group L.  The rest of the suite runs on every backend
 * ($WEFT_BACKEND, `make test-backends`).
 */
#include "helpers.h"
#include "net/sock.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const weft_config uring_cfg = { .backend = "io_uring" };

/* True when this kernel gives weft a ring; the io_uring cases are skipped
 * where it does not (the fallback cases below still run). */
static bool have_uring(void)
{
    weft_loop *l;
    if (weft_loop_new(&l, &uring_cfg) != 0)
        return false;
    bool yes = strcmp(weft_backend(), "io_uring") == 0;
    weft_loop_free(l);
    return yes;
}

#define NEED_URING()                                                                               \
    do {                                                                                           \
        if (!have_uring())                                                                         \
            cr_skip_test("io_uring cannot be set up here");                                        \
    } while (0)

/* One byte each way over a fresh pair: the loop works. */
static int round_trip(void)
{
    weft_sock *a, *b;
    int rc = make_pair(&a, &b);
    if (rc < 0)
        return rc;
    char c = 0;
    if (weft_send(a, "x", 1, 2000) != 1 || weft_recv(b, &c, 1, 2000) != 1 || c != 'x')
        rc = -EIO;
    weft_close(a);
    weft_close(b);
    return rc;
}

/* ---- choosing --------------------------------------------------------------- */

static const char *main_backend;

static int name_main(void *arg)
{
    (void)arg;
    main_backend = weft_backend();
    return round_trip();
}

Test(backend, each_name_runs_and_says_so, .timeout = 60)
{
    const char *names[] = { "epoll", "poll", "io_uring" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        weft_config cfg = { .backend = names[i] };
        main_backend = NULL;
        cr_assert_eq(weft_main(name_main, NULL, &cfg), 0, "%s", names[i]);
        cr_assert_not_null(main_backend);
        if (strcmp(names[i], "io_uring") == 0 && !have_uring())
            cr_assert_str_eq(main_backend, "epoll");
        else
            cr_assert_str_eq(main_backend, names[i]);
    }
    weft_config bad = { .backend = "kqueue" };
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, &bad), -EINVAL);
    cr_assert_eq(weft_main(name_main, NULL, &bad), -EINVAL);
}

Test(backend, default_outside_a_loop_is_the_loops, .timeout = 30)
{
    unsetenv("WEFT_BACKEND");
    const char *want = weft_backend();
    cr_assert_not_null(want);
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    /* io_uring may have fallen back to epoll as the loop was made. */
    if (strcmp(want, "io_uring") != 0 || have_uring())
        cr_assert_str_eq(weft_backend(), want);
    weft_loop_free(l);
    setenv("WEFT_BACKEND", "poll", 1);
    cr_assert_str_eq(weft_backend(), "poll");
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    cr_assert_str_eq(weft_backend(), "poll");
    weft_loop_free(l);
    setenv("WEFT_BACKEND", "nonesuch", 1);
    cr_assert_null(weft_backend());
    cr_assert_eq(weft_loop_new(&l, NULL), -EINVAL);
    unsetenv("WEFT_BACKEND");
}

/* ---- io_uring refused: epoll (#74) ------------------------------------------- */

Test(backend, ring_setup_failing_falls_back_to_epoll, .timeout = 30)
{
    int errs[] = { EPERM, ENOSYS, ENOMEM, EINVAL };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        weft_fault_clear();
        weft_fault_set(WEFT_FAULT_RING, 1, errs[i]);
        main_backend = NULL;
        cr_assert_eq(weft_main(name_main, NULL, &uring_cfg), 0);
        cr_assert_eq(weft_fault_fired(), 1);
        cr_assert_str_eq(main_backend, "epoll", "after %s", strerror(errs[i]));
    }
    weft_fault_clear();
}

/* A seccomp profile that refuses io_uring_setup, as container runtimes'
 * default ones do, in a child of its own. */
static int refuse_io_uring(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof f / sizeof f[0], .filter = f };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -errno;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0 ? 0 : -errno;
}

Test(backend, seccomp_refusing_io_uring_gives_epoll, .timeout = 60)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (refuse_io_uring() != 0)
            _exit(10);
        if (syscall(__NR_io_uring_setup, 4, NULL) != -1 || errno != EPERM)
            _exit(11); /* the filter is not in force */
        main_backend = NULL;
        if (weft_main(name_main, NULL, &uring_cfg) != 0)
            _exit(12);
        _exit(main_backend && strcmp(main_backend, "epoll") == 0 ? 0 : 13);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: status %d", st);
}

/* ---- a cancelled receive's buffer is never written (#71) ---------------------- */

#define CANARY 0xA5
#define BUF 4096

typedef struct canary_run {
    weft_sock *a, *b;
    unsigned char *heap;   /* the heap buffer of the first receiver */
    uintptr_t stack_at;    /* where the stack buffer of the second was */
    uintptr_t frame_lo, frame_hi; /* the third's canary */
    ssize_t rc[4];
    char got[16];
    int stack_intact;      /* the third coroutine's canary, over that range */
} canary_run;

static canary_run C;

static void recv_heap(void *arg)
{
    int64_t timeout = (int64_t)(intptr_t)arg;
    C.rc[0] = weft_recv(C.b, C.heap, BUF, timeout);
}

static void recv_stack(void *arg)
{
    int64_t timeout = (int64_t)(intptr_t)arg;
    unsigned char buf[BUF];
    C.stack_at = (uintptr_t)buf;
    C.rc[1] = weft_recv(C.b, buf, sizeof buf, timeout);
}

/* Runs on the stack the cancelled receiver left (the pool hands it out
 * again): the bytes of its frame, where the buffer was, hold a canary
 * while the data arrives. */
static void canary_frame(void *arg)
{
    (void)arg;
    unsigned char frame[16 * BUF];
    memset(frame, CANARY, sizeof frame);
    __asm__ volatile("" : : "r"(frame) : "memory");
    C.frame_lo = (uintptr_t)frame;
    C.frame_hi = (uintptr_t)(frame + sizeof frame);
    weft_sleep(100); /* the peer sends meanwhile */
    C.stack_intact = 1;
    for (size_t i = 0; i < sizeof frame; i++)
        if (frame[i] != CANARY)
            C.stack_intact = 0;
}

static int canary_main(void *arg)
{
    bool by_cancel = arg != NULL;
    if (make_pair(&C.a, &C.b) < 0)
        return -1;
    int64_t timeout = by_cancel ? -1 : 50;
    int64_t r1 = weft_go(recv_heap, (void *)(intptr_t)timeout);
    weft_sleep(20); /* parked, its receive in the ring */
    if (by_cancel)
        weft_cancel(r1);
    weft_join(r1, 5000);
    memset(C.heap, CANARY, BUF);
    int64_t r2 = weft_go(recv_stack, (void *)(intptr_t)timeout);
    weft_sleep(20);
    if (by_cancel)
        weft_cancel(r2);
    weft_join(r2, 5000);
    int64_t r3 = weft_go(canary_frame, NULL);
    weft_sleep(20);
    /* Now the data: it must go to the next reader, and nowhere else. */
    C.rc[2] = weft_send(C.a, "hello", 5, 1000);
    C.rc[3] = weft_recv(C.b, C.got, sizeof C.got - 1, 2000);
    weft_join(r3, 5000);
    weft_close(C.a);
    weft_close(C.b);
    return 0;
}

static void check_canary(bool by_cancel)
{
    NEED_URING();
    memset(&C, 0, sizeof C);
    C.heap = malloc(BUF);
    cr_assert_eq(weft_main(canary_main, by_cancel ? (void *)1 : NULL, &uring_cfg), 0);
    int want = by_cancel ? -ECANCELED : -ETIMEDOUT;
    cr_assert_eq(C.rc[0], want, "heap receive: %s", weft_err_name((int)C.rc[0]));
    cr_assert_eq(C.rc[1], want, "stack receive: %s", weft_err_name((int)C.rc[1]));
    cr_assert_eq(C.rc[2], 5);
    cr_assert_eq(C.rc[3], 5, "the next reader: %s", weft_err_name((int)C.rc[3]));
    cr_assert_str_eq(C.got, "hello");
    for (int i = 0; i < BUF; i++)
        cr_assert_eq(C.heap[i], CANARY, "heap buffer written at %d", i);
#ifndef __SANITIZE_ADDRESS__ /* ASan keeps such arrays on a stack of its own */
    cr_assert(C.stack_at >= C.frame_lo && C.stack_at + BUF <= C.frame_hi,
              "the canary covers the old buffer (stack reused)");
#endif
    cr_assert_eq(C.stack_intact, 1, "a stack frame was written");
    free(C.heap);
}

Test(backend, cancelled_receive_never_writes_its_buffer, .timeout = 60)
{
    check_canary(true);
}

Test(backend, timed_out_receive_never_writes_its_buffer, .timeout = 60)
{
    check_canary(false);
}

/* ---- close with a receive and a send in the ring (#72) ------------------------- */

typedef struct inflight_run {
    weft_sock *a, *b;
    ssize_t rd, wr, peer_end;
    size_t peer_got, sent;
    int close_rc;
} inflight_run;

static inflight_run F;

static void in_reader(void *arg)
{
    (void)arg;
    char c;
    F.rd = weft_recv(F.a, &c, 1, 10000);
}

static void in_writer(void *arg)
{
    (void)arg;
    size_t n = 16 << 20; /* more than the socket buffers hold */
    char *big = calloc(1, n);
    F.wr = weft_send(F.a, big, n, 10000);
    free(big);
}

static int inflight_main(void *arg)
{
    (void)arg;
    if (make_pair(&F.a, &F.b) < 0)
        return -1;
    int64_t r = weft_go(in_reader, NULL), w = weft_go(in_writer, NULL);
    weft_sleep(50); /* both parked, their operations in the ring */
    F.close_rc = weft_close(F.a);
    weft_join(r, 5000);
    weft_join(w, 5000);
    /* The peer gets what was sent, then the end of the stream: the close
     * reached the kernel (no operation kept the socket open). */
    char buf[65536];
    ssize_t n;
    while ((n = weft_recv(F.b, buf, sizeof buf, 5000)) > 0)
        F.peer_got += (size_t)n;
    F.peer_end = n;
    weft_close(F.b);
    return 0;
}

Test(backend, close_with_operations_in_flight, .timeout = 60)
{
    NEED_URING();
    int fds = count_fds();
    memset(&F, 0, sizeof F);
    cr_assert_eq(weft_main(inflight_main, NULL, &uring_cfg), 0);
    cr_assert_eq(F.close_rc, 0);
    cr_assert_eq(F.rd, -EBADF, "reader: %s", weft_err_name((int)F.rd));
    cr_assert_eq(F.wr, -EBADF, "writer: %s", weft_err_name((int)F.wr));
    cr_assert_eq(F.peer_end, 0, "the peer: %s", weft_err_name((int)F.peer_end));
    cr_assert_gt(F.peer_got, 0);
    cr_assert_eq(count_fds(), fds);
}

/* ---- more completions in one step than the queue holds (#73) ------------------- */

#define MANY 10000

typedef struct many_run {
    int fd[MANY][2];
    weft_sock *s[MANY];
    int n, parked, got, wrong;
} many_run;

static many_run *M;

static void many_reader(void *arg)
{
    int i = (int)(intptr_t)arg;
    char c = 0;
    M->parked++;
    ssize_t r = weft_recv(M->s[i], &c, 1, 30000);
    if (r == 1 && c == (char)('a' + i % 26))
        M->got++;
    else
        M->wrong++;
}

static int many_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < M->n; i++)
        weft_go(many_reader, (void *)(intptr_t)i);
    while (M->parked < M->n)
        weft_yield();
    weft_sleep(50); /* every receive is in the ring */
    /* All the data at once, with no step in between: every receive
     * completes for the same step. */
    for (int i = 0; i < M->n; i++) {
        char c = (char)('a' + i % 26);
        if (write(M->fd[i][1], &c, 1) != 1)
            return -errno;
    }
    int64_t until = mono_ms() + 20000;
    while (M->got + M->wrong < M->n && mono_ms() < until)
        weft_sleep(10);
    return 0;
}

/* Raises the descriptor limit to n where it can (root may raise the hard
 * one too); returns the soft limit then. */
static long nofile_at_least(rlim_t n)
{
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    if (r.rlim_max < n) {
        r.rlim_max = r.rlim_cur = n;
        setrlimit(RLIMIT_NOFILE, &r);
    }
    return raise_nofile();
}

Test(backend, ten_thousand_completions_in_one_step, .timeout = 120)
{
    NEED_URING();
    long lim = nofile_at_least(2 * MANY + 200);
    M = calloc(1, sizeof *M);
    M->n = lim >= 2 * MANY + 200 ? MANY : (int)(lim - 200) / 2;
    cr_assert_geq(M->n, 4000, "descriptor limit %ld", lim);
    for (int i = 0; i < M->n; i++) {
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, M->fd[i]),
                     0, "pair %d: %s", i, strerror(errno));
        cr_assert_eq(weft_sock_wrap(&M->s[i], M->fd[i][0]), 0);
    }
    cr_assert_eq(weft_main(many_main, NULL, &uring_cfg), 0);
    cr_assert_eq(M->wrong, 0);
    cr_assert_eq(M->got, M->n, "%d of %d receives completed", M->got, M->n);
    for (int i = 0; i < M->n; i++) {
        weft_close(M->s[i]);
        close(M->fd[i][1]);
    }
    free(M);
}

/* ---- the fault seam reaches the ring ---------------------------------------------- */

typedef struct fault_run {
    ssize_t rc[4];
    char got[8];
} fault_run;

static int fault_main(void *arg)
{
    fault_run *f = arg;
    weft_sock *a, *b;
    if (make_pair(&a, &b) < 0)
        return -1;
    /* A receive that found nothing: the next one goes to the ring (one
     * that found data tries the syscall first). */
    f->rc[0] = weft_recv(b, f->got, 1, 0);
    if (f->rc[0] != -ETIMEDOUT)
        return -1;
    weft_send(a, "a", 1, 1000);
    /* No room for the submission: the receive is done by a syscall. */
    weft_fault_clear();
    weft_fault_set(WEFT_FAULT_RING, 1, EBUSY);
    f->rc[0] = weft_recv(b, f->got, 1, 1000);
    f->rc[1] = (ssize_t)weft_fault_fired();
    weft_fault_clear();
    if (weft_recv(b, f->got + 1, 1, 0) != -ETIMEDOUT)
        return -1;
    weft_send(a, "b", 1, 1000);
    /* An operation of the ring fails as its syscall would. */
    weft_fault_set(WEFT_FAULT_RECV, 1, ECONNRESET);
    f->rc[2] = weft_recv(b, f->got + 1, 1, 1000);
    f->rc[3] = weft_recv(b, f->got + 1, 1, 1000); /* the byte is still there */
    weft_fault_clear();
    weft_close(a);
    weft_close(b);
    return 0;
}

Test(backend, fault_seam_reaches_the_ring, .timeout = 30)
{
    NEED_URING();
    fault_run f;
    memset(&f, 0, sizeof f);
    cr_assert_eq(weft_main(fault_main, &f, &uring_cfg), 0);
    cr_assert_eq(f.rc[0], 1, "%s", weft_err_name((int)f.rc[0]));
    cr_assert_eq(f.rc[1], 1, "the submission fault fired");
    cr_assert_eq(f.rc[2], -ECONNRESET);
    cr_assert_eq(f.rc[3], 1);
    cr_assert_eq(memcmp(f.got, "ab", 2), 0);
}

/* ---- weft_loop_fd once operations are in the ring ------------------------------------ */

static void park_recv(void *arg)
{
    char c;
    weft_recv(arg, &c, 1, 200);
}

Test(backend, loop_fd_needs_an_idle_ring, .timeout = 30)
{
    NEED_URING();
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, &uring_cfg), 0);
    weft_sock *a, *b;
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    cr_assert_eq(weft_sock_wrap(&a, sv[0]), 0);
    cr_assert_eq(weft_sock_wrap(&b, sv[1]), 0);
    weft_go(park_recv, a);
    weft_loop_poll(l, 0); /* its receive is in the ring */
    cr_assert_eq(weft_loop_fd(l), -EBUSY);
    cr_assert_eq(weft_loop_run(l, 5000), 0); /* it times out */
    int fd = weft_loop_fd(l);
    cr_assert_geq(fd, 0);
    cr_assert_eq(weft_loop_fd(l), fd);
    weft_close(a);
    weft_close(b);
    weft_loop_free(l);
}

Test(backend, poll_has_no_loop_fd, .timeout = 30)
{
    weft_config cfg = { .backend = "poll" };
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, &cfg), 0);
    cr_assert_eq(weft_loop_fd(l), -ENOTSUP);
    cr_assert_eq(weft_loop_fd(l), -ENOTSUP, "and nothing was left half made");
    cr_assert_eq(weft_loop_poll(l, 0), 0);
    weft_loop_free(l);
}

/* ---- a cancel's reap does not hide the epoll set's readiness ------------------------ */

/* Closing a socket whose read-ahead is in the ring cancels it and runs
 * the ring's completions at once; the epoll set's poll may complete among
 * them (a pipe written a moment before).  That poll does not fire again
 * for what the set already holds, so the loop must not then sleep. */
static struct {
    weft_sock *a, *b;
    int pipe[2];
    int wait_rc;
    ssize_t recv_rc;
} E;

static void e_setup(void *arg)
{
    (void)arg;
    if (make_pair(&E.a, &E.b) < 0) {
        E.a = E.b = NULL;
        return;
    }
    char c;
    weft_send(E.a, "y", 1, 2000);
    E.recv_rc = weft_recv(E.b, &c, 1, 2000); /* leaves the read-ahead armed */
}

static void e_waiter(void *arg)
{
    (void)arg;
    E.wait_rc = weft_fd_wait(E.pipe[0], WEFT_POLL_IN, -1);
}

static void e_poker(void *arg)
{
    (void)arg;
    if (write(E.pipe[1], "x", 1) != 1)
        return;
    weft_close(E.b); /* cancels in the ring and runs it, waking nobody */
}

Test(backend, a_cancels_reap_does_not_hide_readiness, .timeout = 30)
{
    NEED_URING();
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, &uring_cfg), 0);
    cr_assert_eq(pipe2(E.pipe, O_NONBLOCK | O_CLOEXEC), 0);
    weft_go(e_setup, NULL);
    cr_assert_eq(weft_loop_run(l, 5000), 0);
    cr_assert_not_null(E.a);
    cr_assert_eq(E.recv_rc, 1);
    E.wait_rc = 1;
    weft_go(e_waiter, NULL);
    cr_assert_eq(weft_loop_poll(l, 0), 1); /* it waits; its poll is in the ring */
    weft_go(e_poker, NULL);
    /* The waiter wakes in the poker's step or the next; a loop that slept
     * through the readiness wakes only at weft_loop_run's deadline.  (A
     * hang guard: 10 s for what takes microseconds.) */
    int64_t t0 = weft_now();
    cr_assert_eq(weft_loop_run(l, 10000), 0);
    cr_assert_lt(weft_now() - t0, 9000, "the loop slept through the pipe's readiness");
    cr_assert_eq(E.wait_rc, WEFT_POLL_IN);
    weft_close(E.a);
    close(E.pipe[0]);
    close(E.pipe[1]);
    weft_loop_free(l);
}

/* ---- the read-ahead of TCP sockets (io_uring with provided buffers) ----------------- */

/* A stream read in pieces of every size through the read-ahead's queue:
 * byte-exact, then the end of the stream, again and again. */
#define STREAM_BYTES (1 << 20)

static struct {
    weft_sock *a, *b;
    ssize_t got, ends[2];
    int bad;
} R;

static unsigned char pattern_at(size_t i)
{
    return (unsigned char)(i * 7 + (i >> 11));
}

static void r_writer(void *arg)
{
    (void)arg;
    unsigned char *buf = malloc(STREAM_BYTES);
    for (size_t i = 0; i < STREAM_BYTES; i++)
        buf[i] = pattern_at(i);
    /* In uneven pieces, so the reader's sizes and the kernel's cut differ. */
    for (size_t off = 0, k = 1; off < STREAM_BYTES; k = k * 3 % 9973 + 1) {
        size_t n = k < STREAM_BYTES - off ? k : STREAM_BYTES - off;
        if (weft_send(R.a, buf + off, n, 5000) != (ssize_t)n)
            break;
        off += n;
    }
    weft_shutdown(R.a, WEFT_SHUT_WR);
    free(buf);
}

static int r_main(void *arg)
{
    (void)arg;
    if (make_pair(&R.a, &R.b) < 0)
        return -1;
    int64_t w = weft_go(r_writer, NULL);
    static unsigned char buf[24576]; /* past 16 KiB: receives of their own */
    unsigned char more[5];
    size_t k = 1;
    for (;;) {
        ssize_t n;
        if (k % 3 == 0) {
            /* recvv: a small first piece, then the rest of the size */
            size_t first = k % 5;
            struct iovec v[2] = { { more, first }, { buf, k } };
            n = weft_recvv(R.b, v, 2, 5000);
            for (ssize_t i = 0; i < n; i++) {
                unsigned char c = (size_t)i < first ? more[i] : buf[(size_t)i - first];
                R.bad += c != pattern_at((size_t)R.got + (size_t)i);
            }
        } else {
            n = weft_recv(R.b, buf, k, 5000);
            for (ssize_t i = 0; i < n; i++)
                R.bad += buf[i] != pattern_at((size_t)R.got + (size_t)i);
        }
        if (n <= 0) {
            R.ends[0] = n;
            break;
        }
        R.got += n;
        k = k * 5 % 24571 + 1;
    }
    R.ends[1] = weft_recv(R.b, buf, 1, 1000); /* the end stays the end */
    weft_join(w, -1);
    weft_close(R.a);
    weft_close(R.b);
    return 0;
}

Test(backend, readahead_reads_a_stream_in_pieces_of_every_size, .timeout = 60)
{
    int fds = count_fds();
    cr_assert_eq(weft_main(r_main, NULL, &uring_cfg), 0);
    cr_assert_eq(R.got, STREAM_BYTES);
    cr_assert_eq(R.bad, 0, "%d bytes wrong", R.bad);
    cr_assert_eq(R.ends[0], 0);
    cr_assert_eq(R.ends[1], 0);
    cr_assert_eq(count_fds(), fds);
}

/* The peer's bytes, then its reset: the bytes first, the error once, then
 * the end. */
static struct {
    ssize_t r[4];
    char got[8];
} X;

static int x_main(void *arg)
{
    (void)arg;
    weft_sock *a, *b;
    if (make_pair(&a, &b) < 0)
        return -1;
    char c;
    weft_send(a, "z", 1, 1000);
    X.r[0] = weft_recv(b, &c, 1, 1000); /* the read-ahead is armed now */
    weft_send(a, "abc", 3, 1000);
    weft_sleep(50); /* they arrive before the reset */
    weft_reset(a);
    weft_sleep(50);
    X.r[1] = weft_recvn(b, X.got, 3, 1000);
    X.r[2] = weft_recv(b, &c, 1, 1000);
    X.r[3] = weft_recv(b, &c, 1, 1000);
    weft_close(b);
    return 0;
}

Test(backend, readahead_gives_the_bytes_before_a_reset, .timeout = 30)
{
    cr_assert_eq(weft_main(x_main, NULL, &uring_cfg), 0);
    cr_assert_eq(X.r[0], 1);
    cr_assert_eq(X.r[1], 3, "%s", weft_err_name((int)X.r[1]));
    cr_assert(memcmp(X.got, "abc", 3) == 0);
    cr_assert_eq(X.r[2], -ECONNRESET, "%s", weft_err_name((int)X.r[2]));
    cr_assert_eq(X.r[3], 0, "%s", weft_err_name((int)X.r[3]));
}

/* A reader that does not read does not let the read-ahead swallow what
 * the peer sends: TCP's flow control holds the sender back. */
#define FLOOD_BYTES (256u << 20)

static struct {
    ssize_t sent_rc;
    size_t sent, got, queued;
    int bad;
} FL;

static void f_sender(void *arg)
{
    weft_sock *a = arg;
    size_t len = 1 << 20;
    unsigned char *buf = malloc(len);
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)i;
    FL.sent_rc = 0;
    for (size_t off = 0; off < FLOOD_BYTES && FL.sent_rc >= 0; off += len) {
        FL.sent_rc = weft_send(a, buf, len, 1000);
        FL.sent += FL.sent_rc >= 0 ? (size_t)FL.sent_rc : weft_sock_sent(a);
    }
    weft_shutdown(a, WEFT_SHUT_WR);
    free(buf);
}

static int f_main(void *arg)
{
    (void)arg;
    weft_sock *a, *b;
    if (make_pair(&a, &b) < 0)
        return -1;
    char c;
    weft_send(a, "\0", 1, 1000);
    FL.got = (size_t)weft_recv(b, &c, 1, 1000); /* armed, and now idle */
    int64_t s = weft_go(f_sender, a);
    weft_join(s, -1); /* it gives up after a second without progress */
    weft__sock *bs;
    if (weft__sock_enter(b, &bs) == 0 && bs->rx)
        FL.queued = bs->rx->queued;
    unsigned char buf[65536];
    ssize_t n;
    while ((n = weft_recv(b, buf, sizeof buf, 2000)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            FL.bad += buf[i] != (unsigned char)(FL.got - 1 + (size_t)i);
        FL.got += (size_t)n;
    }
    weft_close(a);
    weft_close(b);
    return 0;
}

Test(backend, readahead_keeps_flow_control, .timeout = 60)
{
    cr_assert_eq(weft_main(f_main, NULL, &uring_cfg), 0);
    cr_assert_eq(FL.sent_rc, -ETIMEDOUT, "the sender was never held back");
    cr_assert_lt(FL.sent, FLOOD_BYTES);
    /* Stopped at 64 KiB, and what came before the stop took effect; the
     * pool (16 MiB) would have gone to it otherwise. */
    cr_assert_leq(FL.queued, 1u << 20, "%zu bytes read ahead", FL.queued);
    cr_assert_eq(FL.got, FL.sent + 1, "received %zu of %zu", FL.got - 1, FL.sent);
    cr_assert_eq(FL.bad, 0);
}

/* Bytes read ahead on a loop that is then freed: the socket outlives its
 * loop, and the next loop's receives get them, in order. */
static struct {
    weft_sock *a, *b;
    ssize_t r[3];
    char got[16];
} L;

static void l_first(void *arg)
{
    (void)arg;
    if (make_pair(&L.a, &L.b) < 0)
        return;
    weft_send(L.a, "hello", 5, 1000);
    weft_sleep(50); /* all five are in */
    L.r[0] = weft_recv(L.b, L.got, 1, 1000); /* "h"; the rest read ahead */
}

static void l_second(void *arg)
{
    (void)arg;
    L.r[1] = weft_recvn(L.b, L.got + 1, 4, 1000);
    weft_send(L.a, "!", 1, 1000);
    L.r[2] = weft_recv(L.b, L.got + 5, 1, 1000);
}

Test(backend, readahead_bytes_outlive_their_loop, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, &uring_cfg), 0);
    weft_go(l_first, NULL);
    cr_assert_eq(weft_loop_run(l, 5000), 0);
    weft_loop_free(l);
    cr_assert_eq(L.r[0], 1);
    cr_assert_eq(weft_loop_new(&l, &uring_cfg), 0);
    weft_go(l_second, NULL);
    cr_assert_eq(weft_loop_run(l, 5000), 0);
    cr_assert_eq(L.r[1], 4, "%s", weft_err_name((int)L.r[1]));
    cr_assert_eq(L.r[2], 1);
    cr_assert(memcmp(L.got, "hello!", 6) == 0, "got %.6s", L.got);
    weft_close(L.a);
    weft_close(L.b);
    weft_loop_free(l);
}

/* Outside a coroutine, on the loop's thread: the bytes read ahead come
 * first, then the descriptor's; weft_sock_poll sees queued bytes. */
static struct {
    weft_sock *a, *b;
    ssize_t r0;
    int poll_rc;
} T;

static void t_first(void *arg)
{
    (void)arg;
    if (make_pair(&T.a, &T.b) < 0)
        return;
    char c;
    weft_send(T.a, "abcd", 4, 1000);
    weft_sleep(50);
    T.r0 = weft_recv(T.b, &c, 1, 1000);
    T.poll_rc = weft_sock_poll(T.b, WEFT_POLL_IN, 0);
}

Test(backend, readahead_then_a_call_outside_a_coroutine, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, &uring_cfg), 0);
    weft_go(t_first, NULL);
    cr_assert_eq(weft_loop_run(l, 5000), 0);
    cr_assert_eq(T.r0, 1);
    cr_assert_eq(T.poll_rc, WEFT_POLL_IN, "three bytes are there to read");
    cr_assert_eq(weft_send(T.a, "ef", 2, 1000), 2);
    char buf[8] = { 0 };
    cr_assert_eq(weft_recvn(T.b, buf, 5, 1000), 5);
    cr_assert_str_eq(buf, "bcdef");
    cr_assert_eq(weft_recv(T.b, buf, 1, 50), -ETIMEDOUT);
    weft_close(T.a);
    weft_close(T.b);
    weft_loop_free(l);
}

/* More read-aheads holding bytes than the loop has buffers: those that
 * find the pool dry stop, and their bytes wait in the kernel until their
 * reader takes them itself; every byte arrives, in order. */
#define DRY 4300

static struct {
    weft_sock *s[DRY];
    int fd[DRY];
    weft_event *go;
    int n, got, wrong;
} D;

static void d_reader(void *arg)
{
    int i = (int)(intptr_t)arg;
    char c[2];
    /* The first byte arms the read-ahead; the second arrives while
     * nobody reads, so the read-aheads hold every buffer there is. */
    if (weft_recv(D.s[i], &c[0], 1, 20000) != 1 || weft_event_wait(D.go, 20000) < 0 ||
        weft_recv(D.s[i], &c[1], 1, 20000) != 1)
        return;
    D.got++;
    D.wrong += c[0] != 'A' || c[1] != (char)i;
}

static void d_setup(void *arg)
{
    (void)arg;
    weft_sock *l;
    int port = listen_any(&l, "127.0.0.1");
    if (port <= 0)
        return;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    for (int i = 0; i < DRY; i++) {
        /* Blocking connects: the kernel completes them from the backlog. */
        D.fd[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (D.fd[i] < 0 || connect(D.fd[i], (struct sockaddr *)&sa, sizeof sa) < 0 ||
            weft_tcp_accept(l, &D.s[i], 5000) < 0) {
            D.n = i;
            weft_close(l);
            return;
        }
        weft_go(d_reader, (void *)(intptr_t)i);
    }
    D.n = DRY;
    weft_close(l);
    for (int i = 0; i < DRY; i++)
        if (write(D.fd[i], "A", 1) != 1)
            break;
    weft_sleep(200); /* every reader has its "A" and waits for go */
    for (int i = 0; i < DRY; i++) {
        char c = (char)i;
        if (write(D.fd[i], &c, 1) != 1)
            break;
    }
    weft_sleep(200); /* the read-aheads have taken what buffers there are */
    weft_event_set(D.go);
}

static int d_main(void *arg)
{
    (void)arg;
    if (weft_event_new(&D.go, 1) < 0)
        return -1;
    weft_join(weft_go(d_setup, NULL), -1);
    return 0;
}

Test(backend, readahead_more_readers_than_buffers, .timeout = 120)
{
    NEED_URING();
    long lim = nofile_at_least(2 * DRY + 200);
    cr_assert_geq(lim, 2 * DRY + 200, "descriptor limit %ld", lim);
    cr_assert_eq(weft_main(d_main, NULL, &uring_cfg), 0);
    cr_assert_eq(D.n, DRY, "connected %d", D.n);
    cr_assert_eq(D.got, DRY, "%d of %d bytes arrived", D.got, DRY);
    cr_assert_eq(D.wrong, 0);
    weft_event_free(D.go);
    for (int i = 0; i < DRY; i++) {
        weft_close(D.s[i]);
        close(D.fd[i]);
    }
}

/* ---- the accept-ahead ------------------------------------------------------------- */

/* A plain client connected to port (the kernel completes the handshake
 * whether or not anyone accepts). */
static int plain_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int plain_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    return getsockname(fd, (struct sockaddr *)&a, &len) == 0 ? ntohs(a.sin_port) : -1;
}

static weft__sock_ax *ax_of(weft_sock *h)
{
    weft__sock *s;
    return weft__sock_enter(h, &s) == 0 ? s->ax : NULL;
}

/* A server that stops accepting: the accept-ahead holds a few connections
 * and leaves the rest in the backlog; every one is accepted later, none
 * lost, none twice. */
#define AHEAD 300
static struct {
    int fd[AHEAD + 1];
    int queued, first, got, wrong;
    bool armed, seen[65536];
} A;

static int a_main(void *arg)
{
    (void)arg;
    weft_sock *l, *s;
    if (weft_tcp_listen(&l, "127.0.0.1", 0, 1024, 0) < 0)
        return -1;
    int port = local_port(l);
    A.fd[AHEAD] = plain_connect(port);
    A.first = weft_accept(l, &s, 2000); /* arms it */
    if (A.first == 0)
        weft_close(s);
    for (int i = 0; i < AHEAD; i++) {
        A.fd[i] = plain_connect(port);
        if (i % 10 == 9)
            weft_sleep(1); /* the loop takes the completions */
    }
    weft_sleep(100);
    weft__sock_ax *x = ax_of(l);
    A.queued = x ? (int)x->count : -1;
    A.armed = x && x->armed;
    for (int i = 0; i < AHEAD; i++) {
        if (weft_accept(l, &s, 2000) < 0)
            break;
        int p = peer_port(s);
        A.wrong += p <= 0 || A.seen[p];
        if (p > 0)
            A.seen[p] = true;
        A.got++;
        weft_close(s);
    }
    for (int i = 0; i < AHEAD; i++)
        A.wrong += A.fd[i] < 0 || !A.seen[plain_port(A.fd[i])];
    for (int i = 0; i <= AHEAD; i++)
        close(A.fd[i]);
    weft_close(l);
    return 0;
}

Test(backend, acceptahead_holds_a_few_and_loses_none, .timeout = 60)
{
    NEED_URING();
    nofile_at_least(2 * AHEAD + 100);
    int fds = count_fds();
    cr_assert_eq(weft_main(a_main, NULL, &uring_cfg), 0);
    cr_assert_eq(A.first, 0);
    /* Stopped at 64 waiting (plus what one wake-up took), not 300. */
    cr_assert(A.queued >= 64 && A.queued < 128, "%d accepted ahead", A.queued);
    cr_assert(!A.armed, "still accepting ahead with %d waiting", A.queued);
    cr_assert_eq(A.got, AHEAD);
    cr_assert_eq(A.wrong, 0);
    cr_assert_eq(count_fds(), fds, "descriptors leaked");
}

/* Closing a listener with connections accepted ahead closes them: their
 * peers see the end, no descriptor stays open. */
static struct {
    int fd[5], queued, ended;
} K;

static int k_main(void *arg)
{
    (void)arg;
    weft_sock *l, *s;
    int port = listen_any(&l, "127.0.0.1");
    if (port <= 0)
        return -1;
    weft_accept(l, &s, 20); /* arms it; nothing comes */
    for (int i = 0; i < 5; i++)
        K.fd[i] = plain_connect(port);
    weft_sleep(50);
    weft__sock_ax *x = ax_of(l);
    K.queued = x ? (int)x->count : -1;
    weft_close(l);
    for (int i = 0; i < 5; i++) {
        char c;
        struct pollfd p = { .fd = K.fd[i], .events = POLLIN };
        K.ended += poll(&p, 1, 2000) == 1 && recv(K.fd[i], &c, 1, 0) <= 0;
        close(K.fd[i]);
    }
    return 0;
}

Test(backend, acceptahead_closed_with_connections_waiting, .timeout = 30)
{
    NEED_URING();
    int fds = count_fds();
    cr_assert_eq(weft_main(k_main, NULL, &uring_cfg), 0);
    cr_assert_eq(K.queued, 5);
    cr_assert_eq(K.ended, 5);
    cr_assert_eq(count_fds(), fds, "descriptors leaked");
}

/* Connections accepted ahead on a loop that is then freed: the listener
 * outlives its loop, and they are accepted afterwards, outside any loop
 * and on the next one. */
static struct {
    weft_sock *l;
    int port, fd[3], got[3];
} O;

static void o_first(void *arg)
{
    (void)arg;
    weft_sock *s;
    O.port = listen_any(&O.l, "127.0.0.1");
    O.fd[0] = plain_connect(O.port);
    O.got[0] = weft_accept(O.l, &s, 2000) == 0 ? peer_port(s) : -1;
    weft_close(s);
    O.fd[1] = plain_connect(O.port);
    O.fd[2] = plain_connect(O.port);
    weft_sleep(50); /* both wait in the accept-ahead's queue */
}

static void o_second(void *arg)
{
    (void)arg;
    weft_sock *s;
    O.got[2] = weft_accept(O.l, &s, 2000) == 0 ? peer_port(s) : -1;
    weft_close(s);
}

Test(backend, acceptahead_connections_outlive_their_loop, .timeout = 30)
{
    NEED_URING();
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, &uring_cfg), 0);
    weft_go(o_first, NULL);
    cr_assert_eq(weft_loop_run(l, 5000), 0);
    weft__sock_ax *x = ax_of(O.l);
    cr_assert(x && x->count == 2, "%d waiting", x ? (int)x->count : -1);
    weft_loop_free(l);
    weft_sock *s;
    cr_assert_eq(weft_accept(O.l, &s, 0), 0); /* no loop: the queue first */
    O.got[1] = peer_port(s);
    weft_close(s);
    cr_assert_eq(weft_loop_new(&l, &uring_cfg), 0);
    weft_go(o_second, NULL);
    cr_assert_eq(weft_loop_run(l, 5000), 0);
    weft_loop_free(l);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(O.got[i], plain_port(O.fd[i]), "connection %d", i);
        close(O.fd[i]);
    }
    weft_close(O.l);
}

/* A pooled connection keeps its read-ahead while it sits idle: put back
 * and got again, it still has it armed, and the next exchange works; one
 * the peer writes to while idle is not handed out again. */
static struct {
    int port, armed_after_put, echo2, fresh;
    weft_sock *l;
} P;

static void p_server(void *arg)
{
    (void)arg;
    weft_sock *s;
    for (int i = 0; i < 2 && weft_accept(P.l, &s, 2000) == 0; i++) {
        char buf[16];
        ssize_t n;
        while ((n = weft_recv(s, buf, sizeof buf, 2000)) > 0) {
            weft_send(s, buf, (size_t)n, 2000);
            if (buf[0] == 'x')
                weft_send(s, "unasked", 7, 2000); /* while it sits idle */
        }
        weft_close(s);
    }
}

static int p_main(void *arg)
{
    (void)arg;
    P.port = listen_any(&P.l, "127.0.0.1");
    int64_t srv = weft_go(p_server, NULL);
    weft_connpool *cp;
    weft_sock *c, *c2;
    char buf[16];
    if (weft_connpool_new(&cp, NULL) < 0 || weft_connpool_get(cp, &c, "127.0.0.1", P.port, 2000) < 0)
        return -1;
    weft_send(c, "a", 1, 1000);
    weft_recv(c, buf, 1, 1000);
    weft_connpool_put(cp, c, 1);
    weft__sock *cs;
    P.armed_after_put = weft__sock_enter(c, &cs) == 0 && cs->rx && cs->rx->armed;
    weft_connpool_get(cp, &c2, "127.0.0.1", P.port, 2000);
    weft_send(c2, "x", 1, 1000);
    P.echo2 = (int)weft_recv(c2, buf, 1, 1000);
    weft_connpool_put(cp, c2, 1);
    weft_sleep(50); /* "unasked" arrives while it sits idle */
    weft_sock *c3;
    weft_connpool_get(cp, &c3, "127.0.0.1", P.port, 2000);
    P.fresh = c3 != c2;
    weft_close(c3);
    weft_connpool_free(cp);
    weft_join(srv, 5000);
    weft_close(P.l);
    return 0;
}

Test(backend, readahead_stays_armed_in_a_connection_pool, .timeout = 30)
{
    NEED_URING();
    cr_assert_eq(weft_main(p_main, NULL, &uring_cfg), 0);
    cr_assert(P.armed_after_put, "putting it back stopped the read-ahead");
    cr_assert_eq(P.echo2, 1);
    cr_assert(P.fresh, "a connection the peer wrote to while idle was handed out");
}
