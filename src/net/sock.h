/*
 * sock.h - the socket core (src/net/sock.c) and what the net and TLS
 * layers share about sockets, names and connecting.
 */
#ifndef WEFT_NET_SOCK_H
#define WEFT_NET_SOCK_H

#include "internal.h"

/* The names layer's part in making a loop (src/modules.c). */
extern const weft__module weft__names_module;
/* weft_resolve with an absolute deadline (ns). */
int weft__resolve(weft_addrinfo **out, const char *host, const char *service,
                  const weft_hints *hints, int64_t deadline);
/* Connects to a name: looks it up, then races the addresses (Happy
 * Eyeballs, RFC 8305) before deadline.  Returns 0 or an error of
 * weft_tcp_connect or weft_resolve. */
int weft__connect_name(weft_sock **out, const char *host, int port, int64_t deadline);

enum {
    WEFT__SOCK_STREAM = 1,   /* byte stream: a short read means drained */
    WEFT__SOCK_LISTEN = 2,
    WEFT__SOCK_FDBLOCK = 4,  /* the fd itself is in blocking mode */
    WEFT__SOCK_DGRAM = 8,    /* datagrams: receives report truncation */
    WEFT__SOCK_GSO = 16,     /* UDP GSO known to work here */
    WEFT__SOCK_NOGSO = 32,   /* ... known not to: send datagrams one by one */
};

/* A layer over the descriptor (TLS): when a socket has ops, the public
 * data calls go through them instead of the plain syscalls.  close runs
 * first thing in weft__sock_close (it may wait, bounded) and frees the
 * layer's state; the socket core then closes the descriptor. */
typedef struct weft__sock_ops {
    ssize_t (*recv)(weft_sock *s, void *buf, size_t n, bool all, int64_t timeout_ms);
    ssize_t (*recvv)(weft_sock *s, const struct iovec *iov, int iovcnt, int64_t timeout_ms);
    ssize_t (*sendv)(weft_sock *s, const struct iovec *iov, int iovcnt, int64_t timeout_ms);
    int (*poll)(weft_sock *s, int events, int64_t timeout_ms);
    int (*shutdown)(weft_sock *s, int how);
    void (*close)(weft_sock *s, bool reset);
} weft__sock_ops;

struct weft_sock {
    weft__pollent pe;        /* pe.fd is the descriptor; first member */
    weft_loop *loop;         /* loop it is armed on, NULL before the first wait */
    unsigned flags;
    bool rready, wready;     /* cached edge-triggered readiness */
    bool rhup;               /* the poller saw the peer's FIN or an error:
                              * from then on reads never wait for an edge */
    bool closed;
    bool rbusy, wbusy;       /* a receiver / sender holds the direction */
    int refs;                /* calls in progress; free waits for 0 */
    weft__waitq rq, wq;      /* waiting for readiness */
    weft__waitq rlock, wlock; /* waiting for their turn */
    size_t sent;
    weft_sock *lnext, *lprev; /* the list of sockets armed on loop */
    const weft__sock_ops *ops; /* NULL: plain descriptor */
    void *layer;               /* the ops' state */
};

/* Waits until s is ready for dir (WEFT__EV_IN, WEFT__EV_OUT or both) or
 * deadline.  In a coroutine it parks; elsewhere it polls the thread.
 * Returns 0, -ETIMEDOUT, -ECANCELED (cancel or s closed).  The caller
 * holds a reference (s->refs) so that a close cannot free s meanwhile. */
int weft__sock_wait(weft_sock *s, int dir, int64_t deadline);
/* The same for a caller that holds none: takes one for the wait.  If s was
 * closed meanwhile it returns -ECANCELED and sets *gone (when gone is not
 * NULL), and s must not be touched again. */
int weft__sock_wait_held(weft_sock *s, int dir, int64_t deadline, bool *gone);
/* One attempt of an operation: >= 0 done; -EAGAIN not ready (wait, then
 * call again); -EINTR call again at once; other negative: failed. */
typedef ssize_t (*weft__sock_op)(weft_sock *s, void *ctx);
/* Runs op until it completes, taking s's dir for the duration and waiting
 * for readiness between attempts, within timeout_ms. */
ssize_t weft__sock_io(weft_sock *s, int dir, int64_t timeout_ms, weft__sock_op op, void *ctx);
/* Closes s's descriptor (linger 0 first if reset) and frees s once no call
 * is using it. */
int weft__sock_close(weft_sock *s, bool reset);
/* Drops a reference a waiting call took (s->refs++); frees a socket that
 * was closed meanwhile once the last one is gone. */
void weft__sock_unref(weft_sock *s);
/* Makes a weft_sock for fd (already non-blocking).  Returns 0 or -ENOMEM. */
int weft__sock_new(weft_sock **out, int fd, unsigned flags);

/* Waits on a raw descriptor outside a coroutine with poll(); ns deadline. */
int weft__fd_poll(int fd, int events, int64_t deadline);
/* The bytes of iovcnt iovecs, or -EINVAL (count out of 0..IOV_MAX, a
 * NULL array, a total past SSIZE_MAX). */
ssize_t weft__iov_total(const struct iovec *iov, int iovcnt);
/* Milliseconds left until deadline, as a timeout for another call (-1 for
 * WEFT__NEVER, 0 once passed). */
int64_t weft__ms_left(int64_t deadline);
/* Sleeps ms or until deadline on s's receive queue, so that closing s or a
 * cancel ends it early.  Returns 0 when the time is up, or -ECANCELED. */
int weft__sock_backoff(weft_sock *s, int64_t ms, int64_t deadline);
/* A new socket of a's family and the given type, connected to a within
 * timeout_ms; closed again on failure.  Returns 0 or weft_connect's and
 * weft_socket's errors. */
int weft__dial(weft_sock **out, const weft_addr *a, int type, int64_t timeout_ms);

#endif /* WEFT_NET_SOCK_H */
