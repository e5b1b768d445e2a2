/*
 * demo.c - weft's main job in one process: weft_main runs two loops, one
 * thread each; loop 1 runs an echo server, loop 0 thousands of client
 * coroutines, each on its own connection, doing 64-byte round trips and
 * checking every byte that comes back.
 *
 * usage: demo [CONNS] [SECONDS]        (defaults: 2000 connections, 10 s)
 * Shows a progress line every second, then the totals and the latency
 * percentiles.  Exits 0 only if every connection was made and no error
 * or corrupted byte was seen.
 */
#include <weft.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MSG_SIZE 64
#define CONNECT_TIMEOUT_MS 10000
#define IO_TIMEOUT_MS 5000

/* ---- latency: a log-bucket histogram, 32 buckets per power of two ------ */

#define SUB_BITS 5
#define SUB (1 << SUB_BITS)
static uint64_t hist[64 * SUB];
static uint64_t lat_max;

static int bucket_of(uint64_t ns)
{
    if (ns < SUB)
        return (int)ns;
    int e = 63 - __builtin_clzll(ns);
    return (e - SUB_BITS + 1) * SUB + (int)((ns >> (e - SUB_BITS)) & (SUB - 1));
}

/* The middle of bucket b: at most about 1.5% off any value in it. */
static uint64_t bucket_mid(int b)
{
    if (b < SUB)
        return (uint64_t)b;
    int e = b / SUB + SUB_BITS - 1;
    uint64_t low = (uint64_t)(SUB + b % SUB) << (e - SUB_BITS);
    return low + ((uint64_t)1 << (e - SUB_BITS)) / 2;
}

static void record(uint64_t ns)
{
    hist[bucket_of(ns)]++;
    if (ns > lat_max)
        lat_max = ns;
}

static uint64_t percentile(uint64_t total, double p)
{
    uint64_t rank = (uint64_t)((double)total * p), seen = 0;
    for (int b = 0; b < (int)(sizeof hist / sizeof hist[0]); b++) {
        seen += hist[b];
        if (seen > rank) {
            uint64_t v = bucket_mid(b);
            return v < lat_max ? v : lat_max;
        }
    }
    return lat_max;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- errors, from both loops ------------------------------------------ */

static atomic_long errors;
static bool tty; /* stderr is a terminal: progress updates one line in place */

static void fail(const char *who, const char *what, long rc)
{
    if (atomic_fetch_add(&errors, 1) < 5) /* the first few tell the story */
        fprintf(stderr, "%sdemo: %s: %s: %s\n", tty ? "\n" : "", who, what,
                rc ? weft_strerror((int)rc) : "connection closed");
}

/* ---- the server: an echo server on loop 1 ------------------------------------ */

static void echo(void *arg)
{
    weft_sock *c = arg;
    char buf[16 * 1024];
    ssize_t n;
    weft_sock_set_nodelay(c, 1);
    while ((n = weft_recv(c, buf, sizeof buf, -1)) > 0)
        if ((n = weft_send(c, buf, (size_t)n, IO_TIMEOUT_MS)) < 0)
            break;
    if (n < 0)
        fail("server", "echo", n);
    weft_close(c);
}

/* Listens, tells loop 0 the port through a channel, and accepts until
 * loop 0 cancels it; the connections' coroutines end as clients close. */
static void server(void *arg)
{
    weft_chan *port_chan = arg;
    weft_sock *l, *c;
    weft_addr a;
    int rc;
    if ((rc = weft_tcp_listen(&l, "127.0.0.1", 0, 0, 0)) < 0 || (rc = weft_sock_local(l, &a)) < 0) {
        weft_chan_send(port_chan, &rc, -1);
        return;
    }
    int p = weft_addr_port(&a);
    weft_chan_send(port_chan, &p, -1);
    while ((rc = weft_tcp_accept(l, &c, -1)) >= 0)
        if (weft_go(echo, c) < 0) {
            fail("server", "spawn", -ENOMEM);
            weft_close(c);
        }
    if (rc != -ECANCELED) /* cancelled by loop 0: the normal end */
        fail("server", "accept", rc);
    weft_close(l);
}

/* ---- the clients: CONNS coroutines on loop 0 ---------------------------------- */

static int conns, seconds, port;
static bool stopping;
static long established, live;
static uint64_t round_trips;

/* Each message of each connection has its own content. */
static void fill(unsigned char *buf, uint64_t conn, uint64_t seq)
{
    uint64_t x = (conn << 32 ^ seq) * 0x9E3779B97F4A7C15ull + 1;
    for (int i = 0; i < MSG_SIZE; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(buf + i, &x, 8);
    }
}

static weft_wg *clients_left;

static void client(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    unsigned char out[MSG_SIZE], in[MSG_SIZE];
    weft_sock *s;
    int rc = weft_tcp_connect(&s, "127.0.0.1", port, CONNECT_TIMEOUT_MS);
    if (rc < 0) {
        fail("client", "connect", rc);
        weft_wg_done(clients_left);
        return;
    }
    weft_sock_set_nodelay(s, 1);
    established++;
    live++;
    for (uint64_t seq = 0; !stopping; seq++) {
        fill(out, id, seq);
        uint64_t t0 = now_ns();
        ssize_t n = weft_send(s, out, MSG_SIZE, IO_TIMEOUT_MS);
        if (n >= 0)
            n = weft_recvn(s, in, MSG_SIZE, IO_TIMEOUT_MS);
        if (n != MSG_SIZE) {
            fail("client", "round trip", n);
            break;
        }
        if (memcmp(in, out, MSG_SIZE) != 0) {
            fail("client", "echo differs from what was sent", -EPROTO);
            break;
        }
        record(now_ns() - t0);
        round_trips++;
    }
    live--;
    weft_close(s);
    weft_wg_done(clients_left);
}

/* Prints progress once a second and raises the stop flag at the end. */
static void reporter(void *arg)
{
    uint64_t start = now_ns(), last_t = start, last_rt = 0;
    (void)arg;
    for (int sec = 1; sec <= seconds; sec++) {
        int64_t wait_ms = (int64_t)(start + (uint64_t)sec * 1000000000u - now_ns()) / 1000000;
        weft_sleep(wait_ms > 0 ? wait_ms : 0);
        uint64_t t = now_ns();
        double rate = (double)(round_trips - last_rt) * 1e9 / (double)(t - last_t);
        fprintf(stderr, "%s%3d s  connections %6ld/%d  round trips/s %9.0f%s", tty ? "\r" : "", sec,
                live, conns, rate, tty ? "   " : "\n");
        last_t = t;
        last_rt = round_trips;
    }
    if (tty)
        fputc('\n', stderr);
    stopping = true;
}

static uint64_t t0;

/* Loop 0: starts the server on loop 1, runs the clients here, and stops
 * the server once they have all closed. */
static int demo_main(void *arg)
{
    weft_chan *port_chan;
    (void)arg;
    if (weft_chan_new(&port_chan, sizeof(int), 1) < 0 || weft_wg_new(&clients_left) < 0)
        return -ENOMEM;
    int64_t srv = weft_go_on(1, server, port_chan);
    if (srv < 0)
        return (int)srv;
    int rc = weft_chan_recv(port_chan, &port, -1);
    weft_chan_free(port_chan);
    if (rc < 0 || port <= 0) {
        weft_join(srv, -1);
        return rc < 0 ? rc : port;
    }
    printf("weft demo: echo server on 127.0.0.1:%d (loop 1), %d client connections "
           "(loop 0), %d-byte round trips for %d s\n",
           port, conns, MSG_SIZE, seconds);
    fflush(stdout);
    t0 = now_ns();
    if (weft_go(reporter, NULL) < 0)
        return -ENOMEM;
    weft_wg_add(clients_left, conns);
    for (int i = 0; i < conns; i++)
        if (weft_go(client, (void *)(uintptr_t)i) < 0) {
            fail("client", "spawn", -ENOMEM);
            weft_wg_done(clients_left);
        }
    weft_wg_wait(clients_left, -1);
    weft_wg_free(clients_left);
    weft_cancel(srv); /* a coroutine of the other loop: its accept ends */
    return weft_join(srv, -1);
}

/* ---- main ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    conns = argc > 1 ? atoi(argv[1]) : 2000;
    seconds = argc > 2 ? atoi(argv[2]) : 10;
    if (conns < 1 || seconds < 1) {
        fprintf(stderr, "usage: demo [CONNS] [SECONDS]\n");
        return 2;
    }
    /* Both ends of every connection live in this process. */
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
        getrlimit(RLIMIT_NOFILE, &r);
        if (r.rlim_cur != RLIM_INFINITY && (rlim_t)conns * 2 + 64 > r.rlim_cur) {
            conns = (int)((r.rlim_cur - 64) / 2);
            fprintf(stderr, "demo: descriptor limit %lu: using %d connections\n",
                    (unsigned long)r.rlim_cur, conns);
        }
    }
    tty = isatty(STDERR_FILENO);
    alarm((unsigned)seconds + 60); /* a last resort: the run ends by itself anyway */

    /* Two loops, one thread each: weft_main returns when the clients, the
     * server and its connections have all ended. */
    weft_config cfg = {.threads = 2};
    int rc = weft_main(demo_main, NULL, &cfg);
    double secs = (double)(now_ns() - t0) / 1e9;
    if (rc < 0)
        fail("main", "weft_main", rc);

    long errs = atomic_load(&errors);
    printf("connections established: %ld of %d\n", established, conns);
    printf("round trips:             %llu\n", (unsigned long long)round_trips);
    printf("round trips per second:  %.0f (over %.1f s)\n", (double)round_trips / secs, secs);
    printf("latency p50/p99/max:     %.0f / %.0f / %.0f us\n",
           (double)percentile(round_trips, 0.50) / 1e3, (double)percentile(round_trips, 0.99) / 1e3,
           (double)lat_max / 1e3);
    printf("errors:                  %ld\n", errs);
    return errs == 0 && established == conns && round_trips > 0 ? 0 : 1;
}
