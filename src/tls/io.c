/*
 * io.c - a TLS socket's data calls: weft_recv, weft_recvn, weft_recvv,
 * weft_send, weft_sendv, weft_sock_poll, weft_shutdown and weft_close go
 * through these ops once the handshake is done.
 *
 * Each call runs in the socket core's retry loop (weft__sock_io), which
 * holds the direction, the reference and the deadline; an attempt is one
 * or more SSL calls, and -EAGAIN means the descriptor itself said EAGAIN.
 * Two things differ from a plain socket.  OpenSSL may hold records it has
 * already read, which no poller edge will announce: receives and polls
 * look there first.  And an SSL call may need the other direction (a
 * reader's reply to the peer waiting in the BIO): the attempt waits for it
 * itself, within the same deadline.
 *
 * weft_close wakes every waiter with -EBADF before the layer's close runs
 * and frees the connection; a waiter that wakes finds s->layer changed and
 * leaves without touching the connection.
 */
#include "tls.h"

#include <limits.h>
#include <openssl/err.h>
#include <string.h>

#define GATHER_MAX 16384
/* What weft_close reads and drops, at most, before close_notify. */
#define DRAIN_MAX (1024 * 1024)

/* ---- waiting ------------------------------------------------------------------ */

/* Makes the next receive attempt without waiting for the descriptor's
 * edge, and wakes the readers parked for one: OpenSSL now holds something
 * for them (taken in by another call), or has output to flush on their
 * way.  A reader already woken but not yet run sees the flag too. */
static void kick_readers(weft__sock *s)
{
    s->rready = true;
    weft__wake_all(&s->rq, 0);
}

/* A failure of the connection itself is final: OpenSSL allows no further
 * I/O after it.  A timeout or a cancel is not. */
static void set_fatal(weft__tls *t, int rc)
{
    if (rc != -ETIMEDOUT && rc != -ECANCELED && rc != -EAGAIN && rc != -EBADF && !t->fatal)
        t->fatal = rc;
}

/* What a receive gives after the session failed or ended. */
static inline bool read_over(const weft__tls *t)
{
    return t->fatal || t->got_close || t->shut_rd;
}

/* ---- receive --------------------------------------------------------------------- */

/* A reply OpenSSL made while reading (to a key update, say) waits in the
 * BIO; it goes out before the reader waits for the peer, which may be
 * waiting for it.  A sender holding the socket flushes it anyway. */
static int flush_for_read(weft__tls *t, int64_t deadline)
{
    weft__sock *s = t->s;
    bool gone = false;
    int rc;
    while ((rc = weft__tls_flush(t)) == -EAGAIN) {
        if (s->wbusy)
            return 0;
        if ((rc = weft__sock_wait_held(s, WEFT__EV_OUT, deadline, &gone)) < 0)
            return rc;
        if (s->layer != t)
            return -EBADF;
    }
    if (rc < 0)
        set_fatal(t, rc);
    return rc;
}

/* One SSL_read into buf.  Returns the count (> 0), 0 at close_notify,
 * -EAGAIN (the descriptor is drained: wait for it), -EINTR (try again at
 * once), or an error (-EBADF: t is gone). */
static ssize_t read_once(weft__tls *t, void *buf, size_t n, int64_t deadline)
{
    if (t->fatal)
        return t->fatal;
    if (t->got_close || t->shut_rd)
        return 0;
    size_t got = 0;
    weft__tls_prep(t);
    int r = SSL_read_ex(t->ssl, buf, n, &got);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
    switch (e) {
    case SSL_ERROR_NONE:
        if (t->out_len)
            weft__tls_flush(t); /* best effort; the next call finishes it */
        /* More records may be held already: whoever receives next (a
         * reader queued behind us) must try before waiting. */
        if (SSL_has_pending(t->ssl))
            t->s->rready = true;
        return (ssize_t)got;
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: {
        ERR_clear_error();
        bool drained = e == SSL_ERROR_WANT_READ && t->rd_again;
        int rc = flush_for_read(t, deadline);
        if (rc < 0)
            return rc;
        return drained ? -EAGAIN : -EINTR;
    }
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        t->got_close = true;
        t->s->rready = true;
        return 0;
    default: {
        int rc = weft__tls_error(t, e, false);
        set_fatal(t, rc);
        t->s->rready = true;
        return rc;
    }
    }
}

typedef struct rd_op {
    weft__tls *t;
    char *buf;
    size_t n, got;
    bool all;
    int64_t deadline;
} rd_op;

static ssize_t do_read(weft__sock *s, void *ctx)
{
    rd_op *o = ctx;
    if (s->layer != o->t)
        return -EBADF;
    for (;;) {
        ssize_t r = read_once(o->t, o->buf + o->got, o->n - o->got, o->deadline);
        if (r > 0) {
            o->got += (size_t)r;
            if (!o->all || o->got == o->n)
                return (ssize_t)o->got;
            continue;
        }
        if (r == 0 && o->all && o->got)
            return -ECONNRESET; /* the session ended part-way through a recvn */
        return r;
    }
}

/* Records OpenSSL already holds are served without waiting for an edge
 * that will not come: let the first attempt happen. */
static void prime_read(weft__sock *s, weft__tls *t)
{
    if (SSL_has_pending(t->ssl) || read_over(t) || t->out_len)
        s->rready = true;
}

static ssize_t tls_recv(weft__sock *s, void *buf, size_t n, bool all, int64_t timeout_ms)
{
    weft__tls *t = s->layer;
    if (n == 0)
        return 0;
    if (n > SSIZE_MAX) {
        if (all)
            return -EINVAL;
        n = SSIZE_MAX;
    }
    int64_t deadline = weft__deadline(timeout_ms);
    rd_op o = {t, buf, n, 0, all, deadline};
    prime_read(s, t);
    return weft__sock_io(s, WEFT__EV_IN, weft__ms_left(deadline), do_read, &o);
}

typedef struct rdv_op {
    weft__tls *t;
    const struct iovec *iov;
    int iovcnt;
    int64_t deadline;
} rdv_op;

/* Fills the iovecs in order with what can be had: waits only for the
 * first byte, then stops at the first read that comes up short. */
static ssize_t do_readv(weft__sock *s, void *ctx)
{
    rdv_op *o = ctx;
    if (s->layer != o->t)
        return -EBADF;
    size_t got = 0;
    for (int i = 0; i < o->iovcnt; i++) {
        size_t off = 0, len = o->iov[i].iov_len;
        while (off < len) {
            ssize_t r = read_once(o->t, (char *)o->iov[i].iov_base + off, len - off, o->deadline);
            if (r == -EINTR)
                continue;
            if (r <= 0)
                return got ? (ssize_t)got : r;
            off += (size_t)r;
            got += (size_t)r;
            if (SSL_pending(o->t->ssl) == 0 && off < len)
                return (ssize_t)got;
        }
    }
    return (ssize_t)got;
}

static ssize_t tls_recvv(weft__sock *s, const struct iovec *iov, int iovcnt, int64_t timeout_ms)
{
    weft__tls *t = s->layer;
    ssize_t total = weft__iov_total(iov, iovcnt);
    if (total <= 0)
        return total;
    int64_t deadline = weft__deadline(timeout_ms);
    rdv_op o = {t, iov, iovcnt, deadline};
    prime_read(s, t);
    return weft__sock_io(s, WEFT__EV_IN, weft__ms_left(deadline), do_readv, &o);
}

/* ---- send ------------------------------------------------------------------------- */

typedef struct wr_op {
    weft__tls *t;
    const struct iovec *iov;
    int iovcnt;
    size_t total, done;
    int64_t deadline;
} wr_op;

/* Errors a send reports for a session that is over. */
static int send_error(int fatal)
{
    return fatal == WEFT_ETLS_TRUNCATED ? -EPIPE : fatal;
}

/* The bytes at o->done: a slice of one iovec, or small iovecs gathered
 * into one record.  Offered again unchanged until OpenSSL takes them. */
static void next_piece(wr_op *o, const char **p, size_t *len)
{
    size_t skip = o->done;
    int i = 0;
    while (skip >= o->iov[i].iov_len)
        skip -= o->iov[i++].iov_len;
    *p = (const char *)o->iov[i].iov_base + skip;
    *len = o->iov[i].iov_len - skip;
    if (*len >= GATHER_MAX || i + 1 == o->iovcnt)
        return;
    weft__tls *t = o->t;
    if (!t->gather && !(t->gather = weft__sys_malloc(GATHER_MAX)))
        return; /* no room to gather: one record per iovec */
    size_t k = 0;
    for (; i < o->iovcnt && k < GATHER_MAX; i++, skip = 0) {
        size_t take = o->iov[i].iov_len - skip;
        if (take > GATHER_MAX - k)
            take = GATHER_MAX - k;
        memcpy(t->gather + k, (const char *)o->iov[i].iov_base + skip, take);
        k += take;
    }
    *p = t->gather;
    *len = k;
}

static ssize_t do_write(weft__sock *s, void *ctx)
{
    wr_op *o = ctx;
    weft__tls *t = o->t;
    if (s->layer != t)
        return -EBADF;
    s->sent = o->done; /* ours to write now that we hold the direction */
    for (;;) {
        /* What an earlier record left is sent first, so the BIO never
         * keeps more than one SSL_write's worth. */
        int rc = weft__tls_flush(t);
        if (rc == -EAGAIN)
            return -EAGAIN;
        if (rc < 0) {
            set_fatal(t, rc);
            weft__tls_note(t, rc);
            return rc;
        }
        if (o->done == o->total)
            return (ssize_t)o->total;
        if (t->fatal)
            return send_error(t->fatal);
        if (t->shut_wr)
            return -EPIPE;
        const char *p;
        size_t len, w = 0;
        next_piece(o, &p, &len);
        weft__tls_prep(t);
        int r = SSL_write_ex(t->ssl, p, len, &w);
        int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_NONE) {
            o->done += w;
            s->sent = o->done;
            continue;
        }
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_WRITE)
            continue; /* the BIO is full: flushing decides */
        if (e == SSL_ERROR_WANT_READ) {
            /* Only a renegotiation (refused) or a handshake would. */
            bool gone = false;
            if (t->rd_again && (rc = weft__sock_wait_held(s, WEFT__EV_IN, o->deadline, &gone)) < 0)
                return rc;
            if (s->layer != t)
                return -EBADF;
            continue;
        }
        rc = weft__tls_error(t, e, false);
        set_fatal(t, rc);
        return send_error(rc);
    }
}

static ssize_t tls_sendv(weft__sock *s, const struct iovec *iov, int iovcnt, int64_t timeout_ms)
{
    weft__tls *t = s->layer;
    ssize_t total = weft__iov_total(iov, iovcnt);
    if (total < 0)
        return total;
    if (total == 0) {
        s->sent = 0;
        return 0;
    }
    int64_t deadline = weft__deadline(timeout_ms);
    wr_op o = {t, iov, iovcnt, (size_t)total, 0, deadline};
    return weft__sock_send_io(s, weft__ms_left(deadline), do_write, &o, &o.done);
}

/* ---- poll, shutdown, close ------------------------------------------------------------ */

/* Would a receive return at once?  Lets OpenSSL take in what arrived (a
 * record may be whole now, or be only a session ticket). */
static bool in_ready(weft__sock *s, weft__tls *t)
{
    if (read_over(t) || SSL_pending(t->ssl) > 0)
        return true;
    for (int tries = 0; tries < 8; tries++) {
        char c;
        size_t got = 0;
        weft__tls_prep(t);
        int r = SSL_peek_ex(t->ssl, &c, 1, &got);
        int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            ERR_clear_error();
            if (t->out_len && weft__tls_flush(t) == -EAGAIN)
                kick_readers(s); /* a parked reader flushes it */
            if (e == SSL_ERROR_WANT_READ && t->rd_again)
                return false;
            continue;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            ERR_clear_error();
            t->got_close = true;
        } else if (e != SSL_ERROR_NONE) {
            set_fatal(t, weft__tls_error(t, e, false));
        }
        /* What we took in may be what a parked reader waits for. */
        kick_readers(s);
        return true;
    }
    return false;
}

/* Would a send go out at once? */
static bool out_ready(weft__sock *s, weft__tls *t)
{
    if (t->fatal || t->shut_wr)
        return true; /* it fails at once */
    int rc = weft__tls_flush(t);
    if (rc == -EAGAIN)
        return false;
    if (rc < 0) {
        set_fatal(t, rc);
        return true;
    }
    return weft__fd_poll(s->pe.fd, WEFT__EV_OUT, 0) > 0;
}

static int tls_poll(weft__sock *s, int events, int64_t timeout_ms)
{
    weft__tls *t = s->layer;
    if (!(events & (WEFT_POLL_IN | WEFT_POLL_OUT)))
        return -EINVAL;
    int64_t deadline = weft__deadline(timeout_ms);
    for (;;) {
        int ready = 0, dir = 0;
        if (events & WEFT_POLL_IN) {
            if (in_ready(s, t))
                ready |= WEFT_POLL_IN;
            else
                dir |= WEFT__EV_IN;
        }
        if (events & WEFT_POLL_OUT) {
            if (out_ready(s, t))
                ready |= WEFT_POLL_OUT;
            else
                dir |= WEFT__EV_OUT;
        }
        if (ready)
            return ready;
        bool gone = false;
        int rc = weft__sock_wait_held(s, dir, deadline, &gone);
        if (gone || s->layer != t)
            return -EBADF;
        if (rc < 0)
            return rc;
    }
}

static int tls_shutdown(weft__sock *s, int how)
{
    weft__tls *t = s->layer;
    if (how != WEFT_SHUT_RD && how != WEFT_SHUT_WR && how != WEFT_SHUT_RDWR)
        return -EINVAL;
    if (how & WEFT_SHUT_RD) {
        t->shut_rd = true;
        shutdown(s->pe.fd, SHUT_RD);
        kick_readers(s);
    }
    if ((how & WEFT_SHUT_WR) && !t->shut_wr) {
        t->shut_wr = true;
        if (!t->fatal) {
            weft__tls_prep(t);
            SSL_shutdown(t->ssl);
            ERR_clear_error();
        }
        /* The descriptor's own FIN follows close_notify, once that is out. */
        t->fin_pending = true;
        int rc = weft__tls_flush(t);
        if (rc == -EAGAIN)
            kick_readers(s); /* it goes out with the next call; a waiting reader makes one */
        else if (rc < 0)
            return rc;
    }
    return 0;
}

static void tls_close(weft__sock *s, bool reset)
{
    weft__tls *t = s->layer;
    /* The socket core has sent every waiter away; one that has not run
     * yet finds the layer gone. */
    s->layer = NULL;
    if (!reset && !t->fatal && !t->sys_err) {
        /* Take in what has arrived unread (TLS 1.3 session tickets, at
         * least): a descriptor closed with unread bytes sends RST, and the
         * RST makes the peer drop what it has not read yet. */
        bool broken = false;
        if (!t->got_close && !t->shut_rd) {
            char scratch[2048];
            size_t got, total = 0;
            int r;
            do {
                weft__tls_prep(t);
                r = SSL_read_ex(t->ssl, scratch, sizeof scratch, &got);
            } while (r == 1 && (total += got) < DRAIN_MAX);
            int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
            broken = e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL; /* no shutdown after that */
            ERR_clear_error();
        }
        if (!t->shut_wr && !broken) {
            t->shut_wr = true;
            weft__tls_prep(t);
            SSL_shutdown(t->ssl);
            ERR_clear_error();
        }
        /* close_notify, and what a timed-out send left: a short wait for
         * room at most, never a hang. */
        int64_t deadline = weft__deadline(WEFT__TLS_CLOSE_MS);
        while (weft__tls_flush(t) == -EAGAIN) {
            if (weft__sock_wait_closing(s, WEFT__EV_OUT, deadline) < 0)
                break;
        }
    }
    weft__tls_free(t);
}

const weft__sock_ops weft__tls_ops = {
    .recv = tls_recv,
    .recvv = tls_recvv,
    .sendv = tls_sendv,
    .poll = tls_poll,
    .shutdown = tls_shutdown,
    .close = tls_close,
};
