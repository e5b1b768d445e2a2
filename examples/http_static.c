/*
 * http_static.c - a static file server: GET and HEAD of the files beneath
 * DIR, sent with weft_http_resp_sendfile.
 *
 * usage: http_static PORT DIR
 * Listens on 127.0.0.1:PORT until SIGINT or SIGTERM, then drains as
 * http_server does: new connections are refused, idle ones close,
 * responses in progress complete (for 10 s at most), and it exits.
 *
 * The path is percent-decoded first: a malformed escape or "%00" is 400,
 * an encoded '/' and a ".." segment are 404 (no file has such a name).
 * What is left is opened beneath DIR with openat2(RESOLVE_BENEATH), which
 * also refuses a symbolic link that would leave DIR; a directory is served
 * by its index.html.  Responses say Content-Type (by the extension),
 * Last-Modified and Accept-Ranges; If-Modified-Since may make a GET or
 * HEAD 304, and a single byte range (bytes=a-b, a-, -n) a GET 206, or 416
 * if it lies past the end (several ranges get the whole file).  Other
 * methods are 405.
 */
#include <weft.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SMALL_MS 10000 /* the most a short answer's send waits */
#define FILE_MS 60000  /* and a file's */

static int root = -1; /* DIR, opened */
static int port, sigfd;

static const char *content_type(const char *path)
{
    static const char *const types[][2] = {
        {".html", "text/html; charset=utf-8"},
        {".htm", "text/html; charset=utf-8"},
        {".txt", "text/plain; charset=utf-8"},
        {".css", "text/css"},
        {".js", "text/javascript"},
        {".json", "application/json"},
        {".xml", "application/xml"},
        {".pdf", "application/pdf"},
        {".wasm", "application/wasm"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".gif", "image/gif"},
        {".svg", "image/svg+xml"},
        {".ico", "image/vnd.microsoft.icon"},
    };
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcasecmp(dot, types[i][0]) == 0)
            return types[i][1];
    return "application/octet-stream";
}

/* A short answer of our own: the status and a line of text. */
static void answer(weft_http_resp *w, int status)
{
    const char *text = status == 301   ? "moved\n"
                       : status == 400 ? "bad request\n"
                       : status == 403 ? "forbidden\n"
                       : status == 405 ? "method not allowed\n"
                       : status == 414 ? "URI too long\n"
                       : status == 416 ? "range not satisfiable\n"
                                       : "not found\n";
    weft_http_resp_header(w, "Content-Type", "text/plain; charset=utf-8");
    weft_http_resp_send(w, status, text, strlen(text), SMALL_MS);
}

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes p[0..n) into out (size bytes, NUL-terminated).  Returns
 * 0, or the status that refuses it: a NUL would cut the name short, and
 * an encoded '/' would let one name stand for a path. */
static int decode(const char *p, size_t n, char *out, size_t size)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '%') {
            int hi = i + 2 < n ? hex(p[i + 1]) : -1, lo = i + 2 < n ? hex(p[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return 400;
            c = (char)(hi << 4 | lo);
            if (c == '\0')
                return 400;
            if (c == '/')
                return 404;
            i += 2;
        }
        if (k + 1 >= size)
            return 414;
        out[k++] = c;
    }
    out[k] = '\0';
    return 0;
}

/* Whether a segment of path is "..": refused before the kernel sees it,
 * though RESOLVE_BENEATH would refuse the ones that leave DIR too. */
static int has_dotdot(const char *path)
{
    for (const char *s = path; s; s = strchr(s, '/') ? strchr(s, '/') + 1 : NULL)
        if (s[0] == '.' && s[1] == '.' && (s[2] == '/' || s[2] == '\0'))
            return 1;
    return 0;
}

/* path ("" for DIR itself) opened beneath DIR, or -errno. */
static int open_beneath(const char *path)
{
    /* O_NONBLOCK: a FIFO would otherwise block the open (and the loop)
     * until a writer came; for a regular file it changes nothing. */
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK, .resolve = RESOLVE_BENEATH};
    int fd = (int)syscall(SYS_openat2, root, *path ? path : ".", &how, sizeof how);
    return fd < 0 ? -errno : fd;
}

/* An IMF-fixdate (RFC 9110 5.6.7), as Last-Modified says it. */
static void http_date(time_t t, char out[40])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 40, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* Whether If-Modified-Since v says the file (mtime) is unchanged.  A value
 * that is not an IMF-fixdate, or one in the future, is ignored (RFC 9110
 * 13.1.3). */
static int not_modified(weft_http_str v, time_t mtime)
{
    char b[64];
    struct tm tm = {0};
    if (v.n >= sizeof b)
        return 0;
    memcpy(b, v.p, v.n);
    b[v.n] = '\0';
    const char *end = strptime(b, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end)
        return 0;
    time_t since = timegm(&tm);
    return since <= time(NULL) && mtime <= since;
}

/* Digits at *p (up to e) as a number, saturating; -1 if there are none. */
static int64_t number(const char **p, const char *e)
{
    int64_t v = -1;
    for (; *p < e && **p >= '0' && **p <= '9'; (*p)++) {
        int d = **p - '0';
        v = v < 0 ? d : v > (INT64_MAX - d) / 10 ? INT64_MAX : v * 10 + d;
    }
    return v;
}

/* The Range field v for a file of size bytes: 206 with *off and *len set
 * for one byte range, 416 for one that starts past the end, or 0 to send
 * the whole file (another unit, several ranges, a malformed one: RFC 9110
 * 14.2 lets a server ignore those). */
static int byte_range(weft_http_str v, int64_t size, int64_t *off, int64_t *len)
{
    const char *p = v.p, *e = v.p + v.n;
    if (v.n < 6 || strncasecmp(p, "bytes=", 6) != 0 || memchr(p, ',', v.n))
        return 0;
    for (p += 6; p < e && (*p == ' ' || *p == '\t'); p++)
        ;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    int64_t first = number(&p, e);
    if (p == e || *p++ != '-')
        return 0;
    int64_t last = number(&p, e);
    if (p != e || (first < 0 && last < 0) || (first >= 0 && last >= 0 && last < first))
        return 0;
    if (first < 0) { /* the last `last` bytes */
        if (last == 0 || size == 0)
            return 416;
        first = last > size ? 0 : size - last;
        last = size - 1;
    } else if (first >= size) {
        return 416;
    } else if (last < 0 || last >= size) {
        last = size - 1;
    }
    *off = first;
    *len = last - first + 1;
    return 206;
}

/* One request, in its connection's coroutine. */
static void handle(weft_http_req *req, weft_http_resp *w, void *arg)
{
    char path[PATH_MAX], hdr[96];
    (void)arg;
    int head = weft_http_str_eq(req->method, "HEAD");
    if (!head && !weft_http_str_eq(req->method, "GET")) {
        weft_http_resp_header(w, "Allow", "GET, HEAD");
        answer(w, 405);
        return;
    }
    if (req->path.n == 0 || req->path.p[0] != '/') {
        answer(w, 400); /* "*", or an authority (CONNECT) */
        return;
    }
    /* Room left for "index.html" after a directory's path. */
    int status = decode(req->path.p + 1, req->path.n - 1, path, sizeof path - 16);
    if (status || has_dotdot(path)) {
        answer(w, status ? status : 404);
        return;
    }
    int fd = open_beneath(path);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        fd = -ENOENT;
        if (req->path.p[req->path.n - 1] != '/') {
            /* Its links are relative to the directory: ask again with
             * the '/' (the path as sent, so still encoded). */
            char loc[PATH_MAX + 2];
            int n = snprintf(loc, sizeof loc, "%.*s/", (int)req->path.n, req->path.p);
            if (n < (int)sizeof loc && weft_http_resp_header(w, "Location", loc) == 0) {
                answer(w, 301);
                return;
            }
        } else {
            strcat(path, "index.html");
            fd = open_beneath(path);
        }
    }
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        /* EXDEV or ELOOP: a link out of DIR, said like a missing file. */
        answer(w, fd == -EACCES || fd == -EPERM ? 403 : 404);
        if (fd >= 0)
            close(fd);
        return;
    }
    char lm[40];
    http_date(st.st_mtime, lm);
    weft_http_resp_header(w, "Last-Modified", lm);
    weft_http_str ims = weft_http_req_header(req, "If-Modified-Since");
    if (ims.p && !weft_http_req_header(req, "If-None-Match").p && not_modified(ims, st.st_mtime)) {
        weft_http_resp_send(w, 304, NULL, 0, SMALL_MS);
        close(fd);
        return;
    }
    int64_t off = 0, len = st.st_size;
    status = 200;
    weft_http_str range = weft_http_req_header(req, "Range");
    weft_http_str if_range = weft_http_req_header(req, "If-Range");
    /* Ranges are for GET alone; If-Range must name this very version. */
    if (!head && range.p && (!if_range.p || weft_http_str_eq(if_range, lm)))
        if ((status = byte_range(range, st.st_size, &off, &len)) == 0)
            status = 200;
    if (status == 416) {
        snprintf(hdr, sizeof hdr, "bytes */%lld", (long long)st.st_size);
        weft_http_resp_header(w, "Content-Range", hdr);
        answer(w, 416);
        close(fd);
        return;
    }
    if (status == 206) {
        snprintf(hdr, sizeof hdr, "bytes %lld-%lld/%lld", (long long)off,
                 (long long)(off + len - 1), (long long)st.st_size);
        weft_http_resp_header(w, "Content-Range", hdr);
    }
    weft_http_resp_header(w, "Content-Type", content_type(path));
    weft_http_resp_header(w, "Accept-Ranges", "bytes");
    /* A failure once the head is out closes the connection: the client
     * sees the body cut short. */
    weft_http_resp_sendfile(w, status, fd, (off_t)off, (size_t)len, FILE_MS);
    close(fd);
}

static int serve(void *arg)
{
    weft_http_server *s;
    weft_http_server_opts o = {
        .server = {.host = "127.0.0.1", .port = port},
        .handler = handle,
    };
    (void)arg;
    int rc = weft_http_server_start(&s, &o);
    if (rc < 0) {
        fprintf(stderr, "http_static: %s\n", weft_strerror(rc));
        return 1;
    }
    /* Until SIGINT or SIGTERM, which main() turned into a descriptor. */
    struct signalfd_siginfo si;
    while ((rc = weft_fd_wait(sigfd, WEFT_POLL_IN, -1)) == -ECANCELED)
        ;
    if (rc > 0 && read(sigfd, &si, sizeof si) == sizeof si)
        fprintf(stderr, "http_static: signal %u, draining\n", si.ssi_signo);
    rc = weft_http_server_drain(s, 10000);
    if (rc > 0)
        fprintf(stderr, "http_static: %d responses cut off at the drain's end\n", rc);
    weft_http_server_free(s);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3 || (port = atoi(argv[1])) <= 0 || port > 65535) {
        fprintf(stderr, "usage: http_static PORT DIR\n");
        return 2;
    }
    if ((root = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        perror(argv[2]);
        return 2;
    }
    /* The signals only ever come through sigfd (blocked before the loop
     * starts); their default action back first, since an ignored signal
     * (a shell's background job ignores SIGINT) never reaches it. */
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
    int rc = weft_main(serve, NULL, NULL);
    close(sigfd);
    close(root);
    return rc != 0;
}
