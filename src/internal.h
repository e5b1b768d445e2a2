/*
 * internal.h - what the layers of weft share and users never see.
 *
 * Naming: weft_ is public, weft__ crosses files inside the library, static
 * functions have no prefix.  Times inside the library are int64_t
 * nanoseconds of CLOCK_MONOTONIC; WEFT__NEVER is "no deadline".
 */
#ifndef WEFT_INTERNAL_H
#define WEFT_INTERNAL_H

#include "weft.h"
#include "config.h"
#include "sys.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#ifdef WEFT_USE_UCONTEXT
#include <ucontext.h>
#endif

#define WEFT__NEVER INT64_MAX
#define WEFT__NS_PER_MS 1000000LL

#define WEFT__LIKELY(x) __builtin_expect(!!(x), 1)
#define WEFT__UNLIKELY(x) __builtin_expect(!!(x), 0)

typedef struct weft__co weft__co;
typedef struct weft__wait weft__wait;
typedef struct weft__waitq weft__waitq;
typedef struct weft__stack weft__stack;
typedef struct weft__backend weft__backend;

/* What a backend watches: a socket, or one of the loop's own descriptors. */
typedef struct weft__pollent {
    int fd;
    void (*on_event)(struct weft__pollent *e, int events);
} weft__pollent;

/* ---- coroutines (src/coro/) ------------------------------------------- */

#if defined(__x86_64__) && !defined(WEFT_USE_UCONTEXT)
#define WEFT__SWITCH_INLINE 1
#endif

/* A machine context.  x86-64: where a suspended context resumes (the
 * compiler keeps the other registers, see coro/switch_x86_64.h) and its
 * floating-point control words.  aarch64: the saved stack pointer, the
 * registers living on the suspended stack.  The fallback: a ucontext. */
typedef struct weft__ctx {
#if defined(WEFT_USE_UCONTEXT)
    ucontext_t uc;
#elif defined(WEFT__SWITCH_INLINE)
    void *sp, *bp, *ip;
    uint32_t fp_words[2]; /* MXCSR and x87 control word: a loop's cached per
                           * step, a coroutine's saved when it suspends */
#else
    void *sp;
#endif
} weft__ctx;

/* A coroutine stack: the record sits at the top of its own mapping. */
struct weft__stack {
    char *base;          /* lowest mapped address: the guard pages start here */
    size_t guard;        /* bytes of guard (PROT_NONE) at base */
    size_t size;         /* usable bytes between the guard and this record */
    size_t requested;    /* the size asked for (size is that, rounded up) */
    weft__stack *next;   /* pool link */
    unsigned vg_id;      /* Valgrind's stack id, when built with it */
};

/* Maps a stack with at least size usable bytes and guard pages below it, or
 * takes one of that size from the thread's pool.  Returns 0 or -ENOMEM. */
int weft__stack_get(weft__stack **out, size_t size);
/* Gives a stack back to the thread's pool; a pool grown past its bounds
 * gives the memory back to the system (madvise), then unmaps. */
void weft__stack_put(weft__stack *st);
/* Unmaps every pooled stack of this thread. */
void weft__stack_pool_drain(void);
/* Stacks in this thread's pool, and how many of those are still resident. */
size_t weft__stack_pool_count(size_t *resident);

/* An execution context that can be switched to: the thread's own stack (the
 * loop's) or a coroutine's.  Carries the sanitizers' view of it too. */
typedef struct weft__fiber {
    weft__ctx ctx;
    weft__stack *stack;      /* NULL for the thread's own stack */
    void *asan_fake;         /* ASan fake stack while suspended */
    const void *asan_bottom; /* ASan: this stack's bounds */
    size_t asan_size;
    void *tsan_fiber;        /* TSan fiber handle */
} weft__fiber;

/* Describes the calling thread's own stack as a fiber. */
void weft__fiber_init_thread(weft__fiber *f);
/* Gives f a stack of size bytes (0 = default) and arranges for entry(arg)
 * to run on the first switch to it.  Returns 0 or -ENOMEM. */
int weft__fiber_start(weft__fiber *f, size_t size, void (*entry)(void *), void *arg);
/* Must be the first call of an entry function: completes the switch in. */
void weft__fiber_entered(weft__fiber *self, weft__fiber *from);
/* Frees f's stack (to the pool) once it has exited or never started. */
void weft__fiber_release(weft__fiber *f);


/* Low level, used by the fiber layer.  weft__ctx_resume (loop -> coroutine)
 * and weft__ctx_suspend (coroutine -> loop) are the scheduler's pair; on
 * x86-64 they are inline (coro/switch_x86_64.h), elsewhere functions, and
 * weft__ctx_switch is the symmetric switch they are made of. */
void weft__ctx_make(weft__ctx *ctx, weft__stack *st, void (*entry)(void *), void *arg);
#ifdef WEFT__SWITCH_INLINE
#include "coro/switch_x86_64.h"
#else
void weft__ctx_switch(weft__ctx *from, weft__ctx *to);
void weft__ctx_resume(weft__ctx *loop, weft__ctx *co);
void weft__ctx_suspend(weft__ctx *co, weft__ctx *loop);
#endif

/* The scheduler's switches, loop -> coroutine and coroutine -> loop, with
 * the sanitizers told: inline, so the switch is too (coro/fiber.h). */
#include "coro/fiber.h"

/* Overflow detector: a per-thread alternate signal stack and one SIGSEGV
 * handler that recognises faults in the running coroutine's guard pages. */
int weft__overflow_thread_init(void);
void weft__overflow_thread_fini(void);

/* ---- waiting (src/sched/) --------------------------------------------- */

/* One blocked coroutine.  Lives on the blocked coroutine's stack for the
 * duration of the wait, so nothing is allocated per wait. */
struct weft__wait {
    weft__co *co;
    int64_t deadline;     /* ns, WEFT__NEVER = none */
    size_t heap_idx;      /* position in the timer heap, SIZE_MAX if absent */
    uint64_t heap_seq;    /* FIFO order among equal deadlines */
    weft__waitq *q;       /* queue it is linked on, NULL if none */
    weft__wait *next, *prev;
    weft__wait *twin;     /* a second queue entry woken together with this one */
    int result;           /* 0 woken normally, -ETIMEDOUT, -ECANCELED */
    bool woken;
};

struct weft__waitq {
    weft__wait *head, *tail;
};

typedef struct weft__timers {
    weft__wait **heap;
    size_t len, cap;
    uint64_t seq;
} weft__timers;

/* ---- coroutine records and the loop ----------------------------------- */

enum { WEFT__CO_NEW, WEFT__CO_READY, WEFT__CO_RUNNING, WEFT__CO_WAITING, WEFT__CO_DONE };

struct weft__co {
    weft__fiber fiber;       /* its stack is NULL until the first run */
    void (*fn)(void *);
    void *arg;
    int64_t id;
    int64_t deadline;        /* weft_deadline_set, ns; WEFT__NEVER if none */
    size_t stack_size;
    weft__co *run_next;      /* run queue link */
    weft__wait *wait;        /* current wait, if parked */
    weft__waitq joiners;
    int state;
    bool cancel_pending;
    char name[32];
};

/* Open-addressing table id -> live coroutine (linear probing).  Each slot
 * holds the id beside the record, so probing never touches a record: with
 * thousands of coroutines those are cache misses. */
typedef struct weft__cotab_slot {
    int64_t id; /* 0: empty */
    weft__co *co;
} weft__cotab_slot;

typedef struct weft__cotab {
    weft__cotab_slot *slot;
    size_t cap, len;
} weft__cotab;

typedef struct weft__post {
    void (*fn)(void *);
    void *arg;
    struct weft__post *next;
} weft__post;

struct weft_loop {
    const weft__backend *be;
    void *be_data;
    weft__co *runq_head, *runq_tail;
    weft__timers timers;
    weft__cotab cos;
    weft__fiber sched;       /* the thread's own stack, which runs the loop */
    weft__co *current;
    weft__co *co_free;        /* finished records kept for the next spawns */
    size_t co_free_len;
    size_t stack_size;
    int64_t id_base;          /* loop number << 40 */
    int64_t seq;              /* last coroutine sequence number given out */
    size_t alive;             /* coroutines not yet finished */
    unsigned busy_steps;      /* steps begun with coroutines ready */
    bool stopping, closing, in_step;
    bool want_fd;             /* weft_loop_fd was asked for: keep it truthful */
    weft__pollent wake_pe;    /* eventfd for posts and wake-ups */
    bool wake_armed;          /* a write to it is pending (under post_lock) */
    weft__pollent timer_pe;   /* timerfd, made once weft_loop_fd is asked for */
    int64_t timer_fd_at;
    weft_sock *socks;         /* sockets armed on this loop */
    void *names_ares;          /* resolver state (src/net/resolve_*.c), NULL until used */
    void *names_system;
    char *dns_servers;         /* the config's resolver settings, copied */
    int dns_timeout_ms, dns_tries;
    bool system_resolver;
    /* cross-thread posts */
    void *post_lock;          /* pthread_mutex_t * */
    weft__post *post_head, *post_tail;
};

/* Runs every coroutine that is ready now, each until it parks, yields or
 * finishes (then frees it); ones made ready meanwhile wait for the next
 * call. */
void weft__co_run_ready(weft_loop *l);
/* Wakes every parked coroutine of the table with -ECANCELED. */
void weft__cotab_cancel_all(weft__cotab *t);
void weft__cotab_free(weft__cotab *t);
/* Frees the loop's spare coroutine records. */
void weft__co_pool_free(weft_loop *l);

/* The loop of this thread, or NULL. */
extern __thread weft_loop *weft__tls_loop;

static inline weft__co *weft__current(void)
{
    weft_loop *l = weft__tls_loop;
    return l ? l->current : NULL;
}

/* Monotonic nanoseconds. */
int64_t weft__now_ns(void);

/* Turns a relative ms timeout into an absolute ns deadline, combined with
 * the running coroutine's own deadline. */
int64_t weft__deadline(int64_t timeout_ms);

/* Parks the running coroutine on q (may be NULL) until woken, deadline, or
 * a cancel.  If twin is not NULL it is linked on twin_q and a wake through
 * either entry wakes the coroutine.  Returns 0, -ETIMEDOUT, -ECANCELED or
 * -ENOMEM (the timer heap could not grow).  Must be called from a coroutine. */
int weft__park(weft__wait *w, weft__waitq *q, int64_t deadline);
int weft__park2(weft__wait *w, weft__waitq *q, weft__wait *twin, weft__waitq *twin_q,
                int64_t deadline);
/* Wakes a parked waiter with result; no-op if already woken. */
void weft__wake(weft__wait *w, int result);
/* Wakes every waiter of q with result. */
void weft__wake_all(weft__waitq *q, int result);
/* Makes co ready to run. */
void weft__ready(weft_loop *l, weft__co *co);

/* Timer heap. */
int weft__timer_add(weft__timers *t, weft__wait *w);
void weft__timer_del(weft__timers *t, weft__wait *w);
weft__wait *weft__timer_peek(const weft__timers *t);
void weft__timer_free(weft__timers *t);

/* ---- the poller interface (src/sched/poll_*.c) -------------------------- */

/* Events the backend reports for one registered descriptor. */
enum { WEFT__EV_IN = 1, WEFT__EV_OUT = 2, WEFT__EV_ERR = 4, WEFT__EV_HUP = 8 };

struct weft__backend {
    const char *name;
    int (*init)(weft_loop *l);
    void (*fini)(weft_loop *l);
    /* Watches e->fd for events (WEFT__EV_IN and/or WEFT__EV_OUT),
     * edge-triggered, until disarm. */
    int (*arm)(weft_loop *l, weft__pollent *e, int events);
    int (*disarm)(weft_loop *l, weft__pollent *e);
    /* Waits up to timeout_ms (-1 forever) and calls on_event for each
     * ready entry.  Returns how many, or -errno (never -EINTR). */
    int (*wait)(weft_loop *l, int timeout_ms);
    /* A descriptor that is readable when wait would report something. */
    int (*fd)(weft_loop *l);
};

extern const weft__backend weft__backend_epoll;

/* Starts loading what an event on e will touch next (the waiting
 * coroutine's wait record), when e is a socket. */
void weft__pollent_prefetch(weft__pollent *e);

/* ---- sockets (src/net/) ------------------------------------------------ */

/* Copies cfg's resolver settings into l.  Returns 0, -EINVAL (unknown
 * resolver), -ENOMEM. */
int weft__names_config(weft_loop *l, const weft_config *cfg);
/* Ends l's lookups still in flight and frees its resolver state; called by
 * weft_loop_free once no coroutine is left. */
void weft__names_free(weft_loop *l);
/* weft_resolve with an absolute deadline (ns). */
int weft__resolve(weft_addrinfo **out, const char *host, const char *service,
                  const weft_hints *hints, int64_t deadline);
/* Connects to a name: looks it up, then races the addresses (Happy
 * Eyeballs, RFC 8305) before deadline.  Returns 0 or an error of
 * weft_tcp_connect or weft_resolve. */
int weft__connect_name(weft_sock **out, const char *host, int port, int64_t deadline);

enum {
    WEFT__SOCK_STREAM = 1,   /* byte stream: a short read means drained */
    WEFT__SOCK_LISTEN = 2,
    WEFT__SOCK_FDBLOCK = 4,  /* the fd itself is in blocking mode */
    WEFT__SOCK_DGRAM = 8,    /* datagrams: receives report truncation */
    WEFT__SOCK_GSO = 16,     /* UDP GSO known to work here */
    WEFT__SOCK_NOGSO = 32,   /* ... known not to: send datagrams one by one */
};

/* A layer over the descriptor (TLS): when a socket has ops, the public
 * data calls go through them instead of the plain syscalls.  close runs
 * first thing in weft__sock_close (it may wait, bounded) and frees the
 * layer's state; the socket core then closes the descriptor. */
typedef struct weft__sock_ops {
    ssize_t (*recv)(weft_sock *s, void *buf, size_t n, bool all, int64_t timeout_ms);
    ssize_t (*recvv)(weft_sock *s, const struct iovec *iov, int iovcnt, int64_t timeout_ms);
    ssize_t (*sendv)(weft_sock *s, const struct iovec *iov, int iovcnt, int64_t timeout_ms);
    int (*poll)(weft_sock *s, int events, int64_t timeout_ms);
    int (*shutdown)(weft_sock *s, int how);
    void (*close)(weft_sock *s, bool reset);
} weft__sock_ops;

struct weft_sock {
    weft__pollent pe;        /* pe.fd is the descriptor; first member */
    weft_loop *loop;         /* loop it is armed on, NULL before the first wait */
    unsigned flags;
    bool rready, wready;     /* cached edge-triggered readiness */
    bool rhup;               /* the poller saw the peer's FIN or an error:
                              * from then on reads never wait for an edge */
    bool closed;
    bool rbusy, wbusy;       /* a receiver / sender holds the direction */
    int refs;                /* calls in progress; free waits for 0 */
    weft__waitq rq, wq;      /* waiting for readiness */
    weft__waitq rlock, wlock; /* waiting for their turn */
    size_t sent;
    weft_sock *lnext, *lprev; /* the loop's list of armed sockets */
    const weft__sock_ops *ops; /* NULL: plain descriptor */
    void *layer;               /* the ops' state */
};

/* Waits until s is ready for dir (WEFT__EV_IN, WEFT__EV_OUT or both) or
 * deadline.  In a coroutine it parks; elsewhere it polls the thread.
 * Returns 0, -ETIMEDOUT, -ECANCELED (cancel or s closed).  The caller
 * holds a reference (s->refs) so that a close cannot free s meanwhile. */
int weft__sock_wait(weft_sock *s, int dir, int64_t deadline);
/* The same for a caller that holds none: takes one for the wait.  If s was
 * closed meanwhile it returns -ECANCELED and sets *gone (when gone is not
 * NULL), and s must not be touched again. */
int weft__sock_wait_held(weft_sock *s, int dir, int64_t deadline, bool *gone);
/* One attempt of an operation: >= 0 done; -EAGAIN not ready (wait, then
 * call again); -EINTR call again at once; other negative: failed. */
typedef ssize_t (*weft__sock_op)(weft_sock *s, void *ctx);
/* Runs op until it completes, taking s's dir for the duration and waiting
 * for readiness between attempts, within timeout_ms. */
ssize_t weft__sock_io(weft_sock *s, int dir, int64_t timeout_ms, weft__sock_op op, void *ctx);
/* Closes s's descriptor (linger 0 first if reset) and frees s once no call
 * is using it. */
int weft__sock_close(weft_sock *s, bool reset);
/* Drops a reference a waiting call took (s->refs++); frees a socket that
 * was closed meanwhile once the last one is gone. */
void weft__sock_unref(weft_sock *s);
/* Makes a weft_sock for fd (already non-blocking).  Returns 0 or -ENOMEM. */
int weft__sock_new(weft_sock **out, int fd, unsigned flags);

/* Waits on a raw descriptor outside a coroutine with poll(); ns deadline. */
int weft__fd_poll(int fd, int events, int64_t deadline);
/* The bytes of iovcnt iovecs, or -EINVAL (count out of 0..IOV_MAX, a
 * NULL array, a total past SSIZE_MAX). */
ssize_t weft__iov_total(const struct iovec *iov, int iovcnt);
/* Milliseconds left until deadline, as a timeout for another call (-1 for
 * WEFT__NEVER, 0 once passed). */
int64_t weft__ms_left(int64_t deadline);
/* Sleeps ms or until deadline on s's receive queue, so that closing s or a
 * cancel ends it early.  Returns 0 when the time is up, or -ECANCELED. */
int weft__sock_backoff(weft_sock *s, int64_t ms, int64_t deadline);
/* A new socket of a's family and the given type, connected to a within
 * timeout_ms; closed again on failure.  Returns 0 or weft_connect's and
 * weft_socket's errors. */
int weft__dial(weft_sock **out, const weft_addr *a, int type, int64_t timeout_ms);

#endif /* WEFT_INTERNAL_H */
