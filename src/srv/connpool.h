/*
 * connpool.h - what the connection pool offers the layers above it
 * beyond weft/pool.h.
 */
#ifndef WEFT_SRV_CONNPOOL_H
#define WEFT_SRV_CONNPOOL_H

#include "weft.h"

#include <stdbool.h>

/* weft_connpool_get_sni (servername NULL: weft_connpool_get), telling in
 * *reused whether the connection was an idle one kept from before (a
 * request sent on it may meet the server's close of it: RFC 9112 9.3.1),
 * rather than a new one. */
int weft__connpool_get(weft_connpool *p, weft_sock **out, const char *host, int port,
                       const char *servername, int64_t timeout_ms, bool *reused);

/* Makes p free its TLS context when its memory goes (after the last
 * connection of every loop has been closed), for a context made for the
 * pool alone.  Call it right after weft_connpool_new. */
void weft__connpool_own_tls(weft_connpool *p);

#endif /* WEFT_SRV_CONNPOOL_H */
