/*
 * tcp.c - TCP over the socket core: listen, accept and connect, IPv4 and
 * IPv6.  Data moves through the socket core's weft_recv/weft_send.
 */
#include "internal.h"

#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#define SOCK_FLAGS (SOCK_NONBLOCK | SOCK_CLOEXEC)
#define BACKOFF_MIN_MS 5
#define BACKOFF_MAX_MS 500

static int listen_on(weft_sock **out, const weft_addr *a, int backlog, int flags)
{
    int fd = weft__sys_socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_FLAGS, 0);
    if (fd < 0)
        return -errno;
    int one = 1, rc;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if ((flags & WEFT_REUSEPORT) && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        goto fail_errno;
    if (a->u.sa.sa_family == AF_INET6) {
        int v6only = (flags & WEFT_V6ONLY) ? 1 : 0;
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) != 0)
            goto fail_errno;
    }
    if (weft__sys_bind(fd, &a->u.sa, a->len) != 0)
        goto fail_errno;
    if (weft__sys_listen(fd, backlog > 0 ? backlog : SOMAXCONN) != 0)
        goto fail_errno;
    weft_sock *s;
    if ((rc = weft__sock_new(&s, fd, WEFT__SOCK_LISTEN)) < 0)
        goto fail;
    *out = s;
    return 0;
fail_errno:
    rc = -errno;
fail:
    close(fd);
    return rc;
}

int weft_tcp_listen(weft_sock **out, const char *host, int port, int backlog, int flags)
{
    weft_addr a;
    if (!out || (flags & ~(WEFT_REUSEPORT | WEFT_V6ONLY)))
        return -EINVAL;
    int rc = weft_addr_parse(&a, host, port);
    if (rc < 0)
        return rc;
    bool any = !host || strcmp(host, "*") == 0;
    rc = listen_on(out, &a, backlog, flags);
    if (rc == -EAFNOSUPPORT && any && !(flags & WEFT_V6ONLY)) {
        /* A kernel without IPv6: all interfaces means all IPv4 ones. */
        memset(&a, 0, sizeof a);
        a.u.in.sin_family = AF_INET;
        a.u.in.sin_port = htons((uint16_t)port);
        a.u.in.sin_addr.s_addr = htonl(INADDR_ANY);
        a.len = sizeof a.u.in;
        rc = listen_on(out, &a, backlog, flags);
    }
    return rc;
}

static ssize_t do_accept(weft_sock *s, void *ctx)
{
    (void)ctx;
    if (s->flags & WEFT__SOCK_FDBLOCK) {
        /* The caller made the fd blocking: accept only what is queued. */
        struct pollfd p = { .fd = s->pe.fd, .events = POLLIN };
        if (poll(&p, 1, 0) == 0)
            return -EAGAIN;
    }
    int fd = weft__sys_accept4(s->pe.fd, NULL, NULL, SOCK_FLAGS);
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
    switch (errno) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
        return -EAGAIN;
    case EINTR:
    case ECONNABORTED: /* the peer gave up before we got to it: next one */
    case EPROTO:
        return -EINTR;
    default:
        return -errno;
    }
}

static bool out_of_resources(ssize_t err)
{
    return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
}

/* Milliseconds left until deadline, as a timeout for another call. */
static int64_t ms_left(int64_t deadline)
{
    if (deadline == WEFT__NEVER)
        return -1;
    int64_t left = deadline - weft__now_ns();
    return left <= 0 ? 0 : (left + WEFT__NS_PER_MS - 1) / WEFT__NS_PER_MS;
}

/* Sleeps ms, or less if l is closed or the caller cancelled.  Returns 0
 * when the time is up, else the wait's error. */
static int backoff_sleep(weft_sock *l, int64_t ms, int64_t deadline)
{
    int64_t until = weft__now_ns() + ms * WEFT__NS_PER_MS;
    if (until > deadline)
        until = deadline;
    if (!weft__current()) {
        int rc = weft__fd_poll(-1, 0, until); /* poll() ignores fd -1: a plain sleep */
        return rc == -ETIMEDOUT ? 0 : rc;
    }
    /* On the listener's queue, so that closing it ends the sleep; not through
     * weft__sock_wait, whose arming of an unarmed listener would report the
     * queued connection at once and cut the back-off short. */
    weft__wait w;
    l->refs++;
    int rc = weft__park(&w, &l->rq, until);
    bool closed = l->closed;
    weft__sock_unref(l);
    if (closed)
        return -ECANCELED;
    return rc == -ETIMEDOUT ? 0 : rc;
}

int weft_tcp_accept(weft_sock *l, weft_sock **out, int64_t timeout_ms)
{
    if (!l || l->closed || !out)
        return -EBADF;
    if (!(l->flags & WEFT__SOCK_LISTEN))
        return -EINVAL;
    int64_t deadline = weft__deadline(timeout_ms);
    int64_t backoff = BACKOFF_MIN_MS;
    for (;;) {
        /* The record first: once accept4 has taken a connection off the
         * queue, nothing may fail and drop it. */
        weft_sock *s;
        ssize_t fd = weft__sock_new(&s, -1, WEFT__SOCK_STREAM);
        if (fd == 0) {
            fd = weft__sock_io(l, WEFT__EV_IN, ms_left(deadline), do_accept, NULL);
            if (fd >= 0) {
                s->pe.fd = (int)fd;
                *out = s;
                return 0;
            }
            free(s);
        }
        if (!out_of_resources(fd) || ms_left(deadline) == 0)
            return (int)fd;
        /* Out of descriptors or memory: the connection stays queued and
         * the listener readable.  Back off rather than spin; try again
         * when the time is up even without a new edge. */
        int rc = backoff_sleep(l, backoff, deadline);
        if (rc < 0)
            return rc;
        if (ms_left(deadline) == 0)
            return (int)fd;
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
        l->rready = true;
    }
}

int weft_tcp_connect(weft_sock **out, const char *host, int port, int64_t timeout_ms)
{
    weft_addr a;
    if (!out || !host)
        return -EINVAL;
    int rc = weft_addr_parse(&a, host, port);
    if (rc < 0)
        return rc;
    if (port == 0)
        return -EINVAL;
    int64_t deadline = weft__deadline(timeout_ms);
    int fd = weft__sys_socket(a.u.sa.sa_family, SOCK_STREAM | SOCK_FLAGS, 0);
    if (fd < 0)
        return -errno;
    weft_sock *s;
    if ((rc = weft__sock_new(&s, fd, WEFT__SOCK_STREAM)) < 0) {
        close(fd);
        return rc;
    }
    if (weft__sys_connect(fd, &a.u.sa, a.len) != 0) {
        if (errno != EINPROGRESS && errno != EINTR) {
            rc = -errno;
            goto fail;
        }
        /* In progress: writable once it is up or has failed. */
        s->refs++;
        rc = weft__sock_wait(s, WEFT__EV_OUT, deadline);
        s->refs--;
        if (rc < 0)
            goto fail;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err) {
            rc = -err;
            goto fail;
        }
    }
    *out = s;
    return 0;
fail:
    weft__sock_close(s, false);
    return rc;
}
