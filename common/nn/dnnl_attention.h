/* dnnl_attention.h - causal softmax attention with its products through
 * oneDNN, in bf16 (the bf16 compute path) or fp32 (fp32 compute whose frozen
 * products run through oneDNN, --fp32-matmul onednn; fp32 through OpenBLAS
 * runs kernels.h's k_attention_fwd / _bwd).
 *
 * The same function as k_attention_fwd / k_attention_bwd (kernels.h): H
 * query heads, Hk key/value heads (H % Hk == 0, query head h reads kv head
 * h / G with G = H / Hk), head size D, scale 1/sqrt(D); q, k, v rows of
 * B*T tokens at strides ldq, ldk, ldv; out [B*T, H*D].  The softmax P
 * the backward needs (B*H*T*T elements) is kept in bf16 (DA_BF16: half of
 * k_attention_fwd's fp32 att) or fp32 (DA_F32, as k_attention_fwd's).
 *
 * Stacked order.  The query-side rows of each (b, kv head g) -- G*T of
 * them, one per query row t and group member i (head h = g*G + i) -- lie
 * block by block (blocks of DA_BLOCK query rows, the last one m < DA_BLOCK
 * when T is not a multiple), and inside block [t0, t0+m) member by member:
 *     row(b, h, t) = (b*Hk + g) * G*T + G*t0 + i*m + (t - t0)
 * P, and the handle's S, dP, dS, take rows of T elements in this order
 * (with G = 1 that is [B,H,T,T] itself); with G > 1 the handle's copies
 * of q and dO rows of D (G = 1: token rows [B*T, H*D], whose block rows of
 * one head are already a strided matrix).  So a block's query rows of all
 * G members are one matrix [G*m, .] per (b, g), and every product below
 * is ONE matmul over all (b, g) per causal block of DA_BLOCK query rows
 * (block [t0,t1), m = t1 - t0; for dK, dV key block [j0,j1),
 * rows = T - j0):
 *   fwd  S  = Q_blk K[:t1]^T * scale   (fp32; bf16: in the handle's
 *                                       scratch; fp32: in P itself)
 *        P  = softmax(S)               (fp32 arithmetic; bf16: written in
 *                                       bf16 only; fp32: in place)
 *        O  = P_blk V[:t1]
 *   bwd  dP = dO_blk V[:t1]^T          (fp32, the handle's scratch)
 *        dS = P * (dP - rowsum(dP * P)) * scale   (fp32 arithmetic; bf16:
 *             on the bf16 P, written in bf16 only; fp32: in place of dP)
 *        dQ = dS_blk K[:t1]
 *        dK = sum over the G query heads of dS[j0:, j0:j1]^T Q[j0:]
 *        dV = sum over the G query heads of  P[j0:, j0:j1]^T dO[j0:]
 *             (the G heads' rows stacked: one product of K = G*(T - j0))
 * With G > 1, O and dQ are written stacked into a scratch, then copied to
 * the token rows of out and dq (G = 1: in place).
 *
 * Order.  A pass runs block by block, not product by product: the forward
 * makes S, P and O of block 0, then of block 1, ...; the backward goes from
 * the last block down, making dP, dS and dQ of query block i and then dK
 * and dV of key block i (which read dS and P of the query blocks >= i,
 * all made by then).  A block's S or dP (G*DA_BLOCK rows of at most T
 * floats per (b, g) of a slice) is then read while still in cache instead
 * of after the whole pass's (a slice's B/slices * H * T * T floats);
 * the products and their inputs are the same (docs/performance.md,
 * "Session 15").
 *
 * bf16 rounding: q, k, v are rounded to bf16 once per pass (one pass over
 * their rows, q into the stacked order; the backward rounds them again
 * rather than keeping a copy per layer), dO once in the backward, P and dS
 * row by row inside the softmax and its backward (fused: P is normalised
 * and rounded in one pass, k_attention_softmax_row_bf16; no pass over
 * P or dS of its own).
 * The softmax (kernels.h's row function, as the fp32 path's) and every sum
 * stay fp32.  Error: that of a bf16 product, a few 1e-3 relative (max-norm)
 * on the outputs.  fp32 copies q and dO as above (no rounding) and reads
 * k, v in place: it differs from k_attention_* by the
 * products' summation order only, ~1e-7 relative
 * (tests/test_dnnl_attention.c).
 *
 * A handle serves one shape and type (all the layers of a model, one at a
 * time): bf16, it holds the copies (q, dO as above, k, v [B*T, Hk*D]; dS)
 * and one fp32 scratch (B*H*T*T floats) for S, then dP; fp32, the copies
 * of q and dO, and the scratch of dP made on the first backward call;
 * with G > 1 both also the stacked O / dQ (B*T*H*D floats).  Also the
 * primitives of 6 products x T/DA_BLOCK blocks (per slice), built on the
 * first forward (resp. backward) call; later calls allocate nothing.
 *
 * Threads.  The batches are cut into slices (da_shape.slices; 0: one per
 * thread, omp_get_max_threads(), when they divide B, else 1): with
 * several, a pass is one OpenMP region whose threads each run one slice's
 * batches from the copies to the last product, each product on that
 * thread alone; with one, every product runs over the whole batch on all
 * the threads, with parallel loops between them.  The results do not
 * depend on the slices beyond the products' summation order (tested).
 * Not thread-safe.
 *
 * Without oneDNN (PSLORA_HAVE_DNNL undefined) da_attn_new fails with
 * "built without oneDNN". */
#ifndef PSLORA_DNNL_ATTENTION_H
#define PSLORA_DNNL_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define DA_BLOCK 64 /* query rows per causal block (kernels.c's ATT_BLOCK) */

typedef struct da_attn da_attn;

/* The products' input type (and P's). */
typedef enum { DA_BF16 = 0, DA_F32 = 1 } da_dtype;

/* The shape of one attention call (as k_attention_fwd's arguments) and the
 * type it runs in (left 0: bf16). */
typedef struct {
    int B, T, H, Hk, D;
    int ldq, ldk, ldv; /* row strides of q, k, v and of dq, dk, dv (floats) */
    da_dtype dt;
    int slices;        /* 0: chosen (see "Threads" above); else a divisor of B */
} da_shape;

/* A handle for shape s, its buffers allocated (bf16: B*T*(2H + 2Hk)*D +
 * B*H*T*T bf16 elements and B*H*T*T floats; fp32: 2*B*T*H*D floats, and
 * B*H*T*T more on the first da_attn_bwd; G > 1: B*T*H*D floats more), no
 * primitive built yet.  NULL on failure, reason in e. */
da_attn *da_attn_new(const da_shape *s, pl_err *e);

/* The caller's work on token rows [n0, n1) (whole batches) that a pass
 * runs first (pre: before it reads those rows of q, k, v, dout) or last
 * (post: once it has written those rows of out, or dq, dk, dv): RoPE and
 * the rounding of out for the next product, say, so that they run inside
 * the pass's region on the rows the slice's thread has in its cache, and
 * not in regions of their own.  With one slice, called once with all rows
 * from outside any region (the work may run its own parallel loops; inside
 * the region those run on the calling thread).  Each row is in exactly one
 * call of each.  pre or post may be NULL. */
typedef struct {
    void (*pre)(void *ctx, int n0, int n1);
    void (*post)(void *ctx, int n0, int n1);
    void *ctx;
} da_rows;

/* out[(b*T+t), h*D..] = softmax(q k^T / sqrt(D), causal) v.  P (B*H*T*T
 * elements; bf16: uint16_t bf16 bits; fp32: float) gets the softmax
 * (k_attention_fwd's att; bf16: rounded), its rows in the stacked order
 * above, in the columns da_attn_bwd reads: row t up to the end of its
 * block (zero above the diagonal; the columns beyond are not written).
 * rows: NULL, or the caller's work around the pass (da_rows).
 * 0, or -1 with e filled (only possible on the first call). */
int da_attn_fwd(da_attn *a, float *out, void *P, const float *q, const float *k, const float *v,
                const da_rows *rows, pl_err *e);

/* Overwrites dq, dk, dv from dout [B*T, H*D] and the forward's P (of the
 * handle's type), as k_attention_bwd; rows as da_attn_fwd's.  0, or -1
 * with e filled (only possible on the first call). */
int da_attn_bwd(da_attn *a, float *dq, float *dk, float *dv, const float *dout, const float *q,
                const float *k, const float *v, const void *P, const da_rows *rows, pl_err *e);

/* Bytes the handle holds (its buffers, as made so far; oneDNN's
 * scratchpads of the products, a few hundred KB, not counted). */
size_t da_attn_bytes(const da_attn *a);

/* The slices a pass is cut into (see "Threads" above); 0 for NULL. */
int da_attn_slices(const da_attn *a);

void da_attn_free(da_attn *a);

#endif
