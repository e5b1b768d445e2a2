/*
 * timer.c - the loop's timer heap: a binary min-heap of timers ordered by
 * deadline, then by insertion order so equal deadlines fire first-in first-
 * out.  Each timer remembers its slot, so removing one that was woken by
 * I/O first costs O(log n) and no search.
 *
 * Most timers are a parked coroutine's (the weft__timer inside its
 * weft__wait); the rest are loop timers that layers above keep for work no
 * coroutine waits for (c-ares's retries, say), with a function to run.
 */
#include "internal.h"

/* The heap keeps each timer's key beside its pointer: the timers live on
 * parked coroutines' stacks, far apart, and a sift that read them would
 * miss the cache at every level. */
static bool before(const weft__heap_ent *a, const weft__heap_ent *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void put(weft__timers *t, size_t i, weft__heap_ent e)
{
    t->heap[i] = e;
    e.t->heap_idx = i;
}

static void sift_up(weft__timers *t, size_t i)
{
    weft__heap_ent e = t->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&e, &t->heap[parent]))
            break;
        put(t, i, t->heap[parent]);
        i = parent;
    }
    put(t, i, e);
}

static void sift_down(weft__timers *t, size_t i)
{
    weft__heap_ent e = t->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= t->len)
            break;
        if (c + 1 < t->len && before(&t->heap[c + 1], &t->heap[c]))
            c++;
        if (!before(&t->heap[c], &e))
            break;
        put(t, i, t->heap[c]);
        i = c;
    }
    put(t, i, e);
}

int weft__timer_add(weft__timers *t, weft__timer *w)
{
    if (t->len == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        weft__heap_ent *h = weft__sys_realloc(t->heap, cap * sizeof *h);
        if (!h)
            return -ENOMEM;
        t->heap = h;
        t->cap = cap;
    }
    w->heap_seq = t->seq++;
    t->heap[t->len] = (weft__heap_ent){ w->deadline, w->heap_seq, w };
    w->heap_idx = t->len++;
    sift_up(t, w->heap_idx);
    return 0;
}

void weft__timer_del(weft__timers *t, weft__timer *w)
{
    size_t i = w->heap_idx;
    w->heap_idx = SIZE_MAX;
    weft__heap_ent last = t->heap[--t->len];
    if (i == t->len)
        return;
    put(t, i, last);
    if (i > 0 && before(&last, &t->heap[(i - 1) / 2]))
        sift_up(t, i);
    else
        sift_down(t, i);
}

weft__timer *weft__timer_peek(const weft__timers *t)
{
    return t->len ? t->heap[0].t : NULL;
}

void weft__timer_free(weft__timers *t)
{
    free(t->heap);
    t->heap = NULL;
    t->len = t->cap = 0;
}

/* ---- loop timers ---------------------------------------------------------- */

void weft__timer_init(weft__timer *t, void (*fire)(weft__timer *t))
{
    t->deadline = WEFT__NEVER;
    t->heap_idx = SIZE_MAX;
    t->heap_seq = 0;
    t->fire = fire;
}

int weft__timer_set(weft_loop *l, weft__timer *t, int64_t deadline)
{
    if (t->heap_idx != SIZE_MAX) {
        if (t->deadline == deadline)
            return 0;
        weft__timer_del(&l->timers, t);
    }
    t->deadline = deadline;
    if (deadline == WEFT__NEVER)
        return 0;
    int rc = weft__timer_add(&l->timers, t);
    if (rc < 0)
        t->deadline = WEFT__NEVER;
    return rc;
}

void weft__timer_stop(weft_loop *l, weft__timer *t)
{
    if (t->heap_idx != SIZE_MAX)
        weft__timer_del(&l->timers, t);
    t->deadline = WEFT__NEVER;
}
