/*
 * weft/sync.h - coroutine-aware sync: channels and select, mutexes,
 * conditions, events, wait groups, semaphores.
 * Part of weft.h, which is the one header to include; the conventions at
 * the top of weft.h hold for every function here.
 */
#ifndef WEFT_H_SYNC
#define WEFT_H_SYNC

#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H_SYNC */
