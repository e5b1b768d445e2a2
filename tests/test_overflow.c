/*
 * test_overflow.c - coroutine stack overflow (#50).  In a forked child a
 * coroutine recurses without bound, or calls a frame far larger than its
 * stack (and than the guard's old size) that touches its low end first; it
 * must die by SIGABRT after printing "weft: coroutine <id> overflowed its
 * <N> KiB stack" (with the name, if it has one), before writing to the
 * stack of the coroutine mapped below it.  Faults that are not overflows,
 * and SIGSEGVs sent with raise(), kill() or sigqueue(), must get what
 * SIGSEGV had before weft: the default action (death by SIGSEGV), a handler
 * the program installed first (with its mask and flags), or nothing (an
 * ignored SIGSEGV, which leaves overflow reports working).
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct child_result {
    int status;     /* from waitpid */
    char err[8192]; /* what it wrote to stderr */
} child_result;

/* Runs fn in a child whose stderr goes to a pipe; waits at most 5 s. */
static void run_child(void (*fn)(void), child_result *r)
{
    int p[2];
    memset(r, 0, sizeof *r);
    cr_assert_eq(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], STDERR_FILENO);
        close(p[1]);
        fn();
        _exit(0);
    }
    close(p[1]);
    size_t len = 0;
    int64_t end = mono_ms() + 5000;
    for (;;) {
        int64_t left = end - mono_ms();
        if (left <= 0)
            break;
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        if (poll(&pf, 1, (int)left) <= 0)
            continue;
        ssize_t n = read(p[0], r->err + len, sizeof r->err - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == sizeof r->err - 1)
            break;
    }
    close(p[0]);
    r->err[len] = '\0';
    for (;;) {
        pid_t w = waitpid(pid, &r->status, WNOHANG);
        if (w == pid)
            return;
        if (mono_ms() >= end) {
            kill(pid, SIGKILL);
            waitpid(pid, &r->status, 0);
            cr_assert_fail("child did not end within 5 s; stderr: %s", r->err);
            return;
        }
        usleep(10000);
    }
}

static void describe(const child_result *r, char *buf, size_t n)
{
    if (WIFSIGNALED(r->status))
        snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(r->status),
                 strsignal(WTERMSIG(r->status)));
    else if (WIFEXITED(r->status))
        snprintf(buf, n, "exited with %d", WEXITSTATUS(r->status));
    else
        snprintf(buf, n, "status 0x%x", r->status);
}

/* ---- the overflow itself ------------------------------------------------ */

/* Never reached: only hides the unbounded recursion from the compiler. */
static volatile int bottom = -1;

static int __attribute__((noinline)) recurse(int depth)
{
    volatile char frame[512];
    if (depth == bottom)
        return 0;
    frame[0] = (char)depth;
    frame[sizeof frame - 1] = (char)depth;
    /* Uses the frame after the call, so the call is not a tail call. */
    return recurse(depth + 1) + frame[0] + frame[sizeof frame - 1];
}

#define DEFAULT_KIB 256 /* src/coro/fiber.c DEFAULT_STACK */

static void deep_recursion(void)
{
    recurse(0);
}

static size_t ov_stack;
static const char *ov_name;
static void (*ov_setup)(void);                /* in the child, before weft */
static void (*ov_prelude)(void);              /* in the coroutine, first */
static void (*ov_run)(void) = deep_recursion; /* what overflows */
static bool ov_neighbour;                     /* a coroutine's stack below */

/* ---- a neighbour: the stack mapped right after the overflowing one's ---- */

/* mmap places a new mapping just below the previous one, so this stack is
 * the one a frame that jumps the other's guard writes into.  It covers the
 * top of its stack with a pattern and checks it once the other has run. */
static void neighbour(void *arg)
{
    (void)arg;
    volatile unsigned char pat[48 * 1024];
    for (size_t i = 0; i < sizeof pat; i++)
        pat[i] = (unsigned char)(i * 13 + 1);
    weft_yield(); /* the other coroutine runs its frame now */
    for (size_t i = 0; i < sizeof pat; i++)
        if (pat[i] != (unsigned char)(i * 13 + 1)) {
            dprintf(STDERR_FILENO, "the neighbour's stack was written, %zu bytes from its top\n",
                    sizeof pat - i);
            _exit(6);
        }
}

static void ov_body(void *arg)
{
    (void)arg;
    /* Tell the parent which id to expect in the report. */
    dprintf(STDERR_FILENO, "id=%" PRId64 "\n", weft_self());
    if (ov_prelude)
        ov_prelude();
    if (ov_neighbour)
        weft_yield(); /* the neighbour maps its stack and fills it */
    ov_run();
}

static int ov_main(void *arg)
{
    (void)arg;
    weft_co_opts o = {.stack_size = ov_stack, .name = ov_name};
    int64_t id = weft_go_opts(ov_body, NULL, &o);
    if (ov_neighbour)
        weft_go_opts(neighbour, NULL, &o);
    return id > 0 ? weft_join(id, -1) : (int)id;
}

static void ov_child(void)
{
    if (ov_setup)
        ov_setup();
    weft_main(ov_main, NULL, NULL);
    _exit(3); /* not reached if the overflow was caught */
}

static void expect_overflow_report(size_t stack, const char *name, unsigned kib)
{
    ov_stack = stack;
    ov_name = name;
    child_result r;
    run_child(ov_child, &r);
    char how[64];
    describe(&r, how, sizeof how);
    if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == 77)
        cr_skip_test("the child could not set up the test: %s", r.err);
    const char *idp = strstr(r.err, "id=");
    cr_assert_not_null(idp, "the child never ran the coroutine (%s); stderr: %s", how, r.err);
    int64_t id = strtoll(idp + 3, NULL, 10);
    cr_assert_gt(id, 0);
    char want[160];
    if (name)
        snprintf(want, sizeof want, "weft: coroutine %" PRId64 " (%s) overflowed its %u KiB stack",
                 id, name, kib);
    else
        snprintf(want, sizeof want, "weft: coroutine %" PRId64 " overflowed its %u KiB stack", id,
                 kib);
    cr_expect(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT,
              "child %s, expected SIGABRT; stderr: %s", how, r.err);
    cr_expect_not_null(strstr(r.err, want), "stderr lacks \"%s\"; it was: %s", want, r.err);
    cr_expect_null(strstr(r.err, "neighbour's stack was written"), "%s", r.err);
}

Test(overflow, default_stack_reports_and_aborts, .timeout = 45)
{
    expect_overflow_report(0, NULL, DEFAULT_KIB);
}

Test(overflow, named_coroutine_report, .timeout = 45)
{
    expect_overflow_report(0, "deep", DEFAULT_KIB);
}

Test(overflow, custom_stack_size_report, .timeout = 45)
{
    expect_overflow_report(256 * 1024, NULL, 256);
}

Test(overflow, small_stack_report, .timeout = 45)
{
    expect_overflow_report(64 * 1024, NULL, 64);
}

/* ---- frames larger than the stack ----------------------------------------- */

/* As a user's code may be built: without -fstack-clash-protection (which
 * weft's own build, tests included, has), a frame is one move of the stack
 * pointer, touched where the compiler likes: here its low end first.
 * PROBED: with it, each page of the frame is touched top down first. */
#if defined(__GNUC__) && !defined(__clang__)
#define UNPROBED __attribute__((noinline, optimize("no-stack-clash-protection")))
#define PROBED __attribute__((noinline, optimize("stack-clash-protection")))
#define HAVE_PROBED 1
#else
#define UNPROBED __attribute__((noinline))
#define PROBED __attribute__((noinline))
#endif

static volatile char sink;

#define FRAME(name, attr, bytes)                                                                   \
    static void attr name(void)                                                                    \
    {                                                                                              \
        volatile char a[bytes];                                                                    \
        a[0] = 1;                                                                                  \
        a[sizeof a - 1] = 2;                                                                       \
        sink = a[0];                                                                               \
    }
FRAME(frame_90k, UNPROBED, 90 * 1000)
FRAME(frame_200k, UNPROBED, 200 * 1000)
FRAME(frame_1m, UNPROBED, 1024 * 1024)
FRAME(probed_frame_8m, PROBED, 8 * 1024 * 1024)

/* On a 64 KiB stack, with the neighbour mapped below it. */
static void expect_frame_reported(void (*frame)(void))
{
    ov_run = frame;
    ov_neighbour = true;
    expect_overflow_report(64 * 1024, NULL, 64);
}

Test(overflow, frame_of_90k_is_reported, .timeout = 45)
{
    expect_frame_reported(frame_90k);
}

Test(overflow, frame_of_200k_is_reported, .timeout = 45)
{
    expect_frame_reported(frame_200k);
}

Test(overflow, frame_of_1m_is_reported, .timeout = 45)
{
    expect_frame_reported(frame_1m);
}

/* With probes a frame of any size faults in the guard's top page. */
Test(overflow, probed_frame_larger_than_the_guard_is_reported, .timeout = 45)
{
#ifndef HAVE_PROBED
    cr_skip_test("no per-function stack-clash-protection with this compiler");
#endif
    expect_frame_reported(probed_frame_8m);
}

typedef struct mapping {
    unsigned long lo, hi;
    char perms[5];
} mapping;

/* Finds the guard below the stack that holds p (the PROT_NONE mapping
 * right below p's) in /proc/self/maps, and returns how far below the guard
 * nothing can be written: free space, or a mapping that is not writable;
 * 0 if a writable mapping is right there or there is no guard. */
static size_t room_below_guard(uintptr_t p, uintptr_t *guard)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return 0;
    mapping m, below = {0}, guard_m = {0};
    size_t room = 0;
    /* Sorted by address: the guard is the line before p's. */
    while (fscanf(f, " %lx-%lx %4s%*[^\n]", &m.lo, &m.hi, m.perms) == 3) {
        if (m.lo <= p && p < m.hi) {
            if (guard_m.hi == m.lo && strcmp(guard_m.perms, "---p") == 0) {
                *guard = guard_m.lo;
                if (below.hi < guard_m.lo)
                    room = guard_m.lo - below.hi;
                else if (below.perms[1] != 'w')
                    room = below.hi - below.lo;
            }
            break;
        }
        below = guard_m;
        guard_m = m;
    }
    fclose(f);
    return room;
}

static void UNPROBED touch_low_end(size_t bytes)
{
    volatile char a[bytes];
    a[0] = 1;
    sink = a[0];
}

/* A frame that jumps the whole guard into space that is not writable
 * either: the fault's address is not in the guard, but the stack pointer
 * shows whose frame it is. */
static void jump_the_guard(void)
{
    volatile char here;
    uintptr_t p = (uintptr_t)&here, guard = 0;
    size_t room = room_below_guard(p, &guard);
    if (room < 8 * 1024) {
        dprintf(STDERR_FILENO, "a writable mapping lies right below the guard\n");
        _exit(77);
    }
    size_t past = room / 2 < 64 * 1024 ? room / 2 : 64 * 1024;
    touch_low_end(p - guard + past);
}

Test(overflow, frame_past_the_guard_is_recognised_by_stack_pointer, .timeout = 45)
{
    ov_run = jump_the_guard;
    expect_overflow_report(64 * 1024, NULL, 64);
}

/* ---- faults that are not overflows -------------------------------------- */

/* A volatile pointer, so the compiler cannot see where it points. */
static volatile int *volatile wild_ptr = (volatile int *)(uintptr_t)16;

static void wild_write(void)
{
    *wild_ptr = 1;
}

static void wild_body(void *arg)
{
    (void)arg;
    wild_write();
}

static void wild_on_main_stack(void)
{
    weft_loop *l;
    if (weft_loop_new(&l, NULL) != 0)
        _exit(4);
    wild_write();
    _exit(5);
}

static void wild_in_coroutine(void)
{
    weft_loop *l;
    if (weft_loop_new(&l, NULL) != 0)
        _exit(4);
    weft_go(wild_body, NULL);
    weft_loop_run(l, 2000);
    _exit(5);
}

static void expect_default_segv(void (*fn)(void))
{
    child_result r;
    run_child(fn, &r);
    char how[64];
    describe(&r, how, sizeof how);
#ifdef UNDER_ASAN
    /* ASan's handler was there before weft's, so it is the one a stray
     * fault goes to: it reports and exits instead of dying by SIGSEGV. */
    cr_expect_not_null(strstr(r.err, "AddressSanitizer: SEGV"),
                       "child %s; the fault did not reach ASan's handler; stderr: %s", how, r.err);
    cr_expect(!(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 5), "the fault was ignored");
#else
    cr_expect(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGSEGV,
              "child %s, expected SIGSEGV; stderr: %s", how, r.err);
#endif
    cr_expect_null(strstr(r.err, "overflowed"), "reported as an overflow: %s", r.err);
}

Test(overflow, stray_fault_on_main_stack_gets_default_action, .timeout = 45)
{
    expect_default_segv(wild_on_main_stack);
}

Test(overflow, stray_fault_in_coroutine_gets_default_action, .timeout = 45)
{
    expect_default_segv(wild_in_coroutine);
}

static void own_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    static const char msg[] = "own handler saw the fault\n";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
    _exit(si->si_addr == (void *)(uintptr_t)16 ? 42 : 43);
}

static void own_handler_first(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = own_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    weft_loop *l;
    if (weft_loop_new(&l, NULL) != 0)
        _exit(4);
    struct sigaction cur;
    sigaction(SIGSEGV, NULL, &cur);
    if (cur.sa_sigaction == own_handler)
        _exit(77); /* weft's handler was installed earlier in this process */
    weft_go(wild_body, NULL);
    weft_loop_run(l, 2000);
    _exit(5);
}

/* A handler the program installed before weft still gets stray faults. */
Test(overflow, stray_fault_reaches_earlier_handler, .timeout = 45)
{
    child_result r;
    run_child(own_handler_first, &r);
    char how[64];
    describe(&r, how, sizeof how);
    if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == 77)
        cr_skip_test("weft's handler was already installed before the fork");
    cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 42,
              "child %s, expected the program's own handler to exit 42; stderr: %s", how, r.err);
}

/* ---- SIGSEGV sent with raise(), kill(), sigqueue() ------------------------- */

static int how_sent; /* 0 raise (SI_TKILL), 1 kill (SI_USER), 2 sigqueue (SI_QUEUE) */
static const char *const sent_by[] = {"raise", "kill", "sigqueue"};

static void send_segv(void)
{
    if (how_sent == 0)
        raise(SIGSEGV);
    else if (how_sent == 1)
        kill(getpid(), SIGSEGV);
    else
        sigqueue(getpid(), SIGSEGV, (union sigval){.sival_int = 0});
}

/* Sets SIGSEGV's action before weft installs its handler; exits 77 if weft
 * had installed it before the fork (it then saw another action first). */
static void segv_action_then_weft(const struct sigaction *sa, weft_loop **l)
{
    sigaction(SIGSEGV, sa, NULL);
    if (weft_loop_new(l, NULL) != 0)
        _exit(4);
    struct sigaction cur;
    sigaction(SIGSEGV, NULL, &cur);
    if (cur.sa_handler == sa->sa_handler)
        _exit(77);
}

static void run_in_coroutine(weft_loop *l, void (*fn)(void *))
{
    weft_go(fn, NULL);
    weft_loop_run(l, 2000);
}

static void send_body(void *arg)
{
    (void)arg;
    send_segv();
    dprintf(STDERR_FILENO, "the sent SIGSEGV was survived\n");
}

static void default_then_sent(void)
{
    struct sigaction sa = {.sa_handler = SIG_DFL};
    weft_loop *l;
    segv_action_then_weft(&sa, &l);
    run_in_coroutine(l, send_body);
    _exit(5);
}

static void expect_child(void (*fn)(void), child_result *r)
{
    run_child(fn, r);
    if (WIFEXITED(r->status) && WEXITSTATUS(r->status) == 77)
        cr_skip_test("weft's handler was already installed before the fork");
}

/* As without weft: the default action, death by SIGSEGV. */
Test(overflow, sent_segv_with_default_action_kills, .timeout = 45)
{
    for (how_sent = 0; how_sent < 3; how_sent++) {
        child_result r;
        expect_child(default_then_sent, &r);
        char how[64];
        describe(&r, how, sizeof how);
        cr_expect(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGSEGV,
                  "SIGSEGV sent by %s: child %s, expected death by SIGSEGV; stderr: %s",
                  sent_by[how_sent], how, r.err);
        cr_expect_null(strstr(r.err, "overflowed"), "reported as an overflow: %s", r.err);
    }
}

/* What the earlier handler saw, for the child to check and report. */
static volatile sig_atomic_t h_runs, h_usr1_blocked, h_segv_blocked, h_code;

static void note_mask(void)
{
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    h_runs++;
    h_usr1_blocked = sigismember(&cur, SIGUSR1);
    h_segv_blocked = sigismember(&cur, SIGSEGV);
}

static void info_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    note_mask();
    h_code = si->si_code;
}

static void plain_handler(int sig)
{
    (void)sig;
    note_mask();
}

static int h_flags;

static void check_body(void *arg)
{
    (void)arg;
    send_segv();
    sigset_t after;
    pthread_sigmask(SIG_BLOCK, NULL, &after);
    bool nodefer = h_flags & SA_NODEFER;
    bool ok = h_runs == 1 && h_usr1_blocked == 1 && h_segv_blocked == !nodefer &&
              !sigismember(&after, SIGUSR1) && !sigismember(&after, SIGSEGV) &&
              (!(h_flags & SA_SIGINFO) || h_code <= 0);
    dprintf(STDERR_FILENO,
            "runs=%d usr1_blocked=%d segv_blocked=%d code=%d; after: usr1=%d segv=%d\n",
            (int)h_runs, (int)h_usr1_blocked, (int)h_segv_blocked, (int)h_code,
            sigismember(&after, SIGUSR1), sigismember(&after, SIGSEGV));
    _exit(ok ? 42 : 43);
}

static void handler_then_sent(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (h_flags & SA_SIGINFO)
        sa.sa_sigaction = info_handler;
    else
        sa.sa_handler = plain_handler;
    sa.sa_flags = h_flags;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR1);
    weft_loop *l;
    segv_action_then_weft(&sa, &l);
    run_in_coroutine(l, check_body);
    _exit(5);
}

/* The handler runs once per signal, with its own sa_mask added and SIGSEGV
 * blocked unless SA_NODEFER, and the mask is back afterwards. */
static void expect_handler_with_its_mask(int flags)
{
    h_flags = flags;
    for (how_sent = 0; how_sent < 3; how_sent++) {
        child_result r;
        expect_child(handler_then_sent, &r);
        char how[64];
        describe(&r, how, sizeof how);
        cr_expect(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 42,
                  "SIGSEGV sent by %s, handler flags %#x: child %s; stderr: %s", sent_by[how_sent],
                  (unsigned)flags, how, r.err);
    }
}

Test(overflow, sent_segv_reaches_earlier_handler_with_its_mask, .timeout = 45)
{
    expect_handler_with_its_mask(SA_SIGINFO);
}

Test(overflow, sent_segv_reaches_earlier_nodefer_handler_unblocked, .timeout = 45)
{
    expect_handler_with_its_mask(SA_NODEFER);
}

static void say_handler(int sig)
{
    (void)sig;
    static const char msg[] = "the one-shot handler ran\n";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
}

static void twice_body(void *arg)
{
    (void)arg;
    send_segv();
    send_segv();
    dprintf(STDERR_FILENO, "the second SIGSEGV was survived\n");
}

static void resethand_then_sent_twice(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = say_handler;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    weft_loop *l;
    segv_action_then_weft(&sa, &l);
    run_in_coroutine(l, twice_body);
    _exit(5);
}

/* SA_RESETHAND: the handler takes the first; the second gets the default. */
Test(overflow, sent_segv_reaches_earlier_resethand_handler_once, .timeout = 45)
{
    how_sent = 0;
    child_result r;
    expect_child(resethand_then_sent_twice, &r);
    char how[64];
    describe(&r, how, sizeof how);
    cr_expect(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGSEGV,
              "child %s, expected death by SIGSEGV; stderr: %s", how, r.err);
    const char *first = strstr(r.err, "the one-shot handler ran");
    cr_expect(first && !strstr(first + 1, "the one-shot handler ran"),
              "the handler did not run exactly once; stderr: %s", r.err);
}

static void ignore_segv(void)
{
    signal(SIGSEGV, SIG_IGN);
}

static void send_all_three(void)
{
    for (how_sent = 0; how_sent < 3; how_sent++)
        send_segv();
}

/* An ignored SIGSEGV stays ignored when sent, and the overflow report
 * still works after it. */
Test(overflow, ignored_sent_segv_keeps_overflow_reports, .timeout = 45)
{
    ov_setup = ignore_segv;
    ov_prelude = send_all_three;
    expect_overflow_report(0, NULL, DEFAULT_KIB);
}
