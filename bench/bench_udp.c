/*
 * bench_udp.c - datagrams per second over loopback, one side per process
 * (bench/udp.sh runs a receiver and a sender pinned to different cores).
 *
 *   bench_udp recv IMPL BATCH DUR_MS WARM_MS RCVBUF   prints "port N", then
 *       receives; counts what arrives in DUR_MS after WARM_MS from the
 *       first datagram and prints a RESULT line.
 *   bench_udp send IMPL BATCH PORT DUR_MS WARM_MS SIZE   sends SIZE-byte
 *       datagrams to 127.0.0.1:PORT for WARM_MS + DUR_MS + 500 ms, counts
 *       those sent in the DUR_MS after WARM_MS and prints a RESULT line.
 *
 * IMPL is how the datagrams move:
 *   weft1      weft_sendto / weft_recvfrom, one per call, in a coroutine
 *   weftm      weft_sendmmsg / weft_recvmmsg, BATCH per call (equal sizes:
 *              the sends go as UDP GSO where the kernel has it)
 *   weftm-var  weft_sendmmsg with lengths rising by one through each batch
 *              around SIZE (mean SIZE + 0.5): no GSO run can form (send only)
 *   plain      blocking sendmmsg / recvmmsg(MSG_WAITFORONE), no weft
 *   plain-gso  blocking sendmsg of BATCH datagrams with UDP_SEGMENT (send)
 * Every run stops by itself: the receiver gives up after 5 s of silence.
 */
#include <weft.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCH 256
#define MAX_SIZE 2048
#define IDLE_MS 5000

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

typedef struct cfg {
    const char *impl;
    int batch, port, size, rcvbuf;
    int64_t dur_ns, warm_ns, tail_ns;
    /* results */
    long long count;
    double secs;
    int err;
} cfg;

static void result(const char *role, const cfg *c)
{
    printf("RESULT role=%s impl=%s batch=%d count=%lld secs=%.3f dps=%.0f err=%s\n", role, c->impl,
           c->batch, c->count, c->secs, c->secs > 0 ? c->count / c->secs : 0.0,
           c->err ? weft_err_name(c->err) : "none");
    fflush(stdout);
}

/* ---- the counting window --------------------------------------------------------- */

/* Counts datagrams from first + warm to first + warm + dur (the first
 * datagram received or sent starts the clock).  Returns true once the
 * window and c->tail_ns after it are over: the sender goes on a little so
 * that the receiver, which starts later, counts a full window. */
typedef struct window {
    int64_t first, start, end;
    long long in;
} window;

static bool window_add(window *w, const cfg *c, int n)
{
    int64_t t = now_ns();
    if (!w->first) {
        w->first = t;
        w->start = t + c->warm_ns;
        w->end = w->start + c->dur_ns;
    }
    if (t >= w->start && t < w->end)
        w->in += n;
    return t >= w->end + c->tail_ns;
}

static void window_done(const window *w, cfg *c)
{
    c->count = w->in;
    c->secs = (double)c->dur_ns / 1e9;
}

/* ---- receiving --------------------------------------------------------------- */

static weft_sock *rx_sock;

static int weft_receiver(void *arg)
{
    cfg *c = arg;
    static char bufs[MAX_BATCH][MAX_SIZE];
    weft_dgram v[MAX_BATCH];
    window w = {0};
    bool single = strcmp(c->impl, "weft1") == 0;
    for (;;) {
        int n;
        if (single) {
            /* Check the clock every 64 datagrams, as the batch modes do. */
            n = 0;
            for (int i = 0; i < 64; i++) {
                ssize_t r = weft_recvfrom(rx_sock, bufs[0], MAX_SIZE, NULL, IDLE_MS);
                if (r < 0) {
                    c->err = (int)r;
                    return 0;
                }
                n++;
            }
        } else {
            for (int i = 0; i < c->batch; i++)
                v[i] = (weft_dgram){.buf = bufs[i], .len = MAX_SIZE};
            n = weft_recvmmsg(rx_sock, v, c->batch, IDLE_MS);
            if (n < 0) {
                c->err = n;
                return 0;
            }
        }
        if (window_add(&w, c, n))
            break;
    }
    window_done(&w, c);
    return 0;
}

static void plain_receiver(cfg *c, int fd)
{
    static char bufs[MAX_BATCH][MAX_SIZE];
    struct mmsghdr m[MAX_BATCH];
    struct iovec iov[MAX_BATCH];
    struct timeval tv = {IDLE_MS / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    window w = {0};
    for (;;) {
        for (int i = 0; i < c->batch; i++) {
            iov[i] = (struct iovec){bufs[i], MAX_SIZE};
            memset(&m[i], 0, sizeof m[i]);
            m[i].msg_hdr.msg_iov = &iov[i];
            m[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(fd, m, (unsigned)c->batch, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            c->err = -errno;
            return;
        }
        if (window_add(&w, c, n))
            break;
    }
    window_done(&w, c);
}

static int do_recv(cfg *c)
{
    weft_sock *s;
    int rc = weft_udp_open(&s, AF_INET);
    if (rc == 0)
        rc = weft_udp_bind(s, "127.0.0.1", 0);
    if (rc == 0 && c->rcvbuf > 0)
        rc = weft_sock_set_bufsize(s, c->rcvbuf, 0);
    weft_addr a;
    if (rc == 0)
        rc = weft_sock_local(s, &a);
    if (rc < 0) {
        fprintf(stderr, "bench_udp: receiver: %s\n", weft_strerror(rc));
        return 1;
    }
    printf("port %d\n", weft_addr_port(&a));
    fflush(stdout);
    rx_sock = s;
    if (strncmp(c->impl, "weft", 4) == 0) {
        rc = weft_main(weft_receiver, c, NULL);
        if (rc < 0)
            c->err = rc;
    } else {
        weft_sock_set_blocking(s, 1);
        plain_receiver(c, weft_sock_fd(s));
    }
    weft_close(s);
    result("recv", c);
    return c->err ? 1 : 0;
}

/* ---- sending ------------------------------------------------------------------- */

static weft_sock *tx_sock;
static weft_addr tx_to;

static int weft_sender(void *arg)
{
    cfg *c = arg;
    static char bufs[MAX_BATCH][MAX_SIZE];
    weft_dgram v[MAX_BATCH];
    bool single = strcmp(c->impl, "weft1") == 0;
    bool var = strcmp(c->impl, "weftm-var") == 0;
    for (int i = 0; i < c->batch; i++) {
        size_t len = var ? (size_t)(c->size - c->batch / 2 + 1 + i) : (size_t)c->size;
        v[i] = (weft_dgram){.buf = bufs[i], .len = len, .addr = tx_to};
    }
    window w = {0};
    for (;;) {
        if (single) {
            for (int i = 0; i < 64; i++) {
                ssize_t r = weft_sendto(tx_sock, bufs[0], (size_t)c->size, &tx_to, 1000);
                if (r < 0) {
                    c->err = (int)r;
                    return 0;
                }
            }
            if (window_add(&w, c, 64))
                break;
        } else {
            int r = weft_sendmmsg(tx_sock, v, c->batch, 1000);
            if (r < 0) {
                c->err = r;
                return 0;
            }
            if (window_add(&w, c, r))
                break;
        }
    }
    window_done(&w, c);
    return 0;
}

static void plain_sender(cfg *c, int fd)
{
    static char bufs[MAX_BATCH][MAX_SIZE];
    struct mmsghdr m[MAX_BATCH];
    struct iovec iov[MAX_BATCH];
    bool gso = strcmp(c->impl, "plain-gso") == 0;
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } ctl;
    struct msghdr gh = {.msg_name = &tx_to.u,
                        .msg_namelen = tx_to.len,
                        .msg_iov = iov,
                        .msg_iovlen = (size_t)c->batch};
    if (gso) {
        gh.msg_control = ctl.buf;
        gh.msg_controllen = sizeof ctl.buf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&gh);
        cm->cmsg_level = SOL_UDP;
        cm->cmsg_type = UDP_SEGMENT;
        cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t seg = (uint16_t)c->size;
        memcpy(CMSG_DATA(cm), &seg, sizeof seg);
    }
    for (int i = 0; i < c->batch; i++) {
        iov[i] = (struct iovec){bufs[i], (size_t)c->size};
        memset(&m[i], 0, sizeof m[i]);
        m[i].msg_hdr.msg_name = &tx_to.u;
        m[i].msg_hdr.msg_namelen = tx_to.len;
        m[i].msg_hdr.msg_iov = &iov[i];
        m[i].msg_hdr.msg_iovlen = 1;
    }
    window w = {0};
    for (;;) {
        int n;
        if (gso)
            n = sendmsg(fd, &gh, 0) < 0 ? -1 : c->batch;
        else
            n = sendmmsg(fd, m, (unsigned)c->batch, 0);
        if (n < 0) {
            if (errno == EINTR || errno == ENOBUFS)
                continue;
            c->err = -errno;
            return;
        }
        if (window_add(&w, c, n))
            break;
    }
    window_done(&w, c);
}

static int do_send(cfg *c)
{
    weft_sock *s;
    int rc = weft_udp_open(&s, AF_INET);
    if (rc == 0)
        rc = weft_udp_bind(s, "127.0.0.1", 0);
    if (rc == 0)
        rc = weft_addr_parse(&tx_to, "127.0.0.1", c->port);
    if (rc < 0) {
        fprintf(stderr, "bench_udp: sender: %s\n", weft_strerror(rc));
        return 1;
    }
    tx_sock = s;
    if (strncmp(c->impl, "weft", 4) == 0) {
        rc = weft_main(weft_sender, c, NULL);
        if (rc < 0)
            c->err = rc;
    } else {
        weft_sock_set_blocking(s, 1);
        plain_sender(c, weft_sock_fd(s));
    }
    weft_close(s);
    result("send", c);
    return c->err ? 1 : 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_udp recv IMPL BATCH DUR_MS WARM_MS RCVBUF\n"
                    "       bench_udp send IMPL BATCH PORT DUR_MS WARM_MS SIZE\n"
                    "IMPL: weft1 weftm weftm-var plain plain-gso\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 7)
        return usage();
    cfg c = {.impl = argv[2], .batch = atoi(argv[3])};
    if (c.batch < 1 || c.batch > MAX_BATCH)
        return usage();
    if (strcmp(argv[1], "recv") == 0 && argc == 7) {
        c.dur_ns = atoll(argv[4]) * 1000000LL;
        c.warm_ns = atoll(argv[5]) * 1000000LL;
        c.rcvbuf = atoi(argv[6]);
        return do_recv(&c);
    }
    if (strcmp(argv[1], "send") == 0 && argc == 8) {
        c.port = atoi(argv[4]);
        c.dur_ns = atoll(argv[5]) * 1000000LL;
        c.warm_ns = atoll(argv[6]) * 1000000LL;
        c.tail_ns = 500 * 1000000LL;
        c.size = atoi(argv[7]);
        bool var = strcmp(c.impl, "weftm-var") == 0;
        if (c.size < 1 || c.size + c.batch > MAX_SIZE || (var && c.size <= c.batch / 2) ||
            c.port <= 0)
            return usage();
        return do_send(&c);
    }
    return usage();
}
