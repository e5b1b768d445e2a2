/*
 * group.c - weft_main and its loops: N loops, one per thread, the calling
 * thread's being loop 0; spawning on another loop (weft_go_on).
 *
 * Coroutines stay on the loop that runs them: no stealing, no migration.
 * A spawn on another loop is a post to that loop's queue, its id given
 * out as it is queued (loop.c).  The group ends when no loop has a live
 * coroutine and no spawn or user's post is on its way: a count of such
 * loops, spawns and posts (busy) that reaches 0 sets done and wakes every
 * loop; a loop with nothing alive before then sleeps in its poller, where
 * a post wakes it.  From then on users' posts are refused, so that nothing
 * starts on a loop that has stopped or is being freed.
 * Loops are freed only once all have stopped, so that whatever one loop
 * posts to another on its way out still finds it.
 */
#include "internal.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define THREADS_MAX 1024

void weft__group_busy(weft__group *g, long d)
{
    if (__atomic_add_fetch(&g->busy, d, __ATOMIC_ACQ_REL) != 0)
        return;
    if (__atomic_exchange_n(&g->done, true, __ATOMIC_ACQ_REL))
        return; /* ended already: what runs now is a loop being freed */
    for (int i = 0; i < g->n; i++)
        weft_loop_wake(g->loops[i]);
}

bool weft__group_enter(weft__group *g)
{
    long b = __atomic_load_n(&g->busy, __ATOMIC_ACQUIRE);
    do {
        if (b == 0)
            return false; /* ended: nothing alive anywhere */
    } while (!__atomic_compare_exchange_n(&g->busy, &b, b + 1, true, __ATOMIC_ACQ_REL,
                                          __ATOMIC_ACQUIRE));
    return true;
}

weft_loop *weft__group_loop_of(const weft_loop *l, int64_t id)
{
    const weft__group *g = l->group;
    int64_t base = id & ~WEFT__CO_SEQ_MASK;
    for (int i = 0; g && i < g->n; i++)
        if (g->loops[i]->id_base == base)
            return g->loops[i];
    return NULL;
}

/* ---- the public calls ------------------------------------------------------ */

int weft_loop_index(void)
{
    weft_loop *l = weft__tls_loop;
    return l ? l->index : -1;
}

int weft_loop_count(void)
{
    weft_loop *l = weft__tls_loop;
    return l ? l->nloops : 0;
}

weft_loop *weft_loop_self(void)
{
    return weft__tls_loop;
}

int64_t weft_go_on(int loop, void (*fn)(void *arg), void *arg)
{
    weft_loop *l = weft__tls_loop;
    if (!l)
        return -EPERM;
    if (!fn)
        return -EINVAL;
    weft__group *g = l->group;
    if (loop == WEFT_LOOP_ANY)
        loop = g ? (int)(__atomic_fetch_add(&g->next, 1, __ATOMIC_RELAXED) % (unsigned)g->n) : 0;
    else if (loop < 0 || loop >= l->nloops)
        return -EINVAL;
    if (loop == l->index)
        return weft_go(fn, arg);
    /* On its way, the spawn keeps the group from ending. */
    weft__group_busy(g, 1);
    int64_t id = weft__loop_post_remote(g->loops[loop], fn, arg);
    if (id < 0)
        weft__group_busy(g, -1);
    return id;
}

/* ---- weft_main --------------------------------------------------------------- */

/* How many loops: the config's, else $WEFT_THREADS, else 1. */
static int threads_wanted(const weft_config *cfg)
{
    int n = cfg ? cfg->threads : 0;
    if (n < 0 || n > THREADS_MAX)
        return -EINVAL;
    if (n > 0)
        return n;
    const char *env = getenv("WEFT_THREADS");
    if (!env || !*env)
        return 1;
    char *end;
    long v = strtol(env, &end, 10);
    if (*end || v < 1 || v > THREADS_MAX)
        return -EINVAL;
    return (int)v;
}

enum { START_WAIT, START_RUN, START_ABORT };

typedef struct starter {
    weft__group g;
    const weft_config *cfg;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int made;      /* threads that have made their loop, or failed to */
    int failed;    /* the first error, 0 if none */
    int start;     /* START_*: what the threads do next */
    int stopped;   /* loops that have stopped running */
    bool freeing;  /* every loop has stopped: each frees its own */
} starter;

static void join_group(starter *st, weft_loop *l, int index)
{
    l->group = &st->g;
    l->index = index;
    l->nloops = st->g.n;
    st->g.loops[index] = l;
}

/* Every loop stops running before any is freed: a loop on its way out
 * may still post to another (a join's answer, say). */
static void stop_and_wait(starter *st)
{
    pthread_mutex_lock(&st->lock);
    if (++st->stopped == st->g.n) {
        st->freeing = true;
        pthread_cond_broadcast(&st->cond);
    }
    while (!st->freeing)
        pthread_cond_wait(&st->cond, &st->lock);
    pthread_mutex_unlock(&st->lock);
}

typedef struct thread_arg {
    starter *st;
    int index;
} thread_arg;

static void *loop_thread(void *arg)
{
    thread_arg *ta = arg;
    starter *st = ta->st;
    weft_loop *l;
    int rc = weft_loop_new(&l, st->cfg);
    pthread_mutex_lock(&st->lock);
    if (rc < 0 && !st->failed)
        st->failed = rc;
    if (rc == 0)
        join_group(st, l, ta->index);
    st->made++;
    pthread_cond_broadcast(&st->cond);
    while (st->start == START_WAIT)
        pthread_cond_wait(&st->cond, &st->lock);
    int start = st->start;
    pthread_mutex_unlock(&st->lock);
    if (rc < 0)
        return NULL;
    if (start == START_RUN) {
        weft__loop_run_group(l);
        stop_and_wait(st);
    }
    weft_loop_free(l);
    return NULL;
}

typedef struct main_call {
    int (*fn)(void *);
    void *arg;
    int result;
} main_call;

static void main_entry(void *arg)
{
    main_call *m = arg;
    m->result = m->fn(m->arg);
}

static int run_one(int (*fn)(void *arg), void *arg, const weft_config *cfg)
{
    weft_loop *l;
    int rc = weft_loop_new(&l, cfg);
    if (rc < 0)
        return rc;
    main_call m = { fn, arg, -ENOMEM }; /* fn never runs if its stack can't be mapped */
    int64_t id = weft_go(main_entry, &m);
    if (id < 0) {
        weft_loop_free(l);
        return (int)id;
    }
    weft_loop_run(l, -1);
    weft_loop_free(l);
    return m.result;
}

static int run_group(int n, int (*fn)(void *arg), void *arg, const weft_config *cfg)
{
    starter *st = weft__sys_calloc(1, sizeof *st);
    weft_loop **loops = weft__sys_calloc((size_t)n, sizeof *loops);
    pthread_t *tids = weft__sys_calloc((size_t)n, sizeof *tids);
    thread_arg *ta = weft__sys_calloc((size_t)n, sizeof *ta);
    int rc = -ENOMEM;
    if (!st || !loops || !tids || !ta)
        goto out;
    st->g.n = n;
    st->g.loops = loops;
    st->cfg = cfg;
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->cond, NULL);
    weft_loop *l0;
    if ((rc = weft_loop_new(&l0, cfg)) < 0)
        goto out_sync;
    join_group(st, l0, 0);
    int started = 1;
    for (; started < n; started++) {
        ta[started] = (thread_arg){st, started};
        int e = pthread_create(&tids[started], NULL, loop_thread, &ta[started]);
        if (e) {
            rc = -e;
            break;
        }
    }
    pthread_mutex_lock(&st->lock);
    while (st->made < started - 1)
        pthread_cond_wait(&st->cond, &st->lock);
    if (st->failed)
        rc = st->failed;
    main_call m = { fn, arg, -ENOMEM };
    if (started == n && !st->failed) {
        int64_t id = weft_go(main_entry, &m); /* loop 0 busy from here on */
        rc = id < 0 ? (int)id : 0;
    }
    st->start = rc == 0 ? START_RUN : START_ABORT;
    pthread_cond_broadcast(&st->cond);
    pthread_mutex_unlock(&st->lock);
    if (rc == 0) {
        weft__loop_run_group(l0);
        stop_and_wait(st);
    }
    weft_loop_free(l0);
    for (int i = 1; i < started; i++)
        pthread_join(tids[i], NULL);
    if (rc == 0)
        rc = m.result;
out_sync:
    pthread_cond_destroy(&st->cond);
    pthread_mutex_destroy(&st->lock);
out:
    free(ta);
    free(tids);
    free(loops);
    free(st);
    return rc;
}

int weft_main(int (*fn)(void *arg), void *arg, const weft_config *cfg)
{
    if (!fn)
        return -EINVAL;
    int n = threads_wanted(cfg);
    if (n < 0)
        return n;
    if (n == 1)
        return run_one(fn, arg, cfg);
    if (weft__tls_loop)
        return -EBUSY;
    return run_group(n, fn, arg, cfg);
}
