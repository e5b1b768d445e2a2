/*
 * conn.c - making TLS connections: the handshake over a connected stream
 * socket (weft_tls_wrap), and weft_tls_connect / weft_tls_accept on top of
 * TCP; what a finished handshake tells (ALPN, peer, verification,
 * resumption).
 *
 * A socket becomes a TLS socket only once its handshake has succeeded:
 * until then it is the caller's plain socket, so a failure leaves it as it
 * was.  The whole handshake shares one deadline, set at entry.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = weft__sys_malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

void weft__tls_free(weft__tls *t)
{
    SSL_free(t->ssl);
    free(t->out);
    free(t->gather);
    free(t->sess_key);
    free(t->alpn);
    free(t);
    ERR_clear_error();
}

/* If name is an IP literal ("127.0.0.1", "::1", "[::1]", "fe80::1%lo"),
 * copies the bare address into ip and returns true. */
static bool ip_literal(const char *name, char *ip, size_t len)
{
    size_t n = strlen(name);
    if (n >= len)
        return false;
    if (name[0] == '[' && n > 2 && name[n - 1] == ']') {
        memcpy(ip, name + 1, n - 2);
        ip[n - 2] = '\0';
    } else {
        memcpy(ip, name, n + 1);
    }
    char *zone = strchr(ip, '%');
    if (zone)
        *zone = '\0';
    unsigned char bin[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, ip, bin) == 1 || inet_pton(AF_INET6, ip, bin) == 1;
}

/* Client: the name to send as SNI and to verify the certificate against
 * (an address is checked against the certificate's IP entries and not
 * sent, as SNI carries host names only). */
static int set_peer_name(weft__tls *t, const char *name)
{
    char ip[INET6_ADDRSTRLEN + 8];
    if (!name)
        return t->ctx->verify ? -EINVAL : 0;
    if (!name[0] || strlen(name) > 255)
        return -EINVAL;
    if (ip_literal(name, ip, sizeof ip))
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), ip) == 1 ? 0 : -EINVAL;
    if (SSL_set_tlsext_host_name(t->ssl, name) != 1 || SSL_set1_host(t->ssl, name) != 1)
        return -EINVAL;
    SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return 0;
}

/* Runs the handshake to its end.  On failure *gone tells whether s was
 * closed meanwhile (by another coroutine) and must not be touched. */
static int handshake(weft__tls *t, int64_t deadline, bool *gone)
{
    weft__sock *s = t->s;
    int rc;
    for (;;) {
        weft__tls_prep(t);
        int r = SSL_do_handshake(t->ssl);
        int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
        if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            rc = weft__tls_error(t, e, true);
            weft__tls_flush(t); /* the alert telling the peer why, if it fits now */
            return rc;
        }
        ERR_clear_error();
        /* Our flight goes out before we wait for the answer to it. */
        while ((rc = weft__tls_flush(t)) == -EAGAIN) {
            if ((rc = weft__sock_wait_held(s, WEFT__EV_OUT, deadline, gone)) < 0)
                goto wait_failed;
        }
        if (rc < 0) {
            weft__tls_note(t, rc);
            return rc;
        }
        if (e == SSL_ERROR_NONE)
            return 0;
        if (e == SSL_ERROR_WANT_READ && t->rd_again &&
            (rc = weft__sock_wait_held(s, WEFT__EV_IN, deadline, gone)) < 0)
            goto wait_failed;
    }
wait_failed:
    weft__tls_note(t, rc);
    return rc;
}

/* The handshake over s as c's role; on success s becomes a TLS socket.
 * key: the session cache key (clients), or NULL for none. */
static int wrap(weft__sock *s, weft_tls_ctx *c, const char *name, const char *key, int64_t deadline,
                bool *gone)
{
    int rc = -ENOMEM;
    weft__tls *t = weft__sys_calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->s = s;
    t->ctx = c;
    ERR_clear_error();
    if (!(t->ssl = SSL_new(c->ssl)))
        goto fail;
    SSL_set_app_data(t->ssl, t);
    BIO *b = weft__tls_bio_new(t);
    if (!b)
        goto fail;
    SSL_set_bio(t->ssl, b, b);
    bool offered = false;
    if (c->role == WEFT_TLS_CLIENT) {
        SSL_set_connect_state(t->ssl);
        if ((rc = set_peer_name(t, name)) < 0)
            goto fail;
        if (key) {
            rc = -ENOMEM;
            if (!(t->sess_key = dup_str(key)))
                goto fail;
            SSL_SESSION *sess = weft__tls_cache_get(c, key);
            if (sess) {
                offered = SSL_set_session(t->ssl, sess) == 1;
                SSL_SESSION_free(sess);
            }
        }
    } else {
        SSL_set_accept_state(t->ssl);
    }
    t->hold = true;
    rc = handshake(t, deadline, gone);
    t->hold = false;
    if (rc < 0) {
        if (offered)
            weft__tls_cache_drop(c, key);
        goto fail;
    }
    const unsigned char *p;
    unsigned plen;
    SSL_get0_alpn_selected(t->ssl, &p, &plen);
    if (plen) {
        rc = -ENOMEM;
        if (!(t->alpn = weft__sys_malloc(plen + 1)))
            goto fail;
        memcpy(t->alpn, p, plen);
        t->alpn[plen] = '\0';
    }
    s->layer = t;
    s->ops = &weft__tls_ops;
    return 0;
fail:
    weft__tls_free(t);
    return rc;
}

static bool wrappable(const weft__sock *s)
{
    return (s->flags & WEFT__SOCK_STREAM) && !(s->flags & WEFT__SOCK_LISTEN) && !s->ops;
}

int weft_tls_wrap(weft_sock **out, weft_sock *h, weft_tls_ctx *c, const char *servername,
                  int64_t timeout_ms)
{
    WEFT__SOCK_ENTER(s, h);
    if (!out || !c || !wrappable(s))
        return -EINVAL;
    int64_t deadline = weft__deadline(timeout_ms);
    /* Clients keep sessions per server name and peer address. */
    char key[320], peer[128] = "?";
    if (c->role == WEFT_TLS_CLIENT) {
        weft_addr a;
        if (weft__sock_peer(s, &a) == 0 && weft_addr_format(&a, peer, sizeof peer) < 0)
            strcpy(peer, "?");
        snprintf(key, sizeof key, "%s@%s", servername ? servername : "", peer);
    }
    bool gone = false;
    int rc = wrap(s, c, servername, c->role == WEFT_TLS_CLIENT ? key : NULL, deadline, &gone);
    if (rc == 0)
        *out = h;
    return rc;
}

int weft_tls_connect(weft_sock **out, const char *host, int port, weft_tls_ctx *c,
                     int64_t timeout_ms)
{
    if (!out || !host || !c || c->role != WEFT_TLS_CLIENT)
        return -EINVAL;
    int64_t deadline = weft__deadline(timeout_ms);
    weft_sock *h;
    int rc = weft_tcp_connect(&h, host, port, weft__ms_left(deadline));
    if (rc < 0)
        return rc;
    weft__sock *s;
    weft__sock_enter(h, &s); /* just made on this thread */
    char key[300];
    bool keyed = snprintf(key, sizeof key, "%s:%d", host, port) < (int)sizeof key;
    bool gone = false;
    rc = wrap(s, c, host, keyed ? key : NULL, deadline, &gone);
    if (rc < 0) {
        if (!gone)
            weft__sock_close(s, false);
        return rc;
    }
    *out = h;
    return 0;
}

int weft_tls_accept(weft_sock *lh, weft_sock **out, weft_tls_ctx *c, int64_t timeout_ms)
{
    WEFT__SOCK_ENTER(l, lh);
    if (!out || !c || c->role != WEFT_TLS_SERVER)
        return -EINVAL;
    int64_t deadline = weft__deadline(timeout_ms);
    weft__sock *s;
    int rc = weft__accept(l, &s, weft__ms_left(deadline));
    if (rc < 0)
        return rc;
    bool gone = false;
    rc = wrap(s, c, NULL, NULL, deadline, &gone);
    if (rc < 0) {
        if (!gone)
            weft__sock_close(s, false);
        return rc;
    }
    *out = weft__sock_handle(s);
    return 0;
}

/* ---- what the handshake established ------------------------------------------ */

/* The TLS connection h names; NULL with *err -EBADF (not an open socket,
 * or another loop's) or -EINVAL (not TLS). */
static const weft__tls *tls_of(const weft_sock *h, int *err)
{
    weft__sock *s;
    *err = weft__sock_enter(h, &s);
    if (*err < 0)
        return NULL;
    *err = -EINVAL;
    return s->ops == &weft__tls_ops ? s->layer : NULL;
}

const char *weft_tls_alpn(const weft_sock *h)
{
    int err;
    const weft__tls *t = tls_of(h, &err);
    return t ? t->alpn : NULL;
}

int weft_tls_peer_subject(const weft_sock *h, char *buf, size_t len)
{
    int err;
    const weft__tls *t = tls_of(h, &err);
    if (!t)
        return err;
    if (!buf && len)
        return -EINVAL;
    X509 *x = SSL_get0_peer_certificate(t->ssl);
    if (!x)
        return -ENOENT;
    BIO *m = BIO_new(BIO_s_mem());
    if (!m)
        return -ENOMEM;
    int rc = -ENOMEM;
    if (X509_NAME_print_ex(m, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0) {
        char *p;
        long n = BIO_get_mem_data(m, &p);
        if (len) {
            size_t k = (size_t)n < len ? (size_t)n : len - 1;
            memcpy(buf, p, k);
            buf[k] = '\0';
        }
        rc = (size_t)n < len ? (int)n : -ENOSPC;
    }
    BIO_free(m);
    ERR_clear_error();
    return rc;
}

long weft_tls_verify_result(const weft_sock *h)
{
    int err;
    const weft__tls *t = tls_of(h, &err);
    return t ? SSL_get_verify_result(t->ssl) : err;
}

int weft_tls_resumed(const weft_sock *h)
{
    int err;
    const weft__tls *t = tls_of(h, &err);
    return t ? SSL_session_reused(t->ssl) : err;
}
