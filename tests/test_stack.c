/*
 * test_stack.c - coroutine stacks: the per-thread pool keeps a few warm
 * stacks of each size, gives the pages of the next ones back to the system
 * (so a spike of connections does not pin its memory afterwards), and
 * unmaps beyond that; each stack has a guard below it large enough for a
 * big frame to land in; the default stack holds a 64 KiB buffer.  Uses the
 * library's internals (the static testing build).
 */
#include "internal.h"

#include <weft/testing.h>

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define HOT 64                     /* src/coro/stack.c POOL_HOT */
#define COLD 1024                  /* src/coro/stack.c POOL_MAX */
#define SIZES 8                    /* src/coro/stack.c POOL_SIZES */
#define DEFAULT_STACK (256 * 1024) /* src/coro/fiber.c */

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = -1, resident = -1;
    if (f && fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    if (f)
        fclose(f);
    return resident < 0 ? -1 : resident * (long)(sysconf(_SC_PAGESIZE) / 1024);
}

/* Touches every page of a stack's usable part, as a deep call chain would. */
static void touch(weft__stack *st)
{
    memset(st->base + st->guard, 0x5a, st->size);
}

/* N stacks of size, every page touched, all given back at once. */
static void spike(size_t size)
{
    enum { N = 300 };
    static weft__stack *st[N];
    weft__stack_pool_drain();
    for (int i = 0; i < N; i++) {
        cr_assert_eq(weft__stack_get(&st[i], size), 0);
        cr_assert_geq(st[i]->size, size);
        touch(st[i]);
    }
    long busy = rss_kib();
    for (int i = 0; i < N; i++)
        weft__stack_put(st[i]);
    long after = rss_kib();
    size_t resident;
    cr_assert_eq(weft__stack_pool_count(&resident), (size_t)N, "all kept mapped");
    cr_assert_eq(resident, (size_t)HOT, "only the warm ones keep their pages");
    /* The cold ones gave back all but their top page. */
    long freed = busy - after, expect = (long)(N - HOT) * (long)(size / 1024 - 4);
    cr_assert_gt(freed, expect * 3 / 4, "RSS fell by %ld KiB, expected about %ld", freed, expect);

    /* Reuse comes from the pool, warm ones first, and works on cold ones. */
    weft__stack *a;
    cr_assert_eq(weft__stack_get(&a, size), 0);
    cr_assert_eq(weft__stack_pool_count(&resident), (size_t)N - 1);
    cr_assert_eq(resident, (size_t)HOT - 1);
    touch(a);
    weft__stack_put(a);
    weft__stack_pool_drain();
    cr_assert_eq(weft__stack_pool_count(&resident), 0u);
    cr_assert_eq(resident, 0u);
}

Test(stack, pool_gives_memory_back_after_a_spike, .timeout = 90)
{
    spike(64 * 1024);
}

/* The default size: a larger stack must cost no more once idle. */
Test(stack, pool_gives_memory_back_after_a_spike_of_default_stacks, .timeout = 90)
{
    spike(DEFAULT_STACK);
}

Test(stack, pool_is_bounded, .timeout = 90)
{
    enum { N = HOT + COLD + 100 };
    static weft__stack *st[N];
    weft__stack_pool_drain();
    for (int i = 0; i < N; i++)
        cr_assert_eq(weft__stack_get(&st[i], 16 * 1024), 0);
    for (int i = 0; i < N; i++)
        weft__stack_put(st[i]);
    cr_assert_eq(weft__stack_pool_count(NULL), (size_t)(HOT + COLD), "the rest was unmapped");
    weft__stack_pool_drain();
}

Test(stack, each_size_has_its_own_pool, .timeout = 30)
{
    weft__stack *a, *b, *c, *d;
    weft__stack_pool_drain();
    cr_assert_eq(weft__stack_get(&a, 64 * 1024), 0);
    cr_assert_eq(weft__stack_get(&b, 256 * 1024), 0);
    cr_assert_geq(b->size, (size_t)256 * 1024);
    /* The first size back must not keep the other out. */
    weft__stack_put(b);
    weft__stack_put(a);
    cr_assert_eq(weft__stack_pool_count(NULL), 2u);
    cr_assert_eq(weft__stack_get(&c, 64 * 1024), 0);
    cr_assert_eq(c, a, "a 64 KiB stack was mapped anew instead of reused");
    cr_assert_eq(weft__stack_get(&d, 256 * 1024), 0);
    cr_assert_eq(d, b, "a 256 KiB stack was mapped anew instead of reused");
    cr_assert_eq(weft__stack_pool_count(NULL), 0u);
    weft__stack_put(c);
    weft__stack_put(d);
    weft__stack_pool_drain();
}

/* A program with many sizes pools a few of them, not an unbounded set. */
Test(stack, pooled_sizes_are_bounded, .timeout = 30)
{
    enum { N = SIZES + 3 };
    weft__stack *st[N];
    weft__stack_pool_drain();
    for (int i = 0; i < N; i++)
        cr_assert_eq(weft__stack_get(&st[i], (size_t)(i + 1) * 16 * 1024), 0);
    for (int i = 0; i < N; i++)
        weft__stack_put(st[i]);
    cr_assert_eq(weft__stack_pool_count(NULL), (size_t)SIZES);
    /* Once a size's list is empty again another size can have it. */
    weft__stack *x;
    cr_assert_eq(weft__stack_get(&x, 16 * 1024), 0);
    cr_assert_eq(x, st[0]);
    cr_assert_eq(weft__stack_get(&st[N - 1], (size_t)N * 16 * 1024), 0);
    weft__stack_put(st[N - 1]);
    cr_assert_eq(weft__stack_pool_count(NULL), (size_t)SIZES);
    weft__stack_put(x);
    cr_assert_eq(weft__stack_pool_count(NULL), (size_t)SIZES, "x's size lost its list");
    weft__stack_pool_drain();
}

/* ---- through the public API: spawns after a coroutine of another size ---- */

static void nop(void *arg)
{
    (void)arg;
}

static size_t other_size;
static unsigned long maps_default, maps_mixed;

static int reuse_main(void *arg)
{
    (void)arg;
    weft_co_opts big = {.stack_size = other_size};
    /* The other size's stack is the first one back in the pool. */
    weft_join(weft_go_opts(nop, NULL, &big), -1);
    weft_fault_clear();
    for (int i = 0; i < 100; i++)
        weft_join(weft_go(nop, NULL), -1);
    maps_default = weft_fault_calls(WEFT_FAULT_MMAP);
    weft_fault_clear();
    for (int i = 0; i < 50; i++) {
        weft_join(weft_go_opts(nop, NULL, &big), -1);
        weft_join(weft_go(nop, NULL), -1);
    }
    maps_mixed = weft_fault_calls(WEFT_FAULT_MMAP);
    return 0;
}

/* Stacks are mapped through the fault seam, which counts the calls. */
static void expect_reuse_after(size_t size)
{
    other_size = size;
    cr_assert_eq(weft_main(reuse_main, NULL, NULL), 0);
    cr_expect_leq(maps_default, 1ul,
                  "100 default spawns after a %zu KiB coroutine mapped %lu stacks", size / 1024,
                  maps_default);
    cr_expect_eq(maps_mixed, 0ul, "alternating %zu KiB and default spawns mapped %lu stacks",
                 size / 1024, maps_mixed);
}

Test(stack, default_spawns_reuse_stacks_after_a_256k_coroutine, .timeout = 30)
{
    expect_reuse_after(256 * 1024);
}

Test(stack, default_spawns_reuse_stacks_after_a_1m_coroutine, .timeout = 30)
{
    expect_reuse_after(1024 * 1024);
}

/* The layout the overflow handler relies on (test_overflow shows the guard
 * itself at work). */
Test(stack, record_above_usable_part_guard_below, .timeout = 30)
{
    weft__stack *a;
    cr_assert_eq(weft__stack_get(&a, 64 * 1024), 0);
    cr_assert_geq(a->guard, (size_t)sysconf(_SC_PAGESIZE));
    cr_assert_eq((uintptr_t)(a->base + a->guard) % (uintptr_t)sysconf(_SC_PAGESIZE), 0u);
    cr_assert_eq((char *)a, a->base + a->guard + a->size, "the record sits above the usable part");
    weft__stack_put(a);
    weft__stack_pool_drain();
}

/* A 1 MiB frame on a small stack must land in the guard, not below it: in
 * the mapping under it, often another coroutine's stack. */
Test(stack, guard_holds_a_1m_frame, .timeout = 30)
{
    weft__stack *a;
    cr_assert_eq(weft__stack_get(&a, 16 * 1024), 0);
    cr_assert_geq(a->guard, (size_t)1 << 20, "guard of %zu KiB", a->guard / 1024);
    /* Address space only: reading the guard faults, so ask the kernel. */
    unsigned char vec[1];
    cr_assert_eq(mincore(a->base, (size_t)sysconf(_SC_PAGESIZE), vec), 0);
    cr_assert_eq(vec[0] & 1, 0, "a guard page is resident");
    weft__stack_put(a);
    weft__stack_pool_drain();
}

/* ---- the default stack ----------------------------------------------------- */

static weft_sock *pair[2];
static int buf_rc = -1;

/* What a new user writes: a 64 KiB buffer on the stack, filled by a read. */
static void read_64k(void *arg)
{
    (void)arg;
    char buf[65536];
    memset(buf, 0x5a, sizeof buf);
    for (size_t got = 0; got < sizeof buf;) {
        ssize_t n = weft_recv(pair[0], buf + got, sizeof buf - got, 5000);
        if (n <= 0) {
            buf_rc = n < 0 ? (int)n : -EIO;
            return;
        }
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof buf; i++)
        if (buf[i] != (char)(i * 7)) {
            buf_rc = -EBADMSG;
            return;
        }
    buf_rc = 0;
}

static void write_64k(void *arg)
{
    (void)arg;
    static char out[65536];
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (char)(i * 7);
    weft_send(pair[1], out, sizeof out, 5000);
}

static int buf_main(void *arg)
{
    (void)arg;
    if (weft_socketpair(pair, SOCK_STREAM) < 0)
        return -1;
    int64_t r = weft_go(read_64k, NULL);
    int64_t w = weft_go(write_64k, NULL);
    weft_join(r, -1);
    weft_join(w, -1);
    weft_close(pair[0]);
    weft_close(pair[1]);
    return 0;
}

/* An overflow here aborts the test's process with the overflow report. */
Test(stack, default_stack_holds_a_64k_buffer, .timeout = 30)
{
    cr_assert_eq(weft_main(buf_main, NULL, NULL), 0);
    cr_assert_eq(buf_rc, 0, "%s", weft_err_name(buf_rc));
}
