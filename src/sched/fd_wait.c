/*
 * fd_wait.c - weft_fd_wait: waiting on a descriptor weft does not own (a
 * pipe, a tty, an eventfd, another library's socket).
 *
 * A coroutine's wait puts the descriptor on the loop's poller for the wait
 * alone (arm, then disarm: two epoll_ctl), so the caller may close it as
 * soon as the call returns.  Coroutines waiting on one descriptor at once
 * share one registration: the loop keeps a table, indexed by descriptor, of
 * entries with their waiters; the first waiter arms the entry, the last
 * takes it off.  A waiter that joins an armed entry re-arms it, so that the
 * poller reports again readiness whose edge an earlier waiter consumed.
 * Outside a coroutine the thread waits in poll().
 */
#include "internal.h"

#include <limits.h>
#include <poll.h>

#define SPARE_MAX 16 /* unarmed entries kept for the next waits */

typedef struct fd_waiter {
    weft__wait w;   /* on the waiting coroutine's stack */
    int events;     /* WEFT_POLL_IN/OUT asked for */
    struct fd_waiter *next, *prev;
} fd_waiter;

typedef struct fd_entry {
    weft__pollent pe; /* first member */
    int armed;        /* WEFT__EV_* the poller watches for */
    bool stale;       /* fd was closed under its waiters: never disarm it by
                       * number, which may name another descriptor by now */
    fd_waiter *head;
    struct fd_entry *next; /* spares and orphans */
} fd_entry;

typedef struct fd_table {
    fd_entry **ent; /* by descriptor */
    size_t cap;
    fd_entry *spare;
    unsigned nspare;
    /* Entries the poller may still hold: their disarm failed because fd was
     * closed meanwhile, and if its file is open elsewhere the kernel keeps
     * the watch.  Kept, deaf, until the loop's poller is gone. */
    fd_entry *orphans;
} fd_table;

static void table_free(weft_loop *l, void *state)
{
    (void)l;
    fd_table *t = state;
    for (size_t i = 0; i < t->cap; i++)
        free(t->ent[i]); /* none: every waiter has left before the loop frees */
    for (fd_entry *lists[] = { t->spare, t->orphans }, **p = lists; p < lists + 2; p++)
        for (fd_entry *e = *p, *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(t->ent);
    free(t);
}

static weft__ext_key table_key = { "fd_wait", table_free, 0 };

static int table_of(weft_loop *l, fd_table **out)
{
    fd_table *t = weft__loop_ext(l, &table_key);
    if (!t) {
        if (!(t = weft__sys_calloc(1, sizeof *t)))
            return -ENOMEM;
        int rc = weft__loop_ext_set(l, &table_key, t);
        if (rc < 0) {
            free(t);
            return rc;
        }
    }
    *out = t;
    return 0;
}

/* Makes room for descriptor fd in t.  Returns 0 or -ENOMEM. */
static int table_reserve(fd_table *t, int fd)
{
    if ((size_t)fd < t->cap)
        return 0;
    size_t cap = t->cap ? t->cap : 64;
    while (cap <= (size_t)fd)
        cap *= 2;
    fd_entry **ent = weft__sys_realloc(t->ent, cap * sizeof *ent);
    if (!ent)
        return -ENOMEM;
    for (size_t i = t->cap; i < cap; i++)
        ent[i] = NULL;
    t->ent = ent;
    t->cap = cap;
    return 0;
}

static int to_ev(int events)
{
    return (events & WEFT_POLL_IN ? WEFT__EV_IN : 0) | (events & WEFT_POLL_OUT ? WEFT__EV_OUT : 0);
}

/* The poller maps an error or hang-up to both directions already. */
static void on_fd_event(weft__pollent *pe, int ev)
{
    fd_entry *e = (fd_entry *)pe;
    int ready = (ev & WEFT__EV_IN ? WEFT_POLL_IN : 0) | (ev & WEFT__EV_OUT ? WEFT_POLL_OUT : 0);
    for (fd_waiter *w = e->head; w; w = w->next)
        if (!w->w.woken && (w->events & ready))
            weft__wake(&w->w, w->events & ready);
}

static void on_orphan_event(weft__pollent *pe, int ev)
{
    (void)pe;
    (void)ev;
}

/* Entries whose descriptor was closed under them: their waiters leave
 * with -EBADF, and the table forgets them. */
static void make_stale(fd_table *t, fd_entry *e)
{
    e->stale = true;
    t->ent[e->pe.fd] = NULL;
    for (fd_waiter *w = e->head; w; w = w->next)
        if (!w->w.woken)
            weft__wake(&w->w, -EBADF);
}

static void entry_put(fd_table *t, fd_entry *e)
{
    if (t->nspare >= SPARE_MAX) {
        free(e);
        return;
    }
    e->next = t->spare;
    t->spare = e;
    t->nspare++;
}

/* Takes the last waiter's entry off the poller, or keeps it deaf if the
 * poller may still hold it. */
static void entry_done(weft_loop *l, fd_table *t, fd_entry *e)
{
    if (!e->stale) {
        t->ent[e->pe.fd] = NULL;
        if (l->be->disarm(l, &e->pe) == 0) {
            entry_put(t, e);
            return;
        }
    }
    e->pe.on_event = on_orphan_event;
    e->next = t->orphans;
    t->orphans = e;
}

/* Finds or makes fd's entry, armed for at least want.  Returns 0, 1 (fd
 * is always ready: a regular file or directory) or an error. */
static int entry_get(weft_loop *l, fd_table *t, int fd, int want, fd_entry **out)
{
    fd_entry *e = (size_t)fd < t->cap ? t->ent[fd] : NULL;
    int rc;
    if (e) {
        /* Re-arming asks the poller to report what holds now, so a
         * readiness whose edge woke (and was consumed by) earlier waiters is
         * seen by this one too. */
        rc = l->be->rearm(l, &e->pe, e->armed | want);
        if (rc == 0) {
            e->armed |= want;
            *out = e;
            return 0;
        }
        if (rc != -ENOENT && rc != -EBADF)
            return rc;
        /* The watch is gone: fd was closed, and the number may name
         * another file by now. */
        make_stale(t, e);
        if (rc == -EBADF)
            return rc;
    }
    if ((e = t->spare)) {
        t->spare = e->next;
        t->nspare--;
    } else if (!(e = weft__sys_malloc(sizeof *e))) {
        return -ENOMEM;
    }
    *e = (fd_entry){ .pe = { .fd = fd, .on_event = on_fd_event }, .armed = want };
    if ((rc = l->be->arm(l, &e->pe, want)) < 0) {
        entry_put(t, e);
        return rc == -EPERM ? 1 : rc; /* epoll refuses what poll() calls always ready */
    }
    /* Only a descriptor the poller took makes the table grow. */
    if ((rc = table_reserve(t, fd)) < 0) {
        l->be->disarm(l, &e->pe);
        entry_put(t, e);
        return rc;
    }
    t->ent[fd] = e;
    *out = e;
    return 0;
}

static int wait_in_loop(weft_loop *l, int fd, int events, int64_t deadline)
{
    fd_table *t;
    fd_entry *e;
    int rc = table_of(l, &t);
    if (rc < 0)
        return rc;
    if ((rc = entry_get(l, t, fd, to_ev(events), &e)) != 0)
        return rc > 0 ? events : rc;
    fd_waiter me = { .events = events, .next = e->head };
    if (e->head)
        e->head->prev = &me;
    e->head = &me;
    rc = weft__park(&me.w, NULL, deadline);
    if (me.prev)
        me.prev->next = me.next;
    else
        e->head = me.next;
    if (me.next)
        me.next->prev = me.prev;
    if (!e->head)
        entry_done(l, t, e);
    return rc;
}

/* The thread's wait, and a coroutine's that must not wait (timeout 0). */
static int wait_in_poll(int fd, int events, int64_t deadline)
{
    struct pollfd p = { .fd = fd };
    if (events & WEFT_POLL_IN)
        p.events |= POLLIN | POLLPRI | POLLRDHUP;
    if (events & WEFT_POLL_OUT)
        p.events |= POLLOUT;
    for (;;) {
        int ms = -1;
        if (deadline != WEFT__NEVER) {
            int64_t left = deadline - weft__now_ns();
            int64_t m = left <= 0 ? 0 : (left + WEFT__NS_PER_MS - 1) / WEFT__NS_PER_MS;
            ms = m > INT_MAX ? INT_MAX : (int)m;
        }
        int n = poll(&p, 1, ms);
        if (n > 0) {
            if (p.revents & POLLNVAL)
                return -EBADF;
            int ready = 0;
            if (p.revents & (POLLIN | POLLPRI | POLLRDHUP | POLLHUP | POLLERR))
                ready |= WEFT_POLL_IN;
            if (p.revents & (POLLOUT | POLLHUP | POLLERR))
                ready |= WEFT_POLL_OUT;
            return ready & events ? ready & events : events;
        }
        if (n == 0 && ms == 0)
            return -ETIMEDOUT;
        if (n < 0 && errno != EINTR)
            return -errno; /* ENOMEM */
    }
}

int weft_fd_wait(int fd, int events, int64_t timeout_ms)
{
    events &= WEFT_POLL_IN | WEFT_POLL_OUT;
    if (fd < 0)
        return -EBADF;
    if (!events)
        return -EINVAL;
    int64_t deadline = weft__deadline(timeout_ms);
    weft_loop *l = weft__tls_loop;
    if (!l || !l->current || (deadline != WEFT__NEVER && deadline <= weft__now_ns()))
        return wait_in_poll(fd, events, deadline);
    return wait_in_loop(l, fd, events, deadline);
}
