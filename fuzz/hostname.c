/*
 * hostname.c - libFuzzer target: the host-name check weft_resolve applies
 * before it asks any resolver (weft__names_valid, src/net/resolve.c).
 *
 * The input, cut at its first NUL, is copied into a buffer of its exact
 * size plus the NUL, so ASan sees a read past the string.  The check is
 * compared with a second one written here from the rule itself (RFC 1035
 * lengths, the bytes DNS names use in practice): drop one final dot, then
 * 1..253 bytes, split at dots into labels of 1..63 letters, digits,
 * hyphens and underscores.  Every name it accepts is also one that
 * weft_addr_parse must not take for a numeric address unless it is one
 * (digits and dots only).
 */
#include "check.h"
#include "net/names.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bool label_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static bool reference(const char *h)
{
    size_t n = strlen(h);
    if (n > 0 && h[n - 1] == '.')
        n--;
    if (n < 1 || n > 253)
        return false;
    size_t start = 0;
    while (start <= n) {
        const char *dot = memchr(h + start, '.', n - start);
        size_t end = dot ? (size_t)(dot - h) : n;
        if (end - start < 1 || end - start > 63)
            return false;
        for (size_t k = start; k < end; k++)
            if (!label_byte((unsigned char)h[k]))
                return false;
        start = end + 1;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t n = nul ? (size_t)(nul - data) : size;
    char *s = malloc(n + 1);
    CHECK(s);
    memcpy(s, data, n);
    s[n] = '\0';
    bool ok = weft__names_valid(s);
    CHECK(ok == reference(s));
    if (ok) {
        weft_addr a;
        if (weft_addr_parse(&a, s, 0) == 0)
            CHECK(a.u.sa.sa_family == AF_INET && strspn(s, "0123456789.") == n);
    }
    free(s);
    return 0;
}
