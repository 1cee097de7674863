/* model_bf16.h - bf16 compute of the frozen model, built on model.h, and
 * fp32 compute whose frozen products run through oneDNN (--fp32-matmul).
 *
 * Every frozen matrix product (the linear maps of every block and the lm
 * head) runs through oneDNN on a bf16 copy of its weights, made once (the
 * head of training: two, mb_train_hold);
 * their fp32 data is then released (converted copies freed, mapped F32
 * pages dropped).  Norms, biases, wpe and the embedding rows stay fp32 (the
 * embedding is gathered from the file's own rows when no fp32 copy is
 * kept); LoRA and every reduction stay fp32 (causal attention's products
 * run in bf16 too: model_step.c, dnnl_attention.h).  The copies of
 * training lie in one region that a model_bf16_store may provide, so that
 * processes can share them.
 *
 * fp32 through oneDNN (model_use_onednn_fp32): the same handles and the same
 * mb_ products, but each wraps the fp32 weights IN PLACE (the mapping or
 * the converted copy: no second copy) and runs an fp32 matmul; causal
 * attention's products then run as oneDNN fp32 matmuls too (model_step.c,
 * dnnl_attention.h).
 *
 * The first half is the public side (loading for a compute, switching,
 * choosing, sizes); the second (mb_) is what model_step.c calls: the
 * products through a linear map's or the head's handle, and the embedding
 * gathered from the file's rows.  Shapes: N rows, C = n_embd, V = vocab;
 * all activations fp32 row-major. */
#ifndef PSLORA_MODEL_BF16_H
#define PSLORA_MODEL_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "model.h"

/* Rows of the head per bf16 (or oneDNN fp32) product: the logits
 * [MB_HEAD_ROWS, V] of one chunk are the head's scratch (GPT-2's V = 50257:
 * 51.5 MB).  256 rows ran the head 5-15% faster than 128 (the weights, 77 MB
 * in bf16, are read half as often); 512 gained nothing more measurable
 * (docs/performance.md, "Measurements behind the code's choices"). */
#define MB_HEAD_ROWS 256

/* How training (bf16 compute with_bwd) holds a frozen matrix, as
 * dnnl_matmul.h's bwd modes: the blocks' linear maps as ONE plain copy
 * (DM_FWD_BWD_ONE), the head (head != 0) as two packed copies, one per
 * orientation (DM_FWD_BWD): its logits product over V columns ran ~12%
 * faster packed than on the plain copy, 2-5% of a step, for V*C*2 more
 * bytes (docs/performance.md, "Session 15").  Both in the region below.
 * Also what `pslora bench` measures the peak on. */
int mb_train_hold(int head);

/* Where the bf16 copies of training live: ONE region for all the model's
 * frozen matrices, each at a 64-byte aligned offset in a fixed order (the
 * blocks' linear maps layer by layer, then the head), held as
 * mb_train_hold says, so processes holding the same model on the same
 * machine lay it out alike and may share it.  This module knows nothing of who provides it (under mpirun:
 * worker/node_shared.h, one region per node). */
typedef struct model_bf16_store {
    /* Returns the region of `bytes` bytes, or NULL with e filled.  *must_fill
     * = 1: this caller writes the copies; 0: another process writes them,
     * and they are there once done() has returned 0.  The store owns the
     * region: the model never frees it, and it must outlive the model. */
    void *(*alloc)(void *ctx, size_t bytes, int *must_fill, pl_err *e);
    /* Called once after every successful alloc, with this caller's status
     * (ok 1: filled, when it had to, and every handle made; 0: failed).
     * Returns 0 when the region is complete, -1 (e filled) when any process
     * sharing it failed. */
    int (*done)(void *ctx, int ok, pl_err *e);
    void *ctx;
} model_bf16_store;

/* model_load_for(m, dir, MODEL_FP32, 0, e) is model_load.  MODEL_BF16:
 * the frozen matrices are not converted to fp32 at all (model_load_deferred);
 * model_set_compute packs them straight from the file (BF16 bits as they
 * are, F32 from the mapping, F16 through a temporary fp32 copy).  with_bwd:
 * see model_set_compute. */
int model_load_for(model *m, const char *dir, model_compute c, int with_bwd, pl_err *e);
/* model_load_for whose bf16 copies (with_bwd) live in store's region. */
int model_load_in(model *m, const char *dir, model_compute c, int with_bwd,
                  const model_bf16_store *store, pl_err *e);
/* Switches a loaded or drawn fp32 model to bf16 compute (MODEL_FP32: no-op
 * on an fp32 model, refused on a bf16 one).  with_bwd != 0 keeps the
 * weights in a form that also serves dx = dy W (training); 0 packs them for
 * the forward pass only (eval, generate).  Either way one bf16 copy per
 * matrix: half the fp32 memory.  Drawn models (model_init_random) keep their
 * one fp32 buffer.  Fails without oneDNN. */
int model_set_compute(model *m, model_compute c, int with_bwd, pl_err *e);
/* The same with the plain copies of with_bwd in store's region (store NULL,
 * or !with_bwd: private memory of the model's own, as model_set_compute). */
int model_set_compute_in(model *m, model_compute c, int with_bwd, const model_bf16_store *store,
                         pl_err *e);
/* "fp32", "bf16" or "auto" -> *c: auto is bf16 when oneDNN is built in and
 * the CPU executes bf16 dot products natively (AMX or AVX512_BF16:
 * cpu_bf16_dot, PSLORA_CPU_FEATURES overrides), else fp32.  bf16 in a build
 * without oneDNN, unknown names and a bad PSLORA_CPU_FEATURES are refused
 * (one line naming the flag or the variable). */
int model_compute_choose(const char *s, model_compute *c, pl_err *e);
#define MODEL_COMPUTE_HELP "fp32, bf16 (oneDNN) or auto = bf16 on CPUs with AVX512_BF16 or AMX (fp32)"
const char *model_compute_name(model_compute c);
/* The choice and why: "bf16 (auto: avx512_bf16)", "fp32 (auto: no native
 * bf16 dot product)", or for a mode given by name "bf16 (requested bf16;
 * oneDNN built in, native bf16 dot product: avx512_bf16)". */
void model_compute_describe(char *buf, size_t len, model_compute c, const char *requested);
/* How an fp32 model's frozen products run: OpenBLAS sgemm (kernels.h) or
 * oneDNN's fp32 matmul on the weights in place. */
typedef enum { MODEL_MM_OPENBLAS, MODEL_MM_ONEDNN } model_matmul;
/* "openblas", "onednn" or "auto" -> *mm: auto is onednn when oneDNN is
 * built in, the CPU has AVX512F (cpu_avx512, PSLORA_CPU_FEATURES
 * overrides) and OpenBLAS's core is not an AVX-512 one (held to AVX2
 * kernels, e.g. by OPENBLAS_CORETYPE=Haswell), else openblas.  onednn in
 * a build without oneDNN, unknown names and a bad PSLORA_CPU_FEATURES are
 * refused (one line naming the flag or the variable). */
int model_fp32_matmul_choose(const char *s, model_matmul *mm, pl_err *e);
#define MODEL_FP32_MATMUL_HELP                                                              \
    "fp32 products: openblas, onednn or auto = onednn on an AVX-512 CPU whose OpenBLAS " \
    "runs AVX2 kernels (auto)"
const char *model_fp32_matmul_name(model_matmul mm);
/* The choice and why: "onednn (auto: avx512f while OpenBLAS runs its
 * Haswell kernels)", "openblas (auto: no avx512f)", or for a name given
 * "onednn (requested onednn; OpenBLAS core Haswell, avx512f: yes)". */
void model_fp32_matmul_describe(char *buf, size_t len, model_matmul mm, const char *requested);
/* Switches an fp32 model's frozen products (the blocks' linear maps
 * forward and dx, the head's logits and dx) to oneDNN's fp32 matmul on the
 * weights in place.  GPT-2 and Llama, fp32 compute, once; a model that
 * trains its own weights (--full) must not use it (the head's dE is
 * OpenBLAS's fused kernel's).  0, or -1 with e filled. */
int model_use_onednn_fp32(model *m, pl_err *e);
/* 1 when the head runs through a oneDNN handle (bf16, or fp32 through
 * oneDNN): mb_head_xent and mb_head_logits then apply. */
int mb_head_onednn(const model *m);

/* Bytes of the frozen matrices (linear maps and head) as the compute holds
 * them: fp32 4 per element (the head counted once when tied), bf16 what the
 * dm handles hold. */
size_t model_matrix_bytes(const model *m);
/* bf16 or fp32 through oneDNN: bytes of the scratch the products share
 * (bf16 activations, oneDNN scratchpad), as grown by the calls so far; 0
 * for fp32 through OpenBLAS. */
size_t model_bf16_scratch_bytes(const model *m);
/* bf16: makes every later product add the seconds it spends rounding its
 * fp32 input to bf16 to *sec (NULL: stop; a profile's SP_CONVERT, see
 * step_prof.h).  No effect for fp32. */
void model_bf16_time_convert(model *m, double *sec);
/* Bytes of the plain copies' region (0: none, i.e. fp32 or forward only);
 * *owned = 1 when the model allocated it, 0 when a store provides it. */
size_t model_bf16_region(const model *m, int *owned);

/* y[N,out] = x[N,in] W^T + b, plus res when res != NULL (y may be res). */
int mb_linear_fwd(const model_linear *lin, float *y, const float *x, const float *res, int N,
                  pl_err *e);
/* As mb_linear_fwd on x already rounded to bf16 (by the kernel that made
 * x: kernels.h, *_bf16), bf16 compute only; several maps reading the same
 * x share one copy.  Bit for bit mb_linear_fwd's y. */
int mb_linear_fwd_bf16(const model_linear *lin, float *y, const uint16_t *xb, const float *res,
                       int N, pl_err *e);
/* dx[N,in] = dy[N,out] W, or dx += dy W with accumulate. */
int mb_linear_bwd(const model_linear *lin, float *dx, const float *dy, int N, int accumulate,
                  pl_err *e);
/* As mb_linear_bwd on dy already rounded to bf16 (bf16 compute only).  Bit
 * for bit mb_linear_bwd's dx. */
int mb_linear_bwd_bf16(const model_linear *lin, float *dx, const uint16_t *dyb, int N,
                       int accumulate, pl_err *e);

/* Floats of the head's scratch for N rows a step: min(N, MB_HEAD_ROWS) * V,
 * half as much again in bf16 compute (the logits' gradient in bf16). */
size_t mb_head_scratch(const model *m, int N);
/* The head and cross-entropy over x [N,C] in chunks of MB_HEAD_ROWS rows:
 *   logits = x_chunk E^T (bf16 product into scratch)   [R,V]
 * (xb: x already rounded to bf16 [N,C] by the final norm, bf16 compute;
 * NULL: each chunk of x rounded by the product)
 *   loss  += sum_i -log softmax(logits_i)[tgt_i]        (fp32)
 *   dx_chunk = (softmax - onehot) E                     [R,C] (bf16 product)
 * In bf16 compute the softmax writes its gradient in bf16 (k_xent_rows_bf16)
 * and the backward reads it as it lies; with fp32 weights (oneDNN fp32) the
 * gradient is fp32, in place (k_xent_rows).
 * Returns the summed loss (tgt < 0: ignored, as k_lmhead_xent); dx may be
 * NULL.  *rc becomes -1 (e filled) when a product fails.  xent_sec (may be
 * NULL) gains the seconds of the softmax-xent part (a profile's). */
double mb_head_xent(const model *m, float *dx, float *scratch, const float *x,
                    const uint16_t *xb, const int32_t *tgt, int N, double *xent_sec, int *rc,
                    pl_err *e);
/* logits[V] = x[C] E^T (one row, generation). */
int mb_head_logits(const model *m, const float *x, float *logits, pl_err *e);

/* x[n,:] = E[inp[n],:] + wpe[n % T,:], the rows of E read from the file's
 * data (m->wte_src, any of F32/F16/BF16, converted exactly): the embedding
 * when bf16 compute keeps no fp32 copy of wte. */
void mb_embed(float *x, const int32_t *inp, const model *m, int N, int T);

#endif
