/*
 * poll_uring.c - the io_uring backend: the kernel carries out the sockets'
 * receives and sends itself, into and out of the callers' buffers.
 *
 * The socket core submits an operation (weft__bop, on the waiting
 * coroutine's stack) and parks; submissions pile up in the ring and go to
 * the kernel together, in the one io_uring_enter that also waits for and
 * collects completions at the loop's next step.  A completion's user_data
 * is its operation; its coroutine is made ready.
 *
 * Readiness (the loop's eventfd, the resolver's sockets, weft_fd_wait,
 * operations the ring does not carry) comes from an epoll set as on the
 * epoll backend, watched by a multishot poll in the ring: one wait for
 * both.  The set is drained whenever that poll completes.
 *
 * Setup asks for a single issuer with deferred task work (completions
 * are run only when the loop asks for them, in its own thread) and drops
 * what the kernel refuses; a probe checks every opcode used.  Without
 * IORING_FEAT_NODROP a full completion queue could lose completions: such
 * a kernel gets epoll instead (weft_loop_new falls back).
 */
#include "internal.h"

#include <liburing.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#define SQ_ENTRIES 1024
#define CQ_ENTRIES 8192

/* The provided buffers: PBUF_COUNT (a power of two) of PBUF_SIZE, made
 * at the first read-ahead (virtual memory until the kernel writes them).
 * Only PBUF_LIVE of them go round at first, doubled each time the kernel
 * finds none: the ring hands buffers out in the order they came back, so
 * every one of a big pool would be cold (cache and TLB) by its turn. */
#define PBUF_GROUP 0
#define PBUF_COUNT 4096
#define PBUF_SIZE 4096
#define PBUF_LIVE 256

/* user_data of what is not an operation of the socket core. */
#define TAG_IGNORE 0 /* cancels: their own completions say nothing */
#define TAG_EPOLL 1  /* the poll of the epoll set */

typedef struct uring_state {
    weft__epoll_set ep; /* first member: the epoll calls take l->be_data */
    struct io_uring ring;
    bool ep_polled;     /* the multishot poll of ep.epfd is in the ring */
    bool ep_ready;      /* ... and has fired since the set was drained */
    bool plain;         /* set up again for weft_loop_fd (ur_fd) */
    unsigned inflight;  /* operations submitted and not yet completed */
    bool poll_first;    /* the kernel knows IORING_RECVSEND_POLL_FIRST */
    weft__pbufs pool;   /* provided buffers: pool.base NULL until made */
    struct io_uring_buf_ring *br; /* ... and the ring that hands them over */
    unsigned live;      /* buffers [0, live) go round, the rest wait */
    bool pool_tried;    /* made, or found not to be had */
} uring_state;

/* Setups to try, best first: the kernel says -EINVAL for a flag it lacks. */
static const unsigned setups[] = {
    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
    IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
    IORING_SETUP_SUBMIT_ALL, /* PLAIN: completions posted as they come */
    0,
};
#define PLAIN 2

static const int opcodes[] = {
    IORING_OP_RECV,     IORING_OP_SEND,         IORING_OP_RECVMSG,
    IORING_OP_SENDMSG,  IORING_OP_ASYNC_CANCEL, IORING_OP_POLL_ADD,
    IORING_OP_ACCEPT,   IORING_OP_CONNECT,
};

/* Sets a ring up with the first of setups[first..] the kernel takes;
 * *used says which. */
static int ring_open(struct io_uring *r, size_t first, size_t *used)
{
    int rc = -EINVAL;
    for (size_t i = first; i < sizeof setups / sizeof setups[0] && rc == -EINVAL; i++) {
        *used = i;
        struct io_uring_params p = { .flags = setups[i] | IORING_SETUP_CQSIZE,
                                     .cq_entries = CQ_ENTRIES };
        rc = io_uring_queue_init_params(SQ_ENTRIES, r, &p);
        if (rc == 0 && !(p.features & IORING_FEAT_NODROP)) {
            io_uring_queue_exit(r);
            return -ENOSYS;
        }
    }
    if (rc < 0)
        return rc;
    struct io_uring_probe *probe = io_uring_get_probe_ring(r);
    for (size_t i = 0; probe && i < sizeof opcodes / sizeof opcodes[0]; i++)
        if (!io_uring_opcode_supported(probe, opcodes[i]))
            rc = -ENOSYS;
    if (!probe)
        rc = -ENOSYS;
    io_uring_free_probe(probe);
    if (rc < 0)
        io_uring_queue_exit(r);
    return rc;
}

/* -ENOSYS when the ring cannot be had here, whatever the kernel said
 * (weft_loop_new then takes epoll); -ENOMEM, -EMFILE, -ENFILE for what
 * epoll would fail with too. */
static int ur_init(weft_loop *l)
{
    uring_state *st = weft__sys_calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    int rc = weft__epoll_open(&st->ep);
    if (rc < 0)
        goto fail;
    size_t used = 0;
    rc = weft__sys_fail(WEFT_FAULT_RING) ? -errno : ring_open(&st->ring, 0, &used);
    if (rc < 0) {
        weft__epoll_close(&st->ep);
        if (rc != -EMFILE && rc != -ENFILE)
            rc = -ENOSYS;
        goto fail;
    }
    st->plain = false;
    /* A kernel that takes the first setup (6.1 on) knows POLL_FIRST (5.19):
     * an older one would fail such a receive with EINVAL. */
    st->poll_first = used == 0;
    l->be_data = st;
    return 0;
fail:
    free(st);
    return rc;
}

static int reap(uring_state *st);
static void pool_free(uring_state *st);
static struct io_uring_sqe *get_sqe(uring_state *st);

static void ur_fini(weft_loop *l)
{
    uring_state *st = l->be_data;
    /* Operations still in the ring (a closed socket's stop in progress, a
     * read-ahead its socket could not stop as the loop let go of it): one
     * cancel for all, then their last completions free what they hold. */
    struct io_uring_sqe *sqe = st->inflight ? get_sqe(st) : NULL;
    if (sqe) {
        io_uring_prep_cancel(sqe, NULL, IORING_ASYNC_CANCEL_ANY);
        io_uring_sqe_set_data64(sqe, TAG_IGNORE);
    }
    for (int i = 0; st->inflight && i < 1000; i++) {
        struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 1000000 };
        struct io_uring_cqe *cqe;
        io_uring_submit_and_wait_timeout(&st->ring, &cqe, 1, &ts, NULL);
        reap(st);
    }
    pool_free(st);
    io_uring_queue_exit(&st->ring);
    weft__epoll_close(&st->ep);
    free(st);
    l->be_data = NULL;
}

/* A submission entry; a full queue goes to the kernel first. */
static struct io_uring_sqe *get_sqe(uring_state *st)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&st->ring);
    if (WEFT__UNLIKELY(!sqe)) {
        io_uring_submit(&st->ring);
        sqe = io_uring_get_sqe(&st->ring);
    }
    return sqe;
}

static int ur_submit(weft_loop *l, weft__bop *op)
{
    uring_state *st = l->be_data;
    if (WEFT__UNLIKELY(weft__sys_fail(WEFT_FAULT_RING)))
        return -EAGAIN;
    struct io_uring_sqe *sqe = get_sqe(st);
    if (WEFT__UNLIKELY(!sqe))
        return -EAGAIN;
    switch (op->kind) {
    case WEFT__BOP_RECV: io_uring_prep_recv(sqe, op->fd, op->buf, op->len, op->flags); break;
    case WEFT__BOP_SEND: io_uring_prep_send(sqe, op->fd, op->buf, op->len, op->flags); break;
    case WEFT__BOP_RECVMSG: io_uring_prep_recvmsg(sqe, op->fd, op->buf, (unsigned)op->flags); break;
    case WEFT__BOP_SENDMSG:
        io_uring_prep_sendmsg(sqe, op->fd, op->buf, (unsigned)op->flags);
        break;
    case WEFT__BOP_ACCEPT: io_uring_prep_accept(sqe, op->fd, NULL, NULL, op->flags); break;
    case WEFT__BOP_CONNECT:
        io_uring_prep_connect(sqe, op->fd, op->buf, (socklen_t)op->len);
        break;
    case WEFT__BOP_RECV_MULTI:
        io_uring_prep_recv(sqe, op->fd, NULL, 0, op->flags);
        sqe->ioprio |= IORING_RECV_MULTISHOT;
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = PBUF_GROUP;
        break;
    case WEFT__BOP_ACCEPT_MULTI:
        io_uring_prep_multishot_accept(sqe, op->fd, NULL, NULL, op->flags);
        break;
    }
    if (op->poll_first && st->poll_first)
        sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    io_uring_sqe_set_data(sqe, op);
    st->inflight++;
    return 0;
}

/* The cancel goes to the kernel at once, and so does the stopped
 * operation's completion: its caller usually returns without waiting for
 * another step. */
static void ur_cancel(weft_loop *l, weft__bop *op)
{
    uring_state *st = l->be_data;
    struct io_uring_sqe *sqe = get_sqe(st);
    if (sqe) {
        io_uring_prep_cancel(sqe, op, 0);
        io_uring_sqe_set_data64(sqe, TAG_IGNORE);
        io_uring_submit_and_get_events(&st->ring);
    } else {
        /* No room even after a submit (completions overflowing). */
        struct io_uring_sync_cancel_reg reg = { .addr = (uint64_t)(uintptr_t)op,
                                                .timeout = { -1, -1 } };
        io_uring_register_sync_cancel(&st->ring, &reg);
        io_uring_get_events(&st->ring);
    }
    reap(st);
}

/* Also runs the completions' deferred work: a stopped operation lets go
 * of its file then, so a close that follows closes the socket. */
static void ur_flush(weft_loop *l)
{
    uring_state *st = l->be_data;
    io_uring_submit_and_get_events(&st->ring);
}

static void pool_grow(uring_state *st);

/* Runs the completions in the ring: operations' wake their coroutines
 * (nothing else runs, so this is safe anywhere in the loop's thread); the
 * epoll set's is noted for the next wait.  Returns how many were
 * operations'. */
static int reap(uring_state *st)
{
    struct io_uring *r = &st->ring;
    int n = 0;
    /* Completions the queue had no room for wait in the kernel (NODROP):
     * take them in rounds until none is left behind. */
    for (;;) {
        unsigned head, seen = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(r, head, cqe)
        {
            uint64_t d = cqe->user_data;
            seen++;
            if (WEFT__LIKELY(d > TAG_EPOLL && d != LIBURING_UDATA_TIMEOUT)) {
                weft__bop *op = (weft__bop *)(uintptr_t)d;
                if (op->on_more) {
                    int buf = -1;
                    if (WEFT__UNLIKELY(cqe->res == -ENOBUFS) && st->live < PBUF_COUNT)
                        pool_grow(st); /* the ring ran dry: more go round */
                    if (cqe->flags & IORING_CQE_F_BUFFER) {
                        buf = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
                        st->pool.out++;
                        st->pool.len[buf] = cqe->res > 0 ? (uint32_t)cqe->res : 0;
                    }
                    bool done = !(cqe->flags & IORING_CQE_F_MORE);
                    if (done)
                        st->inflight--;
                    op->on_more(op, cqe->res, buf, done); /* op may be gone after */
                    n++;
                    continue;
                }
                op->res = cqe->res;
                op->more = cqe->flags & IORING_CQE_F_SOCK_NONEMPTY;
                op->done = true;
                st->inflight--;
                if (op->w)
                    weft__wake(op->w, 0);
                n++;
            } else if (d == TAG_EPOLL) {
                st->ep_ready = true;
                if (!(cqe->flags & IORING_CQE_F_MORE))
                    st->ep_polled = false; /* ended: poll again at the next wait */
            }
        }
        io_uring_cq_advance(r, seen);
        if (!(IO_URING_READ_ONCE(*r->sq.kflags) & IORING_SQ_CQ_OVERFLOW))
            break;
        io_uring_get_events(r);
    }
    return n;
}

static int ur_wait(weft_loop *l, int timeout_ms)
{
    uring_state *st = l->be_data;
    struct io_uring *r = &st->ring;
    if (!st->ep_polled) {
        struct io_uring_sqe *sqe = get_sqe(st);
        if (sqe) {
            io_uring_prep_poll_multishot(sqe, st->ep.epfd, POLLIN);
            io_uring_sqe_set_data64(sqe, TAG_EPOLL);
            st->ep_polled = true;
        }
    }
    int rc;
    /* ep_ready may be set already: a cancel's reap (ur_cancel, in a
     * coroutine) took the epoll set's completion, and the poll will not
     * fire again for what the set holds. */
    if (timeout_ms == 0 || st->ep_ready || io_uring_cq_ready(r)) {
        rc = io_uring_submit_and_get_events(r);
    } else if (timeout_ms < 0) {
        rc = io_uring_submit_and_wait(r, 1);
    } else {
        struct __kernel_timespec ts = { .tv_sec = timeout_ms / 1000,
                                        .tv_nsec = (long long)(timeout_ms % 1000) * 1000000 };
        struct io_uring_cqe *cqe;
        rc = io_uring_submit_and_wait_timeout(r, &cqe, 1, &ts, NULL);
    }
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY)
        return rc;
    int n = reap(st);
    if (st->ep_ready) {
        st->ep_ready = false;
        /* The poll fires when the set gains an event: leave none behind. */
        int m;
        do {
            m = weft__epoll_wait(l, 0);
            n += m > 0 ? m : 0;
        } while (m == WEFT__EPOLL_EVENTS);
    }
    return n;
}

/* ---- provided buffers -------------------------------------------------------------- */

/* Puts PBUF_LIVE more buffers (the first time) or as many again as go
 * round already into the ring, up to PBUF_COUNT. */
static void pool_grow(uring_state *st)
{
    unsigned to = st->live ? 2 * st->live : PBUF_LIVE;
    if (to > PBUF_COUNT)
        to = PBUF_COUNT;
    for (unsigned i = st->live; i < to; i++)
        io_uring_buf_ring_add(st->br, st->pool.base + (size_t)i * PBUF_SIZE, PBUF_SIZE,
                              (unsigned short)i, io_uring_buf_ring_mask(PBUF_COUNT),
                              (int)(i - st->live));
    io_uring_buf_ring_advance(st->br, (int)(to - st->live));
    st->live = to;
}

/* Hands the first buffers to the kernel through a fresh buffer ring. */
static int pool_register(uring_state *st)
{
    struct io_uring_buf_reg reg = { .ring_addr = (uint64_t)(uintptr_t)st->br,
                                    .ring_entries = PBUF_COUNT,
                                    .bgid = PBUF_GROUP };
    int rc = io_uring_register_buf_ring(&st->ring, &reg, 0);
    if (rc < 0)
        return rc;
    io_uring_buf_ring_init(st->br);
    st->live = 0;
    pool_grow(st);
    st->pool.out = 0;
    return 0;
}

static void pool_free(uring_state *st)
{
    if (st->br)
        munmap(st->br, PBUF_COUNT * sizeof(struct io_uring_buf));
    if (st->pool.base)
        munmap(st->pool.base, (size_t)PBUF_COUNT * PBUF_SIZE);
    free(st->pool.len);
    free(st->pool.next);
    st->br = NULL;
    st->pool.base = NULL;
    st->pool.len = NULL;
    st->pool.next = NULL;
}

/* The pool, made the first time: a kernel that takes the first setup
 * (6.1) has buffer rings (5.19) and multishot receives (6.0). */
static weft__pbufs *ur_pbufs(weft_loop *l)
{
    uring_state *st = l->be_data;
    if (WEFT__LIKELY(st->pool.base != NULL))
        return &st->pool;
    if (st->pool_tried || !st->poll_first)
        return NULL;
    st->pool_tried = true;
    if (weft__sys_fail(WEFT_FAULT_RING))
        return NULL;
    void *br = mmap(NULL, PBUF_COUNT * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void *base = mmap(NULL, (size_t)PBUF_COUNT * PBUF_SIZE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    st->br = br == MAP_FAILED ? NULL : br;
    st->pool.base = base == MAP_FAILED ? NULL : base;
    st->pool.len = weft__sys_calloc(PBUF_COUNT, sizeof *st->pool.len);
    st->pool.next = weft__sys_calloc(PBUF_COUNT, sizeof *st->pool.next);
    st->pool.size = PBUF_SIZE;
    st->pool.count = PBUF_COUNT;
    if (!st->br || !st->pool.base || !st->pool.len || !st->pool.next || pool_register(st) < 0) {
        pool_free(st);
        return NULL;
    }
    return &st->pool;
}

static void ur_pbuf_put(weft_loop *l, unsigned id)
{
    uring_state *st = l->be_data;
    io_uring_buf_ring_add(st->br, st->pool.base + (size_t)id * PBUF_SIZE, PBUF_SIZE,
                          (unsigned short)id, io_uring_buf_ring_mask(PBUF_COUNT), 0);
    io_uring_buf_ring_advance(st->br, 1);
    st->pool.out--;
}

/* A cancel queued for the next wait: nothing runs now. */
static void ur_stop(weft_loop *l, weft__bop *op)
{
    uring_state *st = l->be_data;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&st->ring);
    if (sqe) {
        io_uring_prep_cancel(sqe, op, 0);
        io_uring_sqe_set_data64(sqe, TAG_IGNORE);
    }
}

/* The ring's descriptor is readable while completions wait in it.  With
 * deferred (or cooperative) task work they wait to be posted until the
 * thread enters the ring, and nothing wakes a thread asleep in poll(2) on
 * it: an embedded loop gets a ring that posts them as they come, set up
 * anew the first time (the loop's only state in the ring then is the
 * epoll set's poll, made again at the next wait). */
static int ur_fd(weft_loop *l)
{
    uring_state *st = l->be_data;
    if (!st->plain) {
        if (st->inflight || st->pool.out)
            return -EBUSY;
        struct io_uring fresh;
        size_t used;
        int rc = ring_open(&fresh, PLAIN, &used);
        if (rc < 0)
            return rc;
        io_uring_queue_exit(&st->ring);
        st->ring = fresh;
        st->plain = true;
        st->ep_polled = false;
        if (st->pool.base && pool_register(st) < 0)
            pool_free(st); /* the new ring has none: receives go one by one */
    }
    return st->ring.ring_fd;
}

const weft__backend weft__backend_uring = {
    .name = "io_uring",
    .init = ur_init,
    .fini = ur_fini,
    .arm = weft__epoll_arm,
    .disarm = weft__epoll_disarm,
    .wait = ur_wait,
    .fd = ur_fd,
    .rearm = weft__epoll_rearm,
    .submit = ur_submit,
    .cancel = ur_cancel,
    .flush = ur_flush,
    .pbufs = ur_pbufs,
    .pbuf_put = ur_pbuf_put,
    .stop = ur_stop,
};
