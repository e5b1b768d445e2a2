/*
 * weft/testing.h - fault injection, present only in the testing build of
 * the library (CMake target weft_testing, compiled with WEFT_TESTING).
 *
 * weft_fault_set(WEFT_FAULT_RECV, 3, ECONNRESET) makes the third recv-type
 * syscall weft makes from now on, on this thread, fail with ECONNRESET.
 * One fault per kind is armed at a time; it disarms itself once it fires.
 */
#ifndef WEFT_TESTING_H
#define WEFT_TESTING_H

#include "../weft.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum weft_fault_kind {
    WEFT_FAULT_SOCKET,   /* socket(), socketpair() */
    WEFT_FAULT_ACCEPT,   /* accept4() */
    WEFT_FAULT_CONNECT,  /* connect() */
    WEFT_FAULT_BIND,     /* bind() */
    WEFT_FAULT_LISTEN,   /* listen() */
    WEFT_FAULT_SEND,     /* send(), sendmsg(), sendto(), sendmmsg() */
    WEFT_FAULT_RECV,     /* recv(), recvmsg(), recvfrom(), recvmmsg() */
    WEFT_FAULT_MALLOC,   /* malloc(), calloc(), realloc() */
    WEFT_FAULT_MMAP,     /* mmap() of coroutine stacks */
    WEFT_FAULT_RING,     /* io_uring: setting a ring up; room for a submission (the
                          * operation is then done with a syscall, as on epoll).  An
                          * operation the ring carries out counts as a call of its
                          * kind (SEND, RECV) and fails before it is submitted */
    WEFT_FAULT_SENDFILE, /* sendfile() of a file to a socket */
    WEFT_FAULT_PREAD,    /* pread() of a file */
    WEFT_FAULT_KINDS
} weft_fault_kind;

/* Arms kind to fail its nth call from now (nth >= 1) with errno err.
 * nth 0 disarms it.  Per thread. */
WEFT_EXTERN void weft_fault_set(weft_fault_kind kind, unsigned nth, int err);
/* Disarms every kind and zeroes the counters, on this thread. */
WEFT_EXTERN void weft_fault_clear(void);
/* Calls of kind made on this thread since the last weft_fault_clear. */
WEFT_EXTERN unsigned long weft_fault_calls(weft_fault_kind kind);
/* How many injected failures have fired on this thread since the last clear. */
WEFT_EXTERN unsigned long weft_fault_fired(void);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_TESTING_H */
