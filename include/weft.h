/*
 * weft.h - coroutine-based asynchronous networking for C.
 *
 * Each connection is a coroutine that calls recv and send as if they blocked;
 * one loop per OS thread runs thousands of them over epoll.  This header is
 * the whole public API.
 *
 * Conventions, true of every function below unless its comment says otherwise:
 *   - A function returns >= 0 on success and a negative errno on failure
 *     (-ETIMEDOUT, -ECANCELED, -ECONNRESET, ...).  weft_strerror() names
 *     every code.  errno itself is never the way a result is reported.
 *   - A function that makes a handle gives it through an out-parameter.  On
 *     failure nothing was created, *out is untouched and ownership of every
 *     argument stays with the caller.
 *   - Timeouts are relative milliseconds: -1 waits forever, 0 only tries,
 *     any other negative value counts as already expired.  A call made of
 *     several waits turns its timeout into one deadline at entry.  Inside a
 *     coroutine, each call also ends at the coroutine's deadline
 *     (weft_deadline_set), whichever comes first.  Expiry gives -ETIMEDOUT.
 *     A wait with a finite deadline needs a slot in the loop's timer heap,
 *     so such a call can also return -ENOMEM if that heap cannot grow.
 *   - "Blocks" means: inside a coroutine, the coroutine parks and the loop
 *     runs others; on a thread with no running coroutine (a plain thread, a
 *     test's main stack, a CLI tool), the calling thread waits in poll().
 *     A parked coroutine wakes with -ECANCELED if weft_cancel() is called on
 *     it or if the socket it waits on is closed by another coroutine.
 *   - Everything except weft_loop_post() and weft_loop_wake() must be called
 *     on the thread that owns the loop.  Sockets belong to the loop that
 *     first waited on them; coroutines never move between threads.
 *   - SIGPIPE never kills a weft program, and weft never changes the
 *     process's signal dispositions (the only handler weft installs is the
 *     SIGSEGV one that reports coroutine stack overflows, and it passes every
 *     other fault on to the handler that was there before).
 */
#ifndef WEFT_H
#define WEFT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <netinet/in.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define WEFT_EXTERN __attribute__((visibility("default")))
#else
#define WEFT_EXTERN
#endif

#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 1
#define WEFT_VERSION_PATCH 0

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */

/* Returns a human-readable description of any code weft returns (negative
 * errno or a weft code); unknown codes give "unknown error".  Never NULL;
 * the string is static. */
WEFT_EXTERN const char *weft_strerror(int code);

/* Returns the symbolic name of a code: "ETIMEDOUT", "ECONNRESET", ...;
 * "UNKNOWN" for codes weft does not know.  Never NULL; static. */
WEFT_EXTERN const char *weft_err_name(int code);

/* ------------------------------------------------------------------------ */
/* Runtime                                                                   */

typedef struct weft_config {
    size_t stack_size;       /* default coroutine stack in bytes; 0 = 64 KiB */
    const char *backend;     /* "epoll"; NULL = $WEFT_BACKEND, else the best available */
    const char *resolver;    /* reserved for the name resolver; NULL = default */
    const char *dns_servers; /* reserved for the name resolver; NULL = resolv.conf */
} weft_config;               /* NULL config = all defaults; zeroed fields = defaults */

/* Creates a loop on this thread, runs fn(arg) as its first coroutine and
 * runs the loop until fn and every coroutine spawned have returned.
 * Returns fn's result, or before anything ran: -EBUSY (this thread already
 * has a loop), -EINVAL (unknown backend), -ENOMEM, -EMFILE/-ENFILE (the
 * poller's descriptors).  Blocks the thread. */
WEFT_EXTERN int weft_main(int (*fn)(void *arg), void *arg, const weft_config *cfg);

typedef struct weft_co_opts {
    size_t stack_size; /* bytes, rounded up to pages; 0 = the loop's default */
    const char *name;  /* copied (first 31 bytes); NULL = no name */
} weft_co_opts;

/* Queues a new coroutine running fn(arg) on this thread's loop and returns
 * its id (> 0).  It does not switch to it: the new coroutine first runs when
 * the caller next blocks or yields.  Its stack is mapped when it first runs;
 * if that fails the coroutine never runs, and a weft_join already waiting
 * for it returns -ENOMEM (a later join sees it finished and returns 0).  Errors: -EPERM (no loop on this thread), -ENOMEM, -EINVAL
 * (fn NULL, or a stack size over 1 GiB).  Never blocks. */
WEFT_EXTERN int64_t weft_go(void (*fn)(void *arg), void *arg);
WEFT_EXTERN int64_t weft_go_opts(void (*fn)(void *arg), void *arg, const weft_co_opts *o);

/* Waits until coroutine id has finished.  Returns 0 when it has (also if it
 * finished before the call), -ENOMEM if its stack could not be mapped so it
 * never ran, -ETIMEDOUT, -ECANCELED, -ESRCH (no such coroutine on this
 * thread's loop), -EDEADLK (id is the caller).  Blocks. */
WEFT_EXTERN int weft_join(int64_t id, int64_t timeout_ms);

/* Makes coroutine id's current blocking call, or its next one if it is not
 * blocked, return -ECANCELED.  The cancel is delivered once; calls after that
 * one work normally, so the coroutine can clean up.  Returns 0, or -ESRCH
 * (no such live coroutine on this thread).  Never blocks. */
WEFT_EXTERN int weft_cancel(int64_t id);

/* Returns the running coroutine's id, 0 outside any coroutine. */
WEFT_EXTERN int64_t weft_self(void);

/* Returns the name given in weft_go_opts ("" if none), or NULL if id is not
 * a live coroutine of this thread.  Valid until that coroutine ends. */
WEFT_EXTERN const char *weft_name(int64_t id);

/* Lets every other ready coroutine run once, then continues.  Returns 0 or
 * -ECANCELED.  Outside a coroutine: sched_yield(), returns 0. */
WEFT_EXTERN int weft_yield(void);

/* Sleeps ms milliseconds (<= 0: yields once).  Returns 0, -ECANCELED, or
 * -ETIMEDOUT if the coroutine's deadline comes first.  Blocks. */
WEFT_EXTERN int weft_sleep(int64_t ms);

/* Returns monotonic time in milliseconds (CLOCK_MONOTONIC). */
WEFT_EXTERN int64_t weft_now(void);

/* Sets an absolute deadline (weft_now() clock) that bounds every blocking
 * call the running coroutine makes until weft_deadline_clear(); each call
 * ends at the earlier of it and its own timeout, with -ETIMEDOUT.  No effect
 * outside a coroutine. */
WEFT_EXTERN void weft_deadline_set(int64_t at_ms);
WEFT_EXTERN void weft_deadline_clear(void);

/* ------------------------------------------------------------------------ */
/* Embedding: drive a loop from another event loop or by hand                */

typedef struct weft_loop weft_loop;

/* Creates a loop owned by this thread; weft_go then spawns onto it.
 * Errors: -EBUSY (this thread has a loop), -EINVAL (unknown backend),
 * -ENOMEM, -EMFILE, -ENFILE.  The caller frees it with weft_loop_free. */
WEFT_EXTERN int weft_loop_new(weft_loop **out, const weft_config *cfg);

/* One step: waits up to timeout_ms for I/O or a timer (0 = don't wait, and
 * no wait at all while coroutines are ready to run), then runs once every
 * coroutine that is ready.  Returns the number of coroutines still alive,
 * or -EINVAL (not this thread's loop), -EBUSY (called from inside one of
 * the loop's own coroutines). */
WEFT_EXTERN int weft_loop_poll(weft_loop *l, int64_t timeout_ms);

/* Steps until no coroutine is alive (returns 0), weft_loop_stop was called
 * (returns how many are still alive, > 0), or timeout_ms passed
 * (-ETIMEDOUT; with 0 after exactly one step).  -EINVAL/-EBUSY as
 * weft_loop_poll. */
WEFT_EXTERN int weft_loop_run(weft_loop *l, int64_t timeout_ms);

/* Makes weft_loop_run return after its current step.  Never blocks. */
WEFT_EXTERN void weft_loop_stop(weft_loop *l);

/* Returns a descriptor that becomes readable whenever weft_loop_poll has
 * work to do (I/O ready, a timer due, coroutines ready to run), for another
 * event loop to watch.  Owned by the loop.  The first call creates a timer
 * descriptor: it can fail with -EMFILE, -ENFILE or -ENOMEM.  From then on
 * every step asks the poller (the fd's state must stay true), which costs a
 * syscall per step that a loop nobody watches would skip. */
WEFT_EXTERN int weft_loop_fd(const weft_loop *l);

/* Thread-safe: runs fn(arg) in a new coroutine on loop l, from any thread.
 * Each post runs exactly once, in the order posted from one thread.  Posts
 * still queued when the loop is freed never run; l must not be used once
 * weft_loop_free has begun.  Returns 0, -EINVAL (l or fn NULL), -ENOMEM. */
WEFT_EXTERN int weft_loop_post(weft_loop *l, void (*fn)(void *arg), void *arg);

/* Thread-safe: wakes the loop if it is waiting, so its current step returns
 * early.  Never blocks. */
WEFT_EXTERN void weft_loop_wake(weft_loop *l);

/* Cancels every coroutine still alive (from then on each of their blocking
 * calls returns -ECANCELED), runs them until they have all returned, and
 * frees the loop.  Sockets still open are not closed.  NULL is a no-op.
 * Must not be called from one of the loop's coroutines. */
WEFT_EXTERN void weft_loop_free(weft_loop *l);

/* ------------------------------------------------------------------------ */
/* Addresses                                                                 */

typedef struct weft_addr {
    socklen_t len;
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
        struct sockaddr_storage ss;
    } u;
} weft_addr;

/* Parses a numeric IPv4 or IPv6 address ("127.0.0.1", "::1", "[::1]",
 * "fe80::1%lo") and a port (0..65535) into *out.  NULL or "*" means the IPv6
 * any-address "::" (dual-stack where used); "" is not an address.
 * Returns 0 or -EINVAL. */
WEFT_EXTERN int weft_addr_parse(weft_addr *out, const char *host, int port);

/* Formats a into buf as "127.0.0.1:80", "[::1]:80" or the unix path.
 * Returns the length written (without the NUL), -ENOSPC if buf is too small
 * (buf then holds a truncated, NUL-terminated string), -EAFNOSUPPORT. */
WEFT_EXTERN int weft_addr_format(const weft_addr *a, char *buf, size_t len);

/* Returns the port of an IPv4/IPv6 address, -EAFNOSUPPORT otherwise. */
WEFT_EXTERN int weft_addr_port(const weft_addr *a);

/* ------------------------------------------------------------------------ */
/* Sockets and TCP                                                           */

typedef struct weft_sock weft_sock;

enum { WEFT_REUSEPORT = 1, WEFT_V6ONLY = 2 };

/* Binds and listens on host:port.  host NULL or "*" = all interfaces
 * (IPv6 dual-stack, unless WEFT_V6ONLY, falling back to IPv4 where IPv6 is
 * absent); numeric addresses only for now.  port 0 = any free port
 * (weft_sock_local tells which).  SO_REUSEADDR is always set; flags may add
 * WEFT_REUSEPORT and WEFT_V6ONLY.  backlog <= 0 = SOMAXCONN.
 * Errors: -EINVAL (bad host, port or flags), -EADDRINUSE, -EACCES,
 * -EADDRNOTAVAIL, -EAFNOSUPPORT, -EMFILE, -ENFILE, -ENOMEM.  Never blocks.
 * The caller owns *out and closes it with weft_close. */
WEFT_EXTERN int weft_tcp_listen(weft_sock **out, const char *host, int port, int backlog,
                                int flags);

/* Accepts one connection.  Connections the peer aborted before accept are
 * skipped.  When the process is out of descriptors (EMFILE, ENFILE) or
 * memory, the call backs off (5 ms doubling to 500 ms) and retries within
 * its timeout instead of spinning; if the timeout ends first it returns that
 * error.  Errors: -ETIMEDOUT, -ECANCELED (cancelled, or the listener closed
 * under it), -EMFILE, -ENFILE, -ENOBUFS, -ENOMEM, -EINVAL (not a listener).
 * Blocks.  The caller owns *out. */
WEFT_EXTERN int weft_tcp_accept(weft_sock *listener, weft_sock **out, int64_t timeout_ms);

/* Connects to host:port (numeric IPv4/IPv6 address) within timeout_ms.
 * Errors: -ECONNREFUSED, -ETIMEDOUT, -ECANCELED, -ENETUNREACH,
 * -EHOSTUNREACH, -EADDRNOTAVAIL, -EINVAL (bad host or port), -EMFILE,
 * -ENFILE, -ENOMEM.  Blocks.  The caller owns *out. */
WEFT_EXTERN int weft_tcp_connect(weft_sock **out, const char *host, int port,
                                 int64_t timeout_ms);

/* Receives up to n bytes.  Returns the count (> 0), 0 when the peer closed
 * its side (or n is 0), or -ETIMEDOUT, -ECANCELED, -ECONNRESET, -ENOTCONN,
 * -EBADF.  If data and the deadline are both there at entry, the data wins.
 * Blocks.  Concurrent receivers on one socket take turns. */
WEFT_EXTERN ssize_t weft_recv(weft_sock *s, void *buf, size_t n, int64_t timeout_ms);

/* Receives exactly n bytes.  Returns n; 0 if the peer closed before the
 * first byte; -ECONNRESET if it closed part-way (or reset); -ETIMEDOUT,
 * -ECANCELED (bytes read before that are consumed and lost).  Blocks. */
WEFT_EXTERN ssize_t weft_recvn(weft_sock *s, void *buf, size_t n, int64_t timeout_ms);

/* Sends all n bytes.  Returns n, or -ETIMEDOUT, -ECANCELED, -EPIPE,
 * -ECONNRESET, -ENOTCONN, -EBADF; weft_sock_sent() tells how many bytes got
 * out before the failure.  Concurrent senders on one socket take turns, so
 * each buffer goes out whole.  Never raises SIGPIPE.  Blocks. */
WEFT_EXTERN ssize_t weft_send(weft_sock *s, const void *buf, size_t n, int64_t timeout_ms);

/* Scatter/gather twins of weft_recv (fills at most the iovecs, returns the
 * count, 0 at EOF) and weft_send (sends every byte of every iovec).  iovcnt
 * must be 0..IOV_MAX (-EINVAL otherwise).  Same errors. */
WEFT_EXTERN ssize_t weft_recvv(weft_sock *s, const struct iovec *iov, int iovcnt,
                               int64_t timeout_ms);
WEFT_EXTERN ssize_t weft_sendv(weft_sock *s, const struct iovec *iov, int iovcnt,
                               int64_t timeout_ms);

/* Bytes the last weft_send/weft_sendv on s got out, also when it failed. */
WEFT_EXTERN size_t weft_sock_sent(const weft_sock *s);

enum { WEFT_SHUT_RD = 1, WEFT_SHUT_WR = 2, WEFT_SHUT_RDWR = 3 };
enum { WEFT_POLL_IN = 1, WEFT_POLL_OUT = 2 };

/* Shuts down one or both directions (the peer reads 0 after WEFT_SHUT_WR;
 * a send after it fails with -EPIPE).  Returns 0, -EINVAL, -ENOTCONN.
 * Never blocks. */
WEFT_EXTERN int weft_shutdown(weft_sock *s, int how);

/* Closes s and frees it.  Coroutines blocked on s wake with -ECANCELED; the
 * descriptor leaves the poller before it is closed and nothing touches it
 * afterwards.  s must not be used again by the caller (like free()).
 * Returns 0, or the error close(2) reported (-EIO); s is freed either way.
 * NULL returns -EBADF.  Never blocks. */
WEFT_EXTERN int weft_close(weft_sock *s);

/* Like weft_close, but aborts the connection: the peer gets an RST (its
 * reads fail with -ECONNRESET) and the local port does not enter TIME_WAIT.
 * Unsent data is discarded. */
WEFT_EXTERN int weft_reset(weft_sock *s);

/* Waits until s is readable and/or writable (events: WEFT_POLL_IN |
 * WEFT_POLL_OUT).  Returns the ready subset (> 0), or -ETIMEDOUT,
 * -ECANCELED, -EINVAL (no events).  A peer's close or an error on the socket
 * counts as ready for both.  Blocks. */
WEFT_EXTERN int weft_sock_poll(weft_sock *s, int events, int64_t timeout_ms);

/* Returns the descriptor.  weft still owns it: don't close it. */
WEFT_EXTERN int weft_sock_fd(const weft_sock *s);

/* Adopts a socket descriptor (any family or type; it is made non-blocking
 * and close-on-exec).  On success weft owns fd and weft_close closes it; on
 * failure the caller still owns it.  Errors: -EBADF, -ENOTSOCK, -ENOMEM. */
WEFT_EXTERN int weft_sock_wrap(weft_sock **out, int fd);

/* Local and peer address of s.  Returns 0 or -ENOTCONN (peer), -EBADF. */
WEFT_EXTERN int weft_sock_local(const weft_sock *s, weft_addr *out);
WEFT_EXTERN int weft_sock_peer(const weft_sock *s, weft_addr *out);

/* Socket options.  Each returns 0 or the setsockopt error (-EINVAL,
 * -ENOPROTOOPT, ...).  Never block. */
WEFT_EXTERN int weft_sock_set_nodelay(weft_sock *s, int on);
/* idle_s, interval_s, count: <= 0 leaves the system's value. */
WEFT_EXTERN int weft_sock_set_keepalive(weft_sock *s, int on, int idle_s, int interval_s,
                                        int count);
/* 0 leaves one as it is. */
WEFT_EXTERN int weft_sock_set_bufsize(weft_sock *s, int rcvbuf, int sndbuf);
/* Sets the descriptor's own O_NONBLOCK off (on = 1) or back on (on = 0), for
 * handing the fd to code that expects a blocking socket.  weft's own calls
 * work in either mode (a blocking fd blocks the thread inside them). */
WEFT_EXTERN int weft_sock_set_blocking(weft_sock *s, int on);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H */
