/*
 * cond.c - condition variables for weft's mutexes.
 *
 * A wait lets the mutex go and queues, in one step (nothing else runs in
 * between, so a signal cannot fall between them), then takes the mutex
 * back whatever ended the wait: a signal, the deadline, a cancel.  A
 * signal goes to the first waiter still waiting; one that left early is
 * skipped, so no signal is lost on it.
 */
#include "sync.h"

struct weft_cond {
    const void *home;
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

int weft_cond_wait(weft_cond *c, weft_mutex *m, int64_t timeout_ms)
{
    if (!c || !m)
        return -EINVAL;
    int rc;
    if ((rc = weft__sync_enter(&c->home)) < 0 || (rc = weft__sync_enter(&m->home)) < 0)
        return rc;
    int64_t self = weft__sync_self();
    if (!m->locked || m->owner != self)
        return -EPERM;
    int64_t deadline = weft__deadline(timeout_ms);
    weft__sync_entry e;
    weft__sync_waiter w;
    weft__sync_waiter_init(&w, &e, 1);
    weft__sync_link(&c->q, &e);
    weft__mutex_release(m);
    rc = weft__sync_block(&w, deadline);
    if (w.done)
        rc = 0;
    else
        weft__sync_leave(&w);
    weft__mutex_relock(m, self);
    return rc;
}

int weft_cond_signal(weft_cond *c)
{
    if (!c)
        return -EINVAL;
    int rc = weft__sync_enter(&c->home);
    if (rc < 0)
        return rc;
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
    if (rc < 0)
        return rc;
    weft__sync_entry *e;
    while ((e = weft__sync_first(&c->q)))
        weft__sync_complete(e, 0);
    return 0;
}

int weft_cond_free(weft_cond *c)
{
    if (!c)
        return 0;
    if (!weft__sync_idle(&c->q))
        return -EBUSY;
    free(c);
    return 0;
}
