/*
 * tls_echo_server.c - a TLS echo server: one coroutine per connection,
 * which runs its own handshake and then echoes with plain recv / send.
 *
 * usage: tls_echo_server PORT CERT KEY [THREADS]
 * Listens on 127.0.0.1:PORT until killed, with the PEM certificate chain
 * CERT and key KEY.  Each of THREADS threads runs its own loop with its own
 * SO_REUSEPORT listener; they share one TLS context (and so its session
 * tickets: a client resumes whichever thread it lands on).
 */
#include <weft.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#define HANDSHAKE_MS 10000 /* a client that stalls its handshake is dropped */
#define IDLE_MS 60000

static int port;
static weft_tls_ctx *ctx;

/* After the handshake: a record's worth of buffer, in its own frame. */
__attribute__((noinline)) static void echo(weft_sock *s)
{
    char buf[16384];
    ssize_t n;
    while ((n = weft_recv(s, buf, sizeof buf, IDLE_MS)) > 0)
        if (weft_send(s, buf, (size_t)n, IDLE_MS) < 0)
            break;
}

static void serve(void *arg)
{
    weft_sock *c = arg, *s;
    weft_sock_set_nodelay(c, 1);
    /* The handshake runs here, not in the accept loop: a slow client
     * holds up only its own coroutine. */
    if (weft_tls_wrap(&s, c, ctx, NULL, HANDSHAKE_MS) < 0) {
        weft_close(c);
        return;
    }
    echo(s);
    weft_close(s); /* sends close_notify */
}

static int server(void *arg)
{
    weft_sock *l, *c;
    int rc = weft_tcp_listen(&l, "127.0.0.1", port, 0, WEFT_REUSEPORT);
    (void)arg;
    if (rc < 0) {
        fprintf(stderr, "tls_echo_server: listen: %s\n", weft_strerror(rc));
        exit(1);
    }
    weft_co_opts opts = {.stack_size = 128 * 1024}; /* OpenSSL, then the echo's buffer */
    while ((rc = weft_tcp_accept(l, &c, -1)) >= 0)
        if (weft_go_opts(serve, c, &opts) < 0)
            weft_close(c);
    fprintf(stderr, "tls_echo_server: accept: %s\n", weft_strerror(rc));
    weft_close(l);
    return 1;
}

static void *thread_main(void *arg)
{
    return (void *)(intptr_t)weft_main(server, arg, NULL);
}

int main(int argc, char **argv)
{
    int threads = argc > 4 ? atoi(argv[4]) : 1;
    port = argc > 3 ? atoi(argv[1]) : 0;
    if (port <= 0 || port > 65535 || threads < 1 || threads > 64) {
        fprintf(stderr, "usage: tls_echo_server PORT CERT KEY [THREADS]\n");
        return 2;
    }
    weft_tls_opts o = {.cert_file = argv[2], .key_file = argv[3]};
    int rc = weft_tls_ctx_new(&ctx, WEFT_TLS_SERVER, &o);
    if (rc < 0) {
        const char *why = weft_tls_errmsg(NULL);
        fprintf(stderr, "tls_echo_server: %s: %s%s%s\n", argv[2], weft_strerror(rc),
                why ? ": " : "", why ? why : "");
        return 1;
    }
    struct rlimit r; /* one descriptor per connection */
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
    pthread_t t;
    for (int i = 1; i < threads; i++)
        pthread_create(&t, NULL, thread_main, NULL);
    return (int)(intptr_t)thread_main(NULL);
}
