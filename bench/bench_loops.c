/*
 * bench_loops.c - what crossing loops costs with weft_main's two loops:
 *
 *   join-local:   weft_go + weft_join of an empty coroutine on the caller's
 *                 loop, ns per pair (the baseline);
 *   join-remote:  weft_go_on(1, ...) + weft_join from loop 0: the spawn
 *                 posted to loop 1, the join's request and its answer, ns
 *                 per pair (two wake-ups of a sleeping loop in the worst
 *                 case);
 *   spawn-remote: loop 0 spawns n empty coroutines on loop 1 without
 *                 waiting, ns per spawn until loop 1 has run them all
 *                 (batched: one wake-up serves many posts).
 *
 * Each is calibrated to about 200 ms, run REPS times, and printed as
 * median, min and max.  Nothing is pinned: the two loops need both CPUs.
 *
 * usage: bench_loops [REPS]        (default 5)
 */
#include <weft.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_REPS 50
#define TARGET_NS 200000000.0

static int reps = 5;

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

static void nothing(void *arg)
{
    (void)arg;
}

static atomic_long ran;

static void count(void *arg)
{
    (void)arg;
    atomic_fetch_add_explicit(&ran, 1, memory_order_relaxed);
}

static double join_local(long n)
{
    double t = now_ns();
    for (long i = 0; i < n; i++)
        if (weft_join(weft_go(nothing, NULL), -1) != 0)
            exit(1);
    return (now_ns() - t) / (double)n;
}

static double join_remote(long n)
{
    double t = now_ns();
    for (long i = 0; i < n; i++)
        if (weft_join(weft_go_on(1, nothing, NULL), -1) != 0)
            exit(1);
    return (now_ns() - t) / (double)n;
}

static double spawn_remote(long n)
{
    atomic_store(&ran, 0);
    double t = now_ns();
    int64_t last = 0;
    for (long i = 0; i < n; i++)
        if ((last = weft_go_on(1, count, NULL)) < 0)
            exit(1);
    weft_join(last, -1); /* the last, and so every one before it, has run */
    double per = (now_ns() - t) / (double)n;
    if (atomic_load(&ran) != n)
        exit(1);
    return per;
}

static void measure(const char *what, double (*fn)(long n))
{
    long n = 100;
    double per;
    while ((per = fn(n)) * (double)n < TARGET_NS / 10 && n < (1L << 30))
        n *= 4;
    n = (long)(TARGET_NS / (per > 1 ? per : 1));
    double v[MAX_REPS];
    for (int r = 0; r < reps; r++) {
        v[r] = fn(n);
        printf("weft %s rep=%d ns=%.1f\n", what, r + 1, v[r]);
    }
    qsort(v, (size_t)reps, sizeof v[0], cmp_double);
    printf("weft %s median=%.1f min=%.1f max=%.1f (reps=%d, n=%ld)\n", what, v[reps / 2], v[0],
           v[reps - 1], reps, n);
    fflush(stdout);
}

static int bench_main(void *arg)
{
    (void)arg;
    measure("join-local", join_local);
    measure("join-remote", join_remote);
    measure("spawn-remote", spawn_remote);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        reps = atoi(argv[1]);
        if (reps < 1 || reps > MAX_REPS) {
            fprintf(stderr, "usage: bench_loops [REPS 1..%d]\n", MAX_REPS);
            return 2;
        }
    }
    weft_config cfg = {.threads = 2};
    return weft_main(bench_main, NULL, &cfg);
}
