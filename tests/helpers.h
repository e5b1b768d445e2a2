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
