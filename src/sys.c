/*
 * sys.c - the fault-injection side of the syscall seam (sys.h).  Compiled
 * only into the testing library: each wrapper counts its call and fails it
 * when the count reaches the armed value, otherwise calls through.
 */
#ifdef WEFT_TESTING
#include "sys.h"
#include "weft/testing.h"

#include <errno.h>
#include <sys/sendfile.h>

static __thread unsigned armed[WEFT_FAULT_KINDS];
static __thread int armed_err[WEFT_FAULT_KINDS];
static __thread unsigned long calls[WEFT_FAULT_KINDS];
static __thread unsigned long fired;

void weft_fault_set(weft_fault_kind kind, unsigned nth, int err)
{
    if ((unsigned)kind >= WEFT_FAULT_KINDS)
        return;
    armed[kind] = nth;
    armed_err[kind] = err;
}

void weft_fault_clear(void)
{
    for (int i = 0; i < WEFT_FAULT_KINDS; i++) {
        armed[i] = 0;
        calls[i] = 0;
    }
    fired = 0;
}

unsigned long weft_fault_calls(weft_fault_kind kind)
{
    return (unsigned)kind < WEFT_FAULT_KINDS ? calls[kind] : 0;
}

unsigned long weft_fault_fired(void)
{
    return fired;
}

/* True if this call of kind must fail; errno is then set. */
static int fail(weft_fault_kind kind)
{
    calls[kind]++;
    if (armed[kind] == 0 || --armed[kind] != 0)
        return 0;
    fired++;
    errno = armed_err[kind];
    return 1;
}

int weft__sys_fail(int kind)
{
    return (unsigned)kind < WEFT_FAULT_KINDS && fail((weft_fault_kind)kind);
}

int weft__sys_socket(int domain, int type, int proto)
{
    return fail(WEFT_FAULT_SOCKET) ? -1 : socket(domain, type, proto);
}

int weft__sys_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
    return fail(WEFT_FAULT_ACCEPT) ? -1 : accept4(fd, sa, len, flags);
}

int weft__sys_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    return fail(WEFT_FAULT_CONNECT) ? -1 : connect(fd, sa, len);
}

int weft__sys_bind(int fd, const struct sockaddr *sa, socklen_t len)
{
    return fail(WEFT_FAULT_BIND) ? -1 : bind(fd, sa, len);
}

int weft__sys_listen(int fd, int backlog)
{
    return fail(WEFT_FAULT_LISTEN) ? -1 : listen(fd, backlog);
}

ssize_t weft__sys_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *sa,
                         socklen_t len)
{
    return fail(WEFT_FAULT_SEND) ? -1 : sendto(fd, buf, n, flags, sa, len);
}

ssize_t weft__sys_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *sa,
                           socklen_t *len)
{
    return fail(WEFT_FAULT_RECV) ? -1 : recvfrom(fd, buf, n, flags, sa, len);
}

int weft__sys_sendmmsg(int fd, struct mmsghdr *v, unsigned n, int flags)
{
    return fail(WEFT_FAULT_SEND) ? -1 : sendmmsg(fd, v, n, flags);
}

int weft__sys_recvmmsg(int fd, struct mmsghdr *v, unsigned n, int flags, struct timespec *t)
{
    return fail(WEFT_FAULT_RECV) ? -1 : recvmmsg(fd, v, n, flags, t);
}

int weft__sys_socketpair(int domain, int type, int proto, int sv[2])
{
    return fail(WEFT_FAULT_SOCKET) ? -1 : socketpair(domain, type, proto, sv);
}

ssize_t weft__sys_send(int fd, const void *buf, size_t n, int flags)
{
    return fail(WEFT_FAULT_SEND) ? -1 : send(fd, buf, n, flags);
}

ssize_t weft__sys_sendmsg(int fd, const struct msghdr *m, int flags)
{
    return fail(WEFT_FAULT_SEND) ? -1 : sendmsg(fd, m, flags);
}

ssize_t weft__sys_recv(int fd, void *buf, size_t n, int flags)
{
    return fail(WEFT_FAULT_RECV) ? -1 : recv(fd, buf, n, flags);
}

ssize_t weft__sys_recvmsg(int fd, struct msghdr *m, int flags)
{
    return fail(WEFT_FAULT_RECV) ? -1 : recvmsg(fd, m, flags);
}

ssize_t weft__sys_sendfile(int out_fd, int in_fd, off_t *off, size_t n)
{
    return fail(WEFT_FAULT_SENDFILE) ? -1 : sendfile(out_fd, in_fd, off, n);
}

ssize_t weft__sys_pread(int fd, void *buf, size_t n, off_t off)
{
    return fail(WEFT_FAULT_PREAD) ? -1 : pread(fd, buf, n, off);
}

void *weft__sys_malloc(size_t n)
{
    return fail(WEFT_FAULT_MALLOC) ? NULL : malloc(n);
}

void *weft__sys_calloc(size_t n, size_t size)
{
    return fail(WEFT_FAULT_MALLOC) ? NULL : calloc(n, size);
}

void *weft__sys_realloc(void *p, size_t n)
{
    return fail(WEFT_FAULT_MALLOC) ? NULL : realloc(p, n);
}

void *weft__sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return fail(WEFT_FAULT_MMAP) ? MAP_FAILED : mmap(addr, len, prot, flags, fd, off);
}
#else
/* ISO C wants at least one declaration in a translation unit. */
typedef int weft__sys_unused;
#endif
