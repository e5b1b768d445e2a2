/*
 * weft/sync.h - coroutine-aware sync: channels and select, mutexes,
 * conditions, events, wait groups, semaphores.
 * Part of weft.h, which is the one header to include; the conventions at
 * the top of weft.h hold for every function here.
 *
 * What all of them share:
 *   - Waiting parks the coroutine, never the thread; every wait takes a
 *     timeout, ends at the coroutine's deadline (-ETIMEDOUT) and on
 *     weft_cancel (-ECANCELED), and a wait that ends early leaves nothing
 *     behind: it took no value, lock, permit or signal, and the object may
 *     be freed as soon as it has returned.  Waiters are served in the order
 *     they came.  A finite wait can also fail with -ENOMEM (the timer heap).
 *   - A channel, mutex, condition, wait group or semaphore belongs to the
 *     thread that made it, if that thread runs a loop, or else to the first
 *     thread with a loop that uses it.  Calls from any other thread return
 *     -EXDEV and change nothing.  An object no loop has used yet may be used
 *     by threads without a loop, one at a time.  Events work from any
 *     thread (see below).
 *   - Outside any coroutine, on the thread whose loop it belongs to, a call
 *     that has to wait runs the loop's steps until it can complete (as
 *     weft_join does), and returns -EDEADLK once no coroutine is left that
 *     could complete it.  On a thread without a loop nothing could ever
 *     complete such a wait: it returns -EDEADLK at once (-ETIMEDOUT with
 *     timeout 0).
 *   - weft_*_free returns -EBUSY, and frees nothing, while a call is waiting
 *     on the object (a mutex: also while it is locked); 0 once freed.  NULL
 *     is a no-op that returns 0.  Free may be called from any thread, but
 *     not while another call uses the object; after it, the pointer is gone
 *     as after free(3): a second free, or any call, is undefined.
 *   - Calls that change state without waiting (close, unlock, signal, set,
 *     add, release) never block, and return >= 0 or a negative code: the
 *     misuses Go would panic on (a second close, an unlock by another, a
 *     wait group below zero) are errors that change nothing.
 *   - A NULL object, or a NULL argument a call needs, is -EINVAL.
 *
 * A producer and a consumer:
 *
 *     weft_chan *c;
 *     weft_chan_new(&c, sizeof(int), 16);          // 16 ints buffered
 *     ...producer:  for (int i = 0; i < n; i++) weft_chan_send(c, &i, -1);
 *                   weft_chan_close(c);
 *     ...consumer:  int v;
 *                   while (weft_chan_recv(c, &v, 5000) == 0) use(v);
 *                   // -EPIPE: closed and drained; -ETIMEDOUT: 5 s idle
 *     ...once both have returned: weft_chan_free(c);
 */
#ifndef WEFT_H_SYNC
#define WEFT_H_SYNC

#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Channels                                                                  */

typedef struct weft_chan weft_chan;

/* Makes a channel of values of elem_size bytes (0 is allowed: a channel of
 * signals), buffering up to capacity of them; capacity 0 makes it
 * unbuffered: each send waits for a receive to take its value.  Errors:
 * -EINVAL (out NULL; capacity, or the buffer's elem_size * capacity bytes,
 * over half the address space), -ENOMEM.
 * Never blocks.  Free it with weft_chan_free. */
WEFT_EXTERN int weft_chan_new(weft_chan **out, size_t elem_size, size_t capacity);

/* Sends a copy of the elem_size bytes at elem: straight to a receiver that
 * is waiting, else into the buffer if it has room, else waits for either.
 * Returns 0 once the value is taken or buffered; -EPIPE if the channel is
 * or gets closed before that (the value was not sent); -ETIMEDOUT,
 * -ECANCELED (the value was not sent either); -EINVAL (c NULL, elem NULL
 * with elem_size > 0); -EXDEV; -EDEADLK.  Blocks.  elem is read when the
 * value is taken, so it must stay valid until the call returns. */
WEFT_EXTERN int weft_chan_send(weft_chan *c, const void *elem, int64_t timeout_ms);

/* Receives the oldest value into elem (elem_size bytes; NULL discards it):
 * from the buffer, else from a waiting sender, else waits for one.  Returns
 * 0; -EPIPE once the channel is closed and every buffered value has been
 * received; -ETIMEDOUT, -ECANCELED (nothing was taken); -EINVAL (c NULL);
 * -EXDEV; -EDEADLK.  Blocks. */
WEFT_EXTERN int weft_chan_recv(weft_chan *c, void *elem, int64_t timeout_ms);

/* Closes the channel (Go's close without the panics): every waiting sender
 * returns -EPIPE, so does every later send; waiting receivers return
 * -EPIPE (they wait only while the buffer is empty), later ones first get
 * what is buffered, then -EPIPE.  Returns 0, -EPIPE (already closed),
 * -EINVAL (c NULL), -EXDEV.  Never blocks.  The channel must still be
 * freed. */
WEFT_EXTERN int weft_chan_close(weft_chan *c);

/* Values buffered now; 0 for NULL.  From another thread the count may
 * already be stale when it returns. */
WEFT_EXTERN size_t weft_chan_len(const weft_chan *c);

/* Frees the channel and what is still buffered in it.  Returns 0, -EBUSY
 * (a call is waiting on it: close it first, and free it once they have
 * returned).  See the rules above. */
WEFT_EXTERN int weft_chan_free(weft_chan *c);

enum { WEFT_CHAN_SEND = 1, WEFT_CHAN_RECV = 2 };

typedef struct weft_select_case {
    weft_chan *chan; /* NULL: this case is off (Go's nil channel), skipped */
    int op;          /* WEFT_CHAN_SEND or WEFT_CHAN_RECV */
    void *elem;      /* the value to send, or where to receive (NULL discards) */
    int result;      /* set in the case that completed: 0, or -EPIPE (closed) */
} weft_select_case;

/* Completes exactly one of the n cases: one that can go at once, chosen at
 * random among all those that can (so none starves), else the first one
 * whose counterpart arrives within the timeout.  A case on a closed
 * channel can always go: it completes with result -EPIPE.  Returns the
 * index of that case (cases[i].result says how it went); -ETIMEDOUT,
 * -ECANCELED (no case happened); -EINVAL (n < 0 or over 65536, cases NULL,
 * an op that is neither, a send's elem NULL with elem_size > 0); -EXDEV
 * (a channel of another thread); -ENOMEM (more than 8 cases wait at once
 * and their records cannot be allocated); -EDEADLK.  With every case off
 * (or n 0) it just waits out the timeout.  Blocks. */
WEFT_EXTERN int weft_select(weft_select_case *cases, int n, int64_t timeout_ms);

/* ------------------------------------------------------------------------ */
/* Mutexes and conditions                                                    */

typedef struct weft_mutex weft_mutex;

/* Makes an unlocked mutex.  -EINVAL (out NULL), -ENOMEM.  Never blocks. */
WEFT_EXTERN int weft_mutex_new(weft_mutex **out);

/* Locks m for the calling coroutine (outside any coroutine: for the
 * thread).  Waiters get m in the order they came: an unlock hands it to the
 * first of them directly.  Returns 0; -ETIMEDOUT, -ECANCELED (m was not
 * taken); -EDEADLK (the caller holds m already, or see the rules above);
 * -EINVAL (m NULL); -EXDEV.  Blocks. */
WEFT_EXTERN int weft_mutex_lock(weft_mutex *m, int64_t timeout_ms);

/* Unlocks m, handing it to the first waiter if any.  Returns 0, -EPERM (the
 * caller does not hold m), -EINVAL (m NULL), -EXDEV.  Never blocks.  A
 * coroutine that ends holding m leaves it locked (only a condition wait
 * that must have m back takes it over, see weft_cond_wait). */
WEFT_EXTERN int weft_mutex_unlock(weft_mutex *m);

/* Frees m.  Returns 0, -EBUSY (locked, or waited on).  See the rules above. */
WEFT_EXTERN int weft_mutex_free(weft_mutex *m);

typedef struct weft_cond weft_cond;

/* Makes a condition variable.  -EINVAL (out NULL), -ENOMEM.  Never blocks. */
WEFT_EXTERN int weft_cond_new(weft_cond **out);

/* Unlocks m and waits for a signal, as one step, then locks m again.  m is
 * held again on every return, whatever the result: getting it back waits
 * as long as that takes, beyond the timeout, and a cancel that comes while
 * it does is kept for the caller's next blocking call.  If whoever holds m
 * by then can never unlock it (a coroutine that ended holding it, or the
 * thread itself, inside weft_loop_free), the wait takes m over.  Returns 0
 * (signalled); -ETIMEDOUT, -ECANCELED; -EPERM (the caller does not hold m:
 * nothing happened); -EINVAL (c or m NULL); -EXDEV; -EDEADLK.  There are no
 * spurious wake-ups, but another caller may have changed the state before
 * this one got m back: check the condition in a loop.  Blocks. */
WEFT_EXTERN int weft_cond_wait(weft_cond *c, weft_mutex *m, int64_t timeout_ms);

/* Wakes the first waiter (signal) or all of them (broadcast); with none it
 * does nothing.  Returns 0, -EINVAL (c NULL), -EXDEV.  Never blocks; the
 * caller need not hold the mutex. */
WEFT_EXTERN int weft_cond_signal(weft_cond *c);
WEFT_EXTERN int weft_cond_broadcast(weft_cond *c);

/* Frees c.  Returns 0, -EBUSY (waited on).  See the rules above. */
WEFT_EXTERN int weft_cond_free(weft_cond *c);

/* ------------------------------------------------------------------------ */
/* Events (co::Event): the way another thread wakes a coroutine              */

typedef struct weft_event weft_event;

/* Makes an event, not set.  manual_reset 0: each set lets one wait through
 * and the event resets itself as it does (a set with nobody waiting stays
 * until one wait takes it); non-zero: a set lets every wait through, now
 * and later, until weft_event_reset.  -EINVAL (out NULL), -ENOMEM, -EAGAIN.
 * Never blocks.  Unlike the other sync objects an event belongs to no
 * thread: every call below works from any thread, with or without a loop,
 * and wakes coroutines of any loop. */
WEFT_EXTERN int weft_event_new(weft_event **out, int manual_reset);

/* Waits until the event is set (returns at once if it is, taking the set if
 * the event resets itself).  A coroutine parks; a thread without a loop
 * waits on a condition variable; outside any coroutine on a thread with a
 * loop, the thread runs its loop's steps meanwhile (a set from another
 * thread ends them).  Returns 0; -ETIMEDOUT, -ECANCELED (nothing taken);
 * -EINVAL (e NULL).  A set that comes as the wait times out or is
 * cancelled still counts: the call returns 0, and the cancel is kept for
 * the coroutine's next blocking call.  Blocks. */
WEFT_EXTERN int weft_event_wait(weft_event *e, int64_t timeout_ms);

/* Sets the event: wakes the first waiter (auto reset: the event is then not
 * set) or every waiter (manual reset: it stays set).  From any thread,
 * inside a loop or not.  Returns 0, -EINVAL (e NULL), -ENOMEM (waking a
 * coroutine of another loop needed memory that could not be had: that
 * waiter and those after it still wait and the event stays set; call
 * again).  Never blocks (it takes the event's lock briefly). */
WEFT_EXTERN int weft_event_set(weft_event *e);

/* Makes the event not set.  Returns 0, -EINVAL (e NULL).  Any thread. */
WEFT_EXTERN int weft_event_reset(weft_event *e);

/* Frees e.  Returns 0, -EBUSY (waited on).  See the rules above; any
 * thread, once no other call is using e. */
WEFT_EXTERN int weft_event_free(weft_event *e);

/* ------------------------------------------------------------------------ */
/* Wait groups and semaphores                                                */

typedef struct weft_wg weft_wg;

/* Makes a wait group with its counter at 0.  -EINVAL, -ENOMEM. */
WEFT_EXTERN int weft_wg_new(weft_wg **out);

/* Adds n (which may be negative) to the counter; reaching 0 wakes every
 * waiter.  Returns the new counter (>= 0); -EINVAL (g NULL, or the counter
 * would go below 0: nothing changed), -EOVERFLOW (above INT_MAX: nothing
 * changed), -EXDEV.  Never blocks.  weft_wg_done is weft_wg_add(g, -1). */
WEFT_EXTERN int weft_wg_add(weft_wg *g, int n);
WEFT_EXTERN int weft_wg_done(weft_wg *g);

/* Waits until the counter is 0 (returns at once if it is).  Returns 0,
 * -ETIMEDOUT, -ECANCELED, -EINVAL (g NULL), -EXDEV, -EDEADLK.  Blocks. */
WEFT_EXTERN int weft_wg_wait(weft_wg *g, int64_t timeout_ms);

/* Frees g.  Returns 0, -EBUSY (waited on).  See the rules above. */
WEFT_EXTERN int weft_wg_free(weft_wg *g);

typedef struct weft_sem weft_sem;

/* Makes a counting semaphore with count permits.  -EINVAL, -ENOMEM. */
WEFT_EXTERN int weft_sem_new(weft_sem **out, unsigned count);

/* Takes a permit, waiting for one if there is none.  Waiters get permits in
 * the order they came.  Returns 0; -ETIMEDOUT, -ECANCELED (no permit
 * taken); -EINVAL (s NULL); -EXDEV; -EDEADLK.  Blocks. */
WEFT_EXTERN int weft_sem_acquire(weft_sem *s, int64_t timeout_ms);

/* Gives a permit back: to the first waiter if any, else to the count.
 * Returns 0, -EOVERFLOW (the count is at UINT_MAX: nothing changed),
 * -EINVAL (s NULL), -EXDEV.  Never blocks. */
WEFT_EXTERN int weft_sem_release(weft_sem *s);

/* Frees s.  Returns 0, -EBUSY (waited on).  See the rules above. */
WEFT_EXTERN int weft_sem_free(weft_sem *s);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H_SYNC */
