/*
 * weft/http.h - HTTP/1.1.  A server on weft_server: a handler per request,
 * run in the connection's coroutine, with keep-alive, pipelining, HEAD,
 * Expect: 100-continue, bodies streamed both ways (Content-Length or
 * chunked), limits against slow and oversized clients, and a graceful
 * drain.  A client on weft_connpool (at the end of this file): any method
 * to http:// and https:// URLs, bodies whole or streamed both ways,
 * redirects, one deadline per exchange, and connections reused.  Part of
 * weft.h, which is the one header to include; the conventions at the top
 * of weft.h hold for every function here.
 *
 * A connection's coroutine reads a request head, calls the handler, sees
 * that a complete response went out (or closes the connection when one
 * could not), and goes on with the next request of the connection.
 * Requests pipelined by a client are served one after the other, their
 * responses in order.  The parser refuses what two parsers could frame
 * differently (request smuggling: both Content-Length and
 * Transfer-Encoding, a coding other than a final chunked, differing
 * lengths, obs-fold, whitespace before a colon, a bare CR or LF) with 400
 * or 501 and a close, and so never reads a second request out of a
 * refused one.  What the server answers by itself, each time with
 * "Connection: close" and a close:
 *   400  a malformed head, or a malformed chunked body the handler did not
 *        answer (weft_http_req_read returned -EBADMSG);
 *   408  a head that has not arrived whole within header_timeout_ms of its
 *        first byte (of the connection's start, for its first request);
 *        a connection on which nothing of a next request arrived is closed
 *        without an answer;
 *   413  a Content-Length over max_body (before the handler runs, and
 *        without "100 Continue"), or a chunked body that goes past it and
 *        the handler did not answer;
 *   414  a request line over max_request_line;
 *   431  a head over max_header_bytes, or more than max_headers fields;
 *   501  a transfer coding other than chunked;
 *   505  an HTTP version other than 1.0 and 1.1;
 *   503  no memory for the request (its fields, room for its body);
 *   500  the handler returned without a response (not followed by a close
 *        unless something else asks for one).
 * Closing after an answer while the client may still be sending (a body
 * not read, bytes of further requests), the server first shuts its side
 * (FIN) and reads and drops what comes for up to 2 s (nginx's lingering
 * close), so that the client reads the answer before its own sends are
 * refused with a reset.
 *
 * Every response carries a Date field (RFC 9110 IMF-fixdate, formatted at
 * most once a second per loop) unless the handler set one, and, but for
 * 1xx, 204 and 304, either Content-Length or Transfer-Encoding: chunked
 * (HTTP/1.0 clients get a body of unknown length unframed, ended by the
 * close).  It says "Connection: close" when the server closes after it:
 * the client asked for that (or is HTTP/1.0 without keep-alive), the
 * handler did, the body is unframed, the request is the last that
 * max_requests allows on the connection, or the server is draining.
 */
#ifndef WEFT_H_HTTP
#define WEFT_H_HTTP

#include "srv.h"

#include <stdbool.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* HTTP/1.1 server                                                           */

/* Bytes p[0..n), not NUL-terminated; p is NULL only when n is 0. */
typedef struct weft_http_str {
    const char *p;
    size_t n;
} weft_http_str;

/* One field line of a request: its name as sent (case kept) and its value
 * without leading and trailing whitespace. */
typedef struct weft_http_header {
    weft_http_str name, value;
} weft_http_header;

/* A request, as the handler sees it.  It and every string in it point into
 * the connection's buffer: valid until the handler returns, never after
 * (copy what must outlive it).  Pass the handler's own pointer to the
 * calls below, never a copy of the struct. */
typedef struct weft_http_req {
    weft_http_str method;            /* a token, case kept: "GET" */
    weft_http_str target;            /* the request-target as sent: "/a/b?x=1" (no decoding) */
    weft_http_str path;              /* target before its first '?' ("/a/b"); of an
                                      * absolute-form target ("http://h/a/b?x") the
                                      * path after the authority, "/" if none */
    weft_http_str query;             /* target after its first '?', without it; n 0 if none */
    int minor;                       /* HTTP/1.minor: 0 or 1 */
    const weft_http_header *headers; /* every field line, in order */
    size_t nheaders;
    int64_t content_length; /* the body's length: Content-Length, 0 when the
                             * request has no body, -1 when chunked */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool keep_alive;        /* the client would keep the connection: HTTP/1.1
                             * unless "Connection: close", HTTP/1.0 only with
                             * "Connection: keep-alive" */
    bool expect_continue;   /* HTTP/1.1 with "Expect: 100-continue" */
    weft_sock *conn;        /* the connection, for its addresses and options:
                             * do not read, write or close it */
} weft_http_req;

/* A response being made: its status, fields and body go out through the
 * weft_http_resp_* calls.  Valid until the handler returns. */
typedef struct weft_http_resp weft_http_resp;

/* Runs once per request, in the connection's coroutine (so it may block:
 * other connections go on meanwhile).  It answers through resp:
 * weft_http_resp_send (a whole body), weft_http_resp_start then
 * weft_http_resp_write and weft_http_resp_end (a streamed body), or
 * weft_http_resp_sendfile.  If it returns without a response the server
 * answers 500 (413 or 400 after weft_http_req_read reported an oversized
 * or malformed body); if it returns with a response whose head has gone
 * out but whose body is not complete (weft_http_resp_end not reached, or
 * fewer bytes than the declared length), the server closes the connection
 * at once, so that the client never takes the body cut short for a
 * complete one (a response started but not yet sent is replaced by the
 * 500).  A body the handler did not read (whole) is read and dropped
 * afterwards, up to max_body, to keep the connection; if that fails the
 * connection is closed.  But a client that asked for 100-continue and was
 * answered without it may never send its body, and may send its next
 * request instead, which would then be read as that body: unless some of
 * the body has arrived by the time the response head goes out, the
 * response says "Connection: close" and the connection closes after it
 * (as Go's net/http does).  The coroutine's deadline (weft_deadline_set)
 * is cleared when the handler returns. */
typedef void (*weft_http_handler)(weft_http_req *req, weft_http_resp *resp, void *arg);

typedef struct weft_http_server_opts {
    /* Where and how to listen: host, port, TLS (cert_file and key_file, or
     * a context of your own in tls), max_conns, handshake_timeout_ms,
     * backlog, flags, stack_size (a handler's stack), as weft_server_start
     * takes them; TCP listeners get WEFT_DEFER_ACCEPT besides (a
     * connection is handed over once its request has begun to arrive, as
     * Apache's default AcceptFilter does).  on_conn and arg must be left NULL: the HTTP server sets
     * them.  on_exit, if set, runs as weft_server's does, with arg below.
     * A context the server makes from cert_file offers ALPN "http/1.1"; a
     * context of your own is used as it is. */
    weft_server_opts server;
    weft_http_handler handler; /* required */
    void *arg;                 /* given to handler and server.on_exit */
    size_t max_request_line;   /* 0 = 8 KiB; longer is 414 */
    size_t max_header_bytes;   /* the whole head: 0 = 64 KiB; more is 431 */
    size_t max_headers;        /* field lines: 0 = 100; more is 431 */
    uint64_t max_body;         /* a request body: 0 = 1 MiB; more is 413 */
    /* Timeouts in ms: 0 = the default, -1 = none. */
    int64_t header_timeout_ms; /* 10 s: a head must arrive whole within it
                                * of its first byte (slowloris): else 408 */
    int64_t idle_timeout_ms;   /* 60 s: a kept-alive connection waits this
                                * long for the next request, then closes */
    int64_t body_timeout_ms;   /* 60 s: the most any one receive of the body
                                * waits, whatever the handler's timeout */
    int64_t send_timeout_ms;   /* 60 s: the most any one send call of a
                                * response waits (a client that stops
                                * reading), whatever the handler's timeout */
    /* Requests served on one connection (nginx's keepalive_requests): 0 =
     * 1000, -1 = no limit.  The response to the last says "Connection:
     * close" and the connection closes after it (requests the client
     * pipelined past it are not read: it sends them again on a new
     * connection).  Bounds what one connection holds of a loop's time
     * and lets load spread again over the loops. */
    int64_t max_requests;
} weft_http_server_opts;

typedef struct weft_http_server weft_http_server;

/* Starts an HTTP server as o says: weft_server_start with o->server, each
 * connection served as this header's top comment says.  o need not
 * outlive the call.  On several loops (weft_config.threads) it serves on
 * every loop, as weft_server does.  Returns 0 with *out set (the server
 * listens), or -EINVAL (out, o or o->handler NULL; o->server.on_conn or
 * o->server.arg set; a timeout or max_requests below -1), the errors of
 * weft_tls_ctx_new for a context made from cert_file (WEFT_ETLS_CERT),
 * -ENOMEM, and those of weft_server_start.  Blocks as weft_server_start
 * does.  The caller frees *out with weft_http_server_free. */
WEFT_EXTERN int weft_http_server_start(weft_http_server **out, const weft_http_server_opts *o);

/* The port it listens on (the one chosen for port 0); 0 for a unix
 * socket; -EINVAL for s NULL. */
WEFT_EXTERN int weft_http_server_port(const weft_http_server *s);

/* Connections open (as weft_server_conn_count); 0 for s NULL.  Never
 * blocks; any thread. */
WEFT_EXTERN size_t weft_http_server_conn_count(const weft_http_server *s);

/* Stops accepting (new connects are refused) and begins to drain: from now
 * on every response says "Connection: close" and its connection closes
 * after it, a connection idle between requests closes at once (its next
 * request may have been on its way: a client retries such a request, RFC
 * 9112 9.3.1), and requests in progress complete.  Never blocks; from a
 * loop the server serves (as weft_server_stop), else, or for s NULL, a
 * no-op, as is a second call. */
WEFT_EXTERN void weft_http_server_stop(weft_http_server *s);

/* weft_http_server_stop, then waits until every connection has ended or
 * timeout_ms has passed, and cancels those left (their blocking calls,
 * the handler's included, return -ECANCELED; their connections close):
 * weft_server_drain, whose result it returns (how many it cancelled), and
 * whose errors: -EINVAL (s NULL), -EXDEV (called from a thread the server
 * does not serve on), -ECANCELED, -ENOMEM, -EBUSY.  Called from a
 * handler, it does not wait for that handler's own connection.  Blocks. */
WEFT_EXTERN int weft_http_server_drain(weft_http_server *s, int64_t timeout_ms);

/* Stops the server (as weft_http_server_stop) and gives it up: s must not
 * be used again.  Connections still open go on as during a drain, and the
 * server's memory (and a TLS context it made) goes when the last has
 * ended.  s NULL, a call from a thread the server does not serve on, or
 * a second call is a no-op.  Never blocks. */
WEFT_EXTERN void weft_http_server_free(weft_http_server *s);

/* ---- the request ---- */

/* The value of r's first field named name (any case), or {NULL, 0} if it
 * has none (an empty value has p set, n 0).  Never blocks. */
WEFT_EXTERN weft_http_str weft_http_req_header(const weft_http_req *r, const char *name);

/* The value of the first trailer field named name (any case) of r's
 * chunked body, or {NULL, 0}: none until the handler has read the body to
 * its end (weft_http_req_read returned 0).  Valid until the handler
 * returns.  Never blocks. */
WEFT_EXTERN weft_http_str weft_http_req_trailer(const weft_http_req *r, const char *name);

/* Whether s holds exactly the bytes of the C string c (case counts):
 * weft_http_str_eq(req->method, "GET").  Never blocks. */
WEFT_EXTERN bool weft_http_str_eq(weft_http_str s, const char *c);

/* Reads the next bytes of r's body into buf[0..n) (a chunked body comes
 * decoded; its trailer fields are kept for weft_http_req_trailer).
 * Returns the count (> 0), 0 at the body's end (at once for a request
 * without one), or an error:
 * -EMSGSIZE (the body goes past max_body: the server answers 413 and
 * closes, unless the handler answers), -EBADMSG (malformed chunked
 * framing: likewise with 400), -ECONNRESET (the client closed before the
 * body's end), -ETIMEDOUT (body_timeout_ms passed without a byte; or
 * timeout_ms, which counts for the whole call, passed first: that one
 * alone leaves the body to be read on), -ECANCELED, -EINVAL (r NULL, buf
 * NULL with n > 0), -ENOMEM, a TLS error.  After an error but the
 * caller's own timeout, the body cannot be read on: the call returns the
 * same error again, and the connection closes once the handler returns.
 * Before its first wait, if the client asked for it (Expect:
 * 100-continue) and no response has gone out yet, it sends "HTTP/1.1 100
 * Continue" (a failure of that send is returned).  Returns as soon as it
 * has any bytes.  Blocks. */
WEFT_EXTERN ssize_t weft_http_req_read(weft_http_req *r, void *buf, size_t n, int64_t timeout_ms);

/* Reads the rest of r's body into a buffer of its own: returns its length
 * (0 included) with *out set to malloc'd memory holding the bytes and a
 * NUL after them, which the caller frees; on failure *out is NULL.
 * timeout_ms counts for the whole call.  Errors those of
 * weft_http_req_read, and -EINVAL (out NULL), -ENOMEM.  Blocks. */
WEFT_EXTERN ssize_t weft_http_req_body(weft_http_req *r, void **out, int64_t timeout_ms);

/* ---- the response ---- */

/* Adds a field line to the response head, before it has started (in the
 * order of the calls; a name may be added more than once).  name and
 * value are copied.  "Content-Length" and "Transfer-Encoding" are the
 * server's (-EINVAL); "Connection" takes only "close" (any case), which
 * makes the server close the connection after this response (it writes
 * that field itself); a "Date" replaces the server's.  Returns 0, -EINVAL
 * (w, name or value NULL; a name that is not a token (RFC 9110 5.6.2),
 * a value with CR, LF, NUL or another control byte but HTAB: header
 * injection), -EALREADY (the response has started), -ENOMEM.  Never
 * blocks. */
WEFT_EXTERN int weft_http_resp_header(weft_http_resp *w, const char *name, const char *value);

/* Sends the whole response: status, the fields added, Content-Length: len
 * and body[0..len), in one go (for HEAD the head only).  status is 200 to
 * 999 (the server sends 100 Continue itself, and does not switch
 * protocols); 204 and 304 take no body and get no Content-Length.
 * Returns 0, or -EINVAL (w NULL, status out of 200..999, body NULL with
 * len > 0, a body for 204 or 304), -EALREADY (a response was started),
 * -EPIPE (the connection failed earlier), the errors of weft_send
 * (-ETIMEDOUT after timeout_ms or send_timeout_ms, -ECONNRESET, -EPIPE,
 * -ECANCELED, ...: the connection is closed once the handler returns).
 * Blocks. */
WEFT_EXTERN int weft_http_resp_send(weft_http_resp *w, int status, const void *body, size_t len,
                                    int64_t timeout_ms);

/* Starts a response whose body follows through weft_http_resp_write:
 * length >= 0 bytes (Content-Length), or -1 for a length not known
 * (Transfer-Encoding: chunked; to an HTTP/1.0 client the body goes
 * unframed and the connection closes after it).  Nothing is sent yet: the
 * head goes out with the first write (a write of 0 bytes sends it alone)
 * or with weft_http_resp_end.  Returns 0, -EINVAL (w NULL, status out of
 * 200..999, length < -1, length > 0 for 204 or 304), -EALREADY (a
 * response was started), -EPIPE (the connection failed earlier), -ENOMEM.
 * Never blocks. */
WEFT_EXTERN int weft_http_resp_start(weft_http_resp *w, int status, int64_t length);

/* Sends buf[0..n) of the body begun by weft_http_resp_start (a chunk of n
 * bytes when chunked), after the head if it has not gone out yet.  For a
 * HEAD request nothing of the body is sent, but n is still counted and
 * returned.  Returns n, or -EINVAL (w NULL, buf NULL with n > 0, no
 * response started), -EALREADY (the response has ended), -EMSGSIZE (more
 * than the length declared, or a body for 204 or 304; nothing sent), -EPIPE
 * (the connection failed earlier), or an error of weft_send as for
 * weft_http_resp_send.  Once the declared length is written whole the
 * response is complete (weft_http_resp_end may still be called).  Blocks. */
WEFT_EXTERN ssize_t weft_http_resp_write(weft_http_resp *w, const void *buf, size_t n,
                                         int64_t timeout_ms);

/* Ends the response begun by weft_http_resp_start: sends the head if it
 * has not gone out, and the last chunk of a chunked body.  Returns 0, or
 * -EINVAL (w NULL, no response started), -EALREADY (ended already, or
 * sent by weft_http_resp_send or _sendfile), -EPROTO (fewer bytes written
 * than the declared length: the connection closes, so the client sees the
 * body cut short), -EPIPE, or an error of weft_send.  Blocks. */
WEFT_EXTERN int weft_http_resp_end(weft_http_resp *w, int64_t timeout_ms);

/* Sends a whole response whose body is len bytes of file fd from offset
 * (the file's own offset is not used or moved), with Content-Length: len:
 * with sendfile(2) on a plain connection, read and sent through the TLS
 * layer otherwise (or when the kernel cannot sendfile from fd).  For
 * HEAD the head only.  Returns 0, or -EINVAL (w NULL, status out of
 * 200..999, fd or offset negative), -EALREADY (a response was started),
 * -ENODATA (the file ended before len bytes), the errors of sendfile(2)
 * and pread(2) on fd (-EIO, ...), -ENOMEM, or an error of weft_send as for
 * weft_http_resp_send.  After a failure once the head went out the
 * connection closes.  The file is read on the loop's thread: a slow file
 * system stalls the loop (weft_blocking for those).  Blocks. */
WEFT_EXTERN int weft_http_resp_sendfile(weft_http_resp *w, int status, int fd, off_t offset,
                                        size_t len, int64_t timeout_ms);

/* ------------------------------------------------------------------------ */
/* HTTP/1.1 client                                                           */

/* A client: a pool of connections per scheme (weft_connpool, kept per loop
 * and per host), the TLS context for https, and the rules for redirects
 * and limits.  One client may serve every coroutine of every loop at once;
 * a connection is only ever reused on the loop that made it.
 *
 * An exchange (weft_http_do) sends a request and reads the response head;
 * the body is then read through the response (weft_http_response_read or
 * _body), and weft_http_response_free ends the exchange.  The connection
 * goes back to the pool as soon as the body has been read to its end (at
 * once for a response without one), if both sides would keep it;
 * otherwise it is closed.
 *
 * A request that failed on a reused connection before any byte of its
 * response arrived (the server closed the idle connection as the request
 * went out: RFC 9112 9.3.1) is sent again on another connection when it
 * can be: its method is idempotent (GET, HEAD, OPTIONS, TRACE, PUT,
 * DELETE) and its body, if any, was given whole, or nothing of it was
 * written at all (the rule of Go's net/http, golang/go#22158).  A failure
 * on a new connection is returned as it is.
 *
 * https URLs are verified by default: the chain against the system's
 * store (or ca_file) and the name against the URL's host (SNI sent),
 * with ALPN "http/1.1" offered. */
typedef struct weft_http_client weft_http_client;

typedef struct weft_http_client_opts {
    weft_tls_ctx *tls;        /* https: a client context of your own, used as it is and
                               * outliving the client; NULL: the client makes one
                               * (verifying, ALPN http/1.1) */
    const char *ca_file;      /* with tls NULL: trust the CAs in this PEM file instead
                               * of the system's store */
    int max_idle_per_host;    /* per loop, as weft_connpool_opts: 0 = 16 */
    int max_per_host;         /* per loop, as weft_connpool_opts: 0 = no limit */
    int64_t idle_timeout_ms;  /* as weft_connpool_opts: 0 = 60 s, -1 = never */
    int max_redirects;        /* 0: a 3xx is returned as it is; n > 0: followed up to n
                               * times (one more is -ELOOP) */
    size_t max_header_bytes;  /* a response head: 0 = 64 KiB; more is -EMSGSIZE */
    size_t max_headers;       /* fields of a response head: 0 = 100; more is -EMSGSIZE */
    uint64_t max_body;        /* weft_http_response_body's limit: 0 = 64 MiB; more is
                               * -EFBIG */
} weft_http_client_opts;

/* Makes a client as o says (NULL: all defaults).  o need not outlive the
 * call.  Errors: -EINVAL (out NULL, a negative count, idle_timeout_ms
 * below -1, tls not a client context), WEFT_ETLS_CERT (ca_file could not
 * be loaded), -ENOTSUP (a build without TLS: http:// only, and tls or
 * ca_file set), -ENOMEM.  Never blocks.  The caller frees *out with
 * weft_http_client_free. */
WEFT_EXTERN int weft_http_client_new(weft_http_client **out, const weft_http_client_opts *o);

/* Closes the idle connections and frees c, as weft_connpool_free frees
 * its pools (a call from any loop of the group, or any thread).  Every
 * response must have been freed first.  NULL is a no-op. */
WEFT_EXTERN void weft_http_client_free(weft_http_client *c);

/* A request.  Zero-initialise it and set what you need. */
typedef struct weft_http_request {
    const char *method;          /* a token; NULL = "GET" */
    const char *url;             /* "http://host[:port][/path][?query]" or https; host a
                                  * name, an IPv4 address or an [IPv6] literal; no user
                                  * info; a fragment is dropped */
    const char *const *headers;  /* NULL, or "name", "value", ..., NULL: sent in order
                                  * after Host.  A "Host" replaces the URL's; a
                                  * "User-Agent" the client's ("weft"); "Connection" takes
                                  * only "close" (the connection is not kept);
                                  * Content-Length and Transfer-Encoding are the client's */
    const void *body;            /* a body given whole: body_len bytes (Content-Length) */
    size_t body_len;
    /* Or a body streamed: body_read(body_arg, buf, n) fills buf[0..n) and
     * returns the count, 0 at the end, or a negative error (the exchange
     * fails with it and the connection is closed).  It runs in the caller,
     * and may block.  body_length >= 0 is the body's length (fewer or more
     * bytes fail the exchange with -EPROTO), -1 sends it chunked. */
    ssize_t (*body_read)(void *body_arg, void *buf, size_t n);
    void *body_arg;
    int64_t body_length;
    int64_t timeout_ms;          /* one deadline for the whole exchange: connecting,
                                  * every redirect, the head, and the body's reads
                                  * through the response; -1 = none (0 too) */
} weft_http_request;

/* A response, from weft_http_do to weft_http_response_free.  Its strings
 * point into memory it owns, valid until it is freed. */
typedef struct weft_http_response {
    int status;                      /* 200..999 (1xx heads are skipped) */
    int minor;                       /* HTTP/1.minor */
    weft_http_str reason;            /* the reason phrase, maybe empty */
    const weft_http_header *headers; /* every field line, in order */
    size_t nheaders;
    int64_t content_length;          /* the body's length; -1 when unknown (chunked, or
                                      * until the close); 0 when there is none (HEAD,
                                      * 204, 304) */
    bool chunked;                    /* Transfer-Encoding: chunked */
    const char *url;                 /* the URL that answered: the request's, or the
                                      * last redirect's */
    int redirects;                   /* redirects followed to get here */
    bool reused;                     /* it came on a connection kept from before */
} weft_http_response;

/* Sends rq and reads the response head, following redirects if the client
 * does (301, 302, 303: the next request is a GET without body, but HEAD
 * stays HEAD and 301 and 302 keep methods other than POST; 307, 308: the
 * same request, unless its body was streamed, when the 3xx is returned;
 * the caller's Authorization, Cookie and Host fields are dropped for
 * another host, scheme or port).  Returns 0 with
 * *out set, whatever the status: the caller reads the body and frees *out
 * with weft_http_response_free.  Errors (nothing is set): -EINVAL (c, rq,
 * rq->url or out NULL; a bad URL, method, header name or value (CR, LF,
 * NUL or another control byte but HTAB), body with body_read, a
 * body_length below -1, a reserved header, a timeout_ms below -1),
 * -EPROTONOSUPPORT (a scheme other than http and https, in the URL or a
 * Location), -ENOTSUP (https in a build without TLS), -EBADMSG (a
 * malformed response head or framing), -EMSGSIZE (a head over the limits), -EPROTO (101 Switching
 * Protocols, a streamed body of another length than said), -ELOOP (more
 * redirects than max_redirects; a Location that is not a URL is
 * -EBADMSG), -ECONNRESET (the server closed before a whole head), -ETIMEDOUT
 * (rq->timeout_ms or the coroutine's deadline), -ECANCELED, -ENOMEM, and
 * those of weft_connpool_get (name lookup, connecting) and TLS
 * (WEFT_ETLS_*).  Blocks; outside a coroutine it runs as weft_connpool_get
 * does there. */
WEFT_EXTERN int weft_http_do(weft_http_client *c, const weft_http_request *rq,
                             weft_http_response **out);

/* The value of r's first field named name (any case), or {NULL, 0}.
 * Never blocks. */
WEFT_EXTERN weft_http_str weft_http_response_header(const weft_http_response *r,
                                                    const char *name);

/* The value of the first trailer field named name (any case) of r's
 * chunked body, or {NULL, 0}: none until the body has been read to its
 * end.  Never blocks. */
WEFT_EXTERN weft_http_str weft_http_response_trailer(const weft_http_response *r,
                                                     const char *name);

/* Reads the next bytes of r's body into buf[0..n) (a chunked body comes
 * decoded; its trailer fields are kept for weft_http_response_trailer).
 * Returns the count (> 0), 0 at the body's end (the connection then goes
 * back to the pool, or is closed), or an error: -EBADMSG (malformed chunked framing),
 * -ECONNRESET (the server closed before the body's end), -ETIMEDOUT
 * (timeout_ms, or what is left of the exchange's deadline), -ECANCELED,
 * -EINVAL (r NULL, buf NULL with n > 0), -ENOMEM, a TLS error.  After an
 * error but -ETIMEDOUT and -ECANCELED (which leave the body to be read
 * on), the body cannot be read on: the call returns the same error again
 * (the connection is closed).  Returns as soon as it has any bytes.
 * Blocks. */
WEFT_EXTERN ssize_t weft_http_response_read(weft_http_response *r, void *buf, size_t n,
                                            int64_t timeout_ms);

/* Reads the rest of r's body into a buffer of its own: returns its length
 * (0 included) with *out set to malloc'd memory holding the bytes and a
 * NUL after them, which the caller frees; on failure *out is NULL.
 * Errors: those of weft_http_response_read, -EFBIG (more than the
 * client's max_body), -EINVAL (out NULL).  After any error the bytes read
 * are gone and the body cannot be read on (the connection is closed).
 * timeout_ms counts for the whole call.  Blocks. */
WEFT_EXTERN ssize_t weft_http_response_body(weft_http_response *r, void **out,
                                            int64_t timeout_ms);

/* Ends the exchange and frees r: a connection whose body was not read to
 * its end is closed (reading the rest could take long), else it went back
 * to the pool already.  NULL is a no-op.  Never blocks, but for a TLS
 * close_notify (as weft_close). */
WEFT_EXTERN void weft_http_response_free(weft_http_response *r);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H_HTTP */
