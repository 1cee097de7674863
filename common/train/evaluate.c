/* evaluate.c - loss over shards in stream order (see evaluate.h). */
#include "evaluate.h"

#include <stdlib.h>

int eval_init(evaluator *ev, const model *m, const lora_layout *L, int B, int T, pl_err *e)
{
    ev->B = B, ev->T = T;
    ev->acts = model_acts_new(m, L, B, T, 0);
    ev->inp = malloc((size_t)B * T * sizeof(int32_t));
    ev->tgt = malloc((size_t)B * T * sizeof(int32_t));
    if (!ev->acts || !ev->inp || !ev->tgt) {
        eval_free(ev);
        return pl_errf(e, "out of memory for an evaluation batch of %d x %d", B, T);
    }
    return 0;
}

void eval_free(evaluator *ev)
{
    model_acts_free(ev->acts);
    free(ev->inp);
    free(ev->tgt);
    ev->acts = NULL, ev->inp = NULL, ev->tgt = NULL;
}

int eval_run(evaluator *ev, const model *m, const lora_layout *L, const float *params,
             const shard_set *d, const char *what, long max_batches, double *loss_sum,
             long *ntok, pl_err *e)
{
    long nseq = shard_set_nseq(d, ev->T, what, e);
    if (nseq < 0)
        return -1;
    long nb = nseq / ev->B;
    if (nb < 1)
        return pl_errf(e, "%s: %ld sequences of %d+1 tokens make less than one batch of %d", what,
                       nseq, ev->T, ev->B);
    if (max_batches > 0 && max_batches < nb)
        nb = max_batches;
    double sum = 0;
    for (long b = 0; b < nb; b++) {
        for (int i = 0; i < ev->B; i++)
            shard_set_sequence(d, (uint64_t)(b * ev->B + i), ev->T, ev->inp + (size_t)i * ev->T,
                               ev->tgt + (size_t)i * ev->T);
        sum += model_loss_grad(m, ev->acts, L, params, NULL, ev->inp, ev->tgt, 0);
        if (model_acts_error(ev->acts))
            return pl_errf(e, "%s", model_acts_error(ev->acts));
    }
    *loss_sum = sum;
    *ntok = nb * ev->B * ev->T;
    return 0;
}
