/*
 * test_sync_chan.c - channels: rendezvous and buffered order, close with
 * Go's semantics (#62), every wait's timeout 0 / -1 / deadline / cancel,
 * waiters that leave early leave nothing linked (their stack is scribbled
 * over afterwards, so a stale link would crash), free with waiters,
 * calls outside any coroutine (the loop's thread runs the loop; a thread
 * without a loop sleeps, on a shared channel) and from another thread
 * (-EXDEV, for a channel made on a loop that is alone), bad arguments.  Results are recorded in statics and asserted on the main
 * stack.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Overwrites the stack below the caller, where a returned call's frames
 * were: an entry left linked there turns into garbage pointers. */
static __attribute__((noinline)) void scribble(void)
{
    volatile unsigned char junk[8192];
    memset((void *)junk, 0x5a, sizeof junk);
}

/* ---- arguments -------------------------------------------------------- */

Test(chan, bad_arguments, .timeout = 30)
{
    weft_chan *c = NULL;
    cr_assert_eq(weft_chan_new(NULL, 8, 0), -EINVAL);
    cr_assert_eq(weft_chan_new(&c, SIZE_MAX / 2, 4), -EINVAL);
    cr_assert_eq(weft_chan_new(&c, 0, SIZE_MAX), -EINVAL);
    cr_assert_null(c, "out untouched on failure");
    cr_assert_eq(weft_chan_new(&c, 8, 2), 0);
    long v = 1;
    cr_assert_eq(weft_chan_send(NULL, &v, 0), -EINVAL);
    cr_assert_eq(weft_chan_send(c, NULL, 0), -EINVAL);
    cr_assert_eq(weft_chan_recv(NULL, &v, 0), -EINVAL);
    cr_assert_eq(weft_chan_close(NULL), -EINVAL);
    cr_assert_eq(weft_chan_len(NULL), 0);
    cr_assert_eq(weft_chan_free(NULL), 0);
    weft_select_case k = {.chan = c, .op = 7, .elem = &v};
    cr_assert_eq(weft_select(&k, 1, 0), -EINVAL);
    cr_assert_eq(weft_select(NULL, 1, 0), -EINVAL);
    cr_assert_eq(weft_select(&k, -1, 0), -EINVAL);
    k = (weft_select_case){.chan = c, .op = WEFT_CHAN_SEND, .elem = NULL};
    cr_assert_eq(weft_select(&k, 1, 0), -EINVAL);
    cr_assert_eq(weft_chan_free(c), 0);

    /* A channel of signals: no value, so no pointer needed. */
    cr_assert_eq(weft_chan_new(&c, 0, 1), 0);
    cr_assert_eq(weft_chan_send(c, NULL, 0), 0);
    cr_assert_eq(weft_chan_len(c), 1);
    cr_assert_eq(weft_chan_recv(c, NULL, 0), 0);
    cr_assert_eq(weft_chan_free(c), 0);
}

/* ---- order -------------------------------------------------------------- */

static weft_chan *ch;
static char trace[64];
static int tn;
static long got[64];
static int ngot;
static int rcs[16];

static void mark(char c)
{
    if (tn + 1 < (int)sizeof trace)
        trace[tn++] = c;
    trace[tn] = '\0';
}

static void reset_log(void)
{
    tn = 0;
    trace[0] = '\0';
    ngot = 0;
    memset(rcs, 0x7f, sizeof rcs);
}

static void rendezvous_sender(void *arg)
{
    (void)arg;
    long v = 42;
    mark('s');
    rcs[0] = weft_chan_send(ch, &v, 2000);
    mark('S'); /* only once a receiver took it */
}

static int rendezvous_main(void *arg)
{
    (void)arg;
    weft_go(rendezvous_sender, NULL);
    weft_sleep(20); /* the sender is waiting by now */
    mark('r');
    long v = 0;
    rcs[1] = weft_chan_recv(ch, &v, 2000);
    got[ngot++] = v;
    mark('R');
    weft_yield();
    return 0;
}

Test(chan, unbuffered_is_a_rendezvous, .timeout = 30)
{
    reset_log();
    cr_assert_eq(weft_chan_new(&ch, sizeof(long), 0), 0);
    cr_assert_eq(weft_main(rendezvous_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], 0);
    cr_assert_eq(rcs[1], 0);
    cr_assert_eq(got[0], 42);
    /* The sender waited for the receiver; the receiver did not wait. */
    cr_assert_str_eq(trace, "srRS");
    cr_assert_eq(weft_chan_free(ch), 0);
}

static void fifo_sender(void *arg)
{
    long base = (long)(intptr_t)arg;
    for (long i = 0; i < 5; i++) {
        long v = base + i;
        if (weft_chan_send(ch, &v, 2000) != 0)
            rcs[0] = -1;
    }
}

static int fifo_main(void *arg)
{
    (void)arg;
    rcs[0] = 0;
    weft_go(fifo_sender, (void *)(intptr_t)0);
    weft_sleep(20); /* three buffered, the fourth waits */
    rcs[1] = (int)weft_chan_len(ch);
    for (int i = 0; i < 5; i++) {
        long v = -1;
        if (weft_chan_recv(ch, &v, 2000) == 0)
            got[ngot++] = v;
        if (i == 0)
            rcs[3] = (int)weft_chan_len(ch); /* the waiting value moved in */
    }
    rcs[2] = weft_chan_recv(ch, &got[ngot], 0); /* empty now */
    return 0;
}

Test(chan, buffered_keeps_the_order_a_waiting_sender_joins, .timeout = 30)
{
    reset_log();
    cr_assert_eq(weft_chan_new(&ch, sizeof(long), 3), 0);
    cr_assert_eq(weft_main(fifo_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], 0);
    cr_assert_eq(rcs[1], 3);
    cr_assert_eq(rcs[3], 3, "the waiting sender's value is next in line");
    cr_assert_eq(ngot, 5);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(got[i], i, "value %d was %ld", i, got[i]);
    cr_assert_eq(rcs[2], -ETIMEDOUT);
    cr_assert_eq(weft_chan_free(ch), 0);
}

/* Values of any size go whole through the ring and hand to hand. */
typedef struct big {
    unsigned char b[1000];
} big;

static void big_sender(void *arg)
{
    (void)arg;
    for (int i = 0; i < 6; i++) {
        big v;
        fill_pattern(v.b, sizeof v.b, (uint64_t)i);
        if (weft_chan_send(ch, &v, 2000) != 0)
            rcs[0] = -1;
    }
}

static int big_main(void *arg)
{
    (void)arg;
    rcs[0] = rcs[1] = 0;
    weft_go(big_sender, NULL);
    for (int i = 0; i < 6; i++) {
        big v, want;
        fill_pattern(want.b, sizeof want.b, (uint64_t)i);
        if (weft_chan_recv(ch, &v, 2000) != 0 || memcmp(v.b, want.b, sizeof v.b) != 0)
            rcs[1] = -1;
        if (i == 2)
            weft_sleep(10); /* let the sender fill the ring */
    }
    return 0;
}

Test(chan, large_values_arrive_whole, .timeout = 30)
{
    cr_assert_eq(weft_chan_new(&ch, sizeof(big), 2), 0);
    cr_assert_eq(weft_main(big_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], 0);
    cr_assert_eq(rcs[1], 0);
    cr_assert_eq(weft_chan_free(ch), 0);
}

/* ---- close (#62) --------------------------------------------------------- */

static void close_sender(void *arg)
{
    long v = 100 + (long)(intptr_t)arg;
    rcs[(intptr_t)arg] = weft_chan_send(ch, &v, 5000);
}

static void close_receiver(void *arg)
{
    int k = (int)(intptr_t)arg;
    long v;
    int rc;
    while ((rc = weft_chan_recv(ch, &v, 5000)) == 0)
        got[ngot++] = v;
    rcs[k] = rc;
}

static int close_main(void *arg)
{
    (void)arg;
    for (long i = 0; i < 5; i++)
        weft_chan_send(ch, &i, 0); /* the ring is full */
    for (intptr_t k = 0; k < 3; k++)
        weft_go(close_sender, (void *)k); /* three senders wait */
    weft_sleep(20);
    rcs[10] = weft_chan_close(ch);
    rcs[11] = weft_chan_close(ch);
    long v = 9;
    rcs[12] = weft_chan_send(ch, &v, 0);
    weft_sleep(20);
    /* Receivers after the close drain the ring, in order, then -EPIPE. */
    for (intptr_t k = 3; k < 7; k++)
        weft_go(close_receiver, (void *)k);
    return 0;
}

Test(chan, close_senders_get_epipe_receivers_drain_first, .timeout = 30)
{
    reset_log();
    cr_assert_eq(weft_chan_new(&ch, sizeof(long), 5), 0);
    cr_assert_eq(weft_main(close_main, NULL, NULL), 0);
    for (int k = 0; k < 3; k++)
        cr_assert_eq(rcs[k], -EPIPE, "waiting sender %d: %d", k, rcs[k]);
    cr_assert_eq(rcs[10], 0);
    cr_assert_eq(rcs[11], -EPIPE, "a second close");
    cr_assert_eq(rcs[12], -EPIPE, "a send after the close");
    for (int k = 3; k < 7; k++)
        cr_assert_eq(rcs[k], -EPIPE, "receiver %d: %d", k, rcs[k]);
    /* Exactly the five buffered values, each once, in order; none of the
     * waiting senders' values. */
    cr_assert_eq(ngot, 5);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(got[i], i);
    cr_assert_eq(weft_chan_len(ch), 0);
    cr_assert_eq(weft_chan_free(ch), 0);
}

static int close_waiting_receivers_main(void *arg)
{
    (void)arg;
    for (intptr_t k = 0; k < 4; k++)
        weft_go(close_receiver, (void *)k);
    weft_sleep(20);
    rcs[10] = weft_chan_close(ch);
    /* Freed at once: the woken receivers no longer touch it. */
    rcs[11] = weft_chan_free(ch);
    return 0;
}

Test(chan, close_wakes_waiting_receivers, .timeout = 30)
{
    reset_log();
    cr_assert_eq(weft_chan_new(&ch, sizeof(long), 0), 0);
    cr_assert_eq(weft_main(close_waiting_receivers_main, NULL, NULL), 0);
    cr_assert_eq(rcs[10], 0);
    cr_assert_eq(rcs[11], 0);
    for (int k = 0; k < 4; k++)
        cr_assert_eq(rcs[k], -EPIPE);
    cr_assert_eq(ngot, 0);
}

/* ---- timeouts, deadlines, cancels ------------------------------------------ */

static int64_t took[8];

static void waiting_recv(void *arg)
{
    (void)arg;
    long v = -1;
    rcs[9] = weft_chan_recv(ch, &v, 5000);
    got[9] = v;
}

static int only_try_main(void *arg)
{
    (void)arg;
    long v = 5;
    int64_t t0 = mono_ms();
    rcs[0] = weft_chan_recv(ch, &v, 0);  /* empty */
    rcs[1] = weft_chan_send(ch, &v, 0);  /* nobody receives */
    rcs[2] = weft_chan_send(ch, &v, -5); /* any other negative: the same */
    took[0] = mono_ms() - t0;
    weft_go(waiting_recv, NULL);
    weft_yield();
    rcs[3] = weft_chan_send(ch, &v, 0); /* a receiver waits: completes */
    weft_yield();
    return 0;
}

Test(chan, timeout_zero_only_tries, .timeout = 30)
{
    reset_log();
    cr_assert_eq(weft_chan_new(&ch, sizeof(long), 0), 0);
    cr_assert_eq(weft_main(only_try_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], -ETIMEDOUT);
    cr_assert_eq(rcs[1], -ETIMEDOUT);
    cr_assert_eq(rcs[2], -ETIMEDOUT);
    cr_assert_lt(took[0], LATE_MS);
    cr_assert_eq(rcs[3], 0);
    cr_assert_eq(rcs[9], 0);
    cr_assert_eq(got[9], 5);
    cr_assert_eq(weft_chan_free(ch), 0);
}

static weft_chan *full;

static void timed_recv(void *arg)
{
    (void)arg;
    long v = -1;
    int64_t t0 = mono_ms();
    rcs[1] = weft_chan_recv(ch, &v, 100);
    took[1] = mono_ms() - t0;
    got[1] = v;
}

static void deadline_recv(void *arg)
{
    (void)arg;
    long v = -1;
    int64_t t0 = mono_ms();
    weft_deadline_set(weft_now() + 100);
    rcs[2] = weft_chan_recv(ch, &v, -1);
    took[2] = mono_ms() - t0;
    weft_deadline_clear();
    got[2] = v;
}

static void timed_send_full(void *arg)
{
    (void)arg;
    long v = 5;
    int64_t t0 = mono_ms();
    rcs[4] = weft_chan_send(full, &v, 100);
    took[4] = mono_ms() - t0;
}

static int expiry_main(void *arg)
{
    (void)arg;
    weft_go(timed_recv, NULL);
    weft_go(deadline_recv, NULL);
    weft_go(timed_send_full, NULL);
    return 0;
}

Test(chan, waits_expire_on_time_and_take_nothing, .timeout = 30)
{
    reset_log();
    long one = 1;
    cr_assert_eq(weft_chan_new(&ch, sizeof(long), 4), 0);
    cr_assert_eq(weft_chan_new(&full, sizeof(long), 1), 0);
    cr_assert_eq(weft_chan_send(full, &one, 0), 0);
    cr_assert_eq(weft_main(expiry_main, NULL, NULL), 0);
    cr_assert_eq(rcs[1], -ETIMEDOUT);
    cr_assert_geq(took[1], 100);
    cr_assert_lt(took[1], 100 + LATE_MS);
    cr_assert_eq(got[1], -1);
    cr_assert_eq(rcs[2], -ETIMEDOUT, "the coroutine's deadline: %d", rcs[2]);
    cr_assert_geq(took[2], 99);
    cr_assert_lt(took[2], 100 + LATE_MS);
    cr_assert_eq(rcs[4], -ETIMEDOUT);
    cr_assert_geq(took[4], 100);
    /* The full channel still holds its one value, not the timed-out one. */
    long v = 0;
    cr_assert_eq(weft_chan_len(full), 1);
    cr_assert_eq(weft_chan_recv(full, &v, 0), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(weft_chan_recv(full, &v, 0), -ETIMEDOUT);
    cr_assert_eq(weft_chan_free(full), 0);
    cr_assert_eq(weft_chan_free(ch), 0);
}

static void cancelled_recv(void *arg)
{
    (void)arg;
    long v = -1;
    rcs[5] = weft_chan_recv(ch, &v, 5000);
    scribble();
    got[5] = v;
}

static void cancelled_send(void *arg)
{
    (void)arg;
    long v = 66;
    rcs[6] = weft_chan_send(full, &v, -1);
    scribble();
}

static int cancel_main(void *arg)
{
    (void)arg;
    int64_t a = weft_go(cancelled_recv, NULL);
    int64_t b = weft_go(cancelled_send, NULL);
    weft_sleep(20);
    weft_cancel(a);
    weft_cancel(b);
    weft_sleep(20);
    long v = 7;
    rcs[0] = weft_chan_send(ch, &v, 0); /* nobody receives any more */
    rcs[1] = weft_chan_recv(full, &v, 0);
    got[1] = v;
    rcs[2] = weft_chan_recv(full, &v, 0); /* the cancelled value never came */
    return 0;
}

Test(chan, a_cancelled_wait_takes_and_gives_nothing, .timeout = 30)
{
    reset_log();
    long one = 1;
    cr_assert_eq(weft_chan_new(&ch, sizeof(long), 0), 0);
    cr_assert_eq(weft_chan_new(&full, sizeof(long), 1), 0);
    cr_assert_eq(weft_chan_send(full, &one, 0), 0);
    cr_assert_eq(weft_main(cancel_main, NULL, NULL), 0);
    cr_assert_eq(rcs[5], -ECANCELED);
    cr_assert_eq(got[5], -1);
    cr_assert_eq(rcs[6], -ECANCELED);
    cr_assert_eq(rcs[0], -ETIMEDOUT);
    cr_assert_eq(rcs[1], 0);
    cr_assert_eq(got[1], 1);
    cr_assert_eq(rcs[2], -ETIMEDOUT);
    cr_assert_eq(weft_chan_free(ch), 0);
    cr_assert_eq(weft_chan_free(full), 0);
}

/* A receiver cancelled in the same step as a send, before it: the value
 * goes to the next receiver, not to the one that is leaving. */
static void queued_recv(void *arg)
{
    int k = (int)(intptr_t)arg;
    long v = -1;
    rcs[k] = weft_chan_recv(ch, &v, 5000);
    got[k] = v;
}

static int skip_main(void *arg)
{
    (void)arg;
    /* Made on the loop: local, where a waiter that is leaving is skipped
     * (a shared channel completes it: test_sync_shared.c). */
    if (weft_chan_new(&ch, sizeof(long), 0) != 0)
        return -ENOMEM;
    int64_t first = weft_go(queued_recv, (void *)0);
    weft_go(queued_recv, (void *)1);
    weft_sleep(10);
    weft_cancel(first);
    long v = 31;
    rcs[2] = weft_chan_send(ch, &v, 0);
    return 0;
}

Test(chan, a_receiver_cancelled_first_is_skipped, .timeout = 30)
{
    reset_log();
    got[0] = got[1] = 0;
    cr_assert_eq(weft_main(skip_main, NULL, NULL), 0);
    cr_assert_eq(rcs[2], 0);
    cr_assert_eq(rcs[0], -ECANCELED);
    cr_assert_eq(got[0], -1);
    cr_assert_eq(rcs[1], 0);
    cr_assert_eq(got[1], 31);
    cr_assert_eq(weft_chan_free(ch), 0);
}

/* A cancel that comes before the call is taken by the first receive that
 * has to wait, not by one that completes at once. */
static void pending_cancel(void *arg)
{
    (void)arg;
    long v;
    weft_yield();                          /* cancelled meanwhile */
    rcs[0] = weft_chan_recv(ch, &v, 1000); /* a value is there: completes */
    got[0] = v;
    rcs[1] = weft_chan_recv(ch, &v, 1000); /* must wait: takes the cancel */
    rcs[2] = weft_chan_recv(ch, &v, 0);    /* the cancel was taken once */
}

static int pending_main(void *arg)
{
    (void)arg;
    long v = 77;
    weft_chan_send(ch, &v, 0);
    int64_t id = weft_go(pending_cancel, NULL);
    weft_yield();
    weft_cancel(id);
    return 0;
}

Test(chan, a_pending_cancel_is_taken_by_the_first_wait, .timeout = 30)
{
    reset_log();
    cr_assert_eq(weft_chan_new(&ch, sizeof(long), 1), 0);
    cr_assert_eq(weft_main(pending_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], 0);
    cr_assert_eq(got[0], 77);
    cr_assert_eq(rcs[1], -ECANCELED);
    cr_assert_eq(rcs[2], -ETIMEDOUT);
    cr_assert_eq(weft_chan_free(ch), 0);
}

/* ---- leaving early leaves nothing linked ----------------------------------- */

#define LEAVERS 40

static void leaver(void *arg)
{
    int k = (int)(intptr_t)arg;
    long v = k;
    if (k % 2)
        weft_chan_send(ch, &v, 1 + k % 5);
    else
        weft_chan_recv(ch, &v, k % 4 == 0 ? 5000 : 1 + k % 7); /* cancelled */
    scribble();
}

static void scribbler(void *arg)
{
    (void)arg;
    scribble();
}

static int leavers_main(void *arg)
{
    (void)arg;
    int64_t ids[LEAVERS];
    for (int k = 0; k < LEAVERS; k++)
        ids[k] = weft_go(leaver, (void *)(intptr_t)k);
    weft_sleep(2);
    for (int k = 0; k < LEAVERS; k += 4)
        weft_cancel(ids[k]);
    weft_sleep(50);
    /* Their stacks go to new coroutines, which scribble over them. */
    for (int k = 0; k < LEAVERS; k++)
        weft_go(scribbler, NULL);
    weft_sleep(5);
    long v = 1;
    rcs[0] = weft_chan_send(ch, &v, 0);
    rcs[1] = weft_chan_recv(ch, &v, 0);
    rcs[2] = weft_chan_close(ch);
    rcs[3] = weft_chan_free(ch);
    return 0;
}

Test(chan, waiters_that_leave_leave_nothing_behind, .timeout = 30)
{
    reset_log();
    cr_assert_eq(weft_chan_new(&ch, sizeof(long), 0), 0);
    cr_assert_eq(weft_main(leavers_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], -ETIMEDOUT);
    cr_assert_eq(rcs[1], -ETIMEDOUT);
    cr_assert_eq(rcs[2], 0);
    cr_assert_eq(rcs[3], 0);
}

/* ---- free ---------------------------------------------------------------------- */

static void free_waiter(void *arg)
{
    (void)arg;
    long v;
    rcs[0] = weft_chan_recv(ch, &v, 5000);
}

static int free_busy_main(void *arg)
{
    (void)arg;
    /* Made on the loop: local (a shared channel is busy until its waiter
     * has run: test_sync_shared.c). */
    if (weft_chan_new(&ch, sizeof(long), 0) != 0)
        return -ENOMEM;
    int64_t id = weft_go(free_waiter, NULL);
    weft_yield();
    rcs[1] = weft_chan_free(ch); /* someone waits */
    /* Cancelled, the waiter is on its way out but has not run yet: free
     * may go ahead, and the waiter must not touch the channel again. */
    weft_cancel(id);
    rcs[2] = weft_chan_free(ch);
    return 0;
}

Test(chan, free_with_a_waiter_is_ebusy, .timeout = 30)
{
    reset_log();
    cr_assert_eq(weft_main(free_busy_main, NULL, NULL), 0);
    cr_assert_eq(rcs[1], -EBUSY);
    cr_assert_eq(rcs[2], 0);
    cr_assert_eq(rcs[0], -ECANCELED);
}

/* ---- outside any coroutine --------------------------------------------------- */

static void late_sender(void *arg)
{
    (void)arg;
    weft_sleep(30);
    long v = 5150;
    rcs[0] = weft_chan_send(ch, &v, 1000);
}

Test(chan, on_the_loops_thread_a_wait_runs_the_loop, .timeout = 30)
{
    reset_log();
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    cr_assert_eq(weft_chan_new(&ch, sizeof(long), 0), 0);
    long v = 0;
    cr_assert_eq(weft_chan_recv(ch, &v, 0), -ETIMEDOUT);
    cr_assert_eq(weft_chan_recv(ch, &v, -1), -EDEADLK, "no coroutine could send");
    weft_go(late_sender, NULL);
    int64_t t0 = mono_ms();
    cr_assert_eq(weft_chan_recv(ch, &v, 5000), 0);
    cr_assert_geq(mono_ms() - t0, 29);
    cr_assert_eq(v, 5150);
    cr_assert_eq(rcs[0], 0);
    /* And a send that waits for a coroutine's receive. */
    weft_go(free_waiter, NULL);
    v = 1;
    cr_assert_eq(weft_chan_send(ch, &v, 5000), 0);
    cr_assert_eq(weft_loop_run(l, 5000), 0);
    cr_assert_eq(rcs[0], 0);
    /* A timeout while coroutines run on. */
    weft_go(scribbler, NULL);
    weft_go(late_sender, NULL);
    t0 = mono_ms();
    cr_assert_eq(weft_chan_recv(ch, &v, 10), -ETIMEDOUT);
    cr_assert_lt(mono_ms() - t0, 10 + LATE_MS);
    cr_assert_eq(weft_chan_recv(ch, &v, 5000), 0, "nothing was left linked");
    cr_assert_eq(weft_chan_free(ch), 0);
    weft_loop_free(l);
}

static void *plain_thread(void *arg)
{
    (void)arg;
    weft_chan *c;
    long v = 3;
    rcs[0] = weft_chan_new(&c, sizeof(long), 1); /* no loop: shared */
    rcs[1] = weft_chan_send(c, &v, -1);  /* room: completes */
    rcs[2] = weft_chan_send(c, &v, 0);   /* full: only tried */
    int64_t t0 = mono_ms();
    rcs[3] = weft_chan_send(c, &v, 100); /* the thread sleeps through it */
    got[3] = mono_ms() - t0;
    rcs[4] = weft_chan_recv(c, &v, -1);
    rcs[5] = weft_chan_recv(c, &v, 50); /* empty */
    rcs[6] = weft_chan_close(c);
    rcs[7] = weft_chan_recv(c, &v, -1);
    rcs[8] = weft_chan_free(c);
    return NULL;
}

Test(chan, on_a_thread_without_a_loop_a_wait_sleeps, .timeout = 30)
{
    reset_log();
    pthread_t t;
    pthread_create(&t, NULL, plain_thread, NULL);
    pthread_join(t, NULL);
    cr_assert_eq(rcs[0], 0);
    cr_assert_eq(rcs[1], 0);
    cr_assert_eq(rcs[2], -ETIMEDOUT);
    cr_assert_eq(rcs[3], -ETIMEDOUT);
    cr_assert_geq(got[3], 99, "never early: %ld ms", got[3]);
    cr_assert_lt(got[3], 100 + LATE_MS);
    cr_assert_eq(rcs[4], 0);
    cr_assert_eq(rcs[5], -ETIMEDOUT);
    cr_assert_eq(rcs[6], 0);
    cr_assert_eq(rcs[7], -EPIPE);
    cr_assert_eq(rcs[8], 0);
}

static void *foreign(void *arg)
{
    (void)arg;
    long v = 1;
    rcs[0] = weft_chan_send(ch, &v, 0);
    rcs[1] = weft_chan_recv(ch, &v, 0);
    rcs[2] = weft_chan_close(ch);
    weft_select_case k = {.chan = ch, .op = WEFT_CHAN_RECV, .elem = &v};
    rcs[3] = weft_select(&k, 1, 0);
    rcs[4] = (int)weft_chan_len(ch);
    return NULL;
}

static int exdev_main(void *arg)
{
    (void)arg;
    /* Made on a loop that is alone: the channel is this thread's. */
    if (weft_chan_new(&ch, sizeof(long), 2) != 0)
        return -ENOMEM;
    long v = 9;
    weft_chan_send(ch, &v, 0);
    pthread_t t;
    pthread_create(&t, NULL, foreign, NULL);
    pthread_join(t, NULL);
    rcs[5] = weft_chan_recv(ch, &v, 0);
    got[0] = v;
    return 0;
}

Test(chan, another_threads_calls_are_exdev, .timeout = 30)
{
    reset_log();
    cr_assert_eq(weft_main(exdev_main, NULL, NULL), 0);
    for (int k = 0; k < 4; k++)
        cr_assert_eq(rcs[k], -EXDEV, "call %d: %d", k, rcs[k]);
    cr_assert_eq(rcs[4], 1);
    cr_assert_eq(rcs[5], 0, "unchanged by the refused calls");
    cr_assert_eq(got[0], 9);
    cr_assert_eq(weft_chan_free(ch), 0);
}
