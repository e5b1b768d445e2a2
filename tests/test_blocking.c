/*
 * test_blocking.c - weft_blocking and the process's worker pool: fn runs on
 * a worker while the loop goes on; a job that has not started is withdrawn
 * by a timeout, the deadline or a cancel, a started one is waited for (its
 * argument on the caller's stack); the pool grows to its cap and shrinks
 * when idle; the loop can be freed with jobs queued and running; a worker
 * that cannot be started, and a wake-up that cannot be sent, leave no
 * caller stranded; the system resolver waits in the same queue.
 *
 * Jobs that must stay running block on a gate (a pipe the test opens),
 * never on time.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* Threads in this process. */
static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    struct dirent *e;
    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* A gate: jobs block reading it until it is opened (closed for writing). */
static int gate[2];
static atomic_int running, max_running, ran;

static void gate_make(void)
{
    cr_assert_eq(pipe2(gate, O_CLOEXEC), 0);
    atomic_store(&running, 0);
    atomic_store(&max_running, 0);
    atomic_store(&ran, 0);
}

static void gate_open(void)
{
    if (gate[1] >= 0)
        close(gate[1]);
    gate[1] = -1;
}

static void gate_fini(void)
{
    gate_open();
    close(gate[0]);
}

/* A job that holds its worker until the gate opens. */
static void gated(void *arg)
{
    int now = atomic_fetch_add(&running, 1) + 1;
    for (int m = atomic_load(&max_running); now > m && !atomic_compare_exchange_weak(&max_running, &m, now);)
        ;
    char c;
    while (read(gate[0], &c, 1) < 0 && errno == EINTR)
        ;
    atomic_fetch_sub(&running, 1);
    atomic_fetch_add(&ran, 1);
    if (arg)
        *(int *)arg = 1;
}

static void mark(void *arg)
{
    atomic_fetch_add(&ran, 1);
    *(int *)arg = 1;
}

static weft_config cap(int n)
{
    weft_config c = { 0 };
    c.workers = n;
    return c;
}

/* Steps l until fn has started on every one of n workers. */
static bool wait_running(int n)
{
    for (int i = 0; i < 2000 && atomic_load(&running) < n; i++)
        usleep(1000);
    return atomic_load(&running) >= n;
}

/* ---- the basics ----------------------------------------------------------------- */

typedef struct where {
    pthread_t thread;
    int64_t ms;
    int done;
} where;

static void sleep_200(void *arg)
{
    where *w = arg;
    w->thread = pthread_self();
    usleep(200 * 1000);
    w->done = 1; /* the caller's stack: it is still there */
}

static int ticks;

static void ticker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 10; i++)
        if (weft_sleep(10) == 0)
            ticks++;
}

static int basics_rc[4];
static where basics_w;

static int basics_main(void *arg)
{
    (void)arg;
    int64_t t = weft_go(ticker, NULL);
    where w = { 0 };
    int64_t t0 = mono_ms();
    basics_rc[0] = weft_blocking(sleep_200, &w, 5000);
    w.ms = mono_ms() - t0;
    basics_w = w;
    weft_join(t, -1);
    basics_rc[1] = weft_blocking(NULL, NULL, 1000);
    return 0;
}

Test(blocking, runs_on_a_worker_while_the_loop_goes_on, .timeout = 60)
{
    cr_assert_eq(weft_main(basics_main, NULL, NULL), 0);
    cr_assert_eq(basics_rc[0], 0, "%s", weft_err_name(basics_rc[0]));
    cr_assert_eq(basics_w.done, 1);
    cr_assert_geq(basics_w.ms, 200);
    cr_assert_not(pthread_equal(basics_w.thread, pthread_self()), "fn ran on the loop's thread");
    cr_assert_geq(ticks, 5, "the loop stood still while fn ran: %d ticks", ticks);
    cr_assert_eq(basics_rc[1], -EINVAL);
}

Test(blocking, outside_a_coroutine_calls_fn, .timeout = 60)
{
    where w = { 0 };
    cr_assert_eq(weft_blocking(sleep_200, &w, 0), 0);
    cr_assert(pthread_equal(w.thread, pthread_self()));
    cr_assert_eq(w.done, 1);
    cr_assert_eq(weft_blocking(NULL, NULL, 0), -EINVAL);
    /* On a loop's thread between its steps, too. */
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    w.done = 0;
    cr_assert_eq(weft_blocking(sleep_200, &w, -1), 0);
    cr_assert(pthread_equal(w.thread, pthread_self()));
    weft_loop_free(l);
}

/* ---- started jobs are waited for ------------------------------------------------------ */

static int outlive_rc;
static int64_t outlive_ms;
static int outlive_done;

static void sleep_600(void *arg)
{
    usleep(600 * 1000);
    *(int *)arg = 1; /* the caller's stack: it is still there */
}

static int outlive_main(void *arg)
{
    (void)arg;
    int done = 0, warm = 0;
    weft_blocking(mark, &warm, -1); /* a worker, idle: the next job starts at once */
    int64_t t0 = mono_ms();
    /* The timeout passes while fn runs. */
    outlive_rc = weft_blocking(sleep_600, &done, 200);
    outlive_ms = mono_ms() - t0;
    outlive_done = done;
    return 0;
}

Test(blocking, started_job_outlives_its_timeout, .timeout = 60)
{
    cr_assert_eq(weft_main(outlive_main, NULL, NULL), 0);
    cr_assert_eq(outlive_rc, 0, "%s", weft_err_name(outlive_rc));
    cr_assert_eq(outlive_done, 1);
    cr_assert_geq(outlive_ms, 600);
}

static int64_t victim;
static int cancel_rc[4];

static void cancel_later(void *arg)
{
    weft_sleep((int64_t)(intptr_t)arg);
    weft_cancel(victim);
}

static void opener(void *arg)
{
    weft_sleep((int64_t)(intptr_t)arg);
    gate_open();
}

static int cancel_running_main(void *arg)
{
    (void)arg;
    victim = weft_self();
    int flag = 0;
    weft_go(cancel_later, (void *)50);
    weft_go(opener, (void *)200);
    /* Cancelled while fn runs: waited for all the same. */
    cancel_rc[0] = weft_blocking(gated, &flag, -1);
    cancel_rc[1] = flag;
    /* ... and the cancel is kept for the next call. */
    cancel_rc[2] = weft_sleep(1000);
    cancel_rc[3] = weft_sleep(1);
    return 0;
}

Test(blocking, cancel_while_running_is_kept_for_the_next_call, .timeout = 60)
{
    gate_make();
    cr_assert_eq(weft_main(cancel_running_main, NULL, NULL), 0);
    cr_assert_eq(cancel_rc[0], 0, "%s", weft_err_name(cancel_rc[0]));
    cr_assert_eq(cancel_rc[1], 1);
    cr_assert_eq(cancel_rc[2], -ECANCELED);
    cr_assert_eq(cancel_rc[3], 0);
    gate_fini();
}

/* ---- jobs not started are withdrawn ------------------------------------------------------- */

static int wd_rc[8], wd_flag[8];
static int64_t wd_ms[8];

static void hold_worker(void *arg)
{
    (void)arg;
    wd_rc[7] = weft_blocking(gated, NULL, -1);
}

static int withdraw_main(void *arg)
{
    (void)arg;
    victim = weft_self();
    int64_t h = weft_go(hold_worker, NULL);
    while (atomic_load(&running) < 1)
        weft_sleep(1);
    int64_t t0;
    /* 0: the only worker is busy: the timeout withdraws the job. */
    t0 = mono_ms();
    wd_rc[0] = weft_blocking(mark, &wd_flag[0], 100);
    wd_ms[0] = mono_ms() - t0;
    /* 1: so does a cancel. */
    weft_go(cancel_later, (void *)50);
    t0 = mono_ms();
    wd_rc[1] = weft_blocking(mark, &wd_flag[1], 5000);
    wd_ms[1] = mono_ms() - t0;
    /* 2: and the coroutine's deadline. */
    weft_deadline_set(weft_now() + 80);
    t0 = mono_ms();
    wd_rc[2] = weft_blocking(mark, &wd_flag[2], -1);
    wd_ms[2] = mono_ms() - t0;
    weft_deadline_clear();
    /* 3: timeout 0 with no worker free (and none to start): at once. */
    t0 = mono_ms();
    wd_rc[3] = weft_blocking(mark, &wd_flag[3], 0);
    wd_ms[3] = mono_ms() - t0;
    /* 4: a cancel made before the call. */
    weft_cancel(weft_self());
    wd_rc[4] = weft_blocking(mark, &wd_flag[4], 5000);
    gate_open();
    weft_join(h, -1);
    /* 5: timeout 0 with the worker idle again: it runs. */
    wd_rc[5] = weft_blocking(mark, &wd_flag[5], 0);
    return 0;
}

Test(blocking, queued_job_withdrawn, .timeout = 60)
{
    gate_make();
    weft_config c = cap(1);
    cr_assert_eq(weft_main(withdraw_main, NULL, &c), 0);
    cr_assert_eq(wd_rc[0], -ETIMEDOUT, "%s", weft_err_name(wd_rc[0]));
    cr_assert_geq(wd_ms[0], 100);
    cr_assert_lt(wd_ms[0], 100 + LATE_MS);
    cr_assert_eq(wd_rc[1], -ECANCELED, "%s", weft_err_name(wd_rc[1]));
    cr_assert_lt(wd_ms[1], 50 + LATE_MS);
    cr_assert_eq(wd_rc[2], -ETIMEDOUT, "%s", weft_err_name(wd_rc[2]));
    cr_assert_geq(wd_ms[2], 70);
    cr_assert_eq(wd_rc[3], -ETIMEDOUT, "%s", weft_err_name(wd_rc[3]));
    cr_assert_lt(wd_ms[3], LATE_MS);
    cr_assert_eq(wd_rc[4], -ECANCELED);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(wd_flag[i], 0, "withdrawn job %d ran", i);
    cr_assert_eq(wd_rc[5], 0, "%s", weft_err_name(wd_rc[5]));
    cr_assert_eq(wd_flag[5], 1);
    cr_assert_eq(wd_rc[7], 0);
    cr_assert_eq(atomic_load(&ran), 2); /* the gated job and the last one */
    gate_fini();
}

/* ---- the pool grows to its cap, and shrinks when idle --------------------------------------- */

#define GROW_JOBS 8
static int grow_rc[GROW_JOBS];
static int grow_threads;

static void grow_one(void *arg)
{
    int i = (int)(intptr_t)arg;
    grow_rc[i] = weft_blocking(gated, NULL, -1);
}

static int grow_main(void *arg)
{
    int base = *(int *)arg;
    int64_t id[GROW_JOBS];
    for (int i = 0; i < GROW_JOBS; i++)
        id[i] = weft_go(grow_one, (void *)(intptr_t)i);
    while (atomic_load(&running) < 4)
        weft_sleep(5);
    weft_sleep(100); /* room for a fifth worker, were there one */
    grow_threads = count_threads() - base;
    gate_open();
    for (int i = 0; i < GROW_JOBS; i++)
        weft_join(id[i], -1);
    return 0;
}

Test(blocking, pool_grows_to_its_cap_and_shrinks_when_idle, .timeout = 120)
{
    gate_make();
    int base = count_threads();
    weft_config c = cap(4);
    cr_assert_eq(weft_main(grow_main, &base, &c), 0);
    cr_assert_eq(grow_threads, 4, "%d workers for a cap of 4", grow_threads);
    cr_assert_eq(atomic_load(&max_running), 4);
    cr_assert_eq(atomic_load(&ran), GROW_JOBS);
    for (int i = 0; i < GROW_JOBS; i++)
        cr_assert_eq(grow_rc[i], 0);
    /* Idle workers leave after 10 s. */
    int64_t t0 = mono_ms();
    while (count_threads() > base && mono_ms() - t0 < 10000 + 5 * LATE_MS)
        usleep(50 * 1000);
    cr_assert_eq(count_threads(), base, "idle workers stayed");
    cr_assert_geq(mono_ms() - t0, 9000, "workers left before they were idle 10 s");
    gate_fini();
}

Test(blocking, cap_setting_is_checked, .timeout = 60)
{
    weft_loop *l;
    weft_config c = cap(-1);
    cr_assert_eq(weft_loop_new(&l, &c), -EINVAL);
    c = cap(1025);
    cr_assert_eq(weft_loop_new(&l, &c), -EINVAL);
    setenv("WEFT_WORKERS", "lots", 1);
    cr_assert_eq(weft_loop_new(&l, NULL), -EINVAL);
    c = cap(2); /* the config wins over the environment */
    cr_assert_eq(weft_loop_new(&l, &c), 0);
    weft_loop_free(l);
    setenv("WEFT_WORKERS", "3", 1);
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    weft_loop_free(l);
    unsetenv("WEFT_WORKERS");
}

/* The cap from the environment: 2 workers, so a third job waits. */
static int env_rc[3];
static int env_flag;

static int env_main(void *arg)
{
    (void)arg;
    int64_t a = weft_go(hold_worker, NULL), b = weft_go(hold_worker, NULL);
    while (atomic_load(&running) < 2)
        weft_sleep(1);
    env_rc[0] = weft_blocking(mark, &env_flag, 100);
    gate_open();
    weft_join(a, -1);
    weft_join(b, -1);
    return 0;
}

Test(blocking, cap_from_the_environment, .timeout = 60)
{
    gate_make();
    setenv("WEFT_WORKERS", "2", 1);
    cr_assert_eq(weft_main(env_main, NULL, NULL), 0);
    unsetenv("WEFT_WORKERS");
    cr_assert_eq(env_rc[0], -ETIMEDOUT, "%s", weft_err_name(env_rc[0]));
    cr_assert_eq(env_flag, 0);
    cr_assert_eq(atomic_load(&max_running), 2);
    gate_fini();
}

/* ---- the loop freed with jobs queued and running ---------------------------------------------- */

#define FREE_JOBS 12
static int free_rc[FREE_JOBS];
static int free_flag[FREE_JOBS];

/* The last one holds the worker; the others queue behind it.  (The last
 * spawned is the first the loop's freeing wakes, which is the order that
 * would let a worker free again run a job left queued.) */
static void free_job(void *arg)
{
    int i = (int)(intptr_t)arg;
    if (i < FREE_JOBS - 1)
        while (atomic_load(&running) < 1)
            weft_sleep(1);
    free_rc[i] = weft_blocking(i == FREE_JOBS - 1 ? gated : mark, &free_flag[i], -1);
}

static void *open_gate_later(void *arg)
{
    (void)arg;
    usleep(200 * 1000);
    gate_open();
    return NULL;
}

Test(blocking, loop_freed_with_jobs_queued_and_running, .timeout = 60)
{
    gate_make();
    weft_loop *l;
    weft_config c = cap(1);
    cr_assert_eq(weft_loop_new(&l, &c), 0);
    for (int i = 0; i < FREE_JOBS; i++) {
        free_rc[i] = 1;
        weft_go(free_job, (void *)(intptr_t)i);
    }
    weft_loop_poll(l, 0);
    cr_assert(wait_running(1));
    for (int i = 0; i < 5; i++)
        weft_loop_poll(l, 5); /* the others queue */
    pthread_t t;
    pthread_create(&t, NULL, open_gate_later, NULL);
    int64_t t0 = mono_ms();
    /* Waits for the running job, and meanwhile lets the others withdraw
     * theirs: a worker free again must find none of them. */
    weft_loop_free(l);
    int64_t ms = mono_ms() - t0;
    pthread_join(t, NULL);
    cr_assert_eq(free_rc[FREE_JOBS - 1], 0, "%s", weft_err_name(free_rc[FREE_JOBS - 1]));
    cr_assert_eq(free_flag[FREE_JOBS - 1], 1);
    cr_assert_geq(ms, 150, "the running job was not waited for");
    for (int i = 0; i < FREE_JOBS - 1; i++) {
        cr_assert_eq(free_rc[i], -ECANCELED, "%d: %s", i, weft_err_name(free_rc[i]));
        cr_assert_eq(free_flag[i], 0);
    }
    usleep(50 * 1000);
    cr_assert_eq(atomic_load(&ran), 1, "a withdrawn job ran");
    gate_fini();
}

/* ---- a wake-up that cannot be sent ------------------------------------------------------------- */

static void fail_next_malloc(void *arg)
{
    /* On the worker: the allocation the wake-up needs fails. */
    weft_fault_set(WEFT_FAULT_MALLOC, 1, ENOMEM);
    *(int *)arg = 1;
}

static int lost_rc, lost_flag;
static int64_t lost_ms;

static int lost_main(void *arg)
{
    (void)arg;
    int64_t t0 = mono_ms();
    lost_rc = weft_blocking(fail_next_malloc, &lost_flag, -1);
    lost_ms = mono_ms() - t0;
    return 0;
}

Test(blocking, lost_wake_up_is_recovered, .timeout = 60)
{
    cr_assert_eq(weft_main(lost_main, NULL, NULL), 0);
    cr_assert_eq(lost_rc, 0, "%s", weft_err_name(lost_rc));
    cr_assert_eq(lost_flag, 1);
    cr_assert_lt(lost_ms, 1000 + LATE_MS);
}

/* ---- worker threads that cannot be started --------------------------------------------------- */

/* In a child whose user may start no more threads (RLIMIT_NPROC; root is
 * exempt, so the child becomes nobody). */
static bool no_more_threads(void)
{
    struct rlimit r = { 0, 0 };
    if (setrlimit(RLIMIT_NPROC, &r) != 0)
        return false;
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("nobody");
        if (!pw || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
            return false;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, open_gate_later, NULL) == 0) {
        pthread_join(t, NULL);
        return false;
    }
    return true;
}

static int nothr_rc[4];
static int nothr_flag[4];

static void nothr_second(void *arg)
{
    (void)arg;
    nothr_rc[2] = weft_blocking(mark, &nothr_flag[2], 5000);
}

static int nothr_main(void *arg)
{
    int phase = *(int *)arg;
    if (phase == 0) {
        /* No worker at all, none can start. */
        nothr_rc[0] = weft_blocking(mark, &nothr_flag[0], 1000);
        nothr_rc[1] = weft_blocking(mark, &nothr_flag[1], 0);
        return 0;
    }
    /* One worker started before; a second cannot be: the next job waits
     * for the first. */
    int64_t id = weft_go(nothr_second, NULL);
    nothr_rc[3] = weft_blocking(gated, &nothr_flag[3], 5000);
    weft_join(id, -1);
    return 0;
}

static int nothr_warm(void *arg)
{
    (void)arg;
    int f;
    return weft_blocking(mark, &f, 1000);
}

static void *open_gate_in_100(void *arg)
{
    (void)arg;
    usleep(100 * 1000);
    gate_open();
    return NULL;
}

Test(blocking, worker_cannot_be_started, .timeout = 60)
{
    for (int phase = 0; phase < 2; phase++) {
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            alarm(30);
            pthread_t t;
            gate_make(); /* the child's own: nobody else holds its write end */
            if (phase == 1 && weft_main(nothr_warm, NULL, NULL) != 0)
                _exit(10);
            if (phase == 1)
                pthread_create(&t, NULL, open_gate_in_100, NULL);
            if (!no_more_threads())
                _exit(77);
            weft_main(nothr_main, &phase, NULL);
            if (phase == 0)
                _exit(nothr_rc[0] == -EAGAIN && nothr_rc[1] == -EAGAIN && !nothr_flag[0] &&
                              !nothr_flag[1]
                          ? 0
                          : 1);
            _exit(nothr_rc[2] == 0 && nothr_rc[3] == 0 && nothr_flag[2] && nothr_flag[3] ? 0 : 2);
        }
        int st;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_assert(WIFEXITED(st), "phase %d: status %#x", phase, st);
        if (WEXITSTATUS(st) == 77)
            cr_skip_test("threads could not be limited here");
        cr_assert_eq(WEXITSTATUS(st), 0, "phase %d failed (%d)", phase, WEXITSTATUS(st));
    }
}

/* The same through the fault seam, in this process: the worker's record
 * cannot be had, so no thread starts. */
static int seam_rc[2], seam_flag[2];

static int seam_main(void *arg)
{
    (void)arg;
    weft_fault_set(WEFT_FAULT_MALLOC, 1, ENOMEM);
    seam_rc[0] = weft_blocking(mark, &seam_flag[0], 1000);
    weft_fault_clear();
    seam_rc[1] = weft_blocking(mark, &seam_flag[1], 1000);
    return 0;
}

Test(blocking, worker_record_cannot_be_had, .timeout = 60)
{
    cr_assert_eq(weft_main(seam_main, NULL, NULL), 0);
    cr_assert_eq(seam_rc[0], -EAGAIN, "%s", weft_err_name(seam_rc[0]));
    cr_assert_eq(seam_flag[0], 0);
    cr_assert_eq(seam_rc[1], 0, "%s", weft_err_name(seam_rc[1]));
    cr_assert_eq(seam_flag[1], 1);
}

/* ---- allocation failures ------------------------------------------------------------------------- */

static int fault_main(void *arg)
{
    int *seen = arg; /* [0]: failures, [1]: successes */
    for (unsigned nth = 1; nth < 8; nth++) {
        int flag = 0;
        weft_fault_clear();
        weft_fault_set(WEFT_FAULT_MALLOC, nth, ENOMEM);
        int rc = weft_blocking(mark, &flag, 1000);
        weft_fault_clear();
        if ((rc == -ENOMEM || rc == -EAGAIN) && !flag)
            seen[0]++; /* the timer heap, the worker's record */
        else if (rc == 0 && flag)
            seen[1]++;
        else
            return -(int)nth;
    }
    return 0;
}

Test(blocking, allocation_failures, .timeout = 60)
{
    int seen[2] = { 0, 0 };
    cr_assert_eq(weft_main(fault_main, seen, NULL), 0);
    cr_assert_gt(seen[0], 0);
    cr_assert_gt(seen[1], 0);
}

/* ---- the system resolver waits in the same queue ------------------------------------------------- */

static int res_rc;
static int res_threads;

static int resolver_main(void *arg)
{
    int base = *(int *)arg;
    int64_t h = weft_go(hold_worker, NULL);
    while (atomic_load(&running) < 1)
        weft_sleep(1);
    weft_addrinfo *ai = NULL;
    weft_hints hints = { .family = AF_INET, .socktype = SOCK_STREAM };
    /* The only worker is busy: the lookup never starts, so it asks nobody. */
    res_rc = weft_resolve(&ai, "pool.weft.invalid", "80", &hints, 150);
    weft_addrinfo_free(ai);
    res_threads = count_threads() - base;
    gate_open();
    weft_join(h, -1);
    return 0;
}

Test(blocking, system_resolver_shares_the_pool, .timeout = 60)
{
    gate_make();
    int base = count_threads();
    weft_config c = cap(1);
    c.resolver = "system";
    cr_assert_eq(weft_main(resolver_main, &base, &c), 0);
    cr_assert_eq(res_rc, -ETIMEDOUT, "%s", weft_err_name(res_rc));
    cr_assert_eq(res_threads, 1, "%d threads besides the test's", res_threads);
    gate_fini();
}
