/*
 * dgram.c - the datagram calls UDP, unix datagram and raw sockets share:
 * weft_sendto and weft_recvfrom one datagram at a time, weft_sendmmsg and
 * weft_recvmmsg in batches.  Each is one op run by the socket core's retry
 * loop (weft__sock_io), so timeouts, cancels and closes behave as for
 * streams.
 *
 * Sockets are edge-triggered, and for datagrams nothing but EAGAIN proves
 * the receive queue empty: a datagram smaller than the buffer, or a batch
 * smaller than asked for, says nothing about what is still queued (or
 * about an error the kernel keeps for the next call).  So only EAGAIN ever
 * clears the readiness flag, and no datagram can be left behind waiting
 * for an edge that already came.
 *
 * weft_sendmmsg sends runs of equal-size datagrams to one address as a
 * single UDP GSO send (one UDP_SEGMENT message the kernel cuts into
 * datagrams) inside the same sendmmsg call as the rest.
 */
#include "sock.h"

#include <limits.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>

#define SEND_FLAGS (MSG_NOSIGNAL | MSG_DONTWAIT)
/* MSG_TRUNC: receives report the datagram's whole length, so a cut one shows. */
#define RECV_FLAGS (MSG_DONTWAIT | MSG_TRUNC)

/* Per syscall: at most MAX_MSGS messages and MAX_DGRAMS datagrams (GSO
 * messages carry several), and at most MAX_MSGS datagrams received. */
#define MAX_MSGS 64
#define MAX_DGRAMS 256

/* UDP GSO limits: older kernels take at most 64 segments per send
 * (UDP_MAX_SEGMENTS), and the whole run must fit one UDP datagram's 65,507
 * bytes; the margin leaves room for IP options. */
#define GSO_MAX_SEGS 64
#define GSO_MAX_BYTES 65000

/* Not a datagram socket: the stream calls are for those, and MSG_TRUNC
 * would discard stream bytes. */
static inline bool not_dgram(const weft__sock *s)
{
    return s->ops || (s->flags & (WEFT__SOCK_STREAM | WEFT__SOCK_LISTEN));
}

/* A kernel fills only len bytes of an address (none for an unnamed unix
 * sender): zero the rest so callers can compare whole weft_addrs. */
static void clear_addr_tail(weft_addr *a)
{
    if (a->len < sizeof a->u)
        memset((char *)&a->u + a->len, 0, sizeof a->u - a->len);
}

static inline ssize_t sys_err(void)
{
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

/* ---- one datagram --------------------------------------------------------- */

typedef struct sendto_op {
    const void *buf;
    size_t n;
    const weft_addr *to;
    size_t sent; /* n once it is out */
} sendto_op;

static ssize_t do_sendto(weft__sock *s, void *ctx)
{
    sendto_op *o = ctx;
    /* sendto(2) as a sendmsg, which the ring carries out too. */
    struct iovec v = { (void *)o->buf, o->n };
    struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1 };
    if (o->to) {
        m.msg_name = (void *)&o->to->u.sa;
        m.msg_namelen = o->to->len;
    }
    ssize_t r = weft__sock_sys_sendmsg(s, &m, SEND_FLAGS);
    s->sent = o->sent = r >= 0 ? (size_t)r : 0;
    return r;
}

ssize_t weft_sendto(weft_sock *h, const void *buf, size_t n, const weft_addr *to,
                    int64_t timeout_ms)
{
    WEFT__SOCK_ENTER(s, h);
    if (not_dgram(s) || (to && to->len > sizeof to->u) || (!buf && n))
        return -EINVAL;
    if (n > SSIZE_MAX)
        return -EMSGSIZE; /* no datagram is that big */
    sendto_op o = {buf, n, to && to->len ? to : NULL, 0};
    return weft__sock_send_io(s, timeout_ms, do_sendto, &o, &o.sent);
}

typedef struct recvfrom_op {
    void *buf;
    size_t n;
    weft_addr *from;
} recvfrom_op;

static ssize_t do_recvfrom(weft__sock *s, void *ctx)
{
    recvfrom_op *o = ctx;
    weft_addr a;
    /* recvfrom(2) as a recvmsg, which the ring carries out too. */
    struct iovec v = { o->buf, o->n };
    struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1 };
    if (o->from) {
        m.msg_name = &a.u.sa;
        m.msg_namelen = sizeof a.u;
    }
    ssize_t r = weft__sock_sys_recvmsg(s, &m, RECV_FLAGS);
    if (r < 0)
        return r;
    if (o->from) {
        a.len = m.msg_namelen;
        clear_addr_tail(&a);
        *o->from = a;
    }
    return r;
}

ssize_t weft_recvfrom(weft_sock *h, void *buf, size_t n, weft_addr *from, int64_t timeout_ms)
{
    WEFT__SOCK_ENTER(s, h);
    if (not_dgram(s) || (!buf && n))
        return -EINVAL;
    recvfrom_op o = {buf, n > SSIZE_MAX ? SSIZE_MAX : n, from};
    return weft__sock_io(s, WEFT__EV_IN, timeout_ms, do_recvfrom, &o);
}

/* ---- UDP GSO: which sockets to try it on ----------------------------------- */

/*
 * A GSO send on a socket that is not UDP would be wrong, not just slow:
 * unix and raw sockets ignore a SOL_UDP control message and would send the
 * whole run as one datagram.  So each batch that has a run first asks the
 * socket for its UDP_SEGMENT option, which only a UDP socket on a kernel
 * with UDP GSO (4.18+) answers.
 *
 * The answer is kept in the socket's flags, and so is a kernel's refusal of
 * a GSO send (no checksum offload on the route's device: EIO; a segment
 * larger than the device MTU: EINVAL), so that later batches neither ask
 * again nor try.
 */
static void gso_remember_off(weft__sock *s)
{
    s->flags = (s->flags & ~(unsigned)WEFT__SOCK_GSO) | WEFT__SOCK_NOGSO;
}

static bool gso_usable(weft__sock *s)
{
    if (s->flags & (WEFT__SOCK_GSO | WEFT__SOCK_NOGSO))
        return s->flags & WEFT__SOCK_GSO;
#ifdef UDP_SEGMENT
    int v;
    socklen_t len = sizeof v;
    if (getsockopt(s->pe.fd, SOL_UDP, UDP_SEGMENT, &v, &len) == 0) {
        s->flags |= WEFT__SOCK_GSO;
        return true;
    }
#endif
    gso_remember_off(s);
    return false;
}

/* The errors with which a kernel turns a GSO send down as such; the same
 * datagrams sent one by one then give each one's true outcome. */
static bool gso_refused(int err)
{
    return err == EIO || err == EINVAL || err == ENOPROTOOPT || err == EOPNOTSUPP ||
           err == EMSGSIZE;
}

static inline bool same_addr(const weft_addr *a, const weft_addr *b)
{
    return a->len == b->len && memcmp(&a->u, &b->u, a->len) == 0;
}

/* How many datagrams from v[i] (at most up to end) can go as one GSO
 * send: equal lengths to one address, only the last may be shorter. */
static int gso_run(const weft_dgram *v, int i, int end)
{
    size_t len = v[i].len, total = len;
    if (len == 0 || len > UINT16_MAX)
        return 1;
    int k = 1;
    while (i + k < end && k < GSO_MAX_SEGS) {
        const weft_dgram *d = &v[i + k];
        if (d->len == 0 || d->len > len || total + d->len > GSO_MAX_BYTES ||
            !same_addr(&v[i].addr, &d->addr))
            break;
        total += d->len;
        k++;
        if (d->len < len)
            break;
    }
    return k;
}

/* ---- batches -------------------------------------------------------------- */

typedef union gso_ctl {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
} gso_ctl;

/* The syscalls' arrays, about 10 KiB: per thread rather than on the
 * caller's stack, which may be a small coroutine stack.  An op runs to its
 * end without parking, so no two calls on a thread ever share them. */
static __thread struct {
    struct mmsghdr m[MAX_MSGS];
    struct iovec iov[MAX_DGRAMS];
    gso_ctl ctl[MAX_MSGS];
    int segs[MAX_MSGS]; /* datagrams in each message */
} scratch;

enum { GSO_UNKNOWN, GSO_YES, GSO_NO };

typedef struct sendmmsg_op {
    weft_dgram *v;
    int n, done;
    int gso;     /* GSO_*: asked at most once per call */
    size_t sent; /* done, for weft_sock_sent */
} sendmmsg_op;

static ssize_t do_sendmmsg(weft__sock *s, void *ctx)
{
    sendmmsg_op *o = ctx;
    struct mmsghdr *m = scratch.m;
    struct iovec *iov = scratch.iov;
    gso_ctl *ctl = scratch.ctl;
    int *segs = scratch.segs;
    int end = o->n - o->done > MAX_DGRAMS ? o->done + MAX_DGRAMS : o->n;
    int k = 0;
    for (int i = o->done; i < end && k < MAX_MSGS; k++) {
        weft_dgram *d = &o->v[i];
        int run = o->gso == GSO_NO ? 1 : gso_run(o->v, i, end);
        if (run > 1 && o->gso == GSO_UNKNOWN)
            o->gso = gso_usable(s) ? GSO_YES : GSO_NO;
        if (o->gso == GSO_NO)
            run = 1;
        for (int j = 0; j < run; j++)
            iov[i - o->done + j] = (struct iovec){o->v[i + j].buf, o->v[i + j].len};
        memset(&m[k], 0, sizeof m[k]);
        struct msghdr *h = &m[k].msg_hdr;
        h->msg_name = d->addr.len ? &d->addr.u : NULL;
        h->msg_namelen = d->addr.len;
        h->msg_iov = &iov[i - o->done];
        h->msg_iovlen = (size_t)run;
#ifdef UDP_SEGMENT
        if (run > 1) {
            h->msg_control = ctl[k].buf;
            h->msg_controllen = sizeof ctl[k].buf;
            struct cmsghdr *c = CMSG_FIRSTHDR(h);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t seg = (uint16_t)d->len;
            memcpy(CMSG_DATA(c), &seg, sizeof seg);
        }
#endif
        segs[k] = run;
        i += run;
    }
    int r = weft__sys_sendmmsg(s->pe.fd, m, (unsigned)k, SEND_FLAGS);
    if (r < 0) {
        int err = errno;
        if (segs[0] > 1 && gso_refused(err)) {
            /* sendmmsg reports an error only for its first message, and
             * that one was a GSO send: go without GSO from now on. */
            gso_remember_off(s);
            o->gso = GSO_NO;
            return -EINTR;
        }
        s->sent = o->sent = (size_t)o->done;
        return err == EWOULDBLOCK ? -EAGAIN : -err;
    }
    for (int j = 0; j < r; j++)
        o->done += segs[j];
    s->sent = o->sent = (size_t)o->done;
    /* Short (a full buffer, or an error the next call will report): go on
     * at once and let that call's EAGAIN decide whether to wait. */
    return o->done == o->n ? o->n : -EINTR;
}

int weft_sendmmsg(weft_sock *h, weft_dgram *v, int n, int64_t timeout_ms)
{
    WEFT__SOCK_ENTER(s, h);
    if (not_dgram(s) || n < 0 || (n > 0 && !v))
        return -EINVAL;
    for (int i = 0; i < n; i++)
        if (v[i].addr.len > sizeof v[i].addr.u || (!v[i].buf && v[i].len))
            return -EINVAL;
    if (n == 0) {
        s->sent = 0;
        return 0;
    }
    sendmmsg_op o = {v, n, 0, GSO_UNKNOWN, 0};
    return (int)weft__sock_send_io(s, timeout_ms, do_sendmmsg, &o, &o.sent);
}

typedef struct recvmmsg_op {
    weft_dgram *v;
    int n;
} recvmmsg_op;

static ssize_t do_recvmmsg(weft__sock *s, void *ctx)
{
    recvmmsg_op *o = ctx;
    struct mmsghdr *m = scratch.m;
    struct iovec *iov = scratch.iov;
    for (int i = 0; i < o->n; i++) {
        weft_dgram *d = &o->v[i];
        iov[i] = (struct iovec){d->buf, d->len};
        memset(&m[i], 0, sizeof m[i]);
        m[i].msg_hdr.msg_name = &d->addr.u;
        m[i].msg_hdr.msg_namelen = sizeof d->addr.u;
        m[i].msg_hdr.msg_iov = &iov[i];
        m[i].msg_hdr.msg_iovlen = 1;
    }
    /* Without MSG_WAITFORONE and with MSG_DONTWAIT it takes only what is
     * queued.  An error after the first datagram is kept by the kernel for
     * the next call, which the readiness flag (still set) makes at once. */
    int r = weft__sys_recvmmsg(s->pe.fd, m, (unsigned)o->n, RECV_FLAGS, NULL);
    if (r < 0)
        return sys_err();
    for (int i = 0; i < r; i++) {
        weft_dgram *d = &o->v[i];
        size_t full = m[i].msg_len;
        d->addr.len = m[i].msg_hdr.msg_namelen;
        clear_addr_tail(&d->addr);
        d->got = full < d->len ? full : d->len;
        d->truncated = full > d->len || (m[i].msg_hdr.msg_flags & MSG_TRUNC);
    }
    return r;
}

int weft_recvmmsg(weft_sock *h, weft_dgram *v, int n, int64_t timeout_ms)
{
    WEFT__SOCK_ENTER(s, h);
    if (not_dgram(s) || n <= 0 || !v)
        return -EINVAL;
    for (int i = 0; i < n && i < MAX_MSGS; i++)
        if (!v[i].buf && v[i].len)
            return -EINVAL;
    recvmmsg_op o = {v, n > MAX_MSGS ? MAX_MSGS : n};
    return (int)weft__sock_io(s, WEFT__EV_IN, timeout_ms, do_recvmmsg, &o);
}
