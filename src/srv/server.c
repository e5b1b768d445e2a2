/*
 * server.c - weft_server, co's tcp::Server: a listener, an acceptor
 * coroutine, and a coroutine per connection that runs the TLS handshake
 * (if any) and then the user's on_conn.
 *
 * What runs on one loop (the listener, the acceptor, the connections) is
 * a srv_part; the server itself holds the options, the lifetime, the
 * counts all parts share and on_exit.  Started on a loop alone, a server
 * has one part.  Started in a coroutine of a loop of a group of several
 * (weft_config.threads), a TCP server has a part on every loop of the
 * group: a listener with SO_REUSEPORT on the same address and port (the
 * kernel balances the connections between them) and an acceptor that
 * runs that loop's connections, since a socket belongs to its loop.
 *
 * A part's state is its loop's, read and written by that loop's thread,
 * except its list of connections, which a drain on another loop walks
 * under the part's lock.  Loops ask each other through the loop's queue
 * of calls, on records kept in the part (weft__loop_call_with), so that
 * asking cannot fail, and each call keeps the group running until it has
 * run: the starting loop asks each other loop to make its
 * part and waits for every answer, then tells each part's acceptor to
 * run, or to close (start fails as a whole); a stop is a call on every
 * part's loop; a connection that ends under max_conns calls the loops
 * whose acceptors wait for a slot.  What the parts share is atomic: the
 * references, the connections (conn_count and max_conns count them all)
 * and the acceptors not yet ended.  on_exit runs once, in whichever
 * coroutine, on whichever loop, ends last after a stop.
 *
 * Lifetime: the server is freed when its last reference goes.  The user
 * holds one until weft_server_free, each acceptor one until it has
 * returned, each connection one until it has ended, each call queued on a
 * loop one until it has run, and each call that may run user code or wait
 * (stop, drain) one for its duration, so that on_exit or a handler calling
 * weft_server_free never frees what is in use.
 *
 * A connection's record lives on its own coroutine's stack: the acceptor
 * spawns it eagerly and hands the socket over through the part, and the
 * new coroutine takes it before it first blocks.  If the coroutine cannot
 * be made (no memory for its record or its stack), the acceptor still
 * holds the socket and tries again after a pause.
 */
#include "net/sock.h"
#ifdef WEFT_WITH_TLS
#include "tls/tls.h"
#endif

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HANDSHAKE_MS_DEFAULT 10000
#define BACKOFF_MIN_MS 5
#define BACKOFF_MAX_MS 500
#define STACK_MAX ((size_t)1 << 30)
#define UNIX_PREFIX "unix:"
#define HOST_MAX 128 /* a numeric address with a zone, and brackets */

typedef struct srv_conn {
    weft_sock *sock;
    int64_t co;
    bool cancelled; /* by a drain: not cancelled or counted again */
    struct srv_conn *next, *prev;
} srv_conn;

/* What a part's acceptor does: waits for the start's outcome (a part on
 * another loop, made while the others were), accepts, or ends. */
enum { GO_WAIT, GO_RUN, GO_STOP };

typedef struct srv_loop srv_loop;

typedef struct srv_part {
    weft_server *srv;
    weft_loop *loop;       /* NULL once the loop has been freed (atomic: other
                            * threads read it to refuse their calls) */
    srv_loop *home;        /* the loop's list of parts, while linked on it
                            * (a server of one part only) */
    weft_sock *listener;   /* NULL once closed */
    int64_t acceptor;      /* its coroutine */
    bool acceptor_started; /* it ran: it gives its reference back itself */
    bool acceptor_done;    /* its reference is given back */
    int go;                /* GO_* */
    weft_sock *handoff;    /* the socket a new connection's coroutine takes */
    srv_conn *conns;
    size_t nconns;                  /* this part's (the server counts them all) */
    weft__waitq acceptor_q;         /* the acceptor, waiting to go, for a slot, or pausing */
    weft__waitq drain_q;            /* drains waiting for connections to end */
    struct srv_part *lnext, *lprev; /* the loop's parts */
    /* A part of a server on several loops. */
    int start_rc;      /* its making: 0 or an error */
    bool replied;      /* the starting loop has its answer */
    int go_msg;        /* what go_post carries */
    bool slot_waiting; /* atomic: the acceptor waits for a slot (max_conns) */
    bool slot_queued;  /* atomic: slot_post is on its way */
    pthread_mutex_t lock; /* conns and their cancelled, against other loops' drains */
    weft__post make_post, check_post, reply_post, go_post, stop_post, slot_post;
} srv_part;

/* A drain waiting for the connections of every loop to end. */
typedef struct srv_drainer {
    weft_event *ev;
    struct srv_drainer *next, *prev;
} srv_drainer;

struct weft_server {
    void (*on_conn)(weft_sock *conn, void *arg);
    void *arg;
    void (*on_exit)(void *arg);
    weft_tls_ctx *tls;
    bool own_tls; /* made from cert_file: freed with the server */
    int64_t handshake_ms;
    int max_conns;
    size_t stack_size;
    int port;
    char *unix_path; /* a path (not an abstract name) to remove at stop */
    dev_t unix_dev;
    ino_t unix_ino;
    unsigned refs;             /* atomic */
    bool stopped, exited;      /* atomic */
    bool freed;                /* atomic */
    size_t nconns;             /* atomic: every part's connections */
    int acceptors;             /* atomic: acceptors that have not given their reference back */
    /* On several loops (group NULL: one part, parts[0]). */
    weft__group *group;
    weft_loop *start_loop;     /* the loop that started it: answers come here */
    int nparts;
    char bind_host[HOST_MAX];  /* what the other loops listen on; "" = every interface */
    int backlog, flags;
    int start_pending;         /* start_loop's: parts not yet answered */
    int undo_pending;          /* start_loop's: parts told to close, not yet closed */
    int start_rc;              /* start_loop's: the first part's error */
    bool start_over;           /* start_loop's: the start has returned, failed */
    bool undoing;              /* atomic: a failed start is closing its parts */
    weft__waitq start_q;       /* the start, waiting for answers */
    pthread_mutex_t lock;      /* the drainers */
    srv_drainer *drainers;
    int ndrainers;             /* atomic */
    srv_part parts[];
};

/* ---- the loop's servers ------------------------------------------------------------ */

struct srv_loop {
    srv_part *head;
};

static void loop_gone(weft_loop *l, void *state);
static weft__ext_key servers_key = {"servers", loop_gone, 0};

static srv_loop *loop_state(weft_loop *l)
{
    srv_loop *sl = weft__loop_ext(l, &servers_key);
    if (sl)
        return sl;
    if (!(sl = weft__sys_calloc(1, sizeof *sl)))
        return NULL;
    if (weft__loop_ext_set(l, &servers_key, sl) < 0) {
        free(sl);
        return NULL;
    }
    return sl;
}

static void link_part(srv_loop *sl, srv_part *p)
{
    p->home = sl;
    p->lprev = NULL;
    p->lnext = sl->head;
    if (sl->head)
        sl->head->lprev = p;
    sl->head = p;
}

static void unlink_part(srv_part *p)
{
    srv_loop *sl = p->home;
    if (!sl)
        return;
    p->home = NULL;
    if (p->lprev)
        p->lprev->lnext = p->lnext;
    else
        sl->head = p->lnext;
    if (p->lnext)
        p->lnext->lprev = p->lprev;
    p->lnext = p->lprev = NULL;
}

/* ---- calls between the loops of a group -------------------------------------------- */

/* Queues fn(arg) on l, in the loop itself.  Until it has run it keeps
 * the group from ending (weft_main's loops stop once nothing is alive or
 * on its way): the loops are then still there to take whatever it asks
 * of them in turn.  Every call ends with call_done. */
static void call_on(weft_server *s, weft_loop *l, weft__post *post, void (*fn)(void *), void *arg)
{
    weft__group_busy(s->group, 1);
    weft__loop_call_with(l, post, fn, arg);
}

static void call_done(weft__group *g)
{
    weft__group_busy(g, -1);
}

/* ---- lifetime ---------------------------------------------------------------------- */

static void srv_ref(weft_server *s)
{
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
}

static void srv_unref(weft_server *s)
{
    if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    /* A server of several parts links none on its loops: each loop's
     * coroutines outlive its part, and the loops outlive them all. */
    if (!s->group)
        unlink_part(&s->parts[0]);
#ifdef WEFT_WITH_TLS
    /* Every connection has ended and closed its socket, except one a
     * handler closed with weft_close_after: its close_notify goes out
     * later through its own SSL, which holds a reference to the SSL_CTX;
     * a server's connections never use the context otherwise. */
    if (s->own_tls)
        weft_tls_ctx_free(s->tls);
#endif
    if (s->group) {
        for (int i = 0; i < s->nparts; i++)
            pthread_mutex_destroy(&s->parts[i].lock);
        pthread_mutex_destroy(&s->lock);
    }
    free(s->unix_path);
    free(s);
}

static bool load_flag(const bool *b)
{
    return __atomic_load_n(b, __ATOMIC_ACQUIRE);
}

static bool all_ended(const weft_server *s)
{
    return __atomic_load_n(&s->acceptors, __ATOMIC_SEQ_CST) == 0 &&
           __atomic_load_n(&s->nconns, __ATOMIC_SEQ_CST) == 0;
}

/* Wakes the drains of a server on several loops: something ended. */
static void notify_drains(weft_server *s)
{
    if (!s->group || !__atomic_load_n(&s->ndrainers, __ATOMIC_SEQ_CST))
        return;
    pthread_mutex_lock(&s->lock);
    for (srv_drainer *d = s->drainers; d; d = d->next)
        weft_event_set(d->ev); /* -ENOMEM: that drain ends at its deadline */
    pthread_mutex_unlock(&s->lock);
}

/* The caller holds a reference: on_exit may free the server's last other.
 * Once stopped, the counts only fall, so the coroutine that sees them both
 * at 0 is the last; two loops seeing it at once run on_exit once. */
static void maybe_exit(weft_server *s)
{
    if (!load_flag(&s->stopped) || load_flag(&s->exited) || !all_ended(s))
        return;
    if (__atomic_exchange_n(&s->exited, true, __ATOMIC_ACQ_REL))
        return;
    if (s->on_exit)
        s->on_exit(s->arg);
}

static void close_listener(weft_server *s, srv_part *p)
{
    if (!p->listener)
        return;
    if (s->unix_path) {
        /* Only the file this server made: another may have taken the path. */
        struct stat st;
        if (stat(s->unix_path, &st) == 0 && st.st_dev == s->unix_dev && st.st_ino == s->unix_ino)
            unlink(s->unix_path);
    }
    weft_close(p->listener);
    p->listener = NULL;
}

static void part_undone(void *arg);

/* The acceptor gives its reference back. */
static void acceptor_end(weft_server *s, srv_part *p)
{
    p->acceptor_done = true;
    __atomic_sub_fetch(&s->acceptors, 1, __ATOMIC_SEQ_CST);
    weft__wake_all(&p->drain_q, 0);
    notify_drains(s);
    if (s->group && load_flag(&s->undoing)) {
        /* A failed start waits for its parts to have closed. */
        srv_ref(s);
        if (p->loop == s->start_loop) {
            weft__group_busy(s->group, 1); /* as call_on's, which part_undone ends */
            part_undone(p);
        } else {
            call_on(s, s->start_loop, &p->reply_post, part_undone, p);
        }
    }
    maybe_exit(s);
    srv_unref(s);
}

/* An acceptor queued outside any coroutine whose stack could not be
 * mapped never ran, so never gives its reference back: do it for it. */
static void acceptor_check(weft_server *s, srv_part *p)
{
    if (p->acceptor_started || p->acceptor_done || !p->loop || weft__co_find(p->loop, p->acceptor))
        return;
    acceptor_end(s, p);
}

/* Stops p, a part on this thread's loop: its listener closes (an acceptor
 * in weft_accept wakes with -EBADF), an acceptor waiting to go ends. */
static void part_stop_here(weft_server *s, srv_part *p)
{
    close_listener(s, p);
    if (p->go == GO_WAIT)
        p->go = GO_STOP;
    weft__wake_all(&p->acceptor_q, 0);
}

static void part_stop_call(void *arg)
{
    srv_part *p = arg;
    weft_server *s = p->srv;
    weft__group *g = s->group;
    part_stop_here(s, p);
    srv_unref(s);
    call_done(g);
}

/* The caller holds a reference.  On several loops the other parts stop at
 * their loops' next steps. */
static void srv_stop(weft_server *s)
{
    if (__atomic_exchange_n(&s->stopped, true, __ATOMIC_ACQ_REL))
        return;
    if (!s->group) {
        srv_part *p = &s->parts[0];
        part_stop_here(s, p);
        acceptor_check(s, p);
        return;
    }
    for (int i = 0; i < s->nparts; i++) {
        srv_part *p = &s->parts[i];
        if (p->loop == weft__tls_loop) {
            part_stop_here(s, p);
        } else {
            srv_ref(s);
            call_on(s, p->loop, &p->stop_post, part_stop_call, p);
        }
    }
}

/* The loop is being freed: every coroutine has finished.  Its servers can
 * no longer run; users may still hold and free them.  (Only servers of one
 * part are linked: a group's loops are freed once every coroutine of every
 * loop has finished, acceptors included.) */
static void loop_gone(weft_loop *l, void *state)
{
    srv_loop *sl = state;
    (void)l;
    while (sl->head) {
        srv_part *p = sl->head;
        weft_server *s = p->srv;
        unlink_part(p);
        srv_ref(s);
        if (!p->acceptor_done) {
            /* Its acceptor never ran (otherwise the loop's closing made it
             * stop the server and return). */
            __atomic_store_n(&s->stopped, true, __ATOMIC_RELEASE);
            close_listener(s, p);
            acceptor_end(s, p);
        }
        __atomic_store_n(&p->loop, NULL, __ATOMIC_RELEASE);
        srv_unref(s);
    }
    free(sl);
}

static bool loop_closing(void)
{
    return weft__tls_loop->closing;
}

/* ---- connections and slots --------------------------------------------------------- */

static void conns_lock(weft_server *s, srv_part *p)
{
    if (s->group)
        pthread_mutex_lock(&p->lock);
}

static void conns_unlock(weft_server *s, srv_part *p)
{
    if (s->group)
        pthread_mutex_unlock(&p->lock);
}

/* Counts a new connection, unless max_conns are running on all loops
 * together.  Returns false at the limit. */
static bool take_slot(weft_server *s)
{
    if (!s->max_conns) {
        __atomic_add_fetch(&s->nconns, 1, __ATOMIC_SEQ_CST);
        return true;
    }
    size_t n = __atomic_load_n(&s->nconns, __ATOMIC_SEQ_CST);
    do {
        if (n >= (size_t)s->max_conns)
            return false;
    } while (!__atomic_compare_exchange_n(&s->nconns, &n, n + 1, false, __ATOMIC_SEQ_CST,
                                          __ATOMIC_SEQ_CST));
    return true;
}

static void slot_call(void *arg)
{
    srv_part *p = arg;
    weft_server *s = p->srv;
    weft__group *g = s->group;
    __atomic_store_n(&p->slot_queued, false, __ATOMIC_SEQ_CST);
    weft__wake_all(&p->acceptor_q, 0);
    srv_unref(s);
    call_done(g);
}

/* A connection of part here has ended (its count is down): under
 * max_conns, the acceptors waiting for a slot get to try, this loop's at
 * once, other loops' at their next step. */
static void slot_free(weft_server *s, srv_part *here)
{
    if (!s->max_conns)
        return;
    weft__wake_all(&here->acceptor_q, 0);
    for (int i = 0; s->group && i < s->nparts; i++) {
        srv_part *p = &s->parts[i];
        if (p == here || !__atomic_load_n(&p->slot_waiting, __ATOMIC_SEQ_CST) ||
            __atomic_exchange_n(&p->slot_queued, true, __ATOMIC_SEQ_CST))
            continue;
        srv_ref(s);
        call_on(s, p->loop, &p->slot_post, slot_call, p);
    }
}

/* The acceptor waits until a connection on any loop ends.  Its flag goes
 * up before it looks at the count, and a connection's end lowers the
 * count before it looks at the flag, so one of the two sees the other. */
static void wait_slot(weft_server *s, srv_part *p)
{
    if (s->group) {
        __atomic_store_n(&p->slot_waiting, true, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&s->nconns, __ATOMIC_SEQ_CST) < (size_t)s->max_conns) {
            __atomic_store_n(&p->slot_waiting, false, __ATOMIC_SEQ_CST);
            return;
        }
    }
    weft__wait w;
    weft__park(&w, &p->acceptor_q, WEFT__NEVER);
    if (s->group)
        __atomic_store_n(&p->slot_waiting, false, __ATOMIC_SEQ_CST);
}

static void conn_main(void *arg)
{
    srv_part *p = arg;
    weft_server *s = p->srv;
    srv_conn c = {.sock = p->handoff, .co = weft_self()};
    p->handoff = NULL; /* taken: the acceptor checks */
    conns_lock(s, p);
    c.next = p->conns;
    if (p->conns)
        p->conns->prev = &c;
    p->conns = &c;
    conns_unlock(s, p);

    bool ok = true;
#ifdef WEFT_WITH_TLS
    if (s->tls) {
        weft_sock *t;
        ok = weft_tls_wrap(&t, c.sock, s->tls, NULL, s->handshake_ms) == 0;
    }
#endif
    if (ok)
        s->on_conn(c.sock, s->arg);
    /* The handler's deadline is not the close's (TLS waits for room for
     * close_notify).  -EBADF here means the handler closed it. */
    weft_deadline_clear();
    weft_close(c.sock);

    conns_lock(s, p);
    if (c.prev)
        c.prev->next = c.next;
    else
        p->conns = c.next;
    if (c.next)
        c.next->prev = c.prev;
    conns_unlock(s, p);
    p->nconns--;
    __atomic_sub_fetch(&s->nconns, 1, __ATOMIC_SEQ_CST);
    slot_free(s, p);
    if (load_flag(&s->stopped)) {
        weft__wake_all(&p->drain_q, 0);
        notify_drains(s);
    }
    maybe_exit(s);
    srv_unref(s);
}

/* Gives c, counted already (take_slot), a coroutine.  Returns 0 (it has
 * taken c) or -ENOMEM (c is still the caller's, and counted). */
static int spawn_conn(weft_server *s, srv_part *p, weft_sock *c)
{
    p->handoff = c;
    p->nconns++;
    srv_ref(s);
    weft_co_opts o = {.stack_size = s->stack_size, .eager = 1};
    int64_t id = weft_go_opts(conn_main, p, &o);
    if (id > 0 && !p->handoff)
        return 0; /* it ran (and may have ended already) */
    /* No record, or no stack: it never ran. */
    p->handoff = NULL;
    p->nconns--;
    srv_unref(s); /* the acceptor's own keeps the server */
    return -ENOMEM;
}

/* Pauses the acceptor for *backoff ms (doubled for next time), or until
 * the server stops. */
static void pause_acceptor(srv_part *p, int64_t *backoff)
{
    weft__wait w;
    int rc = weft__park(&w, &p->acceptor_q, weft__deadline(*backoff));
    if (rc == -ENOMEM)
        weft_yield(); /* no timer for the pause: at least let others run */
    *backoff = *backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *backoff * 2;
}

static void acceptor_main(void *arg)
{
    srv_part *p = arg;
    weft_server *s = p->srv;
    p->acceptor_started = true;
    while (p->go == GO_WAIT && !loop_closing()) {
        weft__wait w;
        weft__park(&w, &p->acceptor_q, WEFT__NEVER);
    }
    int64_t backoff = BACKOFF_MIN_MS;
    weft_sock *c = NULL; /* accepted, waiting for a coroutine */
    while (p->go == GO_RUN && !load_flag(&s->stopped) && !loop_closing()) {
        if (!c) {
            if (s->max_conns &&
                __atomic_load_n(&s->nconns, __ATOMIC_SEQ_CST) >= (size_t)s->max_conns) {
                /* At the limit: leave the rest in the backlog until a
                 * connection ends. */
                wait_slot(s, p);
                continue;
            }
            /* Out of descriptors or memory, accept backs off by itself. */
            int rc = weft_accept(p->listener, &c, -1);
            if (rc < 0) {
                c = NULL;
                if (rc == -EBADF)
                    break; /* the listener is closed: stopped */
                if (rc != -ECANCELED)
                    pause_acceptor(p, &backoff); /* -ENOMEM from its back-off's timer */
                continue;
            }
        }
        /* Another loop may have taken the last slot since the check. */
        if (!take_slot(s)) {
            wait_slot(s, p);
            continue;
        }
        if (spawn_conn(s, p, c) == 0) {
            c = NULL;
            backoff = BACKOFF_MIN_MS;
        } else {
            __atomic_sub_fetch(&s->nconns, 1, __ATOMIC_SEQ_CST);
            slot_free(s, p);
            pause_acceptor(p, &backoff);
        }
    }
    if (c)
        weft_close(c);
    /* The loop is being freed: that stops a server of one part too. */
    if (!s->group)
        srv_stop(s);
    close_listener(s, p);
    acceptor_end(s, p);
}

/* ---- starting on every loop of a group --------------------------------------------- */

/* On the starting loop: part p has answered whether it is made. */
static void part_replied(void *arg)
{
    srv_part *p = arg;
    weft_server *s = p->srv;
    p->replied = true;
    s->start_pending--;
    if (p->start_rc < 0 && !s->start_rc)
        s->start_rc = p->start_rc;
    if (s->start_over && p->start_rc == 0) {
        /* The start gave up waiting: this part closes again. */
        p->go_msg = GO_STOP;
        srv_ref(s);
        call_on(s, p->loop, &p->go_post, part_stop_call, p);
    }
    weft__group *g = s->group;
    weft__wake_all(&s->start_q, 0);
    srv_unref(s); /* the making's */
    call_done(g);
}

/* On the starting loop: part p, told to close, has. */
static void part_undone(void *arg)
{
    srv_part *p = arg;
    weft_server *s = p->srv;
    weft__group *g = s->group;
    s->undo_pending--;
    weft__wake_all(&s->start_q, 0);
    srv_unref(s);
    call_done(g);
}

static void part_reply(srv_part *p)
{
    call_on(p->srv, p->srv->start_loop, &p->reply_post, part_replied, p);
}

/* On p's loop, the step after its making: the acceptor has had its first
 * run (spawned during the previous step's calls, it ran in that step), or
 * its stack could not be mapped and it never will. */
static void part_made_check(void *arg)
{
    srv_part *p = arg;
    weft_server *s = p->srv;
    weft__group *g = s->group; /* s may be gone once the answer is sent */
    if (!p->acceptor_started && !weft__co_find(weft__tls_loop, p->acceptor)) {
        p->start_rc = -ENOMEM;
        close_listener(s, p);
        p->acceptor_done = true;
        __atomic_sub_fetch(&s->acceptors, 1, __ATOMIC_SEQ_CST);
        srv_unref(s); /* the acceptor's; the making's keeps s */
    }
    part_reply(p);
    call_done(g);
}

/* On p's loop, in the loop itself: listens where the first part does and
 * queues the acceptor, which waits to be told to go. */
static void part_make_call(void *arg)
{
    srv_part *p = arg;
    weft_server *s = p->srv;
    weft__group *g = s->group; /* s may be gone once the answer is sent */
    weft_loop *l = weft__tls_loop;
    __atomic_store_n(&p->loop, l, __ATOMIC_RELEASE);
    int rc = weft_tcp_listen(&p->listener, s->bind_host[0] ? s->bind_host : NULL, s->port,
                             s->backlog, s->flags);
    if (rc == 0) {
        srv_ref(s);
        __atomic_add_fetch(&s->acceptors, 1, __ATOMIC_SEQ_CST);
        int64_t id = weft_go(acceptor_main, p);
        if (id < 0) {
            __atomic_sub_fetch(&s->acceptors, 1, __ATOMIC_SEQ_CST);
            srv_unref(s);
            rc = (int)id;
        }
        p->acceptor = id;
    }
    p->start_rc = rc;
    if (rc < 0) {
        close_listener(s, p);
        part_reply(p);
    } else {
        call_on(s, l, &p->check_post, part_made_check, p);
    }
    call_done(g);
}

/* Tells p's acceptor the start's outcome: GO_RUN or GO_STOP. */
static void part_go_here(srv_part *p, int go)
{
    if (go == GO_STOP)
        close_listener(p->srv, p);
    if (p->go == GO_WAIT)
        p->go = go;
    weft__wake_all(&p->acceptor_q, 0);
}

static void part_go_call(void *arg)
{
    srv_part *p = arg;
    weft_server *s = p->srv;
    weft__group *g = s->group;
    part_go_here(p, p->go_msg);
    srv_unref(s);
    call_done(g);
}

static void part_go(weft_server *s, srv_part *p, int go)
{
    if (p->loop == weft__tls_loop) {
        part_go_here(p, go);
        return;
    }
    p->go_msg = go;
    srv_ref(s);
    call_on(s, p->loop, &p->go_post, part_go_call, p);
}

/* What the other loops listen on: the first listener's address without
 * its port ("" for every interface: each loop then falls back to IPv4 as
 * the first did), so that a name is looked up once. */
static int bind_host_of(weft_server *s, srv_part *p, const char *host)
{
    if (!host || strcmp(host, "*") == 0)
        return 0;
    weft_addr a;
    int rc = weft_sock_local(p->listener, &a);
    if (rc < 0)
        return rc;
    if ((rc = weft_addr_format(&a, s->bind_host, sizeof s->bind_host)) < 0)
        return rc;
    char *colon = strrchr(s->bind_host, ':'); /* "1.2.3.4:80", "[::1]:80" */
    if (colon)
        *colon = '\0';
    return 0;
}

/* Undoes a failed start: every part made closes, and the start waits for
 * them (unless it is cancelled meanwhile: they close all the same). */
static void start_undo(weft_server *s)
{
    __atomic_store_n(&s->undoing, true, __ATOMIC_SEQ_CST);
    for (int i = 0; i < s->nparts; i++) {
        srv_part *p = &s->parts[i];
        if (!p->replied || p->start_rc < 0)
            continue;
        s->undo_pending++;
        part_go(s, p, GO_STOP);
    }
    while (s->undo_pending > 0) {
        weft__wait w;
        if (weft__park(&w, &s->start_q, weft__deadline(-1)) < 0)
            break;
    }
}

/* In a coroutine of a loop of a group: the server's part here is made (it
 * listens, its acceptor waits); makes the others and waits for them. */
static int start_group(weft_server *s, const weft_server_opts *o)
{
    weft_loop *l = weft__tls_loop;
    weft__group *g = l->group;
    srv_part *here = &s->parts[l->index];
    int rc = bind_host_of(s, here, o->host);
    if (rc < 0)
        return rc;
    here->replied = true;
    for (int i = 0; i < s->nparts; i++) {
        srv_part *p = &s->parts[i];
        if (p == here)
            continue;
        srv_ref(s);
        s->start_pending++;
        call_on(s, g->loops[i], &p->make_post, part_make_call, p);
    }
    while (s->start_pending > 0) {
        weft__wait w;
        if ((rc = weft__park(&w, &s->start_q, weft__deadline(-1))) < 0)
            break; /* -ECANCELED, -ETIMEDOUT (the deadline), -ENOMEM */
    }
    if (rc == 0 && (rc = s->start_rc) == 0) {
        for (int i = 0; i < s->nparts; i++)
            part_go(s, &s->parts[i], GO_RUN);
        return 0;
    }
    /* Parts that answer from now on close at once. */
    s->start_over = true;
    start_undo(s);
    return rc;
}

/* ---- the API ----------------------------------------------------------------------- */

static int check_opts(const weft_server_opts *o, const char *path)
{
    if (!o->on_conn || o->max_conns < 0 || o->stack_size > STACK_MAX ||
        o->handshake_timeout_ms < -1 || (o->tls && (o->cert_file || o->key_file)) ||
        (o->key_file && !o->cert_file) || (path && o->flags))
        return -EINVAL;
#ifdef WEFT_WITH_TLS
    if (o->tls && o->tls->role != WEFT_TLS_SERVER)
        return -EINVAL;
#else
    if (o->tls || o->cert_file)
        return -ENOTSUP;
#endif
    return 0;
}

static int listen_on(weft_server *s, srv_part *p, const weft_server_opts *o, const char *path)
{
    if (!path) {
        int rc = weft_tcp_listen(&p->listener, o->host, o->port, o->backlog, s->flags);
        weft_addr a;
        if (rc == 0 && (rc = weft_sock_local(p->listener, &a)) == 0)
            s->port = weft_addr_port(&a);
        return rc;
    }
    if (path[0] && path[0] != '@') {
        size_t n = strlen(path) + 1;
        if (!(s->unix_path = weft__sys_malloc(n)))
            return -ENOMEM;
        memcpy(s->unix_path, path, n);
    }
    int rc = weft_unix_listen(&p->listener, path, o->backlog);
    struct stat st;
    if (rc == 0 && s->unix_path && stat(s->unix_path, &st) == 0) {
        s->unix_dev = st.st_dev;
        s->unix_ino = st.st_ino;
    } else {
        free(s->unix_path); /* nothing of ours to remove later */
        s->unix_path = NULL;
    }
    return rc;
}

int weft_server_start(weft_server **out, const weft_server_opts *o)
{
    if (!out || !o)
        return -EINVAL;
    const char *path = NULL;
    if (o->host && strncmp(o->host, UNIX_PREFIX, strlen(UNIX_PREFIX)) == 0)
        path = o->host + strlen(UNIX_PREFIX);
    int rc = check_opts(o, path);
    if (rc < 0)
        return rc;
    weft_loop *l = weft__tls_loop;
    if (!l)
        return -EPERM;
    /* Every loop of the group, for TCP from a coroutine (the start waits
     * for the other loops); else this loop alone. */
    int nparts = !path && l->nloops > 1 && weft__current() ? l->nloops : 1;
    weft_server *s = weft__sys_calloc(1, sizeof *s + (size_t)nparts * sizeof s->parts[0]);
    if (!s)
        return -ENOMEM;
    s->on_conn = o->on_conn;
    s->arg = o->arg;
    s->on_exit = o->on_exit;
    s->tls = o->tls;
    s->handshake_ms = o->handshake_timeout_ms ? o->handshake_timeout_ms : HANDSHAKE_MS_DEFAULT;
    s->max_conns = o->max_conns;
    s->stack_size = o->stack_size;
    s->backlog = o->backlog;
    s->flags = o->flags;
    s->refs = 1;
    s->nparts = nparts;
    for (int i = 0; i < nparts; i++) {
        s->parts[i].srv = s;
        s->parts[i].go = nparts > 1 ? GO_WAIT : GO_RUN;
    }
    srv_part *p = &s->parts[0];
    if (nparts > 1) {
        s->group = l->group;
        s->start_loop = l;
        s->flags |= WEFT_REUSEPORT;
        pthread_mutex_init(&s->lock, NULL);
        for (int i = 0; i < nparts; i++)
            pthread_mutex_init(&s->parts[i].lock, NULL);
        p = &s->parts[l->index];
    }
    p->loop = l;
#ifdef WEFT_WITH_TLS
    if (o->cert_file) {
        weft_tls_opts t = {.cert_file = o->cert_file, .key_file = o->key_file};
        if ((rc = weft_tls_ctx_new(&s->tls, WEFT_TLS_SERVER, &t)) < 0)
            goto fail;
        s->own_tls = true;
    }
#endif
    if ((rc = listen_on(s, p, o, path)) < 0)
        goto fail;
    /* After the listener: the loop's sockets then outlive this state when
     * the loop is freed, so loop_gone can still close one. */
    srv_loop *sl = nparts == 1 ? loop_state(l) : NULL;
    rc = -ENOMEM;
    if (nparts == 1 && !sl)
        goto fail;
    /* Eager from a coroutine: it runs at once, until it waits in accept
     * (or, on a group, to be told to go), so a stack that cannot be
     * mapped shows here. */
    srv_ref(s);
    __atomic_add_fetch(&s->acceptors, 1, __ATOMIC_SEQ_CST);
    weft_co_opts co = {.eager = 1};
    int64_t id = weft_go_opts(acceptor_main, p, &co);
    if (id < 0 || (weft__current() && !p->acceptor_started)) {
        __atomic_sub_fetch(&s->acceptors, 1, __ATOMIC_SEQ_CST);
        srv_unref(s);
        rc = id < 0 ? (int)id : -ENOMEM;
        goto fail;
    }
    p->acceptor = id;
    if (nparts > 1) {
        if ((rc = start_group(s, o)) < 0) {
            /* No on_exit: the server never was. */
            __atomic_store_n(&s->exited, true, __ATOMIC_SEQ_CST);
            __atomic_store_n(&s->stopped, true, __ATOMIC_SEQ_CST);
            for (int i = 0; i < nparts; i++)
                weft__wake_all(&s->parts[i].acceptor_q, 0); /* ours, if it waits */
            srv_unref(s);
            return rc;
        }
    } else {
        link_part(sl, p);
    }
    *out = s;
    return 0;
fail:
    close_listener(s, p);
#ifdef WEFT_WITH_TLS
    if (s->own_tls)
        weft_tls_ctx_free(s->tls);
#endif
    if (nparts > 1) {
        for (int i = 0; i < nparts; i++)
            pthread_mutex_destroy(&s->parts[i].lock);
        pthread_mutex_destroy(&s->lock);
    }
    free(s->unix_path);
    free(s);
    return rc;
}

int weft_server_port(const weft_server *s)
{
    return s ? s->port : -EINVAL;
}

size_t weft_server_conn_count(const weft_server *s)
{
    return s ? __atomic_load_n(&s->nconns, __ATOMIC_RELAXED) : 0;
}

/* A server of one part: its loop, or NULL once it was freed. */
static weft_loop *loop_of(const weft_server *s)
{
    return __atomic_load_n(&s->parts[0].loop, __ATOMIC_ACQUIRE);
}

/* Whether this thread runs one of the loops of s's group. */
static bool in_group(const weft_server *s)
{
    weft_loop *l = weft__tls_loop;
    return l && l->group == s->group;
}

void weft_server_stop(weft_server *s)
{
    if (!s)
        return;
    if (s->group ? !in_group(s) : !loop_of(s) || loop_of(s) != weft__tls_loop)
        return;
    srv_ref(s);
    srv_stop(s);
    srv_unref(s);
}

/* Whether the running coroutine is one of p's connections. */
static bool is_own_conn(const srv_part *p)
{
    int64_t self = weft_self();
    for (const srv_conn *c = p->conns; self && c; c = c->next)
        if (c->co == self)
            return true;
    return false;
}

/* Cancels p's connections but the caller's and those cancelled before;
 * another loop's are cancelled by their loop at its next step. */
static int cancel_rest(weft_server *s, srv_part *p)
{
    int64_t self = weft_self();
    int n = 0;
    conns_lock(s, p);
    for (srv_conn *c = p->conns; c; c = c->next) {
        if (c->co == self || c->cancelled)
            continue;
        c->cancelled = true;
        if (weft_cancel(c->co) == 0)
            n++;
    }
    conns_unlock(s, p);
    return n;
}

/* weft_server_drain on a server of several loops: the connections that
 * end anywhere wake it through an event of its own. */
static int drain_group(weft_server *s, int64_t timeout_ms)
{
    srv_stop(s);
    int64_t deadline = weft__deadline(timeout_ms);
    weft_loop *l = weft__tls_loop;
    size_t mine = is_own_conn(&s->parts[l->index]) ? 1 : 0;
    srv_drainer d = {0};
    int rc = weft_event_new(&d.ev, 0);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->lock);
    d.next = s->drainers;
    if (s->drainers)
        s->drainers->prev = &d;
    s->drainers = &d;
    __atomic_add_fetch(&s->ndrainers, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&s->lock);
    while (__atomic_load_n(&s->acceptors, __ATOMIC_SEQ_CST) > 0 ||
           __atomic_load_n(&s->nconns, __ATOMIC_SEQ_CST) > mine) {
        rc = weft_event_wait(d.ev, weft__ms_left(deadline));
        if (rc == -ETIMEDOUT)
            break;
        if (rc < 0)
            goto out; /* -ECANCELED, -ENOMEM, -EBUSY */
    }
    rc = 0;
    for (int i = 0; i < s->nparts; i++)
        rc += cancel_rest(s, &s->parts[i]);
    /* Let this loop's cancelled run once; other loops' run at their pace. */
    if (rc > 0 && weft__current())
        weft_yield();
    else if (rc > 0)
        weft_loop_poll(l, 0);
out:
    pthread_mutex_lock(&s->lock);
    if (d.prev)
        d.prev->next = d.next;
    else
        s->drainers = d.next;
    if (d.next)
        d.next->prev = d.prev;
    __atomic_sub_fetch(&s->ndrainers, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&s->lock);
    weft_event_free(d.ev);
    return rc;
}

int weft_server_drain(weft_server *s, int64_t timeout_ms)
{
    if (!s)
        return -EINVAL;
    if (s->group) {
        if (!in_group(s))
            return -EXDEV;
        srv_ref(s);
        int rc = drain_group(s, timeout_ms);
        srv_unref(s);
        return rc;
    }
    srv_part *p = &s->parts[0];
    weft_loop *l = loop_of(s);
    if (!l)
        return 0; /* its loop was freed: nothing of it runs */
    if (l != weft__tls_loop)
        return -EXDEV;
    srv_ref(s);
    srv_stop(s);
    int64_t deadline = weft__deadline(timeout_ms);
    bool in_co = weft__current() != NULL;
    size_t mine = is_own_conn(p) ? 1 : 0;
    int rc = 0;
    /* The acceptor too: once it has gone, on_exit has run if nothing is left. */
    while (p->nconns > mine || !p->acceptor_done) {
        if (in_co) {
            weft__wait w;
            rc = weft__park(&w, &p->drain_q, deadline);
        } else {
            int64_t left = weft__ms_left(deadline);
            rc = left == 0 ? -ETIMEDOUT : weft_loop_poll(p->loop, left);
        }
        if (rc == -ETIMEDOUT)
            break;
        if (rc < 0)
            goto out; /* -ECANCELED, -ENOMEM, -EBUSY */
    }
    rc = cancel_rest(s, p);
    /* Let the cancelled run once: those that return on the error are gone
     * when this returns. */
    if (rc > 0 && in_co)
        weft_yield();
    else if (rc > 0)
        weft_loop_poll(p->loop, 0);
out:
    srv_unref(s);
    return rc;
}

void weft_server_free(weft_server *s)
{
    if (!s)
        return;
    weft_loop *l = s->group ? NULL : loop_of(s);
    if (s->group ? !in_group(s) && !load_flag(&s->exited) : l && l != weft__tls_loop)
        return;
    if (__atomic_exchange_n(&s->freed, true, __ATOMIC_ACQ_REL))
        return;
    srv_ref(s);
    if (s->group ? in_group(s) : l != NULL)
        srv_stop(s);
    srv_unref(s);
    srv_unref(s); /* the user's */
}
