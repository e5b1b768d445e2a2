/*
 * bio.c - the BIO that carries a TLS connection's records over its
 * socket, through the syscall seam.
 *
 * Reads are plain non-blocking receives: EAGAIN becomes a retry, which
 * OpenSSL turns into SSL_ERROR_WANT_READ, so WANT_READ always means the
 * descriptor said EAGAIN and waiting for the poller's edge is right.
 * Writes never ask OpenSSL to retry: what the socket does not take is kept
 * here and sent by weft__tls_flush before anything else goes out.  OpenSSL
 * therefore never sits on a half-written record, an SSL_write is never
 * repeated, and a reader and a writer may share the connection freely.
 * The caller bounds what is kept by flushing before each SSL_write.
 * During the handshake everything is kept and each flight leaves in one
 * send: fewer syscalls, and no record waits behind Nagle for an ACK.
 */
#include "tls.h"

#include <limits.h>
#include <string.h>

#define SEND_FLAGS (MSG_NOSIGNAL | MSG_DONTWAIT)
/* A safety net only: more than this kept makes OpenSSL wait (WANT_WRITE). */
#define OUT_MAX (1024 * 1024)

static BIO_METHOD *method;
static pthread_once_t method_once = PTHREAD_ONCE_INIT;

/* Keeps buf[0..len) after what is already kept.  Returns 0 or -ENOMEM. */
static int keep(weft__tls *t, const char *buf, size_t len)
{
    if (t->out_off && t->out_off + t->out_len + len > t->out_cap) {
        memmove(t->out, t->out + t->out_off, t->out_len);
        t->out_off = 0;
    }
    size_t need = t->out_off + t->out_len + len;
    if (need > t->out_cap) {
        size_t cap = t->out_cap ? t->out_cap : 16 * 1024 + 512;
        while (cap < need)
            cap *= 2;
        char *p = weft__sys_realloc(t->out, cap);
        if (!p)
            return -ENOMEM;
        t->out = p;
        t->out_cap = cap;
    }
    memcpy(t->out + t->out_off + t->out_len, buf, len);
    t->out_len += len;
    return 0;
}

static int bio_write(BIO *b, const char *buf, int len)
{
    weft__tls *t = BIO_get_data(b);
    size_t n = (size_t)len, done = 0;
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (t->out_len + n > OUT_MAX) {
        BIO_set_retry_write(b);
        return -1;
    }
    while (t->out_len == 0 && !t->hold && done < n) {
        ssize_t r = weft__sys_send(t->s->pe.fd, buf + done, n - done, SEND_FLAGS);
        if (r >= 0) {
            done += (size_t)r;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            t->s->wready = false;
            break;
        } else if (errno != EINTR) {
            t->sys_err = errno;
            return -1;
        }
    }
    if (done < n && keep(t, buf + done, n - done) < 0) {
        t->sys_err = ENOMEM;
        return -1;
    }
    return len;
}

static int bio_read(BIO *b, char *buf, int len)
{
    weft__tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (WEFT__UNLIKELY(t->s->rring & WEFT__RING_RX)) {
        /* Bytes a plain receive's read-ahead took before TLS began. */
        ssize_t r = weft__sock_rx_take(t->s, buf, (size_t)len);
        if (r > 0)
            return (int)r;
        if (r == 0) {
            t->eof = true;
            return 0;
        }
        if (r != -EAGAIN) {
            t->sys_err = (int)-r;
            return -1;
        }
    }
    for (;;) {
        ssize_t r = weft__sys_recv(t->s->pe.fd, buf, (size_t)len, MSG_DONTWAIT);
        if (r > 0)
            return (int)r;
        if (r == 0) {
            t->eof = true;
            return 0;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            t->rd_again = true;
            t->s->rready = false;
            BIO_set_retry_read(b);
            return -1;
        }
        if (errno != EINTR) {
            t->sys_err = errno;
            return -1;
        }
    }
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    weft__tls *t = BIO_get_data(b);
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH: return 1; /* the I/O loops flush, with a deadline */
    case BIO_CTRL_EOF: return t && t->eof;
    case BIO_CTRL_WPENDING: return t ? (long)t->out_len : 0;
    default: return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void make_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "weft socket");
    if (!m)
        return;
    if (!BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read) ||
        !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create)) {
        BIO_meth_free(m);
        return;
    }
    method = m;
}

BIO *weft__tls_bio_new(weft__tls *t)
{
    pthread_once(&method_once, make_method);
    if (!method)
        return NULL;
    BIO *b = BIO_new(method);
    if (b)
        BIO_set_data(b, t);
    return b;
}

int weft__tls_flush(weft__tls *t)
{
    while (t->out_len) {
        ssize_t r = weft__sys_send(t->s->pe.fd, t->out + t->out_off, t->out_len, SEND_FLAGS);
        if (r >= 0) {
            t->out_off += (size_t)r;
            t->out_len -= (size_t)r;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            t->s->wready = false;
            return -EAGAIN;
        } else if (errno != EINTR) {
            /* The connection is gone; what was kept can never be sent. */
            t->sys_err = errno;
            t->out_len = 0;
            return -errno;
        }
    }
    /* Only backpressure fills it: an idle connection keeps no buffer. */
    free(t->out);
    t->out = NULL;
    t->out_off = t->out_cap = 0;
    if (t->fin_pending) {
        t->fin_pending = false;
        shutdown(t->s->pe.fd, SHUT_WR);
    }
    return 0;
}
