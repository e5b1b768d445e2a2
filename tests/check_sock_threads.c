/*
 * check_sock_threads.c - sockets used from threads that do not own them, as
 * a plain program so that it runs under ThreadSanitizer (`make test-tsan`;
 * test_sock_lifetime.c has the same cases one at a time).  Exit status 0 =
 * pass.
 *
 * A loop owns 200 socket pairs, each with a coroutine blocked in a receive
 * on one end.  Meanwhile a plain thread closes every other one of those
 * ends (the closes are handed to the owner), a second loop's coroutine and
 * a second plain thread keep calling them (-EXDEV while open, -EBADF once
 * closed, never anything else), and the owner feeds the rest.  Every
 * reader must end with its data or -EBADF, each exactly as its socket's
 * fate says, and every descriptor must be closed at the end.
 */
#include <weft.h>

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define PAIRS 200

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "check_sock_threads: " __VA_ARGS__);                                   \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    if (d)
        closedir(d);
    return n - 1;
}

static weft_sock *mine[PAIRS], *peer[PAIRS];
static ssize_t got[PAIRS];
static atomic_int parked, readers_done, pokers_done;
static atomic_long odd_results;

static void reader(void *arg)
{
    int i = (int)(intptr_t)arg;
    char buf[16];
    atomic_fetch_add(&parked, 1);
    got[i] = weft_recv(mine[i], buf, sizeof buf, 30000);
}

static int owner_main(void *arg)
{
    (void)arg;
    int64_t ids[PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        weft_sock *p[2];
        if (weft_socketpair(p, SOCK_STREAM) < 0)
            return -1;
        mine[i] = p[0];
        peer[i] = p[1];
        ids[i] = weft_go(reader, (void *)(intptr_t)i);
    }
    /* Feed the odd ones while the closer takes the even ones away. */
    for (int i = 1; i < PAIRS; i += 2) {
        weft_send(peer[i], "data", 4, 1000);
        weft_yield();
    }
    for (int i = 0; i < PAIRS; i++)
        weft_join(ids[i], -1);
    atomic_store(&readers_done, 1); /* the handed-over closes are all done */
    while (atomic_load(&pokers_done) < 2)
        weft_sleep(1);
    for (int i = 0; i < PAIRS; i++) {
        weft_close(peer[i]);
        if (i % 2)
            CHECK(weft_close(mine[i]) == 0, "odd socket %d was closed", i);
        else
            CHECK(weft_close(mine[i]) == -EBADF, "even socket %d is still open", i);
    }
    return 0;
}

static void *closer(void *arg)
{
    (void)arg;
    while (atomic_load(&parked) < PAIRS)
        usleep(1000);
    for (int i = 0; i < PAIRS; i += 2) {
        int rc = weft_close(mine[i]);
        CHECK(rc == 0, "handed-over close of %d: %d", i, rc);
    }
    return NULL;
}

/* Calls the owner's sockets until every reader has ended, and once more. */
static void poke_all(void)
{
    while (atomic_load(&parked) < PAIRS)
        usleep(1000);
    for (int round = 0;; round++) {
        bool last = atomic_load(&readers_done);
        for (int i = 0; i < PAIRS; i++) {
            char c;
            ssize_t rc = weft_recv(mine[i], &c, 1, 0);
            if (rc != -EXDEV && rc != -EBADF)
                atomic_fetch_add(&odd_results, 1);
            if (last && i % 2 == 0 && rc != -EBADF)
                atomic_fetch_add(&odd_results, 1);
        }
        if (last)
            break;
    }
    atomic_fetch_add(&pokers_done, 1);
}

static int poker_main(void *arg)
{
    (void)arg;
    poke_all();
    return 0;
}

static void *poker_loop(void *arg)
{
    (void)arg;
    weft_main(poker_main, NULL, NULL);
    return NULL;
}

static void *poker_plain(void *arg)
{
    (void)arg;
    poke_all();
    return NULL;
}

int main(void)
{
    int fds = count_fds();
    pthread_t t[3];
    pthread_create(&t[0], NULL, closer, NULL);
    pthread_create(&t[1], NULL, poker_loop, NULL);
    pthread_create(&t[2], NULL, poker_plain, NULL);
    int rc = weft_main(owner_main, NULL, NULL);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    CHECK(rc == 0, "owner: %d", rc);
    for (int i = 0; i < PAIRS; i++) {
        if (i % 2)
            CHECK(got[i] == 4, "reader %d: %zd, want its 4 bytes", i, got[i]);
        else
            CHECK(got[i] == -EBADF, "reader %d: %zd, want -EBADF", i, got[i]);
    }
    CHECK(atomic_load(&odd_results) == 0, "%ld calls from other threads gave neither -EXDEV "
          "nor -EBADF", atomic_load(&odd_results));
    CHECK(count_fds() == fds, "descriptors: %d, were %d", count_fds(), fds);
    if (failures)
        return 1;
    puts("check_sock_threads: ok");
    return 0;
}
