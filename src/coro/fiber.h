/*
 * fiber.h - the scheduler's switches with the sanitizers told about each
 * one.  Part of internal.h (included from it), inline so that the switch
 * inlines into the loop's run queue walk and the coroutines' park.
 *
 * ASan keeps shadow state per stack; without __sanitizer_start_switch_fiber
 * / __sanitizer_finish_switch_fiber around each switch it reports false
 * stack-buffer errors.  TSan needs its own fiber handle per stack.
 */
#ifndef WEFT_FIBER_H
#define WEFT_FIBER_H

#if defined(__SANITIZE_ADDRESS__)
#define WEFT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define WEFT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT_TSAN 1
#endif
#endif

#ifdef WEFT_ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                     size_t *size_old);
#endif
#ifdef WEFT_TSAN
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif

static inline void weft__fiber_before(weft__fiber *from, weft__fiber *to, bool exiting)
{
#ifdef WEFT_ASAN
    __sanitizer_start_switch_fiber(exiting ? NULL : &from->asan_fake, to->asan_bottom,
                                   to->asan_size);
#endif
#ifdef WEFT_TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    (void)from, (void)to, (void)exiting;
}

/* Whoever switched back to a coroutine is its loop, and whoever switched
 * back to the loop is the coroutine it resumed: `from` is that other side. */
static inline void weft__fiber_after(weft__fiber *self, weft__fiber *from)
{
#ifdef WEFT_ASAN
    /* Learns the bounds of the stack we came from: this is how the loop's
     * own thread stack gets known to the coroutines that switch back. */
    __sanitizer_finish_switch_fiber(self->asan_fake, &from->asan_bottom, &from->asan_size);
#endif
    (void)self, (void)from;
}

/* Caches the running thread's floating-point control words in the loop's
 * context, which the x86-64 switch compares a coroutine's with; called at
 * the start of each step's run.  Nothing to do for the other switches. */
static inline void weft__fiber_capture_fp(weft__fiber *loop)
{
#ifdef WEFT__SWITCH_INLINE
    uint32_t mxcsr;
    uint16_t fpucw;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    loop->ctx.fp_words[0] = mxcsr;
    loop->ctx.fp_words[1] = fpucw;
#endif
    (void)loop;
}

/* Loop -> coroutine; returns when the coroutine suspends or exits. */
static inline void weft__fiber_resume(weft__fiber *loop, weft__fiber *co)
{
    weft__fiber_before(loop, co, false);
    weft__ctx_resume(&loop->ctx, &co->ctx);
    weft__fiber_after(loop, co);
}

/* Coroutine -> loop; returns when the loop resumes the coroutine. */
static inline void weft__fiber_suspend(weft__fiber *co, weft__fiber *loop)
{
    weft__fiber_before(co, loop, false);
    weft__ctx_suspend(&co->ctx, &loop->ctx);
    weft__fiber_after(co, loop);
}

/* Leaves from for good (its stack may be released once to runs). */
static inline __attribute__((noreturn)) void weft__fiber_exit_to(weft__fiber *from, weft__fiber *to)
{
    weft__fiber_before(from, to, true);
    weft__ctx_suspend(&from->ctx, &to->ctx);
    __builtin_unreachable();
}

#endif
