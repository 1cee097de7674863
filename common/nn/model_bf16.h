/* model_bf16.h - the model's bf16 compute, as the other model modules use it.
 *
 * The public side (model_set_compute, model_load_for, model_compute_choose,
 * model_matrix_bytes) is declared in model.h; this header is the part that
 * model.c and model_step.c call: the products through a linear map's or the
 * head's dm handle, and the embedding gathered from the file's rows.
 * Shapes: N rows, C = n_embd, V = vocab; all activations fp32 row-major. */
#ifndef PSLORA_MODEL_BF16_H
#define PSLORA_MODEL_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "model.h"

/* Rows of the head per bf16 product: the logits [MB_HEAD_ROWS, V] of one
 * chunk are the head's scratch (GPT-2's V = 50257: 25.7 MB, about the fp32
 * head's 21 MB).  Measured in the step (GPT-2 124M's head, 2 threads, no
 * AMX): 256 rows ran the head 2-5% faster for twice the scratch. */
#define MB_HEAD_ROWS 128

/* Frees the dm handles and their arena (model_free). */
void model_compute_free(model *m);

/* y[N,out] = x[N,in] W^T + b, plus res when res != NULL (y may be res). */
int mb_linear_fwd(const model_linear *lin, float *y, const float *x, const float *res, int N,
                  pl_err *e);
/* dx[N,in] = dy[N,out] W, or dx += dy W with accumulate. */
int mb_linear_bwd(const model_linear *lin, float *dx, const float *dy, int N, int accumulate,
                  pl_err *e);

/* Floats of the head's scratch: MB_HEAD_ROWS * V. */
size_t mb_head_scratch(const model_config *c);
/* The head and cross-entropy over x [N,C] in chunks of MB_HEAD_ROWS rows:
 *   logits = x_chunk E^T (bf16 product into scratch)   [R,V]
 *   loss  += sum_i -log softmax(logits_i)[tgt_i]        (k_xent_rows, fp32)
 *   dx_chunk = (softmax - onehot) E                     [R,C] (bf16 product)
 * Returns the summed loss (tgt < 0: ignored, as k_lmhead_xent); dx may be
 * NULL.  *rc becomes -1 (e filled) when a product fails. */
double mb_head_xent(const model *m, float *dx, float *scratch, const float *x,
                    const int32_t *tgt, int N, int *rc, pl_err *e);
/* logits[V] = x[C] E^T (one row, generation). */
int mb_head_logits(const model *m, const float *x, float *logits, pl_err *e);

/* x[n,:] = E[inp[n],:] + wpe[n % T,:], the rows of E read from the file's
 * data (m->wte_src, any of F32/F16/BF16, converted exactly): the embedding
 * when bf16 compute keeps no fp32 copy of wte. */
void mb_embed(float *x, const int32_t *inp, const model *m, int N, int T);

#endif
