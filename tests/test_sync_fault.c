/*
 * test_sync_fault.c - every allocation of the sync layer made to fail in
 * turn (weft/testing.h): each constructor with the failure at its 1st,
 * 2nd, ... allocation until it succeeds, which must return -ENOMEM, leave
 * *out alone and leak nothing; the first finite wait of a loop, which
 * grows the timer heap, for every primitive: -ENOMEM with nothing taken,
 * nothing linked, and a condition's mutex held again; a select of more
 * cases than fit on the stack.  (A wake of another loop's coroutine that
 * cannot be queued: test_sync_event.c.)  Leaks are LeakSanitizer's to
 * find in the sanitizer build.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#ifdef UNDER_ASAN
#include <sanitizer/lsan_interface.h>
#endif

static void assert_no_leaks(void)
{
#ifdef UNDER_ASAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "LeakSanitizer found leaks (see above)");
#endif
}

/* Calls make() with the nth allocation failing, n = 1, 2, ... until it
 * succeeds; each failure must be -ENOMEM with *out untouched.  Returns the
 * object of the successful call. */
#define SWEEP(type, make, destroy)                                                                 \
    do {                                                                                           \
        for (unsigned n = 1;; n++) {                                                               \
            type *o = (type *)(uintptr_t)0x1;                                                      \
            weft_fault_clear();                                                                    \
            weft_fault_set(WEFT_FAULT_MALLOC, n, ENOMEM);                                          \
            int rc = make;                                                                         \
            unsigned long fired = weft_fault_fired();                                              \
            weft_fault_clear();                                                                    \
            if (!fired) {                                                                          \
                cr_assert_eq(rc, 0, #make ": %d", rc);                                             \
                cr_assert_neq(o, (type *)(uintptr_t)0x1);                                          \
                cr_assert_eq(destroy(o), 0);                                                       \
                break;                                                                             \
            }                                                                                      \
            cr_assert_eq(rc, -ENOMEM, #make " with allocation %u failing: %d", n, rc);             \
            cr_assert_eq(o, (type *)(uintptr_t)0x1, #make ": out changed on failure");             \
            cr_assert_lt(n, 20u);                                                                  \
        }                                                                                          \
    } while (0)

static void sweep_all(void)
{
    SWEEP(weft_chan, weft_chan_new(&o, sizeof(long), 0), weft_chan_free);
    SWEEP(weft_chan, weft_chan_new(&o, sizeof(long), 1000), weft_chan_free);
    SWEEP(weft_mutex, weft_mutex_new(&o), weft_mutex_free);
    SWEEP(weft_cond, weft_cond_new(&o), weft_cond_free);
    SWEEP(weft_event, weft_event_new(&o, 0), weft_event_free);
    SWEEP(weft_event, weft_event_new(&o, 1), weft_event_free);
    SWEEP(weft_wg, weft_wg_new(&o), weft_wg_free);
    SWEEP(weft_sem, weft_sem_new(&o, 3), weft_sem_free);
}

Test(sync_fault, constructors_fail_cleanly_at_every_allocation, .timeout = 60)
{
    sweep_all(); /* without a loop */
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    sweep_all(); /* with one */
    weft_loop_free(l);
    assert_no_leaks();
}

static int sweep_main(void *arg)
{
    (void)arg;
    sweep_all();
    return 0;
}

Test(sync_fault, constructors_in_a_coroutine, .timeout = 60)
{
    cr_assert_eq(weft_main(sweep_main, NULL, NULL), 0);
    assert_no_leaks();
}

/* ---- the first finite wait of a loop --------------------------------------------- */

static weft_chan *ch, *full;
static weft_mutex *m;
static weft_cond *cv;
static weft_event *ev;
static weft_wg *g;
static weft_sem *sem;
static int which;
static int rcs[8];

static void holder(void *arg)
{
    (void)arg;
    weft_mutex_lock(m, 0);
    weft_yield();
    weft_yield();
    weft_mutex_unlock(m);
}

/* Runs wait number `which` with the timer heap's growth failing. */
static int first_wait_main(void *arg)
{
    (void)arg;
    long v = 5;
    weft_select_case k[2] = {{ch, WEFT_CHAN_RECV, &v, 0}, {full, WEFT_CHAN_SEND, &v, 0}};
    if (which == 3) {
        weft_go(holder, NULL);
        weft_yield(); /* the holder has it */
    }
    if (which == 4)
        weft_mutex_lock(m, 0);
    weft_fault_set(WEFT_FAULT_MALLOC, 1, ENOMEM);
    switch (which) {
    case 0: rcs[0] = weft_chan_recv(ch, &v, 100); break;
    case 1: rcs[0] = weft_chan_send(full, &v, 100); break;
    case 2: rcs[0] = weft_select(k, 2, 100); break;
    case 3: rcs[0] = weft_mutex_lock(m, 100); break;
    case 4: rcs[0] = weft_cond_wait(cv, m, 100); break;
    case 5: rcs[0] = weft_event_wait(ev, 100); break;
    case 6: rcs[0] = weft_wg_wait(g, 100); break;
    case 7: rcs[0] = weft_sem_acquire(sem, 100); break;
    }
    rcs[1] = (int)weft_fault_fired();
    weft_fault_clear();
    if (which == 4)
        rcs[2] = weft_mutex_unlock(m); /* held again */
    /* Nothing linked: what the wait would have taken is still there for
     * a caller that does not wait. */
    v = 1;
    switch (which) {
    case 0: rcs[3] = weft_chan_send(ch, &v, 0) == -ETIMEDOUT; break;
    case 1: rcs[3] = weft_chan_recv(full, &v, 0) == 0 && v == 1; break;
    case 2: rcs[3] = weft_chan_send(ch, &v, 0) == -ETIMEDOUT; break;
    case 3:
        weft_sleep(1);
        rcs[3] = weft_mutex_lock(m, 0) == 0 && weft_mutex_unlock(m) == 0;
        break;
    case 4: rcs[3] = weft_cond_signal(cv) == 0; break;
    case 5: rcs[3] = weft_event_set(ev) == 0 && weft_event_wait(ev, 0) == 0; break;
    case 6: rcs[3] = weft_wg_done(g) == 0 && weft_wg_wait(g, 0) == 0; break;
    case 7: rcs[3] = weft_sem_release(sem) == 0 && weft_sem_acquire(sem, 0) == 0; break;
    }
    return 0;
}

Test(sync_fault, a_loops_first_finite_wait_is_enomem_and_leaves_nothing, .timeout = 60)
{
    for (which = 0; which < 8; which++) {
        long one = 1;
        memset(rcs, 0x7f, sizeof rcs);
        cr_assert_eq(weft_chan_new(&ch, sizeof(long), 0), 0);
        cr_assert_eq(weft_chan_new(&full, sizeof(long), 1), 0);
        cr_assert_eq(weft_chan_send(full, &one, 0), 0);
        cr_assert_eq(weft_mutex_new(&m), 0);
        cr_assert_eq(weft_cond_new(&cv), 0);
        cr_assert_eq(weft_event_new(&ev, 0), 0);
        cr_assert_eq(weft_wg_new(&g), 0);
        cr_assert_eq(weft_wg_add(g, 1), 1);
        cr_assert_eq(weft_sem_new(&sem, 0), 0);
        cr_assert_eq(weft_main(first_wait_main, NULL, NULL), 0);
        cr_assert_eq(rcs[0], -ENOMEM, "wait %d: %d", which, rcs[0]);
        cr_assert_eq(rcs[1], 1, "wait %d", which);
        if (which == 4)
            cr_assert_eq(rcs[2], 0, "the mutex held again after the failed wait");
        cr_assert_eq(rcs[3], 1, "wait %d left something behind", which);
        cr_assert_eq(weft_chan_free(ch), 0);
        cr_assert_eq(weft_chan_free(full), 0);
        cr_assert_eq(weft_mutex_free(m), 0);
        cr_assert_eq(weft_cond_free(cv), 0);
        cr_assert_eq(weft_event_free(ev), 0);
        cr_assert_eq(weft_wg_free(g), 0);
        cr_assert_eq(weft_sem_free(sem), 0);
    }
    assert_no_leaks();
}
