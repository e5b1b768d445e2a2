/*
 * check_loops_threads.c - weft_main's loops under ThreadSanitizer (a
 * plain program: Criterion does not start under TSan).
 *
 *   check_loops_threads [SECONDS]
 *
 * 1. Random traffic between 8 loops for SECONDS (default 30; on 2 cores
 *    that is 4 loops per core): coroutines spawn on random loops, join,
 *    cancel and sleep, and send to random loops' inbox channels; every
 *    spawn must run exactly once, every join end, and every value sent
 *    arrive once.  A watchdog thread fails the run if no spawn completes for 10 s:
 *    a lost wake-up leaves a loop asleep with work queued.
 * 2. Four plain threads post to the loops while they run: each post runs
 *    once (RELIABILITY #51).
 * 3. A loop freed while threads post, 3 times: each post runs or is
 *    refused (#69).
 * Exit 0 when all hold.
 */
#include <weft.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define LOOPS 8
#define WORKERS_PER_LOOP 4

static int seconds = 30;
static atomic_long spawned, ran, joined, cancelled;
static atomic_long progress;
static atomic_int failed;
static int64_t end_at;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        atomic_store(&failed, 1);                                                                  \
    } while (0)

static unsigned next_rand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

static void task(void *arg)
{
    intptr_t how = (intptr_t)arg;
    atomic_fetch_add(&ran, 1);
    atomic_fetch_add(&progress, 1);
    if (how == 1)
        weft_yield();
    else if (how == 2)
        weft_sleep(1);
    else if (how == 3)
        weft_sleep(50); /* likely cancelled */
}

/* Each loop's inbox: a channel made on loop 0, so shared by all. */
static weft_chan *inbox[LOOPS];
static atomic_long values_sent, values_received;

static void consumer(void *arg)
{
    weft_chan *c = arg;
    long v;
    while (weft_chan_recv(c, &v, -1) == 0)
        atomic_fetch_add(&values_received, 1);
}

static void worker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    while (weft_now() < end_at && !atomic_load(&failed)) {
        int target = (int)(next_rand(&seed) % LOOPS);
        intptr_t how = (intptr_t)(next_rand(&seed) % 4);
        int64_t id = weft_go_on(target, task, (void *)how);
        if (id <= 0) {
            FAIL("go_on: %s", weft_err_name((int)id));
            return;
        }
        atomic_fetch_add(&spawned, 1);
        if (how == 3 && next_rand(&seed) % 2) {
            weft_sleep(next_rand(&seed) % 2);
            if (weft_cancel(id) != 0)
                FAIL("cancel refused");
            atomic_fetch_add(&cancelled, 1);
        }
        int rc = weft_join(id, 30000); /* only a guard: the watchdog judges progress */
        if (rc != 0) {
            FAIL("join of %lld on loop %d: %s", (long long)id, target, weft_err_name(rc));
            return;
        }
        atomic_fetch_add(&joined, 1);
        long v = (long)id;
        rc = weft_chan_send(inbox[next_rand(&seed) % LOOPS], &v, (int64_t)(next_rand(&seed) % 3));
        if (rc == 0)
            atomic_fetch_add(&values_sent, 1);
        else if (rc != -ETIMEDOUT)
            FAIL("send: %s", weft_err_name(rc));
    }
}

/* ---- plain threads posting meanwhile ---------------------------------------------- */

#define POSTERS 4
static weft_loop *loops[LOOPS];
static atomic_long posts_made, posts_ran;
static atomic_int stop_posting;

static void posted(void *arg)
{
    (void)arg;
    atomic_fetch_add(&posts_ran, 1);
}

static void *poster(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    while (!atomic_load(&stop_posting)) {
        int rc = weft_loop_post(loops[next_rand(&seed) % LOOPS], posted, NULL);
        if (rc == 0)
            atomic_fetch_add(&posts_made, 1);
        else if (rc != -ENOMEM)
            FAIL("post: %s", weft_err_name(rc));
        usleep(5000); /* a steady flow, not a flood the loops would spend the run on */
    }
    return NULL;
}

static void grab_loop(void *arg)
{
    loops[(intptr_t)arg] = weft_loop_self();
}

typedef struct posters {
    pthread_t t[POSTERS];
} posters;

static void join_posters(void *arg)
{
    posters *p = arg;
    for (int k = 0; k < POSTERS; k++)
        pthread_join(p->t[k], NULL);
}

static int traffic_main(void *arg)
{
    (void)arg;
    for (intptr_t i = 0; i < LOOPS; i++)
        weft_join(weft_go_on((int)i, grab_loop, (void *)i), -1);
    posters p;
    for (intptr_t k = 0; k < POSTERS; k++)
        pthread_create(&p.t[k], NULL, poster, (void *)(k + 1));
    int64_t consumers[LOOPS];
    for (int i = 0; i < LOOPS; i++) {
        if (weft_chan_new(&inbox[i], sizeof(long), (size_t)(i % 2) * 16) < 0)
            return 1;
        consumers[i] = weft_go_on(i, consumer, inbox[i]);
    }
    end_at = weft_now() + seconds * 1000LL;
    int64_t ids[LOOPS * WORKERS_PER_LOOP];
    for (int i = 0; i < LOOPS * WORKERS_PER_LOOP; i++)
        ids[i] = weft_go_on(i % LOOPS, worker, (void *)(uintptr_t)(i * 7919 + 1));
    for (int i = 0; i < LOOPS * WORKERS_PER_LOOP; i++)
        if (weft_join(ids[i], -1) != 0)
            FAIL("worker join");
    for (int i = 0; i < LOOPS; i++) {
        weft_chan_close(inbox[i]); /* the consumer drains it, then ends */
        if (weft_join(consumers[i], -1) != 0)
            FAIL("consumer join");
        weft_chan_free(inbox[i]);
    }
    atomic_store(&stop_posting, 1);
    weft_blocking(join_posters, &p, -1);
    return 0;
}

static void *watchdog(void *arg)
{
    (void)arg;
    long last = -1;
    for (int still = 0;; still++) {
        sleep(1);
        if (atomic_load(&stop_posting) || atomic_load(&failed))
            return NULL;
        long now = atomic_load(&progress);
        if (now != last) {
            last = now;
            still = 0;
        } else if (still >= 10) {
            FAIL("no spawn has run for 10 s: a loop sleeps with work queued");
            if (getenv("CHECK_HANG_STAY"))
                pause(); /* for a debugger */
            _exit(2);
        }
    }
}

/* ---- a loop freed while threads post ------------------------------------------------ */

static weft_loop *ending;
static atomic_long accepted, ran_late;
static atomic_int refused;

static void counted(void *arg)
{
    (void)arg;
    atomic_fetch_add(&ran_late, 1);
}

static void *post_until_refused(void *arg)
{
    (void)arg;
    for (;;) {
        int rc = weft_loop_post(ending, counted, NULL);
        if (rc == 0)
            atomic_fetch_add(&accepted, 1);
        else if (rc == -ESHUTDOWN)
            break;
        usleep(200); /* no faster than a loop under TSan takes them */
    }
    atomic_fetch_add(&refused, 1);
    return NULL;
}

/* Cancelled by the free, it holds the loop until every poster has been
 * refused: after that nobody touches it. */
static void guard(void *arg)
{
    (void)arg;
    weft_sleep(60000);
    while (atomic_load(&refused) < POSTERS)
        usleep(1000);
}

static void free_while_posting(void)
{
    for (int round = 0; round < 3; round++) {
        accepted = ran_late = refused = 0;
        if (weft_loop_new(&ending, NULL) != 0) {
            FAIL("loop_new");
            return;
        }
        weft_go(guard, NULL);
        pthread_t t[POSTERS];
        for (int k = 0; k < POSTERS; k++)
            pthread_create(&t[k], NULL, post_until_refused, NULL);
        weft_loop_run(ending, 50 + round * 20);
        weft_loop_free(ending);
        for (int k = 0; k < POSTERS; k++)
            pthread_join(t[k], NULL);
        if (atomic_load(&ran_late) != atomic_load(&accepted))
            FAIL("free while posting: %ld accepted, %ld ran", atomic_load(&accepted),
                 atomic_load(&ran_late));
    }
}

int main(int argc, char **argv)
{
    if (argc > 1)
        seconds = atoi(argv[1]);
    pthread_t wd;
    pthread_create(&wd, NULL, watchdog, NULL);
    weft_config cfg = {.threads = LOOPS};
    int rc = weft_main(traffic_main, NULL, &cfg);
    pthread_join(wd, NULL);
    if (rc != 0)
        FAIL("weft_main: %d", rc);
    if (atomic_load(&ran) != atomic_load(&spawned))
        FAIL("%ld spawned, %ld ran", atomic_load(&spawned), atomic_load(&ran));
    if (atomic_load(&joined) != atomic_load(&spawned))
        FAIL("%ld spawned, %ld joined", atomic_load(&spawned), atomic_load(&joined));
    if (atomic_load(&values_received) != atomic_load(&values_sent))
        FAIL("%ld values sent, %ld received", atomic_load(&values_sent),
             atomic_load(&values_received));
    if (atomic_load(&posts_ran) != atomic_load(&posts_made))
        FAIL("%ld posted, %ld ran", atomic_load(&posts_made), atomic_load(&posts_ran));
    printf("%d loops, %d s: %ld spawns across loops (%ld cancelled), all joined; %ld values "
           "through inbox channels, each received once; %ld posts from %d threads, each ran "
           "once\n",
           LOOPS, seconds, atomic_load(&spawned), atomic_load(&cancelled),
           atomic_load(&values_sent), atomic_load(&posts_made), POSTERS);
    free_while_posting();
    if (!atomic_load(&failed))
        printf("a loop freed under %d posting threads, 3 times: every post ran or was refused\n",
               POSTERS);
    return atomic_load(&failed) ? 1 : 0;
}
