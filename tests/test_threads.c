/*
 * test_threads.c - weft_main with several loops: weft_go_on, the group's
 * end, weft_loop_index/count, cancel and join across loops, posts from
 * plain threads (RELIABILITY #51, #68).  A loop freed while threads post
 * (#69), and races, are check_loops_threads.c's (under ThreadSanitizer
 * too).
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static weft_config threads_cfg(int n)
{
    return (weft_config){.threads = n};
}

/* ---- where coroutines run ------------------------------------------------------ */

static atomic_int seen_on[8];
static atomic_int count_seen[8];

static void note_loop(void *arg)
{
    (void)arg;
    int i = weft_loop_index();
    if (i >= 0 && i < 8)
        atomic_fetch_add(&seen_on[i], 1);
    int n = weft_loop_count();
    if (n >= 0 && n < 8)
        atomic_fetch_add(&count_seen[n], 1);
}

static int each_loop_main(void *arg)
{
    (void)arg;
    if (weft_loop_index() != 0 || weft_loop_count() != 4)
        return 100;
    int64_t id[4];
    for (int i = 0; i < 4; i++)
        if ((id[i] = weft_go_on(i, note_loop, NULL)) <= 0)
            return 101 + i;
    for (int i = 0; i < 4; i++)
        if (weft_join(id[i], 10000) != 0)
            return 110 + i;
    return 7;
}

Test(threads, go_on_runs_each_coroutine_on_the_loop_asked_for, .timeout = 60)
{
    for (int i = 0; i < 8; i++)
        seen_on[i] = count_seen[i] = 0;
    weft_config cfg = threads_cfg(4);
    cr_assert_eq(weft_main(each_loop_main, NULL, &cfg), 7);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(atomic_load(&seen_on[i]), 1, "loop %d ran %d", i, atomic_load(&seen_on[i]));
    cr_assert_eq(atomic_load(&count_seen[4]), 4);
    cr_assert_eq(weft_loop_index(), -1);
    cr_assert_eq(weft_loop_count(), 0);
}

static int any_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 40; i++)
        if (weft_go_on(WEFT_LOOP_ANY, note_loop, NULL) <= 0)
            return 1;
    return 0;
}

Test(threads, loop_any_spreads_round_robin, .timeout = 60)
{
    for (int i = 0; i < 8; i++)
        seen_on[i] = 0;
    weft_config cfg = threads_cfg(4);
    cr_assert_eq(weft_main(any_main, NULL, &cfg), 0);
    /* The group ended only after all 40 ran, wherever they went. */
    for (int i = 0; i < 4; i++)
        cr_assert_eq(atomic_load(&seen_on[i]), 10, "loop %d ran %d", i, atomic_load(&seen_on[i]));
}

/* ---- the group ends when the last coroutine anywhere does ------------------ */

static atomic_int chain_done;

static void chain(void *arg)
{
    intptr_t left = (intptr_t)arg;
    weft_sleep(20);
    if (left == 0) {
        atomic_store(&chain_done, 1);
        return;
    }
    /* Spawn on the next loop and end at once: for a moment the only thing
     * keeping the group alive is the spawn on its way. */
    int next = (weft_loop_index() + 1) % weft_loop_count();
    weft_go_on(next, chain, (void *)(left - 1));
}

static int chain_main(void *arg)
{
    (void)arg;
    return weft_go_on(1, chain, (void *)(intptr_t)12) > 0 ? 3 : -1; /* returns at once */
}

Test(threads, weft_main_waits_for_every_loop_and_spawns_on_their_way, .timeout = 60)
{
    chain_done = 0;
    weft_config cfg = threads_cfg(3);
    cr_assert_eq(weft_main(chain_main, NULL, &cfg), 3);
    cr_assert_eq(atomic_load(&chain_done), 1);
}

static int env_main(void *arg)
{
    (void)arg;
    return weft_loop_count();
}

Test(threads, count_from_config_or_environment_checked, .timeout = 60)
{
    weft_config cfg = threads_cfg(-1);
    cr_assert_eq(weft_main(env_main, NULL, &cfg), -EINVAL);
    cfg.threads = 1025;
    cr_assert_eq(weft_main(env_main, NULL, &cfg), -EINVAL);
    setenv("WEFT_THREADS", "3", 1);
    cr_assert_eq(weft_main(env_main, NULL, NULL), 3);
    cfg.threads = 2; /* the config wins */
    cr_assert_eq(weft_main(env_main, NULL, &cfg), 2);
    setenv("WEFT_THREADS", "three", 1);
    cr_assert_eq(weft_main(env_main, NULL, NULL), -EINVAL);
    setenv("WEFT_THREADS", "0", 1);
    cr_assert_eq(weft_main(env_main, NULL, NULL), -EINVAL);
    unsetenv("WEFT_THREADS");
    cr_assert_eq(weft_main(env_main, NULL, NULL), 1);
}

static int misuse_main(void *arg)
{
    (void)arg;
    if (weft_go_on(2, note_loop, NULL) != -EINVAL)
        return 1;
    if (weft_go_on(-2, note_loop, NULL) != -EINVAL)
        return 2;
    if (weft_go_on(1, NULL, NULL) != -EINVAL)
        return 3;
    return 0;
}

Test(threads, go_on_errors, .timeout = 60)
{
    cr_assert_eq(weft_go_on(0, note_loop, NULL), -EPERM);
    weft_config cfg = threads_cfg(2);
    cr_assert_eq(weft_main(misuse_main, NULL, &cfg), 0);
    /* A single loop: loop 0 is the caller's, WEFT_LOOP_ANY too. */
    for (int i = 0; i < 8; i++)
        seen_on[i] = 0;
    cr_assert_eq(weft_main(any_main, NULL, NULL), 0);
    cr_assert_eq(atomic_load(&seen_on[0]), 40);
}

/* ---- cancel and join across loops (#68) ---------------------------------------- */

static int pair[2];
static atomic_int recv_rc;

static void blocked_reader(void *arg)
{
    (void)arg;
    weft_sock *s;
    if (weft_sock_wrap(&s, pair[0]) < 0) {
        atomic_store(&recv_rc, 1000);
        return;
    }
    char b[8];
    atomic_store(&recv_rc, (int)weft_recv(s, b, sizeof b, 30000));
    weft_close(s);
}

static int cancel_main(void *arg)
{
    (void)arg;
    int64_t id = weft_go_on(1, blocked_reader, NULL);
    if (id <= 0)
        return 1;
    weft_sleep(50); /* it is in its recv by now, or soon: a cancel waits for it either way */
    int64_t t0 = weft_now();
    if (weft_cancel(id) != 0)
        return 2;
    if (weft_join(id, 10000) != 0)
        return 3;
    if (weft_now() - t0 > 5000)
        return 4; /* promptly, not at the recv's 30 s */
    /* Seen once: a second join of a finished coroutine is 0 at once. */
    if (weft_join(id, 0) != 0)
        return 5;
    /* A cancel of a finished coroutine of another loop is sent and does nothing. */
    if (weft_cancel(id) != 0)
        return 6;
    return 0;
}

Test(threads, cancel_from_another_loop_ends_a_blocked_recv, .timeout = 60)
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    recv_rc = 0;
    weft_config cfg = threads_cfg(2);
    int rc = weft_main(cancel_main, NULL, &cfg);
    cr_assert_eq(rc, 0, "step %d, recv %d", rc, atomic_load(&recv_rc));
    cr_assert_eq(atomic_load(&recv_rc), -ECANCELED, "%s", weft_err_name(atomic_load(&recv_rc)));
    close(pair[1]);
}

static void sleeper(void *arg)
{
    weft_sleep((int64_t)(intptr_t)arg);
}

static atomic_int joins_done;

static void joiner(void *arg)
{
    int64_t id = (int64_t)(intptr_t)arg;
    if (weft_join(id, 20000) == 0)
        atomic_fetch_add(&joins_done, 1);
}

static int join_main(void *arg)
{
    (void)arg;
    int64_t id = weft_go_on(1, sleeper, (void *)(intptr_t)300);
    if (id <= 0)
        return 1;
    /* A join that times out leaves nothing behind: the next one works. */
    int rc = weft_join(id, 20);
    if (rc != -ETIMEDOUT)
        return 10 + (rc < 0 ? -rc : rc);
    /* Joiners on loops 0, 2 and 3 at once, and a cancelled one. */
    joins_done = 0;
    int64_t j[3];
    for (int i = 0; i < 3; i++)
        j[i] = weft_go_on(i == 0 ? 0 : i + 1, joiner, (void *)(intptr_t)id);
    int64_t gone = weft_go_on(2, joiner, (void *)(intptr_t)id);
    weft_sleep(10);
    weft_cancel(gone);
    if (weft_join(id, 20000) != 0)
        return 2;
    for (int i = 0; i < 3; i++)
        if (weft_join(j[i], 20000) != 0)
            return 3;
    if (weft_join(gone, 20000) != 0)
        return 4;
    /* Never given out by loop 1: */
    if (weft_join(id + 1000, 1000) != -ESRCH)
        return 5;
    if (weft_cancel(((int64_t)999 << 40) | 1) != -ESRCH)
        return 6;
    return 0;
}

Test(threads, join_from_other_loops_sees_the_end_once_each, .timeout = 60)
{
    weft_config cfg = threads_cfg(4);
    cr_assert_eq(weft_main(join_main, NULL, &cfg), 0);
    cr_assert_eq(atomic_load(&joins_done), 3);
}

/* A coroutine of loop 1 joins an id that loop 0 has just given to a spawn
 * on loop 1, maybe before loop 1 has taken it from its queue. */
static atomic_llong handed_id;
static atomic_int early_join_rc;

static void short_one(void *arg)
{
    (void)arg;
}

static void early_joiner(void *arg)
{
    (void)arg;
    int64_t id;
    while ((id = atomic_load(&handed_id)) == 0)
        weft_yield();
    atomic_store(&early_join_rc, weft_join(id, 10000));
}

static int early_main(void *arg)
{
    (void)arg;
    for (int round = 0; round < 200; round++) {
        handed_id = 0;
        early_join_rc = 1;
        int64_t j = weft_go_on(1, early_joiner, NULL);
        weft_sleep(1);
        atomic_store(&handed_id, weft_go_on(1, short_one, NULL));
        if (weft_join(j, 10000) != 0 || atomic_load(&early_join_rc) != 0)
            return 1 + round;
    }
    return 0;
}

Test(threads, join_of_a_spawn_still_queued_waits_for_it, .timeout = 60)
{
    weft_config cfg = threads_cfg(2);
    cr_assert_eq(weft_main(early_main, NULL, &cfg), 0);
}

/* ---- posts from plain threads (#51) --------------------------------------------- */

#define POSTERS 4
#define POSTS_EACH 250000

static atomic_long posts_ran;
static weft_loop *post_target[2];

static void posted(void *arg)
{
    (void)arg;
    atomic_fetch_add(&posts_ran, 1);
}

static void *poster(void *arg)
{
    intptr_t k = (intptr_t)arg;
    long fails = 0;
    for (int i = 0; i < POSTS_EACH; i++)
        while (weft_loop_post(post_target[(k + i) & 1], posted, NULL) != 0)
            if (++fails > 1000000)
                return (void *)1;
    return NULL;
}

static void grab_loop(void *arg)
{
    post_target[(intptr_t)arg] = weft_loop_self();
}

typedef struct posters {
    pthread_t t[POSTERS];
    int bad;
} posters;

static void join_posters(void *arg)
{
    posters *p = arg;
    for (int k = 0; k < POSTERS; k++) {
        void *res;
        pthread_join(p->t[k], &res);
        p->bad += res != NULL;
    }
}

static int posts_main(void *arg)
{
    (void)arg;
    weft_join(weft_go_on(1, grab_loop, (void *)1), -1);
    grab_loop((void *)0);
    posters p = { .bad = 0 };
    for (intptr_t k = 0; k < POSTERS; k++)
        if (pthread_create(&p.t[k], NULL, poster, (void *)k) != 0)
            return 1;
    /* Joined on the worker pool: both loops take posts meanwhile. */
    if (weft_blocking(join_posters, &p, -1) != 0)
        return 2;
    return p.bad;
}

Test(threads, a_million_posts_from_four_threads_each_run_once, .timeout = 300)
{
    posts_ran = 0;
    weft_config cfg = threads_cfg(2);
    cr_assert_eq(weft_main(posts_main, NULL, &cfg), 0);
    cr_assert_eq(atomic_load(&posts_ran), (long)POSTERS * POSTS_EACH);
}

/* ---- sync objects made on a loop of the group ------------------------------------- */

#define SHARED_WORKERS 16
#define SHARED_ROUNDS 2000

static weft_mutex *sh_mutex;
static weft_wg *sh_wg;
static weft_chan *sh_chan;
static long sh_counter;
static atomic_int sh_failed;

static void shared_worker(void *arg)
{
    long me = (long)(intptr_t)arg;
    for (int i = 0; i < SHARED_ROUNDS; i++) {
        if (weft_mutex_lock(sh_mutex, 10000) != 0) {
            atomic_store(&sh_failed, 1);
            break;
        }
        sh_counter++; /* the mutex is all that keeps the loops apart here */
        weft_mutex_unlock(sh_mutex);
    }
    if (weft_chan_send(sh_chan, &me, 10000) != 0)
        atomic_store(&sh_failed, 2);
    weft_wg_done(sh_wg);
}

static int shared_main(void *arg)
{
    (void)arg;
    /* Made on loop 0 of four: shared, so every loop's coroutines may use them. */
    if (weft_mutex_new(&sh_mutex) || weft_wg_new(&sh_wg) ||
        weft_chan_new(&sh_chan, sizeof(long), 4))
        return 1;
    weft_wg_add(sh_wg, SHARED_WORKERS);
    for (int i = 0; i < SHARED_WORKERS; i++)
        if (weft_go_on(i % weft_loop_count(), shared_worker, (void *)(intptr_t)i) <= 0)
            return 2;
    long seen = 0, v;
    for (int i = 0; i < SHARED_WORKERS; i++) {
        if (weft_chan_recv(sh_chan, &v, 10000) != 0 || v < 0 || v >= SHARED_WORKERS)
            return 3;
        seen |= 1L << v;
    }
    if (weft_wg_wait(sh_wg, 10000) != 0)
        return 4;
    if (seen != (1L << SHARED_WORKERS) - 1)
        return 5;
    weft_chan_free(sh_chan);
    weft_wg_free(sh_wg);
    weft_mutex_free(sh_mutex);
    return 0;
}

Test(threads, sync_objects_made_on_a_loop_of_the_group_work_on_every_loop, .timeout = 120)
{
    sh_counter = 0;
    sh_failed = 0;
    weft_config cfg = threads_cfg(4);
    cr_assert_eq(weft_main(shared_main, NULL, &cfg), 0);
    cr_assert_eq(atomic_load(&sh_failed), 0);
    cr_assert_eq(sh_counter, (long)SHARED_WORKERS * SHARED_ROUNDS);
}
