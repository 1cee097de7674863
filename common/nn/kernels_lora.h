/* kernels_lora.h - the LoRA branch's kernels, forward and backward side by
 * side: one map, a group of maps that read the same input (Llama's q, k, v;
 * gate, up), the forward on rows of the caller's choosing (attention's row
 * hooks), and Llama's MLP with the LoRA of gate, up and down folded into the
 * SwiGLU's passes.
 *
 * Row-major, N = B*T rows, as in kernels.h.  The products are skinny (r is
 * about 8) and written out, in passes over rows (u, y, du, dx, and dB's sums
 * by parts of K_LORA_PART rows) and over columns (dB from its parts, dA);
 * every output element is summed by one thread in an order fixed by the
 * shape, so results do not depend on the thread count.  With a bf16 pack
 * (pk, lora_bf16.h) the row products take bf16 inputs with fp32 sums, as
 * the bf16 model path runs them; the column sums stay fp32. */
#ifndef PSLORA_KERNELS_LORA_H
#define PSLORA_KERNELS_LORA_H

#include <stddef.h>
#include <stdint.h>

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

#endif
