/*
 * url.h - the URLs of weft's HTTP client: an absolute http or https URL
 * taken apart into what a request needs, and a Location resolved against
 * the URL it came from (RFC 3986 5.2).  Both take bytes from the network
 * (a Location), so both are strict and fuzzed (fuzz/url.c).
 */
#ifndef WEFT_HTTP_URL_H
#define WEFT_HTTP_URL_H

#include <stdbool.h>
#include <stddef.h>

/* A URL taken apart; every string in mem. */
typedef struct weft__http_url {
    char *mem;
    bool tls;
    int port;
    const char *host;     /* to connect to: a name or an address, no brackets */
    const char *hostport; /* for Host: bracketed IPv6, the port unless default */
    const char *target;   /* path and query, "/" at least */
    const char *full;     /* scheme://hostport target */
} weft__http_url;

/* Takes s[0..n) apart into *u: scheme http or https (any case), a host
 * (a name weft_resolve takes, an IPv4 address, or an [IPv6] literal
 * without zone), an optional port (1..65535; ":" alone is the default),
 * then the path and query; a fragment is dropped.  Every byte must be
 * visible ASCII (no space, no control, nothing percent-encoding would
 * have hidden).  Returns 0 with *u to free with weft__http_url_free,
 * -EINVAL (not an absolute URL of a host, a bad byte, user info, a bad
 * port), -EPROTONOSUPPORT (another scheme), -ENOMEM. */
int weft__http_url_parse(weft__http_url *u, const char *s, size_t n);
void weft__http_url_free(weft__http_url *u);

/* The absolute URL that the reference loc[0..n) (a Location) names,
 * relative to base (RFC 3986 5.2: absolute, scheme-relative "//host",
 * absolute path, query only, relative path; dot segments removed),
 * malloc'd and NUL-terminated in *out, for weft__http_url_parse to check.
 * Returns 0, -EBADMSG (a byte that is not visible ASCII), -ENOMEM. */
int weft__http_url_join(const weft__http_url *base, const char *loc, size_t n, char **out);

#endif /* WEFT_HTTP_URL_H */
