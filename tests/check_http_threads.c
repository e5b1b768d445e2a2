/*
 * check_http_threads.c - a weft_http_server on 4 loops under
 * ThreadSanitizer (a plain program: Criterion does not start under TSan).
 * Client threads send keep-alive GETs, a request or two per connection
 * with pauses between them (so connections sit idle on every loop), while
 * a drain from loop 2 stops the server: idle connections on every loop
 * are cancelled from there, the requests in progress complete, and
 * on_exit runs once.  Before that, one weft_http_client serves
 * coroutines on every loop at once: each loop keeps and reuses its own
 * connections.  Exits 0 when all is well, 1 with a message otherwise.
 */
#include <weft.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LOOPS 4
#define CLIENTS 4

static weft_http_server *srv;
static int port;
static int served[LOOPS]; /* atomic */
static int exits;         /* atomic */
static int answered;      /* atomic: responses the clients read */
static int drain_rc = -1;
static weft_event *exited;
static int failures;

#define CHECK(c, ...)                                                                              \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "check_http_threads: " __VA_ARGS__);                                   \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void handler(weft_http_req *req, weft_http_resp *resp, void *arg)
{
    (void)req;
    (void)arg;
    __atomic_add_fetch(&served[weft_loop_index()], 1, __ATOMIC_RELAXED);
    weft_http_resp_send(resp, 200, "hello", 5, 5000);
}

static void on_exit_cb(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&exits, 1, __ATOMIC_SEQ_CST);
    weft_event_set(exited);
}

/* One keep-alive connection: a few GETs with pauses, until the server
 * closes it; again, until refused. */
static void *client(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        struct timeval tv = {10, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            close(fd);
            break; /* refused: the server has stopped */
        }
        for (int i = 0; i < 3; i++) {
            static const char get[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
            if (send(fd, get, sizeof get - 1, MSG_NOSIGNAL) != (ssize_t)sizeof get - 1)
                break;
            char r[512];
            ssize_t n = recv(fd, r, sizeof r - 1, 0);
            if (n <= 0)
                break;
            r[n] = 0;
            if (strncmp(r, "HTTP/1.1 200", 12) != 0 || !strstr(r, "hello"))
                break;
            __atomic_add_fetch(&answered, 1, __ATOMIC_RELAXED);
            usleep(2000); /* idle between requests */
        }
        close(fd);
    }
    return NULL;
}

/* weft_http_client shared by every loop: GETs from two coroutines per
 * loop, each loop's connections kept and reused on that loop. */
static weft_http_client *cli;
static int fetched[LOOPS], reused[LOOPS]; /* atomic */

static void fetcher(void *arg)
{
    (void)arg;
    char u[64];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/", port);
    for (int i = 0; i < 20; i++) {
        weft_http_response *r;
        int rc = weft_http_do(cli, &(weft_http_request){.url = u, .timeout_ms = 10000}, &r);
        if (rc < 0) {
            CHECK(0, "client GET: %s", weft_strerror(rc));
            return;
        }
        void *b;
        ssize_t n = weft_http_response_body(r, &b, -1);
        if (n == 5 && memcmp(b, "hello", 5) == 0 && r->status == 200)
            __atomic_add_fetch(&fetched[weft_loop_index()], 1, __ATOMIC_RELAXED);
        if (r->reused)
            __atomic_add_fetch(&reused[weft_loop_index()], 1, __ATOMIC_RELAXED);
        if (n >= 0)
            free(b);
        weft_http_response_free(r);
    }
}

static void drain_on_loop(void *arg)
{
    (void)arg;
    drain_rc = weft_http_server_drain(srv, 2000);
}

static int server_main(void *arg)
{
    (void)arg;
    weft_http_server_opts o = {.server = {.host = "127.0.0.1", .on_exit = on_exit_cb,
                                          .stack_size = 64 * 1024},
                               .handler = handler};
    int rc = weft_http_server_start(&srv, &o);
    CHECK(rc == 0, "start: %s", weft_strerror(rc));
    if (rc < 0)
        return 1;
    port = weft_http_server_port(srv);
    rc = weft_http_client_new(&cli, NULL);
    CHECK(rc == 0, "client: %s", weft_strerror(rc));
    if (rc == 0) {
        int64_t ids[2 * LOOPS];
        for (int i = 0; i < 2 * LOOPS; i++)
            ids[i] = weft_go_on(i % LOOPS, fetcher, NULL);
        for (int i = 0; i < 2 * LOOPS; i++)
            weft_join(ids[i], -1);
        weft_http_client_free(cli);
    }
    for (int j = 0; j < LOOPS; j++) /* what follows counts the plain clients' */
        __atomic_store_n(&served[j], 0, __ATOMIC_RELAXED);
    pthread_t t[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        pthread_create(&t[i], NULL, client, NULL);
    /* Until every loop has served a few, within a bounded time. */
    for (int i = 0; i < 500; i++) {
        int busy = 0;
        for (int j = 0; j < LOOPS; j++)
            busy += __atomic_load_n(&served[j], __ATOMIC_RELAXED) >= 5;
        if (busy == LOOPS)
            break;
        weft_sleep(20);
    }
    weft_join(weft_go_on(2, drain_on_loop, NULL), -1);
    weft_event_wait(exited, 30000);
    weft_http_server_free(srv);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(t[i], NULL);
    return 0;
}

int main(void)
{
    weft_config cfg = {.threads = LOOPS};
    CHECK(weft_event_new(&exited, 1) == 0, "event");
    int rc = weft_main(server_main, NULL, &cfg);
    CHECK(rc == 0, "weft_main: %s", weft_strerror(rc));
    for (int j = 0; j < LOOPS; j++)
        CHECK(served[j] > 0, "loop %d served nothing", j);
    CHECK(__atomic_load_n(&answered, __ATOMIC_RELAXED) > 0, "no response read");
    for (int j = 0; j < LOOPS; j++)
        CHECK(fetched[j] == 40 && reused[j] >= 38, "client on loop %d: %d of 40 fetched, %d reused",
              j, fetched[j], reused[j]);
    CHECK(drain_rc >= 0, "drain: %s", weft_strerror(drain_rc));
    CHECK(__atomic_load_n(&exits, __ATOMIC_SEQ_CST) == 1, "on_exit ran %d times", exits);
    weft_event_free(exited);
    if (failures)
        return 1;
    printf("check_http_threads: ok (%d responses, drain cancelled %d)\n", answered, drain_rc);
    return 0;
}
