/* rng.h - deterministic random numbers (xoshiro256** seeded by splitmix64).
 *
 * Same seed, same sequence on every platform: adapter initialisation, dropout
 * masks, drawn models and the data order of each epoch (rng_permute, seeded
 * with the seed and the epoch: docs/design.md, "Data order") depend only on
 * the seed (and the step, worker, module or epoch a stream is seeded with),
 * never on timing. */
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
/* a[0..n) = a permutation of 0..n-1: Fisher-Yates from the last position
 * down, a[i] swapped with a[rng_below(r, i + 1)]. */
void rng_permute(rng_state *r, uint32_t *a, size_t n);

#endif
