/*
 * check_blocking_threads.c - the worker pool and weft_fd_wait across
 * threads, as a plain program so that it runs under ThreadSanitizer
 * (`make test-tsan`); test_blocking.c and test_fd_wait.c cover the same
 * ground in the normal and ASan suites.  Exit status 0 = pass.
 *
 * 1. Two threads, each with its own loop, run 300 weft_blocking calls at
 *    once on a pool of 3, with timeouts, timeouts of 0 and cancels mixed
 *    in: every call that returned 0 saw its fn run once, every withdrawn
 *    one never.
 * 2. A loop freed with jobs queued and running.
 * 3. weft_fd_wait on a pipe a plain thread writes to, and a plain thread
 *    in weft_fd_wait (poll) on a pipe a coroutine writes to.
 */
#include <weft.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static atomic_int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "check_blocking_threads: " __VA_ARGS__);                               \
            fputc('\n', stderr);                                                                   \
            atomic_fetch_add(&failures, 1);                                                        \
        }                                                                                          \
    } while (0)

/* ---- 1. many calls from two loops --------------------------------------------- */

#define CALLS 300

typedef struct call {
    atomic_int ran;
    int rc;
    int64_t timeout;
    int64_t id;
} call;

typedef struct batch {
    call c[CALLS];
    int ok, withdrawn;
} batch;

static void work(void *arg)
{
    call *c = arg;
    atomic_fetch_add(&c->ran, 1);
    usleep(200);
}

static void one_call(void *arg)
{
    call *c = arg;
    c->rc = weft_blocking(work, c, c->timeout);
}

static void cancel_some(void *arg)
{
    batch *b = arg;
    for (int i = 0; i < CALLS; i += 7) {
        weft_sleep(1);
        weft_cancel(b->c[i].id);
    }
}

static int batch_main(void *arg)
{
    batch *b = arg;
    for (int i = 0; i < CALLS; i++) {
        b->c[i].timeout = i % 5 == 0 ? 0 : i % 5 == 1 ? 2 : 10000;
        b->c[i].id = weft_go(one_call, &b->c[i]);
    }
    weft_go(cancel_some, b);
    return 0;
}

static void *loop_thread(void *arg)
{
    weft_config cfg = { 0 };
    cfg.workers = 3;
    CHECK(weft_main(batch_main, arg, &cfg) == 0, "weft_main");
    return NULL;
}

static void check_batch(batch *b, const char *name)
{
    for (int i = 0; i < CALLS; i++) {
        call *c = &b->c[i];
        int ran = atomic_load(&c->ran);
        if (c->rc == 0) {
            b->ok++;
            CHECK(ran == 1, "%s %d: returned 0, ran %d times", name, i, ran);
        } else {
            b->withdrawn++;
            CHECK(c->rc == -ETIMEDOUT || c->rc == -ECANCELED, "%s %d: %s", name, i,
                  weft_err_name(c->rc));
            CHECK(ran == 0, "%s %d: withdrawn (%s), ran %d times", name, i, weft_err_name(c->rc),
                  ran);
        }
    }
}

static batch ba, bb;

static void check_many(void)
{
    pthread_t ta, tb;
    pthread_create(&ta, NULL, loop_thread, &ba);
    pthread_create(&tb, NULL, loop_thread, &bb);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    usleep(100 * 1000); /* a withdrawn job that ran anyway would have by now */
    check_batch(&ba, "a");
    check_batch(&bb, "b");
    CHECK(ba.ok > CALLS / 2 && bb.ok > CALLS / 2, "only %d and %d of %d ran", ba.ok, bb.ok, CALLS);
}

/* ---- 2. a loop freed with jobs queued and running -------------------------------- */

static atomic_int slow_ran;
static int slow_rc[6];

static void slow(void *arg)
{
    (void)arg;
    usleep(50 * 1000);
    atomic_fetch_add(&slow_ran, 1);
}

static void slow_call(void *arg)
{
    int i = (int)(intptr_t)arg;
    slow_rc[i] = weft_blocking(slow, NULL, -1);
}

static void check_free(void)
{
    weft_loop *l;
    weft_config cfg = { 0 };
    cfg.workers = 3;
    CHECK(weft_loop_new(&l, &cfg) == 0, "weft_loop_new");
    for (int i = 0; i < 6; i++) {
        slow_rc[i] = 1;
        weft_go(slow_call, (void *)(intptr_t)i);
    }
    weft_loop_poll(l, 0);
    usleep(10 * 1000);
    weft_loop_free(l);
    int zero = 0, cancelled = 0;
    for (int i = 0; i < 6; i++) {
        zero += slow_rc[i] == 0;
        cancelled += slow_rc[i] == -ECANCELED;
    }
    CHECK(zero + cancelled == 6, "freed loop: %d returned 0, %d cancelled", zero, cancelled);
    usleep(200 * 1000);
    CHECK(atomic_load(&slow_ran) == zero, "freed loop: %d ran, %d returned 0",
          atomic_load(&slow_ran), zero);
}

/* ---- 3. weft_fd_wait across threads ----------------------------------------------- */

static int pa[2], pb[2];
static int fd_rc[2];

static void *write_a_later(void *arg)
{
    (void)arg;
    usleep(20 * 1000);
    if (write(pa[1], "x", 1) != 1)
        atomic_fetch_add(&failures, 1);
    /* A plain thread waits with poll() for the coroutine's byte. */
    fd_rc[1] = weft_fd_wait(pb[0], WEFT_POLL_IN, 5000);
    return NULL;
}

static int fd_main(void *arg)
{
    (void)arg;
    fd_rc[0] = weft_fd_wait(pa[0], WEFT_POLL_IN, 5000);
    weft_sleep(20);
    if (write(pb[1], "y", 1) != 1)
        return -1;
    return 0;
}

static void check_fd_wait(void)
{
    if (pipe2(pa, O_NONBLOCK | O_CLOEXEC) != 0 || pipe2(pb, O_NONBLOCK | O_CLOEXEC) != 0) {
        CHECK(0, "pipe2");
        return;
    }
    pthread_t t;
    pthread_create(&t, NULL, write_a_later, NULL);
    CHECK(weft_main(fd_main, NULL, NULL) == 0, "fd_main");
    pthread_join(t, NULL);
    CHECK(fd_rc[0] == WEFT_POLL_IN, "coroutine: %s", weft_err_name(fd_rc[0]));
    CHECK(fd_rc[1] == WEFT_POLL_IN, "plain thread: %s", weft_err_name(fd_rc[1]));
    close(pa[0]);
    close(pa[1]);
    close(pb[0]);
    close(pb[1]);
}

int main(void)
{
    check_many();
    check_free();
    check_fd_wait();
    if (atomic_load(&failures) == 0)
        printf("check_blocking_threads: ok\n");
    return atomic_load(&failures) ? 1 : 0;
}
