/*
 * mutex.c - a coroutine mutex with FIFO hand-off.
 *
 * Unlocking with waiters gives the mutex to the first of them, which holds
 * it from that moment, before it even runs: nobody can barge in between,
 * so waiters are served in the order they came.  A waiter that leaves
 * early (deadline, cancel) is skipped (sync.h), so the mutex never goes to
 * a caller that is no longer there to unlock it.  Uncontended, lock and
 * unlock are a check of the caller's thread and a few stores.
 */
#include "sync.h"

int weft_mutex_new(weft_mutex **out)
{
    if (!out)
        return -EINVAL;
    weft_mutex *m = weft__sys_malloc(sizeof *m);
    if (!m)
        return -ENOMEM;
    *m = (weft_mutex){.home = weft__sync_home_new()};
    *out = m;
    return 0;
}

/* Waits for the mutex; the unlocker makes the caller the owner. */
static int lock_wait(weft_mutex *m, int64_t deadline)
{
    weft__sync_entry e;
    weft__sync_waiter w;
    weft__sync_waiter_init(&w, &e, 1);
    w.id = w.co ? w.co->id : 0;
    weft__sync_link(&m->q, &e);
    int rc = weft__sync_block(&w, deadline);
    if (w.done)
        return 0;
    weft__sync_leave(&w);
    return rc;
}

int weft_mutex_lock(weft_mutex *m, int64_t timeout_ms)
{
    if (WEFT__UNLIKELY(!m))
        return -EINVAL;
    int rc = weft__sync_enter(&m->home);
    if (WEFT__UNLIKELY(rc < 0))
        return rc;
    int64_t self = weft__sync_self();
    if (WEFT__LIKELY(!m->locked)) {
        m->locked = true;
        m->owner = self;
        return 0;
    }
    if (m->owner == self)
        return -EDEADLK;
    return lock_wait(m, weft__deadline(timeout_ms));
}

void weft__mutex_release(weft_mutex *m)
{
    weft__sync_entry *e = weft__sync_first(&m->q);
    if (WEFT__LIKELY(!e)) {
        m->locked = false;
        return;
    }
    m->owner = e->w->id;
    weft__sync_complete(e, 0);
}

int weft_mutex_unlock(weft_mutex *m)
{
    if (WEFT__UNLIKELY(!m))
        return -EINVAL;
    int rc = weft__sync_enter(&m->home);
    if (WEFT__UNLIKELY(rc < 0))
        return rc;
    if (WEFT__UNLIKELY(!m->locked || m->owner != weft__sync_self()))
        return -EPERM;
    weft__mutex_release(m);
    return 0;
}

/* True if the holder can never unlock: a coroutine that has finished, or
 * the thread itself (owner 0) while it is freeing the loop. */
static bool holder_gone(weft_loop *l, int64_t owner)
{
    return owner ? !weft__co_find(l, owner) : l->closing;
}

void weft__mutex_relock(weft_mutex *m, int64_t self)
{
    bool cancelled = false;
    weft__co *co = weft__current();
    for (;;) {
        weft_loop *l = weft__tls_loop;
        if (!m->locked || !l || holder_gone(l, m->owner)) {
            /* No loop: only this thread uses m, so nobody else holds it. */
            m->locked = true;
            m->owner = self;
            break;
        }
        int rc = lock_wait(m, WEFT__NEVER);
        if (rc == 0)
            break;
        if (rc == -ECANCELED) {
            cancelled = true;
            if (l->closing && co) {
                /* Being freed, the loop refuses every wait: yield until
                 * the holder, cancelled too, has let go. */
                weft__ready(l, co);
                weft__fiber_suspend(&co->fiber, &l->sched);
            }
        }
        /* -EDEADLK: outside a coroutine with none left, so the holder has
         * finished: the next round takes it over. */
    }
    if (cancelled)
        weft__sync_cancel_later(co);
}

int weft_mutex_free(weft_mutex *m)
{
    if (!m)
        return 0;
    if (m->locked || !weft__sync_idle(&m->q))
        return -EBUSY;
    free(m);
    return 0;
}
