/*
 * test_http_server.c - the HTTP/1.1 server (weft/http.h) against raw TCP
 * clients on loopback: a GET, keep-alive, 100 pipelined requests, HEAD,
 * bodies of known length and chunked both ways (16 MiB each way,
 * byte-exact), Expect: 100-continue, every smuggling payload of
 * RELIABILITY #76, each limit (414, 431, 413, memory bounded), requests
 * per connection (max_requests), the header and idle timeouts, 50
 * slowloris connections beside a normal client, drain (in-flight requests
 * complete, idle connections close at once, on one loop and across two;
 * under keep-alive load, no request lost or cut), handlers that answer
 * nothing or half, clients resetting mid-response, 200 idle connections,
 * misuse of the response calls, sendfile (and sendfile and pread failing),
 * HTTP/1.0, and curl (plain and TLS with ALPN) when it is installed.
 *
 * The server and its clients run as coroutines of one loop (two for the
 * cross-loop drains); results are recorded as they come and asserted on
 * the main stack once weft_main has returned.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define T_MS 10000 /* a client's wait for what must come: a hang guard only */

/* ---- recording failures inside coroutines ------------------------------------------ */

static char failmsg[1024];
static int failed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond) && !failed) {                                                                  \
            failed = 1;                                                                            \
            int n_ = snprintf(failmsg, sizeof failmsg, "line %d: %s: ", __LINE__, #cond);          \
            snprintf(failmsg + n_, sizeof failmsg - (size_t)n_, __VA_ARGS__);                      \
        }                                                                                          \
    } while (0)

/* Waits (in a coroutine) until cond holds or ms pass. */
#define WAIT_UNTIL(cond, ms)                                                                       \
    do {                                                                                           \
        for (int w_ = 0; !(cond) && w_ < (ms); w_ += 5)                                            \
            weft_sleep(5);                                                                         \
    } while (0)

/* Pattern bytes by position: byte i of a stream of seed, whatever the
 * pieces it is made or checked in. */
static void fill_at(unsigned char *b, size_t off, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t x = (off + i + 1) * 0x9E3779B97F4A7C15ull ^ seed * 0xBF58476D1CE4E5B9ull;
        x ^= x >> 31;
        b[i] = (unsigned char)(x >> 24);
    }
}

static bool is_pattern(const unsigned char *b, size_t n, uint64_t seed)
{
    unsigned char tmp[4096];
    for (size_t off = 0; off < n; off += sizeof tmp) {
        size_t k = n - off < sizeof tmp ? n - off : sizeof tmp;
        fill_at(tmp, off, k, seed);
        if (memcmp(b + off, tmp, k) != 0)
            return false;
    }
    return true;
}

/* ---- the server under test ----------------------------------------------------------- */

typedef struct T {
    weft_http_server_opts o;
    weft_http_server *srv;
    int port;
    int start_rc;
    void (*client)(struct T *t); /* the test, in the main coroutine */
    bool no_drain;               /* the client drains (or frees) itself */
    int drain_rc;
    /* what the handlers saw */
    int requests, smuggled, slow_done, none_calls;
    bool release; /* lets /wait answer */
    int read_err;
    int misuse[32];
    int nmisuse;
    int exits;
    const char *file; /* served by /file */
    size_t file_len;
    int threads;          /* loops to run on: 0 for one */
    int load_handled[16]; /* atomic: /load/<id>/... requests the handler ran, per id */
} T;

static T t_;

static void setup(void)
{
    memset(&t_, 0, sizeof t_);
    failed = 0;
    failmsg[0] = '\0';
    weft_fault_clear();
}

TestSuite(http_server, .init = setup);

static bool path_is(const weft_http_req *r, const char *p)
{
    return weft_http_str_eq(r->path, p);
}

static bool path_starts(const weft_http_req *r, const char *p)
{
    size_t n = strlen(p);
    return r->path.n >= n && memcmp(r->path.p, p, n) == 0;
}

/* The query's n=<number>, or def. */
static long long query_n(const weft_http_req *r, long long def)
{
    char q[64];
    if (r->query.n < 3 || r->query.n >= sizeof q || memcmp(r->query.p, "n=", 2) != 0)
        return def;
    memcpy(q, r->query.p + 2, r->query.n - 2);
    q[r->query.n - 2] = '\0';
    return atoll(q);
}

/* Writes n pattern bytes (seed 7) as the body begun, in pieces. */
static int write_pattern(weft_http_resp *w, size_t n)
{
    enum { PIECE = 65536 };
    unsigned char *buf = malloc(PIECE);
    int rc = 0;
    for (size_t off = 0; off < n;) {
        size_t k = n - off < PIECE ? n - off : PIECE;
        fill_at(buf, off, k, 7);
        ssize_t r = weft_http_resp_write(w, buf, k, T_MS);
        if (r != (ssize_t)k) {
            rc = r < 0 ? (int)r : -EIO;
            break;
        }
        off += k;
    }
    free(buf);
    return rc;
}

static void misuse(T *t, int rc)
{
    if (t->nmisuse < 32)
        t->misuse[t->nmisuse++] = rc;
}

/* The body of /load/<id>/<seq>: its length and bytes follow from both,
 * so that a client can tell its own response, whole, from any other. */
static size_t load_len(int id, int seq)
{
    return 100 + (size_t)(seq % 7) * 5000 + (size_t)id;
}

static uint64_t load_seed(int id, int seq)
{
    return (uint64_t)id << 32 | (uint64_t)seq;
}

/* /load/<id>/<seq>: reads a body (if any), waits a little, and answers in
 * two writes with a wait between, so that a drain finds requests at every
 * step of their handling. */
static void load_handler(T *t, weft_http_req *r, weft_http_resp *w)
{
    char p[64];
    int id = -1, seq = -1;
    if (r->path.n < sizeof p) {
        memcpy(p, r->path.p, r->path.n);
        p[r->path.n] = '\0';
        sscanf(p, "/load/%d/%d", &id, &seq);
    }
    if (id < 0 || id >= 16 || seq < 0) {
        weft_http_resp_send(w, 400, "bad", 3, T_MS);
        return;
    }
    __atomic_add_fetch(&t->load_handled[id], 1, __ATOMIC_SEQ_CST);
    void *body = NULL;
    ssize_t n = weft_http_req_body(r, &body, T_MS);
    free(body);
    if (n != (ssize_t)(r->content_length > 0 ? r->content_length : 0)) {
        weft_http_resp_send(w, 400, "body", 4, T_MS);
        return;
    }
    weft_sleep(seq % 3);
    size_t len = load_len(id, seq), half = len / 2;
    unsigned char *b = malloc(len);
    fill_at(b, 0, len, load_seed(id, seq));
    weft_http_resp_start(w, 200, (int64_t)len);
    if (weft_http_resp_write(w, b, half, T_MS) == (ssize_t)half) {
        weft_sleep(1);
        weft_http_resp_write(w, b + half, len - half, T_MS);
    }
    free(b);
}

static void handler(weft_http_req *r, weft_http_resp *w, void *arg)
{
    T *t = arg;
    __atomic_add_fetch(&t->requests, 1, __ATOMIC_SEQ_CST); /* handlers on two loops, for some */
    if (path_is(r, "/") || path_is(r, "/hello")) {
        weft_http_resp_header(w, "Content-Type", "text/plain");
        weft_http_resp_send(w, 200, "hello", 5, T_MS);
    } else if (path_is(r, "/nodelay") || path_is(r, "/nodelay_streamed")) {
        /* TCP_NODELAY of the connection as the response goes out: "0" or "1" */
        bool streamed = path_is(r, "/nodelay_streamed");
        if (streamed)
            weft_http_resp_start(w, 200, 1);
        int on = 0;
        socklen_t len = sizeof on;
        getsockopt(weft_sock_fd(r->conn), IPPROTO_TCP, TCP_NODELAY, &on, &len);
        const char *v = on ? "1" : "0";
        if (streamed)
            weft_http_resp_write(w, v, 1, T_MS);
        else
            weft_http_resp_send(w, 200, v, 1, T_MS);
    } else if (path_is(r, "/trailer")) {
        /* The body, then its trailer field X-Sum, sent back as "body|sum" */
        void *body;
        CHECK(!weft_http_req_trailer(r, "X-Sum").p, "a trailer before the body's end");
        ssize_t n = weft_http_req_body(r, &body, T_MS);
        if (n < 0) {
            t->read_err = (int)n;
            return;
        }
        weft_http_str sum = weft_http_req_trailer(r, "x-sum");
        char out[128];
        int k = snprintf(out, sizeof out, "%.*s|%.*s", (int)n, (char *)body, (int)sum.n,
                         sum.p ? sum.p : "");
        free(body);
        weft_http_resp_send(w, 200, out, (size_t)k, T_MS);
    } else if (path_starts(r, "/n/")) {
        /* Answers its own path: pipelined answers can be told apart. */
        weft_http_resp_send(w, 200, r->path.p + 3, r->path.n - 3, T_MS);
    } else if (path_is(r, "/smuggled")) {
        t->smuggled++;
        weft_http_resp_send(w, 200, "smuggled", 8, T_MS);
    } else if (path_is(r, "/echo_len")) {
        /* The whole body, then sent back with its length. */
        void *body;
        ssize_t n = weft_http_req_body(r, &body, T_MS);
        if (n < 0) {
            t->read_err = (int)n;
            return; /* the server answers 413 or 400 */
        }
        weft_http_resp_send(w, 200, body, (size_t)n, T_MS);
        free(body);
    } else if (path_is(r, "/echo_chunked")) {
        /* Streamed back as it comes, chunked. */
        char *buf = malloc(65536);
        weft_http_resp_start(w, 200, -1);
        ssize_t n;
        while ((n = weft_http_req_read(r, buf, 65536, T_MS)) > 0)
            if (weft_http_resp_write(w, buf, (size_t)n, T_MS) != n)
                break;
        if (n == 0)
            weft_http_resp_end(w, T_MS);
        else
            t->read_err = (int)n;
        free(buf);
    } else if (path_is(r, "/big")) {
        size_t n = (size_t)query_n(r, 1 << 20);
        weft_http_resp_start(w, 200, (int64_t)n);
        if (write_pattern(w, n) == 0)
            weft_http_resp_end(w, T_MS);
    } else if (path_is(r, "/bigchunked")) {
        size_t n = (size_t)query_n(r, 1 << 20);
        weft_http_resp_start(w, 200, -1);
        if (write_pattern(w, n) == 0)
            weft_http_resp_end(w, T_MS);
    } else if (path_is(r, "/wait")) {
        while (!t->release) /* until the test lets it go */
            weft_sleep(5);
        t->slow_done++;
        weft_http_resp_send(w, 200, "waited", 6, T_MS);
    } else if (path_is(r, "/none")) {
        t->none_calls++; /* no response: the server answers 500 */
    } else if (path_is(r, "/partial")) {
        weft_http_resp_start(w, 200, 100);
        weft_http_resp_write(w, "0123456789", 10, T_MS);
    } else if (path_is(r, "/partial_chunked")) {
        weft_http_resp_start(w, 200, -1);
        weft_http_resp_write(w, "0123456789", 10, T_MS);
    } else if (path_is(r, "/started_unsent")) {
        weft_http_resp_start(w, 200, -1); /* nothing went out: 500 instead */
    } else if (path_is(r, "/short_end")) {
        weft_http_resp_start(w, 200, 10);
        weft_http_resp_write(w, "abc", 3, T_MS);
        misuse(t, weft_http_resp_end(w, T_MS)); /* -EPROTO */
    } else if (path_is(r, "/no_content")) {
        misuse(t, weft_http_resp_send(w, 204, "x", 1, T_MS)); /* -EINVAL */
        misuse(t, weft_http_resp_send(w, 204, NULL, 0, T_MS));
    } else if (path_is(r, "/noread")) {
        weft_http_resp_send(w, 200, "noread", 6, T_MS);
    } else if (path_is(r, "/close")) {
        weft_http_resp_header(w, "Connection", "close");
        weft_http_resp_send(w, 200, "bye", 3, T_MS);
    } else if (path_is(r, "/file")) {
        int fd = open(t->file, O_RDONLY);
        misuse(t, weft_http_resp_sendfile(w, 200, fd, 0, t->file_len, T_MS));
        close(fd);
    } else if (path_is(r, "/misuse")) {
        misuse(t, weft_http_resp_header(w, "X-A", "b\r\nX-Injected: 1"));
        misuse(t, weft_http_resp_header(w, "X-A", "b\nc"));
        misuse(t, weft_http_resp_header(w, "X A", "b"));
        misuse(t, weft_http_resp_header(w, "X-A\r\n", "b"));
        misuse(t, weft_http_resp_header(w, "", "b"));
        misuse(t, weft_http_resp_header(w, "Content-Length", "5"));
        misuse(t, weft_http_resp_header(w, "Transfer-Encoding", "chunked"));
        misuse(t, weft_http_resp_header(w, "Connection", "upgrade"));
        misuse(t, weft_http_resp_header(w, "X-Ok", "fine"));
        misuse(t, weft_http_resp_start(w, 99, 5));
        misuse(t, weft_http_resp_start(w, 1000, 5));
        misuse(t, weft_http_resp_start(w, 100, 0));
        misuse(t, weft_http_resp_start(w, 200, -2));
        misuse(t, (int)weft_http_resp_write(w, "x", 1, T_MS));
        misuse(t, weft_http_resp_end(w, T_MS));
        misuse(t, weft_http_resp_start(w, 200, 5));
        misuse(t, weft_http_resp_start(w, 200, 5));
        misuse(t, weft_http_resp_header(w, "X-Late", "1"));
        misuse(t, (int)weft_http_resp_write(w, "abcdef", 6, T_MS));
        misuse(t, (int)weft_http_resp_write(w, "hel", 3, T_MS));
        misuse(t, (int)weft_http_resp_write(w, "lo!", 3, T_MS));
        misuse(t, (int)weft_http_resp_write(w, "lo", 2, T_MS));
        misuse(t, (int)weft_http_resp_write(w, "", 0, T_MS));
        misuse(t, weft_http_resp_end(w, T_MS));
        misuse(t, weft_http_resp_end(w, T_MS));
        misuse(t, (int)weft_http_resp_write(w, "x", 1, T_MS));
        misuse(t, weft_http_resp_send(w, 200, "x", 1, T_MS));
    } else if (path_starts(r, "/load/")) {
        load_handler(t, r, w);
    } else if (path_starts(r, "/info")) {
        /* What the server parsed, as text. */
        char out[512];
        weft_http_str ua = weft_http_req_header(r, "x-CASE");
        weft_http_str no = weft_http_req_header(r, "X-Absent");
#define S_(x) (int)(x).n, (x).p ? (x).p : ""
        int n = snprintf(out, sizeof out, "%.*s|%.*s|%.*s|%.*s|%d|%zu|%.*s|%d|%lld|%d|%d",
                         S_(r->method), S_(r->target), S_(r->path), S_(r->query), r->minor,
                         r->nheaders, S_(ua), no.p == NULL && no.n == 0,
                         (long long)r->content_length, r->keep_alive, r->chunked);
        weft_http_resp_send(w, 200, out, (size_t)n, T_MS);
    } else {
        weft_http_resp_send(w, 404, "not found", 9, T_MS);
    }
}

static void on_exit_cb(void *arg)
{
    ((T *)arg)->exits++;
}

static int run_main(void *arg)
{
    T *t = arg;
    t->o.handler = handler;
    t->o.arg = t;
    t->o.server.on_exit = on_exit_cb;
    if (!t->o.server.host)
        t->o.server.host = "127.0.0.1";
    if ((t->start_rc = weft_http_server_start(&t->srv, &t->o)) < 0)
        return 0;
    t->port = weft_http_server_port(t->srv);
    t->client(t);
    if (!t->no_drain)
        t->drain_rc = weft_http_server_drain(t->srv, 5000);
    weft_http_server_free(t->srv);
    return 0;
}

static void run(T *t)
{
    int fds = count_fds();
    weft_config cfg = {.threads = t->threads};
    cr_assert_eq(weft_main(run_main, t, t->threads ? &cfg : NULL), 0);
    cr_assert_eq(t->start_rc, 0, "start: %s", weft_err_name(t->start_rc));
    cr_assert(!failed, "%s", failmsg);
    cr_assert_eq(t->exits, 1, "on_exit ran %d times", t->exits);
    cr_assert_eq(t->drain_rc, 0, "drain cancelled %d", t->drain_rc);
    cr_assert_eq(count_fds(), fds, "descriptors: %d before, %d after", fds, count_fds());
}

/* ---- a raw client --------------------------------------------------------------------- */

typedef struct cli {
    weft_sock *s;
    char *buf;
    size_t cap, off, len;
} cli;

static int cli_open(cli *c, int port)
{
    memset(c, 0, sizeof *c);
    c->cap = 65536;
    c->buf = malloc(c->cap);
    return weft_tcp_connect(&c->s, "127.0.0.1", port, T_MS);
}

static void cli_close(cli *c)
{
    if (c->s)
        weft_close(c->s);
    c->s = NULL;
    free(c->buf);
    c->buf = NULL;
}

static int cli_send(cli *c, const void *p, size_t n)
{
    ssize_t r = weft_send(c->s, p, n, T_MS);
    return r == (ssize_t)n ? 0 : r < 0 ? (int)r : -EIO;
}

static int cli_sends(cli *c, const char *s)
{
    return cli_send(c, s, strlen(s));
}

/* More bytes into the buffer: the count, 0 at EOF, or an error. */
static ssize_t cli_fill(cli *c, int64_t timeout_ms)
{
    if (c->off == c->len) {
        c->off = c->len = 0;
    } else if (c->len == c->cap) {
        if (c->off) {
            memmove(c->buf, c->buf + c->off, c->len - c->off);
            c->len -= c->off;
            c->off = 0;
        } else {
            c->cap *= 2;
            c->buf = realloc(c->buf, c->cap);
        }
    }
    ssize_t n = weft_recv(c->s, c->buf + c->len, c->cap - c->len, timeout_ms);
    if (n > 0)
        c->len += (size_t)n;
    return n;
}

/* At least n bytes buffered: 0, or -ENODATA at EOF, or an error. */
static int cli_need(cli *c, size_t n)
{
    while (c->len - c->off < n) {
        ssize_t r = cli_fill(c, T_MS);
        if (r <= 0)
            return r == 0 ? -ENODATA : (int)r;
    }
    return 0;
}

/* A CRLF-ended line: its length without the CRLF, the line at *p. */
static ssize_t cli_line(cli *c, const char **p)
{
    for (;;) {
        char *e = memmem(c->buf + c->off, c->len - c->off, "\r\n", 2);
        if (e) {
            *p = c->buf + c->off;
            size_t n = (size_t)(e - *p);
            c->off += n + 2;
            return (ssize_t)n;
        }
        ssize_t r = cli_fill(c, T_MS);
        if (r <= 0)
            return r == 0 ? -ENODATA : r;
    }
}

/* Whether the server closes (EOF or reset) with no byte more, within ms:
 * 1 closed, 0 bytes came, -ETIMEDOUT neither. */
static int cli_closed(cli *c, int64_t ms)
{
    if (c->len > c->off)
        return 0;
    ssize_t r = cli_fill(c, ms);
    if (r > 0)
        return 0;
    if (r == 0 || r == -ECONNRESET)
        return 1;
    return (int)r;
}

typedef struct hresp {
    int status;
    char *head; /* NUL-terminated */
    unsigned char *body;
    size_t blen;
    bool chunked, close, date, has_cl;
    long long cl;
} hresp;

static void hresp_free(hresp *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* The value of field name in head (any case), or NULL. */
static const char *hfind(const char *head, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n"))
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
            p += 3 + n;
            while (*p == ' ')
                p++;
            return p;
        }
    return NULL;
}

static int body_append(hresp *r, size_t *cap, const char *p, size_t n)
{
    if (r->blen + n + 1 > *cap) {
        while (r->blen + n + 1 > *cap)
            *cap = *cap ? *cap * 2 : 4096;
        r->body = realloc(r->body, *cap);
    }
    memcpy(r->body + r->blen, p, n);
    r->blen += n;
    r->body[r->blen] = 0;
    return 0;
}

/* Reads one response (its body by its framing; none for HEAD, 1xx, 204,
 * 304).  Returns 0 or an error. */
static int read_resp(cli *c, hresp *r, bool head_req)
{
    memset(r, 0, sizeof *r);
    char *e;
    while (!(e = memmem(c->buf + c->off, c->len - c->off, "\r\n\r\n", 4))) {
        ssize_t n = cli_fill(c, T_MS);
        if (n <= 0)
            return n == 0 ? -ENODATA : (int)n;
    }
    size_t hl = (size_t)(e + 4 - (c->buf + c->off));
    r->head = strndup(c->buf + c->off, hl);
    c->off += hl;
    if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1)
        return -EPROTO;
    const char *v;
    if ((v = hfind(r->head, "content-length"))) {
        r->has_cl = true;
        r->cl = atoll(v);
    }
    r->chunked = (v = hfind(r->head, "transfer-encoding")) && strncasecmp(v, "chunked", 7) == 0;
    r->close = (v = hfind(r->head, "connection")) && strncasecmp(v, "close", 5) == 0;
    r->date = hfind(r->head, "date") != NULL;
    size_t cap = 0;
    body_append(r, &cap, "", 0);
    if (head_req || r->status < 200 || r->status == 204 || r->status == 304)
        return 0;
    if (r->chunked) {
        for (;;) {
            const char *line;
            ssize_t ln = cli_line(c, &line);
            if (ln < 0)
                return (int)ln;
            size_t size = strtoul(line, NULL, 16);
            if (size == 0) {
                while ((ln = cli_line(c, &line)) > 0) /* trailers */
                    ;
                return ln < 0 ? (int)ln : 0;
            }
            int rc = cli_need(c, size + 2);
            if (rc < 0)
                return rc;
            body_append(r, &cap, c->buf + c->off, size);
            if (memcmp(c->buf + c->off + size, "\r\n", 2) != 0)
                return -EPROTO;
            c->off += size + 2;
        }
    }
    if (r->has_cl) {
        size_t left = (size_t)r->cl;
        while (left) {
            if (c->len == c->off) {
                ssize_t n = cli_fill(c, T_MS);
                if (n <= 0)
                    return n == 0 ? -ENODATA : (int)n;
            }
            size_t k = c->len - c->off < left ? c->len - c->off : left;
            body_append(r, &cap, c->buf + c->off, k);
            c->off += k;
            left -= k;
        }
        return 0;
    }
    for (;;) { /* until the close */
        if (c->len > c->off) {
            body_append(r, &cap, c->buf + c->off, c->len - c->off);
            c->off = c->len;
        }
        ssize_t n = cli_fill(c, T_MS);
        if (n == 0)
            return 0;
        if (n < 0)
            return (int)n;
    }
}

/* One request on a new connection, its response read. */
static int fetch(T *t, const char *req, hresp *r, bool head_req)
{
    cli c;
    int rc = cli_open(&c, t->port);
    if (rc == 0)
        rc = cli_sends(&c, req);
    if (rc == 0)
        rc = read_resp(&c, r, head_req);
    cli_close(&c);
    return rc;
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: a\r\n\r\n"

/* ---- basics ---------------------------------------------------------------------------- */

static void get_hello(T *t)
{
    hresp r;
    int rc = fetch(t, GET("/hello"), &r, false);
    CHECK(rc == 0, "%s", weft_err_name(rc));
    CHECK(r.status == 200, "%d", r.status);
    CHECK(r.blen == 5 && memcmp(r.body, "hello", 5) == 0, "%zu", r.blen);
    CHECK(r.has_cl && r.cl == 5 && r.date && !r.close && !r.chunked, "%s", r.head);
    CHECK(strstr(r.head, "\r\nContent-Type: text/plain\r\n") != NULL, "%s", r.head);
    /* IMF-fixdate: "Date: Sun, 06 Nov 1994 08:49:37 GMT" */
    const char *d = hfind(r.head, "date");
    CHECK(d && strlen(d) >= 31 && d[3] == ',' && memcmp(d + 25, " GMT\r\n", 6) == 0, "%s", r.head);
    hresp_free(&r);
}

Test(http_server, get_hello, .timeout = 60)
{
    t_.client = get_hello;
    run(&t_);
    cr_assert_eq(t_.requests, 1);
}

static void keepalive(T *t)
{
    cli c;
    hresp r;
    CHECK(cli_open(&c, t->port) == 0, "connect");
    for (int i = 0; i < 3 && !failed; i++) {
        CHECK(cli_sends(&c, GET("/hello")) == 0, "send %d", i);
        CHECK(read_resp(&c, &r, false) == 0, "read %d", i);
        CHECK(r.status == 200 && r.blen == 5 && !r.close, "%d: %s", i, r.head);
        hresp_free(&r);
    }
    /* The same connection, asked to close. */
    CHECK(cli_sends(&c, "GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n") == 0, "s");
    CHECK(read_resp(&c, &r, false) == 0 && r.status == 200 && r.close, "%s", r.head);
    CHECK(cli_closed(&c, T_MS) == 1, "closed after Connection: close");
    hresp_free(&r);
    cli_close(&c);
}

/* A chunked request's trailer fields reach the handler once it has read
 * the body; a malformed trailer fails the body (400). */
static void trailers(T *t)
{
    cli c;
    hresp r;
    CHECK(cli_open(&c, t->port) == 0, "connect");
    CHECK(cli_sends(&c, "POST /trailer HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\nX-Other: 1\r\n\r\n") == 0,
          "send");
    CHECK(read_resp(&c, &r, false) == 0 && r.status == 200, "read");
    CHECK(strcmp((char *)r.body, "abcde|5") == 0, "got %s", r.body);
    hresp_free(&r);
    CHECK(cli_sends(&c, "POST /trailer HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "1\r\nz\r\n0\r\n\r\n") == 0,
          "send");
    CHECK(read_resp(&c, &r, false) == 0 && r.status == 200, "read");
    CHECK(strcmp((char *)r.body, "z|") == 0, "none: %s", r.body);
    hresp_free(&r);
    CHECK(cli_sends(&c, "POST /trailer HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "1\r\nz\r\n0\r\nBad Name: 1\r\n\r\n") == 0,
          "send");
    CHECK(read_resp(&c, &r, false) == 0 && r.status == 400 && r.close, "bad: %d", r.status);
    hresp_free(&r);
    cli_close(&c);
}

Test(http_server, request_trailers, .timeout = 60)
{
    t_.client = trailers;
    run(&t_);
    cr_assert_eq(t_.read_err, -EBADMSG);
}

Test(http_server, keepalive_reuse, .timeout = 60)
{
    t_.client = keepalive;
    run(&t_);
    cr_assert_eq(t_.requests, 4);
}

/* Nagle's algorithm goes off only where a response could wait on it: once
 * the connection is kept for another request, or for a response sent in
 * several writes; a single response then the close needs no setsockopt. */
static void nodelay(T *t)
{
    cli c;
    hresp r;
    static const char *const want[] = {"0", "1", "1"};
    CHECK(cli_open(&c, t->port) == 0, "connect");
    for (int i = 0; i < 3 && !failed; i++) {
        CHECK(cli_sends(&c, GET("/nodelay")) == 0, "send %d", i);
        CHECK(read_resp(&c, &r, false) == 0 && r.status == 200, "read %d", i);
        CHECK(strcmp((char *)r.body, want[i]) == 0, "request %d: TCP_NODELAY %s", i, r.body);
        hresp_free(&r);
    }
    cli_close(&c);
    CHECK(cli_open(&c, t->port) == 0, "connect");
    CHECK(cli_sends(&c, GET("/nodelay_streamed")) == 0, "send");
    CHECK(read_resp(&c, &r, false) == 0 && r.status == 200, "read");
    CHECK(strcmp((char *)r.body, "1") == 0, "streamed: TCP_NODELAY %s", r.body);
    hresp_free(&r);
    cli_close(&c);
}

Test(http_server, nodelay_where_it_counts, .timeout = 60)
{
    t_.client = nodelay;
    run(&t_);
}

/* Reads the answers to /n/<first>.. /n/<last> in order; the last one
 * alone says Connection: close when close_last. */
static void read_numbered(cli *c, int first, int last, bool close_last)
{
    for (int i = first; i <= last && !failed; i++) {
        hresp r;
        char want[16];
        int len = sprintf(want, "%d", i);
        CHECK(read_resp(c, &r, false) == 0, "response %d", i);
        CHECK(r.status == 200 && r.blen == (size_t)len && memcmp(r.body, want, (size_t)len) == 0,
              "response %d: %.*s", i, (int)r.blen, r.body);
        CHECK(r.close == (close_last && i == last), "response %d: %s", i, r.head);
        hresp_free(&r);
    }
}

/* max_requests 3: three requests one after the other on a connection, the
 * third answered with Connection: close and then the close; four
 * pipelined at once: three answered, the fourth never read (the handler
 * does not see it). */
static void max_requests(T *t)
{
    cli c;
    hresp r;
    CHECK(cli_open(&c, t->port) == 0, "connect");
    for (int i = 1; i <= 3 && !failed; i++) {
        CHECK(cli_sends(&c, GET("/hello")) == 0, "send %d", i);
        CHECK(read_resp(&c, &r, false) == 0 && r.status == 200 && r.blen == 5, "read %d", i);
        CHECK(r.close == (i == 3), "response %d: %s", i, r.head);
        hresp_free(&r);
    }
    CHECK(cli_closed(&c, T_MS) == 1, "no close after the third response");
    cli_close(&c);
    CHECK(cli_open(&c, t->port) == 0, "connect");
    CHECK(cli_sends(&c, GET("/n/1") GET("/n/2") GET("/n/3") GET("/n/4")) == 0, "s");
    read_numbered(&c, 1, 3, true);
    CHECK(cli_closed(&c, T_MS) == 1, "an answer to the fourth, or no close");
    cli_close(&c);
}

Test(http_server, max_requests, .timeout = 60)
{
    t_.o.max_requests = 3;
    t_.client = max_requests;
    run(&t_);
    cr_assert_eq(t_.requests, 6);
}

/* 1001 requests pipelined on one connection: by default the 1000th is the
 * last served; with max_requests -1 all are, and the connection stays. */
static void max_requests_default(T *t)
{
    enum { N = 1001 };
    char *all = malloc(N * 40);
    size_t n = 0;
    for (int i = 1; i <= N; i++)
        n += (size_t)sprintf(all + n, "GET /n/%d HTTP/1.1\r\nHost: a\r\n\r\n", i);
    cli c;
    CHECK(cli_open(&c, t->port) == 0, "connect");
    CHECK(cli_send(&c, all, n) == 0, "one write");
    if (t->o.max_requests == -1) {
        read_numbered(&c, 1, N, false);
        CHECK(cli_closed(&c, 200) == -ETIMEDOUT, "closed with no limit");
    } else {
        read_numbered(&c, 1, 1000, true);
        CHECK(cli_closed(&c, T_MS) == 1, "an answer past the 1000th, or no close");
    }
    cli_close(&c);
    free(all);
}

Test(http_server, max_requests_default_and_none, .timeout = 60)
{
    t_.client = max_requests_default;
    run(&t_);
    cr_assert_eq(t_.requests, 1000);
    setup();
    t_.o.max_requests = -1;
    t_.client = max_requests_default;
    run(&t_);
    cr_assert_eq(t_.requests, 1001);
}

static void pipelined(T *t)
{
    char *all = malloc(100 * 64);
    size_t n = 0;
    for (int i = 0; i < 100; i++)
        n += (size_t)sprintf(all + n, "GET /n/%d HTTP/1.1\r\nHost: a\r\n\r\n", i);
    cli c;
    CHECK(cli_open(&c, t->port) == 0, "connect");
    CHECK(cli_send(&c, all, n) == 0, "one write");
    for (int i = 0; i < 100 && !failed; i++) {
        hresp r;
        char want[16];
        int len = sprintf(want, "%d", i);
        CHECK(read_resp(&c, &r, false) == 0, "response %d", i);
        CHECK(r.status == 200 && r.blen == (size_t)len && memcmp(r.body, want, (size_t)len) == 0,
              "response %d out of order: %.*s", i, (int)r.blen, r.body);
        hresp_free(&r);
    }
    cli_close(&c);
    free(all);
}

Test(http_server, pipelined_100, .timeout = 60)
{
    t_.client = pipelined;
    run(&t_);
    cr_assert_eq(t_.requests, 100);
}

static void head_req(T *t)
{
    cli c;
    hresp r;
    CHECK(cli_open(&c, t->port) == 0, "connect");
    /* HEAD then GET on one connection: any body byte of the HEAD's
     * answer would show as the start of the GET's. */
    CHECK(cli_sends(&c, "HEAD /hello HTTP/1.1\r\nHost: a\r\n\r\n" GET("/n/after")) == 0, "s");
    CHECK(read_resp(&c, &r, true) == 0, "head");
    CHECK(r.status == 200 && r.has_cl && r.cl == 5 && r.date, "%s", r.head);
    hresp_free(&r);
    CHECK(read_resp(&c, &r, false) == 0, "get");
    CHECK(r.status == 200 && r.blen == 5 && memcmp(r.body, "after", 5) == 0, "%s", r.head);
    hresp_free(&r);
    /* HEAD of a chunked and of a streamed response: head only. */
    CHECK(cli_sends(&c, "HEAD /bigchunked?n=100000 HTTP/1.1\r\nHost: a\r\n\r\n"
                        "HEAD /big?n=100000 HTTP/1.1\r\nHost: a\r\n\r\n" GET("/n/end")) == 0,
          "s");
    CHECK(read_resp(&c, &r, true) == 0 && r.status == 200 && r.chunked, "%s", r.head);
    hresp_free(&r);
    CHECK(read_resp(&c, &r, true) == 0 && r.status == 200 && r.cl == 100000, "%s", r.head);
    hresp_free(&r);
    CHECK(read_resp(&c, &r, false) == 0 && r.blen == 3 && memcmp(r.body, "end", 3) == 0, "%s",
          r.head);
    hresp_free(&r);
    cli_close(&c);
}

Test(http_server, head_has_no_body, .timeout = 60)
{
    t_.client = head_req;
    run(&t_);
}

static void request_view(T *t)
{
    hresp r;
    int rc = fetch(t,
                   "GET /info/b?x=1&y HTTP/1.1\r\nHost: a\r\nX-Case:  Value 1 \r\n"
                   "Content-Length: 0\r\n\r\n",
                   &r, false);
    CHECK(rc == 0 && r.status == 200, "%s", weft_err_name(rc));
    /* method|target|path|query|minor|nheaders|x-case|absent|cl|keep_alive|chunked */
    CHECK(strcmp((char *)r.body, "GET|/info/b?x=1&y|/info/b|x=1&y|1|3|Value 1|1|0|1|0") == 0, "%s",
          r.body);
    hresp_free(&r);
    rc = fetch(t, "GET /info HTTP/1.0\r\n\r\n", &r, false);
    CHECK(rc == 0 && strcmp((char *)r.body, "GET|/info|/info||0|0||1|0|0|0") == 0, "%s", r.body);
    CHECK(r.close, "HTTP/1.0 without keep-alive: %s", r.head);
    hresp_free(&r);
    /* The absolute form (RFC 9112 3.2.2): path and query after the authority. */
    rc = fetch(t, "GET hTTp://a.example:80/info/c?z HTTP/1.1\r\nHost: a\r\n\r\n", &r, false);
    CHECK(rc == 0 && strcmp((char *)r.body, "GET|hTTp://a.example:80/info/c?z|/info/c|z|1|1||1|0|1|0") == 0,
          "%s", r.body);
    hresp_free(&r);
    rc = fetch(t, "GET https://a.example/info?q=1 HTTP/1.1\r\nHost: a\r\n\r\n", &r, false);
    CHECK(rc == 0 && strcmp((char *)r.body, "GET|https://a.example/info?q=1|/info|q=1|1|1||1|0|1|0") == 0,
          "%s", r.body);
    hresp_free(&r);
    /* No path: "/", which answers "hello". */
    rc = fetch(t, "GET http://a.example HTTP/1.1\r\nHost: a\r\n\r\n", &r, false);
    CHECK(rc == 0 && r.status == 200 && r.blen == 5 && memcmp(r.body, "hello", 5) == 0, "%d %s",
          r.status, r.head);
    hresp_free(&r);
    rc = fetch(t, "GET http://a.example?x HTTP/1.1\r\nHost: a\r\n\r\n", &r, false);
    CHECK(rc == 0 && r.status == 200 && r.blen == 5, "%d %s", r.status, r.head);
    hresp_free(&r);
}

Test(http_server, request_view, .timeout = 60)
{
    t_.client = request_view;
    run(&t_);
}

static void http10(T *t)
{
    cli c;
    hresp r;
    /* Keep-alive asked for: kept, and said so. */
    CHECK(cli_open(&c, t->port) == 0, "connect");
    CHECK(cli_sends(&c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == 0, "s");
    CHECK(read_resp(&c, &r, false) == 0 && r.status == 200 && !r.close, "%s", r.head);
    CHECK(hfind(r.head, "connection") &&
              strncasecmp(hfind(r.head, "connection"), "keep-alive", 10) == 0,
          "%s", r.head);
    hresp_free(&r);
    /* A body of unknown length goes unframed and ends with the close. */
    CHECK(cli_sends(&c, "GET /bigchunked?n=300000 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == 0,
          "s");
    CHECK(read_resp(&c, &r, false) == 0, "read");
    CHECK(r.status == 200 && !r.chunked && !r.has_cl && r.close && r.blen == 300000, "%zu %s",
          r.blen, r.head);
    CHECK(r.blen == 300000 && is_pattern(r.body, 300000, 7), "bytes differ");
    hresp_free(&r);
    cli_close(&c);
}

Test(http_server, http10, .timeout = 60)
{
    t_.client = http10;
    run(&t_);
}

/* ---- bodies ----------------------------------------------------------------------------- */

static void post_length(T *t)
{
    hresp r;
    int rc = fetch(t, "POST /echo_len HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
                   &r, false);
    CHECK(rc == 0 && r.status == 200 && r.blen == 11 && memcmp(r.body, "hello world", 11) == 0,
          "%s %s", weft_err_name(rc), r.head);
    hresp_free(&r);
    /* Small chunked body, with extensions and trailers, then a request
     * on the same connection. */
    cli c;
    CHECK(cli_open(&c, t->port) == 0, "connect");
    CHECK(cli_sends(&c, "POST /echo_len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-T: 1\r\n\r\n" GET(
                            "/n/next")) == 0,
          "s");
    CHECK(read_resp(&c, &r, false) == 0 && r.blen == 11 && memcmp(r.body, "hello world", 11) == 0,
          "%s", r.head);
    hresp_free(&r);
    CHECK(read_resp(&c, &r, false) == 0 && r.blen == 4 && memcmp(r.body, "next", 4) == 0, "%s",
          r.head);
    hresp_free(&r);
    /* A body the handler never reads is dropped, the connection kept. */
    CHECK(cli_sends(&c, "POST /noread HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n") == 0,
          "s");
    char body[5000];
    memset(body, 'x', sizeof body);
    CHECK(cli_send(&c, body, sizeof body) == 0, "s");
    CHECK(cli_sends(&c, "POST /noread HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "3\r\nabc\r\n0\r\n\r\n" GET("/n/kept")) == 0,
          "s");
    for (int i = 0; i < 2; i++) {
        CHECK(read_resp(&c, &r, false) == 0 && r.status == 200 && !r.close, "%s", r.head);
        hresp_free(&r);
    }
    CHECK(read_resp(&c, &r, false) == 0 && r.blen == 4 && memcmp(r.body, "kept", 4) == 0, "%s",
          r.head);
    hresp_free(&r);
    cli_close(&c);
}

Test(http_server, post_bodies, .timeout = 60)
{
    t_.client = post_length;
    run(&t_);
}

/* A writer sending a chunked body of pattern bytes in pieces of varying
 * size, alongside the reader. */
typedef struct upload {
    cli *c;
    size_t total;
    uint64_t seed;
    bool chunked;
    volatile bool stop; /* the reader has its answer */
    int rc;
    bool done;
} upload;

static void uploader(void *arg)
{
    upload *u = arg;
    unsigned char *all = malloc(65536);
    size_t off = 0, piece = 1;
    u->rc = 0;
    while (off < u->total && !u->stop) {
        size_t k = piece < u->total - off ? piece : u->total - off;
        char line[32];
        if (u->chunked) {
            int l = sprintf(line, "%zx\r\n", k);
            if ((u->rc = cli_send(u->c, line, (size_t)l)) < 0)
                break;
        }
        fill_at(all, off, k, u->seed);
        if ((u->rc = cli_send(u->c, all, k)) < 0)
            break;
        if (u->chunked && (u->rc = cli_send(u->c, "\r\n", 2)) < 0)
            break;
        off += k;
        piece = piece * 7 % 65521 + 1; /* 1 .. 64 KiB */
    }
    if (u->rc == 0 && !u->stop && u->chunked)
        u->rc = cli_send(u->c, "0\r\n\r\n", 5);
    free(all);
    u->done = true;
}

static void chunked_16m(T *t)
{
    enum { N = 16 << 20 };
    cli c;
    CHECK(cli_open(&c, t->port) == 0, "connect");
    CHECK(cli_sends(&c, "POST /echo_chunked HTTP/1.1\r\nHost: a\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n") == 0,
          "s");
    upload u = {.c = &c, .total = N, .seed = 11, .chunked = true};
    weft_go(uploader, &u);
    hresp r;
    int rc = read_resp(&c, &r, false);
    WAIT_UNTIL(u.done, T_MS);
    CHECK(rc == 0 && u.rc == 0, "%s %s", weft_err_name(rc), weft_err_name(u.rc));
    CHECK(r.status == 200 && r.chunked && r.blen == N, "%zu %s", r.blen, r.head);
    CHECK(r.blen == N && is_pattern(r.body, N, 11), "the echo differs");
    hresp_free(&r);
    /* And a 16 MiB chunked download on the same connection. */
    CHECK(cli_sends(&c, GET("/bigchunked?n=16777216")) == 0, "s");
    CHECK(read_resp(&c, &r, false) == 0 && r.chunked && r.blen == N, "%zu", r.blen);
    CHECK(r.blen == N && is_pattern(r.body, N, 7), "the download differs");
    hresp_free(&r);
    cli_close(&c);
}

Test(http_server, chunked_16m_both_ways, .timeout = 120)
{
    t_.o.max_body = 32 << 20;
    t_.client = chunked_16m;
    run(&t_);
}

static void expect_continue(T *t)
{
    cli c;
    hresp r;
    CHECK(cli_open(&c, t->port) == 0, "connect");
    CHECK(cli_sends(&c, "POST /echo_len HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                        "Expect: 100-continue\r\n\r\n") == 0,
          "s");
    CHECK(read_resp(&c, &r, false) == 0 && r.status == 100, "%s", r.head);
    hresp_free(&r);
    CHECK(cli_sends(&c, "hello") == 0, "s");
    CHECK(read_resp(&c, &r, false) == 0 && r.status == 200 && r.blen == 5 && !r.close, "%s",
          r.head);
    hresp_free(&r);
    /* Answered without reading: no 100, and the connection closes, since
     * the client may or may not send its body now. */
    CHECK(cli_sends(&c, "POST /noread HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                        "Expect: 100-continue\r\n\r\n") == 0,
          "s");
    CHECK(read_resp(&c, &r, false) == 0 && r.status == 200 && r.close, "%s", r.head);
    hresp_free(&r);
    CHECK(cli_closed(&c, T_MS) == 1, "closed");
    cli_close(&c);
    /* Over max_body: 413 at once, no 100. */
    CHECK(cli_open(&c, t->port) == 0, "connect");
    CHECK(cli_sends(&c, "POST /echo_len HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n"
                        "Expect: 100-continue\r\n\r\n") == 0,
          "s");
    CHECK(read_resp(&c, &r, false) == 0 && r.status == 413 && r.close, "%s", r.head);
    hresp_free(&r);
    CHECK(cli_closed(&c, T_MS) == 1, "closed");
    cli_close(&c);
}

Test(http_server, expect_continue, .timeout = 60)
{
    t_.client = expect_continue;
    run(&t_);
}

/* ---- smuggling (RELIABILITY #76) ------------------------------------------------------ */

static const struct {
    const char *req;
    int status;
} smuggling[] = {
    /* CL and TE both */
    {"POST /echo_len HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n"
     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     400},
    {"POST /echo_len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
     "Content-Length: 6\r\n\r\n0\r\n\r\n",
     400},
    /* TE other than a final chunked */
    {"POST /echo_len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
     400},
    {"POST /echo_len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
     501},
    {"POST /echo_len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     400},
    /* duplicate differing Content-Length */
    {"POST /echo_len HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n"
     "hello",
     400},
    {"POST /echo_len HTTP/1.1\r\nHost: a\r\nContent-Length: 0, 5\r\n\r\nhello", 400},
    /* obs-fold */
    {"POST /echo_len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n , chunked\r\n\r\n"
     "0\r\n\r\n",
     400},
    {"GET /hello HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n", 400},
    /* space before the colon */
    {"POST /echo_len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400},
    {"POST /echo_len HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello", 400},
    /* bare LF, bare CR */
    {"GET /hello HTTP/1.1\nHost: a\r\n\r\n", 400},
    {"GET /hello HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400},
    {"GET /hello HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", 400},
    {"POST /echo_len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\r\n\r\n0\r\n\r\n", 400},
    /* HTAB in a framing field */
    {"POST /echo_len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n", 400},
    /* chunk size overflow */
    {"POST /echo_len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
     "ffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
     400},
    {"POST /echo_len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
     "0xffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
     400},
    /* funky chunks: CR or LF in extensions, bad chunk ends */
    {"POST /echo_len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
     "5;a\nb\r\nhello\r\n0\r\n\r\n",
     400},
    {"POST /echo_len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
     "5;a=\"x\ry\"\r\nhello\r\n0\r\n\r\n",
     400},
    {"POST /echo_len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
     "5\nhello\r\n0\r\n\r\n",
     400},
    {"POST /echo_len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
     "5\r\nhelloXX\r\n0\r\n\r\n",
     400},
    {"POST /echo_len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
     "0\r\n\n",
     400},
    /* the version */
    {"GET /hello HTTP/1.2\r\nHost: a\r\n\r\n", 505},
    {"GET /hello HTTP/2.0\r\nHost: a\r\n\r\n", 505},
    /* Host: none in 1.1, or two */
    {"GET /hello HTTP/1.1\r\n\r\n", 400},
    {"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
};

static void smuggle(T *t)
{
    for (size_t i = 0; i < sizeof smuggling / sizeof smuggling[0] && !failed; i++) {
        cli c;
        hresp r;
        CHECK(cli_open(&c, t->port) == 0, "connect");
        /* The refused request, then one that must never be served. */
        CHECK(cli_sends(&c, smuggling[i].req) == 0, "s");
        cli_sends(&c, GET("/smuggled")); /* may fail: the server closes */
        int rc = read_resp(&c, &r, false);
        CHECK(rc == 0 && r.status == smuggling[i].status && r.close,
              "case %zu: %s, status %d (want %d)", i, weft_err_name(rc), r.status,
              smuggling[i].status);
        CHECK(cli_closed(&c, T_MS) == 1, "case %zu: more than one response", i);
        hresp_free(&r);
        cli_close(&c);
    }
    CHECK(t->smuggled == 0, "a smuggled request was served");
}

Test(http_server, smuggling_refused, .timeout = 60)
{
    t_.client = smuggle;
    run(&t_);
    cr_assert_eq(t_.smuggled, 0);
}

/* ---- limits ------------------------------------------------------------------------------ */

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Sends head, then a body of total bytes alongside (chunked or not),
 * and expects status: whole and with a close, or (cut) a response cut
 * short by the close. */
static void big_upload(T *t, const char *head, size_t total, bool chunked, int status, bool cut)
{
    cli c;
    hresp r;
    CHECK(cli_open(&c, t->port) == 0, "connect");
    CHECK(cli_sends(&c, head) == 0, "s");
    upload u = {.c = &c, .total = total, .seed = 3, .chunked = chunked};
    weft_go(uploader, &u);
    int rc = read_resp(&c, &r, false);
    u.stop = true;
    WAIT_UNTIL(u.done, T_MS);
    if (cut) {
        CHECK((rc == -ENODATA || rc == -ECONNRESET) && r.status == status, "%s: %s",
              weft_err_name(rc), r.head);
    } else {
        CHECK(rc == 0 && r.status == status && r.close, "%s: %s", weft_err_name(rc), r.head);
        weft_shutdown(c.s, WEFT_SHUT_WR); /* ends the server's lingering read */
        CHECK(cli_closed(&c, T_MS) == 1, "closed");
    }
    hresp_free(&r);
    cli_close(&c);
}

static void limits(T *t)
{
    hresp r;
    char *req = malloc(200000);
    /* 414: a request line over 8 KiB */
    strcpy(req, "GET /");
    memset(req + 5, 'a', 9000);
    strcpy(req + 9005, " HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK(fetch(t, req, &r, false) == 0 && r.status == 414 && r.close, "%s", r.head);
    hresp_free(&r);
    /* 431: a head over 64 KiB */
    strcpy(req, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
    size_t n = strlen(req);
    memset(req + n, 'b', 70000);
    strcpy(req + n + 70000, "\r\n\r\n");
    CHECK(fetch(t, req, &r, false) == 0 && r.status == 431 && r.close, "%s", r.head);
    hresp_free(&r);
    /* 431: 101 fields */
    n = (size_t)sprintf(req, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 100; i++)
        n += (size_t)sprintf(req + n, "X-%d: v\r\n", i);
    strcpy(req + n, "\r\n");
    CHECK(fetch(t, req, &r, false) == 0 && r.status == 431 && r.close, "%s", r.head);
    hresp_free(&r);
    /* ... and 100 fields are fine */
    n = (size_t)sprintf(req, "GET /hello HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 99; i++)
        n += (size_t)sprintf(req + n, "X-%d: v\r\n", i);
    strcpy(req + n, "\r\n");
    CHECK(fetch(t, req, &r, false) == 0 && r.status == 200, "%s", r.head);
    hresp_free(&r);
    free(req);

    /* 413: a length over max_body (1 MiB), without and with 100-continue;
     * and a chunked body going past it.  100 MiB each, sent alongside:
     * memory must not follow. */
    long before = rss_kib();
    big_upload(t, "POST /echo_len HTTP/1.1\r\nHost: a\r\nContent-Length: 104857600\r\n\r\n",
               100 << 20, false, 413, false);
    big_upload(t, "POST /echo_len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
               100 << 20, true, 413, false);
    CHECK(t->read_err == -EMSGSIZE, "the handler read %s", weft_err_name(t->read_err));
    big_upload(t, "POST /echo_chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
               100 << 20, true, 200, true); /* answered already: cut, then closed */
    long grown = rss_kib() - before;
    CHECK(grown < 64 * 1024, "RSS grew by %ld KiB", grown);
}

Test(http_server, limits, .timeout = 120)
{
    t_.client = limits;
    run(&t_);
}

/* ---- timeouts ---------------------------------------------------------------------------- */

typedef struct timed {
    T *t;
    int64_t at; /* when it ended, ms */
    int status;
    int closed;
    bool done;
} timed;

static void slow_head_client(void *arg)
{
    timed *x = arg;
    cli c;
    hresp r;
    CHECK(cli_open(&c, x->t->port) == 0, "connect");
    CHECK(cli_sends(&c, "GET /hello HTTP/1.1\r\nHost: a\r\n") == 0, "s"); /* no end */
    if (read_resp(&c, &r, false) == 0) {
        x->status = r.status;
        x->closed = r.close ? cli_closed(&c, T_MS) : 0;
    }
    x->at = mono_ms();
    hresp_free(&r);
    cli_close(&c);
    x->done = true;
}

static void silent_client(void *arg)
{
    timed *x = arg;
    cli c;
    CHECK(cli_open(&c, x->t->port) == 0, "connect");
    x->closed = cli_closed(&c, T_MS); /* closed without a word */
    x->at = mono_ms();
    cli_close(&c);
    x->done = true;
}

static void header_timeout(T *t)
{
    int64_t t0 = mono_ms();
    timed a = {.t = t}, s = {.t = t};
    weft_go(slow_head_client, &a);
    weft_go(silent_client, &s);
    weft_sleep(50);
    hresp r;
    CHECK(fetch(t, GET("/hello"), &r, false) == 0 && r.status == 200, "normal client");
    int64_t normal_at = mono_ms();
    hresp_free(&r);
    WAIT_UNTIL(a.done && s.done, 2 * T_MS);
    CHECK(a.status == 408 && a.closed == 1, "slow head: %d, closed %d", a.status, a.closed);
    CHECK(s.closed == 1, "silent: %d", s.closed);
    CHECK(a.at - t0 >= 950 && a.at - t0 < T_MS, "408 after %lld ms", (long long)(a.at - t0));
    CHECK(s.at - t0 >= 950 && s.at - t0 < T_MS, "silent closed after %lld ms",
          (long long)(s.at - t0));
    CHECK(normal_at < a.at, "the normal client waited for the slow one");
}

Test(http_server, header_timeout, .timeout = 60)
{
    t_.o.header_timeout_ms = 1000;
    t_.client = header_timeout;
    run(&t_);
}

/* Slowloris: a head a byte at a time, every 100 ms, never whole. */
static void trickle_client(void *arg)
{
    timed *x = arg;
    char head[256];
    int n =
        snprintf(head, sizeof head, "GET /hello HTTP/1.1\r\nHost: a\r\nX-Pad: %0180d\r\n\r\n", 0);
    cli c;
    hresp r = {0};
    int64_t t0 = mono_ms();
    CHECK(cli_open(&c, x->t->port) == 0, "connect");
    ssize_t got = -ETIMEDOUT;
    for (int i = 0; i < n && got == -ETIMEDOUT; i++) {
        if (cli_send(&c, head + i, 1) < 0)
            break; /* refused: what came before it is read below */
        got = cli_fill(&c, 100);
    }
    if (c.len > c.off && read_resp(&c, &r, false) == 0) {
        x->status = r.status;
        x->closed = r.close ? cli_closed(&c, T_MS) : 0;
    } else {
        x->closed = cli_closed(&c, T_MS); /* or closed without a word */
    }
    x->at = mono_ms() - t0;
    hresp_free(&r);
    cli_close(&c);
    x->done = true;
}

/* 50 slowloris connections while a client makes requests, on new
 * connections and on one kept alive: every normal request is answered
 * (while the slow connections are still open), and each slow one gets 408
 * and the close once header_timeout_ms has passed. */
static void slowloris(T *t)
{
    enum { SLOW = 50 };
    timed x[SLOW];
    for (int i = 0; i < SLOW; i++) {
        x[i] = (timed){.t = t};
        weft_go(trickle_client, &x[i]);
    }
    weft_sleep(20);
    cli k;
    CHECK(cli_open(&k, t->port) == 0, "connect");
    int normal = 0, before_first_slow = 0;
    bool all = false;
    for (int w = 0; !all && !failed && w < 2 * T_MS; w += 10) {
        hresp r = {0};
        int rc; /* on a new connection, and on the one kept alive, in turn */
        if (normal % 2)
            rc = fetch(t, GET("/hello"), &r, false);
        else if ((rc = cli_sends(&k, GET("/hello"))) == 0)
            rc = read_resp(&k, &r, false);
        CHECK(rc == 0 && r.status == 200 && r.blen == 5, "request %d: %s", normal,
              weft_err_name(rc));
        hresp_free(&r);
        normal++;
        all = true;
        bool any = false;
        for (int i = 0; i < SLOW; i++) {
            all = all && x[i].done;
            any = any || x[i].done;
        }
        if (!any)
            before_first_slow = normal;
        weft_sleep(10);
    }
    cli_close(&k);
    CHECK(all, "slow connections still open");
    CHECK(before_first_slow > 0, "no request answered while the slow connections were open");
    for (int i = 0; i < SLOW; i++)
        CHECK(x[i].status == 408 && x[i].closed == 1 && x[i].at >= 400,
              "slow %d: %d, closed %d, after %lld ms", i, x[i].status, x[i].closed,
              (long long)x[i].at);
    WAIT_UNTIL(weft_http_server_conn_count(t->srv) == 0, T_MS);
    CHECK(weft_http_server_conn_count(t->srv) == 0, "%zu connections left",
          weft_http_server_conn_count(t->srv));
    cr_log_info("slowloris: %d normal requests, %d before the first 408", normal,
                before_first_slow);
}

Test(http_server, slowloris_50, .timeout = 60)
{
    t_.o.header_timeout_ms = 500;
    t_.client = slowloris;
    run(&t_);
}

static void idle_timeout(T *t)
{
    cli c;
    hresp r;
    CHECK(cli_open(&c, t->port) == 0, "connect");
    CHECK(cli_sends(&c, GET("/hello")) == 0, "s");
    CHECK(read_resp(&c, &r, false) == 0 && r.status == 200 && !r.close, "%s", r.head);
    hresp_free(&r);
    int64_t t0 = mono_ms();
    CHECK(cli_closed(&c, T_MS) == 1, "closed, with no byte (no 408)");
    int64_t el = mono_ms() - t0;
    CHECK(el >= 250 && el < T_MS, "closed after %lld ms", (long long)el);
    cli_close(&c);
}

Test(http_server, idle_timeout, .timeout = 60)
{
    t_.o.idle_timeout_ms = 300;
    t_.client = idle_timeout;
    run(&t_);
}

/* ---- drain --------------------------------------------------------------------------------- */

typedef struct drain_x {
    T *t;
    int slow_status;
    bool slow_close, slow_done, idle_done, drained;
    int idle_closed;
    cli idle;
} drain_x;

static void slow_client(void *arg)
{
    drain_x *x = arg;
    cli c;
    hresp r;
    CHECK(cli_open(&c, x->t->port) == 0, "connect");
    CHECK(cli_sends(&c, GET("/wait")) == 0, "s");
    if (read_resp(&c, &r, false) == 0) {
        x->slow_status = r.status;
        x->slow_close = r.close && cli_closed(&c, T_MS) == 1;
    }
    hresp_free(&r);
    cli_close(&c);
    x->slow_done = true;
}

static void drainer(void *arg)
{
    drain_x *x = arg;
    x->t->drain_rc = weft_http_server_drain(x->t->srv, 2 * T_MS);
    x->drained = true;
}

static void drain_test(T *t)
{
    drain_x x = {.t = t};
    hresp r;
    /* An idle keep-alive connection. */
    CHECK(cli_open(&x.idle, t->port) == 0, "connect");
    CHECK(cli_sends(&x.idle, GET("/hello")) == 0, "s");
    CHECK(read_resp(&x.idle, &r, false) == 0 && r.status == 200, "first");
    hresp_free(&r);
    /* A request in its handler, which waits for t->release. */
    weft_go(slow_client, &x);
    WAIT_UNTIL(t->requests == 2, T_MS);
    weft_go(drainer, &x);
    /* The idle connection closes while the other request is still in its
     * handler (the idle timeout is 60 s: only the drain closes it). */
    x.idle_closed = cli_closed(&x.idle, T_MS);
    CHECK(x.idle_closed == 1, "idle connection: %d", x.idle_closed);
    CHECK(!x.drained && !x.slow_done, "the drain did not wait for the request in progress");
    /* New connections are refused. */
    weft_sock *s;
    int rc = weft_tcp_connect(&s, "127.0.0.1", t->port, T_MS);
    CHECK(rc == -ECONNREFUSED, "connect after drain: %s", weft_err_name(rc));
    if (rc == 0)
        weft_close(s);
    /* The request in progress completes, with Connection: close. */
    t->release = true;
    WAIT_UNTIL(x.slow_done && x.drained, 2 * T_MS);
    CHECK(x.slow_status == 200 && x.slow_close, "slow: %d, close %d", x.slow_status, x.slow_close);
    CHECK(t->slow_done == 1 && x.drained, "the handler completed, then the drain returned");
    cli_close(&x.idle);
}

Test(http_server, drain, .timeout = 60)
{
    t_.no_drain = true;
    t_.client = drain_test;
    run(&t_);
}

/* Stopped while a request is in its handler: its response says
 * Connection: close. */
static void drain_in_handler_client(T *t)
{
    cli c;
    hresp r;
    CHECK(cli_open(&c, t->port) == 0, "connect");
    CHECK(cli_sends(&c, GET("/wait")) == 0, "s");
    WAIT_UNTIL(t->requests == 1, T_MS);
    weft_http_server_stop(t->srv);
    t->release = true;
    CHECK(read_resp(&c, &r, false) == 0 && r.status == 200 && r.close, "%s", r.head);
    CHECK(cli_closed(&c, T_MS) == 1, "closed");
    hresp_free(&r);
    cli_close(&c);
}

Test(http_server, stop_makes_responses_close, .timeout = 60)
{
    t_.client = drain_in_handler_client;
    run(&t_);
}

/* On two loops: idle connections of both close at once. */
static int loops_main(void *arg)
{
    T *t = arg;
    t->o.handler = handler;
    t->o.arg = t;
    t->o.server.on_exit = on_exit_cb;
    t->o.server.host = "127.0.0.1";
    if ((t->start_rc = weft_http_server_start(&t->srv, &t->o)) < 0)
        return 0;
    t->port = weft_http_server_port(t->srv);
    enum { N = 16 };
    cli c[N];
    for (int i = 0; i < N; i++) {
        hresp r;
        CHECK(cli_open(&c[i], t->port) == 0, "connect");
        CHECK(cli_sends(&c[i], GET("/hello")) == 0, "s");
        CHECK(read_resp(&c[i], &r, false) == 0 && r.status == 200, "get %d", i);
        hresp_free(&r);
    }
    /* Only the drain can close them (the idle timeout is 60 s), and it
     * cancels none: they were idle. */
    t->drain_rc = weft_http_server_drain(t->srv, 2 * T_MS);
    for (int i = 0; i < N; i++) {
        CHECK(cli_closed(&c[i], T_MS) == 1, "connection %d", i);
        cli_close(&c[i]);
    }
    weft_http_server_free(t->srv);
    return 0;
}

Test(http_server, drain_two_loops, .timeout = 60)
{
    int fds = count_fds();
    weft_config cfg = {.threads = 2};
    cr_assert_eq(weft_main(loops_main, &t_, &cfg), 0);
    cr_assert_eq(t_.start_rc, 0);
    cr_assert(!failed, "%s", failmsg);
    cr_assert_eq(t_.drain_rc, 0);
    cr_assert_eq(t_.exits, 1);
    cr_assert_eq(count_fds(), fds);
}

/* ---- drain under load -------------------------------------------------------------------- */

enum { LOADERS = 12 };

/* One client's count of what became of its requests. */
typedef struct loader {
    T *t;
    int id;
    bool stop; /* a hang guard: set by the test if the drain never ends them */
    bool done;
    int sent;      /* requests whose bytes all went out */
    int unsent;    /* the connection failed before they were sent whole */
    int complete;  /* answered whole and right */
    int not_begun; /* the connection closed before any byte of their answer */
    int cut;       /* some of an answer, then the close: never allowed */
    int wrong;     /* an answer not whole or not theirs: never allowed */
    int closes;    /* answers that said Connection: close */
    int conns, refused;
    int last_err;
} loader;

/* Reads the answer to /load/<id>/<seq> and sorts it.  Returns whether the
 * connection goes on. */
static bool load_answer(loader *x, cli *c, int seq)
{
    hresp r;
    int rc = read_resp(c, &r, false);
    bool go_on = false;
    if (rc == 0) {
        size_t len = load_len(x->id, seq);
        if (r.status == 200 && r.blen == len && is_pattern(r.body, len, load_seed(x->id, seq))) {
            x->complete++;
        } else {
            x->wrong++;
            x->last_err = r.status;
        }
        if (r.close) {
            x->closes++;
            if (cli_closed(c, T_MS) != 1)
                x->wrong++; /* said close, did not */
        } else {
            go_on = true;
        }
    } else if (!r.head && c->off == c->len && (rc == -ENODATA || rc == -ECONNRESET)) {
        x->not_begun++; /* the client would send it again (RFC 9112 9.3.1) */
    } else {
        x->cut++;
        x->last_err = rc;
    }
    hresp_free(&r);
    return go_on;
}

/* Keep-alive requests one after the other, as fast as they are answered,
 * on a new connection whenever the server closes one, until a connect is
 * refused.  Every third client pipelines two requests at a time; every
 * third sends a body with each. */
static void load_client(void *arg)
{
    loader *x = arg;
    int seq = 0;
    static char pad[20000];
    while (!x->stop) {
        cli c;
        int rc = cli_open(&c, x->t->port);
        if (rc < 0) {
            x->refused++;
            x->last_err = rc;
            cli_close(&c);
            break;
        }
        x->conns++;
        bool go_on = true;
        while (go_on && !x->stop) {
            int k = x->id % 3 == 0 ? 2 : 1;
            bool body = x->id % 3 == 1;
            char req[160];
            size_t n = 0;
            for (int i = 0; i < k; i++)
                n += (size_t)snprintf(req + n, sizeof req - n,
                                      "%s /load/%d/%d HTTP/1.1\r\nHost: a\r\n"
                                      "Content-Length: %zu\r\n\r\n",
                                      body ? "POST" : "GET", x->id, seq + i, body ? sizeof pad : 0);
            if (cli_send(&c, req, n) < 0 || (body && cli_send(&c, pad, sizeof pad) < 0)) {
                /* Closed under the request (the server closed it idle, or
                 * refused it at the drain): never sent whole. */
                x->unsent += k;
                break;
            }
            x->sent += k;
            for (int i = 0; i < k; i++) {
                if (!go_on) {
                    /* The first said close: the second, never read, gets
                     * no answer. */
                    if (cli_closed(&c, T_MS) == 1)
                        x->not_begun++;
                    else
                        x->wrong++;
                    break;
                }
                go_on = load_answer(x, &c, seq + i);
            }
            seq += k;
        }
        cli_close(&c);
    }
    x->done = true;
}

static bool loaders_done(const loader *x)
{
    for (int i = 0; i < LOADERS; i++)
        if (!x[i].done)
            return false;
    return true;
}

/* Clients busy with keep-alive requests while the server drains: every
 * request the handler ran was answered whole and right, and the client
 * saw it; the others found the connection closed before any byte of an
 * answer; none was cut short; the drain cancelled nothing. */
static void drain_load(T *t)
{
    loader x[LOADERS];
    for (int i = 0; i < LOADERS; i++) {
        x[i] = (loader){.t = t, .id = i};
        weft_go(load_client, &x[i]);
    }
    int total = 0;
    for (int w = 0; w < T_MS && total < 300; w += 5) {
        weft_sleep(5);
        total = 0;
        for (int i = 0; i < LOADERS; i++)
            total += x[i].complete;
    }
    CHECK(total >= 300, "only %d answers before the drain", total);
    t->drain_rc = weft_http_server_drain(t->srv, 2 * T_MS);
    WAIT_UNTIL(loaders_done(x), 2 * T_MS);
    CHECK(loaders_done(x), "clients still going after the drain");
    for (int i = 0; i < LOADERS; i++)
        x[i].stop = true;
    WAIT_UNTIL(loaders_done(x), 3 * T_MS); /* x is on this stack */
    int answered = 0, unsent = 0, not_begun = 0, closes = 0;
    for (int i = 0; i < LOADERS; i++) {
        loader *l = &x[i];
        int handled = __atomic_load_n(&t->load_handled[i], __ATOMIC_SEQ_CST);
        CHECK(l->cut == 0 && l->wrong == 0, "client %d: %d cut, %d wrong (last %d)", i, l->cut,
              l->wrong, l->last_err);
        CHECK(l->complete == handled, "client %d: %d requests handled, %d answered", i, handled,
              l->complete);
        CHECK(l->complete + l->not_begun == l->sent,
              "client %d: sent %d, %d answered, %d not begun", i, l->sent, l->complete,
              l->not_begun);
        CHECK(l->refused == 1, "client %d: not refused at the end (%s)", i,
              weft_err_name(l->last_err));
        CHECK(l->complete > 0, "client %d: nothing answered", i);
        answered += l->complete;
        unsent += l->unsent;
        not_begun += l->not_begun;
        closes += l->closes;
    }
    cr_log_info("drain under load: %d answered whole (%d before the drain, %d with "
                "Connection: close), %d not begun, %d not sent whole",
                answered, total, closes, not_begun, unsent);
}

Test(http_server, drain_under_load, .timeout = 120)
{
    t_.no_drain = true;
    t_.client = drain_load;
    run(&t_);
}

/* The same with the server on two loops (the clients on the first). */
Test(http_server, drain_under_load_two_loops, .timeout = 120)
{
    t_.no_drain = true;
    t_.threads = 2;
    t_.client = drain_load;
    run(&t_);
}

/* ---- handlers that answer nothing, or half ------------------------------------------- */

static void half(T *t)
{
    hresp r;
    cli c;
    /* Nothing: 500, and the connection goes on. */
    CHECK(cli_open(&c, t->port) == 0, "connect");
    CHECK(cli_sends(&c, GET("/none") GET("/started_unsent") GET("/n/ok")) == 0, "s");
    CHECK(read_resp(&c, &r, false) == 0 && r.status == 500 && !r.close, "%s", r.head);
    hresp_free(&r);
    CHECK(read_resp(&c, &r, false) == 0 && r.status == 500 && !r.close, "%s", r.head);
    hresp_free(&r);
    CHECK(read_resp(&c, &r, false) == 0 && r.status == 200 && r.blen == 2, "%s", r.head);
    hresp_free(&r);
    /* HEAD of nothing: 500 without a body. */
    CHECK(cli_sends(&c, "HEAD /none HTTP/1.1\r\nHost: a\r\n\r\n" GET("/n/ok")) == 0, "s");
    CHECK(read_resp(&c, &r, true) == 0 && r.status == 500, "%s", r.head);
    hresp_free(&r);
    CHECK(read_resp(&c, &r, false) == 0 && r.status == 200 && r.blen == 2, "%s", r.head);
    hresp_free(&r);
    cli_close(&c);
    /* Half a body of declared length: closed, never complete. */
    CHECK(cli_open(&c, t->port) == 0, "connect");
    CHECK(cli_sends(&c, GET("/partial")) == 0, "s");
    int rc = read_resp(&c, &r, false);
    CHECK(rc == -ENODATA && r.status == 200 && r.cl == 100, "%s: %s", weft_err_name(rc), r.head);
    hresp_free(&r);
    cli_close(&c);
    /* Half a chunked body: closed without the last chunk. */
    CHECK(cli_open(&c, t->port) == 0, "connect");
    CHECK(cli_sends(&c, GET("/partial_chunked")) == 0, "s");
    rc = read_resp(&c, &r, false);
    CHECK(rc == -ENODATA && r.status == 200 && r.chunked, "%s: %s", weft_err_name(rc), r.head);
    hresp_free(&r);
    cli_close(&c);
    /* end() short of the length: -EPROTO, and closed. */
    CHECK(cli_open(&c, t->port) == 0, "connect");
    CHECK(cli_sends(&c, GET("/short_end")) == 0, "s");
    rc = read_resp(&c, &r, false);
    CHECK(rc == -ENODATA && r.cl == 10, "%s: %s", weft_err_name(rc), r.head);
    hresp_free(&r);
    cli_close(&c);
    /* 204: no body, no length; the handler's own close. */
    CHECK(cli_open(&c, t->port) == 0, "connect");
    CHECK(cli_sends(&c, GET("/no_content") GET("/close")) == 0, "s");
    CHECK(read_resp(&c, &r, false) == 0 && r.status == 204 && !r.has_cl && !r.chunked, "%s",
          r.head);
    hresp_free(&r);
    CHECK(read_resp(&c, &r, false) == 0 && r.status == 200 && r.close && r.blen == 3, "%s", r.head);
    hresp_free(&r);
    CHECK(cli_closed(&c, T_MS) == 1, "closed");
    cli_close(&c);
}

Test(http_server, handler_answers_nothing_or_half, .timeout = 60)
{
    t_.client = half;
    run(&t_);
    cr_assert_eq(t_.none_calls, 2);
    cr_assert_eq(t_.nmisuse, 3);
    cr_assert_eq(t_.misuse[0], -EPROTO);
    cr_assert_eq(t_.misuse[1], -EINVAL);
    cr_assert_eq(t_.misuse[2], 0);
}

static void misuse_client(T *t)
{
    hresp r;
    int rc = fetch(t, GET("/misuse"), &r, false);
    CHECK(rc == 0 && r.status == 200 && r.blen == 5 && memcmp(r.body, "hello", 5) == 0, "%s %s",
          weft_err_name(rc), r.head);
    CHECK(strstr(r.head, "\r\nX-Ok: fine\r\n") && !strstr(r.head, "Injected") &&
              !strstr(r.head, "X-Late"),
          "%s", r.head);
    hresp_free(&r);
}

Test(http_server, response_misuse, .timeout = 60)
{
    t_.client = misuse_client;
    run(&t_);
    static const int want[] = {
        -EINVAL,   -EINVAL, -EINVAL,   -EINVAL, -EINVAL, -EINVAL, -EINVAL,   -EINVAL,   0,
        -EINVAL,   -EINVAL, -EINVAL,   -EINVAL, -EINVAL, -EINVAL, 0,         -EALREADY, -EALREADY,
        -EMSGSIZE, 3,       -EMSGSIZE, 2,       0,       0,       -EALREADY, -EALREADY, -EALREADY,
    };
    cr_assert_eq(t_.nmisuse, (int)(sizeof want / sizeof want[0]));
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert_eq(t_.misuse[i], want[i], "call %zu: %s, want %s", i, weft_err_name(t_.misuse[i]),
                     weft_err_name(want[i]));
}

/* ---- many clients -------------------------------------------------------------------------- */

typedef struct rst_x {
    T *t;
    int done, ok;
} rst_x;

static void rst_client(void *arg)
{
    rst_x *x = arg;
    cli c;
    if (cli_open(&c, x->t->port) == 0 && cli_sends(&c, GET("/big?n=8388608")) == 0 &&
        cli_need(&c, 65536) == 0) {
        x->ok++;
        weft_reset(c.s); /* mid-response */
        c.s = NULL;
    }
    cli_close(&c);
    x->done++;
}

static void rst_test(T *t)
{
    rst_x x = {.t = t};
    for (int i = 0; i < 50; i++)
        weft_go(rst_client, &x);
    WAIT_UNTIL(x.done == 50, 2 * T_MS);
    CHECK(x.ok == 50, "%d clients got a part of their response", x.ok);
    WAIT_UNTIL(weft_http_server_conn_count(t->srv) == 0, 2 * T_MS);
    CHECK(weft_http_server_conn_count(t->srv) == 0, "%zu connections left",
          weft_http_server_conn_count(t->srv));
    hresp r;
    CHECK(fetch(t, GET("/hello"), &r, false) == 0 && r.status == 200, "served after");
    hresp_free(&r);
}

Test(http_server, clients_reset_mid_response, .timeout = 120)
{
    t_.client = rst_test;
    run(&t_);
}

static void idle_200(T *t)
{
    enum { N = 200 };
    cli *c = calloc(N, sizeof *c);
    for (int i = 0; i < N && !failed; i++) {
        hresp r;
        CHECK(cli_open(&c[i], t->port) == 0, "connect %d", i);
        CHECK(cli_sends(&c[i], GET("/hello")) == 0, "s");
        CHECK(read_resp(&c[i], &r, false) == 0 && r.status == 200, "get %d", i);
        hresp_free(&r);
    }
    CHECK(weft_http_server_conn_count(t->srv) == N, "%zu open",
          weft_http_server_conn_count(t->srv));
    weft_sleep(1200);                 /* past the time an idle connection keeps its buffer */
    for (int i = 0; i < N; i += 37) { /* still served */
        hresp r;
        CHECK(cli_sends(&c[i], GET("/n/again")) == 0, "s");
        CHECK(read_resp(&c[i], &r, false) == 0 && r.blen == 5, "again %d", i);
        hresp_free(&r);
    }
    for (int i = 0; i < N; i++)
        cli_close(&c[i]);
    WAIT_UNTIL(weft_http_server_conn_count(t->srv) == 0, T_MS);
    CHECK(weft_http_server_conn_count(t->srv) == 0, "%zu left",
          weft_http_server_conn_count(t->srv));
    free(c);
}

Test(http_server, idle_200_connections, .timeout = 120)
{
    raise_nofile();
    t_.client = idle_200;
    run(&t_);
}

/* ---- files -------------------------------------------------------------------------------- */

static char tmpdir[64];

static void make_file(T *t, size_t n)
{
    strcpy(tmpdir, "/tmp/weft-http-XXXXXX");
    cr_assert(mkdtemp(tmpdir));
    static char path[128];
    snprintf(path, sizeof path, "%s/file", tmpdir);
    unsigned char *b = malloc(n);
    fill_at(b, 0, n, 5);
    FILE *f = fopen(path, "wb");
    cr_assert(f && fwrite(b, 1, n, f) == n);
    fclose(f);
    free(b);
    t->file = path;
    t->file_len = n;
}

static void remove_file(T *t)
{
    unlink(t->file);
    char p[128];
    snprintf(p, sizeof p, "%s/cert.pem", tmpdir);
    unlink(p);
    snprintf(p, sizeof p, "%s/key.pem", tmpdir);
    unlink(p);
    snprintf(p, sizeof p, "%s/out", tmpdir);
    unlink(p);
    snprintf(p, sizeof p, "%s/err", tmpdir);
    unlink(p);
    snprintf(p, sizeof p, "%s/hdr", tmpdir);
    unlink(p);
    rmdir(tmpdir);
}

static void file_client(T *t)
{
    cli c;
    hresp r;
    CHECK(cli_open(&c, t->port) == 0, "connect");
    CHECK(cli_sends(&c, GET("/file") "HEAD /file HTTP/1.1\r\nHost: a\r\n\r\n" GET("/n/x")) == 0,
          "s");
    CHECK(read_resp(&c, &r, false) == 0 && r.status == 200 && r.blen == t->file_len, "%s", r.head);
    CHECK(r.blen == t->file_len && is_pattern(r.body, t->file_len, 5), "file differs");
    hresp_free(&r);
    CHECK(read_resp(&c, &r, true) == 0 && r.cl == (long long)t->file_len, "%s", r.head);
    hresp_free(&r);
    CHECK(read_resp(&c, &r, false) == 0 && r.blen == 1, "%s", r.head);
    hresp_free(&r);
    cli_close(&c);
}

Test(http_server, sendfile, .timeout = 60)
{
    make_file(&t_, 5 << 20);
    t_.client = file_client;
    run(&t_);
    remove_file(&t_);
    cr_assert_eq(t_.misuse[0], 0);
    cr_assert_eq(t_.misuse[1], 0);
}

/* sendfile(2) and pread(2) failing through the fault seam, at the start
 * of the body and in its middle: the handler sees the error, the client
 * the head, a true prefix of the body and the close (never a hang); and
 * sendfile's EINVAL or ENOSYS before any byte is a fallback to pread and
 * send, which sends the whole file. */
enum { WHOLE = -1, SHORT = -2 };

static const struct file_fault {
    unsigned sf_nth, pr_nth; /* which sendfile and pread calls fail (0: none) */
    int sf_err, pr_err;
    int want_rc;    /* what the handler's weft_http_resp_sendfile returns */
    long want_body; /* bytes the client gets: WHOLE, SHORT (0 < n < all), or n */
} file_faults[] = {
    {1, 0, EIO, 0, -EIO, 0},              /* sendfile fails at once */
    {2, 0, EIO, 0, -EIO, SHORT},          /* ... in the middle of the body */
    {1, 0, EINVAL, 0, 0, WHOLE},          /* cannot sendfile from it: copied */
    {1, 0, ENOSYS, 0, 0, WHOLE},          /* no sendfile: copied */
    {2, 0, EINVAL, 0, -EINVAL, SHORT},    /* after bytes went: no fallback */
    {1, 1, EINVAL, EIO, -EIO, 0},         /* copied, and the first read fails */
    {1, 3, EINVAL, EIO, -EIO, 2 * 65536}, /* ... the third read (64 KiB each) */
};

static void file_fault_client(T *t)
{
    size_t n = sizeof file_faults / sizeof file_faults[0];
    for (size_t i = 0; i < n && !failed; i++) {
        const struct file_fault *f = &file_faults[i];
        weft_fault_clear();
        weft_fault_set(WEFT_FAULT_SENDFILE, f->sf_nth, f->sf_err);
        weft_fault_set(WEFT_FAULT_PREAD, f->pr_nth, f->pr_err);
        hresp r;
        int rc = fetch(t, GET("/file"), &r, false);
        unsigned long fired = weft_fault_fired(), preads = weft_fault_calls(WEFT_FAULT_PREAD);
        weft_fault_clear();
        CHECK(fired == (f->pr_nth ? 2u : 1u), "case %zu: %lu faults fired", i, fired);
        CHECK(r.head && r.status == 200 && r.cl == (long long)t->file_len, "case %zu: %s", i,
              r.head ? r.head : weft_err_name(rc));
        CHECK(is_pattern(r.body, r.blen, 5), "case %zu: the bytes received differ", i);
        if (f->want_body == WHOLE) {
            CHECK(rc == 0 && r.blen == t->file_len, "case %zu: %s, %zu bytes", i, weft_err_name(rc),
                  r.blen);
            CHECK(preads > 0, "case %zu: not copied", i);
        } else {
            /* The close, before the length the head promised. */
            CHECK(rc == -ENODATA, "case %zu: %s", i, weft_err_name(rc));
            if (f->want_body == SHORT)
                CHECK(r.blen > 0 && r.blen < t->file_len, "case %zu: %zu bytes", i, r.blen);
            else
                CHECK(r.blen == (size_t)f->want_body, "case %zu: %zu bytes", i, r.blen);
        }
        CHECK(t->misuse[i] == f->want_rc, "case %zu: sendfile returned %s", i,
              weft_err_name(t->misuse[i]));
        hresp_free(&r);
        rc = fetch(t, GET("/hello"), &r, false);
        CHECK(rc == 0 && r.status == 200, "after case %zu: %s", i, weft_err_name(rc));
        hresp_free(&r);
    }
}

Test(http_server, sendfile_faults, .timeout = 60)
{
    /* Larger than the socket's buffers: the first sendfile sends part. */
    make_file(&t_, 8 << 20);
    t_.client = file_fault_client;
    run(&t_);
    remove_file(&t_);
    cr_assert_eq(t_.nmisuse, (int)(sizeof file_faults / sizeof file_faults[0]));
}

/* ---- curl ---------------------------------------------------------------------------------- */

typedef struct shell {
    const char *cmd;
    int rc;
} shell;

static void run_shell(void *arg)
{
    shell *s = arg;
    s->rc = system(s->cmd);
}

/* Runs cmd on a worker thread (the loop serves meanwhile); its exit code. */
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    shell s = {cmd, -1};
    if (weft_blocking(run_shell, &s, -1) < 0)
        return -1;
    return WIFEXITED(s.rc) ? WEXITSTATUS(s.rc) : -1;
}

static bool file_is(const char *path, const char *text)
{
    char buf[256] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    return n == strlen(text) && memcmp(buf, text, n) == 0;
}

static void curl_client(T *t)
{
    char out[128], err[128], hdr[128];
    snprintf(out, sizeof out, "%s/out", tmpdir);
    snprintf(err, sizeof err, "%s/err", tmpdir);
    snprintf(hdr, sizeof hdr, "%s/hdr", tmpdir);
    /* Keep-alive: two URLs, one connection. */
    int rc = sh("curl -s --http1.1 -o /dev/null -o /dev/null -w '%%{http_code} %%{num_connects}\\n'"
                " http://127.0.0.1:%d/hello http://127.0.0.1:%d/hello >%s 2>%s",
                t->port, t->port, out, err);
    CHECK(rc == 0 && file_is(out, "200 1\n200 0\n"), "curl keep-alive: rc %d", rc);
    /* A chunked download, byte-exact. */
    rc = sh("curl -s --http1.1 -D %s -o %s http://127.0.0.1:%d/bigchunked?n=3000000", hdr, out,
            t->port);
    CHECK(rc == 0, "curl chunked: %d", rc);
    CHECK(sh("grep -qi '^transfer-encoding: chunked' %s", hdr) == 0, "not chunked");
    FILE *f = fopen(out, "rb");
    unsigned char *got = malloc(3000001);
    size_t n = f ? fread(got, 1, 3000001, f) : 0;
    if (f)
        fclose(f);
    CHECK(n == 3000000 && is_pattern(got, n, 7), "curl got %zu bytes", n);
    free(got);
    /* HEAD */
    rc = sh("curl -s --http1.1 -I http://127.0.0.1:%d/hello >%s", t->port, out);
    CHECK(rc == 0 && sh("grep -q '^HTTP/1.1 200' %s", out) == 0 &&
              sh("grep -qi '^content-length: 5' %s", out) == 0 &&
              sh("grep -qi '^date: ' %s", out) == 0,
          "curl -I");
    /* A POST, with curl's own Expect: 100-continue (over 1 KiB). */
    rc = sh("head -c 200000 /dev/zero | curl -s --http1.1 -H 'Expect: 100-continue' "
            "--data-binary @- -o %s -w '%%{http_code}' http://127.0.0.1:%d/echo_len >%s",
            hdr, t->port, err);
    CHECK(rc == 0 && file_is(err, "200"), "curl POST: %d", rc);
    struct stat st;
    CHECK(stat(hdr, &st) == 0 && st.st_size == 200000, "echoed %lld", (long long)st.st_size);
}

static bool have(const char *tool)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", tool);
    return system(cmd) == 0;
}

Test(http_server, curl, .timeout = 120)
{
    if (!have("curl"))
        cr_skip_test("curl is not installed");
    make_file(&t_, 1000);
    t_.client = curl_client;
    run(&t_);
    remove_file(&t_);
}

static void curl_tls_client(T *t)
{
    char out[128], err[128];
    snprintf(out, sizeof out, "%s/out", tmpdir);
    snprintf(err, sizeof err, "%s/err", tmpdir);
    int rc = sh("curl -sk -v --http1.1 -o %s https://127.0.0.1:%d/hello 2>%s", out, t->port, err);
    CHECK(rc == 0 && file_is(out, "hello"), "curl https: %d", rc);
    CHECK(sh("grep -qi 'ALPN.*accepted.*http/1.1' %s", err) == 0, "ALPN not http/1.1");
    /* A file through TLS: read and sent by the TLS layer. */
    rc = sh("curl -sk --http1.1 -o %s https://127.0.0.1:%d/file", out, t->port);
    CHECK(rc == 0 && sh("cmp -s %s %s", out, t->file) == 0, "file through TLS differs");
}

Test(http_server, curl_tls_alpn, .timeout = 120)
{
    if (!have("curl") || !have("openssl"))
        cr_skip_test("curl or openssl is not installed");
    make_file(&t_, 300000);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -keyout %s/key.pem "
             "-out %s/cert.pem >/dev/null 2>&1",
             tmpdir, tmpdir);
    cr_assert_eq(system(cmd), 0);
    static char certp[128], keyp[128];
    snprintf(certp, sizeof certp, "%s/cert.pem", tmpdir);
    snprintf(keyp, sizeof keyp, "%s/key.pem", tmpdir);
    t_.o.server.cert_file = certp;
    t_.o.server.key_file = keyp;
    t_.client = curl_tls_client;
    run(&t_);
    remove_file(&t_);
}

/* ---- allocation failures ------------------------------------------------------------------ */

/* The Nth allocation of this thread fails, for N = 1, 2, ...: a request
 * is answered whole, or with a 5xx, or its connection closes; never a
 * crash, a hang or a leak, and the next request is served. */
static void alloc_faults(T *t)
{
    int answered = 0;
    for (unsigned n = 1; n <= 30 && !failed; n++) {
        hresp r;
        weft_fault_set(WEFT_FAULT_MALLOC, n, ENOMEM);
        int rc = fetch(t,
                       "POST /echo_len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                       "X-Pad: 1\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                       &r, false);
        bool fired = weft_fault_fired() > 0;
        weft_fault_clear();
        if (rc == 0 && r.status == 200)
            CHECK(r.blen == 5 && memcmp(r.body, "hello", 5) == 0, "fault %u: %.*s", n, (int)r.blen,
                  r.body);
        else if (rc == 0)
            CHECK(r.status >= 500, "fault %u: status %d", n, r.status);
        answered += rc == 0 && r.status == 200 && !fired;
        hresp_free(&r);
        rc = fetch(t, GET("/hello"), &r, false);
        CHECK(rc == 0 && r.status == 200, "after fault %u: %s", n, weft_err_name(rc));
        hresp_free(&r);
    }
    CHECK(answered > 0, "the faults never ran out");
}

Test(http_server, allocation_failures, .timeout = 120)
{
    t_.client = alloc_faults;
    run(&t_);
}

/* ---- starting ------------------------------------------------------------------------------ */

static void nothing(weft_http_req *r, weft_http_resp *w, void *arg)
{
    (void)r, (void)w, (void)arg;
}

static void dummy_conn(weft_sock *c, void *arg)
{
    (void)c, (void)arg;
}

static int bad_opts_main(void *arg)
{
    int *rc = arg;
    weft_http_server *s = NULL;
    weft_http_server_opts o = {.server.host = "127.0.0.1"};
    rc[0] = weft_http_server_start(&s, &o); /* no handler */
    o.handler = nothing;
    o.server.on_conn = dummy_conn;
    rc[1] = weft_http_server_start(&s, &o);
    o.server.on_conn = NULL;
    o.idle_timeout_ms = -2;
    rc[2] = weft_http_server_start(&s, &o);
    o.idle_timeout_ms = 0;
    rc[3] = weft_http_server_start(NULL, &o);
    o.server.cert_file = "/nonexistent/cert.pem";
    rc[4] = weft_http_server_start(&s, &o);
    o.server.cert_file = NULL;
    o.max_requests = -2;
    rc[7] = weft_http_server_start(&s, &o);
    o.max_requests = 0;
    rc[5] = weft_http_server_start(&s, &o);
    if (rc[5] == 0) {
        rc[6] = weft_http_server_port(s) > 0 ? 0 : -1;
        weft_http_server_free(s);
        weft_http_server_free(NULL);
    }
    return 0;
}

Test(http_server, bad_options, .timeout = 60)
{
    int rc[8] = {0};
    weft_http_server *s = NULL;
    weft_http_server_opts o = {.handler = nothing};
    cr_assert_eq(weft_http_server_start(&s, &o), -EPERM, "no loop");
    cr_assert_eq(weft_main(bad_opts_main, rc, NULL), 0);
    cr_assert_eq(rc[0], -EINVAL);
    cr_assert_eq(rc[1], -EINVAL);
    cr_assert_eq(rc[2], -EINVAL);
    cr_assert_eq(rc[3], -EINVAL);
    cr_assert_eq(rc[4], WEFT_ETLS_CERT);
    cr_assert_eq(rc[5], 0);
    cr_assert_eq(rc[6], 0);
    cr_assert_eq(rc[7], -EINVAL, "max_requests -2: %s", weft_err_name(rc[7]));
    cr_assert_eq(weft_http_server_port(NULL), -EINVAL);
    cr_assert_eq(weft_http_server_drain(NULL, 0), -EINVAL);
}
