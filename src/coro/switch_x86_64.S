/*
 * switch_x86_64.S - context switch for x86-64 System V.
 *
 * Saves only what the ABI says survives a call: rbx, rbp, r12-r15, the
 * stack pointer, and the control bits of MXCSR and the x87 control word.
 * The return address is popped and jumped to rather than ret'd: a switch
 * never returns to its own caller, so ret would mispredict every time.
 *
 * Frame on a suspended stack, from sp upwards:
 *   [mxcsr:4 fpucw:2 pad:2] r15 r14 r13 r12 rbx rbp return-address
 */
    .text

/* The registers the ABI says survive a call; every frame below holds them
 * in this order, the return address above them. */
.macro SAVE_CALLEE_SAVED
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
.endm

/* Pops them and continues where the resumed context left off: pop and jump,
 * not ret, which would mispredict on every switch. */
.macro RESTORE_CALLEE_SAVED_AND_JUMP
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    popq    %rcx
    jmpq    *%rcx
.endm

/* void weft__ctx_switch(weft__ctx *from, weft__ctx *to)   rdi, rsi */
    .globl  weft__ctx_switch
    .hidden weft__ctx_switch
    .type   weft__ctx_switch, @function
    .p2align 4
weft__ctx_switch:
    .cfi_startproc
    SAVE_CALLEE_SAVED
    subq    $8, %rsp
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)
    /* Loading the control words is slow and they almost never differ.  The
     * words just saved are the current ones, so compare against those,
     * ignoring MXCSR's sticky exception flags (bits 0-5: status, not
     * control).  Two loads, each from its own store: one load spanning
     * both stores could not be forwarded and would stall. */
    movl    (%rsp), %eax
    movzwl  4(%rsp), %edx
    movq    (%rsi), %rsp
    xorl    (%rsp), %eax
    xorw    4(%rsp), %dx
    andl    $0xffc0, %eax
    orl     %edx, %eax
    jnz     1f
2:  addq    $8, %rsp
    RESTORE_CALLEE_SAVED_AND_JUMP
1:  ldmxcsr (%rsp)
    fldcw   4(%rsp)
    jmp     2b
    .cfi_endproc
    .size   weft__ctx_switch, .-weft__ctx_switch

/*
 * The scheduler's pair.  Coroutines only ever switch to and from their
 * loop, whose control words do not change during a step (the loop caches
 * them in its ctx at the start of each step: weft__ctx_capture_fp).  So:
 * resume (loop -> coroutine) reads no control word at all and its frame has
 * no slot for them; suspend (coroutine -> loop) saves the coroutine's and
 * compares them with the loop's cached ones.  Half the reads of a pair of
 * symmetric switches.
 *
 * weft__ctx layout: sp at 0, the cached MXCSR at 8, x87 control word at 12.
 */

/* void weft__ctx_resume(weft__ctx *loop, weft__ctx *co)   rdi, rsi */
    .globl  weft__ctx_resume
    .hidden weft__ctx_resume
    .type   weft__ctx_resume, @function
    .p2align 4
weft__ctx_resume:
    .cfi_startproc
    SAVE_CALLEE_SAVED
    movq    %rsp, (%rdi)
    movl    8(%rdi), %eax
    movzwl  12(%rdi), %edx
    movq    (%rsi), %rsp
    xorl    (%rsp), %eax
    xorw    4(%rsp), %dx
    andl    $0xffc0, %eax
    orl     %edx, %eax
    jnz     1f
2:  addq    $8, %rsp
    RESTORE_CALLEE_SAVED_AND_JUMP
1:  ldmxcsr (%rsp)
    fldcw   4(%rsp)
    jmp     2b
    .cfi_endproc
    .size   weft__ctx_resume, .-weft__ctx_resume

/* void weft__ctx_suspend(weft__ctx *co, weft__ctx *loop)   rdi, rsi */
    .globl  weft__ctx_suspend
    .hidden weft__ctx_suspend
    .type   weft__ctx_suspend, @function
    .p2align 4
weft__ctx_suspend:
    .cfi_startproc
    SAVE_CALLEE_SAVED
    subq    $8, %rsp
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)
    movl    (%rsp), %eax
    movzwl  4(%rsp), %edx
    xorl    8(%rsi), %eax
    xorw    12(%rsi), %dx
    movq    (%rsi), %rsp
    andl    $0xffc0, %eax
    orl     %edx, %eax
    jnz     1f
2:  RESTORE_CALLEE_SAVED_AND_JUMP
1:  ldmxcsr 8(%rsi)
    fldcw   12(%rsi)
    jmp     2b
    .cfi_endproc
    .size   weft__ctx_suspend, .-weft__ctx_suspend

/* First code a new coroutine runs: r12 = entry, r13 = its argument. */
    .globl  weft__ctx_trampoline
    .hidden weft__ctx_trampoline
    .type   weft__ctx_trampoline, @function
    .p2align 4
weft__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    movq    %r13, %rdi
    callq   *%r12
    ud2     /* entry never returns: it switches away for good */
    .cfi_endproc
    .size   weft__ctx_trampoline, .-weft__ctx_trampoline

    .section .note.GNU-stack,"",@progbits
