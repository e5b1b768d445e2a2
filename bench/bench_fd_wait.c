/*
 * bench_fd_wait.c - weft_fd_wait on a pipe: round trips per second of one
 * byte ping-ponged between two threads over two pipes, against a plain
 * poll() loop and the epoll patterns in between, in one run.
 *
 *   bench_fd_wait [DUR_MS [REPS [CPU_A [CPU_B]]]]   (1000 5 0 1)
 *
 * The peer thread (pinned to CPU_B) is the same for every variant: a
 * blocking read of the ping pipe, a write to the pong pipe.  The measuring
 * thread (pinned to CPU_A) writes a ping, waits until the pong pipe is
 * readable, reads the byte, and counts; how it waits is the variant:
 *
 *   poll           poll() on the pong pipe (the plain loop)
 *   epoll          epoll_wait, the pipe registered once (a loop's floor)
 *   epoll-ctl      EPOLL_CTL_ADD, epoll_wait, EPOLL_CTL_DEL per wait: what
 *                  weft_fd_wait asks of the kernel
 *   epoll-oneshot  registered once with EPOLLONESHOT, re-armed with one
 *                  EPOLL_CTL_MOD per wait: one epoll_ctl instead of two
 *   weft           weft_fd_wait(fd, WEFT_POLL_IN, -1) in a coroutine
 *
 * Each repetition runs every variant for DUR_MS, in an order rotated by
 * one each time, so that drift of the machine's speed spreads evenly; the
 * summary gives each variant's median and its median ratio to poll, paired
 * repetition by repetition.  Last, the raw cost of an ADD+DEL pair on an
 * idle pipe, without waiting.  CPU_A = CPU_B puts both on one core.
 */
#include <weft.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define NV 5
static const char *const names[NV] = { "poll", "epoll", "epoll-ctl", "epoll-oneshot", "weft" };
#define MAX_REPS 64

static int ping[2], pong[2];
static int64_t dur_ns;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        perror("sched_setaffinity");
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void *peer(void *arg)
{
    pin((int)(intptr_t)arg);
    char c;
    for (;;) {
        if (read(ping[0], &c, 1) != 1 || c == 'q')
            return NULL;
        if (write(pong[1], &c, 1) != 1)
            die("peer write");
    }
}

static void send_ping(void)
{
    if (write(ping[1], "p", 1) != 1)
        die("write");
}

static void take_pong(void)
{
    char c;
    while (read(pong[0], &c, 1) != 1)
        if (errno != EAGAIN && errno != EINTR)
            die("read");
}

/* One variant for dur_ns: round trips per second. */
static double run_plain(int v)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN }, out;
    if (v == 1 && epoll_ctl(ep, EPOLL_CTL_ADD, pong[0], &ev) != 0)
        die("epoll_ctl");
    if (v == 3) {
        ev.events = EPOLLIN | EPOLLONESHOT;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, pong[0], &ev) != 0)
            die("epoll_ctl");
    }
    long n = 0;
    int64_t t0 = now_ns(), t;
    do {
        send_ping();
        switch (v) {
        case 0: {
            struct pollfd p = { .fd = pong[0], .events = POLLIN };
            while (poll(&p, 1, -1) != 1)
                ;
            break;
        }
        case 1:
            while (epoll_wait(ep, &out, 1, -1) != 1)
                ;
            break;
        case 2:
            ev.events = EPOLLIN | EPOLLET;
            if (epoll_ctl(ep, EPOLL_CTL_ADD, pong[0], &ev) != 0)
                die("add");
            while (epoll_wait(ep, &out, 1, -1) != 1)
                ;
            if (epoll_ctl(ep, EPOLL_CTL_DEL, pong[0], &ev) != 0)
                die("del");
            break;
        case 3:
            while (epoll_wait(ep, &out, 1, -1) != 1)
                ;
            take_pong();
            n++;
            t = now_ns();
            if (t - t0 < dur_ns) {
                ev.events = EPOLLIN | EPOLLONESHOT;
                if (epoll_ctl(ep, EPOLL_CTL_MOD, pong[0], &ev) != 0)
                    die("mod");
            }
            continue;
        }
        take_pong();
        n++;
        t = now_ns();
    } while (t - t0 < dur_ns);
    close(ep);
    return n / ((t - t0) / 1e9);
}

static double weft_rate;

static int run_weft(void *arg)
{
    (void)arg;
    long n = 0;
    int64_t t0 = now_ns(), t;
    do {
        send_ping();
        int rc = weft_fd_wait(pong[0], WEFT_POLL_IN, -1);
        if (rc != WEFT_POLL_IN) {
            fprintf(stderr, "weft_fd_wait: %s\n", weft_err_name(rc));
            exit(1);
        }
        take_pong();
        n++;
        t = now_ns();
    } while (t - t0 < dur_ns);
    weft_rate = n / ((t - t0) / 1e9);
    return 0;
}

static double run_variant(int v)
{
    if (v < 4)
        return run_plain(v);
    if (weft_main(run_weft, NULL, NULL) != 0)
        die("weft_main");
    return weft_rate;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    double s[MAX_REPS];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* ns per EPOLL_CTL_ADD + EPOLL_CTL_DEL of an idle pipe. */
static double ctl_pair_ns(void)
{
    int ep = epoll_create1(EPOLL_CLOEXEC), p[2];
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0)
        die("pipe2");
    struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
    long n = 0;
    int64_t t0 = now_ns(), t;
    do {
        for (int i = 0; i < 1000; i++) {
            epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
            epoll_ctl(ep, EPOLL_CTL_DEL, p[0], &ev);
        }
        n += 1000;
        t = now_ns();
    } while (t - t0 < dur_ns);
    close(ep);
    close(p[0]);
    close(p[1]);
    return (double)(t - t0) / n;
}

int main(int argc, char **argv)
{
    int dur_ms = argc > 1 ? atoi(argv[1]) : 1000;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    int cpu_a = argc > 3 ? atoi(argv[3]) : 0, cpu_b = argc > 4 ? atoi(argv[4]) : 1;
    if (dur_ms <= 0 || reps <= 0 || reps > MAX_REPS) {
        fprintf(stderr, "usage: bench_fd_wait [DUR_MS [REPS [CPU_A [CPU_B]]]]\n");
        return 2;
    }
    if (pipe2(ping, O_CLOEXEC) != 0 || pipe2(pong, O_CLOEXEC) != 0)
        die("pipe2");
    fcntl(pong[0], F_SETFL, O_NONBLOCK); /* the measuring side never blocks in read */
    pin(cpu_a);
    pthread_t t;
    pthread_create(&t, NULL, peer, (void *)(intptr_t)cpu_b);

    printf("bench_fd_wait: %d ms per variant, %d repetitions, measuring on CPU %d, peer on CPU %d\n",
           dur_ms, reps, cpu_a, cpu_b);
    dur_ns = 200 * 1000000LL; /* warm-up */
    for (int v = 0; v < NV; v++)
        run_variant(v);
    dur_ns = (int64_t)dur_ms * 1000000LL;
    double rate[NV][MAX_REPS];
    for (int r = 0; r < reps; r++) {
        printf("rep %d:", r + 1);
        for (int k = 0; k < NV; k++) {
            int v = (k + r) % NV;
            rate[v][r] = run_variant(v);
        }
        for (int v = 0; v < NV; v++)
            printf(" %s %.0f", names[v], rate[v][r]);
        printf("\n");
    }
    printf("\n%-14s %12s %12s %10s\n", "variant", "round trips/s", "us/round trip", "vs poll");
    for (int v = 0; v < NV; v++) {
        double ratio[MAX_REPS];
        for (int r = 0; r < reps; r++)
            ratio[r] = rate[v][r] / rate[0][r];
        double m = median(rate[v], reps);
        printf("%-14s %12.0f %12.2f %10.3f\n", names[v], m, 1e6 / m, median(ratio, reps));
    }
    printf("\nEPOLL_CTL_ADD + EPOLL_CTL_DEL of an idle pipe: %.0f ns per pair\n", ctl_pair_ns());
    if (write(ping[1], "q", 1) != 1)
        die("write");
    pthread_join(t, NULL);
    return 0;
}
