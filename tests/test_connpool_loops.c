/*
 * test_connpool_loops.c - both pools on weft_main's loops (weft_config.threads
 * 2 and 4): each loop keeps its own part.  A checkout on a loop only ever
 * gets a connection that loop made, and every call on it works there (no
 * -EXDEV); max_per_host counts per loop, its waiters served in order on
 * each loop; idle connections expire on every loop; a free from loop 1
 * while loop 0 holds idle and checked-out connections and a waiter gives
 * every descriptor back; the stats are the sums over the loops.  weft_pool:
 * an object made on one loop is never handed out on another, destroy runs
 * on the loop that kept the object, and every object made is destroyed
 * once, whether the pool or the loops go first.
 *
 * The ping-pong server runs on a thread and loop of its own; checks inside
 * coroutines are recorded (atomically: several loops record at once) and
 * asserted on the main stack (verify).
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int fails;            /* atomic */
static char first_fail[512]; /* written by the first failure only */

static void note_fail(int line, const char *cond, long long got)
{
    if (__atomic_fetch_add(&fails, 1, __ATOMIC_SEQ_CST))
        return;
    snprintf(first_fail, sizeof first_fail, "line %d: %s (got %lld, %s)", line, cond, got,
             weft_err_name((int)got));
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            note_fail(__LINE__, #cond, 0);                                                         \
    } while (0)

#define CHECK_EQ(got, want)                                                                        \
    do {                                                                                           \
        long long g_ = (long long)(got);                                                           \
        if (g_ != (long long)(want))                                                               \
            note_fail(__LINE__, #got " == " #want, g_);                                            \
    } while (0)

static void verify(void)
{
    int n = __atomic_exchange_n(&fails, 0, __ATOMIC_SEQ_CST);
    cr_assert_eq(n, 0, "%d checks failed; the first: %s", n, first_fail);
}

/* Sleeps in steps until cond holds or ms pass; true if it held. */
#define SETTLE(cond, ms)                                                                           \
    ({                                                                                             \
        int64_t until_ = weft_now() + (ms);                                                        \
        while (!(cond) && weft_now() < until_)                                                     \
            weft_sleep(5);                                                                         \
        (bool)(cond);                                                                              \
    })

/* ---- a ping-pong server on a thread and loop of its own ---------------------------- */

static weft_sock *srv_l, *srv_l2;
static int srv_port, srv_port2, srv_ready; /* srv_ready atomic */
static pthread_t srv_thread;

static void srv_conn(void *arg)
{
    weft_sock *c = arg;
    char b[4];
    while (weft_recvn(c, b, 4, 30000) == 4 && weft_send(c, "pong", 4, 5000) == 4)
        ;
    weft_close(c);
}

static void srv_acceptor(void *arg)
{
    weft_sock *l = arg, *c;
    while (weft_tcp_accept(l, &c, -1) == 0)
        if (weft_go(srv_conn, c) < 0)
            weft_close(c);
}

static int srv_main(void *arg)
{
    (void)arg;
    /* Two ports: two hosts for the pool. */
    srv_port = listen_any(&srv_l, "127.0.0.1");
    srv_port2 = listen_any(&srv_l2, "127.0.0.1");
    bool ok = srv_port > 0 && srv_port2 > 0 && weft_go(srv_acceptor, srv_l) > 0 &&
              weft_go(srv_acceptor, srv_l2) > 0;
    __atomic_store_n(&srv_ready, ok ? 1 : -1, __ATOMIC_RELEASE);
    return 0;
}

static void *srv_run(void *arg)
{
    (void)arg;
    weft_main(srv_main, NULL, NULL);
    return NULL;
}

static void srv_start(void)
{
    srv_ready = 0;
    cr_assert_eq(pthread_create(&srv_thread, NULL, srv_run, NULL), 0);
    for (int i = 0; i < 2000 && !__atomic_load_n(&srv_ready, __ATOMIC_ACQUIRE); i++)
        usleep(5000);
    cr_assert_eq(__atomic_load_n(&srv_ready, __ATOMIC_ACQUIRE), 1);
}

/* Its loop ends once the listener is closed (handed over to it) and every
 * connection has gone. */
static void srv_stop(void)
{
    weft_close(srv_l);
    weft_close(srv_l2);
    pthread_join(srv_thread, NULL);
}

static void setup(void)
{
    fails = 0;
    weft_fault_clear();
    srv_start();
}

static void teardown(void)
{
    srv_stop();
}

TestSuite(connpool_loops, .init = setup, .fini = teardown);

static int ping(weft_sock *s)
{
    int rc = (int)weft_send(s, "ping", 4, 5000);
    if (rc != 4)
        return rc < 0 ? rc : -EPIPE;
    char b[4];
    rc = (int)weft_recvn(s, b, 4, 5000);
    if (rc != 4)
        return rc < 0 ? rc : -ECONNRESET;
    return memcmp(b, "pong", 4) == 0 ? 0 : -EPROTO;
}

static weft_connpool *P;

static int get(weft_sock **s, int64_t timeout_ms)
{
    return weft_connpool_get(P, s, "127.0.0.1", srv_port, timeout_ms);
}

static weft_connpool_stats stats(void)
{
    weft_connpool_stats st;
    memset(&st, 0xff, sizeof st);
    CHECK_EQ(weft_connpool_stat(P, &st), 0);
    return st;
}

/* Runs fn on every loop of the group and waits for each. */
static void on_every_loop(void (*fn)(void *), void *arg)
{
    int n = weft_loop_count();
    int64_t ids[8];
    for (int i = 0; i < n; i++)
        CHECK((ids[i] = weft_go_on(i, fn, arg)) > 0);
    for (int i = 0; i < n; i++)
        CHECK_EQ(weft_join(ids[i], 60000), 0);
}

/* ---- each loop its own connections ------------------------------------------------- */

#define LOOPS_MAX 4
#define USERS 3  /* coroutines per loop */
#define ROUNDS 30
#define SEEN_MAX 64

/* The sockets each loop was handed, and their descriptors. */
static weft_sock *seen[LOOPS_MAX][SEEN_MAX];
static int seen_fd[LOOPS_MAX][SEEN_MAX];
static int nseen[LOOPS_MAX];

static void note_seen(int loop, weft_sock *s)
{
    for (int i = 0; i < nseen[loop]; i++)
        if (seen[loop][i] == s)
            return;
    if (nseen[loop] < SEEN_MAX) {
        seen_fd[loop][nseen[loop]] = weft_sock_fd(s);
        seen[loop][nseen[loop]++] = s;
    }
}

static void user(void *arg)
{
    (void)arg;
    int me = weft_loop_index();
    for (int i = 0; i < ROUNDS; i++) {
        weft_sock *s;
        int rc = get(&s, 10000);
        CHECK_EQ(rc, 0);
        if (rc < 0)
            return;
        /* Made on this loop: every call works here. */
        CHECK(weft_sock_fd(s) >= 0);
        CHECK_EQ(ping(s), 0);
        weft_addr a;
        CHECK_EQ(weft_sock_peer(s, &a), 0);
        note_seen(me, s);
        if (i % 3 == 0)
            weft_yield(); /* held across a switch: others of this loop make their own */
        CHECK_EQ(weft_connpool_put(P, s, 1), 0);
    }
}

static void users_of_loop(void *arg)
{
    int64_t ids[USERS];
    for (int i = 0; i < USERS; i++)
        CHECK((ids[i] = weft_go(user, arg)) > 0);
    for (int i = 0; i < USERS; i++)
        CHECK_EQ(weft_join(ids[i], 60000), 0);
}

static int fds_before, fds_after_free;

static int own_connections_main(void *arg)
{
    (void)arg;
    int n = weft_loop_count();
    memset(nseen, 0, sizeof nseen);
    fds_before = count_fds();
    CHECK_EQ(weft_connpool_new(&P, NULL), 0);
    on_every_loop(users_of_loop, NULL);
    weft_connpool_stats st = stats();
    /* Summed over the loops: each kept what it made. */
    CHECK_EQ(st.busy, 0);
    CHECK_EQ(st.waiting, 0);
    CHECK_EQ(st.idle, st.connects);
    CHECK(st.connects >= (uint64_t)n && st.connects <= (uint64_t)(n * USERS));
    CHECK_EQ(st.connects + st.reuses, (uint64_t)(n * USERS * ROUNDS));
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        CHECK(nseen[i] >= 1);
        total += (size_t)nseen[i];
    }
    CHECK_EQ(total, st.connects);
    /* No socket and no descriptor was handed out on two loops. */
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            for (int a = 0; a < nseen[i]; a++)
                for (int b = 0; b < nseen[j]; b++) {
                    CHECK(seen[i][a] != seen[j][b]);
                    CHECK(seen_fd[i][a] != seen_fd[j][b]);
                }
    weft_connpool_free(P); /* this loop's at once, the others' at their next step */
    SETTLE(count_fds() == fds_before, 10000);
    fds_after_free = count_fds();
    return 0;
}

static void own_connections(int loops)
{
    weft_config cfg = {.threads = loops};
    cr_assert_eq(weft_main(own_connections_main, NULL, &cfg), 0);
    verify();
    cr_assert_eq(fds_after_free, fds_before, "every connection closed after the free");
}

Test(connpool_loops, each_loop_its_own_connections_2, .timeout = 120)
{
    own_connections(2);
}

Test(connpool_loops, each_loop_its_own_connections_4, .timeout = 120)
{
    own_connections(4);
}

/* ---- max_per_host per loop, waiters in order --------------------------------------- */

#define LIMIT 2
#define WAITERS 4

static int served[LOOPS_MAX][WAITERS]; /* per loop: waiter numbers, in the order served */
static int nserved[LOOPS_MAX];
static int held[LOOPS_MAX], held_max[LOOPS_MAX];
static int in_use, in_use_max; /* atomic: over all loops */

static void hold(int me)
{
    if (++held[me] > held_max[me])
        held_max[me] = held[me];
    int all = __atomic_add_fetch(&in_use, 1, __ATOMIC_SEQ_CST);
    int m = __atomic_load_n(&in_use_max, __ATOMIC_SEQ_CST);
    while (all > m && !__atomic_compare_exchange_n(&in_use_max, &m, all, false, __ATOMIC_SEQ_CST,
                                                   __ATOMIC_SEQ_CST))
        ;
}

static void unhold(int me)
{
    held[me]--;
    __atomic_sub_fetch(&in_use, 1, __ATOMIC_SEQ_CST);
}

static weft_wg *holding; /* every loop's first LIMIT hold at once */

static void holder(void *arg)
{
    (void)arg;
    int me = weft_loop_index();
    weft_sock *s;
    CHECK_EQ(get(&s, 10000), 0);
    hold(me);
    CHECK_EQ(ping(s), 0);
    weft_wg_done(holding);
    CHECK_EQ(weft_wg_wait(holding, 20000), 0); /* both loops at their limit at once */
    weft_sleep(50);
    unhold(me);
    CHECK_EQ(weft_connpool_put(P, s, 1), 0);
}

static void waiter(void *arg)
{
    int k = (int)(intptr_t)arg;
    int me = weft_loop_index();
    weft_sock *s;
    CHECK_EQ(get(&s, 20000), 0);
    hold(me);
    served[me][nserved[me]++] = k;
    CHECK_EQ(ping(s), 0);
    weft_sleep(10);
    unhold(me);
    CHECK_EQ(weft_connpool_put(P, s, 1), 0);
}

static void limit_on_loop(void *arg)
{
    (void)arg;
    int64_t ids[LIMIT + WAITERS];
    int n = 0;
    /* Queued in this order: the holders take the slots (connecting), the
     * waiters queue behind them in spawn order. */
    for (int i = 0; i < LIMIT; i++)
        ids[n++] = weft_go(holder, NULL);
    for (int k = 0; k < WAITERS; k++)
        ids[n++] = weft_go(waiter, (void *)(intptr_t)k);
    for (int i = 0; i < n; i++)
        CHECK_EQ(weft_join(ids[i], 60000), 0);
}

static int limit_main(void *arg)
{
    (void)arg;
    int n = weft_loop_count();
    memset(served, 0, sizeof served);
    memset(nserved, 0, sizeof nserved);
    memset(held_max, 0, sizeof held_max);
    in_use = in_use_max = 0;
    CHECK_EQ(weft_wg_new(&holding), 0);
    CHECK(weft_wg_add(holding, LIMIT * n) >= 0);
    weft_connpool_opts o = {.max_per_host = LIMIT};
    CHECK_EQ(weft_connpool_new(&P, &o), 0);
    on_every_loop(limit_on_loop, NULL);
    for (int i = 0; i < n; i++) {
        CHECK_EQ(held_max[i], LIMIT);
        CHECK_EQ(nserved[i], WAITERS);
        for (int k = 0; k < nserved[i]; k++)
            CHECK_EQ(served[i][k], k); /* first come, first served, on each loop */
    }
    /* Per loop: the group as a whole held LIMIT on each loop at once. */
    CHECK_EQ(in_use_max, LIMIT * n);
    weft_connpool_stats st = stats();
    CHECK_EQ(st.connects, (uint64_t)(LIMIT * n)); /* the waiters took those put back */
    CHECK_EQ(st.idle, (size_t)(LIMIT * n));
    CHECK_EQ(st.waiting, 0);
    weft_connpool_free(P);
    weft_wg_free(holding);
    return 0;
}

Test(connpool_loops, max_per_host_per_loop_in_order_2, .timeout = 120)
{
    weft_config cfg = {.threads = 2};
    cr_assert_eq(weft_main(limit_main, NULL, &cfg), 0);
    verify();
}

Test(connpool_loops, max_per_host_per_loop_in_order_4, .timeout = 120)
{
    weft_config cfg = {.threads = 4};
    cr_assert_eq(weft_main(limit_main, NULL, &cfg), 0);
    verify();
}

/* ---- idle expiry on every loop ----------------------------------------------------- */

static void park_one(void *arg)
{
    (void)arg;
    weft_sock *s;
    CHECK_EQ(get(&s, 10000), 0);
    CHECK_EQ(ping(s), 0);
    CHECK_EQ(weft_connpool_put(P, s, 1), 0);
}

static void get_new_one(void *arg)
{
    (void)arg;
    weft_sock *s;
    CHECK_EQ(get(&s, 10000), 0);
    CHECK_EQ(ping(s), 0);
    CHECK_EQ(weft_connpool_put(P, s, 0), 1);
}

static int expiry_main(void *arg)
{
    (void)arg;
    int n = weft_loop_count();
    int fds0 = count_fds();
    weft_connpool_opts o = {.idle_timeout_ms = 100};
    CHECK_EQ(weft_connpool_new(&P, &o), 0);
    on_every_loop(park_one, NULL);
    CHECK_EQ(stats().connects, (uint64_t)n);
    /* Each loop's own timer closes its own. */
    CHECK(SETTLE(stats().expired == (uint64_t)n, 10000));
    weft_connpool_stats st = stats();
    CHECK_EQ(st.expired, (uint64_t)n);
    CHECK_EQ(st.idle, 0);
    CHECK(SETTLE(count_fds() == fds0, 10000));
    on_every_loop(get_new_one, NULL);
    st = stats();
    CHECK_EQ(st.connects, (uint64_t)(2 * n));
    CHECK_EQ(st.reuses, 0);
    weft_connpool_free(P);
    return 0;
}

Test(connpool_loops, idle_expiry_on_every_loop, .timeout = 120)
{
    weft_config cfg = {.threads = 2};
    cr_assert_eq(weft_main(expiry_main, NULL, &cfg), 0);
    verify();
}

/* ---- a free from loop 1 while loop 0 holds connections ----------------------------- */

static int waiter_rc, loop1_rc;

static void waits_on_loop0(void *arg)
{
    (void)arg;
    weft_sock *s;
    waiter_rc = weft_connpool_get(P, &s, "127.0.0.1", srv_port2, 20000);
    if (waiter_rc == 0)
        weft_connpool_put(P, s, 0);
}

static void frees_on_loop1(void *arg)
{
    (void)arg;
    weft_sock *s;
    loop1_rc = get(&s, 10000); /* loop 1 has a part of its own, idle */
    if (loop1_rc == 0) {
        loop1_rc = ping(s);
        CHECK_EQ(weft_connpool_put(P, s, 1), 0);
    }
    CHECK_EQ(stats().idle, 2); /* loop 0's and this one */
    weft_connpool_free(P);
}

static int free_main(void *arg)
{
    (void)arg;
    int fds0 = count_fds();
    weft_connpool_opts o = {.max_per_host = 2};
    CHECK_EQ(weft_connpool_new(&P, &o), 0);
    /* Loop 0: on the first host one idle and one out, on the second two
     * out and a get waiting at the limit. */
    weft_sock *a[2], *b[2];
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(get(&a[i], 10000), 0);
        CHECK_EQ(weft_connpool_get(P, &b[i], "127.0.0.1", srv_port2, 10000), 0);
    }
    CHECK_EQ(weft_connpool_put(P, a[0], 1), 0);
    waiter_rc = 1;
    int64_t w = weft_go(waits_on_loop0, NULL);
    CHECK(SETTLE(stats().waiting == 1, 10000));
    CHECK_EQ(weft_join(weft_go_on(1, frees_on_loop1, NULL), 30000), 0);
    CHECK_EQ(loop1_rc, 0);
    /* The free reaches loop 0 at its next step: the waiter leaves, the
     * idle one closes. */
    CHECK_EQ(weft_join(w, 10000), 0);
    CHECK_EQ(waiter_rc, -EBADF);
    /* Those still out go back, closed; the pool's memory goes with the last. */
    CHECK_EQ(weft_connpool_put(P, a[1], 1), 1);
    CHECK_EQ(weft_connpool_put(P, b[0], 1), 1);
    CHECK_EQ(weft_connpool_put(P, b[1], 1), 1);
    CHECK(SETTLE(count_fds() == fds0, 10000));
    return 0;
}

Test(connpool_loops, free_from_another_loop, .timeout = 120)
{
    weft_config cfg = {.threads = 2};
    int fds0 = count_fds();
    cr_assert_eq(weft_main(free_main, NULL, &cfg), 0);
    verify();
    cr_assert_eq(count_fds(), fds0);
}

/* ---- the loops go first ------------------------------------------------------------ */

static int outlives_main(void *arg)
{
    (void)arg;
    on_every_loop(park_one, NULL);
    return 0;
}

static int other_group_main(void *arg)
{
    (void)arg;
    weft_connpool_stats st = stats();
    CHECK_EQ(st.idle, 0); /* closed with their loops */
    on_every_loop(park_one, NULL); /* a new group takes the pool */
    CHECK_EQ(stats().idle, (size_t)weft_loop_count());
    return 0;
}

Test(connpool_loops, loops_freed_before_the_pool, .timeout = 120)
{
    weft_config cfg = {.threads = 2}, cfg4 = {.threads = 4};
    int fds0 = count_fds();
    cr_assert_eq(weft_connpool_new(&P, NULL), 0);
    cr_assert_eq(weft_main(outlives_main, NULL, &cfg), 0);
    cr_assert_eq(weft_main(other_group_main, NULL, &cfg4), 0);
    verify();
    weft_connpool_stats st = stats();
    cr_assert_eq(st.idle + st.busy, 0);
    cr_assert_eq(st.connects, 6);
    weft_connpool_free(P); /* outside any loop: nothing left to close */
    /* The server closes its side once it reads the EOF. */
    for (int i = 0; i < 1000 && count_fds() != fds0; i++)
        usleep(5000);
    cr_assert_eq(count_fds(), fds0);
}

/* ---- weft_pool on every loop ------------------------------------------------------- */

typedef struct obj {
    int loop; /* the loop that made it */
    int destroyed;
} obj;

static int creates, destroys; /* atomic */
static int wrong_loop;         /* atomic: an object met on a loop other than its maker's */
static weft_pool *OP;

static void *obj_create(void *arg)
{
    (void)arg;
    obj *o = calloc(1, sizeof *o);
    o->loop = weft_loop_index();
    __atomic_add_fetch(&creates, 1, __ATOMIC_SEQ_CST);
    return o;
}

static void obj_destroy(void *p, void *arg)
{
    (void)arg;
    obj *o = p;
    if (o->loop != weft_loop_index() && weft_loop_index() >= 0)
        __atomic_add_fetch(&wrong_loop, 1, __ATOMIC_SEQ_CST);
    if (o->destroyed++)
        __atomic_add_fetch(&wrong_loop, 1000, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&destroys, 1, __ATOMIC_SEQ_CST);
    free(o);
}

static void obj_user(void *arg)
{
    (void)arg;
    int me = weft_loop_index();
    for (int i = 0; i < 500; i++) {
        obj *a = weft_pool_get(OP), *b = weft_pool_get(OP);
        CHECK(a && b && a != b);
        if (!a || !b)
            return;
        if (a->loop != me || b->loop != me)
            __atomic_add_fetch(&wrong_loop, 1, __ATOMIC_SEQ_CST);
        weft_pool_put(OP, a);
        if (i % 5 == 0)
            weft_yield();
        weft_pool_put(OP, b);
    }
    CHECK(weft_pool_size(OP) >= 2 && weft_pool_size(OP) <= 8);
}

static void obj_users_of_loop(void *arg)
{
    int64_t ids[USERS];
    for (int i = 0; i < USERS; i++)
        CHECK((ids[i] = weft_go(obj_user, arg)) > 0);
    for (int i = 0; i < USERS; i++)
        CHECK_EQ(weft_join(ids[i], 60000), 0);
}

static void obj_free_on_loop1(void *arg)
{
    (void)arg;
    weft_pool_free(OP);
}

static int pool_main(void *arg)
{
    bool free_inside = arg != NULL;
    if (free_inside)
        CHECK_EQ(weft_pool_new(&OP, obj_create, obj_destroy, NULL, 8), 0);
    on_every_loop(obj_users_of_loop, NULL);
    if (free_inside) {
        CHECK(weft_pool_size(OP) >= 2);
        /* From loop 1 while every loop keeps some: each destroys its own. */
        CHECK_EQ(weft_join(weft_go_on(1, obj_free_on_loop1, NULL), 30000), 0);
        CHECK(SETTLE(__atomic_load_n(&destroys, __ATOMIC_SEQ_CST) ==
                         __atomic_load_n(&creates, __ATOMIC_SEQ_CST),
                     10000));
    }
    return 0;
}

static void pool_on_loops(int loops, bool free_inside)
{
    creates = destroys = wrong_loop = 0;
    weft_config cfg = {.threads = loops};
    if (!free_inside)
        cr_assert_eq(weft_pool_new(&OP, obj_create, obj_destroy, NULL, 8), 0);
    cr_assert_eq(weft_main(pool_main, free_inside ? (void *)1 : NULL, &cfg), 0);
    verify();
    if (!free_inside) {
        /* Each loop destroyed what it kept as it was freed; the pool then
         * goes to the next group. */
        cr_assert_eq(destroys, creates);
        cr_assert_eq(weft_main(pool_main, NULL, &cfg), 0);
        verify();
        weft_pool_free(OP);
    }
    cr_assert_eq(wrong_loop, 0);
    cr_assert(creates >= 2 * loops, "%d made", creates);
    cr_assert_eq(destroys, creates);
}

Test(connpool_loops, pool_per_loop_freed_on_loop1_2, .timeout = 120)
{
    pool_on_loops(2, true);
}

Test(connpool_loops, pool_per_loop_freed_on_loop1_4, .timeout = 120)
{
    pool_on_loops(4, true);
}

Test(connpool_loops, pool_per_loop_outlives_its_loops, .timeout = 120)
{
    pool_on_loops(4, false);
}
