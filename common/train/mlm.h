/* mlm.h - the masking of masked language modelling (BERT's pretraining task):
 * which tokens of a sample are hidden and what the model must predict there.
 *
 * The rule is Hugging Face's DataCollatorForLanguageModeling (mlm_probability
 * 0.15): each token that is not special is chosen independently with
 * probability prob (a Bernoulli draw per token, so the count varies from row
 * to row and may be 0); a chosen token becomes mask_id with probability 0.8,
 * a uniform random id in [0, vocab) with probability 0.1 (the random id may
 * equal the original), and stays unchanged with probability 0.1.  The loss
 * counts the chosen positions only (tgt = the original id there, -1
 * elsewhere).
 *
 * The draws depend on (seed, epoch, sample) and the position only, never on
 * which worker reads the sample or in which order: position i uses the three
 * draws 3i, 3i+1, 3i+2 of the rng stream seeded with {seed, epoch, sample,
 * tag} (choose; mask / random / keep; the random id), whatever the other
 * tokens are, so W workers x B mask exactly what 1 worker x W*B masks, and a
 * row cut to its first T tokens is masked as the first T tokens of the whole
 * row (docs/design.md, "Masked language modelling"). */
#ifndef PSLORA_MLM_H
#define PSLORA_MLM_H

#include <stdint.h>

#include "err.h"

typedef struct {
    int32_t mask_id;        /* [MASK], in [0, vocab) */
    int32_t vocab;          /* > 0: random ids are drawn in [0, vocab) */
    const int32_t *special; /* [n_special] ids never chosen ([CLS], [SEP], [PAD], ...) */
    int n_special;
    double prob;            /* 0.15; in [0, 1] */
} mlm_spec;

/* 0 when s is usable, else -1 with one line naming the field. */
int mlm_spec_check(const mlm_spec *s, pl_err *e);

/* Chooses positions among tokens[0..n) that are not special: each with probability prob, of those 80% -> mask_id,
   10% -> a random id in [0,vocab), 10% unchanged; drawn from (seed, epoch, sample) only.  Writes inp[n] (the
   masked input) and tgt[n] (the original id at chosen positions, -1 elsewhere); returns the count chosen.
   A token < 0 (padding) is never chosen and copied as is.  Returns -1, writing nothing, when the spec fails
   mlm_spec_check, n < 0, or a token is >= vocab. */
int mlm_mask_row(const mlm_spec *s, const int32_t *tokens, int n, uint64_t seed, long epoch, uint64_t sample,
                 int32_t *inp, int32_t *tgt);

#endif
