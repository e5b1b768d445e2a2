/*
 * udp.c - UDP over the socket core: open, bind and connect by numeric
 * host, multicast membership and the multicast and broadcast options.
 * Datagrams move through dgram.c's weft_sendto/weft_recvfrom and the
 * batch calls, or weft_send/weft_recv once connected.
 *
 * IPv6 sockets are dual-stack, so an IPv4 host given to one is used as
 * its IPv4-mapped form (::ffff:a.b.c.d), and IPv4 multicast groups are
 * joined on it at the IPv4 level, where Linux keeps their membership.
 */
#include "sock.h"

#include <net/if.h>
#include <netinet/in.h>
#include <string.h>

/* The socket's address family; -EBADF, or -EINVAL for a stream socket. */
static int family_of(const weft__sock *s)
{
    if (s->ops || (s->flags & (WEFT__SOCK_STREAM | WEFT__SOCK_LISTEN)))
        return -EINVAL;
    int fam;
    socklen_t len = sizeof fam;
    if (getsockopt(s->pe.fd, SOL_SOCKET, SO_DOMAIN, &fam, &len) != 0)
        return -errno;
    return fam;
}

static void map_v4_to_v6(weft_addr *a)
{
    struct sockaddr_in in = a->u.in;
    memset(&a->u, 0, sizeof a->u);
    a->u.in6.sin6_family = AF_INET6;
    a->u.in6.sin6_port = in.sin_port;
    a->u.in6.sin6_addr.s6_addr[10] = 0xff;
    a->u.in6.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&a->u.in6.sin6_addr.s6_addr[12], &in.sin_addr, 4);
    a->len = sizeof a->u.in6;
}

static void unmap_v6_to_v4(weft_addr *a)
{
    struct sockaddr_in6 in6 = a->u.in6;
    memset(&a->u, 0, sizeof a->u);
    a->u.in.sin_family = AF_INET;
    a->u.in.sin_port = in6.sin6_port;
    memcpy(&a->u.in.sin_addr, &in6.sin6_addr.s6_addr[12], 4);
    a->len = sizeof a->u.in;
}

/* Parses host:port into an address of family fam (AF_INET or AF_INET6):
 * "*" or NULL is that family's any-address, an IPv4 host on an IPv6
 * socket becomes IPv4-mapped, an IPv6 host on an IPv4 socket is -EINVAL
 * unless it is IPv4-mapped itself. */
static int addr_for(int fam, const char *host, int port, weft_addr *out)
{
    int rc = weft_addr_parse(out, host, port);
    if (rc < 0)
        return rc;
    int got = out->u.sa.sa_family;
    if (fam == AF_INET6 && got == AF_INET) {
        map_v4_to_v6(out);
    } else if (fam == AF_INET && got == AF_INET6) {
        if (!host || strcmp(host, "*") == 0) {
            memset(out, 0, sizeof *out);
            out->u.in.sin_family = AF_INET;
            out->u.in.sin_port = htons((uint16_t)port);
            out->u.in.sin_addr.s_addr = htonl(INADDR_ANY);
            out->len = sizeof out->u.in;
        } else if (IN6_IS_ADDR_V4MAPPED(&out->u.in6.sin6_addr)) {
            unmap_v6_to_v4(out);
        } else {
            return -EINVAL;
        }
    } else if (fam != AF_INET && fam != AF_INET6) {
        return -EINVAL; /* not an IP socket */
    }
    return 0;
}

int weft_udp_open(weft_sock **out, int family)
{
    if (!out)
        return -EINVAL;
    if (family != AF_INET && family != AF_INET6)
        return -EAFNOSUPPORT;
    return weft_socket(out, family, SOCK_DGRAM, IPPROTO_UDP);
}

int weft_udp_bind(weft_sock *h, const char *host, int port)
{
    WEFT__SOCK_ENTER(s, h);
    int fam = family_of(s);
    if (fam < 0)
        return fam;
    weft_addr a;
    int rc = addr_for(fam, host, port, &a);
    if (rc < 0)
        return rc;
    return weft__bind(s, &a);
}

int weft_udp_connect(weft_sock *h, const char *host, int port)
{
    WEFT__SOCK_ENTER(s, h);
    int fam = family_of(s);
    if (fam < 0)
        return fam;
    weft_addr a;
    if (!host) {
        /* AF_UNSPEC: the kernel forgets the peer (and a port it chose at
         * connect, if the socket was never bound). */
        memset(&a, 0, sizeof a);
        return weft__connect(s, &a, 0);
    }
    if (strcmp(host, "*") == 0 || port == 0)
        return -EINVAL;
    int rc = addr_for(fam, host, port, &a);
    if (rc < 0)
        return rc;
    return weft__connect(s, &a, 0);
}

/* Joins or leaves group on iface with the protocol-independent
 * MCAST_JOIN_GROUP/MCAST_LEAVE_GROUP requests. */
static int membership(weft__sock *s, const char *group, const char *iface, bool join)
{
    int fam = family_of(s);
    if (fam < 0)
        return fam;
    if (!group || strcmp(group, "*") == 0)
        return -EINVAL;
    weft_addr g;
    int rc = weft_addr_parse(&g, group, 0);
    if (rc < 0)
        return rc;
    if (g.u.sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&g.u.in6.sin6_addr))
        unmap_v6_to_v4(&g);
    if (fam != AF_INET && fam != AF_INET6)
        return -EINVAL;
    if (fam == AF_INET && g.u.sa.sa_family != AF_INET)
        return -EINVAL; /* an IPv6 group on an IPv4 socket */
    struct group_req req;
    memset(&req, 0, sizeof req);
    if (iface) {
        req.gr_interface = if_nametoindex(iface);
        if (req.gr_interface == 0)
            return -ENODEV;
    } else if (g.u.sa.sa_family == AF_INET6) {
        req.gr_interface = g.u.in6.sin6_scope_id; /* "ff02::1%lo" names its own */
    }
    memcpy(&req.gr_group, &g.u, g.len);
    /* An IPv4 group's membership lives at the IPv4 level, also on a
     * dual-stack IPv6 socket. */
    int level = g.u.sa.sa_family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
    int opt = join ? MCAST_JOIN_GROUP : MCAST_LEAVE_GROUP;
    if (setsockopt(s->pe.fd, level, opt, &req, sizeof req) != 0)
        return -errno;
    return 0;
}

int weft_udp_join(weft_sock *h, const char *group, const char *iface)
{
    WEFT__SOCK_ENTER(s, h);
    return membership(s, group, iface, true);
}

int weft_udp_leave(weft_sock *h, const char *group, const char *iface)
{
    WEFT__SOCK_ENTER(s, h);
    return membership(s, group, iface, false);
}

/* Sets an IPv4 multicast option, and on IPv6 sockets its IPv6 twin too
 * (the IPv4 one then covers datagrams to IPv4 groups; it is best effort
 * there, for kernels that refuse IPv4 options on IPv6 sockets). */
static int set_mcast(weft__sock *s, int v4opt, int v6opt, int v)
{
    int fam = family_of(s);
    if (fam < 0)
        return fam;
    if (fam == AF_INET)
        return setsockopt(s->pe.fd, IPPROTO_IP, v4opt, &v, sizeof v) == 0 ? 0 : -errno;
    if (fam != AF_INET6)
        return -EINVAL;
    if (setsockopt(s->pe.fd, IPPROTO_IPV6, v6opt, &v, sizeof v) != 0)
        return -errno;
    setsockopt(s->pe.fd, IPPROTO_IP, v4opt, &v, sizeof v);
    return 0;
}

int weft_udp_set_ttl(weft_sock *h, int ttl)
{
    WEFT__SOCK_ENTER(s, h);
    if (ttl < 0 || ttl > 255)
        return -EINVAL;
    return set_mcast(s, IP_MULTICAST_TTL, IPV6_MULTICAST_HOPS, ttl);
}

int weft_udp_set_loop(weft_sock *h, int on)
{
    WEFT__SOCK_ENTER(s, h);
    return set_mcast(s, IP_MULTICAST_LOOP, IPV6_MULTICAST_LOOP, on ? 1 : 0);
}

int weft_udp_set_mcast_iface(weft_sock *h, const char *iface)
{
    WEFT__SOCK_ENTER(s, h);
    int fam = family_of(s);
    if (fam < 0)
        return fam;
    if (fam != AF_INET && fam != AF_INET6)
        return -EINVAL;
    int index = 0;
    if (iface && (index = (int)if_nametoindex(iface)) == 0)
        return -ENODEV;
    /* By index (ip_mreqn), not by address: an interface need not have one. */
    struct ip_mreqn m;
    memset(&m, 0, sizeof m);
    m.imr_ifindex = index;
    if (fam == AF_INET)
        return setsockopt(s->pe.fd, IPPROTO_IP, IP_MULTICAST_IF, &m, sizeof m) == 0 ? 0 : -errno;
    if (setsockopt(s->pe.fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &index, sizeof index) != 0)
        return -errno;
    setsockopt(s->pe.fd, IPPROTO_IP, IP_MULTICAST_IF, &m, sizeof m); /* IPv4 groups, as set_mcast */
    return 0;
}

int weft_udp_set_broadcast(weft_sock *h, int on)
{
    WEFT__SOCK_ENTER(s, h);
    int fam = family_of(s);
    if (fam < 0)
        return fam;
    if (fam != AF_INET && fam != AF_INET6)
        return -EINVAL;
    int v = on ? 1 : 0;
    return setsockopt(s->pe.fd, SOL_SOCKET, SO_BROADCAST, &v, sizeof v) == 0 ? 0 : -errno;
}
