/*
 * test_tls_many.c - 1,000 TLS connections open at once in one process
 * (both ends in one loop): every handshake completes, every echo comes
 * back exact, and closing them all gives every descriptor back.
 */
#include "tls_certs.h"

#include <criterion/criterion.h>
#include <openssl/err.h>
#include <stdlib.h>

#define CONNS 1000
#define MSG 1024

TestSuite(tls_many, .init = tls_suite_setup, .fini = tls_suite_teardown);

typedef struct many {
    weft_tls_ctx *sctx, *cctx;
    weft_sock *l;
    int port;
    int srv_ok, srv_fail, srv_clean_end;
    int cli_ok, cli_fail, first_fail;
    int open_now, open_max, done;
    bool stop;
} many;

typedef struct conn_arg {
    many *m;
    weft_sock *c;
} conn_arg;

static void serve(void *arg)
{
    conn_arg *a = arg;
    many *m = a->m;
    weft_sock *t;
    int rc = weft_tls_wrap(&t, a->c, m->sctx, NULL, 20000);
    if (rc < 0) {
        m->srv_fail++;
        weft_close(a->c);
        free(a);
        return;
    }
    free(a);
    m->srv_ok++;
    char buf[MSG];
    ssize_t n;
    while ((n = weft_recv(t, buf, sizeof buf, 30000)) > 0)
        if (weft_send(t, buf, (size_t)n, 10000) != n)
            break;
    if (n == 0)
        m->srv_clean_end++;
    weft_close(t);
}

static void acceptor(void *arg)
{
    many *m = arg;
    while (!m->stop) {
        weft_sock *c;
        if (weft_tcp_accept(m->l, &c, 100) < 0)
            continue;
        conn_arg *a = malloc(sizeof *a);
        if (!a) {
            weft_close(c);
            continue;
        }
        a->m = m;
        a->c = c;
        weft_go(serve, a);
    }
}

static void client(void *arg)
{
    many *m = arg;
    weft_sock *s;
    int rc = weft_tls_connect(&s, "127.0.0.1", m->port, m->cctx, 20000);
    if (rc < 0) {
        if (!m->first_fail)
            m->first_fail = rc;
        m->cli_fail++;
        m->done++;
        return;
    }
    if (++m->open_now > m->open_max)
        m->open_max = m->open_now;
    unsigned char out[MSG], in[MSG];
    fill_pattern(out, MSG, (uint64_t)weft_self());
    bool ok = weft_send(s, out, MSG, 10000) == MSG && weft_recvn(s, in, MSG, 10000) == MSG &&
              memcmp(in, out, MSG) == 0;
    /* Hold it until all are open. */
    for (int i = 0; i < 3000 && m->open_max < CONNS && !m->stop; i++)
        weft_sleep(10);
    if (ok)
        m->cli_ok++;
    else
        m->cli_fail++;
    m->open_now--;
    weft_close(s);
    m->done++;
}

static int many_main(void *arg)
{
    many *m = arg;
    m->port = listen_any(&m->l, "127.0.0.1");
    if (m->port < 0)
        return m->port;
    int64_t acc = weft_go(acceptor, m);
    for (int i = 0; i < CONNS; i++)
        weft_go(client, m);
    while (m->done < CONNS)
        weft_sleep(10);
    /* The servers see each close_notify. */
    for (int i = 0; i < 500 && m->srv_clean_end + m->srv_fail < m->srv_ok + m->srv_fail; i++)
        weft_sleep(10);
    m->stop = true;
    weft_join(acc, -1);
    weft_close(m->l);
    return 0;
}

Test(tls_many, thousand_connections_at_once, .timeout = 360)
{
    if (raise_nofile() < 2 * CONNS + 64)
        cr_skip_test("RLIMIT_NOFILE too low for %d connections", CONNS);
    int fds = count_fds();
    many m = {0};
    cr_assert_eq(ctx_server(&m.sctx, "srv", NULL), 0);
    cr_assert_eq(ctx_client(&m.cctx, NULL), 0);
    int64_t t0 = mono_ms();
    cr_assert_eq(weft_main(many_main, &m, NULL), 0);
    cr_log_info("%d TLS connections in %lld ms", CONNS, (long long)(mono_ms() - t0));
    weft_tls_ctx_free(m.sctx);
    weft_tls_ctx_free(m.cctx);
    cr_assert_eq(m.cli_fail, 0, "%d clients failed, first: %s", m.cli_fail,
                 weft_err_name(m.first_fail));
    cr_assert_eq(m.cli_ok, CONNS);
    cr_assert_eq(m.srv_ok, CONNS);
    cr_assert_eq(m.open_max, CONNS, "only %d open at once", m.open_max);
    cr_assert_eq(m.srv_clean_end, CONNS, "close_notify seen by %d", m.srv_clean_end);
    cr_assert_eq(count_fds(), fds);
    cr_assert_eq(ERR_peek_error(), 0ul);
}
