/*
 * tcp.c - TCP over the socket core: listen, accept and connect, IPv4 and
 * IPv6.  Data moves through the socket core's weft_recv/weft_send.
 */
#include "sock.h"

#include <string.h>

static int listen_on(weft_sock **out, const weft_addr *a, int backlog, int flags)
{
    weft_sock *s;
    int rc = weft_socket(&s, a->u.sa.sa_family, SOCK_STREAM, 0); /* IPv6: dual-stack */
    if (rc < 0)
        return rc;
    int fd = s->pe.fd, one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if ((flags & WEFT_REUSEPORT) && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        rc = -errno;
    else if (a->u.sa.sa_family == AF_INET6 && (flags & WEFT_V6ONLY) &&
             setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
        rc = -errno;
    if (rc == 0 && (rc = weft_bind(s, a)) == 0)
        rc = weft_listen(s, backlog);
    if (rc < 0) {
        weft__sock_close(s, false);
        return rc;
    }
    *out = s;
    return 0;
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
    return weft__dial(out, &a, SOCK_STREAM, timeout_ms);
}
