/* worker.h - the worker role: a frozen model replica, its data shard and the
 * LoRA gradient of one micro-batch.
 *
 * Worker w of W at step t reads global entries g = t*W*B + w*B + i, i < B
 * (dataset.h; docs/design.md, "Data order"), so W workers with batch B see
 * exactly the rows one worker with batch W*B sees.  The gradient it produces
 * is that of the *summed* loss over its counted targets: the server divides
 * by the step's total of counted targets. */
#ifndef PSLORA_WORKER_H
#define PSLORA_WORKER_H

#include <stdio.h>

#include "encbatch.h"
#include "evaluate.h"
#include "lora.h"
#include "model.h"
#include "model_bf16.h"
#include "dataset.h"
#include "trainconf.h"

typedef struct {
    const train_config *t;
    model m;
    lora_layout L;
    model_acts *acts;
    dataset data, val;
    int has_val;
    evaluator ev;
    float *params;      /* the adapter version in use (flat); with --full the
                           trained weights, which the model points into */
    float *grad;        /* d(sum loss)/d(params) of the last micro-batch */
    int32_t *inp, *tgt; /* [B, T] */
    int encoder;        /* a BERT model: its batches are eb's */
    enc_batch eb;
    long version;
    /* test-only hooks, read from the environment by worker_init */
    long nan_from, nan_to;   /* PSLORA_TEST_NAN_STEP "N" or "N-M" (1-based steps) */
    int nan_rank;            /* PSLORA_TEST_NAN_RANK (unset: every worker) */
    int slow_rank;           /* PSLORA_TEST_SLOW_RANK */
    double slow_s;           /* PSLORA_TEST_SLOW_MS / 1000 */
    const char *order_path;  /* PSLORA_TEST_ORDER_LOG: the entries read, one row a line */
    FILE *order_log;         /* order_path.w<worker>, opened at the first step */
} worker;

/* Loads the model, builds the adapter layout, opens the data (tokens checked
 * against the vocabulary) and allocates every buffer of the step loop.
 * bf16 compute keeps its weight copies in store's region (NULL: private;
 * under mpirun worker/node_shared.h shares one per node). */
int worker_init(worker *w, const train_config *t, const model_bf16_store *store, pl_err *e);
void worker_free(worker *w);

/* Forward + backward on this worker's micro-batch of `step`; fills w->grad
 * and returns the summed loss; *ntok receives the number of counted targets
 * (B*T for a stream; 0 is possible with sample data).  NaN with
 * model_acts_error(w->acts) set when a bf16 product failed (a fatal error,
 * unlike a non-finite loss). */
double worker_compute(worker *w, long step, int wi, int nw, long *ntok);

/* Mean validation loss of the current adapter (NaN without --val). */
int worker_validate(worker *w, double *val_loss, long *ntok, pl_err *e);

/* Test-only hooks, called after worker_compute by the rank `rank` (0 when
 * alone): PSLORA_TEST_SLOW_RANK=r PSLORA_TEST_SLOW_MS=m sleeps m ms on rank
 * r; PSLORA_TEST_NAN_STEP=n[-k] (PSLORA_TEST_NAN_RANK=r) makes the gradient
 * of steps n..k (as numbered in metrics.jsonl) non-finite on rank r (every
 * worker without it).  PSLORA_TEST_ORDER_LOG=FILE appends to FILE.w<worker>
 * one line "step epoch entry" per row read (an entry is a sample, or a
 * window of a stream or packed samples).  Not for production use. */
void worker_test_hooks_init(worker *w);
void worker_test_hooks(worker *w, long step, int rank);

/* 1 when every gradient entry and the loss are finite. */
int worker_grad_finite(const worker *w, double loss);

#endif
