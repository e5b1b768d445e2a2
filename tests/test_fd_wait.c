/*
 * test_fd_wait.c - weft_fd_wait on descriptors weft does not own: pipes,
 * eventfd, timerfd, signalfd, inotify, a pty, a plain TCP socket.  Each way
 * a wait ends (readiness, timeout, deadline, cancel, the loop being freed)
 * leaves the descriptor off the poller, which the tests read back from
 * /proc/self/fdinfo of the loop's epoll descriptor; coroutines sharing a
 * descriptor each get their answer; a descriptor closed under a waiter is
 * noticed by the next wait on its number and never reaches another
 * descriptor's waiters; allocation failures leave nothing behind.
 */
#include "helpers.h"
#include "internal.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

/* Whether fd is on an epoll instance of this process. */
/* Whether fd is on this thread's loop's poller: the backend's arm says
 * -EEXIST for a descriptor it watches (and a probe it took is taken off
 * again).  With no loop, any epoll set of the process. */
static bool registered(int fd)
{
    weft_loop *l = weft_loop_self();
    if (l) {
        weft__pollent probe = {.fd = fd, .on_event = NULL};
        int rc = l->be->arm(l, &probe, WEFT__EV_IN);
        if (rc == 0)
            l->be->disarm(l, &probe);
        return rc == -EEXIST;
    }
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    bool found = false;
    cr_assert(d);
    while (!found && (de = readdir(d))) {
        char path[300], link[64];
        snprintf(path, sizeof path, "/proc/self/fd/%s", de->d_name);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n <= 0)
            continue;
        link[n] = '\0';
        if (strcmp(link, "anon_inode:[eventpoll]") != 0)
            continue;
        snprintf(path, sizeof path, "/proc/self/fdinfo/%s", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        char line[256];
        int tfd;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "tfd: %d", &tfd) == 1 && tfd == fd)
                found = true;
        fclose(f);
    }
    closedir(d);
    return found;
}

static void put_byte(int fd)
{
    cr_assert_eq(write(fd, "x", 1), 1);
}

/* ---- readiness, timeouts, deadline, cancel ------------------------------- */

static int p[2];
static int rc_[8];
static int64_t ms_[8];
static bool reg_[8];

static void writer_after_50(void *arg)
{
    (void)arg;
    weft_sleep(50);
    if (write(p[1], "x", 1) != 1)
        rc_[7] = -1;
}

static int basics_main(void *arg)
{
    (void)arg;
    int64_t t0;
    char c;

    /* 0: a byte arrives 50 ms later. */
    weft_go(writer_after_50, NULL);
    t0 = mono_ms();
    rc_[0] = weft_fd_wait(p[0], WEFT_POLL_IN, 5000);
    ms_[0] = mono_ms() - t0;
    reg_[0] = registered(p[0]);
    if (read(p[0], &c, 1) != 1)
        rc_[7] = -2;

    /* 1: ready before the call: at once. */
    put_byte(p[1]);
    t0 = mono_ms();
    rc_[1] = weft_fd_wait(p[0], WEFT_POLL_IN, 5000);
    ms_[1] = mono_ms() - t0;
    if (read(p[0], &c, 1) != 1)
        rc_[7] = -3;

    /* 2: nothing comes: the timeout. */
    t0 = mono_ms();
    rc_[2] = weft_fd_wait(p[0], WEFT_POLL_IN, 100);
    ms_[2] = mono_ms() - t0;
    reg_[2] = registered(p[0]);

    /* 3: timeout 0 only tries, and asks no poller. */
    t0 = mono_ms();
    rc_[3] = weft_fd_wait(p[0], WEFT_POLL_IN, 0);
    ms_[3] = mono_ms() - t0;

    /* 4: the coroutine's deadline bounds a wait of -1. */
    weft_deadline_set(weft_now() + 80);
    t0 = mono_ms();
    rc_[4] = weft_fd_wait(p[0], WEFT_POLL_IN, -1);
    ms_[4] = mono_ms() - t0;
    reg_[4] = registered(p[0]);
    weft_deadline_clear();

    /* 5: a pipe's write end is writable; other bits are ignored. */
    rc_[5] = weft_fd_wait(p[1], WEFT_POLL_OUT | 0x100, 1000);
    /* 6: both asked, one ready. */
    rc_[6] = weft_fd_wait(p[1], WEFT_POLL_IN | WEFT_POLL_OUT, 1000);
    return 0;
}

Test(fd_wait, pipe_ready_timeout_deadline, .timeout = 60)
{
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    cr_assert_eq(weft_main(basics_main, NULL, NULL), 0);
    cr_assert_eq(rc_[7], 0);
    cr_assert_eq(rc_[0], WEFT_POLL_IN, "%s", weft_err_name(rc_[0]));
    cr_assert_geq(ms_[0], 40);
    cr_assert_lt(ms_[0], 50 + LATE_MS);
    cr_assert_not(reg_[0], "left on the poller after readiness");
    cr_assert_eq(rc_[1], WEFT_POLL_IN);
    cr_assert_lt(ms_[1], LATE_MS);
    cr_assert_eq(rc_[2], -ETIMEDOUT);
    cr_assert_geq(ms_[2], 100);
    cr_assert_lt(ms_[2], 100 + LATE_MS);
    cr_assert_not(reg_[2], "left on the poller after a timeout");
    cr_assert_eq(rc_[3], -ETIMEDOUT);
    cr_assert_lt(ms_[3], LATE_MS);
    cr_assert_eq(rc_[4], -ETIMEDOUT);
    cr_assert_geq(ms_[4], 70);
    cr_assert_lt(ms_[4], 80 + LATE_MS);
    cr_assert_not(reg_[4], "left on the poller after the deadline");
    cr_assert_eq(rc_[5], WEFT_POLL_OUT);
    cr_assert_eq(rc_[6], WEFT_POLL_OUT);
    close(p[0]);
    close(p[1]);
}

static int64_t victim_id;

static void canceller(void *arg)
{
    (void)arg;
    weft_sleep(50);
    weft_cancel(victim_id);
}

static int cancel_main(void *arg)
{
    (void)arg;
    victim_id = weft_self();
    weft_go(canceller, NULL);
    int64_t t0 = mono_ms();
    rc_[0] = weft_fd_wait(p[0], WEFT_POLL_IN, 5000);
    ms_[0] = mono_ms() - t0;
    reg_[0] = registered(p[0]);
    /* The cancel was delivered once: the next wait runs its course. */
    rc_[1] = weft_fd_wait(p[0], WEFT_POLL_IN, 30);
    /* A cancel made before the call is taken by it. */
    weft_cancel(weft_self());
    rc_[2] = weft_fd_wait(p[0], WEFT_POLL_IN, 5000);
    reg_[2] = registered(p[0]);
    return 0;
}

Test(fd_wait, cancel, .timeout = 60)
{
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    cr_assert_eq(weft_main(cancel_main, NULL, NULL), 0);
    cr_assert_eq(rc_[0], -ECANCELED, "%s", weft_err_name(rc_[0]));
    cr_assert_lt(ms_[0], 50 + LATE_MS);
    cr_assert_not(reg_[0]);
    cr_assert_eq(rc_[1], -ETIMEDOUT);
    cr_assert_eq(rc_[2], -ECANCELED);
    cr_assert_not(reg_[2]);
    close(p[0]);
    close(p[1]);
}

/* The caller may close the descriptor as soon as the call returns, and a
 * new descriptor with its number waits as well as the first. */
static int close_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++) {
        int q[2];
        if (pipe2(q, O_NONBLOCK | O_CLOEXEC) != 0)
            return -1;
        if (i == 1)
            put_byte(q[1]);
        rc_[i] = weft_fd_wait(q[0], WEFT_POLL_IN, i == 2 ? 20 : 1000);
        close(q[0]);
        close(q[1]);
        reg_[i] = registered(q[0]);
    }
    return 0;
}

Test(fd_wait, close_right_after, .timeout = 60)
{
    cr_assert_eq(weft_main(close_main, NULL, NULL), 0);
    cr_assert_eq(rc_[0], -ETIMEDOUT);
    cr_assert_eq(rc_[1], WEFT_POLL_IN);
    cr_assert_eq(rc_[2], -ETIMEDOUT);
    for (int i = 0; i < 3; i++)
        cr_assert_not(reg_[i]);
}

/* ---- bad input ---------------------------------------------------------------- */

static int bad_fd, file_fd;

static int bad_main(void *arg)
{
    (void)arg;
    rc_[0] = weft_fd_wait(-1, WEFT_POLL_IN, 1000);
    rc_[1] = weft_fd_wait(bad_fd, WEFT_POLL_IN, 1000);
    rc_[2] = weft_fd_wait(p[0], 0, 1000);
    rc_[3] = weft_fd_wait(p[0], 0x100, 1000);
    rc_[4] = weft_fd_wait(file_fd, WEFT_POLL_IN | WEFT_POLL_OUT, 1000);
    rc_[5] = weft_fd_wait(bad_fd, WEFT_POLL_IN, 0);
    rc_[6] = weft_fd_wait(INT_MAX, WEFT_POLL_IN, 1000); /* no table that large */
    return 0;
}

Test(fd_wait, bad_descriptors_and_events, .timeout = 60)
{
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    /* A number not open, and not given to the file below. */
    bad_fd = fcntl(p[0], F_DUPFD_CLOEXEC, 700);
    cr_assert_geq(bad_fd, 700);
    close(bad_fd);
    char path[] = "/tmp/weft-fdwait-XXXXXX";
    file_fd = mkstemp(path);
    cr_assert_geq(file_fd, 0);
    unlink(path);
    cr_assert_eq(weft_main(bad_main, NULL, NULL), 0);
    int want[7] = { -EBADF, -EBADF, -EINVAL, -EINVAL, WEFT_POLL_IN | WEFT_POLL_OUT, -EBADF, -EBADF };
    for (int i = 0; i < 7; i++)
        cr_assert_eq(rc_[i], want[i], "coroutine %d: %s", i, weft_err_name(rc_[i]));
    /* The same outside any coroutine. */
    cr_assert_eq(weft_fd_wait(-1, WEFT_POLL_IN, 1000), -EBADF);
    cr_assert_eq(weft_fd_wait(bad_fd, WEFT_POLL_IN, 1000), -EBADF);
    cr_assert_eq(weft_fd_wait(INT_MAX, WEFT_POLL_IN, 1000), -EBADF);
    cr_assert_eq(weft_fd_wait(p[0], 0, 1000), -EINVAL);
    cr_assert_eq(weft_fd_wait(file_fd, WEFT_POLL_IN, 1000), WEFT_POLL_IN);
    close(file_fd);
    close(p[0]);
    close(p[1]);
}

/* ---- errors and hang-ups count as ready -------------------------------------- */

static int hup_main(void *arg)
{
    (void)arg;
    int a[2], b[2];
    if (pipe2(a, O_NONBLOCK | O_CLOEXEC) != 0 || pipe2(b, O_NONBLOCK | O_CLOEXEC) != 0)
        return -1;
    close(a[1]); /* the reader sees a hang-up */
    rc_[0] = weft_fd_wait(a[0], WEFT_POLL_IN, 1000);
    rc_[1] = weft_fd_wait(a[0], WEFT_POLL_IN | WEFT_POLL_OUT, 1000);
    close(b[0]); /* the writer sees an error */
    rc_[2] = weft_fd_wait(b[1], WEFT_POLL_OUT, 1000);
    rc_[3] = weft_fd_wait(b[1], WEFT_POLL_IN, 1000);
    /* Outside the loop's poller: the same answers from poll(). */
    rc_[4] = weft_fd_wait(a[0], WEFT_POLL_IN | WEFT_POLL_OUT, 0);
    rc_[5] = weft_fd_wait(b[1], WEFT_POLL_IN, 0);
    close(a[0]);
    close(b[1]);
    return 0;
}

Test(fd_wait, error_and_hangup_are_ready, .timeout = 60)
{
    cr_assert_eq(weft_main(hup_main, NULL, NULL), 0);
    int want[6] = { WEFT_POLL_IN, WEFT_POLL_IN | WEFT_POLL_OUT, WEFT_POLL_OUT, WEFT_POLL_IN,
                    WEFT_POLL_IN | WEFT_POLL_OUT, WEFT_POLL_IN };
    for (int i = 0; i < 6; i++)
        cr_assert_eq(rc_[i], want[i], "%d: %s (%d)", i, weft_err_name(rc_[i]), rc_[i]);
}

/* ---- several coroutines on one descriptor --------------------------------------- */

static int sp[2];

static void wait_in(void *arg)
{
    int i = (int)(intptr_t)arg;
    rc_[i] = weft_fd_wait(sp[0], WEFT_POLL_IN, 5000);
}

static void wait_out_long(void *arg)
{
    int i = (int)(intptr_t)arg;
    rc_[i] = weft_fd_wait(sp[0], WEFT_POLL_OUT, 5000);
}

static int shared_main(void *arg)
{
    (void)arg;
    /* 0, 1: two readers of one descriptor, woken by one byte. */
    int64_t a = weft_go(wait_in, (void *)0);
    int64_t b = weft_go(wait_in, (void *)1);
    weft_sleep(30);
    reg_[0] = registered(sp[0]);
    put_byte(sp[1]);
    weft_join(a, -1);
    weft_join(b, -1);
    reg_[1] = registered(sp[0]);
    char c;
    if (read(sp[0], &c, 1) != 1)
        rc_[7] = -1;

    /* 2, 3, 4: sp[0] cannot write (its buffer is full).  A writer waits
     * and keeps the descriptor on the poller; a reader joins, is woken by
     * a byte and leaves without reading it; a later reader joins while the
     * writer still waits: the byte's edge is long consumed, yet it must be
     * told. */
    while (send(sp[0], "0123456789abcdef", 16, MSG_DONTWAIT) > 0)
        ;
    int64_t w = weft_go(wait_out_long, (void *)2);
    weft_sleep(20);
    int64_t r1 = weft_go(wait_in, (void *)3);
    weft_sleep(20);
    put_byte(sp[1]);
    weft_join(r1, -1);
    weft_sleep(20);
    int64_t t0 = mono_ms();
    rc_[4] = weft_fd_wait(sp[0], WEFT_POLL_IN, 1000);
    ms_[4] = mono_ms() - t0;
    /* Make room: the writer is told. */
    char buf[65536];
    while (recv(sp[1], buf, sizeof buf, MSG_DONTWAIT) > 0)
        ;
    weft_join(w, -1);
    reg_[2] = registered(sp[0]);
    return 0;
}

Test(fd_wait, coroutines_share_a_descriptor, .timeout = 60)
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp), 0);
    cr_assert_eq(weft_main(shared_main, NULL, NULL), 0);
    cr_assert_eq(rc_[7], 0);
    cr_assert(reg_[0], "on the poller while they wait");
    cr_assert_eq(rc_[0], WEFT_POLL_IN, "%s", weft_err_name(rc_[0]));
    cr_assert_eq(rc_[1], WEFT_POLL_IN, "%s", weft_err_name(rc_[1]));
    cr_assert_not(reg_[1], "left on the poller after the last waiter");
    cr_assert_eq(rc_[3], WEFT_POLL_IN, "%s", weft_err_name(rc_[3]));
    cr_assert_eq(rc_[4], WEFT_POLL_IN, "late joiner: %s", weft_err_name(rc_[4]));
    cr_assert_lt(ms_[4], LATE_MS);
    cr_assert_eq(rc_[2], WEFT_POLL_OUT, "%s", weft_err_name(rc_[2]));
    cr_assert_not(reg_[2]);
    close(sp[0]);
    close(sp[1]);
}

/* ---- a descriptor closed under its waiter -------------------------------------------- */

static int closer_fd;

static void close_it(void *arg)
{
    (void)arg;
    weft_sleep(30);
    close(closer_fd);
}

static void wait_fd_in(void *arg)
{
    int i = (int)(intptr_t)arg;
    rc_[i] = weft_fd_wait(closer_fd, WEFT_POLL_IN, 3000);
}

static int reuse_main(void *arg)
{
    (void)arg;
    /* 0: a waits on closer_fd; it is closed and its number given to a new
     * pipe; 1: a wait on the new pipe notices (the old watch is gone),
     * sends a away with -EBADF and waits on the new pipe itself. */
    int a[2], b[2];
    if (pipe2(a, O_NONBLOCK | O_CLOEXEC) != 0)
        return -1;
    closer_fd = a[0];
    int64_t id = weft_go(wait_fd_in, (void *)0);
    weft_sleep(20);
    close(a[0]);
    if (pipe2(b, O_NONBLOCK | O_CLOEXEC) != 0 || b[0] != a[0])
        return -2; /* the lowest free number: a[0]'s */
    put_byte(b[1]);
    int64_t t0 = mono_ms();
    rc_[1] = weft_fd_wait(b[0], WEFT_POLL_IN, 3000);
    ms_[1] = mono_ms() - t0;
    weft_join(id, -1);
    reg_[0] = registered(b[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    return 0;
}

Test(fd_wait, closed_under_waiter_then_reused, .timeout = 60)
{
    cr_assert_eq(weft_main(reuse_main, NULL, NULL), 0);
    cr_assert_eq(rc_[0], -EBADF, "the first waiter: %s", weft_err_name(rc_[0]));
    cr_assert_eq(rc_[1], WEFT_POLL_IN, "the new pipe: %s", weft_err_name(rc_[1]));
    cr_assert_lt(ms_[1], LATE_MS);
    cr_assert_not(reg_[0]);
}

static int orphan_main(void *arg)
{
    (void)arg;
    /* The read end is duplicated, then closed while a waits: the kernel
     * keeps watching the pipe (the duplicate holds it open), a's leaving
     * cannot take it off (its number is closed), and the pipe's events
     * must reach nobody, above all not a waiter of another descriptor. */
    int a[2], b[2];
    if (pipe2(a, O_NONBLOCK | O_CLOEXEC) != 0 || pipe2(b, O_NONBLOCK | O_CLOEXEC) != 0)
        return -1;
    int dup_fd = dup(a[0]);
    closer_fd = a[0];
    weft_go(close_it, NULL);
    int64_t t0 = mono_ms();
    rc_[0] = weft_fd_wait(a[0], WEFT_POLL_IN, 200);
    ms_[0] = mono_ms() - t0;
    /* Another descriptor, with nothing to read, waits; the closed pipe
     * gets a byte meanwhile. */
    closer_fd = b[0];
    int64_t id = weft_go(wait_fd_in, (void *)1);
    weft_sleep(30);
    put_byte(a[1]);
    weft_sleep(30);
    rc_[2] = weft_fd_wait(dup_fd, WEFT_POLL_IN, 1000); /* the duplicate works */
    weft_cancel(id);
    weft_join(id, -1);
    close(dup_fd);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    return 0;
}

Test(fd_wait, closed_with_a_duplicate_open, .timeout = 60)
{
    rc_[1] = 0;
    cr_assert_eq(weft_main(orphan_main, NULL, NULL), 0);
    cr_assert_eq(rc_[0], -ETIMEDOUT, "%s", weft_err_name(rc_[0]));
    cr_assert_geq(ms_[0], 200);
    cr_assert_eq(rc_[1], -ECANCELED, "another descriptor's waiter: %s (%d)",
                 weft_err_name(rc_[1]), rc_[1]);
    cr_assert_eq(rc_[2], WEFT_POLL_IN);
}

/* ---- kinds of descriptors ------------------------------------------------------------- */

typedef struct kinds {
    int rc[8];
    int64_t ms[8];
} kinds;

static void tick_eventfd(void *arg)
{
    weft_sleep(20);
    uint64_t one = 1;
    if (write(*(int *)arg, &one, sizeof one) != sizeof one)
        abort();
}

static int kinds_main(void *arg)
{
    kinds *k = arg;
    int64_t t0;

    /* 0: eventfd */
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    weft_go(tick_eventfd, &efd);
    k->rc[0] = weft_fd_wait(efd, WEFT_POLL_IN, 2000);
    close(efd);

    /* 1: timerfd, 50 ms */
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec its = { .it_value = { 0, 50 * 1000000L } };
    timerfd_settime(tfd, 0, &its, NULL);
    t0 = mono_ms();
    k->rc[1] = weft_fd_wait(tfd, WEFT_POLL_IN, 2000);
    k->ms[1] = mono_ms() - t0;
    close(tfd);

    /* 2: signalfd: SIGUSR1 (blocked in this thread by the test) sent to it. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    k->rc[2] = weft_fd_wait(sfd, WEFT_POLL_IN, 50); /* nothing yet */
    syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), SIGUSR1);
    k->rc[3] = weft_fd_wait(sfd, WEFT_POLL_IN, 2000);
    struct signalfd_siginfo si;
    if (read(sfd, &si, sizeof si) != sizeof si || si.ssi_signo != SIGUSR1)
        k->rc[3] = -1000;
    close(sfd);

    /* 4: inotify: a file made in a watched directory. */
    char dir[] = "/tmp/weft-fdwait-dir-XXXXXX";
    if (!mkdtemp(dir))
        return -1;
    int ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    inotify_add_watch(ifd, dir, IN_CREATE);
    char file[64];
    snprintf(file, sizeof file, "%s/f", dir);
    int ffd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    k->rc[4] = weft_fd_wait(ifd, WEFT_POLL_IN, 2000);
    close(ffd);
    unlink(file);
    rmdir(dir);
    close(ifd);

    /* 5: a pty: a line typed on the master side is read on the slave. */
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0)
        return -2;
    int s = open(ptsname(m), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    k->rc[5] = weft_fd_wait(s, WEFT_POLL_IN, 50); /* nothing yet */
    if (write(m, "hi\n", 3) != 3)
        return -3;
    k->rc[6] = weft_fd_wait(s, WEFT_POLL_IN, 2000);
    close(s);
    close(m);

    /* 7: another library's TCP socket, connecting without blocking. */
    weft_sock *l;
    int port = listen_any(&l, "127.0.0.1");
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int c = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    k->rc[7] = c == 0 || errno == EINPROGRESS ? weft_fd_wait(fd, WEFT_POLL_OUT, 2000) : -errno;
    int err = -1;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0)
        k->rc[7] = -2000;
    close(fd);
    weft_close(l);
    return 0;
}

Test(fd_wait, kinds_of_descriptors, .timeout = 60)
{
    kinds k;
    memset(&k, 0, sizeof k);
    /* Blocked before the loop starts: with the ucontext switch every
     * switch sets the mask its context was saved with. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    cr_assert_eq(weft_main(kinds_main, &k, NULL), 0);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    cr_assert_eq(k.rc[0], WEFT_POLL_IN, "eventfd: %s", weft_err_name(k.rc[0]));
    cr_assert_eq(k.rc[1], WEFT_POLL_IN, "timerfd: %s", weft_err_name(k.rc[1]));
    cr_assert_geq(k.ms[1], 45);
    cr_assert_eq(k.rc[2], -ETIMEDOUT, "signalfd before: %s", weft_err_name(k.rc[2]));
    cr_assert_eq(k.rc[3], WEFT_POLL_IN, "signalfd: %s", weft_err_name(k.rc[3]));
    cr_assert_eq(k.rc[4], WEFT_POLL_IN, "inotify: %s", weft_err_name(k.rc[4]));
    cr_assert_eq(k.rc[5], -ETIMEDOUT, "pty before: %s", weft_err_name(k.rc[5]));
    cr_assert_eq(k.rc[6], WEFT_POLL_IN, "pty: %s", weft_err_name(k.rc[6]));
    cr_assert_eq(k.rc[7], WEFT_POLL_OUT, "tcp connect: %s", weft_err_name(k.rc[7]));
}

/* ---- a weft socket's descriptor ---------------------------------------------------------- */

static weft_sock *wp[2];

static void fd_waiter_on_sock(void *arg)
{
    (void)arg;
    rc_[2] = weft_fd_wait(weft_sock_fd(wp[1]), WEFT_POLL_IN, 300);
}

static int sockfd_main(void *arg)
{
    (void)arg;
    if (weft_socketpair(wp, SOCK_STREAM) < 0)
        return -1;
    /* 0: the socket has waited on this loop: it is on the poller. */
    rc_[0] = weft_sock_poll(wp[0], WEFT_POLL_IN, 10);
    rc_[1] = weft_fd_wait(weft_sock_fd(wp[0]), WEFT_POLL_IN, 100);
    /* 2, 3: the other order: while weft_fd_wait waits on its descriptor,
     * the socket's first wait cannot put it on the poller. */
    int64_t id = weft_go(fd_waiter_on_sock, NULL);
    weft_sleep(20);
    char c;
    rc_[3] = (int)weft_recv(wp[1], &c, 1, 100);
    weft_join(id, -1);
    /* 4: once weft_fd_wait has left, the socket works as ever. */
    weft_send(wp[0], "y", 1, 1000);
    rc_[4] = (int)weft_recv(wp[1], &c, 1, 1000);
    weft_close(wp[0]);
    weft_close(wp[1]);
    return 0;
}

Test(fd_wait, weft_socket_descriptor, .timeout = 60)
{
    cr_assert_eq(weft_main(sockfd_main, NULL, NULL), 0);
    cr_assert_eq(rc_[0], -ETIMEDOUT);
    cr_assert_eq(rc_[1], -EEXIST, "%s", weft_err_name(rc_[1]));
    cr_assert_eq(rc_[2], -ETIMEDOUT, "%s", weft_err_name(rc_[2]));
    /* io_uring: the receive waits in the ring, not on the poller. */
    int want3 = strcmp(weft_backend(), "io_uring") == 0 ? -ETIMEDOUT : -EEXIST;
    cr_assert_eq(rc_[3], want3, "%s on %s", weft_err_name(rc_[3]), weft_backend());
    cr_assert_eq(rc_[4], 1, "%s", weft_err_name(rc_[4]));
}

/* ---- the loop freed while coroutines wait -------------------------------------------------- */

static void wait_forever(void *arg)
{
    int i = (int)(intptr_t)arg;
    rc_[i] = weft_fd_wait(p[0], WEFT_POLL_IN, -1);
}

Test(fd_wait, loop_freed_while_waiting, .timeout = 60)
{
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    rc_[0] = rc_[1] = 1;
    weft_go(wait_forever, (void *)0);
    weft_go(wait_forever, (void *)1);
    for (int i = 0; i < 3; i++)
        weft_loop_poll(l, 10);
    cr_assert(registered(p[0]));
    weft_loop_free(l);
    cr_assert_eq(rc_[0], -ECANCELED);
    cr_assert_eq(rc_[1], -ECANCELED);
    cr_assert_not(registered(p[0]));
    close(p[0]);
    close(p[1]);
}

/* ---- outside any coroutine: poll() ----------------------------------------------------------- */

static void *late_writer(void *arg)
{
    (void)arg;
    usleep(50 * 1000);
    put_byte(p[1]);
    return NULL;
}

Test(fd_wait, outside_a_coroutine, .timeout = 60)
{
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    int64_t t0 = mono_ms();
    cr_assert_eq(weft_fd_wait(p[0], WEFT_POLL_IN, 100), -ETIMEDOUT);
    int64_t ms = mono_ms() - t0;
    cr_assert_geq(ms, 100);
    cr_assert_lt(ms, 100 + LATE_MS);
    pthread_t t;
    pthread_create(&t, NULL, late_writer, NULL);
    t0 = mono_ms();
    cr_assert_eq(weft_fd_wait(p[0], WEFT_POLL_IN, 5000), WEFT_POLL_IN);
    ms = mono_ms() - t0;
    cr_assert_lt(ms, 50 + LATE_MS);
    pthread_join(t, NULL);
    cr_assert_eq(weft_fd_wait(p[1], WEFT_POLL_OUT, 0), WEFT_POLL_OUT);
    /* On a loop's thread, between its steps. */
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    cr_assert_eq(weft_fd_wait(p[0], WEFT_POLL_IN, -1), WEFT_POLL_IN);
    cr_assert_not(registered(p[0]));
    weft_loop_free(l);
    close(p[0]);
    close(p[1]);
}

/* ---- allocation failures ----------------------------------------------------------------------- */

static int fault_main(void *arg)
{
    int *out = arg; /* out[0]: first nth that succeeded; out[1]: failures seen */
    int q[2];
    if (pipe2(q, O_NONBLOCK | O_CLOEXEC) != 0)
        return -1;
    /* A descriptor with a high number makes the table grow. */
    int hi = fcntl(q[0], F_DUPFD_CLOEXEC, 200);
    put_byte(q[1]);
    for (unsigned nth = 1; nth < 20; nth++) {
        weft_fault_clear();
        weft_fault_set(WEFT_FAULT_MALLOC, nth, ENOMEM);
        int rc = weft_fd_wait(nth % 2 ? hi : q[0], WEFT_POLL_IN, 1000);
        bool fired = weft_fault_fired() > 0;
        weft_fault_clear();
        if (rc == -ENOMEM && fired) {
            out[1]++;
            if (registered(hi) || registered(q[0]))
                return -2;
            continue;
        }
        if (rc != WEFT_POLL_IN || fired)
            return -3;
        if (!out[0])
            out[0] = (int)nth;
        if (registered(hi) || registered(q[0]))
            return -4;
    }
    close(hi);
    close(q[0]);
    close(q[1]);
    return 0;
}

Test(fd_wait, allocation_failures, .timeout = 60)
{
    int out[2] = { 0, 0 };
    cr_assert_eq(weft_main(fault_main, out, NULL), 0);
    cr_assert_geq(out[1], 1, "no allocation failed: nothing was tested");
    cr_assert_gt(out[0], 0);
}
