/*
 * poll_poll.c - the poll(2) poller, the portable fallback for systems
 * without epoll.
 *
 * The watched descriptors sit in one dense pollfd array, which each wait
 * hands to poll() as it is; a table indexed by descriptor gives an entry's
 * place in it, so arm and disarm cost no syscall and no search (disarm
 * moves the last entry into the hole).
 *
 * poll() is level-triggered and the sockets are written for edges (they
 * cache readiness and only park after EAGAIN), so edges are emulated: once
 * a direction of a socket (an entry with an inq) has been reported, it is
 * no longer watched until a waiter about to park asks for it again (want)
 * or rearm does.  The other entries (the loop's eventfd and timerfd,
 * c-ares's sockets, weft_fd_wait's descriptors) drain their input, which
 * stays watched level-triggered; their output is reported once, until
 * rearm.  An entry that watches nothing is left out of poll() (negative
 * fd), or a hang-up nobody reads would be reported at every wait.
 *
 * A descriptor closed without a disarm comes back as POLLNVAL and is
 * forgotten; one whose number was reused meanwhile is told apart by its
 * file (device and inode), as epoll forgets a file at its close.
 *
 * There is no descriptor that tells when poll() would report something:
 * embedding the loop in another (weft_loop_fd) is not available on this
 * backend, and fd returns -ENOTSUP.
 */
#include "internal.h"

#include <poll.h>
#include <sys/stat.h>

#ifndef POLLRDHUP
#define POLLRDHUP 0 /* Linux's: elsewhere a shutdown shows as input */
#endif

#define DIRS (WEFT__EV_IN | WEFT__EV_OUT)

typedef struct slot {
    weft__pollent *pe; /* NULL: disarmed during a dispatch, removed after it */
    int fd;
    unsigned char events; /* what arm or rearm asked for */
    unsigned char watch;  /* what poll() is asked for: events but the edges
                           * consumed and not asked for again */
    dev_t dev;            /* the file armed, to tell a reused number */
    ino_t ino;
} slot;

typedef struct poll_state {
    struct pollfd *pfd; /* dense, beside slot: len used of cap */
    slot *slot;
    size_t len, cap;
    uint32_t *at; /* by descriptor: 1 + its place in pfd, 0 if not armed */
    size_t at_cap;
    size_t dead;      /* slots disarmed during the dispatch, still in place */
    bool dispatching; /* on_event handlers run: places must not move */
} poll_state;

static int pp_init(weft_loop *l)
{
    poll_state *st = weft__sys_calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    l->be_data = st;
    return 0;
}

static void pp_fini(weft_loop *l)
{
    poll_state *st = l->be_data;
    free(st->pfd);
    free(st->slot);
    free(st->at);
    free(st);
    l->be_data = NULL;
}

/* The place of e in the dense arrays, or -1 if e is not armed. */
static ssize_t find(const poll_state *st, const weft__pollent *e)
{
    if (e->fd < 0 || (size_t)e->fd >= st->at_cap || !st->at[e->fd])
        return -1;
    size_t i = st->at[e->fd] - 1;
    return st->slot[i].pe == e ? (ssize_t)i : -1;
}

/* As epoll: input brings the peer's shutdown and urgent data with it. */
static void set_watch(poll_state *st, size_t i, int watch)
{
    slot *s = &st->slot[i];
    s->watch = (unsigned char)watch;
    st->pfd[i].events = (short)((watch & WEFT__EV_IN ? POLLIN | POLLRDHUP | POLLPRI : 0) |
                                (watch & WEFT__EV_OUT ? POLLOUT : 0));
    st->pfd[i].fd = watch ? s->fd : -1;
}

/* Moves the last entry into place i. */
static void remove_at(poll_state *st, size_t i)
{
    size_t last = --st->len;
    if (i == last)
        return;
    st->pfd[i] = st->pfd[last];
    st->slot[i] = st->slot[last];
    if (st->slot[i].pe)
        st->at[st->slot[i].fd] = (uint32_t)(i + 1);
}

/* Takes entry i off.  During a dispatch the places of the entries not yet
 * dispatched must stay: the entry goes deaf there, and is removed after. */
static void forget(poll_state *st, size_t i)
{
    st->at[st->slot[i].fd] = 0;
    if (!st->dispatching) {
        remove_at(st, i);
        return;
    }
    st->slot[i].pe = NULL;
    st->pfd[i].fd = -1;
    st->dead++;
}

static void compact(poll_state *st)
{
    for (size_t i = 0; i < st->len && st->dead > 0;) {
        if (st->slot[i].pe) {
            i++;
            continue;
        }
        remove_at(st, i); /* what moves in is looked at next */
        st->dead--;
    }
}

/* Makes room for one more entry, of descriptor fd.  Each array grown stays
 * so even if the next cannot grow: the state stays usable. */
static int reserve(poll_state *st, int fd)
{
    if (st->len == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        struct pollfd *pfd = weft__sys_realloc(st->pfd, cap * sizeof *pfd);
        if (!pfd)
            return -ENOMEM;
        st->pfd = pfd;
        slot *sl = weft__sys_realloc(st->slot, cap * sizeof *sl);
        if (!sl)
            return -ENOMEM;
        st->slot = sl;
        st->cap = cap;
    }
    if ((size_t)fd >= st->at_cap) {
        size_t cap = st->at_cap ? st->at_cap : 64;
        while (cap <= (size_t)fd)
            cap *= 2;
        uint32_t *at = weft__sys_realloc(st->at, cap * sizeof *at);
        if (!at)
            return -ENOMEM;
        for (size_t i = st->at_cap; i < cap; i++)
            at[i] = 0;
        st->at = at;
        st->at_cap = cap;
    }
    return 0;
}

static int pp_arm(weft_loop *l, weft__pollent *e, int events)
{
    poll_state *st = l->be_data;
    struct stat sb;
    if (e->fd < 0)
        return -EBADF;
    if (fstat(e->fd, &sb) != 0)
        return -errno;
    /* What epoll refuses: poll() calls these always ready. */
    if (S_ISREG(sb.st_mode) || S_ISDIR(sb.st_mode) || S_ISBLK(sb.st_mode))
        return -EPERM;
    if ((size_t)e->fd < st->at_cap && st->at[e->fd]) {
        size_t i = st->at[e->fd] - 1;
        if (st->slot[i].dev == sb.st_dev && st->slot[i].ino == sb.st_ino)
            return -EEXIST;
        /* The number was closed without a disarm and names another file
         * now: epoll forgot the old one at its close. */
        forget(st, i);
    }
    int rc = reserve(st, e->fd);
    if (rc < 0)
        return rc;
    size_t i = st->len++;
    slot *s = &st->slot[i];
    s->pe = e;
    s->fd = e->fd;
    s->events = (unsigned char)(events & DIRS);
    s->dev = sb.st_dev;
    s->ino = sb.st_ino;
    st->pfd[i].revents = 0; /* appended during a dispatch: not part of it */
    set_watch(st, i, events & DIRS);
    st->at[e->fd] = (uint32_t)(i + 1);
    return 0;
}

/* The next wait reports what holds now, level-triggered: an edge consumed
 * is seen again. */
static int pp_rearm(weft_loop *l, weft__pollent *e, int events)
{
    poll_state *st = l->be_data;
    ssize_t i = find(st, e);
    if (i < 0)
        return -ENOENT;
    /* A number closed under its entry, or reused, is epoll's EBADF or
     * ENOENT: weft_fd_wait tells a stale entry so. */
    struct stat sb;
    if (fstat(e->fd, &sb) != 0) {
        int err = -errno;
        forget(st, (size_t)i);
        return err;
    }
    if (sb.st_dev != st->slot[i].dev || sb.st_ino != st->slot[i].ino) {
        forget(st, (size_t)i);
        return -ENOENT;
    }
    st->slot[i].events = (unsigned char)(events & DIRS);
    set_watch(st, (size_t)i, events & DIRS);
    return 0;
}

static int pp_disarm(weft_loop *l, weft__pollent *e)
{
    poll_state *st = l->be_data;
    ssize_t i = find(st, e);
    if (i < 0)
        return -ENOENT;
    forget(st, (size_t)i);
    return 0;
}

static void pp_want(weft_loop *l, weft__pollent *e, int events)
{
    poll_state *st = l->be_data;
    ssize_t i = find(st, e);
    if (i >= 0)
        set_watch(st, (size_t)i, st->slot[i].watch | (events & st->slot[i].events));
}

static int pp_wait(weft_loop *l, int timeout_ms)
{
    poll_state *st = l->be_data;
    size_t n = st->len;
    int ready = poll(st->pfd, n, timeout_ms);
    if (ready < 0)
        return errno == EINTR ? 0 : -errno;
    /* Handlers may arm, rearm and disarm any entry: nothing moves until the
     * batch is done (forget), an entry armed now goes past n, and each
     * entry is read anew before its call. */
    int calls = 0;
    st->dispatching = true;
    for (size_t i = 0; i < n && ready > 0; i++) {
        short r = st->pfd[i].revents;
        if (!r)
            continue;
        ready--;
        st->pfd[i].revents = 0;
        slot *s = &st->slot[i];
        weft__pollent *pe = s->pe;
        if (!pe)
            continue; /* disarmed by an earlier handler */
        if (r & POLLNVAL) {
            forget(st, i); /* closed without a disarm */
            continue;
        }
        int ev = 0;
        if (r & (POLLIN | POLLRDHUP | POLLHUP | POLLERR | POLLPRI))
            ev |= WEFT__EV_IN;
        if (r & POLLPRI)
            ev |= WEFT__EV_PRI;
        if (r & (POLLOUT | POLLHUP | POLLERR))
            ev |= WEFT__EV_OUT;
        if (r & POLLERR)
            ev |= WEFT__EV_ERR;
        if (r & (POLLRDHUP | POLLHUP | POLLERR))
            ev |= WEFT__EV_HUP;
        /* Only what the entry still watches: an earlier handler may have
         * rearmed it, and a hang-up comes whatever was asked for. */
        int dirs = ev & s->watch;
        if (!dirs)
            continue;
        if (!(dirs & WEFT__EV_IN))
            ev &= ~WEFT__EV_PRI;
        ev = (ev & ~DIRS) | dirs;
        /* The edge is consumed before the call, so that a want or rearm
         * from the handler itself holds. */
        int consumed = pe->inq ? dirs : dirs & WEFT__EV_OUT;
        if (consumed)
            set_watch(st, i, s->watch & ~consumed);
        pe->on_event(pe, ev);
        calls++;
    }
    st->dispatching = false;
    if (st->dead > 0)
        compact(st);
    return calls;
}

static int pp_fd(weft_loop *l)
{
    (void)l;
    return -ENOTSUP;
}

const weft__backend weft__backend_poll = {
    .name = "poll",
    .init = pp_init,
    .fini = pp_fini,
    .arm = pp_arm,
    .disarm = pp_disarm,
    .wait = pp_wait,
    .fd = pp_fd,
    .rearm = pp_rearm,
    .want = pp_want,
};
