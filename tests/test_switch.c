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

void regs_call(weft__ctx *from, weft__ctx *to, uint64_t out[7]);
void regs_clobber(weft__ctx *from, weft__ctx *to, int which);

static weft__ctx main_ctx, other_ctx;
static int clobbers;

static void other_entry(void *arg)
{
    (void)arg;
    for (;;) {
        /* Both control words, then the x87 one alone, then MXCSR alone:
         * each compare must catch a difference on its own. */
        static const int which[] = { 3, 2, 1 };
        regs_clobber(&other_ctx, &main_ctx, which[clobbers++ % 3]);
    }
}

Test(switch, callee_saved_and_control_words_survive, .timeout = 10)
{
    weft__stack *st;
    cr_assert_eq(weft__stack_get(&st, 64 * 1024), 0);
    weft__ctx_make(&other_ctx, st, other_entry, NULL);
    uint32_t mxcsr0;
    uint16_t fpucw0;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr0));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw0));
    for (int round = 0; round < 6; round++) {
        uint64_t out[7] = { 0 };
        regs_call(&main_ctx, &other_ctx, out);
        cr_assert_eq(clobbers, round + 1);
        cr_assert_eq(out[0], 0x1111111111111111ull, "rbx");
        cr_assert_eq(out[1], 0x2222222222222222ull, "rbp");
        cr_assert_eq(out[2], 0x3333333333333333ull, "r12");
        cr_assert_eq(out[3], 0x4444444444444444ull, "r13");
        cr_assert_eq(out[4], 0x5555555555555555ull, "r14");
        cr_assert_eq(out[5], 0x6666666666666666ull, "r15");
        cr_assert_eq((uint32_t)out[6] & 0xffc0, mxcsr0 & 0xffc0, "MXCSR control bits");
        cr_assert_eq((uint16_t)(out[6] >> 32), fpucw0, "x87 control word");
    }
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
