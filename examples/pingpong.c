/*
 * pingpong.c - co's ping-pong example on weft_server: the server answers
 * "pong" to every "ping"; a pool of client coroutines, each on its own
 * connection, sends "ping" and waits for "pong", ROUNDS times.  Server and
 * clients share one loop on one thread.
 *
 * usage: pingpong [CLIENTS] [ROUNDS]      (defaults: 100 clients, 1000 rounds)
 * Prints the round trips completed, the errors and the rate; exits 0 only
 * if every round trip completed.
 */
#include <weft.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define TIMEOUT_MS 5000

static int port, rounds;
static long done, errors;

static void report(const char *what, ssize_t rc)
{
    if (errors++ < 5) /* the first few tell the story */
        fprintf(stderr, "pingpong: %s: %s\n", what, rc ? weft_strerror((int)rc) : "closed");
}

/* on_conn: one connection, in a coroutine of its own (co's on_connection).
 * Where co calls conn.strerror(), the code itself says what went wrong:
 * weft_strerror(n).  The server closes the connection when this returns. */
static void answer(weft_sock *c, void *arg)
{
    char msg[4];
    ssize_t n;
    (void)arg;
    while ((n = weft_recvn(c, msg, 4, TIMEOUT_MS)) == 4) {
        if (memcmp(msg, "ping", 4) != 0) {
            report("server got something other than ping", -EPROTO);
            break;
        }
        if ((n = weft_send(c, "pong", 4, TIMEOUT_MS)) < 0) {
            report("server send", n);
            break;
        }
    }
    if (n < 0) {
        report("server recv", n);
        /* co's conn.reset(3000): an RST three seconds from now, no TIME_WAIT;
         * this returns at once, and the server leaves the socket to it. */
        weft_reset_after(c, 3000);
    }
}

static void client(void *arg)
{
    weft_sock *s;
    char reply[4];
    int rc = weft_tcp_connect(&s, "127.0.0.1", port, TIMEOUT_MS);
    (void)arg;
    if (rc < 0) {
        report("connect", rc);
        return;
    }
    for (int i = 0; i < rounds; i++) {
        ssize_t n = weft_send(s, "ping", 4, TIMEOUT_MS);
        if (n >= 0)
            n = weft_recvn(s, reply, 4, TIMEOUT_MS);
        if (n != 4) {
            report("client", n);
            break;
        }
        if (memcmp(reply, "pong", 4) != 0) {
            report("client got something other than pong", -EPROTO);
            break;
        }
        done++;
    }
    weft_close(s);
}

static int run(void *arg)
{
    int clients = *(int *)arg;
    weft_server *srv;
    weft_server_opts o = {.host = "127.0.0.1", .port = 0, .on_conn = answer};
    int rc = weft_server_start(&srv, &o); /* co: tcp::Server().on_connection(f).start(ip, port) */
    if (rc < 0) {
        report("server", rc);
        return 1;
    }
    port = weft_server_port(srv);

    int64_t *ids = calloc((size_t)clients, sizeof *ids);
    if (!ids) {
        report("calloc", -ENOMEM);
        weft_server_free(srv);
        return 1;
    }
    for (int i = 0; i < clients; i++)
        if ((ids[i] = weft_go(client, NULL)) < 0)
            report("spawn", ids[i]);
    for (int i = 0; i < clients; i++)
        if (ids[i] > 0)
            weft_join(ids[i], -1);
    free(ids);
    /* co's exit() stops accepting and leaves connections be; drain also
     * waits for them (a second at most), then cancels what is left. */
    if ((rc = weft_server_drain(srv, 1000)) > 0)
        report("connections still open at the end", -ETIMEDOUT);
    weft_server_free(srv);
    return 0;
}

int main(int argc, char **argv)
{
    int clients = argc > 1 ? atoi(argv[1]) : 100;
    rounds = argc > 2 ? atoi(argv[2]) : 1000;
    if (clients < 1 || rounds < 0) {
        fprintf(stderr, "usage: pingpong [CLIENTS] [ROUNDS]\n");
        return 2;
    }
    struct rlimit r; /* two descriptors per client: both ends live here */
    if (getrlimit(RLIMIT_NOFILE, &r) == 0) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = weft_main(run, &clients, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (rc < 0)
        fprintf(stderr, "pingpong: weft_main: %s\n", weft_strerror(rc));

    long want = (long)clients * rounds;
    printf("clients=%d rounds=%d round_trips=%ld/%ld errors=%ld secs=%.3f rate=%.0f/s\n", clients,
           rounds, done, want, errors, secs, secs > 0 ? (double)done / secs : 0.0);
    return rc == 0 && errors == 0 && done == want ? 0 : 1;
}
