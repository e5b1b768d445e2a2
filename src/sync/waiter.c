/*
 * waiter.c - what every sync object's waits share beyond sync.h's inline
 * part: which thread an object belongs to, and waiting on a local object
 * outside any coroutine (a shared object's waits: shared.c).
 *
 * Outside a coroutine, on a thread that has a loop, nothing but the loop's
 * own coroutines can complete a wait on a local object (it belongs to this
 * thread), so the thread runs the loop's steps until one does, as
 * weft_join does.  On a thread without a loop there is no local object.
 */
#include "sync.h"

#include <limits.h>

__thread char weft__sync_mark;
const char weft__sync_shared;

int weft__sync_enter_slow(const void *const *home)
{
    return *home == &weft__sync_shared ? 1 : -EXDEV;
}

int weft__sync_block_thread(weft__sync_waiter *w, int64_t deadline)
{
    weft_loop *l = weft__tls_loop;
    if (deadline != WEFT__NEVER && deadline <= weft__now_ns())
        return -ETIMEDOUT;
    if (!l)
        return -EDEADLK;
    while (!w->done) {
        if (l->alive == 0)
            return -EDEADLK;
        int64_t ms = -1;
        if (deadline != WEFT__NEVER) {
            int64_t left = deadline - weft__now_ns();
            if (left <= 0)
                return -ETIMEDOUT;
            ms = (left + WEFT__NS_PER_MS - 1) / WEFT__NS_PER_MS;
        }
        /* -EBUSY: inside one of the loop's own steps, which cannot be
         * run from within. */
        int rc = weft_loop_poll(l, ms);
        if (rc < 0)
            return rc;
    }
    return 0;
}
