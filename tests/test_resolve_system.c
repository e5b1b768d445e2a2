/*
 * test_resolve_system.c - the "system" resolver (getaddrinfo on worker
 * threads).  getaddrinfo reads /etc/resolv.conf, so each test runs in a
 * child moved into network and mount namespaces of its own where
 * resolv.conf names a dnsmasq on 127.0.0.1:53: real lookups, and nothing
 * leaves the machine.  Without the privilege for that, the tests skip.
 */
#include <criterion/criterion.h>
#include <weft.h>

#include "dns_server.h"
#include "helpers.h"

#define SKIP 77

static int failures; /* the child's count; each also printed to stderr */

#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "check failed at line %d: ", __LINE__);                         \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fputc('\n', stderr);                                                              \
            failures++;                                                                       \
        }                                                                                     \
    } while (0)

/* Runs body in a child inside a private namespace with dnsmasq on :53. */
static void in_namespace(void (*body)(void))
{
    int fds = count_fds();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int rc = dns_private_namespace();
        if (rc < 0) {
            fprintf(stderr, "no private namespace: %s\n", strerror(-rc));
            _exit(SKIP);
        }
        dns_server d;
        if (dns_server_start_on(&d, 53) != 0) {
            fprintf(stderr, "dnsmasq did not start on port 53\n");
            _exit(1);
        }
        body();
        dns_server_stop(&d);
        _exit(failures ? 1 : 0);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st), "the child died");
    if (WEXITSTATUS(st) == SKIP)
        cr_skip_test("needs CAP_SYS_ADMIN for network and mount namespaces");
    cr_assert_eq(WEXITSTATUS(st), 0, "checks failed in the child (see its stderr)");
    cr_assert_eq(count_fds(), fds);
}

static weft_config system_cfg(void)
{
    weft_config c = { 0 };
    c.resolver = "system";
    return c;
}

typedef struct one {
    const char *host;
    int family, flags;
    int64_t timeout;
    int rc, n;
    char first[64], canon[64];
    int64_t ms;
} one;

static void resolve_one(one *o)
{
    weft_addrinfo *ai = NULL;
    weft_hints h = { .family = o->family, .socktype = SOCK_STREAM, .flags = o->flags };
    int64_t t0 = weft_now();
    o->rc = weft_resolve(&ai, o->host, "80", &h, o->timeout);
    o->ms = weft_now() - t0;
    o->n = 0;
    for (const weft_addrinfo *p = ai; p; p = weft_addrinfo_next(p))
        if (o->n++ == 0)
            weft_addr_format(weft_addrinfo_addr(p), o->first, sizeof o->first);
    if (ai && weft_addrinfo_canonname(ai))
        snprintf(o->canon, sizeof o->canon, "%s", weft_addrinfo_canonname(ai));
    weft_addrinfo_free(ai);
}

static int one_main(void *arg)
{
    resolve_one(arg);
    return 0;
}

static one run_one(const char *host, int family, int flags, int64_t timeout)
{
    one o = { .host = host, .family = family, .flags = flags, .timeout = timeout };
    weft_config c = system_cfg();
    weft_main(one_main, &o, &c);
    return o;
}

static void answers_body(void)
{
    one o = run_one("www.test", AF_INET, 0, 5000);
    CHECK(o.rc == 0 && strcmp(o.first, "127.0.0.10:80") == 0, "www.test: %s %s",
          weft_err_name(o.rc), o.first);
    o = run_one("www.test", AF_INET6, 0, 5000);
    CHECK(o.rc == 0 && strcmp(o.first, "[::10]:80") == 0, "www.test AAAA: %s %s",
          weft_err_name(o.rc), o.first);
    o = run_one("multi.test", AF_INET, 0, 5000);
    CHECK(o.rc == 0 && o.n == 3, "multi.test: %s, %d", weft_err_name(o.rc), o.n);
    o = run_one("alias.test", AF_INET, WEFT_AI_CANONNAME, 5000);
    CHECK(o.rc == 0 && strcmp(o.canon, "www.test") == 0, "alias.test canon '%s'", o.canon);
    o = run_one("nosuch.test", AF_INET, 0, 5000);
    CHECK(o.rc == WEFT_EAI_NONAME, "nosuch.test: %s", weft_err_name(o.rc));
    o = run_one("x.fail.test", AF_INET, 0, 5000);
    CHECK(o.rc == WEFT_EAI_FAIL, "x.fail.test: %s", weft_err_name(o.rc));
    /* Outside any coroutine, chosen by the environment. */
    setenv("WEFT_RESOLVER", "system", 1);
    o = (one){ .host = "www.test", .family = AF_INET, .timeout = 5000 };
    resolve_one(&o);
    CHECK(o.rc == 0 && strcmp(o.first, "127.0.0.10:80") == 0, "outside: %s",
          weft_err_name(o.rc));
    o = (one){ .host = "slow.test", .family = AF_INET, .timeout = 200 };
    resolve_one(&o);
    CHECK(o.rc == -ETIMEDOUT && o.ms < 1000, "outside, silent: %s in %lld ms",
          weft_err_name(o.rc), (long long)o.ms);
    unsetenv("WEFT_RESOLVER");
}

Test(resolve_system, answers_and_failures, .timeout = 180)
{
    in_namespace(answers_body);
}

typedef struct cancel_run {
    int rc;
    int64_t ms;
} cancel_run;

static void victim(void *arg)
{
    cancel_run *c = arg;
    one o = { .host = "slow.test", .family = AF_INET, .timeout = 20000 };
    resolve_one(&o);
    c->rc = o.rc;
    c->ms = o.ms;
}

static int cancel_main(void *arg)
{
    int64_t id = weft_go(victim, arg);
    weft_sleep(100);
    weft_cancel(id);
    return weft_join(id, 5000);
}

static void slow_body(void)
{
    /* The worker is still inside getaddrinfo when the caller gives up; the
     * job is freed when it finishes (or with the process). */
    one o = run_one("slow.test", AF_INET, 0, 300);
    CHECK(o.rc == -ETIMEDOUT && o.ms >= 290 && o.ms < 1500, "timeout: %s in %lld ms",
          weft_err_name(o.rc), (long long)o.ms);
    cancel_run c = { 0 };
    weft_config cfg = system_cfg();
    CHECK(weft_main(cancel_main, &c, &cfg) == 0, "join");
    CHECK(c.rc == -ECANCELED && c.ms < 1000, "cancel: %s in %lld ms", weft_err_name(c.rc),
          (long long)c.ms);
    /* A lookup that was abandoned does not hold up the next ones. */
    o = run_one("www.test", AF_INET, 0, 5000);
    CHECK(o.rc == 0, "after: %s", weft_err_name(o.rc));
}

Test(resolve_system, timeout_and_cancel, .timeout = 180)
{
    in_namespace(slow_body);
}

#define MANY 1000
static int many_ok;

static void many_one(void *arg)
{
    (void)arg;
    one o = { .host = weft_self() % 2 ? "www.test" : "lo4.test", .family = AF_INET,
              .timeout = 30000 };
    resolve_one(&o);
    many_ok += o.rc == 0;
}

static int many_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < MANY; i++)
        weft_go(many_one, NULL);
    return 0;
}

static void many_body(void)
{
    weft_config c = system_cfg();
    weft_main(many_main, NULL, &c);
    CHECK(many_ok == MANY, "%d of %d", many_ok, MANY);
}

Test(resolve_system, thousand_concurrent_lookups, .timeout = 360)
{
    in_namespace(many_body);
}

Test(resolve_system, unknown_resolver_is_refused, .timeout = 30)
{
    weft_config c = { 0 };
    c.resolver = "carrier-pigeon";
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, &c), -EINVAL);
}
