/*
 * test_loop_ext.c - how layers above the scheduler extend a loop without
 * the loop knowing them: per-loop state with a free hook, loop timers that
 * are no coroutine's wait, and the poller's re-arm.  Reaches into the
 * library's internals (src/internal.h).
 */
#include "helpers.h"
#include "internal.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* ---- per-loop state ------------------------------------------------------- */

static char freed_order[8];
static int nfreed;
static size_t alive_at_free;
static int be_fd_at_free;

static void free_a(weft_loop *l, void *state)
{
    freed_order[nfreed++] = *(char *)state;
    alive_at_free = l->alive;
    be_fd_at_free = l->be_data ? 0 : -1;
}

static weft__ext_key key_a = {"test-a", free_a, 0};
static weft__ext_key key_b = {"test-b", free_a, 0};

static char state_a = 'a', state_b = 'b';
static int set_again;

static void sleeper(void *arg)
{
    (void)arg;
    weft_sleep(20);
}

Test(loop_ext, state_is_found_and_freed_latest_first, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    cr_assert_null(weft__loop_ext(l, &key_a));
    cr_assert_eq(weft__loop_ext_set(l, &key_b, &state_b), 0);
    cr_assert_eq(weft__loop_ext_set(l, &key_a, &state_a), 0);
    set_again = weft__loop_ext_set(l, &key_a, &state_b);
    cr_assert_eq(set_again, -EEXIST);
    cr_assert_eq(weft__loop_ext(l, &key_a), &state_a);
    cr_assert_eq(weft__loop_ext(l, &key_b), &state_b);
    cr_assert_gt(weft_go(sleeper, NULL), 0);
    nfreed = 0;
    weft_loop_free(l); /* runs the sleeper to its end first */
    cr_assert_eq(nfreed, 2);
    cr_assert_eq(freed_order[0], 'a', "latest set is freed first");
    cr_assert_eq(freed_order[1], 'b');
    cr_assert_eq(alive_at_free, 0, "freed only after the last coroutine");
    cr_assert_geq(be_fd_at_free, 0, "freed while the poller is still open");
}

/* A second loop, on another thread, finds nothing of the first's. */
static void *other_thread(void *arg)
{
    (void)arg;
    weft_loop *l;
    if (weft_loop_new(&l, NULL) < 0)
        return (void *)1;
    void *seen = weft__loop_ext(l, &key_a);
    weft_loop_free(l);
    return seen;
}

Test(loop_ext, state_is_per_loop, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    cr_assert_eq(weft__loop_ext_set(l, &key_a, &state_a), 0);
    pthread_t t;
    void *seen = (void *)2;
    cr_assert_eq(pthread_create(&t, NULL, other_thread, NULL), 0);
    pthread_join(t, &seen);
    cr_assert_null(seen);
    nfreed = 0;
    weft_loop_free(l);
    cr_assert_eq(nfreed, 1);
}

/* ---- loop timers ---------------------------------------------------------- */

typedef struct tick {
    weft__timer t;
    weft_loop *l;
    int fired;
    int64_t at_ns[8];
    int64_t self_at_fire;
    int again; /* set itself again this many times, for a time already past */
} tick;

static void on_tick(weft__timer *t)
{
    tick *k = (tick *)t;
    k->self_at_fire = weft_self();
    if (k->fired < 8)
        k->at_ns[k->fired] = mono_ns();
    k->fired++;
    if (k->again > 0) {
        k->again--;
        weft__timer_set(k->l, t, 0); /* long past */
    }
}

static int64_t woke_ns;

static void wait_100(void *arg)
{
    (void)arg;
    weft_sleep(100);
    woke_ns = mono_ns();
}

Test(loop_ext, timer_fires_once_outside_coroutines_in_deadline_order, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    tick k = {.l = l};
    weft__timer_init(&k.t, on_tick);
    int64_t t0 = mono_ns();
    cr_assert_eq(weft__timer_set(l, &k.t, weft__now_ns() + 50 * WEFT__NS_PER_MS), 0);
    cr_assert_gt(weft_go(wait_100, NULL), 0);
    cr_assert_eq(weft_loop_run(l, 5000), 0);
    cr_assert_eq(k.fired, 1);
    cr_assert_eq(k.self_at_fire, 0, "fires in the loop, not in a coroutine");
    cr_assert_geq(k.at_ns[0] - t0, 50 * WEFT__NS_PER_MS, "never early");
    cr_assert_lt(k.at_ns[0], woke_ns, "before the 100 ms sleeper");
    cr_assert_eq(k.t.heap_idx, SIZE_MAX);
    weft_loop_free(l);
}

Test(loop_ext, timer_set_again_in_the_past_fires_at_the_next_step, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    tick k = {.l = l, .again = 3};
    weft__timer_init(&k.t, on_tick);
    cr_assert_eq(weft__timer_set(l, &k.t, 0), 0);
    /* Each step fires it once: a timer that sets itself for a time long
     * past cannot hold the loop in one step. */
    for (int i = 1; i <= 4; i++) {
        cr_assert_geq(weft_loop_poll(l, 0), 0);
        cr_assert_eq(k.fired, i, "step %d", i);
    }
    cr_assert_geq(weft_loop_poll(l, 0), 0);
    cr_assert_eq(k.fired, 4);
    weft_loop_free(l);
}

Test(loop_ext, timer_stopped_or_moved_fires_as_last_set, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    tick a = {.l = l}, b = {.l = l};
    weft__timer_init(&a.t, on_tick);
    weft__timer_init(&b.t, on_tick);
    int64_t now = weft__now_ns();
    cr_assert_eq(weft__timer_set(l, &a.t, now + 30 * WEFT__NS_PER_MS), 0);
    cr_assert_eq(weft__timer_set(l, &b.t, now + 30 * WEFT__NS_PER_MS), 0);
    weft__timer_stop(l, &a.t);
    cr_assert_eq(weft__timer_set(l, &b.t, now + 60 * WEFT__NS_PER_MS), 0); /* moved */
    cr_assert_eq(weft__timer_set(l, &b.t, now + 60 * WEFT__NS_PER_MS), 0); /* same: no-op */
    int64_t t0 = mono_ns();
    while (!b.fired && mono_ns() - t0 < 3000 * WEFT__NS_PER_MS)
        weft_loop_poll(l, 100);
    cr_assert_eq(a.fired, 0, "stopped");
    cr_assert_eq(b.fired, 1, "fired once, at the time it was moved to");
    cr_assert_geq(b.at_ns[0] - t0, 55 * WEFT__NS_PER_MS);
    cr_assert_eq(l->timers.len, 0, "nothing left in the heap");
    weft_loop_free(l);
}

Test(loop_ext, timer_does_not_keep_the_loop_alive, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    tick k = {.l = l};
    weft__timer_init(&k.t, on_tick);
    cr_assert_eq(weft__timer_set(l, &k.t, weft__now_ns() + 10000 * WEFT__NS_PER_MS), 0);
    int64_t t0 = mono_ms();
    cr_assert_eq(weft_loop_run(l, -1), 0);
    cr_assert_lt(mono_ms() - t0, 5000);
    cr_assert_eq(k.fired, 0);
    weft__timer_stop(l, &k.t);
    weft_loop_free(l);
}

/* ---- re-arm ----------------------------------------------------------------- */

typedef struct counted {
    weft__pollent pe;
    int events;
} counted;

static void on_counted(weft__pollent *pe, int ev)
{
    (void)ev;
    ((counted *)pe)->events++;
}

Test(loop_ext, rearm_reports_what_holds_once_more, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    counted c = {.pe = {.fd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC), .on_event = on_counted}};
    cr_assert_geq(c.pe.fd, 0);
    cr_assert_eq(l->be->arm(l, &c.pe, WEFT__EV_IN | WEFT__EV_OUT), 0);
    weft_loop_poll(l, 0);
    cr_assert_eq(c.events, 1, "the first edge");
    weft_loop_poll(l, 0);
    weft_loop_poll(l, 0);
    /* poll(2) reports input of what is not a socket level-triggered (its
     * owners drain it); output it reports once, as the others do. */
    bool level_in = strcmp(l->be->name, "poll") == 0;
    cr_assert_eq(c.events, level_in ? 3 : 1, "edge-triggered: nothing new, nothing reported");
    int before = c.events;
    cr_assert_eq(l->be->rearm(l, &c.pe, WEFT__EV_OUT), 0);
    weft_loop_poll(l, 0);
    cr_assert_eq(c.events, before + 1, "re-armed: still writable, so reported again");
    cr_assert_eq(l->be->disarm(l, &c.pe), 0);
    close(c.pe.fd);
    weft_loop_free(l);
}

/* ---- waking from another thread --------------------------------------------- */

typedef struct remote {
    pthread_mutex_t mu;
    weft__waiter_id id;
    int phase;    /* the coroutine's progress, under mu */
    int rc[2];
    int wake_rc;
} remote;

static void remote_waiter(void *arg)
{
    remote *r = arg;
    weft__wait w;
    weft__waitq q = {0};
    /* 1: woken by the other thread. */
    pthread_mutex_lock(&r->mu);
    r->id = weft__wait_here();
    r->phase = 1;
    pthread_mutex_unlock(&r->mu);
    r->rc[0] = weft__park(&w, &q, weft__now_ns() + 5000 * WEFT__NS_PER_MS);
    /* 2: a wake meant for the first wait comes during a second one: it
     * must not end it. */
    pthread_mutex_lock(&r->mu);
    r->phase = 2;
    pthread_mutex_unlock(&r->mu);
    r->rc[1] = weft__park(&w, &q, weft__now_ns() + 300 * WEFT__NS_PER_MS);
}

static void *remote_waker(void *arg)
{
    remote *r = arg;
    for (int phase = 1; phase <= 2; phase++) {
        for (;;) {
            pthread_mutex_lock(&r->mu);
            int p = r->phase;
            pthread_mutex_unlock(&r->mu);
            if (p >= phase)
                break;
            usleep(1000);
        }
        usleep(20000); /* parked by now */
        weft__waiter_id id = r->id;
        int rc = weft__wake_from(&id, phase == 1 ? 42 : 43);
        if (rc < 0)
            r->wake_rc = rc;
    }
    return NULL;
}

Test(loop_ext, wake_from_another_thread_reaches_that_wait_only, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    remote r = {.mu = PTHREAD_MUTEX_INITIALIZER};
    cr_assert_gt(weft_go(remote_waiter, &r), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, remote_waker, &r), 0);
    cr_assert_eq(weft_loop_run(l, 10000), 0);
    pthread_join(t, NULL);
    cr_assert_eq(r.wake_rc, 0);
    cr_assert_eq(r.rc[0], 42, "the wait it was meant for: %d", r.rc[0]);
    cr_assert_eq(r.rc[1], -ETIMEDOUT, "a later wait woken by a stale wake: %d", r.rc[1]);
    weft_loop_free(l);
}

/* A wake queued for a coroutine that has finished, still queued when the
 * loop is freed, frees what it holds (LeakSanitizer) and wakes nothing. */
static weft__waiter_id gone_id;

static void record_and_finish(void *arg)
{
    (void)arg;
    gone_id = weft__wait_here();
}

static void *wake_gone(void *arg)
{
    return (void *)(intptr_t)weft__wake_from(arg, 7);
}

Test(loop_ext, wake_for_a_finished_coroutine_does_nothing, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    cr_assert_gt(weft_go(record_and_finish, NULL), 0);
    cr_assert_eq(weft_loop_run(l, 5000), 0);
    pthread_t t;
    void *rc;
    cr_assert_eq(pthread_create(&t, NULL, wake_gone, &gone_id), 0);
    pthread_join(t, &rc);
    cr_assert_eq((intptr_t)rc, 0);
    weft_loop_free(l); /* the wake is still queued */
}

/* A wait that ends at once (a cancel already pending) still uses up the
 * number weft__wait_here gave out: a wake queued for it must not end the
 * coroutine's next wait. */
static void early_then_wait(void *arg)
{
    remote *r = arg;
    weft__wait w;
    weft__waitq q = {0};
    pthread_mutex_lock(&r->mu);
    r->id = weft__wait_here();
    pthread_mutex_unlock(&r->mu);
    weft_cancel(weft_self());
    r->rc[0] = weft__park(&w, &q, weft__now_ns() + 5000 * WEFT__NS_PER_MS); /* at once */
    pthread_mutex_lock(&r->mu);
    r->phase = 2;
    pthread_mutex_unlock(&r->mu);
    r->rc[1] = weft__park(&w, &q, weft__now_ns() + 300 * WEFT__NS_PER_MS);
}

static void *stale_waker(void *arg)
{
    remote *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        int p = r->phase;
        pthread_mutex_unlock(&r->mu);
        if (p == 2)
            break;
        usleep(1000);
    }
    usleep(20000); /* the second wait is parked by now */
    weft__waiter_id id = r->id;
    r->wake_rc = weft__wake_from(&id, 99);
    return NULL;
}

Test(loop_ext, wait_ended_at_once_uses_up_its_number, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    remote r = {.mu = PTHREAD_MUTEX_INITIALIZER};
    cr_assert_gt(weft_go(early_then_wait, &r), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, stale_waker, &r), 0);
    cr_assert_eq(weft_loop_run(l, 10000), 0);
    pthread_join(t, NULL);
    cr_assert_eq(r.rc[0], -ECANCELED);
    cr_assert_eq(r.rc[1], -ETIMEDOUT, "the next wait was ended by a stale wake: %d", r.rc[1]);
    weft_loop_free(l);
}
