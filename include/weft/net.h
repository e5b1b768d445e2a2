/*
 * weft/net.h - addresses, sockets, TCP, names, UDP, unix and raw sockets.
 * Part of weft.h, which is the one header to include; the conventions at
 * the top of weft.h hold for every function here.
 */
#ifndef WEFT_H_NET
#define WEFT_H_NET

#include "runtime.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Addresses                                                                 */

typedef struct weft_addr {
    socklen_t len;
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
        struct sockaddr_storage ss;
    } u;
} weft_addr;

/* Parses a numeric IPv4 or IPv6 address ("127.0.0.1", "::1", "[::1]",
 * "fe80::1%lo", "fe80::1%2") and a port (0..65535) into *out.  NULL or "*"
 * means the IPv6 any-address "::" (dual-stack where used); "" is not an
 * address.  Returns 0 or -EINVAL (out NULL, a port out of range, a host that
 * is not a numeric address, an unknown zone); *out is untouched on failure.
 * Never blocks. */
WEFT_EXTERN int weft_addr_parse(weft_addr *out, const char *host, int port);

/* Formats a into buf as "127.0.0.1:80", "[::1]:80", the unix path or
 * "@name" (abstract; a unix address's bytes are read up to a->len, and
 * never past sun_path; one whose a->len stops short of sun_path, as an
 * unbound socket's, is read up to sun_path's first NUL, "" for none).
 * Returns the length written (without the NUL), -ENOSPC if buf is too
 * small (buf then holds a truncated, NUL-terminated string; with len 0
 * nothing is written), -EAFNOSUPPORT (not AF_INET, AF_INET6 or AF_UNIX),
 * -EINVAL (a NULL, buf NULL with len > 0, a->len larger than the address
 * union). */
WEFT_EXTERN int weft_addr_format(const weft_addr *a, char *buf, size_t len);

/* Returns the port of an IPv4/IPv6 address, -EAFNOSUPPORT otherwise (a
 * NULL too). */
WEFT_EXTERN int weft_addr_port(const weft_addr *a);

/* ------------------------------------------------------------------------ */
/* Sockets and TCP                                                           */

typedef struct weft_sock weft_sock;

/* Listening flags.  WEFT_DEFER_ACCEPT (TCP_DEFER_ACCEPT) has the kernel
 * hand a connection over only once its first bytes have come (or after
 * one resent SYN-ACK, about a second, without): for protocols whose
 * client speaks first (HTTP, TLS), it saves a wait, and the readiness
 * registration with it, per connection. */
enum { WEFT_REUSEPORT = 1, WEFT_V6ONLY = 2, WEFT_DEFER_ACCEPT = 4 };

/* Binds and listens on host:port.  host NULL or "*" = all interfaces
 * (IPv6 dual-stack, unless WEFT_V6ONLY, falling back to IPv4 where IPv6 is
 * absent); a numeric address; or a name, looked up as weft_resolve does,
 * listening on one of its addresses: the first IPv4 one if it has any
 * (as Go's net.Listen: "localhost" is 127.0.0.1), else the first.
 * port 0 = any free port (weft_sock_local tells which).  SO_REUSEADDR is
 * always set; flags may add WEFT_REUSEPORT, WEFT_V6ONLY and
 * WEFT_DEFER_ACCEPT.  backlog <= 0
 * = SOMAXCONN.  Errors: -EINVAL (host "", a port outside 0..65535, unknown
 * flags, out NULL), for a name those of weft_resolve (the WEFT_EAI_* codes,
 * -ETIMEDOUT, -ECANCELED, ...; the lookup has no timeout of its own, only
 * the coroutine's deadline bounds it), -EADDRINUSE, -EACCES,
 * -EADDRNOTAVAIL, -EAFNOSUPPORT, -ENOPROTOOPT (WEFT_REUSEPORT unsupported),
 * -EMFILE, -ENFILE, -ENOMEM.  Never blocks, except to look a name up.  The
 * caller owns *out and closes it with weft_close. */
WEFT_EXTERN int weft_tcp_listen(weft_sock **out, const char *host, int port, int backlog,
                                int flags);

/* Accepts one connection.  Connections the peer aborted before accept are
 * skipped.  When the process is out of descriptors (EMFILE, ENFILE) or
 * memory, the call backs off (5 ms doubling to 500 ms) and retries within
 * its timeout instead of spinning; if the timeout ends first it returns that
 * error.  Errors: -ETIMEDOUT, -ECANCELED, -EBADF (the listener was closed,
 * also under the call), -EMFILE, -ENFILE, -ENOBUFS, -ENOMEM, -EINVAL (not a
 * listener, out NULL).  A connection is of its listener's type (stream or
 * seqpacket).  Blocks.  The caller owns *out. */
WEFT_EXTERN int weft_tcp_accept(weft_sock *listener, weft_sock **out, int64_t timeout_ms);

/* Connects to host:port within timeout_ms, which covers the lookup too.
 * host is a numeric IPv4/IPv6 address or a name: its addresses are raced,
 * IPv6 and IPv4 alternating, a new attempt every 250 ms or as soon as one
 * fails, the first to connect winning (Happy Eyeballs, RFC 8305); when
 * every address fails, the first failure is returned.  Errors:
 * -ECONNREFUSED, -ETIMEDOUT, -ECANCELED, -ENETUNREACH, -EHOSTUNREACH,
 * -EADDRNOTAVAIL, -EAFNOSUPPORT (an IPv6 address without IPv6), -EPERM (a
 * local firewall rule), -EINVAL (host NULL, port outside 1..65535, out
 * NULL, an IPv6 link-local address without a zone), the WEFT_EAI_* codes
 * and other errors of weft_resolve (a name that is not valid, ""
 * included: WEFT_EAI_BADNAME), -EMFILE, -ENFILE, -ENOMEM.  Blocks.  The
 * caller owns *out. */
WEFT_EXTERN int weft_tcp_connect(weft_sock **out, const char *host, int port,
                                 int64_t timeout_ms);

/* Receives up to n bytes.  Returns the count (> 0), 0 when the peer closed
 * its side (or n is 0: nothing is received), -EINVAL (buf NULL with n >
 * 0), or -ETIMEDOUT (also TCP
 * giving up on the peer), -ECANCELED, -ECONNRESET, -ENOTCONN (a TCP socket
 * not connected, or a listener), -EINVAL (a unix stream socket not
 * connected), -ECONNREFUSED (connected UDP: an earlier datagram bounced),
 * -EBADF.  If data and the deadline are both there at entry, the data wins.
 * Blocks.  Concurrent receivers on one socket take turns.  On a datagram
 * socket (connected UDP, unix datagram, seqpacket) it receives one
 * datagram and returns its full length: more than n means it was truncated
 * to n; 0 is an empty datagram.  buf is the call's until it returns, and
 * the same holds for every receive and send below: on io_uring the kernel
 * fills it while the call waits (never after: a call that times out or is
 * cancelled first stops the operation and waits for it), so a buffer must
 * not be handed to two calls that may wait at the same time. */
WEFT_EXTERN ssize_t weft_recv(weft_sock *s, void *buf, size_t n, int64_t timeout_ms);

/* Receives exactly n bytes.  Returns n; 0 if the peer closed before the
 * first byte (or n is 0); -ECONNRESET if it closed part-way (or reset);
 * -ETIMEDOUT, -ECANCELED, -EBADF (bytes read before that are consumed and
 * lost); -EINVAL on a datagram socket or with n over SSIZE_MAX; the other
 * errors of weft_recv.  Blocks. */
WEFT_EXTERN ssize_t weft_recvn(weft_sock *s, void *buf, size_t n, int64_t timeout_ms);

/* Sends all n bytes.  Returns n, or -ETIMEDOUT, -ECANCELED, -EPIPE,
 * -ECONNRESET, -ENOTCONN, -EBADF, -EINVAL (n over SSIZE_MAX); on a
 * datagram socket, where it sends one datagram, also -EDESTADDRREQ (not
 * connected), -EMSGSIZE, -ECONNREFUSED (an earlier datagram bounced).  n 0
 * on a stream returns 0 and sends nothing; on a datagram socket it sends an
 * empty datagram, as weft_sendto does.  -EINVAL also for buf NULL with n >
 * 0.  weft_sock_sent() tells how many bytes this call got out, also when it
 * failed.  Concurrent senders on one socket take turns, so each buffer
 * goes out whole.  Never raises SIGPIPE.  Blocks. */
WEFT_EXTERN ssize_t weft_send(weft_sock *s, const void *buf, size_t n, int64_t timeout_ms);

/* Scatter/gather twins of weft_recv (fills at most the iovecs, returns the
 * count, 0 at EOF; on a datagram socket, the datagram's full length, as
 * weft_recv) and weft_send (sends every byte of every iovec; on a datagram
 * socket, as one datagram however many iovecs).  iovcnt must be
 * 0..IOV_MAX, iov not NULL when iovcnt > 0, and the total at most
 * SSIZE_MAX (-EINVAL otherwise); on a stream, a total of 0 returns 0 at
 * once.  Same errors. */
WEFT_EXTERN ssize_t weft_recvv(weft_sock *s, const struct iovec *iov, int iovcnt,
                               int64_t timeout_ms);
WEFT_EXTERN ssize_t weft_sendv(weft_sock *s, const struct iovec *iov, int iovcnt,
                               int64_t timeout_ms);

/* What the last send on s got out, also when it failed: bytes for
 * weft_send/weft_sendv, n or 0 for weft_sendto, datagrams for
 * weft_sendmmsg.  0 if s is not an open socket of this thread (no error
 * code).  Never blocks. */
WEFT_EXTERN size_t weft_sock_sent(const weft_sock *s);

enum { WEFT_SHUT_RD = 1, WEFT_SHUT_WR = 2, WEFT_SHUT_RDWR = 3 };
enum { WEFT_POLL_IN = 1, WEFT_POLL_OUT = 2 };

/* Shuts down one or both directions (the peer reads 0 after WEFT_SHUT_WR;
 * a send after it fails with -EPIPE).  Returns 0, -EINVAL (how is not a
 * WEFT_SHUT_* value), -ENOTCONN (a TCP socket not connected); on a TLS
 * socket, WEFT_SHUT_WR can also return the error of sending close_notify
 * (-EPIPE, -ECONNRESET).  Never blocks. */
WEFT_EXTERN int weft_shutdown(weft_sock *s, int how);

/* Closes s.  At once its handle is dead: every call with it returns -EBADF
 * from then on, a second weft_close too, and every coroutine blocked on s
 * wakes with -EBADF.  Then a TLS socket sends close_notify (waiting at most
 * 250 ms for room), the descriptor leaves the poller and is closed, and s's
 * memory is freed once the last woken call has left.  Returns 0, the error
 * close(2) reported (-EIO; s is closed either way), or -EBADF (s is not an
 * open socket, or is being closed).  From a thread that does not own s
 * (another loop's coroutine, a plain thread), the close is handed to the
 * owning loop, which carries it out in a coroutine of its own at its next
 * step (or as it is freed, at the latest); the call returns 0 at once, or
 * -EBADF, or -ENOMEM (the hand-off could not be queued: s stays open).
 * Never blocks, except for a TLS socket's wait. */
WEFT_EXTERN int weft_close(weft_sock *s);

/* Like weft_close, but aborts a TCP connection: the peer gets an RST (its
 * reads fail with -ECONNRESET) and the local port does not enter TIME_WAIT.
 * Unsent data is discarded; a TLS socket sends nothing.  Same returns as
 * weft_close. */
WEFT_EXTERN int weft_reset(weft_sock *s);

/* Waits until s is readable and/or writable (events: WEFT_POLL_IN |
 * WEFT_POLL_OUT; other bits are ignored).  Returns the ready subset (> 0),
 * or -ETIMEDOUT, -ECANCELED, -EINVAL (neither bit set).  A peer's close or
 * an error on the socket counts as ready for both.  Blocks. */
WEFT_EXTERN int weft_sock_poll(weft_sock *s, int events, int64_t timeout_ms);

/* Returns the descriptor.  weft still owns it: don't close it. */
WEFT_EXTERN int weft_sock_fd(const weft_sock *s);

/* Adopts a socket descriptor (any family or type, a listening one too; it
 * is made non-blocking and close-on-exec).  fd must not be one weft already
 * owns.  On success weft owns fd and weft_close closes it; on failure the
 * caller still owns it.  Errors: -EINVAL (out NULL), -EBADF (fd negative
 * or not open), -ENOTSOCK, -ENOMEM.  Never blocks.  The caller owns *out. */
WEFT_EXTERN int weft_sock_wrap(weft_sock **out, int fd);

/* Local and peer address of s.  Returns 0 or -ENOTCONN (peer; *out then
 * holds no address), -EINVAL (out NULL), -EBADF.  Never block. */
WEFT_EXTERN int weft_sock_local(const weft_sock *s, weft_addr *out);
WEFT_EXTERN int weft_sock_peer(const weft_sock *s, weft_addr *out);

/* Socket options.  Each returns 0 or the setsockopt error: the TCP ones
 * (nodelay, keepalive's timing) give -ENOPROTOOPT on UDP and raw sockets
 * and -EOPNOTSUPP on unix ones; a value out of the kernel's range gives
 * -EINVAL.  Never block. */
WEFT_EXTERN int weft_sock_set_nodelay(weft_sock *s, int on);
/* idle_s, interval_s, count: <= 0 leaves the system's value; ignored with
 * on 0.  They are set one by one: a failure leaves SO_KEEPALIVE on and
 * the values before it set. */
WEFT_EXTERN int weft_sock_set_keepalive(weft_sock *s, int on, int idle_s, int interval_s,
                                        int count);
/* 0 leaves one as it is; a negative one is -EINVAL.  Linux doubles each
 * and caps it at net.core.rmem_max / wmem_max, silently. */
WEFT_EXTERN int weft_sock_set_bufsize(weft_sock *s, int rcvbuf, int sndbuf);
/* Sets the descriptor's own O_NONBLOCK off (on = 1) or back on (on = 0), for
 * handing the fd to code that expects a blocking socket.  weft's own calls
 * work in either mode and do not block the thread on a blocking fd, except
 * weft_connect, whose connect(2) then blocks it, whatever its timeout.
 * Returns 0 or fcntl's error. */
WEFT_EXTERN int weft_sock_set_blocking(weft_sock *s, int on);


/* Generic sockets, for walking a weft_resolve list the socket2 way: open a
 * socket of the entry's family, type and protocol, then bind or connect it
 * to the entry's address.  The descriptor is non-blocking and close-on-exec;
 * an AF_INET6 socket, raw ones aside, is dual-stack (IPV6_V6ONLY off).
 * Errors: -EAFNOSUPPORT, -EPROTONOSUPPORT, -ESOCKTNOSUPPORT, -EINVAL (out
 * NULL, an unknown type, SOCK_NONBLOCK or SOCK_CLOEXEC in type), -EMFILE,
 * -ENFILE, -ENOMEM, -EPERM or -EACCES (raw sockets without CAP_NET_RAW).
 * Never blocks.  The caller owns *out. */
WEFT_EXTERN int weft_socket(weft_sock **out, int family, int type, int protocol);

/* Binds s to a.  Returns 0, -EADDRINUSE, -EADDRNOTAVAIL, -EACCES,
 * -EAFNOSUPPORT (a of another family than s), -EINVAL (a NULL, a->len 0,
 * too big, or too short for s's family: an IPv4 address on an IPv6 socket;
 * s already bound); for a unix path also -ENOENT, -ENOTDIR, -EROFS.  Never
 * blocks. */
WEFT_EXTERN int weft_bind(weft_sock *s, const weft_addr *a);

/* Listens on a bound stream socket (backlog <= 0 = SOMAXCONN; an unbound
 * TCP socket gets a free port).  Returns 0, -EADDRINUSE, -EOPNOTSUPP (not a
 * stream or seqpacket socket), -EINVAL (a unix socket not bound, a
 * connected socket).  Never blocks. */
WEFT_EXTERN int weft_listen(weft_sock *s, int backlog);

/* Connects s to a.  Stream sockets wait within timeout_ms for the
 * connection; datagram sockets only set the default destination (an
 * AF_UNSPEC address, a->len 0 included, removes it) and never wait.
 * Errors: -EINVAL (a NULL, a->len too big or too short for s's family, an
 * IPv6 link-local address without a zone), -EAFNOSUPPORT (a of another
 * family), -ECONNREFUSED, -ETIMEDOUT, -ECANCELED, -ENETUNREACH,
 * -EHOSTUNREACH, -EADDRNOTAVAIL, -EACCES (UDP: a broadcast address without
 * weft_udp_set_broadcast), -EPERM (a local firewall rule), -EISCONN,
 * -EALREADY (a connect still under way: one that timed out or was
 * cancelled goes on in the kernel); unix: -ENOENT, -ENOTDIR, -EACCES,
 * -EPROTOTYPE (a socket of another type at the path), a full backlog
 * retried as by weft_unix_connect.  Blocks (streams).  On failure s stays
 * open and owned by the caller. */
WEFT_EXTERN int weft_connect(weft_sock *s, const weft_addr *a, int64_t timeout_ms);

/* Accepts one connection on any listening stream socket (TCP or unix);
 * weft_tcp_accept and weft_unix_accept are this call.  Same contract as
 * weft_tcp_accept. */
WEFT_EXTERN int weft_accept(weft_sock *listener, weft_sock **out, int64_t timeout_ms);

/* ------------------------------------------------------------------------ */
/* Names                                                                     */

/* Lookup failures, outside errno's range.  weft_strerror names each. */
enum {
    WEFT_EAI_NONAME = -3001,   /* no such name (NXDOMAIN), or none in /etc/hosts */
    WEFT_EAI_NODATA = -3002,   /* the name exists, but has no address of that family */
    WEFT_EAI_FAIL = -3003,     /* the server failed (SERVFAIL) or answered nonsense */
    WEFT_EAI_REFUSED = -3004,  /* the server refused the query */
    WEFT_EAI_TIMEOUT = -3005,  /* no server answered, after every retry */
    WEFT_EAI_SERVICE = -3006,  /* unknown service name, or not for this socket type */
    WEFT_EAI_FAMILY = -3007,   /* address family not supported */
    WEFT_EAI_BADNAME = -3008,  /* not a valid host name */
};

typedef struct weft_addrinfo weft_addrinfo;
typedef struct weft_hints {
    int family;   /* AF_INET, AF_INET6, AF_UNIX; 0 = any */
    int socktype; /* SOCK_STREAM, SOCK_DGRAM, SOCK_RAW; 0 = stream and datagram */
    int protocol; /* 0 = the type's default */
    int flags;    /* WEFT_AI_* */
} weft_hints;
enum {
    WEFT_AI_PASSIVE = 1,     /* host NULL or "*" gives the any-address, for bind */
    WEFT_AI_CANONNAME = 2,   /* fill the first entry's canonical name */
    WEFT_AI_NUMERICHOST = 4, /* host must be numeric: never looked up */
    WEFT_AI_NUMERICSERV = 8, /* service must be a port number */
    WEFT_AI_V4MAPPED = 16,   /* family AF_INET6 and no IPv6 address: IPv4-mapped ones */
    WEFT_AI_ADDRCONFIG = 32, /* only families this host has a non-loopback address of */
};

/* Looks up host and service, like getaddrinfo.  host: a name, a numeric
 * address (never sent to DNS), "*" (all interfaces, as with
 * WEFT_AI_PASSIVE) or NULL (loopback, or the any-address with
 * WEFT_AI_PASSIVE); with family AF_UNIX, a path ("@name" = abstract; the
 * one entry then has the hints' socktype, stream if 0, and service is
 * ignored).  service: a port number (0..65535), a service name from
 * /etc/services, or NULL or "" (port 0).  hints may be NULL.  "localhost"
 * and names under it ("a.localhost", any case, a final dot or not) are the
 * loopback addresses, ::1 and 127.0.0.1 by the hints' family (RFC 6761),
 * and ask no resolver, whatever /etc/hosts says.  Other names go through
 * /etc/hosts, then DNS (the loop's c-ares channel, or getaddrinfo on worker
 * threads with the "system" resolver); the lookup obeys timeout_ms and
 * weft_cancel.
 * Returns 0 and a non-empty list in *out, which the caller frees with
 * weft_addrinfo_free.  Errors: WEFT_EAI_* above (WEFT_EAI_FAMILY for a
 * hints family other than 0, AF_INET, AF_INET6 and AF_UNIX;
 * WEFT_EAI_NONAME for a name with WEFT_AI_NUMERICHOST), -ETIMEDOUT
 * (timeout_ms ended first), -ECANCELED, -EINVAL (out NULL, unknown flags or
 * socktype; with AF_UNIX, host NULL, "" or "@"), WEFT_EAI_FAIL also when
 * c-ares itself could not be set up, -ENAMETOOLONG (an
 * AF_UNIX path), -ENOMEM; the "system" resolver also -EMFILE, -ENFILE,
 * -EAGAIN (no worker thread could start) and getaddrinfo's system errors.
 * Blocks. */
WEFT_EXTERN int weft_resolve(weft_addrinfo **out, const char *host, const char *service,
                             const weft_hints *hints, int64_t timeout_ms);
/* Walks the list: the next entry, NULL at the end (or if ai is NULL). */
WEFT_EXTERN const weft_addrinfo *weft_addrinfo_next(const weft_addrinfo *ai);
/* The entry's address, ready for weft_connect, weft_bind or weft_sendto;
 * owned by the list (NULL if ai is NULL). */
WEFT_EXTERN const weft_addr *weft_addrinfo_addr(const weft_addrinfo *ai);
/* The entry's family, socket type and protocol; -EINVAL if ai is NULL. */
WEFT_EXTERN int weft_addrinfo_family(const weft_addrinfo *ai);
WEFT_EXTERN int weft_addrinfo_socktype(const weft_addrinfo *ai);
WEFT_EXTERN int weft_addrinfo_protocol(const weft_addrinfo *ai);
/* The canonical name (first entry, with WEFT_AI_CANONNAME; owned by the
 * list), else NULL. */
WEFT_EXTERN const char *weft_addrinfo_canonname(const weft_addrinfo *ai);
/* Frees a whole list (NULL is fine). */
WEFT_EXTERN void weft_addrinfo_free(weft_addrinfo *ai);

/* ------------------------------------------------------------------------ */
/* UDP                                                                       */

/* Opens an unbound UDP socket of family AF_INET or AF_INET6 (IPv6 sockets
 * are dual-stack).  Errors: -EAFNOSUPPORT, -EINVAL (out NULL), -EMFILE,
 * -ENFILE, -ENOMEM.  Never blocks.  The caller owns *out. */
WEFT_EXTERN int weft_udp_open(weft_sock **out, int family);
/* Binds to a numeric host ("*" or NULL = any) and port (0 = any).  On an
 * IPv6 socket an IPv4 host means its IPv4-mapped address; on an IPv4
 * socket an IPv6 host is -EINVAL unless it is IPv4-mapped.  Returns 0,
 * -EINVAL (bad host or port, s already bound, not a UDP or raw IP socket),
 * -EADDRINUSE, -EADDRNOTAVAIL, -EACCES, -EBADF.  Never blocks. */
WEFT_EXTERN int weft_udp_bind(weft_sock *s, const char *host, int port);
/* Sets (or, called again, changes) the default peer: weft_send and
 * weft_recv then work, and datagrams from other addresses are dropped
 * (those already queued before the call are still delivered).  An ICMP
 * error for a datagram to the peer makes the next call on the socket
 * return -ECONNREFUSED.  host NULL removes the peer (and a port the kernel
 * chose at connect, if the socket was never bound).  Returns 0, -EINVAL
 * (bad host, "*", port 0 or out of range, an IPv6 link-local host without
 * a zone, not a UDP or raw IP socket), -EACCES (a broadcast address
 * without weft_udp_set_broadcast), -ENETUNREACH, -EBADF.  Never blocks. */
WEFT_EXTERN int weft_udp_connect(weft_sock *s, const char *host, int port);

/* Sends one datagram of n bytes to to (NULL or to->len 0 = the connected
 * peer); n may be 0.  Returns n, or -EMSGSIZE (too big: over 65,507 bytes
 * for IPv4, 65,527 for IPv6), -ETIMEDOUT, -ECANCELED, -ECONNREFUSED (an
 * earlier datagram to a connected peer bounced), -EDESTADDRREQ (no
 * address and no peer), -EACCES (a broadcast address without
 * weft_udp_set_broadcast), -EINVAL (not a datagram socket, buf NULL with
 * n > 0, to->len too big or too short for the socket's family),
 * -EAFNOSUPPORT (an IPv6 to on an IPv4 socket), -ENOENT or -ECONNREFUSED
 * (unix: no such path, nobody bound there), -EBADF, or the kernel's
 * -ENOBUFS, -ENETUNREACH.  weft_sock_sent() then gives n, or 0 after a
 * failure.  Blocks only while the send buffer is full.  Works on UDP, unix
 * datagram, seqpacket and raw sockets. */
WEFT_EXTERN ssize_t weft_sendto(weft_sock *s, const void *buf, size_t n, const weft_addr *to,
                                int64_t timeout_ms);
/* Receives one datagram into buf and its sender into *from (may be NULL;
 * from->len 0 when the sender has no address, as an unbound unix socket).
 * Returns the datagram's full length: a value greater than n means it was
 * truncated and only the first n bytes were stored.  0 is an empty
 * datagram.  With n 0 (buf may then be NULL) the datagram is consumed and
 * only its length returned.  Errors: -ETIMEDOUT, -ECANCELED, -ECONNREFUSED
 * (connected UDP: an earlier datagram bounced), -EINVAL (not a datagram
 * socket, buf NULL with n > 0), -EBADF.  Blocks; concurrent receivers take
 * turns.  Works on UDP, unix datagram, seqpacket and raw sockets. */
WEFT_EXTERN ssize_t weft_recvfrom(weft_sock *s, void *buf, size_t n, weft_addr *from,
                                  int64_t timeout_ms);

/* One datagram of a batch.  Sending: buf, len, addr (addr.len 0 = the
 * connected peer).  Receiving: buf and len in; got (bytes stored), addr
 * (the sender; len 0 if it has none) and truncated (1 if the datagram was
 * longer than len) out. */
typedef struct weft_dgram {
    void *buf;
    size_t len;
    weft_addr addr;
    size_t got;
    int truncated;
} weft_dgram;
/* Sends all n datagrams, in order, with as few syscalls as possible
 * (sendmmsg, up to 64 messages each: 64 datagrams, or up to 256 with GSO).
 * On a UDP socket whose kernel has UDP GSO, each run of up to 64 non-empty
 * datagrams of one length to one address, 65,000 bytes in all (the last of
 * a run may be shorter), goes as one GSO send, which the kernel cuts back
 * into those datagrams; a socket where the kernel refuses one goes on
 * without, and other sockets never try.  Returns n (0 when n is 0), or a
 * negative error; weft_sock_sent() then tells how many datagrams (not
 * bytes) went out before it.  Errors as weft_sendto; -EINVAL (n < 0, v
 * NULL, a buf NULL with len > 0, an addr.len too big).  Blocks while the
 * send buffer is full; timeout_ms bounds the whole call. */
WEFT_EXTERN int weft_sendmmsg(weft_sock *s, weft_dgram *v, int n, int64_t timeout_ms);
/* Waits for at least one datagram, then takes up to n (at most 64) of
 * those queued in one recvmmsg call, never waiting for more.  Fills got,
 * addr and truncated of v[0..r-1]; the rest are untouched.  Returns how
 * many (1..n), or -ETIMEDOUT, -ECANCELED, -ECONNREFUSED (as weft_recvfrom),
 * -EINVAL (n <= 0, v NULL, a buf NULL with len > 0, not a datagram socket),
 * -EBADF.  Blocks; concurrent receivers take turns. */
WEFT_EXTERN int weft_recvmmsg(weft_sock *s, weft_dgram *v, int n, int64_t timeout_ms);

/* Multicast: join or leave group (numeric IPv4 or IPv6) on the interface
 * iface (a name such as "lo", or NULL for the system's choice, or the
 * group's own scope as in "ff02::1%lo").  A dual-stack IPv6 socket can
 * join IPv4 groups too.  Which interface datagrams sent to a group leave
 * by is the routing table's choice unless weft_udp_set_mcast_iface sets
 * it.  Returns 0, -EINVAL (group NULL, "*" or not a multicast address, an
 * IPv6 group on an IPv4 socket, not a UDP or raw IP socket), -EADDRINUSE
 * (already joined), -EADDRNOTAVAIL (not joined), -ENODEV (no such
 * interface, or no route to pick one), -ENOBUFS (an IPv4 socket past
 * net.ipv4.igmp_max_memberships groups, 20 by default), -EBADF.  Never
 * block. */
WEFT_EXTERN int weft_udp_join(weft_sock *s, const char *group, const char *iface);
WEFT_EXTERN int weft_udp_leave(weft_sock *s, const char *group, const char *iface);
/* Multicast TTL / hop limit (0..255; 0 keeps datagrams on this host),
 * multicast loopback, SO_BROADCAST.  On an IPv6 socket the first two set
 * the IPv6 option and the IPv4 one (for IPv4 groups).  Return 0, -EINVAL
 * (ttl out of range, not a UDP or raw IP socket), -EBADF.  Never block. */
WEFT_EXTERN int weft_udp_set_ttl(weft_sock *s, int ttl);
WEFT_EXTERN int weft_udp_set_loop(weft_sock *s, int on);
WEFT_EXTERN int weft_udp_set_broadcast(weft_sock *s, int on);
/* The interface that datagrams sent to multicast groups leave by: a name
 * such as "lo", or NULL to go back to the routing table's choice.  On an
 * IPv6 socket it sets the IPv6 option and the IPv4 one (for IPv4 groups).
 * Returns 0, -ENODEV (no such interface), -EINVAL (not a UDP or raw IP
 * socket), -EBADF.  Never blocks. */
WEFT_EXTERN int weft_udp_set_mcast_iface(weft_sock *s, const char *iface);

/* ------------------------------------------------------------------------ */
/* Unix and raw sockets                                                      */

/* Builds a unix address: a path, or "@name" for a Linux abstract name
 * (sun_path[0] is NUL and the length counts only the name's bytes).  A
 * path may have up to 107 bytes (sun_path keeps its terminator), a name
 * after the '@' up to 107.  Returns 0, -EINVAL (NULL, "" or "@"),
 * -ENAMETOOLONG; *out is untouched on failure. */
WEFT_EXTERN int weft_addr_unix(weft_addr *out, const char *path);

/* Listens on a unix stream socket at path ("@name": abstract).  A stale
 * socket file left at path is not removed: -EADDRINUSE.  Errors: -EINVAL
 * (out NULL), those of weft_addr_unix, -EADDRINUSE, -ENOENT (a directory on
 * the path is missing), -ENOTDIR, -EACCES, -EROFS, -EMFILE, -ENFILE,
 * -ENOMEM; if listen itself fails, the socket file bind made is unlinked.
 * Never blocks.  The caller owns *out; closing it does not unlink. */
WEFT_EXTERN int weft_unix_listen(weft_sock **out, const char *path, int backlog);
/* weft_accept for unix listeners: the same call and contract. */
WEFT_EXTERN int weft_unix_accept(weft_sock *listener, weft_sock **out, int64_t timeout_ms);
/* Connects to a unix stream socket.  Errors: -EINVAL (out NULL), those of
 * weft_addr_unix, -ENOENT (no such path), -ENOTDIR, -ECONNREFUSED (no
 * listener: a socket file nobody listens on, or a file that is not a
 * socket), -EPROTOTYPE (a datagram socket is bound there), -EACCES,
 * -ETIMEDOUT, -ECANCELED, -EMFILE, -ENFILE, -ENOMEM.  -EAGAIN is never
 * returned: a full backlog is tried again (after 1 ms, doubling to 50 ms)
 * within the timeout.  Blocks.  The caller owns *out. */
WEFT_EXTERN int weft_unix_connect(weft_sock **out, const char *path, int64_t timeout_ms);
/* Opens a unix datagram socket bound to path ("@name": abstract; NULL:
 * unbound, it can send but its receivers see no address to answer).  Use
 * weft_sendto with weft_addr_unix, and weft_recvfrom.  Errors: -EINVAL
 * (out NULL), those of weft_addr_unix, -EADDRINUSE, -ENOENT, -ENOTDIR,
 * -EACCES, -EROFS, -EMFILE, -ENFILE, -ENOMEM.  Never blocks.  The caller
 * owns *out; closing it does not unlink. */
WEFT_EXTERN int weft_unix_dgram_open(weft_sock **out, const char *path);
/* A connected pair (type SOCK_STREAM or SOCK_DGRAM, AF_UNIX), both
 * non-blocking and close-on-exec.  Returns 0, -EINVAL (any other type,
 * type flags included), -EMFILE, -ENFILE, -ENOMEM.  Never blocks.  The
 * caller owns both. */
WEFT_EXTERN int weft_socketpair(weft_sock *out[2], int type);
/* Passes a descriptor over a unix socket (SCM_RIGHTS, with one byte of
 * data).  The caller keeps its own fd.  Returns 0, -EBADF (s or fd not
 * open), -EINVAL (s is not a unix socket, or is TLS), -ENOTCONN (s is not
 * connected), -EPIPE (the stream peer closed), -ECONNREFUSED (the datagram
 * peer closed), -ETOOMANYREFS (too many descriptors in flight),
 * -ETIMEDOUT, -ECANCELED.  Blocks. */
WEFT_EXTERN int weft_send_fd(weft_sock *s, int fd, int64_t timeout_ms);
/* Receives a descriptor sent with weft_send_fd; it arrives close-on-exec
 * and the caller owns it.  Returns 1 with *fd set, 0 if the stream peer
 * closed or an empty datagram came (a datagram peer's close is not seen:
 * the call waits its timeout), -EBADMSG (the byte came without a
 * descriptor, with more than one, or with its control data cut short,
 * MSG_CTRUNC: every descriptor that did come is closed and the byte is
 * consumed), -ECONNRESET (the stream peer closed with data unread),
 * -EINVAL (fd NULL, s is TLS or not a unix socket: its bytes are left
 * alone), -ETIMEDOUT, -ECANCELED.  Blocks. */
WEFT_EXTERN int weft_recv_fd(weft_sock *s, int *fd, int64_t timeout_ms);
/* Opens a raw socket: family AF_INET or AF_INET6, protocol an IP protocol
 * number (IPPROTO_ICMP, IPPROTO_ICMPV6, ...).  Use weft_sendto (the kernel
 * adds the IP header) and weft_recvfrom: on AF_INET each packet received
 * starts with its IPv4 header, on AF_INET6 it does not, and the kernel
 * fills in ICMPv6 checksums.  Errors: -EPERM or -EACCES (no CAP_NET_RAW),
 * -EAFNOSUPPORT (another family), -EINVAL (out NULL, protocol outside
 * 0..255), -EPROTONOSUPPORT (protocol 0), -EMFILE, -ENFILE, -ENOMEM.
 * Never blocks.  The caller owns *out. */
WEFT_EXTERN int weft_raw_open(weft_sock **out, int family, int protocol);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H_NET */
