/*
 * switch_aarch64.S - context switch for AArch64 (AAPCS64).
 *
 * Saves what survives a call: x19-x28, the frame pointer x29, the link
 * register x30, sp, the low halves d8-d15 of v8-v15, and FPCR (rounding
 * mode and the like stay with each coroutine, as MXCSR does on x86-64).
 * FPCR is only written when it differs: writing it is slow.
 *
 * Frame on a suspended stack, from sp upwards (176 bytes):
 *   x19 x20 x21 x22 x23 x24 x25 x26 x27 x28 x29 x30 d8 d9 ... d15 fpcr pad
 */
    .text

/* void weft__ctx_switch(weft__ctx *from, weft__ctx *to)   x0, x1 */
    .globl  weft__ctx_switch
    .hidden weft__ctx_switch
    .type   weft__ctx_switch, %function
    .p2align 4
weft__ctx_switch:
    .cfi_startproc
    sub     sp, sp, #176
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mrs     x9, fpcr
    str     x9, [sp, #160]
    mov     x9, sp
    str     x9, [x0]
    ldr     x9, [x1]
    mov     sp, x9
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8, d9, [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    ldr     x9, [sp, #160]
    mrs     x10, fpcr
    cmp     x9, x10
    b.eq    1f
    msr     fpcr, x9
1:  add     sp, sp, #176
    br      x30
    .cfi_endproc
    .size   weft__ctx_switch, .-weft__ctx_switch

/* First code a new coroutine runs: x19 = entry, x20 = its argument. */
    .globl  weft__ctx_trampoline
    .hidden weft__ctx_trampoline
    .type   weft__ctx_trampoline, %function
    .p2align 4
weft__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined x30
    mov     x29, #0
    mov     x0, x20
    blr     x19
    brk     #0      /* entry never returns: it switches away for good */
    .cfi_endproc
    .size   weft__ctx_trampoline, .-weft__ctx_trampoline

    .section .note.GNU-stack,"",@progbits
