/* A user's program: a coroutine that looks up localhost and listens. */
#include <weft.h>

#include <stdio.h>

static int run(void *arg)
{
    (void)arg;
    weft_sock *l;
    int rc = weft_tcp_listen(&l, "localhost", 0, 0, 0);
    if (rc < 0)
        return rc;
    weft_close(l);
    return 0;
}

int main(void)
{
    int rc = weft_main(run, NULL, NULL);
    printf("user: %s\n", weft_strerror(rc));
    return rc != 0;
}
