/*
 * http_server.c - an HTTP/1.1 server: "hello" on GET /, and with --root the
 * files under DIR, sent with sendfile(2).
 *
 * usage: http_server PORT [THREADS] [--root DIR] [--cert FILE [--key FILE]]
 * Listens on 127.0.0.1:PORT with THREADS loops, one per thread (one
 * weft_http_server on all of them, SO_REUSEPORT), until SIGINT or SIGTERM;
 * then it drains: new connections are refused, idle ones close, requests
 * in progress complete (for 10 s at most), and it exits.  With --cert it
 * speaks HTTPS (ALPN "http/1.1") with that PEM certificate chain and the
 * key in --key's file (in the certificate's file without --key).
 *
 * A path is looked up beneath DIR only: openat2(RESOLVE_BENEATH) refuses
 * ".." and symbolic links that would leave it (absolute ones included),
 * and a path with ".." is refused before that.  Targets are not
 * percent-decoded, so "%2e%2e" is a name like any other.
 */
#include <weft.h>

#include <fcntl.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int root = -1; /* --root DIR, opened */
static int port, sigfd;
static const char *cert_file, *key_file; /* --cert, --key: HTTPS */

static const char *content_type(const char *path)
{
    static const char *const types[][2] = {
        {".html", "text/html; charset=utf-8"},
        {".txt", "text/plain; charset=utf-8"},
        {".css", "text/css"},
        {".js", "text/javascript"},
        {".json", "application/json"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".svg", "image/svg+xml"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i][0]) == 0)
            return types[i][1];
    return "application/octet-stream";
}

/* Sends the file at path (after its '/') beneath root, or 404. */
static void send_file(weft_http_resp *w, const char *path)
{
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC, .resolve = RESOLVE_BENEATH};
    int fd = strstr(path, "..") ? -1 : (int)syscall(SYS_openat2, root, path + 1, &how, sizeof how);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        weft_http_resp_send(w, 404, "not found\n", 10, 10000);
    } else {
        weft_http_resp_header(w, "Content-Type", content_type(path));
        weft_http_resp_sendfile(w, 200, fd, 0, (size_t)st.st_size, 60000);
    }
    if (fd >= 0)
        close(fd);
}

/* One request, in its connection's coroutine. */
static void handle(weft_http_req *req, weft_http_resp *w, void *arg)
{
    char path[1024];
    (void)arg;
    if (!weft_http_str_eq(req->method, "GET") && !weft_http_str_eq(req->method, "HEAD")) {
        weft_http_resp_header(w, "Allow", "GET, HEAD");
        weft_http_resp_send(w, 405, "method not allowed\n", 19, 10000);
    } else if (weft_http_str_eq(req->path, "/")) {
        weft_http_resp_header(w, "Content-Type", "text/plain");
        weft_http_resp_send(w, 200, "hello", 5, 10000);
    } else if (root >= 0 && req->path.n < sizeof path && req->path.p[0] == '/') {
        memcpy(path, req->path.p, req->path.n);
        path[req->path.n] = '\0';
        send_file(w, path);
    } else {
        weft_http_resp_send(w, 404, "not found\n", 10, 10000);
    }
}

static int serve(void *arg)
{
    weft_http_server *s;
    weft_http_server_opts o = {
        .server = {.host = "127.0.0.1", .port = port, .cert_file = cert_file, .key_file = key_file},
        .handler = handle,
    };
    (void)arg;
    int rc = weft_http_server_start(&s, &o); /* listening on every loop when it returns */
    if (rc < 0) {
        fprintf(stderr, "http_server: %s\n", weft_strerror(rc));
        return 1;
    }
    /* Until SIGINT or SIGTERM, which main() turned into a descriptor. */
    struct signalfd_siginfo si;
    while ((rc = weft_fd_wait(sigfd, WEFT_POLL_IN, -1)) == -ECANCELED)
        ;
    if (rc > 0 && read(sigfd, &si, sizeof si) == sizeof si)
        fprintf(stderr, "http_server: signal %u, draining\n", si.ssi_signo);
    rc = weft_http_server_drain(s, 10000);
    if (rc > 0)
        fprintf(stderr, "http_server: %d requests cut off at the drain's end\n", rc);
    weft_http_server_free(s);
    return 0;
}

int main(int argc, char **argv)
{
    int threads = 1, npos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--root") == 0 && i + 1 < argc) {
            if ((root = open(argv[++i], O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
                perror(argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--cert") == 0 && i + 1 < argc) {
            cert_file = argv[++i];
        } else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) {
            key_file = argv[++i];
        } else if (npos == 0) {
            port = atoi(argv[i]), npos++;
        } else if (npos == 1) {
            threads = atoi(argv[i]), npos++;
        } else {
            port = 0;
        }
    }
    if (port <= 0 || port > 65535 || threads < 1 || threads > 64 || (key_file && !cert_file)) {
        fprintf(stderr,
                "usage: http_server PORT [THREADS] [--root DIR] [--cert FILE [--key FILE]]\n");
        return 2;
    }
    struct rlimit r; /* one descriptor per connection */
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
    /* Blocked here, before the loops' threads start (they inherit the
     * mask), so the signals only ever come through sigfd; their default
     * action back first (a shell starts background jobs with SIGINT
     * ignored, and an ignored signal never reaches a signalfd). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if ((sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
        perror("signalfd");
        return 1;
    }
    weft_config cfg = {.threads = threads};
    int rc = weft_main(serve, NULL, &cfg);
    close(sigfd);
    return rc != 0;
}
