/*
 * weft/tls.h - TLS over OpenSSL, under the same socket calls.
 * Part of weft.h, which is the one header to include; the conventions at
 * the top of weft.h hold for every function here.
 */
#ifndef WEFT_H_TLS
#define WEFT_H_TLS

#include "net.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* TLS (OpenSSL)                                                             */

/* TLS failures, outside errno's range.  weft_tls_errmsg() gives OpenSSL's
 * reason for the last one on a socket.  Besides these, TLS calls return
 * the socket's own errors (-ECONNRESET, -EPIPE, -ETIMEDOUT, -ECANCELED,
 * -ENOMEM); a peer that resets during the handshake gives -ECONNRESET. */
enum {
    WEFT_ETLS_HANDSHAKE = -4001, /* the handshake failed (no shared protocol, ...) */
    WEFT_ETLS_UNTRUSTED = -4002, /* certificate not trusted (unknown CA, self-signed) */
    WEFT_ETLS_NAME = -4003,      /* certificate is not for this host name or address */
    WEFT_ETLS_EXPIRED = -4004,   /* certificate expired or not yet valid */
    WEFT_ETLS_ALERT = -4005,     /* the peer sent a fatal alert */
    WEFT_ETLS_TRUNCATED = -4006, /* the peer closed without close_notify */
    WEFT_ETLS_PROTOCOL = -4007,  /* the peer sent something that is not TLS (or broken TLS) */
    WEFT_ETLS_CERT = -4008,      /* a certificate, key or CA could not be loaded */
};

typedef struct weft_tls_ctx weft_tls_ctx;
typedef struct weft_tls_opts {
    const char *cert_file, *key_file; /* PEM chain and key: servers, and clients that present one */
    const char *cert_pem, *key_pem;   /* the same from memory (NUL-terminated PEM) */
    const char *ca_file, *ca_dir;     /* trust (ca_dir hashed, as by `openssl rehash`); all */
    const char *ca_pem;               /* three NULL = the system store.  ca_pem: CAs in memory */
    int no_verify;                    /* clients verify chain and name unless this is set */
    int verify_peer;                  /* servers: ask for and verify a client certificate */
    const char *alpn;                 /* "h2,http/1.1", by preference; a server picks its own
                                       * first one the client offers, none in common = no ALPN */
    int min_version;                  /* 0 = TLS 1.2; or 0x0303 (1.2), 0x0304 (1.3) */
    int max_version;                  /* 0 = TLS 1.3; or 0x0303 (1.2), 0x0304 (1.3) */
} weft_tls_opts;
enum { WEFT_TLS_CLIENT = 0, WEFT_TLS_SERVER = 1 };

/* Makes a context for role WEFT_TLS_CLIENT or WEFT_TLS_SERVER (o may be
 * NULL for a verifying client with the system store).  A certificate comes
 * from cert_file or cert_pem (the leaf first, then its chain); its key from
 * key_file or key_pem, else from the certificate's own PEM.  Strings are
 * copied or loaded at once: o need not outlive the call.  TLS 1.2 is the
 * floor unless min_version says 1.3; renegotiation is refused.  A client
 * context keeps resumable sessions by host:port (TLS 1.3 tickets are used
 * once each; they arrive after the handshake and are taken in by the
 * connection's next receive, or at its close if they are there by then).
 * Once made (and its SNI certificates added) a context may be shared by
 * loops on several threads.  Errors: WEFT_ETLS_CERT (a file or PEM could
 * not be loaded, or key and certificate do not match; weft_tls_errmsg(NULL)
 * says why), -EINVAL (out NULL, bad role or version, an ALPN list with an
 * empty entry or one over 255 bytes, a key without a certificate, both a
 * file and a PEM for one thing), -ENOMEM.  Never blocks.  The caller owns
 * *out; it must outlive every socket made with it. */
WEFT_EXTERN int weft_tls_ctx_new(weft_tls_ctx **out, int role, const weft_tls_opts *o);
/* Servers: adds another certificate and key (key_file NULL: in cert_file),
 * chosen when a client's SNI matches one of its names (wildcards too) and
 * not the context's own certificate; a context made without a certificate
 * takes its first one as its own, for clients whose SNI matches nothing.
 * Must be done before the context is used.  Returns 0, WEFT_ETLS_CERT,
 * -EINVAL (c or cert_file NULL, not a server context), -ENOMEM.  Never
 * blocks. */
WEFT_EXTERN int weft_tls_ctx_add_cert(weft_tls_ctx *c, const char *cert_file,
                                      const char *key_file);
/* Frees c (NULL is a no-op).  Every socket made with it must be closed. */
WEFT_EXTERN void weft_tls_ctx_free(weft_tls_ctx *c);

/* Connects to host:port, sends host as SNI (unless it is an address),
 * completes the handshake and verifies the chain and the name (an address
 * against the certificate's IP entries), all within timeout_ms; offers a
 * session kept for host:port.  Errors: those of weft_tcp_connect, the
 * WEFT_ETLS_* codes (UNTRUSTED, NAME, EXPIRED for verification; ALERT if
 * the server refused us; PROTOCOL if it does not speak TLS; TRUNCATED if it
 * hung up), -ECONNRESET, -EINVAL (c NULL or not a client context).
 * Blocks.  The caller owns *out. */
WEFT_EXTERN int weft_tls_connect(weft_sock **out, const char *host, int port, weft_tls_ctx *c,
                                 int64_t timeout_ms);
/* Accepts a connection and completes the server handshake, both within
 * timeout_ms.  A client that fails its handshake is closed and its error
 * returned (a client that rejected our certificate: WEFT_ETLS_ALERT).
 * The handshake runs in the caller: a server should rather accept with
 * weft_tcp_accept and run weft_tls_wrap in each connection's coroutine,
 * with its own timeout, so one slow client holds up no other.  Errors:
 * those of weft_accept and of the handshake, -EINVAL (out or c NULL, c not
 * a server context).  Blocks.  The caller owns *out. */
WEFT_EXTERN int weft_tls_accept(weft_sock *listener, weft_sock **out, weft_tls_ctx *c,
                                int64_t timeout_ms);
/* Runs the handshake over a connected stream socket s (TCP or unix), as
 * client (servername: SNI and the name to verify, an address checked
 * against IP entries; NULL is -EINVAL unless the context has no_verify) or
 * server (servername ignored), by c's role, within timeout_ms.  Clients
 * offer a session kept for servername and s's peer address.  On success
 * *out is the TLS socket and it owns s (the same handle is returned); on
 * failure the caller still owns s, a plain socket (the bytes the handshake
 * moved are gone), and closes it (if another coroutine closed s meanwhile,
 * the call returns -EBADF and closing s again returns -EBADF too).  Errors:
 * the WEFT_ETLS_* codes, -ETIMEDOUT, -ECANCELED, -ECONNRESET, -EPIPE,
 * -ENOTCONN (s is not connected), -ENOMEM, -EBADF, -EINVAL (out or c NULL;
 * s not a stream socket, a listener, or already TLS; a client's servername
 * "" or over 255 bytes).  Blocks. */
WEFT_EXTERN int weft_tls_wrap(weft_sock **out, weft_sock *s, weft_tls_ctx *c,
                              const char *servername, int64_t timeout_ms);
/* OpenSSL's reason for the last TLS failure on s ("certificate verify
 * failed: certificate has expired", "tlsv1 alert unknown ca", ...), or
 * NULL if none.  For s NULL or not a TLS socket: the reason for the calling
 * thread's last TLS failure (a connect, accept, wrap or context that
 * failed and left no TLS socket to ask); the same for a handle that is not
 * an open socket of this thread.  A socket's reason is valid until its
 * next failure or its close, the thread's until its next TLS failure. */
WEFT_EXTERN const char *weft_tls_errmsg(const weft_sock *s);
/* The protocol ALPN agreed on, or NULL (none, not TLS, or not an open
 * socket of this thread).  Owned by s: valid until it is closed. */
WEFT_EXTERN const char *weft_tls_alpn(const weft_sock *s);
/* The peer certificate's subject as one line (RFC 2253: "CN=localhost,O=x")
 * into buf.  Returns its length, -ENOENT (no certificate), -ENOSPC (buf
 * holds it cut short, NUL-terminated; with len 0 nothing is written),
 * -EINVAL (not TLS, buf NULL with len > 0), -ENOMEM. */
WEFT_EXTERN int weft_tls_peer_subject(const weft_sock *s, char *buf, size_t len);
/* The X.509 verification result (0 = verified, else an X509_V_ERR_*
 * code; set even with no_verify), or -EINVAL (not TLS).  0 also when the
 * peer sent no certificate (a server's client that was not asked for one):
 * weft_tls_peer_subject tells. */
WEFT_EXTERN long weft_tls_verify_result(const weft_sock *s);
/* 1 if the session was resumed, 0 if not, -EINVAL (not TLS). */
WEFT_EXTERN int weft_tls_resumed(const weft_sock *s);
/* A TLS weft_sock answers weft_recv, weft_recvn, weft_recvv, weft_send,
 * weft_sendv, weft_sock_poll, weft_shutdown (WEFT_SHUT_WR sends
 * close_notify) and weft_close (close_notify, bounded in time) like any
 * other; weft_recv reports a peer that closed without close_notify as
 * WEFT_ETLS_TRUNCATED, and its close_notify as 0.  Also:
 *   - one reader and one writer may use it at the same time (an echo with
 *     a separate writer coroutine); a send that times out or is cancelled
 *     part-way leaves the stream intact (the rest of a record it began
 *     goes out with the next send, or at close);
 *   - weft_sock_sent counts bytes handed to TLS; weft_send returns only
 *     once they are all in the kernel;
 *   - data TLS has already read and decrypted is served at once and makes
 *     weft_sock_poll report WEFT_POLL_IN;
 *   - a session that failed (an alert, truncation, a reset) stays failed:
 *     later receives return the same error, and so do sends (-EPIPE after
 *     a truncation);
 *   - weft_close takes in what arrived unread, up to 1 MiB (so the peer
 *     gets no RST that would destroy what it has not read yet), sends
 *     close_notify and waits at most 250 ms for room to do so; weft_reset
 *     sends nothing;
 *   - weft_sendto, weft_recvfrom, the batch calls, weft_send_fd,
 *     weft_recv_fd, the weft_udp_* calls and weft_tls_wrap return -EINVAL.
 * OpenSSL's calls need stack: a handshake needed under 12 KiB (ECDSA P-256
 * and RSA 2048, x86-64) in our tests; the default 256 KiB leaves room, with
 * a 64 KiB buffer on the stack too. */

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H_TLS */
