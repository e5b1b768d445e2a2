/*
 * sync.h - what the sync layer's files share: waiters and their queues,
 * which thread an object belongs to, and the channel's record (select
 * works on it too).
 *
 * A call that has to wait is one waiter (weft__sync_waiter, on the
 * caller's stack) with one entry per object it waits on: one for a channel
 * operation or a lock, one per case for a select.  The entries are linked
 * on the objects' queues; the caller parks with no queue of the
 * scheduler's own.  Whoever completes an entry (a matching send, an
 * unlock, a close) unlinks every entry of that waiter, records which one
 * completed and wakes it, all at once, so a select ends exactly once and
 * nothing is left linked.  A waiter that ends early (deadline, cancel)
 * unlinks its own entries when it resumes; until then its entries are
 * "gone" (its park has been woken) and whoever finds one skips it, so a
 * value or a lock never goes to a waiter that is leaving.
 *
 * Today every object but the event belongs to one thread and needs no
 * lock (see weft__sync_enter).
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
    weft__waiter_id who; /* where it waits, for a wake from another
                          * thread (weft__wake_from); the event uses it
                          * today, the others once they cross loops */
    weft__sync_entry *entries;
    int n;      /* entries in use */
    int done;   /* 0 while waiting; then 1 + the idx of the entry completed */
    int result; /* that entry's result (0, -EPIPE) */
    int64_t id; /* mutexes: the caller, its coroutine id or 0 for the thread */
};

/* ---- which thread an object belongs to ----------------------------------- */

/* Every object but the event belongs to the thread that made it, if that
 * thread has a loop, or else to the first thread with a loop that uses
 * it; its home is that thread's address of weft__sync_mark.  A call from
 * any other thread returns -EXDEV, so the object is only ever touched by
 * one thread (coroutines never move between threads) and takes no lock.
 * An object no loop has used yet may be used by threads without a loop,
 * one at a time, as a socket no loop owns. */
extern __thread char weft__sync_mark;

static inline const void *weft__sync_home_new(void)
{
    return weft__tls_loop ? &weft__sync_mark : NULL;
}

int weft__sync_enter_slow(const void **home);

/* Returns 0, or -EXDEV if the object belongs to another thread. */
static inline int weft__sync_enter(const void **home)
{
    if (WEFT__LIKELY(*home == &weft__sync_mark))
        return 0;
    return weft__sync_enter_slow(home);
}

/* The running coroutine's id, 0 outside any coroutine. */
static inline int64_t weft__sync_self(void)
{
    weft__co *co = weft__current();
    return co ? co->id : 0;
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
 * wakes it.  The waiter must not be gone. */
static inline void weft__sync_complete(weft__sync_entry *e, int result)
{
    weft__sync_waiter *w = e->w;
    if (WEFT__LIKELY(w->n == 1))
        weft__sync_unlink(e);
    else
        for (int i = 0; i < w->n; i++)
            weft__sync_unlink(&w->entries[i]);
    w->done = e->idx + 1;
    w->result = result;
    if (w->co)
        weft__wake(&w->park, 0);
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

/* ---- mutexes (for conditions) -------------------------------------------------- */

struct weft_mutex {
    const void *home;
    bool locked;
    int64_t owner;      /* who holds it: a coroutine id, 0 for the thread */
    weft__sync_queue q; /* waiting their turn, first come first served */
};

/* Lets m go: to the first waiter if any (it holds m from then on), else
 * unlocked.  The caller holds m. */
void weft__mutex_release(weft_mutex *m);
/* Takes m for self, however long that takes: a deadline, a cancel (kept for
 * the next call), even the loop being freed.  A mutex whose holder can
 * never unlock it (a coroutine that finished holding it, the thread itself
 * inside weft_loop_free) is taken over: waiting would never end. */
void weft__mutex_relock(weft_mutex *m, int64_t self);

#endif /* WEFT_SYNC_SYNC_H */
