/*
 * resolve_ares.c - the default resolver: c-ares, driven by the loop.
 *
 * Each loop has one channel.  Its sockets go on the loop's poller through
 * c-ares's socket-state callback, and an event runs ares_process_fd in the
 * poller's dispatch.  c-ares's retries and timeouts run on a loop timer the
 * channel owns, kept at ares_timeout() after everything that moves it (a
 * query started, a socket event, the timer itself): a query ends when
 * c-ares gives up on it whether or not anyone still waits.  A lookup parks
 * until its query ends or its own deadline; one that gives up leaves its
 * query behind, marked abandoned, and the query's callback frees it when
 * c-ares ends it (at the latest when the loop is freed and the channel
 * destroyed).  A query that ends hands its slot on the wire straight to
 * the first lookup waiting for one.
 *
 * Outside any coroutine a lookup gets a channel of its own, driven with
 * poll() on the calling thread and destroyed when the call returns.
 */
#include "sock.h"
#include "names.h"

#include <ares.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct channel channel;

/* One of c-ares's sockets.  Once c-ares closes it the entry stays, dead,
 * until no poller batch can still point at it. */
typedef struct afd {
    weft__pollent pe; /* first member */
    channel *ch;
    bool want_read, want_write, dead;
    struct afd *next;
} afd;

/* Queries a loop keeps on the wire at once.  A burst of a thousand
 * overflows a server's socket buffer and the drops cost whole retry
 * timeouts; the rest wait their turn here instead. */
#ifndef WEFT_ARES_INFLIGHT
#define WEFT_ARES_INFLIGHT 128
#endif

struct channel {
    ares_channel ch;
    weft_loop *loop; /* NULL: driven by poll() on a thread */
    weft__timer tm;  /* c-ares's next timeout, on the loop */
    afd *fds, *dead;
    int inflight;     /* queries holding a slot */
    weft__waitq turn; /* lookups waiting for a slot */
};

typedef struct query {
    channel *c;
    weft__waitq waiters;
    bool done, abandoned;
    int status;
    struct ares_addrinfo *res;
} query;

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_status;

static void lib_init(void)
{
    lib_status = ares_library_init(ARES_LIB_INIT_ALL);
}

static void bury_dead(channel *c)
{
    while (c->dead) {
        afd *a = c->dead;
        c->dead = a->next;
        free(a);
    }
}

/* Keeps the channel's timer at c-ares's next timeout, stopped while c-ares
 * has no query.  Never fails: the timer is in the heap whenever c-ares has
 * a query (weft__ares_lookup makes sure of it before starting one), or was
 * taken out just before its fire calls this, and moving it needs no room. */
static void schedule(channel *c)
{
    struct timeval tv;
    if (!c->loop)
        return;
    if (!ares_timeout(c->ch, NULL, &tv)) {
        weft__timer_stop(c->loop, &c->tm);
        return;
    }
    /* ares_timeout rounds down to the millisecond: one more, or the timer
     * may fire just before the retry is due and again at once. */
    int64_t at = weft__now_ns() + (int64_t)tv.tv_sec * 1000000000 + (int64_t)tv.tv_usec * 1000 +
                 WEFT__NS_PER_MS;
    (void)weft__timer_set(c->loop, &c->tm, at);
}

static void on_timer(weft__timer *t)
{
    channel *c = (channel *)((char *)t - offsetof(channel, tm));
    bury_dead(c); /* safe here: timers fire outside the poller's dispatch */
    ares_process_fd(c->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    schedule(c);
}

static void on_fd_event(weft__pollent *pe, int ev)
{
    afd *a = (afd *)pe;
    if (a->dead)
        return;
    ares_socket_t fd = pe->fd;
    ares_channel ch = a->ch->ch;
    bool rd = ev & (WEFT__EV_IN | WEFT__EV_HUP);
    ares_process_fd(ch, rd ? fd : ARES_SOCKET_BAD, ev & WEFT__EV_OUT ? fd : ARES_SOCKET_BAD);
    /* Edge-triggered: an answer c-ares left queued would get no new edge,
     * so go on until the socket is empty (or c-ares closed it). */
    while (rd && !a->dead) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 0) <= 0)
            break;
        ares_process_fd(ch, fd, ARES_SOCKET_BAD);
    }
    schedule(a->ch);
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    channel *c = data;
    afd **pp = &c->fds;
    while (*pp && (*pp)->pe.fd != fd)
        pp = &(*pp)->next;
    afd *a = *pp;
    if (!readable && !writable) {
        if (!a)
            return;
        /* c-ares closes fd right after this: off the poller first. */
        *pp = a->next;
        if (c->loop)
            c->loop->be->disarm(c->loop, &a->pe);
        a->dead = true;
        a->next = c->dead;
        c->dead = a;
        return;
    }
    if (!a) {
        if (!(a = calloc(1, sizeof *a)))
            return; /* unwatched: the query times out */
        a->pe.fd = fd;
        a->pe.on_event = on_fd_event;
        a->ch = c;
        if (c->loop && c->loop->be->arm(c->loop, &a->pe, WEFT__EV_IN | WEFT__EV_OUT) < 0) {
            free(a);
            return;
        }
        a->next = c->fds;
        c->fds = a;
    } else if (writable && !a->want_write && c->loop) {
        /* Armed once, edge-triggered: a connected socket's write edge came
         * and went, so a new wish to write (a query queued on an idle TCP
         * connection) gets no event unless the poller is asked again. */
        c->loop->be->rearm(c->loop, &a->pe, WEFT__EV_IN | WEFT__EV_OUT);
    }
    a->want_read = readable;
    a->want_write = writable;
}

static int channel_new(channel **out, weft_loop *l)
{
    weft__names_loop *n = weft__names_loop_of(l);
    pthread_once(&lib_once, lib_init);
    if (lib_status != ARES_SUCCESS)
        return -ENOMEM;
    channel *c = weft__sys_calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->loop = l && l->current ? l : NULL;
    weft__timer_init(&c->tm, on_timer);
    struct ares_options o = {0};
    /* NOCHECKRESP: a SERVFAIL or REFUSED answer ends the lookup with that
     * code; otherwise c-ares reports both as "could not contact servers". */
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_FLAGS;
    o.flags = ARES_FLAG_NOCHECKRESP;
    o.sock_state_cb = sock_state;
    o.sock_state_cb_data = c;
    if (n && n->dns_timeout_ms > 0) {
        o.timeout = n->dns_timeout_ms;
        mask |= ARES_OPT_TIMEOUTMS;
    }
    if (n && n->dns_tries > 0) {
        o.tries = n->dns_tries;
        mask |= ARES_OPT_TRIES;
    }
    int st = ares_init_options(&c->ch, &o, mask);
    if (st == ARES_SUCCESS && n && n->dns_servers)
        st = ares_set_servers_ports_csv(c->ch, n->dns_servers);
    if (st != ARES_SUCCESS) {
        if (c->ch)
            ares_destroy(c->ch);
        free(c);
        /* The servers were checked when the loop was made: what fails
         * here is c-ares itself. */
        return st == ARES_ENOMEM ? -ENOMEM : WEFT_EAI_FAIL;
    }
    *out = c;
    return 0;
}

int weft__ares_check_servers(const char *csv)
{
    pthread_once(&lib_once, lib_init);
    if (lib_status != ARES_SUCCESS)
        return -ENOMEM;
    /* c-ares's own parser is the judge: a scratch channel, no lookups. */
    ares_channel ch;
    struct ares_options o = {0};
    int st = ares_init_options(&ch, &o, 0);
    if (st != ARES_SUCCESS)
        return st == ARES_ENOMEM ? -ENOMEM : WEFT_EAI_FAIL;
    st = *csv ? ares_set_servers_ports_csv(ch, csv) : ARES_EBADSTR;
    ares_destroy(ch);
    return st == ARES_SUCCESS ? 0 : st == ARES_ENOMEM ? -ENOMEM : -EINVAL;
}

static void channel_free(channel *c)
{
    if (c->loop)
        weft__timer_stop(c->loop, &c->tm);
    ares_destroy(c->ch); /* ends every query: abandoned ones free themselves */
    while (c->fds) {
        afd *a = c->fds;
        c->fds = a->next;
        if (c->loop)
            c->loop->be->disarm(c->loop, &a->pe);
        free(a);
    }
    bury_dead(c);
    free(c);
}

void weft__ares_loop_free(weft_loop *l, weft__names_loop *n)
{
    (void)l;
    if (n->ares)
        channel_free(n->ares);
    n->ares = NULL;
}

/* Gives a query's slot back: straight to the first lookup waiting for one,
 * whose wait then ends with 0.  A lookup that comes meanwhile cannot take
 * it first, and a waiter that gave up is off the queue and holds none. */
static void slot_release(channel *c)
{
    if (c->turn.head)
        weft__wake(c->turn.head, 0);
    else
        c->inflight--;
}

static void on_result(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    query *q = arg;
    slot_release(q->c);
    if (q->abandoned) {
        if (res)
            ares_freeaddrinfo(res);
        free(q);
        return;
    }
    q->done = true;
    q->status = status;
    q->res = res;
    weft__wake_all(&q->waiters, 0);
}

static int map_status(int st)
{
    switch (st) {
    case ARES_ENOTFOUND: return WEFT_EAI_NONAME;
    case ARES_ENODATA: return WEFT_EAI_NODATA;
    case ARES_EREFUSED: return WEFT_EAI_REFUSED;
    case ARES_ETIMEOUT: return WEFT_EAI_TIMEOUT;
    case ARES_EBADNAME: return WEFT_EAI_BADNAME;
    case ARES_EBADFAMILY: return WEFT_EAI_FAMILY;
    case ARES_ESERVICE: return WEFT_EAI_SERVICE;
    case ARES_ENOMEM: return -ENOMEM;
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION: return -ECANCELED;
    default: return WEFT_EAI_FAIL; /* SERVFAIL, bad replies, unreachable servers */
    }
}

static int collect(weft__names_result *r, query *q, bool canon)
{
    int rc = q->status == ARES_SUCCESS ? 0 : map_status(q->status);
    if (rc == 0 && q->res) {
        for (struct ares_addrinfo_node *n = q->res->nodes; n && rc == 0; n = n->ai_next)
            rc = weft__names_result_add(r, n->ai_addr, n->ai_addrlen);
        if (rc == 0 && canon) {
            /* The end of the CNAME chain, else the name itself. */
            const char *name = q->res->name;
            for (struct ares_addrinfo_cname *c = q->res->cnames; c; c = c->next)
                name = c->name;
            if (name && !(r->canon = strdup(name)))
                rc = -ENOMEM;
        }
    }
    if (rc == 0 && r->n == 0)
        rc = WEFT_EAI_NODATA;
    if (q->res)
        ares_freeaddrinfo(q->res);
    q->res = NULL;
    if (rc < 0)
        weft__names_result_free(r);
    return rc;
}

/* Milliseconds until c-ares's next retry, capped by deadline. */
static int64_t next_wake(channel *c, int64_t deadline)
{
    struct timeval tv, *t = ares_timeout(c->ch, NULL, &tv);
    if (!t)
        return deadline;
    int64_t at = weft__now_ns() + (int64_t)t->tv_sec * 1000000000 + (int64_t)t->tv_usec * 1000;
    return at < deadline ? at : deadline;
}

static void start(channel *c, query *q, const char *name, int family, bool canon)
{
    struct ares_addrinfo_hints h = {0};
    h.ai_family = family;
    h.ai_socktype = SOCK_STREAM; /* one node per address; resolve.c adds the types */
    h.ai_flags = ARES_AI_NOSORT | (canon ? ARES_AI_CANONNAME : 0);
    q->c = c;
    ares_getaddrinfo(c->ch, name, NULL, &h, on_result, q);
}

/* Drives a private channel with poll() until q is done or deadline. */
static int drive_with_poll(channel *c, query *q, int64_t deadline)
{
    while (!q->done) {
        struct pollfd p[16];
        nfds_t n = 0;
        for (afd *a = c->fds; a && n < 16; a = a->next)
            p[n++] = (struct pollfd){
                .fd = a->pe.fd,
                .events = (short)((a->want_read ? POLLIN : 0) | (a->want_write ? POLLOUT : 0))};
        int64_t at = next_wake(c, deadline);
        int64_t ms = weft__ms_left(at);
        int rc = poll(p, n, ms < 0 || ms > INT32_MAX ? -1 : (int)ms);
        if (rc < 0 && errno != EINTR)
            return -errno;
        if (rc <= 0) {
            if (weft__now_ns() >= deadline)
                return -ETIMEDOUT;
            ares_process_fd(c->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
            continue;
        }
        for (nfds_t i = 0; i < n; i++) {
            if (!p[i].revents)
                continue;
            bool rd = p[i].revents & (POLLIN | POLLERR | POLLHUP);
            ares_process_fd(c->ch, rd ? p[i].fd : ARES_SOCKET_BAD,
                            p[i].revents & POLLOUT ? p[i].fd : ARES_SOCKET_BAD);
        }
    }
    return 0;
}

int weft__ares_lookup(weft__names_result *r, const char *name, int family, bool canon,
                      int64_t deadline)
{
    weft_loop *l = weft__tls_loop;
    query *q = weft__sys_calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    int rc;
    channel *c;
    if (!l || !l->current) {
        if ((rc = channel_new(&c, l)) < 0) {
            free(q);
            return rc;
        }
        c->inflight++;
        start(c, q, name, family, canon);
        rc = drive_with_poll(c, q, deadline);
        channel_free(c); /* ends q if it is still going */
        if (rc == 0)
            rc = collect(r, q, canon);
        else if (q->res)
            ares_freeaddrinfo(q->res);
        free(q);
        return rc;
    }
    weft__names_loop *n = weft__names_loop_of(l);
    c = n->ares;
    if (!c) {
        if ((rc = channel_new(&c, l)) < 0) {
            free(q);
            return rc;
        }
        n->ares = c;
    }
    bury_dead(c); /* safe here: no poller batch is being dispatched */
    if (c->inflight < WEFT_ARES_INFLIGHT) {
        c->inflight++;
    } else {
        weft__wait w; /* woken with 0: slot_release handed us a slot */
        if ((rc = weft__park(&w, &c->turn, deadline)) < 0) {
            free(q);
            return rc;
        }
    }
    /* The timer goes in the heap before c-ares has a query to time; from
     * then on moving it never needs the heap to grow (schedule). */
    if (c->tm.heap_idx == SIZE_MAX && (rc = weft__timer_set(l, &c->tm, weft__now_ns())) < 0) {
        slot_release(c);
        free(q);
        return rc;
    }
    start(c, q, name, family, canon);
    schedule(c);
    while (!q->done) {
        weft__wait w;
        if ((rc = weft__park(&w, &q->waiters, deadline)) < 0 && !q->done) {
            q->abandoned = true; /* on_result frees it */
            return rc;
        }
    }
    rc = collect(r, q, canon);
    free(q);
    return rc;
}
