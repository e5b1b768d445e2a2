/*
 * test_http_client_nginx.c - the HTTP/1.1 client (weft/http.h) against a
 * real server: Debian's nginx (/usr/sbin/nginx), started by each test in
 * one process (master_process off) from a temporary prefix, on loopback
 * ports found free, and stopped (SIGQUIT, waitpid) with the prefix
 * removed at the test's end.  Its access log gives "$connection
 * $connection_requests" of every request, so that keep-alive is counted
 * from the server's side as well as from the client's.
 *
 * Keep-alive over 20 requests; a chunked body (sub_filter drops the
 * length); HEAD, with and without a Content-Length; 304 for
 * If-Modified-Since and If-None-Match; redirects (absolute and relative,
 * chained, POST turned GET, a loop, not followed); 1 MiB byte-exact, read
 * whole and in small pieces, and abandoned; HTTPS verified against the
 * test CA (tls_certs.h), untrusted, the wrong name, ALPN on a listener
 * that offers h2; a refused port, a close without a response (return
 * 444) and the retry rule as nginx counts the requests (GET and a PUT of
 * a body given whole sent again on a new connection, POST and a streamed
 * PUT not), nginx gone, a 1 MiB POST answered 413; requests after nginx
 * closed the idle connection (keepalive_timeout 1s), including ones sent
 * just as it closes; the exchange's deadline over a body nginx sends
 * slowly (limit_rate); and a "100 Continue" before the response.
 *
 * Skipped when nginx is not installed (scripts/deps.sh test installs it).
 * Results are recorded inside the loop and asserted on the main stack once
 * weft_main has returned.
 */
#include "tls_certs.h"
#include "helpers.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NGINX "/usr/sbin/nginx"
#define T_MS 10000 /* an exchange's deadline: a hang guard only */
#define BIG (1 << 20)
#define BIG_SEED 0x6e67696e78ull
#define HELLO "hello from nginx\n"

/* ---- recording failures inside coroutines ----------------------------------------------- */

/* Every failed check is kept (as many as fit), so that one run shows each
 * case that went wrong. */
static char failmsg[4096];
static size_t faillen;
static int failed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failed++;                                                                              \
            note("line %d: %s: ", __LINE__, #cond);                                                \
            note(__VA_ARGS__);                                                                     \
            note("\n");                                                                            \
        }                                                                                          \
    } while (0)

static void note(const char *fmt, ...)
{
    if (faillen >= sizeof failmsg - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(failmsg + faillen, sizeof failmsg - faillen, fmt, ap);
    va_end(ap);
    if (n > 0)
        faillen += (size_t)n < sizeof failmsg - faillen ? (size_t)n : sizeof failmsg - 1 - faillen;
}

/* ---- nginx ------------------------------------------------------------------------------ */

typedef struct nginx {
    char dir[64]; /* the prefix: nginx.conf, logs, www/, tmp/ */
    pid_t pid;
    int port;       /* http */
    int tls_port;   /* https, srv.pem (localhost, 127.0.0.1), "ssl http2": offers h2 */
    int other_port; /* https, other.pem: the test CA's, but for other.test */
    bool tls;
} nginx;

static nginx ngx;

/* The path of name in the prefix (a static buffer of a small ring). */
static const char *in_dir(const char *name)
{
    static char ring[8][160];
    static unsigned next;
    char *p = ring[next++ % 8];
    snprintf(p, sizeof ring[0], "%s/%s", ngx.dir, name);
    return p;
}

static const char *url_s(const char *scheme, const char *host, int port, const char *path)
{
    static char ring[8][256];
    static unsigned next;
    char *p = ring[next++ % 8];
    snprintf(p, sizeof ring[0], "%s://%s:%d%s", scheme, host, port, path);
    return p;
}

/* http://127.0.0.1:<nginx's port><path> */
static const char *url(const char *path)
{
    return url_s("http", "127.0.0.1", ngx.port, path);
}

static bool write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* www/page.txt: lines of text, some with the marker "@NAME@" that /sub/
 * rewrites to "nginx" (sub_filter, which drops Content-Length: the body
 * goes chunked).  Returns the text as written, or as /sub/ sends it. */
static char *page_text(bool rewritten, size_t *len)
{
    size_t cap = 4000 * 64, n = 0;
    char *p = malloc(cap);
    for (int i = 0; i < 4000; i++)
        n += (size_t)snprintf(p + n, cap - n, "line %04d of the page, served by %s\n", i,
                              i % 7 == 3 ? (rewritten ? "nginx" : "@NAME@") : "a file");
    *len = n;
    return p;
}

static unsigned char *big_bytes(void)
{
    unsigned char *b = malloc(BIG);
    fill_pattern(b, BIG, BIG_SEED);
    return b;
}

/* The locations every server block has. */
static void put_locations(FILE *f)
{
    const char *d = ngx.dir;
    fprintf(f,
            "    root %s/www;\n"
            "    location /sub/ { alias %s/www/; sub_filter '@NAME@' 'nginx';"
            " sub_filter_once off; sub_filter_types *; add_trailer X-Trailer done; }\n"
            "    location /short/ { alias %s/www/; keepalive_timeout 1s; }\n"
            "    location /slow/ { alias %s/www/; limit_rate 64k; }\n"
            "    location = /r301 { return 301 /target; }\n"
            "    location = /r302 { absolute_redirect off; return 302 /target; }\n"
            "    location = /chain { return 302 /r301; }\n"
            "    location = /loop { return 302 /loop; }\n"
            "    location = /target { return 200 'target'; }\n"
            "    location = /close { return 444; }\n"
            "    location = /small { client_max_body_size 1k; return 200 'small'; }\n",
            d, d, d, d);
}

static bool write_conf(void)
{
    FILE *f = fopen(in_dir("nginx.conf"), "w");
    if (!f)
        return false;
    const char *d = ngx.dir;
    fprintf(f,
            "daemon off;\n"
            "master_process off;\n"
            "worker_processes 1;\n"
            "pid %s/nginx.pid;\n"
            "error_log %s/error.log info;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            "  default_type application/octet-stream;\n"
            "  sendfile on;\n"
            "  client_body_temp_path %s/tmp/body;\n"
            "  proxy_temp_path %s/tmp/proxy;\n"
            "  fastcgi_temp_path %s/tmp/fastcgi;\n"
            "  uwsgi_temp_path %s/tmp/uwsgi;\n"
            "  scgi_temp_path %s/tmp/scgi;\n"
            "  log_format conns '$connection $connection_requests $request_method $uri $status"
            " $ssl_alpn_protocol';\n"
            "  access_log %s/access.log conns;\n"
            "  server {\n"
            "    listen 127.0.0.1:%d;\n",
            d, d, d, d, d, d, d, d, ngx.port);
    put_locations(f);
    fprintf(f, "  }\n");
    if (ngx.tls) {
        fprintf(f,
                "  server {\n"
                "    listen 127.0.0.1:%d ssl http2;\n"
                "    ssl_certificate %s;\n"
                "    ssl_certificate_key %s;\n",
                ngx.tls_port, cert("srv.pem"), cert("srv.key"));
        put_locations(f);
        fprintf(f,
                "  }\n"
                "  server {\n"
                "    listen 127.0.0.1:%d ssl;\n"
                "    ssl_certificate %s;\n"
                "    ssl_certificate_key %s;\n",
                ngx.other_port, cert("other.pem"), cert("other.key"));
        put_locations(f);
        fprintf(f, "  }\n");
    }
    fprintf(f, "}\n");
    return fclose(f) == 0;
}

/* n distinct ports free on 127.0.0.1 now: bound together (port 0), then
 * closed.  Returns 0 or -1. */
static int free_ports(int *ports, int n)
{
    int fds[4], rc = 0;
    for (int i = 0; i < n; i++)
        fds[i] = -1;
    for (int i = 0; i < n && rc == 0; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t al = sizeof a;
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&a, sizeof a) != 0 ||
            getsockname(fds[i], (struct sockaddr *)&a, &al) != 0)
            rc = -1;
        else
            ports[i] = ntohs(a.sin_port);
    }
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return rc;
}

/* Whether something accepts connections on 127.0.0.1:port. */
static bool port_open(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void remove_dir(const char *dir)
{
    char *argv[] = {"rm", "-rf", (char *)dir, NULL};
    pid_t pid = kid_spawn(argv, NULL, NULL, -1);
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

/* Stops nginx (SIGQUIT: in single-process mode it exits at once) and reaps
 * it; SIGKILL if it has not gone within 10 s. */
static void nginx_stop(void)
{
    if (ngx.pid <= 0)
        return;
    kill(ngx.pid, SIGQUIT);
    if (kid_wait(ngx.pid, 10000) == -1) {
        kill(ngx.pid, SIGKILL);
        kid_wait(ngx.pid, 10000);
    }
    ngx.pid = 0;
}

/* Makes the prefix and its files, and starts nginx on free ports (again
 * on others if a port was taken meanwhile).  Skips the test when nginx is
 * not installed; fails it when nginx does not come up.  Called from the
 * test's body, on the main stack. */
static void nginx_up(bool tls)
{
    if (access(NGINX, X_OK) != 0)
        cr_skip_test(NGINX " is not installed (scripts/deps.sh test installs it)");
    if (tls)
        cr_assert(certs_load(), "no certificates: see the runner's output");
    strcpy(ngx.dir, "/tmp/weft-nginx-XXXXXX");
    cr_assert(mkdtemp(ngx.dir), "mkdtemp: %s", strerror(errno));
    cr_assert(mkdir(in_dir("www"), 0755) == 0 && mkdir(in_dir("tmp"), 0755) == 0);
    size_t n;
    char *page = page_text(false, &n);
    unsigned char *big = big_bytes();
    cr_assert(write_file(in_dir("www/hello.txt"), HELLO, strlen(HELLO)) &&
              write_file(in_dir("www/page.txt"), page, n) &&
              write_file(in_dir("www/big.bin"), big, BIG));
    free(page);
    free(big);
    ngx.tls = tls;
    for (int attempt = 0; attempt < 5; attempt++) {
        int p[3];
        cr_assert_eq(free_ports(p, 3), 0, "no free ports");
        ngx.port = p[0], ngx.tls_port = p[1], ngx.other_port = p[2];
        cr_assert(write_conf());
        char *argv[] = {NGINX, "-p", ngx.dir, "-c", (char *)in_dir("nginx.conf"), NULL};
        ngx.pid = kid_start(argv, in_dir("stderr.log"), -1);
        cr_assert(ngx.pid > 0, "fork: %s", strerror(errno));
        /* Up when it has written its pid (after binding every port) and
         * each port accepts; gone when it could not bind (it tries for
         * 2.5 s) or refused its configuration. */
        int64_t until = mono_ms() + 20000;
        bool up = false, gone = false;
        while (!up && !gone && mono_ms() < until) {
            gone = kid_wait(ngx.pid, 0) != -1;
            char *pid = gone ? NULL : slurp(in_dir("nginx.pid"));
            bool ours = pid && atol(pid) == (long)ngx.pid;
            free(pid);
            up = ours && port_open(ngx.port) &&
                 (!tls || (port_open(ngx.tls_port) && port_open(ngx.other_port)));
            if (!up && !gone)
                usleep(10000);
        }
        if (up)
            return;
        if (gone)
            ngx.pid = 0;
        char *err = slurp(in_dir("error.log"));
        char *out = slurp(in_dir("stderr.log"));
        bool taken = (err && strstr(err, "Address already in use")) ||
                     (out && strstr(out, "Address already in use"));
        if (!taken || attempt == 4) {
            nginx_stop();
            cr_assert_fail("nginx did not start:\n%s\n%s", out ? out : "", err ? err : "");
        }
        free(err);
        free(out);
        nginx_stop();
        remove(in_dir("error.log"));
        remove(in_dir("nginx.pid"));
    }
}

/* ---- nginx's access log -------------------------------------------------------------------- */

typedef struct log_line {
    long conn; /* $connection: nginx's serial number of the connection */
    long nreq; /* $connection_requests: the request's number on it */
    char method[16];
    char uri[128];
    int status;
    char alpn[32]; /* $ssl_alpn_protocol, "-" for none */
} log_line;

#define LOG_MAX 64

/* The access log's lines for uri (every line for NULL), in order. */
static int read_log(const char *uri, log_line *out, int max)
{
    char *s = slurp(in_dir("access.log"));
    int n = 0;
    for (char *line = s, *next; line && *line && n < max; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        log_line l;
        if (sscanf(line, "%ld %ld %15s %127s %d %31s", &l.conn, &l.nreq, l.method, l.uri, &l.status,
                   l.alpn) == 6 &&
            (!uri || strcmp(l.uri, uri) == 0))
            out[n++] = l;
    }
    free(s);
    return n;
}

/* read_log, waiting up to 5 s for at least want lines: nginx writes a
 * line after the response has gone out. */
static int wait_log(const char *uri, log_line *out, int want)
{
    int n = 0;
    for (int waited = 0; waited <= 5000; waited += 10) {
        if ((n = read_log(uri, out, LOG_MAX)) >= want)
            break;
        usleep(10000);
    }
    return n;
}

/* How many requests of method for uri nginx logged. */
static int count_log(const char *method, const char *uri)
{
    log_line l[LOG_MAX];
    int n = read_log(uri, l, LOG_MAX), k = 0;
    for (int i = 0; i < n; i++)
        k += strcmp(l[i].method, method) == 0;
    return k;
}

/* ---- exchanges ------------------------------------------------------------------------------ */

/* What one exchange gave. */
typedef struct got {
    int rc;      /* weft_http_do's */
    ssize_t len; /* weft_http_response_body's: the body's length, or its error */
    char *body;  /* NUL-terminated, malloc'd; NULL if there is none */
    int status;
    int64_t content_length;
    bool chunked, reused;
    int redirects;
    char url[256];
    char field[256]; /* the value of the field asked for; "(none)" if absent */
} got;

/* Runs rq through c and reads the whole body; keeps field's value. */
static got exchange(weft_http_client *c, weft_http_request rq, const char *field)
{
    got g = {.rc = -1, .len = -1};
    if (!rq.timeout_ms)
        rq.timeout_ms = T_MS;
    weft_http_response *r;
    if ((g.rc = weft_http_do(c, &rq, &r)) < 0)
        return g;
    g.status = r->status;
    g.content_length = r->content_length;
    g.chunked = r->chunked;
    g.reused = r->reused;
    g.redirects = r->redirects;
    snprintf(g.url, sizeof g.url, "%s", r->url ? r->url : "(null)");
    if (field) {
        weft_http_str v = weft_http_response_header(r, field);
        if (v.p)
            snprintf(g.field, sizeof g.field, "%.*s", (int)v.n, v.p);
        else
            strcpy(g.field, "(none)");
    }
    void *b;
    g.len = weft_http_response_body(r, &b, T_MS);
    g.body = g.len >= 0 ? b : NULL;
    weft_http_response_free(r);
    return g;
}

static got get(weft_http_client *c, const char *u)
{
    return exchange(c, (weft_http_request){.url = u}, NULL);
}

static void got_free(got *g)
{
    free(g->body);
    g->body = NULL;
}

static weft_http_client *client(const weft_http_client_opts *o)
{
    weft_http_client *c = NULL;
    int rc = weft_http_client_new(&c, o);
    CHECK(rc == 0, "weft_http_client_new: %s", weft_err_name(rc));
    return c;
}

#define E(rc) weft_err_name((int)(rc))

/* OpenSSL's words on this thread's last TLS failure, or "". */
static const char *tls_msg(void)
{
    const char *m = weft_tls_errmsg(NULL);
    return m ? m : "";
}

/* A GET of /hello.txt that must succeed; reused as said (-1: either). */
static void hello(weft_http_client *c, int reused, const char *what)
{
    got g = get(c, url("/hello.txt"));
    CHECK(g.rc == 0 && g.status == 200 && g.len == (ssize_t)strlen(HELLO) && g.body &&
              strcmp(g.body, HELLO) == 0,
          "%s: GET /hello.txt: rc %s status %d len %zd", what, E(g.rc), g.status, g.len);
    CHECK(g.rc != 0 || reused < 0 || g.reused == (reused == 1), "%s: reused %d, wanted %d", what,
          g.reused, reused);
    got_free(&g);
}

/* ---- running a client in a loop ---------------------------------------------------------- */

typedef struct runner {
    void (*fn)(void);
} runner;

static int loop_main(void *arg)
{
    ((runner *)arg)->fn();
    return 0;
}

static void run(void (*fn)(void))
{
    runner w = {fn};
    cr_assert_eq(weft_main(loop_main, &w, NULL), 0);
    cr_assert(!failed, "%d check(s) failed:\n%s", failed, failmsg);
}

static void setup(void)
{
    memset(&ngx, 0, sizeof ngx);
    failed = 0;
    faillen = 0;
    failmsg[0] = '\0';
    weft_fault_clear();
}

static void teardown(void)
{
    nginx_stop();
    kids_reap();
    if (ngx.dir[0])
        remove_dir(ngx.dir);
    ngx.dir[0] = '\0';
}

TestSuite(http_client_nginx, .init = setup, .fini = teardown);

/* ---- 1. keep-alive ------------------------------------------------------------------------- */

static int ka_reused;

static void keepalive_client(void)
{
    weft_http_client *c = client(NULL);
    ka_reused = 0;
    for (int i = 0; c && i < 20; i++) {
        got g = get(c, url("/hello.txt"));
        CHECK(g.rc == 0 && g.status == 200, "request %d: rc %s status %d", i, E(g.rc), g.status);
        CHECK(g.body && strcmp(g.body, HELLO) == 0, "request %d: body %s", i,
              g.body ? g.body : "(none)");
        CHECK(g.content_length == (int64_t)strlen(HELLO) && !g.chunked,
              "request %d: content_length %lld chunked %d", i, (long long)g.content_length,
              g.chunked);
        CHECK(g.reused == (i > 0), "request %d: reused %d", i, g.reused);
        ka_reused += g.reused;
        got_free(&g);
    }
    weft_http_client_free(c);
}

/* 20 GETs through one client: one connection, as both sides count it. */
Test(http_client_nginx, keepalive_reuse, .timeout = 60)
{
    nginx_up(false);
    run(keepalive_client);
    cr_assert_eq(ka_reused, 19);
    log_line l[LOG_MAX];
    int n = wait_log("/hello.txt", l, 20);
    cr_assert_eq(n, 20, "nginx logged %d requests", n);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(l[i].conn, l[0].conn, "request %d on connection %ld, the first on %ld", i,
                     l[i].conn, l[0].conn);
        cr_assert_eq(l[i].nreq, i + 1, "request %d is the connection's %ld", i, l[i].nreq);
        cr_assert_eq(l[i].status, 200);
    }
}

/* ---- 2. chunked ----------------------------------------------------------------------------- */

static void chunked_client(void)
{
    size_t n;
    char *want = page_text(true, &n);
    weft_http_client *c = client(NULL);
    /* Whole, through weft_http_response_body. */
    got g = exchange(c, (weft_http_request){.url = url("/sub/page.txt")}, "Transfer-Encoding");
    CHECK(g.rc == 0 && g.status == 200, "rc %s status %d", E(g.rc), g.status);
    CHECK(g.chunked && g.content_length == -1 && strcmp(g.field, "chunked") == 0,
          "chunked %d content_length %lld Transfer-Encoding %s", g.chunked,
          (long long)g.content_length, g.field);
    CHECK(g.len == (ssize_t)n && g.body && memcmp(g.body, want, n) == 0,
          "body of %zd bytes, wanted %zu", g.len, n);
    got_free(&g);
    /* In small pieces through weft_http_response_read, then once more
     * past the end. */
    weft_http_response *r = NULL;
    weft_http_request rq = {.url = url("/sub/page.txt"), .timeout_ms = T_MS};
    int rc = weft_http_do(c, &rq, &r);
    CHECK(rc == 0 && r->status == 200 && r->chunked && r->reused,
          "second: rc %s status %d chunked %d reused %d", E(rc), rc ? 0 : r->status,
          rc ? 0 : r->chunked, rc ? 0 : r->reused);
    if (rc == 0) {
        char *b = malloc(n + 1);
        size_t len = 0;
        ssize_t k = 0;
        static const size_t piece[] = {1, 7, 100, 333, 1000, 4096};
        for (int i = 0; len <= n; i++) {
            k = weft_http_response_read(
                r, b + len, piece[i % 6] < n + 1 - len ? piece[i % 6] : n + 1 - len, T_MS);
            if (k <= 0)
                break;
            len += (size_t)k;
        }
        CHECK(k == 0 && len == n && memcmp(b, want, n) == 0,
              "read in pieces: last %s, %zu bytes of %zu", E(k), len, n);
        k = weft_http_response_read(r, b, 10, T_MS);
        CHECK(k == 0, "read after the end: %s", E(k));
        free(b);
    }
    weft_http_response_free(r);
    /* The connection went back after the last chunk. */
    hello(c, 1, "after chunked");
    weft_http_client_free(c);
    free(want);
}

/* A body nginx sends chunked (sub_filter drops the length) with a trailer
 * field (add_trailer), byte-exact, read whole and in pieces of 1 to 4096
 * bytes; the connection kept after the last chunk and the trailer. */
Test(http_client_nginx, chunked, .timeout = 60)
{
    nginx_up(false);
    run(chunked_client);
}

/* ---- 3. HEAD -------------------------------------------------------------------------------- */

static void head_client(void)
{
    weft_http_client *c = client(NULL);
    hello(c, 0, "first");
    weft_http_response *r = NULL;
    weft_http_request rq = {.method = "HEAD", .url = url("/big.bin"), .timeout_ms = T_MS};
    int rc = weft_http_do(c, &rq, &r);
    CHECK(rc == 0, "HEAD /big.bin: %s", E(rc));
    if (rc == 0) {
        weft_http_str cl = weft_http_response_header(r, "content-length");
        CHECK(r->status == 200 && r->content_length == 0 && !r->chunked && r->reused,
              "HEAD: status %d content_length %lld chunked %d reused %d", r->status,
              (long long)r->content_length, r->chunked, r->reused);
        CHECK(cl.p && cl.n == 7 && memcmp(cl.p, "1048576", 7) == 0, "Content-Length: %.*s",
              (int)cl.n, cl.p ? cl.p : "");
        char b[16];
        ssize_t k = weft_http_response_read(r, b, sizeof b, T_MS);
        CHECK(k == 0, "HEAD body read: %s", E(k));
    }
    weft_http_response_free(r);
    hello(c, 1, "after HEAD /big.bin");
    /* A HEAD whose response has neither Content-Length nor
     * Transfer-Encoding (nginx sends no chunked framing for HEAD): still
     * no body, and the connection stays. */
    got g = exchange(c, (weft_http_request){.method = "HEAD", .url = url("/sub/page.txt")},
                     "Content-Length");
    CHECK(g.rc == 0 && g.status == 200 && g.content_length == 0 && g.len == 0 && g.reused,
          "HEAD /sub/page.txt: rc %s status %d content_length %lld len %zd reused %d", E(g.rc),
          g.status, (long long)g.content_length, g.len, g.reused);
    CHECK(strcmp(g.field, "(none)") == 0, "Content-Length %s", g.field);
    got_free(&g);
    hello(c, 1, "after HEAD /sub/page.txt");
    weft_http_client_free(c);
}

/* HEAD: no body whatever the head says, Content-Length still readable,
 * and the connection reused for the next request. */
Test(http_client_nginx, head, .timeout = 60)
{
    nginx_up(false);
    run(head_client);
    log_line l[LOG_MAX];
    int n = wait_log(NULL, l, 5);
    cr_assert_eq(n, 5, "nginx logged %d requests", n);
    cr_assert_str_eq(l[1].method, "HEAD");
    for (int i = 0; i < n; i++)
        cr_assert_eq(l[i].conn, l[0].conn, "request %d (%s %s) on another connection", i,
                     l[i].method, l[i].uri);
}

/* ---- 4. 304 --------------------------------------------------------------------------------- */

static void not_modified_client(void)
{
    weft_http_client *c = client(NULL);
    char lm[256] = "", etag[256] = "";
    got g = exchange(c, (weft_http_request){.url = url("/hello.txt")}, "Last-Modified");
    CHECK(g.rc == 0 && g.status == 200 && strcmp(g.field, "(none)") != 0,
          "GET: rc %s status %d Last-Modified %s", E(g.rc), g.status, g.field);
    snprintf(lm, sizeof lm, "%s", g.field);
    got_free(&g);
    g = exchange(c, (weft_http_request){.url = url("/hello.txt")}, "ETag");
    snprintf(etag, sizeof etag, "%s", g.field);
    CHECK(g.rc == 0 && strcmp(g.field, "(none)") != 0, "ETag %s", g.field);
    got_free(&g);

    const char *ims[] = {"If-Modified-Since", lm, NULL};
    g = exchange(c, (weft_http_request){.url = url("/hello.txt"), .headers = ims}, NULL);
    CHECK(g.rc == 0 && g.status == 304 && g.content_length == 0 && g.len == 0 && g.reused,
          "If-Modified-Since: rc %s status %d content_length %lld len %zd reused %d", E(g.rc),
          g.status, (long long)g.content_length, g.len, g.reused);
    got_free(&g);
    hello(c, 1, "after 304 (If-Modified-Since)");

    const char *inm[] = {"If-None-Match", etag, NULL};
    g = exchange(c, (weft_http_request){.url = url("/hello.txt"), .headers = inm}, NULL);
    CHECK(g.rc == 0 && g.status == 304 && g.content_length == 0 && g.len == 0 && g.reused,
          "If-None-Match: rc %s status %d content_length %lld len %zd reused %d", E(g.rc), g.status,
          (long long)g.content_length, g.len, g.reused);
    got_free(&g);
    hello(c, 1, "after 304 (If-None-Match)");
    weft_http_client_free(c);
}

/* 304 Not Modified: no body (nginx sends a Content-Length with it) and the
 * connection kept. */
Test(http_client_nginx, not_modified, .timeout = 60)
{
    nginx_up(false);
    run(not_modified_client);
    log_line l[LOG_MAX];
    int n = wait_log(NULL, l, 6);
    cr_assert_eq(n, 6, "nginx logged %d requests", n);
    cr_assert(l[2].status == 304 && l[4].status == 304);
    for (int i = 0; i < n; i++)
        cr_assert_eq(l[i].conn, l[0].conn, "request %d on another connection", i);
}

/* ---- 5. redirects --------------------------------------------------------------------------- */

static void redirect_client(void)
{
    weft_http_client_opts o = {.max_redirects = 5};
    weft_http_client *c = client(&o);
    /* 301 with an absolute Location (nginx's absolute_redirect). */
    got g = get(c, url("/r301"));
    CHECK(g.rc == 0 && g.status == 200 && g.body && strcmp(g.body, "target") == 0,
          "/r301: rc %s status %d body %s", E(g.rc), g.status, g.body ? g.body : "(none)");
    CHECK(g.redirects == 1 && strcmp(g.url, url("/target")) == 0, "/r301: redirects %d url %s",
          g.redirects, g.url);
    /* The 301's short body was drained: its connection carried the next. */
    CHECK(g.reused, "/r301: the target's request came on a new connection");
    got_free(&g);
    /* 302 with a relative Location ("/target"). */
    g = get(c, url("/r302"));
    CHECK(g.rc == 0 && g.status == 200 && g.body && strcmp(g.body, "target") == 0 &&
              g.redirects == 1 && strcmp(g.url, url("/target")) == 0,
          "/r302: rc %s status %d redirects %d url %s", E(g.rc), g.status, g.redirects, g.url);
    got_free(&g);
    /* Two in a row. */
    g = get(c, url("/chain"));
    CHECK(g.rc == 0 && g.status == 200 && g.redirects == 2 && strcmp(g.url, url("/target")) == 0,
          "/chain: rc %s status %d redirects %d url %s", E(g.rc), g.status, g.redirects, g.url);
    got_free(&g);
    /* A POST redirected by 302 goes on as a GET without its body. */
    g = exchange(
        c, (weft_http_request){.method = "POST", .url = url("/r302"), .body = "a=1", .body_len = 3},
        NULL);
    CHECK(g.rc == 0 && g.status == 200 && g.redirects == 1,
          "POST /r302: rc %s status %d redirects %d", E(g.rc), g.status, g.redirects);
    got_free(&g);
    /* A Location naming itself: max_redirects followed, then -ELOOP. */
    g = get(c, url("/loop"));
    CHECK(g.rc == -ELOOP, "/loop: rc %s status %d", E(g.rc), g.status);
    got_free(&g);
    hello(c, -1, "after the loop");
    weft_http_client_free(c);

    /* max_redirects 0: the 3xx as it is. */
    c = client(NULL);
    g = exchange(c, (weft_http_request){.url = url("/r301")}, "Location");
    CHECK(g.rc == 0 && g.status == 301 && g.redirects == 0 && strcmp(g.url, url("/r301")) == 0,
          "/r301 not followed: rc %s status %d redirects %d url %s", E(g.rc), g.status, g.redirects,
          g.url);
    CHECK(strcmp(g.field, url("/target")) == 0, "Location %s", g.field);
    CHECK(g.len > 0, "the 301's body: %s", E(g.len));
    got_free(&g);
    hello(c, 1, "after the 301");
    weft_http_client_free(c);
}

/* Redirects followed (301 absolute, 302 relative, a chain of two, POST
 * becoming GET), a loop ending in -ELOOP, and a 3xx returned as it is. */
Test(http_client_nginx, redirects, .timeout = 60)
{
    nginx_up(false);
    run(redirect_client);
    log_line l[LOG_MAX];
    int n = wait_log("/loop", l, 6);
    cr_assert_eq(n, 6, "/loop asked %d times, wanted 6 (5 redirects followed, then -ELOOP)", n);
    /* The POST's redirect: the first /r302 after the chain is the POST's. */
    log_line a[LOG_MAX];
    int k = read_log(NULL, a, LOG_MAX);
    int post = -1;
    for (int i = 0; i < k; i++)
        if (strcmp(a[i].method, "POST") == 0)
            post = i;
    cr_assert(post >= 0 && post + 1 < k, "no POST logged");
    cr_assert_str_eq(a[post].uri, "/r302");
    cr_assert_str_eq(a[post + 1].uri, "/target");
    cr_assert_str_eq(a[post + 1].method, "GET");
}

/* ---- 6. 1 MiB --------------------------------------------------------------------------- */

static void big_client(void)
{
    unsigned char *want = big_bytes();
    weft_http_client *c = client(NULL);
    got g = get(c, url("/big.bin"));
    CHECK(g.rc == 0 && g.status == 200 && g.content_length == BIG && !g.chunked,
          "rc %s status %d content_length %lld chunked %d", E(g.rc), g.status,
          (long long)g.content_length, g.chunked);
    CHECK(g.len == BIG && g.body && memcmp(g.body, want, BIG) == 0, "body: %zd bytes", g.len);
    got_free(&g);

    static const size_t pieces[] = {997, 1, 4096, 65536};
    for (int p = 0; p < 4; p++) {
        weft_http_response *r = NULL;
        weft_http_request rq = {.url = url("/big.bin"), .timeout_ms = T_MS};
        int rc = weft_http_do(c, &rq, &r);
        CHECK(rc == 0 && r->status == 200 && r->reused, "pieces of %zu: rc %s", pieces[p], E(rc));
        if (rc != 0)
            continue;
        unsigned char *b = malloc(BIG + 65536);
        size_t len = 0;
        ssize_t k = 0;
        /* Pieces of 1 byte for the first 64 KiB only: 1 MiB of them takes long under ASan. */
        while ((k = weft_http_response_read(
                    r, b + len, pieces[p] == 1 && len >= 65536 ? 997 : pieces[p], T_MS)) > 0)
            len += (size_t)k;
        CHECK(k == 0 && len == BIG && memcmp(b, want, BIG) == 0,
              "pieces of %zu: last %s, %zu bytes", pieces[p], E(k), len);
        free(b);
        weft_http_response_free(r);
    }

    /* A body left unread: its connection is closed, not kept. */
    weft_http_response *r = NULL;
    weft_http_request rq = {.url = url("/big.bin"), .timeout_ms = T_MS};
    int rc = weft_http_do(c, &rq, &r);
    CHECK(rc == 0, "abandoned: %s", E(rc));
    if (rc == 0) {
        char b[100];
        CHECK(weft_http_response_read(r, b, sizeof b, T_MS) == 100, "a first read");
    }
    weft_http_response_free(r);
    hello(c, 0, "after an abandoned body");
    weft_http_client_free(c);
    free(want);
}

/* 1 MiB byte-exact: whole, in pieces of 997, 1, 4096 and 65536 bytes, and
 * abandoned after 100 bytes (the next request gets a new connection). */
Test(http_client_nginx, big_body, .timeout = 120)
{
    nginx_up(false);
    run(big_client);
}

/* ---- 7. HTTPS ------------------------------------------------------------------------------- */

static int tls_skip; /* the build has no TLS */

static void https_client(void)
{
    weft_http_client_opts o = {.ca_file = cert("ca.pem")};
    weft_http_client *c = NULL;
    int rc = weft_http_client_new(&c, &o);
    if (rc == -ENOTSUP) {
        tls_skip = 1;
        return;
    }
    CHECK(rc == 0, "client with ca_file: %s", E(rc));
    if (rc)
        return;
    const char *u = url_s("https", "127.0.0.1", ngx.tls_port, "/hello.txt");
    for (int i = 0; i < 3; i++) {
        got g = get(c, u);
        CHECK(g.rc == 0 && g.status == 200 && g.body && strcmp(g.body, HELLO) == 0,
              "https %d: rc %s (%s) status %d", i, E(g.rc), tls_msg(), g.status);
        CHECK(g.rc || g.reused == (i > 0), "https %d: reused %d", i, g.reused);
        CHECK(g.rc || strncmp(g.url, "https://", 8) == 0, "https %d: url %s", i, g.url);
        got_free(&g);
    }
    /* 1 MiB through TLS, and a chunked body. */
    unsigned char *want = big_bytes();
    got g = get(c, url_s("https", "127.0.0.1", ngx.tls_port, "/big.bin"));
    CHECK(g.rc == 0 && g.status == 200 && g.len == BIG && g.body && memcmp(g.body, want, BIG) == 0,
          "https big: rc %s status %d len %zd", E(g.rc), g.status, g.len);
    got_free(&g);
    free(want);
    size_t n;
    char *page = page_text(true, &n);
    g = get(c, url_s("https", "127.0.0.1", ngx.tls_port, "/sub/page.txt"));
    CHECK(g.rc == 0 && g.chunked && g.len == (ssize_t)n && g.body && memcmp(g.body, page, n) == 0,
          "https chunked: rc %s chunked %d len %zd", E(g.rc), g.chunked, g.len);
    got_free(&g);
    free(page);
    /* By name: DNS:localhost in the certificate. */
    g = get(c, url_s("https", "localhost", ngx.tls_port, "/hello.txt"));
    CHECK(g.rc == 0 && g.status == 200, "https://localhost: rc %s (%s) status %d", E(g.rc),
          tls_msg(), g.status);
    got_free(&g);
    /* The right CA, but a certificate for other.test. */
    g = get(c, url_s("https", "127.0.0.1", ngx.other_port, "/hello.txt"));
    CHECK(g.rc == WEFT_ETLS_NAME, "wrong name: rc %s, wanted WEFT_ETLS_NAME", E(g.rc));
    got_free(&g);
    /* Redirects stay on https (nginx's absolute Location says https). */
    weft_http_client_free(c);
    o.max_redirects = 3;
    c = client(&o);
    g = get(c, url_s("https", "127.0.0.1", ngx.tls_port, "/r301"));
    CHECK(g.rc == 0 && g.status == 200 && g.redirects == 1 &&
              strcmp(g.url, url_s("https", "127.0.0.1", ngx.tls_port, "/target")) == 0,
          "https redirect: rc %s status %d redirects %d url %s", E(g.rc), g.status, g.redirects,
          g.url);
    got_free(&g);
    weft_http_client_free(c);

    /* The system's store does not know the test CA. */
    c = client(NULL);
    g = get(c, url_s("https", "127.0.0.1", ngx.tls_port, "/hello.txt"));
    CHECK(g.rc == WEFT_ETLS_UNTRUSTED, "system store: rc %s, wanted WEFT_ETLS_UNTRUSTED", E(g.rc));
    got_free(&g);
    weft_http_client_free(c);
}

/* HTTPS verified with ca_file against nginx listening "ssl http2" (it
 * offers h2 and http/1.1 by ALPN; the client's http/1.1 must be chosen),
 * keep-alive over TLS, 1 MiB and chunked bodies, a name; an untrusted
 * chain and a certificate for another name fail as such. */
Test(http_client_nginx, https, .timeout = 120)
{
    nginx_up(true);
    run(https_client);
    if (tls_skip)
        cr_skip_test("a build without TLS");
    log_line l[LOG_MAX];
    int n = wait_log("/hello.txt", l, 4);
    cr_assert_geq(n, 4, "nginx logged %d requests for /hello.txt", n);
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq(l[i].alpn, "http/1.1", "request %d: ALPN %s", i, l[i].alpn);
        cr_assert_eq(l[i].conn, l[0].conn, "request %d on another connection", i);
    }
}

/* ---- 8. failures ---------------------------------------------------------------------------- */

/* A streamed body: "p=1", once. */
static ssize_t read_once(void *arg, void *buf, size_t n)
{
    int *done = arg;
    if (*done || n < 3)
        return 0;
    *done = 1;
    memcpy(buf, "p=1", 3);
    return 3;
}

static void failures_client(void)
{
    weft_http_client *c = client(NULL);
    /* Nothing listens. */
    int p;
    CHECK(free_ports(&p, 1) == 0, "no free port");
    got g = get(c, url_s("http", "127.0.0.1", p, "/"));
    CHECK(g.rc == -ECONNREFUSED, "refused: rc %s", E(g.rc));
    got_free(&g);
    /* Closed without a response (return 444), on a new connection ... */
    int64_t t0 = weft_now();
    g = get(c, url("/close"));
    CHECK(g.rc == -ECONNRESET, "444 on a new connection: rc %s status %d", E(g.rc), g.status);
    got_free(&g);
    /* ... and on one kept from before (sent again once, on a new one). */
    hello(c, 0, "before 444");
    g = get(c, url("/close"));
    CHECK(g.rc == -ECONNRESET, "444 on a kept connection: rc %s status %d", E(g.rc), g.status);
    got_free(&g);
    CHECK(weft_now() - t0 < T_MS, "444 took %lld ms", (long long)(weft_now() - t0));
    /* The retry rule, from nginx's side: a GET closed under on a kept
     * connection went twice (3 GETs of /close in all); a POST goes once;
     * a PUT whose body is given whole twice; a PUT whose body is streamed
     * (and was written) once. */
    hello(c, 0, "before POST /close");
    g = exchange(
        c,
        (weft_http_request){.method = "POST", .url = url("/close"), .body = "p=1", .body_len = 3},
        NULL);
    CHECK(g.rc == -ECONNRESET, "POST /close on a kept connection: rc %s", E(g.rc));
    got_free(&g);
    hello(c, 0, "before PUT /close");
    g = exchange(
        c, (weft_http_request){.method = "PUT", .url = url("/close"), .body = "p=1", .body_len = 3},
        NULL);
    CHECK(g.rc == -ECONNRESET, "PUT /close on a kept connection: rc %s", E(g.rc));
    got_free(&g);
    hello(c, 0, "before a streamed PUT /close");
    int once = 0;
    g = exchange(c,
                 (weft_http_request){.method = "PUT",
                                     .url = url("/close"),
                                     .body_read = read_once,
                                     .body_arg = &once,
                                     .body_length = 3},
                 NULL);
    CHECK(g.rc == -ECONNRESET, "streamed PUT /close on a kept connection: rc %s", E(g.rc));
    got_free(&g);
    log_line l[LOG_MAX];
    wait_log("/close", l, 3 + 1 + 3);
    CHECK(count_log("GET", "/close") == 3, "GET /close logged %d times, wanted 3 (1 + 1 retry)",
          count_log("GET", "/close"));
    CHECK(count_log("POST", "/close") == 1, "POST /close logged %d times, wanted 1",
          count_log("POST", "/close"));
    CHECK(count_log("PUT", "/close") == 3, "PUT /close logged %d times, wanted 3 (2 + 1)",
          count_log("PUT", "/close"));
    /* A body over client_max_body_size: 413 as a response. */
    char *body = calloc(1, BIG);
    g = exchange(
        c,
        (weft_http_request){.method = "POST", .url = url("/small"), .body = body, .body_len = BIG},
        "Connection");
    CHECK(g.rc == 0 && g.status == 413 && g.len > 0,
          "POST 1 MiB to /small: rc %s status %d body %zd", E(g.rc), g.status, g.len);
    got_free(&g);
    free(body);
    hello(c, 0, "after 413 (Connection: close)");
    /* nginx logs the 413 once its lingering close has ended. */
    int n = wait_log("/small", l, 1);
    CHECK(n == 1 && l[0].status == 413, "nginx logged %d POSTs to /small", n);
    /* nginx gone, with a connection kept in the pool. */
    nginx_stop();
    g = get(c, url("/hello.txt"));
    CHECK(g.rc == -ECONNREFUSED, "nginx stopped: rc %s status %d", E(g.rc), g.status);
    got_free(&g);
    weft_http_client_free(c);
}

/* A refused port; a close without a response (return 444) on a new and
 * on a kept connection, sent again or not as the retry rule says (GET and
 * a PUT of a body given whole: again; POST and a PUT of a streamed body:
 * not), as counted in nginx's log; a 1 MiB POST answered 413 before its
 * body was read; nginx gone with a connection kept: errors or the
 * response, never a hang. */
Test(http_client_nginx, failures, .timeout = 60)
{
    nginx_up(false);
    run(failures_client);
}

/* ---- 9. the server's idle close ---------------------------------------------------------- */

static void idle_close_client(void)
{
    weft_http_client *c = client(NULL);
    for (int i = 0; i < 3; i++) {
        got g = get(c, url("/short/hello.txt"));
        CHECK(g.rc == 0 && g.status == 200 && g.body && strcmp(g.body, HELLO) == 0,
              "round %d: rc %s status %d", i, E(g.rc), g.status);
        got_free(&g);
        weft_sleep(1500); /* nginx's keepalive_timeout is 1 s here */
    }
    weft_http_client_free(c);
}

/* keepalive_timeout 1s, then 1.5 s idle: the next GET succeeds (the pool
 * sees the close, or the request goes again on a new connection). */
Test(http_client_nginx, idle_close, .timeout = 60)
{
    nginx_up(false);
    run(idle_close_client);
    log_line l[LOG_MAX];
    int n = wait_log("/short/hello.txt", l, 3);
    cr_assert_eq(n, 3);
    cr_assert(l[0].conn != l[1].conn && l[1].conn != l[2].conn, "a connection nginx closed, used");
}

static int race_reused;

static void idle_race_client(void)
{
    weft_http_client *c = client(NULL);
    race_reused = 0;
    for (int i = 0; i < 12; i++) {
        got g = get(c, url("/short/hello.txt"));
        CHECK(g.rc == 0 && g.status == 200 && g.body && strcmp(g.body, HELLO) == 0,
              "round %d: rc %s status %d", i, E(g.rc), g.status);
        race_reused += g.reused;
        got_free(&g);
        weft_sleep(940 + 10 * i); /* about when nginx closes the connection */
    }
    weft_http_client_free(c);
}

/* Requests sent about when nginx closes the idle connection (940 to
 * 1050 ms after the last, keepalive_timeout 1s): each succeeds, whether
 * the connection was still open, seen closed, or closed under it. */
Test(http_client_nginx, idle_race, .timeout = 120)
{
    nginx_up(false);
    run(idle_race_client);
    cr_log_info("idle_race: %d of 12 requests on a kept connection", race_reused);
}

/* ---- 10. the exchange's deadline over a slow body ------------------------------------------ */

static int64_t slow_ms;

static void slow_client(void)
{
    weft_http_client *c = client(NULL);
    int64_t t0 = mono_ms();
    weft_http_response *r = NULL;
    weft_http_request rq = {.url = url("/slow/big.bin"), .timeout_ms = 600};
    int rc = weft_http_do(c, &rq, &r);
    CHECK(rc == 0 && r->status == 200 && r->content_length == BIG, "slow: rc %s", E(rc));
    if (rc == 0) {
        void *b = NULL;
        ssize_t n = weft_http_response_body(r, &b, -1);
        slow_ms = mono_ms() - t0;
        CHECK(n == -ETIMEDOUT && !b, "1 MiB at 64 KiB/s within 600 ms: %s", E(n));
        char x[16];
        ssize_t k = weft_http_response_read(r, x, sizeof x, -1);
        CHECK(k == -ETIMEDOUT, "a read past the exchange's deadline: %s", E(k));
    }
    weft_http_response_free(r);
    hello(c, 0, "after a body cut by the deadline");
    weft_http_client_free(c);
}

/* rq.timeout_ms bounds the body's reads too: 1 MiB that nginx sends at
 * 64 KiB/s (limit_rate) ends in -ETIMEDOUT at about 600 ms, and the
 * connection is not kept. */
Test(http_client_nginx, slow_body_deadline, .timeout = 60)
{
    nginx_up(false);
    run(slow_client);
    cr_assert(slow_ms >= 580 && slow_ms < 600 + 4 * LATE_MS, "the deadline came after %lld ms",
              (long long)slow_ms);
}

/* ---- 11. 100 Continue ---------------------------------------------------------------------- */

static void continue_client(void)
{
    weft_http_client *c = client(NULL);
    hello(c, 0, "first");
    const char *h[] = {"Expect", "100-continue", NULL};
    got g = exchange(
        c,
        (weft_http_request){
            .method = "POST", .url = url("/target"), .headers = h, .body = "abc", .body_len = 3},
        NULL);
    CHECK(g.rc == 0 && g.status == 200 && g.body && strcmp(g.body, "target") == 0 && g.reused,
          "POST with Expect: rc %s status %d body %s reused %d", E(g.rc), g.status,
          g.body ? g.body : "(none)", g.reused);
    got_free(&g);
    hello(c, 1, "after 100 Continue");
    weft_http_client_free(c);
}

/* A request with "Expect: 100-continue" (its body sent at once): nginx
 * answers "100 Continue" and then 200; the interim head is skipped and the
 * connection kept. */
Test(http_client_nginx, interim_100, .timeout = 60)
{
    nginx_up(false);
    run(continue_client);
}
