/*
 * echo_server.c - a TCP echo server, one coroutine per connection, written
 * as plain accept / recv / send.
 *
 * usage: echo_server PORT [THREADS]
 * Listens on 127.0.0.1:PORT until killed.  weft_main runs THREADS loops,
 * one per thread, each with its own SO_REUSEPORT listener; the kernel
 * spreads the connections between them.
 */
#include <weft.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define BIG_BUF (64 * 1024)

static int port;

/* Big messages are read into one buffer that the thread's connections
 * share, and sent straight back from it: on epoll a receive writes into its
 * buffer only at the moment it returns, and no other coroutine runs between
 * the read and a send that does not wait, so none can touch the buffer
 * meanwhile.  Fewer distinct buffers keep the kernel's copies in cache. */
static __thread char shared[BIG_BUF];

/* When the peer reads too slowly for the send to finish at once, the rest
 * moves to this connection's own buffer before the coroutine waits.  It is
 * in a frame of its own (not inlined), so connections that never need it
 * never touch its pages: untouched stack costs nothing. */
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

/* On io_uring the kernel fills a receive's buffer while the call waits,
 * so one buffer shared by the connections would take all their data at
 * once: there each connection reads into its own. */
static __thread int own_buffers;

__attribute__((noinline)) static void echo_big_own(weft_sock *c)
{
    char own[BIG_BUF];
    ssize_t n;
    while ((n = weft_recv(c, own, sizeof own, -1)) > 0)
        if (weft_send(c, own, (size_t)n, -1) < 0)
            break;
}

static void serve(void *arg)
{
    weft_sock *c = arg;
    char small[1024]; /* in the stack's top page: an idle connection costs one page */
    ssize_t n;

    weft_sock_set_nodelay(c, 1);
    while ((n = weft_recv(c, small, sizeof small, -1)) > 0) {
        if (weft_send(c, small, (size_t)n, -1) < 0)
            break;
        if ((size_t)n == sizeof small) { /* a full read: big messages */
            if (own_buffers)
                echo_big_own(c);
            else
                echo_big(c);
            break;
        }
    }
    weft_close(c);
}

/* One per loop: each has its own SO_REUSEPORT listener on the same port,
 * and the kernel spreads the connections between them. */
static void server(void *arg)
{
    weft_sock *l, *c;
    int rc = weft_tcp_listen(&l, "127.0.0.1", port, 0, WEFT_REUSEPORT);
    (void)arg;
    if (rc < 0) {
        fprintf(stderr, "echo_server: listen: %s\n", weft_strerror(rc));
        exit(1);
    }
    own_buffers = strcmp(weft_backend(), "io_uring") == 0;
    weft_co_opts opts = {.stack_size = BIG_BUF + 64 * 1024}; /* room for echo_big */
    while ((rc = weft_tcp_accept(l, &c, -1)) >= 0)
        if (weft_go_opts(serve, c, &opts) < 0)
            weft_close(c);
    fprintf(stderr, "echo_server: accept: %s\n", weft_strerror(rc));
    exit(1);
}

static int start(void *arg)
{
    (void)arg;
    for (int i = 0; i < weft_loop_count(); i++)
        if (weft_go_on(i, server, NULL) < 0)
            return 1;
    return 0; /* weft_main goes on while the servers run */
}

int main(int argc, char **argv)
{
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    port = argc > 1 ? atoi(argv[1]) : 0;
    if (port <= 0 || port > 65535 || threads < 1 || threads > 64) {
        fprintf(stderr, "usage: echo_server PORT [THREADS]\n");
        return 2;
    }
    struct rlimit r; /* one descriptor per connection */
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
    weft_config cfg = {.threads = threads}; /* a loop per thread */
    return weft_main(start, NULL, &cfg);
}
