/*
 * select.c - waiting on several channel operations at once.
 *
 * First a pass that completes one case that can go at once, chosen at
 * random among all that can (each ready case is kept with probability
 * 1/k as the k-th is met), so no case starves however the cases are
 * ordered.  Otherwise one waiter with an entry per case, linked on every
 * channel: the first counterpart to arrive completes its entry and
 * unlinks the others (sync.h), so exactly one case happens.
 */
#include "sync.h"

#include <stdint.h>

#define SELECT_MAX 65536
#define STACK_ENTRIES 8 /* selects this small need no allocation */

/* xorshift64*, per thread, seeded from the clock and the thread. */
static __thread uint64_t rng;

static uint32_t rand_below(uint32_t n)
{
    uint64_t x = rng;
    if (WEFT__UNLIKELY(!x))
        x = (uint64_t)weft__now_ns() ^ (uint64_t)(uintptr_t)&rng ^ 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng = x;
    return (uint32_t)(((x * 0x2545F4914F6CDD1Dull) >> 32) * n >> 32);
}

int weft_select(weft_select_case *cases, int n, int64_t timeout_ms)
{
    if (n < 0 || n > SELECT_MAX || (n && !cases))
        return -EINVAL;
    int active = 0, rc;
    for (int i = 0; i < n; i++) {
        weft_chan *c = cases[i].chan;
        if (!c)
            continue; /* a case turned off */
        int op = cases[i].op;
        if (op != WEFT_CHAN_SEND && op != WEFT_CHAN_RECV)
            return -EINVAL;
        if (op == WEFT_CHAN_SEND && !cases[i].elem && c->elem_size)
            return -EINVAL;
        if ((rc = weft__sync_enter(&c->home)) < 0)
            return rc;
        active++;
    }

    int pick = -1;
    uint32_t ready = 0;
    for (int i = 0; i < n; i++)
        if (cases[i].chan && weft__chan_ready(cases[i].chan, cases[i].op) &&
            rand_below(++ready) == 0)
            pick = i;
    if (pick >= 0) {
        weft_select_case *k = &cases[pick];
        k->result = k->op == WEFT_CHAN_SEND ? weft__chan_try_send(k->chan, k->elem)
                                            : weft__chan_try_recv(k->chan, k->elem);
        return pick;
    }

    weft__sync_entry stack_entries[STACK_ENTRIES], *e = stack_entries;
    if (active > STACK_ENTRIES && !(e = weft__sys_malloc((size_t)active * sizeof *e)))
        return -ENOMEM;
    weft__sync_waiter w;
    weft__sync_waiter_init(&w, e, active);
    for (int i = 0, j = 0; i < n; i++) {
        weft_chan *c = cases[i].chan;
        if (!c)
            continue;
        e[j].elem = cases[i].elem;
        e[j].idx = i;
        weft__sync_link(cases[i].op == WEFT_CHAN_SEND ? &c->sendq : &c->recvq, &e[j]);
        j++;
    }
    rc = weft__sync_block(&w, weft__sync_deadline(&w, timeout_ms));
    if (w.done) {
        rc = w.done - 1; /* the case's index */
        cases[rc].result = w.result;
    } else {
        weft__sync_leave(&w);
    }
    if (e != stack_entries)
        free(e);
    return rc;
}
