/* model_open.h - the frozen model with an optional adapter attached, as the
 * commands that only run it forward (eval, generate) open it: --compute and
 * --fp32-matmul decided, the model loaded for that compute, the PEFT
 * adapter read and attached to the model's linear maps. */
#ifndef PSLORA_MODEL_OPEN_H
#define PSLORA_MODEL_OPEN_H

#include "lora.h"
#include "model.h"

typedef struct {
    model m;
    lora_layout L;
    float *p;       /* the adapter's parameters, NULL without one */
    int adapted;    /* 1 when an adapter is attached */
} opened_model;

/* Opens model_dir (and adapter, may be NULL) for the forward pass.  Returns
 * 0, or the exit status after printing "pslora CMD: <error>": 2 for a bad
 * --compute or --fp32-matmul, 1 for a model or adapter that does not load
 * (nothing stays open). */
int model_open_forward(opened_model *o, const char *cmd, const char *model_dir,
                       const char *adapter, const char *compute, const char *fp32_matmul);
/* The same with BERT's head chosen (task TASK_NONE: the config's;
 * num_labels 0: the config's), fp32 only. */
int model_open_task(opened_model *o, const char *cmd, const char *model_dir, const char *adapter,
                    model_task task, int num_labels);
/* The layout to pass to the model's passes: NULL without an adapter. */
const lora_layout *opened_lora(const opened_model *o);
void opened_model_close(opened_model *o);

#endif
