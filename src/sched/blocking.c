/*
 * blocking.c - the process's worker pool, and weft_blocking on it.
 *
 * One pool per process, shared by every loop and by the system resolver:
 * a queue of jobs and threads that take them.  A thread is started
 * when a job is queued and no worker is free for it, up to the cap
 * (weft_config.workers, $WEFT_WORKERS, 64); a worker idle for IDLE_MS
 * exits, and so do idle ones at the process's exit; a busy one is left to
 * the end of the process, as it may be inside a call that never returns.
 *
 * A job knows its waiter by id (weft__wait_here), never by pointer: the
 * worker wakes it through its loop (weft__wake_from) while holding the
 * pool's lock, which the waiter takes before it can leave, so the loop is
 * alive then.  Should that wake be lost (no memory for it), the waiter
 * still looks at its job every RECHECK_MS.  A waiter that gives up
 * withdraws a job still queued; a started one it waits for, unless the job
 * has a release, which the worker then calls when the job ends.
 */
#include "internal.h"

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CAP_DEFAULT 64
#define CAP_MAX 1024
#define IDLE_MS 10000   /* a worker idle this long exits */
#define RECHECK_MS 1000 /* a waiter looks at its job at least this often */

enum { QUEUED = 1, RUNNING, DONE };

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work;    /* workers wait here for jobs */
static pthread_cond_t done_cv; /* threads wait here for their jobs */
static weft__job *qhead, *qtail;
static int queued;   /* jobs in the queue */
static int workers;  /* threads started and not exited */
static int idle;     /* of those, waiting for a job */
static int starting; /* started, not yet at their first job */
static int cap;      /* 0 until the pool is first used or a loop sets it */
static bool quitting; /* the process is exiting: idle workers leave */

/* A worker thread.  One that leaves puts itself on the gone list, and the
 * next submit (or the process's exit) joins it, which gives its thread's
 * memory back: a detached thread still alive at exit is a leak to
 * valgrind. */
typedef struct worker_rec {
    pthread_t thread;
    struct worker_rec *next;
} worker_rec;
static worker_rec *gone;

/* ---- the cap ----------------------------------------------------------------- */

/* The cap a loop asks for: its config's, else $WEFT_WORKERS, else the
 * default.  Returns it, or -EINVAL. */
static int cap_asked(const weft_config *cfg)
{
    if (cfg && cfg->workers)
        return cfg->workers > 0 && cfg->workers <= CAP_MAX ? cfg->workers : -EINVAL;
    const char *env = getenv("WEFT_WORKERS");
    if (!env || !*env)
        return CAP_DEFAULT;
    char *end;
    long n = strtol(env, &end, 10);
    return *end == '\0' && n > 0 && n <= CAP_MAX ? (int)n : -EINVAL;
}

static int pool_loop_init(weft_loop *l, const weft_config *cfg)
{
    (void)l;
    int n = cap_asked(cfg);
    if (n < 0)
        return n;
    pthread_mutex_lock(&mu);
    if (n > cap)
        cap = n;
    pthread_mutex_unlock(&mu);
    return 0;
}

const weft__module weft__pool_module = { "workers", pool_loop_init };

/* ---- the pool ------------------------------------------------------------------ */

/* A child of fork has none of the workers: it starts its own. */
static void atfork_prepare(void)
{
    pthread_mutex_lock(&mu);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&mu);
}

static void init_conds(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&work, &ca);
    pthread_cond_init(&done_cv, &ca);
    pthread_condattr_destroy(&ca);
}

/* The child has only the thread that forked: no worker, and no waiter on
 * the pool's conditions but maybe that one. */
static void atfork_child(void)
{
    pthread_mutex_unlock(&mu);
    init_conds();
    workers = idle = starting = 0;
    while (gone) { /* threads of the parent's: nothing to join here */
        worker_rec *w = gone;
        gone = w->next;
        free(w);
    }
}

static struct timespec abs_ts(int64_t ns)
{
    return (struct timespec){ (time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL) };
}

static void unlink_job(weft__job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        qhead = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        qtail = j->prev;
    queued--;
}

/* A job is done: tell its waiter, or free it if it has none.  Under mu;
 * returns the job to release once mu is let go, if any. */
static weft__job *finish(weft__job *j)
{
    j->state = DONE;
    if (j->abandoned)
        return j;
    /* The waiter cannot leave before we let go of mu, so its loop is
     * alive.  If the wake cannot be queued, its recheck finds DONE. */
    if (j->waiter.loop)
        weft__wake_from(&j->waiter, 0);
    pthread_cond_broadcast(&done_cv);
    return NULL;
}

static void *worker(void *arg)
{
    worker_rec *self = arg;
    pthread_mutex_lock(&mu);
    starting--;
    for (;;) {
        while (!qhead) {
            struct timespec ts = abs_ts(weft__now_ns() + IDLE_MS * WEFT__NS_PER_MS);
            int rc = 0;
            if (!quitting) {
                idle++;
                rc = pthread_cond_timedwait(&work, &mu, &ts);
                idle--;
            }
            if ((rc == ETIMEDOUT || quitting) && !qhead) {
                workers--;
                self->next = gone;
                gone = self;
                pthread_cond_broadcast(&done_cv); /* the exit's wait for idle ones */
                pthread_mutex_unlock(&mu);
                return NULL;
            }
        }
        weft__job *j = qhead;
        unlink_job(j);
        j->state = RUNNING;
        pthread_mutex_unlock(&mu);
        j->run(j);
        pthread_mutex_lock(&mu);
        weft__job *rel = finish(j);
        if (rel) {
            pthread_mutex_unlock(&mu);
            rel->release(rel);
            pthread_mutex_lock(&mu);
        }
    }
}

/* Joins the workers that have left.  Under mu: they need it no more. */
static void reap(void)
{
    while (gone) {
        worker_rec *w = gone;
        gone = w->next;
        pthread_join(w->thread, NULL);
        free(w);
    }
}

/* Starts a worker.  Under mu.  Returns 0 or -EAGAIN. */
static int start_worker(void)
{
    pthread_attr_t attr;
    sigset_t all, old;
    worker_rec *w = weft__sys_malloc(sizeof *w);
    if (!w)
        return -EAGAIN;
    if (pthread_attr_init(&attr) != 0) {
        free(w);
        return -EAGAIN;
    }
    /* Signals the process is sent go to the program's own threads; faults
     * a worker causes stay its own. */
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&w->thread, &attr, worker, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(w);
        return -EAGAIN;
    }
    workers++;
    starting++;
    return 0;
}

/* At the process's exit: idle workers leave and are joined (waiting a
 * second at most); busy ones go on until the process ends. */
static void pool_exit(void)
{
    pthread_mutex_lock(&mu);
    quitting = true;
    pthread_cond_broadcast(&work);
    int64_t until = weft__now_ns() + 1000 * WEFT__NS_PER_MS;
    struct timespec ts = abs_ts(until);
    while (idle + starting > 0 && weft__now_ns() < until)
        pthread_cond_timedwait(&done_cv, &mu, &ts);
    reap();
    pthread_mutex_unlock(&mu);
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void pool_init(void)
{
    init_conds();
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    atexit(pool_exit);
}

/* Queues j, starting a worker if none is free for it.  Under mu.  With
 * only_try, j is queued only if a worker is free for it.  Returns 0,
 * -ETIMEDOUT (only_try and none), -EAGAIN (no worker at all). */
static int submit(weft__job *j, bool only_try)
{
    if (!cap) {
        int n = cap_asked(NULL); /* no loop has set it: a thread's first lookup */
        cap = n > 0 ? n : CAP_DEFAULT;
    }
    reap();
    int spare = idle + starting - queued;
    if (spare <= 0 && workers < cap && start_worker() == 0)
        spare++;
    if (workers == 0)
        return -EAGAIN;
    if (only_try && spare <= 0)
        return -ETIMEDOUT;
    j->state = QUEUED;
    j->abandoned = false;
    j->waiter.loop = NULL; /* a thread's wait; a coroutine's sets its own */
    j->next = NULL;
    j->prev = qtail;
    if (qtail)
        qtail->next = j;
    else
        qhead = j;
    qtail = j;
    queued++;
    if (idle > 0)
        pthread_cond_signal(&work);
    return 0;
}

/* The waiter gives up with rc.  Under mu.  Returns rc if it may leave
 * (the job is withdrawn or left behind), 0 if it must wait for the job. */
static int give_up(weft__job *j, int rc, weft__job **rel)
{
    if (j->state == QUEUED) {
        unlink_job(j);
        *rel = j;
        return rc;
    }
    if (j->release) {
        j->abandoned = true;
        return rc;
    }
    return 0;
}

/* A thread without a coroutine waits for j.  Under mu. */
static int wait_thread(weft__job *j, int64_t deadline, weft__job **rel)
{
    while (j->state != DONE) {
        if (deadline != WEFT__NEVER && weft__now_ns() >= deadline) {
            int rc = give_up(j, -ETIMEDOUT, rel);
            if (rc < 0)
                return rc;
            deadline = WEFT__NEVER;
            continue;
        }
        if (deadline == WEFT__NEVER) {
            pthread_cond_wait(&done_cv, &mu);
        } else {
            struct timespec ts = abs_ts(deadline);
            pthread_cond_timedwait(&done_cv, &mu, &ts);
        }
    }
    return 0;
}

/* weft__park without its cancel check, for a loop being freed: there every
 * park returns -ECANCELED at once, and a job already started must still be
 * waited for while the loop runs its other coroutines to their end. */
static int park_closing(weft_loop *l, weft__wait *w, int64_t deadline)
{
    weft__co *co = l->current;
    *w = (weft__wait){ .co = co, .seq = ++l->wait_seq };
    w->tm.deadline = deadline;
    w->tm.heap_idx = SIZE_MAX;
    if (weft__timer_add(&l->timers, &w->tm) < 0)
        return -ENOMEM;
    co->wait = w;
    co->state = WEFT__CO_WAITING;
    weft__fiber_suspend(&co->fiber, &l->sched);
    co->wait = NULL;
    return w->result;
}

/* A coroutine parks until j is done.  Under mu (let go while parked). */
static int wait_co(weft_loop *l, weft__job *j, int64_t deadline, weft__job **rel)
{
    bool cancelled = false;
    while (j->state != DONE) {
        j->waiter = weft__wait_here();
        pthread_mutex_unlock(&mu);
        int64_t recheck = weft__now_ns() + RECHECK_MS * WEFT__NS_PER_MS;
        int64_t until = deadline < recheck ? deadline : recheck;
        weft__wait w;
        int rc = l->closing ? park_closing(l, &w, until) : weft__park(&w, NULL, until);
        pthread_mutex_lock(&mu);
        if (j->state == DONE || rc == 0 || (rc == -ETIMEDOUT && until != deadline))
            continue; /* done, or time to look */
        int left = give_up(j, rc, rel); /* -ETIMEDOUT, -ECANCELED, -ENOMEM */
        if (left < 0)
            return left;
        /* Started: from now on it is waited for, whatever comes. */
        deadline = WEFT__NEVER;
        cancelled |= rc == -ECANCELED;
        if (rc == -ENOMEM) {
            /* No room in the timer heap to park: wait on the thread. */
            while (j->state != DONE)
                pthread_cond_wait(&done_cv, &mu);
        }
    }
    /* A cancel that came while the job ran is for the next call. */
    if (cancelled && !l->closing)
        l->current->cancel_pending = true;
    return 0;
}

int weft__pool_run(weft__job *j, int64_t deadline)
{
    weft_loop *l = weft__tls_loop;
    weft__co *co = l ? l->current : NULL;
    bool passed = deadline != WEFT__NEVER && deadline <= weft__now_ns();
    weft__job *rel = NULL;
    int rc;
    if (passed && j->release) {
        rc = -ETIMEDOUT;
        rel = j;
        goto out;
    }
    if (co && (co->cancel_pending || l->closing)) {
        co->cancel_pending = false;
        rc = -ECANCELED;
        rel = j;
        goto out;
    }
    pthread_once(&once, pool_init);
    pthread_mutex_lock(&mu);
    if ((rc = submit(j, passed)) < 0) {
        rel = j;
    } else {
        if (passed)
            deadline = WEFT__NEVER; /* a worker is free for it: wait */
        rc = co ? wait_co(l, j, deadline, &rel) : wait_thread(j, deadline, &rel);
    }
    pthread_mutex_unlock(&mu);
out:
    if (rel && rel->release)
        rel->release(rel);
    return rc;
}

/* ---- weft_blocking ---------------------------------------------------------------- */

typedef struct blocking_job {
    weft__job job; /* first member */
    void (*fn)(void *);
    void *arg;
} blocking_job;

static void run_blocking(weft__job *j)
{
    blocking_job *b = (blocking_job *)j;
    b->fn(b->arg);
}

int weft_blocking(void (*fn)(void *arg), void *arg, int64_t timeout_ms)
{
    if (!fn)
        return -EINVAL;
    if (!weft__current()) {
        fn(arg);
        return 0;
    }
    blocking_job b = { .job = { .run = run_blocking }, .fn = fn, .arg = arg };
    return weft__pool_run(&b.job, weft__deadline(timeout_ms));
}
