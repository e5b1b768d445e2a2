/*
 * test_sync_mutex.c - mutexes and conditions: FIFO hand-off under
 * contention (#65: 100 coroutines get the mutex in the order they asked),
 * a cancelled or timed-out waiter never ends up holding it, whatever the
 * order of the cancel and the unlock; unlock by a non-holder, relocking,
 * free while locked or waited on; conditions: signal and broadcast order,
 * no lost signal when a waiter leaves early, the mutex held again on every
 * return (timeout, cancel, deadline, even the loop being freed); calls
 * outside any coroutine and from another thread.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static __attribute__((noinline)) void scribble(void)
{
    volatile unsigned char junk[8192];
    memset((void *)junk, 0x5a, sizeof junk);
}

static weft_mutex *m;
static weft_cond *cv;
static int rcs[32];
static int order[128], norder;
static int holders, max_holders;

static void reset(void)
{
    memset(rcs, 0x7f, sizeof rcs);
    norder = holders = max_holders = 0;
}

Test(mutex, bad_arguments, .timeout = 30)
{
    cr_assert_eq(weft_mutex_new(NULL), -EINVAL);
    cr_assert_eq(weft_mutex_lock(NULL, 0), -EINVAL);
    cr_assert_eq(weft_mutex_unlock(NULL), -EINVAL);
    cr_assert_eq(weft_mutex_free(NULL), 0);
    cr_assert_eq(weft_cond_new(NULL), -EINVAL);
    cr_assert_eq(weft_cond_wait(NULL, NULL, 0), -EINVAL);
    cr_assert_eq(weft_cond_signal(NULL), -EINVAL);
    cr_assert_eq(weft_cond_broadcast(NULL), -EINVAL);
    cr_assert_eq(weft_cond_free(NULL), 0);
    cr_assert_eq(weft_mutex_new(&m), 0);
    cr_assert_eq(weft_cond_new(&cv), 0);
    cr_assert_eq(weft_cond_wait(cv, NULL, 0), -EINVAL);
    cr_assert_eq(weft_cond_wait(NULL, m, 0), -EINVAL);
    cr_assert_eq(weft_cond_wait(cv, m, 0), -EPERM, "m not held");
    cr_assert_eq(weft_mutex_unlock(m), -EPERM, "not locked");
    cr_assert_eq(weft_cond_free(cv), 0);
    cr_assert_eq(weft_mutex_free(m), 0);
}

/* ---- FIFO (#65) -------------------------------------------------------------- */

#define CONTENDERS 100

static void contender(void *arg)
{
    int k = (int)(intptr_t)arg;
    if (weft_mutex_lock(m, 10000) != 0) {
        rcs[0] = -1;
        return;
    }
    if (++holders > max_holders)
        max_holders = holders;
    order[norder++] = k;
    weft_yield(); /* hold it across a switch */
    holders--;
    weft_mutex_unlock(m);
}

static int fifo_main(void *arg)
{
    (void)arg;
    rcs[0] = 0;
    weft_mutex_lock(m, 0);
    for (intptr_t k = 0; k < CONTENDERS; k++) {
        weft_go(contender, (void *)k);
        if (k % 7 == 0)
            weft_yield(); /* arrivals spread over steps */
    }
    weft_sleep(10); /* every one waits by now, in the order spawned */
    weft_mutex_unlock(m);
    /* A newcomer cannot barge in ahead of them. */
    rcs[1] = weft_mutex_lock(m, 0);
    return 0;
}

Test(mutex, waiters_get_it_in_arrival_order, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_mutex_new(&m), 0);
    cr_assert_eq(weft_main(fifo_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], 0);
    cr_assert_eq(rcs[1], -ETIMEDOUT);
    cr_assert_eq(max_holders, 1);
    cr_assert_eq(norder, CONTENDERS);
    for (int i = 0; i < CONTENDERS; i++)
        cr_assert_eq(order[i], i, "position %d went to %d", i, order[i]);
    cr_assert_eq(weft_mutex_free(m), 0);
}

/* ---- cancel and timeout never leave it held ----------------------------------- */

static void waiter(void *arg)
{
    int k = (int)(intptr_t)arg;
    rcs[k] = weft_mutex_lock(m, k == 3 ? 20 : 10000);
    scribble();
    if (rcs[k] == 0) {
        order[norder++] = k;
        rcs[10 + k] = weft_yield(); /* a cancel that came too late waits here */
        weft_mutex_unlock(m);
    }
}

static int cancel_main(void *arg)
{
    (void)arg;
    /* Made on the loop: local, where a waiter that is leaving is skipped
     * (a shared mutex hands itself to it: test_sync_shared.c). */
    if (weft_mutex_new(&m) != 0)
        return -ENOMEM;
    weft_mutex_lock(m, 0);
    int64_t a = weft_go(waiter, (void *)1);
    int64_t b = weft_go(waiter, (void *)2);
    weft_go(waiter, (void *)3); /* times out */
    weft_sleep(100);
    /* Cancel first, unlock next, in the same step: the unlock must skip
     * the cancelled waiter and hand the mutex to the next one. */
    weft_cancel(a);
    weft_mutex_unlock(m);
    weft_sleep(10);
    weft_mutex_lock(m, 1000);
    weft_go(waiter, (void *)4);
    weft_sleep(10);
    weft_mutex_unlock(m);
    (void)b;
    return 0;
}

static int64_t late_id;

static void late_waiter(void *arg)
{
    (void)arg;
    rcs[5] = weft_mutex_lock(m, 10000);
    if (rcs[5] == 0) {
        rcs[6] = weft_yield(); /* the cancel arrives here */
        rcs[7] = weft_mutex_unlock(m);
    }
}

static int unlock_then_cancel_main(void *arg)
{
    (void)arg;
    weft_mutex_lock(m, 0);
    late_id = weft_go(late_waiter, NULL);
    weft_sleep(10);
    weft_mutex_unlock(m); /* hand-off: late_waiter holds it */
    weft_cancel(late_id); /* too late for the lock */
    rcs[8] = weft_mutex_lock(m, 1000);
    weft_mutex_unlock(m);
    return 0;
}

Test(mutex, a_cancelled_or_timed_out_waiter_never_holds_it, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_main(cancel_main, NULL, NULL), 0);
    cr_assert_eq(rcs[1], -ECANCELED);
    cr_assert_eq(rcs[3], -ETIMEDOUT);
    cr_assert_eq(rcs[2], 0);
    cr_assert_eq(rcs[4], 0);
    cr_assert_eq(norder, 2);
    cr_assert_eq(order[0], 2);
    cr_assert_eq(order[1], 4);
    cr_assert_eq(weft_mutex_free(m), 0, "nobody holds it at the end");

    reset();
    cr_assert_eq(weft_mutex_new(&m), 0);
    cr_assert_eq(weft_main(unlock_then_cancel_main, NULL, NULL), 0);
    cr_assert_eq(rcs[5], 0, "the lock was handed over before the cancel");
    cr_assert_eq(rcs[6], -ECANCELED, "the cancel went to the next call");
    cr_assert_eq(rcs[7], 0);
    cr_assert_eq(rcs[8], 0);
    cr_assert_eq(weft_mutex_free(m), 0);
}

static void holder(void *arg)
{
    (void)arg;
    rcs[0] = weft_mutex_lock(m, 0);
    rcs[1] = weft_mutex_lock(m, 100); /* again: would wait for itself */
    weft_sleep(30);
    rcs[2] = weft_mutex_unlock(m);
    rcs[3] = weft_mutex_unlock(m);
}

static void intruder(void *arg)
{
    (void)arg;
    weft_sleep(5);
    rcs[4] = weft_mutex_unlock(m); /* not the holder */
    rcs[5] = weft_mutex_free(m);   /* locked */
    int64_t t0 = mono_ms();
    rcs[6] = weft_mutex_lock(m, 1000);
    rcs[7] = (int)(mono_ms() - t0);
    weft_mutex_unlock(m);
}

static int misuse_main(void *arg)
{
    (void)arg;
    weft_go(holder, NULL);
    weft_go(intruder, NULL);
    return 0;
}

Test(mutex, only_the_holder_unlocks, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_mutex_new(&m), 0);
    cr_assert_eq(weft_main(misuse_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], 0);
    cr_assert_eq(rcs[1], -EDEADLK);
    cr_assert_eq(rcs[2], 0);
    cr_assert_eq(rcs[3], -EPERM);
    cr_assert_eq(rcs[4], -EPERM);
    cr_assert_eq(rcs[5], -EBUSY);
    cr_assert_eq(rcs[6], 0);
    cr_assert_geq(rcs[7], 20);
    cr_assert_eq(weft_mutex_free(m), 0);
}

static void lock_waiter(void *arg)
{
    (void)arg;
    rcs[0] = weft_mutex_lock(m, 5000);
    if (rcs[0] == 0)
        weft_mutex_unlock(m);
}

static int free_busy_main(void *arg)
{
    (void)arg;
    weft_mutex_lock(m, 0);
    int64_t id = weft_go(lock_waiter, NULL);
    weft_sleep(10);
    rcs[1] = weft_mutex_free(m); /* locked and waited on */
    weft_cancel(id);
    weft_sleep(10);
    rcs[2] = weft_mutex_free(m); /* still locked */
    weft_mutex_unlock(m);
    return 0;
}

Test(mutex, free_while_locked_or_waited_on_is_ebusy, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_mutex_new(&m), 0);
    cr_assert_eq(weft_main(free_busy_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], -ECANCELED);
    cr_assert_eq(rcs[1], -EBUSY);
    cr_assert_eq(rcs[2], -EBUSY);
    cr_assert_eq(weft_mutex_free(m), 0);
}

static void deadline_waiter(void *arg)
{
    (void)arg;
    int64_t t0 = mono_ms();
    weft_deadline_set(weft_now() + 40);
    rcs[0] = weft_mutex_lock(m, -1);
    rcs[1] = (int)(mono_ms() - t0);
}

static int lock_deadline_main(void *arg)
{
    (void)arg;
    weft_mutex_lock(m, 0);
    weft_go(deadline_waiter, NULL);
    weft_sleep(100);
    weft_mutex_unlock(m);
    rcs[2] = weft_mutex_lock(m, 0);
    weft_mutex_unlock(m);
    return 0;
}

Test(mutex, the_coroutines_deadline_bounds_a_lock, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_mutex_new(&m), 0);
    cr_assert_eq(weft_main(lock_deadline_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], -ETIMEDOUT);
    cr_assert_geq(rcs[1], 39);
    cr_assert_lt(rcs[1], 40 + LATE_MS);
    cr_assert_eq(rcs[2], 0);
    cr_assert_eq(weft_mutex_free(m), 0);
}

/* ---- outside coroutines, other threads ----------------------------------------- */

static void co_holder(void *arg)
{
    (void)arg;
    weft_mutex_lock(m, 0);
    weft_sleep(30);
    weft_mutex_unlock(m);
}

static void *foreign(void *arg)
{
    (void)arg;
    rcs[10] = weft_mutex_lock(m, 0);
    rcs[11] = weft_mutex_unlock(m);
    rcs[12] = weft_cond_signal(cv);
    rcs[13] = weft_cond_broadcast(cv);
    rcs[14] = weft_cond_wait(cv, m, 0);
    return NULL;
}

Test(mutex, outside_coroutines_and_from_other_threads, .timeout = 30)
{
    reset();
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    cr_assert_eq(weft_mutex_new(&m), 0);
    cr_assert_eq(weft_cond_new(&cv), 0);
    weft_go(co_holder, NULL);
    cr_assert_eq(weft_loop_poll(l, 0), 1);
    /* The loop's own thread waits for the coroutine by running the loop. */
    int64_t t0 = mono_ms();
    cr_assert_eq(weft_mutex_lock(m, 5000), 0);
    cr_assert_geq(mono_ms() - t0, 20);
    cr_assert_eq(weft_mutex_lock(m, 0), -EDEADLK);
    pthread_t t;
    pthread_create(&t, NULL, foreign, NULL);
    pthread_join(t, NULL);
    for (int k = 10; k < 15; k++)
        cr_assert_eq(rcs[k], -EXDEV, "call %d: %d", k, rcs[k]);
    cr_assert_eq(weft_mutex_unlock(m), 0);
    /* No coroutine left to signal: a wait can never end. */
    cr_assert_eq(weft_mutex_lock(m, 0), 0);
    cr_assert_eq(weft_cond_wait(cv, m, -1), -EDEADLK);
    cr_assert_eq(weft_mutex_unlock(m), 0, "held again after the wait");
    cr_assert_eq(weft_cond_free(cv), 0);
    cr_assert_eq(weft_mutex_free(m), 0);
    weft_loop_free(l);
}

/* ---- conditions ------------------------------------------------------------------ */

static int ready_count;

static void cond_waiter(void *arg)
{
    int k = (int)(intptr_t)arg;
    weft_mutex_lock(m, -1);
    int rc;
    do
        rc = weft_cond_wait(cv, m, 5000);
    while (rc == 0 && ready_count == 0);
    if (++holders > max_holders)
        max_holders = holders;
    rcs[k] = rc;
    if (rc == 0) {
        ready_count--;
        order[norder++] = k;
    }
    weft_yield();
    holders--;
    rcs[16 + k] = weft_mutex_unlock(m); /* held again: 0 */
}

static int signal_main(void *arg)
{
    (void)arg;
    for (intptr_t k = 0; k < 6; k++)
        weft_go(cond_waiter, (void *)k);
    weft_sleep(10);
    /* One signal, one waiter: the first that came. */
    weft_mutex_lock(m, -1);
    ready_count = 1;
    weft_cond_signal(cv);
    weft_mutex_unlock(m);
    weft_sleep(10);
    rcs[12] = norder;
    /* Broadcast: the other five, in the order they came. */
    weft_mutex_lock(m, -1);
    ready_count = 5;
    weft_cond_broadcast(cv);
    weft_mutex_unlock(m);
    weft_sleep(10);
    rcs[13] = weft_cond_signal(cv); /* nobody waits: nothing happens */
    return 0;
}

Test(cond, signal_one_broadcast_all_in_order_mutex_held, .timeout = 30)
{
    reset();
    ready_count = 0;
    cr_assert_eq(weft_mutex_new(&m), 0);
    cr_assert_eq(weft_cond_new(&cv), 0);
    cr_assert_eq(weft_main(signal_main, NULL, NULL), 0);
    cr_assert_eq(rcs[12], 1);
    cr_assert_eq(order[0], 0);
    cr_assert_eq(norder, 6);
    for (int k = 0; k < 6; k++) {
        cr_assert_eq(rcs[k], 0);
        cr_assert_eq(order[k], k);
        cr_assert_eq(rcs[16 + k], 0);
    }
    cr_assert_eq(max_holders, 1, "the mutex was held by one at a time");
    cr_assert_eq(rcs[13], 0);
    cr_assert_eq(weft_cond_free(cv), 0);
    cr_assert_eq(weft_mutex_free(m), 0);
}

static void cond_leaver(void *arg)
{
    int k = (int)(intptr_t)arg;
    weft_mutex_lock(m, -1);
    if (k == 0)
        weft_deadline_set(weft_now() + 20);
    int64_t t0 = mono_ms();
    rcs[k] = weft_cond_wait(cv, m, k == 1 ? 20 : -1);
    rcs[8 + k] = (int)(mono_ms() - t0);
    weft_deadline_clear();
    scribble();
    rcs[16 + k] = weft_mutex_unlock(m); /* held again whatever happened */
}

static int cond_leavers_main(void *arg)
{
    (void)arg;
    weft_go(cond_leaver, (void *)0);             /* deadline */
    weft_go(cond_leaver, (void *)1);             /* timeout */
    int64_t c = weft_go(cond_leaver, (void *)2); /* cancelled */
    weft_go(cond_leaver, (void *)3);             /* signalled */
    weft_sleep(5);
    /* The mutex is held when their time comes: they wait for it. */
    weft_mutex_lock(m, -1);
    weft_cancel(c);
    weft_sleep(60);
    rcs[12] = weft_cond_signal(cv); /* the three left: 3 gets it */
    weft_mutex_unlock(m);
    weft_sleep(10);
    rcs[13] = weft_cond_free(cv);
    return 0;
}

Test(cond, a_wait_that_ends_early_holds_the_mutex_and_loses_no_signal, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_mutex_new(&m), 0);
    cr_assert_eq(weft_cond_new(&cv), 0);
    cr_assert_eq(weft_main(cond_leavers_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], -ETIMEDOUT);
    cr_assert_eq(rcs[1], -ETIMEDOUT);
    cr_assert_eq(rcs[2], -ECANCELED);
    cr_assert_eq(rcs[3], 0);
    for (int k = 0; k < 3; k++)
        cr_assert_geq(rcs[8 + k], 60, "%d got the mutex back only once it was free", k);
    for (int k = 0; k < 4; k++)
        cr_assert_eq(rcs[16 + k], 0, "%d held the mutex on return", k);
    cr_assert_eq(rcs[13], 0);
    cr_assert_eq(weft_mutex_free(m), 0);
}

/* A cancel that comes while the wait takes the mutex back is kept. */
static int64_t relocker;

static void relock_waiter(void *arg)
{
    (void)arg;
    weft_mutex_lock(m, -1);
    rcs[0] = weft_cond_wait(cv, m, -1);
    rcs[1] = weft_mutex_unlock(m);
    rcs[2] = weft_yield(); /* the kept cancel */
    rcs[3] = weft_yield();
}

static int relock_cancel_main(void *arg)
{
    (void)arg;
    relocker = weft_go(relock_waiter, NULL);
    weft_sleep(5);
    weft_mutex_lock(m, -1);
    weft_cond_signal(cv);
    weft_sleep(5); /* it waits for the mutex now */
    weft_cancel(relocker);
    weft_sleep(5);
    weft_mutex_unlock(m);
    return 0;
}

Test(cond, a_cancel_while_relocking_is_kept_for_the_next_call, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_mutex_new(&m), 0);
    cr_assert_eq(weft_cond_new(&cv), 0);
    cr_assert_eq(weft_main(relock_cancel_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], 0, "signalled before the cancel");
    cr_assert_eq(rcs[1], 0);
    cr_assert_eq(rcs[2], -ECANCELED);
    cr_assert_eq(rcs[3], 0);
    cr_assert_eq(weft_cond_free(cv), 0);
    cr_assert_eq(weft_mutex_free(m), 0);
}

/* The loop freed while a condition waiter must take the mutex back from
 * a coroutine that is itself being cancelled. */
static void stubborn_holder(void *arg)
{
    (void)arg;
    weft_mutex_lock(m, -1);
    weft_cond_signal(cv);
    weft_sleep(60000); /* -ECANCELED when the loop is freed */
    weft_sleep(10);    /* -ECANCELED at once: the loop refuses waits */
    rcs[5] = weft_mutex_unlock(m);
}

static void freed_waiter(void *arg)
{
    (void)arg;
    weft_mutex_lock(m, -1);
    rcs[0] = weft_cond_wait(cv, m, -1);
    rcs[1] = weft_mutex_unlock(m);
}

static void abandoner(void *arg)
{
    (void)arg;
    weft_mutex_lock(m, -1); /* and ends holding it */
}

Test(cond, the_mutex_comes_back_even_while_the_loop_is_freed, .timeout = 30)
{
    reset();
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    cr_assert_eq(weft_mutex_new(&m), 0);
    cr_assert_eq(weft_cond_new(&cv), 0);
    int64_t w = weft_go(freed_waiter, NULL);
    weft_go(stubborn_holder, NULL);
    for (int i = 0; i < 5; i++)
        weft_loop_poll(l, 0);
    /* The waiter runs first: it must let the holder run to let go. */
    weft_cancel(w);
    weft_loop_free(l);
    cr_assert_eq(rcs[0], 0);
    cr_assert_eq(rcs[1], 0);
    cr_assert_eq(rcs[5], 0);
    /* The thread holds it and frees the loop: it cannot let go. */
    reset();
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    weft_go(freed_waiter, NULL);
    for (int i = 0; i < 3; i++)
        weft_loop_poll(l, 0);
    cr_assert_eq(weft_mutex_lock(m, 0), 0);
    weft_cond_signal(cv);
    for (int i = 0; i < 3; i++)
        weft_loop_poll(l, 0); /* the waiter waits for the thread's unlock */
    weft_loop_free(l);
    cr_assert_eq(rcs[0], 0);
    cr_assert_eq(rcs[1], 0);
    cr_assert_eq(weft_mutex_unlock(m), -EPERM, "taken over, then let go");
    /* A holder that ended without unlocking: the waiter takes it over
     * rather than wait for ever. */
    reset();
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    weft_go(freed_waiter, NULL);
    weft_go(abandoner, NULL);
    for (int i = 0; i < 5; i++)
        weft_loop_poll(l, 0);
    weft_mutex_lock(m, 0); /* the abandoner has it: fails */
    weft_cond_signal(cv);
    cr_assert_eq(weft_loop_run(l, 5000), 0);
    cr_assert_eq(rcs[0], 0);
    cr_assert_eq(rcs[1], 0);
    weft_loop_free(l);
    cr_assert_eq(weft_cond_free(cv), 0);
    cr_assert_eq(weft_mutex_free(m), 0);
}
