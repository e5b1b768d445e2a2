/*
 * switch_regs_x86_64.S - helpers for test_switch.c: call the context
 * switch with known values in every callee-saved register and report what
 * came back, and a partner that clobbers all of them before switching back.
 * Only assembly can tell the switch's own saving from that of the C
 * functions around it.
 */
    .text

/* void regs_call(weft__ctx *from, weft__ctx *to, uint64_t out[7], switch_fn fn):
 * fn is the switch under test (weft__ctx_switch or weft__ctx_resume). */
    .globl  regs_call
    .type   regs_call, @function
regs_call:
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    pushq   %rdx
    movq    %rcx, %rax
    movabsq $0x1111111111111111, %rbx
    movabsq $0x2222222222222222, %rbp
    movabsq $0x3333333333333333, %r12
    movabsq $0x4444444444444444, %r13
    movabsq $0x5555555555555555, %r14
    movabsq $0x6666666666666666, %r15
    call    *%rax
    popq    %rdx
    movq    %rbx, 0(%rdx)
    movq    %rbp, 8(%rdx)
    movq    %r12, 16(%rdx)
    movq    %r13, 24(%rdx)
    movq    %r14, 32(%rdx)
    movq    %r15, 40(%rdx)
    stmxcsr 48(%rdx)
    fnstcw  52(%rdx)
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret
    .size   regs_call, .-regs_call

/* void regs_clobber(weft__ctx *from, weft__ctx *to, int which, switch_fn fn):
 * garbage in every callee-saved register; round-toward-zero in MXCSR if
 * which & 1 and in the x87 control word if which & 2 (the default mode
 * otherwise); then switch back with fn.  Once resumed, it records the
 * control words it finds in clobber_seen (MXCSR, then the x87 word) and its
 * callee-saved registers in clobber_regs (rbx rbp r12 r13 r14 r15). */
    .globl  regs_clobber
    .type   regs_clobber, @function
regs_clobber:
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    subq    $8, %rsp
    stmxcsr (%rsp)
    andl    $~0x6000, (%rsp)
    testl   $1, %edx
    jz      1f
    orl     $0x6000, (%rsp)
1:  ldmxcsr (%rsp)
    fnstcw  4(%rsp)
    andw    $~0x0c00, 4(%rsp)
    testl   $2, %edx
    jz      2f
    orw     $0x0c00, 4(%rsp)
2:  fldcw   4(%rsp)
    movq    $-1, %rbx
    movq    $-2, %rbp
    movq    $-3, %r12
    movq    $-4, %r13
    movq    $-5, %r14
    movq    $-6, %r15
    movq    %rcx, %rax
    call    *%rax
    stmxcsr clobber_seen(%rip)
    fnstcw  clobber_seen+4(%rip)
    movq    %rbx, clobber_regs(%rip)
    movq    %rbp, clobber_regs+8(%rip)
    movq    %r12, clobber_regs+16(%rip)
    movq    %r13, clobber_regs+24(%rip)
    movq    %r14, clobber_regs+32(%rip)
    movq    %r15, clobber_regs+40(%rip)
    addq    $8, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret
    .size   regs_clobber, .-regs_clobber

/* void sp_probe(void *arg): a new context's entry that records sp exactly
 * as the trampoline's call left it, then goes on in probe_next(arg). */
    .globl  sp_probe
    .type   sp_probe, @function
sp_probe:
    movq    %rsp, probe_sp(%rip)
    jmpq    *probe_next(%rip)
    .size   sp_probe, .-sp_probe

    .bss
    .globl  probe_sp
    .p2align 3
probe_sp:
    .zero   8
    .globl  probe_next
probe_next:
    .zero   8
    .globl  clobber_seen
    .p2align 3
clobber_seen:
    .zero   8
    .globl  clobber_regs
clobber_regs:
    .zero   48

    .section .note.GNU-stack,"",@progbits
