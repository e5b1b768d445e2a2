/*
 * date.c - the Date field every HTTP response carries (RFC 9110 6.6.1),
 * as IMF-fixdate (5.6.7): "Sun, 06 Nov 1994 08:49:37 GMT".
 *
 * Each loop keeps the text of the current second in its own state (the
 * loop's extension slot, as DESIGN.md has the layers keep per-loop
 * state), so the loops of a group share nothing and take no lock.  A
 * response costs one read of the wall clock (a vDSO call, no syscall);
 * the text is formatted again only when that clock's second has changed,
 * so at most once a second per loop under load.  The formatting is our
 * own, not strftime's, which follows the locale.
 */
#include "http/date.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct date_cache {
    time_t sec; /* the second text is for; -1 before the first */
    char text[WEFT__HTTP_DATE_LEN];
} date_cache;

static void date_free(weft_loop *l, void *state)
{
    (void)l;
    free(state);
}

static weft__ext_key date_key = {"http_date", date_free, 0};

static void put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

void weft__http_date_format(char out[WEFT__HTTP_DATE_LEN], time_t t)
{
    static const char days[] = "SunMonTueWedThuFriSat";
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    struct tm tm;
    if (!gmtime_r(&t, &tm)) /* a year past int's: not this clock's */
        memset(&tm, 0, sizeof tm);
    int year = tm.tm_year + 1900;
    if (year < 0 || year > 9999)
        year = 9999;
    memcpy(out, days + 3 * (tm.tm_wday % 7), 3);
    out[3] = ',';
    out[4] = ' ';
    put2(out + 5, tm.tm_mday);
    out[7] = ' ';
    memcpy(out + 8, months + 3 * (tm.tm_mon % 12), 3);
    out[11] = ' ';
    put2(out + 12, year / 100);
    put2(out + 14, year % 100);
    out[16] = ' ';
    put2(out + 17, tm.tm_hour);
    out[19] = ':';
    put2(out + 20, tm.tm_min);
    out[22] = ':';
    put2(out + 23, tm.tm_sec % 60); /* a leap second's 60 is not IMF-fixdate's */
    memcpy(out + 25, " GMT", 4);
}

static time_t wall_seconds(void)
{
    struct timespec ts;
    /* The coarse clock: the tick's time, read without a syscall, is all a
     * second's resolution needs. */
    if (clock_gettime(CLOCK_REALTIME_COARSE, &ts) != 0)
        return time(NULL);
    return ts.tv_sec;
}

const char *weft__http_date(char spare[WEFT__HTTP_DATE_LEN])
{
    time_t now = wall_seconds();
    weft_loop *l = weft__tls_loop;
    date_cache *dc = l ? weft__loop_ext(l, &date_key) : NULL;
    if (!dc && l && (dc = weft__sys_malloc(sizeof *dc))) {
        dc->sec = -1;
        if (weft__loop_ext_set(l, &date_key, dc) < 0) {
            free(dc);
            dc = NULL;
        }
    }
    if (!dc) {
        weft__http_date_format(spare, now);
        return spare;
    }
    if (dc->sec != now) {
        weft__http_date_format(dc->text, now);
        dc->sec = now;
    }
    return dc->text;
}
