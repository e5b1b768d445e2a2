/*
 * test_coro.c - coroutines themselves: spawn order and yield interleaving,
 * ids, weft_self and weft_name, weft_go/weft_go_opts and weft_join with
 * every error they document, per-coroutine stack sizes, floating-point
 * state across switches, and volume: 100,000 coroutines at once (#52) and
 * 1,000,000 short ones in batches with RSS staying flat.
 * Results are recorded in statics and asserted on the main stack.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <dlfcn.h>
#include <fenv.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- spawn order and yield interleaving -------------------------------- */

static char order_log[64];
static size_t order_len;

static void log_char(char c)
{
    if (order_len + 1 < sizeof order_log)
        order_log[order_len++] = c;
}

static void order_child(void *arg)
{
    log_char((char)(uintptr_t)arg);
}

static int order_main(void *arg)
{
    (void)arg;
    weft_go(order_child, (void *)(uintptr_t)'A');
    weft_go(order_child, (void *)(uintptr_t)'B');
    weft_go(order_child, (void *)(uintptr_t)'C');
    /* Nothing switched yet: the spawner is still running. */
    log_char('M');
    weft_yield();
    log_char('m');
    return 0;
}

Test(coro, spawn_does_not_switch, .timeout = 30)
{
    order_len = 0;
    cr_assert_eq(weft_main(order_main, NULL, NULL), 0);
    order_log[order_len] = '\0';
    cr_assert_str_eq(order_log, "MABCm");
}

static void pingpong(void *arg)
{
    char c = (char)(uintptr_t)arg;
    for (int i = 0; i < 4; i++) {
        log_char(c);
        weft_yield();
    }
}

static int pingpong_main(void *arg)
{
    (void)arg;
    int64_t a = weft_go(pingpong, (void *)(uintptr_t)'a');
    int64_t b = weft_go(pingpong, (void *)(uintptr_t)'b');
    return weft_join(a, 2000) | weft_join(b, 2000);
}

/* weft_co_opts.eager: the new coroutine runs at once, until it first
 * blocks or yields, then the caller goes on, ahead of what was queued. */
static char trace[32];
static int tn;

static void mark(char c)
{
    trace[tn++] = c;
}

static void eager_child(void *arg)
{
    mark(*(char *)arg);
    weft_yield();
    mark((char)(*(char *)arg + 1));
}

static void queued(void *arg)
{
    (void)arg;
    mark('q');
}

static void eager_main_co(void *arg)
{
    (void)arg;
    static char a = 'a', c = 'c';
    weft_co_opts eager = {.eager = 1};
    weft_go(queued, NULL); /* queued before the eager ones: runs after them */
    mark('1');
    int64_t id = weft_go_opts(eager_child, &a, &eager);
    mark('2');
    weft_go_opts(eager_child, &c, &eager);
    mark('3');
    weft_join(id, -1);
    mark('4');
}

Test(coro, eager_spawn_runs_first, .timeout = 30)
{
    tn = 0;
    memset(trace, 0, sizeof trace);
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    cr_assert_gt(weft_go(eager_main_co, NULL), 0);
    /* Outside a coroutine eager means nothing: queued as usual. */
    static char x = 'x';
    weft_co_opts eager = {.eager = 1};
    cr_assert_gt(weft_go_opts(eager_child, &x, &eager), 0);
    cr_assert_eq(tn, 0, "ran outside a step");
    cr_assert_eq(weft_loop_run(l, 5000), 0);
    weft_loop_free(l);
    /* main: 1, a runs (a) and yields, main goes on (2), c runs (c) and
     * yields, main (3) joins; x (queued after main) runs in the same step
     * and yields; the next step runs q, then the yielders' second halves
     * (b, d, y); a's end wakes main (4). */
    cr_assert_str_eq(trace, "1a2c3xqbdy4", "order: %s", trace);
}

Test(coro, yield_interleaves, .timeout = 30)
{
    order_len = 0;
    cr_assert_eq(weft_main(pingpong_main, NULL, NULL), 0);
    order_log[order_len] = '\0';
    cr_assert_str_eq(order_log, "abababab");
}

/* ---- ids, weft_self ---------------------------------------------------- */

#define NIDS 1000

static int64_t given_ids[NIDS], seen_self[NIDS];
static int64_t main_self;

static void record_self(void *arg)
{
    seen_self[(uintptr_t)arg] = weft_self();
}

static int ids_main(void *arg)
{
    (void)arg;
    main_self = weft_self();
    for (uintptr_t i = 0; i < NIDS; i++)
        given_ids[i] = weft_go(record_self, (void *)i);
    for (int i = 0; i < NIDS; i++)
        if (given_ids[i] > 0 && weft_join(given_ids[i], 2000) != 0)
            return -1;
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

Test(coro, ids_unique_positive_and_self, .timeout = 30)
{
    cr_assert_eq(weft_self(), 0, "no loop: weft_self must be 0");
    cr_assert_eq(weft_main(ids_main, NULL, NULL), 0);
    cr_assert_gt(main_self, 0);
    for (int i = 0; i < NIDS; i++) {
        cr_assert_gt(given_ids[i], 0, "id %d = %" PRId64, i, given_ids[i]);
        cr_assert_eq(seen_self[i], given_ids[i], "weft_self inside coroutine %d", i);
        cr_assert_neq(given_ids[i], main_self);
    }
    int64_t sorted[NIDS];
    memcpy(sorted, given_ids, sizeof sorted);
    qsort(sorted, NIDS, sizeof sorted[0], cmp_i64);
    for (int i = 1; i < NIDS; i++)
        cr_assert_neq(sorted[i], sorted[i - 1], "duplicate id %" PRId64, sorted[i]);
    cr_assert_eq(weft_self(), 0, "after weft_main: weft_self must be 0");
}

Test(coro, self_on_main_stack_with_loop, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    cr_assert_eq(weft_self(), 0);
    int64_t id = weft_go(record_self, (void *)0);
    cr_assert_gt(id, 0);
    seen_self[0] = -1;
    cr_assert_eq(weft_loop_run(l, 2000), 0);
    cr_assert_eq(seen_self[0], id);
    cr_assert_eq(weft_self(), 0);
    weft_loop_free(l);
}

/* ---- weft_name ----------------------------------------------------------- */

static char name_inside[64];
static char name_unnamed[64];
static const char *name_unknown, *name_after_end;
static int64_t named_id;
static const char long_name[] = "0123456789abcdefghijklmnopqrstuvwxyz";

static void name_self(void *arg)
{
    (void)arg;
    const char *n = weft_name(weft_self());
    snprintf(name_inside, sizeof name_inside, "%s", n ? n : "(null)");
    weft_yield();
}

static void name_idle(void *arg)
{
    (void)arg;
    weft_yield();
}

static char name_long_seen[64];

static int name_main(void *arg)
{
    (void)arg;
    char buf[32] = "worker-7";
    weft_co_opts o = {.name = buf};
    named_id = weft_go_opts(name_self, NULL, &o);
    strcpy(buf, "changed"); /* the name was copied at spawn */
    int64_t plain = weft_go(name_idle, NULL);
    weft_co_opts lo = {.name = long_name};
    int64_t longer = weft_go_opts(name_idle, NULL, &lo);
    const char *un = weft_name(plain); /* valid while plain lives */
    snprintf(name_unnamed, sizeof name_unnamed, "%s", un ? un : "(null)");
    const char *ln = weft_name(longer);
    snprintf(name_long_seen, sizeof name_long_seen, "%s", ln ? ln : "(null)");
    name_unknown = weft_name(named_id + 1000000);
    weft_join(named_id, 2000);
    weft_join(plain, 2000);
    weft_join(longer, 2000);
    name_after_end = weft_name(named_id);
    return 0;
}

Test(coro, names, .timeout = 30)
{
    cr_assert_null(weft_name(1), "no loop: weft_name must be NULL");
    cr_assert_eq(weft_main(name_main, NULL, NULL), 0);
    cr_assert_str_eq(name_inside, "worker-7");
    cr_assert_str_eq(name_unnamed, "");
    cr_assert_eq(strlen(name_long_seen), 31, "long name kept: \"%s\"", name_long_seen);
    cr_assert_eq(strncmp(name_long_seen, long_name, 31), 0);
    cr_assert_null(name_unknown);
    cr_assert_null(name_after_end, "a finished coroutine has no name");
}

/* ---- weft_go errors -------------------------------------------------------- */

static void nop(void *arg)
{
    (void)arg;
}

static volatile int big_ran;

static void big_stack_body(void *arg)
{
    (void)arg;
    big_ran = 1;
}

static int64_t go_null, go_null_opts, go_huge, go_gib;
static int join_gib;

static int go_errors_main(void *arg)
{
    (void)arg;
    go_null = weft_go(NULL, NULL);
    go_null_opts = weft_go_opts(NULL, NULL, NULL);
    weft_co_opts huge = {.stack_size = ((size_t)1 << 30) + 1};
    go_huge = weft_go_opts(nop, NULL, &huge);
    /* Exactly 1 GiB is allowed; the stack is reserved, not committed. */
    weft_co_opts gib = {.stack_size = (size_t)1 << 30};
    go_gib = weft_go_opts(big_stack_body, NULL, &gib);
    join_gib = go_gib > 0 ? weft_join(go_gib, 5000) : -999;
    return 0;
}

Test(coro, go_errors, .timeout = 30)
{
    cr_assert_eq(weft_go(nop, NULL), -EPERM);
    weft_co_opts o = {.stack_size = 0, .name = "x"};
    cr_assert_eq(weft_go_opts(nop, NULL, &o), -EPERM);

    cr_assert_eq(weft_main(go_errors_main, NULL, NULL), 0);
    cr_assert_eq(go_null, -EINVAL);
    cr_assert_eq(go_null_opts, -EINVAL);
    cr_assert_eq(go_huge, -EINVAL);
    cr_assert_gt(go_gib, 0);
    cr_assert_eq(join_gib, 0);
    cr_assert_eq(big_ran, 1);

    /* The loop is gone again. */
    cr_assert_eq(weft_go(nop, NULL), -EPERM);
}

static volatile int fault_child_ran;
static int64_t fault_go_malloc, fault_go_after;
static int fault_join_mmap;

static void fault_child(void *arg)
{
    (void)arg;
    fault_child_ran++;
}

static int fault_main(void *arg)
{
    (void)arg;
    weft_fault_clear();
    weft_fault_set(WEFT_FAULT_MALLOC, 1, ENOMEM);
    fault_go_malloc = weft_go(fault_child, NULL);
    weft_fault_clear();
    /* The stack is mapped at first run; if that fails it never runs. */
    weft_fault_set(WEFT_FAULT_MMAP, 1, ENOMEM);
    int64_t id = weft_go(fault_child, NULL);
    fault_join_mmap = id > 0 ? weft_join(id, 2000) : (int)id;
    weft_fault_clear();
    fault_go_after = weft_go(fault_child, NULL);
    if (fault_go_after > 0)
        weft_join(fault_go_after, 2000);
    return 0;
}

Test(coro, go_out_of_memory, .timeout = 30)
{
    fault_child_ran = 0;
    cr_assert_eq(weft_main(fault_main, NULL, NULL), 0);
    cr_assert_eq(fault_go_malloc, -ENOMEM);
    cr_assert_eq(fault_join_mmap, -ENOMEM);
    cr_assert_gt(fault_go_after, 0);
    cr_assert_eq(fault_child_ran, 1, "only the last spawn may have run");
}

/* ---- stack sizes ------------------------------------------------------------ */

static volatile unsigned long big_sum;

static void __attribute__((noinline)) use_400k(void *arg)
{
    (void)arg;
    volatile unsigned char a[400 * 1024];
    for (size_t i = 0; i < sizeof a; i++)
        a[i] = (unsigned char)i;
    unsigned long s = 0;
    for (size_t i = 0; i < sizeof a; i += 4096)
        s += a[i] + a[sizeof a - 1 - i];
    big_sum = s + 1;
}

static int stack_main(void *arg)
{
    (void)arg;
    weft_co_opts o = {.stack_size = 512 * 1024};
    int64_t id = weft_go_opts(use_400k, NULL, &o);
    return id > 0 ? weft_join(id, 5000) : (int)id;
}

/* A default (256 KiB) stack could not hold the array: the process would die
 * in the overflow handler rather than pass. */
Test(coro, per_coroutine_stack_size, .timeout = 30)
{
    big_sum = 0;
    cr_assert_eq(weft_main(stack_main, NULL, NULL), 0);
    cr_assert_neq(big_sum, 0);
}

static int cfg_stack_main(void *arg)
{
    (void)arg;
    int64_t id = weft_go(use_400k, NULL);
    return id > 0 ? weft_join(id, 5000) : (int)id;
}

Test(coro, loop_default_stack_size, .timeout = 30)
{
    weft_config cfg = {.stack_size = 512 * 1024};
    big_sum = 0;
    cr_assert_eq(weft_main(cfg_stack_main, NULL, &cfg), 0);
    cr_assert_neq(big_sum, 0);
}

/* ---- weft_join ------------------------------------------------------------------ */

static int j_finished_late, j_running, j_unknown, j_foreign, j_zero, j_self, j_timeout,
    j_after_timeout, j_cancelled;
static int64_t j_timeout_ms;
static volatile int j_worker_done;

static void short_worker(void *arg)
{
    (void)arg;
    weft_yield();
    j_worker_done = 1;
}

static void sleeper_300(void *arg)
{
    (void)arg;
    weft_sleep(300);
}

static void join_self(void *arg)
{
    (void)arg;
    j_self = weft_join(weft_self(), 1000);
}

static void joiner(void *arg)
{
    j_cancelled = weft_join(*(int64_t *)arg, -1);
}

static int join_main(void *arg)
{
    (void)arg;
    /* Finished before the join. */
    int64_t a = weft_go(nop, NULL);
    for (int i = 0; i < 3; i++)
        weft_yield();
    j_finished_late = weft_join(a, 1000);

    /* Still running: the join waits for it. */
    j_worker_done = 0;
    int64_t b = weft_go(short_worker, NULL);
    j_running = weft_join(b, 1000);
    if (!j_worker_done)
        j_running = -1000;

    j_unknown = weft_join(b + 1000000, 1000);
    j_foreign = weft_join(12345, 1000);
    j_zero = weft_join(0, 1000);

    int64_t c = weft_go(join_self, NULL);
    weft_join(c, 1000);

    int64_t s = weft_go(sleeper_300, NULL);
    int64_t t0 = mono_ms();
    j_timeout = weft_join(s, 50);
    j_timeout_ms = mono_ms() - t0;
    j_after_timeout = weft_join(s, 2000);

    /* A coroutine blocked in weft_join can be cancelled. */
    int64_t s2 = weft_go(sleeper_300, NULL);
    int64_t j = weft_go(joiner, &s2);
    weft_sleep(20);
    weft_cancel(j);
    weft_join(j, 1000);
    weft_join(s2, 2000);
    return 0;
}

Test(coro, join_results, .timeout = 30)
{
    cr_assert_eq(weft_join(1, 0), -ESRCH, "no loop on this thread");
    cr_assert_eq(weft_main(join_main, NULL, NULL), 0);
    cr_assert_eq(j_finished_late, 0);
    cr_assert_eq(j_running, 0);
    cr_assert_eq(j_unknown, -ESRCH);
    cr_assert_eq(j_foreign, -ESRCH);
    cr_assert_eq(j_zero, -ESRCH);
    cr_assert_eq(j_self, -EDEADLK);
    cr_assert_eq(j_timeout, -ETIMEDOUT);
    cr_assert(j_timeout_ms >= 50 && j_timeout_ms < 50 + LATE_MS, "join timeout took %" PRId64 " ms",
              j_timeout_ms);
    cr_assert_eq(j_after_timeout, 0);
    cr_assert_eq(j_cancelled, -ECANCELED);
}

static volatile int drive_done;

static void drive_body(void *arg)
{
    (void)arg;
    weft_sleep(50);
    weft_yield();
    drive_done = 1;
}

/* On the loop's thread but outside any coroutine, weft_join runs the loop
 * itself until the coroutine has finished. */
Test(coro, join_from_main_stack_drives_loop, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    drive_done = 0;
    int64_t id = weft_go(drive_body, NULL);
    cr_assert_gt(id, 0);
    int64_t t0 = mono_ms();
    cr_assert_eq(weft_join(id, 2000), 0);
    int64_t took = mono_ms() - t0;
    cr_assert_eq(drive_done, 1);
    cr_assert(took >= 50 && took < 1000, "took %" PRId64 " ms", took);
    cr_assert_eq(weft_join(id, 0), 0, "finished before the call");
    cr_assert_eq(weft_join(id + 1, 0), -ESRCH);

    int64_t s = weft_go(sleeper_300, NULL);
    t0 = mono_ms();
    cr_assert_eq(weft_join(s, 60), -ETIMEDOUT);
    took = mono_ms() - t0;
    cr_assert(took >= 60 && took < 60 + LATE_MS, "timed join took %" PRId64 " ms", took);
    cr_assert_eq(weft_join(s, -1), 0);
    weft_loop_free(l);
}

/* ---- floating point across switches --------------------------------------------- */

static double __attribute__((noinline)) fp_step(double acc, int i, int k)
{
    return acc * 1.0000001 + 1.0 / ((double)i * k + 0.5);
}

static long double __attribute__((noinline)) fpl_step(long double acc, int i, int k)
{
    return acc * 1.0000001L + 1.0L / ((long double)i * k + 0.25L);
}

#define FP_WORKERS 4
#define FP_ROUNDS 200

static double fp_got[FP_WORKERS];
static long double fpl_got[FP_WORKERS];

static void fp_worker(void *arg)
{
    int k = (int)(uintptr_t)arg;
    double acc = 0;
    long double accl = 0;
    for (int i = 1; i <= FP_ROUNDS; i++) {
        acc = fp_step(acc, i, k);
        accl = fpl_step(accl, i, k);
        weft_yield(); /* let the others use the FPU in between */
    }
    fp_got[k - 1] = acc;
    fpl_got[k - 1] = accl;
}

static int fp_main(void *arg)
{
    (void)arg;
    int64_t ids[FP_WORKERS];
    for (int k = 1; k <= FP_WORKERS; k++)
        ids[k - 1] = weft_go(fp_worker, (void *)(uintptr_t)k);
    for (int k = 0; k < FP_WORKERS; k++)
        weft_join(ids[k], 2000);
    return 0;
}

Test(coro, floating_point_survives_switches, .timeout = 30)
{
    cr_assert_eq(weft_main(fp_main, NULL, NULL), 0);
    for (int k = 1; k <= FP_WORKERS; k++) {
        double acc = 0;
        long double accl = 0;
        for (int i = 1; i <= FP_ROUNDS; i++) {
            acc = fp_step(acc, i, k);
            accl = fpl_step(accl, i, k);
        }
        cr_assert(fp_got[k - 1] == acc, "worker %d: %.17g != %.17g", k, fp_got[k - 1], acc);
        cr_assert(fpl_got[k - 1] == accl, "worker %d: long double differs", k);
    }
}

/*
 * Rounding mode: what we find is that it belongs to the coroutine.  The
 * switch saves and restores MXCSR and the x87 control word, so a coroutine
 * that calls fesetround keeps its mode across yields, other coroutines keep
 * FE_TONEAREST, and the thread is back to FE_TONEAREST after the loop.  A
 * new coroutine starts with the mode of the loop's own thread (logged, not
 * asserted: the header says nothing about it).
 * The test executables are not linked with libm, so fesetround/fegetround
 * are looked up at run time.
 */
static int (*p_fesetround)(int);
static int (*p_fegetround)(void);
static int mode_a_after, mode_b, mode_c;
static double div_a, div_b;
/* 1/7 is inexact and rounds down to nearest in both double and x87 extended
 * precision, so rounding upward gives a larger result in both. */
static volatile double one = 1.0, seven = 7.0;
static volatile long double onel = 1.0L, sevenl = 7.0L;
static long double divl_a, divl_b;

static void round_c(void *arg)
{
    (void)arg;
    mode_c = p_fegetround();
}

static void round_a(void *arg)
{
    (void)arg;
    p_fesetround(FE_UPWARD);
    weft_go(round_c, NULL);
    weft_yield();
    weft_yield();
    mode_a_after = p_fegetround();
    div_a = one / seven;
    divl_a = onel / sevenl;
    p_fesetround(FE_TONEAREST);
}

static void round_b(void *arg)
{
    (void)arg;
    weft_yield(); /* runs after a has changed its mode */
    mode_b = p_fegetround();
    div_b = one / seven;
    divl_b = onel / sevenl;
}

static int round_main(void *arg)
{
    (void)arg;
    int64_t a = weft_go(round_a, NULL);
    int64_t b = weft_go(round_b, NULL);
    weft_join(a, 2000);
    weft_join(b, 2000);
    return 0;
}

Test(coro, rounding_mode_is_per_coroutine, .timeout = 30)
{
    void *m = dlopen("libm.so.6", RTLD_NOW);
    if (!m)
        cr_skip_test("libm.so.6 not loadable: %s", dlerror());
    p_fesetround = (int (*)(int))dlsym(m, "fesetround");
    p_fegetround = (int (*)(void))dlsym(m, "fegetround");
    cr_assert(p_fesetround && p_fegetround);
    cr_assert_eq(p_fegetround(), FE_TONEAREST);
    double nearest = one / seven;
    long double nearestl = onel / sevenl;
    cr_assert_eq(weft_main(round_main, NULL, NULL), 0);

    cr_assert_eq(mode_a_after, FE_UPWARD, "a lost its own rounding mode across a yield");
    cr_assert_eq(mode_b, FE_TONEAREST, "b saw another coroutine's rounding mode");
    cr_assert(div_b == nearest, "b's division was not rounded to nearest");
    cr_assert(div_a > nearest, "a's division was not rounded upward");
    cr_assert(divl_b == nearestl, "b's long double division was not rounded to nearest");
    cr_assert(divl_a > nearestl, "a's long double division was not rounded upward");
    cr_assert_eq(p_fegetround(), FE_TONEAREST, "the thread's mode changed");
    cr_log_info("a coroutine spawned by one in FE_UPWARD starts in %s",
                mode_c == FE_TONEAREST ? "FE_TONEAREST"
                : mode_c == FE_UPWARD  ? "FE_UPWARD"
                                       : "another mode");
    dlclose(m);
}

/* ---- 100,000 coroutines at once (#52) ------------------------------------------- */

#define MANY 100000

static unsigned char many_ran[MANY];
static int64_t many_ids[MANY];
static long many_count, many_bad_joins, many_bad_spawns;

static void many_body(void *arg)
{
    many_ran[(uintptr_t)arg]++;
    many_count++;
}

static int many_main(void *arg)
{
    (void)arg;
    for (uintptr_t i = 0; i < MANY; i++) {
        many_ids[i] = weft_go(many_body, (void *)i);
        if (many_ids[i] <= 0)
            many_bad_spawns++;
    }
    for (int i = 0; i < MANY; i++)
        if (many_ids[i] > 0 && weft_join(many_ids[i], 10000) != 0)
            many_bad_joins++;
    return 0;
}

Test(coro, hundred_thousand_coroutines, .timeout = 180)
{
    int fds = count_fds();
    memset(many_ran, 0, sizeof many_ran);
    many_count = many_bad_joins = many_bad_spawns = 0;
    int64_t t0 = mono_ms();
    cr_assert_eq(weft_main(many_main, NULL, NULL), 0);
    cr_log_info("100,000 coroutines: %" PRId64 " ms", mono_ms() - t0);
    cr_assert_eq(many_bad_spawns, 0);
    cr_assert_eq(many_bad_joins, 0);
    cr_assert_eq(many_count, MANY);
    for (int i = 0; i < MANY; i++)
        cr_assert_eq(many_ran[i], 1, "coroutine %d ran %d times", i, many_ran[i]);
    cr_assert_eq(count_fds(), fds);
}

/* ---- churn: 1,000,000 short coroutines, RSS flat (#52) ------------------------- */

#define CHURN_TOTAL 1000000
#define CHURN_BATCH 1000
#define CHURN_WARMUP 50 /* batches */

static long churn_count, churn_bad;
static long rss_warm_kib, rss_end_kib;

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size, resident = -1;
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void churn_body(void *arg)
{
    (void)arg;
    churn_count++;
    if (churn_count % 3 == 0)
        weft_yield(); /* some are still alive when the next ones start */
}

static int churn_main(void *arg)
{
    (void)arg;
    static int64_t ids[CHURN_BATCH];
    for (int b = 0; b < CHURN_TOTAL / CHURN_BATCH; b++) {
        if (b == CHURN_WARMUP)
            rss_warm_kib = rss_kib();
        for (int i = 0; i < CHURN_BATCH; i++) {
            ids[i] = weft_go(churn_body, NULL);
            if (ids[i] <= 0)
                churn_bad++;
        }
        for (int i = 0; i < CHURN_BATCH; i++)
            if (ids[i] > 0 && weft_join(ids[i], 10000) != 0)
                churn_bad++;
    }
    rss_end_kib = rss_kib();
    return 0;
}

Test(coro, million_short_coroutines_rss_flat, .timeout = 360)
{
    int fds = count_fds();
    churn_count = churn_bad = 0;
    int64_t t0 = mono_ms();
    cr_assert_eq(weft_main(churn_main, NULL, NULL), 0);
    cr_log_info("1,000,000 coroutines: %" PRId64 " ms, RSS %ld KiB after warm-up, %ld at end",
                mono_ms() - t0, rss_warm_kib, rss_end_kib);
    cr_assert_eq(churn_bad, 0);
    cr_assert_eq(churn_count, CHURN_TOTAL);
    cr_assert_gt(rss_warm_kib, 0);
    cr_assert_gt(rss_end_kib, 0);
#ifdef UNDER_ASAN
    /* ASan's quarantine keeps freed records resident: RSS says nothing here. */
    cr_log_info("RSS bound not checked under AddressSanitizer (its quarantine keeps freed memory)");
#else
    cr_assert_lt(rss_end_kib - rss_warm_kib, 16 * 1024, "RSS grew by %ld KiB",
                 rss_end_kib - rss_warm_kib);
#endif
    cr_assert_eq(count_fds(), fds);
}
