/*
 * switch_x86_64.h - the scheduler's context switch for x86-64 System V, as
 * inline assembly.
 *
 * An out-of-line switch pushes and pops rbx, rbp and r12-r15 on every
 * switch, and the calls around it leave returns that the CPU's return
 * predictor gets wrong once the stacks are swapped.  Inline, the assembly
 * tells the compiler that every register but rsp and rbp is clobbered: the
 * compiler then keeps across the switch only what is live at that point,
 * and saves the callee-saved registers once in the enclosing function's
 * prologue.  In the loop's run queue walk that prologue runs once per step,
 * not once per coroutine, and no return is executed between the loop and
 * the coroutine.
 *
 * What survives is then exactly what survives a call (the ABI): the
 * compiler keeps rbx and r12-r15, the assembly keeps rsp and rbp, and the
 * control bits of MXCSR and the x87 control word travel with each
 * coroutine.  Those two words are read on suspend only and compared with
 * the loop's, which it caches at the start of each step; they are written
 * only when they differ, which is slow and rare.
 *
 * Not an out-of-line .S function: a `call` into it would push what the
 * clobbers exist to avoid.
 */
#ifndef WEFT_SWITCH_X86_64_H
#define WEFT_SWITCH_X86_64_H

/* Offsets in weft__ctx, checked by static asserts in ctx.c. */
#define WEFT__CTX_SP 0
#define WEFT__CTX_BP 8
#define WEFT__CTX_IP 16
#define WEFT__CTX_MXCSR 24
#define WEFT__CTX_FPUCW 28

#define WEFT__STR2(x) #x
#define WEFT__STR(x) WEFT__STR2(x)

/* Assembly reads best one instruction per line. */
/* clang-format off */

/* Everything a call may change, minus rdi and rsi (the operands, declared
 * as read-write instead) and rsp and rbp (kept by the assembly). */
#define WEFT__SWITCH_CLOBBERS                                                              \
    "rax", "rbx", "rcx", "rdx", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",      \
        "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",     \
        "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st", "st(1)", "st(2)",       \
        "st(3)", "st(4)", "st(5)", "st(6)", "st(7)", "mm0", "mm1", "mm2", "mm3", "mm4",     \
        "mm5", "mm6", "mm7", "memory", "cc"

/* Saves where this side resumes (label 1) into (%rdi). */
#define WEFT__SWITCH_SAVE                                                                  \
    "movq %%rsp, " WEFT__STR(WEFT__CTX_SP) "(%%rdi)\n\t"                                 \
    "movq %%rbp, " WEFT__STR(WEFT__CTX_BP) "(%%rdi)\n\t"                                 \
    "leaq 1f(%%rip), %%rax\n\t"                                                          \
    "movq %%rax, " WEFT__STR(WEFT__CTX_IP) "(%%rdi)\n\t"

/* Continues the context at (%rsi), whose control words are loaded only if
 * they differ from those at (%rdi) (the current ones, or the loop's cache
 * of them).  MXCSR bits 0-5 are status flags, not control: ignored.  Two
 * loads, each from its own store: one load spanning both stores could not
 * be forwarded and would stall. */
#define WEFT__SWITCH_TO                                                                    \
    "movl " WEFT__STR(WEFT__CTX_MXCSR) "(%%rdi), %%eax\n\t"                              \
    "movzwl " WEFT__STR(WEFT__CTX_FPUCW) "(%%rdi), %%edx\n\t"                            \
    "xorl " WEFT__STR(WEFT__CTX_MXCSR) "(%%rsi), %%eax\n\t"                              \
    "xorw " WEFT__STR(WEFT__CTX_FPUCW) "(%%rsi), %%dx\n\t"                               \
    "andl $0xffc0, %%eax\n\t"                                                            \
    "orl %%edx, %%eax\n\t"                                                               \
    "jnz 2f\n\t"                                                                         \
    "3:\n\t"                                                                             \
    "movq " WEFT__STR(WEFT__CTX_SP) "(%%rsi), %%rsp\n\t"                                 \
    "movq " WEFT__STR(WEFT__CTX_BP) "(%%rsi), %%rbp\n\t"                                 \
    "jmpq *" WEFT__STR(WEFT__CTX_IP) "(%%rsi)\n\t"                                       \
    "2:\n\t"                                                                             \
    "ldmxcsr " WEFT__STR(WEFT__CTX_MXCSR) "(%%rsi)\n\t"                                  \
    "fldcw " WEFT__STR(WEFT__CTX_FPUCW) "(%%rsi)\n\t"                                    \
    "jmp 3b\n\t"                                                                         \
    "1:\n\t"

/* Loop -> coroutine.  Reads no control register: the coroutine's saved
 * words are compared with the loop's cached ones. */
static inline __attribute__((always_inline)) void weft__ctx_resume(weft__ctx *loop,
                                                                   weft__ctx *co)
{
    __asm__ volatile(WEFT__SWITCH_SAVE WEFT__SWITCH_TO
                     : "+D"(loop), "+S"(co)
                     :
                     : WEFT__SWITCH_CLOBBERS);
}

/* Coroutine -> loop: saves the coroutine's words, and puts the loop's back
 * if the coroutine changed them. */
static inline __attribute__((always_inline)) void weft__ctx_suspend(weft__ctx *co,
                                                                    weft__ctx *loop)
{
    __asm__ volatile(WEFT__SWITCH_SAVE
                     "stmxcsr " WEFT__STR(WEFT__CTX_MXCSR) "(%%rdi)\n\t"
                     "fnstcw " WEFT__STR(WEFT__CTX_FPUCW) "(%%rdi)\n\t"
                     WEFT__SWITCH_TO
                     : "+D"(co), "+S"(loop)
                     :
                     : WEFT__SWITCH_CLOBBERS);
}

/* clang-format on */

#endif
