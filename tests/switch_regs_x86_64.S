/*
 * switch_regs_x86_64.S - helpers for test_switch.c: call the context
 * switch with known values in every callee-saved register and report what
 * came back, and a partner that clobbers all of them before switching back.
 * Only assembly can tell the switch's own saving from that of the C
 * functions around it.
 */
    .text

/* void regs_call(weft__ctx *from, weft__ctx *to, uint64_t out[7]) */
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
    movabsq $0x1111111111111111, %rbx
    movabsq $0x2222222222222222, %rbp
    movabsq $0x3333333333333333, %r12
    movabsq $0x4444444444444444, %r13
    movabsq $0x5555555555555555, %r14
    movabsq $0x6666666666666666, %r15
    call    weft__ctx_switch
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

/* void regs_clobber(weft__ctx *from, weft__ctx *to, int which): garbage in
 * every callee-saved register; round-toward-zero in MXCSR if which & 1 and
 * in the x87 control word if which & 2 (the default mode otherwise); then
 * switch back. */
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
    call    weft__ctx_switch
    addq    $8, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret
    .size   regs_clobber, .-regs_clobber

    .section .note.GNU-stack,"",@progbits
