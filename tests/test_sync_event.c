/*
 * test_sync_event.c - events: auto and manual reset, one waiter or all per
 * set, in order; timeout 0 / finite / deadline / cancel, nothing left
 * behind; a set racing a cancel still counts (the cancel goes to the next
 * call); sets from a plain thread wake a coroutine (coost#248), at full
 * scale (#66; check_sync_threads.c runs it under TSan); plain threads
 * and the loop's own thread waiting; coroutines of two loops; a wake that
 * cannot be queued (-ENOMEM) and its retry; free while waited on.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static weft_event *ev, *ack;
static int rcs[32];
static int order[32], norder;
static int64_t took[8];

static void reset(void)
{
    memset(rcs, 0x7f, sizeof rcs);
    norder = 0;
}

Test(event, bad_arguments, .timeout = 30)
{
    cr_assert_eq(weft_event_new(NULL, 0), -EINVAL);
    cr_assert_eq(weft_event_wait(NULL, 0), -EINVAL);
    cr_assert_eq(weft_event_set(NULL), -EINVAL);
    cr_assert_eq(weft_event_reset(NULL), -EINVAL);
    cr_assert_eq(weft_event_free(NULL), 0);
}

/* ---- auto and manual reset ------------------------------------------------------ */

static void waiter(void *arg)
{
    int k = (int)(intptr_t)arg;
    rcs[k] = weft_event_wait(ev, 5000);
    if (rcs[k] == 0)
        order[norder++] = k;
}

static int auto_main(void *arg)
{
    (void)arg;
    /* Set with nobody waiting: the set waits for one wait. */
    rcs[20] = weft_event_set(ev);
    rcs[21] = weft_event_wait(ev, 0);
    rcs[22] = weft_event_wait(ev, 0);
    for (intptr_t k = 0; k < 4; k++)
        weft_go(waiter, (void *)k);
    weft_sleep(10);
    weft_event_set(ev); /* one waiter, the first */
    weft_sleep(10);
    rcs[23] = norder;
    weft_event_set(ev);
    weft_event_set(ev);
    weft_event_set(ev);
    weft_event_set(ev); /* one more than there are waiters: stays set */
    weft_sleep(10);
    rcs[24] = weft_event_wait(ev, 0);
    rcs[25] = weft_event_wait(ev, 0);
    return 0;
}

Test(event, auto_reset_lets_one_wait_through_per_set, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_event_new(&ev, 0), 0);
    cr_assert_eq(weft_main(auto_main, NULL, NULL), 0);
    cr_assert_eq(rcs[20], 0);
    cr_assert_eq(rcs[21], 0);
    cr_assert_eq(rcs[22], -ETIMEDOUT);
    cr_assert_eq(rcs[23], 1);
    cr_assert_eq(norder, 4);
    for (int k = 0; k < 4; k++) {
        cr_assert_eq(rcs[k], 0);
        cr_assert_eq(order[k], k);
    }
    cr_assert_eq(rcs[24], 0);
    cr_assert_eq(rcs[25], -ETIMEDOUT);
    cr_assert_eq(weft_event_free(ev), 0);
}

static int manual_main(void *arg)
{
    (void)arg;
    for (intptr_t k = 0; k < 4; k++)
        weft_go(waiter, (void *)k);
    weft_sleep(10);
    weft_event_set(ev); /* all of them */
    weft_sleep(10);
    rcs[20] = norder;
    rcs[21] = weft_event_wait(ev, 0); /* still set */
    rcs[22] = weft_event_wait(ev, -1);
    weft_event_reset(ev);
    rcs[23] = weft_event_wait(ev, 0);
    return 0;
}

Test(event, manual_reset_lets_every_wait_through_until_reset, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_event_new(&ev, 1), 0);
    cr_assert_eq(weft_main(manual_main, NULL, NULL), 0);
    cr_assert_eq(rcs[20], 4);
    for (int k = 0; k < 4; k++)
        cr_assert_eq(rcs[k], 0);
    cr_assert_eq(rcs[21], 0);
    cr_assert_eq(rcs[22], 0);
    cr_assert_eq(rcs[23], -ETIMEDOUT);
    cr_assert_eq(weft_event_free(ev), 0);
}

/* ---- timeouts, deadline, cancel ---------------------------------------------------- */

static void timed(void *arg)
{
    int k = (int)(intptr_t)arg;
    int64_t t0 = mono_ms();
    if (k == 2)
        weft_deadline_set(weft_now() + 50);
    rcs[k] = weft_event_wait(ev, k == 0 ? 0 : k == 1 ? 50 : -1);
    took[k] = mono_ms() - t0;
    weft_deadline_clear();
}

static int timeouts_main(void *arg)
{
    (void)arg;
    weft_go(timed, (void *)0);
    weft_go(timed, (void *)1);
    weft_go(timed, (void *)2);
    int64_t c = weft_go(timed, (void *)3);
    weft_sleep(10);
    rcs[10] = weft_event_free(ev); /* waited on */
    weft_cancel(c);
    weft_sleep(100);
    /* Nobody waits: a set stays for the next wait. */
    weft_event_set(ev);
    rcs[11] = weft_event_wait(ev, 0);
    return 0;
}

Test(event, timeout_deadline_cancel, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_event_new(&ev, 0), 0);
    cr_assert_eq(weft_main(timeouts_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], -ETIMEDOUT);
    cr_assert_lt(took[0], LATE_MS);
    cr_assert_eq(rcs[1], -ETIMEDOUT);
    cr_assert_geq(took[1], 50);
    cr_assert_lt(took[1], 50 + LATE_MS);
    cr_assert_eq(rcs[2], -ETIMEDOUT);
    cr_assert_geq(took[2], 49);
    cr_assert_eq(rcs[3], -ECANCELED);
    cr_assert_eq(rcs[10], -EBUSY);
    cr_assert_eq(rcs[11], 0);
    cr_assert_eq(weft_event_free(ev), 0);
}

/* A set that finds a waiter its cancel has already woken still counts:
 * the wait returns 0 and the cancel goes to the next call. */
static void granted_waiter(void *arg)
{
    (void)arg;
    rcs[0] = weft_event_wait(ev, 5000);
    rcs[1] = weft_yield();
    rcs[2] = weft_yield();
}

static int grant_main(void *arg)
{
    (void)arg;
    int64_t id = weft_go(granted_waiter, NULL);
    weft_sleep(10);
    weft_cancel(id);
    weft_event_set(ev);
    weft_sleep(10);
    rcs[3] = weft_event_wait(ev, 0); /* the set was taken */
    return 0;
}

Test(event, a_set_racing_a_cancel_counts_and_the_cancel_is_kept, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_event_new(&ev, 0), 0);
    cr_assert_eq(weft_main(grant_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], 0);
    cr_assert_eq(rcs[1], -ECANCELED);
    cr_assert_eq(rcs[2], 0);
    cr_assert_eq(rcs[3], -ETIMEDOUT);
    cr_assert_eq(weft_event_free(ev), 0);
}

/* ---- other threads ------------------------------------------------------------------ */

static void *set_later(void *arg)
{
    usleep((useconds_t)(intptr_t)arg * 1000);
    rcs[30] = weft_event_set(ev);
    return NULL;
}

static int from_thread_main(void *arg)
{
    (void)arg;
    pthread_t t;
    pthread_create(&t, NULL, set_later, (void *)20);
    int64_t t0 = mono_ms();
    rcs[0] = weft_event_wait(ev, 5000);
    took[0] = mono_ms() - t0;
    pthread_join(t, NULL);
    return 0;
}

Test(event, a_plain_thread_wakes_a_coroutine, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_event_new(&ev, 0), 0);
    cr_assert_eq(weft_main(from_thread_main, NULL, NULL), 0);
    cr_assert_eq(rcs[30], 0);
    cr_assert_eq(rcs[0], 0);
    cr_assert_geq(took[0], 15);
    cr_assert_eq(weft_event_free(ev), 0);
}

static void *thread_waits(void *arg)
{
    (void)arg;
    int64_t t0 = mono_ms();
    rcs[1] = weft_event_wait(ev, 0);
    rcs[2] = weft_event_wait(ev, 30);
    took[2] = mono_ms() - t0;
    t0 = mono_ms();
    rcs[3] = weft_event_wait(ev, 5000); /* a coroutine sets it */
    took[3] = mono_ms() - t0;
    weft_event_set(ack);
    return NULL;
}

static int thread_waits_main(void *arg)
{
    (void)arg;
    pthread_t t;
    pthread_create(&t, NULL, thread_waits, NULL);
    weft_sleep(100);
    weft_event_set(ev);
    rcs[4] = weft_event_wait(ack, 5000);
    pthread_join(t, NULL);
    return 0;
}

Test(event, a_plain_thread_waits_for_a_coroutine, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_event_new(&ev, 0), 0);
    cr_assert_eq(weft_event_new(&ack, 0), 0);
    cr_assert_eq(weft_main(thread_waits_main, NULL, NULL), 0);
    cr_assert_eq(rcs[1], -ETIMEDOUT);
    cr_assert_eq(rcs[2], -ETIMEDOUT);
    cr_assert_geq(took[2], 30);
    cr_assert_eq(rcs[3], 0);
    cr_assert_lt(took[3], 100 + LATE_MS, "woken by the set, not by its timeout");
    cr_assert_eq(rcs[4], 0);
    cr_assert_eq(weft_event_free(ev), 0);
    cr_assert_eq(weft_event_free(ack), 0);
}

static void set_soon(void *arg)
{
    (void)arg;
    weft_sleep(20);
    weft_event_set(ev);
}

Test(event, the_loops_thread_waits_running_the_loop, .timeout = 30)
{
    reset();
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    cr_assert_eq(weft_event_new(&ev, 0), 0);
    /* Set by one of the loop's coroutines. */
    weft_go(set_soon, NULL);
    cr_assert_eq(weft_event_wait(ev, 5000), 0);
    /* Set by another thread while no coroutine is left: the loop's wake. */
    pthread_t t;
    pthread_create(&t, NULL, set_later, (void *)30);
    int64_t t0 = mono_ms();
    cr_assert_eq(weft_event_wait(ev, 5000), 0);
    cr_assert_geq(mono_ms() - t0, 25);
    pthread_join(t, NULL);
    cr_assert_eq(weft_event_wait(ev, 20), -ETIMEDOUT);
    cr_assert_eq(weft_event_free(ev), 0);
    weft_loop_free(l);
}

/* Coroutines of two loops, on two threads, wake each other. */
#define ROUNDS 2000

static int ping_side(void *arg)
{
    int me = (int)(intptr_t)arg;
    weft_event *mine = me ? ack : ev, *theirs = me ? ev : ack;
    for (int i = 0; i < ROUNDS; i++) {
        if (me == 0 && weft_event_set(theirs) != 0)
            return -1;
        if (weft_event_wait(mine, 10000) != 0)
            return -2;
        if (me == 1 && weft_event_set(theirs) != 0)
            return -3;
    }
    return 0;
}

static void *loop_thread(void *arg)
{
    rcs[(intptr_t)arg] = weft_main(ping_side, arg, NULL);
    return NULL;
}

Test(event, coroutines_of_two_loops, .timeout = 60)
{
    reset();
    cr_assert_eq(weft_event_new(&ev, 0), 0);
    cr_assert_eq(weft_event_new(&ack, 0), 0);
    pthread_t t[2];
    for (intptr_t i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, loop_thread, (void *)i);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(rcs[0], 0);
    cr_assert_eq(rcs[1], 0);
    cr_assert_eq(weft_event_free(ev), 0);
    cr_assert_eq(weft_event_free(ack), 0);
}

/* #66 at full scale: a plain thread sets 100,000 times, a coroutine waits
 * and resets; each set is acknowledged before the next, so a wake without
 * a set (spurious) or a set without a wake (lost, then a hang) shows. */
#define SETS 100000
static atomic_int pending;
static long spurious, lost;

static void *setter(void *arg)
{
    (void)arg;
    for (int i = 0; i < SETS; i++) {
        atomic_store(&pending, 1);
        weft_event_set(ev);
        if (weft_event_wait(ack, 10000) != 0) {
            lost++;
            break;
        }
    }
    return NULL;
}

static int reset_waiter_main(void *arg)
{
    (void)arg;
    pthread_t t;
    pthread_create(&t, NULL, setter, NULL);
    for (int i = 0; i < SETS; i++) {
        int rc = weft_event_wait(ev, 10000);
        if (rc != 0) {
            lost++;
            break;
        }
        if (atomic_exchange(&pending, 0) != 1)
            spurious++;
        weft_event_reset(ev);
        weft_event_set(ack);
    }
    pthread_join(t, NULL);
    return 0;
}

Test(event, a_foreign_thread_sets_100k_times, .timeout = 300)
{
    reset();
    spurious = lost = 0;
    cr_assert_eq(weft_event_new(&ev, 1), 0);
    cr_assert_eq(weft_event_new(&ack, 0), 0);
    cr_assert_eq(weft_main(reset_waiter_main, NULL, NULL), 0);
    cr_assert_eq(lost, 0);
    cr_assert_eq(spurious, 0);
    cr_assert_eq(weft_event_free(ev), 0);
    cr_assert_eq(weft_event_free(ack), 0);
}

/* ---- a wake that cannot be queued ------------------------------------------------------ */

static atomic_int waiter_done;

static void *failing_setter(void *arg)
{
    int nth = (int)(intptr_t)arg;
    usleep(20000);
    weft_fault_set(WEFT_FAULT_MALLOC, (unsigned)nth, ENOMEM);
    rcs[10] = weft_event_set(ev);
    weft_fault_clear();
    usleep(50000);
    rcs[11] = atomic_load(&waiter_done); /* still waiting */
    rcs[12] = weft_event_set(ev);        /* the retry wakes it */
    return NULL;
}

static int enomem_main(void *arg)
{
    pthread_t t;
    pthread_create(&t, NULL, failing_setter, arg);
    rcs[0] = weft_event_wait(ev, 10000);
    atomic_store(&waiter_done, 1);
    pthread_join(t, NULL);
    rcs[1] = weft_event_wait(ev, 0); /* one wait per set: none left */
    return 0;
}

Test(event, a_wake_that_cannot_be_queued_is_enomem_and_retried, .timeout = 30)
{
    /* Waking a coroutine of another thread allocates twice. */
    for (intptr_t nth = 1; nth <= 2; nth++) {
        reset();
        atomic_store(&waiter_done, 0);
        cr_assert_eq(weft_event_new(&ev, 0), 0);
        cr_assert_eq(weft_main(enomem_main, (void *)nth, NULL), 0);
        cr_assert_eq(rcs[10], -ENOMEM, "allocation %d", (int)nth);
        cr_assert_eq(rcs[11], 0, "the waiter still waited");
        cr_assert_eq(rcs[12], 0);
        cr_assert_eq(rcs[0], 0);
        cr_assert_eq(rcs[1], -ETIMEDOUT);
        cr_assert_eq(weft_event_free(ev), 0);
    }
}
