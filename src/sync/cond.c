/*
 * cond.c - condition variables for weft's mutexes.
 *
 * A wait lets the mutex go and queues, in one step (nothing else runs in
 * between, so a signal cannot fall between them), then takes the mutex
 * back whatever ended the wait: a signal, the deadline, a cancel.  A
 * signal goes to the first waiter still waiting; one that left early is
 * skipped, so no signal is lost on it.
 *
 * A shared condition's lock is held from the queueing through the letting
 * go of the mutex (the mutex's own lock is taken inside it, never the
 * other way round), so a signal from another thread cannot fall between
 * them either.  Either kind of condition works with either kind of mutex.
 */
#include "sync.h"

struct weft_cond {
    const void *home;
    weft__lock lock;    /* shared conditions only */
    weft__sync_queue q; /* waiting for a signal */
};

int weft_cond_new(weft_cond **out)
{
    if (!out)
        return -EINVAL;
    weft_cond *c = weft__sys_malloc(sizeof *c);
    if (!c)
        return -ENOMEM;
    *c = (weft_cond){.home = weft__sync_home_new()};
    *out = c;
    return 0;
}

static __attribute__((noinline)) int wait_shared(weft_cond *c, weft_mutex *m, int64_t timeout_ms)
{
    weft__lock_take(&c->lock);
    int64_t self;
    int rc = weft__mutex_let_go(m, &self);
    if (rc < 0) {
        weft__lock_give(&c->lock);
        return rc;
    }
    weft__sync_entry e;
    weft__sync_xwaiter xw;
    weft__sync_waiter *w = &xw.w;
    weft__sync_waiter_init(w, &e, 1);
    weft__sync_link(&c->q, &e);
    weft__lock *lk = &c->lock;
    rc = weft__sync_wait_shared(w, &lk, 1, weft__deadline(timeout_ms));
    weft__mutex_take_back(m, self);
    return rc;
}

int weft_cond_wait(weft_cond *c, weft_mutex *m, int64_t timeout_ms)
{
    if (!c || !m)
        return -EINVAL;
    int rc, crc;
    if ((crc = weft__sync_enter(&c->home)) < 0 || (rc = weft__sync_enter(&m->home)) < 0)
        return crc < 0 ? crc : rc;
    if (crc)
        return wait_shared(c, m, timeout_ms);
    int64_t deadline = weft__deadline(timeout_ms);
    int64_t self;
    if ((rc = weft__mutex_let_go(m, &self)) < 0)
        return rc;
    weft__sync_entry e;
    weft__sync_waiter w;
    weft__sync_waiter_init(&w, &e, 1);
    weft__sync_link(&c->q, &e);
    rc = weft__sync_block(&w, deadline);
    if (w.done)
        rc = 0;
    else
        weft__sync_leave(&w);
    weft__mutex_take_back(m, self);
    return rc;
}

/* Wakes the first waiter (all: every waiter) of a shared c.  Returns 0 or
 * -ENOMEM (a waiter of another loop could not be woken: it still waits). */
static int signal_shared(weft_cond *c, bool all)
{
    int rc = 0;
    weft__lock_take(&c->lock);
    for (weft__sync_entry *e = c->q.head, *next; e; e = next) {
        next = e->next;
        int k = weft__sync_claim_shared(e);
        if (k == 0)
            continue; /* leaving */
        if (k < 0) {
            rc = k;
            if (!all)
                break;
            continue;
        }
        weft__sync_finish(e, 0);
        if (!all)
            break;
    }
    weft__lock_give(&c->lock);
    return rc;
}

int weft_cond_signal(weft_cond *c)
{
    if (!c)
        return -EINVAL;
    int rc = weft__sync_enter(&c->home);
    if (rc)
        return rc < 0 ? rc : signal_shared(c, false);
    weft__sync_entry *e = weft__sync_first(&c->q);
    if (e)
        weft__sync_complete(e, 0);
    return 0;
}

int weft_cond_broadcast(weft_cond *c)
{
    if (!c)
        return -EINVAL;
    int rc = weft__sync_enter(&c->home);
    if (rc)
        return rc < 0 ? rc : signal_shared(c, true);
    weft__sync_entry *e;
    while ((e = weft__sync_first(&c->q)))
        weft__sync_complete(e, 0);
    return 0;
}

int weft_cond_free(weft_cond *c)
{
    if (!c)
        return 0;
    if (weft__sync_is_shared(c->home)) {
        weft__lock_take(&c->lock);
        bool busy = c->q.head != NULL;
        weft__lock_give(&c->lock);
        if (busy)
            return -EBUSY;
    } else if (!weft__sync_idle(&c->q)) {
        return -EBUSY;
    }
    free(c);
    return 0;
}
