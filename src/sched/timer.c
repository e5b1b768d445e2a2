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

static bool before(const weft__timer *a, const weft__timer *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->heap_seq < b->heap_seq);
}

static void put(weft__timers *t, size_t i, weft__timer *w)
{
    t->heap[i] = w;
    w->heap_idx = i;
}

static void sift_up(weft__timers *t, size_t i)
{
    weft__timer *w = t->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(w, t->heap[parent]))
            break;
        put(t, i, t->heap[parent]);
        i = parent;
    }
    put(t, i, w);
}

static void sift_down(weft__timers *t, size_t i)
{
    weft__timer *w = t->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= t->len)
            break;
        if (c + 1 < t->len && before(t->heap[c + 1], t->heap[c]))
            c++;
        if (!before(t->heap[c], w))
            break;
        put(t, i, t->heap[c]);
        i = c;
    }
    put(t, i, w);
}

int weft__timer_add(weft__timers *t, weft__timer *w)
{
    if (t->len == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        weft__timer **h = weft__sys_realloc(t->heap, cap * sizeof *h);
        if (!h)
            return -ENOMEM;
        t->heap = h;
        t->cap = cap;
    }
    w->heap_seq = t->seq++;
    t->heap[t->len] = w;
    w->heap_idx = t->len++;
    sift_up(t, w->heap_idx);
    return 0;
}

void weft__timer_del(weft__timers *t, weft__timer *w)
{
    size_t i = w->heap_idx;
    w->heap_idx = SIZE_MAX;
    weft__timer *last = t->heap[--t->len];
    if (i == t->len)
        return;
    put(t, i, last);
    if (i > 0 && before(last, t->heap[(i - 1) / 2]))
        sift_up(t, i);
    else
        sift_down(t, i);
}

weft__timer *weft__timer_peek(const weft__timers *t)
{
    return t->len ? t->heap[0] : NULL;
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
