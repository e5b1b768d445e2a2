/*
 * check_server_threads.c - a weft_server on 4 loops under ThreadSanitizer
 * (a plain program: Criterion does not start under TSan).  Client threads
 * connect, echo and close over and over while the server accepts on every
 * loop; a drain from loop 2 stops it while connections are active, and
 * on_exit runs once.  Then a weft_pool used from 4 loops at once, its
 * loops freed before it; the same freed from loop 1 while every loop
 * keeps objects; and a weft_connpool used from 4 loops at once, freed
 * from loop 1 while every loop holds idle connections.
 * Exits 0 when all is well, 1 with a message otherwise.
 */
#include <weft.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LOOPS 4
#define CLIENTS 4

static weft_server *srv;
static int port;
static int accepted[LOOPS]; /* atomic */
static int exits;           /* atomic */
static int echoed;          /* atomic: client round trips */
static int drain_rc = -1;
static size_t count_end = 1;
static weft_event *exited;
static int failures;

#define CHECK(c, ...)                                                                              \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "check_server_threads: " __VA_ARGS__);                                 \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void on_conn(weft_sock *c, void *arg)
{
    (void)arg;
    __atomic_add_fetch(&accepted[weft_loop_index()], 1, __ATOMIC_RELAXED);
    char buf[512];
    ssize_t n;
    while ((n = weft_recv(c, buf, sizeof buf, 10000)) > 0)
        if (weft_send(c, buf, (size_t)n, 10000) < 0)
            break;
}

static void on_exit_cb(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&exits, 1, __ATOMIC_SEQ_CST);
    weft_event_set(exited);
}

/* Connects, echoes a few messages, closes; again, until refused. */
static void *client(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        struct timeval tv = {10, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            close(fd);
            break; /* refused: the server has stopped */
        }
        for (int i = 0; i < 5; i++) {
            char m[64], r[64];
            memset(m, 'a' + i, sizeof m);
            if (send(fd, m, sizeof m, MSG_NOSIGNAL) != (ssize_t)sizeof m)
                break;
            size_t got = 0;
            while (got < sizeof r) {
                ssize_t n = recv(fd, r + got, sizeof r - got, 0);
                if (n <= 0)
                    break;
                got += (size_t)n;
            }
            if (got != sizeof r || memcmp(m, r, sizeof r) != 0)
                break;
            __atomic_add_fetch(&echoed, 1, __ATOMIC_RELAXED);
        }
        close(fd);
    }
    return NULL;
}

static void drain_on_loop(void *arg)
{
    (void)arg;
    drain_rc = weft_server_drain(srv, 200);
}

static int server_main(void *arg)
{
    (void)arg;
    weft_server_opts o = {.host = "127.0.0.1", .on_conn = on_conn, .on_exit = on_exit_cb,
                          .stack_size = 64 * 1024};
    int rc = weft_server_start(&srv, &o);
    CHECK(rc == 0, "start: %s", weft_strerror(rc));
    if (rc < 0)
        return 1;
    port = weft_server_port(srv);
    pthread_t t[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        pthread_create(&t[i], NULL, client, NULL);
    /* Until every loop has accepted a few, within a bounded time. */
    for (int i = 0; i < 500; i++) {
        int busy = 0;
        for (int j = 0; j < LOOPS; j++)
            busy += __atomic_load_n(&accepted[j], __ATOMIC_RELAXED) >= 5;
        if (busy == LOOPS)
            break;
        weft_sleep(20);
    }
    weft_join(weft_go_on(2, drain_on_loop, NULL), -1);
    weft_event_wait(exited, 30000);
    count_end = weft_server_conn_count(srv);
    weft_server_free(srv);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(t[i], NULL);
    return 0;
}

/* ---- a weft_pool from every loop ------------------------------------------------ */

static int made, destroyed; /* atomic */

static void *make_obj(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&made, 1, __ATOMIC_RELAXED);
    return malloc(16);
}

static void destroy_obj(void *obj, void *arg)
{
    (void)arg;
    __atomic_add_fetch(&destroyed, 1, __ATOMIC_RELAXED);
    free(obj);
}

static weft_pool *pool;

static void pool_user(void *arg)
{
    (void)arg;
    for (int i = 0; i < 2000; i++) {
        void *a = weft_pool_get(pool), *b = weft_pool_get(pool);
        weft_pool_put(pool, a);
        if (i % 7 == 0)
            weft_yield();
        weft_pool_put(pool, b);
    }
}

static void pool_free_on_loop(void *arg)
{
    (void)arg;
    weft_pool_free(pool);
}

/* arg set: the pool is freed from loop 1 while every loop keeps objects. */
static int pool_main(void *arg)
{
    int64_t ids[LOOPS];
    for (int i = 0; i < LOOPS; i++)
        ids[i] = weft_go_on(i, pool_user, NULL);
    for (int i = 0; i < LOOPS; i++)
        weft_join(ids[i], -1);
    if (arg)
        weft_join(weft_go_on(1, pool_free_on_loop, NULL), -1);
    return 0;
}

/* ---- a weft_connpool from every loop -------------------------------------------- */

static weft_connpool *cpool;
static int cp_errors; /* atomic */

static void cp_user(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++) {
        weft_sock *s;
        int rc = weft_connpool_get(cpool, &s, "127.0.0.1", port, 10000);
        if (rc == 0 && weft_send(s, "ping", 4, 10000) == 4) {
            char b[4];
            rc = weft_recvn(s, b, 4, 10000) == 4 ? 0 : -EIO;
        }
        if (rc == 0)
            rc = weft_connpool_put(cpool, s, 1);
        if (rc != 0)
            __atomic_add_fetch(&cp_errors, 1, __ATOMIC_RELAXED);
        if (i % 5 == 0)
            weft_yield();
    }
}

static void cp_users(void *arg)
{
    int64_t ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = weft_go(cp_user, arg);
    for (int i = 0; i < 3; i++)
        weft_join(ids[i], -1);
}

static void cp_free_on_loop(void *arg)
{
    (void)arg;
    weft_connpool_stats st;
    weft_connpool_stat(cpool, &st);
    CHECK(st.idle >= LOOPS, "connpool: %zu idle over %d loops", st.idle, LOOPS);
    weft_connpool_free(cpool);
}

static void echo_conn(void *arg)
{
    weft_sock *c = arg;
    char b[4];
    while (weft_recvn(c, b, 4, 30000) == 4 && weft_send(c, "pong", 4, 10000) == 4)
        ;
    weft_close(c);
}

static weft_sock *echo_l;

static void echo_acceptor(void *arg)
{
    (void)arg;
    weft_sock *c;
    while (weft_tcp_accept(echo_l, &c, -1) == 0)
        weft_go(echo_conn, c);
}

static int connpool_main(void *arg)
{
    (void)arg;
    /* The server on loop 0 alone: a listener belongs to its loop. */
    int rc = weft_tcp_listen(&echo_l, "127.0.0.1", 0, 128, 0);
    weft_addr a;
    CHECK(rc == 0 && weft_sock_local(echo_l, &a) == 0, "listen: %s", weft_strerror(rc));
    if (rc < 0)
        return 1;
    port = weft_addr_port(&a);
    int64_t acc = weft_go(echo_acceptor, NULL);
    CHECK(weft_connpool_new(&cpool, NULL) == 0, "connpool_new");
    int64_t ids[LOOPS];
    for (int i = 0; i < LOOPS; i++)
        ids[i] = weft_go_on(i, cp_users, NULL);
    for (int i = 0; i < LOOPS; i++)
        weft_join(ids[i], -1);
    weft_join(weft_go_on(1, cp_free_on_loop, NULL), -1);
    weft_close(echo_l);
    weft_join(acc, -1);
    return 0;
}

int main(void)
{
    weft_event_new(&exited, 1);
    weft_config cfg = {.threads = LOOPS};
    int rc = weft_main(server_main, NULL, &cfg);
    CHECK(rc == 0, "weft_main: %d", rc);
    int total = 0;
    for (int i = 0; i < LOOPS; i++) {
        CHECK(accepted[i] > 0, "loop %d accepted none", i);
        total += accepted[i];
    }
    CHECK(exits == 1, "on_exit ran %d times", exits);
    CHECK(count_end == 0, "conn_count %zu at the end", count_end);
    CHECK(drain_rc >= 0, "drain: %s", weft_strerror(drain_rc));
    CHECK(echoed > 0, "no echo");
    weft_event_free(exited);

    CHECK(weft_pool_new(&pool, make_obj, destroy_obj, NULL, 4) == 0, "pool_new");
    rc = weft_main(pool_main, NULL, &cfg);
    CHECK(rc == 0, "weft_main (pool): %d", rc);
    CHECK(made == destroyed, "pool: made %d, destroyed %d with the loops", made, destroyed);
    weft_pool_free(pool);
    CHECK(weft_pool_new(&pool, make_obj, destroy_obj, NULL, 4) == 0, "pool_new");
    rc = weft_main(pool_main, "free inside", &cfg);
    CHECK(rc == 0, "weft_main (pool freed inside): %d", rc);
    CHECK(made == destroyed, "pool: made %d, destroyed %d", made, destroyed);

    rc = weft_main(connpool_main, NULL, &cfg);
    CHECK(rc == 0, "weft_main (connpool): %d", rc);
    CHECK(cp_errors == 0, "connpool: %d calls failed", cp_errors);
    if (failures)
        return 1;
    printf("check_server_threads: %d connections over %d loops (%d %d %d %d), %d echoes, "
           "drain cancelled %d\n",
           total, LOOPS, accepted[0], accepted[1], accepted[2], accepted[3], echoed, drain_rc);
    return 0;
}
