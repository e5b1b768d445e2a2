/*
 * sys.h - the one seam every syscall and allocation of weft goes through.
 *
 * In normal builds these are the libc functions themselves.  A testing build
 * (WEFT_TESTING, the library the test suite links) routes them through
 * sys.c, where include/weft/testing.h can make the Nth call of one kind fail
 * with a chosen errno, so error paths are tested against exact outcomes.
 */
#ifndef WEFT_SYS_H
#define WEFT_SYS_H

#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The fault kinds (weft_fault_kind), which the library names in every build. */
#include "weft/testing.h"

#ifdef WEFT_TESTING
int weft__sys_socket(int domain, int type, int proto);
int weft__sys_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags);
int weft__sys_connect(int fd, const struct sockaddr *sa, socklen_t len);
int weft__sys_bind(int fd, const struct sockaddr *sa, socklen_t len);
int weft__sys_listen(int fd, int backlog);
ssize_t weft__sys_send(int fd, const void *buf, size_t n, int flags);
ssize_t weft__sys_sendmsg(int fd, const struct msghdr *m, int flags);
ssize_t weft__sys_recv(int fd, void *buf, size_t n, int flags);
ssize_t weft__sys_recvmsg(int fd, struct msghdr *m, int flags);
ssize_t weft__sys_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *sa,
                         socklen_t len);
ssize_t weft__sys_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *sa,
                           socklen_t *len);
int weft__sys_sendmmsg(int fd, struct mmsghdr *v, unsigned n, int flags);
int weft__sys_recvmmsg(int fd, struct mmsghdr *v, unsigned n, int flags, struct timespec *t);
int weft__sys_socketpair(int domain, int type, int proto, int sv[2]);
ssize_t weft__sys_sendfile(int out_fd, int in_fd, off_t *off, size_t n);
ssize_t weft__sys_pread(int fd, void *buf, size_t n, off_t off);
void *weft__sys_malloc(size_t n);
void *weft__sys_calloc(size_t n, size_t size);
void *weft__sys_realloc(void *p, size_t n);
void *weft__sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
/* For what is not a libc call (io_uring): counts a call of kind (a
 * weft_fault_kind) and returns 1, with errno set, if it must fail. */
int weft__sys_fail(int kind);
#else
#define weft__sys_fail(kind) 0
#define weft__sys_socket socket
#define weft__sys_accept4 accept4
#define weft__sys_connect connect
#define weft__sys_bind bind
#define weft__sys_listen listen
#define weft__sys_send send
#define weft__sys_sendmsg sendmsg
#define weft__sys_recv recv
#define weft__sys_recvmsg recvmsg
#define weft__sys_sendto sendto
#define weft__sys_recvfrom recvfrom
#define weft__sys_sendmmsg sendmmsg
#define weft__sys_recvmmsg recvmmsg
#define weft__sys_socketpair socketpair
#define weft__sys_sendfile sendfile
#define weft__sys_pread pread
#define weft__sys_malloc malloc
#define weft__sys_calloc calloc
#define weft__sys_realloc realloc
#define weft__sys_mmap mmap
#endif

#endif /* WEFT_SYS_H */
