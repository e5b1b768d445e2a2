/*
 * overflow.c - turns a coroutine running off the end of its stack into a
 * clear report instead of silent corruption.
 *
 * The fault happens on the overflowed stack itself, so the handler runs on
 * a per-thread alternate signal stack.  It prints
 *   weft: coroutine <id> overflowed its <N> KiB stack
 * and aborts.  Faults anywhere else go to the handler that was installed
 * before weft's (or the default action), as if weft were not there.
 */
#include "internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ALT_STACK_SIZE (64 * 1024)

static struct sigaction previous;
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

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    weft__co *co = weft__current();
    if (co && co->fiber.stack) {
        const weft__stack *st = co->fiber.stack;
        const char *a = si->si_addr;
        if (a >= st->base && a < st->base + st->guard) {
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
    }
    /* Not ours: behave as if weft had never installed a handler. */
    if (previous.sa_flags & SA_SIGINFO) {
        previous.sa_sigaction(sig, si, uc);
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
    } else {
        /* Returning re-runs the faulting instruction, which now gets the
         * default action. */
        signal(sig, SIG_DFL);
    }
}

static void install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
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
    stack_t ss = { .ss_sp = mem, .ss_size = ALT_STACK_SIZE, .ss_flags = 0 };
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
