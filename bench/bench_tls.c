/*
 * bench_tls.c - a TLS load client: handshakes per second (full or
 * resumed) against any TLS server, or bulk throughput through a TLS echo
 * server.  One loop, N coroutines, for a fixed number of seconds.
 *
 * usage: bench_tls full|resumed|bulk HOST PORT [--conns N] [--secs S]
 *                  [--ca FILE | --insecure] [--name SNI] [--size BYTES]
 *                  [--req] [--tls12]
 *   full     each coroutine loops: connect, handshake, close (close_notify);
 *            no session is ever offered, every handshake is a full one
 *   resumed  the same, offering a session the context keeps for HOST:PORT
 *            (one priming connection first, which also reads a reply so a
 *            TLS 1.3 ticket is in hand).  TLS 1.3 tickets are single-use
 *            and come after the handshake: without --req only the
 *            tickets that arrived before each close feed the next ones
 *   --req    after the handshake, send "GET / HTTP/1.0" and read one reply
 *            (an HTTP server answers it, an echo server echoes it): this
 *            also takes in the TLS 1.3 tickets
 *   --tls12  offer TLS 1.2 only (its sessions may be resumed again and
 *            again)
 *   bulk     N connections; on each, one coroutine sends SIZE-byte writes
 *            while another reads the echo; counts bytes echoed back
 * Prints one line of key=value pairs: mode, conns, secs, ops (handshakes,
 * or bytes for bulk), rate (per second; MB/s for bulk), resumed (how many
 * handshakes were resumptions), errors, and first_error.
 *
 * Full mode turns the client context's session cache off through the TLS
 * layer's internals (this program sees them, as every benchmark here
 * does): the public API has no switch for that.
 */
#include "tls/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { FULL, RESUMED, BULK };

static struct {
    int mode;
    const char *host, *name;
    int port;
    int conns;
    double secs;
    size_t size;
    weft_tls_ctx *ctx;
    int64_t start_ms, end_ms, stop_ms;
    long ops, resumed, errors;
    int first_error;
    unsigned long long bytes;
    int running;
    bool req;
} B = {.conns = 16, .secs = 3, .size = 16384};

static const char request[] = "GET / HTTP/1.0\r\n\r\n";

static void error(int rc)
{
    if (!B.errors++)
        B.first_error = rc;
}

/* One connection: TCP connect, then the handshake, SNI as asked. */
static int connect_tls(weft_sock **out)
{
    if (!B.name)
        return weft_tls_connect(out, B.host, B.port, B.ctx, 10000);
    weft_sock *s;
    int rc = weft_tcp_connect(&s, B.host, B.port, 10000);
    if (rc < 0)
        return rc;
    if ((rc = weft_tls_wrap(out, s, B.ctx, B.name, 10000)) < 0)
        weft_close(s);
    return rc;
}

static void handshaker(void *unused)
{
    (void)unused;
    while (weft_now() < B.end_ms) {
        weft_sock *s;
        int rc = connect_tls(&s);
        if (rc < 0) {
            error(rc);
            weft_sleep(1);
            continue;
        }
        B.resumed += weft_tls_resumed(s) == 1;
        if (B.req) {
            char buf[4096];
            ssize_t n = weft_send(s, request, sizeof request - 1, 10000);
            if (n > 0)
                n = weft_recv(s, buf, sizeof buf, 10000);
            if (n <= 0) {
                error(n ? (int)n : -ECONNRESET);
                weft_close(s);
                continue;
            }
        }
        B.ops++;
        weft_close(s);
    }
    B.running--;
}

typedef struct pipe_conn {
    weft_sock *s;
    bool done;
} pipe_conn;

static void bulk_writer(void *arg)
{
    pipe_conn *c = arg;
    char *buf = calloc(1, B.size);
    while (buf && weft_now() < B.end_ms) {
        ssize_t rc = weft_send(c->s, buf, B.size, 10000);
        if (rc < 0) {
            error((int)rc);
            break;
        }
    }
    free(buf);
    c->done = true;
}

static void bulk_conn(void *unused)
{
    (void)unused;
    pipe_conn c = {0};
    int rc = connect_tls(&c.s);
    if (rc < 0) {
        error(rc);
        B.running--;
        return;
    }
    weft_sock_set_nodelay(c.s, 1);
    int64_t w = weft_go(bulk_writer, &c);
    char *buf = malloc(65536);
    while (buf && weft_now() < B.end_ms) {
        ssize_t n = weft_recv(c.s, buf, 65536, 10000);
        if (n <= 0) {
            error(n ? (int)n : -ECONNRESET);
            break;
        }
        B.bytes += (unsigned long long)n;
    }
    free(buf);
    weft_join(w, -1);
    weft_reset(c.s); /* no close_notify dance with bytes still in flight */
    B.running--;
}

/* Resumed mode: one connection that reads a reply, so the context holds a
 * session (a TLS 1.3 ticket comes after the handshake). */
static int prime(void)
{
    weft_sock *s;
    int rc = connect_tls(&s);
    if (rc < 0)
        return rc;
    char buf[4096];
    rc = (int)weft_send(s, request, sizeof request - 1, 5000);
    if (rc > 0)
        rc = (int)weft_recv(s, buf, sizeof buf, 5000);
    weft_close(s);
    return rc < 0 ? rc : 0;
}

static int run(void *unused)
{
    (void)unused;
    if (B.mode == RESUMED) {
        int rc = prime();
        if (rc < 0) {
            fprintf(stderr, "bench_tls: priming connection: %s\n", weft_strerror(rc));
            return 1;
        }
    }
    B.start_ms = weft_now();
    B.end_ms = B.start_ms + (int64_t)(B.secs * 1000);
    weft_co_opts o = {.stack_size = 128 * 1024};
    for (int i = 0; i < B.conns; i++) {
        B.running++;
        weft_go_opts(B.mode == BULK ? bulk_conn : handshaker, NULL, &o);
    }
    while (B.running > 0)
        weft_sleep(5);
    B.stop_ms = weft_now();
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_tls full|resumed|bulk HOST PORT [--conns N] [--secs S]\n"
                    "                 [--ca FILE | --insecure] [--name SNI] [--size BYTES]\n"
                    "                 [--req] [--tls12]\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return usage();
    B.mode = strcmp(argv[1], "full") == 0      ? FULL
             : strcmp(argv[1], "resumed") == 0 ? RESUMED
             : strcmp(argv[1], "bulk") == 0    ? BULK
                                               : -1;
    B.host = argv[2];
    B.port = atoi(argv[3]);
    weft_tls_opts o = {0};
    for (int i = 4; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--insecure") == 0) {
            o.no_verify = 1;
            continue;
        }
        if (strcmp(argv[i], "--req") == 0) {
            B.req = true;
            continue;
        }
        if (strcmp(argv[i], "--tls12") == 0) {
            o.max_version = 0x0303;
            continue;
        }
        if (!v)
            return usage();
        if (strcmp(argv[i], "--conns") == 0)
            B.conns = atoi(v);
        else if (strcmp(argv[i], "--secs") == 0)
            B.secs = atof(v);
        else if (strcmp(argv[i], "--ca") == 0)
            o.ca_file = v;
        else if (strcmp(argv[i], "--name") == 0)
            B.name = v;
        else if (strcmp(argv[i], "--size") == 0)
            B.size = (size_t)atol(v);
        else
            return usage();
        i++;
    }
    if (B.mode < 0 || B.port <= 0 || B.conns <= 0 || B.secs <= 0 || B.size == 0)
        return usage();
    int rc = weft_tls_ctx_new(&B.ctx, WEFT_TLS_CLIENT, &o);
    if (rc < 0) {
        fprintf(stderr, "bench_tls: context: %s\n", weft_strerror(rc));
        return 1;
    }
    if (B.mode == FULL)
        SSL_CTX_set_session_cache_mode(B.ctx->ssl, SSL_SESS_CACHE_OFF);
    rc = weft_main(run, NULL, NULL);
    /* From the first connection to the last one's end (priming excluded). */
    double secs = (double)(B.stop_ms - B.start_ms) / 1000.0;
    if (secs <= 0)
        secs = 0.001;
    if (B.mode == BULK)
        printf("mode=bulk conns=%d secs=%.2f size=%zu ops=%llu rate=%.1f errors=%ld "
               "first_error=%s\n",
               B.conns, secs, B.size, B.bytes, (double)B.bytes / secs / 1e6, B.errors,
               B.errors ? weft_err_name(B.first_error) : "none");
    else
        printf("mode=%s conns=%d secs=%.2f ops=%ld rate=%.0f resumed=%ld errors=%ld "
               "first_error=%s\n",
               argv[1], B.conns, secs, B.ops, (double)B.ops / secs, B.resumed, B.errors,
               B.errors ? weft_err_name(B.first_error) : "none");
    weft_tls_ctx_free(B.ctx);
    return rc;
}
