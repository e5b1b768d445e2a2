/*
 * test_eintr.c - signals interrupting weft (#53).  A SIGALRM arrives every
 * millisecond (setitimer, handler installed without SA_RESTART, so every
 * blocking syscall it lands in fails with EINTR) while coroutines sleep,
 * accept, connect, and echo 16 MiB over loopback, and while the same calls
 * block the main stack outside any coroutine.  Everything must complete
 * with the right data and timing and no spurious error.  The previous
 * handler and timer are put back before any assertion.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t alarms;
static struct sigaction old_action;
static struct itimerval old_timer;

static void on_alarm(int sig)
{
    (void)sig;
    alarms = alarms + 1;
}

static void alarms_start(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = 0; /* no SA_RESTART: interrupted syscalls fail with EINTR */
    sigemptyset(&sa.sa_mask);
    alarms = 0;
    cr_assert_eq(sigaction(SIGALRM, &sa, &old_action), 0);
    struct itimerval it = {{0, 1000}, {0, 1000}};
    cr_assert_eq(setitimer(ITIMER_REAL, &it, &old_timer), 0);
}

static void alarms_stop(void)
{
    setitimer(ITIMER_REAL, &old_timer, NULL);
    sigaction(SIGALRM, &old_action, NULL);
}

/* A busy host delivers a 1 ms timer late and merges what is pending, so a
 * test repeats its round until enough signals have landed in its calls. */
static void storm_rounds(long (*round)(void), int max_rounds)
{
    long total = 0;
    int rounds = 0;
    while (total < 20 && rounds < max_rounds) {
        total += round();
        rounds++;
    }
    cr_assert_geq(total, 20, "too few signals arrived in %d rounds to test anything (%ld)", rounds,
                  total);
}

/* ---- inside coroutines ------------------------------------------------------ */

#define SLEEPERS 20
#define CONNS 20
#define BULK ((size_t)16 << 20)

static int sl_rc[SLEEPERS];
static int64_t sl_ms[SLEEPERS];
static int port;
static long accepted, connected, accept_err, connect_err;
static unsigned char *bulk_out, *bulk_in;
static ssize_t bulk_sent, bulk_echoed, bulk_got;
static int idle_rc;
static int64_t idle_ms;

static int64_t sleep_len(int i)
{
    return 10 + 10 * i;
}

static void co_sleeper(void *arg)
{
    int i = (int)(uintptr_t)arg;
    int64_t t0 = mono_ms();
    sl_rc[i] = weft_sleep(sleep_len(i));
    sl_ms[i] = mono_ms() - t0;
}

static void co_acceptor(void *arg)
{
    weft_sock *l = arg;
    for (int i = 0; i < CONNS; i++) {
        weft_sock *c;
        if (weft_tcp_accept(l, &c, 5000) != 0) {
            accept_err++;
            continue;
        }
        accepted++;
        weft_close(c);
    }
}

static void co_connector(void *arg)
{
    (void)arg;
    weft_sock *c;
    if (weft_tcp_connect(&c, "127.0.0.1", port, 5000) != 0) {
        connect_err++;
        return;
    }
    connected++;
    weft_close(c);
}

/* Echoes bulk data back in pieces. */
static void co_echo(void *arg)
{
    weft_sock *s = arg;
    static unsigned char buf[1 << 16];
    ssize_t total = 0;
    for (;;) {
        ssize_t n = weft_recv(s, buf, sizeof buf, 5000);
        if (n <= 0)
            break;
        if (weft_send(s, buf, (size_t)n, 5000) != n)
            break;
        total += n;
    }
    bulk_echoed = total;
    weft_close(s);
}

static void co_reader(void *arg)
{
    weft_sock *c = arg;
    bulk_got = weft_recvn(c, bulk_in, BULK, 10000);
}

static int co_main(void *arg)
{
    (void)arg;
    for (uintptr_t i = 0; i < SLEEPERS; i++)
        weft_go(co_sleeper, (void *)i);

    weft_sock *l;
    port = listen_any(&l, "127.0.0.1");
    if (port <= 0)
        return -1;
    int64_t acc = weft_go(co_acceptor, l);
    for (int i = 0; i < CONNS; i++)
        weft_go(co_connector, NULL);
    weft_join(acc, 10000);

    /* 16 MiB out and back on one connection. */
    weft_sock *c, *s;
    if (weft_tcp_connect(&c, "127.0.0.1", port, 5000) != 0 || weft_tcp_accept(l, &s, 5000) != 0)
        return -2;
    weft_close(l);
    int64_t echo = weft_go(co_echo, s);
    int64_t reader = weft_go(co_reader, c);
    bulk_sent = weft_send(c, bulk_out, BULK, 10000);
    weft_join(reader, 15000);

    /* A read timeout must neither end early nor fail otherwise. */
    int64_t t0 = mono_ms();
    char b;
    idle_rc = (int)weft_recv(c, &b, 1, 200);
    idle_ms = mono_ms() - t0;

    weft_close(c);
    weft_join(echo, 5000);
    return 0;
}

static long coroutines_round(void)
{
    int fds = count_fds();
    accepted = connected = accept_err = connect_err = 0;
    bulk_sent = bulk_echoed = bulk_got = 0;
    bulk_out = malloc(BULK);
    bulk_in = malloc(BULK);
    cr_assert(bulk_out && bulk_in);
    fill_pattern(bulk_out, BULK, 53);
    memset(bulk_in, 0, BULK);

    alarms_start();
    int rc = weft_main(co_main, NULL, NULL);
    long n_alarms = alarms;
    alarms_stop();

    cr_log_info("%ld alarms delivered", n_alarms);
    cr_assert_eq(rc, 0, "weft_main: %d", rc);
    for (int i = 0; i < SLEEPERS; i++) {
        cr_assert_eq(sl_rc[i], 0, "sleeper %d: %s", i, weft_err_name(sl_rc[i]));
        cr_assert(sl_ms[i] >= sleep_len(i) && sl_ms[i] < sleep_len(i) + 300,
                  "sleeper %d: %" PRId64 " ms for %" PRId64, i, sl_ms[i], sleep_len(i));
    }
    cr_assert_eq(accept_err, 0);
    cr_assert_eq(connect_err, 0);
    cr_assert_eq(accepted, CONNS);
    cr_assert_eq(connected, CONNS);
    cr_assert_eq(bulk_sent, (ssize_t)BULK, "send: %zd", bulk_sent);
    cr_assert_eq(bulk_got, (ssize_t)BULK, "recv: %zd", bulk_got);
    cr_assert_eq(bulk_echoed, (ssize_t)BULK);
    cr_assert_eq(memcmp(bulk_in, bulk_out, BULK), 0, "echoed data differs");
    cr_assert_eq(idle_rc, -ETIMEDOUT, "%s", weft_err_name(idle_rc));
    cr_assert(idle_ms >= 200 && idle_ms < 500, "read timeout after %" PRId64 " ms", idle_ms);
    free(bulk_out);
    free(bulk_in);
    cr_assert_eq(count_fds(), fds);
    return n_alarms;
}

Test(eintr, coroutines_under_alarm_storm, .timeout = 180)
{
    storm_rounds(coroutines_round, 4);
}

/* ---- on the main stack, outside any coroutine ------------------------------------ */

/* A plain thread plays the peer with blocking calls, after a delay so
 * that the main stack really blocks. */
static int eintr_port;
static int peer_ok;

static void *peer_thread(void *arg)
{
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* the alarms are for the main thread */
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)eintr_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        return NULL;
    nanosleep(&ts, NULL);
    /* 1 MiB the main stack reads back as it arrives. */
    unsigned char *buf = malloc(1 << 20);
    if (buf) {
        fill_pattern(buf, 1 << 20, 7);
        size_t off = 0;
        while (off < (1u << 20)) {
            ssize_t n = write(fd, buf + off, (1u << 20) - off);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        peer_ok = off == (1u << 20);
        free(buf);
    }
    /* Hold the connection open a while so the main stack can time out. */
    ts.tv_nsec = 400 * 1000000L;
    nanosleep(&ts, NULL);
    close(fd);
    return NULL;
}

/* One round: sleep, accept, read 1 MiB and time out, all on the main stack
 * under the storm.  Returns the alarms that landed in it. */
static long main_stack_round(void)
{
    int fds = count_fds();
    weft_sock *l, *c = NULL;
    eintr_port = listen_any(&l, "127.0.0.1");
    cr_assert_gt(eintr_port, 0);
    peer_ok = 0;
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, peer_thread, NULL), 0);

    alarms_start();
    int64_t t0 = mono_ms();
    int sleep_rc = weft_sleep(30);
    int64_t slept = mono_ms() - t0;
    int acc_rc = weft_tcp_accept(l, &c, 5000);
    unsigned char *got = malloc(1 << 20);
    ssize_t n = got && c ? weft_recvn(c, got, 1 << 20, 5000) : -1;
    t0 = mono_ms();
    char b;
    ssize_t idle = c ? weft_recv(c, &b, 1, 150) : -1;
    int64_t idle_took = mono_ms() - t0;
    long n_alarms = alarms;
    alarms_stop();

    pthread_join(t, NULL);
    cr_log_info("%ld alarms delivered", n_alarms);
    cr_assert_eq(sleep_rc, 0);
    cr_assert_geq(slept, 30, "weft_sleep(30) ended after %" PRId64 " ms", slept);
    cr_assert_eq(acc_rc, 0, "accept: %s", weft_err_name(acc_rc));
    cr_assert(peer_ok);
    cr_assert_eq(n, 1 << 20, "recvn: %zd", n);
    unsigned char *want = malloc(1 << 20);
    cr_assert_not_null(want);
    fill_pattern(want, 1 << 20, 7);
    cr_assert_eq(memcmp(got, want, 1 << 20), 0);
    cr_assert_eq(idle, -ETIMEDOUT, "%s", weft_err_name((int)idle));
    cr_assert(idle_took >= 150 && idle_took < 400, "read timeout after %" PRId64 " ms", idle_took);
    free(got);
    free(want);
    weft_close(c);
    weft_close(l);
    cr_assert_eq(count_fds(), fds);
    return n_alarms;
}

Test(eintr, main_stack_under_alarm_storm, .timeout = 90)
{
    storm_rounds(main_stack_round, 8);
}

/* Signals also land in a loop driven by hand. */
static int emb_rc;

static void emb_sleeper(void *arg)
{
    (void)arg;
    emb_rc = weft_sleep(100);
}

static long embedded_round(void)
{
    weft_loop *l;
    cr_assert_eq(weft_loop_new(&l, NULL), 0);
    emb_rc = 1;
    int64_t id = weft_go(emb_sleeper, NULL);
    alarms_start();
    int64_t t0 = mono_ms();
    int join_rc = weft_join(id, 2000);
    int64_t took = mono_ms() - t0;
    weft_go(emb_sleeper, NULL);
    int64_t t1 = mono_ms();
    int run_rc = weft_loop_run(l, 2000);
    int64_t took_run = mono_ms() - t1;
    long n_alarms = alarms;
    alarms_stop();
    weft_loop_free(l);

    cr_assert_eq(join_rc, 0, "join: %s", weft_err_name(join_rc));
    cr_assert_eq(run_rc, 0, "run: %s", weft_err_name(run_rc));
    cr_assert_eq(emb_rc, 0);
    cr_assert(took >= 100 && took < 400, "join took %" PRId64 " ms", took);
    cr_assert(took_run >= 100 && took_run < 400, "run took %" PRId64 " ms", took_run);
    return n_alarms;
}

Test(eintr, embedded_loop_under_alarm_storm, .timeout = 90)
{
    storm_rounds(embedded_round, 8);
}
