/*
 * connpool.c - weft_connpool: TCP and TLS connections kept idle per host
 * (name, port, TLS server name) for the next get, with a limit of open
 * connections per host that gets wait on, first come first served.
 *
 * What one loop keeps is a part, hung off the loop's state
 * (weft__loop_ext): its hosts, a table of every connection it has made
 * (idle or checked out) by handle, so a put finds its record at once, and
 * its idle connections in the order they came back, oldest first, for the
 * expiry timer.  Each host counts its open slots (idle, checked out, being
 * made); a slot or a connection that comes back goes straight to the
 * first waiting get, so a newcomer never passes a waiter.
 *
 * A connection handed out must not be one the peer has closed while it
 * sat idle (golang/go#22158).  Two things see to it.  Every get checks
 * the one it takes with a recv(MSG_PEEK) that does not wait: one syscall,
 * which sees a FIN, an RST or bytes the peer sent, whether or not the loop
 * has polled since.  And idle sockets stay on the loop's poller with the
 * pool's event handler in front of the socket core's: an input edge on
 * one (the peer's FIN, RST or data) runs a sweep at the same step, which
 * closes those the peer has left, so their descriptors come back without
 * waiting for a get or the expiry.  That costs nothing while nothing
 * happens: no coroutine per connection, no periodic timer.
 *
 * Loops.  Every loop that uses a pool has a part of its own, found in
 * the loop's list, never through the pool, so a get or a put touches no
 * state another thread writes: a socket belongs to its loop, and so do
 * the part's connections, waiters, limits and expiry timer.  The loops
 * that may have parts are the pool's domain: the first loop that used it,
 * or, if that loop is one of weft_main's several, every loop of its group
 * (other loops get -EXDEV).  The pool's lock guards only the set of parts
 * and the domain, which is let go once the last part has gone.  Stats are
 * the pool's, atomic, summed over every part.
 *
 * Lifetimes.  A get holds its part (calls) and its host (users) for its
 * whole run, waits and connects included.  weft_connpool_free closes the
 * caller's part's idle connections and sends its waiters away, and asks
 * every other loop of the group to do the same with its part at its next
 * step (a call that keeps the group running until it has run).  A part
 * goes once freed and without connections or calls; the pool's memory
 * goes with the last part (refs: the user's, and one per part).  The
 * loop's free hook closes what is idle and forgets what is checked out.
 */
#include "srv/connpool.h"
#include "net/sock.h"
#ifdef WEFT_WITH_TLS
#include "tls/tls.h"
#endif

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define IDLE_PER_HOST_DEFAULT 16
#define IDLE_MS_DEFAULT 60000
#define IDLE_MS_MAX (INT64_MAX / 4 / WEFT__NS_PER_MS) /* longer is never */
#define HOST_BUCKETS_MIN 16
#define TABLE_MIN 16
#define SERVERNAME_MAX 255

#define CONTAINER_OF(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

typedef struct cp_conn cp_conn;
typedef struct cp_host cp_host;
typedef struct cp_part cp_part;
typedef struct cp_loop cp_loop;
typedef struct cp_wait cp_wait;

struct cp_conn {
    weft_sock *h;
    cp_host *host;
    int64_t since; /* ns: when it came back (idle ones) */
    bool idle;
    cp_conn *next, *prev;   /* its host's idle list (newest first), or busy list */
    cp_conn *lnext, *lprev; /* the part's idle ones, oldest first */
};

/* What a waiting get was given. */
enum { GOT_NONE, GOT_CONN, GOT_SLOT, GOT_GONE };

/* A get waiting at max_per_host, on its own stack. */
struct cp_wait {
    weft__wait park; /* a coroutine's */
    weft__co *co;    /* NULL: a thread running the loop's steps */
    cp_wait *next, *prev;
    bool linked;
    int got;
    cp_conn *conn; /* GOT_CONN: checked out for it */
};

struct cp_host {
    cp_host *chain;
    uint64_t hash;
    char *name; /* as given to get */
    char *sni;  /* the TLS server name when it is not name, else NULL */
    int port;
    cp_conn *idle, *busy;
    size_t nidle;
    size_t open;    /* slots taken: idle, checked out, being made */
    unsigned users; /* gets running for it: it stays while any does */
    cp_wait *wq, *wq_tail;
};

struct cp_part {
    weft_connpool *pool;
    weft_loop *loop;
    cp_loop *home;
    cp_part *next, *prev; /* the loop's parts */
    cp_host **buckets;
    size_t nbuckets, nhosts;
    cp_conn **table; /* every connection, by handle (linear probing) */
    size_t tcap, tlen, treserved;
    cp_conn *oldest, *newest; /* idle ones, in the order they came back */
    size_t nidle, nconn, connecting, waiting;
    unsigned calls;     /* gets and frees under way: it stays while any is */
    weft__timer expiry; /* the oldest idle connection's time */
    cp_part *pnext, *pprev; /* the pool's parts (under its lock) */
    bool free_queued;       /* atomic: free_post is on its way to this loop */
    weft__post free_post;   /* weft_connpool_free from another loop */
};

/* A loop's parts, and the sweep an event on an idle socket sets off. */
struct cp_loop {
    weft_loop *loop;
    cp_part *head;
    weft__timer check;
};

struct weft_connpool {
    weft_tls_ctx *tls;
    bool owns_tls;             /* tls goes with the pool (weft__connpool_own_tls) */
    size_t max_idle, max_open; /* max_open 0: no limit */
    int64_t idle_ns;           /* WEFT__NEVER: never */
    bool freed;                /* atomic */
    pthread_mutex_t lock;      /* what follows, up to the stats */
    weft_loop *home;           /* the domain: a loop alone, */
    weft__group *group;        /* or a group's loops; both NULL: none yet */
    cp_part *parts;
    unsigned refs;             /* the user's, and one per part */
    /* Stats, atomic: every part's summed. */
    size_t nidle, nconn, connecting, waiting;
    uint64_t connects, reuses, stale, expired;
};

static void stat_add(size_t *c, long d)
{
    __atomic_add_fetch(c, (size_t)d, __ATOMIC_RELAXED);
}

static void count(uint64_t *c)
{
    __atomic_add_fetch(c, 1, __ATOMIC_RELAXED);
}

static bool is_freed(const weft_connpool *p)
{
    return __atomic_load_n(&p->freed, __ATOMIC_ACQUIRE);
}

static void loop_gone(weft_loop *l, void *state);
static weft__ext_key conns_key = {"connpools", loop_gone, 0};

/* ---- watching idle sockets --------------------------------------------------------- */

/* The socket core's event handler, learnt from the first socket watched. */
static void (*sock_event)(weft__pollent *pe, int ev);

static void on_idle_event(weft__pollent *pe, int ev)
{
    __atomic_load_n(&sock_event, __ATOMIC_RELAXED)(pe, ev);
    if (!(ev & (WEFT__EV_IN | WEFT__EV_HUP | WEFT__EV_ERR)))
        return;
    /* Fires at this step, right after the poller's events: see check_fire. */
    weft_loop *l = weft__tls_loop;
    cp_loop *cl = weft__loop_ext(l, &conns_key);
    if (cl)
        weft__timer_set(l, &cl->check, 0);
}

/* Puts the pool's handler in front of s's while it sits idle.  Without
 * the poller (no memory for its entry) only the get's check is left. */
static void watch(weft__sock *s, weft_loop *l)
{
    if (s->loop != l)
        return;
    if (!s->armed) {
        if (l->be->arm(l, &s->pe, WEFT__EV_IN | WEFT__EV_OUT) < 0)
            return;
        s->armed = true;
    }
    /* The last reader consumed the input edge: a backend that reports
     * events once (poll) must be asked for the next one. */
    if (l->be->want)
        l->be->want(l, &s->pe, WEFT__EV_IN);
    void (*f)(weft__pollent *, int) = __atomic_load_n(&sock_event, __ATOMIC_RELAXED);
    if (!f && s->pe.on_event != on_idle_event)
        __atomic_store_n(&sock_event, f = s->pe.on_event, __ATOMIC_RELAXED);
    if (s->pe.on_event == f)
        s->pe.on_event = on_idle_event;
}

static void unwatch(weft__sock *s)
{
    if (s->pe.on_event == on_idle_event)
        s->pe.on_event = __atomic_load_n(&sock_event, __ATOMIC_RELAXED);
}

/* ---- is a connection fit to use ---------------------------------------------------- */

#ifdef WEFT_WITH_TLS
static bool is_tls(const weft__sock *s)
{
    return s->ops == &weft__tls_ops;
}

/* The TLS session has nothing for the application and can still send. */
static bool tls_clean(const weft__sock *s)
{
    const weft__tls *t = s->layer;
    return !t->fatal && !t->got_close && !t->shut_rd && !t->shut_wr && !t->out_len &&
           !SSL_has_pending(t->ssl);
}

/* Bytes arrived on an idle TLS connection: lets the layer take them in
 * (session tickets come after the handshake) and says whether anything is
 * left for the application, without waiting: the layer's poll, its
 * deadline already past, ends with -ETIMEDOUT when nothing is readable.
 * A cancel pending for the caller would end it first, and be used up:
 * it is kept for the caller's next call instead. */
static bool tls_quiet(weft__sock *s)
{
    if (!tls_clean(s))
        return false;
    weft__co *co = weft__current();
    bool pending = co && co->cancel_pending;
    if (co)
        co->cancel_pending = false;
    int rc = s->ops->poll(s, WEFT_POLL_IN, 0);
    if (pending)
        co->cancel_pending = true;
    /* -ECANCELED here: the loop is being freed, after the same check. */
    return (rc == -ETIMEDOUT || rc == -ECANCELED) && tls_clean(s);
}
#else
static bool is_tls(const weft__sock *s)
{
    (void)s;
    return false;
}
#endif

/* Nothing to read and the peer still there, asked of the kernel without
 * waiting.  An idle TLS session holds nothing (put and the sweep make
 * sure), so the descriptor's own answer does for it too, unless bytes
 * came: then the layer looks at them. */
static bool quiet(weft__sock *s)
{
    if (s->rhup || weft__sock_rx_has(s))
        return false; /* the poller saw the FIN, or an error; bytes came */
    char c;
    ssize_t r;
    do
        r = weft__sys_recv(s->pe.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        s->rready = false; /* drained: the next edge is news */
        return true;
    }
    if (r <= 0)
        return false; /* FIN, or an error (the RST's ECONNRESET) */
#ifdef WEFT_WITH_TLS
    if (is_tls(s))
        return tls_quiet(s);
#endif
    return false;
}

/* Fit to be kept, as it comes back: still established both ways (neither
 * side shut down, no reset), nothing unread, no call of another coroutine
 * still on it. */
static bool keepable(weft__sock *s)
{
    if (s->rhup || s->rbusy || s->wbusy || !(s->flags & WEFT__SOCK_STREAM))
        return false;
    /* Bytes or an end its read-ahead took mean the peer spoke.  The
     * read-ahead stays armed: the checks here only peek at the descriptor,
     * and what comes while it sits idle is queued there and reported to
     * the watch as an edge. */
    if (weft__sock_rx_has(s))
        return false;
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (getsockopt(s->pe.fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        ti.tcpi_state != TCP_ESTABLISHED)
        return false;
    if (s->ops) {
#ifdef WEFT_WITH_TLS
        if (!is_tls(s) || !tls_clean(s))
            return false;
#else
        return false;
#endif
    }
    /* Not ready since the last receive drained it: whatever comes later
     * brings an edge, which the watch sees. */
    return !s->rready || quiet(s);
}

/* Closes a connection the pool lets go of.  dead: the peer is gone or
 * misbehaved, nothing is owed to it, and nothing may wait (a TLS one is
 * reset).  in_loop: from a loop timer, where nothing may wait either (a
 * TLS close_notify is left to a coroutine of close_later.c).  Otherwise
 * in the caller, as weft_close. */
static void close_sock(weft__sock *s, bool dead, bool in_loop)
{
    unwatch(s);
    if (is_tls(s) && (dead || in_loop)) {
        if (dead || weft_close_after(weft__sock_handle(s), 1) < 0)
            weft__sock_close(s, true);
        return;
    }
    weft__sock_close(s, false);
}

/* ---- the table of connections, by handle ------------------------------------------- */

static size_t slot_hash(const weft_sock *h, size_t cap)
{
    uint64_t v = (uint64_t)(uintptr_t)h * 0x9E3779B97F4A7C15ull;
    return (size_t)(v >> 32) & (cap - 1);
}

static size_t table_index(const cp_part *pt, const weft_sock *h)
{
    if (!pt->tcap)
        return SIZE_MAX;
    for (size_t i = slot_hash(h, pt->tcap);; i = (i + 1) & (pt->tcap - 1)) {
        if (!pt->table[i])
            return SIZE_MAX;
        if (pt->table[i]->h == h)
            return i;
    }
}

static void table_place(cp_conn **table, size_t cap, cp_conn *c)
{
    size_t i = slot_hash(c->h, cap);
    while (table[i])
        i = (i + 1) & (cap - 1);
    table[i] = c;
}

/* Makes sure one more connection will fit, so that nothing can fail once
 * it is made.  Returns 0 or -ENOMEM. */
static int table_reserve(cp_part *pt)
{
    size_t need = pt->tlen + pt->treserved + 1;
    if (need * 2 > pt->tcap) {
        size_t cap = pt->tcap ? pt->tcap : TABLE_MIN;
        while (need * 2 > cap)
            cap *= 2;
        cp_conn **t = weft__sys_calloc(cap, sizeof *t);
        if (!t)
            return -ENOMEM;
        for (size_t i = 0; i < pt->tcap; i++)
            if (pt->table[i])
                table_place(t, cap, pt->table[i]);
        free(pt->table);
        pt->table = t;
        pt->tcap = cap;
    }
    pt->treserved++;
    return 0;
}

static void table_insert(cp_part *pt, cp_conn *c)
{
    pt->treserved--;
    pt->tlen++;
    table_place(pt->table, pt->tcap, c);
}

/* Removes entry i, moving later entries of its run back into the gap. */
static void table_remove(cp_part *pt, size_t i)
{
    size_t mask = pt->tcap - 1;
    pt->table[i] = NULL;
    pt->tlen--;
    for (size_t j = (i + 1) & mask; pt->table[j]; j = (j + 1) & mask) {
        size_t k = slot_hash(pt->table[j]->h, pt->tcap);
        /* Entry j stays if its home k lies cyclically in (i, j]. */
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            pt->table[i] = pt->table[j];
            pt->table[j] = NULL;
            i = j;
        }
    }
}

/* ---- hosts ------------------------------------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t host_hash(const char *name, int port, const char *sni)
{
    uint64_t h = fnv(0xcbf29ce484222325ull, name, strlen(name) + 1);
    h = fnv(h, &port, sizeof port);
    return sni ? fnv(h, sni, strlen(sni) + 1) : h;
}

static bool same_sni(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static cp_host *host_find(const cp_part *pt, const char *name, int port, const char *sni,
                          uint64_t hash)
{
    if (!pt->nbuckets)
        return NULL;
    for (cp_host *h = pt->buckets[hash & (pt->nbuckets - 1)]; h; h = h->chain)
        if (h->hash == hash && h->port == port && strcmp(h->name, name) == 0 &&
            same_sni(h->sni, sni))
            return h;
    return NULL;
}

/* More buckets, once there are more hosts than buckets; without the
 * memory the chains just grow. */
static void host_rehash(cp_part *pt)
{
    size_t n = pt->nbuckets ? pt->nbuckets * 2 : HOST_BUCKETS_MIN;
    cp_host **b = weft__sys_calloc(n, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < pt->nbuckets; i++) {
        for (cp_host *h = pt->buckets[i], *next; h; h = next) {
            next = h->chain;
            h->chain = b[h->hash & (n - 1)];
            b[h->hash & (n - 1)] = h;
        }
    }
    free(pt->buckets);
    pt->buckets = b;
    pt->nbuckets = n;
}

/* The host entry for the key, made if need be.  NULL: no memory. */
static cp_host *host_get(cp_part *pt, const char *name, int port, const char *sni)
{
    uint64_t hash = host_hash(name, port, sni);
    cp_host *h = host_find(pt, name, port, sni, hash);
    if (h)
        return h;
    if (pt->nhosts >= pt->nbuckets)
        host_rehash(pt);
    if (!pt->nbuckets)
        return NULL;
    size_t nlen = strlen(name) + 1, slen = sni ? strlen(sni) + 1 : 0;
    if (!(h = weft__sys_calloc(1, sizeof *h + nlen + slen)))
        return NULL;
    h->hash = hash;
    h->port = port;
    h->name = memcpy((char *)(h + 1), name, nlen);
    if (sni)
        h->sni = memcpy(h->name + nlen, sni, slen);
    cp_host **b = &pt->buckets[hash & (pt->nbuckets - 1)];
    h->chain = *b;
    *b = h;
    pt->nhosts++;
    return h;
}

/* Frees h once nothing refers to it: no slot taken, no get running. */
static void host_release(cp_part *pt, cp_host *h)
{
    if (h->open || h->users)
        return;
    cp_host **p = &pt->buckets[h->hash & (pt->nbuckets - 1)];
    while (*p != h)
        p = &(*p)->chain;
    *p = h->chain;
    pt->nhosts--;
    free(h);
}

/* ---- lists ------------------------------------------------------------------------- */

static void list_push(cp_conn **head, cp_conn *c)
{
    c->prev = NULL;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
}

static void list_unlink(cp_conn **head, cp_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
}

static void idle_add(cp_part *pt, cp_conn *c)
{
    cp_host *h = c->host;
    c->idle = true;
    c->since = weft__now_ns();
    list_push(&h->idle, c);
    h->nidle++;
    c->lnext = NULL;
    c->lprev = pt->newest;
    if (pt->newest)
        pt->newest->lnext = c;
    else
        pt->oldest = c;
    pt->newest = c;
    pt->nidle++;
    stat_add(&pt->pool->nidle, 1);
}

static void idle_remove(cp_part *pt, cp_conn *c)
{
    cp_host *h = c->host;
    c->idle = false;
    list_unlink(&h->idle, c);
    h->nidle--;
    if (c->lprev)
        c->lprev->lnext = c->lnext;
    else
        pt->oldest = c->lnext;
    if (c->lnext)
        c->lnext->lprev = c->lprev;
    else
        pt->newest = c->lprev;
    c->lnext = c->lprev = NULL;
    pt->nidle--;
    stat_add(&pt->pool->nidle, -1);
}

/* Drops c's record (off every list already): its slot is still taken. */
static void forget(cp_part *pt, cp_conn *c)
{
    size_t i = table_index(pt, c->h);
    if (i != SIZE_MAX)
        table_remove(pt, i);
    pt->nconn--;
    stat_add(&pt->pool->nconn, -1);
    free(c);
}

/* ---- waiting for a slot ------------------------------------------------------------ */

static void wait_link(cp_part *pt, cp_host *h, cp_wait *w)
{
    w->next = NULL;
    w->prev = h->wq_tail;
    if (h->wq_tail)
        h->wq_tail->next = w;
    else
        h->wq = w;
    h->wq_tail = w;
    w->linked = true;
    pt->waiting++;
    stat_add(&pt->pool->waiting, 1);
}

static void wait_unlink(cp_part *pt, cp_host *h, cp_wait *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        h->wq = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        h->wq_tail = w->prev;
    w->linked = false;
    pt->waiting--;
    stat_add(&pt->pool->waiting, -1);
}

/* Hands what = GOT_CONN (c), GOT_SLOT or GOT_GONE to the first get still
 * waiting for h.  Returns false if none is. */
static bool give(cp_part *pt, cp_host *h, int what, cp_conn *c)
{
    cp_wait *w;
    while ((w = h->wq)) {
        wait_unlink(pt, h, w);
        if (w->co && w->park.woken)
            continue; /* leaving already (deadline, cancel): it takes nothing */
        w->got = what;
        w->conn = c;
        if (w->co)
            weft__wake(&w->park, 0);
        return true;
    }
    return false;
}

/* A slot of h comes free: to the first waiter, or back to the host. */
static void release_slot(cp_part *pt, cp_host *h)
{
    if (give(pt, h, GOT_SLOT, NULL))
        return;
    h->open--;
    host_release(pt, h);
}

/* Outside a coroutine, on the loop's thread: the loop's own coroutines are
 * the only ones that can put a connection back, so run them. */
static int wait_thread(cp_wait *w, int64_t deadline)
{
    weft_loop *l = weft__tls_loop;
    while (w->got == GOT_NONE) {
        int64_t ms = -1;
        if (deadline != WEFT__NEVER) {
            int64_t left = deadline - weft__now_ns();
            if (left <= 0)
                return -ETIMEDOUT;
            ms = (left + WEFT__NS_PER_MS - 1) / WEFT__NS_PER_MS;
        }
        if (l->alive == 0)
            return -EDEADLK;
        int rc = weft_loop_poll(l, ms);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Waits until a slot or a connection of h is handed over (w->got), the
 * deadline, or a cancel.  Returns 0 or the wait's error; in every case w
 * is off the queue when it returns. */
static int wait_turn(cp_part *pt, cp_host *h, cp_wait *w, int64_t deadline)
{
    w->co = weft__current();
    w->park.woken = false;
    w->got = GOT_NONE;
    w->conn = NULL;
    wait_link(pt, h, w);
    int rc = w->co ? weft__park(&w->park, NULL, deadline) : wait_thread(w, deadline);
    if (w->linked)
        wait_unlink(pt, h, w);
    return w->got != GOT_NONE ? 0 : rc < 0 ? rc : -ETIMEDOUT;
}

/* ---- parts ------------------------------------------------------------------------- */

static void expiry_fire(weft__timer *t);
static void check_fire(weft__timer *t);

/* p's part on l, found in l's list, which only l's thread reads and
 * writes; the one found goes to the front, for the next call. */
static cp_part *part_find(const weft_connpool *p, weft_loop *l)
{
    cp_loop *cl = weft__loop_ext(l, &conns_key);
    cp_part *pt = cl ? cl->head : NULL;
    while (pt && pt->pool != p)
        pt = pt->next;
    if (pt && pt != cl->head) {
        pt->prev->next = pt->next;
        if (pt->next)
            pt->next->prev = pt->prev;
        pt->prev = NULL;
        pt->next = cl->head;
        cl->head->prev = pt;
        cl->head = pt;
    }
    return pt;
}

/* Whether l may keep a part of p (under p's lock): p has no domain yet,
 * or l is its loop alone, or one of its group. */
static bool in_domain(const weft_connpool *p, const weft_loop *l)
{
    if (!p->home && !p->group)
        return true;
    return p->home == l || (p->group && l->group == p->group);
}

static void pool_destroy(weft_connpool *p)
{
#ifdef WEFT_WITH_TLS
    if (p->owns_tls)
        weft_tls_ctx_free(p->tls);
#endif
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* The part of p this thread's loop keeps (*out NULL if none, unless make).
 * Returns 0, -EXDEV (outside p's domain), -EBADF (make, after
 * weft_connpool_free), -ENOMEM. */
static int part_of(weft_connpool *p, cp_part **out, bool make)
{
    weft_loop *l = weft__tls_loop;
    if (!l) {
        *out = NULL;
        return 0;
    }
    if ((*out = part_find(p, l)))
        return 0;
    cp_loop *cl = weft__loop_ext(l, &conns_key);
    if (make && !cl) {
        if (!(cl = weft__sys_calloc(1, sizeof *cl)))
            return -ENOMEM;
        cl->loop = l;
        weft__timer_init(&cl->check, check_fire);
        if (weft__loop_ext_set(l, &conns_key, cl) < 0) {
            free(cl);
            return -ENOMEM;
        }
    }
    cp_part *pt = make ? weft__sys_calloc(1, sizeof *pt) : NULL;
    if (make && !pt)
        return -ENOMEM;
    if (pt) {
        /* Set before a free on another thread can see it in p's list. */
        pt->pool = p;
        pt->loop = l;
        pt->home = cl;
        weft__timer_init(&pt->expiry, expiry_fire);
    }
    pthread_mutex_lock(&p->lock);
    int rc = !in_domain(p, l) ? -EXDEV : make && is_freed(p) ? -EBADF : 0;
    if (rc < 0 || !make) {
        pthread_mutex_unlock(&p->lock);
        free(pt);
        return rc;
    }
    if (l->nloops > 1)
        p->group = l->group;
    else
        p->home = l;
    pt->pnext = p->parts;
    if (p->parts)
        p->parts->pprev = pt;
    p->parts = pt;
    p->refs++;
    pthread_mutex_unlock(&p->lock);
    pt->next = cl->head;
    if (cl->head)
        cl->head->prev = pt;
    cl->head = pt;
    *out = pt;
    return 0;
}

/* Drops a reference to p: the user's, or a part's.  The last frees it. */
static void pool_unref_locked(weft_connpool *p)
{
    bool last = --p->refs == 0;
    pthread_mutex_unlock(&p->lock);
    if (last)
        pool_destroy(p);
}

/* Frees pt, which holds no connection any more, and with the last part
 * and the user's reference gone, the pool. */
static void part_free(cp_part *pt)
{
    weft_connpool *p = pt->pool;
    weft__timer_stop(pt->loop, &pt->expiry);
    if (pt->prev)
        pt->prev->next = pt->next;
    else
        pt->home->head = pt->next;
    if (pt->next)
        pt->next->prev = pt->prev;
    for (size_t i = 0; i < pt->nbuckets; i++) {
        for (cp_host *h = pt->buckets[i], *next; h; h = next) {
            next = h->chain;
            free(h);
        }
    }
    free(pt->buckets);
    free(pt->table);
    pthread_mutex_lock(&p->lock);
    if (pt->pprev)
        pt->pprev->pnext = pt->pnext;
    else
        p->parts = pt->pnext;
    if (pt->pnext)
        pt->pnext->pprev = pt->pprev;
    if (!p->parts)
        p->home = NULL, p->group = NULL; /* the next loop to use it may take it */
    free(pt);
    pool_unref_locked(p);
}

/* After weft_connpool_free: the part goes once the last connection is
 * back, the last call has left and no free is on its way to it. */
static void part_check(cp_part *pt)
{
    weft_connpool *p = pt->pool;
    if (!is_freed(p) || pt->nconn || pt->calls ||
        __atomic_load_n(&pt->free_queued, __ATOMIC_ACQUIRE))
        return;
    part_free(pt);
}

/* Sets the expiry timer for the oldest idle connection, if any. */
static void arm_expiry(cp_part *pt)
{
    int64_t idle_ns = pt->pool->idle_ns;
    if (!pt->oldest || idle_ns == WEFT__NEVER) {
        weft__timer_stop(pt->loop, &pt->expiry);
        return;
    }
    /* Without room in the timer heap, expiry waits for the next put. */
    weft__timer_set(pt->loop, &pt->expiry, pt->oldest->since + idle_ns);
}

static void expiry_fire(weft__timer *t)
{
    cp_part *pt = CONTAINER_OF(t, cp_part, expiry);
    weft_connpool *p = pt->pool;
    int64_t now = weft__now_ns();
    cp_conn *c;
    while ((c = pt->oldest) && c->since + p->idle_ns <= now) {
        cp_host *h = c->host;
        weft__sock *s;
        int rc = weft__sock_enter(c->h, &s);
        idle_remove(pt, c);
        forget(pt, c);
        release_slot(pt, h);
        count(&p->expired);
        if (rc == 0)
            close_sock(s, false, true);
    }
    arm_expiry(pt);
}

/* An input edge on an idle socket: close those whose peer has left
 * (FIN, RST, or bytes nobody asked for).  In the loop, right after the
 * poller's events; only sockets with news are asked. */
static void check_fire(weft__timer *t)
{
    cp_loop *cl = CONTAINER_OF(t, cp_loop, check);
    for (cp_part *pt = cl->head; pt; pt = pt->next) {
        for (cp_conn *c = pt->oldest, *next; c; c = next) {
            next = c->lnext;
            weft__sock *s = NULL;
            int rc = weft__sock_enter(c->h, &s);
            if (rc == 0 && !s->rready && !s->rhup)
                continue;
            if (rc == 0 && quiet(s))
                continue;
            cp_host *h = c->host;
            idle_remove(pt, c);
            forget(pt, c);
            release_slot(pt, h);
            count(&pt->pool->stale);
            if (rc == 0)
                close_sock(s, true, true);
        }
    }
}

/* The loop is being freed: its coroutines have all finished, its poller is
 * still open.  Idle connections are closed; those checked out are the
 * caller's, and stay open. */
static void loop_gone(weft_loop *l, void *state)
{
    cp_loop *cl = state;
    weft__timer_stop(l, &cl->check);
    while (cl->head) {
        cp_part *pt = cl->head;
        cp_conn *c;
        while ((c = pt->oldest)) {
            /* The sockets' own state may have let go of them already. */
            weft__sock_slot *e = weft__sock_slot_of(c->h);
            weft__sock *s = e ? e->s : NULL;
            idle_remove(pt, c);
            forget(pt, c);
            if (s) {
                unwatch(s);
                weft__sock_close(s, false);
            }
        }
        for (size_t i = 0; i < pt->nbuckets; i++) {
            for (cp_host *h = pt->buckets[i]; h; h = h->chain) {
                while ((c = h->busy)) {
                    list_unlink(&h->busy, c);
                    forget(pt, c);
                }
            }
        }
        part_free(pt); /* may free the pool */
    }
    free(cl);
}

/* ---- making and getting connections ------------------------------------------------ */

int weft_connpool_new(weft_connpool **out, const weft_connpool_opts *o)
{
    weft_connpool_opts d = o ? *o : (weft_connpool_opts){0};
    if (!out || d.max_idle_per_host < 0 || d.max_per_host < 0 || d.idle_timeout_ms < -1)
        return -EINVAL;
    if (d.tls) {
#ifdef WEFT_WITH_TLS
        if (d.tls->role != WEFT_TLS_CLIENT)
            return -EINVAL;
#else
        return -ENOTSUP;
#endif
    }
    weft_connpool *p = weft__sys_calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    p->refs = 1;
    p->tls = d.tls;
    p->max_idle = d.max_idle_per_host ? (size_t)d.max_idle_per_host : IDLE_PER_HOST_DEFAULT;
    p->max_open = (size_t)d.max_per_host;
    int64_t ms = d.idle_timeout_ms ? d.idle_timeout_ms : IDLE_MS_DEFAULT;
    p->idle_ns = ms < 0 || ms > IDLE_MS_MAX ? WEFT__NEVER : ms * WEFT__NS_PER_MS;
    *out = p;
    return 0;
}

static int connect_to(const weft_connpool *p, const cp_host *h, weft_sock **out, int64_t ms)
{
#ifdef WEFT_WITH_TLS
    if (p->tls) {
        if (!h->sni)
            return weft_tls_connect(out, h->name, h->port, p->tls, ms);
        int64_t deadline = weft__deadline(ms);
        weft_sock *s;
        int rc = weft_tcp_connect(&s, h->name, h->port, ms);
        if (rc < 0)
            return rc;
        if ((rc = weft_tls_wrap(out, s, p->tls, h->sni, weft__ms_left(deadline))) < 0)
            weft_close(s);
        return rc;
    }
#else
    (void)p;
#endif
    return weft_tcp_connect(out, h->name, h->port, ms);
}

/* A new connection in a slot of h the caller holds.  Everything that can
 * fail for want of memory comes first: once connected, it is kept. */
static int dial(cp_part *pt, cp_host *h, weft_sock **out, int64_t deadline)
{
    weft_connpool *p = pt->pool;
    cp_conn *c = weft__sys_calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    if (table_reserve(pt) < 0) {
        free(c);
        return -ENOMEM;
    }
    pt->connecting++;
    stat_add(&p->connecting, 1);
    weft_sock *s;
    int rc = connect_to(p, h, &s, weft__ms_left(deadline));
    pt->connecting--;
    stat_add(&p->connecting, -1);
    if (rc == 0 && is_freed(p)) {
        weft_close(s); /* the pool went while it connected */
        rc = -EBADF;
    }
    if (rc < 0) {
        pt->treserved--;
        free(c);
        return rc;
    }
    c->h = s;
    c->host = h;
    list_push(&h->busy, c);
    table_insert(pt, c);
    pt->nconn++;
    stat_add(&p->nconn, 1);
    count(&p->connects);
    *out = s;
    return 0;
}

/* The newest idle connection of h that is still fit, checked out; the
 * unfit ones met on the way are closed.  NULL if none. */
static cp_conn *take_idle(cp_part *pt, cp_host *h)
{
    cp_conn *c;
    while ((c = h->idle)) {
        idle_remove(pt, c);
        weft__sock *s = NULL;
        int rc = weft__sock_enter(c->h, &s);
        if (rc == 0) {
            unwatch(s);
            if (quiet(s)) {
                list_push(&h->busy, c);
                return c;
            }
        }
        forget(pt, c);
        release_slot(pt, h);
        count(&pt->pool->stale);
        if (rc == 0)
            close_sock(s, true, false);
    }
    return NULL;
}

static int get_in(cp_part *pt, cp_host *h, weft_sock **out, int64_t deadline, bool *reused)
{
    weft_connpool *p = pt->pool;
    for (;;) {
        if (is_freed(p))
            return -EBADF;
        cp_conn *c = take_idle(pt, h);
        if (c) {
            count(&p->reuses);
            *out = c->h;
            *reused = true;
            return 0;
        }
        if (!p->max_open || h->open < p->max_open) {
            h->open++;
            break;
        }
        cp_wait w;
        int rc = wait_turn(pt, h, &w, deadline);
        if (rc < 0)
            return rc;
        if (w.got == GOT_GONE)
            return -EBADF;
        if (w.got == GOT_SLOT) {
            if (!is_freed(p))
                break;
            release_slot(pt, h);
            return -EBADF;
        }
        /* GOT_CONN: fit when it came back; time has passed since. */
        c = w.conn;
        weft__sock *s = NULL;
        rc = weft__sock_enter(c->h, &s);
        if (rc == 0 && quiet(s)) {
            count(&p->reuses);
            *out = c->h;
            *reused = true;
            return 0;
        }
        list_unlink(&h->busy, c);
        forget(pt, c);
        count(&p->stale);
        if (rc == 0)
            close_sock(s, true, false);
        break; /* its slot is ours: a new one */
    }
    int rc = dial(pt, h, out, deadline);
    if (rc < 0)
        release_slot(pt, h);
    return rc;
}

int weft__connpool_get(weft_connpool *p, weft_sock **out, const char *host, int port,
                       const char *servername, int64_t timeout_ms, bool *reused)
{
    *reused = false;
    if (!p || !out || !host || port < 1 || port > 65535)
        return -EINVAL;
    if (servername && strcmp(servername, host) == 0)
        servername = NULL;
    if (servername && (!p->tls || !*servername || strlen(servername) > SERVERNAME_MAX))
        return -EINVAL;
    if (!weft__tls_loop)
        return -EPERM;
    cp_part *pt;
    int rc = part_of(p, &pt, true);
    if (rc < 0)
        return rc;
    if (is_freed(p))
        return -EBADF;
    int64_t deadline = weft__deadline(timeout_ms);
    cp_host *h = host_get(pt, host, port, servername);
    if (!h)
        return -ENOMEM;
    pt->calls++;
    h->users++;
    rc = get_in(pt, h, out, deadline, reused);
    h->users--;
    host_release(pt, h);
    pt->calls--;
    part_check(pt);
    return rc;
}

int weft_connpool_get_sni(weft_connpool *p, weft_sock **out, const char *host, int port,
                          const char *servername, int64_t timeout_ms)
{
    bool reused;
    return weft__connpool_get(p, out, host, port, servername, timeout_ms, &reused);
}

void weft__connpool_own_tls(weft_connpool *p)
{
    p->owns_tls = true;
}

int weft_connpool_get(weft_connpool *p, weft_sock **out, const char *host, int port,
                      int64_t timeout_ms)
{
    bool reused;
    return weft__connpool_get(p, out, host, port, NULL, timeout_ms, &reused);
}

/* ---- putting back, freeing --------------------------------------------------------- */

int weft_connpool_put(weft_connpool *p, weft_sock *sh, int reusable)
{
    if (!p || !sh)
        return -EINVAL;
    cp_part *pt;
    int rc = part_of(p, &pt, false);
    if (rc < 0)
        return rc;
    size_t i = pt ? table_index(pt, sh) : SIZE_MAX;
    cp_conn *c = i != SIZE_MAX ? pt->table[i] : NULL;
    weft__sock *s = NULL;
    if (!c || c->idle) {
        /* Another loop's socket: it goes back on the loop that got it. */
        return weft__sock_enter(sh, &s) == -EXDEV ? -EXDEV : -EINVAL;
    }
    cp_host *h = c->host;
    rc = weft__sock_enter(sh, &s);
    if (rc == 0 && reusable && !is_freed(p) && keepable(s)) {
        if (give(pt, h, GOT_CONN, c))
            return 0;
        if (h->nidle < p->max_idle) {
            list_unlink(&h->busy, c);
            idle_add(pt, c);
            watch(s, pt->loop);
            if (pt->expiry.heap_idx == SIZE_MAX)
                arm_expiry(pt);
            return 0;
        }
    }
    list_unlink(&h->busy, c);
    forget(pt, c);
    release_slot(pt, h);
    part_check(pt); /* may free p: nothing of it is used below */
    if (rc < 0)
        return -EBADF;
    close_sock(s, false, false);
    return 1;
}

/* weft_connpool_free's work on one part, on its own loop: waiters leave
 * with -EBADF, idle connections close.  in_loop: a call from another
 * loop, run in the loop itself, where nothing may wait. */
static void free_part(cp_part *pt, bool in_loop)
{
    pt->calls++; /* a TLS close below may wait, and others run meanwhile */
    for (size_t i = 0; i < pt->nbuckets; i++)
        for (cp_host *h = pt->buckets[i]; h; h = h->chain)
            while (give(pt, h, GOT_GONE, NULL))
                ;
    weft__timer_stop(pt->loop, &pt->expiry);
    cp_conn *c;
    while ((c = pt->oldest)) {
        cp_host *h = c->host;
        weft__sock *s = NULL;
        int rc = weft__sock_enter(c->h, &s);
        idle_remove(pt, c);
        forget(pt, c);
        release_slot(pt, h);
        if (rc == 0)
            close_sock(s, false, in_loop);
    }
    pt->calls--;
    part_check(pt);
}

/* A free from another loop, on pt's. */
static void free_call(void *arg)
{
    cp_part *pt = arg;
    weft__group *g = pt->loop->group;
    __atomic_store_n(&pt->free_queued, false, __ATOMIC_RELEASE);
    free_part(pt, true); /* may free pt and the pool */
    weft__group_busy(g, -1);
}

void weft_connpool_free(weft_connpool *p)
{
    if (!p)
        return;
    weft_loop *l = weft__tls_loop;
    pthread_mutex_lock(&p->lock);
    if (p->home && p->home != l) {
        pthread_mutex_unlock(&p->lock);
        return; /* a loop alone on another thread keeps it */
    }
    __atomic_store_n(&p->freed, true, __ATOMIC_RELEASE);
    cp_part *here = NULL;
    for (cp_part *pt = p->parts; pt; pt = pt->pnext) {
        if (pt->loop == l) {
            here = pt;
            continue;
        }
        /* Another loop of the group, at its next step.  Until the call
         * has run it keeps the group going, so the loop is still there to
         * run it; a group that has ended already is freeing its loops,
         * and each loop's free hook closes its part's connections. */
        if (__atomic_load_n(&pt->free_queued, __ATOMIC_ACQUIRE) || !weft__group_enter(p->group))
            continue;
        __atomic_store_n(&pt->free_queued, true, __ATOMIC_RELEASE);
        weft__loop_call_with(pt->loop, &pt->free_post, free_call, pt);
    }
    if (!here) {
        pool_unref_locked(p); /* the user's reference */
        return;
    }
    p->refs--; /* here's reference keeps p until free_part is done */
    pthread_mutex_unlock(&p->lock);
    free_part(here, false);
}

int weft_connpool_stat(const weft_connpool *p, weft_connpool_stats *out)
{
    if (!p || !out)
        return -EINVAL;
    *out = (weft_connpool_stats){
        .idle = __atomic_load_n(&p->nidle, __ATOMIC_RELAXED),
        .busy = __atomic_load_n(&p->nconn, __ATOMIC_RELAXED),
        .connecting = __atomic_load_n(&p->connecting, __ATOMIC_RELAXED),
        .waiting = __atomic_load_n(&p->waiting, __ATOMIC_RELAXED),
        .connects = __atomic_load_n(&p->connects, __ATOMIC_RELAXED),
        .reuses = __atomic_load_n(&p->reuses, __ATOMIC_RELAXED),
        .stale = __atomic_load_n(&p->stale, __ATOMIC_RELAXED),
        .expired = __atomic_load_n(&p->expired, __ATOMIC_RELAXED),
    };
    /* Read one by one while other loops change them: idle may be counted
     * and busy not yet, or the other way round. */
    out->busy = out->busy > out->idle ? out->busy - out->idle : 0;
    return 0;
}
