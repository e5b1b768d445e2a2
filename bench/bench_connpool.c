/*
 * bench_connpool.c - what a connection pool checkout and return of an idle
 * connection costs, beside the syscalls it is made of and the new
 * connection it saves.  One loop, loopback, plain TCP:
 *
 *   cycle:   weft_connpool_get of the one idle connection, then
 *            weft_connpool_put(reusable) of it; ns per get + put.
 *   floor:   the syscalls that cycle makes, called directly on the same
 *            descriptor: recv(MSG_PEEK | MSG_DONTWAIT), which the get's
 *            check is, and getsockopt(TCP_INFO), which the put's is.
 *   connect: weft_tcp_connect, then weft_reset (RST: no TIME_WAIT piles
 *            up), to a listener whose acceptor takes and drops each one:
 *            what a get costs with no idle connection.
 * Each is calibrated to about 200 ms, then the three run in turn, REPS
 * times; one line per repetition with the ratios of that repetition, then
 * the medians.  Nothing is pinned here: the caller decides (taskset).
 *
 * usage: bench_connpool [REPS]        (default 5)
 *        bench_connpool --cycles N    N get + put cycles and nothing else,
 *                                     for strace -c -f: syscalls per cycle
 */
#include <weft.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define MAX_REPS 50
#define TARGET_NS 200000000.0

static int reps = 5;
static long only_cycles; /* --cycles */
static int failed;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- the other ends ---------------------------------------------------------------- */

typedef struct ends {
    weft_sock *keep_l, *drop_l; /* accepted and kept open / accepted and closed */
    int keep_port, drop_port;
    weft_sock *kept[4];
} ends;

static void keeper(void *arg)
{
    ends *e = arg;
    for (int i = 0; i < 4 && weft_tcp_accept(e->keep_l, &e->kept[i], -1) == 0; i++)
        ;
}

static void dropper(void *arg)
{
    ends *e = arg;
    weft_sock *c;
    while (weft_tcp_accept(e->drop_l, &c, -1) == 0)
        weft_close(c);
}

static int port_of(weft_sock *l)
{
    weft_addr a;
    return weft_sock_local(l, &a) == 0 ? weft_addr_port(&a) : -1;
}

/* ---- the three measurements -------------------------------------------------------- */

static weft_connpool *pool;
static ends E;

static double run_cycle(long n)
{
    weft_sock *s;
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        if (weft_connpool_get(pool, &s, "127.0.0.1", E.keep_port, -1) != 0 ||
            weft_connpool_put(pool, s, 1) != 0)
            failed++;
    }
    return (now_ns() - t0) / (double)n;
}

static double run_floor(long n, int fd)
{
    char c;
    struct tcp_info ti;
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        socklen_t len = sizeof ti;
        if (recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) >= 0 ||
            getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
            failed++;
    }
    return (now_ns() - t0) / (double)n;
}

static double run_connect(long n)
{
    weft_sock *s;
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        if (weft_tcp_connect(&s, "127.0.0.1", E.drop_port, -1) != 0) {
            failed++;
            continue;
        }
        weft_reset(s);
    }
    return (now_ns() - t0) / (double)n;
}

/* Iterations for about TARGET_NS, from a first short run. */
static long calibrate(double ns_each)
{
    long n = (long)(TARGET_NS / (ns_each > 1 ? ns_each : 1));
    return n < 100 ? 100 : n;
}

static int bench_main(void *arg)
{
    (void)arg;
    if (weft_tcp_listen(&E.keep_l, "127.0.0.1", 0, 0, 0) < 0 ||
        weft_tcp_listen(&E.drop_l, "127.0.0.1", 0, 0, 0) < 0) {
        fprintf(stderr, "bench_connpool: listen failed\n");
        return 1;
    }
    E.keep_port = port_of(E.keep_l);
    E.drop_port = port_of(E.drop_l);
    int64_t keep_id = weft_go(keeper, &E), drop_id = weft_go(dropper, &E);
    int rc = weft_connpool_new(&pool, NULL);
    weft_sock *s;
    if (rc == 0)
        rc = weft_connpool_get(pool, &s, "127.0.0.1", E.keep_port, 5000);
    if (rc < 0) {
        fprintf(stderr, "bench_connpool: %s\n", weft_strerror(rc));
        return 1;
    }
    int fd = weft_sock_fd(s);
    weft_connpool_put(pool, s, 1);
    weft_sleep(10); /* the server side is accepted and quiet */

    if (only_cycles) {
        run_cycle(only_cycles);
    } else {
        long n_cycle = calibrate(run_cycle(2000));
        long n_floor = calibrate(run_floor(2000, fd));
        long n_conn = calibrate(run_connect(200));
        double cyc[MAX_REPS], flo[MAX_REPS], con[MAX_REPS], r1[MAX_REPS], r2[MAX_REPS];
        printf("%-6s %12s %12s %12s %14s %14s\n", "rep", "cycle ns", "floor ns", "connect ns",
               "cycle/floor", "connect/cycle");
        for (int r = 0; r < reps; r++) {
            cyc[r] = run_cycle(n_cycle);
            flo[r] = run_floor(n_floor, fd);
            con[r] = run_connect(n_conn);
            r1[r] = cyc[r] / flo[r];
            r2[r] = con[r] / cyc[r];
            printf("%-6d %12.0f %12.0f %12.0f %14.2f %14.1f\n", r + 1, cyc[r], flo[r], con[r],
                   r1[r], r2[r]);
        }
        printf("%-6s %12.0f %12.0f %12.0f %14.2f %14.1f\n", "median", median(cyc, reps),
               median(flo, reps), median(con, reps), median(r1, reps), median(r2, reps));
        weft_connpool_stats st;
        weft_connpool_stat(pool, &st);
        printf("pool: %llu connects, %llu reuses, %llu stale\n", (unsigned long long)st.connects,
               (unsigned long long)st.reuses, (unsigned long long)st.stale);
    }
    weft_connpool_free(pool);
    weft_close(E.keep_l);
    weft_close(E.drop_l);
    for (int i = 0; i < 4; i++)
        if (E.kept[i])
            weft_close(E.kept[i]);
    weft_join(keep_id, 1000);
    weft_join(drop_id, 1000);
    if (failed)
        fprintf(stderr, "bench_connpool: %d operations failed\n", failed);
    return failed != 0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "--cycles") == 0) {
        only_cycles = atol(argv[2]);
        if (only_cycles <= 0)
            return 2;
    } else if (argc > 1) {
        reps = atoi(argv[1]);
        if (reps < 1 || reps > MAX_REPS) {
            fprintf(stderr, "usage: bench_connpool [REPS (1..%d)] | --cycles N\n", MAX_REPS);
            return 2;
        }
    }
    int rc = weft_main(bench_main, NULL, NULL);
    return rc < 0 ? 1 : rc;
}
