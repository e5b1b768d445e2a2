/*
 * http_chunked.c - libFuzzer target: the chunked decoder, fed the input
 * whole and in pieces whose sizes come from the input itself.
 *
 * The first two bytes seed the piece sizes (1 to 64 bytes, sometimes
 * 1), the rest is the body.  Each piece is copied into a buffer of its
 * exact size, so ASan sees a read past it.  Checks: every split gives the
 * same verdict, status, bytes used, data and trailer bytes as the whole;
 * spans lie in their piece, data spans are never empty, used never passes
 * the piece; the data never exceeds what the sizes declared; a body that
 * ends has trailer bytes that weft__http_parse_fields takes whole, with as
 * many fields as lines; and with small limits, a body they accept is
 * decoded the same as with the defaults.
 */
#include "check.h"
#include "http/parse.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct out {
    int rc, error;
    size_t used, ndata, ntrailer;
    uint64_t data_hash;
    char *trailer;
} out;

static void decode(const char *in, size_t n, uint32_t seed, bool whole,
                   const weft__http_chunk_limits *lim, out *o)
{
    weft__http_chunked c;
    weft__http_chunked_init(&c, lim);
    *o = (out){.trailer = malloc(n + 1), .data_hash = 14695981039346656037u};
    CHECK(o->trailer);
    size_t off = 0;
    int rc = WEFT__HTTP_CHUNK_MORE;
    while (off < n) {
        size_t len = n - off;
        if (!whole) {
            seed = seed * 1103515245u + 12345u;
            size_t want = (seed >> 16) % 8 == 0 ? 1 : 1 + (seed >> 16) % 64;
            if (want < len)
                len = want;
        }
        char *piece = malloc(len);
        CHECK(piece);
        memcpy(piece, in + off, len);
        size_t poff = 0;
        while (poff < len) {
            size_t used = 999999;
            weft__http_str sp = {NULL, 12345};
            rc = weft__http_chunked_feed(&c, piece + poff, len - poff, &used, &sp);
            CHECK(used <= len - poff);
            if (sp.n)
                CHECK(sp.p >= piece + poff && sp.p + sp.n <= piece + poff + used);
            if (rc == -EBADMSG) {
                CHECK(sp.n == 0 && (c.error == 400 || c.error == 413));
                o->error = c.error;
                poff += used;
                break;
            }
            CHECK(rc >= WEFT__HTTP_CHUNK_MORE && rc <= WEFT__HTTP_CHUNK_DONE);
            if (rc == WEFT__HTTP_CHUNK_MORE)
                CHECK(used == len - poff && sp.n == 0);
            if (rc == WEFT__HTTP_CHUNK_DATA) {
                CHECK(sp.n > 0 && sp.p + sp.n == piece + poff + used);
                for (size_t k = 0; k < sp.n; k++)
                    o->data_hash = (o->data_hash ^ (unsigned char)sp.p[k]) * 1099511628211u;
                o->ndata += sp.n;
                CHECK(o->ndata <= c.total);
            }
            if (rc == WEFT__HTTP_CHUNK_TRAILER || rc == WEFT__HTTP_CHUNK_DONE) {
                CHECK(sp.n > 0 && sp.p + sp.n == piece + poff + used);
                memcpy(o->trailer + o->ntrailer, sp.p, sp.n);
                o->ntrailer += sp.n;
            }
            poff += used;
            if (rc == WEFT__HTTP_CHUNK_DONE) {
                CHECK(weft__http_chunked_feed(&c, piece, len, &used, &sp) ==
                          WEFT__HTTP_CHUNK_DONE &&
                      used == 0 && sp.n == 0);
                break;
            }
        }
        free(piece);
        off += poff;
        if (rc == -EBADMSG || rc == WEFT__HTTP_CHUNK_DONE)
            break;
    }
    if (rc == -EBADMSG) {
        size_t used;
        weft__http_str sp;
        CHECK(weft__http_chunked_feed(&c, in, n, &used, &sp) == -EBADMSG);
    }
    o->rc = rc;
    o->used = off;
}

static bool same(const out *a, const out *b)
{
    /* After an error, how much of the trailer section came out before it
     * depends on the split (the whole is checked before it is handed out). */
    bool trailer = a->rc == -EBADMSG ||
                   (a->ntrailer == b->ntrailer && memcmp(a->trailer, b->trailer, a->ntrailer) == 0);
    return a->rc == b->rc && a->error == b->error && a->used == b->used && a->ndata == b->ndata &&
           a->data_hash == b->data_hash && trailer;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint32_t seed = (uint32_t)data[0] | (uint32_t)data[1] << 8;
    const char *in = (const char *)data + 2;
    size_t n = size - 2;

    out whole, split;
    decode(in, n, 0, true, NULL, &whole);
    decode(in, n, seed, false, NULL, &split);
    CHECK(same(&whole, &split));

    if (whole.rc == WEFT__HTTP_CHUNK_DONE) {
        /* The trailer bytes are a field section, taken whole. */
        static weft__http_header hs[WEFT__HTTP_HEADERS_MAX];
        size_t nh = 0, lines = 0;
        int err = 0;
        int rc = weft__http_parse_fields(whole.trailer, whole.ntrailer, hs, WEFT__HTTP_HEADERS_MAX,
                                         &nh, NULL, &err);
        CHECK(rc > 0 && (size_t)rc == whole.ntrailer);
        for (size_t k = 0; k < whole.ntrailer; k++)
            lines += whole.trailer[k] == '\n';
        CHECK(nh + 1 == lines);
    }

    /* Small limits: what they accept decodes as with the defaults. */
    weft__http_chunk_limits lim = {
        .body_max = 64, .ext_max = 16, .trailer_max = 32, .trailers_max = 2};
    out small;
    decode(in, n, seed, false, &lim, &small);
    if (small.rc != -EBADMSG)
        CHECK(same(&small, &whole));
    else if (whole.rc == -EBADMSG) /* the same rules and more: they stop no later */
        CHECK(small.used <= whole.used);
    CHECK(whole.error != 413); /* no body limit by default */

    free(whole.trailer);
    free(split.trailer);
    free(small.trailer);
    return 0;
}
