/*
 * test_tls_io.c - data over TLS sockets, weft to weft on loopback: 64 MiB
 * each way through an echo with small socket buffers (a reader and a
 * writer coroutine on one socket, SSL_write into a slow peer), a send that
 * times out part-way and the stream that goes on intact, half-close,
 * close_notify against a peer that just drops the connection, records
 * OpenSSL holds already (served at once, seen by poll, passed between
 * readers), recvn/recvv/sendv, timeouts, cancels, close waking waiters,
 * TLS over a unix socketpair, blocking calls outside any coroutine,
 * injected socket errors, and STARTTLS (TLS begun after plain bytes, its
 * first record already read ahead).
 */
#include "tls_certs.h"

#include <criterion/criterion.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define KiB 1024u
#define MiB (1024u * 1024u)

TestSuite(tls_io, .init = tls_suite_setup, .fini = tls_suite_teardown);

/* The common frame: contexts, a pair, fn(run) on it, everything closed. */
typedef struct io_run io_run;
typedef void (*io_fn)(io_run *r);
struct io_run {
    tls_pair p;
    io_fn fn;
    int open_rc;
    void *user;
};

static int io_main(void *arg)
{
    io_run *r = arg;
    r->open_rc = pair_open(&r->p);
    if (r->open_rc == 0)
        r->fn(r);
    pair_close(&r->p);
    return 0;
}

static void run_io(io_run *r, io_fn fn)
{
    int fds = count_fds();
    cr_assert_eq(ctx_server(&r->p.sctx, "srv", NULL), 0);
    cr_assert_eq(ctx_client(&r->p.cctx, NULL), 0);
    r->fn = fn;
    cr_assert_eq(weft_main(io_main, r, NULL), 0);
    cr_assert_eq(r->open_rc, 0, "handshake: %s (%s)", weft_err_name(r->open_rc),
                 weft_tls_errmsg(NULL) ? weft_tls_errmsg(NULL) : "");
    weft_tls_ctx_free(r->p.sctx);
    weft_tls_ctx_free(r->p.cctx);
    cr_assert_eq(count_fds(), fds, "descriptors leaked");
    cr_assert_eq(ERR_peek_error(), 0ul, "OpenSSL's error queue was left full");
}

/* ---- 64 MiB each way ----------------------------------------------------------------- */

#define BIG (64 * MiB)

typedef struct big_run {
    unsigned char *data;
    size_t sent, got, srv_bytes;
    ssize_t send_rc, recv_rc, srv_end;
    bool same;
    int64_t writer;
} big_run;

/* The server echoes with small reads and small socket buffers, pausing
 * now and then, so the client's SSL_writes meet a full socket often. */
static void big_echo(void *arg)
{
    io_run *r = arg;
    big_run *b = r->user;
    weft_sock *s = r->p.srv;
    weft_sock_set_bufsize(s, 16 * KiB, 16 * KiB);
    char *buf = malloc(7 * KiB);
    ssize_t n;
    unsigned i = 0;
    while (buf && (n = weft_recv(s, buf, 7 * KiB, 10000)) > 0) {
        b->srv_bytes += (size_t)n;
        if (weft_send(s, buf, (size_t)n, 10000) != n)
            break;
        if (++i % 512 == 0)
            weft_sleep(1);
    }
    b->srv_end = buf ? n : -ENOMEM;
    free(buf);
    weft_shutdown(s, WEFT_SHUT_WR);
}

static void big_writer(void *arg)
{
    io_run *r = arg;
    big_run *b = r->user;
    size_t off = 0;
    unsigned i = 0;
    while (off < BIG) {
        size_t n = 1 + (i * 7919u) % (300 * KiB);
        if (n > BIG - off)
            n = BIG - off;
        ssize_t rc;
        if (i % 3 == 0 && n > 10) {
            /* Three pieces, the first ones small: gathered into a record. */
            struct iovec v[3] = {
                {b->data + off, 3}, {b->data + off + 3, 5}, {b->data + off + 8, n - 8}};
            rc = weft_sendv(r->p.cli, v, 3, 10000);
        } else {
            rc = weft_send(r->p.cli, b->data + off, n, 10000);
        }
        if (rc != (ssize_t)n) {
            b->send_rc = rc;
            return;
        }
        off += n;
        b->sent = off;
        i++;
    }
    b->send_rc = 0;
    weft_shutdown(r->p.cli, WEFT_SHUT_WR);
}

static void big_fn(io_run *r)
{
    big_run *b = r->user;
    weft_sock_set_bufsize(r->p.cli, 32 * KiB, 32 * KiB);
    int64_t echo = weft_go(big_echo, r);
    int64_t writer = weft_go(big_writer, r);
    /* This coroutine reads, while big_writer writes the same socket. */
    char *buf = malloc(64 * KiB);
    b->same = buf != NULL;
    unsigned i = 0;
    while (buf) {
        size_t want = 1 + (i * 104729u) % (64 * KiB);
        ssize_t n;
        if (i % 5 == 0 && b->got + want <= BIG)
            n = weft_recvn(r->p.cli, buf, want, 10000);
        else
            n = weft_recv(r->p.cli, buf, want, 10000);
        if (n <= 0) {
            b->recv_rc = n;
            break;
        }
        if (b->got + (size_t)n > BIG || memcmp(buf, b->data + b->got, (size_t)n) != 0)
            b->same = false;
        b->got += (size_t)n;
        if (++i % 997 == 0)
            weft_sleep(2); /* a slow reader now and then: the echo's sends fill up */
    }
    free(buf);
    weft_join(writer, -1);
    weft_join(echo, -1);
}

Test(tls_io, echo_64m_each_way_slow_peer, .timeout = 360)
{
    big_run b = {.send_rc = -999, .recv_rc = -999, .srv_end = -999};
    b.data = malloc(BIG);
    cr_assert_not_null(b.data);
    fill_pattern(b.data, BIG, 44);
    io_run r = {.user = &b};
    run_io(&r, big_fn);
    free(b.data);
    cr_assert_eq(b.send_rc, 0, "send: %s after %zu bytes", weft_err_name((int)b.send_rc), b.sent);
    cr_assert_eq(b.srv_end, 0, "echo ended with %s", weft_err_name((int)b.srv_end));
    cr_assert_eq(b.srv_bytes, BIG);
    cr_assert_eq(b.recv_rc, 0, "recv: %s after %zu bytes", weft_err_name((int)b.recv_rc), b.got);
    cr_assert_eq(b.got, BIG);
    cr_assert(b.same, "the echo differs from what was sent");
}

/* ---- a send that times out part-way ------------------------------------------------------ */

#define STALL_LEN (8 * MiB)

typedef struct stall_run {
    unsigned char *data;
    ssize_t first_rc, rest_rc;
    size_t first_sent;
    size_t got;
    ssize_t end;
    bool same;
} stall_run;

static void stall_reader(void *arg)
{
    io_run *r = arg;
    stall_run *st = r->user;
    static unsigned char buf[64 * KiB];
    for (;;) {
        ssize_t n = weft_recv(r->p.srv, buf, sizeof buf, 10000);
        if (n <= 0) {
            st->end = n;
            break;
        }
        if (st->got + (size_t)n > STALL_LEN || memcmp(buf, st->data + st->got, (size_t)n))
            st->same = false;
        st->got += (size_t)n;
    }
}

static void stall_fn(io_run *r)
{
    stall_run *st = r->user;
    weft_sock_set_bufsize(r->p.cli, 32 * KiB, 32 * KiB);
    weft_sock_set_bufsize(r->p.srv, 32 * KiB, 32 * KiB);
    /* Nobody reads yet: the send stops part-way, maybe inside a record. */
    st->first_rc = weft_send(r->p.cli, st->data, STALL_LEN, 200);
    st->first_sent = weft_sock_sent(r->p.cli);
    int64_t rd = weft_go(stall_reader, r);
    /* The rest, from where the first send says it stopped. */
    st->rest_rc = weft_send(r->p.cli, st->data + st->first_sent, STALL_LEN - st->first_sent, 10000);
    weft_close(r->p.cli);
    r->p.cli = NULL;
    weft_join(rd, -1);
}

Test(tls_io, send_timeout_then_rest_of_stream_intact, .timeout = 180)
{
    stall_run st = {.same = true, .end = -999};
    st.data = malloc(STALL_LEN);
    cr_assert_not_null(st.data);
    fill_pattern(st.data, STALL_LEN, 5299);
    io_run r = {.user = &st};
    run_io(&r, stall_fn);
    free(st.data);
    cr_assert_eq(st.first_rc, -ETIMEDOUT, "first send: %s", weft_err_name((int)st.first_rc));
    cr_assert_gt(st.first_sent, 0u);
    cr_assert_lt(st.first_sent, STALL_LEN);
    cr_assert_eq(st.rest_rc, (ssize_t)(STALL_LEN - st.first_sent), "rest: %s",
                 weft_err_name((int)st.rest_rc));
    cr_assert_eq(st.got, STALL_LEN,
                 "peer got %zu first_sent %zu first %zd rest %zd end %zd same %d", st.got,
                 st.first_sent, st.first_rc, st.rest_rc, st.end, st.same);
    cr_assert(st.same, "the stream was corrupted");
    cr_assert_eq(st.end, 0, "peer: %s instead of close_notify", weft_err_name((int)st.end));
}

/* ---- half-close, close_notify, truncation ----------------------------------------------- */

typedef struct hc_run {
    ssize_t sent, shut_rc, after_shut, srv_got, srv_end, srv_answer, answer, cli_end;
    char buf[64];
} hc_run;

static void hc_server(void *arg)
{
    io_run *r = arg;
    hc_run *h = r->user;
    char buf[64];
    h->srv_got = weft_recvn(r->p.srv, buf, 5, 2000);
    h->srv_end = weft_recv(r->p.srv, buf, sizeof buf, 2000); /* close_notify: 0 */
    h->srv_answer = weft_send(r->p.srv, "done", 4, 2000);
    weft_close(r->p.srv);
    r->p.srv = NULL;
}

static void hc_fn(io_run *r)
{
    hc_run *h = r->user;
    int64_t id = weft_go(hc_server, r);
    h->sent = weft_send(r->p.cli, "hello", 5, 2000);
    h->shut_rc = weft_shutdown(r->p.cli, WEFT_SHUT_WR);
    h->after_shut = weft_send(r->p.cli, "x", 1, 1000);
    h->answer = weft_recvn(r->p.cli, h->buf, 4, 2000);
    h->cli_end = weft_recv(r->p.cli, h->buf + 4, 8, 2000);
    weft_join(id, -1);
}

Test(tls_io, half_close, .timeout = 60)
{
    hc_run h = {0};
    io_run r = {.user = &h};
    run_io(&r, hc_fn);
    cr_assert_eq(h.sent, 5);
    cr_assert_eq(h.shut_rc, 0);
    cr_assert_eq(h.after_shut, -EPIPE, "send after SHUT_WR: %s", weft_err_name((int)h.after_shut));
    cr_assert_eq(h.srv_got, 5);
    cr_assert_eq(h.srv_end, 0, "server: %s instead of close_notify", weft_err_name((int)h.srv_end));
    cr_assert_eq(h.srv_answer, 4, "answer after the peer's close_notify: %s",
                 weft_err_name((int)h.srv_answer));
    cr_assert_eq(h.answer, 4);
    cr_assert(memcmp(h.buf, "done", 4) == 0);
    cr_assert_eq(h.cli_end, 0, "client: %s instead of close_notify", weft_err_name((int)h.cli_end));
}

typedef struct trunc_run {
    ssize_t first, clean_end, again;
    ssize_t cut_first, cut_end, cut_again, cut_send;
    char msg[160];
    int open2;
} trunc_run;

static void trunc_fn(io_run *r)
{
    trunc_run *t = r->user;
    char buf[64];
    /* A proper close: the data, then 0 (and 0 again). */
    weft_send(r->p.srv, "bye", 3, 1000);
    weft_close(r->p.srv);
    r->p.srv = NULL;
    t->first = weft_recv(r->p.cli, buf, sizeof buf, 2000);
    t->clean_end = weft_recv(r->p.cli, buf, sizeof buf, 2000);
    t->again = weft_recv(r->p.cli, buf, sizeof buf, 2000);
    pair_close(&r->p);

    /* The peer's FIN without close_notify: truncation, not an end. */
    t->open2 = pair_open(&r->p);
    if (t->open2 < 0)
        return;
    weft_send(r->p.srv, "cut", 3, 1000);
    shutdown(weft_sock_fd(r->p.srv), SHUT_WR);
    t->cut_first = weft_recv(r->p.cli, buf, sizeof buf, 2000);
    t->cut_end = weft_recv(r->p.cli, buf, sizeof buf, 2000);
    const char *m = weft_tls_errmsg(r->p.cli);
    snprintf(t->msg, sizeof t->msg, "%s", m ? m : "(none)");
    t->cut_again = weft_recv(r->p.cli, buf, sizeof buf, 2000);
    t->cut_send = weft_send(r->p.cli, "x", 1, 1000);
}

Test(tls_io, close_notify_versus_truncation, .timeout = 60)
{
    trunc_run t = {0};
    io_run r = {.user = &t};
    run_io(&r, trunc_fn);
    cr_assert_eq(t.first, 3);
    cr_assert_eq(t.clean_end, 0, "after close_notify: %s", weft_err_name((int)t.clean_end));
    cr_assert_eq(t.again, 0);
    cr_assert_eq(t.open2, 0);
    cr_assert_eq(t.cut_first, 3);
    cr_assert_eq(t.cut_end, WEFT_ETLS_TRUNCATED, "FIN without close_notify: %s",
                 weft_err_name((int)t.cut_end));
    cr_assert(strstr(t.msg, "eof"), "errmsg: %s", t.msg);
    cr_assert_eq(t.cut_again, WEFT_ETLS_TRUNCATED, "the failure is final");
    cr_assert_eq(t.cut_send, -EPIPE, "send after truncation: %s", weft_err_name((int)t.cut_send));
}

/* ---- records OpenSSL already holds ---------------------------------------------------------- */

typedef struct held_run {
    ssize_t one, rest_rc;
    size_t rest;
    int64_t rest_ms;
    int poll_now, poll_after;
    ssize_t zero_timeout;
} held_run;

static void held_fn(io_run *r)
{
    held_run *h = r->user;
    char buf[4096];
    /* Three records in a row, all in the socket before the client reads. */
    for (int i = 0; i < 3; i++)
        weft_send(r->p.srv, "0123456789", 10, 1000);
    weft_sleep(100);
    /* One byte: OpenSSL reads ahead, so the socket is drained now and the
     * other 29 bytes sit in OpenSSL's buffers. */
    h->one = weft_recv(r->p.cli, buf, 1, 1000);
    h->poll_now = weft_sock_poll(r->p.cli, WEFT_POLL_IN, 0);
    h->zero_timeout = weft_recv(r->p.cli, buf, 1, 0);
    int64_t t0 = weft_now();
    while (h->rest < 28) {
        ssize_t n = weft_recv(r->p.cli, buf, sizeof buf, 1000);
        if (n <= 0) {
            h->rest_rc = n;
            break;
        }
        h->rest += (size_t)n;
    }
    h->rest_ms = weft_now() - t0;
    h->poll_after = weft_sock_poll(r->p.cli, WEFT_POLL_IN, 50);
}

Test(tls_io, held_records_served_at_once, .timeout = 60)
{
    held_run h = {0};
    io_run r = {.user = &h};
    run_io(&r, held_fn);
    cr_assert_eq(h.one, 1);
    cr_assert_eq(h.poll_now, WEFT_POLL_IN, "poll: %s", weft_err_name(h.poll_now));
    cr_assert_eq(h.zero_timeout, 1, "timeout 0 with data held: %s",
                 weft_err_name((int)h.zero_timeout));
    cr_assert_eq(h.rest_rc, 0, "rest: %s", weft_err_name((int)h.rest_rc));
    cr_assert_eq(h.rest, 28u);
    cr_assert_lt(h.rest_ms, LATE_MS, "waited %lld ms for data already there", (long long)h.rest_ms);
    cr_assert_eq(h.poll_after, -ETIMEDOUT);
}

/* Two readers take turns on one socket; records left in OpenSSL by one
 * must be found by the other without a new edge. */
typedef struct turns_run {
    size_t got[2];
    ssize_t rc[2];
} turns_run;

typedef struct turn_arg {
    io_run *r;
    int who;
} turn_arg;

static void turn_reader(void *arg)
{
    turn_arg *a = arg;
    turns_run *tr = a->r->user;
    char buf[100];
    for (int i = 0; i < 5; i++) {
        ssize_t n = weft_recvn(a->r->p.cli, buf, sizeof buf, 2000);
        if (n <= 0) {
            tr->rc[a->who] = n;
            return;
        }
        tr->got[a->who] += (size_t)n;
    }
}

static void turns_fn(io_run *r)
{
    turn_arg a[2] = {{r, 0}, {r, 1}};
    int64_t ids[2] = {weft_go(turn_reader, &a[0]), weft_go(turn_reader, &a[1])};
    weft_sleep(20); /* both parked, one holding the direction */
    char rec[100];
    memset(rec, 'r', sizeof rec);
    /* Ten records' worth in one go: one edge for all of them. */
    for (int i = 0; i < 10; i++)
        weft_send(r->p.srv, rec, sizeof rec, 1000);
    weft_join(ids[0], -1);
    weft_join(ids[1], -1);
}

Test(tls_io, readers_take_turns_on_held_records, .timeout = 60)
{
    turns_run tr = {0};
    io_run r = {.user = &tr};
    run_io(&r, turns_fn);
    cr_assert_eq(tr.rc[0], 0, "reader 0: %s", weft_err_name((int)tr.rc[0]));
    cr_assert_eq(tr.rc[1], 0, "reader 1: %s", weft_err_name((int)tr.rc[1]));
    cr_assert_eq(tr.got[0] + tr.got[1], 1000u);
}

/* ---- vectors, recvn ------------------------------------------------------------------------ */

typedef struct vec_run {
    ssize_t sendv_rc, recvn_rc, recvv_rc, short_rc;
    bool same;
    size_t sent_count;
} vec_run;

static void vec_fn(io_run *r)
{
    vec_run *v = r->user;
    static unsigned char src[100 * 37 + 50000], dst[sizeof src];
    fill_pattern(src, sizeof src, 3);
    struct iovec iov[101];
    for (int i = 0; i < 100; i++)
        iov[i] = (struct iovec){src + i * 37, 37};
    iov[100] = (struct iovec){src + 3700, 50000};
    v->sendv_rc = weft_sendv(r->p.cli, iov, 101, 2000);
    v->sent_count = weft_sock_sent(r->p.cli);
    v->recvn_rc = weft_recvn(r->p.srv, dst, 1000, 2000);
    struct iovec in[3] = {{dst + 1000, 10}, {dst + 1010, 20000}, {dst + 21010, sizeof dst - 21010}};
    size_t got = 1000;
    while (got < sizeof dst) {
        /* recvv fills what it can; the rest comes in further calls. */
        size_t skip = got - 1000;
        struct iovec cur[3];
        int k = 0;
        for (int i = 0; i < 3; i++) {
            if (skip >= in[i].iov_len) {
                skip -= in[i].iov_len;
                continue;
            }
            cur[k++] = (struct iovec){(char *)in[i].iov_base + skip, in[i].iov_len - skip};
            skip = 0;
        }
        ssize_t n = weft_recvv(r->p.srv, cur, k, 2000);
        if (n <= 0) {
            v->recvv_rc = n;
            break;
        }
        got += (size_t)n;
    }
    v->same = got == sizeof dst && memcmp(src, dst, sizeof src) == 0;
    /* recvn across the peer's close_notify: part, then the end. */
    weft_send(r->p.cli, "abc", 3, 1000);
    weft_close(r->p.cli);
    r->p.cli = NULL;
    v->short_rc = weft_recvn(r->p.srv, dst, 10, 2000);
}

Test(tls_io, sendv_recvv_recvn, .timeout = 60)
{
    vec_run v = {0};
    io_run r = {.user = &v};
    run_io(&r, vec_fn);
    cr_assert_eq(v.sendv_rc, (ssize_t)(3700 + 50000));
    cr_assert_eq(v.sent_count, 3700u + 50000u);
    cr_assert_eq(v.recvn_rc, 1000);
    cr_assert_eq(v.recvv_rc, 0, "recvv: %s", weft_err_name((int)v.recvv_rc));
    cr_assert(v.same, "data differs");
    cr_assert_eq(v.short_rc, -ECONNRESET, "recvn cut by close_notify: %s",
                 weft_err_name((int)v.short_rc));
}

/* ---- timeouts, cancels, close from another coroutine -------------------------------------------
 */

typedef struct tmo_run {
    ssize_t timed, after, cancelled, after_cancel;
    int64_t timed_ms;
} tmo_run;

static void canceller(void *arg)
{
    weft_sleep(50);
    weft_cancel(*(int64_t *)arg);
}

static void tmo_fn(io_run *r)
{
    tmo_run *t = r->user;
    char buf[16];
    int64_t t0 = weft_now();
    t->timed = weft_recv(r->p.cli, buf, sizeof buf, 100);
    t->timed_ms = weft_now() - t0;
    weft_send(r->p.srv, "after", 5, 1000);
    t->after = weft_recvn(r->p.cli, buf, 5, 1000);
    int64_t me = weft_self();
    weft_go(canceller, &me);
    t->cancelled = weft_recv(r->p.cli, buf, sizeof buf, 5000);
    weft_send(r->p.srv, "again", 5, 1000);
    t->after_cancel = weft_recvn(r->p.cli, buf, 5, 1000);
}

Test(tls_io, timeout_and_cancel_leave_it_usable, .timeout = 60)
{
    tmo_run t = {0};
    io_run r = {.user = &t};
    run_io(&r, tmo_fn);
    cr_assert_eq(t.timed, -ETIMEDOUT);
    cr_assert_geq(t.timed_ms, 100);
    cr_assert_lt(t.timed_ms, 100 + LATE_MS);
    cr_assert_eq(t.after, 5);
    cr_assert_eq(t.cancelled, -ECANCELED);
    cr_assert_eq(t.after_cancel, 5);
}

typedef struct cw_run {
    ssize_t rc[3];
    int64_t close_ms;
} cw_run;

typedef struct cw_arg {
    io_run *r;
    int kind;
} cw_arg;

static void cw_waiter(void *arg)
{
    cw_arg *a = arg;
    cw_run *c = a->r->user;
    static unsigned char big[4 * MiB];
    char buf[16];
    weft_sock *s = a->r->p.cli;
    switch (a->kind) {
    case 0: c->rc[0] = weft_recv(s, buf, sizeof buf, -1); break;
    case 1: c->rc[1] = weft_sock_poll(s, WEFT_POLL_IN, -1); break;
    default: c->rc[2] = weft_send(s, big, sizeof big, -1); break; /* nobody reads */
    }
}

static void cw_fn(io_run *r)
{
    cw_run *c = r->user;
    weft_sock_set_bufsize(r->p.cli, 32 * KiB, 32 * KiB);
    weft_sock_set_bufsize(r->p.srv, 32 * KiB, 32 * KiB);
    cw_arg a[3] = {{r, 0}, {r, 1}, {r, 2}};
    int64_t ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = weft_go(cw_waiter, &a[i]);
    weft_sleep(100);
    int64_t t0 = weft_now();
    weft_close(r->p.cli);
    c->close_ms = weft_now() - t0;
    r->p.cli = NULL;
    for (int i = 0; i < 3; i++)
        weft_join(ids[i], 2000);
}

Test(tls_io, close_wakes_reader_poller_sender, .timeout = 60)
{
    cw_run c = {.rc = {-999, -999, -999}};
    io_run r = {.user = &c};
    run_io(&r, cw_fn);
    cr_assert_eq(c.rc[0], -EBADF, "recv: %s", weft_err_name((int)c.rc[0]));
    cr_assert_eq(c.rc[1], -EBADF, "poll: %s", weft_err_name((int)c.rc[1]));
    cr_assert_eq(c.rc[2], -EBADF, "send: %s", weft_err_name((int)c.rc[2]));
    /* Bounded: the unsent data cannot get out, close gives up quickly. */
    cr_assert_lt(c.close_ms, 1000);
}

/* ---- over a unix socketpair
 * ----------------------------------------------------------------------- */

typedef struct unix_run {
    weft_tls_ctx *sctx, *cctx;
    weft_sock *raw[2];
    weft_sock *srv;
    int srv_rc, cli_rc;
    ssize_t echo;
    char buf[16];
    char subject[128];
} unix_run;

static void unix_server(void *arg)
{
    unix_run *u = arg;
    u->srv_rc = weft_tls_wrap(&u->srv, u->raw[1], u->sctx, NULL, 2000);
    if (u->srv_rc < 0)
        return;
    char buf[16];
    ssize_t n = weft_recv(u->srv, buf, sizeof buf, 2000);
    if (n > 0)
        weft_send(u->srv, buf, (size_t)n, 2000);
    weft_close(u->srv);
}

static int unix_main(void *arg)
{
    unix_run *u = arg;
    int rc = weft_socketpair(u->raw, SOCK_STREAM);
    if (rc < 0)
        return rc;
    int64_t id = weft_go(unix_server, u);
    weft_sock *c;
    u->cli_rc = weft_tls_wrap(&c, u->raw[0], u->cctx, "localhost", 2000);
    if (u->cli_rc == 0) {
        weft_tls_peer_subject(c, u->subject, sizeof u->subject);
        weft_send(c, "unix", 4, 1000);
        u->echo = weft_recvn(c, u->buf, 4, 2000);
        weft_close(c);
    } else {
        weft_close(u->raw[0]);
    }
    weft_join(id, -1);
    if (u->srv_rc < 0)
        weft_close(u->raw[1]);
    return 0;
}

Test(tls_io, over_unix_socketpair, .timeout = 60)
{
    int fds = count_fds();
    unix_run u = {0};
    cr_assert_eq(ctx_server(&u.sctx, "srv", NULL), 0);
    cr_assert_eq(ctx_client(&u.cctx, NULL), 0);
    cr_assert_eq(weft_main(unix_main, &u, NULL), 0);
    weft_tls_ctx_free(u.sctx);
    weft_tls_ctx_free(u.cctx);
    cr_assert_eq(u.cli_rc, 0, "client: %s", weft_err_name(u.cli_rc));
    cr_assert_eq(u.srv_rc, 0, "server: %s", weft_err_name(u.srv_rc));
    cr_assert_eq(u.echo, 4);
    cr_assert(memcmp(u.buf, "unix", 4) == 0);
    cr_assert_str_eq(u.subject, "CN=localhost");
    cr_assert_eq(count_fds(), fds);
}

/* ---- blocking calls outside any coroutine
 * ----------------------------------------------------------- */

typedef struct block_run {
    weft_tls_ctx *sctx, *cctx;
    weft_sock *l;
    int port;
    int srv_rc;
    ssize_t srv_echoed;
    int cli_rc, resumed;
    ssize_t sent, got, end;
    int poll_rc;
    char buf[32];
} block_run;

static int block_server(void *arg)
{
    block_run *b = arg;
    for (int i = 0; i < 2; i++) {
        weft_sock *c;
        b->srv_rc = weft_tls_accept(b->l, &c, b->sctx, 5000);
        if (b->srv_rc < 0)
            return 0;
        char buf[32];
        ssize_t n;
        while ((n = weft_recv(c, buf, sizeof buf, 5000)) > 0)
            b->srv_echoed += weft_send(c, buf, (size_t)n, 5000);
        weft_close(c);
    }
    return 0;
}

static void *block_thread(void *arg)
{
    weft_main(block_server, arg, NULL);
    return NULL;
}

Test(tls_io, blocking_client_outside_coroutines, .timeout = 90)
{
    int fds = count_fds();
    block_run b = {0};
    cr_assert_eq(ctx_server(&b.sctx, "srv", NULL), 0);
    cr_assert_eq(ctx_client(&b.cctx, NULL), 0);
    b.port = listen_any(&b.l, "127.0.0.1");
    cr_assert_gt(b.port, 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, block_thread, &b), 0);
    for (int i = 0; i < 2; i++) {
        weft_sock *c;
        b.cli_rc = weft_tls_connect(&c, "127.0.0.1", b.port, b.cctx, 5000);
        if (b.cli_rc < 0)
            break;
        b.resumed = weft_tls_resumed(c);
        b.sent = weft_send(c, "blocking", 8, 2000);
        b.poll_rc = weft_sock_poll(c, WEFT_POLL_IN, 2000);
        b.got = weft_recvn(c, b.buf, 8, 2000);
        weft_shutdown(c, WEFT_SHUT_WR);
        b.end = weft_recv(c, b.buf + 8, 8, 2000);
        weft_close(c);
    }
    pthread_join(th, NULL);
    weft_close(b.l);
    weft_tls_ctx_free(b.sctx);
    weft_tls_ctx_free(b.cctx);
    cr_assert_eq(b.cli_rc, 0, "connect: %s", weft_err_name(b.cli_rc));
    cr_assert_eq(b.srv_rc, 0, "server: %s", weft_err_name(b.srv_rc));
    cr_assert_eq(b.resumed, 1, "the second connection was not resumed");
    cr_assert_eq(b.sent, 8);
    cr_assert_eq(b.poll_rc, WEFT_POLL_IN);
    cr_assert_eq(b.got, 8);
    cr_assert(memcmp(b.buf, "blocking", 8) == 0);
    cr_assert_eq(b.end, 0, "end: %s", weft_err_name((int)b.end));
    cr_assert_eq(b.srv_echoed, 16);
    cr_assert_eq(count_fds(), fds);
}

/* ---- injected socket errors
 * ---------------------------------------------------------------------- */

typedef struct fault_run {
    ssize_t reset_rc, reset_again, pipe_rc;
    char msg[160];
} fault_run;

static void fault_fn(io_run *r)
{
    fault_run *f = r->user;
    char buf[16];
    weft_fault_set(WEFT_FAULT_RECV, 1, ECONNRESET);
    f->reset_rc = weft_recv(r->p.cli, buf, sizeof buf, 1000);
    const char *m = weft_tls_errmsg(r->p.cli);
    snprintf(f->msg, sizeof f->msg, "%s", m ? m : "(none)");
    f->reset_again = weft_recv(r->p.cli, buf, sizeof buf, 100);
    weft_fault_set(WEFT_FAULT_SEND, 1, EPIPE);
    f->pipe_rc = weft_send(r->p.srv, "x", 1, 1000);
    weft_fault_clear();
}

Test(tls_io, injected_reset_and_epipe, .timeout = 60)
{
    fault_run f = {0};
    io_run r = {.user = &f};
    run_io(&r, fault_fn);
    cr_assert_eq(f.reset_rc, -ECONNRESET, "recv: %s", weft_err_name((int)f.reset_rc));
    cr_assert(strstr(f.msg, "reset"), "errmsg: %s", f.msg);
    cr_assert_eq(f.reset_again, -ECONNRESET, "the failure is final");
    cr_assert_eq(f.pipe_rc, -EPIPE, "send: %s", weft_err_name((int)f.pipe_rc));
}

/* ---- shutdown of the receiving side
 * ---------------------------------------------------------------- */

typedef struct shrd_run {
    int rc, bad;
    ssize_t after;
    int poll_rc;
} shrd_run;

static void shrd_fn(io_run *r)
{
    shrd_run *s = r->user;
    char buf[8];
    s->bad = weft_shutdown(r->p.cli, 7);
    s->rc = weft_shutdown(r->p.cli, WEFT_SHUT_RD);
    s->after = weft_recv(r->p.cli, buf, sizeof buf, 1000);
    s->poll_rc = weft_sock_poll(r->p.cli, WEFT_POLL_IN, 0);
}

Test(tls_io, shutdown_rd, .timeout = 60)
{
    shrd_run s = {0};
    io_run r = {.user = &s};
    run_io(&r, shrd_fn);
    cr_assert_eq(s.bad, -EINVAL);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(s.after, 0);
    cr_assert_eq(s.poll_rc, WEFT_POLL_IN);
}

/* ---- polling both directions
 * ---------------------------------------------------------------------- */

typedef struct pb_run {
    int idle, full, woke;
    ssize_t stuffed;
    int64_t woke_ms;
} pb_run;

static void pb_peer(void *arg)
{
    io_run *r = arg;
    weft_sleep(50);
    weft_send(r->p.srv, "x", 1, 1000);
}

static void pb_fn(io_run *r)
{
    pb_run *b = r->user;
    static unsigned char big[8 * MiB];
    weft_sock_set_bufsize(r->p.cli, 32 * KiB, 32 * KiB);
    weft_sock_set_bufsize(r->p.srv, 32 * KiB, 32 * KiB);
    b->idle = weft_sock_poll(r->p.cli, WEFT_POLL_IN | WEFT_POLL_OUT, 0);
    /* Nobody reads: the send stops with the socket full. */
    b->stuffed = weft_send(r->p.cli, big, sizeof big, 200);
    b->full = weft_sock_poll(r->p.cli, WEFT_POLL_IN | WEFT_POLL_OUT, 100);
    weft_go(pb_peer, r);
    int64_t t0 = weft_now();
    b->woke = weft_sock_poll(r->p.cli, WEFT_POLL_IN | WEFT_POLL_OUT, 2000);
    b->woke_ms = weft_now() - t0;
    weft_reset(r->p.cli); /* what is left unsent is dropped at once */
    r->p.cli = NULL;
}

Test(tls_io, poll_both_directions, .timeout = 60)
{
    pb_run b = {0};
    io_run r = {.user = &b};
    run_io(&r, pb_fn);
    cr_assert_eq(b.idle, WEFT_POLL_OUT, "idle: %s", weft_err_name(b.idle));
    cr_assert_eq(b.stuffed, -ETIMEDOUT);
    cr_assert_eq(b.full, -ETIMEDOUT, "full and nothing to read: %d", b.full);
    cr_assert_eq(b.woke, WEFT_POLL_IN, "after the peer wrote: %d", b.woke);
    cr_assert_lt(b.woke_ms, 1000);
}

/* ---- a second close while the first waits to send close_notify ------------------- */

typedef struct twice_run {
    int first, second;
    ssize_t after;
    int64_t first_ms, second_at, first_end;
} twice_run;

static void second_closer(void *arg)
{
    io_run *r = arg;
    twice_run *t = r->user;
    weft_sleep(50);
    t->second_at = weft_now();
    t->second = weft_close(r->p.cli);
    char c;
    t->after = weft_recv(r->p.cli, &c, 1, 0);
}

static void twice_fn(io_run *r)
{
    twice_run *t = r->user;
    static unsigned char big[8 * MiB];
    weft_sock_set_bufsize(r->p.cli, 32 * KiB, 32 * KiB);
    weft_sock_set_bufsize(r->p.srv, 32 * KiB, 32 * KiB);
    /* Nobody reads: the socket fills, so the close waits for room to send
     * close_notify, and the second close comes inside that wait. */
    weft_send(r->p.cli, big, sizeof big, 200);
    int64_t id = weft_go(second_closer, r);
    int64_t t0 = weft_now();
    t->first = weft_close(r->p.cli);
    t->first_end = weft_now();
    t->first_ms = t->first_end - t0;
    weft_join(id, -1);
    r->p.cli = NULL;
}

Test(tls_io, second_close_during_close_notify_wait_is_ebadf, .timeout = 60)
{
    twice_run t = {0};
    io_run r = {.user = &t};
    run_io(&r, twice_fn);
    cr_assert_eq(t.first, 0);
    cr_assert_geq(t.first_ms, 200, "the first close did not wait for room (%lld ms)",
                  (long long)t.first_ms);
    cr_assert_lt(t.second_at, t.first_end, "the second close came after the first ended");
    cr_assert_eq(t.second, -EBADF, "second close: %s", weft_err_name(t.second));
    cr_assert_eq(t.after, -EBADF, "a receive after: %s", weft_err_name((int)t.after));
}

/* ---- STARTTLS: plain bytes, then TLS on the same connection --------------------------- */

/* The client's "STARTTLS\n" and its ClientHello arrive together, before
 * the server reads: a receive that buffers ahead (io_uring's read-ahead)
 * holds the ClientHello when the server's handshake begins, and the
 * handshake must read it from there. */
typedef struct starttls_run {
    weft_tls_ctx *sctx, *cctx;
    weft_sock *raw[2];
    int srv_rc, cli_rc;
    ssize_t line, echo;
    char buf[16];
} starttls_run;

static void starttls_server(void *arg)
{
    starttls_run *u = arg;
    weft_sleep(100); /* both are queued by now */
    char line[9];
    u->line = weft_recvn(u->raw[1], line, sizeof line, 2000);
    if (u->line != 9 || memcmp(line, "STARTTLS\n", 9) != 0) {
        u->srv_rc = -EPROTO;
        return;
    }
    weft_sock *t;
    u->srv_rc = weft_tls_wrap(&t, u->raw[1], u->sctx, NULL, 3000);
    if (u->srv_rc < 0)
        return;
    char buf[16];
    ssize_t n = weft_recv(t, buf, sizeof buf, 2000);
    if (n > 0)
        weft_send(t, buf, (size_t)n, 2000);
    weft_close(t);
    u->raw[1] = NULL;
}

static int starttls_main(void *arg)
{
    starttls_run *u = arg;
    int rc = make_pair(&u->raw[0], &u->raw[1]);
    if (rc < 0)
        return rc;
    int64_t id = weft_go(starttls_server, u);
    weft_sock *c;
    weft_send(u->raw[0], "STARTTLS\n", 9, 1000);
    u->cli_rc = weft_tls_wrap(&c, u->raw[0], u->cctx, "localhost", 3000);
    if (u->cli_rc == 0) {
        weft_send(c, "after", 5, 1000);
        u->echo = weft_recvn(c, u->buf, 5, 2000);
        weft_close(c);
    } else {
        weft_close(u->raw[0]);
    }
    weft_join(id, -1);
    if (u->raw[1])
        weft_close(u->raw[1]);
    return 0;
}

Test(tls_io, starttls_with_the_hello_queued_behind_the_line, .timeout = 60)
{
    int fds = count_fds();
    starttls_run u = {0};
    cr_assert_eq(ctx_server(&u.sctx, "srv", NULL), 0);
    cr_assert_eq(ctx_client(&u.cctx, NULL), 0);
    cr_assert_eq(weft_main(starttls_main, &u, NULL), 0);
    weft_tls_ctx_free(u.sctx);
    weft_tls_ctx_free(u.cctx);
    cr_assert_eq(u.line, 9);
    cr_assert_eq(u.srv_rc, 0, "server: %s", weft_err_name(u.srv_rc));
    cr_assert_eq(u.cli_rc, 0, "client: %s", weft_err_name(u.cli_rc));
    cr_assert_eq(u.echo, 5);
    cr_assert(memcmp(u.buf, "after", 5) == 0);
    cr_assert_eq(count_fds(), fds);
}
