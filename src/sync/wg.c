/*
 * wg.c - wait groups: a counter of work outstanding and the waiters for it
 * to reach zero (Go's sync.WaitGroup, co's WaitGroup).
 *
 * The counter never goes below zero: a done too many is refused with an
 * error and changes nothing, where Go would panic.
 */
#include "sync.h"

#include <limits.h>

struct weft_wg {
    const void *home;
    int count;
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

int weft_wg_add(weft_wg *g, int n)
{
    if (!g)
        return -EINVAL;
    int rc = weft__sync_enter(&g->home);
    if (rc < 0)
        return rc;
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

int weft_wg_wait(weft_wg *g, int64_t timeout_ms)
{
    if (!g)
        return -EINVAL;
    int rc = weft__sync_enter(&g->home);
    if (rc < 0)
        return rc;
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
    if (!weft__sync_idle(&g->q))
        return -EBUSY;
    free(g);
    return 0;
}
