/*
 * test_udp_loss.c - UDP under 30 % random loss: the receive path never
 * wedges and the application's own timeout fires.  A client sends 150
 * numbered requests to an echo server and waits 50 ms for each answer,
 * sending again on timeout; a burst of 1,000 datagrams then goes to a sink
 * that stops after 300 ms of silence.
 *
 * The loss comes from netem on lo inside a new network namespace (in a
 * child process) where the kernel has netem and the process may unshare;
 * elsewhere that test is skipped and says why.  A second test drops 30 %
 * at random with a classic BPF socket filter (its random-number extension)
 * on the receiving sockets: the datagrams are dropped by the kernel before
 * they are queued, so the receivers see exactly what a lossy network
 * gives, with no privilege or package needed.
 */
#include "helpers.h"
#include "netns.h"

#include <criterion/criterion.h>
#include <linux/filter.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define REQUESTS 150
#define MAX_TRIES 60      /* 0.51^60: a request that never gets through is impossible */
#define APP_TIMEOUT_MS 50 /* the application's wait for an answer */
#define BURST 1000
#define BURST_CHUNK 50
#define SINK_IDLE_MS 300

typedef struct loss_result {
    int skip; /* the environment cannot do it: msg says why */
    char msg[240];
    int completed; /* requests answered */
    int tries;     /* requests sent, retries included */
    int timeouts;  /* waits that ended by the application's timeout */
    int stale;     /* late answers to an earlier try */
    int max_tries;
    int64_t max_timeout_wait_ms; /* longest wait that ended in -ETIMEDOUT */
    int burst_got;
    int sink_rc; /* what ended the sink: -ETIMEDOUT */
    int64_t sink_idle_ms;
    int errors; /* any other failure */
    int64_t total_ms;
} loss_result;

typedef struct loss_run {
    bool filter; /* drop with the socket filter (else the network does) */
    weft_sock *srv, *cli, *sink;
    int srv_port, sink_port;
    int64_t srv_id;
    loss_result *res;
} loss_run;

/* Drops a packet for the socket with probability p, by a random number
 * the kernel draws for each (SKF_AD_RANDOM). */
static int attach_random_drop(weft_sock *s, double p)
{
    uint32_t threshold = (uint32_t)(p * 4294967296.0);
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_RANDOM)),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, threshold, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, 0),           /* drop */
        BPF_STMT(BPF_RET | BPF_K, 0xffffffffu), /* keep all of it */
    };
    struct sock_fprog prog = {.len = 4, .filter = code};
    return setsockopt(weft_sock_fd(s), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) == 0
               ? 0
               : -errno;
}

static int open_bound(weft_sock **s)
{
    int rc = weft_udp_open(s, AF_INET);
    if (rc < 0)
        return rc;
    if ((rc = weft_udp_bind(*s, "127.0.0.1", 0)) == 0 && (rc = local_port(*s)) > 0)
        return rc;
    weft_close(*s);
    return rc < 0 ? rc : -EINVAL;
}

static void echo_server(void *arg)
{
    loss_run *r = arg;
    uint64_t ids[16];
    weft_dgram v[16];
    for (;;) {
        for (int i = 0; i < 16; i++)
            v[i] = (weft_dgram){.buf = &ids[i], .len = sizeof ids[i]};
        int n = weft_recvmmsg(r->srv, v, 16, 10000);
        if (n == -ECANCELED)
            return; /* the client is done */
        if (n <= 0) {
            r->res->errors++;
            return;
        }
        for (int i = 0; i < n; i++)
            v[i].len = v[i].got; /* answer each to its sender */
        if (weft_sendmmsg(r->srv, v, n, 1000) != n)
            r->res->errors++;
    }
}

/* Requests with the application's timeout and retries. */
static void client(loss_run *r)
{
    loss_result *res = r->res;
    weft_addr to;
    weft_addr_parse(&to, "127.0.0.1", r->srv_port);
    for (uint64_t id = 0; id < REQUESTS; id++) {
        bool done = false;
        int tries = 0;
        while (!done && tries < MAX_TRIES) {
            tries++;
            res->tries++;
            if (weft_sendto(r->cli, &id, sizeof id, &to, 1000) != (ssize_t)sizeof id) {
                res->errors++;
                return;
            }
            int64_t until = weft_now() + APP_TIMEOUT_MS;
            for (;;) {
                uint64_t got;
                int64_t t0 = mono_ms();
                ssize_t n = weft_recvfrom(r->cli, &got, sizeof got, NULL, until - weft_now());
                if (n == -ETIMEDOUT) {
                    int64_t waited = mono_ms() - t0;
                    if (waited > res->max_timeout_wait_ms)
                        res->max_timeout_wait_ms = waited;
                    res->timeouts++;
                    break;
                }
                if (n != (ssize_t)sizeof got) {
                    res->errors++;
                    return;
                }
                if (got == id) {
                    done = true;
                    break;
                }
                res->stale++;
            }
        }
        if (tries > res->max_tries)
            res->max_tries = tries;
        if (!done)
            return;
        res->completed++;
    }
}

static void sink(void *arg)
{
    loss_run *r = arg;
    char bufs[16][128];
    weft_dgram v[16];
    for (;;) {
        for (int i = 0; i < 16; i++)
            v[i] = (weft_dgram){.buf = bufs[i], .len = sizeof bufs[i]};
        int64_t t0 = mono_ms();
        int n = weft_recvmmsg(r->sink, v, 16, SINK_IDLE_MS);
        if (n < 0) {
            r->res->sink_rc = n;
            r->res->sink_idle_ms = mono_ms() - t0;
            return;
        }
        r->res->burst_got += n;
    }
}

static void burst(loss_run *r)
{
    static char bufs[BURST_CHUNK][128];
    weft_dgram v[BURST_CHUNK];
    weft_addr to;
    weft_addr_parse(&to, "127.0.0.1", r->sink_port);
    int64_t id = weft_go(sink, r);
    for (int sent = 0; sent < BURST; sent += BURST_CHUNK) {
        for (int i = 0; i < BURST_CHUNK; i++) {
            /* Lengths rise through each chunk: the datagrams go one by
             * one, so a lossy link drops them one by one. */
            v[i] = (weft_dgram){.buf = bufs[i], .len = 20 + (size_t)i, .addr = to};
        }
        if (weft_sendmmsg(r->cli, v, BURST_CHUNK, 1000) != BURST_CHUNK)
            r->res->errors++;
        weft_sleep(1); /* let the sink drain: its buffer must not be the loss */
    }
    weft_join(id, -1);
}

static int loss_main(void *arg)
{
    loss_run *r = arg;
    loss_result *res = r->res;
    int64_t t0 = mono_ms();
    r->srv_port = open_bound(&r->srv);
    int cli_port = open_bound(&r->cli);
    r->sink_port = open_bound(&r->sink);
    if (r->srv_port <= 0 || cli_port <= 0 || r->sink_port <= 0) {
        snprintf(res->msg, sizeof res->msg, "open: %s %s %s", weft_err_name(r->srv_port),
                 weft_err_name(cli_port), weft_err_name(r->sink_port));
        res->errors++;
        return 0;
    }
    if (r->filter) {
        int a = attach_random_drop(r->srv, 0.3), b = attach_random_drop(r->cli, 0.3),
            c = attach_random_drop(r->sink, 0.3);
        if (a < 0 || b < 0 || c < 0) {
            res->skip = 1;
            snprintf(res->msg, sizeof res->msg, "SO_ATTACH_FILTER refused: %s",
                     weft_err_name(a < 0   ? a
                                   : b < 0 ? b
                                           : c));
        }
    }
    if (!res->skip) {
        r->srv_id = weft_go(echo_server, r);
        client(r);
        weft_cancel(r->srv_id);
        weft_join(r->srv_id, -1);
        burst(r);
    }
    weft_close(r->srv);
    weft_close(r->cli);
    weft_close(r->sink);
    res->total_ms = mono_ms() - t0;
    return 0;
}

static void check_result(const loss_result *res)
{
    cr_log_info("%d requests in %d tries: %d timeouts (%.0f %% of tries), %d late answers, at "
                "most %d tries, longest timed-out wait %lld ms; burst: %d of %d arrived, sink "
                "stopped by %s after %lld ms idle; %lld ms in all",
                res->completed, res->tries, res->timeouts,
                res->tries ? 100.0 * res->timeouts / res->tries : 0.0, res->stale, res->max_tries,
                (long long)res->max_timeout_wait_ms, res->burst_got, BURST,
                weft_err_name(res->sink_rc), (long long)res->sink_idle_ms,
                (long long)res->total_ms);
    cr_assert_eq(res->errors, 0, "errors: %s", res->msg);
    cr_assert_eq(res->completed, REQUESTS, "a request never got its answer");
    /* Each try loses the request or the answer with p = 1 - 0.7^2 = 0.51. */
    cr_assert_gt(res->timeouts, 0, "no loss at all: the loss was not in place");
    /* A late answer means its try timed out without a loss (a loaded
     * machine): those do not count as losses. */
    double rate = (double)(res->timeouts - res->stale) / res->tries;
    cr_assert(rate > 0.3 && rate < 0.75, "%.0f %% of tries lost, expected about 51 %%", 100 * rate);
    /* The application's timeout fired on time, every time. */
    cr_assert_lt(res->max_timeout_wait_ms, 1000);
    /* The burst: about 700 arrive, and the sink ends by its own timeout. */
    cr_assert(res->burst_got > 500 && res->burst_got < 900, "%d of %d arrived", res->burst_got,
              BURST);
    cr_assert_eq(res->sink_rc, -ETIMEDOUT);
    cr_assert(res->sink_idle_ms >= SINK_IDLE_MS - 10 && res->sink_idle_ms < SINK_IDLE_MS + 1000,
              "sink waited %lld ms", (long long)res->sink_idle_ms);
    cr_assert_lt(res->total_ms, 60000);
}

Test(udp_loss, random_drop_filter_30pct, .timeout = 270)
{
    int fds = count_fds();
    loss_result res = {0};
    loss_run r = {.filter = true, .res = &res};
    cr_assert_eq(weft_main(loss_main, &r, NULL), 0);
    if (res.skip)
        cr_skip_test("%s", res.msg);
    check_result(&res);
    cr_assert_eq(count_fds(), fds);
}

/* ---- netem in a network namespace ------------------------------------------------ */

/* In the child: a namespace of its own, lo up, netem on it, the run. */
static void netns_child(void *arg)
{
    loss_result *res = arg;
    if (!netns_enter(res->msg, sizeof res->msg) ||
        !netns_sh("ip link set lo up && tc qdisc add dev lo root netem loss 30%",
                  "the kernel lacks sch_netem (CONFIG_NET_SCH_NETEM); the socket-filter test "
                  "covers the loss",
                  res->msg, sizeof res->msg)) {
        res->skip = 1;
        return;
    }
    loss_run r = {.filter = false, .res = res};
    if (weft_main(loss_main, &r, NULL) != 0)
        res->errors++;
}

Test(udp_loss, netem_30pct_in_netns, .timeout = 270)
{
    loss_result res = {0};
    netns_fork(netns_child, &res, sizeof res, 80);
    if (res.skip)
        cr_skip_test("%s", res.msg);
    check_result(&res);
}
