/* kernels.h - the layers of a transformer, forward and backward side by side.
 *
 * Row-major throughout; N = B*T rows.  Backward functions carry the gradient
 * with respect to the layer's input, and the weight-gradient kernels
 * (k_*_bwd_w*) give the weights' own gradients when full fine-tuning trains
 * them.  The LoRA's kernels, which also yield dA and dB, are in
 * kernels_lora.h.  Every matrix product goes through cblas_sgemm;
 * elementwise loops are OpenMP-parallel.  Results never
 * depend on the number of threads (no parallel reductions across rows).
 *
 * The *_bf16 variants serve the bf16 products (dnnl_matmul.h), which take
 * their input in bf16: besides (or instead of) the fp32 output they write
 * it rounded to bf16 (bf16 bits, k_bf16_row: dm_to_bf16's rounding) in the
 * same pass, each row or span rounded right after it is made (in L1), so
 * no separate rounding pass reads it again.  Their fp32 output is the plain
 * kernel's bit for bit (they run its row or span function), their bf16
 * output dm_to_bf16 of it.  Where the fp32 output "may be NULL" it is then
 * not written (a span of the stack takes it; nothing reads it then: see
 * model_step.c). */
#ifndef PSLORA_KERNELS_H
#define PSLORA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include <cblas.h>

/* C[M,N] = alpha op(A) op(B) + beta C (row-major), the form every product
 * here takes: C is cut into tiles fixed by the shape alone (halves of its
 * longer side for large products), one single-threaded sgemm per tile inside
 * an OpenMP loop, so the result does not depend on the thread count. */
void k_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
            const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* b[k] = bf16(x[k]) for k < n, rounded to nearest even (bf16_from_f32 of
 * common/base/bf16.h), on the calling thread: the one loop of the rounding,
 * shared by the *_bf16 variants and dm_to_bf16. */
void k_bf16_row(uint16_t *b, const float *x, size_t n);

/* Embedding: x[b,t,:] = wte[inp[b,t],:] + wpe[t,:] (wpe may be NULL). */
void k_embed_fwd(float *x, const int32_t *inp, const float *wte, const float *wpe, int N, int T, int C);
/* Its weights' gradients (full fine-tuning): dwte[inp[n],:] += dx[n,:] and
 * dwpe[n % T,:] += dx[n,:] (either may be NULL), rows n in order. */
void k_embed_bwd(float *dwte, float *dwpe, const float *dx, const int32_t *inp, int N, int T, int C);

/* LayerNorm over rows: y[N,C] = (x - mean) * rstd * w + b; keeps mean[N], rstd[N]. */
void k_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w,
                     const float *b, int N, int C, float eps);
/* The same, and yb[N,C] = y rounded to bf16. */
void k_layernorm_fwd_bf16(float *y, uint16_t *yb, float *mean, float *rstd, const float *x,
                          const float *w, const float *b, int N, int C, float eps);
/* dx[N,C] += (dy through the normalisation); w frozen, so no dw, db. */
void k_layernorm_bwd(float *dx, const float *dy, const float *x, const float *mean,
                     const float *rstd, const float *w, int N, int C);
/* The same, and dxb[N,C] = the accumulated dx rounded to bf16 (the
 * residual stream's gradient, the next bf16 product's dy). */
void k_layernorm_bwd_bf16(float *dx, uint16_t *dxb, const float *dy, const float *x,
                          const float *mean, const float *rstd, const float *w, int N, int C);

/* tanh-approximate GELU ("gelu_new"): y = 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))). */
void k_gelu_fwd(float *y, const float *x, size_t n);
/* The same with yb = y rounded to bf16; y may be NULL. */
void k_gelu_fwd_bf16(float *y, uint16_t *yb, const float *x, size_t n);
/* dx = dy * gelu'(x); dx may alias dy. */
void k_gelu_bwd(float *dx, const float *dy, const float *x, size_t n);
/* The same with dxb = dx rounded to bf16; dx may be NULL (dy is then left
 * as it is) or alias dy. */
void k_gelu_bwd_bf16(float *dx, uint16_t *dxb, const float *dy, const float *x, size_t n);

/* Frozen linear map: y[N,out] = x[N,in] W^T + b.  W is [out,in] (conv1d = 0,
 * torch Linear) or [in,out] (conv1d = 1, GPT-2 Conv1D, used as it lies);
 * b may be NULL. */
void k_linear_fwd(float *y, const float *x, const float *w, const float *b, int N, int in,
                  int out, int conv1d);
/* The same added to a residual: y = res + x W^T + b (y may be res). */
void k_linear_fwd_res(float *y, const float *res, const float *x, const float *w, const float *b,
                      int N, int in, int out, int conv1d);
/* dx[N,in] = beta * dx + dy[N,out] W. */
void k_linear_bwd(float *dx, const float *dy, const float *w, int N, int in, int out,
                  int conv1d, float beta);

/* ---- weight gradients (full fine-tuning, full.h) ----
 * Each accumulates (+=) over the N rows in row order, one column per
 * thread, so results do not depend on the thread count. */

/* The linear map's weights: dW[out,in] += dy^T x (conv1d 0), or
 * dW[in,out] += x^T dy (conv1d 1); db[out] += sum_n dy[n,:] (db may be NULL). */
void k_linear_bwd_w(float *dw, float *db, const float *dy, const float *x, int N, int in, int out,
                    int conv1d);
/* LayerNorm's affine: dw[C] += sum_n dy * xhat, db[C] += sum_n dy, with
 * xhat = (x - mean) * rstd (either may be NULL). */
void k_layernorm_bwd_wb(float *dw, float *db, const float *dy, const float *x, const float *mean,
                        const float *rstd, int N, int C);
/* RMSNorm's weight: dw[C] += sum_n dy * x * rstd. */
void k_rmsnorm_bwd_w(float *dw, const float *dy, const float *x, const float *rstd, int N, int C);

/* Causal softmax attention with H query heads, Hk key/value heads (H % Hk == 0;
 * query head h reads kv head h / (H/Hk)), head size D, scale 1/sqrt(D).
 * Row (b,t) of head h: q + (b*T+t)*ldq + h*D, likewise k (ldk), v (ldv).
 *   att[b,h,t,:] = softmax(q k^T / sqrt(D)) with j > t masked   [B,H,T,T] kept
 *   out[(b*T+t), h*D:(h+1)*D] = att v                            out is [N, H*D] */
void k_attention_fwd(float *out, float *att, const float *q, const float *k, const float *v,
                     int B, int T, int H, int Hk, int D, int ldq, int ldk, int ldv);
/* Overwrites dq, dk, dv (same strides as q, k, v; for GQA the kv gradients of
 * the heads that share a kv head are summed).  scratch: B*H*T*T floats. */
void k_attention_bwd(float *dq, float *dk, float *dv, float *scratch, const float *dout,
                     const float *q, const float *k, const float *v, const float *att, int B,
                     int T, int H, int Hk, int D, int ldq, int ldk, int ldv);

/* The row kernels of the two functions above, for attention built elsewhere
 * (dnnl_attention.h) so both compute the same fp32 softmax:
 *   softmax:  row[0..n) = softmax(row[0..n)), row[n..w) = 0
 *   backward: dr[0..n) = pr * (dr - f) * scale, dr[n..w) = 0, with
 *             f = sum(dr * pr) over [0..n) (k_attention_softmax_bwd_sum)
 * (n = t + 1 for query row t; pr is the softmax's output, dr holds dP). */
void k_attention_softmax_row(float *row, int n, int w);
/* The softmax row written in bf16 only: p[0..n) = the values above rounded
 * (same bits as k_attention_softmax_row then k_bf16_row), p[n..w) = 0; row
 * is left holding exp(row - max), not normalised. */
void k_attention_softmax_row_bf16(uint16_t *p, float *row, int n, int w);
void k_attention_softmax_bwd_row(float *dr, const float *pr, int n, int w, float scale);
float k_attention_softmax_bwd_sum(const float *dr, const float *pr, int n);

/* Tied/untied lm head and cross-entropy, in chunks of rows so the [N,V]
 * logits never exist at once.  logits = x[N,C] E^T with E [V,C].
 * Returns the *sum* over rows with tgt >= 0 of -log softmax(logits)[tgt]
 * (accumulated in double).  When dx is not NULL it is overwritten with the
 * gradient of that sum: dx = (softmax - onehot(tgt)) E (rows with tgt < 0: 0).
 * scratch: k_lmhead_xent_scratch(chunk, C, V) floats (about chunk*V). */
double k_lmhead_xent(float *dx, float *scratch, const float *x, const float *E,
                     const int32_t *tgt, int N, int C, int V, int chunk);
/* The same, and when dE is not NULL the head's weight gradient too (full
 * fine-tuning): dE[V,C] += (softmax - onehot(tgt))^T x over the rows with
 * tgt >= 0.  It needs each row's final log-sum-exp, so it is a second pass
 * over E per chunk (the logits recomputed tile by tile, each slice's rows of
 * dE written by one thread). */
double k_lmhead_xent_dw(float *dx, float *dE, float *scratch, const float *x, const float *E,
                        const int32_t *tgt, int N, int C, int V, int chunk);
size_t k_lmhead_xent_scratch(int chunk, int C, int V);

/* y[i] += a[i] */
void k_add(float *y, const float *a, size_t n);

/* ---- Llama family ---- */

/* RMSNorm over rows: rstd[n] = 1/sqrt(mean(x[n,:]^2) + eps), y = x * rstd * w
 * (no mean subtraction, no bias); keeps rstd[N]. */
void k_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int N, int C,
                   float eps);
/* The same, and yb[N,C] = y rounded to bf16. */
void k_rmsnorm_fwd_bf16(float *y, uint16_t *yb, float *rstd, const float *x, const float *w,
                        int N, int C, float eps);
/* dx[N,C] += dy through the normalisation:
 *   dx_j += rstd * w_j dy_j - x_j rstd^3 / C * sum_i w_i dy_i x_i. */
void k_rmsnorm_bwd(float *dx, const float *dy, const float *x, const float *rstd,
                   const float *w, int N, int C);
/* The same, and dxb[N,C] = the accumulated dx rounded to bf16. */
void k_rmsnorm_bwd_bf16(float *dx, uint16_t *dxb, const float *dy, const float *x,
                        const float *rstd, const float *w, int N, int C);

/* Rotary table for head size D (even), positions 0..T-1, Hugging Face's
 * inv_freq[i] = 1 / theta^(2i/D):  cs[t, i] = cos(t inv_freq[i]),
 * sn[t, i] = sin(t inv_freq[i]), both [T, D/2]. */
void k_rope_table(float *cs, float *sn, int T, int D, double theta);
/* Rotary embedding in place on x [N, ld], nh heads of size D at columns h*D,
 * row n at position n % T, on split halves (rotate_half: channel i pairs
 * with i + D/2):
 *   x'_i       = x_i cos - x_{i+D/2} sin
 *   x'_{i+D/2} = x_{i+D/2} cos + x_i sin */
void k_rope_fwd(float *x, const float *cs, const float *sn, int N, int T, int nh, int D, int ld);
/* The transposed rotation, in place on the gradient dx [N, ld]. */
void k_rope_bwd(float *dx, const float *cs, const float *sn, int N, int T, int nh, int D, int ld);
/* k_rope_bwd, each row then rounded into dxb [N, nh*D] (k_bf16_row) in the
 * same pass: the dy of the bf16 product that reads the rotated gradient
 * (dxb NULL: k_rope_bwd itself). */
void k_rope_bwd_bf16(float *dx, uint16_t *dxb, const float *cs, const float *sn, int N, int T,
                     int nh, int D, int ld);

/* SwiGLU: y = silu(gate) * up, silu(g) = g / (1 + exp(-g)); all [n]. */
void k_swiglu_fwd(float *y, const float *gate, const float *up, size_t n);
/* The same with yb = y rounded to bf16; y may be NULL. */
void k_swiglu_fwd_bf16(float *y, uint16_t *yb, const float *gate, const float *up, size_t n);
/* dgate = dy * up * silu'(gate), dup = dy * silu(gate), with
 * silu'(g) = s (1 + g (1 - s)), s = sigmoid(g); dgate may alias dy. */
void k_swiglu_bwd(float *dgate, float *dup, const float *dy, const float *gate, const float *up,
                  size_t n);
/* The same with dgb, dub = dgate, dup rounded to bf16; dgate and dup are
 * both given or both NULL (neither written, dy left as it is). */
void k_swiglu_bwd_bf16(float *dgate, float *dup, uint16_t *dgb, uint16_t *dub, const float *dy,
                       const float *gate, const float *up, size_t n);

/* Cross-entropy over whole logit rows L [m, V], in place (the bf16 head:
 * its logits come from a bf16 product a chunk of rows at a time).  Returns
 * the sum, in row order, over rows with 0 <= tgt < V of
 *   -log softmax(L_i)[tgt_i] = max L_i + log sum_j exp(L_ij - max L_i) - L_i,tgt_i
 * (double).  With grad != 0, row i becomes softmax(L_i) - onehot(tgt_i), the
 * gradient of that sum with respect to the logits (rows with tgt out of
 * range: 0); without, the rows are left as scratch. */
double k_xent_rows(float *L, const int32_t *tgt, int m, int V, int grad);
/* The same with the gradient rounded to bf16 into G [m, V] (bf16 bits; L is
 * left as scratch): the bits dm_to_bf16 gives on k_xent_rows's gradient, in
 * one pass instead of an fp32 write and a rounding pass after it.  For the
 * bf16 head, whose backward product takes a bf16 input. */
double k_xent_rows_bf16(float *L, uint16_t *G, const int32_t *tgt, int m, int V);

#endif
