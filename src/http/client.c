/*
 * client.c - the HTTP/1.1 client of weft/http.h, on weft_connpool: an
 * exchange takes a connection from the pool of its scheme, sends the
 * request head (and a body given whole, in the same call), reads the
 * response head into the response's own buffer and parses it in place
 * (parse.h); the body is then read through the response, and the
 * connection goes back to the pool at the body's end.
 *
 * Memory.  A response owns one buffer: the head, then room for the body's
 * bytes.  The head's strings point into it, so when it has to grow they
 * are moved along with it (rebase).  A body of known length beyond what
 * arrived with the head is received straight into the caller's buffer; a
 * chunked one goes through the room after the head.
 *
 * Retries (golang/go#22158).  A server may close an idle keep-alive
 * connection just as a request goes out on it.  The request then fails
 * with a reset, a broken pipe or an end of stream before any byte of a
 * response; it is sent again, on another connection, if doing it twice
 * would be harmless (an idempotent method and a body that can be sent
 * again) or if nothing of it was written.  Only a reused connection earns
 * a retry: on a new one the same failure is the server's answer.
 */
#include "http/parse.h"
#include "http/trailers.h"
#include "http/url.h"
#include "internal.h"
#include "net/sock.h"
#include "srv/connpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>

#define BUF_START 4096                   /* a response's buffer, to begin with */
#define FIELDS_IN 32                     /* a response's fields without an allocation */
#define BODY_ROOM 4096                   /* room after the head for a chunked body */
#define SEND_CHUNK 16384                 /* a streamed request body, per body_read */
#define DRAIN_MAX 65536                  /* a redirect's body read to keep its connection */
#define RETRY_MAX 8                      /* sends of one request on reused connections */
#define DEF_MAX_BODY ((uint64_t)64 << 20) /* weft_http_response_body */
#define HEAD_CAP ((size_t)1 << 30)       /* the parser's own clamp */

struct weft_http_client {
    weft_connpool *plain;  /* http:// */
    weft_connpool *secure; /* https://; NULL in a build without TLS */
    weft__http_limits lim;
    uint64_t max_body;
    int max_redirects;
};

/* One exchange, across its redirects and retries. */
typedef struct hc_ex {
    weft_http_client *c;
    const weft_http_request *rq;
    const char *method; /* now: a redirect may turn it into GET */
    bool method_own;    /* method is rq's (else a literal) */
    bool body;          /* the request now carries rq's body */
    bool close;         /* the caller asked for Connection: close */
    bool strip;         /* redirected to another host: no Authorization, Cookie or Host of rq's */
    bool has_host, has_agent;
    weft__http_url url;
    int64_t dl; /* ns */
} hc_ex;

typedef struct hc_resp {
    weft_http_response pub; /* first: the caller's pointer is to it */
    weft_connpool *pool;
    weft_sock *sock;        /* NULL once given back or closed */
    bool keep;              /* both sides would keep the connection */
    char *buf;              /* the head, then body bytes buf[off..len) */
    size_t cap, off, len;
    size_t floor;           /* the head's end: below it nothing is dropped */
    weft__http_header *raw; /* the parser's fields (into buf): raw_in, or malloc'd */
    weft_http_header *hdrs; /* the caller's view of them: hdrs_in, or malloc'd */
    size_t hcap;            /* raw's entries */
    /* Most heads have a few fields: the arrays for them come with the
     * response, and a head with more takes the client's limit's worth. */
    weft__http_header raw_in[FIELDS_IN];
    weft_http_header hdrs_in[FIELDS_IN];
    int body;               /* WEFT__HTTP_BODY_* */
    uint64_t left;          /* a body of known length: bytes to go */
    weft__http_chunked ch;
    weft__http_trailers tr; /* a chunked body's */
    bool done;
    int err;     /* a read's failure, returned again */
    int64_t dl;  /* the exchange's deadline, ns */
    char *url;
    uint64_t max_body;
} hc_resp;

/* The earlier of two ns deadlines. */
static int64_t earlier(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* ---- the client ------------------------------------------------------------------- */

int weft_http_client_new(weft_http_client **out, const weft_http_client_opts *o)
{
    weft_http_client_opts d = o ? *o : (weft_http_client_opts){0};
    if (!out || d.max_idle_per_host < 0 || d.max_per_host < 0 || d.idle_timeout_ms < -1 ||
        d.max_redirects < 0)
        return -EINVAL;
#ifndef WEFT_WITH_TLS
    if (d.tls || d.ca_file)
        return -ENOTSUP;
#endif
    weft_http_client *c = weft__sys_calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->lim.head_max = d.max_header_bytes ? (d.max_header_bytes < HEAD_CAP ? d.max_header_bytes : HEAD_CAP)
                                         : WEFT__HTTP_HEAD_MAX;
    c->lim.headers_max = d.max_headers ? (d.max_headers < 65536 ? d.max_headers : 65536)
                                       : WEFT__HTTP_HEADERS_MAX;
    c->lim.line_max = WEFT__HTTP_LINE_MAX;
    c->max_body = d.max_body ? d.max_body : DEF_MAX_BODY;
    c->max_redirects = d.max_redirects;
    weft_connpool_opts po = {
        .max_idle_per_host = d.max_idle_per_host,
        .max_per_host = d.max_per_host,
        .idle_timeout_ms = d.idle_timeout_ms,
    };
    int rc = weft_connpool_new(&c->plain, &po);
    if (rc < 0) {
        free(c);
        return rc;
    }
#ifdef WEFT_WITH_TLS
    bool own = !d.tls;
    po.tls = d.tls;
    if (own) {
        weft_tls_opts to = {.ca_file = d.ca_file, .alpn = "http/1.1"};
        rc = weft_tls_ctx_new(&po.tls, WEFT_TLS_CLIENT, &to);
    }
    if (rc == 0) {
        rc = weft_connpool_new(&c->secure, &po);
        if (rc < 0 && own)
            weft_tls_ctx_free(po.tls);
        else if (own)
            weft__connpool_own_tls(c->secure);
    }
    if (rc < 0) {
        weft_connpool_free(c->plain);
        free(c);
        return rc;
    }
#endif
    *out = c;
    return 0;
}

void weft_http_client_free(weft_http_client *c)
{
    if (!c)
        return;
    weft_connpool_free(c->plain);
    weft_connpool_free(c->secure);
    free(c);
}

/* ---- responses -------------------------------------------------------------------- */

/* Gives r's connection back (kept if both sides would, and nothing came
 * after the response), or closes it. */
static void let_go(hc_resp *r, bool keep)
{
    if (!r->sock)
        return;
    weft_connpool_put(r->pool, r->sock, keep && r->keep && r->off == r->len);
    r->sock = NULL;
}

static ssize_t fail(hc_resp *r, ssize_t err)
{
    r->err = (int)err;
    let_go(r, false);
    return err;
}

static void finished(hc_resp *r)
{
    r->done = true;
    let_go(r, true);
}

void weft_http_response_free(weft_http_response *pub)
{
    hc_resp *r = (hc_resp *)pub;
    if (!r)
        return;
    let_go(r, false);
    free(r->buf);
    if (r->raw != r->raw_in)
        free(r->raw);
    if (r->hdrs != r->hdrs_in)
        free(r->hdrs);
    free(r->url);
    weft__http_trailers_free(&r->tr);
    free(r);
}

/* Grows r's buffer to cap, moving the head's strings along. */
static bool grow(hc_resp *r, size_t cap)
{
    size_t rs = r->pub.reason.p ? (size_t)(r->pub.reason.p - r->buf) : 0;
    for (size_t i = 0; i < r->pub.nheaders; i++) {
        r->raw[i].name.p = (const char *)(uintptr_t)(r->raw[i].name.p - r->buf);
        r->raw[i].value.p = (const char *)(uintptr_t)(r->raw[i].value.p - r->buf);
    }
    char *b = weft__sys_realloc(r->buf, cap);
    if (b) {
        r->buf = b;
        r->cap = cap;
    }
    if (r->pub.reason.p)
        r->pub.reason.p = r->buf + rs;
    for (size_t i = 0; i < r->pub.nheaders; i++) {
        r->raw[i].name.p = r->buf + (uintptr_t)r->raw[i].name.p;
        r->raw[i].value.p = r->buf + (uintptr_t)r->raw[i].value.p;
        r->hdrs[i].name.p = r->raw[i].name.p;
        r->hdrs[i].value.p = r->raw[i].value.p;
    }
    return b != NULL;
}

/* Reads the response head into r (1xx heads skipped).  *got tells whether
 * any byte of a response arrived. */
static int read_head(hc_resp *r, const weft__http_limits *lim, bool head_req, bool *got)
{
    weft__http_response pr;
    size_t last = 0;
    for (;;) {
        if (r->len > r->off) {
            pr = (weft__http_response){
                .headers = r->raw, .headers_cap = r->hcap, .head_request = head_req};
            int n = weft__http_parse_response(&pr, r->buf + r->off, r->len - r->off, last, lim);
            if (n == -EBADMSG && pr.error == 431 && r->raw == r->raw_in &&
                r->hcap < lim->headers_max) {
                /* More fields than the inline array: the whole limit's
                 * worth, and the head parsed again. */
                if (!(r->raw = weft__sys_malloc(lim->headers_max * sizeof *r->raw))) {
                    r->raw = r->raw_in;
                    return -ENOMEM;
                }
                r->hcap = lim->headers_max;
                last = 0;
                continue;
            }
            if (n == -EBADMSG)
                return pr.error == 414 || pr.error == 431 ? -EMSGSIZE : -EBADMSG;
            if (n > 0 && pr.status == 101)
                return -EPROTO;
            if (n > 0 && pr.status < 200) { /* 100, 102, 103: the real one follows */
                r->off += (size_t)n;
                last = 0;
                continue;
            }
            if (n > 0) {
                r->off += (size_t)n;
                r->floor = r->off;
                break;
            }
            last = r->len - r->off;
        }
        if (r->off > 0) { /* after a 1xx: its bytes go */
            memmove(r->buf, r->buf + r->off, r->len - r->off);
            r->len -= r->off;
            r->off = 0;
        }
        if (r->len == r->cap && !grow(r, r->cap * 2 < lim->head_max ? r->cap * 2 : lim->head_max))
            return -ENOMEM;
        ssize_t k = weft_recv(r->sock, r->buf + r->len, r->cap - r->len, weft__ms_left(r->dl));
        if (k <= 0)
            return k == 0 ? -ECONNRESET : (int)k;
        *got = true;
        r->len += (size_t)k;
    }
    weft_http_response *p = &r->pub;
    p->status = pr.status;
    p->minor = pr.minor;
    p->reason.p = pr.reason.p;
    p->reason.n = pr.reason.n;
    p->nheaders = pr.nheaders;
    r->hdrs = pr.nheaders <= FIELDS_IN ? r->hdrs_in
                                       : weft__sys_malloc(pr.nheaders * sizeof *r->hdrs);
    if (!r->hdrs)
        return -ENOMEM;
    for (size_t i = 0; i < pr.nheaders; i++) {
        r->hdrs[i].name = (weft_http_str){r->raw[i].name.p, r->raw[i].name.n};
        r->hdrs[i].value = (weft_http_str){r->raw[i].value.p, r->raw[i].value.n};
    }
    p->headers = r->hdrs;
    r->body = pr.body;
    r->keep = pr.keep_alive;
    p->chunked = pr.body == WEFT__HTTP_BODY_CHUNKED;
    p->content_length = pr.body == WEFT__HTTP_BODY_NONE     ? 0
                        : pr.body == WEFT__HTTP_BODY_LENGTH ? (int64_t)pr.content_length
                                                            : -1;
    r->left = pr.content_length;
    if (p->chunked) {
        weft__http_chunked_init(&r->ch, NULL);
        if (r->cap - r->floor < BODY_ROOM && !grow(r, r->floor + BODY_ROOM))
            return -ENOMEM;
    }
    return 0;
}

weft_http_str weft_http_response_header(const weft_http_response *pub, const char *name)
{
    const hc_resp *r = (const hc_resp *)pub;
    weft_http_str none = {NULL, 0};
    if (!r || !name)
        return none;
    const weft__http_header *h = weft__http_header_next(r->raw, r->pub.nheaders, name, NULL);
    return h ? (weft_http_str){h->value.p, h->value.n} : none;
}

/* Receives more bytes into the room after the head. */
static ssize_t fill(hc_resp *r, int64_t dl)
{
    if (r->off == r->len)
        r->off = r->len = r->floor;
    ssize_t k = weft_recv(r->sock, r->buf + r->len, r->cap - r->len, weft__ms_left(dl));
    if (k > 0)
        r->len += (size_t)k;
    return k;
}

static ssize_t read_chunked(hc_resp *r, char *dst, size_t n, int64_t dl)
{
    for (;;) {
        if (r->off < r->len) {
            size_t in = r->len - r->off < n ? r->len - r->off : n; /* a span fits dst */
            size_t used;
            weft__http_str span;
            int st = weft__http_chunked_feed(&r->ch, r->buf + r->off, in, &used, &span);
            if (st < 0)
                return fail(r, -EBADMSG);
            r->off += used;
            if (st == WEFT__HTTP_CHUNK_DATA) {
                memcpy(dst, span.p, span.n);
                return (ssize_t)span.n;
            }
            if (st != WEFT__HTTP_CHUNK_MORE && weft__http_trailers_add(&r->tr, span) < 0)
                return fail(r, -ENOMEM);
            if (st == WEFT__HTTP_CHUNK_DONE) {
                int rc = weft__http_trailers_parse(&r->tr, &r->ch);
                if (rc < 0)
                    return fail(r, rc);
                finished(r);
                return 0;
            }
            continue; /* framing, or trailer bytes kept */
        }
        ssize_t k = fill(r, dl);
        if (k == -ETIMEDOUT || k == -ECANCELED)
            return k; /* the body can be read on */
        if (k <= 0)
            return fail(r, k == 0 ? -ECONNRESET : k);
    }
}

weft_http_str weft_http_response_trailer(const weft_http_response *pub, const char *name)
{
    const hc_resp *r = (const hc_resp *)pub;
    weft_http_str none = {NULL, 0};
    if (!r || !name)
        return none;
    weft__http_str v = weft__http_trailers_get(&r->tr, name);
    return (weft_http_str){v.p, v.n};
}

ssize_t weft_http_response_read(weft_http_response *pub, void *buf, size_t n, int64_t timeout_ms)
{
    hc_resp *r = (hc_resp *)pub;
    if (!r || (!buf && n > 0))
        return -EINVAL;
    if (r->err)
        return r->err;
    if (r->done)
        return 0;
    if (n == 0)
        return 0;
    int64_t dl = earlier(weft__deadline(timeout_ms), r->dl);
    if (r->body == WEFT__HTTP_BODY_CHUNKED)
        return read_chunked(r, buf, n, dl);
    if (r->body == WEFT__HTTP_BODY_LENGTH && n > r->left)
        n = (size_t)r->left;
    ssize_t k;
    if (r->off < r->len) { /* what came with the head */
        k = (ssize_t)(r->len - r->off < n ? r->len - r->off : n);
        memcpy(buf, r->buf + r->off, (size_t)k);
        r->off += (size_t)k;
    } else {
        k = weft_recv(r->sock, buf, n, weft__ms_left(dl));
        if (k == 0 && r->body == WEFT__HTTP_BODY_CLOSE) {
            r->keep = false;
            finished(r);
            return 0;
        }
        if (k <= 0)
            return k == -ETIMEDOUT || k == -ECANCELED ? k : fail(r, k == 0 ? -ECONNRESET : k);
    }
    if (r->body == WEFT__HTTP_BODY_LENGTH && (r->left -= (uint64_t)k) == 0)
        finished(r);
    return k;
}

ssize_t weft_http_response_body(weft_http_response *pub, void **out, int64_t timeout_ms)
{
    hc_resp *r = (hc_resp *)pub;
    if (out)
        *out = NULL;
    if (!r || !out)
        return -EINVAL;
    int64_t dl = weft__deadline(timeout_ms);
    size_t cap = r->pub.content_length > 0 && (uint64_t)r->pub.content_length <= r->max_body
                     ? (size_t)r->pub.content_length + 1
                     : 4096;
    if (r->pub.content_length > 0 && (uint64_t)r->pub.content_length > r->max_body)
        return fail(r, -EFBIG);
    char *b = weft__sys_malloc(cap);
    if (!b)
        return fail(r, -ENOMEM);
    size_t len = 0;
    for (;;) {
        if (len + 1 == cap) {
            size_t ncap = cap * 2;
            char *nb = weft__sys_realloc(b, ncap);
            if (!nb) {
                free(b);
                return fail(r, -ENOMEM);
            }
            b = nb, cap = ncap;
        }
        ssize_t k = weft_http_response_read(pub, b + len, cap - 1 - len, weft__ms_left(dl));
        if (k < 0) {
            free(b);
            return r->err ? k : fail(r, k); /* what was read is gone: no reading on */
        }
        if (k == 0)
            break;
        len += (size_t)k;
        if (len > r->max_body) {
            free(b);
            return fail(r, -EFBIG);
        }
    }
    b[len] = 0;
    *out = b;
    return (ssize_t)len;
}

/* ---- requests --------------------------------------------------------------------- */

/* A request head being written. */
typedef struct hc_head {
    char *p;
    size_t len, cap;
    bool oom;
} hc_head;

static void put(hc_head *h, const char *s, size_t n)
{
    if (h->oom)
        return;
    if (h->len + n > h->cap) {
        size_t cap = h->cap ? h->cap : 512;
        while (cap < h->len + n)
            cap *= 2;
        char *p = weft__sys_realloc(h->p, cap);
        if (!p) {
            h->oom = true;
            return;
        }
        h->p = p, h->cap = cap;
    }
    memcpy(h->p + h->len, s, n);
    h->len += n;
}

static void puts3(hc_head *h, const char *a, const char *b, const char *c)
{
    put(h, a, strlen(a));
    put(h, b, strlen(b));
    put(h, c, strlen(c));
}

static bool idempotent(const char *m)
{
    static const char *const ok[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(m, ok[i]) == 0)
            return true;
    return false;
}

/* Whether rq's header name is one a redirect to another host drops. */
static bool host_bound(const char *name)
{
    return strcasecmp(name, "Authorization") == 0 || strcasecmp(name, "Cookie") == 0 ||
           strcasecmp(name, "Host") == 0;
}

static int make_head(const hc_ex *ex, hc_head *h)
{
    const weft_http_request *rq = ex->rq;
    puts3(h, ex->method, " ", ex->url.target);
    put(h, " HTTP/1.1\r\n", 11);
    if (!ex->has_host || ex->strip)
        puts3(h, "Host: ", ex->url.hostport, "\r\n");
    if (!ex->has_agent)
        put(h, "User-Agent: weft\r\n", 18);
    for (const char *const *f = rq->headers; f && f[0]; f += 2) {
        if (strcasecmp(f[0], "Connection") == 0 || (ex->strip && host_bound(f[0])))
            continue;
        puts3(h, f[0], ": ", f[1]);
        put(h, "\r\n", 2);
    }
    char num[32];
    if (ex->body && rq->body_read && rq->body_length < 0) {
        put(h, "Transfer-Encoding: chunked\r\n", 28);
    } else if (ex->body || strcmp(ex->method, "POST") == 0 || strcmp(ex->method, "PUT") == 0 ||
               strcmp(ex->method, "PATCH") == 0) {
        uint64_t n = !ex->body ? 0 : rq->body_read ? (uint64_t)rq->body_length : rq->body_len;
        snprintf(num, sizeof num, "%llu", (unsigned long long)n);
        puts3(h, "Content-Length: ", num, "\r\n");
    }
    if (ex->close)
        put(h, "Connection: close\r\n", 19);
    put(h, "\r\n", 2);
    return h->oom ? -ENOMEM : 0;
}

/* Sends a body from rq->body_read: counted against body_length, or in
 * chunks. */
static int send_stream(weft_sock *s, const weft_http_request *rq, int64_t dl, bool *wrote)
{
    char *b = weft__sys_malloc(SEND_CHUNK);
    if (!b)
        return -ENOMEM;
    bool chunked = rq->body_length < 0;
    uint64_t left = chunked ? 0 : (uint64_t)rq->body_length;
    int rc = 0;
    for (;;) {
        ssize_t k = rq->body_read(rq->body_arg, b, SEND_CHUNK);
        if (k < 0 || k > SEND_CHUNK) {
            rc = k < 0 ? (int)k : -EPROTO;
            break;
        }
        if (!chunked && (uint64_t)k > left) {
            rc = -EPROTO; /* more than body_length */
            break;
        }
        char line[24];
        struct iovec iov[3];
        int n = 0;
        if (chunked) {
            int ll = snprintf(line, sizeof line, "%zx\r\n", (size_t)k);
            iov[n++] = (struct iovec){line, (size_t)ll};
        }
        if (k > 0)
            iov[n++] = (struct iovec){b, (size_t)k};
        if (chunked)
            iov[n++] = (struct iovec){"\r\n", 2};
        if (n > 0) {
            ssize_t w = weft_sendv(s, iov, n, weft__ms_left(dl));
            if (w < 0) {
                rc = (int)w;
                break;
            }
            *wrote = true;
        }
        left -= chunked ? 0 : (uint64_t)k;
        if (k == 0) {
            if (!chunked && left > 0)
                rc = -EPROTO; /* fewer than body_length */
            break;
        }
    }
    free(b);
    return rc;
}

/* Sends the request on r's connection.  *wrote: whether any of it went. */
static int send_request(hc_resp *r, const hc_ex *ex, bool *wrote)
{
    hc_head h = {0};
    int rc = make_head(ex, &h);
    if (rc < 0) {
        free(h.p);
        return rc;
    }
    const weft_http_request *rq = ex->rq;
    struct iovec iov[2] = {{h.p, h.len}, {(void *)rq->body, rq->body_len}};
    int n = ex->body && !rq->body_read && rq->body_len > 0 ? 2 : 1;
    ssize_t w = weft_sendv(r->sock, iov, n, weft__ms_left(r->dl));
    free(h.p);
    if (weft_sock_sent(r->sock) > 0 || w >= 0)
        *wrote = true;
    if (w < 0)
        return (int)w;
    if (ex->body && rq->body_read)
        return send_stream(r->sock, rq, r->dl, wrote);
    return 0;
}

/* A failure a request on a reused connection may meet when the server has
 * just closed it. */
static bool closed_under(int rc)
{
    return rc == -ECONNRESET || rc == -EPIPE || rc == -ECONNABORTED || rc == -ENOTCONN ||
           rc == WEFT_ETLS_TRUNCATED;
}

static hc_resp *resp_new(const hc_ex *ex, weft_connpool *pool, weft_sock *s)
{
    hc_resp *r = weft__sys_calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->pool = pool;
    r->sock = s;
    r->dl = ex->dl;
    r->max_body = ex->c->max_body;
    r->raw = r->raw_in;
    r->hdrs = r->hdrs_in;
    r->hcap = FIELDS_IN < ex->c->lim.headers_max ? FIELDS_IN : ex->c->lim.headers_max;
    r->cap = BUF_START < ex->c->lim.head_max ? BUF_START : ex->c->lim.head_max;
    r->buf = weft__sys_malloc(r->cap);
    if (!r->buf) {
        r->sock = NULL; /* the caller's still */
        weft_http_response_free(&r->pub);
        return NULL;
    }
    return r;
}

/* One request of the exchange (no redirects), with its retries. */
static int attempt(hc_ex *ex, hc_resp **out)
{
    weft_http_client *c = ex->c;
    weft_connpool *pool = ex->url.tls ? c->secure : c->plain;
    if (!pool)
        return -ENOTSUP; /* https in a build without TLS */
    bool replayable = idempotent(ex->method) && !(ex->body && ex->rq->body_read);
    bool head_req = strcmp(ex->method, "HEAD") == 0;
    for (int tries = 1;; tries++) {
        weft_sock *s;
        bool reused;
        int rc = weft__connpool_get(pool, &s, ex->url.host, ex->url.port, NULL,
                                    weft__ms_left(ex->dl), &reused);
        if (rc < 0)
            return rc;
        hc_resp *r = resp_new(ex, pool, s);
        if (!r) {
            weft_connpool_put(pool, s, 1);
            return -ENOMEM;
        }
        bool wrote = false, got = false;
        rc = send_request(r, ex, &wrote);
        if (rc == 0)
            rc = read_head(r, &c->lim, head_req, &got);
        if (rc == 0) {
            r->keep = r->keep && !ex->close;
            r->pub.reused = reused;
            if (r->body == WEFT__HTTP_BODY_NONE || (r->body == WEFT__HTTP_BODY_LENGTH && !r->left))
                finished(r);
            *out = r;
            return 0;
        }
        weft_http_response_free(&r->pub);
        if (!reused || got || !closed_under(rc) || (!replayable && wrote) || tries == RETRY_MAX)
            return rc;
    }
}

static bool is_redirect(int status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* Reads and drops what is left of a redirect's body, to keep its
 * connection if it is short. */
static void drain(hc_resp *r)
{
    char b[2048];
    size_t total = 0;
    ssize_t k;
    while (total <= DRAIN_MAX && (k = weft_http_response_read(&r->pub, b, sizeof b, -1)) > 0)
        total += (size_t)k;
}

/* Checks rq's method and headers; notes what the exchange must know. */
static int check_request(hc_ex *ex)
{
    const weft_http_request *rq = ex->rq;
    if ((rq->body_read && (rq->body || rq->body_len)) || (!rq->body && rq->body_len) ||
        rq->body_length < -1 || (!rq->body_read && rq->body_length) || rq->timeout_ms < -1)
        return -EINVAL;
    ex->method = rq->method ? rq->method : "GET";
    if (!weft__http_is_token(ex->method) || strcmp(ex->method, "CONNECT") == 0)
        return -EINVAL;
    ex->body = rq->body_read || rq->body_len;
    for (const char *const *f = rq->headers; f && f[0]; f += 2) {
        if (!f[1] || !weft__http_is_token(f[0]) || !weft__http_is_value(f[1]))
            return -EINVAL;
        if (strcasecmp(f[0], "Content-Length") == 0 || strcasecmp(f[0], "Transfer-Encoding") == 0)
            return -EINVAL;
        if (strcasecmp(f[0], "Connection") == 0) {
            if (strcasecmp(f[1], "close") != 0)
                return -EINVAL;
            ex->close = true;
        }
        if (strcasecmp(f[0], "Host") == 0)
            ex->has_host = true;
        if (strcasecmp(f[0], "User-Agent") == 0)
            ex->has_agent = true;
    }
    return 0;
}

/* Turns ex toward the Location of response r.  Returns 0, or an error. */
static int redirect(hc_ex *ex, const hc_resp *r)
{
    weft_http_str loc = weft_http_response_header(&r->pub, "Location");
    char *next;
    int rc = weft__http_url_join(&ex->url, loc.p, loc.n, &next);
    if (rc < 0)
        return rc;
    weft__http_url u;
    rc = weft__http_url_parse(&u, next, strlen(next));
    free(next);
    if (rc < 0)
        return rc == -EINVAL ? -EBADMSG : rc;
    if (u.tls != ex->url.tls || u.port != ex->url.port || strcasecmp(u.host, ex->url.host) != 0)
        ex->strip = true;
    weft__http_url_free(&ex->url);
    ex->url = u;
    int st = r->pub.status;
    bool head = strcmp(ex->method, "HEAD") == 0;
    if ((st == 303 && !head) || ((st == 301 || st == 302) && strcmp(ex->method, "POST") == 0)) {
        ex->method = "GET";
        ex->body = false;
    }
    return 0;
}

int weft_http_do(weft_http_client *c, const weft_http_request *rq, weft_http_response **out)
{
    if (!c || !rq || !rq->url || !out)
        return -EINVAL;
    hc_ex ex = {.c = c, .rq = rq};
    int rc = check_request(&ex);
    if (rc < 0)
        return rc;
    if ((rc = weft__http_url_parse(&ex.url, rq->url, strlen(rq->url))) < 0)
        return rc;
    ex.dl = weft__deadline(rq->timeout_ms == 0 ? -1 : rq->timeout_ms);
    hc_resp *r = NULL;
    int redirects = 0;
    for (;;) {
        if ((rc = attempt(&ex, &r)) < 0)
            break;
        int st = r->pub.status;
        if (!c->max_redirects || !is_redirect(st) ||
            !weft_http_response_header(&r->pub, "Location").p ||
            ((st == 307 || st == 308) && ex.body && rq->body_read))
            break;
        if (redirects == c->max_redirects) {
            rc = -ELOOP;
            break;
        }
        drain(r);
        rc = redirect(&ex, r);
        weft_http_response_free(&r->pub);
        r = NULL;
        if (rc < 0)
            break;
        redirects++;
    }
    if (rc == 0 && !(r->url = weft__sys_malloc(strlen(ex.url.full) + 1)))
        rc = -ENOMEM;
    if (rc < 0) {
        weft_http_response_free(r ? &r->pub : NULL);
        weft__http_url_free(&ex.url);
        return rc;
    }
    strcpy(r->url, ex.url.full);
    r->pub.url = r->url;
    r->pub.redirects = redirects;
    weft__http_url_free(&ex.url);
    *out = &r->pub;
    return 0;
}
