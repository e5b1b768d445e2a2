/*
 * modules.c - the parts of weft that take part in making a loop, in the
 * order they do: the worker pool's settings, then the names layer's.  The
 * loop walks this table at weft_loop_new and knows nothing else of them;
 * each keeps what it needs on the loop through weft__loop_ext.
 */
#include "net/sock.h"

const weft__module *const weft__modules[] = {
    &weft__pool_module,
    &weft__names_module,
    NULL,
};
