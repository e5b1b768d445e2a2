/*
 * http_differential.c - libFuzzer target: weft's request parser against
 * an independent one, http_parser 2.9 (Debian's libhttp-parser-dev), a
 * test-only oracle, on the same bytes.
 *
 * weft is stricter by design (bare LF, obs-fold, differing or repeated
 * framing fields, Host, unknown codings, non-ASCII targets...), and
 * http_parser knows only its own list of methods, so a head only one of
 * them accepts proves nothing.  When both accept a complete head, they
 * must agree on:
 *   - the head's length (http_parser paused at the end of the head stops
 *     on its final LF);
 *   - the method, the request-target and the version;
 *   - the number of field lines, and each name and value (http_parser keeps
 *     a value's trailing whitespace: it is removed before comparing);
 *   - the framing: chunked, or the Content-Length, or no body; except
 *     when a field's name begins with "Transfer-Encoding" and goes on
 *     ("Transfer-Encodingx: y"): http_parser 2.9.4 then forgets an earlier
 *     "Transfer-Encoding: chunked" (found by this target; weft is right to
 *     take such a field for another one, and a proxy built on http_parser
 *     would see no body where weft sees a chunked one);
 *   - keep-alive, except for an HTTP/1.0 request whose Connection lists
 *     both close and keep-alive (weft lets close win, http_parser the
 *     other; either way such a client expects a close that weft gives),
 *     and when a Connection value is a list of more than one element, or
 *     not one token, or its line has an HTAB: http_parser
 *     2.9.4 misses tokens in such lists ("a, ,close", "a,\xff,close",
 *     "a,\tclose" and "Upgr,  close" all keep the connection open; found
 *     by this target), while weft skips an empty element as RFC 9110 5.6.1
 *     says, takes HTAB for the whitespace it is, and reads every element.
 * Left out: Upgrade (http_parser's flag means "Upgrade with Connection:
 * upgrade, or CONNECT", weft reports the two separately), and the body
 * itself (the chunked decoder has its own target).
 */
#include "check.h"
#include "http/parse.h"

#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#define NH 100

typedef struct oracle {
    const char *url;
    size_t url_n;
    weft__http_header h[NH + 1];
    size_t n;      /* field lines begun */
    bool in_value; /* the last callback was a value's */
    bool overflow; /* more fields than NH */
    bool split;    /* a string came in two callbacks (obs-fold) */
    bool done;
} oracle;

static oracle *of(http_parser *p)
{
    return p->data;
}

/* One buffer, one execute: each string arrives in one callback, except
 * an obs-fold value (which weft refuses, so it is never compared). */
static int on_url(http_parser *p, const char *at, size_t len)
{
    oracle *o = of(p);
    if (o->url)
        o->split = true;
    o->url = at;
    o->url_n = len;
    return 0;
}

static int on_field(http_parser *p, const char *at, size_t len)
{
    oracle *o = of(p);
    if (o->n > 0 && !o->in_value) {
        o->split = true;
        return 0;
    }
    if (o->n == NH + 1) {
        o->overflow = true;
        return 0;
    }
    o->h[o->n].name = (weft__http_str){at, len};
    o->h[o->n].value = (weft__http_str){at + len, 0};
    o->n++;
    o->in_value = false;
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t len)
{
    oracle *o = of(p);
    if (o->in_value)
        o->split = true;
    o->in_value = true;
    if (!o->overflow && o->n > 0)
        o->h[o->n - 1].value = (weft__http_str){at, len};
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    of(p)->done = true;
    http_parser_pause(p, 1);
    return 0;
}

static bool str_eq(weft__http_str a, weft__http_str b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

static weft__http_str rtrim(weft__http_str s)
{
    while (s.n && (s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t'))
        s.n--;
    return s;
}

/* Whether the value v, spaces around it removed, is anything but one
 * token (a list, an empty value...). */
static bool not_one_token(weft__http_str v)
{
    size_t s = 0, e = v.n;
    while (s < e && v.p[s] == ' ')
        s++;
    while (e > s && v.p[e - 1] == ' ')
        e--;
    if (s == e)
        return true;
    for (; s < e; s++)
        if (!(WEFT__HTTP_CLS(v.p[s]) & WEFT__HTTP_TCHAR))
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *b = (const char *)data;
    static weft__http_header hs[NH];
    weft__http_request r = {.headers = hs, .headers_cap = NH};
    int rc = weft__http_parse_request(&r, b, size, 0, NULL);
    if (rc <= 0)
        return 0;

    static oracle o;
    memset(&o, 0, sizeof o);
    http_parser p;
    http_parser_init(&p, HTTP_REQUEST);
    p.data = &o;
    http_parser_settings s = {
        .on_url = on_url,
        .on_header_field = on_field,
        .on_header_value = on_value,
        .on_headers_complete = on_headers_complete,
    };
    size_t parsed = http_parser_execute(&p, &s, b, size);
    if (!o.done || HTTP_PARSER_ERRNO(&p) != HPE_PAUSED || o.split || o.overflow)
        return 0; /* http_parser refused it (or saw it differently in a way
                   * weft refuses anyway) */

    /* Both accept a complete head: they must agree. */
    CHECK(parsed + 1 == (size_t)rc);
    const char *m = http_method_str((enum http_method)p.method);
    CHECK(r.method.n == strlen(m) && memcmp(r.method.p, m, r.method.n) == 0);
    CHECK(str_eq(r.target, (weft__http_str){o.url, o.url_n}));
    CHECK(p.http_major == 1 && p.http_minor == r.minor);
    CHECK(o.n == r.nheaders);
    for (size_t k = 0; k < r.nheaders; k++) {
        CHECK(str_eq(r.headers[k].name, o.h[k].name));
        CHECK(str_eq(r.headers[k].value, rtrim(o.h[k].value)));
    }
    bool te_prefix = false;
    for (size_t k = 0; k < r.nheaders; k++)
        te_prefix |= r.headers[k].name.n > 17 &&
                     strncasecmp(r.headers[k].name.p, "transfer-encoding", 17) == 0;
    bool chunked = p.flags & F_CHUNKED;
    if (!te_prefix)
        CHECK(chunked == (r.body == WEFT__HTTP_BODY_CHUNKED));
    if (r.body == WEFT__HTTP_BODY_LENGTH)
        CHECK(p.content_length == r.content_length);
    if (r.body == WEFT__HTTP_BODY_NONE)
        CHECK(p.content_length == ULLONG_MAX);
    bool odd = false, close = false, keep = false;
    for (const weft__http_header *h = NULL;
         (h = weft__http_header_next(r.headers, r.nheaders, "connection", h));) {
        odd |= not_one_token(h->value);
        for (const char *q = h->name.p + h->name.n + 1; *q != '\r'; q++)
            odd |= *q == '\t'; /* the field line ends with CR in the head */
        close |= weft__http_list_has(h->value, "close");
        keep |= weft__http_list_has(h->value, "keep-alive");
    }
    bool both = close && keep;
    if (!(r.minor == 0 && both) && !odd)
        CHECK((http_should_keep_alive(&p) != 0) == r.keep_alive);
    return 0;
}
