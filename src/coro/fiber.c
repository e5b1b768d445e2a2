/*
 * fiber.c - execution contexts for the loop's stack and coroutine stacks:
 * giving a coroutine its stack and first frame, and releasing it.  The
 * switches themselves are inline, in fiber.h.
 */
#include "internal.h"

#include <string.h>

/* Room three times over for a 64 KiB buffer on the stack and a TLS
 * handshake below it, 84 KiB deep at most in our measurements (ASan builds,
 * whose frames are larger, included).  Untouched pages cost only address
 * space, so this costs an idle connection nothing. */
#define DEFAULT_STACK (256 * 1024)

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

void weft__fiber_entered(weft__fiber *self, weft__fiber *from)
{
    weft__fiber_after(self, from);
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
