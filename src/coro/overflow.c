/*
 * overflow.c - turns a coroutine running off the end of its stack into a
 * clear report instead of silent corruption.
 *
 * The fault happens on the overflowed stack itself, so the handler runs on
 * a per-thread alternate signal stack.  A fault is an overflow when its
 * address is in the running coroutine's guard, or when the interrupted
 * stack pointer is below the coroutine's usable stack (a frame larger than
 * the guard).  The handler then prints
 *   weft: coroutine <id> overflowed its <N> KiB stack
 * and aborts.  Every other SIGSEGV, a fault elsewhere or one sent with
 * kill() or raise(), goes where it would have gone without weft: to the
 * handler installed before weft's, with that handler's mask and flags, or
 * to the disposition before it (default or ignore).
 */
#include "internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#define ALT_STACK_SIZE (64 * 1024)

static struct sigaction previous;
static atomic_bool previous_spent; /* a SA_RESETHAND previous handler ran */
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static __thread void *alt_stack;
static __thread stack_t alt_previous;

/* Appends the decimal form of v to p; async-signal-safe. */
static char *put_u64(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *put_str(char *p, const char *s)
{
    while (*s)
        *p++ = *s++;
    return p;
}

/* The stack pointer of the context the signal interrupted, or NULL where
 * this platform's ucontext is not known here. */
static const char *interrupted_sp(const ucontext_t *uc)
{
#if defined(__x86_64__)
    return (const char *)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    return (const char *)uc->uc_mcontext.sp;
#else
    (void)uc;
    return NULL;
#endif
}

/* A stack pointer below the usable part counts up to a guard's length past
 * the guard: further off it is rather some other stack (a signal handler's,
 * a user's own fibers) than this coroutine's frame. */
static bool is_overflow(const weft__stack *st, const siginfo_t *si, const ucontext_t *uc)
{
    const char *lo = st->base + st->guard; /* the usable part starts here */
    const char *a = si->si_addr;
    if (a >= st->base && a < lo)
        return true;
    const char *sp = interrupted_sp(uc);
    return sp && sp < lo && (size_t)(lo - sp) <= 2 * st->guard;
}

static void report(const weft__co *co, const weft__stack *st)
{
    char msg[160], *p = msg;
    p = put_str(p, "weft: coroutine ");
    p = put_u64(p, (uint64_t)co->id);
    if (co->name[0]) {
        p = put_str(p, " (");
        p = put_str(p, co->name);
        p = put_str(p, ")");
    }
    p = put_str(p, " overflowed its ");
    p = put_u64(p, (st->requested + 1023) / 1024);
    p = put_str(p, " KiB stack\n");
    ssize_t ignored = write(STDERR_FILENO, msg, (size_t)(p - msg));
    (void)ignored;
    abort();
}

/* Does with sig what the kernel would have done had weft never installed
 * its handler. */
static void pass_on(int sig, siginfo_t *si, ucontext_t *uc)
{
    /* Sent by kill(), tgkill() or sigqueue(): no instruction to re-run. */
    bool sent = si->si_code <= 0;
    struct sigaction prev = previous;
    bool handler = prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN;
    /* SA_RESETHAND: the handler runs once, later signals get the default
     * action (and weft goes on reporting overflows). */
    if (handler && (prev.sa_flags & SA_RESETHAND) && atomic_exchange(&previous_spent, true)) {
        prev.sa_handler = SIG_DFL;
        handler = false;
    }
    if (!handler) {
        if (prev.sa_handler == SIG_IGN && sent)
            return;
        /* A fault is never ignored: returning re-runs the faulting
         * instruction, which now gets the default action.  A sent signal
         * is sent again, and arrives once this handler returns. */
        signal(sig, SIG_DFL);
        if (sent)
            raise(sig);
        return;
    }
    /* The mask the kernel would have run it with: the interrupted
     * context's, its own sa_mask, and sig itself unless SA_NODEFER. */
    sigset_t mask = uc->uc_sigmask, saved;
    sigorset(&mask, &mask, &prev.sa_mask);
    if (prev.sa_flags & SA_NODEFER)
        sigdelset(&mask, sig);
    else
        sigaddset(&mask, sig);
    pthread_sigmask(SIG_SETMASK, &mask, &saved);
    if (prev.sa_flags & SA_SIGINFO)
        prev.sa_sigaction(sig, si, uc);
    else
        prev.sa_handler(sig);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
}

static void on_segv(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    weft__co *co = weft__current();
    if (si->si_code > 0 && co && co->fiber.stack && is_overflow(co->fiber.stack, si, uc))
        report(co, co->fiber.stack);
    pass_on(sig, si, uc);
}

static void install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    /* A sent SIGSEGV that interrupts a call restarts it or not as the
     * previous handler asked; one that is ignored or kills, restarts it. */
    struct sigaction cur;
    sigaction(SIGSEGV, NULL, &cur);
    if (cur.sa_handler == SIG_DFL || cur.sa_handler == SIG_IGN || (cur.sa_flags & SA_RESTART))
        sa.sa_flags |= SA_RESTART;
    sigaction(SIGSEGV, &sa, &previous);
}

int weft__overflow_thread_init(void)
{
    pthread_once(&install_once, install);
    if (alt_stack)
        return 0;
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE))
        return 0; /* the thread already has one: it serves us too */
    void *mem = weft__sys_malloc(ALT_STACK_SIZE);
    if (!mem)
        return -ENOMEM;
    stack_t ss = {.ss_sp = mem, .ss_size = ALT_STACK_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, &alt_previous) != 0) {
        free(mem);
        return -errno;
    }
    alt_stack = mem;
    return 0;
}

void weft__overflow_thread_fini(void)
{
    if (!alt_stack)
        return;
    sigaltstack(&alt_previous, NULL);
    free(alt_stack);
    alt_stack = NULL;
}
