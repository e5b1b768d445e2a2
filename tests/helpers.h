/*
 * helpers.h - small things several test files need: counting open
 * descriptors, a loopback listener on a free port, raising RLIMIT_NOFILE.
 * Tests record results in variables and assert on the main stack after
 * the loop returns, never inside a coroutine.
 */
#ifndef WEFT_TEST_HELPERS_H
#define WEFT_TEST_HELPERS_H

#include <weft.h>
#include <weft/testing.h>

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* Which sanitizer the test is built with, for bounds that must differ. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

/* Monotonic clock, independent of weft_now(), to measure weft by. */
static inline int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline int64_t mono_ms(void)
{
    return mono_ns() / 1000000;
}

/* How late a timeout may fire before a test calls it wrong.  On a shared
 * virtual machine a process can lose the CPU for a few hundred ms; a timer
 * that is really wrong fires at some other deadline, seconds away, or never. */
#define LATE_MS 500

/* A test's .timeout only guards against a hang, so it is generous: under
 * ASan, on a host losing half its CPU to the hypervisor, some tests ran six
 * to ten times slower than usual. */

/* Descriptors open in this process. */
static inline int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the DIR's own */
}

/* Listens on host (numeric) at a free port; returns the port or -errno. */
static inline int listen_any(weft_sock **out, const char *host)
{
    int rc = weft_tcp_listen(out, host, 0, 128, 0);
    if (rc < 0)
        return rc;
    weft_addr a;
    if ((rc = weft_sock_local(*out, &a)) < 0)
        return rc;
    return weft_addr_port(&a);
}

/* Local and peer port of s, or the error. */
static inline int local_port(const weft_sock *s)
{
    weft_addr a;
    int rc = weft_sock_local(s, &a);
    return rc < 0 ? rc : weft_addr_port(&a);
}

static inline int peer_port(const weft_sock *s)
{
    weft_addr a;
    int rc = weft_sock_peer(s, &a);
    return rc < 0 ? rc : weft_addr_port(&a);
}

/* A connected TCP pair over host (numeric): *a connected, *b accepted.
 * Returns 0 or the failing call's code. */
static inline int make_pair_on(const char *host, weft_sock **a, weft_sock **b)
{
    weft_sock *l;
    int port = listen_any(&l, host);
    if (port <= 0)
        return port < 0 ? port : -EINVAL;
    int rc = weft_tcp_connect(a, host, port, 2000);
    if (rc == 0) {
        rc = weft_tcp_accept(l, b, 2000);
        if (rc < 0)
            weft_close(*a);
    }
    weft_close(l);
    return rc;
}

static inline int make_pair(weft_sock **a, weft_sock **b)
{
    return make_pair_on("127.0.0.1", a, b);
}

/* Raises the soft descriptor limit to the hard one; returns the new soft. */
static inline long raise_nofile(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0)
        return -1;
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
    getrlimit(RLIMIT_NOFILE, &r);
    return (long)r.rlim_cur;
}

/* Fills buf with a pattern that depends on seed and position. */
static inline void fill_pattern(unsigned char *buf, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (unsigned char)x;
    }
}

#endif
