/* evaluate.h - mean loss of a model (with an optional adapter) on shards.
 *
 * Batches are taken in the unshuffled stream order of docs/design.md ("Data
 * order"): batch b, row i is stream sequence b*B + i.  All whole batches the
 * data holds are used, or the first max_batches of them. */
#ifndef PSLORA_EVALUATE_H
#define PSLORA_EVALUATE_H

#include "err.h"
#include "lora.h"
#include "model.h"
#include "shard.h"

typedef struct {
    model_acts *acts;
    int32_t *inp, *tgt;
    int B, T;
} evaluator;

int eval_init(evaluator *ev, const model *m, const lora_layout *L, int B, int T, pl_err *e);
void eval_free(evaluator *ev);
/* Sum of token losses and token count over the batches; 0 or -1 (+ e). */
int eval_run(evaluator *ev, const model *m, const lora_layout *L, const float *params,
             const shard_set *d, const char *what, long max_batches, double *loss_sum,
             long *ntok, pl_err *e);

#endif
