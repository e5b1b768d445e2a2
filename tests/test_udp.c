/*
 * test_udp.c - UDP and the generic datagram calls: round trips over IPv4
 * and IPv6 with boundaries kept, truncation reported by every receive call,
 * too-big datagrams, 100,000 datagrams through the batch calls with none
 * lost, UDP GSO and its fallback, connected sockets changing peer, refused
 * ports, timeouts, cancels and closes under a waiting receiver, receives
 * that must not be stranded by edge triggering, multicast and broadcast on
 * loopback, IPv6 multicast over a veth pair in a namespace of its own, bad
 * arguments, injected syscall failures, unix datagram sockets, and the same
 * calls made outside any coroutine.
 *
 * Scenarios run inside coroutines log their checks (CHECK) and the test
 * verifies the log on the main stack once the loop has returned.  Nothing
 * leaves the host: every address is on loopback, multicast senders on the
 * host are pinned to lo with a TTL of 0, and the veth pair exists only in a
 * child's private namespace.
 */
#include "helpers.h"
#include "netns.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define V4 "127.0.0.1"
#define V6 "::1"

/* A pointer no weft call may store: "*out is untouched" on failure. */
#define UNTOUCHED ((weft_sock *)(uintptr_t)0x5eed)

/* ---- the check log ---------------------------------------------------------- */

typedef struct check {
    char what[112];
    long long got, want;
} check;

static check checks[1024];
static int nchecks;

static void record(long long got, long long want, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void record(long long got, long long want, const char *fmt, ...)
{
    if (nchecks == (int)(sizeof checks / sizeof checks[0]))
        return;
    check *c = &checks[nchecks++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->what, sizeof c->what, fmt, ap);
    va_end(ap);
    c->got = got;
    c->want = want;
}

#define CHECK(got, want, ...) record((long long)(got), (long long)(want), __VA_ARGS__)
/* Logs 1 if lo <= v < hi. */
#define CHECK_IN(v, lo, hi, ...)                                                                   \
    do {                                                                                           \
        long long v_ = (long long)(v);                                                             \
        char w_[80];                                                                               \
        snprintf(w_, sizeof w_, __VA_ARGS__);                                                      \
        record(v_ >= (lo) && v_ < (hi), 1, "%s = %lld, wanted [%lld, %lld)", w_, v_,               \
               (long long)(lo), (long long)(hi));                                                  \
    } while (0)

static const char *show(long long v, char *buf, size_t len)
{
    if (v < 0 && v > -4096)
        snprintf(buf, len, "%lld (%s)", v, weft_err_name((int)v));
    else
        snprintf(buf, len, "%lld", v);
    return buf;
}

static void verify(void)
{
    cr_assert_gt(nchecks, 0, "the scenario did not run");
    for (int i = 0; i < nchecks; i++) {
        const check *c = &checks[i];
        char g[48], w[48];
        cr_expect_eq(c->got, c->want, "%s: got %s, want %s", c->what, show(c->got, g, sizeof g),
                     show(c->want, w, sizeof w));
    }
    nchecks = 0;
}

/* Runs fn(arg) as the loop's first coroutine and asserts the loop ran. */
typedef struct co_call {
    void (*fn)(void *);
    void *arg;
} co_call;

static int co_entry(void *p)
{
    co_call *c = p;
    c->fn(c->arg);
    return 0;
}

static void in_loop(void (*fn)(void *), void *arg)
{
    co_call c = {fn, arg};
    cr_assert_eq(weft_main(co_entry, &c, NULL), 0);
}

/* ---- helpers ------------------------------------------------------------------ */

static int family_of(const char *host)
{
    return strchr(host, ':') ? AF_INET6 : AF_INET;
}

/* Opens a UDP socket bound to host on a free port; returns the port. */
static int open_bound(weft_sock **s, const char *host)
{
    int rc = weft_udp_open(s, family_of(host));
    if (rc < 0)
        return rc;
    if ((rc = weft_udp_bind(*s, host, 0)) < 0 || (rc = local_port(*s)) <= 0) {
        weft_close(*s);
        return rc < 0 ? rc : -EINVAL;
    }
    return rc;
}

static weft_addr addr_of(const char *host, int port)
{
    weft_addr a;
    cr_assert_eq(weft_addr_parse(&a, host, port), 0, "parse %s", host);
    return a;
}

/* A UDP port on 127.0.0.1 nobody listens on (bound once, then closed). */
static int closed_port(void)
{
    weft_sock *s;
    int port = open_bound(&s, V4);
    cr_assert_gt(port, 0);
    weft_close(s);
    return port;
}

/* Datagram i of a stream: its first 8 bytes are i, the rest a pattern. */
static void fill_dgram(unsigned char *buf, size_t len, uint64_t i)
{
    fill_pattern(buf, len, i);
    if (len >= 8)
        memcpy(buf, &i, 8);
}

static bool dgram_ok(const unsigned char *buf, size_t len, uint64_t i)
{
    unsigned char want[2048];
    if (len > sizeof want)
        return false;
    fill_dgram(want, len, i);
    return memcmp(buf, want, len) == 0;
}

static uint64_t dgram_seq(const unsigned char *buf)
{
    uint64_t i;
    memcpy(&i, buf, 8);
    return i;
}

/* Drains whatever is queued on s. */
static void drain(weft_sock *s)
{
    char buf[256];
    while (weft_recvfrom(s, buf, sizeof buf, NULL, 0) >= 0)
        ;
}

/* ---- round trips, boundaries -------------------------------------------------- */

static const size_t rt_sizes[] = {0,   1,    2,    7,    8,    64,    100,  511,
                                  512, 1472, 1500, 4096, 9000, 32768, 60000};
#define RT_N (sizeof rt_sizes / sizeof rt_sizes[0])
#define RT_BOUNDARY 3 /* then three datagrams sent back to back */

typedef struct rt_run {
    const char *host;
    weft_sock *srv, *cli;
    int srv_port, cli_port;
} rt_run;

static void rt_server(void *arg)
{
    rt_run *r = arg;
    unsigned char *buf = malloc(65536);
    for (size_t i = 0; i < RT_N + RT_BOUNDARY; i++) {
        weft_addr from;
        ssize_t n = weft_recvfrom(r->srv, buf, 65536, &from, 5000);
        if (n < 0) {
            CHECK(n, 0, "server recvfrom #%zu", i);
            break;
        }
        CHECK(weft_addr_port(&from), r->cli_port, "server: sender's port #%zu", i);
        CHECK(weft_sendto(r->srv, buf, (size_t)n, &from, 5000), n, "server echo #%zu", i);
    }
    free(buf);
}

static void rt_client(void *arg)
{
    rt_run *r = arg;
    unsigned char *out = malloc(65536), *in = malloc(65536);
    weft_addr to = addr_of(r->host, r->srv_port);
    for (size_t i = 0; i < RT_N; i++) {
        size_t len = rt_sizes[i];
        fill_pattern(out, len, i + 1);
        CHECK(weft_sendto(r->cli, out, len, &to, 5000), len, "sendto %zu bytes", len);
        CHECK(weft_sock_sent(r->cli), len, "sock_sent after sendto %zu", len);
        weft_addr from;
        ssize_t n = weft_recvfrom(r->cli, in, 65536, &from, 5000);
        CHECK(n, len, "echo of %zu bytes", len);
        CHECK(n >= 0 && memcmp(in, out, len) == 0, 1, "payload of %zu bytes exact", len);
        CHECK(from.u.sa.sa_family, family_of(r->host), "echo's family");
        CHECK(weft_addr_port(&from), r->srv_port, "echo's port");
    }
    /* Back to back: each comes back whole and alone, in order. */
    static const size_t three[RT_BOUNDARY] = {10, 20, 30};
    for (int i = 0; i < RT_BOUNDARY; i++) {
        fill_pattern(out, three[i], 100 + i);
        CHECK(weft_sendto(r->cli, out, three[i], &to, 5000), three[i], "burst send %d", i);
    }
    for (int i = 0; i < RT_BOUNDARY; i++) {
        fill_pattern(out, three[i], 100 + i);
        ssize_t n = weft_recvfrom(r->cli, in, 65536, NULL, 5000);
        CHECK(n, three[i], "burst datagram %d keeps its length", i);
        CHECK(n > 0 && memcmp(in, out, three[i]) == 0, 1, "burst datagram %d exact", i);
    }
    free(out);
    free(in);
}

static void rt_main(void *arg)
{
    rt_run *r = arg;
    r->srv_port = open_bound(&r->srv, r->host);
    r->cli_port = open_bound(&r->cli, r->host);
    CHECK(r->srv_port > 0 && r->cli_port > 0, 1, "open and bind on %s", r->host);
    if (r->srv_port <= 0 || r->cli_port <= 0)
        return;
    int64_t a = weft_go(rt_server, r), b = weft_go(rt_client, r);
    CHECK(weft_join(a, -1), 0, "join server");
    CHECK(weft_join(b, -1), 0, "join client");
    CHECK(weft_close(r->srv), 0, "close server");
    CHECK(weft_close(r->cli), 0, "close client");
}

Test(udp, roundtrip_v4_boundaries, .timeout = 90)
{
    int fds = count_fds();
    rt_run r = {.host = V4};
    in_loop(rt_main, &r);
    verify();
    cr_assert_eq(count_fds(), fds);
}

Test(udp, roundtrip_v6_boundaries, .timeout = 90)
{
    int fds = count_fds();
    rt_run r = {.host = V6};
    in_loop(rt_main, &r);
    verify();
    cr_assert_eq(count_fds(), fds);
}

/* A dual-stack socket bound to "*" hears IPv4 senders, who appear
 * IPv4-mapped; IPv4 hosts given to it are mapped the same way. */
static void dual_stack(void *unused)
{
    (void)unused;
    weft_sock *srv, *cli;
    int port = open_bound(&srv, "::"), cport = open_bound(&cli, V4);
    CHECK(port > 0 && cport > 0, 1, "open");
    if (port <= 0 || cport <= 0)
        return;
    weft_addr to = addr_of(V4, port), from;
    CHECK(weft_sendto(cli, "v4", 2, &to, 1000), 2, "v4 sender to dual-stack socket");
    char buf[16];
    CHECK(weft_recvfrom(srv, buf, sizeof buf, &from, 1000), 2, "dual-stack socket receives");
    CHECK(from.u.sa.sa_family, AF_INET6, "sender shows as IPv6");
    CHECK(IN6_IS_ADDR_V4MAPPED(&from.u.in6.sin6_addr), 1, "sender is IPv4-mapped");
    CHECK(weft_addr_port(&from), cport, "sender's port");
    /* Answer through weft_udp_connect with the IPv4 host itself. */
    CHECK(weft_udp_connect(srv, V4, cport), 0, "dual-stack connect to an IPv4 host");
    CHECK(weft_send(srv, "ok", 2, 1000), 2, "send to the IPv4 peer");
    CHECK(weft_recvfrom(cli, buf, sizeof buf, NULL, 1000), 2, "IPv4 socket gets the answer");
    weft_close(srv);
    weft_close(cli);
}

Test(udp, dual_stack_socket_takes_ipv4, .timeout = 30)
{
    int fds = count_fds();
    in_loop(dual_stack, NULL);
    verify();
    cr_assert_eq(count_fds(), fds);
}

/* ---- truncation and sizes ------------------------------------------------------ */

static void truncation(void *unused)
{
    (void)unused;
    weft_sock *a, *b;
    int pa = open_bound(&a, V4), pb = open_bound(&b, V4);
    CHECK(pa > 0 && pb > 0, 1, "open");
    if (pa <= 0 || pb <= 0)
        return;
    weft_addr to = addr_of(V4, pb);
    static unsigned char big[2000], in[2000];
    fill_pattern(big, sizeof big, 7);

    /* recvfrom: the whole length comes back, only n bytes stored. */
    CHECK(weft_sendto(a, big, 2000, &to, 1000), 2000, "send 2000");
    CHECK(weft_sendto(a, big, 5, &to, 1000), 5, "send 5");
    memset(in, 0, sizeof in);
    weft_addr from;
    CHECK(weft_recvfrom(b, in, 512, &from, 1000), 2000, "recvfrom into 512 reports 2000");
    CHECK(memcmp(in, big, 512) == 0 && in[512] == 0, 1, "first 512 bytes stored, no more");
    CHECK(weft_addr_port(&from), pa, "sender of the truncated datagram");
    CHECK(weft_recvfrom(b, in, 512, NULL, 1000), 5, "the next datagram is whole");

    /* recv on a connected socket: the same. */
    CHECK(weft_udp_connect(b, V4, pa), 0, "connect b");
    CHECK(weft_sendto(a, big, 2000, &to, 1000), 2000, "send 2000 again");
    CHECK(weft_recv(b, in, 100, 1000), 2000, "recv into 100 reports 2000");
    CHECK(weft_sendto(a, big, 0, &to, 1000), 0, "send an empty datagram");
    CHECK(weft_recv(b, in, 100, 1000), 0, "recv of an empty datagram is 0");

    /* recvmmsg: truncated flag, got = what was stored. */
    CHECK(weft_sendto(a, big, 2000, &to, 1000), 2000, "send 2000 (batch)");
    CHECK(weft_sendto(a, big, 300, &to, 1000), 300, "send 300 (batch)");
    CHECK(weft_sendto(a, big, 512, &to, 1000), 512, "send 512 (batch)");
    static unsigned char bufs[3][512];
    weft_dgram v[3];
    memset(v, 0, sizeof v);
    for (int i = 0; i < 3; i++)
        v[i].buf = bufs[i], v[i].len = 512, v[i].got = 99, v[i].truncated = 99;
    int got = 0;
    while (got < 3) {
        int r = weft_recvmmsg(b, v + got, 3 - got, 1000);
        if (r <= 0) {
            CHECK(r, 1, "recvmmsg");
            break;
        }
        got += r;
    }
    CHECK(got, 3, "three datagrams");
    CHECK(v[0].got, 512, "first: 512 stored");
    CHECK(v[0].truncated, 1, "first: truncated");
    CHECK(memcmp(bufs[0], big, 512) == 0, 1, "first: bytes");
    CHECK(v[1].got, 300, "second: 300");
    CHECK(v[1].truncated, 0, "second: whole");
    CHECK(v[2].got, 512, "third: exactly the buffer");
    CHECK(v[2].truncated, 0, "third: whole");
    CHECK(weft_addr_port(&v[1].addr), pa, "second: sender");
    weft_close(a);
    weft_close(b);
}

Test(udp, truncation_reported_by_every_receive, .timeout = 30)
{
    int fds = count_fds();
    in_loop(truncation, NULL);
    verify();
    cr_assert_eq(count_fds(), fds);
}

static void too_big(void *arg)
{
    const char *host = arg;
    bool v6 = family_of(host) == AF_INET6;
    size_t max = v6 ? 65527 : 65507; /* 65,535 less the UDP and IPv6/IPv4 headers */
    weft_sock *a, *b;
    int pa = open_bound(&a, host), pb = open_bound(&b, host);
    CHECK(pa > 0 && pb > 0, 1, "open");
    if (pa <= 0 || pb <= 0)
        return;
    weft_addr to = addr_of(host, pb);
    unsigned char *big = malloc(70000), *in = malloc(70000);
    fill_pattern(big, 70000, 3);
    CHECK(weft_sendto(a, big, max, &to, 1000), max, "%s: the largest datagram goes", host);
    CHECK(weft_recvfrom(b, in, 70000, NULL, 1000), max, "%s: and arrives whole", host);
    CHECK(memcmp(in, big, max) == 0, 1, "%s: intact", host);
    CHECK(weft_sendto(a, big, max + 1, &to, 1000), -EMSGSIZE, "%s: one byte more", host);
    CHECK(weft_sendto(a, big, 65536, &to, 1000), -EMSGSIZE, "%s: 65536 bytes", host);
    CHECK(weft_sock_sent(a), 0, "%s: sent nothing", host);
    CHECK(weft_udp_connect(a, host, pb), 0, "%s: connect", host);
    CHECK(weft_send(a, big, 65536, 1000), -EMSGSIZE, "%s: weft_send of 65536", host);

    /* In a batch: the ones before it go, the call stops there. */
    weft_dgram v[5];
    memset(v, 0, sizeof v);
    for (int i = 0; i < 5; i++)
        v[i].buf = big, v[i].len = 100 + (size_t)i;
    v[3].len = 65536;
    CHECK(weft_sendmmsg(a, v, 5, 1000), -EMSGSIZE, "%s: batch with a giant", host);
    CHECK(weft_sock_sent(a), 3, "%s: three went before it", host);
    for (int i = 0; i < 3; i++)
        CHECK(weft_recvfrom(b, in, 70000, NULL, 1000), 100 + i, "%s: batch datagram %d", host, i);
    CHECK(weft_recvfrom(b, in, 70000, NULL, 0), -ETIMEDOUT, "%s: nothing else", host);
    free(big);
    free(in);
    weft_close(a);
    weft_close(b);
}

Test(udp, too_big_is_emsgsize, .timeout = 30)
{
    int fds = count_fds();
    in_loop(too_big, V4);
    in_loop(too_big, V6);
    verify();
    cr_assert_eq(count_fds(), fds);
}

/* ---- 100,000 datagrams through the batch calls ------------------------------- */

/*
 * Sender and receiver are coroutines on one loop.  UDP has no flow control
 * and loopback drops what a full receive buffer cannot take, so the
 * receiver acknowledges every ACK_EVERY datagrams and the sender keeps at
 * most WINDOW unacknowledged.  WINDOW small datagrams (a few hundred
 * bytes of kernel memory each) fit the default receive buffer many times
 * over; SO_RCVBUF is raised too, as a margin, not as the mechanism.
 */
#define TOTAL 100000
#define WINDOW 128
#define ACK_EVERY 64
#define MM_BATCH 64

typedef struct mm_run {
    weft_sock *tx, *rx;
    int tx_port, rx_port;
    int sent, acked, received, bad, dup, out_of_order, truncated, wrong_sender;
    int send_calls, recv_calls, max_batch;
    int tx_err, rx_err;
    uint8_t *seen;
} mm_run;

/* Runs of 50 equal sizes, so batches hold GSO runs and mixed ones. */
static size_t mm_size(uint64_t i)
{
    return 16 + (size_t)((i / 50) % 113);
}

static void mm_sender(void *arg)
{
    mm_run *r = arg;
    static unsigned char bufs[MM_BATCH][256];
    weft_dgram v[MM_BATCH];
    weft_addr to = addr_of(V4, r->rx_port);
    while (r->sent < TOTAL) {
        while (r->sent - r->acked >= WINDOW) {
            uint64_t ack;
            ssize_t n = weft_recvfrom(r->tx, &ack, sizeof ack, NULL, 10000);
            if (n != (ssize_t)sizeof ack) {
                r->tx_err = n < 0 ? (int)n : -EBADMSG;
                return;
            }
            if ((int)ack > r->acked)
                r->acked = (int)ack;
        }
        int k = WINDOW - (r->sent - r->acked);
        if (k > MM_BATCH)
            k = MM_BATCH;
        if (k > TOTAL - r->sent)
            k = TOTAL - r->sent;
        for (int j = 0; j < k; j++) {
            uint64_t seq = (uint64_t)(r->sent + j);
            memset(&v[j], 0, sizeof v[j]);
            v[j].buf = bufs[j];
            v[j].len = mm_size(seq);
            v[j].addr = to;
            fill_dgram(bufs[j], v[j].len, seq);
        }
        int rc = weft_sendmmsg(r->tx, v, k, 10000);
        r->send_calls++;
        if (rc != k || weft_sock_sent(r->tx) != (size_t)k) {
            r->tx_err = rc < 0 ? rc : -EIO;
            return;
        }
        r->sent += k;
    }
}

static void mm_receiver(void *arg)
{
    mm_run *r = arg;
    static unsigned char bufs[MM_BATCH][256];
    weft_dgram v[MM_BATCH];
    uint64_t next = 0;
    int last_ack = 0;
    while (r->received < TOTAL) {
        for (int j = 0; j < MM_BATCH; j++) {
            memset(&v[j], 0, sizeof v[j]);
            v[j].buf = bufs[j];
            v[j].len = sizeof bufs[j];
        }
        int n = weft_recvmmsg(r->rx, v, MM_BATCH, 10000);
        r->recv_calls++;
        if (n <= 0 || n > MM_BATCH) {
            r->rx_err = n <= 0 ? n : -EOVERFLOW;
            return;
        }
        if (n > r->max_batch)
            r->max_batch = n;
        for (int j = 0; j < n; j++) {
            if (v[j].truncated)
                r->truncated++;
            if (weft_addr_port(&v[j].addr) != r->tx_port)
                r->wrong_sender++;
            if (v[j].got < 8) {
                r->bad++;
                continue;
            }
            uint64_t seq = dgram_seq(bufs[j]);
            if (seq >= TOTAL || v[j].got != mm_size(seq) || !dgram_ok(bufs[j], v[j].got, seq)) {
                r->bad++;
                continue;
            }
            if (r->seen[seq]++)
                r->dup++;
            if (seq != next)
                r->out_of_order++;
            next = seq + 1;
            r->received++;
        }
        if (r->received / ACK_EVERY > last_ack / ACK_EVERY || r->received == TOTAL) {
            last_ack = r->received;
            weft_addr to = addr_of(V4, r->tx_port);
            uint64_t ack = (uint64_t)r->received;
            ssize_t w = weft_sendto(r->rx, &ack, sizeof ack, &to, 10000);
            if (w != (ssize_t)sizeof ack) {
                r->rx_err = w < 0 ? (int)w : -EIO;
                return;
            }
        }
    }
}

static void mm_main(void *arg)
{
    mm_run *r = arg;
    r->tx_port = open_bound(&r->tx, V4);
    r->rx_port = open_bound(&r->rx, V4);
    if (r->tx_port <= 0 || r->rx_port <= 0) {
        r->tx_err = -EBADF;
        return;
    }
    weft_sock_set_bufsize(r->rx, 1 << 20, 0);
    int64_t a = weft_go(mm_receiver, r), b = weft_go(mm_sender, r);
    weft_join(a, -1);
    weft_join(b, -1);
    weft_close(r->tx);
    weft_close(r->rx);
}

Test(udp, mmsg_100k_datagrams_none_lost, .timeout = 360)
{
    int fds = count_fds();
    mm_run r = {0};
    r.seen = calloc(TOTAL, 1);
    cr_assert(r.seen);
    int64_t t0 = mono_ms();
    in_loop(mm_main, &r);
    int64_t ms = mono_ms() - t0;
    cr_log_info("100k datagrams: %lld ms, %d sendmmsg calls, %d recvmmsg calls (largest batch "
                "%d), %d out of order",
                (long long)ms, r.send_calls, r.recv_calls, r.max_batch, r.out_of_order);
    cr_assert_eq(r.tx_err, 0, "sender: %s", weft_err_name(r.tx_err));
    cr_assert_eq(r.rx_err, 0, "receiver: %s", weft_err_name(r.rx_err));
    cr_assert_eq(r.sent, TOTAL);
    cr_assert_eq(r.received, TOTAL, "received %d of %d", r.received, TOTAL);
    cr_assert_eq(r.bad, 0, "%d datagrams with a wrong length or content", r.bad);
    cr_assert_eq(r.dup, 0);
    cr_assert_eq(r.truncated, 0);
    cr_assert_eq(r.wrong_sender, 0);
    for (int i = 0; i < TOTAL; i++)
        cr_assert_eq(r.seen[i], 1, "datagram %d seen %d times", i, r.seen[i]);
    cr_assert_gt(r.max_batch, 1, "recvmmsg never took more than one datagram");
    free(r.seen);
    cr_assert_eq(count_fds(), fds);
}

/* ---- UDP GSO ------------------------------------------------------------------- */

static bool kernel_has_gso(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int v;
    socklen_t len = sizeof v;
    bool ok = fd >= 0 && getsockopt(fd, SOL_UDP, UDP_SEGMENT, &v, &len) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

typedef struct gso_run_t {
    bool gso;
    long calls_first, calls_fallback, calls_after, calls_fresh;
} gso_run_t;

/* Receives want datagrams and checks each one's length and content. */
static void gso_expect(weft_sock *rx, const size_t *lens, int want, uint64_t seed, const char *what)
{
    static unsigned char bufs[MM_BATCH][256];
    weft_dgram v[MM_BATCH];
    int got = 0, bad = 0;
    while (got < want) {
        for (int j = 0; j < MM_BATCH; j++) {
            memset(&v[j], 0, sizeof v[j]);
            v[j].buf = bufs[j];
            v[j].len = sizeof bufs[j];
        }
        int n = weft_recvmmsg(rx, v, MM_BATCH, 2000);
        if (n <= 0) {
            CHECK(n, 1, "%s: recvmmsg after %d", what, got);
            return;
        }
        for (int j = 0; j < n && got < want; j++, got++)
            if (v[j].got != lens[got] || v[j].truncated ||
                !dgram_ok(bufs[j], v[j].got, seed + (uint64_t)got))
                bad++;
    }
    CHECK(got, want, "%s: datagrams", what);
    CHECK(bad, 0, "%s: datagrams with a wrong length or content", what);
    CHECK(weft_recvfrom(rx, bufs[0], 256, NULL, 0), -ETIMEDOUT, "%s: nothing more", what);
}

/* 128 datagrams: equal sizes (100) but for a shorter last one. */
static long gso_send(weft_sock *tx, weft_addr *to, uint64_t seed, const char *what)
{
    static unsigned char bufs[128][128];
    weft_dgram v[128];
    memset(v, 0, sizeof v);
    for (int i = 0; i < 128; i++) {
        v[i].buf = bufs[i];
        v[i].len = i == 127 ? 37 : 100;
        v[i].addr = *to;
        fill_dgram(bufs[i], v[i].len, seed + (uint64_t)i);
    }
    unsigned long before = weft_fault_calls(WEFT_FAULT_SEND);
    CHECK(weft_sendmmsg(tx, v, 128, 2000), 128, "%s: sendmmsg", what);
    CHECK(weft_sock_sent(tx), 128, "%s: sock_sent", what);
    return (long)(weft_fault_calls(WEFT_FAULT_SEND) - before);
}

static void gso_scenario(void *arg)
{
    gso_run_t *g = arg;
    weft_sock *tx, *rx, *tx2;
    int ptx = open_bound(&tx, V4), prx = open_bound(&rx, V4), ptx2 = open_bound(&tx2, V4);
    CHECK(ptx > 0 && prx > 0 && ptx2 > 0, 1, "open");
    if (ptx <= 0 || prx <= 0 || ptx2 <= 0)
        return;
    weft_sock_set_bufsize(rx, 1 << 20, 0); /* 128 datagrams queue up before rx reads */
    weft_addr to = addr_of(V4, prx);
    size_t lens[128];
    for (int i = 0; i < 128; i++)
        lens[i] = i == 127 ? 37 : 100;
    weft_fault_clear();

    g->calls_first = gso_send(tx, &to, 1000, "first");
    gso_expect(rx, lens, 128, 1000, "first");

    /* The kernel refuses the GSO send (as without checksum offload):
     * the same datagrams go one by one, and the socket stops trying. */
    weft_fault_set(WEFT_FAULT_SEND, 1, EIO);
    g->calls_fallback = gso_send(tx, &to, 2000, "fallback");
    gso_expect(rx, lens, 128, 2000, "fallback");
    g->calls_after = gso_send(tx, &to, 3000, "after the fallback");
    gso_expect(rx, lens, 128, 3000, "after the fallback");
    /* Another socket is not affected. */
    g->calls_fresh = gso_send(tx2, &to, 4000, "another socket");
    gso_expect(rx, lens, 128, 4000, "another socket");

    /* Alternating destinations: no run forms, each side gets its half. */
    weft_sock *rx2;
    int prx2 = open_bound(&rx2, V4);
    CHECK(prx2 > 0, 1, "open rx2");
    if (prx2 > 0) {
        static unsigned char bufs[64][64];
        weft_dgram v[64];
        memset(v, 0, sizeof v);
        weft_addr to2 = addr_of(V4, prx2);
        size_t half[32];
        for (int i = 0; i < 64; i++) {
            v[i].buf = bufs[i];
            v[i].len = 40;
            v[i].addr = i % 2 ? to2 : to;
            fill_dgram(bufs[i], 40, 5000 + (uint64_t)(i / 2));
        }
        for (int i = 0; i < 32; i++)
            half[i] = 40;
        CHECK(weft_sendmmsg(tx2, v, 64, 2000), 64, "alternating: sendmmsg");
        gso_expect(rx, half, 32, 5000, "alternating, first address");
        gso_expect(rx2, half, 32, 5000, "alternating, second address");
        weft_close(rx2);
    }
    weft_fault_clear();
    weft_close(tx);
    weft_close(tx2);
    weft_close(rx);
}

Test(udp, gso_runs_keep_boundaries_and_fall_back, .timeout = 60)
{
    int fds = count_fds();
    gso_run_t g = {.gso = kernel_has_gso()};
    in_loop(gso_scenario, &g);
    verify();
    cr_log_info("UDP GSO %s; sendmmsg syscalls for 128 datagrams: first %ld, fallback %ld, "
                "after %ld, another socket %ld",
                g.gso ? "available" : "not available", g.calls_first, g.calls_fallback,
                g.calls_after, g.calls_fresh);
    /* Without GSO 128 datagrams take two syscalls of 64; with it, one
     * syscall carries two GSO messages. */
    cr_assert_eq(g.calls_first, g.gso ? 1 : 2);
    cr_assert_eq(g.calls_fallback, g.gso ? 3 : 2, "refused GSO send, then 2 plain ones");
    cr_assert_eq(g.calls_after, 2, "the socket no longer tries GSO");
    cr_assert_eq(g.calls_fresh, g.gso ? 1 : 2);
    cr_assert_eq(count_fds(), fds);
}

/* ---- unix datagram sockets: no GSO, same calls -------------------------------- */

typedef struct unix_run {
    int sv[2];
    weft_sock *a, *b;
} unix_run;

static void unix_sender(void *arg)
{
    unix_run *u = arg;
    static unsigned char bufs[64][128];
    weft_dgram v[64];
    memset(v, 0, sizeof v);
    for (int i = 0; i < 64; i++) {
        v[i].buf = bufs[i];
        v[i].len = 100;
        fill_dgram(bufs[i], 100, 700 + (uint64_t)i);
    }
    /* Equal sizes to the connected peer: on UDP that is a GSO run; here
     * each must still go on its own.  The peer's queue holds only
     * net.unix.max_dgram_qlen datagrams, so this also waits for room. */
    CHECK(weft_sendmmsg(u->a, v, 64, 5000), 64, "unix sendmmsg");
    CHECK(weft_sock_sent(u->a), 64, "unix sock_sent");
}

static void unix_dgram(void *arg)
{
    unix_run *u = arg;
    CHECK(weft_sock_wrap(&u->a, u->sv[0]), 0, "wrap a");
    CHECK(weft_sock_wrap(&u->b, u->sv[1]), 0, "wrap b");
    size_t lens[64];
    for (int i = 0; i < 64; i++)
        lens[i] = 100;
    int64_t id = weft_go(unix_sender, u);
    gso_expect(u->b, lens, 64, 700, "unix");
    CHECK(weft_join(id, -1), 0, "join sender");
    static unsigned char big[3000], in[100];
    fill_pattern(big, sizeof big, 9);
    CHECK(weft_send(u->a, big, 3000, 1000), 3000, "unix send 3000");
    weft_addr from;
    from.len = 1234;
    CHECK(weft_recvfrom(u->b, in, sizeof in, &from, 1000), 3000, "unix recvfrom reports 3000");
    CHECK(memcmp(in, big, sizeof in) == 0, 1, "unix first 100 bytes");
    CHECK(from.len, 0, "an unnamed sender has no address");
    CHECK(weft_close(u->a), 0, "close a");
    CHECK(weft_close(u->b), 0, "close b");
}

Test(dgram, unix_socketpair_batches_and_truncation, .timeout = 30)
{
    int fds = count_fds();
    unix_run u;
    cr_assert_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, u.sv), 0);
    in_loop(unix_dgram, &u);
    verify();
    cr_assert_eq(count_fds(), fds);
}

/* ---- connected sockets -------------------------------------------------------- */

static void reconnect(void *unused)
{
    (void)unused;
    weft_sock *c, *pa, *pb;
    int cp = open_bound(&c, V4), ap = open_bound(&pa, V4), bp = open_bound(&pb, V4);
    CHECK(cp > 0 && ap > 0 && bp > 0, 1, "open");
    if (cp <= 0 || ap <= 0 || bp <= 0)
        return;
    char buf[64];
    weft_addr to_c = addr_of(V4, cp), from;

    CHECK(weft_send(c, "x", 1, 100), -EDESTADDRREQ, "send before any connect");
    CHECK(weft_udp_connect(c, V4, ap), 0, "connect to A");
    CHECK(peer_port(c), ap, "peer is A");
    CHECK(weft_send(c, "to-a", 4, 1000), 4, "send to A");
    CHECK(weft_recvfrom(pa, buf, sizeof buf, &from, 1000), 4, "A receives");
    CHECK(weft_addr_port(&from), cp, "from c");
    /* B is not the peer: its datagram is dropped, A's gets through. */
    CHECK(weft_sendto(pb, "from-b", 6, &to_c, 1000), 6, "B sends to c");
    CHECK(weft_sendto(pa, "from-a", 6, &to_c, 1000), 6, "A sends to c");
    CHECK(weft_recv(c, buf, sizeof buf, 1000), 6, "c receives one");
    CHECK(memcmp(buf, "from-a", 6), 0, "and it is A's");
    CHECK(weft_recv(c, buf, sizeof buf, 50), -ETIMEDOUT, "B's was dropped");

    CHECK(weft_udp_connect(c, V4, bp), 0, "re-connect to B");
    CHECK(peer_port(c), bp, "peer is B");
    CHECK(weft_send(c, "to-b", 4, 1000), 4, "send to B");
    CHECK(weft_recvfrom(pb, buf, sizeof buf, &from, 1000), 4, "B receives");
    CHECK(weft_recvfrom(pa, buf, sizeof buf, NULL, 50), -ETIMEDOUT, "A gets nothing");
    CHECK(weft_sendto(pa, "from-a", 6, &to_c, 1000), 6, "A sends to c");
    CHECK(weft_sendto(pb, "from-b", 6, &to_c, 1000), 6, "B sends to c");
    CHECK(weft_recvfrom(c, buf, sizeof buf, &from, 1000), 6, "c receives one");
    CHECK(weft_addr_port(&from), bp, "and it is B's");
    CHECK(weft_recv(c, buf, sizeof buf, 50), -ETIMEDOUT, "A's was dropped");
    /* An explicit address still works on a connected socket. */
    weft_addr to_a = addr_of(V4, ap);
    CHECK(weft_sendto(c, "x", 1, &to_a, 1000), 1, "sendto A while connected to B");
    CHECK(weft_recvfrom(pa, buf, sizeof buf, NULL, 1000), 1, "A receives it");

    CHECK(weft_udp_connect(c, NULL, 0), 0, "disconnect");
    CHECK(peer_port(c), -ENOTCONN, "no peer");
    CHECK(weft_send(c, "x", 1, 100), -EDESTADDRREQ, "send without a peer");
    CHECK(weft_sendto(c, "x", 1, &to_a, 1000), 1, "sendto still works");
    CHECK(weft_recvfrom(pa, buf, sizeof buf, NULL, 1000), 1, "A receives it");
    weft_close(c);
    weft_close(pa);
    weft_close(pb);
}

Test(udp, connected_reconnect_and_disconnect, .timeout = 30)
{
    int fds = count_fds();
    in_loop(reconnect, NULL);
    verify();
    cr_assert_eq(count_fds(), fds);
}

/* ---- refused ports ---------------------------------------------------------------- */

typedef struct refused_run {
    int port;
    weft_sock *c;
    ssize_t parked_rc;
    int64_t parked_ms;
} refused_run;

static void refused_parked(void *arg)
{
    refused_run *r = arg;
    char buf[16];
    int64_t t0 = mono_ms();
    r->parked_rc = weft_recvfrom(r->c, buf, sizeof buf, NULL, 5000);
    r->parked_ms = mono_ms() - t0;
}

/* The refusals: send then receive, send then send, a receiver already
 * parked, the batch calls.  Each ICMP error is reported once. */
static void refused_steps(refused_run *r)
{
    char buf[16];
    weft_sock *c;
    CHECK(weft_udp_open(&c, AF_INET), 0, "open");
    CHECK(weft_udp_connect(c, V4, r->port), 0, "connect to a closed port");
    int64_t t0 = mono_ms();
    CHECK(weft_send(c, "ping", 4, 1000), 4, "the first send goes");
    CHECK(weft_recv(c, buf, sizeof buf, 3000), -ECONNREFUSED, "then recv is refused");
    CHECK_IN(mono_ms() - t0, 0, 1000, "refusal took (ms)");
    CHECK(weft_recv(c, buf, sizeof buf, 50), -ETIMEDOUT, "reported once, then no hang");

    CHECK(weft_send(c, "ping", 4, 1000), 4, "send again");
    weft_sleep(50); /* outside a coroutine it sleeps the thread */
    CHECK(weft_send(c, "ping", 4, 1000), -ECONNREFUSED, "the next send is refused");
    CHECK(weft_send(c, "ping", 4, 1000), 4, "then sends go again");
    weft_sleep(50); /* outside a coroutine it sleeps the thread */
    weft_dgram v[4];
    memset(v, 0, sizeof v);
    for (int i = 0; i < 4; i++)
        v[i].buf = buf, v[i].len = 4;
    CHECK(weft_recvmmsg(c, v, 4, 3000), -ECONNREFUSED, "recvmmsg is refused");
    CHECK(weft_send(c, "ping", 4, 1000), 4, "send once more");
    weft_sleep(50); /* outside a coroutine it sleeps the thread */
    CHECK(weft_sendmmsg(c, v, 4, 1000), -ECONNREFUSED, "sendmmsg is refused");
    CHECK(weft_sock_sent(c), 0, "and sent none");
    CHECK(weft_close(c), 0, "close");
}

static void refused_co(void *arg)
{
    refused_run *r = arg;
    refused_steps(r);
    /* A receiver parked before the error comes wakes with it. */
    CHECK(weft_udp_open(&r->c, AF_INET6), 0, "open v6");
    CHECK(weft_udp_connect(r->c, V4, r->port), 0, "dual-stack connect to a closed port");
    int64_t id = weft_go(refused_parked, r);
    weft_sleep(20);
    CHECK(weft_send(r->c, "ping", 4, 1000), 4, "send while a receiver waits");
    CHECK(weft_join(id, -1), 0, "join");
    CHECK(r->parked_rc, -ECONNREFUSED, "the parked receiver is refused");
    CHECK_IN(r->parked_ms, 0, 1000, "parked receiver woke after (ms)");
    weft_close(r->c);
}

Test(udp, connected_send_to_closed_port_is_refused, .timeout = 60)
{
    int fds = count_fds();
    refused_run r = {.port = closed_port()};
    in_loop(refused_co, &r);
    refused_steps(&r); /* outside any coroutine */
    verify();
    cr_assert_eq(count_fds(), fds);
}

/* ---- timeouts, cancels, closes --------------------------------------------------- */

static void timeouts(void *unused)
{
    (void)unused;
    weft_sock *a, *b;
    int pa = open_bound(&a, V4), pb = open_bound(&b, V4);
    CHECK(pa > 0 && pb > 0, 1, "open");
    if (pa <= 0 || pb <= 0)
        return;
    char buf[64];
    weft_dgram v[2];
    memset(v, 0, sizeof v);
    v[0].buf = buf, v[0].len = 32;
    v[1].buf = buf + 32, v[1].len = 32;
    weft_addr to = addr_of(V4, pb);

    int64_t t0 = mono_ms();
    CHECK(weft_recvfrom(b, buf, sizeof buf, NULL, 100), -ETIMEDOUT, "recvfrom 100 ms");
    CHECK_IN(mono_ms() - t0, 90, 1500, "recvfrom 100 ms took (ms)");
    t0 = mono_ms();
    CHECK(weft_recvmmsg(b, v, 2, 100), -ETIMEDOUT, "recvmmsg 100 ms");
    CHECK_IN(mono_ms() - t0, 90, 1500, "recvmmsg 100 ms took (ms)");
    t0 = mono_ms();
    CHECK(weft_recvfrom(b, buf, sizeof buf, NULL, 0), -ETIMEDOUT, "recvfrom 0 ms");
    CHECK(weft_recvmmsg(b, v, 2, 0), -ETIMEDOUT, "recvmmsg 0 ms");
    CHECK(weft_recvfrom(b, buf, sizeof buf, NULL, -5), -ETIMEDOUT, "negative timeout");
    CHECK_IN(mono_ms() - t0, 0, LATE_MS, "zero timeouts took (ms)");

    /* Data waiting at entry beats an expired timeout. */
    CHECK(weft_sendto(a, "abc", 3, &to, 1000), 3, "send");
    weft_sleep(10);
    CHECK(weft_recvfrom(b, buf, sizeof buf, NULL, 0), 3, "recvfrom 0 ms with data queued");
    CHECK(weft_sendto(a, "abc", 3, &to, 1000), 3, "send");
    CHECK(weft_sendto(a, "de", 2, &to, 1000), 2, "send");
    weft_sleep(10);
    CHECK(weft_recvmmsg(b, v, 2, 0), 2, "recvmmsg 0 ms takes both queued");
    CHECK(v[0].got + v[1].got, 5, "both datagrams' bytes");

    if (weft_self()) {
        /* The coroutine's deadline bounds a call that would wait forever. */
        weft_deadline_set(weft_now() + 80);
        t0 = mono_ms();
        CHECK(weft_recvfrom(b, buf, sizeof buf, NULL, -1), -ETIMEDOUT, "deadline");
        CHECK_IN(mono_ms() - t0, 70, 1500, "deadline took (ms)");
        weft_deadline_clear();
    }
    weft_close(a);
    weft_close(b);
}

Test(udp, receive_timeouts, .timeout = 60)
{
    int fds = count_fds();
    in_loop(timeouts, NULL);
    timeouts(NULL); /* outside any coroutine: poll() waits */
    verify();
    cr_assert_eq(count_fds(), fds);
}

typedef struct wait_run {
    weft_sock *s, *peer;
    int port;
    ssize_t rc[3];
    int64_t ms[3];
    int64_t ids[3];
    bool batch;
} wait_run;

static void waiter(void *arg, int slot)
{
    wait_run *w = arg;
    char buf[64];
    int64_t t0 = mono_ms();
    if (w->batch) {
        weft_dgram v = {.buf = buf, .len = sizeof buf};
        w->rc[slot] = weft_recvmmsg(w->s, &v, 1, 5000);
    } else {
        w->rc[slot] = weft_recvfrom(w->s, buf, sizeof buf, NULL, 5000);
    }
    w->ms[slot] = mono_ms() - t0;
}

static void waiter0(void *arg)
{
    waiter(arg, 0);
}

static void waiter1(void *arg)
{
    waiter(arg, 1);
}

/* weft_cancel on a waiting receiver: -ECANCELED at once, and the next
 * call works (the cancel is delivered once). */
static void cancel_scenario(void *arg)
{
    wait_run *w = arg;
    w->port = open_bound(&w->s, V4);
    CHECK(open_bound(&w->peer, V4) > 0 && w->port > 0, 1, "open");
    int64_t id = weft_go(waiter0, w);
    weft_sleep(30);
    CHECK(weft_cancel(id), 0, "cancel");
    CHECK(weft_join(id, -1), 0, "join");
    CHECK(w->rc[0], -ECANCELED, "%s: cancelled", w->batch ? "recvmmsg" : "recvfrom");
    CHECK_IN(w->ms[0], 20, 1000, "cancelled after (ms)");
    /* The socket still works for the next receiver. */
    id = weft_go(waiter1, w);
    weft_sleep(10);
    weft_addr to = addr_of(V4, w->port);
    CHECK(weft_sendto(w->peer, "after", 5, &to, 1000), 5, "send after the cancel");
    CHECK(weft_join(id, -1), 0, "join");
    CHECK(w->rc[1], w->batch ? 1 : 5, "the next receive gets the datagram");
    weft_close(w->s);
    weft_close(w->peer);
}

Test(udp, cancel_waiting_recvfrom_and_recvmmsg, .timeout = 60)
{
    int fds = count_fds();
    wait_run w = {.batch = false};
    in_loop(cancel_scenario, &w);
    wait_run wb = {.batch = true};
    in_loop(cancel_scenario, &wb);
    verify();
    cr_assert_eq(count_fds(), fds);
}

/* Closing the socket under two waiting receivers (one holding the
 * receive side, one queued behind it) wakes both with -EBADF. */
static void close_scenario(void *arg)
{
    wait_run *w = arg;
    w->port = open_bound(&w->s, V4);
    CHECK(w->port > 0, 1, "open");
    int64_t a = weft_go(waiter0, w), b = weft_go(waiter1, w);
    weft_sleep(30);
    CHECK(weft_close(w->s), 0, "close under the waiters");
    CHECK(weft_join(a, -1), 0, "join a");
    CHECK(weft_join(b, -1), 0, "join b");
    CHECK(w->rc[0], -EBADF, "%s: first waiter", w->batch ? "recvmmsg" : "recvfrom");
    CHECK(w->rc[1], -EBADF, "%s: second waiter", w->batch ? "recvmmsg" : "recvfrom");
    CHECK_IN(w->ms[0], 20, 1000, "first woke after (ms)");
    CHECK_IN(w->ms[1], 20, 1000, "second woke after (ms)");
}

Test(udp, close_under_waiting_receivers, .timeout = 60)
{
    int fds = count_fds();
    wait_run w = {.batch = false};
    in_loop(close_scenario, &w);
    wait_run wb = {.batch = true};
    in_loop(close_scenario, &wb);
    verify();
    cr_assert_eq(count_fds(), fds);
}

/* ---- edge triggering: nothing stranded --------------------------------------------- */

typedef struct edge_run {
    weft_sock *rx, *tx;
    int port;
    bool batch;
} edge_run;

static void edge_sender(void *arg)
{
    edge_run *e = arg;
    weft_addr to = addr_of(V4, e->port);
    /* Three at once while the receiver is parked: one edge for all three. */
    for (int i = 0; i < 3; i++)
        CHECK(weft_sendto(e->tx, "0123456789", 10, &to, 1000), 10, "burst %d", i);
}

static void edge_scenario(void *arg)
{
    edge_run *e = arg;
    e->port = open_bound(&e->rx, V4);
    CHECK(e->port > 0 && open_bound(&e->tx, V4) > 0, 1, "open");
    char buf[1024];
    weft_dgram v = {.buf = buf, .len = sizeof buf};
    /* Park first (EAGAIN clears the readiness), then the burst comes. */
    int64_t id = weft_go(edge_sender, e);
    ssize_t rc = e->batch ? weft_recvmmsg(e->rx, &v, 1, 2000)
                          : weft_recvfrom(e->rx, buf, sizeof buf, NULL, 2000);
    CHECK(rc, e->batch ? 1 : 10, "first of the burst");
    weft_join(id, -1);
    /* Each read was short of the buffer; the rest must still come at
     * once, without a new edge. */
    for (int i = 1; i < 3; i++) {
        int64_t t0 = mono_ms();
        rc = e->batch ? weft_recvmmsg(e->rx, &v, 1, 1000)
                      : weft_recvfrom(e->rx, buf, sizeof buf, NULL, 1000);
        CHECK(rc, e->batch ? 1 : 10, "datagram %d of the burst", i);
        CHECK_IN(mono_ms() - t0, 0, LATE_MS, "datagram %d came after (ms)", i);
    }
    /* Drained: the next one arrives by a fresh edge. */
    int64_t t0 = mono_ms();
    CHECK(weft_recvfrom(e->rx, buf, sizeof buf, NULL, 50), -ETIMEDOUT, "drained");
    id = weft_go(edge_sender, e);
    rc = weft_recvfrom(e->rx, buf, sizeof buf, NULL, 2000);
    CHECK(rc, 10, "a new datagram wakes the receiver");
    CHECK_IN(mono_ms() - t0, 40, 1000, "woke after (ms)");
    weft_join(id, -1);
    drain(e->rx);
    weft_close(e->rx);
    weft_close(e->tx);
}

Test(udp, short_reads_strand_nothing, .timeout = 60)
{
    int fds = count_fds();
    edge_run e = {.batch = false};
    in_loop(edge_scenario, &e);
    edge_run eb = {.batch = true};
    in_loop(edge_scenario, &eb);
    verify();
    cr_assert_eq(count_fds(), fds);
}

/* ---- multicast and broadcast on loopback ------------------------------------------ */

/* Sends to a multicast group only through lo, and never past this host. */
static void pin_to_lo_v4(weft_sock *s)
{
    cr_assert_eq(weft_udp_set_mcast_iface(s, "lo"), 0);
    cr_assert_eq(weft_udp_set_ttl(s, 0), 0);
}

static int get_int(weft_sock *s, int level, int opt)
{
    int v = -1;
    socklen_t len = sizeof v;
    if (getsockopt(weft_sock_fd(s), level, opt, &v, &len) != 0)
        return -errno;
    return len == 1 ? (int)*(unsigned char *)&v : v;
}

#define GROUP4 "239.255.42.99"

static void mcast_v4(void *arg)
{
    int rx_family = *(int *)arg;
    weft_sock *rx, *tx;
    CHECK(weft_udp_open(&rx, rx_family), 0, "open receiver");
    CHECK(weft_udp_bind(rx, "*", 0), 0, "bind receiver to any");
    int port = local_port(rx);
    CHECK(weft_udp_open(&tx, AF_INET), 0, "open sender");
    pin_to_lo_v4(tx);
    CHECK(weft_udp_set_loop(tx, 1), 0, "loop on");
    weft_addr group = addr_of(GROUP4, port);
    char buf[64];

    CHECK(weft_udp_join(rx, GROUP4, "lo"), 0, "join on lo");
    CHECK(weft_udp_join(rx, GROUP4, "lo"), -EADDRINUSE, "join twice");
    CHECK(weft_sendto(tx, "hello group", 11, &group, 1000), 11, "send to the group");
    CHECK(weft_recvfrom(rx, buf, sizeof buf, NULL, 2000), 11, "member receives");
    CHECK(memcmp(buf, "hello group", 11), 0, "payload");
    CHECK(weft_udp_leave(rx, GROUP4, "lo"), 0, "leave");
    CHECK(weft_udp_leave(rx, GROUP4, "lo"), -EADDRNOTAVAIL, "leave twice");
    CHECK(weft_sendto(tx, "nobody", 6, &group, 1000), 6, "send after leaving");
    CHECK(weft_recvfrom(rx, buf, sizeof buf, NULL, 200), -ETIMEDOUT, "non-member hears nothing");
    CHECK(weft_udp_join(rx, GROUP4, "lo"), 0, "join again");
    CHECK(weft_udp_leave(rx, GROUP4, "lo"), 0, "and leave");

    CHECK(weft_udp_join(rx, "127.0.0.1", "lo"), -EINVAL, "not a group");
    CHECK(weft_udp_join(rx, "not an address", "lo"), -EINVAL, "not an address");
    CHECK(weft_udp_join(rx, NULL, "lo"), -EINVAL, "NULL group");
    CHECK(weft_udp_join(rx, GROUP4, "nosuchif0"), -ENODEV, "unknown interface");
    CHECK(weft_udp_set_mcast_iface(rx, "nosuchif0"), -ENODEV, "unknown outgoing interface");
    if (rx_family == AF_INET)
        CHECK(weft_udp_join(rx, "ff02::1:3", "lo"), -EINVAL, "IPv6 group on an IPv4 socket");

    /* Options read back. */
    CHECK(weft_udp_set_ttl(tx, 7), 0, "ttl 7");
    CHECK(get_int(tx, IPPROTO_IP, IP_MULTICAST_TTL), 7, "ttl reads back");
    CHECK(weft_udp_set_ttl(tx, 0), 0, "ttl 0 again");
    CHECK(weft_udp_set_ttl(tx, 256), -EINVAL, "ttl 256");
    CHECK(weft_udp_set_ttl(tx, -1), -EINVAL, "ttl -1");
    CHECK(weft_udp_set_loop(tx, 0), 0, "loop off");
    CHECK(get_int(tx, IPPROTO_IP, IP_MULTICAST_LOOP), 0, "loop reads back off");
    CHECK(weft_udp_set_loop(tx, 1), 0, "loop on");
    CHECK(get_int(tx, IPPROTO_IP, IP_MULTICAST_LOOP), 1, "loop reads back on");
    if (rx_family == AF_INET6) {
        CHECK(weft_udp_set_ttl(rx, 9), 0, "v6 hops 9");
        CHECK(get_int(rx, IPPROTO_IPV6, IPV6_MULTICAST_HOPS), 9, "v6 hops read back");
        CHECK(weft_udp_set_loop(rx, 0), 0, "v6 loop off");
        CHECK(get_int(rx, IPPROTO_IPV6, IPV6_MULTICAST_LOOP), 0, "v6 loop reads back");
    }
    weft_close(rx);
    weft_close(tx);
}

Test(udp, multicast_v4_on_loopback, .timeout = 60)
{
    int fds = count_fds();
    int fam = AF_INET;
    in_loop(mcast_v4, &fam);
    fam = AF_INET6; /* a dual-stack socket joins the IPv4 group too */
    in_loop(mcast_v4, &fam);
    verify();
    cr_assert_eq(count_fds(), fds);
}

#define GROUP6 "ff02::114:7"

Test(udp, multicast_v6_on_loopback, .timeout = 60)
{
    int fds = count_fds();
    weft_sock *rx, *tx;
    cr_assert_eq(weft_udp_open(&rx, AF_INET6), 0);
    cr_assert_eq(weft_udp_bind(rx, "::", 0), 0);
    int port = local_port(rx);
    cr_assert_eq(weft_udp_join(rx, GROUP6, "lo"), 0);
    cr_assert_eq(weft_udp_join(rx, GROUP6, "lo"), -EADDRINUSE);
    cr_assert_eq(weft_udp_leave(rx, GROUP6, "lo"), 0);
    cr_assert_eq(weft_udp_leave(rx, GROUP6, "lo"), -EADDRNOTAVAIL);
    cr_assert_eq(weft_udp_join(rx, GROUP6 "%lo", NULL), 0, "the scope names the interface");
    cr_assert_eq(weft_udp_join(rx, "::1", "lo"), -EINVAL);

    cr_assert_eq(weft_udp_open(&tx, AF_INET6), 0);
    int lo = (int)if_nametoindex("lo");
    cr_assert_eq(weft_udp_set_mcast_iface(tx, "lo"), 0);
    int index = -1;
    socklen_t len = sizeof index;
    cr_assert_eq(getsockopt(weft_sock_fd(tx), IPPROTO_IPV6, IPV6_MULTICAST_IF, &index, &len), 0);
    cr_assert_eq(index, lo, "the interface reads back");
    cr_assert_eq(weft_udp_set_mcast_iface(tx, NULL), 0);
    cr_assert_eq(getsockopt(weft_sock_fd(tx), IPPROTO_IPV6, IPV6_MULTICAST_IF, &index, &len), 0);
    cr_assert_eq(index, 0, "NULL gives the choice back to the routing table");
    cr_assert_eq(weft_udp_set_mcast_iface(tx, "nosuchif0"), -ENODEV);
    cr_assert_eq(weft_udp_set_mcast_iface(tx, "lo"), 0);
    cr_assert_eq(weft_udp_set_ttl(tx, 0), 0);
    weft_addr group = addr_of(GROUP6 "%lo", port);
    ssize_t rc = weft_sendto(tx, "hello6", 6, &group, 1000);
    char buf[16];
    ssize_t got = rc == 6 ? weft_recvfrom(rx, buf, sizeof buf, NULL, 500) : rc;
    weft_close(rx);
    weft_close(tx);
    cr_assert_eq(count_fds(), fds);
    if (rc == -ENETUNREACH || got == -ETIMEDOUT)
        cr_skip_test("IPv6 multicast over lo does not work on this host (send: %s, receive: %s): "
                     "lo has no MULTICAST flag and no ff00::/8 route, and Linux does not loop "
                     "IPv6 multicast back on lo; join, leave and the outgoing interface on lo "
                     "were checked, and multicast_v6_over_veth_in_netns checks delivery",
                     weft_err_name((int)rc), weft_err_name((int)got));
    cr_assert_eq(rc, 6);
    cr_assert_eq(got, 6);
}

/* ---- IPv6 multicast delivered, in a network namespace of its own ---------------- */

/*
 * lo cannot carry IPv6 multicast, so a child process makes a namespace with
 * a veth pair: wft0 (fd00:77::1) and its peer wft1 (fd00:77::2).  A member joined on
 * wft0 hears the sender's looped-back copy; a member joined on wft1 hears
 * what crossed the link.  Distinct groups keep the two paths apart.
 */
#define GROUP6_NEAR "ff02::114:a"
#define GROUP6_FAR "ff02::114:b"
#define VETH_SETUP                                                                                 \
    "ip link add wft0 type veth peer name wft1 && ip link set wft0 up && "                         \
    "ip link set wft1 up && ip -6 addr add fd00:77::1/64 dev wft0 nodad && "                       \
    "ip -6 addr add fd00:77::2/64 dev wft1 nodad"

static int member(weft_sock **s, const char *group, const char *iface)
{
    CHECK(weft_udp_open(s, AF_INET6), 0, "open a member for %s", iface);
    CHECK(weft_udp_bind(*s, "::", 0), 0, "bind it");
    CHECK(weft_udp_join(*s, group, iface), 0, "join %s on %s", group, iface);
    return local_port(*s);
}

static void group_to(weft_addr *a, const char *group, const char *iface, int port)
{
    char host[64];
    snprintf(host, sizeof host, "%s%%%s", group, iface);
    CHECK(weft_addr_parse(a, host, port), 0, "parse %s", host);
}

/* Sends one datagram to a group and says whether member m heard it. */
static void hop(weft_sock *tx, weft_sock *m, const weft_addr *to, long long want, const char *what)
{
    char buf[16];
    weft_addr src;
    CHECK(weft_sendto(tx, "hop6", 4, to, 1000), 4, "%s: send", what);
    ssize_t n = weft_recvfrom(m, buf, sizeof buf, &src, want > 0 ? 2000 : 200);
    CHECK(n, want, "%s: receive", what);
    if (n == 4) {
        CHECK(memcmp(buf, "hop6", 4), 0, "%s: payload", what);
        CHECK(weft_addr_port(&src), local_port(tx), "%s: from the sender's port", what);
    }
}

static void mcast_v6_veth(void *unused)
{
    (void)unused;
    weft_sock *near, *far, *tx;
    int near_port = member(&near, GROUP6_NEAR, "wft0");
    int far_port = member(&far, GROUP6_FAR, "wft1");
    CHECK(weft_udp_open(&tx, AF_INET6), 0, "open the sender");
    CHECK(weft_udp_set_mcast_iface(tx, "wft0"), 0, "send by wft0");
    CHECK(weft_udp_set_ttl(tx, 1), 0, "one hop");
    weft_addr to_near, to_far, to_near_by_wft1;
    group_to(&to_near, GROUP6_NEAR, "wft0", near_port);
    group_to(&to_far, GROUP6_FAR, "wft0", far_port);
    group_to(&to_near_by_wft1, GROUP6_NEAR, "wft1", near_port);

    CHECK(weft_udp_set_loop(tx, 1), 0, "loop on");
    hop(tx, near, &to_near, 4, "loop on, member on the sending interface");
    hop(tx, far, &to_far, 4, "loop on, member across the link");
    CHECK(weft_udp_set_loop(tx, 0), 0, "loop off");
    hop(tx, near, &to_near, -ETIMEDOUT, "loop off, member on the sending interface");
    hop(tx, far, &to_far, 4, "loop off, member across the link");
    /* The outgoing interface decides the path: by wft1 the datagram
     * crosses to wft0, where the near member hears it with loop off. */
    CHECK(weft_udp_set_mcast_iface(tx, "wft1"), 0, "send by wft1");
    hop(tx, near, &to_near_by_wft1, 4, "by wft1, loop off, member on wft0");
    CHECK(weft_udp_leave(near, GROUP6_NEAR, "wft0"), 0, "leave");
    hop(tx, near, &to_near_by_wft1, -ETIMEDOUT, "after leaving");
    weft_close(near);
    weft_close(far);
    weft_close(tx);
}

typedef struct veth_result {
    int skip;
    char msg[240];
    int n;
    check checks[64];
} veth_result;

static void veth_child(void *arg)
{
    veth_result *res = arg;
    if (!netns_enter(res->msg, sizeof res->msg) ||
        !netns_sh(VETH_SETUP, "the kernel lacks veth (CONFIG_VETH)", res->msg, sizeof res->msg)) {
        res->skip = 1;
        return;
    }
    co_call c = {mcast_v6_veth, NULL};
    if (weft_main(co_entry, &c, NULL) != 0)
        CHECK(1, 0, "weft_main in the namespace");
    res->n = nchecks < 64 ? nchecks : 64;
    memcpy(res->checks, checks, (size_t)res->n * sizeof checks[0]);
}

Test(udp, multicast_v6_over_veth_in_netns, .timeout = 90)
{
    static veth_result res;
    netns_fork(veth_child, &res, sizeof res, 25);
    if (res.skip)
        cr_skip_test("%s", res.msg);
    cr_assert_geq(res.n, 20, "the scenario did not run to its end (%d checks)", res.n);
    memcpy(checks, res.checks, (size_t)res.n * sizeof checks[0]);
    nchecks = res.n;
    verify();
}

static void broadcast(void *unused)
{
    (void)unused;
    weft_sock *rx, *tx;
    CHECK(weft_udp_open(&rx, AF_INET), 0, "open");
    CHECK(weft_udp_bind(rx, "*", 0), 0, "bind any");
    int port = local_port(rx);
    CHECK(open_bound(&tx, V4) > 0, 1, "open sender");
    /* 127.255.255.255 is lo's own broadcast address: it never leaves. */
    weft_addr bcast = addr_of("127.255.255.255", port);
    char buf[16];
    CHECK(get_int(tx, SOL_SOCKET, SO_BROADCAST), 0, "off by default");
    CHECK(weft_sendto(tx, "b", 1, &bcast, 1000), -EACCES, "broadcast without the option");
    CHECK(weft_udp_set_broadcast(tx, 1), 0, "broadcast on");
    CHECK(get_int(tx, SOL_SOCKET, SO_BROADCAST), 1, "reads back on");
    CHECK(weft_sendto(tx, "b", 1, &bcast, 1000), 1, "broadcast with the option");
    CHECK(weft_recvfrom(rx, buf, sizeof buf, NULL, 1000), 1, "delivered");
    CHECK(weft_udp_set_broadcast(tx, 0), 0, "broadcast off");
    CHECK(get_int(tx, SOL_SOCKET, SO_BROADCAST), 0, "reads back off");
    weft_close(rx);
    weft_close(tx);
}

Test(udp, broadcast_option, .timeout = 30)
{
    int fds = count_fds();
    in_loop(broadcast, NULL);
    verify();
    cr_assert_eq(count_fds(), fds);
}

/* ---- arguments ------------------------------------------------------------------------ */

Test(udp, bad_arguments, .timeout = 30)
{
    int fds = count_fds();
    weft_sock *s = UNTOUCHED, *t, *tcp, *l;
    char buf[8];
    weft_dgram v = {.buf = buf, .len = sizeof buf};
    cr_assert_eq(weft_udp_open(&s, AF_UNIX), -EAFNOSUPPORT);
    cr_assert_eq(weft_udp_open(&s, 12345), -EAFNOSUPPORT);
    cr_assert_eq(s, UNTOUCHED);
    cr_assert_eq(weft_udp_open(NULL, AF_INET), -EINVAL);

    cr_assert_eq(weft_udp_open(&s, AF_INET), 0);
    cr_assert_eq(weft_udp_bind(s, "", 0), -EINVAL);
    cr_assert_eq(weft_udp_bind(s, "localhost", 0), -EINVAL, "numeric hosts only");
    cr_assert_eq(weft_udp_bind(s, V4, 65536), -EINVAL);
    cr_assert_eq(weft_udp_bind(s, V6, 0), -EINVAL, "an IPv6 host on an IPv4 socket");
    cr_assert_eq(weft_udp_bind(s, "203.0.113.7", 0), -EADDRNOTAVAIL, "not this host's");
    cr_assert_eq(weft_udp_bind(s, "::ffff:127.0.0.1", 0), 0, "IPv4-mapped is IPv4");
    int port = local_port(s);
    cr_assert_gt(port, 0);
    cr_assert_eq(weft_udp_open(&t, AF_INET), 0);
    cr_assert_eq(weft_udp_bind(t, V4, port), -EADDRINUSE);
    cr_assert_eq(weft_udp_connect(t, V4, 0), -EINVAL);
    cr_assert_eq(weft_udp_connect(t, "*", 53), -EINVAL);
    cr_assert_eq(weft_udp_connect(t, "x", 53), -EINVAL);

    cr_assert_eq(weft_sendmmsg(s, &v, -1, 0), -EINVAL);
    cr_assert_eq(weft_sendmmsg(s, NULL, 1, 0), -EINVAL);
    cr_assert_eq(weft_sendmmsg(s, &v, 0, 0), 0);
    cr_assert_eq(weft_sock_sent(s), 0);
    cr_assert_eq(weft_recvmmsg(s, &v, 0, 0), -EINVAL);
    cr_assert_eq(weft_recvmmsg(s, NULL, 1, 0), -EINVAL);
    weft_dgram bad = {.buf = NULL, .len = 5};
    cr_assert_eq(weft_sendmmsg(s, &bad, 1, 0), -EINVAL);
    cr_assert_eq(weft_recvmmsg(s, &bad, 1, 0), -EINVAL);
    weft_addr huge = {.len = sizeof(huge.u) + 1};
    cr_assert_eq(weft_sendto(s, buf, 1, &huge, 0), -EINVAL);
    cr_assert_eq(weft_sendto(s, NULL, 1, NULL, 0), -EINVAL);
    cr_assert_eq(weft_sendto(s, buf, 1, NULL, 0), -EDESTADDRREQ, "no address, no peer");

    cr_assert_eq(weft_sendto(NULL, buf, 1, NULL, 0), -EBADF);
    cr_assert_eq(weft_recvfrom(NULL, buf, 1, NULL, 0), -EBADF);
    cr_assert_eq(weft_sendmmsg(NULL, &v, 1, 0), -EBADF);
    cr_assert_eq(weft_recvmmsg(NULL, &v, 1, 0), -EBADF);
    cr_assert_eq(weft_udp_bind(NULL, V4, 0), -EBADF);
    cr_assert_eq(weft_udp_connect(NULL, V4, 1), -EBADF);
    cr_assert_eq(weft_udp_join(NULL, GROUP4, "lo"), -EBADF);
    cr_assert_eq(weft_udp_set_ttl(NULL, 1), -EBADF);
    cr_assert_eq(weft_udp_set_loop(NULL, 1), -EBADF);
    cr_assert_eq(weft_udp_set_broadcast(NULL, 1), -EBADF);
    cr_assert_eq(weft_udp_set_mcast_iface(NULL, "lo"), -EBADF);

    /* Stream sockets are not for the datagram calls. */
    cr_assert_eq(make_pair(&tcp, &l), 0);
    cr_assert_eq(weft_sendto(tcp, buf, 1, NULL, 0), -EINVAL);
    cr_assert_eq(weft_recvfrom(tcp, buf, 1, NULL, 0), -EINVAL);
    cr_assert_eq(weft_sendmmsg(tcp, &v, 1, 0), -EINVAL);
    cr_assert_eq(weft_recvmmsg(tcp, &v, 1, 0), -EINVAL);
    cr_assert_eq(weft_udp_join(tcp, GROUP4, "lo"), -EINVAL);
    cr_assert_eq(weft_udp_bind(tcp, V4, 0), -EINVAL);
    cr_assert_eq(weft_udp_set_broadcast(tcp, 1), -EINVAL);
    cr_assert_eq(weft_udp_set_mcast_iface(tcp, "lo"), -EINVAL);
    weft_close(tcp);
    weft_close(l);
    weft_close(s);
    weft_close(t);
    cr_assert_eq(count_fds(), fds);
}

/* ---- injected failures ----------------------------------------------------------------- */

static void faults(void *unused)
{
    (void)unused;
    char buf[256];
    int fds = count_fds();
    weft_sock *s = UNTOUCHED, *a, *b;

    weft_fault_clear();
    weft_fault_set(WEFT_FAULT_SOCKET, 1, EMFILE);
    CHECK(weft_udp_open(&s, AF_INET), -EMFILE, "socket() fails");
    CHECK(s == UNTOUCHED, 1, "out untouched (socket)");
    weft_fault_set(WEFT_FAULT_MALLOC, 1, ENOMEM);
    CHECK(weft_udp_open(&s, AF_INET6), -ENOMEM, "allocation fails");
    CHECK(s == UNTOUCHED, 1, "out untouched (malloc)");
    CHECK(count_fds(), fds, "no descriptor left behind");

    CHECK(weft_udp_open(&a, AF_INET), 0, "open a");
    CHECK(weft_udp_open(&b, AF_INET), 0, "open b");
    weft_fault_set(WEFT_FAULT_BIND, 1, EADDRINUSE);
    CHECK(weft_udp_bind(b, V4, 0), -EADDRINUSE, "bind fails");
    CHECK(weft_udp_bind(b, V4, 0), 0, "bind again works");
    CHECK(weft_udp_bind(a, V4, 0), 0, "bind a");
    int pa = local_port(a), pb = local_port(b);
    weft_fault_set(WEFT_FAULT_CONNECT, 1, ENETUNREACH);
    CHECK(weft_udp_connect(a, V4, pb), -ENETUNREACH, "connect fails");
    CHECK(peer_port(a), -ENOTCONN, "and a has no peer");
    weft_addr to = addr_of(V4, pb);

    weft_fault_clear();
    weft_fault_set(WEFT_FAULT_SEND, 1, ENOBUFS);
    CHECK(weft_sendto(a, "12345", 5, &to, 1000), -ENOBUFS, "sendto fails");
    CHECK(weft_sock_sent(a), 0, "sent nothing");
    CHECK(weft_recvfrom(b, buf, sizeof buf, NULL, 50), -ETIMEDOUT, "nothing arrived");
    weft_fault_set(WEFT_FAULT_SEND, 1, EINTR);
    CHECK(weft_sendto(a, "12345", 5, &to, 1000), 5, "an interrupted sendto is retried");
    CHECK(weft_fault_calls(WEFT_FAULT_SEND), 3, "one failed, one interrupted, one sent");

    /* A failed receive leaves the datagram queued for the next one. */
    weft_fault_set(WEFT_FAULT_RECV, 1, ENOMEM);
    CHECK(weft_recvfrom(b, buf, sizeof buf, NULL, 1000), -ENOMEM, "recvfrom fails");
    CHECK(weft_recvfrom(b, buf, sizeof buf, NULL, 0), 5, "the datagram is still there");
    weft_fault_set(WEFT_FAULT_RECV, 1, EINTR);
    CHECK(weft_sendto(a, "678", 3, &to, 1000), 3, "send");
    weft_dgram v[4];
    memset(v, 0, sizeof v);
    for (int i = 0; i < 4; i++)
        v[i].buf = buf + 64 * i, v[i].len = 64;
    CHECK(weft_recvmmsg(b, v, 4, 1000), 1, "an interrupted recvmmsg is retried");
    CHECK(v[0].got, 3, "and gets the datagram");
    weft_fault_set(WEFT_FAULT_RECV, 1, ECONNREFUSED);
    CHECK(weft_recvmmsg(b, v, 4, 1000), -ECONNREFUSED, "recvmmsg fails");

    /* A batch failing part-way: the first syscall's 64 went. */
    static unsigned char bufs[100][32];
    weft_dgram m[100];
    memset(m, 0, sizeof m);
    for (int i = 0; i < 100; i++) {
        m[i].buf = bufs[i];
        m[i].len = 10 + (size_t)i; /* each longer than the last: no GSO run */
        m[i].addr = to;
    }
    weft_fault_set(WEFT_FAULT_SEND, 2, EPERM);
    CHECK(weft_sendmmsg(a, m, 100, 1000), -EPERM, "sendmmsg fails part-way");
    CHECK(weft_sock_sent(a), 64, "after 64 datagrams");
    int got = 0;
    for (;;) {
        int r = weft_recvmmsg(b, v, 4, 100);
        if (r <= 0)
            break;
        got += r;
    }
    CHECK(got, 64, "exactly those arrived");
    weft_fault_set(WEFT_FAULT_SEND, 1, EPERM);
    CHECK(weft_sendmmsg(a, m, 100, 1000), -EPERM, "sendmmsg fails at once");
    CHECK(weft_sock_sent(a), 0, "after no datagram");
    weft_fault_clear();
    CHECK(weft_close(a), 0, "close a");
    CHECK(weft_close(b), 0, "close b");
    CHECK(count_fds(), fds, "descriptors back");
    (void)pa;
}

Test(udp, injected_failures_return_the_code_and_leak_nothing, .timeout = 60)
{
    int fds = count_fds();
    faults(NULL);          /* on the main stack */
    in_loop(faults, NULL); /* and in a coroutine */
    verify();
    cr_assert_eq(count_fds(), fds);
}

/* ---- outside any coroutine ----------------------------------------------------------- */

Test(udp, plain_thread_exchange_without_a_loop, .timeout = 60)
{
    int fds = count_fds();
    weft_sock *a, *b;
    int pa = open_bound(&a, V6), pb = open_bound(&b, V6);
    cr_assert_gt(pa, 0);
    cr_assert_gt(pb, 0);
    weft_sock_set_bufsize(a, 1 << 20, 0); /* 200 datagrams queue up before a reads */
    weft_addr to_b = addr_of(V6, pb), to_a = addr_of(V6, pa), from;
    char buf[128];
    cr_assert_eq(weft_sendto(a, "ping", 4, &to_b, 1000), 4);
    cr_assert_eq(weft_recvfrom(b, buf, sizeof buf, &from, 1000), 4);
    cr_assert_eq(weft_addr_port(&from), pa);
    cr_assert_eq(weft_sendto(b, "pong", 4, &from, 1000), 4);
    cr_assert_eq(weft_recvfrom(a, buf, sizeof buf, NULL, 1000), 4);
    cr_assert_eq(memcmp(buf, "pong", 4), 0);

    static unsigned char bufs[200][64];
    weft_dgram v[200];
    memset(v, 0, sizeof v);
    for (int i = 0; i < 200; i++) {
        v[i].buf = bufs[i];
        v[i].len = 48;
        v[i].addr = to_a;
        fill_dgram(bufs[i], 48, (uint64_t)i);
    }
    cr_assert_eq(weft_sendmmsg(b, v, 200, 1000), 200);
    cr_assert_eq(weft_sock_sent(b), 200);
    int got = 0, bad = 0;
    while (got < 200) {
        weft_dgram r[64];
        static unsigned char rb[64][64];
        memset(r, 0, sizeof r);
        for (int i = 0; i < 64; i++)
            r[i].buf = rb[i], r[i].len = sizeof rb[i];
        int n = weft_recvmmsg(a, r, 64, 1000);
        cr_assert_gt(n, 0, "recvmmsg after %d: %s", got, weft_err_name(n));
        for (int i = 0; i < n; i++, got++)
            bad += r[i].got != 48 || !dgram_ok(rb[i], 48, (uint64_t)got);
    }
    cr_assert_eq(got, 200);
    cr_assert_eq(bad, 0);
    int64_t t0 = mono_ms();
    cr_assert_eq(weft_recvfrom(a, buf, sizeof buf, NULL, 100), -ETIMEDOUT);
    int64_t ms = mono_ms() - t0;
    cr_assert(ms >= 90 && ms < 1500, "took %lld ms", (long long)ms);
    weft_close(a);
    weft_close(b);
    cr_assert_eq(count_fds(), fds);
}
