/*
 * test_backend.c - choosing a backend, and what only a completion backend
 * (io_uring) can get wrong: a buffer written after its call returned, a
 * close under operations in the ring, more completions in one step than
 * the completion queue holds, a kernel that refuses io_uring.
 * RELIABILITY.md group L.  The rest of the suite runs on every backend
 * ($WEFT_BACKEND, `make test-backends`).
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
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

Test(backend, ten_thousand_completions_in_one_step, .timeout = 120)
{
    NEED_URING();
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    if (r.rlim_max < 2 * MANY + 200) { /* root may raise it */
        r.rlim_max = r.rlim_cur = 2 * MANY + 200;
        setrlimit(RLIMIT_NOFILE, &r);
    }
    long lim = raise_nofile();
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
    weft_send(a, "ab", 2, 1000);
    /* No room for the submission: the receive is done by a syscall. */
    weft_fault_clear();
    weft_fault_set(WEFT_FAULT_RING, 1, EBUSY);
    f->rc[0] = weft_recv(b, f->got, 1, 1000);
    f->rc[1] = (ssize_t)weft_fault_fired();
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
