/*
 * fiber.c - switching between the loop's stack and coroutine stacks, with
 * the sanitizers told about every switch.
 *
 * ASan keeps shadow state per stack; without __sanitizer_start_switch_fiber
 * / __sanitizer_finish_switch_fiber around each switch it reports false
 * stack-buffer errors.  TSan needs its own fiber handle per stack.
 */
#include "internal.h"

#include <string.h>

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

#define DEFAULT_STACK (64 * 1024)

void weft__fiber_init_thread(weft__fiber *f)
{
    memset(f, 0, sizeof *f);
#ifdef WEFT_TSAN
    f->tsan_fiber = __tsan_get_current_fiber();
#endif
}

int weft__fiber_start(weft__fiber *f, size_t size, void (*entry)(void *), void *arg)
{
    int rc = weft__stack_get(&f->stack, size ? size : DEFAULT_STACK);
    if (rc < 0)
        return rc;
    weft__ctx_make(&f->ctx, f->stack, entry, arg);
    f->asan_fake = NULL;
    f->asan_bottom = f->stack->base + f->stack->guard;
    f->asan_size = f->stack->size;
#ifdef WEFT_TSAN
    f->tsan_fiber = __tsan_create_fiber(0);
#endif
    return 0;
}

static inline void before(weft__fiber *from, weft__fiber *to, bool exiting)
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
static inline void after(weft__fiber *self, weft__fiber *from)
{
#ifdef WEFT_ASAN
    /* Learns the bounds of the stack we came from: this is how the loop's
     * own thread stack gets known to the coroutines that switch back. */
    __sanitizer_finish_switch_fiber(self->asan_fake, &from->asan_bottom, &from->asan_size);
#endif
    (void)self, (void)from;
}

void weft__fiber_capture_fp(weft__fiber *loop)
{
#if defined(__x86_64__) && !defined(WEFT_USE_UCONTEXT)
    uint32_t mxcsr;
    uint16_t fpucw;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    loop->ctx.fp_words[0] = mxcsr;
    loop->ctx.fp_words[1] = fpucw;
#else
    (void)loop;
#endif
}

void weft__fiber_resume(weft__fiber *loop, weft__fiber *co)
{
    before(loop, co, false);
    weft__ctx_resume(&loop->ctx, &co->ctx);
    after(loop, co);
}

void weft__fiber_suspend(weft__fiber *co, weft__fiber *loop)
{
    before(co, loop, false);
    weft__ctx_suspend(&co->ctx, &loop->ctx);
    after(co, loop);
}

void weft__fiber_exit_to(weft__fiber *from, weft__fiber *to)
{
    before(from, to, true);
    weft__ctx_suspend(&from->ctx, &to->ctx);
    __builtin_unreachable();
}

void weft__fiber_entered(weft__fiber *self, weft__fiber *from)
{
    after(self, from);
}

void weft__fiber_release(weft__fiber *f)
{
#ifdef WEFT_TSAN
    if (f->stack && f->tsan_fiber)
        __tsan_destroy_fiber(f->tsan_fiber);
    f->tsan_fiber = NULL;
#endif
    if (f->stack) {
        weft__stack_put(f->stack);
        f->stack = NULL;
    }
}
