/*
 * co.c - coroutine records: spawn, run, finish, join, cancel, yield, sleep,
 * deadlines, and the id table.
 *
 * A record is allocated at spawn; its stack only when it first runs, so
 * spawning costs no syscall and 100,000 queued coroutines cost no stacks.
 * Ids are the loop's number in the high bits and a per-loop sequence number
 * in the low 40, so "finished" (a sequence number already given out but no
 * longer in the table) can be told from "never existed".
 */
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#define MAX_STACK ((size_t)1 << 30)
#define CO_FREE_MAX 1024 /* records kept for reuse: spawn then needs no malloc */

/* ---- id table: open addressing, linear probing, backward-shift delete ---- */

static size_t slot_of(const weft__cotab *t, int64_t id)
{
    return (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 20) & (t->cap - 1);
}

static int tab_grow(weft__cotab *t)
{
    size_t cap = t->cap ? t->cap * 2 : 256;
    weft__cotab_slot *slot = weft__sys_calloc(cap, sizeof *slot);
    if (!slot)
        return -ENOMEM;
    weft__cotab nt = { slot, cap, 0 };
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slot[i].id)
            continue;
        size_t j = slot_of(&nt, t->slot[i].id);
        while (nt.slot[j].id)
            j = (j + 1) & (cap - 1);
        nt.slot[j] = t->slot[i];
        nt.len++;
    }
    free(t->slot);
    *t = nt;
    return 0;
}

/* Inline into both spawns (weft_go_opts' and another loop's): a call here
 * costs a spawn 3 ns, a tenth of it. */
static inline __attribute__((always_inline)) int tab_put(weft__cotab *t, weft__co *co)
{
    if ((t->len + 1) * 2 > t->cap) {
        int rc = tab_grow(t);
        if (rc < 0)
            return rc;
    }
    size_t i = slot_of(t, co->id);
    while (t->slot[i].id)
        i = (i + 1) & (t->cap - 1);
    t->slot[i].id = co->id;
    t->slot[i].co = co;
    t->len++;
    return 0;
}

static weft__co *tab_find(const weft__cotab *t, int64_t id)
{
    if (!t->cap || id <= 0)
        return NULL;
    for (size_t i = slot_of(t, id);; i = (i + 1) & (t->cap - 1)) {
        if (t->slot[i].id == id)
            return t->slot[i].co;
        if (!t->slot[i].id)
            return NULL;
    }
}

static void tab_del(weft__cotab *t, int64_t id)
{
    size_t mask = t->cap - 1, i = slot_of(t, id);
    while (t->slot[i].id != id)
        i = (i + 1) & mask;
    /* Shift later members of the probe run back so lookups never stop at
     * the hole we leave. */
    for (size_t j = (i + 1) & mask; t->slot[j].id; j = (j + 1) & mask) {
        size_t home = slot_of(t, t->slot[j].id);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            t->slot[i] = t->slot[j];
            i = j;
        }
    }
    t->slot[i].id = 0;
    t->slot[i].co = NULL;
    t->len--;
}

weft__co *weft__co_find(weft_loop *l, int64_t id)
{
    return tab_find(&l->cos, id);
}

void weft__cotab_free(weft__cotab *t)
{
    free(t->slot);
    t->slot = NULL;
    t->cap = t->len = 0;
}

void weft__cotab_cancel_all(weft__cotab *t)
{
    for (size_t i = 0; i < t->cap; i++) {
        weft__co *co = t->slot[i].co;
        if (co && co->wait)
            weft__wake(co->wait, -ECANCELED);
    }
}

/* ---- lifecycle ---------------------------------------------------------- */

static weft__co *co_alloc(weft_loop *l)
{
    weft__co *co = l->co_free;
    if (co) {
        l->co_free = co->run_next;
        l->co_free_len--;
        return co;
    }
    return weft__sys_malloc(sizeof *co);
}

static void co_release(weft_loop *l, weft__co *co)
{
    if (l->co_free_len >= CO_FREE_MAX) {
        free(co);
        return;
    }
    co->run_next = l->co_free;
    l->co_free = co;
    l->co_free_len++;
}

void weft__co_pool_free(weft_loop *l)
{
    while (l->co_free) {
        weft__co *co = l->co_free;
        l->co_free = co->run_next;
        free(co);
    }
    l->co_free_len = 0;
}

/* A coroutine of another loop joining one of ours (weft_join): its
 * request, kept on the target until it ends, then its answer going back.
 * The same memory all the way, so answering cannot fail. */
typedef struct weft__rjoin {
    weft__post post;
    weft__waiter_id who; /* the joiner */
    int64_t id;          /* the coroutine joined */
    int result;
    bool try_only;       /* timeout 0: answer at once, -ETIMEDOUT if alive */
    struct weft__rjoin *next;
} weft__rjoin;

static void rjoin_answered(void *arg);

static void rjoin_answer(weft__rjoin *r, int result)
{
    r->result = result;
    weft__loop_call_with(r->who.loop, &r->post, rjoin_answered, r);
}

/* Out of the way of finish, which is inlined where a coroutine ends. */
static __attribute__((noinline, cold)) void answer_rjoiners(weft__co *co, int result)
{
    for (weft__rjoin *r = co->rjoiners, *next; r; r = next) {
        next = r->next;
        rjoin_answer(r, result);
    }
}

static inline void finish(weft_loop *l, weft__co *co, int result)
{
    tab_del(&l->cos, co->id);
    weft__wake_all(&co->joiners, result);
    if (WEFT__UNLIKELY(co->rjoiners != NULL))
        answer_rjoiners(co, result);
    co->state = WEFT__CO_DONE;
    /* Last: the answers are on their way before the group may end. */
    if (--l->alive == 0 && WEFT__UNLIKELY(l->group != NULL))
        weft__group_busy(l->group, -1);
}

static void co_entry(void *arg)
{
    weft__co *co = arg;
    weft_loop *l = weft__tls_loop;
    weft__fiber_entered(&co->fiber, &l->sched);
    co->fn(co->arg);
    finish(l, co, 0);
    weft__fiber_exit_to(&co->fiber, &l->sched);
}

/* Inline into the run queue walk below, with the switch: see
 * coro/switch_x86_64.h for why that matters. */
static inline __attribute__((always_inline)) void co_run(weft_loop *l, weft__co *co)
{
    if (WEFT__UNLIKELY(!co->fiber.stack)) {
        size_t size = co->stack_size ? co->stack_size : l->stack_size;
        if (weft__fiber_start(&co->fiber, size, co_entry, co) < 0) {
            finish(l, co, -ENOMEM);
            co_release(l, co);
            return;
        }
    }
    l->current = co;
    co->state = WEFT__CO_RUNNING;
    weft__fiber_resume(&l->sched, &co->fiber);
    l->current = NULL;
    if (co->state == WEFT__CO_DONE) {
        weft__fiber_release(&co->fiber);
        co_release(l, co);
    }
}

void weft__co_run_ready(weft_loop *l)
{
    weft__co *co = l->runq_head;
    if (co)
        weft__fiber_capture_fp(&l->sched); /* the embedder may have changed them */
    l->runq_head = l->runq_tail = NULL;
    while (co) {
        weft__co *next = co->run_next;
        /* With thousands of coroutines the next one's record and the top
         * of its stack are cache misses: start loading them now. */
        if (next) {
            __builtin_prefetch(&next->fiber);
#ifdef WEFT__SWITCH_INLINE
            if (next->fiber.stack)
                __builtin_prefetch(next->fiber.ctx.sp);
#endif
        }
        l->walk_next = next;
        co_run(l, co);
        co = l->walk_next; /* an eager spawn may have put two in front */
    }
}

static inline __attribute__((always_inline)) int64_t
spawn(weft_loop *l, void (*fn)(void *arg), void *arg, const weft_co_opts *o, int64_t id)
{
    weft__co *co = co_alloc(l);
    if (!co)
        return -ENOMEM;
    /* Field by field: a memset of the record is a rep stos, whose start-up
     * alone costs a tenth of a spawn.  The fiber needs only its stack
     * cleared; weft__fiber_start fills the rest at the first run. */
    co->fiber.stack = NULL;
    co->fn = fn;
    co->arg = arg;
    co->id = id ? id : l->id_base | (l->seq + 1);
    co->deadline = WEFT__NEVER;
    co->stack_size = 0;
    co->wait = NULL;
    co->joiners.head = co->joiners.tail = NULL;
    co->rjoiners = NULL;
    co->cancel_pending = false;
    co->name[0] = '\0';
    if (o) {
        co->stack_size = o->stack_size;
        if (o->name) {
            strncpy(co->name, o->name, sizeof co->name - 1);
            co->name[sizeof co->name - 1] = '\0';
        }
    }
    if (tab_put(&l->cos, co) < 0) {
        co_release(l, co);
        return -ENOMEM;
    }
    if (!id)
        l->seq++;
    if (l->alive++ == 0 && WEFT__UNLIKELY(l->group != NULL))
        weft__group_busy(l->group, 1);
    id = co->id;
    weft__co *self = l->current;
    if (o && o->eager && self) {
        /* Next in this very run, then the caller: as a yield that puts the
         * new coroutine first. */
        co->state = self->state = WEFT__CO_READY;
        co->run_next = self;
        self->run_next = l->walk_next;
        l->walk_next = co;
        weft__fiber_suspend(&self->fiber, &l->sched);
        return id; /* it may have finished meanwhile: co is not ours now */
    }
    weft__ready(l, co);
    return id;
}

int64_t weft_go_opts(void (*fn)(void *arg), void *arg, const weft_co_opts *o)
{
    weft_loop *l = weft__tls_loop;
    if (!l)
        return -EPERM;
    if (!fn || (o && o->stack_size > MAX_STACK))
        return -EINVAL;
    if (l->seq + 1 >= WEFT__CO_REMOTE)
        return -EAGAIN; /* 5 x 10^11 spawns on one loop */
    return spawn(l, fn, arg, o, 0);
}

int64_t weft__co_spawn(weft_loop *l, void (*fn)(void *), void *arg, int64_t id)
{
    return spawn(l, fn, arg, NULL, id);
}

int64_t weft_go(void (*fn)(void *arg), void *arg)
{
    return weft_go_opts(fn, arg, NULL);
}

int64_t weft_self(void)
{
    weft__co *co = weft__current();
    return co ? co->id : 0;
}

const char *weft_name(int64_t id)
{
    weft_loop *l = weft__tls_loop;
    weft__co *co = l ? tab_find(&l->cos, id) : NULL;
    return co ? co->name : NULL;
}

/* ---- another loop's coroutines ------------------------------------------- */

/* Whether id was given out by l (its own thread's loop) and has been
 * spawned; one given to a spawn still queued is not yet. */
static bool given_out(weft_loop *l, int64_t id)
{
    if ((id & ~WEFT__CO_SEQ_MASK) != l->id_base)
        return false;
    int64_t seq = id & WEFT__CO_SEQ_MASK;
    if (seq & WEFT__CO_REMOTE)
        return (seq & (WEFT__CO_REMOTE - 1)) <= l->remote_taken && seq != WEFT__CO_REMOTE;
    return seq >= 1 && seq <= l->seq;
}

/* Whether id is a spawn from another loop still queued here. */
static bool on_its_way(weft_loop *l, int64_t id)
{
    if ((id & ~WEFT__CO_SEQ_MASK) != l->id_base || !(id & WEFT__CO_REMOTE))
        return false;
    int64_t rseq = id & (WEFT__CO_REMOTE - 1);
    if (rseq <= l->remote_taken)
        return false;
    pthread_mutex_lock(l->post_lock);
    bool queued = rseq <= l->remote_seq;
    pthread_mutex_unlock(l->post_lock);
    return queued;
}

typedef struct rcancel {
    weft__post post;
    int64_t id;
} rcancel;

static bool cancel_here(weft_loop *l, int64_t id);

static void rcancel_arrived(void *arg)
{
    rcancel *c = arg;
    /* Sent here because this loop gave the id out: never passed on, as
     * weft_cancel would for an id it has not (the loop may be being freed
     * after the others, whose memory is gone). */
    cancel_here(weft__tls_loop, c->id);
    free(c);
}

/* On the target's loop: the coroutine is joined, or answered at once. */
static void rjoin_arrived(void *arg)
{
    weft__rjoin *r = arg;
    weft_loop *l = weft__tls_loop;
    weft__co *co = tab_find(&l->cos, r->id);
    if (!co || r->try_only) {
        rjoin_answer(r, co ? -ETIMEDOUT : given_out(l, r->id) ? 0 : -ESRCH);
        return;
    }
    /* A joiner waits in one join at a time: a request of an earlier
     * join of the same coroutine (timed out) gives way to this one. */
    for (weft__rjoin **pp = &co->rjoiners; *pp; pp = &(*pp)->next) {
        weft__rjoin *old = *pp;
        if (old->who.loop == r->who.loop && old->who.co == r->who.co) {
            r->next = old->next;
            *pp = r;
            free(old);
            return;
        }
    }
    r->next = co->rjoiners;
    co->rjoiners = r;
}

/* Back on the joiner's loop: wakes it if it still waits in that join. */
static void rjoin_answered(void *arg)
{
    weft__rjoin *r = arg;
    weft_loop *l = weft__tls_loop;
    weft__co *co = weft__co_find(l, r->who.co);
    if (co && co->wait && co->wait->seq == r->who.seq && !co->wait->woken)
        weft__wake(co->wait, r->result);
    free(r);
}

static int join_remote(weft_loop *target, weft__co *self, int64_t id, int64_t deadline)
{
    weft__rjoin *r = weft__sys_malloc(sizeof *r);
    if (!r)
        return -ENOMEM;
    r->id = id;
    r->next = NULL;
    /* A deadline already passed only tries: the answer still takes a
     * round trip to the target, which this waits for (a cancel ends it). */
    r->try_only = deadline <= weft__now_ns();
    if (r->try_only)
        deadline = WEFT__NEVER;
    (void)self;
    r->who = weft__wait_here();
    /* Held: its answer goes back to this loop, which must still be
     * there even if this join has ended by then. */
    weft__loop_call_held(target, &r->post, rjoin_arrived, r);
    weft__wait w;
    return weft__park(&w, NULL, deadline);
}

/* ---- cancel and join --------------------------------------------------------- */

/* Cancels l's coroutine id, if l has it. */
static bool cancel_here(weft_loop *l, int64_t id)
{
    weft__co *co = tab_find(&l->cos, id);
    if (!co)
        return false;
    /* A wait already woken (its timer fired this step, say) has its
     * result: the cancel is for the next call then. */
    if (co->wait && !co->wait->woken)
        weft__wake(co->wait, -ECANCELED);
    else
        co->cancel_pending = true;
    return true;
}

int weft_cancel(int64_t id)
{
    weft_loop *l = weft__tls_loop;
    if (!l)
        return -ESRCH;
    if (cancel_here(l, id))
        return 0;
    weft_loop *t = l->group && id > 0 ? weft__group_loop_of(l, id) : NULL;
    if (!t || t == l)
        return -ESRCH;
    /* Another loop's: that loop cancels it at its next step, if it is
     * still alive then. */
    rcancel *c = weft__sys_malloc(sizeof *c);
    if (!c)
        return -ENOMEM;
    c->id = id;
    weft__loop_call_with(t, &c->post, rcancel_arrived, c);
    return 0;
}

int weft_join(int64_t id, int64_t timeout_ms)
{
    weft_loop *l = weft__tls_loop;
    if (!l)
        return -ESRCH;
    weft__co *self = l->current;
    if (self && self->id == id)
        return -EDEADLK;
    int64_t deadline = weft__deadline(timeout_ms);
    weft__co *co;
    while (!(co = tab_find(&l->cos, id))) {
        if (given_out(l, id))
            return 0;
        if (self && on_its_way(l, id)) {
            /* Spawned here by another loop, not yet taken from the queue. */
            weft__wait w;
            int rc = weft__park(&w, &l->remote_waiters, deadline);
            if (rc < 0)
                return rc;
            continue;
        }
        weft_loop *t = l->group && id > 0 ? weft__group_loop_of(l, id) : NULL;
        if (t && t != l)
            return self ? join_remote(t, self, id, deadline) : -EPERM;
        if (!self && on_its_way(l, id))
            break; /* the loop's steps below take it */
        return -ESRCH;
    }
    if (self) {
        weft__wait w;
        return weft__park(&w, &co->joiners, deadline);
    }
    /* On the loop's own thread but outside any coroutine: drive the loop
     * until the coroutine is gone. */
    for (;;) {
        int64_t left;
        if (deadline == WEFT__NEVER) {
            left = -1;
        } else {
            left = (deadline - weft__now_ns() + WEFT__NS_PER_MS - 1) / WEFT__NS_PER_MS;
            if (left <= 0)
                return -ETIMEDOUT;
        }
        int rc = weft_loop_poll(l, left);
        if (rc < 0)
            return rc;
        if (!tab_find(&l->cos, id) && !on_its_way(l, id))
            return 0;
    }
}

int weft_yield(void)
{
    weft_loop *l = weft__tls_loop;
    weft__co *co = l ? l->current : NULL;
    if (!co) {
        sched_yield();
        return 0;
    }
    if (co->cancel_pending || l->closing) {
        co->cancel_pending = false;
        return -ECANCELED;
    }
    weft__ready(l, co);
    weft__fiber_suspend(&co->fiber, &l->sched);
    return 0;
}

int weft_sleep(int64_t ms)
{
    weft__co *co = weft__current();
    if (ms <= 0)
        return weft_yield();
    if (!co) {
        struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        return 0;
    }
    int64_t until = weft__deadline(ms); /* the earlier of now + ms and co's deadline */
    weft__wait w;
    int rc = weft__park(&w, NULL, until);
    /* The timer firing is the point of a sleep, unless it was the
     * coroutine's own deadline. */
    if (rc == -ETIMEDOUT && until != co->deadline)
        return 0;
    return rc;
}

void weft_deadline_set(int64_t at_ms)
{
    weft__co *co = weft__current();
    if (!co)
        return;
    /* Before the clock's start (it starts at 0) is long past; past what the
     * nanosecond clock can hold is never. */
    if (at_ms <= 0)
        co->deadline = 0;
    else
        co->deadline = at_ms > WEFT__NEVER / WEFT__NS_PER_MS ? WEFT__NEVER : at_ms * WEFT__NS_PER_MS;
}

void weft_deadline_clear(void)
{
    weft__co *co = weft__current();
    if (co)
        co->deadline = WEFT__NEVER;
}
