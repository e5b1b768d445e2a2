/*
 * trailers.h - the trailer section of a chunked body, kept as the decoder
 * hands its bytes out (weft__http_chunked_feed's TRAILER and DONE spans)
 * and parsed once the body is over: the client's responses and the
 * server's requests both keep theirs.
 */
#ifndef WEFT_HTTP_TRAILERS_H
#define WEFT_HTTP_TRAILERS_H

#include "http/parse.h"

typedef struct weft__http_trailers {
    char *bytes; /* the section as it came: field lines and the final CRLF */
    size_t len;
    weft__http_header *fields; /* once parsed: into bytes */
    size_t n;
} weft__http_trailers;

/* Appends span (the decoder bounds the section's size).  Returns 0 or
 * -ENOMEM. */
int weft__http_trailers_add(weft__http_trailers *t, weft__http_str span);

/* Parses what was kept, at the body's end; ch is the body's decoder (its
 * count of trailer fields sizes the array).  Returns 0, -EBADMSG (a field
 * line the rules refuse), -ENOMEM. */
int weft__http_trailers_parse(weft__http_trailers *t, const weft__http_chunked *ch);

/* The value of the first field named name (any case), or NULL p. */
weft__http_str weft__http_trailers_get(const weft__http_trailers *t, const char *name);

void weft__http_trailers_free(weft__http_trailers *t);

#endif /* WEFT_HTTP_TRAILERS_H */
