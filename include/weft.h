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
 *     it (it still owns everything it held), and with -EBADF if the socket
 *     it waits on is closed meanwhile by another coroutine or thread (the
 *     socket is gone; closing it again is harmless and returns -EBADF).
 *     A socket's first wait in a coroutine puts it on the loop's poller,
 *     which can fail with -ENOMEM or -ENOSPC (fs.epoll.max_user_watches).
 *   - A weft_sock * is a handle, not a pointer.  Once a socket is closed
 *     (from the moment weft_close begins), every call with its handle, a
 *     second weft_close included, returns -EBADF, however late, and never
 *     reaches another socket; so does a value that never was a handle (NULL
 *     included).  The few calls that return no error code say what they
 *     give instead.
 *   - Everything that acts on a loop or its coroutines must be called on
 *     the thread that owns the loop, except weft_loop_post() and
 *     weft_loop_wake(); calls that touch neither (addresses, weft_strerror,
 *     TLS contexts) work on any thread.  Coroutines never move between
 *     threads.  A socket belongs to the loop that made it, or, if it was
 *     made on a thread without a loop, to the first loop that uses it (that
 *     first call can also fail with -ENOMEM), until that loop is freed.
 *     Every call on it from another thread (another loop's coroutine, a
 *     plain thread) returns -EXDEV without touching it, except weft_close
 *     and weft_reset, which hand the close to the owning loop.  A socket no
 *     loop owns is like a plain descriptor: any thread may use it, one at a
 *     time.
 *   - A socket's receive side and its send side are each held by one call
 *     at a time; others wait their turn.  A call outside any coroutine that
 *     finds a direction held by a parked coroutine returns -EBUSY: the
 *     thread could only wait for that coroutine by running the loop.
 *   - SIGPIPE never kills a weft program, and weft never changes the
 *     process's signal dispositions (the only handler weft installs is the
 *     SIGSEGV one that reports coroutine stack overflows, and it passes every
 *     other fault on to the handler that was there before).
 */
#ifndef WEFT_H
#define WEFT_H

#include <errno.h> /* weft's error codes are errno's, negated */
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
 * errno or a weft code); 0 gives "success", unknown codes "unknown error".
 * Never NULL; the string is static. */
WEFT_EXTERN const char *weft_strerror(int code);

/* Returns the symbolic name of a code: "ETIMEDOUT", "ECONNRESET",
 * "WEFT_EAI_NONAME", ...; "OK" for 0, "UNKNOWN" for codes weft does not
 * know.  Never NULL; static. */
WEFT_EXTERN const char *weft_err_name(int code);

/* ------------------------------------------------------------------------ */
/* Runtime                                                                   */

typedef struct weft_config {
    size_t stack_size;       /* default coroutine stack in bytes, at most 1 GiB; 0 = 256 KiB,
                              * room for a 64 KiB buffer and a TLS handshake (ASan builds
                              * too); only touched pages cost memory.  A 2 MiB guard
                              * (address space only) under each stack turns an overflow,
                              * even by a frame of up to about 2 MiB, into a report and
                              * abort; a larger frame needs its code built with
                              * -fstack-clash-protection (weft's own is), which touches
                              * every page of a large frame on entry, so that an array on
                              * the stack then costs all its pages even while unused */
    const char *backend;     /* "epoll"; NULL or "" = $WEFT_BACKEND, else the best available */
    const char *resolver;    /* "ares" (c-ares on the loop) or "system" (getaddrinfo on a
                              * worker pool, for nsswitch); NULL or "" = $WEFT_RESOLVER, else
                              * "ares" ("system" in a build without c-ares) */
    const char *dns_servers; /* c-ares: "127.0.0.1:5353,[::1]:53"; NULL = /etc/resolv.conf's.
                              * A list c-ares refuses makes the loop's making fail with
                              * -EINVAL (the "system" resolver ignores it) */
    int dns_timeout_ms;      /* c-ares: first try's timeout per server; 0 = resolv.conf's */
    int dns_tries;           /* c-ares: tries per server; 0 = resolv.conf's */
} weft_config;               /* NULL config = all defaults; zeroed fields = defaults */

/* Creates a loop on this thread, runs fn(arg) as its first coroutine,
 * runs the loop until fn and every coroutine spawned have returned, then
 * frees the loop (as weft_loop_free).  Returns fn's result, or before
 * anything ran: -EINVAL (fn NULL, an unknown backend or resolver, a
 * stack_size over 1 GiB, a negative dns_timeout_ms or dns_tries, a
 * dns_servers c-ares refuses), -EBUSY (this thread already has a loop),
 * -ENOMEM (also when fn's stack could not be mapped: fn never ran),
 * -EMFILE/-ENFILE (the poller's descriptors), -ENOSPC (the poller's watch
 * limit).  Blocks the thread. */
WEFT_EXTERN int weft_main(int (*fn)(void *arg), void *arg, const weft_config *cfg);

typedef struct weft_co_opts {
    size_t stack_size; /* bytes, rounded up to pages, at most 1 GiB; 0 = the loop's default */
    const char *name;  /* copied (first 31 bytes); NULL = no name */
} weft_co_opts;

/* Queues a new coroutine running fn(arg) on this thread's loop and returns
 * its id (> 0).  It does not switch to it: the new coroutine first runs when
 * the caller next blocks or yields (outside a coroutine: at the loop's next
 * step).  Its stack is mapped when it first runs; if that fails the
 * coroutine never runs, and a weft_join already waiting for it in a
 * coroutine returns -ENOMEM (a later join sees it finished and returns 0).
 * Errors: -EPERM (no loop on this thread), -EINVAL (fn NULL, or a stack
 * size over 1 GiB), -ENOMEM, -EAGAIN (the loop has given out all of its
 * 2^40 - 1 ids).  Never blocks. */
WEFT_EXTERN int64_t weft_go(void (*fn)(void *arg), void *arg);
WEFT_EXTERN int64_t weft_go_opts(void (*fn)(void *arg), void *arg, const weft_co_opts *o);

/* Waits until coroutine id has finished.  Returns 0 when it has (also if it
 * finished before the call), -ENOMEM if its stack could not be mapped so it
 * never ran, -ETIMEDOUT, -ECANCELED, -ESRCH (no such coroutine on this
 * thread's loop, or no loop), -EDEADLK (id is the caller).  Blocks.
 * Outside a coroutine (on the loop's thread) it runs the loop's steps
 * itself until id is gone: a coroutine that never ran then gives 0, not
 * -ENOMEM, and -ECANCELED cannot come. */
WEFT_EXTERN int weft_join(int64_t id, int64_t timeout_ms);

/* Makes coroutine id's current blocking call, or, if it is not blocked,
 * its next call that has to wait (or weft_yield), return -ECANCELED; a call
 * that completes without waiting does not take it.  The cancel is
 * delivered once; calls after that one work normally, so the coroutine can
 * clean up.  Returns 0, or -ESRCH (no such live coroutine on this thread).
 * Never blocks. */
WEFT_EXTERN int weft_cancel(int64_t id);

/* Returns the running coroutine's id, 0 outside any coroutine. */
WEFT_EXTERN int64_t weft_self(void);

/* Returns the name given in weft_go_opts ("" if none), or NULL if id is not
 * a live coroutine of this thread.  Valid until that coroutine ends. */
WEFT_EXTERN const char *weft_name(int64_t id);

/* Lets every other ready coroutine run once, then continues.  Returns 0 or
 * -ECANCELED.  Outside a coroutine: sched_yield(), returns 0. */
WEFT_EXTERN int weft_yield(void);

/* Sleeps ms milliseconds (<= 0: yields once, as weft_yield).  Returns 0,
 * -ECANCELED, or -ETIMEDOUT if the coroutine's deadline comes first.
 * Blocks.  Outside a coroutine it sleeps the thread (nanosleep, no
 * deadline) and returns 0. */
WEFT_EXTERN int weft_sleep(int64_t ms);

/* Returns monotonic time in milliseconds (CLOCK_MONOTONIC). */
WEFT_EXTERN int64_t weft_now(void);

/* Sets an absolute deadline (weft_now() clock) that bounds every blocking
 * call the running coroutine makes until weft_deadline_clear(); each call
 * ends at the earlier of it and its own timeout, with -ETIMEDOUT.  A time
 * already past (negative ones included, however large) makes every such
 * call that has to wait time out at once; what can complete without
 * waiting still does.  No effect outside a coroutine. */
WEFT_EXTERN void weft_deadline_set(int64_t at_ms);
WEFT_EXTERN void weft_deadline_clear(void);

/* ------------------------------------------------------------------------ */
/* Embedding: drive a loop from another event loop or by hand                */

typedef struct weft_loop weft_loop;

/* Creates a loop owned by this thread; weft_go then spawns onto it.
 * Errors: -EBUSY (this thread has a loop), -EINVAL (out NULL, an unknown
 * backend or resolver, a stack_size over 1 GiB, a negative dns_timeout_ms
 * or dns_tries, a dns_servers c-ares refuses), -ENOMEM, -EMFILE, -ENFILE, -ENOSPC (the poller's watch
 * limit).  Never blocks.  The caller frees it with weft_loop_free. */
WEFT_EXTERN int weft_loop_new(weft_loop **out, const weft_config *cfg);

/* One step: waits up to timeout_ms for I/O or a timer (0 = don't wait, and
 * no wait at all while coroutines are ready to run), then runs once every
 * coroutine that is ready.  Returns the number of coroutines still alive,
 * or -EINVAL (l NULL or not this thread's loop), -EBUSY (called from inside
 * one of the loop's own coroutines). */
WEFT_EXTERN int weft_loop_poll(weft_loop *l, int64_t timeout_ms);

/* Steps until no coroutine is alive (returns 0, at once if none is),
 * weft_loop_stop was called (returns how many are still alive, > 0), or
 * timeout_ms passed (-ETIMEDOUT; with 0 after exactly one step).
 * -EINVAL/-EBUSY as weft_loop_poll. */
WEFT_EXTERN int weft_loop_run(weft_loop *l, int64_t timeout_ms);

/* Makes the weft_loop_run in progress return after its current step.
 * While none runs (between weft_loop_poll calls, say) there is nothing to
 * stop and it does nothing.  NULL is a no-op.  Never blocks. */
WEFT_EXTERN void weft_loop_stop(weft_loop *l);

/* Returns a descriptor that becomes readable whenever weft_loop_poll has
 * work to do (I/O ready, a timer due, coroutines ready to run), for another
 * event loop to watch.  Owned by the loop.  The first call creates a timer
 * descriptor: it can fail with -EMFILE, -ENFILE, -ENOMEM or -ENOSPC; l
 * NULL or another thread's loop is -EINVAL.  From
 * then on every step asks the poller (the fd's state must stay true), which
 * costs a syscall per step that a loop nobody watches would skip. */
WEFT_EXTERN int weft_loop_fd(const weft_loop *l);

/* Thread-safe: runs fn(arg) in a new coroutine on loop l, from any thread.
 * Each post runs exactly once, in the order posted from one thread.  Posts
 * still queued when the loop is freed never run; l must not be used once
 * weft_loop_free has begun.  Returns 0, -EINVAL (l or fn NULL), -ENOMEM. */
WEFT_EXTERN int weft_loop_post(weft_loop *l, void (*fn)(void *arg), void *arg);

/* Thread-safe: wakes the loop if it is waiting, so its current step returns
 * early; if it is not, its next wait returns at once.  NULL is a no-op.
 * Never blocks. */
WEFT_EXTERN void weft_loop_wake(weft_loop *l);

/* Cancels every coroutine still alive (from then on each of their blocking
 * calls returns -ECANCELED), runs them until they have all returned, and
 * frees the loop.  Sockets still open are not closed: from then on they
 * belong to no loop.  Closes that other threads handed to the loop are
 * carried out.  NULL is a no-op, and so is a call from another thread,
 * from one of the loop's coroutines, or during one of its steps: freeing
 * what is running cannot be done. */
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
 * "fe80::1%lo", "fe80::1%2") and a port (0..65535) into *out.  NULL or "*"
 * means the IPv6 any-address "::" (dual-stack where used); "" is not an
 * address.  Returns 0 or -EINVAL (out NULL, a port out of range, a host that
 * is not a numeric address, an unknown zone); *out is untouched on failure.
 * Never blocks. */
WEFT_EXTERN int weft_addr_parse(weft_addr *out, const char *host, int port);

/* Formats a into buf as "127.0.0.1:80", "[::1]:80", the unix path or
 * "@name" (abstract; a unix address's bytes are read up to a->len, and
 * never past sun_path; one whose a->len stops short of sun_path, as an
 * unbound socket's, is read up to sun_path's first NUL, "" for none).
 * Returns the length written (without the NUL), -ENOSPC if buf is too
 * small (buf then holds a truncated, NUL-terminated string; with len 0
 * nothing is written), -EAFNOSUPPORT (not AF_INET, AF_INET6 or AF_UNIX),
 * -EINVAL (a NULL, buf NULL with len > 0, a->len larger than the address
 * union). */
WEFT_EXTERN int weft_addr_format(const weft_addr *a, char *buf, size_t len);

/* Returns the port of an IPv4/IPv6 address, -EAFNOSUPPORT otherwise (a
 * NULL too). */
WEFT_EXTERN int weft_addr_port(const weft_addr *a);

/* ------------------------------------------------------------------------ */
/* Sockets and TCP                                                           */

typedef struct weft_sock weft_sock;

enum { WEFT_REUSEPORT = 1, WEFT_V6ONLY = 2 };

/* Binds and listens on host:port.  host NULL or "*" = all interfaces
 * (IPv6 dual-stack, unless WEFT_V6ONLY, falling back to IPv4 where IPv6 is
 * absent); a numeric address; or a name, looked up as weft_resolve does,
 * listening on one of its addresses: the first IPv4 one if it has any
 * (as Go's net.Listen: "localhost" is 127.0.0.1), else the first.
 * port 0 = any free port (weft_sock_local tells which).  SO_REUSEADDR is
 * always set; flags may add WEFT_REUSEPORT and WEFT_V6ONLY.  backlog <= 0
 * = SOMAXCONN.  Errors: -EINVAL (host "", a port outside 0..65535, unknown
 * flags, out NULL), for a name those of weft_resolve (the WEFT_EAI_* codes,
 * -ETIMEDOUT, -ECANCELED, ...; the lookup has no timeout of its own, only
 * the coroutine's deadline bounds it), -EADDRINUSE, -EACCES,
 * -EADDRNOTAVAIL, -EAFNOSUPPORT, -ENOPROTOOPT (WEFT_REUSEPORT unsupported),
 * -EMFILE, -ENFILE, -ENOMEM.  Never blocks, except to look a name up.  The
 * caller owns *out and closes it with weft_close. */
WEFT_EXTERN int weft_tcp_listen(weft_sock **out, const char *host, int port, int backlog,
                                int flags);

/* Accepts one connection.  Connections the peer aborted before accept are
 * skipped.  When the process is out of descriptors (EMFILE, ENFILE) or
 * memory, the call backs off (5 ms doubling to 500 ms) and retries within
 * its timeout instead of spinning; if the timeout ends first it returns that
 * error.  Errors: -ETIMEDOUT, -ECANCELED, -EBADF (the listener was closed,
 * also under the call), -EMFILE, -ENFILE, -ENOBUFS, -ENOMEM, -EINVAL (not a
 * listener, out NULL).  A connection is of its listener's type (stream or
 * seqpacket).  Blocks.  The caller owns *out. */
WEFT_EXTERN int weft_tcp_accept(weft_sock *listener, weft_sock **out, int64_t timeout_ms);

/* Connects to host:port within timeout_ms, which covers the lookup too.
 * host is a numeric IPv4/IPv6 address or a name: its addresses are raced,
 * IPv6 and IPv4 alternating, a new attempt every 250 ms or as soon as one
 * fails, the first to connect winning (Happy Eyeballs, RFC 8305); when
 * every address fails, the first failure is returned.  Errors:
 * -ECONNREFUSED, -ETIMEDOUT, -ECANCELED, -ENETUNREACH, -EHOSTUNREACH,
 * -EADDRNOTAVAIL, -EAFNOSUPPORT (an IPv6 address without IPv6), -EPERM (a
 * local firewall rule), -EINVAL (host NULL, port outside 1..65535, out
 * NULL, an IPv6 link-local address without a zone), the WEFT_EAI_* codes
 * and other errors of weft_resolve (a name that is not valid, ""
 * included: WEFT_EAI_BADNAME), -EMFILE, -ENFILE, -ENOMEM.  Blocks.  The
 * caller owns *out. */
WEFT_EXTERN int weft_tcp_connect(weft_sock **out, const char *host, int port,
                                 int64_t timeout_ms);

/* Receives up to n bytes.  Returns the count (> 0), 0 when the peer closed
 * its side (or n is 0: nothing is received), -EINVAL (buf NULL with n >
 * 0), or -ETIMEDOUT (also TCP
 * giving up on the peer), -ECANCELED, -ECONNRESET, -ENOTCONN (a TCP socket
 * not connected, or a listener), -EINVAL (a unix stream socket not
 * connected), -ECONNREFUSED (connected UDP: an earlier datagram bounced),
 * -EBADF.  If data and the deadline are both there at entry, the data wins.
 * Blocks.  Concurrent receivers on one socket take turns.  On a datagram
 * socket (connected UDP, unix datagram, seqpacket) it receives one
 * datagram and returns its full length: more than n means it was truncated
 * to n; 0 is an empty datagram. */
WEFT_EXTERN ssize_t weft_recv(weft_sock *s, void *buf, size_t n, int64_t timeout_ms);

/* Receives exactly n bytes.  Returns n; 0 if the peer closed before the
 * first byte (or n is 0); -ECONNRESET if it closed part-way (or reset);
 * -ETIMEDOUT, -ECANCELED, -EBADF (bytes read before that are consumed and
 * lost); -EINVAL on a datagram socket or with n over SSIZE_MAX; the other
 * errors of weft_recv.  Blocks. */
WEFT_EXTERN ssize_t weft_recvn(weft_sock *s, void *buf, size_t n, int64_t timeout_ms);

/* Sends all n bytes.  Returns n, or -ETIMEDOUT, -ECANCELED, -EPIPE,
 * -ECONNRESET, -ENOTCONN, -EBADF, -EINVAL (n over SSIZE_MAX); on a
 * datagram socket, where it sends one datagram, also -EDESTADDRREQ (not
 * connected), -EMSGSIZE, -ECONNREFUSED (an earlier datagram bounced).  n 0
 * on a stream returns 0 and sends nothing; on a datagram socket it sends an
 * empty datagram, as weft_sendto does.  -EINVAL also for buf NULL with n >
 * 0.  weft_sock_sent() tells how many bytes this call got out, also when it
 * failed.  Concurrent senders on one socket take turns, so each buffer
 * goes out whole.  Never raises SIGPIPE.  Blocks. */
WEFT_EXTERN ssize_t weft_send(weft_sock *s, const void *buf, size_t n, int64_t timeout_ms);

/* Scatter/gather twins of weft_recv (fills at most the iovecs, returns the
 * count, 0 at EOF; on a datagram socket, the datagram's full length, as
 * weft_recv) and weft_send (sends every byte of every iovec; on a datagram
 * socket, as one datagram however many iovecs).  iovcnt must be
 * 0..IOV_MAX, iov not NULL when iovcnt > 0, and the total at most
 * SSIZE_MAX (-EINVAL otherwise); on a stream, a total of 0 returns 0 at
 * once.  Same errors. */
WEFT_EXTERN ssize_t weft_recvv(weft_sock *s, const struct iovec *iov, int iovcnt,
                               int64_t timeout_ms);
WEFT_EXTERN ssize_t weft_sendv(weft_sock *s, const struct iovec *iov, int iovcnt,
                               int64_t timeout_ms);

/* What the last send on s got out, also when it failed: bytes for
 * weft_send/weft_sendv, n or 0 for weft_sendto, datagrams for
 * weft_sendmmsg.  0 if s is not an open socket of this thread (no error
 * code).  Never blocks. */
WEFT_EXTERN size_t weft_sock_sent(const weft_sock *s);

enum { WEFT_SHUT_RD = 1, WEFT_SHUT_WR = 2, WEFT_SHUT_RDWR = 3 };
enum { WEFT_POLL_IN = 1, WEFT_POLL_OUT = 2 };

/* Shuts down one or both directions (the peer reads 0 after WEFT_SHUT_WR;
 * a send after it fails with -EPIPE).  Returns 0, -EINVAL (how is not a
 * WEFT_SHUT_* value), -ENOTCONN (a TCP socket not connected); on a TLS
 * socket, WEFT_SHUT_WR can also return the error of sending close_notify
 * (-EPIPE, -ECONNRESET).  Never blocks. */
WEFT_EXTERN int weft_shutdown(weft_sock *s, int how);

/* Closes s.  At once its handle is dead: every call with it returns -EBADF
 * from then on, a second weft_close too, and every coroutine blocked on s
 * wakes with -EBADF.  Then a TLS socket sends close_notify (waiting at most
 * 250 ms for room), the descriptor leaves the poller and is closed, and s's
 * memory is freed once the last woken call has left.  Returns 0, the error
 * close(2) reported (-EIO; s is closed either way), or -EBADF (s is not an
 * open socket, or is being closed).  From a thread that does not own s
 * (another loop's coroutine, a plain thread), the close is handed to the
 * owning loop, which carries it out in a coroutine of its own at its next
 * step (or as it is freed, at the latest); the call returns 0 at once, or
 * -EBADF, or -ENOMEM (the hand-off could not be queued: s stays open).
 * Never blocks, except for a TLS socket's wait. */
WEFT_EXTERN int weft_close(weft_sock *s);

/* Like weft_close, but aborts a TCP connection: the peer gets an RST (its
 * reads fail with -ECONNRESET) and the local port does not enter TIME_WAIT.
 * Unsent data is discarded; a TLS socket sends nothing.  Same returns as
 * weft_close. */
WEFT_EXTERN int weft_reset(weft_sock *s);

/* Waits until s is readable and/or writable (events: WEFT_POLL_IN |
 * WEFT_POLL_OUT; other bits are ignored).  Returns the ready subset (> 0),
 * or -ETIMEDOUT, -ECANCELED, -EINVAL (neither bit set).  A peer's close or
 * an error on the socket counts as ready for both.  Blocks. */
WEFT_EXTERN int weft_sock_poll(weft_sock *s, int events, int64_t timeout_ms);

/* Returns the descriptor.  weft still owns it: don't close it. */
WEFT_EXTERN int weft_sock_fd(const weft_sock *s);

/* Adopts a socket descriptor (any family or type, a listening one too; it
 * is made non-blocking and close-on-exec).  fd must not be one weft already
 * owns.  On success weft owns fd and weft_close closes it; on failure the
 * caller still owns it.  Errors: -EINVAL (out NULL), -EBADF (fd negative
 * or not open), -ENOTSOCK, -ENOMEM.  Never blocks.  The caller owns *out. */
WEFT_EXTERN int weft_sock_wrap(weft_sock **out, int fd);

/* Local and peer address of s.  Returns 0 or -ENOTCONN (peer; *out then
 * holds no address), -EINVAL (out NULL), -EBADF.  Never block. */
WEFT_EXTERN int weft_sock_local(const weft_sock *s, weft_addr *out);
WEFT_EXTERN int weft_sock_peer(const weft_sock *s, weft_addr *out);

/* Socket options.  Each returns 0 or the setsockopt error: the TCP ones
 * (nodelay, keepalive's timing) give -ENOPROTOOPT on UDP and raw sockets
 * and -EOPNOTSUPP on unix ones; a value out of the kernel's range gives
 * -EINVAL.  Never block. */
WEFT_EXTERN int weft_sock_set_nodelay(weft_sock *s, int on);
/* idle_s, interval_s, count: <= 0 leaves the system's value; ignored with
 * on 0.  They are set one by one: a failure leaves SO_KEEPALIVE on and
 * the values before it set. */
WEFT_EXTERN int weft_sock_set_keepalive(weft_sock *s, int on, int idle_s, int interval_s,
                                        int count);
/* 0 leaves one as it is; a negative one is -EINVAL.  Linux doubles each
 * and caps it at net.core.rmem_max / wmem_max, silently. */
WEFT_EXTERN int weft_sock_set_bufsize(weft_sock *s, int rcvbuf, int sndbuf);
/* Sets the descriptor's own O_NONBLOCK off (on = 1) or back on (on = 0), for
 * handing the fd to code that expects a blocking socket.  weft's own calls
 * work in either mode and do not block the thread on a blocking fd, except
 * weft_connect, whose connect(2) then blocks it, whatever its timeout.
 * Returns 0 or fcntl's error. */
WEFT_EXTERN int weft_sock_set_blocking(weft_sock *s, int on);


/* Generic sockets, for walking a weft_resolve list the socket2 way: open a
 * socket of the entry's family, type and protocol, then bind or connect it
 * to the entry's address.  The descriptor is non-blocking and close-on-exec;
 * an AF_INET6 socket, raw ones aside, is dual-stack (IPV6_V6ONLY off).
 * Errors: -EAFNOSUPPORT, -EPROTONOSUPPORT, -ESOCKTNOSUPPORT, -EINVAL (out
 * NULL, an unknown type, SOCK_NONBLOCK or SOCK_CLOEXEC in type), -EMFILE,
 * -ENFILE, -ENOMEM, -EPERM or -EACCES (raw sockets without CAP_NET_RAW).
 * Never blocks.  The caller owns *out. */
WEFT_EXTERN int weft_socket(weft_sock **out, int family, int type, int protocol);

/* Binds s to a.  Returns 0, -EADDRINUSE, -EADDRNOTAVAIL, -EACCES,
 * -EAFNOSUPPORT (a of another family than s), -EINVAL (a NULL, a->len 0,
 * too big, or too short for s's family: an IPv4 address on an IPv6 socket;
 * s already bound); for a unix path also -ENOENT, -ENOTDIR, -EROFS.  Never
 * blocks. */
WEFT_EXTERN int weft_bind(weft_sock *s, const weft_addr *a);

/* Listens on a bound stream socket (backlog <= 0 = SOMAXCONN; an unbound
 * TCP socket gets a free port).  Returns 0, -EADDRINUSE, -EOPNOTSUPP (not a
 * stream or seqpacket socket), -EINVAL (a unix socket not bound, a
 * connected socket).  Never blocks. */
WEFT_EXTERN int weft_listen(weft_sock *s, int backlog);

/* Connects s to a.  Stream sockets wait within timeout_ms for the
 * connection; datagram sockets only set the default destination (an
 * AF_UNSPEC address, a->len 0 included, removes it) and never wait.
 * Errors: -EINVAL (a NULL, a->len too big or too short for s's family, an
 * IPv6 link-local address without a zone), -EAFNOSUPPORT (a of another
 * family), -ECONNREFUSED, -ETIMEDOUT, -ECANCELED, -ENETUNREACH,
 * -EHOSTUNREACH, -EADDRNOTAVAIL, -EACCES (UDP: a broadcast address without
 * weft_udp_set_broadcast), -EPERM (a local firewall rule), -EISCONN,
 * -EALREADY (a connect still under way: one that timed out or was
 * cancelled goes on in the kernel); unix: -ENOENT, -ENOTDIR, -EACCES,
 * -EPROTOTYPE (a socket of another type at the path), a full backlog
 * retried as by weft_unix_connect.  Blocks (streams).  On failure s stays
 * open and owned by the caller. */
WEFT_EXTERN int weft_connect(weft_sock *s, const weft_addr *a, int64_t timeout_ms);

/* Accepts one connection on any listening stream socket (TCP or unix);
 * weft_tcp_accept and weft_unix_accept are this call.  Same contract as
 * weft_tcp_accept. */
WEFT_EXTERN int weft_accept(weft_sock *listener, weft_sock **out, int64_t timeout_ms);

/* ------------------------------------------------------------------------ */
/* Names                                                                     */

/* Lookup failures, outside errno's range.  weft_strerror names each. */
enum {
    WEFT_EAI_NONAME = -3001,   /* no such name (NXDOMAIN), or none in /etc/hosts */
    WEFT_EAI_NODATA = -3002,   /* the name exists, but has no address of that family */
    WEFT_EAI_FAIL = -3003,     /* the server failed (SERVFAIL) or answered nonsense */
    WEFT_EAI_REFUSED = -3004,  /* the server refused the query */
    WEFT_EAI_TIMEOUT = -3005,  /* no server answered, after every retry */
    WEFT_EAI_SERVICE = -3006,  /* unknown service name, or not for this socket type */
    WEFT_EAI_FAMILY = -3007,   /* address family not supported */
    WEFT_EAI_BADNAME = -3008,  /* not a valid host name */
};

typedef struct weft_addrinfo weft_addrinfo;
typedef struct weft_hints {
    int family;   /* AF_INET, AF_INET6, AF_UNIX; 0 = any */
    int socktype; /* SOCK_STREAM, SOCK_DGRAM, SOCK_RAW; 0 = stream and datagram */
    int protocol; /* 0 = the type's default */
    int flags;    /* WEFT_AI_* */
} weft_hints;
enum {
    WEFT_AI_PASSIVE = 1,     /* host NULL or "*" gives the any-address, for bind */
    WEFT_AI_CANONNAME = 2,   /* fill the first entry's canonical name */
    WEFT_AI_NUMERICHOST = 4, /* host must be numeric: never looked up */
    WEFT_AI_NUMERICSERV = 8, /* service must be a port number */
    WEFT_AI_V4MAPPED = 16,   /* family AF_INET6 and no IPv6 address: IPv4-mapped ones */
    WEFT_AI_ADDRCONFIG = 32, /* only families this host has a non-loopback address of */
};

/* Looks up host and service, like getaddrinfo.  host: a name, a numeric
 * address (never sent to DNS), "*" (all interfaces, as with
 * WEFT_AI_PASSIVE) or NULL (loopback, or the any-address with
 * WEFT_AI_PASSIVE); with family AF_UNIX, a path ("@name" = abstract; the
 * one entry then has the hints' socktype, stream if 0, and service is
 * ignored).  service: a port number (0..65535), a service name from
 * /etc/services, or NULL or "" (port 0).  hints may be NULL.  "localhost"
 * and names under it ("a.localhost", any case, a final dot or not) are the
 * loopback addresses, ::1 and 127.0.0.1 by the hints' family (RFC 6761),
 * and ask no resolver, whatever /etc/hosts says.  Other names go through
 * /etc/hosts, then DNS (the loop's c-ares channel, or getaddrinfo on worker
 * threads with the "system" resolver); the lookup obeys timeout_ms and
 * weft_cancel.
 * Returns 0 and a non-empty list in *out, which the caller frees with
 * weft_addrinfo_free.  Errors: WEFT_EAI_* above (WEFT_EAI_FAMILY for a
 * hints family other than 0, AF_INET, AF_INET6 and AF_UNIX;
 * WEFT_EAI_NONAME for a name with WEFT_AI_NUMERICHOST), -ETIMEDOUT
 * (timeout_ms ended first), -ECANCELED, -EINVAL (out NULL, unknown flags or
 * socktype; with AF_UNIX, host NULL, "" or "@"), WEFT_EAI_FAIL also when
 * c-ares itself could not be set up, -ENAMETOOLONG (an
 * AF_UNIX path), -ENOMEM; the "system" resolver also -EMFILE, -ENFILE,
 * -EAGAIN (no worker thread could start) and getaddrinfo's system errors.
 * Blocks. */
WEFT_EXTERN int weft_resolve(weft_addrinfo **out, const char *host, const char *service,
                             const weft_hints *hints, int64_t timeout_ms);
/* Walks the list: the next entry, NULL at the end (or if ai is NULL). */
WEFT_EXTERN const weft_addrinfo *weft_addrinfo_next(const weft_addrinfo *ai);
/* The entry's address, ready for weft_connect, weft_bind or weft_sendto;
 * owned by the list (NULL if ai is NULL). */
WEFT_EXTERN const weft_addr *weft_addrinfo_addr(const weft_addrinfo *ai);
/* The entry's family, socket type and protocol; -EINVAL if ai is NULL. */
WEFT_EXTERN int weft_addrinfo_family(const weft_addrinfo *ai);
WEFT_EXTERN int weft_addrinfo_socktype(const weft_addrinfo *ai);
WEFT_EXTERN int weft_addrinfo_protocol(const weft_addrinfo *ai);
/* The canonical name (first entry, with WEFT_AI_CANONNAME; owned by the
 * list), else NULL. */
WEFT_EXTERN const char *weft_addrinfo_canonname(const weft_addrinfo *ai);
/* Frees a whole list (NULL is fine). */
WEFT_EXTERN void weft_addrinfo_free(weft_addrinfo *ai);

/* ------------------------------------------------------------------------ */
/* UDP                                                                       */

/* Opens an unbound UDP socket of family AF_INET or AF_INET6 (IPv6 sockets
 * are dual-stack).  Errors: -EAFNOSUPPORT, -EINVAL (out NULL), -EMFILE,
 * -ENFILE, -ENOMEM.  Never blocks.  The caller owns *out. */
WEFT_EXTERN int weft_udp_open(weft_sock **out, int family);
/* Binds to a numeric host ("*" or NULL = any) and port (0 = any).  On an
 * IPv6 socket an IPv4 host means its IPv4-mapped address; on an IPv4
 * socket an IPv6 host is -EINVAL unless it is IPv4-mapped.  Returns 0,
 * -EINVAL (bad host or port, s already bound, not a UDP or raw IP socket),
 * -EADDRINUSE, -EADDRNOTAVAIL, -EACCES, -EBADF.  Never blocks. */
WEFT_EXTERN int weft_udp_bind(weft_sock *s, const char *host, int port);
/* Sets (or, called again, changes) the default peer: weft_send and
 * weft_recv then work, and datagrams from other addresses are dropped
 * (those already queued before the call are still delivered).  An ICMP
 * error for a datagram to the peer makes the next call on the socket
 * return -ECONNREFUSED.  host NULL removes the peer (and a port the kernel
 * chose at connect, if the socket was never bound).  Returns 0, -EINVAL
 * (bad host, "*", port 0 or out of range, an IPv6 link-local host without
 * a zone, not a UDP or raw IP socket), -EACCES (a broadcast address
 * without weft_udp_set_broadcast), -ENETUNREACH, -EBADF.  Never blocks. */
WEFT_EXTERN int weft_udp_connect(weft_sock *s, const char *host, int port);

/* Sends one datagram of n bytes to to (NULL or to->len 0 = the connected
 * peer); n may be 0.  Returns n, or -EMSGSIZE (too big: over 65,507 bytes
 * for IPv4, 65,527 for IPv6), -ETIMEDOUT, -ECANCELED, -ECONNREFUSED (an
 * earlier datagram to a connected peer bounced), -EDESTADDRREQ (no
 * address and no peer), -EACCES (a broadcast address without
 * weft_udp_set_broadcast), -EINVAL (not a datagram socket, buf NULL with
 * n > 0, to->len too big or too short for the socket's family),
 * -EAFNOSUPPORT (an IPv6 to on an IPv4 socket), -ENOENT or -ECONNREFUSED
 * (unix: no such path, nobody bound there), -EBADF, or the kernel's
 * -ENOBUFS, -ENETUNREACH.  weft_sock_sent() then gives n, or 0 after a
 * failure.  Blocks only while the send buffer is full.  Works on UDP, unix
 * datagram, seqpacket and raw sockets. */
WEFT_EXTERN ssize_t weft_sendto(weft_sock *s, const void *buf, size_t n, const weft_addr *to,
                                int64_t timeout_ms);
/* Receives one datagram into buf and its sender into *from (may be NULL;
 * from->len 0 when the sender has no address, as an unbound unix socket).
 * Returns the datagram's full length: a value greater than n means it was
 * truncated and only the first n bytes were stored.  0 is an empty
 * datagram.  With n 0 (buf may then be NULL) the datagram is consumed and
 * only its length returned.  Errors: -ETIMEDOUT, -ECANCELED, -ECONNREFUSED
 * (connected UDP: an earlier datagram bounced), -EINVAL (not a datagram
 * socket, buf NULL with n > 0), -EBADF.  Blocks; concurrent receivers take
 * turns.  Works on UDP, unix datagram, seqpacket and raw sockets. */
WEFT_EXTERN ssize_t weft_recvfrom(weft_sock *s, void *buf, size_t n, weft_addr *from,
                                  int64_t timeout_ms);

/* One datagram of a batch.  Sending: buf, len, addr (addr.len 0 = the
 * connected peer).  Receiving: buf and len in; got (bytes stored), addr
 * (the sender; len 0 if it has none) and truncated (1 if the datagram was
 * longer than len) out. */
typedef struct weft_dgram {
    void *buf;
    size_t len;
    weft_addr addr;
    size_t got;
    int truncated;
} weft_dgram;
/* Sends all n datagrams, in order, with as few syscalls as possible
 * (sendmmsg, up to 64 messages each: 64 datagrams, or up to 256 with GSO).
 * On a UDP socket whose kernel has UDP GSO, each run of up to 64 non-empty
 * datagrams of one length to one address, 65,000 bytes in all (the last of
 * a run may be shorter), goes as one GSO send, which the kernel cuts back
 * into those datagrams; a socket where the kernel refuses one goes on
 * without, and other sockets never try.  Returns n (0 when n is 0), or a
 * negative error; weft_sock_sent() then tells how many datagrams (not
 * bytes) went out before it.  Errors as weft_sendto; -EINVAL (n < 0, v
 * NULL, a buf NULL with len > 0, an addr.len too big).  Blocks while the
 * send buffer is full; timeout_ms bounds the whole call. */
WEFT_EXTERN int weft_sendmmsg(weft_sock *s, weft_dgram *v, int n, int64_t timeout_ms);
/* Waits for at least one datagram, then takes up to n (at most 64) of
 * those queued in one recvmmsg call, never waiting for more.  Fills got,
 * addr and truncated of v[0..r-1]; the rest are untouched.  Returns how
 * many (1..n), or -ETIMEDOUT, -ECANCELED, -ECONNREFUSED (as weft_recvfrom),
 * -EINVAL (n <= 0, v NULL, a buf NULL with len > 0, not a datagram socket),
 * -EBADF.  Blocks; concurrent receivers take turns. */
WEFT_EXTERN int weft_recvmmsg(weft_sock *s, weft_dgram *v, int n, int64_t timeout_ms);

/* Multicast: join or leave group (numeric IPv4 or IPv6) on the interface
 * iface (a name such as "lo", or NULL for the system's choice, or the
 * group's own scope as in "ff02::1%lo").  A dual-stack IPv6 socket can
 * join IPv4 groups too.  Which interface datagrams sent to a group leave
 * by is the routing table's choice unless weft_udp_set_mcast_iface sets
 * it.  Returns 0, -EINVAL (group NULL, "*" or not a multicast address, an
 * IPv6 group on an IPv4 socket, not a UDP or raw IP socket), -EADDRINUSE
 * (already joined), -EADDRNOTAVAIL (not joined), -ENODEV (no such
 * interface, or no route to pick one), -ENOBUFS (an IPv4 socket past
 * net.ipv4.igmp_max_memberships groups, 20 by default), -EBADF.  Never
 * block. */
WEFT_EXTERN int weft_udp_join(weft_sock *s, const char *group, const char *iface);
WEFT_EXTERN int weft_udp_leave(weft_sock *s, const char *group, const char *iface);
/* Multicast TTL / hop limit (0..255; 0 keeps datagrams on this host),
 * multicast loopback, SO_BROADCAST.  On an IPv6 socket the first two set
 * the IPv6 option and the IPv4 one (for IPv4 groups).  Return 0, -EINVAL
 * (ttl out of range, not a UDP or raw IP socket), -EBADF.  Never block. */
WEFT_EXTERN int weft_udp_set_ttl(weft_sock *s, int ttl);
WEFT_EXTERN int weft_udp_set_loop(weft_sock *s, int on);
WEFT_EXTERN int weft_udp_set_broadcast(weft_sock *s, int on);
/* The interface that datagrams sent to multicast groups leave by: a name
 * such as "lo", or NULL to go back to the routing table's choice.  On an
 * IPv6 socket it sets the IPv6 option and the IPv4 one (for IPv4 groups).
 * Returns 0, -ENODEV (no such interface), -EINVAL (not a UDP or raw IP
 * socket), -EBADF.  Never blocks. */
WEFT_EXTERN int weft_udp_set_mcast_iface(weft_sock *s, const char *iface);

/* ------------------------------------------------------------------------ */
/* Unix and raw sockets                                                      */

/* Builds a unix address: a path, or "@name" for a Linux abstract name
 * (sun_path[0] is NUL and the length counts only the name's bytes).  A
 * path may have up to 107 bytes (sun_path keeps its terminator), a name
 * after the '@' up to 107.  Returns 0, -EINVAL (NULL, "" or "@"),
 * -ENAMETOOLONG; *out is untouched on failure. */
WEFT_EXTERN int weft_addr_unix(weft_addr *out, const char *path);

/* Listens on a unix stream socket at path ("@name": abstract).  A stale
 * socket file left at path is not removed: -EADDRINUSE.  Errors: -EINVAL
 * (out NULL), those of weft_addr_unix, -EADDRINUSE, -ENOENT (a directory on
 * the path is missing), -ENOTDIR, -EACCES, -EROFS, -EMFILE, -ENFILE,
 * -ENOMEM; if listen itself fails, the socket file bind made is unlinked.
 * Never blocks.  The caller owns *out; closing it does not unlink. */
WEFT_EXTERN int weft_unix_listen(weft_sock **out, const char *path, int backlog);
/* weft_accept for unix listeners: the same call and contract. */
WEFT_EXTERN int weft_unix_accept(weft_sock *listener, weft_sock **out, int64_t timeout_ms);
/* Connects to a unix stream socket.  Errors: -EINVAL (out NULL), those of
 * weft_addr_unix, -ENOENT (no such path), -ENOTDIR, -ECONNREFUSED (no
 * listener: a socket file nobody listens on, or a file that is not a
 * socket), -EPROTOTYPE (a datagram socket is bound there), -EACCES,
 * -ETIMEDOUT, -ECANCELED, -EMFILE, -ENFILE, -ENOMEM.  -EAGAIN is never
 * returned: a full backlog is tried again (after 1 ms, doubling to 50 ms)
 * within the timeout.  Blocks.  The caller owns *out. */
WEFT_EXTERN int weft_unix_connect(weft_sock **out, const char *path, int64_t timeout_ms);
/* Opens a unix datagram socket bound to path ("@name": abstract; NULL:
 * unbound, it can send but its receivers see no address to answer).  Use
 * weft_sendto with weft_addr_unix, and weft_recvfrom.  Errors: -EINVAL
 * (out NULL), those of weft_addr_unix, -EADDRINUSE, -ENOENT, -ENOTDIR,
 * -EACCES, -EROFS, -EMFILE, -ENFILE, -ENOMEM.  Never blocks.  The caller
 * owns *out; closing it does not unlink. */
WEFT_EXTERN int weft_unix_dgram_open(weft_sock **out, const char *path);
/* A connected pair (type SOCK_STREAM or SOCK_DGRAM, AF_UNIX), both
 * non-blocking and close-on-exec.  Returns 0, -EINVAL (any other type,
 * type flags included), -EMFILE, -ENFILE, -ENOMEM.  Never blocks.  The
 * caller owns both. */
WEFT_EXTERN int weft_socketpair(weft_sock *out[2], int type);
/* Passes a descriptor over a unix socket (SCM_RIGHTS, with one byte of
 * data).  The caller keeps its own fd.  Returns 0, -EBADF (s or fd not
 * open), -EINVAL (s is not a unix socket, or is TLS), -ENOTCONN (s is not
 * connected), -EPIPE (the stream peer closed), -ECONNREFUSED (the datagram
 * peer closed), -ETOOMANYREFS (too many descriptors in flight),
 * -ETIMEDOUT, -ECANCELED.  Blocks. */
WEFT_EXTERN int weft_send_fd(weft_sock *s, int fd, int64_t timeout_ms);
/* Receives a descriptor sent with weft_send_fd; it arrives close-on-exec
 * and the caller owns it.  Returns 1 with *fd set, 0 if the stream peer
 * closed or an empty datagram came (a datagram peer's close is not seen:
 * the call waits its timeout), -EBADMSG (the byte came without a
 * descriptor, with more than one, or with its control data cut short,
 * MSG_CTRUNC: every descriptor that did come is closed and the byte is
 * consumed), -ECONNRESET (the stream peer closed with data unread),
 * -EINVAL (fd NULL, s is TLS or not a unix socket: its bytes are left
 * alone), -ETIMEDOUT, -ECANCELED.  Blocks. */
WEFT_EXTERN int weft_recv_fd(weft_sock *s, int *fd, int64_t timeout_ms);
/* Opens a raw socket: family AF_INET or AF_INET6, protocol an IP protocol
 * number (IPPROTO_ICMP, IPPROTO_ICMPV6, ...).  Use weft_sendto (the kernel
 * adds the IP header) and weft_recvfrom: on AF_INET each packet received
 * starts with its IPv4 header, on AF_INET6 it does not, and the kernel
 * fills in ICMPv6 checksums.  Errors: -EPERM or -EACCES (no CAP_NET_RAW),
 * -EAFNOSUPPORT (another family), -EINVAL (out NULL, protocol outside
 * 0..255), -EPROTONOSUPPORT (protocol 0), -EMFILE, -ENFILE, -ENOMEM.
 * Never blocks.  The caller owns *out. */
WEFT_EXTERN int weft_raw_open(weft_sock **out, int family, int protocol);

/* ------------------------------------------------------------------------ */
/* TLS (OpenSSL)                                                             */

/* TLS failures, outside errno's range.  weft_tls_errmsg() gives OpenSSL's
 * reason for the last one on a socket.  Besides these, TLS calls return
 * the socket's own errors (-ECONNRESET, -EPIPE, -ETIMEDOUT, -ECANCELED,
 * -ENOMEM); a peer that resets during the handshake gives -ECONNRESET. */
enum {
    WEFT_ETLS_HANDSHAKE = -4001, /* the handshake failed (no shared protocol, ...) */
    WEFT_ETLS_UNTRUSTED = -4002, /* certificate not trusted (unknown CA, self-signed) */
    WEFT_ETLS_NAME = -4003,      /* certificate is not for this host name or address */
    WEFT_ETLS_EXPIRED = -4004,   /* certificate expired or not yet valid */
    WEFT_ETLS_ALERT = -4005,     /* the peer sent a fatal alert */
    WEFT_ETLS_TRUNCATED = -4006, /* the peer closed without close_notify */
    WEFT_ETLS_PROTOCOL = -4007,  /* the peer sent something that is not TLS (or broken TLS) */
    WEFT_ETLS_CERT = -4008,      /* a certificate, key or CA could not be loaded */
};

typedef struct weft_tls_ctx weft_tls_ctx;
typedef struct weft_tls_opts {
    const char *cert_file, *key_file; /* PEM chain and key: servers, and clients that present one */
    const char *cert_pem, *key_pem;   /* the same from memory (NUL-terminated PEM) */
    const char *ca_file, *ca_dir;     /* trust (ca_dir hashed, as by `openssl rehash`); all */
    const char *ca_pem;               /* three NULL = the system store.  ca_pem: CAs in memory */
    int no_verify;                    /* clients verify chain and name unless this is set */
    int verify_peer;                  /* servers: ask for and verify a client certificate */
    const char *alpn;                 /* "h2,http/1.1", by preference; a server picks its own
                                       * first one the client offers, none in common = no ALPN */
    int min_version;                  /* 0 = TLS 1.2; or 0x0303 (1.2), 0x0304 (1.3) */
    int max_version;                  /* 0 = TLS 1.3; or 0x0303 (1.2), 0x0304 (1.3) */
} weft_tls_opts;
enum { WEFT_TLS_CLIENT = 0, WEFT_TLS_SERVER = 1 };

/* Makes a context for role WEFT_TLS_CLIENT or WEFT_TLS_SERVER (o may be
 * NULL for a verifying client with the system store).  A certificate comes
 * from cert_file or cert_pem (the leaf first, then its chain); its key from
 * key_file or key_pem, else from the certificate's own PEM.  Strings are
 * copied or loaded at once: o need not outlive the call.  TLS 1.2 is the
 * floor unless min_version says 1.3; renegotiation is refused.  A client
 * context keeps resumable sessions by host:port (TLS 1.3 tickets are used
 * once each; they arrive after the handshake and are taken in by the
 * connection's next receive, or at its close if they are there by then).
 * Once made (and its SNI certificates added) a context may be shared by
 * loops on several threads.  Errors: WEFT_ETLS_CERT (a file or PEM could
 * not be loaded, or key and certificate do not match; weft_tls_errmsg(NULL)
 * says why), -EINVAL (out NULL, bad role or version, an ALPN list with an
 * empty entry or one over 255 bytes, a key without a certificate, both a
 * file and a PEM for one thing), -ENOMEM.  Never blocks.  The caller owns
 * *out; it must outlive every socket made with it. */
WEFT_EXTERN int weft_tls_ctx_new(weft_tls_ctx **out, int role, const weft_tls_opts *o);
/* Servers: adds another certificate and key (key_file NULL: in cert_file),
 * chosen when a client's SNI matches one of its names (wildcards too) and
 * not the context's own certificate; a context made without a certificate
 * takes its first one as its own, for clients whose SNI matches nothing.
 * Must be done before the context is used.  Returns 0, WEFT_ETLS_CERT,
 * -EINVAL (c or cert_file NULL, not a server context), -ENOMEM.  Never
 * blocks. */
WEFT_EXTERN int weft_tls_ctx_add_cert(weft_tls_ctx *c, const char *cert_file,
                                      const char *key_file);
/* Frees c (NULL is a no-op).  Every socket made with it must be closed. */
WEFT_EXTERN void weft_tls_ctx_free(weft_tls_ctx *c);

/* Connects to host:port, sends host as SNI (unless it is an address),
 * completes the handshake and verifies the chain and the name (an address
 * against the certificate's IP entries), all within timeout_ms; offers a
 * session kept for host:port.  Errors: those of weft_tcp_connect, the
 * WEFT_ETLS_* codes (UNTRUSTED, NAME, EXPIRED for verification; ALERT if
 * the server refused us; PROTOCOL if it does not speak TLS; TRUNCATED if it
 * hung up), -ECONNRESET, -EINVAL (c NULL or not a client context).
 * Blocks.  The caller owns *out. */
WEFT_EXTERN int weft_tls_connect(weft_sock **out, const char *host, int port, weft_tls_ctx *c,
                                 int64_t timeout_ms);
/* Accepts a connection and completes the server handshake, both within
 * timeout_ms.  A client that fails its handshake is closed and its error
 * returned (a client that rejected our certificate: WEFT_ETLS_ALERT).
 * The handshake runs in the caller: a server should rather accept with
 * weft_tcp_accept and run weft_tls_wrap in each connection's coroutine,
 * with its own timeout, so one slow client holds up no other.  Errors:
 * those of weft_accept and of the handshake, -EINVAL (out or c NULL, c not
 * a server context).  Blocks.  The caller owns *out. */
WEFT_EXTERN int weft_tls_accept(weft_sock *listener, weft_sock **out, weft_tls_ctx *c,
                                int64_t timeout_ms);
/* Runs the handshake over a connected stream socket s (TCP or unix), as
 * client (servername: SNI and the name to verify, an address checked
 * against IP entries; NULL is -EINVAL unless the context has no_verify) or
 * server (servername ignored), by c's role, within timeout_ms.  Clients
 * offer a session kept for servername and s's peer address.  On success
 * *out is the TLS socket and it owns s (the same handle is returned); on
 * failure the caller still owns s, a plain socket (the bytes the handshake
 * moved are gone), and closes it (if another coroutine closed s meanwhile,
 * the call returns -EBADF and closing s again returns -EBADF too).  Errors:
 * the WEFT_ETLS_* codes, -ETIMEDOUT, -ECANCELED, -ECONNRESET, -EPIPE,
 * -ENOTCONN (s is not connected), -ENOMEM, -EBADF, -EINVAL (out or c NULL;
 * s not a stream socket, a listener, or already TLS; a client's servername
 * "" or over 255 bytes).  Blocks. */
WEFT_EXTERN int weft_tls_wrap(weft_sock **out, weft_sock *s, weft_tls_ctx *c,
                              const char *servername, int64_t timeout_ms);
/* OpenSSL's reason for the last TLS failure on s ("certificate verify
 * failed: certificate has expired", "tlsv1 alert unknown ca", ...), or
 * NULL if none.  For s NULL or not a TLS socket: the reason for the calling
 * thread's last TLS failure (a connect, accept, wrap or context that
 * failed and left no TLS socket to ask); the same for a handle that is not
 * an open socket of this thread.  A socket's reason is valid until its
 * next failure or its close, the thread's until its next TLS failure. */
WEFT_EXTERN const char *weft_tls_errmsg(const weft_sock *s);
/* The protocol ALPN agreed on, or NULL (none, not TLS, or not an open
 * socket of this thread).  Owned by s: valid until it is closed. */
WEFT_EXTERN const char *weft_tls_alpn(const weft_sock *s);
/* The peer certificate's subject as one line (RFC 2253: "CN=localhost,O=x")
 * into buf.  Returns its length, -ENOENT (no certificate), -ENOSPC (buf
 * holds it cut short, NUL-terminated; with len 0 nothing is written),
 * -EINVAL (not TLS, buf NULL with len > 0), -ENOMEM. */
WEFT_EXTERN int weft_tls_peer_subject(const weft_sock *s, char *buf, size_t len);
/* The X.509 verification result (0 = verified, else an X509_V_ERR_*
 * code; set even with no_verify), or -EINVAL (not TLS).  0 also when the
 * peer sent no certificate (a server's client that was not asked for one):
 * weft_tls_peer_subject tells. */
WEFT_EXTERN long weft_tls_verify_result(const weft_sock *s);
/* 1 if the session was resumed, 0 if not, -EINVAL (not TLS). */
WEFT_EXTERN int weft_tls_resumed(const weft_sock *s);
/* A TLS weft_sock answers weft_recv, weft_recvn, weft_recvv, weft_send,
 * weft_sendv, weft_sock_poll, weft_shutdown (WEFT_SHUT_WR sends
 * close_notify) and weft_close (close_notify, bounded in time) like any
 * other; weft_recv reports a peer that closed without close_notify as
 * WEFT_ETLS_TRUNCATED, and its close_notify as 0.  Also:
 *   - one reader and one writer may use it at the same time (an echo with
 *     a separate writer coroutine); a send that times out or is cancelled
 *     part-way leaves the stream intact (the rest of a record it began
 *     goes out with the next send, or at close);
 *   - weft_sock_sent counts bytes handed to TLS; weft_send returns only
 *     once they are all in the kernel;
 *   - data TLS has already read and decrypted is served at once and makes
 *     weft_sock_poll report WEFT_POLL_IN;
 *   - a session that failed (an alert, truncation, a reset) stays failed:
 *     later receives return the same error, and so do sends (-EPIPE after
 *     a truncation);
 *   - weft_close takes in what arrived unread, up to 1 MiB (so the peer
 *     gets no RST that would destroy what it has not read yet), sends
 *     close_notify and waits at most 250 ms for room to do so; weft_reset
 *     sends nothing;
 *   - weft_sendto, weft_recvfrom, the batch calls, weft_send_fd,
 *     weft_recv_fd, the weft_udp_* calls and weft_tls_wrap return -EINVAL.
 * OpenSSL's calls need stack: a handshake needed under 12 KiB (ECDSA P-256
 * and RSA 2048, x86-64) in our tests; the default 256 KiB leaves room, with
 * a 64 KiB buffer on the stack too. */

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H */
