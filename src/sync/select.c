/*
 * select.c - waiting on several channel operations at once.
 *
 * First a pass that completes one case that can go at once, chosen at
 * random among all that can (each ready case is kept with probability
 * 1/k as the k-th is met), so no case starves however the cases are
 * ordered.  Otherwise one waiter with an entry per case, linked on every
 * channel: the first counterpart to arrive completes its entry and
 * unlinks the others (sync.h), so exactly one case happens.
 *
 * With shared channels among the cases (Go's selectgo): their locks are
 * taken in address order, each once, and held through both the pass and
 * the linking; the waiter is completed by whichever channel claims it
 * first, and unlinks its other entries itself once it has every lock
 * back.  Local channels may be mixed in: they belong to the caller's
 * thread, so only its own coroutines complete them, and they claim the
 * waiter the same way.
 */
#include "sync.h"

#include <stdint.h>

#define SELECT_MAX 65536
#define STACK_ENTRIES 8 /* selects this small need no allocation */

/* xorshift64*, per thread, seeded from the clock and the thread. */
static __thread uint64_t rng;

static uint32_t rand_below(uint32_t n)
{
    uint64_t x = rng;
    if (WEFT__UNLIKELY(!x))
        x = (uint64_t)weft__now_ns() ^ (uint64_t)(uintptr_t)&rng ^ 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng = x;
    return (uint32_t)(((x * 0x2545F4914F6CDD1Dull) >> 32) * n >> 32);
}

static int cmp_lock(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (weft__lock *const *)a, y = (uintptr_t) * (weft__lock *const *)b;
    return x < y ? -1 : x > y;
}

/* The locks of the shared channels among the cases, each once, in address
 * order (so two selects never wait for each other's).  Returns how many. */
static int lock_order(weft_select_case *cases, int n, weft__lock **locks)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (cases[i].chan && weft__sync_is_shared(cases[i].chan->home))
            locks[k++] = &cases[i].chan->lock;
    if (k <= 16) {
        for (int i = 1; i < k; i++)
            for (int j = i; j > 0 && (uintptr_t)locks[j - 1] > (uintptr_t)locks[j]; j--) {
                weft__lock *t = locks[j];
                locks[j] = locks[j - 1];
                locks[j - 1] = t;
            }
    } else {
        qsort(locks, (size_t)k, sizeof *locks, cmp_lock);
    }
    int d = 0;
    for (int i = 0; i < k; i++)
        if (!d || locks[d - 1] != locks[i])
            locks[d++] = locks[i];
    return d;
}

static bool case_ready(const weft_select_case *k)
{
    return weft__sync_is_shared(k->chan->home) ? weft__chan_ready_locked(k->chan, k->op)
                                               : weft__chan_ready(k->chan, k->op);
}

static int case_try(weft_select_case *k)
{
    bool shared = weft__sync_is_shared(k->chan->home);
    if (k->op == WEFT_CHAN_SEND)
        return shared ? weft__chan_try_send_locked(k->chan, k->elem)
                      : weft__chan_try_send(k->chan, k->elem);
    return shared ? weft__chan_try_recv_locked(k->chan, k->elem)
                  : weft__chan_try_recv(k->chan, k->elem);
}

static void give_locks(weft__lock **locks, int n)
{
    for (int i = n - 1; i >= 0; i--)
        weft__lock_give(locks[i]);
}

/* After a completion: unlinks w's entries still linked, each under its
 * channel's lock (those channels are still in use, so alive; the one that
 * completed it may already be freed and is not touched unless another
 * entry of w is on it).  Local channels are this thread's. */
static weft__lock *lock_of(const weft_select_case *cases, const weft__sync_entry *e)
{
    weft_chan *c = cases[e->idx].chan;
    return weft__sync_is_shared(c->home) ? &c->lock : NULL;
}

static void leave_rest(const weft_select_case *cases, weft__sync_waiter *w, weft__lock **locks,
                       int nlocks)
{
    weft__sync_entry *e = w->entries;
    for (int i = 0; i < nlocks; i++) {
        bool any = false;
        for (int j = 0; j < w->n && !any; j++)
            any = e[j].q && lock_of(cases, &e[j]) == locks[i];
        if (!any)
            continue;
        weft__lock_take(locks[i]);
        for (int j = 0; j < w->n; j++)
            if (lock_of(cases, &e[j]) == locks[i])
                weft__sync_unlink(&e[j]);
        weft__lock_give(locks[i]);
    }
    for (int j = 0; j < w->n; j++)
        if (!lock_of(cases, &e[j]))
            weft__sync_unlink(&e[j]);
}

/* weft_select with at least one shared channel among the active cases. */
static __attribute__((noinline)) int select_shared(weft_select_case *cases, int n, int active,
                                                   int64_t timeout_ms)
{
    weft__sync_entry stack_entries[STACK_ENTRIES], *e = stack_entries;
    weft__lock *stack_locks[STACK_ENTRIES], **locks = stack_locks;
    if (active > STACK_ENTRIES) {
        /* One allocation for both: entries first, they need the alignment. */
        e = weft__sys_malloc((size_t)active * (sizeof *e + sizeof *locks));
        if (!e)
            return -ENOMEM;
        locks = (weft__lock **)(e + active);
    }
    int nlocks = lock_order(cases, n, locks);
    for (int i = 0; i < nlocks; i++)
        weft__lock_take(locks[i]);

    int rc;
    for (;;) {
        int pick = -1;
        uint32_t ready = 0;
        for (int i = 0; i < n; i++)
            if (cases[i].chan && case_ready(&cases[i]) && rand_below(++ready) == 0)
                pick = i;
        if (pick < 0)
            break;
        rc = case_try(&cases[pick]);
        /* -EAGAIN: its counterpart was a select that another channel has
         * completed since; look again. */
        if (rc == -EAGAIN)
            continue;
        if (rc == 0 || rc == -EPIPE) {
            cases[pick].result = rc;
            rc = pick;
        }
        goto out;
    }

    weft__sync_xwaiter xw;
    weft__sync_waiter *w = &xw.w;
    weft__sync_waiter_init(w, e, active);
    xw.shared = true;
    xw.claimed = 0;
    for (int i = 0, j = 0; i < n; i++) {
        weft_chan *c = cases[i].chan;
        if (!c)
            continue;
        e[j].elem = cases[i].elem;
        e[j].idx = i;
        weft__sync_link(cases[i].op == WEFT_CHAN_SEND ? &c->sendq : &c->recvq, &e[j]);
        j++;
    }
    rc = weft__sync_wait_shared(w, locks, nlocks, weft__sync_deadline(w, timeout_ms));
    if (rc == 0) {
        rc = w->done - 1;
        cases[rc].result = w->result;
        leave_rest(cases, w, locks, nlocks);
    }
    goto done; /* no lock held */
out:
    give_locks(locks, nlocks);
done:
    if (e != stack_entries)
        free(e);
    return rc;
}

int weft_select(weft_select_case *cases, int n, int64_t timeout_ms)
{
    if (n < 0 || n > SELECT_MAX || (n && !cases))
        return -EINVAL;
    int active = 0, shared = 0, rc;
    for (int i = 0; i < n; i++) {
        weft_chan *c = cases[i].chan;
        if (!c)
            continue; /* a case turned off */
        int op = cases[i].op;
        if (op != WEFT_CHAN_SEND && op != WEFT_CHAN_RECV)
            return -EINVAL;
        if (op == WEFT_CHAN_SEND && !cases[i].elem && c->elem_size)
            return -EINVAL;
        if ((rc = weft__sync_enter(&c->home)) < 0)
            return rc;
        shared |= rc;
        active++;
    }
    if (WEFT__UNLIKELY(shared))
        return select_shared(cases, n, active, timeout_ms);

    int pick = -1;
    uint32_t ready = 0;
    for (int i = 0; i < n; i++)
        if (cases[i].chan && weft__chan_ready(cases[i].chan, cases[i].op) &&
            rand_below(++ready) == 0)
            pick = i;
    if (pick >= 0) {
        weft_select_case *k = &cases[pick];
        k->result = k->op == WEFT_CHAN_SEND ? weft__chan_try_send(k->chan, k->elem)
                                            : weft__chan_try_recv(k->chan, k->elem);
        return pick;
    }

    weft__sync_entry stack_entries[STACK_ENTRIES], *e = stack_entries;
    if (active > STACK_ENTRIES && !(e = weft__sys_malloc((size_t)active * sizeof *e)))
        return -ENOMEM;
    weft__sync_xwaiter xw; /* n > 1: completers read its claim */
    weft__sync_waiter *w = &xw.w;
    weft__sync_waiter_init(w, e, active);
    xw.shared = false;
    xw.claimed = 0;
    for (int i = 0, j = 0; i < n; i++) {
        weft_chan *c = cases[i].chan;
        if (!c)
            continue;
        e[j].elem = cases[i].elem;
        e[j].idx = i;
        weft__sync_link(cases[i].op == WEFT_CHAN_SEND ? &c->sendq : &c->recvq, &e[j]);
        j++;
    }
    rc = weft__sync_block(w, weft__sync_deadline(w, timeout_ms));
    if (w->done) {
        rc = w->done - 1; /* the case's index */
        cases[rc].result = w->result;
    } else {
        weft__sync_leave(w);
    }
    if (e != stack_entries)
        free(e);
    return rc;
}
