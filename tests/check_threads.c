/*
 * check_threads.c - weft across threads, as a plain program so that it runs
 * under ThreadSanitizer (Criterion itself does not start under TSan here).
 * `make test-tsan` runs it; test_thread_post.c covers the same ground at
 * full scale in the normal and ASan suites.  Exit status 0 = pass.
 *
 * 1. Four threads post to a loop run by the main thread: every post runs
 *    exactly once, in order per poster.
 * 2. weft_loop_wake from another thread ends a weft_loop_poll(l, -1).
 * 3. Two threads run their own weft_main at once, each with TCP traffic.
 */
#include <weft.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define POSTERS 4
#define PER_POSTER 500
#define TOTAL (POSTERS * PER_POSTER)

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "check_threads: " __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* ---- 1. posts ----------------------------------------------------------- */

static weft_loop *loop;
static int ran[TOTAL];
static long last[POSTERS], out_of_order, done;

static void on_post(void *arg)
{
    long i = (long)(intptr_t)arg;
    int t = (int)(i / PER_POSTER);
    ran[i]++;
    if (i <= last[t])
        out_of_order++;
    last[t] = i;
    done++;
}

static void *poster(void *arg)
{
    long t = (long)(intptr_t)arg;
    for (long i = 0; i < PER_POSTER; i++)
        while (weft_loop_post(loop, on_post, (void *)(intptr_t)(t * PER_POSTER + i)) != 0)
            usleep(100);
    return NULL;
}

/* Keeps the loop alive until every post has run. */
static void keeper(void *arg)
{
    (void)arg;
    while (done < TOTAL)
        weft_sleep(1);
}

static void check_posts(void)
{
    CHECK(weft_loop_new(&loop, NULL) == 0, "weft_loop_new");
    for (int t = 0; t < POSTERS; t++)
        last[t] = -1;
    weft_go(keeper, NULL);
    pthread_t th[POSTERS];
    for (long t = 0; t < POSTERS; t++)
        pthread_create(&th[t], NULL, poster, (void *)(intptr_t)t);
    int rc = weft_loop_run(loop, 60000);
    for (int t = 0; t < POSTERS; t++)
        pthread_join(th[t], NULL);
    weft_loop_free(loop);
    CHECK(rc == 0, "weft_loop_run: %s", weft_strerror(rc));
    long once = 0;
    for (int i = 0; i < TOTAL; i++)
        once += ran[i] == 1;
    CHECK(once == TOTAL, "%ld of %d posts ran exactly once", once, TOTAL);
    CHECK(out_of_order == 0, "%ld posts ran out of order", out_of_order);
}

/* ---- 2. wake -------------------------------------------------------------- */

static atomic_int woke_sent;

static void sleeper(void *arg)
{
    (void)arg;
    weft_sleep(60000); /* cancelled by weft_loop_free */
}

static void *waker(void *arg)
{
    usleep(50000);
    atomic_store(&woke_sent, 1);
    weft_loop_wake(arg);
    return NULL;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void check_wake(void)
{
    weft_loop *l;
    CHECK(weft_loop_new(&l, NULL) == 0, "weft_loop_new");
    weft_go(sleeper, NULL);
    CHECK(weft_loop_poll(l, 0) == 1, "the sleeper parks");
    pthread_t th;
    pthread_create(&th, NULL, waker, l);
    int64_t t0 = now_ms();
    int rc = weft_loop_poll(l, -1);
    int64_t took = now_ms() - t0;
    pthread_join(th, NULL);
    CHECK(rc == 1, "weft_loop_poll after the wake: %d", rc);
    CHECK(atomic_load(&woke_sent) == 1 && took < 10000, "woken after %lld ms", (long long)took);
    weft_loop_free(l);
}

/* ---- 3. two loops at once ---------------------------------------------- */

static void echo_once(void *arg)
{
    weft_sock *l = arg, *c;
    char buf[64];
    if (weft_tcp_accept(l, &c, 10000) != 0)
        return;
    ssize_t n = weft_recv(c, buf, sizeof buf, 10000);
    if (n > 0)
        weft_send(c, buf, (size_t)n, 10000);
    weft_close(c);
}

static int round_trips(void *arg)
{
    (void)arg;
    int ok = 0;
    for (int i = 0; i < 20; i++) {
        weft_sock *l, *c;
        weft_addr a;
        if (weft_tcp_listen(&l, "127.0.0.1", 0, 16, 0) != 0)
            continue;
        weft_sock_local(l, &a);
        weft_go(echo_once, l);
        char buf[5] = { 0 };
        if (weft_tcp_connect(&c, "127.0.0.1", weft_addr_port(&a), 10000) == 0) {
            if (weft_send(c, "ping", 4, 10000) == 4 && weft_recvn(c, buf, 4, 10000) == 4 &&
                strcmp(buf, "ping") == 0)
                ok++;
            weft_close(c);
        }
        weft_sleep(1);
        weft_close(l);
    }
    return ok;
}

static void *loop_thread(void *arg)
{
    *(int *)arg = weft_main(round_trips, NULL, NULL);
    return NULL;
}

static void check_two_loops(void)
{
    int r[2] = { -1, -1 };
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, loop_thread, &r[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    CHECK(r[0] == 20 && r[1] == 20, "round trips on two loops: %d and %d of 20", r[0], r[1]);
}

int main(void)
{
    check_posts();
    check_wake();
    check_two_loops();
    printf("check_threads: %s\n", failures ? "FAILED" : "ok");
    return failures != 0;
}
