/*
 * stack.c - coroutine stacks: mmap'd, guard pages below, pooled per thread.
 *
 * Only the pages a coroutine touches cost memory (MAP_NORESERVE, demand
 * paging).  A finished coroutine's stack goes back to this thread's pool so
 * the next spawn costs no syscall.  The first POOL_HOT stacks in the pool
 * keep their pages; the next ones up to POOL_MAX are kept mapped but their
 * pages are handed back (madvise), and beyond that they are unmapped, so a
 * spike of connections does not pin its memory afterwards.
 */
#include "internal.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef WEFT_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#endif

#define GUARD_BYTES (16 * 1024)
#define POOL_HOT 64
#define POOL_MAX 1024

typedef struct pool {
    weft__stack *hot;  /* pages still resident */
    weft__stack *cold; /* pages given back */
    size_t nhot, ncold;
} pool;

static __thread pool tls_pool;

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

int weft__stack_get(weft__stack **out, size_t size)
{
    pool *p = &tls_pool;
    size_t bytes = round_size(size);
    size_t usable = bytes - record_bytes();

    /* Pooled stacks all have the default size; take one if it fits. */
    weft__stack **from = p->hot ? &p->hot : &p->cold;
    if (*from && (*from)->size == usable) {
        weft__stack *st = *from;
        *from = st->next;
        if (from == &p->hot)
            p->nhot--;
        else
            p->ncold--;
        st->next = NULL;
        st->requested = size;
        *out = st;
        return 0;
    }
    char *base = weft__sys_mmap(NULL, GUARD_BYTES + bytes, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED)
        return -ENOMEM;
    if (mprotect(base, GUARD_BYTES, PROT_NONE) != 0) {
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
    pool *p = &tls_pool;
    weft__stack *any = p->hot ? p->hot : p->cold;
    if (any && any->size != st->size) {
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
    pool *p = &tls_pool;
    drain(&p->hot);
    drain(&p->cold);
    p->nhot = p->ncold = 0;
}

size_t weft__stack_pool_count(size_t *resident)
{
    if (resident)
        *resident = tls_pool.nhot;
    return tls_pool.nhot + tls_pool.ncold;
}
