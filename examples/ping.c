/*
 * ping.c - ICMP echo over a raw socket: sends COUNT echo requests to HOST,
 * one a second, and prints each reply with its round-trip time.
 *
 * usage: ping [HOST] [COUNT]      (defaults: 127.0.0.1, 4)
 * HOST is a numeric IPv4 address.  Raw sockets need CAP_NET_RAW (root, or
 * `setcap cap_net_raw+ep ping`); without it ping says so and exits 77, the
 * code test suites read as "skipped".  Otherwise it exits 0 when every
 * request got its reply, 1 if not.
 */
#include <weft.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DATA_LEN 56
#define INTERVAL_MS 1000
#define REPLY_TIMEOUT_MS 1000
#define EXIT_NOT_PERMITTED 77

enum { ICMP_ECHO_REPLY = 0, ICMP_ECHO_REQUEST = 8 };

/* An ICMP echo message (RFC 792); multi-byte fields in network order. */
struct echo {
    uint8_t type, code;
    uint16_t checksum;
    uint16_t id, seq;
    uint8_t data[DATA_LEN]; /* starts with the send time, so a reply carries it back */
};

struct run {
    const char *host;
    weft_addr dst;
    int count, received;
    double min_ms, max_ms, sum_ms;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The Internet checksum (RFC 1071): the ones' complement of the ones'
 * complement sum of the 16-bit big-endian words.  Over a message that
 * carries its correct checksum, it gives 0. */
static uint16_t checksum(const void *p, size_t n)
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

/* Waits for the reply to request seq.  The raw socket sees every ICMP
 * packet the host receives (our own request too, on loopback), so it
 * skips whatever is not that reply.  Returns 1 (got it), 0 (timed out), or
 * an error. */
static int await_reply(struct run *r, weft_sock *s, uint16_t id, uint16_t seq)
{
    int64_t deadline = weft_now() + REPLY_TIMEOUT_MS;
    uint8_t pkt[1500];
    for (;;) {
        weft_addr from;
        ssize_t n = weft_recvfrom(s, pkt, sizeof pkt, &from, deadline - weft_now());
        if (n == -ETIMEDOUT)
            return 0;
        if (n < 0)
            return (int)n;
        if ((size_t)n > sizeof pkt)
            continue; /* truncated: not ours */
        /* IPv4 raw sockets deliver the IP header first: its length is in
         * the low nibble of the first byte, in 32-bit words; TTL at 8. */
        size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;
        struct echo rep;
        if ((size_t)n < ihl + sizeof rep)
            continue;
        memcpy(&rep, pkt + ihl, sizeof rep);
        if (rep.type != ICMP_ECHO_REPLY || ntohs(rep.id) != id || ntohs(rep.seq) != seq)
            continue;
        if (checksum(pkt + ihl, (size_t)n - ihl) != 0) {
            printf("icmp_seq=%u: bad checksum, ignored\n", seq);
            continue;
        }
        int64_t sent;
        memcpy(&sent, rep.data, sizeof sent);
        double ms = (double)(now_us() - sent) / 1000.0;
        char addr[64];
        weft_addr_format(&from, addr, sizeof addr);
        char *port = strrchr(addr, ':'); /* "127.0.0.1:0": raw sockets have no ports */
        if (port)
            *port = '\0';
        printf("%zu bytes from %s: icmp_seq=%u ttl=%u time=%.3f ms\n", (size_t)n - ihl, addr, seq,
               pkt[8], ms);
        r->min_ms = r->received == 0 || ms < r->min_ms ? ms : r->min_ms;
        r->max_ms = ms > r->max_ms ? ms : r->max_ms;
        r->sum_ms += ms;
        r->received++;
        return 1;
    }
}

static int ping(void *arg)
{
    struct run *r = arg;
    weft_sock *s;
    int rc = weft_raw_open(&s, AF_INET, IPPROTO_ICMP);
    if (rc == -EPERM || rc == -EACCES) {
        fprintf(stderr, "ping: skipped: a raw socket needs CAP_NET_RAW (%s)\n", weft_strerror(rc));
        return EXIT_NOT_PERMITTED;
    }
    if (rc < 0) {
        fprintf(stderr, "ping: raw socket: %s\n", weft_strerror(rc));
        return 1;
    }
    uint16_t id = (uint16_t)getpid(); /* tells our replies from other pings' */
    printf("PING %s: %d data bytes\n", r->host, DATA_LEN);
    for (int i = 1; i <= r->count; i++) {
        uint16_t seq = (uint16_t)i;
        if (i > 1)
            weft_sleep(INTERVAL_MS);
        struct echo req = {.type = ICMP_ECHO_REQUEST, .id = htons(id), .seq = htons(seq)};
        int64_t sent = now_us();
        memcpy(req.data, &sent, sizeof sent);
        for (size_t k = sizeof sent; k < DATA_LEN; k++)
            req.data[k] = (uint8_t)k;
        req.checksum = htons(checksum(&req, sizeof req)); /* computed with the field at 0 */
        ssize_t n = weft_sendto(s, &req, sizeof req, &r->dst, REPLY_TIMEOUT_MS);
        if (n < 0) {
            printf("icmp_seq=%u: send: %s\n", seq, weft_strerror((int)n));
            continue;
        }
        rc = await_reply(r, s, id, seq);
        if (rc == 0)
            printf("icmp_seq=%u: no reply within %d ms\n", seq, REPLY_TIMEOUT_MS);
        else if (rc < 0)
            printf("icmp_seq=%u: receive: %s\n", seq, weft_strerror(rc));
    }
    weft_close(s);
    printf("--- %s ping statistics ---\n", r->host);
    printf("%d packets transmitted, %d received, %d%% packet loss\n", r->count, r->received,
           (r->count - r->received) * 100 / r->count);
    if (r->received)
        printf("rtt min/avg/max = %.3f/%.3f/%.3f ms\n", r->min_ms, r->sum_ms / r->received,
               r->max_ms);
    return r->received == r->count ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct run r = {.host = argc > 1 ? argv[1] : "127.0.0.1", .count = 4};
    if (argc > 2)
        r.count = atoi(argv[2]);
    if (argc > 3 || r.count < 1 || r.count > 65535 || weft_addr_parse(&r.dst, r.host, 0) < 0 ||
        r.dst.u.sa.sa_family != AF_INET) {
        fprintf(stderr, "usage: ping [HOST] [COUNT]  (HOST: numeric IPv4, COUNT: 1..65535)\n");
        return 2;
    }
    int rc = weft_main(ping, &r, NULL);
    if (rc < 0) {
        fprintf(stderr, "ping: %s\n", weft_strerror(rc));
        return 1;
    }
    return rc;
}
