/*
 * test_tcp_data.c - TCP data integrity: a 16 MiB echo with half-close over
 * IPv4 and IPv6, 64 MiB each way through small buffers and a slow reader
 * (without the writer spinning), 1000 concurrent writers on one socket,
 * 100 parallel connections through a coroutine-per-connection server, a
 * peer's unread data not making the loop spin, scatter/gather I/O, and
 * weft_sock_sent after a send that failed part-way.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/time.h>

#define KiB 1024u
#define MiB (1024u * 1024u)

/* CPU time (user + system) this process has used, in ms. */
static double cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

/* A connected pair over loopback: *a is the connecting end, *b the accepted
 * one.  The handshake completes in the backlog, so one coroutine suffices. */
static unsigned char *pattern_buf(size_t n, uint64_t seed)
{
    unsigned char *p = malloc(n);
    cr_assert_not_null(p);
    fill_pattern(p, n, seed);
    return p;
}

/* ---- 16 MiB echo with half-close ------------------------------------------ */

typedef struct echo_run {
    const char *host;
    int port;
    weft_sock *listener;
    const unsigned char *out;
    unsigned char *in;
    size_t len;
    int connect_rc, accept_rc, shut_rc, close_rc, server_close_rc;
    int peer_family;
    ssize_t sent;
    size_t got;
    ssize_t end;        /* recv result that ended the client's read loop */
    ssize_t after_end;  /* one more recv after that */
    size_t echoed;      /* bytes the server sent back */
    ssize_t server_end; /* recv result that ended the server's loop */
} echo_run;

static void echo_server(void *arg)
{
    echo_run *r = arg;
    weft_sock *c;
    r->accept_rc = weft_tcp_accept(r->listener, &c, 5000);
    if (r->accept_rc < 0)
        return;
    weft_addr pa;
    if (weft_sock_peer(c, &pa) == 0)
        r->peer_family = pa.u.sa.sa_family;
    static char buf[64 * KiB];
    for (;;) {
        ssize_t n = weft_recv(c, buf, sizeof buf, 5000);
        if (n <= 0) {
            r->server_end = n;
            break;
        }
        if (weft_send(c, buf, (size_t)n, 10000) != n) {
            r->server_end = -1000;
            break;
        }
        r->echoed += (size_t)n;
    }
    r->server_close_rc = weft_close(c);
}

typedef struct echo_sender {
    echo_run *r;
    weft_sock *s;
} echo_sender;

static void echo_send_half(void *arg)
{
    echo_sender *es = arg;
    es->r->sent = weft_send(es->s, es->r->out, es->r->len, 10000);
    es->r->shut_rc = weft_shutdown(es->s, WEFT_SHUT_WR);
}

static void echo_client(void *arg)
{
    echo_run *r = arg;
    weft_sock *s;
    r->connect_rc = weft_tcp_connect(&s, r->host, r->port, 2000);
    if (r->connect_rc < 0)
        return;
    /* Send and receive at once: the echo would fill both buffers otherwise. */
    echo_sender es = {r, s};
    int64_t snd = weft_go(echo_send_half, &es);
    for (;;) {
        /* Once the buffer is full, one more byte into a spare one: the
         * end of stream, or a byte too many that fails the test. */
        size_t room = r->len - r->got;
        unsigned char spare;
        ssize_t n = room ? weft_recv(s, r->in + r->got, room, 5000) : weft_recv(s, &spare, 1, 5000);
        if (n <= 0 || room == 0) {
            r->end = n;
            break;
        }
        r->got += (size_t)n;
    }
    weft_join(snd, 10000);
    r->after_end = weft_recv(s, r->in, 1, 1000);
    r->close_rc = weft_close(s);
}

static int echo_main(void *arg)
{
    echo_run *r = arg;
    r->port = listen_any(&r->listener, r->host);
    if (r->port < 0)
        return r->port;
    int64_t srv = weft_go(echo_server, r);
    int64_t cli = weft_go(echo_client, r);
    int rc = weft_join(cli, 20000);
    if (rc == 0)
        rc = weft_join(srv, 20000);
    weft_close(r->listener);
    return rc;
}

static void run_echo(const char *host, int family)
{
    size_t len = 16 * MiB;
    unsigned char *out = malloc(len), *in = calloc(1, len);
    cr_assert(out && in);
    uint64_t seed;
    cr_assert_eq(getentropy(&seed, sizeof seed), 0);
    fill_pattern(out, len, seed);
    echo_run r = {.host = host,
                  .out = out,
                  .in = in,
                  .len = len,
                  .end = -999,
                  .after_end = -999,
                  .server_end = -999};
    int fds = count_fds();

    int rc = weft_main(echo_main, &r, NULL);
    bool same = memcmp(in, out, len) == 0;
    free(out);
    free(in);
    cr_assert_eq(rc, 0);
    cr_assert_eq(r.connect_rc, 0, "connect: %s", weft_err_name(r.connect_rc));
    cr_assert_eq(r.accept_rc, 0, "accept: %s", weft_err_name(r.accept_rc));
    cr_assert_eq(r.peer_family, family);
    cr_assert_eq(r.sent, (ssize_t)len, "send: %zd", r.sent);
    cr_assert_eq(r.shut_rc, 0);
    cr_assert_eq(r.server_end, 0, "server: %s after the last byte, not EOF",
                 weft_err_name((int)r.server_end));
    cr_assert_eq(r.echoed, len);
    cr_assert_eq(r.got, len, "read back %zu of %zu", r.got, len);
    cr_assert_eq(r.end, 0, "client: %s after the last byte, not EOF", weft_err_name((int)r.end));
    cr_assert_eq(r.after_end, 0, "EOF not sticky: %s", weft_err_name((int)r.after_end));
    cr_assert(same, "echoed data differs");
    cr_assert_eq(r.close_rc, 0);
    cr_assert_eq(r.server_close_rc, 0);
    cr_assert_eq(count_fds(), fds);
}

Test(tcp_data, echo_16m_ipv4, .timeout = 90)
{
    run_echo("127.0.0.1", AF_INET);
}

Test(tcp_data, echo_16m_ipv6, .timeout = 90)
{
    weft_sock *l;
    int rc = weft_tcp_listen(&l, "::1", 0, 1, 0);
    if (rc < 0)
        cr_skip("no IPv6 loopback here: %s", weft_err_name(rc));
    weft_close(l);
    run_echo("::1", AF_INET6);
}

/* ---- 64 MiB each way through small buffers and slow readers ------------- */

#define BIG (64 * MiB)

typedef struct slow_end {
    weft_sock *s;
    const unsigned char *src; /* what this end sends */
    const unsigned char *exp; /* what it must receive */
    ssize_t sent;
    int shut_rc;
    size_t got;
    size_t bad_at; /* first mismatching offset + 1, 0 if none */
    ssize_t end;
    long reads;
    unsigned char buf[64 * KiB];
} slow_end;

static void slow_writer(void *arg)
{
    slow_end *e = arg;
    e->sent = weft_send(e->s, e->src, BIG, 60000);
    e->shut_rc = weft_shutdown(e->s, WEFT_SHUT_WR);
}

static void slow_reader(void *arg)
{
    slow_end *e = arg;
    unsigned char *b = e->buf;
    for (;;) {
        ssize_t n = weft_recv(e->s, b, 64 * KiB, 5000);
        if (n <= 0) {
            e->end = n;
            break;
        }
        if (e->got + (size_t)n > BIG || memcmp(b, e->exp + e->got, (size_t)n) != 0) {
            if (!e->bad_at)
                e->bad_at = e->got + 1;
            e->end = -1000;
            break;
        }
        e->got += (size_t)n;
        e->reads++;
        weft_sleep(1); /* a slow consumer */
    }
}

typedef struct slow_run {
    slow_end a, b;
    int pair_rc;
    unsigned long send_calls;
    double wall_ms, cpu_ms;
} slow_run;

static int slow_main(void *arg)
{
    slow_run *r = arg;
    weft_sock *l, *a, *b;
    int port = listen_any(&l, "127.0.0.1");
    if (port < 0)
        return port;
    /* Small buffers on the listener are inherited with the handshake, so the
     * advertised window is small from the start. */
    weft_sock_set_bufsize(l, 32 * KiB, 32 * KiB);
    r->pair_rc = weft_tcp_connect(&a, "127.0.0.1", port, 2000);
    if (r->pair_rc == 0)
        r->pair_rc = weft_tcp_accept(l, &b, 2000);
    weft_close(l);
    if (r->pair_rc < 0)
        return r->pair_rc;
    weft_sock_set_bufsize(a, 32 * KiB, 32 * KiB);
    r->a.s = a;
    r->b.s = b;

    weft_fault_clear();
    double c0 = cpu_ms();
    int64_t t0 = weft_now();
    int64_t ids[4] = {weft_go(slow_writer, &r->a), weft_go(slow_writer, &r->b),
                      weft_go(slow_reader, &r->a), weft_go(slow_reader, &r->b)};
    /* Measured while the writers run: that is where a spin would be. */
    weft_join(ids[0], 60000);
    weft_join(ids[1], 60000);
    r->wall_ms = (double)(weft_now() - t0);
    r->cpu_ms = cpu_ms() - c0;
    r->send_calls = weft_fault_calls(WEFT_FAULT_SEND);
    weft_join(ids[2], 60000);
    weft_join(ids[3], 60000);
    weft_close(a);
    weft_close(b);
    return 0;
}

Test(tcp_data, partial_writes_64m_each_way, .timeout = 180)
{
    unsigned char *ab = pattern_buf(BIG, 11), *ba = pattern_buf(BIG, 22);
    static slow_run r;
    r = (slow_run){.a = {.src = ab, .exp = ba, .end = -999},
                   .b = {.src = ba, .exp = ab, .end = -999}};
    int fds = count_fds();

    int rc = weft_main(slow_main, &r, NULL);
    free(ab);
    free(ba);
    cr_assert_eq(rc, 0, "pair: %s", weft_err_name(r.pair_rc));
    cr_log_info("partial writes: %.0f ms wall, %.0f ms CPU, %lu send calls, %ld+%ld reads",
                r.wall_ms, r.cpu_ms, r.send_calls, r.a.reads, r.b.reads);
    cr_assert_eq(r.a.sent, (ssize_t)BIG, "a sent %zd", r.a.sent);
    cr_assert_eq(r.b.sent, (ssize_t)BIG, "b sent %zd", r.b.sent);
    cr_assert_eq(r.a.shut_rc, 0);
    cr_assert_eq(r.b.shut_rc, 0);
    cr_assert_eq(r.a.bad_at, 0, "a: data differs at %zu", r.a.bad_at - 1);
    cr_assert_eq(r.b.bad_at, 0, "b: data differs at %zu", r.b.bad_at - 1);
    cr_assert_eq(r.a.got, BIG);
    cr_assert_eq(r.b.got, BIG);
    cr_assert_eq(r.a.end, 0, "a: %zd after the last byte, not EOF", r.a.end);
    cr_assert_eq(r.b.end, 0, "b: %zd after the last byte, not EOF", r.b.end);
    /* The readers were slow, so the writers must have waited a lot: a writer
     * that retried instead of parking would burn the whole wall time in CPU
     * and make far more send calls than there were reads. */
    cr_assert_gt(r.wall_ms, 1000.0, "readers were not slow: %.0f ms", r.wall_ms);
    cr_assert_lt(r.cpu_ms, 0.3 * r.wall_ms, "CPU %.0f ms over %.0f ms wall", r.cpu_ms, r.wall_ms);
    cr_assert_lt(r.send_calls, 8 * (unsigned long)(r.a.reads + r.b.reads) + 100,
                 "%lu send calls for %ld reads", r.send_calls, r.a.reads + r.b.reads);
    cr_assert_eq(count_fds(), fds);
}

/* ---- 1000 writers on one socket ------------------------------------------ */

#define WRITERS 1000
#define RECS 8
#define REC 1024

typedef struct wq_run {
    weft_sock *w, *r;
    int pair_rc;
    int send_fail;
    int next[WRITERS];
    long records, bad_tag, bad_payload, out_of_order;
    ssize_t end;
} wq_run;

static wq_run *wq;

static void make_record(unsigned char *rec, uint32_t writer, uint32_t seq)
{
    memcpy(rec, &writer, 4);
    memcpy(rec + 4, &seq, 4);
    fill_pattern(rec + 8, REC - 8, (uint64_t)writer << 16 | seq);
}

static void wq_writer(void *arg)
{
    uint32_t id = (uint32_t)(uintptr_t)arg;
    unsigned char rec[REC];
    for (uint32_t seq = 0; seq < RECS; seq++) {
        make_record(rec, id, seq);
        if (weft_send(wq->w, rec, REC, 30000) != REC)
            wq->send_fail++;
    }
}

static void wq_reader(void *arg)
{
    (void)arg;
    unsigned char rec[REC], exp[REC];
    for (long i = 0; i < (long)WRITERS * RECS; i++) {
        ssize_t n = weft_recvn(wq->r, rec, REC, 10000);
        if (n != REC) {
            wq->end = n;
            return;
        }
        wq->records++;
        uint32_t id, seq;
        memcpy(&id, rec, 4);
        memcpy(&seq, rec + 4, 4);
        if (id >= WRITERS || seq >= RECS) {
            wq->bad_tag++;
            continue;
        }
        make_record(exp, id, seq);
        if (memcmp(rec, exp, REC) != 0)
            wq->bad_payload++;
        if ((int)seq != wq->next[id])
            wq->out_of_order++;
        wq->next[id] = (int)seq + 1;
        if (i % 256 == 0)
            weft_sleep(1); /* let the writers queue up */
    }
    wq->end = weft_recv(wq->r, rec, 1, 5000);
}

static int wq_main(void *arg)
{
    (void)arg;
    wq->pair_rc = make_pair_on("127.0.0.1", &wq->w, &wq->r);
    if (wq->pair_rc < 0)
        return wq->pair_rc;
    /* A small send buffer makes sends partial, so writers really overlap. */
    weft_sock_set_bufsize(wq->w, 0, 4 * KiB);
    int64_t rd = weft_go(wq_reader, NULL);
    static int64_t ids[WRITERS];
    for (uint32_t i = 0; i < WRITERS; i++)
        ids[i] = weft_go(wq_writer, (void *)(uintptr_t)i);
    for (int i = 0; i < WRITERS; i++)
        weft_join(ids[i], 30000);
    weft_shutdown(wq->w, WEFT_SHUT_WR);
    weft_join(rd, 30000);
    weft_close(wq->w);
    weft_close(wq->r);
    return 0;
}

Test(tcp_data, write_queue_order_1000_writers, .timeout = 180)
{
    static wq_run run;
    wq = &run;
    run.end = -999;
    cr_assert_eq(weft_main(wq_main, NULL, NULL), 0, "pair: %s", weft_err_name(run.pair_rc));
    cr_assert_eq(run.send_fail, 0);
    cr_assert_eq(run.records, (long)WRITERS * RECS, "got %ld records, then %s", run.records,
                 weft_err_name((int)run.end));
    cr_assert_eq(run.bad_tag, 0, "%ld records with a torn header", run.bad_tag);
    cr_assert_eq(run.bad_payload, 0, "%ld records interleaved mid-record", run.bad_payload);
    cr_assert_eq(run.out_of_order, 0, "%ld records out of per-writer order", run.out_of_order);
    for (int i = 0; i < WRITERS; i++)
        cr_assert_eq(run.next[i], RECS, "writer %d: %d records", i, run.next[i]);
    cr_assert_eq(run.end, 0, "no EOF after the last record: %zd", run.end);
}

/* ---- 100 parallel connections --------------------------------------------- */

#define CLIENTS 100
#define PER_CLIENT (64 * KiB)

typedef struct par_client {
    int idx;
    int connect_rc;
    ssize_t sent;
    size_t got;
    ssize_t end;
    bool ok;
} par_client;

typedef struct par_run {
    int port;
    weft_sock *listener;
    int accepted, accept_fail;
    int handlers_done, handler_fail;
    int fds_before, fds_after;
    par_client c[CLIENTS];
} par_run;

static par_run *par;

static void par_handler(void *arg)
{
    weft_sock *c = arg;
    char buf[16 * KiB];
    size_t total = 0;
    for (;;) {
        ssize_t n = weft_recv(c, buf, sizeof buf, 10000);
        if (n == 0)
            break;
        if (n < 0 || weft_send(c, buf, (size_t)n, 10000) != n) {
            par->handler_fail++;
            break;
        }
        total += (size_t)n;
    }
    if (total != PER_CLIENT)
        par->handler_fail++;
    weft_close(c);
    par->handlers_done++;
}

static void par_acceptor(void *arg)
{
    (void)arg;
    while (par->accepted < CLIENTS) {
        weft_sock *c;
        if (weft_tcp_accept(par->listener, &c, 10000) < 0) {
            par->accept_fail++;
            return;
        }
        par->accepted++;
        weft_go(par_handler, c);
    }
}

typedef struct par_send {
    weft_sock *s;
    const unsigned char *data;
    ssize_t sent;
} par_send;

static void par_sender(void *arg)
{
    par_send *ps = arg;
    ps->sent = weft_send(ps->s, ps->data, PER_CLIENT, 10000);
    weft_shutdown(ps->s, WEFT_SHUT_WR);
}

static void par_client_fn(void *arg)
{
    par_client *pc = arg;
    unsigned char out[PER_CLIENT], in[PER_CLIENT];
    fill_pattern(out, sizeof out, 1000 + (uint64_t)pc->idx);
    weft_sock *s;
    pc->connect_rc = weft_tcp_connect(&s, "127.0.0.1", par->port, 5000);
    if (pc->connect_rc < 0)
        return;
    par_send ps = {s, out, -999};
    int64_t snd = weft_go(par_sender, &ps);
    for (;;) {
        size_t room = sizeof in - pc->got;
        unsigned char spare; /* as in echo_client */
        ssize_t n = room ? weft_recv(s, in + pc->got, room, 10000) : weft_recv(s, &spare, 1, 10000);
        if (n <= 0 || room == 0) {
            pc->end = n;
            break;
        }
        pc->got += (size_t)n;
    }
    weft_join(snd, 10000);
    pc->sent = ps.sent;
    pc->ok = pc->got == sizeof in && memcmp(in, out, sizeof in) == 0;
    weft_close(s);
}

static int par_main(void *arg)
{
    (void)arg;
    par->port = listen_any(&par->listener, "127.0.0.1");
    if (par->port < 0)
        return par->port;
    par->fds_before = count_fds();
    int64_t acc = weft_go(par_acceptor, NULL);
    static int64_t ids[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        par->c[i] = (par_client){.idx = i, .connect_rc = -999, .sent = -999, .end = -999};
        ids[i] = weft_go_opts(par_client_fn, &par->c[i], &(weft_co_opts){.stack_size = 512 * KiB});
    }
    for (int i = 0; i < CLIENTS; i++)
        weft_join(ids[i], 20000);
    weft_join(acc, 5000);
    for (int i = 0; i < 200 && par->handlers_done < par->accepted; i++)
        weft_sleep(10);
    par->fds_after = count_fds();
    weft_close(par->listener);
    return 0;
}

Test(tcp_data, parallel_100_clients_64k, .timeout = 180)
{
    static par_run run;
    par = &run;
    int fds = count_fds();
    cr_assert_eq(weft_main(par_main, NULL, NULL), 0);
    cr_assert_eq(run.accept_fail, 0);
    cr_assert_eq(run.accepted, CLIENTS);
    cr_assert_eq(run.handlers_done, CLIENTS);
    cr_assert_eq(run.handler_fail, 0);
    for (int i = 0; i < CLIENTS; i++) {
        par_client *pc = &run.c[i];
        cr_assert_eq(pc->connect_rc, 0, "client %d connect: %s", i, weft_err_name(pc->connect_rc));
        cr_assert_eq(pc->sent, (ssize_t)PER_CLIENT, "client %d sent %zd", i, pc->sent);
        cr_assert_eq(pc->got, PER_CLIENT, "client %d got %zu", i, pc->got);
        cr_assert(pc->ok, "client %d: data differs", i);
        cr_assert_eq(pc->end, 0, "client %d: no EOF (%zd)", i, pc->end);
    }
    cr_assert_eq(run.fds_after, run.fds_before, "server side fds %d -> %d", run.fds_before,
                 run.fds_after);
    cr_assert_eq(count_fds(), fds);
}

/* ---- unread data does not make the loop spin ------------------------------- */

typedef struct unread_run {
    weft_sock *us, *peer;
    int pair_rc;
    ssize_t arm_rc;
    ssize_t peer_sent;
    size_t peer_out;
    double cpu_ms, wall_ms;
    size_t drained;
    ssize_t end;
} unread_run;

static void unread_peer(void *arg)
{
    unread_run *r = arg;
    static unsigned char data[MiB];
    fill_pattern(data, sizeof data, 5);
    /* Whatever the buffers cannot take waits, parked, until the timeout. */
    r->peer_sent = weft_send(r->peer, data, sizeof data, 1200);
    r->peer_out = weft_sock_sent(r->peer);
    weft_close(r->peer);
}

static int unread_main(void *arg)
{
    unread_run *r = arg;
    r->pair_rc = make_pair_on("127.0.0.1", &r->us, &r->peer);
    if (r->pair_rc < 0)
        return r->pair_rc;
    static char buf[64 * KiB];
    /* One timed-out wait puts our socket into the poller, where a level-
     * triggered registration would then fire for every loop step. */
    r->arm_rc = weft_recv(r->us, buf, sizeof buf, 20);
    int64_t p = weft_go(unread_peer, r);
    weft_sleep(50); /* the data has arrived */
    double c0 = cpu_ms();
    int64_t t0 = weft_now();
    weft_sleep(1500);
    r->wall_ms = (double)(weft_now() - t0);
    r->cpu_ms = cpu_ms() - c0;
    weft_join(p, 5000);
    for (;;) {
        ssize_t n = weft_recv(r->us, buf, sizeof buf, 5000);
        if (n <= 0) {
            r->end = n;
            break;
        }
        r->drained += (size_t)n;
    }
    weft_close(r->us);
    return 0;
}

Test(tcp_data, unread_data_no_spin, .timeout = 60)
{
    unread_run r = {.end = -999};
    cr_assert_eq(weft_main(unread_main, &r, NULL), 0, "pair: %s", weft_err_name(r.pair_rc));
    cr_assert_eq(r.arm_rc, -ETIMEDOUT);
    cr_assert_gt(r.peer_out, 0);
    cr_log_info("unread: %.1f ms CPU over %.0f ms", r.cpu_ms, r.wall_ms);
    cr_assert_geq(r.wall_ms, 1500.0);
    cr_assert_lt(r.cpu_ms, 0.1 * r.wall_ms, "CPU %.0f ms while idle for %.0f ms", r.cpu_ms,
                 r.wall_ms);
    /* Nothing lost either: every byte the peer's send got out is there. */
    cr_assert_eq(r.drained, r.peer_out, "peer sent %zu, we read %zu", r.peer_out, r.drained);
    cr_assert(r.peer_sent == (ssize_t)MiB || r.peer_sent == -ETIMEDOUT);
    cr_assert_eq(r.end, 0);
}

/* ---- scatter/gather --------------------------------------------------------- */

#define NIOV 200

typedef struct sg_run {
    weft_sock *a, *b;
    int pair_rc;
    const unsigned char *src;
    size_t total;
    struct iovec iov[NIOV];
    ssize_t sent;
    size_t sock_sent;
    unsigned char *dst;
    size_t got;
    ssize_t end;
    ssize_t bad_cnt_neg, bad_cnt_max, zero_cnt, recv_bad_cnt;
} sg_run;

static void sg_sender(void *arg)
{
    sg_run *r = arg;
    r->sent = weft_sendv(r->a, r->iov, NIOV, 10000);
    r->sock_sent = weft_sock_sent(r->a);
    weft_shutdown(r->a, WEFT_SHUT_WR);
}

static void sg_receiver(void *arg)
{
    sg_run *r = arg;
    /* Three odd-sized pieces; a receive fills them in order. */
    static unsigned char p1[1000], p2[7], p3[50000];
    for (;;) {
        struct iovec v[3] = {{p1, sizeof p1}, {p2, sizeof p2}, {p3, sizeof p3}};
        ssize_t n = weft_recvv(r->b, v, 3, 10000);
        if (n <= 0) {
            r->end = n;
            return;
        }
        size_t left = (size_t)n;
        for (int i = 0; i < 3 && left; i++) {
            size_t k = left < v[i].iov_len ? left : v[i].iov_len;
            if (r->got + k > r->total) {
                r->end = -1000;
                return;
            }
            memcpy(r->dst + r->got, v[i].iov_base, k);
            r->got += k;
            left -= k;
        }
    }
}

static int sg_main(void *arg)
{
    sg_run *r = arg;
    r->pair_rc = make_pair_on("127.0.0.1", &r->a, &r->b);
    if (r->pair_rc < 0)
        return r->pair_rc;
    struct iovec one = {r->dst, 1};
    r->bad_cnt_neg = weft_sendv(r->a, &one, -1, 1000);
    r->bad_cnt_max = weft_sendv(r->a, &one, IOV_MAX + 1, 1000);
    r->zero_cnt = weft_sendv(r->a, &one, 0, 1000);
    r->recv_bad_cnt = weft_recvv(r->b, &one, IOV_MAX + 1, 1000);
    int64_t s = weft_go(sg_sender, r);
    int64_t v = weft_go(sg_receiver, r);
    weft_join(s, 20000);
    weft_join(v, 20000);
    weft_close(r->a);
    weft_close(r->b);
    return 0;
}

Test(tcp_data, sendv_recvv_round_trip, .timeout = 90)
{
    static sg_run r;
    r.end = -999;
    /* 200 pieces of uneven sizes (some empty), one of 4 MiB so the send is
     * partial and resumes in the middle of a piece and past the first 64. */
    size_t sizes[NIOV], total = 0;
    for (int i = 0; i < NIOV; i++) {
        sizes[i] = i == 150 ? 4 * MiB : i % 17 == 0 ? 0 : (size_t)(i * 7919 % 30011) + 1;
        total += sizes[i];
    }
    unsigned char *src = pattern_buf(total, 77);
    r.src = src;
    r.total = total;
    r.dst = calloc(1, total);
    size_t off = 0;
    for (int i = 0; i < NIOV; i++) {
        r.iov[i] = (struct iovec){src + off, sizes[i]};
        off += sizes[i];
    }
    int fds = count_fds();
    int rc = weft_main(sg_main, &r, NULL);
    bool same = memcmp(r.dst, src, total) == 0;
    free(src);
    free(r.dst);
    cr_assert_eq(rc, 0, "pair: %s", weft_err_name(r.pair_rc));
    cr_assert_eq(r.bad_cnt_neg, -EINVAL);
    cr_assert_eq(r.bad_cnt_max, -EINVAL);
    cr_assert_eq(r.zero_cnt, 0);
    cr_assert_eq(r.recv_bad_cnt, -EINVAL);
    cr_assert_eq(r.sent, (ssize_t)total, "sendv: %zd of %zu", r.sent, total);
    cr_assert_eq(r.sock_sent, total);
    cr_assert_eq(r.got, total, "recvv got %zu of %zu", r.got, total);
    cr_assert_eq(r.end, 0);
    cr_assert(same, "gathered data differs");
    cr_assert_eq(count_fds(), fds);
}

/* Small vectors, each gathered into one send: 512 KiB in calls of 2 to 12
 * pieces of 0 to 90 bytes, against a reader that starts late, so sends
 * find the socket full and go out in part, resuming inside a piece. */
#define GV_BYTES (MiB / 2)

static struct {
    size_t calls, short_calls;
} gv;

static void gv_sender(void *arg)
{
    sg_run *r = arg;
    size_t off = 0;
    uint64_t x = 12345;
    while (off < r->total) {
        struct iovec v[12];
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int k = 2 + (int)(x >> 60) % 11;
        size_t want = 0;
        for (int i = 0; i < k; i++) {
            size_t n = (size_t)(x >> (4 * i)) % 91;
            if (n > r->total - off - want)
                n = r->total - off - want;
            v[i] = (struct iovec){(void *)(r->src + off + want), n};
            want += n;
        }
        ssize_t n = weft_sendv(r->a, v, k, 10000);
        gv.calls++;
        if (n != (ssize_t)want) {
            gv.short_calls++;
            break;
        }
        off += want;
    }
    r->sent = (ssize_t)off;
    weft_shutdown(r->a, WEFT_SHUT_WR);
}

static void gv_late_receiver(void *arg)
{
    weft_sleep(200); /* the sender fills the socket meanwhile */
    sg_receiver(arg);
}

static int gv_main(void *arg)
{
    sg_run *r = arg;
    r->pair_rc = make_pair_on("127.0.0.1", &r->a, &r->b);
    if (r->pair_rc < 0)
        return r->pair_rc;
    /* Small buffers: the socket fills at once and stays near full. */
    if ((r->pair_rc = weft_sock_set_bufsize(r->a, 0, 16384)) < 0 ||
        (r->pair_rc = weft_sock_set_bufsize(r->b, 65536, 0)) < 0)
        return r->pair_rc;
    int64_t s = weft_go(gv_sender, r);
    int64_t v = weft_go(gv_late_receiver, r);
    weft_join(s, 30000);
    weft_join(v, 30000);
    weft_close(r->a);
    weft_close(r->b);
    return 0;
}

Test(tcp_data, small_vectors_gathered, .timeout = 90)
{
    static sg_run r;
    r.end = -999;
    unsigned char *src = pattern_buf(GV_BYTES, 78);
    r.src = src;
    r.total = GV_BYTES;
    r.dst = calloc(1, GV_BYTES);
    int rc = weft_main(gv_main, &r, NULL);
    bool same = memcmp(r.dst, src, GV_BYTES) == 0;
    free(src);
    free(r.dst);
    cr_assert_eq(rc, 0, "pair: %s", weft_err_name(r.pair_rc));
    cr_assert_eq(gv.short_calls, 0, "a sendv returned short");
    cr_assert_gt(gv.calls, 1000); /* about 1,900 */
    cr_assert_eq(r.sent, (ssize_t)GV_BYTES);
    cr_assert_eq(r.got, (size_t)GV_BYTES, "received %zu of %zu", r.got, (size_t)GV_BYTES);
    cr_assert_eq(r.end, 0);
    cr_assert(same, "bytes differ");
}

/* ---- weft_sock_sent after a partial send ------------------------------------ */

typedef struct sent_run {
    weft_sock *a, *b;
    int pair_rc;
    ssize_t ok_rc;
    size_t ok_sent;
    ssize_t fail_rc;
    size_t fail_sent;
    ssize_t v_fail_rc;
    size_t v_fail_sent;
    size_t received, received_v;
    size_t bad_at;
    ssize_t end;
} sent_run;

static int sent_main(void *arg)
{
    sent_run *r = arg;
    size_t len = 16 * MiB;
    unsigned char *data = malloc(len), *buf = malloc(64 * KiB);
    if (!data || !buf)
        return -ENOMEM;
    fill_pattern(data, len, 9);

    weft_sock *a, *b;
    r->pair_rc = make_pair_on("127.0.0.1", &a, &b);
    if (r->pair_rc < 0)
        return r->pair_rc;
    r->ok_rc = weft_send(a, data, 1000, 1000);
    r->ok_sent = weft_sock_sent(a);
    /* Nobody reads b, so this runs out of time part-way. */
    r->fail_rc = weft_send(a, data + 1000, len - 1000, 300);
    r->fail_sent = weft_sock_sent(a);
    weft_close(a);
    size_t expect = 1000 + r->fail_sent;
    for (;;) {
        ssize_t n = weft_recv(b, buf, 64 * KiB, 5000);
        if (n <= 0) {
            r->end = n;
            break;
        }
        if (r->received + (size_t)n > expect || memcmp(buf, data + r->received, (size_t)n) != 0) {
            r->bad_at = r->received + 1;
            break;
        }
        r->received += (size_t)n;
    }
    weft_close(b);

    /* The same for sendv, whose count spans pieces. */
    r->pair_rc = make_pair_on("127.0.0.1", &a, &b);
    if (r->pair_rc < 0)
        return r->pair_rc;
    struct iovec v[3] = {{data, 3}, {data + 3, len / 2 - 3}, {data + len / 2, len / 2}};
    r->v_fail_rc = weft_sendv(a, v, 3, 300);
    r->v_fail_sent = weft_sock_sent(a);
    weft_close(a);
    for (;;) {
        ssize_t n = weft_recv(b, buf, 64 * KiB, 5000);
        if (n <= 0)
            break;
        r->received_v += (size_t)n;
    }
    weft_close(b);
    free(data);
    free(buf);
    return 0;
}

Test(tcp_data, sock_sent_after_partial_send, .timeout = 60)
{
    sent_run r = {.end = -999};
    int fds = count_fds();
    cr_assert_eq(weft_main(sent_main, &r, NULL), 0, "pair: %s", weft_err_name(r.pair_rc));
    cr_assert_eq(r.ok_rc, 1000);
    cr_assert_eq(r.ok_sent, 1000);
    cr_assert_eq(r.fail_rc, -ETIMEDOUT, "got %s", weft_err_name((int)r.fail_rc));
    cr_assert_gt(r.fail_sent, 0);
    cr_assert_lt(r.fail_sent, 16 * MiB - 1000);
    cr_assert_eq(r.bad_at, 0, "data differs at %zu", r.bad_at - 1);
    cr_assert_eq(r.end, 0);
    /* The count is exact: the peer gets precisely what it says went out. */
    cr_assert_eq(r.received, 1000 + r.fail_sent, "peer got %zu, sent says %zu", r.received,
                 1000 + r.fail_sent);
    cr_assert_eq(r.v_fail_rc, -ETIMEDOUT);
    cr_assert_gt(r.v_fail_sent, 3);
    cr_assert_lt(r.v_fail_sent, 16 * MiB);
    cr_assert_eq(r.received_v, r.v_fail_sent);
    cr_assert_eq(count_fds(), fds);
}
