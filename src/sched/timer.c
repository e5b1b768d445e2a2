/*
 * timer.c - the loop's timer heap: a binary min-heap of waiters ordered by
 * deadline, then by insertion order so equal deadlines fire first-in first-
 * out.  Each waiter remembers its slot, so removing one that was woken by
 * I/O first costs O(log n) and no search.
 */
#include "internal.h"

static bool before(const weft__wait *a, const weft__wait *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->heap_seq < b->heap_seq);
}

static void put(weft__timers *t, size_t i, weft__wait *w)
{
    t->heap[i] = w;
    w->heap_idx = i;
}

static void sift_up(weft__timers *t, size_t i)
{
    weft__wait *w = t->heap[i];
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
    weft__wait *w = t->heap[i];
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

int weft__timer_add(weft__timers *t, weft__wait *w)
{
    if (t->len == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        weft__wait **h = weft__sys_realloc(t->heap, cap * sizeof *h);
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

void weft__timer_del(weft__timers *t, weft__wait *w)
{
    size_t i = w->heap_idx;
    w->heap_idx = SIZE_MAX;
    weft__wait *last = t->heap[--t->len];
    if (i == t->len)
        return;
    put(t, i, last);
    if (i > 0 && before(last, t->heap[(i - 1) / 2]))
        sift_up(t, i);
    else
        sift_down(t, i);
}

weft__wait *weft__timer_peek(const weft__timers *t)
{
    return t->len ? t->heap[0] : NULL;
}

void weft__timer_free(weft__timers *t)
{
    free(t->heap);
    t->heap = NULL;
    t->len = t->cap = 0;
}
