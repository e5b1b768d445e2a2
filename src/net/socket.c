/*
 * socket.c - sockets of any family and type: open, bind, listen, connect
 * and accept.  TCP, UDP, unix and raw sockets are thin front ends over
 * these; the resolver's entries feed them directly.
 */
#include "sock.h"

#include <poll.h>
#include <string.h>
#include <unistd.h>

#define SOCK_FLAGS (SOCK_NONBLOCK | SOCK_CLOEXEC)
#define BACKOFF_MIN_MS 5
#define BACKOFF_MAX_MS 500

int64_t weft__ms_left(int64_t deadline)
{
    if (deadline == WEFT__NEVER)
        return -1;
    int64_t left = deadline - weft__now_ns();
    return left <= 0 ? 0 : (left + WEFT__NS_PER_MS - 1) / WEFT__NS_PER_MS;
}

int weft__socket(weft__sock **out, int family, int type, int protocol)
{
    if (type & (SOCK_NONBLOCK | SOCK_CLOEXEC))
        return -EINVAL;
    int fd = weft__sys_socket(family, type | SOCK_FLAGS, protocol);
    if (fd < 0)
        return -errno;
    if (family == AF_INET6 && type != SOCK_RAW) {
        int off = 0; /* dual-stack whatever the system default */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    }
    int rc = weft__sock_new(out, fd, weft__sock_flags_for(family, type, protocol));
    if (rc < 0)
        close(fd);
    return rc;
}

int weft_socket(weft_sock **out, int family, int type, int protocol)
{
    if (!out)
        return -EINVAL;
    weft__sock *s;
    int rc = weft__socket(&s, family, type, protocol);
    if (rc == 0)
        *out = weft__sock_handle(s);
    return rc;
}

int weft__bind(weft__sock *s, const weft_addr *a)
{
    if (!a || a->len == 0 || a->len > sizeof a->u)
        return -EINVAL;
    return weft__sys_bind(s->pe.fd, &a->u.sa, a->len) == 0 ? 0 : -errno;
}

int weft_bind(weft_sock *h, const weft_addr *a)
{
    WEFT__SOCK_ENTER(s, h);
    return weft__bind(s, a);
}

int weft_listen(weft_sock *h, int backlog)
{
    WEFT__SOCK_ENTER(s, h);
    return weft__listen(s, backlog);
}

int weft__listen(weft__sock *s, int backlog)
{
    if (weft__sys_listen(s->pe.fd, backlog > 0 ? backlog : SOMAXCONN) != 0)
        return -errno;
    s->flags |= WEFT__SOCK_LISTEN;
    return 0;
}

/* Sleeps until the earlier of ms from now and deadline, or less if s is
 * closed (-EBADF) or the caller cancelled.  Returns 0 when the time is up,
 * else the wait's error. */
int weft__sock_backoff(weft__sock *s, int64_t ms, int64_t deadline)
{
    int64_t until = weft__now_ns() + ms * WEFT__NS_PER_MS;
    if (until > deadline)
        until = deadline;
    if (!weft__current()) {
        int rc = weft__fd_poll(-1, 0, until); /* poll() ignores fd -1: a plain sleep */
        return rc == -ETIMEDOUT ? 0 : rc;
    }
    /* On the socket's queue, so that closing it ends the sleep; not through
     * weft__sock_wait, whose arming of an unarmed listener would report the
     * queued connection at once and cut the back-off short.  Other wakes on
     * the queue (a connection accepted ahead) do not end it either. */
    weft__wait w;
    s->refs++;
    int rc;
    do
        rc = weft__park(&w, &s->rq, until);
    while (rc == 0 && !s->closing && weft__now_ns() < until);
    bool closing = s->closing;
    weft__sock_unref(s);
    if (closing)
        return -EBADF;
    return rc == -ETIMEDOUT ? 0 : rc;
}

int weft_connect(weft_sock *h, const weft_addr *a, int64_t timeout_ms)
{
    WEFT__SOCK_ENTER(s, h);
    return weft__connect(s, a, timeout_ms);
}

typedef struct connect_op {
    const struct sockaddr *sa;
    socklen_t len;
} connect_op;

/* A connect the ring carries out, or connect(2) again until it stops
 * saying it is under way. */
static ssize_t do_connect(weft__sock *s, void *ctx)
{
    connect_op *o = ctx;
    if (s->wring) {
        weft__bop op = { .kind = WEFT__BOP_CONNECT, .buf = (void *)o->sa, .len = o->len };
        ssize_t r = weft__sock_ring_run(s, &op, WEFT_FAULT_CONNECT);
        if (r != -EAGAIN)
            return r;
    }
    if (weft__sys_connect(s->pe.fd, o->sa, o->len) == 0 || errno == EISCONN)
        return 0;
    return errno == EINPROGRESS || errno == EALREADY ? -EAGAIN : -errno;
}

int weft__connect(weft__sock *s, const weft_addr *a, int64_t timeout_ms)
{
    if (!a || a->len > sizeof a->u)
        return -EINVAL;
    int fam = a->len ? a->u.sa.sa_family : AF_UNSPEC;
    if ((s->flags & (WEFT__SOCK_RING | WEFT__SOCK_FDBLOCK)) == WEFT__SOCK_RING &&
        (s->flags & WEFT__SOCK_STREAM) && (fam == AF_INET || fam == AF_INET6) && weft__current()) {
        /* One operation in the ring: the connect and the wait for it. */
        connect_op o = { &a->u.sa, a->len };
        return (int)weft__sock_io(s, WEFT__EV_OUT, timeout_ms, do_connect, &o);
    }
    int64_t deadline = weft__deadline(timeout_ms);
    int64_t backoff = 1;
    struct sockaddr_storage unspec = {.ss_family = AF_UNSPEC};
    const struct sockaddr *sa = a->len ? &a->u.sa : (const struct sockaddr *)&unspec;
    socklen_t len = a->len ? a->len : (socklen_t)sizeof unspec.ss_family;
    for (;;) {
        if (weft__sys_connect(s->pe.fd, sa, len) == 0)
            return 0;
        if (errno == EINTR && !(s->flags & WEFT__SOCK_STREAM))
            continue;
        if (errno == EAGAIN && sa->sa_family == AF_UNIX) {
            /* A unix listener's backlog is full: it never signals room,
             * so try again after a short, growing pause. */
            if (weft__ms_left(deadline) == 0)
                return -ETIMEDOUT;
            int rc = weft__sock_backoff(s, backoff, deadline);
            if (rc < 0)
                return rc;
            backoff = backoff * 2 > 50 ? 50 : backoff * 2;
            continue;
        }
        if (errno != EINPROGRESS && errno != EINTR)
            return -errno;
        break;
    }
    /* In progress: writable once it is up or has failed. */
    int rc = weft__sock_wait_held(s, WEFT__EV_OUT, deadline, NULL);
    if (rc < 0)
        return rc;
    int err = 0;
    socklen_t elen = sizeof err;
    if (getsockopt(s->pe.fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
        err = errno;
    return err ? -err : 0;
}

int weft__dial(weft__sock **out, const weft_addr *a, int type, int64_t timeout_ms)
{
    weft__sock *s;
    int rc = weft__socket(&s, a->u.sa.sa_family, type, 0);
    if (rc < 0)
        return rc;
    if ((rc = weft__connect(s, a, timeout_ms)) < 0) {
        weft__sock_close(s, false);
        return rc;
    }
    *out = s;
    return 0;
}

static ssize_t do_accept(weft__sock *s, void *ctx)
{
    (void)ctx;
    if (s->flags & WEFT__SOCK_FDBLOCK) {
        /* The caller made the fd blocking: accept only what is queued (an
         * accept-ahead stopped first, so that none is taken meanwhile). */
        weft__sock_ax_halt(s);
        struct pollfd p = {.fd = s->pe.fd, .events = POLLIN};
        if (!weft__sock_ax_has(s) && poll(&p, 1, 0) == 0)
            return -EAGAIN;
    }
    int fd = weft__sock_sys_accept(s, SOCK_FLAGS);
    if (fd >= 0) {
        /* Linux hands out a connection the peer reset while it was queued
         * as if it were fine; it would only fail on first use. */
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err) {
            close(fd);
            return -EINTR;
        }
        return fd;
    }
    switch (fd) {
    case -EINTR:
    case -ECONNABORTED: /* the peer gave up before we got to it: next one */
    case -EPROTO: return -EINTR;
    default: return fd;
    }
}

static bool out_of_resources(ssize_t err)
{
    return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
}

int weft_accept(weft_sock *lh, weft_sock **out, int64_t timeout_ms)
{
    WEFT__SOCK_ENTER(l, lh);
    if (!out)
        return -EINVAL;
    weft__sock *s;
    int rc = weft__accept(l, &s, timeout_ms);
    if (rc == 0)
        *out = weft__sock_handle(s);
    return rc;
}

int weft__accept(weft__sock *l, weft__sock **out, int64_t timeout_ms)
{
    if (!(l->flags & WEFT__SOCK_LISTEN))
        return -EINVAL;
    int64_t deadline = weft__deadline(timeout_ms);
    int64_t backoff = BACKOFF_MIN_MS;
    for (;;) {
        /* The record first: once accept4 has taken a connection off the
         * queue, nothing may fail and drop it.  A connection is of its
         * listener's kind (a seqpacket listener's keep their records). */
        weft__sock *s;
        unsigned kind = WEFT__SOCK_STREAM | WEFT__SOCK_DGRAM | WEFT__SOCK_DRAINS;
        ssize_t fd = weft__sock_new(&s, -1, l->flags & kind);
        if (fd == 0) {
            fd = weft__sock_io(l, WEFT__EV_IN, weft__ms_left(deadline), do_accept, NULL);
            if (fd >= 0) {
                s->pe.fd = (int)fd;
                *out = s;
                return 0;
            }
            weft__sock_discard(s);
        }
        if (!out_of_resources(fd) || weft__ms_left(deadline) == 0)
            return (int)fd;
        /* Out of descriptors or memory: the connection stays queued and
         * the listener readable.  Back off rather than spin; try again
         * when the time is up even without a new edge. */
        int rc = weft__sock_backoff(l, backoff, deadline);
        if (rc < 0)
            return rc;
        if (weft__ms_left(deadline) == 0)
            return (int)fd;
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
        l->rready = true;
    }
}
