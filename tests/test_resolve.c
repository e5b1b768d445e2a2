/*
 * test_resolve.c - weft_resolve and connecting to names, against a real
 * DNS server (dnsmasq on loopback with its own hosts data), a server that
 * answers SERVFAIL and a port that never answers.
 */
#include <criterion/criterion.h>
#include <weft.h>
#include <weft/testing.h>

#include "dns_server.h"
#include <ifaddrs.h>
#include "helpers.h"

static dns_server dns;
static int fds_before;

static void setup(void)
{
    fds_before = count_fds();
    cr_assert_eq(dns_server_start(&dns), 0, "dnsmasq did not start");
    fds_before = count_fds();
}

static void teardown(void)
{
    dns_server_stop(&dns);
}

TestSuite(resolve, .init = setup, .fini = teardown, .timeout = 180);

typedef struct lookup {
    const char *host, *service;
    weft_hints hints;
    int64_t timeout;
    int rc;
    int n;               /* entries */
    char addrs[64][64];  /* formatted */
    int families[64], types[64], protos[64];
    char canon[128];
    int64_t ms;
} lookup;

static void run_lookup(lookup *lk)
{
    weft_addrinfo *ai = NULL;
    int64_t t0 = weft_now();
    lk->rc = weft_resolve(&ai, lk->host, lk->service, &lk->hints, lk->timeout);
    lk->ms = weft_now() - t0;
    lk->n = 0;
    if (lk->rc == 0 && weft_addrinfo_canonname(ai))
        snprintf(lk->canon, sizeof lk->canon, "%s", weft_addrinfo_canonname(ai));
    for (const weft_addrinfo *p = ai; p && lk->n < 64; p = weft_addrinfo_next(p)) {
        weft_addr_format(weft_addrinfo_addr(p), lk->addrs[lk->n], sizeof lk->addrs[0]);
        lk->families[lk->n] = weft_addrinfo_family(p);
        lk->types[lk->n] = weft_addrinfo_socktype(p);
        lk->protos[lk->n] = weft_addrinfo_protocol(p);
        lk->n++;
    }
    weft_addrinfo_free(ai);
}

static int lookup_main(void *arg)
{
    run_lookup(arg);
    return 0;
}

static weft_config cfg_for(const char *servers)
{
    weft_config c = { 0 };
    c.dns_servers = servers;
    return c;
}

/* Resolves in a coroutine of a loop pointed at dnsmasq. */
static lookup resolve1(const char *host, const char *service, int family, int type, int flags)
{
    lookup lk = { .host = host, .service = service, .timeout = 5000 };
    lk.hints = (weft_hints){ .family = family, .socktype = type, .flags = flags };
    weft_config c = cfg_for(dns.servers);
    cr_assert_eq(weft_main(lookup_main, &lk, &c), 0);
    return lk;
}

static bool has(const lookup *lk, const char *addr)
{
    for (int i = 0; i < lk->n; i++)
        if (strcmp(lk->addrs[i], addr) == 0)
            return true;
    return false;
}

Test(resolve, a_and_aaaa)
{
    lookup lk = resolve1("www.test", "80", 0, SOCK_STREAM, 0);
    cr_assert_eq(lk.rc, 0, "%s", weft_err_name(lk.rc));
    cr_assert_eq(lk.n, 2);
    cr_assert(has(&lk, "127.0.0.10:80"));
    cr_assert(has(&lk, "[::10]:80"));
    for (int i = 0; i < lk.n; i++) {
        cr_assert_eq(lk.types[i], SOCK_STREAM);
        cr_assert_eq(lk.protos[i], IPPROTO_TCP);
    }
    lk = resolve1("www.test", NULL, AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(lk.n, 1);
    cr_assert_str_eq(lk.addrs[0], "127.0.0.10:0");
    cr_assert_eq(lk.families[0], AF_INET);
    lk = resolve1("www.test", "443", AF_INET6, SOCK_STREAM, 0);
    cr_assert_eq(lk.n, 1);
    cr_assert_str_eq(lk.addrs[0], "[::10]:443");
    cr_assert_eq(count_fds(), fds_before);
}

Test(resolve, cname_chain_and_canonical_name)
{
    lookup lk = resolve1("chain.test", "80", AF_INET, SOCK_STREAM, WEFT_AI_CANONNAME);
    cr_assert_eq(lk.rc, 0, "%s", weft_err_name(lk.rc));
    cr_assert_eq(lk.n, 1);
    cr_assert_str_eq(lk.addrs[0], "127.0.0.10:80");
    cr_assert_str_eq(lk.canon, "www.test");
    lk = resolve1("alias.test", "80", AF_INET, SOCK_STREAM, 0);
    cr_assert_str_eq(lk.addrs[0], "127.0.0.10:80");
    cr_assert_str_eq(lk.canon, "", "no canonical name unless asked");
}

Test(resolve, several_records_and_socket_types)
{
    lookup lk = resolve1("multi.test", "53", AF_INET, 0, 0);
    cr_assert_eq(lk.rc, 0, "%s", weft_err_name(lk.rc));
    cr_assert_eq(lk.n, 6, "3 addresses x stream and datagram");
    for (int i = 1; i <= 3; i++) {
        char want[32];
        snprintf(want, sizeof want, "127.0.0.2%d:53", i);
        cr_assert(has(&lk, want), "%s", want);
    }
    int stream = 0, dgram = 0;
    for (int i = 0; i < lk.n; i++) {
        stream += lk.types[i] == SOCK_STREAM && lk.protos[i] == IPPROTO_TCP;
        dgram += lk.types[i] == SOCK_DGRAM && lk.protos[i] == IPPROTO_UDP;
    }
    cr_assert_eq(stream, 3);
    cr_assert_eq(dgram, 3);
}

Test(resolve, big_answer_falls_back_to_tcp)
{
    /* 40 A records do not fit a 512-byte UDP answer: it comes back
     * truncated and the resolver must ask again over TCP. */
    lookup lk = resolve1("big.test", "80", AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(lk.rc, 0, "%s", weft_err_name(lk.rc));
    cr_assert_eq(lk.n, 40);
    cr_assert(has(&lk, "127.0.1.1:80"));
    cr_assert(has(&lk, "127.0.1.40:80"));
}

Test(resolve, failures_have_their_own_codes)
{
    lookup lk = resolve1("nosuch.test", "80", 0, SOCK_STREAM, 0);
    cr_assert_eq(lk.rc, WEFT_EAI_NONAME, "%s", weft_err_name(lk.rc));
    cr_assert_lt(lk.ms, 2000, "NXDOMAIN is an answer, not a timeout");
    lk = resolve1("v4only.test", "80", AF_INET6, SOCK_STREAM, 0);
    cr_assert_eq(lk.rc, WEFT_EAI_NODATA, "%s", weft_err_name(lk.rc));
    lk = resolve1("x.fail.test", "80", AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(lk.rc, WEFT_EAI_FAIL, "%s", weft_err_name(lk.rc));
    lk = resolve1("example.com", "80", AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(lk.rc, WEFT_EAI_REFUSED, "%s", weft_err_name(lk.rc));
    lk = resolve1("www.test", "no-such-service", 0, SOCK_STREAM, 0);
    cr_assert_eq(lk.rc, WEFT_EAI_SERVICE, "%s", weft_err_name(lk.rc));
    lk = resolve1("bad name", "80", 0, SOCK_STREAM, 0);
    cr_assert_eq(lk.rc, WEFT_EAI_BADNAME, "%s", weft_err_name(lk.rc));
    cr_assert_str_eq(weft_err_name(WEFT_EAI_NONAME), "WEFT_EAI_NONAME");
    cr_assert_str_neq(weft_strerror(WEFT_EAI_FAIL), "unknown error");
    cr_assert_eq(count_fds(), fds_before);
}

Test(resolve, v4mapped)
{
    lookup lk = resolve1("v4only.test", "80", AF_INET6, SOCK_STREAM, WEFT_AI_V4MAPPED);
    cr_assert_eq(lk.rc, 0, "%s", weft_err_name(lk.rc));
    cr_assert_eq(lk.n, 1);
    cr_assert_str_eq(lk.addrs[0], "[::ffff:127.0.0.11]:80");
    lk = resolve1("www.test", "80", AF_INET6, SOCK_STREAM, WEFT_AI_V4MAPPED);
    cr_assert_eq(lk.n, 1);
    cr_assert_str_eq(lk.addrs[0], "[::10]:80", "real IPv6 answers win over mapped ones");
}

Test(resolve, addrconfig_keeps_configured_families)
{
    bool v4, v6;
    cr_assert(host_families(&v4, &v6));
    lookup lk = resolve1("www.test", "80", 0, SOCK_STREAM, WEFT_AI_ADDRCONFIG);
    cr_log_info("this host: IPv4 %d, IPv6 %d", v4, v6);
    cr_assert_eq(lk.rc, 0, "%s", weft_err_name(lk.rc));
    cr_assert_eq(has(&lk, "127.0.0.10:80"), v4);
    cr_assert_eq(has(&lk, "[::10]:80"), v6);
    cr_assert_eq(lk.n, (int)v4 + (int)v6);
}

Test(resolve, hosts_that_need_no_lookup)
{
    /* The server list points at a port that never answers: none of these
     * may go near it. */
    int port = 0, hole = dns_udp_bound(&port);
    char servers[32];
    snprintf(servers, sizeof servers, "127.0.0.1:%d", port);
    weft_config c = cfg_for(servers);
    struct {
        const char *host, *service;
        int family, flags;
        const char *first;
        int n;
    } cases[] = {
        { "127.0.0.1", "80", 0, 0, "127.0.0.1:80", 1 },
        { "::1", "http", 0, 0, "[::1]:80", 1 },
        { NULL, "80", AF_INET, 0, "127.0.0.1:80", 1 },
        { NULL, "80", 0, 0, "[::1]:80", 2 },
        { NULL, "80", AF_INET, WEFT_AI_PASSIVE, "0.0.0.0:80", 1 },
        { "*", "80", AF_INET6, 0, "[::]:80", 1 },
        { "127.0.0.1", "80", AF_INET6, WEFT_AI_V4MAPPED, "[::ffff:127.0.0.1]:80", 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lookup lk = { .host = cases[i].host, .service = cases[i].service, .timeout = 2000 };
        lk.hints = (weft_hints){ .family = cases[i].family, .socktype = SOCK_STREAM,
                                 .flags = cases[i].flags };
        cr_assert_eq(weft_main(lookup_main, &lk, &c), 0);
        cr_assert_eq(lk.rc, 0, "case %zu: %s", i, weft_err_name(lk.rc));
        cr_assert_eq(lk.n, cases[i].n, "case %zu", i);
        cr_assert_str_eq(lk.addrs[0], cases[i].first, "case %zu", i);
        cr_assert_lt(lk.ms, LATE_MS, "case %zu took %lld ms", i, (long long)lk.ms);
    }
    /* NUMERICHOST refuses names; NUMERICSERV refuses service names. */
    lookup lk = { .host = "www.test", .service = "80", .timeout = 200 };
    lk.hints.flags = WEFT_AI_NUMERICHOST;
    weft_main(lookup_main, &lk, &c);
    cr_assert_eq(lk.rc, WEFT_EAI_NONAME);
    lk = (lookup){ .host = "127.0.0.1", .service = "http", .timeout = 200 };
    lk.hints.flags = WEFT_AI_NUMERICSERV;
    weft_main(lookup_main, &lk, &c);
    cr_assert_eq(lk.rc, WEFT_EAI_SERVICE);
    /* A unix path is an address as it stands. */
    lk = (lookup){ .host = "@weft-test", .timeout = 200 };
    lk.hints.family = AF_UNIX;
    weft_main(lookup_main, &lk, &c);
    cr_assert_eq(lk.rc, 0, "%s", weft_err_name(lk.rc));
    cr_assert_eq(lk.families[0], AF_UNIX);
    cr_assert_str_eq(lk.addrs[0], "@weft-test");
    /* Bad arguments. */
    weft_addrinfo *ai;
    weft_hints bad = { .flags = 0x4000 };
    cr_assert_eq(weft_resolve(&ai, "127.0.0.1", NULL, &bad, 100), -EINVAL);
    bad = (weft_hints){ .family = AF_PACKET };
    cr_assert_eq(weft_resolve(&ai, "127.0.0.1", NULL, &bad, 100), WEFT_EAI_FAMILY);
    cr_assert_eq(weft_resolve(NULL, "127.0.0.1", NULL, NULL, 100), -EINVAL);
    close(hole);
}

typedef struct blackhole_run {
    int64_t timeout;
    int rc;
    int64_t ms;
} blackhole_run;

static int blackhole_main(void *arg)
{
    blackhole_run *b = arg;
    weft_addrinfo *ai = NULL;
    int64_t t0 = weft_now();
    b->rc = weft_resolve(&ai, "www.test", "80", NULL, b->timeout);
    b->ms = weft_now() - t0;
    weft_addrinfo_free(ai);
    return 0;
}

Test(resolve, silent_server_times_out)
{
    int port = 0, hole = dns_udp_bound(&port);
    char servers[32];
    snprintf(servers, sizeof servers, "127.0.0.1:%d", port);
    weft_config c = cfg_for(servers);
    c.dns_timeout_ms = 200;
    c.dns_tries = 2;
    /* c-ares gives up after its tries: its own code, not a hang. */
    blackhole_run b = { .timeout = 10000 };
    cr_assert_eq(weft_main(blackhole_main, &b, &c), 0);
    cr_assert_eq(b.rc, WEFT_EAI_TIMEOUT, "%s", weft_err_name(b.rc));
    cr_assert_geq(b.ms, 300);
    cr_assert_lt(b.ms, 5000);
    /* The caller's own timeout ends it first. */
    c.dns_timeout_ms = 0;
    c.dns_tries = 0;
    b = (blackhole_run){ .timeout = 300 };
    cr_assert_eq(weft_main(blackhole_main, &b, &c), 0);
    cr_assert_eq(b.rc, -ETIMEDOUT, "%s", weft_err_name(b.rc));
    cr_assert_geq(b.ms, 290);
    cr_assert_lt(b.ms, 1500);
    close(hole);
    cr_assert_eq(count_fds(), fds_before, "the abandoned query's socket went with the loop");
}

typedef struct cancel_run {
    int64_t victim;
    int rc;
    int64_t ms;
} cancel_run;

static void cancel_victim(void *arg)
{
    cancel_run *c = arg;
    weft_addrinfo *ai = NULL;
    int64_t t0 = weft_now();
    c->rc = weft_resolve(&ai, "www.test", "80", NULL, 10000);
    c->ms = weft_now() - t0;
    weft_addrinfo_free(ai);
}

static int cancel_main(void *arg)
{
    cancel_run *c = arg;
    c->victim = weft_go(cancel_victim, c);
    weft_sleep(100);
    weft_cancel(c->victim);
    return weft_join(c->victim, 5000);
}

Test(resolve, cancel_mid_lookup)
{
    int port = 0, hole = dns_udp_bound(&port);
    char servers[32];
    snprintf(servers, sizeof servers, "127.0.0.1:%d", port);
    weft_config c = cfg_for(servers);
    cancel_run r = { 0 };
    cr_assert_eq(weft_main(cancel_main, &r, &c), 0);
    cr_assert_eq(r.rc, -ECANCELED, "%s", weft_err_name(r.rc));
    cr_assert_lt(r.ms, 1000);
    close(hole);
    cr_assert_eq(count_fds(), fds_before);
}

#define MANY 1000

typedef struct many_run {
    int ok, wrong, failed;
    int first_err;
} many_run;

static void many_one(void *arg)
{
    many_run *m = arg;
    static const char *const names[] = { "www.test", "alias.test", "lo4.test", "multi.test" };
    static const char *const want[] = { "127.0.0.10:80", "127.0.0.10:80", "127.0.0.1:80",
                                        "127.0.0.2" };
    int k = (int)(weft_self() % 4);
    weft_addrinfo *ai = NULL;
    weft_hints h = { .family = AF_INET, .socktype = SOCK_STREAM };
    int rc = weft_resolve(&ai, names[k], "80", &h, 20000);
    if (rc != 0) {
        cr_log_info("%s: %s", names[k], weft_err_name(rc));
        m->failed++;
        if (!m->first_err)
            m->first_err = rc;
        return;
    }
    char buf[64];
    weft_addr_format(weft_addrinfo_addr(ai), buf, sizeof buf);
    if (strncmp(buf, want[k], strlen(want[k])) == 0)
        m->ok++;
    else
        m->wrong++;
    weft_addrinfo_free(ai);
}

static int many_main(void *arg)
{
    for (int i = 0; i < MANY; i++)
        if (weft_go(many_one, arg) < 0)
            return -1;
    return 0;
}

Test(resolve, thousand_concurrent_lookups)
{
    many_run m = { 0 };
    weft_config c = cfg_for(dns.servers);
    /* A burst of 1,000 queries overflows the server's socket buffer; what
     * it drops comes back on the resolver's retries. */
    c.dns_timeout_ms = 500;
    cr_assert_eq(weft_main(many_main, &m, &c), 0);
    cr_assert_eq(m.failed, 0, "first error %s", weft_err_name(m.first_err));
    cr_assert_eq(m.wrong, 0);
    cr_assert_eq(m.ok, MANY);
    cr_assert_eq(count_fds(), fds_before);
}

static void abandon_one(void *arg)
{
    (void)arg;
    weft_addrinfo *ai = NULL;
    weft_resolve(&ai, "www.test", "80", NULL, 50 + weft_self() % 50);
    weft_addrinfo_free(ai);
}

static int abandon_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++)
        weft_go(abandon_one, NULL);
    return 0;
}

Test(resolve, loop_freed_with_lookups_in_flight)
{
    /* 200 lookups to a silent server all give up; their queries are still
     * in the channel when the loop goes.  ASan says whether any leaked. */
    int port = 0, hole = dns_udp_bound(&port);
    char servers[32];
    snprintf(servers, sizeof servers, "127.0.0.1:%d", port);
    weft_config c = cfg_for(servers);
    cr_assert_eq(weft_main(abandon_main, NULL, &c), 0);
    close(hole);
    cr_assert_eq(count_fds(), fds_before);
}

Test(resolve, outside_any_coroutine)
{
    /* On a thread whose loop is not running a coroutine, the call blocks
     * the thread and still uses the loop's servers. */
    weft_loop *l;
    weft_config c = cfg_for(dns.servers);
    cr_assert_eq(weft_loop_new(&l, &c), 0);
    lookup lk = { .host = "www.test", .service = "80", .timeout = 5000 };
    lk.hints.family = AF_INET;
    run_lookup(&lk);
    cr_assert_eq(lk.rc, 0, "%s", weft_err_name(lk.rc));
    cr_assert_str_eq(lk.addrs[0], "127.0.0.10:80");
    lk = (lookup){ .host = "nosuch.test", .service = "80", .timeout = 5000 };
    run_lookup(&lk);
    cr_assert_eq(lk.rc, WEFT_EAI_NONAME);
    weft_loop_free(l);
    cr_assert_eq(count_fds(), fds_before);
}

Test(resolve, out_of_memory)
{
    weft_config c = cfg_for(dns.servers);
    for (unsigned nth = 1; nth <= 4; nth++) {
        lookup lk = { .host = "multi.test", .service = "80", .timeout = 5000 };
        lk.hints.family = AF_INET;
        weft_fault_clear();
        weft_fault_set(WEFT_FAULT_MALLOC, nth, ENOMEM);
        int rc = weft_main(lookup_main, &lk, &c);
        bool fired = weft_fault_fired() > 0;
        weft_fault_clear();
        if (rc < 0) /* the loop itself could not start */
            continue;
        if (fired)
            cr_assert(lk.rc == -ENOMEM || lk.rc == 0, "nth %u: %s", nth, weft_err_name(lk.rc));
        else
            cr_assert_eq(lk.rc, 0);
    }
    cr_assert_eq(count_fds(), fds_before);
}

/* ---- connecting to names ---------------------------------------------------- */

typedef struct he_run {
    int port;
    int rc;
    int64_t ms;
    int family;
} he_run;

static int he_main(void *arg)
{
    he_run *h = arg;
    weft_sock *s;
    int64_t t0 = weft_now();
    h->rc = weft_tcp_connect(&s, "he.test", h->port, 5000);
    h->ms = weft_now() - t0;
    if (h->rc == 0) {
        weft_addr a;
        weft_sock_peer(s, &a);
        h->family = a.u.sa.sa_family;
        weft_close(s);
    }
    return 0;
}

Test(resolve, happy_eyeballs_falls_back_to_ipv4)
{
    /* he.test has ::1 and 127.0.0.1.  On ::1 a listener whose accept queue
     * is full drops every SYN, so the IPv6 attempt never completes; the
     * IPv4 one, started 250 ms later, must win. */
    /* One port on both families: the IPv4 twin of a port free on ::1 may be
     * another test's connection, so try again with another port then. */
    int l6 = -1, l4 = -1, port = 0;
    struct sockaddr_in6 a6;
    for (int tries = 0; tries < 50 && l4 < 0; tries++) {
        if (l6 >= 0)
            close(l6);
        l6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(l6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        a6 = (struct sockaddr_in6){ .sin6_family = AF_INET6, .sin6_addr = in6addr_loopback };
        socklen_t len = sizeof a6;
        cr_assert_eq(bind(l6, (struct sockaddr *)&a6, sizeof a6), 0);
        getsockname(l6, (struct sockaddr *)&a6, &len);
        port = ntohs(a6.sin6_port);
        l4 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(l4, (struct sockaddr *)&a4, sizeof a4) != 0) {
            close(l4);
            l4 = -1;
        }
    }
    cr_assert_geq(l4, 0, "no port free on both ::1 and 127.0.0.1");
    cr_assert_eq(listen(l6, 0), 0);
    int fill[4];
    for (int i = 0; i < 4; i++) { /* fill the accept queue */
        fill[i] = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(fill[i], (struct sockaddr *)&a6, sizeof a6);
    }
    usleep(100 * 1000);
    cr_assert_eq(listen(l4, 16), 0);

    he_run h = { .port = port };
    weft_config c = cfg_for(dns.servers);
    cr_assert_eq(weft_main(he_main, &h, &c), 0);
    cr_assert_eq(h.rc, 0, "%s", weft_err_name(h.rc));
    cr_assert_eq(h.family, AF_INET);
    cr_assert_geq(h.ms, 240, "IPv6 was tried first: %lld ms", (long long)h.ms);
    cr_assert_lt(h.ms, 1000, "IPv4 within the stagger: %lld ms", (long long)h.ms);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(l6);
    close(l4);
    cr_assert_eq(count_fds(), fds_before, "the losing attempt was closed");
}

typedef struct name_run {
    const char *host;
    int port;
    int rc;
} name_run;

static int name_main(void *arg)
{
    name_run *n = arg;
    weft_sock *s;
    n->rc = weft_tcp_connect(&s, n->host, n->port, 3000);
    if (n->rc == 0)
        weft_close(s);
    return 0;
}

Test(resolve, tcp_connect_takes_names)
{
    weft_sock *l;
    cr_assert_eq(weft_tcp_listen(&l, "127.0.0.1", 0, 16, 0), 0);
    weft_config c = cfg_for(dns.servers);
    name_run n = { .host = "lo4.test", .port = local_port(l) };
    cr_assert_eq(weft_main(name_main, &n, &c), 0);
    cr_assert_eq(n.rc, 0, "%s", weft_err_name(n.rc));
    n = (name_run){ .host = "nosuch.test", .port = local_port(l) };
    weft_main(name_main, &n, &c);
    cr_assert_eq(n.rc, WEFT_EAI_NONAME, "%s", weft_err_name(n.rc));
    /* Every address refuses: the connect error, not a lookup one. */
    weft_close(l);
    n = (name_run){ .host = "he.test", .port = n.port };
    weft_main(name_main, &n, &c);
    cr_assert_eq(n.rc, -ECONNREFUSED, "%s", weft_err_name(n.rc));
    /* The one address of a single-address name refuses too. */
    n = (name_run){ .host = "lo4.test", .port = n.port };
    weft_main(name_main, &n, &c);
    cr_assert_eq(n.rc, -ECONNREFUSED, "%s", weft_err_name(n.rc));
    cr_assert_eq(count_fds(), fds_before);
}
