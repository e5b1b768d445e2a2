/*
 * check_switch.c - the context switch preserves every register the ABI
 * says survives a call.  Plain C with no test framework, so that it also
 * runs cross-compiled under qemu-user (the AArch64 switch is checked that
 * way in CI).  Exit status 0 = pass.
 *
 * Each coroutine keeps many integer and floating-point values live across
 * weft_yield, so the compiler must hold them in callee-saved registers
 * (x19-x28 and d8-d15 on AArch64; rbx, rbp, r12-r15 on x86-64) or spill
 * them; any register the switch failed to restore changes the result.
 */
#include <weft.h>

#include <fenv.h>
#include <stdint.h>
#include <stdio.h>

#define COROS 8
#define ROUNDS 2000

static volatile uint64_t seed_i = 0x1234567;
static volatile double seed_d = 1.25;
static uint64_t got_i[COROS], want_i[COROS];
static double got_d[COROS], want_d[COROS];
static int rounding_seen[COROS];

/* The same computation, with or without a yield between steps. */
static void work(int k, int yield, uint64_t *ri, double *rd)
{
    uint64_t a = seed_i + (uint64_t)k, b = a * 3, c = a ^ 0x55, d = a + 7, e = b - 1, f = c * 5,
             g = d ^ e, h = f + g, i2 = a * a, j = b * c;
    double p = seed_d * k, q = p + 0.5, r = q * 1.5, s = r - 0.25, t = s * 0.75, u = t + p,
           v = u * 0.5, w = v + q, x = w * 1.125, y = x - r;
    for (int n = 0; n < ROUNDS + 97 * k; n++) {
        a += b ^ n; b += c; c ^= d + (uint64_t)n; d += e; e ^= f; f += g; g += h; h ^= i2;
        i2 += j; j ^= a;
        /* Contracting, so the values stay finite and every bit counts. */
        p = p * 0.5 + q * 0.25 + 0.1; q = q * 0.5 + r * 0.25 + 0.2; r = r * 0.5 + s * 0.25 + 0.3;
        s = s * 0.5 + t * 0.25 + 0.4; t = t * 0.5 + u * 0.25 + 0.5; u = u * 0.5 + v * 0.25 + 0.6;
        v = v * 0.5 + w * 0.25 + 0.7; w = w * 0.5 + x * 0.25 + 0.8; x = x * 0.5 + y * 0.25 + 0.9;
        y = y * 0.5 + p * 0.25 + 1.0 / (n + 3);
        /* Out of phase, so no register holds the same value in two
         * coroutines at a switch (a loop counter would, in lockstep). */
        if (yield && (n + k) % (k % 3 + 1) == 0)
            weft_yield();
    }
    *ri = a ^ b ^ c ^ d ^ e ^ f ^ g ^ h ^ i2 ^ j;
    *rd = p + q + r + s + t + u + v + w + x + y;
}

static void coro(void *arg)
{
    int k = (int)(intptr_t)arg;
    /* Odd coroutines change the rounding mode; the switch must not carry
     * it into the others. */
    if (k & 1)
        fesetround(FE_UPWARD);
    work(k, 1, &got_i[k], &got_d[k]);
    rounding_seen[k] = fegetround();
    fesetround(FE_TONEAREST);
}

static int run(void *arg)
{
    (void)arg;
    for (int k = 0; k < COROS; k++)
        weft_go(coro, (void *)(intptr_t)k);
    return 0;
}

int main(void)
{
    int rc = weft_main(run, NULL, NULL), bad = 0;
    if (rc != 0) {
        fprintf(stderr, "weft_main: %s\n", weft_strerror(rc));
        return 1;
    }
    for (int k = 0; k < COROS; k++) {
        if (k & 1)
            fesetround(FE_UPWARD);
        work(k, 0, &want_i[k], &want_d[k]);
        fesetround(FE_TONEAREST);
        int want_round = (k & 1) ? FE_UPWARD : FE_TONEAREST;
        if (got_i[k] != want_i[k] || got_d[k] != want_d[k] || rounding_seen[k] != want_round) {
            fprintf(stderr, "coroutine %d: int %llx/%llx double %.17g/%.17g rounding %d/%d\n", k,
                    (unsigned long long)got_i[k], (unsigned long long)want_i[k], got_d[k],
                    want_d[k], rounding_seen[k], want_round);
            bad = 1;
        }
    }
    printf("check_switch: %s (%d coroutines x %d switches)\n", bad ? "FAILED" : "ok", COROS,
           ROUNDS);
    return bad;
}
