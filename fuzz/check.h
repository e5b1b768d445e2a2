/*
 * check.h - what the fuzz targets share: CHECK, which stops the run with
 * the failed condition named when an invariant does not hold (libFuzzer
 * then saves the input as a crash).
 */
#ifndef WEFT_FUZZ_CHECK_H
#define WEFT_FUZZ_CHECK_H

#include <stdio.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            __builtin_trap();                                                                      \
        }                                                                                          \
    } while (0)

#endif /* WEFT_FUZZ_CHECK_H */
