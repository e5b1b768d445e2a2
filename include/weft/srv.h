/*
 * weft/srv.h - servers: a listener and a coroutine per connection, closing later.
 * Part of weft.h, which is the one header to include; the conventions at
 * the top of weft.h hold for every function here.
 */
#ifndef WEFT_H_SRV
#define WEFT_H_SRV

#include "net.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H_SRV */
