/*
 * test_embed.c - driving a loop by hand: weft_loop_new, weft_go, a plain
 * poll() on weft_loop_fd() and weft_loop_poll(l, 0) until nothing is alive;
 * when the descriptor must be readable (a due timer, ready coroutines, I/O,
 * a post); weft_loop_poll/run results and errors (-EBUSY, -EINVAL,
 * -ETIMEDOUT), weft_loop_stop, weft_loop_free cancelling what is left, and
 * backend selection through weft_config and $WEFT_BACKEND.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IN_RANGE(v, lo, hi) ((v) >= (lo) && (v) < (hi))

/* Whether fd is readable within ms. */

/* weft_loop_fd, or the test is skipped on a backend without one (poll:
 * test_backend checks it says -ENOTSUP). */
static int loop_fd_or_skip(weft_loop *l)
{
    int fd = weft_loop_fd(l);
    if (fd == -ENOTSUP) {
        weft_loop_free(l);
        cr_skip_test("%s has no descriptor to watch", weft_backend());
    }
    return fd;
}

static int readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, ms);
    return n > 0 && (p.revents & POLLIN);
}

/* ---- a whole run driven by poll() ------------------------------------------ */

static int sleep_rc[3];
static int64_t sleep_ms[3];
static int echo_port;
static ssize_t echo_server_got, echo_client_got;
static char echo_reply[16];

static void emb_sleeper(void *arg)
{
    int i = (int)(uintptr_t)arg;
    int64_t t0 = mono_ms();
    sleep_rc[i] = weft_sleep(20 + 30 * i);
    sleep_ms[i] = mono_ms() - t0;
}

static void emb_server(void *arg)
{
    weft_sock *l = arg, *c;
    if (weft_tcp_accept(l, &c, 2000) == 0) {
        char buf[64];
        echo_server_got = weft_recv(c, buf, sizeof buf, 2000);
        if (echo_server_got > 0)
            weft_send(c, buf, (size_t)echo_server_got, 2000);
        weft_close(c);
    }
    weft_close(l);
}

static void emb_client(void *arg)
{
    (void)arg;
    weft_sock *c;
    weft_sleep(15); /* let the loop go idle first */
    if (weft_tcp_connect(&c, "127.0.0.1", echo_port, 2000) < 0)
        return;
    weft_sleep(10);
    weft_send(c, "embedded", 8, 2000);
    echo_client_got = weft_recvn(c, echo_reply, 8, 2000);
    weft_close(c);
}

Test(embed, driven_by_poll_on_loop_fd, .timeout = 30)
{
    int fds = count_fds();
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    int fd = loop_fd_or_skip(l);
    cr_assert_geq(fd, 0);

    weft_sock *ls;
    echo_port = listen_any(&ls, "127.0.0.1");
    cr_assert_gt(echo_port, 0);
    for (uintptr_t i = 0; i < 3; i++)
        cr_assert_gt(weft_go(emb_sleeper, (void *)i), 0);
    cr_assert_gt(weft_go(emb_server, ls), 0);
    cr_assert_gt(weft_go(emb_client, NULL), 0);

    int64_t t0 = mono_ms();
    int alive = weft_loop_poll(l, 0);
    long steps = 1, idle = 0;
    while (alive > 0 && mono_ms() - t0 < 3000) {
        /* The descriptor must wake us whenever there is work: a timeout
         * here means a step was due but the fd did not say so. */
        if (!readable(fd, 500))
            idle++;
        alive = weft_loop_poll(l, 0);
        steps++;
    }
    int64_t took = mono_ms() - t0;
    cr_log_info("%ld steps in %" PRId64 " ms", steps, took);
    cr_assert_eq(alive, 0);
    cr_assert_eq(idle, 0, "weft_loop_fd stayed quiet while work was due (%ld times)", idle);
    cr_assert_lt(steps, 500, "the fd was readable with nothing to do (%ld steps)", steps);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(sleep_rc[i], 0);
        cr_assert(IN_RANGE(sleep_ms[i], 20 + 30 * i, 20 + 30 * i + LATE_MS),
                  "sleeper %d: %" PRId64 " ms", i, sleep_ms[i]);
    }
    cr_assert_eq(echo_server_got, 8);
    cr_assert_eq(echo_client_got, 8);
    cr_assert_eq(memcmp(echo_reply, "embedded", 8), 0);
    weft_loop_free(l);
    cr_assert_eq(count_fds(), fds);
}

/* ---- when the descriptor is readable ----------------------------------------------- */

/* A new, empty loop has nothing to do: its descriptor is quiet and a step
 * with a timeout waits all of it. */
Test(embed, idle_new_loop_waits, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    int fd = loop_fd_or_skip(l);
    cr_assert_geq(fd, 0);
    int early = readable(fd, 0);
    int64_t t0 = mono_ms();
    int rc = weft_loop_poll(l, 100);
    int64_t took = mono_ms() - t0;
    t0 = mono_ms();
    int rc2 = weft_loop_poll(l, 100);
    int64_t took2 = mono_ms() - t0;
    weft_loop_free(l);
    cr_assert_eq(rc, 0);
    cr_assert_eq(rc2, 0);
    cr_expect_eq(early, 0, "weft_loop_fd readable on a new loop with nothing to do");
    cr_expect(IN_RANGE(took, 99, 100 + LATE_MS),
              "first weft_loop_poll(l, 100) returned after %" PRId64 " ms", took);
    cr_expect(IN_RANGE(took2, 99, 100 + LATE_MS),
              "second weft_loop_poll(l, 100) returned after %" PRId64 " ms", took2);
}

static int due_rc;

static void due_sleeper(void *arg)
{
    (void)arg;
    due_rc = weft_sleep(50);
}

Test(embed, fd_readable_for_due_timer, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    int fd = loop_fd_or_skip(l);
    cr_assert_geq(fd, 0);
    /* Settle the new loop first (idle_new_loop_waits is about that). */
    cr_assert_eq(weft_loop_poll(l, 0), 0);
    due_rc = -1;
    weft_go(due_sleeper, NULL);
    cr_assert_eq(weft_loop_poll(l, 0), 1, "the sleeper parks");
    cr_assert_eq(readable(fd, 0), 0, "nothing is due yet");
    int64_t t0 = mono_ms();
    cr_assert_eq(readable(fd, 1000), 1, "the timer's expiry must make the fd readable");
    int64_t took = mono_ms() - t0;
    cr_assert(IN_RANGE(took, 45, 50 + LATE_MS), "fd readable after %" PRId64 " ms", took);
    cr_assert_eq(weft_loop_poll(l, 0), 0);
    cr_assert_eq(due_rc, 0);
    cr_assert_eq(readable(fd, 0), 0, "no work left");
    weft_loop_free(l);
}

/* A wake that has been handled leaves nothing behind: the step after the
 * one it ended waits its full timeout again. */
Test(embed, wake_is_consumed, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    weft_loop_poll(l, 0);
    weft_loop_poll(l, 0);
    weft_loop_wake(l);
    int64_t t0 = mono_ms();
    cr_assert_eq(weft_loop_poll(l, 1000), 0);
    int64_t woke = mono_ms() - t0;
    t0 = mono_ms();
    cr_assert_eq(weft_loop_poll(l, 100), 0);
    int64_t next = mono_ms() - t0;
    weft_loop_free(l);
    cr_assert_lt(woke, 500, "the wake did not end the step (%" PRId64 " ms)", woke);
    cr_assert(IN_RANGE(next, 99, 100 + LATE_MS),
              "the step after a wake returned after %" PRId64 " ms", next);
}

static int yields_left;

static void yielder(void *arg)
{
    (void)arg;
    while (yields_left-- > 0)
        weft_yield();
}

Test(embed, fd_readable_for_yielding_coroutine, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    int fd = loop_fd_or_skip(l);
    yields_left = 3;
    weft_go(yielder, NULL);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(weft_loop_poll(l, 0), 1);
        cr_assert_eq(readable(fd, 200), 1, "step %d: a ready coroutine must make the fd readable",
                     i);
    }
    cr_assert_eq(weft_loop_poll(l, 0), 0);
    weft_loop_free(l);
}

static volatile int spawned_ran;

static void mark_ran(void *arg)
{
    (void)arg;
    spawned_ran++;
}

static int cancel_target_rc;

static void cancel_target(void *arg)
{
    (void)arg;
    cancel_target_rc = weft_sleep(10000);
}

/* Work created from outside any step (weft_go or weft_cancel on the loop's
 * thread, as an embedding application does from its own callbacks) is
 * work for weft_loop_poll: the descriptor must say so. */
Test(embed, fd_readable_after_go_or_cancel_from_outside, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    int fd = loop_fd_or_skip(l);
    cr_assert_eq(weft_loop_poll(l, 0), 0);
    cr_assert_eq(readable(fd, 0), 0);

    spawned_ran = 0;
    cr_assert_gt(weft_go(mark_ran, NULL), 0);
    int after_go = readable(fd, 200);
    cr_assert_eq(weft_loop_poll(l, 0), 0);
    cr_assert_eq(spawned_ran, 1);

    int64_t id = weft_go(cancel_target, NULL);
    cr_assert_eq(weft_loop_poll(l, 0), 1);
    cr_assert_eq(readable(fd, 0), 0, "the target is parked: nothing to do");
    cr_assert_eq(weft_cancel(id), 0);
    int after_cancel = readable(fd, 200);
    cr_assert_eq(weft_loop_poll(l, 0), 0);
    cr_assert_eq(cancel_target_rc, -ECANCELED);
    weft_loop_free(l);

    cr_expect_eq(after_go, 1, "weft_go from outside a step: fd not readable");
    cr_expect_eq(after_cancel, 1, "weft_cancel from outside a step: fd not readable");
}

static ssize_t io_rc;
static char io_buf[8];

static void io_reader(void *arg)
{
    io_rc = weft_recv(arg, io_buf, sizeof io_buf, 5000);
}

static weft_sock *io_a, *io_b;

static void io_setup(void *arg)
{
    (void)arg;
    if (make_pair(&io_a, &io_b) < 0)
        io_a = io_b = NULL;
}

Test(embed, fd_readable_for_io_and_post, .timeout = 30)
{
    int fds = count_fds();
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    int fd = loop_fd_or_skip(l);
    weft_go(io_setup, NULL);
    cr_assert_eq(weft_loop_run(l, 2000), 0);
    cr_assert_not_null(io_a);

    weft_go(io_reader, io_a);
    cr_assert_eq(weft_loop_poll(l, 0), 1, "the reader parks");
    cr_assert_eq(readable(fd, 50), 0, "idle connection: nothing to do");
    /* From the main stack: weft_send works outside coroutines too. */
    cr_assert_eq(weft_send(io_b, "data", 4, 1000), 4);
    cr_assert_eq(readable(fd, 1000), 1, "incoming data must make the fd readable");
    cr_assert_eq(weft_loop_poll(l, 0), 0);
    cr_assert_eq(io_rc, 4);

    spawned_ran = 0;
    cr_assert_eq(weft_loop_post(l, mark_ran, NULL), 0);
    cr_assert_eq(readable(fd, 1000), 1, "a post must make the fd readable");
    int left = weft_loop_poll(l, 0);
    for (int i = 0; i < 3 && spawned_ran == 0; i++)
        left = weft_loop_poll(l, 0);
    cr_assert_eq(spawned_ran, 1);
    cr_assert_eq(left, 0);

    weft_loop_free(l);
    weft_close(io_a);
    weft_close(io_b);
    cr_assert_eq(count_fds(), fds);
}

/* ---- poll and run results ------------------------------------------------------------ */

static void yield_n(void *arg)
{
    for (uintptr_t i = (uintptr_t)arg; i > 0; i--)
        weft_yield();
}

Test(embed, poll_returns_alive_count, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    cr_assert_eq(weft_loop_poll(l, 0), 0, "an empty loop");
    weft_go(yield_n, (void *)0);
    weft_go(yield_n, (void *)1);
    weft_go(yield_n, (void *)2);
    cr_assert_eq(weft_loop_poll(l, 0), 2);
    cr_assert_eq(weft_loop_poll(l, 0), 1);
    cr_assert_eq(weft_loop_poll(l, 0), 0);
    cr_assert_eq(weft_loop_run(l, -1), 0, "nothing alive: returns at once");

    /* Waiting: a step with a timeout waits for it, and a negative timeout
     * other than -1 does not wait at all. */
    int64_t id = weft_go(cancel_target, NULL);
    cr_assert_eq(weft_loop_poll(l, 0), 1);
    int64_t t0 = mono_ms();
    cr_assert_eq(weft_loop_poll(l, 100), 1);
    int64_t took = mono_ms() - t0;
    cr_assert(IN_RANGE(took, 99, 100 + LATE_MS), "poll(100) took %" PRId64 " ms", took);
    t0 = mono_ms();
    cr_assert_eq(weft_loop_poll(l, -5), 1);
    cr_assert_lt(mono_ms() - t0, LATE_MS);
    weft_cancel(id);
    cr_assert_eq(weft_loop_run(l, 1000), 0);
    weft_loop_free(l);
}

static int run_sleeper_rc;

static void run_sleeper(void *arg)
{
    (void)arg;
    run_sleeper_rc = weft_sleep(10000);
}

Test(embed, run_timeout, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    weft_go(run_sleeper, NULL);
    int64_t t0 = mono_ms();
    cr_assert_eq(weft_loop_run(l, 100), -ETIMEDOUT);
    int64_t took = mono_ms() - t0;
    cr_assert(IN_RANGE(took, 99, 100 + LATE_MS), "run(100) took %" PRId64 " ms", took);
    t0 = mono_ms();
    weft_loop_free(l);
    cr_assert_lt(mono_ms() - t0, 1000, "free must cancel the sleeper");
    cr_assert_eq(run_sleeper_rc, -ECANCELED);
}

/* Timeout 0 means "only try": one step, which is enough here. */
Test(embed, run_with_zero_timeout_steps_once, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    spawned_ran = 0;
    weft_go(mark_ran, NULL);
    int rc = weft_loop_run(l, 0);
    int ran = spawned_ran;
    weft_loop_free(l);
    cr_assert_eq(ran, 1, "weft_loop_run(l, 0) did not run the ready coroutine");
    cr_assert_eq(rc, 0, "%s", weft_err_name(rc));
}

static weft_loop *stop_loop;

static void stopper(void *arg)
{
    (void)arg;
    weft_sleep(20);
    weft_loop_stop(stop_loop);
}

Test(embed, stop_returns_alive_count, .timeout = 30)
{
    cr_assert_eq(weft_loop_new(&stop_loop, NULL), 0);
    for (int i = 0; i < 3; i++)
        weft_go(run_sleeper, NULL);
    weft_go(stopper, NULL);
    int64_t t0 = mono_ms();
    cr_assert_eq(weft_loop_run(stop_loop, -1), 3);
    cr_assert_lt(mono_ms() - t0, 20 + LATE_MS);
    /* The stop was used up: the next run goes on until its timeout. */
    cr_assert_eq(weft_loop_run(stop_loop, 50), -ETIMEDOUT);
    weft_loop_stop(NULL);
    weft_loop_free(stop_loop);
    cr_assert_eq(run_sleeper_rc, -ECANCELED);
}

/* ---- errors ------------------------------------------------------------------------- */

static volatile int main_fn_ran;

static int main_fn(void *arg)
{
    (void)arg;
    main_fn_ran = 1;
    return 0;
}

Test(embed, second_loop_on_thread_is_busy, .timeout = 30)
{
    weft_loop *l, *l2 = (weft_loop *)(uintptr_t)0x1234;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    cr_assert_eq(weft_loop_new(&l2, NULL), -EBUSY);
    cr_assert_eq((uintptr_t)l2, 0x1234, "*out must be untouched on failure");
    main_fn_ran = 0;
    cr_assert_eq(weft_main(main_fn, NULL, NULL), -EBUSY);
    cr_assert_eq(main_fn_ran, 0);
    weft_loop_free(l);
    weft_loop_free(NULL);
    /* Freed: the thread may make a loop again. */
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    weft_loop_free(l);
    cr_assert_eq(weft_main(main_fn, NULL, NULL), 0);
    cr_assert_eq(main_fn_ran, 1);
}

static weft_loop *busy_loop;
static int busy_poll_rc, busy_run_rc;

static void busy_body(void *arg)
{
    (void)arg;
    busy_poll_rc = weft_loop_poll(busy_loop, 0);
    busy_run_rc = weft_loop_run(busy_loop, 10);
}

static weft_loop *other_loop;
static int other_rc_from_thread;

static void *other_thread(void *arg)
{
    (void)arg;
    other_rc_from_thread = weft_loop_poll(other_loop, 0);
    return NULL;
}

Test(embed, poll_errors, .timeout = 30)
{
    cr_assert_eq(weft_loop_new(&busy_loop, NULL), 0);
    weft_go(busy_body, NULL);
    cr_assert_eq(weft_loop_run(busy_loop, 2000), 0);
    cr_assert_eq(busy_poll_rc, -EBUSY);
    cr_assert_eq(busy_run_rc, -EBUSY);
    cr_assert_eq(weft_loop_poll(NULL, 0), -EINVAL);
    cr_assert_eq(weft_loop_run(NULL, 0), -EINVAL);

    /* Another thread's loop. */
    other_loop = busy_loop;
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, other_thread, NULL), 0);
    pthread_join(t, NULL);
    cr_assert_eq(other_rc_from_thread, -EINVAL);
    weft_loop_free(busy_loop);
}

/* ---- weft_loop_free cancels what is left ------------------------------------------------- */

static weft_sock *fr_a, *fr_b;
static ssize_t fr_recv_rc;
static int fr_sleep_rc, fr_join_rc, fr_again_rc, fr_never_rc, fr_yield_rc;
static long fr_yields;
static int64_t fr_sleeper;

static void fr_reader(void *arg)
{
    (void)arg;
    char buf[8];
    fr_recv_rc = weft_recv(fr_a, buf, sizeof buf, -1);
}

static void fr_sleeper_body(void *arg)
{
    (void)arg;
    fr_sleep_rc = weft_sleep(1000000);
    /* From now on every blocking call is cancelled too. */
    fr_again_rc = weft_sleep(1000);
}

static void fr_joiner(void *arg)
{
    (void)arg;
    fr_join_rc = weft_join(fr_sleeper, -1);
}

static void fr_never(void *arg)
{
    (void)arg;
    fr_never_rc = weft_sleep(1000);
}

static void fr_spinner(void *arg)
{
    (void)arg;
    int rc;
    while ((rc = weft_yield()) == 0 && fr_yields < 100000000)
        fr_yields++;
    fr_yield_rc = rc;
}

static void fr_setup(void *arg)
{
    (void)arg;
    if (make_pair(&fr_a, &fr_b) < 0)
        fr_a = fr_b = NULL;
}

Test(embed, free_cancels_blocked_coroutines, .timeout = 30)
{
    int fds = count_fds();
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    weft_go(fr_setup, NULL);
    cr_assert_eq(weft_loop_run(l, 2000), 0);
    cr_assert_not_null(fr_a);

    fr_recv_rc = fr_sleep_rc = fr_join_rc = fr_again_rc = fr_never_rc = fr_yield_rc = 1;
    weft_go(fr_reader, NULL);
    fr_sleeper = weft_go(fr_sleeper_body, NULL);
    weft_go(fr_joiner, NULL);
    weft_go(fr_spinner, NULL);
    cr_assert_eq(weft_loop_poll(l, 0), 4);
    cr_assert_eq(weft_loop_poll(l, 0), 4);
    weft_go(fr_never, NULL); /* queued, never ran before the free */

    int64_t t0 = mono_ms();
    weft_loop_free(l);
    int64_t took = mono_ms() - t0;
    cr_assert_lt(took, 1000, "weft_loop_free took %" PRId64 " ms", took);
    cr_assert_eq(fr_recv_rc, -ECANCELED, "recv: %s", weft_err_name((int)fr_recv_rc));
    cr_assert_eq(fr_sleep_rc, -ECANCELED, "sleep: %s", weft_err_name(fr_sleep_rc));
    cr_assert_eq(fr_again_rc, -ECANCELED, "sleep after cancel: %s", weft_err_name(fr_again_rc));
    cr_assert_eq(fr_join_rc, -ECANCELED, "join: %s", weft_err_name(fr_join_rc));
    cr_assert_eq(fr_never_rc, -ECANCELED, "never-run: %s", weft_err_name(fr_never_rc));
    cr_assert_eq(fr_yield_rc, -ECANCELED, "yield: %s", weft_err_name(fr_yield_rc));

    /* The sockets were not closed by the free; they still work. */
    cr_assert_geq(weft_sock_fd(fr_a), 0);
    cr_assert_eq(weft_send(fr_b, "ok", 2, 1000), 2);
    char buf[4];
    cr_assert_eq(weft_recv(fr_a, buf, sizeof buf, 1000), 2);
    cr_assert_eq(weft_close(fr_a), 0);
    cr_assert_eq(weft_close(fr_b), 0);
    cr_assert_eq(count_fds(), fds);
}

static volatile int late_post_ran, late_sleep_rc, late_repost_rc;

static void late_post(void *arg)
{
    weft_loop *l = arg;
    late_post_ran = 1;
    late_sleep_rc = weft_sleep(60000);
    /* The loop is being freed: a new post is refused, not dropped. */
    late_repost_rc = weft_loop_post(l, late_post, l);
}

/* A post the loop accepted runs, even if the loop is freed first; it runs
 * as the free's own coroutines do, its waits cancelled (RELIABILITY #69). */
Test(embed, posts_queued_at_free_run_cancelled_and_later_ones_are_refused, .timeout = 30)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    late_post_ran = 0;
    late_sleep_rc = late_repost_rc = 1;
    cr_assert_eq(weft_loop_post(l, late_post, l), 0);
    weft_loop_free(l);
    cr_assert_eq(late_post_ran, 1);
    cr_assert_eq(late_sleep_rc, -ECANCELED, "%s", weft_err_name(late_sleep_rc));
    cr_assert_eq(late_repost_rc, -ESHUTDOWN, "%s", weft_err_name(late_repost_rc));
}

/* ---- backends ---------------------------------------------------------------------- */

Test(embed, backend_selection, .timeout = 30)
{
    weft_loop *l = (weft_loop *)(uintptr_t)0x99;
    weft_config bad = {.backend = "no-such-backend"};
    cr_assert_eq(weft_loop_new(&l, &bad), -EINVAL);
    cr_assert_eq((uintptr_t)l, 0x99);
    main_fn_ran = 0;
    cr_assert_eq(weft_main(main_fn, NULL, &bad), -EINVAL);
    cr_assert_eq(main_fn_ran, 0);

    weft_config ep = {.backend = "epoll"};
    cr_assert_eq(weft_loop_new(&l, &ep), 0);
    weft_loop_free(l);
    cr_assert_eq(weft_main(main_fn, NULL, &ep), 0);
    cr_assert_eq(main_fn_ran, 1);

    cr_assert_eq(setenv("WEFT_BACKEND", "epoll", 1), 0);
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    weft_loop_free(l);
    weft_config zero = {0};
    cr_assert_eq(weft_loop_new(&l, &zero), 0);
    weft_loop_free(l);

    cr_assert_eq(setenv("WEFT_BACKEND", "no-such-backend", 1), 0);
    cr_assert_eq(weft_loop_new(&l, NULL), -EINVAL);
    /* An explicit choice wins over the environment. */
    cr_assert_eq(weft_loop_new(&l, &ep), 0);
    weft_loop_free(l);
    unsetenv("WEFT_BACKEND");
}
