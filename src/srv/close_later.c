/*
 * close_later.c - weft_close_after and weft_reset_after, co's
 * Connection::close(ms) and reset(ms): the call kills the handle and
 * returns; the descriptor is closed (or reset) by the loop when the time
 * comes.
 *
 * A pending close is a loop timer and a small record, kept in a per-loop
 * list so that a loop freed before the time closes what is still pending.
 * The socket is claimed at once (its handle is dead, its waiters leave with
 * -EBADF), so nothing else can close it meanwhile; at the time the socket
 * core's close finishes the job.  A plain close never waits, so it runs in
 * the timer itself; a TLS close may wait (bounded) for room for
 * close_notify, so it runs in a coroutine of its own.
 */
#include "net/sock.h"

#include <stdlib.h>

/* How long a TLS close's coroutine may take to start before the timer
 * gives up on it (its stack could not be mapped) and closes in the loop. */
#define TLS_START_MS 1000

typedef struct pending pending;

typedef struct later {
    weft__timer tm; /* first member: fire() gets &tm */
    weft__sock *s;  /* claimed: its handle is dead */
    weft_loop *loop;
    pending *list; /* the loop's (not looked up: gone from the loop as it is freed) */
    int64_t co;    /* the TLS close's coroutine, once spawned */
    bool reset;
    struct later *next, *prev;
} later;

struct pending {
    later *head;
};

static void release(weft_loop *l, void *state);
static weft__ext_key pending_key = {"close_later", release, 0};

static void unlink_later(later *r)
{
    pending *p = r->list;
    if (r->prev)
        r->prev->next = r->next;
    else
        p->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->next = r->prev = NULL;
}

static void finish(later *r)
{
    weft__timer_stop(r->loop, &r->tm);
    unlink_later(r);
    weft__sock_close_claimed(r->s, r->reset);
    free(r);
}

static void close_in_coroutine(void *arg)
{
    finish(arg);
}

static void fire(weft__timer *t)
{
    later *r = (later *)t;
    if (!r->s->ops || r->reset || r->co) {
        /* Plain (never waits), or a reset, or a TLS close whose coroutine
         * never started: here and now. */
        finish(r);
        return;
    }
    int64_t id = weft_go(close_in_coroutine, r);
    if (id < 0) {
        finish(r);
        return;
    }
    r->co = id;
    /* The coroutine stops this timer when it runs; if it never does (no
     * stack), the timer closes in the loop after all. */
    if (weft__timer_set(r->loop, &r->tm, weft__now_ns() + TLS_START_MS * WEFT__NS_PER_MS) < 0)
        r->co = 0; /* no watchdog: the coroutine is the only way left */
}

/* The loop is being freed: its coroutines have all finished, its poller
 * is still open.  Close what is pending, now. */
static void release(weft_loop *l, void *state)
{
    pending *p = state;
    (void)l;
    while (p->head)
        finish(p->head);
    free(p);
}

static pending *pending_of(weft_loop *l)
{
    pending *p = weft__loop_ext(l, &pending_key);
    if (p)
        return p;
    if (!(p = weft__sys_calloc(1, sizeof *p)))
        return NULL;
    if (weft__loop_ext_set(l, &pending_key, p) < 0) {
        free(p);
        return NULL;
    }
    return p;
}

static int close_later(weft_sock *h, int64_t ms, bool reset)
{
    weft__sock *s;
    int rc = weft__sock_enter(h, &s);
    if (rc < 0)
        return rc;
    if (ms <= 0)
        return weft__sock_close(s, reset);
    weft_loop *l = weft__tls_loop;
    if (!l)
        return -EPERM; /* no loop to keep the time */
    /* Everything that can fail comes before the socket is touched. */
    pending *p = pending_of(l);
    later *r = p ? weft__sys_malloc(sizeof *r) : NULL;
    if (!r)
        return -ENOMEM;
    *r = (later){.s = s, .loop = l, .list = p, .reset = reset};
    weft__timer_init(&r->tm, fire);
    int64_t now = weft__now_ns();
    int64_t at = ms >= (WEFT__NEVER - 1 - now) / WEFT__NS_PER_MS ? WEFT__NEVER - 1
                                                                 : now + ms * WEFT__NS_PER_MS;
    if ((rc = weft__timer_set(l, &r->tm, at)) < 0) {
        free(r);
        return rc;
    }
    if (weft__sock_claim(s) < 0) {
        /* Another thread's weft_close got there first. */
        weft__timer_stop(l, &r->tm);
        free(r);
        return -EBADF;
    }
    /* The handle is dead: whoever waits on it leaves now, as at a close. */
    weft__sock_send_away(s);
    r->next = p->head;
    if (p->head)
        p->head->prev = r;
    p->head = r;
    return 0;
}

int weft_close_after(weft_sock *s, int64_t ms)
{
    return close_later(s, ms, false);
}

int weft_reset_after(weft_sock *s, int64_t ms)
{
    return close_later(s, ms, true);
}
