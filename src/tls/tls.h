/*
 * tls.h - what the files of the TLS layer share: the context, the state of
 * one TLS connection, the socket BIO that carries its records, the error
 * mapping and the client session cache.  Nothing here is public.
 *
 * A TLS socket is a plain weft__sock whose ops point at the TLS layer
 * (io.c) and whose layer is a weft__tls.  OpenSSL never touches the
 * descriptor itself: a BIO of our own (bio.c) sends and receives through
 * the syscall seam and keeps the ciphertext the kernel did not take, so
 * that an SSL_write never has to be retried (the retry rules are what
 * breaks coroutine code: openssl#5299).
 */
#ifndef WEFT_TLS_H
#define WEFT_TLS_H

#include "net/sock.h"

#include <openssl/ssl.h>
#include <pthread.h>

/* How long weft_close waits, at most, for close_notify to get out. */
#define WEFT__TLS_CLOSE_MS 250

/* One entry of a client context's session cache. */
typedef struct weft__tls_sess {
    char *key;
    SSL_SESSION *sess;
} weft__tls_sess;

struct weft_tls_ctx {
    SSL_CTX *ssl;  /* the default certificate, and all settings */
    int role;      /* WEFT_TLS_CLIENT or WEFT_TLS_SERVER */
    bool verify;   /* clients: verify the server; servers: ask for a client certificate */
    bool has_cert; /* ssl has a certificate and key */
    int min_version, max_version;
    unsigned char *alpn; /* our protocols in wire format (length-prefixed) */
    size_t alpn_len;
    SSL_CTX **sni; /* servers: the certificates added for SNI */
    size_t n_sni;
    /* Clients: resumable sessions by host:port.  Shared by every loop
     * that uses the context, hence the lock. */
    pthread_mutex_t lock;
    weft__tls_sess *cache; /* oldest first */
    size_t n_cache, cap_cache;
};

/* One TLS connection: the socket's layer. */
typedef struct weft__tls {
    weft__sock *s;
    weft_tls_ctx *ctx;
    SSL *ssl;
    /* Ciphertext OpenSSL wrote that the socket has not taken yet. */
    char *out;
    size_t out_off, out_len, out_cap;
    char *gather;     /* sendv: small iovecs gathered into one record */
    char *sess_key;   /* clients: the session cache key */
    char *alpn;       /* the protocol agreed on, NUL-terminated */
    int sys_err;      /* errno of the last send/recv that failed in the BIO */
    int fatal;        /* sticky: the error that ended the session (< 0) */
    bool rd_again;    /* the last receive in the BIO said EAGAIN */
    bool eof;         /* the socket gave end of file */
    bool got_close;   /* the peer's close_notify arrived: receives give 0 */
    bool shut_rd;     /* WEFT_SHUT_RD: receives give 0 */
    bool shut_wr;     /* close_notify sent: sends give -EPIPE */
    bool fin_pending; /* shutdown(2) the socket once out is flushed */
    bool hold;        /* handshake: keep each flight whole, sent in one go */
    char errmsg[160];
} weft__tls;

/* ---- bio.c ---------------------------------------------------------------- */

/* A BIO over t's socket.  Returns NULL on allocation failure. */
BIO *weft__tls_bio_new(weft__tls *t);
/* Sends what the BIO kept.  Returns 0 once nothing is left, -EAGAIN when
 * the socket is full (s->wready is then false), or the send's error. */
int weft__tls_flush(weft__tls *t);

/* ---- err.c ------------------------------------------------------------------ */

/* Clears the thread's OpenSSL error queue and t's per-call state; call
 * right before each SSL call. */
void weft__tls_prep(weft__tls *t);
/* Turns a failed SSL call (ssl_err from SSL_get_error) into a weft code,
 * records OpenSSL's reason in t and the thread, and empties the thread's
 * error queue: a coroutine switch may follow. */
int weft__tls_error(weft__tls *t, int ssl_err, bool handshake);
/* Records a reason that did not come from OpenSSL (a timeout, a reset). */
void weft__tls_note(weft__tls *t, int code);
/* A context could not be made: records the thread's queued OpenSSL reason
 * (else code's description) as its last failure, and empties the queue. */
void weft__tls_note_queue(int code);

/* ---- ctx.c -------------------------------------------------------------------- */

/* The session to offer for key (a new reference), or NULL. */
SSL_SESSION *weft__tls_cache_get(weft_tls_ctx *c, const char *key);
/* Forgets key's session (after a failed handshake). */
void weft__tls_cache_drop(weft_tls_ctx *c, const char *key);

/* ---- conn.c ------------------------------------------------------------------ */

/* Frees t and its SSL (nothing is sent). */
void weft__tls_free(weft__tls *t);

/* ---- io.c ---------------------------------------------------------------------- */

extern const weft__sock_ops weft__tls_ops;

#endif /* WEFT_TLS_H */
