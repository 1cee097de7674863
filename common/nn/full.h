/* full.h - full fine-tuning: the model's own weights as the trained tensors.
 *
 * `pslora train --full` trains every weight matrix of every block (the
 * linear maps), and with --full-include also their biases, the norms and
 * the embeddings (wte, wpe, an untied lm_head).
 * The trained weights are laid out like an adapter: tensor ids 0..n-1 in
 * the order of the model's weight table (model.h), one flat float vector,
 * so the parameter server deals, pushes, updates and checkpoints them with
 * the code it uses for LoRA (lora.h dispatches its tensor functions here
 * when a layout is full).
 *
 * The worker's model no longer uses those weights from the mapping: they
 * are copied into the flat vector and the model's pointers point into it
 * (full_attach), so a new version received into that vector is the model
 * the next step runs.  model_loss_grad then forms d(sum loss)/dW for every
 * weight inside the vector at the same offset of its gradient (model.h,
 * `trained`).  fp32 compute only.
 *
 * The model directory a run writes is model_save's (model.h), from the
 * attached model.  Tensor names and shapes are the model file's own (model_save's keys:
 * GPT-2 "transformer.h.0.attn.c_attn.weight" [in, out], Llama
 * "model.layers.0.self_attn.q_proj.weight" [out, in]). */
#ifndef PSLORA_FULL_H
#define PSLORA_FULL_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "model.h"

/* What --full trains besides the linear maps' weight matrices.
 * FULL_EMBEDDINGS: wte, GPT-2's wpe, and an untied lm_head (last tensor,
 * "lm_head.weight"); a tied head is wte itself, trained once, its gradient
 * the head's dE plus the lookup's scatter-add. */
enum { FULL_BIASES = 1, FULL_NORMS = 2, FULL_EMBEDDINGS = 4 };

typedef struct {
    char name[160];     /* the key in model.safetensors */
    int ndim;
    int64_t shape[2];
    size_t off, numel;
} full_tensor;

typedef struct full_layout {
    int n;
    full_tensor *t;
    size_t n_params;
    unsigned include;   /* FULL_* bits */
} full_layout;

/* Parses a --full-include list ("biases,norms,embeddings"; "" for none) into FULL_*
 * bits; an unknown word is an error naming it. */
int full_include_parse(const char *list, unsigned *include, pl_err *e);

struct lora_layout_s;
/* Fills L as the full layout of model m (L->full set, no LoRA modules) and
 * *params (malloc'd) with m's current values of the trained weights.  m
 * must be an fp32 model whose weights are all present. */
int full_layout_build(struct lora_layout_s *L, model *m, unsigned include, float **params,
                      pl_err *e);
void full_layout_free(full_layout *F);

/* Points m's trained weights into params (laid out by F) and marks params
 * as the trained vector of m; a tied lm_head follows wte.  params must
 * outlive m's use. */
void full_attach(const full_layout *F, model *m, float *params);
/* Points m's trained weights at at[id] (tensor id of F), one pointer per
 * tensor, for writing a model whose tensors are not one vector (a server
 * keeps only its own); m's trained vector is left as it was. */
void full_point(const full_layout *F, model *m, float *const *at);

/* Reads the trained tensors of F from DIR/model.safetensors into params
 * (names, F32 dtype and shapes checked). */
int full_load(const full_layout *F, const char *dir, float *params, pl_err *e);

#endif
