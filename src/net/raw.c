/*
 * raw.c - raw IP sockets (ICMP and the like).  Opening one needs
 * CAP_NET_RAW; packets move through weft_sendto/weft_recvfrom like
 * datagrams.  On IPv4 each received packet starts with its IP header, on
 * IPv6 it does not (the kernel's rule, not weft's).
 */
#include "sock.h"

int weft_raw_open(weft_sock **out, int family, int protocol)
{
    if (!out)
        return -EINVAL;
    /* Checked here: other families give SOCK_RAW other meanings (AF_UNIX
     * takes it as SOCK_DGRAM, AF_PACKET works on link frames). */
    if (family != AF_INET && family != AF_INET6)
        return -EAFNOSUPPORT;
    /* The IP header's protocol field is one byte; Linux takes up to 262
     * and would match such a socket against no packet anyone can send. */
    if (protocol < 0 || protocol > 255)
        return -EINVAL;
    return weft_socket(out, family, SOCK_RAW, protocol);
}
