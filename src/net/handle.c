/*
 * handle.c - socket handles, and which loop owns each socket.
 *
 * Users hold a weft_sock *, which is not a pointer but a handle: a slot of
 * one process-wide table and that slot's generation.  Closing a socket
 * bumps the generation, so a handle used after its socket was closed (a
 * second close, a call after "closed under you", a late call from another
 * thread) fails with -EBADF instead of touching freed memory.  Slots live
 * in chunks that are never freed, so a look-up needs no lock, from any
 * thread; slots are reused oldest first.
 *
 * A socket belongs to one loop: the loop that made it, or, for one made on
 * a thread without a loop, the first loop that uses it.  Calls from any
 * other thread fail with -EXDEV without touching the socket, except
 * weft_close, which hands the close to the owning loop.  A loop being
 * freed lets go of its sockets: they belong to no loop again.
 */
#include "sock.h"

#include <pthread.h>
#include <stdlib.h>

#define CHUNK_SIZE (1u << WEFT__SOCK_CHUNK_BITS)

weft__sock_slot *weft__sock_chunks[WEFT__SOCK_CHUNKS];

/* Allocation, the free list and every change of a slot's owner happen under
 * this lock; look-ups take none. */
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t free_head, free_tail; /* slot + 1; 0: empty */
static uint32_t chunks_used;

static weft__sock_slot *slot_at(uint32_t idx)
{
    return &weft__sock_chunks[idx >> WEFT__SOCK_CHUNK_BITS][idx & (CHUNK_SIZE - 1)];
}

/* Adds a chunk of free slots.  Under table_lock. */
static int grow(void)
{
    if (chunks_used == WEFT__SOCK_CHUNKS)
        return -ENOMEM;
    weft__sock_slot *c = weft__sys_calloc(CHUNK_SIZE, sizeof *c);
    if (!c)
        return -ENOMEM;
    uint32_t base = chunks_used << WEFT__SOCK_CHUNK_BITS;
    for (uint32_t i = 0; i < CHUNK_SIZE; i++) {
        c[i].gen = 1;
        c[i].next = i + 1 < CHUNK_SIZE ? base + i + 2 : 0;
    }
    __atomic_store_n(&weft__sock_chunks[chunks_used++], c, __ATOMIC_RELEASE);
    free_head = base + 1;
    free_tail = base + CHUNK_SIZE;
    return 0;
}

/* ---- what a loop owns ---------------------------------------------------------- */

/* A close another thread asked of a loop. */
typedef struct close_req {
    weft_sock *h;
    weft__sock *s; /* once claimed */
    bool reset;
} close_req;

/* A loop's sockets, and the closes other threads asked of it. */
typedef struct owned {
    weft__sock *head;
    close_req *req; /* under table_lock */
    size_t nreq, capreq;
    bool posted; /* a post to run them is on its way */
} owned;

static void release_loop(weft_loop *l, void *state);
static weft__ext_key owned_key = {"sockets", release_loop, 0};

static owned *owned_of(weft_loop *l, bool make)
{
    owned *o = weft__loop_ext(l, &owned_key);
    if (o || !make)
        return o;
    if (!(o = weft__sys_calloc(1, sizeof *o)))
        return NULL;
    if (weft__loop_ext_set(l, &owned_key, o) < 0) {
        free(o);
        return NULL;
    }
    return o;
}

/* On l's thread.  Links s into l's list (the slot's owner is set apart). */
static void link_owned(owned *o, weft__sock *s, weft_loop *l)
{
    s->loop = l;
    /* On a completion backend its receives and sends go through the ring. */
    if (l->be->submit)
        s->flags |= WEFT__SOCK_RING;
    else
        s->flags &= ~(unsigned)WEFT__SOCK_RING;
    s->lprev = NULL;
    s->lnext = o->head;
    if (o->head)
        o->head->lprev = s;
    o->head = s;
}

int weft__sock_own(weft_loop *l, weft__sock *s)
{
    owned *o = owned_of(l, true);
    if (!o)
        return -ENOMEM;
    link_owned(o, s, l);
    return 0;
}

void weft__sock_disown(weft__sock *s)
{
    weft_loop *l = s->loop;
    if (!l)
        return;
    if (s->lprev)
        s->lprev->lnext = s->lnext;
    else
        ((owned *)weft__loop_ext(l, &owned_key))->head = s->lnext;
    if (s->lnext)
        s->lnext->lprev = s->lprev;
    s->lnext = s->lprev = NULL;
    s->loop = NULL;
}

/* ---- slots ------------------------------------------------------------------------ */

int weft__sock_slot_new(weft__sock *s)
{
    weft_loop *l = weft__tls_loop;
    owned *o = l ? owned_of(l, true) : NULL;
    if (l && !o)
        return -ENOMEM;
    pthread_mutex_lock(&table_lock);
    if (!free_head && grow() < 0) {
        pthread_mutex_unlock(&table_lock);
        return -ENOMEM;
    }
    uint32_t idx = free_head - 1;
    weft__sock_slot *e = slot_at(idx);
    free_head = e->next;
    if (!free_head)
        free_tail = 0;
    e->next = 0;
    e->s = s;
    __atomic_store_n(&e->owner, l, __ATOMIC_RELAXED);
    s->idx = idx;
    s->gen = e->gen;
    pthread_mutex_unlock(&table_lock);
    if (l)
        link_owned(o, s, l);
    return 0;
}

/* Kills s's handle and puts its slot at the end of the free list.  Under
 * table_lock. */
static void kill_handle(weft__sock *s)
{
    weft__sock_slot *e = slot_at(s->idx);
    s->closing = true;
    /* From here on no copy of the handle finds the socket. */
    __atomic_store_n(&e->gen, e->gen + 1 ? e->gen + 1 : 1, __ATOMIC_RELEASE);
    e->s = NULL;
    __atomic_store_n(&e->owner, NULL, __ATOMIC_RELAXED);
    /* Oldest first: a slot comes back as late as it can. */
    if (free_tail)
        slot_at(free_tail - 1)->next = s->idx + 1;
    else
        free_head = s->idx + 1;
    free_tail = s->idx + 1;
}

int weft__sock_claim(weft__sock *s)
{
    pthread_mutex_lock(&table_lock);
    bool first = !s->closing;
    if (first)
        kill_handle(s);
    pthread_mutex_unlock(&table_lock);
    return first ? 0 : -EBADF;
}

/* The socket h names, claimed for closing (as weft__sock_claim), or NULL.
 * Under table_lock. */
static weft__sock *claim_handle(weft_sock *h)
{
    weft__sock_slot *e = weft__sock_slot_of(h);
    weft__sock *s = e ? e->s : NULL;
    if (!s || s->closing)
        return NULL;
    kill_handle(s);
    return s;
}

/* The owner check failed: no loop owns the socket yet (it becomes the
 * calling loop's), or another does. */
int weft__sock_enter_slow(const weft_sock *h, weft__sock **out)
{
    weft_loop *l = weft__tls_loop;
    weft__sock_slot *e = weft__sock_slot_of(h);
    if (!e)
        return -EBADF;
    /* Another loop's: say so without making anything. */
    weft_loop *seen = __atomic_load_n(&e->owner, __ATOMIC_RELAXED);
    if (seen && seen != l)
        return -EXDEV;
    owned *o = l ? owned_of(l, true) : NULL;
    if (l && !o)
        return -ENOMEM;
    int rc = 0;
    pthread_mutex_lock(&table_lock);
    /* Again under the lock: closed, or closed and its slot reused, since
     * the look-up. */
    e = weft__sock_slot_of(h);
    weft__sock *s = e ? e->s : NULL;
    weft_loop *owner = e ? e->owner : NULL;
    if (!s)
        rc = -EBADF;
    else if (owner && owner != l)
        rc = -EXDEV;
    else if (!owner && l)
        __atomic_store_n(&e->owner, l, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&table_lock);
    if (rc < 0)
        return rc;
    if (!owner && l)
        link_owned(o, s, l);
    *out = s;
    return 0;
}

/* ---- closes from other threads ---------------------------------------------------- */

/* Runs on the owning loop, in a coroutine: the closes other threads asked
 * for.  A socket closed meanwhile by its loop is skipped: its handle no
 * longer matches. */
static void run_close_requests(void *arg)
{
    weft_loop *l = arg;
    owned *o = weft__loop_ext(l, &owned_key);
    for (;;) {
        pthread_mutex_lock(&table_lock);
        if (o->nreq == 0) {
            o->posted = false;
            pthread_mutex_unlock(&table_lock);
            return;
        }
        close_req r = o->req[--o->nreq];
        weft__sock_slot *e = weft__sock_slot_of(r.h);
        weft__sock *s = e && e->owner == l ? claim_handle(r.h) : NULL;
        pthread_mutex_unlock(&table_lock);
        if (s)
            weft__sock_close_claimed(s, r.reset);
    }
}

static int queue_request(owned *o, weft_sock *h, bool reset)
{
    if (o->nreq == o->capreq) {
        size_t cap = o->capreq ? o->capreq * 2 : 8;
        close_req *r = weft__sys_realloc(o->req, cap * sizeof *r);
        if (!r)
            return -ENOMEM;
        o->req = r;
        o->capreq = cap;
    }
    o->req[o->nreq++] = (close_req){h, NULL, reset};
    return 0;
}

int weft__sock_close_foreign(weft_sock *h, bool reset)
{
    pthread_mutex_lock(&table_lock);
    weft__sock_slot *e = weft__sock_slot_of(h);
    if (!e || !e->s || e->s->closing) {
        pthread_mutex_unlock(&table_lock);
        return -EBADF;
    }
    weft_loop *owner = e->owner;
    if (!owner) {
        /* No loop owns it: close it here, as a plain descriptor. */
        weft__sock *s = claim_handle(h);
        pthread_mutex_unlock(&table_lock);
        return weft__sock_close_claimed(s, reset);
    }
    /* The owner's state and the loop itself outlive this: a loop lets go
     * of its sockets under this lock before it is freed. */
    owned *o = weft__loop_ext(owner, &owned_key);
    int rc = queue_request(o, h, reset);
    if (rc == 0 && !o->posted) {
        rc = weft__loop_post(owner, run_close_requests, owner);
        if (rc == 0)
            o->posted = true;
        else
            o->nreq--;
    }
    pthread_mutex_unlock(&table_lock);
    return rc;
}

/* ---- a loop being freed ----------------------------------------------------------- */

/* Its coroutines have all finished: let go of its sockets (they outlive
 * the loop, owned by none), then close what other threads asked for. */
static void release_loop(weft_loop *l, void *state)
{
    owned *o = state;
    /* A read-ahead's bytes sit in the loop's buffers: out of them first;
     * a read-ahead or accept-ahead in its ring stops. */
    for (weft__sock *s = o->head; s; s = s->lnext) {
        weft__sock_rx_detach(s);
        weft__sock_ax_detach(s);
    }
    pthread_mutex_lock(&table_lock);
    for (weft__sock *s = o->head; s;) {
        weft__sock *next = s->lnext;
        __atomic_store_n(&slot_at(s->idx)->owner, NULL, __ATOMIC_RELAXED);
        s->loop = NULL;
        s->armed = false; /* the poller goes with the loop */
        s->lnext = s->lprev = NULL;
        s = next;
    }
    o->head = NULL;
    /* What other threads asked to close: claimed now, closed below. */
    for (size_t i = 0; i < o->nreq; i++)
        o->req[i].s = claim_handle(o->req[i].h);
    size_t n = o->nreq;
    o->nreq = 0;
    pthread_mutex_unlock(&table_lock);
    for (size_t i = 0; i < n; i++)
        if (o->req[i].s)
            weft__sock_close_claimed(o->req[i].s, o->req[i].reset);
    (void)l;
    free(o->req);
    free(o);
}
