/*
 * sem.c - counting semaphores with FIFO hand-off.
 *
 * A release with waiters gives its permit straight to the first of them,
 * so the count stays zero while anyone waits and a newcomer cannot take a
 * permit ahead of them; a waiter that left early is skipped and never
 * takes one.  A shared semaphore does the same under its lock.
 */
#include "sync.h"

#include <limits.h>

struct weft_sem {
    const void *home;
    unsigned count;
    weft__lock lock;    /* shared semaphores only */
    weft__sync_queue q; /* waiting for a permit, first come first served */
};

int weft_sem_new(weft_sem **out, unsigned count)
{
    if (!out)
        return -EINVAL;
    weft_sem *s = weft__sys_malloc(sizeof *s);
    if (!s)
        return -ENOMEM;
    *s = (weft_sem){.home = weft__sync_home_new(), .count = count};
    *out = s;
    return 0;
}

static __attribute__((noinline)) int acquire_shared(weft_sem *s, int64_t timeout_ms)
{
    int rc = 0;
    weft__lock_take(&s->lock);
    if (s->count > 0) {
        s->count--;
    } else {
        weft__sync_entry e;
        weft__sync_xwaiter xw;
        weft__sync_waiter *w = &xw.w;
        weft__sync_waiter_init(w, &e, 1);
        weft__sync_link(&s->q, &e);
        weft__lock *lk = &s->lock;
        return weft__sync_wait_shared(w, &lk, 1, weft__sync_deadline(w, timeout_ms));
    }
    weft__lock_give(&s->lock);
    return rc;
}

int weft_sem_acquire(weft_sem *s, int64_t timeout_ms)
{
    if (!s)
        return -EINVAL;
    int rc = weft__sync_enter(&s->home);
    if (rc)
        return rc < 0 ? rc : acquire_shared(s, timeout_ms);
    if (s->count > 0) {
        s->count--;
        return 0;
    }
    weft__sync_entry e;
    weft__sync_waiter w;
    weft__sync_waiter_init(&w, &e, 1);
    weft__sync_link(&s->q, &e);
    rc = weft__sync_block(&w, weft__sync_deadline(&w, timeout_ms));
    if (w.done)
        return 0;
    weft__sync_leave(&w);
    return rc;
}

static __attribute__((noinline)) int release_shared(weft_sem *s)
{
    int rc = 0;
    weft__lock_take(&s->lock);
    weft__sync_entry *e = weft__sync_claim_first(&s->q, &rc);
    if (e) {
        weft__sync_finish(e, 0);
    } else if (rc < 0) {
        /* -ENOMEM: nothing changed */
    } else if (s->count == UINT_MAX) {
        rc = -EOVERFLOW;
    } else {
        s->count++;
    }
    weft__lock_give(&s->lock);
    return rc;
}

int weft_sem_release(weft_sem *s)
{
    if (!s)
        return -EINVAL;
    int rc = weft__sync_enter(&s->home);
    if (rc)
        return rc < 0 ? rc : release_shared(s);
    weft__sync_entry *e = weft__sync_first(&s->q);
    if (e) {
        weft__sync_complete(e, 0);
        return 0;
    }
    if (s->count == UINT_MAX)
        return -EOVERFLOW;
    s->count++;
    return 0;
}

int weft_sem_free(weft_sem *s)
{
    if (!s)
        return 0;
    if (weft__sync_is_shared(s->home)) {
        weft__lock_take(&s->lock);
        bool busy = s->q.head != NULL;
        weft__lock_give(&s->lock);
        if (busy)
            return -EBUSY;
    } else if (!weft__sync_idle(&s->q)) {
        return -EBUSY;
    }
    free(s);
    return 0;
}
