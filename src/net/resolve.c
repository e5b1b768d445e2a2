/*
 * resolve.c - weft_resolve: hints, services, the hosts that never reach a
 * resolver (numeric, "*", NULL, unix paths, localhost), and the list users
 * walk.
 *
 * Names go to one of two lookups with the same contract (names.h): c-ares
 * driven by the loop's poller (resolve_ares.c), or getaddrinfo on worker
 * threads (resolve_system.c).  A lookup returns bare addresses; this file
 * turns each into one entry per socket type, with the port set.
 */
#include "sock.h"
#include "names.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct weft_addrinfo {
    weft_addrinfo *next;
    int family, socktype, protocol;
    char *canonname;
    weft_addr addr;
};

#define ALL_FLAGS                                                                                  \
    (WEFT_AI_PASSIVE | WEFT_AI_CANONNAME | WEFT_AI_NUMERICHOST | WEFT_AI_NUMERICSERV |             \
     WEFT_AI_V4MAPPED | WEFT_AI_ADDRCONFIG)

/* The resolver a kind names: 1 system, 0 ares (also NULL and ""), -1
 * neither.  Without c-ares every lookup is the system's. */
static int system_kind(const char *kind)
{
    if (kind && *kind && strcmp(kind, "ares") != 0)
        return strcmp(kind, "system") == 0 ? 1 : -1;
#ifdef WEFT_WITH_ARES
    return 0;
#else
    return 1;
#endif
}

static void names_loop_free(weft_loop *l, void *state)
{
    weft__names_loop *n = state;
#ifdef WEFT_WITH_ARES
    weft__ares_loop_free(l, n);
#endif
    weft__system_loop_free(l, n);
    free(n->dns_servers);
    free(n);
}

static weft__ext_key names_key = {"names", names_loop_free, 0};

weft__names_loop *weft__names_loop_of(weft_loop *l)
{
    return l ? weft__loop_ext(l, &names_key) : NULL;
}

/* Checks and copies cfg's resolver settings for the new loop l. */
static int names_loop_init(weft_loop *l, const weft_config *cfg)
{
    int rc, sys = system_kind(cfg && cfg->resolver ? cfg->resolver : getenv("WEFT_RESOLVER"));
    if (sys < 0)
        return -EINVAL;
    if (cfg && (cfg->dns_timeout_ms < 0 || cfg->dns_tries < 0))
        return -EINVAL;
#ifdef WEFT_WITH_ARES
    /* A list c-ares refuses fails the loop's making, not every lookup. */
    if (cfg && cfg->dns_servers && !sys && (rc = weft__ares_check_servers(cfg->dns_servers)) < 0)
        return rc;
#endif
    weft__names_loop *n = weft__sys_calloc(1, sizeof *n);
    if (!n)
        return -ENOMEM;
    n->system = sys;
    n->dns_timeout_ms = cfg ? cfg->dns_timeout_ms : 0;
    n->dns_tries = cfg ? cfg->dns_tries : 0;
    rc = -ENOMEM;
    if ((!cfg || !cfg->dns_servers || (n->dns_servers = strdup(cfg->dns_servers))) &&
        (rc = weft__loop_ext_set(l, &names_key, n)) == 0)
        return 0;
    free(n->dns_servers);
    free(n);
    return rc;
}

const weft__module weft__names_module = {"names", names_loop_init};

/* ---- the list ---------------------------------------------------------------- */

const weft_addrinfo *weft_addrinfo_next(const weft_addrinfo *ai)
{
    return ai ? ai->next : NULL;
}

const weft_addr *weft_addrinfo_addr(const weft_addrinfo *ai)
{
    return ai ? &ai->addr : NULL;
}

int weft_addrinfo_family(const weft_addrinfo *ai)
{
    return ai ? ai->family : -EINVAL;
}

int weft_addrinfo_socktype(const weft_addrinfo *ai)
{
    return ai ? ai->socktype : -EINVAL;
}

int weft_addrinfo_protocol(const weft_addrinfo *ai)
{
    return ai ? ai->protocol : -EINVAL;
}

const char *weft_addrinfo_canonname(const weft_addrinfo *ai)
{
    return ai ? ai->canonname : NULL;
}

void weft_addrinfo_free(weft_addrinfo *ai)
{
    while (ai) {
        weft_addrinfo *next = ai->next;
        free(ai->canonname);
        free(ai);
        ai = next;
    }
}

void weft__names_result_free(weft__names_result *r)
{
    free(r->addrs);
    free(r->canon);
    r->addrs = NULL;
    r->canon = NULL;
    r->n = 0;
}

int weft__names_result_add(weft__names_result *r, const struct sockaddr *sa, socklen_t len)
{
    if (len > sizeof(((weft_addr *)0)->u))
        return 0;
    for (size_t i = 0; i < r->n; i++) /* the same address for several types */
        if (r->addrs[i].len == len && memcmp(&r->addrs[i].u, sa, len) == 0)
            return 0;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        weft_addr *a = weft__sys_realloc(r->addrs, cap * sizeof *a);
        if (!a)
            return -ENOMEM;
        r->addrs = a;
        r->cap = cap;
    }
    weft_addr *a = &r->addrs[r->n++];
    memset(a, 0, sizeof *a);
    memcpy(&a->u, sa, len);
    a->len = len;
    return 0;
}

/* ---- hosts that need no lookup ---------------------------------------------- */

static int add_any_or_loopback(weft__names_result *r, int family, bool any)
{
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    v6.sin6_addr = any ? in6addr_any : in6addr_loopback;
    v4.sin_addr.s_addr = htonl(any ? INADDR_ANY : INADDR_LOOPBACK);
    int rc = 0;
    if (family != AF_INET)
        rc = weft__names_result_add(r, (struct sockaddr *)&v6, sizeof v6);
    if (rc == 0 && family != AF_INET6)
        rc = weft__names_result_add(r, (struct sockaddr *)&v4, sizeof v4);
    return rc;
}

/* The address families this host has a non-loopback address of, as glibc
 * reads AI_ADDRCONFIG.  A host with neither (loopback only) filters
 * nothing, so that lookups on it still find loopback addresses. */
static void configured_families(bool *v4, bool *v6)
{
    struct ifaddrs *ifs;
    *v4 = *v6 = false;
    if (getifaddrs(&ifs) != 0) {
        *v4 = *v6 = true;
        return;
    }
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr)
            continue;
        if (i->ifa_addr->sa_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)i->ifa_addr;
            if ((ntohl(a->sin_addr.s_addr) >> 24) != 127)
                *v4 = true;
        } else if (i->ifa_addr->sa_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)i->ifa_addr;
            if (!IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) && !IN6_IS_ADDR_LINKLOCAL(&a->sin6_addr))
                *v6 = true;
        }
    }
    freeifaddrs(ifs);
    if (!*v4 && !*v6)
        *v4 = *v6 = true;
}

/* Applies V4MAPPED (family AF_INET6, no IPv6 answer: IPv4 ones mapped) and
 * the family filter to what a lookup of AF_UNSPEC returned. */
static int shape(weft__names_result *r, int family, int flags)
{
    bool has6 = false;
    for (size_t i = 0; i < r->n; i++)
        has6 |= r->addrs[i].u.sa.sa_family == AF_INET6;
    bool map = family == AF_INET6 && (flags & WEFT_AI_V4MAPPED) && !has6;
    bool ok4 = true, ok6 = true;
    if (flags & WEFT_AI_ADDRCONFIG)
        configured_families(&ok4, &ok6);
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++) {
        weft_addr a = r->addrs[i];
        int f = a.u.sa.sa_family;
        if (f == AF_INET && map) {
            struct sockaddr_in6 m = {.sin6_family = AF_INET6};
            m.sin6_addr.s6_addr[10] = m.sin6_addr.s6_addr[11] = 0xff;
            memcpy(&m.sin6_addr.s6_addr[12], &a.u.in.sin_addr, 4);
            memset(&a, 0, sizeof a);
            memcpy(&a.u.in6, &m, sizeof m);
            a.len = sizeof m;
            f = AF_INET6;
        }
        if ((family && f != family) || (f == AF_INET && !ok4) || (f == AF_INET6 && !ok6))
            continue;
        r->addrs[k++] = a;
    }
    r->n = k;
    return k ? 0 : WEFT_EAI_NODATA;
}

/* Host names as DNS carries them: 1..253 bytes of letters, digits,
 * hyphens, underscores and dots (IDNs arrive as punycode), no empty
 * label.  Anything else (a colon, a bracket, a space) cannot be a host. */
bool weft__names_valid(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > 254 || (n == 254 && h[253] != '.'))
        return false;
    size_t label = 0;
    for (const char *p = h; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!(c == '.' || c == '-' || c == '_' || (c >= '0' && c <= '9') ||
              ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')))
            return false;
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (++label > 63) {
            return false;
        }
    }
    return true;
}

/* "localhost" and the names under it, any case, with or without the final
 * dot: the loopback's by RFC 6761, whatever a hosts file or a server says. */
static bool is_localhost(const char *h)
{
    size_t n = strlen(h);
    if (n > 0 && h[n - 1] == '.')
        n--;
    if (n < 9 || strncasecmp(h + n - 9, "localhost", 9) != 0)
        return false;
    return n == 9 || h[n - 10] == '.';
}

/* ---- services ---------------------------------------------------------------- */

/* The port of service for socket type type (0: either), or a
 * WEFT_EAI_SERVICE. */
static int service_port(const char *service, int type, int flags)
{
    if (!service || !*service)
        return 0;
    char *end;
    long v = strtol(service, &end, 10);
    if (*end == '\0')
        return v >= 0 && v <= 65535 ? (int)v : WEFT_EAI_SERVICE;
    if (flags & WEFT_AI_NUMERICSERV)
        return WEFT_EAI_SERVICE;
    struct servent se, *res = NULL;
    char buf[1024];
    const char *protos[2] = {"tcp", "udp"};
    for (int i = 0; i < 2; i++) {
        if ((type == SOCK_STREAM && i == 1) || (type == SOCK_DGRAM && i == 0))
            continue;
        if (getservbyname_r(service, protos[i], &se, buf, sizeof buf, &res) == 0 && res)
            return ntohs((uint16_t)res->s_port);
    }
    return WEFT_EAI_SERVICE;
}

/* ---- building the list -------------------------------------------------------- */

static int add_entry(weft_addrinfo ***tail, const weft_addr *a, int type, int proto, int port)
{
    weft_addrinfo *ai = weft__sys_calloc(1, sizeof *ai);
    if (!ai)
        return -ENOMEM;
    ai->addr = *a;
    ai->family = a->u.sa.sa_family;
    ai->socktype = type;
    ai->protocol = proto;
    if (ai->family == AF_INET)
        ai->addr.u.in.sin_port = htons((uint16_t)port);
    else if (ai->family == AF_INET6)
        ai->addr.u.in6.sin6_port = htons((uint16_t)port);
    **tail = ai;
    *tail = &ai->next;
    return 0;
}

static int default_protocol(int family, int type)
{
    if (family == AF_UNIX)
        return 0;
    return type == SOCK_STREAM ? IPPROTO_TCP : type == SOCK_DGRAM ? IPPROTO_UDP : 0;
}

/* One entry per address and socket type (stream then datagram when the
 * hints leave the type open; a type the service has no port for is left
 * out, so a udp-only service still gives its datagram entries). */
static int build(weft_addrinfo **out, const weft__names_result *r, const weft_hints *h,
                 const char *service)
{
    int types[2] = {h->socktype, 0}, ports[2];
    int ntypes = 1;
    if (h->socktype == 0) {
        types[0] = SOCK_STREAM;
        types[1] = SOCK_DGRAM;
        ntypes = 2;
    }
    bool any = false;
    for (int t = 0; t < ntypes; t++) { /* once, not per address: /etc/services is a file */
        ports[t] = service_port(service, types[t], h->flags);
        any |= ports[t] >= 0;
    }
    if (!any)
        return WEFT_EAI_SERVICE;
    weft_addrinfo *head = NULL, **tail = &head;
    int rc = 0;
    for (size_t i = 0; i < r->n && rc == 0; i++) {
        for (int t = 0; t < ntypes && rc == 0; t++) {
            if (ports[t] < 0)
                continue;
            int proto = h->protocol ? h->protocol : default_protocol(h->family, types[t]);
            rc = add_entry(&tail, &r->addrs[i], types[t], proto, ports[t]);
        }
    }
    if (rc == 0 && (h->flags & WEFT_AI_CANONNAME) && r->canon) {
        if (!(head->canonname = strdup(r->canon)))
            rc = -ENOMEM;
    }
    if (rc < 0) {
        weft_addrinfo_free(head);
        return rc;
    }
    *out = head;
    return 0;
}

static int resolve_unix(weft_addrinfo **out, const char *path, const weft_hints *h)
{
    weft_addr a;
    if (!path)
        return -EINVAL;
    int rc = weft_addr_unix(&a, path);
    if (rc < 0)
        return rc;
    weft_addrinfo *ai = weft__sys_calloc(1, sizeof *ai);
    if (!ai)
        return -ENOMEM;
    ai->addr = a;
    ai->family = AF_UNIX;
    ai->socktype = h->socktype ? h->socktype : SOCK_STREAM;
    ai->protocol = h->protocol;
    *out = ai;
    return 0;
}

int weft_resolve(weft_addrinfo **out, const char *host, const char *service,
                 const weft_hints *hints, int64_t timeout_ms)
{
    return weft__resolve(out, host, service, hints, weft__deadline(timeout_ms));
}

int weft__resolve(weft_addrinfo **out, const char *host, const char *service,
                  const weft_hints *hints, int64_t deadline)
{
    weft_hints h = hints ? *hints : (weft_hints){0};
    if (!out || (h.flags & ~ALL_FLAGS))
        return -EINVAL;
    if (h.family != 0 && h.family != AF_INET && h.family != AF_INET6 && h.family != AF_UNIX)
        return WEFT_EAI_FAMILY;
    if (h.socktype != 0 && h.socktype != SOCK_STREAM && h.socktype != SOCK_DGRAM &&
        h.socktype != SOCK_RAW && h.socktype != SOCK_SEQPACKET)
        return -EINVAL;
    if (h.family == AF_UNIX)
        return resolve_unix(out, host, &h);
    int port = service_port(service, h.socktype, h.flags); /* before any lookup */
    if (port < 0)
        return port;

    weft__names_result r = {0};
    int rc;
    weft_addr num;
    if (!host || strcmp(host, "*") == 0) {
        bool any = host || (h.flags & WEFT_AI_PASSIVE);
        rc = add_any_or_loopback(&r, h.family, any);
    } else if (*host && weft_addr_parse(&num, host, 0) == 0) {
        rc = weft__names_result_add(&r, &num.u.sa, num.len);
    } else if (h.flags & WEFT_AI_NUMERICHOST) {
        return WEFT_EAI_NONAME;
    } else if (!weft__names_valid(host)) {
        return WEFT_EAI_BADNAME;
    } else if (is_localhost(host)) {
        /* No resolver asked: c-ares 1.18 leaks when /etc/hosts has no ::1
         * line, and a name under localhost must not go to a server. */
        rc = add_any_or_loopback(&r, h.family, false);
        if (rc == 0 && (h.flags & WEFT_AI_CANONNAME) && !(r.canon = strdup(host)))
            rc = -ENOMEM;
    } else {
        /* Ask for every family when IPv4 answers may have to be mapped. */
        int fam = h.family == AF_INET6 && (h.flags & WEFT_AI_V4MAPPED) ? 0 : h.family;
        bool canon = h.flags & WEFT_AI_CANONNAME;
#ifdef WEFT_WITH_ARES
        weft__names_loop *n = weft__names_loop_of(weft__tls_loop);
        if (!(n ? n->system : system_kind(getenv("WEFT_RESOLVER")) == 1))
            rc = weft__ares_lookup(&r, host, fam, canon, deadline);
        else
#endif
            rc = weft__system_lookup(&r, host, fam, canon, deadline);
    }
    if (rc == 0)
        rc = shape(&r, h.family, h.flags);
    if (rc == 0)
        rc = build(out, &r, &h, service);
    weft__names_result_free(&r);
    return rc;
}
