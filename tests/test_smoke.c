/* test_smoke.c - one echo round trip between two coroutines: if this fails,
 * look here before anywhere else. */
#include "helpers.h"

#include <criterion/criterion.h>

static int port;
static ssize_t got_server, got_client;
static char reply[16];

static void server(void *arg)
{
    weft_sock *l = arg, *c;
    if (weft_tcp_accept(l, &c, 2000) < 0)
        return;
    char buf[64];
    got_server = weft_recv(c, buf, sizeof buf, 2000);
    if (got_server > 0)
        weft_send(c, buf, (size_t)got_server, 2000);
    weft_close(c);
}

static void client(void *arg)
{
    (void)arg;
    weft_sock *c;
    if (weft_tcp_connect(&c, "127.0.0.1", port, 2000) < 0)
        return;
    weft_send(c, "hello", 5, 2000);
    got_client = weft_recvn(c, reply, 5, 2000);
    weft_close(c);
}

static int both(void *arg)
{
    (void)arg;
    weft_sock *l;
    port = listen_any(&l, "127.0.0.1");
    if (port <= 0)
        return port;
    int64_t s = weft_go(server, l);
    weft_go(client, NULL);
    int rc = weft_join(s, 5000);
    weft_close(l);
    return rc;
}

Test(smoke, echo_once, .timeout = 30)
{
    int fds = count_fds();
    cr_assert_eq(weft_main(both, NULL, NULL), 0);
    cr_assert_eq(got_server, 5);
    cr_assert_eq(got_client, 5);
    cr_assert_str_eq(reply, "hello");
    cr_assert_eq(count_fds(), fds);
}
