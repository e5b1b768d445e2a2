/*
 * shared.c - what shared sync objects need: their lock, completing a
 * waiter of any kind from any thread, and waiting with the locks let go.
 *
 * A waiter may be a coroutine of any loop, a thread running its loop's
 * steps outside any coroutine, or a plain thread; its record lives on its
 * stack.  One party claims it (sync.h).  A completer claims it under the
 * object's lock and then, while the waiter can still not return (done is
 * not yet published): wakes it by its loop (which cannot be freed before
 * the waiter's coroutine ends), writes the value and the result, unlinks
 * its entry, and publishes done last.  A plain thread sleeps on its done
 * word, so its futex wake comes after done; it waits for "released", the
 * completer's last write, before it returns.  A waiter that claims itself
 * first takes the locks back: its entries are still linked, so nobody
 * could free the objects meanwhile.
 */
#include "sync.h"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Tries before sleeping on a lock that is held: the sections it guards are
 * tens of nanoseconds, a sleep and a wake two system calls. */
#define SPINS 100

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static long futex(uint32_t *uaddr, int op, uint32_t val, const struct timespec *ts, uint32_t mask)
{
    return syscall(SYS_futex, uaddr, op, val, ts, NULL, mask);
}

/* ---- the lock (Drepper, "Futexes Are Tricky", mutex 3) -------------------- */

void weft__lock_wait(weft__lock *l)
{
    for (int i = 0; i < SPINS; i++) {
        cpu_relax();
        uint32_t z = 0;
        if (__atomic_load_n(l, __ATOMIC_RELAXED) == 0 &&
            __atomic_compare_exchange_n(l, &z, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return;
    }
    /* 2: whoever lets it go must wake a sleeper. */
    while (__atomic_exchange_n(l, 2, __ATOMIC_ACQUIRE) != 0)
        futex(l, FUTEX_WAIT_PRIVATE, 2, NULL, 0);
}

void weft__lock_wake(weft__lock *l)
{
    futex(l, FUTEX_WAKE_PRIVATE, 1, NULL, 0);
}

/* ---- completing -------------------------------------------------------------- */

/* Under the lock of an object w waits on, w claimed: wakes w if it needs a
 * wake before done is published (a coroutine, a thread running its loop:
 * their loop is alive only while they wait).  Returns 0 or -ENOMEM (a
 * coroutine of another loop: nothing was done). */
static int wake(weft__sync_waiter *w)
{
    weft_loop *here = weft__tls_loop;
    if (w->co) {
        /* On its own thread the waiter is parked or already woken: no other
         * code of this thread runs between its letting the lock go and its
         * park, nor between its wake and its looking at done. */
        if (w->who.loop == here) {
            weft__wake(&w->park, 0);
            return 0;
        }
        return weft__wake_from(&w->who, 0);
    }
    /* Running its loop's steps: a step on its own thread ends by itself. */
    if (w->who.loop && w->who.loop != here)
        weft_loop_wake(w->who.loop);
    /* A plain thread is woken once done is published (weft__sync_finish). */
    return 0;
}

int weft__sync_claim_shared(weft__sync_entry *e)
{
    weft__sync_waiter *w = e->w;
    if (!weft__sync_claim(w))
        return 0;
    if (wake(w) < 0) {
        __atomic_store_n(&weft__sync_x(w)->claimed, 0, __ATOMIC_RELEASE);
        return -ENOMEM;
    }
    return 1;
}

weft__sync_entry *weft__sync_claim_first(weft__sync_queue *q, int *rc)
{
    *rc = 0;
    for (weft__sync_entry *e = q->head; e; e = e->next) {
        int k = weft__sync_claim_shared(e);
        if (k > 0)
            return e;
        if (k < 0) {
            *rc = k;
            return NULL;
        }
    }
    return NULL;
}

void weft__sync_finish(weft__sync_entry *e, int result)
{
    weft__sync_waiter *w = e->w;
    bool plain = !w->co && !w->who.loop;
    int done = e->idx + 1;
    weft__sync_unlink(e);
    w->result = result;
    __atomic_store_n(&w->done, done, __ATOMIC_RELEASE);
    if (plain) {
        /* The thread may see done and return before this wake: it waits
         * for released, the record's last write, before it does. */
        futex((uint32_t *)&w->done, FUTEX_WAKE_PRIVATE, 1, NULL, 0);
        __atomic_store_n(&weft__sync_x(w)->released, 1, __ATOMIC_RELEASE);
    }
}

/* ---- waiting -------------------------------------------------------------- */

static void give_all(weft__lock *const *locks, int n)
{
    for (int i = n - 1; i >= 0; i--)
        weft__lock_give(locks[i]);
}

static void take_all(weft__lock *const *locks, int n)
{
    for (int i = 0; i < n; i++)
        weft__lock_take(locks[i]);
}

static bool is_done(const weft__sync_waiter *w)
{
    return __atomic_load_n(&w->done, __ATOMIC_ACQUIRE) != 0;
}

/* Waits for a word another thread is about to set, a few instructions
 * away unless that thread lost its CPU. */
static void wait_published(const int *word)
{
    for (unsigned i = 1; !__atomic_load_n(word, __ATOMIC_ACQUIRE); i++) {
        cpu_relax();
        if (i % 128 == 0)
            sched_yield();
    }
}

/* One wait of a coroutine: returns without the locks, when woken (0), or
 * at the deadline or a cancel. */
static int wait_coroutine(weft__sync_waiter *w, weft__lock *const *locks, int n, int64_t deadline)
{
    /* Nothing parks between here and weft__park (the locks do not). */
    w->who = weft__wait_here();
    give_all(locks, n);
    return weft__park(&w->park, NULL, deadline);
}

/* A thread running its loop: steps it, so that its coroutines may complete
 * the wait too; a completer of another thread wakes the loop. */
static int wait_stepping(weft__sync_waiter *w, weft_loop *l, weft__lock *const *locks, int n,
                         int64_t deadline)
{
    w->who = (weft__waiter_id){.loop = l};
    give_all(locks, n);
    while (!weft__sync_claimed(w)) {
        int64_t ms = -1;
        if (deadline != WEFT__NEVER) {
            int64_t left = deadline - weft__now_ns();
            if (left <= 0)
                return -ETIMEDOUT;
            ms = (left + WEFT__NS_PER_MS - 1) / WEFT__NS_PER_MS;
        }
        int rc = weft_loop_poll(l, ms);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* A plain thread (or one inside a step of its loop, which cannot run
 * another): sleeps on its done word. */
static int wait_thread(weft__sync_waiter *w, weft__lock *const *locks, int n, int64_t deadline)
{
    w->who = (weft__waiter_id){.loop = NULL};
    give_all(locks, n);
    while (!is_done(w)) {
        if (deadline == WEFT__NEVER) {
            futex((uint32_t *)&w->done, FUTEX_WAIT_PRIVATE, 0, NULL, 0);
            continue;
        }
        if (deadline <= weft__now_ns())
            return -ETIMEDOUT;
        /* An absolute CLOCK_MONOTONIC deadline, as every deadline in weft. */
        struct timespec ts = {.tv_sec = (time_t)(deadline / 1000000000LL),
                              .tv_nsec = (long)(deadline % 1000000000LL)};
        futex((uint32_t *)&w->done, FUTEX_WAIT_BITSET_PRIVATE, 0, &ts, FUTEX_BITSET_MATCH_ANY);
    }
    return 0;
}

/* After a wait of w ended (*rc its result), no lock held: true once w is
 * completed.  Else false, with either every entry unlinked and no lock
 * held (*rc < 0: the waiter claimed itself and leaves), or the locks held
 * again and *rc 0 (a wake with no completion behind it: wait again). */
static bool settle(weft__sync_waiter *w, weft__lock *const *locks, int n, int *rc)
{
    for (;;) {
        if (is_done(w))
            return true;
        if (weft__sync_claim(w)) {
            /* Nobody completes it now: its entries are still linked, so
             * every object is alive; unlink them under the locks. */
            take_all(locks, n);
            if (*rc == 0) {
                __atomic_store_n(&weft__sync_x(w)->claimed, 0, __ATOMIC_RELEASE);
                return false;
            }
            weft__sync_leave(w);
            give_all(locks, n);
            return false;
        }
        /* A completer has it: done follows its wake, or the claim comes
         * back if the wake could not be had. */
        for (unsigned i = 1; !is_done(w) && weft__sync_claimed(w); i++) {
            cpu_relax();
            if (i % 128 == 0)
                sched_yield();
        }
    }
}

int weft__sync_wait_shared(weft__sync_waiter *w, weft__lock *const *locks, int n, int64_t deadline)
{
    weft_loop *l = weft__tls_loop;
    bool plain = !w->co && !(l && !l->in_step);
    w->done = 0;
    weft__sync_x(w)->claimed = 0;
    weft__sync_x(w)->released = 0;
    int rc;
    for (;;) {
        if (w->co)
            rc = wait_coroutine(w, locks, n, deadline);
        else if (!plain)
            rc = wait_stepping(w, l, locks, n, deadline);
        else
            rc = wait_thread(w, locks, n, deadline);
        if (settle(w, locks, n, &rc))
            break;
        if (rc < 0)
            return rc; /* left: every entry unlinked, no lock held */
        /* Woken with nothing completed (a claim given back): the locks are
         * held again; wait on. */
    }
    if (plain)
        wait_published(&weft__sync_x(w)->released);
    /* Completed as it timed out or was cancelled: the value or the lock
     * was handed over, so it counts; the cancel is for the next call. */
    if (rc == -ECANCELED)
        weft__sync_cancel_later(w->co);
    return 0;
}
