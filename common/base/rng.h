/* rng.h - deterministic random numbers (xoshiro256** seeded by splitmix64).
 *
 * Same seed, same sequence on every platform: adapter initialisation, dropout
 * masks and drawn models depend only on the seed (and the step, worker and
 * module a stream is seeded with), never on timing.  The data is read in
 * order today; shuffled data orders will draw from here too. */
#ifndef PSLORA_RNG_H
#define PSLORA_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} rng_state;

/* Seeds from a list of words, e.g. {seed, step, worker, module}. */
void rng_seed(rng_state *r, const uint64_t *words, int n);
uint64_t rng_u64(rng_state *r);
/* Uniform in [0, 1) with 24 bits. */
float rng_uniform(rng_state *r);
/* Standard normal (Box-Muller, one value per call). */
float rng_normal(rng_state *r);
/* a[i] = sd * rng_normal(r) for i in [0, n), in order. */
void rng_fill_normal(rng_state *r, float *a, size_t n, float sd);
/* Uniform integer in [0, n). */
uint64_t rng_below(rng_state *r, uint64_t n);

#endif
