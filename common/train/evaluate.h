/* evaluate.h - the loss of a model (with an optional adapter) on data.
 *
 * Never shuffled, never packed (dataset.h: ds_row_ordered).  A token stream
 * is read in its stream order (docs/design.md, "Data order"): batch b, row i
 * is window b*B + i; all whole batches the data holds are used, or the first
 * max_batches of them.  Sample data: every sample once, in file order, one
 * per row, the last batch padded with empty rows; max_batches > 0 stops
 * earlier.  The loss is the sum over the counted targets divided by their
 * number, over all rows evaluated (not a mean of batch means). */
#ifndef PSLORA_EVALUATE_H
#define PSLORA_EVALUATE_H

#include "dataset.h"
#include "encbatch.h"
#include "err.h"
#include "lora.h"
#include "model.h"

typedef struct {
    model_acts *acts;
    int32_t *inp, *tgt;
    int B, T;
    /* BERT (eval_init_encoder): its batches; after eval_run the targets
     * predicted right and, for cls, confusion[label * K + predicted] */
    int encoder;
    enc_batch eb;
    long correct;
    long *confusion;
    int K;
} evaluator;

int eval_init(evaluator *ev, const model *m, const lora_layout *L, int B, int T, pl_err *e);
/* The same for a BERT model: rows of its task (encbatch.h; mlm masks with
 * mask_id and specials, drawn from seed, epoch 0 and the entry). */
int eval_init_encoder(evaluator *ev, const model *m, const lora_layout *L, int B, int T,
                      long mask_id, const char *specials, uint64_t seed, pl_err *e);
void eval_free(evaluator *ev);
/* Sum of the counted targets' losses and their number (*ntok); -1 (+ e)
 * when the data makes no batch or has no counted target. */
int eval_run(evaluator *ev, const model *m, const lora_layout *L, const float *params,
             const dataset *d, const char *what, long max_batches, double *loss_sum,
             long *ntok, pl_err *e);

#endif
