/*
 * url.c - libFuzzer target: the HTTP client's URLs (src/http/url.c), the
 * parse of a URL and the resolution of a Location against it, both of
 * which take bytes a server sent.
 *
 * The input is split at its first NUL: a URL, then a Location (the input
 * has none: the URL alone is also tried as a Location against a fixed
 * base).  Each is copied into a buffer of its exact size, so ASan sees a
 * read past it.  Checks: parse returns 0, -EINVAL or -EPROTONOSUPPORT; on
 * success the host is not empty and has no '[', ']', '/' or '@', the port
 * is 1..65535, the target starts with '/', has no '#', and is visible
 * ASCII, and the full form parses back to the same parts (a fixed point);
 * a join returns 0 or -EBADMSG, and a joined URL that parses has a target
 * without "/./" or "/../" segments.
 */
#include "check.h"
#include "http/url.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_url(const weft__http_url *u)
{
    CHECK(u->host[0] != 0);
    CHECK(!strpbrk(u->host, "[]/@"));
    CHECK(u->port >= 1 && u->port <= 65535);
    CHECK(u->target[0] == '/');
    for (const char *p = u->target; *p; p++)
        CHECK(*p > 0x20 && *p < 0x7f && *p != '#');
    weft__http_url again;
    int rc = weft__http_url_parse(&again, u->full, strlen(u->full));
    CHECK(rc == 0 || rc == -ENOMEM);
    if (rc == 0) {
        CHECK(again.tls == u->tls && again.port == u->port);
        CHECK(strcmp(again.host, u->host) == 0 && strcmp(again.target, u->target) == 0);
        CHECK(strcmp(again.hostport, u->hostport) == 0 && strcmp(again.full, u->full) == 0);
        weft__http_url_free(&again);
    }
}

static void check_join(const weft__http_url *base, const uint8_t *loc, size_t n)
{
    char *l = malloc(n ? n : 1);
    if (!l)
        return;
    memcpy(l, loc, n);
    char *out;
    int rc = weft__http_url_join(base, l, n, &out);
    CHECK(rc == 0 || rc == -EBADMSG || rc == -ENOMEM);
    if (rc == 0) {
        weft__http_url u;
        int prc = weft__http_url_parse(&u, out, strlen(out));
        CHECK(prc == 0 || prc == -EINVAL || prc == -EPROTONOSUPPORT || prc == -ENOMEM);
        if (prc == 0) {
            check_url(&u);
            /* a reference without scheme keeps the base's dots-free path form */
            bool absolute = memchr(l, ':', n) != NULL;
            if (!absolute) {
                size_t tl = strcspn(u.target, "?");
                for (size_t i = 0; i + 1 < tl; i++)
                    CHECK(!(u.target[i] == '/' && u.target[i + 1] == '.' &&
                            (i + 2 == tl || u.target[i + 2] == '/' ||
                             (u.target[i + 2] == '.' && (i + 3 == tl || u.target[i + 3] == '/')))));
            }
            weft__http_url_free(&u);
        }
        free(out);
    }
    free(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t n = nul ? (size_t)(nul - data) : size;
    char *s = malloc(n ? n : 1);
    if (!s)
        return 0;
    memcpy(s, data, n);
    weft__http_url u;
    int rc = weft__http_url_parse(&u, s, n);
    CHECK(rc == 0 || rc == -EINVAL || rc == -EPROTONOSUPPORT || rc == -ENOMEM);
    if (rc == 0) {
        check_url(&u);
        if (nul)
            check_join(&u, nul + 1, size - n - 1);
        weft__http_url_free(&u);
    }
    static const char base[] = "https://example.com:8443/a/b/c?q";
    weft__http_url b;
    if (weft__http_url_parse(&b, base, sizeof base - 1) == 0) {
        check_join(&b, data, n);
        weft__http_url_free(&b);
    }
    free(s);
    return 0;
}
