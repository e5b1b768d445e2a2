/*
 * ctx.c - preparing a new context: lays out the first frame that the
 * switch (switch_<arch>.S) will pop, or sets up a ucontext when weft is
 * built with WEFT_UCONTEXT for platforms without an assembly switch.
 */
#include "internal.h"

#include <stdint.h>
#include <string.h>

#ifdef WEFT_USE_UCONTEXT

/* makecontext passes only ints: split the pointers across them. */
static void uc_entry(unsigned fhi, unsigned flo, unsigned ahi, unsigned alo)
{
    void (*entry)(void *) = (void (*)(void *))(((uintptr_t)fhi << 32) | flo);
    void *arg = (void *)(((uintptr_t)ahi << 32) | alo);
    entry(arg);
}

void weft__ctx_make(weft__ctx *ctx, weft__stack *st, void (*entry)(void *), void *arg)
{
    uintptr_t f = (uintptr_t)entry, a = (uintptr_t)arg;
    getcontext(&ctx->uc);
    ctx->uc.uc_stack.ss_sp = st->base + st->guard;
    ctx->uc.uc_stack.ss_size = st->size;
    ctx->uc.uc_link = NULL;
    makecontext(&ctx->uc, (void (*)(void))uc_entry, 4, (unsigned)(f >> 32), (unsigned)f,
                (unsigned)(a >> 32), (unsigned)a);
}

void weft__ctx_switch(weft__ctx *from, weft__ctx *to)
{
    swapcontext(&from->uc, &to->uc);
}

void weft__ctx_resume(weft__ctx *loop, weft__ctx *co)
{
    swapcontext(&loop->uc, &co->uc);
}

void weft__ctx_suspend(weft__ctx *co, weft__ctx *loop)
{
    swapcontext(&co->uc, &loop->uc);
}

#else

void weft__ctx_trampoline(void);

#if !defined(__x86_64__)
/* Only x86-64 has the asymmetric pair; elsewhere both are the one switch. */
void weft__ctx_resume(weft__ctx *loop, weft__ctx *co)
{
    weft__ctx_switch(loop, co);
}

void weft__ctx_suspend(weft__ctx *co, weft__ctx *loop)
{
    weft__ctx_switch(co, loop);
}
#endif

#ifdef WEFT__SWITCH_INLINE
_Static_assert(offsetof(weft__ctx, sp) == WEFT__CTX_SP, "switch_x86_64.h offsets");
_Static_assert(offsetof(weft__ctx, bp) == WEFT__CTX_BP, "switch_x86_64.h offsets");
_Static_assert(offsetof(weft__ctx, ip) == WEFT__CTX_IP, "switch_x86_64.h offsets");
_Static_assert(offsetof(weft__ctx, fp_words) == WEFT__CTX_MXCSR, "switch_x86_64.h offsets");
_Static_assert(offsetof(weft__ctx, fp_words) + 4 == WEFT__CTX_FPUCW, "switch_x86_64.h offsets");
#endif

void weft__ctx_make(weft__ctx *ctx, weft__stack *st, void (*entry)(void *), void *arg)
{
    /* The record sits at the top; the first frame goes just below it. */
    uintptr_t top = ((uintptr_t)(st->base + st->guard + st->size)) & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* The trampoline pops entry and arg, leaving sp 16-aligned for its call. */
    uint64_t *sp = (uint64_t *)(top - 16);
    uint32_t mxcsr;
    uint16_t fpucw;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    sp[0] = (uint64_t)(uintptr_t)entry;
    sp[1] = (uint64_t)(uintptr_t)arg;
    ctx->bp = NULL; /* ends frame-pointer walks */
    ctx->ip = (void *)weft__ctx_trampoline;
    ctx->fp_words[0] = mxcsr;
    ctx->fp_words[1] = fpucw;
#elif defined(__aarch64__)
    uint64_t *sp = (uint64_t *)(top - 176);
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    memset(sp, 0, 176);
    sp[20] = fpcr;
    sp[0] = (uint64_t)(uintptr_t)entry;         /* x19 */
    sp[1] = (uint64_t)(uintptr_t)arg;           /* x20 */
    sp[11] = (uint64_t)(uintptr_t)weft__ctx_trampoline; /* x30 */
#else
#error "no assembly context switch for this architecture: configure with -DWEFT_UCONTEXT=ON"
#endif
    ctx->sp = sp;
}

#endif
