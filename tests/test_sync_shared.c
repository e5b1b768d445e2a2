/*
 * test_sync_shared.c - shared sync objects (made outside any loop) used
 * between loops, each on its own thread running weft_main, and from plain
 * threads: channels (in order, exactly once, plain threads sending,
 * receiving, timing out, woken by a coroutine of another loop, a loop's
 * thread waiting outside its coroutines), select over several loops'
 * channels and mixed with a local one, a completion that races a cancel,
 * free while a waiter has not yet run; the mutex across 4 loops (100,000
 * increments), FIFO among one loop's waiters, a cancel never leaving it
 * held, -EPERM and -EDEADLK; conditions, wait groups and semaphores across
 * loops; a wake of another loop's waiter that cannot be had (-ENOMEM)
 * leaving everything as it was.  ThreadSanitizer runs the heavier mix:
 * check_sync_xloop.c.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int rcs[64];
static long got[64];

static void reset(void)
{
    for (int i = 0; i < 64; i++) {
        rcs[i] = 12345;
        got[i] = -1;
    }
}

/* ---- several loops, one per thread ------------------------------------------ */

#define MAX_LOOPS 8

typedef struct loop_arg {
    int (*fn)(int idx);
    int idx;
    int rc;
} loop_arg;

static int loop_main(void *arg)
{
    loop_arg *a = arg;
    return a->fn(a->idx);
}

static void *loop_thread(void *arg)
{
    loop_arg *a = arg;
    a->rc = weft_main(loop_main, a, NULL);
    return NULL;
}

/* Runs fn(0) .. fn(n-1), each as the main of its own loop on its own
 * thread, and returns once all have; asserts that each returned 0. */
static void run_loops(int n, int (*fn)(int idx))
{
    pthread_t t[MAX_LOOPS];
    loop_arg a[MAX_LOOPS];
    for (int i = 0; i < n; i++) {
        a[i] = (loop_arg){fn, i, 0};
        cr_assert_eq(pthread_create(&t[i], NULL, loop_thread, &a[i]), 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < n; i++)
        cr_assert_eq(a[i].rc, 0, "loop %d: %s", i, weft_strerror(a[i].rc));
}

/* ---- channels between two loops ------------------------------------------------ */

#define STREAM_N 20000

static weft_chan *ch, *ch2, *ch3;
static atomic_long bad;

static int stream_side(int idx)
{
    long v;
    if (idx == 0) {
        for (long i = 0; i < STREAM_N; i++)
            if (weft_chan_send(ch, &i, 10000) != 0)
                atomic_fetch_add(&bad, 1);
        return weft_chan_close(ch);
    }
    long want = 0;
    int rc;
    while ((rc = weft_chan_recv(ch, &v, 10000)) == 0)
        if (v != want++)
            atomic_fetch_add(&bad, 1);
    if (rc != -EPIPE || want != STREAM_N)
        atomic_fetch_add(&bad, 1);
    return 0;
}

Test(shared, a_channel_between_two_loops_keeps_order, .timeout = 120)
{
    size_t caps[] = {0, 1, 64};
    for (int k = 0; k < 3; k++) {
        atomic_store(&bad, 0);
        cr_assert_eq(weft_chan_new(&ch, sizeof(long), caps[k]), 0);
        run_loops(2, stream_side);
        cr_assert_eq(atomic_load(&bad), 0, "capacity %zu", caps[k]);
        cr_assert_eq(weft_chan_free(ch), 0);
    }
}

/* ---- plain threads -------------------------------------------------------------- */

#define PLAIN_N 5000

static void *plain_sender(void *arg)
{
    long base = (long)(intptr_t)arg * PLAIN_N;
    for (long i = 0; i < PLAIN_N; i++) {
        long v = base + i;
        if (weft_chan_send(ch, &v, 10000) != 0)
            atomic_fetch_add(&bad, 1);
    }
    return NULL;
}

static long seen[2 * PLAIN_N];

static int coroutine_receiver(void *arg)
{
    (void)arg;
    for (long i = 0; i < 2 * PLAIN_N; i++) {
        long v;
        if (weft_chan_recv(ch, &v, 10000) != 0 || v < 0 || v >= 2 * PLAIN_N) {
            atomic_fetch_add(&bad, 1);
            break;
        }
        seen[v]++;
    }
    /* And back: the plain threads receive what a coroutine sends. */
    for (long i = 0; i < 2 * PLAIN_N; i++)
        if (weft_chan_send(ch2, &i, 10000) != 0)
            atomic_fetch_add(&bad, 1);
    return 0;
}

static atomic_long back_sum;

static void *plain_receiver(void *arg)
{
    (void)arg;
    for (long i = 0; i < PLAIN_N; i++) {
        long v;
        if (weft_chan_recv(ch2, &v, 10000) != 0) {
            atomic_fetch_add(&bad, 1);
            break;
        }
        atomic_fetch_add(&back_sum, v);
    }
    return NULL;
}

Test(shared, plain_threads_send_to_and_receive_from_coroutines, .timeout = 120)
{
    atomic_store(&bad, 0);
    atomic_store(&back_sum, 0);
    memset(seen, 0, sizeof seen);
    cr_assert_eq(weft_chan_new(&ch, sizeof(long), 0), 0);
    cr_assert_eq(weft_chan_new(&ch2, sizeof(long), 3), 0);
    pthread_t s[2], r[2];
    for (intptr_t i = 0; i < 2; i++) {
        pthread_create(&s[i], NULL, plain_sender, (void *)i);
        pthread_create(&r[i], NULL, plain_receiver, NULL);
    }
    cr_assert_eq(weft_main(coroutine_receiver, NULL, NULL), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(s[i], NULL);
        pthread_join(r[i], NULL);
    }
    cr_assert_eq(atomic_load(&bad), 0);
    for (long i = 0; i < 2 * PLAIN_N; i++)
        cr_assert_eq(seen[i], 1, "value %ld received %ld times", i, seen[i]);
    long n = 2 * PLAIN_N;
    cr_assert_eq(atomic_load(&back_sum), n * (n - 1) / 2);
    cr_assert_eq(weft_chan_free(ch), 0);
    cr_assert_eq(weft_chan_free(ch2), 0);
}

static atomic_int receiver_in;
static int64_t send_at, received_at;

static void *blocked_receiver(void *arg)
{
    (void)arg;
    long v = 0;
    atomic_store(&receiver_in, 1);
    rcs[0] = weft_chan_recv(ch, &v, -1);
    received_at = mono_ns();
    got[0] = v;
    return NULL;
}

static int late_send_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&receiver_in))
        weft_sleep(1);
    weft_sleep(50); /* the thread is asleep in its receive by now */
    long v = 4242;
    send_at = mono_ns();
    rcs[1] = weft_chan_send(ch, &v, 5000);
    return 0;
}

Test(shared, a_plain_thread_in_recv_is_woken_by_another_loops_coroutine, .timeout = 60)
{
    reset();
    atomic_store(&receiver_in, 0);
    cr_assert_eq(weft_chan_new(&ch, sizeof(long), 0), 0);
    pthread_t t;
    pthread_create(&t, NULL, blocked_receiver, NULL);
    cr_assert_eq(weft_main(late_send_main, NULL, NULL), 0);
    pthread_join(t, NULL);
    cr_assert_eq(rcs[0], 0);
    cr_assert_eq(rcs[1], 0);
    cr_assert_eq(got[0], 4242);
    cr_assert_geq(received_at, send_at, "the receive ended only with the send");
    cr_assert_eq(weft_chan_free(ch), 0);
}

static void *plain_timeouts(void *arg)
{
    (void)arg;
    long v = 1;
    int64_t t0 = mono_ms();
    rcs[0] = weft_chan_recv(ch, &v, 60);
    got[0] = mono_ms() - t0;
    t0 = mono_ms();
    rcs[1] = weft_chan_send(ch, &v, 60);
    got[1] = mono_ms() - t0;
    weft_select_case k[2] = {{ch, WEFT_CHAN_RECV, &v, 0}, {ch2, WEFT_CHAN_SEND, &v, 0}};
    t0 = mono_ms();
    rcs[2] = weft_select(k, 2, 60);
    got[2] = mono_ms() - t0;
    rcs[3] = weft_chan_recv(ch, &v, 0);
    rcs[4] = weft_mutex_lock(NULL, 0);
    return NULL;
}

Test(shared, plain_thread_waits_time_out_and_leave_nothing, .timeout = 60)
{
    reset();
    cr_assert_eq(weft_chan_new(&ch, sizeof(long), 0), 0);
    cr_assert_eq(weft_chan_new(&ch2, sizeof(long), 0), 0);
    pthread_t t;
    pthread_create(&t, NULL, plain_timeouts, NULL);
    pthread_join(t, NULL);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(rcs[i], -ETIMEDOUT, "wait %d: %s", i, weft_strerror(rcs[i]));
        cr_assert_geq(got[i], 59, "never early: %ld", got[i]);
        cr_assert_lt(got[i], 60 + LATE_MS);
    }
    cr_assert_eq(rcs[3], -ETIMEDOUT);
    cr_assert_eq(rcs[4], -EINVAL);
    cr_assert_eq(weft_chan_free(ch), 0, "nothing left linked");
    cr_assert_eq(weft_chan_free(ch2), 0, "nothing left linked");
}

static void *send_after(void *arg)
{
    usleep((useconds_t)(intptr_t)arg * 1000);
    long v = 77;
    rcs[10] = weft_chan_send(ch, &v, 5000);
    return NULL;
}

static void ticker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++)
        weft_sleep(2);
}

Test(shared, a_loops_thread_waiting_outside_coroutines_is_woken_by_a_plain_thread, .timeout = 60)
{
    reset();
    cr_assert_eq(weft_chan_new(&ch, sizeof(long), 0), 0); /* before the loop: shared */
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    for (int round = 0; round < 20; round++) {
        if (round % 2)
            weft_go(ticker, NULL);
        pthread_t t;
        pthread_create(&t, NULL, send_after, (void *)(intptr_t)(round % 5 * 10));
        long v = 0;
        int rc = weft_chan_recv(ch, &v, 10000);
        pthread_join(t, NULL);
        cr_assert_eq(rc, 0, "round %d: %s", round, weft_strerror(rc));
        cr_assert_eq(v, 77);
        cr_assert_eq(rcs[10], 0);
    }
    /* With no coroutine left a shared wait is not -EDEADLK: another thread
     * could complete it.  It times out. */
    long v;
    cr_assert_eq(weft_loop_run(l, 10000), 0);
    cr_assert_eq(weft_chan_recv(ch, &v, 20), -ETIMEDOUT);
    cr_assert_eq(weft_chan_free(ch), 0);
    weft_loop_free(l);
}

/* ---- races with cancel and free ----------------------------------------------- */

static void queued_recv(void *arg)
{
    int k = (int)(intptr_t)arg;
    long v = -1;
    rcs[k] = weft_chan_recv(ch, &v, k == 0 ? 5000 : 200);
    got[k] = v;
    if (k == 0)
        rcs[5] = weft_sleep(1); /* where the cancel went */
}

static int race_main(void *arg)
{
    (void)arg;
    int64_t first = weft_go(queued_recv, (void *)0);
    weft_go(queued_recv, (void *)1);
    weft_sleep(10);
    weft_cancel(first); /* it is woken, but has not run yet */
    long v = 31;
    rcs[2] = weft_chan_send(ch, &v, 0);
    return 0;
}

Test(shared, a_completion_racing_a_cancel_counts, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_chan_new(&ch, sizeof(long), 0), 0);
    cr_assert_eq(weft_main(race_main, NULL, NULL), 0);
    cr_assert_eq(rcs[2], 0);
    cr_assert_eq(rcs[0], 0, "still linked, the cancelled receiver took it");
    cr_assert_eq(got[0], 31);
    cr_assert_eq(rcs[5], -ECANCELED, "the cancel went to the next call");
    cr_assert_eq(rcs[1], -ETIMEDOUT, "the value went once");
    cr_assert_eq(weft_chan_free(ch), 0);
}

static void free_waiter(void *arg)
{
    (void)arg;
    long v;
    rcs[0] = weft_chan_recv(ch, &v, 5000);
    rcs[3] = weft_chan_free(ch); /* right after its own call returned */
}

static int free_main(void *arg)
{
    (void)arg;
    int64_t id = weft_go(free_waiter, NULL);
    weft_yield();
    rcs[1] = weft_chan_free(ch);
    weft_cancel(id);
    rcs[2] = weft_chan_free(ch); /* woken, not yet run: still linked */
    return 0;
}

Test(shared, free_is_ebusy_until_the_waiter_has_left, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_chan_new(&ch, sizeof(long), 0), 0);
    cr_assert_eq(weft_main(free_main, NULL, NULL), 0);
    cr_assert_eq(rcs[1], -EBUSY);
    cr_assert_eq(rcs[2], -EBUSY);
    cr_assert_eq(rcs[0], -ECANCELED);
    cr_assert_eq(rcs[3], 0);
}

static void deadline_waiter(void *arg)
{
    (void)arg;
    long v;
    weft_deadline_set(weft_now() + 40);
    int64_t t0 = mono_ms();
    rcs[0] = weft_chan_recv(ch, &v, -1);
    got[0] = mono_ms() - t0;
    rcs[1] = weft_mutex_lock(NULL, -1);
}

static int deadline_main(void *arg)
{
    (void)arg;
    weft_go(deadline_waiter, NULL);
    return 0;
}

Test(shared, a_wait_ends_at_the_coroutines_deadline, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_chan_new(&ch, sizeof(long), 0), 0);
    cr_assert_eq(weft_main(deadline_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], -ETIMEDOUT);
    cr_assert_geq(got[0], 39);
    cr_assert_lt(got[0], 40 + LATE_MS);
    cr_assert_eq(weft_chan_free(ch), 0);
}

/* ---- select ---------------------------------------------------------------------- */

#define SEL_N 5000

static long sel_count[3];

static int select_side(int idx)
{
    weft_chan *chans[3] = {ch, ch2, ch3};
    if (idx < 3) {
        for (long i = 0; i < SEL_N; i++)
            if (weft_chan_send(chans[idx], &i, 10000) != 0)
                atomic_fetch_add(&bad, 1);
        return 0;
    }
    long v[3];
    long want[3] = {0, 0, 0};
    for (long n = 0; n < 3 * SEL_N; n++) {
        weft_select_case k[3] = {{ch, WEFT_CHAN_RECV, &v[0], 0},
                                 {ch2, WEFT_CHAN_RECV, &v[1], 0},
                                 {ch3, WEFT_CHAN_RECV, &v[2], 0}};
        int i = weft_select(k, 3, 10000);
        if (i < 0 || k[i].result != 0 || v[i] != want[i]++) {
            atomic_fetch_add(&bad, 1);
            break;
        }
        sel_count[i]++;
    }
    return 0;
}

Test(shared, select_receives_from_three_loops_each_value_once_in_order, .timeout = 120)
{
    size_t caps[] = {0, 4};
    for (int c = 0; c < 2; c++) {
        atomic_store(&bad, 0);
        memset(sel_count, 0, sizeof sel_count);
        cr_assert_eq(weft_chan_new(&ch, sizeof(long), caps[c]), 0);
        cr_assert_eq(weft_chan_new(&ch2, sizeof(long), caps[c]), 0);
        cr_assert_eq(weft_chan_new(&ch3, sizeof(long), caps[c]), 0);
        run_loops(4, select_side);
        cr_assert_eq(atomic_load(&bad), 0);
        for (int i = 0; i < 3; i++)
            cr_assert_eq(sel_count[i], SEL_N);
        cr_assert_eq(weft_chan_free(ch), 0);
        cr_assert_eq(weft_chan_free(ch2), 0);
        cr_assert_eq(weft_chan_free(ch3), 0);
    }
}

static weft_chan *local;

static void local_sender(void *arg)
{
    (void)arg;
    for (long i = 0; i < SEL_N; i++)
        if (weft_chan_send(local, &i, 10000) != 0)
            atomic_fetch_add(&bad, 1);
}

static void *shared_sender(void *arg)
{
    (void)arg;
    for (long i = 0; i < SEL_N; i++)
        if (weft_chan_send(ch, &i, 10000) != 0)
            atomic_fetch_add(&bad, 1);
    return NULL;
}

static void *foreign_select(void *arg)
{
    (void)arg;
    long v;
    weft_select_case k[2] = {{ch, WEFT_CHAN_RECV, &v, 0}, {local, WEFT_CHAN_RECV, &v, 0}};
    rcs[20] = weft_select(k, 2, 0);
    return NULL;
}

static int mixed_main(void *arg)
{
    (void)arg;
    if (weft_chan_new(&local, sizeof(long), 0) != 0) /* on a lone loop: local */
        return -ENOMEM;
    pthread_t t;
    pthread_create(&t, NULL, shared_sender, NULL);
    weft_go(local_sender, NULL);
    long v[2], want[2] = {0, 0};
    for (long n = 0; n < 2 * SEL_N; n++) {
        weft_select_case k[2] = {{ch, WEFT_CHAN_RECV, &v[0], 0}, {local, WEFT_CHAN_RECV, &v[1], 0}};
        int i = weft_select(k, 2, 10000);
        if (i < 0 || k[i].result != 0 || v[i] != want[i]++) {
            atomic_fetch_add(&bad, 1);
            break;
        }
        sel_count[i]++;
    }
    pthread_join(t, NULL);
    pthread_create(&t, NULL, foreign_select, NULL);
    pthread_join(t, NULL);
    return weft_chan_free(local);
}

Test(shared, select_mixes_a_shared_channel_and_a_local_one, .timeout = 120)
{
    reset();
    atomic_store(&bad, 0);
    memset(sel_count, 0, sizeof sel_count);
    cr_assert_eq(weft_chan_new(&ch, sizeof(long), 0), 0);
    cr_assert_eq(weft_main(mixed_main, NULL, NULL), 0);
    cr_assert_eq(atomic_load(&bad), 0);
    cr_assert_eq(sel_count[0], SEL_N);
    cr_assert_eq(sel_count[1], SEL_N);
    cr_assert_eq(rcs[20], -EXDEV, "another thread's local channel in a select");
    cr_assert_eq(weft_chan_free(ch), 0);
}

/* ---- mutex ---------------------------------------------------------------------------- */

#define MUTEX_LOOPS 4
#define MUTEX_COS 8
#define MUTEX_TOTAL 100000

static weft_mutex *mu;
static long counter;
static atomic_int holders, max_holders;

static void incrementer(void *arg)
{
    (void)arg;
    for (int i = 0; i < MUTEX_TOTAL / (MUTEX_LOOPS * MUTEX_COS); i++) {
        if (weft_mutex_lock(mu, 30000) != 0) {
            atomic_fetch_add(&bad, 1);
            return;
        }
        int h = atomic_fetch_add(&holders, 1) + 1;
        if (h > atomic_load(&max_holders))
            atomic_store(&max_holders, h);
        counter++; /* plain: the mutex is what makes it safe */
        if (i % 64 == 0)
            weft_yield(); /* hold it across a switch now and then */
        atomic_fetch_sub(&holders, 1);
        if (weft_mutex_unlock(mu) != 0)
            atomic_fetch_add(&bad, 1);
    }
}

static int mutex_side(int idx)
{
    (void)idx;
    for (int i = 0; i < MUTEX_COS; i++)
        weft_go(incrementer, NULL);
    return 0;
}

Test(shared, a_mutex_across_four_loops_counts_every_increment, .timeout = 300)
{
    atomic_store(&bad, 0);
    atomic_store(&max_holders, 0);
    counter = 0;
    cr_assert_eq(weft_mutex_new(&mu), 0);
    run_loops(MUTEX_LOOPS, mutex_side);
    cr_assert_eq(atomic_load(&bad), 0);
    cr_assert_eq(counter, MUTEX_TOTAL);
    cr_assert_eq(atomic_load(&max_holders), 1);
    cr_assert_eq(weft_mutex_free(mu), 0);
}

#define FIFO_N 50

static int order[FIFO_N + 8], norder;

static void fifo_waiter(void *arg)
{
    int k = (int)(intptr_t)arg;
    rcs[k % 64] = weft_mutex_lock(mu, 10000);
    if (rcs[k % 64] == 0) {
        order[norder++] = k;
        weft_mutex_unlock(mu);
    }
}

static int fifo_main(void *arg)
{
    (void)arg;
    weft_mutex_lock(mu, 0);
    for (int k = 0; k < FIFO_N; k++) {
        weft_go(fifo_waiter, (void *)(intptr_t)k);
        weft_yield(); /* each queues before the next starts */
    }
    weft_mutex_unlock(mu);
    return 0;
}

Test(shared, a_mutex_serves_one_loops_waiters_in_order, .timeout = 60)
{
    norder = 0;
    cr_assert_eq(weft_mutex_new(&mu), 0);
    cr_assert_eq(weft_main(fifo_main, NULL, NULL), 0);
    cr_assert_eq(norder, FIFO_N);
    for (int i = 0; i < FIFO_N; i++)
        cr_assert_eq(order[i], i, "position %d went to %d", i, order[i]);
    cr_assert_eq(weft_mutex_free(mu), 0);
}

static void cancel_waiter(void *arg)
{
    int k = (int)(intptr_t)arg;
    rcs[k] = weft_mutex_lock(mu, 10000);
    if (rcs[k] == 0) {
        order[norder++] = k;
        rcs[10 + k] = weft_yield(); /* a cancel that came too late lands here */
        rcs[20 + k] = weft_mutex_unlock(mu);
    }
}

static int mutex_cancel_main(void *arg)
{
    (void)arg;
    weft_mutex_lock(mu, 0);
    int64_t a = weft_go(cancel_waiter, (void *)1);
    int64_t b = weft_go(cancel_waiter, (void *)2);
    weft_go(cancel_waiter, (void *)3);
    weft_sleep(20);
    weft_cancel(b);
    weft_sleep(20); /* b has left */
    /* Cancel and unlock in the same step: on a shared mutex the hand-off
     * still counts, and the holder's next call gets the cancel. */
    weft_cancel(a);
    weft_mutex_unlock(mu);
    weft_sleep(20);
    rcs[30] = weft_mutex_lock(mu, 5000);
    rcs[31] = weft_mutex_unlock(mu);
    return 0;
}

Test(shared, a_cancelled_mutex_waiter_never_leaves_it_held, .timeout = 60)
{
    reset();
    norder = 0;
    cr_assert_eq(weft_mutex_new(&mu), 0);
    cr_assert_eq(weft_main(mutex_cancel_main, NULL, NULL), 0);
    cr_assert_eq(rcs[2], -ECANCELED);
    cr_assert_eq(rcs[1], 0, "handed over as the cancel came");
    cr_assert_eq(rcs[11], -ECANCELED);
    cr_assert_eq(rcs[21], 0);
    cr_assert_eq(rcs[3], 0);
    cr_assert_eq(rcs[23], 0);
    cr_assert_eq(norder, 2);
    cr_assert_eq(order[0], 1);
    cr_assert_eq(order[1], 3);
    cr_assert_eq(rcs[30], 0);
    cr_assert_eq(rcs[31], 0);
    cr_assert_eq(weft_mutex_free(mu), 0, "nobody holds it");
}

static void *foreign_mutex(void *arg)
{
    (void)arg;
    rcs[0] = weft_mutex_unlock(mu); /* another thread */
    rcs[1] = weft_mutex_lock(mu, 30);
    return NULL;
}

static void other_co(void *arg)
{
    (void)arg;
    rcs[2] = weft_mutex_unlock(mu); /* another coroutine */
}

static int owner_main(void *arg)
{
    (void)arg;
    rcs[3] = weft_mutex_lock(mu, 0);
    rcs[4] = weft_mutex_lock(mu, 0); /* itself */
    pthread_t t;
    pthread_create(&t, NULL, foreign_mutex, NULL);
    pthread_join(t, NULL);
    weft_go(other_co, NULL);
    weft_yield();
    rcs[5] = weft_mutex_free(mu);
    rcs[6] = weft_mutex_unlock(mu);
    return 0;
}

Test(shared, unlock_by_another_is_eperm, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_mutex_new(&mu), 0);
    cr_assert_eq(weft_main(owner_main, NULL, NULL), 0);
    cr_assert_eq(rcs[3], 0);
    cr_assert_eq(rcs[4], -EDEADLK);
    cr_assert_eq(rcs[0], -EPERM);
    cr_assert_eq(rcs[1], -ETIMEDOUT);
    cr_assert_eq(rcs[2], -EPERM);
    cr_assert_eq(rcs[5], -EBUSY);
    cr_assert_eq(rcs[6], 0);
    /* The main thread, outside any loop, is a holder of its own. */
    cr_assert_eq(weft_mutex_lock(mu, 0), 0);
    pthread_t t;
    pthread_create(&t, NULL, foreign_mutex, NULL);
    pthread_join(t, NULL);
    cr_assert_eq(rcs[0], -EPERM);
    cr_assert_eq(rcs[1], -ETIMEDOUT);
    cr_assert_eq(weft_mutex_unlock(mu), 0);
    cr_assert_eq(weft_mutex_free(mu), 0);
}

/* ---- conditions, wait groups, semaphores ---------------------------------------------- */

#define COND_ITEMS 4000

static weft_cond *cv;
static long items, consumed;

static void consumer(void *arg)
{
    (void)arg;
    for (;;) {
        if (weft_mutex_lock(mu, 30000) != 0) {
            atomic_fetch_add(&bad, 1);
            return;
        }
        while (items == 0 && consumed < COND_ITEMS) {
            int rc = weft_cond_wait(cv, mu, 30000);
            if (rc != 0) {
                atomic_fetch_add(&bad, 1);
                break;
            }
        }
        if (consumed >= COND_ITEMS) {
            weft_mutex_unlock(mu);
            return;
        }
        items--;
        if (++consumed == COND_ITEMS)
            weft_cond_broadcast(cv); /* the others may stop */
        weft_mutex_unlock(mu);
    }
}

static int cond_side(int idx)
{
    if (idx == 0) {
        for (long i = 0; i < COND_ITEMS; i++) {
            if (weft_mutex_lock(mu, 30000) != 0)
                return -1;
            items++;
            weft_cond_signal(cv);
            weft_mutex_unlock(mu);
            if (i % 16 == 0)
                weft_yield();
        }
        return 0;
    }
    for (int i = 0; i < 4; i++)
        weft_go(consumer, NULL);
    return 0;
}

static void *timed_cond(void *arg)
{
    (void)arg;
    weft_mutex_lock(mu, -1);
    int64_t t0 = mono_ms();
    rcs[0] = weft_cond_wait(cv, mu, 40);
    got[0] = mono_ms() - t0;
    rcs[1] = weft_mutex_unlock(mu); /* held again */
    return NULL;
}

Test(shared, a_condition_across_loops_loses_no_signal, .timeout = 120)
{
    reset();
    atomic_store(&bad, 0);
    items = consumed = 0;
    cr_assert_eq(weft_mutex_new(&mu), 0);
    cr_assert_eq(weft_cond_new(&cv), 0);
    run_loops(3, cond_side);
    cr_assert_eq(atomic_load(&bad), 0);
    cr_assert_eq(consumed, COND_ITEMS);
    cr_assert_eq(items, 0);
    pthread_t t;
    pthread_create(&t, NULL, timed_cond, NULL);
    pthread_join(t, NULL);
    cr_assert_eq(rcs[0], -ETIMEDOUT);
    cr_assert_geq(got[0], 39);
    cr_assert_eq(rcs[1], 0);
    cr_assert_eq(weft_cond_free(cv), 0);
    cr_assert_eq(weft_mutex_free(mu), 0);
}

static weft_wg *wg;

static void worker_done(void *arg)
{
    weft_sleep((int64_t)(intptr_t)arg);
    if (weft_wg_done(wg) < 0)
        atomic_fetch_add(&bad, 1);
}

static int wg_side(int idx)
{
    for (int i = 0; i < 10; i++)
        weft_go(worker_done, (void *)(intptr_t)(20 + idx * 5 + i));
    return 0;
}

static void *wg_thread(void *arg)
{
    (void)arg;
    rcs[0] = weft_wg_wait(wg, 5); /* not yet */
    int64_t t0 = mono_ms();
    rcs[1] = weft_wg_wait(wg, -1);
    got[1] = mono_ms() - t0;
    return NULL;
}

Test(shared, a_wait_group_done_on_loops_waited_for_by_a_plain_thread, .timeout = 60)
{
    reset();
    atomic_store(&bad, 0);
    cr_assert_eq(weft_wg_new(&wg), 0);
    cr_assert_eq(weft_wg_add(wg, 40), 40);
    pthread_t t;
    pthread_create(&t, NULL, wg_thread, NULL);
    run_loops(4, wg_side);
    pthread_join(t, NULL);
    cr_assert_eq(atomic_load(&bad), 0);
    cr_assert_eq(rcs[0], -ETIMEDOUT);
    cr_assert_eq(rcs[1], 0);
    cr_assert_eq(weft_wg_add(wg, -1), -EINVAL);
    cr_assert_eq(weft_wg_free(wg), 0);
}

#define SEM_PERMITS 3

static weft_sem *sem;
static atomic_int sem_in, sem_max;
static atomic_long sem_total;

static void sem_user(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++) {
        if (weft_sem_acquire(sem, 30000) != 0) {
            atomic_fetch_add(&bad, 1);
            return;
        }
        int in = atomic_fetch_add(&sem_in, 1) + 1;
        if (in > atomic_load(&sem_max))
            atomic_store(&sem_max, in);
        if (i % 8 == 0)
            weft_yield();
        atomic_fetch_sub(&sem_in, 1);
        atomic_fetch_add(&sem_total, 1);
        if (weft_sem_release(sem) != 0)
            atomic_fetch_add(&bad, 1);
    }
}

static int sem_side(int idx)
{
    (void)idx;
    for (int i = 0; i < 10; i++)
        weft_go(sem_user, NULL);
    return 0;
}

Test(shared, a_semaphore_across_loops_never_lets_more_in, .timeout = 120)
{
    atomic_store(&bad, 0);
    atomic_store(&sem_max, 0);
    atomic_store(&sem_total, 0);
    cr_assert_eq(weft_sem_new(&sem, SEM_PERMITS), 0);
    run_loops(4, sem_side);
    cr_assert_eq(atomic_load(&bad), 0);
    cr_assert_eq(atomic_load(&sem_total), 4 * 10 * 200);
    cr_assert_leq(atomic_load(&sem_max), SEM_PERMITS);
    for (int i = 0; i < SEM_PERMITS; i++)
        cr_assert_eq(weft_sem_acquire(sem, 0), 0, "every permit came back");
    cr_assert_eq(weft_sem_acquire(sem, 0), -ETIMEDOUT);
    cr_assert_eq(weft_sem_free(sem), 0);
}

/* ---- a wake that cannot be had ------------------------------------------------------- */

/* A coroutine waits on each object in turn; a plain thread completes it
 * with its first allocation failing (the wake of another loop's
 * coroutine), which must change nothing, then again without. */
static atomic_int stage, parked_in, stages_over;

/* Waits until the coroutine is parked in stage s's call. */
static void wait_stage(int s)
{
    while (atomic_load(&parked_in) != s)
        usleep(1000);
}

/* Runs on the coroutine's loop: it sees a stage only once the coroutine
 * that set it has parked, as it parks in that stage's call right after
 * setting it. */
static void stage_watcher(void *arg)
{
    (void)arg;
    while (!atomic_load(&stages_over)) {
        atomic_store(&parked_in, atomic_load(&stage));
        weft_sleep(1);
    }
}

static int enomem_main(void *arg)
{
    (void)arg;
    long v = -1;
    weft_go(stage_watcher, NULL);
    atomic_store(&stage, 1);
    rcs[0] = weft_chan_recv(ch, &v, 10000); /* 1: a send */
    got[0] = v;
    atomic_store(&stage, 2);
    rcs[1] = weft_mutex_lock(mu, 10000); /* 2: an unlock */
    weft_mutex_unlock(mu);
    atomic_store(&stage, 3);
    rcs[2] = weft_sem_acquire(sem, 10000); /* 3: a release */
    atomic_store(&stage, 4);
    rcs[3] = weft_wg_wait(wg, 10000); /* 4: the counter at 0 */
    atomic_store(&stage, 5);
    rcs[4] = weft_chan_recv(ch2, &v, 10000); /* 5: a close */
    weft_mutex_lock(mu, -1);
    atomic_store(&stage, 6);
    rcs[5] = weft_cond_wait(cv, mu, 10000); /* 6: a signal */
    weft_mutex_unlock(mu);
    atomic_store(&stage, 7);
    atomic_store(&stages_over, 1);
    return 0;
}

static void fail_next_alloc(void)
{
    weft_fault_clear();
    weft_fault_set(WEFT_FAULT_MALLOC, 1, ENOMEM);
}

static void *enomem_thread(void *arg)
{
    (void)arg;
    long v = 99;
    rcs[12] = weft_mutex_lock(mu, -1); /* before the coroutine wants it */
    wait_stage(1);
    fail_next_alloc();
    rcs[10] = weft_chan_send(ch, &v, 0);
    rcs[11] = weft_chan_send(ch, &v, 5000);

    wait_stage(2);
    fail_next_alloc();
    rcs[13] = weft_mutex_unlock(mu);
    rcs[14] = weft_mutex_unlock(mu);

    wait_stage(3);
    fail_next_alloc();
    rcs[15] = weft_sem_release(sem);
    rcs[16] = weft_sem_release(sem);

    wait_stage(4);
    fail_next_alloc();
    rcs[17] = weft_wg_done(wg);
    rcs[18] = weft_wg_add(wg, 0);

    wait_stage(5);
    fail_next_alloc();
    rcs[19] = weft_chan_close(ch2);
    rcs[20] = weft_chan_close(ch2);

    wait_stage(6);
    fail_next_alloc();
    rcs[21] = weft_cond_signal(cv);
    rcs[22] = weft_cond_signal(cv);
    weft_fault_clear();
    return NULL;
}

Test(shared, a_wake_that_cannot_be_had_changes_nothing, .timeout = 60)
{
    reset();
    cr_assert_eq(weft_chan_new(&ch, sizeof(long), 0), 0);
    cr_assert_eq(weft_chan_new(&ch2, sizeof(long), 0), 0);
    cr_assert_eq(weft_mutex_new(&mu), 0);
    cr_assert_eq(weft_sem_new(&sem, 0), 0);
    cr_assert_eq(weft_wg_new(&wg), 0);
    cr_assert_eq(weft_wg_add(wg, 1), 1);
    cr_assert_eq(weft_cond_new(&cv), 0);
    atomic_store(&stage, 0);
    atomic_store(&parked_in, 0);
    atomic_store(&stages_over, 0);
    pthread_t t;
    pthread_create(&t, NULL, enomem_thread, NULL);
    cr_assert_eq(weft_main(enomem_main, NULL, NULL), 0);
    pthread_join(t, NULL);
    cr_assert_eq(rcs[10], -ENOMEM, "send: %s", weft_strerror(rcs[10]));
    cr_assert_eq(rcs[11], 0);
    cr_assert_eq(rcs[0], 0);
    cr_assert_eq(got[0], 99);
    cr_assert_eq(rcs[12], 0);
    cr_assert_eq(rcs[13], -ENOMEM, "unlock: still held");
    cr_assert_eq(rcs[14], 0);
    cr_assert_eq(rcs[1], 0);
    cr_assert_eq(rcs[15], -ENOMEM);
    cr_assert_eq(rcs[16], 0);
    cr_assert_eq(rcs[2], 0);
    cr_assert_eq(rcs[17], -ENOMEM);
    cr_assert_eq(rcs[18], 0);
    cr_assert_eq(rcs[3], 0);
    cr_assert_eq(rcs[19], -ENOMEM);
    cr_assert_eq(rcs[20], -EPIPE);
    cr_assert_eq(rcs[4], -EPIPE);
    cr_assert_eq(rcs[21], -ENOMEM);
    cr_assert_eq(rcs[22], 0);
    cr_assert_eq(rcs[5], 0);
    cr_assert_eq(weft_sem_acquire(sem, 0), -ETIMEDOUT, "one permit, taken once");
    cr_assert_eq(weft_chan_free(ch), 0);
    cr_assert_eq(weft_chan_free(ch2), 0);
    cr_assert_eq(weft_mutex_free(mu), 0);
    cr_assert_eq(weft_sem_free(sem), 0);
    cr_assert_eq(weft_wg_free(wg), 0);
    cr_assert_eq(weft_cond_free(cv), 0);
}

/* A select of more cases than fit on the stack, over shared channels,
 * with its record's allocation failing. */
Test(shared, a_large_select_without_memory_is_enomem, .timeout = 30)
{
    weft_chan *c[12];
    weft_select_case k[12];
    long v;
    for (int i = 0; i < 12; i++) {
        cr_assert_eq(weft_chan_new(&c[i], sizeof(long), 0), 0);
        k[i] = (weft_select_case){c[i], WEFT_CHAN_RECV, &v, 0};
    }
    fail_next_alloc();
    cr_assert_eq(weft_select(k, 12, 10), -ENOMEM);
    weft_fault_clear();
    cr_assert_eq(weft_select(k, 12, 10), -ETIMEDOUT);
    for (int i = 0; i < 12; i++)
        cr_assert_eq(weft_chan_free(c[i]), 0);
}
