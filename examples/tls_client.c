/*
 * tls_client.c - fetches a page over HTTPS and prints the status line and
 * the body.
 *
 * usage: tls_client https://HOST[:PORT]/[PATH] [--ca FILE] [--insecure]
 * HOST is a name or an IPv4 or [IPv6] address.  The server's
 * certificate is verified (chain and name) against the system's CAs, or
 * against FILE; --insecure skips that.  One call connects, sends SNI,
 * handshakes and verifies, all within one timeout.
 */
#include <weft.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIMEOUT_MS 10000

static char host[256], path[1024] = "/";
static int port = 443;
static weft_tls_opts opts;

static int fail(const char *what, int rc)
{
    const char *why = weft_tls_errmsg(NULL);
    fprintf(stderr, "tls_client: %s: %s%s%s\n", what, weft_strerror(rc), why ? ": " : "",
            why ? why : "");
    return 1;
}

static int fetch(void *unused)
{
    (void)unused;
    weft_tls_ctx *ctx;
    weft_sock *s;
    int rc = weft_tls_ctx_new(&ctx, WEFT_TLS_CLIENT, &opts);
    if (rc < 0)
        return fail("context", rc);
    if ((rc = weft_tls_connect(&s, host, port, ctx, TIMEOUT_MS)) < 0) {
        weft_tls_ctx_free(ctx);
        return fail("connect", rc);
    }
    char req[1400], buf[16384];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, host);
    ssize_t got = weft_send(s, req, (size_t)n, TIMEOUT_MS);
    if (got < 0) {
        weft_close(s);
        weft_tls_ctx_free(ctx);
        return fail("send", (int)got);
    }
    size_t len = 0; /* the response, kept until the headers are over */
    char *resp = NULL, *body = NULL;
    while ((got = weft_recv(s, buf, sizeof buf, TIMEOUT_MS)) > 0) {
        if (body) { /* past the headers: the body streams out */
            fwrite(buf, 1, (size_t)got, stdout);
            continue;
        }
        char *p = realloc(resp, len + (size_t)got + 1);
        if (!p)
            break;
        resp = p;
        memcpy(resp + len, buf, (size_t)got);
        resp[len += (size_t)got] = '\0';
        if ((body = strstr(resp, "\r\n\r\n"))) {
            printf("%.*s\n", (int)strcspn(resp, "\r\n"), resp); /* the status line */
            fwrite(body + 4, 1, len - (size_t)(body + 4 - resp), stdout);
        }
    }
    weft_close(s);
    weft_tls_ctx_free(ctx);
    free(resp);
    /* Servers that drop the connection without close_notify are common. */
    if (got < 0 && !(got == WEFT_ETLS_TRUNCATED && body))
        return fail("receive", (int)got);
    return body ? 0 : fail("response", -EPROTO);
}

int main(int argc, char **argv)
{
    const char *url = argc > 1 ? argv[1] : "";
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--ca") == 0 && i + 1 < argc)
            opts.ca_file = argv[++i];
        else if (strcmp(argv[i], "--insecure") == 0)
            opts.no_verify = 1;
        else
            url = "";
    }
    /* https://host[:port][/path], host possibly [v6] */
    int end = 0;
    if (sscanf(url, "https://[%255[^]]]%n", host, &end) < 1 &&
        sscanf(url, "https://%255[^:/]%n", host, &end) < 1) {
        fprintf(stderr, "usage: tls_client https://HOST[:PORT]/[PATH] [--ca FILE] [--insecure]\n");
        return 2;
    }
    const char *rest = url + end;
    if (*rest == ':')
        port = (int)strtol(rest + 1, (char **)&rest, 10);
    if (*rest == '/')
        snprintf(path, sizeof path, "%s", rest);
    return weft_main(fetch, NULL, NULL);
}
