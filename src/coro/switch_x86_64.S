/*
 * switch_x86_64.S - the first code a new coroutine runs on x86-64.
 *
 * The switch itself is inline assembly (switch_x86_64.h).  weft__ctx_make
 * leaves the entry function and its argument at the new stack's top; the
 * first resume jumps here with sp pointing at them.
 */
    .text

    .globl  weft__ctx_trampoline
    .hidden weft__ctx_trampoline
    .type   weft__ctx_trampoline, @function
    .p2align 4
weft__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    popq    %rax        /* entry */
    popq    %rdi        /* its argument; sp is now 16-aligned */
    callq   *%rax
    ud2                 /* entry never returns: it switches away for good */
    .cfi_endproc
    .size   weft__ctx_trampoline, .-weft__ctx_trampoline

    .section .note.GNU-stack,"",@progbits
