/*
 * weft.h - coroutine-based asynchronous networking for C.
 *
 * Each connection is a coroutine that calls recv and send as if they blocked;
 * one loop per OS thread runs thousands of them over epoll.  This header,
 * with the one per layer it includes (weft/runtime.h, weft/net.h,
 * weft/tls.h, weft/sync.h, weft/srv.h, weft/pool.h, weft/http.h), is the whole public
 * API: include this one.
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

#include "weft/runtime.h"
#include "weft/net.h"
#include "weft/tls.h"
#include "weft/sync.h"
#include "weft/srv.h"
#include "weft/pool.h"
#include "weft/http.h"

#endif /* WEFT_H */
