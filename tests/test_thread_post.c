/*
 * test_thread_post.c - loops and threads (#51): four threads post a million
 * increments (fewer under ThreadSanitizer) to a loop run by the test's own
 * thread, and each post runs exactly once and in order per poster;
 * weft_loop_wake from another thread ends a weft_loop_poll(l, -1); two
 * threads run their own weft_main at the same time.  Run under TSan in CI
 * (the file name starting with test_thread is what selects it).
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- 4 threads post to one loop ------------------------------------------ */

#define POSTERS 4
#ifdef UNDER_TSAN
/* Under TSan every coroutine creates a TSan fiber (about 0.5 ms each). */
#define PER_POSTER 2500
#else
#define PER_POSTER 250000
#endif
#define TOTAL_POSTS (POSTERS * PER_POSTER)

static weft_loop *post_loop;
static unsigned char post_ran[TOTAL_POSTS];
static long post_count, post_out_of_order;
static long last_seen[POSTERS];
static long post_failed[POSTERS];
static int64_t keeper_id;
static int keeper_rc;

/* Runs on the loop's thread, as a coroutine. */
static void post_body(void *arg)
{
    long idx = (long)(uintptr_t)arg;
    int t = (int)(idx / PER_POSTER);
    post_ran[idx]++;
    if (idx <= last_seen[t])
        post_out_of_order++;
    last_seen[t] = idx;
    if (++post_count == TOTAL_POSTS)
        weft_cancel(keeper_id);
}

/* Keeps the loop alive until the last post has run. */
static void keeper(void *arg)
{
    (void)arg;
    keeper_rc = weft_sleep(60000);
}

static void *poster(void *arg)
{
    int t = (int)(uintptr_t)arg;
    for (long i = 0; i < PER_POSTER; i++) {
        long idx = (long)t * PER_POSTER + i;
        if (weft_loop_post(post_loop, post_body, (void *)(uintptr_t)idx) != 0)
            post_failed[t]++;
    }
    return NULL;
}

Test(thread_post, four_threads_post_exactly_once, .timeout = 180)
{
    int fds = count_fds();
    memset(post_ran, 0, sizeof post_ran);
    for (int t = 0; t < POSTERS; t++)
        last_seen[t] = (long)t * PER_POSTER - 1;
    cr_assert_eq(weft_loop_new(&post_loop, NULL), 0);
    keeper_id = weft_go(keeper, NULL);
    cr_assert_gt(keeper_id, 0);

    pthread_t th[POSTERS];
    int64_t t0 = mono_ms();
    for (int t = 0; t < POSTERS; t++)
        cr_assert_eq(pthread_create(&th[t], NULL, poster, (void *)(uintptr_t)t), 0);
    int rc = weft_loop_run(post_loop, 45000);
    for (int t = 0; t < POSTERS; t++)
        pthread_join(th[t], NULL);
    cr_log_info("%d posts from %d threads: %" PRId64 " ms", TOTAL_POSTS, POSTERS, mono_ms() - t0);
    cr_assert_eq(rc, 0, "weft_loop_run: %s, %ld posts ran", weft_err_name(rc), post_count);
    weft_loop_free(post_loop);

    for (int t = 0; t < POSTERS; t++)
        cr_assert_eq(post_failed[t], 0);
    cr_assert_eq(keeper_rc, -ECANCELED);
    cr_assert_eq(post_count, TOTAL_POSTS);
    cr_assert_eq(post_out_of_order, 0, "posts from one thread ran out of order");
    for (long i = 0; i < TOTAL_POSTS; i++)
        cr_assert_eq(post_ran[i], 1, "post %ld ran %d times", i, post_ran[i]);
    cr_assert_eq(count_fds(), fds);
}

/* ---- weft_loop_wake from another thread ------------------------------------ */

static weft_loop *wake_loop;
static atomic_int wake_go;

static void *waker(void *arg)
{
    (void)arg;
    /* Give the loop time to block first. */
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
    /* Flag first: once the poll has returned with it set, the wake was
     * what ended it (or at least had been sent). */
    atomic_store(&wake_go, 1);
    weft_loop_wake(wake_loop);
    return NULL;
}

static int wake_sleeper_rc;

static void wake_sleeper(void *arg)
{
    (void)arg;
    wake_sleeper_rc = weft_sleep(20000);
}

/*
 * Polls with timeout -1 until the waker's flag is up.  Steps that return
 * with nothing done are tolerated and counted here (embed::idle_new_loop_waits
 * and embed::wake_is_consumed are about those); without a working wake the
 * poll never returns and the test times out.
 */
static int poll_until_woken(long *extra)
{
    int rc;
    *extra = 0;
    for (;;) {
        rc = weft_loop_poll(wake_loop, -1);
        if (rc < 0 || atomic_load(&wake_go))
            return rc;
        ++*extra;
    }
}

Test(thread_post, wake_ends_blocked_poll, .timeout = 60)
{
    cr_assert_eq(weft_loop_new(&wake_loop, NULL), 0);
    long extra;

    /* Nothing alive and no timer: the step would wait forever. */
    pthread_t t;
    atomic_store(&wake_go, 0);
    cr_assert_eq(pthread_create(&t, NULL, waker, NULL), 0);
    int64_t t0 = mono_ms();
    cr_assert_eq(poll_until_woken(&extra), 0);
    int64_t took = mono_ms() - t0;
    pthread_join(t, NULL);
    cr_log_info("idle loop: %ld early returns before the wake", extra);
    cr_assert(took >= 90 && took < 5000, "poll returned after %" PRId64 " ms", took);

    /* A 20 s timer pending: the wake still ends the step early. */
    int64_t id = weft_go(wake_sleeper, NULL);
    cr_assert_eq(weft_loop_poll(wake_loop, 0), 1);
    atomic_store(&wake_go, 0);
    cr_assert_eq(pthread_create(&t, NULL, waker, NULL), 0);
    t0 = mono_ms();
    cr_assert_eq(poll_until_woken(&extra), 1);
    took = mono_ms() - t0;
    pthread_join(t, NULL);
    cr_log_info("with a timer: %ld early returns before the wake", extra);
    cr_assert(took >= 90 && took < 5000, "poll returned after %" PRId64 " ms", took);

    weft_cancel(id);
    cr_assert_eq(weft_loop_run(wake_loop, 1000), 0);
    cr_assert_eq(wake_sleeper_rc, -ECANCELED);
    weft_loop_free(wake_loop);
}

/* ---- two threads, two loops ------------------------------------------------- */

#define PAIRS 2
#define ROUNDS 200

typedef struct thread_run {
    int index;
    int main_rc;
    long echoed;
    int64_t some_id;  /* an id from this thread's loop */
    int foreign_join; /* weft_join on the other loop's id */
    int foreign_cancel;
    const char *foreign_name;
} thread_run;

static thread_run runs[PAIRS];
static atomic_int ids_published;

static void tr_echo(void *arg)
{
    weft_sock *s = arg;
    char buf[256];
    ssize_t n;
    while ((n = weft_recv(s, buf, sizeof buf, 3000)) > 0)
        if (weft_send(s, buf, (size_t)n, 3000) != n)
            break;
    weft_close(s);
}

static int tr_main(void *arg)
{
    thread_run *r = arg;
    weft_sock *l, *c, *s;
    int port = listen_any(&l, "127.0.0.1");
    if (port <= 0)
        return -1;
    if (weft_tcp_connect(&c, "127.0.0.1", port, 2000) < 0 || weft_tcp_accept(l, &s, 2000) < 0)
        return -2;
    weft_close(l);
    weft_go(tr_echo, s);
    r->some_id = weft_self();
    atomic_fetch_add(&ids_published, 1);
    for (int i = 0; i < ROUNDS; i++) {
        char msg[32], back[32];
        int n = snprintf(msg, sizeof msg, "t%d-%d", r->index, i);
        if (weft_send(c, msg, (size_t)n, 2000) != n || weft_recvn(c, back, (size_t)n, 2000) != n ||
            memcmp(msg, back, (size_t)n) != 0)
            break;
        r->echoed++;
        if (i % 50 == 0)
            weft_sleep(1);
    }
    /* Wait (bounded) until the other thread has published its id. */
    for (int i = 0; i < 2000 && atomic_load(&ids_published) < PAIRS; i++)
        weft_sleep(1);
    int64_t other = runs[(r->index + 1) % PAIRS].some_id;
    r->foreign_join = weft_join(other, 100);
    r->foreign_cancel = weft_cancel(other);
    r->foreign_name = weft_name(other);
    weft_close(c);
    return 0;
}

static void *tr_thread(void *arg)
{
    thread_run *r = arg;
    r->main_rc = weft_main(tr_main, r, NULL);
    return NULL;
}

Test(thread_post, two_threads_two_loops, .timeout = 60)
{
    int fds = count_fds();
    pthread_t th[PAIRS];
    atomic_store(&ids_published, 0);
    for (int i = 0; i < PAIRS; i++) {
        memset(&runs[i], 0, sizeof runs[i]);
        runs[i].index = i;
    }
    for (int i = 0; i < PAIRS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, tr_thread, &runs[i]), 0);
    for (int i = 0; i < PAIRS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < PAIRS; i++) {
        cr_assert_eq(runs[i].main_rc, 0, "thread %d: weft_main %d", i, runs[i].main_rc);
        cr_assert_eq(runs[i].echoed, ROUNDS, "thread %d echoed %ld", i, runs[i].echoed);
        cr_assert_gt(runs[i].some_id, 0);
        cr_assert_eq(runs[i].foreign_join, -ESRCH, "thread %d joined another loop's coroutine", i);
        cr_assert_eq(runs[i].foreign_cancel, -ESRCH);
        cr_assert_null(runs[i].foreign_name);
    }
    cr_assert_neq(runs[0].some_id, runs[1].some_id, "two loops gave the same id");
    cr_assert_eq(count_fds(), fds);
}
