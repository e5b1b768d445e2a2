/*
 * test_sync_select.c - weft_select: a random ready case, so none starves
 * (#64: two always-ready channels, 100,000 selects, each chosen 50 % +- 2
 * %; three ready among five; send cases too); a waiting select completes
 * exactly one case and leaves nothing linked on the others; closed
 * channels; cases turned off; timeout 0 / finite / deadline / cancel; more
 * cases than fit on the stack; a channel twice in one select; selects
 * meeting selects; outside any coroutine.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static __attribute__((noinline)) void scribble(void)
{
    volatile unsigned char junk[8192];
    memset((void *)junk, 0x5a, sizeof junk);
}

static int rcs[16];
static long vals[16];
static int64_t took[4];

static void reset(void)
{
    memset(rcs, 0x7f, sizeof rcs);
    memset(vals, 0, sizeof vals);
}

/* ---- fairness (#64) ------------------------------------------------------- */

#define SELECTS 100000

static long chosen[5];
static int fair_failed;

static int fair_recv_main(void *arg)
{
    int n = (int)(intptr_t)arg;
    weft_chan *c[5];
    weft_select_case k[5];
    long v[5];
    for (int i = 0; i < n; i++) {
        weft_chan_new(&c[i], sizeof(long), 1);
        long x = i;
        weft_chan_send(c[i], &x, 0);
        k[i] = (weft_select_case){.chan = c[i], .op = WEFT_CHAN_RECV, .elem = &v[i]};
    }
    for (int s = 0; s < SELECTS; s++) {
        int i = weft_select(k, n, -1);
        if (i < 0 || i >= n || k[i].result != 0 || v[i] != i) {
            fair_failed++;
            continue;
        }
        chosen[i]++;
        weft_chan_send(c[i], &v[i], 0); /* ready again */
    }
    for (int i = 0; i < n; i++)
        weft_chan_free(c[i]);
    return 0;
}

Test(select, two_ready_channels_chosen_evenly, .timeout = 60)
{
    memset(chosen, 0, sizeof chosen);
    fair_failed = 0;
    cr_assert_eq(weft_main(fair_recv_main, (void *)2, NULL), 0);
    cr_assert_eq(fair_failed, 0);
    for (int i = 0; i < 2; i++)
        cr_assert(chosen[i] >= SELECTS * 48 / 100 && chosen[i] <= SELECTS * 52 / 100,
                  "case %d chosen %ld times of %d", i, chosen[i], SELECTS);
}

/* Three always ready, two never (turned off and empty): a third each. */
static int fair_mixed_main(void *arg)
{
    (void)arg;
    weft_chan *c[5];
    weft_select_case k[5];
    long v[5];
    for (int i = 0; i < 5; i++) {
        weft_chan_new(&c[i], sizeof(long), 1);
        k[i] = (weft_select_case){.chan = c[i], .op = WEFT_CHAN_SEND, .elem = &v[i]};
        v[i] = i;
    }
    weft_chan_send(c[1], &v[1], 0); /* full: its send case is not ready */
    k[3].chan = NULL;               /* off */
    for (int s = 0; s < SELECTS; s++) {
        int i = weft_select(k, 5, -1);
        if (i < 0 || i == 1 || i == 3 || k[i].result != 0) {
            fair_failed++;
            continue;
        }
        chosen[i]++;
        long x;
        weft_chan_recv(c[i], &x, 0); /* room again */
    }
    for (int i = 0; i < 5; i++)
        weft_chan_free(c[i]);
    return 0;
}

Test(select, three_ready_sends_of_five_chosen_evenly, .timeout = 60)
{
    memset(chosen, 0, sizeof chosen);
    fair_failed = 0;
    cr_assert_eq(weft_main(fair_mixed_main, NULL, NULL), 0);
    cr_assert_eq(fair_failed, 0);
    cr_assert_eq(chosen[1] + chosen[3], 0);
    for (int i = 0; i < 5; i += 2)
        cr_assert(chosen[i] >= SELECTS * 31 / 100 && chosen[i] <= SELECTS * 35 / 100,
                  "case %d chosen %ld times of %d", i, chosen[i], SELECTS);
}

/* ---- a waiting select ---------------------------------------------------- */

static weft_chan *A, *B, *C;

static void send_b_later(void *arg)
{
    long v = (long)(intptr_t)arg;
    weft_sleep(20);
    rcs[10] = weft_chan_send(B, &v, 1000);
}

static int wait_main(void *arg)
{
    (void)arg;
    weft_go(send_b_later, (void *)(intptr_t)31);
    long va = -1, vb = -1;
    weft_select_case k[2] = {{A, WEFT_CHAN_RECV, &va, 99}, {B, WEFT_CHAN_RECV, &vb, 99}};
    rcs[0] = weft_select(k, 2, 2000);
    rcs[1] = k[0].result;
    rcs[2] = k[1].result;
    vals[0] = va;
    vals[1] = vb;
    scribble();
    long x = 1;
    rcs[3] = weft_chan_send(A, &x, 0); /* the select's entry on A is gone */
    rcs[4] = weft_chan_send(B, &x, 0);
    return 0;
}

Test(select, a_waiting_select_completes_one_case_and_unlinks_the_rest, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_chan_new(&A, sizeof(long), 0), 0);
    cr_assert_eq(weft_chan_new(&B, sizeof(long), 0), 0);
    cr_assert_eq(weft_main(wait_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], 1);
    cr_assert_eq(rcs[1], 99, "only the completed case's result is set");
    cr_assert_eq(rcs[2], 0);
    cr_assert_eq(vals[0], -1);
    cr_assert_eq(vals[1], 31);
    cr_assert_eq(rcs[10], 0);
    cr_assert_eq(rcs[3], -ETIMEDOUT);
    cr_assert_eq(rcs[4], -ETIMEDOUT);
    cr_assert_eq(weft_chan_free(A), 0);
    cr_assert_eq(weft_chan_free(B), 0);
}

static void recv_a_later(void *arg)
{
    (void)arg;
    weft_sleep(20);
    rcs[10] = weft_chan_recv(A, &vals[10], 1000);
}

static int send_case_main(void *arg)
{
    (void)arg;
    weft_go(recv_a_later, NULL);
    long out = 808, in = -1;
    weft_select_case k[2] = {{A, WEFT_CHAN_SEND, &out, 99}, {B, WEFT_CHAN_RECV, &in, 99}};
    rcs[0] = weft_select(k, 2, 2000);
    rcs[1] = k[0].result;
    vals[0] = in;
    return 0;
}

Test(select, a_waiting_send_case_is_taken_by_a_receiver, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_chan_new(&A, sizeof(long), 0), 0);
    cr_assert_eq(weft_chan_new(&B, sizeof(long), 0), 0);
    cr_assert_eq(weft_main(send_case_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], 0);
    cr_assert_eq(rcs[1], 0);
    cr_assert_eq(rcs[10], 0);
    cr_assert_eq(vals[10], 808);
    cr_assert_eq(vals[0], -1);
    cr_assert_eq(weft_chan_free(A), 0);
    cr_assert_eq(weft_chan_free(B), 0);
}

/* A send case and a receive case on one channel: a select cannot meet
 * itself; another coroutine takes one of them. */
static void take_from_a(void *arg)
{
    (void)arg;
    weft_sleep(20);
    rcs[10] = weft_chan_recv(A, &vals[10], 1000);
}

static int twice_main(void *arg)
{
    (void)arg;
    weft_go(take_from_a, NULL);
    long out = 5, in = -1;
    weft_select_case k[2] = {{A, WEFT_CHAN_RECV, &in, 99}, {A, WEFT_CHAN_SEND, &out, 99}};
    rcs[0] = weft_select(k, 2, 2000);
    vals[0] = in;
    long x;
    rcs[1] = weft_chan_recv(A, &x, 0);
    rcs[2] = weft_chan_send(A, &x, 0);
    return 0;
}

Test(select, one_channel_twice_never_meets_itself, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_chan_new(&A, sizeof(long), 0), 0);
    cr_assert_eq(weft_main(twice_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], 1);
    cr_assert_eq(vals[10], 5);
    cr_assert_eq(vals[0], -1);
    cr_assert_eq(rcs[1], -ETIMEDOUT);
    cr_assert_eq(rcs[2], -ETIMEDOUT);
    cr_assert_eq(weft_chan_free(A), 0);
}

/* Two selects: the one that comes second finds the first one's entry. */
static void select_sender(void *arg)
{
    (void)arg;
    long v = 4242;
    weft_select_case k[2] = {{C, WEFT_CHAN_RECV, NULL, 99}, {A, WEFT_CHAN_SEND, &v, 99}};
    rcs[10] = weft_select(k, 2, 2000);
}

static int selects_meet_main(void *arg)
{
    (void)arg;
    weft_go(select_sender, NULL);
    weft_sleep(10);
    long in = -1;
    weft_select_case k[2] = {{B, WEFT_CHAN_RECV, &in, 99}, {A, WEFT_CHAN_RECV, &in, 99}};
    rcs[0] = weft_select(k, 2, 2000);
    vals[0] = in;
    long x = 0;
    rcs[1] = weft_chan_send(C, &x, 0); /* the sender's other entry is gone */
    return 0;
}

Test(select, selects_meet_selects, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_chan_new(&A, sizeof(long), 0), 0);
    cr_assert_eq(weft_chan_new(&B, sizeof(long), 0), 0);
    cr_assert_eq(weft_chan_new(&C, sizeof(long), 0), 0);
    cr_assert_eq(weft_main(selects_meet_main, NULL, NULL), 0);
    cr_assert_eq(rcs[10], 1);
    cr_assert_eq(rcs[0], 1);
    cr_assert_eq(vals[0], 4242);
    cr_assert_eq(rcs[1], -ETIMEDOUT);
    cr_assert_eq(weft_chan_free(A), 0);
    cr_assert_eq(weft_chan_free(B), 0);
    cr_assert_eq(weft_chan_free(C), 0);
}

/* ---- closed channels, cases off -------------------------------------------- */

static void close_b_later(void *arg)
{
    (void)arg;
    weft_sleep(20);
    weft_chan_close(B);
}

static int closed_main(void *arg)
{
    (void)arg;
    long v = 1;
    /* Closed before: a receive case and a send case on it are ready. */
    weft_chan_close(C);
    weft_select_case k[2] = {{A, WEFT_CHAN_RECV, &v, 99}, {C, WEFT_CHAN_RECV, &v, 99}};
    rcs[0] = weft_select(k, 2, 1000);
    rcs[1] = k[1].result;
    k[1].op = WEFT_CHAN_SEND;
    rcs[2] = weft_select(k, 2, 1000);
    rcs[3] = k[1].result;
    /* Closed while the select waits. */
    weft_go(close_b_later, NULL);
    weft_select_case w[2] = {{A, WEFT_CHAN_RECV, &v, 99}, {B, WEFT_CHAN_RECV, &v, 99}};
    rcs[4] = weft_select(w, 2, 2000);
    rcs[5] = w[1].result;
    /* Turned off, the closed ones no longer count: the select times out. */
    w[1].chan = NULL;
    int64_t t0 = mono_ms();
    rcs[6] = weft_select(w, 2, 30);
    took[0] = mono_ms() - t0;
    return 0;
}

Test(select, closed_channels_complete_with_epipe, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_chan_new(&A, sizeof(long), 0), 0);
    cr_assert_eq(weft_chan_new(&B, sizeof(long), 0), 0);
    cr_assert_eq(weft_chan_new(&C, sizeof(long), 3), 0);
    cr_assert_eq(weft_main(closed_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], 1);
    cr_assert_eq(rcs[1], -EPIPE);
    cr_assert_eq(rcs[2], 1);
    cr_assert_eq(rcs[3], -EPIPE);
    cr_assert_eq(rcs[4], 1);
    cr_assert_eq(rcs[5], -EPIPE);
    cr_assert_eq(rcs[6], -ETIMEDOUT);
    cr_assert_geq(took[0], 30);
    cr_assert_eq(weft_chan_free(A), 0);
    cr_assert_eq(weft_chan_free(B), 0);
    cr_assert_eq(weft_chan_free(C), 0);
}

/* ---- timeouts, deadline, cancel --------------------------------------------- */

static void select_cancelled(void *arg)
{
    (void)arg;
    long v = 3;
    weft_select_case k[3] = {
        {A, WEFT_CHAN_RECV, &v, 99}, {B, WEFT_CHAN_SEND, &v, 99}, {C, WEFT_CHAN_RECV, &v, 99}};
    rcs[10] = weft_select(k, 3, 5000);
    scribble();
}

static int timeouts_main(void *arg)
{
    (void)arg;
    long v = 0;
    weft_select_case k[2] = {{A, WEFT_CHAN_RECV, &v, 99}, {B, WEFT_CHAN_SEND, &v, 99}};
    int64_t t0 = mono_ms();
    rcs[0] = weft_select(k, 2, 0);
    took[0] = mono_ms() - t0;
    t0 = mono_ms();
    rcs[1] = weft_select(k, 2, 50);
    took[1] = mono_ms() - t0;
    weft_deadline_set(weft_now() + 50);
    t0 = mono_ms();
    rcs[2] = weft_select(k, 2, -1);
    took[2] = mono_ms() - t0;
    weft_deadline_clear();
    rcs[3] = weft_select(NULL, 0, 20); /* nothing to wait for but the time */
    int64_t id = weft_go(select_cancelled, NULL);
    weft_sleep(10);
    weft_cancel(id);
    weft_sleep(10);
    /* Nothing linked anywhere. */
    rcs[4] = weft_chan_send(A, &v, 0);
    rcs[5] = weft_chan_recv(B, &v, 0);
    rcs[6] = weft_chan_send(C, &v, 0);
    return 0;
}

Test(select, timeout_deadline_cancel, .timeout = 30)
{
    reset();
    cr_assert_eq(weft_chan_new(&A, sizeof(long), 0), 0);
    cr_assert_eq(weft_chan_new(&B, sizeof(long), 0), 0);
    cr_assert_eq(weft_chan_new(&C, sizeof(long), 0), 0);
    cr_assert_eq(weft_main(timeouts_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], -ETIMEDOUT);
    cr_assert_lt(took[0], LATE_MS);
    cr_assert_eq(rcs[1], -ETIMEDOUT);
    cr_assert_geq(took[1], 50);
    cr_assert_lt(took[1], 50 + LATE_MS);
    cr_assert_eq(rcs[2], -ETIMEDOUT);
    cr_assert_geq(took[2], 49);
    cr_assert_eq(rcs[3], -ETIMEDOUT);
    cr_assert_eq(rcs[10], -ECANCELED);
    cr_assert_eq(rcs[4], -ETIMEDOUT);
    cr_assert_eq(rcs[5], -ETIMEDOUT);
    cr_assert_eq(rcs[6], -ETIMEDOUT);
    cr_assert_eq(weft_chan_free(A), 0);
    cr_assert_eq(weft_chan_free(B), 0);
    cr_assert_eq(weft_chan_free(C), 0);
}

/* ---- more cases than fit on the stack ----------------------------------------- */

#define MANY 40
static weft_chan *many[MANY];

static void send_to_17(void *arg)
{
    (void)arg;
    weft_sleep(10);
    long v = 1717;
    rcs[10] = weft_chan_send(many[17], &v, 1000);
}

static int many_main(void *arg)
{
    (void)arg;
    weft_go(send_to_17, NULL);
    weft_select_case k[MANY];
    long v = -1;
    for (int i = 0; i < MANY; i++)
        k[i] = (weft_select_case){many[i], WEFT_CHAN_RECV, &v, 99};
    rcs[0] = weft_select(k, MANY, 2000);
    vals[0] = v;
    /* The same with the allocation failing: nothing linked, -ENOMEM. */
    weft_fault_set(WEFT_FAULT_MALLOC, 1, ENOMEM);
    rcs[1] = weft_select(k, MANY, 2000);
    weft_fault_clear();
    int busy = 0;
    for (int i = 0; i < MANY; i++)
        busy += weft_chan_send(many[i], &v, 0) != -ETIMEDOUT;
    rcs[2] = busy;
    return 0;
}

Test(select, more_cases_than_the_stack_holds, .timeout = 30)
{
    reset();
    for (int i = 0; i < MANY; i++)
        cr_assert_eq(weft_chan_new(&many[i], sizeof(long), 0), 0);
    cr_assert_eq(weft_main(many_main, NULL, NULL), 0);
    cr_assert_eq(rcs[0], 17);
    cr_assert_eq(vals[0], 1717);
    cr_assert_eq(rcs[1], -ENOMEM);
    cr_assert_eq(rcs[2], 0);
    for (int i = 0; i < MANY; i++)
        cr_assert_eq(weft_chan_free(many[i]), 0);
}

/* ---- outside any coroutine ------------------------------------------------------ */

Test(select, on_the_loops_thread_a_wait_runs_the_loop, .timeout = 30)
{
    reset();
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    cr_assert_eq(weft_chan_new(&A, sizeof(long), 0), 0);
    cr_assert_eq(weft_chan_new(&B, sizeof(long), 0), 0);
    long va = -1, vb = -1;
    weft_select_case k[2] = {{A, WEFT_CHAN_RECV, &va, 99}, {B, WEFT_CHAN_RECV, &vb, 99}};
    cr_assert_eq(weft_select(k, 2, -1), -EDEADLK);
    weft_go(send_b_later, (void *)(intptr_t)12);
    cr_assert_eq(weft_select(k, 2, 5000), 1);
    cr_assert_eq(vb, 12);
    cr_assert_eq(weft_loop_run(l, 5000), 0);
    cr_assert_eq(weft_chan_free(A), 0);
    cr_assert_eq(weft_chan_free(B), 0);
    weft_loop_free(l);
}
