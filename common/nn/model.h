/* model.h - the frozen base model: config, weights, forward and backward.
 *
 * An architecture is a description of its blocks: each block has a list of
 * frozen linear maps (its LoRA candidates) with their module paths, and the
 * block function that strings them together (model_step.c: a GPT-2 block and
 * a Llama block side by side, one trainer).
 *
 * GPT-2: LayerNorm (weight and bias), learned positions (wpe), Conv1D
 * weights [in, out].  Llama: RMSNorm (weight only: ln*_b and lnf_b NULL), no
 * wpe (rotary positions), torch Linear weights [out, in], biases only with
 * attention_bias / mlp_bias.
 *
 * Weights stored as F32 in the file are used in place from the read-only
 * mapping (ranks on one node share the pages); F16/BF16 are converted once.
 *
 * bf16 compute (model_load_for / model_set_compute, common/model_bf16.c):
 * every frozen matrix product (the linear maps of every block and the lm
 * head) runs through oneDNN on ONE bf16 copy of its weights, packed once;
 * their fp32 data is then released (converted copies freed, mapped F32 pages
 * dropped).  Norms, biases, wpe and the embedding rows stay fp32 (the
 * embedding is gathered from the file's own rows when no fp32 copy is
 * kept); LoRA, attention and every reduction stay fp32.  The copies of
 * training lie in one region that a model_bf16_store may provide, so that
 * processes can share them (model_set_compute_in, model_load_in). */
#ifndef PSLORA_MODEL_H
#define PSLORA_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "safetensors.h"

typedef enum { ARCH_GPT2, ARCH_LLAMA } model_arch;

typedef struct model_config_s {
    model_arch arch;
    int n_layer, n_embd, n_head, n_kv_head, head_dim, n_inner, vocab, n_ctx;
    float eps;          /* layer_norm_epsilon / rms_norm_eps */
    float rope_theta;
    int tie_embeddings;
    int attn_bias, mlp_bias;   /* llama only */
} model_config;

/* Reads DIR/config.json; every missing or bad field names the file. */
int model_config_load(model_config *c, const char *dir, pl_err *e);
/* Writes DIR/config.json in Hugging Face form for the architecture. */
int model_config_save(const model_config *c, const char *dir, pl_err *e);
const char *model_arch_name(model_arch a);
int model_arch_parse(const char *s, model_arch *a);

#define MODEL_MAX_LINEARS 8

typedef enum { MODEL_FP32, MODEL_BF16 } model_compute;

/* A weight as the file holds it (data NULL for models made in memory). */
typedef struct {
    const void *data;   /* into the mapping */
    st_dtype dtype;     /* F32, F16 or BF16 */
} model_src;

struct dm_linear;
struct dm_arena;

/* Where the plain bf16 copies of training (bf16 compute with_bwd) live:
 * ONE region for all the model's frozen matrices, each at a 64-byte aligned
 * offset in a fixed order (the blocks' linear maps layer by layer, then the
 * head), so processes holding the same model lay it out alike and may share
 * it.  model.c and model_bf16.c know nothing of who provides it (under
 * mpirun: worker/node_shared.h, one region per node). */
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

/* A frozen linear map y = x W^T + b; W [out,in], or [in,out] for Conv1D.
 * With bf16 compute, dm holds W and w is NULL. */
typedef struct {
    const float *w, *b;
    int in, out;
    int conv1d;
    int lora;           /* index of its LoRA module, -1 when not adapted */
    model_src src;      /* W in the file */
    struct dm_linear *dm;
} model_linear;

/* ln1/ln2: GPT-2 ln_1/ln_2; Llama input_layernorm/post_attention_layernorm. */
typedef struct {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    model_linear lin[MODEL_MAX_LINEARS];   /* order: model_linear_names() */
} model_block;

typedef struct {
    model_config cfg;
    const float *wte, *wpe, *lnf_w, *lnf_b, *lm_head;   /* lm_head == wte when tied;
                                                           llama: wpe, lnf_b NULL */
    model_block *blocks;
    st_file *files;
    int n_files;
    float **owned;      /* converted copies (F16/BF16) */
    int n_owned;
    /* bf16 compute: lm_head is NULL and head_dm holds E [V,C]; wte is NULL
     * when the embedding rows are read from wte_src instead */
    model_compute compute;
    model_src wte_src, head_src;
    struct dm_linear *head_dm;
    struct dm_arena *arena;   /* activations and scratch of every dm handle */
    void *bf16_own;           /* the plain copies' region when the model owns it */
    size_t bf16_bytes;        /* that region's size, owned or not (0: none) */
} model;

/* Number of linear maps per block and their module names relative to the
 * block ("attn.c_attn", ...), and the block's module path prefix. */
int model_n_linears(const model_config *c);
const char *model_linear_name(const model_config *c, int slot);
/* Writes the full module path of (layer, slot), e.g. "transformer.h.3.attn.c_attn". */
void model_module_path(const model_config *c, int layer, int slot, char *buf, size_t len);
/* in/out sizes of a linear slot. */
void model_linear_shape(const model_config *c, int slot, int *in, int *out);

/* model_load_for(m, dir, MODEL_FP32, 0, e). */
int model_load(model *m, const char *dir, pl_err *e);
/* Loads DIR for the given compute.  MODEL_BF16: the frozen matrices are not
 * converted to fp32 at all; model_set_compute packs them straight from the
 * file (BF16 bits as they are, F32 from the mapping, F16 through a
 * temporary fp32 copy).  with_bwd: see model_set_compute. */
int model_load_for(model *m, const char *dir, model_compute c, int with_bwd, pl_err *e);
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
/* model_load_for whose bf16 copies (with_bwd) live in store's region. */
int model_load_in(model *m, const char *dir, model_compute c, int with_bwd,
                  const model_bf16_store *store, pl_err *e);
/* "fp32", "bf16" or "auto" -> *c: auto is bf16 only when oneDNN is built in
 * and the CPU has AMX (dm_cpu_has_amx), else fp32.  bf16 in a build without
 * oneDNN and unknown names are refused (one line naming --compute). */
int model_compute_choose(const char *s, model_compute *c, pl_err *e);
#define MODEL_COMPUTE_HELP "fp32, bf16 (oneDNN) or auto = bf16 on AMX CPUs (fp32)"
const char *model_compute_name(model_compute c);
/* "bf16 (requested auto; oneDNN built in, AMX yes)": the choice and why. */
void model_compute_describe(char *buf, size_t len, model_compute c, const char *requested);
/* Bytes of the frozen matrices (linear maps and head) as the compute holds
 * them: fp32 4 per element (the head counted once when tied), bf16 what the
 * dm handles hold. */
size_t model_matrix_bytes(const model *m);
/* bf16: bytes of the scratch the products share (bf16 activations, oneDNN
 * scratchpad), as grown by the calls so far; 0 for fp32. */
size_t model_bf16_scratch_bytes(const model *m);
void model_free(model *m);

/* The frozen weights as a table (name, where the pointer lives in the
 * model, shape, init rule), shared by loading, `pslora init` and saving so
 * the three agree on names and shapes.  GPT-2 names are without
 * "transformer." ("h.0.attn.c_attn.weight"); Llama names are the full keys
 * ("model.layers.0.self_attn.q_proj.weight", [out, in]).  lm_head.weight is
 * not in the table (absent when tied).  Also sets every block's linear
 * shapes, layout and lora = -1. */
enum { INIT_ZERO, INIT_ONE, INIT_NORMAL, INIT_RESID };
typedef struct {
    char name[128];
    const float **slot;
    int ndim;
    int64_t shape[2];
    int init;
    model_src *src;     /* where loading records the file's data: the matrices
                           bf16 compute packs and wte; NULL for the rest */
} model_weight;
int model_weight_count(const model_config *c);
int model_weight_table(model *m, model_weight *w);

/* A model with freshly drawn weights, held in memory.  GPT-2: normal std
 * 0.02, residual projections 0.02/sqrt(2 n_layer), LayerNorm 1/0, biases 0.
 * Llama (transformers' LlamaPreTrainedModel): linear and embedding weights
 * normal std 0.02 (initializer_range), RMSNorm weights 1, biases 0.
 * Checks the config (heads, kv heads, even head_dim). */
int model_init_random(model *m, const model_config *c, unsigned long long seed, pl_err *e);
/* Writes DIR/config.json and DIR/model.safetensors (F32; GPT-2 with
 * "transformer." keys, Llama with "model." keys; lm_head.weight when untied). */
int model_save(const model *m, const char *dir, pl_err *e);

/* Activations and scratch for one micro-batch shape, allocated once so the
 * step loop never allocates. */
typedef struct model_acts model_acts;
struct lora_layout_s;

/* need_backward = 0 allocates only what a forward pass needs (eval).  Make
 * them after the model's compute is set (the head's scratch differs). */
model_acts *model_acts_new(const model *m, const struct lora_layout_s *L, int B, int T,
                           int need_backward);
void model_acts_free(model_acts *a);
/* NULL, or the first failure of a bf16 product in a pass made with a (then
 * that pass returned NaN).  bf16 builds each product's oneDNN primitive on
 * its first call with a row count, i.e. during the first step (and the first
 * evaluation or generation) with a shape; a failure can only come then. */
const char *model_acts_error(const model_acts *a);
/* Seconds spent in the forward (incl. the fused head) and backward parts of
 * the last model_loss_grad call. */
void model_acts_timing(const model_acts *a, double *fwd, double *bwd);

/* Forward pass on inp/tgt [B,T] (int32 tokens), and the backward pass when
 * grad != NULL.  Returns the *sum* of the token losses (double).  grad, laid
 * out as the adapter's flat vector, is overwritten with d(sum loss)/d(params).
 * L and params may be NULL: the base model alone.  Dropout on the LoRA input
 * path uses a mask drawn from dropout_seed. */
double model_loss_grad(const model *m, model_acts *a, const struct lora_layout_s *L,
                       const float *params, float *grad, const int32_t *inp,
                       const int32_t *tgt, unsigned long long dropout_seed);

/* Forward pass over inp [B=1, T] (the acts' shape) and the vocabulary logits
 * [V] of position pos; positions after pos do not affect them (causal), so
 * callers may pad.  For generation. */
void model_logits(const model *m, model_acts *a, const struct lora_layout_s *L,
                  const float *params, const int32_t *inp, int pos, float *logits);

#endif
