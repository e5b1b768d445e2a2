/*
 * parse.h - HTTP/1.1 message heads (RFC 9112) and chunked bodies, parsed
 * in place: request and response heads, a field section on its own (the
 * trailers), and an incremental chunked decoder.
 *
 * Pure C over libc, no allocation, no recursion, nothing of the rest of
 * weft, so it can be tested and fuzzed alone.  Every string handed back is
 * a (pointer, length) pair into the caller's buffer: it lives as long as
 * the caller keeps those bytes where they are.  Nothing is NUL-terminated.
 *
 * Strict where request smuggling lives (RFC 9112 sections 2.2, 6 and 11.2;
 * CVE-2019-15605, CVE-2020-8287, CVE-2023-30589): a message that two
 * parsers could frame differently is refused, never guessed at.  The
 * choices where the RFC leaves one:
 *   - Lines end with CRLF only.  A bare LF (which RFC 9112 2.2 lets a
 *     recipient accept) and a bare CR are both 400.
 *   - The request line is exactly method SP target SP version: one space
 *     each (no "whitespace-delimited words", which 3 allows).
 *   - Versions: HTTP/1.0 and HTTP/1.1.  Any other "HTTP/d.d" (HTTP/1.2 and
 *     HTTP/2.0 included) is 505; anything else in that place is 400.
 *   - The request-target is visible ASCII (0x21-0x7E); other bytes,
 *     percent-encoded by every client, are 400.
 *   - Up to two empty lines before a request line are skipped (3 says at
 *     least one); a third is 400.
 *   - Field values: VCHAR, obs-text (0x80-0xFF), SP and HTAB; any other
 *     control byte (NUL and DEL included) is 400.  A line starting with SP
 *     or HTAB (obs-fold, or whitespace before the first field) is 400.  So
 *     is whitespace between a field name and its colon, an empty name, and
 *     a name byte that is not a token character.
 *   - Content-Length: digits only, at most 2^63-1.  The list form ("5, 5")
 *     and repeated fields are accepted when every value is the same
 *     number (RFC 9110 8.6); differing values, an empty value or an empty
 *     list element are 400.
 *   - Transfer-Encoding (every field line of it, taken as one list) with
 *     Content-Length is 400, whichever the message.  In HTTP/1.0 it is 400
 *     (RFC 9112 6.1: the framing is faulty).  A list that has an empty
 *     element (an empty field line included: RFC 9110 5.6.1 would have them
 *     ignored, but parsers differ on whether "chunked," ends with chunked),
 *     an element that is not a bare token (parameters included), or names
 *     chunked twice or not last is 400: the length of the body cannot be
 *     known (RFC 9112 6.3).  Otherwise, a coding other than
 *     chunked before the final chunked is 501 (weft decodes no other
 *     coding).  Responses follow the same rules (a client cannot decode
 *     such a body either), although 6.3 would let a response whose final
 *     coding is not chunked be read until the close.
 *   - An HTAB anywhere in a Content-Length or Transfer-Encoding field line
 *     is 400: whitespace RFC 9110 allows, but parsers differ on it there
 *     (http_parser 2.9 takes "chunked<HTAB>" for another coding and reads
 *     no body where weft would read a chunked one).
 *   - Host: more than one is 400 in any request, none is 400 in HTTP/1.1
 *     (RFC 9112 3.2); its value may be empty and otherwise holds only the
 *     characters of a host and port (letters, digits, "-._~!$&'()*+,;=%:[]").
 *   - Expect: only "100-continue" (any case) is recognised, and ignored in
 *     HTTP/1.0 (RFC 9110 10.1.1); any other expectation is left to the
 *     caller (it may answer 417).
 *   - Status codes: three digits, 100 to 999 (RFC 9110 15 asks a client to
 *     treat 600-999 as 5xx: the caller's business).  A status line without
 *     reason phrase may omit the space after the code.
 * Chunked bodies: chunk sizes are at most 16 hex digits and 2^63-1;
 * extensions follow RFC 9112 7.1.1 exactly (";name", ";name=token",
 * ";name=\"quoted\"", with the optional whitespace BWS allows and no CR or LF
 * anywhere in them); trailer fields follow the field rules above.
 */
#ifndef WEFT_HTTP_PARSE_H
#define WEFT_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes in the caller's buffer: p[0..n).  p is NULL only when n is 0. */
typedef struct weft__http_str {
    const char *p;
    size_t n;
} weft__http_str;

/* One field line: name and value, the value without its leading and
 * trailing whitespace (it may be empty). */
typedef struct weft__http_header {
    weft__http_str name, value;
} weft__http_header;

/* Limits of a head (or of a trailer section).  A field left 0 takes its
 * default; a NULL pointer means all defaults.  Values above 2^30 are taken
 * as 2^30. */
typedef struct weft__http_limits {
    size_t line_max;    /* request or status line, without its CRLF: 8192;
                         * longer is 414 */
    size_t head_max;    /* the whole head, its final empty line included
                         * (and any empty lines before a request line):
                         * 65536; longer is 431 */
    size_t headers_max; /* field lines: 100; more is 431 */
} weft__http_limits;

enum {
    WEFT__HTTP_LINE_MAX = 8192,
    WEFT__HTTP_HEAD_MAX = 65536,
    WEFT__HTTP_HEADERS_MAX = 100,
};

/* How the body that follows a head is framed. */
typedef enum weft__http_body {
    WEFT__HTTP_BODY_NONE,    /* no body: the next message follows the head */
    WEFT__HTTP_BODY_LENGTH,  /* content_length bytes (0 included) */
    WEFT__HTTP_BODY_CHUNKED, /* chunked: see weft__http_chunked */
    WEFT__HTTP_BODY_CLOSE,   /* responses only: until the server closes */
} weft__http_body;

/* A request head.  The caller sets headers and headers_cap; a call that
 * returns > 0 sets every other field but error, a call that returns
 * -EBADMSG sets error only, and -EAGAIN leaves all but headers[] as they
 * were.  Every weft__http_str points into the buffer parsed. */
typedef struct weft__http_request {
    weft__http_header *headers; /* in: the caller's array for the fields */
    size_t headers_cap;         /* in: its size; more fields than this is 431 */
    weft__http_str method;      /* a token, case kept ("GET") */
    weft__http_str target;      /* the request-target as sent */
    int minor;                  /* HTTP/1.minor: 0 or 1 */
    size_t nheaders;            /* field lines in headers[] */
    weft__http_str host;        /* Host's value; n == 0 when absent or empty */
    weft__http_body body;       /* NONE, LENGTH or CHUNKED */
    uint64_t content_length;    /* when body is LENGTH */
    bool keep_alive;            /* HTTP/1.1: unless Connection lists close;
                                 * HTTP/1.0: only if it lists keep-alive (and
                                 * not close) */
    bool expect_continue;       /* HTTP/1.1 with Expect: 100-continue */
    bool upgrade;               /* an Upgrade field is present (whether
                                 * Connection lists upgrade: see conn_upgrade) */
    bool conn_upgrade;          /* Connection lists upgrade */
    int error;                  /* after -EBADMSG: the status to answer with
                                 * before closing: 400, 414, 431, 501 or 505 */
} weft__http_request;

/* A response head.  As for requests: the caller sets headers, headers_cap
 * and head_request, the call the rest. */
typedef struct weft__http_response {
    weft__http_header *headers; /* in: the caller's array for the fields */
    size_t headers_cap;         /* in: its size; more fields than this is an error */
    bool head_request;          /* in: it answers a HEAD: no body follows */
    int minor;                  /* HTTP/1.minor: 0 or 1 */
    int status;                 /* 100..999 */
    weft__http_str reason;      /* the reason phrase, maybe empty */
    size_t nheaders;
    weft__http_body body;       /* NONE for HEAD, 1xx, 204 and 304 whatever the
                                 * fields say; else CHUNKED, LENGTH, or CLOSE
                                 * when neither field is present */
    uint64_t content_length;    /* when a Content-Length was present (also for
                                 * a HEAD or 304 answer), else 0 */
    bool keep_alive;            /* as for requests, and false when body is CLOSE */
    bool upgrade, conn_upgrade; /* as for requests */
    int error;                  /* after -EBADMSG, which rule the response
                                 * broke, in the request's terms: 400
                                 * malformed, 414 status line too long, 431
                                 * head too large, 501 a coding other than
                                 * chunked, 505 another version */
} weft__http_response;

/* Parses the request head at the start of buf[0..len).
 *
 * Returns the head's length in bytes (> 0: the body or the next request
 * starts at buf + that), with *r filled in; -EAGAIN when the head is not
 * complete yet (call again once more bytes are in the buffer); -EBADMSG
 * when the request must be refused, with r->error the status to answer
 * with before closing the connection:
 *   400  malformed (any rule of this file's comment), or Host missing or
 *        repeated, or framing that cannot be trusted;
 *   414  the request line is longer than line_max, told as soon as line_max
 *        + 2 bytes are in without its CRLF;
 *   431  the head is longer than head_max (told as soon as head_max bytes
 *        are in without the head's end), or it has more fields than
 *        headers_max or headers_cap;
 *   501  a transfer coding other than chunked;
 *   505  a version other than HTTP/1.0 and HTTP/1.1.
 * Errors are found left to right: the first fault in the bytes decides.
 * An error or a complete head never depends on bytes after the head.
 *
 * last_len: 0, or the len of the previous call on the same head (same
 * buffer contents, one more read appended), which returned -EAGAIN.  With
 * it, a call looks only at the new bytes until they end the head or reach a
 * limit, so a head that trickles in costs O(its length) in all (plus a
 * search of the request line, itself bounded by line_max); a fault in an
 * incomplete head may then be reported only once the head is complete or
 * at a limit.  The result is otherwise the same as with 0.
 *
 * Never reads outside buf[0..len), never writes outside *r and
 * headers[0..headers_cap); the buffer may move between calls (nothing is
 * kept across them).  lim NULL: defaults. */
int weft__http_parse_request(weft__http_request *r, const char *buf, size_t len, size_t last_len,
                             const weft__http_limits *lim);

/* Parses the response head at the start of buf[0..len).  Returns, and
 * takes last_len and lim, as weft__http_parse_request; on -EBADMSG,
 * r->error says why (see the struct).  A client receiving a 1xx parses
 * the next head after it. */
int weft__http_parse_response(weft__http_response *r, const char *buf, size_t len, size_t last_len,
                              const weft__http_limits *lim);

/* Parses a field section on its own: field lines then an empty line, as in
 * a head after its first line (a chunked body's trailer section, as
 * gathered from weft__http_chunked_feed's spans).  Fields go to
 * headers[0..cap), their count to *n.  Returns the section's length (>= 2:
 * an empty section is "\r\n"), -EAGAIN if incomplete, or -EBADMSG with
 * *error set: 400 malformed, 431 longer than lim->head_max bytes or more
 * fields than lim->headers_max or cap.  *n is set only on success. */
int weft__http_parse_fields(const char *buf, size_t len, weft__http_header *headers, size_t cap,
                            size_t *n, const weft__http_limits *lim, int *error);

/* The first field named name (any case) after *prev (NULL: from the
 * start), or NULL.  Walk every field of a name with
 *   for (h = NULL; (h = weft__http_header_next(hs, n, "name", h)); ) ...
 * prev must be NULL or point into hs[0..n). */
const weft__http_header *weft__http_header_next(const weft__http_header *hs, size_t n,
                                                const char *name, const weft__http_header *prev);

/* Whether the comma-separated list value (Connection, TE, ...) has an
 * element equal to token, any case, whitespace around elements ignored. */
bool weft__http_list_has(weft__http_str value, const char *token);

/* Whether the C string s is a token (RFC 9110 5.6.2: a method, a field
 * name), and whether it may be sent as a field value: visible bytes,
 * obs-text, SP and HTAB, so no CR, LF, NUL or other control byte (header
 * injection). */
bool weft__http_is_token(const char *s);
bool weft__http_is_value(const char *s);

/* Byte classes of RFC 9110 5.6.2 (token), 5.5 (field value) and RFC 9112
 * 7.1.1 (quoted string), shared by parse.c and chunked.c: weft__http_cls[c]
 * is the set of classes byte c belongs to. */
enum {
    WEFT__HTTP_TCHAR = 1,  /* a token's character */
    WEFT__HTTP_VCHAR = 2,  /* a field value's, but whitespace: VCHAR, obs-text */
    WEFT__HTTP_WS = 4,     /* SP, HTAB */
    WEFT__HTTP_QDTEXT = 8, /* in a quoted string without a backslash */
    WEFT__HTTP_HEX = 16,   /* a hex digit */
};
extern const unsigned char weft__http_cls[256];
#define WEFT__HTTP_CLS(c) weft__http_cls[(unsigned char)(c)]

/* ---- chunked bodies ---------------------------------------------------- */

/* Limits of one chunked body.  0 takes the default. */
typedef struct weft__http_chunk_limits {
    uint64_t body_max;   /* data bytes in all: no limit but 2^63-1; a chunk
                          * size that would pass it is 413 once its line is in */
    size_t ext_max;      /* chunk-extension bytes summed over the body: 16384 */
    size_t trailer_max;  /* the trailer section, its final CRLF included: 8192 */
    size_t trailers_max; /* trailer fields: 100 */
} weft__http_chunk_limits;

/* The state of one chunked body's decoding.  Caller storage, set up by
 * weft__http_chunked_init; the fields are the decoder's, but total (data
 * bytes declared by the chunk sizes so far) and error may be read. */
typedef struct weft__http_chunked {
    int state;
    int digits;    /* hex digits of the size being read */
    uint64_t size; /* the size being read, then the data left of its chunk */
    uint64_t total;
    size_t ext, trailer, ntrailers;
    weft__http_chunk_limits lim;
    int error; /* after -EBADMSG: 400, or 413 (body_max) */
} weft__http_chunked;

/* What weft__http_chunked_feed found. */
enum {
    WEFT__HTTP_CHUNK_MORE = 0,    /* all of the input was framing: feed more */
    WEFT__HTTP_CHUNK_DATA = 1,    /* *span: body bytes, in order */
    WEFT__HTTP_CHUNK_TRAILER = 2, /* *span: bytes of the trailer section */
    WEFT__HTTP_CHUNK_DONE = 3,    /* the body is over; *span: the trailer
                                   * section's last bytes (its final LF at
                                   * least); what follows is the next message */
};

/* Starts decoding a new body.  lim NULL: defaults. */
void weft__http_chunked_init(weft__http_chunked *c, const weft__http_chunk_limits *lim);

/* Decodes the next bytes of the body from in[0..len), which follow those
 * of the previous calls; any split of the body into calls gives the same
 * data, trailer bytes and verdict.  Nothing is copied: a span points into
 * in.  Returns one of the codes above, with *used the bytes of in consumed
 * (the input after them is to be fed again, after the caller has taken the
 * span): DATA and TRAILER stop right after their span (at most one span a
 * call; no empty ones); MORE consumes everything (*span empty); DONE stops
 * right after the body's last byte.  The trailer section's bytes, spans of
 * TRAILER and DONE put together, are the field lines and the final CRLF,
 * as weft__http_parse_fields takes them ("\r\n" when there are none).
 * After DONE every call returns DONE with *used 0 and *span empty.
 * Trailer bytes are handed out before the section is known to be valid:
 * after an error they are to be dropped.
 * Returns -EBADMSG with c->error 400 (bad framing: see this file's first
 * comment; extensions past ext_max, trailers past trailer_max or
 * trailers_max) or 413 (body_max), and again at every later call;
 * *used then counts the bytes before the fault.  The decoder enforces
 * body_max; a caller that wants another limit checks c->total. */
int weft__http_chunked_feed(weft__http_chunked *c, const char *in, size_t len, size_t *used,
                            weft__http_str *span);

#endif /* WEFT_HTTP_PARSE_H */
