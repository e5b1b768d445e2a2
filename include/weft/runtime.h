/*
 * weft/runtime.h - errors, coroutines, the loop and embedding it.
 * Part of weft.h, which is the one header to include; the conventions at
 * the top of weft.h hold for every function here.
 */
#ifndef WEFT_H_RUNTIME
#define WEFT_H_RUNTIME

#include <errno.h> /* weft's error codes are errno's, negated */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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
    const char *backend;     /* "epoll", "io_uring" or "poll"; NULL or "" = $WEFT_BACKEND,
                              * else the fastest here (README).  io_uring that cannot be
                              * set up (ENOSYS, EPERM under seccomp or io_uring_disabled,
                              * RLIMIT_MEMLOCK) gives epoll; weft_backend() tells */
    const char *resolver;    /* "ares" (c-ares on the loop) or "system" (getaddrinfo on a
                              * worker pool, for nsswitch); NULL or "" = $WEFT_RESOLVER, else
                              * "ares" ("system" in a build without c-ares) */
    const char *dns_servers; /* c-ares: "127.0.0.1:5353,[::1]:53"; NULL = /etc/resolv.conf's.
                              * A list c-ares refuses makes the loop's making fail with
                              * -EINVAL (the "system" resolver ignores it) */
    int dns_timeout_ms;      /* c-ares: first try's timeout per server; 0 = resolv.conf's */
    int dns_tries;           /* c-ares: tries per server; 0 = resolv.conf's */
    int workers;             /* the most threads the process's worker pool may run, 1 to
                              * 1024 (weft_blocking and the "system" resolver share it);
                              * 0 = $WEFT_WORKERS, else 64.  The pool is the process's:
                              * its cap is the largest any loop has asked for */
    int threads;             /* weft_main: how many loops to run, one per thread, 1 to
                              * 1024; 0 = $WEFT_THREADS, else 1.  weft_loop_new ignores it */
} weft_config;               /* NULL config = all defaults; zeroed fields = defaults */

/* Creates a loop on this thread, runs fn(arg) as its first coroutine,
 * runs the loop until fn and every coroutine spawned have returned, then
 * frees the loop (as weft_loop_free).
 *
 * With weft_config.threads (or $WEFT_THREADS) N > 1 it runs N loops, one
 * per thread: this thread's is loop 0 and runs fn; the others start with
 * nothing to run and take coroutines spawned on them (weft_go_on).  It
 * returns when no coroutine is left on any loop and none is on its way
 * from one loop to another; until then a loop with nothing to run waits.
 * Coroutines stay on the loop they were spawned on; a socket belongs to
 * the loop that made it (weft.h).  Every loop is freed (as weft_loop_free)
 * once all have stopped, each on its own thread.
 *
 * Returns fn's result, or before anything ran: -EINVAL (fn NULL, an
 * unknown backend or resolver, a stack_size over 1 GiB, a negative
 * dns_timeout_ms or dns_tries, a dns_servers c-ares refuses, workers or
 * $WEFT_WORKERS out of 1..1024, threads or $WEFT_THREADS out of 1..1024),
 * -EBUSY (this thread already has a loop), -ENOMEM (also when fn's stack
 * could not be mapped: fn never ran), -EMFILE/-ENFILE (the poller's
 * descriptors), -ENOSPC (the poller's watch limit), -EAGAIN (a loop's
 * thread could not be started).  Blocks the thread. */
WEFT_EXTERN int weft_main(int (*fn)(void *arg), void *arg, const weft_config *cfg);

typedef struct weft_co_opts {
    size_t stack_size; /* bytes, rounded up to pages, at most 1 GiB; 0 = the loop's default */
    const char *name;  /* copied (first 31 bytes); NULL = no name */
    int eager;         /* run it at once, until it first blocks or yields, then go on with
                        * the caller (socket2's newthread); outside a coroutine it is
                        * queued as usual.  0: queued (cheaper for a mass spawn) */
} weft_co_opts;

/* Queues a new coroutine running fn(arg) on this thread's loop and returns
 * its id (> 0).  It does not switch to it: the new coroutine first runs when
 * the caller next blocks or yields (outside a coroutine: at the loop's next
 * step).  Its stack is mapped when it first runs; if that fails the
 * coroutine never runs, and a weft_join already waiting for it in a
 * coroutine returns -ENOMEM (a later join sees it finished and returns 0).
 * Errors: -EPERM (no loop on this thread), -EINVAL (fn NULL, or a stack
 * size over 1 GiB), -ENOMEM, -EAGAIN (the loop has given out all of its
 * 2^40 - 1 ids).  Never blocks, except that with weft_co_opts.eager the
 * caller waits, ready to run, while the new coroutine runs first. */
WEFT_EXTERN int64_t weft_go(void (*fn)(void *arg), void *arg);
WEFT_EXTERN int64_t weft_go_opts(void (*fn)(void *arg), void *arg, const weft_co_opts *o);

/* Waits until coroutine id, of this loop or another loop of weft_main's
 * (weft_go_on), has finished.  Returns 0 when it has (also if it finished
 * before the call), -ENOMEM if its stack could not be mapped so it never
 * ran (or, for another loop's, the request could not be sent),
 * -ETIMEDOUT, -ECANCELED, -ESRCH (no such coroutine on this thread's loop
 * or its group, or no loop), -EDEADLK (id is the caller), -EPERM (another
 * loop's coroutine, outside any coroutine).  Blocks.  Another loop's
 * coroutine is asked about at that loop's next step: even with timeout 0
 * the call waits for that answer (a cancel still ends it).
 * Outside a coroutine (on the loop's thread) it runs the loop's steps
 * itself until id is gone: a coroutine that never ran then gives 0, not
 * -ENOMEM, and -ECANCELED cannot come. */
WEFT_EXTERN int weft_join(int64_t id, int64_t timeout_ms);

/* Makes coroutine id's current blocking call, or, if it is not blocked,
 * its next call that has to wait (or weft_yield), return -ECANCELED; a call
 * that completes without waiting does not take it.  The cancel is
 * delivered once; calls after that one work normally, so the coroutine can
 * clean up.  Returns 0, or -ESRCH (no such live coroutine on this thread's
 * loop, nor a loop of its group with such an id).  Another loop's
 * coroutine is cancelled by its loop at its next step: 0 means the cancel
 * is on its way, and it does nothing if that coroutine has finished by
 * then; -ENOMEM if it could not be sent.  Never blocks. */
WEFT_EXTERN int weft_cancel(int64_t id);

/* Spawns fn(arg) on loop `loop` of weft_main's loops (0 ..
 * weft_loop_count()-1), or with WEFT_LOOP_ANY on one weft picks (round
 * robin over all of them, this one included), and returns its id (> 0),
 * which weft_join and weft_cancel take from any loop.  On the caller's
 * own loop it is weft_go; on another, the coroutine is queued there and
 * starts at that loop's next step.  Errors: -EPERM (no loop on this
 * thread), -EINVAL (fn NULL, loop out of range), -ENOMEM, -EAGAIN (the
 * target has given out all its ids).  Never blocks. */
#define WEFT_LOOP_ANY (-1)
WEFT_EXTERN int64_t weft_go_on(int loop, void (*fn)(void *arg), void *arg);

/* This thread's loop's place among weft_main's loops, 0 ..
 * weft_loop_count()-1 (0 for a loop of weft_loop_new); -1 outside any
 * loop. */
WEFT_EXTERN int weft_loop_index(void);
/* How many loops weft_main runs (1 for a loop of weft_loop_new); 0
 * outside any loop. */
WEFT_EXTERN int weft_loop_count(void);

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
/* Waiting on any descriptor, and blocking work                              */

/* Waits until fd, any pollable descriptor weft does not own (a pipe, a tty,
 * an eventfd, timerfd, signalfd or inotify descriptor, another library's
 * socket: libpq's, hiredis's, libcurl's), is ready for events
 * (WEFT_POLL_IN | WEFT_POLL_OUT, from weft/net.h; other bits are ignored).
 * Returns the ready subset (> 0).  An error or hang-up on fd counts as
 * ready for both, and so does urgent data (POLLPRI: a socket's out-of-band
 * byte, a sysfs attribute's change) for WEFT_POLL_IN; a regular file or a
 * directory is always ready, as poll() has it.  Errors: -ETIMEDOUT,
 * -ECANCELED, -EBADF (fd negative or not open), -EINVAL (neither bit set,
 * or fd is the loop's own poller), -EEXIST (fd is already on this loop's
 * poller: a weft socket's descriptor that has waited on this loop; wait on
 * it with weft_sock_poll instead), -ENOMEM, -ENOSPC (the poller's watch
 * limit, fs.epoll.max_user_watches), -ELOOP (fd is a poller watching this
 * one).  Blocks.
 *
 * In a coroutine fd is on the loop's poller only while the call waits:
 * however the call ends (readiness, timeout, cancel, the loop being freed)
 * it has taken fd off before it returns, so the caller may close fd at once.
 * Coroutines may wait on the same fd at the same time, for the same or
 * different events; each gets its own answer.  Closing fd while a call
 * waits on it is the caller's mistake, which weft cannot see: the kernel
 * drops the watch without an event, so the call ends at its timeout or
 * cancel (or with -EBADF if another wait on that number notices first);
 * cancel it (weft_cancel) before closing.  Waiting with this on a weft
 * socket's descriptor is the caller's business too: -EEXIST as above, and
 * while this call waits, that socket's own first wait on this loop fails
 * with -EEXIST.  Outside a coroutine the thread waits in poll(). */
WEFT_EXTERN int weft_fd_wait(int fd, int events, int64_t timeout_ms);

/* Runs fn(arg) on a worker thread while the calling coroutine parks, for
 * work that would block the loop (a synchronous client library, a slow
 * file system, CPU-heavy work).  Returns 0 once fn has returned.
 *
 * timeout_ms, the coroutine's deadline and weft_cancel bound only the wait
 * for a worker: a job that has not started yet is withdrawn, fn never runs,
 * and the call returns -ETIMEDOUT or -ECANCELED (also when the loop is
 * being freed).  A job that has started is always waited for, so arg may
 * live on the caller's stack: a cancel that comes meanwhile is kept for the
 * coroutine's next blocking call, and weft_loop_free runs the loop until fn
 * has returned.  timeout_ms 0 (or a deadline already passed) runs fn only
 * if a worker is free for it at once (an idle one, or a new one within the
 * cap), else -ETIMEDOUT.  Other errors: -EINVAL (fn NULL), -EAGAIN (no
 * worker thread could be started and none is running), -ENOMEM (no room in
 * the loop's timer heap while the job was still queued).
 *
 * The workers are one pool per process, shared by every loop and by the
 * "system" resolver: a thread is started when a job finds no worker free,
 * up to weft_config.workers (default 64), and exits after 10 s idle; jobs
 * beyond that wait their turn, first come first served.  At the process's
 * exit idle workers are stopped and joined; a busy one is left running (fn
 * may be inside a call that never returns).  fn runs on a plain thread, with the signals a process is sent blocked:
 * weft's blocking calls in it wait on that thread.  It must not wait for
 * the loop that called it, nor for jobs queued behind it.  Outside a
 * coroutine, weft_blocking calls fn(arg) directly and returns 0. */
WEFT_EXTERN int weft_blocking(void (*fn)(void *arg), void *arg, int64_t timeout_ms);

/* ------------------------------------------------------------------------ */
/* Embedding: drive a loop from another event loop or by hand                */

typedef struct weft_loop weft_loop;

/* Creates a loop owned by this thread; weft_go then spawns onto it.
 * Errors: -EBUSY (this thread has a loop), -EINVAL (out NULL, an unknown
 * backend or resolver, a stack_size over 1 GiB, a negative dns_timeout_ms
 * or dns_tries, a dns_servers c-ares refuses, workers or $WEFT_WORKERS out
 * of 1..1024), -ENOMEM, -EMFILE, -ENFILE, -ENOSPC (the poller's watch
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
 * NULL or another thread's loop is -EINVAL.  On io_uring the first call
 * also sets the ring up anew, in a mode that posts completions as they
 * come (the one a thread asleep in poll(2) sees): ask for the fd before
 * any coroutine waits on a socket, else -EBUSY.  The poll backend has no
 * such descriptor: -ENOTSUP.  From then on every step
 * asks the poller (the fd's state must stay true), which costs a syscall
 * per step that a loop nobody watches would skip. */
WEFT_EXTERN int weft_loop_fd(const weft_loop *l);

/* The name of the backend this thread's loop runs on ("epoll", "io_uring"
 * or "poll"); outside a loop, the one weft_config.backend NULL would ask
 * for here (io_uring may still fall back to epoll when a loop is made),
 * NULL if $WEFT_BACKEND names none built in.  Never blocks. */
WEFT_EXTERN const char *weft_backend(void);

/* This thread's loop (weft_loop_new's, or one of weft_main's), NULL
 * outside any loop: for a thread of its own to weft_loop_post to. */
WEFT_EXTERN weft_loop *weft_loop_self(void);

/* Thread-safe: runs fn(arg) in a new coroutine on loop l, from any thread.
 * Each post accepted runs exactly once, in the order posted from one
 * thread; one still queued when the loop is freed runs then, its blocking
 * calls cancelled (as weft_loop_free's coroutines).  On a loop of
 * weft_main's several, a post accepted keeps weft_main from returning
 * until it has run.  Returns 0, -EINVAL (l or fn NULL), -ENOMEM,
 * -ESHUTDOWN (weft_loop_free has begun, or, on weft_main's loops, nothing
 * is left alive on any of them and weft_main is returning: fn will not
 * run).  l must stay valid memory for the call: a loop of weft_main
 * until weft_main returns, one of weft_loop_new until weft_loop_free
 * returns; the poster must know that (-ESHUTDOWN tells it to stop). */
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

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H_RUNTIME */
