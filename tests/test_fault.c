/*
 * test_fault.c - error paths driven through the syscall seam (weft/testing.h).
 * Each listen, connect, accept, send and receive syscall, and the
 * allocations behind sockets, coroutines and loops, is made to fail once
 * with a chosen errno; the call must return exactly that code, leave its
 * out-parameter alone, and leak neither descriptors (count_fds) nor memory
 * (LeakSanitizer in the sanitizer build).  Socket scenarios run twice: on
 * the plain main stack and inside a coroutine.  Two loops make every
 * allocation of a listen/connect/accept/echo sequence fail in turn.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_LSAN 1
#endif
#endif
#ifdef HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

#define MS 1000000LL

/* Memory still allocated but unreachable now is a leak. */
static void assert_no_leaks(void)
{
#ifdef HAVE_LSAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "LeakSanitizer found leaks (see above)");
#endif
}

static void clear_faults(void)
{
    weft_fault_clear();
}

static const char *kind_name(weft_fault_kind k)
{
    static const char *names[] = {"SOCKET", "ACCEPT", "CONNECT", "BIND", "LISTEN",   "SEND",
                                  "RECV",   "MALLOC", "MMAP",    "RING", "SENDFILE", "PREAD"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

/* Scenarios run inside a coroutine can't assert: they log each check here
 * and the test verifies the log on the main stack. */
typedef struct check {
    char what[96];
    long got, want;
} check;

static check checks[256];
static int nchecks;

static void record(long got, long want, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void record(long got, long want, const char *fmt, ...)
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

#define CHECK(got, want, ...) record((long)(got), (long)(want), __VA_ARGS__)

/* Checks a duration in [lo, hi) ms: logs 1 for yes. */
#define CHECK_TOOK(ns, lo, hi, what)                                                               \
    do {                                                                                           \
        int64_t ns_ = (ns);                                                                        \
        CHECK(ns_ >= (lo)*MS && ns_ < (hi)*MS, 1, "%s took %.1f ms, wanted [%d, %d)", (what),      \
              (double)ns_ / MS, (lo), (hi));                                                       \
    } while (0)

/* "-110 (ETIMEDOUT)" for error codes, the bare number otherwise. */
static const char *show(long v, char *buf, size_t len)
{
    if (v < 0 && v > -4096)
        snprintf(buf, len, "%ld (%s)", v, weft_err_name((int)v));
    else
        snprintf(buf, len, "%ld", v);
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
}

typedef void (*scenario)(void);

static int scenario_entry(void *arg)
{
    (*(scenario *)arg)();
    return 0;
}

static void run_plain(scenario f)
{
    int fds = count_fds();
    nchecks = 0;
    weft_fault_clear();
    f();
    weft_fault_clear();
    verify();
    cr_assert_eq(count_fds(), fds, "descriptors leaked");
    assert_no_leaks();
}

static void run_loop(scenario f)
{
    int fds = count_fds();
    nchecks = 0;
    weft_fault_clear();
    cr_assert_eq(weft_main(scenario_entry, &f, NULL), 0);
    weft_fault_clear();
    verify();
    cr_assert_eq(count_fds(), fds, "descriptors leaked");
    assert_no_leaks();
}

/* One test on the main stack, one inside a coroutine. */
#define BOTH(suite, name, secs)                                                                    \
    Test(suite, name##_plain, .timeout = (secs), .init = clear_faults, .fini = clear_faults)       \
    {                                                                                              \
        run_plain(name);                                                                           \
    }                                                                                              \
    Test(suite, name##_coroutine, .timeout = (secs), .init = clear_faults, .fini = clear_faults)   \
    {                                                                                              \
        run_loop(name);                                                                            \
    }

/* What *out holds before a call that must not write it. */
static char sentinel_storage;
#define SENTINEL ((weft_sock *)(void *)&sentinel_storage)

/* Arms one fault, and reads back after the call whether it fired. */
static void arm(weft_fault_kind k, int err)
{
    weft_fault_clear();
    weft_fault_set(k, 1, err);
}

static unsigned long disarm(void)
{
    unsigned long fired = weft_fault_fired();
    weft_fault_clear();
    return fired;
}

/* A listener with a connection queued on it (not yet accepted). */
static int listener_with_queued(weft_sock **l, weft_sock **c)
{
    int port = listen_any(l, "127.0.0.1");
    if (port <= 0)
        return port < 0 ? port : -EINVAL;
    int rc = weft_tcp_connect(c, "127.0.0.1", port, 2000);
    if (rc < 0) {
        weft_close(*l);
        return rc;
    }
    if ((rc = weft_sock_poll(*l, WEFT_POLL_IN, 2000)) > 0)
        return port;
    weft_close(*c);
    weft_close(*l);
    return rc < 0 ? rc : -EIO;
}

typedef struct pair {
    weft_sock *l, *c, *s;
} pair;

static int pair_open(pair *p)
{
    memset(p, 0, sizeof *p);
    int rc = listener_with_queued(&p->l, &p->c);
    if (rc < 0)
        return rc;
    if ((rc = weft_tcp_accept(p->l, &p->s, 2000)) < 0) {
        weft_close(p->c);
        weft_close(p->l);
    }
    return rc;
}

static void pair_close(pair *p)
{
    weft_close(p->s);
    weft_close(p->c);
    weft_close(p->l);
}

static bool ipv6_loopback(void)
{
    weft_sock *l;
    if (weft_tcp_listen(&l, "::1", 0, 0, 0) != 0)
        return false;
    weft_close(l);
    return true;
}

/* ---- listen ------------------------------------------------------------------ */

typedef struct fault_case {
    weft_fault_kind kind;
    int err;
} fault_case;

Test(fault_listen, every_step, .timeout = 30, .init = clear_faults, .fini = clear_faults)
{
    static const fault_case cases[] = {
        {WEFT_FAULT_SOCKET, EMFILE},     {WEFT_FAULT_SOCKET, ENFILE},
        {WEFT_FAULT_SOCKET, ENOMEM},     {WEFT_FAULT_BIND, EADDRINUSE},
        {WEFT_FAULT_BIND, EACCES},       {WEFT_FAULT_BIND, EADDRNOTAVAIL},
        {WEFT_FAULT_LISTEN, EADDRINUSE}, {WEFT_FAULT_MALLOC, ENOMEM},
    };
    const char *hosts[] = {"127.0.0.1", "::1", NULL};
    int nhosts = ipv6_loopback() ? 3 : 1;
    int fds = count_fds();
    for (int h = 0; h < nhosts; h++) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            weft_sock *l = SENTINEL;
            arm(cases[i].kind, cases[i].err);
            int rc = weft_tcp_listen(&l, hosts[h], 0, 16, WEFT_REUSEPORT);
            unsigned long fired = disarm();
            cr_assert_eq(fired, 1, "%s on %s never fired", kind_name(cases[i].kind),
                         hosts[h] ? hosts[h] : "*");
            cr_assert_eq(rc, -cases[i].err, "%s %s on %s: got %s", kind_name(cases[i].kind),
                         weft_err_name(-cases[i].err), hosts[h] ? hosts[h] : "*",
                         weft_err_name(rc));
            cr_assert_eq(l, SENTINEL, "*out written on failure");
            cr_assert_eq(count_fds(), fds, "%s: descriptor leaked", kind_name(cases[i].kind));
        }
    }
    weft_sock *l;
    cr_assert_eq(weft_tcp_listen(&l, "127.0.0.1", 0, 16, 0), 0);
    weft_close(l);
    cr_assert_eq(count_fds(), fds);
    assert_no_leaks();
}

Test(fault_listen, any_falls_back_to_ipv4, .timeout = 30, .init = clear_faults,
     .fini = clear_faults)
{
    int fds = count_fds();
    weft_sock *l = SENTINEL;
    /* A kernel without IPv6: "all interfaces" means the IPv4 ones. */
    arm(WEFT_FAULT_SOCKET, EAFNOSUPPORT);
    int rc = weft_tcp_listen(&l, NULL, 0, 16, 0);
    unsigned long calls = weft_fault_calls(WEFT_FAULT_SOCKET);
    cr_assert_eq(disarm(), 1);
    cr_assert_eq(rc, 0, "got %s", weft_err_name(rc));
    cr_assert_eq(calls, 2);
    weft_addr a;
    cr_assert_eq(weft_sock_local(l, &a), 0);
    cr_assert_eq(a.u.sa.sa_family, AF_INET);
    /* And it really listens. */
    weft_sock *c, *s;
    cr_assert_eq(weft_tcp_connect(&c, "127.0.0.1", weft_addr_port(&a), 2000), 0);
    cr_assert_eq(weft_tcp_accept(l, &s, 2000), 0);
    weft_close(s);
    weft_close(c);
    weft_close(l);

    /* A specific IPv6 host, or v6-only, has nothing to fall back to. */
    l = SENTINEL;
    arm(WEFT_FAULT_SOCKET, EAFNOSUPPORT);
    cr_assert_eq(weft_tcp_listen(&l, "::1", 0, 16, 0), -EAFNOSUPPORT);
    arm(WEFT_FAULT_SOCKET, EAFNOSUPPORT);
    cr_assert_eq(weft_tcp_listen(&l, NULL, 0, 16, WEFT_V6ONLY), -EAFNOSUPPORT);
    disarm();
    cr_assert_eq(l, SENTINEL);
    cr_assert_eq(count_fds(), fds);
    assert_no_leaks();
}

/* ---- connect --------------------------------------------------------------------- */

static void connect_faults(void)
{
    static const fault_case cases[] = {
        {WEFT_FAULT_SOCKET, EMFILE},        {WEFT_FAULT_SOCKET, ENFILE},
        {WEFT_FAULT_CONNECT, ECONNREFUSED}, {WEFT_FAULT_CONNECT, ENETUNREACH},
        {WEFT_FAULT_CONNECT, EHOSTUNREACH}, {WEFT_FAULT_CONNECT, EADDRNOTAVAIL},
        {WEFT_FAULT_MALLOC, ENOMEM},
    };
    weft_sock *l, *s = NULL;
    int port = listen_any(&l, "127.0.0.1");
    CHECK(port > 0, 1, "listen");
    if (port <= 0)
        return;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *k = kind_name(cases[i].kind);
        int fds = count_fds();
        weft_sock *c = SENTINEL;
        arm(cases[i].kind, cases[i].err);
        int rc = weft_tcp_connect(&c, "127.0.0.1", port, 2000);
        CHECK(disarm(), 1, "connect %s fired", k);
        CHECK(rc, -cases[i].err, "connect with %s failing", k);
        CHECK(c == SENTINEL, 1, "connect %s left *out alone", k);
        CHECK(count_fds(), fds, "connect %s descriptors", k);
    }
    /* None of them got as far as the listener. */
    CHECK(weft_tcp_accept(l, &s, 0), -ETIMEDOUT, "nothing queued after failed connects");
    weft_sock *c;
    int rc = weft_tcp_connect(&c, "127.0.0.1", port, 2000);
    CHECK(rc, 0, "connect after the faults");
    if (rc == 0) {
        CHECK(weft_tcp_accept(l, &s, 2000), 0, "accept after the faults");
        CHECK(peer_port(s), local_port(c), "accepted the right connection");
        weft_close(s);
        weft_close(c);
    }
    weft_close(l);
}
BOTH(fault_connect, connect_faults, 30)

/* ---- accept -------------------------------------------------------------------------- */

/* Out of descriptors or memory: with timeout 0 the error comes straight
 * back; with a timeout shorter than the first back-off it comes back at the
 * timeout; with a longer one a single failure is retried after a back-off. */
static void accept_out_of_resources(void)
{
    static const int errs[] = {EMFILE, ENFILE, ENOBUFS, ENOMEM};
    weft_sock *l, *c, *s;
    int port = listener_with_queued(&l, &c);
    CHECK(port > 0, 1, "listener with a queued connection");
    if (port <= 0)
        return;
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        const char *e = weft_err_name(-errs[i]);
        s = SENTINEL;
        arm(WEFT_FAULT_ACCEPT, errs[i]);
        int64_t t0 = mono_ns();
        int rc = weft_tcp_accept(l, &s, 0);
        int64_t took = mono_ns() - t0;
        CHECK(disarm(), 1, "accept %s fired", e);
        CHECK(rc, -errs[i], "accept(timeout 0) with %s", e);
        CHECK(s == SENTINEL, 1, "accept %s left *out alone", e);
        CHECK_TOOK(took, 0, LATE_MS, "accept(timeout 0) out of resources");

        arm(WEFT_FAULT_ACCEPT, errs[i]);
        t0 = mono_ns();
        rc = weft_tcp_accept(l, &s, 3);
        took = mono_ns() - t0;
        CHECK(disarm(), 1, "accept %s fired", e);
        CHECK(rc, -errs[i], "accept(timeout 3) with %s", e);
        CHECK(s == SENTINEL, 1, "accept %s left *out alone", e);
        CHECK_TOOK(took, 3, 3 + LATE_MS, "accept(timeout 3) out of resources");
    }

    /* One failure inside a long timeout: backed off (>= 5 ms, not a spin),
     * retried, and the queued connection is still there. */
    arm(WEFT_FAULT_ACCEPT, EMFILE);
    int64_t t0 = mono_ns();
    int rc = weft_tcp_accept(l, &s, 2000);
    int64_t took = mono_ns() - t0;
    unsigned long calls = weft_fault_calls(WEFT_FAULT_ACCEPT);
    CHECK(disarm(), 1, "accept EMFILE fired");
    CHECK(rc, 0, "accept retried after EMFILE");
    CHECK(calls, 2, "accept4 calls: one failed, one retry");
    CHECK_TOOK(took, 5, 1000, "accept with one EMFILE");
    if (rc == 0) {
        CHECK(peer_port(s), local_port(c), "accepted the queued connection");
        weft_close(s);
    }
    weft_close(c);
    weft_close(l);
}
BOTH(fault_accept, accept_out_of_resources, 30)

/* A negative timeout other than -1 has already expired: out of resources,
 * the error must come straight back with no back-off and no retry. */
static void accept_expired_out_of_resources(void)
{
    weft_sock *l, *c, *s = SENTINEL;
    int port = listener_with_queued(&l, &c);
    CHECK(port > 0, 1, "listener with a queued connection");
    if (port <= 0)
        return;
    arm(WEFT_FAULT_ACCEPT, EMFILE);
    int rc = weft_tcp_accept(l, &s, -5);
    unsigned long calls = weft_fault_calls(WEFT_FAULT_ACCEPT);
    CHECK(disarm(), 1, "accept EMFILE fired");
    CHECK(rc, -EMFILE, "accept(timeout -5) with EMFILE");
    CHECK(calls, 1, "accept4 calls with an expired timeout (a retry means it backed off)");
    if (rc == 0)
        weft_close(s);
    weft_close(c);
    weft_close(l);
}
BOTH(fault_accept, accept_expired_out_of_resources, 30)

/* Really out of descriptors: RLIMIT_NOFILE lowered and every free number
 * below it taken, so each accept4 fails with EMFILE until restore_fds(). */
static struct rlimit saved_nofile;
static int held_fds[64], nheld_fds;

static bool exhaust_fds(int model)
{
    struct rlimit low;
    getrlimit(RLIMIT_NOFILE, &saved_nofile);
    low = saved_nofile;
    low.rlim_cur = (rlim_t)count_fds() + 8;
    if (setrlimit(RLIMIT_NOFILE, &low) != 0)
        return false;
    int fd;
    nheld_fds = 0;
    while (nheld_fds < 64 && (fd = dup(model)) >= 0)
        held_fds[nheld_fds++] = fd;
    return nheld_fds < 64 && errno == EMFILE;
}

static void restore_fds(void)
{
    while (nheld_fds > 0)
        close(held_fds[--nheld_fds]);
    setrlimit(RLIMIT_NOFILE, &saved_nofile);
}

static void restore_later(void *arg)
{
    weft_sleep(*(int64_t *)arg);
    restore_fds();
}

/* Inside a coroutine every call also ends at the coroutine's deadline,
 * including an accept that is backing off because descriptors ran out. */
static void accept_emfile_coroutine_deadline(void)
{
    weft_sock *l, *c, *s = SENTINEL;
    int port = listener_with_queued(&l, &c);
    CHECK(port > 0, 1, "listener with a queued connection");
    if (port <= 0)
        return;
    bool full = exhaust_fds(weft_sock_fd(l));
    /* Gives the descriptors back well after the deadline so that a wrong
     * accept ends, and is seen to be late. */
    int64_t later = 100 + LATE_MS + 500;
    int64_t fixer = weft_go(restore_later, &later);
    int64_t t0 = mono_ns();
    weft_deadline_set(weft_now() + 100);
    int rc = weft_tcp_accept(l, &s, -1);
    int64_t took = mono_ns() - t0;
    weft_deadline_clear();
    weft_cancel(fixer); /* its sleep ends now, and it gives the descriptors back */
    weft_join(fixer, 2000);
    CHECK(full, 1, "descriptor table filled");
    CHECK(rc == -EMFILE || rc == -ETIMEDOUT, 1, "accept(-1) at the coroutine deadline: %s",
          weft_err_name(rc));
    /* weft_now() counts whole milliseconds: the deadline may be 99.x ms away. */
    CHECK_TOOK(took, 99, 100 + LATE_MS, "accept out of descriptors, deadline in 100 ms");
    if (rc == 0)
        weft_close(s);
    weft_close(c);
    weft_close(l);
}

Test(fault_accept, accept_emfile_coroutine_deadline, .timeout = 30, .init = clear_faults,
     .fini = clear_faults)
{
    run_loop(accept_emfile_coroutine_deadline);
}

/* Really out of descriptors (RLIMIT_NOFILE), so every accept4 fails: the
 * call must come back with -EMFILE at its timeout after a few back-off
 * retries, not thousands of spins, and serve the connection afterwards. */
static void accept_real_emfile(void)
{
    weft_sock *l, *c, *s = SENTINEL;
    int port = listener_with_queued(&l, &c);
    CHECK(port > 0, 1, "listener with a queued connection");
    if (port <= 0)
        return;
    bool full = exhaust_fds(weft_sock_fd(l));
    weft_fault_clear();
    int64_t t0 = mono_ns();
    int rc = weft_tcp_accept(l, &s, 100);
    int64_t took = mono_ns() - t0;
    unsigned long calls = weft_fault_calls(WEFT_FAULT_ACCEPT);
    restore_fds();

    CHECK(full, 1, "descriptor table filled");
    CHECK(rc, -EMFILE, "accept out of descriptors");
    CHECK(s == SENTINEL, 1, "accept EMFILE left *out alone");
    CHECK_TOOK(took, 100, 100 + LATE_MS, "accept(timeout 100) out of descriptors");
    CHECK(calls >= 2 && calls <= 20, 1, "accept4 tried %lu times in 100 ms", calls);

    rc = weft_tcp_accept(l, &s, 1000);
    CHECK(rc, 0, "accept once descriptors are back");
    if (rc == 0) {
        CHECK(peer_port(s), local_port(c), "the queued connection waited");
        weft_close(s);
    }
    weft_close(c);
    weft_close(l);
}
BOTH(fault_accept, accept_real_emfile, 30)

/* The peer gave up before accept (ECONNABORTED, EPROTO) or a signal came
 * (EINTR): the call goes on to the next connection, never reports it. */
static void accept_aborted(void)
{
    static const int errs[] = {ECONNABORTED, EPROTO, EINTR};
    weft_sock *l, *c, *s;
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        const char *e = weft_err_name(-errs[i]);
        int port = listener_with_queued(&l, &c);
        CHECK(port > 0, 1, "listener with a queued connection");
        if (port <= 0)
            return;
        arm(WEFT_FAULT_ACCEPT, errs[i]);
        int rc = weft_tcp_accept(l, &s, 0);
        unsigned long calls = weft_fault_calls(WEFT_FAULT_ACCEPT);
        CHECK(disarm(), 1, "accept %s fired", e);
        CHECK(rc, 0, "accept(timeout 0) skips %s", e);
        CHECK(calls, 2, "accept4 calls with %s", e);
        if (rc == 0) {
            CHECK(peer_port(s), local_port(c), "accepted the next connection");
            weft_close(s);
        }
        weft_close(c);

        /* Nothing else queued: wait out the timeout as if nothing came. */
        s = SENTINEL;
        arm(WEFT_FAULT_ACCEPT, errs[i]);
        int64_t t0 = mono_ns();
        rc = weft_tcp_accept(l, &s, 100);
        int64_t took = mono_ns() - t0;
        CHECK(disarm(), 1, "accept %s fired", e);
        CHECK(rc, -ETIMEDOUT, "accept(timeout 100) with only %s", e);
        CHECK(s == SENTINEL, 1, "*out alone");
        CHECK_TOOK(took, 100, 100 + LATE_MS, "accept after an aborted connection");
        weft_close(l);
    }
}
BOTH(fault_accept, accept_aborted, 30)

/* The socket record for an accepted connection can't be allocated: it is
 * allocated before accept4, so the connection stays queued for later. */
static void accept_malloc(void)
{
    weft_sock *l, *c, *s = SENTINEL;
    int port = listener_with_queued(&l, &c);
    CHECK(port > 0, 1, "listener with a queued connection");
    if (port <= 0)
        return;
    int fds = count_fds();
    arm(WEFT_FAULT_MALLOC, ENOMEM);
    int rc = weft_tcp_accept(l, &s, 0);
    unsigned long accepts = weft_fault_calls(WEFT_FAULT_ACCEPT);
    CHECK(disarm(), 1, "MALLOC fired");
    CHECK(accepts, 0, "accept4 was not called: the connection stays queued");
    CHECK(rc, -ENOMEM, "accept with the record's allocation failing");
    CHECK(s == SENTINEL, 1, "*out alone");
    CHECK(count_fds(), fds, "no descriptor appeared or leaked");

    /* The queued connection is the one the next accept gets. */
    rc = weft_tcp_accept(l, &s, 2000);
    CHECK(rc, 0, "accept after ENOMEM");
    if (rc == 0) {
        weft_addr mine, theirs;
        CHECK(weft_sock_local(c, &mine), 0, "client address");
        CHECK(weft_sock_peer(s, &theirs), 0, "accepted peer address");
        CHECK(weft_addr_port(&mine) == weft_addr_port(&theirs), 1,
              "the accepted connection is the one that was queued");
        weft_close(s);
    }
    weft_close(c);
    weft_close(l);
}
BOTH(fault_accept, accept_malloc, 30)

/* With time left, running out of memory is one of the conditions accept
 * backs off from and retries (weft.h): the queued connection must still be
 * accepted, not dropped with an immediate -ENOMEM. */
static void accept_malloc_retries(void)
{
    weft_sock *l, *c, *s = SENTINEL;
    int port = listener_with_queued(&l, &c);
    CHECK(port > 0, 1, "listener with a queued connection");
    if (port <= 0)
        return;
    arm(WEFT_FAULT_MALLOC, ENOMEM);
    int64_t t0 = mono_ns();
    int rc = weft_tcp_accept(l, &s, 1000);
    int64_t took = mono_ns() - t0;
    CHECK(disarm(), 1, "MALLOC fired");
    CHECK(rc, 0, "accept(timeout 1000) with one allocation failing");
    CHECK_TOOK(took, 5, 1000, "accept that backed off once");
    if (rc == 0) {
        CHECK(peer_port(s), local_port(c), "the queued connection was accepted");
        weft_close(s);
    }
    weft_close(c);
    weft_close(l);
}
BOTH(fault_accept, accept_malloc_retries, 30)

/* ---- send and receive --------------------------------------------------------------- */

static void send_faults(void)
{
    static const int errs[] = {EPIPE, ECONNRESET};
    pair p;
    int rc = pair_open(&p);
    CHECK(rc, 0, "pair");
    if (rc < 0)
        return;
    char buf[64];
    for (size_t i = 0; i < 2; i++) {
        const char *e = weft_err_name(-errs[i]);
        arm(WEFT_FAULT_SEND, errs[i]);
        ssize_t n = weft_send(p.c, "abc", 3, 1000);
        CHECK(disarm(), 1, "send %s fired", e);
        CHECK(n, -errs[i], "send with %s", e);
        CHECK(weft_sock_sent(p.c), 0, "sent after %s", e);
    }
    /* Those put nothing on the wire; the socket still works. */
    CHECK(weft_send(p.c, "abc", 3, 1000), 3, "send after the faults");
    CHECK(weft_recvn(p.s, buf, 3, 1000), 3, "recvn");
    CHECK(memcmp(buf, "abc", 3), 0, "data");
    CHECK(weft_recv(p.s, buf, sizeof buf, 20), -ETIMEDOUT, "nothing more arrived");

    /* Failing part-way: weft_sock_sent counts what did go out, exactly. */
    weft_sock_set_bufsize(p.c, 0, 8192);
    weft_sock_set_bufsize(p.s, 8192, 0);
    size_t big = 1 << 20;
    unsigned char *out = malloc(big), *in = malloc(big);
    if (out && in) {
        fill_pattern(out, big, 9);
        weft_fault_clear();
        weft_fault_set(WEFT_FAULT_SEND, 2, EPIPE);
        ssize_t n = weft_send(p.c, out, big, 1000);
        size_t sent = weft_sock_sent(p.c);
        CHECK(disarm(), 1, "second send() failed");
        CHECK(n, -EPIPE, "send failing part-way");
        CHECK(sent > 0 && sent < big, 1, "sent %zu of %zu", sent, big);
        CHECK(weft_recvn(p.s, in, sent, 2000), (long)sent, "the bytes that went out arrive");
        CHECK(memcmp(in, out, sent), 0, "and are the first ones");
        CHECK(weft_recv(p.s, in, big, 50), -ETIMEDOUT, "and no more");
    }
    free(out);
    free(in);
    pair_close(&p);
}
BOTH(fault_io, send_faults, 30)

static void recv_faults(void)
{
    pair p;
    int rc = pair_open(&p);
    CHECK(rc, 0, "pair");
    if (rc < 0)
        return;
    char buf[64];
    CHECK(weft_send(p.c, "data", 4, 1000), 4, "send");
    CHECK(weft_sock_poll(p.s, WEFT_POLL_IN, 1000), WEFT_POLL_IN, "data arrived");

    arm(WEFT_FAULT_RECV, ECONNRESET);
    ssize_t n = weft_recv(p.s, buf, sizeof buf, 1000);
    CHECK(disarm(), 1, "recv ECONNRESET fired");
    CHECK(n, -ECONNRESET, "recv with ECONNRESET");
    arm(WEFT_FAULT_RECV, ECONNRESET);
    n = weft_recvn(p.s, buf, 4, 1000);
    CHECK(disarm(), 1, "recvn ECONNRESET fired");
    CHECK(n, -ECONNRESET, "recvn with ECONNRESET");
    arm(WEFT_FAULT_RECV, ENOTCONN);
    CHECK(weft_recv(p.s, buf, sizeof buf, 1000), -ENOTCONN, "recv with ENOTCONN");
    disarm();

    /* The failed calls consumed nothing. */
    n = weft_recv(p.s, buf, sizeof buf, 1000);
    CHECK(n, 4, "recv after the faults");
    CHECK(n == 4 && memcmp(buf, "data", 4) == 0, 1, "data intact");
    pair_close(&p);
}
BOTH(fault_io, recv_faults, 30)

static void iov_faults(void)
{
    pair p;
    int rc = pair_open(&p);
    CHECK(rc, 0, "pair");
    if (rc < 0)
        return;
    char a[] = "ab", b[] = "cde", in[16] = {0};
    struct iovec iov[2] = {{a, 2}, {b, 3}};

    arm(WEFT_FAULT_SEND, EPIPE);
    ssize_t n = weft_sendv(p.c, iov, 2, 1000);
    CHECK(weft_fault_calls(WEFT_FAULT_SEND), 1, "sendv goes through the SEND seam");
    CHECK(disarm(), 1, "sendv EPIPE fired");
    CHECK(n, -EPIPE, "sendv with EPIPE");
    arm(WEFT_FAULT_SEND, ECONNRESET);
    n = weft_sendv(p.c, iov, 2, 1000);
    CHECK(disarm(), 1, "sendv ECONNRESET fired");
    CHECK(n, -ECONNRESET, "sendv with ECONNRESET");
    CHECK(weft_sock_sent(p.c), 0, "sendv sent nothing");

    CHECK(weft_sendv(p.c, iov, 2, 1000), 5, "sendv after the faults");
    CHECK(weft_sock_poll(p.s, WEFT_POLL_IN, 1000), WEFT_POLL_IN, "data arrived");
    struct iovec rio[2] = {{in, 1}, {in + 1, sizeof in - 1}};
    arm(WEFT_FAULT_RECV, ECONNRESET);
    n = weft_recvv(p.s, rio, 2, 1000);
    CHECK(weft_fault_calls(WEFT_FAULT_RECV), 1, "recvv goes through the RECV seam");
    CHECK(disarm(), 1, "recvv ECONNRESET fired");
    CHECK(n, -ECONNRESET, "recvv with ECONNRESET");
    n = weft_recvv(p.s, rio, 2, 1000);
    CHECK(n, 5, "recvv after the fault");
    CHECK(memcmp(in, "abcde", 5), 0, "recvv data");
    pair_close(&p);
}
BOTH(fault_io, iov_faults, 30)

/* EINTR from any of them is retried, never reported. */
static void eintr_retried(void)
{
    pair p;
    int rc = pair_open(&p);
    CHECK(rc, 0, "pair");
    if (rc < 0)
        return;
    char buf[8];
    struct iovec iov = {buf, 3};
    arm(WEFT_FAULT_SEND, EINTR);
    CHECK(weft_send(p.c, "xyz", 3, 1000), 3, "send through EINTR");
    CHECK(weft_fault_calls(WEFT_FAULT_SEND), 2, "send retried");
    CHECK(weft_sock_poll(p.s, WEFT_POLL_IN, 1000), WEFT_POLL_IN, "data arrived");
    arm(WEFT_FAULT_RECV, EINTR);
    CHECK(weft_recvn(p.s, buf, 3, 1000), 3, "recvn through EINTR");
    CHECK(weft_fault_calls(WEFT_FAULT_RECV), 2, "recv retried");
    arm(WEFT_FAULT_SEND, EINTR);
    CHECK(weft_sendv(p.s, &iov, 1, 1000), 3, "sendv through EINTR");
    CHECK(weft_sock_poll(p.c, WEFT_POLL_IN, 1000), WEFT_POLL_IN, "data arrived");
    arm(WEFT_FAULT_RECV, EINTR);
    CHECK(weft_recvv(p.c, &iov, 1, 1000), 3, "recvv through EINTR");
    disarm();
    CHECK(memcmp(buf, "xyz", 3), 0, "data");
    pair_close(&p);
}
BOTH(fault_io, eintr_retried, 30)

/* ---- coroutines ------------------------------------------------------------------------- */

static int ran_count, never_ran;

static void count_run(void *arg)
{
    (void)arg;
    ran_count++;
}

static void must_not_run(void *arg)
{
    (void)arg;
    never_ran++;
}

static struct {
    int64_t first;
    unsigned long fired;
    int spawned_before, iterations, failed_other;
} gm;

static int go_malloc_main(void *arg)
{
    (void)arg;
    arm(WEFT_FAULT_MALLOC, ENOMEM);
    gm.first = weft_go(must_not_run, NULL);
    gm.fired = disarm();

    /* Fill the id table to where the next spawn must grow it too, then
     * fail each allocation of that spawn in turn. */
    for (gm.spawned_before = 0; gm.spawned_before < 127; gm.spawned_before++)
        if (weft_go(count_run, NULL) < 0)
            break;
    for (unsigned nth = 1; nth < 20; nth++) {
        weft_fault_clear();
        weft_fault_set(WEFT_FAULT_MALLOC, nth, ENOMEM);
        int64_t id = weft_go(count_run, NULL);
        unsigned long fired = disarm();
        gm.iterations++;
        if (!fired) {
            if (id <= 0)
                gm.failed_other++;
            break;
        }
        if (id != -ENOMEM)
            gm.failed_other++;
    }
    return 0;
}

Test(fault_co, go_malloc_is_enomem, .timeout = 30, .init = clear_faults, .fini = clear_faults)
{
    int fds = count_fds();
    cr_assert_eq(weft_main(go_malloc_main, NULL, NULL), 0);
    cr_assert_eq(gm.fired, 1);
    cr_assert_eq(gm.first, -ENOMEM, "weft_go with malloc failing: %ld", (long)gm.first);
    cr_assert_eq(gm.spawned_before, 127);
    cr_assert_eq(gm.failed_other, 0, "a spawn failed with something other than -ENOMEM");
    cr_assert_geq(gm.iterations, 2);
    cr_assert_eq(never_ran, 0, "a coroutine whose spawn failed ran");
    cr_assert_eq(ran_count, 128, "every successful spawn runs once, the failed ones never");
    cr_assert_eq(count_fds(), fds);
    assert_no_leaks();
}

static struct {
    int join_main, join_other, join_big, join_next;
    unsigned long fired, fired_big, fired_silent;
    int64_t target;
} mm;

/* Joins mm.target once main has spawned it. */
static void other_joiner(void *arg)
{
    (void)arg;
    while (mm.target == 0)
        weft_yield();
    mm.join_other = weft_join(mm.target, 2000);
}

static int mmap_main(void *arg)
{
    (void)arg;
    int64_t j = weft_go(other_joiner, NULL);
    weft_yield(); /* the joiner has its stack and waits for a target */
    mm.target = weft_go(must_not_run, NULL);
    arm(WEFT_FAULT_MMAP, ENOMEM);
    mm.join_main = weft_join(mm.target, 2000);
    mm.fired = disarm();
    weft_join(j, 2000);

    /* A size no coroutine has used yet is not in the stack pool. */
    weft_co_opts o = {.stack_size = 200 << 10, .name = "big"};
    int64_t id = weft_go_opts(must_not_run, NULL, &o);
    arm(WEFT_FAULT_MMAP, ENOMEM);
    mm.join_big = weft_join(id, 2000);
    mm.fired_big = disarm();

    /* Nobody waiting: the failure is silent and the loop carries on. */
    weft_go_opts(must_not_run, NULL, &o);
    arm(WEFT_FAULT_MMAP, ENOMEM);
    weft_sleep(10);
    mm.fired_silent = disarm();

    id = weft_go_opts(count_run, NULL, &o);
    mm.join_next = weft_join(id, 2000);
    return 0;
}

Test(fault_co, stack_mmap_failure, .timeout = 30, .init = clear_faults, .fini = clear_faults)
{
    int fds = count_fds();
    cr_assert_eq(weft_main(mmap_main, NULL, NULL), 0);
    cr_assert_eq(mm.fired, 1, "the stack was not mapped through the seam");
    cr_assert_eq(mm.join_main, -ENOMEM, "join while its stack failed: %s",
                 weft_err_name(mm.join_main));
    cr_assert_eq(mm.join_other, -ENOMEM, "second joiner: %s", weft_err_name(mm.join_other));
    cr_assert_eq(mm.fired_big, 1);
    cr_assert_eq(mm.join_big, -ENOMEM);
    cr_assert_eq(never_ran, 0, "a coroutine without a stack ran");
    cr_assert_eq(mm.fired_silent, 1);
    cr_assert_eq(mm.join_next, 0);
    cr_assert_eq(ran_count, 1);
    cr_assert_eq(count_fds(), fds);
    assert_no_leaks();
}

/* ---- loops ------------------------------------------------------------------------------- */

Test(fault_oom, loop_new, .timeout = 30, .init = clear_faults, .fini = clear_faults)
{
    int fds = count_fds();
    unsigned nth;
    for (nth = 1; nth < 50; nth++) {
        weft_loop *l = (weft_loop *)SENTINEL;
        weft_fault_clear();
        weft_fault_set(WEFT_FAULT_MALLOC, nth, ENOMEM);
        int rc = weft_loop_new(&l, NULL);
        unsigned long fired = disarm();
        if (!fired) {
            cr_assert_eq(rc, 0, "loop_new: %s", weft_err_name(rc));
            weft_loop_free(l);
            cr_assert_eq(count_fds(), fds);
            break;
        }
        cr_assert_eq(rc, -ENOMEM, "allocation %u failing: %s", nth, weft_err_name(rc));
        cr_assert_eq(l, (weft_loop *)SENTINEL, "*out written on failure");
        cr_assert_eq(count_fds(), fds, "allocation %u failing leaked a descriptor", nth);
        /* It left no loop behind on the thread. */
        cr_assert_eq(weft_go(count_run, NULL), -EPERM);
    }
    cr_assert_gt(nth, 1, "weft_loop_new allocates nothing through the seam?");
    cr_assert_lt(nth, 50);
    assert_no_leaks();
}

static int main_ran;

static int main_fn(void *arg)
{
    (void)arg;
    main_ran++;
    return 7;
}

Test(fault_oom, weft_main, .timeout = 30, .init = clear_faults, .fini = clear_faults)
{
    int fds = count_fds();
    unsigned nth;
    for (nth = 1; nth < 50; nth++) {
        main_ran = 0;
        weft_fault_clear();
        weft_fault_set(WEFT_FAULT_MALLOC, nth, ENOMEM);
        int rc = weft_main(main_fn, NULL, NULL);
        unsigned long fired = disarm();
        cr_assert_eq(count_fds(), fds, "allocation %u failing leaked a descriptor", nth);
        if (!fired) {
            cr_assert_eq(rc, 7);
            cr_assert_eq(main_ran, 1);
            break;
        }
        cr_assert_eq(rc, -ENOMEM, "allocation %u failing: %s", nth, weft_err_name(rc));
        cr_assert_eq(main_ran, 0, "fn ran although weft_main failed");
    }
    cr_assert_gt(nth, 2);
    cr_assert_lt(nth, 50);
    assert_no_leaks();
}

/* ---- every allocation of a listen/accept/connect/echo sequence, in turn ------------------ */

/* On the plain main stack: steps in order, stop at the first failure. */
static int echo_plain(int *failed_step)
{
    weft_sock *l = NULL, *c = NULL, *s = NULL;
    char buf[8];
    int rc;
    *failed_step = 0;
    if ((rc = weft_tcp_listen(&l, "127.0.0.1", 0, 16, 0)) < 0) {
        *failed_step = 1;
        return rc;
    }
    if ((rc = weft_tcp_connect(&c, "127.0.0.1", local_port(l), 2000)) < 0) {
        *failed_step = 2;
        goto out;
    }
    if ((rc = weft_tcp_accept(l, &s, 2000)) < 0) {
        *failed_step = 3;
        goto out;
    }
    ssize_t n;
    if ((n = weft_send(c, "hello", 5, 2000)) != 5 || (n = weft_recvn(s, buf, 5, 2000)) != 5 ||
        (n = weft_send(s, buf, 5, 2000)) != 5 || (n = weft_recvn(c, buf, 5, 2000)) != 5) {
        *failed_step = 4;
        rc = n < 0 ? (int)n : -EIO;
        goto out;
    }
    rc = memcmp(buf, "hello", 5) == 0 ? 0 : -EIO;
out:
    if (s)
        weft_close(s);
    if (c)
        weft_close(c);
    weft_close(l);
    return rc;
}

Test(fault_oom, echo_sequence_plain, .timeout = 90, .init = clear_faults, .fini = clear_faults)
{
    int fds = count_fds();
    unsigned nth, failures = 0;
    for (nth = 1; nth < 100; nth++) {
        int step;
        weft_fault_clear();
        weft_fault_set(WEFT_FAULT_MALLOC, nth, ENOMEM);
        int rc = echo_plain(&step);
        unsigned long fired = disarm();
        cr_assert_eq(count_fds(), fds, "allocation %u failing leaked a descriptor", nth);
        if (!fired) {
            cr_assert_eq(rc, 0, "clean run failed at step %d: %s", step, weft_err_name(rc));
            break;
        }
        if (rc != 0) {
            failures++;
            cr_assert_eq(rc, -ENOMEM, "allocation %u failing: step %d returned %s", nth, step,
                         weft_err_name(rc));
        }
    }
    cr_assert_lt(nth, 100);
    cr_assert_geq(failures, 2, "listen and connect each allocate a socket");
    assert_no_leaks();
}

/* The same with a loop, a server and a client coroutine.  Whatever fails
 * first must fail with -ENOMEM, after the fault fired; it then cancels the
 * other side so the run ends quickly, and the failures that follow from
 * that are not judged. */
static struct {
    int first_step, failures;
    long first_rc;
    unsigned long fired_at_first;
    bool echoed;
} ol;
static int64_t o_srv, o_cli;
static int o_port;

static bool failed(int step, long rc)
{
    if (rc >= 0)
        return false;
    ol.failures++;
    if (!ol.first_step) {
        ol.first_step = step;
        ol.first_rc = rc;
        ol.fired_at_first = weft_fault_fired();
    }
    return true;
}

static void o_server(void *arg)
{
    weft_sock *l = arg, *s;
    int rc = weft_tcp_accept(l, &s, 2000);
    weft_close(l);
    if (failed(10, rc)) {
        weft_cancel(o_cli);
        return;
    }
    char buf[8];
    ssize_t n = weft_recvn(s, buf, 5, 2000);
    if (failed(11, n) || (n == 5 && failed(12, weft_send(s, buf, 5, 2000))))
        weft_cancel(o_cli);
    weft_close(s);
}

static void o_client(void *arg)
{
    (void)arg;
    weft_sock *c;
    int rc = weft_tcp_connect(&c, "127.0.0.1", o_port, 2000);
    if (failed(20, rc)) {
        weft_cancel(o_srv);
        return;
    }
    char buf[8];
    ssize_t n;
    if (failed(21, weft_send(c, "hello", 5, 2000)) || failed(22, n = weft_recvn(c, buf, 5, 2000)))
        weft_cancel(o_srv);
    else
        ol.echoed = n == 5 && memcmp(buf, "hello", 5) == 0;
    weft_close(c);
}

static int o_main(void *arg)
{
    (void)arg;
    weft_sock *l;
    o_srv = o_cli = 0;
    int rc = weft_tcp_listen(&l, "127.0.0.1", 0, 16, 0);
    if (failed(1, rc))
        return 0;
    o_port = local_port(l);
    o_srv = weft_go(o_server, l);
    if (failed(2, o_srv)) {
        weft_close(l);
        return 0;
    }
    o_cli = weft_go(o_client, NULL);
    if (failed(3, o_cli)) {
        weft_cancel(o_srv);
        return 0;
    }
    if (failed(4, weft_join(o_srv, 3000)) || failed(5, weft_join(o_cli, 3000))) {
        weft_cancel(o_srv);
        weft_cancel(o_cli);
    }
    return 0;
}

Test(fault_oom, echo_sequence_coroutines, .timeout = 180, .init = clear_faults,
     .fini = clear_faults)
{
    int fds = count_fds();
    unsigned nth, failures = 0;
    for (nth = 1; nth < 200; nth++) {
        memset(&ol, 0, sizeof ol);
        weft_fault_clear();
        weft_fault_set(WEFT_FAULT_MALLOC, nth, ENOMEM);
        int rc = weft_main(o_main, NULL, NULL);
        unsigned long fired = disarm();
        cr_assert_eq(count_fds(), fds, "allocation %u failing leaked a descriptor", nth);
        if (!fired) {
            cr_assert_eq(rc, 0);
            cr_assert_eq(ol.failures, 0, "clean run: step %d failed with %s", ol.first_step,
                         weft_err_name((int)ol.first_rc));
            cr_assert(ol.echoed);
            break;
        }
        if (rc != 0) { /* weft_main itself, before fn ran */
            failures++;
            cr_assert_eq(rc, -ENOMEM, "allocation %u failing: weft_main returned %s", nth,
                         weft_err_name(rc));
            cr_assert_eq(ol.first_step, 0);
        } else if (ol.first_step) {
            failures++;
            cr_assert_eq(ol.first_rc, -ENOMEM, "allocation %u failing: step %d returned %s", nth,
                         ol.first_step, weft_err_name((int)ol.first_rc));
            cr_assert_geq(ol.fired_at_first, 1, "step %d failed before any fault", ol.first_step);
        } else {
            cr_assert(ol.echoed, "allocation %u failing: nothing failed, yet no echo", nth);
        }
    }
    cr_assert_lt(nth, 200);
    cr_assert_geq(failures, 5);
    assert_no_leaks();
}
