/* kernels_bert.h - the layers an encoder (BERT) adds to kernels.h, forward
 * and backward side by side.
 *
 * Row-major, N = B*T rows, as in kernels.h.  Loops parallelise over rows or
 * (batch, head) blocks only and every sum is formed by one thread in a fixed
 * order, so results do not depend on the thread count. */
#ifndef PSLORA_KERNELS_BERT_H
#define PSLORA_KERNELS_BERT_H

#include <stddef.h>
#include <stdint.h>

/* Exact GELU (hidden_act "gelu"): y = 0.5 x (1 + erf(x / sqrt 2)). */
void k_gelu_erf_fwd(float *y, const float *x, size_t n);
/* dx = dy * (Phi(x) + x phi(x)), Phi the normal CDF, phi its density; dx may alias dy. */
void k_gelu_erf_bwd(float *dx, const float *dy, const float *x, size_t n);

/* Post-LayerNorm residual (BERT's BertSelfOutput / BertOutput):
 *   y[N,C] = LayerNorm(x + f)    with s = x + f given (the residual linear
 * map already added x), keeping mean[N], rstd[N].
 * Backward: ds[N,C] = d(sum dy*y)/ds is *overwritten*; it is the gradient of
 * both x and f, as s = x + f. */
void k_postln_fwd(float *y, float *mean, float *rstd, const float *s, const float *w,
                  const float *b, int N, int C, float eps);
void k_postln_bwd(float *ds, const float *dy, const float *s, const float *mean, const float *rstd,
                  const float *w, int N, int C);

/* Bidirectional softmax attention with a padding mask, H heads of size D,
 * scale 1/sqrt(D); row (b,t) of head h at q + (b*T+t)*ld + h*D (likewise k, v).
 * Sequence b has len[b] real tokens (1 <= len[b] <= T): keys j >= len[b] are
 * masked for every query (as Hugging Face adds the dtype's minimum to their
 * scores: their weight is exactly 0); padded queries still attend to the
 * real keys.
 *   att[b,h,t,:] = softmax_j<len[b](q_t k_j^T / sqrt D), 0 for j >= len[b]   [B,H,T,T]
 *   out[(b*T+t), h*D:(h+1)*D] = att v                                        [N, H*D] */
void k_attention_bidir_fwd(float *out, float *att, const float *q, const float *k,
                           const float *v, const int32_t *len, int B, int T, int H, int D, int ld);
/* Overwrites dq, dk, dv (stride ld, as q, k, v) from dout [N, H*D]:
 *   dv_j = sum_t a_tj dout_t;  da_tj = dout_t . v_j;  ds_tj = a_tj (da_tj - sum_i a_ti da_ti)
 *   dq_t = sum_j ds_tj k_j / sqrt D;  dk_j = sum_t ds_tj q_t / sqrt D. */
void k_attention_bidir_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                           const float *k, const float *v, const float *att, const int32_t *len,
                           int B, int T, int H, int D, int ld);

/* The pooler's gather and activation: x0[B,C] = x[b*T, :] (each sequence's
 * first token); y = tanh(p).  Backward of tanh from its output:
 * dp = dy (1 - y^2) (dp may alias dy).  k_rows_scatter adds dx0's rows back
 * into rows idx[i] of dx [.., C]. */
void k_rows_gather(float *dst, const float *x, const int32_t *idx, int n, int C);
void k_rows_scatter_add(float *dx, const float *drows, const int32_t *idx, int n, int C);
void k_tanh_fwd(float *y, const float *x, size_t n);
void k_tanh_bwd(float *dx, const float *dy, const float *y, size_t n);

/* out[i] = the first index of the largest of row i of L [m, V]. */
void k_argmax_rows(int32_t *out, const float *L, int m, int V);

/* Classifier and cross-entropy over x[B,C]: logits[B,K] = x W^T + b with
 * W [K,C], b [K] (scratch holds the logits, B*K floats).  Returns the sum
 * over rows with 0 <= label < K of -log softmax(logits)[label] (double).
 * With dx != NULL: dx [B,C] overwritten with d(sum)/dx, and dW, db
 * (accumulated, +=) with its gradients unless dW is NULL (a frozen
 * classifier); rows without a label give 0.
 * pred (may be NULL) receives each row's predicted class (the argmax). */
double k_cls_xent(float *dx, float *dW, float *db, float *scratch, const float *x, const float *W,
                  const float *b, const int32_t *label, int B, int C, int K, int32_t *pred);

/* The masked-LM decoder: logits[M,V] = x[M,C] E^T + bias (E [V,C] the tied
 * word embeddings, bias [V]), in chunks of `chunk` rows (scratch chunk*V
 * floats).  Returns the summed cross-entropy over rows with 0 <= tgt < V;
 * with dx != NULL, dx [M,C] is overwritten with its gradient (E and bias
 * frozen).  correct (may be NULL) counts rows whose argmax is the target. */
double k_decoder_xent(float *dx, float *scratch, const float *x, const float *E,
                      const float *bias, const int32_t *tgt, int M, int C, int V, int chunk,
                      int *correct);

#endif
