/*
 * check_names_threads.c - the system resolver's worker pool, as a plain
 * program so that it runs under ThreadSanitizer (`make test-tsan`).  Only
 * NAME is looked up, which a hosts file of the program's own answers
 * (bind-mounted over /etc/hosts in a private mount namespace): nothing goes
 * on the wire.  "localhost" would not do: weft answers it without asking
 * any resolver.  Exit status 0 = pass, 77 = skipped (no namespace).
 *
 * 1. Two threads, each with its own loop, run 200 lookups at once.
 * 2. Lookups abandoned at once (timeout 0, cancel) while the workers still
 *    have them, then the loop freed: the workers free them.
 * 3. A lookup outside any coroutine, on a plain thread.
 */
#include <weft.h>

#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME "weft-check.test"
#define ADDR "127.0.0.9"

static int failures;

/* Puts a hosts file naming NAME over /etc/hosts for this process alone.
 * Must run before any thread starts (unshare).  Returns 0 or -1. */
static int private_hosts(void)
{
    char path[] = "/tmp/weft-hosts-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    const char line[] = ADDR " " NAME "\n";
    int ok = write(fd, line, sizeof line - 1) == (ssize_t)(sizeof line - 1) && fchmod(fd, 0644) == 0;
    close(fd);
    /* As root a mount namespace will do; otherwise a user namespace too. */
    ok = ok && (unshare(CLONE_NEWNS) == 0 || unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0) &&
         mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
         mount(path, "/etc/hosts", NULL, MS_BIND, NULL) == 0;
    unlink(path); /* the mount keeps the file for as long as it lasts */
    return ok ? 0 : -1;
}

#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "check_names_threads: " __VA_ARGS__);                           \
            fputc('\n', stderr);                                                              \
            __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);                               \
        }                                                                                     \
    } while (0)

typedef struct counts {
    int ok, failed, first_err;
    int64_t timeout;
} counts;

static void lookup(void *arg)
{
    counts *c = arg;
    weft_addrinfo *ai = NULL;
    weft_hints h = { .family = AF_INET, .socktype = SOCK_STREAM };
    int rc = weft_resolve(&ai, NAME, "80", &h, c->timeout);
    if (rc == 0) {
        char buf[64];
        weft_addr_format(weft_addrinfo_addr(ai), buf, sizeof buf);
        c->ok += strcmp(buf, ADDR ":80") == 0;
        weft_addrinfo_free(ai);
    } else {
        c->failed++;
        if (!c->first_err)
            c->first_err = rc;
    }
}

static int spawn_200(void *arg)
{
    for (int i = 0; i < 200; i++)
        weft_go(lookup, arg);
    return 0;
}

static void *loop_thread(void *arg)
{
    weft_config cfg = { 0 };
    cfg.resolver = "system";
    weft_main(spawn_200, arg, &cfg);
    return NULL;
}

int main(void)
{
    if (private_hosts() < 0) {
        printf("check_names_threads: skipped: no private mount namespace for a hosts file\n");
        return 77;
    }
    counts a = { .timeout = 10000 }, b = { .timeout = 10000 };
    pthread_t ta, tb;
    pthread_create(&ta, NULL, loop_thread, &a);
    pthread_create(&tb, NULL, loop_thread, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(a.ok == 200 && b.ok == 200, "concurrent: %d and %d of 200 (%s)", a.ok, b.ok,
          weft_err_name(a.first_err ? a.first_err : b.first_err));

    counts z = { .timeout = 0 };
    loop_thread(&z);
    CHECK(z.ok + z.failed == 200, "abandoned: %d + %d", z.ok, z.failed);
    CHECK(z.failed == 0 || z.first_err == -ETIMEDOUT, "abandoned: %s",
          weft_err_name(z.first_err));

    counts p = { .timeout = 5000 };
    setenv("WEFT_RESOLVER", "system", 1);
    lookup(&p);
    CHECK(p.ok == 1, "outside a coroutine: %s", weft_err_name(p.first_err));
    if (failures == 0)
        printf("check_names_threads: ok\n");
    return failures ? 1 : 0;
}
