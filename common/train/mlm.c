/* mlm.c - masking for masked language modelling (see mlm.h). */
#include "mlm.h"

#include <stddef.h>

#include "rng.h"

#define MLM_TAG 0x4d41534bULL /* "MASK": the masking's own rng stream */

/* A uniform double in [0, 1) from the top 53 bits of a draw. */
static double mlm_unit(uint64_t x) { return (double)(x >> 11) * (1.0 / 9007199254740992.0); }

int mlm_spec_check(const mlm_spec *s, pl_err *e)
{
    if (!s)
        return pl_errf(e, "mlm: no spec");
    if (s->vocab <= 0)
        return pl_errf(e, "mlm: vocab %d must be > 0", (int)s->vocab);
    if (s->mask_id < 0 || s->mask_id >= s->vocab)
        return pl_errf(e, "mlm: mask id %d outside [0, %d)", (int)s->mask_id, (int)s->vocab);
    if (!(s->prob >= 0.0 && s->prob <= 1.0))
        return pl_errf(e, "mlm: probability %g outside [0, 1]", s->prob);
    if (s->n_special < 0 || (s->n_special > 0 && !s->special))
        return pl_errf(e, "mlm: %d special ids but no list", s->n_special);
    return 0;
}

static int mlm_is_special(const mlm_spec *s, int32_t id)
{
    for (int k = 0; k < s->n_special; k++)
        if (s->special[k] == id)
            return 1;
    return 0;
}

int mlm_mask_row(const mlm_spec *s, const int32_t *tokens, int n, uint64_t seed, long epoch, uint64_t sample,
                 int32_t *inp, int32_t *tgt)
{
    if (mlm_spec_check(s, NULL) != 0 || n < 0 || (n > 0 && (!tokens || !inp || !tgt)))
        return -1;
    for (int i = 0; i < n; i++)
        if (tokens[i] >= s->vocab)
            return -1;
    uint64_t words[4] = {seed, (uint64_t)epoch, sample, MLM_TAG};
    rng_state r;
    rng_seed(&r, words, 4);
    int chosen = 0;
    for (int i = 0; i < n; i++) {
        /* always three draws per position: position i's fate is a function of
         * (seed, epoch, sample, i) alone */
        double u_choose = mlm_unit(rng_u64(&r));
        double u_kind = mlm_unit(rng_u64(&r));
        uint64_t u_id = rng_u64(&r);
        int32_t t = tokens[i];
        inp[i] = t;
        tgt[i] = -1;
        if (t < 0 || mlm_is_special(s, t) || !(u_choose < s->prob))
            continue;
        tgt[i] = t;
        chosen++;
        if (u_kind < 0.8)
            inp[i] = s->mask_id;
        else if (u_kind < 0.9)
            inp[i] = (int32_t)(u_id % (uint64_t)s->vocab); /* bias < vocab / 2^64 */
    }
    return chosen;
}
