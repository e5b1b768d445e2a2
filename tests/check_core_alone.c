/*
 * check_core_alone.c - the coroutine and scheduler layers, linked without
 * net, names or TLS (tests/CMakeLists.txt builds them alone with this
 * file): the loop must know nothing above it.  Runs a few coroutines that
 * sleep and join, and exits 0.
 */
#include "internal.h"

#include <stdio.h>

/* No layer above the scheduler takes part in making a loop. */
const weft__module *const weft__modules[] = {NULL};

static int order[3], n;

static void sleeper(void *arg)
{
    int ms = (int)(intptr_t)arg;
    weft_sleep(ms);
    order[n++] = ms;
}

static int main_co(void *arg)
{
    (void)arg;
    int64_t a = weft_go(sleeper, (void *)(intptr_t)30);
    int64_t b = weft_go(sleeper, (void *)(intptr_t)10);
    int64_t c = weft_go(sleeper, (void *)(intptr_t)20);
    if (a < 0 || b < 0 || c < 0)
        return 1;
    return weft_join(a, -1) || weft_join(b, -1) || weft_join(c, -1);
}

int main(void)
{
    int rc = weft_main(main_co, NULL, NULL);
    if (rc != 0 || n != 3 || order[0] != 10 || order[1] != 20 || order[2] != 30) {
        fprintf(stderr, "check_core_alone: rc %d, %d sleepers, order %d %d %d\n", rc, n, order[0],
                order[1], order[2]);
        return 1;
    }
    puts("check_core_alone: ok");
    return 0;
}
