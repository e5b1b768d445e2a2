/*
 * test_pool.c - weft_pool (co::Pool): the last object put back is the
 * next got; at most max_idle kept; create failing; destroy called exactly
 * once for every object the pool lets go of (past max_idle, on clear, on
 * free, when the loop that keeps them is freed) and never for one checked
 * out; no loop, or another thread's loop: nothing kept there; a destroy
 * that blocks while others use the pool; every allocation failing in turn.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* Checks made inside coroutines are recorded, and asserted on the main
 * stack once the loop has returned (verify). */
static int fails;
static char first_fail[512];

static void note_fail(int line, const char *cond, const char *fmt, ...)
{
    if (fails++)
        return;
    char why[256] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(first_fail, sizeof first_fail, "line %d: %s %s", line, cond, why);
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            note_fail(__LINE__, #cond, "" __VA_ARGS__);                                            \
    } while (0)

static void verify(void)
{
    int n = fails;
    fails = 0;
    cr_assert_eq(n, 0, "%d checks failed; the first: %s", n, first_fail);
}

/* ---- objects that count their own lives -------------------------------------------- */

#define OBJ_MAX 4096

typedef struct obj {
    int id;
    int destroyed; /* times destroy ran on it */
} obj;

static obj *objs[OBJ_MAX];
static int nobjs, creates, destroys, fail_creates, sleep_in_destroy, put_in_destroy;
static void *last_arg;
static weft_pool *reenter; /* the pool a destroy puts a new object into */

static void reset_counts(void)
{
    for (int i = 0; i < nobjs; i++)
        free(objs[i]);
    nobjs = creates = destroys = fail_creates = sleep_in_destroy = put_in_destroy = 0;
    last_arg = NULL;
    fails = 0;
}

static void setup(void)
{
    weft_fault_clear();
    reset_counts();
}

static void teardown(void)
{
    weft_fault_clear();
    reset_counts();
}

TestSuite(pool, .init = setup, .fini = teardown);

static void *create(void *arg)
{
    last_arg = arg;
    if (fail_creates > 0) {
        fail_creates--;
        return NULL;
    }
    if (nobjs == OBJ_MAX)
        return NULL;
    obj *o = calloc(1, sizeof *o);
    o->id = nobjs;
    objs[nobjs++] = o;
    creates++;
    return o;
}

static void destroy(void *p, void *arg)
{
    last_arg = arg;
    ((obj *)p)->destroyed++;
    destroys++;
    if (sleep_in_destroy)
        weft_sleep(sleep_in_destroy); /* a destroy that blocks */
    if (put_in_destroy > 0) {
        put_in_destroy--;
        weft_pool_put(reenter, create(NULL)); /* a destroy that uses the pool */
    }
}

/* Every object made was destroyed exactly once, but those still out
 * (never destroyed). */
static void assert_destroyed_once(obj *const *out, int nout)
{
    for (int i = 0; i < nobjs; i++) {
        bool is_out = false;
        for (int k = 0; k < nout; k++)
            if (out[k] == objs[i])
                is_out = true;
        cr_assert_eq(objs[i]->destroyed, is_out ? 0 : 1, "object %d destroyed %d times", i,
                     objs[i]->destroyed);
    }
}

/* ---- basic use --------------------------------------------------------------------- */

static obj *still_out[2];

static int basic_main(void *arg)
{
    (void)arg;
    weft_pool *p;
    CHECK(weft_pool_new(&p, create, destroy, (void *)0x5eed, 0) == 0);
    obj *a = weft_pool_get(p), *b = weft_pool_get(p);
    CHECK(a && b && a != b);
    CHECK(creates == 2);
    CHECK(last_arg == (void *)0x5eed);
    CHECK(weft_pool_size(p) == 0);
    weft_pool_put(p, a);
    weft_pool_put(p, b);
    CHECK(weft_pool_size(p) == 2);
    /* The last one back is the next one out (the warmest). */
    CHECK(weft_pool_get(p) == b);
    CHECK(weft_pool_get(p) == a);
    obj *c = weft_pool_get(p);
    CHECK(c != NULL && creates == 3);
    CHECK(destroys == 0);
    weft_pool_put(p, a);
    weft_pool_put(p, NULL); /* no-op */
    weft_pool_free(p);      /* destroys a; b and c are still out */
    CHECK(destroys == 1 && a->destroyed == 1);
    still_out[0] = b;
    still_out[1] = c;
    return 0;
}

Test(pool, get_put_reuse, .timeout = 30)
{
    cr_assert_eq(weft_main(basic_main, NULL, NULL), 0);
    verify();
    assert_destroyed_once(still_out, 2);
}

static int max_idle_main(void *arg)
{
    (void)arg;
    weft_pool *p;
    CHECK(weft_pool_new(&p, create, destroy, NULL, 3) == 0);
    obj *o[5];
    for (int i = 0; i < 5; i++)
        o[i] = weft_pool_get(p);
    for (int i = 0; i < 5; i++)
        weft_pool_put(p, o[i]);
    /* The fourth and fifth found three kept: destroyed at once. */
    CHECK(weft_pool_size(p) == 3);
    CHECK(destroys == 2);
    CHECK(o[3]->destroyed == 1 && o[4]->destroyed == 1);
    CHECK(o[0]->destroyed + o[1]->destroyed + o[2]->destroyed == 0);
    weft_pool_clear(p);
    CHECK(weft_pool_size(p) == 0);
    CHECK(destroys == 5);
    weft_pool_clear(p); /* nothing left: no-op */
    CHECK(destroys == 5);
    /* Cleared, the pool keeps objects again. */
    obj *x = weft_pool_get(p);
    CHECK(creates == 6);
    weft_pool_put(p, x);
    CHECK(weft_pool_size(p) == 1);
    weft_pool_free(p);
    CHECK(destroys == 6);
    return 0;
}

Test(pool, max_idle_clear_free, .timeout = 30)
{
    cr_assert_eq(weft_main(max_idle_main, NULL, NULL), 0);
    verify();
    assert_destroyed_once(NULL, 0);
}

static obj mine;

static int create_fails_main(void *arg)
{
    (void)arg;
    weft_pool *p;
    CHECK(weft_pool_new(&p, create, destroy, NULL, 0) == 0);
    fail_creates = 2;
    CHECK(weft_pool_get(p) == NULL);
    CHECK(weft_pool_get(p) == NULL);
    CHECK(weft_pool_size(p) == 0);
    obj *a = weft_pool_get(p);
    CHECK(a != NULL);
    weft_pool_put(p, a);
    /* A kept object is served without asking create. */
    fail_creates = 1;
    CHECK(weft_pool_get(p) == a);
    CHECK(weft_pool_get(p) == NULL);
    weft_pool_put(p, a);
    weft_pool_free(p);

    /* No create: only what was put back comes out. */
    CHECK(weft_pool_new(&p, NULL, destroy, NULL, 0) == 0);
    CHECK(weft_pool_get(p) == NULL);
    weft_pool_put(p, &mine);
    CHECK(weft_pool_get(p) == &mine);
    CHECK(weft_pool_get(p) == NULL);
    weft_pool_put(p, &mine);
    weft_pool_free(p);
    CHECK(mine.destroyed == 1);

    /* No destroy: what the pool lets go of is dropped as it is. */
    CHECK(weft_pool_new(&p, create, NULL, NULL, 1) == 0);
    obj *x = weft_pool_get(p), *y = weft_pool_get(p);
    weft_pool_put(p, x);
    weft_pool_put(p, y); /* past max_idle */
    weft_pool_free(p);
    CHECK(x->destroyed + y->destroyed == 0);
    x->destroyed = y->destroyed = 1; /* for the count below */
    return 0;
}

Test(pool, create_fails_and_null_callbacks, .timeout = 30)
{
    cr_assert_eq(weft_main(create_fails_main, NULL, NULL), 0);
    verify();
    assert_destroyed_once(NULL, 0);
}

Test(pool, bad_arguments, .timeout = 30)
{
    int x;
    cr_assert_eq(weft_pool_new(NULL, create, destroy, NULL, 0), -EINVAL);
    cr_assert_null(weft_pool_get(NULL));
    weft_pool_put(NULL, &x);
    cr_assert_eq(weft_pool_size(NULL), 0);
    weft_pool_clear(NULL);
    weft_pool_free(NULL);
}

/* ---- loops and threads ------------------------------------------------------------- */

static weft_pool *shared;
static obj *kept_out;

static int keep_some_main(void *arg)
{
    (void)arg;
    obj *a = weft_pool_get(shared), *b = weft_pool_get(shared);
    kept_out = weft_pool_get(shared);
    weft_pool_put(shared, a);
    weft_pool_put(shared, b);
    CHECK(weft_pool_size(shared) == 2);
    return 0;
}

static int reuse_main(void *arg)
{
    (void)arg;
    /* A new loop: nothing of the old one's is kept. */
    CHECK(weft_pool_size(shared) == 0);
    obj *a = weft_pool_get(shared);
    weft_pool_put(shared, a);
    CHECK(weft_pool_size(shared) == 1);
    CHECK(weft_pool_get(shared) == a);
    weft_pool_put(shared, a);
    return 0;
}

Test(pool, loop_freed_destroys_what_it_keeps, .timeout = 30)
{
    cr_assert_eq(weft_pool_new(&shared, create, destroy, NULL, 0), 0);
    cr_assert_eq(weft_main(keep_some_main, NULL, NULL), 0);
    verify();
    /* The loop went with two kept: both destroyed, the one out not. */
    cr_assert_eq(destroys, 2);
    cr_assert_eq(kept_out->destroyed, 0);
    cr_assert_eq(weft_pool_size(shared), 0);
    cr_assert_eq(weft_main(reuse_main, NULL, NULL), 0);
    verify();
    cr_assert_eq(destroys, 3);
    /* Outside any loop nothing is kept: a get creates, a put destroys. */
    obj *x = weft_pool_get(shared);
    cr_assert_eq(creates, 5);
    weft_pool_put(shared, x);
    cr_assert_eq(x->destroyed, 1);
    cr_assert_eq(weft_pool_size(shared), 0);
    weft_pool_put(shared, kept_out);
    weft_pool_free(shared);
    assert_destroyed_once(NULL, 0);
}

typedef struct other {
    size_t size_seen;
    obj *got;
    int creates_before, creates_after;
    obj *owned;
} other;

static int other_loop_main(void *arg)
{
    other *o = arg;
    o->size_seen = weft_pool_size(shared);
    o->got = weft_pool_get(shared);
    weft_pool_put(shared, o->got); /* destroyed: this loop keeps nothing of it */
    weft_pool_clear(shared);       /* not this loop's: no-op */
    weft_pool_free(shared);        /* not this loop's: no-op */
    return 0;
}

static void *other_thread(void *arg)
{
    return (void *)(intptr_t)weft_main(other_loop_main, arg, NULL);
}

static int owner_main(void *arg)
{
    other *o = arg;
    o->owned = weft_pool_get(shared);
    weft_pool_put(shared, o->owned);
    o->creates_before = creates;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, other_thread, o) == 0);
    /* This loop is stopped meanwhile: the other thread's counts are its own. */
    void *rc;
    pthread_join(t, &rc);
    CHECK((intptr_t)rc == 0);
    o->creates_after = creates;
    CHECK(weft_pool_size(shared) == 1, "this loop's object is still kept");
    CHECK(weft_pool_get(shared) == o->owned);
    weft_pool_put(shared, o->owned);
    return 0;
}

Test(pool, another_threads_loop_keeps_nothing, .timeout = 30)
{
    other o = {0};
    cr_assert_eq(weft_pool_new(&shared, create, destroy, NULL, 0), 0);
    cr_assert_eq(weft_main(owner_main, &o, NULL), 0);
    verify();
    cr_assert_eq(o.size_seen, 0);
    cr_assert_not_null(o.got);
    cr_assert_neq(o.got, o.owned);
    cr_assert_eq(o.creates_after, o.creates_before + 1, "the other thread made its own");
    cr_assert_eq(o.got->destroyed, 1);
    weft_pool_free(shared); /* no loop keeps anything of it now: freed here */
    assert_destroyed_once(NULL, 0);
}

/* ---- destroy that blocks ----------------------------------------------------------- */

static int churned;

static void churn(void *arg)
{
    weft_pool *p = arg;
    for (int i = 0; i < 50; i++) {
        /* Out across a switch, then away for a while: the churners keep
         * taking kept objects while the puts and the clear below destroy. */
        obj *o = weft_pool_get(p);
        if (o) {
            weft_yield();
            weft_pool_put(p, o);
            churned++;
        }
        weft_sleep(1);
    }
}

static int blocking_destroy_main(void *arg)
{
    (void)arg;
    weft_pool *p;
    CHECK(weft_pool_new(&p, create, destroy, NULL, 4) == 0);
    obj *o[8];
    for (int i = 0; i < 8; i++)
        o[i] = weft_pool_get(p);
    sleep_in_destroy = 2;
    int64_t ids[4];
    for (int i = 0; i < 4; i++)
        ids[i] = weft_go(churn, p);
    /* The puts past max_idle and the clear destroy while the churners get
     * and put around them. */
    for (int i = 0; i < 8; i++)
        weft_pool_put(p, o[i]);
    weft_pool_clear(p);
    for (int i = 0; i < 4; i++)
        CHECK(weft_join(ids[i], 10000) == 0);
    weft_pool_free(p);
    sleep_in_destroy = 0;
    return 0;
}

Test(pool, destroy_that_blocks, .timeout = 60)
{
    churned = 0;
    cr_assert_eq(weft_main(blocking_destroy_main, NULL, NULL), 0);
    verify();
    cr_assert_eq(churned, 200);
    assert_destroyed_once(NULL, 0);
    cr_assert_eq(destroys, creates);
}

/* A destroy that puts objects back while clear runs: those are kept, the
 * old ones destroyed once each. */
static int reentrant_main(void *arg)
{
    (void)arg;
    CHECK(weft_pool_new(&reenter, create, destroy, NULL, 0) == 0);
    obj *o[4];
    for (int i = 0; i < 4; i++)
        o[i] = weft_pool_get(reenter);
    for (int i = 0; i < 4; i++)
        weft_pool_put(reenter, o[i]);
    put_in_destroy = 2;
    weft_pool_clear(reenter);
    CHECK(destroys == 4, "%d", destroys);
    CHECK(weft_pool_size(reenter) == 2, "%zu", weft_pool_size(reenter));
    for (int i = 0; i < 4; i++)
        CHECK(o[i]->destroyed == 1);
    /* Past max_idle: the put's own destroy puts one more, kept. */
    weft_pool_free(reenter);
    CHECK(weft_pool_new(&reenter, create, destroy, NULL, 1) == 0);
    obj *a = weft_pool_get(reenter), *b = weft_pool_get(reenter);
    weft_pool_put(reenter, a);
    put_in_destroy = 1;
    weft_pool_put(reenter, b); /* destroyed; its destroy's put finds one kept: destroyed */
    CHECK(b->destroyed == 1 && weft_pool_size(reenter) == 1);
    weft_pool_free(reenter);
    return 0;
}

Test(pool, callbacks_that_use_the_pool, .timeout = 30)
{
    cr_assert_eq(weft_main(reentrant_main, NULL, NULL), 0);
    verify();
    assert_destroyed_once(NULL, 0);
}

/* ---- allocation failures ----------------------------------------------------------- */

static int sweep_nth, sweep_fired, sweep_new_rc;

static int fault_main(void *arg)
{
    (void)arg;
    weft_pool *p = NULL;
    obj *o[20];
    weft_fault_clear();
    weft_fault_set(WEFT_FAULT_MALLOC, (unsigned)sweep_nth, ENOMEM);
    sweep_new_rc = weft_pool_new(&p, create, destroy, NULL, 0);
    if (sweep_new_rc == 0) {
        /* The first put makes the loop's state and the part and the
         * stack; the 9th and the 17th grow the stack. */
        for (int i = 0; i < 20; i++)
            o[i] = weft_pool_get(p);
        for (int i = 0; i < 20; i++)
            weft_pool_put(p, o[i]);
    }
    sweep_fired = (int)weft_fault_fired();
    weft_fault_clear();
    if (sweep_new_rc == 0) {
        size_t kept = weft_pool_size(p);
        CHECK(kept <= 20);
        CHECK((size_t)destroys == 20 - kept, "nth %d: every object kept or destroyed", sweep_nth);
        /* Still a working pool. */
        obj *x = weft_pool_get(p);
        CHECK(x != NULL);
        weft_pool_put(p, x);
        CHECK(weft_pool_size(p) >= 1);
        weft_pool_free(p);
    }
    return 0;
}

Test(pool, allocation_sweep, .timeout = 60)
{
    int fired = 0;
    for (sweep_nth = 1; sweep_nth < 40; sweep_nth++) {
        reset_counts();
        cr_assert_eq(weft_main(fault_main, NULL, NULL), 0);
        verify();
        if (sweep_new_rc < 0)
            cr_assert_eq(sweep_new_rc, -ENOMEM);
        assert_destroyed_once(NULL, 0);
        if (!sweep_fired)
            break; /* past the last allocation */
        fired++;
    }
    cr_assert_lt(sweep_nth, 40, "the sweep never got past the allocations");
    /* The pool, the loop's state, the part, the stack and its two growths. */
    cr_assert_geq(fired, 6, "%d allocations failed in turn", fired);
}
