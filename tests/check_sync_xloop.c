/*
 * check_sync_xloop.c - shared sync objects between loops, as a plain
 * program so that it runs under ThreadSanitizer (`make test-tsan`, ctest
 * -L threads); test_sync_shared.c covers the calls one by one.  Exit
 * status 0 = pass.
 *
 * 1. #67: 4 loops, each on its own thread, a channel for every ordered
 *    pair (half unbuffered, half buffered), 1,000,000 messages in all.
 *    Each loop has a producer per outgoing channel and receives its
 *    incoming ones both with plain receives and with a select over all
 *    three; sends and receives take random timeouts and
 *    a canceller coroutine on each loop cancels them at random.  Every
 *    message a producer reports sent is received exactly once, and every
 *    one it reports unsent never.
 * 2. Coroutines of 4 loops and 2 plain threads take one mutex 100,000
 *    times in all, incrementing a counter it guards; plain threads also
 *    send into a channel the loops receive from, wait on a wait group
 *    the loops' coroutines count down, and take semaphore permits the
 *    loops give back.
 */
#include <weft.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* 1,000,000 messages take about 10 s under TSan on two cores. */
#define MESSAGES 1000000
#define INCREMENTS 100000

#define LOOPS 4
#define PAIRS (LOOPS * (LOOPS - 1))
#define PER_PAIR (MESSAGES / PAIRS)

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "check_sync_xloop: " __VA_ARGS__);                                     \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* xorshift, one state per coroutine. */
static uint32_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return (uint32_t)(x >> 32);
}

/* A random timeout: mostly forever, else 0 to 2 ms. */
static int64_t some_timeout(uint64_t *s)
{
    uint32_t r = rnd(s) % 8;
    return r < 5 ? -1 : (int64_t)(r - 5);
}

/* ---- 1. every ordered pair ------------------------------------------------------ */

static weft_chan *pair_chan[LOOPS][LOOPS];
/* sent[i][j][k]: loop i's producer reported message k to j sent (written
 * on loop i only); got[i][j][k]: times loop j received it (loop j only). */
static unsigned char *sent[LOOPS][LOOPS], *got[LOOPS][LOOPS];
static atomic_long errors, unsent_count, received_count, cancels;

typedef struct producer {
    int from, to;
} producer;

typedef struct loop_ctx {
    int idx;
    int64_t ids[64];
    int nids;
    atomic_int live; /* producers and receivers still running */
} loop_ctx;

static loop_ctx ctx[LOOPS];

static void produce(void *arg)
{
    producer *p = arg;
    weft_chan *c = pair_chan[p->from][p->to];
    uint64_t s = (uint64_t)(p->from * 31 + p->to) * 0x9E3779B97F4A7C15ull + 1;
    for (long k = 0; k < PER_PAIR; k++) {
        long v = k;
        int rc = weft_chan_send(c, &v, some_timeout(&s));
        if (rc == 0) {
            sent[p->from][p->to][k] = 1;
        } else if (rc == -ETIMEDOUT || rc == -ECANCELED) {
            atomic_fetch_add(&unsent_count, 1);
        } else {
            atomic_fetch_add(&errors, 1);
            break;
        }
    }
    /* One producer per channel: the last one it sends closes it. */
    if (weft_chan_close(c) != 0)
        atomic_fetch_add(&errors, 1);
    atomic_fetch_sub(&ctx[p->from].live, 1);
    free(p);
}

static void take(int from, int to, long v)
{
    if (v < 0 || v >= PER_PAIR) {
        atomic_fetch_add(&errors, 1);
        return;
    }
    got[from][to][v]++;
    atomic_fetch_add(&received_count, 1);
}

/* Receives from one incoming channel until it is closed and drained. */
static void receive_one(void *arg)
{
    int me = (int)((intptr_t)arg >> 8), from = (int)((intptr_t)arg & 0xff);
    uint64_t s = (uint64_t)(me * 7 + from) * 0xD1B54A32D192ED03ull + 3;
    for (;;) {
        long v;
        int rc = weft_chan_recv(pair_chan[from][me], &v, some_timeout(&s));
        if (rc == 0)
            take(from, me, v);
        else if (rc == -EPIPE)
            break;
        else if (rc != -ETIMEDOUT && rc != -ECANCELED) {
            atomic_fetch_add(&errors, 1);
            break;
        }
    }
    atomic_fetch_sub(&ctx[me].live, 1);
}

/* Receives from every incoming channel at once, turning closed ones off. */
static void receive_select(void *arg)
{
    int me = (int)(intptr_t)arg;
    uint64_t s = (uint64_t)me * 0x2545F4914F6CDD1Dull + 5;
    weft_select_case k[LOOPS];
    long v[LOOPS];
    int from[LOOPS], n = 0, open = 0;
    for (int i = 0; i < LOOPS; i++)
        if (i != me) {
            k[n] = (weft_select_case){pair_chan[i][me], WEFT_CHAN_RECV, &v[n], 0};
            from[n++] = i;
            open++;
        }
    while (open > 0) {
        int i = weft_select(k, n, some_timeout(&s));
        if (i >= 0) {
            if (k[i].result == 0) {
                take(from[i], me, v[i]);
            } else {
                k[i].chan = NULL; /* closed and drained */
                open--;
            }
        } else if (i != -ETIMEDOUT && i != -ECANCELED) {
            atomic_fetch_add(&errors, 1);
            break;
        }
    }
    atomic_fetch_sub(&ctx[me].live, 1);
}

/* Cancels one of its loop's coroutines now and then, until all have ended. */
static void canceller(void *arg)
{
    loop_ctx *c = arg;
    uint64_t s = (uint64_t)c->idx * 0x9E3779B97F4A7C15ull + 11;
    while (atomic_load(&c->live) > 0) {
        weft_sleep(1);
        if (weft_cancel(c->ids[rnd(&s) % (uint32_t)c->nids]) == 0)
            atomic_fetch_add(&cancels, 1);
    }
}

static int pairs_main(void *arg)
{
    loop_ctx *c = arg;
    int me = c->idx;
    for (int to = 0; to < LOOPS; to++) {
        if (to == me)
            continue;
        producer *p = malloc(sizeof *p);
        if (!p)
            return -ENOMEM;
        *p = (producer){me, to};
        atomic_fetch_add(&c->live, 1);
        c->ids[c->nids++] = weft_go(produce, p);
    }
    for (int from = 0; from < LOOPS; from++) {
        if (from == me)
            continue;
        atomic_fetch_add(&c->live, 1);
        c->ids[c->nids++] = weft_go(receive_one, (void *)(intptr_t)((me << 8) | from));
    }
    for (int i = 0; i < 2; i++) {
        atomic_fetch_add(&c->live, 1);
        c->ids[c->nids++] = weft_go(receive_select, (void *)(intptr_t)me);
    }
    weft_go(canceller, c);
    return 0;
}

static int loop_rc[LOOPS];

static void *run_loop(void *arg)
{
    int i = (int)(intptr_t)arg;
    loop_rc[i] = weft_main(pairs_main, &ctx[i], NULL);
    return NULL;
}

static void check_pairs(void)
{
    for (int i = 0; i < LOOPS; i++)
        for (int j = 0; j < LOOPS; j++) {
            if (i == j)
                continue;
            CHECK(weft_chan_new(&pair_chan[i][j], sizeof(long), (i + j) % 2 ? 8 : 0) == 0,
                  "weft_chan_new");
            sent[i][j] = calloc(PER_PAIR, 1);
            got[i][j] = calloc(PER_PAIR, 1);
            CHECK(sent[i][j] && got[i][j], "calloc");
        }
    for (int i = 0; i < LOOPS; i++)
        ctx[i] = (loop_ctx){.idx = i};
    pthread_t t[LOOPS];
    for (intptr_t i = 0; i < LOOPS; i++)
        pthread_create(&t[i], NULL, run_loop, (void *)i);
    for (int i = 0; i < LOOPS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < LOOPS; i++)
        CHECK(loop_rc[i] == 0, "loop %d: %s", i, weft_strerror(loop_rc[i]));
    CHECK(atomic_load(&errors) == 0, "%ld unexpected results", atomic_load(&errors));
    long dup = 0, lost = 0, ghost = 0, delivered = 0;
    for (int i = 0; i < LOOPS; i++)
        for (int j = 0; j < LOOPS; j++) {
            if (i == j)
                continue;
            for (long k = 0; k < PER_PAIR; k++) {
                if (got[i][j][k] > 1)
                    dup++;
                if (sent[i][j][k] && !got[i][j][k])
                    lost++;
                if (!sent[i][j][k] && got[i][j][k])
                    ghost++;
                delivered += sent[i][j][k];
            }
            CHECK(weft_chan_free(pair_chan[i][j]) == 0, "free %d->%d", i, j);
            free(sent[i][j]);
            free(got[i][j]);
        }
    CHECK(dup == 0, "%ld messages received twice", dup);
    CHECK(lost == 0, "%ld messages reported sent never received", lost);
    CHECK(ghost == 0, "%ld messages reported unsent were received", ghost);
    CHECK(delivered + atomic_load(&unsent_count) == (long)PAIRS * PER_PAIR,
          "%ld sent + %ld unsent != %ld", delivered, atomic_load(&unsent_count),
          (long)PAIRS * PER_PAIR);
    CHECK(delivered == atomic_load(&received_count), "%ld sent, %ld received", delivered,
          atomic_load(&received_count));
    printf("check_sync_xloop: pairs: %ld delivered, %ld unsent, %ld cancels\n", delivered,
           atomic_load(&unsent_count), atomic_load(&cancels));
}

/* ---- 2. mutex, plain threads, wait group, semaphore ------------------------------------ */

#define MIX_COS 4
#define PLAIN 2
#define PLAIN_SENDS 2000

static weft_mutex *mu;
static weft_chan *plain_chan;
static weft_wg *wg;
static weft_sem *sem;
static long counter;
static atomic_long mix_errors, plain_received;

static void locker(void *arg)
{
    long n = (long)(intptr_t)arg;
    for (long i = 0; i < n; i++) {
        if (weft_mutex_lock(mu, 30000) != 0) {
            atomic_fetch_add(&mix_errors, 1);
            break;
        }
        counter++;
        if (i % 32 == 0)
            weft_yield();
        if (weft_mutex_unlock(mu) != 0)
            atomic_fetch_add(&mix_errors, 1);
    }
    if (weft_wg_done(wg) < 0)
        atomic_fetch_add(&mix_errors, 1);
}

static void plain_consumer(void *arg)
{
    (void)arg;
    long v;
    int rc;
    while ((rc = weft_chan_recv(plain_chan, &v, 30000)) == 0) {
        atomic_fetch_add(&plain_received, 1);
        if (weft_sem_release(sem) != 0) /* a permit back to the plain threads */
            atomic_fetch_add(&mix_errors, 1);
    }
    if (rc != -EPIPE)
        atomic_fetch_add(&mix_errors, 1);
}

static int mix_main(void *arg)
{
    (void)arg;
    long each = INCREMENTS / (LOOPS * MIX_COS + PLAIN);
    for (int i = 0; i < MIX_COS; i++)
        weft_go(locker, (void *)(intptr_t)each);
    weft_go(plain_consumer, NULL);
    return 0;
}

static void *mix_loop(void *arg)
{
    int i = (int)(intptr_t)arg;
    loop_rc[i] = weft_main(mix_main, NULL, NULL);
    return NULL;
}

static void *plain_thread(void *arg)
{
    (void)arg;
    long each = INCREMENTS / (LOOPS * MIX_COS + PLAIN);
    for (long i = 0; i < each; i++) {
        if (weft_mutex_lock(mu, 30000) != 0) {
            atomic_fetch_add(&mix_errors, 1);
            break;
        }
        counter++;
        if (weft_mutex_unlock(mu) != 0)
            atomic_fetch_add(&mix_errors, 1);
    }
    for (long i = 0; i < PLAIN_SENDS; i++) {
        /* At most a few messages in flight: a permit per message. */
        if (weft_sem_acquire(sem, 30000) != 0 || weft_chan_send(plain_chan, &i, 30000) != 0) {
            atomic_fetch_add(&mix_errors, 1);
            break;
        }
    }
    return NULL;
}

static void check_mix(void)
{
    CHECK(weft_mutex_new(&mu) == 0 && weft_chan_new(&plain_chan, sizeof(long), 0) == 0 &&
              weft_wg_new(&wg) == 0 && weft_sem_new(&sem, 4) == 0,
          "constructors");
    CHECK(weft_wg_add(wg, LOOPS * MIX_COS) == LOOPS * MIX_COS, "weft_wg_add");
    pthread_t t[LOOPS], p[PLAIN];
    for (intptr_t i = 0; i < LOOPS; i++)
        pthread_create(&t[i], NULL, mix_loop, (void *)i);
    for (int i = 0; i < PLAIN; i++)
        pthread_create(&p[i], NULL, plain_thread, NULL);
    /* This thread, without a loop, waits for every loop's lockers. */
    CHECK(weft_wg_wait(wg, 120000) == 0, "weft_wg_wait");
    for (int i = 0; i < PLAIN; i++)
        pthread_join(p[i], NULL);
    CHECK(weft_chan_close(plain_chan) == 0, "weft_chan_close");
    for (int i = 0; i < LOOPS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < LOOPS; i++)
        CHECK(loop_rc[i] == 0, "loop %d: %s", i, weft_strerror(loop_rc[i]));
    long each = INCREMENTS / (LOOPS * MIX_COS + PLAIN);
    CHECK(atomic_load(&mix_errors) == 0, "%ld unexpected results", atomic_load(&mix_errors));
    CHECK(counter == each * (LOOPS * MIX_COS + PLAIN), "counter %ld, want %ld", counter,
          each * (LOOPS * MIX_COS + PLAIN));
    CHECK(atomic_load(&plain_received) == PLAIN * PLAIN_SENDS, "%ld of %d received",
          atomic_load(&plain_received), PLAIN * PLAIN_SENDS);
    CHECK(weft_mutex_free(mu) == 0 && weft_chan_free(plain_chan) == 0 && weft_wg_free(wg) == 0 &&
              weft_sem_free(sem) == 0,
          "free");
}

int main(void)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    check_pairs();
    check_mix();
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("check_sync_xloop: %.1f s\n",
           (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
    if (failures)
        fprintf(stderr, "check_sync_xloop: %d failure(s)\n", failures);
    return failures != 0;
}
