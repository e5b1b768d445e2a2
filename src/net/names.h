/*
 * names.h - what weft_resolve (resolve.c) asks of a name lookup, and the
 * two that answer: c-ares on the loop (resolve_ares.c) and getaddrinfo on
 * the process's worker pool (resolve_system.c).
 */
#ifndef WEFT_NAMES_H
#define WEFT_NAMES_H

#include "sock.h"

/* Addresses found for a name (ports 0), without duplicates. */
typedef struct weft__names_result {
    weft_addr *addrs;
    size_t n, cap;
    char *canon; /* canonical name, when asked for and known */
} weft__names_result;

/* Whether h (NUL-terminated) is a host name weft_resolve may look up:
 * 1..253 bytes (254 with a final dot) of letters, digits, '-', '_' and
 * dots, no empty label, none longer than 63 (resolve.c). */
bool weft__names_valid(const char *h);

/* Adds an address unless already there.  Returns 0 or -ENOMEM. */
int weft__names_result_add(weft__names_result *r, const struct sockaddr *sa, socklen_t len);
void weft__names_result_free(weft__names_result *r);

/* Looks name up (family AF_INET, AF_INET6 or 0 for both) before deadline.
 * Blocks (parks in a coroutine, waits on the thread outside one).  Returns
 * 0 with at least one address in r, a WEFT_EAI_* code, -ETIMEDOUT,
 * -ECANCELED or -ENOMEM; the system lookup also -EAGAIN (no worker thread
 * could be started); r is empty on failure. */
int weft__ares_lookup(weft__names_result *r, const char *name, int family, bool canon,
                      int64_t deadline);
int weft__system_lookup(weft__names_result *r, const char *name, int family, bool canon,
                        int64_t deadline);

/* The names layer's state on a loop: the config's resolver settings, and
 * each resolver's own state, made at its first use there. */
typedef struct weft__names_loop {
    bool system;       /* lookups go to the system resolver */
    char *dns_servers; /* copied from the config; NULL = resolv.conf's */
    int dns_timeout_ms, dns_tries;
    void *ares;        /* resolve_ares.c's channel */
} weft__names_loop;

/* l's names state; NULL when l is NULL. */
weft__names_loop *weft__names_loop_of(weft_loop *l);

/* Whether c-ares takes csv as its server list ("127.0.0.1:53,[::1]:53").
 * Returns 0, -EINVAL, -ENOMEM. */
int weft__ares_check_servers(const char *csv);

/* Free each resolver's state in n, once no coroutine is left on l (the
 * system resolver keeps none: its lookups are the worker pool's). */
void weft__ares_loop_free(weft_loop *l, weft__names_loop *n);
void weft__system_loop_free(weft_loop *l, weft__names_loop *n);

#endif /* WEFT_NAMES_H */
