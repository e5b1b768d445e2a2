/*
 * happy.c - connecting to a name: Happy Eyeballs (RFC 8305).
 *
 * The addresses are tried with the families interleaved (IPv6 first, then
 * IPv4, and so on).  A new attempt starts every 250 ms while earlier ones
 * are still pending, or at once when one fails; the first to connect wins
 * and the others are closed.  All of it, lookup included, runs inside the
 * caller's one deadline.
 *
 * The pending attempts sit in a private epoll set, and the caller waits on
 * that set's descriptor like on any socket: parked in a coroutine, in
 * poll() on a plain thread.
 */
#include "sock.h"

#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

#define STAGGER_MS 250
#define MAX_ATTEMPTS 32

/* Orders the stream entries of list into v, families alternating. */
static size_t interleave(const weft_addrinfo *list, const weft_addr **v)
{
    const weft_addr *a[MAX_ATTEMPTS], *b[MAX_ATTEMPTS];
    size_t na = 0, nb = 0;
    int first = AF_INET; /* IPv6 leads when there is any (RFC 6724's default) */
    for (const weft_addrinfo *ai = list; ai; ai = weft_addrinfo_next(ai))
        if (weft_addrinfo_family(ai) == AF_INET6)
            first = AF_INET6;
    for (const weft_addrinfo *ai = list; ai; ai = weft_addrinfo_next(ai)) {
        int f = weft_addrinfo_family(ai);
        if (f == first && na < MAX_ATTEMPTS)
            a[na++] = weft_addrinfo_addr(ai);
        else if (f != first && nb < MAX_ATTEMPTS)
            b[nb++] = weft_addrinfo_addr(ai);
    }
    size_t n = 0;
    for (size_t i = 0; (i < na || i < nb) && n < MAX_ATTEMPTS; i++) {
        if (i < na)
            v[n++] = a[i];
        if (i < nb && n < MAX_ATTEMPTS)
            v[n++] = b[i];
    }
    return n;
}

/* Starts connecting to a.  Returns 1 in progress (*out set), 0 connected
 * (*out set), or the error. */
static int attempt(weft__sock **out, const weft_addr *a)
{
    weft__sock *s;
    int rc = weft__socket(&s, a->u.sa.sa_family, SOCK_STREAM, 0);
    if (rc < 0)
        return rc;
    if (weft__sys_connect(s->pe.fd, &a->u.sa, a->len) == 0) {
        *out = s;
        return 0;
    }
    if (errno == EINPROGRESS || errno == EINTR) {
        *out = s;
        return 1;
    }
    rc = -errno;
    weft__sock_close(s, false);
    return rc;
}

/* Races addrs; returns 0 with the winner in *out, or the first error. */
static int race(weft__sock **out, const weft_addr **addrs, size_t n, int64_t deadline)
{
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        return -errno;
    weft__sock *set;
    int rc = weft__sock_new(&set, epfd, 0);
    if (rc < 0) {
        close(epfd);
        return rc;
    }
    weft__sock *pending[MAX_ATTEMPTS] = {0};
    weft__sock *win = NULL;
    size_t started = 0, npending = 0;
    int64_t next_at = 0;
    int err = 0;
    while (!win) {
        int64_t now = weft__now_ns();
        if (started < n && (npending == 0 || now >= next_at)) {
            size_t i = started++;
            weft__sock *s = NULL;
            int r = attempt(&s, addrs[i]);
            if (r == 1) {
                struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
                if (epoll_ctl(epfd, EPOLL_CTL_ADD, s->pe.fd, &ev) != 0) {
                    r = -errno;
                    weft__sock_close(s, false);
                } else {
                    pending[i] = s;
                    npending++;
                    next_at = now + STAGGER_MS * WEFT__NS_PER_MS;
                }
            } else if (r == 0) {
                win = s;
            }
            if (r < 0 && !err)
                err = r;
            continue;
        }
        if (npending == 0)
            break; /* every address failed */
        if (now >= deadline) {
            err = -ETIMEDOUT;
            break;
        }
        int64_t until = started < n && next_at < deadline ? next_at : deadline;
        rc = weft__sock_poll(set, WEFT_POLL_IN, weft__ms_left(until));
        if (rc == -ETIMEDOUT)
            continue; /* time for the next attempt, or the deadline */
        if (rc < 0) {
            err = rc;
            break;
        }
        struct epoll_event evs[8];
        int k = epoll_wait(epfd, evs, 8, 0);
        for (int j = 0; j < k && !win; j++) {
            size_t i = evs[j].data.u32;
            weft__sock *s = pending[i];
            int soerr = 0;
            socklen_t len = sizeof soerr;
            if (getsockopt(s->pe.fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
                soerr = errno;
            pending[i] = NULL;
            npending--;
            if (soerr == 0) {
                win = s;
                break;
            }
            if (!err)
                err = -soerr;
            epoll_ctl(epfd, EPOLL_CTL_DEL, s->pe.fd, NULL);
            weft__sock_close(s, false);
            next_at = now; /* a failure starts the next attempt at once */
        }
    }
    for (size_t i = 0; i < started; i++)
        if (pending[i])
            weft__sock_close(pending[i], false);
    weft__sock_close(set, false);
    if (win) {
        *out = win;
        return 0;
    }
    return err ? err : -ECONNREFUSED;
}

int weft__connect_name(weft__sock **out, const char *host, int port, int64_t deadline)
{
    char service[8];
    snprintf(service, sizeof service, "%d", port);
    weft_hints h = {.socktype = SOCK_STREAM};
    weft_addrinfo *list;
    int rc = weft__resolve(&list, host, service, &h, deadline);
    if (rc < 0)
        return rc;
    const weft_addr *addrs[MAX_ATTEMPTS];
    size_t n = interleave(list, addrs);
    /* One address has nothing to race: no epoll set for it. */
    rc = n == 1 ? weft__dial(out, addrs[0], SOCK_STREAM, weft__ms_left(deadline))
                : race(out, addrs, n, deadline);
    weft_addrinfo_free(list);
    return rc;
}
