/*
 * error.c - names and descriptions for every code weft returns: negative
 * errno values, and weft's own ranges (lookup near -3000, TLS near -4000)
 * as those layers arrive.
 */
#include "internal.h"

#include <string.h>

const char *weft_strerror(int code)
{
    if (code == 0)
        return "success";
    if (code < 0 && code > -4096) {
#ifdef WEFT_HAVE_STRERRORDESC_NP
        const char *d = strerrordesc_np(-code);
        if (d)
            return d;
#else
        return strerror(-code);
#endif
    }
    return "unknown error";
}

const char *weft_err_name(int code)
{
    if (code == 0)
        return "OK";
    if (code < 0 && code > -4096) {
#ifdef WEFT_HAVE_STRERRORDESC_NP
        const char *n = strerrorname_np(-code);
        if (n)
            return n;
#endif
    }
    return "UNKNOWN";
}
