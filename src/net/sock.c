/*
 * sock.c - the socket core: one weft__sock per descriptor, the retry loop
 * every operation shares, waiting for readiness, and close.
 *
 * Every operation has the same shape (weft__sock_io): try the syscall; on
 * EINTR try again; on EAGAIN remember the direction is not ready and wait
 * for the poller's edge, the deadline or a cancel.  A direction (receive or
 * send) is held by one call at a time, so concurrent senders each get their
 * whole buffer out in one piece.
 *
 * Close has a state of its own.  It first kills the handle (handle.c) and
 * sends every waiter away with -EBADF, then lets the layer (TLS) close,
 * which may wait a little, then closes the descriptor.  Calls in progress
 * hold a reference, so the memory is freed only when the last of them has
 * left; from the moment close begins, every call through the handle,
 * another close included, returns -EBADF.
 */
#include "sock.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#define SEND_FLAGS (MSG_NOSIGNAL | MSG_DONTWAIT)

static void on_sock_event(weft__pollent *pe, int ev)
{
    weft__sock *s = (weft__sock *)pe;
    if (ev & WEFT__EV_HUP)
        s->rhup = true;
    if (ev & WEFT__EV_PRI) {
        /* Urgent data: receives stop short at its mark with more queued
         * behind it, so a short read no longer means drained. */
        s->flags &= ~(unsigned)WEFT__SOCK_DRAINS;
    }
    if (ev & WEFT__EV_IN) {
        s->rready = true;
        weft__wake_all(&s->rq, 0);
    }
    if (ev & WEFT__EV_OUT) {
        s->wready = true;
        weft__wake_all(&s->wq, 0);
    }
}

int weft__sock_new(weft__sock **out, int fd, unsigned flags)
{
    weft__sock *s = weft__sys_calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->pe.fd = fd;
    s->pe.on_event = on_sock_event;
    s->pe.inq = &s->rq;
    s->flags = flags;
    s->rready = s->wready = true; /* unknown: the first attempt tells */
    if (weft__sock_slot_new(s) < 0) {
        free(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

void weft__sock_discard(weft__sock *s)
{
    weft__sock_claim(s);
    weft__sock_disown(s);
    free(s);
}

unsigned weft__sock_flags_for(int family, int type, int protocol)
{
    switch (type) {
    case SOCK_STREAM: {
        bool tcp = (family == AF_INET || family == AF_INET6) &&
                   (protocol == 0 || protocol == IPPROTO_TCP
#ifdef IPPROTO_MPTCP
                    || protocol == IPPROTO_MPTCP
#endif
                   );
        return WEFT__SOCK_STREAM | (tcp ? WEFT__SOCK_DRAINS : 0);
    }
    case SOCK_DGRAM:
    case SOCK_RAW:
    case SOCK_SEQPACKET: return WEFT__SOCK_DGRAM;
    default: return 0;
    }
}

int weft__fd_poll(int fd, int events, int64_t deadline)
{
    struct pollfd p = { .fd = fd, .events = 0 };
    if (events & WEFT__EV_IN)
        p.events |= POLLIN;
    if (events & WEFT__EV_OUT)
        p.events |= POLLOUT;
    for (;;) {
        int ms = -1;
        if (deadline != WEFT__NEVER) {
            int64_t left = deadline - weft__now_ns();
            int64_t m = left <= 0 ? 0 : (left + WEFT__NS_PER_MS - 1) / WEFT__NS_PER_MS;
            ms = m > INT_MAX ? INT_MAX : (int)m;
        }
        int n = poll(&p, 1, ms);
        if (n > 0) {
            if (p.revents & POLLNVAL)
                return -EBADF;
            int ready = 0;
            if (p.revents & (POLLIN | POLLHUP | POLLERR | POLLRDHUP))
                ready |= WEFT__EV_IN;
            if (p.revents & (POLLOUT | POLLHUP | POLLERR))
                ready |= WEFT__EV_OUT;
            return ready & events ? ready & events : events;
        }
        if (n == 0 && ms == 0)
            return -ETIMEDOUT;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

/* Puts s on its loop's poller the first time one of its calls must wait. */
static int arm(weft__sock *s, weft_loop *l)
{
    if (WEFT__UNLIKELY(s->loop != l))
        return -EXDEV; /* another loop's: weft__sock_enter keeps users out */
    int rc = l->be->arm(l, &s->pe, WEFT__EV_IN | WEFT__EV_OUT);
    if (rc == 0)
        s->armed = true;
    return rc;
}

static int wait_ready(weft__sock *s, int dir, int64_t deadline)
{
    weft_loop *l = weft__tls_loop;
    if (!l || !l->current) {
        int rc = weft__fd_poll(s->pe.fd, dir, deadline);
        if (rc < 0)
            return rc;
        if (rc & WEFT__EV_IN)
            s->rready = true;
        if (rc & WEFT__EV_OUT)
            s->wready = true;
        return 0;
    }
    int rc;
    if (!s->armed && (rc = arm(s, l)) < 0)
        return rc;
    if (l->be->want)
        l->be->want(l, &s->pe, dir);
    weft__wait w, twin;
    if (dir == (WEFT__EV_IN | WEFT__EV_OUT))
        return weft__park2(&w, &s->rq, &twin, &s->wq, deadline);
    return weft__park(&w, dir == WEFT__EV_IN ? &s->rq : &s->wq, deadline);
}

int weft__sock_wait(weft__sock *s, int dir, int64_t deadline)
{
    if (s->closing)
        return -EBADF;
    int rc = wait_ready(s, dir, deadline);
    /* Woken for readiness just before a close: the descriptor is gone. */
    return s->closing ? -EBADF : rc;
}

int weft__sock_wait_closing(weft__sock *s, int dir, int64_t deadline)
{
    return wait_ready(s, dir, deadline);
}

int weft__sock_wait_held(weft__sock *s, int dir, int64_t deadline, bool *gone)
{
    s->refs++;
    int rc = weft__sock_wait(s, dir, deadline);
    bool closing = s->closing;
    weft__sock_unref(s);
    if (closing) {
        if (gone)
            *gone = true;
        return -EBADF;
    }
    return rc;
}

/* Takes dir of s for one call; waits its turn behind other callers. */
static inline __attribute__((always_inline)) int take(weft__sock *s, int dir, int64_t deadline)
{
    bool *busy = dir == WEFT__EV_IN ? &s->rbusy : &s->wbusy;
    if (!*busy) {
        *busy = true;
        return 0;
    }
    if (!weft__current())
        return -EBUSY; /* a parked coroutine holds it; the thread can't wait for that */
    weft__wait w;
    int rc = weft__park(&w, dir == WEFT__EV_IN ? &s->rlock : &s->wlock, deadline);
    if (rc == 0 && s->closing)
        rc = -EBADF;
    return rc; /* on 0 the releaser handed *busy over to us */
}

static inline __attribute__((always_inline)) void give(weft__sock *s, int dir)
{
    weft__waitq *q = dir == WEFT__EV_IN ? &s->rlock : &s->wlock;
    if (q->head && !s->closing)
        weft__wake(q->head, 0); /* hand over: busy stays set */
    else if (dir == WEFT__EV_IN)
        s->rbusy = false;
    else
        s->wbusy = false;
}

void weft__sock_free(weft__sock *s)
{
    free(s->rx);
    weft__sock_ax_free(s);
    free(s);
}

void weft__sock_unref(weft__sock *s)
{
    if (--s->refs == 0 && s->closed)
        weft__sock_free(s);
}

/* weft__sock_send_io, inline for this file's sends (the compiler stopped
 * inlining the public one once sock.c grew: a call more per send). */
static inline __attribute__((always_inline)) ssize_t send_io(weft__sock *s, int64_t timeout_ms,
                                                             weft__sock_op op, void *ctx,
                                                             const size_t *done);

ssize_t weft__sock_send_io(weft__sock *s, int64_t timeout_ms, weft__sock_op op, void *ctx,
                           const size_t *done)
{
    return send_io(s, timeout_ms, op, ctx, done);
}

static inline __attribute__((always_inline)) ssize_t send_io(weft__sock *s, int64_t timeout_ms,
                                                             weft__sock_op op, void *ctx,
                                                             const size_t *done)
{
    s->refs++; /* s stays readable while a close is under way */
    ssize_t r = weft__sock_io(s, WEFT__EV_OUT, timeout_ms, op, ctx);
    if (!s->closing)
        s->sent = *done;
    weft__sock_unref(s);
    return r;
}

/* weft__sock_io on a completion backend: the op's receives and sends go
 * through the ring and wait there (the weft__sock_sys_* calls), so there
 * is no fast path to try first.  An op they cannot serve falls back to
 * the syscall and to waiting for readiness, as on epoll. */
static ssize_t ring_io(weft__sock *s, int dir, int64_t timeout_ms, weft__sock_op op, void *ctx)
{
    bool in = dir == WEFT__EV_IN;
    bool *ready = in ? &s->rready : &s->wready;
    int64_t deadline = weft__deadline(timeout_ms);
    s->refs++;
    ssize_t r = take(s, dir, deadline);
    if (r < 0)
        goto out;
    if (in) {
        s->rring |= WEFT__RING_CALL;
        s->rdeadline = deadline;
    } else {
        s->wring = true;
        s->wdeadline = deadline;
    }
    for (;;) {
        r = op(s, ctx);
        if (r == -EINTR)
            continue;
        if (r != -EAGAIN)
            break;
        *ready = false;
        if ((r = weft__sock_wait(s, dir, deadline)) < 0)
            break;
    }
    if (in)
        s->rring &= (unsigned char)~WEFT__RING_CALL;
    else
        s->wring = false;
    give(s, dir);
    if (r < 0 && s->closing)
        r = -EBADF; /* its operation was stopped by the close */
out:
    weft__sock_unref(s);
    return r;
}

ssize_t weft__sock_io(weft__sock *s, int dir, int64_t timeout_ms, weft__sock_op op, void *ctx)
{
    bool *ready = dir == WEFT__EV_IN ? &s->rready : &s->wready;
    bool busy = dir == WEFT__EV_IN ? s->rbusy : s->wbusy;
    ssize_t r;
    bool tried = false;

    if (WEFT__UNLIKELY(s->flags & WEFT__SOCK_RING) && !(s->flags & WEFT__SOCK_FDBLOCK) &&
        weft__current())
        return ring_io(s, dir, timeout_ms, op, ctx);
    /* Fast path: nobody else holds the direction and it may be ready. */
    if (!busy && *ready) {
        do
            r = op(s, ctx);
        while (r == -EINTR);
        if (r != -EAGAIN)
            return r;
        *ready = false;
        tried = true;
    }
    int64_t deadline = weft__deadline(timeout_ms);
    /* Out of time already: what is there now still wins, so try once even
     * if the cached flag says not ready (the edge may not be in yet). */
    if (!tried && weft__passed(deadline))
        *ready = true;
    s->refs++;
    r = take(s, dir, deadline);
    if (r < 0)
        goto out;
    for (;;) {
        if (*ready) {
            r = op(s, ctx);
            if (r == -EINTR)
                continue;
            if (r != -EAGAIN)
                break;
            *ready = false;
        }
        r = weft__sock_wait(s, dir, deadline);
        if (r < 0)
            break;
    }
    give(s, dir);
out:
    weft__sock_unref(s);
    return r;
}

/* ---- the syscalls of an op, or the ring's operations ------------------------ */

ssize_t weft__sock_ring_run(weft__sock *s, weft__bop *op, int fault)
{
    bool in = op->kind == WEFT__BOP_RECV || op->kind == WEFT__BOP_RECVMSG ||
              op->kind == WEFT__BOP_ACCEPT;
    int64_t deadline = in ? s->rdeadline : s->wdeadline;
    /* Out of time: "only try" is the syscall's (counted there, not here). */
    if (weft__passed(deadline))
        return -EAGAIN;
    (void)fault; /* unused outside the testing build */
    if (weft__sys_fail(fault))
        return -errno;
    op->fd = s->pe.fd;
    if (op->kind != WEFT__BOP_ACCEPT && op->kind != WEFT__BOP_CONNECT)
        op->flags &= ~MSG_DONTWAIT; /* the ring waits for readiness itself */
    weft__bop **held = in ? &s->rop : &s->wop;
    *held = op;
    ssize_t r = weft__bop_run(s->loop, op, deadline);
    *held = NULL;
    return r;
}

/* The syscall an operation stands for (non-blocking: flags carry
 * MSG_DONTWAIT). */
static ssize_t sys_once(const weft__sock *s, const weft__bop *op, int flags)
{
    switch (op->kind) {
    case WEFT__BOP_RECV:
        return weft__sock_errno(weft__sys_recv(s->pe.fd, op->buf, op->len, flags));
    case WEFT__BOP_RECVMSG:
        return weft__sock_errno(weft__sys_recvmsg(s->pe.fd, op->buf, flags));
    case WEFT__BOP_SEND:
        return weft__sock_errno(weft__sys_send(s->pe.fd, op->buf, op->len, flags));
    default:
        return weft__sock_errno(weft__sys_sendmsg(s->pe.fd, op->buf, flags));
    }
}

/* A receive or send of the call holding its direction through the ring.
 * On a socket last seen ready (rready, wready) the syscall goes first: a
 * submission, a park and a step cost more than one syscall that finds
 * data or room.  The ring only when it found none (a receive then waits
 * for data before its first try), or the syscall where the ring cannot
 * take it.  Sends on a stream go to the ring at once: many coroutines'
 * sends then go out in one io_uring_enter (measured a little cheaper than
 * a send(2) each, bench/RESULTS.md section 16).  Afterwards: is the socket probably still ready?  A stream
 * that gave less than asked for is drained, unless the kernel says more
 * came meanwhile (IORING_CQE_F_SOCK_NONEMPTY); a datagram socket that gave
 * one may hold more; a send that took less had no room left. */
static ssize_t ring_xfer(weft__sock *s, weft__bop *op, size_t want)
{
    bool in = op->kind == WEFT__BOP_RECV || op->kind == WEFT__BOP_RECVMSG;
    bool *ready = in ? &s->rready : &s->wready;
    int flags = op->flags; /* ring_run drops MSG_DONTWAIT from op's */
    ssize_t r = -EAGAIN;
    if (*ready && (in || !(s->flags & WEFT__SOCK_STREAM)))
        r = sys_once(s, op, flags);
    if (r == -EAGAIN) {
        *ready = false;
        op->poll_first = in;
        r = weft__sock_ring_run(s, op, in ? WEFT_FAULT_RECV : WEFT_FAULT_SEND);
        if (r == -EAGAIN)
            r = sys_once(s, op, flags);
    }
    if (r < 0)
        return r;
    if (!in || (s->flags & WEFT__SOCK_STREAM))
        *ready = (size_t)r == want || (r > 0 && op->more) || (in && r == 0);
    else
        *ready = true;
    return r;
}

static size_t iov_bytes(const struct msghdr *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->msg_iovlen; i++)
        n += m->msg_iov[i].iov_len;
    return n;
}

ssize_t weft__sock_ring_recv(weft__sock *s, void *buf, size_t n, int flags)
{
    if ((s->flags & WEFT__SOCK_DRAINS) || (s->rring & WEFT__RING_RX)) {
        struct iovec v = { buf, n };
        ssize_t r = weft__sock_rx_read(s, &v, 1, flags);
        if (r != -EAGAIN)
            return r;
    }
    weft__bop op = { .kind = WEFT__BOP_RECV, .flags = flags, .buf = buf, .len = n };
    if (!(s->rring & WEFT__RING_CALL))
        return sys_once(s, &op, flags);
    return ring_xfer(s, &op, n);
}

ssize_t weft__sock_ring_recvmsg(weft__sock *s, struct msghdr *m, int flags)
{
    if (((s->flags & WEFT__SOCK_DRAINS) && !m->msg_controllen) || (s->rring & WEFT__RING_RX)) {
        ssize_t r = weft__sock_rx_read(s, m->msg_iov, (int)m->msg_iovlen, flags);
        if (r != -EAGAIN) {
            if (r >= 0) {
                m->msg_flags = 0;
                m->msg_controllen = 0; /* bytes only: no ancillary data */
            }
            return r;
        }
    }
    weft__bop op = { .kind = WEFT__BOP_RECVMSG, .flags = flags, .buf = m };
    if (!(s->rring & WEFT__RING_CALL))
        return sys_once(s, &op, flags);
    return ring_xfer(s, &op, iov_bytes(m));
}

ssize_t weft__sock_ring_send(weft__sock *s, const void *buf, size_t n, int flags)
{
    weft__bop op = { .kind = WEFT__BOP_SEND, .flags = flags, .buf = (void *)buf, .len = n };
    return ring_xfer(s, &op, n);
}

ssize_t weft__sock_ring_sendmsg(weft__sock *s, const struct msghdr *m, int flags)
{
    weft__bop op = { .kind = WEFT__BOP_SENDMSG, .flags = flags, .buf = (void *)m };
    return ring_xfer(s, &op, iov_bytes(m));
}

int weft__sock_sys_accept(weft__sock *s, int flags)
{
    if (s->rring) {
        ssize_t r = weft__sock_ax_accept(s, flags);
        if (r != -EAGAIN)
            return (int)r;
        weft__bop op = { .kind = WEFT__BOP_ACCEPT, .flags = flags };
        r = weft__sock_ring_run(s, &op, WEFT_FAULT_ACCEPT);
        if (r != -EAGAIN)
            return (int)r;
    }
    if (WEFT__UNLIKELY(s->ax != NULL)) {
        int r = weft__sock_ax_take(s); /* those accepted ahead first */
        if (r >= 0)
            return r;
    }
    return (int)weft__sock_errno(weft__sys_accept4(s->pe.fd, NULL, NULL, flags));
}

/* ---- close ------------------------------------------------------------------- */

void weft__sock_send_away(weft__sock *s)
{
    weft__wake_all(&s->rq, -EBADF);
    weft__wake_all(&s->wq, -EBADF);
    weft__wake_all(&s->rlock, -EBADF);
    weft__wake_all(&s->wlock, -EBADF);
    weft__sock_rx_drop(s);
    weft__sock_ax_drop(s);
    if (s->rop || s->wop) {
        /* Operations in the ring hold the file open (no FIN would go out
         * at close) and, until submitted, name the descriptor by its
         * number: stop them now and have the kernel act on that, before
         * the number can be freed. */
        weft_loop *l = s->loop;
        if (s->rop)
            l->be->cancel(l, s->rop);
        if (s->wop)
            l->be->cancel(l, s->wop);
        l->be->flush(l);
    }
}

int weft__sock_close(weft__sock *s, bool reset)
{
    if (weft__sock_claim(s) < 0)
        return -EBADF; /* a close has begun already */
    return weft__sock_close_claimed(s, reset);
}

int weft__sock_close_claimed(weft__sock *s, bool reset)
{
    /* Waiters leave first: each holds a reference, and a layer's state
     * that it may still point at is about to go. */
    weft__sock_send_away(s);
    if (s->ops) {
        const weft__sock_ops *ops = s->ops;
        s->ops = NULL;
        s->refs++; /* the layer may wait */
        ops->close(s, reset);
        s->refs--;
    }
    if (reset) {
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        setsockopt(s->pe.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    weft_loop *l = s->loop;
    /* Out of the poller before close(), so a reused fd number can never
     * deliver its events to this socket's waiters. */
    if (s->armed)
        l->be->disarm(l, &s->pe);
    s->armed = false;
    weft__sock_disown(s);
    s->closed = true;
    /* Linux frees the descriptor even when close reports EINTR: never retry. */
    int rc = close(s->pe.fd) == 0 || errno == EINTR ? 0 : -errno;
    s->pe.fd = -1;
    if (s->refs == 0)
        weft__sock_free(s);
    return rc;
}

int weft_close(weft_sock *h)
{
    weft__sock *s;
    int rc = weft__sock_enter(h, &s);
    if (rc == -EXDEV)
        return weft__sock_close_foreign(h, false);
    return rc < 0 ? rc : weft__sock_close(s, false);
}

int weft_reset(weft_sock *h)
{
    weft__sock *s;
    int rc = weft__sock_enter(h, &s);
    if (rc == -EXDEV)
        return weft__sock_close_foreign(h, true);
    return rc < 0 ? rc : weft__sock_close(s, true);
}

/* ---- receive ------------------------------------------------------------ */

/* A stream socket that gave less than asked for has been drained, so the
 * next receive may wait for the poller's edge without trying first.  Not
 * once the peer's FIN or an error was seen: that edge may have come with
 * the data just read, and edge triggering would never report it again. */
static inline bool drained_by_short_read(const weft__sock *s)
{
    return (s->flags & WEFT__SOCK_DRAINS) && !s->rhup && !s->rring;
}

typedef struct recv_op {
    char *buf;
    size_t n, got;
    bool all; /* recvn: keep going until n */
} recv_op;

static ssize_t do_recv(weft__sock *s, void *ctx)
{
    recv_op *o = ctx;
    size_t want = o->n - o->got;
    if (s->flags & WEFT__SOCK_DGRAM) {
        /* MSG_TRUNC: the datagram's whole length, so a cut one shows. */
        return weft__sock_sys_recv(s, o->buf, o->n, MSG_DONTWAIT | MSG_TRUNC);
    }
    ssize_t r = weft__sock_sys_recv(s, o->buf + o->got, want, MSG_DONTWAIT);
    if (r > 0) {
        o->got += (size_t)r;
        if (!o->all || o->got == o->n) {
            /* A stream socket that gave less than asked for is drained:
             * the next receive can wait for the edge without trying. */
            if ((size_t)r < want && drained_by_short_read(s))
                s->rready = false;
            return (ssize_t)o->got;
        }
        return (size_t)r < want && drained_by_short_read(s) ? -EAGAIN : -EINTR;
    }
    if (r == 0) {
        if (!o->all || o->got == 0)
            return 0;
        return -ECONNRESET; /* closed part-way through a recvn */
    }
    return r;
}

ssize_t weft_recv(weft_sock *h, void *buf, size_t n, int64_t timeout_ms)
{
    WEFT__SOCK_ENTER(s, h);
    if (!buf && n)
        return -EINVAL;
    if (WEFT__UNLIKELY(s->ops))
        return s->ops->recv(s, buf, n, false, timeout_ms);
    if (n == 0)
        return 0;
    recv_op o = { buf, n > SSIZE_MAX ? SSIZE_MAX : n, 0, false };
    return weft__sock_io(s, WEFT__EV_IN, timeout_ms, do_recv, &o);
}

ssize_t weft_recvn(weft_sock *h, void *buf, size_t n, int64_t timeout_ms)
{
    WEFT__SOCK_ENTER(s, h);
    if (!buf && n)
        return -EINVAL;
    if (WEFT__UNLIKELY(s->ops))
        return s->ops->recv(s, buf, n, true, timeout_ms);
    if (n == 0)
        return 0;
    if (n > SSIZE_MAX || (s->flags & WEFT__SOCK_DGRAM))
        return -EINVAL;
    recv_op o = { buf, n, 0, true };
    return weft__sock_io(s, WEFT__EV_IN, timeout_ms, do_recv, &o);
}

typedef struct recvv_op {
    const struct iovec *iov;
    int iovcnt;
    size_t want;
} recvv_op;

static ssize_t do_recvv(weft__sock *s, void *ctx)
{
    recvv_op *o = ctx;
    struct msghdr m = { .msg_iov = (struct iovec *)o->iov, .msg_iovlen = (size_t)o->iovcnt };
    /* MSG_TRUNC: a datagram's whole length, as weft_recv gives. */
    int flags = MSG_DONTWAIT | (s->flags & WEFT__SOCK_DGRAM ? MSG_TRUNC : 0);
    ssize_t r = weft__sock_sys_recvmsg(s, &m, flags);
    if (r > 0 && (size_t)r < o->want && drained_by_short_read(s))
        s->rready = false;
    return r;
}

ssize_t weft__iov_total(const struct iovec *iov, int iovcnt)
{
    if (iovcnt < 0 || iovcnt > IOV_MAX || (iovcnt > 0 && !iov))
        return -EINVAL;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > (size_t)SSIZE_MAX - total)
            return -EINVAL;
        total += iov[i].iov_len;
    }
    return (ssize_t)total;
}

ssize_t weft_recvv(weft_sock *h, const struct iovec *iov, int iovcnt, int64_t timeout_ms)
{
    WEFT__SOCK_ENTER(s, h);
    if (WEFT__UNLIKELY(s->ops))
        return s->ops->recvv(s, iov, iovcnt, timeout_ms);
    ssize_t total = weft__iov_total(iov, iovcnt);
    if (total < 0 || (total == 0 && !(s->flags & WEFT__SOCK_DGRAM)))
        return total;
    recvv_op o = { iov, iovcnt, (size_t)total };
    return weft__sock_io(s, WEFT__EV_IN, timeout_ms, do_recvv, &o);
}

/* ---- send ----------------------------------------------------------------- */

/* A send's progress lives in its own op: other senders may be queued on
 * the same socket.  s->sent mirrors it for weft_sock_sent, written only by
 * the call that holds the direction. */
typedef struct send_op {
    const char *buf;
    size_t n, done;
} send_op;

static ssize_t do_send(weft__sock *s, void *ctx)
{
    send_op *o = ctx;
    ssize_t r = weft__sock_sys_send(s, o->buf + o->done, o->n - o->done, SEND_FLAGS);
    if (r >= 0) {
        o->done += (size_t)r;
        s->sent = o->done;
        /* Partial: try once more, and let EAGAIN decide whether to wait. */
        return o->done == o->n ? (ssize_t)o->n : -EINTR;
    }
    s->sent = o->done;
    return r;
}

ssize_t weft_send(weft_sock *h, const void *buf, size_t n, int64_t timeout_ms)
{
    WEFT__SOCK_ENTER(s, h);
    if (n > SSIZE_MAX || (!buf && n))
        return -EINVAL;
    if (WEFT__UNLIKELY(s->ops)) {
        struct iovec v = { (void *)buf, n };
        return s->ops->sendv(s, &v, 1, timeout_ms);
    }
    if (n == 0 && !(s->flags & WEFT__SOCK_DGRAM)) {
        s->sent = 0;
        return 0;
    }
    send_op o = { buf, n, 0 };
    return send_io(s, timeout_ms, do_send, &o, &o.done);
}

#define IOV_WINDOW 64

typedef struct sendv_op {
    const struct iovec *iov;
    int iovcnt;
    size_t total, done;
} sendv_op;

static ssize_t do_sendv(weft__sock *s, void *ctx)
{
    sendv_op *o = ctx;
    if (s->flags & WEFT__SOCK_DGRAM) {
        /* One datagram of every iovec: never cut into windows. */
        struct msghdr m = { .msg_iov = (struct iovec *)o->iov, .msg_iovlen = (size_t)o->iovcnt };
        ssize_t r = weft__sock_sys_sendmsg(s, &m, SEND_FLAGS);
        if (r < 0)
            return r;
        o->done = (size_t)r;
        s->sent = o->done;
        return (ssize_t)o->total;
    }
    /* Skip what has gone out; copy a window so the first entry can start
     * part-way without touching the caller's array.  A rest of several
     * pieces that fits in the window's bytes goes out copied into them
     * instead, as one piece: the kernel takes a vector in piece by piece,
     * and one piece is a plain send (TLS gathers small pieces likewise). */
    union {
        struct iovec v[IOV_WINDOW];
        char b[IOV_WINDOW * sizeof(struct iovec)];
    } win;
    size_t skip = o->done;
    int i = 0;
    while (i < o->iovcnt && skip >= o->iov[i].iov_len)
        skip -= o->iov[i++].iov_len;
    ssize_t r;
    if (i + 1 < o->iovcnt && o->total - o->done <= sizeof win.b) {
        size_t n = 0;
        for (; i < o->iovcnt; i++, skip = 0) {
            memcpy(win.b + n, (const char *)o->iov[i].iov_base + skip, o->iov[i].iov_len - skip);
            n += o->iov[i].iov_len - skip;
        }
        r = weft__sock_sys_send(s, win.b, n, SEND_FLAGS);
    } else {
        int k = 0;
        for (; i < o->iovcnt && k < IOV_WINDOW; i++, k++) {
            win.v[k].iov_base = (char *)o->iov[i].iov_base + skip;
            win.v[k].iov_len = o->iov[i].iov_len - skip;
            skip = 0;
        }
        if (k == 1) {
            r = weft__sock_sys_send(s, win.v[0].iov_base, win.v[0].iov_len, SEND_FLAGS);
        } else {
            struct msghdr m = { .msg_iov = win.v, .msg_iovlen = (size_t)k };
            r = weft__sock_sys_sendmsg(s, &m, SEND_FLAGS);
        }
    }
    if (r >= 0) {
        o->done += (size_t)r;
        s->sent = o->done;
        return o->done == o->total ? (ssize_t)o->total : -EINTR;
    }
    s->sent = o->done;
    return r;
}

ssize_t weft_sendv(weft_sock *h, const struct iovec *iov, int iovcnt, int64_t timeout_ms)
{
    WEFT__SOCK_ENTER(s, h);
    if (WEFT__UNLIKELY(s->ops))
        return s->ops->sendv(s, iov, iovcnt, timeout_ms);
    ssize_t total = weft__iov_total(iov, iovcnt);
    if (total < 0)
        return total;
    if (total == 0 && !(s->flags & WEFT__SOCK_DGRAM)) {
        s->sent = 0;
        return 0;
    }
    sendv_op o = { iov, iovcnt, (size_t)total, 0 };
    return send_io(s, timeout_ms, do_sendv, &o, &o.done);
}

size_t weft_sock_sent(const weft_sock *h)
{
    weft__sock *s;
    return weft__sock_enter(h, &s) == 0 ? s->sent : 0;
}

/* ---- readiness, shutdown, descriptors --------------------------------------- */

int weft_sock_poll(weft_sock *h, int events, int64_t timeout_ms)
{
    WEFT__SOCK_ENTER(s, h);
    return weft__sock_poll(s, events, timeout_ms);
}

int weft__sock_poll(weft__sock *s, int events, int64_t timeout_ms)
{
    if (WEFT__UNLIKELY(s->ops))
        return s->ops->poll(s, events, timeout_ms);
    if (!(events & (WEFT_POLL_IN | WEFT_POLL_OUT)))
        return -EINVAL;
    int ev = (events & WEFT_POLL_IN ? WEFT__EV_IN : 0) | (events & WEFT_POLL_OUT ? WEFT__EV_OUT : 0);
    weft_loop *l = weft__tls_loop;
    bool in_co = l && l->current;
    int64_t deadline = weft__deadline(timeout_ms);
    int rc;
    for (;;) {
        /* Bytes the read-ahead holds are there to read; a thread that
         * polls the descriptor itself stops it first. */
        if ((s->rring & WEFT__RING_RX) && !in_co)
            weft__sock_rx_halt(s);
        bool queued = (ev & WEFT__EV_IN) && (weft__sock_rx_has(s) || weft__sock_ax_has(s));
        /* The cached flags may be optimistic: ask the kernel what holds. */
        rc = weft__fd_poll(s->pe.fd, ev, in_co || queued ? 0 : deadline);
        if (queued && (rc >= 0 || rc == -ETIMEDOUT))
            rc = (rc > 0 ? rc : 0) | WEFT__EV_IN;
        if (rc != -ETIMEDOUT || !in_co)
            break;
        if ((rc = weft__sock_wait_held(s, ev, deadline, NULL)) < 0)
            return rc;
    }
    if (rc < 0)
        return rc;
    return (rc & WEFT__EV_IN ? WEFT_POLL_IN : 0) | (rc & WEFT__EV_OUT ? WEFT_POLL_OUT : 0);
}

int weft_shutdown(weft_sock *h, int how)
{
    WEFT__SOCK_ENTER(s, h);
    if (WEFT__UNLIKELY(s->ops))
        return s->ops->shutdown(s, how);
    int sh;
    switch (how) {
    case WEFT_SHUT_RD: sh = SHUT_RD; break;
    case WEFT_SHUT_WR: sh = SHUT_WR; break;
    case WEFT_SHUT_RDWR: sh = SHUT_RDWR; break;
    default: return -EINVAL;
    }
    return shutdown(s->pe.fd, sh) == 0 ? 0 : -errno;
}

int weft_sock_fd(const weft_sock *h)
{
    WEFT__SOCK_ENTER(s, h);
    return s->pe.fd;
}

int weft_sock_wrap(weft_sock **out, int fd)
{
    int type, family = 0, protocol = 0;
    socklen_t len = sizeof type;
    if (!out)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
        return -errno;
    len = sizeof family;
    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &len);
    len = sizeof protocol;
    getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len);
    int acc = 0;
    len = sizeof acc;
    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len);
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    weft__sock *s;
    unsigned flags = weft__sock_flags_for(family, type, protocol) | (acc ? WEFT__SOCK_LISTEN : 0);
    int rc = weft__sock_new(&s, fd, flags);
    if (rc < 0)
        return rc;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        rc = -errno;
        weft__sock_discard(s);
        return rc;
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    *out = weft__sock_handle(s);
    return 0;
}

int weft_sock_local(const weft_sock *h, weft_addr *out)
{
    WEFT__SOCK_ENTER(s, h);
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    out->len = sizeof out->u;
    return getsockname(s->pe.fd, &out->u.sa, &out->len) == 0 ? 0 : -errno;
}

int weft_sock_peer(const weft_sock *h, weft_addr *out)
{
    WEFT__SOCK_ENTER(s, h);
    if (!out)
        return -EINVAL;
    return weft__sock_peer(s, out);
}

int weft__sock_peer(const weft__sock *s, weft_addr *out)
{
    memset(out, 0, sizeof *out);
    out->len = sizeof out->u;
    return getpeername(s->pe.fd, &out->u.sa, &out->len) == 0 ? 0 : -errno;
}
