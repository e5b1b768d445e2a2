/*
 * http_request.c - libFuzzer target: the request head parser on any bytes.
 *
 * Checks, beyond ASan and UBSan: the result is one of the three kinds, an
 * error carries one of the five statuses; a head's length is within the
 * input and ends with CRLFCRLF; every string handed back lies in the head
 * and obeys the rules (token names, no control bytes or outer whitespace
 * in values); the head alone parses to the same result and one byte less
 * is incomplete; a second parse agrees; fed in two pieces with the
 * last_len hint, the verdict is the same (or, for a refused head, still
 * "incomplete"); and under small limits the verdict agrees with the
 * default one wherever both limits allow it.
 */
#include "check.h"
#include "http/parse.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#define NH 100

static bool inside(weft__http_str s, const char *b, size_t n)
{
    return s.n == 0 ? true : s.p >= b && s.p + s.n <= b + n;
}

static void check_head(const weft__http_request *r, const char *b, int rc)
{
    size_t n = (size_t)rc;
    CHECK(n >= 16 && memcmp(b + n - 4, "\r\n\r\n", 4) == 0);
    CHECK(inside(r->method, b, n) && r->method.n > 0);
    CHECK(inside(r->target, b, n) && r->target.n > 0);
    CHECK(r->minor == 0 || r->minor == 1);
    CHECK(r->nheaders <= NH);
    CHECK(r->body == WEFT__HTTP_BODY_NONE || r->body == WEFT__HTTP_BODY_LENGTH ||
          r->body == WEFT__HTTP_BODY_CHUNKED);
    CHECK(r->body == WEFT__HTTP_BODY_LENGTH || r->content_length == 0);
    CHECK(!r->expect_continue || r->minor == 1);
    CHECK(r->minor == 0 || r->host.p != NULL || r->host.n == 0);
    for (size_t k = 0; k < r->method.n; k++)
        CHECK(WEFT__HTTP_CLS(r->method.p[k]) & WEFT__HTTP_TCHAR);
    for (size_t k = 0; k < r->target.n; k++)
        CHECK(r->target.p[k] > 0x20 && r->target.p[k] < 0x7f);
    for (size_t i = 0; i < r->nheaders; i++) {
        weft__http_str nm = r->headers[i].name, v = r->headers[i].value;
        CHECK(inside(nm, b, n) && nm.n > 0 && inside(v, b, n));
        for (size_t k = 0; k < nm.n; k++)
            CHECK(WEFT__HTTP_CLS(nm.p[k]) & WEFT__HTTP_TCHAR);
        for (size_t k = 0; k < v.n; k++)
            CHECK(WEFT__HTTP_CLS(v.p[k]) & (WEFT__HTTP_VCHAR | WEFT__HTTP_WS));
        if (v.n)
            CHECK((WEFT__HTTP_CLS(v.p[0]) & WEFT__HTTP_VCHAR) &&
                  (WEFT__HTTP_CLS(v.p[v.n - 1]) & WEFT__HTTP_VCHAR));
    }
    /* Host: exactly one in HTTP/1.1. */
    const weft__http_header *h = weft__http_header_next(r->headers, r->nheaders, "host", NULL);
    CHECK(r->minor == 0 || h != NULL);
    CHECK(!h || !weft__http_header_next(r->headers, r->nheaders, "host", h));
}

static int parse(weft__http_request *r, weft__http_header *hs, const char *b, size_t n, size_t last,
                 const weft__http_limits *lim)
{
    *r = (weft__http_request){.headers = hs, .headers_cap = NH};
    int rc = weft__http_parse_request(r, b, n, last, lim);
    CHECK(rc > 0 || rc == -EAGAIN || rc == -EBADMSG);
    CHECK(rc <= 0 || (size_t)rc <= n);
    if (rc == -EBADMSG)
        CHECK(r->error == 400 || r->error == 414 || r->error == 431 || r->error == 501 ||
              r->error == 505);
    return rc;
}

static bool same(const weft__http_request *a, const weft__http_request *b)
{
    if (a->method.p != b->method.p || a->method.n != b->method.n || a->target.p != b->target.p ||
        a->target.n != b->target.n || a->minor != b->minor || a->nheaders != b->nheaders ||
        a->body != b->body || a->content_length != b->content_length ||
        a->keep_alive != b->keep_alive || a->expect_continue != b->expect_continue ||
        a->upgrade != b->upgrade || a->conn_upgrade != b->conn_upgrade || a->host.p != b->host.p ||
        a->host.n != b->host.n)
        return false;
    for (size_t i = 0; i < a->nheaders; i++)
        if (memcmp(&a->headers[i], &b->headers[i], sizeof a->headers[i]) != 0)
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *b = (const char *)data;
    static weft__http_header h1[NH], h2[NH];
    weft__http_request r, r2;
    int rc = parse(&r, h1, b, size, 0, NULL);
    if (rc > 0) {
        check_head(&r, b, rc);
        CHECK(parse(&r2, h2, b, (size_t)rc, 0, NULL) == rc && same(&r, &r2));
        CHECK(parse(&r2, h2, b, (size_t)rc - 1, 0, NULL) == -EAGAIN);
    }
    int rc2 = parse(&r2, h2, b, size, 0, NULL);
    CHECK(rc2 == rc);
    if (rc > 0)
        CHECK(same(&r, &r2));
    if (rc == -EBADMSG)
        CHECK(r2.error == r.error);

    /* Two pieces, the second with the hint. */
    if (size > 1) {
        uint32_t hsh = 2166136261u;
        for (size_t k = 0; k < size; k++)
            hsh = (hsh ^ data[k]) * 16777619u;
        size_t cut = 1 + hsh % (size - 1);
        if (parse(&r2, h2, b, cut, 0, NULL) == -EAGAIN) {
            int rh = parse(&r2, h2, b, size, cut, NULL);
            CHECK(rh == rc || (rh == -EAGAIN && rc == -EBADMSG));
            if (rh > 0)
                CHECK(same(&r, &r2));
            if (rh == -EBADMSG)
                CHECK(r2.error == r.error);
        }
    }

    /* Small limits: where the head fits them, the same verdict; where the
     * default refuses it, so do they (they may refuse sooner). */
    weft__http_limits small = {.line_max = 40, .head_max = 200, .headers_max = 4};
    int rs = parse(&r2, h2, b, size, 0, &small);
    if (rs > 0)
        CHECK(rs == rc && same(&r, &r2));
    CHECK(rc != -EBADMSG || rs == -EBADMSG);
    if (rc == -EBADMSG && r.error != 414 && r.error != 431 && r2.error != 414 && r2.error != 431)
        CHECK(r2.error == r.error);
    if (rc > 0 && rc <= 200 && r.nheaders <= 4) {
        size_t lead = 0;
        while (lead + 1 < (size_t)rc && b[lead] == '\r' && b[lead + 1] == '\n')
            lead += 2;
        const char *eol = memchr(b + lead, '\n', (size_t)rc - lead);
        if (eol && (size_t)(eol - (b + lead)) - 1 <= 40)
            CHECK(rs == rc);
    }
    return 0;
}
