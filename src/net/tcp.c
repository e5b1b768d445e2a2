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

int weft_tcp_accept(weft_sock *l, weft_sock **out, int64_t timeout_ms)
{
    return weft_accept(l, out, timeout_ms);
}

int weft_tcp_connect(weft_sock **out, const char *host, int port, int64_t timeout_ms)
{
    weft_addr a;
    if (!out || !host || port <= 0 || port > 65535)
        return -EINVAL;
    int rc = weft_addr_parse(&a, host, port);
    if (rc < 0)
        return weft__connect_name(out, host, port, weft__deadline(timeout_ms));
    weft_sock *s;
    if ((rc = weft_socket(&s, a.u.sa.sa_family, SOCK_STREAM, 0)) < 0)
        return rc;
    if ((rc = weft_connect(s, &a, timeout_ms)) < 0) {
        weft__sock_close(s, false);
        return rc;
    }
    *out = s;
    return 0;
}
