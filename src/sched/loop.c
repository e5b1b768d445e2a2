/*
 * loop.c - one loop per thread: the run queue, timers and poller tied
 * together, the embedding API (new/poll/run/stop/fd/free), cross-thread
 * posts, and running a loop of a group (group.c makes the group).
 *
 * A step waits on the poller (not at all if coroutines are ready), fires
 * due timers, then runs every coroutine that was ready when the run began;
 * ones made ready during the run go to the next step, so a coroutine that
 * keeps yielding cannot starve I/O.
 */
#include "internal.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

__thread weft_loop *weft__tls_loop;

static atomic_llong loops_made;

#define BUSY_POLL_EVERY 16

#define LOOP_OF(pe, member) ((weft_loop *)((char *)(pe)-offsetof(weft_loop, member)))

/* The backends by name, fastest first: the first that can be set up here
 * is the default (bench/RESULTS.md, "Backends"). */
static const weft__backend *const backends[] = {
    &weft__backend_epoll,
#ifdef WEFT_HAVE_URING
    &weft__backend_uring,
#endif
    &weft__backend_poll,
    NULL,
};

/* The backend asked for by name (cfg's, else $WEFT_BACKEND), the first of
 * the list for none; NULL for a name unknown or not built in. */
static const weft__backend *find_backend(const char *name)
{
    if (!name || !*name)
        name = getenv("WEFT_BACKEND");
    if (!name || !*name)
        return backends[0];
    for (int i = 0; backends[i]; i++)
        if (strcmp(name, backends[i]->name) == 0)
            return backends[i];
    return NULL;
}

/* Sets up be, or epoll in its place when io_uring cannot be had here
 * (ENOSYS, EPERM under a seccomp profile or io_uring_disabled, ENOMEM
 * under RLIMIT_MEMLOCK). */
static int init_backend(weft_loop *l, const weft__backend *be)
{
    l->be = be;
    int rc = be->init(l);
    if (rc == -ENOSYS && be->submit) {
        l->be = &weft__backend_epoll;
        rc = l->be->init(l);
    }
    return rc;
}

const char *weft_backend(void)
{
    weft_loop *l = weft__tls_loop;
    if (l)
        return l->be->name;
    const weft__backend *be = find_backend(NULL);
    return be ? be->name : NULL;
}

/* ---- cross-thread posts ------------------------------------------------- */

/* Runs or spawns what other threads posted, in the order posted.  Out of
 * memory for a coroutine's record, the rest goes back to the front of the
 * queue for the next step.  Returns false if nothing could be done. */
static bool take_posts(weft_loop *l)
{
    pthread_mutex_t *mu = l->post_lock;
    uint64_t n;
    ssize_t ignored = read(l->wake_pe.fd, &n, sizeof n); /* drain before taking */
    (void)ignored;
    pthread_mutex_lock(mu);
    weft__post *p = l->post_head;
    l->post_head = l->post_tail = NULL;
    l->wake_armed = false;
    pthread_mutex_unlock(mu);
    weft__post *first = p, *stuck = NULL;
    bool remote = false;
    while (p) {
        weft__post *next = p->next;
        if (p->kind == WEFT__POST_CALL_WITH) {
            bool held = p->counted;
            p->fn(p->arg); /* may free p: it is part of arg */
            if (held)
                weft__group_busy(l->group, -1);
            p = next;
            continue;
        }
        if (p->kind == WEFT__POST_CALL) {
            p->fn(p->arg);
            free(p);
            p = next;
            continue;
        }
        int64_t id = p->kind == WEFT__POST_REMOTE ? weft__co_spawn(l, p->fn, p->arg, p->id)
                                                  : weft_go(p->fn, p->arg);
        if (id == -ENOMEM) {
            pthread_mutex_lock(mu);
            weft__post *last = p;
            while (last->next)
                last = last->next;
            last->next = l->post_head;
            if (!l->post_head)
                l->post_tail = last;
            l->post_head = p;
            pthread_mutex_unlock(mu);
            weft_loop_wake(l);
            stuck = p;
            break;
        }
        if (p->kind == WEFT__POST_REMOTE) {
            l->remote_taken = p->id & (WEFT__CO_REMOTE - 1);
            remote = true;
        }
        if (p->kind == WEFT__POST_REMOTE || p->counted)
            weft__group_busy(l->group, -1); /* on its way no more: alive here */
        free(p);
        p = next;
    }
    if (remote && l->remote_waiters.head)
        weft__wake_all(&l->remote_waiters, 0);
    return stuck != first; /* something was done */
}

static void on_wake(weft__pollent *pe, int events)
{
    (void)events;
    take_posts(LOOP_OF(pe, wake_pe));
}

/* Queues p; refused (-ESHUTDOWN) if refusable and l is being freed.  A
 * remote spawn's id is given out here, into *id: once the lock is let go
 * p may already be freed. */
static int enqueue(weft_loop *l, weft__post *p, bool refusable, int64_t *id)
{
    p->next = NULL;
    pthread_mutex_lock(l->post_lock);
    /* A post from a thread of the user's keeps the group from ending until
     * it has run; once the group has ended (nothing alive anywhere) it is
     * refused, as by a loop being freed. */
    bool held = p->kind == WEFT__POST_CALL_HELD; /* counted by the caller */
    if (held)
        p->kind = WEFT__POST_CALL_WITH;
    p->counted = held || (refusable && l->group);
    if ((refusable && l->refusing) || (refusable && l->group && !weft__group_enter(l->group))) {
        pthread_mutex_unlock(l->post_lock);
        return -ESHUTDOWN;
    }
    if (p->kind == WEFT__POST_REMOTE) {
        /* Ids in queue order: the loop then knows which it has spawned. */
        if (l->remote_seq + 1 >= WEFT__CO_REMOTE) {
            pthread_mutex_unlock(l->post_lock);
            return -EAGAIN;
        }
        *id = p->id = l->id_base | WEFT__CO_REMOTE | ++l->remote_seq;
    }
    if (l->post_tail)
        l->post_tail->next = p;
    else
        l->post_head = p;
    l->post_tail = p;
    bool wake = !l->wake_armed;
    l->wake_armed = true;
    pthread_mutex_unlock(l->post_lock);
    if (wake)
        weft_loop_wake(l);
    return 0;
}

static int post(weft_loop *l, void (*fn)(void *arg), void *arg, int kind, bool refusable)
{
    weft__post *p = weft__sys_malloc(sizeof *p);
    if (!p)
        return -ENOMEM;
    p->fn = fn;
    p->arg = arg;
    p->kind = (unsigned char)kind;
    int rc = enqueue(l, p, refusable, NULL);
    if (rc < 0)
        free(p);
    return rc;
}

int weft_loop_post(weft_loop *l, void (*fn)(void *arg), void *arg)
{
    if (!l || !fn)
        return -EINVAL;
    return post(l, fn, arg, WEFT__POST_CO, true);
}

int weft__loop_post(weft_loop *l, void (*fn)(void *arg), void *arg)
{
    return post(l, fn, arg, WEFT__POST_CO, false);
}

int weft__loop_call(weft_loop *l, void (*fn)(void *arg), void *arg)
{
    return post(l, fn, arg, WEFT__POST_CALL, false);
}

void weft__loop_call_with(weft_loop *l, weft__post *p, void (*fn)(void *arg), void *arg)
{
    p->fn = fn;
    p->arg = arg;
    p->kind = WEFT__POST_CALL_WITH;
    enqueue(l, p, false, NULL);
}

void weft__loop_call_held(weft_loop *l, weft__post *p, void (*fn)(void *arg), void *arg)
{
    p->fn = fn;
    p->arg = arg;
    p->kind = WEFT__POST_CALL_WITH;
    if (l->group) {
        weft__group_busy(l->group, 1); /* the caller is alive: never from 0 */
        p->kind = WEFT__POST_CALL_HELD;
    }
    enqueue(l, p, false, NULL);
}

int64_t weft__loop_post_remote(weft_loop *l, void (*fn)(void *arg), void *arg)
{
    weft__post *p = weft__sys_malloc(sizeof *p);
    if (!p)
        return -ENOMEM;
    p->fn = fn;
    p->arg = arg;
    p->kind = WEFT__POST_REMOTE;
    int64_t id = 0;
    int rc = enqueue(l, p, false, &id);
    if (rc < 0) {
        free(p);
        return rc;
    }
    return id;
}

/* ---- waking a coroutine from another thread ------------------------------- */

weft__waiter_id weft__wait_here(void)
{
    weft_loop *l = weft__tls_loop;
    return (weft__waiter_id){l, l->current->id, l->wait_seq + 1};
}

typedef struct remote_wake {
    int64_t co;
    uint64_t seq;
    int result;
} remote_wake;

static void wake_if_there(weft_loop *l, int64_t id, uint64_t seq, int result)
{
    weft__co *co = weft__co_find(l, id);
    if (co && co->wait && co->wait->seq == seq && !co->wait->woken)
        weft__wake(co->wait, result);
}

static void wake_if_still_there(void *arg)
{
    remote_wake *r = arg;
    wake_if_there(weft__tls_loop, r->co, r->seq, r->result);
    free(r);
}

int weft__wake_from(const weft__waiter_id *id, int result)
{
    if (id->loop == weft__tls_loop) {
        wake_if_there(id->loop, id->co, id->seq, result); /* our own loop: at once */
        return 0;
    }
    remote_wake *r = weft__sys_malloc(sizeof *r);
    if (!r)
        return -ENOMEM;
    *r = (remote_wake){id->co, id->seq, result};
    int rc = weft__loop_call(id->loop, wake_if_still_there, r);
    if (rc < 0)
        free(r);
    return rc;
}

void weft_loop_wake(weft_loop *l)
{
    if (!l)
        return;
    uint64_t one = 1;
    ssize_t ignored = write(l->wake_pe.fd, &one, sizeof one);
    (void)ignored;
}

/* ---- the layers' per-loop state ------------------------------------------ */

static pthread_mutex_t ext_lock = PTHREAD_MUTEX_INITIALIZER;
static int ext_keys; /* keys given an index so far (under ext_lock) */

int weft__loop_ext_set(weft_loop *l, weft__ext_key *key, void *state)
{
    int i = __atomic_load_n(&key->idx, __ATOMIC_ACQUIRE);
    if (!i) {
        /* The key's first use in the process, maybe on two loops at once. */
        pthread_mutex_lock(&ext_lock);
        if (!(i = key->idx) && ext_keys < WEFT__EXT_MAX)
            __atomic_store_n(&key->idx, i = ++ext_keys, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&ext_lock);
        if (!i)
            return -ENOSPC;
    }
    if (l->ext[i - 1].state)
        return -EEXIST;
    l->ext[i - 1].state = state;
    l->ext[i - 1].free = key->free;
    l->ext_order[l->ext_len++] = (unsigned char)(i - 1);
    return 0;
}

/* Latest set, first freed: a layer's state may use what was there before. */
static void free_ext(weft_loop *l)
{
    while (l->ext_len > 0) {
        unsigned i = l->ext_order[--l->ext_len];
        void *state = l->ext[i].state;
        l->ext[i].state = NULL;
        if (l->ext[i].free)
            l->ext[i].free(l, state);
    }
}

/* ---- create and free ------------------------------------------------------ */

static void on_timerfd(weft__pollent *pe, int events)
{
    (void)events;
    uint64_t n;
    ssize_t ignored = read(pe->fd, &n, sizeof n);
    (void)ignored;
    LOOP_OF(pe, timer_pe)->timer_fd_at = WEFT__NEVER;
}

int weft_loop_new(weft_loop **out, const weft_config *cfg)
{
    if (!out)
        return -EINVAL;
    if (weft__tls_loop)
        return -EBUSY;
    const weft__backend *be = find_backend(cfg ? cfg->backend : NULL);
    if (!be)
        return -EINVAL;
    if (cfg && cfg->stack_size > ((size_t)1 << 30))
        return -EINVAL;
    weft_loop *l = weft__sys_calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    int rc = -ENOMEM;
    pthread_mutex_t *mu = weft__sys_malloc(sizeof *mu);
    if (!mu)
        goto fail_loop;
    pthread_mutex_init(mu, NULL);
    l->post_lock = mu;
    l->stack_size = cfg ? cfg->stack_size : 0;
    l->timer_pe.fd = -1;
    l->nloops = 1;
    l->timer_fd_at = WEFT__NEVER;
    if ((rc = weft__overflow_thread_init()) < 0)
        goto fail_mutex;
    if ((rc = init_backend(l, be)) < 0)
        goto fail_mutex;
    be = l->be;
    l->wake_pe.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->wake_pe.fd < 0) {
        rc = -errno;
        goto fail_be;
    }
    l->wake_pe.on_event = on_wake;
    if ((rc = be->arm(l, &l->wake_pe, WEFT__EV_IN)) < 0)
        goto fail_wake;
    for (const weft__module *const *m = weft__modules; *m; m++)
        if ((*m)->loop_init && (rc = (*m)->loop_init(l, cfg)) < 0)
            goto fail_ext;
    weft__fiber_init_thread(&l->sched);
    l->id_base = (int64_t)(atomic_fetch_add(&loops_made, 1) + 1) << 40;
    weft__tls_loop = l;
    *out = l;
    return 0;

fail_ext:
    free_ext(l);
fail_wake:
    close(l->wake_pe.fd);
fail_be:
    be->fini(l);
fail_mutex:
    pthread_mutex_destroy(mu);
    free(mu);
fail_loop:
    free(l);
    return rc;
}

static void step(weft_loop *l, int64_t deadline);

/* A loop being freed that cannot spawn what was posted: the library's own
 * calls still run, coroutines are dropped. */
static void drop_posts(weft_loop *l)
{
    pthread_mutex_lock(l->post_lock);
    weft__post *p = l->post_head;
    l->post_head = l->post_tail = NULL;
    pthread_mutex_unlock(l->post_lock);
    while (p) {
        weft__post *next = p->next;
        if (p->kind == WEFT__POST_CALL_WITH) {
            bool held = p->counted;
            p->fn(p->arg);
            if (held)
                weft__group_busy(l->group, -1);
        } else if (p->kind == WEFT__POST_CALL) {
            p->fn(p->arg);
            free(p);
        } else {
            if (p->kind == WEFT__POST_REMOTE || p->counted)
                weft__group_busy(l->group, -1);
            free(p);
        }
        p = next;
    }
}

void weft_loop_free(weft_loop *l)
{
    /* Not from another thread, one of its coroutines or a step of its own:
     * that would free what is running. */
    if (!l || l != weft__tls_loop || l->current || l->in_step)
        return;
    /* Every blocking call now returns -ECANCELED; run until all are done.
     * From now on weft_loop_post refuses; what was posted before still
     * runs (a coroutine whose blocking calls are cancelled), and so do
     * the library's own calls queued for the loop (they free what they
     * hold). */
    pthread_mutex_lock(l->post_lock);
    l->refusing = true;
    pthread_mutex_unlock(l->post_lock);
    l->closing = true;
    weft__cotab_cancel_all(&l->cos);
    for (;;) {
        while (l->alive > 0)
            step(l, WEFT__NEVER);
        pthread_mutex_lock(l->post_lock);
        bool more = l->post_head != NULL;
        pthread_mutex_unlock(l->post_lock);
        if (!more)
            break;
        if (!take_posts(l))
            drop_posts(l); /* no memory for a coroutine, ever: give up on them */
    }
    free_ext(l);
    if (l->timer_pe.fd >= 0)
        close(l->timer_pe.fd);
    close(l->wake_pe.fd);
    l->be->fini(l);
    weft__timer_free(&l->timers);
    weft__cotab_free(&l->cos);
    weft__co_pool_free(l);
    pthread_mutex_destroy(l->post_lock);
    free(l->post_lock);
    weft__stack_pool_drain();
    weft__overflow_thread_fini();
    if (weft__tls_loop == l)
        weft__tls_loop = NULL;
    free(l);
}

/* ---- stepping -------------------------------------------------------------- */

/* Keeps weft_loop_fd readable exactly when a step has work: ready
 * coroutines make the eventfd readable; the next timer arms the timerfd. */
static void refresh_fd(weft_loop *l)
{
    if (l->runq_head) {
        weft_loop_wake(l);
        return;
    }
    weft__timer *t = weft__timer_peek(&l->timers);
    int64_t at = t ? t->deadline : WEFT__NEVER;
    if (at == l->timer_fd_at)
        return;
    struct itimerspec its = { 0 };
    if (at != WEFT__NEVER) {
        int64_t ns = at > 0 ? at : 1;
        its.it_value.tv_sec = (time_t)(ns / 1000000000LL);
        its.it_value.tv_nsec = (long)(ns % 1000000000LL);
    }
    if (timerfd_settime(l->timer_pe.fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
        l->timer_fd_at = at;
}

static int timeout_until(weft_loop *l, int64_t deadline)
{
    if (l->runq_head || l->stopping)
        return 0;
    weft__timer *t = weft__timer_peek(&l->timers);
    if (t && t->deadline < deadline)
        deadline = t->deadline;
    if (deadline == WEFT__NEVER)
        return -1;
    int64_t left = deadline - weft__now_ns();
    if (left <= 0)
        return 0;
    int64_t ms = (left + WEFT__NS_PER_MS - 1) / WEFT__NS_PER_MS;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

static void fire_timers(weft_loop *l)
{
    weft__timer *t = weft__timer_peek(&l->timers);
    if (!t)
        return;
    int64_t now = weft__now_ns();
    /* A loop timer that sets itself again, even for a time already past,
     * fires at the next step: the sequence number tells it apart. */
    uint64_t seq = l->timers.seq;
    while (t && t->deadline <= now && t->heap_seq < seq) {
        if (WEFT__LIKELY(!t->fire)) {
            weft__wake((weft__wait *)t, -ETIMEDOUT);
        } else {
            weft__timer_del(&l->timers, t);
            t->deadline = WEFT__NEVER;
            t->fire(t);
        }
        t = weft__timer_peek(&l->timers);
    }
}

static void step(weft_loop *l, int64_t deadline)
{
    l->in_step = true;
    /* With coroutines ready the poller can only be asked not to wait, and
     * it usually has nothing: ask every BUSY_POLL_EVERY busy steps, so a
     * yielding coroutine costs no syscall yet cannot starve I/O.  Embedded
     * (weft_loop_fd in use), every step polls, which keeps the fd true. */
    if (!l->runq_head || l->want_fd || ++l->busy_steps % BUSY_POLL_EVERY == 0)
        l->be->wait(l, timeout_until(l, deadline));
    fire_timers(l);
    weft__co_run_ready(l);
    if (l->want_fd) {
        /* What the coroutines queued for a completion backend goes to the
         * kernel now: the embedder waits on the fd, not in a step. */
        if (l->be->flush)
            l->be->flush(l);
        refresh_fd(l);
    }
    l->in_step = false;
}

static int check_caller(weft_loop *l)
{
    if (!l || l != weft__tls_loop)
        return -EINVAL;
    if (l->current || l->in_step)
        return -EBUSY;
    return 0;
}

int weft_loop_poll(weft_loop *l, int64_t timeout_ms)
{
    int rc = check_caller(l);
    if (rc < 0)
        return rc;
    step(l, weft__deadline(timeout_ms));
    return (int)(l->alive > INT_MAX ? INT_MAX : l->alive);
}

int weft_loop_run(weft_loop *l, int64_t timeout_ms)
{
    int rc = check_caller(l);
    if (rc < 0)
        return rc;
    int64_t deadline = weft__deadline(timeout_ms);
    l->stopping = false;
    l->running = true;
    rc = 0;
    /* At least one step, even with timeout 0: "0 only tries". */
    while (l->alive > 0) {
        step(l, deadline);
        if (l->alive == 0)
            break;
        if (l->stopping) {
            rc = (int)(l->alive > INT_MAX ? INT_MAX : l->alive);
            break;
        }
        if (deadline != WEFT__NEVER && weft__now_ns() >= deadline) {
            rc = -ETIMEDOUT;
            break;
        }
    }
    l->running = l->stopping = false;
    return rc;
}

void weft_loop_stop(weft_loop *l)
{
    /* Outside a run there is nothing to stop: a flag left set would make
     * every later weft_loop_poll return without waiting. */
    if (l && l->running)
        l->stopping = true;
}

int weft_loop_fd(const weft_loop *cl)
{
    /* The timerfd is made on first use only; to callers the loop is unchanged. */
    weft_loop *l = (weft_loop *)cl;
    if (!l || l != weft__tls_loop)
        return -EINVAL;
    if (!l->want_fd) {
        int fd = l->be->fd(l); /* first: it may refuse (poll has none) */
        if (fd < 0)
            return fd;
        l->timer_pe.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (l->timer_pe.fd < 0)
            return -errno;
        l->timer_pe.on_event = on_timerfd;
        int rc = l->be->arm(l, &l->timer_pe, WEFT__EV_IN);
        if (rc < 0) {
            close(l->timer_pe.fd);
            l->timer_pe.fd = -1;
            return rc;
        }
        l->want_fd = true;
        refresh_fd(l);
    }
    return l->be->fd(l);
}

void weft__loop_run_group(weft_loop *l)
{
    /* A loop with nothing alive waits for posts until the whole group is
     * done: its coroutines may come from other loops' weft_go_on. */
    weft__group *g = l->group;
    l->running = true;
    while (l->alive > 0 || !__atomic_load_n(&g->done, __ATOMIC_ACQUIRE))
        step(l, WEFT__NEVER);
    l->running = false;
}
