/*
 * server.c - weft_server, co's tcp::Server: a listener, an acceptor
 * coroutine, and a coroutine per connection that runs the TLS handshake
 * (if any) and then the user's on_conn.
 *
 * What runs on one loop (the listener, the acceptor, the connections and
 * their count) is a srv_part; the server itself holds the options, the
 * lifetime and on_exit.  Today a server has one part, on the loop that
 * started it; a server on every loop of a threaded runtime is more parts
 * of the same server.
 *
 * Lifetime: the server is freed when its last reference goes.  The user
 * holds one until weft_server_free, the acceptor one until it has
 * returned, each connection one until it has ended, and each call that
 * may run user code or wait (stop, drain) one for its duration, so that
 * on_exit or a handler calling weft_server_free never frees what is in
 * use.  on_exit runs once, in whichever coroutine ends last after a stop.
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

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HANDSHAKE_MS_DEFAULT 10000
#define BACKOFF_MIN_MS 5
#define BACKOFF_MAX_MS 500
#define STACK_MAX ((size_t)1 << 30)
#define UNIX_PREFIX "unix:"

typedef struct srv_conn {
    weft_sock *sock;
    int64_t co;
    bool cancelled; /* by a drain: not cancelled or counted again */
    struct srv_conn *next, *prev;
} srv_conn;

typedef struct srv_loop srv_loop;

typedef struct srv_part {
    weft_server *srv;
    weft_loop *loop;       /* NULL once the loop has been freed (atomic: other
                            * threads read it to refuse their calls) */
    srv_loop *home;        /* the loop's list of parts, while linked on it */
    weft_sock *listener;   /* NULL once closed */
    int64_t acceptor;      /* its coroutine */
    bool acceptor_started; /* it ran: it gives its reference back itself */
    bool acceptor_done;    /* its reference is given back */
    weft_sock *handoff;    /* the socket a new connection's coroutine takes */
    srv_conn *conns;
    size_t nconns;                  /* atomic: weft_server_conn_count may read it anywhere */
    weft__waitq acceptor_q;         /* the acceptor, waiting for a free slot or pausing */
    weft__waitq drain_q;            /* drains waiting for connections to end */
    struct srv_part *lnext, *lprev; /* the loop's parts */
} srv_part;

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
    unsigned refs;
    bool stopped, exited, freed;
    srv_part part;
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

/* ---- lifetime ---------------------------------------------------------------------- */

static void srv_unref(weft_server *s)
{
    if (--s->refs > 0)
        return;
    unlink_part(&s->part);
#ifdef WEFT_WITH_TLS
    /* Every connection has ended and closed its socket, except one a
     * handler closed with weft_close_after: its close_notify goes out
     * later through its own SSL, which holds a reference to the SSL_CTX;
     * a server's connections never use the context otherwise. */
    if (s->own_tls)
        weft_tls_ctx_free(s->tls);
#endif
    free(s->unix_path);
    free(s);
}

static bool all_ended(const weft_server *s)
{
    return s->part.acceptor_done && s->part.nconns == 0;
}

/* The caller holds a reference: on_exit may free the server's last other. */
static void maybe_exit(weft_server *s)
{
    if (!s->stopped || s->exited || !all_ended(s))
        return;
    s->exited = true;
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

/* The acceptor gives its reference back. */
static void acceptor_end(weft_server *s, srv_part *p)
{
    p->acceptor_done = true;
    weft__wake_all(&p->drain_q, 0);
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

/* The caller holds a reference. */
static void srv_stop(weft_server *s)
{
    if (s->stopped)
        return;
    s->stopped = true;
    srv_part *p = &s->part;
    close_listener(s, p); /* an acceptor in weft_accept wakes with -EBADF */
    weft__wake_all(&p->acceptor_q, 0);
    acceptor_check(s, p);
}

/* The loop is being freed: every coroutine has finished.  Its servers can
 * no longer run; users may still hold and free them. */
static void loop_gone(weft_loop *l, void *state)
{
    srv_loop *sl = state;
    (void)l;
    while (sl->head) {
        srv_part *p = sl->head;
        weft_server *s = p->srv;
        unlink_part(p);
        s->refs++;
        if (!p->acceptor_done) {
            /* Its acceptor never ran (otherwise the loop's closing made it
             * stop the server and return). */
            s->stopped = true;
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

/* ---- connections ------------------------------------------------------------------- */

static void conn_main(void *arg)
{
    srv_part *p = arg;
    weft_server *s = p->srv;
    srv_conn c = {.sock = p->handoff, .co = weft_self(), .next = p->conns};
    p->handoff = NULL; /* taken: the acceptor checks */
    if (p->conns)
        p->conns->prev = &c;
    p->conns = &c;

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

    if (c.prev)
        c.prev->next = c.next;
    else
        p->conns = c.next;
    if (c.next)
        c.next->prev = c.prev;
    __atomic_store_n(&p->nconns, p->nconns - 1, __ATOMIC_RELAXED);
    if (s->max_conns)
        weft__wake_all(&p->acceptor_q, 0); /* a slot is free */
    if (s->stopped)
        weft__wake_all(&p->drain_q, 0);
    maybe_exit(s);
    srv_unref(s);
}

/* Gives c a coroutine.  Returns 0 (it has taken c) or -ENOMEM (c is still
 * the caller's). */
static int spawn_conn(weft_server *s, srv_part *p, weft_sock *c)
{
    p->handoff = c;
    __atomic_store_n(&p->nconns, p->nconns + 1, __ATOMIC_RELAXED);
    s->refs++;
    weft_co_opts o = {.stack_size = s->stack_size, .eager = 1};
    int64_t id = weft_go_opts(conn_main, p, &o);
    if (id > 0 && !p->handoff)
        return 0; /* it ran (and may have ended already) */
    /* No record, or no stack: it never ran. */
    p->handoff = NULL;
    __atomic_store_n(&p->nconns, p->nconns - 1, __ATOMIC_RELAXED);
    s->refs--; /* the acceptor's own keeps the server */
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
    int64_t backoff = BACKOFF_MIN_MS;
    weft_sock *c = NULL; /* accepted, waiting for a coroutine */
    while (!s->stopped && !loop_closing()) {
        if (!c) {
            if (s->max_conns && p->nconns >= (size_t)s->max_conns) {
                /* At the limit: leave the rest in the backlog until a
                 * connection ends. */
                weft__wait w;
                weft__park(&w, &p->acceptor_q, WEFT__NEVER);
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
        if (spawn_conn(s, p, c) == 0) {
            c = NULL;
            backoff = BACKOFF_MIN_MS;
        } else {
            pause_acceptor(p, &backoff);
        }
    }
    if (c)
        weft_close(c);
    /* The loop is being freed: that stops the server too. */
    srv_stop(s);
    acceptor_end(s, p);
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
        int rc = weft_tcp_listen(&p->listener, o->host, o->port, o->backlog, o->flags);
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
    weft_server *s = weft__sys_calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->on_conn = o->on_conn;
    s->arg = o->arg;
    s->on_exit = o->on_exit;
    s->tls = o->tls;
    s->handshake_ms = o->handshake_timeout_ms ? o->handshake_timeout_ms : HANDSHAKE_MS_DEFAULT;
    s->max_conns = o->max_conns;
    s->stack_size = o->stack_size;
    s->refs = 1;
    srv_part *p = &s->part;
    p->srv = s;
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
    srv_loop *sl = loop_state(l);
    rc = -ENOMEM;
    if (!sl)
        goto fail;
    /* Eager from a coroutine: it runs at once, until it waits in accept,
     * so a stack that cannot be mapped shows here. */
    s->refs++;
    weft_co_opts co = {.eager = 1};
    int64_t id = weft_go_opts(acceptor_main, p, &co);
    if (id < 0 || (weft__current() && !p->acceptor_started)) {
        s->refs--;
        rc = id < 0 ? (int)id : -ENOMEM;
        goto fail;
    }
    p->acceptor = id;
    link_part(sl, p);
    *out = s;
    return 0;
fail:
    close_listener(s, p);
#ifdef WEFT_WITH_TLS
    if (s->own_tls)
        weft_tls_ctx_free(s->tls);
#endif
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
    return s ? __atomic_load_n(&s->part.nconns, __ATOMIC_RELAXED) : 0;
}

/* The server's loop, or NULL once it was freed. */
static weft_loop *loop_of(const weft_server *s)
{
    return __atomic_load_n(&s->part.loop, __ATOMIC_ACQUIRE);
}

void weft_server_stop(weft_server *s)
{
    if (!s || !loop_of(s) || loop_of(s) != weft__tls_loop)
        return;
    s->refs++;
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

static int cancel_rest(srv_part *p)
{
    int64_t self = weft_self();
    int n = 0;
    for (srv_conn *c = p->conns; c; c = c->next) {
        if (c->co == self || c->cancelled)
            continue;
        c->cancelled = true;
        if (weft_cancel(c->co) == 0)
            n++;
    }
    return n;
}

int weft_server_drain(weft_server *s, int64_t timeout_ms)
{
    if (!s)
        return -EINVAL;
    srv_part *p = &s->part;
    weft_loop *l = loop_of(s);
    if (!l)
        return 0; /* its loop was freed: nothing of it runs */
    if (l != weft__tls_loop)
        return -EXDEV;
    s->refs++;
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
    rc = cancel_rest(p);
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
    weft_loop *l = s ? loop_of(s) : NULL;
    if (!s || (l && l != weft__tls_loop) || s->freed)
        return;
    s->freed = true;
    s->refs++;
    if (l)
        srv_stop(s);
    srv_unref(s);
    srv_unref(s); /* the user's */
}
