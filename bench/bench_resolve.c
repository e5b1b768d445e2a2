/*
 * bench_resolve.c - lookups per second from 1,000 coroutines against a
 * local dnsmasq: the c-ares resolver driven by the loop, and the system
 * resolver (getaddrinfo on weft's worker pool).
 *
 * getaddrinfo reads /etc/resolv.conf, so the benchmark moves itself into
 * private network and mount namespaces where resolv.conf names a dnsmasq
 * on 127.0.0.1:53 (needs root).  Usage: bench_resolve [LOOKUPS] [REPS]
 */
#include <weft.h>

#include "../tests/dns_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define COROUTINES 1000

typedef struct run {
    long todo, done, failed;
} run;

static void worker(void *arg)
{
    run *r = arg;
    static const char *const names[] = { "www.test", "lo4.test", "multi.test", "alias.test" };
    weft_hints h = { .family = AF_INET, .socktype = SOCK_STREAM };
    while (r->todo > 0) {
        r->todo--;
        weft_addrinfo *ai;
        int rc = weft_resolve(&ai, names[r->todo % 4], "80", &h, 10000);
        if (rc == 0) {
            weft_addrinfo_free(ai);
            r->done++;
        } else {
            r->failed++;
        }
    }
}

static int bench_main(void *arg)
{
    for (int i = 0; i < COROUTINES; i++)
        weft_go(worker, arg);
    return 0;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double measure(const char *resolver, long lookups, long *failed)
{
    weft_config c = { 0 };
    c.resolver = resolver;
    c.dns_servers = strcmp(resolver, "ares") == 0 ? "127.0.0.1:53" : NULL;
    c.dns_timeout_ms = 500;
    run r = { .todo = lookups };
    double t0 = now_s();
    weft_main(bench_main, &r, &c);
    double dt = now_s() - t0;
    *failed += r.failed;
    return (double)r.done / dt;
}

int main(int argc, char **argv)
{
    long lookups = argc > 1 ? atol(argv[1]) : 50000;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (reps < 1 || reps > 50)
        reps = 5;
    int rc = dns_private_namespace();
    if (rc < 0) {
        fprintf(stderr, "bench_resolve: needs root for a private namespace (%s)\n",
                strerror(-rc));
        return 77;
    }
    dns_server d;
    if (dns_server_start_on(&d, 53) != 0) {
        fprintf(stderr, "bench_resolve: dnsmasq did not start\n");
        return 1;
    }
    const char *modes[] = { "ares", "system" };
    printf("%-8s %12s %12s %12s %8s   (%ld lookups by %d coroutines, %d runs)\n", "resolver",
           "median/s", "min/s", "max/s", "failed", lookups, COROUTINES, reps);
    for (int m = 0; m < 2; m++) {
        double v[50];
        long failed = 0;
        for (int i = 0; i < reps; i++)
            v[i] = measure(modes[m], lookups, &failed);
        qsort(v, (size_t)reps, sizeof v[0], cmp);
        printf("%-8s %12.0f %12.0f %12.0f %8ld\n", modes[m], v[reps / 2], v[0], v[reps - 1],
               failed);
    }
    dns_server_stop(&d);
    return 0;
}
