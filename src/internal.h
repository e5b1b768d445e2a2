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
#include <sys/epoll.h>
#ifdef WEFT_USE_UCONTEXT
#include <ucontext.h>
#endif

#define WEFT__NEVER INT64_MAX
#define WEFT__NS_PER_MS 1000000LL

#define WEFT__LIKELY(x) __builtin_expect(!!(x), 1)
#define WEFT__UNLIKELY(x) __builtin_expect(!!(x), 0)

typedef struct weft__co weft__co;
typedef struct weft__timer weft__timer;
typedef struct weft__wait weft__wait;
typedef struct weft__waitq weft__waitq;
typedef struct weft__stack weft__stack;
typedef struct weft__backend weft__backend;
typedef struct weft__bop weft__bop;
typedef struct weft__pbufs weft__pbufs;

/* What a backend watches: a socket, or one of the loop's own descriptors. */
typedef struct weft__pollent {
    int fd;
    void (*on_event)(struct weft__pollent *e, int events);
    weft__waitq *inq; /* who an input event will wake, if anyone: the poller
                       * starts loading it before dispatching a batch */
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
    char *base;          /* lowest mapped address: the guard starts here */
    size_t guard;        /* bytes of guard (PROT_NONE) at base: megabytes, so
                          * that a large frame lands in it (stack.c) */
    size_t size;         /* usable bytes between the guard and this record */
    size_t requested;    /* the size asked for (size is that, rounded up) */
    weft__stack *next;   /* pool link */
    unsigned vg_id;      /* Valgrind's stack id, when built with it */
};

/* Maps a stack with at least size usable bytes and a guard below it, or
 * takes one of that size from the thread's pool.  Returns 0 or -ENOMEM. */
int weft__stack_get(weft__stack **out, size_t size);
/* Gives a stack back to the thread's pool, to the list of its size; a list
 * grown past its bounds gives the memory back to the system (madvise), then
 * unmaps. */
void weft__stack_put(weft__stack *st);
/* Unmaps every pooled stack of this thread. */
void weft__stack_pool_drain(void);
/* Stacks in this thread's pool, of all sizes, and how many of those are
 * still resident. */
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
 * handler that recognises faults in the running coroutine's guard, or with
 * its stack pointer below its stack (coro/overflow.c). */
int weft__overflow_thread_init(void);
void weft__overflow_thread_fini(void);

/* ---- waiting (src/sched/) --------------------------------------------- */

/* An entry of the loop's timer heap: a parked coroutine's deadline (fire
 * NULL: the coroutine wakes with -ETIMEDOUT), or a loop timer, whose fire
 * runs in the loop, outside any coroutine, once the deadline has passed. */
struct weft__timer {
    int64_t deadline;     /* ns, WEFT__NEVER = none */
    size_t heap_idx;      /* position in the timer heap, SIZE_MAX if absent */
    uint64_t heap_seq;    /* FIFO order among equal deadlines */
    void (*fire)(weft__timer *t);
};

/* One blocked coroutine.  Lives on the blocked coroutine's stack for the
 * duration of the wait, so nothing is allocated per wait. */
struct weft__wait {
    weft__timer tm;       /* first member: the heap holds &w->tm */
    weft__co *co;
    uint64_t seq;         /* which wait of its loop this is (weft__wake_from) */
    weft__waitq *q;       /* queue it is linked on, NULL if none */
    weft__wait *next, *prev;
    weft__wait *twin;     /* a second queue entry woken together with this one */
    int result;           /* 0 woken normally, -ETIMEDOUT, -ECANCELED */
    bool woken;
};

struct weft__waitq {
    weft__wait *head, *tail;
};

typedef struct weft__heap_ent {
    int64_t deadline; /* the timer's, copied: sifting reads only the heap */
    uint64_t seq;
    weft__timer *t;
} weft__heap_ent;

typedef struct weft__timers {
    weft__heap_ent *heap;
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
    struct weft__rjoin *rjoiners; /* coroutines of other loops joining it */
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

#define WEFT__EXT_MAX 16

enum {
    WEFT__POST_CO,     /* run fn in a new coroutine (weft_loop_post) */
    WEFT__POST_CALL,   /* run fn in the loop itself (weft__loop_call) */
    WEFT__POST_CALL_WITH, /* the same, the post being the caller's memory
                           * (weft__loop_call_with) */
    WEFT__POST_CALL_HELD, /* weft__loop_call_held: a CALL_WITH once queued */
    WEFT__POST_REMOTE, /* a coroutine another loop of the group spawned:
                        * its id is given (weft_go_on) */
};

typedef struct weft__post {
    void (*fn)(void *);
    void *arg;
    struct weft__post *next;
    int64_t id;        /* WEFT__POST_REMOTE: the new coroutine's id */
    unsigned char kind;
    bool counted;      /* in its group's busy count until it has run: a
                        * user's post, or a held call */
} weft__post;

/* The loops weft_main runs together, one per thread (src/sched/group.c). */
typedef struct weft__group {
    int n;
    weft_loop **loops;   /* by index */
    long busy;           /* atomic: loops with live coroutines, plus spawns
                          * between loops and users' posts on their way; 0
                          * after a start ends the group */
    bool done;           /* atomic: every loop stops once it is set */
    unsigned next;       /* atomic: WEFT_LOOP_ANY's round robin */
} weft__group;

/* Adds d to g->busy; at 0 the group is done and every loop is woken to
 * end.  Thread-safe. */
void weft__group_busy(weft__group *g, long d);
/* Adds 1 to g->busy unless the group has ended (busy 0 once started):
 * false then.  Thread-safe. */
bool weft__group_enter(weft__group *g);
/* The loop of l's group that gave out coroutine id, or NULL. */
weft_loop *weft__group_loop_of(const weft_loop *l, int64_t id);

struct weft_loop {
    const weft__backend *be;
    void *be_data;
    weft__co *runq_head, *runq_tail;
    weft__co *walk_next;      /* the run queue walk's next coroutine */
    weft__timers timers;
    weft__cotab cos;
    weft__fiber sched;       /* the thread's own stack, which runs the loop */
    weft__co *current;
    weft__co *co_free;        /* finished records kept for the next spawns */
    size_t co_free_len;
    size_t stack_size;
    int64_t id_base;          /* loop number << 40 */
    int64_t seq;              /* last coroutine sequence number given out */
    uint64_t wait_seq;        /* last weft__wait.seq given out */
    size_t alive;             /* coroutines not yet finished */
    unsigned busy_steps;      /* steps begun with coroutines ready */
    bool running, stopping, closing, in_step;
    bool want_fd;             /* weft_loop_fd was asked for: keep it truthful */
    weft__pollent wake_pe;    /* eventfd for posts and wake-ups */
    bool wake_armed;          /* a write to it is pending (under post_lock) */
    weft__pollent timer_pe;   /* timerfd, made once weft_loop_fd is asked for */
    int64_t timer_fd_at;
    struct {                  /* the layers' per-loop state (weft__loop_ext) */
        void *state;
        void (*free)(weft_loop *l, void *state);
    } ext[WEFT__EXT_MAX];
    unsigned char ext_order[WEFT__EXT_MAX]; /* key indices, in the order set */
    unsigned ext_len;
    struct weft__group *group; /* the loops weft_main runs together; NULL alone */
    int index;                /* this loop's place in its group: 0 .. nloops-1 */
    int nloops;               /* loops in its group; 1 alone */
    /* cross-thread posts */
    void *post_lock;          /* pthread_mutex_t * */
    weft__post *post_head, *post_tail;
    bool refusing;            /* weft_loop_post says -ESHUTDOWN (under post_lock) */
    int64_t remote_seq;       /* last id of a coroutine other loops spawned
                               * here, given out under post_lock in queue order */
    int64_t remote_taken;     /* the last of those spawned */
    weft__waitq remote_waiters; /* joins of ids given out but not yet spawned */
};

/* A coroutine id: the loop's number << 40 | a sequence number.  Spawns
 * from other loops (weft_go_on) take theirs from the upper half of the
 * sequence numbers, given out in the order they are queued. */
#define WEFT__CO_SEQ_BITS 40
#define WEFT__CO_SEQ_MASK (((int64_t)1 << WEFT__CO_SEQ_BITS) - 1)
#define WEFT__CO_REMOTE ((int64_t)1 << (WEFT__CO_SEQ_BITS - 1))

/* Spawns fn(arg) on l (this thread's loop) with the id given; as weft_go. */
int64_t weft__co_spawn(weft_loop *l, void (*fn)(void *), void *arg, int64_t id);

/* Runs every coroutine that is ready now, each until it parks, yields or
 * finishes (then frees it); ones made ready meanwhile wait for the next
 * call. */
void weft__co_run_ready(weft_loop *l);
/* Wakes every parked coroutine of the table with -ECANCELED. */
void weft__cotab_cancel_all(weft__cotab *t);
void weft__cotab_free(weft__cotab *t);
/* The live coroutine id of l, or NULL. */
weft__co *weft__co_find(weft_loop *l, int64_t id);
/* Frees the loop's spare coroutine records. */
void weft__co_pool_free(weft_loop *l);

/* The loop of this thread, or NULL. */
extern __thread weft_loop *weft__tls_loop;

/* True when what is made here may be used by other loops too: outside
 * any loop, or on a loop of a group of several (weft_config.threads). */
static inline bool weft__multi_loop(void)
{
    weft_loop *l = weft__tls_loop;
    return !l || l->nloops > 1;
}

static inline weft__co *weft__current(void)
{
    weft_loop *l = weft__tls_loop;
    return l ? l->current : NULL;
}

/* Monotonic nanoseconds; also kept as the thread's latest reading. */
int64_t weft__now_ns(void);
extern __thread int64_t weft__tls_now;

/* Whether deadline has passed by the thread's latest clock reading, not a
 * new one: the checks on the way to a wait come close together, after
 * the reading that made the deadline.  A stale reading can only say "not
 * yet", and then the wait's timer, which the loop fires by a fresh
 * reading, ends the wait at the next step. */
static inline bool weft__passed(int64_t deadline)
{
    return deadline != WEFT__NEVER && deadline <= weft__tls_now;
}

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

/* Waking from other threads.  A waiter that another thread may wake
 * records where it waits: its loop, its coroutine's id and its wait's seq
 * (weft__wait_here).  Any thread may then ask that loop to wake it
 * (weft__wake_from): the loop does at its next step, if that coroutine is
 * still in that very wait, and does nothing otherwise, so no pointer to a
 * waiter's stack ever crosses threads.  The caller must know l is alive:
 * it holds a lock that the waiter needs before it can finish. */
typedef struct weft__waiter_id {
    weft_loop *loop;
    int64_t co;
    uint64_t seq;
} weft__waiter_id;
/* Where the running coroutine's next park will wait: call it right before
 * weft__park (nothing may park in between). */
weft__waiter_id weft__wait_here(void);
/* Thread-safe.  Returns 0, or -ENOMEM (the wake could not be queued). */
int weft__wake_from(const weft__waiter_id *id, int result);
/* Thread-safe: runs fn(arg) in loop l itself (outside any coroutine) at
 * its next step; l must be alive, as for weft__wake_from.  Calls still
 * queued when l is freed run then, after its last coroutine has finished.
 * Returns 0 or -ENOMEM. */
int weft__loop_call(weft_loop *l, void (*fn)(void *arg), void *arg);
/* weft_loop_post for the library's own work: never refused, even while l
 * is being freed (fn then runs before the loop is gone). */
int weft__loop_post(weft_loop *l, void (*fn)(void *arg), void *arg);
/* Queues p (the caller's memory, until fn runs) to run fn(arg) in l
 * itself, as weft__loop_call but without allocating: it cannot fail. */
void weft__loop_call_with(weft_loop *l, weft__post *p, void (*fn)(void *arg), void *arg);
/* The same for a call that may post to another loop in turn (a request
 * whose answer goes back): on a loop of a group it keeps the group up
 * until fn has run, so that nothing it posts can reach a loop being
 * freed.  The caller must be a live coroutine of the group (or hold the
 * group up otherwise). */
void weft__loop_call_held(weft_loop *l, weft__post *p, void (*fn)(void *arg), void *arg);
/* Queues a coroutine running fn(arg) to be spawned on l, another loop of
 * the caller's group, and returns the id it will have, or -ENOMEM,
 * -EAGAIN (l has given out all its ids for such spawns). */
int64_t weft__loop_post_remote(weft_loop *l, void (*fn)(void *arg), void *arg);
/* Runs l, a loop of a group, until the group is done (group.c). */
void weft__loop_run_group(weft_loop *l);
/* Makes co ready to run. */
void weft__ready(weft_loop *l, weft__co *co);

/* Timer heap. */
int weft__timer_add(weft__timers *t, weft__timer *w);
void weft__timer_del(weft__timers *t, weft__timer *w);
weft__timer *weft__timer_peek(const weft__timers *t);
void weft__timer_free(weft__timers *t);

/* ---- extending the loop (layers above the scheduler) -------------------- */

/* Loop timers: work that no coroutine waits for.  fire(t) runs in the loop,
 * outside any coroutine, at the first step after the deadline, once per
 * weft__timer_set; it may set t again.  A loop timer does not keep the
 * loop alive (weft_loop_run returns once no coroutine is left).  Stop or
 * let fire every timer before freeing its memory. */
void weft__timer_init(weft__timer *t, void (*fire)(weft__timer *t));
/* (Re)arms t for deadline (ns; WEFT__NEVER stops it).  Returns 0 or
 * -ENOMEM (the heap could not grow: t is then stopped). */
int weft__timer_set(weft_loop *l, weft__timer *t, int64_t deadline);
void weft__timer_stop(weft_loop *l, weft__timer *t);

/* A layer's per-loop state, found by a key the layer defines once
 * (static weft__ext_key k = { "name", free_fn };).  The key's index is
 * assigned at its first use; at most WEFT__EXT_MAX keys in a process. */
typedef struct weft__ext_key {
    const char *name;
    /* Frees state when the loop is freed: after its last coroutine has
     * finished, before its poller closes; latest set, first freed. */
    void (*free)(weft_loop *l, void *state);
    int idx; /* 1 + index into weft_loop.ext; 0 until first used */
} weft__ext_key;

/* The state set for key on l, or NULL. */
static inline void *weft__loop_ext(const weft_loop *l, weft__ext_key *key)
{
    int i = __atomic_load_n(&key->idx, __ATOMIC_ACQUIRE);
    return i ? l->ext[i - 1].state : NULL;
}
/* Sets l's state for key (once; the free hook runs at weft_loop_free).
 * Returns 0, -EEXIST (already set), -ENOSPC (too many keys). */
int weft__loop_ext_set(weft_loop *l, weft__ext_key *key, void *state);

/* The layers above the scheduler that take part in making a loop, in
 * order (src/modules.c): each checks its part of the config and may set
 * its per-loop state.  The scheduler calls them; it knows nothing else of
 * them. */
typedef struct weft__module {
    const char *name;
    /* Returns 0, or an error weft_loop_new then returns (-EINVAL for a bad
     * setting, -ENOMEM). */
    int (*loop_init)(weft_loop *l, const weft_config *cfg);
} weft__module;
extern const weft__module *const weft__modules[]; /* NULL-terminated */

/* ---- the worker pool (src/sched/blocking.c) ----------------------------- */

/* Work for the process's worker threads: weft_blocking's calls and the
 * system resolver's lookups.  The submitter fills run (and release), the
 * rest is the pool's, read and written under its lock. */
typedef struct weft__job weft__job;
struct weft__job {
    void (*run)(weft__job *j); /* on a worker thread, without the pool's lock */
    /* NULL: a submitter that gives up still waits for a started job to
     * end, so j may live on its stack (weft_blocking).  Otherwise it may
     * leave a started job behind, and release(j) frees j once nobody else
     * uses it: at once if j never started, else when run returns. */
    void (*release)(weft__job *j);
    weft__job *next, *prev;  /* the queue */
    weft__waiter_id waiter;  /* who to wake when done; loop NULL: a thread */
    int state;               /* queued, running, done */
    bool abandoned;          /* its submitter left: release it when done */
};

/* Runs j on the pool and waits for it: in a coroutine it parks, elsewhere
 * the thread waits.  Returns 0 once run(j) has returned (j is the
 * caller's again).  Otherwise: -ETIMEDOUT (deadline, ns), -ECANCELED
 * (weft_cancel, or the loop is being freed), -ENOMEM (the timer heap),
 * -EAGAIN (no worker thread could be started and none runs).  Without a
 * release these only come for a job that never started, and j is the
 * caller's; with one, j is the pool's after any error, started or not.
 * A deadline already passed: a job without a release is queued only if a
 * worker is free for it at once (else -ETIMEDOUT) and then waited for; one
 * with a release is not queued at all. */
int weft__pool_run(weft__job *j, int64_t deadline);

/* The pool's part in making a loop: weft_config.workers (src/modules.c). */
extern const weft__module weft__pool_module;

/* ---- the poller interface (src/sched/poll_*.c) -------------------------- */

/* Events the backend reports for one registered descriptor. */
enum {
    WEFT__EV_IN = 1,
    WEFT__EV_OUT = 2,
    WEFT__EV_ERR = 4,
    WEFT__EV_HUP = 8,
    WEFT__EV_PRI = 16, /* urgent (TCP out-of-band) data; comes with WEFT__EV_IN */
};

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
    /* Sets the events of an armed entry anew.  Edge-triggered, the poller
     * reports each event that holds now once more, even if it held before:
     * for interest that arrives after the edge was consumed. */
    int (*rearm)(weft_loop *l, weft__pollent *e, int events);
    /* A backend that cannot report edges (poll) reports an event of a
     * socket once and then stops watching for it: a waiter about to park
     * for events of e (after EAGAIN) asks for them again.  NULL: edges. */
    void (*want)(weft_loop *l, weft__pollent *e, int events);
    /* A completion backend (io_uring) carries operations out itself; NULL
     * for one that only tells readiness.  submit queues op, whose memory
     * is the caller's until it completes, to go to the kernel at the next
     * wait (or flush); on completion it sets op->res and op->done and wakes
     * op->w.  Returns 0, or -EAGAIN: no room, the caller does it itself. */
    int (*submit)(weft_loop *l, weft__bop *op);
    /* Asks for op's early end: it completes soon, with -ECANCELED or with
     * what it had done already.  Never fails. */
    void (*cancel)(weft_loop *l, weft__bop *op);
    /* Hands every queued submission to the kernel now: before a descriptor
     * that queued operations name is closed (they name it by number until
     * submitted). */
    void (*flush)(weft_loop *l);
    /* Provided buffers (a completion backend that has them; NULL else):
     * the loop's pool, set up at the first call (NULL: not to be had
     * here).  A WEFT__BOP_RECV_MULTI stays in the ring and fills buffers
     * of the pool the kernel picks, one completion each; the buffer is the
     * completion's receiver's until it gives it back with pbuf_put. */
    weft__pbufs *(*pbufs)(weft_loop *l);
    void (*pbuf_put)(weft_loop *l, unsigned id);
    /* Asks for op's early end like cancel, without running anything now:
     * for op->more, which runs inside the backend's wait. */
    void (*stop)(weft_loop *l, weft__bop *op);
};

extern const weft__backend weft__backend_epoll;
extern const weft__backend weft__backend_poll;
#ifdef WEFT_HAVE_URING
extern const weft__backend weft__backend_uring;
#endif

/* The epoll set (poll_epoll.c), which the io_uring backend keeps for
 * readiness too: the first member of either backend's state. */
#define WEFT__EPOLL_EVENTS 256
typedef struct weft__epoll_set {
    int epfd;
    struct epoll_event *ev; /* WEFT__EPOLL_EVENTS of them */
} weft__epoll_set;
int weft__epoll_open(weft__epoll_set *st);
void weft__epoll_close(weft__epoll_set *st);
/* The epoll backend's calls, on l->be_data that starts with a set. */
int weft__epoll_arm(weft_loop *l, weft__pollent *e, int events);
int weft__epoll_rearm(weft_loop *l, weft__pollent *e, int events);
int weft__epoll_disarm(weft_loop *l, weft__pollent *e);
int weft__epoll_wait(weft_loop *l, int timeout_ms);

/* ---- operations a completion backend carries out ------------------------ */

enum {
    WEFT__BOP_RECV,    /* recv(fd, buf, len, flags) */
    WEFT__BOP_SEND,    /* send(fd, buf, len, flags) */
    WEFT__BOP_RECVMSG, /* recvmsg(fd, buf: struct msghdr *, flags) */
    WEFT__BOP_SENDMSG, /* sendmsg(fd, buf: struct msghdr *, flags) */
    WEFT__BOP_ACCEPT,  /* accept4(fd, NULL, NULL, flags): res is the new fd */
    WEFT__BOP_CONNECT, /* connect(fd, buf: struct sockaddr *, len) */
    WEFT__BOP_RECV_MULTI, /* recv(fd, a provided buffer, flags), again and
                           * again until it fails, ends or is stopped:
                           * op->more runs for each completion */
    WEFT__BOP_ACCEPT_MULTI, /* accept4(fd, NULL, NULL, flags), again and
                             * again, the same way: res is each new fd */
};

/* A loop's provided buffers: count buffers of size bytes from base.  The
 * per-buffer arrays are for the buffers' receiver while it holds them
 * (the socket core queues them by next). */
typedef struct weft__pbufs {
    char *base;
    unsigned size, count;
    unsigned out;   /* filled by the kernel and not given back yet */
    uint32_t *len;  /* bytes the kernel put in */
    int32_t *next;  /* the receiver's link; -1: none */
} weft__pbufs;

/* One operation in a completion backend: lives on the stack of the
 * coroutine that waits for it (weft__bop_run). */
struct weft__bop {
    unsigned char kind;
    bool done;      /* completed: res is its result */
    int fd;
    int flags;
    void *buf;
    size_t len;
    bool poll_first; /* a receive on a socket drained a moment ago: wait
                      * for data before the first try (io_uring's
                      * IORING_RECVSEND_POLL_FIRST) */
    int res;        /* bytes, or -errno */
    bool more;      /* a receive: the kernel says more data is queued */
    weft__wait *w;  /* the waiting coroutine's wait; NULL: none to wake */
    /* WEFT__BOP_RECV_MULTI, _ACCEPT_MULTI: called for each completion, inside the
     * backend's wait, with res (bytes, 0 at the end of the stream,
     * -errno), buf the provided buffer's id or -1, and done once the
     * operation has left the ring (no more calls; op's memory is free).
     * It must not wait, cancel or flush (stop is safe). */
    void (*on_more)(weft__bop *op, int res, int buf, bool done);
};

/* Has l's backend carry op out and waits for it, in a coroutine of l.
 * Returns op's result (>= 0 or -errno).  A deadline or a cancel that
 * comes first asks the backend to stop the operation and still waits for
 * its completion, so that no buffer of the caller is written after the
 * return: then -ETIMEDOUT, -ECANCELED (or -ENOMEM, the timer heap), unless
 * the operation completed anyway (a cancel is then kept for the next
 * call).  -EAGAIN: not submitted (no room, or the deadline had passed):
 * the caller does the operation itself, without waiting. */
int weft__bop_run(weft_loop *l, weft__bop *op, int64_t deadline);
/* Parks the running coroutine until weft__wake(w): no deadline, and a
 * cancel or a closing loop does not end it (a cancel stays pending). */
void weft__park_hard(weft__wait *w);

#endif /* WEFT_INTERNAL_H */
