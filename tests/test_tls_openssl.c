/*
 * test_tls_openssl.c - weft against OpenSSL's own tools on loopback:
 *   - weft's client against `openssl s_server` with TLS 1.2 and TLS 1.3
 *     forced, ALPN, and 16 MiB each way through its line-reversing echo;
 *   - close_notify sent to s_server (it says DONE, not ERROR), and a
 *     killed s_server seen as truncation;
 *   - session resumption against s_server -www (it says Reused);
 *   - `openssl s_client` against weft's server: SNI picks the certificate
 *     (the subject s_client prints), close_notify both ways, a client
 *     certificate, TLS 1.2 forced, and no protocol in common.
 * Every child is killed and reaped by the fixture, and dies with the test
 * process if that goes first.
 */
#include "tls_certs.h"

#include <criterion/criterion.h>
#include <openssl/err.h>
#include <stdlib.h>

static void setup(void)
{
    cr_assert(certs_load(), "no certificates: see the runner's output");
    signal(SIGPIPE, SIG_IGN); /* writes to a child's stdin after it exited */
}

static void teardown(void)
{
    kids_reap();
}

TestSuite(tls_openssl, .init = setup, .fini = teardown);

/* Starts `openssl s_server` on a free port with srv.pem and the extra
 * arguments; its output goes to out (a file in the certificate
 * directory).  Its stdin is a pipe whose end we keep in *in until the
 * test is over (at stdin's end it would stop).  Returns the port. */
static int s_server(pid_t *pid, int *in, const char *out, const char *const *extra)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    const char *argv[32] = {"openssl", "s_server",      "-accept", "127.0.0.1:0",
                            "-cert",   cert("srv.pem"), "-key",    cert("srv.key")};
    int n = 8;
    for (int i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    unlink(out); /* another test's ACCEPT line must not be read as this one's */
    *pid = kid_start((char *const *)argv, out, p[0]);
    close(p[0]);
    *in = p[1];
    cr_assert_gt(*pid, 0, "fork");
    int port = s_server_port(out, 10000);
    cr_assert_gt(port, 0, "s_server did not start: %s", out);
    return port;
}

/* ---- weft's client against s_server -rev: ALPN, versions, 16 MiB ------------------------ */

#define LINE 1024 /* bytes per line, the newline included */
#define REV_BYTES (16 * 1024 * 1024)

typedef struct rev_run {
    weft_tls_ctx *cctx;
    int port;
    int rc;
    char alpn[32];
    ssize_t send_rc;
    size_t got;
    ssize_t recv_rc;
    bool same;
    char *data;
    weft_sock *s;
} rev_run;

static void rev_writer(void *arg)
{
    rev_run *r = arg;
    r->send_rc = weft_send(r->s, r->data, REV_BYTES, 20000);
}

static int rev_main(void *arg)
{
    rev_run *r = arg;
    r->rc = weft_tls_connect(&r->s, "127.0.0.1", r->port, r->cctx, 5000);
    if (r->rc < 0)
        return 0;
    const char *a = weft_tls_alpn(r->s);
    snprintf(r->alpn, sizeof r->alpn, "%s", a ? a : "");
    int64_t w = weft_go(rev_writer, r);
    /* Each line comes back reversed (without its newline), then "\n". */
    char *line = malloc(LINE);
    r->same = line != NULL;
    while (line && r->got < REV_BYTES) {
        ssize_t n = weft_recvn(r->s, line, LINE, 20000);
        if (n != LINE) {
            r->recv_rc = n;
            break;
        }
        const char *src = r->data + r->got;
        for (int i = 0; i < LINE - 1; i++)
            if (line[i] != src[LINE - 2 - i])
                r->same = false;
        if (line[LINE - 1] != '\n')
            r->same = false;
        r->got += LINE;
    }
    free(line);
    weft_join(w, -1);
    weft_close(r->s);
    return 0;
}

static void against_rev(const char *version)
{
    int fds = count_fds();
    pid_t pid;
    const char *out = cert("rev.out");
    const char *extra[] = {version, "-rev", "-alpn", "http/1.1,h2", "-naccept", "1", NULL};
    rev_run r = {0};
    int in;
    r.port = s_server(&pid, &in, out, extra);
    r.data = malloc(REV_BYTES);
    cr_assert_not_null(r.data);
    for (size_t i = 0; i < REV_BYTES; i++)
        r.data[i] = (i + 1) % LINE == 0 ? '\n' : (char)('!' + (i * 7 + i / LINE) % 90);
    weft_tls_opts o = {.alpn = "h2,http/1.1"};
    cr_assert_eq(ctx_client(&r.cctx, &o), 0);
    cr_assert_eq(weft_main(rev_main, &r, NULL), 0);
    weft_tls_ctx_free(r.cctx);
    free(r.data);
    cr_assert_eq(r.rc, 0, "connect: %s (%s)", weft_err_name(r.rc), weft_tls_errmsg(NULL));
    cr_assert_str_eq(r.alpn, "http/1.1", "s_server prefers its own first protocol");
    cr_assert_eq(r.send_rc, REV_BYTES, "send: %s", weft_err_name((int)r.send_rc));
    cr_assert_eq(r.got, (size_t)REV_BYTES, "recv: %s after %zu", weft_err_name((int)r.recv_rc),
                 r.got);
    cr_assert(r.same, "the reversed lines differ");
    const char *want =
        strcmp(version, "-tls1_2") == 0 ? "Protocol version: TLSv1.2" : "Protocol version: TLSv1.3";
    cr_assert(file_wait_for(out, want, 2000), "s_server did not say %s", want);
    cr_assert_neq(kid_wait(pid, 5000), -1, "s_server still running");
    close(in);
    cr_assert_eq(count_fds(), fds);
    cr_assert_eq(ERR_peek_error(), 0ul);
}

Test(tls_openssl, client_vs_s_server_tls12, .timeout = 180)
{
    against_rev("-tls1_2");
}

Test(tls_openssl, client_vs_s_server_tls13, .timeout = 180)
{
    against_rev("-tls1_3");
}

/* ---- close_notify to s_server, truncation from a killed one ------------------------------- */

typedef struct plain_run {
    weft_tls_ctx *cctx;
    int port;
    pid_t pid;
    int rc, rc2;
    ssize_t sent, cut;
    const char *out;
} plain_run;

static int plain_main(void *arg)
{
    plain_run *p = arg;
    weft_sock *s;
    p->rc = weft_tls_connect(&s, "127.0.0.1", p->port, p->cctx, 5000);
    if (p->rc < 0)
        return 0;
    p->sent = weft_send(s, "hello weft\n", 11, 2000);
    weft_close(s); /* close_notify */
    /* A second connection, then s_server dies without a word. */
    p->rc2 = weft_tls_connect(&s, "127.0.0.1", p->port, p->cctx, 5000);
    if (p->rc2 < 0)
        return 0;
    char buf[64];
    weft_recv(s, buf, sizeof buf, 200); /* takes in the session tickets, if any */
    kill(p->pid, SIGKILL);
    p->cut = weft_recv(s, buf, sizeof buf, 5000);
    weft_close(s);
    return 0;
}

Test(tls_openssl, close_notify_and_truncation_with_s_server, .timeout = 90)
{
    int fds = count_fds();
    plain_run p = {.out = cert("plain.out")};
    int in;
    p.port = s_server(&p.pid, &in, p.out, NULL);
    cr_assert_eq(ctx_client(&p.cctx, NULL), 0);
    cr_assert_eq(weft_main(plain_main, &p, NULL), 0);
    weft_tls_ctx_free(p.cctx);
    kid_wait(p.pid, 2000);
    close(in);
    cr_assert_eq(p.rc, 0, "connect: %s", weft_err_name(p.rc));
    cr_assert_eq(p.sent, 11);
    cr_assert(file_wait_for(p.out, "hello weft", 2000), "s_server did not get the data");
    char *text = slurp(p.out);
    cr_assert_not_null(text);
    bool done = strstr(text, "DONE") != NULL, error = strstr(text, "ERROR") != NULL;
    free(text);
    cr_assert(done && !error, "s_server did not see a clean close_notify: %s", p.out);
    cr_assert_eq(p.rc2, 0);
    cr_assert_eq(p.cut, WEFT_ETLS_TRUNCATED, "killed peer: %s", weft_err_name((int)p.cut));
    cr_assert_eq(count_fds(), fds);
}

/* ---- resumption against s_server -www
 * ------------------------------------------------------------ */

typedef struct www_run {
    weft_tls_ctx *cctx;
    int port;
    int rc[2], resumed[2];
    char page[2][8192];
} www_run;

static int www_main(void *arg)
{
    www_run *w = arg;
    for (int i = 0; i < 2; i++) {
        weft_sock *s;
        w->rc[i] = weft_tls_connect(&s, "127.0.0.1", w->port, w->cctx, 5000);
        if (w->rc[i] < 0)
            return 0;
        w->resumed[i] = weft_tls_resumed(s);
        static const char req[] = "GET / HTTP/1.0\r\n\r\n";
        weft_send(s, req, sizeof req - 1, 2000);
        size_t got = 0;
        ssize_t n;
        while (got < sizeof w->page[i] - 1 &&
               (n = weft_recv(s, w->page[i] + got, sizeof w->page[i] - 1 - got, 3000)) > 0)
            got += (size_t)n;
        w->page[i][got] = '\0';
        weft_close(s);
    }
    return 0;
}

static void resume_www(const char *version, const char *name)
{
    int fds = count_fds();
    pid_t pid;
    const char *extra[] = {"-www", "-naccept", "2", version, NULL};
    www_run w = {0};
    int in;
    w.port = s_server(&pid, &in, cert("www.out"), extra);
    cr_assert_eq(ctx_client(&w.cctx, NULL), 0);
    cr_assert_eq(weft_main(www_main, &w, NULL), 0);
    weft_tls_ctx_free(w.cctx);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(w.rc[i], 0, "connect %d: %s", i, weft_err_name(w.rc[i]));
    char want[64];
    snprintf(want, sizeof want, "New, %s", name);
    cr_assert(strstr(w.page[0], want), "first page: %.400s", w.page[0]);
    snprintf(want, sizeof want, "Reused, %s", name);
    cr_assert(strstr(w.page[1], want), "second page: %.400s", w.page[1]);
    cr_assert_eq(w.resumed[0], 0);
    cr_assert_eq(w.resumed[1], 1);
    kid_wait(pid, 3000);
    close(in);
    cr_assert_eq(count_fds(), fds);
}

Test(tls_openssl, resumption_with_s_server_tls13, .timeout = 90)
{
    resume_www("-tls1_3", "TLSv1.3");
}

Test(tls_openssl, resumption_with_s_server_tls12, .timeout = 90)
{
    resume_www("-tls1_2", "TLSv1.2");
}

/* ---- s_client against weft's server
 * ----------------------------------------------------------------- */

typedef struct sc_case {
    const char *extra[8]; /* s_client's arguments after -connect and -CAfile */
    bool server_closes;   /* the server closes after the first echo */
    /* results */
    int wrap_rc;
    ssize_t end; /* the server's last receive: 0 = close_notify */
    char peer[128];
    char out[160];
    bool echoed;
} sc_case;

typedef struct sc_run {
    weft_tls_ctx *sctx;
    weft_sock *l;
    int port;
    sc_case *cases;
    int n;
    bool stop;
} sc_run;

typedef struct sc_srv {
    sc_run *r;
    sc_case *c;
    bool done;
} sc_srv;

static void sc_server(void *arg)
{
    sc_srv *x = arg;
    sc_case *c = x->c;
    weft_sock *raw, *s;
    c->wrap_rc = c->end = -999;
    if (weft_tcp_accept(x->r->l, &raw, 5000) < 0)
        goto out;
    c->wrap_rc = weft_tls_wrap(&s, raw, x->r->sctx, NULL, 5000);
    if (c->wrap_rc < 0) {
        weft_close(raw);
        goto out;
    }
    weft_tls_peer_subject(s, c->peer, sizeof c->peer);
    char buf[256];
    ssize_t n;
    while ((n = weft_recv(s, buf, sizeof buf, 5000)) > 0) {
        weft_send(s, buf, (size_t)n, 2000);
        if (c->server_closes)
            break;
    }
    c->end = n;
    weft_close(s);
out:
    x->done = true;
}

/* file_wait_for for a coroutine: the loop goes on meanwhile.  Once *over
 * is set (the server side is done) it waits one more second at most. */
static bool co_wait_for(const char *path, const char *needle, int ms, const bool *over)
{
    int grace = 1000;
    for (int waited = 0;; waited += 10) {
        char *s = slurp(path);
        bool found = s && strstr(s, needle);
        free(s);
        if (found)
            return true;
        if (waited >= ms || (*over && (grace -= 10) <= 0))
            return false;
        weft_sleep(10);
    }
}

static int sc_main(void *arg)
{
    sc_run *r = arg;
    for (int i = 0; i < r->n; i++) {
        sc_case *c = &r->cases[i];
        char name[32], port[48];
        snprintf(name, sizeof name, "sc%d.out", i);
        snprintf(c->out, sizeof c->out, "%s", cert(name));
        snprintf(port, sizeof port, "127.0.0.1:%d", r->port);
        const char *argv[24] = {"openssl", "s_client", "-connect", port, "-CAfile", cert("ca.pem")};
        int k = 6;
        for (int j = 0; c->extra[j]; j++)
            argv[k++] = c->extra[j];
        argv[k] = NULL;
        sc_srv x = {r, c, false};
        int64_t id = weft_go(sc_server, &x);
        int p[2];
        if (pipe(p) != 0)
            return -1;
        pid_t pid = kid_start((char *const *)argv, c->out, p[0]);
        close(p[0]);
        /* s_client sends the line once connected, and prints the echo. */
        bool wrote = write(p[1], "ping\n", 5) == 5;
        c->echoed = wrote && co_wait_for(c->out, "ping", 5000, &x.done);
        if (c->server_closes)
            co_wait_for(c->out, "closed", 2000, &(bool){false});
        close(p[1]); /* stdin's end: s_client sends close_notify and exits */
        weft_join(id, -1);
        for (int t = 0; t < 300 && kid_wait(pid, 0) == -1; t++)
            weft_sleep(10);
    }
    return 0;
}

/* Runs the cases against a server context; s_client's output is read by
 * the caller. */
static void run_sc(weft_tls_ctx *sctx, sc_case *cases, int n)
{
    int fds = count_fds();
    sc_run r = {.sctx = sctx, .cases = cases, .n = n};
    r.port = listen_any(&r.l, "127.0.0.1");
    cr_assert_gt(r.port, 0);
    cr_assert_eq(weft_main(sc_main, &r, NULL), 0);
    weft_close(r.l);
    weft_tls_ctx_free(sctx);
    cr_assert_eq(count_fds(), fds);
    cr_assert_eq(ERR_peek_error(), 0ul);
}

static bool out_has(const sc_case *c, const char *needle)
{
    char *s = slurp(c->out);
    bool yes = s && strstr(s, needle);
    free(s);
    return yes;
}

Test(tls_openssl, s_client_sni_picks_certificate, .timeout = 180)
{
    weft_tls_ctx *s;
    cr_assert_eq(ctx_server(&s, "srv", NULL), 0);
    cr_assert_eq(weft_tls_ctx_add_cert(s, cert("alt.pem"), cert("alt.key")), 0);
    sc_case c[3] = {
        {.extra = {"-servername", "alt.test", "-verify_return_error", NULL}},
        {.extra = {"-servername", "localhost", "-verify_return_error", NULL}},
        {.extra = {"-noservername", NULL}, .server_closes = true},
    };
    run_sc(s, c, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(c[i].wrap_rc, 0, "case %d: %s", i, weft_err_name(c[i].wrap_rc));
        cr_assert(c[i].echoed, "case %d: no echo in %s", i, c[i].out);
    }
    cr_assert(out_has(&c[0], "subject=CN = alt.test"), "see %s", c[0].out);
    cr_assert(out_has(&c[0], "Verify return code: 0 (ok)"), "see %s", c[0].out);
    cr_assert(out_has(&c[1], "subject=CN = localhost"), "see %s", c[1].out);
    cr_assert(out_has(&c[1], "Verify return code: 0 (ok)"), "see %s", c[1].out);
    cr_assert(out_has(&c[2], "subject=CN = localhost"), "no SNI: the default; see %s", c[2].out);
    /* s_client's close_notify, at its stdin's end. */
    cr_assert_eq(c[0].end, 0, "server's end: %s", weft_err_name((int)c[0].end));
    cr_assert_eq(c[1].end, 0, "server's end: %s", weft_err_name((int)c[1].end));
    /* Ours: s_client reports the server's close_notify as "closed". */
    cr_assert(out_has(&c[2], "closed"), "s_client did not see close_notify: %s", c[2].out);
}

Test(tls_openssl, s_client_certificate, .timeout = 180)
{
    weft_tls_ctx *s;
    weft_tls_opts o = {.verify_peer = 1};
    o.ca_file = cert("ca.pem");
    cr_assert_eq(ctx_server(&s, "srv", &o), 0);
    sc_case c[2] = {
        {.extra = {"-cert", NULL, "-key", NULL, NULL}},
        {.extra = {NULL}},
    };
    c[0].extra[1] = cert("client.pem");
    c[0].extra[3] = cert("client.key");
    run_sc(s, c, 2);
    cr_assert_eq(c[0].wrap_rc, 0, "%s", weft_err_name(c[0].wrap_rc));
    cr_assert_str_eq(c[0].peer, "CN=weft client");
    cr_assert(c[0].echoed);
    cr_assert_eq(c[1].wrap_rc, WEFT_ETLS_HANDSHAKE, "no client certificate: %s",
                 weft_err_name(c[1].wrap_rc));
}

Test(tls_openssl, s_client_versions, .timeout = 180)
{
    weft_tls_ctx *s;
    cr_assert_eq(ctx_server(&s, "srv", NULL), 0);
    sc_case c[1] = {{.extra = {"-tls1_2", NULL}}};
    run_sc(s, c, 1);
    cr_assert_eq(c[0].wrap_rc, 0, "%s", weft_err_name(c[0].wrap_rc));
    cr_assert(out_has(&c[0], "TLSv1.2"), "see %s", c[0].out);
    cr_assert(c[0].echoed);

    weft_tls_opts o = {.min_version = 0x0304};
    cr_assert_eq(ctx_server(&s, "srv", &o), 0);
    sc_case d[1] = {{.extra = {"-tls1_2", NULL}}};
    run_sc(s, d, 1);
    cr_assert_eq(d[0].wrap_rc, WEFT_ETLS_HANDSHAKE, "TLS 1.2 client, 1.3 server: %s",
                 weft_err_name(d[0].wrap_rc));
}
