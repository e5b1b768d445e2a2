/*
 * test_sync_wg_sem.c - wait groups and semaphores: counting, every waiter
 * woken at zero, a counter that would go negative or overflow refused and
 * unchanged; permits handed to waiters in order, a waiter that leaves
 * early takes no permit; timeout 0 / finite / deadline / cancel; free
 * while waited on; outside any coroutine and from another thread.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static weft_wg *g;
static weft_sem *sem;
static int rcs[32];
static int order[32], norder;
static int64_t took[8];

static void reset(void)
{
    memset(rcs, 0x7f, sizeof rcs);
    norder = 0;
}

Test(wg, bad_arguments_and_counting, .timeout = 30)
{
    cr_assert_eq(weft_wg_new(NULL), -EINVAL);
    cr_assert_eq(weft_wg_add(NULL, 1), -EINVAL);
    cr_assert_eq(weft_wg_done(NULL), -EINVAL);
    cr_assert_eq(weft_wg_wait(NULL, 0), -EINVAL);
    cr_assert_eq(weft_wg_free(NULL), 0);
    cr_assert_eq(weft_wg_new(&g), 0);
    cr_assert_eq(weft_wg_wait(g, 0), 0, "zero: no wait");
    cr_assert_eq(weft_wg_done(g), -EINVAL, "below zero");
    cr_assert_eq(weft_wg_add(g, 3), 3);
    cr_assert_eq(weft_wg_add(g, -4), -EINVAL);
    cr_assert_eq(weft_wg_add(g, INT_MAX), -EOVERFLOW);
    cr_assert_eq(weft_wg_done(g), 2, "unchanged by the refused calls");
    cr_assert_eq(weft_wg_wait(g, 0), -ETIMEDOUT);
    cr_assert_eq(weft_wg_add(g, -2), 0);
    cr_assert_eq(weft_wg_wait(g, 0), 0);
    cr_assert_eq(weft_wg_free(g), 0);
}

static void worker(void *arg)
{
    weft_sleep((int64_t)(intptr_t)arg);
    weft_wg_done(g);
}

static void wg_waiter(void *arg)
{
    int k = (int)(intptr_t)arg;
    int64_t t0 = mono_ms();
    rcs[k] = weft_wg_wait(g, k == 5 ? 10 : 5000);
    took[k % 8] = mono_ms() - t0;
}

static int wg_main(void *arg)
{
    (void)arg;
    weft_wg_add(g, 4);
    for (intptr_t i = 0; i < 4; i++)
        weft_go(worker, (void *)(10 + 10 * i));
    for (intptr_t k = 0; k < 6; k++)
        weft_go(wg_waiter, (void *)k); /* 5 times out */
    int64_t c = weft_go(wg_waiter, (void *)6);
    weft_yield();
    weft_cancel(c);
    rcs[20] = weft_wg_free(g); /* waited on */
    rcs[21] = weft_wg_wait(g, -1);
    return 0;
}

Test(wg, zero_wakes_every_waiter, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_wg_new(&g), 0);
    cr_assert_eq(weft_main(wg_main, NULL, NULL), 0);
    for (int k = 0; k < 5; k++) {
        cr_assert_eq(rcs[k], 0);
        cr_assert_geq(took[k], 39);
    }
    cr_assert_eq(rcs[5], -ETIMEDOUT);
    cr_assert_eq(rcs[6], -ECANCELED);
    cr_assert_eq(rcs[20], -EBUSY);
    cr_assert_eq(rcs[21], 0);
    cr_assert_eq(weft_wg_free(g), 0);
}

static void *wg_foreign(void *arg)
{
    (void)arg;
    rcs[0] = weft_wg_add(g, 1);
    rcs[1] = weft_wg_done(g);
    rcs[2] = weft_wg_wait(g, 0);
    return NULL;
}

Test(wg, outside_coroutines_and_other_threads, .timeout = 30)
{
    reset();
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    cr_assert_eq(weft_wg_new(&g), 0);
    cr_assert_eq(weft_wg_add(g, 2), 2);
    weft_go(worker, (void *)10);
    weft_go(worker, (void *)20);
    cr_assert_eq(weft_wg_wait(g, 5000), 0, "the loop ran meanwhile");
    cr_assert_eq(weft_wg_add(g, 1), 1);
    cr_assert_eq(weft_wg_wait(g, -1), -EDEADLK, "no coroutine could end it");
    pthread_t t;
    pthread_create(&t, NULL, wg_foreign, NULL);
    pthread_join(t, NULL);
    for (int k = 0; k < 3; k++)
        cr_assert_eq(rcs[k], -EXDEV);
    cr_assert_eq(weft_wg_done(g), 0);
    cr_assert_eq(weft_wg_free(g), 0);
    weft_loop_free(l);
}

/* ---- semaphores ------------------------------------------------------------------ */

Test(sem, bad_arguments_and_counting, .timeout = 30)
{
    cr_assert_eq(weft_sem_new(NULL, 1), -EINVAL);
    cr_assert_eq(weft_sem_acquire(NULL, 0), -EINVAL);
    cr_assert_eq(weft_sem_release(NULL), -EINVAL);
    cr_assert_eq(weft_sem_free(NULL), 0);
    cr_assert_eq(weft_sem_new(&sem, 2), 0);
    cr_assert_eq(weft_sem_acquire(sem, 0), 0);
    cr_assert_eq(weft_sem_acquire(sem, 0), 0);
    cr_assert_eq(weft_sem_acquire(sem, 0), -ETIMEDOUT);
    cr_assert_eq(weft_sem_release(sem), 0);
    cr_assert_eq(weft_sem_acquire(sem, -1), 0);
    cr_assert_eq(weft_sem_free(sem), 0);
    cr_assert_eq(weft_sem_new(&sem, UINT_MAX), 0);
    cr_assert_eq(weft_sem_release(sem), -EOVERFLOW);
    cr_assert_eq(weft_sem_acquire(sem, 0), 0);
    cr_assert_eq(weft_sem_release(sem), 0);
    cr_assert_eq(weft_sem_free(sem), 0);
}

static void acquirer(void *arg)
{
    int k = (int)(intptr_t)arg;
    int64_t t0 = mono_ms();
    if (k == 4)
        weft_deadline_set(weft_now() + 30);
    rcs[k] = weft_sem_acquire(sem, k == 3 ? 30 : k == 4 ? -1 : 5000);
    took[k % 8] = mono_ms() - t0;
    weft_deadline_clear();
    if (rcs[k] == 0)
        order[norder++] = k;
}

static int sem_main(void *arg)
{
    (void)arg;
    int64_t ids[8];
    for (intptr_t k = 0; k < 7; k++)
        ids[k] = weft_go(acquirer, (void *)k);
    weft_sleep(5);
    weft_cancel(ids[1]);
    weft_sleep(60); /* 3 and 4 expire */
    rcs[20] = weft_sem_free(sem);
    for (int i = 0; i < 3; i++) {
        weft_sem_release(sem);
        /* A newcomer cannot take the permit ahead of the waiters. */
        rcs[21 + i] = weft_sem_acquire(sem, 0);
    }
    weft_sleep(5);
    weft_sem_release(sem); /* for 6, the last */
    weft_sleep(5);
    rcs[25] = weft_sem_acquire(sem, 0); /* nothing left over */
    weft_sem_release(sem);
    rcs[26] = weft_sem_acquire(sem, 0); /* permits not taken stay */
    return 0;
}

Test(sem, permits_go_to_waiters_in_order_and_never_to_leavers, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_sem_new(&sem, 0), 0);
    cr_assert_eq(weft_main(sem_main, NULL, NULL), 0);
    cr_assert_eq(rcs[1], -ECANCELED);
    cr_assert_eq(rcs[3], -ETIMEDOUT);
    cr_assert_geq(took[3], 30);
    cr_assert_eq(rcs[4], -ETIMEDOUT);
    cr_assert_geq(took[4], 29);
    cr_assert_eq(rcs[20], -EBUSY);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(rcs[21 + i], -ETIMEDOUT);
    cr_assert_eq(norder, 4);
    cr_assert_eq(order[0], 0);
    cr_assert_eq(order[1], 2);
    cr_assert_eq(order[2], 5);
    cr_assert_eq(order[3], 6);
    cr_assert_eq(rcs[25], -ETIMEDOUT);
    cr_assert_eq(rcs[26], 0);
    cr_assert_eq(weft_sem_free(sem), 0);
}

static void releaser(void *arg)
{
    (void)arg;
    weft_sleep(20);
    weft_sem_release(sem);
}

static void *sem_foreign(void *arg)
{
    (void)arg;
    rcs[0] = weft_sem_acquire(sem, 0);
    rcs[1] = weft_sem_release(sem);
    return NULL;
}

Test(sem, outside_coroutines_and_other_threads, .timeout = 30)
{
    reset();
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    cr_assert_eq(weft_sem_new(&sem, 0), 0);
    weft_go(releaser, NULL);
    cr_assert_eq(weft_sem_acquire(sem, 5000), 0, "the loop ran meanwhile");
    cr_assert_eq(weft_sem_acquire(sem, -1), -EDEADLK);
    pthread_t t;
    pthread_create(&t, NULL, sem_foreign, NULL);
    pthread_join(t, NULL);
    cr_assert_eq(rcs[0], -EXDEV);
    cr_assert_eq(rcs[1], -EXDEV);
    cr_assert_eq(weft_sem_free(sem), 0);
    weft_loop_free(l);
}
