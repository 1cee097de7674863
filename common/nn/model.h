/* model.h - the frozen base model: config, weights, forward and backward.
 *
 * An architecture is a description of its blocks: each block has a list of
 * frozen linear maps (its LoRA candidates) with their module paths, and the
 * block function that strings them together (model_step.c: a GPT-2, a Llama
 * and a BERT block side by side, one trainer).
 *
 * GPT-2: LayerNorm (weight and bias), learned positions (wpe), Conv1D
 * weights [in, out].  Llama: RMSNorm (weight only: ln*_b and lnf_b NULL), no
 * wpe (rotary positions), torch Linear weights [out, in], biases only with
 * attention_bias / mlp_bias.  BERT (model_step.c, its BERT section; docs/bert.md): word,
 * position and token-type embeddings with a LayerNorm, post-LayerNorm
 * blocks of torch Linear maps with biases, bidirectional attention with a
 * padding mask, and one head chosen by the task: the masked-LM head
 * (cls.predictions) or the pooler and classifier (sequence classification).
 *
 * Weights stored as F32 in the file are used in place from the read-only
 * mapping (ranks on one node share the pages); F16/BF16 are converted once.
 *
 * bf16 compute (model_bf16.h) builds on this module and not the reverse:
 * it loads with model_load_deferred, keeps its state behind m->bf16 and
 * gives model_free the function that releases it. */
#ifndef PSLORA_MODEL_H
#define PSLORA_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "hf_files.h"
#include "safetensors.h"

typedef enum { ARCH_GPT2, ARCH_LLAMA, ARCH_BERT } model_arch;

/* BERT's head: none (BertModel), masked LM, sequence classification. */
typedef enum { TASK_NONE, TASK_MLM, TASK_CLS } model_task;

typedef struct model_config_s {
    model_arch arch;
    int n_layer, n_embd, n_head, n_kv_head, head_dim, n_inner, vocab, n_ctx;
    float eps;          /* layer_norm_epsilon / rms_norm_eps */
    float rope_theta;
    int tie_embeddings;
    int attn_bias, mlp_bias;   /* llama only */
    /* bert only: token types, labels of the classifier (id2label's size,
     * else num_labels, else 2), hidden_act "gelu" (erf) or "gelu_new", the
     * head (from "architectures": BertForSequenceClassification -> cls,
     * else mlm; model_load_task overrides it) */
    int type_vocab, num_labels, act_erf;
    model_task task;
} model_config;

/* Reads DIR/config.json; every missing or bad field names the file. */
int model_config_load(model_config *c, const char *dir, pl_err *e);
/* 1 when DIR's config.json names an encoder (bert); 0 otherwise, also when
 * it cannot be read (the load reports that). */
int model_dir_is_encoder(const char *dir);
/* Writes DIR/config.json in Hugging Face form for the architecture. */
int model_config_save(const model_config *c, const char *dir, pl_err *e);
const char *model_arch_name(model_arch a);
int model_arch_parse(const char *s, model_arch *a);
/* "mlm" / "cls" (and "none"); -1 for anything else. */
int model_task_parse(const char *s, model_task *t);

#define MODEL_MAX_LINEARS 8

typedef enum { MODEL_FP32, MODEL_BF16 } model_compute;

/* A weight as the file holds it (data NULL for models made in memory). */
typedef struct {
    const void *data;   /* into the mapping */
    st_dtype dtype;     /* F32, F16 or BF16 */
} model_src;

struct dm_linear;
struct model_bf16;

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
    model_linear lin[MODEL_MAX_LINEARS];   /* slot order: model_linear_name() */
} model_block;

typedef struct model_s model;
struct model_s {
    model_config cfg;
    const float *wte, *wpe, *lnf_w, *lnf_b, *lm_head;   /* lm_head == wte when tied;
                                                           llama: wpe, lnf_b NULL */
    model_block *blocks;
    hf_files files;     /* the directory's safetensors files, mapped */
    float **owned;      /* converted copies (F16/BF16) */
    int n_owned;
    model_src wte_src, head_src;
    /* bf16 compute (model_bf16.h): lm_head is NULL and the head is one of
     * bf16's handles; wte is NULL when the embedding rows are read from
     * wte_src instead.  bf16 is opaque here; bf16_free releases it. */
    model_compute compute;
    struct model_bf16 *bf16;
    void (*bf16_free)(model *m);
    /* full fine-tuning (full.h): the flat vector the trained weights live in.
     * A weight inside it has its gradient at the same offset of the
     * gradient model_loss_grad fills; NULL when every weight is frozen. */
    const float *trained;
    size_t n_trained;
    /* bert: token types, the embedding LayerNorm, the pooler (cls) or the
     * MLM transform and decoder bias (mlm; the decoder is wte); cls_w
     * [num_labels, C] and cls_b are the checkpoint's classifier or NULL */
    const float *wtt, *emb_ln_w, *emb_ln_b, *mlm_ln_w, *mlm_ln_b, *mlm_bias, *cls_w, *cls_b;
    model_linear pooler, mlm_dense;
};

/* BERT's linear maps outside the blocks (LoRA module layer n_layer): the
 * pooler's dense (cls) and the MLM transform's dense (mlm). */
enum { MODEL_SLOT_POOLER = 6, MODEL_SLOT_MLM_DENSE = 7 };
/* The head linear of slot s (MODEL_SLOT_*), NULL when the task has none. */
model_linear *model_head_linear(model *m, int slot);
/* Whether the config's task has head linear slot s. */
int model_has_head_linear(const model_config *c, int slot);

/* Number of linear maps per block, and the name of slot `slot` relative to
 * its block ("attn.c_attn", ...). */
int model_n_linears(const model_config *c);
const char *model_linear_name(const model_config *c, int slot);
/* Writes the full module path of (layer, slot), e.g. "transformer.h.3.attn.c_attn";
 * BERT: "bert.encoder.layer.3.attention.self.query", and layer n_layer
 * the head linears ("bert.pooler.dense", "cls.predictions.transform.dense"). */
void model_module_path(const model_config *c, int layer, int slot, char *buf, size_t len);
/* in/out sizes of a linear slot. */
void model_linear_shape(const model_config *c, int slot, int *in, int *out);

/* Loads DIR (config.json and the safetensors files) for fp32 compute:
 * F32 weights used in place from the mapping, F16/BF16 converted once. */
int model_load(model *m, const char *dir, pl_err *e);
/* The same for BERT with the head of `task` (TASK_NONE: the config's) and,
 * when num_labels > 0, that many labels (a checkpoint's classifier of
 * another size is then an error).  Other architectures ignore both. */
int model_load_task(model *m, const char *dir, model_task task, int num_labels, pl_err *e);
/* The same, but a matrix (linear maps, head) or wte whose file data is not
 * aligned F32 stays unconverted: its pointer NULL, its model_src set, for a
 * compute that reads the file's data itself (model_bf16.h). */
int model_load_deferred(model *m, const char *dir, pl_err *e);
/* Releases everything, the bf16 state through m->bf16_free. */
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
    int head;           /* bert: a head key, never under the "bert." prefix */
    int optional;       /* may be absent from the file (slot left NULL) */
} model_weight;
int model_weight_count(const model_config *c);
int model_weight_table(model *m, model_weight *w);
/* The same table for a loaded model, left as it is: the slots point at m's
 * own fields (the table functions above reset layouts, so they run on a
 * scratch copy whose slot addresses are mapped back to m). */
int model_weight_table_of(model *m, model_weight *w);

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
/* BERT cls: the predicted class of each of the B rows of the last
 * model_encoder_loss_grad (NULL for other models). */
const int32_t *model_acts_predictions(const model_acts *a);
/* Seconds spent in the forward (incl. the fused head) and backward parts of
 * the last model_loss_grad call. */
void model_acts_timing(const model_acts *a, double *fwd, double *bwd);
/* How the causal attention runs: 0 on pslora's kernels (fp32 through
 * OpenBLAS, BERT), else through oneDNN cut into this many slices of the
 * batch (dnnl_attention.h, "Threads"; 1: the products over the whole
 * batch). */
int model_acts_attention_slices(const model_acts *a);
/* Makes every later pass with a add its kernels' seconds to p (step_prof.h;
 * NULL: no profile, the default).  p must outlive the passes. */
struct step_prof;
void model_acts_profile(model_acts *a, struct step_prof *p);

/* Forward pass on inp/tgt [B,T] (int32 tokens), and the backward pass when
 * grad != NULL.  Returns the *sum* of the token losses (double).  grad, laid
 * out as the adapter's flat vector, is overwritten with d(sum loss)/d(params).
 * L and params may be NULL: the base model alone.  Dropout on the LoRA input
 * path uses a mask drawn from dropout_seed. */
double model_loss_grad(const model *m, model_acts *a, const struct lora_layout_s *L,
                       const float *params, float *grad, const int32_t *inp,
                       const int32_t *tgt, unsigned long long dropout_seed);

/* BERT: the summed loss of a batch, and its gradient when grad != NULL
 * (laid out as the adapter's flat vector, the classifier's weight and bias
 * in it when the layout trains them).  inp [B,T]; types [B,T] token types
 * (NULL: all 0); len [B] the real tokens of each row, the rest padding
 * (NULL: all T).  mlm: tgt [B,T], the original id at chosen positions and
 * -1 elsewhere, the loss over the chosen positions; cls: tgt [B] the labels
 * (-1: a padding row, no loss).  *correct (may be NULL) receives the
 * predictions equal to their target.  model_loss_grad on a BERT model is
 * this with types and len NULL. */
double model_encoder_loss_grad(const model *m, model_acts *a, const struct lora_layout_s *L,
                               const float *params, float *grad, const int32_t *inp,
                               const int32_t *types, const int32_t *len, const int32_t *tgt,
                               unsigned long long dropout_seed, int *correct);

/* Forward pass over inp [B=1, T] (the acts' shape) and the vocabulary logits
 * [V] of position pos; positions after pos do not affect them (causal), so
 * callers may pad.  For generation. */
void model_logits(const model *m, model_acts *a, const struct lora_layout_s *L,
                  const float *params, const int32_t *inp, int pos, float *logits);

#endif
