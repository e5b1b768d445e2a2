/*
 * test_switch.c - the assembly context switch restores exactly what the
 * ABI says survives a call, the control words included, and nothing of
 * one context leaks into another.  Uses the library's internals (the test
 * links the static testing build), since the public API wraps the switch
 * in C functions that save registers of their own.
 */
#include "internal.h"

#include <criterion/criterion.h>

#if defined(__x86_64__) && !defined(WEFT_USE_UCONTEXT)

typedef void (*switch_fn)(weft__ctx *, weft__ctx *);
static weft__ctx main_ctx, other_ctx;
void regs_call(weft__ctx *from, weft__ctx *to, uint64_t out[7], switch_fn fn);
void regs_clobber(weft__ctx *from, weft__ctx *to, int which, switch_fn fn);
extern uint32_t clobber_seen[2];
extern int64_t clobber_regs[6];

static switch_fn back; /* how the other context switches back */
static int clobbers;
/* Both control words, then the x87 one alone, then MXCSR alone: each
 * compare and each restore must catch a difference on its own. */
static const int which[] = {3, 2, 1};

static void other_entry(void *arg)
{
    (void)arg;
    for (;;) {
        int w = which[clobbers++ % 3];
        regs_clobber(&other_ctx, &main_ctx, w, back);
    }
}

/* Switches to the other context and back `rounds` times with `there`,
 * the other context answering with `back_fn`. */
static void check(switch_fn there, switch_fn back_fn, int rounds)
{
    weft__stack *st;
    cr_assert_eq(weft__stack_get(&st, 64 * 1024), 0);
    clobbers = 0;
    back = back_fn;
    weft__ctx_make(&other_ctx, st, other_entry, NULL);
    uint32_t mxcsr0;
    uint16_t fpucw0;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr0));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw0));
    /* What weft__fiber_capture_fp does at the start of every step. */
    main_ctx.fp_words[0] = mxcsr0;
    main_ctx.fp_words[1] = fpucw0;
    for (int round = 0; round < rounds; round++) {
        uint64_t out[7] = {0};
        regs_call(&main_ctx, &other_ctx, out, there);
        cr_assert_eq(clobbers, round + 1);
        cr_assert_eq(out[0], 0x1111111111111111ull, "rbx");
        cr_assert_eq(out[1], 0x2222222222222222ull, "rbp");
        cr_assert_eq(out[2], 0x3333333333333333ull, "r12");
        cr_assert_eq(out[3], 0x4444444444444444ull, "r13");
        cr_assert_eq(out[4], 0x5555555555555555ull, "r14");
        cr_assert_eq(out[5], 0x6666666666666666ull, "r15");
        cr_assert_eq((uint32_t)out[6] & 0xffc0, mxcsr0 & 0xffc0, "MXCSR control bits");
        cr_assert_eq((uint16_t)(out[6] >> 32), fpucw0, "x87 control word");
        if (round > 0) {
            /* The other context, resumed, found the words it had set. */
            int w = which[(round - 1) % 3];
            uint32_t want_mx = (mxcsr0 & ~0x6000u) | (w & 1 ? 0x6000u : 0);
            uint16_t want_cw = (uint16_t)((fpucw0 & ~0x0c00u) | (w & 2 ? 0x0c00u : 0));
            cr_assert_eq(clobber_seen[0] & 0xffc0, want_mx & 0xffc0, "its MXCSR, round %d", round);
            cr_assert_eq((uint16_t)clobber_seen[1], want_cw, "its x87 word, round %d", round);
            for (int r = 0; r < 6; r++)
                cr_assert_eq(clobber_regs[r], -(r + 1), "its callee-saved register %d", r);
        }
    }
    weft__stack_put(st);
    weft__stack_pool_drain();
}

/* The switch is inline assembly that leaves the callee-saved registers to
 * the compiler, through its clobber list: these functions are what the
 * compiler makes of it, and regs_call sees whether a register was missed. */
static __attribute__((noinline)) void resume_fn(weft__ctx *loop, weft__ctx *co)
{
    weft__ctx_resume(loop, co);
}

static __attribute__((noinline)) void suspend_fn(weft__ctx *co, weft__ctx *loop)
{
    weft__ctx_suspend(co, loop);
}

/* The scheduler's pair: the loop resumes, the coroutine suspends. */
Test(switch, callee_saved_and_control_words_survive, .timeout = 30)
{
    check(resume_fn, suspend_fn, 6);
}

/* A new context's entry must find sp 8 past a 16-byte boundary (the ABI's
 * state right after a call).  C cannot read sp at entry: sp_probe (in
 * switch_regs_x86_64.S) records it and continues in probe_next. */
void sp_probe(void *arg);
extern uint64_t probe_sp;
extern void (*probe_next)(void *arg);

static void probe_body(void *arg)
{
    *(int *)arg = 42;
    for (;;)
        suspend_fn(&other_ctx, &main_ctx);
}

Test(switch, new_context_gets_its_argument_and_an_aligned_stack, .timeout = 30)
{
    weft__stack *st;
    cr_assert_eq(weft__stack_get(&st, 64 * 1024), 0);
    int seen = 0;
    probe_next = probe_body;
    weft__ctx_make(&other_ctx, st, sp_probe, &seen);
    resume_fn(&main_ctx, &other_ctx);
    cr_assert_eq(seen, 42);
    cr_assert_eq(probe_sp % 16, 8, "sp at entry %#lx", (unsigned long)probe_sp);
    weft__stack_put(st);
    weft__stack_pool_drain();
}

#else

Test(switch, callee_saved_and_control_words_survive)
{
    cr_skip("the register-level check is written for the x86-64 assembly switch; "
            "check_switch covers the other builds");
}

#endif
