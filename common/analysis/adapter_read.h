/* adapter_read.h - PEFT adapters and base weights as the analysis reads them.
 *
 * Owns: reading an adapter directory without its model (the modules come
 * from the tensor names base_model.model.<path>.lora_A/B.weight, their
 * shapes from the tensors), the check that two adapters adapt the same
 * modules, and a module's base weight W as an out x in matrix from a loaded
 * model (GPT-2's Conv1D [in, out] and Llama's Linear [out, in] both give
 * dW's orientation, y = x W^T). */
#ifndef PSLORA_ADAPTER_READ_H
#define PSLORA_ADAPTER_READ_H

#include "err.h"
#include "model.h"

typedef struct {
    char path[128];     /* module path, e.g. "transformer.h.0.attn.c_attn" */
    int in, out;
    float *a, *b;       /* A [r, in], B [out, r], row-major, into ar_adapter.data */
} ar_module;

typedef struct {
    int r;
    double scale;       /* s of dW = s B A (alpha / r, or alpha / sqrt(r) with rslora) */
    int n;
    ar_module *m;       /* in natural order of the paths (h.2 before h.10) */
    float *data;
} ar_adapter;

/* Reads DIR/adapter_config.json and DIR/adapter_model.safetensors.  Every
 * tensor must be a lora_A or lora_B weight of the config's r, each A with
 * its B; a failure names the file and the tensor. */
int ar_load(ar_adapter *ad, const char *dir, pl_err *e);
void ar_free(ar_adapter *ad);
/* 0 when x and y adapt the same module paths with the same shapes; else one
 * line naming the first difference (dx, dy: the directories, for it). */
int ar_same_modules(const ar_adapter *x, const char *dx, const ar_adapter *y, const char *dy,
                    pl_err *e);
/* W of module `path` of an fp32-loaded model as out x in, column-major
 * doubles; refuses a module the model lacks or of another shape. */
int ar_base_weight(const model *m, const char *model_dir, const ar_module *mod, double *w,
                   pl_err *e);

#endif
