/*
 * server.c - the HTTP/1.1 server of weft/http.h, on weft_server: each
 * connection's coroutine reads a head into the connection's buffer, parses
 * it in place (parse.h), runs the handler, makes sure a whole response went
 * out (or closes), drops what is left of the body, and goes on with the
 * next request, which may already be in the buffer (pipelining).
 *
 * Memory.  A connection's buffer starts at BUF_START bytes and grows, for a
 * head, up to the head's limit (the parser tells 414 and 431 before that);
 * a chunked body goes through the room after the head; a body of known
 * length is received straight into the handler's buffer.  The public view
 * of the fields is an array of the connection's own, sized to the request;
 * the parser writes into a per-loop array first (parsing never blocks, so
 * the loop's connections can share it).  A connection idle between
 * requests keeps its buffer for KEEP_BUF_MS (the next request of a busy
 * client comes sooner than that), then gives it back and waits for
 * readability alone: an idle connection costs its coroutine's stack and
 * nothing on the heap.
 *
 * Draining.  Every connection is on its loop's list of the server's
 * (shards[loop index]) with a flag saying whether it waits idle between
 * requests.  weft_http_server_stop, _drain and _free set the server's
 * draining flag, then, under each list's lock, mark the idle connections
 * killed and cancel their coroutines (weft_cancel reaches other loops):
 * the idle wait returns, the connection sees it was killed, and closes.
 * A connection leaving its idle wait takes the lock to clear its flag, so
 * a request it took is either served whole or, killed meanwhile, not at
 * all; a killed connection serves nothing more, so a cancel that lands
 * late hurts nothing.  A connection that would become idle once the
 * flag is set closes instead (after serving what it already holds).
 *
 * Lifetime.  The weft_http_server is freed when both the user has freed it
 * and the weft_server's on_exit has run (every connection has ended).
 */
#include "http/date.h"
#include "http/parse.h"
#include "http/trailers.h"
#include "internal.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <unistd.h>

#define BUF_START 4096   /* a connection's buffer, to begin with */
#define BODY_ROOM 4096   /* room after the head for a chunked body's bytes */
#define KEEP_BUF_MS 1000 /* how long an idle connection keeps its buffer */
#define LINGER_MS 2000   /* a lingering close reads and drops this long at most */
#define FILE_CHUNK 65536 /* a file sent through TLS, per read */
#define NEVER INT64_MAX

#define DEF_MAX_BODY ((uint64_t)1 << 20)
#define DEF_HEADER_MS 10000
#define DEF_IDLE_MS 60000
#define DEF_BODY_MS 60000
#define DEF_SEND_MS 60000
#define DEF_MAX_REQUESTS 1000       /* nginx's keepalive_requests */
#define LIMIT_CAP ((size_t)1 << 30) /* the parser's own clamp */

/* A response's progress. */
enum {
    R_NONE,     /* nothing started */
    R_STARTED,  /* weft_http_resp_start: head made, body under way */
    R_COMPLETE, /* the declared length is written whole */
    R_ENDED,    /* ended, or sent whole */
};

/* How a response's body is framed. */
enum {
    F_LENGTH,   /* Content-Length */
    F_CHUNKED,  /* Transfer-Encoding: chunked */
    F_UNFRAMED, /* HTTP/1.0, length unknown: ended by the close */
    F_NONE,     /* 204, 304: no body at all */
};

typedef struct hs_conn hs_conn;

/* A loop's share of a server: its connections, and its parse array. */
typedef struct hs_shard {
    pthread_mutex_t lock; /* head and the connections' idle and killed */
    hs_conn *head;
    weft__http_header *scratch; /* made by the loop at its first head */
} hs_shard;

struct weft_http_server {
    weft_server *srv;
    weft_http_handler handler;
    void *arg;
    void (*on_exit)(void *arg);
    weft__http_limits lim;
    size_t hdr_cap; /* the parse array's entries */
    size_t buf_max; /* the most a buffer grows to for a head */
    uint64_t max_body;
    int64_t header_ms, idle_ms, body_ms, send_ms; /* -1: none */
    int64_t max_requests;                         /* per connection; -1: none */
    bool tls;
    weft_tls_ctx *own_tls; /* made from cert_file, freed with the server */
    weft_loop *loop;       /* the starting loop */
    weft__group *group;    /* its group, when the server serves every loop of it */
    bool draining;         /* atomic */
    bool freed;            /* atomic */
    int refs;              /* atomic: the user's, and the weft_server's until on_exit */
    int nshards;
    hs_shard shards[];
};

struct hs_conn {
    weft_http_server *hs;
    hs_shard *shard;
    weft_sock *sock;
    int64_t co;
    int64_t served;    /* requests read on it, the current one included */
    bool idle, killed; /* under shard->lock */
    hs_conn *next, *prev;
    char *buf; /* unprocessed bytes: buf[off..len) */
    size_t cap, off, len;
    size_t floor; /* during a handler: the head's end, below which
                   * nothing moves (the request points into it) */
    weft_http_header *hdrs;
    size_t hcap;
    bool nodelay; /* TCP_NODELAY set (set_nodelay) */
    bool close;  /* close after this response */
    bool broken; /* a send failed, or a body was cut: close at once */
    bool reset;  /* close with an RST: an unframed body cut short */
};

typedef struct hs_req {
    weft_http_req pub; /* first: the handler's pointer is to it */
    hs_conn *c;
    struct weft_http_resp *w;
    int body;       /* WEFT__HTTP_BODY_* */
    uint64_t left;  /* a body of known length: bytes to go */
    uint64_t taken; /* body bytes received so far */
    bool done;      /* the body has been read whole */
    bool sent_100;
    bool is_head;
    int err;        /* a read's failure, returned again */
    int err_status; /* what to answer for it if the handler does not */
    weft__http_chunked ch;
    weft__http_trailers tr; /* a chunked body's, kept as the handler reads it */
} hs_req;

struct weft_http_resp {
    hs_req *r;
    int state;   /* R_* */
    int framing; /* F_* */
    int status;
    bool head_sent;
    bool user_date, user_close;
    int64_t length;
    uint64_t written;
    char *hx; /* the fields added, "Name: value\r\n" each */
    size_t hx_len, hx_cap;
    size_t pre_len, suf_len;
    char pre[128]; /* status line, Date */
    char suf[128]; /* framing, Connection, the empty line */
    char hx_inline[512];
};

/* ---- small things ---------------------------------------------------------------- */

static bool draining(const weft_http_server *hs)
{
    return __atomic_load_n(&hs->draining, __ATOMIC_SEQ_CST);
}

/* A relative timeout (ms) as a deadline on weft_now()'s clock. */
static int64_t deadline_of(int64_t timeout_ms)
{
    if (timeout_ms == -1)
        return NEVER;
    if (timeout_ms < 0)
        timeout_ms = 0;
    int64_t now = weft_now();
    return timeout_ms > NEVER - now ? NEVER : now + timeout_ms;
}

/* What is left until dl, as a timeout: -1 for none, 0 once passed. */
static int64_t ms_left(int64_t dl)
{
    if (dl == NEVER)
        return -1;
    int64_t left = dl - weft_now();
    return left > 0 ? left : 0;
}

/* The smaller of timeout t and cap (-1: none, for either). */
static int64_t cap_ms(int64_t t, int64_t cap)
{
    if (t < -1)
        t = 0;
    if (cap < 0)
        return t;
    return t == -1 || t > cap ? cap : t;
}

static char lower(char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

static bool name_is(const char *p, size_t n, const char *name)
{
    size_t k = 0;
    for (; k < n && name[k]; k++)
        if (lower(p[k]) != lower(name[k]))
            return false;
    return k == n && !name[k];
}

static const char *reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
    }
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

static char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

/* "HTTP/1.1 200 OK\r\nDate: ...\r\n" into p (room for 128 bytes). */
static char *put_status_date(char *p, int status, bool date)
{
    p = PUT_LIT(p, "HTTP/1.1 ");
    p = put_u64(p, (uint64_t)status);
    *p++ = ' ';
    const char *rs = reason(status);
    p = put(p, rs, strlen(rs));
    p = PUT_LIT(p, "\r\n");
    if (date) {
        char spare[WEFT__HTTP_DATE_LEN];
        p = PUT_LIT(p, "Date: ");
        p = put(p, weft__http_date(spare), WEFT__HTTP_DATE_LEN);
        p = PUT_LIT(p, "\r\n");
    }
    return p;
}

/* ---- the connection's buffer ------------------------------------------------------- */

static bool ensure_buf(hs_conn *c)
{
    if (c->buf)
        return true;
    if (!(c->buf = weft__sys_malloc(BUF_START)))
        return false;
    c->cap = BUF_START;
    return true;
}

static void release_buf(hs_conn *c)
{
    free(c->buf);
    c->buf = NULL;
    c->cap = c->off = c->len = 0;
}

static bool grow_buf(hs_conn *c, size_t cap)
{
    if (cap <= c->cap)
        return true;
    char *b = weft__sys_realloc(c->buf, cap);
    if (!b)
        return false;
    c->buf = b;
    c->cap = cap;
    return true;
}

/* ---- sending ----------------------------------------------------------------------- */

/* Turns Nagle's algorithm off before c sends a response in several
 * writes (its last small segment would wait for the peer's delayed ACK),
 * or sends after a response (keep-alive).  A response of one write
 * followed by the close, the rule for Connection: close, needs no
 * setsockopt (nginx's tcp_nodelay does the same). */
static void set_nodelay(hs_conn *c)
{
    if (!c->nodelay) {
        weft_sock_set_nodelay(c->sock, 1); /* a unix socket says no: fine */
        c->nodelay = true;
    }
}

/* Sends every byte of iov within timeout_ms; a client that takes nothing
 * for send_ms fails it too (a slow one that keeps taking does not).  Any
 * failure leaves the connection broken: a response is cut. */
static int conn_sendv(hs_conn *c, struct iovec *iov, int n, int64_t timeout_ms)
{
    if (c->broken)
        return -EPIPE;
    int64_t send_ms = c->hs->send_ms;
    if (timeout_ms < -1)
        timeout_ms = 0;
    /* The clock is read only when the caller's time is longer than
     * send_ms and must be kept across several sends (most responses go out
     * in the first, without a wait). */
    int64_t dl = send_ms >= 0 && timeout_ms > send_ms ? deadline_of(timeout_ms) : NEVER;
    for (;;) {
        /* Without dl the loop goes round only for timeout_ms -1. */
        int64_t left = dl != NEVER ? ms_left(dl) : timeout_ms;
        bool capped = send_ms >= 0 && (left < 0 || left > send_ms);
        ssize_t rc = weft_sendv(c->sock, iov, n, capped ? send_ms : left);
        if (rc >= 0)
            return 0;
        size_t sent = weft_sock_sent(c->sock);
        if (rc != -ETIMEDOUT || !capped || sent == 0) {
            c->broken = true;
            return (int)rc;
        }
        /* Progress within send_ms: the rest, with a new send_ms. */
        while (n > 0 && sent >= iov[0].iov_len) {
            sent -= iov[0].iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov[0].iov_base = (char *)iov[0].iov_base + sent;
            iov[0].iov_len -= sent;
        }
    }
}

/* A response of the server's own: status, a one-line text body (not for
 * HEAD), and "Connection: close" if the connection closes after it. */
static int send_status(hs_conn *c, int status, bool is_head, int minor)
{
    char head[320], body[64];
    char *b = put_u64(body, (uint64_t)status);
    *b++ = ' ';
    const char *rs = reason(status);
    b = put(b, rs, strlen(rs));
    *b++ = '\n';
    size_t blen = (size_t)(b - body);
    char *p = put_status_date(head, status, true);
    p = PUT_LIT(p, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    p = put_u64(p, blen);
    p = PUT_LIT(p, "\r\n");
    if (c->close)
        p = PUT_LIT(p, "Connection: close\r\n");
    else if (minor == 0)
        p = PUT_LIT(p, "Connection: keep-alive\r\n");
    p = PUT_LIT(p, "\r\n");
    struct iovec iov[2] = {{head, (size_t)(p - head)}, {body, blen}};
    return conn_sendv(c, iov, is_head ? 1 : 2, -1);
}

/* ---- the response ------------------------------------------------------------------ */

/* Whether the connection closes after r's response (c->close). */
static void decide_close(hs_conn *c, hs_req *r, bool user_close)
{
    int64_t max = c->hs->max_requests;
    if (user_close || !r->pub.keep_alive || r->err || draining(c->hs) ||
        (max > 0 && c->served >= max))
        c->close = true;
    /* A client waiting for 100 Continue that never came may never send
     * the body, and its next request would then be read as that body. */
    if (r->pub.expect_continue && !r->sent_100 && !r->done && !r->taken && c->off == c->len)
        c->close = true;
}

/* Makes w's head (w->pre, w->suf) for its status and framing. */
static void compose_head(weft_http_resp *w)
{
    hs_req *r = w->r;
    hs_conn *c = r->c;
    decide_close(c, r, w->user_close);
    if (w->framing == F_UNFRAMED)
        c->close = true;
    w->pre_len = (size_t)(put_status_date(w->pre, w->status, !w->user_date) - w->pre);
    char *p = w->suf;
    if (w->framing == F_LENGTH) {
        p = PUT_LIT(p, "Content-Length: ");
        p = put_u64(p, (uint64_t)w->length);
        p = PUT_LIT(p, "\r\n");
    } else if (w->framing == F_CHUNKED) {
        p = PUT_LIT(p, "Transfer-Encoding: chunked\r\n");
    }
    if (c->close)
        p = PUT_LIT(p, "Connection: close\r\n");
    else if (r->pub.minor == 0)
        p = PUT_LIT(p, "Connection: keep-alive\r\n");
    p = PUT_LIT(p, "\r\n");
    w->suf_len = (size_t)(p - w->suf);
}

/* The head's pieces, if it has not gone out yet. */
static int head_iov(const weft_http_resp *w, struct iovec *iov)
{
    if (w->head_sent)
        return 0;
    int k = 0;
    iov[k++] = (struct iovec){(void *)w->pre, w->pre_len};
    if (w->hx_len)
        iov[k++] = (struct iovec){w->hx, w->hx_len};
    iov[k++] = (struct iovec){(void *)w->suf, w->suf_len};
    return k;
}

/* Starts w: checks, framing, head. */
static int begin(weft_http_resp *w, int status, int64_t length)
{
    if (w->state != R_NONE)
        return -EALREADY;
    bool none = status == 204 || status == 304;
    if (status < 200 || status > 999 || length < -1 || (none && length > 0))
        return -EINVAL;
    hs_req *r = w->r;
    if (r->c->broken)
        return -EPIPE;
    w->status = status;
    if (none) {
        w->framing = F_NONE;
        w->length = 0;
    } else if (length >= 0) {
        w->framing = F_LENGTH;
        w->length = length;
    } else {
        w->framing = r->pub.minor >= 1 ? F_CHUNKED : F_UNFRAMED;
        w->length = -1;
    }
    compose_head(w);
    w->state = w->length == 0 ? R_COMPLETE : R_STARTED;
    return 0;
}

int weft_http_resp_header(weft_http_resp *w, const char *name, const char *value)
{
    if (!w || !name || !value)
        return -EINVAL;
    if (w->state != R_NONE)
        return -EALREADY;
    if (!weft__http_is_token(name) || !weft__http_is_value(value))
        return -EINVAL;
    size_t nl = strlen(name), vl = strlen(value);
    if (name_is(name, nl, "content-length") || name_is(name, nl, "transfer-encoding"))
        return -EINVAL;
    if (name_is(name, nl, "connection")) {
        if (!name_is(value, vl, "close"))
            return -EINVAL;
        w->user_close = true;
        return 0;
    }
    size_t need = nl + 2 + vl + 2;
    if (need > SIZE_MAX / 2 - w->hx_len)
        return -ENOMEM;
    if (w->hx_len + need > w->hx_cap) {
        size_t cap = w->hx_cap * 2 > w->hx_len + need ? w->hx_cap * 2 : w->hx_len + need;
        char *b = w->hx == w->hx_inline ? weft__sys_malloc(cap) : weft__sys_realloc(w->hx, cap);
        if (!b)
            return -ENOMEM;
        if (w->hx == w->hx_inline)
            memcpy(b, w->hx_inline, w->hx_len);
        w->hx = b;
        w->hx_cap = cap;
    }
    char *p = w->hx + w->hx_len;
    p = put(p, name, nl);
    p = PUT_LIT(p, ": ");
    p = put(p, value, vl);
    p = PUT_LIT(p, "\r\n");
    w->hx_len = (size_t)(p - w->hx);
    if (name_is(name, nl, "date"))
        w->user_date = true;
    return 0;
}

int weft_http_resp_start(weft_http_resp *w, int status, int64_t length)
{
    if (!w)
        return -EINVAL;
    int rc = begin(w, status, length);
    if (rc == 0)
        set_nodelay(w->r->c);
    return rc;
}

int weft_http_resp_send(weft_http_resp *w, int status, const void *body, size_t len,
                        int64_t timeout_ms)
{
    if (!w || (!body && len) || len > (size_t)INT64_MAX)
        return -EINVAL;
    int rc = begin(w, status, (int64_t)len);
    if (rc < 0)
        return rc;
    struct iovec iov[4];
    int k = head_iov(w, iov);
    if (len && !w->r->is_head)
        iov[k++] = (struct iovec){(void *)body, len};
    rc = conn_sendv(w->r->c, iov, k, timeout_ms);
    w->state = R_ENDED;
    if (rc == 0) {
        w->head_sent = true;
        w->written = len;
    }
    return rc;
}

ssize_t weft_http_resp_write(weft_http_resp *w, const void *buf, size_t n, int64_t timeout_ms)
{
    if (!w || (!buf && n) || n > SSIZE_MAX)
        return -EINVAL;
    if (w->state == R_NONE)
        return -EINVAL;
    if (w->state == R_ENDED)
        return -EALREADY;
    hs_conn *c = w->r->c;
    if (c->broken)
        return -EPIPE;
    if ((w->framing == F_LENGTH || w->framing == F_NONE) && n > (uint64_t)w->length - w->written)
        return -EMSGSIZE;
    struct iovec iov[6];
    int k = head_iov(w, iov);
    char line[20];
    if (n && !w->r->is_head) {
        if (w->framing == F_CHUNKED) {
            static const char hex[] = "0123456789abcdef";
            char tmp[16];
            int d = 0;
            for (size_t v = n; v; v >>= 4)
                tmp[d++] = hex[v & 15];
            size_t l = 0;
            while (d)
                line[l++] = tmp[--d];
            line[l++] = '\r';
            line[l++] = '\n';
            iov[k++] = (struct iovec){line, l};
            iov[k++] = (struct iovec){(void *)buf, n};
            iov[k++] = (struct iovec){"\r\n", 2};
        } else {
            iov[k++] = (struct iovec){(void *)buf, n};
        }
    }
    if (k) {
        int rc = conn_sendv(c, iov, k, timeout_ms);
        if (rc < 0)
            return rc;
        w->head_sent = true;
    }
    w->written += n;
    if (w->framing == F_LENGTH && w->written == (uint64_t)w->length)
        w->state = R_COMPLETE;
    return (ssize_t)n;
}

int weft_http_resp_end(weft_http_resp *w, int64_t timeout_ms)
{
    if (!w || w->state == R_NONE)
        return -EINVAL;
    if (w->state == R_ENDED)
        return -EALREADY;
    hs_conn *c = w->r->c;
    if (c->broken)
        return -EPIPE;
    if (w->framing == F_LENGTH && w->written < (uint64_t)w->length) {
        /* The head (if out) promised more: only a close can say so. */
        c->broken = true;
        w->state = R_ENDED;
        return -EPROTO;
    }
    struct iovec iov[4];
    int k = head_iov(w, iov);
    if (w->framing == F_CHUNKED && !w->r->is_head)
        iov[k++] = (struct iovec){"0\r\n\r\n", 5};
    w->state = R_ENDED;
    if (k) {
        int rc = conn_sendv(c, iov, k, timeout_ms);
        if (rc < 0)
            return rc;
        w->head_sent = true;
    }
    return 0;
}

/* The body of a file by sendfile(2).  Returns 0, 1 (sendfile cannot take
 * fd: nothing was sent, copy it instead), or an error.  *done: bytes sent. */
static int file_by_kernel(hs_conn *c, int fd, off_t off, size_t len, int64_t dl, size_t *done)
{
    int sfd = weft_sock_fd(c->sock);
    if (sfd < 0)
        return sfd;
    while (*done < len) {
        size_t want = len - *done;
        ssize_t n =
            weft__sys_sendfile(sfd, fd, &off, want > ((size_t)1 << 30) ? (size_t)1 << 30 : want);
        if (n > 0) {
            *done += (size_t)n;
            continue;
        }
        if (n == 0)
            return -ENODATA;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            int rc = weft_sock_poll(c->sock, WEFT_POLL_OUT, cap_ms(ms_left(dl), c->hs->send_ms));
            if (rc < 0)
                return rc;
            continue;
        }
        if ((errno == EINVAL || errno == ENOSYS || errno == EOVERFLOW) && *done == 0)
            return 1;
        return -errno;
    }
    return 0;
}

/* The body of a file read here and sent through the connection's calls
 * (TLS, or a descriptor sendfile cannot read). */
static int file_by_copy(hs_conn *c, int fd, off_t off, size_t len, int64_t dl)
{
    size_t bsize = len < FILE_CHUNK ? len : FILE_CHUNK;
    char *b = weft__sys_malloc(bsize);
    if (!b)
        return -ENOMEM;
    int rc = 0;
    while (len > 0) {
        ssize_t n = weft__sys_pread(fd, b, len < bsize ? len : bsize, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n == 0 ? -ENODATA : -errno;
            break;
        }
        struct iovec iov = {b, (size_t)n};
        if ((rc = conn_sendv(c, &iov, 1, ms_left(dl))) < 0)
            break;
        off += n;
        len -= (size_t)n;
    }
    free(b);
    return rc;
}

int weft_http_resp_sendfile(weft_http_resp *w, int status, int fd, off_t offset, size_t len,
                            int64_t timeout_ms)
{
    if (!w || fd < 0 || offset < 0 || len > (size_t)INT64_MAX)
        return -EINVAL;
    int rc = begin(w, status, (int64_t)len);
    if (rc < 0)
        return rc;
    hs_conn *c = w->r->c;
    if (len > 0 && !w->r->is_head)
        set_nodelay(c); /* the head, then the file: two writes */
    int64_t dl = deadline_of(timeout_ms);
    struct iovec iov[3];
    int k = head_iov(w, iov);
    w->state = R_ENDED;
    if ((rc = conn_sendv(c, iov, k, ms_left(dl))) < 0)
        return rc;
    w->head_sent = true;
    if (w->r->is_head || len == 0) {
        w->written = len;
        return 0;
    }
    size_t done = 0;
    rc = 1;
    if (!c->hs->tls)
        rc = file_by_kernel(c, fd, offset, len, dl, &done);
    if (rc == 1)
        rc = file_by_copy(c, fd, offset, len, dl);
    if (rc < 0) {
        c->broken = true; /* the head promised len bytes */
        return rc;
    }
    w->written = len;
    return 0;
}

/* ---- the request body -------------------------------------------------------------- */

static void taken(hs_req *r, size_t n)
{
    r->taken += n;
    if (r->body == WEFT__HTTP_BODY_LENGTH && (r->left -= n) == 0)
        r->done = true;
}

/* A read of the body failed: it cannot go on, nor the connection after
 * this request.  status: what to answer if the handler does not. */
static ssize_t body_fail(hs_req *r, ssize_t err, int status)
{
    r->err = (int)err;
    r->err_status = status;
    r->c->close = true;
    if (err == -ECANCELED)
        r->c->broken = true; /* a drain's timeout: end now */
    return err;
}

/* Sends 100 Continue before the body's first wait, if the client asked
 * for it and nothing has been answered or received yet. */
static int send_continue(hs_req *r, int64_t dl)
{
    if (!r->pub.expect_continue || r->sent_100 || r->w->head_sent || r->taken || r->done)
        return 0;
    r->sent_100 = true;
    static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
    struct iovec iov = {(void *)msg, sizeof msg - 1};
    return conn_sendv(r->c, &iov, 1, ms_left(dl));
}

/* Reads the next bytes of r's body into dst[0..n), or with dst NULL drops
 * up to n of them.  Returns the count, 0 at the body's end, or an error;
 * each receive waits until dl, and body_ms at most. */
static ssize_t body_io(hs_req *r, char *dst, size_t n, int64_t dl)
{
    hs_conn *c = r->c;
    if (r->err)
        return r->err;
    if (r->done || n == 0)
        return 0;
    for (;;) {
        size_t avail = c->len - c->off;
        if (avail && r->body == WEFT__HTTP_BODY_LENGTH) {
            size_t k = avail < n ? avail : n;
            if (k > r->left)
                k = (size_t)r->left;
            if (dst)
                memcpy(dst, c->buf + c->off, k);
            c->off += k;
            taken(r, k);
            return (ssize_t)k;
        }
        if (avail) {
            /* No more input than dst takes: a data span is never longer. */
            size_t feed = dst && avail > n ? n : avail, used;
            weft__http_str sp;
            int rc = weft__http_chunked_feed(&r->ch, c->buf + c->off, feed, &used, &sp);
            c->off += used;
            if (rc == -EBADMSG)
                return body_fail(r, r->ch.error == 413 ? -EMSGSIZE : -EBADMSG, r->ch.error);
            if (rc == WEFT__HTTP_CHUNK_DATA) {
                if (dst)
                    memcpy(dst, sp.p, sp.n);
                taken(r, sp.n);
                return (ssize_t)sp.n;
            }
            /* Trailer bytes are kept for the handler (not when the body
             * is dropped after it: dst NULL). */
            if (rc != WEFT__HTTP_CHUNK_MORE && dst && weft__http_trailers_add(&r->tr, sp) < 0)
                return body_fail(r, -ENOMEM, 0);
            if (rc == WEFT__HTTP_CHUNK_DONE) {
                r->done = true;
                if (dst && (rc = weft__http_trailers_parse(&r->tr, &r->ch)) < 0)
                    return body_fail(r, rc, rc == -EBADMSG ? 400 : 0);
                return 0;
            }
            continue; /* framing, or trailer bytes */
        }
        int rc = send_continue(r, dl);
        if (rc < 0)
            return body_fail(r, rc, 0);
        char *into;
        size_t room;
        if (dst && r->body == WEFT__HTTP_BODY_LENGTH) {
            into = dst; /* straight into the caller's buffer */
            room = n < r->left ? n : (size_t)r->left;
        } else {
            /* Into the buffer, after the head the handler still sees. */
            c->off = c->len = c->floor;
            if (!ensure_buf(c))
                return body_fail(r, -ENOMEM, 0);
            into = c->buf + c->len;
            room = c->cap - c->len;
            if (r->body == WEFT__HTTP_BODY_LENGTH && room > r->left)
                room = (size_t)r->left;
        }
        int64_t left = ms_left(dl), body_ms = c->hs->body_ms;
        bool capped = body_ms >= 0 && (left < 0 || left > body_ms);
        ssize_t got = weft_recv(c->sock, into, room, capped ? body_ms : left);
        if (got == 0)
            return body_fail(r, -ECONNRESET, 0);
        if (got == -ETIMEDOUT && !capped)
            return got; /* the caller's own timeout: it may try again */
        if (got < 0)
            return body_fail(r, got, 0);
        if (into == dst) {
            taken(r, (size_t)got);
            return got;
        }
        c->len += (size_t)got;
    }
}

ssize_t weft_http_req_read(weft_http_req *req, void *buf, size_t n, int64_t timeout_ms)
{
    if (!req || (!buf && n))
        return -EINVAL;
    return body_io((hs_req *)req, buf, n, deadline_of(timeout_ms));
}

ssize_t weft_http_req_body(weft_http_req *req, void **out, int64_t timeout_ms)
{
    if (out)
        *out = NULL;
    if (!req || !out)
        return -EINVAL;
    hs_req *r = (hs_req *)req;
    if (r->err)
        return r->err;
    int64_t dl = deadline_of(timeout_ms);
    /* The most a buffer takes: max_body and the NUL (the decoder stops a
     * chunked body there; a length over it never reaches the handler). */
    uint64_t most = r->c->hs->max_body < SIZE_MAX / 4 ? r->c->hs->max_body + 1 : SIZE_MAX / 4;
    uint64_t want = r->done ? 1 : r->body == WEFT__HTTP_BODY_LENGTH ? r->left + 1 : 4096;
    if (want > most)
        want = most;
    size_t cap = (size_t)want, len = 0;
    char *b = weft__sys_malloc(cap);
    if (!b)
        return -ENOMEM;
    for (;;) {
        ssize_t got;
        if (len + 1 == cap) {
            if (r->done)
                break;
            if (cap >= most) {
                /* Full: the body must end here. */
                char t;
                if ((got = body_io(r, &t, 1, dl)) == 0)
                    break;
                free(b);
                return got < 0 ? got : -EMSGSIZE;
            }
            size_t ncap = (uint64_t)cap * 2 > most ? (size_t)most : cap * 2;
            char *nb = weft__sys_realloc(b, ncap);
            if (!nb) {
                free(b);
                return -ENOMEM;
            }
            b = nb;
            cap = ncap;
        }
        got = body_io(r, b + len, cap - 1 - len, dl);
        if (got == 0)
            break;
        if (got < 0) {
            free(b);
            return got;
        }
        len += (size_t)got;
    }
    b[len] = '\0';
    *out = b;
    return (ssize_t)len;
}

weft_http_str weft_http_req_header(const weft_http_req *r, const char *name)
{
    weft_http_str none = {NULL, 0};
    if (!r || !name)
        return none;
    for (size_t i = 0; i < r->nheaders; i++)
        if (name_is(r->headers[i].name.p, r->headers[i].name.n, name))
            return r->headers[i].value;
    return none;
}

weft_http_str weft_http_req_trailer(const weft_http_req *req, const char *name)
{
    if (!req || !name)
        return (weft_http_str){NULL, 0};
    weft__http_str v = weft__http_trailers_get(&((const hs_req *)req)->tr, name);
    return (weft_http_str){v.p, v.n};
}

bool weft_http_str_eq(weft_http_str s, const char *c)
{
    if (!c)
        return false;
    size_t n = strlen(c);
    return n == s.n && (n == 0 || memcmp(s.p, c, n) == 0);
}

/* The target's path and query.  Of an absolute-form target
 * ("http://h/a?x", which RFC 9112 3.2.2 says a server must accept) they
 * are those after its authority, the path "/" when it has none. */
static void split_target(weft_http_req *q)
{
    const char *t = q->target.p;
    size_t n = q->target.n, at = 0;
    if (n >= 7 && strncasecmp(t, "http://", 7) == 0)
        at = 7;
    else if (n >= 8 && strncasecmp(t, "https://", 8) == 0)
        at = 8;
    while (at && at < n && t[at] != '/' && t[at] != '?')
        at++; /* the authority */
    const char *qm = memchr(t + at, '?', n - at);
    size_t end = qm ? (size_t)(qm - t) : n;
    q->path = at && at == end ? (weft_http_str){"/", 1} : (weft_http_str){t + at, end - at};
    if (qm && end + 1 < n)
        q->query = (weft_http_str){qm + 1, n - end - 1};
}

/* ---- a connection ------------------------------------------------------------------ */

/* Marks c idle (or not).  Returns 1, or 0 if c is about to go idle while
 * the server drains, or -1 if a drain has killed it: it closes then. */
static int set_idle(hs_conn *c, bool idle)
{
    hs_shard *sh = c->shard;
    pthread_mutex_lock(&sh->lock);
    int ok = c->killed ? -1 : idle && draining(c->hs) ? 0 : 1;
    c->idle = idle && ok > 0;
    pthread_mutex_unlock(&sh->lock);
    return ok;
}

/* Waits up to timeout_ms (-1: no limit) for the first bytes of a next
 * request, into the buffer from its start.  Returns their count, or 0 to
 * close without a word. */
static ssize_t wait_idle(hs_conn *c, int64_t timeout_ms)
{
    int ok = set_idle(c, true);
    if (ok <= 0) {
        if (ok < 0 || !ensure_buf(c))
            return 0;
        /* Draining: a request the client has already sent is served. */
        ssize_t n = weft_recv(c->sock, c->buf, c->cap, 0);
        return n > 0 ? n : 0;
    }
    ssize_t n = -ETIMEDOUT;
    if (c->buf && c->cap > BUF_START) {
        char *b = weft__sys_realloc(c->buf, BUF_START); /* what a big head grew */
        if (b) {
            c->buf = b;
            c->cap = BUF_START;
        } else {
            release_buf(c);
        }
    }
    int64_t rest = timeout_ms; /* what is left after the wait with the buffer */
    if (c->buf) {
        bool shorter = timeout_ms < 0 || timeout_ms > KEEP_BUF_MS;
        n = weft_recv(c->sock, c->buf, c->cap, shorter ? KEEP_BUF_MS : timeout_ms);
        rest = !shorter ? 0 : timeout_ms < 0 ? -1 : timeout_ms - KEEP_BUF_MS;
    }
    if (n == -ETIMEDOUT && rest != 0) {
        /* The clock is read only now: a busy connection's next request
         * comes while it still has its buffer. */
        int64_t dl = deadline_of(rest);
        release_buf(c);
        free(c->hdrs);
        c->hdrs = NULL;
        c->hcap = 0;
        int rc = weft_sock_poll(c->sock, WEFT_POLL_IN, ms_left(dl));
        if (rc < 0)
            n = rc;
        else if (!ensure_buf(c))
            n = -ENOMEM;
        else
            n = weft_recv(c->sock, c->buf, c->cap, ms_left(dl));
    }
    ok = set_idle(c, false);
    return ok > 0 && n > 0 ? n : 0;
}

/* Reads the next request's head into c's buffer and parses it into *pr.
 * Returns its length (> 0), 0 to close without a word, or -status to
 * answer with and close.  first: the connection's first request, whose
 * head counts from started (ms); the others' from their first byte. */
static int read_head(hs_conn *c, weft__http_request *pr, bool first, int64_t started)
{
    weft_http_server *hs = c->hs;
    hs_shard *sh = c->shard;
    int64_t hdl = NEVER;
    if (first && hs->header_ms >= 0)
        hdl = started + hs->header_ms;
    if (c->off == c->len) {
        c->off = c->len = 0;
        /* A new connection's first byte is bounded by its head's
         * deadline (or, with none, by the idle timeout). */
        ssize_t n = wait_idle(c, first && hdl != NEVER ? ms_left(hdl) : hs->idle_ms);
        if (n <= 0)
            return 0;
        c->len = (size_t)n;
    }
    bool timed = first; /* the head's deadline is known (else taken at the first wait) */
    if (!sh->scratch && !(sh->scratch = weft__sys_malloc(hs->hdr_cap * sizeof *sh->scratch)))
        return 0;
    pr->headers = sh->scratch;
    pr->headers_cap = hs->hdr_cap;
    size_t last = 0;
    for (;;) {
        int rc = weft__http_parse_request(pr, c->buf + c->off, c->len - c->off, last, &hs->lim);
        if (rc > 0)
            return rc;
        if (rc == -EBADMSG)
            return -pr->error;
        last = c->len - c->off;
        if (c->len == c->cap) {
            if (c->off > 0) {
                memmove(c->buf, c->buf + c->off, last);
                c->off = 0;
                c->len = last;
            } else if (c->cap >= hs->buf_max) {
                return -431; /* the parser says so first; never read past it */
            } else if (!grow_buf(c, c->cap * 2 < hs->buf_max ? c->cap * 2 : hs->buf_max)) {
                return 0;
            }
        }
        if (!timed) { /* a head whose first bytes came without its end */
            hdl = deadline_of(hs->header_ms);
            timed = true;
        }
        ssize_t n = weft_recv(c->sock, c->buf + c->len, c->cap - c->len, ms_left(hdl));
        if (n == -ETIMEDOUT)
            return -408;
        if (n <= 0)
            return 0;
        c->len += (size_t)n;
    }
}

/* After the handler: a whole response must have gone out, or the
 * connection closes. */
static void finish(hs_req *r, weft_http_resp *w)
{
    hs_conn *c = r->c;
    if (c->broken)
        return;
    if (w->state == R_STARTED && w->head_sent) {
        /* The body is cut short: only the close (an RST where the close
         * itself would end the body) tells the client. */
        c->broken = true;
        c->reset = w->framing == F_UNFRAMED;
        return;
    }
    if (w->state == R_COMPLETE && !w->head_sent) {
        weft_http_resp_end(w, -1);
        return;
    }
    if (w->state == R_NONE || w->state == R_STARTED) {
        decide_close(c, r, w->user_close);
        send_status(c, r->err_status ? r->err_status : 500, r->is_head, r->pub.minor);
    }
}

/* Drops what the handler left of the body, to keep the connection. */
static bool discard_body(hs_req *r)
{
    while (!r->done) {
        ssize_t n = body_io(r, NULL, SIZE_MAX, NEVER);
        if (n < 0)
            return false;
    }
    return true;
}

/* Serves the request whose head (hlen bytes) is at c's buffer's off,
 * parsed into *pr.  Returns whether the connection goes on; *linger: the
 * client may still be sending when it closes. */
static bool serve(hs_conn *c, weft__http_request *pr, size_t hlen, bool *linger)
{
    weft_http_server *hs = c->hs;
    if (pr->body == WEFT__HTTP_BODY_CHUNKED && c->cap - (c->off + hlen) < BODY_ROOM) {
        /* Room after the head for the chunked body: move or grow the
         * buffer, and parse again (the fields point into it). */
        size_t have = c->len - c->off;
        memmove(c->buf, c->buf + c->off, have);
        c->off = 0;
        c->len = have;
        if (!grow_buf(c, hlen + BODY_ROOM)) {
            c->close = true;
            send_status(c, 503, false, pr->minor);
            return false;
        }
        pr->headers = c->shard->scratch;
        pr->headers_cap = hs->hdr_cap;
        if (weft__http_parse_request(pr, c->buf, c->len, 0, &hs->lim) != (int)hlen)
            return false; /* cannot happen: the same bytes */
    }
    if (c->hcap < pr->nheaders) {
        weft_http_header *h = weft__sys_realloc(c->hdrs, pr->nheaders * sizeof *h);
        if (!h) {
            c->close = true;
            send_status(c, 503, false, pr->minor);
            return false;
        }
        c->hdrs = h;
        c->hcap = pr->nheaders;
    }
    for (size_t i = 0; i < pr->nheaders; i++) {
        c->hdrs[i].name = (weft_http_str){pr->headers[i].name.p, pr->headers[i].name.n};
        c->hdrs[i].value = (weft_http_str){pr->headers[i].value.p, pr->headers[i].value.n};
    }

    hs_req r = {.c = c, .body = pr->body};
    weft_http_resp w = {.r = &r, .hx_cap = sizeof w.hx_inline};
    w.hx = w.hx_inline;
    r.w = &w;
    weft_http_req *q = &r.pub;
    q->method = (weft_http_str){pr->method.p, pr->method.n};
    q->target = (weft_http_str){pr->target.p, pr->target.n};
    split_target(q);
    q->minor = pr->minor;
    q->headers = c->hdrs;
    q->nheaders = pr->nheaders;
    q->chunked = pr->body == WEFT__HTTP_BODY_CHUNKED;
    q->content_length = q->chunked ? -1 : (int64_t)pr->content_length;
    q->keep_alive = pr->keep_alive;
    q->expect_continue = pr->expect_continue;
    q->conn = c->sock;
    r.is_head = weft_http_str_eq(q->method, "HEAD");
    r.left = pr->content_length;
    r.done = pr->body == WEFT__HTTP_BODY_NONE ||
             (pr->body == WEFT__HTTP_BODY_LENGTH && pr->content_length == 0);
    if (q->chunked) {
        weft__http_chunk_limits cl = {.body_max = hs->max_body};
        weft__http_chunked_init(&r.ch, &cl);
    }
    c->off += hlen;
    c->floor = c->off;
    c->close = false;
    c->served++;

    if (pr->body == WEFT__HTTP_BODY_LENGTH && pr->content_length > hs->max_body) {
        /* Refused before the handler, and before any 100 Continue. */
        c->close = true;
        send_status(c, 413, r.is_head, q->minor);
        *linger = true;
        return false;
    }
    hs->handler(q, &w, hs->arg);
    weft_deadline_clear();
    weft__http_trailers_free(&r.tr);
    finish(&r, &w);
    if (w.hx != w.hx_inline)
        free(w.hx);
    c->floor = 0;
    if (c->broken)
        return false;
    if (c->close) {
        *linger = !r.done || c->off < c->len;
        return false;
    }
    if (!discard_body(&r)) {
        *linger = !c->broken;
        return false;
    }
    return true;
}

/* Reads and drops what the client still sends, after our FIN, for
 * LINGER_MS at most: closing with unread bytes would send an RST, and the
 * client could lose our answer to it. */
static void linger_close(hs_conn *c)
{
    if (weft_shutdown(c->sock, WEFT_SHUT_WR) < 0 || !ensure_buf(c))
        return;
    int64_t dl = deadline_of(LINGER_MS);
    while (weft_recv(c->sock, c->buf, c->cap, ms_left(dl)) > 0)
        ;
}

static void link_conn(hs_conn *c)
{
    hs_shard *sh = c->shard;
    pthread_mutex_lock(&sh->lock);
    c->next = sh->head;
    if (sh->head)
        sh->head->prev = c;
    sh->head = c;
    pthread_mutex_unlock(&sh->lock);
}

static void unlink_conn(hs_conn *c)
{
    hs_shard *sh = c->shard;
    pthread_mutex_lock(&sh->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        sh->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&sh->lock);
}

/* weft_server's on_conn: one connection, request after request. */
static void serve_conn(weft_sock *sock, void *arg)
{
    weft_http_server *hs = arg;
    int idx = weft_loop_index();
    hs_conn c = {.hs = hs, .sock = sock, .co = weft_self()};
    c.shard = &hs->shards[idx >= 0 && idx < hs->nshards ? idx : 0];
    link_conn(&c);
    ensure_buf(&c); /* a new client sends at once: receive, don't poll first */
    int64_t started = weft_now();
    bool first = true, linger = false;
    for (;;) {
        weft__http_request pr;
        if (!first)
            set_nodelay(&c); /* kept alive: the next response must not wait */
        int rc = read_head(&c, &pr, first, started);
        if (rc == 0)
            break;
        if (rc < 0) {
            c.close = true;
            send_status(&c, -rc, false, 1);
            linger = true;
            break;
        }
        first = false;
        if (!serve(&c, &pr, (size_t)rc, &linger))
            break;
    }
    if (c.reset)
        weft_reset(sock);
    else if (linger && !c.broken)
        linger_close(&c);
    unlink_conn(&c);
    free(c.buf);
    free(c.hdrs);
}

/* ---- the server -------------------------------------------------------------------- */

static void hs_unref(weft_http_server *hs)
{
    if (__atomic_sub_fetch(&hs->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    for (int i = 0; i < hs->nshards; i++) {
        pthread_mutex_destroy(&hs->shards[i].lock);
        free(hs->shards[i].scratch);
    }
#ifdef WEFT_WITH_TLS
    weft_tls_ctx_free(hs->own_tls);
#endif
    free(hs);
}

/* weft_server's on_exit: every connection has ended. */
static void hs_exited(void *arg)
{
    weft_http_server *hs = arg;
    if (hs->on_exit)
        hs->on_exit(hs->arg);
    hs_unref(hs);
}

/* Whether this thread runs a loop the server serves on. */
static bool on_server_thread(const weft_http_server *hs)
{
    weft_loop *l = weft__tls_loop;
    return l && (l == hs->loop || (hs->group && l->group == hs->group));
}

/* Draining begins: no new connections, idle ones close. */
static void begin_drain(weft_http_server *hs)
{
    __atomic_store_n(&hs->draining, true, __ATOMIC_SEQ_CST);
    weft_server_stop(hs->srv);
    for (int i = 0; i < hs->nshards; i++) {
        hs_shard *sh = &hs->shards[i];
        pthread_mutex_lock(&sh->lock);
        for (hs_conn *c = sh->head; c; c = c->next) {
            if (!c->idle || c->killed)
                continue;
            c->killed = true;
            /* -ENOMEM (another loop's, not sent): it closes at its idle
             * timeout instead. */
            weft_cancel(c->co);
        }
        pthread_mutex_unlock(&sh->lock);
    }
}

static int64_t timeout_opt(int64_t v, int64_t def)
{
    return v == 0 ? def : v;
}

static size_t limit_opt(size_t v, size_t def)
{
    return v == 0 ? def : v > LIMIT_CAP ? LIMIT_CAP : v;
}

int weft_http_server_start(weft_http_server **out, const weft_http_server_opts *o)
{
    if (!out || !o || !o->handler || o->server.on_conn || o->server.arg ||
        o->header_timeout_ms < -1 || o->idle_timeout_ms < -1 || o->body_timeout_ms < -1 ||
        o->send_timeout_ms < -1 || o->max_requests < -1)
        return -EINVAL;
    weft_loop *l = weft__tls_loop;
    if (!l)
        return -EPERM;
    int nshards = l->nloops > 1 ? l->nloops : 1;
    weft_http_server *hs = weft__sys_calloc(1, sizeof *hs + (size_t)nshards * sizeof hs->shards[0]);
    if (!hs)
        return -ENOMEM;
    hs->handler = o->handler;
    hs->arg = o->arg;
    hs->on_exit = o->server.on_exit;
    hs->lim.line_max = limit_opt(o->max_request_line, WEFT__HTTP_LINE_MAX);
    hs->lim.head_max = limit_opt(o->max_header_bytes, WEFT__HTTP_HEAD_MAX);
    hs->lim.headers_max = limit_opt(o->max_headers, WEFT__HTTP_HEADERS_MAX);
    /* A field line takes 4 bytes at least ("a:\r\n"). */
    hs->hdr_cap = hs->lim.headers_max < hs->lim.head_max / 4 + 1 ? hs->lim.headers_max
                                                                 : hs->lim.head_max / 4 + 1;
    /* Room for the parser to tell 414 and 431: the head's limit, or the
     * line's and two empty lines before it, and their ends. */
    hs->buf_max = hs->lim.head_max > hs->lim.line_max + 8 ? hs->lim.head_max : hs->lim.line_max + 8;
    if (hs->buf_max < BUF_START)
        hs->buf_max = BUF_START;
    hs->max_body = o->max_body ? o->max_body : DEF_MAX_BODY;
    hs->header_ms = timeout_opt(o->header_timeout_ms, DEF_HEADER_MS);
    hs->idle_ms = timeout_opt(o->idle_timeout_ms, DEF_IDLE_MS);
    hs->body_ms = timeout_opt(o->body_timeout_ms, DEF_BODY_MS);
    hs->send_ms = timeout_opt(o->send_timeout_ms, DEF_SEND_MS);
    hs->max_requests = timeout_opt(o->max_requests, DEF_MAX_REQUESTS); /* as a timeout: -1 none */
    hs->loop = l;
    /* weft_server serves every loop of the group for TCP started from a
     * coroutine: the calls that stop it may then come from any of them. */
    bool unix_host = o->server.host && strncmp(o->server.host, "unix:", 5) == 0;
    if (l->nloops > 1 && !unix_host && weft__current())
        hs->group = l->group;
    hs->nshards = nshards;
    for (int i = 0; i < nshards; i++)
        pthread_mutex_init(&hs->shards[i].lock, NULL);
    hs->refs = 2;

    weft_server_opts so = o->server;
    so.on_conn = serve_conn;
    so.arg = hs;
    so.on_exit = hs_exited;
    /* Clients speak first: a connection comes once its request has (no
     * wait, no readiness registration, for most); not for a unix socket. */
    if (!so.host || strncmp(so.host, "unix:", 5) != 0)
        so.flags |= WEFT_DEFER_ACCEPT;
    int rc;
#ifdef WEFT_WITH_TLS
    if (so.cert_file && !so.tls) {
        /* Made here rather than by weft_server, to offer ALPN. */
        weft_tls_opts t = {.cert_file = so.cert_file, .key_file = so.key_file, .alpn = "http/1.1"};
        if ((rc = weft_tls_ctx_new(&hs->own_tls, WEFT_TLS_SERVER, &t)) < 0)
            goto fail;
        so.tls = hs->own_tls;
        so.cert_file = so.key_file = NULL;
    }
#endif
    hs->tls = so.tls || so.cert_file;
    if ((rc = weft_server_start(&hs->srv, &so)) < 0)
        goto fail;
    *out = hs;
    return 0;
fail:
    hs->refs = 1;
    hs_unref(hs);
    return rc;
}

int weft_http_server_port(const weft_http_server *s)
{
    return s ? weft_server_port(s->srv) : -EINVAL;
}

size_t weft_http_server_conn_count(const weft_http_server *s)
{
    return s ? weft_server_conn_count(s->srv) : 0;
}

void weft_http_server_stop(weft_http_server *s)
{
    if (!s || !on_server_thread(s))
        return;
    begin_drain(s);
}

int weft_http_server_drain(weft_http_server *s, int64_t timeout_ms)
{
    if (!s)
        return -EINVAL;
    if (!on_server_thread(s))
        return -EXDEV;
    begin_drain(s);
    return weft_server_drain(s->srv, timeout_ms);
}

void weft_http_server_free(weft_http_server *s)
{
    if (!s || !on_server_thread(s))
        return;
    if (__atomic_exchange_n(&s->freed, true, __ATOMIC_ACQ_REL))
        return;
    begin_drain(s);
    weft_server_free(s->srv);
    hs_unref(s);
}
