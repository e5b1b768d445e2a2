/*
 * echo_srv.c - the TCP echo server of echo_server.c, on weft_server: the
 * server listens, accepts and runs echo() in a coroutine per connection,
 * and closes the connection when echo() returns.
 *
 * usage: echo_srv PORT [THREADS]
 * Listens on 127.0.0.1:PORT until killed, with THREADS loops, one per
 * thread (weft_config.threads): one weft_server, started on loop 0,
 * listens on every loop (SO_REUSEPORT), and the kernel spreads the
 * connections between them; each runs on the loop that accepted it.
 */
#include <weft.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define BIG_BUF (64 * 1024)

static int port;

/* As in echo_server.c: big messages go through one buffer the thread's
 * connections share (nothing else runs between a read and a send that
 * does not wait), and only a send that must wait copies the rest into the
 * connection's own, in a frame of its own that others never touch. */
static __thread char shared[BIG_BUF];

__attribute__((noinline)) static int send_rest(weft_sock *c, const char *rest, size_t n)
{
    char own[BIG_BUF];
    memcpy(own, rest, n);
    return weft_send(c, own, n, -1) < 0 ? -1 : 0;
}

static void echo_big(weft_sock *c)
{
    ssize_t n;
    while ((n = weft_recv(c, shared, sizeof shared, -1)) > 0) {
        ssize_t r = weft_send(c, shared, (size_t)n, 0); /* timeout 0: only tries */
        if (r == n)
            continue;
        if (r != -ETIMEDOUT)
            break;
        size_t sent = weft_sock_sent(c);
        if (send_rest(c, shared + sent, (size_t)n - sent) < 0)
            break;
    }
}

/* on_conn: one connection, in its own coroutine.  No close: the server
 * closes c when this returns. */
static void echo(weft_sock *c, void *arg)
{
    char small[1024]; /* in the stack's top page: an idle connection costs one page */
    ssize_t n;
    (void)arg;
    weft_sock_set_nodelay(c, 1);
    while ((n = weft_recv(c, small, sizeof small, -1)) > 0) {
        if (weft_send(c, small, (size_t)n, -1) < 0)
            return;
        if ((size_t)n == sizeof small) { /* a full read: big messages */
            echo_big(c);
            return;
        }
    }
}

static int serve(void *arg)
{
    weft_server *s;
    weft_server_opts o = {
        .host = "127.0.0.1",
        .port = port,
        .on_conn = echo,
        .stack_size = BIG_BUF + 64 * 1024, /* room for echo_big */
    };
    (void)arg;
    int rc = weft_server_start(&s, &o); /* listening on every loop when it returns */
    if (rc < 0) {
        fprintf(stderr, "echo_srv: %s\n", weft_strerror(rc));
        exit(1);
    }
    return 0; /* the server's coroutines keep the loops running */
}

int main(int argc, char **argv)
{
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    port = argc > 1 ? atoi(argv[1]) : 0;
    if (port <= 0 || port > 65535 || threads < 1 || threads > 64) {
        fprintf(stderr, "usage: echo_srv PORT [THREADS]\n");
        return 2;
    }
    struct rlimit r; /* one descriptor per connection */
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
    weft_config cfg = {.threads = threads};
    return weft_main(serve, NULL, &cfg) < 0;
}
