/*
 * bench_chan_xloop.c - what a channel message costs between coroutines of
 * two loops, each loop on its own thread (weft_main on two pthreads, the
 * channels made before them: shared), beside bench/chan_go.go (GOMAXPROCS=2), the
 * same with goroutines (run it with GOMAXPROCS=2).  And the single-loop
 * measurements of bench_chan with the objects made on the loop (local),
 * to set this build against another (its code path must not have moved).
 *
 *   stream:   one channel of capacity STREAM_CAP, one loop's coroutine
 *             sends n values, the other's receives them; ns per message
 *             = elapsed / n (messages/s = 1e9 / that).
 *   pingpong: two unbuffered channels; one loop's coroutine sends on the
 *             first and receives on the second, the other echoes; ns per
 *             message = elapsed / (2 * round trips) (a round trip is two).
 *   local:    bench_chan's pingpong, stream (capacity 128) and
 *             uncontended mutex pair, objects made on the loop.
 * Values are 8-byte integers.  Each measurement is calibrated to about
 * 200 ms, then run REPS times; one line per repetition, then the median,
 * min and max.  Nothing is pinned here: the caller decides (taskset).
 *
 * usage: bench_chan_xloop stream|pingpong|local [REPS]   (default 5)
 */
#include <weft.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_REPS 50
#define TARGET_NS 200000000.0
#define STREAM_CAP 1024
#define LOCAL_CAP 128

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

static void die(const char *what)
{
    fprintf(stderr, "bench_chan_xloop: %s failed\n", what);
    exit(1);
}

/* ---- two loops ---------------------------------------------------------------- */

typedef struct run {
    weft_chan *a, *b;
    long n;
    atomic_int ready; /* both sides are in their loops */
    double start, result;
    int failed;
} run;

typedef struct side {
    run *r;
    int (*fn)(void *arg);
    int rc;
} side;

static void both_ready(run *r)
{
    atomic_fetch_add(&r->ready, 1);
    while (atomic_load(&r->ready) < 2)
        ;
}

static int stream_send(void *arg)
{
    run *r = arg;
    both_ready(r);
    r->start = now_ns();
    for (long i = 0; i < r->n; i++)
        if (weft_chan_send(r->a, &i, -1) != 0)
            r->failed = 1;
    return weft_chan_close(r->a);
}

static int stream_recv(void *arg)
{
    run *r = arg;
    both_ready(r);
    long v, want = 0;
    while (weft_chan_recv(r->a, &v, -1) == 0)
        if (v != want++)
            r->failed = 1;
    r->result = (now_ns() - r->start) / (double)r->n;
    if (want != r->n)
        r->failed = 1;
    return 0;
}

static int ping(void *arg)
{
    run *r = arg;
    both_ready(r);
    double t = now_ns();
    for (long i = 0; i < r->n; i++) {
        long v = i;
        if (weft_chan_send(r->a, &v, -1) != 0 || weft_chan_recv(r->b, &v, -1) != 0 || v != i)
            r->failed = 1;
    }
    r->result = (now_ns() - t) / (2.0 * (double)r->n);
    return weft_chan_close(r->a);
}

static int pong(void *arg)
{
    run *r = arg;
    both_ready(r);
    long v;
    while (weft_chan_recv(r->a, &v, -1) == 0)
        if (weft_chan_send(r->b, &v, -1) != 0)
            r->failed = 1;
    return 0;
}

static void *side_thread(void *arg)
{
    side *s = arg;
    s->rc = weft_main(s->fn, s->r, NULL);
    return NULL;
}

static double two_loops(long n, size_t cap, int (*first)(void *), int (*second)(void *))
{
    run r = {.n = n};
    if (weft_chan_new(&r.a, sizeof(long), cap) || weft_chan_new(&r.b, sizeof(long), cap))
        die("weft_chan_new");
    side s[2] = {{&r, first, 0}, {&r, second, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, side_thread, &s[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    if (s[0].rc || s[1].rc || r.failed)
        die("a run");
    weft_chan_free(r.a);
    weft_chan_free(r.b);
    return r.result;
}

static double stream_xloop(long n)
{
    return two_loops(n, STREAM_CAP, stream_send, stream_recv);
}

static double pingpong_xloop(long n)
{
    return two_loops(n, 0, ping, pong);
}

/* ---- one loop, local objects --------------------------------------------------- */

static run lr;

static void local_echo(void *arg)
{
    (void)arg;
    long v;
    while (weft_chan_recv(lr.a, &v, -1) == 0)
        if (weft_chan_send(lr.b, &v, -1) != 0)
            lr.failed = 1;
}

static void local_drain(void *arg)
{
    (void)arg;
    long v, want = 0;
    while (weft_chan_recv(lr.a, &v, -1) == 0)
        if (v != want++)
            lr.failed = 1;
    lr.result = (now_ns() - lr.start) / (double)lr.n;
    if (want != lr.n)
        lr.failed = 1;
}

static int local_pingpong_main(void *arg)
{
    (void)arg;
    if (weft_chan_new(&lr.a, sizeof(long), 0) || weft_chan_new(&lr.b, sizeof(long), 0))
        return -1;
    weft_go(local_echo, NULL);
    weft_yield();
    double t = now_ns();
    for (long i = 0; i < lr.n; i++) {
        long v = i;
        if (weft_chan_send(lr.a, &v, -1) != 0 || weft_chan_recv(lr.b, &v, -1) != 0 || v != i)
            lr.failed = 1;
    }
    lr.result = (now_ns() - t) / (2.0 * (double)lr.n);
    weft_chan_close(lr.a);
    return 0;
}

static int local_stream_main(void *arg)
{
    (void)arg;
    if (weft_chan_new(&lr.a, sizeof(long), LOCAL_CAP))
        return -1;
    lr.b = NULL;
    weft_go(local_drain, NULL);
    weft_yield();
    lr.start = now_ns();
    for (long i = 0; i < lr.n; i++)
        if (weft_chan_send(lr.a, &i, -1) != 0)
            lr.failed = 1;
    weft_chan_close(lr.a);
    return 0;
}

static int local_mutex_main(void *arg)
{
    (void)arg;
    weft_mutex *m;
    if (weft_mutex_new(&m))
        return -1;
    double t = now_ns();
    for (long i = 0; i < lr.n; i++)
        if (weft_mutex_lock(m, -1) != 0 || weft_mutex_unlock(m) != 0)
            lr.failed = 1;
    lr.result = (now_ns() - t) / (double)lr.n;
    weft_mutex_free(m);
    return 0;
}

static double local_run(long n, int (*fn)(void *))
{
    memset(&lr, 0, sizeof lr);
    lr.n = n;
    if (weft_main(fn, NULL, NULL) != 0 || lr.failed)
        die("a local run");
    weft_chan_free(lr.a);
    weft_chan_free(lr.b);
    return lr.result;
}

static double pingpong_local(long n)
{
    return local_run(n, local_pingpong_main);
}

static double stream_local(long n)
{
    return local_run(n, local_stream_main);
}

static double mutex_local(long n)
{
    return local_run(n, local_mutex_main);
}

/* ---- measuring --------------------------------------------------------------- */

static void measure(const char *what, double (*fn)(long n))
{
    long n = 10000;
    double per, v[MAX_REPS];
    while ((per = fn(n)) * (double)n < TARGET_NS / 10 && n < (1L << 40))
        n *= 4;
    n = (long)(TARGET_NS / (per > 0.1 ? per : 0.1));
    for (int i = 0; i < reps; i++) {
        v[i] = fn(n);
        printf("weft %s rep=%d ns=%.1f\n", what, i + 1, v[i]);
        fflush(stdout);
    }
    qsort(v, (size_t)reps, sizeof *v, cmp_double);
    double med = reps % 2 ? v[reps / 2] : (v[reps / 2 - 1] + v[reps / 2]) / 2;
    printf("weft %s median=%.1f min=%.1f max=%.1f (reps=%d, n=%ld)\n", what, med, v[0], v[reps - 1],
           reps, n);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (argc > 2)
        reps = atoi(argv[2]);
    if (reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "usage: bench_chan_xloop stream|pingpong|local [REPS 1..%d]\n", MAX_REPS);
        return 2;
    }
    if (strcmp(mode, "stream") == 0) {
        measure("xloop-stream", stream_xloop);
    } else if (strcmp(mode, "pingpong") == 0) {
        measure("xloop-pingpong", pingpong_xloop);
    } else if (strcmp(mode, "local") == 0) {
        measure("pingpong", pingpong_local);
        measure("stream", stream_local);
        measure("mutex", mutex_local);
    } else {
        fprintf(stderr, "usage: bench_chan_xloop stream|pingpong|local [REPS 1..%d]\n", MAX_REPS);
        return 2;
    }
    return 0;
}
