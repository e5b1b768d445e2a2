/*
 * resolve_system.c - the "system" resolver: getaddrinfo (so nsswitch,
 * mDNS, LDAP... all apply) on a small pool of worker threads.
 *
 * A lookup is a job owned by an owner: a loop, or one blocking call made
 * outside any coroutine.  The worker hands a finished job back to its
 * owner's done list and writes the owner's eventfd; the owner's thread
 * wakes whoever waits.  A caller that gives up (timeout, cancel) leaves the
 * job behind marked abandoned and its owner frees it when it comes back;
 * an owner that goes away detaches its jobs and the workers free them.
 * So no lookup ever blocks a loop, and none outlives its memory.
 */
#include "sock.h"
#include "names.h"

#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_WORKERS 4

typedef struct owner owner;

typedef struct job {
    struct job *prev, *next; /* owner's jobs not yet handed back */
    struct job *link;        /* the pool's queue, then the owner's done list */
    owner *own;              /* NULL once the owner has gone: the worker frees it */
    char *name;
    int family;
    bool canon;
    int rc;
    weft__names_result r;
    /* owner's thread only */
    bool done, abandoned;
    weft__waitq waiters;
} job;

struct owner {
    weft__pollent pe; /* the eventfd; first member */
    weft_loop *loop;  /* NULL for a blocking call's owner */
    job *jobs;        /* outstanding */
    job *done;        /* handed back, not yet delivered */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER;
static job *queue_head, *queue_tail;
static int workers, idle;

static void job_free(job *j)
{
    weft__names_result_free(&j->r);
    free(j->name);
    free(j);
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

static void run(job *j)
{
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

static void *worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    for (;;) {
        while (!queue_head) {
            idle++;
            pthread_cond_wait(&work, &mu);
            idle--;
        }
        job *j = queue_head;
        queue_head = j->link;
        if (!queue_head)
            queue_tail = NULL;
        pthread_mutex_unlock(&mu);
        run(j);
        pthread_mutex_lock(&mu);
        owner *o = j->own;
        if (!o) {
            job_free(j);
            continue;
        }
        if (j->prev)
            j->prev->next = j->next;
        else
            o->jobs = j->next;
        if (j->next)
            j->next->prev = j->prev;
        j->link = o->done;
        o->done = j;
        uint64_t one = 1;
        ssize_t ignored = write(o->pe.fd, &one, sizeof one);
        (void)ignored;
    }
    return NULL;
}

/* Queues j for the pool, starting a worker if none is idle. */
static int submit(owner *o, job *j)
{
    pthread_mutex_lock(&mu);
    if (idle == 0 && workers < MAX_WORKERS) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        if (pthread_create(&t, &attr, worker, NULL) == 0)
            workers++;
        pthread_attr_destroy(&attr);
        if (workers == 0) {
            pthread_mutex_unlock(&mu);
            return -EAGAIN;
        }
    }
    j->own = o;
    j->prev = NULL;
    j->next = o->jobs;
    if (o->jobs)
        o->jobs->prev = j;
    o->jobs = j;
    j->link = NULL;
    if (queue_tail)
        queue_tail->link = j;
    else
        queue_head = j;
    queue_tail = j;
    pthread_cond_signal(&work);
    pthread_mutex_unlock(&mu);
    return 0;
}

/* Delivers what the workers handed back: wakes the waiters, frees what
 * was abandoned.  On the owner's thread. */
static void deliver(owner *o)
{
    uint64_t n;
    ssize_t ignored = read(o->pe.fd, &n, sizeof n);
    (void)ignored;
    pthread_mutex_lock(&mu);
    job *j = o->done;
    o->done = NULL;
    pthread_mutex_unlock(&mu);
    while (j) {
        job *next = j->link;
        j->done = true;
        if (j->abandoned)
            job_free(j);
        else
            weft__wake_all(&j->waiters, 0);
        j = next;
    }
}

static void on_owner_event(weft__pollent *pe, int events)
{
    (void)events;
    deliver((owner *)pe);
}

static int owner_new(owner **out, weft_loop *l)
{
    owner *o = weft__sys_calloc(1, sizeof *o);
    if (!o)
        return -ENOMEM;
    o->pe.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (o->pe.fd < 0) {
        int rc = -errno;
        free(o);
        return rc;
    }
    o->pe.on_event = on_owner_event;
    o->loop = l;
    if (l) {
        int rc = l->be->arm(l, &o->pe, WEFT__EV_IN);
        if (rc < 0) {
            close(o->pe.fd);
            free(o);
            return rc;
        }
    }
    *out = o;
    return 0;
}

/* Detaches o's outstanding jobs (their workers free them), frees what was
 * handed back but not delivered, and o itself. */
static void owner_free(owner *o)
{
    if (o->loop)
        o->loop->be->disarm(o->loop, &o->pe);
    pthread_mutex_lock(&mu);
    for (job *j = o->jobs; j; j = j->next)
        j->own = NULL;
    job *d = o->done;
    o->done = NULL;
    pthread_mutex_unlock(&mu);
    while (d) {
        job *next = d->link;
        job_free(d);
        d = next;
    }
    close(o->pe.fd);
    free(o);
}

void weft__system_loop_free(weft_loop *l, weft__names_loop *n)
{
    (void)l;
    if (n->sys)
        owner_free(n->sys);
    n->sys = NULL;
}

static int take_result(weft__names_result *r, job *j)
{
    int rc = j->rc;
    if (rc == 0) {
        *r = j->r;
        memset(&j->r, 0, sizeof j->r);
    }
    job_free(j);
    return rc;
}

int weft__system_lookup(weft__names_result *r, const char *name, int family, bool canon,
                        int64_t deadline)
{
    job *j = weft__sys_calloc(1, sizeof *j);
    if (!j || !(j->name = strdup(name))) {
        free(j);
        return -ENOMEM;
    }
    j->family = family;
    j->canon = canon;
    weft_loop *l = weft__tls_loop;
    int rc;
    if (l && l->current) {
        weft__names_loop *n = weft__names_loop_of(l);
        owner *o = n->sys;
        if (!o && (rc = owner_new(&o, l)) < 0)
            goto fail;
        n->sys = o;
        if ((rc = submit(o, j)) < 0)
            goto fail;
        while (!j->done) {
            weft__wait w;
            rc = weft__park(&w, &j->waiters, deadline);
            if (rc < 0 && !j->done) {
                j->abandoned = true; /* freed when it comes back */
                return rc;
            }
        }
        return take_result(r, j);
    }
    /* No coroutine to park: wait on the thread for this one job. */
    owner *o;
    if ((rc = owner_new(&o, NULL)) < 0)
        goto fail;
    if ((rc = submit(o, j)) < 0) {
        owner_free(o);
        goto fail;
    }
    for (;;) {
        rc = weft__fd_poll(o->pe.fd, WEFT__EV_IN, deadline);
        if (rc < 0)
            break;
        deliver(o);
        if (j->done)
            break;
    }
    if (j->done) {
        owner_free(o);
        return take_result(r, j);
    }
    owner_free(o); /* detaches j: its worker frees it */
    return rc;
fail:
    job_free(j);
    return rc;
}
