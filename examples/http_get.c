/*
 * http_get.c - fetches a URL with weft's HTTP client and prints the body.
 *
 * usage: http_get URL [--ca FILE] [-I] [-X METHOD] [-d DATA]
 * URL is http:// or https://, its host a name, an IPv4 address or an
 * [IPv6] literal.  An https server's certificate is verified against the
 * system's CAs, or against FILE.  Redirects are followed (up to 10).  -I
 * prints the status line and the fields instead of the body (and sends
 * HEAD unless -X says otherwise); -d sends DATA as the body (a POST unless
 * -X says otherwise).  The whole exchange has one deadline of 30 s.
 *
 * Exit status: 0 for a 1xx-3xx answer, 3 for 4xx and 5xx (the body is
 * printed all the same), 1 for any failure to get an answer (said on
 * stderr), 2 for bad usage.
 */
#include <weft.h>

#include <stdio.h>
#include <string.h>

static const char *url, *ca, *method, *data;
static int head_only;

static int fetch(void *unused)
{
    (void)unused;
    weft_http_client *c;
    int rc = weft_http_client_new(&c, &(weft_http_client_opts){.ca_file = ca, .max_redirects = 10});
    if (rc < 0) {
        fprintf(stderr, "http_get: %s\n", weft_strerror(rc));
        return 1;
    }
    weft_http_request rq = {
        .method = method ? method : head_only ? "HEAD" : data ? "POST" : "GET",
        .url = url,
        .body = data,
        .body_len = data ? strlen(data) : 0,
        .timeout_ms = 30000,
    };
    weft_http_response *r;
    if ((rc = weft_http_do(c, &rq, &r)) < 0) {
        fprintf(stderr, "http_get: %s: %s\n", url, weft_strerror(rc));
        weft_http_client_free(c);
        return 1;
    }
    if (head_only) {
        printf("HTTP/1.%d %d %.*s\n", r->minor, r->status, (int)r->reason.n, r->reason.p);
        for (size_t i = 0; i < r->nheaders; i++)
            printf("%.*s: %.*s\n", (int)r->headers[i].name.n, r->headers[i].name.p,
                   (int)r->headers[i].value.n, r->headers[i].value.p);
    }
    char buf[16384];
    ssize_t n;
    while ((n = weft_http_response_read(r, buf, sizeof buf, -1)) > 0)
        if (!head_only)
            fwrite(buf, 1, (size_t)n, stdout);
    int status = r->status;
    weft_http_response_free(r);
    weft_http_client_free(c);
    if (n < 0) {
        fprintf(stderr, "http_get: %s: body: %s\n", url, weft_strerror((int)n));
        return 1;
    }
    return status >= 400 ? 3 : 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ca") == 0 && i + 1 < argc)
            ca = argv[++i];
        else if (strcmp(argv[i], "-X") == 0 && i + 1 < argc)
            method = argv[++i];
        else if (strcmp(argv[i], "-d") == 0 && i + 1 < argc)
            data = argv[++i];
        else if (strcmp(argv[i], "-I") == 0)
            head_only = 1;
        else if (!url && argv[i][0] != '-')
            url = argv[i];
        else
            url = NULL, i = argc;
    }
    if (!url) {
        fprintf(stderr, "usage: http_get URL [--ca FILE] [-I] [-X METHOD] [-d DATA]\n");
        return 2;
    }
    return weft_main(fetch, NULL, NULL);
}
