/*
 * idle_rss.c - memory per idle connection: a weft echo server (one
 * coroutine per connection, as in examples/echo_server.c) in a child
 * process, and this process opening CONNS connections to it, each doing one
 * 64-byte round trip and then staying idle, so every server coroutine sits
 * in weft_recv with its buffer used once.  The server's VmRSS is read
 * before the connections and once they are all established and idle.
 *
 * usage: idle_rss [CONNS] [grow|stack|malloc] [quiet]   (defaults: 10000, grow)
 *   grow:   echo_server's way: a 1 KiB buffer in the stack's top page, and
 *           a 64 KiB one further down the stack once a read fills it
 *   stack:  a 64 KiB buffer on a 128 KiB coroutine stack
 *   malloc: a 64 KiB buffer malloc'd per connection, default 64 KiB stack
 *   quiet:  connections that never send anything (the buffer is never
 *           touched): what the library itself costs per connection
 * Prints one line: ... kib_per_conn=N.  Ends by itself (alarm as a backstop).
 */
#include <weft.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)
#define MSG_SIZE 64

static const char *mode = "grow";
static int report_fd = -1;

/* ---- the server (child process) ------------------------------------------- */

static void echo(weft_sock *c, char *buf)
{
    ssize_t n;
    while ((n = weft_recv(c, buf, BUF_SIZE, -1)) > 0)
        if (weft_send(c, buf, (size_t)n, -1) < 0)
            break;
}

static void serve_stack(void *arg)
{
    char buf[BUF_SIZE];
    weft_sock_set_nodelay(arg, 1);
    echo(arg, buf);
    weft_close(arg);
}

static void serve_malloc(void *arg)
{
    char *buf = malloc(BUF_SIZE);
    weft_sock_set_nodelay(arg, 1);
    if (buf)
        echo(arg, buf);
    free(buf);
    weft_close(arg);
}

__attribute__((noinline)) static void echo_big(weft_sock *c)
{
    char buf[BUF_SIZE];
    echo(c, buf);
}

static void serve_grow(void *arg)
{
    weft_sock *c = arg;
    char small[1024];
    ssize_t n;
    weft_sock_set_nodelay(c, 1);
    while ((n = weft_recv(c, small, sizeof small, -1)) > 0) {
        if (weft_send(c, small, (size_t)n, -1) < 0)
            break;
        if ((size_t)n == sizeof small) {
            echo_big(c);
            break;
        }
    }
    weft_close(c);
}

static int server(void *arg)
{
    weft_sock *l, *c;
    weft_addr a;
    int rc;
    (void)arg;
    if ((rc = weft_tcp_listen(&l, "127.0.0.1", 0, 0, 0)) < 0 || (rc = weft_sock_local(l, &a)) < 0) {
        fprintf(stderr, "idle_rss: listen: %s\n", weft_strerror(rc));
        return 1;
    }
    int port = weft_addr_port(&a);
    if (write(report_fd, &port, sizeof port) != sizeof port)
        return 1;
    close(report_fd);
    weft_co_opts big = {.stack_size = BUF_SIZE + 64 * 1024};
    while (weft_tcp_accept(l, &c, -1) >= 0) {
        int64_t id = strcmp(mode, "malloc") == 0  ? weft_go(serve_malloc, c)
                     : strcmp(mode, "stack") == 0 ? weft_go_opts(serve_stack, c, &big)
                                                  : weft_go_opts(serve_grow, c, &big);
        if (id < 0)
            weft_close(c);
    }
    return 1;
}

/* ---- the client (this process) --------------------------------------------- */

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static int quiet;

/* Descriptors open in process pid, or -1. */
static int fd_count(pid_t pid)
{
    char path[64], cmd[96];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    snprintf(cmd, sizeof cmd, "ls %s | wc -l", path);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f && fscanf(f, "%d", &n) != 1)
        n = -1;
    if (f)
        pclose(f);
    return n;
}

/* Connects and, unless quiet, does one checked round trip; returns the fd
 * or -1. */
static int open_one(int port, int seq)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char out[MSG_SIZE], in[MSG_SIZE];
    memset(out, 'a' + seq % 26, sizeof out);
    size_t got = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        goto fail;
    if (quiet)
        return fd;
    if (send(fd, out, sizeof out, MSG_NOSIGNAL) != (ssize_t)sizeof out)
        goto fail;
    while (got < sizeof in) {
        ssize_t n = recv(fd, in + got, sizeof in - got, 0);
        if (n <= 0)
            goto fail;
        got += (size_t)n;
    }
    if (memcmp(in, out, sizeof in) == 0)
        return fd;
fail:
    close(fd);
    return -1;
}

static void close_reset(int fd)
{
    struct linger lg = {1, 0}; /* RST: no TIME_WAIT left behind */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

int main(int argc, char **argv)
{
    int conns = argc > 1 ? atoi(argv[1]) : 10000;
    if (argc > 2)
        mode = argv[2];
    quiet = argc > 3 && strcmp(argv[3], "quiet") == 0;
    if (conns < 1 ||
        (strcmp(mode, "grow") && strcmp(mode, "stack") && strcmp(mode, "malloc")) ||
        (argc > 3 && !quiet)) {
        fprintf(stderr, "usage: idle_rss [CONNS] [grow|stack|malloc] [quiet]\n");
        return 2;
    }
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
    getrlimit(RLIMIT_NOFILE, &r);
    if (r.rlim_cur != RLIM_INFINITY && (rlim_t)conns + 64 > r.rlim_cur) {
        fprintf(stderr, "idle_rss: descriptor limit %lu is too low for %d connections\n",
                (unsigned long)r.rlim_cur, conns);
        return 1;
    }
    alarm(120);

    int p[2];
    if (pipe(p) != 0)
        return 1;
    pid_t child = fork();
    if (child < 0)
        return 1;
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the client */
        alarm(150);
        close(p[0]);
        report_fd = p[1];
        _exit(weft_main(server, NULL, NULL) == 0 ? 0 : 1);
    }
    close(p[1]);
    int port = 0;
    ssize_t got = read(p[0], &port, sizeof port);
    close(p[0]);
    int rc = 1, *fds = calloc((size_t)conns, sizeof *fds), opened = 0;
    if (got != sizeof port || !fds) {
        fprintf(stderr, "idle_rss: the server did not start\n");
        goto out;
    }

    usleep(300 * 1000);
    long before = rss_kib(child);
    int fds_before = fd_count(child);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (; opened < conns; opened++)
        if ((fds[opened] = open_one(port, opened)) < 0) {
            fprintf(stderr, "idle_rss: connection %d failed: %s\n", opened, strerror(errno));
            goto out;
        }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* Without a round trip, wait until the server has accepted them all. */
    for (int i = 0; quiet && i < 200 && fd_count(child) < fds_before + conns; i++)
        usleep(50 * 1000);
    usleep(500 * 1000); /* let the server settle into its idle state */
    long after = rss_kib(child);
    if (before < 0 || after < 0) {
        fprintf(stderr, "idle_rss: cannot read the server's VmRSS\n");
        goto out;
    }
    printf("idle_rss mode=%s%s conns=%d rss_before_kib=%ld rss_after_kib=%ld kib_per_conn=%.2f "
           "connect_secs=%.2f\n",
           mode, quiet ? ",quiet" : "", conns, before, after,
           (double)(after - before) / conns,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    rc = 0;
out:
    for (int i = 0; i < opened; i++)
        close_reset(fds[i]);
    free(fds);
    kill(child, SIGTERM);
    waitpid(child, NULL, 0);
    return rc;
}
