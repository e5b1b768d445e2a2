/*
 * lookup.c - looks a name up and walks the answer, entry by entry.
 *
 *     lookup HOST [SERVICE] [system]
 *
 * Prints each entry's family, socket type, protocol and address, and the
 * canonical name.  With "system" the lookup goes through getaddrinfo on
 * weft's worker threads instead of c-ares.
 */
#include <weft.h>

#include <stdio.h>
#include <string.h>

struct query {
    const char *host, *service;
};

static const char *family_name(int f)
{
    return f == AF_INET ? "inet" : f == AF_INET6 ? "inet6" : f == AF_UNIX ? "unix" : "?";
}

static const char *type_name(int t)
{
    return t == SOCK_STREAM ? "stream" : t == SOCK_DGRAM ? "dgram" : "other";
}

static int lookup(void *arg)
{
    struct query *q = arg;
    weft_hints hints = { .flags = WEFT_AI_CANONNAME };
    weft_addrinfo *list;
    int rc = weft_resolve(&list, q->host, q->service, &hints, 5000);
    if (rc < 0) {
        fprintf(stderr, "lookup %s: %s (%s)\n", q->host, weft_strerror(rc), weft_err_name(rc));
        return 1;
    }
    if (weft_addrinfo_canonname(list))
        printf("canonical name: %s\n", weft_addrinfo_canonname(list));
    for (const weft_addrinfo *ai = list; ai; ai = weft_addrinfo_next(ai)) {
        char addr[128];
        weft_addr_format(weft_addrinfo_addr(ai), addr, sizeof addr);
        printf("%-6s %-7s proto %-3d %s\n", family_name(weft_addrinfo_family(ai)),
               type_name(weft_addrinfo_socktype(ai)), weft_addrinfo_protocol(ai), addr);
    }
    weft_addrinfo_free(list);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: lookup HOST [SERVICE] [system]\n");
        return 2;
    }
    struct query q = { argv[1], argc > 2 ? argv[2] : NULL };
    weft_config cfg = { 0 };
    if (argc > 3 && strcmp(argv[3], "system") == 0)
        cfg.resolver = "system";
    return weft_main(lookup, &q, &cfg);
}
