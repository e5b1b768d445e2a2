/*
 * chunked.c - the chunked transfer coding (RFC 9112 7.1), decoded as the
 * bytes come, whatever the split: a state machine over one byte at a time
 * for the framing, spans of the caller's buffer for the data.
 *
 * Chunk sizes are checked before they are multiplied (at most 16 hex
 * digits, at most 2^63-1), extensions follow the grammar to the letter and
 * are bounded in total, trailer fields follow the same rules as a head's
 * fields and are bounded too.  No byte is ever taken for a line's end but
 * CRLF.
 */
#include "parse.h"

#include <errno.h>

enum {
    SIZE0,        /* the first hex digit of a chunk size */
    SIZE,         /* more digits, or what follows them */
    EXT_BWS,      /* whitespace after the size or a value: ';' must follow */
    EXT_NAME0,    /* after ';': whitespace, then a name */
    EXT_NAME,     /* in a name */
    EXT_NAME_BWS, /* whitespace after a name: '=' or ';' must follow */
    EXT_VAL0,     /* after '=': whitespace, then a token or a quoted string */
    EXT_TOKEN,    /* in a token value */
    EXT_QUOTED,   /* in a quoted string */
    EXT_QPAIR,    /* after a backslash in a quoted string */
    EXT_QEND,     /* after the closing quote */
    SIZE_LF,      /* the size line's CR is in: LF must follow */
    DATA,         /* size bytes of data to go */
    DATA_CR,      /* the CRLF after a chunk's data */
    DATA_LF,
    TR_LINE, /* a trailer line's first byte, or the section's final CR */
    TR_NAME,
    TR_VALUE,
    TR_LF,
    TR_END_LF, /* the final CR is in: LF ends the body */
    DONE,
    ERROR,
};

#define CLS(c) WEFT__HTTP_CLS(c)
#define MAX63 UINT64_C(0x7fffffffffffffff)

void weft__http_chunked_init(weft__http_chunked *c, const weft__http_chunk_limits *lim)
{
    *c = (weft__http_chunked){.state = SIZE0};
    if (lim)
        c->lim = *lim;
    if (!c->lim.body_max || c->lim.body_max > MAX63)
        c->lim.body_max = MAX63;
    if (!c->lim.ext_max)
        c->lim.ext_max = 16384;
    if (!c->lim.trailer_max)
        c->lim.trailer_max = 8192;
    if (!c->lim.trailers_max)
        c->lim.trailers_max = WEFT__HTTP_HEADERS_MAX;
}

static int hexval(unsigned char ch)
{
    return ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10;
}

/* One framing byte in state c->state: the next state, or ERROR with
 * c->error set. */
static int step(weft__http_chunked *c, unsigned char ch)
{
    unsigned cls = CLS(ch);
    switch (c->state) {
    case SIZE0:
        if (!(cls & WEFT__HTTP_HEX))
            break;
        c->size = (uint64_t)hexval(ch);
        c->digits = 1;
        return SIZE;
    case SIZE:
        if (cls & WEFT__HTTP_HEX) {
            /* size * 16 + 15 must stay within 63 bits. */
            if (++c->digits > 16 || c->size > (MAX63 >> 4))
                break;
            c->size = c->size * 16 + (uint64_t)hexval(ch);
            return SIZE;
        }
        if (ch == ';')
            return EXT_NAME0;
        if (cls & WEFT__HTTP_WS)
            return EXT_BWS;
        if (ch == '\r')
            return SIZE_LF;
        break;
    case EXT_BWS:
        if (cls & WEFT__HTTP_WS)
            return EXT_BWS;
        if (ch == ';')
            return EXT_NAME0;
        break;
    case EXT_NAME0:
        if (cls & WEFT__HTTP_WS)
            return EXT_NAME0;
        if (cls & WEFT__HTTP_TCHAR)
            return EXT_NAME;
        break;
    case EXT_NAME:
        if (cls & WEFT__HTTP_TCHAR)
            return EXT_NAME;
        if (cls & WEFT__HTTP_WS)
            return EXT_NAME_BWS;
        if (ch == '=')
            return EXT_VAL0;
        if (ch == ';')
            return EXT_NAME0;
        if (ch == '\r')
            return SIZE_LF;
        break;
    case EXT_NAME_BWS:
        if (cls & WEFT__HTTP_WS)
            return EXT_NAME_BWS;
        if (ch == '=')
            return EXT_VAL0;
        if (ch == ';')
            return EXT_NAME0;
        break;
    case EXT_VAL0:
        if (cls & WEFT__HTTP_WS)
            return EXT_VAL0;
        if (ch == '"')
            return EXT_QUOTED;
        if (cls & WEFT__HTTP_TCHAR)
            return EXT_TOKEN;
        break;
    case EXT_TOKEN:
        if (cls & WEFT__HTTP_TCHAR)
            return EXT_TOKEN;
        if (cls & WEFT__HTTP_WS)
            return EXT_BWS;
        if (ch == ';')
            return EXT_NAME0;
        if (ch == '\r')
            return SIZE_LF;
        break;
    case EXT_QUOTED:
        if (ch == '"')
            return EXT_QEND;
        if (ch == '\\')
            return EXT_QPAIR;
        if (cls & WEFT__HTTP_QDTEXT)
            return EXT_QUOTED;
        break;
    case EXT_QPAIR:
        if (cls & (WEFT__HTTP_WS | WEFT__HTTP_VCHAR))
            return EXT_QUOTED;
        break;
    case EXT_QEND:
        if (cls & WEFT__HTTP_WS)
            return EXT_BWS;
        if (ch == ';')
            return EXT_NAME0;
        if (ch == '\r')
            return SIZE_LF;
        break;
    case SIZE_LF:
        if (ch != '\n')
            break;
        if (c->size == 0)
            return TR_LINE; /* the last chunk */
        if (c->size > c->lim.body_max - c->total) {
            c->error = 413;
            return ERROR;
        }
        c->total += c->size;
        return DATA;
    case DATA_CR:
        if (ch == '\r')
            return DATA_LF;
        break;
    case DATA_LF:
        if (ch != '\n')
            break;
        c->size = 0;
        c->digits = 0;
        return SIZE0;
    case TR_LINE:
        if (ch == '\r')
            return TR_END_LF;
        /* Whitespace first is obs-fold; a colon first, an empty name. */
        if (!(cls & WEFT__HTTP_TCHAR) || ++c->ntrailers > c->lim.trailers_max)
            break;
        return TR_NAME;
    case TR_NAME:
        if (cls & WEFT__HTTP_TCHAR)
            return TR_NAME;
        if (ch == ':')
            return TR_VALUE;
        break;
    case TR_VALUE:
        if (cls & (WEFT__HTTP_VCHAR | WEFT__HTTP_WS))
            return TR_VALUE;
        if (ch == '\r')
            return TR_LF;
        break;
    case TR_LF:
        if (ch == '\n')
            return TR_LINE;
        break;
    case TR_END_LF:
        if (ch == '\n')
            return DONE;
        break;
    }
    c->error = 400;
    return ERROR;
}

int weft__http_chunked_feed(weft__http_chunked *c, const char *in, size_t len, size_t *used,
                            weft__http_str *span)
{
    *span = (weft__http_str){NULL, 0};
    *used = 0;
    if (c->state == DONE)
        return WEFT__HTTP_CHUNK_DONE;
    if (c->state == ERROR)
        return -EBADMSG;
    size_t i = 0, ts = len; /* ts: where this call's trailer bytes start */
    while (i < len) {
        if (c->state == DATA) {
            size_t n = len - i;
            if (n > c->size)
                n = (size_t)c->size;
            c->size -= n;
            if (c->size == 0)
                c->state = DATA_CR;
            *span = (weft__http_str){in + i, n};
            *used = i + n;
            return WEFT__HTTP_CHUNK_DATA;
        }
        unsigned char ch = (unsigned char)in[i];
        if (c->state >= TR_LINE) {
            if (ts == len)
                ts = i;
            if (++c->trailer > c->lim.trailer_max) {
                c->error = 400;
                c->state = ERROR;
            }
        } else if (c->state >= SIZE && c->state < SIZE_LF && ch != '\r' &&
                   !(c->state == SIZE && (CLS(ch) & WEFT__HTTP_HEX))) {
            /* A byte of a chunk extension (or the whitespace before one). */
            if (++c->ext > c->lim.ext_max) {
                c->error = 400;
                c->state = ERROR;
            }
        }
        if (c->state != ERROR)
            c->state = step(c, ch);
        if (c->state == ERROR) {
            *used = i;
            return -EBADMSG;
        }
        i++;
        if (c->state == DONE) {
            *span = (weft__http_str){in + ts, i - ts};
            *used = i;
            return WEFT__HTTP_CHUNK_DONE;
        }
    }
    *used = len;
    if (ts < len) {
        *span = (weft__http_str){in + ts, len - ts};
        return WEFT__HTTP_CHUNK_TRAILER;
    }
    return WEFT__HTTP_CHUNK_MORE;
}
