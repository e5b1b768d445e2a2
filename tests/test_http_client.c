/*
 * test_http_client.c - the HTTP/1.1 client (weft/http.h) against weft's
 * own server and against scripted servers on loopback that answer with
 * exactly the bytes a case needs: GET, POST with bodies given whole and
 * streamed (length and chunked), chunked responses, HEAD, 204, 1xx skipped,
 * keep-alive reuse, Connection: close; the retry rule (a request that met
 * the close of a reused connection is sent again only when that is safe);
 * redirects (relative Locations, 303 and 307 semantics, credentials
 * dropped for another host, loops, the limit); malformed, oversized and
 * cut responses; the exchange's deadline; bad URLs and header injection;
 * https verified against the test CA (and refused without it).
 *
 * Everything runs in one loop; results are recorded as they come and
 * asserted on the main stack once weft_main has returned.
 */
#include "helpers.h"
#include "tls_certs.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T_MS 10000 /* a hang guard only */

static char failmsg[8192];
static int failed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond) && !failed) {                                                                  \
            failed = 1;                                                                            \
            int n_ = snprintf(failmsg, sizeof failmsg, "line %d: %s: ", __LINE__, #cond);          \
            snprintf(failmsg + n_, sizeof failmsg - (size_t)n_, __VA_ARGS__);                      \
        }                                                                                          \
    } while (0)

/* ---- weft's server, answering by path ------------------------------------------------ */

static int hits;         /* requests the handler ran */
static char seen[4096];  /* the last request, as the handler saw it */

static void handler(weft_http_req *rq, weft_http_resp *w, void *arg)
{
    (void)arg;
    hits++;
    int n = snprintf(seen, sizeof seen, "%.*s %.*s\n", (int)rq->method.n, rq->method.p,
                     (int)rq->target.n, rq->target.p);
    for (size_t i = 0; i < rq->nheaders && n < (int)sizeof seen - 1; i++)
        n += snprintf(seen + n, sizeof seen - (size_t)n, "%.*s: %.*s\n",
                      (int)rq->headers[i].name.n, rq->headers[i].name.p,
                      (int)rq->headers[i].value.n, rq->headers[i].value.p);
    if (weft_http_str_eq(rq->path, "/echo")) { /* the body back, whole */
        void *b;
        ssize_t len = weft_http_req_body(rq, &b, T_MS);
        if (len < 0) {
            weft_http_resp_send(w, 400, "bad body\n", 9, T_MS);
            return;
        }
        weft_http_resp_send(w, 200, b, (size_t)len, T_MS);
        free(b);
    } else if (weft_http_str_eq(rq->path, "/chunks")) { /* 100 chunks of "0123456789" */
        weft_http_resp_start(w, 200, -1);
        for (int i = 0; i < 100; i++)
            weft_http_resp_write(w, "0123456789", 10, T_MS);
        weft_http_resp_end(w, T_MS);
    } else if (weft_http_str_eq(rq->path, "/empty")) {
        weft_http_resp_send(w, 204, NULL, 0, T_MS);
    } else if (weft_http_str_eq(rq->path, "/close")) {
        weft_http_resp_header(w, "Connection", "close");
        weft_http_resp_send(w, 200, "bye\n", 4, T_MS);
    } else if (rq->path.n > 3 && memcmp(rq->path.p, "/r/", 3) == 0) {
        /* /r/CODE/LOCATION: a redirect with that code, and the rest of the
         * path (and the query) as Location: "/r/301//a" says "/a" */
        char loc[512];
        int code = atoi(rq->path.p + 3);
        const char *l = memchr(rq->path.p + 3, '/', rq->path.n - 3);
        snprintf(loc, sizeof loc, "%.*s%s%.*s", (int)(rq->path.p + rq->path.n - (l + 1)), l + 1,
                 rq->query.n ? "?" : "", (int)rq->query.n, rq->query.p);
        weft_http_resp_header(w, "Location", loc);
        weft_http_resp_send(w, code, "moved\n", 6, T_MS);
    } else if (weft_http_str_eq(rq->path, "/loop")) {
        weft_http_resp_header(w, "Location", "/loop");
        weft_http_resp_send(w, 302, NULL, 0, T_MS);
    } else if (weft_http_str_eq(rq->path, "/slow")) {
        weft_sleep(60000);
        weft_http_resp_send(w, 200, "late\n", 5, T_MS);
    } else if (weft_http_str_eq(rq->path, "/trickle")) { /* half the body, then a pause */
        weft_http_resp_start(w, 200, 10);
        weft_http_resp_write(w, "12345", 5, T_MS);
        weft_sleep(60000);
        weft_http_resp_write(w, "67890", 5, T_MS);
    } else if (weft_http_str_eq(rq->path, "/big")) {
        static char big[200000];
        memset(big, 'b', sizeof big);
        weft_http_resp_send(w, 200, big, sizeof big, T_MS);
    } else {
        char b[600];
        int k = snprintf(b, sizeof b, "%.*s %.*s", (int)rq->method.n, rq->method.p,
                         (int)rq->target.n, rq->target.p);
        weft_http_resp_send(w, 200, b, (size_t)k, T_MS);
    }
}

/* ---- scripted servers ------------------------------------------------------------------ */

/* A server that answers the n-th request it reads (on any connection) with
 * script[n]: the bytes to send, then what to do.  Requests are read up to
 * their head's end (and a Content-Length body). */
enum { S_KEEP, S_CLOSE, S_RESET, S_SILENT };
typedef struct step {
    const char *bytes;
    int then;
} step;

typedef struct script {
    weft_sock *l;
    int port;
    const step *steps;
    int nsteps;
    int next;     /* the step the next request takes */
    int conns;    /* connections accepted */
    int requests; /* requests read whole */
} script;

static int read_request(weft_sock *s, char *buf, size_t cap, size_t *have)
{
    for (;;) {
        char *e = memmem(buf, *have, "\r\n\r\n", 4);
        if (e) {
            size_t hl = (size_t)(e + 4 - buf);
            size_t cl = 0;
            char *v = strcasestr(buf, "\r\nContent-Length:");
            if (v && v < e)
                cl = strtoul(v + 17, NULL, 10);
            while (*have < hl + cl) {
                ssize_t k = weft_recv(s, buf + *have, cap - *have, T_MS);
                if (k <= 0)
                    return -1;
                *have += (size_t)k;
            }
            memmove(buf, buf + hl + cl, *have - hl - cl);
            *have -= hl + cl;
            return 0;
        }
        if (*have == cap)
            return -1;
        ssize_t k = weft_recv(s, buf + *have, cap - *have, T_MS);
        if (k <= 0)
            return -1;
        *have += (size_t)k;
    }
}

static void script_conn(void *arg)
{
    script *sc = arg;
    weft_sock *s;
    if (weft_tcp_accept(sc->l, &s, T_MS) < 0)
        return;
    sc->conns++;
    weft_go(script_conn, sc); /* the next connection */
    static __thread char buf[65536];
    size_t have = 0;
    while (read_request(s, buf, sizeof buf, &have) == 0) {
        sc->requests++;
        if (sc->next >= sc->nsteps)
            break;
        const step *st = &sc->steps[sc->next++];
        if (st->bytes && weft_send(s, st->bytes, strlen(st->bytes), T_MS) < 0)
            break;
        if (st->then == S_RESET) {
            weft_reset(s);
            return;
        }
        if (st->then == S_SILENT) {
            weft_sleep(T_MS);
            break;
        }
        if (st->then == S_CLOSE)
            break;
    }
    weft_close(s);
}

static void script_start(script *sc, const step *steps, int n)
{
    memset(sc, 0, sizeof *sc);
    sc->steps = steps;
    sc->nsteps = n;
    sc->port = listen_any(&sc->l, "127.0.0.1");
    weft_go(script_conn, sc);
}

/* ---- the harness --------------------------------------------------------------------- */

static int port;
static weft_http_client *cli;
static weft_http_client_opts copts;
static void (*body_fn)(void);

static bool tls_server; /* the server speaks TLS, with the test CA's srv.pem */

static int root(void *arg)
{
    (void)arg;
    weft_http_server *srv;
    weft_http_server_opts o = {.server = {.host = "127.0.0.1"}, .handler = handler};
    if (tls_server) {
        o.server.cert_file = cert("srv.pem");
        o.server.key_file = cert("srv.key");
    }
    int rc = weft_http_server_start(&srv, &o);
    CHECK(rc == 0, "server %d", rc);
    if (rc < 0)
        return 1;
    port = weft_http_server_port(srv);
    rc = weft_http_client_new(&cli, &copts);
    CHECK(rc == 0, "client %d", rc);
    if (rc == 0) {
        body_fn();
        weft_http_client_free(cli);
    }
    weft_http_server_drain(srv, 1000);
    weft_http_server_free(srv);
    return 0;
}

static void run(void (*fn)(void))
{
    body_fn = fn;
    cr_assert_eq(weft_main(root, NULL, NULL), 0);
    cr_assert(!failed, "%s", failmsg);
}

static void setup(void)
{
    failed = 0;
    failmsg[0] = 0;
    hits = 0;
    tls_server = false;
    certs_load();
    memset(&copts, 0, sizeof copts);
    weft_fault_clear();
}

TestSuite(http_client, .init = setup);

static char url_buf[512];

static const char *url(const char *path)
{
    snprintf(url_buf, sizeof url_buf, "http://127.0.0.1:%d%s", port, path);
    return url_buf;
}

/* A GET of u: status, and the body in *body (malloc'd, or NULL). */
static int get(const char *u, char **body, weft_http_response **keep)
{
    weft_http_response *r;
    if (body)
        *body = NULL;
    int rc = weft_http_do(cli, &(weft_http_request){.url = u, .timeout_ms = T_MS}, &r);
    if (rc < 0)
        return rc;
    void *b = NULL;
    ssize_t n = weft_http_response_body(r, &b, T_MS);
    int st = r->status;
    if (keep)
        *keep = r;
    else
        weft_http_response_free(r);
    if (body)
        *body = b;
    else
        free(b);
    return n < 0 ? (int)n : st;
}

/* ---- against weft's server ----------------------------------------------------------- */

static void c_get_keepalive(void)
{
    for (int i = 0; i < 10; i++) {
        weft_http_response *r;
        char *b;
        int st = get(url("/hello?x=1"), &b, &r);
        CHECK(st == 200, "status %d", st);
        if (st < 0)
            return;
        CHECK(b && strcmp(b, "GET /hello?x=1") == 0, "body %s", b ? b : "(null)");
        CHECK(r->reused == (i > 0), "request %d reused %d", i, r->reused);
        CHECK(r->content_length == 14 && !r->chunked, "length %lld", (long long)r->content_length);
        CHECK(weft_http_str_eq(weft_http_response_header(r, "content-length"), "14"), "field");
        CHECK(r->redirects == 0 && strcmp(r->url, url("/hello?x=1")) == 0, "url %s", r->url);
        weft_http_response_free(r);
        free(b);
    }
    CHECK(strstr(seen, "User-Agent: weft\n") && strstr(seen, "Host: 127.0.0.1:"), "%s", seen);
}

Test(http_client, get_keepalive, .timeout = 60)
{
    run(c_get_keepalive);
}

static void c_connection_close(void)
{
    const char *hdrs[] = {"Connection", "close", NULL};
    for (int i = 0; i < 3; i++) {
        weft_http_response *r;
        int rc = weft_http_do(cli, &(weft_http_request){.url = url("/a"), .headers = hdrs}, &r);
        CHECK(rc == 0, "do %d", rc);
        if (rc < 0)
            return;
        CHECK(!r->reused, "request %d was on a kept connection", i);
        weft_http_response_free(r);
    }
    /* the server closes: not kept either */
    char *b;
    CHECK(get(url("/close"), &b, NULL) == 200 && strcmp(b, "bye\n") == 0, "close");
    free(b);
    weft_http_response *r;
    int rc = weft_http_do(cli, &(weft_http_request){.url = url("/a")}, &r);
    CHECK(rc == 0 && !r->reused, "after /close: %d", rc);
    if (rc == 0)
        weft_http_response_free(r);
}

Test(http_client, connection_close, .timeout = 60)
{
    run(c_connection_close);
}

static const char *stream_src;
static size_t stream_off, stream_step;

static ssize_t stream_read(void *arg, void *buf, size_t n)
{
    (void)arg;
    size_t left = strlen(stream_src) - stream_off;
    size_t k = left < n ? left : n;
    if (k > stream_step)
        k = stream_step;
    memcpy(buf, stream_src + stream_off, k);
    stream_off += k;
    return (ssize_t)k;
}

static void c_bodies(void)
{
    /* whole */
    weft_http_response *r;
    const char *text = "the body, given whole";
    int rc = weft_http_do(cli,
                          &(weft_http_request){.method = "POST", .url = url("/echo"), .body = text,
                                               .body_len = strlen(text), .timeout_ms = T_MS},
                          &r);
    CHECK(rc == 0 && r->status == 200, "whole %d", rc);
    if (rc < 0)
        return;
    void *b;
    ssize_t n = weft_http_response_body(r, &b, T_MS);
    CHECK(n == (ssize_t)strlen(text) && memcmp(b, text, (size_t)n) == 0, "echo %zd", n);
    free(b);
    weft_http_response_free(r);
    /* streamed with a length, in pieces of 3 */
    stream_src = "streamed with a length";
    stream_off = 0, stream_step = 3;
    rc = weft_http_do(cli,
                      &(weft_http_request){.method = "PUT", .url = url("/echo"),
                                           .body_read = stream_read,
                                           .body_length = (int64_t)strlen(stream_src)},
                      &r);
    CHECK(rc == 0 && r->status == 200, "length %d", rc);
    if (rc < 0)
        return;
    n = weft_http_response_body(r, &b, T_MS);
    CHECK(n == (ssize_t)strlen(stream_src) && memcmp(b, stream_src, (size_t)n) == 0, "%zd", n);
    CHECK(strstr(seen, "Content-Length: 22\n") != NULL, "%s", seen);
    free(b);
    weft_http_response_free(r);
    /* streamed chunked */
    stream_src = "streamed in chunks, of unknown length";
    stream_off = 0, stream_step = 5;
    rc = weft_http_do(cli,
                      &(weft_http_request){.method = "POST", .url = url("/echo"),
                                           .body_read = stream_read, .body_length = -1},
                      &r);
    CHECK(rc == 0 && r->status == 200, "chunked %d", rc);
    if (rc < 0)
        return;
    n = weft_http_response_body(r, &b, T_MS);
    CHECK(n == (ssize_t)strlen(stream_src) && memcmp(b, stream_src, (size_t)n) == 0, "%zd", n);
    CHECK(strstr(seen, "Transfer-Encoding: chunked\n") != NULL, "%s", seen);
    free(b);
    weft_http_response_free(r);
    /* a streamed body shorter than it said: -EPROTO, the connection dropped */
    stream_src = "short";
    stream_off = 0, stream_step = 100;
    rc = weft_http_do(cli,
                      &(weft_http_request){.method = "POST", .url = url("/echo"),
                                           .body_read = stream_read, .body_length = 10},
                      &r);
    CHECK(rc == -EPROTO, "short %d", rc);
    /* an empty POST says Content-Length: 0 */
    rc = weft_http_do(cli, &(weft_http_request){.method = "POST", .url = url("/echo")}, &r);
    CHECK(rc == 0 && r->status == 200 && r->content_length == 0, "empty %d", rc);
    CHECK(strstr(seen, "Content-Length: 0\n") != NULL, "%s", seen);
    if (rc == 0)
        weft_http_response_free(r);
}

Test(http_client, bodies_whole_and_streamed, .timeout = 60)
{
    run(c_bodies);
}

static void c_chunked_head_204(void)
{
    weft_http_response *r;
    int rc = weft_http_do(cli, &(weft_http_request){.url = url("/chunks")}, &r);
    CHECK(rc == 0 && r->chunked && r->content_length == -1, "chunks %d", rc);
    if (rc < 0)
        return;
    char piece[7];
    size_t total = 0;
    ssize_t n;
    bool ok = true;
    while ((n = weft_http_response_read(r, piece, sizeof piece, T_MS)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            ok = ok && piece[i] == (char)('0' + (total + (size_t)i) % 10);
        total += (size_t)n;
    }
    CHECK(n == 0 && total == 1000 && ok, "read %zd total %zu ok %d", n, total, ok);
    CHECK(weft_http_response_read(r, piece, sizeof piece, T_MS) == 0, "again");
    weft_http_response_free(r);
    rc = weft_http_do(cli, &(weft_http_request){.method = "HEAD", .url = url("/big")}, &r);
    CHECK(rc == 0 && r->status == 200 && r->content_length == 0, "head %d", rc);
    CHECK(weft_http_str_eq(weft_http_response_header(r, "Content-Length"), "200000"), "cl");
    CHECK(rc != 0 || r->reused, "head not on the kept connection");
    if (rc == 0)
        weft_http_response_free(r);
    rc = weft_http_do(cli, &(weft_http_request){.url = url("/empty")}, &r);
    CHECK(rc == 0 && r->status == 204 && r->reused, "204 %d", rc);
    if (rc == 0) {
        CHECK(weft_http_response_read(r, piece, sizeof piece, T_MS) == 0, "204 body");
        weft_http_response_free(r);
    }
    /* the kept connection still works after all of them */
    rc = weft_http_do(cli, &(weft_http_request){.url = url("/x")}, &r);
    CHECK(rc == 0 && r->status == 200 && r->reused, "after %d", rc);
    if (rc == 0)
        weft_http_response_free(r);
}

Test(http_client, chunked_head_204, .timeout = 60)
{
    run(c_chunked_head_204);
}

static void c_body_unread(void)
{
    weft_http_response *r;
    int rc = weft_http_do(cli, &(weft_http_request){.url = url("/big")}, &r);
    CHECK(rc == 0, "%d", rc);
    if (rc < 0)
        return;
    weft_http_response_free(r); /* 200000 bytes not read: closed */
    rc = weft_http_do(cli, &(weft_http_request){.url = url("/x")}, &r);
    CHECK(rc == 0 && !r->reused, "%d", rc);
    if (rc == 0)
        weft_http_response_free(r);
    /* max_body */
    weft_http_client *small;
    weft_http_client_new(&small, &(weft_http_client_opts){.max_body = 1000});
    rc = weft_http_do(small, &(weft_http_request){.url = url("/big")}, &r);
    CHECK(rc == 0, "%d", rc);
    if (rc == 0) {
        void *b = (void *)1;
        CHECK(weft_http_response_body(r, &b, T_MS) == -EFBIG && !b, "EFBIG");
        weft_http_response_free(r);
    }
    rc = weft_http_do(small, &(weft_http_request){.url = url("/chunks")}, &r);
    if (rc == 0) {
        void *b;
        CHECK(weft_http_response_body(r, &b, T_MS) == 1000, "exactly the limit");
        free(b);
        weft_http_response_free(r);
    }
    weft_http_client_free(small);
}

Test(http_client, body_unread_and_max_body, .timeout = 60)
{
    run(c_body_unread);
}

/* ---- redirects ------------------------------------------------------------------------ */

static void c_redirects(void)
{
    weft_http_client_free(cli);
    weft_http_client_new(&cli, &(weft_http_client_opts){.max_redirects = 5});
    char *b;
    weft_http_response *r;
    /* absolute path */
    int st = get(url("/r/301//target?q=1"), &b, &r);
    CHECK(st == 200 && strcmp(b, "GET /target?q=1") == 0, "301: %d %s", st, b);
    CHECK(st < 0 || (r->redirects == 1 && strcmp(r->url, url("/target?q=1")) == 0), "url");
    if (st >= 0)
        weft_http_response_free(r);
    free(b);
    /* relative, with dots: "../../x/./y" from /r/302/../../x/./ is /x/y
     * (the dots of the request's own target are sent as they are) */
    st = get(url("/r/302/../../x/./y"), &b, NULL);
    CHECK(st == 200 && strcmp(b, "GET /x/y") == 0, "relative: %d %s", st, b);
    free(b);
    /* two hops, the second absolute */
    char two[300];
    snprintf(two, sizeof two, "/r/307//r/308/http://127.0.0.1:%d/end", port);
    st = get(url(two), &b, &r);
    CHECK(st == 200 && strstr(b, "/end") && r->redirects == 2, "two: %d %s", st, b);
    if (st >= 0)
        weft_http_response_free(r);
    free(b);
    /* 303 turns a POST into a GET without body; 307 keeps both */
    int rc = weft_http_do(cli,
                          &(weft_http_request){.method = "POST", .url = url("/r/303//echo"),
                                               .body = "abc", .body_len = 3},
                          &r);
    CHECK(rc == 0 && r->status == 200 && r->content_length == 0, "303 %d", rc);
    CHECK(strncmp(seen, "GET /echo", 9) == 0, "303 made %s", seen);
    if (rc == 0)
        weft_http_response_free(r);
    rc = weft_http_do(cli,
                      &(weft_http_request){.method = "POST", .url = url("/r/307//echo"),
                                           .body = "abc", .body_len = 3},
                      &r);
    CHECK(rc == 0 && r->status == 200, "307 %d", rc);
    if (rc == 0) {
        CHECK(weft_http_response_body(r, (void **)&b, T_MS) == 3 && memcmp(b, "abc", 3) == 0,
              "307 body");
        free(b);
        weft_http_response_free(r);
    }
    CHECK(strncmp(seen, "POST /echo", 10) == 0, "307 made %s", seen);
    /* 307 with a streamed body: not followed */
    stream_src = "xyz", stream_off = 0, stream_step = 10;
    rc = weft_http_do(cli,
                      &(weft_http_request){.method = "POST", .url = url("/r/307//echo"),
                                           .body_read = stream_read, .body_length = 3},
                      &r);
    CHECK(rc == 0 && r->status == 307 && r->redirects == 0, "streamed 307 %d", rc);
    if (rc == 0)
        weft_http_response_free(r);
    /* credentials go with the host: kept to the same one, dropped for another */
    const char *auth[] = {"Authorization", "Basic eDp5", "Cookie", "a=b", NULL};
    rc = weft_http_do(cli, &(weft_http_request){.url = url("/r/302//same"), .headers = auth}, &r);
    CHECK(rc == 0 && strstr(seen, "Authorization: Basic eDp5") && strstr(seen, "Cookie: a=b"),
          "same host: %s", seen);
    if (rc == 0)
        weft_http_response_free(r);
    char other[300];
    snprintf(other, sizeof other, "/r/302/http://localhost:%d/other", port);
    rc = weft_http_do(cli, &(weft_http_request){.url = url(other), .headers = auth}, &r);
    CHECK(rc == 0 && r->status == 200 && strncmp(seen, "GET /other", 10) == 0, "other %d", rc);
    CHECK(!strstr(seen, "Authorization") && !strstr(seen, "Cookie"), "leaked: %s", seen);
    CHECK(strstr(seen, "Host: localhost:"), "host: %s", seen);
    if (rc == 0)
        weft_http_response_free(r);
    /* a loop ends at the limit */
    int before = hits;
    rc = weft_http_do(cli, &(weft_http_request){.url = url("/loop")}, &r);
    CHECK(rc == -ELOOP, "loop %d", rc);
    CHECK(hits - before == 6, "loop made %d requests", hits - before);
    /* a Location we cannot follow */
    rc = weft_http_do(cli, &(weft_http_request){.url = url("/r/302/ftp://x/")}, &r);
    CHECK(rc == -EPROTONOSUPPORT, "ftp %d", rc);
    rc = weft_http_do(cli, &(weft_http_request){.url = url("/r/302/http://[::1/")}, &r);
    CHECK(rc == -EBADMSG, "bad location %d", rc);
}

Test(http_client, redirects, .timeout = 60)
{
    run(c_redirects);
}

static void c_no_redirects(void)
{
    weft_http_response *r;
    int rc = weft_http_do(cli, &(weft_http_request){.url = url("/r/301/target")}, &r);
    CHECK(rc == 0 && r->status == 301, "%d", rc);
    if (rc == 0) {
        CHECK(weft_http_str_eq(weft_http_response_header(r, "location"), "target"), "location");
        weft_http_response_free(r);
    }
}

Test(http_client, redirects_off_by_default, .timeout = 60)
{
    run(c_no_redirects);
}

/* ---- the retry rule ---------------------------------------------------------------------- */

static const step close_second[] = {
    {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none", S_KEEP},
    {NULL, S_CLOSE}, /* reads the second request, closes without a byte */
    {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo", S_KEEP},
    {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nthree", S_KEEP},
    {NULL, S_RESET},
};

static void c_retry(void)
{
    script sc;
    script_start(&sc, close_second, 5);
    char u[100];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/", sc.port);
    char *b = NULL;
    CHECK(get(u, &b, NULL) == 200 && strcmp(b, "one") == 0, "first");
    free(b), b = NULL;
    /* a GET on the kept connection meets its close: sent again, on a new one */
    weft_http_response *r;
    int st = get(u, &b, &r);
    CHECK(st == 200 && b && strcmp(b, "two") == 0 && !r->reused, "retried GET: %d", st);
    CHECK(sc.conns == 2 && sc.requests == 3, "conns %d requests %d", sc.conns, sc.requests);
    if (st >= 0)
        weft_http_response_free(r);
    free(b), b = NULL;
    CHECK(get(u, &b, NULL) == 200 && strcmp(b, "three") == 0, "third");
    free(b);
    /* a POST on the kept connection that meets a reset: not sent again */
    int rc = weft_http_do(cli,
                          &(weft_http_request){.method = "POST", .url = u, .body = "x",
                                               .body_len = 1, .timeout_ms = T_MS},
                          &r);
    CHECK(rc == -ECONNRESET, "POST: %d", rc);
    CHECK(sc.requests == 5 && sc.conns == 2, "POST sent %d times", sc.requests - 4);
    weft_close(sc.l);
}

Test(http_client, retry_only_what_is_safe, .timeout = 60)
{
    run(c_retry);
}

static const step cut_after_bytes[] = {
    {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none", S_KEEP},
    {"HTTP/1.1 200 OK\r\nCont", S_CLOSE}, /* part of a head, then the close */
};

static void c_no_retry_after_bytes(void)
{
    script sc;
    script_start(&sc, cut_after_bytes, 2);
    char u[100];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/", sc.port);
    char *b = NULL;
    CHECK(get(u, &b, NULL) == 200, "first");
    free(b);
    weft_http_response *r;
    int rc = weft_http_do(cli, &(weft_http_request){.url = u, .timeout_ms = T_MS}, &r);
    CHECK(rc == -ECONNRESET && sc.requests == 2, "got %d after %d requests", rc, sc.requests);
    weft_close(sc.l);
}

Test(http_client, no_retry_once_the_response_began, .timeout = 60)
{
    run(c_no_retry_after_bytes);
}

/* ---- what a server may send wrong ----------------------------------------------------- */

static const step bad[] = {
    {"garbage\r\n\r\n", S_CLOSE},
    {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", S_CLOSE},
    {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", S_CLOSE},
    {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
     S_CLOSE},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n", S_CLOSE},
    {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", S_CLOSE},
    {"HTTP/1.0 200 OK\r\n\r\nuntil the close", S_CLOSE},
    {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", S_SILENT},
    {"HTTP/1.1 200 OK\r\n", S_RESET},
};

static void c_bad_servers(void)
{
    script sc;
    script_start(&sc, bad, 9);
    char u[100];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/", sc.port);
    weft_http_response *r;
    char piece[64];
    int rc = weft_http_do(cli, &(weft_http_request){.url = u}, &r);
    CHECK(rc == -EBADMSG, "garbage %d", rc);
    rc = weft_http_do(cli, &(weft_http_request){.url = u}, &r);
    CHECK(rc == -EBADMSG, "CL and TE %d", rc);
    rc = weft_http_do(cli, &(weft_http_request){.url = u}, &r);
    CHECK(rc == -EPROTO, "101 %d", rc);
    rc = weft_http_do(cli, &(weft_http_request){.url = u}, &r);
    CHECK(rc == 0 && r->status == 200, "1xx skipped %d", rc);
    if (rc == 0) {
        CHECK(weft_http_response_read(r, piece, sizeof piece, T_MS) == 2 && !memcmp(piece, "ok", 2),
              "after 1xx");
        weft_http_response_free(r);
    }
    rc = weft_http_do(cli, &(weft_http_request){.url = u}, &r);
    CHECK(rc == 0, "bad chunk %d", rc);
    if (rc == 0) {
        void *b = NULL;
        CHECK(weft_http_response_body(r, &b, T_MS) == -EBADMSG, "bad chunk body");
        CHECK(weft_http_response_read(r, piece, sizeof piece, T_MS) == -EBADMSG, "again");
        weft_http_response_free(r);
    }
    rc = weft_http_do(cli, &(weft_http_request){.url = u}, &r);
    CHECK(rc == 0, "half %d", rc);
    if (rc == 0) {
        void *b = NULL;
        CHECK(weft_http_response_body(r, &b, T_MS) == -ECONNRESET, "cut body");
        weft_http_response_free(r);
    }
    rc = weft_http_do(cli, &(weft_http_request){.url = u}, &r);
    CHECK(rc == 0 && r->content_length == -1 && !r->chunked, "until close %d", rc);
    if (rc == 0) {
        void *b = NULL;
        ssize_t n = weft_http_response_body(r, &b, T_MS);
        CHECK(n == 15 && memcmp(b, "until the close", 15) == 0, "close body %zd", n);
        free(b);
        weft_http_response_free(r);
    }
    /* the exchange's deadline bounds the body's reads too */
    int64_t t0 = weft_now();
    rc = weft_http_do(cli, &(weft_http_request){.url = u, .timeout_ms = 300}, &r);
    CHECK(rc == 0, "silent %d", rc);
    if (rc == 0) {
        CHECK(weft_http_response_read(r, piece, sizeof piece, -1) == -ETIMEDOUT, "deadline");
        CHECK(weft_now() - t0 < T_MS, "took %lld ms", (long long)(weft_now() - t0));
        weft_http_response_free(r);
    }
    rc = weft_http_do(cli, &(weft_http_request){.url = u}, &r);
    CHECK(rc == -ECONNRESET, "reset mid-head %d", rc);
    weft_close(sc.l);
}

Test(http_client, bad_servers, .timeout = 60)
{
    run(c_bad_servers);
}

static void c_limits(void)
{
    static char huge[8192];
    int n = snprintf(huge, sizeof huge, "HTTP/1.1 200 OK\r\nX: ");
    memset(huge + n, 'a', 3000);
    strcpy(huge + n + 3000, "\r\nContent-Length: 0\r\n\r\n");
    step steps[] = {{huge, S_CLOSE}};
    script sc;
    script_start(&sc, steps, 1);
    weft_http_client *small;
    weft_http_client_new(&small, &(weft_http_client_opts){.max_header_bytes = 1024});
    char u[100];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/", sc.port);
    weft_http_response *r;
    int rc = weft_http_do(small, &(weft_http_request){.url = u}, &r);
    CHECK(rc == -EMSGSIZE, "%d", rc);
    weft_http_client_free(small);
    weft_close(sc.l);
    /* Fields past those a response holds by itself (32), up to the limit
     * (100 by default), and over it. */
    static char many[4096], over[4096];
    int m = snprintf(many, sizeof many, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
    for (int i = 0; i < 60; i++)
        m += snprintf(many + m, sizeof many - (size_t)m, "X-%d: v%d\r\n", i, i);
    snprintf(many + m, sizeof many - (size_t)m, "\r\nok");
    int o = snprintf(over, sizeof over, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n");
    for (int i = 0; i < 100; i++)
        o += snprintf(over + o, sizeof over - (size_t)o, "X-%d: v\r\n", i);
    snprintf(over + o, sizeof over - (size_t)o, "\r\n");
    step fields[] = {{many, S_KEEP}, {over, S_CLOSE}};
    script_start(&sc, fields, 2);
    snprintf(u, sizeof u, "http://127.0.0.1:%d/", sc.port);
    rc = weft_http_do(cli, &(weft_http_request){.url = u}, &r);
    CHECK(rc == 0 && r->nheaders == 61, "61 fields: %d", rc);
    if (rc == 0) {
        CHECK(weft_http_str_eq(r->headers[60].value, "v59"), "the last field");
        CHECK(weft_http_str_eq(weft_http_response_header(r, "x-59"), "v59"), "found by name");
        char b[4];
        CHECK(weft_http_response_read(r, b, sizeof b, T_MS) == 2 && !memcmp(b, "ok", 2), "body");
        weft_http_response_free(r);
    }
    rc = weft_http_do(cli, &(weft_http_request){.url = u}, &r);
    CHECK(rc == -EMSGSIZE, "101 fields: %d", rc);
    weft_close(sc.l);
    /* a server that never answers: the exchange's deadline */
    int64_t t0 = weft_now();
    rc = weft_http_do(cli, &(weft_http_request){.url = url("/slow"), .timeout_ms = 200}, &r);
    CHECK(rc == -ETIMEDOUT, "slow %d", rc);
    CHECK(weft_now() - t0 < T_MS, "took %lld ms", (long long)(weft_now() - t0));
}

Test(http_client, limits_and_deadline, .timeout = 60)
{
    run(c_limits);
}

/* ---- bad requests --------------------------------------------------------------------- */

static void c_bad_requests(void)
{
    weft_http_response *r = NULL;
    static const struct {
        const char *url;
        int rc;
    } urls[] = {
        {"", -EINVAL},
        {"127.0.0.1/", -EINVAL},
        {"ftp://host/", -EPROTONOSUPPORT},
        {"http//host/", -EINVAL},
        {"http://", -EINVAL},
        {"http://:80/", -EINVAL},
        {"http://user:pw@host/", -EINVAL},
        {"http://host:0/", -EINVAL},
        {"http://host:65536/", -EINVAL},
        {"http://host:8x/", -EINVAL},
        {"http://ho st/", -EINVAL},
        {"http://host/a b", -EINVAL},
        {"http://host/\r\nX: y", -EINVAL},
        {"http://[::1/", -EINVAL},
        {"http://[fe80::1%25eth0]/", -EINVAL},
        {"http://[zz::1]/", -EINVAL},
        {"http://bad_name!/", -EINVAL},
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        int rc = weft_http_do(cli, &(weft_http_request){.url = urls[i].url}, &r);
        CHECK(rc == urls[i].rc, "%s: %d", urls[i].url, rc);
    }
    const char *inj[] = {"X-A", "ok\r\nX-Injected: 1", NULL};
    const char *badname[] = {"X A", "v", NULL};
    const char *cl[] = {"Content-Length", "5", NULL};
    const char *te[] = {"transfer-encoding", "chunked", NULL};
    const char *conn[] = {"Connection", "keep-alive", NULL};
    const char *odd[] = {"X-A", NULL};
    const char *const *hs[] = {inj, badname, cl, te, conn, odd};
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) {
        int rc = weft_http_do(cli, &(weft_http_request){.url = url("/"), .headers = hs[i]}, &r);
        CHECK(rc == -EINVAL, "headers %zu: %d", i, rc);
    }
    const char *methods[] = {"GE T", "", "CONNECT", "GET\r\n"};
    for (size_t i = 0; i < 4; i++) {
        int rc = weft_http_do(cli, &(weft_http_request){.url = url("/"), .method = methods[i]}, &r);
        CHECK(rc == -EINVAL, "method %zu: %d", i, rc);
    }
    CHECK(weft_http_do(NULL, &(weft_http_request){.url = url("/")}, &r) == -EINVAL, "NULL c");
    CHECK(weft_http_do(cli, NULL, &r) == -EINVAL, "NULL rq");
    CHECK(weft_http_do(cli, &(weft_http_request){0}, &r) == -EINVAL, "NULL url");
    CHECK(weft_http_do(cli, &(weft_http_request){.url = url("/")}, NULL) == -EINVAL, "NULL out");
    CHECK(weft_http_do(cli, &(weft_http_request){.url = url("/"), .body_len = 3}, &r) == -EINVAL,
          "length without body");
    CHECK(weft_http_do(cli, &(weft_http_request){.url = url("/"), .timeout_ms = -2}, &r) == -EINVAL,
          "timeout");
    CHECK(weft_http_do(cli,
                       &(weft_http_request){.url = url("/"), .body = "x", .body_len = 1,
                                            .body_read = stream_read},
                       &r) == -EINVAL,
          "both bodies");
    /* nothing was sent for any of them */
    CHECK(hits == 0, "the server saw %d requests", hits);
    /* the IPv6 literal and a name work */
    char u6[100];
    weft_sock *l6;
    int p6 = listen_any(&l6, "::1");
    if (p6 > 0) {
        weft_close(l6);
        snprintf(u6, sizeof u6, "http://[::1]:%d/", p6);
        int rc = weft_http_do(cli, &(weft_http_request){.url = u6, .timeout_ms = T_MS}, &r);
        CHECK(rc == -ECONNREFUSED, "v6 refused %d", rc);
    }
    snprintf(u6, sizeof u6, "http://localhost:%d/name", port);
    char *b = NULL;
    int st = get(u6, &b, NULL);
    CHECK(st == 200 && strcmp(b, "GET /name") == 0 && strstr(seen, "Host: localhost:"), "%d", st);
    free(b);
    /* and a Host of the caller's replaces the URL's */
    const char *host[] = {"Host", "example.com", NULL};
    int rc = weft_http_do(cli, &(weft_http_request){.url = url("/h"), .headers = host}, &r);
    CHECK(rc == 0 && strstr(seen, "Host: example.com\n") && !strstr(seen, "Host: 127"), "%s",
          seen);
    if (rc == 0)
        weft_http_response_free(r);
}

Test(http_client, bad_requests, .timeout = 60)
{
    run(c_bad_requests);
}

static void c_bad_options(void)
{
    weft_http_client *c;
    CHECK(weft_http_client_new(NULL, NULL) == -EINVAL, "out");
    CHECK(weft_http_client_new(&c, &(weft_http_client_opts){.max_redirects = -1}) == -EINVAL, "r");
    CHECK(weft_http_client_new(&c, &(weft_http_client_opts){.idle_timeout_ms = -2}) == -EINVAL, "i");
    int rc = weft_http_client_new(&c, &(weft_http_client_opts){.ca_file = "/nonexistent"});
    CHECK(rc == WEFT_ETLS_CERT || rc == -ENOTSUP, "ca %d", rc); /* -ENOTSUP: no TLS */
    weft_http_client_free(NULL);
    weft_http_response_free(NULL);
    CHECK(weft_http_response_read(NULL, NULL, 0, 0) == -EINVAL, "read");
    CHECK(weft_http_response_header(NULL, "x").p == NULL, "header");
}

Test(http_client, bad_options, .timeout = 60)
{
    run(c_bad_options);
}

/* ---- allocation failures ---------------------------------------------------------------- */

static void c_oom(void)
{
    /* every allocation of an exchange, failing one at a time: an error
     * (never a crash or a leak), and the client still works after */
    int errors = 0, ok = 0;
    for (int nth = 1; nth <= 40; nth++) {
        weft_fault_set(WEFT_FAULT_MALLOC, nth, ENOMEM);
        weft_http_response *r;
        int rc = weft_http_do(cli, &(weft_http_request){.url = url("/chunks")}, &r);
        if (rc == 0) {
            void *b;
            ssize_t n = weft_http_response_body(r, &b, T_MS);
            if (n >= 0)
                free(b), ok++;
            else
                errors++;
            weft_http_response_free(r);
        } else {
            CHECK(rc == -ENOMEM, "nth %d: %d", nth, rc);
            errors++;
        }
        weft_fault_clear();
    }
    CHECK(errors > 0 && ok > 0, "errors %d ok %d", errors, ok);
    char *b;
    CHECK(get(url("/after"), &b, NULL) == 200 && strcmp(b, "GET /after") == 0, "after");
    free(b);
}

Test(http_client, allocation_failures, .timeout = 60)
{
    run(c_oom);
}

/* ---- https -------------------------------------------------------------------------------- */

static void c_https(void)
{
    char u[200];
    weft_http_response *r;
    for (int i = 0; i < 3; i++) {
        snprintf(u, sizeof u, "https://%s:%d/tls", i == 2 ? "localhost" : "127.0.0.1", port);
        int rc = weft_http_do(cli, &(weft_http_request){.url = u, .timeout_ms = T_MS}, &r);
        CHECK(rc == 0 && r->status == 200, "https %d: %d", i, rc);
        if (rc < 0)
            return;
        CHECK(r->reused == (i == 1), "request %d reused %d", i, r->reused);
        void *b;
        ssize_t n = weft_http_response_body(r, &b, T_MS);
        CHECK(n == 8 && memcmp(b, "GET /tls", 8) == 0, "body %zd", n);
        free(b);
        weft_http_response_free(r);
    }
    int rc = weft_http_do(cli, &(weft_http_request){.url = u, .timeout_ms = T_MS}, &r);
    CHECK(rc == 0, "%d", rc);
    if (rc == 0)
        weft_http_response_free(r);
    /* the system's store does not know the test CA */
    weft_http_client *sys;
    weft_http_client_new(&sys, NULL);
    rc = weft_http_do(sys, &(weft_http_request){.url = u, .timeout_ms = T_MS}, &r);
    CHECK(rc == WEFT_ETLS_UNTRUSTED, "untrusted %d", rc);
    weft_http_client_free(sys);
    /* plain HTTP to a TLS port: no answer that parses */
    snprintf(u, sizeof u, "http://127.0.0.1:%d/", port);
    rc = weft_http_do(cli, &(weft_http_request){.url = u, .timeout_ms = T_MS}, &r);
    CHECK(rc < 0, "plain to TLS %d", rc);
}

Test(http_client, https_verified, .timeout = 60)
{
    if (!certs_dir[0])
        cr_skip_test("no certificates (openssl missing?)");
    tls_server = true;
    copts.ca_file = cert("ca.pem");
    run(c_https);
}

/* ---- cancel -------------------------------------------------------------------------------- */

static int cancel_rc[3];

static void slow_get(void *arg)
{
    int i = (int)(intptr_t)arg;
    weft_http_response *r;
    const char *path = i == 0 ? "/slow" : "/trickle";
    cancel_rc[i] = weft_http_do(cli, &(weft_http_request){.url = url(path)}, &r);
    if (cancel_rc[i] == 0) { /* /trickle: the head is in; the body's read is cancelled */
        char b[100];
        ssize_t n;
        while ((n = weft_http_response_read(r, b, sizeof b, -1)) > 0)
            ;
        cancel_rc[i] = (int)n;
        weft_http_response_free(r);
    }
}

static void c_cancel(void)
{
    for (int i = 0; i < 2; i++) {
        cancel_rc[i] = 1;
        int64_t id = weft_go(slow_get, (void *)(intptr_t)i);
        weft_sleep(100);
        CHECK(weft_cancel(id) == 0, "cancel %d", i);
        CHECK(weft_join(id, T_MS) == 0, "join %d", i);
        CHECK(cancel_rc[i] == -ECANCELED, "%d: %d", i, cancel_rc[i]);
    }
    char *b;
    CHECK(get(url("/after"), &b, NULL) == 200 && strcmp(b, "GET /after") == 0, "after");
    free(b);
}

Test(http_client, cancelled_mid_exchange, .timeout = 60)
{
    run(c_cancel);
}

/* ---- trailers ------------------------------------------------------------------------------- */

static const step trailers[] = {
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
     "5;ext=1\r\nhello\r\n0\r\nX-Sum: 42\r\nx-other: b\r\n\r\n",
     S_KEEP},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", S_KEEP},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBad Name: x\r\n\r\n", S_KEEP},
};

static void c_trailers(void)
{
    script sc;
    script_start(&sc, trailers, 3);
    char u[100];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/", sc.port);
    weft_http_response *r;
    int rc = weft_http_do(cli, &(weft_http_request){.url = u}, &r);
    CHECK(rc == 0, "%d", rc);
    if (rc < 0)
        return;
    CHECK(!weft_http_response_trailer(r, "X-Sum").p, "a trailer before the body's end");
    void *b;
    ssize_t n = weft_http_response_body(r, &b, T_MS);
    CHECK(n == 5 && memcmp(b, "hello", 5) == 0, "body %zd", n);
    free(b);
    CHECK(weft_http_str_eq(weft_http_response_trailer(r, "x-sum"), "42"), "X-Sum");
    CHECK(weft_http_str_eq(weft_http_response_trailer(r, "X-Other"), "b"), "x-other");
    CHECK(!weft_http_response_trailer(r, "Transfer-Encoding").p, "a field is no trailer");
    weft_http_response_free(r);
    rc = weft_http_do(cli, &(weft_http_request){.url = u}, &r);
    CHECK(rc == 0 && r->reused, "next on the kept connection %d", rc);
    if (rc == 0) {
        n = weft_http_response_body(r, &b, T_MS);
        CHECK(n == 3 && !weft_http_response_trailer(r, "X-Sum").p, "none: %zd", n);
        free(b);
        weft_http_response_free(r);
    }
    rc = weft_http_do(cli, &(weft_http_request){.url = u}, &r);
    CHECK(rc == 0, "%d", rc);
    if (rc == 0) {
        CHECK(weft_http_response_body(r, &b, T_MS) == -EBADMSG, "a bad trailer");
        weft_http_response_free(r);
    }
    weft_close(sc.l);
}

Test(http_client, trailers, .timeout = 60)
{
    run(c_trailers);
}
