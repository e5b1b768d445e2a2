/*
 * sync.h - what the sync layer's files share: waiters and their queues,
 * which thread an object belongs to or whether it is shared, the lock of
 * a shared object, and the channel's record (select works on it too).
 *
 * A call that has to wait is one waiter (weft__sync_waiter, on the
 * caller's stack) with one entry per object it waits on: one for a channel
 * operation or a lock, one per case for a select.  The entries are linked
 * on the objects' queues; the caller parks with no queue of the
 * scheduler's own.
 *
 * An object is local or shared, decided when it is made (weft__multi_loop).
 * A local object belongs to its thread and takes no lock: whoever completes
 * an entry (a matching send, an unlock, a close) unlinks every entry of
 * that waiter, records which one completed and wakes it, all at once, so a
 * select ends exactly once and nothing is left linked.  A waiter that ends
 * early (deadline, cancel) unlinks its own entries when it resumes; until
 * then its entries are "gone" (its park has been woken) and whoever finds
 * one skips it, so a value or a lock never goes to a waiter that is leaving.
 *
 * A shared object has a lock (weft__lock).  The waiter links its entries
 * under the lock, records how to be woken (a coroutine by its waiter id, a
 * thread running its loop by a wake of that loop, a plain thread by a
 * futex on its done word), lets the lock go and waits.  Exactly one party
 * claims a waiter (its "claimed" flag, a CAS: Go's selectDone): a
 * completer, which wakes it (that alone can fail: -ENOMEM, and it gives
 * the claim back), completes it and publishes done last, all under the
 * object's lock; or the waiter itself when it leaves early (deadline,
 * cancel), which then takes the locks back and unlinks its entries.  A
 * waiter that loses that race waits the few instructions until done: the
 * completion counts.  A completed waiter never touches the object again,
 * so the object may be freed as soon as the completer has let the lock go.
 * Entries of a claimed waiter stay linked (the object is still in use)
 * until their waiter unlinks them; completers skip them.
 */
#ifndef WEFT_SYNC_SYNC_H
#define WEFT_SYNC_SYNC_H

#include "internal.h"

#include <string.h>

typedef struct weft__sync_waiter weft__sync_waiter;
typedef struct weft__sync_entry weft__sync_entry;

typedef struct weft__sync_queue {
    weft__sync_entry *head, *tail;
} weft__sync_queue;

/* A waiter's place on one object's queue. */
struct weft__sync_entry {
    weft__sync_entry *next, *prev;
    weft__sync_queue *q; /* the queue it is on; NULL once unlinked */
    weft__sync_waiter *w;
    void *elem; /* channels: the value to send, or where to receive */
    int idx;    /* select: the case this entry stands for; else 0 */
};

/* One blocked call. */
struct weft__sync_waiter {
    weft__wait park;     /* a coroutine's park (the scheduler's record) */
    weft__co *co;        /* NULL: a thread waiting outside any coroutine */
    weft__waiter_id who; /* how to wake it from another thread: a coroutine
                          * by id (weft__wake_from); co 0 and loop set: a
                          * thread running that loop; loop NULL: a plain
                          * thread, by its futex word */
    weft__sync_entry *entries;
    int n;      /* entries in use */
    int done;   /* 0 while waiting; then 1 + the idx of the entry completed
                 * (shared: atomic, published last; a plain thread's futex) */
    int result; /* that entry's result (0, -EPIPE) */
    int64_t id; /* mutexes: the caller, its coroutine id or 0 for the thread */
};

/* The waiter of a select, or of a wait on a shared object: the record
 * above with what only those need, so that a local wait's record, inlined
 * into the public call's frame, stays as small as it was (a larger frame
 * cost the buffered stream 3 ns a message).  Whoever reads these fields
 * knows the waiter is one: n > 1, or an entry on a shared object. */
typedef struct weft__sync_xwaiter {
    weft__sync_waiter w; /* first: a weft__sync_waiter * converts back */
    int claimed;         /* set (atomic) by the one party that ends the wait: a
                          * completer, or the waiter leaving early */
    int released;        /* a plain thread's: 1 once its completer is done with
                          * the record (after the futex wake) */
    bool shared;         /* a select with shared channels: only it unlinks */
} weft__sync_xwaiter;

static inline weft__sync_xwaiter *weft__sync_x(weft__sync_waiter *w)
{
    return (weft__sync_xwaiter *)w;
}

/* ---- which thread an object belongs to ----------------------------------- */

/* A local object belongs to the thread that made it (one with a loop that
 * is alone: weft__multi_loop false); its home is that thread's address of
 * weft__sync_mark.  A call from any other thread returns -EXDEV, so the
 * object is only ever touched by one thread (coroutines never move between
 * threads) and takes no lock.  An object made outside any loop, or on a
 * loop of a group of several, is shared: its home is &weft__sync_shared
 * and every call takes its lock. */
extern __thread char weft__sync_mark;
extern const char weft__sync_shared;

static inline const void *weft__sync_home_new(void)
{
    return weft__multi_loop() ? (const void *)&weft__sync_shared : &weft__sync_mark;
}

int weft__sync_enter_slow(const void *const *home);

/* Returns 0 (local, this thread's), 1 (shared: take its lock), or -EXDEV
 * (local to another thread). */
static inline int weft__sync_enter(const void *const *home)
{
    if (WEFT__LIKELY(*home == &weft__sync_mark))
        return 0;
    return weft__sync_enter_slow(home);
}

static inline bool weft__sync_is_shared(const void *home)
{
    return home == &weft__sync_shared;
}

/* The running coroutine's id, 0 outside any coroutine. */
static inline int64_t weft__sync_self(void)
{
    weft__co *co = weft__current();
    return co ? co->id : 0;
}

/* The same for a shared object, which threads of their own also use: a
 * thread outside any coroutine is told apart by its address of
 * weft__sync_mark, negated (coroutine ids are positive). */
static inline int64_t weft__sync_self_shared(void)
{
    weft__co *co = weft__current();
    return co ? co->id : -(int64_t)(uintptr_t)&weft__sync_mark;
}

/* ---- the lock of a shared object ------------------------------------------ */

/* 0 free, 1 held, 2 held and a thread may sleep on it.  Four bytes, so it
 * fits in the padding of every record (a local object's layout is the
 * same as without it); it spins briefly, then sleeps on a futex: the
 * sections it guards are a few stores long. */
typedef uint32_t weft__lock;

void weft__lock_wait(weft__lock *l);
void weft__lock_wake(weft__lock *l);

static inline void weft__lock_take(weft__lock *l)
{
    uint32_t z = 0;
    if (WEFT__UNLIKELY(
            !__atomic_compare_exchange_n(l, &z, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)))
        weft__lock_wait(l);
}

static inline void weft__lock_give(weft__lock *l)
{
    if (WEFT__UNLIKELY(__atomic_exchange_n(l, 0, __ATOMIC_RELEASE) == 2))
        weft__lock_wake(l);
}

/* ---- queues ------------------------------------------------------------------ */

static inline void weft__sync_link(weft__sync_queue *q, weft__sync_entry *e)
{
    e->q = q;
    e->next = NULL;
    e->prev = q->tail;
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
}

static inline void weft__sync_unlink(weft__sync_entry *e)
{
    weft__sync_queue *q = e->q;
    if (!q)
        return;
    if (e->prev)
        e->prev->next = e->next;
    else
        q->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        q->tail = e->prev;
    e->q = NULL;
}

/* True once the waiter's park has been woken (deadline, cancel) and it is
 * on its way out: its entries must not be completed. */
static inline bool weft__sync_gone(const weft__sync_waiter *w)
{
    return w->park.woken; /* false for a thread (weft__sync_waiter_init) */
}

/* The first entry of q whose waiter is still waiting; unlinks the gone
 * ones in front of it. */
static inline weft__sync_entry *weft__sync_first(weft__sync_queue *q)
{
    weft__sync_entry *e;
    while ((e = q->head) && WEFT__UNLIKELY(weft__sync_gone(e->w)))
        weft__sync_unlink(e);
    return e;
}

/* Unlinks the gone entries of q; true if none is left (nobody waits). */
static inline bool weft__sync_idle(weft__sync_queue *q)
{
    for (weft__sync_entry *e = q->head, *next; e; e = next) {
        next = e->next;
        if (weft__sync_gone(e->w))
            weft__sync_unlink(e);
    }
    return !q->head;
}

/* ---- waiting ------------------------------------------------------------------- */

/* Prepares w for the running caller with n entries (linked by the caller). */
static inline void weft__sync_waiter_init(weft__sync_waiter *w, weft__sync_entry *entries, int n)
{
    w->co = weft__current();
    w->park.woken = false;
    w->entries = entries;
    w->n = n;
    w->done = 0;
    for (int i = 0; i < n; i++) {
        entries[i].w = w;
        entries[i].q = NULL;
        entries[i].idx = 0;
    }
}

/* Completes entry e with result: unlinks every entry of its waiter and
 * wakes it.  The waiter must not be gone, and a select's must have been
 * claimed (weft__sync_take).  A select that also waits on shared channels
 * keeps its other entries until it unlinks them under their locks. */
static inline void weft__sync_complete(weft__sync_entry *e, int result)
{
    weft__sync_waiter *w = e->w;
    if (WEFT__LIKELY(w->n == 1) || weft__sync_x(w)->shared)
        weft__sync_unlink(e);
    else
        for (int i = 0; i < w->n; i++)
            weft__sync_unlink(&w->entries[i]);
    w->done = e->idx + 1;
    w->result = result;
    if (w->co)
        weft__wake(&w->park, 0);
}

/* Claims a select's or a shared wait's waiter (a weft__sync_xwaiter): true
 * for the one caller that gets it. */
static inline bool weft__sync_claim(weft__sync_waiter *w)
{
    int z = 0;
    return __atomic_compare_exchange_n(&weft__sync_x(w)->claimed, &z, 1, false, __ATOMIC_ACQ_REL,
                                       __ATOMIC_RELAXED);
}

static inline bool weft__sync_claimed(weft__sync_waiter *w)
{
    return __atomic_load_n(&weft__sync_x(w)->claimed, __ATOMIC_ACQUIRE) != 0;
}

/* weft__sync_first for a local channel's queue, where a select that also
 * waits on shared channels may be completed from another thread: the
 * first entry whose waiter is still waiting, a select's claimed for the
 * caller. */
static inline weft__sync_entry *weft__sync_take(weft__sync_queue *q)
{
    weft__sync_entry *e;
    while ((e = weft__sync_first(q)) && WEFT__UNLIKELY(e->w->n > 1) && !weft__sync_claim(e->w))
        weft__sync_unlink(e);
    return e;
}

/* Unlinks what is still linked of w (after a wait that ended early). */
static inline void weft__sync_leave(weft__sync_waiter *w)
{
    for (int i = 0; i < w->n; i++)
        weft__sync_unlink(&w->entries[i]);
}

int weft__sync_block_thread(weft__sync_waiter *w, int64_t deadline);

/* Waits, with w's entries linked, until one is completed, deadline, or a
 * cancel.  A coroutine parks.  Outside any coroutine, on a thread with a
 * loop, the thread runs the loop's steps until then (as weft_join does);
 * it returns -EDEADLK once no coroutine is left that could complete it, or
 * at once on a thread without a loop, which nobody else can wake.  Returns
 * 0 once completed (w->done), -ETIMEDOUT, -ECANCELED, -ENOMEM (the timer
 * heap), -EDEADLK; the caller then unlinks what is left (weft__sync_leave)
 * unless w->done. */
static inline __attribute__((always_inline)) int weft__sync_block(weft__sync_waiter *w,
                                                                  int64_t deadline)
{
    weft__co *co = w->co;
    if (WEFT__UNLIKELY(!co))
        return weft__sync_block_thread(w, deadline);
    /* weft__wait_here(), inline: a call returning the struct costs a
     * store-forwarding stall. */
    weft_loop *l = weft__tls_loop;
    w->who.loop = l;
    w->who.co = co->id;
    w->who.seq = l->wait_seq + 1;
    if (deadline != WEFT__NEVER || co->cancel_pending || l->closing)
        return weft__park2(&w->park, NULL, NULL, NULL, deadline);
    /* weft__park2 (sched/wait.c) for a wait with no deadline, inline, so
     * that the calling function is the one that switches: each frame
     * between a caller's code and the switch costs mispredicted returns
     * (the return stack holds the other side's addresses then): 10 ns a
     * message through an unbuffered channel, which costs 50 without it
     * (bench/bench_chan.c).  The fields are the ones weft__park2 sets;
     * keep the two in step. */
    weft__wait *p = &w->park;
    p->co = co;
    p->seq = ++l->wait_seq;
    p->tm.deadline = WEFT__NEVER;
    p->tm.heap_idx = SIZE_MAX;
    p->tm.fire = NULL;
    p->q = NULL;
    p->twin = NULL;
    p->result = 0;
    p->woken = false;
    co->wait = p;
    co->state = WEFT__CO_WAITING;
    weft__fiber_suspend(&co->fiber, &l->sched);
    co->wait = NULL;
    return p->result;
}

/* ---- waiting on shared objects -------------------------------------------- */

/* Under the lock of e's object: claims e's waiter and wakes it.  Returns
 * 1 (the caller completes it: weft__sync_finish), 0 (another party has
 * it: skip e, leave it linked, go on), or -ENOMEM (a coroutine of another
 * loop could not be woken: nothing happened, e is still waiting). */
int weft__sync_claim_shared(weft__sync_entry *e);

/* The first entry of q claimed and woken (weft__sync_claim_shared), or
 * NULL; *rc 0, or -ENOMEM if the first claimable one could not be woken. */
weft__sync_entry *weft__sync_claim_first(weft__sync_queue *q, int *rc);

/* The first entry of q whose waiter nobody has claimed, or NULL. */
static inline weft__sync_entry *weft__sync_first_unclaimed(weft__sync_queue *q)
{
    weft__sync_entry *e = q->head;
    while (e && weft__sync_claimed(e->w))
        e = e->next;
    return e;
}

/* Under the lock of e's object, once claimed: unlinks e, records its
 * result and publishes done, after which the record is not touched (the
 * waiter may return at once). */
void weft__sync_finish(weft__sync_entry *e, int result);

/* With the n locks held (in the order given) and the entries of w (a
 * weft__sync_xwaiter's) linked: records how w is to be woken, lets the
 * locks go and waits until it is completed, deadline or a cancel.  A
 * coroutine parks; a thread with a loop runs its steps; a plain thread
 * sleeps.  Returns with no lock held: 0 once completed (w->done; a cancel
 * that came meanwhile is kept for the next call; the completed object is
 * not touched again; a select's other entries are still linked, for the
 * caller to unlink under their locks), else -ETIMEDOUT, -ECANCELED,
 * -ENOMEM (the timer heap), with every entry of w unlinked. */
int weft__sync_wait_shared(weft__sync_waiter *w, weft__lock *const *locks, int n, int64_t deadline);

/* weft__deadline(timeout_ms) for a waiter: without a call for the common
 * "forever". */
static inline int64_t weft__sync_deadline(const weft__sync_waiter *w, int64_t timeout_ms)
{
    if (timeout_ms == -1 && w->co)
        return w->co->deadline;
    return weft__deadline(timeout_ms);
}

/* Makes the running coroutine's next blocking call return -ECANCELED: for
 * a cancel that came while the call it was meant for succeeded anyway. */
static inline void weft__sync_cancel_later(weft__co *co)
{
    if (co)
        co->cancel_pending = true;
}

/* ---- channels -------------------------------------------------------------- */

struct weft_chan {
    const void *home;
    size_t elem_size;
    size_t cap;  /* 0: unbuffered */
    size_t head; /* index of the oldest buffered value */
    size_t len;  /* values buffered (written relaxed-atomic:
                  * weft_chan_len may read it from anywhere) */
    bool closed;
    weft__lock lock;        /* shared channels only */
    weft__sync_queue sendq; /* senders waiting: only when the buffer is full */
    weft__sync_queue recvq; /* receivers waiting: only when it is empty */
    unsigned char buf[];    /* cap values of elem_size bytes, a ring */
};

/* One attempt, without waiting.  Return 0 (done), -EPIPE (closed; for a
 * receive: closed and drained) or -EAGAIN (it would have to wait). */
int weft__chan_try_send(weft_chan *c, const void *elem);
int weft__chan_try_recv(weft_chan *c, void *elem);
/* True if an attempt would not return -EAGAIN. */
bool weft__chan_ready(weft_chan *c, int op);
/* The same for a shared channel, under its lock; the attempts may also
 * return -ENOMEM (a waiter of another loop could not be woken: nothing
 * happened), and -EAGAIN after a ready answer when the counterpart was a
 * select that another channel completed meanwhile. */
int weft__chan_try_send_locked(weft_chan *c, const void *elem);
int weft__chan_try_recv_locked(weft_chan *c, void *elem);
bool weft__chan_ready_locked(weft_chan *c, int op);

/* ---- mutexes (for conditions) -------------------------------------------------- */

struct weft_mutex {
    const void *home;
    bool locked;
    weft__lock lock;    /* shared mutexes only */
    int64_t owner;      /* who holds it: a coroutine id, 0 for the thread */
    weft__sync_queue q; /* waiting their turn, first come first served */
};

/* For conditions, either kind of mutex.  Checks that the caller holds m
 * and lets it go (to the first waiter if any); *self is the caller as m
 * knows it.  Returns 0, -EPERM (not held by the caller), -ENOMEM (a
 * shared mutex's waiter of another loop could not be woken: m is still
 * held). */
int weft__mutex_let_go(weft_mutex *m, int64_t *self);
/* Takes m for self, however long that takes: a deadline, a cancel (kept for
 * the next call), even the loop being freed.  A mutex whose holder can
 * never unlock it (a coroutine of this loop that finished holding it, the
 * thread itself inside weft_loop_free) is taken over: waiting would never
 * end. */
void weft__mutex_take_back(weft_mutex *m, int64_t self);

#endif /* WEFT_SYNC_SYNC_H */
