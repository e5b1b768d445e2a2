/*
 * weft-cat.c - netcat on weft: copies stdin to a connection and the
 * connection to stdout, both at once, over TCP, UDP or a unix socket, with
 * or without TLS, as a client or a listener.
 *
 * usage: weft-cat [options] HOST PORT        connect
 *        weft-cat -l [options] [HOST] PORT   listen (or -l -p PORT)
 *        weft-cat -U [options] PATH          a unix stream socket (with -l: listen)
 * weft-cat -h lists the options.  Exits 0 on success, 1 on a connection,
 * TLS or I/O error or a timeout (with one line on stderr naming it), 2 on
 * bad usage.
 *
 * Each direction is a coroutine written as a plain loop: read, then send.
 * stdin and stdout are waited on with weft_fd_wait, and read or written on
 * the worker pool (weft_blocking) when they are files, which poll calls
 * always ready.
 */
#include <weft.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)
#define UDP_MAX 65507      /* the largest IPv4 UDP payload: one read, one datagram */
#define HANDSHAKE_MS 10000 /* a listener's TLS handshake, unless -w says */
#define TLS_CODE(rc) ((rc) <= -4000 && (rc) > -4100)

static const char usage_text[] =
    "usage: weft-cat [options] HOST PORT        connect to PORT on HOST (a name or an address)\n"
    "       weft-cat -l [options] [HOST] PORT   listen on PORT (every interface unless HOST)\n"
    "       weft-cat -U [options] PATH          a unix stream socket (with -l: listen at PATH)\n"
    "Copies stdin to the connection and the connection to stdout, both at once.  At the\n"
    "end of stdin the connection is half-closed (TLS: close_notify) and weft-cat goes on\n"
    "reading until the peer closes its side.  If the peer closes first, the rest of stdin\n"
    "is still sent, unless stdin is a terminal.\n"
    "  -l             listen, and serve one connection\n"
    "  -k             with -l: keep listening, serving connection after connection\n"
    "                 (stdin goes to the connection being served, until it ends)\n"
    "  -p PORT        with -l: the port (0: any free one; -v tells which)\n"
    "  -u             UDP: each read of stdin goes out as one datagram and each datagram\n"
    "                 received is written out; a listener answers the first sender.\n"
    "                 UDP has no end of stream: quit with -q or -w\n"
    "  -U             a unix stream socket at PATH (\"@name\": an abstract one)\n"
    "  -w SECS        give up connecting (TLS handshake included) after SECS, and quit\n"
    "                 when nothing has moved either way for SECS (exit 1); a listener\n"
    "                 waits for connections without limit, and gives each TLS handshake\n"
    "                 SECS (10 s without -w)\n"
    "  -q SECS        after the end of stdin, wait at most SECS for the peer to close,\n"
    "                 then quit all the same (0: at once)\n"
    "  -z             only connect (and handshake), then close: exit 0 if that worked\n"
    "  -v             tell on stderr where weft-cat listens and who connected\n"
    "  --tls          TLS, over TCP or unix\n"
    "  --ca FILE      trust the CAs in FILE instead of the system's; with -l: ask each\n"
    "                 client for a certificate and verify it against FILE\n"
    "  --cert FILE    certificate chain (PEM): the listener's (needed with -l), or the\n"
    "                 client's own\n"
    "  --key FILE     its private key, if not in the --cert file\n"
    "  --servername NAME  the name sent (SNI) and verified (default: HOST; with -U,\n"
    "                 localhost)\n"
    "  --insecure     do not verify the server's certificate\n"
    "  --no-shutdown  do not half-close at the end of stdin\n"
    "  -h, --help     this text\n"
    "SECS may have decimals.  Exit status: 0 done, 1 a connection, TLS or I/O error or\n"
    "a timeout, 2 bad usage.\n";

static struct {
    const char *host, *path, *servername;
    int port; /* -1: not given */
    int listen, keep, udp, zero, verbose, tls, insecure, no_shutdown;
    int64_t wait_ms, quit_ms; /* -1: not given */
    const char *ca, *cert, *key;
} opt = {.port = -1, .wait_ms = -1, .quit_ms = -1};

static void report(const char *what, int rc, const char *why)
{
    if (why && *why)
        fprintf(stderr, "weft-cat: %s: %s: %s\n", what, weft_strerror(rc), why);
    else
        fprintf(stderr, "weft-cat: %s: %s\n", what, weft_strerror(rc));
}

/* ---- TLS -------------------------------------------------------------------------------- */

#ifdef WEFT_CAT_TLS
static weft_tls_ctx *tls_ctx;

/* OpenSSL's reason for a TLS failure on s (NULL: the thread's last), or "". */
static const char *tls_reason(const weft_sock *s, int rc)
{
    const char *why = TLS_CODE(rc) ? weft_tls_errmsg(s) : NULL;
    return why ? why : "";
}

static int tls_setup(void)
{
    weft_tls_opts o = {
        .cert_file = opt.cert,
        .key_file = opt.key,
        .ca_file = opt.ca,
        .no_verify = opt.insecure,
        .verify_peer = opt.listen && opt.ca,
    };
    int rc = weft_tls_ctx_new(&tls_ctx, opt.listen ? WEFT_TLS_SERVER : WEFT_TLS_CLIENT, &o);
    if (rc < 0) {
        report("TLS", rc, tls_reason(NULL, rc));
        return 1;
    }
    return 0;
}

/* The handshake over *s, which it takes over; on failure *s is closed. */
static int tls_start(weft_sock **s, int64_t timeout_ms, char *why, size_t whylen)
{
    weft_sock *t;
    const char *name = opt.servername ? opt.servername : opt.path ? "localhost" : opt.host;
    int rc = weft_tls_wrap(&t, *s, tls_ctx, name, timeout_ms);
    if (rc < 0) {
        snprintf(why, whylen, "%s", tls_reason(NULL, rc));
        weft_close(*s);
        return rc;
    }
    *s = t;
    return 0;
}

static void tls_free(void)
{
    weft_tls_ctx_free(tls_ctx);
}
#else
/* A weft built without TLS: --tls is refused, and nothing else needs it. */
static int tls_setup(void)
{
    fprintf(stderr, "weft-cat: --tls: this weft was built without TLS\n");
    return 2;
}

static const char *tls_reason(const weft_sock *s, int rc)
{
    (void)s;
    (void)rc;
    return "";
}

static int tls_start(weft_sock **s, int64_t timeout_ms, char *why, size_t whylen)
{
    (void)timeout_ms;
    (void)why;
    (void)whylen;
    weft_close(*s);
    return -ENOTSUP;
}

static void tls_free(void)
{
}
#endif

/* ---- stdin and stdout ------------------------------------------------------------------ */

/* One of stdin and stdout.  A terminal is reopened through /proc as a
 * description of our own, made non-blocking: the shell's stays as it was
 * whatever becomes of us (^C, ^Z, kill -9).  Pipes and sockets get
 * O_NONBLOCK on the description they came with, put back at exit and on
 * the usual signals.  Files (and block devices) cannot be waited on: poll
 * says they are always ready, and a read may still wait for the disk, so
 * they are read and written on the worker pool. */
struct end {
    int fd;    /* the descriptor used: 0 or 1, or our own reopened terminal */
    int orig;  /* 0 or 1 */
    int file;  /* a regular file or a block device */
    int tty;   /* a terminal: the peer's close ends the connection */
    int saved; /* the flags before we set O_NONBLOCK, or -1 */
};

static struct end in_end = {0, 0, 0, 0, -1}, out_end = {1, 1, 0, 0, -1};
static const char *volatile unlink_path; /* our unix socket file, removed at exit */

static int end_open(struct end *e, int mode)
{
    struct stat st;
    if (fstat(e->orig, &st) < 0)
        return -errno;
    if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) || S_ISDIR(st.st_mode)) {
        e->file = 1;
        return 0;
    }
    if (isatty(e->orig)) {
        e->tty = 1;
        char path[32];
        snprintf(path, sizeof path, "/proc/self/fd/%d", e->orig);
        int fd = open(path, mode | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd >= 0) {
            e->fd = fd;
            return 0;
        }
    }
    int fl = fcntl(e->orig, F_GETFL);
    if (fl < 0)
        return -errno;
    if (!(fl & O_NONBLOCK)) {
        if (fcntl(e->orig, F_SETFL, fl | O_NONBLOCK) < 0)
            return -errno;
        e->saved = fl;
    }
    return 0;
}

/* Async-signal-safe: on_signal calls it too.  When stdin and stdout are one
 * description, only stdin saved its flags: stdout found O_NONBLOCK set. */
static void ends_restore(void)
{
    if (out_end.saved >= 0)
        fcntl(out_end.orig, F_SETFL, out_end.saved);
    if (in_end.saved >= 0)
        fcntl(in_end.orig, F_SETFL, in_end.saved);
    if (unlink_path)
        unlink(unlink_path);
}

static void on_signal(int sig)
{
    ends_restore();
    signal(sig, SIG_DFL);
    raise(sig); /* delivered as the handler returns: the usual death, the usual status */
}

struct file_io {
    int fd, write;
    void *buf;
    size_t len;
    ssize_t rc;
};

static void file_io_run(void *arg)
{
    struct file_io *io = arg;
    do
        io->rc = io->write ? write(io->fd, io->buf, io->len) : read(io->fd, io->buf, io->len);
    while (io->rc < 0 && errno == EINTR);
    if (io->rc < 0)
        io->rc = -errno;
}

/* Reads what is there, up to len: > 0, 0 at the end, or a negative code. */
static ssize_t end_read(struct end *e, void *buf, size_t len)
{
    if (e->file) {
        struct file_io io = {e->fd, 0, buf, len, 0};
        int rc = weft_blocking(file_io_run, &io, -1);
        return rc < 0 ? rc : io.rc;
    }
    for (;;) {
        ssize_t n = read(e->fd, buf, len);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        int rc = weft_fd_wait(e->fd, WEFT_POLL_IN, -1);
        if (rc < 0)
            return rc;
    }
}

/* Writes all of buf: 0 or a negative code. */
static int end_write(struct end *e, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n;
        if (e->file) {
            struct file_io io = {e->fd, 1, (void *)buf, len, 0};
            int rc = weft_blocking(file_io_run, &io, -1);
            n = rc < 0 ? rc : io.rc;
        } else if ((n = write(e->fd, buf, len)) < 0) {
            n = -errno;
            if (n == -EAGAIN && (n = weft_fd_wait(e->fd, WEFT_POLL_OUT, -1)) > 0)
                continue;
            if (n == -EINTR)
                continue;
        }
        if (n < 0)
            return (int)n;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---- one connection --------------------------------------------------------------------- */

/* What stdin gave and the connection has not taken yet.  It outlives a
 * connection: with -k, what one could not take goes to the next. */
static struct {
    char buf[BUF_SIZE];
    size_t off, len;
    int eof;
} pending;
static char recv_buf[BUF_SIZE];

/* What a receive of n put in recv_buf: a datagram's length can be more. */
static size_t stored(ssize_t n)
{
    return (size_t)n < sizeof recv_buf ? (size_t)n : sizeof recv_buf;
}

enum { COPYING, LINGERING, DONE }; /* the upward direction's state */

struct session {
    weft_sock *s;
    int64_t up, down; /* the two directions' coroutines */
    int running;      /* how many of them are still going */
    int up_state;
    int peer_closed;  /* the peer's end of stream came (never on UDP) */
    int rc;           /* the first failure, 0 if none */
    const char *what; /* where it happened */
    int local;        /* in stdin or stdout: the next connection would not help */
    char tls_why[256];
    int timed_out;
    int64_t last; /* weft_now() when data last moved */
};

/* Records the first failure and ends the other direction too. */
static void fail(struct session *ss, int64_t other, const char *what, int rc, int local)
{
    if (ss->rc == 0) {
        ss->rc = rc;
        ss->what = what;
        ss->local = local;
        snprintf(ss->tls_why, sizeof ss->tls_why, "%s", tls_reason(ss->s, rc));
    }
    weft_cancel(other);
}

/* stdin -> connection */
static void up_copy(struct session *ss)
{
    while (pending.off < pending.len || !pending.eof) {
        if (pending.off == pending.len) {
            ssize_t n = end_read(&in_end, pending.buf, opt.udp ? UDP_MAX : sizeof pending.buf);
            if (n == -ECANCELED)
                return;
            if (n < 0) {
                fail(ss, ss->down, "stdin", (int)n, 1);
                return;
            }
            if (n == 0) {
                pending.eof = 1;
                break;
            }
            pending.off = 0;
            pending.len = (size_t)n;
            ss->last = weft_now();
        }
        ssize_t n = weft_send(ss->s, pending.buf + pending.off, pending.len - pending.off, -1);
        pending.off += weft_sock_sent(ss->s);
        if (n == -ECANCELED)
            return;
        if (n < 0) {
            fail(ss, ss->down, "send", (int)n, 0);
            return;
        }
        ss->last = weft_now();
    }
    if (!opt.udp && !opt.no_shutdown) {
        /* Everything went; a peer that has closed may refuse the end of it. */
        int rc = weft_shutdown(ss->s, WEFT_SHUT_WR);
        if (rc < 0 &&
            !(ss->peer_closed && (rc == -EPIPE || rc == -ECONNRESET || rc == -ENOTCONN))) {
            fail(ss, ss->down, "send", rc, 0);
            return;
        }
    }
    if (opt.quit_ms >= 0 && !ss->peer_closed) {
        ss->up_state = LINGERING;
        if (weft_sleep(opt.quit_ms) == 0)
            weft_cancel(ss->down); /* -q's time is up */
    }
}

static void up(void *arg)
{
    struct session *ss = arg;
    up_copy(ss);
    ss->up_state = DONE;
    ss->running--;
}

/* connection -> stdout */
static void down(void *arg)
{
    struct session *ss = arg;
    for (;;) {
        ssize_t n = weft_recv(ss->s, recv_buf, sizeof recv_buf, -1);
        if (n == 0 && !opt.udp) { /* on UDP: an empty datagram */
            ss->peer_closed = 1;
            /* Nothing more will come: stop waiting for -q, or for a terminal. */
            if (ss->up_state == LINGERING || (ss->up_state == COPYING && in_end.tty))
                weft_cancel(ss->up);
            break;
        }
        if (n < 0) {
            if (n != -ECANCELED)
                fail(ss, ss->up, "receive", (int)n, 0);
            break;
        }
        ss->last = weft_now();
        int rc = end_write(&out_end, recv_buf, stored(n));
        if (rc < 0) {
            if (rc != -ECANCELED)
                fail(ss, ss->up, "stdout", rc, 1);
            break;
        }
        ss->last = weft_now();
    }
    ss->running--;
}

/* -w: ends the connection once nothing has moved for that long. */
static void watchdog(void *arg)
{
    struct session *ss = arg;
    for (;;) {
        int64_t left = ss->last + opt.wait_ms - weft_now();
        if (left <= 0)
            break;
        if (weft_sleep(left) < 0)
            return; /* cancelled: the connection ended */
    }
    if (ss->running == 0)
        return;
    ss->timed_out = 1;
    weft_cancel(ss->up);
    weft_cancel(ss->down);
}

/* Runs both directions over s until they have ended, then closes s.
 * Returns 0, or a negative code (already reported); *local tells whether
 * it was stdin's or stdout's. */
static int session(weft_sock *s, int *local)
{
    struct session ss = {.s = s, .up_state = COPYING, .last = weft_now()};
    int64_t dog = 0;
    ss.down = weft_go(down, &ss);
    ss.up = ss.down > 0 ? weft_go(up, &ss) : 0;
    if (ss.up > 0 && opt.wait_ms > 0)
        dog = weft_go(watchdog, &ss);
    ss.running = (ss.down > 0) + (ss.up > 0);
    if (ss.down < 0 || ss.up < 0 || dog < 0) {
        ss.rc = (int)(ss.down < 0 ? ss.down : ss.up < 0 ? ss.up : dog);
        ss.what = "start";
        ss.local = 1;
        weft_cancel(ss.down);
        weft_cancel(ss.up);
    }
    if (ss.down > 0)
        weft_join(ss.down, -1);
    if (ss.up > 0)
        weft_join(ss.up, -1);
    if (dog > 0) {
        weft_cancel(dog);
        weft_join(dog, -1);
    }
    if (ss.timed_out && ss.rc == 0) {
        ss.rc = -ETIMEDOUT;
        ss.what = "idle";
    }
    if (ss.rc < 0)
        report(ss.what, ss.rc, ss.tls_why);
    weft_close(s);
    *local = ss.local;
    return ss.rc;
}

/* ---- connecting and listening ----------------------------------------------------------- */

/* "HOST:PORT", "[v6]:PORT" or the unix path, for messages. */
static const char *where(void)
{
    static char buf[400];
    if (opt.path)
        snprintf(buf, sizeof buf, "%s", opt.path);
    else if (strchr(opt.host ? opt.host : "*", ':'))
        snprintf(buf, sizeof buf, "[%s]:%d", opt.host, opt.port);
    else
        snprintf(buf, sizeof buf, "%s:%d", opt.host ? opt.host : "*", opt.port);
    return buf;
}

static void tell(const char *what, const weft_sock *s, int peer)
{
    weft_addr a;
    char buf[160];
    if (!opt.verbose)
        return;
    if ((peer ? weft_sock_peer(s, &a) : weft_sock_local(s, &a)) < 0 ||
        weft_addr_format(&a, buf, sizeof buf) < 0)
        snprintf(buf, sizeof buf, "?");
    fprintf(stderr, "weft-cat: %s %s\n", what, *buf ? buf : "(unnamed)");
}

/* A UDP socket for host:port: connected to it (a client), or bound to it. */
static int udp_open(weft_sock **out, int bind_it)
{
    char port[8];
    weft_hints h = {.socktype = SOCK_DGRAM, .flags = bind_it ? WEFT_AI_PASSIVE : 0};
    weft_addrinfo *ai;
    snprintf(port, sizeof port, "%d", opt.port);
    int rc = weft_resolve(&ai, bind_it && !opt.host ? "*" : opt.host, port, &h, -1);
    if (rc < 0)
        return rc;
    weft_sock *s;
    if ((rc = weft_socket(&s, weft_addrinfo_family(ai), SOCK_DGRAM, 0)) == 0) {
        const weft_addr *a = weft_addrinfo_addr(ai);
        if ((rc = bind_it ? weft_bind(s, a) : weft_connect(s, a, 0)) < 0)
            weft_close(s);
        else
            *out = s;
    }
    weft_addrinfo_free(ai);
    return rc;
}

static int client(void)
{
    weft_sock *s;
    char why[256] = "";
    int rc, local;
    /* -w bounds the whole setup: lookup, connect and handshake. */
    if (opt.wait_ms >= 0)
        weft_deadline_set(weft_now() + opt.wait_ms);
    if (opt.path)
        rc = weft_unix_connect(&s, opt.path, -1);
    else if (opt.udp)
        rc = udp_open(&s, 0);
    else
        rc = weft_tcp_connect(&s, opt.host, opt.port, -1);
    const char *stage = "connect to";
    if (rc == 0 && opt.tls) {
        stage = "TLS handshake with";
        rc = tls_start(&s, -1, why, sizeof why);
    }
    weft_deadline_clear();
    if (rc < 0) {
        char what[480];
        snprintf(what, sizeof what, "%s %s", stage, where());
        report(what, rc, why);
        return 1;
    }
    tell("connected to", s, 1);
    if (opt.zero) {
        weft_close(s);
        return 0;
    }
    return session(s, &local) < 0;
}

static int listener(void)
{
    weft_sock *l;
    int rc, local;
    if (opt.path)
        rc = weft_unix_listen(&l, opt.path, 0);
    else if (opt.udp)
        rc = udp_open(&l, 1);
    else
        rc = weft_tcp_listen(&l, opt.host ? opt.host : "*", opt.port, 0, 0);
    if (rc < 0) {
        char what[480];
        snprintf(what, sizeof what, "listen on %s", where());
        report(what, rc, NULL);
        return 1;
    }
    if (opt.path && opt.path[0] != '@')
        unlink_path = opt.path;
    tell("listening on", l, 0);

    if (opt.udp) { /* the first sender is the peer from then on */
        weft_addr from;
        const char *stage = "receive";
        ssize_t n = weft_recvfrom(l, recv_buf, sizeof recv_buf, &from, -1);
        if (n >= 0) {
            stage = "connect to its sender";
            rc = weft_connect(l, &from, 0);
        } else
            rc = (int)n;
        if (rc == 0) {
            tell("datagram from", l, 1);
            stage = "stdout";
            rc = end_write(&out_end, recv_buf, stored(n));
        }
        if (rc < 0) {
            report(stage, rc, NULL);
            weft_close(l);
            return 1;
        }
        return session(l, &local) < 0;
    }

    for (;;) {
        weft_sock *c;
        char why[256] = "";
        if ((rc = weft_accept(l, &c, -1)) < 0) {
            report("accept", rc, NULL);
            break;
        }
        if (!opt.keep) { /* one connection: nobody else may come in meanwhile */
            weft_close(l);
            l = NULL;
            if (unlink_path)
                unlink(unlink_path);
            unlink_path = NULL;
        }
        tell("connection from", c, 1);
        if (opt.tls && (rc = tls_start(&c, opt.wait_ms >= 0 ? opt.wait_ms : HANDSHAKE_MS, why,
                                       sizeof why)) < 0) {
            report("TLS handshake", rc, why);
            if (!opt.keep)
                return 1;
            continue;
        }
        rc = session(c, &local);
        if (!opt.keep)
            return rc < 0;
        if (rc < 0 && local)
            break;
    }
    weft_close(l);
    return 1;
}

static int run(void *unused)
{
    (void)unused;
    int rc = opt.listen ? listener() : client();
    tls_free();
    return rc;
}

/* ---- options ---------------------------------------------------------------------------- */

static int usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "weft-cat: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(weft-cat -h lists the options)\n");
    return 2;
}

static int parse_port(const char *s, int min)
{
    char *end;
    long v = strtol(s, &end, 10);
    return *s && !*end && v >= min && v <= 65535 ? (int)v : -1;
}

static int64_t parse_secs(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    return *s && !*end && isfinite(v) && v >= 0 && v <= 1e9 ? (int64_t)llround(v * 1000) : -1;
}

static int parse(int argc, char **argv)
{
    enum { O_TLS = 256, O_CA, O_CERT, O_KEY, O_SERVERNAME, O_INSECURE, O_NO_SHUTDOWN };
    static const struct option longs[] = {
        {"tls", no_argument, NULL, O_TLS},
        {"ca", required_argument, NULL, O_CA},
        {"cert", required_argument, NULL, O_CERT},
        {"key", required_argument, NULL, O_KEY},
        {"servername", required_argument, NULL, O_SERVERNAME},
        {"insecure", no_argument, NULL, O_INSECURE},
        {"no-shutdown", no_argument, NULL, O_NO_SHUTDOWN},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":lkp:uUw:q:zvh", longs, NULL)) != -1) {
        switch (c) {
        case 'l': opt.listen = 1; break;
        case 'k': opt.keep = 1; break;
        case 'p':
            if ((opt.port = parse_port(optarg, 0)) < 0)
                return usage("-p: not a port: %s", optarg);
            break;
        case 'u': opt.udp = 1; break;
        case 'U': opt.path = ""; break;
        case 'w':
            if ((opt.wait_ms = parse_secs(optarg)) <= 0)
                return usage("-w: not a number of seconds above 0: %s", optarg);
            break;
        case 'q':
            if ((opt.quit_ms = parse_secs(optarg)) < 0)
                return usage("-q: not a number of seconds: %s", optarg);
            break;
        case 'z': opt.zero = 1; break;
        case 'v': opt.verbose = 1; break;
        case 'h': fputs(usage_text, stdout); exit(0);
        case O_TLS: opt.tls = 1; break;
        case O_CA: opt.ca = optarg; break;
        case O_CERT: opt.cert = optarg; break;
        case O_KEY: opt.key = optarg; break;
        case O_SERVERNAME: opt.servername = optarg; break;
        case O_INSECURE: opt.insecure = 1; break;
        case O_NO_SHUTDOWN: opt.no_shutdown = 1; break;
        case ':': return usage("%s needs a value", argv[optind - 1]);
        default: return usage("unknown option %s", argv[optind - 1]);
        }
    }
    char **pos = argv + optind;
    int npos = argc - optind;

    if (opt.keep && !opt.listen)
        return usage("%s-k needs -l", "");
    if (opt.zero && opt.listen)
        return usage("%s-z is for connecting, not -l", "");
    if (opt.port >= 0 && !opt.listen)
        return usage("%s-p is the port to listen on: it needs -l", "");
    if (opt.path) {
        if (opt.udp)
            return usage("%s-u and -U: datagram unix sockets are not supported", "");
        if (opt.port >= 0 || npos != 1)
            return usage("%s-U takes one PATH, and no port", "");
        opt.path = pos[0];
    } else if (opt.listen) {
        if (npos > 2 || (npos == 2 && opt.port >= 0) || (npos == 0 && opt.port < 0))
            return usage("%s-l takes [HOST] PORT, or -p PORT", "");
        if (npos == 2 || (npos == 1 && opt.port >= 0))
            opt.host = pos[0]; /* -l HOST PORT, -l -p PORT HOST */
        if (opt.port < 0 && (opt.port = parse_port(pos[npos - 1], 0)) < 0)
            return usage("not a port: %s", pos[npos - 1]);
    } else {
        if (npos != 2)
            return usage("%sHOST and PORT expected", "");
        opt.host = pos[0];
        if ((opt.port = parse_port(pos[1], 1)) < 0)
            return usage("not a port: %s", pos[1]);
    }
    if (opt.udp && opt.keep)
        return usage("%s-k is for TCP and unix listeners", "");
    if (opt.udp && opt.tls)
        return usage("%s--tls is for TCP and unix", "");
    if (!opt.tls && (opt.ca || opt.cert || opt.key || opt.servername || opt.insecure))
        return usage("%s--ca, --cert, --key, --servername and --insecure need --tls", "");
    if (opt.tls && opt.listen && !opt.cert)
        return usage("%s-l --tls needs --cert (and --key, unless it is in the same file)", "");
    if (opt.key && !opt.cert)
        return usage("%s--key needs --cert", "");
    if (opt.listen && (opt.insecure || opt.servername))
        return usage("%s--insecure and --servername are for clients", "");
    return 0;
}

int main(int argc, char **argv)
{
    int rc = parse(argc, argv);
    if (rc)
        return rc;
    /* A closed stdin reads as empty and a closed stdout discards; and the
     * descriptors weft opens never land on 0, 1 or 2. */
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", fd ? O_WRONLY : O_RDONLY) != fd)
            return 1;

    if (opt.tls && (rc = tls_setup()) != 0)
        return rc;

    const char *which = "stdin";
    if ((rc = end_open(&in_end, O_RDONLY)) == 0) {
        which = "stdout";
        rc = end_open(&out_end, O_WRONLY);
    }
    if (rc < 0) {
        ends_restore();
        report(which, rc, NULL);
        tls_free();
        return 1;
    }
    /* A reader that goes away is an error on stdout, not a silent death;
     * the flags we set go back on the signals that end a session. */
    signal(SIGPIPE, SIG_IGN);
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], on_signal);

    rc = weft_main(run, NULL, NULL);
    ends_restore();
    if (in_end.fd != in_end.orig)
        close(in_end.fd);
    if (out_end.fd != out_end.orig)
        close(out_end.fd);
    if (rc < 0) {
        report("weft_main", rc, NULL);
        return 1;
    }
    return rc;
}
