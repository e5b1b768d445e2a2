/*
 * http_response.c - libFuzzer target: the response head parser on any
 * bytes, as the answer to a GET and to a HEAD.
 *
 * Checks, beyond ASan and UBSan: the result is one of the three kinds and
 * an error carries a known status; a head's length is within the input and
 * ends with CRLFCRLF; its strings lie in the head; both parses agree on
 * everything but the body, which a HEAD answer never has, nor 1xx, 204 and
 * 304; a body read until the close never goes with keep-alive; the head
 * alone parses the same and one byte less is incomplete; fed in two pieces
 * with the last_len hint, the verdict is the same (or, for a refused head,
 * still "incomplete").
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

static int parse(weft__http_response *r, weft__http_header *hs, const char *b, size_t n,
                 size_t last, bool head)
{
    *r = (weft__http_response){.headers = hs, .headers_cap = NH, .head_request = head};
    int rc = weft__http_parse_response(r, b, n, last, NULL);
    CHECK(rc > 0 || rc == -EAGAIN || rc == -EBADMSG);
    CHECK(rc <= 0 || (size_t)rc <= n);
    if (rc == -EBADMSG)
        CHECK(r->error == 400 || r->error == 414 || r->error == 431 || r->error == 501 ||
              r->error == 505);
    return rc;
}

static bool same_head(const weft__http_response *a, const weft__http_response *b)
{
    if (a->minor != b->minor || a->status != b->status || a->reason.p != b->reason.p ||
        a->reason.n != b->reason.n || a->nheaders != b->nheaders ||
        a->content_length != b->content_length || a->upgrade != b->upgrade ||
        a->conn_upgrade != b->conn_upgrade)
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
    weft__http_response get, head, r2;
    int rc = parse(&get, h1, b, size, 0, false);
    int rch = parse(&head, h2, b, size, 0, true);
    CHECK(rch == rc);
    if (rc == -EBADMSG)
        CHECK(head.error == get.error);
    if (rc <= 0)
        goto hint;

    size_t n = (size_t)rc;
    CHECK(n >= 16 && memcmp(b + n - 4, "\r\n\r\n", 4) == 0);
    CHECK(get.minor == 0 || get.minor == 1);
    CHECK(get.status >= 100 && get.status <= 999);
    CHECK(inside(get.reason, b, n));
    CHECK(get.nheaders <= NH);
    for (size_t i = 0; i < get.nheaders; i++)
        CHECK(get.headers[i].name.n > 0 && inside(get.headers[i].name, b, n) &&
              inside(get.headers[i].value, b, n));
    CHECK(same_head(&get, &head));
    CHECK(head.body == WEFT__HTTP_BODY_NONE);
    bool none = get.status < 200 || get.status == 204 || get.status == 304;
    CHECK(none == (get.body == WEFT__HTTP_BODY_NONE));
    CHECK(get.body != WEFT__HTTP_BODY_CLOSE || !get.keep_alive);
    if (get.body != WEFT__HTTP_BODY_CLOSE)
        CHECK(head.keep_alive == get.keep_alive);
    CHECK(parse(&r2, h2, b, n, 0, false) == rc && same_head(&get, &r2) && r2.body == get.body);
    CHECK(parse(&r2, h2, b, n - 1, 0, false) == -EAGAIN);

hint:
    if (size > 1) {
        uint32_t hsh = 2166136261u;
        for (size_t k = 0; k < size; k++)
            hsh = (hsh ^ data[k]) * 16777619u;
        size_t cut = 1 + hsh % (size - 1);
        if (parse(&r2, h2, b, cut, 0, false) == -EAGAIN) {
            int rh = parse(&r2, h2, b, size, cut, false);
            CHECK(rh == rc || (rh == -EAGAIN && rc == -EBADMSG));
            if (rh > 0)
                CHECK(same_head(&get, &r2) && r2.body == get.body);
            if (rh == -EBADMSG)
                CHECK(r2.error == get.error);
        }
    }
    return 0;
}
