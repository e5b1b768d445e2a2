/*
 * wg.c - wait groups: a counter of work outstanding and the waiters for it
 * to reach zero (Go's sync.WaitGroup, co's WaitGroup).
 *
 * The counter never goes below zero: a done too many is refused with an
 * error and changes nothing, where Go would panic.  A shared wait group
 * does the same under its lock.
 */
#include "sync.h"

#include <limits.h>

struct weft_wg {
    const void *home;
    int count;
    weft__lock lock;    /* shared wait groups only */
    weft__sync_queue q; /* waiting for zero */
};

int weft_wg_new(weft_wg **out)
{
    if (!out)
        return -EINVAL;
    weft_wg *g = weft__sys_malloc(sizeof *g);
    if (!g)
        return -ENOMEM;
    *g = (weft_wg){.home = weft__sync_home_new()};
    *out = g;
    return 0;
}

/* Wakes every waiter of a shared g, at 0.  Returns 0 or -ENOMEM (a waiter
 * of another loop could not be woken: it still waits). */
static int wake_all_locked(weft_wg *g)
{
    int rc = 0;
    for (weft__sync_entry *e = g->q.head, *next; e; e = next) {
        next = e->next;
        int k = weft__sync_claim_shared(e);
        if (k > 0)
            weft__sync_finish(e, 0);
        else if (k < 0)
            rc = k;
    }
    return rc;
}

static __attribute__((noinline)) int add_shared(weft_wg *g, int n)
{
    weft__lock_take(&g->lock);
    long long v = (long long)g->count + n;
    int rc;
    if (v < 0) {
        rc = -EINVAL;
    } else if (v > INT_MAX) {
        rc = -EOVERFLOW;
    } else {
        g->count = (int)v;
        rc = g->count;
        /* At 0 also any waiter an earlier -ENOMEM left behind. */
        if (v == 0 && g->q.head)
            rc = wake_all_locked(g);
    }
    weft__lock_give(&g->lock);
    return rc;
}

int weft_wg_add(weft_wg *g, int n)
{
    if (!g)
        return -EINVAL;
    int rc = weft__sync_enter(&g->home);
    if (rc)
        return rc < 0 ? rc : add_shared(g, n);
    long long v = (long long)g->count + n;
    if (v < 0)
        return -EINVAL;
    if (v > INT_MAX)
        return -EOVERFLOW;
    g->count = (int)v;
    if (v == 0) {
        weft__sync_entry *e;
        while ((e = weft__sync_first(&g->q)))
            weft__sync_complete(e, 0);
    }
    return g->count;
}

int weft_wg_done(weft_wg *g)
{
    return weft_wg_add(g, -1);
}

static __attribute__((noinline)) int wait_shared(weft_wg *g, int64_t timeout_ms)
{
    int rc = 0;
    weft__lock_take(&g->lock);
    if (g->count) {
        weft__sync_entry e;
        weft__sync_xwaiter xw;
        weft__sync_waiter *w = &xw.w;
        weft__sync_waiter_init(w, &e, 1);
        weft__sync_link(&g->q, &e);
        weft__lock *lk = &g->lock;
        return weft__sync_wait_shared(w, &lk, 1, weft__sync_deadline(w, timeout_ms));
    }
    weft__lock_give(&g->lock);
    return rc;
}

int weft_wg_wait(weft_wg *g, int64_t timeout_ms)
{
    if (!g)
        return -EINVAL;
    int rc = weft__sync_enter(&g->home);
    if (rc)
        return rc < 0 ? rc : wait_shared(g, timeout_ms);
    if (g->count == 0)
        return 0;
    weft__sync_entry e;
    weft__sync_waiter w;
    weft__sync_waiter_init(&w, &e, 1);
    weft__sync_link(&g->q, &e);
    rc = weft__sync_block(&w, weft__sync_deadline(&w, timeout_ms));
    if (w.done)
        return 0;
    weft__sync_leave(&w);
    return rc;
}

int weft_wg_free(weft_wg *g)
{
    if (!g)
        return 0;
    if (weft__sync_is_shared(g->home)) {
        weft__lock_take(&g->lock);
        bool busy = g->q.head != NULL;
        weft__lock_give(&g->lock);
        if (busy)
            return -EBUSY;
    } else if (!weft__sync_idle(&g->q)) {
        return -EBUSY;
    }
    free(g);
    return 0;
}
