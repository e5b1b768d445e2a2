/*
 * weft/srv.h - servers: a listener and a coroutine per connection, closing later.
 * Part of weft.h, which is the one header to include; the conventions at
 * the top of weft.h hold for every function here.
 */
#ifndef WEFT_H_SRV
#define WEFT_H_SRV

#include "net.h"
#include "tls.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Servers (co's tcp::Server)                                                */

/* On several loops.  A TCP server started in a coroutine of a loop of
 * weft_main's group of several (weft_config.threads > 1) listens on every
 * loop of the group: one listener per loop on the same address and port
 * with SO_REUSEPORT (WEFT_REUSEPORT is implied), the kernel spreading the
 * connections between them, and each connection's coroutine runs on the
 * loop that accepted it (its socket belongs to that loop).  It is still one
 * server: weft_server_conn_count and max_conns count the connections of
 * every loop, stop and drain act on every loop, on_exit runs once, and
 * stop, drain and free may be called from any loop of the group.  A unix
 * socket server (no SO_REUSEPORT for those), or one started outside a
 * coroutine, listens on the starting loop only, as on a loop alone. */

typedef struct weft_server weft_server;

typedef struct weft_server_opts {
    /* A numeric address or a name, as weft_tcp_listen takes it; NULL or "*"
     * = every interface (IPv6 dual stack); "unix:/path" or "unix:@name"
     * listens on a unix stream socket instead. */
    const char *host;
    /* 0 = any free port (weft_server_port tells which); ignored for unix. */
    int port;
    /* Required.  Runs in a coroutine of its own per connection; when it
     * returns the server closes conn, unless on_conn closed it (weft_close,
     * weft_reset, or their _after forms): conn must not be used after
     * on_conn returns. */
    void (*on_conn)(weft_sock *conn, void *arg);
    /* Given to on_conn and on_exit. */
    void *arg;
    /* May be NULL.  Runs once, after the server was stopped
     * (weft_server_stop, _drain, _free, or its loop being freed) and every
     * connection has ended: in the coroutine that ended last (the last
     * connection's, or an acceptor's at its loop's next step after the
     * stop; if the acceptor never got a stack, in the call that found it
     * gone).  On several loops, on the loop where that coroutine ran,
     * which may be any loop of the group. */
    void (*on_exit)(void *arg);
    /* co's start(ip, port, key, ca): TLS with this PEM chain and key
     * (key_file NULL: in cert_file), in a context the server makes and
     * frees. */
    const char *cert_file, *key_file;
    /* Or TLS with a server context of your own, which must outlive the
     * server (until on_exit has run, or weft_server_free after it). */
    weft_tls_ctx *tls;
    /* The TLS handshake, in the connection's coroutine before on_conn runs:
     * a client that has not finished it by then is closed.  0 = 10 s, -1 =
     * no limit. */
    int64_t handshake_timeout_ms;
    /* 0 = no limit.  At the limit the server stops accepting (new
     * connections wait in the listen backlog) until one ends.  On several
     * loops the limit is for all of them together: a loop at the limit
     * waits for a connection of any loop to end (a connection a loop has
     * just accepted as another took the last slot waits, accepted, for the
     * next free one). */
    int max_conns;
    /* <= 0 = SOMAXCONN. */
    int backlog;
    /* WEFT_REUSEPORT (implied on several loops), WEFT_V6ONLY,
     * WEFT_DEFER_ACCEPT (TCP only). */
    int flags;
    /* Of each connection's coroutine, at most 1 GiB; 0 = the loop's default. */
    size_t stack_size;
} weft_server_opts;

/* Listens as o says and starts accepting on this thread's loop (on every
 * loop of its group, see above): each
 * connection gets a coroutine of its own (of o->stack_size) that runs the
 * TLS handshake if TLS is on (within handshake_timeout_ms; a client that
 * fails it is closed and on_conn never sees it), then on_conn(conn, arg).
 * The server is listening when the call returns (called from a coroutine,
 * the acceptor has already run until it waits, so a client that connected
 * at once may even have reached on_conn).  o need not outlive the call.
 * On several loops the starting loop listens first (port 0 chooses the
 * port there; a name is looked up there), then asks every other loop to
 * listen on that address and port, and waits for them all: the call
 * returns once every loop listens, or fails as a whole (every listener
 * made is closed and the call waits for that, unless cancelled; on_conn
 * and on_exit never run).  That wait ends early on the coroutine's
 * deadline (-ETIMEDOUT) or weft_cancel (-ECANCELED); the listeners of the
 * other loops then close at those loops' next steps.
 * Accepting never stops on a transient error: with no descriptors or
 * memory left it backs off (5 ms doubling to 500 ms) and tries again, and
 * a connection whose coroutine cannot be made waits for memory the same
 * way.  Errors: -EINVAL (out, o or on_conn NULL, max_conns < 0, stack_size
 * over 1 GiB, handshake_timeout_ms < -1, both tls and cert_file, key_file
 * without cert_file, tls not a server context, flags with a unix host, and
 * weft_tcp_listen's own: a host "", a port outside 0..65535, unknown
 * flags), -EPERM (no loop on this thread), -ENOTSUP (TLS asked of a build
 * without it), the errors of weft_tcp_listen or weft_unix_listen
 * (-EADDRINUSE, a name's WEFT_EAI_* codes, ...; on several loops those of
 * any loop, -ENOPROTOOPT where SO_REUSEPORT is missing), of
 * weft_tls_ctx_new (WEFT_ETLS_CERT), -ENOMEM (also an acceptor whose stack
 * could not be mapped, on any loop), and on several loops -ECANCELED and
 * -ETIMEDOUT.  On failure nothing is left listening.  Blocks only to look
 * a name up and, on several loops, to wait for the others.  The caller owns *out and frees it with
 * weft_server_free. */
WEFT_EXTERN int weft_server_start(weft_server **out, const weft_server_opts *o);

/* The port the server listens on (the one the system chose for port 0),
 * also once it has stopped; 0 for a unix socket; -EINVAL for s NULL. */
WEFT_EXTERN int weft_server_port(const weft_server *s);

/* co's conn_num(): connections whose coroutine is running (from accept
 * until on_conn has returned and conn is closed, a TLS handshake
 * included), on every loop the server listens on.  0 for s NULL.  Never blocks; may be read from any thread (a
 * snapshot). */
WEFT_EXTERN size_t weft_server_conn_count(const weft_server *s);

/* co's exit(): stops accepting at once (the listener is closed, so new
 * connects are refused, and a unix socket's file is removed if it is still
 * the one the server made); connections already accepted go on until
 * their on_conn returns.  on_exit runs once they have all ended (at the
 * loop's next step if there are none).  On several loops, from any loop
 * of the group: this loop's listener closes at once, the others' at their
 * loops' next steps.  A second call, or one after the server's loop was
 * freed, does nothing; so does s NULL or a call from another thread than
 * the server's loop's (a loop of its group's; post it there with
 * weft_loop_post).  Never blocks. */
WEFT_EXTERN void weft_server_stop(weft_server *s);

/* Stops accepting at once (as weft_server_stop), waits until every
 * connection has ended (on_exit has then run) or timeout_ms has passed,
 * then cancels the connections left (weft_cancel on each one's coroutine:
 * its current or next blocking call returns -ECANCELED), lets them run
 * once, and returns how many it cancelled (0 if all ended in time).
 * Handlers that return on the error have then ended (and on_exit has run
 * if they were the last); one that goes on ends at its own pace
 * (weft_server_conn_count and on_exit tell when).  On several loops it
 * may be called from any loop of the group: it stops every loop's
 * listener (as weft_server_stop), waits for the connections of every loop,
 * cancels those left on every loop (another loop's at that loop's next
 * step: only this loop's have run once when it returns), and returns
 * their total.  timeout_ms 0 cancels at once, -1 never does; the calling coroutine's deadline ends the wait as
 * the timeout does.  Called from inside one of the server's own handlers,
 * it neither waits for nor cancels the calling connection.  A connection
 * an earlier drain cancelled is not cancelled or counted again.  Outside a
 * coroutine (on the loop's thread, between steps) it runs the loop's steps
 * itself while it waits.  Errors: -EINVAL (s NULL), -EXDEV (another
 * thread's server), -ECANCELED (the caller was cancelled: nothing was
 * cancelled, the server stays stopped), -ENOMEM (the wait's timer; on
 * several loops also the wait's event), -EBUSY (outside a coroutine
 * during one of the loop's steps).  After the loop
 * was freed it returns 0.  Blocks. */
WEFT_EXTERN int weft_server_drain(weft_server *s, int64_t timeout_ms);

/* Stops the server (as weft_server_stop) if it still runs, and gives it
 * up: s must not be used again.  Connections still alive go on; the
 * server's memory (and the TLS context it made) goes when the last of
 * them has ended, after on_exit, which still runs once.  May be called
 * from on_exit and from a handler.  s NULL is a no-op, and so is a call
 * from another thread than the server's loop's (on several loops: than a
 * loop of its group's, unless on_exit has run), or a second call while
 * connections are alive (once they have ended, s is gone).  Never blocks. */
WEFT_EXTERN void weft_server_free(weft_server *s);

/* ------------------------------------------------------------------------ */
/* Closing later (co's Connection::close(ms) and reset(ms))                  */

/* Closes s ms milliseconds from now, without waiting: the handle dies at
 * once (every call with it returns -EBADF from now on, a second close or
 * close_after included, and coroutines blocked on s wake with -EBADF), the
 * descriptor stays open, so what was sent still goes out and the peer sees
 * nothing more, until the loop closes it at the time (FIN; a TLS socket
 * sends close_notify first, as weft_close does).  If the loop is freed
 * before then, s is closed as it is freed.  ms <= 0 closes at once and
 * returns what weft_close returns.  Returns 0, -EBADF (s not an open
 * socket), -EXDEV (another thread's socket), -EPERM (no loop on this
 * thread), -ENOMEM (s is left open and usable).  Never blocks. */
WEFT_EXTERN int weft_close_after(weft_sock *s, int64_t ms);

/* The same with weft_reset at the time: the peer gets an RST, no
 * TIME_WAIT here, unsent data is dropped (a TLS socket sends nothing). */
WEFT_EXTERN int weft_reset_after(weft_sock *s, int64_t ms);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H_SRV */
