/*
 * pool.c - weft_pool, co::Pool: objects a user's create() makes, kept idle
 * per loop for the next get, up to max_idle, destroyed by the user's
 * destroy() beyond that, on clear, on free and when the loop goes.
 *
 * What one loop keeps is a part: a stack of idle objects (the last put is
 * the first got, so the warmest object goes out again).  The part hangs
 * off the loop's state (weft__loop_ext), found in the loop's list, never
 * through the pool, so a get or a put touches nothing another thread
 * writes; the loop's free hook destroys what is left.  The loops that may
 * keep parts are the pool's domain: the first loop that kept its objects,
 * or, if that loop is one of weft_main's several, every loop of its group.
 * Other loops neither see nor touch a part: they create and destroy.  The
 * pool's lock guards only its set of parts and the domain, let go once
 * the last part has gone.  weft_pool_free destroys the caller's part and
 * asks the group's other loops to destroy theirs at their next step; the
 * pool's memory goes with the last part (refs: the user's, one per part).
 *
 * create and destroy are the user's and may block or call the pool: the
 * pool's own state is settled before either runs, never after.
 */
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct pool_part pool_part;
typedef struct pool_loop pool_loop;

struct pool_part {
    weft_pool *pool;
    weft_loop *loop;
    pool_loop *home;
    void **items; /* idle objects, the newest last */
    size_t n, cap;
    pool_part *next, *prev;   /* the loop's parts */
    pool_part *pnext, *pprev; /* the pool's parts (under its lock) */
    weft__post free_post;     /* weft_pool_free from another loop */
};

/* A loop's parts, one per pool it keeps objects of. */
struct pool_loop {
    pool_part *head;
};

struct weft_pool {
    void *(*create)(void *arg);
    void (*destroy)(void *obj, void *arg);
    void *arg;
    size_t max_idle;      /* 0: no limit */
    pthread_mutex_t lock; /* what follows */
    weft_loop *home;      /* the domain: a loop alone, */
    weft__group *group;   /* or a group's loops; both NULL: none yet */
    pool_part *parts;
    unsigned refs; /* the user's, and one per part */
    bool freed;
};

static void loop_gone(weft_loop *l, void *state);
static weft__ext_key pools_key = {"pools", loop_gone, 0};

static void destroy(weft_pool *p, void *obj)
{
    if (p->destroy)
        p->destroy(obj, p->arg);
}

/* The part this thread's loop keeps of p, or NULL; the one found goes to
 * the front of the loop's list, for the next call. */
static pool_part *part_here(const weft_pool *p)
{
    weft_loop *l = weft__tls_loop;
    pool_loop *pl = l ? weft__loop_ext(l, &pools_key) : NULL;
    pool_part *pt = pl ? pl->head : NULL;
    while (pt && pt->pool != p)
        pt = pt->next;
    if (pt && pt != pl->head) {
        pt->prev->next = pt->next;
        if (pt->next)
            pt->next->prev = pt->prev;
        pt->prev = NULL;
        pt->next = pl->head;
        pl->head->prev = pt;
        pl->head = pt;
    }
    return pt;
}

/* The part of p this thread's loop keeps, made if the loop is in p's
 * domain (or p has none yet).  NULL: no loop here, outside the domain,
 * p freed, or no memory. */
static pool_part *part_make(weft_pool *p)
{
    weft_loop *l = weft__tls_loop;
    if (!l)
        return NULL;
    pool_part *pt = part_here(p);
    if (pt)
        return pt;
    pool_loop *pl = weft__loop_ext(l, &pools_key);
    if (!pl) {
        if (!(pl = weft__sys_calloc(1, sizeof *pl)))
            return NULL;
        if (weft__loop_ext_set(l, &pools_key, pl) < 0) {
            free(pl);
            return NULL;
        }
    }
    if (!(pt = weft__sys_calloc(1, sizeof *pt)))
        return NULL;
    /* Set before a free on another thread can see it in p's list. */
    pt->pool = p;
    pt->loop = l;
    pt->home = pl;
    pthread_mutex_lock(&p->lock);
    bool ours = !p->freed && ((!p->home && !p->group) || p->home == l ||
                              (p->group && l->group == p->group));
    if (!ours) {
        pthread_mutex_unlock(&p->lock);
        free(pt);
        return NULL;
    }
    if (l->nloops > 1)
        p->group = l->group;
    else
        p->home = l;
    pt->pnext = p->parts;
    if (p->parts)
        p->parts->pprev = pt;
    p->parts = pt;
    p->refs++;
    pthread_mutex_unlock(&p->lock);
    pt->next = pl->head;
    if (pl->head)
        pl->head->prev = pt;
    pl->head = pt;
    return pt;
}

static void pool_destroy(weft_pool *p)
{
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* Drops a reference (the caller holds the lock, which this lets go of);
 * the last frees p. */
static void unref_locked(weft_pool *p)
{
    bool last = --p->refs == 0;
    pthread_mutex_unlock(&p->lock);
    if (last)
        pool_destroy(p);
}

/* Frees pt (the caller is on its loop's thread) after destroying its
 * idle objects, and with the last part and the user's reference gone,
 * the pool.  destroy runs after the pool's state is settled. */
static void part_drop(pool_part *pt)
{
    weft_pool *p = pt->pool;
    void (*destroy_fn)(void *, void *) = p->destroy;
    void *arg = p->arg;
    void **items = pt->items;
    size_t n = pt->n;
    if (pt->prev)
        pt->prev->next = pt->next;
    else
        pt->home->head = pt->next;
    if (pt->next)
        pt->next->prev = pt->prev;
    pthread_mutex_lock(&p->lock);
    if (pt->pprev)
        pt->pprev->pnext = pt->pnext;
    else
        p->parts = pt->pnext;
    if (pt->pnext)
        pt->pnext->pprev = pt->pprev;
    if (!p->parts)
        p->home = NULL, p->group = NULL; /* the next loop to use it may take it */
    free(pt);
    unref_locked(p);
    if (destroy_fn)
        for (size_t i = 0; i < n; i++)
            destroy_fn(items[i], arg);
    free(items);
}

/* The loop is being freed: destroy what its parts keep.  Its coroutines
 * have all finished, so destroy runs in the loop, outside any coroutine. */
static void loop_gone(weft_loop *l, void *state)
{
    pool_loop *pl = state;
    (void)l;
    while (pl->head)
        part_drop(pl->head);
    free(pl);
}

/* A free from another loop, on pt's. */
static void free_call(void *arg)
{
    pool_part *pt = arg;
    weft__group *g = pt->loop->group;
    part_drop(pt);
    weft__group_busy(g, -1);
}

int weft_pool_new(weft_pool **out, void *(*create)(void *arg),
                  void (*destroy_fn)(void *obj, void *arg), void *arg, size_t max_idle)
{
    if (!out)
        return -EINVAL;
    weft_pool *p = weft__sys_calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    p->refs = 1;
    p->create = create;
    p->destroy = destroy_fn;
    p->arg = arg;
    p->max_idle = max_idle;
    *out = p;
    return 0;
}

void *weft_pool_get(weft_pool *p)
{
    if (!p)
        return NULL;
    pool_part *pt = part_here(p);
    if (pt && pt->n > 0)
        return pt->items[--pt->n];
    return p->create ? p->create(p->arg) : NULL;
}

void weft_pool_put(weft_pool *p, void *obj)
{
    if (!p || !obj)
        return;
    pool_part *pt = part_make(p);
    if (!pt || (p->max_idle && pt->n >= p->max_idle)) {
        destroy(p, obj);
        return;
    }
    if (pt->n == pt->cap) {
        size_t cap = pt->cap ? pt->cap * 2 : 8;
        if (p->max_idle && cap > p->max_idle)
            cap = p->max_idle;
        void **items = weft__sys_realloc(pt->items, cap * sizeof *items);
        if (!items) {
            destroy(p, obj);
            return;
        }
        pt->items = items;
        pt->cap = cap;
    }
    pt->items[pt->n++] = obj;
}

size_t weft_pool_size(const weft_pool *p)
{
    const pool_part *pt = p ? part_here(p) : NULL;
    return pt ? pt->n : 0;
}

void weft_pool_clear(weft_pool *p)
{
    pool_part *pt = p ? part_here(p) : NULL;
    if (!pt)
        return;
    /* Emptied before any destroy runs: one that blocks lets other
     * coroutines get and put meanwhile. */
    void **items = pt->items;
    size_t n = pt->n;
    pt->items = NULL;
    pt->n = pt->cap = 0;
    for (size_t i = 0; i < n; i++)
        destroy(p, items[i]);
    free(items);
}

void weft_pool_free(weft_pool *p)
{
    if (!p)
        return;
    weft_loop *l = weft__tls_loop;
    pthread_mutex_lock(&p->lock);
    if (p->home && p->home != l) {
        pthread_mutex_unlock(&p->lock);
        return; /* a loop alone on another thread keeps its objects */
    }
    p->freed = true;
    pool_part *here = NULL;
    for (pool_part *pt = p->parts; pt; pt = pt->pnext) {
        if (pt->loop == l) {
            here = pt;
            continue;
        }
        /* Another loop of the group, at its next step.  Until the call
         * has run it keeps the group going, so the loop is still there to
         * run it; a group that has ended already is freeing its loops,
         * and each loop's free hook destroys its part. */
        if (weft__group_enter(p->group))
            weft__loop_call_with(pt->loop, &pt->free_post, free_call, pt);
    }
    if (!here) {
        unref_locked(p); /* the user's reference */
        return;
    }
    p->refs--; /* here's reference keeps p until it is dropped */
    pthread_mutex_unlock(&p->lock);
    part_drop(here);
}
