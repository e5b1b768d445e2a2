/*
 * trailers.c - a chunked body's trailer section (trailers.h).
 */
#include "http/trailers.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

int weft__http_trailers_add(weft__http_trailers *t, weft__http_str span)
{
    if (!span.n)
        return 0;
    char *b = weft__sys_realloc(t->bytes, t->len + span.n);
    if (!b)
        return -ENOMEM;
    memcpy(b + t->len, span.p, span.n);
    t->bytes = b;
    t->len += span.n;
    return 0;
}

int weft__http_trailers_parse(weft__http_trailers *t, const weft__http_chunked *ch)
{
    if (t->len <= 2)
        return 0; /* "\r\n": none */
    size_t cap = ch->ntrailers ? ch->ntrailers : 1;
    if (!(t->fields = weft__sys_malloc(cap * sizeof *t->fields)))
        return -ENOMEM;
    int error;
    int n = weft__http_parse_fields(t->bytes, t->len, t->fields, cap, &t->n, NULL, &error);
    return n == (int)t->len ? 0 : -EBADMSG;
}

weft__http_str weft__http_trailers_get(const weft__http_trailers *t, const char *name)
{
    const weft__http_header *h = weft__http_header_next(t->fields, t->n, name, NULL);
    return h ? h->value : (weft__http_str){NULL, 0};
}

void weft__http_trailers_free(weft__http_trailers *t)
{
    free(t->bytes);
    free(t->fields);
    *t = (weft__http_trailers){0};
}
