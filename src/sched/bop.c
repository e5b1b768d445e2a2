/*
 * bop.c - waiting for an operation a completion backend carries out.
 *
 * With io_uring the kernel writes into the caller's buffer whenever the
 * operation completes, not when the caller asks.  So a call that must end
 * early (its deadline, a cancel) first asks the backend to stop the
 * operation, then still waits for its completion: only then may the
 * caller's stack frame, and the buffer in it, go.
 */
#include "internal.h"

int weft__bop_run(weft_loop *l, weft__bop *op, int64_t deadline)
{
    weft__co *co = l->current;
    if (WEFT__UNLIKELY(co->cancel_pending || l->closing)) {
        co->cancel_pending = false;
        return -ECANCELED;
    }
    /* Out of time: "only try", which a non-blocking syscall does best. */
    if (WEFT__UNLIKELY(weft__passed(deadline)))
        return -EAGAIN;
    weft__wait w;
    op->done = false;
    op->w = &w;
    if (WEFT__UNLIKELY(l->be->submit(l, op) < 0))
        return -EAGAIN;
    int rc = weft__park(&w, NULL, deadline);
    if (WEFT__LIKELY(op->done))
        return op->res;
    /* rc is -ETIMEDOUT, -ECANCELED or -ENOMEM: stop it, then wait for it.
     * The cancel may complete it at once: nobody to wake then (w may be a
     * park that never happened, and this coroutine is running). */
    op->w = NULL;
    l->be->cancel(l, op);
    while (!op->done) {
        op->w = &w;
        weft__park_hard(&w);
    }
    if (op->res == -ECANCELED || op->res == -EINTR)
        return rc;
    if (rc == -ECANCELED)
        co->cancel_pending = true; /* it completed first: for the next call */
    return op->res;
}
