/*
 * test_stack.c - coroutine stacks: the per-thread pool keeps a few warm
 * stacks, gives the pages of the next ones back to the system (so a spike
 * of connections does not pin its memory afterwards), and unmaps beyond
 * that.  Uses the library's internals (the static testing build).
 */
#include "internal.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define HOT 64     /* src/coro/stack.c POOL_HOT */
#define COLD 1024  /* src/coro/stack.c POOL_MAX */

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

Test(stack, pool_gives_memory_back_after_a_spike, .timeout = 90)
{
    enum { N = 300, SIZE = 64 * 1024 };
    static weft__stack *st[N];
    weft__stack_pool_drain();
    for (int i = 0; i < N; i++) {
        cr_assert_eq(weft__stack_get(&st[i], SIZE), 0);
        cr_assert_geq(st[i]->size, (size_t)SIZE);
        touch(st[i]);
    }
    long busy = rss_kib();
    for (int i = 0; i < N; i++)
        weft__stack_put(st[i]);
    long after = rss_kib();
    size_t resident;
    cr_assert_eq(weft__stack_pool_count(&resident), (size_t)N, "all kept mapped");
    cr_assert_eq(resident, (size_t)HOT, "only the warm ones keep their pages");
    /* The cold ones gave back all but their top page: about 60 KiB each. */
    long freed = busy - after, expect = (long)(N - HOT) * (SIZE / 1024 - 4);
    cr_assert_gt(freed, expect * 3 / 4, "RSS fell by %ld KiB, expected about %ld", freed, expect);

    /* Reuse comes from the pool, warm ones first, and works on cold ones. */
    weft__stack *a;
    cr_assert_eq(weft__stack_get(&a, SIZE), 0);
    cr_assert_eq(weft__stack_pool_count(&resident), (size_t)N - 1);
    cr_assert_eq(resident, (size_t)HOT - 1);
    touch(a);
    weft__stack_put(a);
    weft__stack_pool_drain();
    cr_assert_eq(weft__stack_pool_count(&resident), 0u);
    cr_assert_eq(resident, 0u);
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

Test(stack, other_sizes_are_not_pooled_with_the_default, .timeout = 30)
{
    weft__stack *a, *b;
    weft__stack_pool_drain();
    cr_assert_eq(weft__stack_get(&a, 64 * 1024), 0);
    weft__stack_put(a);
    cr_assert_eq(weft__stack_pool_count(NULL), 1u);
    /* A different size neither takes the pooled stack nor joins the pool. */
    cr_assert_eq(weft__stack_get(&b, 256 * 1024), 0);
    cr_assert_geq(b->size, (size_t)256 * 1024);
    cr_assert_eq(weft__stack_pool_count(NULL), 1u);
    weft__stack_put(b);
    cr_assert_eq(weft__stack_pool_count(NULL), 1u);
    weft__stack_pool_drain();
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
