/* kernels.h - the layers of a transformer, forward and backward side by side.
 *
 * Row-major throughout; N = B*T rows.  Backward functions carry the gradient
 * with respect to the layer's input; the LoRA map also yields dA and dB, and
 * the weight-gradient kernels (k_*_bwd_w*) give the weights' own gradients
 * when full fine-tuning trains them.  Every matrix product goes
 * through cblas_sgemm except LoRA's skinny ones (written out); elementwise
 * loops are OpenMP-parallel.  Results never
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

/* LoRA branch, A [r,in], B [out,r], scale s:
 *   u[N,r]   = x A^T                   (kept for the backward)
 *   y[N,out] = res + b + s * u B^T     res [N,out]: NULL (0: y written, not read)
 *                                      or y itself (y +=); b [out]: NULL (0)
 *                                      (x NULL: u given, only y is made)
 * The model writes the LoRA first (res: the block's residual, or NULL) and
 * lets the frozen product accumulate into y (beta 1) where that saves a
 * pass: OpenBLAS products, and maps with a residual; a oneDNN product that
 * writes y goes first and the LoRA adds (res = y).  docs/performance.md,
 * "Session 7: the LoRA in fewer passes".
 * Written out rather than through sgemm (memory-bound skinny products): a
 * pass over the rows (u and y row by row), and for the backward a pass over
 * the rows (du, dx, and dB's sums over parts of 64 rows, so dy is read once)
 * and column sums (dB from its parts, dA over all N rows), each element by
 * one thread in an order fixed by the shape.  scratch: k_lora_scratch(N,
 * out, r) floats.
 * pk NULL: every product in fp32.  pk given (k_lora_pack_size(1, in, out,
 * r) bf16 values; the kernels pack A and B there): the row products u, du,
 * y's LoRA and dx on bf16 inputs (lora_bf16.h: x, dy, A, B, s u and du
 * rounded to bf16, the sums in fp32), as the bf16 model path runs them;
 * the column sums dA, dB stay fp32 (over the fp32 u, du, x, dy). */
size_t k_lora_scratch(int N, int out, int r);
void k_lora_fwd(float *y, const float *res, const float *b, float *u, const float *x,
                const float *A, const float *B, int N, int in, int out, int r, float s,
                float *scratch, uint16_t *pk);
/*   dB[out,r] += s * dy^T u
 *   du[N,r]    = s * dy B     (du is an output the caller keeps, N*r floats)
 *   dA[r,in]  += du^T x       (skipped when x is NULL)
 *   dx[N,in]   = beta * dx + du A   (beta 0: dx written, not read; 1: +=;
 *                                    skipped when dx is NULL) */
void k_lora_bwd(float *dx, float beta, float *dA, float *dB, float *du, const float *dy,
                const float *x, const float *u, const float *A, const float *B, int N, int in,
                int out, int r, float s, float *scratch, uint16_t *pk);

/* LoRA of G <= K_LORA_GROUP_MAX maps that read the same x [N,in] (Llama's
 * q, k, v; gate, up), each with its own A_g [r,in], B_g [out_g,r], u_g [N,r],
 * y_g [N,out_g]:
 *   fwd  y_g = res_g + b_g + s u_g B_g^T (res, b: NULL, or one entry per
 *        map, NULL for 0; res_g may be y_g); y NULL: only the u_g
 *   bwd  dx = beta dx + sum_g du_g A_g, dA_g, dB_g as k_lora_bwd
 * i.e. k_lora_fwd / k_lora_bwd of every map (the backward's beta
 * for map 0, 1 for the rest), with the passes over x and dx made once for all
 * G (a block of rows of x or dx serves the G maps in turn while it is in
 * cache; the column sums of dA_g read x slab by slab for all g).
 * Each sum is formed in the same order as by the per-map kernels called for
 * g = 0, 1, ... in turn, so the results equal theirs bit for bit.
 * scratch: k_lora_group_scratch(G, N, out_sum, r) floats, out_sum = out_0 +
 * ... + out_{G-1}; pk as above, k_lora_pack_size(G, in, out_sum, r). */
#define K_LORA_GROUP_MAX 4
size_t k_lora_group_scratch(int G, int N, int out_sum, int r);
size_t k_lora_pack_size(int G, int in, int out_sum, int r);
void k_lora_fwd_group(float *const *y, const float *const *res, const float *const *b,
                      float *const *u, const float *x, const float *const *A,
                      const float *const *B, const int *out, int G, int N, int in, int r, float s,
                      float *scratch, uint16_t *pk);
/* dy_g [N,out_g]; dA_g, dB_g accumulate; dx (may be NULL) as above.  dy
 * NULL: the row work on dy (du_g, dB_g's sums by parts) was done already
 * by k_lora_bwd_group_prep and k_lora_bwd_group_rows in this scratch. */
void k_lora_bwd_group(float *dx, float beta, float *const *dA, float *const *dB,
                      const float *const *dy, const float *x, const float *const *u,
                      const float *const *A, const float *const *B, const int *out, int G, int N,
                      int in, int r, float s, float *scratch, uint16_t *pk);
/* That row work for callers that hold dy's rows (the attention's post
 * hook, model_step.c): _prep once (B^T into the scratch, or into pk), then
 * _rows (the same pk) on
 * rows [n0, n1) in any number of calls, each covering whole parts of
 * K_LORA_PART rows (n0 a multiple of it, n1 too or N), each row in one
 * call; then k_lora_bwd_group with dy NULL (and that pk).  The same bits as
 * k_lora_bwd_group with dy.  Outside a parallel region the parts run in a
 * parallel loop; inside one, on the calling thread. */
#define K_LORA_PART 64
void k_lora_bwd_group_prep(const float *const *B, const int *out, int G, int N, int r,
                           float *scratch, uint16_t *pk);
void k_lora_bwd_group_rows(const float *const *dy, const float *const *u, const int *out, int G,
                           int N, int r, float s, float *scratch, const uint16_t *pk, int n0,
                           int n1);

/* The forward of k_lora_fwd_group on rows of the caller's choosing, for
 * work that holds those rows already (the attention's row hooks,
 * model_step.c): bt = [B_0^T; ...; B_{G-1}^T] made once (k_lora_transpose,
 * r x (out_0 + ... + out_{G-1}) floats), then k_lora_fwd_rows on rows [n0,
 * n1): for each map y_g = res_g + b_g + s u_g B_g^T, after u_g = x A_g^T
 * when x is given (else u_g as given).  Any split of the rows into calls
 * gives the bits of one k_lora_fwd_group over all of them.  Outside a
 * parallel region the rows run in a parallel loop; inside one, on the
 * calling thread. */
typedef struct {
    float *y[K_LORA_GROUP_MAX], *u[K_LORA_GROUP_MAX];
    const float *res[K_LORA_GROUP_MAX], *b[K_LORA_GROUP_MAX]; /* entries may be NULL (0) */
    const float *A[K_LORA_GROUP_MAX];
    const float *x;    /* [N,in], or NULL: u given */
    const float *bt;   /* k_lora_transpose's */
    const uint16_t *pk; /* NULL, or bf16 products: k_lora_pack_fwd's (then bt unused) */
    int out[K_LORA_GROUP_MAX], G, in, r;
    float s;
} k_lora_rows;
void k_lora_transpose(float *bt, const float *const *B, const int *out, int G, int r);
/* The forward's bf16 pack of G maps into pk (k_lora_pack_size(G, in,
 * out_sum, r) values): their B and (A not NULL) their A. */
void k_lora_pack_fwd(uint16_t *pk, const float *const *A, const float *const *B, const int *out,
                     int G, int in, int r);
void k_lora_fwd_rows(const k_lora_rows *l, int n0, int n1);

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

/* Llama's MLP in bf16 with the LoRA of gate_proj, up_proj and down_proj
 * folded into the SwiGLU's passes, so the wide [N,n] rows (n the MLP's
 * width) are made, read and rounded while in cache instead of in passes
 * of their own (docs/performance.md, "Session 11", "Session 12").  The
 * maps as in k_lora_fwd_group: gate and up read x [N,C]; down reads act
 * [N,n] and writes [N,C].  Each value but down's dA is formed by the same
 * operations in the same order as the unfolded kernels named below, so
 * the results are the same bits; down's dA is summed in parts (below). */
typedef struct {
    const float *u[2];          /* gate's, up's u = x A^T [N,r] (k_lora_fwd_group, y NULL) */
    const float *A[2], *B[2];   /* gate's, up's A [r,C], B [n,r] */
    const float *Ad, *Bd;       /* down's A [r,n], B [C,r] */
    const float *ud;            /* down's u [N,r], as the forward made it (for the backward) */
    int r, C, tiles;            /* rank; model width; threads the scratch has tiles for */
    float s;                    /* alpha / r */
    int bf16;                   /* 1: the LoRA's row products on bf16 inputs (lora_bf16.h:
                                   u, du, the LoRA outputs and dx within bf16's rounding of
                                   the fp32 ones; the column sums dA, dB stay fp32) */
} k_swiglu_lora;
size_t k_swiglu_lora_scratch(int N, int n, int C, int r, int threads);
/* gate's and up's u = x A^T [N,r] from x [N,C] (k_lora_fwd_group with y
 * NULL, or lb_dots when z->bf16). */
void k_swiglu_lora_u(float *const *u, const float *x, const k_swiglu_lora *z, int N, int n,
                     float *scratch);
/* gate, up [N,n] (the frozen products' outputs) += s u B^T in place (kept
 * for the backward), act = silu(gate) * up, actb = act in bf16 (may be
 * NULL), ud [N,r] = act A_d^T (down's u; NULL: skipped, and out with it),
 * out [N,C] = res + s ud B_d^T (down's LoRA before its product adds; out
 * NULL: skipped; res NULL: 0): k_lora_fwd_group (res = y) then
 * k_swiglu_fwd_bf16, then k_lora_fwd for down.  The fp32 act lives only in
 * a thread's tile: the backward makes it again from gate and up
 * (k_swiglu_lora_bwd), so the model keeps no [N,n] act. */
void k_swiglu_lora_fwd(float *gate, float *up, uint16_t *actb, float *ud, float *out,
                       const float *res, const k_swiglu_lora *z, int N, int n, float *scratch);
/* The backward, from dact [N,n] = d(act) as down's frozen product wrote it,
 * and dres [N,C], down's dy (NULL: down not adapted): down's du = s dres
 * B_d and its share of dB (k_lora_bwd's row pass), dy = dact + du A_d
 * (down's LoRA dx), the SwiGLU's dgate, dup rounded into dgb, dub (the
 * frozen products' dy), and gate's and up's du and parts of dB from them
 * (k_lora_bwd_group's row pass): the fp32 dgate, dup exist only in a
 * thread's tile.  With dres, act is made again in a tile (the forward's
 * bits) and down's dA = du^T act summed in parts of 64 rows (as dB's; not
 * k_lora_bwd's order over all N rows: equal to it within rounding).  Then,
 * after the frozen products have written dx [N,C]: k_swiglu_lora_bwd_end
 * adds gate's and up's LoRA dx (beta 1) and accumulates the dA, dB of
 * gate, up and down (dA[0..2], dB[0..2]; down's NULL when dres was).
 * scratch kept between the two calls. */
void k_swiglu_lora_bwd(uint16_t *dgb, uint16_t *dub, const float *dact, const float *gate,
                       const float *up, const float *dres, const k_swiglu_lora *z, int N, int n,
                       float *scratch);
void k_swiglu_lora_bwd_end(float *dx, float *const *dA, float *const *dB, const float *x,
                           const k_swiglu_lora *z, int N, int in, int n, float *scratch);

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
