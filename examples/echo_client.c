/*
 * echo_client.c - connects to an echo server, sends one message, reads the
 * echo back and prints it.
 *
 * usage: echo_client HOST PORT [MESSAGE]
 * HOST is a numeric IPv4 or IPv6 address.  The code is straight-line: each
 * call waits for its result inside a coroutine, bounded by a timeout.
 * Exits 0 if the whole message came back unchanged.
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

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: echo_client HOST PORT [MESSAGE]\n");
        return 2;
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
