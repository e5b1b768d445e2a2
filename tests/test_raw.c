/*
 * test_raw.c - raw IP sockets through weft_raw_open: ICMP echo to
 * 127.0.0.1 (with the IP header in front of what is received) and ICMPv6
 * echo to ::1 (without), an IP protocol of our own looped back, receive
 * timeouts, families weft_raw_open refuses, the error without
 * CAP_NET_RAW (in a child that drops it), and a socket() fault.  Tests
 * that need the capability skip, saying so, when the process lacks it.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define UNTOUCHED ((weft_sock *)(uintptr_t)0x5eed)
#define MS 1000000LL
/* An IP protocol number set aside for experiments (RFC 3692). */
#define PROTO_EXPERIMENT 253

/* Opens a raw socket, or skips the test when the process may not. */
static weft_sock *raw_or_skip(int family, int protocol)
{
    weft_sock *s = UNTOUCHED;
    int rc = weft_raw_open(&s, family, protocol);
    if (rc == -EPERM || rc == -EACCES)
        cr_skip_test("raw sockets need CAP_NET_RAW, which this process lacks (%s)",
                     weft_err_name(rc));
    if (rc == -EAFNOSUPPORT && family == AF_INET6)
        cr_skip_test("no IPv6 on this host");
    cr_assert_eq(rc, 0, "weft_raw_open: %s", weft_err_name(rc));
    return s;
}

static uint16_t inet_checksum(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint32_t sum = 0;
    for (; n > 1; b += 2, n -= 2)
        sum += (uint32_t)(b[0] << 8 | b[1]);
    if (n)
        sum += (uint32_t)b[0] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* ---- ICMP echo ----------------------------------------------------------------- */

#define ECHO_DATA 40
#define ECHOES 3

typedef struct echo_run {
    weft_sock *s;
    int family;
    weft_addr dst;
    uint16_t id;
    ssize_t sent[ECHOES];
    int replies, bad_checksum, payload_ok, from_ok, header_ok;
    int last_err;
} echo_run;

static void build_request(uint8_t *pkt, int family, uint16_t id, uint16_t seq)
{
    memset(pkt, 0, 8 + ECHO_DATA);
    pkt[0] = family == AF_INET ? 8 : 128; /* echo request */
    pkt[4] = (uint8_t)(id >> 8), pkt[5] = (uint8_t)id;
    pkt[6] = (uint8_t)(seq >> 8), pkt[7] = (uint8_t)seq;
    fill_pattern(pkt + 8, ECHO_DATA, seq);
    if (family == AF_INET) { /* the kernel fills ICMPv6's, which covers a pseudo-header */
        uint16_t c = inet_checksum(pkt, 8 + ECHO_DATA);
        pkt[2] = (uint8_t)(c >> 8), pkt[3] = (uint8_t)c;
    }
}

static void echo_body(echo_run *r)
{
    for (uint16_t seq = 1; seq <= ECHOES; seq++) {
        uint8_t req[8 + ECHO_DATA], pkt[2048];
        build_request(req, r->family, r->id, seq);
        r->sent[seq - 1] = weft_sendto(r->s, req, sizeof req, &r->dst, 2000);
        int64_t deadline = weft_now() + 3000;
        for (;;) {
            weft_addr from;
            ssize_t n = weft_recvfrom(r->s, pkt, sizeof pkt, &from, deadline - weft_now());
            if (n < 0) {
                r->last_err = (int)n;
                break;
            }
            /* IPv4: an IP header comes first; IPv6: the ICMPv6 message alone. */
            size_t off = 0;
            if (r->family == AF_INET) {
                if (n < 20 || (pkt[0] >> 4) != 4 || pkt[9] != IPPROTO_ICMP)
                    continue;
                off = (size_t)(pkt[0] & 0x0f) * 4;
            }
            if ((size_t)n < off + 8 + ECHO_DATA || (size_t)n > sizeof pkt)
                continue;
            uint8_t *icmp = pkt + off;
            uint16_t id = (uint16_t)(icmp[4] << 8 | icmp[5]);
            uint16_t rseq = (uint16_t)(icmp[6] << 8 | icmp[7]);
            if (icmp[0] != (r->family == AF_INET ? 0 : 129) || id != r->id || rseq != seq)
                continue; /* our own request, or someone else's traffic */
            r->replies++;
            r->header_ok += r->family == AF_INET ? off >= 20 : 1;
            if (r->family == AF_INET && inet_checksum(icmp, (size_t)n - off) != 0)
                r->bad_checksum++;
            uint8_t want[ECHO_DATA];
            fill_pattern(want, ECHO_DATA, seq);
            r->payload_ok += memcmp(icmp + 8, want, ECHO_DATA) == 0;
            r->from_ok += from.u.sa.sa_family == r->family &&
                          (r->family == AF_INET
                               ? from.u.in.sin_addr.s_addr == r->dst.u.in.sin_addr.s_addr
                               : memcmp(&from.u.in6.sin6_addr, &r->dst.u.in6.sin6_addr, 16) == 0);
            break;
        }
    }
}

static int echo_main(void *arg)
{
    echo_body(arg);
    return 0;
}

static void run_echo(int family, const char *host)
{
    int fds = count_fds();
    echo_run r = {.family = family, .id = (uint16_t)(getpid() ^ 0x5a5a)};
    r.s = raw_or_skip(family, family == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6);
    cr_assert_eq(weft_addr_parse(&r.dst, host, 0), 0);
    cr_assert_eq(weft_main(echo_main, &r, NULL), 0);
    for (int i = 0; i < ECHOES; i++)
        cr_assert_eq(r.sent[i], 8 + ECHO_DATA, "send %d: %zd", i, r.sent[i]);
    cr_assert_eq(r.replies, ECHOES, "%d replies; last error %s", r.replies,
                 weft_err_name(r.last_err));
    cr_assert_eq(r.bad_checksum, 0);
    cr_assert_eq(r.payload_ok, ECHOES);
    cr_assert_eq(r.from_ok, ECHOES);
    cr_assert_eq(r.header_ok, ECHOES);
    /* Once more on the plain thread, outside any coroutine. */
    r.replies = r.payload_ok = r.from_ok = r.header_ok = 0;
    r.id++;
    echo_body(&r);
    cr_assert_eq(r.replies, ECHOES, "plain thread: %d replies; last error %s", r.replies,
                 weft_err_name(r.last_err));
    cr_assert_eq(r.payload_ok, ECHOES);
    weft_close(r.s);
    cr_assert_eq(count_fds(), fds);
}

Test(raw, icmp_echo_ipv4_loopback, .timeout = 90)
{
    run_echo(AF_INET, "127.0.0.1");
}

Test(raw, icmpv6_echo_ipv6_loopback, .timeout = 90)
{
    run_echo(AF_INET6, "::1");
}

/* ---- a protocol of our own ----------------------------------------------------------- */

Test(raw, own_protocol_loops_back, .timeout = 60)
{
    int fds = count_fds();
    weft_sock *s = raw_or_skip(AF_INET, PROTO_EXPERIMENT);
    weft_addr dst;
    cr_assert_eq(weft_addr_parse(&dst, "127.0.0.1", 0), 0);
    /* Nothing of this protocol is on the wire: the receive times out. */
    uint8_t pkt[512];
    int64_t t0 = mono_ns();
    cr_assert_eq(weft_recvfrom(s, pkt, sizeof pkt, NULL, 100), -ETIMEDOUT);
    cr_assert_geq(mono_ns() - t0, 95 * MS);
    /* The kernel adds the IP header on send; a raw socket of the protocol
     * receives the whole packet, header first. */
    const char msg[] = "weft raw payload";
    cr_assert_eq(weft_sendto(s, msg, sizeof msg, &dst, 1000), (ssize_t)sizeof msg);
    ssize_t n = weft_recvfrom(s, pkt, sizeof pkt, NULL, 2000);
    cr_assert_gt(n, 20, "%s", weft_err_name((int)n));
    size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;
    cr_assert_eq(pkt[0] >> 4, 4);
    cr_assert_eq(pkt[9], PROTO_EXPERIMENT);
    cr_assert_eq((size_t)n, ihl + sizeof msg);
    cr_assert_eq(memcmp(pkt + ihl, msg, sizeof msg), 0);
    /* A short buffer: the packet's full length is reported. */
    cr_assert_eq(weft_sendto(s, msg, sizeof msg, &dst, 1000), (ssize_t)sizeof msg);
    cr_assert_eq(weft_recvfrom(s, pkt, 8, NULL, 2000), (ssize_t)(ihl + sizeof msg));
    weft_close(s);
    cr_assert_eq(count_fds(), fds);
}

/* ---- errors ----------------------------------------------------------------------------- */

Test(raw, bad_family_and_arguments, .timeout = 30)
{
    int fds = count_fds();
    weft_sock *s = UNTOUCHED;
    /* AF_UNIX would silently make a datagram socket, AF_PACKET a link one. */
    const int bad[] = {AF_UNIX, AF_PACKET, AF_UNSPEC, AF_NETLINK, 9999, -1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(weft_raw_open(&s, bad[i], IPPROTO_ICMP), -EAFNOSUPPORT, "family %d", bad[i]);
    cr_assert_eq(weft_raw_open(NULL, AF_INET, IPPROTO_ICMP), -EINVAL);
    /* The IP protocol field is one byte: the range is checked before the
     * kernel (which would take up to 262) or the capability is asked. */
    const int badp[] = {256, 262, 1000, -1, INT32_MIN};
    for (size_t i = 0; i < sizeof badp / sizeof badp[0]; i++)
        cr_assert_eq(weft_raw_open(&s, AF_INET, badp[i]), -EINVAL, "protocol %d", badp[i]);
    cr_assert_eq(s, UNTOUCHED);
    cr_assert_eq(count_fds(), fds);
}

Test(raw, protocol_zero, .timeout = 30)
{
    weft_sock *s = raw_or_skip(AF_INET, IPPROTO_ICMP);
    weft_close(s);
    int fds = count_fds();
    s = UNTOUCHED;
    /* 0 names no protocol for a raw socket: the kernel's -EPROTONOSUPPORT. */
    cr_assert_eq(weft_raw_open(&s, AF_INET, 0), -EPROTONOSUPPORT);
    cr_assert_eq(weft_raw_open(&s, AF_INET6, 0), -EPROTONOSUPPORT);
    cr_assert_eq(s, UNTOUCHED);
    cr_assert_eq(count_fds(), fds);
}

/* Clears CAP_NET_RAW from this process's effective set. */
static int drop_net_raw(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
    if (syscall(SYS_capget, &h, d) != 0)
        return -errno;
    d[CAP_TO_INDEX(CAP_NET_RAW)].effective &= ~CAP_TO_MASK(CAP_NET_RAW);
    return syscall(SYS_capset, &h, d) == 0 ? 0 : -errno;
}

Test(raw, without_capability, .timeout = 30)
{
    /* In a child, so the test process keeps its capabilities. */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (drop_net_raw() != 0)
            _exit(3);
        weft_sock *s = UNTOUCHED;
        int rc = weft_raw_open(&s, AF_INET, IPPROTO_ICMP);
        int rc6 = weft_raw_open(&s, AF_INET6, IPPROTO_ICMPV6);
        bool ok = (rc == -EPERM || rc == -EACCES) &&
                  (rc6 == -EPERM || rc6 == -EACCES || rc6 == -EAFNOSUPPORT) && s == UNTOUCHED;
        _exit(ok ? 0 : 1);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st));
    cr_assert_neq(WEXITSTATUS(st), 3, "could not drop CAP_NET_RAW");
    cr_assert_eq(WEXITSTATUS(st), 0, "weft_raw_open without CAP_NET_RAW: not -EPERM/-EACCES");
}

Test(raw, socket_fault, .timeout = 30)
{
    int fds = count_fds();
    weft_sock *s = UNTOUCHED;
    weft_fault_clear();
    weft_fault_set(WEFT_FAULT_SOCKET, 1, EMFILE);
    cr_assert_eq(weft_raw_open(&s, AF_INET, IPPROTO_ICMP), -EMFILE);
    weft_fault_set(WEFT_FAULT_MALLOC, 1, ENOMEM);
    int rc = weft_raw_open(&s, AF_INET, IPPROTO_ICMP);
    weft_fault_clear();
    /* The allocation comes after socket(): without the capability the
     * socket fails first. */
    cr_assert(rc == -ENOMEM || rc == -EPERM || rc == -EACCES, "%s", weft_err_name(rc));
    cr_assert_eq(s, UNTOUCHED);
    cr_assert_eq(count_fds(), fds);
}
