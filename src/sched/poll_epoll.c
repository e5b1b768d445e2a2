/*
 * poll_epoll.c - the Linux epoll poller.
 *
 * Each socket is registered once, edge-triggered, for input and output
 * together (EPOLLET | EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDHUP), and stays so until
 * it is closed: waiting never costs an epoll_ctl.  The loop's own eventfd
 * and timerfd are registered for input only.  The sockets cache the
 * edges as readiness flags and only park after EAGAIN (or a short read),
 * which is what makes edge triggering safe.
 *
 * The io_uring backend keeps such a set for readiness as well: its state
 * starts with a weft__epoll_set, and it calls these functions.
 */
#include "internal.h"

#include <unistd.h>

int weft__epoll_open(weft__epoll_set *st)
{
    st->ev = weft__sys_malloc(WEFT__EPOLL_EVENTS * sizeof *st->ev);
    if (!st->ev)
        return -ENOMEM;
    st->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (st->epfd < 0) {
        int err = -errno;
        free(st->ev);
        return err;
    }
    return 0;
}

void weft__epoll_close(weft__epoll_set *st)
{
    close(st->epfd);
    free(st->ev);
}

static int ep_init(weft_loop *l)
{
    weft__epoll_set *st = weft__sys_malloc(sizeof *st);
    if (!st)
        return -ENOMEM;
    int rc = weft__epoll_open(st);
    if (rc < 0) {
        free(st);
        return rc;
    }
    l->be_data = st;
    return 0;
}

static void ep_fini(weft_loop *l)
{
    weft__epoll_close(l->be_data);
    free(l->be_data);
    l->be_data = NULL;
}

static int ctl(weft_loop *l, int op, weft__pollent *e, int events)
{
    weft__epoll_set *st = l->be_data;
    struct epoll_event ev = { .events = EPOLLET, .data.ptr = e };
    if (events & WEFT__EV_IN)
        ev.events |= EPOLLIN | EPOLLRDHUP | EPOLLPRI;
    if (events & WEFT__EV_OUT)
        ev.events |= EPOLLOUT;
    if (epoll_ctl(st->epfd, op, e->fd, &ev) != 0)
        return -errno;
    return 0;
}

int weft__epoll_arm(weft_loop *l, weft__pollent *e, int events)
{
    return ctl(l, EPOLL_CTL_ADD, e, events);
}

/* EPOLL_CTL_MOD checks the descriptor's readiness anew and queues an event
 * for what holds now, edge-triggered or not. */
int weft__epoll_rearm(weft_loop *l, weft__pollent *e, int events)
{
    return ctl(l, EPOLL_CTL_MOD, e, events);
}

int weft__epoll_disarm(weft_loop *l, weft__pollent *e)
{
    weft__epoll_set *st = l->be_data;
    struct epoll_event ev = { 0 }; /* kernels before 2.6.9 want one */
    if (epoll_ctl(st->epfd, EPOLL_CTL_DEL, e->fd, &ev) != 0)
        return -errno;
    return 0;
}

int weft__epoll_wait(weft_loop *l, int timeout_ms)
{
    weft__epoll_set *st = l->be_data;
    struct epoll_event *evs = st->ev;
    int n = epoll_wait(st->epfd, evs, WEFT__EPOLL_EVENTS, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    /* With thousands of connections each event's socket, and the coroutine
     * waiting on it, are cache misses: start them all before touching any. */
    for (int i = 0; i < n; i++)
        __builtin_prefetch(evs[i].data.ptr);
    for (int i = 0; i < n; i++) {
        weft__pollent *pe = evs[i].data.ptr;
        if (pe->inq && pe->inq->head)
            __builtin_prefetch(pe->inq->head, 1);
    }
    for (int i = 0; i < n; i++) {
        uint32_t e = evs[i].events;
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
        weft__pollent *pe = evs[i].data.ptr;
        pe->on_event(pe, ev);
    }
    return n;
}

static int ep_fd(weft_loop *l)
{
    return ((weft__epoll_set *)l->be_data)->epfd;
}

const weft__backend weft__backend_epoll = {
    .name = "epoll",
    .init = ep_init,
    .fini = ep_fini,
    .arm = weft__epoll_arm,
    .disarm = weft__epoll_disarm,
    .wait = weft__epoll_wait,
    .fd = ep_fd,
    .rearm = weft__epoll_rearm,
};
