/*
 * stack.c - coroutine stacks: mmap'd, a large guard below, pooled per
 * thread by size.
 *
 * Only the pages a coroutine touches cost memory (MAP_NORESERVE, demand
 * paging), and the guard costs only address space: it is PROT_NONE from the
 * start, never committed.  It is large so that a big frame lands in it and
 * faults instead of jumping it into the mapping below, often another
 * coroutine's stack.  A finished coroutine's stack goes back to this
 * thread's pool, to the list of its size, so the next spawn of that size
 * costs no syscall.  Per size, the first POOL_HOT stacks keep their pages;
 * the next ones up to POOL_MAX are kept mapped but their pages are handed
 * back (madvise), and beyond that they are unmapped, so a spike of
 * connections does not pin its memory afterwards.
 */
#include "internal.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef WEFT_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#endif

/* A frame up to about this size, from code built without
 * -fstack-clash-protection, still faults in the guard. */
#define GUARD_BYTES ((size_t)2 << 20)
#define POOL_HOT 64
#define POOL_MAX 1024
/* Sizes pooled at once; a stack of yet another size is unmapped when it
 * comes back, until one of these lists is empty again. */
#define POOL_SIZES 8

typedef struct pool {
    size_t size;       /* usable bytes of the stacks in this list */
    weft__stack *hot;  /* pages still resident */
    weft__stack *cold; /* pages given back */
    size_t nhot, ncold;
} pool;

static __thread pool tls_pools[POOL_SIZES];

static size_t page_size(void)
{
    static __thread size_t ps; /* per thread: no race, no atomics */
    if (!ps)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

/* The record sits in the last page-aligned slot at the top of the mapping. */
static size_t record_bytes(void)
{
    return (sizeof(weft__stack) + 63) & ~(size_t)63;
}

static size_t round_size(size_t size)
{
    size_t ps = page_size();
    return (size + record_bytes() + ps - 1) & ~(ps - 1);
}

static void unmap(weft__stack *st)
{
#ifdef WEFT_HAVE_VALGRIND
    VALGRIND_STACK_DEREGISTER(st->vg_id);
#endif
    munmap(st->base, st->guard + round_size(st->size));
}

/* The list for stacks of usable size, or NULL.  With claim, a list that is
 * empty becomes that size's when no list has it yet.  Inline, so that a
 * spawn looks its thread's pools up once (a call in position-independent
 * code), not once more per call of this. */
static inline __attribute__((always_inline)) pool *pool_of(size_t usable, bool claim)
{
    pool *empty = NULL;
    for (pool *p = tls_pools; p < tls_pools + POOL_SIZES; p++) {
        if (p->size == usable)
            return p;
        if (!empty && !p->hot && !p->cold)
            empty = p;
    }
    if (!claim || !empty)
        return NULL;
    empty->size = usable;
    return empty;
}

int weft__stack_get(weft__stack **out, size_t size)
{
    size_t bytes = round_size(size);
    size_t usable = bytes - record_bytes();

    pool *p = pool_of(usable, false);
    if (p && (p->hot || p->cold)) {
        weft__stack *st;
        if (p->hot) {
            st = p->hot;
            p->hot = st->next;
            p->nhot--;
        } else {
            st = p->cold;
            p->cold = st->next;
            p->ncold--;
        }
        st->next = NULL;
        st->requested = size;
        *out = st;
        return 0;
    }
    char *base = weft__sys_mmap(NULL, GUARD_BYTES + bytes, PROT_NONE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED)
        return -ENOMEM;
    if (mprotect(base + GUARD_BYTES, bytes, PROT_READ | PROT_WRITE) != 0) {
        /* Out of memory maps (vm.max_map_count): better no coroutine than
         * one without a guard. */
        munmap(base, GUARD_BYTES + bytes);
        return -ENOMEM;
    }
    weft__stack *st = (weft__stack *)(base + GUARD_BYTES + usable);
    st->base = base;
    st->guard = GUARD_BYTES;
    st->size = usable;
    st->requested = size;
    st->next = NULL;
#ifdef WEFT_HAVE_VALGRIND
    st->vg_id = VALGRIND_STACK_REGISTER(base + GUARD_BYTES, base + GUARD_BYTES + usable);
#else
    st->vg_id = 0;
#endif
    *out = st;
    return 0;
}

void weft__stack_put(weft__stack *st)
{
    pool *p = pool_of(st->size, true);
    if (!p) {
        unmap(st);
    } else if (p->nhot < POOL_HOT) {
        st->next = p->hot;
        p->hot = st;
        p->nhot++;
    } else if (p->ncold < POOL_MAX) {
        /* The record lives in the stack's top page: keep that page. */
        size_t ps = page_size();
        char *lo = st->base + st->guard;
        char *hi = (char *)((uintptr_t)st & ~(uintptr_t)(ps - 1));
        if (hi > lo)
            madvise(lo, (size_t)(hi - lo), MADV_DONTNEED);
        st->next = p->cold;
        p->cold = st;
        p->ncold++;
    } else {
        unmap(st);
    }
}

static void drain(weft__stack **head)
{
    while (*head) {
        weft__stack *st = *head;
        *head = st->next;
        unmap(st);
    }
}

void weft__stack_pool_drain(void)
{
    for (pool *p = tls_pools; p < tls_pools + POOL_SIZES; p++) {
        drain(&p->hot);
        drain(&p->cold);
        memset(p, 0, sizeof *p);
    }
}

size_t weft__stack_pool_count(size_t *resident)
{
    size_t all = 0, hot = 0;
    for (const pool *p = tls_pools; p < tls_pools + POOL_SIZES; p++) {
        all += p->nhot + p->ncold;
        hot += p->nhot;
    }
    if (resident)
        *resident = hot;
    return all;
}
