/*
 * bench_chan.c - what a channel message costs between two coroutines of
 * one loop, beside bench/chan_go.go, the same two measurements with
 * goroutines (run it with GOMAXPROCS=1 for the same single thread).
 *
 *   pingpong: two unbuffered channels; one coroutine sends on the first
 *             and receives on the second, the other echoes; ns per
 *             message = elapsed / (2 * round trips), as the yardstick's
 *             gobench counts its channel ping-pong.
 *   stream:   one channel of capacity 128, one coroutine sends n values,
 *             the other receives them; ns per message = elapsed / n.
 *   mutex:    beside them, an uncontended weft_mutex_lock + unlock in a
 *             coroutine, and pthread_mutex_lock + unlock on the same thread;
 *             ns per pair.
 * Values are 8-byte integers (Go's int).  Each measurement is calibrated
 * to about 200 ms, then run REPS times; one line per repetition, then the
 * median, min and max.  Nothing is pinned here: the caller decides
 * (taskset -c 1).
 *
 * usage: bench_chan [REPS]        (default 5)
 */
#include <weft.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_REPS 50
#define TARGET_NS 200000000.0
#define STREAM_CAP 128

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

/* ---- the two coroutines' sides -------------------------------------------- */

typedef struct run {
    weft_chan *a, *b;
    long n;
    int failed;
} run;

static void echo(void *arg)
{
    run *r = arg;
    long v;
    while (weft_chan_recv(r->a, &v, -1) == 0)
        if (weft_chan_send(r->b, &v, -1) != 0)
            r->failed = 1;
}

static double start_ns, result_ns;

/* The stream's clock stops when the consumer has the last value. */
static void drain(void *arg)
{
    run *r = arg;
    long v, want = 0;
    while (weft_chan_recv(r->a, &v, -1) == 0)
        if (v != want++)
            r->failed = 1;
    result_ns = (now_ns() - start_ns) / (double)r->n;
    if (want != r->n)
        r->failed = 1;
}

/* The objects are made on the loop, so that they are its own (no lock):
 * made outside any loop they would be shared between loops (sync.h). */
static int pingpong_main(void *arg)
{
    run *r = arg;
    if (weft_chan_new(&r->a, sizeof(long), 0) || weft_chan_new(&r->b, sizeof(long), 0))
        exit(1);
    weft_go(echo, r);
    weft_yield(); /* the echoer waits in its receive */
    double t = now_ns();
    for (long i = 0; i < r->n; i++) {
        long v = i;
        if (weft_chan_send(r->a, &v, -1) != 0 || weft_chan_recv(r->b, &v, -1) != 0 || v != i)
            r->failed = 1;
    }
    result_ns = (now_ns() - t) / (2.0 * (double)r->n);
    weft_chan_close(r->a);
    return 0;
}

static int stream_main(void *arg)
{
    run *r = arg;
    if (weft_chan_new(&r->a, sizeof(long), STREAM_CAP))
        exit(1);
    weft_go(drain, r);
    weft_yield();
    start_ns = now_ns();
    for (long i = 0; i < r->n; i++)
        if (weft_chan_send(r->a, &i, -1) != 0)
            r->failed = 1;
    weft_chan_close(r->a);
    return 0;
}

static double pingpong(long n)
{
    run r = {.n = n};
    if (weft_main(pingpong_main, &r, NULL) != 0 || r.failed) {
        fprintf(stderr, "bench_chan: pingpong failed\n");
        exit(1);
    }
    weft_chan_free(r.a);
    weft_chan_free(r.b);
    return result_ns;
}

static double stream(long n)
{
    run r = {.n = n};
    if (weft_main(stream_main, &r, NULL) != 0 || r.failed) {
        fprintf(stderr, "bench_chan: stream failed\n");
        exit(1);
    }
    weft_chan_free(r.a);
    return result_ns;
}

static long mutex_n;
static int mutex_failed;

static int mutex_main(void *arg)
{
    weft_mutex **mp = arg, *m;
    if (weft_mutex_new(&m))
        exit(1);
    *mp = m;
    double t = now_ns();
    for (long i = 0; i < mutex_n; i++)
        if (weft_mutex_lock(m, -1) != 0 || weft_mutex_unlock(m) != 0)
            mutex_failed = 1;
    result_ns = (now_ns() - t) / (double)mutex_n;
    return 0;
}

static double mutex_weft(long n)
{
    weft_mutex *m = NULL;
    mutex_n = n;
    if (weft_main(mutex_main, &m, NULL) != 0 || mutex_failed) {
        fprintf(stderr, "bench_chan: mutex failed\n");
        exit(1);
    }
    weft_mutex_free(m);
    return result_ns;
}

static double mutex_pthread(long n)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    double t = now_ns();
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&m);
        pthread_mutex_unlock(&m);
    }
    return (now_ns() - t) / (double)n;
}

/* ---- measuring --------------------------------------------------------------- */

static void measure(const char *who, const char *what, double (*fn)(long n))
{
    long n = 10000;
    double per, v[MAX_REPS];
    while ((per = fn(n)) * (double)n < TARGET_NS / 10 && n < (1L << 40))
        n *= 4;
    n = (long)(TARGET_NS / (per > 0.1 ? per : 0.1));
    for (int i = 0; i < reps; i++) {
        v[i] = fn(n);
        printf("%s %s rep=%d ns=%.1f\n", who, what, i + 1, v[i]);
        fflush(stdout);
    }
    qsort(v, (size_t)reps, sizeof *v, cmp_double);
    double med = reps % 2 ? v[reps / 2] : (v[reps / 2 - 1] + v[reps / 2]) / 2;
    printf("%s %s median=%.1f min=%.1f max=%.1f (reps=%d, n=%ld)\n", who, what, med, v[0],
           v[reps - 1], reps, n);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        reps = atoi(argv[1]);
    if (reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "usage: bench_chan [REPS 1..%d]\n", MAX_REPS);
        return 2;
    }
    measure("weft", "pingpong", pingpong);
    measure("weft", "stream", stream);
    measure("weft", "mutex", mutex_weft);
    measure("pthread", "mutex", mutex_pthread);
    return 0;
}
