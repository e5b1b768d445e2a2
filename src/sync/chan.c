/*
 * chan.c - channels: values of a fixed size passed between coroutines,
 * unbuffered (a send and a receive meet) or through a ring of cap values.
 *
 * A value goes straight from a sender to a receiver that is already
 * waiting, into the receiver's own variable; only when nobody waits does
 * it go through the ring.  So receivers wait only while the ring is empty
 * and senders only while it is full, and a receive that takes from a full
 * ring moves the first waiting sender's value in behind, keeping the order
 * the values were sent in.  Close is Go's without the panics: senders,
 * waiting or not, get -EPIPE; receivers drain the ring first.
 */
#include "sync.h"

#include <stdint.h>

/* Copies one value; the common sizes become a move or two. */
static inline void copy_elem(void *dst, const void *src, size_t n)
{
    switch (n) {
    case 0: return;
    case 4: memcpy(dst, src, 4); return;
    case 8: memcpy(dst, src, 8); return;
    case 16: memcpy(dst, src, 16); return;
    default: memcpy(dst, src, n); return;
    }
}

static inline void set_len(weft_chan *c, size_t len)
{
    __atomic_store_n(&c->len, len, __ATOMIC_RELAXED);
}

static inline void push(weft_chan *c, const void *elem)
{
    size_t tail = c->head + c->len;
    if (tail >= c->cap)
        tail -= c->cap;
    copy_elem(c->buf + tail * c->elem_size, elem, c->elem_size);
    set_len(c, c->len + 1);
}

static inline void pop(weft_chan *c, void *elem)
{
    if (elem)
        copy_elem(elem, c->buf + c->head * c->elem_size, c->elem_size);
    if (++c->head == c->cap)
        c->head = 0;
    set_len(c, c->len - 1);
}

int weft_chan_new(weft_chan **out, size_t elem_size, size_t capacity)
{
    if (!out)
        return -EINVAL;
    if (capacity > SIZE_MAX / 2 ||
        (elem_size && capacity > (SIZE_MAX / 2 - sizeof(weft_chan)) / elem_size))
        return -EINVAL;
    weft_chan *c = weft__sys_malloc(sizeof *c + elem_size * capacity);
    if (!c)
        return -ENOMEM;
    *c = (weft_chan){.home = weft__sync_home_new(), .elem_size = elem_size, .cap = capacity};
    *out = c;
    return 0;
}

static inline __attribute__((always_inline)) int try_send(weft_chan *c, const void *elem)
{
    if (WEFT__UNLIKELY(c->closed))
        return -EPIPE;
    weft__sync_entry *r = weft__sync_first(&c->recvq);
    if (r) {
        if (r->elem)
            copy_elem(r->elem, elem, c->elem_size);
        weft__sync_complete(r, 0);
        return 0;
    }
    if (c->len < c->cap) {
        push(c, elem);
        return 0;
    }
    return -EAGAIN;
}

static inline __attribute__((always_inline)) int try_recv(weft_chan *c, void *elem)
{
    if (c->len) {
        pop(c, elem);
        weft__sync_entry *s = weft__sync_first(&c->sendq);
        if (s) {
            push(c, s->elem);
            weft__sync_complete(s, 0);
        }
        return 0;
    }
    weft__sync_entry *s = weft__sync_first(&c->sendq);
    if (s) {
        if (elem)
            copy_elem(elem, s->elem, c->elem_size);
        weft__sync_complete(s, 0);
        return 0;
    }
    return c->closed ? -EPIPE : -EAGAIN;
}

int weft__chan_try_send(weft_chan *c, const void *elem)
{
    return try_send(c, elem);
}

int weft__chan_try_recv(weft_chan *c, void *elem)
{
    return try_recv(c, elem);
}

bool weft__chan_ready(weft_chan *c, int op)
{
    if (op == WEFT_CHAN_SEND)
        return c->closed || weft__sync_first(&c->recvq) || c->len < c->cap;
    return c->len || weft__sync_first(&c->sendq) || c->closed;
}

/* Waits on q until a counterpart completes the operation.  Inline, so
 * that the public call is the frame that parks (sync.h, weft__sync_block). */
static inline __attribute__((always_inline)) int chan_wait(weft__sync_queue *q, void *elem,
                                                           int64_t timeout_ms)
{
    weft__sync_entry e;
    weft__sync_waiter w;
    weft__sync_waiter_init(&w, &e, 1);
    e.elem = elem;
    weft__sync_link(q, &e);
    int rc = weft__sync_block(&w, weft__sync_deadline(&w, timeout_ms));
    if (w.done)
        return w.result;
    weft__sync_leave(&w);
    return rc;
}

int weft_chan_send(weft_chan *c, const void *elem, int64_t timeout_ms)
{
    if (WEFT__UNLIKELY(!c || (!elem && c->elem_size)))
        return -EINVAL;
    int rc = weft__sync_enter(&c->home);
    if (WEFT__UNLIKELY(rc < 0))
        return rc;
    rc = try_send(c, elem);
    if (rc != -EAGAIN)
        return rc;
    return chan_wait(&c->sendq, (void *)elem, timeout_ms);
}

int weft_chan_recv(weft_chan *c, void *elem, int64_t timeout_ms)
{
    if (WEFT__UNLIKELY(!c))
        return -EINVAL;
    int rc = weft__sync_enter(&c->home);
    if (WEFT__UNLIKELY(rc < 0))
        return rc;
    rc = try_recv(c, elem);
    if (rc != -EAGAIN)
        return rc;
    return chan_wait(&c->recvq, elem, timeout_ms);
}

/* Sends every waiter of q away with -EPIPE. */
static void close_queue(weft__sync_queue *q)
{
    weft__sync_entry *e;
    while ((e = weft__sync_first(q)))
        weft__sync_complete(e, -EPIPE);
}

int weft_chan_close(weft_chan *c)
{
    if (!c)
        return -EINVAL;
    int rc = weft__sync_enter(&c->home);
    if (rc < 0)
        return rc;
    if (c->closed)
        return -EPIPE;
    c->closed = true;
    close_queue(&c->recvq); /* waiting only if the ring is empty: nothing to drain */
    close_queue(&c->sendq);
    return 0;
}

size_t weft_chan_len(const weft_chan *c)
{
    return c ? __atomic_load_n(&c->len, __ATOMIC_RELAXED) : 0;
}

int weft_chan_free(weft_chan *c)
{
    if (!c)
        return 0;
    bool idle = weft__sync_idle(&c->sendq);
    if (!weft__sync_idle(&c->recvq) || !idle)
        return -EBUSY;
    free(c);
    return 0;
}
