/*
 * poll_epoll.c - the Linux epoll poller.
 *
 * Each socket is registered once, edge-triggered, for input and output
 * together (EPOLLET | EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDHUP), and stays so until
 * it is closed: waiting never costs an epoll_ctl.  The loop's own eventfd
 * and timerfd are registered for input only.  The sockets cache the
 * edges as readiness flags and only park after EAGAIN (or a short read),
 * which is what makes edge triggering safe.
 */
#include "internal.h"

#include <sys/epoll.h>
#include <unistd.h>

#define MAX_EVENTS 256

typedef struct epoll_data_s {
    int epfd;
    struct epoll_event ev[MAX_EVENTS];
} epoll_state;

static int ep_init(weft_loop *l)
{
    epoll_state *st = weft__sys_malloc(sizeof *st);
    if (!st)
        return -ENOMEM;
    st->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (st->epfd < 0) {
        int err = -errno;
        free(st);
        return err;
    }
    l->be_data = st;
    return 0;
}

static void ep_fini(weft_loop *l)
{
    epoll_state *st = l->be_data;
    close(st->epfd);
    free(st);
    l->be_data = NULL;
}

static int ctl(weft_loop *l, int op, weft__pollent *e, int events)
{
    epoll_state *st = l->be_data;
    struct epoll_event ev = { .events = EPOLLET, .data.ptr = e };
    if (events & WEFT__EV_IN)
        ev.events |= EPOLLIN | EPOLLRDHUP | EPOLLPRI;
    if (events & WEFT__EV_OUT)
        ev.events |= EPOLLOUT;
    if (epoll_ctl(st->epfd, op, e->fd, &ev) != 0)
        return -errno;
    return 0;
}

static int ep_arm(weft_loop *l, weft__pollent *e, int events)
{
    return ctl(l, EPOLL_CTL_ADD, e, events);
}

/* EPOLL_CTL_MOD checks the descriptor's readiness anew and queues an event
 * for what holds now, edge-triggered or not. */
static int ep_rearm(weft_loop *l, weft__pollent *e, int events)
{
    return ctl(l, EPOLL_CTL_MOD, e, events);
}

static int ep_disarm(weft_loop *l, weft__pollent *e)
{
    epoll_state *st = l->be_data;
    struct epoll_event ev = { 0 }; /* kernels before 2.6.9 want one */
    if (epoll_ctl(st->epfd, EPOLL_CTL_DEL, e->fd, &ev) != 0)
        return -errno;
    return 0;
}

static int ep_wait(weft_loop *l, int timeout_ms)
{
    epoll_state *st = l->be_data;
    int n = epoll_wait(st->epfd, st->ev, MAX_EVENTS, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    /* With thousands of connections each event's socket, and the coroutine
     * waiting on it, are cache misses: start them all before touching any. */
    for (int i = 0; i < n; i++)
        __builtin_prefetch(st->ev[i].data.ptr);
    for (int i = 0; i < n; i++) {
        weft__pollent *pe = st->ev[i].data.ptr;
        if (pe->inq && pe->inq->head)
            __builtin_prefetch(pe->inq->head, 1);
    }
    for (int i = 0; i < n; i++) {
        uint32_t e = st->ev[i].events;
        int ev = 0;
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI))
            ev |= WEFT__EV_IN;
        if (e & EPOLLPRI)
            ev |= WEFT__EV_PRI;
        if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            ev |= WEFT__EV_OUT;
        if (e & EPOLLERR)
            ev |= WEFT__EV_ERR;
        if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            ev |= WEFT__EV_HUP;
        weft__pollent *pe = st->ev[i].data.ptr;
        pe->on_event(pe, ev);
    }
    return n;
}

static int ep_fd(weft_loop *l)
{
    return ((epoll_state *)l->be_data)->epfd;
}

const weft__backend weft__backend_epoll = {
    .name = "epoll",
    .init = ep_init,
    .fini = ep_fini,
    .arm = ep_arm,
    .disarm = ep_disarm,
    .wait = ep_wait,
    .fd = ep_fd,
    .rearm = ep_rearm,
};
