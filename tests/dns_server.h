/*
 * dns_server.h - real DNS servers on loopback for the resolver's tests and
 * benchmark: dnsmasq with its own hosts data, a server that answers every
 * query with SERVFAIL, a UDP port that never answers, and a small server of
 * the tests' own that can be told to fall silent, truncate, or hold an
 * answer back.
 */
#ifndef WEFT_TEST_DNS_SERVER_H
#define WEFT_TEST_DNS_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* What AI_ADDRCONFIG should keep on this machine, worked out here on the
 * same rule as resolve.c (non-loopback, non-link-local addresses; none at
 * all: keep both).  Returns false if the interfaces cannot be listed. */
static inline bool host_families(bool *v4, bool *v6)
{
    struct ifaddrs *ifs, *i;
    *v4 = *v6 = false;
    if (getifaddrs(&ifs) != 0)
        return false;
    for (i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr)
            continue;
        if (i->ifa_addr->sa_family == AF_INET &&
            (ntohl(((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr) >> 24) != 127)
            *v4 = true;
        struct in6_addr *a6 = &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
        if (i->ifa_addr->sa_family == AF_INET6 && !IN6_IS_ADDR_LOOPBACK(a6) &&
            !IN6_IS_ADDR_LINKLOCAL(a6))
            *v6 = true;
    }
    freeifaddrs(ifs);
    if (!*v4 && !*v6)
        *v4 = *v6 = true;
    return true;
}

/* A UDP socket bound to 127.0.0.1 on a free port; returns the fd. */
static inline int dns_udp_bound(int *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* A port that both UDP and TCP can bind on 127.0.0.1 right now, below the
 * ephemeral range (32768 and up here): a port from bind(0) is free for UDP
 * only, and under a busy suite its TCP twin is often some connection's
 * ephemeral port, which makes dnsmasq exit at once.  0 if none is found. */
static inline int dns_free_port(void)
{
    static unsigned seed;
    if (!seed)
        seed = (unsigned)getpid() ^ (unsigned)time(NULL);
    for (int tries = 0; tries < 200; tries++) {
        int port = 20000 + (int)(rand_r(&seed) % 12000);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        if (t >= 0)
            setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* as dnsmasq */
        int ok = u >= 0 && t >= 0 && bind(u, (struct sockaddr *)&a, sizeof a) == 0 &&
                 bind(t, (struct sockaddr *)&a, sizeof a) == 0;
        if (u >= 0)
            close(u);
        if (t >= 0)
            close(t);
        if (ok)
            return port;
    }
    return 0;
}

/* Sends one A query for name to 127.0.0.1:port; 1 if anything answers
 * within ms. */
static inline int dns_answers(int port, const char *name, int ms)
{
    unsigned char q[300] = { 0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0 };
    size_t n = 12;
    for (const char *p = name; *p;) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        q[n++] = (unsigned char)l;
        memcpy(q + n, p, l);
        n += l;
        p += l + (dot ? 1 : 0);
    }
    q[n++] = 0;
    q[n++] = 0, q[n++] = 1, q[n++] = 0, q[n++] = 1;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sendto(fd, q, n, 0, (struct sockaddr *)&a, sizeof a);
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int ok = poll(&p, 1, ms) == 1;
    close(fd);
    return ok;
}

/* A server that answers every UDP query with SERVFAIL, on its own thread
 * until the process ends. */
static inline void *dns_servfail_run(void *arg)
{
    int fd = (int)(intptr_t)arg;
    unsigned char buf[512];
    for (;;) {
        struct sockaddr_storage from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n < 12)
            continue;
        buf[2] = (unsigned char)(0x80 | (buf[2] & 0x01)); /* QR, keep RD */
        buf[3] = 0x82;                                     /* RA, SERVFAIL */
        memset(buf + 6, 0, 6);                             /* no records */
        sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, len);
    }
    return NULL;
}

static inline int dns_servfail_start(void)
{
    int port, fd = dns_udp_bound(&port);
    if (fd < 0)
        return -1;
    pthread_t t;
    pthread_create(&t, NULL, dns_servfail_run, (void *)(intptr_t)fd);
    pthread_detach(t);
    return port;
}

typedef struct dns_server {
    pid_t pid;
    int port;
    char dir[64];
    char servers[32]; /* "127.0.0.1:PORT" for weft_config.dns_servers */
} dns_server;

/* The names dnsmasq serves; everything else under .test is NXDOMAIN, names
 * under fail.test go to a SERVFAIL server, other names are REFUSED. */
static inline void dns_write_hosts(FILE *f)
{
    fputs("127.0.0.10 www.test\n::10 www.test\n"
          "127.0.0.11 v4only.test\n::11 v6only.test\n"
          "127.0.0.1 lo4.test\n127.0.0.1 he.test\n::1 he.test\n"
          "127.0.0.21 multi.test\n127.0.0.22 multi.test\n127.0.0.23 multi.test\n",
          f);
    for (int i = 1; i <= 40; i++) /* 40 A records: an answer over 512 bytes */
        fprintf(f, "127.0.1.%d big.test\n", i);
}

/* Starts dnsmasq on 127.0.0.1:fixed_port, or a free port if 0.  Names under
 * slow.test are forwarded to a port that never answers.  Returns 0, or -1
 * if it would not start (then *d is unusable). */
static inline int dns_server_start_on(dns_server *d, int fixed_port)
{
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "/tmp/weft-dns-XXXXXX");
    if (!mkdtemp(d->dir))
        return -1;
    char hosts[96];
    snprintf(hosts, sizeof hosts, "%s/hosts", d->dir);
    FILE *f = fopen(hosts, "w");
    if (!f)
        return -1;
    dns_write_hosts(f);
    fclose(f);
    int failport = dns_servfail_start();
    int holeport = 0;
    if (dns_udp_bound(&holeport) < 0) /* kept open, silent, for the process's life */
        return -1;
    for (int attempt = 0; attempt < 5; attempt++) {
        int port = fixed_port ? fixed_port : dns_free_port();
        if (!port)
            return -1;
        char a_port[32], a_hosts[128], a_fail[64], a_slow[64];
        snprintf(a_slow, sizeof a_slow, "--server=/slow.test/127.0.0.1#%d", holeport);
        snprintf(a_port, sizeof a_port, "--port=%d", port);
        snprintf(a_hosts, sizeof a_hosts, "--addn-hosts=%s", hosts);
        snprintf(a_fail, sizeof a_fail, "--server=/fail.test/127.0.0.1#%d", failport);
        pid_t pid = fork();
        if (pid == 0) {
            int null = open("/dev/null", 1);
            dup2(null, 1);
            dup2(null, 2);
            execlp("dnsmasq", "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                   "--no-resolv", "--no-hosts", "--no-negcache", "--cache-size=0",
                   "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=",
                   "--user=root", "--local=/test/", "--cname=alias.test,www.test",
                   "--cname=chain.test,alias.test", a_port, a_hosts, a_fail, a_slow, (char *)NULL);
            _exit(127);
        }
        for (int i = 0; i < 50; i++) {
            if (dns_answers(port, "www.test", 100)) {
                d->pid = pid;
                d->port = port;
                snprintf(d->servers, sizeof d->servers, "127.0.0.1:%d", port);
                return 0;
            }
            if (waitpid(pid, NULL, WNOHANG) == pid) {
                pid = 0;
                break;
            }
        }
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
    }
    return -1;
}

static inline int dns_server_start(dns_server *d)
{
    return dns_server_start_on(d, 0);
}

static inline void dns_server_stop(dns_server *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        waitpid(d->pid, NULL, 0);
        d->pid = 0;
    }
    char path[96];
    snprintf(path, sizeof path, "%s/hosts", d->dir);
    unlink(path);
    rmdir(d->dir);
}

/* ---- a server that does as the test says -------------------------------- */

/* A DNS server on 127.0.0.1, UDP and TCP on one port, served by a thread of
 * its own: what dnsmasq cannot be made to do.  It answers A queries with
 * 127.0.0.7 and other types with no records.  The test may change the
 * switches at any time (__atomic_store_n) and reads the counters the same
 * way. */
typedef struct dns_stub {
    int port;
    char servers[32]; /* "127.0.0.1:PORT" for weft_config.dns_servers */
    /* switches */
    int silent;       /* drop every query, UDP and TCP */
    int truncate_udp; /* UDP answers come back with TC set and no records */
    int hold_ms;      /* a TCP answer to a name whose first label starts
                       * with "hold" is sent this much later */
    /* counters */
    int udp_queries, tcp_accepts, tcp_queries;
    /* the server's own */
    int udp, tcp, stop[2];
    pthread_t thread;
} dns_stub;

static inline int64_t dns_stub_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Builds in out the answer to the query q[0..n); returns its length, or 0
 * for a query it cannot read.  *hold says whether it is to be held back. */
static inline size_t dns_stub_answer(dns_stub *s, const unsigned char *q, size_t n,
                                     unsigned char *out, int udp, int *hold)
{
    size_t i = 12;
    if (n < 12 || q[4] != 0 || q[5] != 1)
        return 0;
    while (i < n && q[i] != 0) {
        if (q[i] & 0xc0)
            return 0;
        i += 1 + q[i];
    }
    if (i + 5 > n)
        return 0;
    size_t end = i + 5; /* the root label, type, class */
    int type_a = q[i + 1] == 0 && q[i + 2] == 1;
    int tc = udp && __atomic_load_n(&s->truncate_udp, __ATOMIC_RELAXED);
    *hold = !udp && q[12] >= 4 && memcmp(q + 13, "hold", 4) == 0;
    memcpy(out, q, end);
    out[2] = (unsigned char)(0x80 | (tc ? 0x02 : 0) | (q[2] & 0x01)); /* QR, TC, keep RD */
    out[3] = 0x80;                                                       /* RA, NOERROR */
    memset(out + 6, 0, 6);
    if (!type_a || tc)
        return end;
    static const unsigned char rr[] = { 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 7 };
    out[7] = 1;
    memcpy(out + end, rr, sizeof rr);
    return end + sizeof rr;
}

static inline void *dns_stub_run(void *arg)
{
    dns_stub *s = arg;
    struct {
        int fd;
        size_t len;
        unsigned char buf[1024];
    } conn[8];
    struct {
        int fd;
        int64_t due;
        size_t len;
        unsigned char msg[600];
    } held[8];
    int nconn = 0, nheld = 0;
    for (;;) {
        struct pollfd p[11] = { { .fd = s->stop[0], .events = POLLIN },
                                { .fd = s->udp, .events = POLLIN },
                                { .fd = s->tcp, .events = POLLIN } };
        for (int k = 0; k < nconn; k++)
            p[3 + k] = (struct pollfd){ .fd = conn[k].fd, .events = POLLIN };
        int64_t wait = -1;
        for (int k = 0; k < nheld; k++) {
            int64_t left = held[k].due - dns_stub_ms();
            if (wait < 0 || left < wait)
                wait = left < 0 ? 0 : left;
        }
        if (poll(p, (nfds_t)(3 + nconn), (int)wait) < 0 && errno != EINTR)
            break;
        if (p[0].revents)
            break;
        for (int k = 0; k < nheld;) {
            if (held[k].due > dns_stub_ms()) {
                k++;
                continue;
            }
            send(held[k].fd, held[k].msg, held[k].len, MSG_NOSIGNAL);
            held[k] = held[--nheld];
        }
        unsigned char q[1024], a[600];
        int hold;
        if (p[1].revents) {
            struct sockaddr_storage from;
            socklen_t flen = sizeof from;
            ssize_t n;
            while ((n = recvfrom(s->udp, q, sizeof q, MSG_DONTWAIT, (struct sockaddr *)&from,
                                 &flen)) >= 0) {
                __atomic_add_fetch(&s->udp_queries, 1, __ATOMIC_RELAXED);
                size_t m = dns_stub_answer(s, q, (size_t)n, a, 1, &hold);
                if (m && !__atomic_load_n(&s->silent, __ATOMIC_RELAXED))
                    sendto(s->udp, a, m, 0, (struct sockaddr *)&from, flen);
                flen = sizeof from;
            }
        }
        if (p[2].revents) {
            int fd = accept4(s->tcp, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0 && nconn < 8) {
                __atomic_add_fetch(&s->tcp_accepts, 1, __ATOMIC_RELAXED);
                conn[nconn].fd = fd;
                conn[nconn++].len = 0;
            } else if (fd >= 0) {
                close(fd);
            }
        }
        for (int k = 0; k < nconn;) {
            if (!p[3 + k].revents) {
                k++;
                continue;
            }
            ssize_t n = recv(conn[k].fd, conn[k].buf + conn[k].len,
                             sizeof conn[k].buf - conn[k].len, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                for (int h = 0; h < nheld;) /* its held answers go with it */
                    if (held[h].fd == conn[k].fd)
                        held[h] = held[--nheld];
                    else
                        h++;
                close(conn[k].fd);
                conn[k] = conn[--nconn];
                p[3 + k] = p[3 + nconn];
                continue;
            }
            if (n > 0)
                conn[k].len += (size_t)n;
            for (;;) { /* each message: a two-byte length, then the query */
                size_t len = conn[k].len;
                size_t mlen = len >= 2 ? (size_t)conn[k].buf[0] << 8 | conn[k].buf[1] : 0;
                if (len < 2 || len < 2 + mlen)
                    break;
                __atomic_add_fetch(&s->tcp_queries, 1, __ATOMIC_RELAXED);
                size_t m = dns_stub_answer(s, conn[k].buf + 2, mlen, a + 2, 0, &hold);
                if (m && !__atomic_load_n(&s->silent, __ATOMIC_RELAXED)) {
                    a[0] = (unsigned char)(m >> 8);
                    a[1] = (unsigned char)m;
                    int hms = __atomic_load_n(&s->hold_ms, __ATOMIC_RELAXED);
                    if (hold && hms > 0 && nheld < 8) {
                        held[nheld].fd = conn[k].fd;
                        held[nheld].due = dns_stub_ms() + hms;
                        held[nheld].len = m + 2;
                        memcpy(held[nheld++].msg, a, m + 2);
                    } else {
                        send(conn[k].fd, a, m + 2, MSG_NOSIGNAL);
                    }
                }
                memmove(conn[k].buf, conn[k].buf + 2 + mlen, len - 2 - mlen);
                conn[k].len = len - 2 - mlen;
            }
            k++;
        }
    }
    for (int k = 0; k < nconn; k++)
        close(conn[k].fd);
    return NULL;
}

/* Starts the server answering.  Returns 0, or -1 (then *s is unusable). */
static inline int dns_stub_start(dns_stub *s)
{
    memset(s, 0, sizeof *s);
    s->udp = s->tcp = -1;
    for (int attempt = 0; attempt < 5 && s->tcp < 0; attempt++) {
        int port = dns_free_port();
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1, big = 1 << 20;
        setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        /* a burst of queries must not overflow it while it answers */
        if (setsockopt(u, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) != 0)
            setsockopt(u, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        if (port && bind(u, (struct sockaddr *)&a, sizeof a) == 0 &&
            bind(t, (struct sockaddr *)&a, sizeof a) == 0 && listen(t, 16) == 0) {
            s->udp = u;
            s->tcp = t;
            s->port = port;
            break;
        }
        close(u);
        close(t);
    }
    if (s->tcp < 0)
        return -1;
    snprintf(s->servers, sizeof s->servers, "127.0.0.1:%d", s->port);
    if (pipe2(s->stop, O_CLOEXEC) != 0) {
        close(s->udp);
        close(s->tcp);
        return -1;
    }
    if (pthread_create(&s->thread, NULL, dns_stub_run, s) != 0) {
        close(s->stop[0]);
        close(s->stop[1]);
        close(s->udp);
        close(s->tcp);
        return -1;
    }
    return 0;
}

static inline void dns_stub_stop(dns_stub *s)
{
    ssize_t ignored = write(s->stop[1], "x", 1);
    (void)ignored;
    pthread_join(s->thread, NULL);
    close(s->stop[0]);
    close(s->stop[1]);
    close(s->udp);
    close(s->tcp);
}

/* Moves this (single-threaded, root) process into network and mount
 * namespaces of its own, with loopback up and /etc/resolv.conf saying
 * "nameserver 127.0.0.1", so that getaddrinfo asks a dnsmasq started
 * afterwards on port 53 and nothing leaves the namespace.  Returns 0, or
 * -errno (EPERM without the privilege: the caller skips). */
static inline int dns_private_namespace(void)
{
    if (unshare(CLONE_NEWNET | CLONE_NEWNS) != 0)
        return -errno;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return -errno;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = { 0 };
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    int rc = ioctl(fd, SIOCGIFFLAGS, &ifr);
    ifr.ifr_flags |= IFF_UP;
    if (rc == 0)
        rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
    close(fd);
    if (rc != 0)
        return -errno;
    char path[] = "/tmp/weft-resolv-XXXXXX";
    int rf = mkstemp(path);
    if (rf < 0)
        return -errno;
    const char conf[] = "nameserver 127.0.0.1\noptions timeout:1 attempts:2\n";
    ssize_t w = write(rf, conf, sizeof conf - 1);
    close(rf);
    rc = w == (ssize_t)(sizeof conf - 1) && mount(path, "/etc/resolv.conf", NULL, MS_BIND, NULL) == 0
             ? 0
             : -errno;
    unlink(path); /* the bind mount keeps the file alive */
    return rc;
}

#endif /* WEFT_TEST_DNS_SERVER_H */
