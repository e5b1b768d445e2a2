/*
 * url.c - URLs for the HTTP client (url.h).
 */
#include "http/url.h"
#include "http/parse.h"
#include "internal.h"
#include "net/names.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool ieq(const char *a, size_t n, const char *b)
{
    return strlen(b) == n && strncasecmp(a, b, n) == 0;
}

int weft__http_url_parse(weft__http_url *u, const char *s, size_t n)
{
    memset(u, 0, sizeof *u);
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return -EINVAL;
    size_t i = 0;
    while (i < n && (WEFT__HTTP_CLS(s[i]) & WEFT__HTTP_TCHAR) && s[i] != ':')
        i++; /* scheme characters are a subset of a token's */
    if (i == 0 || i == n || s[i] != ':')
        return -EINVAL;
    if (ieq(s, i, "http"))
        u->tls = false, u->port = 80;
    else if (ieq(s, i, "https"))
        u->tls = true, u->port = 443;
    else
        return -EPROTONOSUPPORT;
    if (n - i < 3 || memcmp(s + i, "://", 3) != 0)
        return -EINVAL;
    size_t a = i + 3, e = a;
    while (e < n && s[e] != '/' && s[e] != '?' && s[e] != '#')
        e++;
    if (memchr(s + a, '@', e - a))
        return -EINVAL;
    size_t h0, h1, p; /* host s[h0..h1), then the port's ':' at p, or e */
    char host[256];
    if (a < e && s[a] == '[') {
        const char *rb = memchr(s + a, ']', e - a);
        if (!rb)
            return -EINVAL;
        h0 = a + 1, h1 = (size_t)(rb - s), p = h1 + 1;
        if (p < e && s[p] != ':')
            return -EINVAL;
        unsigned char a6[16];
        if (h1 - h0 >= sizeof host)
            return -EINVAL;
        memcpy(host, s + h0, h1 - h0);
        host[h1 - h0] = 0;
        if (inet_pton(AF_INET6, host, a6) != 1)
            return -EINVAL; /* a zone ("%eth0") included */
    } else {
        const char *colon = memchr(s + a, ':', e - a);
        h0 = a, h1 = colon ? (size_t)(colon - s) : e, p = h1;
        if (h1 - h0 >= sizeof host)
            return -EINVAL;
        memcpy(host, s + h0, h1 - h0);
        host[h1 - h0] = 0;
        struct in_addr a4;
        if (inet_pton(AF_INET, host, &a4) != 1 && !weft__names_valid(host))
            return -EINVAL; /* empty, or not a name */
    }
    if (p < e) { /* ":port", or ":" alone (the default, RFC 3986 3.2.3) */
        long v = 0;
        if (e - p - 1 > 5)
            return -EINVAL;
        for (size_t k = p + 1; k < e; k++) {
            if (s[k] < '0' || s[k] > '9')
                return -EINVAL;
            v = v * 10 + (s[k] - '0');
        }
        if (e - p > 1) {
            if (v < 1 || v > 65535)
                return -EINVAL;
            u->port = (int)v;
        }
    }
    size_t t1 = e; /* the target s[e..t1), up to a fragment */
    while (t1 < n && s[t1] != '#')
        t1++;
    size_t hlen = h1 - h0;
    size_t need = hlen + 1 + hlen + 2 + 7 + (t1 - e) + 2 + 8 + hlen + 2 + 7 + (t1 - e) + 2;
    if (!(u->mem = weft__sys_malloc(need)))
        return -ENOMEM;
    char *m = u->mem;
    u->host = m;
    memcpy(m, host, hlen + 1);
    m += hlen + 1;
    bool v6 = s[a] == '[';
    bool dflt = u->port == (u->tls ? 443 : 80);
    u->hostport = m;
    m += sprintf(m, "%s%s%s", v6 ? "[" : "", host, v6 ? "]" : "");
    if (!dflt)
        m += sprintf(m, ":%d", u->port);
    m++;
    u->target = m;
    if (e == t1 || s[e] != '/')
        *m++ = '/'; /* "http://h" and "http://h?q" ask for "/" */
    memcpy(m, s + e, t1 - e);
    m += t1 - e;
    *m++ = 0;
    u->full = m;
    sprintf(m, "%s://%s%s", u->tls ? "https" : "http", u->hostport, u->target);
    return 0;
}

void weft__http_url_free(weft__http_url *u)
{
    free(u->mem);
    u->mem = NULL;
}

/* Removes "." and ".." segments from the path that starts p (at its '/'),
 * up to its '?' or '#' or the end, in place (RFC 3986 5.2.4). */
static void drop_dots(char *p)
{
    char *end = p + strcspn(p, "?#");
    char *out = p; /* written: p[0..out) */
    char *in = p;
    while (in < end) {
        /* in is at a '/': the segment is in[1..seg_end) */
        char *seg = in + 1;
        char *se = seg;
        while (se < end && *se != '/')
            se++;
        size_t sl = (size_t)(se - seg);
        bool last = se == end;
        if (sl == 1 && seg[0] == '.') {
            if (last)
                *out++ = '/';
        } else if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
            while (out > p && *--out != '/')
                ;
            if (last)
                *out++ = '/';
        } else {
            memmove(out, in, (size_t)(se - in));
            out += se - in;
        }
        in = se;
    }
    if (out == p)
        *out++ = '/';
    memmove(out, end, strlen(end) + 1);
}

int weft__http_url_join(const weft__http_url *base, const char *loc, size_t n, char **out)
{
    for (size_t i = 0; i < n; i++)
        if (loc[i] < 0x21 || loc[i] > 0x7e)
            return -EBADMSG;
    size_t sch = 0;
    while (sch < n && loc[sch] != ':' && loc[sch] != '/' && loc[sch] != '?' && loc[sch] != '#')
        sch++;
    const char *scheme = base->tls ? "https:" : "http:";
    size_t tl = strcspn(base->target, "?");
    size_t dir = tl;
    while (dir > 0 && base->target[dir - 1] != '/')
        dir--;
    size_t room = strlen(base->full) + n + 16;
    char *u = weft__sys_malloc(room);
    if (!u)
        return -ENOMEM;
    size_t pre = (size_t)snprintf(u, room, "%s//%s", scheme, base->hostport);
    if (sch > 0 && sch < n && loc[sch] == ':') { /* absolute */
        memcpy(u, loc, n);
        u[n] = 0;
    } else if (n >= 2 && loc[0] == '/' && loc[1] == '/') { /* scheme-relative */
        snprintf(u, room, "%s%.*s", scheme, (int)n, loc);
    } else if (n == 0 || loc[0] == '#') {
        snprintf(u, room, "%s", base->full);
    } else if (loc[0] == '?') {
        snprintf(u + pre, room - pre, "%.*s%.*s", (int)tl, base->target, (int)n, loc);
    } else if (loc[0] == '/') {
        snprintf(u + pre, room - pre, "%.*s", (int)n, loc);
    } else {
        snprintf(u + pre, room - pre, "%.*s%.*s", (int)dir, base->target, (int)n, loc);
    }
    /* Every form's path loses its dot segments (RFC 3986 5.2.2), that of
     * an absolute or scheme-relative reference too. */
    char *auth = strstr(u, "//");
    if (auth) {
        char *path = auth + 2 + strcspn(auth + 2, "/?#");
        if (*path == '/')
            drop_dots(path);
    }
    *out = u;
    return 0;
}

