/*
 * sock_rx.c - a TCP socket's read-ahead on a loop with provided buffers.
 *
 * On io_uring a receive submitted per call costs a submission and, when
 * nothing is there yet, a poll the kernel arms and tears down each time.
 * A multishot receive stays armed instead: each time data arrives the
 * kernel moves it into a buffer of the loop's pool and posts a completion,
 * which queues the buffer on the socket and wakes its reader.  A receive
 * then copies from the queue.
 *
 * Because bytes reach the caller's buffer only as its call returns, the
 * guarantees are epoll's: a waiting call's buffer is never written behind
 * its back, and a call that times out or is cancelled simply leaves.
 *
 * Nothing else may read the descriptor while the read-ahead is armed (the
 * bytes would come out of order): whatever does (a call outside a
 * coroutine, TLS, the connection pool's check) stops it first and takes
 * the queue before the descriptor.  A queue that grows past RX_MAX (a
 * reader slower than its peer) stops it too, so TCP's own flow control
 * holds the peer back again, and the pool is not one socket's.
 */
#include "sock.h"

#include <stddef.h>
#include <string.h>

#define RX_MAX (64 * 1024)
/* A receive this big goes straight into the caller's buffer (one receive
 * of its own): the read-ahead would cut it into the pool's small buffers
 * and copy each. */
#define RX_DIRECT (16 * 1024)

static inline bool has_queue(const weft__sock_rx *x)
{
    return x->head >= 0 || x->end != 0 || x->spill_len;
}

/* Keeps WEFT__RING_RX true while the read-ahead is armed or holds
 * anything, so the receive wrappers come here. */
static void note_state(weft__sock *s)
{
    weft__sock_rx *x = s->rx;
    if (x->armed || has_queue(x))
        s->rring |= WEFT__RING_RX;
    else
        s->rring &= (unsigned char)~WEFT__RING_RX;
}

/* A completion of the multishot receive, inside the backend's wait. */
static void on_more(weft__bop *op, int res, int buf, bool done)
{
    weft__sock_rx *x = (weft__sock_rx *)((char *)op - offsetof(weft__sock_rx, op));
    weft__sock *s = x->s;
    weft_loop *l = x->loop;
    bool gone = s->closing || x->orphan;
    if (x->orphan && res > 0 && (!x->end || x->end == 1))
        x->end = -EIO; /* bytes taken from the stream, and nowhere to go */
    if (buf >= 0 && (res <= 0 || gone)) {
        l->be->pbuf_put(l, (unsigned)buf); /* nothing in it for anyone */
        buf = -1;
    }
    if (buf >= 0) {
        weft__pbufs *p = l->be->pbufs(l);
        p->next[buf] = -1;
        if (x->tail >= 0)
            p->next[x->tail] = buf;
        else
            x->head = buf;
        x->tail = buf;
        x->queued += (uint32_t)res;
    } else if (res == 0) {
        x->end = 1;
    } else if (res < 0 && res != -ENOBUFS && res != -ECANCELED && !x->end) {
        /* -ENOBUFS: the pool ran dry, nothing was lost; the next receive
         * arms again or reads by itself. */
        x->end = res;
    }
    if (done) {
        x->armed = false;
        x->stopping = false;
        if (x->orphan) {
            x->orphan = false;
            x->loop = NULL;
            note_state(s);
        }
    } else if (x->queued >= RX_MAX && !x->stopping) {
        x->stopping = true;
        l->be->stop(l, op);
    }
    if (!gone) {
        note_state(s);
        /* As the poller would have said: the bytes are no longer in the
         * descriptor for it to see (an idle connection's watch, say). */
        s->pe.on_event(&s->pe, WEFT__EV_IN);
    }
    if (done)
        weft__sock_unref(s); /* the ring's reference: may free s */
}

/* Puts the read-ahead in the ring.  False when the loop cannot (no pool,
 * the pool mostly out, no memory, no room): the caller receives itself. */
static bool arm(weft__sock *s)
{
    weft_loop *l = s->loop;
    if (!l || !l->be->pbufs || (s->rx && s->rx->orphan))
        return false;
    weft__pbufs *p = l->be->pbufs(l);
    if (!p || p->out > p->count - p->count / 8)
        return false; /* it would end at once with -ENOBUFS */
    weft__sock_rx *x = s->rx;
    if (!x) {
        x = weft__sys_calloc(1, sizeof *x);
        if (!x)
            return false;
        x->s = s;
        x->head = x->tail = -1;
        s->rx = x;
    }
    if (x->loop && x->loop != l)
        return false; /* its queue is another loop's pool's */
    x->loop = l;
    x->op = (weft__bop){ .kind = WEFT__BOP_RECV_MULTI, .fd = s->pe.fd, .on_more = on_more };
    if (l->be->submit(l, &x->op) < 0)
        return false;
    x->armed = true;
    s->refs++;
    note_state(s);
    return true;
}

/* Copies queued bytes into iov; gives back the buffers emptied.  The end
 * of the stream or the error after the queue when nothing is queued. */
static ssize_t take(weft__sock *s, const struct iovec *iov, int iovcnt)
{
    weft__sock_rx *x = s->rx;
    weft_loop *l = x->loop;
    size_t got = 0, at = 0;
    int i = 0;
    while (x->spill_len && i < iovcnt) {
        size_t k = x->spill_len - x->spill_off;
        if (k > iov[i].iov_len - at)
            k = iov[i].iov_len - at;
        memcpy((char *)iov[i].iov_base + at, x->spill + x->spill_off, k);
        got += k;
        at += k;
        x->spill_off += k;
        if (x->spill_off == x->spill_len) {
            free(x->spill);
            x->spill = NULL;
            x->spill_len = x->spill_off = 0;
        }
        if (at == iov[i].iov_len) {
            i++;
            at = 0;
        }
    }
    while (x->head >= 0 && i < iovcnt) {
        weft__pbufs *p = l->be->pbufs(l);
        int32_t b = x->head;
        size_t k = p->len[b] - x->off;
        if (k > iov[i].iov_len - at)
            k = iov[i].iov_len - at;
        memcpy((char *)iov[i].iov_base + at, p->base + (size_t)b * p->size + x->off, k);
        got += k;
        at += k;
        x->off += (uint32_t)k;
        x->queued -= (uint32_t)k;
        if (x->off == p->len[b]) {
            x->head = p->next[b];
            if (x->head < 0)
                x->tail = -1;
            x->off = 0;
            l->be->pbuf_put(l, (unsigned)b);
        }
        if (at == iov[i].iov_len) {
            i++;
            at = 0;
        }
    }
    if (got == 0 && x->head < 0 && x->end) {
        int e = x->end;
        x->end = 1; /* an error is told once; then the stream has ended */
        note_state(s);
        return e == 1 ? 0 : e;
    }
    note_state(s);
    return (ssize_t)got;
}

void weft__sock_rx_halt(weft__sock *s)
{
    weft__sock_rx *x = s->rx;
    if (x && x->orphan)
        return; /* its loop is gone; so is anything it could stop */
    /* The cancel runs at once, and so does the receive's last completion;
     * a few rounds in case the kernel was mid-way through posting. */
    for (int i = 0; x && x->armed && i < 100; i++)
        x->loop->be->cancel(x->loop, &x->op);
}

ssize_t weft__sock_rx_take(weft__sock *s, void *buf, size_t n)
{
    weft__sock_rx_halt(s);
    if (!s->rx || !has_queue(s->rx))
        return -EAGAIN;
    struct iovec v = { buf, n };
    return take(s, &v, 1);
}

void weft__sock_rx_detach(weft__sock *s)
{
    weft__sock_rx *x = s->rx;
    if (!x || !x->loop)
        return;
    weft__sock_rx_halt(s);
    if (x->head >= 0) {
        size_t n = x->spill_len - x->spill_off + x->queued;
        char *m = weft__sys_malloc(n);
        if (m) {
            struct iovec v = { m, n };
            size_t old = x->spill_len - x->spill_off;
            if (old)
                memcpy(m, x->spill + x->spill_off, old);
            free(x->spill);
            x->spill = NULL;
            x->spill_len = x->spill_off = 0;
            v.iov_base = m + old;
            v.iov_len = n - old;
            int end = x->end;
            x->end = 0;
            take(s, &v, 1);
            x->end = end;
            x->spill = m;
            x->spill_len = n;
        } else if (!x->end || x->end == 1) {
            x->end = -ENOMEM; /* bytes lost: the stream is broken */
        }
    }
    weft__sock_rx_drop(s);
    if (x->armed) {
        /* Still in the ring after every cancel: the loop's end cancels
         * what its ring holds, and the last completion lets go of the
         * loop (on_more). */
        x->orphan = true;
    } else {
        x->loop = NULL;
    }
    if (has_queue(x))
        s->rring |= WEFT__RING_RX;
}

void weft__sock_rx_drop(weft__sock *s)
{
    weft__sock_rx *x = s->rx;
    if (!x || !x->loop || x->orphan)
        return;
    weft_loop *l = x->loop;
    if (x->armed)
        l->be->cancel(l, &x->op); /* before the descriptor goes */
    while (x->head >= 0) {
        int32_t b = x->head;
        x->head = l->be->pbufs(l)->next[b];
        l->be->pbuf_put(l, (unsigned)b);
    }
    x->tail = -1;
    x->off = x->queued = 0;
    s->rring &= (unsigned char)~WEFT__RING_RX;
}

ssize_t weft__sock_rx_read(weft__sock *s, const struct iovec *iov, int iovcnt, int flags)
{
    bool seen = false; /* the fault seam sees one receive per call, as the
                        * syscall's (the -EAGAIN returns leave it to those) */
    for (;;) {
        weft__sock_rx *x = s->rx;
        if (x && has_queue(x)) {
            if (!seen && weft__sys_fail(WEFT_FAULT_RECV))
                return -errno;
            return take(s, iov, iovcnt);
        }
        bool call = s->rring & WEFT__RING_CALL;
        int64_t deadline = s->rdeadline;
        size_t want = 0;
        for (int i = 0; i < iovcnt && want < RX_DIRECT; i++)
            want += iov[i].iov_len;
        if (!call || want >= RX_DIRECT ||
            weft__passed(deadline)) {
            /* A call that cannot park, has no time left or reads a lot
             * reads the descriptor itself: what the read-ahead took, and
             * will take until it has stopped, comes first. */
            weft__sock_rx_halt(s);
            if (x && has_queue(x))
                continue;
            return -EAGAIN;
        }
        if (!x || !x->armed || x->orphan) {
            if ((flags & ~MSG_DONTWAIT) || !(s->flags & WEFT__SOCK_DRAINS) || !arm(s))
                return -EAGAIN;
        }
        int rc = weft__sock_await(s, &seen, WEFT_FAULT_RECV, deadline);
        if (rc < 0)
            return rc;
    }
}
