/*
 * unix.c - unix-domain sockets: addresses (paths and Linux abstract
 * "@names"), stream listen/accept/connect, datagram sockets, connected
 * pairs, and passing descriptors with SCM_RIGHTS.  Everything is a front
 * end over the generic calls of socket.c and the retry loop of sock.c;
 * stream data moves through weft_recv/weft_send, datagrams through
 * weft_sendto/weft_recvfrom.
 */
#include "sock.h"

#include <string.h>
#include <unistd.h>

#define SOCK_FLAGS (SOCK_NONBLOCK | SOCK_CLOEXEC)
/* Room for this many descriptors in one received message: a sender that
 * attaches more is noticed (MSG_CTRUNC) and the kernel drops the rest. */
#define RECV_FD_MAX 8

int weft_addr_unix(weft_addr *out, const char *path)
{
    if (!out || !path || !path[0])
        return -EINVAL;
    weft_addr a;
    memset(&a, 0, sizeof a);
    a.u.un.sun_family = AF_UNIX;
    size_t n = strlen(path);
    size_t off = offsetof(struct sockaddr_un, sun_path);
    if (path[0] == '@') {
        /* Abstract: a leading NUL, then exactly the name's bytes; the
         * length, not a terminator, says where the name ends. */
        if (n == 1)
            return -EINVAL;
        if (n > sizeof a.u.un.sun_path)
            return -ENAMETOOLONG;
        memcpy(a.u.un.sun_path + 1, path + 1, n - 1);
        a.len = (socklen_t)(off + n);
    } else {
        /* Keep room for the terminator, as every other program expects. */
        if (n >= sizeof a.u.un.sun_path)
            return -ENAMETOOLONG;
        memcpy(a.u.un.sun_path, path, n + 1);
        a.len = (socklen_t)(off + n + 1);
    }
    *out = a;
    return 0;
}

static bool is_path(const weft_addr *a)
{
    return a->u.un.sun_path[0] != '\0';
}

int weft_unix_listen(weft_sock **out, const char *path, int backlog)
{
    weft_addr a;
    weft__sock *s;
    if (!out)
        return -EINVAL;
    int rc = weft_addr_unix(&a, path);
    if (rc < 0)
        return rc;
    if ((rc = weft__socket(&s, AF_UNIX, SOCK_STREAM, 0)) < 0)
        return rc;
    if ((rc = weft__bind(s, &a)) < 0)
        goto fail;
    if ((rc = weft__listen(s, backlog)) < 0) {
        /* The file is the one bind just made: leave nothing behind. */
        if (is_path(&a))
            unlink(a.u.un.sun_path);
        goto fail;
    }
    *out = weft__sock_handle(s);
    return 0;
fail:
    weft__sock_close(s, false);
    return rc;
}

int weft_unix_accept(weft_sock *lh, weft_sock **out, int64_t timeout_ms)
{
    return weft_accept(lh, out, timeout_ms);
}

int weft_unix_connect(weft_sock **out, const char *path, int64_t timeout_ms)
{
    weft_addr a;
    if (!out)
        return -EINVAL;
    int rc = weft_addr_unix(&a, path);
    if (rc < 0)
        return rc;
    weft__sock *s;
    if ((rc = weft__dial(&s, &a, SOCK_STREAM, timeout_ms)) == 0)
        *out = weft__sock_handle(s);
    return rc;
}

int weft_unix_dgram_open(weft_sock **out, const char *path)
{
    weft_addr a;
    weft__sock *s;
    if (!out)
        return -EINVAL;
    int rc = path ? weft_addr_unix(&a, path) : 0;
    if (rc < 0)
        return rc;
    if ((rc = weft__socket(&s, AF_UNIX, SOCK_DGRAM, 0)) < 0)
        return rc;
    if (path && (rc = weft__bind(s, &a)) < 0) {
        weft__sock_close(s, false);
        return rc;
    }
    *out = weft__sock_handle(s);
    return 0;
}

int weft_socketpair(weft_sock *out[2], int type)
{
    if (!out || (type != SOCK_STREAM && type != SOCK_DGRAM))
        return -EINVAL;
    unsigned flags = weft__sock_flags_for(AF_UNIX, type, 0);
    int sv[2];
    if (weft__sys_socketpair(AF_UNIX, type | SOCK_FLAGS, 0, sv) != 0)
        return -errno;
    weft__sock *a, *b;
    int rc = weft__sock_new(&a, sv[0], flags);
    if (rc < 0)
        goto fail;
    if ((rc = weft__sock_new(&b, sv[1], flags)) < 0) {
        weft__sock_discard(a);
        goto fail;
    }
    out[0] = weft__sock_handle(a);
    out[1] = weft__sock_handle(b);
    return 0;
fail:
    close(sv[0]);
    close(sv[1]);
    return rc;
}

/* ---- passing descriptors -------------------------------------------------- */

static ssize_t do_send_fd(weft__sock *s, void *ctx)
{
    int fd = *(const int *)ctx;
    char byte = 0;
    struct iovec v = {&byte, 1};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr m = {
        .msg_iov = &v, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    ssize_t r = weft__sys_sendmsg(s->pe.fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r >= 0)
        return 0; /* one byte: all or nothing */
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

/* Descriptors pass only over unix sockets: any other family would take
 * the byte and drop the descriptor (or, receiving, eat a data byte); a
 * layer (TLS) owns the byte stream. */
static bool passes_fds(const weft__sock *s)
{
    int dom = 0;
    socklen_t len = sizeof dom;
    return !s->ops && getsockopt(s->pe.fd, SOL_SOCKET, SO_DOMAIN, &dom, &len) == 0 &&
           dom == AF_UNIX;
}

int weft_send_fd(weft_sock *h, int fd, int64_t timeout_ms)
{
    WEFT__SOCK_ENTER(s, h);
    if (fd < 0)
        return -EBADF;
    if (!passes_fds(s))
        return -EINVAL;
    return (int)weft__sock_io(s, WEFT__EV_OUT, timeout_ms, do_send_fd, &fd);
}

/* Closes every descriptor the control messages of m carried. */
static void close_fds(struct msghdr *m)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t k = 0; k < n; k++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + k * sizeof fd, sizeof fd);
            close(fd);
        }
    }
}

static ssize_t do_recv_fd(weft__sock *s, void *ctx)
{
    int *out = ctx;
    char byte;
    struct iovec v = {&byte, 1};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * RECV_FD_MAX)];
    } ctl;
    struct msghdr m = {
        .msg_iov = &v, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    ssize_t r = weft__sys_recvmsg(s->pe.fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (r < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    int count = 0, first = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue; /* credentials or the like: nothing to own */
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        if (n > 0 && first < 0)
            memcpy(&first, CMSG_DATA(c), sizeof first);
        count += (int)n;
    }
    if (count == 1 && !(m.msg_flags & MSG_CTRUNC)) {
        *out = first;
        return 1;
    }
    if (count > 0 || (m.msg_flags & MSG_CTRUNC)) {
        /* Not the one descriptor weft_send_fd sends: whatever came (the
         * kernel already dropped what did not fit) is closed, not leaked. */
        close_fds(&m);
        return -EBADMSG;
    }
    return r == 0 ? 0 : -EBADMSG; /* end of stream, or bytes without a descriptor */
}

int weft_recv_fd(weft_sock *h, int *fd, int64_t timeout_ms)
{
    WEFT__SOCK_ENTER(s, h);
    if (!fd || !passes_fds(s))
        return -EINVAL;
    return (int)weft__sock_io(s, WEFT__EV_IN, timeout_ms, do_recv_fd, fd);
}
