/*
 * test_sync_stress.c - no message lost or duplicated (#63): 1,000,000
 * messages through an unbuffered and through a buffered channel, 4
 * producers and 4 consumers, every call with a random timeout (forever,
 * only try, 1 ms) and a fifth coroutine cancelling producers and
 * consumers at random.  Each message must be received exactly once, or
 * its send must have reported that it was not sent.  The same again
 * through selects over two channels, which adds a wait linked on two
 * queues at once; half the producers and consumers there use plain calls
 * on one of the two channels, so selects meet plain calls as well.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRODUCERS 4
#define CONSUMERS 4
#define MESSAGES 1000000
#define PER_PRODUCER (MESSAGES / PRODUCERS)

static weft_chan *ch[2];
static bool use_select;
static unsigned char received[MESSAGES];
static unsigned char unsent[MESSAGES];
static long bad_result, producers_left, sends_failed, recvs_failed;
static int64_t workers[PRODUCERS + CONSUMERS];

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static int64_t random_timeout(uint64_t *s)
{
    unsigned r = (unsigned)(rng_next(s) % 10);
    return r < 7 ? -1 : r < 9 ? 0 : 1;
}

static void producer(void *arg)
{
    long p = (long)(intptr_t)arg;
    uint64_t s = 0x1234567 + (uint64_t)p;
    for (long i = 0; i < PER_PRODUCER; i++) {
        long id = p * PER_PRODUCER + i;
        int rc;
        if (use_select && p % 2) {
            rc = weft_chan_send(ch[p / 2 % 2], &id, random_timeout(&s));
        } else if (use_select) {
            weft_select_case k[2] = {{ch[0], WEFT_CHAN_SEND, &id, 0},
                                     {ch[1], WEFT_CHAN_SEND, &id, 0}};
            rc = weft_select(k, 2, random_timeout(&s));
            if (rc >= 0)
                rc = k[rc].result;
        } else {
            rc = weft_chan_send(ch[0], &id, random_timeout(&s));
        }
        if (rc == -ETIMEDOUT || rc == -ECANCELED) {
            unsent[id]++;
            sends_failed++;
        } else if (rc != 0) {
            bad_result++;
        }
    }
    if (--producers_left == 0) {
        weft_chan_close(ch[0]);
        weft_chan_close(ch[1]);
    }
}

static void consumer(void *arg)
{
    long c = (long)(intptr_t)arg;
    uint64_t s = 0x7654321 + (uint64_t)c;
    bool sel = use_select && c % 2 == 0;
    weft_chan *mine = use_select ? ch[c / 2 % 2] : ch[0];
    int open = sel ? 2 : 1;
    weft_select_case k[2] = {{ch[0], WEFT_CHAN_RECV, NULL, 0}, {ch[1], WEFT_CHAN_RECV, NULL, 0}};
    for (;;) {
        long id = -1;
        int rc;
        if (sel) {
            k[0].elem = k[1].elem = &id;
            rc = weft_select(k, 2, random_timeout(&s));
            if (rc >= 0) {
                int i = rc;
                rc = k[i].result;
                if (rc == -EPIPE) {
                    k[i].chan = NULL; /* that one is done */
                    if (--open == 0)
                        return;
                    continue;
                }
            }
        } else {
            rc = weft_chan_recv(mine, &id, random_timeout(&s));
            if (rc == -EPIPE)
                return;
        }
        if (rc == 0) {
            if (id < 0 || id >= MESSAGES)
                bad_result++;
            else
                received[id]++;
        } else if (rc == -ETIMEDOUT || rc == -ECANCELED) {
            recvs_failed++;
        } else {
            bad_result++;
        }
    }
}

static void canceller(void *arg)
{
    (void)arg;
    uint64_t s = 0xC0FFEE;
    while (producers_left > 0) {
        if (rng_next(&s) % 4 == 0)
            weft_cancel(workers[rng_next(&s) % (PRODUCERS + CONSUMERS)]);
        weft_yield();
    }
}

static int stress_main(void *arg)
{
    (void)arg;
    producers_left = PRODUCERS;
    for (long p = 0; p < PRODUCERS; p++)
        workers[p] = weft_go(producer, (void *)(intptr_t)p);
    for (long c = 0; c < CONSUMERS; c++)
        workers[PRODUCERS + c] = weft_go(consumer, (void *)(intptr_t)c);
    weft_go(canceller, NULL);
    return 0;
}

static void run(size_t capacity, bool select)
{
    memset(received, 0, sizeof received);
    memset(unsent, 0, sizeof unsent);
    bad_result = sends_failed = recvs_failed = 0;
    use_select = select;
    cr_assert_eq(weft_chan_new(&ch[0], sizeof(long), capacity), 0);
    cr_assert_eq(weft_chan_new(&ch[1], sizeof(long), capacity), 0);
    cr_assert_eq(weft_main(stress_main, NULL, NULL), 0);
    cr_assert_eq(bad_result, 0);
    long once = 0, lost = 0, twice = 0, both = 0;
    for (long i = 0; i < MESSAGES; i++) {
        if (received[i] == 1 && !unsent[i])
            once++;
        else if (received[i] == 0 && unsent[i] == 1)
            ;
        else if (received[i] == 0)
            lost++;
        else if (received[i] > 1)
            twice++;
        else
            both++;
    }
    cr_assert_eq(lost + twice + both, 0,
                 "%ld lost, %ld received twice, %ld received yet reported unsent", lost, twice,
                 both);
    printf("capacity %zu%s: %ld delivered, %ld sends and %ld receives failed\n", capacity,
           select ? ", selects" : "", once, sends_failed, recvs_failed);
    /* The test means something only if all three things happened a lot. */
    cr_assert_gt(once, MESSAGES / 4, "%ld delivered", once);
    cr_assert_gt(sends_failed, 1000, "%ld sends failed", sends_failed);
    cr_assert_gt(recvs_failed, 1000, "%ld receives failed", recvs_failed);
    cr_assert_eq(weft_chan_free(ch[0]), 0);
    cr_assert_eq(weft_chan_free(ch[1]), 0);
}

Test(stress, unbuffered_exactly_once, .timeout = 600)
{
    run(0, false);
}

Test(stress, buffered_exactly_once, .timeout = 600)
{
    run(16, false);
}

Test(stress, selects_unbuffered_exactly_once, .timeout = 600)
{
    run(0, true);
}

Test(stress, selects_buffered_exactly_once, .timeout = 600)
{
    run(8, true);
}
