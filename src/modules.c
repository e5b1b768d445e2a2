/*
 * modules.c - the layers above the scheduler that take part in making a
 * loop, in the order they do.  The scheduler walks this table at
 * weft_loop_new and knows nothing else of them; each layer keeps what it
 * needs on the loop through weft__loop_ext.
 */
#include "net/sock.h"

const weft__module *const weft__modules[] = {
    &weft__names_module,
    NULL,
};
