/*
 * pool.c - weft_pool, co::Pool: objects a user's create() makes, kept idle
 * per loop for the next get, up to max_idle, destroyed by the user's
 * destroy() beyond that, on clear, on free and when the loop goes.
 *
 * What one loop keeps is a part: a stack of idle objects (the last put is
 * the first got, so the warmest object goes out again).  The part hangs
 * off the loop's state (weft__loop_ext), which destroys what is left when
 * the loop is freed.  Today one loop at a time keeps a pool's objects:
 * p->loop names it, set by the first put on a loop and cleared when that
 * loop is freed; calls from other threads neither see nor touch the part,
 * they create and destroy.
 *
 * create and destroy are the user's and may block or call the pool: the
 * pool's own state is settled before either runs, never after.
 */
#include "internal.h"

#include <stdlib.h>

typedef struct pool_part pool_part;
typedef struct pool_loop pool_loop;

struct pool_part {
    weft_pool *pool;
    pool_loop *home;
    void **items; /* idle objects, the newest last */
    size_t n, cap;
    pool_part *next, *prev; /* the loop's parts */
};

/* A loop's parts, one per pool it keeps objects of. */
struct pool_loop {
    pool_part *head;
};

struct weft_pool {
    void *(*create)(void *arg);
    void (*destroy)(void *obj, void *arg);
    void *arg;
    size_t max_idle; /* 0: no limit */
    weft_loop *loop; /* atomic: the loop that keeps the part; NULL: none */
    pool_part *part; /* read and written by that loop's thread only */
};

static void loop_gone(weft_loop *l, void *state);
static weft__ext_key pools_key = {"pools", loop_gone, 0};

static void destroy(weft_pool *p, void *obj)
{
    if (p->destroy)
        p->destroy(obj, p->arg);
}

static void unlink_part(pool_part *pt)
{
    if (pt->prev)
        pt->prev->next = pt->next;
    else
        pt->home->head = pt->next;
    if (pt->next)
        pt->next->prev = pt->prev;
}

/* The part this thread's loop keeps of p, or NULL (no loop, or another
 * loop keeps p's objects, or none does yet). */
static pool_part *part_here(const weft_pool *p)
{
    weft_loop *l = weft__tls_loop;
    if (!l || __atomic_load_n(&p->loop, __ATOMIC_ACQUIRE) != l)
        return NULL;
    return p->part;
}

/* The part of p this thread's loop keeps, made if no loop keeps one yet.
 * NULL: no loop here, another loop's, or no memory. */
static pool_part *part_make(weft_pool *p)
{
    weft_loop *l = weft__tls_loop;
    if (!l)
        return NULL;
    weft_loop *owner = __atomic_load_n(&p->loop, __ATOMIC_ACQUIRE);
    if (owner == l)
        return p->part;
    if (owner)
        return NULL;
    pool_loop *pl = weft__loop_ext(l, &pools_key);
    if (!pl) {
        if (!(pl = weft__sys_calloc(1, sizeof *pl)))
            return NULL;
        if (weft__loop_ext_set(l, &pools_key, pl) < 0) {
            free(pl);
            return NULL;
        }
    }
    pool_part *pt = weft__sys_calloc(1, sizeof *pt);
    if (!pt)
        return NULL;
    weft_loop *none = NULL;
    if (!__atomic_compare_exchange_n(&p->loop, &none, l, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        free(pt); /* another thread's loop took it meanwhile */
        return NULL;
    }
    pt->pool = p;
    pt->home = pl;
    pt->next = pl->head;
    if (pl->head)
        pl->head->prev = pt;
    pl->head = pt;
    p->part = pt;
    return pt;
}

/* Takes p's part away from its loop (the caller is on that loop's
 * thread) and returns its idle objects for the caller to destroy. */
static void **part_drop(weft_pool *p, size_t *n)
{
    pool_part *pt = p->part;
    void **items = pt->items;
    *n = pt->n;
    unlink_part(pt);
    free(pt);
    p->part = NULL;
    __atomic_store_n(&p->loop, NULL, __ATOMIC_RELEASE);
    return items;
}

/* The loop is being freed: destroy what its parts keep.  Its coroutines
 * have all finished, so destroy runs in the loop, outside any coroutine. */
static void loop_gone(weft_loop *l, void *state)
{
    pool_loop *pl = state;
    (void)l;
    while (pl->head) {
        weft_pool *p = pl->head->pool;
        size_t n;
        void **items = part_drop(p, &n);
        for (size_t i = 0; i < n; i++)
            destroy(p, items[i]);
        free(items);
    }
    free(pl);
}

int weft_pool_new(weft_pool **out, void *(*create)(void *arg),
                  void (*destroy_fn)(void *obj, void *arg), void *arg, size_t max_idle)
{
    if (!out)
        return -EINVAL;
    weft_pool *p = weft__sys_calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
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
    weft_loop *owner = __atomic_load_n(&p->loop, __ATOMIC_ACQUIRE);
    if (owner && owner != weft__tls_loop)
        return; /* another thread's loop keeps its objects */
    size_t n = 0;
    void **items = owner ? part_drop(p, &n) : NULL;
    void (*destroy_fn)(void *, void *) = p->destroy;
    void *arg = p->arg;
    free(p);
    if (destroy_fn)
        for (size_t i = 0; i < n; i++)
            destroy_fn(items[i], arg);
    free(items);
}
