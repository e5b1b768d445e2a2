/*
 * names.h - what weft_resolve (resolve.c) asks of a name lookup, and the
 * two that answer: c-ares on the loop (resolve_ares.c) and getaddrinfo on
 * worker threads (resolve_system.c).
 */
#ifndef WEFT_NAMES_H
#define WEFT_NAMES_H

#include "internal.h"

/* Addresses found for a name (ports 0), without duplicates. */
typedef struct weft__names_result {
    weft_addr *addrs;
    size_t n, cap;
    char *canon; /* canonical name, when asked for and known */
} weft__names_result;

/* Adds an address unless already there.  Returns 0 or -ENOMEM. */
int weft__names_result_add(weft__names_result *r, const struct sockaddr *sa, socklen_t len);
void weft__names_result_free(weft__names_result *r);

/* Looks name up (family AF_INET, AF_INET6 or 0 for both) before deadline.
 * Blocks (parks in a coroutine, polls the thread outside one).  Returns 0
 * with at least one address in r, a WEFT_EAI_* code, -ETIMEDOUT,
 * -ECANCELED or -ENOMEM; r is empty on failure. */
int weft__ares_lookup(weft__names_result *r, const char *name, int family, bool canon,
                      int64_t deadline);
int weft__system_lookup(weft__names_result *r, const char *name, int family, bool canon,
                        int64_t deadline);

/* Free a loop's state for each, once no coroutine is left on it. */
void weft__ares_loop_free(weft_loop *l);
void weft__system_loop_free(weft_loop *l);

#endif /* WEFT_NAMES_H */
