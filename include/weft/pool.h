/*
 * weft/pool.h - pools: objects kept per loop, and pooled TCP and TLS connections.
 * Part of weft.h, which is the one header to include; the conventions at
 * the top of weft.h hold for every function here.
 */
#ifndef WEFT_H_POOL
#define WEFT_H_POOL

#include "net.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H_POOL */
