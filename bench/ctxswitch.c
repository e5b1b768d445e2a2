/*
 * ctxswitch.c - what a coroutine costs: the raw context switch between the
 * loop's stack and a coroutine's (weft__ctx_resume and weft__ctx_suspend,
 * no scheduler), weft_yield among the coroutines
 * of one loop (each yield is coroutine -> loop -> next coroutine), and
 * spawning coroutines in batches of 1000 that run to completion (also right
 * after a coroutine with a stack of another size has finished).
 *
 * The lines tagged fp_flags repeat a measurement with the floating-point
 * status flags (MXCSR on x86-64) differing between the two sides of the
 * switch, as they do once one side has done any inexact float operation:
 * the switch saves and compares the whole register, flags included.
 *
 * Built twice: ctxswitch (assembly switch) and ctxswitch_ucontext (the
 * ucontext fallback).  Every measurement is calibrated to about 200 ms, run
 * REPS times in this process, and printed as median, min and max.  Nothing
 * is pinned here: the caller decides (bench/run.sh uses taskset -c 1).
 *
 * usage: ctxswitch [REPS]        (default 5)
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifdef WEFT_USE_UCONTEXT
#define VARIANT "ucontext"
#else
#define VARIANT "asm"
#endif

#define MAX_REPS 50
#define TARGET_NS 200000000.0
#define SPAWN_BATCH 1000

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

/* Calibrates fn(n) (which returns ns per operation) to about TARGET_NS a
 * run, then runs it reps times; fills v[] sorted. */
static void measure(double (*fn)(long n), double *v)
{
    long n = 1000;
    double per;
    while ((per = fn(n)) * (double)n < TARGET_NS / 10 && n < (1L << 40))
        n *= 4;
    n = (long)(TARGET_NS / (per > 0.1 ? per : 0.1));
    for (int i = 0; i < reps; i++)
        v[i] = fn(n);
    qsort(v, (size_t)reps, sizeof *v, cmp_double);
}

static void print(const char *what, double *v, int invert)
{
    double med = reps % 2 ? v[reps / 2] : (v[reps / 2 - 1] + v[reps / 2]) / 2;
    if (invert) /* ns per operation -> operations per second */
        printf("%s %s median=%.0f min=%.0f max=%.0f (reps=%d)\n", VARIANT, what, 1e9 / med,
               1e9 / v[reps - 1], 1e9 / v[0], reps);
    else
        printf("%s %s median=%.1f min=%.1f max=%.1f (reps=%d)\n", VARIANT, what, med, v[0],
               v[reps - 1], reps);
    fflush(stdout);
}

/* The x86-64 MXCSR: control bits plus sticky exception flags (low 6 bits). */
#if defined(__x86_64__)
#define HAVE_MXCSR 1
static void fp_flags_clear(void)
{
    unsigned m;
    __asm__ volatile("stmxcsr %0" : "=m"(m));
    m &= ~0x3Fu;
    __asm__ volatile("ldmxcsr %0" : : "m"(m));
}

static void fp_flags_set(void)
{
    volatile double third = 1.0;
    third /= 3.0; /* inexact: raises the precision flag */
}
#endif

/* ---- the raw switch: the loop's side <-> one coroutine, no scheduler ------- */

static weft__ctx pair_main, pair_co;
static bool bounce_fp; /* the coroutine does float math before it starts */

/* The coroutine side with the switch inline in a loop, as the loop's own
 * side always has it (the run queue walk). */
static void bounce_pair(void *arg)
{
    (void)arg;
#ifdef HAVE_MXCSR
    if (bounce_fp)
        fp_flags_set();
#endif
    for (;;)
        weft__ctx_suspend(&pair_co, &pair_main);
}

/* The coroutine side with each suspend in a function of its own, as in
 * weft_yield and every blocking call: that function saves and restores the
 * callee-saved registers its caller relies on, once per suspend. */
static __attribute__((noinline)) void suspend_call(void)
{
    weft__ctx_suspend(&pair_co, &pair_main);
}

static void bounce_call(void *arg)
{
    (void)arg;
    for (;;)
        suspend_call();
}

static double bench_pair(long n)
{
    double t = now_ns();
    for (long i = 0; i < n; i++)
        weft__ctx_resume(&pair_main, &pair_co);
    return (now_ns() - t) / (2.0 * (double)n); /* two switches per round */
}

/* Starts a coroutine side on st and measures switches to and from it. */
static void pair_with(weft__stack *st, void (*side)(void *), const char *what)
{
    double v[MAX_REPS];
#ifdef HAVE_MXCSR
    fp_flags_clear(); /* a fresh start for each line */
#endif
#if defined(__x86_64__) && !defined(WEFT_USE_UCONTEXT)
    weft__fiber loop;
    weft__fiber_capture_fp(&loop); /* as the loop does at the start of each step */
    pair_main.fp_words[0] = loop.ctx.fp_words[0];
    pair_main.fp_words[1] = loop.ctx.fp_words[1];
#endif
    weft__ctx_make(&pair_co, st, side, NULL);
    weft__ctx_resume(&pair_main, &pair_co); /* enters side, which comes straight back */
    measure(bench_pair, v);
    print(what, v, 0);
}

/* ---- weft_yield between coroutines of one loop ---------------------------- */

static long yield_rounds;
static bool yield_fp; /* the first yielder does float math before it starts */

static void yielder(void *arg)
{
#ifdef HAVE_MXCSR
    if (arg && yield_fp)
        fp_flags_set();
#endif
    for (long i = 0; i < yield_rounds; i++)
        weft_yield();
}

static double yield_among(long n, int cos)
{
    int64_t ids[100];
    yield_rounds = n / cos > 0 ? n / cos : 1;
    double t = now_ns();
    for (int i = 0; i < cos; i++)
        ids[i] = weft_go(yielder, i == 0 ? &yield_fp : NULL);
    for (int i = 0; i < cos; i++)
        weft_join(ids[i], -1);
    return (now_ns() - t) / (double)(yield_rounds * cos);
}

static double bench_yield2(long n)
{
    return yield_among(n, 2);
}

static double bench_yield100(long n)
{
    return yield_among(n, 100);
}

/* ---- spawn + run to completion, SPAWN_BATCH at a time --------------------- */

static void nop(void *arg)
{
    (void)arg;
}

static double bench_spawn(long n)
{
    long batches = n / SPAWN_BATCH > 0 ? n / SPAWN_BATCH : 1;
    double t = now_ns();
    for (long b = 0; b < batches; b++) {
        int64_t last = 0;
        for (int i = 0; i < SPAWN_BATCH; i++)
            last = weft_go(nop, NULL);
        /* They run in spawn order: once the last is done, all are. */
        if (last < 0 || weft_join(last, -1) < 0) {
            fprintf(stderr, "ctxswitch: spawn failed\n");
            exit(1);
        }
    }
    return (now_ns() - t) / (double)(batches * SPAWN_BATCH);
}

/* A coroutine with a stack of another size finishing first, while the
 * pool is empty: the pool must go on serving default stacks after it. */
static double bench_spawn_after_other(long n)
{
    weft__stack_pool_drain();
    weft_co_opts o = {.stack_size = 1 << 20};
    weft_join(weft_go_opts(nop, NULL, &o), -1);
    return bench_spawn(n);
}

static int loop_benches(void *arg)
{
    double v[MAX_REPS];
    (void)arg;
    measure(bench_yield2, v);
    print("yield_ns(2co)", v, 0);
    measure(bench_yield100, v);
    print("yield_ns(100co)", v, 0);
#ifdef HAVE_MXCSR
    yield_fp = true;
    measure(bench_yield2, v);
    print("yield_ns(2co,fp_flags)", v, 0);
    yield_fp = false;
#endif
    measure(bench_spawn, v);
    print("spawn_ns", v, 0);
    print("spawn_per_s", v, 1);
    measure(bench_spawn_after_other, v);
    print("spawn_ns(after_1m_stack)", v, 0);
    return 0;
}

int main(int argc, char **argv)
{
    reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "usage: ctxswitch [REPS]   (1..%d)\n", MAX_REPS);
        return 2;
    }

    /* The scheduler's pair: the loop resumes, the coroutine suspends. */
    weft__stack *st;
    if (weft__stack_get(&st, 64 * 1024) < 0) {
        fprintf(stderr, "ctxswitch: no stack\n");
        return 1;
    }
    pair_with(st, bounce_pair, "switch_ns(resume+suspend)");
    pair_with(st, bounce_call, "switch_ns(resume+suspend,suspend_in_call)");
#ifdef HAVE_MXCSR
    bounce_fp = true;
    pair_with(st, bounce_pair, "switch_ns(resume+suspend,fp_flags)");
    bounce_fp = false;
    fp_flags_clear();
#endif

    int rc = weft_main(loop_benches, NULL, NULL);
    if (rc != 0) {
        fprintf(stderr, "ctxswitch: weft_main: %s\n", weft_strerror(rc));
        return 1;
    }
    return 0;
}
