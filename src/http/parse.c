/*
 * parse.c - HTTP/1.1 heads: the request line, the status line, field
 * lines, and what the fields say about the message (its body's framing,
 * keep-alive, Host, Expect, Upgrade).
 *
 * One pass left to right over the bytes, by index, each loop bounded by
 * the bytes present and the limits, so the first fault decides and a head
 * that cannot end within its limits is refused as soon as that is known.
 * The rules, and why each is as strict as it is, are in parse.h.
 */
#include "parse.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

enum {
    TCHAR = WEFT__HTTP_TCHAR,
    VCHAR = WEFT__HTTP_VCHAR,
    WS = WEFT__HTTP_WS,
    QDTEXT = WEFT__HTTP_QDTEXT,
    HEX = WEFT__HTTP_HEX,
};

/* Ranges are disjoint: each byte is named once (GNU range designators). */
const unsigned char weft__http_cls[256] = {
    ['\t'] = WS | QDTEXT,
    [' '] = WS | QDTEXT,
    ['!'] = TCHAR | VCHAR | QDTEXT,
    ['"'] = VCHAR,
    ['#' ... '\''] = TCHAR | VCHAR | QDTEXT,
    ['(' ... ')'] = VCHAR | QDTEXT,
    ['*' ... '+'] = TCHAR | VCHAR | QDTEXT,
    [','] = VCHAR | QDTEXT,
    ['-' ... '.'] = TCHAR | VCHAR | QDTEXT,
    ['/'] = VCHAR | QDTEXT,
    ['0' ... '9'] = TCHAR | VCHAR | QDTEXT | HEX,
    [':' ... '@'] = VCHAR | QDTEXT,
    ['A' ... 'F'] = TCHAR | VCHAR | QDTEXT | HEX,
    ['G' ... 'Z'] = TCHAR | VCHAR | QDTEXT,
    ['['] = VCHAR | QDTEXT,
    ['\\'] = VCHAR,
    [']'] = VCHAR | QDTEXT,
    ['^' ... '`'] = TCHAR | VCHAR | QDTEXT,
    ['a' ... 'f'] = TCHAR | VCHAR | QDTEXT | HEX,
    ['g' ... 'z'] = TCHAR | VCHAR | QDTEXT,
    ['{'] = VCHAR | QDTEXT,
    ['|'] = TCHAR | VCHAR | QDTEXT,
    ['}'] = VCHAR | QDTEXT,
    ['~'] = TCHAR | VCHAR | QDTEXT,
    [0x80 ... 0xff] = VCHAR | QDTEXT,
};

#define CLS(c) WEFT__HTTP_CLS(c)

/* Empty lines skipped before a request line (RFC 9112 2.2 asks for one). */
#define LEADING_EMPTY_MAX 2
/* Limits are clamped here, so a head's length always fits an int. */
#define LIMIT_CAP ((size_t)1 << 30)

typedef struct limits {
    size_t line, head, headers;
} limits;

static limits limits_of(const weft__http_limits *lim)
{
    limits l = {WEFT__HTTP_LINE_MAX, WEFT__HTTP_HEAD_MAX, WEFT__HTTP_HEADERS_MAX};
    if (lim && lim->line_max)
        l.line = lim->line_max;
    if (lim && lim->head_max)
        l.head = lim->head_max;
    if (lim && lim->headers_max)
        l.headers = lim->headers_max;
    if (l.line > LIMIT_CAP)
        l.line = LIMIT_CAP;
    if (l.head > LIMIT_CAP)
        l.head = LIMIT_CAP;
    return l;
}

static int fail(int *error, int status)
{
    *error = status;
    return -EBADMSG;
}

static weft__http_str str(const char *b, size_t from, size_t to)
{
    return (weft__http_str){b + from, to - from};
}

/* Whether s equals the NUL-terminated lowercase name, any case. */
static bool eq_nocase(weft__http_str s, const char *name, size_t n)
{
    return s.n == n && strncasecmp(s.p, name, n) == 0;
}
#define EQ(s, lit) eq_nocase(s, lit, sizeof lit - 1)

/* ---- lines --------------------------------------------------------------- */

/* The verdict when parsing ran out of bytes it may look at before a line's
 * end: a limit's status, else "need more".  line_end is the index by which
 * the line's CRLF must end (the line limit), head the head limit; both are
 * indexes into buf. */
static int short_of(size_t len, size_t line_end, size_t head, int *error)
{
    size_t avail = len < head ? len : head;
    if (line_end <= avail)
        return fail(error, 414);
    if (len >= head)
        return fail(error, 431);
    return -EAGAIN;
}

/* Field lines from b[i], up to and with the empty line that ends them.
 * Returns the index after that empty line, -EAGAIN or -EBADMSG. */
static int fields(const char *b, size_t len, size_t i, size_t head, weft__http_header *hs,
                  size_t max, size_t *nh, int *error)
{
    size_t w = len < head ? len : head; /* what may be looked at */
    size_t n = 0;
    for (;;) {
        if (i >= w)
            break;
        unsigned char c = (unsigned char)b[i];
        if (c == '\r') {
            if (i + 1 >= w)
                break;
            if (b[i + 1] != '\n')
                return fail(error, 400);
            *nh = n;
            return (int)(i + 2);
        }
        if (n == max) /* one field line more than allowed begins */
            return fail(error, 431);
        /* A line starting with whitespace (obs-fold), a colon (empty name),
         * LF (bare) or anything else that is not a token. */
        if (!(CLS(c) & TCHAR))
            return fail(error, 400);
        size_t ns = i;
        while (++i < w && (CLS(b[i]) & TCHAR))
            ;
        if (i >= w)
            break;
        if (b[i] != ':') /* whitespace before the colon, or a bad byte */
            return fail(error, 400);
        size_t ne = i++;
        while (i < w && (CLS(b[i]) & WS))
            i++;
        size_t vs = i, ve = i;
        for (; i < w; i++) {
            unsigned char v = CLS(b[i]);
            if (v & VCHAR)
                ve = i + 1;
            else if (!(v & WS))
                break;
        }
        if (i >= w)
            break;
        if (b[i] != '\r') /* a control byte, a bare LF */
            return fail(error, 400);
        if (i + 1 >= w)
            break;
        if (b[i + 1] != '\n')
            return fail(error, 400);
        i += 2;
        hs[n].name = str(b, ns, ne);
        hs[n].value = str(b, vs, ve);
        n++;
    }
    return short_of(len, (size_t)-1, head, error);
}

/* "HTTP/d.d" at b[i..): 1 for 1.0 and 1.1 (*minor set), 0 for another
 * d.d, -EAGAIN if cut short (by w), -EBADMSG otherwise. */
static int version(const char *b, size_t w, size_t i, int *minor, int *error)
{
    static const char pat[] = "HTTP/0.0"; /* '0' stands for a digit */
    for (size_t k = 0; k < 8; k++) {
        if (i + k >= w)
            return -EAGAIN;
        char c = b[i + k];
        if (pat[k] == '0' ? !(c >= '0' && c <= '9') : c != pat[k])
            return fail(error, 400);
    }
    if (b[i + 5] == '1' && (b[i + 7] == '0' || b[i + 7] == '1')) {
        *minor = b[i + 7] - '0';
        return 1;
    }
    return 0;
}

/* CRLF at b[i..): 0, -EAGAIN if cut short by w, or -EBADMSG. */
static int crlf(const char *b, size_t w, size_t i, int *error)
{
    if (i >= w)
        return -EAGAIN;
    if (b[i] != '\r')
        return fail(error, 400);
    if (i + 1 >= w)
        return -EAGAIN;
    if (b[i + 1] != '\n')
        return fail(error, 400);
    return 0;
}

/* ---- what the fields say ------------------------------------------------- */

/* What the framing and connection fields of a head say. */
typedef struct meta {
    bool cl, te, chunked_last, te_other, close, keep_alive, conn_upgrade, upgrade, expect;
    int chunked, hosts, codings;
    uint64_t length;
    weft__http_str host;
} meta;

/* Calls fn(element, arg) for each element of the list v, OWS around it
 * removed; stops at the first nonzero return and returns it.  Empty
 * elements are skipped, or passed to fn too if empty_too. */
static int each_element(weft__http_str v, int (*fn)(weft__http_str, void *), void *arg,
                        bool empty_too)
{
    size_t i = 0;
    while (i <= v.n) {
        size_t s = i;
        while (i < v.n && v.p[i] != ',')
            i++;
        size_t e = i;
        while (s < e && (CLS(v.p[s]) & WS))
            s++;
        while (e > s && (CLS(v.p[e - 1]) & WS))
            e--;
        if (e > s || empty_too) {
            int rc = fn(str(v.p, s, e), arg);
            if (rc)
                return rc;
        }
        i++; /* past the comma (or the end) */
    }
    return 0;
}

static int connection_token(weft__http_str t, void *arg)
{
    meta *m = arg;
    if (EQ(t, "close"))
        m->close = true;
    else if (EQ(t, "keep-alive"))
        m->keep_alive = true;
    else if (EQ(t, "upgrade"))
        m->conn_upgrade = true;
    return 0;
}

static int coding(weft__http_str t, void *arg)
{
    meta *m = arg;
    if (t.n == 0) /* parsers differ on what an empty element ends the list with */
        return 400;
    for (size_t i = 0; i < t.n; i++)
        if (!(CLS(t.p[i]) & TCHAR)) /* parameters, quotes, stray bytes */
            return 400;
    m->codings++;
    m->chunked_last = EQ(t, "chunked");
    if (m->chunked_last)
        m->chunked++;
    else
        m->te_other = true;
    return 0;
}

/* Content-Length's value: 1*DIGIT *(OWS "," OWS 1*DIGIT), all equal, and
 * equal to any earlier field's. */
static int content_length(weft__http_str v, meta *m)
{
    size_t i = 0;
    for (;;) {
        if (i >= v.n || !(v.p[i] >= '0' && v.p[i] <= '9'))
            return 400; /* empty, or an empty element */
        uint64_t x = 0;
        for (; i < v.n && v.p[i] >= '0' && v.p[i] <= '9'; i++) {
            if (x > (UINT64_C(0x7fffffffffffffff) - (uint64_t)(v.p[i] - '0')) / 10)
                return 400;
            x = x * 10 + (uint64_t)(v.p[i] - '0');
        }
        if (m->cl && x != m->length)
            return 400;
        m->cl = true;
        m->length = x;
        while (i < v.n && (CLS(v.p[i]) & WS))
            i++;
        if (i == v.n)
            return 0;
        if (v.p[i++] != ',')
            return 400;
        while (i < v.n && (CLS(v.p[i]) & WS))
            i++;
    }
}

/* A Host value: the bytes of uri-host [":" port] (RFC 3986 reg-name,
 * IP-literal, IPv4address), not their grammar. */
static bool host_ok(weft__http_str v)
{
    for (size_t i = 0; i < v.n; i++) {
        unsigned char c = (unsigned char)v.p[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (!memchr("-._~!$&'()*+,;=%:[]", c, 19))
            return false;
    }
    return true;
}

/* Whether h's field line has an HTAB around or in its value.  h comes
 * from fields(): the line ends with CR in the same buffer. */
static bool line_has_tab(const weft__http_header *h)
{
    for (const char *p = h->name.p + h->name.n + 1; *p != '\r'; p++)
        if (*p == '\t')
            return true;
    return false;
}

/* Reads the fields that matter for framing and the connection.  Returns 0
 * or the status of the first fault. */
static int scan_fields(const weft__http_header *hs, size_t n, meta *m, bool request)
{
    for (size_t k = 0; k < n; k++) {
        weft__http_str name = hs[k].name, v = hs[k].value;
        int rc = 0;
        switch (name.n) {
        case 4:
            if (request && EQ(name, "host")) { /* a response's means nothing */
                if (++m->hosts > 1 || !host_ok(v))
                    return 400;
                m->host = v;
            }
            break;
        case 6:
            if (EQ(name, "expect") && EQ(v, "100-continue"))
                m->expect = true;
            break;
        case 7:
            if (EQ(name, "upgrade"))
                m->upgrade = true;
            break;
        case 10:
            if (EQ(name, "connection"))
                rc = each_element(v, connection_token, m, false);
            break;
        case 14:
            if (EQ(name, "content-length"))
                rc = line_has_tab(&hs[k]) ? 400 : content_length(v, m);
            break;
        case 17:
            if (EQ(name, "transfer-encoding")) {
                m->te = true;
                rc = line_has_tab(&hs[k]) ? 400 : each_element(v, coding, m, true);
            }
            break;
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* The framing rules shared by requests and responses (parse.h). */
static int framing(const meta *m, int minor)
{
    if (!m->te)
        return 0;
    if (m->cl || minor == 0 || m->codings == 0 || m->chunked != 1 || !m->chunked_last)
        return 400;
    if (m->te_other)
        return 501;
    return 0;
}

/* ---- the hint ------------------------------------------------------------ */

/* With last_len, whether the new bytes buf[last..len) leave the head
 * certainly short of its end and within its limits, with no byte that is
 * wrong anywhere in a head: then the full parse can wait.  skip_empty:
 * empty lines may precede the first line (requests). */
static bool still_short(const char *b, size_t len, size_t last, const limits *l, bool skip_empty)
{
    if (last == 0 || last > len || len >= l->head)
        return false;
    for (size_t k = last; k < len; k++) {
        unsigned char c = (unsigned char)b[k];
        if (c == '\n') {
            if (k == 0 || b[k - 1] != '\r')
                return false; /* a bare LF */
            if (k >= 3 && b[k - 2] == '\n' && b[k - 3] == '\r')
                return false; /* CRLFCRLF: perhaps the end */
        } else if (k > 0 && b[k - 1] == '\r') {
            return false; /* a bare CR */
        } else if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f) {
            return false;
        }
    }
    /* The first line must be complete or still within line_max. */
    size_t s = 0;
    if (skip_empty)
        for (int k = 0; k <= LEADING_EMPTY_MAX && s + 1 < len && b[s] == '\r'; k++)
            s += 2;
    size_t end = s + l->line + 2 < len ? s + l->line + 2 : len;
    if (s < end && memchr(b + s, '\n', end - s))
        return true;
    return len - s < l->line + 2;
}

/* ---- requests ------------------------------------------------------------ */

int weft__http_parse_request(weft__http_request *r, const char *b, size_t len, size_t last_len,
                             const weft__http_limits *lim)
{
    limits l = limits_of(lim);
    if (still_short(b, len, last_len, &l, true))
        return -EAGAIN;
    int *err = &r->error;
    size_t i = 0, w = len < l.head ? len : l.head;

    /* Empty lines before the request line (RFC 9112 2.2). */
    for (int k = 0;; k++) {
        if (i >= w || b[i] != '\r')
            break;
        if (k == LEADING_EMPTY_MAX)
            return fail(err, 400);
        if (i + 1 >= w)
            return short_of(len, (size_t)-1, l.head, err);
        if (b[i + 1] != '\n')
            return fail(err, 400);
        i += 2;
    }

    /* method SP request-target SP HTTP-version CRLF, within line_max. */
    size_t start = i, line_end = start + l.line + 2;
    size_t lw = w < line_end ? w : line_end;
    size_t ms = i;
    while (i < lw && (CLS(b[i]) & TCHAR))
        i++;
    if (i >= lw)
        return short_of(len, line_end, l.head, err);
    if (b[i] != ' ' || i == ms)
        return fail(err, 400);
    size_t me = i++, ts = i;
    while (i < lw && (unsigned char)b[i] - 0x21u < 0x5eu) /* visible ASCII */
        i++;
    if (i >= lw)
        return short_of(len, line_end, l.head, err);
    if (b[i] != ' ' || i == ts)
        return fail(err, 400);
    size_t te = i++;
    int minor = 0;
    int v = version(b, lw, i, &minor, err);
    if (v == -EBADMSG)
        return v;
    if (v == -EAGAIN)
        return short_of(len, line_end, l.head, err);
    int rc = crlf(b, lw, i + 8, err);
    if (rc == -EBADMSG)
        return rc;
    if (rc == -EAGAIN)
        return short_of(len, line_end, l.head, err);
    if (v == 0)
        return fail(err, 505);
    i += 10;

    size_t max = l.headers < r->headers_cap ? l.headers : r->headers_cap;
    size_t nh = 0;
    int end = fields(b, len, i, l.head, r->headers, max, &nh, err);
    if (end < 0)
        return end;

    meta m = {0};
    int status = scan_fields(r->headers, nh, &m, true);
    if (!status && minor == 1 && m.hosts != 1)
        status = 400;
    if (!status)
        status = framing(&m, minor);
    if (status)
        return fail(err, status);

    r->method = str(b, ms, me);
    r->target = str(b, ts, te);
    r->minor = minor;
    r->nheaders = nh;
    r->host = m.host;
    r->body = m.te ? WEFT__HTTP_BODY_CHUNKED : m.cl ? WEFT__HTTP_BODY_LENGTH : WEFT__HTTP_BODY_NONE;
    r->content_length = m.cl ? m.length : 0;
    r->keep_alive = !m.close && (minor == 1 || m.keep_alive);
    r->expect_continue = minor == 1 && m.expect;
    r->upgrade = m.upgrade;
    r->conn_upgrade = m.conn_upgrade;
    return end;
}

/* ---- responses ----------------------------------------------------------- */

int weft__http_parse_response(weft__http_response *r, const char *b, size_t len, size_t last_len,
                              const weft__http_limits *lim)
{
    limits l = limits_of(lim);
    if (still_short(b, len, last_len, &l, false))
        return -EAGAIN;
    int *err = &r->error;
    size_t w = len < l.head ? len : l.head;
    size_t line_end = l.line + 2, lw = w < line_end ? w : line_end;

    /* HTTP-version SP status-code [SP reason-phrase] CRLF */
    int minor = 0;
    int v = version(b, lw, 0, &minor, err);
    if (v == -EBADMSG)
        return v;
    if (v == -EAGAIN)
        return short_of(len, line_end, l.head, err);
    size_t i = 8;
    for (size_t k = 0; k < 4; k++, i++) {
        if (i >= lw)
            return short_of(len, line_end, l.head, err);
        char c = b[i];
        bool ok = k == 0 ? c == ' ' : k == 1 ? c >= '1' && c <= '9' : c >= '0' && c <= '9';
        if (!ok)
            return fail(err, 400);
    }
    int status = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
    size_t rs = i, re = i;
    if (i >= lw)
        return short_of(len, line_end, l.head, err);
    if (b[i] == ' ') {
        rs = re = ++i;
        for (; i < lw; i++) {
            unsigned char c = CLS(b[i]);
            if (c & VCHAR)
                re = i + 1;
            else if (!(c & WS))
                break;
        }
    }
    int rc = crlf(b, lw, i, err);
    if (rc == -EBADMSG)
        return rc;
    if (rc == -EAGAIN)
        return short_of(len, line_end, l.head, err);
    if (v == 0)
        return fail(err, 505);
    i += 2;

    size_t max = l.headers < r->headers_cap ? l.headers : r->headers_cap;
    size_t nh = 0;
    int end = fields(b, len, i, l.head, r->headers, max, &nh, err);
    if (end < 0)
        return end;

    meta m = {0};
    int st = scan_fields(r->headers, nh, &m, false);
    if (!st)
        st = framing(&m, minor);
    if (st)
        return fail(err, st);

    bool no_body = r->head_request || status < 200 || status == 204 || status == 304;
    r->minor = minor;
    r->status = status;
    r->reason = str(b, rs, re);
    r->nheaders = nh;
    r->body = no_body ? WEFT__HTTP_BODY_NONE
              : m.te  ? WEFT__HTTP_BODY_CHUNKED
              : m.cl  ? WEFT__HTTP_BODY_LENGTH
                      : WEFT__HTTP_BODY_CLOSE;
    r->content_length = m.cl ? m.length : 0;
    r->keep_alive = !m.close && (minor == 1 || m.keep_alive) && r->body != WEFT__HTTP_BODY_CLOSE;
    r->upgrade = m.upgrade;
    r->conn_upgrade = m.conn_upgrade;
    return end;
}

/* ---- field sections and lookups ------------------------------------------ */

int weft__http_parse_fields(const char *buf, size_t len, weft__http_header *headers, size_t cap,
                            size_t *n, const weft__http_limits *lim, int *error)
{
    limits l = limits_of(lim);
    size_t max = l.headers < cap ? l.headers : cap;
    size_t nh = 0;
    int end = fields(buf, len, 0, l.head, headers, max, &nh, error);
    if (end > 0)
        *n = nh;
    return end;
}

const weft__http_header *weft__http_header_next(const weft__http_header *hs, size_t n,
                                                const char *name, const weft__http_header *prev)
{
    size_t k = prev ? (size_t)(prev - hs) + 1 : 0;
    size_t nl = strlen(name);
    for (; k < n; k++)
        if (eq_nocase(hs[k].name, name, nl))
            return &hs[k];
    return NULL;
}

typedef struct want {
    const char *token;
    size_t n;
} want;

static int list_match(weft__http_str e, void *arg)
{
    want *w = arg;
    return eq_nocase(e, w->token, w->n);
}

bool weft__http_list_has(weft__http_str value, const char *token)
{
    want w = {token, strlen(token)};
    return value.n && each_element(value, list_match, &w, false) != 0;
}

bool weft__http_is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!(WEFT__HTTP_CLS(*s) & WEFT__HTTP_TCHAR))
            return false;
    return true;
}

bool weft__http_is_value(const char *s)
{
    for (; *s; s++)
        if (!(WEFT__HTTP_CLS(*s) & (WEFT__HTTP_VCHAR | WEFT__HTTP_WS)))
            return false;
    return true;
}
