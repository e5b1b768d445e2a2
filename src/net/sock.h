/*
 * sock.h - the socket core (src/net/sock.c) and what the net and TLS
 * layers share about sockets, names and connecting.
 */
#ifndef WEFT_NET_SOCK_H
#define WEFT_NET_SOCK_H

#include "internal.h"

typedef struct weft__sock weft__sock;

/* The names layer's part in making a loop (src/modules.c). */
extern const weft__module weft__names_module;
/* weft_resolve with an absolute deadline (ns). */
int weft__resolve(weft_addrinfo **out, const char *host, const char *service,
                  const weft_hints *hints, int64_t deadline);
/* Connects to a name: looks it up, then races the addresses (Happy
 * Eyeballs, RFC 8305) before deadline.  Returns 0 or an error of
 * weft_tcp_connect or weft_resolve. */
int weft__connect_name(weft__sock **out, const char *host, int port, int64_t deadline);

enum {
    WEFT__SOCK_STREAM = 1,   /* a byte stream: TCP, unix stream */
    WEFT__SOCK_LISTEN = 2,
    WEFT__SOCK_FDBLOCK = 4,  /* the fd itself is in blocking mode */
    WEFT__SOCK_DGRAM = 8,    /* a record per receive (datagrams, seqpacket):
                              * receives report truncation */
    WEFT__SOCK_GSO = 16,     /* UDP GSO known to work here */
    WEFT__SOCK_NOGSO = 32,   /* ... known not to: send datagrams one by one */
    WEFT__SOCK_DRAINS = 64,  /* a short read means drained: TCP until urgent
                              * data is seen (unix streams stop short at
                              * passed descriptors and credentials) */
    WEFT__SOCK_RING = 128,   /* its loop's backend carries operations out
                              * (io_uring): a coroutine's receives and sends
                              * go through it */
};

/* A layer over the descriptor (TLS): when a socket has ops, the public
 * data calls go through them instead of the plain syscalls.  close runs
 * in weft__sock_close once the socket is closing and its waiters have been
 * sent away (it may wait, bounded, with weft__sock_wait_closing) and frees
 * the layer's state; the socket core then closes the descriptor. */
typedef struct weft__sock_ops {
    ssize_t (*recv)(weft__sock *s, void *buf, size_t n, bool all, int64_t timeout_ms);
    ssize_t (*recvv)(weft__sock *s, const struct iovec *iov, int iovcnt, int64_t timeout_ms);
    ssize_t (*sendv)(weft__sock *s, const struct iovec *iov, int iovcnt, int64_t timeout_ms);
    int (*poll)(weft__sock *s, int events, int64_t timeout_ms);
    int (*shutdown)(weft__sock *s, int how);
    void (*close)(weft__sock *s, bool reset);
} weft__sock_ops;

/* rring's bits. */
enum {
    WEFT__RING_CALL = 1, /* the call holding the receive side goes through
                          * the ring (set for its duration) */
    WEFT__RING_RX = 2,   /* the read-ahead below is armed or holds bytes */
};

/* A TCP socket's read-ahead on a loop with provided buffers (io_uring):
 * one multishot receive stays in the ring and queues what arrives in the
 * loop's buffers, so a receive takes bytes already there, or parks until
 * some come, without a submission of its own.  Its bytes are copied into
 * the caller's buffer as the call returns, so a waiting call's buffer is
 * never written behind its back, and a cancel or timeout has nothing to
 * wait for.  sock_rx.c. */
typedef struct weft__sock_ax weft__sock_ax;
typedef struct weft__sock_rx {
    weft__bop op;        /* the multishot receive, while armed */
    weft__sock *s;
    weft_loop *loop;     /* whose pool the queued buffers are */
    bool armed;          /* op is in the ring (holds a reference to s) */
    bool stopping;       /* asked to stop: the queue is long enough */
    bool orphan;         /* loop is going, op still in its ring: the last
                          * completion gives back what it brings */
    int end;             /* after the queue: 0 more to come, 1 the end of
                          * the stream, -errno (reported once, then 1) */
    int32_t head, tail;  /* queued buffers, linked by the pool's next */
    uint32_t off;        /* bytes of head already taken */
    uint32_t queued;     /* bytes in the queue */
    char *spill;         /* bytes queued when its loop went (first) */
    size_t spill_len, spill_off;
} weft__sock_rx;

/* A listener's accept-ahead on a loop whose backend has multishot
 * operations (io_uring): one multishot accept stays in the ring and queues
 * the connections it takes, so weft_accept takes one already there, or
 * parks until one comes, without a submission of its own.  Stopped when
 * AX_STOP connections wait (sock_ax.c): the rest wait in the kernel's
 * backlog, as they do on epoll, for a server that has stopped accepting. */
typedef struct weft__sock_ax {
    weft__bop op;        /* the multishot accept, while armed */
    weft__sock *s;
    weft_loop *loop;     /* whose ring op is in, while armed */
    bool armed;          /* op is in the ring (holds a reference to s) */
    bool stopping;       /* asked to stop: enough connections wait */
    bool orphan;         /* loop is going, op still in its ring */
    bool unsupported;    /* the kernel refused it: accept one at a time */
    int err;             /* what ended it, told once when none wait */
    int *fd;             /* the waiting connections, a ring of cap */
    uint32_t head, count, cap;
} weft__sock_ax;

/* A socket.  Users hold a handle (weft_sock *) that names it through the
 * handle table (handle.c); the record itself lives until it is closed and
 * the last call using it has left. */
struct weft__sock {
    weft__pollent pe;        /* pe.fd is the descriptor; first member */
    weft_loop *loop;         /* the loop that owns it; NULL: none yet */
    uint32_t idx, gen;       /* its handle: slot and generation */
    unsigned flags;
    bool armed;              /* on loop's poller (at its first wait) */
    bool rready, wready;     /* cached edge-triggered readiness */
    bool rhup;               /* the poller saw the peer's FIN or an error:
                              * from then on reads never wait for an edge */
    bool closing;            /* weft_close has begun: the handle is dead and
                              * every waiter leaves with -EBADF */
    bool closed;             /* the descriptor is closed */
    bool rbusy, wbusy;       /* a receiver / sender holds the direction */
    int refs;                /* calls in progress; free waits for 0 */
    weft__waitq rq, wq;      /* waiting for readiness */
    weft__waitq rlock, wlock; /* waiting for their turn */
    size_t sent;
    /* The call holding a direction, on a completion backend: its deadline
     * and the operation it has in the ring (close stops that first). */
    unsigned char rring;     /* WEFT__RING_* bits: receives go through
                              * sock.c's ring calls */
    bool wring;              /* this call's sends go through the ring */
    int64_t rdeadline, wdeadline;
    weft__bop *rop, *wop;
    weft__sock_rx *rx;       /* made at its first use; freed with s */
    weft__sock_ax *ax;       /* a listener's: likewise */
    weft__sock *lnext, *lprev; /* the sockets loop owns */
    const weft__sock_ops *ops; /* NULL: plain descriptor */
    void *layer;               /* the ops' state */
};

/* ---- handles (handle.c) ---------------------------------------------------- */

/* A handle is (generation << 32) | (slot + 1).  Closing a socket bumps its
 * slot's generation, so every copy of the old handle fails from then on
 * with -EBADF, however late it is used; nothing ever frees a slot. */
#define WEFT__SOCK_CHUNK_BITS 12
#define WEFT__SOCK_CHUNKS 4096 /* up to 16 M sockets at once */

typedef struct weft__sock_slot {
    uint32_t gen;      /* atomic: the live handle's generation */
    uint32_t next;     /* free list: the next free slot + 1 */
    weft__sock *s;     /* the socket while gen matches its handle */
    weft_loop *owner;  /* atomic (written under the table's lock) */
} weft__sock_slot;

extern weft__sock_slot *weft__sock_chunks[WEFT__SOCK_CHUNKS];

static inline weft_sock *weft__sock_handle(const weft__sock *s)
{
    return (weft_sock *)(uintptr_t)(((uint64_t)s->gen << 32) | ((uint64_t)s->idx + 1));
}

/* The slot h names, while its generation matches; NULL otherwise. */
static inline weft__sock_slot *weft__sock_slot_of(const weft_sock *h)
{
    uint64_t v = (uint64_t)(uintptr_t)h;
    uint32_t idx = (uint32_t)v - 1;
    if (WEFT__UNLIKELY(idx >= (uint32_t)WEFT__SOCK_CHUNKS << WEFT__SOCK_CHUNK_BITS))
        return NULL;
    weft__sock_slot *c =
        __atomic_load_n(&weft__sock_chunks[idx >> WEFT__SOCK_CHUNK_BITS], __ATOMIC_ACQUIRE);
    if (WEFT__UNLIKELY(!c))
        return NULL;
    weft__sock_slot *e = &c[idx & ((1u << WEFT__SOCK_CHUNK_BITS) - 1)];
    if (WEFT__UNLIKELY(__atomic_load_n(&e->gen, __ATOMIC_ACQUIRE) != (uint32_t)(v >> 32)))
        return NULL;
    return e;
}

int weft__sock_enter_slow(const weft_sock *h, weft__sock **out);

/* The socket h names, for a call from this thread.  Returns 0, -EBADF (not
 * a socket, or closed), -EXDEV (another loop owns it).  A socket no loop
 * owns yet becomes the calling loop's here.  Without a lock only for the
 * owning loop's thread, the one thread that closes or reuses its slot; a
 * socket no loop owns may be closed by any thread, so its look-up takes
 * the table's lock. */
static inline int weft__sock_enter(const weft_sock *h, weft__sock **out)
{
    weft__sock_slot *e = weft__sock_slot_of(h);
    if (WEFT__UNLIKELY(!e))
        return -EBADF;
    weft_loop *owner = __atomic_load_n(&e->owner, __ATOMIC_RELAXED);
    if (WEFT__UNLIKELY(!owner || owner != weft__tls_loop))
        return weft__sock_enter_slow(h, out);
    *out = e->s;
    return 0;
}

/* Declares s, the socket handle h names, or returns enter's error. */
#define WEFT__SOCK_ENTER(s, h)                                                                     \
    weft__sock *s;                                                                                 \
    do {                                                                                           \
        int enter_rc_ = weft__sock_enter((h), &s);                                                 \
        if (WEFT__UNLIKELY(enter_rc_ < 0))                                                         \
            return enter_rc_;                                                                      \
    } while (0)

/* Gives s a slot and a handle, owned by the running loop (if any).
 * Returns 0 or -ENOMEM. */
int weft__sock_slot_new(weft__sock *s);
/* Claims s for closing: sets s->closing, kills its handle (every copy of
 * it fails from now on) and gives its slot back.  Returns 0, or -EBADF if
 * s was claimed already.  Thread-safe. */
int weft__sock_claim(weft__sock *s);
/* Adds s to the sockets l owns, or takes it off. */
int weft__sock_own(weft_loop *l, weft__sock *s);
void weft__sock_disown(weft__sock *s);
/* A close asked for from a thread that does not own h's socket: the
 * owning loop closes it (hand-off), or the caller does when no loop owns
 * it.  Returns 0 or -EBADF. */
int weft__sock_close_foreign(weft_sock *h, bool reset);

/* ---- the socket core (sock.c) ----------------------------------------------- */

/* Waits until s is ready for dir (WEFT__EV_IN, WEFT__EV_OUT or both) or
 * deadline.  In a coroutine it parks; elsewhere it polls the thread.
 * Returns 0, -ETIMEDOUT, -ECANCELED (weft_cancel, or the loop is being
 * freed), -EBADF (s was closed meanwhile).  The caller holds a reference
 * (s->refs) so that a close cannot free s meanwhile. */
int weft__sock_wait(weft__sock *s, int dir, int64_t deadline);
/* The same for a caller that holds none: takes one for the wait.  If s was
 * closed meanwhile it returns -EBADF and sets *gone (when gone is not
 * NULL), and s must not be touched again. */
int weft__sock_wait_held(weft__sock *s, int dir, int64_t deadline, bool *gone);
/* For a layer's close (ops->close) only: waits as weft__sock_wait does,
 * on a socket that is closing. */
int weft__sock_wait_closing(weft__sock *s, int dir, int64_t deadline);
/* One attempt of an operation: >= 0 done; -EAGAIN not ready (wait, then
 * call again); -EINTR call again at once; other negative: failed. */
typedef ssize_t (*weft__sock_op)(weft__sock *s, void *ctx);
/* Runs op until it completes, taking s's dir for the duration and waiting
 * for readiness between attempts, within timeout_ms. */
ssize_t weft__sock_io(weft__sock *s, int dir, int64_t timeout_ms, weft__sock_op op, void *ctx);
/* Closes s: kills its handle, sends its waiters away with -EBADF, runs the
 * layer's close, takes the descriptor off the poller, closes it (linger 0
 * first if reset) and frees s once no call is using it.  Returns 0 or
 * close(2)'s error; -EBADF if s is already closing. */
int weft__sock_close(weft__sock *s, bool reset);
/* Sends every call waiting on s, a claimed socket, away with -EBADF:
 * those parked for readiness or for their turn wake; operations in the
 * ring are stopped, and their calls leave as they complete. */
void weft__sock_send_away(weft__sock *s);
/* The rest of weft__sock_close, for a socket already claimed. */
int weft__sock_close_claimed(weft__sock *s, bool reset);
/* Drops a reference a waiting call took (s->refs++); frees a socket that
 * was closed meanwhile once the last one is gone. */
void weft__sock_unref(weft__sock *s);
/* Frees a closed socket's memory (its read-ahead's too). */
void weft__sock_free(weft__sock *s);
/* A syscall's result as the socket core's ops return it: bytes, or
 * -errno with EWOULDBLOCK as -EAGAIN. */
static inline ssize_t weft__sock_errno(ssize_t r)
{
    return r >= 0 ? r : errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

/* The same calls through the ring (out of line; the syscall when the ring
 * cannot take them). */
ssize_t weft__sock_ring_recv(weft__sock *s, void *buf, size_t n, int flags);
ssize_t weft__sock_ring_recvmsg(weft__sock *s, struct msghdr *m, int flags);
ssize_t weft__sock_ring_send(weft__sock *s, const void *buf, size_t n, int flags);
ssize_t weft__sock_ring_sendmsg(weft__sock *s, const struct msghdr *m, int flags);

/* recv(2), recvmsg(2), send(2), sendmsg(2) for an op of weft__sock_io:
 * through the ring when the call holding the direction is a coroutine's on
 * a completion backend (they then wait inside, within the call's deadline,
 * and -ETIMEDOUT, -ECANCELED, -EBADF come from them), else the syscall
 * (MSG_DONTWAIT).  Return bytes or -errno; -EAGAIN: not ready.  Inline:
 * on epoll they are the syscall and nothing more. */
static inline ssize_t weft__sock_sys_recv(weft__sock *s, void *buf, size_t n, int flags)
{
    if (WEFT__UNLIKELY(s->rring))
        return weft__sock_ring_recv(s, buf, n, flags);
    return weft__sock_errno(weft__sys_recv(s->pe.fd, buf, n, flags));
}

static inline ssize_t weft__sock_sys_recvmsg(weft__sock *s, struct msghdr *m, int flags)
{
    if (WEFT__UNLIKELY(s->rring))
        return weft__sock_ring_recvmsg(s, m, flags);
    return weft__sock_errno(weft__sys_recvmsg(s->pe.fd, m, flags));
}

static inline ssize_t weft__sock_sys_send(weft__sock *s, const void *buf, size_t n, int flags)
{
    if (WEFT__UNLIKELY(s->wring))
        return weft__sock_ring_send(s, buf, n, flags);
    return weft__sock_errno(weft__sys_send(s->pe.fd, buf, n, flags));
}

static inline ssize_t weft__sock_sys_sendmsg(weft__sock *s, const struct msghdr *m, int flags)
{
    if (WEFT__UNLIKELY(s->wring))
        return weft__sock_ring_sendmsg(s, m, flags);
    return weft__sock_errno(weft__sys_sendmsg(s->pe.fd, m, flags));
}

/* ---- the read-ahead (sock_rx.c) ---------------------------------------------- */

/* A receive into iov through the read-ahead: what is queued, or, for a
 * coroutine's call through the ring (WEFT__RING_CALL), arms the read-ahead
 * when the loop can (TCP, no flags but MSG_DONTWAIT) and parks until bytes
 * come, within s->rdeadline.  Returns bytes, 0 at the end of the stream,
 * -errno (the connection's error, -ETIMEDOUT, -ECANCELED, -EBADF); -EAGAIN:
 * no read-ahead and nothing queued (stopped first, for a call that cannot
 * park or whose time is up): the caller receives by itself. */
ssize_t weft__sock_rx_read(weft__sock *s, const struct iovec *iov, int iovcnt, int flags);
/* Stops the read-ahead and waits until it has left the ring; the queue
 * stays to be read.  For whatever is about to read the descriptor itself
 * (a TLS layer, a pool's check of an idle connection). */
void weft__sock_rx_halt(weft__sock *s);
/* For a layer that reads the descriptor itself (TLS): stops the
 * read-ahead and takes up to n queued bytes; -EAGAIN when none are left
 * (read the descriptor then), 0 or -errno for the end or error after
 * them. */
ssize_t weft__sock_rx_take(weft__sock *s, void *buf, size_t n);
/* The read-ahead holds bytes, or the end of the stream or an error. */
static inline bool weft__sock_rx_has(const weft__sock *s)
{
    return (s->rring & WEFT__RING_RX) &&
           (s->rx->head >= 0 || s->rx->end != 0 || s->rx->spill_len);
}
/* Its loop is going and s outlives it: stops the read-ahead and moves
 * its bytes out of the loop's buffers (on no memory, the next receive
 * fails with -ENOMEM). */
void weft__sock_rx_detach(weft__sock *s);
/* At close: stops the read-ahead (without waiting) and gives back its
 * buffers; what it still receives is given back as it comes. */
void weft__sock_rx_drop(weft__sock *s);

/* A call waiting for what a multishot operation (the read-ahead, the
 * accept-ahead) brings: parks on s->rq until woken or deadline.  The fault
 * seam counts a call's first wait (*seen false) as a call of fault (a
 * weft_fault_kind), as the syscall it stands for.  0 when woken; -errno:
 * -EBADF (closed), -ETIMEDOUT, -ECANCELED, the injected fault. */
static inline int weft__sock_await(weft__sock *s, bool *seen, int fault, int64_t deadline)
{
    if (!*seen) {
        *seen = true;
        (void)fault; /* unused outside the testing build */
        if (weft__sys_fail(fault))
            return -errno;
    }
    weft__wait w;
    int rc = weft__park(&w, &s->rq, deadline);
    return s->closing ? -EBADF : rc;
}

/* ---- the accept-ahead (sock_ax.c) -------------------------------------------- */

/* A connection for the call holding s's input through the ring
 * (WEFT__RING_CALL): one the accept-ahead has queued, or, once it is
 * armed, parks until one comes, within s->rdeadline.  Returns the new
 * descriptor, or -errno (what ended the accept-ahead, such as -EMFILE,
 * once; -ETIMEDOUT, -ECANCELED, -EBADF); -EAGAIN: none queued and no
 * accept-ahead to be had, or no time left: the caller accepts itself. */
int weft__sock_ax_accept(weft__sock *s, int flags);
/* For a call that accepts itself (outside a coroutine, or on a blocking
 * descriptor): stops the accept-ahead, so that it takes no connection
 * from under the call, and returns a queued connection's descriptor, or
 * -EAGAIN when none waits. */
int weft__sock_ax_take(weft__sock *s);
/* Stops the accept-ahead; the queue stays. */
void weft__sock_ax_halt(weft__sock *s);
static inline bool weft__sock_ax_has(const weft__sock *s)
{
    return s->ax && (s->ax->count || s->ax->err);
}
/* Its loop is going: stops the accept-ahead; the queued connections stay. */
void weft__sock_ax_detach(weft__sock *s);
/* At close: stops the accept-ahead and closes the queued connections
 * (their peers see the close, as they would a listener's with a backlog). */
void weft__sock_ax_drop(weft__sock *s);
/* With s: closes what is still queued, frees the queue. */
void weft__sock_ax_free(weft__sock *s);

/* Carries op out in the ring for the call holding op's direction (an
 * op of weft__sock_io with s->rring or s->wring set), op->fd and the
 * flags filled in here; counts as a call of fault (a weft_fault_kind) for
 * the fault seam.  -EAGAIN: not submitted (the deadline has passed, or no
 * room), do the syscall. */
ssize_t weft__sock_ring_run(weft__sock *s, weft__bop *op, int fault);
/* accept4(fd, NULL, NULL, flags) the same way (the receive side): the new
 * descriptor or -errno. */
int weft__sock_sys_accept(weft__sock *s, int flags);
/* Runs a send through weft__sock_io and leaves its own count in s->sent
 * (weft_sock_sent), also when it never got its turn; *done is the op's
 * progress.  s may be closed meanwhile: the count is then not kept. */
ssize_t weft__sock_send_io(weft__sock *s, int64_t timeout_ms, weft__sock_op op, void *ctx,
                           const size_t *done);
/* Makes a socket for fd (already non-blocking), with a handle, owned by
 * the running loop if there is one.  Returns 0 or -ENOMEM (fd is then the
 * caller's still). */
int weft__sock_new(weft__sock **out, int fd, unsigned flags);
/* Frees a socket weft__sock_new made that nobody has seen yet, without
 * closing its descriptor. */
void weft__sock_discard(weft__sock *s);
/* The flags of a new socket of family, type and protocol. */
unsigned weft__sock_flags_for(int family, int type, int protocol);

/* Internal twins of the public calls, on sockets rather than handles. */
int weft__socket(weft__sock **out, int family, int type, int protocol);
int weft__bind(weft__sock *s, const weft_addr *a);
int weft__listen(weft__sock *s, int backlog);
int weft__connect(weft__sock *s, const weft_addr *a, int64_t timeout_ms);
int weft__accept(weft__sock *l, weft__sock **out, int64_t timeout_ms);
int weft__sock_poll(weft__sock *s, int events, int64_t timeout_ms);
int weft__sock_peer(const weft__sock *s, weft_addr *out);

/* Waits on a raw descriptor outside a coroutine with poll(); ns deadline. */
int weft__fd_poll(int fd, int events, int64_t deadline);
/* The bytes of iovcnt iovecs, or -EINVAL (count out of 0..IOV_MAX, a
 * NULL array, a total past SSIZE_MAX). */
ssize_t weft__iov_total(const struct iovec *iov, int iovcnt);
/* Milliseconds left until deadline, as a timeout for another call (-1 for
 * WEFT__NEVER, 0 once passed). */
int64_t weft__ms_left(int64_t deadline);
/* Sleeps ms or until deadline on s's receive queue, so that closing s or a
 * cancel ends it early.  Returns 0 when the time is up, -EBADF (closed) or
 * -ECANCELED. */
int weft__sock_backoff(weft__sock *s, int64_t ms, int64_t deadline);
/* A new socket of a's family and the given type, connected to a within
 * timeout_ms; closed again on failure.  Returns 0 or weft_connect's and
 * weft_socket's errors. */
int weft__dial(weft__sock **out, const weft_addr *a, int type, int64_t timeout_ms);

#endif /* WEFT_NET_SOCK_H */
