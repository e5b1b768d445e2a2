/*
 * date.h - the Date field's value (RFC 9110 5.6.7 IMF-fixdate), cached
 * per loop (date.c).
 */
#ifndef WEFT_HTTP_DATE_H
#define WEFT_HTTP_DATE_H

#include <time.h>

enum { WEFT__HTTP_DATE_LEN = 29 }; /* "Sun, 06 Nov 1994 08:49:37 GMT" */

/* Formats t (seconds since the epoch, UTC) into out[0..29); no NUL. */
void weft__http_date_format(char out[WEFT__HTTP_DATE_LEN], time_t t);

/* The current second's IMF-fixdate, WEFT__HTTP_DATE_LEN bytes (no NUL):
 * this thread's loop's copy, formatted again only when the wall clock's
 * second has changed, valid until the calling coroutine next blocks.
 * Without a loop, or without memory for the loop's copy, it formats
 * into spare and returns spare.  Never fails, never blocks. */
const char *weft__http_date(char spare[WEFT__HTTP_DATE_LEN]);

#endif /* WEFT_HTTP_DATE_H */
