/*
 * weft/pool.h - pools: objects kept per loop, and pooled TCP and TLS connections.
 * Part of weft.h, which is the one header to include; the conventions at
 * the top of weft.h hold for every function here.
 *
 * Both pools keep what is idle per loop, as co::Pool keeps it per
 * scheduler thread: each loop that uses a pool has its own part of it
 * (idle objects or connections, waiters, the idle expiry, the limits),
 * and a get on a loop is served only from what that loop has kept, so a
 * connection never leaves the loop it belongs to (weft.h).  The loops
 * that keep parts of a pool are its domain: the first loop that keeps
 * something of it, and, if that loop is one of weft_main's several
 * (weft_config.threads), every loop of its group.  On a loop outside the
 * domain (one alone on another thread, or of another weft_main) a
 * weft_pool keeps nothing and a weft_connpool says -EXDEV.  Once every
 * part has gone with its loop (weft_loop_free, the end of weft_main), the
 * next loop to use the pool takes it.
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
 * keeps, else a new one from create(arg); never one another loop keeps.
 * The caller owns it until it puts it back (or destroys it itself).
 * Returns NULL if none is kept and create is NULL or returned NULL, or p
 * is NULL.  Blocks only as create does.  On a thread without a loop, or
 * on a loop outside p's domain, nothing is kept: every get creates. */
WEFT_EXTERN void *weft_pool_get(weft_pool *p);

/* Gives obj back: kept for the next get on this loop, unless max_idle are
 * kept on this loop already (the limit is per loop: with N loops up to
 * N x max_idle are kept), or this thread has no loop or one outside p's
 * domain (see above), or the memory to keep it cannot be had; then
 * destroy(obj, arg) runs at once (and may block).  obj NULL or p NULL is
 * a no-op.  obj need not have come from a get, and may have come from a
 * get on another loop. */
WEFT_EXTERN void weft_pool_put(weft_pool *p, void *obj);

/* How many idle objects this thread's loop keeps (0 for NULL, on a thread
 * without a loop, and on a loop outside p's domain); other loops' are not
 * counted.  Never blocks. */
WEFT_EXTERN size_t weft_pool_size(const weft_pool *p);

/* Destroys every idle object this thread's loop keeps; other loops' and
 * objects checked out are not touched (those may be put back later).
 * NULL, and a call from a thread whose loop keeps nothing of p, is a
 * no-op.  Blocks only as destroy does. */
WEFT_EXTERN void weft_pool_clear(weft_pool *p);

/* Destroys the idle objects and frees p: this loop's at once, in the
 * caller; each other loop's of weft_main's group on that loop, in the
 * loop itself (outside any coroutine) at its next step, after this call
 * has returned.  Objects still checked out stay the caller's, to destroy
 * itself: p must not be used again, on any loop, not even to put them
 * back.  A loop freed first destroys its part then.  Callable from any
 * loop of the group, and from any thread; but when p's domain is a loop
 * alone, a call from another thread than that loop's is a no-op (free it
 * there).  NULL is a no-op.  Blocks only as destroy does; a destroy run
 * by it must not block (on other loops it runs outside any coroutine). */
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
 * (o NULL: plain TCP, all defaults).  The limits are per loop: each loop
 * counts only its own connections and its own waiters, so with N loops a
 * host may see up to N x max_per_host connections (a limit shared by the
 * loops would have a put on one loop wake a get on another, and a socket
 * cannot move between them).  Errors: -EINVAL (out NULL, a negative count, idle_timeout_ms
 * below -1, tls not a client context), -ENOTSUP (tls in a build without
 * TLS), -ENOMEM.  Never blocks.  The caller owns *out and frees it with
 * weft_connpool_free. */
WEFT_EXTERN int weft_connpool_new(weft_connpool **out, const weft_connpool_opts *o);

/* Gets a connection to host:port for the caller: the idle one of that
 * host put back last on this loop (never another loop's), or, if none is
 * left, a new one (weft_tcp_connect, or weft_tls_connect: host is the
 * name sent and verified), or, at this loop's max_per_host, the first one
 * another get of this loop puts back.  Never one the peer
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
 * thread), -EXDEV (this loop is outside p's domain, see above),
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

/* Gives back a connection weft_connpool_get gave, on the loop that got it
 * (the one the socket belongs to).  With reusable set, and
 * if it is healthy (TCP still established both ways, nothing unread, no
 * TLS alert, close_notify or unsent record), it goes to the first get
 * waiting for its host, or is kept idle (up to max_idle_per_host; past
 * that it is closed).  Otherwise, or after weft_connpool_free, it is
 * closed (a TLS one with close_notify, which may wait as weft_close does).
 * Put back only a connection whose last exchange is complete: the next
 * get sends its request right after it.  Returns 0 (kept or handed on),
 * 1 (closed), -EBADF (s was closed already, behind the pool's back: the
 * pool forgets it and frees its place), -EINVAL (p or s NULL, or s is not
 * checked out of p on this loop: s is left as it is), -EXDEV (s belongs to
 * another loop, or this loop is outside p's domain: s is left as it is).
 * Blocks only for a TLS close. */
WEFT_EXTERN int weft_connpool_put(weft_connpool *p, weft_sock *s, int reusable);

/* Closes the idle connections (a TLS one with close_notify), makes every
 * get that waits return -EBADF, and gives the pool up: p must not be used
 * again, except to put back connections still checked out, on their own
 * loops, which are closed then.  This loop's part goes at once, in the
 * caller (a TLS close may wait as weft_close does); each other loop's of
 * weft_main's group at that loop's next step, after this call has
 * returned (its TLS closes then go out as weft_close_after's).  Its
 * memory goes with the last connection put back.  A loop freed first
 * closes its idle ones then, and forgets those checked out (they stay
 * open, the caller's, belonging to no loop).  Callable from any loop of
 * the group, and from any thread; but when p's domain is a loop alone, a
 * call from another thread than that loop's is a no-op.  NULL is a
 * no-op. */
WEFT_EXTERN void weft_connpool_free(weft_connpool *p);

/* What a pool holds, and what it has done since it was made: the sums
 * over every loop's part. */
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

/* Fills *out, from any thread.  Each count is read on its own while other
 * loops change theirs, so the counts may not agree with each other to
 * the last connection.  Returns 0, -EINVAL (p or out NULL).  Never
 * blocks. */
WEFT_EXTERN int weft_connpool_stat(const weft_connpool *p, weft_connpool_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H_POOL */
