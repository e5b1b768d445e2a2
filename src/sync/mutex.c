/*
 * mutex.c - a coroutine mutex with FIFO hand-off.
 *
 * Unlocking with waiters gives the mutex to the first of them, which holds
 * it from that moment, before it even runs: nobody can barge in between,
 * so waiters are served in the order they came.  A waiter that leaves
 * early (deadline, cancel) is skipped (sync.h), so the mutex never goes to
 * a caller that is no longer there to unlock it.  Uncontended, lock and
 * unlock are a check of the caller's thread and a few stores.
 *
 * A shared mutex does the same under its lock; its holder is told apart
 * across threads (weft__sync_self_shared), and a hand-off whose waiter
 * cannot be woken (-ENOMEM) leaves the mutex with the one unlocking.
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

/* ---- shared mutexes ------------------------------------------------------- */

/* Waits, m's lock held, until an unlock hands m to self; returns with the
 * lock let go. */
static int lock_wait_locked(weft_mutex *m, int64_t self, int64_t deadline)
{
    weft__sync_entry e;
    weft__sync_xwaiter xw;
    weft__sync_waiter *w = &xw.w;
    weft__sync_waiter_init(w, &e, 1);
    w->id = self;
    weft__sync_link(&m->q, &e);
    weft__lock *lk = &m->lock;
    return weft__sync_wait_shared(w, &lk, 1, deadline);
}

static __attribute__((noinline)) int lock_shared(weft_mutex *m, int64_t timeout_ms)
{
    int64_t self = weft__sync_self_shared();
    int rc = 0;
    weft__lock_take(&m->lock);
    if (!m->locked) {
        m->locked = true;
        m->owner = self;
    } else if (m->owner == self) {
        rc = -EDEADLK;
    } else {
        return lock_wait_locked(m, self, weft__deadline(timeout_ms));
    }
    weft__lock_give(&m->lock);
    return rc;
}

/* m's lock held, by its holder: hands m to the first waiter, or unlocks
 * it.  Returns 0 or -ENOMEM (the first waiter could not be woken: the
 * caller still holds m). */
static int release_locked(weft_mutex *m)
{
    int rc;
    weft__sync_entry *e = weft__sync_claim_first(&m->q, &rc);
    if (rc < 0)
        return rc;
    if (!e) {
        m->locked = false; /* waiters that are leaving stay linked until they have */
        return 0;
    }
    m->owner = e->w->id;
    weft__sync_finish(e, 0);
    return 0;
}

static __attribute__((noinline)) int unlock_shared(weft_mutex *m)
{
    int rc = -EPERM;
    weft__lock_take(&m->lock);
    if (m->locked && m->owner == weft__sync_self_shared())
        rc = release_locked(m);
    weft__lock_give(&m->lock);
    return rc;
}

/* ---- the calls -------------------------------------------------------------- */

int weft_mutex_lock(weft_mutex *m, int64_t timeout_ms)
{
    if (WEFT__UNLIKELY(!m))
        return -EINVAL;
    int rc = weft__sync_enter(&m->home);
    if (WEFT__UNLIKELY(rc))
        return rc < 0 ? rc : lock_shared(m, timeout_ms);
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

/* Lets a local m go: to the first waiter if any (it holds m from then
 * on), else unlocked.  The caller holds m. */
static void release(weft_mutex *m)
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
    if (WEFT__UNLIKELY(rc))
        return rc < 0 ? rc : unlock_shared(m);
    if (WEFT__UNLIKELY(!m->locked || m->owner != weft__sync_self()))
        return -EPERM;
    release(m);
    return 0;
}

/* ---- for conditions ------------------------------------------------------------- */

int weft__mutex_let_go(weft_mutex *m, int64_t *self)
{
    if (!weft__sync_is_shared(m->home)) {
        *self = weft__sync_self();
        if (!m->locked || m->owner != *self)
            return -EPERM;
        release(m);
        return 0;
    }
    *self = weft__sync_self_shared();
    return unlock_shared(m);
}

/* True if a local m's holder can never unlock: a coroutine that has
 * finished, or the thread itself (owner 0) while it is freeing the loop. */
static bool holder_gone(weft_loop *l, int64_t owner)
{
    return owner ? !weft__co_find(l, owner) : l->closing;
}

/* The same for a shared m, as far as this thread can tell: a coroutine of
 * this loop that has finished (ids carry their loop's number above bit
 * 40), or this thread itself while it is freeing its loop. */
static bool holder_gone_shared(weft_loop *l, int64_t owner)
{
    if (!l)
        return false;
    if (owner > 0)
        return (owner >> 40) == (l->id_base >> 40) && !weft__co_find(l, owner);
    return owner == -(int64_t)(uintptr_t)&weft__sync_mark && l->closing;
}

static void take_back_shared(weft_mutex *m, int64_t self)
{
    bool cancelled = false;
    weft__co *co = weft__current();
    weft__lock_take(&m->lock);
    for (;;) {
        weft_loop *l = weft__tls_loop;
        if (!m->locked || holder_gone_shared(l, m->owner)) {
            m->locked = true;
            m->owner = self;
            break;
        }
        int rc = lock_wait_locked(m, self, WEFT__NEVER);
        if (rc == 0)
            goto held; /* handed over; the lock let go */
        if (rc == -ECANCELED) {
            cancelled = true;
            if (l->closing && co) {
                /* As below: yield until the holder has let go. */
                weft__ready(l, co);
                weft__fiber_suspend(&co->fiber, &l->sched);
            }
        }
        weft__lock_take(&m->lock);
    }
    weft__lock_give(&m->lock);
held:
    if (cancelled)
        weft__sync_cancel_later(co);
}

void weft__mutex_take_back(weft_mutex *m, int64_t self)
{
    if (weft__sync_is_shared(m->home)) {
        take_back_shared(m, self);
        return;
    }
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
    if (weft__sync_is_shared(m->home)) {
        weft__lock_take(&m->lock);
        bool busy = m->locked || m->q.head != NULL;
        weft__lock_give(&m->lock);
        return busy ? -EBUSY : (free(m), 0);
    }
    if (m->locked || !weft__sync_idle(&m->q))
        return -EBUSY;
    free(m);
    return 0;
}
