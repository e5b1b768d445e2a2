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
 *   - A channel, mutex, condition, wait group or semaphore made on a loop
 *     that runs alone is local: it belongs to that loop's thread, takes no
 *     lock, and calls from any other thread return -EXDEV and change
 *     nothing.  One made outside any loop, or on a loop of a group of
 *     several (weft_config.threads), is shared: it has a lock and works
 *     from every thread, for coroutines of any loop, for a loop's own
 *     thread outside its coroutines and for plain threads.  Which one is
 *     decided when it is made.  Events work from any thread (see below).
 *   - Outside any coroutine, a call that has to wait blocks the thread.  On
 *     a thread with a loop, the thread runs that loop's steps meanwhile (as
 *     weft_join does); a wait on a local object returns -EDEADLK once no
 *     coroutine is left that could complete it.  A plain thread sleeps
 *     until a shared object's call completes it or its timeout passes; on a
 *     local object of its own (made on a loop since freed) nothing could
 *     ever complete a wait: it returns -EDEADLK at once (-ETIMEDOUT with
 *     timeout 0).
 *   - On a shared object a call that completes as its timeout passes or as
 *     it is cancelled still counts: it returns 0 (the value was taken, the
 *     lock handed over), and a cancel is kept for the coroutine's next
 *     blocking call.  A call that completes another loop's waiter asks
 *     that loop to wake it, which takes memory: when there is none it
 *     returns -ENOMEM and changes nothing for that waiter (it still waits),
 *     as each call below says.
 *   - weft_*_free returns -EBUSY, and frees nothing, while a call is waiting
 *     on the object (a mutex: also while it is locked); 0 once freed.  A
 *     call that has returned no longer counts, on any thread.  NULL
 *     is a no-op that returns 0.  Free may be called from any thread, but
 *     not while another call uses the object; after it, the pointer is gone
 *     as after free(3): a second free, or any call, is undefined.
 *   - Calls that change state without waiting (close, unlock, signal, set,
 *     add, release) never block (a shared object's lock is held for a few
 *     stores at a time), and return >= 0 or a negative code: the
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
 * with elem_size > 0); -EXDEV; -EDEADLK; -ENOMEM (shared: a receiver of
 * another loop could not be woken; the value was not sent).  Blocks.  elem
 * is read when the value is taken, so it must stay valid until the call
 * returns. */
WEFT_EXTERN int weft_chan_send(weft_chan *c, const void *elem, int64_t timeout_ms);

/* Receives the oldest value into elem (elem_size bytes; NULL discards it):
 * from the buffer, else from a waiting sender, else waits for one.  Returns
 * 0; -EPIPE once the channel is closed and every buffered value has been
 * received; -ETIMEDOUT, -ECANCELED (nothing was taken); -EINVAL (c NULL);
 * -EXDEV; -EDEADLK; -ENOMEM (shared: a sender of another loop could not
 * be woken; nothing was taken).  Blocks. */
WEFT_EXTERN int weft_chan_recv(weft_chan *c, void *elem, int64_t timeout_ms);

/* Closes the channel (Go's close without the panics): every waiting sender
 * returns -EPIPE, so does every later send; waiting receivers return
 * -EPIPE (they wait only while the buffer is empty), later ones first get
 * what is buffered, then -EPIPE.  Returns 0, -EPIPE (already closed),
 * -EINVAL (c NULL), -EXDEV, -ENOMEM (shared: closed, but a waiter of
 * another loop could not be woken and still waits; a second close wakes
 * it, then returns -EPIPE).  Never blocks.  The channel must still be
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
 * (a local channel of another thread); -ENOMEM (more than 8 cases and
 * their records cannot be allocated, or the chosen case's counterpart is
 * another loop's and could not be woken: no case happened); -EDEADLK.
 * With every case off (or n 0) it just waits out the timeout.  Shared and
 * local channels may be mixed, since the local ones must be the caller's
 * thread's anyway; a thread without a loop waits only on shared ones.
 * Blocks. */
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
 * -EINVAL (m NULL); -EXDEV.  Blocks.  A shared mutex tells its callers
 * apart across threads: each coroutine, and each thread outside its
 * coroutines. */
WEFT_EXTERN int weft_mutex_lock(weft_mutex *m, int64_t timeout_ms);

/* Unlocks m, handing it to the first waiter if any.  Returns 0, -EPERM (the
 * caller does not hold m), -EINVAL (m NULL), -EXDEV, -ENOMEM (shared: the
 * first waiter is another loop's and could not be woken; the caller still
 * holds m).  Never blocks.  A
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
 * nothing happened); -EINVAL (c or m NULL); -EXDEV; -EDEADLK; -ENOMEM (m
 * is shared and its next holder could not be woken: nothing happened, m
 * is still held).  Either may be local (then the caller's thread's) and
 * the other shared.  There are no
 * spurious wake-ups, but another caller may have changed the state before
 * this one got m back: check the condition in a loop.  Blocks. */
WEFT_EXTERN int weft_cond_wait(weft_cond *c, weft_mutex *m, int64_t timeout_ms);

/* Wakes the first waiter (signal) or all of them (broadcast); with none it
 * does nothing.  Returns 0, -EINVAL (c NULL), -EXDEV, -ENOMEM (shared: a
 * waiter of another loop could not be woken and still waits).  Never
 * blocks; the caller need not hold the mutex. */
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
 * changed), -EXDEV, -ENOMEM (shared: the counter is 0 now, but a waiter
 * of another loop could not be woken and still waits; an add that leaves
 * it at 0, weft_wg_add(g, 0), tries again).  Never blocks.  weft_wg_done
 * is weft_wg_add(g, -1). */
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
 * -EINVAL (s NULL), -EXDEV, -ENOMEM (shared: the first waiter is another
 * loop's and could not be woken: nothing changed).  Never blocks. */
WEFT_EXTERN int weft_sem_release(weft_sem *s);

/* Frees s.  Returns 0, -EBUSY (waited on).  See the rules above. */
WEFT_EXTERN int weft_sem_free(weft_sem *s);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H_SYNC */
