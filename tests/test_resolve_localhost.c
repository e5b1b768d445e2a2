/*
 * test_resolve_localhost.c - "localhost" and the names under it (RFC 6761)
 * are the loopback's: weft_resolve answers them itself, whichever resolver
 * the loop uses, in a coroutine or not.  The DNS server configured is the
 * test's own, silent, and counts what reaches it; the system resolver's
 * cases run in a network namespace of their own, where nothing answers on
 * port 53 and nothing leaves the machine.
 */
#include <criterion/criterion.h>
#include <weft.h>

#include "dns_server.h"
#include "helpers.h"

#include <ifaddrs.h>
#ifdef UNDER_ASAN
#include <sanitizer/lsan_interface.h>
#endif

static dns_stub stub;
static int fds_before;

static void setup(void)
{
    cr_assert_eq(dns_stub_start(&stub), 0, "the test's DNS server did not start");
    __atomic_store_n(&stub.silent, 1, __ATOMIC_RELAXED);
    fds_before = count_fds();
}

static void teardown(void)
{
    dns_stub_stop(&stub);
}

TestSuite(resolve_localhost, .init = setup, .fini = teardown, .timeout = 120);

typedef struct lookup {
    const char *host;
    int family, flags;
    int64_t timeout;
    int rc, n;
    char addrs[8][64];
    char canon[64];
    int64_t ms;
} lookup;

static void run_lookup(lookup *lk)
{
    weft_addrinfo *ai = NULL;
    weft_hints h = { .family = lk->family, .socktype = SOCK_STREAM, .flags = lk->flags };
    int64_t t0 = mono_ms();
    lk->rc = weft_resolve(&ai, lk->host, "80", &h, lk->timeout ? lk->timeout : 2000);
    lk->ms = mono_ms() - t0;
    lk->n = 0;
    lk->canon[0] = '\0';
    if (lk->rc == 0 && weft_addrinfo_canonname(ai))
        snprintf(lk->canon, sizeof lk->canon, "%s", weft_addrinfo_canonname(ai));
    for (const weft_addrinfo *p = ai; p && lk->n < 8; p = weft_addrinfo_next(p))
        weft_addr_format(weft_addrinfo_addr(p), lk->addrs[lk->n++], sizeof lk->addrs[0]);
    weft_addrinfo_free(ai);
}

static bool has(const lookup *lk, const char *addr)
{
    for (int i = 0; i < lk->n; i++)
        if (strcmp(lk->addrs[i], addr) == 0)
            return true;
    return false;
}

/* The cases every resolver, in a coroutine or not, must answer alike; the
 * first PLAIN are "localhost" itself. */
#define PLAIN 3
static lookup cases[] = {
    { .host = "localhost", .family = AF_INET6 },
    { .host = "localhost", .family = AF_INET },
    { .host = "localhost", .family = 0 },
    { .host = "foo.localhost", .family = 0 },
    { .host = "LocalHost.", .family = AF_INET },
    { .host = "a.b.LOCALHOST", .family = AF_INET6 },
    { .host = "localhost", .family = AF_INET6, .flags = WEFT_AI_V4MAPPED },
    { .host = "localhost", .family = 0, .flags = WEFT_AI_CANONNAME },
};
#define NCASES (sizeof cases / sizeof cases[0])

static void run_cases(size_t n)
{
    for (size_t i = 0; i < NCASES; i++) {
        cases[i].rc = 1; /* not run */
        if (i < n)
            run_lookup(&cases[i]);
    }
}

static int cases_main(void *arg)
{
    (void)arg;
    run_cases(NCASES);
    return 0;
}

/* Checks what run_cases found; returns how many checks failed, each told
 * through report (cr_assert's in the test's process, stderr in a child). */
static int check_cases(size_t n, void (*report)(const char *what, size_t i, const lookup *lk))
{
    int bad = 0;
#define WANT(cond, what)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            report(what, i, &cases[i]);                                                        \
            bad++;                                                                             \
        }                                                                                      \
    } while (0)
    for (size_t i = 0; i < n; i++) {
        const lookup *lk = &cases[i];
        WANT(lk->rc == 0, "failed");
        if (lk->rc != 0)
            continue;
        WANT(lk->ms < LATE_MS, "took too long");
        bool v6 = lk->family != AF_INET, v4 = lk->family != AF_INET6;
        WANT(has(lk, "[::1]:80") == v6, "::1 wrong");
        WANT(has(lk, "127.0.0.1:80") == v4, "127.0.0.1 wrong");
        WANT(lk->n == (int)v4 + (int)v6, "wrong count");
        if (lk->flags & WEFT_AI_CANONNAME)
            WANT(strcmp(lk->canon, "localhost") == 0, "canonical name");
    }
#undef WANT
    return bad;
}

static void report_assert(const char *what, size_t i, const lookup *lk)
{
    cr_expect(false, "case %zu (%s, family %d, flags %#x): %s: %s, %d entries, first %s, %lld ms", i,
            lk->host, lk->family, (unsigned)lk->flags, what, weft_err_name(lk->rc), lk->n,
            lk->n ? lk->addrs[0] : "-", (long long)lk->ms);
}

static void report_stderr(const char *what, size_t i, const lookup *lk)
{
    fprintf(stderr, "case %zu (%s, family %d, flags %#x): %s: %s, %d entries, first %s\n", i,
            lk->host, lk->family, (unsigned)lk->flags, what, weft_err_name(lk->rc), lk->n,
            lk->n ? lk->addrs[0] : "-");
}

static weft_config stub_cfg(void)
{
    weft_config c = { 0 };
    c.dns_servers = stub.servers;
    return c;
}

/* LeakSanitizer's verdict now, in this test rather than at exit. */
static void no_leaks(void)
{
#ifdef UNDER_ASAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "leaks: see LeakSanitizer's report");
#endif
}

Test(resolve_localhost, in_a_coroutine)
{
    weft_config c = stub_cfg();
    cr_assert_eq(weft_main(cases_main, NULL, &c), 0);
    check_cases(NCASES, report_assert);
    cr_assert_eq(__atomic_load_n(&stub.udp_queries, __ATOMIC_RELAXED), 0,
                 "a localhost name went to the DNS server");
    cr_assert_eq(count_fds(), fds_before);
    no_leaks();
}

static int others_main(void *arg)
{
    lookup *lk = arg;
    for (int i = 0; i < 3; i++)
        run_lookup(&lk[i]);
    return 0;
}

static int one_main(void *arg)
{
    run_lookup(arg);
    return 0;
}

Test(resolve_localhost, ipv6_alone_leaks_nothing)
{
    /* c-ares 1.18 leaks 10 bytes on this one when /etc/hosts has no ::1
     * line; weft asks no resolver. */
    lookup lk = { .host = "localhost", .family = AF_INET6 };
    weft_config c = stub_cfg();
    cr_assert_eq(weft_main(one_main, &lk, &c), 0);
    cr_assert_eq(lk.rc, 0, "%s", weft_err_name(lk.rc));
    cr_assert_eq(lk.n, 1);
    cr_assert_str_eq(lk.addrs[0], "[::1]:80");
    no_leaks();
}

Test(resolve_localhost, only_localhost_names)
{
    /* These are not under localhost: each goes to the (silent) server. */
    lookup lk[3] = {
        { .host = "notlocalhost", .timeout = 300 },
        { .host = "localhost.test", .timeout = 300 },
        { .host = "localhostx", .timeout = 300 },
    };
    weft_config c = stub_cfg();
    cr_assert_eq(weft_main(others_main, lk, &c), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(lk[i].rc, -ETIMEDOUT, "%s: %s", lk[i].host, weft_err_name(lk[i].rc));
    cr_assert_geq(__atomic_load_n(&stub.udp_queries, __ATOMIC_RELAXED), 3);
    lookup bad = { .host = "..localhost" };
    run_lookup(&bad);
    cr_assert_eq(bad.rc, WEFT_EAI_BADNAME, "%s", weft_err_name(bad.rc));
}

Test(resolve_localhost, addrconfig)
{
    bool v4, v6;
    cr_assert(host_families(&v4, &v6));
    lookup lk = { .host = "localhost", .flags = WEFT_AI_ADDRCONFIG };
    weft_config c = stub_cfg();
    cr_assert_eq(weft_main(one_main, &lk, &c), 0);
    cr_log_info("this host: IPv4 %d, IPv6 %d", v4, v6);
    cr_assert_eq(lk.rc, 0, "%s", weft_err_name(lk.rc));
    cr_assert_eq(has(&lk, "127.0.0.1:80"), v4);
    cr_assert_eq(has(&lk, "[::1]:80"), v6);
    no_leaks();
}

Test(resolve_localhost, outside_any_coroutine)
{
    /* No loop on the thread: c-ares would make a channel of its own, with
     * resolv.conf's servers, so only the names it keeps off the wire. */
    run_cases(PLAIN);
    check_cases(PLAIN, report_assert);
    /* A loop that runs no coroutine now: its (silent) server would be asked. */
    weft_loop *l;
    weft_config c = stub_cfg();
    cr_assert_eq(weft_loop_new(&l, &c), 0);
    run_cases(NCASES);
    weft_loop_free(l);
    check_cases(NCASES, report_assert);
    cr_assert_eq(__atomic_load_n(&stub.udp_queries, __ATOMIC_RELAXED), 0);
    cr_assert_eq(count_fds(), fds_before);
    no_leaks();
}

Test(resolve_localhost, system_resolver)
{
    /* getaddrinfo reads /etc/resolv.conf: in the child's own namespaces it
     * names 127.0.0.1, where nothing listens. */
    int fds = count_fds();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int rc = dns_private_namespace();
        if (rc < 0) {
            fprintf(stderr, "no private namespace: %s\n", strerror(-rc));
            _exit(77);
        }
        weft_config c = { 0 };
        c.resolver = "system";
        int bad = weft_main(cases_main, NULL, &c) != 0;
        bad += check_cases(NCASES, report_stderr);
        setenv("WEFT_RESOLVER", "system", 1); /* outside a coroutine */
        run_cases(NCASES);
        bad += check_cases(NCASES, report_stderr);
        _exit(bad ? 1 : 0);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st), "the child died");
    if (WEXITSTATUS(st) == 77)
        cr_skip_test("needs CAP_SYS_ADMIN for network and mount namespaces");
    cr_assert_eq(WEXITSTATUS(st), 0, "checks failed in the child (see its stderr)");
    cr_assert_eq(count_fds(), fds);
}
