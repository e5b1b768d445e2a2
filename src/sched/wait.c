/*
 * wait.c - parking and waking coroutines.
 *
 * A parked coroutine is described by a weft__wait on its own stack, linked
 * on at most two queues (a socket's readers and writers, say) and, with a
 * deadline, in the loop's timer heap.  Whoever wakes it first (I/O, the
 * timer, a cancel, a close) unlinks it from all of them, so each wait ends
 * exactly once and nothing refers to it after it returns.
 */
#include "internal.h"

#include <time.h>

__thread int64_t weft__tls_now;

int64_t weft__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return weft__tls_now = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t weft_now(void)
{
    return weft__now_ns() / WEFT__NS_PER_MS;
}

int64_t weft__deadline(int64_t timeout_ms)
{
    int64_t d;
    if (timeout_ms == -1) {
        d = WEFT__NEVER;
    } else if (timeout_ms <= 0) {
        d = 0; /* already passed: only try */
    } else {
        int64_t now = weft__now_ns();
        d = timeout_ms > (WEFT__NEVER - now) / WEFT__NS_PER_MS ? WEFT__NEVER
                                                                : now + timeout_ms * WEFT__NS_PER_MS;
    }
    weft__co *co = weft__current();
    if (co && co->deadline < d)
        d = co->deadline;
    return d;
}

static void q_append(weft__waitq *q, weft__wait *w)
{
    w->q = q;
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
}

static void q_unlink(weft__wait *w)
{
    weft__waitq *q = w->q;
    if (!q)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->q = NULL;
    w->next = w->prev = NULL;
}

void weft__ready(weft_loop *l, weft__co *co)
{
    co->state = WEFT__CO_READY;
    co->run_next = NULL;
    if (l->runq_tail)
        l->runq_tail->run_next = co;
    else
        l->runq_head = co;
    l->runq_tail = co;
    /* Made ready from outside a step (weft_go or weft_cancel called by an
     * embedder): weft_loop_fd must say there is work. */
    if (WEFT__UNLIKELY(l->want_fd && !l->in_step))
        weft_loop_wake(l);
}

int weft__park2(weft__wait *w, weft__waitq *q, weft__wait *twin, weft__waitq *twin_q,
                int64_t deadline)
{
    weft_loop *l = weft__tls_loop;
    weft__co *co = l->current;
    /* The number weft__wait_here gave out is this wait's even when it ends
     * at once: a wake queued for it must not reach the next wait. */
    uint64_t seq = ++l->wait_seq;

    if (WEFT__UNLIKELY(co->cancel_pending || l->closing)) {
        co->cancel_pending = false;
        return -ECANCELED;
    }
    if (weft__passed(deadline))
        return -ETIMEDOUT;
    w->co = co;
    w->seq = seq;
    w->tm.deadline = deadline;
    w->tm.heap_idx = SIZE_MAX;
    w->tm.fire = NULL;
    w->q = NULL;
    w->twin = twin;
    w->result = 0;
    w->woken = false;
    if (deadline != WEFT__NEVER && weft__timer_add(&l->timers, &w->tm) < 0)
        return -ENOMEM;
    if (q)
        q_append(q, w);
    if (twin) {
        *twin = (weft__wait){ .tm.heap_idx = SIZE_MAX, .co = co, .twin = w };
        q_append(twin_q, twin);
    }
    co->wait = w;
    co->state = WEFT__CO_WAITING;
    weft__fiber_suspend(&co->fiber, &l->sched);
    co->wait = NULL;
    return w->result;
}

int weft__park(weft__wait *w, weft__waitq *q, int64_t deadline)
{
    return weft__park2(w, q, NULL, NULL, deadline);
}

void weft__wake(weft__wait *w, int result)
{
    if (w->woken)
        return;
    weft__wait *twin = w->twin;
    /* Results are kept in the primary entry, the one park2 returns from. */
    weft__wait *primary = (twin && twin->co->wait == twin) ? twin : w;
    if (twin) {
        twin->woken = true;
        q_unlink(twin);
    }
    w->woken = true;
    q_unlink(w);
    primary->result = result;
    weft_loop *l = weft__tls_loop;
    if (primary->tm.heap_idx != SIZE_MAX)
        weft__timer_del(&l->timers, &primary->tm);
    weft__ready(l, primary->co);
}

void weft__wake_all(weft__waitq *q, int result)
{
    while (q->head)
        weft__wake(q->head, result);
}

void weft__park_hard(weft__wait *w)
{
    weft_loop *l = weft__tls_loop;
    weft__co *co = l->current;
    /* Not co->wait: weft_cancel then leaves the cancel pending instead. */
    *w = (weft__wait){ .co = co, .seq = ++l->wait_seq, .tm.deadline = WEFT__NEVER,
                       .tm.heap_idx = SIZE_MAX };
    co->state = WEFT__CO_WAITING;
    weft__fiber_suspend(&co->fiber, &l->sched);
}
