/*
 * test_resolve_ares.c - the c-ares resolver against a DNS server of the
 * test's own (dns_stub in dns_server.h), for what dnsmasq cannot be made
 * to do: fall silent and answer again later, truncate every UDP answer,
 * hold a TCP answer back.  Queries whose callers gave up must still end
 * when c-ares gives up on them, and give their place back; c-ares's wish
 * to write on a TCP connection that is already up must reach the poller.
 */
#include <criterion/criterion.h>
#include <weft.h>

#include "dns_server.h"
#include "helpers.h"

#include <malloc.h>
#ifdef UNDER_ASAN
size_t __sanitizer_get_current_allocated_bytes(void); /* GCC ships no header for it */
#endif

static dns_stub stub;
static int fds_before;

static void setup(void)
{
    cr_assert_eq(dns_stub_start(&stub), 0, "the test's DNS server did not start");
    fds_before = count_fds();
}

static void teardown(void)
{
    dns_stub_stop(&stub);
}

TestSuite(resolve_ares, .init = setup, .fini = teardown, .timeout = 180);

/* Bytes the process has allocated and not freed. */
static size_t heap_in_use(void)
{
#ifdef UNDER_ASAN
    return __sanitizer_get_current_allocated_bytes();
#else
    return mallinfo2().uordblks;
#endif
}

static void stub_set(int *field, int v)
{
    __atomic_store_n(field, v, __ATOMIC_RELAXED);
}

static int stub_get(int *field)
{
    return __atomic_load_n(field, __ATOMIC_RELAXED);
}

static weft_config stub_cfg(int timeout_ms, int tries)
{
    weft_config c = { 0 };
    c.dns_servers = stub.servers;
    c.dns_timeout_ms = timeout_ms;
    c.dns_tries = tries;
    return c;
}

typedef struct job {
    char name[32];
    int64_t timeout;
    int rc;
    int64_t ms;
    char addr[64];
} job;

static void lookup_job(void *arg)
{
    job *j = arg;
    weft_addrinfo *ai = NULL;
    weft_hints h = { .family = AF_INET, .socktype = SOCK_STREAM };
    int64_t t0 = weft_now();
    j->rc = weft_resolve(&ai, j->name, NULL, &h, j->timeout);
    j->ms = weft_now() - t0;
    if (j->rc == 0)
        weft_addr_format(weft_addrinfo_addr(ai), j->addr, sizeof j->addr);
    weft_addrinfo_free(ai);
}

#define BURST 200

/* Starts n lookups of distinct names (prefix0.test, prefix1.test...). */
static void spawn_jobs(job *jobs, int64_t *ids, int n, const char *prefix, int64_t timeout)
{
    for (int i = 0; i < n; i++) {
        snprintf(jobs[i].name, sizeof jobs[i].name, "%s%d.test", prefix, i);
        jobs[i].timeout = timeout;
        jobs[i].rc = 1; /* not run */
        ids[i] = weft_go(lookup_job, &jobs[i]);
    }
}

static void join_jobs(const int64_t *ids, int n)
{
    for (int i = 0; i < n; i++)
        weft_join(ids[i], -1);
}

/* How many of jobs[0..n) ended with rc; the first other code in *other. */
static int count_rc(const job *jobs, int n, int rc, int *other)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (jobs[i].rc == rc)
            k++;
        else if (other && !*other)
            *other = jobs[i].rc ? jobs[i].rc : -1;
    }
    return k;
}

/* ---- queries whose callers gave up ---------------------------------------- */

typedef struct wedge_run {
    job warm[BURST], burst[BURST], last;
    int64_t ids[BURST];
    int fds_warm, fds_settled;
    size_t heap_warm, heap_settled;
    int64_t settle_ms;
} wedge_run;

static int wedge_main(void *arg)
{
    wedge_run *w = arg;
    /* The same burst answered first, so that every pool and table the
     * burst needs has grown before the baseline is taken. */
    spawn_jobs(w->warm, w->ids, BURST, "w", 10000);
    join_jobs(w->ids, BURST);
    w->fds_warm = count_fds();
    w->heap_warm = heap_in_use();

    stub_set(&stub.silent, 1);
    spawn_jobs(w->burst, w->ids, BURST, "b", 300);
    join_jobs(w->ids, BURST);
    /* c-ares gives up on each query after 1 s + 2 s; then it has nothing
     * left, closes its socket, and every allocation is back. */
    int64_t t0 = weft_now();
    while (count_fds() != w->fds_warm && weft_now() - t0 < 10000)
        weft_sleep(100);
    w->settle_ms = weft_now() - t0;
    w->fds_settled = count_fds();
    w->heap_settled = heap_in_use();

    stub_set(&stub.silent, 0);
    snprintf(w->last.name, sizeof w->last.name, "late.test");
    w->last.timeout = 5000;
    lookup_job(&w->last);
    return 0;
}

Test(resolve_ares, abandoned_queries_end_on_time_and_free_their_slots)
{
    /* 200 lookups of 300 ms to a server that has gone silent: more than the
     * 128 queries a loop keeps on the wire.  Their callers give up long
     * before c-ares does; c-ares's retries must still run, the queries end,
     * and the loop's next lookup gets through once the server answers. */
    static wedge_run w;
    memset(&w, 0, sizeof w);
    weft_config c = stub_cfg(1000, 2);
    cr_assert_eq(weft_main(wedge_main, &w, &c), 0);
    int other = 0;
    cr_assert_eq(count_rc(w.warm, BURST, 0, &other), BURST, "warm-up: %s",
                 weft_err_name(other));
    other = 0;
    cr_assert_eq(count_rc(w.burst, BURST, -ETIMEDOUT, &other), BURST,
                 "the burst: each caller's own timeout, not %s", weft_err_name(other));
    cr_log_info("settled %lld ms after the burst; heap %zu -> %zu bytes",
                (long long)w.settle_ms, w.heap_warm, w.heap_settled);
    cr_expect_eq(w.fds_settled, w.fds_warm,
                 "c-ares still holds its socket %lld ms after the burst: queries left",
                 (long long)w.settle_ms);
    /* 128 queries left behind would hold well over 50 KB */
    cr_expect_lt(w.heap_settled, w.heap_warm + 16384, "heap %zu -> %zu bytes", w.heap_warm,
                 w.heap_settled);
    cr_assert_eq(w.last.rc, 0, "the next lookup: %s after %lld ms", weft_err_name(w.last.rc),
                 (long long)w.last.ms);
    cr_assert_str_eq(w.last.addr, "127.0.0.7:0");
    cr_assert_eq(count_fds(), fds_before);
}

/* ---- slots ---------------------------------------------------------------- */

#define HOLDERS 128 /* WEFT_ARES_INFLIGHT: every slot taken */
#define QUITTERS 50
#define PATIENT 20

typedef struct slots_run {
    job holders[HOLDERS], quitters[QUITTERS], patient[PATIENT];
    int64_t ids[HOLDERS + QUITTERS + PATIENT];
    int64_t cancelled;
} slots_run;

static int slots_main(void *arg)
{
    slots_run *s = arg;
    stub_set(&stub.silent, 1);
    spawn_jobs(s->holders, s->ids, HOLDERS, "h", 10000);
    weft_sleep(50); /* every slot taken before the others come */
    spawn_jobs(s->quitters, s->ids + HOLDERS, QUITTERS, "q", 200);
    spawn_jobs(s->patient, s->ids + HOLDERS + QUITTERS, PATIENT, "p", 10000);
    weft_sleep(50);
    /* One of the patient cancelled while it waits for a slot: no slot may
     * go with it. */
    s->cancelled = s->ids[HOLDERS + QUITTERS];
    weft_cancel(s->cancelled);
    weft_sleep(300); /* the quitters have given up */
    stub_set(&stub.silent, 0);
    /* c-ares's second try (2 s after the first) is answered; each slot
     * that comes back goes to a waiter still there. */
    join_jobs(s->ids, HOLDERS + QUITTERS + PATIENT);
    return 0;
}

Test(resolve_ares, waiters_for_a_slot_that_give_up_take_none_with_them)
{
    static slots_run s;
    memset(&s, 0, sizeof s);
    weft_config c = stub_cfg(2000, 2);
    cr_assert_eq(weft_main(slots_main, &s, &c), 0);
    int other = 0;
    cr_assert_eq(count_rc(s.holders, HOLDERS, 0, &other), HOLDERS, "holders: %s",
                 weft_err_name(other));
    other = 0;
    cr_assert_eq(count_rc(s.quitters, QUITTERS, -ETIMEDOUT, &other), QUITTERS, "quitters: %s",
                 weft_err_name(other));
    cr_assert_eq(s.patient[0].rc, -ECANCELED, "%s", weft_err_name(s.patient[0].rc));
    other = 0;
    cr_assert_eq(count_rc(s.patient + 1, PATIENT - 1, 0, &other), PATIENT - 1, "patient: %s",
                 weft_err_name(other));
    cr_assert_eq(count_fds(), fds_before);
}

typedef struct free_run {
    job jobs[BURST];
    int64_t ids[BURST];
} free_run;

static void spawn_burst(void *arg)
{
    free_run *f = arg;
    spawn_jobs(f->jobs, f->ids, BURST, "f", 10000);
}

Test(resolve_ares, loop_freed_with_queries_on_the_wire_and_waiters)
{
    /* 128 queries on the wire and 72 lookups waiting for a slot when the
     * loop goes: each lookup returns -ECANCELED, each query ends once (ASan
     * sees a double free or a leak). */
    static free_run f;
    memset(&f, 0, sizeof f);
    stub_set(&stub.silent, 1);
    weft_config c = stub_cfg(1000, 2);
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, &c), 0);
    cr_assert_geq(weft_go(spawn_burst, &f), 1);
    for (int i = 0; i < 10; i++)
        weft_loop_poll(l, 10);
    weft_loop_free(l);
    int other = 0;
    cr_assert_eq(count_rc(f.jobs, BURST, -ECANCELED, &other), BURST, "%s",
                 weft_err_name(other));
    cr_assert_eq(count_fds(), fds_before);
}

typedef struct oom_run {
    unsigned nth;
    job first, then;
    unsigned long fired;
} oom_run;

static int oom_main(void *arg)
{
    oom_run *o = arg;
    snprintf(o->first.name, sizeof o->first.name, "oom.test");
    o->first.timeout = 5000;
    o->then = o->first;
    weft_fault_clear();
    weft_fault_set(WEFT_FAULT_MALLOC, o->nth, ENOMEM);
    lookup_job(&o->first);
    o->fired = weft_fault_fired();
    weft_fault_clear();
    lookup_job(&o->then);
    return 0;
}

Test(resolve_ares, out_of_memory_at_each_allocation)
{
    /* The first lookup on a fresh loop makes the channel and puts its timer
     * in the loop's heap for the first time: each allocation fails in turn.
     * The lookup then fails with -ENOMEM or succeeds, and the next one on
     * the same loop must get through: no slot or timer is lost. */
    weft_config c = stub_cfg(1000, 2);
    unsigned nth;
    for (nth = 1; nth < 64; nth++) {
        oom_run o = { .nth = nth };
        cr_assert_eq(weft_main(oom_main, &o, &c), 0);
        cr_assert(o.first.rc == 0 || o.first.rc == -ENOMEM, "nth %u: %s", nth,
                  weft_err_name(o.first.rc));
        cr_assert_eq(o.then.rc, 0, "nth %u, then: %s", nth, weft_err_name(o.then.rc));
        if (!o.fired)
            break;
    }
    cr_assert_lt(nth, 64);
    cr_assert_eq(count_fds(), fds_before);
}

/* ---- c-ares writing on a TCP connection that is already up ------------------ */

typedef struct tcp_run {
    job held, second;
    int tcp_queries_then, tcp_accepts_then;
} tcp_run;

static int tcp_main(void *arg)
{
    tcp_run *t = arg;
    snprintf(t->held.name, sizeof t->held.name, "hold.test");
    t->held.timeout = 15000;
    int64_t id = weft_go(lookup_job, &t->held);
    /* Until the held query has gone over TCP: the connection is then up,
     * and idle until its answer comes. */
    for (int i = 0; i < 500 && stub_get(&stub.tcp_queries) < 1; i++)
        weft_sleep(10);
    weft_sleep(100);
    snprintf(t->second.name, sizeof t->second.name, "second.test");
    t->second.timeout = 2000;
    lookup_job(&t->second);
    t->tcp_queries_then = stub_get(&stub.tcp_queries);
    t->tcp_accepts_then = stub_get(&stub.tcp_accepts);
    weft_join(id, -1);
    return 0;
}

Test(resolve_ares, truncated_answer_goes_over_the_open_tcp_connection)
{
    /* Both names' UDP answers are truncated.  The first one's TCP answer is
     * held back 5 s, so c-ares's connection stays open and idle when the
     * second name needs it: c-ares then wants to write on a socket whose
     * write edge came and went long ago. */
    stub_set(&stub.truncate_udp, 1);
    stub_set(&stub.hold_ms, 5000);
    static tcp_run t;
    memset(&t, 0, sizeof t);
    weft_config c = stub_cfg(10000, 1); /* no retry of c-ares's own meanwhile */
    cr_assert_eq(weft_main(tcp_main, &t, &c), 0);
    cr_assert_eq(t.second.rc, 0, "the second name: %s after %lld ms",
                 weft_err_name(t.second.rc), (long long)t.second.ms);
    cr_assert_str_eq(t.second.addr, "127.0.0.7:0");
    cr_assert_eq(t.tcp_accepts_then, 1, "one TCP connection");
    cr_assert_eq(t.tcp_queries_then, 2, "both queries went over it");
    cr_assert_eq(t.held.rc, 0, "the held one: %s", weft_err_name(t.held.rc));
    cr_assert_geq(t.held.ms, 4000);
    /* The server's end of the connection (in this process) closes once its
     * thread sees c-ares's end close. */
    for (int i = 0; i < 200 && count_fds() != fds_before; i++)
        usleep(10000);
    cr_assert_eq(count_fds(), fds_before);
}
