/*
 * resolve_system.c - the "system" resolver: getaddrinfo (so nsswitch,
 * mDNS, LDAP... all apply) on the process's worker pool (sched/blocking.c),
 * the one weft_blocking uses.
 *
 * A lookup is a job on the heap.  A caller that gives up (timeout, cancel,
 * its loop being freed) withdraws it if no worker has taken it yet, and
 * otherwise leaves it behind, and the worker frees it when getaddrinfo
 * returns.  So no lookup ever blocks a loop, none outlives its memory, and
 * a loop keeps nothing of its own for them.
 */
#include "sock.h"
#include "names.h"

#include <netdb.h>
#include <stdlib.h>
#include <string.h>

typedef struct lookup {
    weft__job job; /* first member */
    char *name;
    int family;
    bool canon;
    int rc;
    weft__names_result r;
} lookup;

static void lookup_free(weft__job *j)
{
    lookup *k = (lookup *)j;
    weft__names_result_free(&k->r);
    free(k->name);
    free(k);
}

static int map_gai(int e)
{
    switch (e) {
    case EAI_NONAME: return WEFT_EAI_NONAME;
#ifdef EAI_NODATA
    case EAI_NODATA: return WEFT_EAI_NODATA;
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY: return WEFT_EAI_NODATA;
#endif
    case EAI_FAMILY: return WEFT_EAI_FAMILY;
    case EAI_MEMORY: return -ENOMEM;
    case EAI_SYSTEM: return errno ? -errno : WEFT_EAI_FAIL;
    default: return WEFT_EAI_FAIL; /* EAI_AGAIN and EAI_FAIL: the server failed or went silent */
    }
}

static void lookup_run(weft__job *job)
{
    lookup *j = (lookup *)job; /* on a worker */
    struct addrinfo hints = {.ai_family = j->family, .ai_socktype = SOCK_STREAM};
    hints.ai_flags = j->canon ? AI_CANONNAME : 0;
    struct addrinfo *res = NULL;
    int e = getaddrinfo(j->name, NULL, &hints, &res);
    if (e != 0) {
        j->rc = map_gai(e);
        return;
    }
    j->rc = 0;
    for (struct addrinfo *a = res; a && j->rc == 0; a = a->ai_next)
        j->rc = weft__names_result_add(&j->r, a->ai_addr, a->ai_addrlen);
    if (j->rc == 0 && j->r.n == 0)
        j->rc = WEFT_EAI_NODATA;
    if (j->rc == 0 && j->canon && res->ai_canonname && !(j->r.canon = strdup(res->ai_canonname)))
        j->rc = -ENOMEM;
    freeaddrinfo(res);
}

void weft__system_loop_free(weft_loop *l, weft__names_loop *n)
{
    /* Nothing per loop: lookups left behind are the pool's. */
    (void)l;
    (void)n;
}

int weft__system_lookup(weft__names_result *r, const char *name, int family, bool canon,
                        int64_t deadline)
{
    lookup *k = weft__sys_calloc(1, sizeof *k);
    if (!k || !(k->name = strdup(name))) {
        free(k);
        return -ENOMEM;
    }
    k->job.run = lookup_run;
    k->job.release = lookup_free;
    k->family = family;
    k->canon = canon;
    int rc = weft__pool_run(&k->job, deadline);
    if (rc < 0)
        return rc; /* k is the pool's */
    if ((rc = k->rc) == 0) {
        *r = k->r;
        memset(&k->r, 0, sizeof k->r);
    }
    lookup_free(&k->job);
    return rc;
}
