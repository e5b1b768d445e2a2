/*
 * weft/pool.h - pools: objects kept per loop, and pooled TCP and TLS connections.
 * Part of weft.h, which is the one header to include; the conventions at
 * the top of weft.h hold for every function here.
 *
 * Both pools keep what is idle per loop, as co::Pool keeps it per
 * scheduler thread: a thread's gets are served from what that thread's
 * loop has kept.  Today a pool keeps idle objects or connections for one
 * loop at a time: the first loop that uses it, until that loop is freed
 * (then the next loop to use it takes it over).
 */
#ifndef WEFT_H_POOL
#define WEFT_H_POOL

#include "net.h"
#include "tls.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Object pools (co::Pool)                                                   */

typedef struct weft_pool weft_pool;

/* Makes a pool of objects that create(arg) makes and destroy(obj, arg)
 * destroys, keeping up to max_idle idle ones (0 = no limit).  create may
 * be NULL (weft_pool_get then gives only kept objects), and destroy too
 * (objects the pool lets go of are then dropped as they are).  Either may
 * block, and may use the pool themselves, except destroy called by
 * weft_pool_free.  Errors: -EINVAL (out NULL),
 * -ENOMEM.  Never blocks.  The caller owns *out and frees it with
 * weft_pool_free.
 *
 * co's PoolGuard has no C equivalent; the pattern is a get, then a put on
 * every way out:
 *
 *     client *c = weft_pool_get(pool);            // a kept one, or a new one
 *     if (!c)
 *         return -ENOMEM;                         // create() failed
 *     int rc = client_call(c, req);
 *     if (rc < 0) {                               // broken: don't keep it
 *         client_destroy(c, NULL);
 *         return rc;
 *     }
 *     weft_pool_put(pool, c);                     // back for the next get
 */
WEFT_EXTERN int weft_pool_new(weft_pool **out, void *(*create)(void *arg),
                              void (*destroy)(void *obj, void *arg), void *arg, size_t max_idle);

/* An object for the caller: the one put back last among those this loop
 * keeps, else a new one from create(arg).  The caller owns it until it
 * puts it back (or destroys it itself).  Returns NULL if none is kept and
 * create is NULL or returned NULL, or p is NULL.  Blocks only as create
 * does.  On a thread without a loop, or one whose loop does not keep p's
 * objects (another loop does), nothing is kept: every get creates. */
WEFT_EXTERN void *weft_pool_get(weft_pool *p);

/* Gives obj back: kept for the next get on this loop, unless max_idle are
 * kept already, or this thread's loop does not keep p's objects (see
 * weft_pool_get), or the memory to keep it cannot be had; then
 * destroy(obj, arg) runs at once (and may block).  obj NULL or p NULL is
 * a no-op.  obj need not have come from a get. */
WEFT_EXTERN void weft_pool_put(weft_pool *p, void *obj);

/* How many idle objects this thread's loop keeps (0 for NULL, and on a
 * thread whose loop does not keep p's objects).  Never blocks. */
WEFT_EXTERN size_t weft_pool_size(const weft_pool *p);

/* Destroys every idle object this thread's loop keeps; objects checked out
 * are not touched and may be put back later.  NULL, and a call from a
 * thread whose loop does not keep p's objects, is a no-op.  Blocks only as
 * destroy does. */
WEFT_EXTERN void weft_pool_clear(weft_pool *p);

/* Destroys the idle objects and frees p.  Objects still checked out stay
 * the caller's, to destroy itself: p must not be used again, not even to
 * put them back.  When the loop that keeps p's objects is freed first, it
 * destroys them then, and p keeps nothing until another loop uses it.
 * NULL is a no-op, and so is a call from another thread than the one
 * whose loop keeps p's objects (free it there).  Blocks only as destroy
 * does. */
WEFT_EXTERN void weft_pool_free(weft_pool *p);

/* ------------------------------------------------------------------------ */
/* Connection pools (co's tcp::Client, Go's http.Transport idle pool)        */

typedef struct weft_connpool weft_connpool;

typedef struct weft_connpool_opts {
    weft_tls_ctx *tls;       /* NULL: plain TCP.  Else TLS over every connection, with this
                              * client context, which must outlive the pool (until the
                              * last connection is back and closed); new connections offer
                              * the sessions it keeps, so they resume */
    int max_idle_per_host;   /* idle connections kept per host; 0 = 16 */
    int max_per_host;        /* 0 = no limit; else at most this many connections per host
                              * open at once (idle, checked out, or being made): a get
                              * over it waits for one to come back, first come first
                              * served */
    int64_t idle_timeout_ms; /* an idle connection is closed after this long; 0 = 60 s,
                              * -1 = never */
} weft_connpool_opts;

/* Makes a pool of connections keyed by host, port and TLS server name
 * (o NULL: plain TCP, all defaults).  The limits count the connections of
 * one loop.  Errors: -EINVAL (out NULL, a negative count, idle_timeout_ms
 * below -1, tls not a client context), -ENOTSUP (tls in a build without
 * TLS), -ENOMEM.  Never blocks.  The caller owns *out and frees it with
 * weft_connpool_free. */
WEFT_EXTERN int weft_connpool_new(weft_connpool **out, const weft_connpool_opts *o);

/* Gets a connection to host:port for the caller: the idle one of that
 * host put back last, or, if none is left, a new one (weft_tcp_connect,
 * or weft_tls_connect: host is the name sent and verified), or, at
 * max_per_host, the first one another get puts back.  Never one the peer
 * has closed, reset or written to while it sat idle: an idle connection is
 * checked without waiting (one recv with MSG_PEEK) as it is handed out,
 * and the loop watches idle ones, so one the peer closes is closed at the
 * loop's next step, not at the next get.  timeout_ms (and the coroutine's
 * deadline) bounds the whole call, waiting and connecting; a get that
 * finds an idle connection does not wait, so it neither times out nor
 * takes a pending cancel.  Returns 0 with *out set; the caller owns the
 * connection until it gives it back with weft_connpool_put, and must:
 * the pool counts it open (for max_per_host) until then.  Errors: -EINVAL
 * (p, out or host NULL, port outside 1..65535), -EPERM (no loop on this
 * thread), -EXDEV (another thread's loop keeps p's connections),
 * -ETIMEDOUT, -ECANCELED (nothing was taken: a waiter that leaves gives
 * its turn to the next), -EBADF (weft_connpool_free was called, also
 * while this call waited, or connected: the new connection is closed; a
 * connect that fails meanwhile gives its own error), -EDEADLK (outside a
 * coroutine, waiting for a connection no coroutine is left to put back),
 * -EBUSY (outside a coroutine, during one of the loop's steps), -ENOMEM,
 * and the errors of weft_tcp_connect and weft_tls_connect.  Blocks.
 * Outside a coroutine, on the loop's thread, it waits for a connection to
 * come back by running the loop's steps, as weft_join does, and connects
 * as weft_tcp_connect does there, blocking the thread. */
WEFT_EXTERN int weft_connpool_get(weft_connpool *p, weft_sock **out, const char *host, int port,
                                  int64_t timeout_ms);

/* The same, for TLS to host:port with servername as the name sent (SNI)
 * and verified, when it is not host (an address, or a name that only
 * reaches a server through another): weft_tcp_connect, then weft_tls_wrap.
 * servername NULL or equal to host is weft_connpool_get; connections with
 * different server names are never shared.  Errors: those of
 * weft_connpool_get and weft_tls_wrap; -EINVAL also for a servername ""
 * or over 255 bytes, and for any servername on a plain TCP pool. */
WEFT_EXTERN int weft_connpool_get_sni(weft_connpool *p, weft_sock **out, const char *host, int port,
                                      const char *servername, int64_t timeout_ms);

/* Gives back a connection weft_connpool_get gave.  With reusable set, and
 * if it is healthy (TCP still established both ways, nothing unread, no
 * TLS alert, close_notify or unsent record), it goes to the first get
 * waiting for its host, or is kept idle (up to max_idle_per_host; past
 * that it is closed).  Otherwise, or after weft_connpool_free, it is
 * closed (a TLS one with close_notify, which may wait as weft_close does).
 * Put back only a connection whose last exchange is complete: the next
 * get sends its request right after it.  Returns 0 (kept or handed on),
 * 1 (closed), -EBADF (s was closed already, behind the pool's back: the
 * pool forgets it and frees its place), -EINVAL (p or s NULL, or s is not
 * checked out of p on this loop: s is left as it is), -EXDEV.  Blocks
 * only for a TLS close. */
WEFT_EXTERN int weft_connpool_put(weft_connpool *p, weft_sock *s, int reusable);

/* Closes the idle connections (a TLS one with close_notify, which may
 * wait as weft_close does), makes every get that waits return -EBADF, and
 * gives the pool up: p must not be used again, except to put back
 * connections still checked out, which are closed then.  Its memory goes
 * with the last of those.  When the loop that keeps p's connections is
 * freed first, it closes the idle ones then, and forgets those checked
 * out (they stay open, the caller's, belonging to no loop).  NULL is a
 * no-op, and so is a call from another thread than the one whose loop
 * keeps p's connections. */
WEFT_EXTERN void weft_connpool_free(weft_connpool *p);

/* What a pool holds on this loop, and what it has done since it was made. */
typedef struct weft_connpool_stats {
    size_t idle;       /* kept idle now */
    size_t busy;       /* checked out now */
    size_t connecting; /* new connections being made for gets now */
    size_t waiting;    /* gets waiting at max_per_host now */
    uint64_t connects; /* new connections made */
    uint64_t reuses;   /* idle connections handed out again */
    uint64_t stale;    /* idle ones found closed, reset or written to by the peer */
    uint64_t expired;  /* idle ones closed after idle_timeout_ms */
} weft_connpool_stats;

/* Fills *out.  Returns 0, -EINVAL (p or out NULL), -EXDEV (another
 * thread's loop keeps p's connections).  Never blocks. */
WEFT_EXTERN int weft_connpool_stat(const weft_connpool *p, weft_connpool_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H_POOL */
