/*
 * sockopt.c - socket options a network program usually sets: Nagle,
 * keepalive timing, buffer sizes, and the descriptor's blocking mode.
 */
#include "sock.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

static int set_int(weft__sock *s, int level, int name, int v)
{
    return setsockopt(s->pe.fd, level, name, &v, sizeof v) == 0 ? 0 : -errno;
}

int weft_sock_set_nodelay(weft_sock *h, int on)
{
    WEFT__SOCK_ENTER(s, h);
    return set_int(s, IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0);
}

int weft_sock_set_keepalive(weft_sock *h, int on, int idle_s, int interval_s, int count)
{
    WEFT__SOCK_ENTER(s, h);
    int rc = set_int(s, SOL_SOCKET, SO_KEEPALIVE, on ? 1 : 0);
    if (rc < 0 || !on)
        return rc;
    if (idle_s > 0 && (rc = set_int(s, IPPROTO_TCP, TCP_KEEPIDLE, idle_s)) < 0)
        return rc;
    if (interval_s > 0 && (rc = set_int(s, IPPROTO_TCP, TCP_KEEPINTVL, interval_s)) < 0)
        return rc;
    if (count > 0 && (rc = set_int(s, IPPROTO_TCP, TCP_KEEPCNT, count)) < 0)
        return rc;
    return 0;
}

int weft_sock_set_bufsize(weft_sock *h, int rcvbuf, int sndbuf)
{
    WEFT__SOCK_ENTER(s, h);
    int rc = 0;
    if (rcvbuf < 0 || sndbuf < 0)
        return -EINVAL;
    if (rcvbuf > 0 && (rc = set_int(s, SOL_SOCKET, SO_RCVBUF, rcvbuf)) < 0)
        return rc;
    if (sndbuf > 0 && (rc = set_int(s, SOL_SOCKET, SO_SNDBUF, sndbuf)) < 0)
        return rc;
    return 0;
}

int weft_sock_set_blocking(weft_sock *h, int on)
{
    WEFT__SOCK_ENTER(s, h);
    int fl = fcntl(s->pe.fd, F_GETFL);
    if (fl < 0)
        return -errno;
    fl = on ? fl & ~O_NONBLOCK : fl | O_NONBLOCK;
    if (fcntl(s->pe.fd, F_SETFL, fl) != 0)
        return -errno;
    if (on)
        s->flags |= WEFT__SOCK_FDBLOCK;
    else
        s->flags &= ~(unsigned)WEFT__SOCK_FDBLOCK;
    return 0;
}
