/*
 * event.c - events (co::Event): set from any thread, inside a loop or not,
 * waited on by coroutines of any loop and by plain threads.
 *
 * The one sync object that crosses threads today, so it has a lock.  A
 * waiter queues under it and records how to be woken: a coroutine by its
 * waiter id (weft__wake_from: its loop wakes it at its next step, only if
 * it is still in that very wait, so no pointer into its stack crosses
 * threads), a thread running its loop's steps by a wake of that loop, a
 * thread without a loop by the event's condition variable.  A set grants
 * waiters under the lock (the waiter's done flag), and the waiter reads
 * its flag under the lock when it resumes: a grant that raced with its
 * deadline or a cancel still counts (the signal is never lost; a cancel
 * is kept for the next call).
 */
#include "sync.h"

#include <pthread.h>

struct weft_event {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* threads without a loop wait on it */
    bool set;
    bool manual;        /* stays set until weft_event_reset */
    weft__sync_queue q; /* waiters, in the order they came */
};

int weft_event_new(weft_event **out, int manual_reset)
{
    if (!out)
        return -EINVAL;
    weft_event *e = weft__sys_malloc(sizeof *e);
    if (!e)
        return -ENOMEM;
    *e = (weft_event){.manual = manual_reset != 0};
    pthread_condattr_t a;
    int rc = pthread_condattr_init(&a);
    if (rc)
        goto fail;
    /* Deadlines are CLOCK_MONOTONIC, as everywhere in weft. */
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    rc = pthread_cond_init(&e->cond, &a);
    pthread_condattr_destroy(&a);
    if (rc)
        goto fail;
    if ((rc = pthread_mutex_init(&e->lock, NULL))) {
        pthread_cond_destroy(&e->cond);
        goto fail;
    }
    *out = e;
    return 0;
fail:
    free(e);
    return -rc;
}

/* A coroutine parks, the lock let go meanwhile. */
static int wait_parked(weft_event *e, weft__sync_waiter *w, int64_t deadline)
{
    w->who = weft__wait_here();
    pthread_mutex_unlock(&e->lock);
    int rc = weft__park(&w->park, NULL, deadline);
    pthread_mutex_lock(&e->lock);
    return rc;
}

/* Outside a coroutine on a thread with a loop: runs its steps, so that
 * its coroutines may set the event too; a set from elsewhere wakes it. */
static int wait_stepping(weft_event *e, weft__sync_waiter *w, weft_loop *l, int64_t deadline)
{
    w->who = (weft__waiter_id){.loop = l};
    while (!w->done) {
        int64_t ms = -1;
        if (deadline != WEFT__NEVER) {
            int64_t left = deadline - weft__now_ns();
            if (left <= 0)
                return -ETIMEDOUT;
            ms = (left + WEFT__NS_PER_MS - 1) / WEFT__NS_PER_MS;
        }
        pthread_mutex_unlock(&e->lock);
        int rc = weft_loop_poll(l, ms);
        pthread_mutex_lock(&e->lock);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* A thread without a loop. */
static int wait_thread(weft_event *e, weft__sync_waiter *w, int64_t deadline)
{
    w->who = (weft__waiter_id){.loop = NULL};
    while (!w->done) {
        if (deadline == WEFT__NEVER) {
            pthread_cond_wait(&e->cond, &e->lock);
            continue;
        }
        if (deadline <= weft__now_ns())
            return -ETIMEDOUT;
        struct timespec ts = {.tv_sec = (time_t)(deadline / 1000000000LL),
                              .tv_nsec = (long)(deadline % 1000000000LL)};
        pthread_cond_timedwait(&e->cond, &e->lock, &ts);
    }
    return 0;
}

int weft_event_wait(weft_event *e, int64_t timeout_ms)
{
    if (!e)
        return -EINVAL;
    int64_t deadline = weft__deadline(timeout_ms);
    weft_loop *l = weft__tls_loop;
    pthread_mutex_lock(&e->lock);
    if (e->set) {
        if (!e->manual)
            e->set = false;
        pthread_mutex_unlock(&e->lock);
        return 0;
    }
    weft__sync_entry en;
    weft__sync_waiter w;
    weft__sync_waiter_init(&w, &en, 1);
    weft__sync_link(&e->q, &en);
    int rc;
    if (w.co)
        rc = wait_parked(e, &w, deadline);
    else if (l)
        rc = wait_stepping(e, &w, l, deadline);
    else
        rc = wait_thread(e, &w, deadline);
    if (w.done) {
        if (rc == -ECANCELED)
            weft__sync_cancel_later(w.co);
        rc = 0;
    } else {
        weft__sync_leave(&w);
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
}

int weft_event_set(weft_event *e)
{
    if (!e)
        return -EINVAL;
    int rc = 0;
    bool broadcast = false;
    pthread_mutex_lock(&e->lock);
    e->set = true;
    weft__sync_entry *en;
    while (e->set && (en = e->q.head)) {
        weft__sync_waiter *w = en->w;
        if (w->co) {
            /* Its loop wakes it; the waiter cannot finish (nor its loop
             * be freed) before it has this lock again. */
            if ((rc = weft__wake_from(&w->who, 0)) < 0)
                break; /* stays queued and the event set: a later set retries */
        } else if (w->who.loop) {
            weft_loop_wake(w->who.loop);
        } else {
            broadcast = true;
        }
        weft__sync_unlink(en);
        w->done = 1;
        if (!e->manual)
            e->set = false;
    }
    if (broadcast)
        pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
    return rc;
}

int weft_event_reset(weft_event *e)
{
    if (!e)
        return -EINVAL;
    pthread_mutex_lock(&e->lock);
    e->set = false;
    pthread_mutex_unlock(&e->lock);
    return 0;
}

int weft_event_free(weft_event *e)
{
    if (!e)
        return 0;
    pthread_mutex_lock(&e->lock);
    bool busy = e->q.head != NULL;
    pthread_mutex_unlock(&e->lock);
    if (busy)
        return -EBUSY;
    pthread_cond_destroy(&e->cond);
    pthread_mutex_destroy(&e->lock);
    free(e);
    return 0;
}
