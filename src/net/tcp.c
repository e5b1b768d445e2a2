/*
 * tcp.c - TCP over the socket core: listen, accept and connect, IPv4 and
 * IPv6.  Data moves through the socket core's weft_recv/weft_send.
 */
#include "sock.h"

#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>

static int listen_on(weft__sock **out, const weft_addr *a, int backlog, int flags)
{
    weft__sock *s;
    int rc = weft__socket(&s, a->u.sa.sa_family, SOCK_STREAM, 0); /* IPv6: dual-stack */
    if (rc < 0)
        return rc;
    int fd = s->pe.fd, one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if ((flags & WEFT_REUSEPORT) && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        rc = -errno;
    else if (a->u.sa.sa_family == AF_INET6 && (flags & WEFT_V6ONLY) &&
             setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
        rc = -errno;
    else if ((flags & WEFT_DEFER_ACCEPT) &&
             setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &one, sizeof one) != 0)
        rc = -errno; /* one second: a silent client is accepted after a SYN-ACK resent */
    if (rc == 0 && (rc = weft__bind(s, a)) == 0)
        rc = weft__listen(s, backlog);
    if (rc < 0) {
        weft__sock_close(s, false);
        return rc;
    }
    *out = s;
    return 0;
}

/* Listens on a name: on one of its addresses, an IPv4 one if it has any,
 * as Go's net.Listen does ("localhost" is then 127.0.0.1, which every
 * client reaches). */
static int listen_name(weft__sock **out, const char *host, int port, int backlog, int flags)
{
    char service[8];
    snprintf(service, sizeof service, "%d", port);
    weft_hints h = {.socktype = SOCK_STREAM, .flags = WEFT_AI_PASSIVE};
    weft_addrinfo *list;
    int rc = weft__resolve(&list, host, service, &h, weft__deadline(-1));
    if (rc < 0)
        return rc;
    const weft_addrinfo *pick = list;
    for (const weft_addrinfo *ai = list; ai; ai = weft_addrinfo_next(ai)) {
        if (weft_addrinfo_family(ai) == AF_INET) {
            pick = ai;
            break;
        }
    }
    rc = listen_on(out, weft_addrinfo_addr(pick), backlog, flags);
    weft_addrinfo_free(list);
    return rc;
}

int weft_tcp_listen(weft_sock **out, const char *host, int port, int backlog, int flags)
{
    weft_addr a;
    if (!out || (flags & ~(WEFT_REUSEPORT | WEFT_V6ONLY | WEFT_DEFER_ACCEPT)) || port < 0 ||
        port > 65535 ||
        (host && !*host))
        return -EINVAL;
    weft__sock *s;
    int rc;
    if (weft_addr_parse(&a, host, port) < 0) {
        rc = listen_name(&s, host, port, backlog, flags);
    } else {
        bool any = !host || strcmp(host, "*") == 0;
        rc = listen_on(&s, &a, backlog, flags);
        if (rc == -EAFNOSUPPORT && any && !(flags & WEFT_V6ONLY)) {
            /* A kernel without IPv6: all interfaces means all IPv4 ones. */
            memset(&a, 0, sizeof a);
            a.u.in.sin_family = AF_INET;
            a.u.in.sin_port = htons((uint16_t)port);
            a.u.in.sin_addr.s_addr = htonl(INADDR_ANY);
            a.len = sizeof a.u.in;
            rc = listen_on(&s, &a, backlog, flags);
        }
    }
    if (rc == 0)
        *out = weft__sock_handle(s);
    return rc;
}

int weft_tcp_accept(weft_sock *lh, weft_sock **out, int64_t timeout_ms)
{
    return weft_accept(lh, out, timeout_ms);
}

int weft_tcp_connect(weft_sock **out, const char *host, int port, int64_t timeout_ms)
{
    weft_addr a;
    if (!out || !host || port <= 0 || port > 65535)
        return -EINVAL;
    weft__sock *s;
    int rc;
    if (weft_addr_parse(&a, host, port) < 0)
        rc = weft__connect_name(&s, host, port, weft__deadline(timeout_ms));
    else
        rc = weft__dial(&s, &a, SOCK_STREAM, timeout_ms);
    if (rc == 0)
        *out = weft__sock_handle(s);
    return rc;
}
