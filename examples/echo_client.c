/*
 * echo_client.c - connects to an echo server, sends one message, reads the
 * echo back and prints it.
 *
 * usage: echo_client HOST PORT [MESSAGE]
 *        echo_client HOST PORT -b BYTES
 * HOST is a name or an IPv4 or IPv6 address (a name's addresses are raced,
 * Happy Eyeballs).  The code is straight-line: each
 * call waits for its result inside a coroutine, bounded by a timeout.
 * Exits 0 if the whole message came back unchanged.
 *
 * With -b, BYTES of generated data go out from a second coroutine while
 * this one waits a little before it starts reading, so the server finds
 * its sends blocked; every byte that comes back is checked.
 */
#include <weft.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIMEOUT_MS 5000

struct job {
    const char *host;
    int port;
    const char *msg;
};

static int fail(const char *what, int rc)
{
    fprintf(stderr, "echo_client: %s: %s\n", what, weft_strerror(rc));
    return 1;
}

static int client(void *arg)
{
    struct job *j = arg;
    size_t len = strlen(j->msg);
    weft_sock *s;
    int rc = weft_tcp_connect(&s, j->host, j->port, TIMEOUT_MS);
    if (rc < 0)
        return fail("connect", rc);

    char *reply = malloc(len + 1);
    ssize_t n = reply ? weft_send(s, j->msg, len, TIMEOUT_MS) : -ENOMEM;
    if (n >= 0)
        n = weft_recvn(s, reply, len, TIMEOUT_MS);
    weft_close(s);
    if (n < 0) {
        free(reply);
        return fail("echo", (int)n);
    }
    if ((size_t)n != len || memcmp(reply, j->msg, len) != 0) {
        fprintf(stderr, "echo_client: %s\n",
                n == 0 ? "the server closed the connection" : "the echo differs");
        free(reply);
        return 1;
    }
    reply[len] = '\0';
    printf("%s\n", reply);
    free(reply);
    return 0;
}

static unsigned char pattern(size_t i)
{
    return (unsigned char)((i * 2654435761u) >> 13);
}

struct bulk {
    weft_sock *s;
    size_t bytes;
    ssize_t rc;
};

static void bulk_writer(void *arg)
{
    struct bulk *b = arg;
    unsigned char chunk[16384];
    for (size_t off = 0; off < b->bytes && b->rc >= 0; off += sizeof chunk) {
        size_t n = b->bytes - off < sizeof chunk ? b->bytes - off : sizeof chunk;
        for (size_t i = 0; i < n; i++)
            chunk[i] = pattern(off + i);
        b->rc = weft_send(b->s, chunk, n, TIMEOUT_MS);
    }
}

static int bulk_client(void *arg)
{
    struct job *j = arg;
    struct bulk b = {NULL, (size_t)strtoull(j->msg, NULL, 10), 0};
    int rc = weft_tcp_connect(&b.s, j->host, j->port, TIMEOUT_MS);
    if (rc < 0)
        return fail("connect", rc);
    int64_t writer = weft_go(bulk_writer, &b);
    weft_sleep(300); /* the server's sends fill the buffers and wait */
    unsigned char buf[16384];
    size_t got = 0;
    ssize_t n = writer < 0 ? writer : 0;
    while (n >= 0 && got < b.bytes) {
        n = weft_recv(b.s, buf, sizeof buf, TIMEOUT_MS);
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != pattern(got + (size_t)i)) {
                fprintf(stderr, "echo_client: byte %zu differs\n", got + (size_t)i);
                n = -EBADMSG;
                break;
            }
        if (n == 0)
            n = -ECONNRESET; /* closed early */
        else if (n > 0)
            got += (size_t)n;
    }
    if (writer >= 0)
        weft_join(writer, -1);
    weft_close(b.s);
    if (n < 0 || b.rc < 0)
        return fail("bulk echo", n < 0 ? (int)n : (int)b.rc);
    printf("echoed %zu bytes\n", got);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: echo_client HOST PORT [MESSAGE]\n"
                        "       echo_client HOST PORT -b BYTES\n");
        return 2;
    }
    if (argc == 5 && strcmp(argv[3], "-b") == 0) {
        struct job j = {argv[1], atoi(argv[2]), argv[4]};
        if (strtoull(argv[4], NULL, 10) == 0) {
            fprintf(stderr, "echo_client: BYTES must be a positive number\n");
            return 2;
        }
        int rc = weft_main(bulk_client, &j, NULL);
        return rc < 0 ? fail("weft_main", rc) : rc;
    }
    struct job j = {argv[1], atoi(argv[2]), argc > 3 ? argv[3] : "hello, weft"};
    if (!*j.msg) {
        fprintf(stderr, "echo_client: MESSAGE must not be empty\n");
        return 2;
    }
    int rc = weft_main(client, &j, NULL);
    if (rc < 0)
        return fail("weft_main", rc);
    return rc;
}
