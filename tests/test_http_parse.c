/*
 * test_http_parse.c - the HTTP/1.1 parser (src/http/parse.h): request and
 * response heads, every smuggling payload of RELIABILITY #76 and each rule
 * of parse.h with the status it must give, pipelined heads, heads split at
 * every byte (with and without the last_len hint), the limits (414 and 431
 * before the head is complete), keep-alive, Expect, Upgrade, response
 * framing (204, 304, HEAD, 1xx, chunked, Content-Length, until close), the
 * field lookup, and the chunked decoder fed at every split and byte by
 * byte.  Pure functions: no loop, no sockets.
 */
#include "http/parse.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NHDR 128
static weft__http_header hdrs[NHDR];

static int req_n(const char *s, size_t n, weft__http_request *r)
{
    *r = (weft__http_request){.headers = hdrs, .headers_cap = NHDR};
    return weft__http_parse_request(r, s, n, 0, NULL);
}

static int req(const char *s, weft__http_request *r)
{
    return req_n(s, strlen(s), r);
}

/* 0 for a complete request, -EAGAIN, or the status it is refused with. */
static int verdict_n(const char *s, size_t n)
{
    weft__http_request r;
    int rc = req_n(s, n, &r);
    if (rc > 0)
        return 0;
    if (rc == -EBADMSG) {
        cr_assert(r.error >= 400 && r.error <= 505, "error %d", r.error);
        return r.error;
    }
    cr_assert_eq(rc, -EAGAIN);
    return rc;
}

static int verdict(const char *s)
{
    return verdict_n(s, strlen(s));
}

static int resp_n(const char *s, size_t n, bool head, weft__http_response *r)
{
    *r = (weft__http_response){.headers = hdrs, .headers_cap = NHDR, .head_request = head};
    return weft__http_parse_response(r, s, n, 0, NULL);
}

static int resp(const char *s, bool head, weft__http_response *r)
{
    return resp_n(s, strlen(s), head, r);
}

static int resp_verdict(const char *s)
{
    weft__http_response r;
    int rc = resp(s, false, &r);
    return rc > 0 ? 0 : rc == -EBADMSG ? r.error : rc;
}

static bool str_is(weft__http_str s, const char *want)
{
    return s.n == strlen(want) && memcmp(s.p, want, s.n) == 0;
}

#define H11 "Host: example.com\r\n"

/* ---- requests ------------------------------------------------------------ */

Test(http_request, simple_get, .timeout = 10)
{
    const char *s = "GET /index.html?q=1 HTTP/1.1\r\n" H11 "Accept: */*\r\n\r\n";
    weft__http_request r;
    cr_assert_eq(req(s, &r), (int)strlen(s));
    cr_assert(str_is(r.method, "GET"));
    cr_assert(str_is(r.target, "/index.html?q=1"));
    cr_assert_eq(r.minor, 1);
    cr_assert_eq(r.nheaders, 2);
    cr_assert(str_is(r.headers[0].name, "Host"));
    cr_assert(str_is(r.headers[0].value, "example.com"));
    cr_assert(str_is(r.host, "example.com"));
    cr_assert(str_is(r.headers[1].name, "Accept"));
    cr_assert_eq(r.body, WEFT__HTTP_BODY_NONE);
    cr_assert(r.keep_alive);
    cr_assert(!r.expect_continue && !r.upgrade);
    /* Every string lies in the buffer. */
    cr_assert(r.method.p == s && r.target.p == s + 4);
}

Test(http_request, value_whitespace_trimmed, .timeout = 10)
{
    const char *s = "GET / HTTP/1.1\r\n" H11 "A: \t x y \t \r\nB:\r\nC:   \r\nD:z\r\n\r\n";
    weft__http_request r;
    cr_assert_gt(req(s, &r), 0);
    cr_assert_eq(r.nheaders, 5);
    cr_assert(str_is(r.headers[1].value, "x y"));
    cr_assert(str_is(r.headers[2].value, ""));
    cr_assert(str_is(r.headers[3].value, ""));
    cr_assert(str_is(r.headers[4].value, "z"));
    /* HTAB and obs-text inside a value are fine. */
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n" H11 "A: x\ty\xe9\xff\r\n\r\n"), 0);
}

Test(http_request, methods_and_targets, .timeout = 10)
{
    cr_assert_eq(verdict("OPTIONS * HTTP/1.1\r\n" H11 "\r\n"), 0);
    cr_assert_eq(verdict("CONNECT example.com:443 HTTP/1.1\r\n" H11 "\r\n"), 0);
    cr_assert_eq(verdict("GET http://a/b HTTP/1.1\r\n" H11 "\r\n"), 0);
    cr_assert_eq(verdict("M-SEARCH~! * HTTP/1.1\r\n" H11 "\r\n"), 0); /* any token */
    cr_assert_eq(verdict("GE(T / HTTP/1.1\r\n" H11 "\r\n"), 400);
    cr_assert_eq(verdict("GE@T / HTTP/1.1\r\n" H11 "\r\n"), 400);
    cr_assert_eq(verdict(" GET / HTTP/1.1\r\n" H11 "\r\n"), 400);
    cr_assert_eq(verdict("GET  / HTTP/1.1\r\n" H11 "\r\n"), 400); /* two spaces */
    cr_assert_eq(verdict("GET /  HTTP/1.1\r\n" H11 "\r\n"), 400);
    cr_assert_eq(verdict("GET\t/ HTTP/1.1\r\n" H11 "\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1 \r\n" H11 "\r\n"), 400);
    cr_assert_eq(verdict("GET /\r\n" H11 "\r\n"), 400);              /* no version */
    cr_assert_eq(verdict("GET /\xe9 HTTP/1.1\r\n" H11 "\r\n"), 400); /* not ASCII */
    cr_assert_eq(verdict("GET /\x7f HTTP/1.1\r\n" H11 "\r\n"), 400);
    const char nul[] = "GET /\0 HTTP/1.1\r\n" H11 "\r\n";
    cr_assert_eq(verdict_n(nul, sizeof nul - 1), 400);
    /* A fault is told before the head is complete. */
    cr_assert_eq(verdict("GE@"), 400);
    cr_assert_eq(verdict("GET /a\x01"), 400);
}

Test(http_request, versions, .timeout = 10)
{
    weft__http_request r;
    cr_assert_gt(req("GET / HTTP/1.0\r\n\r\n", &r), 0);
    cr_assert_eq(r.minor, 0);
    cr_assert_eq(verdict("GET / HTTP/1.2\r\n" H11 "\r\n"), 505);
    cr_assert_eq(verdict("GET / HTTP/2.0\r\n" H11 "\r\n"), 505);
    cr_assert_eq(verdict("GET / HTTP/0.9\r\n\r\n"), 505);
    cr_assert_eq(verdict("GET / HTTP/9.9\r\n\r\n"), 505);
    cr_assert_eq(verdict("GET / HTTP/1.10\r\n" H11 "\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/11\r\n" H11 "\r\n"), 400);
    cr_assert_eq(verdict("GET / http/1.1\r\n" H11 "\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1\r\n" H11 "\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTPS/1.1\r\n" H11 "\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1"), -EAGAIN);
    cr_assert_eq(verdict("GET / HTTP/2.0"), -EAGAIN); /* 505 once its CRLF is in */
}

Test(http_request, leading_empty_lines, .timeout = 10)
{
    weft__http_request r;
    const char *one = "\r\nGET / HTTP/1.1\r\n" H11 "\r\n";
    cr_assert_eq(req(one, &r), (int)strlen(one));
    cr_assert(str_is(r.method, "GET"));
    const char *two = "\r\n\r\nGET / HTTP/1.1\r\n" H11 "\r\n";
    cr_assert_eq(req(two, &r), (int)strlen(two));
    cr_assert_eq(verdict("\r\n\r\n\r\nGET / HTTP/1.1\r\n" H11 "\r\n"), 400);
    cr_assert_eq(verdict("\nGET / HTTP/1.1\r\n" H11 "\r\n"), 400);
    cr_assert_eq(verdict("\r\n"), -EAGAIN);
    cr_assert_eq(verdict("\r\n\r"), -EAGAIN);
    cr_assert_eq(verdict("\r\r"), 400);
}

Test(http_request, field_names, .timeout = 10)
{
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n" H11 "X-A_b.c!#$%&'*+^`|~9: v\r\n\r\n"), 0);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n" H11 ": v\r\n\r\n"), 400); /* empty */
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n" H11 "A@b: v\r\n\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n" H11 "A(b): v\r\n\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n" H11 "A\xe9: v\r\n\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n" H11 "NoColon\r\n\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n" H11 "A b: v\r\n\r\n"), 400);
}

Test(http_request, field_values, .timeout = 10)
{
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n" H11 "A: x\x01y\r\n\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n" H11 "A: x\x1fy\r\n\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n" H11 "A: x\x7fy\r\n\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n" H11 "A: x\x0by\r\n\r\n"), 400);
    const char nul[] = "GET / HTTP/1.1\r\n" H11 "A: x\0y\r\n\r\n";
    cr_assert_eq(verdict_n(nul, sizeof nul - 1), 400);
    const char nul2[] = "GET / HTTP/1.1\r\n" H11 "A\0: xy\r\n\r\n";
    cr_assert_eq(verdict_n(nul2, sizeof nul2 - 1), 400);
}

Test(http_request, host_rules, .timeout = 10)
{
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.0\r\n\r\n"), 0);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\nHOST: a\r\n\r\n"), 0);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\nHost:\r\n\r\n"), 0); /* empty is allowed */
    cr_assert_eq(verdict("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"), 0);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), 400);
}

/* ---- smuggling (RELIABILITY #76) ----------------------------------------- */

Test(http_smuggling, cl_and_te, .timeout = 10)
{
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Content-Length: 5\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n"),
                 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n"
                         "Content-Length: 0\r\n\r\n"),
                 400);
}

Test(http_smuggling, te_not_final_chunked, .timeout = 10)
{
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked, identity\r\n\r\n"),
                 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: identity\r\n\r\n"), 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: gzip\r\n\r\n"), 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n"
                         "Transfer-Encoding: gzip\r\n\r\n"),
                 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked, chunked\r\n\r\n"),
                 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n"),
                 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding:\r\n\r\n"), 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: ,\r\n\r\n"), 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked;a=b\r\n\r\n"), 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: \"chunked\"\r\n\r\n"), 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: xchunked\r\n\r\n"), 400);
    /* HTTP/1.0 has no Transfer-Encoding (RFC 9112 6.1). */
    cr_assert_eq(verdict("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
    /* A coding weft does not decode before the final chunked. */
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: gzip, chunked\r\n\r\n"),
                 501);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: gzip\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n"),
                 501);
    /* Empty elements: parsers differ on what such a list ends with. */
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked,\r\n\r\n"), 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: gzip,,chunked\r\n\r\n"),
                 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n"
                         "Transfer-Encoding:\r\n\r\n"),
                 400);
    /* HTAB in a framing field, where parsers differ. */
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\t\r\n\r\n"), 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding:\tchunked\r\n\r\n"), 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: gzip,\tchunked\r\n\r\n"),
                 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Content-Length: 5\t\r\n\r\n"), 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Content-Length:\t5\r\n\r\n"), 400);
    /* What is accepted: any case, spaces around elements. */
    weft__http_request r;
    cr_assert_gt(req("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding:  CHUNKED \r\n\r\n", &r), 0);
    cr_assert_eq(r.body, WEFT__HTTP_BODY_CHUNKED);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: gzip , chunked\r\n\r\n"),
                 501);
}

Test(http_smuggling, content_length_values, .timeout = 10)
{
    weft__http_request r;
    cr_assert_gt(req("POST / HTTP/1.1\r\n" H11 "Content-Length: 5\r\n"
                     "Content-Length: 5\r\n\r\n",
                     &r),
                 0);
    cr_assert_eq(r.body, WEFT__HTTP_BODY_LENGTH);
    cr_assert_eq(r.content_length, 5);
    cr_assert_gt(req("POST / HTTP/1.1\r\n" H11 "Content-Length: 5 ,5\r\n\r\n", &r), 0);
    cr_assert_eq(r.content_length, 5);
    cr_assert_gt(req("POST / HTTP/1.1\r\n" H11 "Content-Length: 0\r\n\r\n", &r), 0);
    cr_assert_eq(r.body, WEFT__HTTP_BODY_LENGTH);
    cr_assert_eq(r.content_length, 0);
    cr_assert_gt(req("POST / HTTP/1.1\r\n" H11 "Content-Length: 9223372036854775807\r\n\r\n", &r),
                 0);
    cr_assert_eq(r.content_length, UINT64_C(9223372036854775807));

    static const char *bad[] = {
        "5\r\nContent-Length: 6",
        "5, 6",
        "5,",
        ",5",
        "5,,5",
        "",
        "abc",
        "-1",
        "+5",
        "5 5",
        "1e3",
        "0x10",
        "5;",
        "9223372036854775808",
        "18446744073709551616",
        "99999999999999999999999",
        "\xef\xbc\x95", /* a full-width digit */
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char s[256];
        snprintf(s, sizeof s, "POST / HTTP/1.1\r\n" H11 "Content-Length: %s\r\n\r\n", bad[k]);
        cr_assert_eq(verdict(s), 400, "Content-Length: %s", bad[k]);
    }
}

Test(http_smuggling, obs_fold, .timeout = 10)
{
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n" H11 "A: x\r\n y\r\n\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n" H11 "A: x\r\n\ty\r\n\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n" H11 "A: x\r\n B: y\r\n\r\n"), 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: gzip\r\n , chunked\r\n\r\n"),
                 400);
    /* Whitespace before the first field. */
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n " H11 "\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n" H11 " \r\n\r\n"), 400);
}

Test(http_smuggling, space_before_colon, .timeout = 10)
{
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding : chunked\r\n\r\n"), 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Content-Length\t: 5\r\n\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
}

Test(http_smuggling, bare_lf_and_cr, .timeout = 10)
{
    cr_assert_eq(verdict("GET / HTTP/1.1\n" H11 "\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\nHost: a\n\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n" H11 "\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n" H11 "A: b\nB: c\r\n\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r" H11 "\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n"), 400);
    cr_assert_eq(verdict("GET / HTTP/1.1\r\n" H11 "\rX"), 400);
    cr_assert_eq(verdict("GET /a\rb HTTP/1.1\r\n" H11 "\r\n"), 400);
    cr_assert_eq(verdict("GET\r / HTTP/1.1\r\n" H11 "\r\n"), 400);
    cr_assert_eq(verdict("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\r\n\r\n"), 400);
}

/* A chunked body as one string, fed whole: the verdict (MORE, DONE or the
 * error status) and the data. */
static int chunked_whole(const char *in, size_t n, char *data, size_t *ndata)
{
    weft__http_chunked c;
    weft__http_chunked_init(&c, NULL);
    size_t off = 0, nd = 0, used;
    weft__http_str sp;
    for (;;) {
        int rc = weft__http_chunked_feed(&c, in + off, n - off, &used, &sp);
        off += used;
        if (rc == -EBADMSG)
            return c.error;
        if (rc == WEFT__HTTP_CHUNK_DATA) {
            memcpy(data + nd, sp.p, sp.n);
            nd += sp.n;
        }
        if (rc == WEFT__HTTP_CHUNK_DONE || off == n) {
            if (ndata)
                *ndata = nd;
            return rc;
        }
    }
}

static int chunked_verdict(const char *in)
{
    char data[256];
    return chunked_whole(in, strlen(in), data, NULL);
}

Test(http_smuggling, chunk_size_overflow, .timeout = 10)
{
    cr_assert_eq(chunked_verdict("ffffffffffffffff1\r\n"), 400);
    cr_assert_eq(chunked_verdict("0xffffffffffffffff1\r\n"), 400);
    cr_assert_eq(chunked_verdict("ffffffffffffffff\r\n"), 400);
    cr_assert_eq(chunked_verdict("8000000000000000\r\n"), 400);  /* 2^63 */
    cr_assert_eq(chunked_verdict("00000000000000001\r\n"), 400); /* 17 digits */
    cr_assert_eq(chunked_verdict("7fffffffffffffff\r\n"), WEFT__HTTP_CHUNK_MORE);
    cr_assert_eq(chunked_verdict("0000000000000005\r\nhello\r\n0\r\n\r\n"), WEFT__HTTP_CHUNK_DONE);
    /* Two sizes that fit alone but not together. */
    cr_assert_eq(chunked_verdict("7fffffffffffffff\r\n"), WEFT__HTTP_CHUNK_MORE);
    weft__http_chunked c;
    weft__http_chunked_init(&c, NULL);
    c.total = UINT64_C(0x7fffffffffffffff);
    size_t used;
    weft__http_str sp;
    cr_assert_eq(weft__http_chunked_feed(&c, "1\r\n", 3, &used, &sp), -EBADMSG);
    cr_assert_eq(c.error, 413);
}

Test(http_smuggling, funky_chunks, .timeout = 10)
{
    static const char *bad[] = {
        "5;a\nb\r\nhello\r\n0\r\n\r\n",       /* bare LF in an extension */
        "5;a\rb\r\nhello\r\n0\r\n\r\n",       /* bare CR in an extension */
        "5;a=\"x\ny\"\r\nhello\r\n0\r\n\r\n", /* LF in a quoted value */
        "5;a=\"x\ry\"\r\nhello\r\n0\r\n\r\n",
        "5;a=\"x\\\ny\"\r\nhello\r\n0\r\n\r\n", /* an escaped LF */
        "5\nhello\r\n0\r\n\r\n",                /* bare LF after the size */
        "5\rhello\r\n0\r\n\r\n",
        "5\r\nhello\n0\r\n\r\n", /* bare LF after the data */
        "5\r\nhello\r0\r\n\r\n",
        "5\r\nhello\n\n0\r\n\r\n",
        "0\r\nA: b\rB: c\r\n\r\n", /* bare CR in trailers */
        "0\r\nA: b\rxB: c\r\n\r\n",
        "5;a\n\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXX\r\n0\r\n\r\n", /* data longer than its size */
        "5\r\nhell\r\n0\r\n\r\n",    /* ... shorter */
        "0\r\n\n",                   /* bare LF ending the trailers */
        "0\r\nA: b\n\r\n",
        "0\r\nA: b\r\n\r\r\n",
        "0\r\n A: b\r\n\r\n", /* obs-fold in trailers */
        "0\r\nA: b\r\n c\r\n\r\n",
        "0\r\nA : b\r\n\r\n", /* space before the colon */
        "0\r\n: b\r\n\r\n",
        "0\r\nA: \x01\r\n\r\n",
        "5 \r\nhello\r\n0\r\n\r\n", /* whitespace without an extension */
        " 5\r\nhello\r\n0\r\n\r\n",
        "5;\r\nhello\r\n0\r\n\r\n",   /* an empty extension name */
        "5;a=\r\nhello\r\n0\r\n\r\n", /* an empty value */
        "5;a b\r\nhello\r\n0\r\n\r\n",
        "5;a=b c\r\nhello\r\n0\r\n\r\n",
        "5;a=\"b\"c\r\nhello\r\n0\r\n\r\n",
        "5;a=b\"c\"\r\nhello\r\n0\r\n\r\n",
        "5;a=\"b\r\nhello\r\n0\r\n\r\n", /* an open quote */
        "5;a@b\r\nhello\r\n0\r\n\r\n",
        "\r\nhello\r\n0\r\n\r\n", /* no size */
        "-5\r\nhello\r\n0\r\n\r\n",
        "+5\r\nhello\r\n0\r\n\r\n",
        "g\r\n",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        cr_assert_eq(chunked_verdict(bad[k]), 400, "case %zu", k);

    static const char *good[] = {
        "5;a\r\nhello\r\n0\r\n\r\n",
        "5;a=b\r\nhello\r\n0\r\n\r\n",
        "5 ; a = b ;c\r\nhello\r\n0\r\n\r\n",
        "5;a=\"q \\\"x\\\\ \t\xe9\"\r\nhello\r\n0;last\r\n\r\n",
        "5;a=\"\"\r\nhello\r\n0\r\n\r\n",
        "5\t;a\r\nhello\r\n0\r\nA: b\r\nC-D:  e f \r\n\r\n",
        "A\r\nhellohello\r\n0\r\n\r\n",
        "a\r\nhellohello\r\n0\r\n\r\n",
    };
    for (size_t k = 0; k < sizeof good / sizeof good[0]; k++)
        cr_assert_eq(chunked_verdict(good[k]), WEFT__HTTP_CHUNK_DONE, "case %zu", k);
}

/* A refused head leaves nothing of a second request to read: the verdict
 * comes before the bytes that would smuggle it. */
Test(http_smuggling, verdict_before_the_body, .timeout = 10)
{
    const char *s = "POST / HTTP/1.1\r\n" H11 "Content-Length: 44\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n"
                    "0\r\n\r\nGET /admin HTTP/1.1\r\n" H11 "\r\n";
    cr_assert_eq(verdict(s), 400);
    cr_assert_eq(verdict_n(s, strstr(s, "\r\n\r\n") - s + 4), 400);
}

/* ---- pipelining and splits ----------------------------------------------- */

Test(http_request, pipelined, .timeout = 10)
{
    const char *s = "GET /1 HTTP/1.1\r\n" H11 "\r\n"
                    "POST /2 HTTP/1.1\r\n" H11 "Content-Length: 5\r\n\r\nhello"
                    "GET /3 HTTP/1.1\r\n" H11 "Connection: close\r\n\r\n";
    size_t n = strlen(s), off = 0;
    const char *targets[] = {"/1", "/2", "/3"};
    for (int k = 0; k < 3; k++) {
        weft__http_request r;
        int rc = req_n(s + off, n - off, &r);
        cr_assert_gt(rc, 0, "request %d", k);
        cr_assert(str_is(r.target, targets[k]));
        off += (size_t)rc;
        if (r.body == WEFT__HTTP_BODY_LENGTH) {
            cr_assert(memcmp(s + off, "hello", 5) == 0);
            off += r.content_length;
        }
        cr_assert_eq(r.keep_alive, k < 2);
    }
    cr_assert_eq(off, n);
}

Test(http_request, hundred_pipelined, .timeout = 10)
{
    static char buf[100 * 64];
    size_t n = 0;
    for (int k = 0; k < 100; k++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "GET /%d HTTP/1.1\r\nHost: h\r\n\r\n", k);
    size_t off = 0;
    for (int k = 0; k < 100; k++) {
        weft__http_request r;
        int rc = req_n(buf + off, n - off, &r);
        cr_assert_gt(rc, 0);
        char want[16];
        snprintf(want, sizeof want, "/%d", k);
        cr_assert(str_is(r.target, want));
        off += (size_t)rc;
    }
    cr_assert_eq(off, n);
}

/* Each prefix is incomplete or already refused; with last_len, fed at any
 * split the verdict is the whole's. */
static void check_splits(const char *s, size_t n)
{
    weft__http_request whole, part;
    int want = req_n(s, n, &whole);
    int want_error = whole.error;
    for (size_t k = 0; k < n; k++) {
        int rc = req_n(s, k, &part);
        if (rc != -EAGAIN) {
            cr_assert_eq(rc, -EBADMSG, "prefix %zu", k);
            cr_assert_eq(want, -EBADMSG);
            cr_assert_eq(part.error, want_error, "prefix %zu", k);
        }
    }
    for (size_t k = 1; k < n; k++) {
        if (req_n(s, k, &part) != -EAGAIN)
            continue;
        /* Two pieces split at k, the second with the hint. */
        int rc = weft__http_parse_request(&part, s, n, k, NULL);
        if (want == -EBADMSG && rc == -EAGAIN)
            continue; /* the hint may tell a fault only at a limit or the end */
        cr_assert_eq(rc, want, "split %zu", k);
        if (rc == -EBADMSG)
            cr_assert_eq(part.error, want_error);
    }
    /* Byte by byte with the hint. */
    size_t last = 0;
    int rc = -EAGAIN;
    for (size_t k = 1; k <= n && rc == -EAGAIN; k++) {
        rc = weft__http_parse_request(&part, s, k, last, NULL);
        last = k;
    }
    if (want > 0) {
        cr_assert_eq(rc, want);
        cr_assert(part.method.n == whole.method.n && part.target.p == whole.target.p);
        cr_assert_eq(part.nheaders, whole.nheaders);
        cr_assert_eq(part.body, whole.body);
        cr_assert_eq(part.content_length, whole.content_length);
        cr_assert_eq(part.keep_alive, whole.keep_alive);
    } else if (rc != -EAGAIN) {
        cr_assert_eq(rc, want);
        cr_assert_eq(part.error, want_error);
    }
}

Test(http_request, every_split, .timeout = 20)
{
    static const char *cases[] = {
        "GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x/1\r\n"
        "Accept: */*\r\nConnection: keep-alive\r\n\r\n",
        "\r\nPOST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\n",
        "PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nA: b\r\n c\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\nA: b\r\n\r\n",
        "GET / HTTP/3.0\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: br, chunked\r\n\r\n",
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        check_splits(cases[k], strlen(cases[k]));
}

/* ---- limits -------------------------------------------------------------- */

Test(http_limits, request_line_414, .timeout = 10)
{
    static char buf[WEFT__HTTP_LINE_MAX + 64];
    /* A line of exactly line_max bytes passes. */
    size_t n = (size_t)snprintf(buf, sizeof buf, "GET /");
    size_t target = WEFT__HTTP_LINE_MAX - strlen("GET / HTTP/1.1") + 1;
    memset(buf + n, 'a', target - 1);
    n += target - 1;
    n += (size_t)snprintf(buf + n, sizeof buf - n, " HTTP/1.1\r\nHost: h\r\n\r\n");
    cr_assert_eq(strstr(buf, "\r\n") - buf, WEFT__HTTP_LINE_MAX);
    cr_assert_eq(verdict_n(buf, n), 0);
    /* One more byte: 414. */
    memmove(buf + 6, buf + 5, n - 5);
    buf[5] = 'a';
    cr_assert_eq(verdict_n(buf, n + 1), 414);
    /* Before the CRLF arrives: as soon as line_max + 2 bytes are in. */
    memset(buf, 'a', sizeof buf);
    memcpy(buf, "GET /", 5);
    cr_assert_eq(verdict_n(buf, WEFT__HTTP_LINE_MAX + 1), -EAGAIN);
    cr_assert_eq(verdict_n(buf, WEFT__HTTP_LINE_MAX + 2), 414);
    cr_assert_eq(verdict_n(buf, sizeof buf), 414);
    /* The same fed in pieces with the hint. */
    weft__http_request r = {.headers = hdrs, .headers_cap = NHDR};
    int rc = -EAGAIN;
    size_t last = 0, k;
    for (k = 100; k <= sizeof buf && rc == -EAGAIN; k += 100) {
        rc = weft__http_parse_request(&r, buf, k, last, NULL);
        last = k;
    }
    cr_assert_eq(rc, -EBADMSG);
    cr_assert_eq(r.error, 414);
    cr_assert_eq(last, (WEFT__HTTP_LINE_MAX + 2 + 99) / 100 * 100);
    /* A smaller limit through the struct. */
    weft__http_limits lim = {.line_max = 20};
    r = (weft__http_request){.headers = hdrs, .headers_cap = NHDR};
    cr_assert_eq(weft__http_parse_request(&r, "GET /0123456789012345 HTTP/1.1", 30, 0, &lim),
                 -EBADMSG);
    cr_assert_eq(r.error, 414);
}

Test(http_limits, head_431, .timeout = 10)
{
    static char buf[WEFT__HTTP_HEAD_MAX + 4096];
    size_t n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\nX: ");
    /* A head of exactly head_max bytes passes. */
    size_t fill = WEFT__HTTP_HEAD_MAX - n - 4;
    memset(buf + n, 'v', fill);
    memcpy(buf + n + fill, "\r\n\r\n", 4);
    cr_assert_eq(verdict_n(buf, WEFT__HTTP_HEAD_MAX), 0);
    weft__http_request r;
    cr_assert_eq(req_n(buf, WEFT__HTTP_HEAD_MAX + 10, &r), WEFT__HTTP_HEAD_MAX);
    /* One byte more: 431, told once head_max bytes are in. */
    memset(buf + n, 'v', fill + 1);
    memcpy(buf + n + fill + 1, "\r\n\r\n", 4);
    cr_assert_eq(verdict_n(buf, WEFT__HTTP_HEAD_MAX - 1), -EAGAIN);
    cr_assert_eq(verdict_n(buf, WEFT__HTTP_HEAD_MAX), 431);
    cr_assert_eq(verdict_n(buf, WEFT__HTTP_HEAD_MAX + 5), 431);
    /* Many small fields that never end, in pieces with the hint. */
    n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\n");
    while (n + 8 < sizeof buf)
        n +=
            (size_t)snprintf(buf + n, sizeof buf - n, "%s", (n / 7) % 2 ? "A: b\r\n" : "Bb: c\r\n");
    static weft__http_header many[16384];
    weft__http_limits lim = {.headers_max = 100000};
    r = (weft__http_request){.headers = many, .headers_cap = 16384};
    int rc = -EAGAIN;
    size_t last = 0, k;
    for (k = 1000; k <= n && rc == -EAGAIN; k += 1000) {
        rc = weft__http_parse_request(&r, buf, k, last, &lim);
        last = k;
    }
    cr_assert_eq(rc, -EBADMSG);
    cr_assert_eq(r.error, 431);
    cr_assert_eq(last, 66000);
}

Test(http_limits, header_count_431, .timeout = 10)
{
    static char buf[8192];
    size_t n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int k = 1; k < 100; k++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "X%d: %d\r\n", k, k);
    memcpy(buf + n, "\r\n", 2);
    weft__http_request r;
    cr_assert_gt(req_n(buf, n + 2, &r), 0); /* 100 fields */
    cr_assert_eq(r.nheaders, 100);
    n += (size_t)snprintf(buf + n, sizeof buf - n, "X100: 100\r\n");
    memcpy(buf + n, "\r\n", 2);
    cr_assert_eq(verdict_n(buf, n + 2), 431); /* 101 */
    cr_assert_eq(verdict_n(buf, n - 3), 431); /* told as the 101st begins */
    /* The caller's array bounds it too. */
    weft__http_header few[3];
    r = (weft__http_request){.headers = few, .headers_cap = 3};
    cr_assert_eq(weft__http_parse_request(&r, buf, n + 2, 0, NULL), -EBADMSG);
    cr_assert_eq(r.error, 431);
    r = (weft__http_request){.headers = few, .headers_cap = 3};
    const char *s = "GET / HTTP/1.1\r\nHost: h\r\nA: b\r\nC: d\r\n\r\n";
    cr_assert_eq(weft__http_parse_request(&r, s, strlen(s), 0, NULL), (int)strlen(s));
}

/* ---- derived fields ------------------------------------------------------ */

Test(http_request, keep_alive, .timeout = 10)
{
    weft__http_request r;
    struct {
        const char *head;
        bool ka;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: CLOSE\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: foo\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alives\r\n\r\n", false},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        cr_assert_gt(req(cases[k].head, &r), 0, "case %zu", k);
        cr_assert_eq(r.keep_alive, cases[k].ka, "case %zu", k);
    }
}

Test(http_request, expect_and_upgrade, .timeout = 10)
{
    weft__http_request r;
    cr_assert_gt(req("POST / HTTP/1.1\r\n" H11 "Expect: 100-continue\r\n"
                     "Content-Length: 3\r\n\r\n",
                     &r),
                 0);
    cr_assert(r.expect_continue);
    cr_assert_gt(req("POST / HTTP/1.1\r\n" H11 "Expect: 100-Continue\r\n\r\n", &r), 0);
    cr_assert(r.expect_continue);
    cr_assert_gt(req("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", &r), 0);
    cr_assert(!r.expect_continue);
    cr_assert_gt(req("POST / HTTP/1.1\r\n" H11 "Expect: something\r\n\r\n", &r), 0);
    cr_assert(!r.expect_continue);
    cr_assert_gt(
        req("GET / HTTP/1.1\r\n" H11 "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n", &r), 0);
    cr_assert(r.upgrade && r.conn_upgrade);
    cr_assert_gt(req("GET / HTTP/1.1\r\n" H11 "Upgrade: h2c\r\n\r\n", &r), 0);
    cr_assert(r.upgrade && !r.conn_upgrade);
}

Test(http_request, header_lookup, .timeout = 10)
{
    weft__http_request r;
    cr_assert_gt(req("GET / HTTP/1.1\r\n" H11 "Content-Type: text/plain\r\nX-A: 1\r\n"
                     "x-a: 2\r\nTE: trailers, deflate\r\n\r\n",
                     &r),
                 0);
    const weft__http_header *h =
        weft__http_header_next(r.headers, r.nheaders, "content-type", NULL);
    cr_assert(h && str_is(h->value, "text/plain"));
    h = weft__http_header_next(r.headers, r.nheaders, "CONTENT-TYPE", NULL);
    cr_assert(h && str_is(h->value, "text/plain"));
    cr_assert_null(weft__http_header_next(r.headers, r.nheaders, "content-typ", NULL));
    cr_assert_null(weft__http_header_next(r.headers, r.nheaders, "content-type-x", NULL));
    int seen = 0;
    for (h = NULL; (h = weft__http_header_next(r.headers, r.nheaders, "X-a", h));)
        seen = seen * 10 + (h->value.p[0] - '0');
    cr_assert_eq(seen, 12);
    h = weft__http_header_next(r.headers, r.nheaders, "te", NULL);
    cr_assert(weft__http_list_has(h->value, "Trailers"));
    cr_assert(weft__http_list_has(h->value, "deflate"));
    cr_assert(!weft__http_list_has(h->value, "trailer"));
    cr_assert(!weft__http_list_has((weft__http_str){NULL, 0}, "x"));
}

/* ---- responses ----------------------------------------------------------- */

Test(http_response, framing, .timeout = 10)
{
    weft__http_response r;
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello world!";
    cr_assert_eq(resp(s, false, &r), (int)strlen(s) - 12);
    cr_assert_eq(r.status, 200);
    cr_assert(str_is(r.reason, "OK"));
    cr_assert_eq(r.body, WEFT__HTTP_BODY_LENGTH);
    cr_assert_eq(r.content_length, 12);
    cr_assert(r.keep_alive);

    cr_assert_gt(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, &r), 0);
    cr_assert_eq(r.body, WEFT__HTTP_BODY_CHUNKED);
    cr_assert(r.keep_alive);

    cr_assert_gt(resp("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", false, &r), 0);
    cr_assert_eq(r.body, WEFT__HTTP_BODY_CLOSE);
    cr_assert(!r.keep_alive);

    cr_assert_gt(resp("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, &r), 0);
    cr_assert_eq(r.body, WEFT__HTTP_BODY_NONE);
    cr_assert(r.keep_alive);
    cr_assert_gt(resp("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", false, &r),
                 0);
    cr_assert_eq(r.body, WEFT__HTTP_BODY_NONE);
    cr_assert_gt(resp("HTTP/1.1 304 Not Modified\r\n\r\n", false, &r), 0);
    cr_assert_eq(r.body, WEFT__HTTP_BODY_NONE);
    cr_assert(r.keep_alive);

    cr_assert_gt(resp("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", true, &r), 0);
    cr_assert_eq(r.body, WEFT__HTTP_BODY_NONE);
    cr_assert_eq(r.content_length, 99);
    cr_assert_gt(resp("HTTP/1.1 200 OK\r\n\r\n", true, &r), 0);
    cr_assert_eq(r.body, WEFT__HTTP_BODY_NONE);
    cr_assert(r.keep_alive);

    const char *two =
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
    int n = resp(two, false, &r);
    cr_assert_eq(n, 25);
    cr_assert_eq(r.status, 100);
    cr_assert_eq(r.body, WEFT__HTTP_BODY_NONE);
    cr_assert_gt(resp(two + n, false, &r), 0);
    cr_assert_eq(r.status, 201);
    cr_assert_eq(r.body, WEFT__HTTP_BODY_LENGTH);
    cr_assert_gt(resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\n\r\n",
                      false, &r),
                 0);
    cr_assert_eq(r.body, WEFT__HTTP_BODY_NONE);
    cr_assert(r.upgrade && r.conn_upgrade);

    cr_assert_gt(resp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false, &r), 0);
    cr_assert(!r.keep_alive);
    cr_assert_gt(
        resp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n", false, &r),
        0);
    cr_assert(r.keep_alive);
    cr_assert_gt(
        resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n", false, &r), 0);
    cr_assert(!r.keep_alive);
    /* Host means nothing in a response. */
    cr_assert_eq(resp_verdict("HTTP/1.1 200 OK\r\nHost: a\r\nHost: b c\r\n\r\n"), 0);
}

Test(http_response, status_lines, .timeout = 10)
{
    weft__http_response r;
    cr_assert_gt(resp("HTTP/1.1 200\r\n\r\n", false, &r), 0);
    cr_assert(str_is(r.reason, ""));
    cr_assert_gt(resp("HTTP/1.1 404 \r\n\r\n", false, &r), 0);
    cr_assert_eq(r.status, 404);
    cr_assert(str_is(r.reason, ""));
    cr_assert_gt(resp("HTTP/1.1 599 Very \tOdd \xe9 \r\n\r\n", false, &r), 0);
    cr_assert(str_is(r.reason, "Very \tOdd \xe9"));
    cr_assert_gt(resp("HTTP/1.1 999 X\r\n\r\n", false, &r), 0);
    cr_assert_eq(r.status, 999);
    cr_assert_eq(resp_verdict("HTTP/1.1 099 X\r\n\r\n"), 400);
    cr_assert_eq(resp_verdict("HTTP/1.1 20 X\r\n\r\n"), 400);
    cr_assert_eq(resp_verdict("HTTP/1.1 2000 X\r\n\r\n"), 400);
    cr_assert_eq(resp_verdict("HTTP/1.1  200 X\r\n\r\n"), 400);
    cr_assert_eq(resp_verdict("HTTP/1.1 200 X\x01\r\n\r\n"), 400);
    cr_assert_eq(resp_verdict("HTTP/1.1 200 OK\n\r\n"), 400);
    cr_assert_eq(resp_verdict("HTTP/2.0 200 OK\r\n\r\n"), 505);
    cr_assert_eq(resp_verdict("HTTP/1.2 200 OK\r\n\r\n"), 505);
    cr_assert_eq(resp_verdict("ICY 200 OK\r\n\r\n"), 400);
    cr_assert_eq(resp_verdict("\r\nHTTP/1.1 200 OK\r\n\r\n"), 400);
    cr_assert_eq(resp_verdict("HTTP/1.1 200 OK\r\n"), -EAGAIN);
}

Test(http_response, smuggling_rules, .timeout = 10)
{
    cr_assert_eq(resp_verdict("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n"),
                 400);
    cr_assert_eq(resp_verdict("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
                 400);
    cr_assert_eq(resp_verdict("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n"),
                 400);
    cr_assert_eq(resp_verdict("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501);
    cr_assert_eq(resp_verdict("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
    cr_assert_eq(resp_verdict("HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n"), 400);
    cr_assert_eq(resp_verdict("HTTP/1.1 200 OK\r\nA : b\r\n\r\n"), 400);
    cr_assert_eq(resp_verdict("HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n"), 400);
}

Test(http_response, limits_and_hint, .timeout = 10)
{
    static char buf[WEFT__HTTP_HEAD_MAX + 100];
    memset(buf, 'x', sizeof buf);
    memcpy(buf, "HTTP/1.1 200 ", 13);
    weft__http_response r;
    cr_assert_eq(resp_n(buf, WEFT__HTTP_LINE_MAX + 1, false, &r), -EAGAIN);
    cr_assert_eq(resp_n(buf, WEFT__HTTP_LINE_MAX + 2, false, &r), -EBADMSG);
    cr_assert_eq(r.error, 414);
    /* Byte by byte with the hint, a response and its body. */
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX: y\r\n\r\nabc";
    size_t n = strlen(s), last = 0;
    int rc = -EAGAIN;
    r = (weft__http_response){.headers = hdrs, .headers_cap = NHDR};
    for (size_t k = 1; k <= n && rc == -EAGAIN; k++) {
        rc = weft__http_parse_response(&r, s, k, last, NULL);
        last = k;
    }
    cr_assert_eq(rc, (int)n - 3);
    cr_assert_eq(last, n - 3);
    cr_assert_eq(r.content_length, 3);
    cr_assert_eq(r.nheaders, 2);
}

/* ---- field sections ------------------------------------------------------ */

Test(http_fields, trailers, .timeout = 10)
{
    weft__http_header h[4];
    size_t n = 99;
    int err = 0;
    cr_assert_eq(weft__http_parse_fields("\r\n", 2, h, 4, &n, NULL, &err), 2);
    cr_assert_eq(n, 0);
    const char *s = "A: 1\r\nB-c:  two \r\n\r\nnext";
    cr_assert_eq(weft__http_parse_fields(s, strlen(s), h, 4, &n, NULL, &err), 20);
    cr_assert_eq(n, 2);
    cr_assert(str_is(h[1].name, "B-c") && str_is(h[1].value, "two"));
    cr_assert_eq(weft__http_parse_fields(s, 10, h, 4, &n, NULL, &err), -EAGAIN);
    cr_assert_eq(weft__http_parse_fields("A: 1\n\r\n", 7, h, 4, &n, NULL, &err), -EBADMSG);
    cr_assert_eq(err, 400);
    cr_assert_eq(weft__http_parse_fields(s, strlen(s), h, 1, &n, NULL, &err), -EBADMSG);
    cr_assert_eq(err, 431);
    weft__http_limits lim = {.head_max = 10};
    cr_assert_eq(weft__http_parse_fields(s, strlen(s), h, 4, &n, &lim, &err), -EBADMSG);
    cr_assert_eq(err, 431);
}

/* ---- chunked bodies ------------------------------------------------------ */

/* Feeds in[0..n) in pieces whose ends are cuts[0..ncuts) (then n): the
 * data, the trailer bytes, the bytes used and the verdict. */
typedef struct decoded {
    char data[512], trailer[512];
    size_t ndata, ntrailer, used;
    int rc, error;
} decoded;

static void feed_cuts(const char *in, size_t n, const size_t *cuts, size_t ncuts, decoded *d)
{
    weft__http_chunked c;
    weft__http_chunked_init(&c, NULL);
    memset(d, 0, sizeof *d);
    size_t off = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : n;
        while (off < end) {
            size_t used;
            weft__http_str sp;
            int rc = weft__http_chunked_feed(&c, in + off, end - off, &used, &sp);
            cr_assert_leq(used, end - off);
            if (sp.n)
                cr_assert(sp.p >= in + off && sp.p + sp.n <= in + off + used);
            off += used;
            d->rc = rc;
            if (rc == -EBADMSG) {
                d->error = c.error;
                d->used = off;
                return;
            }
            if (rc == WEFT__HTTP_CHUNK_DATA) {
                cr_assert_gt(sp.n, 0);
                memcpy(d->data + d->ndata, sp.p, sp.n);
                d->ndata += sp.n;
            } else if (rc == WEFT__HTTP_CHUNK_TRAILER || rc == WEFT__HTTP_CHUNK_DONE) {
                memcpy(d->trailer + d->ntrailer, sp.p, sp.n);
                d->ntrailer += sp.n;
            }
            if (rc == WEFT__HTTP_CHUNK_DONE) {
                d->used = off;
                /* And it stays done. */
                cr_assert_eq(weft__http_chunked_feed(&c, in + off, n - off, &used, &sp),
                             WEFT__HTTP_CHUNK_DONE);
                cr_assert_eq(used, 0);
                return;
            }
            if (rc == WEFT__HTTP_CHUNK_MORE)
                cr_assert_eq(off, end);
        }
    }
    d->used = off;
}

static void check_chunked_splits(const char *in, const char *data, const char *trailer,
                                 size_t body_len)
{
    size_t n = strlen(in);
    decoded whole, part;
    feed_cuts(in, n, NULL, 0, &whole);
    cr_assert_eq(whole.rc, WEFT__HTTP_CHUNK_DONE);
    cr_assert_eq(whole.used, body_len);
    cr_assert_eq(whole.ndata, strlen(data));
    cr_assert(memcmp(whole.data, data, whole.ndata) == 0);
    cr_assert_eq(whole.ntrailer, strlen(trailer));
    cr_assert(memcmp(whole.trailer, trailer, whole.ntrailer) == 0);
    /* Every split in two, and in three. */
    for (size_t a = 0; a <= n; a++) {
        feed_cuts(in, n, &a, 1, &part);
        cr_assert_eq(part.rc, whole.rc, "split %zu", a);
        cr_assert_eq(part.used, whole.used);
        cr_assert_eq(part.ndata, whole.ndata);
        cr_assert(memcmp(part.data, whole.data, whole.ndata) == 0);
        cr_assert_eq(part.ntrailer, whole.ntrailer);
        cr_assert(memcmp(part.trailer, whole.trailer, whole.ntrailer) == 0);
        for (size_t b = a; b <= n; b += 3) {
            size_t cuts[2] = {a, b};
            feed_cuts(in, n, cuts, 2, &part);
            cr_assert_eq(part.rc, whole.rc);
            cr_assert_eq(part.ndata, whole.ndata);
            cr_assert(memcmp(part.data, whole.data, whole.ndata) == 0);
            cr_assert(memcmp(part.trailer, whole.trailer, whole.ntrailer) == 0);
        }
    }
    /* One byte at a time. */
    size_t cuts[512];
    for (size_t k = 0; k < n; k++)
        cuts[k] = k + 1;
    feed_cuts(in, n, cuts, n, &part);
    cr_assert_eq(part.rc, whole.rc);
    cr_assert_eq(part.used, whole.used);
    cr_assert_eq(part.ndata, whole.ndata);
    cr_assert(memcmp(part.data, whole.data, whole.ndata) == 0);
    cr_assert_eq(part.ntrailer, whole.ntrailer);
    cr_assert(memcmp(part.trailer, whole.trailer, whole.ntrailer) == 0);
    /* The trailer bytes are a field section. */
    weft__http_header h[8];
    size_t nh;
    int err;
    cr_assert_eq(weft__http_parse_fields(whole.trailer, whole.ntrailer, h, 8, &nh, NULL, &err),
                 (int)whole.ntrailer);
}

Test(http_chunked, every_split, .timeout = 20)
{
    const char *body = "5\r\nhello\r\n6;ext=val;q=\"a b\"\r\n world\r\n"
                       "10\r\n 0123456789abcde\r\n0\r\nX-Sum: 1\r\nY: two \r\n\r\n";
    char with_next[512];
    snprintf(with_next, sizeof with_next, "%sGET / HTTP/1.1\r\n", body);
    check_chunked_splits(with_next, "hello world 0123456789abcde", "X-Sum: 1\r\nY: two \r\n\r\n",
                         strlen(body));
    check_chunked_splits("0\r\n\r\n", "", "\r\n", 5);
    check_chunked_splits("1;a\r\nx\r\n0;b=c\r\n\r\nextra", "x", "\r\n", 17);
}

Test(http_chunked, errors_split_the_same, .timeout = 20)
{
    static const char *bad[] = {
        "5\r\nhello\r\n0\r\nA: b\n\r\n",
        "ffffffffffffffff1\r\n",
        "5;a=\"x\ny\"\r\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXX\r\n0\r\n\r\n",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        size_t n = strlen(bad[k]);
        decoded whole, part;
        feed_cuts(bad[k], n, NULL, 0, &whole);
        cr_assert_eq(whole.rc, -EBADMSG);
        cr_assert_eq(whole.error, 400);
        for (size_t a = 0; a <= n; a++) {
            feed_cuts(bad[k], n, &a, 1, &part);
            cr_assert_eq(part.rc, -EBADMSG);
            cr_assert_eq(part.used, whole.used, "case %zu split %zu", k, a);
            cr_assert_eq(part.ndata, whole.ndata);
        }
    }
}

Test(http_chunked, limits, .timeout = 10)
{
    weft__http_chunked c;
    size_t used;
    weft__http_str sp;
    /* body_max: told once the size line is in, before any data. */
    weft__http_chunk_limits lim = {.body_max = 10};
    weft__http_chunked_init(&c, &lim);
    cr_assert_eq(weft__http_chunked_feed(&c, "a\r\n0123456789\r\nb\r\n", 19, &used, &sp),
                 WEFT__HTTP_CHUNK_DATA);
    cr_assert_eq(weft__http_chunked_feed(&c, "\r\n1\r\n", 5, &used, &sp), -EBADMSG);
    cr_assert_eq(c.error, 413);
    cr_assert_eq(c.total, 10);
    cr_assert_eq(weft__http_chunked_feed(&c, "x", 1, &used, &sp), -EBADMSG); /* sticky */
    weft__http_chunked_init(&c, &lim);
    cr_assert_eq(weft__http_chunked_feed(&c, "b\r\n", 3, &used, &sp), -EBADMSG);
    cr_assert_eq(c.error, 413);

    /* Extensions, summed over the body. */
    lim = (weft__http_chunk_limits){.ext_max = 8};
    weft__http_chunked_init(&c, &lim);
    cr_assert_eq(weft__http_chunked_feed(&c, "1;abcdef\r\nx\r\n", 13, &used, &sp),
                 WEFT__HTTP_CHUNK_DATA);
    cr_assert_eq(weft__http_chunked_feed(&c, "\r\n1;a\r\n", 7, &used, &sp), -EBADMSG);
    cr_assert_eq(c.error, 400);
    /* The default: a long one is refused. */
    static char big[20000];
    memset(big, 'a', sizeof big);
    memcpy(big, "1;", 2);
    weft__http_chunked_init(&c, NULL);
    cr_assert_eq(weft__http_chunked_feed(&c, big, sizeof big, &used, &sp), -EBADMSG);
    cr_assert_eq(used, 16384 + 1);

    /* Trailers: bytes and count. */
    lim = (weft__http_chunk_limits){.trailer_max = 10};
    weft__http_chunked_init(&c, &lim);
    cr_assert_eq(weft__http_chunked_feed(&c, "0\r\nA: b\r\n\r\n", 11, &used, &sp),
                 WEFT__HTTP_CHUNK_DONE);
    weft__http_chunked_init(&c, &lim);
    cr_assert_eq(weft__http_chunked_feed(&c, "0\r\nA: bcde\r\n\r\n", 14, &used, &sp), -EBADMSG);
    lim = (weft__http_chunk_limits){.trailers_max = 2};
    weft__http_chunked_init(&c, &lim);
    cr_assert_eq(weft__http_chunked_feed(&c, "0\r\nA: b\r\nB: c\r\n\r\n", 17, &used, &sp),
                 WEFT__HTTP_CHUNK_DONE);
    weft__http_chunked_init(&c, &lim);
    cr_assert_eq(weft__http_chunked_feed(&c, "0\r\nA: b\r\nB: c\r\nC: d\r\n\r\n", 23, &used, &sp),
                 -EBADMSG);
}

Test(http_chunked, big_chunk_in_spans, .timeout = 10)
{
    /* A large chunk's data comes as spans of whatever was fed, uncopied. */
    static char in[70000];
    size_t n = (size_t)snprintf(in, sizeof in, "10000\r\n");
    memset(in + n, 'd', 0x10000);
    n += 0x10000;
    n += (size_t)snprintf(in + n, sizeof in - n, "\r\n0\r\n\r\n");
    weft__http_chunked c;
    weft__http_chunked_init(&c, NULL);
    size_t off = 0, data = 0, used, spans = 0;
    weft__http_str sp;
    int rc;
    while ((rc = weft__http_chunked_feed(&c, in + off, n - off < 4096 ? n - off : 4096, &used,
                                         &sp)) != WEFT__HTTP_CHUNK_DONE) {
        cr_assert_geq(rc, 0);
        if (rc == WEFT__HTTP_CHUNK_DATA) {
            cr_assert(sp.p >= in + off && sp.p + sp.n == in + off + used);
            data += sp.n;
            spans++;
        }
        off += used;
    }
    off += used;
    cr_assert_eq(data, 0x10000);
    cr_assert_eq(off, n);
    cr_assert_leq(spans, 18);
}
