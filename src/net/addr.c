/*
 * addr.c - numeric addresses: parsing "127.0.0.1", "::1", "[::1]",
 * "fe80::1%eth0" with a port into a weft_addr, and formatting one back.
 * Names are the resolver's business, not this file's.
 */
#include "sock.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

int weft_addr_parse(weft_addr *out, const char *host, int port)
{
    if (!out || port < 0 || port > 65535)
        return -EINVAL;
    weft_addr a;
    memset(&a, 0, sizeof a);
    if (!host || strcmp(host, "*") == 0) {
        a.u.in6.sin6_family = AF_INET6;
        a.u.in6.sin6_addr = in6addr_any;
        a.u.in6.sin6_port = htons((uint16_t)port);
        a.len = sizeof a.u.in6;
        *out = a;
        return 0;
    }
    if (inet_pton(AF_INET, host, &a.u.in.sin_addr) == 1) {
        a.u.in.sin_family = AF_INET;
        a.u.in.sin_port = htons((uint16_t)port);
        a.len = sizeof a.u.in;
        *out = a;
        return 0;
    }
    char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 4];
    size_t n = strlen(host);
    if (n >= sizeof buf)
        return -EINVAL;
    memcpy(buf, host, n + 1);
    char *h = buf;
    if (h[0] == '[') {
        if (n < 2 || h[n - 1] != ']')
            return -EINVAL;
        h[n - 1] = '\0';
        h++;
    }
    char *zone = strchr(h, '%');
    if (zone) {
        *zone++ = '\0';
        unsigned idx = if_nametoindex(zone);
        if (!idx) {
            char *end;
            unsigned long v = strtoul(zone, &end, 10);
            if (*zone == '\0' || *end != '\0' || v > UINT32_MAX)
                return -EINVAL;
            idx = (unsigned)v;
        }
        a.u.in6.sin6_scope_id = idx;
    }
    if (inet_pton(AF_INET6, h, &a.u.in6.sin6_addr) != 1)
        return -EINVAL;
    a.u.in6.sin6_family = AF_INET6;
    a.u.in6.sin6_port = htons((uint16_t)port);
    a.len = sizeof a.u.in6;
    *out = a;
    return 0;
}

int weft_addr_port(const weft_addr *a)
{
    if (a && a->u.sa.sa_family == AF_INET)
        return ntohs(a->u.in.sin_port);
    if (a && a->u.sa.sa_family == AF_INET6)
        return ntohs(a->u.in6.sin6_port);
    return -EAFNOSUPPORT;
}

int weft_addr_format(const weft_addr *a, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    char tmp[sizeof(struct sockaddr_un) + 16]; /* the longest: a unix path */
    int n;
    if (!a || (!buf && len) || a->len > sizeof a->u)
        return -EINVAL;
    switch (a->u.sa.sa_family) {
    case AF_INET:
        inet_ntop(AF_INET, &a->u.in.sin_addr, host, sizeof host);
        n = snprintf(tmp, sizeof tmp, "%s:%u", host, ntohs(a->u.in.sin_port));
        break;
    case AF_INET6:
        inet_ntop(AF_INET6, &a->u.in6.sin6_addr, host, sizeof host);
        if (a->u.in6.sin6_scope_id) {
            char ifn[IF_NAMESIZE];
            size_t hl = strlen(host);
            if (if_indextoname(a->u.in6.sin6_scope_id, ifn))
                snprintf(host + hl, sizeof host - hl, "%%%s", ifn);
            else
                snprintf(host + hl, sizeof host - hl, "%%%u", a->u.in6.sin6_scope_id);
        }
        n = snprintf(tmp, sizeof tmp, "[%s]:%u", host, ntohs(a->u.in6.sin6_port));
        break;
    case AF_UNIX: {
        /* len comes from the user: never past sun_path, whatever it says. */
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t plen = a->len > off ? a->len - off : 0;
        if (plen > sizeof a->u.un.sun_path)
            plen = sizeof a->u.un.sun_path;
        const char *p = a->u.un.sun_path;
        if (plen > 0 && p[0] == '\0') { /* Linux abstract name: shown as @name */
            n = snprintf(tmp, sizeof tmp, "@%.*s", (int)(plen - 1), p + 1);
        } else {
            int pl = (int)strnlen(p, plen ? plen : sizeof a->u.un.sun_path);
            n = snprintf(tmp, sizeof tmp, "%.*s", pl, p);
        }
        break;
    }
    default:
        return -EAFNOSUPPORT;
    }
    if ((size_t)n >= len) {
        if (len) {
            memcpy(buf, tmp, len - 1);
            buf[len - 1] = '\0';
        }
        return -ENOSPC;
    }
    memcpy(buf, tmp, (size_t)n + 1);
    return n;
}
