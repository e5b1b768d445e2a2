/*
 * pool_client.c - co's tcp::Client example with its co::Pool: 8 coroutines
 * share pooled connections to a ping-pong server, plain or TLS.
 *
 * usage: pool_client [ROUNDS]            plain TCP
 *        pool_client [ROUNDS] CERT KEY   TLS: the server uses CERT and KEY,
 *                                        the client trusts CERT (self-signed,
 *                                        for 127.0.0.1)
 * The program runs the seed's server too (a pong for every ping), on a free
 * port of 127.0.0.1.  Each coroutine does ROUNDS (default 5) rounds of: get
 * a connection from the pool (co's PoolGuard, and tcp::Client's connect on
 * demand), ping, pong, put it back.  At most 4 connections are open at once:
 * the other coroutines wait for one to come back.  Exits 0 if every round
 * trip worked.
 */
#include <weft.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COROUTINES 8
#define MAX_CONNS 4
#define TIMEOUT_MS 3000

static int rounds = 5, trips, failed, accepted;
static const char *cert, *key;
static weft_connpool *pool;
static int port;

/* The seed's on_connection: a pong for every ping. */
static void on_conn(weft_sock *c, void *arg)
{
    (void)arg;
    char buf[4];
    accepted++;
    while (weft_recvn(c, buf, 4, 30000) == 4 && memcmp(buf, "ping", 4) == 0)
        if (weft_send(c, "pong", 4, TIMEOUT_MS) != 4)
            break;
}

/* The seed's client_fun. */
static void client(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < rounds; i++) {
        weft_sock *c; /* co::PoolGuard<tcp::Client> c(pool); c->connect(3000) */
        int rc = weft_connpool_get(pool, &c, "127.0.0.1", port, TIMEOUT_MS);
        if (rc < 0) {
            fprintf(stderr, "client %d: connect failed: %s\n", id, weft_strerror(rc));
            failed++;
            return;
        }
        char buf[4];
        ssize_t n = weft_send(c, "ping", 4, TIMEOUT_MS);
        if (n == 4)
            n = weft_recvn(c, buf, 4, TIMEOUT_MS);
        if (n != 4 || memcmp(buf, "pong", 4) != 0) {
            fprintf(stderr, "client %d: %s\n", id,
                    n < 0 ? weft_strerror((int)n) : "the server closed the connection");
            weft_connpool_put(pool, c, 0); /* broken: closed, its place freed */
            failed++;
            return;
        }
        weft_connpool_put(pool, c, 1); /* the guard's destructor: back for the next */
        trips++;
        weft_sleep(20); /* the seed's co::sleep(3000), shortened */
    }
}

static int run(void *arg)
{
    (void)arg;
    weft_server *srv;
    weft_server_opts so = {
        .host = "127.0.0.1", .on_conn = on_conn, .cert_file = cert, .key_file = key};
    int rc = weft_server_start(&srv, &so);
    if (rc < 0) {
        fprintf(stderr, "pool_client: server: %s\n", weft_strerror(rc));
        return 1;
    }
    port = weft_server_port(srv);
    weft_connpool_opts po = {.max_per_host = MAX_CONNS};
    weft_tls_ctx *tls = NULL;
    if (cert) {
#ifdef POOL_CLIENT_TLS
        weft_tls_opts to = {.ca_file = cert};
        rc = weft_tls_ctx_new(&tls, WEFT_TLS_CLIENT, &to);
#else
        rc = -ENOTSUP;
#endif
        po.tls = tls;
    }
    if (rc == 0)
        rc = weft_connpool_new(&pool, &po);
    if (rc < 0) {
        fprintf(stderr, "pool_client: %s\n", weft_strerror(rc));
        weft_server_free(srv);
        return 1;
    }
    int64_t ids[COROUTINES];
    for (int i = 0; i < COROUTINES; i++)
        ids[i] = weft_go(client, (void *)(intptr_t)i);
    for (int i = 0; i < COROUTINES; i++)
        if (ids[i] > 0)
            weft_join(ids[i], -1);
    weft_connpool_stats st;
    weft_connpool_stat(pool, &st);
    printf("%d coroutines, %d round trips over %llu %s connections (%llu reused)\n", COROUTINES,
           trips, (unsigned long long)st.connects, tls ? "TLS" : "TCP",
           (unsigned long long)st.reuses);
    weft_connpool_free(pool); /* closes the idle ones: their server coroutines end */
    weft_server_drain(srv, 1000);
    weft_server_free(srv);
#ifdef POOL_CLIENT_TLS
    weft_tls_ctx_free(tls);
#endif
    return failed || trips != COROUTINES * rounds || accepted > MAX_CONNS;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        rounds = atoi(argv[1]);
    if (argc > 3) {
        cert = argv[2];
        key = argv[3];
    }
    if (rounds <= 0 || argc == 3 || argc > 4) {
        fprintf(stderr, "usage: pool_client [ROUNDS] [CERT KEY]\n");
        return 2;
    }
    int rc = weft_main(run, NULL, NULL);
    return rc < 0 ? 1 : rc;
}
