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
 *
 * A shared channel does the same under its lock (sync.h): the waiter to
 * complete is woken before anything is copied, so a wake that cannot be
 * had (-ENOMEM) leaves the value where it was, sent once or not at all.
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
    weft__sync_entry *r = weft__sync_take(&c->recvq);
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
        weft__sync_entry *s = weft__sync_take(&c->sendq);
        if (s) {
            push(c, s->elem);
            weft__sync_complete(s, 0);
        }
        return 0;
    }
    weft__sync_entry *s = weft__sync_take(&c->sendq);
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

/* The first entry of a local channel's queue that can be completed now,
 * without claiming it. */
static weft__sync_entry *first_live(weft__sync_queue *q)
{
    weft__sync_entry *e;
    while ((e = weft__sync_first(q)) && e->w->n > 1 && weft__sync_claimed(e->w))
        weft__sync_unlink(e);
    return e;
}

bool weft__chan_ready(weft_chan *c, int op)
{
    if (op == WEFT_CHAN_SEND)
        return c->closed || first_live(&c->recvq) || c->len < c->cap;
    return c->len || first_live(&c->sendq) || c->closed;
}

/* ---- shared channels, under their lock ----------------------------------- */

int weft__chan_try_send_locked(weft_chan *c, const void *elem)
{
    if (c->closed)
        return -EPIPE;
    int rc;
    weft__sync_entry *r = weft__sync_claim_first(&c->recvq, &rc);
    if (rc < 0)
        return rc;
    if (r) {
        if (r->elem)
            copy_elem(r->elem, elem, c->elem_size);
        weft__sync_finish(r, 0);
        return 0;
    }
    if (c->len < c->cap) {
        push(c, elem);
        return 0;
    }
    return -EAGAIN;
}

int weft__chan_try_recv_locked(weft_chan *c, void *elem)
{
    int rc;
    weft__sync_entry *s = weft__sync_claim_first(&c->sendq, &rc);
    if (rc < 0)
        return rc;
    if (c->len) {
        pop(c, elem);
        if (s) {
            push(c, s->elem);
            weft__sync_finish(s, 0);
        }
        return 0;
    }
    if (s) {
        if (elem)
            copy_elem(elem, s->elem, c->elem_size);
        weft__sync_finish(s, 0);
        return 0;
    }
    return c->closed ? -EPIPE : -EAGAIN;
}

bool weft__chan_ready_locked(weft_chan *c, int op)
{
    if (op == WEFT_CHAN_SEND)
        return c->closed || weft__sync_first_unclaimed(&c->recvq) || c->len < c->cap;
    return c->len || weft__sync_first_unclaimed(&c->sendq) || c->closed;
}

/* Waits on q, c's lock held, until a counterpart completes the operation;
 * returns with the lock let go, and c no longer used. */
static int chan_wait_locked(weft_chan *c, weft__sync_queue *q, void *elem, int64_t timeout_ms)
{
    weft__sync_entry e;
    weft__sync_xwaiter xw;
    weft__sync_waiter *w = &xw.w;
    weft__sync_waiter_init(w, &e, 1);
    e.elem = elem;
    weft__sync_link(q, &e);
    weft__lock *lk = &c->lock;
    int rc = weft__sync_wait_shared(w, &lk, 1, weft__sync_deadline(w, timeout_ms));
    return rc < 0 ? rc : w->result; /* c is not touched again */
}

static __attribute__((noinline)) int send_shared(weft_chan *c, const void *elem, int64_t timeout_ms)
{
    weft__lock_take(&c->lock);
    int rc = weft__chan_try_send_locked(c, elem);
    if (rc != -EAGAIN) {
        weft__lock_give(&c->lock);
        return rc;
    }
    return chan_wait_locked(c, &c->sendq, (void *)elem, timeout_ms);
}

static __attribute__((noinline)) int recv_shared(weft_chan *c, void *elem, int64_t timeout_ms)
{
    weft__lock_take(&c->lock);
    int rc = weft__chan_try_recv_locked(c, elem);
    if (rc != -EAGAIN) {
        weft__lock_give(&c->lock);
        return rc;
    }
    return chan_wait_locked(c, &c->recvq, elem, timeout_ms);
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
    if (WEFT__UNLIKELY(rc))
        return rc < 0 ? rc : send_shared(c, elem, timeout_ms);
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
    if (WEFT__UNLIKELY(rc))
        return rc < 0 ? rc : recv_shared(c, elem, timeout_ms);
    rc = try_recv(c, elem);
    if (rc != -EAGAIN)
        return rc;
    return chan_wait(&c->recvq, elem, timeout_ms);
}

/* Sends every waiter of q away with -EPIPE. */
static void close_queue(weft__sync_queue *q)
{
    weft__sync_entry *e;
    while ((e = weft__sync_take(q)))
        weft__sync_complete(e, -EPIPE);
}

/* The same under a shared channel's lock.  Returns 0, or -ENOMEM if some
 * waiter of another loop could not be woken: it is left linked. */
static int close_queue_locked(weft__sync_queue *q)
{
    int rc = 0;
    for (weft__sync_entry *e = q->head, *next; e; e = next) {
        next = e->next;
        int k = weft__sync_claim_shared(e);
        if (k > 0)
            weft__sync_finish(e, -EPIPE);
        else if (k < 0)
            rc = k;
        /* 0: a waiter that is leaving, or a select completed elsewhere */
    }
    return rc;
}

static int close_shared(weft_chan *c)
{
    weft__lock_take(&c->lock);
    /* A second close also retries the waiters a first one could not wake. */
    int was = c->closed ? -EPIPE : 0;
    c->closed = true;
    int rc = close_queue_locked(&c->recvq);
    int rc2 = close_queue_locked(&c->sendq);
    weft__lock_give(&c->lock);
    return rc < 0 ? rc : rc2 < 0 ? rc2 : was;
}

int weft_chan_close(weft_chan *c)
{
    if (!c)
        return -EINVAL;
    int rc = weft__sync_enter(&c->home);
    if (rc)
        return rc < 0 ? rc : close_shared(c);
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
    if (weft__sync_is_shared(c->home)) {
        weft__lock_take(&c->lock);
        bool busy = c->recvq.head || c->sendq.head;
        weft__lock_give(&c->lock);
        if (busy)
            return -EBUSY;
    } else {
        bool idle = weft__sync_idle(&c->sendq);
        if (!weft__sync_idle(&c->recvq) || !idle)
            return -EBUSY;
    }
    free(c);
    return 0;
}
