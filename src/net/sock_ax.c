/*
 * sock_ax.c - a listener's accept-ahead on a loop with multishot
 * operations.
 *
 * On io_uring an accept submitted per call costs a submission and a poll
 * the kernel arms and tears down each time.  A multishot accept stays
 * armed instead: the kernel accepts each connection as it comes and posts
 * its descriptor, which queues on the listener and wakes its acceptor.
 * weft_accept then takes one from the queue.
 *
 * Accepting ahead must not defeat a server that stops accepting (its
 * max_conns reached, shedding load): the queue stops the accept-ahead at
 * AX_STOP connections, and the rest wait in the kernel's backlog as they
 * would on epoll.  One wake-up of the kernel's may accept a burst past
 * that (it accepts while the backlog holds any): the queue, made for
 * AX_FIRST as it is armed, grows to hold them, and a connection it has no
 * memory for is closed, as a full backlog would have refused it, and the
 * next accept fails with -ENOMEM.
 */
#include "sock.h"

#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#define AX_STOP 64
#define AX_FIRST 256 /* made as it is armed: a burst seldom needs more */

static void push(weft__sock_ax *x, int fd)
{
    if (x->count == x->cap) {
        uint32_t cap = x->cap * 2;
        int *m = weft__sys_malloc(cap * sizeof *m);
        if (!m) {
            /* Its peer sees the close, as if the backlog had been full;
             * the acceptor hears of it. */
            close(fd);
            x->err = -ENOMEM;
            return;
        }
        for (uint32_t i = 0; i < x->count; i++)
            m[i] = x->fd[(x->head + i) % x->cap];
        free(x->fd);
        x->fd = m;
        x->head = 0;
        x->cap = cap;
    }
    x->fd[(x->head + x->count) % x->cap] = fd;
    x->count++;
}

static int pop(weft__sock_ax *x)
{
    int fd = x->fd[x->head];
    x->head = (x->head + 1) % x->cap;
    x->count--;
    return fd;
}

/* A completion of the multishot accept, inside the backend's wait. */
static void on_more(weft__bop *op, int res, int buf, bool done)
{
    (void)buf;
    weft__sock_ax *x = (weft__sock_ax *)((char *)op - offsetof(weft__sock_ax, op));
    weft__sock *s = x->s;
    if (res >= 0) {
        if (s->closing)
            close(res);
        else
            push(x, res);
    } else if (done && res == -EINVAL && !x->count) {
        x->unsupported = true; /* a kernel before 5.19 */
    } else if (done && res != -ECANCELED) {
        /* Out of descriptors or memory, say: the connections stay in the
         * backlog; the acceptor backs off and arms it again. */
        x->err = res;
    }
    if (done) {
        x->armed = false;
        x->stopping = false;
        if (x->orphan) {
            x->orphan = false;
            x->loop = NULL;
        }
    } else if (x->count >= AX_STOP && !x->stopping && !x->orphan) {
        x->stopping = true;
        x->loop->be->stop(x->loop, op);
    }
    if (!s->closing)
        weft__wake_all(&s->rq, 0);
    if (done)
        weft__sock_unref(s); /* the ring's reference: may free s */
}

/* Puts the accept-ahead in the ring.  False when the loop cannot. */
static bool arm(weft__sock *s, int flags)
{
    weft_loop *l = s->loop;
    if (!l || !l->be->stop)
        return false;
    weft__sock_ax *x = s->ax;
    if (!x) {
        x = weft__sys_calloc(1, sizeof *x);
        if (!x)
            return false;
        x->s = s;
        s->ax = x;
    }
    if (x->unsupported || x->armed)
        return false;
    if (!x->fd) {
        /* Now, not as connections come: a failure then would lose one. */
        x->fd = weft__sys_malloc(AX_FIRST * sizeof *x->fd);
        if (!x->fd)
            return false;
        x->cap = AX_FIRST;
    }
    x->loop = l;
    x->op = (weft__bop){ .kind = WEFT__BOP_ACCEPT_MULTI, .fd = s->pe.fd, .flags = flags,
                         .on_more = on_more };
    if (l->be->submit(l, &x->op) < 0)
        return false;
    x->armed = true;
    s->refs++;
    return true;
}

int weft__sock_ax_accept(weft__sock *s, int flags)
{
    bool seen = false; /* the fault seam sees one accept per call */
    for (;;) {
        weft__sock_ax *x = s->ax;
        if (x && (x->count || x->err)) {
            if (!seen && weft__sys_fail(WEFT_FAULT_ACCEPT))
                return -errno;
            if (x->count)
                return pop(x);
            int e = x->err;
            x->err = 0;
            return e;
        }
        int64_t deadline = s->rdeadline;
        if (weft__passed(deadline))
            return -EAGAIN; /* no time to wait: the caller tries once */
        if (!x || !x->armed) {
            if (!arm(s, flags))
                return -EAGAIN;
            x = s->ax;
        } else if (x->orphan) {
            return -EAGAIN;
        }
        int rc = weft__sock_await(s, &seen, WEFT_FAULT_ACCEPT, deadline);
        if (rc < 0)
            return rc;
    }
}

/* Stops the accept-ahead and runs its last completion, if the kernel
 * has it at once (it does: a multishot accept is a poll). */
static void halt(weft__sock_ax *x)
{
    for (int i = 0; x->armed && !x->orphan && i < 100; i++)
        x->loop->be->cancel(x->loop, &x->op);
}

void weft__sock_ax_halt(weft__sock *s)
{
    if (s->ax)
        halt(s->ax);
}

int weft__sock_ax_take(weft__sock *s)
{
    weft__sock_ax *x = s->ax;
    if (!x)
        return -EAGAIN;
    halt(x);
    return x->count ? pop(x) : -EAGAIN;
}

void weft__sock_ax_detach(weft__sock *s)
{
    weft__sock_ax *x = s->ax;
    if (!x || !x->armed)
        return;
    halt(x);
    if (x->armed)
        x->orphan = true; /* the loop's end cancels it; on_more lets go */
    else
        x->loop = NULL;
}

void weft__sock_ax_drop(weft__sock *s)
{
    weft__sock_ax *x = s->ax;
    if (!x)
        return;
    if (x->armed && !x->orphan)
        x->loop->be->cancel(x->loop, &x->op); /* before the descriptor goes */
    while (x->count)
        close(pop(x));
}

void weft__sock_ax_free(weft__sock *s)
{
    weft__sock_ax *x = s->ax;
    if (!x)
        return;
    while (x->count)
        close(pop(x));
    free(x->fd);
    free(x);
    s->ax = NULL;
}
