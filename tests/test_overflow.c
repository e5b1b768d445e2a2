/*
 * test_overflow.c - coroutine stack overflow (#50).  In a forked child a
 * coroutine recurses without bound; it must hit its guard pages and die by
 * SIGABRT after printing "weft: coroutine <id> overflowed its <N> KiB stack"
 * (with the name, if it has one).  Faults that are not overflows must reach
 * whatever handled SIGSEGV before weft: the default action (death by
 * SIGSEGV), or a handler the program installed first.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static size_t ov_stack;
static const char *ov_name;

static void ov_body(void *arg)
{
    (void)arg;
    /* Tell the parent which id to expect in the report. */
    dprintf(STDERR_FILENO, "id=%" PRId64 "\n", weft_self());
    recurse(0);
}

static int ov_main(void *arg)
{
    (void)arg;
    weft_co_opts o = {.stack_size = ov_stack, .name = ov_name};
    int64_t id = weft_go_opts(ov_body, NULL, &o);
    return id > 0 ? weft_join(id, -1) : (int)id;
}

static void ov_child(void)
{
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
}

Test(overflow, default_stack_reports_and_aborts, .timeout = 45)
{
    expect_overflow_report(0, NULL, 64);
}

Test(overflow, named_coroutine_report, .timeout = 45)
{
    expect_overflow_report(0, "deep", 64);
}

Test(overflow, custom_stack_size_report, .timeout = 45)
{
    expect_overflow_report(256 * 1024, NULL, 256);
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
