/*
 * test_addr.c - the address and error-name helpers: weft_addr_parse on good
 * and bad numeric hosts, ports and IPv6 zones; weft_addr_format for IPv4,
 * IPv6, unix paths and abstract names, including -ENOSPC truncation and
 * unknown families; weft_addr_port; weft_strerror and weft_err_name over
 * every Linux errno and for codes weft does not know.
 * Pure functions: no loop, no sockets.
 */
#include "helpers.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <limits.h>
#include <net/if.h>
#include <stddef.h>
#include <stdio.h>
#include <strings.h>

/* A weft_addr full of junk, so a failed call that wrote to it shows. */
static void poison(weft_addr *a)
{
    memset(a, 0xAB, sizeof *a);
}

static bool still_poisoned(const weft_addr *a)
{
    const unsigned char *p = (const unsigned char *)a;
    for (size_t i = 0; i < sizeof *a; i++)
        if (p[i] != 0xAB)
            return false;
    return true;
}

/* ---- parse ---------------------------------------------------------------- */

Test(addr_parse, ipv4_loopback, .timeout = 15)
{
    weft_addr a;
    poison(&a);
    cr_assert_eq(weft_addr_parse(&a, "127.0.0.1", 80), 0);
    cr_assert_eq(a.u.sa.sa_family, AF_INET);
    cr_assert_eq(a.len, sizeof(struct sockaddr_in));
    cr_assert_eq(a.u.in.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    cr_assert_eq(ntohs(a.u.in.sin_port), 80);
    cr_assert_eq(weft_addr_port(&a), 80);
}

Test(addr_parse, ipv6_loopback_plain_and_bracketed, .timeout = 15)
{
    const char *hosts[] = {"::1", "[::1]"};
    for (size_t i = 0; i < 2; i++) {
        weft_addr a;
        poison(&a);
        cr_assert_eq(weft_addr_parse(&a, hosts[i], 443), 0, "%s", hosts[i]);
        cr_assert_eq(a.u.sa.sa_family, AF_INET6, "%s", hosts[i]);
        cr_assert_eq(a.len, sizeof(struct sockaddr_in6));
        cr_assert(IN6_IS_ADDR_LOOPBACK(&a.u.in6.sin6_addr), "%s", hosts[i]);
        cr_assert_eq(a.u.in6.sin6_scope_id, 0);
        cr_assert_eq(weft_addr_port(&a), 443);
    }
}

Test(addr_parse, ipv4_mapped_ipv6, .timeout = 15)
{
    weft_addr a;
    cr_assert_eq(weft_addr_parse(&a, "::ffff:1.2.3.4", 7), 0);
    cr_assert_eq(a.u.sa.sa_family, AF_INET6);
    cr_assert(IN6_IS_ADDR_V4MAPPED(&a.u.in6.sin6_addr));
    const uint8_t *b = a.u.in6.sin6_addr.s6_addr;
    cr_assert(b[12] == 1 && b[13] == 2 && b[14] == 3 && b[15] == 4);
    cr_assert_eq(weft_addr_port(&a), 7);
}

Test(addr_parse, null_and_star_are_ipv6_any, .timeout = 15)
{
    const char *hosts[] = {NULL, "*"};
    for (size_t i = 0; i < 2; i++) {
        weft_addr a;
        poison(&a);
        cr_assert_eq(weft_addr_parse(&a, hosts[i], 8080), 0);
        cr_assert_eq(a.u.sa.sa_family, AF_INET6);
        cr_assert_eq(a.len, sizeof(struct sockaddr_in6));
        cr_assert(IN6_IS_ADDR_UNSPECIFIED(&a.u.in6.sin6_addr));
        cr_assert_eq(weft_addr_port(&a), 8080);
    }
}

Test(addr_parse, bad_hosts, .timeout = 15)
{
    char longhost[300];
    memset(longhost, '1', sizeof longhost - 1);
    longhost[sizeof longhost - 1] = '\0';
    /* A valid address followed by enough zone to overflow any sane buffer. */
    char longzone[200];
    snprintf(longzone, sizeof longzone, "fe80::1%%%0150d", 1);
    const char *bad[] = {
        "1.2.3",      "::g",       "[::1",        "::1]",       "[]",
        "[",          "",          "1.2.3.4.5",   "256.1.1.1",  "127.0.0.1 ",
        " 127.0.0.1", "localhost", "[127.0.0.1]", "1.2.3.4:80", ":::",
        longhost,     longzone,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        weft_addr a;
        poison(&a);
        cr_expect_eq(weft_addr_parse(&a, bad[i], 80), -EINVAL, "host \"%.40s\"", bad[i]);
        cr_expect(still_poisoned(&a), "host \"%.40s\" wrote *out on failure", bad[i]);
    }
}

Test(addr_parse, port_range, .timeout = 15)
{
    const int bad[] = {-1, 65536, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        weft_addr a;
        poison(&a);
        cr_assert_eq(weft_addr_parse(&a, "127.0.0.1", bad[i]), -EINVAL, "port %d", bad[i]);
        cr_assert_eq(weft_addr_parse(&a, "::1", bad[i]), -EINVAL, "port %d", bad[i]);
        cr_assert_eq(weft_addr_parse(&a, NULL, bad[i]), -EINVAL, "port %d", bad[i]);
        cr_assert(still_poisoned(&a));
    }
    weft_addr a;
    cr_assert_eq(weft_addr_parse(&a, "127.0.0.1", 0), 0);
    cr_assert_eq(weft_addr_port(&a), 0);
    cr_assert_eq(weft_addr_parse(&a, "::1", 65535), 0);
    cr_assert_eq(weft_addr_port(&a), 65535);
}

Test(addr_parse, null_out_is_einval, .timeout = 15)
{
    cr_assert_eq(weft_addr_parse(NULL, "127.0.0.1", 80), -EINVAL);
}

Test(addr_parse, zone_by_name_and_number, .timeout = 15)
{
    unsigned lo = if_nametoindex("lo");
    cr_assert_gt(lo, 0, "no loopback interface");

    weft_addr a;
    cr_assert_eq(weft_addr_parse(&a, "fe80::1%lo", 80), 0);
    cr_assert_eq(a.u.sa.sa_family, AF_INET6);
    cr_assert(IN6_IS_ADDR_LINKLOCAL(&a.u.in6.sin6_addr));
    cr_assert_eq(a.u.in6.sin6_scope_id, lo);

    cr_assert_eq(weft_addr_parse(&a, "[fe80::1%lo]", 80), 0);
    cr_assert_eq(a.u.in6.sin6_scope_id, lo);

    cr_assert_eq(weft_addr_parse(&a, "fe80::1%1", 80), 0);
    cr_assert_eq(a.u.in6.sin6_scope_id, 1);

    /* A number that names no interface is still a valid scope id. */
    cr_assert_eq(weft_addr_parse(&a, "fe80::1%4000000", 80), 0);
    cr_assert_eq(a.u.in6.sin6_scope_id, 4000000);
    cr_assert_eq(weft_addr_parse(&a, "fe80::1%4294967295", 80), 0);
    cr_assert_eq(a.u.in6.sin6_scope_id, 4294967295u);
}

Test(addr_parse, bad_zones, .timeout = 15)
{
    const char *bad[] = {
        "fe80::1%", "fe80::1%nosuchif0", "fe80::1%4294967296", "fe80::1%12x", "fe80::1%-1x", "%lo",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        weft_addr a;
        poison(&a);
        cr_expect_eq(weft_addr_parse(&a, bad[i], 80), -EINVAL, "host \"%s\"", bad[i]);
        cr_expect(still_poisoned(&a), "host \"%s\"", bad[i]);
    }
}

/* ---- format ---------------------------------------------------------------- */

/* Splits "host:port" / "[host]:port" as weft_addr_format writes it. */
static int split(const char *s, char *host, size_t hlen, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon)
        return -1;
    const char *h = s, *e = colon;
    if (*h == '[') {
        h++;
        if (e[-1] != ']')
            return -1;
        e--;
    }
    if ((size_t)(e - h) >= hlen)
        return -1;
    memcpy(host, h, (size_t)(e - h));
    host[e - h] = '\0';
    *port = atoi(colon + 1);
    return 0;
}

Test(addr_format, round_trips, .timeout = 15)
{
    static const struct {
        const char *host;
        int port;
        const char *want;
    } cases[] = {
        {"127.0.0.1", 80, "127.0.0.1:80"},
        {"::1", 80, "[::1]:80"},
        {"[::1]", 65535, "[::1]:65535"},
        {"0.0.0.0", 0, "0.0.0.0:0"},
        {"255.255.255.255", 1, "255.255.255.255:1"},
        {"*", 8080, "[::]:8080"},
        {"::ffff:1.2.3.4", 9, "[::ffff:1.2.3.4]:9"},
        {"fe80::1%lo", 443, "[fe80::1%lo]:443"},
        {"fe80::1%1", 443, "[fe80::1%lo]:443"},
        {"fe80::1%4000000", 5, "[fe80::1%4000000]:5"},
        {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295", 65535,
         "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        weft_addr a, b;
        char buf[128], host[128];
        int port;
        cr_assert_eq(weft_addr_parse(&a, cases[i].host, cases[i].port), 0, "%s", cases[i].host);
        int n = weft_addr_format(&a, buf, sizeof buf);
        cr_assert_eq(n, (int)strlen(cases[i].want), "%s -> %d", cases[i].host, n);
        cr_assert_str_eq(buf, cases[i].want);
        /* And what it wrote parses back to the same address. */
        cr_assert_eq(split(buf, host, sizeof host, &port), 0, "%s", buf);
        cr_assert_eq(weft_addr_parse(&b, host, port), 0, "%s", buf);
        cr_assert_eq(a.len, b.len);
        cr_assert_eq(memcmp(&a.u, &b.u, a.len), 0, "%s does not round-trip", buf);
    }
}

Test(addr_format, enospc_truncates, .timeout = 15)
{
    weft_addr a;
    char buf[32];
    cr_assert_eq(weft_addr_parse(&a, "127.0.0.1", 80), 0); /* "127.0.0.1:80", 12 chars */

    memset(buf, 'Z', sizeof buf);
    cr_assert_eq(weft_addr_format(&a, buf, 5), -ENOSPC);
    cr_assert_str_eq(buf, "127.");
    cr_assert_eq(buf[5], 'Z', "wrote past the given length");

    memset(buf, 'Z', sizeof buf);
    cr_assert_eq(weft_addr_format(&a, buf, 12), -ENOSPC); /* no room for the NUL */
    cr_assert_str_eq(buf, "127.0.0.1:8");
    cr_assert_eq(weft_addr_format(&a, buf, 13), 12);
    cr_assert_str_eq(buf, "127.0.0.1:80");

    memset(buf, 'Z', sizeof buf);
    cr_assert_eq(weft_addr_format(&a, buf, 1), -ENOSPC);
    cr_assert_eq(buf[0], '\0');
    cr_assert_eq(buf[1], 'Z');

    memset(buf, 'Z', sizeof buf);
    cr_assert_eq(weft_addr_format(&a, buf, 0), -ENOSPC);
    cr_assert_eq(buf[0], 'Z', "len 0 must not write");

    cr_assert_eq(weft_addr_parse(&a, "::1", 80), 0); /* "[::1]:80" */
    memset(buf, 'Z', sizeof buf);
    cr_assert_eq(weft_addr_format(&a, buf, 4), -ENOSPC);
    cr_assert_str_eq(buf, "[::");
}

/* A unix address as the kernel would hand it back: len counts the path. */
static void make_unix(weft_addr *a, const char *path, size_t plen)
{
    memset(a, 0, sizeof *a);
    a->u.un.sun_family = AF_UNIX;
    memcpy(a->u.un.sun_path, path, plen);
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
}

Test(addr_format, unix_paths, .timeout = 15)
{
    weft_addr a;
    char buf[200];
    const char *path = "/tmp/weft-test.sock";

    /* With and without the terminating NUL counted in len. */
    make_unix(&a, path, strlen(path) + 1);
    cr_assert_eq(weft_addr_format(&a, buf, sizeof buf), (int)strlen(path));
    cr_assert_str_eq(buf, path);
    make_unix(&a, path, strlen(path));
    cr_assert_eq(weft_addr_format(&a, buf, sizeof buf), (int)strlen(path));
    cr_assert_str_eq(buf, path);

    /* A path that fills sun_path completely, with no NUL at all. */
    char full[sizeof a.u.un.sun_path + 1];
    memset(full, 'p', sizeof full - 1);
    full[0] = '/';
    full[sizeof full - 1] = '\0';
    make_unix(&a, full, sizeof a.u.un.sun_path);
    cr_assert_eq(weft_addr_format(&a, buf, sizeof buf), (int)sizeof a.u.un.sun_path);
    cr_assert_str_eq(buf, full);

    make_unix(&a, path, strlen(path) + 1);
    memset(buf, 'Z', sizeof buf);
    cr_assert_eq(weft_addr_format(&a, buf, 6), -ENOSPC);
    cr_assert_str_eq(buf, "/tmp/");
    cr_assert_eq(buf[6], 'Z');
    cr_assert_eq(weft_addr_format(&a, buf, strlen(path)), -ENOSPC);
    cr_assert_eq(weft_addr_format(&a, buf, strlen(path) + 1), (int)strlen(path));
}

Test(addr_format, unix_abstract_names, .timeout = 15)
{
    weft_addr a;
    char buf[64];
    make_unix(&a, "\0weft-abstract", 14);
    cr_assert_eq(weft_addr_format(&a, buf, sizeof buf), 14);
    cr_assert_str_eq(buf, "@weft-abstract");

    make_unix(&a, "\0name", 5);
    cr_assert_eq(weft_addr_format(&a, buf, sizeof buf), 5);
    cr_assert_str_eq(buf, "@name");

    memset(buf, 'Z', sizeof buf);
    cr_assert_eq(weft_addr_format(&a, buf, 3), -ENOSPC);
    cr_assert_str_eq(buf, "@n");
    cr_assert_eq(buf[3], 'Z');
}

/* A unix address whose len the user set past sun_path (weft_sendto takes
 * such an address): formatting reads sun_path and no further. */
Test(addr_format, unix_len_past_sun_path_is_capped, .timeout = 15)
{
    weft_addr a;
    memset(&a, 'A', sizeof a);
    a.u.un.sun_family = AF_UNIX;
    char buf[512], want[sizeof a.u.un.sun_path + 1];
    memset(want, 'A', sizeof want - 1);
    want[sizeof want - 1] = '\0';
    for (socklen_t len = offsetof(struct sockaddr_un, sun_path) + 100; len <= sizeof a.u; len++) {
        a.len = len;
        int n = weft_addr_format(&a, buf, sizeof buf);
        size_t path = len - offsetof(struct sockaddr_un, sun_path);
        size_t expect = path < sizeof a.u.un.sun_path ? path : sizeof a.u.un.sun_path;
        cr_assert_eq(n, (int)expect, "len %u: %d", (unsigned)len, n);
        cr_assert_eq(strncmp(buf, want, expect), 0);
    }
    a.len = sizeof a.u + 1;
    cr_assert_eq(weft_addr_format(&a, buf, sizeof buf), -EINVAL);
    a.len = (socklen_t)-1;
    cr_assert_eq(weft_addr_format(&a, buf, sizeof buf), -EINVAL);
    a.u.un.sun_path[0] = '\0'; /* abstract, at the largest len */
    a.len = sizeof a.u;
    cr_assert_eq(weft_addr_format(&a, buf, sizeof buf), (int)sizeof a.u.un.sun_path);
    cr_assert_eq(buf[0], '@');
}

Test(addr_format, unknown_family, .timeout = 15)
{
    weft_addr a;
    char buf[64];
    memset(&a, 0, sizeof a);
    a.len = sizeof(struct sockaddr);
    cr_assert_eq(weft_addr_format(&a, buf, sizeof buf), -EAFNOSUPPORT); /* AF_UNSPEC */
    a.u.sa.sa_family = AF_APPLETALK;
    cr_assert_eq(weft_addr_format(&a, buf, sizeof buf), -EAFNOSUPPORT);
    a.u.sa.sa_family = 0x7777;
    cr_assert_eq(weft_addr_format(&a, buf, sizeof buf), -EAFNOSUPPORT);
}

Test(addr_port, families, .timeout = 15)
{
    weft_addr a;
    cr_assert_eq(weft_addr_parse(&a, "10.1.2.3", 12345), 0);
    cr_assert_eq(weft_addr_port(&a), 12345);
    cr_assert_eq(weft_addr_parse(&a, "2001:db8::7", 54321), 0);
    cr_assert_eq(weft_addr_port(&a), 54321);

    make_unix(&a, "/tmp/x", 7);
    cr_assert_eq(weft_addr_port(&a), -EAFNOSUPPORT);
    memset(&a, 0, sizeof a);
    cr_assert_eq(weft_addr_port(&a), -EAFNOSUPPORT);
    cr_assert_eq(weft_addr_port(NULL), -EAFNOSUPPORT);
}

/* ---- error names ------------------------------------------------------------- */

Test(errors, every_linux_errno_is_named, .timeout = 15)
{
    for (int e = 1; e <= 133; e++) {
        const char *name = weft_err_name(-e), *desc = weft_strerror(-e);
        cr_assert_not_null(name, "errno %d", e);
        cr_assert_not_null(desc, "errno %d", e);
        cr_assert_gt(strlen(name), 0, "errno %d", e);
        cr_assert_gt(strlen(desc), 0, "errno %d", e);
        if (e == 41 || e == 58)
            continue; /* the two numbers Linux leaves unassigned */
        cr_assert_eq(name[0], 'E', "errno %d named \"%s\"", e, name);
        cr_assert_str_neq(name, "UNKNOWN", "errno %d", e);
        cr_assert_str_neq(desc, "unknown error", "errno %d", e);
    }
}

Test(errors, names_and_descriptions_match_the_code, .timeout = 15)
{
    static const struct {
        int code;
        const char *name, *desc_part;
    } cases[] = {
        {-ETIMEDOUT, "ETIMEDOUT", "timed out"},
        {-ECONNRESET, "ECONNRESET", "reset"},
        {-ECONNREFUSED, "ECONNREFUSED", "refused"},
        {-ECANCELED, "ECANCELED", "cancel"},
        {-EPIPE, "EPIPE", "pipe"},
        {-EAGAIN, "EAGAIN", "unavailable"},
        {-ENOMEM, "ENOMEM", "memory"},
        {-EMFILE, "EMFILE", "open files"},
        {-EINVAL, "EINVAL", "invalid"},
        {-EADDRINUSE, "EADDRINUSE", "in use"},
        {-ENOTSOCK, "ENOTSOCK", "socket"},
        {-EAFNOSUPPORT, "EAFNOSUPPORT", "address family"},
        {-ENOSPC, "ENOSPC", "space"},
        {-EBADF, "EBADF", "file descriptor"},
        {-EHWPOISON, "EHWPOISON", "memory page"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_str_eq(weft_err_name(cases[i].code), cases[i].name);
        const char *d = weft_strerror(cases[i].code);
        cr_assert(strcasestr(d, cases[i].desc_part), "%s: \"%s\"", cases[i].name, d);
    }
    /* Two distinct codes never share a description. */
    cr_assert_str_neq(weft_strerror(-ETIMEDOUT), weft_strerror(-ECONNRESET));
}

Test(errors, zero_is_success, .timeout = 15)
{
    const char *name = weft_err_name(0), *desc = weft_strerror(0);
    cr_assert_not_null(name);
    cr_assert_not_null(desc);
    cr_assert(strcasestr(desc, "success"), "weft_strerror(0) = \"%s\"", desc);
    cr_assert_gt(strlen(name), 0);
    cr_assert_str_neq(name, "UNKNOWN");
}

Test(errors, unknown_codes, .timeout = 15)
{
    const int codes[] = {-5000, 12345, -200, -1000, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        cr_assert_str_eq(weft_err_name(codes[i]), "UNKNOWN", "code %d", codes[i]);
        cr_assert_str_eq(weft_strerror(codes[i]), "unknown error", "code %d", codes[i]);
    }
}
