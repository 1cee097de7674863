/* worker.h - the worker role: a frozen model replica, its data shard and the
 * LoRA gradient of one micro-batch.
 *
 * Worker w of W at step t reads stream sequences k = t*W*B + w*B + i,
 * i < B (DESIGN.md "Data order"), so W workers with batch B see exactly the
 * sequences one worker with batch W*B sees.  The gradient it produces is
 * that of the *summed* token loss: the server divides by the step's total
 * token count. */
#ifndef PSLORA_WORKER_H
#define PSLORA_WORKER_H

#include "evaluate.h"
#include "lora.h"
#include "model.h"
#include "shard.h"
#include "trainconf.h"

typedef struct {
    const train_config *t;
    model m;
    lora_layout L;
    model_acts *acts;
    shard_set data, val;
    int has_val;
    evaluator ev;
    float *params;      /* the adapter version in use (flat) */
    float *grad;        /* d(sum loss)/d(params) of the last micro-batch */
    int32_t *inp, *tgt; /* [B, T] */
    long version;
} worker;

/* Loads the model, builds the adapter layout, opens the data (tokens checked
 * against the vocabulary) and allocates every buffer of the step loop. */
int worker_init(worker *w, const train_config *t, pl_err *e);
void worker_free(worker *w);

/* Forward + backward on this worker's micro-batch of `step`; fills w->grad
 * and returns the summed loss; *ntok receives B*T. */
double worker_compute(worker *w, long step, int wi, int nw, long *ntok);

/* Mean validation loss of the current adapter (NaN without --val). */
int worker_validate(worker *w, double *val_loss, long *ntok, pl_err *e);

/* 1 when every gradient entry and the loss are finite. */
int worker_grad_finite(const worker *w, double loss);

#endif
