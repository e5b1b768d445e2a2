/*
 * error.c - names and descriptions for every code weft returns: negative
 * errno values, and weft's own ranges (lookup near -3000, TLS near -4000).
 */
#include "sock.h"

#include <string.h>

typedef struct own_code {
    int code;
    const char *name, *desc;
} own_code;

static const own_code own[] = {
    { WEFT_EAI_NONAME, "WEFT_EAI_NONAME", "no such host name" },
    { WEFT_EAI_NODATA, "WEFT_EAI_NODATA", "host name has no address of the requested family" },
    { WEFT_EAI_FAIL, "WEFT_EAI_FAIL", "name server failure" },
    { WEFT_EAI_REFUSED, "WEFT_EAI_REFUSED", "name server refused the query" },
    { WEFT_EAI_TIMEOUT, "WEFT_EAI_TIMEOUT", "no name server answered" },
    { WEFT_EAI_SERVICE, "WEFT_EAI_SERVICE", "unknown service for this socket type" },
    { WEFT_EAI_FAMILY, "WEFT_EAI_FAMILY", "address family not supported for lookup" },
    { WEFT_EAI_BADNAME, "WEFT_EAI_BADNAME", "not a valid host name" },
    { WEFT_ETLS_HANDSHAKE, "WEFT_ETLS_HANDSHAKE", "TLS handshake failed" },
    { WEFT_ETLS_UNTRUSTED, "WEFT_ETLS_UNTRUSTED", "TLS certificate not trusted" },
    { WEFT_ETLS_NAME, "WEFT_ETLS_NAME", "TLS certificate does not match the host name" },
    { WEFT_ETLS_EXPIRED, "WEFT_ETLS_EXPIRED", "TLS certificate expired or not yet valid" },
    { WEFT_ETLS_ALERT, "WEFT_ETLS_ALERT", "TLS peer sent a fatal alert" },
    { WEFT_ETLS_TRUNCATED, "WEFT_ETLS_TRUNCATED", "TLS peer closed without close_notify" },
    { WEFT_ETLS_PROTOCOL, "WEFT_ETLS_PROTOCOL", "TLS protocol error: peer did not speak TLS" },
    { WEFT_ETLS_CERT, "WEFT_ETLS_CERT", "TLS certificate, key or CA could not be loaded" },
};

static const own_code *find_own(int code)
{
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (own[i].code == code)
            return &own[i];
    return NULL;
}

const char *weft_strerror(int code)
{
    if (code == 0)
        return "success";
    if (code < 0 && code > -3000) {
#ifdef WEFT_HAVE_STRERRORDESC_NP
        const char *d = strerrordesc_np(-code);
        if (d)
            return d;
#else
        return strerror(-code);
#endif
    }
    const own_code *c = find_own(code);
    return c ? c->desc : "unknown error";
}

const char *weft_err_name(int code)
{
    if (code == 0)
        return "OK";
    if (code < 0 && code > -3000) {
#ifdef WEFT_HAVE_STRERRORDESC_NP
        const char *n = strerrorname_np(-code);
        if (n)
            return n;
#endif
    }
    const own_code *c = find_own(code);
    return c ? c->name : "UNKNOWN";
}
