/*
 * check_sync_threads.c - the sync layer across threads, as a plain program
 * so that it runs under ThreadSanitizer (Criterion does not start under
 * TSan here).  `make test-tsan` runs it; test_sync_event.c covers the same
 * ground in the normal and ASan suites.  Exit status 0 = pass.
 *
 * 1. #66: a plain thread sets an event 100,000 times while a coroutine
 *    waits and resets it; each set is acknowledged through a second event
 *    the thread waits on, so a spurious or a lost wake-up shows.
 * 2. The same without the hand-shake: the thread sets as fast as it can
 *    while the coroutine waits with short timeouts and resets.
 * 3. Coroutines of two loops, each on its own thread, wake each other.
 * 4. A loop's own thread waits outside any coroutine, running its loop;
 *    another thread's set ends the wait.
 * 5. A coroutine frees an event as soon as a thread's set has woken it.
 * 6. Channels, mutexes, conditions, wait groups, semaphores refuse calls
 *    from a thread they do not belong to with -EXDEV.
 */
#include <weft.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "check_sync_threads: " __VA_ARGS__);                                   \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* ---- 1. 100,000 acknowledged sets ------------------------------------------ */

#define SETS 100000

static weft_event *ev, *ack;
static atomic_int pending;
static atomic_long spurious, lost;

static void *acked_setter(void *arg)
{
    (void)arg;
    for (int i = 0; i < SETS; i++) {
        atomic_store(&pending, 1);
        int rc = weft_event_set(ev);
        if (rc != 0 || weft_event_wait(ack, 30000) != 0) {
            atomic_fetch_add(&lost, 1);
            break;
        }
    }
    return NULL;
}

static int acked_main(void *arg)
{
    (void)arg;
    pthread_t t;
    pthread_create(&t, NULL, acked_setter, NULL);
    for (int i = 0; i < SETS; i++) {
        if (weft_event_wait(ev, 30000) != 0) {
            atomic_fetch_add(&lost, 1);
            break;
        }
        if (atomic_exchange(&pending, 0) != 1)
            atomic_fetch_add(&spurious, 1);
        weft_event_reset(ev);
        weft_event_set(ack);
    }
    pthread_join(t, NULL);
    return 0;
}

static void check_acked(void)
{
    CHECK(weft_event_new(&ev, 1) == 0 && weft_event_new(&ack, 0) == 0, "weft_event_new");
    CHECK(weft_main(acked_main, NULL, NULL) == 0, "weft_main");
    CHECK(atomic_load(&lost) == 0, "%ld lost wake-ups", atomic_load(&lost));
    CHECK(atomic_load(&spurious) == 0, "%ld spurious wake-ups", atomic_load(&spurious));
    CHECK(weft_event_free(ev) == 0 && weft_event_free(ack) == 0, "weft_event_free");
}

/* ---- 2. sets as fast as they come -------------------------------------------- */

#define FAST_SETS 50000

static atomic_int setter_done;
static long wakes, timeouts, other;

static void *fast_setter(void *arg)
{
    (void)arg;
    for (int i = 0; i < FAST_SETS; i++) {
        if (weft_event_set(ev) != 0)
            atomic_fetch_add(&lost, 1);
        if (i % 64 == 0)
            sched_yield();
    }
    atomic_store(&setter_done, 1);
    return NULL;
}

static int fast_main(void *arg)
{
    (void)arg;
    pthread_t t;
    pthread_create(&t, NULL, fast_setter, NULL);
    while (!atomic_load(&setter_done)) {
        int rc = weft_event_wait(ev, 1);
        if (rc == 0)
            wakes++;
        else if (rc == -ETIMEDOUT)
            timeouts++;
        else
            other++;
        if (wakes % 3 == 0)
            weft_event_reset(ev);
    }
    pthread_join(t, NULL);
    weft_event_set(ev);
    CHECK(weft_event_wait(ev, 0) == 0, "the last set is there to take");
    return 0;
}

static void check_fast(void)
{
    CHECK(weft_event_new(&ev, 0) == 0, "weft_event_new");
    CHECK(weft_main(fast_main, NULL, NULL) == 0, "weft_main");
    CHECK(other == 0, "%ld waits returned neither 0 nor -ETIMEDOUT", other);
    CHECK(wakes >= 1 && wakes <= FAST_SETS, "%ld wakes for %d sets", wakes, FAST_SETS);
    CHECK(weft_event_free(ev) == 0, "weft_event_free");
}

/* ---- 3. two loops ---------------------------------------------------------------- */

#define ROUNDS 20000

static int ping_side(void *arg)
{
    int me = (int)(intptr_t)arg;
    weft_event *mine = me ? ack : ev, *theirs = me ? ev : ack;
    for (int i = 0; i < ROUNDS; i++) {
        if (me == 0 && weft_event_set(theirs) != 0)
            return -1;
        int rc = weft_event_wait(mine, 30000);
        if (rc != 0)
            return rc;
        if (me == 1 && weft_event_set(theirs) != 0)
            return -1;
    }
    return 0;
}

static int loop_rc[2];

static void *loop_thread(void *arg)
{
    loop_rc[(intptr_t)arg] = weft_main(ping_side, arg, NULL);
    return NULL;
}

static void check_two_loops(void)
{
    CHECK(weft_event_new(&ev, 0) == 0 && weft_event_new(&ack, 0) == 0, "weft_event_new");
    pthread_t t[2];
    for (intptr_t i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, loop_thread, (void *)i);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK(loop_rc[0] == 0 && loop_rc[1] == 0, "two loops: %s, %s", weft_strerror(loop_rc[0]),
          weft_strerror(loop_rc[1]));
    CHECK(weft_event_free(ev) == 0 && weft_event_free(ack) == 0, "weft_event_free");
}

/* ---- 4. the loop's own thread waits --------------------------------------------- */

static void *set_after(void *arg)
{
    usleep((useconds_t)(intptr_t)arg);
    weft_event_set(ev);
    return NULL;
}

static void ticker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++)
        weft_sleep(1);
}

static void check_stepping(void)
{
    weft_loop *l;
    CHECK(weft_loop_new(&l, NULL) == 0, "weft_loop_new");
    CHECK(weft_event_new(&ev, 0) == 0, "weft_event_new");
    for (int round = 0; round < 200; round++) {
        if (round % 2)
            weft_go(ticker, NULL); /* coroutines running meanwhile, or none */
        pthread_t t;
        pthread_create(&t, NULL, set_after, (void *)(intptr_t)(round % 7 * 100));
        int rc = weft_event_wait(ev, 30000);
        pthread_join(t, NULL);
        CHECK(rc == 0, "round %d: %s", round, weft_strerror(rc));
    }
    CHECK(weft_loop_run(l, 30000) == 0, "weft_loop_run");
    CHECK(weft_event_free(ev) == 0, "weft_event_free");
    weft_loop_free(l);
}

/* ---- 5. freed as soon as woken --------------------------------------------------- */

static void *set_fleeting(void *arg)
{
    weft_event_set(arg);
    return NULL;
}

static int free_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 2000; i++) {
        weft_event *e;
        if (weft_event_new(&e, i % 2) != 0)
            return -ENOMEM;
        pthread_t t;
        pthread_create(&t, NULL, set_fleeting, e);
        int rc = weft_event_wait(e, 30000);
        int f = weft_event_free(e); /* the setter may still be returning */
        pthread_join(t, NULL);
        if (rc != 0 || f != 0)
            return rc ? rc : f;
    }
    return 0;
}

static void check_free(void)
{
    int rc = weft_main(free_main, NULL, NULL);
    CHECK(rc == 0, "free as soon as woken: %s", weft_strerror(rc));
}

/* ---- 6. -EXDEV ---------------------------------------------------------------------- */

static weft_chan *ch;
static weft_mutex *mu;
static weft_cond *cv;
static weft_wg *wg;
static weft_sem *sem;
static int xrc[12];

static void *foreign(void *arg)
{
    (void)arg;
    long v = 1;
    weft_select_case k = {ch, WEFT_CHAN_RECV, &v, 0};
    xrc[0] = weft_chan_send(ch, &v, 0);
    xrc[1] = weft_chan_recv(ch, &v, 0);
    xrc[2] = weft_chan_close(ch);
    xrc[3] = weft_select(&k, 1, 0);
    xrc[4] = weft_mutex_lock(mu, 0);
    xrc[5] = weft_mutex_unlock(mu);
    xrc[6] = weft_cond_signal(cv);
    xrc[7] = weft_cond_wait(cv, mu, 0);
    xrc[8] = weft_wg_add(wg, 1);
    xrc[9] = weft_wg_wait(wg, 0);
    xrc[10] = weft_sem_acquire(sem, 0);
    xrc[11] = weft_sem_release(sem);
    return NULL;
}

static int exdev_main(void *arg)
{
    (void)arg;
    pthread_t t;
    pthread_create(&t, NULL, foreign, NULL);
    pthread_join(t, NULL);
    return 0;
}

static void check_exdev(void)
{
    weft_loop *l;
    CHECK(weft_loop_new(&l, NULL) == 0, "weft_loop_new");
    CHECK(weft_chan_new(&ch, sizeof(long), 1) == 0 && weft_mutex_new(&mu) == 0 &&
              weft_cond_new(&cv) == 0 && weft_wg_new(&wg) == 0 && weft_sem_new(&sem, 1) == 0,
          "constructors");
    weft_loop_free(l);
    CHECK(weft_main(exdev_main, NULL, NULL) == 0, "weft_main");
    for (int i = 0; i < 12; i++)
        CHECK(xrc[i] == -EXDEV, "call %d from another thread: %s", i, weft_strerror(xrc[i]));
    CHECK(weft_chan_free(ch) == 0 && weft_mutex_free(mu) == 0 && weft_cond_free(cv) == 0 &&
              weft_wg_free(wg) == 0 && weft_sem_free(sem) == 0,
          "free");
}

int main(void)
{
    check_acked();
    check_fast();
    check_two_loops();
    check_stepping();
    check_free();
    check_exdev();
    if (failures)
        fprintf(stderr, "check_sync_threads: %d failure(s)\n", failures);
    return failures != 0;
}
