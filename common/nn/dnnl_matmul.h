/* dnnl_matmul.h - frozen linear maps through oneDNN's matmul (optional):
 * in bf16, or in fp32 on the weights in place.
 *
 * A frozen weight W is converted to bf16 and reordered ONCE into the layout
 * oneDNN's matmul prefers (dm_linear_pack).  Each call then rounds the fp32
 * activations to bf16 into a reusable scratch and runs a bf16 x bf16 -> fp32
 * matmul (oneDNN 2.6 has no fp32-source / bf16-weight matmul):
 *   forward   y[N,out]  = x[N,in] W^T (+ bias)        (W as a torch Linear)
 *   backward  dx[N,in]  = dy[N,out] W  (+ dx)         (dx only: W is frozen)
 * Accumulation is fp32; rounding the inputs to bf16 costs about 2e-3 relative
 * (Frobenius) error per product.
 *
 * The weights are held in one of three ways (dm_linear_pack's bwd):
 *   DM_FWD_ONLY    one copy in oneDNN's packed (blocked) layout: forward only;
 *   DM_FWD_BWD     two packed copies, one per orientation (as much memory as
 *                  the fp32 weights, fastest);
 *   DM_FWD_BWD_ONE one plain row-major bf16 copy read as it lies for one
 *                  orientation and transposed for the other (half the fp32
 *                  memory; somewhat slower without AMX: docs/performance.md).
 *
 * A DM_FWD_BWD_ONE copy, or a DM_FWD_BWD pair, may also live in memory the
 * caller owns (dm_linear_wrap_bf16, dm_linear_wrap_packed): several
 * processes can then share one copy, which one of them writes
 * (dm_linear_fill) and the others only describe.
 *
 * Handles may share one dm_arena: the bf16 copy of the activations and
 * oneDNN's scratchpads then live there once instead of once per handle (a
 * model's dozens of linear maps run one at a time).
 *
 * fp32 (dm_linear_wrap_f32): the frozen fp32 weights are used IN PLACE
 * (plain row-major, described for both orientations as DM_FWD_BWD_ONE is;
 * no copy), and the fp32 activations are read as they lie: an fp32 x fp32
 * -> fp32 matmul, accumulated in fp32 like sgemm (another summation order,
 * so the results differ from sgemm's in the last bits).  It pays off where
 * oneDNN has AVX-512 kernels and OpenBLAS is held to AVX2 ones
 * (docs/performance.md, "fp32 through oneDNN").
 *
 * The bf16 path pays off on CPUs that execute bf16 dot products natively (AMX,
 * AVX512_BF16); elsewhere oneDNN emulates them, slower than OpenBLAS sgemm,
 * so callers choose the path at run time with cpu_bf16_dot() (common/base/
 * cpu.h, `--compute auto`).
 *
 * Compiled for real when PSLORA_HAVE_DNNL is defined (common/CMakeLists.txt
 * does so when libdnnl is found); otherwise every function but the detection
 * fails with "built without oneDNN". */
#ifndef PSLORA_DNNL_MATMUL_H
#define PSLORA_DNNL_MATMUL_H

#include <stdint.h>

#include "err.h"

typedef struct dm_linear dm_linear;
typedef struct dm_arena dm_arena;

typedef enum { DM_F32, DM_BF16 } dm_dtype;    /* element type of the source weights */
typedef enum {
    DM_OUT_IN,   /* W [out, in] row-major (torch Linear, Llama) */
    DM_IN_OUT    /* W [in, out] row-major (GPT-2 Conv1D) */
} dm_layout;

/* 1 when this build has the oneDNN path, else 0. */
int dm_available(void);

/* How the weights are held (see above); 0 and 1 keep the old with_bwd meaning. */
enum { DM_FWD_ONLY = 0, DM_FWD_BWD = 1, DM_FWD_BWD_ONE = 2 };

/* Packs W (w: float or uint16_t bf16 bits, per dt) for y = x W^T.  bwd is
 * DM_FWD_ONLY, DM_FWD_BWD or DM_FWD_BWD_ONE; the last two allow
 * dm_linear_bwd_x.  The source is only read during the call.  NULL on
 * failure, reason in e.  A handle is not thread-safe: one caller at a time
 * (oneDNN itself runs the product on omp_get_max_threads() threads). */
dm_linear *dm_linear_pack(const void *w, dm_dtype dt, dm_layout layout, int in, int out,
                          int bwd, pl_err *e);

/* A DM_FWD_BWD_ONE handle over plain bf16 memory the caller owns: data
 * holds W's in*out bf16 elements (dm_plain_bytes), row-major as layout
 * says.  The handle neither fills nor frees it (data must outlive the
 * handle), and making it or its primitives reads nothing of data: write the
 * weights (dm_linear_fill here, or through another handle or process over
 * the same bytes) before the first product.  NULL on failure, reason in e. */
dm_linear *dm_linear_wrap_bf16(void *data, dm_layout layout, int in, int out, pl_err *e);
/* Bytes of two packed bf16 copies (DM_FWD_BWD) of in x out weights laid
 * out as dm_linear_wrap_packed lays them: each orientation in the layout
 * oneDNN's matmul picks on this CPU, the second from the first 64-byte
 * boundary after the first.  0 on failure (e filled). */
size_t dm_packed_bytes(int in, int out, pl_err *e);
/* A DM_FWD_BWD handle over packed bf16 memory the caller owns
 * (dm_packed_bytes of it), as dm_linear_wrap_bf16 is for a plain copy:
 * nothing read or written until dm_linear_fill (here, or through another
 * handle or process over the same bytes).  The layout is oneDNN's choice
 * for this CPU and library version, so only processes on the same machine
 * may share it (the ranks of one node).  NULL on failure, reason in e. */
dm_linear *dm_linear_wrap_packed(void *data, dm_layout layout, int in, int out, pl_err *e);
/* Writes W (w: float or uint16_t bf16 bits, per dt, in the handle's layout)
 * into the bf16 copy of a DM_FWD_BWD_ONE handle, or into both packed
 * copies of a dm_linear_wrap_packed one, rounded as dm_linear_pack rounds:
 * the same bytes.  0, or -1 with e filled. */
int dm_linear_fill(dm_linear *h, const void *w, dm_dtype dt, pl_err *e);
/* An fp32 handle over the caller's fp32 weights w (in*out floats,
 * row-major as layout says), used in place for y = x W^T and dx = dy W:
 * nothing is copied, w is only read (by the products) and must outlive the
 * handle.  dm_linear_fill does not apply.  NULL on failure, reason in e. */
dm_linear *dm_linear_wrap_f32(const float *w, dm_layout layout, int in, int out, pl_err *e);
/* Bytes of a plain bf16 copy of in x out weights. */
size_t dm_plain_bytes(int in, int out);

/* Bytes of weights the handle holds or wraps (0 for NULL). */
size_t dm_weight_bytes(const dm_linear *h);

/* y[N,out] = x[N,in] W^T + bias (bias [out] or NULL).  x and y fp32 row-major.
 * The first call with a given N (and bias or not, accumulating or not)
 * builds its primitive; later calls with it allocate nothing.  0 on success,
 * -1 with e filled. */
int dm_linear_fwd(dm_linear *h, const float *x, float *y, const float *bias, int N, pl_err *e);
/* The same added to y: y[N,out] += x W^T + bias (oneDNN's sum post-op). */
int dm_linear_fwd_acc(dm_linear *h, const float *x, float *y, const float *bias, int N,
                      pl_err *e);

/* The forward on an input already rounded to bf16 (dm_to_bf16), for
 * several maps reading the same x (Llama's q, k, v; gate, up): x is then
 * rounded once instead of once per map.  y = xb W^T + bias, or y += that
 * when acc != 0; the same result, bit for bit, as dm_linear_fwd(_acc) on
 * the fp32 x.  xb [N,in] bf16 bits, row-major. */
int dm_linear_fwd_bf16(dm_linear *h, const uint16_t *xb, float *y, const float *bias, int N,
                       int acc, pl_err *e);
/* xb[N*K] = bf16(x[N*K]), rounded as every product rounds its input
 * (bf16.h), on omp_get_max_threads() threads. */
void dm_to_bf16(uint16_t *xb, const float *x, int N, int K);

/* dx[N,in] = dy[N,out] W, or dx += dy W when accumulate != 0.  The handle
 * must have been packed with DM_FWD_BWD or DM_FWD_BWD_ONE. */
int dm_linear_bwd_x(dm_linear *h, const float *dy, float *dx, int N, int accumulate, pl_err *e);

/* The backward on a dy already rounded to bf16 (k_xent_rows_bf16 writes the
 * head's so): dx = dyb W, or dx += that when accumulate != 0; the same
 * result, bit for bit, as dm_linear_bwd_x on the fp32 dy.  dyb [N,out] bf16
 * bits, row-major.  bf16 handles only. */
int dm_linear_bwd_x_bf16(dm_linear *h, const uint16_t *dyb, float *dx, int N, int accumulate,
                         pl_err *e);

/* oneDNN's name of the kernel used by the last fwd (bwd != 0: bwd_x) call,
 * e.g. "brg:avx512_core_amx_bf16" or (fp32) "brg:avx512_core"; "" before
 * any call. */
const char *dm_impl_name(const dm_linear *h, int bwd);

void dm_free(dm_linear *h);

/* A shared home for the bf16 activation copies and scratchpads of several
 * handles, which must then be called one at a time.  It grows to the
 * largest call made through any of them (on the first call of each shape)
 * and never shrinks.  NULL when out of memory or built without oneDNN. */
dm_arena *dm_arena_new(void);
/* Makes h use a (before its first call; a must outlive h). */
void dm_linear_use_arena(dm_linear *h, dm_arena *a);
/* Makes every later call through a's handles add the seconds it spends
 * rounding its fp32 input to bf16 to *sec (NULL: stop).  For profiles. */
void dm_arena_time_convert(dm_arena *a, double *sec);
/* Bytes the arena holds now. */
size_t dm_arena_bytes(const dm_arena *a);
void dm_arena_free(dm_arena *a);

#ifdef PSLORA_HAVE_DNNL
#include <dnnl.h>
/* The process's one oneDNN CPU engine and in-order stream (created on first
 * use, kept until exit), shared with the other oneDNN module
 * (dnnl_attention.c).  0, or -1 with e filled. */
int dm_engine(dnnl_engine_t *eng, dnnl_stream_t *st, pl_err *e);
#endif

#endif
