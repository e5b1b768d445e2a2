/*
 * test_unix.c - unix-domain sockets: addresses (paths, "@abstract" names,
 * names too long), stream echo over a path and over an abstract name, many
 * connections through a small backlog, connects that fail (missing path,
 * regular file, dead socket file), datagrams between bound and unbound
 * sockets (boundaries, truncation), socketpairs, passing descriptors
 * (SCM_RIGHTS: no leak, extra and truncated descriptors), accept/connect
 * timeouts, cancel and close under a waiting coroutine, fault injection,
 * and the same calls on a plain thread outside any coroutine.
 * Each test works in its own temporary directory, emptied and removed by
 * the test's fini even when it fails.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_LSAN 1
#endif
#endif
#ifdef HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* A pointer no weft call may store: "*out is untouched" on failure. */
#define UNTOUCHED ((weft_sock *)(uintptr_t)0x5eed)
#define MS 1000000LL

static void assert_no_leaks(void)
{
#ifdef HAVE_LSAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "LeakSanitizer found leaks (see above)");
#endif
}

/* ---- the test's temporary directory ------------------------------------------ */

static char tdir[64];

static void tdir_make(void)
{
    snprintf(tdir, sizeof tdir, "/tmp/weft-unix-XXXXXX");
    cr_assert_not_null(mkdtemp(tdir), "mkdtemp: %s", strerror(errno));
}

/* Removes whatever a failed test left, then the directory itself. */
static void tdir_remove(void)
{
    DIR *d = opendir(tdir);
    if (!d)
        return;
    struct dirent *e;
    char p[PATH_MAX];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", tdir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(tdir);
}

/* The directory must be empty at the end of a test: every path unlinked. */
static void tdir_assert_empty(void)
{
    cr_assert_eq(rmdir(tdir), 0, "%s: %s (a path was left behind)", tdir, strerror(errno));
}

static const char *tpath(const char *name)
{
    static char bufs[32][PATH_MAX]; /* callers keep a few at once */
    static int next;
    char *b = bufs[next++ % 32];
    snprintf(b, PATH_MAX, "%s/%s", tdir, name);
    return b;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static bool is_socket_file(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* An abstract name no other test or process uses. */
static const char *abstract_name(const char *what)
{
    static char buf[96];
    static int n;
    snprintf(buf, sizeof buf, "@weft-test-%d-%s-%d", (int)getpid(), what, n++);
    return buf;
}

static bool fd_cloexec(int fd)
{
    return (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
}

static bool fd_nonblocking(int fd)
{
    return (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
}

/* Sends one byte with n copies of fd attached, bypassing weft. */
static int send_n_fds(int sock, int fd, int n)
{
    char byte = 'x';
    struct iovec v = {&byte, 1};
    char ctl[CMSG_SPACE(sizeof(int) * 32)];
    memset(ctl, 0, sizeof ctl);
    struct msghdr m = {.msg_iov = &v,
                       .msg_iovlen = 1,
                       .msg_control = ctl,
                       .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++)
        memcpy(CMSG_DATA(c) + i * sizeof(int), &fd, sizeof fd);
    return sendmsg(sock, &m, MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

/* Fills a unix stream listener's backlog with raw connections nobody
 * accepts, so the next connect finds it full.  Returns how many. */
static int fill_backlog(const char *path, int *fds, int max)
{
    weft_addr a;
    cr_assert_eq(weft_addr_unix(&a, path), 0);
    for (int i = 0; i < max; i++) {
        fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        cr_assert_geq(fds[i], 0);
        if (connect(fds[i], &a.u.sa, a.len) != 0) {
            cr_assert_eq(errno, EAGAIN, "filling the backlog: %s", strerror(errno));
            close(fds[i]);
            return i;
        }
    }
    cr_assert_fail("the backlog never filled");
    return max;
}

static void close_all(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

/* ---- addresses ----------------------------------------------------------------- */

Test(unixsock, addr_path_and_abstract, .timeout = 30)
{
    const size_t off = offsetof(struct sockaddr_un, sun_path);
    weft_addr a;
    char buf[256];

    cr_assert_eq(weft_addr_unix(&a, "/tmp/x.sock"), 0);
    cr_assert_eq(a.u.un.sun_family, AF_UNIX);
    cr_assert_eq(a.len, off + strlen("/tmp/x.sock") + 1);
    cr_assert_str_eq(a.u.un.sun_path, "/tmp/x.sock");
    cr_assert_eq(weft_addr_format(&a, buf, sizeof buf), (int)strlen("/tmp/x.sock"));
    cr_assert_str_eq(buf, "/tmp/x.sock");

    /* Abstract: a leading NUL, and the length counts only the name. */
    cr_assert_eq(weft_addr_unix(&a, "@weft.name"), 0);
    cr_assert_eq(a.u.un.sun_path[0], '\0');
    cr_assert_eq(memcmp(a.u.un.sun_path + 1, "weft.name", 9), 0);
    cr_assert_eq(a.len, off + 1 + 9);
    cr_assert_eq(weft_addr_format(&a, buf, sizeof buf), 10);
    cr_assert_str_eq(buf, "@weft.name");

    /* A relative path is a path. */
    cr_assert_eq(weft_addr_unix(&a, "rel.sock"), 0);
    cr_assert_str_eq(a.u.un.sun_path, "rel.sock");
}

Test(unixsock, addr_limits, .timeout = 30)
{
    const size_t cap = sizeof(((struct sockaddr_un *)0)->sun_path); /* 108 on Linux */
    char p[512];
    weft_addr a, keep;
    memset(&keep, 0xa5, sizeof keep);

    /* A path fits with its terminator: cap - 1 bytes. */
    memset(p, 'p', cap - 1);
    p[cap - 1] = '\0';
    cr_assert_eq(weft_addr_unix(&a, p), 0);
    cr_assert_eq(strlen(a.u.un.sun_path), cap - 1);
    p[cap - 1] = 'p';
    p[cap] = '\0';
    a = keep;
    cr_assert_eq(weft_addr_unix(&a, p), -ENAMETOOLONG);
    cr_assert_eq(memcmp(&a, &keep, sizeof a), 0, "*out written on failure");
    memset(p, 'p', 300);
    p[300] = '\0';
    cr_assert_eq(weft_addr_unix(&a, p), -ENAMETOOLONG);

    /* An abstract name has no terminator: cap - 1 bytes after the '@'. */
    p[0] = '@';
    memset(p + 1, 'n', cap - 1);
    p[cap] = '\0';
    cr_assert_eq(weft_addr_unix(&a, p), 0);
    cr_assert_eq(a.len, offsetof(struct sockaddr_un, sun_path) + cap);
    p[cap] = 'n';
    p[cap + 1] = '\0';
    cr_assert_eq(weft_addr_unix(&a, p), -ENAMETOOLONG);

    a = keep;
    cr_assert_eq(weft_addr_unix(&a, ""), -EINVAL);
    cr_assert_eq(weft_addr_unix(&a, "@"), -EINVAL);
    cr_assert_eq(weft_addr_unix(&a, NULL), -EINVAL);
    cr_assert_eq(weft_addr_unix(NULL, "/tmp/x"), -EINVAL);
    cr_assert_eq(memcmp(&a, &keep, sizeof a), 0, "*out written on failure");
}

/* RELIABILITY #34: too long a path is -ENAMETOOLONG from every call. */
Test(unixsock, path_too_long, .init = tdir_make, .fini = tdir_remove, .timeout = 30)
{
    char p[400];
    int n = snprintf(p, sizeof p, "%s/", tdir);
    memset(p + n, 'l', 200);
    p[n + 200] = '\0';
    int fds = count_fds();
    weft_sock *s = UNTOUCHED;
    cr_assert_eq(weft_unix_listen(&s, p, 0), -ENAMETOOLONG);
    cr_assert_eq(weft_unix_connect(&s, p, 1000), -ENAMETOOLONG);
    cr_assert_eq(weft_unix_dgram_open(&s, p), -ENAMETOOLONG);
    cr_assert_eq(s, UNTOUCHED);
    cr_assert_eq(count_fds(), fds);
    tdir_assert_empty();
}

/* ---- stream echo ------------------------------------------------------------------ */

typedef struct echo_run {
    const char *name;
    int listen_rc, connect_rc, accept_rc;
    int rounds_ok, srv_eof;
    char local[160], peer[160];
    bool in_co;
} echo_run;

#define ECHO_ROUNDS 40

static void echo_conn(void *arg)
{
    weft_sock *c = arg;
    char buf[16384];
    ssize_t n;
    while ((n = weft_recv(c, buf, sizeof buf, 5000)) > 0)
        if (weft_send(c, buf, (size_t)n, 5000) != n)
            break;
    weft_close(c);
}

static void echo_server(void *arg)
{
    weft_sock *l = arg;
    weft_sock *c;
    if (weft_unix_accept(l, &c, 5000) == 0)
        echo_conn(c);
}

static void echo_client(echo_run *r)
{
    weft_sock *c = UNTOUCHED;
    r->connect_rc = weft_unix_connect(&c, r->name, 5000);
    if (r->connect_rc < 0)
        return;
    weft_addr pa;
    if (weft_sock_peer(c, &pa) == 0)
        weft_addr_format(&pa, r->peer, sizeof r->peer);
    static unsigned char out[9000], in[9000];
    for (int i = 0; i < ECHO_ROUNDS; i++) {
        size_t n = 1 + (size_t)i * 211 % sizeof out;
        fill_pattern(out, n, (uint64_t)i);
        if (weft_send(c, out, n, 5000) != (ssize_t)n)
            break;
        if (weft_recvn(c, in, n, 5000) != (ssize_t)n || memcmp(in, out, n) != 0)
            break;
        r->rounds_ok++;
    }
    weft_close(c);
}

static int echo_main(void *arg)
{
    echo_run *r = arg;
    weft_sock *l;
    r->listen_rc = weft_unix_listen(&l, r->name, 0);
    if (r->listen_rc < 0)
        return 0;
    weft_addr la;
    if (weft_sock_local(l, &la) == 0)
        weft_addr_format(&la, r->local, sizeof r->local);
    int64_t id = weft_go(echo_server, l);
    echo_client(r);
    weft_join(id, 5000);
    weft_close(l);
    return 0;
}

static void check_echo(echo_run *r)
{
    cr_assert_eq(r->listen_rc, 0, "listen: %s", weft_err_name(r->listen_rc));
    cr_assert_eq(r->connect_rc, 0, "connect: %s", weft_err_name(r->connect_rc));
    cr_assert_eq(r->rounds_ok, ECHO_ROUNDS);
    cr_assert_str_eq(r->local, r->name);
    cr_assert_str_eq(r->peer, r->name);
}

Test(unixsock, echo_over_path, .init = tdir_make, .fini = tdir_remove, .timeout = 60)
{
    int fds = count_fds();
    echo_run r = {.name = tpath("echo.sock")};
    cr_assert_eq(weft_main(echo_main, &r, NULL), 0);
    check_echo(&r);
    /* Closing the listener does not unlink its file. */
    cr_assert(is_socket_file(r.name));
    cr_assert_eq(unlink(r.name), 0);
    cr_assert_eq(count_fds(), fds);
    tdir_assert_empty();
}

Test(unixsock, echo_over_abstract_name, .timeout = 60)
{
    int fds = count_fds();
    char name[96];
    snprintf(name, sizeof name, "%s", abstract_name("echo"));
    echo_run r = {.name = name};
    cr_assert_eq(weft_main(echo_main, &r, NULL), 0);
    check_echo(&r);
    /* An abstract name goes away with its socket. */
    weft_sock *c = UNTOUCHED;
    cr_assert_eq(weft_unix_connect(&c, name, 1000), -ECONNREFUSED);
    cr_assert_eq(c, UNTOUCHED);
    cr_assert_eq(count_fds(), fds);
}

/* ---- many connections through a small backlog ----------------------------------- */

#define MANY 200

typedef struct many_run {
    const char *path;
    weft_sock *l;
    int accepted, ok, failed, first_err;
} many_run;

static void many_acceptor(void *arg)
{
    many_run *r = arg;
    for (int i = 0; i < MANY; i++) {
        weft_sock *c;
        int rc = weft_unix_accept(r->l, &c, 10000);
        if (rc < 0)
            break;
        r->accepted++;
        weft_go(echo_conn, c);
    }
}

static void many_client(void *arg)
{
    many_run *r = arg;
    weft_sock *c;
    int rc = weft_unix_connect(&c, r->path, 10000);
    if (rc == 0) {
        uint64_t v = (uint64_t)weft_self(), back = 0;
        if (weft_send(c, &v, sizeof v, 10000) == sizeof v &&
            weft_recvn(c, &back, sizeof back, 10000) == sizeof back && back == v) {
            r->ok++;
        } else {
            r->failed++;
        }
        weft_close(c);
    } else {
        if (!r->first_err)
            r->first_err = rc;
        r->failed++;
    }
}

static int many_main(void *arg)
{
    many_run *r = arg;
    /* Backlog 4: most connects find it full and must wait for room. */
    if ((r->first_err = weft_unix_listen(&r->l, r->path, 4)) < 0)
        return 0;
    int64_t acc = weft_go(many_acceptor, r);
    int64_t ids[MANY];
    for (int i = 0; i < MANY; i++)
        ids[i] = weft_go(many_client, r);
    for (int i = 0; i < MANY; i++)
        weft_join(ids[i], -1);
    weft_join(acc, -1);
    weft_close(r->l);
    return 0;
}

Test(unixsock, many_connections_small_backlog, .init = tdir_make, .fini = tdir_remove,
     .timeout = 180)
{
    int fds = count_fds();
    many_run r = {.path = tpath("many.sock")};
    weft_fault_clear(); /* zeroes the syscall counters */
    cr_assert_eq(weft_main(many_main, &r, NULL), 0);
    /* More connect() calls than clients: the full backlog was met and
     * retried, not just lucky timing. */
    cr_assert_gt(weft_fault_calls(WEFT_FAULT_CONNECT), MANY, "%lu connect calls",
                 weft_fault_calls(WEFT_FAULT_CONNECT));
    cr_assert_eq(r.first_err, 0, "%s", weft_err_name(r.first_err));
    cr_assert_eq(r.accepted, MANY);
    cr_assert_eq(r.ok, MANY, "%d ok, %d failed", r.ok, r.failed);
    cr_assert_eq(unlink(r.path), 0);
    cr_assert_eq(count_fds(), fds);
    tdir_assert_empty();
}

/* ---- connects that fail --------------------------------------------------------------- */

typedef struct cerr_run {
    int missing, missing_dir, regular, directory, dead, bound_only, stale_listen, untouched;
} cerr_run;

static int cerr_main(void *arg)
{
    cerr_run *r = arg;
    weft_sock *s = UNTOUCHED;
    r->missing = weft_unix_connect(&s, tpath("missing.sock"), 1000);
    r->missing_dir = weft_unix_connect(&s, tpath("no-such-dir/x.sock"), 1000);
    r->regular = weft_unix_connect(&s, tpath("regular"), 1000);
    r->directory = weft_unix_connect(&s, tpath("dir"), 1000);
    r->dead = weft_unix_connect(&s, tpath("dead.sock"), 1000);
    r->bound_only = weft_unix_connect(&s, tpath("bound.sock"), 1000);
    /* A stale socket file is not removed for a new listener. */
    r->stale_listen = weft_unix_listen(&s, tpath("dead.sock"), 0);
    r->untouched = s == UNTOUCHED;
    return 0;
}

static void check_cerr(const cerr_run *r)
{
    cr_assert_eq(r->missing, -ENOENT, "missing: %s", weft_err_name(r->missing));
    cr_assert_eq(r->missing_dir, -ENOENT, "missing dir: %s", weft_err_name(r->missing_dir));
    cr_assert_eq(r->regular, -ECONNREFUSED, "regular file: %s", weft_err_name(r->regular));
    cr_assert_eq(r->directory, -ECONNREFUSED, "directory: %s", weft_err_name(r->directory));
    cr_assert_eq(r->dead, -ECONNREFUSED, "dead socket file: %s", weft_err_name(r->dead));
    cr_assert_eq(r->bound_only, -ECONNREFUSED, "not listening: %s", weft_err_name(r->bound_only));
    cr_assert_eq(r->stale_listen, -EADDRINUSE, "stale file: %s", weft_err_name(r->stale_listen));
    cr_assert(r->untouched, "*out written on failure");
}

Test(unixsock, connect_errors, .init = tdir_make, .fini = tdir_remove, .timeout = 60)
{
    int f = open(tpath("regular"), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    cr_assert_geq(f, 0);
    close(f);
    cr_assert_eq(mkdir(tpath("dir"), 0700), 0);
    /* A listener closed without unlinking leaves a dead socket file. */
    weft_sock *l, *b;
    cr_assert_eq(weft_unix_listen(&l, tpath("dead.sock"), 0), 0);
    weft_close(l);
    cr_assert(is_socket_file(tpath("dead.sock")));
    /* A live socket bound to a path but not listening. */
    weft_addr a;
    cr_assert_eq(weft_socket(&b, AF_UNIX, SOCK_STREAM, 0), 0);
    cr_assert_eq(weft_addr_unix(&a, tpath("bound.sock")), 0);
    cr_assert_eq(weft_bind(b, &a), 0);

    int fds = count_fds();
    cerr_run r = {0};
    cr_assert_eq(weft_main(cerr_main, &r, NULL), 0);
    check_cerr(&r);
    /* Outside any coroutine. */
    memset(&r, 0, sizeof r);
    cerr_main(&r);
    check_cerr(&r);
    cr_assert_eq(count_fds(), fds);

    weft_close(b);
    cr_assert_eq(unlink(tpath("bound.sock")), 0);
    cr_assert_eq(unlink(tpath("dead.sock")), 0);
    cr_assert_eq(unlink(tpath("regular")), 0);
    cr_assert_eq(rmdir(tpath("dir")), 0);
    tdir_assert_empty();
}

Test(unixsock, accept_argument_checks, .init = tdir_make, .fini = tdir_remove, .timeout = 30)
{
    weft_sock *p[2], *c = UNTOUCHED;
    cr_assert_eq(weft_socketpair(p, SOCK_STREAM), 0);
    cr_assert_eq(weft_unix_accept(p[0], &c, 0), -EINVAL);
    cr_assert_eq(weft_unix_accept(NULL, &c, 0), -EBADF);
    cr_assert_eq(c, UNTOUCHED);
    weft_close(p[0]);
    weft_close(p[1]);
    cr_assert_eq(weft_unix_listen(NULL, tpath("x.sock"), 0), -EINVAL);
    cr_assert_eq(weft_unix_connect(NULL, tpath("x.sock"), 0), -EINVAL);
    cr_assert_eq(weft_unix_dgram_open(NULL, tpath("x.sock")), -EINVAL);
    cr_assert_eq(weft_unix_listen(&c, "", 0), -EINVAL);
    cr_assert_eq(weft_unix_connect(&c, NULL, 0), -EINVAL);
    cr_assert_eq(c, UNTOUCHED);
    tdir_assert_empty();
}

/* ---- datagrams ------------------------------------------------------------------------- */

typedef struct dg_run {
    const char *pa, *pb;
    int open_rc;
    ssize_t sizes_got[4];
    int sizes_ok, from_ok;
    ssize_t trunc_rc;
    int trunc_prefix_ok;
    ssize_t reply_rc, reply_got;
    ssize_t unbound_send, unbound_recv;
    socklen_t unbound_from_len;
    ssize_t empty_rc;
    int unbound_bind_rc;
} dg_run;

static const size_t dg_sizes[4] = {1, 100, 3000, 60000};

static int dgram_main(void *arg)
{
    dg_run *r = arg;
    weft_sock *a, *b, *u;
    if ((r->open_rc = weft_unix_dgram_open(&a, r->pa)) < 0)
        return 0;
    if ((r->open_rc = weft_unix_dgram_open(&b, r->pb)) < 0) {
        weft_close(a);
        return 0;
    }
    if ((r->open_rc = weft_unix_dgram_open(&u, NULL)) < 0) {
        weft_close(a);
        weft_close(b);
        return 0;
    }
    weft_addr to_b;
    weft_addr_unix(&to_b, r->pb);
    static unsigned char out[65536], in[65536];

    /* Boundaries: four datagrams queued, each comes out whole and alone. */
    weft_addr from;
    for (int i = 0; i < 4; i++) {
        fill_pattern(out, dg_sizes[i], (uint64_t)i);
        weft_sendto(a, out, dg_sizes[i], &to_b, 2000);
    }
    for (int i = 0; i < 4; i++) {
        memset(&from, 0, sizeof from);
        ssize_t n = weft_recvfrom(b, in, sizeof in, &from, 2000);
        r->sizes_got[i] = n;
        fill_pattern(out, dg_sizes[i], (uint64_t)i);
        if (n == (ssize_t)dg_sizes[i] && memcmp(in, out, dg_sizes[i]) == 0)
            r->sizes_ok++;
        char fs[160];
        if (weft_addr_format(&from, fs, sizeof fs) > 0 && strcmp(fs, r->pa) == 0)
            r->from_ok++;
    }
    /* Truncation: the full length comes back, only the prefix is stored. */
    fill_pattern(out, 1000, 77);
    weft_sendto(a, out, 1000, &to_b, 2000);
    memset(in, 0, 16);
    r->trunc_rc = weft_recvfrom(b, in, 10, NULL, 2000);
    r->trunc_prefix_ok = memcmp(in, out, 10) == 0 && in[10] == 0;
    /* Reply to the address the datagrams came from. */
    r->reply_rc = weft_sendto(b, "pong", 4, &from, 2000);
    r->reply_got = weft_recvfrom(a, in, sizeof in, NULL, 2000);
    /* An empty datagram is 0, not end of stream. */
    weft_sendto(a, "", 0, &to_b, 2000);
    r->empty_rc = weft_recvfrom(b, in, sizeof in, NULL, 2000);
    /* From an unbound socket: arrives, its sender has no name. */
    r->unbound_send = weft_sendto(u, "anon", 4, &to_b, 2000);
    memset(&from, 0xff, sizeof from);
    r->unbound_recv = weft_recvfrom(b, in, sizeof in, &from, 2000);
    r->unbound_from_len = from.len;
    weft_close(u);
    weft_close(b);
    weft_close(a);
    return 0;
}

Test(unixsock, dgram_bound_and_unbound, .init = tdir_make, .fini = tdir_remove, .timeout = 60)
{
    int fds = count_fds();
    dg_run r = {.pa = tpath("a.sock"), .pb = tpath("b.sock")};
    cr_assert_eq(weft_main(dgram_main, &r, NULL), 0);
    cr_assert_eq(r.open_rc, 0, "%s", weft_err_name(r.open_rc));
    for (int i = 0; i < 4; i++)
        cr_expect_eq(r.sizes_got[i], (ssize_t)dg_sizes[i], "datagram %d: %zd bytes", i,
                     r.sizes_got[i]);
    cr_assert_eq(r.sizes_ok, 4);
    cr_assert_eq(r.from_ok, 4);
    cr_assert_eq(r.trunc_rc, 1000, "truncation: %zd", r.trunc_rc);
    cr_assert(r.trunc_prefix_ok);
    cr_assert_eq(r.reply_rc, 4);
    cr_assert_eq(r.reply_got, 4);
    cr_assert_eq(r.empty_rc, 0);
    cr_assert_eq(r.unbound_send, 4);
    cr_assert_eq(r.unbound_recv, 4);
    /* Linux gives an unbound sender no address at all (length 0); at most
     * the family would fit in this length, never a name. */
    cr_assert_leq(r.unbound_from_len, offsetof(struct sockaddr_un, sun_path),
                  "an unbound sender has no name, got length %u", (unsigned)r.unbound_from_len);
    cr_assert_eq(count_fds(), fds);
    /* Bound datagram sockets leave their files too. */
    cr_assert(is_socket_file(r.pa) && is_socket_file(r.pb));
    cr_assert_eq(unlink(r.pa), 0);
    cr_assert_eq(unlink(r.pb), 0);
    tdir_assert_empty();
}

Test(unixsock, dgram_open_errors, .init = tdir_make, .fini = tdir_remove, .timeout = 30)
{
    int fds = count_fds();
    weft_sock *a, *b = UNTOUCHED;
    cr_assert_eq(weft_unix_dgram_open(&a, tpath("d.sock")), 0);
    cr_assert_eq(weft_unix_dgram_open(&b, tpath("d.sock")), -EADDRINUSE);
    cr_assert_eq(weft_unix_dgram_open(&b, tpath("nodir/d.sock")), -ENOENT);
    cr_assert_eq(b, UNTOUCHED);
    /* Nobody at the address: the send fails at once, it does not wait. */
    weft_addr nobody;
    cr_assert_eq(weft_addr_unix(&nobody, tpath("nobody.sock")), 0);
    cr_assert_eq(weft_sendto(a, "x", 1, &nobody, 1000), -ENOENT);
    weft_close(a);
    cr_assert_eq(unlink(tpath("d.sock")), 0);
    cr_assert_eq(count_fds(), fds);
    tdir_assert_empty();
}

/* ---- socketpairs ------------------------------------------------------------------------- */

Test(unixsock, socketpair_stream, .timeout = 30)
{
    int fds = count_fds();
    weft_sock *p[2];
    cr_assert_eq(weft_socketpair(p, SOCK_STREAM), 0);
    for (int i = 0; i < 2; i++) {
        cr_assert(fd_nonblocking(weft_sock_fd(p[i])));
        cr_assert(fd_cloexec(weft_sock_fd(p[i])));
    }
    char buf[16];
    cr_assert_eq(weft_send(p[0], "hello", 5, 1000), 5);
    cr_assert_eq(weft_send(p[0], "world", 5, 1000), 5);
    cr_assert_eq(weft_recvn(p[1], buf, 10, 1000), 10); /* a stream: no boundaries */
    cr_assert_eq(memcmp(buf, "helloworld", 10), 0);
    cr_assert_eq(weft_send(p[1], "back", 4, 1000), 4);
    cr_assert_eq(weft_recv(p[0], buf, sizeof buf, 1000), 4);
    cr_assert_eq(weft_recv(p[0], buf, sizeof buf, 50), -ETIMEDOUT);
    weft_close(p[1]);
    cr_assert_eq(weft_recv(p[0], buf, sizeof buf, 1000), 0);
    cr_assert_eq(weft_send(p[0], "x", 1, 1000), -EPIPE);
    weft_close(p[0]);
    cr_assert_eq(count_fds(), fds);
}

Test(unixsock, socketpair_dgram, .timeout = 30)
{
    int fds = count_fds();
    weft_sock *p[2];
    cr_assert_eq(weft_socketpair(p, SOCK_DGRAM), 0);
    char buf[64];
    cr_assert_eq(weft_send(p[0], "one", 3, 1000), 3);
    cr_assert_eq(weft_send(p[0], "two!", 4, 1000), 4);
    cr_assert_eq(weft_send(p[0], "", 0, 1000), 0);
    cr_assert_eq(weft_send(p[0], "a long datagram", 15, 1000), 15);
    cr_assert_eq(weft_recv(p[1], buf, sizeof buf, 1000), 3);
    cr_assert_eq(memcmp(buf, "one", 3), 0);
    cr_assert_eq(weft_recv(p[1], buf, sizeof buf, 1000), 4);
    cr_assert_eq(memcmp(buf, "two!", 4), 0);
    /* weft_send of 0 bytes on a datagram socket sends an empty datagram,
     * as weft_sendto does; then the long one, truncated to 6 and reported
     * whole. */
    cr_assert_eq(weft_recv(p[1], buf, sizeof buf, 1000), 0);
    cr_assert_eq(weft_recv(p[1], buf, 6, 1000), 15);
    cr_assert_eq(memcmp(buf, "a long", 6), 0);
    cr_assert_eq(weft_recv(p[1], buf, sizeof buf, 50), -ETIMEDOUT);
    cr_assert_eq(weft_recvn(p[1], buf, 4, 50), -EINVAL);
    weft_close(p[0]);
    weft_close(p[1]);
    cr_assert_eq(count_fds(), fds);
}

Test(unixsock, socketpair_bad_type, .timeout = 30)
{
    int fds = count_fds();
    weft_sock *p[2] = {UNTOUCHED, UNTOUCHED};
    const int bad[] = {
        0, SOCK_SEQPACKET, SOCK_RAW, SOCK_STREAM | SOCK_NONBLOCK, SOCK_DGRAM | SOCK_CLOEXEC, -1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(weft_socketpair(p, bad[i]), -EINVAL, "type %d", bad[i]);
    cr_assert_eq(weft_socketpair(NULL, SOCK_STREAM), -EINVAL);
    cr_assert(p[0] == UNTOUCHED && p[1] == UNTOUCHED);
    cr_assert_eq(count_fds(), fds);
}

/* ---- passing descriptors ------------------------------------------------------------ */

typedef struct fdp_run {
    weft_sock *tx, *rx;
    int pass_fd; /* the descriptor to pass */
    int send_rc, recv_rc, got;
    bool got_cloexec;
    ssize_t wrote;
} fdp_run;

static void fdp_receiver(void *arg)
{
    fdp_run *r = arg;
    r->recv_rc = weft_recv_fd(r->rx, &r->got, 5000);
    if (r->recv_rc == 1) {
        r->got_cloexec = fd_cloexec(r->got);
        r->wrote = write(r->got, "through", 7);
        close(r->got);
    }
}

static int fdp_main(void *arg)
{
    fdp_run *r = arg;
    int64_t id = weft_go(fdp_receiver, r);
    weft_sleep(50); /* the receiver waits first */
    r->send_rc = weft_send_fd(r->tx, r->pass_fd, 5000);
    weft_join(id, -1);
    return 0;
}

/* Passes a pipe's write end from tx to rx, writes through the received
 * copy, reads at the pipe's other end; then proves no copy stayed open. */
static void pass_pipe(weft_sock *tx, weft_sock *rx, bool in_co)
{
    int pfd[2];
    cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
    int fds = count_fds();
    fdp_run r = {.tx = tx, .rx = rx, .pass_fd = pfd[1], .got = -1};
    if (in_co) {
        cr_assert_eq(weft_main(fdp_main, &r, NULL), 0);
    } else {
        r.send_rc = weft_send_fd(tx, pfd[1], 5000);
        fdp_receiver(&r);
    }
    cr_assert_eq(r.send_rc, 0, "send_fd: %s", weft_err_name(r.send_rc));
    cr_assert_eq(r.recv_rc, 1, "recv_fd: %s", weft_err_name(r.recv_rc));
    cr_assert(r.got_cloexec);
    cr_assert_eq(r.wrote, 7);
    char buf[16];
    cr_assert_eq(read(pfd[0], buf, sizeof buf), 7);
    cr_assert_eq(memcmp(buf, "through", 7), 0);
    cr_assert_eq(count_fds(), fds);
    /* The sender's own fd is still its own... */
    cr_assert_eq(write(pfd[1], "x", 1), 1);
    cr_assert_eq(read(pfd[0], buf, sizeof buf), 1);
    /* ...and once it is closed the reader sees EOF: no copy leaked. */
    close(pfd[1]);
    cr_assert_eq(read(pfd[0], buf, sizeof buf), 0);
    close(pfd[0]);
}

Test(unixsock, pass_fd_socketpair_stream, .timeout = 60)
{
    int fds = count_fds();
    weft_sock *p[2];
    cr_assert_eq(weft_socketpair(p, SOCK_STREAM), 0);
    pass_pipe(p[0], p[1], true);
    pass_pipe(p[1], p[0], false);
    weft_close(p[0]);
    weft_close(p[1]);
    cr_assert_eq(count_fds(), fds);
}

Test(unixsock, pass_fd_socketpair_dgram, .timeout = 60)
{
    int fds = count_fds();
    weft_sock *p[2];
    cr_assert_eq(weft_socketpair(p, SOCK_DGRAM), 0);
    pass_pipe(p[0], p[1], true);
    pass_pipe(p[1], p[0], false);
    weft_close(p[0]);
    weft_close(p[1]);
    cr_assert_eq(count_fds(), fds);
}

typedef struct conn_pair {
    const char *path;
    weft_sock *c, *s;
    int rc;
} conn_pair;

static int conn_pair_main(void *arg)
{
    conn_pair *cp = arg;
    weft_sock *l;
    if ((cp->rc = weft_unix_listen(&l, cp->path, 0)) < 0)
        return 0;
    if ((cp->rc = weft_unix_connect(&cp->c, cp->path, 2000)) == 0 &&
        (cp->rc = weft_unix_accept(l, &cp->s, 2000)) < 0)
        weft_close(cp->c);
    weft_close(l);
    unlink(cp->path);
    return 0;
}

Test(unixsock, pass_fd_over_path_connection, .init = tdir_make, .fini = tdir_remove, .timeout = 60)
{
    int fds = count_fds();
    conn_pair cp = {.path = tpath("fd.sock")};
    cr_assert_eq(weft_main(conn_pair_main, &cp, NULL), 0);
    cr_assert_eq(cp.rc, 0, "%s", weft_err_name(cp.rc));
    pass_pipe(cp.c, cp.s, true);
    pass_pipe(cp.s, cp.c, false);
    /* Data and descriptors interleave in order on a stream. */
    int pfd[2], got = -1;
    char buf[8];
    cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
    cr_assert_eq(weft_send(cp.c, "ab", 2, 1000), 2);
    cr_assert_eq(weft_send_fd(cp.c, pfd[0], 1000), 0);
    cr_assert_eq(weft_recvn(cp.s, buf, 2, 1000), 2);
    cr_assert_eq(memcmp(buf, "ab", 2), 0);
    cr_assert_eq(weft_recv_fd(cp.s, &got, 1000), 1);
    cr_assert_eq(write(pfd[1], "z", 1), 1);
    cr_assert_eq(read(got, buf, 1), 1, "the received read end reads the pipe");
    cr_assert_eq(buf[0], 'z');
    close(got);
    close(pfd[0]);
    close(pfd[1]);
    weft_close(cp.c);
    weft_close(cp.s);
    cr_assert_eq(count_fds(), fds);
    tdir_assert_empty();
}

Test(unixsock, recv_fd_odd_messages, .timeout = 60)
{
    int fds = count_fds();
    weft_sock *p[2];
    cr_assert_eq(weft_socketpair(p, SOCK_STREAM), 0);
    int tx = weft_sock_fd(p[0]);
    int pfd[2], got = -77;
    char buf[8];
    cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
    int base = count_fds();

    /* A byte without a descriptor. */
    cr_assert_eq(weft_send(p[0], "x", 1, 1000), 1);
    cr_assert_eq(weft_recv_fd(p[1], &got, 1000), -EBADMSG);
    cr_assert_eq(got, -77);

    /* Two descriptors in one message: both closed, reported. */
    cr_assert_eq(send_n_fds(tx, pfd[1], 2), 0);
    cr_assert_eq(weft_recv_fd(p[1], &got, 1000), -EBADMSG);
    cr_assert_eq(got, -77);
    cr_assert_eq(count_fds(), base, "received descriptors leaked");

    /* More than fit the receive buffer: the kernel cuts the control data
     * (MSG_CTRUNC) and drops the rest; the ones that came are closed. */
    cr_assert_eq(send_n_fds(tx, pfd[1], 20), 0);
    cr_assert_eq(weft_recv_fd(p[1], &got, 1000), -EBADMSG);
    cr_assert_eq(got, -77);
    cr_assert_eq(count_fds(), base, "received descriptors leaked");

    /* Nothing at all was kept: closing ours gives the reader EOF. */
    close(pfd[1]);
    cr_assert_eq(read(pfd[0], buf, sizeof buf), 0);
    close(pfd[0]);

    /* Still a usable socket afterwards. */
    cr_assert_eq(weft_send_fd(p[0], 0, 1000), 0);
    cr_assert_eq(weft_recv_fd(p[1], &got, 1000), 1);
    close(got);

    /* Nothing sent: times out; peer gone: 0. */
    int64_t t0 = mono_ns();
    cr_assert_eq(weft_recv_fd(p[1], &got, 100), -ETIMEDOUT);
    cr_assert_geq(mono_ns() - t0, 90 * MS);
    weft_close(p[0]);
    cr_assert_eq(weft_recv_fd(p[1], &got, 1000), 0);
    weft_close(p[1]);
    cr_assert_eq(count_fds(), fds);
}

Test(unixsock, send_fd_errors, .timeout = 60)
{
    int fds = count_fds();
    weft_sock *p[2];
    cr_assert_eq(weft_socketpair(p, SOCK_STREAM), 0);
    int closed = dup(0);
    cr_assert_geq(closed, 0);
    close(closed);
    cr_assert_eq(weft_send_fd(p[0], -1, 1000), -EBADF);
    cr_assert_eq(weft_send_fd(p[0], closed, 1000), -EBADF);
    cr_assert_eq(weft_send_fd(NULL, 0, 1000), -EBADF);
    int got;
    cr_assert_eq(weft_recv_fd(NULL, &got, 0), -EBADF);
    cr_assert_eq(weft_recv_fd(p[1], NULL, 0), -EINVAL);
    weft_close(p[1]);
    cr_assert_eq(weft_send_fd(p[0], 0, 1000), -EPIPE);
    weft_close(p[0]);

    /* A datagram pair whose peer is gone refuses the send; its receive
     * sees no end of file, so it waits out its timeout. */
    cr_assert_eq(weft_socketpair(p, SOCK_DGRAM), 0);
    weft_close(p[1]);
    int64_t t0 = mono_ns();
    cr_assert_eq(weft_recv_fd(p[0], &got, 100), -ETIMEDOUT);
    cr_assert_geq(mono_ns() - t0, 95 * MS);
    cr_assert_eq(weft_send_fd(p[0], 0, 1000), -ECONNREFUSED);
    weft_close(p[0]);

    /* Not a unix socket: TCP would carry the byte and drop the descriptor. */
    weft_sock *a, *b;
    cr_assert_eq(make_pair(&a, &b), 0);
    cr_assert_eq(weft_send_fd(a, 0, 1000), -EINVAL);
    weft_close(a);
    weft_close(b);
    cr_assert_eq(count_fds(), fds);
}

/* ---- timeouts ---------------------------------------------------------------------------- */

typedef struct to_run {
    const char *path;
    int accept_rc, connect_rc;
    int64_t accept_ms, connect_ms;
    weft_sock *l;
    int nfill;
    int fill[64];
} to_run;

static void timeouts_body(to_run *r)
{
    weft_sock *c = UNTOUCHED;
    int64_t t0 = mono_ns();
    r->accept_rc = weft_unix_accept(r->l, &c, 200);
    r->accept_ms = (mono_ns() - t0) / MS;
    t0 = mono_ns();
    r->connect_rc = weft_unix_connect(&c, r->path, 300);
    r->connect_ms = (mono_ns() - t0) / MS;
    if (c != UNTOUCHED)
        r->connect_rc = 1000; /* *out written on failure */
}

static int timeouts_main(void *arg)
{
    timeouts_body(arg);
    return 0;
}

static void check_timeouts(const to_run *r)
{
    cr_assert_eq(r->accept_rc, -ETIMEDOUT, "accept: %s", weft_err_name(r->accept_rc));
    cr_assert(r->accept_ms >= 195 && r->accept_ms < 1000, "accept took %lld ms",
              (long long)r->accept_ms);
    cr_assert_eq(r->connect_rc, -ETIMEDOUT, "connect: %s", weft_err_name(r->connect_rc));
    cr_assert(r->connect_ms >= 295 && r->connect_ms < 1200, "connect took %lld ms",
              (long long)r->connect_ms);
}

Test(unixsock, accept_and_connect_timeouts, .init = tdir_make, .fini = tdir_remove, .timeout = 90)
{
    int fds = count_fds();
    /* An empty listener for accept to wait on, a full one for connect. */
    to_run r = {.path = tpath("full.sock")};
    weft_sock *full;
    cr_assert_eq(weft_unix_listen(&full, r.path, 1), 0);
    r.nfill = fill_backlog(r.path, r.fill, 64);
    cr_assert_eq(weft_unix_listen(&r.l, tpath("empty.sock"), 0), 0);
    to_run run = r;
    cr_assert_eq(weft_main(timeouts_main, &run, NULL), 0);
    check_timeouts(&run);
    /* Outside any coroutine: poll() and the back-off sleep the thread. */
    run = r;
    timeouts_body(&run);
    check_timeouts(&run);
    weft_close(r.l);
    close_all(r.fill, r.nfill);
    weft_close(full);
    cr_assert_eq(count_fds(), fds);
    cr_assert_eq(unlink(tpath("empty.sock")), 0);
    cr_assert_eq(unlink(r.path), 0);
    tdir_assert_empty();
}

/* A connect that finds the backlog full waits, and gets in once the
 * server accepts. */
typedef struct room_run {
    const char *path;
    weft_sock *l;
    int connect_rc, accept_rc;
    int64_t connect_ms;
} room_run;

static void room_acceptor(void *arg)
{
    room_run *r = arg;
    weft_sleep(150);
    weft_sock *c;
    r->accept_rc = weft_unix_accept(r->l, &c, 1000);
    if (r->accept_rc == 0)
        weft_close(c);
}

static int room_main(void *arg)
{
    room_run *r = arg;
    weft_go(room_acceptor, r);
    weft_sock *c;
    int64_t t0 = mono_ns();
    r->connect_rc = weft_unix_connect(&c, r->path, 5000);
    r->connect_ms = (mono_ns() - t0) / MS;
    if (r->connect_rc == 0)
        weft_close(c);
    return 0;
}

Test(unixsock, connect_waits_for_room, .init = tdir_make, .fini = tdir_remove, .timeout = 90)
{
    int fds = count_fds();
    room_run r = {.path = tpath("room.sock")};
    cr_assert_eq(weft_unix_listen(&r.l, r.path, 1), 0);
    int fill[64];
    int n = fill_backlog(r.path, fill, 64);
    cr_assert_eq(weft_main(room_main, &r, NULL), 0);
    cr_assert_eq(r.accept_rc, 0);
    cr_assert_eq(r.connect_rc, 0, "%s", weft_err_name(r.connect_rc));
    cr_assert(r.connect_ms >= 140 && r.connect_ms < 2000, "connect took %lld ms",
              (long long)r.connect_ms);
    close_all(fill, n);
    weft_close(r.l);
    cr_assert_eq(unlink(r.path), 0);
    cr_assert_eq(count_fds(), fds);
    tdir_assert_empty();
}

/* ---- cancel and close under a waiting coroutine ------------------------------------ */

typedef struct cancel_run {
    const char *path;
    weft_sock *l, *pair[2];
    int accept_rc, connect_rc, recvfd_rc, recvfd_closed_rc, recvfd_after;
    int got;
    int64_t connect_id, recvfd_id;
} cancel_run;

static void c_accept(void *arg)
{
    cancel_run *r = arg;
    weft_sock *c = UNTOUCHED;
    r->accept_rc = weft_unix_accept(r->l, &c, 10000);
}

static void c_connect(void *arg)
{
    cancel_run *r = arg;
    weft_sock *c = UNTOUCHED;
    r->connect_rc = weft_unix_connect(&c, r->path, 10000);
    if (r->connect_rc == 0)
        weft_close(c);
}

static void c_recvfd(void *arg)
{
    cancel_run *r = arg;
    r->recvfd_rc = weft_recv_fd(r->pair[1], &r->got, 10000);
    /* The cancel is delivered once: the next call works. */
    r->recvfd_after = weft_recv_fd(r->pair[1], &r->got, 10000);
    if (r->recvfd_after == 1)
        close(r->got);
}

static void c_recvfd_closed(void *arg)
{
    cancel_run *r = arg;
    int fd;
    r->recvfd_closed_rc = weft_recv_fd(r->pair[0], &fd, 10000);
}

static int cancel_main(void *arg)
{
    cancel_run *r = arg;
    weft_go(c_accept, r);
    r->connect_id = weft_go(c_connect, r);
    r->recvfd_id = weft_go(c_recvfd, r);
    weft_go(c_recvfd_closed, r);
    weft_sleep(100);
    weft_close(r->l);           /* wakes the accept */
    weft_cancel(r->connect_id); /* the connect waiting on a full backlog */
    weft_cancel(r->recvfd_id);
    weft_sleep(50);
    weft_send_fd(r->pair[0], 1, 1000); /* for the recv_fd after the cancel */
    weft_sleep(50);
    weft_close(r->pair[0]); /* wakes c_recvfd_closed */
    return 0;
}

Test(unixsock, cancel_and_close_under_waiters, .init = tdir_make, .fini = tdir_remove,
     .timeout = 90)
{
    int fds = count_fds();
    /* Two listeners: an empty one whose accept waits, a full one whose
     * connect waits. */
    cancel_run r = {.path = tpath("full.sock")};
    weft_sock *full;
    cr_assert_eq(weft_unix_listen(&full, r.path, 1), 0);
    int fill[64];
    int n = fill_backlog(r.path, fill, 64);
    cr_assert_eq(weft_unix_listen(&r.l, tpath("empty.sock"), 0), 0);
    cr_assert_eq(weft_socketpair(r.pair, SOCK_STREAM), 0);
    int64_t t0 = mono_ns();
    cr_assert_eq(weft_main(cancel_main, &r, NULL), 0);
    cr_assert_lt(mono_ns() - t0, 3000 * MS, "the waiters were not woken");
    cr_assert_eq(r.accept_rc, -EBADF, "accept: %s", weft_err_name(r.accept_rc));
    cr_assert_eq(r.connect_rc, -ECANCELED, "connect: %s", weft_err_name(r.connect_rc));
    cr_assert_eq(r.recvfd_rc, -ECANCELED, "recv_fd: %s", weft_err_name(r.recvfd_rc));
    cr_assert_eq(r.recvfd_after, 1, "recv_fd after the cancel: %s", weft_err_name(r.recvfd_after));
    cr_assert_eq(r.recvfd_closed_rc, -EBADF, "recv_fd, socket closed: %s",
                 weft_err_name(r.recvfd_closed_rc));
    weft_close(r.pair[1]);
    close_all(fill, n);
    weft_close(full);
    cr_assert_eq(count_fds(), fds);
    cr_assert_eq(unlink(r.path), 0);
    cr_assert_eq(unlink(tpath("empty.sock")), 0);
    tdir_assert_empty();
}

/* ---- fault injection --------------------------------------------------------------- */

typedef struct fault_run {
    int rc[32];
    bool untouched;
    bool files_left;
} fault_run;

static void fault_body(fault_run *r)
{
    weft_sock *s = UNTOUCHED, *p[2] = {UNTOUCHED, UNTOUCHED};
    const char *lp = tpath("f-listen.sock");
    const char *dp = tpath("f-dgram.sock");
    r->untouched = true;

#define TRY(i, kind, nth, err, call)                                                               \
    do {                                                                                           \
        weft_fault_clear();                                                                        \
        weft_fault_set(kind, nth, err);                                                            \
        r->rc[i] = (call);                                                                         \
        weft_fault_clear();                                                                        \
    } while (0)

    TRY(0, WEFT_FAULT_SOCKET, 1, EMFILE, weft_unix_listen(&s, lp, 0));
    TRY(1, WEFT_FAULT_MALLOC, 1, ENOMEM, weft_unix_listen(&s, lp, 0));
    TRY(2, WEFT_FAULT_BIND, 1, EACCES, weft_unix_listen(&s, lp, 0));
    TRY(3, WEFT_FAULT_LISTEN, 1, ENOBUFS, weft_unix_listen(&s, lp, 0));
    r->files_left = exists(lp);
    TRY(4, WEFT_FAULT_SOCKET, 1, ENFILE, weft_unix_connect(&s, lp, 1000));
    TRY(5, WEFT_FAULT_SOCKET, 1, EMFILE, weft_unix_dgram_open(&s, dp));
    TRY(6, WEFT_FAULT_BIND, 1, EADDRINUSE, weft_unix_dgram_open(&s, dp));
    r->files_left |= exists(dp);
    TRY(7, WEFT_FAULT_SOCKET, 1, EMFILE, weft_socketpair(p, SOCK_STREAM));
    TRY(8, WEFT_FAULT_MALLOC, 1, ENOMEM, weft_socketpair(p, SOCK_DGRAM));
    TRY(9, WEFT_FAULT_MALLOC, 2, ENOMEM, weft_socketpair(p, SOCK_STREAM));
    r->untouched = s == UNTOUCHED && p[0] == UNTOUCHED && p[1] == UNTOUCHED;

    /* With a live listener: connect, send_fd and recv_fd faults. */
    weft_sock *l;
    if ((r->rc[10] = weft_unix_listen(&l, lp, 0)) < 0)
        return;
    TRY(11, WEFT_FAULT_CONNECT, 1, EACCES, weft_unix_connect(&s, lp, 1000));
    TRY(12, WEFT_FAULT_MALLOC, 1, ENOMEM, weft_unix_connect(&s, lp, 1000));
    r->untouched &= s == UNTOUCHED;
    weft_sock *c, *a;
    if ((r->rc[13] = weft_unix_connect(&c, lp, 1000)) < 0)
        goto out_l;
    if ((r->rc[14] = weft_unix_accept(l, &a, 1000)) < 0)
        goto out_c;
    int got = -1;
    TRY(15, WEFT_FAULT_SEND, 1, EIO, weft_send_fd(c, 1, 1000));
    r->rc[16] = weft_recv_fd(a, &got, 0);                         /* nothing went: -ETIMEDOUT */
    TRY(17, WEFT_FAULT_SEND, 1, EINTR, weft_send_fd(c, 1, 1000)); /* retried, 0 */
    TRY(18, WEFT_FAULT_RECV, 1, ECONNRESET, weft_recv_fd(a, &got, 1000));
    TRY(19, WEFT_FAULT_RECV, 1, EINTR, weft_recv_fd(a, &got, 1000)); /* retried, 1 */
    if (r->rc[19] == 1)
        close(got);
    weft_close(a);
out_c:
    weft_close(c);
out_l:
    weft_close(l);
    unlink(lp);
#undef TRY
}

static int fault_main(void *arg)
{
    fault_body(arg);
    return 0;
}

static void check_faults(const fault_run *r)
{
    const int want[20] = {-EMFILE, -ENOMEM, -EACCES,    -ENOBUFS, -ENFILE,     -EMFILE, -EADDRINUSE,
                          -EMFILE, -ENOMEM, -ENOMEM,    0,        -EACCES,     -ENOMEM, 0,
                          0,       -EIO,    -ETIMEDOUT, 0,        -ECONNRESET, 1};
    for (int i = 0; i < 20; i++)
        cr_expect_eq(r->rc[i], want[i], "step %d: got %s, want %s", i, weft_err_name(r->rc[i]),
                     weft_err_name(want[i]));
    cr_assert(r->untouched, "an out-parameter was written on failure");
    cr_assert(!r->files_left, "a failed listen/open left its socket file");
}

Test(unixsock, fault_injection, .init = tdir_make, .fini = tdir_remove, .timeout = 90)
{
    int fds = count_fds();
    fault_run r = {0};
    fault_body(&r);
    check_faults(&r);
    cr_assert_eq(count_fds(), fds, "descriptors leaked (plain thread)");
    memset(&r, 0, sizeof r);
    cr_assert_eq(weft_main(fault_main, &r, NULL), 0);
    check_faults(&r);
    cr_assert_eq(count_fds(), fds, "descriptors leaked (coroutine)");
    assert_no_leaks();
    tdir_assert_empty();
}

/* ---- outside any coroutine -------------------------------------------------------------- */

Test(unixsock, plain_thread_exchange, .init = tdir_make, .fini = tdir_remove, .timeout = 60)
{
    int fds = count_fds();
    const char *path = tpath("plain.sock");
    weft_sock *l, *c, *s;
    cr_assert_eq(weft_unix_listen(&l, path, 0), 0);
    /* A unix connect completes at once while the backlog has room. */
    cr_assert_eq(weft_unix_connect(&c, path, 1000), 0);
    cr_assert_eq(weft_unix_accept(l, &s, 1000), 0);
    char buf[32];
    cr_assert_eq(weft_send(c, "ping", 4, 1000), 4);
    cr_assert_eq(weft_recvn(s, buf, 4, 1000), 4);
    cr_assert_eq(memcmp(buf, "ping", 4), 0);
    cr_assert_eq(weft_send(s, "pong", 4, 1000), 4);
    cr_assert_eq(weft_recv(c, buf, sizeof buf, 1000), 4);
    cr_assert_eq(memcmp(buf, "pong", 4), 0);
    /* The thread waits in poll() and honours the timeout. */
    int64_t t0 = mono_ns();
    cr_assert_eq(weft_recv(c, buf, sizeof buf, 150), -ETIMEDOUT);
    int64_t took = mono_ns() - t0;
    cr_assert(took >= 145 * MS && took < 1000 * MS, "took %lld ms", (long long)(took / MS));
    int got;
    t0 = mono_ns();
    cr_assert_eq(weft_recv_fd(s, &got, 150), -ETIMEDOUT);
    took = mono_ns() - t0;
    cr_assert(took >= 145 * MS && took < 1000 * MS, "took %lld ms", (long long)(took / MS));
    cr_assert_eq(weft_send_fd(c, 2, 1000), 0);
    cr_assert_eq(weft_recv_fd(s, &got, 1000), 1);
    cr_assert(fd_cloexec(got));
    close(got);
    weft_close(c);
    cr_assert_eq(weft_recv(s, buf, sizeof buf, 1000), 0);
    weft_close(s);
    weft_close(l);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(count_fds(), fds);
    tdir_assert_empty();
}
