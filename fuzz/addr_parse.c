/*
 * addr_parse.c - libFuzzer target: weft_addr_parse (include/weft/net.h) on
 * any string, with a port taken from the input.
 *
 * The input is copied into a buffer of its exact size plus the NUL, so
 * ASan sees a read past the string.  The last two bytes give the port (and
 * now and then one out of range, which must be -EINVAL).  Checks: the
 * result is 0 or -EINVAL; on failure *out is untouched; on success the
 * address is IPv4 or IPv6 with the right length and port, and
 * weft_addr_format gives a string whose host part parses back to the very
 * same address.
 */
#include "check.h"

#include <weft.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int port = 0;
    if (size >= 2) {
        port = data[size - 2] << 8 | data[size - 1];
        size -= 2;
    }
    if (size >= 1 && data[size - 1] == 0xff && data[0] == 0xff)
        port = port & 1 ? -1 - (port >> 1) : 65536 + (port >> 1); /* out of range */
    char *s = malloc(size + 1);
    CHECK(s);
    memcpy(s, data, size);
    s[size] = '\0';

    weft_addr a;
    memset(&a, 0xAB, sizeof a);
    int rc = weft_addr_parse(&a, s, port);
    CHECK(rc == 0 || rc == -EINVAL);
    if (port < 0 || port > 65535)
        CHECK(rc == -EINVAL);
    if (rc != 0) {
        for (size_t k = 0; k < sizeof a; k++)
            CHECK(((unsigned char *)&a)[k] == 0xAB);
        free(s);
        return 0;
    }
    int fam = a.u.sa.sa_family;
    CHECK((fam == AF_INET && a.len == sizeof a.u.in) ||
          (fam == AF_INET6 && a.len == sizeof a.u.in6));
    CHECK(weft_addr_port(&a) == port);
    if (strcmp(s, "*") == 0)
        CHECK(fam == AF_INET6);

    /* Format, then parse the host part again. */
    char buf[128];
    int n = weft_addr_format(&a, buf, sizeof buf);
    CHECK(n > 0 && (size_t)n < sizeof buf && buf[n] == '\0');
    /* A smaller buffer gives -ENOSPC and a NUL-terminated prefix. */
    char small[8];
    int m = weft_addr_format(&a, small, sizeof small);
    if (n >= (int)sizeof small)
        CHECK(m == -ENOSPC && strlen(small) == sizeof small - 1 &&
              memcmp(small, buf, sizeof small - 1) == 0);
    else
        CHECK(m == n && strcmp(small, buf) == 0);
    char *colon = strrchr(buf, ':');
    CHECK(colon && atoi(colon + 1) == port);
    *colon = '\0';
    if (fam == AF_INET6)
        CHECK(buf[0] == '[' && colon[-1] == ']');
    weft_addr back;
    CHECK(weft_addr_parse(&back, buf, port) == 0);
    CHECK(back.len == a.len && memcmp(&back.u, &a.u, a.len) == 0);

    free(s);
    return 0;
}
