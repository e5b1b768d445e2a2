/*
 * test_timer.c - sleeping and cancelling: weft_sleep accuracy and wake order
 * for 10,000 sleepers (#27), equal deadlines first-in first-out, a periodic
 * tick scheduled on absolute time that does not drift (#28), cancelling a
 * sleeping or reading coroutine (#29), weft_cancel delivered exactly once,
 * cancelling one that is not blocked, -ESRCH, and weft_sleep/weft_yield/
 * weft_now on and off a coroutine.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* ---- #27: 10,000 sleepers ------------------------------------------------ */

#define SLEEPERS 10000
/* On a quiet host p99 is 1 to 4 ms.  With the hypervisor taking 15 % of the
 * CPU it reached 138 ms in three runs in a row, so the bound is half of
 * LATE_MS: it catches timers that wait for some other event, or fire on a
 * coarse tick, not a host's jitter. */
#define LATE_P99_NS ((LATE_MS / 2) * 1000000LL)

typedef struct sleeper {
    int64_t ms;
    int64_t t0, t1;  /* ns just before the call and just after it returned */
    int64_t call_no; /* order in which weft_sleep was entered */
    int64_t wake_no; /* order in which it returned */
    int rc;
} sleeper;

static sleeper sl[SLEEPERS];
static int64_t call_seq, wake_seq;
static int64_t by_call[SLEEPERS]; /* sleeper index in call order */

static void sleeper_body(void *arg)
{
    sleeper *s = arg;
    /* First run maps the stack; do all of that before anyone's clock starts. */
    weft_yield();
    s->call_no = call_seq++;
    by_call[s->call_no] = s - sl;
    s->t0 = mono_ns();
    s->rc = weft_sleep(s->ms);
    s->t1 = mono_ns();
    s->wake_no = wake_seq++;
}

static int sleepers_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < SLEEPERS; i++)
        if (weft_go(sleeper_body, &sl[i]) < 0)
            return -1;
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* One run of 10,000 sleepers; checks results and order, returns the p99
 * lateness in ns. */
static int64_t sleepers_round(void)
{
    memset(sl, 0, sizeof sl);
    call_seq = wake_seq = 0;
    for (int i = 0; i < SLEEPERS; i++) {
        sl[i].ms = (int64_t)(rng() % 501);
        sl[i].rc = -12345;
    }
    int64_t t0 = mono_ms();
    cr_assert_eq(weft_main(sleepers_main, NULL, NULL), 0);
    int64_t took = mono_ms() - t0;
    cr_assert_lt(took, 5000, "10,000 sleeps of at most 500 ms took %" PRId64 " ms", took);

    static int64_t late[SLEEPERS];
    for (int i = 0; i < SLEEPERS; i++) {
        sleeper *s = &sl[i];
        cr_assert_eq(s->rc, 0, "sleeper %d: %s", i, weft_err_name(s->rc));
        int64_t due = s->t0 + s->ms * 1000000LL;
        cr_assert_geq(s->t1, due, "sleeper %d (%" PRId64 " ms) woke %" PRId64 " us early", i, s->ms,
                      (due - s->t1) / 1000);
        late[i] = s->t1 - due;
    }
    qsort(late, SLEEPERS, sizeof late[0], cmp_i64);
    int64_t p50 = late[SLEEPERS / 2], p99 = late[SLEEPERS * 99 / 100];
    cr_log_info("lateness: p50 %" PRId64 " us, p99 %" PRId64 " us, max %" PRId64 " us", p50 / 1000,
                p99 / 1000, late[SLEEPERS - 1] / 1000);

    /*
     * Wake order.  The library reads the clock inside the call, somewhere
     * between this sleeper's t0 and the next caller's t0, so its deadline
     * lies in [t0 + ms, next_t0 + ms].  Whenever one sleeper's interval lies
     * wholly before another's, it must have woken first; and a later caller
     * asking for no longer cannot have an earlier deadline, so it must wake
     * after (this is also FIFO for equal deadlines).  0 ms is a yield, not a
     * timer, so those are left out.
     */
    static int64_t lo[SLEEPERS], hi[SLEEPERS];
    for (int c = 0; c < SLEEPERS; c++) {
        sleeper *s = &sl[by_call[c]];
        int64_t next_t0 = c + 1 < SLEEPERS ? sl[by_call[c + 1]].t0 : s->t1;
        lo[c] = s->t0 + s->ms * 1000000LL;
        hi[c] = next_t0 + s->ms * 1000000LL;
    }
    long bad = 0;
    for (int a = 0; a < SLEEPERS && bad < 5; a++) {
        sleeper *sa = &sl[by_call[a]];
        if (sa->ms == 0)
            continue;
        for (int b = a + 1; b < SLEEPERS; b++) {
            sleeper *sb = &sl[by_call[b]];
            if (sb->ms == 0)
                continue;
            bool a_first = sa->ms <= sb->ms || hi[a] < lo[b];
            bool b_first = lo[a] > hi[b];
            if ((a_first && sa->wake_no > sb->wake_no) || (b_first && sb->wake_no > sa->wake_no)) {
                cr_log_error("calls %d (%" PRId64 " ms) and %d (%" PRId64 " ms) woke out of order",
                             a, sa->ms, b, sb->ms);
                bad++;
            }
        }
    }
    cr_assert_eq(bad, 0);
    return p99;
}

/* Lateness is the one figure a busy host can spoil for a while, so a run
 * over the bound is repeated; a timer that is really late fails all three. */
Test(timer, ten_thousand_sleepers_accuracy_and_order, .timeout = 180)
{
    int64_t p99 = INT64_MAX;
    for (int run = 0; run < 3 && p99 > LATE_P99_NS; run++)
        p99 = sleepers_round();
    cr_assert_leq(p99, LATE_P99_NS, "p99 lateness %" PRId64 " us in three runs", p99 / 1000);
}

/* ---- equal deadlines: first in, first out ---------------------------------- */

#define FIFO_N 1000

static int64_t fifo_call[FIFO_N], fifo_wake[FIFO_N];
static int fifo_rc[FIFO_N];
static int64_t fifo_at;

static void fifo_body(void *arg)
{
    int i = (int)(uintptr_t)arg;
    /* Enter the sleep in an order unlike the spawn order. */
    for (int k = (int)((i * 7919u) % 5); k > 0; k--)
        weft_yield();
    fifo_call[i] = call_seq++;
    /* One absolute deadline for everyone: the deadlines are truly equal. */
    weft_deadline_set(fifo_at);
    fifo_rc[i] = weft_sleep(60000);
    fifo_wake[i] = wake_seq++;
}

static int fifo_main(void *arg)
{
    (void)arg;
    fifo_at = weft_now() + 100;
    for (uintptr_t i = 0; i < FIFO_N; i++)
        weft_go(fifo_body, (void *)i);
    return 0;
}

Test(timer, equal_deadlines_fire_in_call_order, .timeout = 30)
{
    call_seq = wake_seq = 0;
    cr_assert_eq(weft_main(fifo_main, NULL, NULL), 0);
    for (int i = 0; i < FIFO_N; i++) {
        cr_assert_eq(fifo_rc[i], -ETIMEDOUT, "sleeper %d: %s", i, weft_err_name(fifo_rc[i]));
        cr_assert_eq(fifo_wake[i], fifo_call[i],
                     "sleeper %d entered %" PRId64 "th, woke %" PRId64 "th", i, fifo_call[i],
                     fifo_wake[i]);
    }
}

/* ---- #28: periodic tick on absolute time ------------------------------------ */

#define TICKERS 3
#define TICK_MS 10
#define TICK_RUN_MS 3000

static long ticks[TICKERS], early_ticks[TICKERS], late_ticks[TICKERS], tick_err[TICKERS];
static int64_t tick_elapsed_ns[TICKERS];

static void ticker(void *arg)
{
    int k = (int)(uintptr_t)arg;
    int64_t start_ns = mono_ns();
    int64_t next = weft_now();
    for (;;) {
        next += TICK_MS;
        int rc = weft_sleep(next - weft_now());
        if (rc != 0)
            tick_err[k]++;
        int64_t now = weft_now();
        if (now < next)
            early_ticks[k]++;
        else if (now >= next + TICK_MS)
            late_ticks[k]++;
        /* Elapsed time by the test's own clock, not the library's. */
        int64_t el = mono_ns() - start_ns;
        if (el >= TICK_RUN_MS * 1000000LL) {
            tick_elapsed_ns[k] = el;
            break;
        }
        ticks[k]++;
    }
}

static int ticker_main(void *arg)
{
    (void)arg;
    for (uintptr_t k = 0; k < TICKERS; k++)
        weft_go(ticker, (void *)k);
    return 0;
}

Test(timer, periodic_tick_does_not_drift, .timeout = 60)
{
    cr_assert_eq(weft_main(ticker_main, NULL, NULL), 0);
    long expect = TICK_RUN_MS / TICK_MS, slack = expect * 2 / 100;
    for (int k = 0; k < TICKERS; k++) {
        cr_log_info("ticker %d: %ld ticks in %" PRId64 " ms, %ld a period or more late", k,
                    ticks[k], tick_elapsed_ns[k] / 1000000, late_ticks[k]);
        cr_assert_eq(tick_err[k], 0);
        cr_assert_eq(early_ticks[k], 0, "ticker %d woke early %ld times", k, early_ticks[k]);
        cr_assert(ticks[k] >= expect - slack && ticks[k] <= expect + slack,
                  "ticker %d: %ld ticks, expected %ld +- %ld", k, ticks[k], expect, slack);
    }
}

/* ---- #29: cancel a sleeping coroutine -------------------------------------- */

static int cs_rc1, cs_rc2, cs_cancel_rc;
static int64_t cs_first_ms, cs_second_ms;

static void cs_sleeper(void *arg)
{
    (void)arg;
    int64_t t0 = mono_ms();
    cs_rc1 = weft_sleep(200);
    int64_t t1 = mono_ms();
    /* If the cancelled sleep's timer were still armed it would end this
     * one at the 200 ms mark. */
    cs_rc2 = weft_sleep(300);
    cs_first_ms = t1 - t0;
    cs_second_ms = mono_ms() - t1;
}

static int cs_main(void *arg)
{
    (void)arg;
    int64_t id = weft_go(cs_sleeper, NULL);
    weft_sleep(20);
    cs_cancel_rc = weft_cancel(id);
    return weft_join(id, 2000);
}

Test(timer, cancel_sleeping_coroutine, .timeout = 30)
{
    cr_assert_eq(weft_main(cs_main, NULL, NULL), 0);
    cr_assert_eq(cs_cancel_rc, 0);
    cr_assert_eq(cs_rc1, -ECANCELED, "first sleep: %s", weft_err_name(cs_rc1));
    cr_assert(cs_first_ms >= 20 && cs_first_ms < 20 + LATE_MS,
              "cancelled sleep lasted %" PRId64 " ms", cs_first_ms);
    cr_assert_eq(cs_rc2, 0, "the cancel must be delivered once: %s", weft_err_name(cs_rc2));
    cr_assert(cs_second_ms >= 300 && cs_second_ms < 300 + LATE_MS,
              "second sleep lasted %" PRId64 " ms", cs_second_ms);
}

static int long_rc;

static void long_sleeper(void *arg)
{
    (void)arg;
    long_rc = weft_sleep(10000);
}

static int long_main(void *arg)
{
    (void)arg;
    int64_t id = weft_go(long_sleeper, NULL);
    weft_sleep(10);
    return weft_cancel(id);
}

/* Nothing of the cancelled 10 s sleep is left: the loop ends at once. */
Test(timer, cancelled_timer_does_not_hold_the_loop, .timeout = 30)
{
    int64_t t0 = mono_ms();
    cr_assert_eq(weft_main(long_main, NULL, NULL), 0);
    int64_t took = mono_ms() - t0;
    cr_assert_eq(long_rc, -ECANCELED);
    cr_assert_lt(took, 1000, "weft_main took %" PRId64 " ms", took);

    /* The same through the embedding API, stepping by hand. */
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    long_rc = 0;
    int64_t id = weft_go(long_sleeper, NULL);
    cr_assert_eq(weft_loop_poll(l, 0), 1, "the sleeper parks");
    cr_assert_eq(weft_cancel(id), 0);
    t0 = mono_ms();
    cr_assert_eq(weft_loop_run(l, 2000), 0);
    took = mono_ms() - t0;
    cr_assert_eq(long_rc, -ECANCELED);
    cr_assert_lt(took, LATE_MS, "weft_loop_run took %" PRId64 " ms", took);
    weft_loop_free(l);
}

/* A coroutine blocked in weft_recv is cancelled, then reads normally. */
static int cr_port;
static ssize_t cr_rc1, cr_rc2;
static int64_t cr_ms;
static char cr_buf[8];

static void cr_reader(void *arg)
{
    weft_sock *c = arg;
    int64_t t0 = mono_ms();
    cr_rc1 = weft_recv(c, cr_buf, sizeof cr_buf, 5000);
    cr_ms = mono_ms() - t0;
    cr_rc2 = weft_recv(c, cr_buf, sizeof cr_buf, 2000);
}

static int cr_main(void *arg)
{
    (void)arg;
    weft_sock *l, *c, *s;
    cr_port = listen_any(&l, "127.0.0.1");
    if (cr_port <= 0)
        return cr_port;
    if (weft_tcp_connect(&c, "127.0.0.1", cr_port, 2000) < 0 || weft_tcp_accept(l, &s, 2000) < 0)
        return -1;
    int64_t id = weft_go(cr_reader, c);
    weft_sleep(30);
    weft_cancel(id);
    weft_sleep(30);
    weft_send(s, "late", 4, 1000);
    int rc = weft_join(id, 3000);
    weft_close(s);
    weft_close(c);
    weft_close(l);
    return rc;
}

Test(timer, cancel_blocked_reader, .timeout = 30)
{
    int fds = count_fds();
    cr_assert_eq(weft_main(cr_main, NULL, NULL), 0);
    cr_assert_eq(cr_rc1, -ECANCELED, "%s", weft_err_name((int)cr_rc1));
    cr_assert(cr_ms >= 30 && cr_ms < 30 + LATE_MS, "cancelled recv lasted %" PRId64 " ms", cr_ms);
    cr_assert_eq(cr_rc2, 4, "the next recv works: %s", weft_err_name((int)cr_rc2));
    cr_assert_eq(memcmp(cr_buf, "late", 4), 0);
    cr_assert_eq(count_fds(), fds);
}

/* ---- cancelling a coroutine that is not blocked -------------------------------- */

static int nb_self_rc, nb_self_next, nb_yield_rc, nb_yield_next, nb_queued_rc, nb_queued_next;
static int64_t nb_self_ms, nb_queued_ms;

static void nb_self(void *arg)
{
    (void)arg;
    weft_cancel(weft_self()); /* running, so not blocked */
    int64_t t0 = mono_ms();
    nb_self_rc = weft_sleep(5000);
    nb_self_ms = mono_ms() - t0;
    nb_self_next = weft_sleep(20);

    weft_cancel(weft_self());
    nb_yield_rc = weft_yield();
    nb_yield_next = weft_yield();
}

static void nb_queued(void *arg)
{
    (void)arg;
    int64_t t0 = mono_ms();
    nb_queued_rc = weft_sleep(5000);
    nb_queued_ms = mono_ms() - t0;
    nb_queued_next = weft_sleep(1);
}

static int nb_main(void *arg)
{
    (void)arg;
    int64_t a = weft_go(nb_self, NULL);
    /* Spawned but not run yet: a cancel now waits for its first wait. */
    int64_t b = weft_go(nb_queued, NULL);
    if (weft_cancel(b) != 0)
        return -1;
    return weft_join(a, 3000) | weft_join(b, 3000);
}

Test(timer, cancel_not_blocked_hits_next_call, .timeout = 30)
{
    cr_assert_eq(weft_main(nb_main, NULL, NULL), 0);
    cr_assert_eq(nb_self_rc, -ECANCELED);
    cr_assert_lt(nb_self_ms, LATE_MS, "a pending cancel must end the sleep at once");
    cr_assert_eq(nb_self_next, 0);
    cr_assert_eq(nb_yield_rc, -ECANCELED);
    cr_assert_eq(nb_yield_next, 0);
    cr_assert_eq(nb_queued_rc, -ECANCELED);
    cr_assert_lt(nb_queued_ms, LATE_MS);
    cr_assert_eq(nb_queued_next, 0);
}

/*
 * A cancel that arrives after the coroutine's wait has ended but before it
 * ran again (its timer fired in the same step) must not be lost: either
 * that call or the next one returns -ECANCELED.
 */
static int woken_rc1, woken_rc2, woken_cancel_rc;
static int64_t woken_target, woken_at;

static void woken_canceller(void *arg)
{
    (void)arg;
    weft_deadline_set(woken_at);
    weft_sleep(60000);
    /* The target's timer fired in the same step, after ours: it is ready
     * but has not run yet. */
    woken_cancel_rc = weft_cancel(woken_target);
}

static void woken_victim(void *arg)
{
    (void)arg;
    weft_deadline_set(woken_at);
    woken_rc1 = weft_sleep(60000);
    weft_deadline_clear();
    woken_rc2 = weft_sleep(50);
}

static int woken_main(void *arg)
{
    (void)arg;
    woken_at = weft_now() + 50;
    int64_t c = weft_go(woken_canceller, NULL);
    woken_target = weft_go(woken_victim, NULL);
    return weft_join(c, 2000) | weft_join(woken_target, 2000);
}

Test(timer, cancel_after_wake_is_not_lost, .timeout = 30)
{
    cr_assert_eq(weft_main(woken_main, NULL, NULL), 0);
    cr_assert_eq(woken_cancel_rc, 0);
    int cancelled = (woken_rc1 == -ECANCELED) + (woken_rc2 == -ECANCELED);
    cr_assert_eq(cancelled, 1, "first call %s, second %s: the cancel must be delivered once",
                 weft_err_name(woken_rc1), weft_err_name(woken_rc2));
}

/* ---- -ESRCH --------------------------------------------------------------------- */

static int esrch_unknown, esrch_zero, esrch_finished, esrch_neg;

static int esrch_main(void *arg)
{
    (void)arg;
    int64_t id = weft_go(long_sleeper, NULL);
    int64_t done = weft_go(long_sleeper, NULL);
    weft_cancel(done);
    weft_join(done, 1000);
    esrch_finished = weft_cancel(done);
    esrch_unknown = weft_cancel(id + 1000000);
    esrch_zero = weft_cancel(0);
    esrch_neg = weft_cancel(-5);
    weft_cancel(id);
    return weft_join(id, 1000);
}

Test(timer, cancel_unknown_ids, .timeout = 30)
{
    cr_assert_eq(weft_cancel(1), -ESRCH, "no loop on this thread");
    cr_assert_eq(weft_main(esrch_main, NULL, NULL), 0);
    cr_assert_eq(esrch_finished, -ESRCH);
    cr_assert_eq(esrch_unknown, -ESRCH);
    cr_assert_eq(esrch_zero, -ESRCH);
    cr_assert_eq(esrch_neg, -ESRCH);
}

/* ---- a timed wait needs a slot in the timer heap ------------------------------------ */

static int heap_sleep_rc, heap_join_rc, heap_after_rc;

static int heap_main(void *arg)
{
    (void)arg;
    /* The heap is still empty: the first timed wait must grow it. */
    weft_fault_clear();
    weft_fault_set(WEFT_FAULT_MALLOC, 1, ENOMEM);
    heap_sleep_rc = weft_sleep(10);
    int64_t id = weft_go(long_sleeper, NULL);
    weft_fault_set(WEFT_FAULT_MALLOC, 1, ENOMEM);
    heap_join_rc = weft_join(id, 10);
    weft_fault_clear();
    heap_after_rc = weft_sleep(10);
    weft_cancel(id);
    return weft_join(id, 1000);
}

Test(timer, timed_wait_out_of_memory, .timeout = 30)
{
    cr_assert_eq(weft_main(heap_main, NULL, NULL), 0);
    cr_assert_eq(heap_sleep_rc, -ENOMEM, "%s", weft_err_name(heap_sleep_rc));
    cr_assert_eq(heap_join_rc, -ENOMEM, "%s", weft_err_name(heap_join_rc));
    cr_assert_eq(heap_after_rc, 0, "%s", weft_err_name(heap_after_rc));
}

/* ---- weft_sleep(<= 0), weft_yield and weft_now ------------------------------------- */

static char zlog[32];
static int zlen;
static int zrc[6];

static void zero_sleeper(void *arg)
{
    char c = (char)(uintptr_t)arg;
    for (int i = 0; i < 3; i++) {
        zlog[zlen++] = c;
        zrc[(c == 'a' ? 0 : 3) + i] = weft_sleep(c == 'a' ? 0 : -7);
    }
}

static int zero_main(void *arg)
{
    (void)arg;
    weft_go(zero_sleeper, (void *)(uintptr_t)'a');
    weft_go(zero_sleeper, (void *)(uintptr_t)'b');
    return 0;
}

Test(timer, sleep_zero_or_negative_yields, .timeout = 30)
{
    zlen = 0;
    cr_assert_eq(weft_main(zero_main, NULL, NULL), 0);
    zlog[zlen] = '\0';
    cr_assert_str_eq(zlog, "ababab");
    for (int i = 0; i < 6; i++)
        cr_assert_eq(zrc[i], 0);
}

Test(timer, off_coroutine_sleep_yield_now, .timeout = 30)
{
    int64_t a = weft_now();
    int64_t m = mono_ms();
    cr_assert(a - m >= -1 && a - m <= 1, "weft_now %" PRId64 " vs CLOCK_MONOTONIC %" PRId64, a, m);
    cr_assert_eq(weft_yield(), 0);
    int64_t t0 = mono_ns();
    cr_assert_eq(weft_sleep(30), 0);
    int64_t took = mono_ns() - t0;
    cr_assert(took >= 30 * 1000000LL && took < (30 + LATE_MS) * 1000000LL, "slept %" PRId64 " us",
              took / 1000);
    int64_t b = weft_now();
    cr_assert_geq(b, a + 30);

    /* With a loop but on its thread's own stack: still a plain sleep. */
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    t0 = mono_ns();
    cr_assert_eq(weft_sleep(20), 0);
    took = mono_ns() - t0;
    cr_assert(took >= 20 * 1000000LL && took < (20 + LATE_MS) * 1000000LL, "slept %" PRId64 " us",
              took / 1000);
    cr_assert_eq(weft_yield(), 0);
    weft_loop_free(l);
}

/* ---- timers removed in the step that set them ----------------------------- */

/* Half of FR waiters are woken, in a shuffled order, in the step in which
 * they parked, so their timers leave the heap from every place in it; the
 * rest then time out in the order of their deadlines, none early. */
#define FR 200

static struct {
    weft_event *ev[FR];
    int64_t ms[FR], t0[FR], t1[FR], done_no[FR];
    int rc[FR];
    int64_t seq;
} fr;

static void fr_waiter(void *arg)
{
    int i = (int)(intptr_t)arg;
    fr.t0[i] = mono_ns();
    fr.rc[i] = weft_event_wait(fr.ev[i], fr.ms[i]);
    fr.t1[i] = mono_ns();
    fr.done_no[i] = fr.seq++;
}

static void fr_waker(void *arg)
{
    (void)arg;
    int order[FR / 2];
    for (int k = 0; k < FR / 2; k++)
        order[k] = 2 * k + 1;
    for (int k = FR / 2 - 1; k > 0; k--) {
        int j = (int)(rng() % (uint64_t)(k + 1)), x = order[k];
        order[k] = order[j];
        order[j] = x;
    }
    for (int k = 0; k < FR / 2; k++)
        weft_event_set(fr.ev[order[k]]);
}

static int fr_main(void *arg)
{
    (void)arg;
    int64_t ids[FR + 1];
    for (int i = 0; i < FR; i++) {
        if (weft_event_new(&fr.ev[i], 0) < 0)
            return -1;
        fr.ms[i] = 40 + (int64_t)(rng() % 8) * 15; /* ties among them too */
        ids[i] = weft_go(fr_waiter, (void *)(intptr_t)i);
    }
    ids[FR] = weft_go(fr_waker, NULL); /* runs after every waiter parked */
    for (int i = 0; i <= FR; i++)
        weft_join(ids[i], 10000);
    for (int i = 0; i < FR; i++)
        weft_event_free(fr.ev[i]);
    return 0;
}

Test(timer, woken_in_the_step_they_parked, .timeout = 60)
{
    cr_assert_eq(weft_main(fr_main, NULL, NULL), 0);
    for (int i = 0; i < FR; i++) {
        if (i % 2) {
            cr_assert_eq(fr.rc[i], 0, "waiter %d: %s", i, weft_err_name(fr.rc[i]));
            cr_assert_lt(fr.done_no[i], FR / 2, "woken waiter %d ended after a timeout", i);
        } else {
            cr_assert_eq(fr.rc[i], -ETIMEDOUT, "waiter %d: %s", i, weft_err_name(fr.rc[i]));
            cr_assert_geq(fr.t1[i] - fr.t0[i], fr.ms[i] * 1000000, "waiter %d early", i);
        }
    }
    /* The timed-out ones ended in deadline order: t0 + ms, within the few
     * microseconds between t0 and the call's own reading (ties either way). */
    for (int i = 0; i < FR; i += 2)
        for (int j = 0; j < FR; j += 2)
            if (fr.t0[i] + fr.ms[i] * 1000000 + 1000000 < fr.t0[j] + fr.ms[j] * 1000000)
                cr_assert_lt(fr.done_no[i], fr.done_no[j], "%d (%lld ms) after %d (%lld ms)", i,
                             (long long)fr.ms[i], j, (long long)fr.ms[j]);
}
