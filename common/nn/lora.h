/* lora.h - the adapter layout, its initialisation and PEFT files.
 *
 * All adapter parameters live in one flat float vector: for module i, A_i
 * [r, in] at a_off and B_i [out, r] at b_off.  Tensor id 2i is A_i, 2i+1 is
 * B_i; the parameter server assigns tensor ids to servers.
 * Scale s = alpha / r, or alpha / sqrt(r) with rslora.
 *
 * BERT's classifier (PEFT's modules_to_save ["classifier"]) is trained
 * with the adapters when the layout has one (lora_layout_add_classifier):
 * its weight [K, C] at cls_off and bias [K] right after, tensor ids 2n and
 * 2n+1, saved as base_model.model.classifier.weight / .bias.
 *
 * A layout may instead be full fine-tuning's (full.h): no modules, `full`
 * set, and the tensor functions below answer for the model's trained
 * weights, so the parameter server handles both the same way. */
#ifndef PSLORA_LORA_H
#define PSLORA_LORA_H

#include <stddef.h>

#include "err.h"
#include "model.h"

typedef struct {
    char path[128];     /* module path, e.g. "transformer.h.0.attn.c_attn" */
    int layer, slot;
    int in, out;
    size_t a_off, b_off;
} lora_module;

typedef struct lora_layout_s {
    int r;
    float alpha;
    int rslora;
    float dropout;
    float scale;
    char targets[256];  /* comma-separated, as given */
    int n;
    lora_module *m;
    size_t n_params;
    struct full_layout *full;   /* full fine-tuning's tensors; NULL for LoRA */
    int n_labels, cls_in;       /* the trained classifier [n_labels, cls_in]; 0: none */
    size_t cls_off;
} lora_layout;

/* Matches targets as PEFT does: a target matches a module whose path equals
 * it or ends with "." + target.  An unmatched target is an error naming it.
 * BERT's head linears count (model.h: "dense" also matches bert.pooler.dense
 * for cls and cls.predictions.transform.dense for mlm, as in PEFT). */
int lora_layout_build(lora_layout *L, const model_config *c, const char *targets, int r,
                      float alpha, int rslora, float dropout, pl_err *e);
void lora_layout_free(lora_layout *L);
/* Appends a trained classifier for a BERT cls model (after the adapters). */
int lora_layout_add_classifier(lora_layout *L, const model_config *c, pl_err *e);
/* The classifier's starting values: the model's own (m->cls_w, cls_b)
 * when it has them, else as transformers initialises a new one: weight
 * normal(0, 0.02) drawn from seed, bias 0. */
void lora_init_classifier(const lora_layout *L, const model *m, float *p, unsigned long long seed);
/* Sets m->blocks[l].lin[s].lora to the module index for every adapted linear. */
void lora_attach(const lora_layout *L, model *m);

int lora_n_tensors(const lora_layout *L);
size_t lora_tensor_offset(const lora_layout *L, int id);
size_t lora_tensor_numel(const lora_layout *L, int id);

/* The PEFT key of LoRA tensor id (lora_A / lora_B, or the classifier's
 * weight / bias) and its shape ([n] as {n, 1}).  Not for a full layout. */
void lora_tensor_key(const lora_layout *L, int id, char *buf, size_t len, int64_t shape[2]);

/* PEFT init: A Kaiming-uniform (a = sqrt(5): bound 1/sqrt(in)), B zero. */
void lora_init_params(const lora_layout *L, float *p, unsigned long long seed);

/* Writes DIR/adapter_model.safetensors and DIR/adapter_config.json (PEFT). */
int lora_save_peft(const char *dir, const lora_layout *L, const model_config *c,
                   const float *p, const char *base_model, pl_err *e);
/* adapter_config.json as pslora reads it. */
typedef struct {
    int r;
    float alpha;
    int rslora;
    float dropout;
    char targets[256];  /* comma-separated */
    int classifier;     /* modules_to_save is ["classifier"] (BERT cls) */
} lora_peft_config;

/* The adapter scale: alpha / r, or alpha / sqrt(r) with rslora. */
float lora_scale(float alpha, int r, int rslora);
/* Reads DIR/adapter_config.json alone (the tools that read adapters without
 * a model).  c may be NULL: then no check against an architecture. */
int lora_read_peft_config(const char *dir, const model_config *c, lora_peft_config *pc,
                          pl_err *e);
/* Reads a PEFT adapter directory for model config c: fills L (r, alpha,
 * targets, rslora, dropout from adapter_config.json) and *p (malloc'd). */
int lora_load_peft(const char *dir, const model_config *c, lora_layout *L, float **p,
                   pl_err *e);

#endif
